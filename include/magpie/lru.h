/*
 * lru: which item goes when memory is full, reclaim of expired items, and moving pages between
 * size classes.
 *
 * Eviction is a CLOCK over each class's pages rather than a linked LRU: a hit only bumps a 2-bit
 * counter in the item (item.h), so reads never take an LRU lock and items carry no list links.
 * When a class needs a chunk and has none, its hand sweeps forward: an expired or flushed item is
 * reclaimed at once; an item with hits left loses one and is passed over; the first item with none
 * is evicted. Items that are read keep surviving sweeps in proportion to how often they are read,
 * which approximates LRU and holds frequently read keys better than it under skewed (Zipf) traffic.
 *
 * All of this runs under the class lock (slab.h). An item found by the hand is unlinked only under
 * its stripe lock, taken with trylock so the class-then-stripe order can never deadlock against
 * the stripe-then-class order of the request path; an item whose stripe is busy, that a reader
 * holds (refs > 1), or that is still being filled (not linked) is passed over.
 *
 * Chains (chain.h). A chain's chunks are not items and no walker takes them for one: the hand,
 * the reclaim pass, evacuation and dumps tell them by MP_ITEM_CHUNK, under the class lock. The
 * hand of the largest class weighs a chained item at its first chunk (once a turn, whatever its
 * length), by the head's CLOCK bits; evacuating a page evicts the whole item each chunk on it
 * belongs to. A chain taken under one class lock spans two classes (its head's, the largest), and
 * a class lock holder takes another class's lock only with trylock: what it cannot free then (the
 * head, or the whole chain when the largest class's lock is busy) goes to the orphans, which
 * whoever next holds no class lock frees (mp_lru_orphans_free: the allocator after a sweep, the
 * maintainer every tick and between evacuation attempts). The orphans' lock is a leaf.
 *
 * The maintainer thread runs the background jobs once per tick: a reclaim pass (memcached's LRU
 * crawler) that frees expired and flushed items nobody reads and, as it goes, keeps every item's
 * last access within the stamp's range (item.h) and measures each class's oldest access and the
 * bytes its items take (stats items: age, mem_requested); automove, which takes a page from a
 * class that has not needed to evict lately and gives it to the class that evicts most; a page
 * move an operator asked for (slabs reassign); and giving back pages over a lowered memory limit
 * (cache_memlimit). The run-time switches (automove level, crawler on or off) are atomics any
 * thread may set; a reassign request is handed over under `lock`.
 */
#ifndef MAGPIE_LRU_H
#define MAGPIE_LRU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/clock.h"
#include "magpie/item.h"
#include "magpie/slab.h"
#include "magpie/table.h"

/* Called for each item the CLOCK evicts, under its class and stripe locks, before it is unlinked
 * (`watch evictions`): it must not block. */
typedef void (*mp_lru_evict_fn)(void *ctx, const struct mp_item *it, unsigned cls, uint32_t now);

/* slabs reassign's answers, memcached's reassign_result_type. */
enum mp_lru_reassign {
    MP_REASSIGN_OK,
    MP_REASSIGN_RUNNING,
    MP_REASSIGN_BADCLASS,
    MP_REASSIGN_NOSPARE,
    MP_REASSIGN_SAME
};

struct mp_lru {
    struct mp_slabs *slabs;
    struct mp_table *table;
    struct mp_epoch *epoch;
    /* The reclaim pass, per class (whoever calls mp_lru_reclaim: the maintainer thread): its
     * cursor, and what it has seen since its current turn over the class began. */
    uint32_t crawl_page[MP_SLAB_CLASSES_MAX + 1];
    uint32_t crawl_chunk[MP_SLAB_CLASSES_MAX + 1];
    uint64_t crawl_seen[MP_SLAB_CLASSES_MAX + 1];
    uint64_t crawl_bytes[MP_SLAB_CLASSES_MAX + 1];
    uint32_t crawl_age[MP_SLAB_CLASSES_MAX + 1];
    mp_lru_evict_fn on_evict; /* may be NULL; set before the server serves */
    void *evict_ctx;
    /* run-time switches and counters, any thread */
    _Atomic int automove;        /* 0 off, 1 on, 2 every tick (slabs automove) */
    _Atomic bool crawler;        /* the reclaim pass runs (lru_crawler enable / disable) */
    _Atomic uint64_t juggles;    /* maintainer ticks (memcached's lru_maintainer_juggles) */
    _Atomic uint64_t busy_moves; /* page moves put off by an item in use (slab_reassign_busy_items) */
    _Atomic uint64_t crawls;     /* crawls asked for (lru_crawler crawl, metadump: lru_crawler_starts) */
    /* maintainer thread */
    const struct mp_clock *clock;
    pthread_t thread;
    /* Chains freed only in part under a class lock (above), through their heads' `next`. */
    pthread_mutex_t orphans_lock; /* a leaf: taken under class locks, nothing under it */
    mp_handle_t orphans;
    _Atomic uint32_t norphans;
    pthread_mutex_t lock; /* guards the reassign request, stop, and wakes the thread */
    pthread_cond_t wake;
    bool reassign_pending;
    int reassign_src, reassign_dst;
    bool running;
    bool stop;
};

void mp_lru_setup(struct mp_lru *l, struct mp_slabs *s, struct mp_table *t, struct mp_epoch *e);

/* Sweep class cls for a chunk to reuse: reclaims an expired item or evicts one (a chained one
 * whole). Returns the free chunk (refs 1, not linked, not on the free list) or NULL when every
 * item is in use. The caller holds the class lock, and calls mp_lru_orphans_free once it has let
 * it go. */
struct mp_item *mp_lru_evict_locked(struct mp_lru *l, unsigned cls, uint32_t now);

/* Free the chains waiting in the orphans (above). The caller holds no class lock. */
void mp_lru_orphans_free(struct mp_lru *l);

/* Background reclaim: look at up to `budget` chunks of class cls from its crawl cursor and free
 * the dead ones. Returns how many were freed. */
size_t mp_lru_reclaim(struct mp_lru *l, unsigned cls, uint32_t now, size_t budget);

/* One automove decision: when some class has evicted since the last call and another has not,
 * evacuate up to `max_pages` pages of the latter into the pool. Returns pages moved. */
unsigned mp_lru_automove(struct mp_lru *l, uint32_t now, unsigned max_pages);

/* Evacuate one page of class cls (evicting what it holds) and return it to the pool: the engine
 * of automove, exposed for tests. Returns 0, or -EBUSY when an item on it is in use. */
int mp_lru_page_evacuate(struct mp_lru *l, unsigned cls, uint32_t page, uint32_t now);

/* A class that must allocate and can neither find nor evict a chunk of its own (it has no
 * pages, or all are in use) takes a page from the class with the most: evacuates that class's page
 * under its clock hand into the pool. 0, or -ENOMEM / -EBUSY. Takes the class locks itself; the
 * caller holds none. */
int mp_lru_page_steal(struct mp_lru *l, unsigned cls, uint32_t now);

/* slabs reassign: move a page from class src (-1: any that can spare one; 0: the pool) to dst (0:
 * the pool). Checked now and done by the maintainer, as memcached's rebalancer does. */
enum mp_lru_reassign mp_lru_reassign(struct mp_lru *l, int src, int dst);

/* Give back up to max_pages pages while classes hold more than the memory limit (slab.h): from
 * the class with the most pages, each time. Returns pages given back. */
unsigned mp_lru_shrink(struct mp_lru *l, uint32_t now, unsigned max_pages);

/* The background thread: every 100 ms, reclaim on every class (while the crawler is on), a
 * pending reassign, pages over the limit; automove once a second at level 1, every tick at 2. */
int mp_lru_maintainer_start(struct mp_lru *l, const struct mp_clock *clk, int automove);
void mp_lru_maintainer_stop(struct mp_lru *l);

#endif

/*
 * lru: which item goes when memory is full, reclaim of expired items, and moving pages between
 * size classes.
 *
 * The policy is S3-FIFO (Yang et al., SOSP '23) fitted to a CLOCK over slab pages. Each class has
 * two queues and a shared ghost:
 *
 *   small  new items, on probation: a FIFO of the handles of the chunks that entered it, about a
 *          tenth of the class's chunks. When it is full, its oldest item leaves: to the main
 *          queue if it was read meanwhile (promoted: its SMALL bit is cleared, it stays where it
 *          is), else it is evicted and its key's hash goes to the ghost. Items read once and
 *          never again (a scan, one-hit wonders) thus hold a tenth of the class between them,
 *          instead of each pushing a main item out and staying for a whole turn of the hand.
 *   main   everything else: a CLOCK over the class's pages. A hit bumps a 2-bit counter in the
 *          item (item.h), so reads never take an LRU lock and items carry no list links; the hand
 *          passes over small items, takes a hit off each main item it meets and evicts the first
 *          with none. Items read often survive turns in proportion. Its evictions go to the ghost
 *          too.
 *   ghost  the hashes of keys evicted lately (ghost.h), about six times as many as the cache
 *          holds. A new item whose key the ghost remembers goes straight to the main queue: it
 *          was evicted and is wanted again. Only if it came back within half a turn of its class's
 *          main hand, though: a key that returns more slowly than main items must be read to stay
 *          would be evicted again before its next request, and in the meantime push out an item
 *          that would not. That keeps a large ghost (which holds recurring keys through a long
 *          scan) from flooding the main queue when popularity is flat.
 *
 * A new item's queue is chosen when its chunk is: a chunk the class takes by evicting (the class
 * is full) goes to the small queue unless the ghost admits its key, and a chunk from the free list
 * or a new page (the class still grows) to the main queue. A store over an existing key puts its
 * item in the main queue, as a read would. An item brought back by a warm store (a snapshot,
 * cache.h) with SMALL in its CLOCK byte rejoins the small queue, at the tail, in the order items
 * come in (mp_lru_small_join); any other is in the main queue. The small queue's FIFO holds
 * handles, not items, so an entry may outlive its item (deleted, replaced, expired and reclaimed,
 * its page evacuated by automove, slabs reassign or a lowered cache_memlimit, and perhaps given
 * back to this class later): the hand checks each handle it takes (its page in this class, the
 * chunk linked, still SMALL) and skips stale ones; a handle whose chunk is still being filled goes
 * back to the tail. So no item is SMALL without an entry, and a SMALL item the main hand passes
 * is one the small queue will come to. An entry into a page given back to the class may meet a
 * new item there before that item's own entry does: it only leaves the queue a little early.
 *
 * Measured against the same cache with TinyLFU's frequency sketch instead (a count of every key's
 * requests deciding whether a new item displaces the main hand's victim), S3-FIFO held more hits
 * on every workload of bench/hitratio and writes nothing on a read: the ghost is written once per
 * eviction and read once per allocation that evicts (see README).
 *
 * All of this runs under the class lock (slab.h). An item found by the hand is unlinked only under
 * its stripe lock, taken with trylock so the class-then-stripe order can never deadlock against
 * the stripe-then-class order of the request path; an item whose stripe is busy, that a reader
 * holds (refs > 1), or that is still being filled (not linked) is passed over (a small item in
 * that state is promoted).
 *
 * Chains (chain.h). A chain's chunks are not items and no walker takes them for one: the hand,
 * the reclaim pass, evacuation and dumps tell them by MP_ITEM_CHUNK, under the class lock. The
 * hand of the largest class weighs a chained item at its first chunk (once a turn, whatever its
 * length), by the head's CLOCK bits; evacuating a page evicts the whole item each chunk on it
 * belongs to. A chain taken under one class lock spans two classes (its head's, the largest), and
 * a class lock holder takes another class's lock only with trylock: what it cannot free then (the
 * head, or the whole chain when the largest class's lock is busy) goes to the orphans, which
 * whoever next holds no class lock frees (mp_lru_orphans_free: the allocator after a sweep, the
 * maintainer every tick and between evacuation attempts). The orphans' lock is a leaf. A chain's
 * head and chunks join no small queue (they are allocated with no key for the policy): a chain is
 * weighed in the main queue only, by the hand of the largest class, where its bytes are.
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
#include "magpie/ghost.h"
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

/* The small queue's share of a class's chunks, in percent (S3-FIFO's 10%). */
#define MP_LRU_SMALL_PERCENT 10
/* A class whose share would be fewer items than this has no small queue: new items go to the main
 * one. A queue of one or two evicts each new item as the next arrives, unread or not (a class of
 * 300 KB items on a few pages has a share of one), which filters nothing and loses the newest. */
#define MP_LRU_SMALL_MIN 8

/* A class's small queue, under the class lock (see above). */
struct mp_lru_small {
    mp_handle_t *fifo; /* handles, oldest at head; grows with the class */
    uint32_t cap, head, count;
    uint64_t turn_start; /* the ghost's clock when the main hand last began a turn; UINT64_MAX: never */
    uint64_t turn_len;   /* ghost additions during the hand's last whole turn; 0: none yet */
};

struct mp_lru {
    struct mp_slabs *slabs;
    struct mp_table *table;
    struct mp_epoch *epoch;
    struct mp_ghost ghost;
    struct mp_lru_small small[MP_SLAB_CLASSES_MAX + 1];
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
    _Atomic uint64_t steals;     /* mp_lru_page_steal calls: with evictions, the clock of pressed_at */
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

/* 0, or -ENOMEM (the ghost's reserve). */
int mp_lru_setup(struct mp_lru *l, struct mp_slabs *s, struct mp_table *t, struct mp_epoch *e);
void mp_lru_teardown(struct mp_lru *l);

/* Find a chunk of class cls for a new item with key `key`: reclaims an expired item or evicts one
 * (from the small queue first, see above). Returns the chunk (refs 1, not linked, not on the free
 * list), already in the small queue (MP_ITEM_SMALL, which mp_item_init keeps) unless the ghost
 * admitted the key to the main one; or NULL when every item is in use. A chained victim goes
 * whole. The caller holds the class lock, and calls mp_lru_orphans_free once it has let it go. */
struct mp_item *mp_lru_evict_locked(struct mp_lru *l, unsigned cls, uint32_t now, const char *key, size_t nkey);

/* A warm store's item that was in the small queue when it was saved (MP_ITEM_CLOCK_SMALL, cache.h)
 * joins its class's small queue, at the tail: `it` is a chunk nobody else sees yet, its stamp
 * becomes MP_ITEM_SMALL (which mp_item_stamp_link keeps). false when the queue has no room (the
 * item stays in the main queue). Takes the class lock; the caller may hold a stripe lock. */
bool mp_lru_small_join(struct mp_lru *l, struct mp_item *it);

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
 * pages, or all are in use) takes a page from another: one with two pages or more if any has
 * them (a class keeps its last page while another can spare one), the one that has gone longest
 * without evicting or stealing (pressed_at, slab.h), and of those the one with the most pages. So
 * classes being written do not take pages from each other (and their newest items with them)
 * while classes nobody writes to keep theirs: with many classes of a few pages (values of a few
 * hundred KB spread over the classes that cut a page in 2 to 31 chunks, and chains' heads over
 * more) the class with the most pages is often the one being written. Evacuates the donor's page
 * under its clock hand into the pool. 0, or -ENOMEM / -EBUSY. Takes the
 * class locks itself; the caller holds none. */
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

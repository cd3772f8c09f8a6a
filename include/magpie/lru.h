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
 * item in the main queue, as a read would. The small queue's FIFO holds handles, not items, so an
 * entry may outlive its item (deleted, replaced, expired, its page moved away): the hand checks
 * each handle it takes (same class, linked, still SMALL) and skips stale ones; a handle whose
 * chunk is still being filled goes back to the tail.
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
 * The maintainer thread runs the two background jobs once per tick: a reclaim pass that frees
 * expired and flushed items nobody reads, and automove, which takes a page from a class that has
 * not needed to evict lately and gives it to the class that evicts most.
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

/* The small queue's share of a class's chunks, in percent (S3-FIFO's 10%). */
#define MP_LRU_SMALL_PERCENT 10

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
    uint32_t crawl_page[MP_SLAB_CLASSES_MAX + 1]; /* reclaim cursors, maintainer thread only */
    uint32_t crawl_chunk[MP_SLAB_CLASSES_MAX + 1];
    /* maintainer thread */
    const struct mp_clock *clock;
    bool automove;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool running;
    bool stop;
};

/* 0, or -ENOMEM (the ghost's reserve). */
int mp_lru_setup(struct mp_lru *l, struct mp_slabs *s, struct mp_table *t, struct mp_epoch *e);
void mp_lru_teardown(struct mp_lru *l);

/* Find a chunk of class cls for a new item with key `key`: reclaims an expired item or evicts one
 * (from the small queue first, see above). Returns the chunk (refs 1, not linked, not on the free
 * list), already in the small queue (MP_ITEM_SMALL, which mp_item_init keeps) unless the ghost
 * admitted the key to the main one; or NULL when every item is in use. The caller holds the class
 * lock. */
struct mp_item *mp_lru_evict_locked(struct mp_lru *l, unsigned cls, uint32_t now, const char *key, size_t nkey);

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

/* The background thread: every 100 ms, reclaim on every class; once a second, automove if enabled. */
int mp_lru_maintainer_start(struct mp_lru *l, const struct mp_clock *clk, bool automove);
void mp_lru_maintainer_stop(struct mp_lru *l);

#endif

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
#include "magpie/item.h"
#include "magpie/slab.h"
#include "magpie/table.h"

struct mp_lru {
    struct mp_slabs *slabs;
    struct mp_table *table;
    struct mp_epoch *epoch;
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

void mp_lru_setup(struct mp_lru *l, struct mp_slabs *s, struct mp_table *t, struct mp_epoch *e);

/* Sweep class cls for a chunk to reuse: reclaims an expired item or evicts one. Returns the free
 * chunk (refs 0, not linked, not on the free list) or NULL when every item is in use. The caller
 * holds the class lock. */
struct mp_item *mp_lru_evict_locked(struct mp_lru *l, unsigned cls, uint32_t now);

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

/* lru: see include/magpie/lru.h */
#include "magpie/lru.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "magpie/chain.h"

#define TICK_MS 100
#define RECLAIM_BUDGET 4096 /* chunks per class per tick */

#define GHOST_PER_ITEM 6          /* keys the ghost remembers per item the cache holds */
#define GHOST_RESIZE_EVERY 16384u /* additions between two looks at how many items there are */

int mp_lru_setup(struct mp_lru *l, struct mp_slabs *s, struct mp_table *t, struct mp_epoch *e)
{
    memset(l, 0, sizeof(*l));
    l->slabs = s;
    l->table = t;
    l->epoch = e;
    for (unsigned i = 0; i <= MP_SLAB_CLASSES_MAX; i++) {
        l->crawl_page[i] = MP_SLAB_NONE;
        l->small[i].turn_start = UINT64_MAX;
    }
    atomic_store(&l->crawler, true);
    atomic_store(&l->automove, 1);
    /* Room for the most items the cache could ever hold: every chunk of the smallest class in the
     * arena's whole reserve, which is as far as cache_memlimit can raise the limit (slab.h). Only
     * address space: the ghost touches what its window uses, which follows the items held. */
    size_t most = (size_t)s->npages_max * s->page_size / s->classes[1].size;
    if (mp_ghost_setup(&l->ghost, most * GHOST_PER_ITEM) != 0)
        return -ENOMEM;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->orphans_lock, NULL);
    /* Ticks follow elapsed time: a wall clock stepped back must not stall the maintainer. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void mp_lru_teardown(struct mp_lru *l)
{
    mp_lru_maintainer_stop(l);
    for (unsigned i = 0; i <= MP_SLAB_CLASSES_MAX; i++) {
        free(l->small[i].fifo);
        l->small[i].fifo = NULL;
    }
    mp_ghost_teardown(&l->ghost);
}

/* Chunks in use on a page: all of them, except on the page the class still bumps into. */
static uint32_t page_chunks(const struct mp_slab_class *c, uint32_t page)
{
    return page == c->bump_page ? c->bump_next : c->perpage;
}

static struct mp_item *chunk_at(const struct mp_slabs *s, const struct mp_slab_class *c, uint32_t page, uint32_t i)
{
    return (struct mp_item *)(mp_slab_page_addr(s, page) + (size_t)i * c->size);
}

/* The chunk under a (page, chunk) cursor, which then moves on; the cursor names the next chunk to
 * look at and wraps from the class's last page to its first. */
static struct mp_item *cursor_take(const struct mp_slabs *s, const struct mp_slab_class *c, uint32_t *page,
                                   uint32_t *chunk)
{
    /* bounded: a page holds at least one chunk in use once it is in the chain */
    for (uint32_t n = 0; (*page == MP_SLAB_NONE || *chunk >= page_chunks(c, *page)) && n <= c->npages; n++) {
        *page = *page == MP_SLAB_NONE ? c->first_page : s->page_next[*page];
        if (*page == MP_SLAB_NONE)
            *page = c->first_page;
        *chunk = 0;
    }
    return chunk_at(s, c, *page, (*chunk)++);
}

/* Why an item is taken: the CLOCK needs its chunk (from the small queue or the main one), the
 * reclaim pass found it dead, or its page is being moved to another class. Only the first is
 * pressure on the class (see automove). */
enum take { TAKE_EVICT, TAKE_EVICT_SMALL, TAKE_RECLAIM, TAKE_MOVE };

/* Remember an evicted key, keeping the ghost's window in step with the items the cache holds. */
static void ghost_remember(struct mp_lru *l, uint64_t hash)
{
    if ((mp_ghost_added(&l->ghost) & (GHOST_RESIZE_EVERY - 1)) == 0)
        mp_ghost_resize(&l->ghost, GHOST_PER_ITEM * mp_table_count(l->table));
    mp_ghost_add(&l->ghost, hash);
}

/*
 * Unlink `it` if nobody else holds it, and account for why; a live item's key goes to the ghost.
 * The caller holds the class lock; the stripe lock is only tried (lock order, see table.h).
 * Returns true when the chunk is now free and the caller's to reuse or put on the free list.
 */
static bool take_item(struct mp_lru *l, struct mp_slab_class *c, struct mp_item *it, uint32_t now, enum take why)
{
    bool only_dead = why == TAKE_RECLAIM;
    uint64_t hash = mp_table_hash(l->table, mp_item_key(it), it->nkey);
    struct mp_stripe *st = mp_table_stripe(l->table, hash);
    if (!mp_stripe_trylock(st))
        return false;
    bool freed = false, evicted = false;
    bool linked = mp_item_linked(it);
    bool evicting = why == TAKE_EVICT || why == TAKE_EVICT_SMALL;
    /* Linked and held by the table alone: no reader has it, nobody is replacing it. */
    if (linked && atomic_load_explicit(&it->refs, memory_order_acquire) == 1) {
        bool dead = mp_item_dead(it, now, l->epoch);
        if (dead || !only_dead) {
            uint64_t stamp = mp_item_stamp(it);
            bool fetched = stamp & MP_ITEM_FETCHED;
            uint32_t exptime = mp_item_exptime(it);
            if (!dead && evicting && l->on_evict)
                l->on_evict(l->evict_ctx, it, (unsigned)(c - l->slabs->classes), now);
            freed = mp_table_unlink_locked(l->table, st, hash, it);
            evicted = !dead;
            if (dead) {
                if (only_dead)
                    c->crawler_reclaimed++;
                else
                    c->reclaimed++;
                c->expired_unfetched += !fetched;
            } else if (why == TAKE_MOVE) {
                c->evicted_for_move++;
            } else {
                c->evictions++;
                c->evicted_unfetched += !fetched;
                c->evicted_nonzero += exptime != 0;
                c->evicted_active += (stamp & MP_ITEM_HITS_MASK) != 0;
                c->evicted_time = mp_item_la_age(stamp, now);
                c->small_evicted += why == TAKE_EVICT_SMALL;
            }
        }
    } else if (linked && evicting) {
        c->lrutail_reflocked++;
    }
    mp_stripe_unlock(st);
    if (evicted)
        ghost_remember(l, hash);
    return freed;
}

/* ---- chains (lru.h) -------------------------------------------------------------------------- */

static void orphan(struct mp_lru *l, struct mp_item *head)
{
    pthread_mutex_lock(&l->orphans_lock);
    head->next = l->orphans;
    l->orphans = mp_slab_handle(l->slabs, head);
    atomic_store_explicit(&l->norphans, atomic_load_explicit(&l->norphans, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&l->orphans_lock);
}

void mp_lru_orphans_free(struct mp_lru *l)
{
    if (atomic_load_explicit(&l->norphans, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&l->orphans_lock);
    mp_handle_t h = l->orphans;
    l->orphans = 0;
    atomic_store_explicit(&l->norphans, 0, memory_order_relaxed);
    pthread_mutex_unlock(&l->orphans_lock);
    while (h) {
        struct mp_item *head = mp_slab_item(l->slabs, h);
        h = head->next;
        mp_chain_free(l->slabs, head);
    }
}

/*
 * A chained item whose last reference is gone, found under class cls's lock: free its chunks and
 * then its head, as far as the lock order lets us (lru.h), except `keep` (NULL, the head, or one of
 * the chunks, in class cls), which the caller takes. False when `keep` cannot be had (it is the
 * head and the chunks' lock was busy); what could not be freed is left to the orphans.
 */
static bool release_chain_locked(struct mp_lru *l, unsigned cls, struct mp_item *head, struct mp_item *keep)
{
    struct mp_slabs *s = l->slabs;
    unsigned ccls = mp_slab_chunk_class(s);
    if (ccls != cls && pthread_mutex_trylock(&s->classes[ccls].lock) != 0) {
        orphan(l, head);
        return keep != head;
    }
    uint32_t n = mp_chain_chunks(s, head);
    for (uint32_t i = 0; i < n; i++) {
        mp_handle_t h = mp_chain_get(head, i);
        mp_chain_set(head, i, 0);
        if (h && mp_slab_item(s, h) != keep)
            mp_slab_free_locked(s, ccls, mp_slab_item(s, h));
    }
    if (ccls != cls)
        pthread_mutex_unlock(&s->classes[ccls].lock);
    if (keep == head)
        return true;
    /* The chunks are free: the head goes last (chain.h), now if its class's lock can be had. */
    unsigned hcls = mp_slab_class_of(s, head);
    if (hcls == cls) {
        mp_slab_free_locked(s, cls, head);
    } else if (pthread_mutex_trylock(&s->classes[hcls].lock) == 0) {
        mp_slab_free_locked(s, hcls, head);
        pthread_mutex_unlock(&s->classes[hcls].lock);
    } else {
        orphan(l, head);
    }
    return true;
}

/* An item take_item() took (its last reference is gone), found under class cls's lock: freed,
 * but for `keep` (see release_chain_locked). */
static bool release_locked(struct mp_lru *l, unsigned cls, struct mp_item *it, struct mp_item *keep)
{
    if (mp_item_chained(it))
        return release_chain_locked(l, cls, it, keep);
    if (it != keep)
        mp_slab_free_locked(l->slabs, cls, it);
    return true;
}

/* The item a chunk of class memory holds or, for a chain's chunk, belongs to. Under the class
 * lock, which keeps a chunk's MP_ITEM_CHUNK and its head as they are (chain.h). */
static struct mp_item *item_of(const struct mp_slabs *s, struct mp_item *chunk)
{
    if (atomic_load_explicit(&chunk->iflags, memory_order_relaxed) & MP_ITEM_CHUNK)
        return mp_chain_head_of(s, chunk);
    return chunk;
}

/* ---- the small queue's FIFO of handles ---- */

static bool fifo_grow(struct mp_lru_small *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 64;
    if (cap < q->cap)
        return false;
    mp_handle_t *f = realloc(q->fifo, (size_t)cap * sizeof(*f));
    if (!f)
        return false;
    /* Entries that wrapped past the old end move to just after it, so they stay in order. */
    uint32_t wrapped = q->head + q->count > q->cap ? q->head + q->count - q->cap : 0;
    memcpy(f + q->cap, f, (size_t)wrapped * sizeof(*f));
    q->fifo = f;
    q->cap = cap;
    return true;
}

/* Append a handle; false when there is no room and none can be had. */
static bool fifo_push(struct mp_lru_small *q, mp_handle_t h)
{
    if (q->count == q->cap && !fifo_grow(q))
        return false;
    q->fifo[(q->head + q->count) & (q->cap - 1)] = h;
    q->count++;
    return true;
}

static mp_handle_t fifo_pop(struct mp_lru_small *q)
{
    mp_handle_t h = q->fifo[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    return h;
}

/*
 * The small queue's oldest entry leaves it (lru.h): returns its chunk when its item was evicted (or
 * was dead and reclaimed), else NULL: it was read and is promoted to the main queue, or the entry
 * is stale, or the chunk is still being filled and goes to the back.
 */
static struct mp_item *small_pop(struct mp_lru *l, unsigned cls, uint32_t now)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    struct mp_lru_small *q = &l->small[cls];
    mp_handle_t h = fifo_pop(q);
    struct mp_item *it = mp_slab_item(s, h);
    /* A page that left the class may be another class's now, cut into other chunks: do not look at
     * it. One of this class's cannot leave while its lock is held. */
    if (mp_slab_class_of(s, it) != cls || !mp_item_small(it))
        return NULL;
    if (!mp_item_linked(it)) {
        /* Being filled (SMALL, not yet linked), or unlinked but still read (SMALL until freed). */
        fifo_push(q, h); /* one was just taken: there is room */
        return NULL;
    }
    bool dead = mp_item_dead(it, now, l->epoch);
    if (!dead && mp_item_hits(it) > 0) {
        mp_item_promote(it);
        c->small_promoted++;
        return NULL;
    }
    if (take_item(l, c, it, now, TAKE_EVICT_SMALL))
        return release_locked(l, cls, it, it) ? it : NULL; /* (a chain's head, should one be here) */
    /* In use or its stripe busy: it stays, in the main queue, where the hand will find it. */
    mp_item_promote(it);
    return NULL;
}

/* The main hand passed the class's first chunk: a new turn begins (for the ghost's rule). */
static void turn_begins(struct mp_lru *l, struct mp_lru_small *q)
{
    uint64_t now = mp_ghost_added(&l->ghost);
    if (q->turn_start != UINT64_MAX)
        q->turn_len = now - q->turn_start;
    q->turn_start = now;
}

/*
 * The main queue's CLOCK. Each chunk with hits loses one as the hand passes, so four full turns
 * take every count to zero; a fifth turn evicts regardless of hits and queue and only skips what
 * is in use. Items that are in use (refs > 1) or whose stripe is busy are skipped on every turn,
 * and small items (the small queue's) on the first four. A chain's chunk stands for its item at
 * the chain's first chunk and is passed over at the others (lru.h); the chunk the hand stopped at
 * is the one returned, the rest of the chain freed.
 */
static struct mp_item *main_take(struct mp_lru *l, unsigned cls, uint32_t now)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    uint64_t turn = (uint64_t)c->npages * c->perpage;
    uint64_t limit = turn * 5;
    for (uint64_t step = 0; step < limit; step++) {
        struct mp_item *it = cursor_take(s, c, &c->hand_page, &c->hand_chunk);
        if (c->hand_page == c->first_page && c->hand_chunk == 1)
            turn_begins(l, &l->small[cls]);
        bool chunk = atomic_load_explicit(&it->iflags, memory_order_relaxed) & MP_ITEM_CHUNK;
        if (chunk && mp_chain_index(it) != 0)
            continue;
        struct mp_item *item = item_of(s, it);
        if (!mp_item_linked(item))
            continue;
        if (step < turn * 4 && !mp_item_dead(item, now, l->epoch) && (mp_item_small(item) || mp_item_clock_decay(item)))
            continue;
        if (take_item(l, c, item, now, TAKE_EVICT) && release_locked(l, cls, item, it)) {
            if (chunk) { /* no longer a chain's: an ordinary chunk the caller takes */
                c->chunks--;
                atomic_store_explicit(&it->iflags, 0, memory_order_relaxed);
            }
            return it;
        }
    }
    return NULL;
}

/* The new item's queue: main if the ghost remembers its key from less than half a turn of the
 * main hand ago (lru.h), else small, if its FIFO has room. */
static void admit(struct mp_lru *l, unsigned cls, struct mp_item *chunk, const char *key, size_t nkey)
{
    if (!key)
        return; /* a chain's head or chunk: main queue (lru.h) */
    struct mp_slab_class *c = &l->slabs->classes[cls];
    if ((uint64_t)c->npages * c->perpage * MP_LRU_SMALL_PERCENT / 100 < MP_LRU_SMALL_MIN)
        return; /* too few chunks for a small queue (lru.h) */
    struct mp_lru_small *q = &l->small[cls];
    uint64_t age = mp_ghost_take(&l->ghost, mp_table_hash(l->table, key, nkey));
    if (age != MP_GHOST_ABSENT && (q->turn_len == 0 || age <= q->turn_len / 2)) {
        c->ghost_hits++;
        return;
    }
    if (fifo_push(q, mp_slab_handle(l->slabs, chunk)))
        mp_item_set_small(chunk);
}

bool mp_lru_small_join(struct mp_lru *l, struct mp_item *it)
{
    struct mp_slabs *s = l->slabs;
    unsigned cls = mp_slab_class_of(s, it);
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    bool joined = fifo_push(&l->small[cls], mp_slab_handle(s, it));
    if (joined)
        mp_item_set_small(it);
    pthread_mutex_unlock(&c->lock);
    return joined;
}

/* What a class's pressed_at is read against: evictions (the ghost's additions) and page steals so
 * far, both only ever growing. */
static uint64_t pressure_clock(const struct mp_lru *l)
{
    return mp_ghost_added(&l->ghost) + atomic_load_explicit(&((struct mp_lru *)l)->steals, memory_order_relaxed);
}

struct mp_item *mp_lru_evict_locked(struct mp_lru *l, unsigned cls, uint32_t now, const char *key, size_t nkey)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    if (c->first_page == MP_SLAB_NONE)
        return NULL;
    struct mp_lru_small *q = &l->small[cls];
    uint64_t target = (uint64_t)c->npages * c->perpage * MP_LRU_SMALL_PERCENT / 100;
    if (target == 0)
        target = 1;
    struct mp_item *it = NULL;
    /* Bounded: each pass takes an entry off the FIFO or sends one to its back. */
    for (uint32_t n = q->count; !it && n > 0 && q->count >= target; n--)
        it = small_pop(l, cls, now);
    if (!it)
        it = main_take(l, cls, now);
    c->pressed_at = pressure_clock(l);
    if (!it) {
        c->outofmemory++;
        return NULL;
    }
    /* Still counted in c->used, and taken (refs 1) before the class lock is let go, as
     * mp_slab_alloc_locked does; its stamp zeroed as a free would (item.h). */
    mp_item_stamp_fresh(it, 0, memory_order_relaxed);
    atomic_store_explicit(&it->refs, 1, memory_order_relaxed);
    c->direct_reclaims++;
    admit(l, cls, it, key, nkey);
    return it;
}

/* A live item the reclaim pass passes: its last access kept within range (item.h), its age and
 * size counted for the turn. Under the class lock, which keeps the chunk from being reused; the
 * fields are read atomically since a store may rewrite them in place meanwhile. */
static void measure(struct mp_lru *l, unsigned cls, struct mp_item *it, uint32_t now)
{
    mp_item_la_keep(it, now);
    uint32_t age = mp_item_la_age(mp_item_stamp(it), now);
    if (age > l->crawl_age[cls])
        l->crawl_age[cls] = age;
    if (mp_item_chained(it)) {
        l->crawl_bytes[cls] += mp_chain_footprint(l->slabs, it); /* its chunks count in theirs */
        return;
    }
    uint32_t nbytes = __atomic_load_n(&it->nbytes, __ATOMIC_RELAXED);
    l->crawl_bytes[cls] += mp_item_total(it->nkey, nbytes, mp_item_has_cflags(it) ? 1 : 0);
}

/* The pass has looked at every chunk of the class once: publish what it measured. */
static void turn_done(struct mp_lru *l, struct mp_slab_class *c, unsigned cls)
{
    c->age = l->crawl_age[cls];
    c->mem_requested = l->crawl_bytes[cls];
    l->crawl_age[cls] = 0;
    l->crawl_bytes[cls] = 0;
}

size_t mp_lru_reclaim(struct mp_lru *l, unsigned cls, uint32_t now, size_t budget)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    size_t freed = 0;
    pthread_mutex_lock(&c->lock);
    if (c->first_page != MP_SLAB_NONE) {
        /* chunks the cursor passes in one turn: all but the bump page's never-used ones */
        uint64_t total =
            (uint64_t)c->npages * c->perpage - (c->bump_page != MP_SLAB_NONE ? c->perpage - c->bump_next : 0);
        if (budget > total)
            budget = (size_t)total;
        uint32_t page = l->crawl_page[cls], chunk = l->crawl_chunk[cls];
        /* A cursor left on a page that has since moved to another class starts over. */
        if (page != MP_SLAB_NONE && atomic_load_explicit(&s->page_class[page], memory_order_relaxed) != cls)
            page = MP_SLAB_NONE;
        for (size_t i = 0; i < budget; i++) {
            struct mp_item *it = cursor_take(s, c, &page, &chunk);
            if (page == c->first_page && chunk == 1) {
                /* back at the class's first chunk: a turn ends (if one had begun) */
                if (l->crawl_seen[cls])
                    turn_done(l, c, cls);
                l->crawl_seen[cls] = 1;
            }
            if (atomic_load_explicit(&it->iflags, memory_order_relaxed) & MP_ITEM_CHUNK) {
                /* a chain's chunk, not an item: its bytes count, its head is looked at in its class */
                l->crawl_bytes[cls] += MP_ITEM_HDR + it->nbytes;
            } else if (mp_item_linked(it)) {
                c->crawler_items_checked++;
                if (mp_item_dead(it, now, l->epoch)) {
                    if (take_item(l, c, it, now, TAKE_RECLAIM)) {
                        release_locked(l, cls, it, NULL);
                        freed++;
                    }
                } else {
                    measure(l, cls, it, now);
                }
            }
        }
        l->crawl_page[cls] = page;
        l->crawl_chunk[cls] = chunk;
    }
    pthread_mutex_unlock(&c->lock);
    mp_lru_orphans_free(l);
    return freed;
}

static int evacuate_locked(struct mp_lru *l, unsigned cls, uint32_t page, uint32_t now)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    /* Chunks in threads' magazines go back to the free list, so they count as free below. */
    mp_slab_cache_drain_locked(s, cls);
    uint32_t n = page_chunks(c, page);
    for (uint32_t i = 0; i < n; i++) {
        struct mp_item *it = chunk_at(s, c, page, i);
        if (mp_item_has(it, MP_ITEM_FREE))
            continue;
        /* A chain's chunk goes with the whole item it belongs to (lru.h). */
        struct mp_item *item = item_of(s, it);
        if (!mp_item_linked(item))
            return -EBUSY; /* being filled, still read after its unlink, or on its way to the free list */
        if (!take_item(l, c, item, now, TAKE_MOVE))
            return -EBUSY;
        release_locked(l, cls, item, NULL);
        if (!mp_item_has(it, MP_ITEM_FREE))
            return -EBUSY; /* its chain's head waits in the orphans, which the retry frees */
    }
    mp_slab_page_release_locked(s, cls, page);
    return 0;
}

/*
 * Evacuate with retries. An item's stripe is busy (trylock fails) typically because a request
 * holds it and waits for this very class lock (to free the old value of a key it replaces), so
 * waiting with the class lock held would never end: let go, give the request a moment, and go
 * on from where the page was left (items already taken stay free). Called and returns with the
 * class lock held.
 */
static int evacuate_patiently(struct mp_lru *l, unsigned cls, uint32_t page, uint32_t now)
{
    struct mp_slab_class *c = &l->slabs->classes[cls];
    for (int tries = 0;; tries++) {
        int rc = evacuate_locked(l, cls, page, now);
        if (rc == 0 || tries == 50)
            return rc;
        pthread_mutex_unlock(&c->lock);
        mp_lru_orphans_free(l);
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&c->lock);
        /* meanwhile a class short of memory may have taken this very page (mp_lru_page_steal) */
        if (atomic_load_explicit(&l->slabs->page_class[page], memory_order_relaxed) != cls)
            return -EBUSY;
    }
}

int mp_lru_page_evacuate(struct mp_lru *l, unsigned cls, uint32_t page, uint32_t now)
{
    struct mp_slab_class *c = &l->slabs->classes[cls];
    pthread_mutex_lock(&c->lock);
    int rc = evacuate_locked(l, cls, page, now);
    pthread_mutex_unlock(&c->lock);
    mp_lru_orphans_free(l);
    if (rc == 0)
        mp_slab_pages_recycle(l->slabs);
    return rc;
}

int mp_lru_page_steal(struct mp_lru *l, unsigned cls, uint32_t now)
{
    struct mp_slabs *s = l->slabs;
    atomic_fetch_add_explicit(&l->steals, 1, memory_order_relaxed);
    uint64_t mark = pressure_clock(l);
    pthread_mutex_lock(&s->classes[cls].lock);
    s->classes[cls].pressed_at = mark;
    pthread_mutex_unlock(&s->classes[cls].lock);
    /* The donor (lru.h): a class with two pages or more if there is one, the one that has gone
     * longest without needing memory, and of those the one with the most pages. */
    unsigned donor = 0;
    uint32_t most = 0;
    uint64_t oldest = UINT64_MAX;
    for (unsigned i = 1; i <= s->nclasses; i++) {
        if (i == cls)
            continue;
        struct mp_slab_class *c = &s->classes[i];
        pthread_mutex_lock(&c->lock);
        uint32_t np = c->npages;
        uint64_t pressed = c->pressed_at;
        pthread_mutex_unlock(&c->lock);
        if (np == 0)
            continue;
        bool better = !donor                     ? true
                      : (np >= 2) != (most >= 2) ? np >= 2
                      : pressed != oldest        ? pressed < oldest
                                                 : np > most;
        if (better) {
            donor = i;
            most = np;
            oldest = pressed;
        }
    }
    if (!donor)
        return -ENOMEM;
    struct mp_slab_class *c = &s->classes[donor];
    pthread_mutex_lock(&c->lock);
    int rc = -ENOMEM;
    /* From the page under the hand on, the first that can be emptied: one item in use (a large
     * value being written to a client) must not make the whole class unable to give. */
    uint32_t page = c->hand_page != MP_SLAB_NONE ? c->hand_page : c->first_page;
    for (uint32_t tries = 0; page != MP_SLAB_NONE && tries < c->npages && tries < 8; tries++) {
        uint32_t next = s->page_next[page] != MP_SLAB_NONE ? s->page_next[page] : c->first_page;
        rc = evacuate_locked(l, donor, page, now);
        if (rc == 0)
            break;
        page = next;
    }
    pthread_mutex_unlock(&c->lock);
    mp_lru_orphans_free(l);
    if (rc == 0) {
        mp_slab_pages_recycle(s);
        pthread_mutex_lock(&s->classes[cls].lock);
        s->classes[cls].pages_moved_in++;
        pthread_mutex_unlock(&s->classes[cls].lock);
    }
    return rc;
}

/*
 * Automove. A class that evicts while another has not needed to is short of pages. The donor is
 * the class with the most pages among those that did not evict since the last look and keep more
 * than one page; its page under the clock hand (the one it would evict from next) is emptied and
 * returned to the pool, where the evicting class picks it up on its next allocation. A donor's
 * items are evicted as they would be anyway if it were the one under pressure.
 */
unsigned mp_lru_automove(struct mp_lru *l, uint32_t now, unsigned max_pages)
{
    struct mp_slabs *s = l->slabs;
    unsigned needy = 0, donor = 0;
    uint64_t most_evictions = 0;
    uint32_t most_pages = 1;
    for (unsigned i = 1; i <= s->nclasses; i++) {
        struct mp_slab_class *c = &s->classes[i];
        pthread_mutex_lock(&c->lock);
        uint64_t pressure = c->evictions + c->outofmemory;
        uint64_t recent = pressure - c->pressure_seen;
        c->pressure_seen = pressure;
        if (recent > most_evictions) {
            most_evictions = recent;
            needy = i;
        } else if (recent == 0 && c->npages > most_pages) {
            most_pages = c->npages;
            donor = i;
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (!needy || !donor || donor == needy)
        return 0;
    unsigned moved = 0;
    struct mp_slab_class *c = &s->classes[donor];
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < max_pages && c->npages > 1; i++) {
        uint32_t page = c->hand_page != MP_SLAB_NONE ? c->hand_page : c->first_page;
        if (evacuate_patiently(l, donor, page, now) != 0) {
            /* Something on it stays in use: try the next page on the next tick. */
            if (atomic_load_explicit(&s->page_class[page], memory_order_relaxed) == donor) {
                c->hand_page = s->page_next[page] != MP_SLAB_NONE ? s->page_next[page] : c->first_page;
                c->hand_chunk = 0;
            }
            break;
        }
        moved++;
    }
    pthread_mutex_unlock(&c->lock);
    mp_lru_orphans_free(l);
    if (moved) {
        mp_slab_pages_recycle(s);
        pthread_mutex_lock(&s->classes[needy].lock);
        s->classes[needy].pages_moved_in += moved;
        pthread_mutex_unlock(&s->classes[needy].lock);
    }
    return moved;
}

/* Evacuate the page under class cls's hand (the one it would evict from next) into limbo; the
 * caller recycles. 0, or -EBUSY (an item on it stays in use: the hand moves on, so the next try
 * takes another page) or -ENOMEM (no page). */
static int evacuate_one(struct mp_lru *l, unsigned cls, uint32_t now)
{
    struct mp_slabs *s = l->slabs;
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    int rc = -ENOMEM;
    if (c->npages > 0) {
        uint32_t page = c->hand_page != MP_SLAB_NONE ? c->hand_page : c->first_page;
        rc = evacuate_patiently(l, cls, page, now);
        if (rc != 0 && atomic_load_explicit(&s->page_class[page], memory_order_relaxed) == cls) {
            c->hand_page = s->page_next[page] != MP_SLAB_NONE ? s->page_next[page] : c->first_page;
            c->hand_chunk = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    mp_lru_orphans_free(l);
    if (rc == -EBUSY)
        atomic_fetch_add_explicit(&l->busy_moves, 1, memory_order_relaxed);
    return rc;
}

static uint32_t class_pages(struct mp_slabs *s, unsigned cls)
{
    pthread_mutex_lock(&s->classes[cls].lock);
    uint32_t n = s->classes[cls].npages;
    pthread_mutex_unlock(&s->classes[cls].lock);
    return n;
}

/* The class with the most pages, other than `not`; 0 when none has at least `min`. */
static unsigned largest_class(struct mp_slabs *s, unsigned not, uint32_t min)
{
    unsigned best = 0;
    uint32_t most = min ? min - 1 : 0;
    for (unsigned i = 1; i <= s->nclasses; i++) {
        uint32_t n = i == not ? 0 : class_pages(s, i);
        if (n > most) {
            most = n;
            best = i;
        }
    }
    return best;
}

enum mp_lru_reassign mp_lru_reassign(struct mp_lru *l, int src, int dst)
{
    struct mp_slabs *s = l->slabs;
    pthread_mutex_lock(&l->lock);
    enum mp_lru_reassign rc = MP_REASSIGN_OK;
    if (l->reassign_pending)
        rc = MP_REASSIGN_RUNNING;
    else if (src == dst)
        rc = MP_REASSIGN_SAME;
    if (rc == MP_REASSIGN_OK && src == -1) /* memcached: pick one ourselves */
        src = (int)largest_class(s, dst > 0 ? (unsigned)dst : 0, 2);
    if (rc == MP_REASSIGN_OK && (src < 0 || src > (int)s->nclasses || dst < 0 || dst > (int)s->nclasses))
        rc = MP_REASSIGN_BADCLASS;
    if (rc == MP_REASSIGN_OK && (src == 0 ? mp_slab_pool_pages(s) : class_pages(s, (unsigned)src)) < 2)
        rc = MP_REASSIGN_NOSPARE;
    if (rc == MP_REASSIGN_OK) {
        l->reassign_pending = true;
        l->reassign_src = src;
        l->reassign_dst = dst;
        pthread_cond_signal(&l->wake);
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* The maintainer's half of a reassign: a page out of src (or the pool) and into dst (or the pool). */
static void do_reassign(struct mp_lru *l, int src, int dst, uint32_t now)
{
    if (src > 0) {
        int rc = -EBUSY;
        for (int tries = 0; tries < 8 && rc == -EBUSY; tries++)
            rc = evacuate_one(l, (unsigned)src, now);
        if (rc != 0)
            return;
        mp_slab_pages_recycle(l->slabs);
    }
    if (dst > 0 && mp_slab_page_grant(l->slabs, (unsigned)dst) == 0) {
        struct mp_slab_class *c = &l->slabs->classes[dst];
        pthread_mutex_lock(&c->lock);
        c->pages_moved_in++;
        pthread_mutex_unlock(&c->lock);
    }
}

unsigned mp_lru_shrink(struct mp_lru *l, uint32_t now, unsigned max_pages)
{
    unsigned moved = 0;
    /* Pages released wait in limbo, still counted, until the recycle below: count them off here. */
    uint32_t over = mp_slab_over_limit(l->slabs);
    for (unsigned i = 0; i < max_pages && i < over; i++) {
        unsigned cls = largest_class(l->slabs, 0, 1);
        if (!cls || evacuate_one(l, cls, now) != 0)
            break;
        moved++;
    }
    if (moved)
        mp_slab_pages_recycle(l->slabs);
    return moved;
}

static void *maintainer_main(void *arg)
{
    struct mp_lru *l = arg;
    unsigned ticks = 0;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        bool reassign = l->reassign_pending;
        int src = l->reassign_src, dst = l->reassign_dst;
        pthread_mutex_unlock(&l->lock);
        uint32_t now = mp_clock_now(l->clock);
        atomic_fetch_add_explicit(&l->juggles, 1, memory_order_relaxed);
        mp_lru_orphans_free(l);
        if (atomic_load_explicit(&l->crawler, memory_order_relaxed))
            for (unsigned cls = 1; cls <= l->slabs->nclasses; cls++)
                mp_lru_reclaim(l, cls, now, RECLAIM_BUDGET);
        if (reassign)
            do_reassign(l, src, dst, now);
        mp_lru_shrink(l, now, 16);
        /* Automove looks at one second of evictions at a time, so one burst does not move pages
         * back and forth; level 2 looks every tick. */
        int level = atomic_load_explicit(&l->automove, memory_order_relaxed);
        ++ticks;
        if (level == 2 || (level == 1 && ticks % (1000 / TICK_MS) == 0))
            mp_lru_automove(l, now, 16);
        pthread_mutex_lock(&l->lock);
        if (reassign)
            l->reassign_pending = false;
        if (l->stop)
            break;
        if (l->reassign_pending)
            continue; /* asked for while this tick ran: at once */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* the condition variable's clock (setup) */
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

int mp_lru_maintainer_start(struct mp_lru *l, const struct mp_clock *clk, int automove)
{
    l->clock = clk;
    atomic_store(&l->automove, automove);
    l->stop = false;
    int rc = pthread_create(&l->thread, NULL, maintainer_main, l);
    if (rc != 0)
        return -rc;
    l->running = true;
    return 0;
}

void mp_lru_maintainer_stop(struct mp_lru *l)
{
    if (!l->running)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    l->running = false;
}

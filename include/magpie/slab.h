/*
 * slab: size classes and pages under the hard memory limit (-m).
 *
 * Owns the arena (one anonymous mapping, reserved but touched only as pages are used, so RSS
 * follows use), its division into pages, the size classes, and the free chunks of each class.
 * The limit (-m, changed at run time by cache_memlimit) is a number of pages that classes may hold
 * at once; the mapping reserves room for four times -m (at least 1 GiB, at most what 32-bit
 * handles reach), so the limit can grow without moving anything. Pages over a lowered limit are
 * taken back by the maintainer (lru.h), as automove takes them. It does not know what is in a chunk beyond the
 * free/used state of struct mp_item's refs and links (see item.h); choosing a victim when a class is full is lru.h's
 * job.
 *
 * Size classes grow from the minimum chunk by the factor -f, by at least 8 bytes a step, up to a
 * 32nd of a page (MP_SLAB_SPLIT); from there they are the sizes that cut a page into k equal
 * chunks (a 31st, a 30th, ... a half), so a page of large items loses nothing at its end and an
 * item of any size gets as many of its kind into a page as fit (a class by the factor could put
 * up to a chunk fewer in, 10% at 100 KB). The largest class is half a page (memcached's
 * slab_chunk_max); chunks are 8-byte aligned. Pages are
 * 1 MiB whatever -I is, and belong to one class at a time; a page can be taken back (evacuated by
 * lru.h) and given to another class. An item larger than the largest class is a chain of chunks
 * of it (chain.h), so a large -I costs small items no pages. A chunk of a chain carries
 * MP_ITEM_CHUNK (item.h), which the slab sets and clears under the class lock, so whoever walks a
 * class's chunks under its lock (lru.h, dumps) tells it from an item.
 *
 * Thread caches: each thread that stores or frees items through the cache (cache.h) keeps a few
 * chunks of each small class (up to MP_SLAB_MAG_MAX, and MP_SLAB_MAG_BYTES of them) in its own
 * magazine, so a set does not take the class lock twice. A magazine holds two stacks: `ready`,
 * chunks taken off the class's free list that the thread hands out to new items, and `freed`,
 * chunks the thread freed. Both move in batches under one class lock: when `ready` runs out, the
 * `freed` ones go onto the free list and a batch comes back off it. A freed chunk is never handed
 * out again without passing the class lock: the CLOCK hand, the reclaimer and page evacuation
 * (lru.h) read items' keys and times under the class lock without the stripe lock, and that lock
 * is what keeps a chunk they look at from being rewritten meanwhile. Magazine chunks are neither
 * linked nor marked MP_ITEM_FREE, so a page evacuation sees them as busy until it drains every
 * thread's magazine of that class onto the free list (mp_slab_cache_drain_locked), which it does
 * first. The caches belong to the mp_slabs (registered in `caches`, freed at teardown), not to
 * their threads, so a thread that ends leaves nothing behind that a drain cannot reach. A class's
 * `used` counts the chunks in magazines too: mp_slab_used_locked() is the number holding items.
 *
 * Locks: each class has a mutex that guards its free list, bump pointer, page chain, clock hand
 * and counters. `pages_lock` guards the pool of unassigned pages and is taken inside a class lock,
 * never the other way round. Stripe locks (table.h) may be held when a class lock is taken; a
 * class lock holder takes a stripe lock only with trylock (see lru.h). A thread cache's own lock
 * is taken after a class lock and `caches_lock` (drains, stats), or alone by its thread, which
 * never holds it while it takes another.
 */
#ifndef MAGPIE_SLAB_H
#define MAGPIE_SLAB_H

#include <pthread.h>
#include <stdint.h>

#include "magpie/grace.h"
#include "magpie/item.h"

#define MP_SLAB_CLASSES_MAX 1023 /* 1.04 from 56 bytes is 171 classes */
#define MP_SLAB_NONE UINT32_MAX
#define MP_SLAB_ALIGN 8u
/* Classes from a page / MP_SLAB_SPLIT up cut a page into equal chunks (see above). */
#define MP_SLAB_SPLIT 32u
#define MP_SLAB_ARENA_MAX ((size_t)UINT32_MAX * MP_SLAB_ALIGN - MP_SLAB_ALIGN) /* 32-bit handles */
#define MP_SLAB_MAG_MAX 32                                                     /* chunks a thread keeps per class */
#define MP_SLAB_MAG_BYTES 16384u /* and at most this many bytes of them; larger classes keep none */

struct mp_slab_class {
    pthread_mutex_t lock;
    uint32_t size;    /* chunk size */
    uint32_t perpage; /* chunks in a page */
    mp_handle_t free_head;
    uint32_t nfree;
    uint32_t first_page; /* chain through mp_slabs.page_next, oldest page first */
    uint32_t last_page;
    uint32_t npages;
    uint32_t bump_page; /* page with never-used chunks, or MP_SLAB_NONE */
    uint32_t bump_next; /* index of its first never-used chunk */
    uint32_t hand_page; /* CLOCK hand: page and chunk index (lru.h) */
    uint32_t hand_chunk;
    uint64_t used;   /* chunks holding an item (linked or not) or a part of a chain */
    uint64_t chunks; /* of those, chunks of chains (MP_ITEM_CHUNK) */
    /* counters, memcached's names (stats items / stats slabs) */
    uint64_t evictions;
    uint64_t evicted_unfetched;
    uint64_t evicted_nonzero;       /* evicted while it had an exptime */
    uint64_t evicted_for_move;      /* evicted because automove took their page */
    uint64_t evicted_active;        /* evicted with CLOCK hits left (the hand's last turn) */
    uint64_t evicted_time;          /* seconds since the last access of the latest item evicted */
    uint64_t reclaimed;             /* expired items found and freed on the request path */
    uint64_t crawler_reclaimed;     /* expired items freed by the maintainer's reclaim pass */
    uint64_t crawler_items_checked; /* items the reclaim pass looked at */
    uint64_t lrutail_reflocked;     /* items the hand passed over because a reader held them */
    uint64_t direct_reclaims;       /* chunks the request path got by evicting or reclaiming */
    uint64_t expired_unfetched;
    uint64_t outofmemory;
    uint64_t pages_moved_in;
    uint64_t pages_moved_out;
    uint64_t small_evicted;  /* evicted from the small queue unread: never admitted to main (lru.h) */
    uint64_t small_promoted; /* read while in the small queue, moved to the main one */
    uint64_t ghost_hits;     /* new items the ghost sent straight to the main queue */
    uint64_t pressure_seen;  /* evictions + outofmemory at the last automove look (lru.h) */
    uint64_t pressed_at;     /* evictions and page steals so far when it last evicted or stole (lru.h) */
    /* As of the reclaim pass's last full turn over the class (lru.h): */
    uint32_t age;           /* the longest time since an item's last access, seconds */
    uint64_t mem_requested; /* the bytes its items take (mp_item_total) */
} __attribute__((aligned(64)));

/* One thread's magazine for one class (see above). */
struct mp_slab_mag {
    uint32_t nready, nfreed;
    mp_handle_t ready[MP_SLAB_MAG_MAX]; /* taken off the class's free list, to hand out */
    mp_handle_t freed[MP_SLAB_MAG_MAX]; /* freed by this thread, for the class's free list */
};

struct mp_slab_cache {
    pthread_mutex_t lock; /* guards mags */
    pthread_t owner;
    struct mp_slab_cache *next; /* in mp_slabs.caches */
    struct mp_slab_mag mags[];  /* indexed by class, 1..nclasses */
};

struct mp_slabs {
    uint64_t id; /* tells this arena's thread caches from those of an arena set up before */
    char *arena;
    size_t arena_size;
    uintptr_t base; /* arena - MP_SLAB_ALIGN, so handle 0 is never a chunk */
    uint32_t page_size;
    uint32_t npages_max; /* pages the arena has room for */
    size_t item_max;
    pthread_mutex_t pages_lock;
    _Atomic uint32_t npages;      /* the limit: pages classes may hold at once (-m, cache_memlimit) */
    uint32_t pages_held;          /* pages classes hold now, and those in limbo */
    uint32_t pages_bump;          /* pages [0, pages_bump) have been handed out once */
    uint32_t pages_free;          /* chain of returned pages through page_next */
    uint32_t pages_nfree;         /* pages on that chain */
    uint32_t pages_limbo;         /* returned, waiting for readers' grace period (recycle) */
    _Atomic uint16_t *page_class; /* class of each page; 0 = unassigned */
    uint32_t *page_next;
    struct mp_grace *grace;       /* optimistic readers to wait for before a page changes class; may be NULL */
    unsigned nclasses;            /* classes are 1..nclasses */
    pthread_mutex_t caches_lock;  /* guards the caches list */
    struct mp_slab_cache *caches; /* every thread's, see above */
    uint8_t mag_cap[MP_SLAB_CLASSES_MAX + 1]; /* chunks a magazine holds for each class; 0 = none */
    struct mp_slab_class classes[MP_SLAB_CLASSES_MAX + 1];
};

/* Lay out classes and reserve the arena. Returns 0, or -EINVAL (a bad shape: the message is in
 * err) or -ENOMEM. */
int mp_slab_setup(struct mp_slabs *s, size_t mem_limit, size_t item_max, size_t min_chunk, double factor, char *err,
                  size_t errlen);
void mp_slab_teardown(struct mp_slabs *s);

/* The smallest class whose chunks hold `total` bytes, or 0 when it is larger than -I or than the
 * largest class (a chain's business, chain.h). */
unsigned mp_slab_class_for(const struct mp_slabs *s, size_t total);

static inline struct mp_item *mp_slab_item(const struct mp_slabs *s, mp_handle_t h)
{
    return (struct mp_item *)(s->base + (uintptr_t)h * MP_SLAB_ALIGN);
}

/* Whether n bytes from p lie inside the arena: for readers that follow links without a lock. */
static inline bool mp_slab_contains(const struct mp_slabs *s, const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)s->arena, q = (uintptr_t)p;
    return q >= a && n <= s->arena_size && q - a <= s->arena_size - n;
}

static inline mp_handle_t mp_slab_handle(const struct mp_slabs *s, const struct mp_item *it)
{
    return (mp_handle_t)(((uintptr_t)it - s->base) / MP_SLAB_ALIGN);
}

static inline uint32_t mp_slab_page_of(const struct mp_slabs *s, const struct mp_item *it)
{
    return (uint32_t)(((uintptr_t)it - (uintptr_t)s->arena) / s->page_size);
}

static inline unsigned mp_slab_class_of(const struct mp_slabs *s, const struct mp_item *it)
{
    return atomic_load_explicit(&s->page_class[mp_slab_page_of(s, it)], memory_order_relaxed);
}

/* The size of the chunk an item lives in (its class's). */
static inline uint32_t mp_slab_chunk_size(const struct mp_slabs *s, const struct mp_item *it)
{
    return s->classes[mp_slab_class_of(s, it)].size;
}

static inline char *mp_slab_page_addr(const struct mp_slabs *s, uint32_t page)
{
    return s->arena + (size_t)page * s->page_size;
}

/* A free chunk of class cls, from its free list, its bump page, or a new page; NULL when the class
 * has none and no page is left (the caller then evicts, see lru.h). The chunk has refs == 1 (it
 * is the caller's) and must be initialised with mp_item_init(). */
struct mp_item *mp_slab_alloc(struct mp_slabs *s, unsigned cls);
struct mp_item *mp_slab_alloc_locked(struct mp_slabs *s, unsigned cls);

/* The largest class: the one chains are made of (chain.h). */
static inline unsigned mp_slab_chunk_class(const struct mp_slabs *s)
{
    return s->nclasses;
}

/* Make a chunk just allocated from class cls (refs 1, not yet seen by anyone) the `index`th chunk
 * of the chain of `head`, holding `used` bytes of its value: its header (item.h) is written and
 * MP_ITEM_CHUNK set under the class lock, so a walker holding the lock sees it whole. */
void mp_slab_chunk_mark(struct mp_slabs *s, unsigned cls, struct mp_item *chunk, mp_handle_t head, uint32_t index,
                        uint32_t used);

/* Return a chunk whose last reference is gone. Freeing zeroes the item's stamp, so a late
 * optimistic reader's hit finds no item there (item.h). */
void mp_slab_free(struct mp_slabs *s, struct mp_item *it);
void mp_slab_free_locked(struct mp_slabs *s, unsigned cls, struct mp_item *it);

/* The calling thread's cache: a chunk of class cls from its magazine, refilled from the class when
 * empty, with refs == 1 like mp_slab_alloc(); NULL when the class keeps no magazines or has no
 * free chunk and no page left (the caller then evicts under the class lock, see lru.h). */
struct mp_item *mp_slab_cache_alloc(struct mp_slabs *s, unsigned cls);

/* Return a chunk whose last reference is gone to the calling thread's magazine (or, for a class
 * without magazines, to the class). */
void mp_slab_cache_free(struct mp_slabs *s, struct mp_item *it);

/* Move every thread's cached chunks of class cls back onto its free list. The caller holds cls's
 * lock. */
void mp_slab_cache_drain_locked(struct mp_slabs *s, unsigned cls);

/* Chunks of class cls holding an item (or being filled): `used` less the thread caches' chunks.
 * The caller holds cls's lock. */
uint64_t mp_slab_used_locked(struct mp_slabs *s, unsigned cls);

/* Take a page, all of whose chunks the caller has made free, off class cls (its free chunks leave
 * the free list) and put it, emptied, in limbo: no class can take it until mp_slab_pages_recycle
 * has moved it to the pool. The caller holds cls's lock. */
void mp_slab_page_release_locked(struct mp_slabs *s, unsigned cls, uint32_t page);

/* Move the pages in limbo to the pool, where the next class that needs a page takes them, once
 * every optimistic read that might have seen one of their items has ended (mp_grace_wait; see
 * grace.h and item.h): another class's items never share memory with a reader's view of this
 * one's. One wait serves every page released before it. Called with no class lock held, after a
 * release, by whoever released. */
void mp_slab_pages_recycle(struct mp_slabs *s);

/* Commit up to `bytes` of the pages no class has had yet, in one call and in huge pages where the
 * kernel has them: a loader about to fill them (snapshot.h) then takes no fault per 4 KiB, which
 * in a virtual machine costs more than the copy. Only for memory about to be written whole: it
 * costs RSS at once. Best effort (without MADV_POPULATE_WRITE pages fault in as they are used). */
void mp_slab_prefault(struct mp_slabs *s, size_t bytes);

/* Bytes of pages handed to classes (memcached's total_malloced). */
uint64_t mp_slab_malloced(struct mp_slabs *s);

/* cache_memlimit: a new limit in bytes. 0, or -ERANGE when the arena has no room for it (or it is
 * under one page). A lower limit stops classes from taking pages; mp_slab_over_limit says how
 * many they must give back. */
int mp_slab_set_limit(struct mp_slabs *s, size_t bytes);
uint64_t mp_slab_limit(const struct mp_slabs *s);
/* Pages classes hold beyond the limit. */
uint32_t mp_slab_over_limit(struct mp_slabs *s);
/* Pages in the pool: returned by a class and not taken again (memcached's slab_global_page_pool). */
uint32_t mp_slab_pool_pages(struct mp_slabs *s);
/* A page from the pool for class cls, right away (slabs reassign): its chunks go on the class's
 * free list. 0, or -ENOMEM when the pool is empty or the class is at the limit. The caller holds
 * no class lock. */
int mp_slab_page_grant(struct mp_slabs *s, unsigned cls);

#endif

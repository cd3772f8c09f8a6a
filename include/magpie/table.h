/*
 * table: the lock-striped hash table, keyed by XXH3 of the key.
 *
 * Owns the buckets and the chains through mp_item.next; the items themselves belong to the slab
 * arena. The table is 2^stripe_bits independent stripes, each a small chained hash table with its
 * own mutex, bucket array and counts. A key's stripe is chosen by the high bits of its 64-bit hash
 * and its bucket by the low bits, so a stripe grows (doubles, rehashing only its own items) under
 * its own lock, and no operation ever stops the whole table.
 *
 * Lock order: a stripe lock may be held while taking a slab class lock (allocating or freeing);
 * code that holds a class lock takes a stripe lock only with trylock. At most one stripe lock is
 * held at a time.
 *
 * Buckets are 32-bit item handles, so the table costs about 4 to 6 bytes per item. It lives
 * outside the -m arena, as memcached's does.
 *
 * Optimistic reads. A get need not take the stripe lock, whose cache line would then move to its
 * core on every read: it reads the stripe's sequence count, walks the chain, reads the item's
 * stamp (item.h) and copies the item without any lock, and keeps what it copied only if the count
 * and the item's CAS are unchanged afterwards. A lock holder that changes the stripe's chains, or
 * an item in place in any way but the one below, makes the count odd first
 * (mp_stripe_begin_write; mp_stripe_lock does so at once, and the table's own changes do so
 * themselves) and mp_stripe_unlock makes it even again. The one exception is a store that writes
 * a new value over the item it replaces (mp_table_overwrite_locked), under
 * mp_stripe_lock_readers_untold: it sets the item's stamp to 0 while it writes and then to the new
 * CAS, which no earlier reader can have seen, so the count, and the cache line it shares with the
 * bucket array's address, stay as every core's cache has them. Readers are not told of that lock
 * at all, which is what its name says; everything else its holder changes goes through a table
 * function that tells them, and the debug build asserts it (mp_stripe_assert_told).
 *
 * A reader may therefore see anything while it runs: links and fields of items being unlinked,
 * freed, reused by another key or moved to another class. It must bound every read (handles and
 * lengths are checked against the arena, chains against MP_TABLE_CHAIN_MAX) and act on nothing
 * before the count and the CAS confirm it. Bucket arrays a stripe has outgrown stay mapped (see
 * grow in table.c), so a reader still holding the old array reads memory that is there.
 *
 * Chains are bounded for every walker, locked or not: a link that would make a chain longer than
 * MP_TABLE_CHAIN_MAX is refused (the store fails as out of memory), which with a seeded hash and
 * a load factor of 1.5 happens only when the bucket array cannot grow.
 *
 * Hash flooding: the hash is XXH3 with a secret drawn from getrandom() when the table is set up,
 * so keys cannot be chosen offline to land in one chain.
 */
#ifndef MAGPIE_TABLE_H
#define MAGPIE_TABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/debug.h"
#include "magpie/item.h"
#include "magpie/slab.h"

/* Links a chain may have, for every walker (above). */
#define MP_TABLE_CHAIN_MAX 64
/* Bytes of the hash's secret (XXH3's default secret size). */
#define MP_TABLE_SECRET_SIZE 192

struct mp_stripe {
    /* What optimistic readers load; changed only under mp_stripe_begin_write. */
    _Atomic uint32_t seq; /* odd while a lock holder changes the stripe: optimistic reads (above) */
    uint32_t mask;        /* nbuckets - 1; stored after buckets, loaded before them */
    mp_handle_t *buckets; /* replaced on growth (atomically: optimistic readers load it) */
    /* What only lock holders touch, on a cache line of its own (see above). */
    _Alignas(64) pthread_mutex_t lock;
    bool writing; /* this holder made the count odd */
#ifdef MP_DEBUG
    pthread_t holder; /* who holds the lock, for the debug build's assertions */
    bool held;
#endif
    _Atomic uint32_t count; /* linked items */
    _Atomic uint64_t bytes; /* sum of their mp_item_total() */
    uint64_t resizes;
} __attribute__((aligned(64)));

struct mp_table {
    unsigned char secret[MP_TABLE_SECRET_SIZE]; /* the hash's, per process (above) */
    struct mp_slabs *slabs;
    unsigned stripe_bits;
    unsigned nstripes;
    struct mp_stripe *stripes;
    /* Where bucket arrays come from, and the outgrown ones, kept mapped (see table.c). */
    pthread_mutex_t buckets_lock;
    char *small; /* the region for arrays under a page */
    size_t small_pages;
    uint16_t *small_live;  /* arrays in use in each of its pages */
    size_t small_next[32]; /* by log2 of the array's bytes: where the next one starts */
    size_t small_end[32];
    struct mp_buckets_retired *retired; /* outgrown arrays of a page or more */
    size_t nretired, retired_cap;
};

/* The key's hash under this table's secret. */
uint64_t mp_table_hash(const struct mp_table *t, const char *key, size_t nkey);

/* stripe_bits stripes of initial_buckets buckets each (a power of two), and a fresh secret. 0 or
 * -ENOMEM. */
int mp_table_setup(struct mp_table *t, struct mp_slabs *slabs, unsigned stripe_bits, uint32_t initial_buckets);
void mp_table_teardown(struct mp_table *t);

static inline struct mp_stripe *mp_table_stripe(const struct mp_table *t, uint64_t hash)
{
    return &t->stripes[t->stripe_bits ? hash >> (64 - t->stripe_bits) : 0];
}

#ifdef MP_DEBUG
static inline void stripe_debug_hold(struct mp_stripe *st, bool on)
{
    st->held = on;
    if (on)
        st->holder = pthread_self();
}
/* The calling thread holds the stripe's lock. */
static inline bool mp_stripe_held(const struct mp_stripe *st)
{
    return st->held && pthread_equal(st->holder, pthread_self());
}
#else
static inline void stripe_debug_hold(struct mp_stripe *st, bool on)
{
    (void)st;
    (void)on;
}
#endif

/* Before a lock holder changes the stripe's chains or an item in place (above); once is enough. */
static inline void mp_stripe_begin_write(struct mp_stripe *st)
{
    MP_ASSERT(mp_stripe_held(st));
    if (st->writing)
        return;
    st->writing = true;
    atomic_store_explicit(&st->seq, atomic_load_explicit(&st->seq, memory_order_relaxed) + 1, memory_order_relaxed);
    mp_fence(memory_order_release); /* the odd count is seen before any change */
}

/* A change in place other than mp_table_overwrite_locked is about to be made: the holder must
 * have told readers (the debug build checks; see above). */
static inline void mp_stripe_assert_told(const struct mp_stripe *st)
{
    MP_ASSERT(mp_stripe_held(st) && st->writing);
    (void)st;
}

static inline bool mp_stripe_trylock(struct mp_stripe *st)
{
    if (pthread_mutex_trylock(&st->lock) != 0)
        return false;
    stripe_debug_hold(st, true);
    st->writing = false;
    mp_stripe_begin_write(st);
    return true;
}

/* Hold a stripe without telling optimistic readers: to store an item, where the table's functions
 * below tell them if they change the chains and mp_table_overwrite_locked needs no telling. */
static inline void mp_stripe_lock_readers_untold(struct mp_stripe *st)
{
    pthread_mutex_lock(&st->lock);
    stripe_debug_hold(st, true);
    st->writing = false;
}

/* Hold a stripe to change anything in it. */
static inline void mp_stripe_lock(struct mp_stripe *st)
{
    mp_stripe_lock_readers_untold(st);
    mp_stripe_begin_write(st);
}

static inline void mp_stripe_unlock(struct mp_stripe *st)
{
    if (st->writing) {
        st->writing = false;
        atomic_store_explicit(&st->seq, atomic_load_explicit(&st->seq, memory_order_relaxed) + 1, memory_order_release);
    }
    stripe_debug_hold(st, false);
    pthread_mutex_unlock(&st->lock);
}

/* An optimistic read: begin returns the count to hand to valid, which says whether everything read
 * in between is a true picture of the stripe (nobody held its lock meanwhile). */
static inline uint32_t mp_stripe_read_begin(const struct mp_stripe *st)
{
    return atomic_load_explicit(&((struct mp_stripe *)st)->seq, memory_order_acquire);
}

static inline bool mp_stripe_read_valid(const struct mp_stripe *st, uint32_t seq)
{
    mp_fence(memory_order_acquire); /* the reads before are done before the count is read */
    return !(seq & 1) && atomic_load_explicit(&((struct mp_stripe *)st)->seq, memory_order_relaxed) == seq;
}

/* The same for one item found in the stripe: its stamp before the item is read (a CAS of 0: being
 * written in place, do not read it), then whether the stripe and the item's CAS are both unchanged
 * since. On success *now is the stamp as it stands, for the hit's swap (item.h). */
static inline uint64_t mp_stripe_item_version(const struct mp_item *it)
{
    return mp_item_stamp(it);
}

static inline bool mp_stripe_item_valid(const struct mp_stripe *st, uint32_t seq, const struct mp_item *it,
                                        uint64_t stamp, uint64_t *now)
{
    if (!mp_stripe_read_valid(st, seq))
        return false;
    uint64_t cur = atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_relaxed);
    *now = cur;
    return ((cur ^ stamp) & MP_ITEM_CAS_MASK) == 0;
}

/* The linked item with this key, or NULL. The caller holds the stripe lock. Expiry is not
 * checked here (see cache.h). */
struct mp_item *mp_table_find_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, const char *key,
                                     size_t nkey);

/* The same without the lock, between mp_stripe_read_begin and mp_stripe_read_valid: the item
 * whose key matched when it was read, or NULL; *torn when the walk met something no consistent
 * stripe holds (a handle or key outside the arena, a chain too long), and the read must be retried
 * under the lock. */
struct mp_item *mp_table_find_optimistic(const struct mp_table *t, const struct mp_stripe *st, uint64_t hash,
                                         const char *key, size_t nkey, bool *torn);

/* Link an item whose key is not in the table; takes over the caller's reference. Grows the
 * stripe when it is over its load factor. False, and nothing changed, when the item's chain is
 * already MP_TABLE_CHAIN_MAX long (the caller keeps its reference). */
bool mp_table_link_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it);

/* Unlink an item and drop the table's reference; returns true when that was the last one, in which
 * case the caller must free the chunk (mp_slab_free, or mp_slab_free_locked under the class lock). */
bool mp_table_unlink_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it);

/* Put `repl` in the place of `old` (same key), as one step; returns as mp_table_unlink_locked does
 * for `old`. */
bool mp_table_replace_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *old,
                             struct mp_item *repl);

/* Give the linked item `it` the contents of `src` (same key, same layout: see mp_item_overwrite)
 * and a new stamp (mp_item_stamp_new: its CAS and last access), in place, keeping its chunk and its place in the chain;
 * the stripe's byte count follows. The caller holds the stripe lock (told or untold) and the only reference to `it`
 * besides the table's. Its stamp is 0 while it changes (see above). */
void mp_table_overwrite_locked(struct mp_stripe *st, struct mp_item *it, const struct mp_item *src, uint64_t stamp);

/* Call fn on every item linked in the stripe, chain by chain. The caller holds the stripe lock;
 * fn must not change the chains (it may pin the item, cache.h). */
void mp_table_visit_locked(struct mp_table *t, struct mp_stripe *st, void (*fn)(void *ctx, struct mp_item *it),
                           void *ctx);

/* Sums over the stripes, read without their locks (each figure is exact, the sum a snapshot). */
uint64_t mp_table_count(const struct mp_table *t);
uint64_t mp_table_bytes(const struct mp_table *t);
/* Bytes of bucket arrays, for the README's memory accounting and `stats`. */
uint64_t mp_table_overhead(const struct mp_table *t);

#endif

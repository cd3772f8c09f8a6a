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
 */
#ifndef MAGPIE_TABLE_H
#define MAGPIE_TABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/item.h"
#include "magpie/slab.h"

struct mp_stripe {
    pthread_mutex_t lock;
    mp_handle_t *buckets;
    uint32_t mask;          /* nbuckets - 1 */
    _Atomic uint32_t count; /* linked items */
    _Atomic uint64_t bytes; /* sum of their mp_item_total() */
    uint64_t resizes;
} __attribute__((aligned(64)));

struct mp_table {
    struct mp_slabs *slabs;
    unsigned stripe_bits;
    unsigned nstripes;
    struct mp_stripe *stripes;
};

uint64_t mp_table_hash(const char *key, size_t nkey);

/* stripe_bits stripes of initial_buckets buckets each (a power of two). 0 or -ENOMEM. */
int mp_table_setup(struct mp_table *t, struct mp_slabs *slabs, unsigned stripe_bits, uint32_t initial_buckets);
void mp_table_teardown(struct mp_table *t);

static inline struct mp_stripe *mp_table_stripe(const struct mp_table *t, uint64_t hash)
{
    return &t->stripes[t->stripe_bits ? hash >> (64 - t->stripe_bits) : 0];
}

/* The linked item with this key, or NULL. The caller holds the stripe lock. Expiry is not
 * checked here (see cache.h). */
struct mp_item *mp_table_find_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, const char *key,
                                     size_t nkey);

/* Link an item whose key is not in the table; takes over the caller's reference. Grows the
 * stripe when it is over its load factor. */
void mp_table_link_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it);

/* Unlink an item and drop the table's reference; returns true when that was the last one, in which
 * case the caller must free the chunk (mp_slab_free, or mp_slab_free_locked under the class lock). */
bool mp_table_unlink_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it);

/* Put `repl` in the place of `old` (same key), as one step; returns as mp_table_unlink_locked does
 * for `old`. */
bool mp_table_replace_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *old,
                             struct mp_item *repl);

/* Sums over the stripes, read without their locks (each figure is exact, the sum a snapshot). */
uint64_t mp_table_count(const struct mp_table *t);
uint64_t mp_table_bytes(const struct mp_table *t);
/* Bytes of bucket arrays, for the README's memory accounting and `stats`. */
uint64_t mp_table_overhead(const struct mp_table *t);

#endif

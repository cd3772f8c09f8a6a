/*
 * ghost: a lossy memory of the keys evicted lately, by hash, for the eviction policy (lru.h).
 *
 * S3-FIFO's ghost queue. A new item whose key is remembered here was evicted not long ago and is
 * being asked for again: it goes straight to the main queue instead of the small one. The ghost
 * keeps one byte per key, a fingerprint of its hash, and no key: it may mistake one key for
 * another (about 1 in 256 lookups of a bucket holding 16 fingerprints finds a stranger's byte),
 * which only lets a new item skip the small queue.
 *
 * Layout: buckets of 16 one-byte fingerprints, in two 64-bit words, newest first. A key's bucket
 * comes from its hash. Adding shifts the bucket by one byte and puts the new fingerprint first, so
 * the oldest falls off the end: each bucket is a FIFO, and the whole holds roughly the last
 * 16 x nbuckets keys added (its window). Where a fingerprint sits in its bucket says how long ago
 * it was added: at position i (0 newest), about (i + 1) x nbuckets additions ago.
 *
 * Size: the window follows what the cache holds (mp_ghost_resize, from the table's item count, at
 * most `max_entries`, reserved at setup and touched as used). When nbuckets changes, keys are
 * looked for where the new size puts them and most of what was remembered is lost; sizes change
 * only by a quarter or more, so that is rare.
 *
 * Memory: one byte per remembered key, outside -m like the hash table; `stats` reports it as
 * ghost_bytes beside hash_bytes (the most nbuckets ever used, since a smaller window keeps its
 * pages).
 *
 * Concurrency: no lock. Any thread adds (an eviction, under some class lock) and takes (an
 * allocation) with relaxed atomic loads, stores and compare-and-swaps of a bucket's words. Two
 * threads changing one bucket at once may lose or repeat a fingerprint: the ghost is a hint, and
 * a lost or stray fingerprint costs a little hit ratio, nothing else. The addition count is one
 * atomic counter, bumped once per eviction (never on a read).
 */
#ifndef MAGPIE_GHOST_H
#define MAGPIE_GHOST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MP_GHOST_BUCKET 16 /* fingerprints per bucket */
#define MP_GHOST_ABSENT UINT64_MAX

struct mp_ghost {
    _Atomic uint64_t *words; /* 2 per bucket, reserved for max_buckets */
    size_t max_buckets;
    _Atomic uint32_t nbuckets; /* in use */
    _Atomic uint32_t most;     /* the most ever in use: what is resident */
    _Atomic uint64_t added;    /* additions so far: the ghost's clock */
};

/* Reserve room for max_entries fingerprints (at least one bucket). 0 or -ENOMEM. */
int mp_ghost_setup(struct mp_ghost *g, size_t max_entries);
void mp_ghost_teardown(struct mp_ghost *g);

/* Make the window about `entries` keys (whole buckets, at least one, at most the reserve); a change
 * of less than a quarter up or a half down is ignored (see above). */
void mp_ghost_resize(struct mp_ghost *g, uint64_t entries);

/* Remember a key evicted now. */
void mp_ghost_add(struct mp_ghost *g, uint64_t hash);

/* If the key is remembered: forget it and return about how many additions ago it was added
 * (see above); else MP_GHOST_ABSENT. */
uint64_t mp_ghost_take(struct mp_ghost *g, uint64_t hash);

/* Additions so far. */
static inline uint64_t mp_ghost_added(const struct mp_ghost *g)
{
    return atomic_load_explicit(&((struct mp_ghost *)g)->added, memory_order_relaxed);
}

/* Keys the window holds now (16 x nbuckets). */
uint64_t mp_ghost_window(const struct mp_ghost *g);

/* Bytes of fingerprints resident (the most buckets ever in use). */
uint64_t mp_ghost_bytes(const struct mp_ghost *g);

#endif

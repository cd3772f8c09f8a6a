/*
 * item: the layout of one cached item and its accessors.
 *
 * An item lives in one slab chunk (see slab.h) and is named by a 32-bit handle, the chunk's
 * offset in the slab arena in 8-byte units, so links cost 4 bytes instead of 8.
 *
 *   offset  size  field
 *        0     8  cas       unique, increasing (see struct mp_epoch)
 *        8     4  next      hash-chain link (table, under the stripe lock) or free-list link
 *       12     4  exptime   relative seconds; 0 = never
 *       16     4  nbytes    value length, without the "\r\n" the protocol adds
 *       20     2  refs      references (atomic): the table's link is one, each reader one
 *       22     1  nkey      key length, 1..250
 *       23     1  iflags    LINKED, CFLAGS and meta's STALE, TOKEN_SENT, KEY_BINARY (atomic;
 *                           changed under the stripe lock)
 *       24     1  clock     CLOCK state (atomic, relaxed): MP_ITEM_FETCHED | hit count 0..3
 *       25    0/4 flags     client flags, stored only when non-zero (MP_ITEM_CFLAGS)
 *        .   nkey key
 *        .  nbytes value
 *
 * 25 bytes of header against memcached's 56 (48 + 8 of CAS): the LRU is a CLOCK over slab pages
 * (lru.h) so items carry no LRU links, the hash chain link is a 32-bit handle, and client flags
 * take no room when zero.
 *
 * Ownership: a chunk is free memory only once it carries MP_ITEM_FREE, which the slab sets under
 * the class lock as it puts the chunk on the free list; a chunk whose references have dropped to
 * zero is on its way there, not yet free (a page evacuation must not take it for free). mp_cache_alloc() hands out an
 * item with one reference owned by the caller; linking it into the table transfers that reference to the table. A
 * reader that must keep an item beyond the stripe lock (a large value written from where it lives) takes a reference
 * under the lock and drops it with mp_cache_item_release() when the write completes; whoever drops the last reference
 * frees the chunk.
 */
#ifndef MAGPIE_ITEM_H
#define MAGPIE_ITEM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MP_KEY_MAX 250

typedef uint32_t mp_handle_t; /* 0 is "no item" */

enum {
    MP_ITEM_LINKED = 1u << 0,     /* in the hash table */
    MP_ITEM_CFLAGS = 1u << 1,     /* client flags are stored */
    MP_ITEM_STALE = 1u << 2,      /* meta: invalidated, served with X until recached */
    MP_ITEM_TOKEN_SENT = 1u << 3, /* meta: a client was handed the W (win) flag */
    MP_ITEM_KEY_BINARY = 1u << 4, /* meta: the key came base64-encoded (b) */
    MP_ITEM_FREE = 1u << 5,       /* on its class's free list (set and cleared under the class lock) */
};

enum {
    MP_ITEM_HITS_MAX = 3,     /* clock counts up to 3 hits */
    MP_ITEM_FETCHED = 1u << 7 /* read at least once since stored */
};

struct mp_item {
    uint64_t cas;
    uint32_t next;
    uint32_t exptime;
    uint32_t nbytes;
    _Atomic uint16_t refs;
    uint8_t nkey;
    _Atomic uint8_t iflags;
    _Atomic uint8_t clock;
    /* data follows at MP_ITEM_HDR; sizeof(struct mp_item) is not used */
};

#define MP_ITEM_HDR 25u

static inline bool mp_item_has(const struct mp_item *it, uint8_t flag)
{
    return atomic_load_explicit(&((struct mp_item *)it)->iflags, memory_order_relaxed) & flag;
}

/* Meta's flags change under the stripe lock; the atomic RMW keeps LINKED, which the CLOCK hand
 * reads without that lock, intact. */
static inline void mp_item_set(struct mp_item *it, uint8_t flag, bool on)
{
    if (on)
        atomic_fetch_or_explicit(&it->iflags, flag, memory_order_relaxed);
    else
        atomic_fetch_and_explicit(&it->iflags, (uint8_t)~flag, memory_order_relaxed);
}

static inline bool mp_item_has_cflags(const struct mp_item *it)
{
    return mp_item_has(it, MP_ITEM_CFLAGS);
}

/* Bytes an item of this shape occupies. */
static inline size_t mp_item_total(size_t nkey, size_t nbytes, uint32_t flags)
{
    return MP_ITEM_HDR + (flags ? 4u : 0u) + nkey + nbytes;
}

static inline char *mp_item_suffix(const struct mp_item *it)
{
    return (char *)it + MP_ITEM_HDR;
}

static inline char *mp_item_key(const struct mp_item *it)
{
    return mp_item_suffix(it) + (mp_item_has_cflags(it) ? 4 : 0);
}

static inline char *mp_item_value(const struct mp_item *it)
{
    return mp_item_key(it) + it->nkey;
}

static inline uint32_t mp_item_flags(const struct mp_item *it)
{
    uint32_t f = 0;
    if (mp_item_has_cflags(it))
        memcpy(&f, mp_item_suffix(it), 4);
    return f;
}

static inline bool mp_item_linked(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->iflags, memory_order_acquire) & MP_ITEM_LINKED;
}

/* Write the header, flags and key of a fresh chunk; the value is the caller's to fill. */
void mp_item_init(struct mp_item *it, const char *key, size_t nkey, uint32_t flags, uint32_t exptime, uint32_t nbytes);

/* Whether `src`'s contents can be written over `dst` in place: the same key in the same layout
 * (client flags stored in both or neither), so a reader that finds `dst` by its key meanwhile
 * reads the same key bytes. The chunk size is the caller's to check. */
static inline bool mp_item_same_layout(const struct mp_item *dst, const struct mp_item *src)
{
    return dst->nkey == src->nkey && mp_item_has_cflags(dst) == mp_item_has_cflags(src);
}

/* Write `src`'s value, length, client flags, exptime and meta flags over `dst` (see
 * mp_item_same_layout), as a fresh store: not fetched, no hits. `dst` stays linked; its CAS and
 * its place in the table are the caller's. Fields that readers load without the stripe lock are
 * stored atomically. */
void mp_item_overwrite(struct mp_item *dst, const struct mp_item *src);

/* Record a hit: mark fetched and count it, saturating. Relaxed and racy on purpose: a lost
 * increment only makes the CLOCK a little less exact, and a hot item is not written at all once
 * saturated, so readers on several cores do not bounce its cache line. */
static inline void mp_item_touch_clock(struct mp_item *it)
{
    uint8_t c = atomic_load_explicit(&it->clock, memory_order_relaxed);
    uint8_t hits = c & 3u;
    if ((c & MP_ITEM_FETCHED) && hits == MP_ITEM_HITS_MAX)
        return;
    atomic_store_explicit(&it->clock, (uint8_t)(MP_ITEM_FETCHED | (hits < MP_ITEM_HITS_MAX ? hits + 1 : hits)),
                          memory_order_relaxed);
}

static inline bool mp_item_fetched(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->clock, memory_order_relaxed) & MP_ITEM_FETCHED;
}

/*
 * The epoch: the CAS counter and flush_all's cut-off, shared by the whole engine.
 *
 * CAS values come from one atomic counter, so they are unique across the server and increase.
 * flush_all invalidates every item whose CAS is below flush_cas. A delayed flush_all records
 * flush_at; the first liveness check or store that sees the clock reach it moves flush_cas to the
 * counter's value at that moment, so items stored before the deadline die and later ones live.
 */
struct mp_epoch {
    /* Written by every store: kept off the line every read checks. */
    _Alignas(64) _Atomic uint64_t next_cas;
    _Alignas(64) _Atomic uint64_t flush_cas;
    _Atomic uint32_t flush_at; /* relative time of a pending delayed flush; 0 = none */
};

void mp_epoch_setup(struct mp_epoch *e);

/* The engine's short critical sections (a stripe, a slab class) use adaptive mutexes: a waiter
 * spins briefly before it sleeps, since the holder is about to let go. */
void mp_lock_init(pthread_mutex_t *m);
/* A fresh CAS value; applies a due delayed flush first so the new value survives it. */
uint64_t mp_epoch_next_cas(struct mp_epoch *e, uint32_t now);
/* Invalidate everything stored up to now (delay 0), or up to relative time `at`. */
void mp_epoch_flush(struct mp_epoch *e, uint32_t now, uint32_t at);

/* Past its exptime. */
bool mp_item_expired(const struct mp_item *it, uint32_t now);
/* Stored before the last flush_all took effect. */
bool mp_item_flushed(const struct mp_item *it, uint32_t now, struct mp_epoch *e);
/* Expired or flushed: the item must not be returned and may be reclaimed. */
static inline bool mp_item_dead(const struct mp_item *it, uint32_t now, struct mp_epoch *e)
{
    return mp_item_expired(it, now) || mp_item_flushed(it, now, e);
}

#endif

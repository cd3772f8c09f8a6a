/*
 * item: the layout of one cached item and its accessors.
 *
 * An item lives in one slab chunk (see slab.h) and is named by a 32-bit handle, the chunk's
 * offset in the slab arena in 8-byte units, so links cost 4 bytes instead of 8.
 *
 *   offset  size  field
 *        0     8  stamp     the CAS (low 47 bits), the last access time and the CLOCK state
 *        8     4  next      hash-chain link, or free-list link
 *       12     4  exptime   relative seconds; 0 = never
 *       16     4  nbytes    value length, without the "\r\n" the protocol adds
 *       20     2  refs      references: the table's link is one, each pinning reader one
 *       22     1  nkey      key length, 1..250
 *       23     1  iflags    LINKED, FREE, CFLAGS, meta's STALE, TOKEN_SENT, KEY_BINARY, and
 *                           CHAINED, CHUNK (chain.h)
 *       24    0/4 flags     client flags, stored only when non-zero (MP_ITEM_CFLAGS)
 *        .   nkey key
 *        .  nbytes value
 *
 * A value too large for the largest slab class is kept in a chain of chunks (chain.h): the item
 * (MP_ITEM_CHAINED, its nbytes the whole value's length) holds, where a value would start, the
 * handles of its chunks and then the value's last bytes; each chunk of the chain has the same
 * 24-byte header, marked MP_ITEM_CHUNK, which says it is not an item: never LINKED, its stamp 0,
 * its `next` the handle of the item it belongs to, its `exptime` its place in the chain and its
 * `nbytes` the value bytes it holds.
 *
 * 24 bytes of header against memcached's 56 (48 + 8 of CAS): the LRU is a CLOCK over slab pages
 * (lru.h) so items carry no LRU links, the hash chain link is a 32-bit handle, client flags take
 * no room when zero, and the CLOCK state shares the CAS's word.
 *
 * Why the CLOCK state lives in the CAS's word: a get that read the item without any lock (an
 * optimistic read, table.h) records its hit after it has checked what it read, and by then the
 * item may be gone and its chunk reused by another key. The hit is one compare-and-swap of the
 * whole word, expecting the stamp the reader checked: CAS values are never reused, so the swap
 * fails on any other item, on a free chunk (freeing zeroes the stamp) and on an item rewritten in
 * place (whose stamp is 0 while it changes, then a new CAS). A reader therefore writes nothing
 * but its own item's CLOCK bits. Memory that leaves its class (a page moved) is reused only after
 * every optimistic reader that could have seen it has finished (grace.h), so the swap never even
 * compares against another class's bytes.
 *
 * The stamp's bits:
 *
 *   0..46   CAS: 2^47 stores, 4.4 years of a million stores every second
 *   47..55  last access, low 9 bits   (12 bits in all: minutes of relative time, modulo 4096)
 *   56..57  CLOCK hits (0..3)
 *   58      SMALL: in the eviction policy's small queue (lru.h)
 *   59      the eviction policy's, unused
 *   60..62  last access, high 3 bits
 *   63      FETCHED: read at least once since stored
 *
 * Last access, as memcached keeps it (it->time, which a hit refreshes at most once a minute):
 * the minute of relative time (clock.h) of the store or the latest hit, kept in the stamp so that
 * a lock-free hit refreshes it in the very swap that records the hit, and only when the minute
 * has changed, so a hot item's word is written at most once a minute for it. The header does not
 * grow. 12 bits of minutes wrap after 68 hours: the maintainer's reclaim pass (lru.h), which
 * visits every item, moves a time older than MP_ITEM_LA_KEEP minutes (48 hours) up to that age,
 * so an age reads correctly up to 48 hours and as 48 hours beyond. Ages are whole minutes,
 * reported in seconds: an item read in the current minute is 0 s old, as in memcached.
 *
 * Who writes and who reads each field:
 *
 *   field    written by                                  read without the stripe lock by
 *   stamp    the store that links or rewrites the item   optimistic gets (version check, then
 *            (stripe lock); CLOCK bits and last access   the hit's swap); the CLOCK hand,
 *            by any hit; the CLOCK hand and the reclaim  reclaim and evacuation (class lock:
 *            pass's last-access keep (class lock);       flushed? hits left? small? last
 *            SMALL by the allocator (class lock, before  access?), dumps (class lock)
 *            anyone sees the item) and the hand's
 *            promotion; always with atomic operations
 *   next     the table under the stripe lock; the slab   optimistic gets (chain walk, bounded)
 *            under the class lock while free
 *   exptime  alloc (before linking); touch, gat, meta    optimistic gets; the CLOCK hand,
 *            T/N, overwrite (stripe lock), atomically    reclaim (class lock): always through
 *                                                        mp_item_exptime()
 *   nbytes   alloc; overwrite (stripe lock, atomically)  optimistic gets (bounded by the arena)
 *   refs     atomic: alloc, link/unlink (stripe lock),   the CLOCK hand and evacuation (a held
 *            readers' pins (under the stripe lock),      item is never taken); a store deciding
 *            releases (no lock)                          whether to write in place
 *   nkey     alloc only (a key never changes in place)   optimistic gets; the CLOCK hand
 *   iflags   atomic: LINKED by the table (stripe lock),  optimistic gets (CFLAGS); the hand and
 *            FREE and CHUNK by the slab (class lock),    evacuation (LINKED, FREE, CHUNK)
 *            meta flags (stripe lock), CHAINED by alloc
 *   key      alloc only                                  optimistic gets; the hand (its hash)
 *   value    the connection filling a fresh item; an     optimistic gets, which copy it and
 *            overwrite or in-place incr (stripe lock)    then check the stamp
 *
 * Ownership: a chunk is free memory only once it carries MP_ITEM_FREE, which the slab sets under
 * the class lock as it puts the chunk on the free list; a chunk whose references have dropped to
 * zero is on its way there, not yet free (a page evacuation must not take it for free).
 * mp_cache_alloc() hands out an item with one reference owned by the caller; linking it into the
 * table transfers that reference to the table. A reader that must keep an item beyond the stripe
 * lock (a large value written from where it lives) takes a reference under the lock and drops it
 * with mp_cache_item_release() when the write completes; whoever drops the last reference frees
 * the chunk. References are bounded: refs is 16 bits, and the engine refuses a pin past
 * MP_ITEM_REFS_MAX (the get is a miss, as memcached's limited_get), so it never wraps.
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

/* Pins a reader may hold on one item (memcached's IT_REFCOUNT_LIMIT); with the table's reference
 * and the caller's, refs stays well inside its 16 bits. */
#define MP_ITEM_REFS_MAX 60000

typedef uint32_t mp_handle_t; /* 0 is "no item" */

enum {
    MP_ITEM_LINKED = 1u << 0,     /* in the hash table */
    MP_ITEM_CFLAGS = 1u << 1,     /* client flags are stored */
    MP_ITEM_STALE = 1u << 2,      /* meta: invalidated, served with X until recached */
    MP_ITEM_TOKEN_SENT = 1u << 3, /* meta: a client was handed the W (win) flag */
    MP_ITEM_KEY_BINARY = 1u << 4, /* meta: the key came base64-encoded (b) */
    MP_ITEM_FREE = 1u << 5,       /* on its class's free list (set and cleared under the class lock) */
    MP_ITEM_CHAINED = 1u << 6,    /* the value is in a chain of chunks (chain.h); set before it is linked */
    MP_ITEM_CHUNK = 1u << 7,      /* a chunk of a chain, not an item (set and cleared under the class lock) */
};

/* The stamp: CAS in the low bits, last access and CLOCK state above it (see above). */
#define MP_ITEM_CAS_BITS 47
#define MP_ITEM_CAS_MASK ((UINT64_C(1) << MP_ITEM_CAS_BITS) - 1)
#define MP_ITEM_HITS_SHIFT 56
#define MP_ITEM_HITS_MAX 3u                                   /* the CLOCK counts up to 3 hits */
#define MP_ITEM_HIT_ONE (UINT64_C(1) << MP_ITEM_HITS_SHIFT)   /* one hit, in the stamp */
#define MP_ITEM_HITS_MASK (UINT64_C(3) << MP_ITEM_HITS_SHIFT) /* the hit count */
#define MP_ITEM_FETCHED (UINT64_C(1) << 63)                   /* read at least once since stored */
/* In the small FIFO queue, on probation (lru.h). Set only by the allocator or a warm store (lru.h),
 * in a chunk nobody else sees yet, and cleared by the CLOCK hand (promotion) or a fresh stamp. */
#define MP_ITEM_SMALL (UINT64_C(1) << 58)
/* Last access: minutes of relative time, 12 bits in two parts of the stamp. */
#define MP_ITEM_LA_UNIT 60u    /* seconds in a unit (memcached's ITEM_UPDATE_INTERVAL) */
#define MP_ITEM_LA_UNITS 4096u /* 12 bits: the count wraps after 68 hours */
#define MP_ITEM_LA_KEEP 2880u  /* units: older times are moved up to 48 hours by the maintainer */
#define MP_ITEM_LA_LO_SHIFT 47
#define MP_ITEM_LA_HI_SHIFT 60
#define MP_ITEM_LA_MASK ((UINT64_C(0x1ff) << MP_ITEM_LA_LO_SHIFT) | (UINT64_C(7) << MP_ITEM_LA_HI_SHIFT))

/* The last-access bits for a unit (a relative minute, taken modulo the 4096 the bits hold). */
static inline uint64_t mp_item_la_bits_of_unit(uint32_t unit)
{
    uint64_t u = unit % MP_ITEM_LA_UNITS;
    return ((u & 0x1ff) << MP_ITEM_LA_LO_SHIFT) | ((u >> 9) << MP_ITEM_LA_HI_SHIFT);
}

/* The last-access bits for a relative time. */
static inline uint64_t mp_item_la_bits(uint32_t now)
{
    return mp_item_la_bits_of_unit(now / MP_ITEM_LA_UNIT);
}

/* The unit (minute, modulo 4096) a stamp's last access is in. */
static inline uint32_t mp_item_la_unit(uint64_t stamp)
{
    return (uint32_t)(((stamp >> MP_ITEM_LA_LO_SHIFT) & 0x1ff) | (((stamp >> MP_ITEM_LA_HI_SHIFT) & 7) << 9));
}

/* Whole units since a stamp's last access, at most MP_ITEM_LA_KEEP. */
static inline uint32_t mp_item_la_units(uint64_t stamp, uint32_t now)
{
    uint32_t age = ((now / MP_ITEM_LA_UNIT) - mp_item_la_unit(stamp)) % MP_ITEM_LA_UNITS;
    return age < MP_ITEM_LA_KEEP ? age : MP_ITEM_LA_KEEP;
}

/* Seconds since a stamp's last access, in whole minutes (0 within the same minute). */
static inline uint32_t mp_item_la_age(uint64_t stamp, uint32_t now)
{
    return mp_item_la_units(stamp, now) * MP_ITEM_LA_UNIT;
}

/* A stamp for an item stored or rewritten now: this CAS, last access now, no hits, not fetched. */
static inline uint64_t mp_item_stamp_new(uint64_t cas, uint32_t now)
{
    return (cas & MP_ITEM_CAS_MASK) | mp_item_la_bits(now);
}

/* An item's CLOCK state as one byte, whatever the stamp's layout, for what carries items out of
 * the process and back (snapshot.h, warm-up): bit 7 FETCHED, bits 0-3 the stamp's bits 56-59 (the
 * hit count, and the eviction policy's bits). Its last access travels apart, as an age. */
static inline uint8_t mp_item_clock_byte(uint64_t stamp)
{
    return (uint8_t)(((stamp >> 56) & 0xfu) | ((stamp >> 63) << 7));
}

/* MP_ITEM_SMALL in a CLOCK byte. An item brought back with it rejoins the small queue (lru.h). */
#define MP_ITEM_CLOCK_SMALL ((uint8_t)(MP_ITEM_SMALL >> 56))

/* The stamp of an item brought back: this CAS, a CLOCK byte as above, and a last access `idle`
 * seconds before `now` (in whole units, at most MP_ITEM_LA_KEEP of them, as ages read). */
static inline uint64_t mp_item_stamp_restore(uint64_t cas, uint8_t clock, uint32_t idle, uint32_t now)
{
    uint32_t age = idle / MP_ITEM_LA_UNIT < MP_ITEM_LA_KEEP ? idle / MP_ITEM_LA_UNIT : MP_ITEM_LA_KEEP;
    return (cas & MP_ITEM_CAS_MASK) | ((uint64_t)(clock & 0xfu) << 56) | ((uint64_t)(clock >> 7) << 63) |
           mp_item_la_bits_of_unit(now / MP_ITEM_LA_UNIT + MP_ITEM_LA_UNITS - age);
}

struct mp_item {
    _Atomic uint64_t stamp;
    uint32_t next;
    uint32_t exptime;
    uint32_t nbytes;
    _Atomic uint16_t refs;
    uint8_t nkey;
    _Atomic uint8_t iflags;
    /* data follows at MP_ITEM_HDR; sizeof(struct mp_item) is not used */
};

#define MP_ITEM_HDR 24u

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

/* exptime, read where a lock holder may be changing it (the one way to read it). */
static inline uint32_t mp_item_exptime(const struct mp_item *it)
{
    return __atomic_load_n(&it->exptime, __ATOMIC_RELAXED);
}

/* The whole stamp; acquire, so what the writer stored before it is seen (table.h). */
static inline uint64_t mp_item_stamp(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_acquire);
}

static inline uint64_t mp_item_cas(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_relaxed) & MP_ITEM_CAS_MASK;
}

/* Set the whole stamp (mp_item_stamp_new, or 0 for a chunk freed). For an item nobody else can see
 * yet, or one being rewritten in place (table.h); a fresh stamp puts the item in the main queue. */
static inline void mp_item_stamp_fresh(struct mp_item *it, uint64_t stamp, memory_order mo)
{
    atomic_store_explicit(&it->stamp, stamp, mo);
}

/* The stamp of a new key's item as it is linked: `stamp` (mp_item_stamp_new, or _restore without
 * MP_ITEM_SMALL), keeping the queue its allocator put it in (MP_ITEM_SMALL). No reader sees the
 * item yet, but the CLOCK hand may be promoting it (lru.c): a swap, so that neither change is
 * lost. */
static inline void mp_item_stamp_link(struct mp_item *it, uint64_t stamp)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&it->stamp, &old, stamp | (old & MP_ITEM_SMALL), memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* Put a fresh chunk, nobody else sees yet, in the small queue (after mp_item_init or before). */
static inline void mp_item_set_small(struct mp_item *it)
{
    atomic_store_explicit(&it->stamp, MP_ITEM_SMALL, memory_order_relaxed);
}

static inline bool mp_item_small(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_relaxed) & MP_ITEM_SMALL;
}

/* Move an item from the small queue to the main one: the CLOCK hand, under the class lock, racing
 * hits and stores. Only a stamp that still has SMALL (the same item, still on probation) changes;
 * on a chunk since freed or rewritten the swap finds another stamp and does nothing. */
static inline void mp_item_promote(struct mp_item *it)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    while ((old & MP_ITEM_SMALL) && !atomic_compare_exchange_weak_explicit(&it->stamp, &old, old & ~MP_ITEM_SMALL,
                                                                           memory_order_relaxed, memory_order_relaxed))
        ;
}

/* A new CAS for a linked item changed in place, keeping its CLOCK state, queue and last access
 * (which hits and the hand may change meanwhile). The caller holds the stripe lock. */
static inline void mp_item_recas(struct mp_item *it, uint64_t cas)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&it->stamp, &old,
                                                  (old & ~MP_ITEM_CAS_MASK) | (cas & MP_ITEM_CAS_MASK),
                                                  memory_order_release, memory_order_relaxed))
        ;
}

/* The stamp after one more hit at `now`: fetched, the count up by one (saturating), and the last
 * access moved to this minute if it was in another. */
static inline uint64_t mp_item_stamp_hit(uint64_t stamp, uint32_t now)
{
    uint64_t hits = (stamp & MP_ITEM_HITS_MASK) >> MP_ITEM_HITS_SHIFT;
    if (hits < MP_ITEM_HITS_MAX)
        stamp += MP_ITEM_HIT_ONE;
    uint64_t la = mp_item_la_bits(now);
    if ((stamp & MP_ITEM_LA_MASK) != la)
        stamp = (stamp & ~MP_ITEM_LA_MASK) | la;
    return stamp | MP_ITEM_FETCHED;
}

/* Record a hit on an item whose stamp the caller read as `seen`: one compare-and-swap, which does
 * nothing unless the word still holds exactly `seen` (the same item, unchanged; see above). An
 * item with every hit counted and its access in this minute is not written at all, so readers on
 * several cores do not bounce its cache line; a swap lost to another hit only makes the CLOCK a
 * little less exact. */
static inline void mp_item_hit_seen(struct mp_item *it, uint64_t seen, uint32_t now)
{
    uint64_t next = mp_item_stamp_hit(seen, now);
    if (next != seen)
        atomic_compare_exchange_strong_explicit(&it->stamp, &seen, next, memory_order_relaxed, memory_order_relaxed);
}

/* Record a hit under the stripe lock (the CAS cannot change; the hand and other hits may). */
static inline void mp_item_touch_clock(struct mp_item *it, uint32_t now)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    for (;;) {
        uint64_t next = mp_item_stamp_hit(old, now);
        if (next == old ||
            atomic_compare_exchange_weak_explicit(&it->stamp, &old, next, memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

/* The maintainer's pass (lru.h): a last access older than MP_ITEM_LA_KEEP units moves up to that
 * age, before the 12-bit count could wrap. Under the class lock, racing hits and stores like the
 * CLOCK hand: one swap is tried, and a lost race means the stamp was just written anyway. */
static inline void mp_item_la_keep(struct mp_item *it, uint32_t now)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    uint32_t age = ((now / MP_ITEM_LA_UNIT) - mp_item_la_unit(old)) % MP_ITEM_LA_UNITS;
    if (age <= MP_ITEM_LA_KEEP || (old & MP_ITEM_CAS_MASK) == 0 || now < MP_ITEM_LA_KEEP * MP_ITEM_LA_UNIT)
        return;
    uint32_t kept = now - MP_ITEM_LA_KEEP * MP_ITEM_LA_UNIT;
    atomic_compare_exchange_strong_explicit(&it->stamp, &old, (old & ~MP_ITEM_LA_MASK) | mp_item_la_bits(kept),
                                            memory_order_relaxed, memory_order_relaxed);
}

/* The CLOCK hand's step: true when the item had hits, and it has one fewer now. Under the class
 * lock, racing only hits and stores, so one swap is tried; a lost race counts as "had hits". */
static inline bool mp_item_clock_decay(struct mp_item *it)
{
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    if (!(old & MP_ITEM_HITS_MASK))
        return false;
    atomic_compare_exchange_strong_explicit(&it->stamp, &old, old - MP_ITEM_HIT_ONE, memory_order_relaxed,
                                            memory_order_relaxed);
    return true;
}

static inline unsigned mp_item_hits(const struct mp_item *it)
{
    return (
        unsigned)((atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_relaxed) & MP_ITEM_HITS_MASK) >>
                  MP_ITEM_HITS_SHIFT);
}

static inline bool mp_item_fetched(const struct mp_item *it)
{
    return atomic_load_explicit(&((struct mp_item *)it)->stamp, memory_order_relaxed) & MP_ITEM_FETCHED;
}

/* Write the header, flags and key of a fresh chunk; the value is the caller's to fill. The stamp
 * keeps only MP_ITEM_SMALL, which the allocator may have set. */
void mp_item_init(struct mp_item *it, const char *key, size_t nkey, uint32_t flags, uint32_t exptime, uint32_t nbytes);

/* Whether `src`'s contents can be written over `dst` in place: the same key in the same layout
 * (client flags stored in both or neither), so a reader that finds `dst` by its key meanwhile
 * reads the same key bytes. The chunk size is the caller's to check. */
static inline bool mp_item_same_layout(const struct mp_item *dst, const struct mp_item *src)
{
    return dst->nkey == src->nkey && mp_item_has_cflags(dst) == mp_item_has_cflags(src);
}

/* Write `src`'s value, length, client flags, exptime and meta flags over `dst` (see
 * mp_item_same_layout). `dst` stays linked; its stamp (a fresh store: not fetched, no hits) and
 * its place in the table are the caller's (mp_table_overwrite_locked). Fields that readers load
 * without the stripe lock are stored atomically. */
void mp_item_overwrite(struct mp_item *dst, const struct mp_item *src);

/*
 * The epoch: the CAS counter and flush_all's cut-off, shared by the whole engine.
 *
 * CAS values come from one atomic counter, so they are unique across the server and increase.
 * flush_all invalidates every item whose CAS is below flush_cas. A delayed flush_all records
 * flush_at; the first liveness check or store that sees the clock reach it moves flush_cas to the
 * counter's value at that moment, so items stored before that second die and later ones live.
 */
struct mp_epoch {
    /* Written by every store: kept off the line every read checks. */
    _Alignas(64) _Atomic uint64_t next_cas;
    _Alignas(64) _Atomic uint64_t flush_cas;
    _Atomic uint32_t flush_at; /* relative time of a pending delayed flush; 0 = none */
    _Atomic uint32_t oldest;   /* memcached's oldest_live: the last flush's cut-off less one (stats settings) */
};

void mp_epoch_setup(struct mp_epoch *e);

/* The engine's short critical sections (a stripe, a slab class) use adaptive mutexes: a waiter
 * spins briefly before it sleeps, since the holder is about to let go. */
void mp_lock_init(pthread_mutex_t *m);
/* A fresh CAS value; applies a due delayed flush first so the new value survives it. */
uint64_t mp_epoch_next_cas(struct mp_epoch *e, uint32_t now);
/*
 * flush_all, as memcached 1.6 times it: items stored before relative second `cutoff` die once the
 * clock reaches it, and when the cut-off is at most a second away (flush_all with no delay, 0, 1,
 * or a time already past) everything stored so far dies at once. A new flush replaces a pending
 * one. `cutoff` 1, an absolute time before the server started, flushes nothing and cancels the
 * pending flush, which is what memcached does with it.
 */
void mp_epoch_flush(struct mp_epoch *e, uint32_t now, uint32_t cutoff);
/* CAS values up to `cas` are taken (an item brought in with the CAS it had, cache.h): the counter
 * moves above it if it is not already, so later stores continue above. */
void mp_epoch_reserve(struct mp_epoch *e, uint64_t cas);

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

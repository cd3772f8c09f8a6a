/*
 * cache: the engine. get/set/add/replace/append/prepend/cas/delete/incr/decr/touch/flush_all on
 * top of table + slab + lru + item + clock.
 *
 * Knows nothing of connections, sockets or the text protocol: keys and values in, results out.
 * Every operation takes the current relative time `now` (clock.h) so tests can drive time.
 *
 * Results are one enum; the protocol layer turns them into memcached's strings in one table.
 * Counters that the engine alone can know (evictions, reclaims) live in the slab classes; the
 * per-command hit/miss counters are counted by the caller from the results.
 *
 * Ownership: mp_cache_alloc() returns an item with one reference that belongs to the caller,
 * who fills its value and then either hands it to mp_cache_store() (which consumes the reference
 * whatever the result) or drops it with mp_cache_item_release(). A get's hit callback runs under
 * the stripe lock; to use the item after the callback returns it takes a reference with
 * mp_cache_item_ref() and drops it later with mp_cache_item_release().
 *
 * The lock-free read's rule (table.h, item.h, grace.h). An optimistic get reads an item it holds
 * no lock or reference on, checks afterwards that the item was linked and unchanged throughout,
 * and only then writes, and what it writes is one compare-and-swap of the item's stamp that
 * succeeds only on that very item, unchanged: its CLOCK bits, nothing else. It writes nothing
 * into a chunk that has since been freed, reused by another key or rewritten in place (the swap
 * fails there), and a page its item was on is not given to another class until the read has
 * ended (grace.h), so the swap never compares against another class's bytes. Every optimistic
 * read runs between mp_grace_enter and mp_grace_leave.
 */
#ifndef MAGPIE_CACHE_H
#define MAGPIE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/clock.h"
#include "magpie/grace.h"
#include "magpie/item.h"
#include "magpie/lru.h"
#include "magpie/slab.h"
#include "magpie/table.h"

enum mp_result {
    MP_OK = 0,
    MP_STORED,
    MP_NOT_STORED,
    MP_EXISTS,
    MP_NOT_FOUND,
    MP_DELETED,
    MP_TOUCHED,
    MP_NOMEM,       /* nothing could be evicted */
    MP_TOO_LARGE,   /* over -I */
    MP_NON_NUMERIC, /* incr/decr on a value that is not a number */
    MP_BAD_CHUNK,   /* value not followed by "\r\n" */
};

enum mp_store_op { MP_SET, MP_ADD, MP_REPLACE, MP_APPEND, MP_PREPEND, MP_CAS };

struct mp_cache_config {
    size_t mem_limit;
    size_t item_max;
    size_t min_chunk;
    double factor;
    unsigned stripe_bits;
    uint32_t initial_buckets;
};

/* Test hooks, NULL in the server: after_check runs in an optimistic get that found `it` whole,
 * between the check and the hit's swap, so a test can change the world in that window. */
struct mp_cache_hooks {
    void (*after_check)(void *ctx, struct mp_item *it);
    void *ctx;
};

struct mp_cache {
    struct mp_slabs slabs;
    struct mp_table table;
    struct mp_lru lru;
    struct mp_epoch epoch;
    struct mp_grace grace; /* optimistic readers, for page moves */
    const struct mp_cache_hooks *hooks;
};

int mp_cache_setup(struct mp_cache *c, const struct mp_cache_config *cfg, char *err, size_t errlen);
void mp_cache_teardown(struct mp_cache *c);

/* What a hit hands its reader: the item's fields, each read once, so they agree with each other
 * even when the item changes while they are copied (an optimistic read, below). */
struct mp_hit {
    struct mp_item *it; /* the item, when the stripe lock is held; NULL on an optimistic read */
    const char *key;
    const char *value;
    uint32_t nkey, nbytes, flags, exptime;
    uint64_t cas;
    unsigned cls; /* the slab class it lives in, for the per-class counters (0 from mp_cache_hit_locked) */
};

/* Called for a hit: copy what is needed or, with hit->it (under the stripe lock), take a reference. */
typedef void (*mp_cache_hit_fn)(void *ctx, const struct mp_hit *hit);

/*
 * How a get hands over a hit. A value of at most copy_max bytes is read optimistically, without
 * the stripe lock (table.h): hit() runs on an item that may be changing under it, and then the
 * engine checks that nothing changed; if something did, it calls undo() to take back everything
 * hit() wrote, and reads again under the lock. So hit() must only copy, and be undoable: undo
 * NULL says a second hit() overwrites whatever the first wrote. copy_max 0 reads under the lock.
 */
struct mp_cache_reader {
    mp_cache_hit_fn hit;
    void (*undo)(void *ctx);
    void *ctx;
    uint32_t copy_max;
};

/* Why a get missed, for stats get_expired / get_flushed. */
enum mp_miss { MP_MISS_ABSENT, MP_MISS_EXPIRED, MP_MISS_FLUSHED };

/* get / gets. Returns MP_OK (hit; rd->hit was called, for good, once) or MP_NOT_FOUND with *miss
 * saying why. An item that readers have pinned MP_ITEM_REFS_MAX times is a miss (item.h). */
enum mp_result mp_cache_get(struct mp_cache *c, const char *key, size_t nkey, uint32_t now,
                            const struct mp_cache_reader *rd, enum mp_miss *miss);

/* gat / gats / touch: set a new exptime (relative, from mp_clock_exptime) and, for gat, call fn
 * with the item (under the lock: it may take one reference). fn may be NULL. MP_OK / MP_TOUCHED,
 * or MP_NOT_FOUND (also for a gat of an item pinned to the limit). On a hit *cls (if not NULL) is
 * the item's slab class. */
enum mp_result mp_cache_touch(struct mp_cache *c, const char *key, size_t nkey, uint32_t exptime, uint32_t now,
                              mp_cache_hit_fn fn, void *ctx, unsigned *cls);

/* A fresh item with key, flags, exptime and room for nbytes of value, refs 1, not linked.
 * NULL with *res = MP_TOO_LARGE or MP_NOMEM. */
struct mp_item *mp_cache_alloc(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                               uint32_t nbytes, uint32_t now, enum mp_result *res);

/* How to store, memcached's do_store_item. `cas` 0 compares nothing (and fails MP_CAS); with
 * `stale_ok` (meta set's I flag) a CAS older than the item's still stores, marking the value stale
 * and keeping the old exptime. */
struct mp_store {
    enum mp_store_op op;
    uint64_t cas;
    bool stale_ok;
    uint64_t cas_out; /* the stored item's CAS, 0 when not stored */
    unsigned old_cls; /* the slab class of the item found under the key, 0 when there was none */
};

/* Store a filled item; consumes the caller's reference. Returns MP_STORED, MP_NOT_STORED (also for
 * an append/prepend that cannot get memory, as memcached), MP_EXISTS, MP_NOT_FOUND, or MP_NOMEM
 * when the key's chain is at its bound (table.h). */
enum mp_result mp_cache_store(struct mp_cache *c, struct mp_item **it, struct mp_store *st, uint32_t now);

/* A set that failed for lack of room must not leave the old value behind (memcached unlinks it). */
void mp_cache_forget(struct mp_cache *c, const char *key, size_t nkey);

/* MP_DELETED or MP_NOT_FOUND. */
enum mp_result mp_cache_delete(struct mp_cache *c, const char *key, size_t nkey, uint32_t now);

/* incr / decr: 64-bit unsigned; incr wraps, decr stops at 0. On MP_OK the new value is in
 * *value. MP_NOT_FOUND, MP_NON_NUMERIC, MP_NOMEM. */
enum mp_result mp_cache_arith(struct mp_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta, uint32_t now,
                              uint64_t *value);

/* flush_all: items stored before relative second `cutoff` die (mp_epoch_flush, item.h). */
void mp_cache_flush(struct mp_cache *c, uint32_t now, uint32_t cutoff);

/*
 * Locked access, for compound operations (the meta commands, meta.h): lock a key's stripe, work
 * on its live item, unlock. Nothing that blocks may happen in between; allocating is allowed (the
 * stripe-then-class order of table.h).
 */
struct mp_cache_lock {
    uint64_t hash;
    struct mp_stripe *st;
};

void mp_cache_lock_key(struct mp_cache *c, const char *key, size_t nkey, struct mp_cache_lock *lk);
void mp_cache_unlock(struct mp_cache_lock *lk);
/* The live item with this key, or NULL (a dead one is reclaimed on the way; *miss says why). */
struct mp_item *mp_cache_find_locked(struct mp_cache *c, struct mp_cache_lock *lk, const char *key, size_t nkey,
                                     uint32_t now, enum mp_miss *miss);
/* A locked item as a hit, for a reader called under the lock. */
void mp_cache_hit_locked(struct mp_item *it, struct mp_hit *h);
/* Whether a reader may pin this item (take a reference): false once MP_ITEM_REFS_MAX readers do.
 * Asked under the stripe lock before a hit is handed to a reader that may pin it. */
bool mp_cache_item_pinnable(const struct mp_item *it);
/* Link a fresh item (from mp_cache_alloc) under a key known to be absent; gives it a CAS. False
 * when its chain is at the bound (table.h): the caller keeps the item and its reference. */
bool mp_cache_link_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it, uint32_t now);
void mp_cache_unlink_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it);
/* incr/decr on a live item; *it becomes the item that holds the result (the same one, updated in
 * place, or its replacement). MP_OK, MP_NON_NUMERIC or MP_NOMEM. */
enum mp_result mp_cache_arith_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item **it, bool incr,
                                     uint64_t delta, uint32_t now, uint64_t *value);
/* A new CAS for an item changed in place (meta delete's invalidate). */
void mp_cache_recas_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it, uint32_t now);
void mp_cache_set_exptime_locked(struct mp_cache_lock *lk, struct mp_item *it, uint32_t exptime);

/*
 * Warming: items that lived elsewhere, brought in as they were (a snapshot, snapshot.h; a copy from
 * a peer). Two rules set them apart from a client's store. They never push out what the cache
 * holds: memory comes only from what is free (no eviction, no page taken from another class), so
 * what was brought in first stays, which is how a loader that brings the hottest items first keeps
 * them when memory is short; and a key the cache already holds alive is left alone. And they keep
 * their CAS, their CLOCK state (mp_item_clock_byte, item.h) and how long ago they were last read;
 * one that was in the eviction policy's small queue rejoins it (lru.h), the others are in the main
 * queue.
 *
 * A CAS value must never come back within a process: a lock-free get's hit lands on an item only
 * when its stamp is the one the get saw (item.h). A nonzero `cas` is therefore taken as given only
 * from a caller that knows no item of this process has had it: the snapshot loader, which runs
 * before the server serves, when no CAS has been handed out yet. A caller bringing items in while
 * the server serves passes 0, and the item gets a fresh CAS as any store does.
 */

/* A fresh item as mp_cache_alloc makes, from free memory only (above): NULL with *res =
 * MP_TOO_LARGE (over -I) or MP_NOMEM (no free chunk of its class and no page left). */
struct mp_item *mp_cache_alloc_spare(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                                     uint32_t nbytes, enum mp_result *res);

/* Link a filled item with CAS `cas` (0: a fresh one; see above), CLOCK state `clock`
 * (mp_item_clock_byte) and a last access `idle` seconds ago, unless a live item has its key;
 * consumes the caller's reference. The epoch's counter moves above `cas` (mp_epoch_reserve).
 * MP_STORED, MP_NOT_STORED (the key is there), or MP_NOMEM when the key's chain is at its bound
 * (table.h). */
enum mp_result mp_cache_store_warm(struct mp_cache *c, struct mp_item **it, uint64_t cas, uint8_t clock, uint32_t idle,
                                   uint32_t now);

/* The same for many items at once, faster (their memory is fetched together): each entry's `it`
 * is consumed (set to NULL) and its result left in `res`. */
#define MP_CACHE_WARM_BATCH 16
struct mp_cache_warm {
    struct mp_item *it;
    uint64_t cas;
    uint8_t clock; /* mp_item_clock_byte */
    uint32_t idle; /* seconds since its last access */
    enum mp_result res;
};
void mp_cache_store_warm_batch(struct mp_cache *c, struct mp_cache_warm *batch, size_t n, uint32_t now);

/*
 * Walking the cache, for a snapshot written while the server serves: stripe by stripe, each under
 * its lock for as long as it takes to visit its items, and no other lock. Readers are not told
 * (table.h): nothing in the stripe changes. A visitor copies what it needs or pins the item
 * (mp_cache_item_pinnable, mp_cache_item_ref) to read it after the stripe is let go; a pinned
 * item's key and value stay as they are until it is released (a store writes over an item only
 * when nobody else holds it).
 */
unsigned mp_cache_stripes(const struct mp_cache *c);
/* Items in stripe i and the sum of their mp_item_total(), read without its lock (a hint). */
void mp_cache_stripe_size(const struct mp_cache *c, unsigned i, uint32_t *count, uint64_t *bytes);
/* Call fn, under stripe i's lock, with every live item in it (hit->it is set); returns how many. */
size_t mp_cache_visit_stripe(struct mp_cache *c, unsigned i, uint32_t now, mp_cache_hit_fn fn, void *ctx);

/* `stats reset` for the engine's own counters (evictions, reclaims, ... in every slab class). */
void mp_cache_stats_reset(struct mp_cache *c);

/* Pin an item under its stripe lock, after mp_cache_item_pinnable said yes. */
void mp_cache_item_ref(struct mp_item *it);
void mp_cache_item_release(struct mp_cache *c, struct mp_item **it);

#endif

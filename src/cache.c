/* cache: see include/magpie/cache.h */
#include "magpie/cache.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "magpie/chain.h"
#include "magpie/debug.h"
#include "magpie/num.h"

int mp_cache_setup(struct mp_cache *c, const struct mp_cache_config *cfg, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int rc = mp_slab_setup(&c->slabs, cfg->mem_limit, cfg->item_max, cfg->min_chunk, cfg->factor, err, errlen);
    if (rc != 0)
        return rc;
    rc = mp_table_setup(&c->table, &c->slabs, cfg->stripe_bits, cfg->initial_buckets);
    if (rc != 0) {
        snprintf(err, errlen, "%s", "out of memory for the hash table");
        mp_slab_teardown(&c->slabs);
        return rc;
    }
    if (mp_lru_setup(&c->lru, &c->slabs, &c->table, &c->epoch) != 0) {
        snprintf(err, errlen, "%s", "out of memory for the eviction policy's ghost");
        mp_table_teardown(&c->table);
        mp_slab_teardown(&c->slabs);
        return -ENOMEM;
    }
    mp_epoch_setup(&c->epoch);
    mp_grace_setup(&c->grace);
    c->slabs.grace = &c->grace;
    return 0;
}

void mp_cache_teardown(struct mp_cache *c)
{
    mp_lru_teardown(&c->lru);
    mp_table_teardown(&c->table);
    mp_slab_teardown(&c->slabs);
    mp_grace_teardown(&c->grace);
}

void mp_cache_item_ref(struct mp_item *it)
{
    uint16_t was = atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
    MP_ASSERT(was >= 1 && was <= MP_ITEM_REFS_MAX); /* the engine checked mp_cache_item_pinnable */
    (void)was;
}

bool mp_cache_item_pinnable(const struct mp_item *it)
{
    /* The table's reference and MP_ITEM_REFS_MAX pins; read under the stripe lock, where every pin
     * is taken, so no pin can come between this and the reader's. */
    return atomic_load_explicit(&((struct mp_item *)it)->refs, memory_order_relaxed) <= MP_ITEM_REFS_MAX;
}

/* Free an item whose last reference is gone, its chain with it (chain.h). No class lock held. */
static void free_item(struct mp_cache *c, struct mp_item *it)
{
    if (mp_item_chained(it))
        mp_chain_free(&c->slabs, it);
    else
        mp_slab_cache_free(&c->slabs, it);
}

void mp_cache_item_release(struct mp_cache *c, struct mp_item **itp)
{
    struct mp_item *it = *itp;
    *itp = NULL;
    if (it && atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
        free_item(c, it);
}

/* Readers untold for a store, which may write an item in place (table.h): see mp_cache_store. */
static void lock_hash(struct mp_cache *c, uint64_t hash, struct mp_cache_lock *lk, bool untold)
{
    lk->hash = hash;
    lk->st = mp_table_stripe(&c->table, hash);
    if (untold)
        mp_stripe_lock_readers_untold(lk->st);
    else
        mp_stripe_lock(lk->st);
}

void mp_cache_lock_key(struct mp_cache *c, const char *key, size_t nkey, struct mp_cache_lock *lk)
{
    lock_hash(c, mp_table_hash(&c->table, key, nkey), lk, false);
}

void mp_cache_unlock(struct mp_cache_lock *lk)
{
    mp_stripe_unlock(lk->st);
}

/* Unlink an item; the chunk goes back to its class if that was the last reference. The caller
 * holds the stripe lock (stripe, then class: the order of table.h). */
static void unlink_item(struct mp_cache *c, struct mp_cache_lock *l, struct mp_item *it, bool dead)
{
    bool fetched = mp_item_fetched(it);
    if (!mp_table_unlink_locked(&c->table, l->st, l->hash, it))
        return;
    if (!dead) {
        free_item(c, it);
        return;
    }
    unsigned cls = mp_slab_class_of(&c->slabs, it);
    struct mp_slab_class *sc = &c->slabs.classes[cls];
    bool chained = mp_item_chained(it);
    pthread_mutex_lock(&sc->lock);
    sc->reclaimed++;
    sc->expired_unfetched += !fetched;
    if (!chained)
        mp_slab_free_locked(&c->slabs, cls, it);
    pthread_mutex_unlock(&sc->lock);
    if (chained)
        mp_chain_free(&c->slabs, it); /* it takes the chunks' class lock: not under this one */
}

/* The live item with this key, or NULL; a dead one found on the way is reclaimed. */
static struct mp_item *find_live(struct mp_cache *c, struct mp_cache_lock *l, const char *key, size_t nkey,
                                 uint32_t now, enum mp_miss *miss)
{
    struct mp_item *it = mp_table_find_locked(&c->table, l->st, l->hash, key, nkey);
    enum mp_miss why = MP_MISS_ABSENT;
    if (it && mp_item_expired(it, now))
        why = MP_MISS_EXPIRED;
    else if (it && mp_item_flushed(it, now, &c->epoch))
        why = MP_MISS_FLUSHED;
    if (miss)
        *miss = why;
    if (why != MP_MISS_ABSENT) {
        unlink_item(c, l, it, true);
        return NULL;
    }
    return it;
}

struct mp_item *mp_cache_find_locked(struct mp_cache *c, struct mp_cache_lock *lk, const char *key, size_t nkey,
                                     uint32_t now, enum mp_miss *miss)
{
    return find_live(c, lk, key, nkey, now, miss);
}

bool mp_cache_link_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it, uint32_t now)
{
    mp_item_stamp_link(it, mp_item_stamp_new(mp_epoch_next_cas(&c->epoch, now), now));
    return mp_table_link_locked(&c->table, lk->st, lk->hash, it);
}

void mp_cache_unlink_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it)
{
    unlink_item(c, lk, it, false);
}

void mp_cache_recas_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item *it, uint32_t now)
{
    mp_stripe_assert_told(lk->st);
    mp_item_recas(it, mp_epoch_next_cas(&c->epoch, now));
}

void mp_cache_set_exptime_locked(struct mp_cache_lock *lk, struct mp_item *it, uint32_t exptime)
{
    mp_stripe_assert_told(lk->st);
    /* Atomic: optimistic gets and the CLOCK hand read exptime without the stripe lock. */
    __atomic_store_n(&it->exptime, exptime, __ATOMIC_RELAXED);
}

/* An item's fields for a reader, each loaded once (see struct mp_hit). */
static void hit_of(const struct mp_slabs *s, struct mp_item *it, bool locked, struct mp_hit *h)
{
    h->cls = s ? mp_slab_class_of(s, it) : 0;
    uint8_t fl = atomic_load_explicit(&it->iflags, memory_order_relaxed);
    h->it = locked ? it : NULL;
    h->nkey = __atomic_load_n(&it->nkey, __ATOMIC_RELAXED);
    h->nbytes = __atomic_load_n(&it->nbytes, __ATOMIC_RELAXED);
    h->exptime = mp_item_exptime(it);
    h->cas = mp_item_cas(it);
    h->flags = 0;
    if (fl & MP_ITEM_CFLAGS)
        memcpy(&h->flags, mp_item_suffix(it), 4);
    h->key = mp_item_suffix(it) + (fl & MP_ITEM_CFLAGS ? 4 : 0);
    /* A chained value is not in one piece: its reader walks it (chain.h) from the pinned item. */
    h->value = fl & MP_ITEM_CHAINED ? NULL : h->key + h->nkey;
}

void mp_cache_hit_locked(struct mp_item *it, struct mp_hit *h)
{
    hit_of(NULL, it, true, h);
}

/*
 * A get without the stripe lock (table.h): true when it answered, false when the read must be
 * made under the lock: something changed while it read, or it found an item that is dead (whose
 * reclaiming, and the reason for the miss, are the locked path's) or too big to copy. On a hit,
 * *hit is the item and *stamp the stamp its CAS was checked against, for the hit's swap.
 */
static bool read_optimistic(struct mp_cache *c, const char *key, size_t nkey, uint64_t hash, uint32_t now,
                            const struct mp_cache_reader *rd, struct mp_item **hit, uint64_t *stamp)
{
    struct mp_stripe *st = mp_table_stripe(&c->table, hash);
    uint32_t seq = mp_stripe_read_begin(st);
    if (seq & 1)
        return false;
    bool torn;
    struct mp_item *it = mp_table_find_optimistic(&c->table, st, hash, key, nkey, &torn);
    *hit = it;
    if (torn)
        return false;
    if (!it)
        return mp_stripe_read_valid(st, seq);
    uint64_t version = mp_stripe_item_version(it);
    if ((version & MP_ITEM_CAS_MASK) == 0)
        return false; /* being written in place */
    struct mp_hit h;
    hit_of(&c->slabs, it, false, &h);
    if (!h.value)
        return false; /* chained: far over any copy_max, and read from where it lives */
    /* The item's key matched the caller's, which cannot change meanwhile: use its length. */
    h.value = h.key + nkey;
    h.key = key;
    h.nkey = (uint32_t)nkey;
    h.cas = version & MP_ITEM_CAS_MASK;
    if (h.nbytes > rd->copy_max || !mp_slab_contains(&c->slabs, h.value, h.nbytes) || mp_item_dead(it, now, &c->epoch))
        return false;
    rd->hit(rd->ctx, &h);
    if (!mp_stripe_item_valid(st, seq, it, version, stamp)) {
        if (rd->undo)
            rd->undo(rd->ctx);
        return false;
    }
    return true;
}

static bool get_optimistic(struct mp_cache *c, const char *key, size_t nkey, uint64_t hash, uint32_t now,
                           const struct mp_cache_reader *rd, enum mp_miss *miss, enum mp_result *res)
{
    struct mp_grace_slot *slot = mp_grace_enter(&c->grace);
    if (!slot)
        return false;
    struct mp_item *it;
    uint64_t stamp = 0;
    MP_TSAN_IGNORE_READS_BEGIN();
    bool answered = read_optimistic(c, key, nkey, hash, now, rd, &it, &stamp);
    MP_TSAN_IGNORE_READS_END();
    if (answered && it) {
        if (c->hooks && c->hooks->after_check)
            c->hooks->after_check(c->hooks->ctx, it);
        /* The hit: a swap that writes only this very item's CLOCK bits (item.h). */
        mp_item_hit_seen(it, stamp, now);
    }
    mp_grace_leave(slot);
    if (!answered)
        return false;
    if (!it && miss)
        *miss = MP_MISS_ABSENT;
    *res = it ? MP_OK : MP_NOT_FOUND;
    return true;
}

enum mp_result mp_cache_get(struct mp_cache *c, const char *key, size_t nkey, uint32_t now,
                            const struct mp_cache_reader *rd, enum mp_miss *miss)
{
    uint64_t hash = mp_table_hash(&c->table, key, nkey);
    enum mp_result res;
    if (rd->copy_max && get_optimistic(c, key, nkey, hash, now, rd, miss, &res))
        return res;
    struct mp_cache_lock l;
    lock_hash(c, hash, &l, false);
    struct mp_item *it = find_live(c, &l, key, nkey, now, miss);
    if (it && !mp_cache_item_pinnable(it)) {
        it = NULL; /* pinned to the limit: a miss, as memcached's limited_get */
        if (miss)
            *miss = MP_MISS_ABSENT;
    }
    if (it) {
        mp_item_touch_clock(it, now);
        struct mp_hit h;
        hit_of(&c->slabs, it, true, &h);
        rd->hit(rd->ctx, &h);
    }
    mp_cache_unlock(&l);
    return it ? MP_OK : MP_NOT_FOUND;
}

enum mp_result mp_cache_touch(struct mp_cache *c, const char *key, size_t nkey, uint32_t exptime, uint32_t now,
                              mp_cache_hit_fn fn, void *ctx, unsigned *cls)
{
    struct mp_cache_lock l;
    mp_cache_lock_key(c, key, nkey, &l);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    if (it && fn && !mp_cache_item_pinnable(it))
        it = NULL; /* a gat pinned to the limit: a miss, as memcached's limited_get */
    if (it) {
        mp_cache_set_exptime_locked(&l, it, exptime);
        mp_item_touch_clock(it, now);
        struct mp_hit h;
        hit_of(&c->slabs, it, true, &h);
        if (cls)
            *cls = h.cls;
        if (fn)
            fn(ctx, &h);
    }
    mp_cache_unlock(&l);
    return it ? (fn ? MP_OK : MP_TOUCHED) : MP_NOT_FOUND;
}

/* A chunk of class cls for a new item with this key: a free one (this thread's first), else the
 * eviction policy's victim (which also picks the new item's queue, lru.h), else a page taken from
 * another class. With no key (a chain's head or chunk, chain.h) the chunk joins no small queue. */
static struct mp_item *alloc_chunk(struct mp_cache *c, unsigned cls, uint32_t now, const char *key, size_t nkey)
{
    struct mp_item *fresh = mp_slab_cache_alloc(&c->slabs, cls);
    if (fresh)
        return fresh;
    struct mp_slab_class *sc = &c->slabs.classes[cls];
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&sc->lock);
        struct mp_item *it = mp_slab_alloc_locked(&c->slabs, cls);
        if (!it)
            it = mp_lru_evict_locked(&c->lru, cls, now, key, nkey);
        pthread_mutex_unlock(&sc->lock);
        mp_lru_orphans_free(&c->lru);
        if (it || mp_lru_page_steal(&c->lru, cls, now) != 0)
            return it;
    }
    return NULL;
}

/*
 * A chained item (chain.h): its head, then its chunks, each taken as alloc_chunk takes a chunk or,
 * with `spare`, only from free memory (warming). NULL with *res = MP_NOMEM when memory runs out;
 * the chunks got so far go back with the head.
 */
static struct mp_item *alloc_chain(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                                   uint32_t nbytes, uint32_t now, bool spare, enum mp_result *res)
{
    struct mp_slabs *s = &c->slabs;
    uint32_t n = mp_chain_count(s, nkey, nbytes, flags != 0);
    unsigned hcls = mp_slab_class_for(s, mp_chain_head_total(s, nkey, nbytes, flags != 0, n));
    /* No key for the policy: a chain is weighed in the main queue only (lru.h). */
    struct mp_item *head = spare ? mp_slab_alloc(s, hcls) : alloc_chunk(c, hcls, now, NULL, 0);
    *res = MP_NOMEM;
    if (!head)
        return NULL;
    mp_item_init(head, key, nkey, flags, exptime, nbytes);
    mp_item_set(head, MP_ITEM_CHAINED, true);
    memset(mp_item_value(head), 0, 4 * (size_t)n); /* no chunk yet, should it be freed now */
    unsigned ccls = mp_slab_chunk_class(s);
    uint32_t cap = mp_chain_cap(s);
    for (uint32_t i = 0; i < n; i++) {
        struct mp_item *chunk = spare ? mp_slab_alloc(s, ccls) : alloc_chunk(c, ccls, now, NULL, 0);
        if (!chunk) {
            mp_cache_item_release(c, &head);
            return NULL;
        }
        uint64_t left = nbytes - (uint64_t)i * cap;
        mp_slab_chunk_mark(s, ccls, chunk, mp_slab_handle(s, head), i, left < cap ? (uint32_t)left : cap);
        mp_chain_set(head, i, mp_slab_handle(s, chunk));
    }
    *res = MP_OK;
    return head;
}

struct mp_item *mp_cache_alloc(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                               uint32_t nbytes, uint32_t now, enum mp_result *res)
{
    if (mp_item_total(nkey, nbytes, flags) > c->slabs.item_max) {
        *res = MP_TOO_LARGE;
        return NULL;
    }
    if (mp_chain_needed(&c->slabs, nkey, nbytes, flags))
        return alloc_chain(c, key, nkey, flags, exptime, nbytes, now, false, res);
    unsigned cls = mp_slab_class_for(&c->slabs, mp_item_total(nkey, nbytes, flags));
    struct mp_item *it = alloc_chunk(c, cls, now, key, nkey);
    if (!it) {
        *res = MP_NOMEM;
        return NULL;
    }
    mp_item_init(it, key, nkey, flags, exptime, nbytes);
    *res = MP_OK;
    return it;
}

/* append/prepend: a new item holding old's value joined with add's, with old's flags and exptime.
 * Called under the stripe lock (allocation takes class locks after it, the table's order). */
static struct mp_item *join(struct mp_cache *c, struct mp_item *old, struct mp_item *add, bool append, uint32_t now)
{
    uint64_t n = (uint64_t)old->nbytes + add->nbytes;
    enum mp_result res;
    if (n > UINT32_MAX)
        return NULL;
    struct mp_item *it = mp_cache_alloc(c, mp_item_key(old), old->nkey, mp_item_flags(old), mp_item_exptime(old),
                                        (uint32_t)n, now, &res);
    if (!it)
        return NULL;
    struct mp_item *first = append ? old : add, *second = append ? add : old;
    mp_chain_copy(&c->slabs, it, 0, first, 0, first->nbytes);
    mp_chain_copy(&c->slabs, it, first->nbytes, second, 0, second->nbytes);
    return it;
}

/* memcached's CAS comparison, made up front for every store mode. */
enum cas_check { CAS_NONE, CAS_MATCH, CAS_STALE, CAS_BADVAL };

static enum cas_check check_cas(const struct mp_item *old, const struct mp_store *st)
{
    if (st->cas == 0)
        return CAS_NONE;
    uint64_t cas = mp_item_cas(old);
    if (st->cas == cas)
        return CAS_MATCH;
    return st->stale_ok && st->cas < cas ? CAS_STALE : CAS_BADVAL;
}

/* With an item under the key: store `it` in its place (true), or set *res and refuse. */
static bool decide_existing(struct mp_cache *c, struct mp_item *old, struct mp_item **itp, const struct mp_store *st,
                            uint32_t now, enum mp_result *res)
{
    enum cas_check cc = check_cas(old, st);
    switch (st->op) {
    case MP_ADD:
        mp_item_touch_clock(old, now); /* memcached bumps the item an add bounced off */
        *res = MP_NOT_STORED;
        return false;
    case MP_CAS:
        if (cc == CAS_STALE) {
            /* An older CAS with I: the value goes in, stale, keeping the old TTL and win token. */
            (*itp)->exptime = mp_item_exptime(old);
            mp_item_set(*itp, MP_ITEM_STALE, true);
            mp_item_set(*itp, MP_ITEM_TOKEN_SENT, mp_item_has(old, MP_ITEM_TOKEN_SENT));
        } else if (cc != CAS_MATCH) {
            *res = MP_EXISTS;
            return false;
        }
        return true;
    case MP_APPEND:
    case MP_PREPEND: {
        if (cc != CAS_NONE && cc != CAS_MATCH) {
            *res = MP_EXISTS;
            return false;
        }
        struct mp_item *joined = join(c, old, *itp, st->op == MP_APPEND, now);
        if (!joined) {
            *res = MP_NOT_STORED; /* memcached: no memory to copy into is "not stored" */
            return false;
        }
        mp_cache_item_release(c, itp);
        *itp = joined;
        return true;
    }
    case MP_SET:
    case MP_REPLACE: return true;
    }
    return false;
}

/*
 * A store writes its value over the item it replaces, instead of linking its own chunk, when the
 * value is small (the copy is made under the stripe lock), the layout and chunk class are the
 * same, and nobody but the table holds the old item (a reader holding it keeps its value). The
 * bucket and the old item's header then stay as they were, and the chunk the store filled goes
 * straight back to this thread's magazine: a set changes fewer cache lines that other cores read.
 */
#define OVERWRITE_MAX 1024

static bool can_overwrite(struct mp_cache *c, const struct mp_item *old, const struct mp_item *it)
{
    return it->nbytes <= OVERWRITE_MAX && !mp_item_chained(old) && mp_item_same_layout(old, it) &&
           atomic_load_explicit(&((struct mp_item *)old)->refs, memory_order_acquire) == 1 &&
           mp_slab_class_of(&c->slabs, old) == mp_slab_class_of(&c->slabs, it);
}

enum mp_result mp_cache_store(struct mp_cache *c, struct mp_item **itp, struct mp_store *st, uint32_t now)
{
    struct mp_item *it = *itp;
    *itp = NULL;
    enum mp_result res = MP_STORED;
    st->cas_out = 0;
    st->old_cls = 0;
    /* Readers untold: a store that writes over the old item leaves optimistic readers' count alone
     * (the table's links and unlinks, here and in find_live, tell them themselves). */
    struct mp_cache_lock l;
    lock_hash(c, mp_table_hash(&c->table, mp_item_key(it), it->nkey), &l, true);
    struct mp_item *old = find_live(c, &l, mp_item_key(it), it->nkey, now, NULL);
    bool store;
    if (old)
        st->old_cls = mp_slab_class_of(&c->slabs, old);
    if (old) {
        store = decide_existing(c, old, &it, st, now, &res);
    } else {
        store = st->op == MP_SET || st->op == MP_ADD;
        res = st->op == MP_CAS ? MP_NOT_FOUND : MP_NOT_STORED;
    }
    if (!store) {
        mp_cache_unlock(&l);
        mp_cache_item_release(c, &it);
        return res;
    }
    /* A new key's item stays in the queue its chunk was given (lru.h); one that replaces an item
     * goes to the main queue, as a read of the key would send it. */
    uint64_t cas = mp_epoch_next_cas(&c->epoch, now);
    if (old)
        mp_item_stamp_fresh(it, mp_item_stamp_new(cas, now), memory_order_relaxed);
    else
        mp_item_stamp_link(it, mp_item_stamp_new(cas, now));
    if (old && can_overwrite(c, old, it)) {
        mp_table_overwrite_locked(l.st, old, it, mp_item_stamp_new(cas, now));
        mp_cache_unlock(&l);
        mp_cache_item_release(c, &it);
        st->cas_out = cas;
        return MP_STORED;
    }
    bool free_old = old && mp_table_replace_locked(&c->table, l.st, l.hash, old, it);
    if (!old && !mp_table_link_locked(&c->table, l.st, l.hash, it)) {
        /* Its chain is at the bound (table.h): refused, as a store without memory is. */
        mp_cache_unlock(&l);
        mp_cache_item_release(c, &it);
        return MP_NOMEM;
    }
    mp_cache_unlock(&l);
    if (free_old)
        free_item(c, old);
    st->cas_out = cas;
    return MP_STORED;
}

void mp_cache_forget(struct mp_cache *c, const char *key, size_t nkey)
{
    struct mp_cache_lock l;
    mp_cache_lock_key(c, key, nkey, &l);
    struct mp_item *it = mp_table_find_locked(&c->table, l.st, l.hash, key, nkey);
    if (it)
        unlink_item(c, &l, it, false);
    mp_cache_unlock(&l);
}

enum mp_result mp_cache_delete(struct mp_cache *c, const char *key, size_t nkey, uint32_t now)
{
    struct mp_cache_lock l;
    mp_cache_lock_key(c, key, nkey, &l);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    if (it)
        unlink_item(c, &l, it, false);
    mp_cache_unlock(&l);
    return it ? MP_DELETED : MP_NOT_FOUND;
}

/*
 * incr/decr, as memcached: the value must read as a 64-bit unsigned number; the result is
 * written in place when it fits and nobody else holds the item, padded with spaces to the old
 * length (so a decr from 10 to 9 reads back "9 "), and otherwise into a new item.
 */
enum mp_result mp_cache_arith_locked(struct mp_cache *c, struct mp_cache_lock *lk, struct mp_item **itp, bool incr,
                                     uint64_t delta, uint32_t now, uint64_t *value)
{
    struct mp_item *it = *itp;
    uint64_t v;
    /* A chained value is too long to be a number (memcached's do_add_delta). */
    if (it->nbytes == 0 || mp_item_chained(it) || !mp_num_u64(mp_item_value(it), it->nbytes, &v))
        return MP_NON_NUMERIC;
    v = incr ? v + delta : (delta > v ? 0 : v - delta);
    *value = v;
    char digits[24];
    size_t n = mp_num_format(digits, v);
    if (n <= it->nbytes && atomic_load_explicit(&it->refs, memory_order_acquire) == 1) {
        mp_stripe_assert_told(lk->st);
        memcpy(mp_item_value(it), digits, n);
        memset(mp_item_value(it) + n, ' ', it->nbytes - n);
        mp_cache_recas_locked(c, lk, it, now);
        mp_item_touch_clock(it, now);
        return MP_OK;
    }
    enum mp_result ares;
    struct mp_item *repl =
        mp_cache_alloc(c, mp_item_key(it), it->nkey, mp_item_flags(it), mp_item_exptime(it), (uint32_t)n, now, &ares);
    if (!repl)
        return MP_NOMEM;
    memcpy(mp_item_value(repl), digits, n);
    mp_item_stamp_fresh(repl, mp_item_stamp_new(mp_epoch_next_cas(&c->epoch, now), now), memory_order_relaxed);
    if (mp_table_replace_locked(&c->table, lk->st, lk->hash, it, repl))
        free_item(c, it);
    *itp = repl;
    return MP_OK;
}

enum mp_result mp_cache_arith(struct mp_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta, uint32_t now,
                              uint64_t *value)
{
    struct mp_cache_lock l;
    mp_cache_lock_key(c, key, nkey, &l);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    enum mp_result res = it ? mp_cache_arith_locked(c, &l, &it, incr, delta, now, value) : MP_NOT_FOUND;
    mp_cache_unlock(&l);
    return res;
}

void mp_cache_flush(struct mp_cache *c, uint32_t now, uint32_t cutoff)
{
    mp_epoch_flush(&c->epoch, now, cutoff);
}

/* ---- warming and walking (cache.h) ----------------------------------------------------------- */

struct mp_item *mp_cache_alloc_spare(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                                     uint32_t nbytes, enum mp_result *res)
{
    if (mp_item_total(nkey, nbytes, flags) > c->slabs.item_max) {
        *res = MP_TOO_LARGE;
        return NULL;
    }
    if (mp_chain_needed(&c->slabs, nkey, nbytes, flags))
        return alloc_chain(c, key, nkey, flags, exptime, nbytes, 0, true, res);
    unsigned cls = mp_slab_class_for(&c->slabs, mp_item_total(nkey, nbytes, flags));
    /* The class's free chunks or a page from the pool, never a victim; no thread magazine, so a
     * loader leaves no free chunks parked where the workers cannot reach them. */
    struct mp_item *it = mp_slab_alloc(&c->slabs, cls);
    if (!it) {
        *res = MP_NOMEM;
        return NULL;
    }
    mp_item_init(it, key, nkey, flags, exptime, nbytes);
    *res = MP_OK;
    return it;
}

static enum mp_result store_warm(struct mp_cache *c, struct mp_item *it, uint64_t hash, uint64_t cas, uint8_t clock,
                                 uint32_t idle, uint32_t now)
{
    /* An item that was on probation rejoins the small queue, in the order items come in (lru.h);
     * its stamp's SMALL comes from there, so no item is SMALL without a place in the queue. */
    if ((clock & MP_ITEM_CLOCK_SMALL) && !mp_item_chained(it))
        mp_lru_small_join(&c->lru, it);
    clock &= (uint8_t)~MP_ITEM_CLOCK_SMALL;
    struct mp_cache_lock l;
    lock_hash(c, hash, &l, true);
    if (find_live(c, &l, mp_item_key(it), it->nkey, now, NULL)) {
        mp_cache_unlock(&l);
        mp_cache_item_release(c, &it);
        return MP_NOT_STORED;
    }
    cas &= MP_ITEM_CAS_MASK;
    if (cas)
        mp_epoch_reserve(&c->epoch, cas);
    else
        cas = mp_epoch_next_cas(&c->epoch, now);
    mp_item_stamp_link(it, mp_item_stamp_restore(cas, clock, idle, now));
    if (!mp_table_link_locked(&c->table, l.st, l.hash, it)) {
        mp_cache_unlock(&l);
        mp_cache_item_release(c, &it);
        return MP_NOMEM;
    }
    mp_cache_unlock(&l);
    return MP_STORED;
}

enum mp_result mp_cache_store_warm(struct mp_cache *c, struct mp_item **itp, uint64_t cas, uint8_t clock, uint32_t idle,
                                   uint32_t now)
{
    struct mp_item *it = *itp;
    *itp = NULL;
    return store_warm(c, it, mp_table_hash(&c->table, mp_item_key(it), it->nkey), cas, clock, idle, now);
}

/*
 * A batch goes through rounds, so the cache misses of its items overlap instead of coming one
 * after another: a loader that inserts a million items into a table it has never touched spends
 * most of its time waiting for memory. The first round hashes the keys and fetches their stripes,
 * the second their buckets, the third the first item of each chain (addresses read without the
 * lock, as an optimistic read does: a prefetch of a stale address costs nothing but the fetch),
 * the last stores.
 */
void mp_cache_store_warm_batch(struct mp_cache *c, struct mp_cache_warm *batch, size_t n, uint32_t now)
{
    uint64_t hash[MP_CACHE_WARM_BATCH];
    for (size_t base = 0; base < n; base += MP_CACHE_WARM_BATCH) {
        size_t m = n - base < MP_CACHE_WARM_BATCH ? n - base : MP_CACHE_WARM_BATCH;
        struct mp_cache_warm *w = batch + base;
        for (size_t i = 0; i < m; i++) {
            hash[i] = mp_table_hash(&c->table, mp_item_key(w[i].it), w[i].it->nkey);
            struct mp_stripe *st = mp_table_stripe(&c->table, hash[i]);
            __builtin_prefetch(st, 0);
            __builtin_prefetch(&st->lock, 1);
        }
        mp_handle_t *bucket[MP_CACHE_WARM_BATCH];
        for (size_t i = 0; i < m; i++) {
            struct mp_stripe *st = mp_table_stripe(&c->table, hash[i]);
            uint32_t mask = __atomic_load_n(&st->mask, __ATOMIC_RELAXED);
            bucket[i] = __atomic_load_n(&st->buckets, __ATOMIC_RELAXED) + (hash[i] & mask);
            __builtin_prefetch(bucket[i], 0);
        }
        for (size_t i = 0; i < m; i++) {
            mp_handle_t h = __atomic_load_n(bucket[i], __ATOMIC_RELAXED);
            if (h)
                __builtin_prefetch(mp_slab_item(&c->slabs, h), 0);
        }
        for (size_t i = 0; i < m; i++) {
            w[i].res = store_warm(c, w[i].it, hash[i], w[i].cas, w[i].clock, w[i].idle, now);
            w[i].it = NULL;
        }
    }
}

unsigned mp_cache_stripes(const struct mp_cache *c)
{
    return c->table.nstripes;
}

void mp_cache_stripe_size(const struct mp_cache *c, unsigned i, uint32_t *count, uint64_t *bytes)
{
    const struct mp_stripe *st = &c->table.stripes[i];
    *count = atomic_load_explicit(&((struct mp_stripe *)st)->count, memory_order_relaxed);
    *bytes = atomic_load_explicit(&((struct mp_stripe *)st)->bytes, memory_order_relaxed);
}

struct visit {
    struct mp_cache *c;
    uint32_t now;
    mp_cache_hit_fn fn;
    void *ctx;
    size_t n;
};

static void visit_item(void *ctx, struct mp_item *it)
{
    struct visit *v = ctx;
    if (mp_item_dead(it, v->now, &v->c->epoch))
        return; /* left for the reclaimer: the walk changes nothing */
    struct mp_hit h;
    mp_cache_hit_locked(it, &h);
    v->fn(v->ctx, &h);
    v->n++;
}

size_t mp_cache_visit_stripe(struct mp_cache *c, unsigned i, uint32_t now, mp_cache_hit_fn fn, void *ctx)
{
    struct mp_stripe *st = &c->table.stripes[i];
    struct visit v = {c, now, fn, ctx, 0};
    /* Untold: the walk changes nothing readers could see (a pin is not read by them). */
    mp_stripe_lock_readers_untold(st);
    mp_table_visit_locked(&c->table, st, visit_item, &v);
    mp_stripe_unlock(st);
    return v.n;
}

void mp_cache_stats_reset(struct mp_cache *c)
{
    for (unsigned i = 1; i <= c->slabs.nclasses; i++) {
        struct mp_slab_class *sc = &c->slabs.classes[i];
        pthread_mutex_lock(&sc->lock);
        sc->evictions = sc->evicted_unfetched = sc->evicted_nonzero = sc->evicted_for_move = 0;
        sc->reclaimed = sc->expired_unfetched = sc->outofmemory = 0;
        sc->pages_moved_in = sc->pages_moved_out = 0;
        sc->small_evicted = sc->small_promoted = sc->ghost_hits = 0;
        sc->pressure_seen = 0; /* automove measures pressure from here */
        pthread_mutex_unlock(&sc->lock);
    }
}

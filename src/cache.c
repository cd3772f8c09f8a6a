/* cache: see include/magpie/cache.h */
#include "magpie/cache.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
    mp_epoch_setup(&c->epoch);
    mp_lru_setup(&c->lru, &c->slabs, &c->table, &c->epoch);
    return 0;
}

void mp_cache_teardown(struct mp_cache *c)
{
    mp_lru_maintainer_stop(&c->lru);
    mp_table_teardown(&c->table);
    mp_slab_teardown(&c->slabs);
}

void mp_cache_item_ref(struct mp_item *it)
{
    atomic_fetch_add_explicit(&it->refs, 1, memory_order_relaxed);
}

void mp_cache_item_release(struct mp_cache *c, struct mp_item **itp)
{
    struct mp_item *it = *itp;
    *itp = NULL;
    if (it && atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
        mp_slab_free(&c->slabs, it);
}

/* A key's stripe, locked. */
struct locked {
    uint64_t hash;
    struct mp_stripe *st;
};

static struct locked lock_key(struct mp_cache *c, const char *key, size_t nkey)
{
    struct locked l;
    l.hash = mp_table_hash(key, nkey);
    l.st = mp_table_stripe(&c->table, l.hash);
    pthread_mutex_lock(&l.st->lock);
    return l;
}

static void unlock_key(struct locked *l)
{
    pthread_mutex_unlock(&l->st->lock);
}

/* Unlink an item; the chunk goes back to its class if that was the last reference. The caller
 * holds the stripe lock (stripe, then class: the order of table.h). */
static void unlink_item(struct mp_cache *c, struct locked *l, struct mp_item *it, bool dead)
{
    bool fetched = mp_item_fetched(it);
    if (!mp_table_unlink_locked(&c->table, l->st, l->hash, it))
        return;
    unsigned cls = mp_slab_class_of(&c->slabs, it);
    struct mp_slab_class *sc = &c->slabs.classes[cls];
    pthread_mutex_lock(&sc->lock);
    if (dead) {
        sc->reclaimed++;
        sc->expired_unfetched += !fetched;
    }
    mp_slab_free_locked(&c->slabs, cls, it);
    pthread_mutex_unlock(&sc->lock);
}

/* The live item with this key, or NULL; a dead one found on the way is reclaimed. */
static struct mp_item *find_live(struct mp_cache *c, struct locked *l, const char *key, size_t nkey, uint32_t now,
                                 enum mp_miss *miss)
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

enum mp_result mp_cache_get(struct mp_cache *c, const char *key, size_t nkey, uint32_t now, mp_cache_hit_fn fn,
                            void *ctx, enum mp_miss *miss)
{
    struct locked l = lock_key(c, key, nkey);
    struct mp_item *it = find_live(c, &l, key, nkey, now, miss);
    if (it) {
        mp_item_touch_clock(it);
        fn(ctx, it);
    }
    unlock_key(&l);
    return it ? MP_OK : MP_NOT_FOUND;
}

enum mp_result mp_cache_touch(struct mp_cache *c, const char *key, size_t nkey, uint32_t exptime, uint32_t now,
                              mp_cache_hit_fn fn, void *ctx)
{
    struct locked l = lock_key(c, key, nkey);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    if (it) {
        /* Atomic: the CLOCK hand reads exptime without the stripe lock. */
        __atomic_store_n(&it->exptime, exptime, __ATOMIC_RELAXED);
        mp_item_touch_clock(it);
        if (fn)
            fn(ctx, it);
    }
    unlock_key(&l);
    return it ? (fn ? MP_OK : MP_TOUCHED) : MP_NOT_FOUND;
}

/* A chunk of class cls: a free one, else the CLOCK's victim, else a page taken from another class. */
static struct mp_item *alloc_chunk(struct mp_cache *c, unsigned cls, uint32_t now)
{
    struct mp_slab_class *sc = &c->slabs.classes[cls];
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&sc->lock);
        struct mp_item *it = mp_slab_alloc_locked(&c->slabs, cls);
        if (!it)
            it = mp_lru_evict_locked(&c->lru, cls, now);
        pthread_mutex_unlock(&sc->lock);
        if (it || mp_lru_page_steal(&c->lru, cls, now) != 0)
            return it;
    }
    return NULL;
}

struct mp_item *mp_cache_alloc(struct mp_cache *c, const char *key, size_t nkey, uint32_t flags, uint32_t exptime,
                               uint32_t nbytes, uint32_t now, enum mp_result *res)
{
    unsigned cls = mp_slab_class_for(&c->slabs, mp_item_total(nkey, nbytes, flags));
    if (!cls) {
        *res = MP_TOO_LARGE;
        return NULL;
    }
    struct mp_item *it = alloc_chunk(c, cls, now);
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
    struct mp_item *it = mp_cache_alloc(c, mp_item_key(old), old->nkey, mp_item_flags(old), old->exptime, (uint32_t)n,
                                        now, &res);
    if (!it)
        return NULL;
    struct mp_item *first = append ? old : add, *second = append ? add : old;
    memcpy(mp_item_value(it), mp_item_value(first), first->nbytes);
    memcpy(mp_item_value(it) + first->nbytes, mp_item_value(second), second->nbytes);
    return it;
}

/* What a store op does with the item found (NULL: none). Sets *res when the op does not store. */
static bool may_store(enum mp_store_op op, const struct mp_item *old, uint64_t cas_in, enum mp_result *res)
{
    switch (op) {
    case MP_SET:
        return true;
    case MP_ADD:
        *res = MP_NOT_STORED;
        return old == NULL;
    case MP_REPLACE:
    case MP_APPEND:
    case MP_PREPEND:
        *res = MP_NOT_STORED;
        return old != NULL;
    case MP_CAS:
        *res = old ? MP_EXISTS : MP_NOT_FOUND;
        return old && old->cas == cas_in;
    }
    return false;
}

enum mp_result mp_cache_store(struct mp_cache *c, enum mp_store_op op, struct mp_item **itp, uint64_t cas_in,
                              uint32_t now)
{
    struct mp_item *it = *itp;
    *itp = NULL;
    enum mp_result res = MP_STORED;
    struct locked l = lock_key(c, mp_item_key(it), it->nkey);
    struct mp_item *old = find_live(c, &l, mp_item_key(it), it->nkey, now, NULL);
    if (!may_store(op, old, cas_in, &res)) {
        if (op == MP_ADD && old)
            mp_item_touch_clock(old); /* memcached bumps the item an add bounced off */
        unlock_key(&l);
        mp_cache_item_release(c, &it);
        return res;
    }
    res = MP_STORED;
    if (op == MP_APPEND || op == MP_PREPEND) {
        struct mp_item *joined = join(c, old, it, op == MP_APPEND, now);
        mp_cache_item_release(c, &it);
        if (!joined) {
            unlock_key(&l);
            return MP_NOMEM;
        }
        it = joined;
    }
    it->cas = mp_epoch_next_cas(&c->epoch, now);
    bool free_old = old && mp_table_replace_locked(&c->table, l.st, l.hash, old, it);
    if (!old)
        mp_table_link_locked(&c->table, l.st, l.hash, it);
    unlock_key(&l);
    if (free_old)
        mp_slab_free(&c->slabs, old);
    return res;
}

void mp_cache_forget(struct mp_cache *c, const char *key, size_t nkey)
{
    struct locked l = lock_key(c, key, nkey);
    struct mp_item *it = mp_table_find_locked(&c->table, l.st, l.hash, key, nkey);
    if (it)
        unlink_item(c, &l, it, false);
    unlock_key(&l);
}

enum mp_result mp_cache_delete(struct mp_cache *c, const char *key, size_t nkey, uint32_t now)
{
    struct locked l = lock_key(c, key, nkey);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    if (it)
        unlink_item(c, &l, it, false);
    unlock_key(&l);
    return it ? MP_DELETED : MP_NOT_FOUND;
}

/*
 * incr/decr, as memcached: the value must read as a 64-bit unsigned number; the result is
 * written in place when it fits and nobody else holds the item, padded with spaces to the old
 * length (so a decr from 10 to 9 reads back "9 "), and otherwise into a new item.
 */
enum mp_result mp_cache_arith(struct mp_cache *c, const char *key, size_t nkey, bool incr, uint64_t delta,
                              uint32_t now, uint64_t *value)
{
    struct locked l = lock_key(c, key, nkey);
    struct mp_item *it = find_live(c, &l, key, nkey, now, NULL);
    enum mp_result res = MP_OK;
    uint64_t v;
    if (!it) {
        res = MP_NOT_FOUND;
    } else if (it->nbytes == 0 || !mp_num_u64(mp_item_value(it), it->nbytes, &v)) {
        res = MP_NON_NUMERIC;
    } else {
        v = incr ? v + delta : (delta > v ? 0 : v - delta);
        char digits[24];
        size_t n = (size_t)snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
        if (n <= it->nbytes && atomic_load_explicit(&it->refs, memory_order_acquire) == 1) {
            memcpy(mp_item_value(it), digits, n);
            memset(mp_item_value(it) + n, ' ', it->nbytes - n);
            __atomic_store_n(&it->cas, mp_epoch_next_cas(&c->epoch, now), __ATOMIC_RELAXED);
            mp_item_touch_clock(it);
        } else {
            enum mp_result ares;
            struct mp_item *repl = mp_cache_alloc(c, key, nkey, mp_item_flags(it), it->exptime, (uint32_t)n, now, &ares);
            if (!repl) {
                res = MP_NOMEM;
            } else {
                memcpy(mp_item_value(repl), digits, n);
                repl->cas = mp_epoch_next_cas(&c->epoch, now);
                if (!mp_table_replace_locked(&c->table, l.st, l.hash, it, repl))
                    it = NULL;
                unlock_key(&l);
                if (it)
                    mp_slab_free(&c->slabs, it);
                *value = v;
                return MP_OK;
            }
        }
        *value = v;
    }
    unlock_key(&l);
    return res;
}

void mp_cache_flush(struct mp_cache *c, uint32_t now, uint32_t at)
{
    mp_epoch_flush(&c->epoch, now, at);
}

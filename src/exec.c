/* exec: see include/magpie/exec.h */
#include "magpie/exec.h"

#include <string.h>

#include "magpie/num.h"

uint32_t mp_exec_now(const struct mp_exec *x)
{
    return mp_clock_now(x->clock);
}

enum mp_result mp_exec_get(struct mp_exec *x, const char *key, size_t nkey, const struct mp_cache_reader *rd)
{
    enum mp_miss miss;
    mp_hotkeys_note(x->hot, key, nkey, false, mp_exec_now(x));
    enum mp_result r = mp_cache_get(x->cache, key, nkey, mp_exec_now(x), rd, &miss);
    MP_STAT_INC(x->st, cmd_get);
    if (r == MP_OK) {
        MP_STAT_INC(x->st, get_hits);
        return r;
    }
    MP_STAT_INC(x->st, get_misses);
    if (miss == MP_MISS_EXPIRED)
        MP_STAT_INC(x->st, get_expired);
    else if (miss == MP_MISS_FLUSHED)
        MP_STAT_INC(x->st, get_flushed);
    return r;
}

uint32_t mp_exec_ttl(const struct mp_exec *x, int64_t client_exptime)
{
    return mp_clock_exptime(x->clock, client_exptime, mp_exec_now(x));
}

enum mp_result mp_exec_touch(struct mp_exec *x, const char *key, size_t nkey, uint32_t exptime, mp_cache_hit_fn fn,
                             void *ctx)
{
    if (fn) /* a gat is a read */
        mp_hotkeys_note(x->hot, key, nkey, false, mp_exec_now(x));
    enum mp_result r = mp_cache_touch(x->cache, key, nkey, exptime, mp_exec_now(x), fn, ctx);
    MP_STAT_INC(x->st, cmd_touch);
    if (r == MP_NOT_FOUND)
        MP_STAT_INC(x->st, touch_misses);
    else
        MP_STAT_INC(x->st, touch_hits);
    return r;
}

struct mp_item *mp_exec_alloc(struct mp_exec *x, const char *key, size_t nkey, uint32_t flags, int64_t exptime,
                              uint32_t vlen, bool forget, enum mp_result *res)
{
    uint32_t t = mp_exec_now(x);
    struct mp_item *it =
        mp_cache_alloc(x->cache, key, nkey, flags, mp_clock_exptime(x->clock, exptime, t), vlen, t, res);
    if (it)
        return it;
    if (*res == MP_TOO_LARGE)
        MP_STAT_INC(x->st, store_too_large);
    else
        MP_STAT_INC(x->st, store_no_memory);
    /* A failed set must not leave stale data behind: memcached unlinks the old value. */
    if (forget)
        mp_cache_forget(x->cache, key, nkey);
    return NULL;
}

enum mp_result mp_exec_store(struct mp_exec *x)
{
    struct mp_store *st = &x->update.store;
    MP_STAT_INC(x->st, cmd_set);
    enum mp_result res = mp_cache_store(x->cache, &x->update.item, st, mp_exec_now(x));
    if (res == MP_STORED)
        MP_STAT_INC(x->st, total_items);
    if (st->op == MP_CAS) {
        if (res == MP_STORED)
            MP_STAT_INC(x->st, cas_hits);
        else if (res == MP_EXISTS)
            MP_STAT_INC(x->st, cas_badval);
        else if (res == MP_NOT_FOUND)
            MP_STAT_INC(x->st, cas_misses);
    }
    return res;
}

void mp_exec_drop(struct mp_exec *x)
{
    MP_STAT_INC(x->st, cmd_set);
    mp_cache_item_release(x->cache, &x->update.item);
}

enum mp_result mp_exec_delete(struct mp_exec *x, const char *key, size_t nkey, uint64_t cas)
{
    uint32_t t = mp_exec_now(x);
    enum mp_result res;
    if (cas == 0) {
        res = mp_cache_delete(x->cache, key, nkey, t);
    } else {
        struct mp_cache_lock lk;
        mp_cache_lock_key(x->cache, key, nkey, &lk);
        struct mp_item *it = mp_cache_find_locked(x->cache, &lk, key, nkey, t, NULL);
        res = !it ? MP_NOT_FOUND : mp_item_cas(it) != cas ? MP_EXISTS : MP_DELETED;
        if (res == MP_DELETED)
            mp_cache_unlink_locked(x->cache, &lk, it);
        mp_cache_unlock(&lk);
    }
    if (res == MP_DELETED)
        MP_STAT_INC(x->st, delete_hits);
    else if (res == MP_NOT_FOUND)
        MP_STAT_INC(x->st, delete_misses);
    return res;
}

static void count_arith(struct mp_exec *x, bool incr, bool hit)
{
    if (hit) {
        if (incr)
            MP_STAT_INC(x->st, incr_hits);
        else
            MP_STAT_INC(x->st, decr_hits);
    } else {
        if (incr)
            MP_STAT_INC(x->st, incr_misses);
        else
            MP_STAT_INC(x->st, decr_misses);
    }
}

/* A miss that creates: the initial value, linked under the held lock (memcached adds it). */
static enum mp_result create_initial(struct mp_exec *x, struct mp_cache_lock *lk, const char *key, size_t nkey,
                                     const struct mp_arith *a, uint32_t t, uint64_t *cas_out)
{
    char digits[20];
    size_t n = mp_num_format(digits, a->initial);
    enum mp_result res;
    struct mp_item *it =
        mp_cache_alloc(x->cache, key, nkey, 0, mp_clock_exptime(x->clock, a->exptime, t), (uint32_t)n, t, &res);
    if (!it)
        return MP_NOMEM;
    memcpy(mp_item_value(it), digits, n);
    if (!mp_cache_link_locked(x->cache, lk, it, t)) {
        mp_cache_item_release(x->cache, &it);
        return MP_NOMEM;
    }
    *cas_out = mp_item_cas(it);
    MP_STAT_INC(x->st, total_items);
    return MP_OK;
}

enum mp_result mp_exec_arith(struct mp_exec *x, const char *key, size_t nkey, struct mp_arith *a, uint64_t *value,
                             uint64_t *cas_out)
{
    uint32_t t = mp_exec_now(x);
    struct mp_cache_lock lk;
    mp_cache_lock_key(x->cache, key, nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(x->cache, &lk, key, nkey, t, NULL);
    enum mp_result res;
    *cas_out = 0;
    a->missed = !it;
    if (!it && a->create) {
        *value = a->initial;
        res = create_initial(x, &lk, key, nkey, a, t, cas_out);
    } else if (!it) {
        count_arith(x, a->incr, false);
        res = MP_NOT_FOUND;
    } else if (it->nbytes == 0) {
        res = MP_NON_NUMERIC; /* before the CAS, as memcached's do_add_delta */
    } else if (a->cas != 0 && mp_item_cas(it) != a->cas) {
        res = MP_EXISTS;
    } else {
        res = mp_cache_arith_locked(x->cache, &lk, &it, a->incr, a->delta, t, value);
        if (res != MP_NON_NUMERIC)
            count_arith(x, a->incr, true);
        if (res == MP_OK)
            *cas_out = mp_item_cas(it);
    }
    mp_cache_unlock(&lk);
    return res;
}

void mp_exec_flush(struct mp_exec *x, int64_t delay)
{
    /* Items stored before the second the delay ends in die (see mp_epoch_flush); no delay, or one
     * of 0 or less, flushes what is there now. */
    uint32_t t = mp_exec_now(x);
    uint32_t cutoff = delay > 0 ? mp_clock_exptime(x->clock, delay, t) : t;
    mp_cache_flush(x->cache, t, cutoff);
    MP_STAT_INC(x->st, cmd_flush);
}

void mp_exec_stats_reset(struct mp_exec *x)
{
    mp_stats_reset(x->stats);
    mp_cache_stats_reset(x->cache);
}

int mp_exec_stats(struct mp_exec *x, const char *args, size_t nargs, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_stats_source src = {x->cfg, x->cache, x->clock, x->stats, x->hotkeys, x->tls};
    return mp_stats_report(&src, args, nargs, emit, ctx);
}

/* exec: see include/magpie/exec.h */
#include "magpie/exec.h"

#include <string.h>

#include "magpie/num.h"

uint32_t mp_exec_now(const struct mp_exec *x)
{
    return mp_clock_now(x->clock);
}

/* A reader in front of the caller's, to learn the class of the item hit (for its counters). */
struct class_reader {
    const struct mp_cache_reader *rd;
    unsigned cls;
    uint32_t nbytes;
};

static void class_hit(void *ctx, const struct mp_hit *h)
{
    struct class_reader *cr = ctx;
    cr->cls = h->cls;
    cr->nbytes = h->nbytes;
    cr->rd->hit(cr->rd->ctx, h);
}

static void class_undo(void *ctx)
{
    struct class_reader *cr = ctx;
    if (cr->rd->undo)
        cr->rd->undo(cr->rd->ctx);
}

/* `watch fetchers`: memcached's item_get line. */
static void log_get(struct mp_exec *x, const char *key, size_t nkey, const char *status, unsigned cls, uint32_t nbytes)
{
    char enc[3 * MP_KEY_MAX + 1];
    mp_watch_uriencode(key, nkey, enc);
    mp_watch_log(x->watch, MP_WATCH_FETCHERS, "type=item_get key=%s status=%s clsid=%u cfd=%d size=%u", enc, status,
                 cls, x->fd, nbytes);
}

static const char *miss_status(enum mp_miss miss)
{
    return miss == MP_MISS_EXPIRED ? "expired" : miss == MP_MISS_FLUSHED ? "flushed" : "not_found";
}

/* stats detail: counted only while an operator has it on (stats.h). */
static void count_prefix(struct mp_exec *x, const char *key, size_t nkey, enum mp_stats_prefix_op op)
{
    if (mp_stats_detail_on(x->stats))
        mp_stats_prefix_count(x->st, key, nkey, op);
}

enum mp_result mp_exec_get(struct mp_exec *x, const char *key, size_t nkey, const struct mp_cache_reader *rd)
{
    enum mp_miss miss = MP_MISS_ABSENT;
    mp_hotkeys_note(x->hot, key, nkey, false, mp_exec_now(x));
    struct class_reader cr = {rd, 0, 0};
    const struct mp_cache_reader wrapped = {class_hit, rd->undo ? class_undo : NULL, &cr, rd->copy_max};
    enum mp_result r = mp_cache_get(x->cache, key, nkey, mp_exec_now(x), &wrapped, &miss);
    MP_STAT_INC(x->st, cmd_get);
    count_prefix(x, key, nkey, r == MP_OK ? MP_PREFIX_HIT : MP_PREFIX_GET);
    if (mp_watch_wants(x->watch, MP_WATCH_FETCHERS))
        log_get(x, key, nkey, r == MP_OK ? "found" : miss_status(miss), cr.cls, cr.nbytes);
    if (r == MP_OK) {
        MP_STAT_CLASS_INC(x->st, cr.cls, get_hits);
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
    unsigned cls = 0;
    enum mp_result r = mp_cache_touch(x->cache, key, nkey, exptime, mp_exec_now(x), fn, ctx, &cls);
    MP_STAT_INC(x->st, cmd_touch);
    if (fn) /* gat: memcached counts it as a get for stats detail */
        count_prefix(x, key, nkey, r == MP_OK ? MP_PREFIX_HIT : MP_PREFIX_GET);
    if (mp_watch_wants(x->watch, MP_WATCH_FETCHERS))
        log_get(x, key, nkey, r == MP_NOT_FOUND ? "not_found" : "found", cls, 0);
    if (r == MP_NOT_FOUND)
        MP_STAT_INC(x->st, touch_misses);
    else
        MP_STAT_CLASS_INC(x->st, cls, touch_hits);
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

void mp_exec_count_set(struct mp_exec *x, const char *key, size_t nkey)
{
    count_prefix(x, key, nkey, MP_PREFIX_SET);
}

static unsigned class_of(const struct mp_exec *x, const struct mp_item *it)
{
    return mp_slab_class_of(&x->cache->slabs, it);
}

/* `watch mutations`: memcached's item_store line. */
struct store_log {
    char key[3 * MP_KEY_MAX + 1];
    unsigned cls;
    uint32_t nbytes, exptime;
};

static void log_store(struct mp_exec *x, const struct store_log *l, enum mp_store_op op, enum mp_result res)
{
    static const char *const cmds[] = {[MP_SET] = "set",       [MP_ADD] = "add",         [MP_REPLACE] = "replace",
                                       [MP_APPEND] = "append", [MP_PREPEND] = "prepend", [MP_CAS] = "cas"};
    const char *status = res == MP_STORED      ? "stored"
                         : res == MP_EXISTS    ? "exists"
                         : res == MP_NOT_FOUND ? "not_found"
                         : res == MP_NOMEM     ? "no_memory"
                                               : "not_stored";
    uint32_t now = mp_exec_now(x);
    mp_watch_log(x->watch, MP_WATCH_MUTATIONS, "type=item_store key=%s status=%s cmd=%s ttl=%u clsid=%u cfd=%d size=%u",
                 l->key, status, cmds[op], l->exptime ? l->exptime - now : 0, l->cls, x->fd, l->nbytes);
}

enum mp_result mp_exec_store(struct mp_exec *x)
{
    struct mp_store *st = &x->update.store;
    struct mp_item *it = x->update.item;
    unsigned cls = class_of(x, it);
    MP_STAT_CLASS_INC(x->st, cls, cmd_set);
    struct store_log log;
    bool logging = mp_watch_wants(x->watch, MP_WATCH_MUTATIONS);
    if (logging) {
        mp_watch_uriencode(mp_item_key(it), it->nkey, log.key);
        log.cls = cls;
        log.nbytes = it->nbytes;
        log.exptime = mp_item_exptime(it);
    }
    enum mp_result res = mp_cache_store(x->cache, &x->update.item, st, mp_exec_now(x));
    if (logging)
        log_store(x, &log, st->op, res);
    if (res == MP_STORED)
        MP_STAT_INC(x->st, total_items);
    if (st->op == MP_CAS) {
        /* memcached counts a compare in the class of the item compared with */
        if (res == MP_STORED)
            MP_STAT_CLASS_INC(x->st, st->old_cls, cas_hits);
        else if (res == MP_EXISTS)
            MP_STAT_CLASS_INC(x->st, st->old_cls, cas_badval);
        else if (res == MP_NOT_FOUND)
            MP_STAT_INC(x->st, cas_misses);
    }
    return res;
}

void mp_exec_drop(struct mp_exec *x)
{
    MP_STAT_CLASS_INC(x->st, class_of(x, x->update.item), cmd_set);
    mp_cache_item_release(x->cache, &x->update.item);
}

enum mp_result mp_exec_delete(struct mp_exec *x, const char *key, size_t nkey, uint64_t cas)
{
    uint32_t t = mp_exec_now(x);
    enum mp_result res;
    unsigned cls = 0;
    struct mp_cache_lock lk;
    mp_cache_lock_key(x->cache, key, nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(x->cache, &lk, key, nkey, t, NULL);
    res = !it ? MP_NOT_FOUND : cas != 0 && mp_item_cas(it) != cas ? MP_EXISTS : MP_DELETED;
    if (res == MP_DELETED) {
        cls = class_of(x, it);
        mp_cache_unlink_locked(x->cache, &lk, it);
    }
    mp_cache_unlock(&lk);
    count_prefix(x, key, nkey, MP_PREFIX_DEL);
    if (res == MP_DELETED)
        MP_STAT_CLASS_INC(x->st, cls, delete_hits);
    else if (res == MP_NOT_FOUND)
        MP_STAT_INC(x->st, delete_misses);
    return res;
}

static void count_arith(struct mp_exec *x, bool incr, bool hit, unsigned cls)
{
    if (hit) {
        if (incr)
            MP_STAT_CLASS_INC(x->st, cls, incr_hits);
        else
            MP_STAT_CLASS_INC(x->st, cls, decr_hits);
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
        count_arith(x, a->incr, false, 0);
        res = MP_NOT_FOUND;
    } else if (it->nbytes == 0 || mp_item_has(it, MP_ITEM_CHAINED)) {
        res = MP_NON_NUMERIC; /* before the CAS, as memcached's do_add_delta */
    } else if (a->cas != 0 && mp_item_cas(it) != a->cas) {
        res = MP_EXISTS;
    } else {
        unsigned cls = class_of(x, it);
        res = mp_cache_arith_locked(x->cache, &lk, &it, a->incr, a->delta, t, value);
        if (res != MP_NON_NUMERIC)
            count_arith(x, a->incr, true, cls);
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
    struct mp_stats_source src = {.cfg = x->cfg,
                                  .cache = x->cache,
                                  .clock = x->clock,
                                  .stats = x->stats,
                                  .hotkeys = x->hotkeys,
                                  .event_lib = x->event_lib,
                                  .tls = x->tls,
                                  .snapshot = x->snapshot,
                                  .warm = x->warm,
                                  .log = {.watcher_buf = MP_WATCH_BUF}};
    if (x->watch) {
        src.log.watcher_sent = atomic_load(&x->watch->sent);
        src.log.watcher_skipped = atomic_load(&x->watch->skipped);
        src.log.watchers = atomic_load(&x->watch->nwatchers);
        src.log.worker_written = src.log.watcher_sent;
    }
    return mp_stats_report(&src, args, nargs, emit, ctx);
}

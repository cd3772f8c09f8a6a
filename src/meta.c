/* meta: see include/magpie/meta.h */
#include "magpie/meta.h"

#include <stdio.h>
#include <string.h>

#include "magpie/num.h"

/* A reply line being built; long enough for a key in base64 and every flag. */
struct line {
    char buf[1024];
    size_t n;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->n + n <= sizeof(l->buf)) {
        memcpy(l->buf + l->n, s, n);
        l->n += n;
    }
}

static void put_str(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* " <ch>" */
static void put_flag(struct line *l, char ch)
{
    char f[2] = {' ', ch};
    put(l, f, 2);
}

static void put_u64(struct line *l, uint64_t v)
{
    char d[20];
    put(l, d, mp_num_format(d, v));
}

/* The key as text, base64 for a binary key. */
static void put_key_text(struct line *l, const char *key, size_t nkey, bool binary)
{
    if (!binary) {
        put(l, key, nkey);
        return;
    }
    char enc[4 * ((MP_KEY_MAX + 2) / 3)];
    put(l, enc, mp_proto_base64_encode((const unsigned char *)key, nkey, enc));
}

/* " k<key>", followed by " b" for a binary key. */
static void put_key(struct line *l, const char *key, size_t nkey, bool binary)
{
    put_flag(l, 'k');
    put_key_text(l, key, nkey, binary);
    if (binary)
        put_flag(l, 'b');
}

/* " O<opaque>" as given. */
static void put_token(struct line *l, const struct mp_meta *m, size_t i)
{
    put(l, " ", 1);
    put(l, m->toks[i], m->ntoklen[i]);
}

/* TTL remaining: -1 for none. */
static void put_ttl(struct line *l, const struct mp_item *it, uint32_t now)
{
    uint32_t exp = mp_item_exptime(it);
    if (exp == 0)
        put_str(l, "-1");
    else
        put_u64(l, (uint32_t)(exp - now));
}

/* The reply's code: "VA <n>" when the value follows (v), else "HD". */
static void put_head(struct line *l, bool value, uint64_t n)
{
    if (value) {
        put_str(l, "VA ");
        put_u64(l, n);
    } else {
        put_str(l, "HD");
    }
}

static void send_line(const struct mp_meta_out *o, struct line *l)
{
    put(l, "\r\n", 2);
    o->bytes(o->ctx, l->buf, l->n);
}

/* A miss or refusal: the code, then the O and k flags of the request. */
static void short_reply(const struct mp_request *req, const char *code, const struct mp_meta_out *o)
{
    const struct mp_meta *m = &req->meta;
    struct line l = {.n = 0};
    put_str(&l, code);
    for (size_t i = 0; i < m->ntoks; i++) {
        if (m->toks[i][0] == 'O')
            put_token(&l, m, i);
        else if (m->toks[i][0] == 'k')
            put_key(&l, req->key, req->nkey, m->key_binary);
    }
    send_line(o, &l);
}

static uint32_t ttl(const struct mp_meta_env *e, int32_t client, uint32_t now)
{
    return mp_clock_exptime(e->clock, client, now);
}

/* An empty item for N (vivify) or ma's initial value, linked under the held lock. */
static struct mp_item *create(const struct mp_meta_env *e, struct mp_cache_lock *lk, const struct mp_request *req,
                              const char *value, size_t n, uint32_t now)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(e->cache, req->key, req->nkey, 0, 0, (uint32_t)n, now, &res);
    if (!it)
        return NULL;
    memcpy(mp_item_value(it), value, n);
    mp_item_set(it, MP_ITEM_KEY_BINARY, req->meta.key_binary);
    if (!mp_cache_link_locked(e->cache, lk, it, now)) {
        mp_cache_item_release(e->cache, &it);
        return NULL;
    }
    return it;
}

/* The slab class an item lives in, for the per-class counters (stats.h). */
static unsigned class_of(const struct mp_meta_env *e, const struct mp_item *it)
{
    return mp_slab_class_of(&e->cache->slabs, it);
}

/* mg counts as a get, or a hit with T as a touch, as in memcached (a miss with T is a get miss).
 * A hit counts in its item's class `cls`. */
static void count_get(const struct mp_meta_env *e, bool touch, bool hit, unsigned cls)
{
    if (touch) {
        MP_STAT_INC(e->st, cmd_touch);
        if (hit)
            MP_STAT_CLASS_INC(e->st, cls, touch_hits);
        else
            MP_STAT_INC(e->st, touch_misses);
    } else {
        MP_STAT_INC(e->st, cmd_get);
        if (hit)
            MP_STAT_CLASS_INC(e->st, cls, get_hits);
        else
            MP_STAT_INC(e->st, get_misses);
    }
}

static void count_arith(const struct mp_meta_env *e, bool incr, bool hit, unsigned cls)
{
    if (incr && hit)
        MP_STAT_CLASS_INC(e->st, cls, incr_hits);
    else if (incr)
        MP_STAT_INC(e->st, incr_misses);
    else if (hit)
        MP_STAT_CLASS_INC(e->st, cls, decr_hits);
    else
        MP_STAT_INC(e->st, decr_misses);
}

void mp_meta_get(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o)
{
    const struct mp_meta *m = &req->meta;
    uint32_t now = mp_clock_now(e->clock);
    struct mp_cache_lock lk;
    mp_cache_lock_key(e->cache, req->key, req->nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(e->cache, &lk, req->key, req->nkey, now, NULL);
    bool created = false, won = false;
    if (!it && m->vivify && (it = create(e, &lk, req, "", 0, now)))
        created = true;
    if (!it) {
        mp_cache_unlock(&lk);
        count_get(e, false, false, 0);
        if (!m->no_reply)
            short_reply(req, "EN", o);
        return;
    }
    if (m->value && !mp_cache_item_pinnable(it)) {
        /* as memcached answers a fetch past its reference limit */
        mp_cache_unlock(&lk);
        o->bytes(o->ctx, "SERVER_ERROR refcount overflow during fetch\r\n", 45);
        return;
    }
    bool fetched = mp_item_fetched(it);
    uint64_t seen = mp_item_stamp(it);
    struct line l = {.n = 0};
    put_head(&l, m->value, it->nbytes);
    for (size_t i = 0; i < m->ntoks; i++) {
        switch (m->toks[i][0]) {
        case 'T': mp_cache_set_exptime_locked(&lk, it, ttl(e, m->exptime, now)); break;
        case 'N':
            if (created) {
                mp_cache_set_exptime_locked(&lk, it, ttl(e, m->vivify_exptime, now));
                won = true;
            }
            break;
        case 'R':
            if (!mp_item_has(it, MP_ITEM_TOKEN_SENT) && !created && mp_item_exptime(it) != 0 &&
                mp_item_exptime(it) < ttl(e, m->recache_time, now))
                won = true;
            break;
        case 's':
            put_flag(&l, 's');
            put_u64(&l, it->nbytes);
            break;
        case 't':
            put_flag(&l, 't');
            put_ttl(&l, it, now);
            break;
        case 'c':
            put_flag(&l, 'c');
            put_u64(&l, mp_item_cas(it));
            break;
        case 'f':
            put_flag(&l, 'f');
            put_u64(&l, mp_item_flags(it));
            break;
        case 'h':
            put_flag(&l, 'h');
            put(&l, fetched ? "1" : "0", 1);
            break;
        case 'l': /* seconds since the last access, as it was before this one */
            put_flag(&l, 'l');
            put_u64(&l, mp_item_la_age(seen, now));
            break;
        case 'O': put_token(&l, m, i); break;
        case 'k': put_key(&l, mp_item_key(it), it->nkey, mp_item_has(it, MP_ITEM_KEY_BINARY)); break;
        }
    }
    /* Z before W: a client is never told both that it won and that someone else did. */
    if (mp_item_has(it, MP_ITEM_TOKEN_SENT))
        put_flag(&l, 'Z');
    if (mp_item_has(it, MP_ITEM_STALE)) {
        put_flag(&l, 'X');
        won = won || !mp_item_has(it, MP_ITEM_TOKEN_SENT);
    }
    if (won) {
        put_flag(&l, 'W');
        mp_item_set(it, MP_ITEM_TOKEN_SENT, true);
    }
    send_line(o, &l);
    if (m->value) {
        struct mp_hit h;
        mp_cache_hit_locked(it, &h);
        o->value(o->ctx, &h);
    }
    if (!m->no_update)
        mp_item_touch_clock(it, now);
    unsigned cls = class_of(e, it);
    mp_cache_unlock(&lk);
    count_get(e, m->new_ttl, true, cls);
}

void mp_meta_delete(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o)
{
    const struct mp_meta *m = &req->meta;
    uint32_t now = mp_clock_now(e->clock);
    struct mp_cache_lock lk;
    mp_cache_lock_key(e->cache, req->key, req->nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(e->cache, &lk, req->key, req->nkey, now, NULL);
    const char *code = "HD";
    if (!it) {
        code = "NF";
    } else if (m->has_cas && mp_item_cas(it) != m->cas) {
        code = "EX";
    } else if (m->set_stale) {
        /* Invalidate: keep the value, serve it stale, and let one client win the recache. */
        if (m->new_ttl)
            mp_cache_set_exptime_locked(&lk, it, ttl(e, m->exptime, now));
        mp_item_set(it, MP_ITEM_STALE, true);
        mp_item_set(it, MP_ITEM_TOKEN_SENT, false);
        mp_cache_recas_locked(e->cache, &lk, it, now);
    } else {
        MP_STAT_CLASS_INC(e->st, class_of(e, it), delete_hits);
        mp_cache_unlink_locked(e->cache, &lk, it);
    }
    mp_cache_unlock(&lk);
    if (code[0] != 'H')
        MP_STAT_INC(e->st, delete_misses);
    if (code[0] != 'H' || !m->no_reply)
        short_reply(req, code, o);
}

void mp_meta_arith(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o)
{
    const struct mp_meta *m = &req->meta;
    bool incr = m->mode != 'D' && m->mode != '-';
    uint32_t now = mp_clock_now(e->clock);
    struct mp_cache_lock lk;
    mp_cache_lock_key(e->cache, req->key, req->nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(e->cache, &lk, req->key, req->nkey, now, NULL);
    uint64_t value = 0;
    bool created = false, quiet = false;
    const char *code = NULL, *error = NULL;
    if (it && (it->nbytes == 0 || mp_item_has(it, MP_ITEM_CHAINED))) {
        error = mp_proto_result_str(MP_NON_NUMERIC);
    } else if (it && m->cas != 0 && mp_item_cas(it) != m->cas) {
        code = "EX";
        it = NULL;
    } else if (it) {
        enum mp_result r = mp_cache_arith_locked(e->cache, &lk, &it, incr, m->delta, now, &value);
        if (r == MP_NON_NUMERIC)
            error = mp_proto_result_str(MP_NON_NUMERIC);
        else if (r == MP_NOMEM)
            error = "SERVER_ERROR out of memory";
        if (r != MP_NON_NUMERIC)
            count_arith(e, incr, true, class_of(e, it));
        quiet = m->no_reply;
    } else if (m->vivify) {
        char digits[20];
        value = m->initial;
        it = create(e, &lk, req, digits, mp_num_format(digits, value), now);
        if (!it)
            error = "SERVER_ERROR Out of memory allocating new item";
        created = it != NULL;
    } else {
        code = "NF";
        count_arith(e, incr, false, 0);
    }
    if (error || code) {
        mp_cache_unlock(&lk);
        if (error) {
            o->bytes(o->ctx, error, strlen(error));
            o->bytes(o->ctx, "\r\n", 2);
        } else {
            short_reply(req, code, o);
        }
        return;
    }
    char digits[20];
    size_t nd = mp_num_format(digits, value);
    struct line l = {.n = 0};
    put_head(&l, m->value, nd);
    for (size_t i = 0; i < m->ntoks; i++) {
        switch (m->toks[i][0]) {
        case 'c':
            put_flag(&l, 'c');
            put_u64(&l, mp_item_cas(it));
            break;
        case 't':
            put_flag(&l, 't');
            put_ttl(&l, it, now);
            break;
        case 'T': mp_cache_set_exptime_locked(&lk, it, ttl(e, m->exptime, now)); break;
        case 'N':
            if (created)
                mp_cache_set_exptime_locked(&lk, it, ttl(e, m->vivify_exptime, now));
            break;
        case 'O': put_token(&l, m, i); break;
        case 'k': put_key(&l, req->key, req->nkey, m->key_binary); break;
        }
    }
    mp_cache_unlock(&lk);
    if (quiet)
        return;
    if (m->value) {
        put(&l, "\r\n", 2);
        put(&l, digits, nd);
    }
    send_line(o, &l);
}

void mp_meta_debug(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o)
{
    uint32_t now = mp_clock_now(e->clock);
    MP_STAT_INC(e->st, cmd_meta); /* memcached 1.6.18 counts `me` alone as cmd_meta */
    struct mp_cache_lock lk;
    mp_cache_lock_key(e->cache, req->key, req->nkey, &lk);
    struct mp_item *it = mp_cache_find_locked(e->cache, &lk, req->key, req->nkey, now, NULL);
    if (!it) {
        mp_cache_unlock(&lk);
        o->bytes(o->ctx, "EN\r\n", 4);
        return;
    }
    struct line l = {.n = 0};
    put_str(&l, "ME ");
    put_key_text(&l, mp_item_key(it), it->nkey, mp_item_has(it, MP_ITEM_KEY_BINARY));
    /* memcached's exp is now minus the exptime (negative while the item lives), -1 for none; la
     * the seconds since the last access (item.h: whole minutes). */
    char tail[160];
    unsigned cls = mp_slab_class_of(&e->cache->slabs, it);
    uint32_t exptime = mp_item_exptime(it);
    int n = snprintf(tail, sizeof(tail), " exp=%d la=%u cas=%llu fetch=%s cls=%u size=%zu",
                     exptime == 0 ? -1 : (int)(now - exptime), mp_item_la_age(mp_item_stamp(it), now),
                     (unsigned long long)mp_item_cas(it), mp_item_fetched(it) ? "yes" : "no", cls,
                     mp_item_total(it->nkey, it->nbytes, mp_item_flags(it)));
    mp_cache_unlock(&lk);
    put(&l, tail, (size_t)n);
    send_line(o, &l);
}

void mp_meta_set_prepare(const struct mp_request *req, struct mp_meta_set *ms)
{
    const struct mp_meta *m = &req->meta;
    static const enum mp_store_op modes[128] = {
        ['E'] = MP_ADD, ['A'] = MP_APPEND, ['P'] = MP_PREPEND, ['R'] = MP_REPLACE, ['S'] = MP_SET};
    enum mp_store_op op = m->mode ? modes[(unsigned char)m->mode] : MP_SET;
    if (m->has_cas && (op == MP_SET || op == MP_REPLACE))
        op = MP_CAS;
    ms->store = (struct mp_store){.op = op, .cas = m->cas, .stale_ok = m->set_stale && op == MP_CAS};
    ms->noreply = m->no_reply;
    ms->key_binary = m->key_binary;
    ms->nkey = (uint8_t)req->nkey;
    memcpy(ms->key, req->key, req->nkey);
    ms->nstash = 0;
    for (size_t i = 0; i < m->ntoks; i++) {
        char f = m->toks[i][0];
        if (f != 'O' && f != 'k' && f != 'c')
            continue;
        size_t n = f == 'O' ? m->ntoklen[i] : 1;
        ms->stash[ms->nstash++] = ' ';
        memcpy(ms->stash + ms->nstash, m->toks[i], n);
        ms->nstash += n;
    }
}

void mp_meta_set_reply(const struct mp_meta_set *ms, enum mp_result res, const struct mp_meta_out *o)
{
    const char *code = res == MP_STORED ? "HD" : res == MP_EXISTS ? "EX" : res == MP_NOT_FOUND ? "NF" : "NS";
    if (res == MP_STORED && ms->noreply)
        return;
    struct line l = {.n = 0};
    put_str(&l, code);
    for (size_t i = 0; i < ms->nstash; i++) {
        if (ms->stash[i] != ' ')
            continue;
        char f = ms->stash[i + 1];
        if (f == 'O') {
            size_t j = i + 1;
            while (j < ms->nstash && ms->stash[j] != ' ')
                j++;
            put(&l, ms->stash + i, j - i);
        } else if (f == 'k') {
            put_key(&l, ms->key, ms->nkey, ms->key_binary);
        } else if (f == 'c') {
            put_flag(&l, 'c');
            put_u64(&l, ms->store.cas_out);
        }
    }
    send_line(o, &l);
}

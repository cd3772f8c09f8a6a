/* conn: see include/magpie/conn.h */
#include "magpie/conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "magpie/log.h"
#include "magpie/meta.h"
#include "magpie/num.h"

#define RBUF_SIZE (16 * 1024)
#define OBUF_SIZE (16 * 1024)
#define OBUF_KEEP (64 * 1024)       /* a buffer grown past this shrinks back after its write */
#define OUT_HIGH_WATER (256 * 1024) /* flush, and maybe pause, at this much pending output */
#define COPY_MAX (16 * 1024)        /* larger values are written from the item, not copied */
#define DIRECT_READ_MIN (16 * 1024) /* larger value remainders are read straight into the item */
#define SEGS_INIT 16

enum state {
    ST_CMD,       /* expecting a command line */
    ST_VALUE,     /* reading a storage command's value into c->item */
    ST_VALUE_END, /* reading the "\r\n" after it */
    ST_SWALLOW,   /* discarding the value of a refused storage command */
    ST_GET,       /* answering the keys of a get in [get_pos, get_end) */
    ST_GET_KEYS,  /* waiting for more keys of a long get line */
    ST_SKIP_LINE, /* discarding the rest of a refused long line */
    ST_CLOSING,
};

/* Output: a run of the output buffer, or (ext != NULL) bytes of a pinned item. Runs are kept as
 * offsets so the buffer can grow while replies are gathered. */
struct seg {
    const char *ext;
    size_t off;
    size_t len;
};

/* How far the output had got, to take back what follows. */
struct out_mark {
    size_t nsegs, olen, held, pending;
    size_t last; /* the length of the last segment then: it may grow in place */
};

struct mp_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_write_t wreq;
    const struct mp_conn_env *env;
    struct mp_stats_thread *st;
    struct mp_latency_batch lat;   /* the commands of this round, for the latency histograms */
    struct mp_hotkeys_thread *hot; /* the worker's hot keys sketch, or NULL */
    struct mp_conn_list *list;
    struct mp_conn *prev, *next;
    int fd;
    enum state state;
    bool reading;
    bool writing;
    bool close_after_write;
    _Atomic uint32_t last_active; /* read by `stats conns` on other workers */
    _Atomic uint8_t shown_state;  /* the state `stats conns` reports, set once per process() */
    char addr[64];                /* "tcp:host:port" or "unix:path", fixed at creation */

    /* input: unread bytes are rbuf[rpos, rlen) */
    char *rbuf;
    size_t rpos, rlen;

    /* the storage command being read */
    struct mp_item *item;
    uint32_t vfill;
    struct mp_store store;
    bool noreply;
    bool meta_set; /* an ms: answered by mp_meta_set_reply from mset */
    struct mp_meta_set mset;
    struct mp_meta_out meta_sink;
    char crlf[2];
    uint8_t crlf_fill;
    size_t swallow;

    /* the get being answered */
    enum mp_cmd get_cmd;
    uint32_t get_exptime;
    const char *get_pos, *get_end;
    bool get_more;            /* the line goes on past get_end */
    struct out_mark get_mark; /* output before this get, to undo it */
    bool get_flushed;         /* part of its output is gone: it cannot be undone */
    struct out_mark hit_mark; /* output before this key's hit, should the engine undo it */

    /* output */
    char *obuf;
    size_t ocap, olen;
    struct seg *segs;
    uv_buf_t *bufs;
    size_t nsegs, segcap;
    struct mp_item **held;
    size_t nheld, heldcap;
    size_t pending; /* bytes described by segs */
};

static void process(struct mp_conn *c);
static void close_conn(struct mp_conn *c);

/* ---- output ---------------------------------------------------------------------------------- */

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

static bool seg_room(struct mp_conn *c)
{
    size_t cap = c->segcap;
    if (!grow((void **)&c->segs, &cap, c->nsegs + 1, sizeof(struct seg)))
        return false;
    size_t bcap = c->segcap;
    if (!grow((void **)&c->bufs, &bcap, cap, sizeof(uv_buf_t)))
        return false;
    c->segcap = cap;
    return true;
}

/* Append bytes to the output. On allocation failure the connection is closed: a reply cannot be
 * half-sent and still keep the client in step. */
static void out(struct mp_conn *c, const char *data, size_t n)
{
    if (n == 0 || c->state == ST_CLOSING)
        return;
    if (!grow((void **)&c->obuf, &c->ocap, c->olen + n, 1)) {
        close_conn(c);
        return;
    }
    memcpy(c->obuf + c->olen, data, n);
    struct seg *last = c->nsegs ? &c->segs[c->nsegs - 1] : NULL;
    if (last && !last->ext && last->off + last->len == c->olen) {
        last->len += n;
    } else {
        if (!seg_room(c)) {
            close_conn(c);
            return;
        }
        c->segs[c->nsegs++] = (struct seg){NULL, c->olen, n};
    }
    c->olen += n;
    c->pending += n;
}

static void out_str(struct mp_conn *c, const char *s)
{
    out(c, s, strlen(s));
}

/* Append a pinned item's bytes; the reference is dropped once they are written. */
static void out_item(struct mp_conn *c, struct mp_item *it, const char *data, size_t n)
{
    if (c->state == ST_CLOSING || !seg_room(c) ||
        !grow((void **)&c->held, &c->heldcap, c->nheld + 1, sizeof(*c->held))) {
        mp_cache_item_release(c->env->cache, &it);
        close_conn(c);
        return;
    }
    c->held[c->nheld++] = it;
    c->segs[c->nsegs++] = (struct seg){data, 0, n};
    c->pending += n;
}

/* A one-line reply, unless the request said noreply. */
static void reply(struct mp_conn *c, bool noreply, const char *line)
{
    if (noreply)
        return;
    out_str(c, line);
    out(c, "\r\n", 2);
}

static void release_held(struct mp_conn *c, size_t from)
{
    for (size_t i = from; i < c->nheld; i++)
        mp_cache_item_release(c->env->cache, &c->held[i]);
    c->nheld = from;
}

static void mark_output(const struct mp_conn *c, struct out_mark *m)
{
    *m = (struct out_mark){c->nsegs, c->olen, c->nheld, c->pending, c->nsegs ? c->segs[c->nsegs - 1].len : 0};
}

/* Back to the mark; nothing may have been written to the socket since. */
static void undo_output(struct mp_conn *c, const struct out_mark *m)
{
    release_held(c, m->held);
    c->nsegs = m->nsegs;
    if (c->nsegs)
        c->segs[c->nsegs - 1].len = m->last;
    c->olen = m->olen;
    c->pending = m->pending;
}

static void reset_output(struct mp_conn *c)
{
    release_held(c, 0);
    c->nsegs = 0;
    c->olen = 0;
    c->pending = 0;
    if (c->ocap > OBUF_KEEP) {
        char *nb = realloc(c->obuf, OBUF_SIZE);
        if (nb) {
            c->obuf = nb;
            c->ocap = OBUF_SIZE;
        }
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct mp_conn *c = req->data;
    c->writing = false;
    reset_output(c);
    if (status < 0 || c->close_after_write) {
        close_conn(c);
        return;
    }
    process(c);
}

/* Write everything pending: at once if the socket takes it, else queue the rest and return
 * false; the connection then waits for on_write before it reads or parses again. */
static bool flush(struct mp_conn *c)
{
    if (c->writing)
        return false;
    if (c->nsegs == 0)
        return true;
    if (c->state == ST_GET || c->state == ST_GET_KEYS)
        c->get_flushed = true; /* part of this get's replies is gone: it can no longer be undone */
    for (size_t i = 0; i < c->nsegs; i++) {
        const struct seg *s = &c->segs[i];
        c->bufs[i] = uv_buf_init((char *)(s->ext ? s->ext : c->obuf + s->off), (unsigned)s->len);
    }
    size_t n = c->nsegs, first = 0;
    int w = uv_try_write(&c->h.stream, c->bufs, (unsigned)n);
    if (w < 0 && w != UV_EAGAIN) {
        close_conn(c);
        return false;
    }
    size_t written = w > 0 ? (size_t)w : 0;
    MP_STAT_ADD(c->st, bytes_written, c->pending);
    if (written == c->pending) {
        reset_output(c);
        return true;
    }
    /* Skip what went out; queue the rest. Buffers and pinned items stay alive until on_write. */
    while (written >= c->bufs[first].len) {
        written -= c->bufs[first].len;
        first++;
    }
    c->bufs[first].base += written;
    c->bufs[first].len -= written;
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, c->bufs + first, (unsigned)(n - first), on_write) != 0) {
        close_conn(c);
        return false;
    }
    c->writing = true;
    MP_STAT_INC(c->st, conn_yields);
    return false;
}

/* ---- commands -------------------------------------------------------------------------------- */

static uint32_t now(const struct mp_conn *c)
{
    return mp_clock_now(c->env->clock);
}

/* A hit's value and "\r\n" (see cache.h): a small value is copied, a large one pinned (under the
 * stripe lock, the only way the engine hands over a large value) and written from where it lives. */
static void out_value(void *ctx, const struct mp_hit *h)
{
    struct mp_conn *c = ctx;
    if (h->nbytes <= COPY_MAX || !h->it) {
        out(c, h->value, h->nbytes);
    } else {
        mp_cache_item_ref(h->it);
        out_item(c, h->it, h->value, h->nbytes);
    }
    out(c, "\r\n", 2);
}

/* A get's hit: "VALUE ..." and the value. */
static void emit_value(void *ctx, const struct mp_hit *h)
{
    struct mp_conn *c = ctx;
    char hdr[MP_PROTO_VALUE_HDR_MAX];
    bool with_cas = c->get_cmd == MP_CMD_GETS || c->get_cmd == MP_CMD_GATS;
    out(c, hdr, mp_proto_value_header(hdr, h->key, h->nkey, h->flags, h->nbytes, with_cas, h->cas));
    out_value(c, h);
}

/* The engine read a hit while it changed: take back what emit_value wrote. */
static void unemit_value(void *ctx)
{
    struct mp_conn *c = ctx;
    undo_output(c, &c->hit_mark);
}

static void get_one(struct mp_conn *c, const char *key, size_t nkey)
{
    mp_hotkeys_note(c->hot, key, nkey, false, now(c));
    bool touch = c->get_cmd == MP_CMD_GAT || c->get_cmd == MP_CMD_GATS;
    if (touch) {
        enum mp_result r = mp_cache_touch(c->env->cache, key, nkey, c->get_exptime, now(c), emit_value, c);
        MP_STAT_INC(c->st, cmd_touch);
        if (r == MP_OK)
            MP_STAT_INC(c->st, touch_hits);
        else
            MP_STAT_INC(c->st, touch_misses);
        return;
    }
    enum mp_miss miss;
    const struct mp_cache_reader rd = {emit_value, unemit_value, c, COPY_MAX};
    mark_output(c, &c->hit_mark);
    enum mp_result r = mp_cache_get(c->env->cache, key, nkey, now(c), &rd, &miss);
    MP_STAT_INC(c->st, cmd_get);
    if (r == MP_OK) {
        MP_STAT_INC(c->st, get_hits);
        return;
    }
    MP_STAT_INC(c->st, get_misses);
    if (miss == MP_MISS_EXPIRED)
        MP_STAT_INC(c->st, get_expired);
    else if (miss == MP_MISS_FLUSHED)
        MP_STAT_INC(c->st, get_flushed);
}

/* A key over 250 bytes ends the get with an error, and, as in memcached, the values it had
 * produced are withdrawn, where they have not been written already. */
static void get_refuse(struct mp_conn *c)
{
    if (!c->get_flushed)
        undo_output(c, &c->get_mark);
    reply(c, false, "CLIENT_ERROR bad command line format");
    c->state = c->get_more ? ST_SKIP_LINE : ST_CMD;
}

/* Answer keys until the list ends or the output reaches its high-water mark. */
static bool step_get(struct mp_conn *c)
{
    const char *key;
    size_t nkey;
    while (mp_proto_next_key(&c->get_pos, c->get_end, &key, &nkey)) {
        if (nkey > MP_KEY_MAX) {
            get_refuse(c);
            return true;
        }
        get_one(c, key, nkey);
        if (c->pending >= OUT_HIGH_WATER && !flush(c))
            return false; /* resumes from get_pos in on_write */
    }
    if (c->get_more) {
        c->state = ST_GET_KEYS;
        return true;
    }
    out(c, "END\r\n", 5);
    c->state = ST_CMD;
    return true;
}

static void start_get(struct mp_conn *c, const struct mp_request *req)
{
    c->get_cmd = req->cmd;
    if (req->cmd == MP_CMD_GAT || req->cmd == MP_CMD_GATS)
        c->get_exptime = mp_clock_exptime(c->env->clock, req->exptime, now(c));
    c->get_pos = req->keys;
    c->get_end = req->keys + req->nkeys;
    c->get_more = req->partial;
    mark_output(c, &c->get_mark);
    c->get_flushed = false;
    c->state = ST_GET;
}

static const enum mp_store_op store_ops[] = {
    [MP_CMD_SET] = MP_SET,       [MP_CMD_ADD] = MP_ADD,         [MP_CMD_REPLACE] = MP_REPLACE,
    [MP_CMD_APPEND] = MP_APPEND, [MP_CMD_PREPEND] = MP_PREPEND, [MP_CMD_CAS] = MP_CAS,
};

static void swallow(struct mp_conn *c, size_t n)
{
    c->swallow = n;
    c->state = ST_SWALLOW;
}

/* set/add/replace/append/prepend/cas and ms: allocate the item the value is read into. */
static void start_update(struct mp_conn *c, const struct mp_request *req)
{
    uint32_t t = now(c);
    bool meta = req->cmd == MP_CMD_MS;
    int32_t client_exptime = meta ? (req->meta.new_ttl ? req->meta.exptime : 0) : req->exptime;
    uint32_t flags = meta ? req->meta.client_flags : req->flags;
    uint32_t exptime = mp_clock_exptime(c->env->clock, client_exptime, t);
    enum mp_result res;
    c->item = mp_cache_alloc(c->env->cache, req->key, req->nkey, flags, exptime, (uint32_t)req->vlen, t, &res);
    c->noreply = meta ? req->meta.no_reply : req->noreply;
    c->meta_set = meta;
    if (!c->item) {
        if (res == MP_TOO_LARGE)
            MP_STAT_INC(c->st, store_too_large);
        else
            MP_STAT_INC(c->st, store_no_memory);
        /* meta commands always report errors */
        reply(c, req->noreply, mp_proto_result_str(res));
        /* Read past the value to stay in step, and drop the old value: a failed set must not
         * leave stale data behind (memcached does this for set, and for every ms). */
        swallow(c, (size_t)req->vlen + 2);
        if (req->cmd == MP_CMD_SET || meta)
            mp_cache_forget(c->env->cache, req->key, req->nkey);
        return;
    }
    if (meta) {
        mp_meta_set_prepare(req, &c->mset);
        c->store = c->mset.store;
        mp_item_set(c->item, MP_ITEM_KEY_BINARY, req->meta.key_binary);
    } else {
        c->store = (struct mp_store){.op = store_ops[req->cmd], .cas = req->cas};
    }
    c->vfill = 0;
    c->crlf_fill = 0;
    c->state = req->vlen > 0 ? ST_VALUE : ST_VALUE_END;
}

static const struct mp_meta_out *meta_out(struct mp_conn *c);

static void finish_update(struct mp_conn *c)
{
    c->state = ST_CMD;
    MP_STAT_INC(c->st, cmd_set);
    if (c->crlf[0] != '\r' || c->crlf[1] != '\n') {
        mp_cache_item_release(c->env->cache, &c->item);
        reply(c, c->noreply && !c->meta_set, mp_proto_result_str(MP_BAD_CHUNK));
        return;
    }
    enum mp_store_op op = c->store.op;
    enum mp_result res = mp_cache_store(c->env->cache, &c->item, &c->store, now(c));
    if (res == MP_STORED)
        MP_STAT_INC(c->st, total_items);
    if (op == MP_CAS) {
        if (res == MP_STORED)
            MP_STAT_INC(c->st, cas_hits);
        else if (res == MP_EXISTS)
            MP_STAT_INC(c->st, cas_badval);
        else if (res == MP_NOT_FOUND)
            MP_STAT_INC(c->st, cas_misses);
    }
    if (c->meta_set) {
        c->mset.store.cas_out = c->store.cas_out;
        mp_meta_set_reply(&c->mset, res, meta_out(c));
    } else {
        reply(c, c->noreply, mp_proto_result_str(res));
    }
}

static void run_arith(struct mp_conn *c, const struct mp_request *req)
{
    bool incr = req->cmd == MP_CMD_INCR;
    uint64_t v;
    enum mp_result res = mp_cache_arith(c->env->cache, req->key, req->nkey, incr, req->delta, now(c), &v);
    if (res == MP_NOT_FOUND) {
        if (incr)
            MP_STAT_INC(c->st, incr_misses);
        else
            MP_STAT_INC(c->st, decr_misses);
    } else if (res == MP_OK || res == MP_NOMEM) {
        if (incr)
            MP_STAT_INC(c->st, incr_hits);
        else
            MP_STAT_INC(c->st, decr_hits);
    }
    if (res == MP_OK) {
        char digits[24];
        digits[mp_num_format(digits, v)] = '\0';
        reply(c, req->noreply, digits);
    } else {
        reply(c, req->noreply, res == MP_NOMEM ? "SERVER_ERROR out of memory" : mp_proto_result_str(res));
    }
}

static void run_delete(struct mp_conn *c, const struct mp_request *req)
{
    enum mp_result res = mp_cache_delete(c->env->cache, req->key, req->nkey, now(c));
    if (res == MP_DELETED)
        MP_STAT_INC(c->st, delete_hits);
    else
        MP_STAT_INC(c->st, delete_misses);
    reply(c, req->noreply, mp_proto_result_str(res));
}

static void run_touch(struct mp_conn *c, const struct mp_request *req)
{
    uint32_t t = now(c);
    uint32_t exptime = mp_clock_exptime(c->env->clock, req->exptime, t);
    enum mp_result res = mp_cache_touch(c->env->cache, req->key, req->nkey, exptime, t, NULL, NULL);
    MP_STAT_INC(c->st, cmd_touch);
    if (res == MP_TOUCHED)
        MP_STAT_INC(c->st, touch_hits);
    else
        MP_STAT_INC(c->st, touch_misses);
    reply(c, req->noreply, mp_proto_result_str(res));
}

/* flush_all [delay]: items stored before the second the delay ends in die (see mp_epoch_flush); no
 * delay, or one of 0 or less, flushes what is there now. */
static void run_flush_all(struct mp_conn *c, const struct mp_request *req)
{
    uint32_t t = now(c);
    uint32_t cutoff = req->exptime > 0 ? mp_clock_exptime(c->env->clock, req->exptime, t) : t;
    mp_cache_flush(c->env->cache, t, cutoff);
    MP_STAT_INC(c->st, cmd_flush);
    reply(c, req->noreply, "OK");
}

static void emit_stat(void *ctx, const char *name, const char *fmt, ...)
{
    struct mp_conn *c = ctx;
    char line[512];
    int n = snprintf(line, sizeof(line), "STAT %s ", name);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof(line) - (size_t)n - 2 ? (size_t)m : sizeof(line) - (size_t)n - 3);
    line[len++] = '\r';
    line[len++] = '\n';
    out(c, line, len);
}

static const char *const state_names[] = {
    [ST_CMD] = "conn_parse_cmd",     [ST_VALUE] = "conn_nread",     [ST_VALUE_END] = "conn_nread",
    [ST_SWALLOW] = "conn_swallow",   [ST_GET] = "conn_mwrite",      [ST_GET_KEYS] = "conn_parse_cmd",
    [ST_SKIP_LINE] = "conn_swallow", [ST_CLOSING] = "conn_closing",
};

/* `stats conns`: every connection of every worker, as memcached lists them. */
static void report_conns(struct mp_conn *c)
{
    uint32_t t = now(c);
    char name[32];
    for (unsigned i = 0; i < c->env->nlists; i++) {
        struct mp_conn_list *list = c->env->lists[i];
        pthread_mutex_lock(&list->lock);
        for (struct mp_conn *p = list->head; p; p = p->next) {
            uint8_t st = atomic_load_explicit(&p->shown_state, memory_order_relaxed);
            snprintf(name, sizeof(name), "%d:addr", p->fd);
            emit_stat(c, name, "%s", p->addr);
            snprintf(name, sizeof(name), "%d:state", p->fd);
            emit_stat(c, name, "%s", p == c ? "conn_parse_cmd" : state_names[st]);
            snprintf(name, sizeof(name), "%d:secs_since_last_cmd", p->fd);
            emit_stat(c, name, "%u", t - atomic_load_explicit(&p->last_active, memory_order_relaxed));
        }
        pthread_mutex_unlock(&list->lock);
    }
}

static void run_stats(struct mp_conn *c, const struct mp_request *req)
{
    const char *args = req->keys;
    size_t nargs = req->nkeys;
    if (nargs >= 5 && memcmp(args, "reset", 5) == 0 && (nargs == 5 || args[5] == ' ')) {
        mp_stats_reset(c->env->stats);
        mp_cache_stats_reset(c->env->cache);
        reply(c, false, "RESET");
        return;
    }
    if (nargs >= 5 && memcmp(args, "conns", 5) == 0 && (nargs == 5 || args[5] == ' ')) {
        report_conns(c);
        out(c, "END\r\n", 5);
        return;
    }
    struct mp_stats_source src = {c->env->cfg, c->env->cache, c->env->clock, c->env->stats, c->env->hotkeys};
    if (mp_stats_report(&src, args, nargs, emit_stat, c) != 0) {
        reply(c, false, "ERROR");
        return;
    }
    out(c, "END\r\n", 5);
}

static void meta_bytes(void *ctx, const char *data, size_t n)
{
    out(ctx, data, n);
}

static const struct mp_meta_out *meta_out(struct mp_conn *c)
{
    c->meta_sink = (struct mp_meta_out){c, meta_bytes, out_value};
    return &c->meta_sink;
}

static void run_meta(struct mp_conn *c, const struct mp_request *req)
{
    struct mp_meta_env e = {c->env->cache, c->env->clock, c->st};
    const struct mp_meta_out *o = meta_out(c);
    switch (req->cmd) {
    case MP_CMD_MG:
        mp_hotkeys_note(c->hot, req->key, req->nkey, req->meta.key_binary, now(c));
        mp_meta_get(&e, req, o);
        break;
    case MP_CMD_MD: mp_meta_delete(&e, req, o); break;
    case MP_CMD_MA: mp_meta_arith(&e, req, o); break;
    default: mp_meta_debug(&e, req, o); break;
    }
}

static void execute(struct mp_conn *c, struct mp_request *req)
{
    mp_latency_note(&c->lat, req->cmd);
    switch (req->cmd) {
    case MP_CMD_GET:
    case MP_CMD_GETS:
    case MP_CMD_GAT:
    case MP_CMD_GATS: start_get(c, req); break;
    case MP_CMD_SET:
    case MP_CMD_ADD:
    case MP_CMD_REPLACE:
    case MP_CMD_APPEND:
    case MP_CMD_PREPEND:
    case MP_CMD_CAS:
    case MP_CMD_MS: start_update(c, req); break;
    case MP_CMD_MG:
    case MP_CMD_MD:
    case MP_CMD_MA:
    case MP_CMD_ME: run_meta(c, req); break;
    case MP_CMD_DELETE: run_delete(c, req); break;
    case MP_CMD_INCR:
    case MP_CMD_DECR: run_arith(c, req); break;
    case MP_CMD_TOUCH: run_touch(c, req); break;
    case MP_CMD_FLUSH_ALL: run_flush_all(c, req); break;
    case MP_CMD_VERSION: reply(c, false, "VERSION " MP_PROTO_VERSION); break;
    case MP_CMD_VERBOSITY:
        mp_log_set_level(req->level > 2 ? 2 : (int)req->level);
        reply(c, req->noreply, "OK");
        break;
    case MP_CMD_QUIT:
        c->close_after_write = true;
        c->state = ST_CLOSING;
        break;
    case MP_CMD_STATS: run_stats(c, req); break;
    case MP_CMD_MN: reply(c, false, "MN"); break;
    case MP_CMD_ERROR:
        reply(c, req->noreply, req->error);
        if (req->swallow)
            swallow(c, req->swallow); /* an ms refused after its length was read */
        break;
    }
}

/* ---- input ----------------------------------------------------------------------------------- */

static size_t avail(const struct mp_conn *c)
{
    return c->rlen - c->rpos;
}

static bool step_cmd(struct mp_conn *c)
{
    if (avail(c) == 0)
        return false;
    struct mp_request req;
    size_t used = 0;
    const char *line = c->rbuf + c->rpos;
    enum mp_parse_status st = mp_proto_parse(line, avail(c), &req, &used);
    if (st == MP_PARSE_NEED_MORE)
        return false;
    if (st == MP_PARSE_CLOSE) {
        c->close_after_write = true;
        c->state = ST_CLOSING;
        return false;
    }
    if (mp_log_enabled(MP_LOG_CMD)) {
        size_t n = used < 120 ? used : 120;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        mp_log(MP_LOG_CMD, "<%d %.*s", c->fd, (int)n, line);
    }
    c->rpos += used;
    execute(c, &req);
    return true;
}

static bool step_get_keys(struct mp_conn *c)
{
    struct mp_request req = {.cmd = c->get_cmd};
    size_t used = 0;
    if (mp_proto_parse_keys(c->rbuf + c->rpos, avail(c), &req, &used) == MP_PARSE_NEED_MORE)
        return false;
    c->rpos += used;
    c->get_pos = req.keys;
    c->get_end = req.keys + req.nkeys;
    c->get_more = req.partial;
    c->state = ST_GET;
    return true;
}

static bool step_value(struct mp_conn *c)
{
    size_t want = c->item->nbytes - c->vfill, n = avail(c) < want ? avail(c) : want;
    if (want == 0) {
        c->state = ST_VALUE_END; /* the rest arrived straight into the item */
        return true;
    }
    if (n == 0)
        return false;
    memcpy(mp_item_value(c->item) + c->vfill, c->rbuf + c->rpos, n);
    c->vfill += (uint32_t)n;
    c->rpos += n;
    if (c->vfill == c->item->nbytes)
        c->state = ST_VALUE_END;
    return true;
}

static bool step_value_end(struct mp_conn *c)
{
    while (c->crlf_fill < 2 && avail(c) > 0)
        c->crlf[c->crlf_fill++] = c->rbuf[c->rpos++];
    if (c->crlf_fill < 2)
        return false;
    finish_update(c);
    return true;
}

static bool step_swallow(struct mp_conn *c)
{
    size_t n = avail(c) < c->swallow ? avail(c) : c->swallow;
    c->rpos += n;
    c->swallow -= n;
    if (c->swallow == 0)
        c->state = ST_CMD;
    return n > 0 || c->swallow == 0;
}

static bool step_skip_line(struct mp_conn *c)
{
    if (avail(c) == 0)
        return false;
    const char *nl = memchr(c->rbuf + c->rpos, '\n', avail(c));
    if (!nl) {
        c->rpos = c->rlen;
        return false;
    }
    c->rpos = (size_t)(nl + 1 - c->rbuf);
    c->state = ST_CMD;
    return true;
}

/* One step of the state machine; false when it cannot go on without more input (or output room). */
static bool step(struct mp_conn *c)
{
    switch (c->state) {
    case ST_CMD: return step_cmd(c);
    case ST_VALUE: return step_value(c);
    case ST_VALUE_END: return step_value_end(c);
    case ST_SWALLOW: return step_swallow(c);
    case ST_GET: return step_get(c);
    case ST_GET_KEYS: return step_get_keys(c);
    case ST_SKIP_LINE: return step_skip_line(c);
    case ST_CLOSING: return false;
    }
    return false;
}

/*
 * A large value still to come, with nothing buffered, is read straight into the item, together
 * with what follows it, into the chunk's bytes past the value (up to a read buffer's worth): the
 * "\r\n" then comes in the same read, and a read that ends there falls short of the buffer, which
 * tells libuv the socket is drained. So a large set takes two reads, as in memcached, not three.
 * What went past the value is moved to the read buffer (take_direct).
 */
static size_t direct_tail(const struct mp_conn *c)
{
    const struct mp_item *it = c->item;
    size_t room =
        mp_slab_chunk_size(&c->env->cache->slabs, it) - mp_item_total(it->nkey, it->nbytes, mp_item_flags(it));
    return room < RBUF_SIZE ? room : RBUF_SIZE;
}

static void take_direct(struct mp_conn *c, size_t n)
{
    size_t want = c->item->nbytes - c->vfill;
    if (n <= want) {
        c->vfill += (uint32_t)n;
        return;
    }
    c->vfill = c->item->nbytes;
    memcpy(c->rbuf + c->rlen, mp_item_value(c->item) + c->item->nbytes, n - want); /* rbuf was empty */
    c->rlen += n - want;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct mp_conn *c = h->data;
    if (c->state == ST_VALUE && avail(c) == 0 && c->item->nbytes - c->vfill >= DIRECT_READ_MIN) {
        c->rpos = c->rlen = 0;
        *buf = uv_buf_init(mp_item_value(c->item) + c->vfill, (unsigned)(c->item->nbytes - c->vfill + direct_tail(c)));
        return;
    }
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, avail(c));
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(RBUF_SIZE - c->rlen));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mp_conn *c = s->data;
    if (nread < 0 || (nread == 0 && buf->len == 0)) {
        if (nread != UV_EOF)
            mp_log(MP_LOG_CONN, "conn %d: read: %s", c->fd, uv_strerror((int)nread));
        close_conn(c);
        return;
    }
    if (nread == 0)
        return;
    MP_STAT_ADD(c->st, bytes_read, (uint64_t)nread);
    mp_latency_begin(&c->lat);
    atomic_store_explicit(&c->last_active, now(c), memory_order_relaxed);
    if (buf->base >= c->rbuf && buf->base < c->rbuf + RBUF_SIZE)
        c->rlen += (size_t)nread;
    else
        take_direct(c, (size_t)nread);
    process(c);
}

static void set_reading(struct mp_conn *c, bool on)
{
    if (on == c->reading || uv_is_closing(&c->h.handle))
        return;
    if (on && uv_read_start(&c->h.stream, alloc_cb, read_cb) != 0) {
        close_conn(c);
        return;
    }
    if (!on)
        uv_read_stop(&c->h.stream);
    c->reading = on;
}

/*
 * Run every complete request in the read buffer, in order, gathering the replies; write them
 * once at the end, or earlier at the high-water mark. Stops reading while a write is queued
 * (backpressure) and resumes from on_write.
 */
static void process(struct mp_conn *c)
{
    while (!c->writing && c->state != ST_CLOSING) {
        if (c->pending >= OUT_HIGH_WATER && !flush(c))
            break;
        if (!step(c))
            break;
    }
    if (uv_is_closing(&c->h.handle))
        return;
    /* A get whose line is still arriving keeps its replies (up to the high-water mark): if a key
     * further on is refused, memcached answers that get with the error alone. */
    bool done = c->state == ST_GET_KEYS && c->pending < OUT_HIGH_WATER ? true : flush(c);
    mp_latency_end(&c->lat); /* the round's replies are with the kernel, or queued for it */
    if (c->state == ST_CLOSING) {
        set_reading(c, false);
        if (done)
            close_conn(c);
        return;
    }
    /* A read buffer that is full without a complete command cannot happen with the parser's
     * limits; if it ever did, the only safe answer is to hang up. */
    if (c->state == ST_CMD && c->rpos == 0 && c->rlen == RBUF_SIZE) {
        close_conn(c);
        return;
    }
    set_reading(c, !c->writing);
    atomic_store_explicit(&c->shown_state, (uint8_t)(c->writing ? ST_GET : c->state), memory_order_relaxed);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    struct mp_conn *c = h->data;
    release_held(c, 0);
    mp_cache_item_release(c->env->cache, &c->item);
    pthread_mutex_lock(&c->list->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->list->count--;
    pthread_mutex_unlock(&c->list->lock);
    atomic_fetch_sub_explicit(c->env->nconns, 1, memory_order_relaxed); /* its place under -c */
    MP_STAT_DEC(c->st, curr_connections);
    MP_STAT_DEC(c->st, connection_structures);
    mp_log(MP_LOG_CONN, "conn %d: closed", c->fd);
    free(c->rbuf);
    free(c->obuf);
    free(c->segs);
    free(c->bufs);
    free(c->held);
    free(c);
}

static void close_conn(struct mp_conn *c)
{
    c->state = ST_CLOSING;
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, on_close);
}

/* The peer's address as memcached's `stats conns` prints it. */
static void peer_name(struct mp_conn *c, int fd, bool is_unix)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (is_unix) {
        snprintf(c->addr, sizeof(c->addr), "unix:%s", c->env->cfg->unix_path ? c->env->cfg->unix_path : "");
        return;
    }
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        } else if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->addr, sizeof(c->addr), ss.ss_family == AF_INET6 ? "tcp6:[%s]:%d" : "tcp:%s:%d", host, port);
}

int mp_conn_create(uv_loop_t *loop, const struct mp_conn_env *env, struct mp_stats_thread *st,
                   struct mp_conn_list *list, int fd, bool is_unix)
{
    struct mp_conn *c = calloc(1, sizeof(*c));
    if (c) {
        c->rbuf = malloc(RBUF_SIZE);
        c->obuf = malloc(OBUF_SIZE);
        c->segs = malloc(SEGS_INIT * sizeof(*c->segs));
        c->bufs = malloc(SEGS_INIT * sizeof(*c->bufs));
    }
    int rc = UV_ENOMEM;
    if (c && c->rbuf && c->obuf && c->segs && c->bufs)
        rc = is_unix ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
    if (rc != 0) {
        if (c) {
            free(c->rbuf);
            free(c->obuf);
            free(c->segs);
            free(c->bufs);
            free(c);
        }
        close(fd);
        atomic_fetch_sub_explicit(env->nconns, 1, memory_order_relaxed);
        return rc;
    }
    c->h.handle.data = c;
    c->ocap = OBUF_SIZE;
    c->segcap = SEGS_INIT;
    c->env = env;
    c->st = st;
    /* st is the worker's block of env->stats: its index is the worker's in the other per-worker
     * arrays */
    unsigned worker = (unsigned)(st - env->stats->threads);
    mp_latency_batch_init(&c->lat, env->latency ? &env->latency->threads[worker] : NULL);
    c->hot = mp_hotkeys_worker(env->hotkeys, worker);
    c->fd = fd;
    c->list = list;
    atomic_store_explicit(&c->last_active, now(c), memory_order_relaxed);
    peer_name(c, fd, is_unix);
    pthread_mutex_lock(&list->lock);
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;
    list->count++;
    pthread_mutex_unlock(&list->lock);
    MP_STAT_INC(st, curr_connections);
    MP_STAT_INC(st, connection_structures);
    MP_STAT_INC(st, total_connections);
    /* From here on, on_close undoes all of the above. */
    rc = is_unix ? uv_pipe_open(&c->h.pipe, fd) : uv_tcp_open(&c->h.tcp, fd);
    if (rc != 0) {
        close(fd);
        close_conn(c);
        return rc;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    mp_log(MP_LOG_CONN, "conn %d: new %s connection", fd, is_unix ? "unix" : "tcp");
    set_reading(c, true);
    return 0;
}

void mp_conn_shutdown(struct mp_conn *c)
{
    if (uv_is_closing(&c->h.handle))
        return;
    set_reading(c, false);
    c->close_after_write = true;
    if (c->writing)
        return; /* on_write closes it */
    flush(c);
    if (!c->writing)
        close_conn(c);
}

void mp_conn_list_close_idle(struct mp_conn_list *list, uint32_t t, uint32_t timeout)
{
    for (struct mp_conn *c = list->head; c; c = c->next) {
        uint32_t idle = t - atomic_load_explicit(&c->last_active, memory_order_relaxed);
        /* more than `timeout` whole seconds, as memcached counts: at least `timeout` real ones */
        if (idle > timeout && !uv_is_closing(&c->h.handle)) {
            MP_STAT_INC(c->st, idle_kicks);
            mp_log(MP_LOG_CONN, "conn %d: idle for %u s, closing", c->fd, idle);
            close_conn(c);
        }
    }
}

void mp_conn_list_close_now(struct mp_conn_list *list)
{
    for (struct mp_conn *c = list->head; c; c = c->next)
        close_conn(c);
}

void mp_conn_list_init(struct mp_conn_list *list)
{
    memset(list, 0, sizeof(*list));
    pthread_mutex_init(&list->lock, NULL);
}

void mp_conn_list_deinit(struct mp_conn_list *list)
{
    pthread_mutex_destroy(&list->lock);
}

void mp_conn_list_shutdown(struct mp_conn_list *list)
{
    for (struct mp_conn *c = list->head; c; c = c->next)
        mp_conn_shutdown(c);
}

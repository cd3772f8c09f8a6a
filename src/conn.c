/* conn: see include/magpie/conn.h */
#include "magpie/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "magpie/binary.h"
#include "magpie/chain.h"
#include "magpie/latency.h"
#include "magpie/log.h"
#include "magpie/text.h"
#include "magpie/tls.h"

#define RBUF_SIZE (16 * 1024)
#define OUT_HIGH_WATER (256 * 1024) /* flush, and maybe pause, at this much pending output */
#define DIRECT_READ_MIN (16 * 1024) /* larger value remainders are read straight into the item */
#define BUFS_INIT 16
#define IO_POOL_KEEP 64     /* blocks a worker keeps for its next busy connections */
#define AUTH_VALUE_MAX 4096 /* -Y: a longer "user password" value is refused without being buffered */

enum state {
    ST_CMD,       /* expecting a request */
    ST_VALUE,     /* reading a storage command's value into x.update.item */
    ST_VALUE_END, /* reading the "\r\n" after it (text) */
    ST_SWALLOW,   /* discarding the value of a refused storage command */
    ST_GET,       /* answering the keys of a get in [get_pos, get_end) */
    ST_GET_KEYS,  /* waiting for more keys of a long get line */
    ST_SKIP_LINE, /* discarding the rest of a refused long line */
    ST_DUMP,      /* streaming a key listing (x.dump), a batch at a time */
    ST_WATCH,     /* a watcher: sending what is logged for it, reading nothing */
    ST_AUTH,      /* -Y: reading the value of an authentication "set" (auth_len bytes) */
    ST_CLOSING,
};

#define DUMP_BATCH 1024 /* chunks one batch of a listing looks at (under one class lock) */
#define WATCH_MS 10     /* how often a watcher takes what was logged for it */

/* The protocol a connection speaks: -B, or with -B auto (the default) its first byte's. */
enum speaks { SPEAKS_UNKNOWN, SPEAKS_TEXT, SPEAKS_BINARY };

/*
 * What a connection needs only while it has something to do: the read buffer, the request being
 * run, the replies and the write that carries them. A connection takes one from its worker's pool
 * (struct mp_conn_list) when a read brings data and gives it back once its input is consumed, its
 * replies written and nothing is half done (conn_io_idle), so an idle connection holds none of it,
 * only its struct mp_conn. The pool keeps up to IO_POOL_KEEP blocks per worker for the next
 * connection; what is past that is freed.
 */
struct mp_conn_io {
    struct mp_conn_io *next_free;
    const struct mp_conn_env *env; /* whose engine fields x has */

    /* input: unread bytes are rbuf[rpos, rlen) (the buffer is at the end) */
    size_t rpos, rlen;

    /* requests run here (exec.h); a value being read goes into x.update.item */
    struct mp_exec x;
    struct mp_latency_batch lat; /* the commands of this round, for the latency histograms */
    uint32_t vfill;
    char crlf[2];
    uint8_t crlf_fill;

    /* the text get being answered */
    const char *get_pos, *get_end;
    bool get_more;               /* the line goes on past get_end */
    struct mp_out_mark get_mark; /* output before this get, to undo it */
    bool get_flushed;            /* part of its output is gone: it cannot be undone */

    /* output: the replies (out.h), and the iovecs and request of a write in progress */
    struct mp_out out;
    uv_buf_t *bufs;
    size_t bufcap;
    uv_write_t wreq;

    /* TLS: how far the replies in `out` are encrypted (segment, offset), and the ciphertext bytes
     * a queued write holds */
    size_t tls_seg, tls_off;
    size_t tls_queued;
    uv_buf_t tls_buf; /* the ciphertext of a queued write */

    char rbuf[RBUF_SIZE];
};

/* An idle connection is this, its libuv handle and the fd's place in the loop's watcher table. */
struct mp_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    const struct mp_conn_env *env;
    struct mp_stats_thread *st;
    struct mp_conn_list *list;
    struct mp_conn *prev, *next;
    struct mp_conn_io *io;   /* NULL while idle */
    struct mp_tls_conn *tls; /* the TLS session (tls.h), NULL on a plain connection */
    uv_timer_t *aux;         /* resumes a listing, or feeds a watcher; allocated on first use */
    int fd;
    uint8_t state;  /* enum state */
    uint8_t speaks; /* enum speaks */
    bool reading;
    bool writing;
    bool close_after_write;
    bool authed;                  /* kept here while idle (x.authed while active) */
    _Atomic uint8_t shown_state;  /* the state `stats conns` reports, set once per process() */
    uint8_t handles;              /* handles not yet closed: the conn is freed when none is left */
    _Atomic uint32_t last_active; /* read by `stats conns` on other workers */
    uint32_t born;                /* clock seconds when accepted: a TLS handshake's deadline runs from it */
    size_t auth_len;              /* -Y: the bytes of the authentication value, "\r\n" included */
    char addr[64];                /* "tcp:host:port", fixed at creation; empty on the unix socket */
    char laddr[64];               /* the address it came in on, the same way */
};

static void process(struct mp_conn *c);
static void report_conns(struct mp_exec *x, mp_stats_emit_fn emit, void *ctx);

/* ---- the per-worker pool of busy-connection blocks ---------------------------------------- */

static void io_free(struct mp_conn_io *io)
{
    mp_out_deinit(&io->out);
    free(io->bufs);
    free(io);
}

/* The engine fields of a block's executor: the worker's, which every connection of a list shares
 * (a test may give connections of one list different environments: then they are set again). */
static void io_setup(struct mp_conn_io *io, const struct mp_conn *c)
{
    const struct mp_conn_env *env = c->env;
    /* st is the worker's block of env->stats: its index is the worker's in the other per-worker
     * arrays */
    unsigned worker = (unsigned)(c->st - env->stats->threads);
    io->env = env;
    io->x = (struct mp_exec){.cache = env->cache,
                             .clock = env->clock,
                             .cfg = env->cfg,
                             .stats = env->stats,
                             .st = c->st,
                             .hotkeys = env->hotkeys,
                             .hot = mp_hotkeys_worker(env->hotkeys, worker),
                             .out = &io->out,
                             .conns = report_conns,
                             .watch = env->watch,
                             .event_lib = env->event_lib,
                             .snapshot = env->snapshot,
                             .warm = env->warm,
                             .auth = env->auth,
                             .tls = env->tls};
    mp_latency_batch_init(&io->lat, env->latency ? &env->latency->threads[worker] : NULL);
}

/* A block from the pool, or a new one (NULL when out of memory), set up for connection c. */
static struct mp_conn_io *io_get(struct mp_conn *c)
{
    struct mp_conn_list *list = c->list;
    struct mp_conn_io *io = list->free_io;
    if (io) {
        list->free_io = io->next_free;
        list->nfree--;
        MP_STAT_DEC(c->st, io_blocks_free);
    } else {
        if (!(io = malloc(sizeof(*io))))
            return NULL;
        io->rpos = io->rlen = 0;
        io->bufs = malloc(BUFS_INIT * sizeof(*io->bufs));
        io->bufcap = BUFS_INIT;
        if (!io->bufs || mp_out_init(&io->out, c->env->cache) != 0) {
            free(io->bufs);
            free(io);
            return NULL;
        }
        io->env = NULL;
        io->tls_seg = io->tls_off = io->tls_queued = 0;
        MP_STAT_INC(c->st, io_blocks);
    }
    if (io->env != c->env)
        io_setup(io, c);
    io->x.owner = c;
    io->x.fd = c->fd;
    io->x.authed = c->authed;
    io->x.swallow = 0;
    return io;
}

/* Give a block back: its replies and a value being read are dropped (they are none unless the
 * connection is closing). */
static void io_put(struct mp_conn *c, struct mp_conn_io *io)
{
    struct mp_conn_list *list = c->list;
    mp_out_reset(&io->out);
    io->out.stopped = false;
    mp_cache_item_release(io->x.cache, &io->x.update.item);
    mp_watch_remove(io->x.watch, &io->x.watcher);
    io->rpos = io->rlen = 0;
    io->tls_seg = io->tls_off = io->tls_queued = 0;
    io->lat.mask = 0;
    if (list->nfree >= IO_POOL_KEEP) {
        io_free(io);
        MP_STAT_DEC(c->st, io_blocks);
        return;
    }
    io->next_free = list->free_io;
    list->free_io = io;
    list->nfree++;
    MP_STAT_INC(c->st, io_blocks_free);
}

/* The connection has something to do: its block, taken if it had none. False when out of memory
 * (the caller closes it). */
static bool io_attach(struct mp_conn *c)
{
    if (!c->io)
        c->io = io_get(c);
    return c->io != NULL;
}

/* Nothing is left to do: no unread byte, no reply unwritten, no request half done. */
static bool io_idle(const struct mp_conn *c)
{
    const struct mp_conn_io *io = c->io;
    return io && !c->writing && c->state == ST_CMD && io->rpos == io->rlen && io->out.nsegs == 0 && !io->out.stopped &&
           !io->x.update.item && io->tls_seg == 0 && io->tls_off == 0 && io->lat.mask == 0;
}

/* An idle connection gives its block back to the pool. */
static void io_detach(struct mp_conn *c)
{
    if (!io_idle(c))
        return;
    c->authed = c->io->x.authed;
    io_put(c, c->io);
    c->io = NULL;
    if (c->tls)
        mp_tls_conn_trim(c->tls);
}
static void close_conn(struct mp_conn *c);
static bool flush(struct mp_conn *c);
static void start_watch(struct mp_conn *c);

/* ---- output ---------------------------------------------------------------------------------- */

static bool flush_tls(struct mp_conn *c);
static void close_graceful(struct mp_conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct mp_conn *c = req->data;
    c->writing = false;
    if (c->tls) {
        mp_tls_out_done(c->tls, c->io->tls_queued);
        c->io->tls_queued = 0;
        /* the rest of the replies, encrypted a bounded amount at a time */
        if (status < 0 || !flush_tls(c)) {
            if (status < 0)
                close_conn(c);
            return;
        }
    } else {
        mp_out_reset(&c->io->out);
        if (status < 0) {
            close_conn(c);
            return;
        }
    }
    if (c->close_after_write) {
        close_graceful(c);
        return;
    }
    process(c);
}

/*
 * TLS: the replies are encrypted from where they lie (the reply buffer, or a pinned item's value:
 * no copy of a large value is made) into the session's output buffer, which is written to the
 * socket. A batch of pipelined replies is one run of the reply buffer, so it becomes one SSL_write
 * and one socket write. At most ssl_wbuf_size of ciphertext is made before it is written; if the
 * socket does not take it all, the rest is queued and the connection waits for on_write before it
 * encrypts more, so a client that does not read holds at most that much ciphertext and its
 * replies, as on a plain connection.
 */
static bool encrypt_some(struct mp_conn *c)
{
    struct mp_out *o = &c->io->out;
    size_t budget = c->env->cfg->tls.wbuf_size;
    const char *ignored;
    while (c->io->tls_seg < o->nsegs && mp_tls_out(c->tls, &ignored) < budget) {
        const struct mp_out_seg *s = &o->segs[c->io->tls_seg];
        const char *base = s->ext ? s->ext : o->buf + s->off;
        size_t n = s->len - c->io->tls_off < budget ? s->len - c->io->tls_off : budget;
        if (mp_tls_write(c->tls, base + c->io->tls_off, n) != 0)
            return false;
        c->io->tls_off += n;
        if (c->io->tls_off == s->len) {
            c->io->tls_seg++;
            c->io->tls_off = 0;
        }
    }
    if (o->nsegs && c->io->tls_seg == o->nsegs) { /* every reply is encrypted: its items can go */
        MP_STAT_ADD(c->st, bytes_written, o->pending);
        mp_out_reset(o);
        c->io->tls_seg = c->io->tls_off = 0;
    }
    return true;
}

static bool flush_tls(struct mp_conn *c)
{
    if (c->writing)
        return false;
    if (c->io->out.nsegs && (c->state == ST_GET || c->state == ST_GET_KEYS))
        c->io->get_flushed = true;
    for (;;) {
        if (!encrypt_some(c)) {
            mp_log(MP_LOG_CONN, "conn %d: TLS: %s", c->fd, mp_tls_why(c->tls));
            close_conn(c);
            return false;
        }
        const char *data;
        size_t n = mp_tls_out(c->tls, &data);
        if (n == 0)
            return true;
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
        int w = uv_try_write(&c->h.stream, &b, 1);
        if (w < 0 && w != UV_EAGAIN) {
            close_conn(c);
            return false;
        }
        size_t written = w > 0 ? (size_t)w : 0;
        mp_tls_out_done(c->tls, written);
        if (written == n)
            continue;
        /* The rest waits in the session's buffer, which nothing touches until on_write. */
        c->io->tls_buf = uv_buf_init((char *)data + written, (unsigned)(n - written));
        c->io->tls_queued = n - written;
        c->io->wreq.data = c;
        if (uv_write(&c->io->wreq, &c->h.stream, &c->io->tls_buf, 1, on_write) != 0) {
            close_conn(c);
            return false;
        }
        c->writing = true;
        MP_STAT_INC(c->st, conn_yields);
        return false;
    }
}

/* Write everything pending: at once if the socket takes it, else queue the rest and return
 * false; the connection then waits for on_write before it reads or parses again. */
static bool flush(struct mp_conn *c)
{
    struct mp_out *o = &c->io->out;
    if (c->tls)
        return flush_tls(c);
    if (c->writing)
        return false;
    if (o->nsegs == 0)
        return true;
    if (c->state == ST_GET || c->state == ST_GET_KEYS)
        c->io->get_flushed = true; /* part of this get's replies is gone: it can no longer be undone */
    if (c->io->bufcap < o->nsegs) {
        uv_buf_t *nb = realloc(c->io->bufs, o->segcap * sizeof(*nb));
        if (!nb) {
            close_conn(c);
            return false;
        }
        c->io->bufs = nb;
        c->io->bufcap = o->segcap;
    }
    for (size_t i = 0; i < o->nsegs; i++) {
        const struct mp_out_seg *s = &o->segs[i];
        c->io->bufs[i] = uv_buf_init((char *)(s->ext ? s->ext : o->buf + s->off), (unsigned)s->len);
    }
    size_t n = o->nsegs, first = 0;
    int w = uv_try_write(&c->h.stream, c->io->bufs, (unsigned)n);
    if (w < 0 && w != UV_EAGAIN) {
        close_conn(c);
        return false;
    }
    size_t written = w > 0 ? (size_t)w : 0;
    MP_STAT_ADD(c->st, bytes_written, o->pending);
    if (written == o->pending) {
        mp_out_reset(o);
        return true;
    }
    /* Skip what went out; queue the rest. Buffers and pinned items stay alive until on_write. */
    while (written >= c->io->bufs[first].len) {
        written -= c->io->bufs[first].len;
        first++;
    }
    c->io->bufs[first].base += written;
    c->io->bufs[first].len -= written;
    c->io->wreq.data = c;
    if (uv_write(&c->io->wreq, &c->h.stream, c->io->bufs + first, (unsigned)(n - first), on_write) != 0) {
        close_conn(c);
        return false;
    }
    c->writing = true;
    MP_STAT_INC(c->st, conn_yields);
    return false;
}

/* ---- listings and watchers ------------------------------------------------------------------- */

static bool aux_init(struct mp_conn *c)
{
    if (c->aux)
        return true;
    if (!(c->aux = malloc(sizeof(*c->aux))) || uv_timer_init(c->h.handle.loop, c->aux) != 0) {
        free(c->aux);
        c->aux = NULL;
        return false;
    }
    c->aux->data = c;
    c->handles++;
    return true;
}

static void dump_sink(void *ctx, const char *data, size_t n)
{
    struct mp_conn *c = ctx;
    mp_out_bytes(&c->io->out, data, n);
}

static void on_dump_resume(uv_timer_t *t)
{
    process(t->data);
}

/* One batch of the listing. Then the loop serves others before the next (a zero-delay timer),
 * and while replies are queued on_write resumes it instead (backpressure). */
static bool step_dump(struct mp_conn *c)
{
    if (mp_dump_step(&c->io->x.dump, c->env->cache, c->env->clock, DUMP_BATCH, dump_sink, c)) {
        c->state = ST_CMD;
        return true;
    }
    if (aux_init(c))
        uv_timer_start(c->aux, on_dump_resume, 0, 0);
    else
        close_conn(c);
    return false;
}

/* A watcher's lines: as many as fit under the high-water mark, written with the usual flush. */
static void on_watch_tick(uv_timer_t *t)
{
    struct mp_conn *c = t->data;
    if (c->writing || c->state != ST_WATCH || !c->io->x.watcher)
        return;
    char buf[16384];
    size_t n;
    while (c->io->out.pending < OUT_HIGH_WATER &&
           (n = mp_watch_take(c->env->watch, c->io->x.watcher, buf, sizeof(buf))) > 0)
        mp_out_bytes(&c->io->out, buf, n);
    if (c->io->out.stopped)
        close_conn(c);
    else
        flush(c);
}

static void start_watch(struct mp_conn *c)
{
    c->state = ST_WATCH;
    if (!aux_init(c) || uv_timer_start(c->aux, on_watch_tick, WATCH_MS, WATCH_MS) != 0)
        close_conn(c);
}

/* ---- requests -------------------------------------------------------------------------------- */

/* What a request left to do next. */
static void next(struct mp_conn *c, enum mp_next n)
{
    switch (n) {
    case MP_NEXT_CMD: c->state = ST_CMD; break;
    case MP_NEXT_VALUE:
        c->io->vfill = 0;
        c->io->crlf_fill = 0;
        c->state = ST_VALUE;
        break;
    case MP_NEXT_SWALLOW: c->state = c->io->x.swallow ? ST_SWALLOW : ST_CMD; break;
    case MP_NEXT_CLOSE:
        c->close_after_write = true;
        c->state = ST_CLOSING;
        break;
    case MP_NEXT_DUMP: c->state = ST_DUMP; break;
    case MP_NEXT_WATCH: start_watch(c); break;
    }
}

/* The value is in (and its "\r\n", for text, in c->io->crlf): store it and answer. */
static void finish_update(struct mp_conn *c)
{
    c->state = ST_CMD;
    if (c->speaks == SPEAKS_BINARY)
        mp_binary_value_done(&c->io->x);
    else
        mp_text_value_done(&c->io->x, c->io->crlf[0] == '\r' && c->io->crlf[1] == '\n');
}

static void start_get(struct mp_conn *c, const struct mp_request *req)
{
    mp_text_get_begin(&c->io->x, req);
    c->io->get_pos = req->keys;
    c->io->get_end = req->keys + req->nkeys;
    c->io->get_more = req->partial;
    mp_out_mark(&c->io->out, &c->io->get_mark);
    c->io->get_flushed = false;
    c->state = ST_GET;
}

/* A key over 250 bytes ends the get with an error, and, as in memcached, the values it had
 * produced are withdrawn, where they have not been written already. */
static void get_refuse(struct mp_conn *c)
{
    if (!c->io->get_flushed)
        mp_out_undo(&c->io->out, &c->io->get_mark);
    mp_text_get_refuse(&c->io->x);
    c->state = c->io->get_more ? ST_SKIP_LINE : ST_CMD;
}

/* Answer keys until the list ends or the output reaches its high-water mark. */
static bool step_get(struct mp_conn *c)
{
    const char *key;
    size_t nkey;
    while (mp_proto_next_key(&c->io->get_pos, c->io->get_end, &key, &nkey)) {
        if (nkey > MP_KEY_MAX) {
            get_refuse(c);
            return true;
        }
        mp_text_get_key(&c->io->x, key, nkey);
        if (c->io->out.pending >= OUT_HIGH_WATER && !flush(c))
            return false; /* resumes from get_pos in on_write */
    }
    if (c->io->get_more) {
        c->state = ST_GET_KEYS;
        return true;
    }
    mp_text_get_end(&c->io->x);
    c->state = ST_CMD;
    return true;
}

static void run_text(struct mp_conn *c, const struct mp_request *req)
{
    switch (req->cmd) {
    case MP_CMD_GET:
    case MP_CMD_GETS:
    case MP_CMD_GAT:
    case MP_CMD_GATS: start_get(c, req); break;
    default: next(c, mp_text_run(&c->io->x, req)); break;
    }
}

static const char *const state_names[] = {
    [ST_CMD] = "conn_parse_cmd",     [ST_VALUE] = "conn_nread", [ST_VALUE_END] = "conn_nread",
    [ST_SWALLOW] = "conn_swallow",   [ST_GET] = "conn_mwrite",  [ST_GET_KEYS] = "conn_parse_cmd",
    [ST_SKIP_LINE] = "conn_swallow", [ST_AUTH] = "conn_nread",  [ST_CLOSING] = "conn_closing",
    [ST_DUMP] = "conn_watch",        [ST_WATCH] = "conn_watch",
};

/* One line group of `stats conns`. */
struct conn_line {
    int fd;
    const char *state;
    uint32_t secs;
    char addr[128], laddr[128]; /* laddr empty for a listener */
};

static int by_fd(const void *a, const void *b)
{
    int x = ((const struct conn_line *)a)->fd, y = ((const struct conn_line *)b)->fd;
    return (x > y) - (x < y);
}

/* `stats conns`: the listeners and every connection of every worker, by socket, as memcached
 * lists them. */
static void report_conns(struct mp_exec *x, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_conn *c = x->owner;
    const struct mp_conn_env *env = c->env;
    uint32_t t = mp_exec_now(x);
    size_t n = 0, cap = env->nlisteners + 16;
    struct conn_line *lines = malloc(cap * sizeof(*lines));
    for (unsigned i = 0; lines && i < env->nlisteners; i++) {
        lines[n] = (struct conn_line){.fd = env->listeners[i].fd, .state = "conn_listening", .secs = t - 2};
        snprintf(lines[n].addr, sizeof(lines[n].addr), "%s", env->listeners[i].addr);
        n++;
    }
    for (unsigned i = 0; lines && i < env->nlists; i++) {
        struct mp_conn_list *list = env->lists[i];
        pthread_mutex_lock(&list->lock);
        for (struct mp_conn *p = list->head; p && lines; p = p->next) {
            if (n == cap) {
                struct conn_line *more = realloc(lines, 2 * cap * sizeof(*lines));
                if (!more) {
                    free(lines);
                    lines = NULL;
                    break;
                }
                lines = more;
                cap *= 2;
            }
            uint8_t st = atomic_load_explicit(&p->shown_state, memory_order_relaxed);
            lines[n] = (struct conn_line){.fd = p->fd,
                                          .state = p == c ? "conn_parse_cmd" : state_names[st],
                                          .secs = t - atomic_load_explicit(&p->last_active, memory_order_relaxed)};
            if (p->addr[0]) {
                memcpy(lines[n].addr, p->addr, sizeof(p->addr));
                memcpy(lines[n].laddr, p->laddr, sizeof(p->laddr));
            } else {
                const char *path = env->cfg->unix_path ? env->cfg->unix_path : "";
                snprintf(lines[n].addr, sizeof(lines[n].addr), "unix:%s", path);
                snprintf(lines[n].laddr, sizeof(lines[n].laddr), "unix:%s", path);
            }
            n++;
        }
        pthread_mutex_unlock(&list->lock);
    }
    if (!lines)
        return;
    qsort(lines, n, sizeof(*lines), by_fd);
    char name[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%d:addr", lines[i].fd);
        emit(ctx, name, "%s", lines[i].addr);
        if (lines[i].laddr[0]) {
            snprintf(name, sizeof(name), "%d:listen_addr", lines[i].fd);
            emit(ctx, name, "%s", lines[i].laddr);
        }
        snprintf(name, sizeof(name), "%d:state", lines[i].fd);
        emit(ctx, name, "%s", lines[i].state);
        snprintf(name, sizeof(name), "%d:secs_since_last_cmd", lines[i].fd);
        emit(ctx, name, "%u", lines[i].secs);
    }
    free(lines);
}

/* ---- input ----------------------------------------------------------------------------------- */

static size_t avail(const struct mp_conn *c)
{
    return c->io->rlen - c->io->rpos;
}

/* Hang up without a reply: a line memcached takes for garbage, or bytes that are no binary request. */
static bool hang_up(struct mp_conn *c)
{
    c->close_after_write = true;
    c->state = ST_CLOSING;
    return false;
}

static bool step_text(struct mp_conn *c)
{
    struct mp_request req;
    size_t used = 0;
    const char *line = c->io->rbuf + c->io->rpos;
    enum mp_parse_status st = mp_proto_parse(line, avail(c), &req, &used);
    if (st == MP_PARSE_NEED_MORE)
        return false;
    if (st == MP_PARSE_CLOSE)
        return hang_up(c);
    if (mp_log_enabled(MP_LOG_CMD)) {
        size_t n = used < 120 ? used : 120;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        mp_log(MP_LOG_CMD, "<%d %.*s", c->fd, (int)n, line);
    }
    c->io->rpos += used;
    mp_latency_note(&c->io->lat, req.cmd);
    run_text(c, &req);
    return true;
}

static bool step_binary(struct mp_conn *c)
{
    struct mp_brequest req;
    size_t used = 0;
    enum mp_parse_status st = mp_bproto_parse(c->io->rbuf + c->io->rpos, avail(c), &req, &used);
    if (st == MP_PARSE_NEED_MORE)
        return false;
    if (st == MP_PARSE_CLOSE)
        return hang_up(c);
    if (mp_log_enabled(MP_LOG_CMD))
        mp_log(MP_LOG_CMD, "<%d binary 0x%02x %.*s", c->fd, req.opcode, req.error ? 0 : (int)req.nkey,
               req.error ? "" : req.key);
    c->io->rpos += used;
    mp_latency_note(&c->io->lat, mp_bproto_text_cmd(req.cmd));
    next(c, mp_binary_run(&c->io->x, &req));
    return true;
}

/* -Y, before the connection has authenticated: memcached's try_read_command_asciiauth. A `set`
 * line opens an authentication, whose value is read whole; any other line is answered
 * "CLIENT_ERROR unauthenticated". */
static bool step_unauthenticated(struct mp_conn *c)
{
    struct mp_request req;
    size_t used = 0;
    enum mp_parse_status st = mp_proto_parse_auth(c->io->rbuf + c->io->rpos, avail(c), &req, &used);
    if (st == MP_PARSE_NEED_MORE)
        return false;
    if (st == MP_PARSE_CLOSE)
        return hang_up(c);
    c->io->rpos += used;
    if (req.cmd == MP_CMD_ERROR) {
        next(c, mp_text_run(&c->io->x, &req));
        return true;
    }
    c->auth_len = (size_t)req.auth_vlen + 2;
    if (c->auth_len > AUTH_VALUE_MAX) { /* no such password: refused, and its bytes skipped */
        mp_text_auth_refuse(&c->io->x);
        c->io->x.swallow = c->auth_len;
        c->state = ST_SWALLOW;
        return true;
    }
    c->state = ST_AUTH;
    return true;
}

static bool step_auth(struct mp_conn *c)
{
    if (avail(c) < c->auth_len)
        return false;
    mp_text_auth(&c->io->x, c->io->rbuf + c->io->rpos, c->auth_len);
    c->io->rpos += c->auth_len;
    c->state = ST_CMD;
    return true;
}

static bool step_cmd(struct mp_conn *c)
{
    if (avail(c) == 0)
        return false;
    if (!c->io->x.authed)
        return step_unauthenticated(c);
    if (c->speaks == SPEAKS_UNKNOWN) /* -B auto: the first byte says, as in memcached */
        c->speaks = (unsigned char)c->io->rbuf[c->io->rpos] == MP_BPROTO_REQ ? SPEAKS_BINARY : SPEAKS_TEXT;
    return c->speaks == SPEAKS_BINARY ? step_binary(c) : step_text(c);
}

static bool step_get_keys(struct mp_conn *c)
{
    struct mp_request req = {.cmd = c->io->x.get_cmd};
    size_t used = 0;
    if (mp_proto_parse_keys(c->io->rbuf + c->io->rpos, avail(c), &req, &used) == MP_PARSE_NEED_MORE)
        return false;
    c->io->rpos += used;
    c->io->get_pos = req.keys;
    c->io->get_end = req.keys + req.nkeys;
    c->io->get_more = req.partial;
    c->state = ST_GET;
    return true;
}

/* The whole value is in: the text protocol reads the "\r\n" after it, the binary one is done. */
static void value_read(struct mp_conn *c)
{
    if (c->io->x.update.crlf)
        c->state = ST_VALUE_END;
    else
        finish_update(c);
}

static bool step_value(struct mp_conn *c)
{
    struct mp_item *it = c->io->x.update.item;
    size_t want = it->nbytes - c->io->vfill, n = avail(c) < want ? avail(c) : want;
    if (want == 0) {
        value_read(c); /* the rest arrived straight into the item, or there was none */
        return true;
    }
    if (n == 0)
        return false;
    mp_chain_write(&c->env->cache->slabs, it, c->io->vfill, c->io->rbuf + c->io->rpos, n);
    c->io->vfill += (uint32_t)n;
    c->io->rpos += n;
    if (c->io->vfill == it->nbytes)
        value_read(c);
    return true;
}

static bool step_value_end(struct mp_conn *c)
{
    while (c->io->crlf_fill < 2 && avail(c) > 0)
        c->io->crlf[c->io->crlf_fill++] = c->io->rbuf[c->io->rpos++];
    if (c->io->crlf_fill < 2)
        return false;
    finish_update(c);
    return true;
}

static bool step_swallow(struct mp_conn *c)
{
    size_t n = avail(c) < c->io->x.swallow ? avail(c) : c->io->x.swallow;
    c->io->rpos += n;
    c->io->x.swallow -= n;
    if (c->io->x.swallow == 0)
        c->state = ST_CMD;
    return n > 0 || c->io->x.swallow == 0;
}

static bool step_skip_line(struct mp_conn *c)
{
    if (avail(c) == 0)
        return false;
    const char *nl = memchr(c->io->rbuf + c->io->rpos, '\n', avail(c));
    if (!nl) {
        c->io->rpos = c->io->rlen;
        return false;
    }
    c->io->rpos = (size_t)(nl + 1 - c->io->rbuf);
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
    case ST_DUMP: return step_dump(c);
    case ST_WATCH:
        c->io->rpos = c->io->rlen = 0; /* a watcher's input is ignored, as memcached ignores it */
        return false;
    case ST_AUTH: return step_auth(c);
    case ST_CLOSING: return false;
    }
    return false;
}

/*
 * A large value still to come, with nothing buffered, is read straight into the item, a chunk at a
 * time for a chained one (chain.h), and its last part together with what follows it, into the
 * chunk's bytes past the value (up to a read buffer's worth): the "\r\n" then comes in the same
 * read, and a read that ends there falls short of the buffer, which tells libuv the socket is
 * drained. So a large set takes two reads, as in memcached, not three (and a chained one a read
 * more for each chunk past the first). What went past the value is moved to the read buffer
 * (take_direct).
 */
static uv_buf_t direct_buf(const struct mp_conn *c)
{
    const struct mp_item *it = c->io->x.update.item;
    const struct mp_slabs *s = &c->env->cache->slabs;
    size_t len;
    char *p = mp_chain_span(s, it, c->io->vfill, &len);
    if (c->io->vfill + len == it->nbytes) {
        size_t room = mp_chain_spare(s, it);
        len += room < RBUF_SIZE ? room : RBUF_SIZE;
    }
    return uv_buf_init(p, (unsigned)len);
}

static void take_direct(struct mp_conn *c, const char *base, size_t n)
{
    struct mp_item *it = c->io->x.update.item;
    size_t want = it->nbytes - c->io->vfill;
    if (n <= want) {
        c->io->vfill += (uint32_t)n;
        return;
    }
    c->io->vfill = it->nbytes;
    memcpy(c->io->rbuf + c->io->rlen, base + want, n - want); /* rbuf was empty */
    c->io->rlen += n - want;
}

/* The room in the read buffer, moving what is unread to its start. */
static void compact(struct mp_conn *c)
{
    if (c->io->rpos > 0) {
        memmove(c->io->rbuf, c->io->rbuf + c->io->rpos, avail(c));
        c->io->rlen -= c->io->rpos;
        c->io->rpos = 0;
    }
}

/* A value so large that what is left of it goes straight into its item. */
static bool direct_read(const struct mp_conn *c)
{
    const struct mp_item *it = c->io->x.update.item;
    return c->state == ST_VALUE && avail(c) == 0 && it->nbytes - c->io->vfill >= DIRECT_READ_MIN;
}

/* The session failed: say nothing more but its alert, if it has one, and close. Or the client
 * ended it (close_notify): answer what it asked before, then close. */
static void tls_end(struct mp_conn *c, enum mp_tls_status st)
{
    if (st == MP_TLS_FAILED) {
        mp_log(MP_LOG_CONN, "conn %d: TLS: %s", c->fd, mp_tls_why(c->tls));
        mp_out_reset(&c->io->out);
        c->io->tls_seg = c->io->tls_off = 0;
    }
    c->close_after_write = true;
    c->state = ST_CLOSING;
}

/*
 * TLS: decrypt the ciphertext that came into the read buffer, or for a large value being read,
 * straight into its item, as a plain connection reads it from the socket. Called when the state
 * machine wants more input; true when some came. The handshake runs in here too, its replies left
 * in the session's output buffer for the next flush.
 */
static bool tls_fill(struct mp_conn *c)
{
    if (!mp_tls_has_input(c->tls))
        return false;
    if (!mp_tls_established(c->tls)) {
        enum mp_tls_status hs = mp_tls_handshake(c->tls);
        if (hs != MP_TLS_OK) {
            if (hs != MP_TLS_WANT_INPUT)
                tls_end(c, hs);
            return false;
        }
        mp_log(MP_LOG_CONN, "conn %d: %s %s", c->fd, mp_tls_version(c->tls), mp_tls_describe(c->tls));
        return true; /* the requests that came with the handshake's end are read next */
    }
    struct mp_item *it = c->io->x.update.item;
    bool direct = direct_read(c);
    char *dst;
    size_t cap, got;
    if (direct) {
        c->io->rpos = c->io->rlen = 0;
        dst = mp_chain_span(&c->env->cache->slabs, it, c->io->vfill, &cap); /* to the end of its chunk */
    } else {
        compact(c);
        dst = c->io->rbuf + c->io->rlen;
        cap = RBUF_SIZE - c->io->rlen;
        if (cap == 0)
            return false;
    }
    enum mp_tls_status st = mp_tls_read(c->tls, dst, cap, &got);
    if (st != MP_TLS_OK) {
        if (st != MP_TLS_WANT_INPUT)
            tls_end(c, st);
        return false;
    }
    MP_STAT_ADD(c->st, bytes_read, got);
    if (direct)
        c->io->vfill += (uint32_t)got;
    else
        c->io->rlen += got;
    return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct mp_conn *c = h->data;
    if (c->tls) {
        size_t room;
        char *p = mp_tls_in_room(c->tls, &room);
        *buf = uv_buf_init(p, (unsigned)room);
        return;
    }
    /* The socket is readable: the connection needs its buffers now (none: read_cb closes it). */
    if (!io_attach(c)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    if (direct_read(c)) {
        c->io->rpos = c->io->rlen = 0;
        *buf = direct_buf(c);
        return;
    }
    compact(c);
    *buf = uv_buf_init(c->io->rbuf + c->io->rlen, (unsigned)(RBUF_SIZE - c->io->rlen));
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
    if (nread == 0) { /* nothing came after all (EAGAIN) */
        io_detach(c);
        return;
    }
    if (!io_attach(c)) {
        close_conn(c);
        return;
    }
    mp_latency_begin(&c->io->lat);
    atomic_store_explicit(&c->last_active, mp_clock_now(c->env->clock), memory_order_relaxed);
    if (c->tls) {
        mp_tls_in_added(c->tls, (size_t)nread); /* bytes_read counts what it decrypts to */
        process(c);
        return;
    }
    MP_STAT_ADD(c->st, bytes_read, (uint64_t)nread);
    if (buf->base >= c->io->rbuf && buf->base < c->io->rbuf + RBUF_SIZE)
        c->io->rlen += (size_t)nread;
    else
        take_direct(c, buf->base, (size_t)nread);
    process(c);
}

/* A TLS session whose input buffer is full waits for the state machine to take some (once its
 * write drains) before the socket is read again. */
static void set_reading(struct mp_conn *c, bool on)
{
    if (on && c->tls && mp_tls_in_full(c->tls))
        on = false;
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
    if (!io_attach(c)) {
        close_conn(c);
        return;
    }
    while (!c->writing && c->state != ST_CLOSING && !c->io->out.stopped) {
        if (c->io->out.pending >= OUT_HIGH_WATER && !flush(c))
            break;
        /* no decrypting while a write is queued: it holds the session's output buffer */
        if (!step(c) && (c->writing || !c->tls || !tls_fill(c)))
            break;
    }
    if (c->io->out.stopped && !uv_is_closing(&c->h.handle))
        close_conn(c); /* a reply could not be kept: the client would fall out of step */
    if (uv_is_closing(&c->h.handle))
        return;
    /* A get whose line is still arriving keeps its replies (up to the high-water mark): if a key
     * further on is refused, memcached answers that get with the error alone. */
    bool done = c->state == ST_GET_KEYS && c->io->out.pending < OUT_HIGH_WATER ? true : flush(c);
    mp_latency_end(&c->io->lat); /* the round's replies are with the kernel, or queued for it */
    if (c->state == ST_CLOSING) {
        set_reading(c, false);
        if (done)
            close_graceful(c);
        return;
    }
    /* A read buffer that is full without a complete command cannot happen with the parser's
     * limits; if it ever did, the only safe answer is to hang up. */
    if (c->state == ST_CMD && c->io->rpos == 0 && c->io->rlen == RBUF_SIZE) {
        close_conn(c);
        return;
    }
    set_reading(c, !c->writing && c->state != ST_DUMP);
    atomic_store_explicit(&c->shown_state, (uint8_t)(c->writing ? ST_GET : c->state), memory_order_relaxed);
    io_detach(c); /* drained: the buffers go back to the pool until the next read */
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    struct mp_conn *c = h->data;
    mp_tls_conn_destroy(&c->tls);
    if (c->io) { /* its replies and a value half read are dropped with it */
        io_put(c, c->io);
        c->io = NULL;
    }
    pthread_mutex_lock(&c->list->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->list->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub_explicit(&c->list->count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&c->list->lock);
    atomic_fetch_sub_explicit(c->env->nconns, 1, memory_order_relaxed); /* its place under -c */
    MP_STAT_DEC(c->st, curr_connections);
    MP_STAT_DEC(c->st, connection_structures);
    mp_log(MP_LOG_CONN, "conn %d: closed", c->fd);
    if (--c->handles == 0)
        free(c);
}

static void on_aux_close(uv_handle_t *h)
{
    struct mp_conn *c = h->data;
    free(h);
    c->aux = NULL;
    if (--c->handles == 0)
        free(c);
}

static void close_conn(struct mp_conn *c)
{
    c->state = ST_CLOSING;
    if (c->io)
        c->io->out.stopped = true; /* nothing more is said */
    if (c->aux && !uv_is_closing((uv_handle_t *)c->aux))
        uv_close((uv_handle_t *)c->aux, on_aux_close);
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, on_close);
}

/* Everything said has been written: close, ending a TLS session with its close_notify (sent if
 * the socket takes it at once; the client loses nothing it asked for if not). */
static void close_graceful(struct mp_conn *c)
{
    const char *data;
    size_t n;
    if (c->tls && !uv_is_closing(&c->h.handle) && !c->writing) {
        mp_tls_close_notify(c->tls);
        if ((n = mp_tls_out(c->tls, &data)) > 0) {
            uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
            uv_try_write(&c->h.stream, &b, 1);
        }
    }
    close_conn(c);
}

/* An address as memcached's `stats conns` prints it. */
static void addr_text(const struct sockaddr_storage *ss, bool ok, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ok && ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    } else if (ok && ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, ok && ss->ss_family == AF_INET6 ? "tcp6:[%s]:%d" : "tcp:%s:%d", host, port);
}

/* The peer's address and the one it came in on: as the acceptor had them, else asked of the
 * socket. */
static void peer_name(struct mp_conn *c, const struct mp_conn_accepted *a)
{
    if (a->is_unix)
        return; /* `stats conns` names the unix socket from the config */
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (a->peerlen)
        addr_text(&a->peer, true, c->addr, sizeof(c->addr));
    else
        addr_text(&ss, getpeername(a->fd, (struct sockaddr *)&ss, &len) == 0, c->addr, sizeof(c->addr));
    len = sizeof(ss);
    if (a->local)
        addr_text(a->local, true, c->laddr, sizeof(c->laddr));
    else
        addr_text(&ss, getsockname(a->fd, (struct sockaddr *)&ss, &len) == 0, c->laddr, sizeof(c->laddr));
}

/*
 * A client that connects to ask one thing (a serverless function, PHP without persistent
 * connections, a health check) has usually sent its request by the time the worker takes the
 * socket: read it now, instead of after the loop's next poll has found the socket readable.
 * TCP only: on the unix socket, 4,096 clients connecting at once, each with a get of 16 large
 * values (test_trust), overflowed the listen backlog under ASan in 2 runs of 6 with this, and
 * never without it (the cause is not understood yet).
 */
static void read_now(struct mp_conn *c)
{
    if (!c->reading || !io_attach(c))
        return;
    ssize_t n = recv(c->fd, c->io->rbuf, RBUF_SIZE, 0);
    if (n > 0) {
        uv_buf_t b = uv_buf_init(c->io->rbuf, RBUF_SIZE);
        read_cb(&c->h.stream, n, &b);
    } else {
        io_detach(c); /* nothing yet (or an error or the end, which the loop's read finds) */
    }
}

int mp_conn_create(uv_loop_t *loop, const struct mp_conn_env *env, struct mp_stats_thread *st,
                   struct mp_conn_list *list, const struct mp_conn_accepted *a)
{
    int fd = a->fd;
    bool is_unix = a->is_unix, tls = a->tls;
    struct mp_conn *c = calloc(1, sizeof(*c));
    int rc = c ? (is_unix ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp)) : UV_ENOMEM;
    if (rc != 0) {
        free(c);
        close(fd);
        atomic_fetch_sub_explicit(env->nconns, 1, memory_order_relaxed);
        return rc;
    }
    c->env = env;
    c->h.handle.data = c;
    c->handles = 1;
    c->st = st;
    c->fd = fd;
    c->list = list;
    c->authed = env->auth == NULL;
    c->speaks = env->cfg->protocol == MP_PROTOCOL_BINARY  ? SPEAKS_BINARY
                : env->cfg->protocol == MP_PROTOCOL_ASCII ? SPEAKS_TEXT
                                                          : SPEAKS_UNKNOWN;
    c->born = mp_clock_now(env->clock);
    atomic_store_explicit(&c->last_active, c->born, memory_order_relaxed);
    peer_name(c, a);
    pthread_mutex_lock(&list->lock);
    c->next = list->head;
    if (list->head)
        list->head->prev = c;
    list->head = c;
    atomic_fetch_add_explicit(&list->count, 1, memory_order_relaxed);
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
    if (tls && !(c->tls = mp_tls_conn_create(env->tls, st))) {
        close_conn(c);
        return UV_ENOMEM;
    }
    mp_log(MP_LOG_CONN, "conn %d: new %s connection", fd, tls ? "tls" : is_unix ? "unix" : "tcp");
    set_reading(c, true);
    if (!tls && !is_unix)
        read_now(c);
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
    if (!c->io || (flush(c) && !c->writing))
        close_graceful(c);
}

void mp_conn_list_expire(struct mp_conn_list *list, uint32_t t)
{
    for (struct mp_conn *c = list->head; c; c = c->next) {
        const struct mp_config *cfg = c->env->cfg;
        if (uv_is_closing(&c->h.handle))
            continue;
        /* Seconds are counted as for the idle timeout: more than N whole ones, at least N real. */
        if (c->tls && !mp_tls_established(c->tls) && t - c->born > (uint32_t)cfg->tls.handshake_timeout) {
            MP_STAT_INC(c->st, ssl_handshake_errors);
            mp_log(MP_LOG_CONN, "conn %d: no TLS handshake within %d s, closing", c->fd, cfg->tls.handshake_timeout);
            close_conn(c);
            continue;
        }
        uint32_t idle = t - atomic_load_explicit(&c->last_active, memory_order_relaxed);
        if (cfg->idle_timeout > 0 && idle > (uint32_t)cfg->idle_timeout) {
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
    while (list->free_io) {
        struct mp_conn_io *io = list->free_io;
        list->free_io = io->next_free;
        io_free(io);
    }
    list->nfree = 0;
    pthread_mutex_destroy(&list->lock);
}

void mp_conn_list_shutdown(struct mp_conn_list *list)
{
    for (struct mp_conn *c = list->head; c; c = c->next)
        mp_conn_shutdown(c);
}

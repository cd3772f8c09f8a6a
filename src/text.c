/* text: see include/magpie/text.h */
#include "magpie/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "magpie/admin.h"
#include "magpie/auth.h"
#include "magpie/log.h"
#include "magpie/num.h"
#include "magpie/tls.h"

/* A one-line reply, unless the request said noreply. */
static void reply(struct mp_exec *x, bool noreply, const char *line)
{
    if (noreply)
        return;
    mp_out_str(x->out, line);
    mp_out_bytes(x->out, "\r\n", 2);
}

/* A hit's value and "\r\n". */
static void out_value(void *ctx, const struct mp_hit *h)
{
    struct mp_exec *x = ctx;
    mp_out_value(x->out, h);
    mp_out_bytes(x->out, "\r\n", 2);
}

/* ---- get ------------------------------------------------------------------------------------- */

/* A get's hit: "VALUE ..." and the value. */
static void emit_value(void *ctx, const struct mp_hit *h)
{
    struct mp_exec *x = ctx;
    char hdr[MP_PROTO_VALUE_HDR_MAX];
    bool with_cas = x->get_cmd == MP_CMD_GETS || x->get_cmd == MP_CMD_GATS;
    mp_out_bytes(x->out, hdr, mp_proto_value_header(hdr, h->key, h->nkey, h->flags, h->nbytes, with_cas, h->cas));
    out_value(x, h);
}

/* The engine read a hit while it changed: take back what emit_value wrote. */
static void unemit_value(void *ctx)
{
    struct mp_exec *x = ctx;
    mp_out_undo(x->out, &x->hit_mark);
}

void mp_text_get_begin(struct mp_exec *x, const struct mp_request *req)
{
    x->get_cmd = req->cmd;
    if (req->cmd == MP_CMD_GAT || req->cmd == MP_CMD_GATS)
        x->get_exptime = mp_exec_ttl(x, req->exptime); /* once per line, as memcached */
}

void mp_text_get_key(struct mp_exec *x, const char *key, size_t nkey)
{
    if (x->get_cmd == MP_CMD_GAT || x->get_cmd == MP_CMD_GATS) {
        mp_exec_touch(x, key, nkey, x->get_exptime, emit_value, x);
        return;
    }
    const struct mp_cache_reader rd = {emit_value, unemit_value, x, MP_OUT_COPY_MAX};
    mp_out_mark(x->out, &x->hit_mark);
    mp_exec_get(x, key, nkey, &rd);
}

void mp_text_get_end(struct mp_exec *x)
{
    mp_out_bytes(x->out, "END\r\n", 5);
}

/* A key over 250 bytes ends the get with an error (the caller took back its values). */
void mp_text_get_refuse(struct mp_exec *x)
{
    reply(x, false, "CLIENT_ERROR bad command line format");
}

/* ---- storage --------------------------------------------------------------------------------- */

static const enum mp_store_op store_ops[] = {
    [MP_CMD_SET] = MP_SET,       [MP_CMD_ADD] = MP_ADD,         [MP_CMD_REPLACE] = MP_REPLACE,
    [MP_CMD_APPEND] = MP_APPEND, [MP_CMD_PREPEND] = MP_PREPEND, [MP_CMD_CAS] = MP_CAS,
};

static enum mp_next swallow(struct mp_exec *x, size_t n)
{
    x->swallow = n;
    return MP_NEXT_SWALLOW;
}

static const struct mp_meta_out *meta_out(struct mp_exec *x);

/* set/add/replace/append/prepend/cas and ms: allocate the item the value is read into. */
static enum mp_next start_update(struct mp_exec *x, const struct mp_request *req)
{
    bool meta = req->cmd == MP_CMD_MS;
    int32_t exptime = meta ? (req->meta.new_ttl ? req->meta.exptime : 0) : req->exptime;
    uint32_t flags = meta ? req->meta.client_flags : req->flags;
    struct mp_exec_update *u = &x->update;
    enum mp_result res;
    if (!meta)
        mp_exec_count_set(x, req->key, req->nkey);
    /* A failed set drops the old value (memcached does this for set, and for every ms). */
    u->item = mp_exec_alloc(x, req->key, req->nkey, flags, exptime, (uint32_t)req->vlen, req->cmd == MP_CMD_SET || meta,
                            &res);
    u->noreply = meta ? req->meta.no_reply : req->noreply;
    u->meta = meta;
    u->crlf = true;
    if (!u->item) {
        reply(x, req->noreply, mp_proto_result_str(res)); /* meta commands always report errors */
        return swallow(x, (size_t)req->vlen + 2);         /* read past the value to stay in step */
    }
    if (meta) {
        mp_meta_set_prepare(req, &u->mset);
        u->store = u->mset.store;
        mp_item_set(u->item, MP_ITEM_KEY_BINARY, req->meta.key_binary);
    } else {
        u->store = (struct mp_store){.op = store_ops[req->cmd], .cas = req->cas};
    }
    return MP_NEXT_VALUE;
}

void mp_text_value_done(struct mp_exec *x, bool crlf_ok)
{
    struct mp_exec_update *u = &x->update;
    if (!crlf_ok) {
        mp_exec_drop(x);
        reply(x, u->noreply && !u->meta, mp_proto_result_str(MP_BAD_CHUNK));
        return;
    }
    enum mp_result res = mp_exec_store(x);
    if (u->meta) {
        u->mset.store.cas_out = u->store.cas_out;
        mp_meta_set_reply(&u->mset, res, meta_out(x));
    } else {
        reply(x, u->noreply, mp_proto_result_str(res));
    }
}

/* ---- authentication (-Y) --------------------------------------------------------------------- */

void mp_text_auth_refuse(struct mp_exec *x)
{
    MP_STAT_INC(x->st, auth_cmds);
    MP_STAT_INC(x->st, auth_errors);
    reply(x, false, "CLIENT_ERROR authentication failure");
}

void mp_text_auth(struct mp_exec *x, const char *value, size_t n)
{
    const char *user, *pass;
    size_t ulen, plen;
    if (value[n - 2] != '\r' || value[n - 1] != '\n') {
        reply(x, false, "CLIENT_ERROR bad command line termination");
        return;
    }
    if (!mp_proto_auth_token(value, n - 2, &user, &ulen, &pass, &plen)) {
        reply(x, false, "CLIENT_ERROR bad authentication token format");
        return;
    }
    if (!mp_auth_check(x->auth, user, ulen, pass, plen)) {
        mp_text_auth_refuse(x);
        return;
    }
    MP_STAT_INC(x->st, auth_cmds);
    x->authed = true;
    reply(x, false, "STORED");
}

/* ---- the other commands ---------------------------------------------------------------------- */

/* memcached answers "OK", or the reason the files could not be loaded (always, noreply or not). */
static void run_refresh_certs(struct mp_exec *x, const struct mp_request *req)
{
    char err[512];
    if (mp_tls_refresh(x->tls, mp_exec_now(x), err, sizeof(err)) == 0) {
        reply(x, req->noreply, "OK");
        mp_log(MP_LOG_INFO, "refresh_certs: certificates reloaded");
        return;
    }
    mp_log(MP_LOG_CONN, "refresh_certs: %s", err);
    reply(x, false, err);
}

static void run_arith(struct mp_exec *x, const struct mp_request *req)
{
    struct mp_arith a = {.incr = req->cmd == MP_CMD_INCR, .delta = req->delta};
    uint64_t v, cas;
    enum mp_result res = mp_exec_arith(x, req->key, req->nkey, &a, &v, &cas);
    if (res == MP_OK) {
        char digits[24];
        digits[mp_num_format(digits, v)] = '\0';
        reply(x, req->noreply, digits);
    } else {
        reply(x, req->noreply, res == MP_NOMEM ? "SERVER_ERROR out of memory" : mp_proto_result_str(res));
    }
}

static void emit_stat(void *ctx, const char *name, const char *fmt, ...)
{
    struct mp_exec *x = ctx;
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
    mp_out_bytes(x->out, line, len);
}

static bool arg_is(const char *args, size_t nargs, const char *word)
{
    size_t n = strlen(word);
    return nargs >= n && memcmp(args, word, n) == 0 && (nargs == n || args[n] == ' ');
}

static enum mp_next run_stats(struct mp_exec *x, const struct mp_request *req)
{
    const char *args = req->keys;
    size_t nargs = req->nkeys;
    enum mp_next next = MP_NEXT_CMD;
    if (arg_is(args, nargs, "reset")) {
        mp_exec_stats_reset(x);
        reply(x, false, "RESET");
        return next;
    }
    if (mp_admin_stats(x, args, nargs, &next))
        return next;
    if (arg_is(args, nargs, "conns")) {
        x->conns(x, emit_stat, x);
    } else if (mp_exec_stats(x, args, nargs, emit_stat, x) != 0) {
        reply(x, false, "ERROR");
        return next;
    }
    mp_out_bytes(x->out, "END\r\n", 5);
    return next;
}

static void meta_bytes(void *ctx, const char *data, size_t n)
{
    struct mp_exec *x = ctx;
    mp_out_bytes(x->out, data, n);
}

static const struct mp_meta_out *meta_out(struct mp_exec *x)
{
    x->meta_sink = (struct mp_meta_out){x, meta_bytes, out_value};
    return &x->meta_sink;
}

static void run_meta(struct mp_exec *x, const struct mp_request *req)
{
    struct mp_meta_env e = {x->cache, x->clock, x->st};
    const struct mp_meta_out *o = meta_out(x);
    switch (req->cmd) {
    case MP_CMD_MG:
        mp_hotkeys_note(x->hot, req->key, req->nkey, req->meta.key_binary, mp_exec_now(x));
        mp_meta_get(&e, req, o);
        break;
    case MP_CMD_MD: mp_meta_delete(&e, req, o); break;
    case MP_CMD_MA: mp_meta_arith(&e, req, o); break;
    default: mp_meta_debug(&e, req, o); break;
    }
}

enum mp_next mp_text_run(struct mp_exec *x, const struct mp_request *req)
{
    switch (req->cmd) {
    case MP_CMD_SET:
    case MP_CMD_ADD:
    case MP_CMD_REPLACE:
    case MP_CMD_APPEND:
    case MP_CMD_PREPEND:
    case MP_CMD_CAS:
    case MP_CMD_MS: return start_update(x, req);
    case MP_CMD_MG:
    case MP_CMD_MD:
    case MP_CMD_MA:
    case MP_CMD_ME: run_meta(x, req); break;
    case MP_CMD_DELETE: reply(x, req->noreply, mp_proto_result_str(mp_exec_delete(x, req->key, req->nkey, 0))); break;
    case MP_CMD_INCR:
    case MP_CMD_DECR: run_arith(x, req); break;
    case MP_CMD_TOUCH:
        reply(x, req->noreply,
              mp_proto_result_str(mp_exec_touch(x, req->key, req->nkey, mp_exec_ttl(x, req->exptime), NULL, NULL)));
        break;
    case MP_CMD_FLUSH_ALL:
        mp_exec_flush(x, req->exptime);
        reply(x, req->noreply, "OK");
        break;
    case MP_CMD_VERSION: reply(x, false, "VERSION " MP_PROTO_VERSION); break;
    case MP_CMD_VERBOSITY:
        mp_log_set_level(req->level > 2 ? 2 : (int)req->level);
        reply(x, req->noreply, "OK");
        break;
    case MP_CMD_QUIT: return MP_NEXT_CLOSE;
    case MP_CMD_STATS: return run_stats(x, req);
    case MP_CMD_LRU_CRAWLER:
    case MP_CMD_SLABS:
    case MP_CMD_MEMLIMIT:
    case MP_CMD_WATCH:
    case MP_CMD_SHUTDOWN: return mp_admin_run(x, req);
    case MP_CMD_MN: reply(x, false, "MN"); break;
    case MP_CMD_REFRESH_CERTS: run_refresh_certs(x, req); break;
    case MP_CMD_ERROR:
        reply(x, req->noreply, req->error);
        if (req->swallow)
            return swallow(x, req->swallow); /* an ms refused after its length was read */
        break;
    case MP_CMD_GET:
    case MP_CMD_GETS:
    case MP_CMD_GAT:
    case MP_CMD_GATS: break; /* the connection walks a get's keys (mp_text_get_key) */
    }
    return MP_NEXT_CMD;
}

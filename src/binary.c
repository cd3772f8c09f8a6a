/* binary: see include/magpie/binary.h */
#include "magpie/binary.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A reply header with no body beyond `bodylen` bytes the caller appends. */
static void header(struct mp_exec *x, const struct mp_brequest *req, uint16_t status, uint8_t extlen, uint16_t nkey,
                   uint32_t bodylen, uint64_t cas)
{
    char h[MP_BPROTO_HDR];
    mp_bproto_header(h, req->opcode, status, extlen, nkey, bodylen, req->opaque, cas);
    mp_out_bytes(x->out, h, sizeof(h));
}

/* An error reply, sent quiet or not, with memcached's text (or `text`) as its body. */
static void error_text(struct mp_exec *x, const struct mp_brequest *req, uint16_t status, const char *text)
{
    size_t n = strlen(text);
    header(x, req, status, 0, 0, (uint32_t)n, 0);
    mp_out_bytes(x->out, text, n);
}

static void error(struct mp_exec *x, const struct mp_brequest *req, uint16_t status)
{
    error_text(x, req, status, mp_bproto_status_str(status));
}

/* Success with an empty body, unless the request was quiet. */
static void success(struct mp_exec *x, const struct mp_brequest *req, uint64_t cas)
{
    if (!req->quiet)
        header(x, req, MP_BST_SUCCESS, 0, 0, 0, cas);
}

/* ---- get, getk, touch, gat, gatk, and their quiet forms -------------------------------------- */

struct get_ctx {
    struct mp_exec *x;
    const struct mp_brequest *req;
};

/* A hit: flags as extras, the key for getk/gatk, the value but for touch. */
static void emit_hit(void *ctx, const struct mp_hit *h)
{
    struct get_ctx *g = ctx;
    const struct mp_brequest *req = g->req;
    bool with_key = req->cmd == MP_BOP_GETK || req->cmd == MP_BOP_GATK;
    bool with_value = req->cmd != MP_BOP_TOUCH;
    uint16_t nkey = with_key ? req->nkey : 0;
    char flags[4];
    mp_bproto_put32(flags, h->flags);
    header(g->x, req, MP_BST_SUCCESS, 4, nkey, 4 + nkey + (with_value ? h->nbytes : 0), h->cas);
    mp_out_bytes(g->x->out, flags, 4);
    mp_out_bytes(g->x->out, req->key, nkey);
    if (with_value)
        mp_out_value(g->x->out, h);
}

static void unemit_hit(void *ctx)
{
    struct get_ctx *g = ctx;
    mp_out_undo(g->x->out, &g->x->hit_mark);
}

static void run_get(struct mp_exec *x, const struct mp_brequest *req)
{
    struct get_ctx g = {x, req};
    enum mp_result r;
    if (req->cmd == MP_BOP_GET || req->cmd == MP_BOP_GETK) {
        const struct mp_cache_reader rd = {emit_hit, unemit_hit, &g, MP_OUT_COPY_MAX};
        mp_out_mark(x->out, &x->hit_mark);
        r = mp_exec_get(x, req->key, req->nkey, &rd);
    } else {
        r = mp_exec_touch(x, req->key, req->nkey, mp_exec_ttl(x, req->exptime), emit_hit, &g);
    }
    if (r != MP_NOT_FOUND || req->quiet)
        return;
    if (req->cmd == MP_BOP_GETK || req->cmd == MP_BOP_GATK) {
        header(x, req, MP_BST_KEY_ENOENT, 0, req->nkey, req->nkey, 0); /* the key, no text */
        mp_out_bytes(x->out, req->key, req->nkey);
    } else {
        error(x, req, MP_BST_KEY_ENOENT);
    }
}

/* ---- set, add, replace, append, prepend ------------------------------------------------------ */

static enum mp_next start_update(struct mp_exec *x, const struct mp_brequest *req)
{
    bool append = req->cmd == MP_BOP_APPEND || req->cmd == MP_BOP_PREPEND;
    struct mp_exec_update *u = &x->update;
    enum mp_result res;
    mp_exec_count_set(x, req->key, req->nkey);
    /* append and prepend take the old item's flags and exptime; a failed set drops the old value */
    u->item = mp_exec_alloc(x, req->key, req->nkey, append ? 0 : req->flags, append ? 0 : req->exptime, req->vlen,
                            req->cmd == MP_BOP_SET, &res);
    x->swallow = req->vlen;
    if (!u->item) {
        if (res == MP_TOO_LARGE)
            error(x, req, MP_BST_E2BIG);
        else
            error_text(x, req, MP_BST_ENOMEM, "Out of memory allocating item");
        return MP_NEXT_SWALLOW;
    }
    enum mp_store_op op = req->cmd == MP_BOP_SET       ? MP_SET
                          : req->cmd == MP_BOP_ADD     ? MP_ADD
                          : req->cmd == MP_BOP_REPLACE ? MP_REPLACE
                          : req->cmd == MP_BOP_APPEND  ? MP_APPEND
                                                       : MP_PREPEND;
    /* A CAS turns set, add and replace into a compare-and-swap; append and prepend check it. */
    if (req->cas != 0 && !append)
        op = MP_CAS;
    u->store = (struct mp_store){.op = op, .cas = req->cas};
    u->noreply = req->quiet;
    u->crlf = false;
    u->meta = false;
    u->opcode = req->opcode;
    u->bincmd = req->cmd;
    u->opaque = req->opaque;
    return MP_NEXT_VALUE;
}

void mp_binary_value_done(struct mp_exec *x)
{
    struct mp_exec_update *u = &x->update;
    const struct mp_brequest req = {.opcode = u->opcode, .cmd = u->bincmd, .quiet = u->noreply, .opaque = u->opaque};
    enum mp_store_op op = u->store.op;
    enum mp_result res = mp_exec_store(x);
    switch (res) {
    case MP_STORED: success(x, &req, u->store.cas_out); break;
    case MP_EXISTS: error(x, &req, MP_BST_KEY_EEXISTS); break;
    case MP_NOT_FOUND: error(x, &req, MP_BST_KEY_ENOENT); break;
    default:
        /* memcached answers a refused add "exists" and a refused replace "not found" */
        error(x, &req, op == MP_ADD ? MP_BST_KEY_EEXISTS : op == MP_REPLACE ? MP_BST_KEY_ENOENT : MP_BST_NOT_STORED);
        break;
    }
}

/* ---- the other commands ---------------------------------------------------------------------- */

static void run_delete(struct mp_exec *x, const struct mp_brequest *req)
{
    enum mp_result res = mp_exec_delete(x, req->key, req->nkey, req->cas);
    if (res == MP_DELETED)
        success(x, req, 0);
    else
        error(x, req, res == MP_EXISTS ? MP_BST_KEY_EEXISTS : MP_BST_KEY_ENOENT);
}

static void run_arith(struct mp_exec *x, const struct mp_brequest *req)
{
    /* An expiration of 0xffffffff: a miss is not found; otherwise it creates the item with the
     * initial value. */
    struct mp_arith a = {.incr = req->cmd == MP_BOP_INCREMENT,
                         .delta = req->delta,
                         .cas = req->cas,
                         .create = req->exptime != UINT32_MAX,
                         .initial = req->initial,
                         .exptime = req->exptime};
    uint64_t value, cas;
    enum mp_result res = mp_exec_arith(x, req->key, req->nkey, &a, &value, &cas);
    switch (res) {
    case MP_OK:
        if (!req->quiet) {
            char body[8];
            mp_bproto_put64(body, value);
            header(x, req, MP_BST_SUCCESS, 0, 0, 8, cas);
            mp_out_bytes(x->out, body, 8);
        }
        break;
    case MP_NON_NUMERIC: error(x, req, MP_BST_DELTA_BADVAL); break;
    case MP_NOT_FOUND: error(x, req, MP_BST_KEY_ENOENT); break;
    case MP_EXISTS: error(x, req, MP_BST_KEY_EEXISTS); break;
    default:
        error_text(x, req, MP_BST_ENOMEM,
                   a.missed ? "Out of memory allocating new item" : "Out of memory incrementing value");
        break;
    }
}

struct stat_ctx {
    struct mp_exec *x;
    const struct mp_brequest *req;
};

/* One statistic: a STAT reply with its name as key and its value as body. */
static void emit_stat(void *ctx, const char *name, const char *fmt, ...)
{
    struct stat_ctx *s = ctx;
    char value[256];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t nv = (size_t)m < sizeof(value) ? (size_t)m : sizeof(value) - 1, nk = strlen(name);
    header(s->x, s->req, MP_BST_SUCCESS, 0, (uint16_t)nk, (uint32_t)(nk + nv), 0);
    mp_out_bytes(s->x->out, name, nk);
    mp_out_bytes(s->x->out, value, nv);
}

/* The key names the group as memcached matches it: reset and settings by prefix, the engine's
 * groups whole. "detail" (not kept by Magpie) and anything else is not found. */
static void run_stat(struct mp_exec *x, const struct mp_brequest *req)
{
    struct stat_ctx s = {x, req};
    const char *k = req->key;
    size_t n = req->nkey;
    int rc = 0;
    if (n == 0)
        rc = mp_exec_stats(x, "", 0, emit_stat, &s);
    else if (n >= 5 && memcmp(k, "reset", 5) == 0)
        mp_exec_stats_reset(x);
    else if (n >= 8 && memcmp(k, "settings", 8) == 0)
        rc = mp_exec_stats(x, "settings", 8, emit_stat, &s);
    else if ((n == 5 && (memcmp(k, "items", 5) == 0 || memcmp(k, "slabs", 5) == 0 || memcmp(k, "sizes", 5) == 0)))
        rc = mp_exec_stats(x, k, n, emit_stat, &s);
    else
        rc = -1;
    if (rc != 0) {
        error(x, req, MP_BST_KEY_ENOENT);
        return;
    }
    header(x, req, MP_BST_SUCCESS, 0, 0, 0, 0); /* the end of the list */
}

enum mp_next mp_binary_run(struct mp_exec *x, const struct mp_brequest *req)
{
    if (req->error) {
        error(x, req, req->error);
        if (req->close)
            return MP_NEXT_CLOSE;
        x->swallow = req->swallow;
        return req->swallow ? MP_NEXT_SWALLOW : MP_NEXT_CMD;
    }
    switch (req->cmd) {
    case MP_BOP_GET:
    case MP_BOP_GETK:
    case MP_BOP_TOUCH:
    case MP_BOP_GAT:
    case MP_BOP_GATK: run_get(x, req); break;
    case MP_BOP_SET:
    case MP_BOP_ADD:
    case MP_BOP_REPLACE:
    case MP_BOP_APPEND:
    case MP_BOP_PREPEND: return start_update(x, req);
    case MP_BOP_DELETE: run_delete(x, req); break;
    case MP_BOP_INCREMENT:
    case MP_BOP_DECREMENT: run_arith(x, req); break;
    case MP_BOP_FLUSH:
        mp_exec_flush(x, req->exptime);
        success(x, req, 0);
        break;
    case MP_BOP_NOOP: success(x, req, 0); break;
    case MP_BOP_VERSION: {
        static const char version[] = MP_PROTO_VERSION;
        header(x, req, MP_BST_SUCCESS, 0, 0, sizeof(version) - 1, 0);
        mp_out_bytes(x->out, version, sizeof(version) - 1);
        break;
    }
    case MP_BOP_QUIT: success(x, req, 0); return MP_NEXT_CLOSE;
    case MP_BOP_STAT: run_stat(x, req); break;
    }
    return MP_NEXT_CMD;
}

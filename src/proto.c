/* proto: see include/magpie/proto.h */
#include "magpie/proto.h"

#include <string.h>

#include "magpie/num.h"

static const char BAD_FORMAT[] = "CLIENT_ERROR bad command line format";
static const char BAD_EXPTIME[] = "CLIENT_ERROR invalid exptime argument";

struct token {
    const char *p;
    size_t n;
};

/* memcached's tokenize_command: split on spaces into at most MAX_TOKENS - 1 tokens; what is
 * left after the last one is the rest (NULL when the line was used up). */
struct tokens {
    struct token t[MP_PROTO_MAX_TOKENS];
    size_t n;         /* real tokens; memcached's ntokens is n + 1 */
    const char *rest;
    const char *end;
};

static void tokenize(const char *s, const char *end, struct tokens *tk)
{
    const char *start = s;
    tk->n = 0;
    tk->rest = NULL;
    tk->end = end;
    for (; s < end; s++) {
        if (*s != ' ')
            continue;
        if (s != start) {
            tk->t[tk->n++] = (struct token){start, (size_t)(s - start)};
            if (tk->n == MP_PROTO_MAX_TOKENS - 1) {
                start = s + 1;
                tk->rest = start < end ? start : NULL;
                return;
            }
        }
        start = s + 1;
    }
    if (start < end)
        tk->t[tk->n++] = (struct token){start, (size_t)(end - start)};
}

static bool tok_is(const struct token *t, const char *word)
{
    size_t n = strlen(word);
    return t->n == n && memcmp(t->p, word, n) == 0;
}

/* memcached's set_noreply_maybe: the last token is "noreply". */
static bool last_is_noreply(const struct tokens *tk)
{
    return tk->n > 0 && tok_is(&tk->t[tk->n - 1], "noreply");
}

static void error(struct mp_request *req, const char *msg)
{
    req->cmd = MP_CMD_ERROR;
    req->error = msg;
}

/* WANT_TOKENS: ntokens (n + 1) within [lo, hi]. */
static bool want(const struct tokens *tk, size_t lo, size_t hi, struct mp_request *req)
{
    size_t ntokens = tk->n + 1;
    if (ntokens < lo || ntokens > hi) {
        error(req, "ERROR");
        return false;
    }
    return true;
}

static bool key_ok(const struct token *t, struct mp_request *req)
{
    if (t->n > MP_KEY_MAX) {
        error(req, BAD_FORMAT);
        return false;
    }
    req->key = t->p;
    req->nkey = t->n;
    return true;
}

static void parse_get(const struct tokens *tk, enum mp_cmd cmd, struct mp_request *req)
{
    if (!want(tk, 3, SIZE_MAX, req))
        return;
    size_t first = 1;
    if (cmd == MP_CMD_GAT || cmd == MP_CMD_GATS) {
        if (!mp_num_i32(tk->t[1].p, tk->t[1].n, &req->exptime)) {
            error(req, BAD_EXPTIME);
            return;
        }
        first = 2;
    }
    req->cmd = cmd;
    req->keys = first < tk->n ? tk->t[first].p : tk->end;
    req->nkeys = (size_t)(tk->end - req->keys);
}

static void parse_update(const struct tokens *tk, enum mp_cmd cmd, struct mp_request *req)
{
    bool cas = cmd == MP_CMD_CAS;
    if (!want(tk, cas ? 7 : 6, cas ? 8 : 7, req))
        return;
    req->noreply = last_is_noreply(tk);
    if (!key_ok(&tk->t[1], req))
        return;
    if (!mp_num_u32(tk->t[2].p, tk->t[2].n, &req->flags) || !mp_num_i32(tk->t[3].p, tk->t[3].n, &req->exptime) ||
        !mp_num_i32(tk->t[4].p, tk->t[4].n, &req->vlen) || (cas && !mp_num_u64(tk->t[5].p, tk->t[5].n, &req->cas)) ||
        req->vlen < 0 || req->vlen > INT32_MAX - 2) {
        error(req, BAD_FORMAT);
        return;
    }
    req->cmd = cmd;
}

static void parse_arith(const struct tokens *tk, enum mp_cmd cmd, struct mp_request *req)
{
    if (!want(tk, 4, 5, req))
        return;
    req->noreply = last_is_noreply(tk);
    if (!key_ok(&tk->t[1], req))
        return;
    if (!mp_num_u64(tk->t[2].p, tk->t[2].n, &req->delta)) {
        error(req, "CLIENT_ERROR invalid numeric delta argument");
        return;
    }
    req->cmd = cmd;
}

static void parse_touch(const struct tokens *tk, struct mp_request *req)
{
    if (!want(tk, 4, 5, req))
        return;
    req->noreply = last_is_noreply(tk);
    if (!key_ok(&tk->t[1], req))
        return;
    if (!mp_num_i32(tk->t[2].p, tk->t[2].n, &req->exptime)) {
        error(req, BAD_EXPTIME);
        return;
    }
    req->cmd = MP_CMD_TOUCH;
}

static void parse_delete(const struct tokens *tk, struct mp_request *req)
{
    if (!want(tk, 3, 5, req))
        return;
    if (tk->n > 2) {
        bool hold_is_zero = tok_is(&tk->t[2], "0");
        req->noreply = last_is_noreply(tk);
        bool valid = (tk->n == 3 && (hold_is_zero || req->noreply)) || (tk->n == 4 && hold_is_zero && req->noreply);
        if (!valid) {
            error(req, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
            return;
        }
    }
    if (!key_ok(&tk->t[1], req))
        return;
    req->cmd = MP_CMD_DELETE;
}

static void parse_flush_all(const struct tokens *tk, struct mp_request *req)
{
    if (!want(tk, 2, 4, req))
        return;
    req->noreply = last_is_noreply(tk);
    req->exptime = 0;
    if (tk->n != (req->noreply ? 2u : 1u) && !mp_num_i32(tk->t[1].p, tk->t[1].n, &req->exptime)) {
        error(req, BAD_EXPTIME);
        return;
    }
    req->cmd = MP_CMD_FLUSH_ALL;
}

static void parse_verbosity(const struct tokens *tk, struct mp_request *req)
{
    if (!want(tk, 3, 4, req))
        return;
    req->noreply = last_is_noreply(tk);
    if (!mp_num_u32(tk->t[1].p, tk->t[1].n, &req->level)) {
        error(req, BAD_FORMAT);
        return;
    }
    req->cmd = MP_CMD_VERBOSITY;
}

/* The command table: name, and the parser for the rest. */
static void dispatch(const struct tokens *tk, struct mp_request *req, enum mp_parse_status *st)
{
    const struct token *c = &tk->t[0];
    if (tk->n == 0 || c->n < 2) {
        error(req, "ERROR");
        return;
    }
    if (tok_is(c, "get") || tok_is(c, "bget"))
        parse_get(tk, MP_CMD_GET, req);
    else if (tok_is(c, "gets"))
        parse_get(tk, MP_CMD_GETS, req);
    else if (tok_is(c, "gat"))
        parse_get(tk, MP_CMD_GAT, req);
    else if (tok_is(c, "gats"))
        parse_get(tk, MP_CMD_GATS, req);
    else if (tok_is(c, "set"))
        parse_update(tk, MP_CMD_SET, req);
    else if (tok_is(c, "add"))
        parse_update(tk, MP_CMD_ADD, req);
    else if (tok_is(c, "replace"))
        parse_update(tk, MP_CMD_REPLACE, req);
    else if (tok_is(c, "append"))
        parse_update(tk, MP_CMD_APPEND, req);
    else if (tok_is(c, "prepend"))
        parse_update(tk, MP_CMD_PREPEND, req);
    else if (tok_is(c, "cas"))
        parse_update(tk, MP_CMD_CAS, req);
    else if (tok_is(c, "incr"))
        parse_arith(tk, MP_CMD_INCR, req);
    else if (tok_is(c, "decr"))
        parse_arith(tk, MP_CMD_DECR, req);
    else if (tok_is(c, "delete"))
        parse_delete(tk, req);
    else if (tok_is(c, "touch"))
        parse_touch(tk, req);
    else if (tok_is(c, "flush_all"))
        parse_flush_all(tk, req);
    else if (tok_is(c, "verbosity"))
        parse_verbosity(tk, req);
    else if (tok_is(c, "version"))
        req->cmd = MP_CMD_VERSION;
    else if (tok_is(c, "quit"))
        req->cmd = MP_CMD_QUIT;
    else if (tok_is(c, "mn"))
        req->cmd = MP_CMD_MN;
    else if (tok_is(c, "stats")) {
        req->cmd = MP_CMD_STATS;
        req->keys = tk->n > 1 ? tk->t[1].p : tk->end;
        req->nkeys = (size_t)(tk->end - req->keys);
    } else if (tok_is(c, "shutdown"))
        error(req, "ERROR: shutdown not enabled");
    else if (tk->t[tk->n - 1].n >= 5 && memcmp(tk->t[tk->n - 1].p, "HTTP/", 5) == 0)
        *st = MP_PARSE_CLOSE; /* someone speaks HTTP to us: memcached hangs up */
    else
        error(req, "ERROR");
}

/* The end of a line's content: before "\r\n" (when the line has more than the "\r"), and before
 * a NUL byte, which ends memcached's C string. */
static const char *content_end(const char *line, const char *nl)
{
    const char *end = nl;
    if (end - line > 1 && end[-1] == '\r')
        end--;
    const char *nul = memchr(line, '\0', (size_t)(end - line));
    return nul ? nul : end;
}

static const char *last_space(const char *buf, size_t len)
{
    for (size_t i = len; i > 0; i--)
        if (buf[i - 1] == ' ')
            return buf + i - 1;
    return NULL;
}

/* A get line over MP_PROTO_LINE_MAX with no end yet: the keys seen so far, up to the last space. */
static enum mp_parse_status long_get(const char *buf, size_t len, struct mp_request *req, size_t *consumed)
{
    const char *p = buf, *end = buf + len;
    while (p < end && *p == ' ')
        p++;
    bool gets = (size_t)(end - p) >= 5 && memcmp(p, "gets ", 5) == 0;
    if (p - buf > 100 || (!gets && memcmp(p, "get ", 4) != 0))
        return MP_PARSE_CLOSE;
    req->cmd = gets ? MP_CMD_GETS : MP_CMD_GET;
    req->keys = p + (gets ? 5 : 4);
    const char *sp = last_space(req->keys, (size_t)(end - req->keys));
    const char *stop = sp ? sp : req->keys;
    req->nkeys = (size_t)(stop - req->keys);
    req->partial = true;
    *consumed = (size_t)(stop - buf);
    return MP_PARSE_OK;
}

enum mp_parse_status mp_proto_parse(const char *buf, size_t len, struct mp_request *req, size_t *consumed)
{
    memset(req, 0, sizeof(*req));
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return len > MP_PROTO_LINE_MAX ? long_get(buf, len, req, consumed) : MP_PARSE_NEED_MORE;
    *consumed = (size_t)(nl + 1 - buf);
    struct tokens tk;
    tokenize(buf, content_end(buf, nl), &tk);
    enum mp_parse_status st = MP_PARSE_OK;
    dispatch(&tk, req, &st);
    return st;
}

enum mp_parse_status mp_proto_parse_keys(const char *buf, size_t len, struct mp_request *req, size_t *consumed)
{
    enum mp_cmd cmd = req->cmd;
    memset(req, 0, sizeof(*req));
    req->cmd = cmd;
    req->keys = buf;
    const char *nl = memchr(buf, '\n', len);
    if (nl) {
        req->nkeys = (size_t)(content_end(buf, nl) - buf);
        *consumed = (size_t)(nl + 1 - buf);
        return MP_PARSE_OK;
    }
    req->partial = true;
    const char *sp = last_space(buf, len);
    if (sp) {
        req->nkeys = (size_t)(sp - buf);
        *consumed = (size_t)(sp + 1 - buf);
        return MP_PARSE_OK;
    }
    if (len > MP_KEY_MAX) {
        /* A key longer than any allowed and still going: hand it out so the caller refuses it. */
        req->nkeys = len;
        *consumed = len;
        return MP_PARSE_OK;
    }
    return MP_PARSE_NEED_MORE;
}

bool mp_proto_next_key(const char **pos, const char *end, const char **key, size_t *nkey)
{
    const char *p = *pos;
    while (p < end && *p == ' ')
        p++;
    if (p == end) {
        *pos = p;
        return false;
    }
    const char *k = p;
    while (p < end && *p != ' ')
        p++;
    *key = k;
    *nkey = (size_t)(p - k);
    *pos = p;
    return true;
}

const char *mp_proto_result_str(enum mp_result res)
{
    switch (res) {
    case MP_OK: return "OK";
    case MP_STORED: return "STORED";
    case MP_NOT_STORED: return "NOT_STORED";
    case MP_EXISTS: return "EXISTS";
    case MP_NOT_FOUND: return "NOT_FOUND";
    case MP_DELETED: return "DELETED";
    case MP_TOUCHED: return "TOUCHED";
    case MP_NOMEM: return "SERVER_ERROR out of memory storing object";
    case MP_TOO_LARGE: return "SERVER_ERROR object too large for cache";
    case MP_NON_NUMERIC: return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    case MP_BAD_CHUNK: return "CLIENT_ERROR bad data chunk";
    }
    return "SERVER_ERROR unhandled result";
}

size_t mp_proto_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t mp_proto_value_header(char *out, const char *key, size_t nkey, uint32_t flags, uint32_t nbytes, bool with_cas,
                             uint64_t cas)
{
    char *p = out;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, nkey);
    p += nkey;
    *p++ = ' ';
    p += mp_proto_u64(p, flags);
    *p++ = ' ';
    p += mp_proto_u64(p, nbytes);
    if (with_cas) {
        *p++ = ' ';
        p += mp_proto_u64(p, cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - out);
}

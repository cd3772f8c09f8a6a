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
    size_t n; /* real tokens; memcached's ntokens is n + 1 */
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

/* ---- meta commands ------------------------------------------------------------------------ */

/* memcached's _meta_flag_preparse over the tokens from `start`. Returns 0, or -1 with
 * req->error set. A duplicate or unknown flag stops at once; other errors let the scan go on and
 * the last one is reported, as memcached does. */
static int meta_flags(const struct tokens *tk, size_t start, struct mp_request *req)
{
    struct mp_meta *m = &req->meta;
    bool seen[128] = {false};
    const char *err = NULL;
    bool failed = false;
    for (size_t i = start; i < tk->n; i++) {
        const struct token *t = &tk->t[i];
        unsigned char o = (unsigned char)t->p[0];
        if (o >= 127 || seen[o]) {
            req->error = "CLIENT_ERROR duplicate flag";
            return -1;
        }
        seen[o] = true;
        m->toks[m->ntoks] = t->p;
        m->ntoklen[m->ntoks++] = (uint8_t)(t->n > 255 ? 255 : t->n);
        const char *arg = t->p + 1;
        size_t narg = t->n - 1;
        switch (o) {
        case 'b': {
            size_t n = mp_proto_base64_decode(req->key, req->nkey, (unsigned char *)m->keybuf, sizeof(m->keybuf));
            if (n == 0) {
                err = "CLIENT_ERROR error decoding key";
                failed = true;
            }
            req->key = m->keybuf;
            req->nkey = n;
            m->key_binary = true;
            break;
        }
        case 'N':
        case 'T':
        case 'R': {
            int32_t v;
            if (!mp_num_i32(arg, narg, &v)) {
                err = "CLIENT_ERROR bad token in command line format";
                failed = true;
            } else if (o == 'N') {
                m->vivify = true;
                m->vivify_exptime = v;
            } else if (o == 'T') {
                m->new_ttl = true;
                m->exptime = v;
            } else {
                m->recache = true;
                m->recache_time = v;
            }
            break;
        }
        case 'O':
        case 'P':
        case 'L':
        case 'k':
        case 's':
        case 't':
        case 'c':
        case 'f':
        case 'h':
        case 'l': break;
        case 'v': m->value = true; break;
        case 'u': m->no_update = true; break;
        case 'q': m->no_reply = true; break;
        case 'I': m->set_stale = true; break;
        case 'F':
            if (!mp_num_u32(arg, narg, &m->client_flags))
                failed = true;
            break;
        case 'C':
            if (!mp_num_u64(arg, narg, &m->cas)) {
                err = "CLIENT_ERROR bad token in command line format";
                failed = true;
            } else {
                m->has_cas = true;
            }
            break;
        case 'M':
            if (t->n != 2) {
                err = "CLIENT_ERROR incorrect length for M token";
                failed = true;
            } else {
                m->mode = t->p[1];
            }
            break;
        case 'J':
            if (!mp_num_u64(arg, narg, &m->initial)) {
                err = "CLIENT_ERROR invalid numeric initial value";
                failed = true;
            }
            break;
        case 'D':
            if (!mp_num_u64(arg, narg, &m->delta)) {
                err = "CLIENT_ERROR invalid numeric delta value";
                failed = true;
            }
            break;
        default: req->error = "CLIENT_ERROR invalid flag"; return -1;
        }
    }
    if (failed)
        req->error = err ? err : BAD_FORMAT;
    return failed ? -1 : 0;
}

/* An opaque (O) token longer than memcached allows. */
static bool opaque_too_long(const struct mp_meta *m)
{
    for (size_t i = 0; i < m->ntoks; i++)
        if (m->toks[i][0] == 'O' && m->ntoklen[i] > MP_META_OPAQUE_MAX)
            return true;
    return false;
}

/* What mg, md and ma share: token count, key length, flags. */
static bool meta_common(const struct tokens *tk, struct mp_request *req, const char *too_many, const char *bad_flags)
{
    if (!want(tk, 3, SIZE_MAX, req))
        return false;
    req->key = tk->t[1].p;
    req->nkey = tk->t[1].n;
    req->meta.delta = 1;
    if (req->nkey > MP_KEY_MAX) {
        error(req, BAD_FORMAT);
        return false;
    }
    if (tk->n + 1 > MP_META_MAX_TOKENS) {
        error(req, too_many);
        return false;
    }
    if (meta_flags(tk, 2, req) != 0) {
        req->cmd = MP_CMD_ERROR;
        if (bad_flags)
            req->error = bad_flags;
        return false;
    }
    if (opaque_too_long(&req->meta)) {
        error(req, "CLIENT_ERROR opaque token too long");
        return false;
    }
    return true;
}

static void parse_mg(const struct tokens *tk, struct mp_request *req)
{
    if (meta_common(tk, req, "CLIENT_ERROR options flags are too long", NULL))
        req->cmd = MP_CMD_MG;
}

static void parse_md(const struct tokens *tk, struct mp_request *req)
{
    if (meta_common(tk, req, "CLIENT_ERROR options flags too long", "CLIENT_ERROR invalid or duplicate flag"))
        req->cmd = MP_CMD_MD;
}

static void parse_ma(const struct tokens *tk, struct mp_request *req)
{
    if (!meta_common(tk, req, "CLIENT_ERROR options flags too long", "CLIENT_ERROR invalid or duplicate flag"))
        return;
    char mode = req->meta.mode;
    if (mode != 0 && mode != 'I' && mode != '+' && mode != 'D' && mode != '-') {
        error(req, "CLIENT_ERROR invalid mode for ma M token");
        return;
    }
    req->cmd = MP_CMD_MA;
}

/* ms: errors found after the length is known discard the value that follows (swallow). */
static void parse_ms(const struct tokens *tk, struct mp_request *req)
{
    if (!want(tk, 3, SIZE_MAX, req))
        return;
    req->key = tk->t[1].p;
    req->nkey = tk->t[1].n;
    if (req->nkey > MP_KEY_MAX || tk->n == 2) {
        error(req, BAD_FORMAT);
        return;
    }
    if (tk->n + 1 > MP_META_MAX_TOKENS) {
        error(req, "CLIENT_ERROR options flags too long");
        return;
    }
    if (!mp_num_i32(tk->t[2].p, tk->t[2].n, &req->vlen) || req->vlen < 0 || req->vlen > INT32_MAX - 2) {
        error(req, BAD_FORMAT);
        return;
    }
    char mode = 0;
    if (meta_flags(tk, 3, req) != 0) {
        req->cmd = MP_CMD_ERROR;
    } else if (opaque_too_long(&req->meta)) {
        error(req, "CLIENT_ERROR opaque token too long");
    } else if ((mode = req->meta.mode) != 0 && !strchr("EAPRS", mode)) {
        error(req, "CLIENT_ERROR invalid mode for ms M token");
    } else {
        req->cmd = MP_CMD_MS;
        return;
    }
    req->swallow = (size_t)req->vlen + 2;
}

/* me <key> [b] */
static void parse_me(const struct tokens *tk, struct mp_request *req)
{
    if (tk->n < 2 || tk->t[1].n > MP_KEY_MAX) {
        error(req, BAD_FORMAT);
        return;
    }
    req->key = tk->t[1].p;
    req->nkey = tk->t[1].n;
    if (tk->n >= 3 && tok_is(&tk->t[2], "b")) {
        size_t n =
            mp_proto_base64_decode(req->key, req->nkey, (unsigned char *)req->meta.keybuf, sizeof(req->meta.keybuf));
        if (n == 0) {
            error(req, BAD_FORMAT);
            return;
        }
        req->key = req->meta.keybuf;
        req->nkey = n;
        req->meta.key_binary = true;
    }
    req->cmd = MP_CMD_ME;
}

/* An admin command: its arguments are the rest of the line, and noreply is the last of them. */
static void admin(const struct tokens *tk, enum mp_cmd cmd, struct mp_request *req)
{
    req->cmd = cmd;
    req->keys = tk->n > 1 ? tk->t[1].p : tk->end;
    req->nkeys = (size_t)(tk->end - req->keys);
    req->noreply = last_is_noreply(tk);
}

size_t mp_proto_split(const char *s, size_t n, struct mp_token *t, size_t max)
{
    struct tokens tk;
    tokenize(s, s + n, &tk);
    size_t k = tk.n < max ? tk.n : max;
    for (size_t i = 0; i < k; i++)
        t[i] = (struct mp_token){tk.t[i].p, tk.t[i].n};
    return k;
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
    else if (tok_is(c, "mg"))
        parse_mg(tk, req);
    else if (tok_is(c, "ms"))
        parse_ms(tk, req);
    else if (tok_is(c, "md"))
        parse_md(tk, req);
    else if (tok_is(c, "ma"))
        parse_ma(tk, req);
    else if (tok_is(c, "me"))
        parse_me(tk, req);
    else if (tok_is(c, "stats")) {
        req->cmd = MP_CMD_STATS;
        req->keys = tk->n > 1 ? tk->t[1].p : tk->end;
        req->nkeys = (size_t)(tk->end - req->keys);
    } else if (tok_is(c, "lru_crawler"))
        admin(tk, MP_CMD_LRU_CRAWLER, req);
    else if (tok_is(c, "slabs"))
        admin(tk, MP_CMD_SLABS, req);
    else if (tok_is(c, "cache_memlimit")) {
        if (want(tk, 3, 4, req))
            admin(tk, MP_CMD_MEMLIMIT, req);
    } else if (tok_is(c, "watch"))
        admin(tk, MP_CMD_WATCH, req);
    else if (tok_is(c, "shutdown"))
        admin(tk, MP_CMD_SHUTDOWN, req);
    else if (tok_is(c, "refresh_certs")) {
        req->cmd = MP_CMD_REFRESH_CERTS;
        req->noreply = last_is_noreply(tk);
    } else if (tk->t[tk->n - 1].n >= 5 && memcmp(tk->t[tk->n - 1].p, "HTTP/", 5) == 0)
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
        /* The line is long (that is why it comes in parts), so a "\r" before its "\n" is always
         * the line end, even when this part is no more than "\r\n". */
        const char *end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl;
        const char *nul = memchr(buf, '\0', (size_t)(end - buf));
        req->nkeys = (size_t)((nul ? nul : end) - buf);
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

enum mp_parse_status mp_proto_parse_auth(const char *buf, size_t len, struct mp_request *req, size_t *consumed)
{
    memset(req, 0, sizeof(*req));
    if (len < 2)
        return MP_PARSE_NEED_MORE;
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return len > MP_PROTO_LINE_MAX ? MP_PARSE_CLOSE : MP_PARSE_NEED_MORE;
    *consumed = (size_t)(nl + 1 - buf);
    /* memcached ends the line at its "\n" and leaves a "\r" in: the length token takes it as the
     * white space after the number. */
    const char *nul = memchr(buf, '\0', (size_t)(nl - buf));
    struct tokens tk;
    tokenize(buf, nul ? nul : nl, &tk);
    if (tk.n < 5 || !tok_is(&tk.t[0], "set") || !mp_num_u32(tk.t[4].p, tk.t[4].n, &req->auth_vlen)) {
        error(req, "CLIENT_ERROR unauthenticated");
        return MP_PARSE_OK;
    }
    req->cmd = MP_CMD_SET;
    return MP_PARSE_OK;
}

bool mp_proto_auth_token(const char *value, size_t n, const char **user, size_t *ulen, const char **pass, size_t *plen)
{
    const char *nul = memchr(value, '\0', n);
    struct tokens tk;
    tokenize(value, nul ? nul : value + n, &tk);
    if (tk.n < 2)
        return false;
    *user = tk.t[0].p;
    *ulen = tk.t[0].n;
    *pass = tk.t[1].p;
    *plen = tk.t[1].n;
    return true;
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

const char *mp_proto_cmd_name(enum mp_cmd cmd)
{
    static const char *const names[] = {
        [MP_CMD_GET] = "get",
        [MP_CMD_GETS] = "gets",
        [MP_CMD_GAT] = "gat",
        [MP_CMD_GATS] = "gats",
        [MP_CMD_SET] = "set",
        [MP_CMD_ADD] = "add",
        [MP_CMD_REPLACE] = "replace",
        [MP_CMD_APPEND] = "append",
        [MP_CMD_PREPEND] = "prepend",
        [MP_CMD_CAS] = "cas",
        [MP_CMD_DELETE] = "delete",
        [MP_CMD_INCR] = "incr",
        [MP_CMD_DECR] = "decr",
        [MP_CMD_TOUCH] = "touch",
        [MP_CMD_FLUSH_ALL] = "flush_all",
        [MP_CMD_VERSION] = "version",
        [MP_CMD_VERBOSITY] = "verbosity",
        [MP_CMD_QUIT] = "quit",
        [MP_CMD_STATS] = "stats",
        [MP_CMD_MN] = "mn",
        [MP_CMD_MG] = "mg",
        [MP_CMD_MS] = "ms",
        [MP_CMD_MD] = "md",
        [MP_CMD_MA] = "ma",
        [MP_CMD_ME] = "me",
        [MP_CMD_REFRESH_CERTS] = "refresh_certs",
        [MP_CMD_ERROR] = "error",
    };
    return (unsigned)cmd < sizeof(names) / sizeof(names[0]) && names[cmd] ? names[cmd] : "error";
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

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mp_proto_base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    return o;
}

/* A base64 digit's value; '=' counts as a digit worth 0; -1 for anything else. */
static int b64_value(char ch)
{
    if (ch == '=')
        return 0;
    const char *p = ch ? strchr(B64, ch) : NULL;
    return p ? (int)(p - B64) : -1;
}

/* As memcached decodes: characters outside the alphabet are skipped, the digits must come in
 * fours, and decoding stops after the first group with padding. */
size_t mp_proto_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += b64_value(in[i]) >= 0;
    if (count == 0 || count % 4 != 0 || count / 4 * 3 > cap)
        return 0;
    size_t o = 0, k = 0;
    int pad = 0;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = b64_value(in[i]);
        if (d < 0)
            continue;
        pad += in[i] == '=';
        v = v << 6 | (uint32_t)d;
        if (++k < 4)
            continue;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
        k = 0;
        v = 0;
        if (pad) {
            if (pad > 2)
                return 0;
            return o - (size_t)pad;
        }
    }
    return o;
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
    p += mp_num_format(p, flags);
    *p++ = ' ';
    p += mp_num_format(p, nbytes);
    if (with_cas) {
        *p++ = ' ';
        p += mp_num_format(p, cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - out);
}

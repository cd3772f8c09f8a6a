/* warm: see include/magpie/warm.h */
#include "magpie/warm.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "magpie/chain.h"
#include "magpie/proto.h"

/* ---- the peer's protocol ------------------------------------------------------------------- */

/* Exactly digits (no sign, no space), at most `max`. */
static bool parse_digits(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Digits with an optional '-'. */
static bool parse_signed(const char *s, size_t n, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    uint64_t v;
    if (!parse_digits(s + neg, n - neg, (uint64_t)INT64_MAX, &v))
        return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int mp_warm_urldecode(const char *in, size_t n, char *out)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(in[i + 1]) : -1, lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if ((unsigned char)c <= ' ' || c == 0x7f) {
            return -1; /* never left as is by the encoder */
        }
        if (len == MP_KEY_MAX)
            return -2;
        out[len++] = c;
    }
    return len ? (int)len : -1;
}

bool mp_warm_key_printable(const char *key, size_t nkey)
{
    for (size_t i = 0; i < nkey; i++)
        if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
            return false;
    return nkey > 0;
}

static bool token_is(const char *p, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(p, word, n) == 0;
}

/* The line is `word`, or `word` and a space and more. */
static bool starts_with_word(const char *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(p, word, w) == 0 && (n == w || p[w] == ' ');
}

enum mp_warm_line mp_warm_parse_dump_line(const char *line, size_t n, struct mp_warm_key *k)
{
    if (n && line[n - 1] == '\r')
        n--;
    if (token_is(line, n, "END") || starts_with_word(line, n, "NOTSTARTED"))
        return MP_WARM_LINE_END;
    if (starts_with_word(line, n, "BUSY"))
        return MP_WARM_LINE_BUSY;
    if (starts_with_word(line, n, "ERROR") || starts_with_word(line, n, "CLIENT_ERROR") ||
        starts_with_word(line, n, "SERVER_ERROR") || starts_with_word(line, n, "BADCLASS"))
        return MP_WARM_LINE_REFUSED;
    if (n < 5 || memcmp(line, "key=", 4) != 0)
        return MP_WARM_LINE_BAD;
    *k = (struct mp_warm_key){.exp = -1, .la = -1};
    bool too_long = false;
    for (size_t i = 0; i < n;) {
        const char *tok = line + i, *sp = memchr(tok, ' ', n - i);
        size_t len = sp ? (size_t)(sp - tok) : n - i;
        const char *eq = memchr(tok, '=', len);
        if (!eq || eq == tok)
            return MP_WARM_LINE_BAD;
        size_t nname = (size_t)(eq - tok), nval = len - nname - 1;
        const char *val = eq + 1;
        uint64_t u;
        if (i == 0) { /* key=, first */
            int r = mp_warm_urldecode(val, nval, k->key);
            if (r == -1)
                return MP_WARM_LINE_BAD;
            too_long = r == -2;
            k->nkey = r > 0 ? (uint8_t)r : 0;
        } else if (token_is(tok, nname, "exp")) {
            if (!parse_signed(val, nval, &k->exp))
                return MP_WARM_LINE_BAD;
        } else if (token_is(tok, nname, "la")) {
            if (!parse_signed(val, nval, &k->la))
                return MP_WARM_LINE_BAD;
        } else if (token_is(tok, nname, "fetch")) {
            if (!token_is(val, nval, "yes") && !token_is(val, nval, "no"))
                return MP_WARM_LINE_BAD;
            k->fetched = nval == 3;
        } else if (token_is(tok, nname, "size")) {
            if (!parse_digits(val, nval, UINT32_MAX, &u))
                return MP_WARM_LINE_BAD;
            k->size = (uint32_t)u;
        } else if (token_is(tok, nname, "key")) {
            return MP_WARM_LINE_BAD; /* twice */
        }
        /* cas=, cls= and names a later format adds are not needed */
        i += len + 1;
        if (sp && i == n)
            return MP_WARM_LINE_BAD; /* a trailing space */
    }
    if (too_long)
        return MP_WARM_LINE_LONG;
    k->binary = !mp_warm_key_printable(k->key, k->nkey);
    return MP_WARM_LINE_KEY;
}

/* The next space-separated token of [*p, end): false at the end. An empty token (two spaces) is
 * returned as one of length 0. */
static bool next_token(const char **p, const char *end, const char **tok, size_t *len)
{
    if (*p >= end)
        return false;
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));
    *tok = *p;
    *len = sp ? (size_t)(sp - *p) : (size_t)(end - *p);
    *p = sp ? sp + 1 : end;
    return true;
}

/* The return flags of a meta reply, after its code (and VA's size). */
static bool meta_flags(const char *p, const char *end, struct mp_warm_head *h)
{
    const char *tok;
    size_t len;
    uint64_t u;
    while (next_token(&p, end, &tok, &len)) {
        if (len == 0)
            return false;
        const char *v = tok + 1;
        size_t nv = len - 1;
        switch (tok[0]) {
        case 'f':
            if (!parse_digits(v, nv, UINT32_MAX, &u))
                return false;
            h->flags = (uint32_t)u;
            break;
        case 't':
            if (!parse_signed(v, nv, &h->ttl) || h->ttl < -1)
                return false;
            break;
        case 'l':
            if (!parse_digits(v, nv, UINT32_MAX, &u))
                return false;
            h->idle = (uint32_t)u;
            break;
        case 'h':
            if (nv != 1 || (v[0] != '0' && v[0] != '1'))
                return false;
            h->fetched = v[0] == '1';
            break;
        case 'c':
            if (!parse_digits(v, nv, UINT64_MAX, &h->cas))
                return false;
            break;
        case 'O':
            if (!parse_digits(v, nv, UINT32_MAX, &u))
                return false;
            h->has_opaque = true;
            h->opaque = (uint32_t)u;
            break;
        case 'X': h->stale = true; break;
        case 'W': h->won = true; break;
        default:
            /* Z, k, b, s and flags a later version adds: printable, nothing to take from them */
            if ((unsigned char)tok[0] <= ' ' || (unsigned char)tok[0] >= 0x7f)
                return false;
            break;
        }
    }
    return true;
}

static enum mp_warm_reply reply_value(const char *p, const char *end, bool meta, struct mp_warm_head *h)
{
    const char *tok;
    size_t len;
    uint64_t u;
    if (meta) { /* "VA <n> <flags>*" */
        if (!next_token(&p, end, &tok, &len) || !parse_digits(tok, len, UINT32_MAX, &u))
            return MP_WARM_BAD;
        h->nbytes = (uint32_t)u;
        return meta_flags(p, end, h) ? MP_WARM_VALUE : MP_WARM_BAD;
    }
    /* "VALUE <key> <flags> <n>[ <cas>]" */
    if (!next_token(&p, end, &h->key, &h->nkey) || h->nkey == 0 || h->nkey > MP_KEY_MAX)
        return MP_WARM_BAD;
    if (!next_token(&p, end, &tok, &len) || !parse_digits(tok, len, UINT32_MAX, &u))
        return MP_WARM_BAD;
    h->flags = (uint32_t)u;
    if (!next_token(&p, end, &tok, &len) || !parse_digits(tok, len, UINT32_MAX, &u))
        return MP_WARM_BAD;
    h->nbytes = (uint32_t)u;
    if (next_token(&p, end, &tok, &len) && (!parse_digits(tok, len, UINT64_MAX, &h->cas) || p < end))
        return MP_WARM_BAD;
    return MP_WARM_VALUE;
}

enum mp_warm_reply mp_warm_parse_reply(const char *line, size_t n, bool meta, struct mp_warm_head *h)
{
    *h = (struct mp_warm_head){.ttl = -1};
    const char *p = line, *end = line + n, *code;
    size_t len;
    enum mp_warm_reply kind = MP_WARM_BAD;
    if (n > 0 && line[n - 1] == ' ')
        kind = MP_WARM_BAD; /* an empty last token */
    else if (starts_with_word(line, n, "SERVER_ERROR"))
        kind = MP_WARM_SERVER_ERROR;
    else if (starts_with_word(line, n, "CLIENT_ERROR"))
        kind = MP_WARM_CLIENT_ERROR;
    else if (token_is(line, n, "ERROR"))
        kind = MP_WARM_ERROR;
    else if (next_token(&p, end, &code, &len)) {
        if (meta && token_is(code, len, "VA"))
            kind = reply_value(p, end, true, h);
        else if (!meta && token_is(code, len, "VALUE"))
            kind = reply_value(p, end, false, h);
        else if (!meta && token_is(code, len, "END") && p == end)
            kind = MP_WARM_END;
        else if (meta && (token_is(code, len, "EN") || token_is(code, len, "HD") || token_is(code, len, "EX") ||
                          token_is(code, len, "NF")))
            kind = !meta_flags(p, end, h) ? MP_WARM_BAD
                   : code[0] == 'E'       ? (code[1] == 'N' ? MP_WARM_MISS : MP_WARM_EX)
                   : code[0] == 'H'       ? MP_WARM_HD
                                          : MP_WARM_NF;
    }
    h->kind = kind;
    return kind;
}

int mp_warm_parse_version(const char *line, size_t n)
{
    if (n < 9 || memcmp(line, "VERSION ", 8) != 0)
        return -1;
    const char *p = line + 8, *end = line + n;
    uint64_t major = 0, minor = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q == p || !parse_digits(p, (size_t)(q - p), 1000000, &major))
        return 1; /* not memcached's numbering: take it to be a recent server */
    if (q < end && *q == '.') {
        const char *r = ++q;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
        if (q == r || !parse_digits(r, (size_t)(q - r), 1000000, &minor))
            minor = 0;
    }
    return major > 1 || (major == 1 && minor >= 6) ? 1 : 0;
}

/* The key as a request spells it, with " b" after a base64 one. */
static size_t put_key(char *out, const struct mp_warm_key *k)
{
    if (!k->binary) {
        memcpy(out, k->key, k->nkey);
        return k->nkey;
    }
    size_t n = mp_proto_base64_encode((const unsigned char *)k->key, k->nkey, out);
    memcpy(out + n, " b", 2);
    return n + 2;
}

size_t mp_warm_format_get(char *out, const struct mp_warm_key *k, bool meta, uint32_t opaque)
{
    size_t n;
    if (!meta) {
        memcpy(out, "get ", 4);
        n = 4 + put_key(out + 4, k);
        memcpy(out + n, "\r\n", 2);
        return n + 2;
    }
    memcpy(out, "mg ", 3);
    n = 3 + put_key(out + 3, k);
    return n + (size_t)sprintf(out + n, " v f t h l c u O%u\r\n", opaque);
}

size_t mp_warm_format_giveback(char *out, const struct mp_warm_key *k, uint64_t cas, uint32_t opaque)
{
    memcpy(out, "md ", 3);
    size_t n = 3 + put_key(out + 3, k);
    return n + (size_t)sprintf(out + n, " I C%llu O%u\r\n", (unsigned long long)cas, opaque);
}

int mp_warm_split_peer(const char *peer, char *host, size_t hostcap, uint16_t *port)
{
    const char *colon = strrchr(peer, ':');
    uint64_t p;
    if (!colon || !parse_digits(colon + 1, strlen(colon + 1), 65535, &p) || p == 0)
        return -1;
    const char *h = peer;
    size_t nhost = (size_t)(colon - peer);
    if (nhost >= 2 && h[0] == '[' && h[nhost - 1] == ']') {
        h++;
        nhost -= 2;
    } else if (memchr(h, ':', nhost)) {
        return -1; /* an IPv6 address needs its brackets */
    }
    if (nhost == 0 || nhost >= hostcap)
        return -1;
    memcpy(host, h, nhost);
    host[nhost] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* ---- the copier ------------------------------------------------------------------------------ */

#define LINE_MAX_BYTES 4096              /* a listing line or reply head longer than this is garbage */
#define DUMP_BUF (64 * 1024)             /* the listing's read buffer */
#define GET_BUF (256 * 1024)             /* the values' read buffer */
#define QUEUE_KEYS 4096                  /* keys listed and not yet asked for; the listing waits beyond */
#define WINDOW 256                       /* gets in flight */
#define WINDOW_BYTES ((uint64_t)4 << 20) /* their items' sizes, as listed */
#define FLIGHT WINDOW                    /* requests in flight, gets and givebacks (below) */
#define TICK_MS 100                      /* deadlines and progress are checked this often */
#define PROGRESS_MS 5000                 /* a progress line this often */
#define BUSY_RETRY_MS 250                /* memcached's crawler was busy: ask again after this, */
#define BUSY_TRIES 40                    /* at most this many times */

static const char DUMP_REQUEST[] = "lru_crawler metadump all\r\n";
static const char VERSION_REQUEST[] = "version\r\n";

struct wconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct mp_warm_client *cl;
    const char *name; /* for log lines: "listing" or "values" */
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf; /* requests being written while `writing` */
    size_t wlen;
    bool open;      /* tcp initialised and not yet closed */
    bool connected; /* connect succeeded */
    bool writing;
    bool reading;
    bool reopen;       /* connect again once closed (the next address, or after BUSY) */
    uint64_t since_ms; /* when it last made progress: connected, bytes arrived, waiting began */
};

struct flight {
    struct mp_warm_key k;
    uint32_t opaque;
    bool giveback; /* an md handing a token back (below), not a get */
    uint64_t cas;  /* the giveback's */
};

struct mp_warm_client {
    struct mp_warm *w;
    struct mp_cache *cache;
    struct mp_warm_opts o;
    char host[256];
    uint16_t port;
    unsigned timeout_ms;
    uv_loop_t loop;
    bool loop_ready;
    uv_async_t stop;
    uv_timer_t tick, pace;
    uv_getaddrinfo_t gai;
    bool resolving;
    struct addrinfo *addrs, *addr; /* the peer's addresses, and the one tried or in use */
    struct wconn dump, get;
    pthread_mutex_t lock; /* guards stop_closed against mp_warm_stop's send */
    bool stop_closed;
    bool finished;
    int meta; /* the peer speaks meta: 1; only get: 0; not known yet: -1 */
    bool dump_ended, dump_paused, full;
    unsigned busy_tries;
    uint64_t started_ms, retry_at_ms, last_progress_ms;
    /* keys listed and not yet asked for: a ring */
    struct mp_warm_key *keys;
    size_t khead, kcount;
    /* requests in flight, oldest first: a ring */
    struct flight *fl;
    size_t fhead, fcount;
    uint64_t fbytes;
    /* tokens to hand back: gets in flight, tokens waiting and givebacks in flight are together at
     * most WINDOW (a get is sent only below it, and each answer queues at most one giveback) */
    struct flight gb[WINDOW];
    size_t gcount;
    uint32_t next_opaque;
    bool got_value; /* get: the request at the head of the flight has had its VALUE */
    /* the value being read */
    struct {
        bool active;
        struct mp_item *it; /* NULL: the value is read and dropped */
        uint32_t left;
        bool expired;
        uint8_t clock;
        uint32_t idle;
        bool stale, won;
        uint64_t cas;
    } v;
    struct mp_cache_warm batch[MP_CACHE_WARM_BATCH];
    uint64_t batch_bytes[MP_CACHE_WARM_BATCH];
    size_t nbatch;
    double tokens;
    uint64_t tokens_at_ns;
    bool noted_client_error;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void bump(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

static void set_state(struct mp_warm_client *cl, enum mp_warm_state s)
{
    atomic_store_explicit(&cl->w->status.state, (int)s, memory_order_relaxed);
}

static void note(struct mp_warm_client *cl, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(struct mp_warm_client *cl, bool error, const char *fmt, ...)
{
    if (!cl->o.note)
        return;
    char msg[768];
    int n = snprintf(msg, sizeof(msg), "warm-up from %s: ", cl->o.peer);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    cl->o.note(cl->o.note_ctx, error, msg);
}

/* A line from the peer as a log line may show it: at most 80 bytes, the unprintable as \xNN. */
static void quote(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 80 && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        o += (size_t)(c >= ' ' && c < 0x7f && c != '\\' ? snprintf(out + o, cap - o, "%c", c)
                                                        : snprintf(out + o, cap - o, "\\x%02x", c));
    }
    if (n > 80 && o + 4 < cap)
        o += (size_t)snprintf(out + o, cap - o, "...");
    out[o] = '\0';
}

static void progress_line(struct mp_warm_client *cl, char *out, size_t cap)
{
    const struct mp_warm_status *st = &cl->w->status;
    snprintf(out, cap, "%llu items copied (%.1f MB) of %llu keys listed, %llu skipped",
             (unsigned long long)atomic_load(&st->copied), (double)atomic_load(&st->bytes) / 1e6,
             (unsigned long long)atomic_load(&st->listed), (unsigned long long)mp_warm_skipped(st));
}

/* "; skipped: 3 present here, 2 gone from the peer" or nothing. */
static void skipped_line(const struct mp_warm_status *st, char *out, size_t cap)
{
    const struct {
        uint64_t n;
        const char *why;
    } why[] = {{atomic_load(&st->present), "stored here first"},
               {atomic_load(&st->missing), "gone from the peer"},
               {atomic_load(&st->too_large), "over -I"},
               {atomic_load(&st->no_room), "without room under -m"},
               {atomic_load(&st->bad_key), "keys that cannot be asked for"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++)
        if (why[i].n && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%llu %s", n ? ", " : "; skipped: ", (unsigned long long)why[i].n,
                                  why[i].why);
}

static void close_conn(struct wconn *c);
static void store_batch(struct mp_warm_client *cl);

/* The end, whichever it is: what is complete is stored, everything is closed, the loop ends. */
static void finish(struct mp_warm_client *cl, enum mp_warm_state state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct mp_warm_client *cl, enum mp_warm_state state, const char *fmt, ...)
{
    if (cl->finished)
        return;
    cl->finished = true;
    store_batch(cl);
    if (cl->v.it)
        mp_cache_item_release(cl->cache, &cl->v.it);
    struct mp_warm_status *st = &cl->w->status;
    atomic_store_explicit(&st->end_us, mono_us(), memory_order_relaxed);
    char why[400], done[200], skipped[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    progress_line(cl, done, sizeof(done));
    skipped_line(st, skipped, sizeof(skipped));
    double secs = mp_warm_seconds(st);
    if (state == MP_WARM_DONE)
        note(cl, false, "done in %.2f s (%s): %s, %.0f a second%s", secs, why, done,
             secs > 0 ? (double)atomic_load(&st->copied) / secs : 0.0, skipped);
    else
        note(cl, state == MP_WARM_FAILED, "%s after %.2f s: %s; %s%s; the server goes on serving",
             state == MP_WARM_FAILED ? "failed" : "stopped", secs, why, done, skipped);
    set_state(cl, state); /* after the line: whoever sees the state finds the line logged */
    close_conn(&cl->dump);
    close_conn(&cl->get);
    uv_close((uv_handle_t *)&cl->tick, NULL);
    uv_close((uv_handle_t *)&cl->pace, NULL);
    if (cl->resolving)
        uv_cancel((uv_req_t *)&cl->gai);
    pthread_mutex_lock(&cl->lock);
    cl->stop_closed = true;
    uv_close((uv_handle_t *)&cl->stop, NULL);
    pthread_mutex_unlock(&cl->lock);
}

/* ---- storing --------------------------------------------------------------------------------- */

static void store_batch(struct mp_warm_client *cl)
{
    if (cl->nbatch == 0)
        return;
    struct mp_warm_status *st = &cl->w->status;
    mp_cache_store_warm_batch(cl->cache, cl->batch, cl->nbatch, mp_clock_now(cl->o.clock));
    for (size_t i = 0; i < cl->nbatch; i++) {
        if (cl->batch[i].res == MP_STORED) {
            bump(&st->copied, 1);
            bump(&st->bytes, cl->batch_bytes[i]);
        } else if (cl->batch[i].res == MP_NOT_STORED) {
            bump(&st->present, 1);
        } else {
            bump(&st->no_room, 1); /* the key's chain is at its bound (table.h) */
        }
    }
    cl->nbatch = 0;
}

/* The head of the flight is answered. */
static void pop_flight(struct mp_warm_client *cl)
{
    struct flight *f = &cl->fl[cl->fhead];
    if (!f->giveback)
        cl->fbytes -= f->k.size;
    cl->fhead = (cl->fhead + 1) % FLIGHT;
    cl->fcount--;
    cl->got_value = false;
    cl->get.since_ms = uv_now(&cl->loop);
}

/* A value's head has arrived: an item to read it into, or nothing (it is read and dropped). */
static void start_value(struct mp_warm_client *cl, const struct flight *f, const struct mp_warm_head *h)
{
    struct mp_warm_status *st = &cl->w->status;
    uint32_t now = mp_clock_now(cl->o.clock);
    int64_t wall = (int64_t)mp_clock_wall(cl->o.clock, now);
    int64_t ttl = cl->meta ? h->ttl : f->k.exp < 0 ? -1 : f->k.exp - wall;
    memset(&cl->v, 0, sizeof(cl->v));
    cl->v.active = true;
    cl->v.left = h->nbytes;
    cl->v.stale = h->stale;
    cl->v.won = h->won;
    cl->v.cas = h->cas;
    if (ttl != -1 && ttl <= 0) {
        cl->v.expired = true; /* it expires as it is copied */
        return;
    }
    uint32_t exptime = ttl == -1 ? 0 : (uint64_t)now + (uint64_t)ttl > UINT32_MAX ? UINT32_MAX : now + (uint32_t)ttl;
    bool fetched = cl->meta ? h->fetched : f->k.fetched;
    cl->v.clock = fetched ? 0x80 : 0; /* mp_item_clock_byte: FETCHED */
    cl->v.idle = cl->meta ? h->idle : f->k.la >= 0 && f->k.la < wall ? (uint32_t)(wall - f->k.la) : 0;
    if (cl->full) { /* what is still in flight is read and dropped */
        bump(&st->no_room, 1);
        return;
    }
    enum mp_result res;
    cl->v.it = mp_cache_alloc_spare(cl->cache, f->k.key, f->k.nkey, h->flags, exptime, h->nbytes, &res);
    if (!cl->v.it) {
        bump(res == MP_TOO_LARGE ? &st->too_large : &st->no_room, 1);
        if (res != MP_TOO_LARGE && !cl->full) {
            cl->full = true;
            note(cl, false, "memory (-m) is full: asking for no more keys");
        }
        return;
    }
}

static void queue_giveback(struct mp_warm_client *cl, const struct flight *f, uint64_t cas)
{
    cl->gb[cl->gcount++] = (struct flight){.k = f->k, .giveback = true, .cas = cas};
}

/* A value is in: into the batch, or counted as dropped. */
static void end_value(struct mp_warm_client *cl)
{
    struct flight *f = &cl->fl[cl->fhead];
    struct mp_item *it = cl->v.it;
    cl->v.active = false;
    cl->v.it = NULL;
    if (it) {
        if (f->k.binary)
            mp_item_set(it, MP_ITEM_KEY_BINARY, true);
        if (cl->v.stale)
            mp_item_set(it, MP_ITEM_STALE, true);
        cl->batch[cl->nbatch] = (struct mp_cache_warm){.it = it, .cas = 0, .clock = cl->v.clock, .idle = cl->v.idle};
        cl->batch_bytes[cl->nbatch++] = f->k.nkey + (uint64_t)it->nbytes;
        if (cl->nbatch == MP_CACHE_WARM_BATCH)
            store_batch(cl);
    } else if (cl->v.expired) {
        bump(&cl->w->status.missing, 1);
    }
    if (cl->v.won)
        queue_giveback(cl, f, cl->v.cas);
    if (cl->meta)
        pop_flight(cl);
    else
        cl->got_value = true; /* END follows */
}

/* ---- asking ---------------------------------------------------------------------------------- */

static void on_pace(uv_timer_t *t);
static void pump(struct mp_warm_client *cl);
static void parse_listing(struct mp_warm_client *cl);

static void on_get_written(uv_write_t *req, int status)
{
    struct wconn *c = req->data;
    c->writing = false;
    if (status < 0) {
        if (status != UV_ECANCELED)
            finish(c->cl, MP_WARM_FAILED, "cannot write to the peer (%s): %s", c->name, uv_strerror(status));
        return;
    }
    pump(c->cl);
}

static void refill(struct mp_warm_client *cl)
{
    uint64_t now = uv_hrtime();
    double rate = cl->o.rate, burst = rate / 20 > 1 ? rate / 20 : 1; /* at most 50 ms of keys at once */
    cl->tokens += (double)(now - cl->tokens_at_ns) * rate / 1e9;
    if (cl->tokens > burst)
        cl->tokens = burst;
    cl->tokens_at_ns = now;
}

/* A key this cache already holds alive is not asked for: it would not be stored (cache.h), and the
 * peer is spared the get (a restart with -e that tops up from a peer asks only for what is new). A
 * look under the stripe lock, which records no hit. */
static bool held_here(struct mp_warm_client *cl, const struct mp_warm_key *k)
{
    struct mp_cache_lock lk;
    mp_cache_lock_key(cl->cache, k->key, k->nkey, &lk);
    bool held = mp_cache_find_locked(cl->cache, &lk, k->key, k->nkey, mp_clock_now(cl->o.clock), NULL) != NULL;
    mp_cache_unlock(&lk);
    return held;
}

static bool may_ask(struct mp_warm_client *cl)
{
    return !cl->full && cl->kcount > 0 && cl->fcount + cl->gcount < WINDOW &&
           (cl->fbytes < WINDOW_BYTES || cl->fcount == 0) && (cl->o.rate == 0 || cl->tokens >= 1);
}

static struct flight *push_flight(struct mp_warm_client *cl)
{
    struct flight *f = &cl->fl[(cl->fhead + cl->fcount++) % FLIGHT];
    f->opaque = cl->next_opaque++;
    return f;
}

static void check_done(struct mp_warm_client *cl)
{
    if (cl->finished || cl->fcount || cl->gcount || cl->v.active)
        return;
    if (cl->full) {
        /* keys listed and never asked for: there is no room for them */
        bump(&cl->w->status.no_room, cl->kcount);
        cl->kcount = 0;
        finish(cl, MP_WARM_DONE, "memory is full");
    } else if (cl->dump_ended && cl->kcount == 0) {
        finish(cl, MP_WARM_DONE, "the listing ended");
    }
}

/* Send what may be sent now: tokens handed back, then gets as the window and the rate allow. */
static void pump(struct mp_warm_client *cl)
{
    if (cl->finished)
        return;
    if (cl->meta >= 0 && cl->get.connected && !cl->get.writing) {
        if (cl->o.rate)
            refill(cl);
        size_t before = cl->fcount, n = 0;
        while (cl->gcount > 0) {
            struct flight *f = push_flight(cl);
            uint32_t opaque = f->opaque;
            *f = cl->gb[--cl->gcount];
            f->opaque = opaque;
            n += mp_warm_format_giveback(cl->get.wbuf + n, &f->k, f->cas, f->opaque);
        }
        while (may_ask(cl)) {
            const struct mp_warm_key *k = &cl->keys[cl->khead];
            cl->khead = (cl->khead + 1) % QUEUE_KEYS;
            cl->kcount--;
            if (!cl->meta && k->binary) { /* a plain get cannot name it */
                bump(&cl->w->status.bad_key, 1);
                continue;
            }
            if (held_here(cl, k)) {
                bump(&cl->w->status.present, 1);
                continue;
            }
            struct flight *f = push_flight(cl);
            f->k = *k;
            f->giveback = false;
            cl->fbytes += f->k.size;
            cl->tokens -= 1;
            n += mp_warm_format_get(cl->get.wbuf + n, &f->k, cl->meta, f->opaque);
        }
        if (n) {
            if (before == 0)
                cl->get.since_ms = uv_now(&cl->loop);
            uv_buf_t b = uv_buf_init(cl->get.wbuf, (unsigned)n);
            cl->get.writing = true;
            int rc = uv_write(&cl->get.wreq, (uv_stream_t *)&cl->get.tcp, &b, 1, on_get_written);
            if (rc != 0) {
                cl->get.writing = false;
                finish(cl, MP_WARM_FAILED, "cannot write to the peer (values): %s", uv_strerror(rc));
                return;
            }
        }
        if (!cl->full && cl->kcount && cl->o.rate && cl->tokens < 1 && !uv_is_active((uv_handle_t *)&cl->pace)) {
            uint64_t ms = (uint64_t)((1 - cl->tokens) * 1000 / cl->o.rate) + 1;
            uv_timer_start(&cl->pace, on_pace, ms, 0);
        }
    }
    if (cl->dump_paused && cl->kcount <= QUEUE_KEYS / 2)
        parse_listing(cl);
    check_done(cl);
}

static void on_pace(uv_timer_t *t)
{
    pump(t->data);
}

/* ---- reading the values ---------------------------------------------------------------------- */

static bool opaque_ok(struct mp_warm_client *cl, const struct mp_warm_head *h, const char *line, size_t n)
{
    if (h->has_opaque && h->opaque == cl->fl[cl->fhead].opaque)
        return true;
    char q[400];
    quote(line, n, q, sizeof(q));
    finish(cl, MP_WARM_FAILED, "an answer out of order or without its request's number: \"%s\"", q);
    return false;
}

static void garbage(struct mp_warm_client *cl, const char *what, const char *line, size_t n)
{
    char q[400];
    quote(line, n, q, sizeof(q));
    finish(cl, MP_WARM_FAILED, "%s: \"%s\"", what, q);
}

static void version_line(struct mp_warm_client *cl, const char *line, size_t n)
{
    int meta = mp_warm_parse_version(line, n);
    if (meta < 0) {
        garbage(cl, "the peer's answer to version is not a version", line, n);
        return;
    }
    cl->meta = meta;
    char q[400];
    quote(line + 8, n - 8, q, sizeof(q));
    note(cl, false, "the peer is version %s: %s", q,
         meta ? "copying with meta gets (mg)" : "copying with get, times to live from its listing");
    if (cl->dump.connected)
        set_state(cl, MP_WARM_COPYING);
}

/* One reply line from the values' connection, without its "\r\n". */
static void reply_line(struct mp_warm_client *cl, const char *line, size_t n)
{
    if (cl->meta < 0) {
        version_line(cl, line, n);
        return;
    }
    if (cl->fcount == 0) {
        garbage(cl, "an answer to no request", line, n);
        return;
    }
    struct flight *f = &cl->fl[cl->fhead];
    struct mp_warm_head h;
    char q[400];
    switch (mp_warm_parse_reply(line, n, cl->meta, &h)) {
    case MP_WARM_VALUE:
        if (f->giveback || cl->got_value || (cl->meta && !opaque_ok(cl, &h, line, n)) ||
            (!cl->meta && (h.nkey != f->k.nkey || memcmp(h.key, f->k.key, h.nkey) != 0))) {
            if (!cl->finished)
                garbage(cl, "a value that was not asked for", line, n);
            return;
        }
        start_value(cl, f, &h);
        return;
    case MP_WARM_MISS:
        if (f->giveback)
            garbage(cl, "a miss for a request that was no get", line, n);
        else if (opaque_ok(cl, &h, line, n)) {
            bump(&cl->w->status.missing, 1);
            pop_flight(cl);
        }
        return;
    case MP_WARM_END:
        if (!cl->got_value)
            bump(&cl->w->status.missing, 1);
        pop_flight(cl);
        return;
    case MP_WARM_HD:
    case MP_WARM_EX:
    case MP_WARM_NF:
        if (!f->giveback)
            garbage(cl, "an answer to a delete that was not sent", line, n);
        else if (opaque_ok(cl, &h, line, n))
            pop_flight(cl);
        return;
    case MP_WARM_SERVER_ERROR:
        bump(&cl->w->status.missing, !f->giveback);
        pop_flight(cl);
        return;
    case MP_WARM_CLIENT_ERROR:
        if (!cl->noted_client_error) {
            quote(line, n, q, sizeof(q));
            note(cl, false, "the peer refused the request for a key (skipped, as any other it refuses): \"%s\"", q);
            cl->noted_client_error = true;
        }
        bump(&cl->w->status.bad_key, !f->giveback);
        pop_flight(cl);
        return;
    case MP_WARM_ERROR: garbage(cl, "the peer does not know the command", line, n); return;
    case MP_WARM_BAD: garbage(cl, "the peer sent garbage", line, n); return;
    }
}

static void parse_replies(struct mp_warm_client *cl)
{
    struct wconn *c = &cl->get;
    size_t pos = 0;
    while (!cl->finished) {
        size_t avail = c->rlen - pos;
        if (cl->v.active) {
            size_t take = avail < cl->v.left ? avail : cl->v.left;
            if (cl->v.it) /* a span at a time: it may be a chain (chain.h) */
                mp_chain_write(&cl->cache->slabs, cl->v.it, cl->v.it->nbytes - cl->v.left, c->rbuf + pos, take);
            cl->v.left -= (uint32_t)take;
            pos += take;
            if (cl->v.left || c->rlen - pos < 2)
                break;
            if (c->rbuf[pos] != '\r' || c->rbuf[pos + 1] != '\n') {
                garbage(cl, "a value not followed by \\r\\n", c->rbuf + pos, c->rlen - pos);
                break;
            }
            pos += 2;
            end_value(cl);
            continue;
        }
        const char *nl = memchr(c->rbuf + pos, '\n', avail);
        if (!nl) {
            if (avail > LINE_MAX_BYTES)
                garbage(cl, "a line too long", c->rbuf + pos, avail);
            break;
        }
        size_t n = (size_t)(nl - (c->rbuf + pos));
        if (n == 0 || nl[-1] != '\r') {
            garbage(cl, "a line not ended by \\r\\n", c->rbuf + pos, n);
            break;
        }
        reply_line(cl, c->rbuf + pos, n - 1);
        pos += n + 1;
    }
    if (cl->finished)
        return;
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
}

/* ---- reading the listing --------------------------------------------------------------------- */

static void on_dump_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void push_key(struct mp_warm_client *cl, const struct mp_warm_key *k)
{
    cl->keys[(cl->khead + cl->kcount++) % QUEUE_KEYS] = *k;
}

/* BUSY: memcached's crawler serves another request (its own background crawl, or an operator's
 * listing); the listing is asked for again in a moment. */
static void busy(struct mp_warm_client *cl, const char *line, size_t n)
{
    if (atomic_load(&cl->w->status.listed) > 0 || ++cl->busy_tries > BUSY_TRIES) {
        garbage(cl, "the peer's crawler stays busy", line, n);
        return;
    }
    cl->dump.reopen = true;
    cl->retry_at_ms = uv_now(&cl->loop) + BUSY_RETRY_MS;
    close_conn(&cl->dump);
}

/* The listing's lines in the buffer, into the queue while it has room. */
static void parse_listing(struct mp_warm_client *cl)
{
    struct wconn *c = &cl->dump;
    struct mp_warm_status *st = &cl->w->status;
    size_t pos = 0;
    bool more = true;
    while (more && !cl->finished && !cl->dump_ended && !cl->full && cl->kcount < QUEUE_KEYS) {
        const char *nl = memchr(c->rbuf + pos, '\n', c->rlen - pos);
        if (!nl) {
            if (c->rlen - pos > LINE_MAX_BYTES)
                garbage(cl, "a listing line too long", c->rbuf + pos, c->rlen - pos);
            break;
        }
        const char *line = c->rbuf + pos;
        size_t n = (size_t)(nl - line);
        pos += n + 1;
        struct mp_warm_key k;
        enum mp_warm_line kind = mp_warm_parse_dump_line(line, n, &k);
        if (n && line[n - 1] == '\r')
            n--; /* as a log line shows it */
        switch (kind) {
        case MP_WARM_LINE_KEY:
            bump(&st->listed, 1);
            push_key(cl, &k);
            break;
        case MP_WARM_LINE_LONG:
            bump(&st->listed, 1);
            bump(&st->bad_key, 1);
            break;
        case MP_WARM_LINE_END:
            cl->dump_ended = true;
            close_conn(c);
            more = false;
            break;
        case MP_WARM_LINE_BUSY: busy(cl, line, n); return;
        case MP_WARM_LINE_REFUSED:
            garbage(cl, "the peer refused the listing (lru_crawler metadump all)", line, n);
            return;
        case MP_WARM_LINE_BAD: garbage(cl, "the peer's listing holds garbage", line, n); return;
        }
    }
    if (cl->finished || !c->open)
        return;
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    bool wait = cl->kcount >= QUEUE_KEYS || cl->full;
    if (wait && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        cl->dump_paused = true;
    } else if (!wait && !c->reading && c->connected) {
        cl->dump_paused = false;
        c->reading = true;
        c->since_ms = uv_now(&cl->loop);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_dump_read);
    }
}

/* ---- connections ----------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct wconn *c = h->data;
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

/* A read's common part: false when the connection ended (the copy is then over, or retrying). */
static bool read_ok(struct wconn *c, ssize_t nread)
{
    struct mp_warm_client *cl = c->cl;
    if (nread == UV_ENOBUFS) /* a line longer than the buffer: parse_* says so */
        return true;
    if (nread < 0) {
        if (c == &cl->dump && cl->dump_ended)
            return false;
        finish(cl, MP_WARM_FAILED, "the peer %s the connection (%s)%s", nread == UV_EOF ? "closed" : "broke", c->name,
               c == &cl->dump ? " before the listing's END"
               : cl->fcount   ? " with requests unanswered"
                              : "");
        return false;
    }
    c->rlen += (size_t)nread;
    if (nread > 0)
        c->since_ms = uv_now(&cl->loop);
    return true;
}

static void on_dump_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct wconn *c = s->data;
    if (read_ok(c, nread)) {
        parse_listing(c->cl);
        pump(c->cl);
    }
}

static void on_get_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct wconn *c = s->data;
    struct mp_warm_client *cl = c->cl;
    if (!read_ok(c, nread))
        return;
    parse_replies(cl);
    store_batch(cl);
    pump(cl);
}

static void on_written(uv_write_t *req, int status)
{
    struct wconn *c = req->data;
    c->writing = false;
    if (status < 0 && status != UV_ECANCELED)
        finish(c->cl, MP_WARM_FAILED, "cannot write to the peer (%s): %s", c->name, uv_strerror(status));
}

static void open_conn(struct wconn *c);

static void on_closed(uv_handle_t *h)
{
    struct wconn *c = h->data;
    struct mp_warm_client *cl = c->cl;
    if (cl->finished || !c->reopen)
        return;
    c->reopen = false;
    if (c == &cl->dump && cl->retry_at_ms > uv_now(&cl->loop))
        return; /* the tick opens it when it is time */
    open_conn(c);
}

static void close_conn(struct wconn *c)
{
    if (!c->open)
        return;
    c->open = c->connected = c->reading = false;
    c->rlen = 0;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct wconn *c = req->data;
    struct mp_warm_client *cl = c->cl;
    if (status == UV_ECANCELED || cl->finished)
        return;
    if (status < 0) {
        if (c == &cl->get && cl->addr->ai_next) { /* the next of the name's addresses */
            cl->addr = cl->addr->ai_next;
            c->reopen = true;
            close_conn(c);
            return;
        }
        finish(cl, MP_WARM_FAILED, "cannot connect (%s): %s", c->name, uv_strerror(status));
        return;
    }
    c->connected = true;
    c->since_ms = uv_now(&cl->loop);
    uv_tcp_nodelay(&c->tcp, 1);
    const char *ask = c == &cl->get ? VERSION_REQUEST : DUMP_REQUEST;
    uv_buf_t b = uv_buf_init((char *)ask, (unsigned)strlen(ask));
    c->writing = true;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc == 0) {
        c->reading = true;
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, c == &cl->get ? on_get_read : on_dump_read);
    }
    if (rc != 0) {
        finish(cl, MP_WARM_FAILED, "cannot talk to the peer (%s): %s", c->name, uv_strerror(rc));
        return;
    }
    if (c == &cl->get && !cl->dump.open)
        open_conn(&cl->dump); /* at the address that answered */
    if (c == &cl->dump && cl->meta >= 0)
        set_state(cl, MP_WARM_COPYING);
}

static void open_conn(struct wconn *c)
{
    struct mp_warm_client *cl = c->cl;
    uv_tcp_init(&cl->loop, &c->tcp);
    c->tcp.data = c;
    c->open = true;
    c->connected = c->writing = c->reading = false;
    c->rlen = 0;
    c->since_ms = uv_now(&cl->loop);
    c->creq.data = c;
    c->wreq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, cl->addr->ai_addr, on_connected);
    if (rc != 0)
        finish(cl, MP_WARM_FAILED, "cannot connect (%s): %s", c->name, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct mp_warm_client *cl = req->data;
    cl->resolving = false;
    cl->addrs = res;
    if (cl->finished)
        return;
    if (status < 0 || !res) {
        finish(cl, MP_WARM_FAILED, "cannot resolve %s: %s", cl->host, uv_strerror(status));
        return;
    }
    cl->addr = res;
    open_conn(&cl->get);
}

/* Deadlines, the listing's retry and the progress line. */
static void on_tick(uv_timer_t *t)
{
    struct mp_warm_client *cl = t->data;
    uint64_t now = uv_now(&cl->loop);
    double secs = cl->timeout_ms / 1000.0;
    struct wconn *conns[] = {&cl->get, &cl->dump};
    for (int i = 0; i < 2 && !cl->finished; i++) {
        struct wconn *c = conns[i];
        if (!c->open || now - c->since_ms <= cl->timeout_ms)
            continue;
        if (!c->connected)
            finish(cl, MP_WARM_FAILED, "cannot connect (%s) within %.0f s", c->name, secs);
        else if (c == &cl->get && (cl->meta < 0 || cl->fcount > 0))
            finish(cl, MP_WARM_FAILED, "no answer from the peer for %.0f s (values)", secs);
        else if (c == &cl->dump && c->reading)
            finish(cl, MP_WARM_FAILED, "no listing from the peer for %.0f s", secs);
    }
    if (cl->finished)
        return;
    if (cl->resolving && now - cl->started_ms > cl->timeout_ms) {
        finish(cl, MP_WARM_FAILED, "cannot resolve %s within %.0f s", cl->host, secs);
        return;
    }
    if (cl->retry_at_ms && now >= cl->retry_at_ms && !cl->dump.open && !cl->dump.reopen && !cl->dump_ended) {
        cl->retry_at_ms = 0;
        open_conn(&cl->dump);
    }
    if (!cl->resolving && now - cl->last_progress_ms >= PROGRESS_MS) {
        char line[200];
        progress_line(cl, line, sizeof(line));
        note(cl, false, "%s so far, in %.1f s", line, mp_warm_seconds(&cl->w->status));
        cl->last_progress_ms = now;
    }
}

static void on_stop(uv_async_t *a)
{
    finish(a->data, MP_WARM_STOPPED, "the server is stopping");
}

static void *warm_main(void *arg)
{
    struct mp_warm_client *cl = arg;
    /* Below the workers, as the snapshot thread: the copy takes the CPU they leave. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5);
    uv_run(&cl->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void client_free(struct mp_warm_client *cl)
{
    if (cl->loop_ready)
        uv_loop_close(&cl->loop);
    if (cl->addrs)
        uv_freeaddrinfo(cl->addrs);
    free(cl->keys);
    free(cl->fl);
    free(cl->dump.rbuf);
    free(cl->get.rbuf);
    free(cl->get.wbuf);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

/* Everything but the thread: buffers, the loop and its handles, the name lookup under way. */
static int client_setup(struct mp_warm_client *cl, struct mp_warm *w, struct mp_cache *c, const struct mp_warm_opts *o)
{
    cl->w = w;
    cl->cache = c;
    cl->o = *o;
    cl->meta = -1;
    cl->timeout_ms = (o->timeout ? o->timeout : MP_WARM_TIMEOUT_DEFAULT) * 1000u;
    pthread_mutex_init(&cl->lock, NULL);
    cl->dump = (struct wconn){.cl = cl, .name = "listing", .rcap = DUMP_BUF};
    cl->get = (struct wconn){.cl = cl, .name = "values", .rcap = GET_BUF};
    if (mp_warm_split_peer(o->peer, cl->host, sizeof(cl->host), &cl->port) != 0)
        return -EINVAL;
    cl->keys = malloc(QUEUE_KEYS * sizeof(*cl->keys));
    cl->fl = malloc(FLIGHT * sizeof(*cl->fl));
    cl->dump.rbuf = malloc(DUMP_BUF);
    cl->get.rbuf = malloc(GET_BUF);
    cl->get.wbuf = malloc(FLIGHT * MP_WARM_REQUEST_MAX);
    if (!cl->keys || !cl->fl || !cl->dump.rbuf || !cl->get.rbuf || !cl->get.wbuf)
        return -ENOMEM;
    if (uv_loop_init(&cl->loop) != 0)
        return -ENOMEM;
    cl->loop_ready = true;
    uv_async_init(&cl->loop, &cl->stop, on_stop);
    uv_timer_init(&cl->loop, &cl->tick);
    uv_timer_init(&cl->loop, &cl->pace);
    cl->stop.data = cl->tick.data = cl->pace.data = cl->gai.data = cl;
    cl->tokens_at_ns = uv_hrtime();
    cl->tokens = 1;
    cl->started_ms = cl->last_progress_ms = uv_now(&cl->loop);
    uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
    note(cl, false, "copying its items, at most %u keys a second%s", o->rate, o->rate ? "" : " (no bound)");
    char port[8];
    snprintf(port, sizeof(port), "%u", cl->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    cl->resolving = true;
    int rc = uv_getaddrinfo(&cl->loop, &cl->gai, on_resolved, cl->host, port, &hints);
    if (rc != 0) {
        cl->resolving = false;
        finish(cl, MP_WARM_FAILED, "cannot resolve %s: %s", cl->host, uv_strerror(rc));
    }
    return 0;
}

int mp_warm_start(struct mp_warm *w, struct mp_cache *c, const struct mp_warm_opts *o)
{
    memset(w, 0, sizeof(*w));
    atomic_store(&w->status.start_us, mono_us());
    atomic_store(&w->status.state, MP_WARM_CONNECTING);
    struct mp_warm_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        atomic_store(&w->status.end_us, mono_us());
        atomic_store(&w->status.state, MP_WARM_FAILED);
        return -ENOMEM;
    }
    int rc = client_setup(cl, w, c, o);
    if (rc == 0) {
        rc = -pthread_create(&w->thread, NULL, warm_main, cl);
        if (rc != 0) {
            finish(cl, MP_WARM_FAILED, "cannot start its thread");
            uv_run(&cl->loop, UV_RUN_DEFAULT); /* the handles' closes */
        }
    }
    if (rc != 0) {
        atomic_store(&w->status.end_us, mono_us());
        atomic_store(&w->status.state, MP_WARM_FAILED);
        client_free(cl);
        return rc;
    }
    w->client = cl;
    return 0;
}

void mp_warm_stop(struct mp_warm *w)
{
    struct mp_warm_client *cl = w->client;
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    if (!cl->stop_closed)
        uv_async_send(&cl->stop);
    pthread_mutex_unlock(&cl->lock);
    pthread_join(w->thread, NULL);
    client_free(cl);
    w->client = NULL;
}

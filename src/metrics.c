/* metrics: see include/magpie/metrics.h */
#include "magpie/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/clock.h"
#include "magpie/log.h"
#include "magpie/prom.h"

/* ---- the request ------------------------------------------------------------------------------ */

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The request line: "METHOD TARGET HTTP/1.x". */
static int request_line(const char *p, size_t n, bool *head)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return MP_METRICS_BAD_REQUEST;
    const char *target = sp1 + 1, *end = p + n;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2 || sp2 == target || memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1)))
        return MP_METRICS_BAD_REQUEST;
    for (const char *q = p; q < sp1; q++)
        if (!is_tchar(*q))
            return MP_METRICS_BAD_REQUEST;
    for (const char *q = target; q < sp2; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return MP_METRICS_BAD_REQUEST;
    const char *version = sp2 + 1;
    size_t nversion = (size_t)(end - version);
    if (nversion != 8 || memcmp(version, "HTTP/", 5) != 0 || version[5] < '0' || version[5] > '9' ||
        version[6] != '.' || version[7] < '0' || version[7] > '9')
        return MP_METRICS_BAD_REQUEST;
    if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
        return MP_METRICS_BAD_VERSION;
    const char *query = memchr(target, '?', (size_t)(sp2 - target));
    size_t npath = (size_t)((query ? query : sp2) - target);
    if (npath != 8 || memcmp(target, "/metrics", 8) != 0)
        return MP_METRICS_NOT_FOUND;
    size_t nmethod = (size_t)(sp1 - p);
    *head = nmethod == 4 && memcmp(p, "HEAD", 4) == 0;
    if (!*head && !(nmethod == 3 && memcmp(p, "GET", 3) == 0))
        return MP_METRICS_BAD_METHOD;
    return MP_METRICS_OK;
}

/* A header line: "Name: value", the name a token, the value without control characters. */
static bool header_line(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return false;
    for (const char *q = p; q < colon; q++)
        if (!is_tchar(*q))
            return false;
    for (const char *q = colon + 1; q < p + n; q++)
        if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f)
            return false;
    return true;
}

int mp_metrics_parse_request(const char *buf, size_t len, bool *head)
{
    *head = false;
    if (len > MP_METRICS_HEAD_MAX)
        len = MP_METRICS_HEAD_MAX;
    int status = MP_METRICS_NEED_MORE;
    for (size_t pos = 0, line = 0; pos < len; line++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (buf + pos));
        if (n > 0 && buf[pos + n - 1] == '\r')
            n--;
        if (memchr(buf + pos, '\0', n) || memchr(buf + pos, '\r', n))
            return MP_METRICS_BAD_REQUEST;
        if (line == 0)
            status = request_line(buf + pos, n, head);
        else if (n == 0)
            return status; /* the blank line: the head is complete */
        else if (buf[pos] == ' ' || buf[pos] == '\t' || !header_line(buf + pos, n))
            return MP_METRICS_BAD_REQUEST; /* folded or malformed header */
        pos = (size_t)(nl + 1 - buf);
    }
    return len == MP_METRICS_HEAD_MAX ? MP_METRICS_TOO_LARGE : MP_METRICS_NEED_MORE;
}

/* ---- the page --------------------------------------------------------------------------------- */

struct collect_ctx {
    struct mp_prom_stats *s;
    enum mp_prom_report report;
};

static void collect_emit(void *ctx, const char *name, const char *fmt, ...)
{
    struct collect_ctx *c = ctx;
    char value[MP_PROM_VALUE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    mp_prom_stats_add(c->s, c->report, name, value);
}

/* Run the four reports into the set. */
static void collect(struct mp_prom_stats *s, const struct mp_stats_source *src)
{
    static const char *const args[MP_PROM_NREPORTS] = {"", "settings", "items", "slabs"};
    for (int r = 0; r < MP_PROM_NREPORTS; r++) {
        struct collect_ctx c = {s, (enum mp_prom_report)r};
        mp_stats_report(src, args[r], strlen(args[r]), collect_emit, &c);
    }
}

int mp_metrics_page(const struct mp_metrics_source *src, char **out, size_t *len)
{
    struct mp_prom_stats set;
    struct mp_prom_buf b = {0};
    mp_prom_stats_init(&set);
    collect(&set, &src->stats);
    struct mp_latency_sum *lat = NULL;
    struct mp_hotkey *keys = NULL;
    struct mp_prom_extra extra = {0};
    if (src->latency && (lat = malloc(sizeof(*lat))) != NULL) {
        mp_latency_sum(src->latency, lat);
        extra.latency = lat;
    }
    if (src->hotkeys_k && src->stats.hotkeys && (keys = malloc(src->hotkeys_k * sizeof(*keys))) != NULL) {
        extra.nhotkeys = mp_hotkeys_top(src->stats.hotkeys, mp_clock_now(src->stats.clock), keys, src->hotkeys_k);
        extra.hotkeys = keys;
    }
    int rc = mp_prom_render(&set, &extra, &b);
    free(lat);
    free(keys);
    mp_prom_stats_deinit(&set);
    if (rc != 0) {
        mp_prom_buf_free(&b);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- connections ------------------------------------------------------------------------------ */

enum conn_state { READING, WRITING, LINGERING };

struct mp_metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct mp_metrics *m;
    struct mp_metrics_conn *prev, *next;
    enum conn_state state;
    int open_handles; /* freed when both handles have closed */
    bool closing;
    bool peer_done; /* the client's end of the stream has come */
    size_t len;
    char *body;
    char header[256];
    char buf[MP_METRICS_HEAD_MAX];
};

static void unlink_conn(struct mp_metrics_conn *c)
{
    struct mp_metrics *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        m->tail = c->prev;
    m->nconns--;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct mp_metrics_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    unlink_conn(c);
    free(c->body);
    free(c);
}

static void close_conn(struct mp_metrics_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->deadline, on_conn_closed);
}

static void on_deadline(uv_timer_t *t)
{
    close_conn(t->data);
}

static const char *reason(int status)
{
    switch (status) {
    case MP_METRICS_OK: return "OK";
    case MP_METRICS_BAD_REQUEST: return "Bad Request";
    case MP_METRICS_NOT_FOUND: return "Not Found";
    case MP_METRICS_BAD_METHOD: return "Method Not Allowed";
    case MP_METRICS_TOO_LARGE: return "Request Header Fields Too Large";
    case MP_METRICS_BAD_VERSION: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct mp_metrics_conn *c = req->data;
    if (status < 0 || c->closing || c->peer_done) {
        close_conn(c);
        return;
    }
    /* FIN sent: wait a moment for the client's, discarding anything it still sends */
    c->state = LINGERING;
    uv_timer_start(&c->deadline, on_deadline, MP_METRICS_LINGER_MS, 0);
}

static void on_written(uv_write_t *req, int status)
{
    struct mp_metrics_conn *c = req->data;
    free(c->body);
    c->body = NULL;
    if (status < 0 || c->closing) {
        close_conn(c);
        return;
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        close_conn(c);
}

/* A copy of the page to answer with: the last one rendered if it is recent enough (metrics.h). */
static int page_for(struct mp_metrics *m, char **out, size_t *len)
{
    uint64_t now = uv_now(m->loop);
    if (!m->page || now - m->page_at >= MP_METRICS_REUSE_MS) {
        char *page;
        size_t n;
        if (mp_metrics_page(&m->src, &page, &n) != 0)
            return -1;
        free(m->page);
        m->page = page;
        m->page_len = n;
        m->page_at = now;
    }
    char *copy = malloc(m->page_len + 1);
    if (!copy)
        return -1;
    memcpy(copy, m->page, m->page_len + 1);
    *out = copy;
    *len = m->page_len;
    return 0;
}

static void respond(struct mp_metrics_conn *c, int status, bool head)
{
    char *body = NULL;
    size_t nbody = 0;
    if (status == MP_METRICS_OK && page_for(c->m, &body, &nbody) != 0)
        status = 500;
    if (status != MP_METRICS_OK) {
        char text[64];
        nbody = (size_t)snprintf(text, sizeof(text), "%d %s\n", status, reason(status));
        body = malloc(nbody + 1);
        if (body)
            memcpy(body, text, nbody + 1);
        else
            nbody = 0;
    }
    int n = snprintf(c->header, sizeof(c->header),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
                     reason(status),
                     status == MP_METRICS_OK ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
                     nbody, status == MP_METRICS_BAD_METHOD ? "Allow: GET, HEAD\r\n" : "");
    c->body = body;
    uv_buf_t bufs[2] = {uv_buf_init(c->header, (unsigned)n), uv_buf_init(body, (unsigned)nbody)};
    c->state = WRITING;
    c->wreq.data = c;
    uv_timer_start(&c->deadline, on_deadline, MP_METRICS_WRITE_MS, 0);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, head || nbody == 0 ? 1 : 2, on_written) != 0)
        close_conn(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct mp_metrics_conn *c = h->data;
    if (c->state == READING)
        *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
    else
        *buf = uv_buf_init(c->buf, sizeof(c->buf)); /* the request is done with: discard into it */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct mp_metrics_conn *c = s->data;
    if (nread < 0) {
        /* The client is gone or done. While the answer is still being written, let it finish. */
        uv_read_stop(s);
        c->peer_done = true;
        if (c->state != WRITING)
            close_conn(c);
        return;
    }
    if (c->state != READING || nread == 0)
        return;
    c->len += (size_t)nread;
    bool head;
    int status = mp_metrics_parse_request(c->buf, c->len, &head);
    if (status != MP_METRICS_NEED_MORE)
        respond(c, status, head);
}

/* At the limit, the oldest connection still sending its request makes way for the new one; false
 * if none is. */
static bool make_room(struct mp_metrics *m, const struct mp_metrics_conn *fresh)
{
    for (struct mp_metrics_conn *c = m->head; c; c = c->next) {
        if (c != fresh && c->state == READING && !c->closing) {
            close_conn(c);
            return true;
        }
    }
    return false;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct mp_metrics *m = server->data;
    if (status < 0 || m->closing)
        return;
    struct mp_metrics_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        /* leave it in the backlog; a later connection's accept takes it */
        return;
    }
    c->m = m;
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->deadline);
    c->tcp.data = c->deadline.data = c;
    c->open_handles = 2;
    c->prev = m->tail;
    if (m->tail)
        m->tail->next = c;
    else
        m->head = c;
    m->tail = c;
    m->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        close_conn(c);
        return;
    }
    /* Connections being closed count until their handles are gone: closes are quick. */
    if (m->nconns > MP_METRICS_MAX_CONNS && !make_room(m, c)) {
        mp_log(MP_LOG_CONN, "metrics: %u scrape connections open; closing a new one", m->nconns - 1);
        close_conn(c);
        return;
    }
    uv_timer_start(&c->deadline, on_deadline, MP_METRICS_REQUEST_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        close_conn(c);
}

/* ---- the listener ----------------------------------------------------------------------------- */

static int split_hostport(const char *hostport, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon[1] == '\0' || strlen(colon + 1) >= portlen)
        return -1;
    size_t nhost = (size_t)(colon - hostport);
    const char *h = hostport;
    if (nhost >= 2 && h[0] == '[' && h[nhost - 1] == ']') {
        h++;
        nhost -= 2;
    }
    if (nhost >= hostlen)
        return -1;
    if (nhost == 0)
        snprintf(host, hostlen, "%s", "0.0.0.0");
    else
        snprintf(host, hostlen, "%.*s", (int)nhost, h);
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

int mp_metrics_setup(struct mp_metrics *m, uv_loop_t *loop, const char *hostport, const struct mp_metrics_source *src,
                     char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->loop = loop;
    m->src = *src;
    char host[256], port[16];
    if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "--metrics: not HOST:PORT: %s", hostport);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--metrics: cannot resolve %s: %s", hostport, gai_strerror(rc));
        return -1;
    }
    uv_tcp_init(loop, &m->listener);
    m->listener.data = m;
    m->listening = true;
    rc = uv_tcp_bind(&m->listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->listener, 64, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "--metrics: cannot listen on %s: %s", hostport, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int bound = 0;
    if (uv_tcp_getsockname(&m->listener, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(m->url, sizeof(m->url), ss.ss_family == AF_INET6 ? "http://[%s]:%d/metrics" : "http://%s:%d/metrics", ip,
             bound);
    return 0;
}

void mp_metrics_close(struct mp_metrics *m)
{
    if (!m->listening || m->closing)
        return;
    m->closing = true;
    free(m->page);
    m->page = NULL;
    uv_close((uv_handle_t *)&m->listener, NULL);
    for (struct mp_metrics_conn *c = m->head; c; c = c->next)
        close_conn(c);
}

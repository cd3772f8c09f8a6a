/*
 * metrics: the --metrics HOST:PORT endpoint. Answers GET /metrics over HTTP/1.0 and 1.1 with the
 * page prom.h renders, from a TCP handle of its own on the acceptor's loop.
 *
 * Where it runs: on the acceptor's loop, so a scrape never runs on a worker. It reads what
 * `stats` reads: the workers' counters and histograms (summed with relaxed loads), the slab
 * classes (each under its lock for a moment, as `stats` takes them) and the hot keys (hotkeys.h).
 *
 * Clients are not trusted. A request head is read into a fixed 8 KiB buffer; one that does not
 * fit is answered 431 and the connection closed. A client has 5 seconds from its connect to send
 * its request (slowloris) and 10 more to take the answer; after the answer the server sends its
 * FIN and discards what else comes for at most 2 seconds, so the client reads the whole answer
 * rather than a reset. At most 16 scrape connections are open at once: a 17th replaces the oldest
 * one still sending its request, or is closed at once when none is. Only GET and HEAD of
 * /metrics (a query string is ignored) are served; another path is 404, another method 405, a
 * malformed request 400, another HTTP version 505. Every answer says "Connection: close". A page
 * rendered less than 100 ms before is served again rather than rendered anew, so clients that
 * scrape as fast as they can cost the acceptor's loop (which also accepts the cache's
 * connections and ticks its clock) a copy each, and at most ten renders a second.
 *
 * The HTTP reading is a pure function, mp_metrics_parse_request, tested on its own.
 */
#ifndef MAGPIE_METRICS_H
#define MAGPIE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "magpie/hotkeys.h"
#include "magpie/latency.h"
#include "magpie/stats.h"

#define MP_METRICS_HEAD_MAX 8192
#define MP_METRICS_MAX_CONNS 16
#define MP_METRICS_REQUEST_MS 5000
#define MP_METRICS_WRITE_MS 10000
#define MP_METRICS_LINGER_MS 2000
#define MP_METRICS_REUSE_MS 100

/* What a request head asks: MP_METRICS_NEED_MORE until the blank line ending it has arrived,
 * then the status to answer with. */
enum {
    MP_METRICS_NEED_MORE = 0,
    MP_METRICS_OK = 200,
    MP_METRICS_BAD_REQUEST = 400,
    MP_METRICS_NOT_FOUND = 404,
    MP_METRICS_BAD_METHOD = 405,
    MP_METRICS_TOO_LARGE = 431,
    MP_METRICS_BAD_VERSION = 505,
};

/* Read the request head in buf[0, len): returns MP_METRICS_NEED_MORE or a status; *head is set
 * for a HEAD request (an answer without its body). A head not complete within
 * MP_METRICS_HEAD_MAX bytes is MP_METRICS_TOO_LARGE. */
int mp_metrics_parse_request(const char *buf, size_t len, bool *head);

/* What a page is made from; latency and hotkeys may be NULL (off). */
struct mp_metrics_source {
    struct mp_stats_source stats;
    const struct mp_latency *latency;
    size_t hotkeys_k; /* hot keys on the page (-o hotkeys_metrics), 0 for none */
};

/* Render the whole page into a malloc'ed buffer: 0 and *out, *len, or -1 when out of memory. */
int mp_metrics_page(const struct mp_metrics_source *src, char **out, size_t *len);

struct mp_metrics_conn;

struct mp_metrics {
    uv_tcp_t listener;
    uv_loop_t *loop;
    struct mp_metrics_source src;
    struct mp_metrics_conn *head, *tail; /* open connections, oldest first */
    unsigned nconns;
    bool listening, closing;
    char url[96]; /* "http://ADDR:PORT/metrics" as bound (port 0 gives a free port), for the log */
    char *page;   /* the last page rendered, and when (the loop's time) */
    size_t page_len;
    uint64_t page_at;
};

/* Listen on "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every IPv4 address) on loop. 0, or -1 with a
 * message in err. */
int mp_metrics_setup(struct mp_metrics *m, uv_loop_t *loop, const char *hostport, const struct mp_metrics_source *src,
                     char *err, size_t errlen);

/* Shutdown: close the listener and every connection; the loop then runs their callbacks. */
void mp_metrics_close(struct mp_metrics *m);

#endif

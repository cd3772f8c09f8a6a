/*
 * watch: memcached's log stream. A connection that sends `watch fetchers|mutations|evictions`
 * becomes a watcher: from then on it receives one line per matching event, in memcached's format
 * ("ts=<sec>.<usec> gid=<n> type=item_get key=<url-encoded> status=found clsid=<n> cfd=<fd>
 * size=<n>"), and nothing else.
 *
 * Owns the registry of watchers (at most MP_WATCH_MAX) and each watcher's queue of lines. Events
 * come from any worker thread (gets, stores) and from whoever evicts (lru.h); each checks one
 * atomic word of flags first, so with no watcher the request path pays a relaxed load. While
 * someone watches, an event takes `lock` to append its line to each matching watcher's queue; a
 * queue that is full drops the line and counts it, and the watcher is sent "skipped=<n>" before
 * its next lines, as memcached does. The watcher's own connection takes what is queued on its
 * thread (mp_watch_take) and writes it with its usual backpressure.
 *
 * `lock` is a leaf: it may be taken while holding a stripe or class lock (evictions), and nothing
 * is taken while holding it.
 */
#ifndef MAGPIE_WATCH_H
#define MAGPIE_WATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_WATCH_MAX 20           /* memcached's limit */
#define MP_WATCH_BUF (256 * 1024) /* a watcher's queue (memcached's watcher_logbuf_size) */
#define MP_WATCH_LINE_MAX 1024

enum { MP_WATCH_FETCHERS = 1, MP_WATCH_MUTATIONS = 2, MP_WATCH_EVICTIONS = 4 };

struct mp_watcher {
    unsigned flags;
    size_t len;       /* queued bytes in buf */
    uint64_t skipped; /* lines dropped since the watcher last took its queue */
    char buf[MP_WATCH_BUF];
};

struct mp_watch {
    pthread_mutex_t lock; /* the registry and every queue */
    struct mp_watcher *watchers[MP_WATCH_MAX];
    _Atomic unsigned flags; /* what some watcher wants: the one check on the request path */
    uint64_t gid;           /* memcached's global id of a log line */
    _Atomic uint64_t sent, skipped, nwatchers;
};

void mp_watch_setup(struct mp_watch *w);
void mp_watch_teardown(struct mp_watch *w);

/* A new watcher of `flags`, or NULL when MP_WATCH_MAX watch already (or out of memory). */
struct mp_watcher *mp_watch_add(struct mp_watch *w, unsigned flags);
/* Its connection is closing: it leaves the registry and is freed; *wr becomes NULL. */
void mp_watch_remove(struct mp_watch *w, struct mp_watcher **wr);

static inline bool mp_watch_wants(struct mp_watch *w, unsigned flag)
{
    return w && (atomic_load_explicit(&w->flags, memory_order_relaxed) & flag);
}

/* memcached's uriencode: what is not alphanumeric or one of "-._~" becomes %XX. `out` has room
 * for 3 * n + 1 bytes; returns the length written (NUL-terminated). */
size_t mp_watch_uriencode(const char *in, size_t n, char *out);

/* One event: "ts=... gid=... " and the text, to every watcher of `flag`. */
void mp_watch_log(struct mp_watch *w, unsigned flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The watcher's queued lines (a "skipped=<n>" line first if any were dropped), moved into out
 * (room for cap bytes); returns the bytes moved. Called by the watcher's own thread. */
size_t mp_watch_take(struct mp_watch *w, struct mp_watcher *wr, char *out, size_t cap);

#endif

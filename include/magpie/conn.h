/*
 * conn: one client connection: its buffers, reading, writing and backpressure. Requests are parsed
 * by the protocol the connection speaks (proto.h for text, bproto.h for binary: -B, or with -B auto
 * the connection's first byte, 0x80 for binary) and run by the executor (exec.h, through text.h or
 * binary.h), which writes the replies into the connection's output buffer (out.h).
 *
 * A connection lives on one worker's loop and is touched only by that thread. An idle one holds no
 * buffer: its 16 KiB read buffer (text command lines are at most 2048 bytes and binary headers,
 * extras and keys at most 529; values are copied, or for large ones read straight into the item,
 * as they arrive), its output buffer and the state of a request in progress are one block taken
 * from the worker's pool (free_io in struct mp_conn_list) when a read brings data, and given back
 * once the input is consumed, the replies written and no request is half done. Values up to 16 KiB are copied into the
 * output buffer; larger ones are pinned by a reference and written from where they live, the
 * reference dropped when the write completes.
 *
 * Every request in a read is answered in order, and the replies of one read go out together with
 * one uv_try_write (a writev). A key listing (dump.h) is streamed a batch at a time: after each
 * batch the connection lets its loop serve others (a zero-delay timer resumes it) and, while its
 * output is queued, waits for it to drain, so the listing takes bounded memory and stalls nobody.
 * A watcher (watch.h) takes what was logged for it every 10 ms. Backpressure: when the pending output reaches 256 KiB
 * the connection flushes; while a write is still queued in the kernel's way it neither parses nor reads, so a client
 * that does not read its replies cannot make the server buffer without bound.
 *
 * TLS (-Z, tls.h) sits between the socket and these buffers: on a TLS connection the socket's
 * bytes are read into the session, which decrypts them into the read buffer (or a large value's
 * item) when the state machine wants more, and the replies are encrypted from the output buffer
 * and the pinned items into the session's buffer, at most ssl_wbuf_size at a time, which is what
 * goes to the socket. The rest of the connection sees plaintext only. The handshake advances as
 * its bytes arrive and must end within ssl_handshake_timeout seconds (mp_conn_list_expire).
 *
 * With -Y (auth.h), a connection answers nothing but an authentication until it has sent one.
 */
#ifndef MAGPIE_CONN_H
#define MAGPIE_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/config.h"
#include "magpie/hotkeys.h"
#include "magpie/latency.h"
#include "magpie/proto.h"
#include "magpie/stats.h"

struct mp_auth;
struct mp_tls;

struct mp_conn_io;

/* The connections of one worker, for shutdown, idle checks and `stats conns`. The owning worker
 * changes the list under `lock`; `stats conns`, run by any worker, reads it under `lock`. The
 * worker's pool of buffers for busy connections (free_io, nfree) is its own alone: no lock. */
struct mp_conn_list {
    pthread_mutex_t lock;
    struct mp_conn *head;
    _Atomic unsigned count; /* changed under lock; read without it by other workers (worker.h) */
    struct mp_conn_io *free_io;
    unsigned nfree;
};

/* A listening socket, as `stats conns` lists it. */
struct mp_conn_listener {
    int fd;
    char addr[128]; /* "tcp:host:port", "tcp6:[host]:port" or "unix:path" */
};

/* What the connections of a server share; read-only but for the atomic connection count. */
struct mp_conn_env {
    struct mp_cache *cache;
    const struct mp_clock *clock;
    const struct mp_config *cfg;
    struct mp_stats *stats;
    _Atomic int *nconns;         /* open connections, for -c; decremented when one closes */
    struct mp_conn_list **lists; /* every worker's list, for `stats conns` */
    unsigned nlists;
    /* Per-worker blocks, indexed like stats->threads; NULL when off. */
    struct mp_latency *latency;               /* --metrics: latency histograms */
    struct mp_hotkeys *hotkeys;               /* hot keys, unless -o no_hotkeys */
    const struct mp_conn_listener *listeners; /* for `stats conns` */
    unsigned nlisteners;
    struct mp_watch *watch; /* the log stream (watch.h) */
    const char *event_lib;  /* libuv's version, for `stats` */
    struct mp_tls *tls;     /* -Z: the TLS context; NULL when off */
    struct mp_auth *auth;   /* -Y: the users; NULL when off */
    /* For `stats`: what snapshots and the warm-up have done; NULL when they are off. */
    const struct mp_snapshot_status *snapshot;
    const struct mp_warm_status *warm;
};

struct mp_conn;

/* An accepted socket, as the acceptor hands it to a worker. What accept() said of the peer, and
 * the listener's own address, spare the worker asking the socket (`stats conns` shows both). */
struct mp_conn_accepted {
    int fd;
    bool is_unix;
    bool tls;          /* accepted on a TLS listener */
    socklen_t peerlen; /* 0: ask the socket for the peer's address */
    struct sockaddr_storage peer;
    const struct sockaddr_storage *local; /* the listener's address; NULL for a wildcard: ask */
};

/* Adopt an accepted socket on `loop`, speaking TLS if a->tls. A request that came with the
 * connection is answered at once (without waiting for the loop to poll the socket). Returns 0, or
 * a negative libuv error (the socket is closed). */
int mp_conn_create(uv_loop_t *loop, const struct mp_conn_env *env, struct mp_stats_thread *st,
                   struct mp_conn_list *list, const struct mp_conn_accepted *a);

/* Server shutdown: stop reading, write the replies already computed, then close. */
void mp_conn_shutdown(struct mp_conn *c);

/* Close the connections whose time is up: idle for longer than -o idle_timeout, or a TLS
 * handshake unfinished after ssl_handshake_timeout (counted in ssl_handshake_errors). */
void mp_conn_list_expire(struct mp_conn_list *list, uint32_t now);

/* Shut down every connection of a list. */
void mp_conn_list_shutdown(struct mp_conn_list *list);

/* Close every connection of a list at once, pending writes or not (the shutdown deadline). */
void mp_conn_list_close_now(struct mp_conn_list *list);

void mp_conn_list_init(struct mp_conn_list *list);
void mp_conn_list_deinit(struct mp_conn_list *list);

#endif

/*
 * server: binding the listeners, the workers, the clock tick, signals, shutdown.
 *
 * Listening sockets are made with listen.h and given to acceptors: each TCP address's per-worker
 * sockets to the workers, which accept on them (worker.h places each connection), and the -s unix
 * socket to the main thread's loop, which hands its connections to the workers round robin. What a
 * connection costs at accept is kept small, for clients that connect to ask one thing: the peer's
 * address comes with accept4 and the local one is the listener's (asked of the socket only on a
 * wildcard listener), TCP_NODELAY is set once on the listener (accepted sockets inherit it), and
 * no thread but the serving worker wakes. The process raises its own limit of open files to what
 * -c needs, as memcached does, or says that it cannot.
 *
 * With --metrics the main thread's loop also serves the Prometheus endpoint (metrics.h).
 *
 * With -Z every TCP listener but the notls: ones is a TLS listener, and the handshake happens on
 * the worker's loop (conn.h, tls.h). The server owns the TLS context and the -Y users (auth.h).
 *
 * SIGINT, SIGTERM and SIGUSR1 stop accepting, ask the workers to write what they have computed and
 * close, and end the process with status 0 within a second. With -e PATH (snapshot.h) the cache is
 * loaded from PATH before the listeners are bound, and written to it once the workers have ended,
 * before the process exits (status 1 if it could not be written); -o snapshot_interval=N also
 * writes it every N seconds while serving, from a thread of its own. SIGHUP reads the -Y file
 * again (memcached's signal for it); without -Y it is ignored, as in memcached.
 *
 * With --warm-from HOST:PORT (warm.h) a thread of its own copies a peer's items while the server
 * serves; it is stopped, if it still runs, before the snapshot is written and the cache torn down.
 */
#ifndef MAGPIE_SERVER_H
#define MAGPIE_SERVER_H

#include <stdbool.h>
#include <uv.h>

#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/auth.h"
#include "magpie/config.h"
#include "magpie/conn.h"
#include "magpie/hotkeys.h"
#include "magpie/latency.h"
#include "magpie/listen.h"
#include "magpie/metrics.h"
#include "magpie/snapshot.h"
#include "magpie/stats.h"
#include "magpie/tls.h"
#include "magpie/warm.h"
#include "magpie/watch.h"
#include "magpie/worker.h"

struct mp_server {
    const struct mp_config *cfg;
    struct mp_cache cache;
    struct mp_clock clock;
    struct mp_stats stats;     /* blocks 0..threads-1 for the workers, the last for the acceptor */
    struct mp_latency latency; /* one block per worker, with --metrics */
    struct mp_hotkeys hotkeys; /* one sketch per worker, unless -o no_hotkeys */
    struct mp_metrics metrics; /* the --metrics endpoint, on `loop` */
    struct mp_tls tls;         /* -Z */
    struct mp_auth auth;       /* -Y */
    struct mp_conn_env env;
    _Atomic int nconns;
    uv_loop_t loop;
    bool loop_ready;
    struct mp_acceptor acc;                         /* the unix socket's listener, and TCP ones without SO_REUSEPORT */
    bool unix_bound;                                /* the -s socket file is ours to remove */
    struct mp_conn_listener shown[MP_ACCEPTOR_MAX]; /* the listeners as `stats conns` lists them */
    unsigned nshown;
    struct mp_watch watch; /* the log stream (watch.h) */
    bool watch_ready;
    struct mp_worker *workers;
    struct mp_conn_list **lists; /* the workers' connection lists, for stats conns */
    unsigned nworkers;
    unsigned next_worker;
    uv_signal_t sigint, sigterm, sigusr1, sighup;
    struct mp_snapshot_opts snapshot; /* with -e */
    struct mp_snapshot_timer snapshot_timer;
    struct mp_snapshot_status snapshot_status; /* for stats, with -e */
    struct mp_warm warm;                       /* with --warm-from */
    uv_timer_t tick;
    bool stopping;
};

/* Build everything and bind the listeners. 0, or an exit status (config.h) with a message in err:
 * MP_EXIT_USAGE for flags that cannot work together, MP_EXIT_FAILURE otherwise. */
int mp_server_setup(struct mp_server *srv, const struct mp_config *cfg, char *err, size_t errlen);
/* Serve until a signal stops the server; then, with -e, write the snapshot. The exit status:
 * MP_EXIT_OK, or MP_EXIT_FAILURE when the snapshot could not be written. */
int mp_server_run(struct mp_server *srv);
void mp_server_teardown(struct mp_server *srv);

#endif

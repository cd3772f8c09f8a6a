/*
 * server: listeners, spreading connections over the workers, the clock tick, signals, shutdown.
 *
 * The main thread runs the acceptor loop. Listening sockets are made here (TCP on each -l address,
 * and the -s unix socket) and watched with uv_poll; on readiness the acceptor accepts in a loop
 * and hands each socket to the next worker, round robin. One acceptor spreads connections evenly
 * whatever their number, where SO_REUSEPORT hashing leaves workers unevenly loaded when there are
 * few connections (memcached and Pelikan make the same choice). Beyond -c open connections a new
 * one gets memcached's "ERROR Too many open connections" and is closed.
 *
 * With --metrics the acceptor's loop also serves the Prometheus endpoint (metrics.h).
 *
 * With -Z every TCP listener but the notls: ones is a TLS listener: its connections are handed to
 * the workers marked so, and the handshake happens on the worker's loop (conn.h, tls.h), never on
 * the acceptor's. The server owns the TLS context and the -Y users (auth.h).
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
#include "magpie/metrics.h"
#include "magpie/snapshot.h"
#include "magpie/stats.h"
#include "magpie/tls.h"
#include "magpie/warm.h"
#include "magpie/watch.h"
#include "magpie/worker.h"

struct mp_listener {
    uv_poll_t poll;
    int fd;
    bool is_unix;
    bool tls;
    struct mp_server *server;
};

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
    struct mp_listener listeners[MP_LISTEN_MAX * 2 + 1];
    int nlisteners;
    struct mp_conn_listener shown[MP_LISTEN_MAX * 2 + 1]; /* the listeners as `stats conns` lists them */
    struct mp_watch watch;                                /* the log stream (watch.h) */
    bool watch_ready;
    uint64_t paused_at_us; /* when accepting paused (out of descriptors), for time_in_listen_disabled_us */
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
    uv_timer_t accept_retry; /* accepting resumes after running out of file descriptors */
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

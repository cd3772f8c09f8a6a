/*
 * listen: the listening sockets, and accepting connections on them.
 *
 * TCP. Every address an -l resolves to is bound once per worker, each socket with SO_REUSEPORT,
 * and each worker accepts on its own sockets from its own loop. A client that connects, asks one
 * thing and closes (serverless functions, PHP without persistent connections, health checks) then
 * wakes one thread, the worker that serves it, where a separate acceptor thread would also wake
 * and hand the socket over. The kernel picks the socket by a hash of the connection's addresses,
 * which spreads many connections evenly but few unevenly; the worker that accepted decides where
 * the connection goes (mp_worker_place, worker.h), and hands it on when others hold fewer.
 *
 * Before the sockets are bound, the address is bound once without SO_REUSEPORT and let go: a
 * server already listening there makes the start fail with "Address already in use", as it makes
 * memcached's, instead of sharing the port with it. Where the kernel refuses SO_REUSEPORT, the
 * address gets one socket, on the main thread's acceptor.
 *
 * The unix socket (-s) has one listener, on the main thread's loop, whose acceptor hands each
 * connection to the next worker, round robin (mp_worker_hand).
 *
 * Whoever accepts applies -c: past it a new connection gets memcached's "ERROR Too many open
 * connections" and is closed (rejected_connections). An accept that finds no descriptor left
 * stops that acceptor's listeners for 100 ms instead of spinning (listen_disabled_num,
 * time_in_listen_disabled_us, and accepting_conns 0 meanwhile), as memcached's does.
 */
#ifndef MAGPIE_LISTEN_H
#define MAGPIE_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "magpie/config.h"
#include "magpie/conn.h"
#include "magpie/stats.h"

struct mp_acceptor;

struct mp_listener {
    uv_poll_t poll;
    int fd;
    bool is_unix;
    bool tls;
    bool wildcard;                /* bound to every address: a connection's own is asked of it */
    unsigned copy;                /* of per-worker sockets of one address, which one (0: the first) */
    bool per_worker;              /* one of an address's per-worker sockets (SO_REUSEPORT) */
    struct sockaddr_storage addr; /* the bound address */
    struct mp_acceptor *acc;
};

/* Where an acceptor puts a connection it has accepted and counted under -c. */
typedef void mp_accept_fn(void *ctx, const struct mp_conn_accepted *a);

#define MP_ACCEPTOR_MAX (MP_LISTEN_MAX * 2 + 1)

/* The listeners one loop accepts on. Its fields are its loop's thread's alone once started. */
struct mp_acceptor {
    struct mp_listener ls[MP_ACCEPTOR_MAX];
    int n;
    uv_timer_t retry; /* accepting resumes after running out of descriptors */
    uint64_t paused_at_us;
    struct mp_stats_thread *st; /* the block of the loop's thread */
    const struct mp_config *cfg;
    _Atomic int *nconns; /* open connections, against -c */
    mp_accept_fn *deliver;
    void *ctx;
    bool started, closed;
};

/* The port of -l's i-th address: its own ("HOST:PORT"), or -p's. */
int mp_listen_port(const struct mp_config *cfg, int i);
/* Bind -l's i-th address: every address it resolves to, as `copies` sockets (per_worker, copy 0 to
 * copies-1) or, when copies is 1 or the kernel refuses SO_REUSEPORT, one. They are appended to
 * out[*n..max). 0, or -1 with a message in err; the sockets made before the failure stay in out,
 * counted in *n, for the caller to close. */
int mp_listen_tcp(const struct mp_config *cfg, int i, unsigned copies, struct mp_listener *out, int *n, int max,
                  char *err, size_t errlen);
/* Bind the -s unix socket (replacing a socket file an earlier run left) into *out. 0 or -1. */
int mp_listen_unix(const struct mp_config *cfg, struct mp_listener *out, char *err, size_t errlen);
/* The listener as `stats conns` names it: memcached's "tcp:<addr>:<port>", "tcp6:[<addr>]:<port>"
 * or "unix:<path>". */
void mp_listen_name(const struct mp_config *cfg, const struct mp_listener *l, struct mp_conn_listener *shown);

/* An acceptor with no listeners yet; `deliver(ctx, ...)` takes what it accepts. */
void mp_acceptor_init(struct mp_acceptor *acc, const struct mp_config *cfg, _Atomic int *nconns,
                      struct mp_stats_thread *st, mp_accept_fn *deliver, void *ctx);
/* Take over a bound listener (its descriptor is the acceptor's to close from now on). */
void mp_acceptor_add(struct mp_acceptor *acc, const struct mp_listener *l);
/* Watch the listeners on `loop`: from the loop's thread, or before that thread runs. */
void mp_acceptor_start(struct mp_acceptor *acc, uv_loop_t *loop);
/* Stop accepting and close the handles (from the loop's thread); the sockets stay bound. */
void mp_acceptor_close(struct mp_acceptor *acc);
/* Close the sockets, once the loop has ended. */
void mp_acceptor_teardown(struct mp_acceptor *acc);

#endif

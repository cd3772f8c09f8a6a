/*
 * worker: a worker thread with its own uv loop, and the connections it serves.
 *
 * The acceptor hands a worker accepted sockets through a small queue guarded by `lock` and wakes
 * it with uv_async_send(), whose sends coalesce: the async callback drains the whole queue. After
 * that a connection belongs to the worker alone. A worker owns one stats block (stats.h) and is
 * its only writer.
 */
#ifndef MAGPIE_WORKER_H
#define MAGPIE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "magpie/conn.h"

struct mp_worker_handoff {
    int fd;
    bool is_unix;
    bool tls; /* accepted on a TLS listener */
};

struct mp_worker {
    unsigned id;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer; /* idle and handshake deadlines while running; the shutdown deadline after */
    pthread_mutex_t lock;
    struct mp_worker_handoff *queue; /* guarded by lock */
    size_t qlen, qcap;
    bool stop; /* guarded by lock */
    bool started;
    struct mp_conn_list conns;
    struct mp_stats_thread *st;
    const struct mp_conn_env *env;
};

/* Start the thread. 0 or a negative errno / libuv error. */
int mp_worker_start(struct mp_worker *w, unsigned id, const struct mp_conn_env *env, struct mp_stats_thread *st);

/* Give the worker an accepted socket (any thread). On failure the socket is closed. */
void mp_worker_hand(struct mp_worker *w, int fd, bool is_unix, bool tls);

/* Ask the worker to finish: it writes replies already computed, closes its connections (within
 * about 0.9 s) and its loop ends. mp_worker_join() waits for that. */
void mp_worker_stop(struct mp_worker *w);
void mp_worker_join(struct mp_worker *w);

/* Close every handle of a loop not already closing, without callbacks (handles that need one,
 * connections, are closed through conn.h first). The server's own loop uses it too. */
void mp_worker_close_handles(uv_loop_t *loop);

#endif

/*
 * worker: a worker thread with its own uv loop, and the connections it serves.
 *
 * A worker accepts on its own per-worker TCP sockets (listen.h) and places each connection it
 * accepts (mp_worker_place): it keeps it unless it holds more connections than the least loaded
 * worker by more than a sixteenth of the two counts together (so by any at all while they are
 * under 16), and then hands it to that worker. Few connections are spread exactly, as a round robin would; many are
 * kept where the kernel's hash sent them, which spreads them evenly by itself, and a connection
 * that comes, asks and goes wakes no thread but the one that serves it.
 *
 * Handing over: a small queue guarded by `lock`, and a wake-up with uv_async_send(), whose sends
 * coalesce: the async callback drains the whole queue. The main thread's acceptor (the unix
 * socket) hands over the same way. After that a connection belongs to the worker alone. A worker
 * owns one stats block (stats.h) and is its only writer.
 */
#ifndef MAGPIE_WORKER_H
#define MAGPIE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "magpie/conn.h"
#include "magpie/listen.h"

struct mp_worker {
    unsigned id;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer; /* idle and handshake deadlines while running; the shutdown deadline after */
    pthread_mutex_t lock;
    struct mp_conn_accepted *queue; /* guarded by lock */
    size_t qlen, qcap;
    struct mp_conn_accepted *spare; /* the other queue, which the worker drains: swapped, kept */
    size_t sparecap;
    bool stop; /* guarded by lock */
    bool started;
    bool loop_ready;         /* set up: mp_worker_join has a loop to close */
    _Atomic unsigned queued; /* handed over and not yet taken: counted as held */
    struct mp_acceptor acc;  /* its per-worker listening sockets */
    struct mp_worker *all;   /* every worker, for placing connections */
    unsigned nall;
    struct mp_conn_list conns;
    struct mp_stats_thread *st;
    const struct mp_conn_env *env;
};

/* Make the worker's loop and its (empty) acceptor; its per-worker listeners are added to w->acc
 * after. 0 or a negative libuv error. */
int mp_worker_setup(struct mp_worker *w, unsigned id, const struct mp_conn_env *env, struct mp_stats_thread *st,
                    struct mp_worker *all, unsigned nall);
/* Watch the acceptor's listeners and start the thread; every worker of `all` is set up before any
 * runs, as a worker may hand a connection to any. 0 or a negative errno; on failure the loop is
 * closed. */
int mp_worker_run(struct mp_worker *w);

/* The rule of mp_worker_place: a worker holding `mine` connections keeps a new one when the least
 * loaded worker holds `least`. */
static inline bool mp_worker_keeps(unsigned mine, unsigned least)
{
    return mine <= least + (mine + least) / 16;
}

/* Give the worker an accepted socket (any thread). On failure the socket is closed. */
void mp_worker_hand(struct mp_worker *w, const struct mp_conn_accepted *a);
/* The acceptor's delivery on the worker's own thread (ctx: the worker): keep the connection or
 * hand it to the least loaded worker, as above. */
void mp_worker_place(void *ctx, const struct mp_conn_accepted *a);

/* Ask the worker to finish: it writes replies already computed, closes its connections (within
 * about 0.9 s) and its loop ends. mp_worker_join() waits for that. */
void mp_worker_stop(struct mp_worker *w);
/* After mp_worker_stop, or for a worker set up and never run: wait for the thread, close the loop
 * and the listening sockets. Once; later calls do nothing. */
void mp_worker_join(struct mp_worker *w);

/* Close every handle of a loop not already closing, without callbacks (handles that need one,
 * connections, are closed through conn.h first). The server's own loop uses it too. */
void mp_worker_close_handles(uv_loop_t *loop);

#endif

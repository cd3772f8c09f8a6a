/* worker: see include/magpie/worker.h */
#include "magpie/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "magpie/log.h"

#define SHUTDOWN_GRACE_MS 600 /* of the second a shutdown may take; the rest is margin */

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void mp_worker_close_handles(uv_loop_t *loop)
{
    uv_walk(loop, close_handle, NULL);
}

/* The shutdown deadline: whatever is still open now is closed without waiting for its writes
 * (connections first, through their own close, which frees them). */
static void on_deadline(uv_timer_t *t)
{
    struct mp_worker *w = t->data;
    mp_conn_list_close_now(&w->conns);
    mp_worker_close_handles(t->loop);
}

static void on_expire_check(uv_timer_t *t)
{
    struct mp_worker *w = t->data;
    mp_conn_list_expire(&w->conns, mp_clock_now(w->env->clock));
}

/* An accepted socket no worker will serve: closed, and its place under -c given back. */
static void drop(struct mp_worker *w, int fd)
{
    close(fd);
    atomic_fetch_sub_explicit(w->env->nconns, 1, memory_order_relaxed);
}

/* An accepted socket becomes one of this worker's connections (on its own thread). */
static void take(struct mp_worker *w, const struct mp_conn_accepted *a)
{
    int rc = mp_conn_create(&w->loop, w->env, w->st, &w->conns, a);
    if (rc != 0)
        mp_log(MP_LOG_ERROR, "worker %u: cannot take a connection: %s", w->id, uv_strerror(rc));
}

static void on_wake(uv_async_t *a)
{
    struct mp_worker *w = a->data;
    /* The queue is swapped for the spare, kept from the last round: no allocation per round. */
    pthread_mutex_lock(&w->lock);
    struct mp_conn_accepted *q = w->queue;
    size_t n = w->qlen, cap = w->qcap;
    bool stop = w->stop;
    w->queue = w->spare;
    w->qcap = w->sparecap;
    w->qlen = 0;
    w->spare = NULL;
    w->sparecap = 0;
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < n; i++) {
        if (stop)
            drop(w, q[i].fd);
        else
            take(w, &q[i]);
        atomic_fetch_sub_explicit(&w->queued, 1, memory_order_relaxed);
    }
    pthread_mutex_lock(&w->lock);
    w->spare = q;
    w->sparecap = cap;
    pthread_mutex_unlock(&w->lock);
    if (stop) {
        mp_acceptor_close(&w->acc);
        mp_conn_list_shutdown(&w->conns);
        pthread_mutex_lock(&w->lock); /* no send is in progress (mp_worker_stop, mp_worker_hand) */
        uv_close((uv_handle_t *)&w->wake, NULL);
        pthread_mutex_unlock(&w->lock);
        uv_timer_stop(&w->timer);
        uv_timer_start(&w->timer, on_deadline, SHUTDOWN_GRACE_MS, 0);
        uv_unref((uv_handle_t *)&w->timer); /* the loop ends as soon as the connections are closed */
    }
}

static void *worker_main(void *arg)
{
    struct mp_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Close anything left (the deadline timer) and let the close callbacks run. */
    mp_worker_close_handles(&w->loop);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    return NULL;
}

int mp_worker_setup(struct mp_worker *w, unsigned id, const struct mp_conn_env *env, struct mp_stats_thread *st,
                    struct mp_worker *all, unsigned nall)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->env = env;
    w->st = st;
    w->all = all;
    w->nall = nall;
    pthread_mutex_init(&w->lock, NULL);
    mp_conn_list_init(&w->conns);
    mp_acceptor_init(&w->acc, env->cfg, env->nconns, st, mp_worker_place, w);
    int rc = uv_loop_init(&w->loop);
    if (rc != 0)
        return rc;
    w->loop_ready = true;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->timer);
    w->timer.data = w;
    if (env->cfg->idle_timeout > 0 || env->cfg->tls.enabled)
        uv_timer_start(&w->timer, on_expire_check, 1000, 1000);
    return 0;
}

int mp_worker_run(struct mp_worker *w)
{
    mp_acceptor_start(&w->acc, &w->loop);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return -rc; /* mp_worker_join closes the loop */
    w->started = true;
    return 0;
}

/* What a worker holds: its connections, and those handed to it that it has not taken yet. */
static unsigned held(struct mp_worker *w)
{
    return atomic_load_explicit(&w->conns.count, memory_order_relaxed) +
           atomic_load_explicit(&w->queued, memory_order_relaxed);
}

void mp_worker_place(void *ctx, const struct mp_conn_accepted *a)
{
    struct mp_worker *w = ctx;
    unsigned mine = held(w), least = mine;
    struct mp_worker *to = w;
    for (unsigned i = 0; i < w->nall; i++) {
        unsigned h = held(&w->all[i]);
        if (h < least) {
            least = h;
            to = &w->all[i];
        }
    }
    if (to != w && !mp_worker_keeps(mine, least)) {
        mp_worker_hand(to, a);
        return;
    }
    take(w, a);
}

void mp_worker_hand(struct mp_worker *w, const struct mp_conn_accepted *a)
{
    pthread_mutex_lock(&w->lock);
    if (w->stop) {
        pthread_mutex_unlock(&w->lock);
        drop(w, a->fd);
        return;
    }
    if (w->qlen == w->qcap) {
        size_t ncap = w->qcap ? w->qcap * 2 : 16;
        struct mp_conn_accepted *nq = realloc(w->queue, ncap * sizeof(*nq));
        if (!nq) {
            pthread_mutex_unlock(&w->lock);
            drop(w, a->fd);
            return;
        }
        w->queue = nq;
        w->qcap = ncap;
    }
    w->queue[w->qlen++] = *a;
    atomic_fetch_add_explicit(&w->queued, 1, memory_order_relaxed);
    uv_async_send(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void mp_worker_stop(struct mp_worker *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->lock);
    bool first = !w->stop;
    w->stop = true;
    /* Only the first request wakes the worker: on it, the worker closes its async handle, and a
     * send to a closed handle is a use after close. Sent under the lock so the close cannot
     * come between the check and the send. */
    if (first)
        uv_async_send(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void mp_worker_join(struct mp_worker *w)
{
    if (!w->loop_ready)
        return;
    if (w->started) {
        pthread_join(w->thread, NULL); /* the thread has closed the loop */
    } else {
        /* Set up and never run: others may have handed it connections, and may still try. */
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        for (size_t i = 0; i < w->qlen; i++)
            drop(w, w->queue[i].fd);
        w->qlen = 0;
        pthread_mutex_unlock(&w->lock);
        mp_worker_close_handles(&w->loop);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
    }
    w->started = false;
    w->loop_ready = false;
    free(w->queue);
    free(w->spare);
    mp_acceptor_teardown(&w->acc);
    pthread_mutex_destroy(&w->lock);
    mp_conn_list_deinit(&w->conns);
}

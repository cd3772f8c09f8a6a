/* server: see include/magpie/server.h */
#define _GNU_SOURCE /* accept4 */
#include "magpie/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "magpie/log.h"

#include <arpa/inet.h>
#include <sys/time.h>

#define ACCEPT_BATCH 64
static const char TOO_MANY[] = "ERROR Too many open connections\r\n";

/* ---- listeners ------------------------------------------------------------------------------- */

/* The port of -l's i-th address: its own, or -p's. */
static int listen_port(const struct mp_config *cfg, int i)
{
    return cfg->listen_port[i] >= 0 ? cfg->listen_port[i] : cfg->port;
}

/* The i-th -l address: every address it resolves to, TLS with -Z unless it is a notls: one. */
static int listen_tcp(struct mp_server *srv, int i, char *err, size_t errlen)
{
    const struct mp_config *cfg = srv->cfg;
    const char *host = strcmp(cfg->listen[i], "*") == 0 ? NULL : cfg->listen[i];
    int portnum = listen_port(cfg, i);
    bool tls = cfg->tls.enabled && !cfg->listen_notls[i];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof(port), "%d", portnum);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", cfg->listen[i], gai_strerror(rc));
        return -1;
    }
    int bound = 0;
    for (struct addrinfo *ai = res; ai && srv->nlisteners < (int)(sizeof(srv->listeners) / sizeof(srv->listeners[0]));
         ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, cfg->backlog) != 0) {
            snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->listen[i], portnum, strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        srv->listeners[srv->nlisteners++] = (struct mp_listener){.fd = fd, .is_unix = false, .tls = tls, .server = srv};
        bound++;
    }
    freeaddrinfo(res);
    if (!bound) {
        snprintf(err, errlen, "no usable address for %s", cfg->listen[i]);
        return -1;
    }
    return 0;
}

static int listen_unix(struct mp_server *srv, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create unix socket: %s", strerror(errno));
        return -1;
    }
    /* A socket file left by an earlier run would make bind fail; memcached removes it too. */
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(path);
    mode_t old = umask((mode_t)(~srv->cfg->unix_mask & 0777));
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || listen(fd, srv->cfg->backlog) != 0) {
        snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    srv->listeners[srv->nlisteners++] = (struct mp_listener){.fd = fd, .is_unix = true, .server = srv};
    return 0;
}

/* ---- accepting ------------------------------------------------------------------------------- */

static void on_accept(uv_poll_t *p, int status, int events);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct mp_stats_thread *acceptor_stats(struct mp_server *srv)
{
    return &srv->stats.threads[srv->nworkers];
}

static void on_accept_retry(uv_timer_t *t)
{
    struct mp_server *srv = t->data;
    struct mp_stats_thread *st = acceptor_stats(srv);
    MP_STAT_ADD(st, time_in_listen_disabled_us, now_us() - srv->paused_at_us);
    MP_STAT_DEC(st, accept_paused);
    for (int i = 0; i < srv->nlisteners; i++)
        uv_poll_start(&srv->listeners[i].poll, UV_READABLE, on_accept);
}

static void refuse(struct mp_server *srv, int fd)
{
    /* Best effort, as memcached: one write of the error, then close. */
    ssize_t w = write(fd, TOO_MANY, sizeof(TOO_MANY) - 1);
    (void)w;
    close(fd);
    MP_STAT_INC(&srv->stats.threads[srv->nworkers], rejected_connections);
    mp_log(MP_LOG_CONN, "refused a connection: %d open, limit %d", atomic_load(&srv->nconns), srv->cfg->maxconns);
}

static void on_accept(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct mp_listener *l = p->data;
    struct mp_server *srv = l->server;
    if (status < 0 || srv->stopping)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: stop accepting for a moment instead of spinning. */
                mp_log(MP_LOG_ERROR, "accept: %s; pausing accepts for 100 ms", strerror(errno));
                MP_STAT_INC(acceptor_stats(srv), listen_disabled_num);
                MP_STAT_INC(acceptor_stats(srv), accept_paused);
                srv->paused_at_us = now_us();
                for (int j = 0; j < srv->nlisteners; j++)
                    uv_poll_stop(&srv->listeners[j].poll);
                uv_timer_start(&srv->accept_retry, on_accept_retry, 100, 0);
            }
            return; /* EAGAIN, or an error of that one connection */
        }
        if (atomic_fetch_add(&srv->nconns, 1) >= srv->cfg->maxconns) {
            atomic_fetch_sub(&srv->nconns, 1);
            refuse(srv, fd);
            continue;
        }
        struct mp_worker *w = &srv->workers[srv->next_worker];
        srv->next_worker = (srv->next_worker + 1) % srv->nworkers;
        mp_worker_hand(w, fd, l->is_unix, l->tls);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct mp_server *srv = t->data;
    mp_clock_tick_now(&srv->clock);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    struct mp_server *srv = s->data;
    char err[512];
    if (!srv->cfg->auth_file)
        return;
    if (mp_auth_reload(&srv->auth, err, sizeof(err)) == 0)
        mp_log(MP_LOG_INFO, "SIGHUP: reloaded the authentication file %s", srv->cfg->auth_file);
    else
        mp_log(MP_LOG_ERROR, "SIGHUP: %s; the users stay as they were", err);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct mp_server *srv = s->data;
    if (srv->stopping)
        return;
    srv->stopping = true;
    mp_log(MP_LOG_INFO, "%s: shutting down", signum == SIGINT ? "SIGINT" : signum == SIGUSR1 ? "SIGUSR1" : "SIGTERM");
    for (int i = 0; i < srv->nlisteners; i++) {
        uv_poll_stop(&srv->listeners[i].poll);
        uv_close((uv_handle_t *)&srv->listeners[i].poll, NULL);
    }
    mp_metrics_close(&srv->metrics);
    uv_close((uv_handle_t *)&srv->tick, NULL);
    uv_close((uv_handle_t *)&srv->accept_retry, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigusr1, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    for (unsigned i = 0; i < srv->nworkers; i++)
        mp_worker_stop(&srv->workers[i]);
}

static void log_startup(const struct mp_server *srv)
{
    const struct mp_config *cfg = srv->cfg;
    char where[400] = "";
    size_t n = 0;
    for (int i = 0; i < cfg->nlisten && cfg->port && n < sizeof(where); i++)
        n += (size_t)snprintf(where + n, sizeof(where) - n, "%s%s%s:%d", n ? "," : "",
                              cfg->tls.enabled && !cfg->listen_notls[i] ? "tls:" : "", cfg->listen[i],
                              listen_port(cfg, i));
    if (n >= sizeof(where))
        n = sizeof(where) - 1;
    if (cfg->unix_path)
        snprintf(where + n, sizeof(where) - n, "%sunix:%s (mode %o)", n ? "," : "", cfg->unix_path,
                 (unsigned)cfg->unix_mask);
    mp_log(MP_LOG_INFO,
           "magpie %s listening on %s; threads %d, memory %zu MiB, max item %zu bytes, max connections %d, "
           "growth factor %.2f, min chunk %zu, %u slab classes, page %u bytes, idle timeout %d s, automove %s, "
           "verbosity %d, hot keys %s, metrics %s%s%s, authentication %s",
           MP_VERSION, where, cfg->threads, cfg->mem_limit >> 20, cfg->item_max, cfg->maxconns, cfg->factor,
           cfg->min_chunk, srv->cache.slabs.nclasses, srv->cache.slabs.page_size, cfg->idle_timeout,
           cfg->lru_maintainer && cfg->slab_automove ? "on" : "off", cfg->verbose, cfg->hotkeys ? "on" : "off",
           cfg->metrics ? "on " : "off", cfg->metrics ? srv->metrics.url : "",
           cfg->hotkeys_metrics ? " with hot keys" : "", cfg->auth_file ? cfg->auth_file : "off");
}

/* A listener as `stats conns` names it: memcached's "tcp:<addr>:<port>" or "unix:<path>". */
static void show_listener(struct mp_server *srv, int i)
{
    struct mp_conn_listener *l = &srv->shown[i];
    l->fd = srv->listeners[i].fd;
    if (srv->listeners[i].is_unix) {
        snprintf(l->addr, sizeof(l->addr), "unix:%s", srv->cfg->unix_path);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(l->addr, sizeof(l->addr), "tcp6:[%s]:%d", host, port);
        return;
    }
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(l->addr, sizeof(l->addr), "tcp:%s:%d", host, port);
}

/* `watch evictions`: memcached's eviction line, from the CLOCK hand (lru.h; under its locks). */
static void log_eviction(void *ctx, const struct mp_item *it, unsigned cls, uint32_t now)
{
    struct mp_server *srv = ctx;
    if (!mp_watch_wants(&srv->watch, MP_WATCH_EVICTIONS))
        return;
    char key[3 * MP_KEY_MAX + 1];
    mp_watch_uriencode(mp_item_key(it), it->nkey, key);
    uint32_t exptime = mp_item_exptime(it);
    uint64_t stamp = mp_item_stamp(it);
    mp_watch_log(&srv->watch, MP_WATCH_EVICTIONS, "type=eviction key=%s fetch=%s ttl=%lld la=%u clsid=%u size=%u", key,
                 stamp & MP_ITEM_FETCHED ? "yes" : "no", exptime ? (long long)exptime - now : -1LL,
                 mp_item_la_age(stamp, now), cls, it->nbytes);
}

/* ---- snapshots (-e) -------------------------------------------------------------------------- */

static void snapshot_note(void *ctx, const char *msg)
{
    (void)ctx;
    mp_log(MP_LOG_INFO, "%s", msg);
}

static double mb_per_s(uint64_t bytes, double seconds)
{
    return seconds > 0 ? (double)bytes / 1e6 / seconds : 0;
}

/* "; not loaded: 3 expired, 2 over -I" or nothing. */
static void skipped_list(const struct mp_snapshot_report *r, char *out, size_t cap)
{
    const struct {
        uint64_t n;
        const char *why;
    } why[] = {{r->expired, "expired"},
               {r->too_large, "over -I"},
               {r->no_room, "without room under -m"},
               {r->present, "duplicate keys"},
               {r->damaged, "in damaged blocks"},
               {r->missing, "missing from a truncated file"}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++)
        if (why[i].n && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%llu %s",
                                  n ? ", " : "; not loaded: ", (unsigned long long)why[i].n, why[i].why);
    if (r->damaged_bytes && n < cap)
        snprintf(out + n, cap - n, "; %llu damaged bytes skipped", (unsigned long long)r->damaged_bytes);
}

static void snapshot_load(struct mp_server *srv)
{
    struct mp_snapshot_report r;
    int rc = mp_snapshot_load(&srv->cache, &srv->snapshot, &r);
    atomic_store_explicit(&srv->snapshot_status.loaded_items, r.items, memory_order_relaxed);
    atomic_store_explicit(&srv->snapshot_status.load_us, (uint64_t)(r.seconds * 1e6), memory_order_relaxed);
    if (!r.found)
        return;
    char skipped[400];
    skipped_list(&r, skipped, sizeof(skipped));
    mp_log(MP_LOG_INFO, "snapshot %s: loaded %llu items (%.1f MB) in %.3f s (%.0f MB/s read)%s%s",
           srv->cfg->memory_file, (unsigned long long)r.items, (double)r.bytes / 1e6, r.seconds,
           mb_per_s(r.file_bytes, r.seconds), skipped, rc ? "; stopped by a read error" : "");
}

/* After each periodic save, on the timer's thread. */
static void snapshot_saved(void *ctx, int rc, const struct mp_snapshot_report *r)
{
    struct mp_server *srv = ctx;
    const char *path = srv->cfg->memory_file;
    struct mp_snapshot_status *st = &srv->snapshot_status;
    if (rc == 0) {
        atomic_store_explicit(&st->saves, atomic_load_explicit(&st->saves, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&st->last_save_at, (int64_t)time(NULL), memory_order_relaxed);
        atomic_store_explicit(&st->last_save_us, (uint64_t)(r->seconds * 1e6), memory_order_relaxed);
        atomic_store_explicit(&st->last_save_items, r->items, memory_order_relaxed);
    } else if (rc != -ECANCELED) {
        atomic_store_explicit(&st->save_failures, atomic_load_explicit(&st->save_failures, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    if (rc == 0)
        mp_log(MP_LOG_CONN, "snapshot %s: wrote %llu items (%.1f MB) in %.3f s", path, (unsigned long long)r->items,
               (double)r->bytes / 1e6, r->seconds);
    else if (rc != -ECANCELED)
        mp_log(MP_LOG_ERROR, "snapshot %s: not written; the last one stays", path);
}

/* At shutdown, once nothing else touches the cache. */
static int snapshot_save(struct mp_server *srv)
{
    struct mp_snapshot_report r;
    int rc = mp_snapshot_save(&srv->cache, &srv->snapshot, &r);
    if (rc != 0) {
        mp_log(MP_LOG_ERROR, "snapshot %s: not written; the previous one, if any, is unchanged", srv->cfg->memory_file);
        return MP_EXIT_FAILURE;
    }
    mp_log(MP_LOG_INFO, "snapshot %s: wrote %llu items (%.1f MB; a %.1f MB file) in %.3f s (%.0f MB/s)%s",
           srv->cfg->memory_file, (unsigned long long)r.items, (double)r.bytes / 1e6, (double)r.file_bytes / 1e6,
           r.seconds, mb_per_s(r.file_bytes, r.seconds), r.busy ? "; items pinned by readers left out" : "");
    return MP_EXIT_OK;
}

/* ---- warming from a peer (--warm-from) ------------------------------------------------------- */

static void warm_note(void *ctx, bool error, const char *msg)
{
    (void)ctx;
    mp_log(error ? MP_LOG_ERROR : MP_LOG_INFO, "%s", msg);
}

static unsigned stripe_bits_for(size_t mem_limit)
{
    /* About one stripe per 64 KiB of -m, from 256 to 65536 stripes: a stripe then holds a few
     * hundred small items and grows in microseconds. */
    unsigned bits = 8;
    while (bits < 16 && ((size_t)1 << (bits + 16)) < mem_limit)
        bits++;
    return bits;
}

int mp_server_setup(struct mp_server *srv, const struct mp_config *cfg, char *err, size_t errlen)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = cfg;
    char host[256];
    uint16_t port;
    if (cfg->warm_from && mp_warm_split_peer(cfg->warm_from, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "--warm-from: not HOST:PORT (or [IPV6]:PORT): %s", cfg->warm_from);
        return MP_EXIT_USAGE;
    }
    mp_clock_setup_now(&srv->clock);
    struct mp_cache_config cc = {
        .mem_limit = cfg->mem_limit,
        .item_max = cfg->item_max,
        .min_chunk = cfg->min_chunk,
        .factor = cfg->factor,
        .stripe_bits = stripe_bits_for(cfg->mem_limit),
        .initial_buckets = 64,
    };
    int rc = mp_cache_setup(&srv->cache, &cc, err, errlen);
    if (rc != 0)
        return rc == -EINVAL ? MP_EXIT_USAGE : MP_EXIT_FAILURE; /* -EINVAL: flags that cannot work together */
    if (mp_stats_setup(&srv->stats, (unsigned)cfg->threads + 1, srv->cache.slabs.nclasses) != 0) {
        snprintf(err, errlen, "%s", "out of memory");
        return MP_EXIT_FAILURE;
    }
    if ((cfg->metrics && mp_latency_setup(&srv->latency, (unsigned)cfg->threads) != 0) ||
        (cfg->hotkeys && mp_hotkeys_setup(&srv->hotkeys, (unsigned)cfg->threads, mp_clock_now(&srv->clock)) != 0)) {
        snprintf(err, errlen, "%s", "out of memory");
        return MP_EXIT_FAILURE;
    }
    mp_watch_setup(&srv->watch);
    srv->watch_ready = true;
    srv->cache.lru.on_evict = log_eviction;
    srv->cache.lru.evict_ctx = srv;
    if (cfg->tls.options_seen && !cfg->tls.enabled)
        mp_log(MP_LOG_INFO, "-o ssl_* given without -Z: TLS is off, as in memcached");
    if (cfg->tls.enabled && mp_tls_setup(&srv->tls, &cfg->tls, mp_clock_now(&srv->clock), err, errlen) != 0)
        return MP_EXIT_USAGE; /* memcached exits EX_USAGE for certificates it cannot load */
    if (cfg->auth_file && mp_auth_setup(&srv->auth, cfg->auth_file, err, errlen) != 0)
        return MP_EXIT_FAILURE;
    srv->env = (struct mp_conn_env){.cache = &srv->cache,
                                    .clock = &srv->clock,
                                    .cfg = cfg,
                                    .stats = &srv->stats,
                                    .nconns = &srv->nconns,
                                    .latency = cfg->metrics ? &srv->latency : NULL,
                                    .hotkeys = cfg->hotkeys ? &srv->hotkeys : NULL,
                                    .listeners = srv->shown,
                                    .watch = &srv->watch,
                                    .event_lib = uv_version_string(),
                                    .tls = cfg->tls.enabled ? &srv->tls : NULL,
                                    .auth = cfg->auth_file ? &srv->auth : NULL,
                                    .snapshot = cfg->memory_file ? &srv->snapshot_status : NULL,
                                    .warm = cfg->warm_from ? &srv->warm.status : NULL};
    /* The snapshot comes back before anything listens: no client sees a cache half loaded. */
    srv->snapshot = (struct mp_snapshot_opts){.path = cfg->memory_file, .clock = &srv->clock, .note = snapshot_note};
    if (cfg->memory_file)
        snapshot_load(srv);
    for (int i = 0; cfg->port && i < cfg->nlisten; i++)
        if (listen_tcp(srv, i, err, errlen) != 0)
            return MP_EXIT_FAILURE;
    if (cfg->unix_path && listen_unix(srv, cfg->unix_path, err, errlen) != 0)
        return MP_EXIT_FAILURE;
    for (int i = 0; i < srv->nlisteners; i++)
        show_listener(srv, i);
    srv->env.nlisteners = (unsigned)srv->nlisteners;
    if (uv_loop_init(&srv->loop) != 0) {
        snprintf(err, errlen, "%s", "cannot create the event loop");
        return MP_EXIT_FAILURE;
    }
    srv->loop_ready = true;
    if (cfg->metrics) {
        struct mp_metrics_source ms = {
            .stats = {.cfg = cfg,
                      .cache = &srv->cache,
                      .clock = &srv->clock,
                      .stats = &srv->stats,
                      .hotkeys = srv->env.hotkeys,
                      .tls = srv->env.tls},
            .latency = &srv->latency,
            .hotkeys_k = (size_t)cfg->hotkeys_metrics,
        };
        ms.stats.snapshot = srv->env.snapshot;
        ms.stats.warm = srv->env.warm;
        if (mp_metrics_setup(&srv->metrics, &srv->loop, cfg->metrics, &ms, err, errlen) != 0)
            return MP_EXIT_FAILURE;
    }
    srv->workers = calloc((size_t)cfg->threads, sizeof(*srv->workers));
    srv->lists = calloc((size_t)cfg->threads, sizeof(*srv->lists));
    if (!srv->workers || !srv->lists) {
        snprintf(err, errlen, "%s", "out of memory");
        return MP_EXIT_FAILURE;
    }
    for (int i = 0; i < cfg->threads; i++)
        srv->lists[i] = &srv->workers[i].conns;
    srv->env.lists = srv->lists;
    srv->env.nlists = (unsigned)cfg->threads;
    for (int i = 0; i < cfg->threads; i++) {
        rc = mp_worker_start(&srv->workers[i], (unsigned)i, &srv->env, &srv->stats.threads[i]);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %d: %s", i, uv_strerror(rc));
            return MP_EXIT_FAILURE;
        }
        srv->nworkers++;
    }
    atomic_store(&srv->cache.lru.crawler, cfg->lru_crawler);
    if (cfg->lru_maintainer && mp_lru_maintainer_start(&srv->cache.lru, &srv->clock, cfg->slab_automove) != 0) {
        snprintf(err, errlen, "%s", "cannot start the maintainer thread");
        return MP_EXIT_FAILURE;
    }
    if (cfg->snapshot_interval && mp_snapshot_timer_start(&srv->snapshot_timer, &srv->cache, &srv->snapshot,
                                                          (unsigned)cfg->snapshot_interval, snapshot_saved, srv) != 0) {
        snprintf(err, errlen, "%s", "cannot start the snapshot thread");
        return MP_EXIT_FAILURE;
    }
    for (int i = 0; i < srv->nlisteners; i++) {
        struct mp_listener *l = &srv->listeners[i];
        uv_poll_init(&srv->loop, &l->poll, l->fd);
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, on_accept);
    }
    uv_timer_init(&srv->loop, &srv->tick);
    srv->tick.data = srv;
    uv_timer_start(&srv->tick, on_tick, 1000, 1000);
    uv_timer_init(&srv->loop, &srv->accept_retry);
    srv->accept_retry.data = srv;
    uv_signal_init(&srv->loop, &srv->sigint);
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigusr1);
    uv_signal_init(&srv->loop, &srv->sighup);
    srv->sigint.data = srv->sigterm.data = srv->sigusr1.data = srv->sighup.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    /* memcached's graceful stop, the one its -e restarts need; here any of the three will do. */
    uv_signal_start(&srv->sigusr1, on_signal, SIGUSR1);
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    log_startup(srv);
    /* Last: the copy runs while the server serves. A peer that cannot be reached is no reason not
     * to serve (warm.h): only a failure to start the thread is reported, and the server goes on. */
    if (cfg->warm_from) {
        struct mp_warm_opts wo = {.peer = cfg->warm_from,
                                  .rate = (uint32_t)cfg->warm_rate,
                                  .timeout = (unsigned)cfg->warm_timeout,
                                  .clock = &srv->clock,
                                  .note = warm_note};
        if (mp_warm_start(&srv->warm, &srv->cache, &wo) != 0)
            mp_log(MP_LOG_ERROR, "warm-up from %s: cannot start; serving without it", cfg->warm_from);
    }
    return 0;
}

int mp_server_run(struct mp_server *srv)
{
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    mp_warm_stop(&srv->warm);
    if (!srv->cfg->memory_file)
        return MP_EXIT_OK;
    /* Everything that could change the cache ends first: a periodic snapshot in progress (its
     * temporary file goes), the workers, once their last replies are written, and the maintainer.
     * The signal handlers are closed by now, so a second signal ends the process at once; the file
     * being written is then left unfinished and the previous snapshot stays. */
    mp_snapshot_timer_stop(&srv->snapshot_timer);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        mp_worker_stop(&srv->workers[i]);
        mp_worker_join(&srv->workers[i]);
    }
    mp_lru_maintainer_stop(&srv->cache.lru);
    mp_clock_tick_now(&srv->clock);
    return snapshot_save(srv);
}

void mp_server_teardown(struct mp_server *srv)
{
    mp_warm_stop(&srv->warm);
    mp_snapshot_timer_stop(&srv->snapshot_timer);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        mp_worker_stop(&srv->workers[i]);
        mp_worker_join(&srv->workers[i]);
    }
    free(srv->workers);
    free(srv->lists);
    for (int i = 0; i < srv->nlisteners; i++)
        close(srv->listeners[i].fd);
    if (srv->cfg->unix_path && srv->nlisteners)
        unlink(srv->cfg->unix_path);
    if (srv->loop_ready) {
        /* After a failed setup handles may still be open: close them and let their callbacks run. */
        mp_worker_close_handles(&srv->loop);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->loop);
    }
    mp_cache_teardown(&srv->cache);
    mp_tls_teardown(&srv->tls);
    mp_auth_teardown(&srv->auth);
    mp_stats_teardown(&srv->stats);
    mp_latency_teardown(&srv->latency);
    if (srv->hotkeys.threads)
        mp_hotkeys_teardown(&srv->hotkeys);
    if (srv->watch_ready)
        mp_watch_teardown(&srv->watch);
}

/* server: see include/magpie/server.h */
#include "magpie/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "magpie/log.h"

/* ---- accepting on the main thread ------------------------------------------------------------ */

/* The main acceptor's delivery (the unix socket, and TCP where SO_REUSEPORT is refused): the next
 * worker, round robin. */
static void hand_round_robin(void *ctx, const struct mp_conn_accepted *a)
{
    struct mp_server *srv = ctx;
    struct mp_worker *w = &srv->workers[srv->next_worker];
    srv->next_worker = (srv->next_worker + 1) % srv->nworkers;
    mp_worker_hand(w, a);
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
    mp_acceptor_close(&srv->acc);
    mp_metrics_close(&srv->metrics);
    uv_close((uv_handle_t *)&srv->tick, NULL);
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
                              mp_listen_port(cfg, i));
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

/* Descriptors beyond -c: listeners, the metrics endpoint and its scrapes, the log, the snapshot
 * file, the peer of --warm-from, each loop's own (epoll, eventfd, signals). */
#define FD_HEADROOM 128

/*
 * -c connections need as many descriptors, and a shell's default soft limit is 1024. As memcached
 * does, the process raises its own limit: the soft one up to what -c needs, and the hard one too
 * when that is below (which takes root or CAP_SYS_RESOURCE). It never lowers a limit. When it
 * cannot get enough it says so and goes on with what it has: an accept that finds no descriptor
 * pauses accepting for a moment (on_accept), as memcached's does.
 */
static void raise_fd_limit(const struct mp_config *cfg)
{
    struct rlimit rl;
    /* and each worker's own listening sockets: two per -l address at most (IPv4 and IPv6) */
    rlim_t headroom = FD_HEADROOM + (rlim_t)cfg->threads * (rlim_t)cfg->nlisten * 2;
    rlim_t want = (rlim_t)cfg->maxconns + headroom;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    struct rlimit up = {want, rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
        return;
    int why = errno;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max; /* as far as an unprivileged process may go */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    mp_log(MP_LOG_ERROR,
           "-c %d needs %llu descriptors, but the limit is %llu and cannot be raised (%s): at most about %llu "
           "connections can be open; raise the hard limit (ulimit -Hn) or start as root",
           cfg->maxconns, (unsigned long long)want, (unsigned long long)rl.rlim_cur, strerror(why),
           (unsigned long long)(rl.rlim_cur > headroom ? rl.rlim_cur - headroom : 0));
}

/*
 * Bind every -l address (one socket per worker each, listen.h) and the -s unix socket, and give
 * each socket to its acceptor: a per-worker one to its worker's, the others to the main thread's.
 * `stats conns` shows one listener per address. 0, or -1 with a message in err.
 */
static int bind_listeners(struct mp_server *srv, char *err, size_t errlen)
{
    const struct mp_config *cfg = srv->cfg;
    int max = MP_ACCEPTOR_MAX * cfg->threads, n = 0, rc = 0;
    struct mp_listener *ls = calloc((size_t)max + 1, sizeof(*ls));
    if (!ls) {
        snprintf(err, errlen, "%s", "out of memory");
        return -1;
    }
    for (int i = 0; rc == 0 && cfg->port && i < cfg->nlisten; i++)
        rc = mp_listen_tcp(cfg, i, srv->nworkers, ls, &n, max, err, errlen);
    if (rc == 0 && cfg->unix_path) {
        rc = mp_listen_unix(cfg, &ls[n], err, errlen);
        if (rc == 0) {
            n++;
            srv->unix_bound = true;
        }
    }
    bool keep = false;
    for (int i = 0; i < n; i++) {
        if (ls[i].copy == 0) /* an address's first socket; no acceptor takes more than MP_ACCEPTOR_MAX */
            keep = rc == 0 && srv->nshown < MP_ACCEPTOR_MAX;
        if (!keep) {
            close(ls[i].fd);
            continue;
        }
        if (ls[i].copy == 0)
            mp_listen_name(cfg, &ls[i], &srv->shown[srv->nshown++]);
        mp_acceptor_add(ls[i].per_worker ? &srv->workers[ls[i].copy].acc : &srv->acc, &ls[i]);
    }
    free(ls);
    srv->env.nlisteners = srv->nshown;
    return rc;
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
    raise_fd_limit(cfg);
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
    if (uv_loop_init(&srv->loop) != 0) {
        snprintf(err, errlen, "%s", "cannot create the event loop");
        return MP_EXIT_FAILURE;
    }
    srv->loop_ready = true;
    mp_acceptor_init(&srv->acc, cfg, &srv->nconns, &srv->stats.threads[cfg->threads], hand_round_robin, srv);
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
        srv->nworkers++;
        rc = mp_worker_setup(&srv->workers[i], (unsigned)i, &srv->env, &srv->stats.threads[i], srv->workers,
                             (unsigned)cfg->threads);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %d: %s", i, uv_strerror(rc));
            return MP_EXIT_FAILURE;
        }
    }
    if (bind_listeners(srv, err, errlen) != 0)
        return MP_EXIT_FAILURE;
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
    uv_timer_init(&srv->loop, &srv->tick);
    srv->tick.data = srv;
    uv_timer_start(&srv->tick, on_tick, 1000, 1000);
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
    /* The copy runs while the server serves. A peer that cannot be reached is no reason not
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
    /* Serving starts last, once the signals are handled: the workers accept from now on. */
    for (unsigned i = 0; i < srv->nworkers; i++) {
        rc = mp_worker_run(&srv->workers[i]);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker %u: %s", i, strerror(-rc));
            return MP_EXIT_FAILURE;
        }
    }
    mp_acceptor_start(&srv->acc, &srv->loop);
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
    mp_acceptor_teardown(&srv->acc);
    if (srv->cfg->unix_path && srv->unix_bound)
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

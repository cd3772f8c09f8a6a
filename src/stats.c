/* stats: see include/magpie/stats.h */
#include "magpie/stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/config.h"
#include "magpie/hotkeys.h"
#include "magpie/log.h"
#include "magpie/proto.h"
#include "magpie/tls.h"
#include "magpie/snapshot.h"
#include "magpie/warm.h"

static struct mp_stats_prefixes *prefixes_create(void);
static void prefixes_destroy(struct mp_stats_prefixes *p);

int mp_stats_setup(struct mp_stats *s, unsigned nthreads, unsigned nclasses)
{
    memset(s, 0, sizeof(*s));
    s->threads = aligned_alloc(64, nthreads * sizeof(struct mp_stats_thread));
    s->class_baseline = calloc(nclasses + 1, sizeof(*s->class_baseline));
    if (!s->threads || !s->class_baseline) {
        free(s->threads);
        free(s->class_baseline);
        s->threads = NULL;
        return -ENOMEM;
    }
    memset(s->threads, 0, nthreads * sizeof(struct mp_stats_thread));
    s->nthreads = nthreads;
    s->nclasses = nclasses;
    for (unsigned i = 0; i < nthreads; i++) {
        s->threads[i].classes = aligned_alloc(64, (nclasses + 1) * sizeof(struct mp_stats_class));
        s->threads[i].prefixes = prefixes_create();
        if (!s->threads[i].classes || !s->threads[i].prefixes) {
            mp_stats_teardown(s);
            return -ENOMEM;
        }
        memset(s->threads[i].classes, 0, (nclasses + 1) * sizeof(struct mp_stats_class));
    }
    pthread_mutex_init(&s->reset_lock, NULL);
    return 0;
}

void mp_stats_teardown(struct mp_stats *s)
{
    if (!s->threads)
        return;
    for (unsigned i = 0; i < s->nthreads; i++) {
        free(s->threads[i].classes);
        prefixes_destroy(s->threads[i].prefixes);
    }
    free(s->threads);
    free(s->class_baseline);
    s->threads = NULL;
    pthread_mutex_destroy(&s->reset_lock);
}

static void sum_class_raw(const struct mp_stats *s, unsigned cls, struct mp_stats_class_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->nthreads; i++) {
#define MP_STATS_SUM(name) out->name += atomic_load_explicit(&s->threads[i].classes[cls].name, memory_order_relaxed);
        MP_STATS_CLASS_COUNTERS(MP_STATS_SUM)
#undef MP_STATS_SUM
    }
}

static void sum_raw(const struct mp_stats *s, struct mp_stats_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->nthreads; i++) {
#define MP_STATS_SUM(name) out->name += atomic_load_explicit(&s->threads[i].name, memory_order_relaxed);
        MP_STATS_COUNTERS(MP_STATS_SUM)
#undef MP_STATS_SUM
    }
    for (unsigned cls = 0; cls <= s->nclasses; cls++) {
        struct mp_stats_class_sum c;
        sum_class_raw(s, cls, &c);
#define MP_STATS_SUM(name) out->name += c.name;
        MP_STATS_CLASS_COUNTERS(MP_STATS_SUM)
#undef MP_STATS_SUM
    }
}

/* Gauges are levels, not counts: a reset leaves them alone. */
static void keep_gauges(struct mp_stats_sum *baseline)
{
    baseline->curr_connections = 0;
    baseline->connection_structures = 0;
    baseline->io_blocks = 0;
    baseline->io_blocks_free = 0;
    baseline->accept_paused = 0;
}

void mp_stats_sum(struct mp_stats *s, struct mp_stats_sum *out)
{
    sum_raw(s, out);
    pthread_mutex_lock(&s->reset_lock);
#define MP_STATS_SUB(name) out->name -= s->baseline.name;
    MP_STATS_COUNTERS(MP_STATS_SUB)
    MP_STATS_CLASS_COUNTERS(MP_STATS_SUB)
#undef MP_STATS_SUB
    pthread_mutex_unlock(&s->reset_lock);
}

void mp_stats_sum_class(struct mp_stats *s, unsigned cls, struct mp_stats_class_sum *out)
{
    sum_class_raw(s, cls, out);
    pthread_mutex_lock(&s->reset_lock);
#define MP_STATS_SUB(name) out->name -= s->class_baseline[cls].name;
    MP_STATS_CLASS_COUNTERS(MP_STATS_SUB)
#undef MP_STATS_SUB
    pthread_mutex_unlock(&s->reset_lock);
}

void mp_stats_reset(struct mp_stats *s)
{
    struct mp_stats_sum now;
    sum_raw(s, &now);
    keep_gauges(&now);
    pthread_mutex_lock(&s->reset_lock);
    s->baseline = now;
    for (unsigned cls = 0; cls <= s->nclasses; cls++)
        sum_class_raw(s, cls, &s->class_baseline[cls]);
    pthread_mutex_unlock(&s->reset_lock);
}

/* ---- stats detail ------------------------------------------------------------------------------ */

#define PREFIX_SLOTS 8192 /* open addressing, twice MP_STATS_PREFIXES_MAX */

struct prefix_entry {
    uint8_t len; /* 0: empty slot */
    char prefix[MP_KEY_MAX];
    uint64_t n[4]; /* by enum mp_stats_prefix_op */
};

struct mp_stats_prefixes {
    pthread_mutex_t lock; /* the owner writes under it; the dump reads under it */
    unsigned count;
    struct prefix_entry *slots; /* allocated the first time detail counts something */
};

static struct mp_stats_prefixes *prefixes_create(void)
{
    struct mp_stats_prefixes *p = calloc(1, sizeof(*p));
    if (p)
        pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void prefixes_destroy(struct mp_stats_prefixes *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p->slots);
    free(p);
}

static uint32_t prefix_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a: prefixes are few and the table is per thread */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* The slot of a prefix, or of the empty one where it goes; NULL when the table is full. */
static struct prefix_entry *prefix_slot(struct prefix_entry *slots, const char *p, size_t n)
{
    uint32_t i = prefix_hash(p, n) % PREFIX_SLOTS;
    for (unsigned probe = 0; probe < PREFIX_SLOTS; probe++, i = (i + 1) % PREFIX_SLOTS) {
        struct prefix_entry *e = &slots[i];
        if (e->len == 0 || (e->len == n && memcmp(e->prefix, p, n) == 0))
            return e;
    }
    return NULL;
}

void mp_stats_detail_set(struct mp_stats *s, bool on)
{
    atomic_store_explicit(&s->detail, on, memory_order_relaxed);
}

void mp_stats_prefix_count(struct mp_stats_thread *st, const char *key, size_t nkey, enum mp_stats_prefix_op op)
{
    const char *colon = memchr(key, ':', nkey);
    if (!colon || colon == key)
        return; /* memcached counts only keys with the delimiter, and a prefix of a byte or more */
    size_t n = (size_t)(colon - key);
    struct mp_stats_prefixes *t = st->prefixes;
    pthread_mutex_lock(&t->lock);
    if (!t->slots)
        t->slots = calloc(PREFIX_SLOTS, sizeof(*t->slots));
    struct prefix_entry *e = t->slots ? prefix_slot(t->slots, key, n) : NULL;
    if (e && e->len == 0 && t->count < MP_STATS_PREFIXES_MAX) {
        e->len = (uint8_t)n;
        memcpy(e->prefix, key, n);
        t->count++;
    }
    if (e && e->len) {
        e->n[op]++;
        if (op == MP_PREFIX_HIT)
            e->n[MP_PREFIX_GET]++;
    }
    pthread_mutex_unlock(&t->lock);
}

char *mp_stats_detail_dump(struct mp_stats *s, size_t *len)
{
    struct prefix_entry *all = calloc(PREFIX_SLOTS, sizeof(*all));
    if (!all)
        return NULL;
    unsigned count = 0;
    for (unsigned i = 0; i < s->nthreads; i++) {
        struct mp_stats_prefixes *t = s->threads[i].prefixes;
        pthread_mutex_lock(&t->lock);
        for (unsigned j = 0; t->slots && j < PREFIX_SLOTS; j++) {
            const struct prefix_entry *e = &t->slots[j];
            if (e->len == 0)
                continue;
            struct prefix_entry *d = prefix_slot(all, e->prefix, e->len);
            if (d && d->len == 0) {
                *d = *e;
                count++;
            } else if (d) {
                for (int k = 0; k < 4; k++)
                    d->n[k] += e->n[k];
            }
        }
        pthread_mutex_unlock(&t->lock);
    }
    size_t cap = (size_t)count * (MP_KEY_MAX + 100) + 8, n = 0;
    char *out = malloc(cap);
    if (out) {
        for (unsigned j = 0; j < PREFIX_SLOTS; j++) {
            const struct prefix_entry *e = &all[j];
            if (e->len)
                n += (size_t)snprintf(out + n, cap - n, "PREFIX %.*s get %llu hit %llu set %llu del %llu\r\n",
                                      (int)e->len, e->prefix, (unsigned long long)e->n[MP_PREFIX_GET],
                                      (unsigned long long)e->n[MP_PREFIX_HIT], (unsigned long long)e->n[MP_PREFIX_SET],
                                      (unsigned long long)e->n[MP_PREFIX_DEL]);
        }
        memcpy(out + n, "END\r\n", 5);
        *len = n + 5;
    }
    free(all);
    return out;
}

/* A class's fields as of one moment (its mutex is copied too, and not used); `used` counts only
 * chunks holding items, not those in threads' caches. */
static struct mp_slab_class snapshot(struct mp_slabs *slabs, unsigned cls)
{
    struct mp_slab_class *c = &slabs->classes[cls];
    pthread_mutex_lock(&c->lock);
    struct mp_slab_class snap = *c;
    snap.used = mp_slab_used_locked(slabs, cls);
    pthread_mutex_unlock(&c->lock);
    return snap;
}

/* Engine-wide figures from the slab classes. */
struct class_totals {
    uint64_t evictions, evicted_unfetched, evicted_active, evicted_for_move, reclaimed, crawler_reclaimed,
        crawler_items_checked, lrutail_reflocked, direct_reclaims, expired_unfetched, outofmemory, moved, pages;
    uint64_t small_evicted, small_promoted, ghost_hits;
};

static void class_totals(struct mp_slabs *slabs, struct class_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 1; i <= slabs->nclasses; i++) {
        struct mp_slab_class c = snapshot(slabs, i);
        t->evictions += c.evictions;
        t->evicted_unfetched += c.evicted_unfetched;
        t->evicted_active += c.evicted_active;
        t->evicted_for_move += c.evicted_for_move;
        t->reclaimed += c.reclaimed;
        t->crawler_reclaimed += c.crawler_reclaimed;
        t->crawler_items_checked += c.crawler_items_checked;
        t->lrutail_reflocked += c.lrutail_reflocked;
        t->direct_reclaims += c.direct_reclaims;
        t->expired_unfetched += c.expired_unfetched;
        t->outofmemory += c.outofmemory;
        t->moved += c.pages_moved_out;
        t->pages += c.npages;
        t->small_evicted += c.small_evicted;
        t->small_promoted += c.small_promoted;
        t->ghost_hits += c.ghost_hits;
    }
}

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* memcached's hash_power_level: log2 of the buckets, here of all stripes' together. */
static unsigned hash_power(const struct mp_table *t)
{
    uint64_t buckets = mp_table_overhead(t) / sizeof(mp_handle_t);
    unsigned p = 0;
    while (p < 63 && (UINT64_C(2) << p) <= buckets)
        p++;
    return p;
}

#define U(v) ((unsigned long long)(v))
#define NUM(name, v) emit(ctx, name, "%llu", U(v))
#define LOAD(p, field) atomic_load_explicit(&((__typeof__(*(p)) *)(p))->field, memory_order_relaxed)

/* With -e: what the snapshots have done (snapshot.h). */
static void report_snapshot(const struct mp_snapshot_status *s, mp_stats_emit_fn emit, void *ctx)
{
    NUM("snapshot_loaded_items", LOAD(s, loaded_items));
    emit(ctx, "snapshot_load_seconds", "%.3f", (double)LOAD(s, load_us) / 1e6);
    NUM("snapshot_saves", LOAD(s, saves));
    NUM("snapshot_save_failures", LOAD(s, save_failures));
    emit(ctx, "snapshot_last_save_time", "%lld", (long long)LOAD(s, last_save_at));
    emit(ctx, "snapshot_last_save_seconds", "%.3f", (double)LOAD(s, last_save_us) / 1e6);
    NUM("snapshot_last_save_items", LOAD(s, last_save_items));
}

/* With --warm-from: the copy's progress (warm.h). */
static void report_warm(const struct mp_warm_status *w, mp_stats_emit_fn emit, void *ctx)
{
    emit(ctx, "warm_state", "%s", mp_warm_state_name((enum mp_warm_state)LOAD(w, state)));
    NUM("warm_keys_listed", LOAD(w, listed));
    NUM("warm_items_copied", LOAD(w, copied));
    NUM("warm_items_skipped", mp_warm_skipped(w));
    NUM("warm_items_present", LOAD(w, present));
    NUM("warm_items_missing", LOAD(w, missing));
    NUM("warm_items_too_large", LOAD(w, too_large));
    NUM("warm_items_no_room", LOAD(w, no_room));
    NUM("warm_items_bad_key", LOAD(w, bad_key));
    NUM("warm_bytes", LOAD(w, bytes));
    emit(ctx, "warm_seconds", "%.3f", mp_warm_seconds(w));
}

static void report_general(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_stats_sum sum;
    struct class_totals ct;
    struct rusage ru;
    mp_stats_sum(src->stats, &sum);
    struct mp_cache *cache = src->cache;
    class_totals(&cache->slabs, &ct);
    getrusage(RUSAGE_SELF, &ru);
    uint32_t now = mp_clock_now(src->clock);
    const struct mp_table *table = &cache->table;
    const struct mp_lru *lru = &cache->lru;
    uint64_t conns = sum.connection_structures;

    emit(ctx, "pid", "%ld", (long)getpid());
    emit(ctx, "uptime", "%u", now - 2);
    emit(ctx, "time", "%lld", (long long)mp_clock_wall(src->clock, now));
    emit(ctx, "version", "%s", MP_PROTO_VERSION);
    emit(ctx, "libevent", "%s", src->event_lib ? src->event_lib : "none");
    emit(ctx, "pointer_size", "%d", (int)(8 * sizeof(void *)));
    emit(ctx, "rusage_user", "%.6f", tv_seconds(ru.ru_utime));
    emit(ctx, "rusage_system", "%.6f", tv_seconds(ru.ru_stime));
    emit(ctx, "max_connections", "%d", src->cfg->maxconns);
    NUM("curr_connections", sum.curr_connections);
    NUM("total_connections", sum.total_connections);
    NUM("rejected_connections", sum.rejected_connections);
    NUM("connection_structures", conns);
    /* A busy connection holds a block of its worker's pool with one 16 KiB read buffer and its
     * reply buffer; an idle one holds none (conn.h). */
    NUM("response_obj_oom", 0);
    NUM("response_obj_count", sum.io_blocks);
    NUM("response_obj_bytes", 0);
    NUM("read_buf_count", sum.io_blocks);
    NUM("read_buf_bytes", sum.io_blocks * 16384);
    NUM("read_buf_bytes_free", sum.io_blocks_free * 16384);
    NUM("read_buf_oom", 0);
    NUM("reserved_fds", 0);
    NUM("cmd_get", sum.cmd_get);
    NUM("cmd_set", sum.cmd_set);
    NUM("cmd_flush", sum.cmd_flush);
    NUM("cmd_touch", sum.cmd_touch);
    NUM("cmd_meta", sum.cmd_meta);
    NUM("get_hits", sum.get_hits);
    NUM("get_misses", sum.get_misses);
    NUM("get_expired", sum.get_expired);
    NUM("get_flushed", sum.get_flushed);
    NUM("delete_misses", sum.delete_misses);
    NUM("delete_hits", sum.delete_hits);
    NUM("incr_misses", sum.incr_misses);
    NUM("incr_hits", sum.incr_hits);
    NUM("decr_misses", sum.decr_misses);
    NUM("decr_hits", sum.decr_hits);
    NUM("cas_misses", sum.cas_misses);
    NUM("cas_hits", sum.cas_hits);
    NUM("cas_badval", sum.cas_badval);
    NUM("touch_hits", sum.touch_hits);
    NUM("touch_misses", sum.touch_misses);
    NUM("store_too_large", sum.store_too_large);
    NUM("store_no_memory", sum.store_no_memory);
    NUM("auth_cmds", sum.auth_cmds);
    NUM("auth_errors", sum.auth_errors);
    NUM("idle_kicks", sum.idle_kicks);
    NUM("bytes_read", sum.bytes_read);
    NUM("bytes_written", sum.bytes_written);
    NUM("limit_maxbytes", mp_slab_limit(&cache->slabs));
    NUM("accepting_conns", sum.accept_paused ? 0 : 1);
    NUM("listen_disabled_num", sum.listen_disabled_num);
    NUM("time_in_listen_disabled_us", sum.time_in_listen_disabled_us);
    emit(ctx, "threads", "%d", src->cfg->threads);
    NUM("conn_yields", sum.conn_yields);
    NUM("hash_power_level", hash_power(table));
    NUM("hash_bytes", mp_table_overhead(table));
    NUM("hash_is_expanding", 0);
    /* Pages change class by evicting what they hold: nothing is rescued. */
    NUM("slab_reassign_rescues", 0);
    NUM("slab_reassign_chunk_rescues", 0);
    NUM("slab_reassign_evictions_nomem", ct.evicted_for_move);
    NUM("slab_reassign_inline_reclaim", 0);
    NUM("slab_reassign_busy_items", atomic_load_explicit(&((struct mp_lru *)lru)->busy_moves, memory_order_relaxed));
    NUM("slab_reassign_busy_deletes", 0);
    NUM("slab_reassign_running", 0);
    NUM("slabs_moved", ct.moved);
    NUM("lru_crawler_running", 0);
    NUM("lru_crawler_starts", atomic_load_explicit(&((struct mp_lru *)lru)->crawls, memory_order_relaxed));
    NUM("lru_maintainer_juggles", atomic_load_explicit(&((struct mp_lru *)lru)->juggles, memory_order_relaxed));
    NUM("malloc_fails", 0);
    NUM("log_worker_dropped", src->log.worker_dropped);
    NUM("log_worker_written", src->log.worker_written);
    NUM("log_watcher_skipped", src->log.watcher_skipped);
    NUM("log_watcher_sent", src->log.watcher_sent);
    NUM("log_watchers", src->log.watchers);
    if (src->tls) { /* memcached shows these with -Z only */
        if (src->cfg->tls.session_cache)
            NUM("ssl_new_sessions", sum.ssl_new_sessions);
        NUM("ssl_handshake_errors", sum.ssl_handshake_errors);
        emit(ctx, "time_since_server_cert_refresh", "%u",
             now - atomic_load_explicit(&src->tls->loaded_at, memory_order_relaxed));
    }
    NUM("unexpected_napi_ids", 0);
    NUM("round_robin_fallback", 0);
    NUM("bytes", mp_table_bytes(table));
    NUM("curr_items", mp_table_count(table));
    NUM("total_items", sum.total_items);
    NUM("slab_global_page_pool", mp_slab_pool_pages(&cache->slabs));
    NUM("expired_unfetched", ct.expired_unfetched);
    NUM("evicted_unfetched", ct.evicted_unfetched);
    NUM("evicted_active", ct.evicted_active);
    NUM("evictions", ct.evictions);
    NUM("reclaimed", ct.reclaimed);
    NUM("crawler_reclaimed", ct.crawler_reclaimed);
    NUM("crawler_items_checked", ct.crawler_items_checked);
    NUM("lrutail_reflocked", ct.lrutail_reflocked);
    NUM("moves_to_cold", 0);
    NUM("moves_to_warm", 0);
    NUM("moves_within_lru", 0);
    NUM("direct_reclaims", ct.direct_reclaims);
    NUM("lru_bumps_dropped", 0);
    /* Magpie's own, after memcached's names */
    emit(ctx, "magpie_version", "%s", MP_VERSION);
    NUM("total_malloced", ct.pages * cache->slabs.page_size);
    NUM("ghost_bytes", mp_ghost_bytes(&lru->ghost));
    NUM("small_evictions", ct.small_evicted);
    NUM("small_promotions", ct.small_promoted);
    NUM("ghost_hits", ct.ghost_hits);
    if (src->snapshot)
        report_snapshot(src->snapshot, emit, ctx);
    if (src->warm)
        report_warm(src->warm, emit, ctx);
}

/* memcached's TLS settings, shown with or without -Z, as a memcached built with TLS shows them
 * (paths not given print as "(null)" there, and as "NULL" for the ciphers and CA). */
static void report_tls_settings(const struct mp_tls_config *t, mp_stats_emit_fn emit, void *ctx)
{
    emit(ctx, "ssl_enabled", "%s", t->enabled ? "yes" : "no");
    emit(ctx, "ssl_chain_cert", "%s", t->chain_cert ? t->chain_cert : "(null)");
    emit(ctx, "ssl_key", "%s", t->key ? t->key : "(null)");
    emit(ctx, "ssl_verify_mode", "%d", mp_config_tls_verify_flags(t->verify));
    emit(ctx, "ssl_keyformat", "%d", t->keyformat);
    emit(ctx, "ssl_ciphers", "%s", t->ciphers ? t->ciphers : "NULL");
    emit(ctx, "ssl_ca_cert", "%s", t->ca_cert ? t->ca_cert : "NULL");
    emit(ctx, "ssl_wbuf_size", "%u", t->wbuf_size);
    emit(ctx, "ssl_session_cache", "%s", t->session_cache ? "yes" : "no");
    emit(ctx, "ssl_kernel_tls", "%s", "no");
    emit(ctx, "ssl_min_version", "%s", mp_config_tls_version_name(t->min_version));
}

static void report_settings(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    const struct mp_config *cfg = src->cfg;
    struct mp_lru *lru = &src->cache->lru;
    const char *yes = "yes", *no = "no";
    NUM("maxbytes", mp_slab_limit(&src->cache->slabs));
    emit(ctx, "maxconns", "%d", cfg->maxconns);
    emit(ctx, "tcpport", "%d", cfg->port);
    emit(ctx, "udpport", "%d", 0);
    emit(ctx, "inter", "%s", cfg->listen_arg);    /* the -l flags as given, as memcached */
    emit(ctx, "verbosity", "%d", mp_log_level()); /* the `verbosity` command changes it */
    NUM("oldest", atomic_load_explicit(&src->cache->epoch.oldest, memory_order_relaxed));
    emit(ctx, "evictions", "%s", "on");
    emit(ctx, "domain_socket", "%s", cfg->unix_path ? cfg->unix_path : "NULL");
    emit(ctx, "umask", "%o", (unsigned)cfg->unix_mask);
    emit(ctx, "shutdown_command", "%s", cfg->shutdown_enabled ? yes : no);
    emit(ctx, "growth_factor", "%.2f", cfg->factor);
    emit(ctx, "chunk_size", "%zu", cfg->min_chunk);
    emit(ctx, "num_threads", "%d", cfg->threads);
    emit(ctx, "num_threads_per_udp", "%d", cfg->threads);
    emit(ctx, "stat_key_prefix", "%c", ':');
    emit(ctx, "detail_enabled", "%s", mp_stats_detail_on(src->stats) ? yes : no);
    emit(ctx, "reqs_per_event", "%d", 0);
    emit(ctx, "cas_enabled", "%s", yes);
    emit(ctx, "tcp_backlog", "%d", cfg->backlog);
    emit(ctx, "binding_protocol", "%s", mp_config_protocol_name(cfg->protocol));
    emit(ctx, "auth_enabled_sasl", "%s", no);
    emit(ctx, "auth_enabled_ascii", "%s", cfg->auth_file ? cfg->auth_file : no);
    emit(ctx, "item_size_max", "%zu", cfg->item_max);
    emit(ctx, "maxconns_fast", "%s", yes);
    emit(ctx, "hashpower_init", "%d", 0);
    emit(ctx, "slab_reassign", "%s", cfg->lru_maintainer ? yes : no);
    emit(ctx, "slab_automove", "%d", cfg->lru_maintainer ? atomic_load(&lru->automove) : 0);
    emit(ctx, "slab_automove_ratio", "%.2f", 0.0);
    emit(ctx, "slab_automove_window", "%u", 1u);
    emit(ctx, "slab_chunk_max", "%u", src->cache->slabs.classes[src->cache->slabs.nclasses].size);
    emit(ctx, "lru_crawler", "%s", cfg->lru_maintainer && atomic_load(&lru->crawler) ? yes : no);
    emit(ctx, "lru_crawler_sleep", "%d", 0);
    emit(ctx, "lru_crawler_tocrawl", "%lu", 0ul);
    emit(ctx, "tail_repair_time", "%d", 0);
    emit(ctx, "flush_enabled", "%s", yes);
    emit(ctx, "dump_enabled", "%s", yes);
    emit(ctx, "hash_algorithm", "%s", "xxh3");
    emit(ctx, "lru_maintainer_thread", "%s", cfg->lru_maintainer ? yes : no);
    emit(ctx, "lru_segmented", "%s", no); /* one CLOCK per class: memcached's flat LRU mode */
    emit(ctx, "hot_lru_pct", "%d", 0);
    emit(ctx, "warm_lru_pct", "%d", 0);
    emit(ctx, "hot_max_factor", "%.2f", 0.0);
    emit(ctx, "warm_max_factor", "%.2f", 0.0);
    emit(ctx, "temp_lru", "%s", no);
    emit(ctx, "temporary_ttl", "%u", 0u);
    emit(ctx, "idle_timeout", "%d", cfg->idle_timeout);
    emit(ctx, "watcher_logbuf_size", "%u", src->log.watcher_buf);
    emit(ctx, "worker_logbuf_size", "%u", src->log.worker_buf);
    emit(ctx, "read_buf_mem_limit", "%u", 0u);
    emit(ctx, "track_sizes", "%s", no);
    emit(ctx, "inline_ascii_response", "%s", no);
    emit(ctx, "ext_item_size", "%u", 0u);
    emit(ctx, "ext_item_age", "%u", 0u);
    emit(ctx, "ext_low_ttl", "%u", 0u);
    emit(ctx, "ext_recache_rate", "%u", 0u);
    emit(ctx, "ext_wbuf_size", "%u", 0u);
    emit(ctx, "ext_compact_under", "%u", 0u);
    emit(ctx, "ext_drop_under", "%u", 0u);
    emit(ctx, "ext_max_sleep", "%u", 0u);
    emit(ctx, "ext_max_frag", "%.2f", 0.0);
    emit(ctx, "slab_automove_freeratio", "%.3f", 0.0);
    emit(ctx, "ext_drop_unread", "%s", no);
    report_tls_settings(&cfg->tls, emit, ctx);
    emit(ctx, "num_napi_ids", "%s", "(null)");
    /* memcached prints a missing path with printf's "(null)". */
    emit(ctx, "memory_file", "%s", cfg->memory_file ? cfg->memory_file : "(null)");
    emit(ctx, "snapshot_interval", "%d", cfg->snapshot_interval);
    /* Magpie's own */
    emit(ctx, "slab_page_size", "%u", src->cache->slabs.page_size);
    emit(ctx, "ssl_handshake_timeout", "%d", cfg->tls.handshake_timeout);
    emit(ctx, "warm_from", "%s", cfg->warm_from ? cfg->warm_from : "(null)");
    emit(ctx, "warm_rate", "%d", cfg->warm_rate);
    emit(ctx, "warm_timeout", "%d", cfg->warm_timeout);
}

static void report_slabs(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_slabs *slabs = &src->cache->slabs;
    unsigned active = 0;
    uint64_t pages = 0;
    char name[64];
    for (unsigned i = 1; i <= slabs->nclasses; i++) {
        struct mp_slab_class snap = snapshot(slabs, i);
        if (snap.npages == 0)
            continue;
        active++;
        pages += snap.npages;
        uint64_t total = (uint64_t)snap.npages * snap.perpage;
        uint64_t never_used = snap.bump_page != MP_SLAB_NONE ? snap.perpage - snap.bump_next : 0;
        struct mp_stats_class_sum cs;
        mp_stats_sum_class(src->stats, i, &cs);
#define SLAB_STAT(field, val)                                                                                          \
    snprintf(name, sizeof(name), "%u:%s", i, field);                                                                   \
    emit(ctx, name, "%llu", U(val));
        SLAB_STAT("chunk_size", snap.size)
        SLAB_STAT("chunks_per_page", snap.perpage)
        SLAB_STAT("total_pages", snap.npages)
        SLAB_STAT("total_chunks", total)
        SLAB_STAT("used_chunks", snap.used)
        SLAB_STAT("free_chunks", total - snap.used)
        SLAB_STAT("free_chunks_end", never_used)
#define CLASS_STAT(field) SLAB_STAT(#field, cs.field)
        MP_STATS_CLASS_COUNTERS(CLASS_STAT)
#undef CLASS_STAT
#undef SLAB_STAT
    }
    emit(ctx, "active_slabs", "%u", active);
    NUM("total_malloced", pages * slabs->page_size);
}

static void report_items(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_slabs *slabs = &src->cache->slabs;
    char name[64];
    for (unsigned i = 1; i <= slabs->nclasses; i++) {
        struct mp_slab_class snap = snapshot(slabs, i);
        if (snap.used == 0)
            continue; /* memcached lists only classes that hold items */
        struct mp_stats_class_sum cs;
        mp_stats_sum_class(src->stats, i, &cs);
        /* No hot, warm and cold LRUs (lru.h: a small queue and a CLOCK, with counters of their
         * own below): memcached's flat LRU, where every item is in the cold LRU and every hit is a
         * hit to cold. */
#define ITEM_STAT(field, val)                                                                                          \
    snprintf(name, sizeof(name), "items:%u:%s", i, field);                                                             \
    emit(ctx, name, "%llu", U(val));
        /* a chain's chunks (chain.h) hold no item of their own: its head counts, in its class */
        ITEM_STAT("number", snap.used - snap.chunks)
        ITEM_STAT("number_hot", 0)
        ITEM_STAT("number_warm", 0)
        ITEM_STAT("number_cold", snap.used - snap.chunks)
        ITEM_STAT("age_hot", 0)
        ITEM_STAT("age_warm", 0)
        ITEM_STAT("age", snap.age)
        ITEM_STAT("mem_requested", snap.mem_requested)
        ITEM_STAT("evicted", snap.evictions)
        ITEM_STAT("evicted_nonzero", snap.evicted_nonzero)
        ITEM_STAT("evicted_time", snap.evicted_time)
        ITEM_STAT("outofmemory", snap.outofmemory)
        ITEM_STAT("tailrepairs", 0)
        ITEM_STAT("reclaimed", snap.reclaimed)
        ITEM_STAT("expired_unfetched", snap.expired_unfetched)
        ITEM_STAT("evicted_unfetched", snap.evicted_unfetched)
        ITEM_STAT("evicted_active", snap.evicted_active)
        ITEM_STAT("crawler_reclaimed", snap.crawler_reclaimed)
        ITEM_STAT("crawler_items_checked", snap.crawler_items_checked)
        ITEM_STAT("lrutail_reflocked", snap.lrutail_reflocked)
        ITEM_STAT("moves_to_cold", 0)
        ITEM_STAT("moves_to_warm", 0)
        ITEM_STAT("moves_within_lru", 0)
        ITEM_STAT("direct_reclaims", snap.direct_reclaims)
        ITEM_STAT("hits_to_hot", 0)
        ITEM_STAT("hits_to_warm", 0)
        ITEM_STAT("hits_to_cold", cs.get_hits)
        ITEM_STAT("hits_to_temp", 0)
        /* Magpie's own */
        ITEM_STAT("evicted_for_move", snap.evicted_for_move)
        ITEM_STAT("moves_to_pool", snap.pages_moved_out)
        ITEM_STAT("moves_from_pool", snap.pages_moved_in)
        ITEM_STAT("small_evictions", snap.small_evicted)
        ITEM_STAT("small_promotions", snap.small_promoted)
        ITEM_STAT("ghost_hits", snap.ghost_hits)
#undef ITEM_STAT
    }
}

static bool arg_is(const char *args, size_t nargs, const char *word)
{
    size_t n = strlen(word);
    return nargs >= n && memcmp(args, word, n) == 0 && (nargs == n || args[n] == ' ');
}

/* "hotkeys" and an optional count in [1, MP_HOTKEYS_MAX]: the count, or 0 when it is not one. */
static size_t hotkeys_count_arg(const char *args, size_t nargs)
{
    size_t i = 7, k = 0; /* past "hotkeys" */
    while (i < nargs && args[i] == ' ')
        i++;
    if (i == nargs)
        return MP_HOTKEYS_DEFAULT;
    for (; i < nargs && args[i] >= '0' && args[i] <= '9'; i++) {
        k = k * 10 + (size_t)(args[i] - '0');
        if (k > MP_HOTKEYS_MAX)
            return 0;
    }
    while (i < nargs && args[i] == ' ')
        i++;
    return i == nargs ? k : 0;
}

static int report_hotkeys(const struct mp_stats_source *src, const char *args, size_t nargs, mp_stats_emit_fn emit,
                          void *ctx)
{
    size_t k = hotkeys_count_arg(args, nargs);
    if (k == 0)
        return -1;
    if (!src->hotkeys) {
        emit(ctx, "hotkeys_status", "%s", "disabled");
        return 0;
    }
    struct mp_hotkey top[MP_HOTKEYS_MAX];
    size_t n = mp_hotkeys_top(src->hotkeys, mp_clock_now(src->clock), top, k);
    for (size_t i = 0; i < n; i++) {
        if (top[i].binary) {
            char b64[((MP_KEY_MAX + 2) / 3) * 4 + 1];
            b64[mp_proto_base64_encode((const unsigned char *)top[i].key, top[i].nkey, b64)] = '\0';
            emit(ctx, b64, "%llu b", (unsigned long long)top[i].count);
        } else {
            emit(ctx, top[i].key, "%llu", (unsigned long long)top[i].count);
        }
    }
    return 0;
}

int mp_stats_report(const struct mp_stats_source *src, const char *args, size_t nargs, mp_stats_emit_fn emit, void *ctx)
{
    if (nargs == 0)
        report_general(src, emit, ctx);
    else if (arg_is(args, nargs, "settings"))
        report_settings(src, emit, ctx);
    else if (arg_is(args, nargs, "slabs"))
        report_slabs(src, emit, ctx);
    else if (arg_is(args, nargs, "items"))
        report_items(src, emit, ctx);
    else if (arg_is(args, nargs, "sizes"))
        emit(ctx, "sizes_status", "%s", "disabled");
    else if (arg_is(args, nargs, "hotkeys"))
        return report_hotkeys(src, args, nargs, emit, ctx);
    else
        return -1;
    return 0;
}

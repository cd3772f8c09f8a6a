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
#include "magpie/log.h"

int mp_stats_setup(struct mp_stats *s, unsigned nthreads)
{
    memset(s, 0, sizeof(*s));
    s->threads = aligned_alloc(64, nthreads * sizeof(struct mp_stats_thread));
    if (!s->threads)
        return -ENOMEM;
    memset(s->threads, 0, nthreads * sizeof(struct mp_stats_thread));
    s->nthreads = nthreads;
    pthread_mutex_init(&s->reset_lock, NULL);
    return 0;
}

void mp_stats_teardown(struct mp_stats *s)
{
    if (!s->threads)
        return;
    free(s->threads);
    s->threads = NULL;
    pthread_mutex_destroy(&s->reset_lock);
}

static void sum_raw(const struct mp_stats *s, struct mp_stats_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < s->nthreads; i++) {
#define MP_STATS_SUM(name) out->name += atomic_load_explicit(&s->threads[i].name, memory_order_relaxed);
        MP_STATS_COUNTERS(MP_STATS_SUM)
#undef MP_STATS_SUM
    }
}

/* Gauges are levels, not counts: a reset leaves them alone. */
static void keep_gauges(struct mp_stats_sum *baseline)
{
    baseline->curr_connections = 0;
    baseline->connection_structures = 0;
}

void mp_stats_sum(struct mp_stats *s, struct mp_stats_sum *out)
{
    sum_raw(s, out);
    pthread_mutex_lock(&s->reset_lock);
#define MP_STATS_SUB(name) out->name -= s->baseline.name;
    MP_STATS_COUNTERS(MP_STATS_SUB)
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
    pthread_mutex_unlock(&s->reset_lock);
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
    uint64_t evictions, evicted_unfetched, reclaimed, expired_unfetched, outofmemory, moved, pages;
    uint64_t small_evicted, small_promoted, ghost_hits;
};

static void class_totals(struct mp_slabs *slabs, struct class_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 1; i <= slabs->nclasses; i++) {
        struct mp_slab_class c = snapshot(slabs, i);
        t->evictions += c.evictions;
        t->evicted_unfetched += c.evicted_unfetched;
        t->reclaimed += c.reclaimed;
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

static void report_general(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_stats_sum sum;
    struct class_totals ct;
    struct rusage ru;
    mp_stats_sum(src->stats, &sum);
    class_totals(&src->cache->slabs, &ct);
    getrusage(RUSAGE_SELF, &ru);
    uint32_t now = mp_clock_now(src->clock);
    const struct mp_table *table = &src->cache->table;

    emit(ctx, "pid", "%ld", (long)getpid());
    emit(ctx, "uptime", "%u", now - 2);
    emit(ctx, "time", "%lld", (long long)mp_clock_wall(src->clock, now));
    emit(ctx, "version", "%s", MP_PROTO_VERSION);
    emit(ctx, "pointer_size", "%d", (int)(8 * sizeof(void *)));
    emit(ctx, "rusage_user", "%.6f", tv_seconds(ru.ru_utime));
    emit(ctx, "rusage_system", "%.6f", tv_seconds(ru.ru_stime));
    emit(ctx, "max_connections", "%d", src->cfg->maxconns);
#define MP_STATS_EMIT(name) emit(ctx, #name, "%llu", (unsigned long long)sum.name);
    MP_STATS_EMIT(curr_connections)
    MP_STATS_EMIT(total_connections)
    MP_STATS_EMIT(rejected_connections)
    MP_STATS_EMIT(connection_structures)
    MP_STATS_EMIT(cmd_get)
    MP_STATS_EMIT(cmd_set)
    MP_STATS_EMIT(cmd_flush)
    MP_STATS_EMIT(cmd_touch)
    MP_STATS_EMIT(get_hits)
    MP_STATS_EMIT(get_misses)
    MP_STATS_EMIT(get_expired)
    MP_STATS_EMIT(get_flushed)
    MP_STATS_EMIT(delete_misses)
    MP_STATS_EMIT(delete_hits)
    MP_STATS_EMIT(incr_misses)
    MP_STATS_EMIT(incr_hits)
    MP_STATS_EMIT(decr_misses)
    MP_STATS_EMIT(decr_hits)
    MP_STATS_EMIT(cas_misses)
    MP_STATS_EMIT(cas_hits)
    MP_STATS_EMIT(cas_badval)
    MP_STATS_EMIT(touch_hits)
    MP_STATS_EMIT(touch_misses)
    MP_STATS_EMIT(store_too_large)
    MP_STATS_EMIT(store_no_memory)
    MP_STATS_EMIT(auth_cmds)
    MP_STATS_EMIT(auth_errors)
    MP_STATS_EMIT(idle_kicks)
    MP_STATS_EMIT(bytes_read)
    MP_STATS_EMIT(bytes_written)
#undef MP_STATS_EMIT
    emit(ctx, "limit_maxbytes", "%zu", src->cfg->mem_limit);
    emit(ctx, "threads", "%d", src->cfg->threads);
    emit(ctx, "conn_yields", "%llu", (unsigned long long)sum.conn_yields);
    emit(ctx, "hash_bytes", "%llu", (unsigned long long)mp_table_overhead(table));
    emit(ctx, "ghost_bytes", "%llu", (unsigned long long)mp_ghost_bytes(&src->cache->lru.ghost));
    emit(ctx, "hash_is_expanding", "%d", 0);
    emit(ctx, "slabs_moved", "%llu", (unsigned long long)ct.moved);
    emit(ctx, "bytes", "%llu", (unsigned long long)mp_table_bytes(table));
    emit(ctx, "curr_items", "%llu", (unsigned long long)mp_table_count(table));
    emit(ctx, "total_items", "%llu", (unsigned long long)sum.total_items);
    emit(ctx, "total_malloced", "%llu", (unsigned long long)ct.pages * src->cache->slabs.page_size);
    emit(ctx, "expired_unfetched", "%llu", (unsigned long long)ct.expired_unfetched);
    emit(ctx, "evicted_unfetched", "%llu", (unsigned long long)ct.evicted_unfetched);
    emit(ctx, "evictions", "%llu", (unsigned long long)ct.evictions);
    emit(ctx, "reclaimed", "%llu", (unsigned long long)ct.reclaimed);
    emit(ctx, "small_evictions", "%llu", (unsigned long long)ct.small_evicted);
    emit(ctx, "small_promotions", "%llu", (unsigned long long)ct.small_promoted);
    emit(ctx, "ghost_hits", "%llu", (unsigned long long)ct.ghost_hits);
}

static void report_settings(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    const struct mp_config *cfg = src->cfg;
    char listen[256] = "";
    for (int i = 0; i < cfg->nlisten; i++) {
        size_t n = strlen(listen);
        snprintf(listen + n, sizeof(listen) - n, "%s%s", i ? "," : "", cfg->listen[i]);
    }
    emit(ctx, "maxbytes", "%zu", cfg->mem_limit);
    emit(ctx, "maxconns", "%d", cfg->maxconns);
    emit(ctx, "tcpport", "%d", cfg->port);
    emit(ctx, "udpport", "%d", 0);
    emit(ctx, "inter", "%s", listen);
    emit(ctx, "verbosity", "%d", mp_log_level()); /* the `verbosity` command changes it */
    emit(ctx, "evictions", "%s", "on");
    emit(ctx, "domain_socket", "%s", cfg->unix_path ? cfg->unix_path : "NULL");
    emit(ctx, "umask", "%o", (unsigned)cfg->unix_mask);
    emit(ctx, "growth_factor", "%.2f", cfg->factor);
    emit(ctx, "chunk_size", "%zu", cfg->min_chunk);
    emit(ctx, "num_threads", "%d", cfg->threads);
    emit(ctx, "cas_enabled", "%s", "yes");
    emit(ctx, "tcp_backlog", "%d", cfg->backlog);
    emit(ctx, "binding_protocol", "%s", "ascii");
    emit(ctx, "item_size_max", "%zu", cfg->item_max);
    emit(ctx, "slab_page_size", "%u", src->cache->slabs.page_size);
    emit(ctx, "slab_reassign", "%s", cfg->lru_maintainer ? "yes" : "no");
    emit(ctx, "slab_automove", "%d", cfg->lru_maintainer && !cfg->automove_off ? 1 : 0);
    emit(ctx, "lru_maintainer_thread", "%s", cfg->lru_maintainer ? "yes" : "no");
    emit(ctx, "idle_timeout", "%d", cfg->idle_timeout);
    emit(ctx, "hash_algorithm", "%s", "xxh3");
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
#define SLAB_STAT(field, fmt, val)                                                                                     \
    snprintf(name, sizeof(name), "%u:%s", i, field);                                                                   \
    emit(ctx, name, fmt, val);
        SLAB_STAT("chunk_size", "%u", snap.size)
        SLAB_STAT("chunks_per_page", "%u", snap.perpage)
        SLAB_STAT("total_pages", "%u", snap.npages)
        SLAB_STAT("total_chunks", "%llu", (unsigned long long)total)
        SLAB_STAT("used_chunks", "%llu", (unsigned long long)snap.used)
        SLAB_STAT("free_chunks", "%llu", (unsigned long long)(total - snap.used))
        SLAB_STAT("free_chunks_end", "%llu", (unsigned long long)never_used)
#undef SLAB_STAT
    }
    emit(ctx, "active_slabs", "%u", active);
    emit(ctx, "total_malloced", "%llu", (unsigned long long)pages * slabs->page_size);
}

static void report_items(const struct mp_stats_source *src, mp_stats_emit_fn emit, void *ctx)
{
    struct mp_slabs *slabs = &src->cache->slabs;
    char name[64];
    for (unsigned i = 1; i <= slabs->nclasses; i++) {
        struct mp_slab_class snap = snapshot(slabs, i);
        if (snap.used == 0)
            continue; /* memcached lists only classes that hold items */
#define ITEM_STAT(field, val)                                                                                          \
    snprintf(name, sizeof(name), "items:%u:%s", i, field);                                                             \
    emit(ctx, name, "%llu", (unsigned long long)(val));
        ITEM_STAT("number", snap.used)
        ITEM_STAT("evicted", snap.evictions)
        ITEM_STAT("evicted_nonzero", snap.evicted_nonzero)
        ITEM_STAT("outofmemory", snap.outofmemory)
        ITEM_STAT("reclaimed", snap.reclaimed)
        ITEM_STAT("expired_unfetched", snap.expired_unfetched)
        ITEM_STAT("evicted_unfetched", snap.evicted_unfetched)
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
    else
        return -1;
    return 0;
}

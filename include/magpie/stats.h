/*
 * stats: per-thread counters, summed on demand, and the `stats` command's reports.
 *
 * Every worker (and the acceptor) owns one struct mp_stats_thread and is the only writer of it:
 * a counter is bumped with a relaxed load and store, never a fetch_add, so the request path has
 * no shared counter and no locked instruction. `stats` sums all threads' blocks with relaxed
 * loads; the sum is a snapshot, each figure exact to within the requests in flight.
 *
 * The counters are declared once, in MP_STATS_COUNTERS, with memcached's names; the struct, the
 * summing and the report all come from that table.
 */
#ifndef MAGPIE_STATS_H
#define MAGPIE_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct mp_cache;
struct mp_clock;
struct mp_config;
struct mp_hotkeys;
struct mp_tls;

#define MP_STATS_COUNTERS(X)                                                                                           \
    X(curr_connections)                                                                                                \
    X(total_connections)                                                                                               \
    X(rejected_connections)                                                                                            \
    X(connection_structures)                                                                                           \
    X(cmd_get)                                                                                                         \
    X(cmd_set)                                                                                                         \
    X(cmd_flush)                                                                                                       \
    X(cmd_touch)                                                                                                       \
    X(get_hits)                                                                                                        \
    X(get_misses)                                                                                                      \
    X(get_expired)                                                                                                     \
    X(get_flushed)                                                                                                     \
    X(delete_misses)                                                                                                   \
    X(delete_hits)                                                                                                     \
    X(incr_misses)                                                                                                     \
    X(incr_hits)                                                                                                       \
    X(decr_misses)                                                                                                     \
    X(decr_hits)                                                                                                       \
    X(cas_misses)                                                                                                      \
    X(cas_hits)                                                                                                        \
    X(cas_badval)                                                                                                      \
    X(touch_hits)                                                                                                      \
    X(touch_misses)                                                                                                    \
    X(store_too_large)                                                                                                 \
    X(store_no_memory)                                                                                                 \
    X(auth_cmds)                                                                                                       \
    X(auth_errors)                                                                                                     \
    X(ssl_handshake_errors)                                                                                            \
    X(ssl_new_sessions)                                                                                                \
    X(idle_kicks)                                                                                                      \
    X(bytes_read)                                                                                                      \
    X(bytes_written)                                                                                                   \
    X(conn_yields)                                                                                                     \
    X(total_items)

struct mp_stats_thread {
#define MP_STATS_FIELD(name) _Atomic uint64_t name;
    MP_STATS_COUNTERS(MP_STATS_FIELD)
#undef MP_STATS_FIELD
} __attribute__((aligned(64)));

struct mp_stats_sum {
#define MP_STATS_FIELD(name) uint64_t name;
    MP_STATS_COUNTERS(MP_STATS_FIELD)
#undef MP_STATS_FIELD
};

/* Only the owning thread calls these on its own block. */
static inline void mp_stats_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}
#define MP_STAT_INC(st, name) mp_stats_add(&(st)->name, 1)
#define MP_STAT_ADD(st, name, n) mp_stats_add(&(st)->name, (n))
#define MP_STAT_DEC(st, name) mp_stats_add(&(st)->name, (uint64_t)-1)

struct mp_stats {
    unsigned nthreads;
    struct mp_stats_thread *threads;
    pthread_mutex_t reset_lock;
    struct mp_stats_sum baseline; /* `stats reset` subtracts this instead of writing others' blocks */
};

int mp_stats_setup(struct mp_stats *s, unsigned nthreads);
void mp_stats_teardown(struct mp_stats *s);
/* The sum over threads since the last reset. */
void mp_stats_sum(struct mp_stats *s, struct mp_stats_sum *out);
/* `stats reset`: counters start again from zero (gauges such as curr_connections do not). */
void mp_stats_reset(struct mp_stats *s);

/* What a report needs to see; read-only. */
struct mp_stats_source {
    const struct mp_config *cfg;
    struct mp_cache *cache;
    const struct mp_clock *clock;
    struct mp_stats *stats;
    struct mp_hotkeys *hotkeys; /* NULL when hot keys are off */
    const struct mp_tls *tls;   /* -Z: the TLS context (when its certificates were loaded); NULL when off */
};

/* Where report lines go: called once per "STAT name value" line. */
typedef void (*mp_stats_emit_fn)(void *ctx, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The report for `stats [args]` (general, settings, items, slabs, sizes, hotkeys [K]): emits its
 * lines and returns 0, or returns -1 for an argument it does not know (the caller answers
 * "ERROR"). "reset" is not a report: see mp_stats_reset.
 *
 * `stats hotkeys [K]` (hotkeys.h): the K most requested keys (default 10, at most 100) as
 * "STAT <key> <requests>", most requested first. A binary key (meta's b flag) is shown in
 * base64 with " b" after its count, as meta commands spell such keys. With hot keys off, the one
 * line "STAT hotkeys_status disabled". */
int mp_stats_report(const struct mp_stats_source *src, const char *args, size_t nargs, mp_stats_emit_fn emit,
                    void *ctx);

#endif

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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mp_cache;
struct mp_clock;
struct mp_config;
struct mp_hotkeys;
struct mp_tls;
struct mp_snapshot_status;
struct mp_warm_status;

#define MP_STATS_COUNTERS(X)                                                                                           \
    X(curr_connections)                                                                                                \
    X(total_connections)                                                                                               \
    X(rejected_connections)                                                                                            \
    X(connection_structures)                                                                                           \
    X(cmd_get)                                                                                                         \
    X(cmd_flush)                                                                                                       \
    X(cmd_touch)                                                                                                       \
    X(cmd_meta)                                                                                                        \
    X(get_misses)                                                                                                      \
    X(get_expired)                                                                                                     \
    X(get_flushed)                                                                                                     \
    X(delete_misses)                                                                                                   \
    X(incr_misses)                                                                                                     \
    X(decr_misses)                                                                                                     \
    X(cas_misses)                                                                                                      \
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
    X(total_items)                                                                                                     \
    X(listen_disabled_num)                                                                                             \
    X(time_in_listen_disabled_us)                                                                                      \
    X(accept_paused)

/* The counters memcached keeps per slab class (stats slabs), each thread's per class: the general
 * figures of the same names are their sums. The item's class is the one it lives in. */
#define MP_STATS_CLASS_COUNTERS(X)                                                                                     \
    X(get_hits)                                                                                                        \
    X(cmd_set)                                                                                                         \
    X(delete_hits)                                                                                                     \
    X(incr_hits)                                                                                                       \
    X(decr_hits)                                                                                                       \
    X(cas_hits)                                                                                                        \
    X(cas_badval)                                                                                                      \
    X(touch_hits)

struct mp_stats_class {
#define MP_STATS_FIELD(name) _Atomic uint64_t name;
    MP_STATS_CLASS_COUNTERS(MP_STATS_FIELD)
#undef MP_STATS_FIELD
};

struct mp_stats_class_sum {
#define MP_STATS_FIELD(name) uint64_t name;
    MP_STATS_CLASS_COUNTERS(MP_STATS_FIELD)
#undef MP_STATS_FIELD
};

struct mp_stats_prefixes;

struct mp_stats_thread {
#define MP_STATS_FIELD(name) _Atomic uint64_t name;
    MP_STATS_COUNTERS(MP_STATS_FIELD)
#undef MP_STATS_FIELD
    struct mp_stats_class *classes;     /* [0, nclasses]: 64 bytes a class */
    struct mp_stats_prefixes *prefixes; /* stats detail: this thread's per-prefix counts */
} __attribute__((aligned(64)));

struct mp_stats_sum {
#define MP_STATS_FIELD(name) uint64_t name;
    MP_STATS_COUNTERS(MP_STATS_FIELD)
    MP_STATS_CLASS_COUNTERS(MP_STATS_FIELD)
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
#define MP_STAT_CLASS_INC(st, cls, name) mp_stats_add(&(st)->classes[cls].name, 1)

struct mp_stats {
    unsigned nthreads;
    unsigned nclasses;
    struct mp_stats_thread *threads;
    pthread_mutex_t reset_lock;
    struct mp_stats_sum baseline; /* `stats reset` subtracts this instead of writing others' blocks */
    struct mp_stats_class_sum *class_baseline;
    _Atomic bool detail; /* stats detail on: gets, sets and deletes are counted per key prefix */
};

/* Blocks for nthreads threads, each with counters for classes 0..nclasses. 0 or -ENOMEM. */
int mp_stats_setup(struct mp_stats *s, unsigned nthreads, unsigned nclasses);
void mp_stats_teardown(struct mp_stats *s);
/* The sum over threads (and, for the per-class counters, over classes) since the last reset. */
void mp_stats_sum(struct mp_stats *s, struct mp_stats_sum *out);
/* One class's counters, summed over threads, since the last reset. */
void mp_stats_sum_class(struct mp_stats *s, unsigned cls, struct mp_stats_class_sum *out);
/* `stats reset`: counters start again from zero (gauges such as curr_connections do not). */
void mp_stats_reset(struct mp_stats *s);

/*
 * stats detail (memcached's stats_prefix): while on, each get, set and delete of a key with a
 * ':' in it is counted under the key's prefix (the bytes before the first ':'), in the calling
 * thread's own table, which only it writes; the dump takes each table's lock in turn. A table
 * keeps at most MP_STATS_PREFIXES_MAX prefixes; later ones are not counted.
 */
#define MP_STATS_PREFIXES_MAX 4096
enum mp_stats_prefix_op { MP_PREFIX_GET, MP_PREFIX_HIT, MP_PREFIX_SET, MP_PREFIX_DEL };
void mp_stats_detail_set(struct mp_stats *s, bool on);
static inline bool mp_stats_detail_on(struct mp_stats *s)
{
    return atomic_load_explicit(&s->detail, memory_order_relaxed);
}
/* Count one operation on a key; `st` is the calling thread's block. */
void mp_stats_prefix_count(struct mp_stats_thread *st, const char *key, size_t nkey, enum mp_stats_prefix_op op);
/* "PREFIX <p> get <n> hit <n> set <n> del <n>\r\n" for every prefix counted (summed over threads),
 * then "END\r\n"; malloc'd, *len its length. NULL when out of memory. */
char *mp_stats_detail_dump(struct mp_stats *s, size_t *len);

/* Figures of the log stream (watch), which the server keeps: reported as memcached's log_*. */
struct mp_stats_log {
    uint64_t worker_dropped, worker_written, watcher_skipped, watcher_sent, watchers;
    uint32_t watcher_buf, worker_buf;
};

/* What a report needs to see; read-only. */
struct mp_stats_source {
    const struct mp_config *cfg;
    struct mp_cache *cache;
    const struct mp_clock *clock;
    struct mp_stats *stats;
    struct mp_hotkeys *hotkeys; /* NULL when hot keys are off */
    const char *event_lib;      /* the event library's version (libuv's), for memcached's `libevent` */
    struct mp_stats_log log;
    const struct mp_tls *tls; /* -Z: the TLS context (when its certificates were loaded); NULL when off */
    const struct mp_snapshot_status *snapshot; /* with -e (snapshot.h); NULL otherwise */
    const struct mp_warm_status *warm;         /* with --warm-from (warm.h); NULL otherwise */
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

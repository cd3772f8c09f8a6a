/*
 * prom: the server's statistics in the Prometheus text exposition format, version 0.0.4.
 *
 * memcached's metrics are made from the very reports `stats` answers (stats.h: `stats`, `stats
 * settings`, `stats items`, `stats slabs`), collected into a set of (report, name, value)
 * (metrics.h collects it), and
 * named, labelled and typed as the official memcached_exporter names them, so dashboards and
 * alerts written for it work unchanged. One table in prom.c maps each stat to its metric; a stat
 * the set does not hold is left out, never invented, so a stat added to a report later (issue
 * 16's, say) appears as its metric with no change here, and one new row maps a new stat. Where
 * the exporter types a metric as a counter but names it without "_total", which Prometheus's
 * linter rejects, the name is kept and the type declared "untyped".
 *
 * Magpie's own metrics are named magpie_*: stats the exporter does not read (page moves,
 * get_expired, ...), per-command latency histograms (latency.h) and, only when asked for, the
 * hot keys (hotkeys.h).
 *
 * Nothing here does I/O: rendering appends to a caller's buffer. The metrics endpoint
 * (metrics.h) calls it on the acceptor's loop.
 */
#ifndef MAGPIE_PROM_H
#define MAGPIE_PROM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/hotkeys.h"
#include "magpie/latency.h"
#include "magpie/slab.h"

/* A growing text buffer; `failed` once an allocation failed (the text is then incomplete). */
struct mp_prom_buf {
    char *p;
    size_t len, cap;
    bool failed;
};

void mp_prom_buf_printf(struct mp_prom_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mp_prom_buf_free(struct mp_prom_buf *b);

/* The reports a stat comes from. */
enum mp_prom_report { MP_PROM_GENERAL, MP_PROM_SETTINGS, MP_PROM_ITEMS, MP_PROM_SLABS, MP_PROM_NREPORTS };

#define MP_PROM_NAME_MAX 64
#define MP_PROM_VALUE_MAX 64

struct mp_prom_stat {
    uint8_t report;
    char name[MP_PROM_NAME_MAX];
    char value[MP_PROM_VALUE_MAX];
};

/* A set of stats as the reports spell them ("curr_items", "items:5:number", "5:chunk_size"). */
struct mp_prom_stats {
    struct mp_prom_stat *v;
    size_t n, cap;
    bool sorted, failed;
    uint64_t classes[2][(MP_SLAB_CLASSES_MAX + 64) / 64]; /* class ids seen in items, slabs */
};

void mp_prom_stats_init(struct mp_prom_stats *s);
void mp_prom_stats_deinit(struct mp_prom_stats *s);
void mp_prom_stats_add(struct mp_prom_stats *s, enum mp_prom_report report, const char *name, const char *value);

/* What a page of metrics shows besides the stats; NULL members are left out. */
struct mp_prom_extra {
    const struct mp_latency_sum *latency;
    const struct mp_hotkey *hotkeys;
    size_t nhotkeys;
};

/* The page: memcached_up, the mapped stats, then Magpie's own. Returns 0, or -1 when out of
 * memory (b->failed). */
int mp_prom_render(struct mp_prom_stats *s, const struct mp_prom_extra *extra, struct mp_prom_buf *b);

#endif

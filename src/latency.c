/* latency: see include/magpie/latency.h */
#include "magpie/latency.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/stats.h"

const uint64_t MP_LATENCY_BOUNDS_NS[MP_LATENCY_NBOUNDS] = {
    1000,    2000,    5000,     10000,    20000,    50000,     100000,    200000,    500000,     1000000,
    2000000, 5000000, 10000000, 20000000, 50000000, 100000000, 200000000, 500000000, 1000000000,
};

int mp_latency_setup(struct mp_latency *l, unsigned nthreads)
{
    memset(l, 0, sizeof(*l));
    l->threads = aligned_alloc(64, nthreads * sizeof(struct mp_latency_thread));
    if (!l->threads)
        return -ENOMEM;
    memset(l->threads, 0, nthreads * sizeof(struct mp_latency_thread));
    l->nthreads = nthreads;
    return 0;
}

void mp_latency_teardown(struct mp_latency *l)
{
    free(l->threads);
    l->threads = NULL;
    l->nthreads = 0;
}

unsigned mp_latency_bucket(uint64_t ns)
{
    /* Most rounds take microseconds: a walk from the small end is a few compares. */
    unsigned i = 0;
    while (i < MP_LATENCY_NBOUNDS && ns > MP_LATENCY_BOUNDS_NS[i])
        i++;
    return i;
}

void mp_latency_record(struct mp_latency_thread *t, unsigned cmd, uint64_t n, uint64_t ns)
{
    struct mp_latency_hist *h = &t->cmd[cmd];
    mp_stats_add(&h->bucket[mp_latency_bucket(ns)], n);
    mp_stats_add(&h->sum_ns, n * ns);
}

void mp_latency_end_at(struct mp_latency_batch *b, uint64_t now_ns)
{
    uint64_t ns = now_ns > b->start_ns ? now_ns - b->start_ns : 0;
    for (uint32_t mask = b->mask; mask; mask &= mask - 1) {
        unsigned cmd = (unsigned)__builtin_ctz(mask);
        mp_latency_record(b->t, cmd, b->n[cmd], ns);
        b->n[cmd] = 0;
    }
    b->mask = 0;
}

void mp_latency_sum(const struct mp_latency *l, struct mp_latency_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < l->nthreads; i++) {
        const struct mp_latency_thread *t = &l->threads[i];
        for (unsigned c = 0; c < MP_LATENCY_NCMDS; c++) {
            for (unsigned k = 0; k < MP_LATENCY_NBUCKETS; k++)
                out->bucket[c][k] += atomic_load_explicit(&t->cmd[c].bucket[k], memory_order_relaxed);
            out->sum_ns[c] += atomic_load_explicit(&t->cmd[c].sum_ns, memory_order_relaxed);
        }
    }
}

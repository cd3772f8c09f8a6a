/*
 * latency: per-command server-side latency histograms, kept per worker and summed on a scrape.
 *
 * What is timed: a command counts from the read that brought its command line to the end of the
 * round of processing that read started, when the replies gathered in the round are handed to
 * the kernel (or queued behind a write the kernel has not taken yet, which is then part of the
 * next round's time). All commands of a round share its start and its end, which is also when
 * their replies leave together, so timing costs two clock reads per round, not per command: a
 * connection notes the commands it runs in a small batch of its own (struct mp_latency_batch)
 * and adds the batch to its worker's histograms when the round ends. A storage command whose
 * value arrives over several reads is counted in the round that read its command line.
 *
 * Each worker owns one struct mp_latency_thread and is its only writer: relaxed load and store,
 * no fetch_add, as stats.h's counters. A scrape sums the blocks of all workers with relaxed
 * loads; the sum is a snapshot, each bucket exact to within the rounds in flight.
 *
 * Buckets: upper bounds in 1-2-5 steps from 1 us to 1 s (19 of them), then +Inf; the bounds are
 * MP_LATENCY_BOUNDS_NS. Histograms are indexed by the protocol's command (enum mp_cmd).
 */
#ifndef MAGPIE_LATENCY_H
#define MAGPIE_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "magpie/proto.h"

#define MP_LATENCY_NCMDS (MP_CMD_ERROR + 1)
#define MP_LATENCY_NBOUNDS 19
#define MP_LATENCY_NBUCKETS (MP_LATENCY_NBOUNDS + 1) /* the last is +Inf */

extern const uint64_t MP_LATENCY_BOUNDS_NS[MP_LATENCY_NBOUNDS];

/* One command's histogram: counts per bucket (not cumulative) and the sum of the times. */
struct mp_latency_hist {
    _Atomic uint64_t bucket[MP_LATENCY_NBUCKETS];
    _Atomic uint64_t sum_ns;
};

struct mp_latency_thread {
    struct mp_latency_hist cmd[MP_LATENCY_NCMDS];
} __attribute__((aligned(64)));

struct mp_latency {
    unsigned nthreads;
    struct mp_latency_thread *threads;
};

/* The same, summed over the workers: plain numbers for a report. */
struct mp_latency_sum {
    uint64_t bucket[MP_LATENCY_NCMDS][MP_LATENCY_NBUCKETS];
    uint64_t sum_ns[MP_LATENCY_NCMDS];
};

int mp_latency_setup(struct mp_latency *l, unsigned nthreads);
void mp_latency_teardown(struct mp_latency *l);
void mp_latency_sum(const struct mp_latency *l, struct mp_latency_sum *out);

/* Add n commands of one kind that each took ns nanoseconds (the owning worker only). */
void mp_latency_record(struct mp_latency_thread *t, unsigned cmd, uint64_t n, uint64_t ns);

/* The bucket a time falls in: the first whose bound is at least ns, or the +Inf one. */
unsigned mp_latency_bucket(uint64_t ns);

/* ---- a connection's batch ------------------------------------------------------------------ */

struct mp_latency_batch {
    struct mp_latency_thread *t; /* the worker's block; NULL when latency is not measured */
    uint64_t start_ns;
    uint32_t mask; /* commands with n[cmd] > 0 */
    uint32_t n[MP_LATENCY_NCMDS];
};

_Static_assert(MP_LATENCY_NCMDS <= 32, "the batch's mask has a bit per command");

static inline uint64_t mp_latency_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* t: the worker's block, or NULL to measure nothing. */
static inline void mp_latency_batch_init(struct mp_latency_batch *b, struct mp_latency_thread *t)
{
    *b = (struct mp_latency_batch){.t = t};
}

/* A read arrived: the start of a round. */
static inline void mp_latency_begin(struct mp_latency_batch *b)
{
    if (b->t)
        b->start_ns = mp_latency_now_ns();
}

/* A command of the round ran. */
static inline void mp_latency_note(struct mp_latency_batch *b, unsigned cmd)
{
    if (!b->t)
        return;
    b->n[cmd]++;
    b->mask |= 1u << cmd;
}

/* The round ended at now_ns: its commands go into the histograms and the batch empties. */
void mp_latency_end_at(struct mp_latency_batch *b, uint64_t now_ns);

/* The round ended now. No clock read when it ran nothing. */
static inline void mp_latency_end(struct mp_latency_batch *b)
{
    if (b->mask)
        mp_latency_end_at(b, mp_latency_now_ns());
}

#endif

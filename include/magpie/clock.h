/*
 * clock: the coarse server clock and memcached's TTL rules.
 *
 * Time inside the server is "relative seconds": seconds since `started`, which is set two seconds
 * before the real start so that relative time is never 0 or 1 while serving (0 means "never
 * expires" and 1 means "already expired" in an item's exptime). The main loop ticks the clock once
 * a second; readers load it relaxed. Every engine function takes `now` as a parameter so unit
 * tests can inject time.
 */
#ifndef MAGPIE_CLOCK_H
#define MAGPIE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Relative times larger than 30 days are absolute Unix times (memcached's REALTIME_MAXDELTA). */
#define MP_CLOCK_MAX_DELTA (60 * 60 * 24 * 30)

struct mp_clock {
    time_t started;       /* Unix time of relative second 0 */
    _Atomic uint32_t now; /* current relative second */
};

void mp_clock_setup(struct mp_clock *clk, time_t wall_now);
/* Advance to the given wall-clock time; called by the main loop's one-second timer. */
void mp_clock_tick(struct mp_clock *clk, time_t wall_now);
uint32_t mp_clock_now(const struct mp_clock *clk);
/* The Unix time of a relative time. */
time_t mp_clock_wall(const struct mp_clock *clk, uint32_t rel);

/*
 * An item exptime from a client's exptime, as memcached computes it: 0 never expires; a negative
 * value is already expired; up to 30 days is relative to now; larger is an absolute Unix time, and
 * one at or before the server started is already expired. Returns 0 (never) or a relative time,
 * where 1 is the earliest (already expired).
 */
uint32_t mp_clock_exptime(const struct mp_clock *clk, int64_t client_exptime, uint32_t now);

#endif

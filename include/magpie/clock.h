/*
 * clock: the coarse server clock and memcached's TTL rules.
 *
 * Time inside the server is "relative seconds": seconds elapsed since the start, counted from 2
 * so that relative time is never 0 or 1 while serving (0 means "never expires" and 1 means
 * "already expired" in an item's exptime). Elapsed time comes from CLOCK_MONOTONIC, as memcached's
 * does: when the wall clock is stepped (NTP, a VM restored) TTLs and idle timeouts still count
 * real seconds. The wall clock is used only to turn absolute exptimes (over 30 days) into relative
 * ones and for `stats time`: a tick that finds the wall clock stepped (by two seconds or more)
 * records which Unix time relative second 0 is by the wall clock now (`epoch`), so an absolute
 * exptime means that time on the wall clock as it reads today.
 *
 * The acceptor's loop ticks the clock once a second; readers load it relaxed. Every engine
 * function takes `now` as a parameter so unit tests can inject time; mp_clock_setup and
 * mp_clock_tick take the two clocks' readings for the same reason, and the _now variants read
 * the system's.
 */
#ifndef MAGPIE_CLOCK_H
#define MAGPIE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Relative times larger than 30 days are absolute Unix times (memcached's REALTIME_MAXDELTA). */
#define MP_CLOCK_MAX_DELTA (60 * 60 * 24 * 30)

struct mp_clock {
    int64_t mono_zero;     /* CLOCK_MONOTONIC seconds at relative second 0 */
    _Atomic int64_t epoch; /* Unix time of relative second 0, by the wall clock at the last tick */
    _Atomic uint32_t now;  /* current relative second */
};

/* Start at relative second 2, at these readings of the wall and monotonic clocks (seconds). */
void mp_clock_setup(struct mp_clock *clk, time_t wall_now, int64_t mono_now);
/* Advance to the given readings: relative time from the monotonic one, the epoch from both. */
void mp_clock_tick(struct mp_clock *clk, time_t wall_now, int64_t mono_now);
/* The same with the system's clocks. */
void mp_clock_setup_now(struct mp_clock *clk);
void mp_clock_tick_now(struct mp_clock *clk);

uint32_t mp_clock_now(const struct mp_clock *clk);
/* The Unix time of a relative time, by the wall clock as of the last tick. */
time_t mp_clock_wall(const struct mp_clock *clk, uint32_t rel);

/*
 * An item exptime from a client's exptime, as memcached computes it: 0 never expires; a negative
 * value is already expired; up to 30 days is relative to now; larger is an absolute Unix time, and
 * one at or before relative second 0 is already expired. Returns 0 (never) or a relative time,
 * where 1 is the earliest (already expired).
 */
uint32_t mp_clock_exptime(const struct mp_clock *clk, int64_t client_exptime, uint32_t now);

#endif

/* clock: see include/magpie/clock.h */
#include "magpie/clock.h"

void mp_clock_setup(struct mp_clock *clk, time_t wall_now)
{
    /* Two seconds before the real start, as memcached does, so relative time starts at 2. */
    clk->started = wall_now - 2;
    atomic_store_explicit(&clk->now, 2, memory_order_relaxed);
}

void mp_clock_tick(struct mp_clock *clk, time_t wall_now)
{
    uint32_t rel = wall_now > clk->started ? (uint32_t)(wall_now - clk->started) : 2;
    atomic_store_explicit(&clk->now, rel, memory_order_relaxed);
}

uint32_t mp_clock_now(const struct mp_clock *clk)
{
    return atomic_load_explicit(&((struct mp_clock *)clk)->now, memory_order_relaxed);
}

time_t mp_clock_wall(const struct mp_clock *clk, uint32_t rel)
{
    return clk->started + (time_t)rel;
}

uint32_t mp_clock_exptime(const struct mp_clock *clk, int64_t client_exptime, uint32_t now)
{
    /* memcached turns a negative exptime into one just past the relative range, which is an
     * absolute time long before the server started: already expired. */
    if (client_exptime < 0)
        return 1;
    if (client_exptime == 0)
        return 0;
    if (client_exptime > MP_CLOCK_MAX_DELTA) {
        if (client_exptime <= (int64_t)clk->started)
            return 1;
        int64_t rel = client_exptime - (int64_t)clk->started;
        return rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
    }
    return now + (uint32_t)client_exptime;
}

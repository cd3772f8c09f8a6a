/* clock: see include/magpie/clock.h */
#include "magpie/clock.h"

void mp_clock_setup(struct mp_clock *clk, time_t wall_now, int64_t mono_now)
{
    /* Two seconds before the real start, as memcached does, so relative time starts at 2. */
    clk->mono_zero = mono_now - 2;
    atomic_store_explicit(&clk->epoch, (int64_t)wall_now - 2, memory_order_relaxed);
    atomic_store_explicit(&clk->now, 2, memory_order_relaxed);
}

void mp_clock_tick(struct mp_clock *clk, time_t wall_now, int64_t mono_now)
{
    int64_t rel = mono_now - clk->mono_zero;
    if (rel < 2)
        rel = 2;
    if (rel > UINT32_MAX)
        rel = UINT32_MAX;
    /* The two clocks' whole seconds turn over at different moments, so wall - rel wobbles by one
     * from tick to tick; only a real step of the wall clock moves the epoch, so `stats time`
     * counts one a tick. */
    int64_t epoch = atomic_load_explicit(&clk->epoch, memory_order_relaxed), fresh = (int64_t)wall_now - rel;
    if (fresh > epoch + 1 || fresh < epoch - 1)
        atomic_store_explicit(&clk->epoch, fresh, memory_order_relaxed);
    atomic_store_explicit(&clk->now, (uint32_t)rel, memory_order_relaxed);
}

static int64_t mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

void mp_clock_setup_now(struct mp_clock *clk)
{
    mp_clock_setup(clk, time(NULL), mono_seconds());
}

void mp_clock_tick_now(struct mp_clock *clk)
{
    mp_clock_tick(clk, time(NULL), mono_seconds());
}

uint32_t mp_clock_now(const struct mp_clock *clk)
{
    return atomic_load_explicit(&((struct mp_clock *)clk)->now, memory_order_relaxed);
}

time_t mp_clock_wall(const struct mp_clock *clk, uint32_t rel)
{
    return (time_t)(atomic_load_explicit(&((struct mp_clock *)clk)->epoch, memory_order_relaxed) + rel);
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
        int64_t epoch = atomic_load_explicit(&((struct mp_clock *)clk)->epoch, memory_order_relaxed);
        if (client_exptime <= epoch)
            return 1;
        int64_t rel = client_exptime - epoch;
        return rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
    }
    return now + (uint32_t)client_exptime;
}

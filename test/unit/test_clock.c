/* Unit tests for clock: relative time and memcached's exptime rules (realtime()). */
#include <check.h>
#include <stdint.h>

#include "helpers.h"
#include "magpie/clock.h"

#define WALL ((time_t)1700000000) /* the wall-clock time the tests' server starts at */
#define MONO ((int64_t)5000)      /* and the monotonic clock's reading then */
#define DAYS30 ((int64_t)60 * 60 * 24 * 30)
#define HOUR ((int64_t)3600)

static struct mp_clock clk;

static void setup(void)
{
    mp_clock_setup(&clk, WALL, MONO);
}

START_TEST(test_clock_starts_at_relative_two)
{
    ck_assert_uint_eq(mp_clock_now(&clk), 2);
    ck_assert_int_eq(mp_clock_wall(&clk, 2), WALL);
}
END_TEST

START_TEST(test_tick_follows_elapsed_time)
{
    mp_clock_tick(&clk, WALL + 100, MONO + 100);
    ck_assert_uint_eq(mp_clock_now(&clk), 102);
    ck_assert_int_eq(mp_clock_wall(&clk, mp_clock_now(&clk)), WALL + 100);
}
END_TEST

/* The wall clock stepped back an hour, then forward five: relative time counts the seconds that
 * passed, and the wall time `stats time` reports is the wall clock's. */
START_TEST(test_a_stepped_wall_clock_does_not_move_relative_time)
{
    mp_clock_tick(&clk, WALL + 10 - HOUR, MONO + 10);
    ck_assert_uint_eq(mp_clock_now(&clk), 12);
    ck_assert_int_eq(mp_clock_wall(&clk, 12), WALL + 10 - HOUR);
    mp_clock_tick(&clk, WALL + 20 + 5 * HOUR, MONO + 20);
    ck_assert_uint_eq(mp_clock_now(&clk), 22);
    ck_assert_int_eq(mp_clock_wall(&clk, 22), WALL + 20 + 5 * HOUR);
}
END_TEST

/* The two clocks' seconds turn over at different moments: a tick that reads the wall clock a
 * second "ahead" of the monotonic one is not a step, and `stats time` keeps counting one a tick. */
START_TEST(test_a_one_second_wobble_between_the_clocks_is_not_a_step)
{
    mp_clock_tick(&clk, WALL + 11, MONO + 10);
    ck_assert_int_eq(mp_clock_wall(&clk, mp_clock_now(&clk)), WALL + 10);
    mp_clock_tick(&clk, WALL + 11, MONO + 11);
    ck_assert_int_eq(mp_clock_wall(&clk, mp_clock_now(&clk)), WALL + 11);
    mp_clock_tick(&clk, WALL + 11, MONO + 12);
    ck_assert_int_eq(mp_clock_wall(&clk, mp_clock_now(&clk)), WALL + 12);
    mp_clock_tick(&clk, WALL + 15, MONO + 13); /* two seconds off: a step */
    ck_assert_int_eq(mp_clock_wall(&clk, mp_clock_now(&clk)), WALL + 15);
}
END_TEST

START_TEST(test_tick_to_a_monotonic_reading_before_the_start_stays_at_two)
{
    mp_clock_tick(&clk, WALL + 50, MONO - 1000);
    ck_assert_uint_eq(mp_clock_now(&clk), 2);
}
END_TEST

START_TEST(test_exptime_zero_never_expires)
{
    ck_assert_uint_eq(mp_clock_exptime(&clk, 0, 500), 0);
}
END_TEST

START_TEST(test_negative_exptime_is_already_expired)
{
    ck_assert_uint_eq(mp_clock_exptime(&clk, -1, 500), 1);
    ck_assert_uint_eq(mp_clock_exptime(&clk, INT32_MIN, 500), 1);
    ck_assert_uint_eq(mp_clock_exptime(&clk, INT64_MIN, 500), 1);
}
END_TEST

START_TEST(test_exptime_up_to_30_days_is_relative_to_now)
{
    ck_assert_uint_eq(mp_clock_exptime(&clk, 1, 500), 501);
    ck_assert_uint_eq(mp_clock_exptime(&clk, 60, 500), 560);
    ck_assert_uint_eq(mp_clock_exptime(&clk, DAYS30, 500), 500 + (uint32_t)DAYS30);
    ck_assert_uint_eq(mp_clock_exptime(&clk, DAYS30, 7), 7 + (uint32_t)DAYS30);
}
END_TEST

START_TEST(test_exptime_over_30_days_is_absolute_unix_time)
{
    /* relative to the server's start (by the wall clock), not to now */
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + 100, 500), 102);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + 100, 50), 102);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + (int64_t)DAYS30 * 2, 2), 2 + 2 * (uint32_t)DAYS30);
}
END_TEST

START_TEST(test_absolute_exptime_at_or_before_the_start_is_already_expired)
{
    ck_assert_uint_eq(mp_clock_exptime(&clk, DAYS30 + 1, 500), 1); /* 1970 */
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL - 2, 500), 1);   /* exactly relative second 0 */
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL - 1000, 500), 1);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL - 1, 500), 1); /* relative second 1 */
}
END_TEST

START_TEST(test_absolute_exptime_past_now_but_after_start_is_already_due)
{
    /* An absolute time after the start but before now maps to a relative time <= now, which the
     * engine treats as expired (item.h: exptime != 0 && exptime <= now). */
    uint32_t now = 1000;
    uint32_t rel = mp_clock_exptime(&clk, WALL + 10, now);
    ck_assert_uint_eq(rel, 12);
    ck_assert_uint_le(rel, now);
}
END_TEST

/* An absolute exptime is a time on the wall clock as it reads now: after the wall clock was
 * stepped forward five hours, "in 60 seconds" by it is 60 seconds of relative time away. */
START_TEST(test_absolute_exptime_follows_the_wall_clock_as_it_reads_now)
{
    mp_clock_tick(&clk, WALL + 100 + 5 * HOUR, MONO + 100);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + 100 + 5 * HOUR + 60, 102), 162);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + 100 + 5 * HOUR - 60, 102), 42); /* past: due */
    mp_clock_tick(&clk, WALL + 200 - HOUR, MONO + 200);
    ck_assert_uint_eq(mp_clock_exptime(&clk, WALL + 200 - HOUR + 60, 202), 262);
}
END_TEST

START_TEST(test_far_future_absolute_exptime_saturates)
{
    ck_assert_uint_eq(mp_clock_exptime(&clk, (int64_t)WALL + ((int64_t)1 << 40), 2), UINT32_MAX);
}
END_TEST

static Suite *clock_suite(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("clock");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_clock_starts_at_relative_two);
    tcase_add_test(tc, test_tick_follows_elapsed_time);
    tcase_add_test(tc, test_a_stepped_wall_clock_does_not_move_relative_time);
    tcase_add_test(tc, test_a_one_second_wobble_between_the_clocks_is_not_a_step);
    tcase_add_test(tc, test_tick_to_a_monotonic_reading_before_the_start_stays_at_two);
    suite_add_tcase(s, tc);

    tc = tcase_create("exptime");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_exptime_zero_never_expires);
    tcase_add_test(tc, test_negative_exptime_is_already_expired);
    tcase_add_test(tc, test_exptime_up_to_30_days_is_relative_to_now);
    tcase_add_test(tc, test_exptime_over_30_days_is_absolute_unix_time);
    tcase_add_test(tc, test_absolute_exptime_at_or_before_the_start_is_already_expired);
    tcase_add_test(tc, test_absolute_exptime_past_now_but_after_start_is_already_due);
    tcase_add_test(tc, test_absolute_exptime_follows_the_wall_clock_as_it_reads_now);
    tcase_add_test(tc, test_far_future_absolute_exptime_saturates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(clock_suite());
}

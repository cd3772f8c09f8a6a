/* Unit tests for latency: buckets, a connection's batch, and summing the workers' histograms. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "helpers.h"
#include "magpie/latency.h"

static struct mp_latency lat;

static void setup(void)
{
    ck_assert_int_eq(mp_latency_setup(&lat, 2), 0);
}

static void teardown(void)
{
    mp_latency_teardown(&lat);
}

static uint64_t bucket(const struct mp_latency_thread *t, unsigned cmd, unsigned k)
{
    return atomic_load(&t->cmd[cmd].bucket[k]);
}

START_TEST(test_bucket_bounds_are_inclusive_from_1us_to_1s)
{
    ck_assert_uint_eq(mp_latency_bucket(0), 0);
    ck_assert_uint_eq(mp_latency_bucket(1000), 0); /* le 1e-06 */
    ck_assert_uint_eq(mp_latency_bucket(1001), 1); /* le 2e-06 */
    ck_assert_uint_eq(mp_latency_bucket(2000), 1);
    ck_assert_uint_eq(mp_latency_bucket(4999), 2);    /* le 5e-06 */
    ck_assert_uint_eq(mp_latency_bucket(5001), 3);    /* le 1e-05 */
    ck_assert_uint_eq(mp_latency_bucket(1000000), 9); /* le 0.001 */
    ck_assert_uint_eq(mp_latency_bucket(1000000000), MP_LATENCY_NBOUNDS - 1);
    ck_assert_uint_eq(mp_latency_bucket(1000000001), MP_LATENCY_NBOUNDS); /* +Inf */
    ck_assert_uint_eq(mp_latency_bucket(UINT64_MAX), MP_LATENCY_NBOUNDS);
    for (unsigned k = 1; k < MP_LATENCY_NBOUNDS; k++)
        ck_assert_uint_gt(MP_LATENCY_BOUNDS_NS[k], MP_LATENCY_BOUNDS_NS[k - 1]);
}
END_TEST

START_TEST(test_a_round_records_each_command_once_with_the_rounds_time)
{
    struct mp_latency_batch b;
    mp_latency_batch_init(&b, &lat.threads[0]);
    b.start_ns = 1000000;
    mp_latency_note(&b, MP_CMD_GET);
    mp_latency_note(&b, MP_CMD_GET);
    mp_latency_note(&b, MP_CMD_GET);
    mp_latency_note(&b, MP_CMD_SET);
    mp_latency_end_at(&b, 1000000 + 1500); /* 1.5 us: the le 2e-06 bucket */
    const struct mp_latency_thread *t = &lat.threads[0];
    ck_assert_uint_eq(bucket(t, MP_CMD_GET, 1), 3);
    ck_assert_uint_eq(bucket(t, MP_CMD_SET, 1), 1);
    ck_assert_uint_eq(bucket(t, MP_CMD_GET, 0), 0);
    ck_assert_uint_eq(atomic_load(&t->cmd[MP_CMD_GET].sum_ns), 4500);
    ck_assert_uint_eq(atomic_load(&t->cmd[MP_CMD_SET].sum_ns), 1500);
    ck_assert_uint_eq(bucket(t, MP_CMD_DELETE, 1), 0);
    /* the batch is empty again: a round with nothing in it adds nothing */
    ck_assert_uint_eq(b.mask, 0);
    ck_assert_uint_eq(b.n[MP_CMD_GET], 0);
    mp_latency_end_at(&b, 1000000 + 3000000);
    ck_assert_uint_eq(bucket(t, MP_CMD_GET, 1), 3);
    ck_assert_uint_eq(atomic_load(&t->cmd[MP_CMD_GET].sum_ns), 4500);
}
END_TEST

START_TEST(test_a_round_that_waited_for_its_write_counts_the_wait)
{
    struct mp_latency_batch b;
    mp_latency_batch_init(&b, &lat.threads[1]);
    b.start_ns = 5000;
    mp_latency_note(&b, MP_CMD_MG);
    /* no begin in between: the commands are still those of the read at 5000 ns */
    mp_latency_end_at(&b, 5000 + 250000000); /* 250 ms: le 0.5 */
    ck_assert_uint_eq(bucket(&lat.threads[1], MP_CMD_MG, 17), 1);
}
END_TEST

START_TEST(test_a_clock_that_went_backwards_counts_as_zero)
{
    struct mp_latency_batch b;
    mp_latency_batch_init(&b, &lat.threads[0]);
    b.start_ns = 9000;
    mp_latency_note(&b, MP_CMD_ERROR);
    mp_latency_end_at(&b, 8000);
    ck_assert_uint_eq(bucket(&lat.threads[0], MP_CMD_ERROR, 0), 1);
    ck_assert_uint_eq(atomic_load(&lat.threads[0].cmd[MP_CMD_ERROR].sum_ns), 0);
}
END_TEST

START_TEST(test_without_a_block_nothing_is_noted)
{
    struct mp_latency_batch b;
    mp_latency_batch_init(&b, NULL);
    mp_latency_begin(&b);
    mp_latency_note(&b, MP_CMD_GET);
    mp_latency_end(&b);
    ck_assert_uint_eq(b.mask, 0);
    ck_assert_uint_eq(b.n[MP_CMD_GET], 0);
    ck_assert_uint_eq(b.start_ns, 0);
}
END_TEST

START_TEST(test_begin_and_end_use_the_monotonic_clock)
{
    struct mp_latency_batch b;
    mp_latency_batch_init(&b, &lat.threads[0]);
    mp_latency_begin(&b);
    ck_assert_uint_gt(b.start_ns, 0);
    mp_latency_note(&b, MP_CMD_VERSION);
    mp_latency_end(&b);
    uint64_t count = 0;
    for (unsigned k = 0; k < MP_LATENCY_NBUCKETS; k++)
        count += bucket(&lat.threads[0], MP_CMD_VERSION, k);
    ck_assert_uint_eq(count, 1);
}
END_TEST

START_TEST(test_sum_adds_the_workers)
{
    mp_latency_record(&lat.threads[0], MP_CMD_GET, 2, 700);
    mp_latency_record(&lat.threads[1], MP_CMD_GET, 5, 800);
    mp_latency_record(&lat.threads[1], MP_CMD_GET, 1, 3000000000u);
    mp_latency_record(&lat.threads[1], MP_CMD_TOUCH, 4, 20000);
    struct mp_latency_sum sum;
    mp_latency_sum(&lat, &sum);
    ck_assert_uint_eq(sum.bucket[MP_CMD_GET][0], 7);
    ck_assert_uint_eq(sum.bucket[MP_CMD_GET][MP_LATENCY_NBOUNDS], 1);
    ck_assert_uint_eq(sum.sum_ns[MP_CMD_GET], 2 * 700 + 5 * 800 + 3000000000u);
    ck_assert_uint_eq(sum.bucket[MP_CMD_TOUCH][4], 4);
    ck_assert_uint_eq(sum.sum_ns[MP_CMD_TOUCH], 80000);
    ck_assert_uint_eq(sum.bucket[MP_CMD_SET][0], 0);
}
END_TEST

static Suite *latency_suite(void)
{
    Suite *s = suite_create("latency");
    TCase *tc = tcase_create("latency");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bucket_bounds_are_inclusive_from_1us_to_1s);
    tcase_add_test(tc, test_a_round_records_each_command_once_with_the_rounds_time);
    tcase_add_test(tc, test_a_round_that_waited_for_its_write_counts_the_wait);
    tcase_add_test(tc, test_a_clock_that_went_backwards_counts_as_zero);
    tcase_add_test(tc, test_without_a_block_nothing_is_noted);
    tcase_add_test(tc, test_begin_and_end_use_the_monotonic_clock);
    tcase_add_test(tc, test_sum_adds_the_workers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(latency_suite());
}

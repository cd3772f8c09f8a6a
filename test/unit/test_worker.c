/* Unit tests for worker: where the worker that accepted a connection places it (worker.h). */
#include <check.h>
#include <stdlib.h>

#include "magpie/worker.h"

#define WORKERS_MAX 8

/* The placement of mp_worker_place over plain counts: the accepting worker `at` keeps the
 * connection, or it goes to the least loaded worker (the first of equals). Returns where it went. */
static unsigned place(unsigned *held, unsigned n, unsigned at)
{
    unsigned least = at;
    for (unsigned i = 0; i < n; i++)
        if (held[i] < held[least])
            least = i;
    unsigned to = least != at && !mp_worker_keeps(held[at], held[least]) ? least : at;
    held[to]++;
    return to;
}

START_TEST(test_few_connections_all_arriving_at_one_worker_are_spread_exactly)
{
    /* The kernel's hash may send every one of a few connections to the same worker's socket:
     * they are spread one by one, and up to 16 exactly. */
    for (unsigned n = 2; n <= 4; n++) {
        for (unsigned conns = 1; conns <= 8 * n; conns++) {
            unsigned held[WORKERS_MAX] = {0};
            for (unsigned c = 0; c < conns; c++)
                place(held, n, 0);
            unsigned lo = held[0], hi = held[0];
            for (unsigned i = 1; i < n; i++) {
                lo = held[i] < lo ? held[i] : lo;
                hi = held[i] > hi ? held[i] : hi;
            }
            ck_assert_msg(hi - lo <= 1 + conns / 16, "%u workers, %u connections: %u to %u", n, conns, lo, hi);
        }
    }
}
END_TEST

START_TEST(test_many_connections_stay_where_they_arrive_within_a_sixteenth)
{
    /* Two workers, 1000 connections arriving at random ones: most stay where they arrived, and
     * neither worker ever holds more than a sixteenth of them all over the other (and one). */
    unsigned held[2] = {0}, moved = 0;
    srandom(7);
    for (unsigned c = 0; c < 1000; c++) {
        unsigned at = (unsigned)random() % 2;
        moved += place(held, 2, at) != at;
        unsigned hi = held[0] > held[1] ? held[0] : held[1], lo = held[0] + held[1] - hi;
        ck_assert_uint_le(hi, lo + (hi + lo) / 16 + 1);
    }
    ck_assert_uint_lt(moved, 100);
    /* And all arriving at one worker: the other gets its share all the same. */
    unsigned one[2] = {0};
    for (unsigned c = 0; c < 1000; c++)
        place(one, 2, 1);
    ck_assert_uint_ge(one[0], 468);
}
END_TEST

START_TEST(test_connections_that_close_are_replaced_where_the_load_is_lowest)
{
    /* Four workers with uneven loads left by closes: new connections fill the emptiest first. */
    unsigned held[4] = {40, 10, 40, 40};
    for (unsigned c = 0; c < 20; c++)
        place(held, 4, c % 4 == 1 ? 1 : 0);
    ck_assert_uint_ge(held[1], 28);
    ck_assert_uint_le(held[0], 48);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("placement");
    tcase_add_test(tc, test_few_connections_all_arriving_at_one_worker_are_spread_exactly);
    tcase_add_test(tc, test_many_connections_stay_where_they_arrive_within_a_sixteenth);
    tcase_add_test(tc, test_connections_that_close_are_replaced_where_the_load_is_lowest);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests for hotkeys: Space-Saving counts, merging the workers, the window, and the sketch's
 * own structures (heap and index) after heavy churn. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/hotkeys.h"

#define W MP_HOTKEYS_WINDOW

static struct mp_hotkeys hk;
static struct mp_hotkey top[MP_HOTKEYS_MAX];

static void setup(void)
{
    ck_assert_int_eq(mp_hotkeys_setup(&hk, 2, T0), 0);
}

static void teardown(void)
{
    mp_hotkeys_teardown(&hk);
}

static void count(unsigned thread, const char *key, unsigned times, uint32_t now)
{
    for (unsigned i = 0; i < times; i++)
        mp_hotkeys_count(hk.threads[thread], key, strlen(key), false, now);
}

/* The count `key` has in the last report, or 0 when it is not listed. */
static uint64_t listed(size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!top[i].binary && strcmp(top[i].key, key) == 0)
            return top[i].count;
    return 0;
}

START_TEST(test_few_keys_are_counted_exactly_most_requested_first)
{
    count(0, "alpha", 5, T0);
    count(0, "beta", 9, T0);
    count(1, "gamma", 2, T0);
    count(1, "beta", 1, T0);
    size_t n = mp_hotkeys_top(&hk, T0, top, 10);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(top[0].key, "beta");
    ck_assert_uint_eq(top[0].count, 10); /* merged over the two workers */
    ck_assert_uint_eq(top[0].nkey, 4);
    ck_assert_str_eq(top[1].key, "alpha");
    ck_assert_uint_eq(top[1].count, 5);
    ck_assert_str_eq(top[2].key, "gamma");
    ck_assert_uint_eq(top[2].count, 2);
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 2), 2);
    ck_assert_str_eq(top[1].key, "alpha");
}
END_TEST

START_TEST(test_equal_counts_are_listed_in_key_order)
{
    count(1, "b", 1, T0);
    count(0, "c", 1, T0);
    count(0, "a", 1, T0);
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 10), 3);
    ck_assert_str_eq(top[0].key, "a");
    ck_assert_str_eq(top[1].key, "b");
    ck_assert_str_eq(top[2].key, "c");
}
END_TEST

START_TEST(test_a_binary_key_is_not_the_text_key_of_the_same_bytes)
{
    count(0, "abc", 2, T0);
    mp_hotkeys_count(hk.threads[1], "abc", 3, true, T0);
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 10), 2);
    ck_assert_str_eq(top[0].key, "abc");
    ck_assert(!top[0].binary);
    ck_assert_uint_eq(top[0].count, 2);
    ck_assert(top[1].binary);
    ck_assert_uint_eq(top[1].count, 1);
    ck_assert_mem_eq(top[1].key, "abc", 3);
}
END_TEST

START_TEST(test_keys_of_every_length_and_byte_come_back_whole)
{
    char key[MP_KEY_MAX];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (char)(i * 7 + 1);
    for (size_t n = 1; n <= MP_KEY_MAX; n += 83)
        for (size_t t = 0; t <= n / 83; t++)
            mp_hotkeys_count(hk.threads[0], key, n, true, T0);
    size_t got = mp_hotkeys_top(&hk, T0, top, 10);
    ck_assert_uint_eq(got, 4); /* lengths 1, 84, 167, 250 */
    for (size_t i = 0; i < got; i++) {
        size_t n = 250 - 83 * i; /* the longest was counted most */
        ck_assert_uint_eq(top[i].nkey, n);
        ck_assert_uint_eq(top[i].count, n / 83 + 1);
        ck_assert_mem_eq(top[i].key, key, n);
        ck_assert_int_eq(top[i].key[n], '\0');
    }
}
END_TEST

START_TEST(test_at_most_100_keys_are_listed)
{
    char key[16];
    for (unsigned i = 1; i <= 150; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        count(i % 2, key, i, T0);
    }
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 1000), MP_HOTKEYS_MAX);
    ck_assert_str_eq(top[0].key, "k150");
    ck_assert_uint_eq(top[0].count, 150);
    ck_assert_str_eq(top[99].key, "k51");
}
END_TEST

START_TEST(test_the_previous_window_counts_until_the_one_after)
{
    count(0, "a", 3, T0);
    count(0, "a", 2, T0 + W); /* a new window: the first one's 3 are its previous window */
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0 + W, top, 10), 1);
    ck_assert_uint_eq(listed(1, "a"), 5);
    count(0, "b", 1, T0 + 2 * W); /* the first window is gone now */
    size_t n = mp_hotkeys_top(&hk, T0 + 2 * W, top, 10);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(listed(n, "a"), 2);
    ck_assert_uint_eq(listed(n, "b"), 1);
    count(0, "c", 1, T0 + 4 * W + 5); /* two whole windows without a count: all forgotten */
    n = mp_hotkeys_top(&hk, T0 + 4 * W + 5, top, 10);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(listed(n, "c"), 1);
}
END_TEST

START_TEST(test_a_report_leaves_out_what_an_idle_worker_has_not_turned_over)
{
    count(1, "x", 4, T0 + 1);
    count(0, "y", 1, T0 + 1);
    /* one window later worker 1's counts are the previous window's: still listed */
    size_t n = mp_hotkeys_top(&hk, T0 + W + 10, top, 10);
    ck_assert_uint_eq(listed(n, "x"), 4);
    /* two windows later they are older than any report covers */
    count(0, "z", 1, T0 + 2 * W + 10);
    n = mp_hotkeys_top(&hk, T0 + 2 * W + 10, top, 10);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(listed(n, "z"), 1);
}
END_TEST

START_TEST(test_a_report_made_a_second_behind_a_worker_still_counts_it)
{
    count(0, "a", 2, T0 + W); /* worker 0 turned its window at T0 + W */
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0 + W - 1, top, 10), 1);
    ck_assert_uint_eq(top[0].count, 2);
}
END_TEST

/* ---- many keys: Zipf ---------------------------------------------------------------------------- */

#define ZIPF_KEYS 20000
#define ZIPF_TOP 20000 /* key i (from 1) is requested ZIPF_TOP / i times */

static uint64_t rng = 88172645463325252ull;

static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Every request of the Zipf workload, key numbers in a shuffled order; returns how many. */
static uint32_t *zipf_stream(size_t *n)
{
    size_t total = 0;
    for (unsigned i = 1; i <= ZIPF_KEYS; i++)
        total += ZIPF_TOP / i;
    uint32_t *s = malloc(total * sizeof(*s));
    ck_assert_ptr_nonnull(s);
    size_t k = 0;
    for (unsigned i = 1; i <= ZIPF_KEYS; i++)
        for (unsigned j = 0; j < ZIPF_TOP / i; j++)
            s[k++] = i;
    for (size_t i = total - 1; i > 0; i--) {
        size_t j = next_random() % (i + 1);
        uint32_t t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
    *n = total;
    return s;
}

static void feed(const uint32_t *s, size_t n, unsigned nthreads)
{
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "key:%u", s[i]);
        mp_hotkeys_count(hk.threads[next_random() % nthreads], key, (size_t)len, false, T0);
    }
}

START_TEST(test_zipf_top_10_are_the_true_top_10_in_order_within_5_percent)
{
    size_t n;
    uint32_t *s = zipf_stream(&n);
    feed(s, n, 2);
    free(s);
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 10), 10);
    for (unsigned i = 0; i < 10; i++) {
        char want[32];
        snprintf(want, sizeof(want), "key:%u", i + 1);
        double truth = ZIPF_TOP / (i + 1);
        ck_assert_str_eq(top[i].key, want);
        ck_assert_msg(top[i].count >= truth * 0.95 && top[i].count <= truth * 1.05, "%s: %llu, true %.0f", want,
                      (unsigned long long)top[i].count, truth);
    }
}
END_TEST

/* Far down the list keys differ by a request or two, so the order may not be the true one there;
 * the counts still are close. */
START_TEST(test_zipf_top_100_of_one_worker_are_within_5_percent)
{
    size_t n;
    uint32_t *s = zipf_stream(&n);
    feed(s, n, 1);
    free(s);
    size_t got = mp_hotkeys_top(&hk, T0, top, MP_HOTKEYS_MAX);
    ck_assert_uint_eq(got, MP_HOTKEYS_MAX);
    unsigned in_true_top = 0;
    for (size_t i = 0; i < got; i++) {
        unsigned id = (unsigned)strtoul(top[i].key + 4, NULL, 10);
        double truth = ZIPF_TOP / id;
        ck_assert_msg(top[i].count >= truth * 0.95 && top[i].count <= truth * 1.05, "%s: %llu, true %.0f", top[i].key,
                      (unsigned long long)top[i].count, truth);
        in_true_top += id <= MP_HOTKEYS_MAX;
    }
    ck_assert_uint_ge(in_true_top, 95);
}
END_TEST

/* The sketch's invariants: every slot's hash is found by probing from its home, no hash is held
 * twice, the heap is a min-heap by total and pos inverts it, and totals are cur + prev. */
static void check_structures(const struct mp_hotkeys_thread *t)
{
    unsigned used = atomic_load(&t->used);
    unsigned mask = 2 * MP_HOTKEYS_SLOTS - 1;
    unsigned entries = 0;
    for (unsigned i = 0; i <= mask; i++)
        entries += t->index[i].slot != 0;
    ck_assert_uint_eq(entries, used);
    for (unsigned s = 0; s < used; s++) {
        uint64_t h = atomic_load(&t->hash[s]);
        unsigned i = (unsigned)h & mask, found = 0;
        while (t->index[i].slot != 0 && !(t->index[i].hash == h)) {
            i = (i + 1) & mask;
        }
        if (t->index[i].slot != 0)
            found = t->index[i].slot;
        ck_assert_uint_eq(found, s + 1);
        ck_assert_uint_eq(t->total[s], atomic_load(&t->cur[s]) + atomic_load(&t->prev[s]));
        ck_assert_uint_eq(t->heap[t->pos[s]], s);
    }
    for (unsigned i = 1; i < used; i++)
        ck_assert_uint_ge(t->total[t->heap[i]], t->total[t->heap[(i - 1) / 2]]);
}

START_TEST(test_uniform_churn_does_not_push_out_a_key_requested_often)
{
    char key[32];
    for (unsigned i = 0; i < 400000; i++) {
        int len = i % 50 == 0 ? snprintf(key, sizeof(key), "steady") : snprintf(key, sizeof(key), "once:%u", i);
        mp_hotkeys_count(hk.threads[0], key, (size_t)len, false, T0);
    }
    ck_assert_uint_eq(mp_hotkeys_top(&hk, T0, top, 1), 1);
    ck_assert_str_eq(top[0].key, "steady");
    ck_assert_uint_eq(top[0].count, 8000); /* in from its first request, never out */
    check_structures(hk.threads[0]);
}
END_TEST

/* Under churn a new key replaces the least counted one only now and then (one chance in that
 * count plus one), where plain Space-Saving replaces one for every new key. */
START_TEST(test_under_churn_new_keys_are_admitted_now_and_then)
{
    char key[32];
    struct mp_hotkeys_thread *t = hk.threads[0];
    for (unsigned i = 0; i < 1000000; i++) {
        int len = snprintf(key, sizeof(key), "u:%u", next_random() % 100000);
        mp_hotkeys_count(t, key, (size_t)len, false, T0);
    }
    static uint64_t before[MP_HOTKEYS_SLOTS];
    for (unsigned s = 0; s < MP_HOTKEYS_SLOTS; s++)
        before[s] = atomic_load(&t->hash[s]);
    for (unsigned i = 0; i < 10000; i++) {
        int len = snprintf(key, sizeof(key), "fresh:%u", i);
        mp_hotkeys_count(t, key, (size_t)len, false, T0);
    }
    unsigned changed = 0;
    for (unsigned s = 0; s < MP_HOTKEYS_SLOTS; s++)
        changed += atomic_load(&t->hash[s]) != before[s];
    ck_assert_uint_gt(changed, 0);
    ck_assert_uint_lt(changed, MP_HOTKEYS_SLOTS / 2);
    check_structures(t);
}
END_TEST

START_TEST(test_heap_and_index_hold_after_heavy_churn_and_window_turns)
{
    char key[32];
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 60000; i++) {
            unsigned id = next_random() % (i % 3 ? 5000 : 50);
            int len = snprintf(key, sizeof(key), "churn:%u", id);
            mp_hotkeys_count(hk.threads[0], key, (size_t)len, false, T0 + round * W);
        }
        check_structures(hk.threads[0]);
    }
    ck_assert_uint_eq(atomic_load(&hk.threads[0]->used), MP_HOTKEYS_SLOTS);
}
END_TEST

static Suite *hotkeys_suite(void)
{
    Suite *s = suite_create("hotkeys");
    TCase *tc = tcase_create("counting");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_few_keys_are_counted_exactly_most_requested_first);
    tcase_add_test(tc, test_equal_counts_are_listed_in_key_order);
    tcase_add_test(tc, test_a_binary_key_is_not_the_text_key_of_the_same_bytes);
    tcase_add_test(tc, test_keys_of_every_length_and_byte_come_back_whole);
    tcase_add_test(tc, test_at_most_100_keys_are_listed);
    suite_add_tcase(s, tc);

    tc = tcase_create("window");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_the_previous_window_counts_until_the_one_after);
    tcase_add_test(tc, test_a_report_leaves_out_what_an_idle_worker_has_not_turned_over);
    tcase_add_test(tc, test_a_report_made_a_second_behind_a_worker_still_counts_it);
    suite_add_tcase(s, tc);

    tc = tcase_create("many keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_zipf_top_10_are_the_true_top_10_in_order_within_5_percent);
    tcase_add_test(tc, test_zipf_top_100_of_one_worker_are_within_5_percent);
    tcase_add_test(tc, test_uniform_churn_does_not_push_out_a_key_requested_often);
    tcase_add_test(tc, test_under_churn_new_keys_are_admitted_now_and_then);
    tcase_add_test(tc, test_heap_and_index_hold_after_heavy_churn_and_window_turns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(hotkeys_suite());
}

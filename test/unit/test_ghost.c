/* Unit tests for ghost: the lossy memory of evicted keys' hashes. */
#include <check.h>
#include <stdint.h>

#include "helpers.h"
#include "magpie/ghost.h"

static struct mp_ghost ghost;
static struct mp_ghost *g = &ghost;

/* Hashes that differ in the bits the ghost uses for bucket and fingerprint. */
static uint64_t key_hash(uint64_t i)
{
    uint64_t x = (i + 1) * UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 31;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    return x ^ (x >> 29);
}

/* A hash in the same bucket as `h` (the same bits 16..47) with another fingerprint (bits 8..15). */
static uint64_t same_bucket(uint64_t h, uint8_t fp)
{
    return (h & ~(UINT64_C(0xff) << 8)) | ((uint64_t)fp << 8);
}

static void make(size_t max_entries, uint64_t window)
{
    ck_assert_int_eq(mp_ghost_setup(g, max_entries), 0);
    mp_ghost_resize(g, window);
}

static void teardown(void)
{
    mp_ghost_teardown(g);
}

START_TEST(test_a_key_added_is_found_once_and_then_forgotten)
{
    make(1024, 1024);
    mp_ghost_add(g, key_hash(1));
    ck_assert_uint_ne(mp_ghost_take(g, key_hash(1)), MP_GHOST_ABSENT);
    ck_assert_uint_eq(mp_ghost_take(g, key_hash(1)), MP_GHOST_ABSENT);
}
END_TEST

START_TEST(test_a_key_never_added_is_absent)
{
    make(16, 16); /* one bucket */
    uint64_t base = key_hash(3);
    for (unsigned i = 1; i <= 10; i++)
        mp_ghost_add(g, same_bucket(base, (uint8_t)i));
    /* In the same bucket, a fingerprint no key there has: not mistaken for any of them. */
    ck_assert_uint_eq(mp_ghost_take(g, same_bucket(base, 11)), MP_GHOST_ABSENT);
    ck_assert_uint_eq(mp_ghost_take(g, same_bucket(base, 200)), MP_GHOST_ABSENT);
}
END_TEST

START_TEST(test_a_bucket_keeps_its_last_sixteen_keys)
{
    make(16, 16); /* one bucket */
    ck_assert_uint_eq(mp_ghost_window(g), 16);
    uint64_t base = key_hash(7);
    for (unsigned i = 1; i <= 17; i++)
        mp_ghost_add(g, same_bucket(base, (uint8_t)i));
    ck_assert_uint_eq(mp_ghost_take(g, same_bucket(base, 1)), MP_GHOST_ABSENT); /* the oldest fell off */
    for (unsigned i = 2; i <= 17; i++)
        ck_assert_uint_ne(mp_ghost_take(g, same_bucket(base, (uint8_t)i)), MP_GHOST_ABSENT);
}
END_TEST

START_TEST(test_the_age_grows_with_the_additions_since)
{
    make(16, 16); /* one bucket: position i means i + 1 additions ago */
    uint64_t base = key_hash(9);
    for (unsigned i = 1; i <= 5; i++)
        mp_ghost_add(g, same_bucket(base, (uint8_t)i));
    ck_assert_uint_eq(mp_ghost_take(g, same_bucket(base, 5)), 1);
    ck_assert_uint_eq(mp_ghost_take(g, same_bucket(base, 1)), 5);
    ck_assert_uint_eq(mp_ghost_added(g), 5);
}
END_TEST

START_TEST(test_a_fingerprint_of_zero_is_stored_as_one)
{
    make(16, 16);
    uint64_t zero = same_bucket(key_hash(2), 0);
    mp_ghost_add(g, zero);
    ck_assert_uint_ne(mp_ghost_take(g, zero), MP_GHOST_ABSENT);
}
END_TEST

START_TEST(test_the_window_follows_resize_within_the_reserve)
{
    make(1600, 160);
    ck_assert_uint_eq(mp_ghost_window(g), 160);
    mp_ghost_resize(g, 180); /* less than a quarter more: kept */
    ck_assert_uint_eq(mp_ghost_window(g), 160);
    mp_ghost_resize(g, 320);
    ck_assert_uint_eq(mp_ghost_window(g), 320);
    mp_ghost_resize(g, 1 << 20); /* capped at the reserve */
    ck_assert_uint_eq(mp_ghost_window(g), 1600);
    mp_ghost_resize(g, 700); /* less than half: shrinks */
    ck_assert_uint_eq(mp_ghost_window(g), 704);
    ck_assert_uint_eq(mp_ghost_bytes(g), 1600); /* what was once in use stays resident */
}
END_TEST

START_TEST(test_most_of_a_window_of_keys_is_remembered)
{
    make(1 << 16, 4096);
    for (uint64_t i = 0; i < 4096; i++)
        mp_ghost_add(g, key_hash(i));
    unsigned found = 0;
    for (uint64_t i = 0; i < 4096; i++)
        found += mp_ghost_take(g, key_hash(i)) != MP_GHOST_ABSENT;
    /* Buckets fill unevenly: a full window's worth keeps most, not all. */
    ck_assert_uint_ge(found, 4096 * 6 / 10);
    ck_assert_uint_lt(found, 4096);
    unsigned strangers = 0;
    for (uint64_t i = 100000; i < 104096; i++)
        strangers += mp_ghost_take(g, key_hash(i)) != MP_GHOST_ABSENT;
    ck_assert_uint_lt(strangers, 4096 / 20); /* false matches: a few percent at most */
}
END_TEST

static Suite *ghost_suite(void)
{
    Suite *s = suite_create("ghost");
    TCase *tc = tcase_create("ghost");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_a_key_added_is_found_once_and_then_forgotten);
    tcase_add_test(tc, test_a_key_never_added_is_absent);
    tcase_add_test(tc, test_a_bucket_keeps_its_last_sixteen_keys);
    tcase_add_test(tc, test_the_age_grows_with_the_additions_since);
    tcase_add_test(tc, test_a_fingerprint_of_zero_is_stored_as_one);
    tcase_add_test(tc, test_the_window_follows_resize_within_the_reserve);
    tcase_add_test(tc, test_most_of_a_window_of_keys_is_remembered);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(ghost_suite());
}

/* Unit tests for num: memcached 1.6's safe_strtoull / safe_strtoul / safe_strtol / safe_strtoll. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "helpers.h"
#include "magpie/num.h"

/* Each reader on a NUL-terminated literal (its length without the NUL). */
static bool u64(const char *s, uint64_t *out)
{
    return mp_num_u64(s, strlen(s), out);
}

static bool u32(const char *s, uint32_t *out)
{
    return mp_num_u32(s, strlen(s), out);
}

static bool i32(const char *s, int32_t *out)
{
    return mp_num_i32(s, strlen(s), out);
}

static bool i64(const char *s, int64_t *out)
{
    return mp_num_i64(s, strlen(s), out);
}

/* ---- u64 (safe_strtoull) -------------------------------------------------------------------- */

START_TEST(test_u64_reads_decimal_digits)
{
    uint64_t v;
    ck_assert(u64("0", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(u64("123", &v));
    ck_assert_uint_eq(v, 123);
    ck_assert(u64("007", &v));
    ck_assert_uint_eq(v, 7);
    ck_assert(u64("18446744073709551615", &v));
    ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(test_u64_accepts_leading_whitespace_and_plus)
{
    uint64_t v;
    ck_assert(u64(" 5", &v));
    ck_assert_uint_eq(v, 5);
    ck_assert(u64("\t\v\f\r\n 6", &v));
    ck_assert_uint_eq(v, 6);
    ck_assert(u64("+7", &v));
    ck_assert_uint_eq(v, 7);
    ck_assert(u64("  +8", &v));
    ck_assert_uint_eq(v, 8);
}
END_TEST

START_TEST(test_u64_accepts_trailing_whitespace_and_ignores_what_follows_it)
{
    uint64_t v;
    ck_assert(u64("5 ", &v));
    ck_assert_uint_eq(v, 5);
    ck_assert(u64("6\r", &v));
    ck_assert_uint_eq(v, 6);
    ck_assert(u64("7\n", &v));
    ck_assert_uint_eq(v, 7);
    /* strtoull stops at the white space; memcached looks no further */
    ck_assert(u64("8\tjunk", &v));
    ck_assert_uint_eq(v, 8);
}
END_TEST

START_TEST(test_u64_token_end_terminates_the_number)
{
    /* The token is not NUL-terminated: its length ends it, whatever follows in memory. */
    uint64_t v;
    ck_assert(mp_num_u64("12x", 2, &v));
    ck_assert_uint_eq(v, 12);
    ck_assert(mp_num_u64("99 9", 2, &v));
    ck_assert_uint_eq(v, 99);
}
END_TEST

START_TEST(test_u64_rejects_trailing_garbage)
{
    static const char *bad[] = {"5x", "5-", "0x10", "1.5", "1e3", "12,3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        ck_assert_msg(!u64(bad[i], &v), "accepted \"%s\"", bad[i]);
        ck_assert_uint_eq(v, 0); /* memcached zeroes *out first */
    }
}
END_TEST

START_TEST(test_u64_rejects_empty_blank_and_bare_signs)
{
    static const char *bad[] = {"", " ", "\t", "+", "-", "+-1", "-+1", "--1", "++1", " + 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v;
        ck_assert_msg(!u64(bad[i], &v), "accepted \"%s\"", bad[i]);
    }
}
END_TEST

START_TEST(test_u64_rejects_overflow)
{
    uint64_t v = 1;
    ck_assert(!u64("18446744073709551616", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(!u64("99999999999999999999999", &v));
    ck_assert(!u64("-18446744073709551616", &v));
}
END_TEST

START_TEST(test_u64_rejects_minus_one_but_reads_minus_zero_as_zero)
{
    uint64_t v = 1;
    ck_assert(!u64("-1", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(!u64(" -5", &v));
    ck_assert(u64("-0", &v));
    ck_assert_uint_eq(v, 0);
}
END_TEST

START_TEST(test_u64_keeps_strtoull_wraparound_for_large_negative_numbers)
{
    /* strtoull negates in unsigned arithmetic; memcached rejects the result only when it reads as
     * negative in 64-bit signed, so a negative of large magnitude wraps to a small number. */
    uint64_t v;
    ck_assert(u64("-18446744073709551615", &v));
    ck_assert_uint_eq(v, 1);
    ck_assert(u64("-9223372036854775809", &v));
    ck_assert_uint_eq(v, (uint64_t)INT64_MAX);
    ck_assert(!u64("-9223372036854775808", &v)); /* 2^63: negative as signed */
    ck_assert(!u64("-9223372036854775807", &v));
}
END_TEST

START_TEST(test_u64_values_above_int64_max_are_accepted_without_a_minus)
{
    uint64_t v;
    ck_assert(u64("9223372036854775808", &v));
    ck_assert_uint_eq(v, (uint64_t)INT64_MAX + 1);
    ck_assert(u64("+18446744073709551615", &v));
    ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(test_u64_finds_a_minus_anywhere_in_the_token_of_a_large_value)
{
    /* memcached 1.6.18's safe_strtoull runs strchr(str, '-') over the whole token, so a '-' after
     * the white space that ends a number of 2^63 or more rejects it: memcached answers
     * "incr k 9223372036854775808\t-" with CLIENT_ERROR invalid numeric delta argument. */
    uint64_t v = 1;
    ck_assert(!u64("9223372036854775808\t-", &v));
    ck_assert_uint_eq(v, 0);
}
END_TEST

/* ---- u32 (safe_strtoul) --------------------------------------------------------------------- */

START_TEST(test_u32_reads_the_full_range)
{
    uint32_t v;
    ck_assert(u32("0", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(u32("4294967295", &v));
    ck_assert_uint_eq(v, UINT32_MAX);
    ck_assert(u32(" +12 ", &v));
    ck_assert_uint_eq(v, 12);
}
END_TEST

START_TEST(test_u32_keeps_the_low_32_bits_of_a_64_bit_value)
{
    uint32_t v = 7;
    ck_assert(u32("4294967296", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(u32("4294967297", &v));
    ck_assert_uint_eq(v, 1);
    ck_assert(u32("18446744073709551615", &v));
    ck_assert_uint_eq(v, UINT32_MAX);
}
END_TEST

START_TEST(test_u32_rejects_what_u64_rejects)
{
    uint32_t v = 9;
    ck_assert(!u32("-1", &v));
    ck_assert_uint_eq(v, 0);
    ck_assert(!u32("", &v));
    ck_assert(!u32("1x", &v));
    ck_assert(!u32("18446744073709551616", &v));
    ck_assert(u32("-0", &v));
    ck_assert_uint_eq(v, 0);
}
END_TEST

/* ---- i32 (safe_strtol) and i64 (safe_strtoll) ------------------------------------------------ */

START_TEST(test_i32_reads_signed_values)
{
    int32_t v;
    ck_assert(i32("-1", &v));
    ck_assert_int_eq(v, -1);
    ck_assert(i32("  +30 ", &v));
    ck_assert_int_eq(v, 30);
    ck_assert(i32("2147483647", &v));
    ck_assert_int_eq(v, INT32_MAX);
    ck_assert(i32("-2147483648", &v));
    ck_assert_int_eq(v, INT32_MIN);
}
END_TEST

START_TEST(test_i32_truncates_a_64_bit_value_to_its_low_32_bits)
{
    int32_t v;
    ck_assert(i32("2147483648", &v));
    ck_assert_int_eq(v, INT32_MIN);
    ck_assert(i32("4294967295", &v));
    ck_assert_int_eq(v, -1);
    ck_assert(i32("4294967296", &v));
    ck_assert_int_eq(v, 0);
    ck_assert(i32("-2147483649", &v));
    ck_assert_int_eq(v, INT32_MAX);
}
END_TEST

START_TEST(test_i32_rejects_garbage_empty_and_long_overflow)
{
    int32_t v = 5;
    ck_assert(!i32("", &v));
    ck_assert_int_eq(v, 0);
    ck_assert(!i32("-", &v));
    ck_assert(!i32("12a", &v));
    ck_assert(!i32("9223372036854775808", &v)); /* strtol: ERANGE */
    ck_assert(!i32("-9223372036854775809", &v));
}
END_TEST

START_TEST(test_i64_reads_the_full_signed_range_and_rejects_beyond)
{
    int64_t v;
    ck_assert(i64("9223372036854775807", &v));
    ck_assert_int_eq(v, INT64_MAX);
    ck_assert(i64("-9223372036854775808", &v));
    ck_assert_int_eq(v, INT64_MIN);
    ck_assert(i64(" -42\t", &v));
    ck_assert_int_eq(v, -42);
    ck_assert(!i64("9223372036854775808", &v));
    ck_assert_int_eq(v, 0);
    ck_assert(!i64("-9223372036854775809", &v));
    ck_assert(!i64("1-", &v));
}
END_TEST

/* ---- format ----------------------------------------------------------------------------------- */

START_TEST(test_format_writes_decimal_digits_without_nul)
{
    char buf[24];
    memset(buf, '#', sizeof(buf));
    ck_assert_uint_eq(mp_num_format(buf, 0), 1);
    ck_assert_int_eq(memcmp(buf, "0#", 2), 0);
    ck_assert_uint_eq(mp_num_format(buf, 1234567890), 10);
    ck_assert_int_eq(memcmp(buf, "1234567890", 10), 0);
    ck_assert_uint_eq(mp_num_format(buf, UINT64_MAX), 20);
    ck_assert_int_eq(memcmp(buf, "18446744073709551615", 20), 0);
    ck_assert_int_eq(buf[20], '#');
}
END_TEST

static Suite *num_suite(void)
{
    Suite *s = suite_create("num");
    TCase *tc = tcase_create("u64");
    tcase_add_test(tc, test_u64_reads_decimal_digits);
    tcase_add_test(tc, test_u64_accepts_leading_whitespace_and_plus);
    tcase_add_test(tc, test_u64_accepts_trailing_whitespace_and_ignores_what_follows_it);
    tcase_add_test(tc, test_u64_token_end_terminates_the_number);
    tcase_add_test(tc, test_u64_rejects_trailing_garbage);
    tcase_add_test(tc, test_u64_rejects_empty_blank_and_bare_signs);
    tcase_add_test(tc, test_u64_rejects_overflow);
    tcase_add_test(tc, test_u64_rejects_minus_one_but_reads_minus_zero_as_zero);
    tcase_add_test(tc, test_u64_keeps_strtoull_wraparound_for_large_negative_numbers);
    tcase_add_test(tc, test_u64_values_above_int64_max_are_accepted_without_a_minus);
    tcase_add_test(tc, test_u64_finds_a_minus_anywhere_in_the_token_of_a_large_value);
    suite_add_tcase(s, tc);

    tc = tcase_create("u32");
    tcase_add_test(tc, test_u32_reads_the_full_range);
    tcase_add_test(tc, test_u32_keeps_the_low_32_bits_of_a_64_bit_value);
    tcase_add_test(tc, test_u32_rejects_what_u64_rejects);
    suite_add_tcase(s, tc);

    tc = tcase_create("signed");
    tcase_add_test(tc, test_i32_reads_signed_values);
    tcase_add_test(tc, test_i32_truncates_a_64_bit_value_to_its_low_32_bits);
    tcase_add_test(tc, test_i32_rejects_garbage_empty_and_long_overflow);
    tcase_add_test(tc, test_i64_reads_the_full_signed_range_and_rejects_beyond);
    suite_add_tcase(s, tc);

    tc = tcase_create("format");
    tcase_add_test(tc, test_format_writes_decimal_digits_without_nul);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(num_suite());
}

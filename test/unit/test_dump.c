/* Unit tests for dump: metadump and cachedump lines, batches that resume, class ids. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/dump.h"

static struct mp_cache cache;
static struct mp_cache *c = &cache;
static struct mp_clock clk;
static char out[1 << 20];
static size_t nout;

static void setup(void)
{
    struct mp_cache_config cfg = test_cache_config(64 * MIB);
    test_cache_setup(c, &cfg);
    mp_clock_setup(&clk, 1700000000, 5000); /* relative second 2 is Unix time 1700000000 */
    nout = 0;
}

static void teardown(void)
{
    mp_cache_teardown(c);
}

static void sink(void *ctx, const char *data, size_t n)
{
    (void)ctx;
    ck_assert_uint_lt(nout + n, sizeof(out));
    memcpy(out + nout, data, n);
    nout += n;
    out[nout] = '\0';
}

/* Run a dump to its end in batches of `budget`; returns the batches it took. */
static unsigned run(struct mp_dump *d, size_t budget)
{
    unsigned batches = 1;
    while (!mp_dump_step(d, c, &clk, budget, sink, NULL))
        ck_assert_uint_lt(batches++, 100000);
    return batches;
}

static unsigned count(const char *needle)
{
    unsigned n = 0;
    for (const char *p = out; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

START_TEST(test_metadump_lines_are_memcacheds)
{
    uint32_t now = mp_clock_now(&clk);
    ck_assert_int_eq(set_str(c, "a b", "xyz", now + 100, now), MP_STORED);
    ck_assert_int_eq(store_full(c, MP_SET, "k", "v", 1, 0, 7, 0, 0, now, NULL), MP_STORED);
    struct mp_dump d;
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("all")), 0);
    run(&d, 1000);
    ck_assert_msg(strstr(out, "key=a%20b exp=1700000100 la=1700000000 cas=1 fetch=no cls=") != NULL, "%s", out);
    char line[128];
    snprintf(line, sizeof(line), "key=k exp=-1 la=1700000000 cas=2 fetch=no cls=1 size=%zu\n", mp_item_total(1, 1, 7));
    ck_assert_msg(strstr(out, line) != NULL, "%s", out);
    ck_assert_str_eq(out + nout - 5, "END\r\n");
}
END_TEST

START_TEST(test_a_dump_resumes_across_batches_and_lists_every_live_key_once)
{
    uint32_t now = mp_clock_now(&clk);
    char key[32];
    for (unsigned i = 0; i < 5000; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_int_eq(set_fill(c, key, 10 + i % 40, 'v', i % 10 == 0 ? 1 : 0, now), MP_STORED);
    }
    struct mp_dump d;
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("hash")), 0);
    ck_assert_uint_gt(run(&d, 7), 500);
    ck_assert_uint_eq(count("key=key"), 4500); /* the expired tenth is not listed */
    ck_assert_uint_eq(count("END\r\n"), 1);
    for (unsigned i = 1; i < 5000; i += 997) {
        char line[48];
        snprintf(line, sizeof(line), "key=key%%3A%u ", i);
        ck_assert_uint_eq(count(line), 1);
    }
}
END_TEST

START_TEST(test_metadump_class_lists)
{
    struct mp_dump d;
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("1,2")), 0);
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("63")), 0); /* a memcached id with no class here */
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("0")), -1);
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("1,")), -1);
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("x")), -1);
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, LIT("5000")), -1);
    ck_assert_uint_gt(c->slabs.nclasses, 63);
    char id[16];
    snprintf(id, sizeof(id), "%u", c->slabs.nclasses);
    ck_assert_int_eq(mp_dump_begin_meta(&d, c, id, strlen(id)), 0); /* Magpie's own high ids */
}
END_TEST

/* cachedump id N covers Magpie's classes N, N + 63, ...: memcached's ids reach every item. */
START_TEST(test_cachedump_folds_magpies_classes_onto_memcacheds_ids)
{
    uint32_t now = mp_clock_now(&clk);
    ck_assert_int_eq(set_fill(c, "small", 10, 's', 0, now), MP_STORED);
    ck_assert_int_eq(set_fill(c, "large", 2000, 'l', now + 5, now), MP_STORED);
    unsigned big = class_of_shape(c, 5, 2000);
    ck_assert_uint_gt(big, 63);
    unsigned seen = 0;
    for (unsigned id = 0; id < MP_DUMP_MC_CLASSES; id++) {
        struct mp_dump d;
        nout = 0;
        mp_dump_begin_cache(&d, c, id, 0);
        run(&d, 100);
        seen += count("ITEM ");
        if (id == (big - 1) % 63 + 1)
            ck_assert_str_eq(out, "ITEM large [2000 b; 1700000005 s]\r\nEND\r\n");
    }
    ck_assert_uint_eq(seen, 2);
    struct mp_dump d;
    nout = 0;
    mp_dump_begin_cache(&d, c, 1, 1);
    ck_assert_int_eq(set_fill(c, "small2", 10, 's', 0, now), MP_STORED);
    run(&d, 100);
    ck_assert_uint_eq(count("ITEM "), 1); /* the limit */
}
END_TEST

static Suite *dump_suite(void)
{
    Suite *s = suite_create("dump");
    TCase *tc = tcase_create("dump");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_metadump_lines_are_memcacheds);
    tcase_add_test(tc, test_a_dump_resumes_across_batches_and_lists_every_live_key_once);
    tcase_add_test(tc, test_metadump_class_lists);
    tcase_add_test(tc, test_cachedump_folds_magpies_classes_onto_memcacheds_ids);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(dump_suite());
}

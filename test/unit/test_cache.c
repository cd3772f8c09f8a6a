/* Unit tests for cache: the engine's commands, with time injected through `now`. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/cache.h"

static struct mp_cache cache;
static struct mp_cache *c = &cache;

static void setup(void)
{
    struct mp_cache_config cfg = test_cache_config(4 * MIB);
    test_cache_setup(c, &cfg);
}

static void teardown(void)
{
    mp_cache_teardown(c);
}

static enum mp_result cas_str(const char *key, const char *value, uint64_t cas, uint32_t now)
{
    return store_full(c, MP_CAS, key, value, strlen(value), 0, 0, 0, cas, now, NULL);
}

static enum mp_miss miss_of(const char *key, uint32_t now)
{
    struct got g = {0};
    enum mp_miss miss = MP_MISS_ABSENT;
    ck_assert_int_eq(get_key(c, key, now, &g, &miss), MP_NOT_FOUND);
    ck_assert_int_eq(g.hits, 0);
    return miss;
}

static void assert_value(const char *key, uint32_t now, const char *value)
{
    struct got g = get_hit(c, key, now);
    ck_assert_uint_eq(g.nbytes, strlen(value));
    ck_assert_str_eq(g.value, value);
}

/* The item now linked under key (no hit is recorded). */
static struct mp_item *linked(const char *key, uint32_t now)
{
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key, strlen(key), &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, key, strlen(key), now, NULL);
    mp_cache_unlock(&lk);
    return it;
}

/* ---- set / get ------------------------------------------------------------------------------- */

START_TEST(test_set_then_get_returns_the_exact_value_flags_and_exptime)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "foo", "bar\r\nbaz", 8, 0, 0xdeadbeef, T0 + 50, 0, T0, &cas), MP_STORED);
    struct got g = get_hit(c, "foo", T0);
    ck_assert_uint_eq(g.nbytes, 8);
    ck_assert_int_eq(memcmp(g.value, "bar\r\nbaz", 8), 0);
    ck_assert_uint_eq(g.flags, 0xdeadbeef);
    ck_assert_uint_eq(g.exptime, T0 + 50);
    ck_assert_uint_eq(g.cas, cas);
    ck_assert_uint_ne(cas, 0);
}
END_TEST

START_TEST(test_empty_value_is_stored)
{
    ck_assert_int_eq(set_str(c, "empty", "", 0, T0), MP_STORED);
    assert_value("empty", T0, "");
}
END_TEST

START_TEST(test_get_of_a_missing_key_is_not_found)
{
    ck_assert_int_eq(miss_of("nope", T0), MP_MISS_ABSENT);
}
END_TEST

START_TEST(test_set_replaces_the_value_and_frees_the_old_chunk)
{
    ck_assert_int_eq(set_str(c, "k", "one", 0, T0), MP_STORED);
    unsigned cls = class_of_shape(c, 1, 3);
    ck_assert_uint_eq(used_in(c, cls), 1);
    ck_assert_int_eq(set_str(c, "k", "two", 0, T0), MP_STORED);
    assert_value("k", T0, "two");
    ck_assert_uint_eq(used_in(c, cls), 1);
    ck_assert_uint_eq(mp_table_count(&c->table), 1);
    ck_assert_uint_eq(mp_table_bytes(&c->table), mp_item_total(1, 3, 0));
}
END_TEST

START_TEST(test_set_over_a_small_item_of_the_same_shape_writes_it_in_place)
{
    uint64_t cas1, cas2;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "one", 3, 0, 7, T0 + 50, 0, T0, &cas1), MP_STORED);
    struct mp_item *first = linked("k", T0);
    get_hit(c, "k", T0); /* fetched, one hit */
    mp_item_set(first, MP_ITEM_STALE | MP_ITEM_TOKEN_SENT, true);
    ck_assert_int_eq(store_full(c, MP_SET, "k", "four", 4, 0, 9, T0 + 80, 0, T0, &cas2), MP_STORED);
    ck_assert_ptr_eq(linked("k", T0), first);
    ck_assert_uint_gt(cas2, cas1);
    /* a fresh store: the old one's hits and meta flags are gone */
    ck_assert(!mp_item_fetched(first));
    ck_assert(!mp_item_has(first, MP_ITEM_STALE | MP_ITEM_TOKEN_SENT));
    ck_assert(mp_item_linked(first));
    struct got g = get_hit(c, "k", T0);
    ck_assert_str_eq(g.value, "four");
    ck_assert_uint_eq(g.nbytes, 4);
    ck_assert_uint_eq(g.flags, 9);
    ck_assert_uint_eq(g.exptime, T0 + 80);
    ck_assert_uint_eq(g.cas, cas2);
    ck_assert_uint_eq(used_in(c, class_of_shape(c, 1, 4 + 4)), 1);
    ck_assert_uint_eq(mp_table_count(&c->table), 1);
    ck_assert_uint_eq(mp_table_bytes(&c->table), mp_item_total(1, 4, 9));
}
END_TEST

/* The cases where a set must link a chunk of its own: the old item's chunk is of another class,
 * keeps its key elsewhere (client flags stored in one and not the other), or is held by a reader. */
START_TEST(test_set_links_a_new_chunk_when_the_old_one_cannot_take_it)
{
    ck_assert_int_eq(set_str(c, "k", "a", 0, T0), MP_STORED);
    struct mp_item *it = linked("k", T0);
    ck_assert_int_eq(set_fill(c, "k", 300, 'b', 0, T0), MP_STORED);
    ck_assert_ptr_ne(linked("k", T0), it);
    ck_assert_uint_eq(get_hit(c, "k", T0).nbytes, 300);

    it = linked("k", T0);
    ck_assert_int_eq(store_full(c, MP_SET, "k", NULL, 300, 'c', 5, 0, 0, T0, NULL), MP_STORED);
    ck_assert_ptr_ne(linked("k", T0), it);
    struct got g = get_hit(c, "k", T0);
    ck_assert_uint_eq(g.flags, 5);
    ck_assert_int_eq(g.value[0], 'c');

    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, "k", T0, &held, NULL), MP_OK);
    ck_assert_int_eq(store_full(c, MP_SET, "k", NULL, 300, 'd', 5, 0, 0, T0, NULL), MP_STORED);
    ck_assert_ptr_ne(linked("k", T0), held.held);
    ck_assert(!mp_item_linked(held.held));
    ck_assert_int_eq(mp_item_value(held.held)[0], 'c'); /* the reader keeps its bytes */
    ck_assert_int_eq(get_hit(c, "k", T0).value[0], 'd');
    mp_cache_item_release(c, &held.held);
    ck_assert_uint_eq(mp_table_count(&c->table), 1);
    ck_assert_uint_eq(mp_table_bytes(&c->table), mp_item_total(1, 300, 5));
}
END_TEST

START_TEST(test_value_up_to_the_item_limit_is_stored_and_one_byte_more_is_too_large)
{
    const char *key = "big";
    size_t fits = MIB - MP_ITEM_HDR - strlen(key);
    ck_assert_int_eq(set_fill(c, key, fits, 'x', 0, T0), MP_STORED);
    struct got g = get_hit(c, key, T0);
    ck_assert_uint_eq(g.nbytes, fits);
    ck_assert_int_eq(set_fill(c, "big2", fits, 'x', 0, T0), MP_TOO_LARGE); /* one byte longer key */
    enum mp_result res = MP_OK;
    ck_assert_ptr_null(mp_cache_alloc(c, key, 3, 0, 0, (uint32_t)fits + 1, T0, &res));
    ck_assert_int_eq(res, MP_TOO_LARGE);
    /* flags take four bytes of the item too */
    ck_assert_ptr_null(mp_cache_alloc(c, key, 3, 1, 0, (uint32_t)fits, T0, &res));
    ck_assert_int_eq(res, MP_TOO_LARGE);
}
END_TEST

START_TEST(test_forget_drops_the_old_value_of_a_failed_set)
{
    ck_assert_int_eq(set_str(c, "k", "old", 0, T0), MP_STORED);
    mp_cache_forget(c, "k", 1);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
    mp_cache_forget(c, "k", 1); /* nothing there: no harm */
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
}
END_TEST

START_TEST(test_released_alloc_frees_its_chunk)
{
    enum mp_result res;
    unsigned cls = class_of_shape(c, 1, 10);
    struct mp_item *it = mp_cache_alloc(c, "k", 1, 0, 0, 10, T0, &res);
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(res, MP_OK);
    ck_assert_uint_eq(used_in(c, cls), 1);
    mp_cache_item_release(c, &it);
    ck_assert_ptr_null(it);
    ck_assert_uint_eq(used_in(c, cls), 0);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
}
END_TEST

/* ---- add / replace / append / prepend ----------------------------------------------------- */

START_TEST(test_add_stores_only_when_the_key_is_absent)
{
    ck_assert_int_eq(store_str(c, MP_ADD, "k", "first", 0, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_ADD, "k", "second", 0, T0), MP_NOT_STORED);
    assert_value("k", T0, "first");
}
END_TEST

START_TEST(test_add_over_an_expired_item_stores)
{
    ck_assert_int_eq(set_str(c, "k", "old", T0 + 1, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_ADD, "k", "new", 0, T0 + 1), MP_STORED);
    assert_value("k", T0 + 1, "new");
}
END_TEST

START_TEST(test_replace_stores_only_when_the_key_is_present)
{
    ck_assert_int_eq(store_str(c, MP_REPLACE, "k", "v", 0, T0), MP_NOT_STORED);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
    ck_assert_int_eq(set_str(c, "k", "old", 0, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_REPLACE, "k", "new", 0, T0), MP_STORED);
    assert_value("k", T0, "new");
}
END_TEST

START_TEST(test_append_and_prepend_join_the_values)
{
    ck_assert_int_eq(set_str(c, "k", "mid", 0, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_APPEND, "k", "-end", 0, T0), MP_STORED);
    assert_value("k", T0, "mid-end");
    ck_assert_int_eq(store_str(c, MP_PREPEND, "k", "start-", 0, T0), MP_STORED);
    assert_value("k", T0, "start-mid-end");
}
END_TEST

START_TEST(test_append_keeps_the_old_flags_and_exptime)
{
    ck_assert_int_eq(store_full(c, MP_SET, "k", "a", 1, 0, 42, T0 + 100, 0, T0, NULL), MP_STORED);
    ck_assert_int_eq(store_full(c, MP_APPEND, "k", "b", 1, 0, 7, T0 + 5, 0, T0, NULL), MP_STORED);
    struct got g = get_hit(c, "k", T0);
    ck_assert_str_eq(g.value, "ab");
    ck_assert_uint_eq(g.flags, 42);
    ck_assert_uint_eq(g.exptime, T0 + 100);
}
END_TEST

START_TEST(test_append_and_prepend_to_a_missing_key_are_not_stored)
{
    ck_assert_int_eq(store_str(c, MP_APPEND, "k", "x", 0, T0), MP_NOT_STORED);
    ck_assert_int_eq(store_str(c, MP_PREPEND, "k", "x", 0, T0), MP_NOT_STORED);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
    ck_assert_uint_eq(used_in(c, class_of_shape(c, 1, 1)), 0); /* the refused items were freed */
}
END_TEST

START_TEST(test_append_with_a_cas_checks_it)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "a", 1, 0, 0, 0, 0, T0, &cas), MP_STORED);
    ck_assert_int_eq(store_full(c, MP_APPEND, "k", "b", 1, 0, 0, 0, cas + 1, T0, NULL), MP_EXISTS);
    assert_value("k", T0, "a");
    ck_assert_int_eq(store_full(c, MP_APPEND, "k", "b", 1, 0, 0, 0, cas, T0, NULL), MP_STORED);
    assert_value("k", T0, "ab");
}
END_TEST

/* ---- cas ------------------------------------------------------------------------------------- */

START_TEST(test_cas_with_the_current_unique_stores)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "v1", 2, 0, 0, 0, 0, T0, &cas), MP_STORED);
    uint64_t cas2;
    ck_assert_int_eq(store_full(c, MP_CAS, "k", "v2", 2, 0, 0, 0, cas, T0, &cas2), MP_STORED);
    assert_value("k", T0, "v2");
    ck_assert_uint_gt(cas2, cas);
}
END_TEST

START_TEST(test_cas_with_an_old_unique_says_exists)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "v1", 2, 0, 0, 0, 0, T0, &cas), MP_STORED);
    ck_assert_int_eq(set_str(c, "k", "v2", 0, T0), MP_STORED);
    ck_assert_int_eq(cas_str("k", "v3", cas, T0), MP_EXISTS);
    assert_value("k", T0, "v2");
    ck_assert_int_eq(cas_str("k", "v3", 0, T0), MP_EXISTS); /* 0 matches no item */
}
END_TEST

START_TEST(test_cas_on_a_missing_key_says_not_found)
{
    ck_assert_int_eq(cas_str("k", "v", 1, T0), MP_NOT_FOUND);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
}
END_TEST

START_TEST(test_cas_on_deleted_item_says_not_found)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "v", 1, 0, 0, 0, 0, T0, &cas), MP_STORED);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0), MP_DELETED);
    ck_assert_int_eq(cas_str("k", "v2", cas, T0), MP_NOT_FOUND);
}
END_TEST

START_TEST(test_cas_on_expired_item_says_not_found)
{
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "k", "v", 1, 0, 0, T0 + 2, 0, T0, &cas), MP_STORED);
    ck_assert_int_eq(cas_str("k", "v2", cas, T0 + 2), MP_NOT_FOUND);
}
END_TEST

START_TEST(test_cas_values_are_unique_and_increasing)
{
    uint64_t prev = 0;
    char key[16];
    for (unsigned i = 0; i < 200; i++) {
        uint64_t cas;
        key_of(key, sizeof(key), "k", i % 7); /* overwrites too */
        ck_assert_int_eq(store_full(c, MP_SET, key, "v", 1, 0, 0, 0, 0, T0, &cas), MP_STORED);
        ck_assert_uint_gt(cas, prev);
        ck_assert_uint_eq(get_hit(c, key, T0).cas, cas);
        prev = cas;
    }
    /* incr and touch: incr takes a new one, a refused store none */
    uint64_t v;
    ck_assert_int_eq(set_str(c, "n", "1", 0, T0), MP_STORED);
    uint64_t before = get_hit(c, "n", T0).cas;
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_gt(get_hit(c, "n", T0).cas, before);
}
END_TEST

/* ---- delete ---------------------------------------------------------------------------------- */

START_TEST(test_delete_removes_the_item_once)
{
    ck_assert_int_eq(set_str(c, "k", "v", 0, T0), MP_STORED);
    unsigned cls = class_of_shape(c, 1, 1);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0), MP_DELETED);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_ABSENT);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0), MP_NOT_FOUND);
    ck_assert_uint_eq(used_in(c, cls), 0);
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
}
END_TEST

START_TEST(test_delete_of_an_expired_item_is_not_found)
{
    ck_assert_int_eq(set_str(c, "k", "v", T0 + 1, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0 + 1), MP_NOT_FOUND);
}
END_TEST

/* ---- incr / decr ----------------------------------------------------------------------------- */

START_TEST(test_incr_adds_and_rewrites_the_value)
{
    uint64_t v = 0;
    ck_assert_int_eq(set_str(c, "n", "41", 0, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 42);
    assert_value("n", T0, "42");
}
END_TEST

START_TEST(test_incr_wraps_at_2_64)
{
    uint64_t v = 1;
    ck_assert_int_eq(set_str(c, "n", "18446744073709551615", 0, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 0);
    assert_value("n", T0, "0                   "); /* in place: padded to the old 20 bytes */
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, UINT64_MAX, T0, &v), MP_OK);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 2, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 1);
}
END_TEST

START_TEST(test_decr_stops_at_zero)
{
    uint64_t v = 1;
    ck_assert_int_eq(set_str(c, "n", "5", 0, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, false, 10, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 0);
    assert_value("n", T0, "0");
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, false, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 0);
}
END_TEST

START_TEST(test_decr_shrinking_the_length_pads_with_spaces_in_place)
{
    uint64_t v;
    ck_assert_int_eq(set_str(c, "n", "10", 0, T0), MP_STORED);
    struct mp_item *before = linked("n", T0);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, false, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 9);
    assert_value("n", T0, "9 ");
    ck_assert_ptr_eq(linked("n", T0), before);
    /* the padded value still reads as a number */
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 10);
    assert_value("n", T0, "10");
}
END_TEST

START_TEST(test_incr_growing_the_length_makes_a_new_item_with_the_same_flags_and_exptime)
{
    uint64_t v;
    ck_assert_int_eq(store_full(c, MP_SET, "n", "99", 2, 0, 77, T0 + 60, 0, T0, NULL), MP_STORED);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 100);
    struct got g = get_hit(c, "n", T0);
    ck_assert_uint_eq(g.nbytes, 3);
    ck_assert_str_eq(g.value, "100");
    ck_assert_uint_eq(g.flags, 77);
    ck_assert_uint_eq(g.exptime, T0 + 60);
    ck_assert_uint_eq(mp_table_count(&c->table), 1);
    ck_assert_uint_eq(class_of_shape(c, 1, 2), class_of_shape(c, 1, 3));
    ck_assert_uint_eq(used_in(c, class_of_shape(c, 1, 3)), 1); /* the old item was freed */
}
END_TEST

START_TEST(test_incr_of_a_held_item_leaves_the_reader_its_bytes)
{
    uint64_t v;
    ck_assert_int_eq(set_str(c, "n", "10", 0, T0), MP_STORED);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, "n", T0, &held, NULL), MP_OK);
    ck_assert_ptr_nonnull(held.held);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_OK);
    ck_assert_uint_eq(v, 11);
    ck_assert_int_eq(memcmp(mp_item_value(held.held), "10", 2), 0);
    assert_value("n", T0, "11");
    ck_assert(!mp_item_linked(held.held));
    unsigned cls = class_of_shape(c, 1, 2);
    ck_assert_uint_eq(used_in(c, cls), 2);
    mp_cache_item_release(c, &held.held);
    ck_assert_uint_eq(used_in(c, cls), 1);
}
END_TEST

START_TEST(test_incr_of_a_non_numeric_value_is_refused)
{
    static const char *bad[] = {"abc", "", "-1", "12a", "18446744073709551616", " "};
    uint64_t v;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(set_str(c, "n", bad[i], 0, T0), MP_STORED);
        ck_assert_msg(mp_cache_arith(c, "n", 1, true, 1, T0, &v) == MP_NON_NUMERIC, "incr of \"%s\"", bad[i]);
        ck_assert_int_eq(mp_cache_arith(c, "n", 1, false, 1, T0, &v), MP_NON_NUMERIC);
        assert_value("n", T0, bad[i]);
    }
}
END_TEST

START_TEST(test_incr_of_a_missing_key_is_not_found)
{
    uint64_t v;
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, true, 1, T0, &v), MP_NOT_FOUND);
    ck_assert_int_eq(set_str(c, "n", "1", T0 + 1, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_arith(c, "n", 1, false, 1, T0 + 1, &v), MP_NOT_FOUND);
}
END_TEST

/* ---- touch and expiry ------------------------------------------------------------------------ */

START_TEST(test_item_with_exptime_now_plus_1_is_gone_at_now_plus_1)
{
    ck_assert_int_eq(set_str(c, "k", "v", T0 + 1, T0), MP_STORED);
    assert_value("k", T0, "v");
    ck_assert_int_eq(miss_of("k", T0 + 1), MP_MISS_EXPIRED);
    ck_assert_int_eq(miss_of("k", T0 + 1), MP_MISS_ABSENT); /* reclaimed by the first miss */
    ck_assert_uint_eq(used_in(c, class_of_shape(c, 1, 1)), 0);
}
END_TEST

START_TEST(test_exptime_zero_never_expires)
{
    ck_assert_int_eq(set_str(c, "k", "v", 0, T0), MP_STORED);
    assert_value("k", UINT32_MAX, "v");
}
END_TEST

START_TEST(test_exptime_one_is_already_expired)
{
    ck_assert_int_eq(set_str(c, "k", "v", 1, T0), MP_STORED);
    ck_assert_int_eq(miss_of("k", T0), MP_MISS_EXPIRED);
}
END_TEST

START_TEST(test_touch_sets_a_new_exptime)
{
    ck_assert_int_eq(set_str(c, "k", "v", T0 + 2, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_touch(c, "k", 1, T0 + 10, T0 + 1, NULL, NULL, NULL), MP_TOUCHED);
    assert_value("k", T0 + 9, "v");
    ck_assert_int_eq(miss_of("k", T0 + 10), MP_MISS_EXPIRED);
}
END_TEST

START_TEST(test_touch_to_zero_makes_an_item_permanent)
{
    ck_assert_int_eq(set_str(c, "k", "v", T0 + 2, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_touch(c, "k", 1, 0, T0, NULL, NULL, NULL), MP_TOUCHED);
    assert_value("k", T0 + 1000, "v");
}
END_TEST

START_TEST(test_touch_of_a_missing_or_expired_key_is_not_found)
{
    ck_assert_int_eq(mp_cache_touch(c, "k", 1, 0, T0, NULL, NULL, NULL), MP_NOT_FOUND);
    ck_assert_int_eq(set_str(c, "k", "v", T0 + 1, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_touch(c, "k", 1, T0 + 100, T0 + 1, NULL, NULL, NULL), MP_NOT_FOUND);
    ck_assert_int_eq(miss_of("k", T0 + 2), MP_MISS_ABSENT);
}
END_TEST

START_TEST(test_gat_touches_and_hands_over_the_item)
{
    ck_assert_int_eq(set_str(c, "k", "val", T0 + 2, T0), MP_STORED);
    struct got g = {0};
    ck_assert_int_eq(mp_cache_touch(c, "k", 1, T0 + 30, T0, got_hit, &g, NULL), MP_OK);
    ck_assert_int_eq(g.hits, 1);
    ck_assert_str_eq(g.value, "val");
    ck_assert_uint_eq(g.exptime, T0 + 30);
}
END_TEST

/* ---- flush_all --------------------------------------------------------------------------------- */

START_TEST(test_flush_all_now_hides_everything_stored_before)
{
    ck_assert_int_eq(set_str(c, "a", "1", 0, T0), MP_STORED);
    ck_assert_int_eq(set_str(c, "b", "2", T0 + 100, T0), MP_STORED);
    mp_cache_flush(c, T0, T0);
    ck_assert_int_eq(miss_of("a", T0), MP_MISS_FLUSHED);
    ck_assert_int_eq(miss_of("b", T0), MP_MISS_FLUSHED);
    ck_assert_int_eq(store_str(c, MP_REPLACE, "a", "x", 0, T0), MP_NOT_STORED);
    ck_assert_int_eq(set_str(c, "c", "3", 0, T0), MP_STORED);
    assert_value("c", T0, "3");
    ck_assert_int_eq(store_str(c, MP_ADD, "b", "4", 0, T0), MP_STORED);
    assert_value("b", T0, "4");
}
END_TEST

START_TEST(test_delayed_flush_all_takes_effect_at_its_time)
{
    ck_assert_int_eq(set_str(c, "a", "1", 0, T0), MP_STORED);
    mp_cache_flush(c, T0, T0 + 10);
    ck_assert_int_eq(set_str(c, "b", "2", 0, T0 + 5), MP_STORED);
    assert_value("a", T0 + 9, "1");
    assert_value("b", T0 + 9, "2");
    ck_assert_int_eq(miss_of("a", T0 + 10), MP_MISS_FLUSHED);
    ck_assert_int_eq(miss_of("b", T0 + 10), MP_MISS_FLUSHED);
    ck_assert_int_eq(set_str(c, "c", "3", 0, T0 + 11), MP_STORED);
    assert_value("c", T0 + 11, "3");
    assert_value("c", T0 + 1000, "3");
}
END_TEST

START_TEST(test_delayed_flush_applies_to_items_first_looked_at_long_after)
{
    /* no one looks between the deadline and much later: items stored before still die, and one
     * stored later lives */
    ck_assert_int_eq(set_str(c, "a", "1", 0, T0), MP_STORED);
    mp_cache_flush(c, T0, T0 + 10);
    ck_assert_int_eq(set_str(c, "late", "2", 0, T0 + 500), MP_STORED);
    ck_assert_int_eq(miss_of("a", T0 + 500), MP_MISS_FLUSHED);
    assert_value("late", T0 + 501, "2");
}
END_TEST

START_TEST(test_immediate_flush_cancels_a_pending_delayed_one)
{
    mp_cache_flush(c, T0, T0 + 10);
    mp_cache_flush(c, T0 + 1, T0 + 1);
    ck_assert_int_eq(set_str(c, "a", "1", 0, T0 + 2), MP_STORED);
    assert_value("a", T0 + 20, "1");
}
END_TEST

/* flush_all 1 (a cut-off at the next second): memcached flushes what is there at once, and what is
 * stored for the rest of this second too. */
START_TEST(test_flush_a_second_away_also_takes_what_is_stored_in_the_rest_of_it)
{
    ck_assert_int_eq(set_str(c, "before", "1", 0, T0), MP_STORED);
    mp_cache_flush(c, T0, T0 + 1);
    ck_assert_int_eq(miss_of("before", T0), MP_MISS_FLUSHED);
    ck_assert_int_eq(set_str(c, "same_second", "2", 0, T0), MP_STORED);
    assert_value("same_second", T0, "2");
    ck_assert_int_eq(miss_of("same_second", T0 + 1), MP_MISS_FLUSHED);
    ck_assert_int_eq(set_str(c, "next_second", "3", 0, T0 + 1), MP_STORED);
    assert_value("next_second", T0 + 100, "3");
}
END_TEST

/* An absolute time before the server started comes out of mp_clock_exptime as 1: memcached then
 * flushes nothing, and forgets a pending flush. */
START_TEST(test_flush_with_an_absolute_time_before_the_start_only_cancels)
{
    ck_assert_int_eq(set_str(c, "a", "1", 0, T0), MP_STORED);
    mp_cache_flush(c, T0, T0 + 10);
    mp_cache_flush(c, T0 + 1, 1);
    assert_value("a", T0 + 20, "1");
}
END_TEST

/* ---- the memory limit ------------------------------------------------------------------------- */

START_TEST(test_sets_never_fail_in_a_full_cache_and_evict)
{
    enum { N = 100000, VLEN = 100 };
    char key[32];
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        enum mp_result r = set_fill(c, key, VLEN, (char)('a' + i % 26), 0, T0 + i / 1000);
        ck_assert_msg(r == MP_STORED, "set %u: %d", i, r);
        ck_assert_uint_le(pages_in_use(c), 4);
    }
    uint64_t count = mp_table_count(&c->table);
    ck_assert_uint_gt(total_evictions(c), 0);
    ck_assert_uint_lt(count, N);
    ck_assert_uint_eq(count + total_evictions(c) + total_evicted_for_move(c), N); /* the rest were evicted */
    ck_assert_uint_le(mp_slab_malloced(&c->slabs), 4 * MIB);
    /* the last one stored is there, intact */
    key_of(key, sizeof(key), "key:", N - 1);
    struct got g = get_hit(c, key, T0 + N / 1000);
    ck_assert_uint_eq(g.nbytes, VLEN);
    ck_assert_int_eq(g.value[0], 'a' + (N - 1) % 26);
    ck_assert_int_eq(g.value[VLEN - 1], 'a' + (N - 1) % 26);
}
END_TEST

START_TEST(test_sets_of_mixed_sizes_never_fail_in_a_full_cache)
{
    enum { N = 20000 };
    char key[32];
    uint64_t x = 88172645463325252ull;
    for (unsigned i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t vlen = i % 100 == 0 ? 200000 + x % 800000 : x % 20000; /* now and then a big one */
        key_of(key, sizeof(key), "mixed:", i);
        enum mp_result r = set_fill(c, key, vlen, 'm', 0, T0);
        ck_assert_msg(r == MP_STORED, "set %u of %zu bytes: %d", i, vlen, r);
        ck_assert_uint_le(pages_in_use(c), 4);
        struct got g = get_hit(c, key, T0);
        ck_assert_uint_eq(g.nbytes, vlen);
    }
    /* every item not there was evicted, or went with a page moved to another class */
    ck_assert_uint_gt(total_evicted_for_move(c), 0);
    ck_assert_uint_eq(mp_table_count(&c->table) + total_evictions(c) + total_evicted_for_move(c), N);
}
END_TEST

START_TEST(test_set_in_a_class_without_pages_succeeds_while_a_reader_holds_an_item)
{
    /* Two pages, both taken by small items. A reader holds the first item stored. A set of a
     * large value needs a page: one of the two can be emptied, so the set must not fail. */
    mp_cache_teardown(c);
    struct mp_cache_config cfg = test_cache_config(2 * MIB);
    test_cache_setup(c, &cfg);
    char key[32];
    unsigned small = class_of_shape(c, 8, 100);
    unsigned i = 0;
    while (class_at(c, small)->npages < 2 || class_at(c, small)->bump_page != MP_SLAB_NONE) {
        key_of(key, sizeof(key), "s:", i++);
        ck_assert_int_eq(set_fill(c, key, 108 - strlen(key), 's', 0, T0), MP_STORED); /* one size */
    }
    ck_assert_uint_eq(total_evictions(c), 0);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, "s:0", T0, &held, NULL), MP_OK);
    /* on the page a steal looks at first */
    ck_assert_uint_eq(mp_slab_page_of(&c->slabs, held.held), class_at(c, small)->hand_page);

    ck_assert_int_eq(set_fill(c, "large", 300000, 'L', 0, T0), MP_STORED);
    ck_assert_int_eq(memcmp(mp_item_value(held.held), "ssss", 4), 0);
    mp_cache_item_release(c, &held.held);
}
END_TEST

/* ---- threads ---------------------------------------------------------------------------------- */

/* Values in the threads' tests are of one character throughout and of a length the key tells, so
 * a reader can tell a whole value from a torn or overwritten one. Workers count what they see;
 * the test asserts after joining them. */
#define TTHREADS 4
#define TOPS 20000

struct worker {
    pthread_t thread;
    unsigned id;
    bool mixed; /* values of six sizes, so pages keep moving between classes */
    unsigned failed_sets;
    unsigned nomem_sets;
    unsigned hits;
    unsigned bad_values;
    unsigned failed_incrs;
};

static char fill_of(unsigned id, unsigned n)
{
    return (char)('a' + (id * 7 + n) % 26);
}

static uint32_t len_of(bool mixed, unsigned n)
{
    static const uint32_t sizes[] = {200, 1000, 3000, 8000, 20000, 60000};
    return mixed ? sizes[n % 6] : 200;
}

/* What a reader copies: the length and the first and last bytes of the value, and whether all its
 * bytes are the same. */
struct seen {
    uint32_t nbytes;
    char first;
    bool uniform;
};

static void check_whole(void *ctx, const struct mp_hit *hit)
{
    struct seen *v = ctx;
    const char *p = hit->value;
    v->nbytes = hit->nbytes;
    v->first = hit->nbytes ? p[0] : 0;
    v->uniform = true;
    for (uint32_t i = 1; i < hit->nbytes; i++)
        v->uniform &= p[i] == p[0];
}

/* Returns the engine's result; allocation failures as MP_NOMEM or MP_TOO_LARGE. */
static enum mp_result set_raw(const char *key, uint32_t nbytes, char fill, uint32_t now)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(c, key, strlen(key), 0, 0, nbytes, now, &res);
    if (!it)
        return res;
    memset(mp_item_value(it), fill, nbytes);
    struct mp_store st = {.op = MP_SET};
    return mp_cache_store(c, &it, &st, now);
}

static void count_set(struct worker *w, enum mp_result r)
{
    w->nomem_sets += r == MP_NOMEM;
    w->failed_sets += r != MP_STORED && r != MP_NOMEM;
}

static void *writer_reader(void *arg)
{
    struct worker *w = arg;
    char key[32];
    unsigned ops = w->mixed ? TOPS / 4 : TOPS; /* every page move empties a page: fewer will do */
    for (unsigned n = 0; n < ops; n++) {
        uint32_t now = T0 + n / 1000;
        snprintf(key, sizeof(key), "t%u:%05u", w->id, n); /* one key length: one class per size */
        count_set(w, set_raw(key, len_of(w->mixed, n), fill_of(w->id, n), now));
        snprintf(key, sizeof(key), "hot:%04u", n % 8); /* every thread overwrites these */
        count_set(w, set_raw(key, len_of(w->mixed, n % 8), (char)('A' + (n + w->id) % 26), now));

        unsigned other = (w->id + 1) % TTHREADS, m = n / 2;
        snprintf(key, sizeof(key), "t%u:%05u", other, m);
        struct seen v = {0};
        const struct mp_cache_reader rd = {check_whole, NULL, &v, UINT32_MAX}; /* check_whole overwrites v */
        if (mp_cache_get(c, key, strlen(key), now, &rd, NULL) == MP_OK) {
            w->hits++;
            w->bad_values += !v.uniform || v.nbytes != len_of(w->mixed, m) || v.first != fill_of(other, m);
        }
        unsigned h = (n + 3) % 8;
        snprintf(key, sizeof(key), "hot:%04u", h);
        if (mp_cache_get(c, key, strlen(key), now, &rd, NULL) == MP_OK)
            w->bad_values += !v.uniform || v.nbytes != len_of(w->mixed, h);
    }
    return NULL;
}

/* Run the workers; then nothing is held, so every chunk in use is a linked item. */
static void run_writers_and_readers(bool mixed, unsigned *nomem)
{
    struct worker w[TTHREADS] = {{0}};
    for (unsigned i = 0; i < TTHREADS; i++) {
        w[i].id = i;
        w[i].mixed = mixed;
        ck_assert_int_eq(pthread_create(&w[i].thread, NULL, writer_reader, &w[i]), 0);
    }
    unsigned hits = 0;
    *nomem = 0;
    for (unsigned i = 0; i < TTHREADS; i++) {
        ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
        ck_assert_uint_eq(w[i].failed_sets, 0);
        ck_assert_uint_eq(w[i].bad_values, 0);
        hits += w[i].hits;
        *nomem += w[i].nomem_sets;
    }
    ck_assert_uint_gt(hits, 0);
    ck_assert_uint_le(pages_in_use(c), 4);
    uint64_t used = 0;
    for (unsigned i = 1; i <= c->slabs.nclasses; i++)
        used += used_in(c, i);
    ck_assert_uint_eq(used, mp_table_count(&c->table));
}

/* A set in place moves only the item's CAS, which readers check with the stripe's count; a set
 * that links a chunk of its own moves the count. */
START_TEST(test_a_set_in_place_moves_the_item_cas_and_not_the_stripe_count)
{
    ck_assert_int_eq(set_str(c, "k", "one", 0, T0), MP_STORED);
    struct mp_item *it = linked("k", T0);
    struct mp_stripe *st = mp_table_stripe(&c->table, mp_table_hash(&c->table, "k", 1));
    uint32_t seq = mp_stripe_read_begin(st);
    uint64_t stamp = mp_stripe_item_version(it), now;
    ck_assert_uint_ne(stamp & MP_ITEM_CAS_MASK, 0);
    ck_assert(mp_stripe_item_valid(st, seq, it, stamp, &now));
    ck_assert_int_eq(set_str(c, "k", "two", 0, T0), MP_STORED);
    ck_assert_uint_eq(mp_stripe_read_begin(st), seq);
    ck_assert(!mp_stripe_item_valid(st, seq, it, stamp, &now));
    ck_assert_ptr_eq(linked("k", T0), it);

    seq = mp_stripe_read_begin(st);
    ck_assert_int_eq(set_fill(c, "k", 300, 'x', 0, T0), MP_STORED); /* another class */
    ck_assert_uint_ne(mp_stripe_read_begin(st), seq);
}
END_TEST

/* A reader that, the first time it is called, stores the key anew: so the stripe changes under an
 * optimistic read, which must then be undone and made again under the lock. */
struct racing {
    int hits, undos;
    char first;
    bool locked; /* whether the last hit came with the item (under the lock) */
};

static void hit_then_overwrite(void *ctx, const struct mp_hit *hit)
{
    struct racing *r = ctx;
    r->first = hit->value[0];
    r->locked = hit->it != NULL;
    if (r->hits++ == 0 && !r->locked)
        ck_assert_int_eq(set_raw("race", 8, 'B', T0), MP_STORED);
}

static void count_undo(void *ctx)
{
    ((struct racing *)ctx)->undos++;
}

START_TEST(test_optimistic_get_that_sees_a_change_is_undone_and_read_again_locked)
{
    ck_assert_int_eq(set_raw("race", 8, 'A', T0), MP_STORED);
    struct racing r = {0};
    const struct mp_cache_reader rd = {hit_then_overwrite, count_undo, &r, UINT32_MAX};
    ck_assert_int_eq(mp_cache_get(c, "race", 4, T0, &rd, NULL), MP_OK);
    ck_assert_int_eq(r.hits, 2);
    ck_assert_int_eq(r.undos, 1);
    ck_assert_int_eq(r.first, 'B');
    ck_assert(r.locked);
    /* with nothing in the way, one optimistic read */
    r = (struct racing){.hits = 1};
    ck_assert_int_eq(mp_cache_get(c, "race", 4, T0, &rd, NULL), MP_OK);
    ck_assert_int_eq(r.hits, 2);
    ck_assert_int_eq(r.undos, 0);
    ck_assert(!r.locked);
}
END_TEST

START_TEST(test_values_over_copy_max_are_read_under_the_lock)
{
    ck_assert_int_eq(set_raw("big", 8, 'A', T0), MP_STORED);
    struct racing r = {.hits = 1};
    const struct mp_cache_reader small = {hit_then_overwrite, count_undo, &r, 7};
    ck_assert_int_eq(mp_cache_get(c, "big", 3, T0, &small, NULL), MP_OK);
    ck_assert(r.locked);
    const struct mp_cache_reader fits = {hit_then_overwrite, count_undo, &r, 8};
    ck_assert_int_eq(mp_cache_get(c, "big", 3, T0, &fits, NULL), MP_OK);
    ck_assert(!r.locked);
    const struct mp_cache_reader never = {hit_then_overwrite, count_undo, &r, 0};
    ck_assert_int_eq(mp_cache_get(c, "big", 3, T0, &never, NULL), MP_OK);
    ck_assert(r.locked);
    ck_assert_int_eq(r.undos, 0);
}
END_TEST

/* A hit on an item that another hit or the CLOCK hand changes meanwhile only changes its CLOCK
 * bits: the read stands. */
START_TEST(test_clock_changes_do_not_undo_an_optimistic_read)
{
    ck_assert_int_eq(set_str(c, "k", "v", 0, T0), MP_STORED);
    struct mp_item *it = linked("k", T0);
    struct mp_stripe *st = mp_table_stripe(&c->table, mp_table_hash(&c->table, "k", 1));
    uint32_t seq = mp_stripe_read_begin(st);
    uint64_t stamp = mp_stripe_item_version(it), now;
    mp_item_touch_clock(it, T0);
    ck_assert(mp_stripe_item_valid(st, seq, it, stamp, &now));
    ck_assert_uint_ne(now, stamp);
    ck_assert(mp_item_fetched(it));
    ck_assert(mp_item_clock_decay(it));
    ck_assert_uint_eq(mp_item_hits(it), 0);
    ck_assert(mp_stripe_item_valid(st, seq, it, stamp, &now));
}
END_TEST

/* ---- what a lock-free reader may write -------------------------------------------------------- */

/*
 * A reader parked by the test hook between its check and the hit's write (cache.h): while it
 * waits, the test frees its item and reuses the memory, then lets it go and looks at what the new
 * occupant holds.
 */
struct parked {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 reading, 1 parked in the hook, 2 told to go on */
    struct mp_item *seen;
    const char *key;
    struct got got;
    enum mp_result res;
    pthread_t thread;
};

static void park_hook(void *ctx, struct mp_item *it)
{
    struct parked *p = ctx;
    pthread_mutex_lock(&p->lock);
    p->seen = it;
    p->state = 1;
    pthread_cond_broadcast(&p->cond);
    while (p->state != 2)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

static void *parked_reader(void *arg)
{
    struct parked *p = arg;
    p->res = get_key(c, p->key, T0, &p->got, NULL);
    return NULL;
}

/* Start a reader of key and return once it is parked in the hook. */
static void park_reader(struct parked *p, struct mp_cache_hooks *hooks, const char *key)
{
    *p = (struct parked){.key = key};
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    *hooks = (struct mp_cache_hooks){park_hook, p};
    c->hooks = hooks;
    ck_assert_int_eq(pthread_create(&p->thread, NULL, parked_reader, p), 0);
    pthread_mutex_lock(&p->lock);
    while (p->state != 1)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    c->hooks = NULL; /* only that one read parks */
}

static void release_reader(struct parked *p)
{
    pthread_mutex_lock(&p->lock);
    p->state = 2;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    ck_assert_int_eq(pthread_join(p->thread, NULL), 0);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

/* Values of this size take a class that keeps no thread magazine: a freed chunk goes to the head
 * of the class's free list and the next allocation takes it back. */
#define UNCACHED_VLEN 5000

START_TEST(test_a_reader_parked_after_its_check_writes_nothing_into_the_next_item_in_its_chunk)
{
    ck_assert_int_eq(set_fill(c, "victim", UNCACHED_VLEN, 'v', 0, T0), MP_STORED);
    ck_assert_uint_eq(c->slabs.mag_cap[mp_slab_class_of(&c->slabs, linked("victim", T0))], 0);
    struct parked p;
    struct mp_cache_hooks hooks;
    park_reader(&p, &hooks, "victim");

    /* The victim goes and another key takes its very chunk. */
    ck_assert_int_eq(mp_cache_delete(c, "victim", 6, T0), MP_DELETED);
    ck_assert_int_eq(set_fill(c, "thief!", UNCACHED_VLEN, 't', 0, T0), MP_STORED);
    struct mp_item *other = linked("thief!", T0);
    ck_assert_ptr_eq(other, p.seen);
    size_t size = mp_slab_chunk_size(&c->slabs, other);
    char *before = malloc(size);
    memcpy(before, other, size);

    release_reader(&p);
    ck_assert_int_eq(p.res, MP_OK); /* it answered with what it had checked */
    ck_assert_uint_eq(p.got.nbytes, UNCACHED_VLEN);
    ck_assert_int_eq(p.got.value[0], 'v');
    ck_assert_msg(memcmp(other, before, size) == 0, "the parked reader wrote into the chunk's new item");
    ck_assert(!mp_item_fetched(other));
    free(before);
}
END_TEST

struct evacuation {
    unsigned cls;
    uint32_t page;
    int rc;
    _Atomic bool done;
};

static void *evacuate_page(void *arg)
{
    struct evacuation *e = arg;
    e->rc = mp_lru_page_evacuate(&c->lru, e->cls, e->page, T0);
    atomic_store(&e->done, true);
    return NULL;
}

/* Fill `page`, now in the pool, with items of another shape; returns how many went on it. */
static unsigned fill_page_with_other_class(uint32_t page, unsigned *cls_out)
{
    char key[32];
    unsigned n = 0;
    for (unsigned i = 0; i < 2000; i++) {
        key_of(key, sizeof(key), "o:", i);
        ck_assert_int_eq(set_fill(c, key, 700, (char)('A' + i % 26), 0, T0), MP_STORED);
        struct mp_item *it = linked(key, T0);
        if (mp_slab_page_of(&c->slabs, it) == page) {
            n++;
            *cls_out = mp_slab_class_of(&c->slabs, it);
        }
        if (n && c->slabs.classes[*cls_out].bump_page == MP_SLAB_NONE)
            break;
    }
    return n;
}

/* Every item of class cls on page holds its own key and its fill, whole. */
static void assert_page_items_whole(uint32_t page, unsigned cls)
{
    const struct mp_slab_class *sc = &c->slabs.classes[cls];
    unsigned checked = 0;
    for (uint32_t i = 0; i < sc->perpage; i++) {
        struct mp_item *it = (struct mp_item *)(mp_slab_page_addr(&c->slabs, page) + (size_t)i * sc->size);
        if (!mp_item_linked(it))
            continue;
        char key[32] = "";
        ck_assert_uint_lt(it->nkey, sizeof(key));
        memcpy(key, mp_item_key(it), it->nkey);
        unsigned n = (unsigned)atoi(key + 2);
        ck_assert_uint_eq(it->nbytes, 700);
        ck_assert_int_eq(strncmp(key, "o:", 2), 0);
        for (uint32_t b = 0; b < it->nbytes; b++)
            ck_assert_int_eq(mp_item_value(it)[b], 'A' + n % 26);
        ck_assert_ptr_eq(linked(key, T0), it);
        ck_assert(!mp_item_fetched(it));
        checked++;
    }
    ck_assert_uint_gt(checked, 0);
}

/* The page of a parked reader's item moves to another class: the move waits for the reader to
 * finish (grace.h), and the other class's items come out whole. */
START_TEST(test_a_page_a_parked_reader_looked_at_changes_class_only_after_it_has_finished)
{
    ck_assert_int_eq(set_fill(c, "victim", 100, 'v', 0, T0), MP_STORED);
    struct mp_item *victim = linked("victim", T0);
    struct evacuation e = {.cls = mp_slab_class_of(&c->slabs, victim), .page = mp_slab_page_of(&c->slabs, victim)};
    struct parked p;
    struct mp_cache_hooks hooks;
    park_reader(&p, &hooks, "victim");

    uint64_t waits = atomic_load(&c->grace.waits);
    pthread_t mover;
    ck_assert_int_eq(pthread_create(&mover, NULL, evacuate_page, &e), 0);
    /* The move either waits for the reader (it must) or, were it not to, finishes first. */
    for (unsigned i = 0; i < 10000 && !atomic_load(&e.done) && atomic_load(&c->grace.waits) == waits; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    unsigned other_cls = 0, on_page = 0;
    if (atomic_load(&e.done)) /* the page is reused while the reader is still parked */
        on_page = fill_page_with_other_class(e.page, &other_cls);
    release_reader(&p);
    ck_assert_int_eq(pthread_join(mover, NULL), 0);
    ck_assert_int_eq(e.rc, 0);
    ck_assert_int_eq(p.res, MP_OK);
    ck_assert_int_eq(p.got.value[0], 'v');
    if (!on_page)
        on_page = fill_page_with_other_class(e.page, &other_cls);
    ck_assert_uint_gt(on_page, 0);
    ck_assert_uint_ne(other_cls, e.cls);
    assert_page_items_whole(e.page, other_cls);
    ck_assert_uint_gt(atomic_load(&c->grace.waits), waits); /* the move waited for the reader */
}
END_TEST

/* ---- the reference limit ---------------------------------------------------------------------- */

/* Reads under the lock, as a connection reads a value it will pin. */
static enum mp_result get_locked(const char *key, struct got *g)
{
    const struct mp_cache_reader rd = {got_hit, got_undo, g, 0};
    return mp_cache_get(c, key, strlen(key), T0, &rd, NULL);
}

START_TEST(test_an_item_pinned_to_the_limit_is_a_miss_and_its_count_never_wraps)
{
    ck_assert_int_eq(set_fill(c, "big", 20000, 'b', 0, T0), MP_STORED);
    struct mp_item *it = linked("big", T0);
    for (unsigned i = 0; i < MP_ITEM_REFS_MAX; i++) {
        struct got g = {.take_ref = true};
        ck_assert_int_eq(get_key(c, "big", T0, &g, NULL), MP_OK);
    }
    ck_assert_uint_eq(atomic_load(&it->refs), MP_ITEM_REFS_MAX + 1);
    struct got g = {.take_ref = true};
    ck_assert_int_eq(get_key(c, "big", T0, &g, NULL), MP_NOT_FOUND);
    ck_assert_int_eq(get_locked("big", &g), MP_NOT_FOUND);
    ck_assert_int_eq(mp_cache_touch(c, "big", 3, 0, T0, got_hit, &g, NULL), MP_NOT_FOUND); /* gat */
    ck_assert_int_eq(mp_cache_touch(c, "big", 3, 0, T0, NULL, NULL, NULL), MP_TOUCHED);    /* touch pins nothing */
    ck_assert_uint_eq(atomic_load(&it->refs), MP_ITEM_REFS_MAX + 1);
    ck_assert_int_eq(g.hits, 0);

    /* One pin let go: it reads again. */
    struct mp_item *one = it;
    mp_cache_item_release(c, &one);
    g = (struct got){.take_ref = true};
    ck_assert_int_eq(get_key(c, "big", T0, &g, NULL), MP_OK);
    ck_assert_uint_eq(atomic_load(&it->refs), MP_ITEM_REFS_MAX + 1);

    /* Deleted while pinned: the chunk stays the readers' until the last pin goes. */
    unsigned cls = mp_slab_class_of(&c->slabs, it);
    ck_assert_int_eq(mp_cache_delete(c, "big", 3, T0), MP_DELETED);
    ck_assert_int_eq(set_fill(c, "other", 20000, 'o', 0, T0), MP_STORED);
    ck_assert_ptr_ne(linked("other", T0), it);
    for (unsigned i = 0; i < MP_ITEM_REFS_MAX; i++) {
        ck_assert_int_eq(mp_item_value(it)[19999], 'b');
        one = it;
        mp_cache_item_release(c, &one);
    }
    ck_assert_uint_eq(used_in(c, cls), 1); /* "other" alone */
    struct got o = get_hit(c, "other", T0);
    ck_assert_uint_eq(o.nbytes, 20000);
    ck_assert_int_eq(o.value[0], 'o');
}
END_TEST

START_TEST(test_optimistic_get_leaves_dead_items_to_the_locked_path)
{
    ck_assert_int_eq(store_full(c, MP_SET, "old", "v", 1, 0, 0, T0 + 5, 0, T0, NULL), MP_STORED);
    enum mp_miss miss = MP_MISS_ABSENT;
    struct got g = {0};
    ck_assert_int_eq(get_key(c, "old", T0 + 5, &g, &miss), MP_NOT_FOUND);
    ck_assert_int_eq(miss, MP_MISS_EXPIRED); /* only the locked path tells why, and reclaims */
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
    ck_assert_int_eq(g.hits, 0);
}
END_TEST

START_TEST(test_concurrent_writers_and_readers_see_only_whole_values)
{
    unsigned nomem;
    run_writers_and_readers(false, &nomem);
    ck_assert_uint_eq(nomem, 0); /* one class evicting: something can always go */
    ck_assert_uint_gt(total_evictions(c), 0);
}
END_TEST

START_TEST(test_concurrent_sets_across_classes_keep_items_whole)
{
    /* Six classes share four pages: a class without a page takes one from another (page steal)
     * while other threads write and read. */
    unsigned nomem;
    run_writers_and_readers(true, &nomem);
    ck_assert_uint_gt(total_evicted_for_move(c), 0);
}
END_TEST

static void *incrementer(void *arg)
{
    struct worker *w = arg;
    uint64_t v;
    for (unsigned n = 0; n < TOPS; n++)
        w->failed_incrs += mp_cache_arith(c, "counter", 7, true, 1, T0, &v) != MP_OK;
    return NULL;
}

START_TEST(test_concurrent_incr_loses_no_update)
{
    ck_assert_int_eq(set_str(c, "counter", "0", 0, T0), MP_STORED);
    struct worker w[TTHREADS] = {{0}};
    for (unsigned i = 0; i < TTHREADS; i++)
        ck_assert_int_eq(pthread_create(&w[i].thread, NULL, incrementer, &w[i]), 0);
    for (unsigned i = 0; i < TTHREADS; i++) {
        ck_assert_int_eq(pthread_join(w[i].thread, NULL), 0);
        ck_assert_uint_eq(w[i].failed_incrs, 0);
    }
    char want[32];
    snprintf(want, sizeof(want), "%u", TTHREADS * TOPS);
    assert_value("counter", T0, want);
}
END_TEST

/* ---- warming: items brought in as they were ------------------------------------------------- */

/* A filled item from free memory, ready for mp_cache_store_warm. */
static struct mp_item *spare(const char *key, const char *value, uint32_t flags, uint32_t exptime)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc_spare(c, key, strlen(key), flags, exptime, (uint32_t)strlen(value), &res);
    ck_assert_msg(it != NULL, "alloc_spare %s: %d", key, res);
    memcpy(mp_item_value(it), value, strlen(value));
    return it;
}

START_TEST(test_a_warm_store_keeps_the_cas_clock_state_and_last_access_it_is_given)
{
    struct mp_item *it = spare("warm", "value", 7, T0 + 60);
    uint8_t clock = mp_item_clock_byte(MP_ITEM_FETCHED | 2 * MP_ITEM_HIT_ONE);
    uint32_t now = T0 + 3600;
    ck_assert_int_eq(mp_cache_store_warm(c, &it, 5000, clock, 600, now), MP_STORED);
    ck_assert_ptr_null(it);
    struct mp_item *w = linked("warm", T0);
    ck_assert_uint_eq(mp_item_cas(w), 5000);
    ck_assert_uint_eq(mp_item_hits(w), 2);
    ck_assert(mp_item_fetched(w));
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(w), now), 600); /* ten minutes before `now` */
    ck_assert_uint_eq(mp_item_clock_byte(mp_item_stamp(w)), clock);
    struct got g = get_hit(c, "warm", T0);
    ck_assert_str_eq(g.value, "value");
    ck_assert_uint_eq(g.flags, 7);
    ck_assert_uint_eq(g.exptime, T0 + 60);
    /* Later stores continue above it. */
    uint64_t cas;
    ck_assert_int_eq(store_full(c, MP_SET, "after", "x", 1, 0, 0, 0, 0, T0, &cas), MP_STORED);
    ck_assert_uint_eq(cas, 5001);
}
END_TEST

START_TEST(test_a_warm_store_with_cas_0_takes_a_fresh_one)
{
    uint64_t before;
    ck_assert_int_eq(store_full(c, MP_SET, "before", "x", 1, 0, 0, 0, 0, T0, &before), MP_STORED);
    struct mp_item *it = spare("warm", "value", 0, 0);
    ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, 0, 0, T0), MP_STORED);
    ck_assert_uint_eq(mp_item_cas(linked("warm", T0)), before + 1);
}
END_TEST

START_TEST(test_a_warm_store_leaves_a_live_key_alone_and_takes_the_place_of_a_dead_one)
{
    ck_assert_int_eq(set_str(c, "live", "mine", 0, T0), MP_STORED);
    ck_assert_int_eq(set_str(c, "dying", "old", T0 + 1, T0), MP_STORED);
    struct mp_item *it = spare("live", "theirs", 0, 0);
    ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, 0, 0, T0), MP_NOT_STORED);
    ck_assert_ptr_null(it);
    assert_value("live", T0, "mine");
    it = spare("dying", "new", 0, 0);
    ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, 0, 0, T0 + 1), MP_STORED);
    assert_value("dying", T0 + 1, "new");
}
END_TEST

START_TEST(test_spare_memory_runs_out_without_evicting_anything)
{
    char key[32], value[1000];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    unsigned stored = 0;
    enum mp_result res = MP_OK;
    for (unsigned i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        struct mp_item *it = mp_cache_alloc_spare(c, key, strlen(key), 0, 0, sizeof(value) - 1, &res);
        if (!it)
            break;
        memcpy(mp_item_value(it), value, sizeof(value) - 1);
        ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, 0, 0, T0), MP_STORED);
        stored++;
    }
    ck_assert_int_eq(res, MP_NOMEM);
    ck_assert_uint_gt(stored, 3000); /* about 4 MiB of them */
    ck_assert_uint_eq(total_evictions(c), 0);
    ck_assert_uint_eq(mp_table_count(&c->table), stored);
    ck_assert_ptr_null(mp_cache_alloc_spare(c, LIT("big"), 0, 0, (uint32_t)(2 * MIB), &res));
    ck_assert_int_eq(res, MP_TOO_LARGE);
}
END_TEST

START_TEST(test_a_warm_batch_stores_each_entry_and_reports_each_result)
{
    ck_assert_int_eq(set_str(c, "b3", "mine", 0, T0), MP_STORED);
    struct mp_cache_warm batch[40];
    char key[16], value[16];
    for (unsigned i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "b%u", i);
        snprintf(value, sizeof(value), "v%u", i);
        batch[i] = (struct mp_cache_warm){.it = spare(key, value, i, 0), .cas = 100 + i};
    }
    mp_cache_store_warm_batch(c, batch, 40, T0);
    for (unsigned i = 0; i < 40; i++) {
        ck_assert_ptr_null(batch[i].it);
        ck_assert_int_eq(batch[i].res, i == 3 ? MP_NOT_STORED : MP_STORED);
        snprintf(key, sizeof(key), "b%u", i);
        snprintf(value, sizeof(value), "v%u", i);
        assert_value(key, T0, i == 3 ? "mine" : value);
    }
}
END_TEST

static void count_visit(void *ctx, const struct mp_hit *hit)
{
    unsigned *seen = ctx;
    unsigned i;
    ck_assert_ptr_nonnull(hit->it);
    ck_assert_int_eq(sscanf(hit->key, "w%u", &i), 1);
    ck_assert_uint_lt(i, 500);
    seen[i]++;
}

START_TEST(test_the_walk_visits_every_live_item_once)
{
    char key[16];
    for (unsigned i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "w%u", i);
        ck_assert_int_eq(set_str(c, key, "v", i % 10 == 0 ? T0 + 1 : 0, T0), MP_STORED);
    }
    static unsigned seen[500];
    memset(seen, 0, sizeof(seen));
    size_t n = 0;
    for (unsigned s = 0; s < mp_cache_stripes(c); s++)
        n += mp_cache_visit_stripe(c, s, T0 + 1, count_visit, seen);
    ck_assert_uint_eq(n, 450);
    for (unsigned i = 0; i < 500; i++)
        ck_assert_uint_eq(seen[i], i % 10 == 0 ? 0 : 1); /* the expired ones are left out */
}
END_TEST

/* ---- chained values (chain.h) ---------------------------------------------------------------- */

static void big_setup(void)
{
    test_cache_setup_item_max(c, 64 * MIB, 16 * MIB);
}

static unsigned chunk_class(void)
{
    return mp_slab_chunk_class(&c->slabs);
}

START_TEST(test_values_of_every_size_come_back_byte_for_byte)
{
    /* around the largest class (half a page), a page, and well past it */
    uint32_t half = c->slabs.classes[chunk_class()].size, cap = mp_chain_cap(&c->slabs);
    const size_t sizes[] = {100,        half - 40,   half - 24,   half,        cap + 1,
                            600 * 1000, 2 * cap - 1, 2 * cap,     2 * cap + 1, MIB - 200,
                            MIB,        MIB + 1,     3000 * 1000, 8000 * 1000, 16 * MIB - 100};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    char key[32];
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "size:%u", i);
        ck_assert_msg(set_pattern(c, key, sizes[i], i, 0x1234 + i, T0) == MP_STORED, "set of %zu", sizes[i]);
        assert_pattern(c, key, sizes[i], i, T0);
    }
    chains_whole(c);
    /* all of them still there: nothing was evicted for the large ones */
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "size:%u", i);
        assert_pattern(c, key, sizes[i], i, T0);
        ck_assert_uint_eq(get_hit(c, key, T0).flags, 0x1234 + i);
    }
    ck_assert_uint_eq(total_evictions(c), 0);
    ck_assert(mp_item_chained(linked("size:10", T0))); /* 1 MiB */
    ck_assert(!mp_item_chained(linked("size:0", T0)));
}
END_TEST

START_TEST(test_a_chain_of_one_mib_takes_two_chunks_and_a_small_head)
{
    ck_assert_int_eq(set_pattern(c, "one", MIB, 1, 0, T0), MP_STORED);
    struct mp_item *head = linked("one", T0);
    ck_assert(mp_item_chained(head));
    ck_assert_uint_eq(mp_chain_chunks(&c->slabs, head), 2);
    ck_assert_uint_lt(mp_slab_chunk_size(&c->slabs, head), 256); /* the head: key, handles, the rest */
    ck_assert_uint_eq(chains_whole(c), 2);
    ck_assert_uint_eq(class_at(c, chunk_class())->npages, 1); /* two half-page chunks: one page */
}
END_TEST

START_TEST(test_replacing_and_deleting_a_chained_value_frees_every_chunk)
{
    ck_assert_int_eq(set_pattern(c, "k", 3 * MIB, 1, 0, T0), MP_STORED);
    ck_assert_uint_eq(chains_whole(c), 6);
    ck_assert_int_eq(set_pattern(c, "k", MIB, 2, 0, T0), MP_STORED);
    ck_assert_uint_eq(chains_whole(c), 2);
    assert_pattern(c, "k", MIB, 2, T0);
    ck_assert_int_eq(set_pattern(c, "k", 100, 3, 0, T0), MP_STORED); /* no longer a chain */
    ck_assert_uint_eq(chains_whole(c), 0);
    ck_assert_uint_eq(used_in(c, chunk_class()), 0);
    ck_assert_int_eq(set_pattern(c, "k", 2 * MIB, 4, 0, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0), MP_DELETED);
    ck_assert_uint_eq(chains_whole(c), 0);
    for (unsigned cls = 1; cls <= c->slabs.nclasses; cls++)
        ck_assert_uint_eq(used_in(c, cls), 0);
}
END_TEST

START_TEST(test_a_pinned_chain_stays_whole_until_its_reader_lets_go)
{
    ck_assert_int_eq(set_pattern(c, "k", 2 * MIB + 5, 7, 0, T0), MP_STORED);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, "k", T0, &held, NULL), MP_OK);
    ck_assert_uint_eq(held.sum, pattern_sum(7, 2 * MIB + 5));
    /* replaced, then deleted, then the cache filled with other chains: the reader's stays */
    ck_assert_int_eq(set_pattern(c, "k", 2 * MIB + 5, 8, 0, T0), MP_STORED);
    ck_assert_int_eq(mp_cache_delete(c, "k", 1, T0), MP_DELETED);
    char key[32];
    for (unsigned i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "fill:%u", i);
        ck_assert_int_eq(set_pattern(c, key, 2 * MIB, 100 + i, 0, T0), MP_STORED);
    }
    ck_assert_uint_gt(total_evictions(c), 0);
    chains_whole(c);
    struct got again = {.cache = c};
    struct mp_hit h = {.it = held.held, .nbytes = held.held->nbytes};
    got_hit(&again, &h);
    ck_assert_uint_eq(again.sum, pattern_sum(7, 2 * MIB + 5));
    uint64_t before = chains_whole(c);
    mp_cache_item_release(c, &held.held);
    ck_assert_uint_eq(chains_whole(c), before - 4);
}
END_TEST

START_TEST(test_append_and_prepend_onto_a_chained_value)
{
    size_t n = MIB - 10;
    ck_assert_int_eq(set_pattern(c, "k", n, 3, 5, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_APPEND, "k", "0123456789tail", 0, T0), MP_STORED);
    ck_assert_int_eq(store_str(c, MP_PREPEND, "k", "head", 0, T0), MP_STORED);
    struct mp_item *it = linked("k", T0);
    ck_assert(mp_item_chained(it));
    ck_assert_uint_eq(it->nbytes, n + 18);
    char *v = malloc(n + 18);
    mp_chain_read(&c->slabs, it, 0, v, n + 18);
    ck_assert_int_eq(memcmp(v, "head", 4), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(v[4 + i], pattern_byte(3, i));
    ck_assert_int_eq(memcmp(v + 4 + n, "0123456789tail", 14), 0);
    free(v);
    ck_assert_uint_eq(get_hit(c, "k", T0).flags, 5);
    chains_whole(c);
}
END_TEST

START_TEST(test_incr_of_a_chained_value_is_refused)
{
    ck_assert_int_eq(set_fill(c, "k", MIB, '7', 0, T0), MP_STORED);
    uint64_t v = 0;
    ck_assert_int_eq(mp_cache_arith(c, "k", 1, true, 1, T0, &v), MP_NON_NUMERIC);
}
END_TEST

START_TEST(test_spare_memory_takes_a_chain_whole_or_not_at_all)
{
    enum mp_result res;
    /* a loader's allocation takes only free memory: 64 MiB holds a few 8 MB chains, then none */
    unsigned got = 0;
    char key[16];
    for (unsigned i = 0; i < 12; i++) {
        snprintf(key, sizeof(key), "s%u", i);
        struct mp_item *it = mp_cache_alloc_spare(c, key, strlen(key), 0, 0, 8000 * 1000, &res);
        if (!it) {
            ck_assert_int_eq(res, MP_NOMEM);
            break;
        }
        got++;
        mp_chain_write(&c->slabs, it, 0, "x", 1);
        ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, 0, 0, T0), MP_STORED);
    }
    ck_assert_uint_ge(got, 5);
    ck_assert_uint_lt(got, 12);
    /* the stored ones' chunks only: the one that ran out gave back what it had */
    ck_assert_uint_eq(chains_whole(c), got * mp_chain_count(&c->slabs, 2, 8000 * 1000, false));
    ck_assert_uint_eq(total_evictions(c), 0);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_set_then_get_returns_the_exact_value_flags_and_exptime);
    tcase_add_test(tc, test_empty_value_is_stored);
    tcase_add_test(tc, test_get_of_a_missing_key_is_not_found);
    tcase_add_test(tc, test_set_replaces_the_value_and_frees_the_old_chunk);
    tcase_add_test(tc, test_set_over_a_small_item_of_the_same_shape_writes_it_in_place);
    tcase_add_test(tc, test_set_links_a_new_chunk_when_the_old_one_cannot_take_it);
    tcase_add_test(tc, test_value_up_to_the_item_limit_is_stored_and_one_byte_more_is_too_large);
    tcase_add_test(tc, test_forget_drops_the_old_value_of_a_failed_set);
    tcase_add_test(tc, test_released_alloc_frees_its_chunk);
    tcase_add_test(tc, test_add_stores_only_when_the_key_is_absent);
    tcase_add_test(tc, test_add_over_an_expired_item_stores);
    tcase_add_test(tc, test_replace_stores_only_when_the_key_is_present);
    tcase_add_test(tc, test_append_and_prepend_join_the_values);
    tcase_add_test(tc, test_append_keeps_the_old_flags_and_exptime);
    tcase_add_test(tc, test_append_and_prepend_to_a_missing_key_are_not_stored);
    tcase_add_test(tc, test_append_with_a_cas_checks_it);
    suite_add_tcase(s, tc);

    tc = tcase_create("cas");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cas_with_the_current_unique_stores);
    tcase_add_test(tc, test_cas_with_an_old_unique_says_exists);
    tcase_add_test(tc, test_cas_on_a_missing_key_says_not_found);
    tcase_add_test(tc, test_cas_on_deleted_item_says_not_found);
    tcase_add_test(tc, test_cas_on_expired_item_says_not_found);
    tcase_add_test(tc, test_cas_values_are_unique_and_increasing);
    suite_add_tcase(s, tc);

    tc = tcase_create("delete");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_delete_removes_the_item_once);
    tcase_add_test(tc, test_delete_of_an_expired_item_is_not_found);
    suite_add_tcase(s, tc);

    tc = tcase_create("arith");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_incr_adds_and_rewrites_the_value);
    tcase_add_test(tc, test_incr_wraps_at_2_64);
    tcase_add_test(tc, test_decr_stops_at_zero);
    tcase_add_test(tc, test_decr_shrinking_the_length_pads_with_spaces_in_place);
    tcase_add_test(tc, test_incr_growing_the_length_makes_a_new_item_with_the_same_flags_and_exptime);
    tcase_add_test(tc, test_incr_of_a_held_item_leaves_the_reader_its_bytes);
    tcase_add_test(tc, test_incr_of_a_non_numeric_value_is_refused);
    tcase_add_test(tc, test_incr_of_a_missing_key_is_not_found);
    suite_add_tcase(s, tc);

    tc = tcase_create("expiry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_item_with_exptime_now_plus_1_is_gone_at_now_plus_1);
    tcase_add_test(tc, test_exptime_zero_never_expires);
    tcase_add_test(tc, test_exptime_one_is_already_expired);
    tcase_add_test(tc, test_touch_sets_a_new_exptime);
    tcase_add_test(tc, test_touch_to_zero_makes_an_item_permanent);
    tcase_add_test(tc, test_touch_of_a_missing_or_expired_key_is_not_found);
    tcase_add_test(tc, test_gat_touches_and_hands_over_the_item);
    tcase_add_test(tc, test_flush_all_now_hides_everything_stored_before);
    tcase_add_test(tc, test_delayed_flush_all_takes_effect_at_its_time);
    tcase_add_test(tc, test_delayed_flush_applies_to_items_first_looked_at_long_after);
    tcase_add_test(tc, test_immediate_flush_cancels_a_pending_delayed_one);
    tcase_add_test(tc, test_flush_a_second_away_also_takes_what_is_stored_in_the_rest_of_it);
    tcase_add_test(tc, test_flush_with_an_absolute_time_before_the_start_only_cancels);
    suite_add_tcase(s, tc);

    tc = tcase_create("memory");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sets_never_fail_in_a_full_cache_and_evict);
    tcase_add_test(tc, test_sets_of_mixed_sizes_never_fail_in_a_full_cache);
    tcase_add_test(tc, test_set_in_a_class_without_pages_succeeds_while_a_reader_holds_an_item);
    tcase_set_timeout(tc, 120); /* many operations; slow under the sanitizers */
    suite_add_tcase(s, tc);

    tc = tcase_create("warming");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_warm_store_keeps_the_cas_clock_state_and_last_access_it_is_given);
    tcase_add_test(tc, test_a_warm_store_with_cas_0_takes_a_fresh_one);
    tcase_add_test(tc, test_a_warm_store_leaves_a_live_key_alone_and_takes_the_place_of_a_dead_one);
    tcase_add_test(tc, test_spare_memory_runs_out_without_evicting_anything);
    tcase_add_test(tc, test_a_warm_batch_stores_each_entry_and_reports_each_result);
    tcase_add_test(tc, test_the_walk_visits_every_live_item_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("optimistic reads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_optimistic_get_leaves_dead_items_to_the_locked_path);
    tcase_add_test(tc, test_a_set_in_place_moves_the_item_cas_and_not_the_stripe_count);
    tcase_add_test(tc, test_optimistic_get_that_sees_a_change_is_undone_and_read_again_locked);
    tcase_add_test(tc, test_values_over_copy_max_are_read_under_the_lock);
    tcase_add_test(tc, test_clock_changes_do_not_undo_an_optimistic_read);
    tcase_add_test(tc, test_a_reader_parked_after_its_check_writes_nothing_into_the_next_item_in_its_chunk);
    tcase_add_test(tc, test_a_page_a_parked_reader_looked_at_changes_class_only_after_it_has_finished);
    suite_add_tcase(s, tc);

    tc = tcase_create("references");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_an_item_pinned_to_the_limit_is_a_miss_and_its_count_never_wraps);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("chains");
    tcase_add_checked_fixture(tc, big_setup, teardown);
    tcase_add_test(tc, test_values_of_every_size_come_back_byte_for_byte);
    tcase_add_test(tc, test_a_chain_of_one_mib_takes_two_chunks_and_a_small_head);
    tcase_add_test(tc, test_replacing_and_deleting_a_chained_value_frees_every_chunk);
    tcase_add_test(tc, test_a_pinned_chain_stays_whole_until_its_reader_lets_go);
    tcase_add_test(tc, test_append_and_prepend_onto_a_chained_value);
    tcase_add_test(tc, test_incr_of_a_chained_value_is_refused);
    tcase_add_test(tc, test_spare_memory_takes_a_chain_whole_or_not_at_all);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_concurrent_writers_and_readers_see_only_whole_values);
    tcase_add_test(tc, test_concurrent_sets_across_classes_keep_items_whole);
    tcase_add_test(tc, test_concurrent_incr_loses_no_update);
    tcase_set_timeout(tc, 30); /* seconds under TSan; a corrupted chain can spin forever */
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(cache_suite());
}

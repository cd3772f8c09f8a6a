/* Unit tests for table: the lock-striped hash table over slab items. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/slab.h"
#include "magpie/table.h"

#define XXH_INLINE_ALL
#include <xxhash.h> /* the unseeded hash, to choose keys as an attacker would offline */

static struct mp_slabs slabs;
static struct mp_table table;

static void make(unsigned stripe_bits, uint32_t initial_buckets)
{
    char err[256];
    ck_assert_int_eq(mp_slab_setup(&slabs, 4 * MIB, MIB, 32, 1.04, err, sizeof(err)), 0);
    ck_assert_int_eq(mp_table_setup(&table, &slabs, stripe_bits, initial_buckets), 0);
}

static void teardown(void)
{
    mp_table_teardown(&table);
    mp_slab_teardown(&slabs);
}

/* A fresh item (refs 1, the caller's) holding key and value. */
static struct mp_item *item_new(const char *key, const char *value, uint32_t flags)
{
    size_t nkey = strlen(key), nbytes = strlen(value);
    unsigned cls = mp_slab_class_for(&slabs, mp_item_total(nkey, nbytes, flags));
    ck_assert_uint_ne(cls, 0);
    struct mp_item *it = mp_slab_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(it);
    mp_item_init(it, key, nkey, flags, 0, (uint32_t)nbytes);
    memcpy(mp_item_value(it), value, nbytes);
    return it;
}

static void link_item(struct mp_item *it)
{
    uint64_t h = mp_table_hash(&table, mp_item_key(it), it->nkey);
    struct mp_stripe *st = mp_table_stripe(&table, h);
    mp_stripe_lock(st);
    mp_table_link_locked(&table, st, h, it);
    mp_stripe_unlock(st);
}

static struct mp_item *find(const char *key)
{
    uint64_t h = mp_table_hash(&table, key, strlen(key));
    struct mp_stripe *st = mp_table_stripe(&table, h);
    mp_stripe_lock(st);
    struct mp_item *it = mp_table_find_locked(&table, st, h, key, strlen(key));
    mp_stripe_unlock(st);
    return it;
}

static bool unlink_item(struct mp_item *it)
{
    uint64_t h = mp_table_hash(&table, mp_item_key(it), it->nkey);
    struct mp_stripe *st = mp_table_stripe(&table, h);
    mp_stripe_lock(st);
    bool last = mp_table_unlink_locked(&table, st, h, it);
    mp_stripe_unlock(st);
    return last;
}

static bool replace_item(struct mp_item *old, struct mp_item *repl)
{
    uint64_t h = mp_table_hash(&table, mp_item_key(old), old->nkey);
    struct mp_stripe *st = mp_table_stripe(&table, h);
    mp_stripe_lock(st);
    bool last = mp_table_replace_locked(&table, st, h, old, repl);
    mp_stripe_unlock(st);
    return last;
}

START_TEST(test_linked_item_is_found_by_its_key)
{
    make(2, 4);
    struct mp_item *it = item_new("alpha", "one", 0);
    ck_assert_ptr_null(find("alpha"));
    link_item(it);
    ck_assert_ptr_eq(find("alpha"), it);
    ck_assert(mp_item_linked(it));
    ck_assert_uint_eq(atomic_load(&it->refs), 1); /* the caller's reference became the table's */
    ck_assert_ptr_null(find("alph"));
    ck_assert_ptr_null(find("alphaa"));
    ck_assert_ptr_null(find("beta"));
}
END_TEST

START_TEST(test_count_and_bytes_follow_links_and_unlinks)
{
    make(2, 4);
    struct mp_item *a = item_new("a", "12345", 0);
    struct mp_item *b = item_new("bb", "x", 7); /* flags take 4 bytes */
    link_item(a);
    link_item(b);
    ck_assert_uint_eq(mp_table_count(&table), 2);
    ck_assert_uint_eq(mp_table_bytes(&table), (MP_ITEM_HDR + 1 + 5) + (MP_ITEM_HDR + 4 + 2 + 1));
    ck_assert(unlink_item(a));
    mp_slab_free(&slabs, a);
    ck_assert_uint_eq(mp_table_count(&table), 1);
    ck_assert_uint_eq(mp_table_bytes(&table), MP_ITEM_HDR + 4 + 2 + 1);
    ck_assert(unlink_item(b));
    mp_slab_free(&slabs, b);
    ck_assert_uint_eq(mp_table_count(&table), 0);
    ck_assert_uint_eq(mp_table_bytes(&table), 0);
}
END_TEST

START_TEST(test_unlink_drops_the_table_reference)
{
    make(2, 4);
    struct mp_item *it = item_new("k", "v", 0);
    link_item(it);
    ck_assert(unlink_item(it)); /* the last reference: the caller frees */
    ck_assert(!mp_item_linked(it));
    ck_assert_uint_eq(atomic_load(&it->refs), 0);
    ck_assert_ptr_null(find("k"));
    mp_slab_free(&slabs, it);
}
END_TEST

START_TEST(test_unlink_of_a_held_item_leaves_it_to_the_reader)
{
    make(2, 4);
    struct mp_item *it = item_new("k", "v", 0);
    link_item(it);
    atomic_fetch_add(&it->refs, 1); /* a reader */
    ck_assert(!unlink_item(it));
    ck_assert_uint_eq(atomic_load(&it->refs), 1);
    ck_assert_ptr_null(find("k"));
    ck_assert_uint_eq(mp_table_count(&table), 0);
    ck_assert_int_eq(memcmp(mp_item_value(it), "v", 1), 0);
}
END_TEST

START_TEST(test_unlink_of_an_item_not_in_the_table_changes_nothing)
{
    make(2, 4);
    struct mp_item *in = item_new("k", "v", 0);
    struct mp_item *out = item_new("k", "w", 0); /* same key, never linked */
    link_item(in);
    ck_assert(!unlink_item(out));
    ck_assert_uint_eq(atomic_load(&out->refs), 1);
    ck_assert_ptr_eq(find("k"), in);
    ck_assert_uint_eq(mp_table_count(&table), 1);
}
END_TEST

START_TEST(test_replace_swaps_items_in_one_step)
{
    make(2, 4);
    struct mp_item *old = item_new("key", "old", 0);
    struct mp_item *repl = item_new("key", "a longer value", 0);
    link_item(old);
    ck_assert(replace_item(old, repl));
    ck_assert_ptr_eq(find("key"), repl);
    ck_assert(mp_item_linked(repl));
    ck_assert(!mp_item_linked(old));
    ck_assert_uint_eq(atomic_load(&old->refs), 0);
    ck_assert_uint_eq(mp_table_count(&table), 1);
    ck_assert_uint_eq(mp_table_bytes(&table), MP_ITEM_HDR + 3 + 14);
    mp_slab_free(&slabs, old);
}
END_TEST

START_TEST(test_replace_keeps_the_rest_of_the_chain)
{
    /* at 0.75 to 1.5 items per bucket many of these share a chain with others */
    make(1, 1);
    enum { N = 64 };
    struct mp_item *items[N];
    char key[32];
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        items[i] = item_new(key, "v", 0);
        link_item(items[i]);
    }
    for (unsigned i = 1; i < N; i += 2) {
        key_of(key, sizeof(key), "k", i);
        struct mp_item *repl = item_new(key, "new", 0);
        ck_assert(replace_item(items[i], repl));
        mp_slab_free(&slabs, items[i]);
        items[i] = repl;
    }
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "k", i);
        ck_assert_ptr_eq(find(key), items[i]);
    }
    for (unsigned i = 0; i < N; i += 2)
        ck_assert(unlink_item(items[i]));
    for (unsigned i = 1; i < N; i += 2) {
        key_of(key, sizeof(key), "k", i);
        ck_assert_ptr_eq(find(key), items[i]);
        ck_assert_int_eq(memcmp(mp_item_value(items[i]), "new", 3), 0);
    }
    ck_assert_uint_eq(mp_table_count(&table), N / 2);
}
END_TEST

START_TEST(test_stripe_grows_past_its_load_factor_and_keeps_every_item)
{
    make(1, 4);
    enum { N = 5000 };
    static struct mp_item *items[N];
    char key[32];
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        items[i] = item_new(key, "value", 0);
        link_item(items[i]);
    }
    uint64_t resizes = 0;
    for (unsigned s = 0; s < table.nstripes; s++) {
        struct mp_stripe *st = &table.stripes[s];
        resizes += st->resizes;
        /* at most 1.5 items per bucket after the link that crossed it */
        ck_assert_uint_le((uint64_t)atomic_load(&st->count) * 2, (uint64_t)(st->mask + 1) * 3);
        ck_assert_uint_gt(st->mask + 1, 4);
    }
    ck_assert_uint_gt(resizes, 0);
    ck_assert_uint_eq(mp_table_count(&table), N);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < N; i++)
        bytes += mp_item_total(key_of(key, sizeof(key), "key:", i), 5, 0);
    ck_assert_uint_eq(mp_table_bytes(&table), bytes);
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_msg(find(key) == items[i], "%s lost after growth", key);
    }
    /* and unlinking every other one leaves the rest findable */
    for (unsigned i = 0; i < N; i += 2)
        ck_assert(unlink_item(items[i]));
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_ptr_eq(find(key), i % 2 ? items[i] : NULL);
    }
    ck_assert_uint_eq(mp_table_count(&table), N / 2);
}
END_TEST

START_TEST(test_keys_spread_over_the_stripes_by_high_hash_bits)
{
    make(4, 16);
    char key[32];
    for (unsigned i = 0; i < 1600; i++) {
        key_of(key, sizeof(key), "spread:", i);
        link_item(item_new(key, "v", 0));
    }
    for (unsigned s = 0; s < table.nstripes; s++) {
        uint32_t n = atomic_load(&table.stripes[s].count);
        ck_assert_msg(n > 40 && n < 200, "stripe %u holds %u of 1600", s, n);
    }
    uint64_t h = mp_table_hash(&table, "spread:7", 8);
    ck_assert_ptr_eq(mp_table_stripe(&table, h), &table.stripes[h >> 60]);
}
END_TEST

START_TEST(test_overhead_counts_stripes_and_buckets)
{
    make(2, 8);
    ck_assert_uint_eq(mp_table_overhead(&table), 4 * sizeof(struct mp_stripe) + 4 * 8 * sizeof(mp_handle_t));
}
END_TEST

START_TEST(test_single_stripe_table_finds_its_items)
{
    /* stripe_bits 0: 2^0 = one stripe. */
    make(0, 4);
    struct mp_item *it = item_new("only", "v", 0);
    link_item(it);
    ck_assert_ptr_eq(find("only"), it);
    ck_assert_uint_eq(mp_table_count(&table), 1);
}
END_TEST

static struct mp_item *find_optimistic(const char *key, bool *torn)
{
    uint64_t h = mp_table_hash(&table, key, strlen(key));
    return mp_table_find_optimistic(&table, mp_table_stripe(&table, h), h, key, strlen(key), torn);
}

START_TEST(test_optimistic_find_sees_what_the_locked_find_sees_across_growth)
{
    make(1, 4); /* grows through arrays under a page and past it */
    enum { N = 8000 };
    static struct mp_item *items[N];
    char key[32];
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        items[i] = item_new(key, "value", i % 2 ? 7 : 0); /* with and without client flags */
        link_item(items[i]);
    }
    ck_assert_uint_ge(table.stripes[0].mask + 1, 4096 / sizeof(mp_handle_t));
    bool torn = true;
    for (unsigned i = 0; i < N; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_ptr_eq(find_optimistic(key, &torn), items[i]);
        ck_assert(!torn);
    }
    ck_assert_ptr_null(find_optimistic("absent", &torn));
    ck_assert(!torn);
}
END_TEST

START_TEST(test_every_lock_moves_the_stripe_count)
{
    make(0, 4);
    struct mp_stripe *st = &table.stripes[0];
    uint32_t seq = mp_stripe_read_begin(st);
    ck_assert(mp_stripe_read_valid(st, seq));
    mp_stripe_lock(st);
    ck_assert_uint_eq(mp_stripe_read_begin(st) & 1, 1); /* a reader starting now must wait or lock */
    ck_assert(!mp_stripe_read_valid(st, mp_stripe_read_begin(st)));
    mp_stripe_unlock(st);
    ck_assert(!mp_stripe_read_valid(st, seq));
    seq = mp_stripe_read_begin(st);
    ck_assert(mp_stripe_trylock(st));
    mp_stripe_unlock(st);
    ck_assert(!mp_stripe_read_valid(st, seq));
}
END_TEST

/* What a reader may meet in a chain changing under it: a link to no chunk, or a loop. */
START_TEST(test_optimistic_walk_gives_up_on_a_link_outside_the_arena_or_a_loop)
{
    make(0, 1);
    struct mp_item *it = item_new("here", "v", 0);
    link_item(it);
    bool torn = false;
    ck_assert_ptr_null(find_optimistic("elsewhere", &torn)); /* one bucket: the walk passes "here" */
    ck_assert(!torn);
    it->next = UINT32_MAX;
    ck_assert_ptr_null(find_optimistic("elsewhere", &torn));
    ck_assert(torn);
    it->next = mp_slab_handle(&slabs, it);
    ck_assert_ptr_null(find_optimistic("elsewhere", &torn));
    ck_assert(torn);
    ck_assert_ptr_eq(find_optimistic("here", &torn), it); /* found before the loop matters */
    ck_assert(!torn);
    it->next = 0;
}
END_TEST

/* A loop under the lock (memory corrupted somehow) ends the walk at the bound instead of spinning. */
START_TEST(test_locked_walks_stop_at_the_chain_bound)
{
    make(0, 1);
    struct mp_item *it = item_new("here", "v", 0);
    link_item(it);
    it->next = mp_slab_handle(&slabs, it);
    ck_assert_ptr_null(find("elsewhere"));
    ck_assert_ptr_eq(find("here"), it);
    it->next = 0;
}
END_TEST

/* `n` keys whose hashes under this table's secret agree in their low `bits` bits. */
static void colliding_keys(char keys[][32], unsigned n, unsigned bits)
{
    uint64_t mask = (UINT64_C(1) << bits) - 1, want = 0;
    unsigned found = 0;
    for (unsigned i = 0; found < n && i < 50u * 1000 * 1000; i++) {
        char key[32];
        key_of(key, sizeof(key), "c:", i);
        uint64_t h = mp_table_hash(&table, key, strlen(key));
        if (found == 0)
            want = h & mask;
        if ((h & mask) == want)
            memcpy(keys[found++], key, sizeof(key));
    }
    ck_assert_uint_eq(found, n);
}

START_TEST(test_a_link_that_would_pass_the_chain_bound_is_refused)
{
    make(0, 1);
    enum { N = MP_TABLE_CHAIN_MAX + 1 };
    static char keys[N][32];
    colliding_keys(keys, N, 10); /* one bucket until the stripe has 1024 of them */
    for (unsigned i = 0; i < MP_TABLE_CHAIN_MAX; i++)
        link_item(item_new(keys[i], "v", 0));
    struct mp_item *extra = item_new(keys[N - 1], "v", 0);
    uint64_t h = mp_table_hash(&table, keys[N - 1], strlen(keys[N - 1]));
    struct mp_stripe *st = mp_table_stripe(&table, h);
    mp_stripe_lock(st);
    ck_assert(!mp_table_link_locked(&table, st, h, extra));
    mp_stripe_unlock(st);
    ck_assert_uint_eq(atomic_load(&extra->refs), 1); /* still the caller's */
    ck_assert_ptr_null(find(keys[N - 1]));
    ck_assert_uint_eq(mp_table_count(&table), MP_TABLE_CHAIN_MAX);
    for (unsigned i = 0; i < MP_TABLE_CHAIN_MAX; i++)
        ck_assert_ptr_nonnull(find(keys[i]));
    bool torn = true;
    ck_assert_ptr_nonnull(find_optimistic(keys[MP_TABLE_CHAIN_MAX - 1], &torn));
    mp_slab_free(&slabs, extra);
}
END_TEST

/* Two tables hash the same key differently: each has its own secret. */
START_TEST(test_every_table_hashes_with_a_secret_of_its_own)
{
    make(4, 16);
    struct mp_table other;
    ck_assert_int_eq(mp_table_setup(&other, &slabs, 4, 16), 0);
    ck_assert_int_ne(memcmp(table.secret, other.secret, sizeof(table.secret)), 0);
    char key[32];
    unsigned same = 0;
    for (unsigned i = 0; i < 100; i++) {
        key_of(key, sizeof(key), "k", i);
        same += mp_table_hash(&table, key, strlen(key)) == mp_table_hash(&other, key, strlen(key));
        ck_assert_uint_eq(mp_table_hash(&table, key, strlen(key)), mp_table_hash(&table, key, strlen(key)));
    }
    ck_assert_uint_eq(same, 0);
    mp_table_teardown(&other);
}
END_TEST

/* Keys chosen offline to share a stripe and a bucket under plain XXH3 (what an attacker can compute
 * without the secret) spread over the stripes of a real table. */
START_TEST(test_keys_crafted_against_the_unseeded_hash_spread_over_the_stripes)
{
    make(4, 16);
    enum { N = 200 };
    unsigned crafted = 0, stripes_hit = 0;
    bool hit[16] = {false};
    char key[32];
    for (unsigned i = 0; crafted < N && i < 10u * 1000 * 1000; i++) {
        key_of(key, sizeof(key), "flood:", i);
        uint64_t plain = XXH3_64bits(key, strlen(key));
        if ((plain >> 60) != 5 || (plain & 15) != 9) /* stripe 5, bucket 9 of 16 */
            continue;
        crafted++;
        link_item(item_new(key, "v", 0));
        unsigned s = (unsigned)(mp_table_hash(&table, key, strlen(key)) >> 60);
        stripes_hit += !hit[s];
        hit[s] = true;
    }
    ck_assert_uint_eq(crafted, N);
    ck_assert_uint_eq(mp_table_count(&table), N);
    ck_assert_uint_ge(stripes_hit, 12); /* 200 keys over 16 stripes: all 16, but for bad luck */
    for (unsigned s = 0; s < table.nstripes; s++)
        ck_assert_uint_lt(atomic_load(&table.stripes[s].count), N / 2);
}
END_TEST

static Suite *table_suite(void)
{
    Suite *s = suite_create("table");
    TCase *tc = tcase_create("table");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_linked_item_is_found_by_its_key);
    tcase_add_test(tc, test_count_and_bytes_follow_links_and_unlinks);
    tcase_add_test(tc, test_unlink_drops_the_table_reference);
    tcase_add_test(tc, test_unlink_of_a_held_item_leaves_it_to_the_reader);
    tcase_add_test(tc, test_unlink_of_an_item_not_in_the_table_changes_nothing);
    tcase_add_test(tc, test_replace_swaps_items_in_one_step);
    tcase_add_test(tc, test_replace_keeps_the_rest_of_the_chain);
    tcase_add_test(tc, test_stripe_grows_past_its_load_factor_and_keeps_every_item);
    tcase_add_test(tc, test_keys_spread_over_the_stripes_by_high_hash_bits);
    tcase_add_test(tc, test_overhead_counts_stripes_and_buckets);
    tcase_add_test(tc, test_single_stripe_table_finds_its_items);
    tcase_add_test(tc, test_optimistic_find_sees_what_the_locked_find_sees_across_growth);
    tcase_add_test(tc, test_every_lock_moves_the_stripe_count);
    tcase_add_test(tc, test_optimistic_walk_gives_up_on_a_link_outside_the_arena_or_a_loop);
    tcase_add_test(tc, test_locked_walks_stop_at_the_chain_bound);
    tcase_add_test(tc, test_a_link_that_would_pass_the_chain_bound_is_refused);
    tcase_add_test(tc, test_every_table_hashes_with_a_secret_of_its_own);
    tcase_add_test(tc, test_keys_crafted_against_the_unseeded_hash_spread_over_the_stripes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(table_suite());
}

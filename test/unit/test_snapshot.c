/* Unit tests for snapshot: the file format, the writer and the loader, on the engine alone. */
#include <check.h>
#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "helpers.h"
#include "magpie/snapshot.h"

/* Wall-clock Unix time of relative second 0 in the run that writes, and the run that loads: an
 * hour later by the wall clock, the server's relative time started again. */
#define EPOCH_A ((int64_t)1700000000)
#define EPOCH_B (EPOCH_A + 3600)
#define NOW_B ((uint32_t)5)

static struct mp_cache src_cache, dst_cache;
static struct mp_cache *src = &src_cache, *dst = &dst_cache;
static bool dst_up;
static struct mp_clock clk_a, clk_b;
static char dir[64], path[128];
static char notes[64][256];
static int nnotes;

static void clock_at(struct mp_clock *clk, int64_t epoch, uint32_t now)
{
    mp_clock_setup(clk, (time_t)(epoch + 2), 1000);
    mp_clock_tick(clk, (time_t)(epoch + now), 998 + (int64_t)now);
}

static void take_note(void *ctx, const char *msg)
{
    (void)ctx;
    if (nnotes < 64)
        snprintf(notes[nnotes++], sizeof(notes[0]), "%s", msg);
}

static bool noted(const char *part)
{
    for (int i = 0; i < nnotes; i++)
        if (strstr(notes[i], part))
            return true;
    return false;
}

static struct mp_snapshot_opts opts_for(const struct mp_clock *clk)
{
    return (struct mp_snapshot_opts){.path = path, .clock = clk, .note = take_note};
}

/* Roomy caches: every size class in use takes a 1 MiB page of its own (reserved, touched only as
 * items are written). */
#define ROOMY (128 * MIB)

static void setup(void)
{
    struct mp_cache_config cfg = test_cache_config(ROOMY);
    test_cache_setup(src, &cfg);
    dst_up = false;
    clock_at(&clk_a, EPOCH_A, T0);
    clock_at(&clk_b, EPOCH_B, NOW_B);
    snprintf(dir, sizeof(dir), "/tmp/magpie-snapshot-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cache.snap", dir);
    nnotes = 0;
}

static void teardown(void)
{
    mp_cache_teardown(src);
    if (dst_up)
        mp_cache_teardown(dst);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(path);
    unlink(tmp);
    rmdir(dir);
}

/* A fresh destination cache of this shape (torn down first if one is up). */
static void dst_with(struct mp_cache_config cfg)
{
    if (dst_up)
        mp_cache_teardown(dst);
    test_cache_setup(dst, &cfg);
    dst_up = true;
}

static int save_a(struct mp_snapshot_report *r)
{
    struct mp_snapshot_opts o = opts_for(&clk_a);
    return mp_snapshot_save(src, &o, r);
}

static int save_with(struct mp_snapshot_opts o, struct mp_snapshot_report *r)
{
    return mp_snapshot_save(src, &o, r);
}

/* Load `path` into a fresh default destination, as the restarted server at clk_b. */
static int load_b(struct mp_snapshot_report *r)
{
    if (!dst_up)
        dst_with(test_cache_config(ROOMY));
    struct mp_snapshot_opts o = opts_for(&clk_b);
    return mp_snapshot_load(dst, &o, r);
}

/* The value of item i: its number over and over, so any byte out of place shows. */
static void value_of(unsigned i, char *out, size_t n)
{
    char seed[16];
    int len = snprintf(seed, sizeof(seed), "<%u>", i);
    for (size_t k = 0; k < n; k++)
        out[k] = seed[k % (size_t)len];
}

static char big[3 * 1024 * 1024]; /* up to a chain of six chunks (chain.h) */

static void put(struct mp_cache *c, unsigned i, size_t nbytes, uint32_t flags, uint32_t exptime, uint32_t now)
{
    char key[32];
    snprintf(key, sizeof(key), "key:%u", i);
    value_of(i, big, nbytes);
    ck_assert_int_eq(store_full(c, MP_SET, key, big, nbytes, 0, flags, exptime, 0, now, NULL), MP_STORED);
}

/* Whether an item's value, a chain (chain.h) or not, is these n bytes. */
static bool same_value(struct mp_cache *c, const struct mp_item *it, const char *v, size_t n)
{
    size_t len;
    for (size_t off = 0; off < n; off += len) {
        const char *p = mp_chain_span(&c->slabs, it, off, &len);
        if (memcmp(p, v + off, len) != 0)
            return false;
    }
    return true;
}

/* Whether item i is in c with exactly the value put() gave it (and how long it is); a value that
 * is there but different fails the test: a damaged value must never be served. */
static bool holds(struct mp_cache *c, unsigned i, size_t nbytes, uint32_t now)
{
    char key[32];
    snprintf(key, sizeof(key), "key:%u", i);
    struct got g = {.take_ref = true};
    if (get_key(c, key, now, &g, NULL) != MP_OK)
        return false;
    value_of(i, big, nbytes);
    bool same = g.nbytes == nbytes && same_value(c, g.held, big, nbytes);
    mp_cache_item_release(c, &g.held);
    ck_assert_msg(same, "%s came back with a different value", key);
    return true;
}

static char *read_file(const char *p, size_t *size)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *p, const char *buf, size_t n)
{
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* ---- round trip ------------------------------------------------------------------------------ */

START_TEST(test_round_trip_keeps_values_flags_cas_clock_state_and_meta_flags)
{
    uint64_t cas_plain, cas_hot;
    ck_assert_int_eq(store_full(src, MP_SET, "plain", "value", 5, 0, 0, 0, 0, T0, &cas_plain), MP_STORED);
    ck_assert_int_eq(store_full(src, MP_SET, "hot", "hot value", 9, 0, 0xdeadbeef, 0, 0, T0, &cas_hot), MP_STORED);
    ck_assert_int_eq(set_str(src, "empty", "", 0, T0), MP_STORED);
    for (int i = 0; i < 3; i++)
        get_hit(src, "hot", T0);
    struct mp_cache_lock lk;
    mp_cache_lock_key(src, LIT("plain"), &lk);
    struct mp_item *it = mp_cache_find_locked(src, &lk, LIT("plain"), T0, NULL);
    mp_item_set(it, MP_ITEM_STALE | MP_ITEM_TOKEN_SENT, true);
    mp_cache_unlock(&lk);

    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, 3);
    ck_assert_uint_eq(w.bytes, 5 + 5 + 3 + 9 + 5);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert(r.found && r.header_ok);
    ck_assert_uint_eq(r.items, 3);
    ck_assert_uint_eq(r.passes, 1);

    struct got g = get_hit(dst, "hot", NOW_B);
    ck_assert_str_eq(g.value, "hot value");
    ck_assert_uint_eq(g.flags, 0xdeadbeef);
    ck_assert_uint_eq(g.cas, cas_hot);
    ck_assert_uint_eq(g.exptime, 0);
    g = get_hit(dst, "empty", NOW_B);
    ck_assert_uint_eq(g.nbytes, 0);
    mp_cache_lock_key(dst, LIT("hot"), &lk);
    it = mp_cache_find_locked(dst, &lk, LIT("hot"), NOW_B, NULL);
    ck_assert_uint_eq(mp_item_hits(it), MP_ITEM_HITS_MAX); /* three hits, and the get above one more */
    ck_assert(mp_item_fetched(it));
    mp_cache_unlock(&lk);
    mp_cache_lock_key(dst, LIT("plain"), &lk);
    it = mp_cache_find_locked(dst, &lk, LIT("plain"), NOW_B, NULL);
    ck_assert_uint_eq(mp_item_cas(it), cas_plain);
    ck_assert_uint_eq(mp_item_hits(it), 0);
    ck_assert(!mp_item_fetched(it));
    ck_assert(mp_item_has(it, MP_ITEM_STALE) && mp_item_has(it, MP_ITEM_TOKEN_SENT));
    ck_assert(!mp_item_has(it, MP_ITEM_KEY_BINARY));
    mp_cache_unlock(&lk);
}
END_TEST

/* Whether item i is in c's small queue (lru.h), and its class; false when it is not there. */
static bool on_probation(struct mp_cache *c, unsigned i, uint32_t now, unsigned *cls)
{
    char key[32];
    snprintf(key, sizeof(key), "key:%u", i);
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key, strlen(key), &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, key, strlen(key), now, NULL);
    bool small = it && mp_item_small(it);
    if (it)
        *cls = mp_slab_class_of(&c->slabs, it);
    mp_cache_unlock(&lk);
    return small;
}

START_TEST(test_items_on_probation_come_back_on_probation)
{
    /* One page that has begun to evict: the items stored since are in the small queue. */
    mp_cache_teardown(src);
    struct mp_cache_config one_page = test_cache_config(MIB);
    test_cache_setup(src, &one_page);
    unsigned n = 0, cls = 0;
    while (total_evictions(src) < 20) {
        ck_assert_uint_lt(n, 10000);
        put(src, n++, 1000, 0, 0, T0);
    }
    bool small[10000];
    unsigned nsmall = 0;
    for (unsigned i = 0; i < n; i++) {
        small[i] = on_probation(src, i, T0, &cls);
        nsmall += small[i];
    }
    ck_assert_uint_ge(nsmall, 15); /* the ghost may send a stranger to the main queue */

    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, w.items);
    unsigned back = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned c = 0;
        bool was = small[i], is = on_probation(dst, i, NOW_B, &c);
        ck_assert_msg(was == is, "key:%u was %s and came back %s", i, was ? "small" : "main", is ? "small" : "main");
        back += is;
        if (is)
            cls = c;
    }
    /* each with its place in the queue, so that the queue comes to it when the class is full */
    ck_assert_uint_eq(back, nsmall);
    ck_assert_uint_eq(dst->lru.small[cls].count, nsmall);
}
END_TEST

START_TEST(test_expiry_is_kept_by_the_wall_clock_and_items_expired_while_down_are_dropped)
{
    ck_assert_int_eq(set_str(src, "forever", "f", 0, T0), MP_STORED);
    ck_assert_int_eq(set_str(src, "two-hours", "t", T0 + 7200, T0), MP_STORED);
    ck_assert_int_eq(set_str(src, "ten-minutes", "m", T0 + 600, T0), MP_STORED);
    ck_assert_int_eq(set_str(src, "dead", "d", T0 - 1, T0), MP_STORED); /* already expired: not written */
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, 3);
    ck_assert_int_eq(load_b(&r), 0); /* an hour later */
    ck_assert_uint_eq(r.items, 2);
    ck_assert_uint_eq(r.expired, 1);
    ck_assert_uint_eq(get_hit(dst, "forever", NOW_B).exptime, 0);
    /* Expires at EPOCH_A + T0 + 7200 by the wall clock, which is this relative time at EPOCH_B. */
    ck_assert_uint_eq(get_hit(dst, "two-hours", NOW_B).exptime, (uint32_t)(EPOCH_A + T0 + 7200 - EPOCH_B));
    ck_assert(!key_present(dst, "ten-minutes", NOW_B));
}
END_TEST

START_TEST(test_cas_values_continue_above_the_largest_in_the_file)
{
    uint64_t cas = 0;
    for (unsigned i = 0; i < 50; i++)
        put(src, i, 10, 0, 0, T0);
    ck_assert_int_eq(store_full(src, MP_SET, "last", "x", 1, 0, 0, 0, 0, T0, &cas), MP_STORED);
    /* The largest CAS goes to an item the loader will skip: still nothing comes back at or below it. */
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.max_cas, cas);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.max_cas, cas);
    uint64_t next;
    ck_assert_int_eq(store_full(dst, MP_SET, "new", "y", 1, 0, 0, 0, 0, NOW_B, &next), MP_STORED);
    ck_assert_uint_gt(next, cas);
    /* A client's gets and cas across the restart. */
    ck_assert_int_eq(store_full(dst, MP_CAS, "last", "z", 1, 0, 0, 0, cas, NOW_B, NULL), MP_STORED);
}
END_TEST

START_TEST(test_a_snapshot_of_an_empty_cache_loads_nothing_and_says_so)
{
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, 0);
    ck_assert_uint_eq(w.file_bytes, MP_SNAPSHOT_HEADER_BYTES);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert(r.found && r.header_ok);
    ck_assert_uint_eq(r.items, 0);
    ck_assert_uint_eq(r.damaged_bytes, 0);
}
END_TEST

START_TEST(test_a_missing_file_loads_nothing)
{
    struct mp_snapshot_report r;
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert(!r.found);
    ck_assert_uint_eq(mp_table_count(&dst->table), 0);
    ck_assert(noted("no such file"));
}
END_TEST

START_TEST(test_large_values_are_written_straight_from_their_items)
{
    for (unsigned i = 0; i < 6; i++)
        put(src, i, 200 * 1024 + i, 0, 0, T0); /* over the 64 KiB copied under the lock */
    put(src, 6, 100, 0, 0, T0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, 7);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 7);
    for (unsigned i = 0; i < 6; i++)
        ck_assert(holds(dst, i, 200 * 1024 + i, NOW_B));
    ck_assert(holds(dst, 6, 100, NOW_B));
}
END_TEST

START_TEST(test_chained_values_round_trip_and_load_into_chunks)
{
    /* a source and a destination whose -I lets values past half a page be chains */
    mp_cache_teardown(src);
    struct mp_cache_config cfg = test_cache_config(ROOMY);
    cfg.item_max = 4 * MIB;
    test_cache_setup(src, &cfg);
    const size_t sizes[] = {600 * 1000, MIB, MIB + 1, 3 * MIB - 100, 100};
    for (unsigned i = 0; i < 5; i++)
        put(src, i, sizes[i], i, 0, T0);
    uint64_t chunks = chains_whole(src);
    ck_assert_uint_gt(chunks, 0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, 5);
    dst_with(cfg);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 5);
    for (unsigned i = 0; i < 5; i++) {
        ck_assert(holds(dst, i, sizes[i], NOW_B));
        char key[32];
        snprintf(key, sizeof(key), "key:%u", i);
        ck_assert_uint_eq(get_hit(dst, key, NOW_B).flags, i);
    }
    ck_assert_uint_eq(chains_whole(dst), chunks);
}
END_TEST

START_TEST(test_a_buffer_too_small_for_a_stripe_pins_the_rest_and_writes_it_after)
{
    for (unsigned i = 0; i < 3000; i++)
        put(src, i, 100 + i % 200, i, 0, T0);
    struct mp_snapshot_opts o = opts_for(&clk_a);
    o.buffer_bytes = 4096; /* a stripe holds about 200 of these items, 60 KiB */
    o.block_bytes = 1000;
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_with(o, &w), 0);
    ck_assert_uint_eq(w.items, 3000);
    ck_assert_uint_eq(w.busy, 0);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 3000);
    for (unsigned i = 0; i < 3000; i++) {
        ck_assert(holds(dst, i, 100 + i % 200, NOW_B));
    }
}
END_TEST

/* ---- changed settings ------------------------------------------------------------------------ */

START_TEST(test_a_smaller_memory_limit_keeps_the_hottest_items_first)
{
    /* 16 MiB of 1000-byte items; one in eight read three times, one in eight once. */
    mp_cache_teardown(src);
    struct mp_cache_config big_cfg = test_cache_config(16 * MIB);
    test_cache_setup(src, &big_cfg);
    unsigned n = 14000;
    for (unsigned i = 0; i < n; i++)
        put(src, i, 1000, 0, 0, T0);
    char key[32];
    for (unsigned i = 0; i < n; i += 8) {
        snprintf(key, sizeof(key), "key:%u", i);
        for (int k = 0; k < 3; k++)
            get_hit(src, key, T0);
        snprintf(key, sizeof(key), "key:%u", i + 1);
        get_hit(src, key, T0);
    }
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_uint_eq(w.items, n);
    dst_with(test_cache_config(4 * MIB)); /* holds about a quarter */
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_gt(r.passes, 1);
    ck_assert_uint_gt(r.no_room, 0);
    ck_assert_uint_eq(r.items + r.no_room, n);
    unsigned hot = 0, warm = 0, cold = 0;
    for (unsigned i = 0; i < n; i++) {
        bool in = holds(dst, i, 1000, NOW_B);
        if (i % 8 == 0)
            hot += in;
        else if (i % 8 == 1)
            warm += in;
        else
            cold += in;
    }
    ck_assert_uint_eq(hot, n / 8);  /* every hot item */
    ck_assert_uint_eq(warm, n / 8); /* and every item read once, before any never read */
    ck_assert_uint_eq(hot + warm + cold, r.items);
    ck_assert_uint_gt(r.items, 3000); /* and as many as fit */
}
END_TEST

START_TEST(test_a_smaller_item_max_skips_the_larger_items)
{
    for (unsigned i = 0; i < 10; i++)
        put(src, i, i < 5 ? 100 * 1024 : 1000, 0, 0, T0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    struct mp_cache_config cfg = test_cache_config(ROOMY);
    cfg.item_max = 64 * 1024;
    dst_with(cfg);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 5);
    ck_assert_uint_eq(r.too_large, 5);
    for (unsigned i = 5; i < 10; i++)
        ck_assert(holds(dst, i, 1000, NOW_B));
}
END_TEST

START_TEST(test_another_growth_factor_min_chunk_and_page_size_load_everything)
{
    for (unsigned i = 0; i < 2000; i++)
        put(src, i, 10 + i % 1000, 0, 0, T0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    struct mp_cache_config cfg = test_cache_config(ROOMY);
    cfg.factor = 1.25;
    cfg.min_chunk = 48;
    cfg.item_max = 2 * MIB;
    cfg.stripe_bits = 7;
    dst_with(cfg);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 2000);
    for (unsigned i = 0; i < 2000; i++)
        ck_assert(holds(dst, i, 10 + i % 1000, NOW_B));
}
END_TEST

/* ---- flush_all ------------------------------------------------------------------------------- */

START_TEST(test_a_pending_flush_all_comes_back_and_strikes_on_time)
{
    ck_assert_int_eq(set_str(src, "k", "v", 0, T0), MP_STORED);
    mp_cache_flush(src, T0, T0 + 7200); /* in two hours, by the wall clock an hour after the load */
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 1);
    uint32_t strike = (uint32_t)(EPOCH_A + T0 + 7200 - EPOCH_B);
    ck_assert(key_present(dst, "k", strike - 1));
    ck_assert(!key_present(dst, "k", strike));
}
END_TEST

START_TEST(test_a_flush_all_that_struck_while_down_loads_nothing)
{
    ck_assert_int_eq(set_str(src, "k", "v", 0, T0), MP_STORED);
    mp_cache_flush(src, T0, T0 + 600);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 0);
    ck_assert_uint_eq(r.expired, 1);
    ck_assert(noted("flush_all"));
}
END_TEST

/* ---- writing safely -------------------------------------------------------------------------- */

START_TEST(test_a_cancelled_save_leaves_the_previous_snapshot_and_no_temporary_file)
{
    put(src, 1, 100, 0, 0, T0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    size_t before_size;
    char *before = read_file(path, &before_size);
    put(src, 2, 100, 0, 0, T0);
    _Atomic bool cancel = true;
    struct mp_snapshot_opts o = opts_for(&clk_a);
    o.cancel = &cancel;
    ck_assert_int_eq(save_with(o, &w), -ECANCELED);
    size_t after_size;
    char *after = read_file(path, &after_size);
    ck_assert_uint_eq(after_size, before_size);
    ck_assert_int_eq(memcmp(before, after, before_size), 0);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    free(before);
    free(after);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 1);
}
END_TEST

START_TEST(test_a_save_that_cannot_create_its_file_says_why)
{
    snprintf(path, sizeof(path), "%s/no-such-dir/cache.snap", dir);
    put(src, 1, 100, 0, 0, T0);
    struct mp_snapshot_report w;
    ck_assert_int_eq(save_a(&w), -ENOENT);
    ck_assert(noted("cannot create the temporary file"));
    snprintf(path, sizeof(path), "%s/cache.snap", dir);
}
END_TEST

START_TEST(test_a_load_removes_the_temporary_file_of_a_writer_that_was_killed)
{
    put(src, 1, 100, 0, 0, T0);
    struct mp_snapshot_report w, r;
    ck_assert_int_eq(save_a(&w), 0);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    write_file(tmp, "half a snapshot", 15);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, 1);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    ck_assert(noted("left unfinished"));
}
END_TEST

/* The writers store values that name their key and a version; every value a snapshot taken
 * meanwhile holds must be whole. */
struct churn {
    struct mp_cache *c;
    unsigned id;
    _Atomic bool *stop;
};

static void *churn_main(void *arg)
{
    struct churn *ch = arg;
    char key[32], value[2000];
    for (unsigned round = 0; !atomic_load(ch->stop) && round < 2000000; round++) {
        unsigned k = (round * 7919 + ch->id * 104729) % 4000;
        snprintf(key, sizeof(key), "key:%u", k);
        size_t n = 20 + (round % 3) * 600 + (k % 7) * 10; /* moves between classes, and in place */
        value_of(k, value, n);
        enum mp_result res;
        struct mp_item *it = mp_cache_alloc(ch->c, key, strlen(key), k, 0, (uint32_t)n, T0, &res);
        if (!it)
            continue;
        memcpy(mp_item_value(it), value, n);
        struct mp_store st = {.op = MP_SET};
        mp_cache_store(ch->c, &it, &st, T0);
        if (round % 5 == 0)
            mp_cache_delete(ch->c, key, strlen(key), T0);
    }
    return NULL;
}

static void check_value(void *ctx, const struct mp_hit *hit)
{
    unsigned *bad = ctx;
    unsigned k;
    if (sscanf(hit->key, "key:%u", &k) != 1 || hit->flags != k) {
        (*bad)++;
        return;
    }
    char expect[2000];
    value_of(k, expect, hit->nbytes);
    *bad += hit->nbytes > sizeof(expect) || memcmp(expect, hit->value, hit->nbytes) != 0;
}

/* Two writers churn while five snapshots are taken; then one is loaded and checked. */
static void save_while_churning(void)
{
    _Atomic bool stop = false;
    struct churn ch[2] = {{src, 0, &stop}, {src, 1, &stop}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, churn_main, &ch[i]), 0);
    struct mp_snapshot_report w, r;
    struct mp_snapshot_opts o = opts_for(&clk_a);
    o.buffer_bytes = 16384; /* pins too */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(save_with(o, &w), 0);
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(load_b(&r), 0);
    ck_assert_uint_eq(r.items, w.items);
    ck_assert_uint_gt(r.items, 0);
    unsigned bad = 0;
    for (unsigned i = 0; i < mp_cache_stripes(dst); i++)
        mp_cache_visit_stripe(dst, i, NOW_B, check_value, &bad);
    ck_assert_uint_eq(bad, 0);
}

START_TEST(test_a_save_while_writers_store_holds_only_whole_values)
{
    save_while_churning();
}
END_TEST

START_TEST(test_a_save_while_writers_evict_and_move_pages_holds_only_whole_values)
{
    /* 4 pages for some twenty size classes: every few stores evict, and pages change class
     * (with pinned items on them) while the snapshot walks. */
    mp_cache_teardown(src);
    struct mp_cache_config small = test_cache_config(4 * MIB);
    test_cache_setup(src, &small);
    save_while_churning();
    ck_assert_uint_gt(total_evictions(src) + total_evicted_for_move(src), 0);
}
END_TEST

/* ---- damaged files --------------------------------------------------------------------------- */

#define SMALL_N 40u

/* A snapshot of SMALL_N items in blocks of about 300 bytes; returns its bytes. */
static char *small_file(size_t *size)
{
    for (unsigned i = 0; i < SMALL_N; i++)
        put(src, i, 20 + i, i, 0, T0);
    struct mp_snapshot_opts o = opts_for(&clk_a);
    o.block_bytes = 300;
    struct mp_snapshot_report w;
    ck_assert_int_eq(save_with(o, &w), 0);
    ck_assert_uint_gt(w.file_bytes, 2000);
    return read_file(path, size);
}

/* Items in the blocks of a well-formed file that lie wholly within its first `upto` bytes, and
 * (through *items_at) the item count of the block holding byte `at`. */
static unsigned whole_items(const char *file, size_t size, size_t upto, size_t at, unsigned *items_at)
{
    unsigned n = 0;
    for (size_t off = MP_SNAPSHOT_HEADER_BYTES; off + MP_SNAPSHOT_BLOCK_HEADER_BYTES <= size;) {
        uint32_t items;
        uint64_t len;
        memcpy(&items, file + off + 4, 4);
        memcpy(&len, file + off + 8, 8);
        size_t end = off + MP_SNAPSHOT_BLOCK_HEADER_BYTES + (size_t)len;
        if (end <= upto)
            n += items;
        if (items_at && at >= off && at < end)
            *items_at = items;
        off = end;
    }
    return n;
}

static unsigned small_held(void)
{
    unsigned held = 0;
    for (unsigned i = 0; i < SMALL_N; i++)
        held += holds(dst, i, 20 + i, NOW_B);
    return held;
}

/* Load `bytes` as the snapshot into an empty destination; what came back, checked whole. The
 * destination is emptied by deleting, not made anew: the thousands of loads a test makes then
 * reuse its pages. */
static unsigned load_bytes(const char *bytes, size_t n, struct mp_snapshot_report *r)
{
    write_file(path, bytes, n);
    if (!dst_up)
        dst_with(test_cache_config(ROOMY));
    char key[32];
    for (unsigned i = 0; i < SMALL_N; i++) {
        snprintf(key, sizeof(key), "key:%u", i);
        mp_cache_delete(dst, key, strlen(key), NOW_B);
    }
    ck_assert_uint_eq(mp_table_count(&dst->table), 0);
    nnotes = 0;
    ck_assert_int_eq(load_b(r), 0);
    unsigned held = small_held();
    ck_assert_uint_eq(held, r->items);
    return held;
}

START_TEST(test_an_empty_file_loads_nothing)
{
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes("", 0, &r), 0);
    ck_assert(r.found && !r.header_ok);
    ck_assert(noted("empty"));
}
END_TEST

START_TEST(test_a_file_truncated_anywhere_loads_only_whole_blocks)
{
    size_t size;
    char *file = small_file(&size);
    for (size_t cut = 0; cut <= size; cut++) {
        struct mp_snapshot_report r;
        unsigned held = load_bytes(file, cut, &r);
        ck_assert_msg(held == whole_items(file, size, cut, 0, NULL), "cut at %zu: %u items", cut, held);
        if (cut < size)
            ck_assert_msg(r.damaged_bytes > 0 || r.missing > 0 || cut == 0, "cut at %zu: nothing reported", cut);
    }
    free(file);
}
END_TEST

START_TEST(test_every_flipped_byte_is_caught_and_costs_at_most_its_block)
{
    size_t size;
    char *file = small_file(&size);
    struct mp_snapshot_report whole;
    ck_assert_uint_eq(load_bytes(file, size, &whole), SMALL_N);
    for (size_t at = 0; at < size; at++) {
        file[at] ^= 0x20;
        struct mp_snapshot_report r;
        unsigned held = load_bytes(file, size, &r);
        file[at] ^= 0x20;
        if (at < MP_SNAPSHOT_HEADER_BYTES) {
            ck_assert_msg(held == SMALL_N, "a flip at %zu in the header lost items (%u)", at, held);
            ck_assert_msg(!r.header_ok, "a flip at %zu in the header went unnoticed", at);
        } else {
            unsigned in_block = 0;
            whole_items(file, size, size, at, &in_block);
            ck_assert_msg(held == SMALL_N - in_block, "a flip at %zu: %u items, not %u", at, held, SMALL_N - in_block);
            ck_assert(r.damaged_bytes > 0);
        }
    }
    free(file);
}
END_TEST

START_TEST(test_random_bytes_load_nothing)
{
    size_t size = 64 * 1024;
    char *junk = malloc(size);
    srandom(17);
    for (size_t i = 0; i < size; i++)
        junk[i] = (char)random();
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes(junk, size, &r), 0);
    ck_assert_uint_eq(r.damaged_bytes, size);
    ck_assert(noted("header is damaged"));
    /* Block magics scattered through the junk change nothing: their headers' checksums fail. */
    for (size_t i = 0; i + 4 <= size; i += 997)
        memcpy(junk + i, "MPB\x01", 4);
    ck_assert_uint_eq(load_bytes(junk, size, &r), 0);
    free(junk);
}
END_TEST

START_TEST(test_another_format_version_is_not_loaded)
{
    size_t size;
    char *file = small_file(&size);
    uint32_t v = 2;
    memcpy(file + 8, &v, 4);
    uint64_t sum = XXH3_64bits(file, 248);
    memcpy(file + 248, &sum, 8);
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes(file, size, &r), 0);
    ck_assert(noted("format version 2"));
    /* Its header damaged as well: the blocks' magic carries the version too. */
    for (size_t at = MP_SNAPSHOT_HEADER_BYTES; at + 4 <= size; at++)
        if (memcmp(file + at, "MPB\x01", 4) == 0)
            file[at + 3] = 2;
    file[0] ^= 1;
    ck_assert_uint_eq(load_bytes(file, size, &r), 0);
    free(file);
}
END_TEST

START_TEST(test_the_same_key_twice_in_a_file_keeps_the_first)
{
    size_t size;
    char *file = small_file(&size);
    size_t blocks = size - MP_SNAPSHOT_HEADER_BYTES;
    char *twice = malloc(size + blocks);
    memcpy(twice, file, size);
    memcpy(twice + size, file + MP_SNAPSHOT_HEADER_BYTES, blocks);
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes(twice, size + blocks, &r), SMALL_N);
    ck_assert_uint_eq(r.present, SMALL_N);
    free(twice);
    free(file);
}
END_TEST

START_TEST(test_a_header_whose_flush_time_is_past_any_clock_loads_every_item)
{
    /* A checksummed header may still hold any 64-bit flush time (found by the fuzzer): converting it
     * to this process's clock must not overflow (UBSan, in the sanitizer builds), and a flush that
     * far ahead never takes effect. Header offsets: 56 flush time, 248 checksum (little-endian). */
    size_t size;
    char *file = small_file(&size);
    uint64_t far = htole64(UINT64_MAX - 1);
    memcpy(file + 56, &far, 8);
    uint64_t sum = htole64(XXH3_64bits(file, 248));
    memcpy(file + 248, &sum, 8);
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes(file, size, &r), SMALL_N);
    ck_assert(r.header_ok);
    free(file);
}
END_TEST

START_TEST(test_a_damaged_header_still_loads_every_whole_block)
{
    size_t size;
    char *file = small_file(&size);
    memset(file, 0, MP_SNAPSHOT_HEADER_BYTES);
    struct mp_snapshot_report r;
    ck_assert_uint_eq(load_bytes(file, size, &r), SMALL_N);
    ck_assert(!r.header_ok);
    ck_assert_uint_eq(r.damaged_bytes, MP_SNAPSHOT_HEADER_BYTES);
    free(file);
}
END_TEST

static Suite *snapshot_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("round trip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_round_trip_keeps_values_flags_cas_clock_state_and_meta_flags);
    tcase_add_test(tc, test_expiry_is_kept_by_the_wall_clock_and_items_expired_while_down_are_dropped);
    tcase_add_test(tc, test_items_on_probation_come_back_on_probation);
    tcase_add_test(tc, test_cas_values_continue_above_the_largest_in_the_file);
    tcase_add_test(tc, test_a_snapshot_of_an_empty_cache_loads_nothing_and_says_so);
    tcase_add_test(tc, test_a_missing_file_loads_nothing);
    tcase_add_test(tc, test_large_values_are_written_straight_from_their_items);
    tcase_add_test(tc, test_chained_values_round_trip_and_load_into_chunks);
    tcase_add_test(tc, test_a_buffer_too_small_for_a_stripe_pins_the_rest_and_writes_it_after);
    suite_add_tcase(s, tc);

    tc = tcase_create("changed settings");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_smaller_memory_limit_keeps_the_hottest_items_first);
    tcase_add_test(tc, test_a_smaller_item_max_skips_the_larger_items);
    tcase_add_test(tc, test_another_growth_factor_min_chunk_and_page_size_load_everything);
    suite_add_tcase(s, tc);

    tc = tcase_create("flush_all");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_pending_flush_all_comes_back_and_strikes_on_time);
    tcase_add_test(tc, test_a_flush_all_that_struck_while_down_loads_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("writing safely");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_cancelled_save_leaves_the_previous_snapshot_and_no_temporary_file);
    tcase_add_test(tc, test_a_save_that_cannot_create_its_file_says_why);
    tcase_add_test(tc, test_a_load_removes_the_temporary_file_of_a_writer_that_was_killed);
    tcase_add_test(tc, test_a_save_while_writers_store_holds_only_whole_values);
    tcase_add_test(tc, test_a_save_while_writers_evict_and_move_pages_holds_only_whole_values);
    tcase_set_timeout(tc, 60); /* threads, slow under the sanitizers */
    suite_add_tcase(s, tc);

    tc = tcase_create("damaged files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_an_empty_file_loads_nothing);
    tcase_add_test(tc, test_a_file_truncated_anywhere_loads_only_whole_blocks);
    tcase_add_test(tc, test_every_flipped_byte_is_caught_and_costs_at_most_its_block);
    tcase_add_test(tc, test_random_bytes_load_nothing);
    tcase_add_test(tc, test_another_format_version_is_not_loaded);
    tcase_add_test(tc, test_the_same_key_twice_in_a_file_keeps_the_first);
    tcase_add_test(tc, test_a_damaged_header_still_loads_every_whole_block);
    tcase_add_test(tc, test_a_header_whose_flush_time_is_past_any_clock_loads_every_item);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(snapshot_suite());
}

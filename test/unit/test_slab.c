/* Unit tests for slab: size classes, pages under the memory limit, free lists, page release. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/slab.h"

static struct mp_slabs slabs;
static char err[256];

static void slabs_make(size_t mem_limit, size_t item_max, size_t min_chunk, double factor)
{
    err[0] = '\0';
    int rc = mp_slab_setup(&slabs, mem_limit, item_max, min_chunk, factor, err, sizeof(err));
    ck_assert_msg(rc == 0, "mp_slab_setup: %d %s", rc, err);
}

static void teardown(void)
{
    mp_slab_teardown(&slabs);
}

static bool in_page(const struct mp_item *it, uint32_t page)
{
    const char *lo = mp_slab_page_addr(&slabs, page);
    return (const char *)it >= lo && (const char *)it < lo + slabs.page_size;
}

/* ---- class layout ---------------------------------------------------------------------------- */

START_TEST(test_classes_increase_8_byte_aligned_up_to_half_a_page)
{
    slabs_make(4 * MIB, MIB, 32, 1.04);
    ck_assert_uint_eq(slabs.page_size, MIB);
    ck_assert_uint_gt(slabs.nclasses, 2);
    ck_assert_uint_eq(slabs.classes[1].size, 56); /* 24-byte header + 32, a multiple of 8 */
    for (unsigned i = 1; i <= slabs.nclasses; i++) {
        const struct mp_slab_class *c = &slabs.classes[i];
        ck_assert_uint_eq(c->size % MP_SLAB_ALIGN, 0);
        ck_assert_uint_eq(c->perpage, slabs.page_size / c->size);
        if (i > 1)
            ck_assert_uint_ge(c->size, slabs.classes[i - 1].size + MP_SLAB_ALIGN);
        if (i < slabs.nclasses)
            ck_assert_uint_lt(c->size, slabs.page_size / 2);
    }
    /* the largest class is the chunk chains are made of (chain.h): memcached's slab_chunk_max */
    ck_assert_uint_eq(slabs.classes[slabs.nclasses].size, slabs.page_size / 2);
    ck_assert_uint_eq(slabs.classes[slabs.nclasses].perpage, 2);
    ck_assert_uint_eq(mp_slab_chunk_class(&slabs), slabs.nclasses);
}
END_TEST

START_TEST(test_factor_two_doubles_each_class_up_to_a_32nd_of_a_page)
{
    slabs_make(4 * MIB, MIB, 40, 2.0); /* 24 + 40 = 64 */
    static const uint32_t want[] = {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
    size_t n = sizeof(want) / sizeof(want[0]);
    ck_assert_uint_eq(slabs.nclasses, n + 31); /* then a 32nd, a 31st, ... a half */
    for (unsigned i = 1; i <= n; i++)
        ck_assert_uint_eq(slabs.classes[i].size, want[i - 1]);
    for (unsigned k = 32; k >= 2; k--)
        ck_assert_uint_eq(slabs.classes[n + 33 - k].size, (MIB / k) & ~7u);
}
END_TEST

START_TEST(test_factor_of_one_still_grows_by_8_bytes)
{
    /* just under a 32nd of a page, so that 8-byte steps stay under the class limit */
    slabs_make(4 * MIB, MIB, 32000, 1.0);
    ck_assert_uint_eq(slabs.classes[1].size, 32024);
    ck_assert_uint_eq(slabs.classes[2].size, 32032);
    unsigned last = (32768 - 32024) / 8;
    ck_assert_uint_eq(slabs.classes[last].size, 32760);
    ck_assert_uint_eq(slabs.classes[last + 1].size, 32768);
    ck_assert_uint_eq(slabs.classes[slabs.nclasses].size, 524288);
    ck_assert_uint_eq(slabs.nclasses, last + 31);
}
END_TEST

START_TEST(test_classes_from_a_32nd_of_a_page_up_fill_their_pages)
{
    slabs_make(4 * MIB, MIB, 32, 1.04);
    unsigned large = 0;
    for (unsigned i = 1; i <= slabs.nclasses; i++) {
        const struct mp_slab_class *c = &slabs.classes[i];
        if (c->size < MIB / 32)
            continue;
        large++;
        ck_assert_uint_lt(MIB - c->perpage * c->size, 8 * c->perpage); /* only the 8-byte alignment */
    }
    ck_assert_uint_ge(large, 30); /* a 31st of a page to a half, and a 32nd if the factor lands on it */
    /* an item of 100 KB: as many to a page as fit (a class by the factor had nine) */
    unsigned cls = mp_slab_class_for(&slabs, 102438);
    ck_assert_uint_eq(slabs.classes[cls].perpage, MIB / 102438);
}
END_TEST

START_TEST(test_class_for_picks_the_smallest_class_that_fits)
{
    slabs_make(4 * MIB, MIB, 32, 1.04);
    ck_assert_uint_eq(mp_slab_class_for(&slabs, 1), 1);
    for (unsigned i = 1; i <= slabs.nclasses; i++) {
        uint32_t size = slabs.classes[i].size;
        ck_assert_uint_eq(mp_slab_class_for(&slabs, size), i);
        ck_assert_uint_eq(mp_slab_class_for(&slabs, size - 1), i); /* classes are at least 8 bytes apart */
        if (i < slabs.nclasses)
            ck_assert_uint_eq(mp_slab_class_for(&slabs, size + 1), i + 1);
    }
}
END_TEST

START_TEST(test_class_for_is_zero_above_the_largest_class_or_the_item_limit)
{
    slabs_make(4 * MIB, MIB, 32, 1.04);
    /* larger items are chains of the largest class's chunks (chain.h), not one chunk */
    ck_assert_uint_eq(mp_slab_class_for(&slabs, MIB / 2), slabs.nclasses);
    ck_assert_uint_eq(mp_slab_class_for(&slabs, MIB / 2 + 1), 0);
    ck_assert_uint_eq(mp_slab_class_for(&slabs, MIB + 1), 0);
}
END_TEST

START_TEST(test_item_limit_below_a_page_caps_class_for)
{
    slabs_make(4 * MIB, 512 * 1024, 32, 1.04); /* -I 512k: pages stay 1 MiB */
    ck_assert_uint_eq(slabs.page_size, MIB);
    ck_assert_uint_ne(mp_slab_class_for(&slabs, 512 * 1024), 0);
    ck_assert_uint_eq(mp_slab_class_for(&slabs, 512 * 1024 + 1), 0);
}
END_TEST

START_TEST(test_item_limit_above_a_page_keeps_pages_of_1_mib)
{
    for (size_t item_max = 2 * MIB; item_max <= 1024 * MIB; item_max *= 8) {
        slabs_make(2048 * MIB, item_max, 32, 1.04); /* -I 2m, 16m, 128m, 1024m */
        ck_assert_uint_eq(slabs.page_size, MIB);
        ck_assert_uint_eq(slabs.npages, 2048);
        ck_assert_uint_eq(slabs.classes[slabs.nclasses].size, MIB / 2);
        ck_assert_uint_eq(mp_slab_class_for(&slabs, MIB / 2 + 1), 0);
        mp_slab_teardown(&slabs);
    }
    slabs_make(8 * MIB, MIB, 32, 1.04); /* for the fixture's teardown */
}
END_TEST

START_TEST(test_setup_refuses_a_minimum_chunk_over_half_a_page)
{
    int rc = mp_slab_setup(&slabs, 4 * MIB, MIB, MIB / 2, 1.04, err, sizeof(err));
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_str_eq(err, "minimum chunk 524288 is too large for 1048576-byte pages");
}
END_TEST

START_TEST(test_setup_refuses_a_factor_that_makes_too_many_classes)
{
    int rc = mp_slab_setup(&slabs, 4 * MIB, MIB, 32, 1.001, err, sizeof(err));
    ck_assert_int_eq(rc, -EINVAL);
    char want[96];
    snprintf(want, sizeof(want), "growth factor 1.001 makes more than %d slab classes", MP_SLAB_CLASSES_MAX);
    ck_assert_str_eq(err, want);
    mp_slab_teardown(&slabs);
}
END_TEST

START_TEST(test_setup_refuses_a_memory_limit_past_32_bit_handles)
{
    int rc = mp_slab_setup(&slabs, (size_t)64 << 30, MIB, 32, 1.04, err, sizeof(err));
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(slabs.arena);
}
END_TEST

/* ---- pages and the memory limit ------------------------------------------------------------- */

START_TEST(test_alloc_fills_every_page_then_returns_null)
{
    slabs_make(4 * MIB, MIB, 32, 1.04);
    ck_assert_uint_eq(slabs.npages, 4);
    unsigned cls = mp_slab_class_for(&slabs, 1000);
    uint32_t perpage = slabs.classes[cls].perpage;
    uint32_t total = 4 * perpage;
    struct mp_item **all = calloc(total, sizeof(*all));
    for (uint32_t i = 0; i < total; i++) {
        all[i] = mp_slab_alloc(&slabs, cls);
        ck_assert_msg(all[i] != NULL, "chunk %u of %u", i, total);
        ck_assert_uint_eq(atomic_load(&all[i]->refs), 1); /* the caller's, until mp_slab_free */
        ck_assert((char *)all[i] >= slabs.arena && (char *)all[i] + slabs.classes[cls].size <= slabs.arena + 4 * MIB);
        if (i > 0) /* chunks of a fresh page come in order, one size apart */
            ck_assert(all[i] != all[i - 1]);
    }
    ck_assert_ptr_null(mp_slab_alloc(&slabs, cls));
    ck_assert_uint_eq(slabs.classes[cls].npages, 4);
    ck_assert_uint_eq(slabs.classes[cls].used, total);
    ck_assert_uint_eq(slabs.pages_bump, 4);
    /* no other class can get a page either: the limit is never exceeded */
    ck_assert_ptr_null(mp_slab_alloc(&slabs, 1));
    ck_assert_ptr_null(mp_slab_alloc(&slabs, slabs.nclasses));
    ck_assert_uint_eq(slabs.classes[1].npages, 0);
    ck_assert_uint_eq(mp_slab_malloced(&slabs), 4 * MIB);
    free(all);
}
END_TEST

START_TEST(test_pages_are_shared_between_classes_under_the_limit)
{
    slabs_make(3 * MIB, MIB, 32, 1.04);
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, 1));
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, 5));
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, slabs.nclasses)); /* half of the last page */
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, slabs.nclasses)); /* and the other half */
    ck_assert_uint_eq(mp_slab_malloced(&slabs), 3 * MIB);
    ck_assert_ptr_null(mp_slab_alloc(&slabs, slabs.nclasses));
    ck_assert_ptr_null(mp_slab_alloc(&slabs, 9));
    /* classes with room on their page still allocate */
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, 1));
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, 5));
    ck_assert_uint_eq(mp_slab_malloced(&slabs), 3 * MIB);
}
END_TEST

START_TEST(test_a_chain_chunk_is_marked_counted_and_unmarked_when_freed)
{
    slabs_make(2 * MIB, MIB, 32, 1.04);
    unsigned cls = mp_slab_chunk_class(&slabs);
    struct mp_item *head = mp_slab_alloc(&slabs, 1);
    struct mp_item *chunk = mp_slab_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(chunk);
    ck_assert_uint_eq(atomic_load(&chunk->iflags), 0); /* allocated: neither free nor a chunk yet */
    mp_slab_chunk_mark(&slabs, cls, chunk, mp_slab_handle(&slabs, head), 3, 1000);
    ck_assert_uint_eq(atomic_load(&chunk->iflags), MP_ITEM_CHUNK);
    ck_assert_uint_eq(chunk->next, mp_slab_handle(&slabs, head));
    ck_assert_uint_eq(chunk->exptime, 3);
    ck_assert_uint_eq(chunk->nbytes, 1000);
    ck_assert_uint_eq(mp_item_stamp(chunk), 0); /* never a CAS a late reader's swap could match */
    ck_assert_uint_eq(slabs.classes[cls].chunks, 1);
    ck_assert_uint_eq(slabs.classes[cls].used, 1);
    mp_slab_free(&slabs, chunk);
    ck_assert_uint_eq(atomic_load(&chunk->iflags), MP_ITEM_FREE);
    ck_assert_uint_eq(slabs.classes[cls].chunks, 0);
    ck_assert_uint_eq(slabs.classes[cls].used, 0);
    mp_slab_free(&slabs, head);
}
END_TEST

START_TEST(test_memory_limit_below_a_page_still_gives_one_page)
{
    slabs_make(100 * 1024, MIB, 32, 1.04);
    ck_assert_uint_eq(slabs.npages, 1);
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, slabs.nclasses));
    ck_assert_ptr_null(mp_slab_alloc(&slabs, 1));
}
END_TEST

START_TEST(test_freed_chunk_is_reused_first)
{
    slabs_make(MIB, MIB, 32, 1.04);
    unsigned cls = 3;
    struct mp_item *a = mp_slab_alloc(&slabs, cls);
    struct mp_item *b = mp_slab_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(slabs.classes[cls].used, 2);
    mp_slab_free(&slabs, a);
    ck_assert_uint_eq(slabs.classes[cls].used, 1);
    ck_assert_uint_eq(slabs.classes[cls].nfree, 1);
    ck_assert_uint_eq(atomic_load(&a->refs), 0);
    ck_assert(mp_item_has(a, MP_ITEM_FREE)); /* what a page evacuation takes for free memory */
    ck_assert_ptr_eq(mp_slab_alloc(&slabs, cls), a);
    ck_assert_uint_eq(atomic_load(&a->refs), 1);
    ck_assert(!mp_item_has(a, MP_ITEM_FREE));
    ck_assert_uint_eq(slabs.classes[cls].nfree, 0);
    ck_assert_uint_eq(slabs.classes[cls].used, 2);
}
END_TEST

START_TEST(test_a_full_arena_frees_and_reallocates_every_chunk)
{
    slabs_make(2 * MIB, MIB, 32, 1.04);
    unsigned cls = mp_slab_class_for(&slabs, 50000);
    uint32_t total = 2 * slabs.classes[cls].perpage;
    struct mp_item **all = calloc(total, sizeof(*all));
    for (uint32_t i = 0; i < total; i++)
        ck_assert_ptr_nonnull(all[i] = mp_slab_alloc(&slabs, cls));
    ck_assert_ptr_null(mp_slab_alloc(&slabs, cls));
    for (uint32_t i = 0; i < total; i++)
        mp_slab_free(&slabs, all[i]);
    ck_assert_uint_eq(slabs.classes[cls].used, 0);
    ck_assert_uint_eq(slabs.classes[cls].nfree, total);
    for (uint32_t i = 0; i < total; i++) {
        struct mp_item *it = mp_slab_alloc(&slabs, cls);
        ck_assert_ptr_nonnull(it);
        ck_assert(in_page(it, 0) || in_page(it, 1));
    }
    ck_assert_ptr_null(mp_slab_alloc(&slabs, cls));
    ck_assert_uint_eq(slabs.classes[cls].npages, 2);
    free(all);
}
END_TEST

START_TEST(test_released_page_goes_to_the_pool_and_to_another_class)
{
    slabs_make(MIB, MIB, 32, 1.04); /* one page */
    unsigned a = 2, b = 7;
    struct mp_item *x = mp_slab_alloc(&slabs, a);
    struct mp_item *y = mp_slab_alloc(&slabs, a);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_null(mp_slab_alloc(&slabs, b));
    uint32_t page = mp_slab_page_of(&slabs, x);
    ck_assert_uint_eq(mp_slab_class_of(&slabs, x), a);

    mp_slab_free(&slabs, x);
    mp_slab_free(&slabs, y);
    pthread_mutex_lock(&slabs.classes[a].lock);
    mp_slab_page_release_locked(&slabs, a, page);
    pthread_mutex_unlock(&slabs.classes[a].lock);
    ck_assert_ptr_null(mp_slab_alloc(&slabs, b)); /* in limbo until recycled */
    mp_slab_pages_recycle(&slabs);
    ck_assert_uint_eq(slabs.classes[a].npages, 0);
    ck_assert_uint_eq(slabs.classes[a].nfree, 0); /* its chunks left the free list */
    ck_assert_uint_eq(slabs.classes[a].first_page, MP_SLAB_NONE);
    ck_assert_uint_eq(slabs.classes[a].pages_moved_out, 1);
    ck_assert_uint_eq(atomic_load(&slabs.page_class[page]), 0);
    ck_assert_uint_eq(mp_slab_malloced(&slabs), 0);

    struct mp_item *z = mp_slab_alloc(&slabs, b);
    ck_assert_ptr_nonnull(z);
    ck_assert(in_page(z, page));
    ck_assert_uint_eq(mp_slab_class_of(&slabs, z), b);
    ck_assert_uint_eq(slabs.classes[b].npages, 1);
    /* and class a has nothing left to hand out */
    ck_assert_ptr_null(mp_slab_alloc(&slabs, a));
}
END_TEST

START_TEST(test_release_keeps_the_free_chunks_of_other_pages)
{
    slabs_make(3 * MIB, MIB, 32, 1.04);
    unsigned cls = slabs.nclasses; /* half-page chunks: two per page */
    ck_assert_uint_eq(slabs.classes[cls].perpage, 2);
    struct mp_item *c[4];
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_nonnull(c[i] = mp_slab_alloc(&slabs, cls));
    uint32_t p0 = mp_slab_page_of(&slabs, c[0]), p1 = mp_slab_page_of(&slabs, c[2]);
    ck_assert_uint_ne(p0, p1);
    /* free one chunk of p0 and both of p1, interleaved on the free list */
    mp_slab_free(&slabs, c[2]);
    mp_slab_free(&slabs, c[0]);
    mp_slab_free(&slabs, c[3]);
    pthread_mutex_lock(&slabs.classes[cls].lock);
    mp_slab_page_release_locked(&slabs, cls, p1);
    pthread_mutex_unlock(&slabs.classes[cls].lock);
    mp_slab_pages_recycle(&slabs);
    ck_assert_uint_eq(slabs.classes[cls].npages, 1);
    ck_assert_uint_eq(slabs.classes[cls].nfree, 1);
    /* the one free chunk is p0's; then the class takes a page from the pool (p1 or the unused one) */
    ck_assert_ptr_eq(mp_slab_alloc(&slabs, cls), c[0]);
    struct mp_item *n = mp_slab_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(n);
    ck_assert(!in_page(n, p0));
    ck_assert_uint_eq(slabs.classes[cls].npages, 2);
}
END_TEST

START_TEST(test_handle_and_item_round_trip)
{
    slabs_make(2 * MIB, MIB, 32, 1.04);
    struct mp_item *first = mp_slab_alloc(&slabs, 1);
    ck_assert_ptr_eq(first, (struct mp_item *)slabs.arena);
    ck_assert_uint_eq(mp_slab_handle(&slabs, first), 1); /* 0 is "no item" */
    for (unsigned cls = 1; cls <= slabs.nclasses; cls += 17) {
        struct mp_item *it = mp_slab_alloc(&slabs, cls);
        if (!it)
            break;
        mp_handle_t h = mp_slab_handle(&slabs, it);
        ck_assert_uint_ne(h, 0);
        ck_assert_ptr_eq(mp_slab_item(&slabs, h), it);
        ck_assert_uint_eq(mp_slab_class_of(&slabs, it), cls);
    }
    struct mp_item *last = (struct mp_item *)(slabs.arena + slabs.arena_size - MP_SLAB_ALIGN);
    ck_assert_ptr_eq(mp_slab_item(&slabs, mp_slab_handle(&slabs, last)), last);
}
END_TEST

/* ---- thread caches --------------------------------------------------------------------------- */

START_TEST(test_thread_cache_hands_out_a_freed_chunk_only_after_the_class_lock)
{
    slabs_make(MIB, MIB, 32, 1.04);
    unsigned cls = 1;
    unsigned cap = slabs.mag_cap[cls];
    ck_assert_uint_eq(cap, MP_SLAB_MAG_MAX);
    struct mp_item *a = mp_slab_cache_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(atomic_load(&a->refs), 1);
    /* one for the caller, half a magazine ready: handed out of the class, but not in use */
    ck_assert_uint_eq(slabs.classes[cls].used, 1 + cap / 2);
    ck_assert_uint_eq(slab_used(&slabs, cls), 1);

    atomic_store(&a->refs, 0);
    mp_slab_cache_free(&slabs, a);
    ck_assert_uint_eq(slab_used(&slabs, cls), 0);
    ck_assert_uint_eq(slabs.classes[cls].nfree, 0); /* kept by the thread, off the free list */
    ck_assert(!mp_item_has(a, MP_ITEM_FREE));       /* so an evacuation must drain it first */
    /* the ready chunks go first; the freed one comes back through the free list, first of all */
    for (unsigned i = 0; i < cap / 2; i++)
        ck_assert_ptr_ne(mp_slab_cache_alloc(&slabs, cls), a);
    ck_assert_ptr_eq(mp_slab_cache_alloc(&slabs, cls), a);
    ck_assert_uint_eq(atomic_load(&a->refs), 1);
    ck_assert_uint_eq(slab_used(&slabs, cls), 1 + cap / 2);
}
END_TEST

START_TEST(test_a_full_freed_stack_goes_back_to_the_class)
{
    slabs_make(MIB, MIB, 32, 1.04);
    unsigned cls = 1;
    unsigned cap = slabs.mag_cap[cls];
    struct mp_item *it[MP_SLAB_MAG_MAX + 1];
    for (unsigned i = 0; i <= cap; i++)
        ck_assert_ptr_nonnull(it[i] = mp_slab_alloc(&slabs, cls));
    for (unsigned i = 0; i <= cap; i++) {
        atomic_store(&it[i]->refs, 0);
        mp_slab_cache_free(&slabs, it[i]);
    }
    ck_assert_uint_eq(slabs.classes[cls].nfree, cap);
    for (unsigned i = 0; i < cap; i++)
        ck_assert(mp_item_has(it[i], MP_ITEM_FREE));
    ck_assert(!mp_item_has(it[cap], MP_ITEM_FREE));
    ck_assert_uint_eq(slab_used(&slabs, cls), 0);
}
END_TEST

START_TEST(test_classes_of_large_chunks_keep_no_magazine)
{
    slabs_make(MIB, MIB, 32, 1.04);
    unsigned cls = mp_slab_class_for(&slabs, 8192);
    ck_assert_uint_eq(slabs.mag_cap[cls], 0);
    struct mp_item *a = mp_slab_cache_alloc(&slabs, cls);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(slabs.classes[cls].used, 1);
    atomic_store(&a->refs, 0);
    mp_slab_cache_free(&slabs, a);
    ck_assert_uint_eq(slabs.classes[cls].nfree, 1);
    ck_assert(mp_item_has(a, MP_ITEM_FREE));
}
END_TEST

struct cache_user {
    unsigned cls;
    unsigned n;
    struct mp_item *freed[8];
};

/* Another thread: takes chunks through its own cache and frees them back into it, then ends. */
static void *use_and_leave(void *arg)
{
    struct cache_user *u = arg;
    for (unsigned i = 0; i < u->n; i++)
        u->freed[i] = mp_slab_cache_alloc(&slabs, u->cls);
    for (unsigned i = 0; i < u->n; i++) {
        atomic_store(&u->freed[i]->refs, 0);
        mp_slab_cache_free(&slabs, u->freed[i]);
    }
    return NULL;
}

START_TEST(test_drain_brings_back_the_chunks_of_a_thread_that_ended)
{
    slabs_make(MIB, MIB, 32, 1.04); /* one page */
    struct cache_user u = {.cls = 2, .n = 8};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, use_and_leave, &u), 0);
    pthread_join(t, NULL);
    struct mp_slab_class *c = &slabs.classes[u.cls];
    uint32_t page = mp_slab_page_of(&slabs, u.freed[0]);
    ck_assert_uint_eq(slab_used(&slabs, u.cls), 0);
    ck_assert_uint_eq(c->nfree, 0);
    ck_assert(!mp_item_has(u.freed[0], MP_ITEM_FREE));

    pthread_mutex_lock(&c->lock);
    mp_slab_cache_drain_locked(&slabs, u.cls);
    ck_assert_uint_eq(c->used, 0);
    ck_assert_uint_eq(c->nfree, 1 + slabs.mag_cap[u.cls] / 2); /* all its first refill took */
    for (unsigned i = 0; i < u.n; i++)
        ck_assert(mp_item_has(u.freed[i], MP_ITEM_FREE));
    mp_slab_page_release_locked(&slabs, u.cls, page);
    pthread_mutex_unlock(&c->lock);
    mp_slab_pages_recycle(&slabs);
    ck_assert_uint_eq(c->nfree, 0);
    /* the page went to the pool, and the class's magazines hold nothing of it */
    ck_assert_ptr_nonnull(mp_slab_alloc(&slabs, 9));
    ck_assert_ptr_null(mp_slab_cache_alloc(&slabs, u.cls));
}
END_TEST

static Suite *slab_suite(void)
{
    Suite *s = suite_create("slab");
    TCase *tc = tcase_create("classes");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_classes_increase_8_byte_aligned_up_to_half_a_page);
    tcase_add_test(tc, test_factor_two_doubles_each_class_up_to_a_32nd_of_a_page);
    tcase_add_test(tc, test_classes_from_a_32nd_of_a_page_up_fill_their_pages);
    tcase_add_test(tc, test_factor_of_one_still_grows_by_8_bytes);
    tcase_add_test(tc, test_class_for_picks_the_smallest_class_that_fits);
    tcase_add_test(tc, test_class_for_is_zero_above_the_largest_class_or_the_item_limit);
    tcase_add_test(tc, test_item_limit_below_a_page_caps_class_for);
    tcase_add_test(tc, test_item_limit_above_a_page_keeps_pages_of_1_mib);
    tcase_add_test(tc, test_setup_refuses_a_minimum_chunk_over_half_a_page);
    tcase_add_test(tc, test_setup_refuses_a_factor_that_makes_too_many_classes);
    tcase_add_test(tc, test_setup_refuses_a_memory_limit_past_32_bit_handles);
    suite_add_tcase(s, tc);

    tc = tcase_create("pages");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_alloc_fills_every_page_then_returns_null);
    tcase_add_test(tc, test_pages_are_shared_between_classes_under_the_limit);
    tcase_add_test(tc, test_memory_limit_below_a_page_still_gives_one_page);
    tcase_add_test(tc, test_freed_chunk_is_reused_first);
    tcase_add_test(tc, test_a_full_arena_frees_and_reallocates_every_chunk);
    tcase_add_test(tc, test_released_page_goes_to_the_pool_and_to_another_class);
    tcase_add_test(tc, test_release_keeps_the_free_chunks_of_other_pages);
    tcase_add_test(tc, test_handle_and_item_round_trip);
    tcase_add_test(tc, test_a_chain_chunk_is_marked_counted_and_unmarked_when_freed);
    suite_add_tcase(s, tc);

    tc = tcase_create("thread caches");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_thread_cache_hands_out_a_freed_chunk_only_after_the_class_lock);
    tcase_add_test(tc, test_a_full_freed_stack_goes_back_to_the_class);
    tcase_add_test(tc, test_classes_of_large_chunks_keep_no_magazine);
    tcase_add_test(tc, test_drain_brings_back_the_chunks_of_a_thread_that_ended);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(slab_suite());
}

/* Unit tests for lru: CLOCK eviction order, reclaim of expired items, page moves, held items. */
#include <check.h>
#include <pthread.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "magpie/cache.h"
#include "magpie/lru.h"

/* Keys are "k:NNNNN" (7 bytes) and values VLEN bytes, so every item lands in one class. */
#define VLEN 1000

static struct mp_cache cache;
static struct mp_cache *c = &cache;

static void make(size_t mem_limit)
{
    struct mp_cache_config cfg = test_cache_config(mem_limit);
    test_cache_setup(c, &cfg);
}

static void teardown(void)
{
    mp_cache_teardown(c);
}

/* "<prefix>:<i>", in one of four buffers used in turn: four keys may be held at once. */
static const char *numbered(char prefix, unsigned i)
{
    static char buf[4][16];
    static unsigned n;
    char *k = buf[n++ % 4];
    snprintf(k, 16, "%c:%05u", prefix, i);
    return k;
}

static const char *key(unsigned i)
{
    return numbered('k', i);
}

static void set_item(unsigned i, uint32_t exptime, uint32_t now)
{
    enum mp_result r = set_fill(c, key(i), VLEN, (char)('a' + i % 26), exptime, now);
    ck_assert_msg(r == MP_STORED, "set %s: %d", key(i), r);
}

static void read_item(unsigned i, uint32_t now)
{
    struct got g = get_hit(c, key(i), now);
    ck_assert_uint_eq(g.nbytes, VLEN);
    ck_assert_int_eq(g.value[0], 'a' + i % 26);
}

static bool present(unsigned i, uint32_t now)
{
    return key_present(c, key(i), now);
}

static unsigned item_class(void)
{
    return class_of_shape(c, 7, VLEN);
}

static struct mp_slab_class *items_class(void)
{
    return class_at(c, item_class());
}

/* The small queue's size in the items' class (lru.h). */
static unsigned small_target(void)
{
    return items_class()->npages * items_class()->perpage * MP_LRU_SMALL_PERCENT / 100;
}

/* Whether item i, which must be there, is in the small queue. Looks under the stripe lock. */
static bool in_small(unsigned i, uint32_t now)
{
    const char *k = key(i);
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, k, strlen(k), &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, k, strlen(k), now, NULL);
    bool small = it && mp_item_small(it);
    mp_cache_unlock(&lk);
    ck_assert_msg(it != NULL, "%s is not there", key(i));
    return small;
}

/* n new items from `first` on, never read: one-hit wonders. */
static void set_unread(unsigned first, unsigned n, uint32_t now)
{
    for (unsigned i = first; i < first + n; i++)
        set_item(i, 0, now);
}

/* n new items from `first` on, each read once as soon as it is stored: they leave the small queue
 * for the main one, so the main CLOCK's hand has to make room for them. */
static void set_read_once(unsigned first, unsigned n, uint32_t now)
{
    for (unsigned i = first; i < first + n; i++) {
        set_item(i, 0, now);
        read_item(i, now);
    }
}

/* New unread items from `first` on until *counter reaches `until`, at most 2 x the small queue's
 * size of them; returns the next unused number. A small queue of n turns over after about n new
 * items, a few more when the ghost takes some strangers for keys it remembers (main-queue
 * evictions go to the ghost too, so it is never empty here). */
static unsigned set_unread_until(unsigned first, const uint64_t *counter, uint64_t until, uint32_t now)
{
    unsigned i = first;
    while (*counter < until) {
        ck_assert_uint_lt(i - first, 2 * small_target());
        set_item(i++, 0, now);
    }
    return i;
}

static unsigned present_among(unsigned first, unsigned n, uint32_t now)
{
    unsigned held = 0;
    for (unsigned i = first; i < first + n; i++)
        held += present(i, now);
    return held;
}

/* ---- the small queue and the ghost (S3-FIFO) ----------------------------------------------------- */

START_TEST(test_items_stored_while_the_class_has_room_go_to_the_main_queue)
{
    make(MIB); /* one page */
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    ck_assert_uint_eq(items_class()->evictions, 0);
    for (unsigned i = 0; i < perpage; i++)
        ck_assert_msg(!in_small(i, T0), "%s is in the small queue", key(i));
    /* full: the next new item takes an evicted item's chunk, on probation */
    set_item(100000, 0, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, 1);
    ck_assert(in_small(100000, T0 + 1));
}
END_TEST

START_TEST(test_first_eviction_takes_the_oldest_unread_item)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, 1);
    ck_assert_msg(!present(0, T0 + 1), "the oldest item survived and %s went first", present(1, T0 + 1) ? "?" : key(1));
    for (unsigned i = 1; i < perpage; i++)
        ck_assert(present(i, T0 + 1));
}
END_TEST

START_TEST(test_a_one_hit_wonder_does_not_evict_a_twice_read_item)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    read_item(5, T0);
    read_item(5, T0);
    /* three pages' worth of keys read never again (a scan) */
    set_unread(100000, 3 * perpage, T0 + 1);
    ck_assert(present(5, T0 + 1));
    /* They evicted one another from the small queue: of what was there, only as many as the small
     * queue holds went (unread ones, oldest first), to make room for it, and one for each of them
     * the ghost took for a key it had seen (a stranger with the same fingerprint: a few percent
     * once the ghost is full) and sent to the main queue. */
    uint64_t strays = items_class()->ghost_hits;
    ck_assert_uint_lt(strays, perpage / 10);
    unsigned lost = perpage - present_among(0, perpage, T0 + 1);
    ck_assert_uint_ge(lost, small_target());
    ck_assert_uint_le(lost, small_target() + strays);
    ck_assert_uint_eq(present_among(100000, 3 * perpage, T0 + 1), lost);
    ck_assert_uint_eq(items_class()->evictions, 3 * perpage);
    ck_assert_uint_eq(items_class()->small_evicted, 3 * perpage - lost);
}
END_TEST

START_TEST(test_an_unread_item_is_evicted_from_the_small_queue_before_older_items)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    ck_assert(in_small(100000, T0 + 1));
    /* once the small queue is full, its oldest goes first: 100000, unread */
    unsigned next = set_unread_until(100001, &items_class()->small_evicted, 1, T0 + 1);
    ck_assert_uint_ge(next - 100001, small_target());
    ck_assert(!present(100000, T0 + 1));
    ck_assert_uint_eq(present_among(100001, next - 100001, T0 + 1), next - 100001);
    ck_assert_uint_eq(present_among(0, perpage, T0 + 1), perpage - (next - 100001));
}
END_TEST

START_TEST(test_an_item_read_in_the_small_queue_is_promoted_to_the_main_one)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    read_item(100000, T0 + 1);
    ck_assert(in_small(100000, T0 + 1)); /* until it reaches the head of the queue */
    unsigned next = set_unread_until(100001, &items_class()->small_promoted, 1, T0 + 1);
    ck_assert(!in_small(100000, T0 + 1));
    ck_assert_uint_eq(items_class()->small_evicted, 0);
    /* behind it the next, unread, is evicted */
    set_unread_until(next, &items_class()->small_evicted, 1, T0 + 1);
    ck_assert(!present(100001, T0 + 1));
    ck_assert(present(100000, T0 + 1));
}
END_TEST

/* 100000 goes through the small queue unread and is evicted: its key is in the ghost. */
static void evict_from_small(uint32_t perpage)
{
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    set_unread_until(100001, &items_class()->small_evicted, 1, T0 + 1);
    ck_assert(!present(100000, T0 + 1));
}

START_TEST(test_a_key_evicted_and_requested_again_soon_is_readmitted_to_the_main_queue)
{
    make(MIB);
    evict_from_small(items_class()->perpage);
    uint64_t hits = items_class()->ghost_hits;
    set_item(100000, 0, T0 + 2);
    ck_assert(!in_small(100000, T0 + 2));
    ck_assert_uint_eq(items_class()->ghost_hits, hits + 1);
}
END_TEST

START_TEST(test_a_key_back_later_than_half_a_turn_of_the_hand_goes_to_the_small_queue)
{
    make(MIB);
    evict_from_small(items_class()->perpage);
    /* The main hand's last turn took one ghost addition: the key has been gone far longer than
     * half a turn, and main items read only that often are evicted before they are read again. */
    c->lru.small[item_class()].turn_len = 1;
    uint64_t hits = items_class()->ghost_hits;
    set_item(100000, 0, T0 + 2);
    ck_assert(in_small(100000, T0 + 2));
    ck_assert_uint_eq(items_class()->ghost_hits, hits);
}
END_TEST

START_TEST(test_the_main_hand_measures_its_turns_in_ghost_additions)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    ck_assert_uint_eq(c->lru.small[item_class()].turn_len, 0);
    /* every new item is read, so promoted: the evictions are the main hand's, one per set, and
     * with no more chunks than evictions in a turn, some whole turns go by */
    set_read_once(100000, 3 * perpage, T0 + 1);
    uint64_t turn = c->lru.small[item_class()].turn_len;
    ck_assert_uint_gt(turn, 0);
    ck_assert_uint_le(turn, perpage);
}
END_TEST

START_TEST(test_a_store_over_a_key_puts_it_in_the_main_queue)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    set_item(100001, 0, T0 + 1);
    ck_assert(in_small(100000, T0 + 1) && in_small(100001, T0 + 1));
    /* the same shape: written in place */
    set_item(100000, 0, T0 + 1);
    ck_assert(!in_small(100000, T0 + 1));
    /* with client flags, another layout in the same class: a new chunk replaces it */
    ck_assert_int_eq(store_full(c, MP_SET, key(100001), NULL, VLEN - 4, 'z', 1, 0, 0, T0 + 1, NULL), MP_STORED);
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key(100001), 8, &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, key(100001), 8, T0 + 1, NULL);
    ck_assert(it != NULL && !mp_item_small(it));
    mp_cache_unlock(&lk);
    /* and the queue's entries for their old chunks evict neither */
    set_unread(100002, 2 * small_target(), T0 + 1);
    ck_assert(present(100000, T0 + 1));
    ck_assert(key_present(c, key(100001), T0 + 1));
}
END_TEST

START_TEST(test_a_deleted_small_items_entry_spares_the_item_that_took_its_chunk)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    set_item(100000, 0, T0 + 1);
    ck_assert_int_eq(mp_cache_delete(c, key(100000), 8, T0 + 1), MP_DELETED);
    /* the freed chunk is reused without an eviction: the class had room, so the item is main */
    uint64_t evictions = items_class()->evictions;
    set_item(100001, 0, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, evictions);
    ck_assert(!in_small(100001, T0 + 1));
    /* the small queue turns over past the old entry, which points at 100001's chunk now */
    set_unread(100002, 2 * small_target(), T0 + 1);
    ck_assert(present(100001, T0 + 1));
}
END_TEST

START_TEST(test_a_chunk_still_being_filled_keeps_its_place_in_the_small_queue)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    /* a set whose value is still being read from its client: allocated, not yet stored */
    enum mp_result res;
    struct mp_item *slow = mp_cache_alloc(c, key(100000), 8, 0, 0, VLEN, T0 + 1, &res);
    ck_assert_ptr_nonnull(slow);
    ck_assert(mp_item_small(slow));
    /* meanwhile the small queue turns over twice past its entry */
    set_unread(100001, 2 * small_target(), T0 + 1);
    memset(mp_item_value(slow), 'a' + 100000 % 26, VLEN);
    struct mp_store st = {.op = MP_SET};
    ck_assert_int_eq(mp_cache_store(c, &slow, &st, T0 + 1), MP_STORED);
    ck_assert(in_small(100000, T0 + 1));
    /* still queued, so still on probation: unread, it goes in its turn */
    unsigned i = 200000;
    while (key_present(c, key(100000), T0 + 1)) {
        ck_assert_uint_lt(i - 200000, 2 * small_target()); /* not left behind in the small queue */
        set_item(i++, 0, T0 + 1);
    }
}
END_TEST

/* Item i brought back by a warm store (a snapshot's loader, cache.h) with this CLOCK byte. */
static void warm_item(unsigned i, uint8_t clock, uint32_t now)
{
    const char *k = key(i);
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc_spare(c, k, strlen(k), 0, 0, VLEN, &res);
    ck_assert_ptr_nonnull(it);
    memset(mp_item_value(it), 'a' + i % 26, VLEN);
    ck_assert_int_eq(mp_cache_store_warm(c, &it, 0, clock, 0, now), MP_STORED);
}

START_TEST(test_an_item_brought_back_from_the_small_queue_rejoins_it)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    warm_item(0, MP_ITEM_CLOCK_SMALL, T0);     /* on probation, unread */
    warm_item(1, MP_ITEM_CLOCK_SMALL | 1, T0); /* on probation, read once */
    warm_item(2, 0, T0);
    ck_assert(in_small(0, T0) && in_small(1, T0));
    ck_assert(!in_small(2, T0));
    set_unread(3, perpage - 3, T0);
    /* The class is full. Its first evictions are the main hand's (2, 3, ...) until the small queue
     * has its size; then its oldest entries come up first: 0 is evicted, 1 moves to main. */
    unsigned next = set_unread_until(100000, &items_class()->small_evicted, 1, T0 + 1);
    ck_assert(!present(0, T0 + 1));
    ck_assert(!present(2, T0 + 1));
    ck_assert_uint_eq(present_among(100000, next - 100000, T0 + 1), next - 100000);
    ck_assert_uint_eq(items_class()->small_promoted, 0);
    set_item(next, 0, T0 + 1);
    ck_assert_uint_eq(items_class()->small_promoted, 1);
    ck_assert(present(1, T0 + 1));
    ck_assert(!in_small(1, T0 + 1));
}
END_TEST

/* ---- the main queue's CLOCK -------------------------------------------------------------------- */

START_TEST(test_read_items_survive_a_fill_that_evicts_unread_ones)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    for (unsigned i = 0; i < perpage; i += 2)
        read_item(i, T0);
    unsigned unread = perpage / 2;
    set_unread(100000, unread, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, unread);
    ck_assert_uint_eq(items_class()->evicted_unfetched, unread);
    for (unsigned i = 0; i < perpage; i += 2)
        ck_assert_msg(present(i, T0 + 1), "%s was read and evicted", key(i));
    /* the newest new ones are there: the small queue's worth */
    ck_assert_uint_eq(present_among(100000 + unread - small_target(), small_target(), T0 + 1), small_target());
}
END_TEST

START_TEST(test_an_item_read_often_outlives_one_read_once)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, perpage, T0);
    read_item(10, T0); /* once */
    for (int r = 0; r < 3; r++)
        read_item(20, T0); /* three times: the most the CLOCK counts */
    /* new items that are read, so reach the main queue: the hand takes one hit from every
     * survivor at each pass, and makes two */
    set_read_once(100000, perpage + perpage / 2, T0 + 1);
    ck_assert(!present(10, T0 + 1));
    ck_assert(present(20, T0 + 1));
}
END_TEST

START_TEST(test_unread_items_are_evicted_oldest_first_across_pages)
{
    /* Four pages of one class filled in order and never read; then two pages' worth of new items
     * that are read once each, so they stay. An approximation of LRU must evict from the oldest
     * items: the most recent page's worth of the first fill (stored after all the others) must
     * still be there. */
    make(4 * MIB);
    uint32_t perpage = items_class()->perpage;
    unsigned n = 4 * perpage;
    set_unread(0, n, T0);
    ck_assert_uint_eq(items_class()->npages, 4);
    ck_assert_uint_eq(items_class()->evictions, 0);
    set_read_once(100000, 2 * perpage, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, 2 * perpage);
    unsigned newest_lost = 0;
    for (unsigned i = 3 * perpage; i < n; i++)
        newest_lost += !present(i, T0 + 1);
    ck_assert_msg(newest_lost == 0, "%u of the %u most recent items were evicted before older ones", newest_lost,
                  perpage);
}
END_TEST

START_TEST(test_expired_items_are_reclaimed_before_live_ones_are_evicted)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    unsigned expiring = 0;
    for (unsigned i = 0; i < perpage; i++) {
        set_item(i, i % 2 == 0 ? T0 + 10 : 0, T0);
        expiring += i % 2 == 0;
    }
    /* every item is read once: hits protect live items, never expired ones */
    for (unsigned i = 0; i < perpage; i++)
        read_item(i, T0);
    /* new items that are read once, so the main hand makes their room */
    set_read_once(100000, expiring, T0 + 10);
    ck_assert_uint_eq(items_class()->reclaimed, expiring);
    ck_assert_uint_eq(items_class()->expired_unfetched, 0);
    ck_assert_uint_eq(items_class()->evictions, 0);
    for (unsigned i = 1; i < perpage; i += 2)
        ck_assert_msg(present(i, T0 + 10), "live %s was evicted", key(i));
}
END_TEST

START_TEST(test_eviction_counters_tell_unfetched_and_nonzero_exptime)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    for (unsigned i = 0; i < perpage; i++)
        set_item(i, i < perpage / 2 ? T0 + 1000 : 0, T0);
    set_unread(100000, perpage, T0 + 1);
    ck_assert_uint_eq(items_class()->evictions, perpage);
    ck_assert_uint_eq(items_class()->evicted_unfetched, perpage);
    ck_assert_uint_eq(items_class()->reclaimed, 0);
    /* the first items went (the hand starts at the first chunk), all with an exptime: the small
     * queue's worth, and up to one more for each new item the ghost sent to the main queue (its
     * fingerprints depend on the table's random hash secret: a stray one late in the run costs an
     * item past the first half, with no exptime) */
    unsigned gone_with_exptime = perpage / 2 - present_among(0, perpage / 2, T0 + 1);
    ck_assert_uint_ge(gone_with_exptime, small_target());
    ck_assert_uint_le(gone_with_exptime, small_target() + items_class()->ghost_hits);
    ck_assert_uint_eq(items_class()->evicted_nonzero, gone_with_exptime);
}
END_TEST

/* ---- background reclaim ------------------------------------------------------------------------ */

START_TEST(test_reclaim_frees_expired_items_nobody_reads)
{
    make(MIB);
    unsigned cls = item_class();
    uint32_t perpage = items_class()->perpage;
    unsigned expiring = 0;
    for (unsigned i = 0; i < perpage; i++) {
        set_item(i, i % 3 ? T0 + 5 : 0, T0);
        expiring += i % 3 != 0;
    }
    read_item(1, T0); /* one expiring item was read */
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, cls, T0 + 4, 10 * perpage), 0);
    ck_assert_uint_eq(items_class()->crawler_reclaimed, 0);

    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, cls, T0 + 5, 10 * perpage), expiring);
    ck_assert_uint_eq(items_class()->crawler_reclaimed, expiring);
    ck_assert_uint_eq(items_class()->expired_unfetched, expiring - 1);
    ck_assert_uint_eq(used_in(c, item_class()), perpage - expiring);
    ck_assert_uint_eq(items_class()->nfree, expiring);
    ck_assert_uint_eq(items_class()->evictions, 0);
    ck_assert_uint_eq(mp_table_count(&c->table), perpage - expiring);
    for (unsigned i = 0; i < perpage; i += 3)
        ck_assert(present(i, T0 + 5));
    /* a second pass finds nothing more */
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, cls, T0 + 5, 10 * perpage), 0);
}
END_TEST

START_TEST(test_reclaim_looks_at_no_more_than_its_budget_and_resumes)
{
    make(MIB);
    unsigned cls = item_class();
    uint32_t perpage = items_class()->perpage;
    for (unsigned i = 0; i < perpage; i++)
        set_item(i, T0 + 1, T0);
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, cls, T0 + 1, 10), 10);
    ck_assert_uint_eq(mp_table_count(&c->table), perpage - 10);
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, cls, T0 + 1, perpage - 10), perpage - 10);
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
    ck_assert_uint_eq(items_class()->crawler_reclaimed, perpage);
}
END_TEST

START_TEST(test_reclaim_frees_flushed_items)
{
    make(MIB);
    for (unsigned i = 0; i < 50; i++)
        set_item(i, 0, T0);
    mp_cache_flush(c, T0, T0);
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, item_class(), T0, 1000), 50);
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
    ck_assert_uint_eq(used_in(c, item_class()), 0);
}
END_TEST

START_TEST(test_reclaim_of_a_class_without_pages_does_nothing)
{
    make(MIB);
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, 3, T0, 1000), 0);
}
END_TEST

/* ---- moving pages between classes ------------------------------------------------------------ */

#define BIG 300000 /* three to a page */

static const char *big_key(unsigned i)
{
    static char buf[16];
    snprintf(buf, sizeof(buf), "B:%05u", i);
    return buf;
}

START_TEST(test_page_evacuate_empties_a_page_for_another_class)
{
    make(2 * MIB);
    uint32_t perpage = items_class()->perpage;
    for (unsigned i = 0; i < 2 * perpage; i++)
        set_item(i, 0, T0);
    ck_assert_uint_eq(pages_in_use(c), 2);
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key(0), 7, &lk);
    uint32_t page = mp_slab_page_of(&c->slabs, mp_cache_find_locked(c, &lk, key(0), 7, T0, NULL));
    mp_cache_unlock(&lk);
    /* which keys live on that page */
    bool *on_page = calloc(2 * perpage, sizeof(bool));
    for (unsigned i = 0; i < 2 * perpage; i++) {
        mp_cache_lock_key(c, key(i), 7, &lk);
        on_page[i] = mp_slab_page_of(&c->slabs, mp_cache_find_locked(c, &lk, key(i), 7, T0, NULL)) == page;
        mp_cache_unlock(&lk);
    }

    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0), 0);
    ck_assert_uint_eq(items_class()->npages, 1);
    ck_assert_uint_eq(items_class()->pages_moved_out, 1);
    ck_assert_uint_eq(items_class()->evictions, 0); /* moved, not evicted for lack of room */
    ck_assert_uint_eq(items_class()->evicted_for_move, perpage);
    ck_assert_uint_eq(mp_table_count(&c->table), perpage);
    for (unsigned i = 0; i < 2 * perpage; i++)
        ck_assert(present(i, T0) == !on_page[i]);

    ck_assert_int_eq(set_fill(c, big_key(0), BIG, 'B', 0, T0), MP_STORED);
    unsigned big = class_of_shape(c, 7, BIG);
    ck_assert_uint_eq(class_at(c, big)->npages, 1);
    ck_assert_uint_eq(pages_in_use(c), 2);
    ck_assert_uint_eq(total_evictions(c), 0);
    free(on_page);
}
END_TEST

START_TEST(test_page_evacuate_refuses_a_page_with_a_held_item)
{
    make(MIB);
    for (unsigned i = 0; i < 10; i++)
        set_item(i, 0, T0);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, key(5), T0, &held, NULL), MP_OK);
    uint32_t page = mp_slab_page_of(&c->slabs, held.held);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0), -EBUSY);
    ck_assert_uint_eq(items_class()->npages, 1);
    ck_assert(present(5, T0));
    ck_assert_int_eq(held.held->nbytes, VLEN);
    ck_assert_int_eq(mp_item_value(held.held)[0], 'a' + 5);
    mp_cache_item_release(c, &held.held);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0), 0);
    ck_assert_uint_eq(items_class()->npages, 0);
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
}
END_TEST

START_TEST(test_page_evacuate_refuses_a_page_with_a_chunk_being_allocated)
{
    /* mp_cache_alloc takes a chunk under the class lock (mp_slab_alloc_locked, or the CLOCK's
     * victim), lets the lock go, and only then writes the item header with mp_item_init: in
     * between, the chunk has refs 0 and is not linked, exactly like this one. A page move at that
     * moment (mp_lru_page_steal or automove on another thread) must not take the page away. */
    make(MIB);
    for (unsigned i = 0; i < 10; i++)
        set_item(i, 0, T0);
    struct mp_item *being_filled = mp_slab_alloc(&c->slabs, item_class());
    ck_assert_ptr_nonnull(being_filled);
    uint32_t page = mp_slab_page_of(&c->slabs, being_filled);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0), -EBUSY);
    ck_assert_uint_eq(atomic_load(&c->slabs.page_class[page]), item_class());
}
END_TEST

/* Another thread overwrites and deletes keys 0..9: their old chunks go to its own magazine. */
static void *overwrite_and_delete(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < 10; i++)
        set_item(i, 0, T0);
    for (unsigned i = 0; i < 10; i++)
        ck_assert_int_eq(mp_cache_delete(c, key(i), 7, T0), MP_DELETED);
    return NULL;
}

START_TEST(test_page_evacuate_takes_back_chunks_other_threads_keep)
{
    make(MIB);
    for (unsigned i = 0; i < 10; i++)
        set_item(i, 0, T0);
    struct got g = {.take_ref = true};
    ck_assert_int_eq(get_key(c, key(0), T0, &g, NULL), MP_OK);
    uint32_t page = mp_slab_page_of(&c->slabs, g.held);
    mp_cache_item_release(c, &g.held);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, overwrite_and_delete, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_uint_eq(mp_table_count(&c->table), 0);
    ck_assert_uint_eq(used_in(c, item_class()), 0);
    ck_assert_uint_gt(items_class()->used, 0); /* free, but kept in the two threads' caches */

    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0), 0);
    ck_assert_uint_eq(items_class()->npages, 0);
    ck_assert_uint_eq(items_class()->used, 0);
    /* the page is free for another class */
    ck_assert_int_eq(set_fill(c, big_key(0), BIG, 'B', 0, T0), MP_STORED);
    ck_assert_uint_eq(class_at(c, class_of_shape(c, 7, BIG))->npages, 1);
    /* and no magazine hands out a chunk of it: a small item now takes the page back whole */
    ck_assert_int_eq(set_fill(c, key(1), VLEN, 'x', 0, T0), MP_STORED);
    ck_assert(!key_present(c, big_key(0), T0));
    struct got back = get_hit(c, key(1), T0);
    ck_assert_int_eq(back.value[0], 'x');
    ck_assert_uint_eq(used_in(c, item_class()), 1);
}
END_TEST

START_TEST(test_small_items_on_a_page_moved_away_leave_entries_the_hand_skips)
{
    make(2 * MIB);
    uint32_t perpage = items_class()->perpage;
    set_unread(0, 2 * perpage, T0);
    ck_assert_uint_eq(items_class()->npages, 2);
    set_unread(100000, small_target() / 2, T0 + 1); /* on the first page, where the hand is */
    ck_assert(in_small(100000, T0 + 1));
    struct got g = {.take_ref = true};
    ck_assert_int_eq(get_key(c, key(100000), T0 + 1, &g, NULL), MP_OK);
    uint32_t page = mp_slab_page_of(&c->slabs, g.held);
    mp_cache_item_release(c, &g.held);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, item_class(), page, T0 + 1), 0);
    ck_assert_uint_eq(items_class()->npages, 1);
    /* the page serves another class now, cut into other chunks; the small queue turns over past
     * the entries that point into it, and leaves its items alone */
    ck_assert_int_eq(set_fill(c, big_key(0), BIG, 'B', 0, T0 + 1), MP_STORED);
    set_unread(200000, 2 * small_target(), T0 + 1);
    struct got big = get_hit(c, big_key(0), T0 + 1);
    ck_assert_int_eq(big.nbytes, BIG);
    ck_assert_int_eq(big.value[0], 'B');
}
END_TEST

START_TEST(test_a_page_is_stolen_from_the_class_idle_longest)
{
    /* three pages, each class with one: the class that last stole a page is not robbed in turn
     * while another has been idle longer */
    make(3 * MIB);
    ck_assert_int_eq(set_fill(c, "b", 5000, 'b', 0, T0), MP_STORED);
    ck_assert_int_eq(set_fill(c, "c", 20000, 'c', 0, T0), MP_STORED);
    ck_assert_int_eq(set_fill(c, "a", 1000, 'a', 0, T0), MP_STORED);
    ck_assert_uint_eq(pages_in_use(c), 3);
    /* a fourth class takes the page of one of the three (none has evicted or stolen yet) */
    ck_assert_int_eq(set_fill(c, "d", 100, 'd', 0, T0), MP_STORED);
    ck_assert_uint_eq(pages_in_use(c), 3);
    unsigned d = class_of_shape(c, 1, 100);
    ck_assert_uint_eq(class_at(c, d)->npages, 1);
    /* a fifth: the fourth, which just stole, keeps its page */
    ck_assert_int_eq(set_fill(c, "e", 50000, 'e', 0, T0), MP_STORED);
    ck_assert(key_present(c, "d", T0));
    ck_assert(key_present(c, "e", T0));
    ck_assert_uint_eq(class_at(c, d)->npages, 1);
}
END_TEST

START_TEST(test_a_page_is_stolen_from_a_class_that_can_spare_one_and_was_idle_longest)
{
    /* six pages: an idle class with two, a busy class with three (it is evicting), one with a
     * single page; a new class takes the idle class's page, not one of the busy class's (which
     * has the most) nor the last page of the third */
    make(6 * MIB);
    unsigned busy = class_of_shape(c, 7, 300000), idle = class_of_shape(c, 7, 100000);
    for (unsigned i = 0; i < 2 * class_at(c, idle)->perpage; i++)
        ck_assert_int_eq(set_fill(c, big_key(i), 100000, 'i', 0, T0), MP_STORED);
    ck_assert_int_eq(set_fill(c, "one", 5000, 'o', 0, T0), MP_STORED);
    unsigned i = 1000;
    while (class_at(c, busy)->evictions == 0)
        ck_assert_int_eq(set_fill(c, big_key(i++), 300000, 'b', 0, T0), MP_STORED);
    ck_assert_uint_eq(class_at(c, busy)->npages, 3);
    ck_assert_uint_eq(class_at(c, idle)->npages, 2);
    ck_assert_uint_eq(pages_in_use(c), 6);
    ck_assert_int_eq(set_fill(c, "new", 30000, 'n', 0, T0), MP_STORED);
    ck_assert_uint_eq(class_at(c, idle)->npages, 1);
    ck_assert_uint_eq(class_at(c, busy)->npages, 3);
    ck_assert(key_present(c, "one", T0));
    ck_assert(key_present(c, big_key(i - 1), T0)); /* the busy class's newest item */
}
END_TEST

START_TEST(test_a_class_of_few_chunks_has_no_small_queue_and_keeps_its_newest_items)
{
    /* 300 KB items, three to a page, in 4 MiB: a tenth of the class would be one item, and the
     * next new item would evict it unread; with no small queue the hand takes the oldest */
    make(4 * MIB);
    unsigned i = 0;
    while (total_evictions(c) == 0)
        ck_assert_int_eq(set_fill(c, big_key(i++), 300000, 'b', 0, T0), MP_STORED);
    for (unsigned n = 0; n < 3; n++, i++) {
        ck_assert_int_eq(set_fill(c, big_key(i), 300000, 'b', 0, T0), MP_STORED);
        if (n > 0)
            ck_assert_msg(key_present(c, big_key(i - 1), T0), "the item stored before the newest");
    }
    ck_assert_uint_eq(class_at(c, class_of_shape(c, 7, 300000))->small_evicted, 0);
}
END_TEST

START_TEST(test_automove_gives_a_page_from_a_quiet_class_to_an_evicting_one)
{
    make(4 * MIB);
    struct mp_slab_class *small = items_class();
    unsigned i = 0;
    while (small->npages < 4 || small->bump_page != MP_SLAB_NONE)
        set_item(i++, 0, T0); /* all four pages, and no evictions */
    ck_assert_uint_eq(small->evictions, 0);
    unsigned small_items = i;

    /* only large values from now on: the first takes a page of the small class, the next evict */
    unsigned big = class_of_shape(c, 7, BIG);
    uint32_t bigpp = class_at(c, big)->perpage;
    for (unsigned b = 0; b < 2 * bigpp; b++)
        ck_assert_int_eq(set_fill(c, big_key(b), BIG, 'B', 0, T0), MP_STORED);
    ck_assert_uint_eq(class_at(c, big)->npages, 1);
    ck_assert_uint_eq(class_at(c, big)->evictions, bigpp);
    ck_assert_uint_eq(small->npages, 3);
    ck_assert_uint_eq(small->evictions, 0);

    ck_assert_uint_eq(mp_lru_automove(&c->lru, T0, 1), 1);
    ck_assert_uint_eq(small->npages, 2);
    ck_assert_uint_eq(class_at(c, big)->pages_moved_in, 2);
    ck_assert_uint_eq(pages_in_use(c), 3);
    /* the page waits in the pool for the class that needs it */
    ck_assert_int_eq(set_fill(c, big_key(1000), BIG, 'B', 0, T0), MP_STORED);
    ck_assert_uint_eq(class_at(c, big)->npages, 2);
    ck_assert_uint_eq(class_at(c, big)->evictions, bigpp);
    ck_assert_uint_eq(pages_in_use(c), 4);
    /* half the small items remain, untouched */
    ck_assert_uint_eq(mp_table_count(&c->table), small_items - 2 * small->perpage + bigpp + 1);
    ck_assert_uint_eq(total_evicted_for_move(c), 2 * small->perpage);
}
END_TEST

START_TEST(test_automove_without_evictions_moves_nothing)
{
    make(4 * MIB);
    for (unsigned i = 0; i < 3 * items_class()->perpage; i++)
        set_item(i, 0, T0);
    ck_assert_uint_eq(mp_lru_automove(&c->lru, T0, 4), 0);
    ck_assert_uint_eq(items_class()->npages, 3);
}
END_TEST

START_TEST(test_automove_keeps_a_donors_last_page)
{
    make(2 * MIB);
    set_item(0, 0, T0); /* one page of small items */
    unsigned big = class_of_shape(c, 7, BIG);
    for (unsigned b = 0; b < 2 * class_at(c, big)->perpage; b++)
        ck_assert_int_eq(set_fill(c, big_key(b), BIG, 'B', 0, T0), MP_STORED);
    ck_assert_uint_gt(class_at(c, big)->evictions, 0);
    ck_assert_uint_eq(mp_lru_automove(&c->lru, T0, 4), 0);
    ck_assert_uint_eq(items_class()->npages, 1);
    ck_assert(present(0, T0));
}
END_TEST

/* ---- readers hold items ------------------------------------------------------------------------ */

START_TEST(test_held_item_is_never_evicted_or_freed_until_released)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    set_item(0, 0, T0);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, key(0), T0, &held, NULL), MP_OK);
    struct mp_item *it = held.held;

    /* many turns of the CLOCK: the held item is passed over each time */
    for (unsigned i = 1; i < 6 * perpage; i++)
        set_item(i, 0, T0 + 1);
    ck_assert(present(0, T0 + 1));
    ck_assert(mp_item_linked(it));
    ck_assert_uint_eq(atomic_load(&it->refs), 2);

    /* overwritten and deleted while held: unlinked, but the reader's bytes stay */
    ck_assert_int_eq(set_fill(c, key(0), VLEN, 'Z', 0, T0 + 2), MP_STORED);
    ck_assert_int_eq(mp_cache_delete(c, key(0), 7, T0 + 2), MP_DELETED);
    ck_assert(!mp_item_linked(it));
    ck_assert_uint_eq(atomic_load(&it->refs), 1);
    for (unsigned i = 0; i < 3 * perpage; i++)
        set_item(200000 + i, 0, T0 + 3);
    ck_assert_uint_eq(it->nbytes, VLEN);
    ck_assert_int_eq(memcmp(mp_item_key(it), "k:00000", 7), 0);
    for (unsigned b = 0; b < VLEN; b++)
        ck_assert_int_eq(mp_item_value(it)[b], 'a');
    ck_assert_uint_eq(used_in(c, item_class()), perpage); /* the held chunk plus a full page less one */

    mp_cache_item_release(c, &held.held);
    ck_assert_uint_eq(atomic_load(&it->refs), 0);
    ck_assert_uint_eq(used_in(c, item_class()), perpage - 1);
    /* its chunk is the next this thread stores into */
    struct mp_item *next = mp_cache_alloc(c, key(1), 7, 0, 0, VLEN, T0 + 3, &(enum mp_result){0});
    ck_assert_ptr_eq(next, it);
    mp_cache_item_release(c, &next);
}
END_TEST

START_TEST(test_class_whose_items_are_all_held_cannot_allocate)
{
    make(MIB);
    uint32_t perpage = items_class()->perpage;
    struct mp_item **held = calloc(perpage, sizeof(*held));
    for (unsigned i = 0; i < perpage; i++) {
        set_item(i, 0, T0);
        struct got g = {.take_ref = true};
        ck_assert_int_eq(get_key(c, key(i), T0, &g, NULL), MP_OK);
        held[i] = g.held;
    }
    enum mp_result res;
    ck_assert_ptr_null(mp_cache_alloc(c, "k:99999", 7, 0, 0, VLEN, T0, &res));
    ck_assert_int_eq(res, MP_NOMEM);
    ck_assert_uint_eq(items_class()->outofmemory, 1);
    ck_assert_uint_eq(items_class()->evictions, 0);
    mp_cache_item_release(c, &held[3]);
    ck_assert_int_eq(set_fill(c, "k:99999", VLEN, 'n', 0, T0), MP_STORED);
    ck_assert(!present(3, T0));
    for (unsigned i = 0; i < perpage; i++)
        mp_cache_item_release(c, &held[i]);
    free(held);
}
END_TEST

/* ---- last access, and what the reclaim pass measures ------------------------------------------ */

static struct mp_item *linked_item(unsigned i, uint32_t now)
{
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key(i), 7, &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, key(i), 7, now, NULL);
    mp_cache_unlock(&lk);
    return it;
}

/* A store records its minute; a hit moves it to the hit's minute, and a saturated item hit again
 * in the same minute is not written at all (item.h). */
START_TEST(test_last_access_is_the_minute_of_the_store_or_latest_hit)
{
    make(MIB);
    uint32_t t = 60 * 1000; /* a minute's first second */
    set_item(0, 0, t);
    struct mp_item *it = linked_item(0, t);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), t + 59), 0);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), t + 60), 60);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), t + 3599), 59 * 60);
    uint64_t cas = mp_item_cas(it);
    for (int i = 0; i < 4; i++)
        read_item(0, t + 600);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), t + 600), 0);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), t + 720), 120);
    ck_assert_uint_eq(mp_item_cas(it), cas); /* a hit leaves the CAS alone */
    uint64_t saturated = mp_item_stamp(it);
    ck_assert_uint_eq(mp_item_stamp_hit(saturated, t + 630), saturated);
    ck_assert_uint_ne(mp_item_stamp_hit(saturated, t + 660), saturated);
    /* the CAS keeps its 47 bits beside the access time */
    uint64_t big = (UINT64_C(1) << 47) - 1;
    ck_assert_uint_eq(mp_item_stamp_new(big, t) & MP_ITEM_CAS_MASK, big);
    ck_assert_uint_eq(mp_item_la_unit(mp_item_stamp_new(big, t + 60 * 4095)), (1000 + 4095) % 4096);
}
END_TEST

/* An item untouched for longer than the count can tell is moved up to 48 hours by the reclaim
 * pass, which also publishes its class's oldest access and the bytes its items take. */
START_TEST(test_reclaim_pass_keeps_old_access_times_and_measures_age_and_bytes)
{
    make(MIB);
    unsigned cls = item_class();
    uint32_t t = 60 * 1000;
    set_item(0, 0, t);
    set_item(1, 0, t);
    struct mp_item *it = linked_item(0, t);
    uint32_t later = t + 60 * 3000; /* 50 hours on */
    mp_lru_reclaim(&c->lru, cls, later, 1000);
    mp_lru_reclaim(&c->lru, cls, later, 1000);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), later), MP_ITEM_LA_KEEP * 60);
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(it), later + 60 * 1000), MP_ITEM_LA_KEEP * 60);
    ck_assert_uint_eq(items_class()->age, MP_ITEM_LA_KEEP * 60);
    ck_assert_uint_eq(items_class()->mem_requested, 2 * mp_item_total(7, VLEN, 0));
    ck_assert_uint_ge(items_class()->crawler_items_checked, 2);
    read_item(1, later);
    mp_lru_reclaim(&c->lru, cls, later + 120, 1000);
    mp_lru_reclaim(&c->lru, cls, later + 120, 1000);
    ck_assert_uint_eq(items_class()->age, MP_ITEM_LA_KEEP * 60); /* item 0 is still the oldest */
    ck_assert_uint_eq(mp_item_la_age(mp_item_stamp(linked_item(1, later)), later + 120), 120);
}
END_TEST

/* ---- memory limit and reassign ---------------------------------------------------------------- */

START_TEST(test_a_lower_memory_limit_gives_pages_back_and_a_higher_one_takes_them)
{
    make(4 * MIB);
    uint32_t perpage = items_class()->perpage;
    for (unsigned i = 0; i < 4 * perpage; i++)
        set_item(i, 0, T0);
    ck_assert_uint_eq(pages_in_use(c), 4);
    ck_assert_int_eq(mp_slab_set_limit(&c->slabs, 2 * MIB), 0);
    ck_assert_uint_eq(mp_slab_over_limit(&c->slabs), 2);
    ck_assert_uint_eq(mp_lru_shrink(&c->lru, T0, 16), 2);
    ck_assert_uint_eq(pages_in_use(c), 2);
    ck_assert_uint_eq(mp_slab_over_limit(&c->slabs), 0);
    for (unsigned i = 0; i < 4 * perpage; i++)
        set_item(i, 0, T0); /* evicts: no page beyond the limit */
    ck_assert_uint_eq(pages_in_use(c), 2);
    ck_assert_int_eq(mp_slab_set_limit(&c->slabs, 6 * MIB), 0);
    for (unsigned i = 0; i < 6 * perpage; i++)
        set_item(i, 0, T0);
    ck_assert_uint_eq(pages_in_use(c), 6);
    ck_assert_uint_eq(mp_slab_limit(&c->slabs), 6 * MIB);
    ck_assert_int_eq(mp_slab_set_limit(&c->slabs, (size_t)64 << 30), -ERANGE); /* past the arena's room */
    ck_assert_int_eq(mp_slab_set_limit(&c->slabs, 1000), -ERANGE);
}
END_TEST

/* A class's pages, read under its lock while the maintainer may change them. */
static uint32_t locked_pages(unsigned cls)
{
    pthread_mutex_lock(&class_at(c, cls)->lock);
    uint32_t n = class_at(c, cls)->npages;
    pthread_mutex_unlock(&class_at(c, cls)->lock);
    return n;
}

START_TEST(test_reassign_answers_as_memcached_and_the_page_moves)
{
    make(4 * MIB);
    unsigned cls = item_class();
    uint32_t perpage = items_class()->perpage;
    for (unsigned i = 0; i < 3 * perpage; i++)
        set_item(i, 0, T0);
    ck_assert_int_eq(mp_lru_reassign(&c->lru, 3, 3), MP_REASSIGN_SAME);
    ck_assert_int_eq(mp_lru_reassign(&c->lru, 5000, 1), MP_REASSIGN_BADCLASS);
    ck_assert_int_eq(mp_lru_reassign(&c->lru, 1, 2), MP_REASSIGN_NOSPARE);
    ck_assert_int_eq(mp_lru_reassign(&c->lru, 0, 2), MP_REASSIGN_NOSPARE); /* the pool is empty */
    ck_assert_int_eq(mp_lru_reassign(&c->lru, (int)cls, 1), MP_REASSIGN_OK);
    ck_assert_int_eq(mp_lru_reassign(&c->lru, (int)cls, 1), MP_REASSIGN_RUNNING); /* not done yet */
    struct mp_clock clk;
    mp_clock_setup(&clk, 1700000000, 5000);
    ck_assert_int_eq(mp_lru_maintainer_start(&c->lru, &clk, 0), 0);
    for (int i = 0; i < 200 && locked_pages(1) == 0; i++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    mp_lru_maintainer_stop(&c->lru);
    ck_assert_uint_eq(class_at(c, 1)->npages, 1);
    ck_assert_uint_eq(items_class()->npages, 2);
    ck_assert_uint_eq(items_class()->evicted_for_move, perpage);
    ck_assert_ptr_nonnull(mp_slab_alloc(&c->slabs, 1)); /* the page serves its new class */
}
END_TEST

/* ---- chains (chain.h) ------------------------------------------------------------------------ */

static void make_big(size_t mem_limit)
{
    test_cache_setup_item_max(c, mem_limit, 16 * MIB);
}

static const char *chain_key(unsigned i)
{
    return numbered('C', i);
}

static unsigned chunk_cls(void)
{
    return mp_slab_chunk_class(&c->slabs);
}

/* The item linked under key (no hit recorded). */
static struct mp_item *item_at(const char *k)
{
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, k, strlen(k), &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, k, strlen(k), T0, NULL);
    mp_cache_unlock(&lk);
    ck_assert_ptr_nonnull(it);
    return it;
}

/* The page that holds chunk `i` of key's chain. */
static uint32_t chunk_page(const char *k, uint32_t i)
{
    struct mp_item *head = item_at(k);
    ck_assert(mp_item_chained(head));
    return mp_slab_page_of(&c->slabs, mp_slab_item(&c->slabs, mp_chain_get(head, i)));
}

START_TEST(test_chains_are_evicted_whole_and_small_items_keep_their_pages)
{
    make_big(16 * MIB);
    for (unsigned i = 0; i < 2000; i++)
        set_item(i, 0, T0);
    uint32_t small_pages = items_class()->npages;
    /* 1 MiB values (two chunks and a small head) and values whose head fills a chunk of the
     * largest class itself (one chunk, and a head of the 24-byte header, the key, one handle and
     * the rest), four times what memory holds */
    size_t odd = mp_chain_cap(&c->slabs) + class_at(c, chunk_cls())->size - MP_ITEM_HDR - 7 - 4;
    for (unsigned i = 0; i < 64; i++) {
        size_t n = i % 2 ? odd : MIB;
        ck_assert_int_eq(set_pattern(c, chain_key(i), n, i, 0, T0), MP_STORED);
        assert_pattern(c, chain_key(i), n, i, T0);
        chains_whole(c);
    }
    ck_assert_uint_gt(class_at(c, chunk_cls())->evictions, 0);
    ck_assert(mp_item_chained(item_at(chain_key(63))));
    ck_assert_uint_eq(mp_slab_class_of(&c->slabs, item_at(chain_key(63))), chunk_cls());
    for (unsigned i = 0; i < 2000; i++)
        ck_assert(present(i, T0));
    ck_assert_uint_eq(items_class()->npages, small_pages);
    ck_assert_uint_eq(items_class()->evictions, 0);
    /* what is left: whole chains, each readable */
    unsigned left = 0;
    for (unsigned i = 0; i < 64; i++)
        if (key_present(c, chain_key(i), T0)) {
            assert_pattern(c, chain_key(i), i % 2 ? odd : MIB, i, T0);
            left++;
        }
    ck_assert_uint_ge(left, 6);
}
END_TEST

START_TEST(test_a_read_chain_outlives_unread_ones)
{
    make_big(8 * MIB);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_int_eq(set_pattern(c, chain_key(i), MIB, i, 0, T0), MP_STORED);
    assert_pattern(c, chain_key(0), MIB, 0, T0);
    assert_pattern(c, chain_key(0), MIB, 0, T0);
    for (unsigned i = 4; i < 12; i++) {
        ck_assert_int_eq(set_pattern(c, chain_key(i), MIB, i, 0, T0), MP_STORED);
        if (i % 3 == 0)
            assert_pattern(c, chain_key(0), MIB, 0, T0);
    }
    ck_assert_uint_gt(class_at(c, chunk_cls())->evictions, 0);
    ck_assert(key_present(c, chain_key(0), T0));
    ck_assert(!key_present(c, chain_key(1), T0));
    chains_whole(c);
}
END_TEST

START_TEST(test_page_evacuate_of_a_page_holding_a_chunk_evicts_the_whole_item)
{
    make_big(8 * MIB);
    for (unsigned i = 0; i < 100; i++)
        set_item(i, 0, T0);
    ck_assert_int_eq(set_pattern(c, chain_key(0), 3 * MIB, 0, 0, T0), MP_STORED);
    unsigned hcls = mp_slab_class_of(&c->slabs, item_at(chain_key(0)));
    uint32_t page = chunk_page(chain_key(0), 3);
    ck_assert_uint_eq(chains_whole(c), 6);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, chunk_cls(), page, T0), 0);
    ck_assert(!key_present(c, chain_key(0), T0));
    ck_assert_uint_eq(chains_whole(c), 0); /* the chunks on other pages went with it */
    ck_assert_uint_eq(used_in(c, chunk_cls()), 0);
    ck_assert_uint_eq(used_in(c, hcls), 0);
    ck_assert_uint_eq(class_at(c, chunk_cls())->evicted_for_move, 1);
    ck_assert_uint_eq(class_at(c, chunk_cls())->npages, 2);
    for (unsigned i = 0; i < 100; i++)
        ck_assert(present(i, T0));
}
END_TEST

START_TEST(test_page_evacuate_of_a_chains_head_page_frees_its_chunks)
{
    make_big(8 * MIB);
    ck_assert_int_eq(set_pattern(c, chain_key(0), 2 * MIB, 0, 0, T0), MP_STORED);
    struct mp_item *head = item_at(chain_key(0));
    unsigned hcls = mp_slab_class_of(&c->slabs, head);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, hcls, mp_slab_page_of(&c->slabs, head), T0), 0);
    ck_assert(!key_present(c, chain_key(0), T0));
    ck_assert_uint_eq(chains_whole(c), 0);
    ck_assert_uint_eq(used_in(c, chunk_cls()), 0);
    ck_assert_uint_eq(class_at(c, hcls)->npages, 0);
}
END_TEST

START_TEST(test_page_evacuate_refuses_a_page_with_a_chunk_of_a_pinned_chain)
{
    make_big(8 * MIB);
    ck_assert_int_eq(set_pattern(c, chain_key(0), 2 * MIB, 9, 0, T0), MP_STORED);
    uint32_t page = chunk_page(chain_key(0), 2);
    struct got held = {.take_ref = true};
    ck_assert_int_eq(get_key(c, chain_key(0), T0, &held, NULL), MP_OK);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, chunk_cls(), page, T0), -EBUSY);
    ck_assert_uint_eq(atomic_load(&c->slabs.page_class[page]), chunk_cls());
    assert_pattern(c, chain_key(0), 2 * MIB, 9, T0);
    mp_cache_item_release(c, &held.held);
    ck_assert_int_eq(mp_lru_page_evacuate(&c->lru, chunk_cls(), page, T0), 0);
    ck_assert(!key_present(c, chain_key(0), T0));
    ck_assert_uint_eq(chains_whole(c), 0);
}
END_TEST

START_TEST(test_reclaim_frees_expired_chains_and_passes_over_chunks)
{
    make_big(16 * MIB);
    ck_assert_int_eq(set_pattern(c, chain_key(0), 2 * MIB, 0, 0, T0), MP_STORED);
    ck_assert_int_eq(store_full(c, MP_SET, chain_key(1), NULL, 2 * MIB, 'e', 0, T0 + 10, 0, T0, NULL), MP_STORED);
    ck_assert_uint_eq(chains_whole(c), 8);
    /* the chunk class's pass sees only chunks: it frees nothing, whatever their items' expiry */
    ck_assert_uint_eq(mp_lru_reclaim(&c->lru, chunk_cls(), T0 + 20, 4096), 0);
    ck_assert_uint_eq(chains_whole(c), 8);
    size_t freed = 0;
    for (unsigned cls = 1; cls <= c->slabs.nclasses; cls++)
        freed += mp_lru_reclaim(&c->lru, cls, T0 + 20, 4096);
    ck_assert_uint_eq(freed, 1);
    ck_assert_uint_eq(chains_whole(c), 4);
    assert_pattern(c, chain_key(0), 2 * MIB, 0, T0 + 20);
    /* the pass counts a chain's bytes once: its head's part in its class, its chunks in theirs */
    for (unsigned round = 0; round < 2; round++)
        for (unsigned cls = 1; cls <= c->slabs.nclasses; cls++)
            mp_lru_reclaim(&c->lru, cls, T0 + 20, 4096);
    uint64_t bytes = 0;
    for (unsigned cls = 1; cls <= c->slabs.nclasses; cls++)
        bytes += class_at(c, cls)->mem_requested;
    ck_assert_uint_ge(bytes, 2 * MIB);
    ck_assert_uint_lt(bytes, 2 * MIB + 1024);
}
END_TEST

static Suite *lru_suite(void)
{
    Suite *s = suite_create("lru");
    TCase *tc = tcase_create("small queue and ghost");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_items_stored_while_the_class_has_room_go_to_the_main_queue);
    tcase_add_test(tc, test_first_eviction_takes_the_oldest_unread_item);
    tcase_add_test(tc, test_a_one_hit_wonder_does_not_evict_a_twice_read_item);
    tcase_add_test(tc, test_an_unread_item_is_evicted_from_the_small_queue_before_older_items);
    tcase_add_test(tc, test_an_item_read_in_the_small_queue_is_promoted_to_the_main_one);
    tcase_add_test(tc, test_a_key_evicted_and_requested_again_soon_is_readmitted_to_the_main_queue);
    tcase_add_test(tc, test_a_key_back_later_than_half_a_turn_of_the_hand_goes_to_the_small_queue);
    tcase_add_test(tc, test_the_main_hand_measures_its_turns_in_ghost_additions);
    tcase_add_test(tc, test_a_store_over_a_key_puts_it_in_the_main_queue);
    tcase_add_test(tc, test_a_deleted_small_items_entry_spares_the_item_that_took_its_chunk);
    tcase_add_test(tc, test_a_chunk_still_being_filled_keeps_its_place_in_the_small_queue);
    tcase_add_test(tc, test_an_item_brought_back_from_the_small_queue_rejoins_it);
    tcase_add_test(tc, test_a_class_of_few_chunks_has_no_small_queue_and_keeps_its_newest_items);
    suite_add_tcase(s, tc);

    tc = tcase_create("clock");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_read_items_survive_a_fill_that_evicts_unread_ones);
    tcase_add_test(tc, test_an_item_read_often_outlives_one_read_once);
    tcase_add_test(tc, test_unread_items_are_evicted_oldest_first_across_pages);
    tcase_add_test(tc, test_expired_items_are_reclaimed_before_live_ones_are_evicted);
    tcase_add_test(tc, test_eviction_counters_tell_unfetched_and_nonzero_exptime);
    suite_add_tcase(s, tc);

    tc = tcase_create("reclaim");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_reclaim_frees_expired_items_nobody_reads);
    tcase_add_test(tc, test_reclaim_looks_at_no_more_than_its_budget_and_resumes);
    tcase_add_test(tc, test_reclaim_frees_flushed_items);
    tcase_add_test(tc, test_reclaim_of_a_class_without_pages_does_nothing);
    tcase_add_test(tc, test_last_access_is_the_minute_of_the_store_or_latest_hit);
    tcase_add_test(tc, test_reclaim_pass_keeps_old_access_times_and_measures_age_and_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("pages");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_page_evacuate_empties_a_page_for_another_class);
    tcase_add_test(tc, test_page_evacuate_refuses_a_page_with_a_held_item);
    tcase_add_test(tc, test_page_evacuate_refuses_a_page_with_a_chunk_being_allocated);
    tcase_add_test(tc, test_page_evacuate_takes_back_chunks_other_threads_keep);
    tcase_add_test(tc, test_small_items_on_a_page_moved_away_leave_entries_the_hand_skips);
    tcase_add_test(tc, test_a_page_is_stolen_from_the_class_idle_longest);
    tcase_add_test(tc, test_a_page_is_stolen_from_a_class_that_can_spare_one_and_was_idle_longest);
    tcase_add_test(tc, test_automove_gives_a_page_from_a_quiet_class_to_an_evicting_one);
    tcase_add_test(tc, test_automove_without_evictions_moves_nothing);
    tcase_add_test(tc, test_automove_keeps_a_donors_last_page);
    tcase_add_test(tc, test_a_lower_memory_limit_gives_pages_back_and_a_higher_one_takes_them);
    tcase_add_test(tc, test_reassign_answers_as_memcached_and_the_page_moves);
    suite_add_tcase(s, tc);

    tc = tcase_create("chains");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_chains_are_evicted_whole_and_small_items_keep_their_pages);
    tcase_add_test(tc, test_a_read_chain_outlives_unread_ones);
    tcase_add_test(tc, test_page_evacuate_of_a_page_holding_a_chunk_evicts_the_whole_item);
    tcase_add_test(tc, test_page_evacuate_of_a_chains_head_page_frees_its_chunks);
    tcase_add_test(tc, test_page_evacuate_refuses_a_page_with_a_chunk_of_a_pinned_chain);
    tcase_add_test(tc, test_reclaim_frees_expired_chains_and_passes_over_chunks);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("held");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_held_item_is_never_evicted_or_freed_until_released);
    tcase_add_test(tc, test_class_whose_items_are_all_held_cannot_allocate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(lru_suite());
}

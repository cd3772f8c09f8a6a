/* table: see include/magpie/table.h */
#include "magpie/table.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Grow a stripe when it holds more than 1.5 items per bucket. */
#define LOAD_NUM 3
#define LOAD_DEN 2

/*
 * Bucket arrays. An outgrown array cannot be freed at once: an optimistic reader may still be
 * reading it, with no lock and no count the table could wait on. So its addresses stay mapped until
 * teardown and only its memory goes back (MADV_DONTNEED: the range still reads, as zeros, which
 * ends any walk in it).
 *
 * An array of a page or more has pages of its own (mmap). Smaller ones come from one reserved
 * region, each size from its own run of pages, so a page holds arrays of one size only; it is
 * given back when the last of them is outgrown. Stripes grow at about the same time (hashing
 * spreads keys evenly), so a page's arrays are outgrown together and little stays resident.
 */
#define BUCKETS_PAGE 4096u

struct mp_buckets_retired {
    mp_handle_t *buckets;
    size_t bytes;
};

static bool buckets_small(size_t bytes)
{
    return bytes < BUCKETS_PAGE;
}

static unsigned small_size_index(size_t bytes)
{
    return (unsigned)__builtin_ctzll(bytes);
}

/* Reserve the small arrays' region: every stripe may hold one array of each size below a page. */
static int small_setup(struct mp_table *t, uint32_t initial_buckets)
{
    size_t pages = 0;
    for (size_t bytes = (size_t)initial_buckets * sizeof(mp_handle_t); buckets_small(bytes); bytes *= 2) {
        unsigned k = small_size_index(bytes);
        t->small_next[k] = pages * BUCKETS_PAGE;
        pages += ((size_t)t->nstripes * bytes + BUCKETS_PAGE - 1) / BUCKETS_PAGE;
        t->small_end[k] = pages * BUCKETS_PAGE;
    }
    if (pages == 0)
        return 0;
    void *region =
        mmap(NULL, pages * BUCKETS_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED)
        return -ENOMEM;
    t->small_live = calloc(pages, sizeof(*t->small_live));
    if (!t->small_live) {
        munmap(region, pages * BUCKETS_PAGE);
        return -ENOMEM;
    }
    t->small = region;
    t->small_pages = pages;
    return 0;
}

static mp_handle_t *buckets_alloc(struct mp_table *t, uint32_t n)
{
    size_t bytes = (size_t)n * sizeof(mp_handle_t);
    if (!buckets_small(bytes)) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    unsigned k = small_size_index(bytes);
    mp_handle_t *b = NULL;
    pthread_mutex_lock(&t->buckets_lock);
    if (t->small && t->small_next[k] + bytes <= t->small_end[k]) {
        b = (mp_handle_t *)(t->small + t->small_next[k]); /* fresh: never handed out, so zero */
        t->small_live[t->small_next[k] / BUCKETS_PAGE]++;
        t->small_next[k] += bytes;
    }
    pthread_mutex_unlock(&t->buckets_lock);
    return b;
}

/* Retire an outgrown array (see above). If even the record of a big one cannot be had, it stays
 * mapped, its memory already given back: a leak of addresses only. */
static void buckets_retire(struct mp_table *t, mp_handle_t *b, uint32_t n)
{
    size_t bytes = (size_t)n * sizeof(mp_handle_t);
    pthread_mutex_lock(&t->buckets_lock);
    if (buckets_small(bytes)) {
        size_t page = (size_t)((char *)b - t->small) / BUCKETS_PAGE;
        if (--t->small_live[page] == 0)
            madvise(t->small + page * BUCKETS_PAGE, BUCKETS_PAGE, MADV_DONTNEED);
    } else {
        madvise(b, bytes, MADV_DONTNEED);
        if (t->nretired == t->retired_cap) {
            size_t cap = t->retired_cap ? t->retired_cap * 2 : 64;
            struct mp_buckets_retired *r = realloc(t->retired, cap * sizeof(*r));
            if (r) {
                t->retired = r;
                t->retired_cap = cap;
            }
        }
        if (t->nretired < t->retired_cap)
            t->retired[t->nretired++] = (struct mp_buckets_retired){b, bytes};
    }
    pthread_mutex_unlock(&t->buckets_lock);
}

/* At teardown: the small arrays go with their region. */
static void buckets_unmap_big(mp_handle_t *b, size_t bytes)
{
    if (!buckets_small(bytes))
        munmap(b, bytes);
}

uint64_t mp_table_hash(const struct mp_table *t, const char *key, size_t nkey)
{
    return XXH3_64bits_withSecret(key, nkey, t->secret, sizeof(t->secret));
}

/* The secret: random bytes from the kernel. getrandom() blocks only before the kernel's pool is
 * first seeded, early in boot; should it fail outright, the clocks and the table's address still
 * make the secret differ between runs, which is all that defeats keys chosen offline. */
static void make_secret(struct mp_table *t)
{
    size_t got = 0;
    while (got < sizeof(t->secret)) {
        ssize_t n = getrandom(t->secret + got, sizeof(t->secret) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == sizeof(t->secret))
        return;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t mix[4] = {(uint64_t)a.tv_sec, (uint64_t)a.tv_nsec ^ (uint64_t)getpid(), (uint64_t)b.tv_nsec,
                       (uint64_t)(uintptr_t)t};
    for (size_t i = 0; i < sizeof(t->secret); i += 8) {
        uint64_t v = XXH3_64bits_withSeed(mix, sizeof(mix), i);
        memcpy(t->secret + i, &v, sizeof(t->secret) - i < 8 ? sizeof(t->secret) - i : 8);
    }
}

int mp_table_setup(struct mp_table *t, struct mp_slabs *slabs, unsigned stripe_bits, uint32_t initial_buckets)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->buckets_lock, NULL);
    t->slabs = slabs;
    t->stripe_bits = stripe_bits;
    t->nstripes = 1u << stripe_bits;
    make_secret(t);
    t->stripes = aligned_alloc(64, t->nstripes * sizeof(struct mp_stripe));
    if (!t->stripes || small_setup(t, initial_buckets) != 0) {
        free(t->stripes);
        t->stripes = NULL;
        pthread_mutex_destroy(&t->buckets_lock);
        return -ENOMEM;
    }
    memset(t->stripes, 0, t->nstripes * sizeof(struct mp_stripe));
    for (unsigned i = 0; i < t->nstripes; i++) {
        struct mp_stripe *st = &t->stripes[i];
        mp_lock_init(&st->lock);
        st->buckets = buckets_alloc(t, initial_buckets);
        if (!st->buckets) {
            mp_table_teardown(t);
            return -ENOMEM;
        }
        st->mask = initial_buckets - 1;
    }
    return 0;
}

void mp_table_teardown(struct mp_table *t)
{
    if (!t->stripes)
        return;
    for (unsigned i = 0; i < t->nstripes; i++) {
        struct mp_stripe *st = &t->stripes[i];
        if (st->buckets)
            buckets_unmap_big(st->buckets, (size_t)(st->mask + 1) * sizeof(mp_handle_t));
        pthread_mutex_destroy(&st->lock);
    }
    free(t->stripes);
    t->stripes = NULL;
    for (size_t i = 0; i < t->nretired; i++)
        buckets_unmap_big(t->retired[i].buckets, t->retired[i].bytes);
    free(t->retired);
    if (t->small)
        munmap(t->small, t->small_pages * BUCKETS_PAGE);
    free(t->small_live);
    pthread_mutex_destroy(&t->buckets_lock);
    memset(t, 0, sizeof(*t));
}

/* The bucket index uses the hash's low bits; the stripe its high bits, so they are independent. */
static inline mp_handle_t *bucket(struct mp_stripe *st, uint64_t hash)
{
    return &st->buckets[hash & st->mask];
}

struct mp_item *mp_table_find_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, const char *key,
                                     size_t nkey)
{
    MP_ASSERT(mp_stripe_held(st));
    mp_handle_t h = *bucket(st, hash);
    for (int steps = 0; h && steps < MP_TABLE_CHAIN_MAX; steps++) {
        struct mp_item *it = mp_slab_item(t->slabs, h);
        if (it->nkey == nkey && memcmp(mp_item_key(it), key, nkey) == 0)
            return it;
        h = it->next;
    }
    return NULL;
}

struct mp_item *mp_table_find_optimistic(const struct mp_table *t, const struct mp_stripe *st, uint64_t hash,
                                         const char *key, size_t nkey, bool *torn)
{
    const struct mp_slabs *s = t->slabs;
    /* The mask before the array: an array is never smaller than the mask last stored with it. */
    uint32_t mask = __atomic_load_n(&st->mask, __ATOMIC_ACQUIRE);
    const mp_handle_t *buckets = __atomic_load_n(&st->buckets, __ATOMIC_ACQUIRE);
    mp_handle_t h = __atomic_load_n(&buckets[hash & mask], __ATOMIC_RELAXED);
    *torn = false;
    for (int steps = 0; h; steps++) {
        struct mp_item *it = mp_slab_item(s, h);
        if (steps == MP_TABLE_CHAIN_MAX || !mp_slab_contains(s, it, MP_ITEM_HDR + 4 + nkey)) {
            *torn = true;
            return NULL;
        }
        /* One load of each field: the item may change between two. */
        uint8_t n = __atomic_load_n(&it->nkey, __ATOMIC_RELAXED);
        uint8_t fl = atomic_load_explicit(&it->iflags, memory_order_relaxed);
        const char *k = mp_item_suffix(it) + (fl & MP_ITEM_CFLAGS ? 4 : 0);
        if (n == nkey && memcmp(k, key, nkey) == 0)
            return it;
        h = __atomic_load_n(&it->next, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Double the stripe's buckets, rehashing its chains. Only this stripe is held up, for a time
 * proportional to its own size (1/nstripes of the table). If memory for the bigger array cannot
 * be had, the stripe keeps its size: chains get longer, nothing fails. */
static void grow(struct mp_table *t, struct mp_stripe *st)
{
    uint32_t nold = st->mask + 1, nnew = nold * 2;
    mp_handle_t *nb = buckets_alloc(t, nnew);
    if (!nb)
        return;
    mp_stripe_begin_write(st);
    for (uint32_t i = 0; i < nold; i++) {
        mp_handle_t h = st->buckets[i];
        while (h) {
            struct mp_item *it = mp_slab_item(t->slabs, h);
            mp_handle_t next = it->next;
            uint64_t hash = mp_table_hash(t, mp_item_key(it), it->nkey);
            mp_handle_t *b = &nb[hash & (nnew - 1)];
            __atomic_store_n(&it->next, *b, __ATOMIC_RELAXED);
            *b = h;
            h = next;
        }
    }
    mp_handle_t *old = st->buckets;
    /* The array before the mask that covers it (find_optimistic loads them the other way). */
    __atomic_store_n(&st->buckets, nb, __ATOMIC_RELEASE);
    __atomic_store_n(&st->mask, nnew - 1, __ATOMIC_RELEASE);
    buckets_retire(t, old, nold);
    st->resizes++;
}

static void account(struct mp_stripe *st, const struct mp_item *it, int sign)
{
    uint32_t count = atomic_load_explicit(&st->count, memory_order_relaxed);
    uint64_t bytes = atomic_load_explicit(&st->bytes, memory_order_relaxed);
    uint64_t size = mp_item_total(it->nkey, it->nbytes, mp_item_flags(it));
    atomic_store_explicit(&st->count, count + (uint32_t)sign, memory_order_relaxed);
    atomic_store_explicit(&st->bytes, sign > 0 ? bytes + size : bytes - size, memory_order_relaxed);
}

/* Links in the chain that starts at *b, up to the bound. */
static int chain_length(struct mp_table *t, mp_handle_t h)
{
    int n = 0;
    for (; h && n < MP_TABLE_CHAIN_MAX; n++)
        h = mp_slab_item(t->slabs, h)->next;
    return n;
}

bool mp_table_link_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it)
{
    MP_ASSERT(mp_stripe_held(st));
    /* Grow first, so the chain the item joins is the one it will stay in. */
    if ((uint64_t)(atomic_load_explicit(&st->count, memory_order_relaxed) + 1) * LOAD_DEN >
        (uint64_t)(st->mask + 1) * LOAD_NUM)
        grow(t, st);
    mp_handle_t *b = bucket(st, hash);
    if (chain_length(t, *b) >= MP_TABLE_CHAIN_MAX)
        return false;
    mp_stripe_begin_write(st);
    it->next = *b;
    __atomic_store_n(b, mp_slab_handle(t->slabs, it), __ATOMIC_RELEASE); /* optimistic readers */
    /* Release: whoever sees LINKED (the CLOCK hand, without the stripe lock) sees the key. */
    atomic_fetch_or_explicit(&it->iflags, MP_ITEM_LINKED, memory_order_release);
    account(st, it, +1);
    return true;
}

/* The link that points at `it`. */
static mp_handle_t *find_link(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it)
{
    MP_ASSERT(mp_stripe_held(st));
    mp_handle_t target = mp_slab_handle(t->slabs, it);
    mp_handle_t *link = bucket(st, hash);
    for (int steps = 0; *link && *link != target; steps++) {
        if (steps == MP_TABLE_CHAIN_MAX)
            return NULL;
        link = &mp_slab_item(t->slabs, *link)->next;
    }
    return *link ? link : NULL;
}

static bool drop_table_ref(struct mp_stripe *st, struct mp_item *it)
{
    account(st, it, -1);
    atomic_fetch_and_explicit(&it->iflags, (uint8_t)~MP_ITEM_LINKED, memory_order_release);
    return atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1;
}

bool mp_table_unlink_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it)
{
    mp_handle_t *link = find_link(t, st, hash, it);
    if (!link)
        return false;
    mp_stripe_begin_write(st);
    __atomic_store_n(link, it->next, __ATOMIC_RELAXED);
    return drop_table_ref(st, it);
}

bool mp_table_replace_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *old,
                             struct mp_item *repl)
{
    mp_handle_t *link = find_link(t, st, hash, old);
    if (!link)
        return false;
    mp_stripe_begin_write(st);
    repl->next = old->next;
    __atomic_store_n(link, mp_slab_handle(t->slabs, repl), __ATOMIC_RELEASE); /* optimistic readers */
    atomic_fetch_or_explicit(&repl->iflags, MP_ITEM_LINKED, memory_order_release);
    account(st, repl, +1);
    return drop_table_ref(st, old);
}

void mp_table_overwrite_locked(struct mp_stripe *st, struct mp_item *it, const struct mp_item *src, uint64_t stamp)
{
    MP_ASSERT(mp_stripe_held(st));
    /* A seqlock of one item, its stamp the count (table.h): 0 first, the new CAS last. The fresh
     * stamp has no hits and is not fetched: a new value, as memcached counts it. */
    mp_item_stamp_fresh(it, 0, memory_order_relaxed);
    mp_fence(memory_order_release); /* the 0 is seen before any change */
    account(st, it, -1);
    mp_item_overwrite(it, src);
    account(st, it, +1);
    mp_item_stamp_fresh(it, stamp, memory_order_release);
}

void mp_table_visit_locked(struct mp_table *t, struct mp_stripe *st, void (*fn)(void *ctx, struct mp_item *it),
                           void *ctx)
{
    MP_ASSERT(mp_stripe_held(st));
    for (uint64_t b = 0; b <= st->mask; b++) {
        mp_handle_t h = st->buckets[b];
        for (int steps = 0; h && steps < MP_TABLE_CHAIN_MAX; steps++) {
            struct mp_item *it = mp_slab_item(t->slabs, h);
            h = it->next;
            fn(ctx, it);
        }
    }
}

uint64_t mp_table_count(const struct mp_table *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < t->nstripes; i++)
        n += atomic_load_explicit(&t->stripes[i].count, memory_order_relaxed);
    return n;
}

uint64_t mp_table_bytes(const struct mp_table *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < t->nstripes; i++)
        n += atomic_load_explicit(&t->stripes[i].bytes, memory_order_relaxed);
    return n;
}

uint64_t mp_table_overhead(const struct mp_table *t)
{
    uint64_t n = (uint64_t)t->nstripes * sizeof(struct mp_stripe);
    for (unsigned i = 0; i < t->nstripes; i++)
        n += ((uint64_t)__atomic_load_n(&t->stripes[i].mask, __ATOMIC_RELAXED) + 1) * sizeof(mp_handle_t);
    return n;
}

/* table: see include/magpie/table.h */
#include "magpie/table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Grow a stripe when it holds more than 1.5 items per bucket. */
#define LOAD_NUM 3
#define LOAD_DEN 2

uint64_t mp_table_hash(const char *key, size_t nkey)
{
    return XXH3_64bits(key, nkey);
}

int mp_table_setup(struct mp_table *t, struct mp_slabs *slabs, unsigned stripe_bits, uint32_t initial_buckets)
{
    memset(t, 0, sizeof(*t));
    t->slabs = slabs;
    t->stripe_bits = stripe_bits;
    t->nstripes = 1u << stripe_bits;
    t->stripes = aligned_alloc(64, t->nstripes * sizeof(struct mp_stripe));
    if (!t->stripes)
        return -ENOMEM;
    memset(t->stripes, 0, t->nstripes * sizeof(struct mp_stripe));
    for (unsigned i = 0; i < t->nstripes; i++) {
        struct mp_stripe *st = &t->stripes[i];
        mp_lock_init(&st->lock);
        st->buckets = calloc(initial_buckets, sizeof(mp_handle_t));
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
        free(t->stripes[i].buckets);
        pthread_mutex_destroy(&t->stripes[i].lock);
    }
    free(t->stripes);
    t->stripes = NULL;
}

/* The bucket index uses the hash's low bits; the stripe its high bits, so they are independent. */
static inline mp_handle_t *bucket(struct mp_stripe *st, uint64_t hash)
{
    return &st->buckets[hash & st->mask];
}

struct mp_item *mp_table_find_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, const char *key,
                                     size_t nkey)
{
    for (mp_handle_t h = *bucket(st, hash); h;) {
        struct mp_item *it = mp_slab_item(t->slabs, h);
        if (it->nkey == nkey && memcmp(mp_item_key(it), key, nkey) == 0)
            return it;
        h = it->next;
    }
    return NULL;
}

/* Double the stripe's buckets, rehashing its chains. Only this stripe is held up, for a time
 * proportional to its own size (1/nstripes of the table). If memory for the bigger array cannot
 * be had, the stripe keeps its size: chains get longer, nothing fails. */
static void grow(struct mp_table *t, struct mp_stripe *st)
{
    uint32_t nold = st->mask + 1, nnew = nold * 2;
    mp_handle_t *nb = calloc(nnew, sizeof(mp_handle_t));
    if (!nb)
        return;
    for (uint32_t i = 0; i < nold; i++) {
        mp_handle_t h = st->buckets[i];
        while (h) {
            struct mp_item *it = mp_slab_item(t->slabs, h);
            mp_handle_t next = it->next;
            uint64_t hash = mp_table_hash(mp_item_key(it), it->nkey);
            mp_handle_t *b = &nb[hash & (nnew - 1)];
            it->next = *b;
            *b = h;
            h = next;
        }
    }
    free(st->buckets);
    st->buckets = nb;
    st->mask = nnew - 1;
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

void mp_table_link_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it)
{
    mp_handle_t *b = bucket(st, hash);
    it->next = *b;
    *b = mp_slab_handle(t->slabs, it);
    /* Release: whoever sees LINKED (the CLOCK hand, without the stripe lock) sees the key. */
    atomic_fetch_or_explicit(&it->iflags, MP_ITEM_LINKED, memory_order_release);
    account(st, it, +1);
    if ((uint64_t)atomic_load_explicit(&st->count, memory_order_relaxed) * LOAD_DEN >
        (uint64_t)(st->mask + 1) * LOAD_NUM)
        grow(t, st);
}

/* The link that points at `it`. */
static mp_handle_t *find_link(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *it)
{
    mp_handle_t target = mp_slab_handle(t->slabs, it);
    mp_handle_t *link = bucket(st, hash);
    while (*link && *link != target)
        link = &mp_slab_item(t->slabs, *link)->next;
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
    *link = it->next;
    return drop_table_ref(st, it);
}

bool mp_table_replace_locked(struct mp_table *t, struct mp_stripe *st, uint64_t hash, struct mp_item *old,
                             struct mp_item *repl)
{
    mp_handle_t *link = find_link(t, st, hash, old);
    if (!link)
        return false;
    repl->next = old->next;
    *link = mp_slab_handle(t->slabs, repl);
    atomic_fetch_or_explicit(&repl->iflags, MP_ITEM_LINKED, memory_order_release);
    account(st, repl, +1);
    return drop_table_ref(st, old);
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
    for (unsigned i = 0; i < t->nstripes; i++) {
        struct mp_stripe *st = &t->stripes[i];
        pthread_mutex_lock(&st->lock);
        n += (uint64_t)(st->mask + 1) * sizeof(mp_handle_t);
        pthread_mutex_unlock(&st->lock);
    }
    return n;
}

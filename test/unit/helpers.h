/*
 * helpers: what the unit suites share. A runner that prints Check's summary and turns failures into
 * the exit status, and for the engine's suites (cache, lru, stats) a small cache with injected time
 * and one-line set/get helpers.
 *
 * Everything here is static inline, so a suite that uses none of the engine helpers (num, proto,
 * clock) links none of the engine.
 */
#ifndef MAGPIE_TEST_HELPERS_H
#define MAGPIE_TEST_HELPERS_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "magpie/cache.h"
#include "magpie/chain.h"

#define MIB ((size_t)1024 * 1024)

/* Relative time the engine tests start at: the clock's "2", well clear of 0 (never) and 1. */
#define T0 ((uint32_t)100)

/* Run a suite with Check's normal output ("100%: Checks: N, Failures: 0, Errors: 0"); the process
 * exit status is 0 only when every test passed. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

/* A string literal as (pointer, length), for APIs that take a token and its length. */
#define LIT(s) (s), (sizeof(s) - 1)

/* ---- engine helpers ------------------------------------------------------------------------ */

/* A cache of mem_limit bytes with 1 MiB pages, Magpie's default classes and a few stripes. */
static inline struct mp_cache_config test_cache_config(size_t mem_limit)
{
    return (struct mp_cache_config){.mem_limit = mem_limit,
                                    .item_max = MIB,
                                    .min_chunk = 32,
                                    .factor = 1.04,
                                    .stripe_bits = 4,
                                    .initial_buckets = 16};
}

static inline void test_cache_setup(struct mp_cache *c, const struct mp_cache_config *cfg)
{
    char err[256] = "";
    int rc = mp_cache_setup(c, cfg, err, sizeof(err));
    ck_assert_msg(rc == 0, "mp_cache_setup: %d %s", rc, err);
}

static inline size_t key_of(char *buf, size_t cap, const char *prefix, unsigned i)
{
    return (size_t)snprintf(buf, cap, "%s%u", prefix, i);
}

/* Store `nbytes` of value (copied from `value`, or filled with `fill` when value is NULL) under
 * key with op, client flags and an item exptime (relative, as mp_clock_exptime returns it).
 * Returns the engine's result; an allocation failure returns MP_TOO_LARGE or MP_NOMEM. */
static inline enum mp_result store_full(struct mp_cache *c, enum mp_store_op op, const char *key, const char *value,
                                        size_t nbytes, char fill, uint32_t flags, uint32_t exptime, uint64_t cas,
                                        uint32_t now, uint64_t *cas_out)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(c, key, strlen(key), flags, exptime, (uint32_t)nbytes, now, &res);
    if (cas_out)
        *cas_out = 0;
    if (!it)
        return res;
    if (value) {
        mp_chain_write(&c->slabs, it, 0, value, nbytes);
    } else {
        size_t len;
        for (size_t off = 0; off < nbytes; off += len) {
            char *p = mp_chain_span(&c->slabs, it, off, &len);
            memset(p, fill, len);
        }
    }
    struct mp_store st = {.op = op, .cas = cas};
    res = mp_cache_store(c, &it, &st, now);
    ck_assert_ptr_null(it); /* the store consumed the caller's reference */
    if (cas_out)
        *cas_out = st.cas_out;
    return res;
}

static inline enum mp_result store_str(struct mp_cache *c, enum mp_store_op op, const char *key, const char *value,
                                       uint32_t exptime, uint32_t now)
{
    return store_full(c, op, key, value, strlen(value), 0, 0, exptime, 0, now, NULL);
}

static inline enum mp_result set_str(struct mp_cache *c, const char *key, const char *value, uint32_t exptime,
                                     uint32_t now)
{
    return store_str(c, MP_SET, key, value, exptime, now);
}

/* A set of nbytes of `fill`. */
static inline enum mp_result set_fill(struct mp_cache *c, const char *key, size_t nbytes, char fill, uint32_t exptime,
                                      uint32_t now)
{
    return store_full(c, MP_SET, key, NULL, nbytes, fill, 0, exptime, 0, now, NULL);
}

/* Byte i of the value pattern_value() makes from a seed: it changes with the offset, so a chunk of
 * a chained value read or written out of place shows. */
static inline char pattern_byte(unsigned seed, size_t i)
{
    return (char)('a' + (seed + i * 7 + i / 4093) % 26);
}

/* A sum of a value's bytes weighted by their offsets (what got.sum holds). */
static inline uint64_t pattern_sum(unsigned seed, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (uint64_t)(unsigned char)pattern_byte(seed, i) * (i + 1);
    return sum;
}

/* A set of nbytes of the pattern of `seed`, with client flags. */
static inline enum mp_result set_pattern(struct mp_cache *c, const char *key, size_t nbytes, unsigned seed,
                                         uint32_t flags, uint32_t now)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(c, key, strlen(key), flags, 0, (uint32_t)nbytes, now, &res);
    if (!it)
        return res;
    size_t len;
    for (size_t off = 0; off < nbytes; off += len) {
        char *p = mp_chain_span(&c->slabs, it, off, &len);
        for (size_t i = 0; i < len; i++)
            p[i] = pattern_byte(seed, off + i);
    }
    struct mp_store st = {.op = MP_SET};
    return mp_cache_store(c, &it, &st, now);
}

/* What a get saw. */
struct got {
    int hits;
    char value[512]; /* the first bytes of the value, NUL-terminated */
    uint64_t sum;    /* of the whole value, as pattern_sum() weighs it */
    uint32_t nbytes;
    uint32_t flags;
    uint32_t exptime;
    uint64_t cas;
    bool take_ref;          /* ask the hit callback to keep a reference */
    struct mp_item *held;   /* the item, when take_ref */
    struct mp_cache *cache; /* set by get_key: where a chained value's chunks are */
};

static inline void got_hit(void *ctx, const struct mp_hit *hit)
{
    struct got *g = ctx;
    g->hits++;
    g->nbytes = hit->nbytes;
    size_t n = hit->nbytes < sizeof(g->value) - 1 ? hit->nbytes : sizeof(g->value) - 1;
    g->sum = 0;
    if (hit->value) {
        memcpy(g->value, hit->value, n);
        for (size_t i = 0; i < hit->nbytes; i++)
            g->sum += (uint64_t)(unsigned char)hit->value[i] * (i + 1);
    } else { /* a chained value, under the stripe lock: walked where it lives (chain.h) */
        mp_chain_read(&g->cache->slabs, hit->it, 0, g->value, n);
        size_t len;
        for (size_t off = 0; off < hit->nbytes; off += len) {
            const char *p = mp_chain_span(&g->cache->slabs, hit->it, off, &len);
            for (size_t i = 0; i < len; i++)
                g->sum += (uint64_t)(unsigned char)p[i] * (off + i + 1);
        }
    }
    g->value[n] = '\0';
    g->flags = hit->flags;
    g->exptime = hit->exptime;
    g->cas = hit->cas;
    if (g->take_ref) {
        mp_cache_item_ref(hit->it);
        g->held = hit->it;
    }
}

/* An optimistic read that did not hold: the hit is not counted. */
static inline void got_undo(void *ctx)
{
    ((struct got *)ctx)->hits--;
}

/* A get; one that keeps a reference reads under the lock, as only there may it take one. */
static inline enum mp_result get_key(struct mp_cache *c, const char *key, uint32_t now, struct got *g,
                                     enum mp_miss *miss)
{
    const struct mp_cache_reader rd = {got_hit, got_undo, g, g->take_ref ? 0 : UINT32_MAX};
    g->cache = c;
    return mp_cache_get(c, key, strlen(key), now, &rd, miss);
}

/* A get that must hit; returns what it saw. */
static inline struct got get_hit(struct mp_cache *c, const char *key, uint32_t now)
{
    struct got g = {0};
    enum mp_result r = get_key(c, key, now, &g, NULL);
    ck_assert_msg(r == MP_OK, "get %s: expected a hit, got %d", key, r);
    ck_assert_int_eq(g.hits, 1);
    return g;
}

/* Whether a key is there, without counting as a hit for the CLOCK's sake: use sparingly in the
 * eviction tests, since a get marks the item read. Looks under the stripe lock. */
static inline bool key_present(struct mp_cache *c, const char *key, uint32_t now)
{
    struct mp_cache_lock lk;
    mp_cache_lock_key(c, key, strlen(key), &lk);
    struct mp_item *it = mp_cache_find_locked(c, &lk, key, strlen(key), now, NULL);
    mp_cache_unlock(&lk);
    return it != NULL;
}

/* The slab class an item of this shape lands in. */
static inline unsigned class_of_shape(struct mp_cache *c, size_t nkey, size_t nbytes)
{
    unsigned cls = mp_slab_class_for(&c->slabs, mp_item_total(nkey, nbytes, 0));
    ck_assert_uint_ne(cls, 0);
    return cls;
}

static inline struct mp_slab_class *class_at(struct mp_cache *c, unsigned cls)
{
    return &c->slabs.classes[cls];
}

/* Chunks of a class holding items (stats' used_chunks): not those free in threads' caches. */
static inline uint64_t slab_used(struct mp_slabs *s, unsigned cls)
{
    pthread_mutex_lock(&s->classes[cls].lock);
    uint64_t n = mp_slab_used_locked(s, cls);
    pthread_mutex_unlock(&s->classes[cls].lock);
    return n;
}

static inline uint64_t used_in(struct mp_cache *c, unsigned cls)
{
    return slab_used(&c->slabs, cls);
}

/* Pages handed to all classes: never more than the arena holds. */
static inline uint32_t pages_in_use(struct mp_cache *c)
{
    uint32_t n = 0;
    for (unsigned i = 1; i <= c->slabs.nclasses; i++)
        n += c->slabs.classes[i].npages;
    return n;
}

static inline uint64_t total_evictions(struct mp_cache *c)
{
    uint64_t n = 0;
    for (unsigned i = 1; i <= c->slabs.nclasses; i++)
        n += c->slabs.classes[i].evictions;
    return n;
}

/* Items gone because their page moved to another class (counted apart from evictions). */
static inline uint64_t total_evicted_for_move(struct mp_cache *c)
{
    uint64_t n = 0;
    for (unsigned i = 1; i <= c->slabs.nclasses; i++)
        n += c->slabs.classes[i].evicted_for_move;
    return n;
}

/* ---- chains (chain.h) ------------------------------------------------------------------------ */

/* A cache like test_cache_config's whose -I is item_max: values over the largest class (half a
 * page) are chains. */
static inline void test_cache_setup_item_max(struct mp_cache *c, size_t mem_limit, size_t item_max)
{
    struct mp_cache_config cfg = test_cache_config(mem_limit);
    cfg.item_max = item_max;
    test_cache_setup(c, &cfg);
}

/* Check every chunk of every class: each one marked MP_ITEM_CHUNK belongs to a chained item whose
 * chain names it at its place, and the chunk class counts exactly those. Returns how many chain
 * chunks there are. Under each class lock in turn (the lifetime rule of chain.h). */
static inline uint64_t chains_whole(struct mp_cache *c)
{
    struct mp_slabs *s = &c->slabs;
    uint64_t total = 0;
    for (unsigned cls = 1; cls <= s->nclasses; cls++) {
        struct mp_slab_class *sc = &s->classes[cls];
        pthread_mutex_lock(&sc->lock);
        uint64_t marked = 0;
        for (uint32_t page = sc->first_page; page != MP_SLAB_NONE; page = s->page_next[page]) {
            uint32_t n = page == sc->bump_page ? sc->bump_next : sc->perpage;
            for (uint32_t i = 0; i < n; i++) {
                struct mp_item *it = (struct mp_item *)(mp_slab_page_addr(s, page) + (size_t)i * sc->size);
                if (!mp_item_has(it, MP_ITEM_CHUNK))
                    continue;
                marked++;
                ck_assert_uint_eq(cls, mp_slab_chunk_class(s));
                ck_assert(!mp_item_linked(it));
                struct mp_item *head = mp_chain_head_of(s, it);
                ck_assert_msg(mp_item_chained(head), "a chunk whose head is not a chained item");
                ck_assert_uint_lt(mp_chain_index(it), mp_chain_chunks(s, head));
                ck_assert_uint_eq(mp_chain_get(head, mp_chain_index(it)), mp_slab_handle(s, it));
            }
        }
        ck_assert_uint_eq(marked, sc->chunks);
        total += marked;
        pthread_mutex_unlock(&sc->lock);
    }
    return total;
}

/* A get of a value set_pattern(seed) made: it must be all there, byte for byte. */
static inline void assert_pattern(struct mp_cache *c, const char *key, size_t nbytes, unsigned seed, uint32_t now)
{
    struct got g = get_hit(c, key, now);
    ck_assert_uint_eq(g.nbytes, nbytes);
    ck_assert_msg(g.sum == pattern_sum(seed, nbytes), "%s: the value came back different", key);
    for (size_t i = 0; i < nbytes && i < sizeof(g.value) - 1; i++)
        ck_assert_int_eq(g.value[i], pattern_byte(seed, i));
}

#endif

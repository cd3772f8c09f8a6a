/*
 * engine_stress: many threads on one engine, through the real lock-free read path, checking every
 * value they read.
 *
 * Writers store self-describing values: each carries its key's number, its own length, its client
 * flags, a version (writer and sequence) and a checksum of the rest, so a reader can tell a whole
 * value of the key it asked for from a torn one, another key's, or memory reused by anything else.
 * Every CAS a store returns is recorded with the version it stored, so a reader that sees that CAS
 * with another version has caught a value/CAS mismatch.
 *
 * The mix is chosen to walk every path the optimistic read races against: sets that write in
 * place (small values, same layout) with changing lengths, sets across size classes, deletes,
 * values just under and over the copy limit (over it, readers pin the item and check it later,
 * as a connection writing it from where it lives does), short TTLs that the maintainer reclaims,
 * a memory limit that forces eviction, automove and explicit page moves between classes (which
 * wait for readers' grace periods), stripes that double as each round fills a fresh cache, and
 * now and then a value over the largest class, a chain of chunks (chain.h) that readers pin and
 * walk, and that eviction, reclaim and page moves must take whole.
 *
 *   engine_stress [SECONDS]      default 15, or MAGPIE_STRESS_SECONDS
 *
 * Prints what it did and the line "engine_stress: N reads checked, B bad values, M CAS
 * mismatches: PASS|FAIL"; exits 0 only on PASS, which also needs every path above to have run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "magpie/cache.h"
#include "magpie/chain.h"
#include "magpie/clock.h"

#define NKEYS 16000 /* about twice what fits: the cache evicts, and most reads hit */
#define WRITERS 2
#define READERS 3
#define ROUNDS 3
#define COPY_MAX 16384 /* as a connection reads: larger values are pinned */
#define PINS_KEPT 8    /* pinned values a reader holds before it checks and lets them go */
#define MAGIC 0x4d505354u
#define HDR 32            /* magic, key, length, flags, version, checksum */
#define CHAIN_MIN 600000  /* chained values: over the largest class (half a page) ... */
#define CHAIN_MAX 2400000 /* ... to a few pages; -I is 4 MiB */
#define CHAIN_ONE_IN 2000 /* of the sets */

/* What a CAS was stored with: cas << 20 | 20 bits of the version's hash, in a direct-mapped table. */
#define CASMAP_BITS 22
static _Atomic uint64_t casmap[1u << CASMAP_BITS];

static struct mp_cache cache;
static struct mp_clock clk;
static _Atomic bool stop;

struct totals {
    _Atomic uint64_t reads, hits, optimistic, pinned, sets, in_class_sets, chained_sets, chained_reads, deletes, nomem,
        bad, mismatches;
};
static struct totals tot;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t key_text(char *buf, uint32_t id)
{
    return (size_t)snprintf(buf, 32, "stress:%" PRIu32, id);
}

/* Over 8-byte words, and the tail byte by byte: every byte counts. */
static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603), w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * UINT64_C(1099511628211) + (h >> 29);
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(1099511628211);
    return h;
}

static void fill_value(unsigned char *v, uint32_t len, uint32_t id, uint32_t flags, uint64_t version)
{
    uint64_t s = mix(version) | 1;
    uint32_t i = HDR;
    for (; i + 8 <= len; i += 8) {
        uint64_t w = rnd(&s);
        memcpy(v + i, &w, 8);
    }
    for (; i < len; i++)
        v[i] = (unsigned char)rnd(&s);
    uint32_t magic = MAGIC;
    uint64_t sum = checksum(v + HDR, len - HDR);
    memcpy(v, &magic, 4);
    memcpy(v + 4, &id, 4);
    memcpy(v + 8, &len, 4);
    memcpy(v + 12, &flags, 4);
    memcpy(v + 16, &version, 8);
    memcpy(v + 24, &sum, 8);
}

/* Whether v (n bytes, client flags, CAS) is a whole value of key id; counts what is wrong. */
static bool check_value(const unsigned char *v, uint32_t n, uint32_t flags, uint64_t cas, uint32_t id)
{
    uint32_t magic, vid, len, vflags;
    uint64_t version, sum;
    if (n < HDR)
        return false;
    memcpy(&magic, v, 4);
    memcpy(&vid, v + 4, 4);
    memcpy(&len, v + 8, 4);
    memcpy(&vflags, v + 12, 4);
    memcpy(&version, v + 16, 8);
    memcpy(&sum, v + 24, 8);
    if (magic != MAGIC || vid != id || len != n || vflags != flags || sum != checksum(v + HDR, n - HDR))
        return false;
    uint64_t slot = atomic_load_explicit(&casmap[cas & ((1u << CASMAP_BITS) - 1)], memory_order_acquire);
    if (cas == 0 || ((slot >> 20) == (cas & ((UINT64_C(1) << 44) - 1)) && (slot & 0xfffff) != (mix(version) & 0xfffff)))
        atomic_fetch_add(&tot.mismatches, 1);
    return true;
}

/* ---- writers ------------------------------------------------------------------------------------ */

static uint32_t pick_len(uint64_t *s)
{
    if (rnd(s) % CHAIN_ONE_IN == 0)
        return CHAIN_MIN + (uint32_t)(rnd(s) % (CHAIN_MAX - CHAIN_MIN)); /* a chain */
    uint64_t r = rnd(s) % 1000;
    if (r < 600)
        return HDR + (uint32_t)(rnd(s) % 200); /* small: several lengths in one class, written in place */
    if (r < 935)
        return 300 + (uint32_t)(rnd(s) % 3000); /* across classes */
    if (r < 995)
        return COPY_MAX - 48 + (uint32_t)(rnd(s) % 96); /* either side of the copy limit */
    return 20000 + (uint32_t)(rnd(s) % 120000);         /* large, pinned by readers */
}

struct writer {
    pthread_t thread;
    unsigned id;
    unsigned char *buf;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t s = mix(w->id + 1000) | 1, seq = 0;
    char key[32];
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint32_t id = (uint32_t)(rnd(&s) % NKEYS);
        size_t nkey = key_text(key, id);
        uint32_t now = mp_clock_now(&clk);
        if (rnd(&s) % 10 == 0) {
            mp_cache_delete(&cache, key, nkey, now);
            atomic_fetch_add_explicit(&tot.deletes, 1, memory_order_relaxed);
            continue;
        }
        uint32_t len = pick_len(&s);
        uint32_t flags = rnd(&s) % 3 ? (uint32_t)(rnd(&s) % 100000) + 1 : 0;
        uint32_t exptime = rnd(&s) % 8 == 0 ? now + 1 + (uint32_t)(rnd(&s) % 3) : 0;
        uint64_t version = ((uint64_t)w->id << 48) | ++seq;
        enum mp_result res;
        struct mp_item *it = mp_cache_alloc(&cache, key, nkey, flags, exptime, len, now, &res);
        if (!it) {
            atomic_fetch_add_explicit(&tot.nomem, 1, memory_order_relaxed);
            continue;
        }
        bool chained = mp_item_chained(it);
        if (chained) { /* written a chunk at a time, from a whole value made aside */
            fill_value(w->buf, len, id, flags, version);
            mp_chain_write(&cache.slabs, it, 0, (const char *)w->buf, len);
        } else {
            fill_value((unsigned char *)mp_item_value(it), len, id, flags, version);
        }
        struct mp_store st = {.op = MP_SET};
        if (mp_cache_store(&cache, &it, &st, now) == MP_STORED) {
            uint64_t cas = st.cas_out;
            atomic_store_explicit(&casmap[cas & ((1u << CASMAP_BITS) - 1)],
                                  ((cas & ((UINT64_C(1) << 44) - 1)) << 20) | (mix(version) & 0xfffff),
                                  memory_order_release);
            atomic_fetch_add_explicit(&tot.sets, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&tot.in_class_sets, len < HDR + 200, memory_order_relaxed);
            atomic_fetch_add_explicit(&tot.chained_sets, chained, memory_order_relaxed);
        }
    }
    return NULL;
}

/* ---- readers ------------------------------------------------------------------------------------ */

struct pin {
    struct mp_item *it;
    const unsigned char *value;
    uint32_t nbytes, flags, id;
    uint64_t cas;
};

struct reader {
    pthread_t thread;
    unsigned id;
    /* the hit being read */
    uint32_t want;
    bool got, optimistic, pinned_now;
    unsigned char *copy;
    unsigned char *whole; /* a pinned chain's value, read out of its chunks to be checked */
    uint32_t nbytes, flags;
    uint64_t cas;
    struct pin pins[PINS_KEPT];
    unsigned npins;
};

static void reader_hit(void *ctx, const struct mp_hit *h)
{
    struct reader *r = ctx;
    r->got = true;
    r->optimistic = h->it == NULL;
    r->nbytes = h->nbytes;
    r->flags = h->flags;
    r->cas = h->cas;
    if (h->nbytes <= COPY_MAX || !h->it) {
        memcpy(r->copy, h->value, h->nbytes < COPY_MAX ? h->nbytes : COPY_MAX);
        r->pinned_now = false;
        return;
    }
    mp_cache_item_ref(h->it); /* under the stripe lock, as the engine allows */
    r->pins[r->npins] = (struct pin){h->it, (const unsigned char *)h->value, h->nbytes, h->flags, r->want, h->cas};
    r->pinned_now = true;
}

static void reader_undo(void *ctx)
{
    ((struct reader *)ctx)->got = false;
}

static void check_pin(struct reader *r, struct pin *p)
{
    const unsigned char *v = p->value;
    if (!v) { /* a chain (chain.h): its chunks stay put while it is pinned */
        mp_chain_read(&cache.slabs, p->it, 0, (char *)r->whole, p->nbytes);
        v = r->whole;
        atomic_fetch_add_explicit(&tot.chained_reads, 1, memory_order_relaxed);
    }
    if (!check_value(v, p->nbytes, p->flags, p->cas, p->id))
        atomic_fetch_add(&tot.bad, 1);
    mp_cache_item_release(&cache, &p->it);
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint64_t s = mix(r->id + 2000) | 1;
    char key[32];
    const struct mp_cache_reader rd = {reader_hit, reader_undo, r, COPY_MAX};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        r->want = (uint32_t)(rnd(&s) % NKEYS);
        size_t nkey = key_text(key, r->want);
        r->got = false;
        enum mp_result res = mp_cache_get(&cache, key, nkey, mp_clock_now(&clk), &rd, NULL);
        atomic_fetch_add_explicit(&tot.reads, 1, memory_order_relaxed);
        if (res != MP_OK)
            continue;
        atomic_fetch_add_explicit(&tot.hits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&tot.optimistic, r->optimistic, memory_order_relaxed);
        if (r->pinned_now) {
            atomic_fetch_add_explicit(&tot.pinned, 1, memory_order_relaxed);
            if (++r->npins == PINS_KEPT) {
                for (unsigned i = 0; i < PINS_KEPT; i++)
                    check_pin(r, &r->pins[i]);
                r->npins = 0;
            }
        } else if (!check_value(r->copy, r->nbytes, r->flags, r->cas, r->want)) {
            atomic_fetch_add(&tot.bad, 1);
        }
    }
    for (unsigned i = 0; i < r->npins; i++)
        check_pin(r, &r->pins[i]);
    r->npins = 0;
    return NULL;
}

/* ---- the rest of the world ---------------------------------------------------------------------- */

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Pages change class on purpose: automove's decision, and a page of a random class with more than
 * one taken away outright. */
static void *mover_main(void *arg)
{
    (void)arg;
    uint64_t s = 77;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pause_ms(15);
        uint32_t now = mp_clock_now(&clk);
        mp_lru_automove(&cache.lru, now, 2);
        unsigned cls = 1 + (unsigned)(rnd(&s) % cache.slabs.nclasses);
        struct mp_slab_class *c = &cache.slabs.classes[cls];
        pthread_mutex_lock(&c->lock);
        uint32_t page = c->npages > 1 ? c->first_page : MP_SLAB_NONE;
        pthread_mutex_unlock(&c->lock);
        if (page != MP_SLAB_NONE)
            mp_lru_page_evacuate(&cache.lru, cls, page, now);
    }
    return NULL;
}

/* Relative time runs ten times fast, so short TTLs expire and the reclaimer has work. */
static void *clock_main(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pause_ms(100);
        atomic_fetch_add_explicit(&clk.now, 1, memory_order_relaxed);
    }
    return NULL;
}

struct engine_totals {
    uint64_t evictions, reclaimed, moved, resizes, grace_waits;
};

static void engine_totals(struct engine_totals *t)
{
    for (unsigned i = 1; i <= cache.slabs.nclasses; i++) {
        struct mp_slab_class *c = &cache.slabs.classes[i];
        pthread_mutex_lock(&c->lock);
        t->evictions += c->evictions + c->evicted_for_move;
        t->reclaimed += c->reclaimed;
        t->moved += c->pages_moved_out;
        pthread_mutex_unlock(&c->lock);
    }
    for (unsigned i = 0; i < cache.table.nstripes; i++) {
        pthread_mutex_lock(&cache.table.stripes[i].lock);
        t->resizes += cache.table.stripes[i].resizes;
        pthread_mutex_unlock(&cache.table.stripes[i].lock);
    }
    t->grace_waits += atomic_load(&cache.grace.waits);
}

static int run_round(double seconds, struct engine_totals *et)
{
    struct mp_cache_config cfg = {.mem_limit = (size_t)24 << 20,
                                  .item_max = (size_t)4 << 20,
                                  .min_chunk = 32,
                                  .factor = 1.25,
                                  .stripe_bits = 4,
                                  .initial_buckets = 4};
    char err[256];
    if (mp_cache_setup(&cache, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "engine_stress: mp_cache_setup: %s\n", err);
        return -1;
    }
    mp_clock_setup(&clk, time(NULL), 0);
    memset(casmap, 0, sizeof(casmap)); /* a fresh cache counts CAS values from 1 again */
    if (mp_lru_maintainer_start(&cache.lru, &clk, true) != 0) {
        fprintf(stderr, "engine_stress: cannot start the maintainer\n");
        return -1;
    }
    atomic_store(&stop, false);
    static struct writer w[WRITERS];
    static struct reader r[READERS];
    pthread_t mover, ticker;
    for (unsigned i = 0; i < WRITERS; i++) {
        unsigned char *buf = w[i].buf ? w[i].buf : malloc(CHAIN_MAX);
        w[i] = (struct writer){.id = i, .buf = buf};
        pthread_create(&w[i].thread, NULL, writer_main, &w[i]);
    }
    for (unsigned i = 0; i < READERS; i++) {
        unsigned char *copy = r[i].copy ? r[i].copy : malloc(COPY_MAX);
        unsigned char *whole = r[i].whole ? r[i].whole : malloc(CHAIN_MAX);
        r[i] = (struct reader){.id = i, .copy = copy, .whole = whole};
        pthread_create(&r[i].thread, NULL, reader_main, &r[i]);
    }
    pthread_create(&mover, NULL, mover_main, NULL);
    pthread_create(&ticker, NULL, clock_main, NULL);
    pause_ms((long)(seconds * 1000));
    atomic_store(&stop, true);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(w[i].thread, NULL);
    for (unsigned i = 0; i < READERS; i++)
        pthread_join(r[i].thread, NULL);
    pthread_join(mover, NULL);
    pthread_join(ticker, NULL);
    mp_lru_maintainer_stop(&cache.lru);
    engine_totals(et);
    mp_cache_teardown(&cache);
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 15;
    const char *env = getenv("MAGPIE_STRESS_SECONDS");
    if (argc > 1)
        seconds = atof(argv[1]);
    else if (env)
        seconds = atof(env);
    if (seconds <= 0 || seconds > 600) {
        fprintf(stderr, "usage: engine_stress [SECONDS (0..600]]\n");
        return 2;
    }
    struct engine_totals et = {0};
    for (int round = 0; round < ROUNDS; round++)
        if (run_round(seconds / ROUNDS, &et) != 0)
            return 1;
    uint64_t reads = atomic_load(&tot.reads), bad = atomic_load(&tot.bad), mism = atomic_load(&tot.mismatches);
    printf("engine_stress: %.1f s, %d writers, %d readers, %d rounds on fresh 24 MiB caches\n", seconds, WRITERS,
           READERS, ROUNDS);
    printf("  reads %" PRIu64 ", hits %" PRIu64 " (lock-free %" PRIu64 ", pinned %" PRIu64 ")\n", reads,
           atomic_load(&tot.hits), atomic_load(&tot.optimistic), atomic_load(&tot.pinned));
    printf("  sets %" PRIu64 " (%" PRIu64 " small, same class), deletes %" PRIu64 ", sets without memory %" PRIu64 "\n",
           atomic_load(&tot.sets), atomic_load(&tot.in_class_sets), atomic_load(&tot.deletes), atomic_load(&tot.nomem));
    printf("  chained values: %" PRIu64 " sets, %" PRIu64 " pinned reads\n", atomic_load(&tot.chained_sets),
           atomic_load(&tot.chained_reads));
    printf("  evictions %" PRIu64 ", reclaimed %" PRIu64 ", pages moved %" PRIu64 " (grace waits %" PRIu64
           "), stripe doublings %" PRIu64 "\n",
           et.evictions, et.reclaimed, et.moved, et.grace_waits, et.resizes);
    /* Every path must have run, or the figures below prove less than they say. */
    const char *missing = !atomic_load(&tot.optimistic)      ? "lock-free reads"
                          : !atomic_load(&tot.pinned)        ? "pinned reads"
                          : !atomic_load(&tot.deletes)       ? "deletes"
                          : !atomic_load(&tot.chained_reads) ? "chained values"
                          : !et.evictions                    ? "evictions"
                          : !et.reclaimed                    ? "reclaims"
                          : !et.moved                        ? "page moves"
                          : !et.resizes                      ? "stripe doublings"
                                                             : NULL;
    if (missing)
        printf("  not exercised: %s\n", missing);
    bool pass = bad == 0 && mism == 0 && !missing && reads > 0;
    printf("engine_stress: %" PRIu64 " reads checked, %" PRIu64 " bad values, %" PRIu64 " CAS mismatches: %s\n", reads,
           bad, mism, pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}

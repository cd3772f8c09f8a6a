/* ghost: see include/magpie/ghost.h */
#include "magpie/ghost.h"

#include <errno.h>
#include <string.h>

#include <sys/mman.h>

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

int mp_ghost_setup(struct mp_ghost *g, size_t max_entries)
{
    memset(g, 0, sizeof(*g));
    size_t buckets = (max_entries + MP_GHOST_BUCKET - 1) / MP_GHOST_BUCKET;
    if (buckets == 0)
        buckets = 1;
    if (buckets > UINT32_MAX)
        buckets = UINT32_MAX;
    /* Reserved, not committed: only the buckets in use are ever touched. */
    void *p = mmap(NULL, buckets * 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    g->words = p;
    g->max_buckets = buckets;
    atomic_store(&g->nbuckets, 1);
    atomic_store(&g->most, 1);
    return 0;
}

void mp_ghost_teardown(struct mp_ghost *g)
{
    if (g->words)
        munmap((void *)g->words, g->max_buckets * 2 * sizeof(uint64_t));
    memset(g, 0, sizeof(*g));
}

void mp_ghost_resize(struct mp_ghost *g, uint64_t entries)
{
    uint64_t want = (entries + MP_GHOST_BUCKET - 1) / MP_GHOST_BUCKET;
    if (want == 0)
        want = 1;
    if (want > g->max_buckets)
        want = g->max_buckets;
    uint32_t n = atomic_load_explicit(&g->nbuckets, memory_order_relaxed);
    if (want <= (uint64_t)n + n / 4 && want >= n / 2)
        return;
    atomic_store_explicit(&g->nbuckets, (uint32_t)want, memory_order_relaxed);
    uint32_t most = atomic_load_explicit(&g->most, memory_order_relaxed);
    while (want > most && !atomic_compare_exchange_weak_explicit(&g->most, &most, (uint32_t)want, memory_order_relaxed,
                                                                 memory_order_relaxed))
        ;
}

/* The key's bucket (its first word) and fingerprint: bits of the hash the table does not use for
 * its stripe (the top) or bucket (the bottom). A fingerprint is never 0, the empty slot. */
static _Atomic uint64_t *bucket_of(struct mp_ghost *g, uint64_t hash, uint32_t n, uint8_t *fp)
{
    uint64_t b = ((hash >> 16) & UINT32_MAX) * n >> 32;
    uint8_t f = (uint8_t)(hash >> 8);
    *fp = f ? f : 1;
    return &g->words[2 * b];
}

void mp_ghost_add(struct mp_ghost *g, uint64_t hash)
{
    uint8_t fp;
    _Atomic uint64_t *w = bucket_of(g, hash, atomic_load_explicit(&g->nbuckets, memory_order_relaxed), &fp);
    uint64_t w0 = atomic_load_explicit(&w[0], memory_order_relaxed);
    uint64_t w1 = atomic_load_explicit(&w[1], memory_order_relaxed);
    /* Slot 0 is w0's low byte, slot 15 w1's high byte: one byte up, the oldest out. */
    atomic_store_explicit(&w[1], (w1 << 8) | (w0 >> 56), memory_order_relaxed);
    atomic_store_explicit(&w[0], (w0 << 8) | fp, memory_order_relaxed);
    atomic_fetch_add_explicit(&g->added, 1, memory_order_relaxed);
}

uint64_t mp_ghost_take(struct mp_ghost *g, uint64_t hash)
{
    uint8_t fp;
    uint32_t n = atomic_load_explicit(&g->nbuckets, memory_order_relaxed);
    _Atomic uint64_t *w = bucket_of(g, hash, n, &fp);
    for (unsigned j = 0; j < 2; j++) {
        uint64_t v = atomic_load_explicit(&w[j], memory_order_relaxed);
        uint64_t x = v ^ (fp * ONES);
        /* The lowest byte of x that is zero, exactly (higher ones may be false alarms). */
        uint64_t zero = (x - ONES) & ~x & HIGHS;
        if (!zero)
            continue;
        unsigned byte = (unsigned)__builtin_ctzll(zero) / 8;
        /* Forgotten unless another thread changed the bucket meanwhile (then it may stay). */
        atomic_compare_exchange_strong_explicit(&w[j], &v, v & ~(UINT64_C(0xff) << (8 * byte)), memory_order_relaxed,
                                                memory_order_relaxed);
        return (uint64_t)(j * 8 + byte + 1) * n;
    }
    return MP_GHOST_ABSENT;
}

uint64_t mp_ghost_window(const struct mp_ghost *g)
{
    return (uint64_t)MP_GHOST_BUCKET * atomic_load_explicit(&((struct mp_ghost *)g)->nbuckets, memory_order_relaxed);
}

uint64_t mp_ghost_bytes(const struct mp_ghost *g)
{
    return (uint64_t)MP_GHOST_BUCKET * atomic_load_explicit(&((struct mp_ghost *)g)->most, memory_order_relaxed);
}

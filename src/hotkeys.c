/* hotkeys: see include/magpie/hotkeys.h */
#include "magpie/hotkeys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "magpie/debug.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define INDEX_MASK (2 * MP_HOTKEYS_SLOTS - 1)
#define READ_TRIES 8
#define BINARY_SALT UINT64_C(0x9e3779b97f4a7c15) /* a binary key and a text key of the same bytes differ */

_Static_assert((MP_HOTKEYS_SLOTS & (MP_HOTKEYS_SLOTS - 1)) == 0, "the index is a power of two");
_Static_assert(MP_HOTKEYS_SLOTS <= UINT16_MAX, "heap entries are 16-bit slots");

/* What a reader collected of one slot. */
struct mp_hotkeys_rec {
    uint64_t hash;
    uint64_t count;
    uint32_t thread, slot;
};

static void store32(_Atomic uint32_t *p, uint32_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

static void store64(_Atomic uint64_t *p, uint64_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

static uint64_t load64(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

/* ---- setup ----------------------------------------------------------------------------------- */

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&ts;
    }
    return seed;
}

int mp_hotkeys_setup(struct mp_hotkeys *hk, unsigned nthreads, uint32_t now)
{
    memset(hk, 0, sizeof(*hk));
    pthread_mutex_init(&hk->read_lock, NULL);
    hk->threads = calloc(nthreads, sizeof(*hk->threads));
    hk->recs = malloc((size_t)nthreads * MP_HOTKEYS_SLOTS * sizeof(*hk->recs));
    if (!hk->threads || !hk->recs) {
        mp_hotkeys_teardown(hk);
        return -ENOMEM;
    }
    hk->nthreads = nthreads;
    uint64_t seed = random_seed();
    for (unsigned i = 0; i < nthreads; i++) {
        /* calloc: a large block comes as untouched pages, so a worker's sketch costs memory only
         * as it fills */
        hk->threads[i] = calloc(1, sizeof(struct mp_hotkeys_thread));
        if (!hk->threads[i]) {
            mp_hotkeys_teardown(hk);
            return -ENOMEM;
        }
        hk->threads[i]->seed = seed; /* one hash for all workers: their counts merge by it */
        hk->threads[i]->rng = (seed ^ UINT64_C(0x2545f4914f6cdd1d) * (i + 1)) | 1;
        store32(&hk->threads[i]->window_start, now);
    }
    return 0;
}

void mp_hotkeys_teardown(struct mp_hotkeys *hk)
{
    for (unsigned i = 0; hk->threads && i < hk->nthreads; i++)
        free(hk->threads[i]);
    free(hk->threads);
    free(hk->recs);
    hk->threads = NULL;
    hk->recs = NULL;
    hk->nthreads = 0;
    pthread_mutex_destroy(&hk->read_lock);
}

/* ---- the owner's heap and index --------------------------------------------------------------- */

static void heap_place(struct mp_hotkeys_thread *t, unsigned i, uint16_t slot)
{
    t->heap[i] = slot;
    t->pos[slot] = (uint16_t)i;
}

static void sift_up(struct mp_hotkeys_thread *t, unsigned i)
{
    uint16_t slot = t->heap[i];
    while (i > 0) {
        unsigned parent = (i - 1) / 2;
        if (t->total[t->heap[parent]] <= t->total[slot])
            break;
        heap_place(t, i, t->heap[parent]);
        i = parent;
    }
    heap_place(t, i, slot);
}

static void sift_down(struct mp_hotkeys_thread *t, unsigned i, unsigned n)
{
    uint16_t slot = t->heap[i];
    for (;;) {
        unsigned child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && t->total[t->heap[child + 1]] < t->total[t->heap[child]])
            child++;
        if (t->total[slot] <= t->total[t->heap[child]])
            break;
        heap_place(t, i, t->heap[child]);
        i = child;
    }
    heap_place(t, i, slot);
}

/* The slot of a hash, or -1. */
static int index_find(const struct mp_hotkeys_thread *t, uint64_t hash)
{
    for (uint32_t i = (uint32_t)hash & INDEX_MASK;; i = (i + 1) & INDEX_MASK) {
        const struct mp_hotkeys_index *e = &t->index[i];
        if (e->slot == 0)
            return -1;
        if (e->hash == hash)
            return (int)e->slot - 1;
    }
}

static void index_insert(struct mp_hotkeys_thread *t, uint64_t hash, unsigned slot)
{
    uint32_t i = (uint32_t)hash & INDEX_MASK;
    while (t->index[i].slot != 0)
        i = (i + 1) & INDEX_MASK;
    t->index[i] = (struct mp_hotkeys_index){hash, slot + 1};
}

/* Linear probing's deletion: later entries of the run move back into the hole, so no search
 * ever stops early at it. The index is at most half full, so runs are short. */
static void index_remove(struct mp_hotkeys_thread *t, uint64_t hash)
{
    uint32_t i = (uint32_t)hash & INDEX_MASK;
    while (t->index[i].hash != hash || t->index[i].slot == 0)
        i = (i + 1) & INDEX_MASK;
    for (uint32_t j = (i + 1) & INDEX_MASK; t->index[j].slot != 0; j = (j + 1) & INDEX_MASK) {
        uint32_t home = (uint32_t)t->index[j].hash & INDEX_MASK;
        /* j's entry may fill the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->index[i] = t->index[j];
            i = j;
        }
    }
    t->index[i].slot = 0;
}

/* ---- counting --------------------------------------------------------------------------------- */

/* Give slot s a new key and counts, inside its sequence count. */
static void write_slot(struct mp_hotkeys_thread *t, unsigned s, uint64_t hash, const char *key, size_t nkey,
                       bool binary, uint64_t count)
{
    uint64_t words[MP_HOTKEYS_KEY_WORDS] = {0};
    memcpy(words, key, nkey);
    uint32_t seq = atomic_load_explicit(&t->seq[s], memory_order_relaxed);
    store32(&t->seq[s], seq + 1);
    mp_fence(memory_order_release);
    store64(&t->hash[s], hash);
    store32(&t->meta[s], (uint32_t)nkey | (binary ? 1u << 8 : 0));
    for (size_t w = 0; w < (nkey + 7) / 8; w++)
        store64(&t->key[s][w], words[w]);
    store64(&t->cur[s], count);
    store64(&t->prev[s], 0);
    atomic_store_explicit(&t->seq[s], seq + 2, memory_order_release);
    t->total[s] = count;
}

/* Set a slot's counts inside its sequence count, so no reader adds a count twice. */
static void write_counts(struct mp_hotkeys_thread *t, unsigned s, uint64_t cur, uint64_t prev)
{
    uint32_t seq = atomic_load_explicit(&t->seq[s], memory_order_relaxed);
    store32(&t->seq[s], seq + 1);
    mp_fence(memory_order_release);
    store64(&t->cur[s], cur);
    store64(&t->prev[s], prev);
    atomic_store_explicit(&t->seq[s], seq + 2, memory_order_release);
    t->total[s] = cur + prev;
}

/* A new window: this window's counts become the previous one's (or, after a whole idle window,
 * everything is forgotten), and the heap is rebuilt on the new totals. */
static void turn_window(struct mp_hotkeys_thread *t, uint32_t now)
{
    uint32_t start = atomic_load_explicit(&t->window_start, memory_order_relaxed);
    uint32_t windows = (now - start) / MP_HOTKEYS_WINDOW;
    unsigned used = atomic_load_explicit(&t->used, memory_order_relaxed);
    for (unsigned s = 0; s < used; s++)
        write_counts(t, s, 0, windows == 1 ? load64(&t->cur[s]) : 0);
    for (unsigned i = used / 2; i-- > 0;)
        sift_down(t, i, used);
    store32(&t->window_start, start + windows * MP_HOTKEYS_WINDOW);
}

/* True with a chance of 1 in n: the top half of a xorshift draw, scaled by n, stays under 2^32
 * for 2^32 / n of its values. No division. */
static bool admit(struct mp_hotkeys_thread *t, uint64_t n)
{
    uint64_t r = t->rng;
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    t->rng = r;
    if (n > UINT32_MAX)
        n = UINT32_MAX;
    return (r >> 32) * n < (UINT64_C(1) << 32);
}

void mp_hotkeys_count(struct mp_hotkeys_thread *t, const char *key, size_t nkey, bool binary, uint32_t now)
{
    if (now - atomic_load_explicit(&t->window_start, memory_order_relaxed) >= MP_HOTKEYS_WINDOW)
        turn_window(t, now);
    uint64_t hash = XXH3_64bits_withSeed(key, nkey, t->seed ^ (binary ? BINARY_SALT : 0));
    unsigned used = atomic_load_explicit(&t->used, memory_order_relaxed);
    int found = index_find(t, hash);
    if (found >= 0) {
        unsigned s = (unsigned)found;
        store64(&t->cur[s], load64(&t->cur[s]) + 1);
        t->total[s]++;
        sift_down(t, t->pos[s], used);
        return;
    }
    if (used < MP_HOTKEYS_SLOTS) {
        write_slot(t, used, hash, key, nkey, binary, 1);
        heap_place(t, used, (uint16_t)used);
        sift_up(t, used);
        index_insert(t, hash, used);
        atomic_store_explicit(&t->used, used + 1, memory_order_release);
        return;
    }
    /* The least counted key gives its slot, and its count, to the new one, with a chance of
     * one in that count plus one (see hotkeys.h). */
    unsigned s = t->heap[0];
    if (!admit(t, t->total[s] + 1))
        return;
    index_remove(t, load64(&t->hash[s]));
    write_slot(t, s, hash, key, nkey, binary, t->total[s] + 1);
    sift_down(t, 0, used);
    index_insert(t, hash, s);
}

/* ---- reading ---------------------------------------------------------------------------------- */

/* A slot's hash and count as of one moment; false if it kept changing. */
static bool read_count(struct mp_hotkeys_thread *t, unsigned s, bool with_prev, uint64_t *hash, uint64_t *count)
{
    for (int i = 0; i < READ_TRIES; i++) {
        uint32_t seq = atomic_load_explicit(&t->seq[s], memory_order_acquire);
        if (seq & 1)
            continue;
        *hash = load64(&t->hash[s]);
        *count = load64(&t->cur[s]) + (with_prev ? load64(&t->prev[s]) : 0);
        mp_fence(memory_order_acquire);
        if (atomic_load_explicit(&t->seq[s], memory_order_relaxed) == seq)
            return true;
    }
    return false;
}

/* A slot's key, if it still holds the key of this hash. */
static bool read_key(struct mp_hotkeys_thread *t, unsigned s, uint64_t hash, struct mp_hotkey *out)
{
    for (int i = 0; i < READ_TRIES; i++) {
        uint32_t seq = atomic_load_explicit(&t->seq[s], memory_order_acquire);
        if (seq & 1)
            continue;
        uint64_t words[MP_HOTKEYS_KEY_WORDS];
        uint64_t h = load64(&t->hash[s]);
        uint32_t meta = atomic_load_explicit(&t->meta[s], memory_order_relaxed);
        size_t nkey = meta & 0xff;
        if (nkey > MP_KEY_MAX)
            nkey = MP_KEY_MAX;
        for (size_t w = 0; w < (nkey + 7) / 8; w++)
            words[w] = load64(&t->key[s][w]);
        mp_fence(memory_order_acquire);
        if (atomic_load_explicit(&t->seq[s], memory_order_relaxed) != seq)
            continue;
        if (h != hash)
            return false;
        memcpy(out->key, words, nkey);
        out->key[nkey] = '\0';
        out->nkey = (uint8_t)nkey;
        out->binary = (meta >> 8) & 1;
        return true;
    }
    return false;
}

static int by_hash(const void *a, const void *b)
{
    const struct mp_hotkeys_rec *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int by_count(const void *a, const void *b)
{
    const struct mp_hotkeys_rec *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return by_hash(a, b);
}

static int by_count_then_key(const void *a, const void *b)
{
    const struct mp_hotkey *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    size_t n = x->nkey < y->nkey ? x->nkey : y->nkey;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (int)x->nkey - (int)y->nkey;
}

/* Every slot's count over the window, one record per slot with a count; returns how many. */
static size_t collect(struct mp_hotkeys *hk, uint32_t now)
{
    size_t n = 0;
    for (unsigned i = 0; i < hk->nthreads; i++) {
        struct mp_hotkeys_thread *t = hk->threads[i];
        uint32_t age = now - atomic_load_explicit(&t->window_start, memory_order_acquire);
        if (age >= 2 * MP_HOTKEYS_WINDOW && age < UINT32_MAX / 2)
            continue; /* idle for a whole window: all it holds is older than the window */
        bool with_prev = age < MP_HOTKEYS_WINDOW || age >= UINT32_MAX / 2;
        unsigned used = atomic_load_explicit(&t->used, memory_order_acquire);
        for (unsigned s = 0; s < used; s++) {
            uint64_t hash, count;
            if (read_count(t, s, with_prev, &hash, &count) && count > 0)
                hk->recs[n++] = (struct mp_hotkeys_rec){hash, count, i, s};
        }
    }
    return n;
}

/* Sum the records of each key (adjacent once sorted by hash) into the first of them; the others
 * get count 0 but stay, as other places to read the key from. Returns how many keys. */
static size_t merge(struct mp_hotkeys_rec *recs, size_t n)
{
    qsort(recs, n, sizeof(*recs), by_hash);
    size_t keys = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && recs[j].hash == recs[i].hash) {
            recs[i].count += recs[j].count;
            j++;
        }
        keys++;
        i = j;
    }
    return keys;
}

/* The key of a merged record: from its first holder, or another if that slot moved on. */
static bool key_of(struct mp_hotkeys *hk, const struct mp_hotkeys_rec *recs, size_t n, size_t first,
                   struct mp_hotkey *out)
{
    for (size_t j = first; j < n && recs[j].hash == recs[first].hash; j++)
        if (read_key(hk->threads[recs[j].thread], recs[j].slot, recs[j].hash, out))
            return true;
    return false;
}

size_t mp_hotkeys_top(struct mp_hotkeys *hk, uint32_t now, struct mp_hotkey *out, size_t k)
{
    if (k > MP_HOTKEYS_MAX)
        k = MP_HOTKEYS_MAX;
    pthread_mutex_lock(&hk->read_lock);
    size_t n = collect(hk, now);
    merge(hk->recs, n);
    /* The merged totals sit on the first record of each key; rank those. */
    size_t firsts[MP_HOTKEYS_MAX + 1];
    size_t nfirst = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && hk->recs[i].hash == hk->recs[i - 1].hash)
            continue;
        /* keep the k best so far, by insertion into a sorted list of at most k + 1 */
        size_t at = nfirst;
        while (at > 0 && by_count(&hk->recs[i], &hk->recs[firsts[at - 1]]) < 0)
            at--;
        if (at >= k)
            continue;
        memmove(&firsts[at + 1], &firsts[at], (nfirst - at) * sizeof(firsts[0]));
        firsts[at] = i;
        if (nfirst < k)
            nfirst++;
    }
    size_t got = 0;
    for (size_t i = 0; i < nfirst; i++) {
        if (key_of(hk, hk->recs, n, firsts[i], &out[got])) {
            out[got].count = hk->recs[firsts[i]].count;
            got++;
        }
    }
    pthread_mutex_unlock(&hk->read_lock);
    qsort(out, got, sizeof(*out), by_count_then_key);
    return got;
}

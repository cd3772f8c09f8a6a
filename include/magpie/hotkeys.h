/*
 * hotkeys: the most requested keys over a recent window, counted approximately per worker and
 * merged on request (`stats hotkeys [K]`, and the metrics endpoint with -o hotkeys_metrics).
 *
 * Each worker counts the keys of its reads (get, gets, gat, gats, mg) in a Space-Saving sketch of
 * MP_HOTKEYS_SLOTS keys (Metwally, Agrawal, El Abbadi, 2005) with randomized admission (RAP: Ben
 * Basat, Einziger, Friedman, Kassner, 2017): a key already followed has its count raised; a new
 * key takes the slot of the least counted one, and starts from that count plus one, only with a
 * chance of one in that count plus one. Plain Space-Saving replaces a key on every request for
 * a key it does not follow, which under churn (many keys each requested rarely: uniform traffic)
 * is most requests, at over 100 ns each; with admission the least count grows and replacements
 * become rare, so such a request costs a hash, a probe and a random draw. The counts are
 * estimates: a key's count is exact from when it entered, plus what it inherited on entering.
 * On skewed (Zipf) traffic the most requested keys enter early, while counts are small, and
 * stay, so their counts are close to exact. The least counted key is the top of a min-heap over
 * the slots, and keys are found through an open-addressing index of their hashes (XXH3 with a
 * seed drawn from getrandom(), so keys chosen offline cannot crowd the index): a count is a
 * hash, a probe or two and a heap step, with no lock and no allocation.
 *
 * The window: counts are kept for the current window of MP_HOTKEYS_WINDOW seconds and the one
 * before it, and a report adds the two, so it covers the last one to two windows. The worker
 * turns the window over itself, at its first count after the window ends; a report ignores what
 * an idle worker has not turned over yet.
 *
 * Sharing: a worker is the only writer of its sketch. Readers (any worker answering `stats
 * hotkeys`, the acceptor rendering metrics) read counts, hashes and keys as relaxed atomics; a
 * slot whose key changes is written inside its own sequence count (odd while it changes), and a
 * reader keeps what it read of a slot only if the count was even and unchanged around the read.
 * So counting takes no locked instruction. The heap and the index are the worker's alone.
 * Readers share a merge buffer under `read_lock`, which the request path never takes.
 */
#ifndef MAGPIE_HOTKEYS_H
#define MAGPIE_HOTKEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/item.h"

#define MP_HOTKEYS_SLOTS 1024 /* keys each worker follows */
#define MP_HOTKEYS_MAX 100    /* the most `stats hotkeys K` lists */
#define MP_HOTKEYS_DEFAULT 10 /* K without an argument */
#define MP_HOTKEYS_WINDOW 60  /* seconds */
#define MP_HOTKEYS_KEY_WORDS ((MP_KEY_MAX + 7) / 8)

struct mp_hotkeys_index {
    uint64_t hash;
    uint32_t slot; /* slot + 1; 0 is an empty entry */
};

struct mp_hotkeys_thread {
    /* read by readers, written by the owner */
    _Atomic uint32_t window_start; /* relative second the current window began */
    _Atomic uint32_t used;         /* slots [0, used) hold keys */
    _Atomic uint32_t seq[MP_HOTKEYS_SLOTS];
    _Atomic uint64_t hash[MP_HOTKEYS_SLOTS];
    _Atomic uint64_t cur[MP_HOTKEYS_SLOTS];  /* count in the current window */
    _Atomic uint64_t prev[MP_HOTKEYS_SLOTS]; /* count in the window before */
    _Atomic uint32_t meta[MP_HOTKEYS_SLOTS]; /* key length | binary << 8 */
    _Atomic uint64_t key[MP_HOTKEYS_SLOTS][MP_HOTKEYS_KEY_WORDS];
    /* the owner's alone */
    uint64_t seed;
    uint64_t rng;                     /* xorshift state, for admissions */
    uint64_t total[MP_HOTKEYS_SLOTS]; /* cur + prev, the heap's order */
    uint16_t heap[MP_HOTKEYS_SLOTS];  /* slots, least total first */
    uint16_t pos[MP_HOTKEYS_SLOTS];   /* a slot's place in heap */
    struct mp_hotkeys_index index[2 * MP_HOTKEYS_SLOTS];
};

struct mp_hotkeys_rec;

struct mp_hotkeys {
    unsigned nthreads;
    struct mp_hotkeys_thread **threads;
    pthread_mutex_t read_lock; /* readers only: guards recs */
    struct mp_hotkeys_rec *recs;
};

/* One key of a report. A binary key (meta's b flag) is reported as its bytes, with `binary`. */
struct mp_hotkey {
    uint64_t count;
    uint8_t nkey;
    bool binary;
    char key[MP_KEY_MAX + 1]; /* NUL-terminated */
};

/* nthreads sketches, empty, their window starting at relative second now. 0 or -ENOMEM. */
int mp_hotkeys_setup(struct mp_hotkeys *hk, unsigned nthreads, uint32_t now);
void mp_hotkeys_teardown(struct mp_hotkeys *hk);

/* Worker i's sketch, or NULL when hot keys are off (hk NULL). */
static inline struct mp_hotkeys_thread *mp_hotkeys_worker(struct mp_hotkeys *hk, unsigned i)
{
    return hk ? hk->threads[i] : NULL;
}

/* One request for a key (its owning worker only), at relative second now. */
void mp_hotkeys_count(struct mp_hotkeys_thread *t, const char *key, size_t nkey, bool binary, uint32_t now);

/* The request path's hook: nothing when hot keys are off (t NULL). */
static inline void mp_hotkeys_note(struct mp_hotkeys_thread *t, const char *key, size_t nkey, bool binary, uint32_t now)
{
    if (t)
        mp_hotkeys_count(t, key, nkey, binary, now);
}

/* The k most requested keys over the window as of relative second now, summed over the workers,
 * most requested first (equal counts in key order); returns how many (at most k and
 * MP_HOTKEYS_MAX). Any thread. */
size_t mp_hotkeys_top(struct mp_hotkeys *hk, uint32_t now, struct mp_hotkey *out, size_t k);

#endif

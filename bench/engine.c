/*
 * bench/engine: get/set operations per second on the engine alone (table + slab + lru), for 1, 2
 * and 4 threads, to show that the lock striping does not serialize. No sockets, no protocol.
 *
 * Each thread runs a 90:10 get:set mix over a shared key space of 100k keys with 32-byte values
 * for a fixed time, keys drawn from a per-thread xorshift generator. The table is loaded first.
 * The target: 2 threads reach at least 1.7x one thread on 2 cores.
 *
 *   build/bench_engine [seconds-per-run]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "magpie/cache.h"

#define KEYS 100000
#define VALUE 32
#define SET_PCT 1 /* in 10: a 90:10 get:set mix */

struct worker {
    pthread_t thread;
    struct mp_cache *cache;
    uint64_t seed;
    uint64_t ops;
    _Atomic bool *stop;
};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t key_of(uint64_t n, char *buf)
{
    return (size_t)snprintf(buf, 32, "key:%010llu", (unsigned long long)n);
}

static void set_key(struct mp_cache *c, const char *key, size_t nkey)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(c, key, nkey, 0, 0, VALUE, 2, &res);
    if (!it)
        return;
    memset(mp_item_value(it), 'v', VALUE);
    struct mp_store st = {.op = MP_SET};
    mp_cache_store(c, &it, &st, 2);
}

static void copy_value(void *ctx, struct mp_item *it)
{
    memcpy(ctx, mp_item_value(it), it->nbytes < VALUE ? it->nbytes : VALUE);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    char key[32], out[VALUE];
    uint64_t ops = 0, seed = w->seed; /* a local: workers' structs share cache lines */
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        for (int i = 0; i < 256; i++, ops++) {
            uint64_t r = xorshift(&seed);
            size_t nkey = key_of(r % KEYS, key);
            if (r % 10 < SET_PCT)
                set_key(w->cache, key, nkey);
            else
                mp_cache_get(w->cache, key, nkey, 2, copy_value, out, NULL);
        }
    }
    w->ops = ops;
    return NULL;
}

static double run_threads(struct mp_cache *c, int n, double seconds)
{
    struct worker w[8];
    _Atomic bool stop = false;
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.cache = c, .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1), .stop = &stop};
        pthread_create(&w[i].thread, NULL, run, &w[i]);
    }
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].ops;
    }
    return (double)total / seconds;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    if (seconds <= 0 || seconds > 60) {
        fprintf(stderr, "usage: bench_engine [seconds-per-run, up to 60]\n");
        return 64;
    }
    struct mp_cache cache;
    struct mp_cache_config cfg = {.mem_limit = 256u << 20,
                                  .item_max = 1u << 20,
                                  .min_chunk = 32,
                                  .factor = 1.04,
                                  .stripe_bits = 12,
                                  .initial_buckets = 64};
    char err[256];
    if (mp_cache_setup(&cache, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    char key[32];
    for (uint64_t i = 0; i < KEYS; i++)
        set_key(&cache, key, key_of(i, key));
    printf("engine: 90%% get / 10%% set, %d keys, %d-byte values, %.1f s per run\n", KEYS, VALUE, seconds);
    printf("%-8s %14s %10s\n", "threads", "ops/s", "vs 1");
    double one = 0;
    int counts[] = {1, 2, 4};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        double ops = run_threads(&cache, counts[i], seconds);
        if (counts[i] == 1)
            one = ops;
        printf("%-8d %14.0f %9.2fx\n", counts[i], ops, ops / one);
    }
    mp_cache_teardown(&cache);
    return 0;
}

/*
 * snapshot_seeds: writes the seed files fuzz_snapshot starts from, with the writer itself, so the
 * seeds always follow the format. `snapshot_seeds DIR` writes DIR/plain (small items, a few
 * blocks), DIR/mixed (client flags, TTLs, meta flags, CLOCK states, a binary key, an empty value, a
 * pending flush_all) and DIR/large (a value written from its item, over 64 KiB).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/snapshot.h"
#include "snapshot_fuzz.h"

static struct mp_cache cache;
static struct mp_clock clk;

static void put(const char *key, size_t nbytes, uint32_t flags, uint32_t exptime, uint8_t meta)
{
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc(&cache, key, strlen(key), flags, exptime, (uint32_t)nbytes, 2, &res);
    if (!it)
        abort();
    for (size_t i = 0; i < nbytes; i++)
        mp_item_value(it)[i] = (char)('a' + i % 26);
    if (meta)
        mp_item_set(it, meta, true);
    struct mp_store st = {.op = MP_SET};
    if (mp_cache_store(&cache, &it, &st, 2) != MP_STORED)
        abort();
}

static void hit(const char *key, int times)
{
    struct mp_cache_lock lk;
    for (int i = 0; i < times; i++) {
        mp_cache_lock_key(&cache, key, strlen(key), &lk);
        struct mp_item *it = mp_cache_find_locked(&cache, &lk, key, strlen(key), 2, NULL);
        if (it)
            mp_item_touch_clock(it, 2);
        mp_cache_unlock(&lk);
    }
}

static void write_seed(const char *dir, const char *name, size_t block_bytes)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct mp_snapshot_opts o = {.path = path, .clock = &clk, .block_bytes = block_bytes};
    struct mp_snapshot_report r;
    if (mp_snapshot_save(&cache, &o, &r) != 0) {
        fprintf(stderr, "snapshot_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void fresh(void)
{
    struct mp_cache_config cc = snapshot_fuzz_cache_config();
    char err[256];
    if (mp_cache_setup(&cache, &cc, err, sizeof(err)) != 0)
        abort();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: snapshot_seeds DIR\n");
        return 64;
    }
    mp_clock_setup(&clk, SEED_EPOCH, 1000);
    char key[32];
    fresh();
    for (int i = 0; i < 12; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(key, 10 + (size_t)i * 7, 0, 0, 0);
    }
    write_seed(argv[1], "plain", 100);
    mp_cache_teardown(&cache);

    fresh();
    put("flags", 5, 0xdeadbeef, 0, 0);
    put("ttl", 5, 0, 3600, 0);
    put("stale", 5, 0, 0, MP_ITEM_STALE | MP_ITEM_TOKEN_SENT);
    put("\x01\xff binary", 5, 0, 0, MP_ITEM_KEY_BINARY);
    put("empty", 0, 0, 0, 0);
    put("hot", 20, 0, 0, 0);
    hit("hot", 3);
    put("warm", 20, 0, 0, 0);
    hit("warm", 1);
    mp_cache_flush(&cache, 2, 4000);
    write_seed(argv[1], "mixed", 64);
    mp_cache_teardown(&cache);

    fresh();
    put("large", 70 * 1024, 1, 0, 0);
    put("small", 3, 0, 0, 0);
    write_seed(argv[1], "large", 0);
    mp_cache_teardown(&cache);
    return 0;
}

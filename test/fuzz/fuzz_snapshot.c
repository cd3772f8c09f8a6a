/*
 * libFuzzer target: bytes as a snapshot file, loaded into a real engine (snapshot.h).
 *
 * Each input is written to a memory file and loaded twice into a fresh 8 MiB engine: once as the
 * server would, checksums and all, and once with the checksums ignored, so the fuzzer also reaches
 * the record parser behind them (a mutated byte almost never leaves a checksum intact). After each
 * load every item in the engine is walked: its key and value must lie inside the arena and have
 * the lengths the engine says, and the report must count exactly the items the engine holds.
 * Seeds: build/fuzz/seed_snapshot, made by snapshot_seeds.c (make fuzz).
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "magpie/snapshot.h"
#include "snapshot_fuzz.h"

static void check_item(void *ctx, const struct mp_hit *hit)
{
    struct mp_cache *c = ctx;
    if (hit->nkey == 0 || hit->nkey > MP_KEY_MAX || !mp_slab_contains(&c->slabs, hit->key, hit->nkey) ||
        !mp_slab_contains(&c->slabs, hit->value, hit->nbytes))
        abort();
    volatile unsigned char sink = 0;
    for (uint32_t i = 0; i < hit->nbytes; i++)
        sink ^= (unsigned char)hit->value[i];
    (void)sink;
}

static void load_once(int fd, bool skip_checksums)
{
    struct mp_cache c;
    struct mp_cache_config cc = snapshot_fuzz_cache_config();
    char err[256];
    if (mp_cache_setup(&c, &cc, err, sizeof(err)) != 0)
        abort();
    struct mp_clock clk;
    mp_clock_setup(&clk, SEED_EPOCH + 60, 1000);
    struct mp_snapshot_opts o = {.path = "fuzz", .clock = &clk, .skip_checksums = skip_checksums};
    struct mp_snapshot_report r;
    if (mp_snapshot_load_fd(&c, fd, &o, &r) != 0)
        abort(); /* a memory file never fails to read */
    size_t n = 0;
    for (unsigned i = 0; i < mp_cache_stripes(&c); i++)
        n += mp_cache_visit_stripe(&c, i, mp_clock_now(&clk), check_item, &c);
    if (n != r.items || mp_table_count(&c.table) != r.items)
        abort();
    mp_cache_teardown(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("snapshot", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            abort();
        off += (size_t)w;
    }
    load_once(fd, false);
    load_once(fd, true);
    close(fd);
    return 0;
}

/*
 * What the snapshot fuzzer (fuzz_snapshot.c) and the writer of its seeds (snapshot_seeds.c) must
 * agree on: the wall clock the seeds are written at, and the engine they are written from and
 * loaded into.
 */
#ifndef MAGPIE_TEST_SNAPSHOT_FUZZ_H
#define MAGPIE_TEST_SNAPSHOT_FUZZ_H

#include "magpie/cache.h"

#define SEED_EPOCH 1700000000 /* Unix time the seeds are written at */

/* An 8 MiB engine with small tables, so each load is quick. */
static inline struct mp_cache_config snapshot_fuzz_cache_config(void)
{
    return (struct mp_cache_config){.mem_limit = 8u << 20,
                                    .item_max = 1u << 20,
                                    .min_chunk = 32,
                                    .factor = 1.25,
                                    .stripe_bits = 2,
                                    .initial_buckets = 16};
}

#endif

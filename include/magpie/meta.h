/*
 * meta: the meta commands (mg, ms, md, ma, me) on top of the engine, and their reply lines.
 *
 * Owns what the meta flags do to items and how replies are spelled, as memcached 1.6.18 does it:
 * vivify on miss (N) and early recache (R) hand exactly one client the W (win) flag, after which
 * others see Z; md with I marks an item stale (X) instead of removing it, and a stale item hands
 * out one win; ms with I and an older CAS stores a stale value. Reply flags follow the order of
 * the request's flags, and a flag that changes the item (T, N) takes effect where it stands in
 * that order, so "t T30" reports the TTL from before the update.
 *
 * Knows nothing of sockets: replies go to a caller-provided sink. Each operation is done under
 * the key's stripe lock (cache.h) from lookup to reply, so the win is decided atomically.
 */
#ifndef MAGPIE_META_H
#define MAGPIE_META_H

#include <stdbool.h>
#include <stddef.h>

#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/proto.h"
#include "magpie/stats.h"

struct mp_meta_out {
    void *ctx;
    void (*bytes)(void *ctx, const char *data, size_t n);
    /* The item's value and "\r\n"; called under the stripe lock (copy it or take a reference). */
    mp_cache_hit_fn value;
};

struct mp_meta_env {
    struct mp_cache *cache;
    const struct mp_clock *clock;
    struct mp_stats_thread *st;
};

void mp_meta_get(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o);
void mp_meta_delete(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o);
void mp_meta_arith(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o);
void mp_meta_debug(const struct mp_meta_env *e, const struct mp_request *req, const struct mp_meta_out *o);

/* ms is answered after its value arrives, when the request line is gone: what the reply needs is
 * kept here (the connection owns one). */
struct mp_meta_set {
    struct mp_store store;
    bool noreply;
    bool key_binary;
    uint8_t nkey;
    char key[MP_KEY_MAX];
    size_t nstash;
    char stash[MP_META_MAX_TOKENS * (MP_META_OPAQUE_MAX + 2)]; /* " O<opaque>", " k", " c" in order */
};

/* From an ms request: the store mode, CAS and the reply's flags. */
void mp_meta_set_prepare(const struct mp_request *req, struct mp_meta_set *ms);
/* The reply to a finished ms with the store's result. */
void mp_meta_set_reply(const struct mp_meta_set *ms, enum mp_result res, const struct mp_meta_out *o);

#endif

/*
 * admin: the text protocol's operator commands, answered as memcached 1.6.18 answers them:
 * `lru_crawler crawl|metadump|tocrawl|sleep|enable|disable`, `slabs reassign|automove`,
 * `cache_memlimit`, `watch`, `shutdown`, and the `stats` groups that are commands rather than
 * reports (`stats cachedump`, `stats detail on|off|dump`).
 *
 * Knows nothing of sockets: a listing (metadump, cachedump) is set up in x->dump and handed to the
 * connection to stream (MP_NEXT_DUMP, dump.h); a watcher is registered and handed over the same
 * way (MP_NEXT_WATCH, watch.h).
 */
#ifndef MAGPIE_ADMIN_H
#define MAGPIE_ADMIN_H

#include "magpie/exec.h"
#include "magpie/proto.h"

/* lru_crawler, slabs, cache_memlimit, watch, shutdown. */
enum mp_next mp_admin_run(struct mp_exec *x, const struct mp_request *req);

/* `stats <args>` when args name one of the command groups (cachedump, detail): true, with *next
 * set, when it did; false for any other group. */
bool mp_admin_stats(struct mp_exec *x, const char *args, size_t nargs, enum mp_next *next);

#endif

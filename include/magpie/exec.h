/*
 * exec: runs requests of either wire protocol against the engine, and counts them.
 *
 * The text runner (text.h) and the binary runner (binary.h) turn a parsed request into calls of
 * the operations below and format what they return. Every engine call a request makes goes
 * through here, and this is the one place where the per-command counters of stats.h are kept
 * (cmd_get, get_hits, delete_misses, cas_badval, ...), so a get counts the same whichever
 * protocol asked for it. (The meta commands, whose outcomes are richer, count in meta.c with the
 * same rules.)
 *
 * A struct mp_exec belongs to one connection and is touched only by its thread. Besides the
 * engine and the thread's counters it holds what a request leaves for later reads: the item a
 * storage command's value is being read into, and how to answer once it is in. Knows nothing of
 * sockets: replies go to the connection's output buffer (out.h).
 */
#ifndef MAGPIE_EXEC_H
#define MAGPIE_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/config.h"
#include "magpie/hotkeys.h"
#include "magpie/dump.h"
#include "magpie/meta.h"
#include "magpie/out.h"
#include "magpie/proto.h"
#include "magpie/stats.h"
#include "magpie/watch.h"

struct mp_auth;
struct mp_tls;

/* What the connection does once a request has run. */
enum mp_next {
    MP_NEXT_CMD,     /* parse the next request */
    MP_NEXT_VALUE,   /* read the value into update.item (then "\r\n" if update.crlf) */
    MP_NEXT_SWALLOW, /* discard `swallow` bytes, then parse again */
    MP_NEXT_CLOSE,   /* write the replies gathered so far, then close */
    MP_NEXT_DUMP,    /* stream the listing set up in `dump` (dump.h), then parse again */
    MP_NEXT_WATCH,   /* from now on, send what `watcher` is given (watch.h), and nothing else */
};

/* A storage command waiting for its value. */
struct mp_exec_update {
    struct mp_item *item; /* one reference, ours until stored or dropped */
    struct mp_store store;
    bool noreply;
    bool crlf;              /* text: "\r\n" follows the value */
    bool meta;              /* text: an ms, answered from mset */
    uint8_t opcode, bincmd; /* binary: the opcode as sent, and with its quiet form folded */
    uint32_t opaque;        /* binary: echoed in the reply */
    struct mp_meta_set mset;
};

struct mp_exec;

/* `stats conns`: the connection lists are conn's. */
typedef void (*mp_exec_conns_fn)(struct mp_exec *x, mp_stats_emit_fn emit, void *ctx);

struct mp_exec {
    struct mp_cache *cache;
    const struct mp_clock *clock;
    const struct mp_config *cfg;
    struct mp_stats *stats;
    struct mp_stats_thread *st;    /* this thread's counters */
    struct mp_hotkeys *hotkeys;    /* every worker's sketches, for `stats hotkeys`; NULL when off */
    struct mp_hotkeys_thread *hot; /* this worker's, where gets note their keys; NULL when off */
    struct mp_out *out;
    mp_exec_conns_fn conns;
    void *owner;                               /* the connection, for `conns` */
    struct mp_watch *watch;                    /* the server's log stream (watch.h); may be NULL */
    const char *event_lib;                     /* for `stats` */
    const struct mp_snapshot_status *snapshot; /* for `stats`; NULL without -e */
    const struct mp_warm_status *warm;         /* for `stats`; NULL without --warm-from */
    int fd;                                    /* the connection's socket, as watch lines name it (cfd=) */
    struct mp_dump dump;                       /* a listing being streamed (MP_NEXT_DUMP) */
    struct mp_watcher *watcher;                /* set once the connection watches (MP_NEXT_WATCH) */
    struct mp_auth *auth;                      /* -Y: the users; NULL when off */
    bool authed;                               /* the connection may run commands (always, without -Y) */
    struct mp_tls *tls;                        /* -Z: for refresh_certs; NULL when off */
    size_t swallow;
    struct mp_exec_update update;
    /* the text get being answered (text.h) */
    enum mp_cmd get_cmd;
    uint32_t get_exptime;
    struct mp_out_mark hit_mark; /* output before this key's hit, should the engine undo it */
    struct mp_meta_out meta_sink;
};

uint32_t mp_exec_now(const struct mp_exec *x);

/* get: cmd_get and get_hits or get_misses (get_expired, get_flushed). */
enum mp_result mp_exec_get(struct mp_exec *x, const char *key, size_t nkey, const struct mp_cache_reader *rd);
/* An item exptime from a client's (mp_clock_exptime, now). */
uint32_t mp_exec_ttl(const struct mp_exec *x, int64_t client_exptime);
/* touch (fn NULL) and get-and-touch: cmd_touch and touch_hits or touch_misses. `exptime` is an
 * item exptime (mp_exec_ttl). MP_TOUCHED / MP_OK (gat), or MP_NOT_FOUND. */
enum mp_result mp_exec_touch(struct mp_exec *x, const char *key, size_t nkey, uint32_t exptime, mp_cache_hit_fn fn,
                             void *ctx);
/* An item for a storage command's value; NULL with *res MP_TOO_LARGE (store_too_large) or MP_NOMEM
 * (store_no_memory). A set that fails drops the key's old value, as memcached does (`forget`). */
struct mp_item *mp_exec_alloc(struct mp_exec *x, const char *key, size_t nkey, uint32_t flags, int64_t exptime,
                              uint32_t vlen, bool forget, enum mp_result *res);
/* stats detail: a set of this key is asked for (counted before its value arrives, as memcached). */
void mp_exec_count_set(struct mp_exec *x, const char *key, size_t nkey);
/* Store update.item (cmd_set, total_items, and cas_hits/cas_badval/cas_misses for a CAS). */
enum mp_result mp_exec_store(struct mp_exec *x);
/* A value that arrived malformed: dropped, counted as a set all the same (as memcached). */
void mp_exec_drop(struct mp_exec *x);
/* delete, refused with MP_EXISTS when cas is not 0 and not the item's: delete_hits or
 * delete_misses (a CAS mismatch counts as neither, as in memcached). */
enum mp_result mp_exec_delete(struct mp_exec *x, const char *key, size_t nkey, uint64_t cas);

/* incr/decr. With cas not 0 the item's CAS must match (else MP_EXISTS). On a miss with `create`,
 * the item is made with `initial` and the client's exptime (binary incr) and *value is initial.
 * *cas_out is the CAS of the item holding the result. MP_OK, MP_NOT_FOUND, MP_EXISTS,
 * MP_NON_NUMERIC, MP_NOMEM; incr_hits/decr_hits (MP_OK, MP_NOMEM), incr_misses/decr_misses (a miss
 * that creates nothing). */
struct mp_arith {
    bool incr;
    uint64_t delta;
    uint64_t cas;
    bool create;
    uint64_t initial;
    int64_t exptime;
    bool missed; /* set by mp_exec_arith: no item was there */
};
enum mp_result mp_exec_arith(struct mp_exec *x, const char *key, size_t nkey, struct mp_arith *a, uint64_t *value,
                             uint64_t *cas_out);
/* flush_all with the client's delay (0 or less: now): cmd_flush. */
void mp_exec_flush(struct mp_exec *x, int64_t delay);
/* `stats reset`. */
void mp_exec_stats_reset(struct mp_exec *x);
/* A stats report (mp_stats_report): 0, or -1 for an unknown group. */
int mp_exec_stats(struct mp_exec *x, const char *args, size_t nargs, mp_stats_emit_fn emit, void *ctx);

#endif

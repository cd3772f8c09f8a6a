/*
 * warm: copying a running peer's items into this cache while the server serves (--warm-from
 * HOST:PORT). The peer is another Magpie or a memcached; nothing is asked of it but what a
 * client may ask.
 *
 * A client on a loop of its own, on a thread of its own (never a worker's): it opens two
 * connections to the peer. On one it asks `lru_crawler metadump all` and reads the listing, one
 * line per key (dump.h spells it: key=<URL-encoded> exp= la= cas= fetch= cls= size=). On the other
 * it asks `version` and then, for each key listed, with memcached 1.6 and later (and Magpie)
 * `mg <key> v f t h l c u O<n>` (with b and the key in base64 when it is not printable), which
 * answers the value, client flags, seconds left to live, whether it was ever read, seconds since
 * its last access and its CAS, and with u leaves the peer's LRU order as it was. A peer older than
 * 1.6 is asked plain `get <key>`, and the time left to live, last access and fetched state come
 * from its listing instead (its exp= is a Unix time: the two clocks are taken to agree).
 *
 * Items go in through the engine's warming path (cache.h) with CAS 0 (a fresh CAS: the server is
 * serving), their CLOCK state from "fetched" (bit 7 of mp_item_clock_byte) and their last access:
 * a key that live traffic stored first is never overwritten (nor asked of the peer, when it is
 * there by the time its turn comes), and memory comes only from what is free, so a warm item
 * never evicts. The first item that finds no free memory ends the copy: what
 * follows would be fetched from the peer only to be dropped. Items over -I and keys this side
 * cannot ask for are skipped and counted; so are keys the peer no longer has when asked.
 *
 * The peer is spared: at most `rate` keys a second are asked for (a token bucket), with at most
 * 256 requests and about 4 MiB of expected values in flight; the listing is read only as fast as
 * the keys are asked for (the reader stops while 4096 keys wait), which memcached's crawler waits
 * for without holding a lock. A meta get of an item invalidated with md's I flag hands the asker
 * the item's one recache token (W); the copier hands it back with `md <key> I C<cas>`, which
 * leaves the item as stale as it was and lets the peer's next client win it.
 *
 * A peer that cannot be reached within `timeout` seconds, that stops answering for as long, that
 * closes a connection early or sends what neither memcached nor Magpie would, ends the copy with a
 * log line; items already copied stay. Progress is in a status block of counters (written by the
 * copier's thread alone, read by `stats` and the metrics page with relaxed loads) and logged every
 * 5 seconds.
 *
 * The parsers and request formatters are pure (no sockets, no allocation), tested alone.
 */
#ifndef MAGPIE_WARM_H
#define MAGPIE_WARM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "magpie/cache.h"
#include "magpie/clock.h"

#define MP_WARM_RATE_DEFAULT 50000 /* keys a second (-o warm_rate) */
#define MP_WARM_TIMEOUT_DEFAULT 10 /* seconds (-o warm_timeout) */

enum mp_warm_state {
    MP_WARM_OFF,        /* no --warm-from */
    MP_WARM_CONNECTING, /* resolving the peer's name, connecting, asking its version */
    MP_WARM_COPYING,
    MP_WARM_DONE,    /* the listing ended and every key listed was asked for (or memory is full) */
    MP_WARM_FAILED,  /* the peer could not be reached, stopped answering or sent garbage */
    MP_WARM_STOPPED, /* the server stopped first */
};

/* "off", "connecting", "copying", "done", "failed", "stopped": stats' warm_state. (This and the
 * two readers below are inline: `stats` reads the status without linking the copier.) */
static inline const char *mp_warm_state_name(enum mp_warm_state s)
{
    static const char *const names[] = {"off", "connecting", "copying", "done", "failed", "stopped"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "off";
}

/* Progress. The copier's thread is the only writer (relaxed stores); anyone reads. */
struct mp_warm_status {
    _Atomic int state;          /* enum mp_warm_state */
    _Atomic uint64_t listed;    /* keys the listing gave */
    _Atomic uint64_t copied;    /* items stored here */
    _Atomic uint64_t bytes;     /* their keys and values */
    _Atomic uint64_t present;   /* not stored: live traffic had stored the key first */
    _Atomic uint64_t missing;   /* not stored: gone from the peer, or expired, by the time asked */
    _Atomic uint64_t too_large; /* not stored: over this server's -I */
    _Atomic uint64_t no_room;   /* not stored: no free memory under -m */
    _Atomic uint64_t bad_key;   /* not asked for: a key this side cannot ask the peer for */
    _Atomic uint64_t start_us;  /* CLOCK_MONOTONIC microseconds at the start, */
    _Atomic uint64_t end_us;    /* and at the end (0 while it runs) */
};

/* Seconds the copy has taken so far (or took). */
static inline double mp_warm_seconds(const struct mp_warm_status *st)
{
    uint64_t start = atomic_load_explicit(&((struct mp_warm_status *)st)->start_us, memory_order_relaxed);
    uint64_t end = atomic_load_explicit(&((struct mp_warm_status *)st)->end_us, memory_order_relaxed);
    if (end == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        end = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    }
    return start && end > start ? (double)(end - start) / 1e6 : 0;
}

/* Items listed and not stored, for whatever reason. */
static inline uint64_t mp_warm_skipped(const struct mp_warm_status *st)
{
    struct mp_warm_status *s = (struct mp_warm_status *)st;
    return atomic_load_explicit(&s->present, memory_order_relaxed) +
           atomic_load_explicit(&s->missing, memory_order_relaxed) +
           atomic_load_explicit(&s->too_large, memory_order_relaxed) +
           atomic_load_explicit(&s->no_room, memory_order_relaxed) +
           atomic_load_explicit(&s->bad_key, memory_order_relaxed);
}

/* ---- the peer's protocol: pure ------------------------------------------------------------- */

/* A key from the listing and what the listing says of it. */
struct mp_warm_key {
    char key[MP_KEY_MAX];
    uint8_t nkey;
    bool binary;   /* not a printable key: asked for in base64 (mg's b) */
    int64_t exp;   /* exp=: Unix time it expires, -1 never */
    int64_t la;    /* la=: Unix time of its last access, -1 when not given */
    bool fetched;  /* fetch=yes */
    uint32_t size; /* size=: the item's size at the peer, a hint of what its value takes */
};

enum mp_warm_line {
    MP_WARM_LINE_KEY,     /* a key, in *k */
    MP_WARM_LINE_END,     /* "END": the listing is over (or memcached's "NOTSTARTED": it is empty) */
    MP_WARM_LINE_BUSY,    /* memcached's crawler is busy with another request: ask again later */
    MP_WARM_LINE_LONG,    /* a well-formed line whose key is over 250 bytes: skip it */
    MP_WARM_LINE_REFUSED, /* an error instead of a listing (the crawler disabled, say) */
    MP_WARM_LINE_BAD,     /* anything else */
};

/* One line of a metadump listing, without its "\n" (a "\r" before it is allowed). Fields other
 * than key= may be missing (then exp -1, la -1, not fetched, size 0) and unknown name=value fields
 * are passed over, so a later format with more fields still reads. */
enum mp_warm_line mp_warm_parse_dump_line(const char *line, size_t n, struct mp_warm_key *k);

/* A listing's key=: memcached's URL encoding (%XX for every byte but alphanumerics and "-._~")
 * undone into out (room for MP_KEY_MAX bytes). The length, or -1 for a bad escape, an empty key
 * or one over MP_KEY_MAX bytes (-2). */
int mp_warm_urldecode(const char *in, size_t n, char *out);

/* Whether a key can go on a text command line as it is: no space, no control character. */
bool mp_warm_key_printable(const char *key, size_t nkey);

enum mp_warm_reply {
    MP_WARM_VALUE,        /* mg's "VA <n> ..." or get's "VALUE <key> <flags> <n>" */
    MP_WARM_MISS,         /* mg's "EN" */
    MP_WARM_END,          /* get's "END" */
    MP_WARM_HD,           /* md's answers */
    MP_WARM_EX,           /*   CAS mismatch */
    MP_WARM_NF,           /*   not found */
    MP_WARM_SERVER_ERROR, /* the peer could not answer for this key */
    MP_WARM_CLIENT_ERROR, /* the peer refused this request */
    MP_WARM_ERROR,        /* "ERROR": the peer does not know the command */
    MP_WARM_BAD,          /* garbage */
};

/* A reply line's head. Fields not in the reply keep the values noted. */
struct mp_warm_head {
    enum mp_warm_reply kind;
    uint32_t nbytes; /* value length */
    uint32_t flags;  /* f / VALUE's flags (0) */
    int64_t ttl;     /* t: seconds left, -1 never (-1) */
    uint32_t idle;   /* l: seconds since the last access (0) */
    bool fetched;    /* h1 (false) */
    uint64_t cas;    /* c (0) */
    bool has_opaque; /* O was there, */
    uint32_t opaque; /* with this number (an O that is not a number is garbage) */
    bool stale, won; /* X, W */
    const char *key; /* VALUE's key, in the line */
    size_t nkey;
};

/* A reply line without its "\r\n". `meta`: the peer was asked with mg (VA, EN, HD, EX, NF);
 * otherwise with get (VALUE, END). The kind, also in h->kind. */
enum mp_warm_reply mp_warm_parse_reply(const char *line, size_t n, bool meta, struct mp_warm_head *h);

/* "VERSION <x.y.z...>": 1 when the peer speaks memcached 1.6's meta commands (1.6 or later), 0
 * when it is older, -1 when the line is not a version. */
int mp_warm_parse_version(const char *line, size_t n);

/* Room a request takes: "mg ", the key in base64, the flags, O and a number, "\r\n". */
#define MP_WARM_REQUEST_MAX (3 + 4 * ((MP_KEY_MAX + 2) / 3) + 64)

/* The request for one key into out (MP_WARM_REQUEST_MAX bytes); its length. With meta: "mg <key>
 * [b ]v f t h l c u O<opaque>\r\n"; without: "get <key>\r\n" (the caller skips binary keys). */
size_t mp_warm_format_get(char *out, const struct mp_warm_key *k, bool meta, uint32_t opaque);

/* "md <key> [b ]I C<cas> O<opaque>\r\n": a recache token handed back (above). */
size_t mp_warm_format_giveback(char *out, const struct mp_warm_key *k, uint64_t cas, uint32_t opaque);

/* "HOST:PORT" or "[IPV6]:PORT" into host (hostcap bytes, NUL-terminated) and port. 0, or -1 when
 * it is not that shape or the port is not 1..65535. */
int mp_warm_split_peer(const char *peer, char *host, size_t hostcap, uint16_t *port);

/* ---- the copier ------------------------------------------------------------------------------ */

struct mp_warm_opts {
    const char *peer;             /* HOST:PORT */
    uint32_t rate;                /* keys asked for per second; 0 for no bound */
    unsigned timeout;             /* seconds to connect, and without an answer; 0 for the default */
    const struct mp_clock *clock; /* relative time, and the wall clock for a listing's times */
    /* Log lines (start, progress every 5 s, end); `error` for an end that is a failure. */
    void (*note)(void *ctx, bool error, const char *msg);
    void *note_ctx;
};

struct mp_warm_client; /* warm.c's */

struct mp_warm {
    struct mp_warm_status status;
    struct mp_warm_client *client; /* NULL when not started */
    pthread_t thread;
};

/* Start copying from o->peer into c on a thread of its own. 0, or a negative errno (nothing
 * runs; status says MP_WARM_FAILED). */
int mp_warm_start(struct mp_warm *w, struct mp_cache *c, const struct mp_warm_opts *o);

/* Stop a copy still running (its state becomes MP_WARM_STOPPED; items copied stay), wait for its
 * thread and free what it used. Harmless when it has ended or never started. */
void mp_warm_stop(struct mp_warm *w);

#endif

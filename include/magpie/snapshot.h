/*
 * snapshot: the cache written to a file and read back, so a restart keeps it (-e PATH).
 *
 * Works on the engine alone (cache.h): no sockets, no loop. The server loads the file before it
 * listens, writes it when a signal stops it (after the workers have written their last replies),
 * and, with -o snapshot_interval=N, every N seconds while it serves (mp_snapshot_timer).
 *
 * The file. A 256-byte header (magic, format version, when and with which engine settings it was
 * written, how many items and blocks follow, the largest CAS, a pending delayed flush_all, and how
 * many items and bytes there are at each CLOCK rank), then blocks of about 1 MiB. A block has a
 * 32-byte header (a magic that carries the format version, its item count, its length, a checksum
 * of its payload and one of the header itself) and then its items, each a 26-byte record (stamp:
 * CAS and CLOCK state, expiry as a wall-clock Unix time, client flags, value length, key length,
 * meta flags) followed by the key and the value. Numbers are little-endian; checksums are XXH3-64.
 *
 * Writing. The file is written as PATH.tmp, fsync'd, renamed over PATH, and the directory fsync'd:
 * a process killed while it writes leaves the previous snapshot whole. The walk goes stripe by
 * stripe (mp_cache_visit_stripe), copying each live item into a write buffer under its stripe's
 * lock; a value over 64 KiB, or one that no longer fits in the buffer, is pinned instead and
 * written from where it lives once the lock is let go. So the cache is never copied whole, no
 * lock is held for longer than one stripe's items take to copy, and nothing blocks on I/O while a
 * lock is held. Pages already written are pushed to the disk and dropped from the page cache as
 * the write goes on (a container's memory limit counts the page cache too).
 *
 * Loading. Before the server serves: every block's checksums are checked, and its records parsed
 * in full, before any of its items goes into the cache, so a damaged block is skipped whole and a
 * damaged value is never served. A damaged header costs only the hottest-first ordering below;
 * a damaged block header is skipped by looking for the next block's magic. Items come back with
 * their CAS, CLOCK state, flags and meta flags; expiry is turned back into the server's relative
 * time by the wall clock (clock.h), and items that expired while the server was down are dropped.
 * The CAS counter continues above the largest CAS in the file. Items go in through the engine's
 * warming path (cache.h), which never evicts: when the file holds more than -m does, the loader
 * reads it once per CLOCK rank, hottest first, and stops at the first rank that no longer fits.
 * Items over -I are skipped. Anything skipped is counted in the report and said in a note.
 *
 * Threads and locks: mp_snapshot_save may run on any thread while workers serve; it takes one
 * stripe lock at a time and nothing else. mp_snapshot_load runs before the server serves (it hands
 * items the CAS values they had, which cache.h allows only then). One save at a time per path.
 */
#ifndef MAGPIE_SNAPSHOT_H
#define MAGPIE_SNAPSHOT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/cache.h"
#include "magpie/clock.h"

#define MP_SNAPSHOT_VERSION 1
#define MP_SNAPSHOT_HEADER_BYTES 256u
#define MP_SNAPSHOT_BLOCK_HEADER_BYTES 32u
#define MP_SNAPSHOT_RECORD_BYTES 30u
#define MP_SNAPSHOT_RANKS 8 /* CLOCK ranks: hits (0..3) times two, plus fetched */

/* What a save or a load did, for the log and the tests. */
struct mp_snapshot_report {
    uint64_t items;      /* written, or loaded */
    uint64_t bytes;      /* of their keys and values */
    uint64_t file_bytes; /* the file's size */
    double seconds;
    uint64_t max_cas;
    /* save: items left out because readers had pinned them to the limit (item.h) */
    uint64_t busy;
    /* load: items not loaded, by reason */
    uint64_t expired;   /* expired while the server was down (or flushed by a pending flush_all) */
    uint64_t too_large; /* over this server's -I */
    uint64_t no_room;   /* no memory left under this server's -m */
    uint64_t present;   /* the key was already there (the same key twice in a file) */
    uint64_t damaged;   /* in blocks that failed a check, as far as their headers tell */
    uint64_t damaged_blocks;
    uint64_t damaged_bytes; /* bytes of the file skipped as damaged */
    uint64_t missing;       /* items the header counts that no block holds (a truncated file) */
    unsigned passes;        /* reads of the file (one per CLOCK rank when -m is short) */
    bool found;             /* the file was there */
    bool header_ok;
};

struct mp_snapshot_opts {
    const char *path;
    const struct mp_clock *clock; /* relative time and the wall clock */
    /* What was skipped and why, one line each (a load's damage, a save's failure); may be NULL. */
    void (*note)(void *ctx, const char *msg);
    void *note_ctx;
    size_t buffer_bytes;        /* the write (and first read) buffer; 0 for 8 MiB */
    size_t block_bytes;         /* save: a block closes once its payload is this big; 0 for 1 MiB */
    const _Atomic bool *cancel; /* a save stops between stripes once it is set; may be NULL */
    bool skip_checksums;        /* load: accept a header and blocks whose checksums fail; for the fuzzer alone */
};

/* Write every live item to o->path (above). 0, or a negative errno with a note saying what failed
 * (the file at o->path is then as it was); -ECANCELED when o->cancel was set. */
int mp_snapshot_save(struct mp_cache *c, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r);

/* Load o->path into a cache that is not yet serving (above). A missing file loads nothing; a
 * damaged one loads what is whole. 0, or a negative errno when the file could not be read at all
 * (the cache then holds whatever came before the error); never a reason not to start. A PATH.tmp
 * left by a writer that was killed is removed. */
int mp_snapshot_load(struct mp_cache *c, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r);

/* The same from an open file (the fuzzer's entry; o->path names it in notes). */
int mp_snapshot_load_fd(struct mp_cache *c, int fd, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r);

/* What the server's snapshots have done, for `stats` and the metrics page. Written with relaxed
 * stores by whoever loads or saves, one at a time (the server before it serves, the timer's thread,
 * the server again once the timer has stopped); read by anyone. */
struct mp_snapshot_status {
    _Atomic uint64_t loaded_items; /* at the start */
    _Atomic uint64_t load_us;
    _Atomic uint64_t saves;         /* while serving (-o snapshot_interval) */
    _Atomic uint64_t save_failures; /* of those */
    _Atomic int64_t last_save_at;   /* Unix time the last of those completed; 0 for none */
    _Atomic uint64_t last_save_us;
    _Atomic uint64_t last_save_items;
};

/*
 * -o snapshot_interval=N: a thread that saves every `interval` seconds. Its saves run at a lower
 * CPU priority than the workers. mp_snapshot_timer_stop cancels a save in progress (its temporary
 * file is removed, the last complete snapshot stays) and joins the thread.
 */
struct mp_snapshot_timer {
    struct mp_cache *cache;
    struct mp_snapshot_opts opts;
    unsigned interval;
    void (*done)(void *ctx, int rc, const struct mp_snapshot_report *r); /* after each save */
    void *done_ctx;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop */
    pthread_cond_t wake;
    bool stop;
    bool running;
    _Atomic bool cancel;
};

int mp_snapshot_timer_start(struct mp_snapshot_timer *t, struct mp_cache *c, const struct mp_snapshot_opts *o,
                            unsigned interval, void (*done)(void *ctx, int rc, const struct mp_snapshot_report *r),
                            void *done_ctx);
void mp_snapshot_timer_stop(struct mp_snapshot_timer *t);

#endif

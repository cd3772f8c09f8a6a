/* snapshot: see include/magpie/snapshot.h */
#define _GNU_SOURCE /* sync_file_range, memmem */
#include "magpie/snapshot.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "magpie/chain.h"
#include "magpie/config.h" /* MP_VERSION, written into the header */

/* ---- the format ------------------------------------------------------------------------------- */

#define HDR MP_SNAPSHOT_HEADER_BYTES
#define BLK MP_SNAPSHOT_BLOCK_HEADER_BYTES
#define REC MP_SNAPSHOT_RECORD_BYTES
#define RANKS MP_SNAPSHOT_RANKS

/* "\r\n" and a NUL in the magic catch a file mangled as text. */
static const char FILE_MAGIC[8] = {'M', 'P', 'S', 'N', 'A', 'P', '\r', '\n'};
static const char BLOCK_MAGIC[4] = {'M', 'P', 'B', (char)MP_SNAPSHOT_VERSION};

#define BLOCK_DEFAULT ((size_t)1 << 20)                       /* a block closes once its payload is this big */
#define COPY_MAX ((uint32_t)64 << 10)                         /* larger values are written from the item */
#define BUFFER_DEFAULT ((size_t)8 << 20)                      /* the write buffer, and the first read buffer */
#define BLOCK_MAX (((uint64_t)1 << 30) + ((uint64_t)1 << 20)) /* over any block a writer makes: -I is <= 1 GiB */
#define WRITEBACK_CHUNK ((uint64_t)32 << 20)
#define META_FLAGS (MP_ITEM_STALE | MP_ITEM_TOKEN_SENT | MP_ITEM_KEY_BINARY)
#define PREFAULT_MIN ((uint64_t)8 << 20) /* loads smaller than this fault their pages in as they go */
#define NOTES_MAX 20                     /* notes about damage a load writes before it only counts */

static void put32(char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put64(char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static uint64_t sum(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

/* A record's state word: the CAS in the low 56 bits, the CLOCK byte (mp_item_clock_byte) in the
 * top 8. The file's own layout, whatever the stamp's in memory. */
#define STATE_CAS_MASK ((UINT64_C(1) << 56) - 1)

static uint8_t clock_of(uint64_t state)
{
    return (uint8_t)(state >> 56);
}

/* A CLOCK rank from a record's CLOCK byte: hits count double, having been read at all once. */
static unsigned rank_of(uint64_t state)
{
    uint8_t clock = clock_of(state);
    return (clock & 3u) * 2 + (clock >> 7);
}

/* The file header. Offsets: 0 magic, 8 version, 12 header size, 16 written at (Unix time), 24
 * items, 32 bytes of keys and values, 40 blocks, 48 largest CAS, 56 pending flush_all (Unix time,
 * 0 for none), 64 arena bytes (-m), 72 item max (-I), 80 page size, 84 classes, 88 smallest chunk,
 * 96 items per rank, 160 item bytes (mp_item_total) per rank, 224 software, 248 checksum. */
struct header {
    uint32_t version;
    uint64_t written_at, items, bytes, blocks, max_cas, flush_at, arena_bytes, item_max;
    uint32_t page_size, nclasses, min_chunk;
    uint64_t rank_items[RANKS], rank_bytes[RANKS];
    char software[24];
};

static void header_encode(const struct header *h, char *p)
{
    memset(p, 0, HDR);
    memcpy(p, FILE_MAGIC, 8);
    put32(p + 8, h->version);
    put32(p + 12, HDR);
    put64(p + 16, h->written_at);
    put64(p + 24, h->items);
    put64(p + 32, h->bytes);
    put64(p + 40, h->blocks);
    put64(p + 48, h->max_cas);
    put64(p + 56, h->flush_at);
    put64(p + 64, h->arena_bytes);
    put64(p + 72, h->item_max);
    put32(p + 80, h->page_size);
    put32(p + 84, h->nclasses);
    put32(p + 88, h->min_chunk);
    for (int i = 0; i < RANKS; i++) {
        put64(p + 96 + 8 * i, h->rank_items[i]);
        put64(p + 160 + 8 * i, h->rank_bytes[i]);
    }
    memcpy(p + 224, h->software, sizeof(h->software));
    put64(p + 248, sum(p, 248));
}

enum header_state { HEADER_OK, HEADER_DAMAGED, HEADER_OTHER_VERSION };

static enum header_state header_decode(const char *p, struct header *h, bool skip_checksum)
{
    memset(h, 0, sizeof(*h));
    if (memcmp(p, FILE_MAGIC, 8) != 0 || (!skip_checksum && get64(p + 248) != sum(p, 248)))
        return HEADER_DAMAGED;
    h->version = get32(p + 8);
    if (h->version != MP_SNAPSHOT_VERSION)
        return HEADER_OTHER_VERSION;
    if (get32(p + 12) != HDR)
        return HEADER_DAMAGED;
    h->written_at = get64(p + 16);
    h->items = get64(p + 24);
    h->bytes = get64(p + 32);
    h->blocks = get64(p + 40);
    h->max_cas = get64(p + 48);
    h->flush_at = get64(p + 56);
    h->arena_bytes = get64(p + 64);
    h->item_max = get64(p + 72);
    h->page_size = get32(p + 80);
    h->nclasses = get32(p + 84);
    h->min_chunk = get32(p + 88);
    for (int i = 0; i < RANKS; i++) {
        h->rank_items[i] = get64(p + 96 + 8 * i);
        h->rank_bytes[i] = get64(p + 160 + 8 * i);
    }
    memcpy(h->software, p + 224, sizeof(h->software));
    h->software[sizeof(h->software) - 1] = '\0';
    return HEADER_OK;
}

/* A block header. Offsets: 0 magic, 4 items, 8 payload length, 16 payload checksum, 24 checksum
 * of the 24 bytes before it. */
struct block {
    uint32_t items;
    uint64_t len, payload_sum;
};

static void block_encode(char *p, uint32_t items, uint64_t len, uint64_t payload_sum)
{
    memcpy(p, BLOCK_MAGIC, 4);
    put32(p + 4, items);
    put64(p + 8, len);
    put64(p + 16, payload_sum);
    put64(p + 24, sum(p, 24));
}

/* One item's record: 0 state (CAS and CLOCK byte, above), 8 expiry (Unix time, 0 for never), 16
 * client flags, 20 value length, 24 key length, 25 meta flags, 26 seconds since its last access;
 * then the key and the value. */
struct record {
    uint64_t stamp, expires;
    uint32_t flags, nbytes;
    uint8_t nkey, iflags;
    uint32_t idle;
};

static void record_encode(char *p, const struct record *rc)
{
    put64(p, rc->stamp);
    put64(p + 8, rc->expires);
    put32(p + 16, rc->flags);
    put32(p + 20, rc->nbytes);
    p[24] = (char)rc->nkey;
    p[25] = (char)rc->iflags;
    put32(p + 26, rc->idle);
}

static void record_decode(const char *p, struct record *rc)
{
    rc->stamp = get64(p);
    rc->expires = get64(p + 8);
    rc->flags = get32(p + 16);
    rc->nbytes = get32(p + 20);
    rc->nkey = (uint8_t)p[24];
    rc->iflags = (uint8_t)p[25];
    rc->idle = get32(p + 26);
}

static void note(const struct mp_snapshot_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const struct mp_snapshot_opts *o, const char *fmt, ...)
{
    if (!o->note)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o->note(o->note_ctx, msg);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static char *tmp_path(const char *path)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (tmp) {
        memcpy(tmp, path, n);
        memcpy(tmp + n, ".tmp", 5);
    }
    return tmp;
}

/* ---- writing --------------------------------------------------------------------------------- */

#define NO_BLOCK SIZE_MAX

/* An item pinned under its stripe lock, to be written after it: its record as it was then. */
struct pin {
    struct mp_item *it;
    struct record rc;
};

struct writer {
    struct mp_cache *c;
    const struct mp_snapshot_opts *o;
    struct mp_snapshot_report *r;
    int fd;
    char *buf;
    size_t cap, len;
    size_t blk;     /* where the open block's header is in buf, or NO_BLOCK */
    size_t blk_max; /* a block closes once its payload is this big */
    uint32_t blk_items;
    uint64_t off; /* bytes handed to the file */
    uint64_t wb;  /* the start of what has not been pushed to the disk yet */
    uint32_t now;
    int64_t epoch; /* Unix time of relative second 0 */
    struct header h;
    struct pin *pins;
    size_t npins, pins_cap;
    int err; /* the first error, a negative errno */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fail(struct writer *w, int err, const char *what)
{
    if (w->err)
        return;
    w->err = err;
    note(w->o, "snapshot %s: %s: %s", w->o->path, what, strerror(-err));
}

/*
 * Writeback as the file grows: each 32 MiB range is handed to the disk once written, and the one
 * before it waited for and dropped from the page cache. Dirty pages stay bounded, the final fsync
 * has little left to do, and the snapshot does not sit in memory twice. Best effort: a filesystem
 * that supports neither call is simply left to the fsync.
 */
static void writeback(struct writer *w)
{
    while (w->off - w->wb >= WRITEBACK_CHUNK) {
        sync_file_range(w->fd, (off_t)w->wb, (off_t)WRITEBACK_CHUNK, SYNC_FILE_RANGE_WRITE);
        if (w->wb >= WRITEBACK_CHUNK) {
            off_t prev = (off_t)(w->wb - WRITEBACK_CHUNK);
            sync_file_range(w->fd, prev, (off_t)WRITEBACK_CHUNK,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
            posix_fadvise(w->fd, prev, (off_t)WRITEBACK_CHUNK, POSIX_FADV_DONTNEED);
        }
        w->wb += WRITEBACK_CHUNK;
    }
}

static void emit(struct writer *w, const char *p, size_t n)
{
    if (w->err || n == 0)
        return;
    int rc = write_all(w->fd, p, n);
    if (rc != 0) {
        fail(w, rc, "write");
        return;
    }
    w->off += n;
    writeback(w);
}

static void close_block(struct writer *w)
{
    if (w->blk == NO_BLOCK)
        return;
    char *hdr = w->buf + w->blk;
    size_t len = w->len - w->blk - BLK;
    if (w->blk_items == 0) {
        w->len = w->blk;
    } else {
        block_encode(hdr, w->blk_items, len, sum(hdr + BLK, len));
        w->h.blocks++;
    }
    w->blk = NO_BLOCK;
}

/* Close the open block and write the buffer out. */
static void flush(struct writer *w)
{
    close_block(w);
    emit(w, w->buf, w->len);
    w->len = 0;
}

/* Bytes a record may still take in the buffer, a new block's header counted. */
static size_t space(const struct writer *w)
{
    size_t used = w->len + (w->blk == NO_BLOCK ? BLK : 0);
    return used < w->cap ? w->cap - used : 0;
}

static void account(struct writer *w, const struct record *rc)
{
    unsigned rank = rank_of(rc->stamp);
    uint64_t cas = rc->stamp & STATE_CAS_MASK;
    w->h.items++;
    w->h.bytes += rc->nkey + (uint64_t)rc->nbytes;
    w->h.rank_items[rank]++;
    w->h.rank_bytes[rank] += mp_item_total(rc->nkey, rc->nbytes, rc->flags);
    if (cas > w->h.max_cas)
        w->h.max_cas = cas;
}

/* Append a record to the open block (opening one); the caller made sure it fits (space()). */
static void append(struct writer *w, const struct record *rc, const char *key, const char *value)
{
    if (w->blk == NO_BLOCK) {
        w->blk = w->len;
        w->blk_items = 0;
        w->len += BLK;
    }
    char *p = w->buf + w->len;
    record_encode(p, rc);
    memcpy(p + REC, key, rc->nkey);
    memcpy(p + REC + rc->nkey, value, rc->nbytes);
    w->len += REC + rc->nkey + (size_t)rc->nbytes;
    w->blk_items++;
    account(w, rc);
    if (w->len - w->blk - BLK >= w->blk_max)
        close_block(w);
}

/* A large value: a block of its own, its header, the record and the key from the buffer and the
 * value from the pinned item, a span (chain.h) at a time, so the value is never copied. */
static void write_large(struct writer *w, const struct record *rc, const struct mp_item *it)
{
    const struct mp_slabs *s = &w->c->slabs;
    close_block(w);
    if (w->cap - w->len < BLK + REC + rc->nkey)
        flush(w);
    char *hdr = w->buf + w->len, *p = hdr + BLK;
    record_encode(p, rc);
    memcpy(p + REC, mp_item_key(it), rc->nkey);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, p, REC + rc->nkey);
    size_t len;
    for (size_t off = 0; off < rc->nbytes; off += len) {
        const char *span = mp_chain_span(s, it, off, &len);
        XXH3_64bits_update(&st, span, len);
    }
    block_encode(hdr, 1, REC + rc->nkey + (uint64_t)rc->nbytes, XXH3_64bits_digest(&st));
    w->len += BLK + REC + rc->nkey;
    emit(w, w->buf, w->len);
    w->len = 0;
    for (size_t off = 0; off < rc->nbytes; off += len) {
        const char *span = mp_chain_span(s, it, off, &len);
        emit(w, span, len);
    }
    w->h.blocks++;
    account(w, rc);
}

static void record_of(const struct writer *w, const struct mp_hit *hit, struct record *rc)
{
    /* Under the stripe lock the CAS stands still; the CLOCK bits may move (a hit), as they may. */
    uint64_t stamp = mp_item_stamp(hit->it);
    rc->stamp = (hit->cas & STATE_CAS_MASK) | ((uint64_t)mp_item_clock_byte(stamp) << 56);
    rc->idle = mp_item_la_age(stamp, w->now);
    rc->expires = hit->exptime ? (uint64_t)(w->epoch + hit->exptime) : 0;
    rc->flags = hit->flags;
    rc->nbytes = hit->nbytes;
    rc->nkey = (uint8_t)hit->nkey;
    rc->iflags = atomic_load_explicit(&hit->it->iflags, memory_order_relaxed) & META_FLAGS;
}

/* Under the stripe lock: copy the item, or pin it for after (see snapshot.h). */
static void visit(void *ctx, const struct mp_hit *hit)
{
    struct writer *w = ctx;
    struct record rc;
    record_of(w, hit, &rc);
    if (hit->value && rc.nbytes <= COPY_MAX && REC + rc.nkey + (size_t)rc.nbytes <= space(w)) {
        append(w, &rc, hit->key, hit->value);
        return;
    }
    /* pins has room for the stripe's count as it was read before the lock; should the stripe have
     * grown since, the few over it are left out of this snapshot rather than allocated for here. */
    if (w->npins == w->pins_cap || !mp_cache_item_pinnable(hit->it)) {
        w->r->busy++;
        return;
    }
    mp_cache_item_ref(hit->it);
    w->pins[w->npins++] = (struct pin){hit->it, rc};
}

static void write_pins(struct writer *w)
{
    for (size_t i = 0; i < w->npins; i++) {
        struct pin *p = &w->pins[i];
        const char *key = mp_item_key(p->it), *value = mp_item_value(p->it);
        if (p->rc.nbytes > COPY_MAX || mp_item_chained(p->it)) {
            write_large(w, &p->rc, p->it);
        } else {
            if (REC + p->rc.nkey + (size_t)p->rc.nbytes > space(w))
                flush(w);
            append(w, &p->rc, key, value);
        }
        mp_cache_item_release(w->c, &p->it);
    }
    w->npins = 0;
}

static bool reserve_pins(struct writer *w, size_t n)
{
    if (n <= w->pins_cap)
        return true;
    struct pin *p = realloc(w->pins, n * sizeof(*p));
    if (!p)
        return false;
    w->pins = p;
    w->pins_cap = n;
    return true;
}

static void walk(struct writer *w)
{
    unsigned n = mp_cache_stripes(w->c);
    for (unsigned i = 0; i < n && !w->err; i++) {
        if (w->o->cancel && atomic_load_explicit(w->o->cancel, memory_order_relaxed)) {
            w->err = -ECANCELED;
            return;
        }
        uint32_t count;
        uint64_t bytes;
        mp_cache_stripe_size(w->c, i, &count, &bytes);
        if (count == 0)
            continue;
        /* Room for the whole stripe if the buffer can hold it: then nothing needs pinning. */
        uint64_t need = bytes + 2 * (uint64_t)count + BLK * (2 + bytes / w->blk_max);
        if (need > space(w))
            flush(w);
        if (!reserve_pins(w, (size_t)count + 64)) {
            fail(w, -ENOMEM, "memory for the walk");
            return;
        }
        mp_cache_visit_stripe(w->c, i, w->now, visit, w);
        write_pins(w);
    }
}

static void writer_header(struct writer *w)
{
    struct mp_cache *c = w->c;
    w->h.version = MP_SNAPSHOT_VERSION;
    w->h.written_at = (uint64_t)(w->epoch + w->now);
    uint32_t flush_at = atomic_load_explicit(&c->epoch.flush_at, memory_order_relaxed);
    w->h.flush_at = flush_at ? (uint64_t)(w->epoch + flush_at) : 0;
    w->h.arena_bytes = mp_slab_limit(&c->slabs); /* -m as it was */
    w->h.item_max = c->slabs.item_max;
    w->h.page_size = c->slabs.page_size;
    w->h.nclasses = c->slabs.nclasses;
    w->h.min_chunk = c->slabs.classes[1].size;
    snprintf(w->h.software, sizeof(w->h.software), "magpie %s", MP_VERSION);
}

/* fsync the directory that holds path, so the rename is on the disk too. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Header, fsync, rename, directory fsync. */
static void finish(struct writer *w, const char *tmp)
{
    flush(w);
    if (w->err)
        return;
    char hdr[HDR];
    header_encode(&w->h, hdr);
    if (pwrite(w->fd, hdr, HDR, 0) != (ssize_t)HDR) {
        fail(w, errno ? -errno : -EIO, "write of the header");
        return;
    }
    if (fsync(w->fd) != 0) {
        fail(w, -errno, "fsync");
        return;
    }
    posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED); /* clean now: out of the page cache */
    if (rename(tmp, w->o->path) != 0) {
        fail(w, -errno, "rename");
        return;
    }
    int rc = sync_dir(w->o->path);
    if (rc != 0)
        fail(w, rc, "fsync of its directory");
}

int mp_snapshot_save(struct mp_cache *c, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(r, 0, sizeof(*r));
    struct writer w = {.c = c, .o = o, .r = r, .fd = -1, .blk = NO_BLOCK};
    w.now = mp_clock_now(o->clock);
    w.epoch = (int64_t)mp_clock_wall(o->clock, 0);
    w.cap = o->buffer_bytes ? o->buffer_bytes : BUFFER_DEFAULT;
    w.blk_max = o->block_bytes ? o->block_bytes : BLOCK_DEFAULT;
    if (w.cap < 4096)
        w.cap = 4096;
    char *tmp = tmp_path(o->path);
    w.buf = malloc(w.cap);
    if (!tmp || !w.buf) {
        fail(&w, -ENOMEM, "memory for the write buffer");
        goto out;
    }
    /* A file left by a writer that was stopped goes first: O_EXCL then refuses anything planted. */
    unlink(tmp);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (w.fd < 0) {
        fail(&w, -errno, "cannot create the temporary file");
        goto out;
    }
    writer_header(&w);
    memset(w.buf, 0, HDR); /* the header's place; written last, once its counts are known */
    w.len = HDR;
    walk(&w);
    if (!w.err)
        finish(&w, tmp);
out:
    if (w.npins) /* a walk that failed between pinning and writing */
        for (size_t i = 0; i < w.npins; i++)
            mp_cache_item_release(c, &w.pins[i].it);
    if (w.fd >= 0) {
        close(w.fd);
        if (w.err)
            unlink(tmp);
    }
    free(w.pins);
    free(w.buf);
    free(tmp);
    r->items = w.h.items;
    r->bytes = w.h.bytes;
    r->file_bytes = w.off;
    r->max_cas = w.h.max_cas;
    r->seconds = seconds_since(&t0);
    return w.err;
}

/* ---- loading --------------------------------------------------------------------------------- */

struct loader {
    struct mp_cache *c;
    const struct mp_snapshot_opts *o;
    struct mp_snapshot_report *r;
    int fd;
    uint64_t size;
    char *buf; /* the file's bytes [start, start + len) */
    size_t cap, len;
    uint64_t start;
    int err;
    uint32_t now;
    int64_t epoch;
    struct header h;
    bool first;    /* the first pass: the one that counts damage */
    bool flushed;  /* a pending flush_all has taken effect since: every item is dead */
    unsigned want; /* ranks this pass loads, one bit each */
    unsigned notes;
    uint64_t max_cas;            /* over every record that passed the checks */
    uint64_t blocks, items_seen; /* whole blocks and their items (first pass) */
    uint64_t pass_loaded, pass_no_room;
};

static void damage(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void damage(struct loader *L, const char *fmt, ...)
{
    if (!L->first || ++L->notes > NOTES_MAX)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    note(L->o, "snapshot %s: %s", L->o->path, msg);
}

/* n bytes of the file at off, read into the buffer if they are not there; NULL past the end of
 * the file or on a read error (L->err). */
static const char *window(struct loader *L, uint64_t off, size_t n)
{
    if (off > L->size || n > L->size - off)
        return NULL;
    if (off >= L->start && off + n <= L->start + L->len)
        return L->buf + (off - L->start);
    if (n > L->cap) {
        size_t cap = (n + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
        char *b = malloc(cap);
        if (!b) {
            L->err = -ENOMEM;
            note(L->o, "snapshot %s: no memory for a block of %zu bytes", L->o->path, n);
            return NULL;
        }
        if (off >= L->start && off < L->start + L->len)
            memcpy(b, L->buf + (off - L->start), L->start + L->len - off);
        free(L->buf);
        L->buf = b;
        L->cap = cap;
    } else if (off >= L->start && off < L->start + L->len) {
        memmove(L->buf, L->buf + (off - L->start), L->start + L->len - off);
    }
    size_t keep = off >= L->start && off < L->start + L->len ? (size_t)(L->start + L->len - off) : 0;
    L->start = off;
    L->len = keep;
    size_t want = L->size - off < L->cap ? (size_t)(L->size - off) : L->cap;
    while (L->len < want) {
        ssize_t got = pread(L->fd, L->buf + L->len, want - L->len, (off_t)(off + L->len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            L->err = -errno;
            note(L->o, "snapshot %s: read error at offset %llu: %s; the rest of the file is skipped", L->o->path,
                 (unsigned long long)(off + L->len), strerror(errno));
            return NULL;
        }
        if (got == 0) { /* shorter than it was: what is there is all there is */
            L->size = off + L->len;
            break;
        }
        L->len += (size_t)got;
    }
    /* The disk reads the next window while this one is loaded. */
    posix_fadvise(L->fd, (off_t)(L->start + L->len), (off_t)L->cap, POSIX_FADV_WILLNEED);
    return n <= L->len ? L->buf : NULL;
}

static bool block_decode(const struct loader *L, const char *p, struct block *b)
{
    if (memcmp(p, BLOCK_MAGIC, 4) != 0)
        return false;
    if (!L->o->skip_checksums && get64(p + 24) != sum(p, 24))
        return false;
    b->items = get32(p + 4);
    b->len = get64(p + 8);
    b->payload_sum = get64(p + 16);
    return b->items > 0 && b->len <= BLOCK_MAX && b->items <= b->len / (REC + 1);
}

/* The offset of the next valid block header at or after `from`, or the file's size. */
static uint64_t next_block(struct loader *L, uint64_t from)
{
    while (from + BLK <= L->size && !L->err) {
        size_t n = L->size - from < L->cap ? (size_t)(L->size - from) : L->cap;
        const char *p = window(L, from, n);
        if (!p)
            break;
        const char *q = p, *end = p + n;
        while ((q = memmem(q, (size_t)(end - q), BLOCK_MAGIC, 4)) != NULL) {
            uint64_t at = from + (uint64_t)(q - p);
            if (at + BLK > L->size)
                return L->size;
            if (q + BLK > end)
                break; /* read again from here */
            struct block b;
            if (block_decode(L, q, &b))
                return at;
            q++;
        }
        /* Go on from the last bytes that could start a magic cut by the window's end. */
        uint64_t next = q ? from + (uint64_t)(q - p) : from + n - (n >= 3 ? 3 : n);
        if (next <= from)
            next = from + 1;
        from = next;
    }
    return L->size;
}

/* Every record of a block whole and in bounds, exactly filling it. */
static bool block_parse(struct loader *L, const char *p, const struct block *b, uint64_t *max_cas)
{
    uint64_t pos = 0;
    for (uint32_t i = 0; i < b->items; i++) {
        if (b->len - pos < REC)
            return false;
        struct record rc;
        record_decode(p + pos, &rc);
        uint64_t cas = rc.stamp & STATE_CAS_MASK;
        uint64_t size = REC + (uint64_t)rc.nkey + rc.nbytes;
        if (rc.nkey == 0 || rc.nkey > MP_KEY_MAX || (rc.iflags & ~META_FLAGS) || cas == 0 || cas > MP_ITEM_CAS_MASK ||
            size > b->len - pos)
            return false;
        if (cas > *max_cas)
            *max_cas = cas;
        pos += size;
    }
    return pos == b->len;
}

/* Items filled and waiting to be stored, a batch at a time (mp_cache_store_warm_batch). */
struct batch {
    struct mp_cache_warm w[MP_CACHE_WARM_BATCH];
    uint64_t bytes[MP_CACHE_WARM_BATCH];
    size_t n;
};

static void store_batch(struct loader *L, struct batch *b)
{
    struct mp_snapshot_report *r = L->r;
    mp_cache_store_warm_batch(L->c, b->w, b->n, L->now);
    for (size_t i = 0; i < b->n; i++) {
        if (b->w[i].res == MP_STORED) {
            r->items++;
            r->bytes += b->bytes[i];
            L->pass_loaded++;
        } else if (b->w[i].res == MP_NOT_STORED) {
            r->present++;
        } else {
            r->no_room++;
            L->pass_no_room++;
        }
    }
    b->n = 0;
}

/* A Unix time from the file as a time relative to this process's epoch. The file's 64 bits may be
 * anything (the fuzzer forges whole headers): clamped so the subtraction cannot overflow. */
static int64_t relative_time(const struct loader *L, uint64_t unix_time)
{
    int64_t t = unix_time > (uint64_t)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)unix_time;
    return t - L->epoch;
}

/* A record of a whole block: into the batch if this pass loads it and it is alive and fits. */
static void load_record(struct loader *L, const char *p, struct batch *b)
{
    struct mp_snapshot_report *r = L->r;
    struct record rc;
    record_decode(p, &rc);
    if (!(L->want & (1u << rank_of(rc.stamp))))
        return;
    uint32_t exptime = 0;
    if (L->flushed) {
        r->expired++;
        return;
    }
    if (rc.expires) {
        int64_t rel = relative_time(L, rc.expires);
        if (rel <= (int64_t)L->now) {
            r->expired++;
            return;
        }
        exptime = rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
    }
    const char *key = p + REC, *value = key + rc.nkey;
    enum mp_result res;
    struct mp_item *it = mp_cache_alloc_spare(L->c, key, rc.nkey, rc.flags, exptime, rc.nbytes, &res);
    if (!it) {
        if (res == MP_TOO_LARGE) {
            r->too_large++;
        } else {
            r->no_room++;
            L->pass_no_room++;
        }
        return;
    }
    mp_chain_write(&L->c->slabs, it, 0, value, rc.nbytes);
    if (rc.iflags)
        mp_item_set(it, rc.iflags, true);
    b->w[b->n] = (struct mp_cache_warm){
        .it = it, .cas = rc.stamp & STATE_CAS_MASK, .clock = clock_of(rc.stamp), .idle = rc.idle};
    b->bytes[b->n++] = rc.nkey + (uint64_t)rc.nbytes;
    if (b->n == MP_CACHE_WARM_BATCH)
        store_batch(L, b);
}

static void load_block(struct loader *L, const char *p, const struct block *blk)
{
    struct batch b;
    b.n = 0;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < blk->items; i++) {
        load_record(L, p + pos, &b);
        pos += REC + (uint64_t)(uint8_t)p[pos + 24] + get32(p + pos + 20);
    }
    store_batch(L, &b);
}

/* One read of the file, loading the records of the ranks in L->want. */
static void load_pass(struct loader *L)
{
    struct mp_snapshot_report *r = L->r;
    L->pass_loaded = L->pass_no_room = 0;
    r->passes++;
    uint64_t off = r->header_ok ? HDR : next_block(L, 0);
    if (!r->header_ok && L->first && off > 0)
        r->damaged_bytes += off;
    while (off + BLK <= L->size && !L->err) {
        const char *p = window(L, off, BLK);
        struct block b;
        if (!p)
            break;
        if (!block_decode(L, p, &b)) {
            uint64_t next = next_block(L, off + 1);
            damage(L, "bytes %llu to %llu hold no valid block (damaged); skipped", (unsigned long long)off,
                   (unsigned long long)next);
            if (L->first)
                r->damaged_bytes += next - off;
            off = next;
            continue;
        }
        if (b.len > L->size - off - BLK) {
            damage(L, "the block at offset %llu runs past the end of the file (truncated): its %u items are lost",
                   (unsigned long long)off, b.items);
            if (L->first) {
                r->damaged += b.items;
                r->damaged_blocks++;
                r->damaged_bytes += L->size - off;
            }
            break;
        }
        const char *payload = window(L, off + BLK, (size_t)b.len);
        if (!payload)
            break;
        uint64_t max_cas = 0;
        bool whole = L->o->skip_checksums || sum(payload, (size_t)b.len) == b.payload_sum;
        if (!whole || !block_parse(L, payload, &b, &max_cas)) {
            damage(L, "the block at offset %llu fails its %s: its %u items are skipped", (unsigned long long)off,
                   whole ? "record checks" : "checksum", b.items);
            if (L->first) {
                r->damaged += b.items;
                r->damaged_blocks++;
                r->damaged_bytes += BLK + b.len;
            }
        } else {
            if (L->first) {
                L->blocks++;
                L->items_seen += b.items;
                if (max_cas > L->max_cas)
                    L->max_cas = max_cas;
            }
            load_block(L, payload, &b);
        }
        off += BLK + b.len;
    }
    if (L->first && off < L->size && off + BLK > L->size && !L->err) {
        damage(L, "%llu bytes at the end are too few for a block (truncated); skipped",
               (unsigned long long)(L->size - off));
        r->damaged_bytes += L->size - off;
    }
    L->first = false;
}

/* Which ranks each pass loads: all at once when the file fits in memory with room to spare, else
 * from the hottest down, the first pass as many ranks as surely fit, then one rank a pass, until a
 * pass finds no room for something. Without a header, one pass of everything. */
static void load_passes(struct loader *L)
{
    struct mp_snapshot_report *r = L->r;
    uint64_t total = 0;
    for (int i = 0; i < RANKS; i++)
        total += L->h.rank_bytes[i];
    uint64_t budget = mp_slab_limit(&L->c->slabs) / 10 * 9; /* the -m limit, not the reserved arena */
    if (!r->header_ok || L->flushed || total <= budget) {
        L->want = (1u << RANKS) - 1;
        load_pass(L);
        return;
    }
    int rank = RANKS - 1;
    for (uint64_t used = 0; rank >= 0; rank--) {
        if (L->want && used + L->h.rank_bytes[rank] > budget)
            break;
        used += L->h.rank_bytes[rank];
        L->want |= 1u << rank;
    }
    load_pass(L);
    while (rank >= 0 && L->pass_no_room == 0 && !L->err) {
        L->want = 1u << rank--;
        if (L->h.rank_items[rank + 1])
            load_pass(L);
    }
    for (; rank >= 0; rank--) /* never tried: no room for them */
        r->no_room += L->h.rank_items[rank];
}

static void describe_header(struct loader *L)
{
    char when[32] = "?";
    time_t t = (time_t)L->h.written_at;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    note(L->o,
         "snapshot %s: written by %s at %s with -m %llu MiB -I %llu, %u slab classes from %u bytes: %llu items in "
         "%llu blocks",
         L->o->path, L->h.software, when, (unsigned long long)(L->h.arena_bytes >> 20),
         (unsigned long long)L->h.item_max, L->h.nclasses, L->h.min_chunk, (unsigned long long)L->h.items,
         (unsigned long long)L->h.blocks);
}

/* The header: whether to go on. A pending flush_all comes back as it was (or has already struck). */
static bool read_header(struct loader *L)
{
    struct mp_snapshot_report *r = L->r;
    const char *p = window(L, 0, HDR);
    enum header_state hs = p ? header_decode(p, &L->h, L->o->skip_checksums) : HEADER_DAMAGED;
    if (hs == HEADER_OTHER_VERSION) {
        note(L->o, "snapshot %s: written in format version %u; this Magpie reads version %d: not loaded", L->o->path,
             L->h.version, MP_SNAPSHOT_VERSION);
        r->damaged_bytes = L->size;
        return false;
    }
    if (hs == HEADER_DAMAGED) {
        if (L->size == 0)
            note(L->o, "snapshot %s: the file is empty: nothing to load", L->o->path);
        else
            damage(L, "the header is damaged or missing: loading the blocks that are whole, in file order");
        if (L->size == 0)
            return false;
        return true;
    }
    r->header_ok = true;
    describe_header(L);
    if (L->h.flush_at) {
        int64_t rel = relative_time(L, L->h.flush_at);
        if (rel <= (int64_t)L->now + 1) {
            note(L->o,
                 "snapshot %s: a flush_all pending when it was written has taken effect since: its items are dead",
                 L->o->path);
            L->flushed = true;
        }
    }
    return true;
}

int mp_snapshot_load_fd(struct mp_cache *c, int fd, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(r, 0, sizeof(*r));
    r->found = true;
    struct loader L = {.c = c, .o = o, .r = r, .fd = fd, .first = true};
    L.now = mp_clock_now(o->clock);
    L.epoch = (int64_t)mp_clock_wall(o->clock, 0);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        note(o, "snapshot %s: %s", o->path, strerror(errno));
        return -errno;
    }
    L.size = (uint64_t)sb.st_size;
    r->file_bytes = L.size;
    L.cap = o->buffer_bytes ? o->buffer_bytes : BUFFER_DEFAULT;
    if (L.cap > L.size)
        L.cap = L.size > 4096 ? (size_t)L.size : 4096;
    L.buf = malloc(L.cap);
    if (!L.buf) {
        note(o, "snapshot %s: no memory for the read buffer", o->path);
        return -ENOMEM;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (read_header(&L)) {
        /* The memory the items will take, committed at once (slab.h): a little over their bytes.
         * A small file is not worth it: a page (1 MiB) at least would be committed. */
        uint64_t need = r->header_ok ? L.h.bytes + L.h.items * (MP_ITEM_HDR + 4) : L.size;
        if (!L.flushed && need >= PREFAULT_MIN)
            mp_slab_prefault(&c->slabs, (size_t)(need + need / 8));
        load_passes(&L);
        uint64_t max_cas = r->header_ok && L.h.max_cas > L.max_cas ? L.h.max_cas : L.max_cas;
        /* Above every CAS in the file, loaded or not: a client may still hold one. */
        mp_epoch_reserve(&c->epoch, max_cas & MP_ITEM_CAS_MASK);
        r->max_cas = max_cas;
        if (r->header_ok && L.h.flush_at && !L.flushed) {
            int64_t at = relative_time(&L, L.h.flush_at);
            mp_cache_flush(c, L.now, at > UINT32_MAX ? UINT32_MAX : (uint32_t)at);
        }
        if (r->header_ok && L.h.items > L.items_seen + r->damaged) {
            r->missing = L.h.items - L.items_seen - r->damaged;
            if (L.err == 0)
                note(o, "snapshot %s: %llu of its %llu blocks were found whole; %llu items are missing (truncated?)",
                     o->path, (unsigned long long)L.blocks, (unsigned long long)L.h.blocks,
                     (unsigned long long)r->missing);
        }
    }
    if (L.notes > NOTES_MAX)
        note(o, "snapshot %s: %u more notes about damage not shown", o->path, L.notes - NOTES_MAX);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* loaded: the cache holds it now */
    free(L.buf);
    r->seconds = seconds_since(&t0);
    return L.err;
}

int mp_snapshot_load(struct mp_cache *c, const struct mp_snapshot_opts *o, struct mp_snapshot_report *r)
{
    memset(r, 0, sizeof(*r));
    char *tmp = tmp_path(o->path);
    if (tmp && unlink(tmp) == 0)
        note(o, "snapshot %s: removed %s, left unfinished by a writer that was stopped", o->path, tmp);
    free(tmp);
    int fd = open(o->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) {
            note(o, "snapshot %s: no such file: starting empty", o->path);
            return 0;
        }
        note(o, "snapshot %s: cannot open: %s; starting empty", o->path, strerror(err));
        return -err;
    }
    int rc = mp_snapshot_load_fd(c, fd, o, r);
    close(fd);
    return rc;
}

/* ---- the periodic writer --------------------------------------------------------------------- */

static void *timer_main(void *arg)
{
    struct mp_snapshot_timer *t = arg;
    /* Below the workers: a snapshot taken while serving takes the CPU they leave. (Nice values
     * are per thread on Linux; lowering one's own needs no privilege.) */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += t->interval;
        while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &at) != ETIMEDOUT)
            ;
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->lock);
        struct mp_snapshot_report r;
        int rc = mp_snapshot_save(t->cache, &t->opts, &r);
        if (t->done)
            t->done(t->done_ctx, rc, &r);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int mp_snapshot_timer_start(struct mp_snapshot_timer *t, struct mp_cache *c, const struct mp_snapshot_opts *o,
                            unsigned interval, void (*done)(void *ctx, int rc, const struct mp_snapshot_report *r),
                            void *done_ctx)
{
    memset(t, 0, sizeof(*t));
    t->cache = c;
    t->opts = *o;
    t->opts.cancel = &t->cancel;
    t->interval = interval;
    t->done = done;
    t->done_ctx = done_ctx;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&t->thread, NULL, timer_main, t);
    if (rc != 0) {
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        return -rc;
    }
    t->running = true;
    return 0;
}

void mp_snapshot_timer_stop(struct mp_snapshot_timer *t)
{
    if (!t->running)
        return;
    atomic_store(&t->cancel, true);
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    t->running = false;
}

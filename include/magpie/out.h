/*
 * out: a connection's pending replies, gathered for one writev.
 *
 * Replies are bytes copied into a growing buffer, or bytes of a pinned item (a large value
 * written from where it lives, a segment for each chunk it spans), kept in order as a list of
 * segments. Runs of the buffer are kept
 * as offsets, so the buffer can grow while replies are gathered. Whoever writes the segments to
 * the socket (conn) calls mp_out_reset once they are written.
 *
 * Ownership: an item handed to mp_out_item comes with a reference that the buffer keeps until
 * mp_out_reset or mp_out_undo drops it. Replies can be taken back to a mark (a get that an
 * optimistic read must redo, a get refused halfway), as long as nothing was written since.
 *
 * One thread (the connection's) owns a struct mp_out; it takes no lock. Allocation happens only
 * when a reply outgrows the buffers, which are then kept for the connection's next replies. If
 * it fails, `stopped` is set and every later reply is dropped: the connection must then close,
 * since a reply cannot be half-sent and keep the client in step.
 */
#ifndef MAGPIE_OUT_H
#define MAGPIE_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include "magpie/cache.h"

/* Values up to this size are copied into the buffer; larger ones are pinned and written from
 * the item. */
#define MP_OUT_COPY_MAX (16 * 1024)

/* A run of the buffer, or (ext != NULL) bytes of a pinned item. */
struct mp_out_seg {
    const char *ext;
    size_t off;
    size_t len;
};

/* How far the output had got, to take back what follows. */
struct mp_out_mark {
    size_t nsegs, len, held, pending;
    size_t last; /* the length of the last segment then: it may grow in place */
};

struct mp_out {
    struct mp_cache *cache; /* to drop the references of pinned items */
    char *buf;
    size_t cap, len;
    struct mp_out_seg *segs;
    size_t nsegs, segcap;
    struct mp_item **held;
    size_t nheld, heldcap;
    size_t pending; /* bytes described by segs */
    bool stopped;   /* allocation failed or the connection is closing: replies are dropped */
};

/* 0, or -1 when the first buffers cannot be allocated. */
int mp_out_init(struct mp_out *o, struct mp_cache *cache);
void mp_out_deinit(struct mp_out *o);

void mp_out_bytes(struct mp_out *o, const char *data, size_t n);
void mp_out_str(struct mp_out *o, const char *s);
/* The value of a pinned item, written from where it lives: one segment, or one per chunk of a
 * chained value (chain.h). Takes over the caller's reference (dropped if the reply cannot be
 * kept). */
void mp_out_item(struct mp_out *o, struct mp_item *it);
/* A hit's value: copied when small or read optimistically (hit->it NULL), else pinned (under
 * the stripe lock, where the engine hands it over) and written from the item. */
void mp_out_value(struct mp_out *o, const struct mp_hit *hit);

void mp_out_mark(const struct mp_out *o, struct mp_out_mark *m);
/* Back to the mark; nothing may have been written to the socket since. */
void mp_out_undo(struct mp_out *o, const struct mp_out_mark *m);
/* Everything was written: drop the pinned items, empty the buffer, shrink it if it grew big. */
void mp_out_reset(struct mp_out *o);
/* Room for a segment more than there are (the writer sizes its own iovec array from segcap). */
bool mp_out_seg_room(struct mp_out *o);

#endif

/* out: see include/magpie/out.h */
#include "magpie/out.h"

#include <stdlib.h>
#include <string.h>

#include "magpie/chain.h"

#define BUF_SIZE (16 * 1024)
#define BUF_KEEP (64 * 1024) /* a buffer grown past this shrinks back once written */
#define SEGS_INIT 16

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

int mp_out_init(struct mp_out *o, struct mp_cache *cache)
{
    memset(o, 0, sizeof(*o));
    o->cache = cache;
    o->buf = malloc(BUF_SIZE);
    o->segs = malloc(SEGS_INIT * sizeof(*o->segs));
    if (!o->buf || !o->segs) {
        mp_out_deinit(o);
        return -1;
    }
    o->cap = BUF_SIZE;
    o->segcap = SEGS_INIT;
    return 0;
}

void mp_out_deinit(struct mp_out *o)
{
    mp_out_reset(o);
    free(o->buf);
    free(o->segs);
    free(o->held);
    o->buf = NULL;
    o->segs = NULL;
    o->held = NULL;
}

bool mp_out_seg_room(struct mp_out *o)
{
    return grow((void **)&o->segs, &o->segcap, o->nsegs + 1, sizeof(struct mp_out_seg));
}

void mp_out_bytes(struct mp_out *o, const char *data, size_t n)
{
    if (n == 0 || o->stopped)
        return;
    if (!grow((void **)&o->buf, &o->cap, o->len + n, 1)) {
        o->stopped = true;
        return;
    }
    memcpy(o->buf + o->len, data, n);
    struct mp_out_seg *last = o->nsegs ? &o->segs[o->nsegs - 1] : NULL;
    if (last && !last->ext && last->off + last->len == o->len) {
        last->len += n;
    } else {
        if (!mp_out_seg_room(o)) {
            o->stopped = true;
            return;
        }
        o->segs[o->nsegs++] = (struct mp_out_seg){NULL, o->len, n};
    }
    o->len += n;
    o->pending += n;
}

void mp_out_str(struct mp_out *o, const char *s)
{
    mp_out_bytes(o, s, strlen(s));
}

void mp_out_item(struct mp_out *o, struct mp_item *it)
{
    if (o->stopped || !grow((void **)&o->held, &o->heldcap, o->nheld + 1, sizeof(*o->held))) {
        mp_cache_item_release(o->cache, &it);
        o->stopped = true;
        return;
    }
    o->held[o->nheld++] = it; /* from here on, mp_out_reset drops it */
    const struct mp_slabs *s = &o->cache->slabs;
    for (size_t off = 0; off < it->nbytes;) {
        size_t len;
        const char *p = mp_chain_span(s, it, off, &len);
        if (!mp_out_seg_room(o)) {
            o->stopped = true;
            return;
        }
        o->segs[o->nsegs++] = (struct mp_out_seg){p, 0, len};
        o->pending += len;
        off += len;
    }
}

void mp_out_value(struct mp_out *o, const struct mp_hit *h)
{
    if (h->value && (h->nbytes <= MP_OUT_COPY_MAX || !h->it)) {
        mp_out_bytes(o, h->value, h->nbytes);
    } else {
        mp_cache_item_ref(h->it);
        mp_out_item(o, h->it);
    }
}

static void release_held(struct mp_out *o, size_t from)
{
    for (size_t i = from; i < o->nheld; i++)
        mp_cache_item_release(o->cache, &o->held[i]);
    o->nheld = from;
}

void mp_out_mark(const struct mp_out *o, struct mp_out_mark *m)
{
    *m = (struct mp_out_mark){o->nsegs, o->len, o->nheld, o->pending, o->nsegs ? o->segs[o->nsegs - 1].len : 0};
}

void mp_out_undo(struct mp_out *o, const struct mp_out_mark *m)
{
    release_held(o, m->held);
    o->nsegs = m->nsegs;
    if (o->nsegs)
        o->segs[o->nsegs - 1].len = m->last;
    o->len = m->len;
    o->pending = m->pending;
}

void mp_out_reset(struct mp_out *o)
{
    release_held(o, 0);
    o->nsegs = 0;
    o->len = 0;
    o->pending = 0;
    if (o->cap > BUF_KEEP) {
        char *nb = realloc(o->buf, BUF_SIZE);
        if (nb) {
            o->buf = nb;
            o->cap = BUF_SIZE;
        }
    }
}

/*
 * chain: values larger than the largest slab class, kept as a chain of chunks.
 *
 * Pages are 1 MiB whatever -I is (slab.h), and the largest class is half a page. An item whose
 * mp_item_total() is larger than that is a chain (memcached's chunked items): n chunks of the
 * largest class, each holding `cap` bytes of the value (its chunk less the 24-byte header, item.h),
 * and the item itself, its head, in whatever class fits its header, client flags, key, the n chunk
 * handles and the value's last bytes, those past the chunks:
 *
 *   head (MP_ITEM_CHAINED):  header | flags | key | handle 0 .. handle n-1 | value [n*cap, nbytes)
 *   chunk i (MP_ITEM_CHUNK): header (next = the head's handle, exptime = i) | value [i*cap, ...)
 *
 * n is the fewest chunks that leave the head within the largest class, so an item of 1 MiB takes
 * two chunks and a head of about a hundred bytes: the memory memcached takes for it, and no small
 * item loses its page to a large one. The layout follows from the key length, whether client flags
 * are stored and the value's length, so nothing else records it.
 *
 * A value is read and written where it lives, a span at a time (mp_chain_span): one span for an
 * item that is not chained, one per chunk and one for the head's part for a chained one. Nothing
 * copies a chained value whole (but append and prepend, which make a new value).
 *
 * Lifetime: the head holds the one reference count (item.h); its chunks live as long as it does
 * and are freed with it, the chunks first and the head last, so a walker that holds a chunk's
 * class lock and finds it still MP_ITEM_CHUNK may read the head it names (lru.h): the head is
 * allocated at least until that lock is let go. Chunks are freed to their class directly, never
 * to a thread's magazine (slab.h), which is what makes that hold.
 *
 * No locks here: the caller holds what the item's state asks for (a reference, or a class lock).
 */
#ifndef MAGPIE_CHAIN_H
#define MAGPIE_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "magpie/item.h"
#include "magpie/slab.h"

static inline bool mp_item_chained(const struct mp_item *it)
{
    return mp_item_has(it, MP_ITEM_CHAINED);
}

/* Value bytes one chunk of a chain holds. */
static inline uint32_t mp_chain_cap(const struct mp_slabs *s)
{
    return s->classes[mp_slab_chunk_class(s)].size - MP_ITEM_HDR;
}

/* Bytes a head takes in its chunk, with n chunks (value bytes past them in the head). */
static inline size_t mp_chain_head_total(const struct mp_slabs *s, size_t nkey, size_t nbytes, bool cflags, uint32_t n)
{
    uint64_t in_chunks = (uint64_t)n * mp_chain_cap(s);
    return MP_ITEM_HDR + (cflags ? 4u : 0u) + nkey + 4 * (size_t)n + (nbytes > in_chunks ? nbytes - in_chunks : 0);
}

/* Whether an item of this shape is a chain: larger than the largest class. */
static inline bool mp_chain_needed(const struct mp_slabs *s, size_t nkey, size_t nbytes, uint32_t flags)
{
    return mp_item_total(nkey, nbytes, flags) > s->classes[mp_slab_chunk_class(s)].size;
}

/* Chunks of a chained item of this shape: the fewest that leave the head within the largest
 * class. */
static inline uint32_t mp_chain_count(const struct mp_slabs *s, size_t nkey, size_t nbytes, bool cflags)
{
    uint32_t n = (uint32_t)(nbytes / mp_chain_cap(s));
    while (mp_chain_head_total(s, nkey, nbytes, cflags, n) > s->classes[mp_slab_chunk_class(s)].size)
        n++;
    return n;
}

/* The chunks of a chained item. */
static inline uint32_t mp_chain_chunks(const struct mp_slabs *s, const struct mp_item *head)
{
    return mp_chain_count(s, head->nkey, head->nbytes, mp_item_has_cflags(head));
}

/* Handle i of a head's chain (0 while the chain is being built or freed). */
static inline mp_handle_t mp_chain_get(const struct mp_item *head, uint32_t i)
{
    mp_handle_t h;
    memcpy(&h, mp_item_value(head) + 4 * (size_t)i, 4);
    return h;
}

static inline void mp_chain_set(struct mp_item *head, uint32_t i, mp_handle_t h)
{
    memcpy(mp_item_value(head) + 4 * (size_t)i, &h, 4);
}

/* The head a chunk belongs to (see the lifetime rule above). */
static inline struct mp_item *mp_chain_head_of(const struct mp_slabs *s, const struct mp_item *chunk)
{
    return mp_slab_item(s, chunk->next);
}

/* The chunk of its chain a chunk is (0 for the first). */
static inline uint32_t mp_chain_index(const struct mp_item *chunk)
{
    return chunk->exptime;
}

/* Bytes of its own chunk an item takes: mp_item_total for an item that is not chained, the
 * head's part for one that is. */
size_t mp_chain_footprint(const struct mp_slabs *s, const struct mp_item *it);

/*
 * Where value byte `off` (< nbytes) of `it` is, and in *len how many of the value's bytes follow
 * it there contiguously: to the value's end, or for a chained item to the end of the chunk (or
 * head part) that holds it. Walking a value is a loop of spans.
 */
static inline char *mp_chain_span(const struct mp_slabs *s, const struct mp_item *it, size_t off, size_t *len)
{
    if (!mp_item_chained(it)) {
        *len = it->nbytes - off;
        return mp_item_value(it) + off;
    }
    uint32_t cap = mp_chain_cap(s), n = mp_chain_chunks(s, it);
    uint64_t in_chunks = (uint64_t)n * cap;
    if (off < in_chunks) {
        size_t within = off % cap;
        size_t left = it->nbytes - off;
        *len = cap - within < left ? cap - within : left;
        return (char *)mp_slab_item(s, mp_chain_get(it, (uint32_t)(off / cap))) + MP_ITEM_HDR + within;
    }
    *len = it->nbytes - off;
    return mp_item_value(it) + 4 * (size_t)n + (off - in_chunks);
}

/* Bytes past the value's end in the chunk that holds its last byte (or its key, for an empty
 * value): room a reader may fill beyond the value (conn.h's direct reads). */
size_t mp_chain_spare(const struct mp_slabs *s, const struct mp_item *it);

/* Copy n bytes into, out of, or between values, from the given offsets, span by span. */
void mp_chain_write(const struct mp_slabs *s, struct mp_item *it, size_t off, const char *src, size_t n);
void mp_chain_read(const struct mp_slabs *s, const struct mp_item *it, size_t off, char *dst, size_t n);
void mp_chain_copy(const struct mp_slabs *s, struct mp_item *dst, size_t doff, const struct mp_item *src, size_t soff,
                   size_t n);

/* Free a chained item whose last reference is gone, with no class lock held: its chunks (those
 * whose handles are set), then the head, each to its class. */
void mp_chain_free(struct mp_slabs *s, struct mp_item *head);

#endif

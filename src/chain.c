/* chain: see include/magpie/chain.h */
#include "magpie/chain.h"

size_t mp_chain_footprint(const struct mp_slabs *s, const struct mp_item *it)
{
    if (!mp_item_chained(it))
        return mp_item_total(it->nkey, it->nbytes, mp_item_has_cflags(it));
    return mp_chain_head_total(s, it->nkey, it->nbytes, mp_item_has_cflags(it), mp_chain_chunks(s, it));
}

size_t mp_chain_spare(const struct mp_slabs *s, const struct mp_item *it)
{
    size_t chunk = mp_slab_chunk_size(s, it);
    if (!mp_item_chained(it))
        return chunk - mp_item_total(it->nkey, it->nbytes, mp_item_has_cflags(it));
    uint32_t cap = mp_chain_cap(s), n = mp_chain_chunks(s, it);
    uint64_t in_chunks = (uint64_t)n * cap;
    if (it->nbytes > in_chunks)
        return chunk - mp_chain_head_total(s, it->nkey, it->nbytes, mp_item_has_cflags(it), n);
    /* the value ends in its last chunk */
    return (size_t)(in_chunks - it->nbytes);
}

void mp_chain_write(const struct mp_slabs *s, struct mp_item *it, size_t off, const char *src, size_t n)
{
    while (n > 0) {
        size_t len;
        char *p = mp_chain_span(s, it, off, &len);
        if (len > n)
            len = n;
        memcpy(p, src, len);
        src += len;
        off += len;
        n -= len;
    }
}

void mp_chain_read(const struct mp_slabs *s, const struct mp_item *it, size_t off, char *dst, size_t n)
{
    while (n > 0) {
        size_t len;
        const char *p = mp_chain_span(s, it, off, &len);
        if (len > n)
            len = n;
        memcpy(dst, p, len);
        dst += len;
        off += len;
        n -= len;
    }
}

void mp_chain_copy(const struct mp_slabs *s, struct mp_item *dst, size_t doff, const struct mp_item *src, size_t soff,
                   size_t n)
{
    while (n > 0) {
        size_t len;
        const char *p = mp_chain_span(s, src, soff, &len);
        if (len > n)
            len = n;
        mp_chain_write(s, dst, doff, p, len);
        doff += len;
        soff += len;
        n -= len;
    }
}

void mp_chain_free(struct mp_slabs *s, struct mp_item *head)
{
    unsigned cls = mp_slab_chunk_class(s);
    uint32_t n = mp_chain_chunks(s, head);
    pthread_mutex_lock(&s->classes[cls].lock);
    for (uint32_t i = 0; i < n; i++) {
        mp_handle_t h = mp_chain_get(head, i);
        if (h)
            mp_slab_free_locked(s, cls, mp_slab_item(s, h));
    }
    pthread_mutex_unlock(&s->classes[cls].lock);
    mp_slab_free(s, head);
}

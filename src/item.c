/* item: see include/magpie/item.h */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "magpie/item.h"

void mp_item_init(struct mp_item *it, const char *key, size_t nkey, uint32_t flags, uint32_t exptime, uint32_t nbytes)
{
    /* No CAS, no hits; the queue the allocator chose stays, and a swap keeps a promotion by the
     * CLOCK hand, which may already know the chunk (lru.c). */
    uint64_t old = atomic_load_explicit(&it->stamp, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&it->stamp, &old, old & MP_ITEM_SMALL, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    it->next = 0;
    it->exptime = exptime;
    it->nbytes = nbytes;
    atomic_store_explicit(&it->refs, 1, memory_order_relaxed);
    it->nkey = (uint8_t)nkey;
    atomic_store_explicit(&it->iflags, flags ? MP_ITEM_CFLAGS : 0, memory_order_relaxed);
    if (flags)
        memcpy(mp_item_suffix(it), &flags, 4);
    memcpy(mp_item_key(it), key, nkey);
}

void mp_item_overwrite(struct mp_item *dst, const struct mp_item *src)
{
    uint8_t keep = atomic_load_explicit(&dst->iflags, memory_order_relaxed) & MP_ITEM_LINKED;
    uint8_t fl = atomic_load_explicit(&((struct mp_item *)src)->iflags, memory_order_relaxed) & ~MP_ITEM_LINKED;
    __atomic_store_n(&dst->exptime, src->exptime, __ATOMIC_RELAXED);
    __atomic_store_n(&dst->nbytes, src->nbytes, __ATOMIC_RELAXED);
    atomic_store_explicit(&dst->iflags, (uint8_t)(fl | keep), memory_order_relaxed);
    if (fl & MP_ITEM_CFLAGS)
        memcpy(mp_item_suffix(dst), mp_item_suffix(src), 4);
    memcpy(mp_item_value(dst), mp_item_value(src), src->nbytes);
}

void mp_epoch_setup(struct mp_epoch *e)
{
    atomic_store(&e->next_cas, 1);
    atomic_store(&e->flush_cas, 0);
    atomic_store(&e->flush_at, 0);
    atomic_store(&e->oldest, 0);
}

/* Raise flush_cas to at least v. */
static void raise_flush_cas(struct mp_epoch *e, uint64_t v)
{
    uint64_t cur = atomic_load(&e->flush_cas);
    while (cur < v && !atomic_compare_exchange_weak(&e->flush_cas, &cur, v))
        ;
}

void mp_epoch_reserve(struct mp_epoch *e, uint64_t cas)
{
    uint64_t cur = atomic_load_explicit(&e->next_cas, memory_order_relaxed);
    while (cur <= cas && !atomic_compare_exchange_weak_explicit(&e->next_cas, &cur, cas + 1, memory_order_relaxed,
                                                                memory_order_relaxed))
        ;
}

/* A delayed flush whose time has come takes effect now: flush_cas first, then the deadline is
 * cleared, so whoever sees the deadline gone also sees the new cut-off. */
static void apply_due_flush(struct mp_epoch *e, uint32_t now)
{
    uint32_t at = atomic_load(&e->flush_at);
    if (at == 0 || at > now)
        return;
    raise_flush_cas(e, atomic_load(&e->next_cas));
    atomic_compare_exchange_strong(&e->flush_at, &at, 0);
}

uint64_t mp_epoch_next_cas(struct mp_epoch *e, uint32_t now)
{
    apply_due_flush(e, now);
    return atomic_fetch_add_explicit(&e->next_cas, 1, memory_order_relaxed);
}

void mp_epoch_flush(struct mp_epoch *e, uint32_t now, uint32_t cutoff)
{
    /* memcached: oldest_live = cutoff - 1 (an item of second t dies once t <= oldest_live), and
     * when that is not in the future, oldest_cas = a fresh CAS, which flushes everything stored so
     * far at once; oldest_live 0 disables flushing. */
    atomic_store(&e->oldest, cutoff > 1 ? cutoff - 1 : 0);
    if (cutoff <= 1) {
        atomic_store(&e->flush_at, 0);
        return;
    }
    if (cutoff <= now + 1)
        raise_flush_cas(e, atomic_load(&e->next_cas));
    atomic_store(&e->flush_at, cutoff > now ? cutoff : 0);
}

bool mp_item_expired(const struct mp_item *it, uint32_t now)
{
    uint32_t exp = mp_item_exptime(it);
    return exp != 0 && exp <= now;
}

bool mp_item_flushed(const struct mp_item *it, uint32_t now, struct mp_epoch *e)
{
    apply_due_flush(e, now);
    return mp_item_cas(it) < atomic_load_explicit(&e->flush_cas, memory_order_acquire);
}

void mp_lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
}

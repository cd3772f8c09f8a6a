/* slab: see include/magpie/slab.h */
#include "magpie/slab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB (1024u * 1024u)
#define ARENA_ROOM_MIN ((size_t)1 << 30)

static uint32_t align_up(size_t n)
{
    return (uint32_t)((n + MP_SLAB_ALIGN - 1) & ~(size_t)(MP_SLAB_ALIGN - 1));
}

/* Class sizes (slab.h): from the smallest chunk, each the previous times the factor, at least 8
 * bytes more, while under a page / MP_SLAB_SPLIT; from there the sizes that cut a page into k
 * equal chunks, k down to 2, the last half a page, the chunk chains are made of (memcached's
 * slab_chunk_max). */
static int lay_out_classes(struct mp_slabs *s, size_t min_chunk, double factor, char *err, size_t errlen)
{
    uint32_t size = align_up(MP_ITEM_HDR + min_chunk);
    unsigned n = 0;
    while (size < s->page_size / MP_SLAB_SPLIT) {
        if (n == MP_SLAB_CLASSES_MAX - MP_SLAB_SPLIT) {
            snprintf(err, errlen, "growth factor %.3f makes more than %d slab classes", factor, MP_SLAB_CLASSES_MAX);
            return -EINVAL;
        }
        s->classes[++n].size = size;
        uint32_t next = align_up((size_t)((double)size * factor));
        size = next > size + MP_SLAB_ALIGN ? next : size + MP_SLAB_ALIGN;
    }
    for (uint32_t k = s->page_size / size; k >= 2; k--) {
        uint32_t even = (s->page_size / k) & ~(MP_SLAB_ALIGN - 1); /* k of them fill the page */
        if (n == 0 || even > s->classes[n].size)
            s->classes[++n].size = even;
    }
    if (n == 0 || s->classes[n].size != s->page_size / 2)
        s->classes[++n].size = s->page_size / 2;
    s->nclasses = n;
    for (unsigned i = 1; i <= n; i++) {
        struct mp_slab_class *c = &s->classes[i];
        c->perpage = s->page_size / c->size;
        c->first_page = MP_SLAB_NONE;
        c->last_page = MP_SLAB_NONE;
        c->bump_page = MP_SLAB_NONE;
        c->hand_page = MP_SLAB_NONE;
        mp_lock_init(&c->lock);
        uint32_t cap = MP_SLAB_MAG_BYTES / c->size;
        s->mag_cap[i] = (uint8_t)(cap < 4 ? 0 : cap > MP_SLAB_MAG_MAX ? MP_SLAB_MAG_MAX : cap);
    }
    return 0;
}

int mp_slab_setup(struct mp_slabs *s, size_t mem_limit, size_t item_max, size_t min_chunk, double factor, char *err,
                  size_t errlen)
{
    static _Atomic uint64_t arenas;
    memset(s, 0, sizeof(*s));
    s->id = atomic_fetch_add_explicit(&arenas, 1, memory_order_relaxed) + 1;
    pthread_mutex_init(&s->caches_lock, NULL);
    s->item_max = item_max;
    s->page_size = MIB; /* whatever -I is: larger items are chains (chain.h) */
    size_t npages = mem_limit / s->page_size;
    if (npages == 0)
        npages = 1;
    if (npages * s->page_size > MP_SLAB_ARENA_MAX) {
        snprintf(err, errlen, "memory limit over %zu MiB is not supported", MP_SLAB_ARENA_MAX / MIB);
        return -EINVAL;
    }
    /* Room for cache_memlimit to grow: four times the limit, at least 1 GiB, within the handles'
     * reach. Only address space: pages cost memory once used. */
    size_t room = npages * s->page_size < ARENA_ROOM_MIN / 4 ? ARENA_ROOM_MIN : npages * s->page_size * 4;
    size_t max_pages = (room < MP_SLAB_ARENA_MAX ? room : MP_SLAB_ARENA_MAX) / s->page_size;
    if (min_chunk + MP_ITEM_HDR > s->page_size / 2) {
        snprintf(err, errlen, "minimum chunk %zu is too large for %u-byte pages", min_chunk, s->page_size);
        return -EINVAL;
    }
    atomic_store_explicit(&s->npages, (uint32_t)npages, memory_order_relaxed);
    s->npages_max = (uint32_t)(max_pages > npages ? max_pages : npages);
    int rc = lay_out_classes(s, min_chunk, factor, err, errlen);
    if (rc != 0)
        return rc;
    s->arena_size = (size_t)s->npages_max * s->page_size;
    /* Reserved, not committed: pages cost RSS only once items are written to them. */
    void *arena = mmap(NULL, s->arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (arena == MAP_FAILED) {
        snprintf(err, errlen, "cannot reserve %zu bytes of item memory", s->arena_size);
        return -ENOMEM;
    }
    s->arena = arena;
    s->base = (uintptr_t)s->arena - MP_SLAB_ALIGN;
    s->page_class = calloc(s->npages_max, sizeof(*s->page_class));
    s->page_next = malloc(s->npages_max * sizeof(*s->page_next));
    if (!s->page_class || !s->page_next) {
        mp_slab_teardown(s);
        snprintf(err, errlen, "%s", "out of memory for the page table");
        return -ENOMEM;
    }
    s->pages_free = MP_SLAB_NONE;
    s->pages_limbo = MP_SLAB_NONE;
    mp_lock_init(&s->pages_lock);
    return 0;
}

void mp_slab_teardown(struct mp_slabs *s)
{
    while (s->caches) {
        struct mp_slab_cache *tc = s->caches;
        s->caches = tc->next;
        pthread_mutex_destroy(&tc->lock);
        free(tc);
    }
    pthread_mutex_destroy(&s->caches_lock);
    if (s->arena)
        munmap(s->arena, s->arena_size);
    free((void *)s->page_class);
    free(s->page_next);
    for (unsigned i = 1; i <= s->nclasses; i++)
        pthread_mutex_destroy(&s->classes[i].lock);
    if (s->arena)
        pthread_mutex_destroy(&s->pages_lock);
    memset(s, 0, sizeof(*s));
}

unsigned mp_slab_class_for(const struct mp_slabs *s, size_t total)
{
    if (total > s->item_max || total > s->classes[s->nclasses].size)
        return 0;
    /* Binary search for the first class whose chunk holds total. */
    unsigned lo = 1, hi = s->nclasses;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (s->classes[mid].size >= total)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A page from the pool (a returned one, else a never-used one) while classes hold fewer than the
 * limit. */
static uint32_t take_page(struct mp_slabs *s)
{
    uint32_t page = MP_SLAB_NONE;
    pthread_mutex_lock(&s->pages_lock);
    if (s->pages_held < atomic_load_explicit(&s->npages, memory_order_relaxed)) {
        if (s->pages_free != MP_SLAB_NONE) {
            page = s->pages_free;
            s->pages_free = s->page_next[page];
            s->pages_nfree--;
        } else if (s->pages_bump < s->npages_max) {
            page = s->pages_bump++;
        }
        s->pages_held += page != MP_SLAB_NONE;
    }
    pthread_mutex_unlock(&s->pages_lock);
    return page;
}

/* Chain a page to a class, at the tail (the order the CLOCK hand passes pages). The caller holds
 * the class lock. */
static void chain_page_locked(struct mp_slabs *s, unsigned cls, uint32_t page)
{
    struct mp_slab_class *c = &s->classes[cls];
    atomic_store_explicit(&s->page_class[page], (uint16_t)cls, memory_order_relaxed);
    s->page_next[page] = MP_SLAB_NONE;
    if (c->last_page == MP_SLAB_NONE)
        c->first_page = page;
    else
        s->page_next[c->last_page] = page;
    c->last_page = page;
    c->npages++;
    if (c->hand_page == MP_SLAB_NONE) {
        c->hand_page = page;
        c->hand_chunk = 0;
    }
}

struct mp_item *mp_slab_alloc_locked(struct mp_slabs *s, unsigned cls)
{
    struct mp_slab_class *c = &s->classes[cls];
    struct mp_item *it;
    if (c->free_head) {
        it = mp_slab_item(s, c->free_head);
        c->free_head = it->next;
        c->nfree--;
    } else {
        if (c->bump_page == MP_SLAB_NONE) {
            uint32_t page = take_page(s);
            if (page == MP_SLAB_NONE)
                return NULL;
            /* At the tail: the chain is in the order pages were filled, which is the order the
             * CLOCK hand passes them, so the oldest items are looked at first. */
            chain_page_locked(s, cls, page);
            c->bump_page = page;
            c->bump_next = 0;
        }
        it = (struct mp_item *)(mp_slab_page_addr(s, c->bump_page) + (size_t)c->bump_next * c->size);
        if (++c->bump_next == c->perpage)
            c->bump_page = MP_SLAB_NONE;
    }
    /* Taken while the class lock is held: a page evacuation (lru.h) that looks at this chunk
     * after we let go must see it in use, though it is not initialised yet. */
    atomic_store_explicit(&it->iflags, 0, memory_order_relaxed);
    atomic_store_explicit(&it->refs, 1, memory_order_relaxed);
    c->used++;
    return it;
}

struct mp_item *mp_slab_alloc(struct mp_slabs *s, unsigned cls)
{
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    struct mp_item *it = mp_slab_alloc_locked(s, cls);
    pthread_mutex_unlock(&c->lock);
    return it;
}

void mp_slab_chunk_mark(struct mp_slabs *s, unsigned cls, struct mp_item *chunk, mp_handle_t head, uint32_t index,
                        uint32_t used)
{
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    mp_item_stamp_fresh(chunk, 0, memory_order_relaxed);
    chunk->next = head;
    chunk->exptime = index;
    chunk->nbytes = used;
    chunk->nkey = 0;
    atomic_store_explicit(&chunk->iflags, MP_ITEM_CHUNK, memory_order_relaxed);
    c->chunks++;
    pthread_mutex_unlock(&c->lock);
}

void mp_slab_free_locked(struct mp_slabs *s, unsigned cls, struct mp_item *it)
{
    struct mp_slab_class *c = &s->classes[cls];
    if (atomic_load_explicit(&it->iflags, memory_order_relaxed) & MP_ITEM_CHUNK)
        c->chunks--;
    mp_item_stamp_fresh(it, 0, memory_order_relaxed);
    atomic_store_explicit(&it->iflags, MP_ITEM_FREE, memory_order_relaxed);
    atomic_store_explicit(&it->refs, 0, memory_order_relaxed);
    it->next = c->free_head;
    c->free_head = mp_slab_handle(s, it);
    c->nfree++;
    c->used--;
}

void mp_slab_free(struct mp_slabs *s, struct mp_item *it)
{
    unsigned cls = mp_slab_class_of(s, it);
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    mp_slab_free_locked(s, cls, it);
    pthread_mutex_unlock(&c->lock);
}

/* The calling thread's cache for this arena, made on its first use; NULL when out of memory. */
static __thread struct {
    uint64_t arena;
    struct mp_slab_cache *cache;
} this_thread;

static struct mp_slab_cache *thread_cache(struct mp_slabs *s)
{
    if (this_thread.arena == s->id)
        return this_thread.cache;
    pthread_t me = pthread_self();
    pthread_mutex_lock(&s->caches_lock);
    struct mp_slab_cache *tc = s->caches;
    while (tc && !pthread_equal(tc->owner, me))
        tc = tc->next;
    if (!tc) {
        tc = calloc(1, sizeof(*tc) + (s->nclasses + 1) * sizeof(tc->mags[0]));
        if (tc) {
            pthread_mutex_init(&tc->lock, NULL);
            tc->owner = me;
            tc->next = s->caches;
            s->caches = tc;
        }
    }
    pthread_mutex_unlock(&s->caches_lock);
    if (tc) {
        this_thread.arena = s->id;
        this_thread.cache = tc;
    }
    return tc;
}

/* Put chunks freed by a thread on their class's free list. The caller holds the class lock. */
static void free_all_locked(struct mp_slabs *s, unsigned cls, const mp_handle_t *chunk, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        mp_slab_free_locked(s, cls, mp_slab_item(s, chunk[i]));
}

struct mp_item *mp_slab_cache_alloc(struct mp_slabs *s, unsigned cls)
{
    unsigned cap = s->mag_cap[cls];
    struct mp_slab_cache *tc = cap ? thread_cache(s) : NULL;
    if (!tc)
        return mp_slab_alloc(s, cls);
    struct mp_slab_mag *m = &tc->mags[cls];
    struct mp_item *it = NULL;
    mp_handle_t chunk[MP_SLAB_MAG_MAX];
    uint32_t nfreed = 0;
    pthread_mutex_lock(&tc->lock);
    if (m->nready) {
        it = mp_slab_item(s, m->ready[--m->nready]);
    } else {
        nfreed = m->nfreed;
        memcpy(chunk, m->freed, nfreed * sizeof(chunk[0]));
        m->nfreed = 0;
    }
    pthread_mutex_unlock(&tc->lock);
    if (it) {
        atomic_store_explicit(&it->refs, 1, memory_order_relaxed);
        return it;
    }
    /* Empty: under one class lock, this thread's freed chunks go to the free list, and one chunk
     * for the caller and half a magazine to keep come off it (the freed ones first). */
    uint32_t n = 0;
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    free_all_locked(s, cls, chunk, nfreed);
    it = mp_slab_alloc_locked(s, cls);
    while (it && n < cap / 2) {
        struct mp_item *more = mp_slab_alloc_locked(s, cls);
        if (!more)
            break;
        atomic_store_explicit(&more->refs, 0, memory_order_relaxed);
        chunk[n++] = mp_slab_handle(s, more);
    }
    pthread_mutex_unlock(&c->lock);
    if (n) {
        /* Only this thread adds to its magazine, and it was empty: there is room. */
        pthread_mutex_lock(&tc->lock);
        memcpy(&m->ready[m->nready], chunk, n * sizeof(chunk[0]));
        m->nready += n;
        pthread_mutex_unlock(&tc->lock);
    }
    return it;
}

void mp_slab_cache_free(struct mp_slabs *s, struct mp_item *it)
{
    unsigned cls = mp_slab_class_of(s, it);
    unsigned cap = s->mag_cap[cls];
    struct mp_slab_cache *tc = cap ? thread_cache(s) : NULL;
    if (!tc) {
        mp_slab_free(s, it);
        return;
    }
    mp_item_stamp_fresh(it, 0, memory_order_relaxed); /* as mp_slab_free_locked does */
    struct mp_slab_mag *m = &tc->mags[cls];
    mp_handle_t spill[MP_SLAB_MAG_MAX];
    uint32_t nspill = 0;
    pthread_mutex_lock(&tc->lock);
    if (m->nfreed == cap) {
        nspill = m->nfreed;
        memcpy(spill, m->freed, nspill * sizeof(spill[0]));
        m->nfreed = 0;
    }
    m->freed[m->nfreed++] = mp_slab_handle(s, it);
    pthread_mutex_unlock(&tc->lock);
    if (nspill) {
        struct mp_slab_class *c = &s->classes[cls];
        pthread_mutex_lock(&c->lock);
        free_all_locked(s, cls, spill, nspill);
        pthread_mutex_unlock(&c->lock);
    }
}

void mp_slab_cache_drain_locked(struct mp_slabs *s, unsigned cls)
{
    if (!s->mag_cap[cls])
        return;
    pthread_mutex_lock(&s->caches_lock);
    for (struct mp_slab_cache *tc = s->caches; tc; tc = tc->next) {
        pthread_mutex_lock(&tc->lock);
        struct mp_slab_mag *m = &tc->mags[cls];
        free_all_locked(s, cls, m->ready, m->nready);
        free_all_locked(s, cls, m->freed, m->nfreed);
        m->nready = m->nfreed = 0;
        pthread_mutex_unlock(&tc->lock);
    }
    pthread_mutex_unlock(&s->caches_lock);
}

uint64_t mp_slab_used_locked(struct mp_slabs *s, unsigned cls)
{
    uint64_t cached = 0;
    if (s->mag_cap[cls]) {
        pthread_mutex_lock(&s->caches_lock);
        for (struct mp_slab_cache *tc = s->caches; tc; tc = tc->next) {
            pthread_mutex_lock(&tc->lock);
            cached += tc->mags[cls].nready + tc->mags[cls].nfreed;
            pthread_mutex_unlock(&tc->lock);
        }
        pthread_mutex_unlock(&s->caches_lock);
    }
    return s->classes[cls].used - cached;
}

void mp_slab_page_release_locked(struct mp_slabs *s, unsigned cls, uint32_t page)
{
    struct mp_slab_class *c = &s->classes[cls];
    char *lo = mp_slab_page_addr(s, page), *hi = lo + s->page_size;
    /* Drop the page's chunks from the free list. */
    mp_handle_t *link = &c->free_head;
    while (*link) {
        struct mp_item *it = mp_slab_item(s, *link);
        if ((char *)it >= lo && (char *)it < hi) {
            *link = it->next;
            c->nfree--;
        } else {
            link = &it->next;
        }
    }
    /* Unchain the page; move the clock hand and bump pointer off it. */
    uint32_t *pl = &c->first_page, prev = MP_SLAB_NONE;
    while (*pl != page) {
        prev = *pl;
        pl = &s->page_next[*pl];
    }
    *pl = s->page_next[page];
    if (c->last_page == page)
        c->last_page = prev;
    c->npages--;
    if (c->bump_page == page)
        c->bump_page = MP_SLAB_NONE;
    if (c->hand_page == page) {
        c->hand_page = c->first_page;
        c->hand_chunk = 0;
    }
    c->pages_moved_out++;
    /* Give the memory back: the page reads as zeros (all chunks free) when next used. */
    madvise(lo, s->page_size, MADV_DONTNEED);
    atomic_store_explicit(&s->page_class[page], 0, memory_order_relaxed);
    pthread_mutex_lock(&s->pages_lock);
    s->page_next[page] = s->pages_limbo;
    s->pages_limbo = page;
    pthread_mutex_unlock(&s->pages_lock);
}

void mp_slab_pages_recycle(struct mp_slabs *s)
{
    pthread_mutex_lock(&s->pages_lock);
    uint32_t first = s->pages_limbo;
    s->pages_limbo = MP_SLAB_NONE;
    pthread_mutex_unlock(&s->pages_lock);
    if (first == MP_SLAB_NONE)
        return;
    /* Every page taken here was released before the wait begins (see slab.h). */
    if (s->grace)
        mp_grace_wait(s->grace);
    uint32_t last = first, n = 1;
    for (; s->page_next[last] != MP_SLAB_NONE; n++)
        last = s->page_next[last];
    pthread_mutex_lock(&s->pages_lock);
    s->page_next[last] = s->pages_free;
    s->pages_free = first;
    s->pages_nfree += n;
    s->pages_held -= n; /* limbo counted until now: its pages come back only after the grace period */
    pthread_mutex_unlock(&s->pages_lock);
}

void mp_slab_prefault(struct mp_slabs *s, size_t bytes)
{
    pthread_mutex_lock(&s->pages_lock);
    size_t from = (size_t)s->pages_bump * s->page_size;
    pthread_mutex_unlock(&s->pages_lock);
    size_t limit = (size_t)mp_slab_limit(s); /* -m: the arena reserves more, for cache_memlimit */
    if (from >= limit)
        return;
    size_t n = bytes < limit - from ? bytes : limit - from;
    n = (n + s->page_size - 1) / s->page_size * s->page_size;
    if (n > limit - from)
        n = limit - from;
        /* Huge pages for this stretch where the kernel gives them on request (transparent huge
         * pages in "madvise" mode): the loader writes all of it, and under a hypervisor that shadows
         * page tables the first write to each 4 KiB page costs a trap even once it is committed. */
#ifdef MADV_HUGEPAGE
    madvise(s->arena + from, n, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
    madvise(s->arena + from, n, MADV_POPULATE_WRITE);
#endif
}

uint64_t mp_slab_malloced(struct mp_slabs *s)
{
    uint64_t pages = 0;
    for (unsigned i = 1; i <= s->nclasses; i++) {
        pthread_mutex_lock(&s->classes[i].lock);
        pages += s->classes[i].npages;
        pthread_mutex_unlock(&s->classes[i].lock);
    }
    return pages * s->page_size;
}

int mp_slab_set_limit(struct mp_slabs *s, size_t bytes)
{
    size_t pages = bytes / s->page_size;
    if (pages == 0 || pages > s->npages_max)
        return -ERANGE;
    atomic_store_explicit(&s->npages, (uint32_t)pages, memory_order_relaxed);
    return 0;
}

uint64_t mp_slab_limit(const struct mp_slabs *s)
{
    return (uint64_t)atomic_load_explicit(&((struct mp_slabs *)s)->npages, memory_order_relaxed) * s->page_size;
}

uint32_t mp_slab_over_limit(struct mp_slabs *s)
{
    pthread_mutex_lock(&s->pages_lock);
    uint32_t limit = atomic_load_explicit(&s->npages, memory_order_relaxed);
    uint32_t over = s->pages_held > limit ? s->pages_held - limit : 0;
    pthread_mutex_unlock(&s->pages_lock);
    return over;
}

uint32_t mp_slab_pool_pages(struct mp_slabs *s)
{
    pthread_mutex_lock(&s->pages_lock);
    uint32_t n = s->pages_nfree;
    pthread_mutex_unlock(&s->pages_lock);
    return n;
}

int mp_slab_page_grant(struct mp_slabs *s, unsigned cls)
{
    struct mp_slab_class *c = &s->classes[cls];
    pthread_mutex_lock(&c->lock);
    uint32_t page = MP_SLAB_NONE;
    pthread_mutex_lock(&s->pages_lock);
    if (s->pages_free != MP_SLAB_NONE && s->pages_held < atomic_load_explicit(&s->npages, memory_order_relaxed)) {
        page = s->pages_free;
        s->pages_free = s->page_next[page];
        s->pages_nfree--;
        s->pages_held++;
    }
    pthread_mutex_unlock(&s->pages_lock);
    if (page != MP_SLAB_NONE) {
        chain_page_locked(s, cls, page);
        if (c->bump_page == MP_SLAB_NONE) {
            c->bump_page = page; /* its chunks are handed out in order, as a new page's */
            c->bump_next = 0;
        } else {
            /* The page reads as zeros (released with MADV_DONTNEED): every chunk free. */
            for (uint32_t i = c->perpage; i-- > 0;) {
                struct mp_item *it = (struct mp_item *)(mp_slab_page_addr(s, page) + (size_t)i * c->size);
                atomic_store_explicit(&it->iflags, MP_ITEM_FREE, memory_order_relaxed);
                it->next = c->free_head;
                c->free_head = mp_slab_handle(s, it);
                c->nfree++;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return page == MP_SLAB_NONE ? -ENOMEM : 0;
}

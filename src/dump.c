/* dump: see include/magpie/dump.h */
#include "magpie/dump.h"

#include <stdio.h>
#include <string.h>

#include "magpie/watch.h"

static void select_class(struct mp_dump *d, unsigned cls)
{
    d->classes[cls / 8] |= (uint8_t)(1u << (cls % 8));
}

static bool selected(const struct mp_dump *d, unsigned cls)
{
    return d->classes[cls / 8] & (1u << (cls % 8));
}

static void begin(struct mp_dump *d, enum mp_dump_kind kind)
{
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->cls = 1;
}

int mp_dump_begin_meta(struct mp_dump *d, const struct mp_cache *c, const char *what, size_t n)
{
    begin(d, MP_DUMP_META);
    unsigned nclasses = c->slabs.nclasses;
    if ((n == 3 && memcmp(what, "all", 3) == 0) || (n == 4 && memcmp(what, "hash", 4) == 0)) {
        for (unsigned i = 1; i <= nclasses; i++)
            select_class(d, i);
        return 0;
    }
    /* memcached takes ids below 64 whether it has such a class or not; Magpie's own go higher */
    unsigned max = nclasses > MP_DUMP_MC_CLASSES - 1 ? nclasses : MP_DUMP_MC_CLASSES - 1;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        unsigned long id = 0;
        while (j < n && what[j] != ',') {
            if (what[j] < '0' || what[j] > '9' || id > 100000)
                return -1;
            id = id * 10 + (unsigned long)(what[j] - '0');
            j++;
        }
        if (j == i || id < 1 || id > max)
            return -1;
        if (id <= nclasses)
            select_class(d, (unsigned)id);
        i = j + 1;
    }
    return 0;
}

void mp_dump_begin_cache(struct mp_dump *d, const struct mp_cache *c, unsigned id, uint32_t limit)
{
    begin(d, MP_DUMP_CACHE);
    d->limit = limit;
    for (unsigned i = id; id > 0 && i <= c->slabs.nclasses; i += MP_DUMP_MC_CLASSES - 1)
        select_class(d, i);
}

/* The page at place `ordinal` of class cls's chain, or MP_SLAB_NONE. Under the class lock. */
static uint32_t page_at(const struct mp_slabs *s, const struct mp_slab_class *c, uint32_t ordinal)
{
    uint32_t page = c->first_page;
    for (uint32_t i = 0; i < ordinal && page != MP_SLAB_NONE; i++)
        page = s->page_next[page];
    return page;
}

/* One line for a live item. Under the class lock: the chunk is not reused meanwhile, and a store
 * rewriting it in place changes neither its key nor its length's place (item.h). */
static bool emit_item(struct mp_dump *d, struct mp_cache *c, const struct mp_clock *clk, uint32_t now, unsigned cls,
                      struct mp_item *it, mp_dump_sink out, void *ctx)
{
    uint64_t stamp = mp_item_stamp(it);
    if (!mp_item_linked(it) || (stamp & MP_ITEM_CAS_MASK) == 0 || mp_item_dead(it, now, &c->epoch))
        return true;
    uint32_t exptime = mp_item_exptime(it);
    uint32_t nbytes = __atomic_load_n(&it->nbytes, __ATOMIC_RELAXED);
    const char *key = mp_item_key(it);
    char line[3 * MP_KEY_MAX + 200];
    int n;
    if (d->kind == MP_DUMP_META) {
        char enc[3 * MP_KEY_MAX + 1];
        mp_watch_uriencode(key, it->nkey, enc);
        n = snprintf(line, sizeof(line), "key=%s exp=%lld la=%lld cas=%llu fetch=%s cls=%u size=%zu\n", enc,
                     exptime == 0 ? -1LL : (long long)mp_clock_wall(clk, exptime),
                     (long long)mp_clock_wall(clk, now - mp_item_la_age(stamp, now)),
                     (unsigned long long)(stamp & MP_ITEM_CAS_MASK), stamp & MP_ITEM_FETCHED ? "yes" : "no", cls,
                     mp_item_total(it->nkey, nbytes, mp_item_has_cflags(it) ? 1 : 0));
    } else {
        if (mp_item_has(it, MP_ITEM_KEY_BINARY))
            return true; /* memcached does not print binary keys here */
        if (d->limit && d->shown >= d->limit)
            return false;
        n = snprintf(line, sizeof(line), "ITEM %.*s [%u b; %lld s]\r\n", (int)it->nkey, key, nbytes,
                     exptime == 0 ? 0LL : (long long)mp_clock_wall(clk, exptime));
        if (d->bytes + (size_t)n + 6 > MP_DUMP_CACHE_BYTES)
            return false;
        d->bytes += (size_t)n;
        d->shown++;
    }
    out(ctx, line, (size_t)n);
    return true;
}

bool mp_dump_step(struct mp_dump *d, struct mp_cache *c, const struct mp_clock *clk, size_t budget, mp_dump_sink out,
                  void *ctx)
{
    struct mp_slabs *s = &c->slabs;
    uint32_t now = mp_clock_now(clk);
    while (!d->done && budget > 0) {
        if (d->cls > s->nclasses) {
            d->done = true;
            break;
        }
        if (!selected(d, d->cls)) {
            d->cls++;
            continue;
        }
        struct mp_slab_class *sc = &s->classes[d->cls];
        pthread_mutex_lock(&sc->lock);
        uint32_t page = page_at(s, sc, d->ordinal);
        if (page == MP_SLAB_NONE) {
            pthread_mutex_unlock(&sc->lock);
            d->cls++;
            d->ordinal = d->chunk = 0;
            continue;
        }
        uint32_t n = page == sc->bump_page ? sc->bump_next : sc->perpage;
        while (d->chunk < n && budget > 0 && !d->done) {
            struct mp_item *it = (struct mp_item *)(mp_slab_page_addr(s, page) + (size_t)d->chunk * sc->size);
            if (!emit_item(d, c, clk, now, d->cls, it, out, ctx))
                d->done = true; /* cachedump's limit or cap */
            d->chunk++;
            budget--;
        }
        pthread_mutex_unlock(&sc->lock);
        if (d->chunk >= n) {
            d->ordinal++;
            d->chunk = 0;
        }
    }
    if (d->done)
        out(ctx, "END\r\n", 5);
    return d->done;
}

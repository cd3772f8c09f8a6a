/*
 * dump: listings of the keys in the cache, in memcached's formats: `lru_crawler metadump`
 * ("key=<url-encoded> exp=<unix time or -1> la=<unix time> cas=<n> fetch=<yes|no> cls=<n>
 * size=<bytes>\n" per item, then "END\r\n") and `stats cachedump <class> <limit>` ("ITEM <key>
 * [<bytes> b; <unix time or 0> s]\r\n", then "END\r\n").
 *
 * A dump is a cursor over the slab classes' pages (class, page ordinal in its chain, chunk) that
 * a connection advances one bounded batch at a time: each batch holds one class lock while it
 * looks at up to `budget` chunks and formats their lines into the caller's sink, and lets go. No
 * lock is held between batches, so the caller writes to its socket, waits for its client and
 * serves others in between, and a million keys go out in bounded memory. Items stored, moved or
 * deleted while a dump runs may be listed or not (memcached's crawler is no more exact); dead
 * items are not listed.
 *
 * Knows nothing of connections: the engine and the clock in, lines out.
 */
#ifndef MAGPIE_DUMP_H
#define MAGPIE_DUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/cache.h"
#include "magpie/clock.h"

/* memcached's class ids for cachedump (and metadump) are below 64. */
#define MP_DUMP_MC_CLASSES 64
#define MP_DUMP_CACHE_BYTES (2 * 1024 * 1024) /* memcached's cap on a cachedump reply */

enum mp_dump_kind { MP_DUMP_META, MP_DUMP_CACHE };

struct mp_dump {
    enum mp_dump_kind kind;
    uint8_t classes[(MP_SLAB_CLASSES_MAX + 8) / 8]; /* the classes to list, by bit */
    unsigned cls;                                   /* the cursor: class, */
    uint32_t ordinal;                               /* page by its place in the class's chain, */
    uint32_t chunk;                                 /* chunk on the page */
    uint32_t limit, shown;                          /* cachedump: items to list (0: all), listed */
    size_t bytes;                                   /* cachedump: bytes so far */
    bool done;
};

/* Where lines go. */
typedef void (*mp_dump_sink)(void *ctx, const char *data, size_t n);

/* lru_crawler metadump <what>: "all", "hash" (the same items: Magpie walks its classes either way)
 * or a comma list of class ids. 0, or -1 for a bad class id (memcached's BADCLASS). */
int mp_dump_begin_meta(struct mp_dump *d, const struct mp_cache *c, const char *what, size_t n);

/* stats cachedump <id> <limit>: memcached's ids are 1..63 and Magpie has finer classes, so id N
 * lists Magpie's classes N, N + 63, N + 126, ... (id 0 lists nothing, as memcached's class 0 is
 * its page pool). The caller refuses ids of 64 and more. */
void mp_dump_begin_cache(struct mp_dump *d, const struct mp_cache *c, unsigned id, uint32_t limit);

/* The next batch: look at up to `budget` chunks and write the lines of the live items among them,
 * and "END\r\n" when the dump is over. Returns true once it is over. */
bool mp_dump_step(struct mp_dump *d, struct mp_cache *c, const struct mp_clock *clk, size_t budget, mp_dump_sink out,
                  void *ctx);

#endif

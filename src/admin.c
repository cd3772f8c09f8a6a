/* admin: see include/magpie/admin.h */
#include "magpie/admin.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/dump.h"
#include "magpie/num.h"
#include "magpie/watch.h"

#define ARGS_MAX MP_PROTO_MAX_TOKENS

static void reply(struct mp_exec *x, bool noreply, const char *line)
{
    if (noreply)
        return;
    mp_out_str(x->out, line);
    mp_out_bytes(x->out, "\r\n", 2);
}

static bool is(const struct mp_token *t, const char *word)
{
    size_t n = strlen(word);
    return t->n == n && memcmp(t->p, word, n) == 0;
}

static bool u32_of(const struct mp_token *t, uint32_t *v)
{
    return mp_num_u32(t->p, t->n, v);
}

static bool crawler_on(const struct mp_exec *x)
{
    return x->cfg->lru_maintainer && atomic_load(&x->cache->lru.crawler);
}

/* ---- lru_crawler ----------------------------------------------------------------------------- */

static enum mp_next lru_crawler(struct mp_exec *x, const struct mp_token *a, size_t n)
{
    struct mp_lru *lru = &x->cache->lru;
    uint32_t v;
    if (n == 2 && (is(&a[0], "crawl") || is(&a[0], "metadump"))) {
        if (!crawler_on(x)) {
            reply(x, false, "CLIENT_ERROR lru crawler disabled");
            return MP_NEXT_CMD;
        }
        if (mp_dump_begin_meta(&x->dump, x->cache, a[1].p, a[1].n) != 0) {
            reply(x, false, "BADCLASS invalid class id");
            return MP_NEXT_CMD;
        }
        atomic_fetch_add_explicit(&lru->crawls, 1, memory_order_relaxed);
        if (is(&a[0], "metadump"))
            return MP_NEXT_DUMP;
        /* The reclaim pass crawls every class all the time: a crawl asked for is under way. */
        reply(x, false, "OK");
    } else if (n == 2 && is(&a[0], "tocrawl")) {
        reply(x, false, u32_of(&a[1], &v) ? "OK" : "CLIENT_ERROR bad command line format");
    } else if (n == 2 && is(&a[0], "sleep")) {
        if (!u32_of(&a[1], &v))
            reply(x, false, "CLIENT_ERROR bad command line format");
        else if (v > 1000000)
            reply(x, false, "CLIENT_ERROR sleep must be one second or less");
        else
            reply(x, false, "OK");
    } else if (n == 1 && is(&a[0], "enable")) {
        /* memcached answers so when its crawler thread runs already */
        if (!x->cfg->lru_maintainer || atomic_exchange(&lru->crawler, true)) {
            reply(x, false, "ERROR failed to start lru crawler thread");
        } else {
            reply(x, false, "OK");
        }
    } else if (n == 1 && is(&a[0], "disable")) {
        atomic_store(&lru->crawler, false);
        reply(x, false, "OK");
    } else {
        reply(x, false, "ERROR");
    }
    return MP_NEXT_CMD;
}

/* ---- slabs ----------------------------------------------------------------------------------- */

static void slabs_reassign(struct mp_exec *x, const struct mp_token *a)
{
    int32_t src, dst;
    if (!x->cfg->lru_maintainer) {
        reply(x, false, "CLIENT_ERROR slab reassignment disabled");
        return;
    }
    if (!mp_num_i32(a[1].p, a[1].n, &src) || !mp_num_i32(a[2].p, a[2].n, &dst)) {
        reply(x, false, "CLIENT_ERROR bad command line format");
        return;
    }
    static const char *const answers[] = {
        [MP_REASSIGN_OK] = "OK",
        [MP_REASSIGN_RUNNING] = "BUSY currently processing reassign request",
        [MP_REASSIGN_BADCLASS] = "BADCLASS invalid src or dst class id",
        [MP_REASSIGN_NOSPARE] = "NOSPARE source class has no spare pages",
        [MP_REASSIGN_SAME] = "SAME src and dst class are identical",
    };
    reply(x, false, answers[mp_lru_reassign(&x->cache->lru, src, dst)]);
}

static void slabs_automove(struct mp_exec *x, const struct mp_token *a, size_t n, bool noreply)
{
    uint32_t level;
    if (is(&a[1], "ratio")) {
        /* memcached keeps the ratio for its automover; Magpie's decides by evictions alone */
        char buf[32];
        char *end = NULL;
        if (n >= 3 && a[2].n < sizeof(buf)) {
            memcpy(buf, a[2].p, a[2].n);
            buf[a[2].n] = '\0';
            strtod(buf, &end);
        }
        reply(x, noreply, end && end != buf && *end == '\0' ? "OK" : "ERROR");
        return;
    }
    if (!u32_of(&a[1], &level)) {
        reply(x, noreply, "CLIENT_ERROR bad command line format");
        return;
    }
    if (level > 2) {
        reply(x, noreply, "ERROR");
        return;
    }
    atomic_store(&x->cache->lru.automove, (int)level);
    reply(x, noreply, "OK");
}

/* ---- the others ------------------------------------------------------------------------------ */

static void memlimit(struct mp_exec *x, const struct mp_token *a, bool noreply)
{
    uint32_t mb;
    if (!u32_of(&a[0], &mb))
        reply(x, noreply, "ERROR");
    else if (mb < 8)
        reply(x, noreply, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
    else if (mb > 1000000000)
        reply(x, noreply, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes");
    else if (mp_slab_set_limit(&x->cache->slabs, (size_t)mb * 1024 * 1024) != 0)
        reply(x, noreply, "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust");
    else
        reply(x, noreply, "OK");
}

static enum mp_next watch(struct mp_exec *x, const struct mp_token *a, size_t n)
{
    static const struct {
        const char *name;
        unsigned flag;
    } kinds[] = {
        {"fetchers", MP_WATCH_FETCHERS},
        {"mutations", MP_WATCH_MUTATIONS},
        {"evictions", MP_WATCH_EVICTIONS},
        /* memcached's other streams: accepted, and Magpie has nothing to send on them */
        {"rawcmds", 0},
        {"sysevents", 0},
        {"connevents", 0},
        {"proxyreqs", 0},
        {"proxyevents", 0},
        {"proxyuser", 0},
    };
    unsigned flags = n == 0 ? MP_WATCH_FETCHERS : 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < sizeof(kinds) / sizeof(kinds[0]) && !is(&a[i], kinds[k].name))
            k++;
        if (k == sizeof(kinds) / sizeof(kinds[0])) {
            reply(x, false, "ERROR");
            return MP_NEXT_CMD;
        }
        flags |= kinds[k].flag;
    }
    x->watcher = x->watch ? mp_watch_add(x->watch, flags) : NULL;
    if (!x->watcher) {
        reply(x, false, "WATCHER_TOO_MANY log watcher limit reached");
        return MP_NEXT_CMD;
    }
    reply(x, false, "OK");
    return MP_NEXT_WATCH;
}

static enum mp_next shutdown_cmd(struct mp_exec *x, const struct mp_token *a, size_t n)
{
    if (!x->cfg->shutdown_enabled) {
        reply(x, false, "ERROR: shutdown not enabled");
        return MP_NEXT_CMD;
    }
    if (n == 0 || (n == 1 && is(&a[0], "graceful"))) {
        /* The server's own graceful stop (server.h): replies already computed go out. memcached
         * closes this connection without a word. */
        raise(SIGTERM);
        return MP_NEXT_CLOSE;
    }
    reply(x, false, "CLIENT_ERROR invalid shutdown mode");
    return MP_NEXT_CMD;
}

enum mp_next mp_admin_run(struct mp_exec *x, const struct mp_request *req)
{
    struct mp_token a[ARGS_MAX];
    size_t n = mp_proto_split(req->keys, req->nkeys, a, ARGS_MAX);
    switch (req->cmd) {
    case MP_CMD_LRU_CRAWLER: return lru_crawler(x, a, n);
    case MP_CMD_SLABS:
        if (n == 3 && is(&a[0], "reassign"))
            slabs_reassign(x, a);
        else if (n >= 2 && is(&a[0], "automove"))
            slabs_automove(x, a, n, req->noreply);
        else
            reply(x, false, "ERROR");
        return MP_NEXT_CMD;
    case MP_CMD_MEMLIMIT: memlimit(x, a, req->noreply); return MP_NEXT_CMD;
    case MP_CMD_WATCH: return watch(x, a, n);
    case MP_CMD_SHUTDOWN: return shutdown_cmd(x, a, n);
    default: return MP_NEXT_CMD;
    }
}

static void detail(struct mp_exec *x, const struct mp_token *a, size_t n)
{
    if (n >= 2 && is(&a[1], "on")) {
        mp_stats_detail_set(x->stats, true);
        reply(x, false, "OK");
    } else if (n >= 2 && is(&a[1], "off")) {
        mp_stats_detail_set(x->stats, false);
        reply(x, false, "OK");
    } else if (n >= 2 && is(&a[1], "dump")) {
        size_t len;
        char *dump = mp_stats_detail_dump(x->stats, &len);
        if (dump)
            mp_out_bytes(x->out, dump, len);
        else
            reply(x, false, "SERVER_ERROR out of memory writing stats");
        free(dump);
    } else {
        reply(x, false, "CLIENT_ERROR usage: stats detail on|off|dump");
    }
}

bool mp_admin_stats(struct mp_exec *x, const char *args, size_t nargs, enum mp_next *next)
{
    struct mp_token a[ARGS_MAX];
    size_t n = mp_proto_split(args, nargs, a, ARGS_MAX);
    *next = MP_NEXT_CMD;
    if (n >= 1 && is(&a[0], "detail")) {
        detail(x, a, n);
        return true;
    }
    if (n < 1 || !is(&a[0], "cachedump"))
        return false;
    uint32_t id, limit;
    if (n < 3)
        reply(x, false, "CLIENT_ERROR bad command line");
    else if (!u32_of(&a[1], &id) || !u32_of(&a[2], &limit))
        reply(x, false, "CLIENT_ERROR bad command line format");
    else if (id >= MP_DUMP_MC_CLASSES)
        reply(x, false, "CLIENT_ERROR Illegal slab id");
    else {
        mp_dump_begin_cache(&x->dump, x->cache, id, limit);
        *next = MP_NEXT_DUMP;
    }
    return true;
}

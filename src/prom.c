/* prom: see include/magpie/prom.h */
#include "magpie/prom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/proto.h"

/* ---- the buffer ------------------------------------------------------------------------------- */

void mp_prom_buf_printf(struct mp_prom_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 16384;
        while (ncap - b->len <= (size_t)n)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

void mp_prom_buf_free(struct mp_prom_buf *b)
{
    free(b->p);
    *b = (struct mp_prom_buf){0};
}

/* ---- the set of stats ------------------------------------------------------------------------- */

void mp_prom_stats_init(struct mp_prom_stats *s)
{
    memset(s, 0, sizeof(*s));
}

void mp_prom_stats_deinit(struct mp_prom_stats *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* The class id a per-class stat's name starts with ("items:5:..." or "5:..."), or 0. */
static unsigned class_of(enum mp_prom_report report, const char *name)
{
    if (report == MP_PROM_ITEMS) {
        if (strncmp(name, "items:", 6) != 0)
            return 0;
        name += 6;
    }
    unsigned id = 0;
    const char *p = name;
    for (; *p >= '0' && *p <= '9' && id <= MP_SLAB_CLASSES_MAX; p++)
        id = id * 10 + (unsigned)(*p - '0');
    return p > name && *p == ':' && id <= MP_SLAB_CLASSES_MAX ? id : 0;
}

void mp_prom_stats_add(struct mp_prom_stats *s, enum mp_prom_report report, const char *name, const char *value)
{
    if (s->failed || strlen(name) >= MP_PROM_NAME_MAX)
        return; /* no name of a mapped stat is that long */
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        struct mp_prom_stat *nv = realloc(s->v, ncap * sizeof(*nv));
        if (!nv) {
            s->failed = true;
            return;
        }
        s->v = nv;
        s->cap = ncap;
    }
    struct mp_prom_stat *e = &s->v[s->n++];
    e->report = (uint8_t)report;
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->value, sizeof(e->value), "%s", value);
    s->sorted = false;
    if (report == MP_PROM_ITEMS || report == MP_PROM_SLABS) {
        unsigned id = class_of(report, name);
        if (id)
            s->classes[report - MP_PROM_ITEMS][id / 64] |= UINT64_C(1) << (id % 64);
    }
}

static int stat_cmp(const void *a, const void *b)
{
    const struct mp_prom_stat *x = a, *y = b;
    if (x->report != y->report)
        return (int)x->report - (int)y->report;
    return strcmp(x->name, y->name);
}

static const char *lookup(struct mp_prom_stats *s, enum mp_prom_report report, const char *name)
{
    if (s->n == 0)
        return NULL;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof(*s->v), stat_cmp);
        s->sorted = true;
    }
    struct mp_prom_stat key = {.report = (uint8_t)report};
    if (snprintf(key.name, sizeof(key.name), "%s", name) >= (int)sizeof(key.name))
        return NULL;
    const struct mp_prom_stat *e = bsearch(&key, s->v, s->n, sizeof(*s->v), stat_cmp);
    return e ? e->value : NULL;
}

/* ---- the mapping ------------------------------------------------------------------------------ */

/*
 * One family per metric name; each lists the stats it is made from. The names, labels and types
 * are memcached_exporter's (pkg/exporter/exporter.go), its extstore and proxy stats aside; the
 * help texts are Magpie's own. For a family of a per-class report (items, slabs) each source
 * gives one sample per class, labelled slab="N".
 */
enum conv {
    NUM,     /* the stat's number as it is */
    YESNO,   /* "yes" 1, "no" 0 */
    VERSION, /* 1, with the stat as the label version="..." */
    IS,      /* 1 when the stat reads `match`, else 0: one sample per value a state may take */
};

struct source {
    uint8_t report;
    const char *stat;   /* for items and slabs, the name after the class id */
    const char *labels; /* fixed labels, or NULL */
    const char *minus;  /* stats subtracted from it, space-separated, or NULL */
    uint8_t conv;
    const char *match; /* IS: the value that reads 1 */
};

struct family {
    const char *name;
    const char *type;
    const char *help;
    const char *when; /* a `stats settings` stat that must read "yes", or NULL */
    const struct source *src;
};

#define G MP_PROM_GENERAL
#define S MP_PROM_SETTINGS
#define I MP_PROM_ITEMS
#define L MP_PROM_SLABS
#define SOURCES(...) ((const struct source[]){__VA_ARGS__, {0}})
#define SRC(report, stat, labels)                                                                                      \
    {                                                                                                                  \
        report, stat, labels, NULL, NUM, NULL                                                                          \
    }
#define ONE(report, stat) SOURCES(SRC(report, stat, NULL))
#define STATE(stat, value)                                                                                             \
    {                                                                                                                  \
        G, stat, "state=\"" value "\"", NULL, IS, value                                                                \
    }
#define REASON(stat, value) SRC(G, stat, "reason=\"" value "\"")
#define HIT(cmd) "command=\"" cmd "\",status=\"hit\""
#define MISS(cmd) "command=\"" cmd "\",status=\"miss\""

static const struct family FAMILIES[] = {
    /* `stats` */
    {"memcached_uptime_seconds", "untyped", "Seconds since the server started.", NULL, ONE(G, "uptime")},
    {"memcached_time_seconds", "gauge", "The server's Unix time.", NULL, ONE(G, "time")},
    {"memcached_version", "gauge", "The server's version, as its label; always 1.", NULL,
     SOURCES({G, "version", NULL, NULL, VERSION, NULL})},
    {"memcached_process_user_cpu_seconds_total", "counter", "User CPU time the server has used.", NULL,
     ONE(G, "rusage_user")},
    {"memcached_process_system_cpu_seconds_total", "counter", "System CPU time the server has used.", NULL,
     ONE(G, "rusage_system")},
    {"memcached_read_bytes_total", "counter", "Bytes read from clients.", NULL, ONE(G, "bytes_read")},
    {"memcached_written_bytes_total", "counter", "Bytes written to clients.", NULL, ONE(G, "bytes_written")},
    {"memcached_current_connections", "gauge", "Client connections open now.", NULL, ONE(G, "curr_connections")},
    {"memcached_max_connections", "gauge", "Most client connections the server takes (-c).", NULL, ONE(S, "maxconns")},
    {"memcached_connections_total", "counter", "Client connections accepted since the start.", NULL,
     ONE(G, "total_connections")},
    {"memcached_connections_rejected_total", "counter", "Connections refused because -c were open.", NULL,
     ONE(G, "rejected_connections")},
    {"memcached_connections_yielded_total", "counter", "Times a connection paused for its replies to drain.", NULL,
     ONE(G, "conn_yields")},
    {"memcached_connections_listener_disabled_total", "counter", "Times the listener stopped at the -c limit.", NULL,
     ONE(G, "listen_disabled_num")},
    {"memcached_current_bytes", "gauge", "Bytes of the items stored now.", NULL, ONE(G, "bytes")},
    {"memcached_limit_bytes", "gauge", "Item memory the server may use (-m).", NULL, ONE(G, "limit_maxbytes")},
    {"memcached_commands_total", "counter", "Commands by command and outcome.", NULL,
     SOURCES(SRC(G, "get_hits", HIT("get")), SRC(G, "get_misses", MISS("get")), SRC(G, "delete_hits", HIT("delete")),
             SRC(G, "delete_misses", MISS("delete")), SRC(G, "incr_hits", HIT("incr")),
             SRC(G, "incr_misses", MISS("incr")), SRC(G, "decr_hits", HIT("decr")), SRC(G, "decr_misses", MISS("decr")),
             SRC(G, "cas_hits", HIT("cas")), SRC(G, "cas_misses", MISS("cas")), SRC(G, "touch_hits", HIT("touch")),
             SRC(G, "touch_misses", MISS("touch")), SRC(G, "cas_badval", "command=\"cas\",status=\"badval\""),
             SRC(G, "cmd_flush", HIT("flush")),
             /* cmd_set counts cas commands too */
             {G, "cmd_set", HIT("set"), "cas_misses cas_hits cas_badval", NUM, NULL})},
    {"memcached_current_items", "gauge", "Items stored now.", NULL, ONE(G, "curr_items")},
    {"memcached_items_total", "counter", "Items stored since the start.", NULL, ONE(G, "total_items")},
    {"memcached_items_evicted_total", "counter", "Live items removed to make room for others.", NULL,
     ONE(G, "evictions")},
    {"memcached_items_reclaimed_total", "counter", "Expired items whose memory was reused or freed.", NULL,
     ONE(G, "reclaimed")},
    {"memcached_item_too_large_total", "counter", "Stores refused because the item was over -I.", NULL,
     ONE(G, "store_too_large")},
    {"memcached_item_no_memory_total", "counter", "Stores refused for want of memory.", NULL,
     ONE(G, "store_no_memory")},
    {"memcached_direct_reclaims_total", "counter", "Times a worker had to reclaim or evict an item itself.", NULL,
     ONE(G, "direct_reclaims")},
    {"memcached_lru_crawler_starts_total", "counter", "Times the LRU crawler started.", NULL,
     ONE(G, "lru_crawler_starts")},
    {"memcached_lru_crawler_items_checked_total", "counter", "Items the LRU crawler looked at.", NULL,
     ONE(G, "crawler_items_checked")},
    {"memcached_lru_crawler_reclaimed_total", "counter", "Items the LRU crawler freed.", NULL,
     ONE(G, "crawler_reclaimed")},
    {"memcached_lru_crawler_moves_to_cold_total", "counter", "Items moved to the COLD LRU.", NULL,
     ONE(G, "moves_to_cold")},
    {"memcached_lru_crawler_moves_to_warm_total", "counter", "Items moved to the WARM LRU.", NULL,
     ONE(G, "moves_to_warm")},
    {"memcached_lru_crawler_moves_within_lru_total", "counter", "Items bumped within the HOT or WARM LRU.", NULL,
     ONE(G, "moves_within_lru")},
    {"memcached_malloced_bytes", "gauge", "Memory given to slab pages.", NULL, ONE(G, "total_malloced")},
    {"memcached_accepting_connections", "gauge", "1 while the server accepts connections.", NULL,
     ONE(G, "accepting_conns")},

    /* `stats settings`: the exporter reads the LRU crawler's settings only when it is on */
    {"memcached_lru_crawler_enabled", "gauge", "1 when the LRU crawler is on.", "lru_crawler",
     SOURCES({S, "lru_crawler", NULL, NULL, YESNO, NULL})},
    {"memcached_lru_crawler_sleep", "gauge", "Microseconds the LRU crawler sleeps between items.", "lru_crawler",
     ONE(S, "lru_crawler_sleep")},
    {"memcached_lru_crawler_to_crawl", "gauge", "Most items the LRU crawler looks at per class and run.", "lru_crawler",
     ONE(S, "lru_crawler_tocrawl")},
    {"memcached_lru_crawler_maintainer_thread", "gauge", "1 when the LRU maintainer thread runs.", "lru_crawler",
     SOURCES({S, "lru_maintainer_thread", NULL, NULL, YESNO, NULL})},
    {"memcached_lru_crawler_hot_percent", "gauge", "Percent of a class's memory for the HOT LRU.", "lru_crawler",
     ONE(S, "hot_lru_pct")},
    {"memcached_lru_crawler_warm_percent", "gauge", "Percent of a class's memory for the WARM LRU.", "lru_crawler",
     ONE(S, "warm_lru_pct")},
    {"memcached_lru_crawler_hot_max_factor", "gauge", "Age limit of the HOT LRU, as a multiple of COLD's.",
     "lru_crawler", ONE(S, "hot_max_factor")},
    {"memcached_lru_crawler_warm_max_factor", "gauge", "Age limit of the WARM LRU, as a multiple of COLD's.",
     "lru_crawler", ONE(S, "warm_max_factor")},

    /* `stats items`, per class */
    {"memcached_slab_current_items", "gauge", "Items stored now in the class.", NULL, ONE(I, "number")},
    {"memcached_slab_items_age_seconds", "gauge", "Age of the class's oldest item.", NULL, ONE(I, "age")},
    {"memcached_slab_lru_hits_total", "counter", "Hits by the LRU the item was in.", NULL,
     SOURCES(SRC(I, "hits_to_hot", "lru=\"hot\""), SRC(I, "hits_to_warm", "lru=\"warm\""),
             SRC(I, "hits_to_cold", "lru=\"cold\""), SRC(I, "hits_to_temp", "lru=\"temporary\""))},
    {"memcached_slab_items_crawler_reclaimed_total", "counter", "Items of the class the LRU crawler freed.", NULL,
     ONE(I, "crawler_reclaimed")},
    {"memcached_slab_items_evicted_total", "counter", "Live items of the class evicted.", NULL, ONE(I, "evicted")},
    {"memcached_slab_items_evicted_nonzero_total", "counter", "Evicted items of the class that had an expiry time.",
     NULL, ONE(I, "evicted_nonzero")},
    {"memcached_slab_items_evicted_time_seconds", "untyped", "Seconds since the last evicted item was read.", NULL,
     ONE(I, "evicted_time")},
    {"memcached_slab_items_evicted_unfetched_total", "counter", "Evicted items of the class never read.", NULL,
     ONE(I, "evicted_unfetched")},
    {"memcached_slab_items_expired_unfetched_total", "counter", "Expired items of the class never read.", NULL,
     ONE(I, "expired_unfetched")},
    {"memcached_slab_items_outofmemory_total", "counter", "Stores in the class that found no memory.", NULL,
     ONE(I, "outofmemory")},
    {"memcached_slab_items_reclaimed_total", "counter", "Expired items of the class whose memory was reused.", NULL,
     ONE(I, "reclaimed")},
    {"memcached_slab_items_tailrepairs_total", "counter", "Times the class's LRU tail needed repair.", NULL,
     ONE(I, "tailrepairs")},
    {"memcached_slab_mem_requested_bytes", "untyped", "Bytes the class's items take.", NULL, ONE(I, "mem_requested")},
    {"memcached_slab_items_moves_to_cold", "untyped", "Items of the class moved to the COLD LRU.", NULL,
     ONE(I, "moves_to_cold")},
    {"memcached_slab_items_moves_to_warm", "untyped", "Items of the class moved to the WARM LRU.", NULL,
     ONE(I, "moves_to_warm")},
    {"memcached_slab_items_moves_within_lru", "untyped", "Items of the class bumped within HOT or WARM.", NULL,
     ONE(I, "moves_within_lru")},
    {"memcached_slab_hot_items", "gauge", "Items of the class in the HOT LRU.", NULL, ONE(I, "number_hot")},
    {"memcached_slab_warm_items", "gauge", "Items of the class in the WARM LRU.", NULL, ONE(I, "number_warm")},
    {"memcached_slab_cold_items", "gauge", "Items of the class in the COLD LRU.", NULL, ONE(I, "number_cold")},
    {"memcached_slab_temporary_items", "gauge", "Items of the class in the TEMPORARY LRU.", NULL,
     ONE(I, "number_temp")},
    {"memcached_slab_hot_age_seconds", "gauge", "Age of the oldest item in the class's HOT LRU.", NULL,
     ONE(I, "age_hot")},
    {"memcached_slab_warm_age_seconds", "gauge", "Age of the oldest item in the class's WARM LRU.", NULL,
     ONE(I, "age_warm")},

    /* `stats slabs`, per class */
    {"memcached_slab_commands_total", "counter", "Hits by command and class.", NULL,
     SOURCES(SRC(L, "get_hits", HIT("get")), SRC(L, "delete_hits", HIT("delete")), SRC(L, "incr_hits", HIT("incr")),
             SRC(L, "decr_hits", HIT("decr")), SRC(L, "cas_hits", HIT("cas")), SRC(L, "touch_hits", HIT("touch")),
             SRC(L, "cas_badval", "command=\"cas\",status=\"badval\""),
             {L, "cmd_set", HIT("set"), "cas_hits cas_badval", NUM, NULL})},
    {"memcached_slab_chunk_size_bytes", "gauge", "Size of the class's chunks.", NULL, ONE(L, "chunk_size")},
    {"memcached_slab_chunks_per_page", "gauge", "Chunks in one page of the class.", NULL, ONE(L, "chunks_per_page")},
    {"memcached_slab_current_pages", "gauge", "Pages the class has.", NULL, ONE(L, "total_pages")},
    {"memcached_slab_current_chunks", "gauge", "Chunks the class has.", NULL, ONE(L, "total_chunks")},
    {"memcached_slab_chunks_used", "gauge", "Chunks of the class holding items.", NULL, ONE(L, "used_chunks")},
    {"memcached_slab_chunks_free", "gauge", "Chunks of the class holding no item.", NULL, ONE(L, "free_chunks")},
    {"memcached_slab_chunks_free_end", "gauge", "Chunks of the class never used yet.", NULL, ONE(L, "free_chunks_end")},

    /* Magpie's own, from stats the exporter does not read */
    {"magpie_threads", "gauge", "Worker threads (-t).", NULL, ONE(G, "threads")},
    {"magpie_hash_bytes", "gauge", "Memory of the hash table.", NULL, ONE(G, "hash_bytes")},
    {"magpie_get_expired_total", "counter", "Gets that found their item expired.", NULL, ONE(G, "get_expired")},
    {"magpie_get_flushed_total", "counter", "Gets that found their item flushed.", NULL, ONE(G, "get_flushed")},
    {"magpie_items_expired_unfetched_total", "counter", "Expired items reclaimed without having been read.", NULL,
     ONE(G, "expired_unfetched")},
    {"magpie_items_evicted_unfetched_total", "counter", "Evicted items that had never been read.", NULL,
     ONE(G, "evicted_unfetched")},
    {"magpie_connections_idle_closed_total", "counter", "Connections closed for idling (-o idle_timeout).", NULL,
     ONE(G, "idle_kicks")},
    {"magpie_auth_commands_total", "counter", "Authentications tried (-Y).", NULL, ONE(G, "auth_cmds")},
    {"magpie_auth_errors_total", "counter", "Authentications refused: a wrong user or password (-Y).", NULL,
     ONE(G, "auth_errors")},
    {"magpie_ssl_handshake_errors_total", "counter", "TLS handshakes failed, timed out or renegotiations refused (-Z).",
     NULL, ONE(G, "ssl_handshake_errors")},
    {"magpie_ssl_new_sessions_total", "counter", "TLS sessions added to the session cache (ssl_session_cache).", NULL,
     ONE(G, "ssl_new_sessions")},
    {"magpie_slab_pages_moved_total", "counter", "Pages automove took from one class to give to another.", NULL,
     ONE(G, "slabs_moved")},
    {"magpie_slab_pages_moved_out_total", "counter", "Pages taken from the class.", NULL, ONE(I, "moves_to_pool")},
    {"magpie_slab_pages_moved_in_total", "counter", "Pages given to the class.", NULL, ONE(I, "moves_from_pool")},
    {"magpie_slab_items_evicted_for_move_total", "counter", "Items of the class evicted because their page moved.",
     NULL, ONE(I, "evicted_for_move")},
    {"magpie_ghost_bytes", "gauge", "Memory of the eviction policy's ghost of evicted keys (outside -m).", NULL,
     ONE(G, "ghost_bytes")},
    {"magpie_items_small_evicted_total", "counter", "Items evicted from the small queue without having been read.",
     NULL, ONE(G, "small_evictions")},
    {"magpie_items_small_promoted_total", "counter", "Items read in the small queue and moved to the main one.", NULL,
     ONE(G, "small_promotions")},
    {"magpie_items_ghost_hits_total", "counter", "New items the ghost sent straight to the main queue.", NULL,
     ONE(G, "ghost_hits")},
    {"magpie_slab_items_small_evicted_total", "counter", "Items of the class evicted from its small queue unread.",
     NULL, ONE(I, "small_evictions")},
    {"magpie_slab_items_small_promoted_total", "counter", "Items of the class moved from its small queue to main.",
     NULL, ONE(I, "small_promotions")},
    {"magpie_slab_items_ghost_hits_total", "counter", "New items of the class the ghost sent to the main queue.", NULL,
     ONE(I, "ghost_hits")},

    /* snapshots (-e) and the warm-up (--warm-from): only when they are on, as their stats */
    {"magpie_snapshot_loaded_items", "gauge", "Items the snapshot brought back at the start.", NULL,
     ONE(G, "snapshot_loaded_items")},
    {"magpie_snapshot_load_duration_seconds", "gauge", "Time the snapshot took to load at the start.", NULL,
     ONE(G, "snapshot_load_seconds")},
    {"magpie_snapshot_saves_total", "counter", "Snapshots written while serving (snapshot_interval).", NULL,
     ONE(G, "snapshot_saves")},
    {"magpie_snapshot_save_failures_total", "counter", "Snapshots that could not be written while serving.", NULL,
     ONE(G, "snapshot_save_failures")},
    {"magpie_snapshot_last_save_timestamp_seconds", "gauge", "Unix time the last snapshot was written; 0 for none.",
     NULL, ONE(G, "snapshot_last_save_time")},
    {"magpie_snapshot_last_save_duration_seconds", "gauge", "Time the last snapshot took to write.", NULL,
     ONE(G, "snapshot_last_save_seconds")},
    {"magpie_snapshot_last_save_items", "gauge", "Items in the last snapshot written.", NULL,
     ONE(G, "snapshot_last_save_items")},
    {"magpie_warm_state", "gauge", "The warm-up from a peer: 1 for the state it is in.", NULL,
     SOURCES(STATE("warm_state", "connecting"), STATE("warm_state", "copying"), STATE("warm_state", "done"),
             STATE("warm_state", "failed"), STATE("warm_state", "stopped"))},
    {"magpie_warm_keys_listed_total", "counter", "Keys the peer's listing gave.", NULL, ONE(G, "warm_keys_listed")},
    {"magpie_warm_items_copied_total", "counter", "Items copied from the peer.", NULL, ONE(G, "warm_items_copied")},
    {"magpie_warm_items_skipped_total", "counter", "Keys listed and not copied, by reason.", NULL,
     SOURCES(REASON("warm_items_present", "present"), REASON("warm_items_missing", "missing"),
             REASON("warm_items_too_large", "too_large"), REASON("warm_items_no_room", "no_room"),
             REASON("warm_items_bad_key", "bad_key"))},
    {"magpie_warm_bytes_total", "counter", "Bytes of the keys and values copied from the peer.", NULL,
     ONE(G, "warm_bytes")},
    {"magpie_warm_duration_seconds", "gauge", "Time the warm-up has taken so far, or took.", NULL,
     ONE(G, "warm_seconds")},
};

#undef G
#undef S
#undef I
#undef L

/* ---- rendering -------------------------------------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped. */
static void label_value(struct mp_prom_buf *b, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == '\\' || c == '"')
            mp_prom_buf_printf(b, "\\%c", c);
        else if (c == '\n')
            mp_prom_buf_printf(b, "\\n");
        else
            mp_prom_buf_printf(b, "%c", c);
    }
}

static bool is_number(const char *s)
{
    char *end;
    errno = 0;
    strtod(s, &end);
    return *s && !errno && *end == '\0';
}

struct page {
    struct mp_prom_buf *b;
    struct mp_prom_stats *s;
    const struct family *f;
    bool started; /* the family's HELP and TYPE are out */
};

static void family_header(struct page *pg)
{
    if (pg->started)
        return;
    mp_prom_buf_printf(pg->b, "# HELP %s %s\n# TYPE %s %s\n", pg->f->name, pg->f->help, pg->f->name, pg->f->type);
    pg->started = true;
}

/* The stat of a source for one class (0: not per class), or NULL. */
static const char *source_stat(struct page *pg, uint8_t report, const char *stat, unsigned cls)
{
    char name[MP_PROM_NAME_MAX];
    if (report == MP_PROM_ITEMS)
        snprintf(name, sizeof(name), "items:%u:%s", cls, stat);
    else if (report == MP_PROM_SLABS)
        snprintf(name, sizeof(name), "%u:%s", cls, stat);
    else
        return lookup(pg->s, (enum mp_prom_report)report, stat);
    return lookup(pg->s, (enum mp_prom_report)report, name);
}

/* The value of a source for a class, as text; false when a stat it needs is missing. */
static bool source_value(struct page *pg, const struct source *src, unsigned cls, char *out, size_t outlen)
{
    const char *v = source_stat(pg, src->report, src->stat, cls);
    if (!v)
        return false;
    if (src->conv == YESNO) {
        if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
            return false;
        snprintf(out, outlen, "%d", strcmp(v, "yes") == 0);
        return true;
    }
    if (src->conv == VERSION) {
        snprintf(out, outlen, "%s", "1");
        return true;
    }
    if (src->conv == IS) {
        snprintf(out, outlen, "%d", strcmp(v, src->match) == 0);
        return true;
    }
    if (!is_number(v))
        return false;
    if (!src->minus) {
        snprintf(out, outlen, "%s", v);
        return true;
    }
    long long total = strtoll(v, NULL, 10);
    const char *p = src->minus;
    while (*p) {
        char stat[MP_PROM_NAME_MAX];
        size_t n = strcspn(p, " ");
        snprintf(stat, sizeof(stat), "%.*s", (int)n, p);
        const char *m = source_stat(pg, src->report, stat, cls);
        if (!m || !is_number(m))
            return false;
        total -= strtoll(m, NULL, 10);
        p += n;
        p += *p == ' ';
    }
    snprintf(out, outlen, "%lld", total);
    return true;
}

static void source_sample(struct page *pg, const struct source *src, unsigned cls)
{
    char value[MP_PROM_VALUE_MAX];
    if (!source_value(pg, src, cls, value, sizeof(value)))
        return;
    family_header(pg);
    struct mp_prom_buf *b = pg->b;
    mp_prom_buf_printf(b, "%s", pg->f->name);
    const char *sep = "{";
    if (cls) {
        mp_prom_buf_printf(b, "%sslab=\"%u\"", sep, cls);
        sep = ",";
    }
    if (src->labels) {
        mp_prom_buf_printf(b, "%s%s", sep, src->labels);
        sep = ",";
    }
    if (src->conv == VERSION) {
        const char *v = source_stat(pg, src->report, src->stat, cls);
        mp_prom_buf_printf(b, "%sversion=\"", sep);
        label_value(b, v, strlen(v));
        mp_prom_buf_printf(b, "\"");
        sep = ",";
    }
    mp_prom_buf_printf(b, "%s %s\n", sep[0] == ',' ? "}" : "", value);
}

static bool has_class(const struct mp_prom_stats *s, uint8_t report, unsigned id)
{
    return (s->classes[report - MP_PROM_ITEMS][id / 64] >> (id % 64)) & 1;
}

static void render_family(struct page *pg)
{
    const struct family *f = pg->f;
    if (f->when) {
        const char *on = lookup(pg->s, MP_PROM_SETTINGS, f->when);
        if (!on || strcmp(on, "yes") != 0)
            return;
    }
    for (const struct source *src = f->src; src->stat; src++) {
        if (src->report != MP_PROM_ITEMS && src->report != MP_PROM_SLABS) {
            source_sample(pg, src, 0);
            continue;
        }
        for (unsigned cls = 1; cls <= MP_SLAB_CLASSES_MAX; cls++)
            if (has_class(pg->s, src->report, cls))
                source_sample(pg, src, cls);
    }
}

static void render_latency(struct mp_prom_buf *b, const struct mp_latency_sum *l)
{
    static const char name[] = "magpie_request_duration_seconds";
    bool started = false;
    for (unsigned c = 0; c < MP_LATENCY_NCMDS; c++) {
        uint64_t count = 0;
        for (unsigned k = 0; k < MP_LATENCY_NBUCKETS; k++)
            count += l->bucket[c][k];
        if (count == 0)
            continue;
        if (!started) {
            mp_prom_buf_printf(b,
                               "# HELP %s Time from the read that brought a command to the write of its reply, "
                               "by command.\n# TYPE %s histogram\n",
                               name, name);
            started = true;
        }
        const char *cmd = mp_proto_cmd_name((enum mp_cmd)c);
        uint64_t cumulative = 0;
        for (unsigned k = 0; k < MP_LATENCY_NBOUNDS; k++) {
            cumulative += l->bucket[c][k];
            mp_prom_buf_printf(b, "%s_bucket{command=\"%s\",le=\"%g\"} %llu\n", name, cmd,
                               (double)MP_LATENCY_BOUNDS_NS[k] / 1e9, (unsigned long long)cumulative);
        }
        mp_prom_buf_printf(b, "%s_bucket{command=\"%s\",le=\"+Inf\"} %llu\n", name, cmd, (unsigned long long)count);
        mp_prom_buf_printf(b, "%s_sum{command=\"%s\"} %llu.%09llu\n", name, cmd,
                           (unsigned long long)(l->sum_ns[c] / 1000000000u),
                           (unsigned long long)(l->sum_ns[c] % 1000000000u));
        mp_prom_buf_printf(b, "%s_count{command=\"%s\"} %llu\n", name, cmd, (unsigned long long)count);
    }
}

/* Whether n bytes are valid UTF-8 without control characters: what a label value can show as is. */
static bool printable_utf8(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
        if (len == 0 || c > 0xf4 || i + len > n)
            return false;
        uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void render_hotkeys(struct mp_prom_buf *b, const struct mp_hotkey *keys, size_t n)
{
    static const char name[] = "magpie_hotkey_requests";
    mp_prom_buf_printf(b,
                       "# HELP %s Requests for one of the most requested keys over the last one to two "
                       "minutes (approximate).\n# TYPE %s gauge\n",
                       name, name);
    for (size_t i = 0; i < n; i++) {
        const struct mp_hotkey *k = &keys[i];
        mp_prom_buf_printf(b, "%s{key=\"", name);
        if (!k->binary && printable_utf8((const unsigned char *)k->key, k->nkey)) {
            label_value(b, k->key, k->nkey);
            mp_prom_buf_printf(b, "\"}");
        } else {
            char b64[((MP_KEY_MAX + 2) / 3) * 4 + 1];
            size_t len = mp_proto_base64_encode((const unsigned char *)k->key, k->nkey, b64);
            mp_prom_buf_printf(b, "%.*s\",encoding=\"base64\"}", (int)len, b64);
        }
        mp_prom_buf_printf(b, " %llu\n", (unsigned long long)k->count);
    }
}

int mp_prom_render(struct mp_prom_stats *s, const struct mp_prom_extra *extra, struct mp_prom_buf *b)
{
    mp_prom_buf_printf(b, "# HELP memcached_up 1: the server answered this scrape.\n# TYPE memcached_up gauge\n"
                          "memcached_up 1\n");
    for (size_t i = 0; i < sizeof(FAMILIES) / sizeof(FAMILIES[0]); i++) {
        struct page pg = {b, s, &FAMILIES[i], false};
        render_family(&pg);
    }
    if (extra && extra->latency)
        render_latency(b, extra->latency);
    if (extra && extra->hotkeys)
        render_hotkeys(b, extra->hotkeys, extra->nhotkeys);
    return b->failed || s->failed ? -1 : 0;
}

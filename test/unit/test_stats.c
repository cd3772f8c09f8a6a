/* Unit tests for stats: per-thread counters, reset, and the `stats` reports. */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/config.h"
#include "magpie/hotkeys.h"
#include "magpie/stats.h"
#include "magpie/tls.h"

#define WALL ((time_t)1700000000)
#define MONO ((int64_t)5000) /* a CLOCK_MONOTONIC reading at the start */
#define NTHREADS 3

static struct mp_config cfg;
static struct mp_cache cache;
static struct mp_cache *c = &cache;
static struct mp_clock clk;
static struct mp_stats stats;
static struct mp_stats_source src;

/* What a report emitted, in order. */
#define LINES_MAX 4096
static struct {
    char name[64];
    char value[128];
} lines[LINES_MAX];
static size_t nlines;

static void collect(void *ctx, const char *name, const char *fmt, ...)
{
    ck_assert_uint_lt(nlines, LINES_MAX);
    snprintf(lines[nlines].name, sizeof(lines[nlines].name), "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lines[nlines].value, sizeof(lines[nlines].value), fmt, ap);
    va_end(ap);
    nlines++;
}

static int report(const char *args)
{
    nlines = 0;
    return mp_stats_report(&src, args, strlen(args), collect, NULL);
}

/* The value of a stat the last report emitted exactly once. */
static bool emitted(const char *name)
{
    for (size_t i = 0; i < nlines; i++)
        if (strcmp(lines[i].name, name) == 0)
            return true;
    return false;
}

static const char *stat_of(const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < nlines; i++) {
        if (strcmp(lines[i].name, name) == 0) {
            ck_assert_msg(found == NULL, "%s emitted twice", name);
            found = lines[i].value;
        }
    }
    ck_assert_msg(found != NULL, "%s not emitted", name);
    return found;
}

static unsigned long long stat_u(const char *name)
{
    return strtoull(stat_of(name), NULL, 10);
}

static void setup(void)
{
    mp_config_defaults(&cfg);
    cfg.mem_limit = 4 * MIB;
    cfg.threads = 2;
    struct mp_cache_config cc = test_cache_config(cfg.mem_limit);
    test_cache_setup(c, &cc);
    mp_clock_setup(&clk, WALL, MONO);
    mp_clock_tick(&clk, WALL + 100, MONO + 100);
    ck_assert_int_eq(mp_stats_setup(&stats, NTHREADS, c->slabs.nclasses), 0);
    src = (struct mp_stats_source){.cfg = &cfg, .cache = c, .clock = &clk, .stats = &stats};
    nlines = 0;
}

static void teardown(void)
{
    mp_stats_teardown(&stats);
    mp_cache_teardown(c);
}

/* ---- counters ---------------------------------------------------------------------------------- */

START_TEST(test_sum_adds_every_threads_block)
{
    MP_STAT_ADD(&stats.threads[0], cmd_get, 3);
    MP_STAT_ADD(&stats.threads[1], cmd_get, 4);
    MP_STAT_ADD(&stats.threads[2], cmd_get, 5);
    MP_STAT_CLASS_INC(&stats.threads[1], 3, get_hits);
    MP_STAT_ADD(&stats.threads[2], bytes_read, UINT64_C(1) << 40);
    MP_STAT_INC(&stats.threads[0], curr_connections);
    MP_STAT_INC(&stats.threads[0], curr_connections);
    MP_STAT_DEC(&stats.threads[2], curr_connections); /* closed on another thread than it opened */
    struct mp_stats_sum sum;
    mp_stats_sum(&stats, &sum);
    ck_assert_uint_eq(sum.cmd_get, 12);
    ck_assert_uint_eq(sum.get_hits, 1);
    ck_assert_uint_eq(sum.bytes_read, UINT64_C(1) << 40);
    ck_assert_uint_eq(sum.curr_connections, 1);
    ck_assert_uint_eq(sum.get_misses, 0);
    ck_assert_uint_eq(sum.total_items, 0);
}
END_TEST

START_TEST(test_reset_zeroes_counters_but_not_curr_connections)
{
    MP_STAT_ADD(&stats.threads[0], curr_connections, 3);
    MP_STAT_ADD(&stats.threads[1], curr_connections, 2);
    MP_STAT_ADD(&stats.threads[1], connection_structures, 4);
    MP_STAT_ADD(&stats.threads[0], cmd_get, 10);
    MP_STAT_ADD(&stats.threads[2], total_items, 7);
    MP_STAT_ADD(&stats.threads[2], total_connections, 9);
    mp_stats_reset(&stats);
    struct mp_stats_sum sum;
    mp_stats_sum(&stats, &sum);
    ck_assert_uint_eq(sum.cmd_get, 0);
    ck_assert_uint_eq(sum.total_items, 0);
    ck_assert_uint_eq(sum.total_connections, 0);
    ck_assert_uint_eq(sum.curr_connections, 5);
    ck_assert_uint_eq(sum.connection_structures, 4);
    /* the threads' own blocks were not written: counting goes on from the new zero */
    ck_assert_uint_eq(atomic_load(&stats.threads[0].cmd_get), 10);
    MP_STAT_ADD(&stats.threads[1], cmd_get, 2);
    MP_STAT_DEC(&stats.threads[0], curr_connections);
    mp_stats_sum(&stats, &sum);
    ck_assert_uint_eq(sum.cmd_get, 2);
    ck_assert_uint_eq(sum.curr_connections, 4);
    /* a second reset starts over again */
    mp_stats_reset(&stats);
    mp_stats_sum(&stats, &sum);
    ck_assert_uint_eq(sum.cmd_get, 0);
    ck_assert_uint_eq(sum.curr_connections, 4);
}
END_TEST

/* ---- the general report ------------------------------------------------------------------------ */

START_TEST(test_general_report_emits_memcacheds_names_and_values)
{
    ck_assert_int_eq(set_str(c, "a", "1", 0, 102), MP_STORED);
    ck_assert_int_eq(set_str(c, "bb", "22", 0, 102), MP_STORED);
    ck_assert_int_eq(store_full(c, MP_SET, "ccc", "333", 3, 0, 9, 0, 0, 102, NULL), MP_STORED);
    MP_STAT_ADD(&stats.threads[0], total_items, 3);
    MP_STAT_ADD(&stats.threads[1], cmd_get, 6);
    MP_STAT_ADD(&stats.threads[2].classes[1], get_hits, 4);
    MP_STAT_INC(&stats.threads[0], curr_connections);

    ck_assert_int_eq(report(""), 0);
    ck_assert_str_eq(lines[0].name, "pid");
    ck_assert_uint_eq(stat_u("pid"), (unsigned long long)getpid());
    ck_assert_str_eq(stat_of("uptime"), "100");
    ck_assert_str_eq(stat_of("time"), "1700000100");
    ck_assert_str_eq(stat_of("version"), MP_PROTO_VERSION);
    ck_assert_str_eq(stat_of("pointer_size"), "64");
    stat_of("rusage_user");
    stat_of("rusage_system");
    ck_assert_str_eq(stat_of("max_connections"), "1024");
    ck_assert_str_eq(stat_of("curr_connections"), "1");
    ck_assert_str_eq(stat_of("cmd_get"), "6");
    ck_assert_str_eq(stat_of("get_hits"), "4");
    ck_assert_str_eq(stat_of("get_misses"), "0");
    ck_assert_str_eq(stat_of("curr_items"), "3");
    ck_assert_str_eq(stat_of("total_items"), "3");
    ck_assert_uint_eq(stat_u("bytes"), (MP_ITEM_HDR + 1 + 1) + (MP_ITEM_HDR + 2 + 2) + (MP_ITEM_HDR + 4 + 3 + 3));
    ck_assert_str_eq(stat_of("limit_maxbytes"), "4194304");
    ck_assert_str_eq(stat_of("threads"), "2");
    ck_assert_str_eq(stat_of("evictions"), "0");
    ck_assert_str_eq(stat_of("reclaimed"), "0");
    ck_assert_str_eq(stat_of("expired_unfetched"), "0");
    ck_assert_str_eq(stat_of("evicted_unfetched"), "0");
    ck_assert_str_eq(stat_of("total_malloced"), "1048576"); /* one page holds all three */
    ck_assert_uint_eq(stat_u("hash_bytes"), mp_table_overhead(&c->table));
    ck_assert_str_eq(stat_of("hash_is_expanding"), "0");
    ck_assert_str_eq(stat_of("slabs_moved"), "0");
}
END_TEST

START_TEST(test_general_report_counts_the_engines_evictions_and_reclaims)
{
    char key[32];
    for (unsigned i = 0; i < 6000; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_int_eq(set_fill(c, key, 1000, 'v', 0, 102), MP_STORED);
    }
    ck_assert_uint_gt(total_evictions(c), 0);
    /* three items expire unread and are found dead by a get */
    ck_assert_int_eq(set_str(c, "t1", "x", 110, 102), MP_STORED);
    ck_assert_int_eq(set_str(c, "t2", "x", 110, 102), MP_STORED);
    ck_assert_int_eq(set_str(c, "t3", "x", 110, 102), MP_STORED);
    struct got g = {0};
    enum mp_miss miss;
    ck_assert_int_eq(get_key(c, "t1", 110, &g, &miss), MP_NOT_FOUND);
    ck_assert_int_eq(get_key(c, "t2", 110, &g, &miss), MP_NOT_FOUND);
    ck_assert_int_eq(get_key(c, "t3", 110, &g, &miss), MP_NOT_FOUND);
    ck_assert_int_eq(report(""), 0);
    ck_assert_uint_eq(stat_u("evictions"), total_evictions(c));
    ck_assert_uint_eq(stat_u("evicted_unfetched"), total_evictions(c)); /* none was read */
    ck_assert_str_eq(stat_of("reclaimed"), "3");
    ck_assert_str_eq(stat_of("expired_unfetched"), "3");
    ck_assert_uint_eq(stat_u("curr_items"), mp_table_count(&c->table));
    ck_assert_uint_eq(stat_u("total_malloced"), 4 * MIB);
    ck_assert_uint_eq(stat_u("bytes"), mp_table_bytes(&c->table));
}
END_TEST

START_TEST(test_general_report_explains_the_eviction_policy)
{
    /* More 1000-byte keys than 4 MiB holds, each read once just after it is stored except every
     * tenth: the small queue evicts those unread ones and promotes the rest (lru.h). */
    char key[32];
    uint64_t promoted = 0, evicted = 0, ghost_hits = 0;
    for (unsigned i = 0; i < 6000; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_int_eq(set_fill(c, key, 1000, 'v', 0, 102), MP_STORED);
        if (i % 10)
            get_hit(c, key, 102);
    }
    for (unsigned i = 1; i <= c->slabs.nclasses; i++) {
        promoted += c->slabs.classes[i].small_promoted;
        evicted += c->slabs.classes[i].small_evicted;
        ghost_hits += c->slabs.classes[i].ghost_hits;
    }
    ck_assert_uint_gt(promoted, 0);
    ck_assert_uint_gt(evicted, 0);
    ck_assert_int_eq(report(""), 0);
    ck_assert_uint_eq(stat_u("small_promotions"), promoted);
    ck_assert_uint_eq(stat_u("small_evictions"), evicted);
    ck_assert_uint_eq(stat_u("ghost_hits"), ghost_hits);
    /* the ghost remembers about six keys per item held, a byte each */
    ck_assert_uint_eq(stat_u("ghost_bytes"), mp_ghost_bytes(&c->lru.ghost));
    ck_assert_uint_ge(stat_u("ghost_bytes"), 5 * stat_u("curr_items"));
    /* the same per class, and `stats reset` clears them as it clears evictions */
    unsigned cls = class_of_shape(c, 8, 1000);
    ck_assert_int_eq(report("items"), 0);
    char name[64];
    snprintf(name, sizeof(name), "items:%u:small_promotions", cls);
    ck_assert_uint_eq(stat_u(name), c->slabs.classes[cls].small_promoted);
    snprintf(name, sizeof(name), "items:%u:small_evictions", cls);
    ck_assert_uint_eq(stat_u(name), c->slabs.classes[cls].small_evicted);
    snprintf(name, sizeof(name), "items:%u:ghost_hits", cls);
    ck_assert_uint_eq(stat_u(name), c->slabs.classes[cls].ghost_hits);
    mp_cache_stats_reset(c);
    ck_assert_int_eq(report(""), 0);
    ck_assert_str_eq(stat_of("small_promotions"), "0");
    ck_assert_str_eq(stat_of("small_evictions"), "0");
    ck_assert_str_eq(stat_of("ghost_hits"), "0");
}
END_TEST

START_TEST(test_reset_also_zeroes_engine_counters_in_the_report)
{
    /* memcached's `stats reset` clears the item statistics too (item_stats_reset): evictions,
     * reclaimed, expired_unfetched and evicted_unfetched read 0 afterwards. */
    char key[32];
    for (unsigned i = 0; i < 6000; i++) {
        key_of(key, sizeof(key), "key:", i);
        ck_assert_int_eq(set_fill(c, key, 1000, 'v', 0, 102), MP_STORED);
    }
    ck_assert_uint_gt(total_evictions(c), 0);
    /* `stats reset` is both: the threads' counters and the engine's (cache.h) */
    mp_stats_reset(&stats);
    mp_cache_stats_reset(c);
    ck_assert_int_eq(report(""), 0);
    ck_assert_str_eq(stat_of("evictions"), "0");
    ck_assert_str_eq(stat_of("evicted_unfetched"), "0");
}
END_TEST

/* ---- other reports ----------------------------------------------------------------------------- */

START_TEST(test_settings_report)
{
    ck_assert_int_eq(report("settings"), 0);
    ck_assert_str_eq(stat_of("maxbytes"), "4194304");
    ck_assert_str_eq(stat_of("maxconns"), "1024");
    ck_assert_str_eq(stat_of("tcpport"), "11211");
    ck_assert_str_eq(stat_of("udpport"), "0");
    ck_assert_str_eq(stat_of("inter"), "127.0.0.1");
    ck_assert_str_eq(stat_of("verbosity"), "0");
    ck_assert_str_eq(stat_of("evictions"), "on");
    ck_assert_str_eq(stat_of("domain_socket"), "NULL");
    ck_assert_str_eq(stat_of("umask"), "700");
    ck_assert_str_eq(stat_of("growth_factor"), "1.04");
    ck_assert_str_eq(stat_of("chunk_size"), "32");
    ck_assert_str_eq(stat_of("num_threads"), "2");
    ck_assert_str_eq(stat_of("cas_enabled"), "yes");
    ck_assert_str_eq(stat_of("tcp_backlog"), "1024");
    ck_assert_str_eq(stat_of("binding_protocol"), "auto-negotiate");
    ck_assert_str_eq(stat_of("item_size_max"), "1048576");
    ck_assert_str_eq(stat_of("slab_page_size"), "1048576");
    ck_assert_str_eq(stat_of("slab_reassign"), "yes");
    ck_assert_str_eq(stat_of("slab_automove"), "1");
    ck_assert_str_eq(stat_of("lru_maintainer_thread"), "yes");
    ck_assert_str_eq(stat_of("hash_algorithm"), "xxh3");
    ck_assert_str_eq(stat_of("memory_file"), "(null)");
    ck_assert_str_eq(stat_of("snapshot_interval"), "0");
    ck_assert_str_eq(stat_of("auth_enabled_sasl"), "no");
    ck_assert_str_eq(stat_of("auth_enabled_ascii"), "no");
    /* memcached built with TLS shows its TLS settings with TLS off too */
    ck_assert_str_eq(stat_of("ssl_enabled"), "no");
    ck_assert_str_eq(stat_of("ssl_chain_cert"), "(null)");
    ck_assert_str_eq(stat_of("ssl_key"), "(null)");
    ck_assert_str_eq(stat_of("ssl_verify_mode"), "0");
    ck_assert_str_eq(stat_of("ssl_keyformat"), "1");
    ck_assert_str_eq(stat_of("ssl_ciphers"), "NULL");
    ck_assert_str_eq(stat_of("ssl_ca_cert"), "NULL");
    ck_assert_str_eq(stat_of("ssl_wbuf_size"), "65536");
    ck_assert_str_eq(stat_of("ssl_session_cache"), "no");
    ck_assert_str_eq(stat_of("ssl_kernel_tls"), "no");
    ck_assert_str_eq(stat_of("ssl_min_version"), "tlsv1.2");
    /* no general stats in it */
    for (size_t i = 0; i < nlines; i++)
        ck_assert_str_ne(lines[i].name, "pid");
}
END_TEST

START_TEST(test_settings_report_follows_the_config)
{
    atomic_store(&c->lru.automove, 0); /* `slabs automove 0` */
    cfg.unix_path = "/tmp/magpie.sock";
    cfg.listen[1] = "10.0.0.1";
    cfg.nlisten = 2;
    cfg.memory_file = "/data/magpie.snap";
    cfg.snapshot_interval = 60;
    cfg.listen_arg = "127.0.0.1,notls:10.0.0.1:11212";
    cfg.auth_file = "/etc/magpie/users";
    cfg.protocol = MP_PROTOCOL_ASCII;
    cfg.tls = (struct mp_tls_config){.enabled = true,
                                     .chain_cert = "/c.pem",
                                     .key = "/k.pem",
                                     .ca_cert = "/ca.pem",
                                     .ciphers = "HIGH",
                                     .verify = MP_TLS_VERIFY_REQUIRE,
                                     .keyformat = 1,
                                     .min_version = 3,
                                     .wbuf_size = 16384,
                                     .session_cache = true};
    ck_assert_int_eq(report("settings"), 0);
    ck_assert_str_eq(stat_of("memory_file"), "/data/magpie.snap");
    ck_assert_str_eq(stat_of("snapshot_interval"), "60");
    ck_assert_str_eq(stat_of("slab_automove"), "0");
    ck_assert_str_eq(stat_of("domain_socket"), "/tmp/magpie.sock");
    ck_assert_str_eq(stat_of("inter"), "127.0.0.1,notls:10.0.0.1:11212"); /* -l as given */
    ck_assert_str_eq(stat_of("binding_protocol"), "ascii");
    ck_assert_str_eq(stat_of("auth_enabled_ascii"), "/etc/magpie/users");
    ck_assert_str_eq(stat_of("ssl_enabled"), "yes");
    ck_assert_str_eq(stat_of("ssl_chain_cert"), "/c.pem");
    ck_assert_str_eq(stat_of("ssl_key"), "/k.pem");
    ck_assert_str_eq(stat_of("ssl_ca_cert"), "/ca.pem");
    ck_assert_str_eq(stat_of("ssl_ciphers"), "HIGH");
    ck_assert_str_eq(stat_of("ssl_verify_mode"), "3"); /* OpenSSL's flags, as memcached shows them */
    ck_assert_str_eq(stat_of("ssl_min_version"), "tlsv1.3");
    ck_assert_str_eq(stat_of("ssl_wbuf_size"), "16384");
    ck_assert_str_eq(stat_of("ssl_session_cache"), "yes");
}
END_TEST

START_TEST(test_general_report_has_the_tls_lines_with_tls_only)
{
    ck_assert_int_eq(report(""), 0);
    ck_assert(!emitted("ssl_handshake_errors"));
    ck_assert(!emitted("time_since_server_cert_refresh"));
    struct mp_tls tls = {.loaded_at = 40}; /* certificates loaded at 40: the clock reads 102 */
    src.tls = &tls;
    cfg.tls.enabled = true;
    MP_STAT_ADD(&stats.threads[0], ssl_handshake_errors, 2);
    MP_STAT_ADD(&stats.threads[1], ssl_handshake_errors, 3);
    MP_STAT_ADD(&stats.threads[1], ssl_new_sessions, 7);
    ck_assert_int_eq(report(""), 0);
    ck_assert_str_eq(stat_of("ssl_handshake_errors"), "5");
    ck_assert_str_eq(stat_of("time_since_server_cert_refresh"), "62");
    ck_assert(!emitted("ssl_new_sessions")); /* with ssl_session_cache only, as memcached */
    cfg.tls.session_cache = true;
    ck_assert_int_eq(report(""), 0);
    ck_assert_str_eq(stat_of("ssl_new_sessions"), "7");
    src.tls = NULL;
}
END_TEST

/* The position of a name in the last report, which must hold it exactly once; -1 if absent. */
static long position(const char *name)
{
    long at = -1;
    for (size_t i = 0; i < nlines; i++) {
        if (strcmp(lines[i].name, name) == 0) {
            ck_assert_msg(at < 0, "%s emitted twice", name);
            at = (long)i;
        }
    }
    return at;
}

static void assert_no_name_twice(const char *group)
{
    for (size_t i = 0; i < nlines; i++)
        for (size_t j = i + 1; j < nlines; j++)
            ck_assert_msg(strcmp(lines[i].name, lines[j].name) != 0, "stats %s: %s emitted twice", group,
                          lines[i].name);
}

/* The TLS lines take the places memcached 1.6.18 built with TLS gives them, each name once, with
 * TLS on and off: `stats settings` shows them between ext_drop_unread and num_napi_ids, `stats`
 * (with -Z) between log_watchers and unexpected_napi_ids. */
START_TEST(test_tls_lines_are_in_memcacheds_places_once)
{
    struct mp_tls tls = {.loaded_at = 40};
    for (int on = 0; on < 2; on++) {
        cfg.tls.enabled = on;
        cfg.tls.session_cache = on;
        src.tls = on ? &tls : NULL;
        ck_assert_int_eq(report("settings"), 0);
        assert_no_name_twice("settings");
        long first = position("ssl_enabled"), last = position("ssl_min_version");
        ck_assert_int_eq(position("ext_drop_unread") + 1, first);
        ck_assert_int_eq(last - first, 10); /* memcached's eleven ssl_* settings, together */
        ck_assert_int_eq(position("num_napi_ids"), last + 1);
        ck_assert_int_gt(position("ssl_handshake_timeout"), position("memory_file")); /* Magpie's own: after */
        ck_assert_int_eq(report(""), 0);
        assert_no_name_twice("");
        long watchers = position("log_watchers"), napi = position("unexpected_napi_ids");
        if (on) {
            ck_assert_int_eq(position("ssl_new_sessions"), watchers + 1);
            ck_assert_int_eq(position("ssl_handshake_errors"), watchers + 2);
            ck_assert_int_eq(position("time_since_server_cert_refresh"), watchers + 3);
            ck_assert_int_eq(napi, watchers + 4);
        } else {
            ck_assert_int_eq(napi, watchers + 1);
        }
    }
    src.tls = NULL;
}
END_TEST

START_TEST(test_slabs_report_lists_the_classes_in_use)
{
    ck_assert_int_eq(report("slabs"), 0);
    ck_assert_str_eq(stat_of("active_slabs"), "0");
    ck_assert_str_eq(stat_of("total_malloced"), "0");

    char key[32];
    for (unsigned i = 0; i < 10; i++) {
        key_of(key, sizeof(key), "k", i);
        ck_assert_int_eq(set_fill(c, key, 100, 'v', 0, 102), MP_STORED);
    }
    unsigned cls = class_of_shape(c, 2, 100);
    struct mp_slab_class *sc = class_at(c, cls);
    ck_assert_int_eq(report("slabs"), 0);
    char name[64];
#define SLAB(field) (snprintf(name, sizeof(name), "%u:%s", cls, field), stat_u(name))
    ck_assert_uint_eq(SLAB("chunk_size"), sc->size);
    ck_assert_uint_eq(SLAB("chunks_per_page"), sc->perpage);
    ck_assert_uint_eq(SLAB("total_pages"), 1);
    ck_assert_uint_eq(SLAB("total_chunks"), sc->perpage);
    ck_assert_uint_eq(SLAB("used_chunks"), 10);
    ck_assert_uint_eq(SLAB("free_chunks"), sc->perpage - 10);
    /* never handed out of the class: some may wait free in this thread's cache (slab.h) */
    ck_assert_uint_le(SLAB("free_chunks_end"), sc->perpage - 10);
    ck_assert_uint_ge(SLAB("free_chunks_end"), sc->perpage - 10 - MP_SLAB_MAG_MAX);
    ck_assert_uint_eq(SLAB("cmd_set"), 0); /* the per-class counters: the engine was called directly */
    ck_assert_uint_eq(SLAB("get_hits"), 0);
#undef SLAB
    ck_assert_str_eq(stat_of("active_slabs"), "1");
    ck_assert_str_eq(stat_of("total_malloced"), "1048576");
    ck_assert_uint_eq(nlines, 7 + 8 + 2);
}
END_TEST

START_TEST(test_items_report_lists_the_classes_in_use)
{
    char key[32];
    for (unsigned i = 0; i < 10; i++) {
        key_of(key, sizeof(key), "k", i);
        ck_assert_int_eq(set_fill(c, key, 100, 'v', 0, 102), MP_STORED);
    }
    unsigned cls = class_of_shape(c, 2, 100);
    ck_assert_int_eq(report("items"), 0);
    char name[64];
#define ITEMS(field) (snprintf(name, sizeof(name), "items:%u:%s", cls, field), stat_of(name))
    ck_assert_str_eq(ITEMS("number"), "10");
    ck_assert_str_eq(ITEMS("evicted"), "0");
    ck_assert_str_eq(ITEMS("evicted_nonzero"), "0");
    ck_assert_str_eq(ITEMS("outofmemory"), "0");
    ck_assert_str_eq(ITEMS("reclaimed"), "0");
    ck_assert_str_eq(ITEMS("expired_unfetched"), "0");
    ck_assert_str_eq(ITEMS("evicted_unfetched"), "0");
#undef ITEMS
    for (size_t i = 0; i < nlines; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "items:%u:", cls);
        ck_assert_msg(strncmp(lines[i].name, prefix, strlen(prefix)) == 0, "%s", lines[i].name);
    }
}
END_TEST

START_TEST(test_sizes_report_says_disabled)
{
    ck_assert_int_eq(report("sizes"), 0);
    ck_assert_uint_eq(nlines, 1);
    ck_assert_str_eq(stat_of("sizes_status"), "disabled");
}
END_TEST

START_TEST(test_unknown_argument_returns_minus_one_and_emits_nothing)
{
    ck_assert_int_eq(report("bogus"), -1);
    ck_assert_uint_eq(nlines, 0);
    ck_assert_int_eq(report("settingsx"), -1);
    ck_assert_int_eq(report("item"), -1);
    ck_assert_int_eq(report("reset"), -1); /* not a report: the caller resets */
    ck_assert_uint_eq(nlines, 0);
    /* a known report with more arguments after it is still that report */
    ck_assert_int_eq(report("settings extra"), 0);
    ck_assert_str_eq(stat_of("maxbytes"), "4194304");
}
END_TEST

/* ---- stats hotkeys ----------------------------------------------------------------------------- */

START_TEST(test_hotkeys_report_lists_keys_most_requested_first)
{
    struct mp_hotkeys hk;
    ck_assert_int_eq(mp_hotkeys_setup(&hk, 2, mp_clock_now(&clk)), 0);
    src.hotkeys = &hk;
    uint32_t now = mp_clock_now(&clk);
    for (int i = 0; i < 12; i++)
        mp_hotkeys_count(hk.threads[i % 2], "user:1", 6, false, now);
    for (int i = 0; i < 7; i++)
        mp_hotkeys_count(hk.threads[1], "user:2", 6, false, now);
    mp_hotkeys_count(hk.threads[0], "\x00\r\n x", 5, true, now); /* meta's b flag */
    ck_assert_int_eq(report("hotkeys"), 0);
    ck_assert_uint_eq(nlines, 3);
    ck_assert_str_eq(lines[0].name, "user:1");
    ck_assert_str_eq(lines[0].value, "12");
    ck_assert_str_eq(lines[1].name, "user:2");
    ck_assert_str_eq(lines[1].value, "7");
    ck_assert_str_eq(lines[2].name, "AA0KIHg="); /* base64, as the client sent it */
    ck_assert_str_eq(lines[2].value, "1 b");
    ck_assert_int_eq(report("hotkeys 1"), 0);
    ck_assert_uint_eq(nlines, 1);
    ck_assert_str_eq(lines[0].name, "user:1");
    ck_assert_int_eq(report("hotkeys   2  "), 0);
    ck_assert_uint_eq(nlines, 2);
    ck_assert_int_eq(report("hotkeys 100"), 0);
    ck_assert_uint_eq(nlines, 3);
    mp_hotkeys_teardown(&hk);
}
END_TEST

START_TEST(test_hotkeys_count_must_be_1_to_100)
{
    struct mp_hotkeys hk;
    ck_assert_int_eq(mp_hotkeys_setup(&hk, 1, mp_clock_now(&clk)), 0);
    src.hotkeys = &hk;
    static const char *const bad[] = {"hotkeys 0",
                                      "hotkeys 101",
                                      "hotkeys x",
                                      "hotkeys 5x",
                                      "hotkeys 5 6",
                                      "hotkeys -1",
                                      "hotkeys 99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(report(bad[i]) == -1, "%s accepted", bad[i]);
        ck_assert_uint_eq(nlines, 0);
    }
    ck_assert_int_eq(report("hotkeysx"), -1);
    ck_assert_int_eq(report("hotkeys 100"), 0);
    mp_hotkeys_teardown(&hk);
}
END_TEST

START_TEST(test_hotkeys_report_says_disabled_when_off)
{
    src.hotkeys = NULL;
    ck_assert_int_eq(report("hotkeys"), 0);
    ck_assert_uint_eq(nlines, 1);
    ck_assert_str_eq(stat_of("hotkeys_status"), "disabled");
    ck_assert_int_eq(report("hotkeys 0"), -1);
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("counters");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sum_adds_every_threads_block);
    tcase_add_test(tc, test_reset_zeroes_counters_but_not_curr_connections);
    suite_add_tcase(s, tc);

    tc = tcase_create("reports");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_general_report_emits_memcacheds_names_and_values);
    tcase_add_test(tc, test_general_report_counts_the_engines_evictions_and_reclaims);
    tcase_add_test(tc, test_general_report_explains_the_eviction_policy);
    tcase_add_test(tc, test_reset_also_zeroes_engine_counters_in_the_report);
    tcase_add_test(tc, test_settings_report);
    tcase_add_test(tc, test_settings_report_follows_the_config);
    tcase_add_test(tc, test_general_report_has_the_tls_lines_with_tls_only);
    tcase_add_test(tc, test_tls_lines_are_in_memcacheds_places_once);
    tcase_add_test(tc, test_slabs_report_lists_the_classes_in_use);
    tcase_add_test(tc, test_items_report_lists_the_classes_in_use);
    tcase_add_test(tc, test_sizes_report_says_disabled);
    tcase_add_test(tc, test_unknown_argument_returns_minus_one_and_emits_nothing);
    tcase_add_test(tc, test_hotkeys_report_lists_keys_most_requested_first);
    tcase_add_test(tc, test_hotkeys_count_must_be_1_to_100);
    tcase_add_test(tc, test_hotkeys_report_says_disabled_when_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(stats_suite());
}

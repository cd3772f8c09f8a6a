/* Unit tests for prom: the exporter's names from a set of stats, Magpie's own metrics, and the
 * exposition format's rules (one HELP and TYPE per family, its samples together, escaped labels). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/prom.h"

static struct mp_prom_stats set;
static struct mp_prom_buf page;

static void setup(void)
{
    mp_prom_stats_init(&set);
    page = (struct mp_prom_buf){0};
}

static void teardown(void)
{
    mp_prom_stats_deinit(&set);
    mp_prom_buf_free(&page);
}

static void add(enum mp_prom_report r, const char *name, const char *value)
{
    mp_prom_stats_add(&set, r, name, value);
}

static const char *render(const struct mp_prom_extra *extra)
{
    mp_prom_buf_free(&page);
    ck_assert_int_eq(mp_prom_render(&set, extra, &page), 0);
    mp_prom_buf_printf(&page, "%s", ""); /* NUL-terminated even when empty */
    return page.p;
}

/* Whether the page has this exact line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define ASSERT_LINE(text, line) ck_assert_msg(has_line(text, line), "no line %s in:\n%s", line, text)
#define ASSERT_NO(text, part) ck_assert_msg(strstr(text, part) == NULL, "%s in:\n%s", part, text)

/* The exposition format's rules for families: a TYPE line once per name, after its HELP, and every
 * sample of a family right after them, none elsewhere. Returns the number of families. */
static unsigned check_format(const char *text)
{
    char family[128] = "", type[32] = "";
    char seen[256][128];
    unsigned nseen = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            ck_assert(sscanf(line + 7, "%127s", family) == 1);
            for (unsigned i = 0; i < nseen; i++)
                ck_assert_msg(strcmp(seen[i], family) != 0, "family %s twice", family);
            ck_assert_uint_lt(nseen, 256);
            strcpy(seen[nseen++], family);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            ck_assert(sscanf(line + 7, "%127s %31s", name, type) == 2);
            ck_assert_str_eq(name, family);
            ck_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 || strcmp(type, "untyped") == 0 ||
                      strcmp(type, "histogram") == 0);
            continue;
        }
        ck_assert_msg(type[0] != '\0', "sample before its TYPE: %s", line);
        size_t n = strcspn(line, "{ ");
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)n, line);
        if (strcmp(type, "histogram") == 0) {
            size_t f = strlen(family);
            ck_assert_msg(strncmp(name, family, f) == 0 &&
                              (strcmp(name + f, "_bucket") == 0 || strcmp(name + f, "_sum") == 0 ||
                               strcmp(name + f, "_count") == 0),
                          "%s in family %s", name, family);
        } else {
            ck_assert_msg(strcmp(name, family) == 0, "%s in family %s", name, family);
        }
        if (strcmp(type, "counter") == 0)
            ck_assert_msg(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0, "counter %s", name);
        const char *value = strrchr(line, ' ');
        ck_assert_ptr_nonnull(value);
        char *end;
        strtod(value + 1, &end);
        ck_assert_msg(*end == '\0' || strcmp(value + 1, "+Inf") == 0, "value of %s", line);
    }
    return nseen;
}

START_TEST(test_commands_total_follows_the_exporter_and_set_leaves_out_cas)
{
    add(MP_PROM_GENERAL, "get_hits", "30");
    add(MP_PROM_GENERAL, "get_misses", "4");
    add(MP_PROM_GENERAL, "cas_hits", "2");
    add(MP_PROM_GENERAL, "cas_misses", "1");
    add(MP_PROM_GENERAL, "cas_badval", "3");
    add(MP_PROM_GENERAL, "cmd_set", "20");
    add(MP_PROM_GENERAL, "cmd_flush", "5");
    add(MP_PROM_GENERAL, "touch_hits", "0");
    const char *t = render(NULL);
    ASSERT_LINE(t, "memcached_up 1");
    ASSERT_LINE(t, "# TYPE memcached_commands_total counter");
    ASSERT_LINE(t, "memcached_commands_total{command=\"get\",status=\"hit\"} 30");
    ASSERT_LINE(t, "memcached_commands_total{command=\"get\",status=\"miss\"} 4");
    ASSERT_LINE(t, "memcached_commands_total{command=\"cas\",status=\"badval\"} 3");
    ASSERT_LINE(t, "memcached_commands_total{command=\"flush\",status=\"hit\"} 5");
    ASSERT_LINE(t, "memcached_commands_total{command=\"set\",status=\"hit\"} 14");
    ASSERT_LINE(t, "memcached_commands_total{command=\"touch\",status=\"hit\"} 0");
    ASSERT_NO(t, "command=\"touch\",status=\"miss\""); /* no touch_misses in the set */
    ASSERT_NO(t, "command=\"delete\"");
    check_format(t);
}
END_TEST

START_TEST(test_set_is_left_out_when_a_cas_stat_is_missing)
{
    add(MP_PROM_GENERAL, "cmd_set", "20");
    add(MP_PROM_GENERAL, "cas_hits", "2");
    const char *t = render(NULL);
    ASSERT_LINE(t, "memcached_commands_total{command=\"cas\",status=\"hit\"} 2");
    ASSERT_NO(t, "command=\"set\"");
}
END_TEST

START_TEST(test_general_stats_map_to_the_exporters_names_and_types)
{
    static const char *const pairs[][3] = {
        {"uptime", "12", "memcached_uptime_seconds 12"},
        {"time", "1700000000", "memcached_time_seconds 1700000000"},
        {"rusage_user", "1.250000", "memcached_process_user_cpu_seconds_total 1.250000"},
        {"rusage_system", "0.500000", "memcached_process_system_cpu_seconds_total 0.500000"},
        {"bytes_read", "100", "memcached_read_bytes_total 100"},
        {"bytes_written", "200", "memcached_written_bytes_total 200"},
        {"curr_connections", "3", "memcached_current_connections 3"},
        {"total_connections", "9", "memcached_connections_total 9"},
        {"rejected_connections", "1", "memcached_connections_rejected_total 1"},
        {"conn_yields", "2", "memcached_connections_yielded_total 2"},
        {"bytes", "4096", "memcached_current_bytes 4096"},
        {"limit_maxbytes", "67108864", "memcached_limit_bytes 67108864"},
        {"curr_items", "7", "memcached_current_items 7"},
        {"total_items", "8", "memcached_items_total 8"},
        {"evictions", "5", "memcached_items_evicted_total 5"},
        {"reclaimed", "6", "memcached_items_reclaimed_total 6"},
        {"store_too_large", "1", "memcached_item_too_large_total 1"},
        {"store_no_memory", "2", "memcached_item_no_memory_total 2"},
        {"total_malloced", "1048576", "memcached_malloced_bytes 1048576"},
        {"accepting_conns", "1", "memcached_accepting_connections 1"},
        {"slabs_moved", "4", "magpie_slab_pages_moved_total 4"},
        {"get_expired", "3", "magpie_get_expired_total 3"},
        {"auth_cmds", "9", "magpie_auth_commands_total 9"},
        {"auth_errors", "4", "magpie_auth_errors_total 4"},
        {"ssl_handshake_errors", "11", "magpie_ssl_handshake_errors_total 11"},
        {"ssl_new_sessions", "12", "magpie_ssl_new_sessions_total 12"},
        {"ghost_bytes", "65536", "magpie_ghost_bytes 65536"},
        {"small_evictions", "11", "magpie_items_small_evicted_total 11"},
        {"small_promotions", "12", "magpie_items_small_promoted_total 12"},
        {"ghost_hits", "13", "magpie_items_ghost_hits_total 13"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        add(MP_PROM_GENERAL, pairs[i][0], pairs[i][1]);
    add(MP_PROM_SETTINGS, "maxconns", "1024");
    add(MP_PROM_GENERAL, "pid", "4242"); /* the exporter maps no pid */
    const char *t = render(NULL);
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        ASSERT_LINE(t, pairs[i][2]);
    ASSERT_LINE(t, "memcached_max_connections 1024");
    ASSERT_LINE(t, "# TYPE memcached_uptime_seconds untyped"); /* a counter without _total */
    ASSERT_LINE(t, "# TYPE memcached_items_evicted_total counter");
    ASSERT_LINE(t, "# TYPE memcached_current_items gauge");
    ASSERT_NO(t, "4242");
    ck_assert_uint_eq(check_format(t), sizeof(pairs) / sizeof(pairs[0]) + 2); /* and maxconns, up */
}
END_TEST

START_TEST(test_version_is_a_label_escaped)
{
    add(MP_PROM_GENERAL, "version", "1.6.18 \"x\\y\"");
    const char *t = render(NULL);
    ASSERT_LINE(t, "memcached_version{version=\"1.6.18 \\\"x\\\\y\\\"\"} 1");
}
END_TEST

START_TEST(test_a_value_that_is_not_a_number_is_left_out)
{
    add(MP_PROM_GENERAL, "curr_items", "many");
    add(MP_PROM_GENERAL, "total_items", "");
    add(MP_PROM_GENERAL, "evictions", "12");
    const char *t = render(NULL);
    ASSERT_NO(t, "memcached_current_items");
    ASSERT_NO(t, "memcached_items_total");
    ASSERT_LINE(t, "memcached_items_evicted_total 12");
}
END_TEST

START_TEST(test_lru_crawler_settings_only_when_the_crawler_is_on)
{
    add(MP_PROM_SETTINGS, "lru_maintainer_thread", "yes");
    add(MP_PROM_SETTINGS, "hot_lru_pct", "20");
    const char *t = render(NULL);
    ASSERT_NO(t, "memcached_lru_crawler");
    mp_prom_stats_deinit(&set);
    mp_prom_stats_init(&set);
    add(MP_PROM_SETTINGS, "lru_crawler", "yes");
    add(MP_PROM_SETTINGS, "lru_maintainer_thread", "no");
    add(MP_PROM_SETTINGS, "hot_lru_pct", "20");
    add(MP_PROM_SETTINGS, "warm_max_factor", "2.00");
    t = render(NULL);
    ASSERT_LINE(t, "memcached_lru_crawler_enabled 1");
    ASSERT_LINE(t, "memcached_lru_crawler_maintainer_thread 0");
    ASSERT_LINE(t, "memcached_lru_crawler_hot_percent 20");
    ASSERT_LINE(t, "memcached_lru_crawler_warm_max_factor 2.00");
    check_format(t);
}
END_TEST

START_TEST(test_per_class_stats_are_labelled_by_slab_in_class_order)
{
    add(MP_PROM_ITEMS, "items:12:number", "5");
    add(MP_PROM_ITEMS, "items:2:number", "7");
    add(MP_PROM_ITEMS, "items:2:evicted", "1");
    add(MP_PROM_ITEMS, "items:2:hits_to_warm", "9");
    add(MP_PROM_ITEMS, "items:12:moves_to_pool", "3");
    add(MP_PROM_ITEMS, "items:12:small_evictions", "21");
    add(MP_PROM_ITEMS, "items:12:small_promotions", "22");
    add(MP_PROM_ITEMS, "items:12:ghost_hits", "23");
    add(MP_PROM_SLABS, "2:chunk_size", "96");
    add(MP_PROM_SLABS, "2:cmd_set", "10");
    add(MP_PROM_SLABS, "2:cas_hits", "1");
    add(MP_PROM_SLABS, "2:cas_badval", "2");
    add(MP_PROM_SLABS, "2:get_hits", "4");
    add(MP_PROM_SLABS, "active_slabs", "1");
    add(MP_PROM_SLABS, "total_malloced", "1048576");
    const char *t = render(NULL);
    const char *two = strstr(t, "memcached_slab_current_items{slab=\"2\"} 7\n");
    const char *twelve = strstr(t, "memcached_slab_current_items{slab=\"12\"} 5\n");
    ck_assert_ptr_nonnull(two);
    ck_assert_ptr_nonnull(twelve);
    ck_assert(two < twelve);
    ASSERT_LINE(t, "memcached_slab_items_evicted_total{slab=\"2\"} 1");
    ASSERT_NO(t, "memcached_slab_items_evicted_total{slab=\"12\"}");
    ASSERT_LINE(t, "memcached_slab_lru_hits_total{slab=\"2\",lru=\"warm\"} 9");
    ASSERT_LINE(t, "magpie_slab_pages_moved_out_total{slab=\"12\"} 3");
    ASSERT_LINE(t, "magpie_slab_items_small_evicted_total{slab=\"12\"} 21");
    ASSERT_LINE(t, "magpie_slab_items_small_promoted_total{slab=\"12\"} 22");
    ASSERT_LINE(t, "magpie_slab_items_ghost_hits_total{slab=\"12\"} 23");
    ASSERT_LINE(t, "memcached_slab_chunk_size_bytes{slab=\"2\"} 96");
    ASSERT_LINE(t, "memcached_slab_commands_total{slab=\"2\",command=\"get\",status=\"hit\"} 4");
    ASSERT_LINE(t, "memcached_slab_commands_total{slab=\"2\",command=\"cas\",status=\"badval\"} 2");
    ASSERT_LINE(t, "memcached_slab_commands_total{slab=\"2\",command=\"set\",status=\"hit\"} 7");
    ASSERT_NO(t, "active_slabs");
    check_format(t);
}
END_TEST

START_TEST(test_latency_histograms_are_cumulative_with_sum_and_count)
{
    struct mp_latency_sum lat = {0};
    lat.bucket[MP_CMD_GET][0] = 5;                  /* <= 1 us */
    lat.bucket[MP_CMD_GET][3] = 2;                  /* <= 10 us */
    lat.bucket[MP_CMD_GET][MP_LATENCY_NBOUNDS] = 1; /* over 1 s */
    lat.sum_ns[MP_CMD_GET] = 2500000123u;
    lat.bucket[MP_CMD_FLUSH_ALL][18] = 1;
    lat.sum_ns[MP_CMD_FLUSH_ALL] = 999999999;
    struct mp_prom_extra extra = {.latency = &lat};
    const char *t = render(&extra);
    ASSERT_LINE(t, "# TYPE magpie_request_duration_seconds histogram");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"1e-06\"} 5");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"5e-06\"} 5");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"1e-05\"} 7");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"0.0005\"} 7");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"1\"} 7");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 8");
    ASSERT_LINE(t, "magpie_request_duration_seconds_sum{command=\"get\"} 2.500000123");
    ASSERT_LINE(t, "magpie_request_duration_seconds_count{command=\"get\"} 8");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"flush_all\",le=\"0.5\"} 0");
    ASSERT_LINE(t, "magpie_request_duration_seconds_bucket{command=\"flush_all\",le=\"1\"} 1");
    ASSERT_LINE(t, "magpie_request_duration_seconds_sum{command=\"flush_all\"} 0.999999999");
    ASSERT_NO(t, "command=\"set\""); /* never seen: no series */
    check_format(t);
}
END_TEST

START_TEST(test_hot_keys_are_labels_escaped_or_in_base64)
{
    struct mp_hotkey keys[4] = {
        {.count = 40, .nkey = 6, .key = "user:1"},
        {.count = 30, .nkey = 5, .key = "a\"b\\c"},
        {.count = 20, .nkey = 3, .binary = true, .key = "\x00\n\xff"},
        {.count = 10, .nkey = 2, .key = "\xc3\x28"}, /* not UTF-8 */
    };
    struct mp_prom_extra extra = {.hotkeys = keys, .nhotkeys = 4};
    const char *t = render(&extra);
    ASSERT_LINE(t, "# TYPE magpie_hotkey_requests gauge");
    ASSERT_LINE(t, "magpie_hotkey_requests{key=\"user:1\"} 40");
    ASSERT_LINE(t, "magpie_hotkey_requests{key=\"a\\\"b\\\\c\"} 30");
    ASSERT_LINE(t, "magpie_hotkey_requests{key=\"AAr/\",encoding=\"base64\"} 20");
    ASSERT_LINE(t, "magpie_hotkey_requests{key=\"wyg=\",encoding=\"base64\"} 10");
    check_format(t);
    struct mp_hotkey utf8 = {.count = 1, .nkey = 7, .key = "caf\xc3\xa9:\xe2\x82\xac"};
    utf8.nkey = (uint8_t)strlen(utf8.key);
    extra = (struct mp_prom_extra){.hotkeys = &utf8, .nhotkeys = 1};
    t = render(&extra);
    ASSERT_LINE(t, "magpie_hotkey_requests{key=\"caf\xc3\xa9:\xe2\x82\xac\"} 1");
}
END_TEST

START_TEST(test_every_family_of_a_full_set_keeps_the_format)
{
    /* every stat Magpie reports today, and those issue 16 adds, in the reports' own spelling */
    static const char *const general[] = {"uptime",
                                          "time",
                                          "rusage_user",
                                          "rusage_system",
                                          "curr_connections",
                                          "total_connections",
                                          "rejected_connections",
                                          "conn_yields",
                                          "listen_disabled_num",
                                          "cmd_get",
                                          "cmd_set",
                                          "cmd_flush",
                                          "cmd_touch",
                                          "get_hits",
                                          "get_misses",
                                          "get_expired",
                                          "get_flushed",
                                          "delete_misses",
                                          "delete_hits",
                                          "incr_misses",
                                          "incr_hits",
                                          "decr_misses",
                                          "decr_hits",
                                          "cas_misses",
                                          "cas_hits",
                                          "cas_badval",
                                          "touch_hits",
                                          "touch_misses",
                                          "store_too_large",
                                          "store_no_memory",
                                          "idle_kicks",
                                          "auth_cmds",
                                          "auth_errors",
                                          "ssl_handshake_errors",
                                          "ssl_new_sessions",
                                          "bytes_read",
                                          "bytes_written",
                                          "limit_maxbytes",
                                          "threads",
                                          "hash_bytes",
                                          "slabs_moved",
                                          "bytes",
                                          "curr_items",
                                          "total_items",
                                          "total_malloced",
                                          "expired_unfetched",
                                          "evicted_unfetched",
                                          "evictions",
                                          "reclaimed",
                                          "direct_reclaims",
                                          "lru_crawler_starts",
                                          "crawler_items_checked",
                                          "crawler_reclaimed",
                                          "moves_to_cold",
                                          "moves_to_warm",
                                          "moves_within_lru",
                                          "accepting_conns"};
    static const char *const items[] = {"number",
                                        "number_hot",
                                        "number_warm",
                                        "number_cold",
                                        "number_temp",
                                        "age_hot",
                                        "age_warm",
                                        "age",
                                        "mem_requested",
                                        "evicted",
                                        "evicted_nonzero",
                                        "evicted_time",
                                        "outofmemory",
                                        "tailrepairs",
                                        "reclaimed",
                                        "expired_unfetched",
                                        "evicted_unfetched",
                                        "evicted_for_move",
                                        "crawler_reclaimed",
                                        "moves_to_cold",
                                        "moves_to_warm",
                                        "moves_within_lru",
                                        "hits_to_hot",
                                        "hits_to_warm",
                                        "hits_to_cold",
                                        "hits_to_temp",
                                        "moves_to_pool",
                                        "moves_from_pool"};
    static const char *const slabs[] = {"chunk_size",  "chunks_per_page", "total_pages", "total_chunks", "used_chunks",
                                        "free_chunks", "free_chunks_end", "get_hits",    "cmd_set",      "delete_hits",
                                        "incr_hits",   "decr_hits",       "cas_hits",    "cas_badval",   "touch_hits"};
    char name[64];
    for (size_t i = 0; i < sizeof(general) / sizeof(general[0]); i++)
        add(MP_PROM_GENERAL, general[i], "1");
    add(MP_PROM_GENERAL, "version", "1.6.18-magpie-1.0.0");
    add(MP_PROM_SETTINGS, "maxconns", "1024");
    add(MP_PROM_SETTINGS, "lru_crawler", "yes");
    add(MP_PROM_SETTINGS, "lru_maintainer_thread", "yes");
    for (unsigned cls = 1; cls <= 3; cls++) {
        for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
            snprintf(name, sizeof(name), "items:%u:%s", cls, items[i]);
            add(MP_PROM_ITEMS, name, "2");
        }
        for (size_t i = 0; i < sizeof(slabs) / sizeof(slabs[0]); i++) {
            snprintf(name, sizeof(name), "%u:%s", cls, slabs[i]);
            add(MP_PROM_SLABS, name, "3");
        }
    }
    struct mp_latency_sum lat = {0};
    lat.bucket[MP_CMD_MG][2] = 1;
    struct mp_hotkey key = {.count = 1, .nkey = 1, .key = "k"};
    struct mp_prom_extra extra = {.latency = &lat, .hotkeys = &key, .nhotkeys = 1};
    const char *t = render(&extra);
    unsigned families = check_format(t);
    ck_assert_uint_ge(families, 75); /* 74 of the table's, up, latency, hot keys */
    ASSERT_LINE(t, "memcached_slab_items_age_seconds{slab=\"3\"} 2");
    ASSERT_LINE(t, "memcached_accepting_connections 1");
    ASSERT_LINE(t, "memcached_slab_commands_total{slab=\"1\",command=\"set\",status=\"hit\"} -3");
}
END_TEST

START_TEST(test_warm_up_and_snapshot_status_are_magpies_own_and_only_when_on)
{
    add(MP_PROM_GENERAL, "curr_items", "5");
    const char *t = render(NULL);
    ASSERT_NO(t, "magpie_warm_");
    ASSERT_NO(t, "magpie_snapshot_");
    add(MP_PROM_GENERAL, "warm_state", "copying");
    add(MP_PROM_GENERAL, "warm_keys_listed", "120");
    add(MP_PROM_GENERAL, "warm_items_copied", "100");
    add(MP_PROM_GENERAL, "warm_items_present", "1");
    add(MP_PROM_GENERAL, "warm_items_missing", "2");
    add(MP_PROM_GENERAL, "warm_items_too_large", "3");
    add(MP_PROM_GENERAL, "warm_items_no_room", "4");
    add(MP_PROM_GENERAL, "warm_items_bad_key", "5");
    add(MP_PROM_GENERAL, "warm_bytes", "4096");
    add(MP_PROM_GENERAL, "warm_seconds", "1.250");
    add(MP_PROM_GENERAL, "snapshot_loaded_items", "7");
    add(MP_PROM_GENERAL, "snapshot_load_seconds", "0.125");
    add(MP_PROM_GENERAL, "snapshot_saves", "3");
    add(MP_PROM_GENERAL, "snapshot_save_failures", "1");
    add(MP_PROM_GENERAL, "snapshot_last_save_time", "1700000000");
    add(MP_PROM_GENERAL, "snapshot_last_save_seconds", "0.500");
    add(MP_PROM_GENERAL, "snapshot_last_save_items", "9");
    t = render(NULL);
    check_format(t);
    ASSERT_LINE(t, "# TYPE magpie_warm_state gauge");
    ASSERT_LINE(t, "magpie_warm_state{state=\"connecting\"} 0");
    ASSERT_LINE(t, "magpie_warm_state{state=\"copying\"} 1");
    ASSERT_LINE(t, "magpie_warm_state{state=\"done\"} 0");
    ASSERT_LINE(t, "magpie_warm_state{state=\"failed\"} 0");
    ASSERT_LINE(t, "magpie_warm_state{state=\"stopped\"} 0");
    ASSERT_LINE(t, "magpie_warm_keys_listed_total 120");
    ASSERT_LINE(t, "magpie_warm_items_copied_total 100");
    ASSERT_LINE(t, "magpie_warm_items_skipped_total{reason=\"present\"} 1");
    ASSERT_LINE(t, "magpie_warm_items_skipped_total{reason=\"missing\"} 2");
    ASSERT_LINE(t, "magpie_warm_items_skipped_total{reason=\"too_large\"} 3");
    ASSERT_LINE(t, "magpie_warm_items_skipped_total{reason=\"no_room\"} 4");
    ASSERT_LINE(t, "magpie_warm_items_skipped_total{reason=\"bad_key\"} 5");
    ASSERT_LINE(t, "magpie_warm_bytes_total 4096");
    ASSERT_LINE(t, "magpie_warm_duration_seconds 1.250");
    ASSERT_LINE(t, "magpie_snapshot_loaded_items 7");
    ASSERT_LINE(t, "magpie_snapshot_load_duration_seconds 0.125");
    ASSERT_LINE(t, "magpie_snapshot_saves_total 3");
    ASSERT_LINE(t, "magpie_snapshot_save_failures_total 1");
    ASSERT_LINE(t, "magpie_snapshot_last_save_timestamp_seconds 1700000000");
    ASSERT_LINE(t, "magpie_snapshot_last_save_duration_seconds 0.500");
    ASSERT_LINE(t, "magpie_snapshot_last_save_items 9");
}
END_TEST

static Suite *prom_suite(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("prom");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_commands_total_follows_the_exporter_and_set_leaves_out_cas);
    tcase_add_test(tc, test_set_is_left_out_when_a_cas_stat_is_missing);
    tcase_add_test(tc, test_general_stats_map_to_the_exporters_names_and_types);
    tcase_add_test(tc, test_version_is_a_label_escaped);
    tcase_add_test(tc, test_a_value_that_is_not_a_number_is_left_out);
    tcase_add_test(tc, test_lru_crawler_settings_only_when_the_crawler_is_on);
    tcase_add_test(tc, test_per_class_stats_are_labelled_by_slab_in_class_order);
    tcase_add_test(tc, test_latency_histograms_are_cumulative_with_sum_and_count);
    tcase_add_test(tc, test_hot_keys_are_labels_escaped_or_in_base64);
    tcase_add_test(tc, test_every_family_of_a_full_set_keeps_the_format);
    tcase_add_test(tc, test_warm_up_and_snapshot_status_are_magpies_own_and_only_when_on);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(prom_suite());
}

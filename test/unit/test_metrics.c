/* Unit tests for metrics: the HTTP request reader, and a page made from a real engine's reports. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/cache.h"
#include "magpie/clock.h"
#include "magpie/config.h"
#include "magpie/metrics.h"

static int parse(const char *req, bool *head)
{
    return mp_metrics_parse_request(req, strlen(req), head);
}

START_TEST(test_get_and_head_of_metrics_are_served)
{
    bool head;
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", &head), 200);
    ck_assert(!head);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.0\r\n\r\n", &head), 200);
    ck_assert_int_eq(parse("HEAD /metrics HTTP/1.1\r\n\r\n", &head), 200);
    ck_assert(head);
    ck_assert_int_eq(parse("GET /metrics?name[]=up HTTP/1.1\r\n\r\n", &head), 200);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\nHost: x\n\n", &head), 200); /* bare LF, as RFC 9112 lets */
}
END_TEST

START_TEST(test_a_request_head_not_yet_complete_needs_more)
{
    bool head;
    static const char full[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (size_t n = 0; n < sizeof(full) - 1; n++)
        ck_assert_msg(mp_metrics_parse_request(full, n, &head) == MP_METRICS_NEED_MORE, "%zu bytes", n);
    ck_assert_int_eq(mp_metrics_parse_request(full, sizeof(full) - 1, &head), 200);
}
END_TEST

START_TEST(test_other_paths_methods_and_versions_are_refused)
{
    bool head;
    ck_assert_int_eq(parse("GET / HTTP/1.1\r\n\r\n", &head), 404);
    ck_assert_int_eq(parse("GET /metricsx HTTP/1.1\r\n\r\n", &head), 404);
    ck_assert_int_eq(parse("GET /metrics/ HTTP/1.1\r\n\r\n", &head), 404);
    ck_assert_int_eq(parse("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &head), 405);
    ck_assert_int_eq(parse("get /metrics HTTP/1.1\r\n\r\n", &head), 405); /* methods are case-sensitive */
    ck_assert_int_eq(parse("DELETE /other HTTP/1.1\r\n\r\n", &head), 404);
    ck_assert_int_eq(parse("GET /metrics HTTP/2.0\r\n\r\n", &head), 505);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.2\r\n\r\n", &head), 505);
}
END_TEST

START_TEST(test_malformed_requests_are_bad_requests)
{
    bool head;
    static const char *const bad[] = {
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1 extra\r\n\r\n",
        "GET /metrics HTTP/1.1 \r\n\r\n",
        "GET /metrics HTTP/11\r\n\r\n",
        "GET /metrics http/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        "GET /met\x01rics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: a\x01"
        "b\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], &head) == 400, "request %zu: %d", i, parse(bad[i], &head));
    static const char nul[] = "GET /metrics HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    ck_assert_int_eq(mp_metrics_parse_request(nul, sizeof(nul) - 1, &head), 400);
}
END_TEST

START_TEST(test_a_head_over_8_kib_is_too_large)
{
    bool head;
    size_t n = MP_METRICS_HEAD_MAX + 100;
    char *req = malloc(n);
    ck_assert_ptr_nonnull(req);
    size_t len = (size_t)snprintf(req, n, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(req + len, 'a', n - len);
    ck_assert_int_eq(mp_metrics_parse_request(req, MP_METRICS_HEAD_MAX - 1, &head), MP_METRICS_NEED_MORE);
    ck_assert_int_eq(mp_metrics_parse_request(req, MP_METRICS_HEAD_MAX, &head), 431);
    ck_assert_int_eq(mp_metrics_parse_request(req, n, &head), 431);
    /* one that ends exactly at the limit is whole */
    memcpy(req + MP_METRICS_HEAD_MAX - 4, "\r\n\r\n", 4);
    ck_assert_int_eq(mp_metrics_parse_request(req, MP_METRICS_HEAD_MAX, &head), 200);
    free(req);
}
END_TEST

/* ---- a page from a real engine -------------------------------------------------------------- */

START_TEST(test_the_page_shows_the_engines_and_the_workers_figures)
{
    struct mp_config cfg;
    struct mp_cache cache;
    struct mp_clock clk;
    struct mp_stats stats;
    struct mp_latency lat;
    struct mp_hotkeys hk;
    mp_config_defaults(&cfg);
    cfg.mem_limit = 4 * MIB;
    cfg.threads = 2;
    struct mp_cache_config cc = test_cache_config(cfg.mem_limit);
    test_cache_setup(&cache, &cc);
    mp_clock_setup(&clk, 1700000000, 5000);
    ck_assert_int_eq(mp_stats_setup(&stats, 3, cache.slabs.nclasses), 0);
    ck_assert_int_eq(mp_latency_setup(&lat, 2), 0);
    ck_assert_int_eq(mp_hotkeys_setup(&hk, 2, mp_clock_now(&clk)), 0);
    uint32_t now = mp_clock_now(&clk);
    ck_assert(set_str(&cache, "a", "1", 0, now) == MP_STORED);
    ck_assert(set_str(&cache, "b", "22", 0, now) == MP_STORED);
    unsigned cls = mp_slab_class_for(&cache.slabs, mp_item_total(1, 1, 0));
    MP_STAT_ADD(&stats.threads[0], classes[cls].get_hits, 3);
    MP_STAT_ADD(&stats.threads[1], classes[cls].get_hits, 4);
    MP_STAT_ADD(&stats.threads[1], classes[cls].cmd_set, 2);
    mp_latency_record(&lat.threads[1], MP_CMD_GET, 7, 3000);
    for (int i = 0; i < 5; i++)
        mp_hotkeys_count(hk.threads[i % 2], "hot", 3, false, now);
    struct mp_metrics_source src = {.stats = {&cfg, &cache, &clk, &stats, &hk}, .latency = &lat, .hotkeys_k = 10};
    char *page;
    size_t len;
    ck_assert_int_eq(mp_metrics_page(&src, &page, &len), 0);
    ck_assert_uint_eq(strlen(page), len);
    static const char *const want[] = {
        "\nmemcached_up 1\n",
        "\nmemcached_current_items 2\n",
        "\nmemcached_commands_total{command=\"get\",status=\"hit\"} 7\n",
        "\nmemcached_commands_total{command=\"set\",status=\"hit\"} 2\n",
        "\nmemcached_limit_bytes 4194304\n",
        "\nmemcached_max_connections 1024\n",
        "\nmemcached_version{version=\"1.6.18\"} 1\n",
        "\nmemcached_slab_current_items{slab=\"1\"} 2\n",
        "\nmemcached_slab_chunks_used{slab=\"1\"} 2\n",
        "\nmagpie_request_duration_seconds_bucket{command=\"get\",le=\"5e-06\"} 7\n",
        "\nmagpie_request_duration_seconds_count{command=\"get\"} 7\n",
        "\nmagpie_hotkey_requests{key=\"hot\"} 5\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(page, want[i]) != NULL, "no %s", want[i] + 1);
    free(page);
    /* without hot keys on the page, and with latency off */
    src.hotkeys_k = 0;
    src.latency = NULL;
    ck_assert_int_eq(mp_metrics_page(&src, &page, &len), 0);
    ck_assert_ptr_null(strstr(page, "magpie_hotkey_requests"));
    ck_assert_ptr_null(strstr(page, "magpie_request_duration_seconds"));
    ck_assert_ptr_nonnull(strstr(page, "\nmemcached_current_items 2\n"));
    free(page);
    mp_hotkeys_teardown(&hk);
    mp_latency_teardown(&lat);
    mp_stats_teardown(&stats);
    mp_cache_teardown(&cache);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, test_get_and_head_of_metrics_are_served);
    tcase_add_test(tc, test_a_request_head_not_yet_complete_needs_more);
    tcase_add_test(tc, test_other_paths_methods_and_versions_are_refused);
    tcase_add_test(tc, test_malformed_requests_are_bad_requests);
    tcase_add_test(tc, test_a_head_over_8_kib_is_too_large);
    suite_add_tcase(s, tc);
    tc = tcase_create("page");
    tcase_add_test(tc, test_the_page_shows_the_engines_and_the_workers_figures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(metrics_suite());
}

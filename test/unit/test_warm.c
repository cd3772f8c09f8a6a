/* Unit tests for warm's pure parts: a peer's listing lines, its reply heads and version, the
 * requests sent to it, and the peer's address. The copier itself runs against real peers in
 * test/integration/test_warm.py. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/dump.h"
#include "magpie/warm.h"

static enum mp_warm_line line_of(const char *s, struct mp_warm_key *k)
{
    return mp_warm_parse_dump_line(s, strlen(s), k);
}

static enum mp_warm_reply reply_of(const char *s, bool meta, struct mp_warm_head *h)
{
    return mp_warm_parse_reply(s, strlen(s), meta, h);
}

START_TEST(test_a_memcached_listing_line_gives_the_key_its_times_fetched_and_size)
{
    struct mp_warm_key k;
    ck_assert_int_eq(line_of("key=user%3A1%20x exp=1700000100 la=1699999000 cas=77 fetch=yes cls=3 size=96", &k),
                     MP_WARM_LINE_KEY);
    ck_assert_uint_eq(k.nkey, 8);
    ck_assert_mem_eq(k.key, "user:1 x", 8);
    ck_assert(k.binary); /* a space: asked for in base64 */
    ck_assert_int_eq(k.exp, 1700000100);
    ck_assert_int_eq(k.la, 1699999000);
    ck_assert(k.fetched);
    ck_assert_uint_eq(k.size, 96);
    ck_assert_int_eq(line_of("key=plain exp=-1 la=5 cas=1 fetch=no cls=1 size=70\r", &k), MP_WARM_LINE_KEY);
    ck_assert_mem_eq(k.key, "plain", 5);
    ck_assert(!k.binary);
    ck_assert_int_eq(k.exp, -1);
    ck_assert(!k.fetched);
    /* only key= is needed, and fields a later format adds are passed over */
    ck_assert_int_eq(line_of("key=a", &k), MP_WARM_LINE_KEY);
    ck_assert_int_eq(k.exp, -1);
    ck_assert_int_eq(k.la, -1);
    ck_assert_uint_eq(k.size, 0);
    ck_assert_int_eq(line_of("key=a exp=-1 flags=3 la=9", &k), MP_WARM_LINE_KEY);
    ck_assert_int_eq(k.la, 9);
}
END_TEST

START_TEST(test_listing_ends_busy_long_keys_and_garbage)
{
    struct mp_warm_key k;
    ck_assert_int_eq(line_of("END\r", &k), MP_WARM_LINE_END);
    ck_assert_int_eq(line_of("END", &k), MP_WARM_LINE_END);
    ck_assert_int_eq(line_of("NOTSTARTED no items to crawl\r", &k), MP_WARM_LINE_END);
    ck_assert_int_eq(line_of("BUSY currently processing crawler request\r", &k), MP_WARM_LINE_BUSY);
    ck_assert_int_eq(line_of("CLIENT_ERROR lru crawler disabled\r", &k), MP_WARM_LINE_REFUSED);
    ck_assert_int_eq(line_of("ERROR metadump not allowed\r", &k), MP_WARM_LINE_REFUSED);
    ck_assert_int_eq(line_of("BADCLASS invalid class id\r", &k), MP_WARM_LINE_REFUSED);
    char line[1024] = "key=";
    for (int i = 0; i < 251; i++)
        strcat(line, "%41");
    strcat(line, " exp=-1");
    ck_assert_int_eq(line_of(line, &k), MP_WARM_LINE_LONG);
    static const char *const bad[] = {
        "",
        "ENDX",
        "BUSYX",
        "ERRORS",
        "key=",
        "key=a%4",
        "key=a%G1",
        "key=a b",
        "key=a exp=soon",
        "key=a exp=1x",
        "key=a la=",
        "key=a fetch=maybe",
        "key=a size=-1",
        "key=a size=4294967296",
        "key=a  exp=1",
        "key=a exp=1 ",
        "key=a key=b",
        "key=a =1",
        "key=a exp",
        "exp=1 key=a",
        "VALUE a 0 1",
        "\x01\x02\x03",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(line_of(bad[i], &k) == MP_WARM_LINE_BAD, "\"%s\" read as a good line", bad[i]);
}
END_TEST

START_TEST(test_url_decoding_is_memcacheds_encoding_undone)
{
    char out[MP_KEY_MAX];
    ck_assert_int_eq(mp_warm_urldecode(LIT("a%2Fb%2fc-._~"), out), 9);
    ck_assert_mem_eq(out, "a/b/c-._~", 9);
    ck_assert_int_eq(mp_warm_urldecode(LIT("%00%FF"), out), 2);
    ck_assert_mem_eq(out, "\0\xff", 2);
    ck_assert_int_eq(mp_warm_urldecode(LIT(""), out), -1);
    ck_assert_int_eq(mp_warm_urldecode(LIT("%"), out), -1);
    ck_assert_int_eq(mp_warm_urldecode(LIT("%2"), out), -1);
    ck_assert_int_eq(mp_warm_urldecode(LIT("a\tb"), out), -1);
    char in[600];
    memset(in, 'x', 251);
    ck_assert_int_eq(mp_warm_urldecode(in, 250, out), 250);
    ck_assert_int_eq(mp_warm_urldecode(in, 251, out), -2);
}
END_TEST

START_TEST(test_only_printable_keys_go_on_a_command_line_as_they_are)
{
    ck_assert(mp_warm_key_printable(LIT("user:1")));
    ck_assert(mp_warm_key_printable(LIT("caf\xc3\xa9")));
    ck_assert(!mp_warm_key_printable(LIT("a b")));
    ck_assert(!mp_warm_key_printable(LIT("a\rb")));
    ck_assert(!mp_warm_key_printable(LIT("a\x7f")));
    ck_assert(!mp_warm_key_printable(LIT("")));
}
END_TEST

/* Magpie's own listing (dump.h) reads back as the keys it lists, whatever their bytes. */
static char listing[1 << 20];
static size_t nlisting;

static void sink(void *ctx, const char *data, size_t n)
{
    (void)ctx;
    ck_assert_uint_lt(nlisting + n, sizeof(listing));
    memcpy(listing + nlisting, data, n);
    nlisting += n;
}

START_TEST(test_magpies_own_listing_reads_back_every_key_exactly)
{
    struct mp_cache c;
    struct mp_cache_config cfg = test_cache_config(16 * MIB);
    test_cache_setup(&c, &cfg);
    struct mp_clock clk;
    mp_clock_setup(&clk, 1700000000, 5000);
    uint32_t now = mp_clock_now(&clk);
    char keys[4][MP_KEY_MAX];
    size_t nkeys[4] = {5, 3, MP_KEY_MAX, 4};
    memcpy(keys[0], "k:1%2", 5);
    memcpy(keys[1], "a\0b", 3);
    memset(keys[2], 'z', MP_KEY_MAX);
    memcpy(keys[3], "\r\n \xff", 4);
    for (int i = 0; i < 4; i++) {
        enum mp_result res;
        struct mp_item *it = mp_cache_alloc(&c, keys[i], nkeys[i], 0, i == 0 ? now + 50 : 0, 1, now, &res);
        ck_assert_ptr_nonnull(it);
        struct mp_store st = {.op = MP_SET};
        ck_assert_int_eq(mp_cache_store(&c, &it, &st, now), MP_STORED);
    }
    struct mp_dump d;
    nlisting = 0;
    ck_assert_int_eq(mp_dump_begin_meta(&d, &c, LIT("all")), 0);
    while (!mp_dump_step(&d, &c, &clk, 100, sink, NULL))
        ;
    int found = 0;
    bool ended = false;
    for (size_t pos = 0; pos < nlisting;) {
        const char *nl = memchr(listing + pos, '\n', nlisting - pos);
        ck_assert_ptr_nonnull(nl);
        struct mp_warm_key k;
        enum mp_warm_line kind = mp_warm_parse_dump_line(listing + pos, (size_t)(nl - listing - pos), &k);
        pos = (size_t)(nl - listing) + 1;
        if (kind == MP_WARM_LINE_END) {
            ended = true;
            continue;
        }
        ck_assert_int_eq(kind, MP_WARM_LINE_KEY);
        for (int i = 0; i < 4; i++) {
            if (k.nkey == nkeys[i] && memcmp(k.key, keys[i], nkeys[i]) == 0) {
                found |= 1 << i;
                ck_assert_int_eq(k.binary, i == 1 || i == 3);
                ck_assert_int_eq(k.exp, i == 0 ? 1700000050 : -1);
                ck_assert_int_eq(k.la, 1700000000);
            }
        }
    }
    ck_assert(ended);
    ck_assert_int_eq(found, 15);
    mp_cache_teardown(&c);
}
END_TEST

START_TEST(test_meta_replies_carry_value_flags_ttl_access_cas_and_number)
{
    struct mp_warm_head h;
    ck_assert_int_eq(reply_of("VA 5 f3 t-1 h1 l120 c99 O7", true, &h), MP_WARM_VALUE);
    ck_assert_uint_eq(h.nbytes, 5);
    ck_assert_uint_eq(h.flags, 3);
    ck_assert_int_eq(h.ttl, -1);
    ck_assert(h.fetched);
    ck_assert_uint_eq(h.idle, 120);
    ck_assert_uint_eq(h.cas, 99);
    ck_assert(h.has_opaque);
    ck_assert_uint_eq(h.opaque, 7);
    ck_assert(!h.stale && !h.won);
    ck_assert_int_eq(reply_of("VA 0 f0 t3600 h0 l0 c1 O4294967295 Z X W", true, &h), MP_WARM_VALUE);
    ck_assert_int_eq(h.ttl, 3600);
    ck_assert(!h.fetched);
    ck_assert_uint_eq(h.opaque, 4294967295u);
    ck_assert(h.stale && h.won);
    ck_assert_int_eq(reply_of("VA 2", true, &h), MP_WARM_VALUE);
    ck_assert(!h.has_opaque);
    ck_assert_int_eq(h.ttl, -1);
    ck_assert_int_eq(reply_of("EN O3", true, &h), MP_WARM_MISS);
    ck_assert_uint_eq(h.opaque, 3);
    ck_assert_int_eq(reply_of("HD O2", true, &h), MP_WARM_HD);
    ck_assert_int_eq(reply_of("EX O2", true, &h), MP_WARM_EX);
    ck_assert_int_eq(reply_of("NF O2", true, &h), MP_WARM_NF);
    ck_assert_int_eq(reply_of("SERVER_ERROR out of memory", true, &h), MP_WARM_SERVER_ERROR);
    ck_assert_int_eq(reply_of("CLIENT_ERROR bad command line format", true, &h), MP_WARM_CLIENT_ERROR);
    ck_assert_int_eq(reply_of("ERROR", true, &h), MP_WARM_ERROR);
    static const char *const bad[] = {"",         "VA",          "VA x",     "VA -1",   "VA 5 fabc",     "VA 5 O",
                                      "VA 5 Ox",  "VA 5 tx",     "VA 5 t-2", "VA 5 h2", "VA 5  f1",      "VA 5 f1 ",
                                      "EN  O1",   "VALUE k 0 1", "END",      "ERRORS",  "SERVER_ERRORx", "va 5",
                                      "VA 5 \x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(reply_of(bad[i], true, &h) == MP_WARM_BAD, "\"%s\" read as a meta reply", bad[i]);
}
END_TEST

START_TEST(test_get_replies_are_value_and_end)
{
    struct mp_warm_head h;
    ck_assert_int_eq(reply_of("VALUE key:1 42 10", false, &h), MP_WARM_VALUE);
    ck_assert_uint_eq(h.nkey, 5);
    ck_assert_mem_eq(h.key, "key:1", 5);
    ck_assert_uint_eq(h.flags, 42);
    ck_assert_uint_eq(h.nbytes, 10);
    ck_assert_int_eq(h.ttl, -1);
    ck_assert_int_eq(reply_of("VALUE k 0 1 77", false, &h), MP_WARM_VALUE);
    ck_assert_uint_eq(h.cas, 77);
    ck_assert_int_eq(reply_of("END", false, &h), MP_WARM_END);
    static const char *const bad[] = {"VA 1",        "EN",        "END x",           "VALUE",        "VALUE k",
                                      "VALUE k x 1", "VALUE k 0", "VALUE k 0 1 2 3", "VALUE k 0 1 x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(reply_of(bad[i], false, &h) == MP_WARM_BAD, "\"%s\" read as a get reply", bad[i]);
}
END_TEST

START_TEST(test_version_says_whether_the_peer_has_meta_commands)
{
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.6.18")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.6.0")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.10.2")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 2.0")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.6.18-custom")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.5.22")), 0);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1.4.33")), 0);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION 1")), 0);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION unknown")), 1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSION")), -1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("VERSIONS 1.6")), -1);
    ck_assert_int_eq(mp_warm_parse_version(LIT("ERROR")), -1);
}
END_TEST

static struct mp_warm_key key_named(const char *s, size_t n)
{
    struct mp_warm_key k = {.nkey = (uint8_t)n, .binary = !mp_warm_key_printable(s, n)};
    memcpy(k.key, s, n);
    return k;
}

START_TEST(test_requests_name_the_key_as_is_or_in_base64)
{
    char out[MP_WARM_REQUEST_MAX];
    struct mp_warm_key k = key_named(LIT("user:1"));
    size_t n = mp_warm_format_get(out, &k, true, 42);
    out[n] = '\0';
    ck_assert_str_eq(out, "mg user:1 v f t h l c u O42\r\n");
    n = mp_warm_format_get(out, &k, false, 42);
    out[n] = '\0';
    ck_assert_str_eq(out, "get user:1\r\n");
    k = key_named(LIT("a b\n"));
    n = mp_warm_format_get(out, &k, true, 0);
    out[n] = '\0';
    ck_assert_str_eq(out, "mg YSBiCg== b v f t h l c u O0\r\n");
    n = mp_warm_format_giveback(out, &k, 1234567890123ull, 4294967295u);
    out[n] = '\0';
    ck_assert_str_eq(out, "md YSBiCg== b I C1234567890123 O4294967295\r\n");
    /* the longest fits */
    char big[MP_KEY_MAX];
    memset(big, ' ', sizeof(big));
    k = key_named(big, sizeof(big));
    ck_assert_uint_le(mp_warm_format_get(out, &k, true, UINT32_MAX), MP_WARM_REQUEST_MAX);
    ck_assert_uint_le(mp_warm_format_giveback(out, &k, UINT64_MAX, UINT32_MAX), MP_WARM_REQUEST_MAX);
}
END_TEST

START_TEST(test_a_peer_is_host_and_port)
{
    char host[64];
    uint16_t port;
    ck_assert_int_eq(mp_warm_split_peer("127.0.0.1:11211", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 11211);
    ck_assert_int_eq(mp_warm_split_peer("[::1]:1", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 1);
    ck_assert_int_eq(mp_warm_split_peer("cache-0.cache:65535", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "cache-0.cache");
    static const char *const bad[] = {"",           "host",    "host:",     ":11211", "host:0",
                                      "host:65536", "host:1x", "::1:11211", "[]:1",   "host:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(mp_warm_split_peer(bad[i], host, sizeof(host), &port) == -1, "\"%s\" taken", bad[i]);
    char longname[100];
    memset(longname, 'h', 70);
    strcpy(longname + 70, ":1");
    ck_assert_int_eq(mp_warm_split_peer(longname, host, sizeof(host), &port), -1);
}
END_TEST

START_TEST(test_state_names_are_stats_words)
{
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_OFF), "off");
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_CONNECTING), "connecting");
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_COPYING), "copying");
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_DONE), "done");
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_FAILED), "failed");
    ck_assert_str_eq(mp_warm_state_name(MP_WARM_STOPPED), "stopped");
    struct mp_warm_status st = {0};
    atomic_store(&st.present, 1);
    atomic_store(&st.missing, 2);
    atomic_store(&st.too_large, 4);
    atomic_store(&st.no_room, 8);
    atomic_store(&st.bad_key, 16);
    atomic_store(&st.copied, 100);
    ck_assert_uint_eq(mp_warm_skipped(&st), 31);
    atomic_store(&st.start_us, 1000000);
    atomic_store(&st.end_us, 3500000);
    ck_assert(mp_warm_seconds(&st) == 2.5);
}
END_TEST

static Suite *warm_suite(void)
{
    Suite *s = suite_create("warm");
    TCase *tc = tcase_create("warm");
    tcase_add_test(tc, test_a_memcached_listing_line_gives_the_key_its_times_fetched_and_size);
    tcase_add_test(tc, test_listing_ends_busy_long_keys_and_garbage);
    tcase_add_test(tc, test_url_decoding_is_memcacheds_encoding_undone);
    tcase_add_test(tc, test_only_printable_keys_go_on_a_command_line_as_they_are);
    tcase_add_test(tc, test_magpies_own_listing_reads_back_every_key_exactly);
    tcase_add_test(tc, test_meta_replies_carry_value_flags_ttl_access_cas_and_number);
    tcase_add_test(tc, test_get_replies_are_value_and_end);
    tcase_add_test(tc, test_version_says_whether_the_peer_has_meta_commands);
    tcase_add_test(tc, test_requests_name_the_key_as_is_or_in_base64);
    tcase_add_test(tc, test_a_peer_is_host_and_port);
    tcase_add_test(tc, test_state_names_are_stats_words);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(warm_suite());
}

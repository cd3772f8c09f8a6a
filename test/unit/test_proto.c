/* Unit tests for proto: the pure text-protocol parser and the reply helpers. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/proto.h"

#define BAD_FORMAT "CLIENT_ERROR bad command line format"
#define BAD_EXPTIME "CLIENT_ERROR invalid exptime argument"
#define DELETE_USAGE "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"

static struct mp_request req;
static size_t used;

/* Parse a whole buffer given as a string (no NUL inside). */
static enum mp_parse_status parse(const char *s)
{
    used = (size_t)-1;
    return mp_proto_parse(s, strlen(s), &req, &used);
}

/* Parse a line that must come back OK, consuming all of it. */
static void parse_ok(const char *s)
{
    enum mp_parse_status st = parse(s);
    ck_assert_msg(st == MP_PARSE_OK, "\"%s\": status %d", s, st);
    ck_assert_uint_eq(used, strlen(s));
}

/* A line that must be answered with exactly `error`. */
static void assert_error(const char *s, const char *error)
{
    parse_ok(s);
    ck_assert_msg(req.cmd == MP_CMD_ERROR, "\"%s\": cmd %d, expected an error", s, req.cmd);
    ck_assert_str_eq(req.error, error);
}

static void assert_cmd(const char *s, enum mp_cmd cmd)
{
    parse_ok(s);
    ck_assert_msg(req.cmd == cmd, "\"%s\": cmd %d (%s), expected %d", s, req.cmd,
                  req.cmd == MP_CMD_ERROR ? req.error : "-", cmd);
}

static void assert_key(const char *key)
{
    ck_assert_uint_eq(req.nkey, strlen(key));
    ck_assert_int_eq(memcmp(req.key, key, req.nkey), 0);
}

static void assert_keys(const char *keys)
{
    ck_assert_uint_eq(req.nkeys, strlen(keys));
    ck_assert_int_eq(memcmp(req.keys, keys, req.nkeys), 0);
}

/* A line "<prefix><key of n bytes><suffix>\r\n" in a static buffer. */
static const char *line_with_key(const char *prefix, size_t n, const char *suffix)
{
    static char buf[600];
    size_t p = strlen(prefix);
    memcpy(buf, prefix, p);
    memset(buf + p, 'k', n);
    snprintf(buf + p + n, sizeof(buf) - p - n, "%s\r\n", suffix);
    return buf;
}

/* ---- token counts --------------------------------------------------------------------------- */

struct count_case {
    const char *line;
    enum mp_cmd cmd; /* MP_CMD_ERROR: must answer "ERROR" */
};

START_TEST(test_each_command_accepts_exactly_its_token_counts)
{
    static const struct count_case cases[] = {
        {"get\r\n", MP_CMD_ERROR},
        {"get a\r\n", MP_CMD_GET},
        {"get a b c\r\n", MP_CMD_GET},
        {"gets\r\n", MP_CMD_ERROR},
        {"gets a\r\n", MP_CMD_GETS},
        {"bget a\r\n", MP_CMD_GET},
        {"gat\r\n", MP_CMD_ERROR},
        {"gat 10\r\n", MP_CMD_GAT}, /* no keys: memcached answers END */
        {"gat 10 a b\r\n", MP_CMD_GAT},
        {"gats 10 a\r\n", MP_CMD_GATS},
        {"set k 0 0\r\n", MP_CMD_ERROR},
        {"set k 0 0 1\r\n", MP_CMD_SET},
        {"set k 0 0 1 noreply\r\n", MP_CMD_SET},
        {"set k 0 0 1 noreply x\r\n", MP_CMD_ERROR},
        {"add k 0 0 1\r\n", MP_CMD_ADD},
        {"add k 0 0\r\n", MP_CMD_ERROR},
        {"replace k 0 0 1\r\n", MP_CMD_REPLACE},
        {"replace k 0 0 1 a b\r\n", MP_CMD_ERROR},
        {"append k 0 0 1\r\n", MP_CMD_APPEND},
        {"append k\r\n", MP_CMD_ERROR},
        {"prepend k 0 0 1\r\n", MP_CMD_PREPEND},
        {"prepend k 0 0 1 2 3\r\n", MP_CMD_ERROR},
        {"cas k 0 0 1\r\n", MP_CMD_ERROR},
        {"cas k 0 0 1 5\r\n", MP_CMD_CAS},
        {"cas k 0 0 1 5 noreply\r\n", MP_CMD_CAS},
        {"cas k 0 0 1 5 noreply x\r\n", MP_CMD_ERROR},
        {"incr k\r\n", MP_CMD_ERROR},
        {"incr k 1\r\n", MP_CMD_INCR},
        {"incr k 1 noreply\r\n", MP_CMD_INCR},
        {"incr k 1 noreply x\r\n", MP_CMD_ERROR},
        {"decr k 1\r\n", MP_CMD_DECR},
        {"decr k\r\n", MP_CMD_ERROR},
        {"touch k\r\n", MP_CMD_ERROR},
        {"touch k 10\r\n", MP_CMD_TOUCH},
        {"touch k 10 noreply\r\n", MP_CMD_TOUCH},
        {"touch k 10 noreply x\r\n", MP_CMD_ERROR},
        {"delete\r\n", MP_CMD_ERROR},
        {"delete k\r\n", MP_CMD_DELETE},
        {"delete k 0 noreply x\r\n", MP_CMD_ERROR},
        {"flush_all\r\n", MP_CMD_FLUSH_ALL},
        {"flush_all 10\r\n", MP_CMD_FLUSH_ALL},
        {"flush_all 10 noreply\r\n", MP_CMD_FLUSH_ALL},
        {"flush_all 10 noreply x\r\n", MP_CMD_ERROR},
        {"verbosity\r\n", MP_CMD_ERROR},
        {"verbosity 1\r\n", MP_CMD_VERBOSITY},
        {"verbosity 1 noreply\r\n", MP_CMD_VERBOSITY},
        {"verbosity 1 noreply x\r\n", MP_CMD_ERROR},
        {"version\r\n", MP_CMD_VERSION},
        {"quit\r\n", MP_CMD_QUIT},
        {"stats\r\n", MP_CMD_STATS},
        {"stats slabs\r\n", MP_CMD_STATS},
        {"mn\r\n", MP_CMD_MN},
        {"nosuchcommand\r\n", MP_CMD_ERROR},
        {"x\r\n", MP_CMD_ERROR}, /* no command is shorter than two bytes */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_ok(cases[i].line);
        ck_assert_msg(req.cmd == cases[i].cmd, "\"%s\": cmd %d, expected %d", cases[i].line, req.cmd, cases[i].cmd);
        if (cases[i].cmd == MP_CMD_ERROR)
            ck_assert_msg(strcmp(req.error, "ERROR") == 0, "\"%s\": %s", cases[i].line, req.error);
    }
}
END_TEST

START_TEST(test_more_than_24_tokens_is_an_error_for_fixed_commands)
{
    /* the tokenizer stops at 23 tokens, so memcached's ntokens is 24: not a set's 6 or 7 */
    assert_error("set k 0 0 1 a b c d e f g h i j k l m n o p q r s t u v w\r\n", "ERROR");
}
END_TEST

START_TEST(test_get_keeps_every_key_past_the_token_limit)
{
    char line[512] = "get";
    for (int i = 0; i < 40; i++)
        snprintf(line + strlen(line), sizeof(line) - strlen(line), " k%d", i);
    strcat(line, "\r\n");
    assert_cmd(line, MP_CMD_GET);
    const char *pos = req.keys, *end = req.keys + req.nkeys, *key;
    size_t nkey;
    int n = 0;
    char want[16];
    while (mp_proto_next_key(&pos, end, &key, &nkey)) {
        snprintf(want, sizeof(want), "k%d", n++);
        ck_assert_uint_eq(nkey, strlen(want));
        ck_assert_int_eq(memcmp(key, want, nkey), 0);
    }
    ck_assert_int_eq(n, 40);
}
END_TEST

/* ---- fields ----------------------------------------------------------------------------------- */

START_TEST(test_set_fields_are_read)
{
    assert_cmd("set foo 4294967295 -1 5\r\n", MP_CMD_SET);
    assert_key("foo");
    ck_assert_uint_eq(req.flags, UINT32_MAX);
    ck_assert_int_eq(req.exptime, -1);
    ck_assert_int_eq(req.vlen, 5);
    ck_assert(!req.noreply);
}
END_TEST

START_TEST(test_cas_reads_its_unique)
{
    assert_cmd("cas k 1 2 3 18446744073709551615\r\n", MP_CMD_CAS);
    ck_assert_uint_eq(req.flags, 1);
    ck_assert_int_eq(req.exptime, 2);
    ck_assert_int_eq(req.vlen, 3);
    ck_assert_uint_eq(req.cas, UINT64_MAX);
}
END_TEST

START_TEST(test_noreply_is_the_last_token_only)
{
    assert_cmd("set k 0 0 1 noreply\r\n", MP_CMD_SET);
    ck_assert(req.noreply);
    /* a sixth token that is not "noreply" is accepted and ignored, as memcached does */
    assert_cmd("set k 0 0 1 norep\r\n", MP_CMD_SET);
    ck_assert(!req.noreply);
    assert_cmd("incr k 5 noreply\r\n", MP_CMD_INCR);
    ck_assert(req.noreply);
    ck_assert_uint_eq(req.delta, 5);
    assert_cmd("touch k 5 noreply\r\n", MP_CMD_TOUCH);
    ck_assert(req.noreply);
    assert_cmd("flush_all noreply\r\n", MP_CMD_FLUSH_ALL);
    ck_assert(req.noreply);
    ck_assert_int_eq(req.exptime, 0);
    assert_cmd("verbosity 1 noreply\r\n", MP_CMD_VERBOSITY);
    ck_assert(req.noreply);
    assert_cmd("get noreply\r\n", MP_CMD_GET); /* a key, for get */
    ck_assert(!req.noreply);
    assert_keys("noreply");
}
END_TEST

START_TEST(test_noreply_is_known_even_when_the_line_is_refused)
{
    /* memcached reads noreply before checking numbers, so a bad set with noreply is silent */
    assert_error("set k x 0 1 noreply\r\n", BAD_FORMAT);
    ck_assert(req.noreply);
    assert_error("incr k x noreply\r\n", "CLIENT_ERROR invalid numeric delta argument");
    ck_assert(req.noreply);
}
END_TEST

START_TEST(test_key_of_250_bytes_is_accepted_and_251_refused)
{
    static const char *cmds[][2] = {
        {"set ", " 0 0 1"}, {"add ", " 0 0 1"}, {"cas ", " 0 0 1 1"}, {"incr ", " 1"},
        {"decr ", " 1"},    {"touch ", " 1"},   {"delete ", ""},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        parse_ok(line_with_key(cmds[i][0], 250, cmds[i][1]));
        ck_assert_msg(req.cmd != MP_CMD_ERROR, "%s250: %s", cmds[i][0], req.error);
        ck_assert_uint_eq(req.nkey, 250);
        assert_error(line_with_key(cmds[i][0], 251, cmds[i][1]), BAD_FORMAT);
    }
}
END_TEST

START_TEST(test_bad_numbers_give_memcacheds_exact_errors)
{
    assert_error("set k x 0 1\r\n", BAD_FORMAT);
    assert_error("set k 0 x 1\r\n", BAD_FORMAT);
    assert_error("set k 0 0 x\r\n", BAD_FORMAT);
    assert_error("set k -1 0 1\r\n", BAD_FORMAT);    /* flags are unsigned */
    assert_error("set k 0 0 1x\r\n", BAD_FORMAT);    /* trailing garbage */
    assert_error("cas k 0 0 1 -1\r\n", BAD_FORMAT);  /* cas unique */
    assert_error("cas k 0 0 1 abc\r\n", BAD_FORMAT); /* cas unique */
    assert_error("incr k x\r\n", "CLIENT_ERROR invalid numeric delta argument");
    assert_error("decr k -1\r\n", "CLIENT_ERROR invalid numeric delta argument");
    assert_error("incr k 18446744073709551616\r\n", "CLIENT_ERROR invalid numeric delta argument");
    assert_error("touch k x\r\n", BAD_EXPTIME);
    assert_error("gat x k\r\n", BAD_EXPTIME);
    assert_error("gats 1.5 k\r\n", BAD_EXPTIME);
    assert_error("flush_all x\r\n", BAD_EXPTIME);
    assert_error("flush_all x noreply\r\n", BAD_EXPTIME);
    assert_error("verbosity x\r\n", BAD_FORMAT);
}
END_TEST

START_TEST(test_set_flags_wrap_to_32_bits_as_memcached_casts_them)
{
    assert_cmd("set k 4294967296 0 1\r\n", MP_CMD_SET);
    ck_assert_uint_eq(req.flags, 0);
}
END_TEST

START_TEST(test_negative_length_is_a_bad_command_line)
{
    assert_error("set k 0 0 -1\r\n", BAD_FORMAT);
    assert_error("cas k 0 0 -5 1\r\n", BAD_FORMAT);
    /* 2^32 - 1 reads as -1 in 32 bits */
    assert_error("set k 0 0 4294967295\r\n", BAD_FORMAT);
    /* the largest length memcached takes is INT_MAX - 2 */
    assert_error("set k 0 0 2147483646\r\n", BAD_FORMAT);
    assert_cmd("set k 0 0 2147483645\r\n", MP_CMD_SET);
    ck_assert_int_eq(req.vlen, 2147483645);
}
END_TEST

START_TEST(test_gat_reads_exptime_then_keys)
{
    assert_cmd("gat -1 a b\r\n", MP_CMD_GAT);
    ck_assert_int_eq(req.exptime, -1);
    assert_keys("a b");
    assert_cmd("gat 10\r\n", MP_CMD_GAT);
    ck_assert_uint_eq(req.nkeys, 0);
}
END_TEST

/* ---- delete and flush_all ------------------------------------------------------------------- */

START_TEST(test_delete_accepts_a_zero_hold_time_and_noreply)
{
    assert_cmd("delete k 0\r\n", MP_CMD_DELETE);
    assert_key("k");
    ck_assert(!req.noreply);
    assert_cmd("delete k noreply\r\n", MP_CMD_DELETE);
    ck_assert(req.noreply);
    assert_cmd("delete k 0 noreply\r\n", MP_CMD_DELETE);
    ck_assert(req.noreply);
}
END_TEST

START_TEST(test_delete_with_a_hold_time_answers_the_usage_error)
{
    assert_error("delete k 1\r\n", DELETE_USAGE);
    assert_error("delete k 00\r\n", DELETE_USAGE);
    assert_error("delete k 1 noreply\r\n", DELETE_USAGE);
    ck_assert(req.noreply);
    assert_error("delete k noreply 0\r\n", DELETE_USAGE);
}
END_TEST

START_TEST(test_flush_all_forms)
{
    assert_cmd("flush_all\r\n", MP_CMD_FLUSH_ALL);
    ck_assert_int_eq(req.exptime, 0);
    ck_assert(!req.noreply);
    assert_cmd("flush_all 30\r\n", MP_CMD_FLUSH_ALL);
    ck_assert_int_eq(req.exptime, 30);
    assert_cmd("flush_all 0 noreply\r\n", MP_CMD_FLUSH_ALL);
    ck_assert_int_eq(req.exptime, 0);
    ck_assert(req.noreply);
    assert_cmd("flush_all -1\r\n", MP_CMD_FLUSH_ALL);
    ck_assert_int_eq(req.exptime, -1);
    assert_error("flush_all noreply 5\r\n", BAD_EXPTIME);
}
END_TEST

START_TEST(test_verbosity_reads_its_level)
{
    assert_cmd("verbosity 2\r\n", MP_CMD_VERBOSITY);
    ck_assert_uint_eq(req.level, 2);
}
END_TEST

/* The operator commands hand their arguments to the runner (admin.h), noreply read as usual. */
START_TEST(test_admin_commands_hand_out_their_arguments)
{
    assert_cmd("shutdown\r\n", MP_CMD_SHUTDOWN);
    assert_keys("");
    assert_cmd("lru_crawler metadump all\r\n", MP_CMD_LRU_CRAWLER);
    assert_keys("metadump all");
    assert_cmd("slabs automove 1 noreply\r\n", MP_CMD_SLABS);
    assert_keys("automove 1 noreply");
    ck_assert(req.noreply);
    assert_cmd("watch fetchers mutations\r\n", MP_CMD_WATCH);
    assert_keys("fetchers mutations");
    assert_cmd("cache_memlimit 100\r\n", MP_CMD_MEMLIMIT);
    assert_keys("100");
    /* memcached's token count for cache_memlimit */
    assert_error("cache_memlimit\r\n", "ERROR");
    assert_error("cache_memlimit 1 2 3\r\n", "ERROR");
    struct mp_token t[4];
    ck_assert_uint_eq(mp_proto_split(" a  bb c", 8, t, 4), 3);
    ck_assert_uint_eq(t[1].n, 2);
    ck_assert_uint_eq(mp_proto_split("a b c", 5, t, 2), 2);
}
END_TEST

START_TEST(test_meta_l_flag_is_known)
{
    assert_cmd("mg k l h v\r\n", MP_CMD_MG);
    assert_cmd("md k l\r\n", MP_CMD_MD);
}
END_TEST

START_TEST(test_stats_hands_out_its_arguments)
{
    assert_cmd("stats items\r\n", MP_CMD_STATS);
    assert_keys("items");
    assert_cmd("stats\r\n", MP_CMD_STATS);
    ck_assert_uint_eq(req.nkeys, 0);
}
END_TEST

/* ---- line framing ----------------------------------------------------------------------------- */

START_TEST(test_line_may_end_in_lf_or_crlf)
{
    assert_cmd("get abc\n", MP_CMD_GET);
    assert_keys("abc");
    assert_cmd("get abc\r\n", MP_CMD_GET);
    assert_keys("abc");
    /* only one "\r" before the "\n" is part of the end */
    assert_cmd("get abc\r\r\n", MP_CMD_GET);
    assert_keys("abc\r");
}
END_TEST

START_TEST(test_empty_lines_are_errors)
{
    assert_error("\r\n", "ERROR");
    assert_error("\n", "ERROR");
    assert_error("   \r\n", "ERROR");
}
END_TEST

START_TEST(test_consumed_stops_after_the_first_line)
{
    const char *buf = "get a\r\nget b\r\n";
    ck_assert_int_eq(mp_proto_parse(buf, strlen(buf), &req, &used), MP_PARSE_OK);
    ck_assert_uint_eq(used, 7);
    ck_assert_uint_eq(req.nkeys, 1);
    ck_assert_int_eq(req.keys[0], 'a');
    ck_assert_int_eq(mp_proto_parse(buf + used, strlen(buf) - used, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.keys[0], 'b');
}
END_TEST

START_TEST(test_nul_byte_cuts_the_line)
{
    static const char buf[] = "get a\0b c\r\nget d\r\n";
    size_t len = sizeof(buf) - 1;
    ck_assert_int_eq(mp_proto_parse(buf, len, &req, &used), MP_PARSE_OK);
    ck_assert_uint_eq(used, 11); /* the whole line is consumed */
    ck_assert_int_eq(req.cmd, MP_CMD_GET);
    assert_keys("a");

    static const char set[] = "set k 0 0 1\0 junk junk\r\n";
    ck_assert_int_eq(mp_proto_parse(set, sizeof(set) - 1, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_SET);
    ck_assert_int_eq(req.vlen, 1);
}
END_TEST

START_TEST(test_incomplete_line_needs_more)
{
    ck_assert_int_eq(parse("get abc"), MP_PARSE_NEED_MORE);
    ck_assert_int_eq(parse("set k 0 0 1\r"), MP_PARSE_NEED_MORE);
    ck_assert_int_eq(parse(""), MP_PARSE_NEED_MORE);
    /* 2048 bytes without a newline may still become a line */
    char *buf = malloc(MP_PROTO_LINE_MAX);
    memset(buf, 'x', MP_PROTO_LINE_MAX);
    memcpy(buf, "set ", 4);
    ck_assert_int_eq(mp_proto_parse(buf, MP_PROTO_LINE_MAX, &req, &used), MP_PARSE_NEED_MORE);
    free(buf);
}
END_TEST

START_TEST(test_long_line_without_newline_closes_unless_get)
{
    char *buf = malloc(MP_PROTO_LINE_MAX + 1);
    memset(buf, 'x', MP_PROTO_LINE_MAX + 1);
    memcpy(buf, "set ", 4);
    ck_assert_int_eq(mp_proto_parse(buf, MP_PROTO_LINE_MAX + 1, &req, &used), MP_PARSE_CLOSE);
    memcpy(buf, "getx", 4); /* "get" must be followed by a space */
    ck_assert_int_eq(mp_proto_parse(buf, MP_PROTO_LINE_MAX + 1, &req, &used), MP_PARSE_CLOSE);
    /* more than 100 leading spaces before "get " */
    memset(buf, ' ', 101);
    memcpy(buf + 101, "get ", 4);
    ck_assert_int_eq(mp_proto_parse(buf, MP_PROTO_LINE_MAX + 1, &req, &used), MP_PARSE_CLOSE);
    free(buf);
}
END_TEST

/* A get line of `nkeys` keys "key<i>" with no newline yet, over the line limit. */
static size_t long_get_line(char *buf, size_t cap, const char *cmd, int nkeys)
{
    size_t n = (size_t)snprintf(buf, cap, "%s", cmd);
    for (int i = 0; i < nkeys; i++)
        n += (size_t)snprintf(buf + n, cap - n, " key%04d", i);
    return n;
}

START_TEST(test_long_get_line_is_handed_out_in_parts)
{
    char buf[4096];
    size_t len = long_get_line(buf, sizeof(buf), "get", 300); /* 2403 bytes, no newline */
    ck_assert_uint_gt(len, MP_PROTO_LINE_MAX);
    ck_assert_int_eq(mp_proto_parse(buf, len, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_GET);
    ck_assert(req.partial);
    /* the keys up to the last space: the last key may be incomplete and is left for later */
    ck_assert_ptr_eq(req.keys, buf + 4);
    ck_assert_uint_eq(used, len - 8);
    ck_assert_uint_eq(req.nkeys, len - 8 - 4);
    int n = 0;
    const char *pos = req.keys, *end = req.keys + req.nkeys, *key;
    size_t nkey;
    while (mp_proto_next_key(&pos, end, &key, &nkey)) {
        char want[16];
        snprintf(want, sizeof(want), "key%04d", n++);
        ck_assert_uint_eq(nkey, 7);
        ck_assert_int_eq(memcmp(key, want, 7), 0);
    }
    ck_assert_int_eq(n, 299);

    /* The rest of the line arrives: " key0299 key0300\r\n" */
    char rest[64];
    size_t rlen = (size_t)snprintf(rest, sizeof(rest), "%.*s key0300\r\nget z\r\n", (int)(len - used), buf + used);
    ck_assert_int_eq(mp_proto_parse_keys(rest, rlen, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_GET);
    ck_assert(!req.partial);
    assert_keys(" key0299 key0300");
    ck_assert_uint_eq(used, rlen - strlen("get z\r\n"));
}
END_TEST

START_TEST(test_long_gets_line_keeps_its_command)
{
    char buf[4096];
    size_t len = long_get_line(buf, sizeof(buf), "  gets", 300);
    ck_assert_int_eq(mp_proto_parse(buf, len, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_GETS);
    ck_assert(req.partial);
    ck_assert_ptr_eq(req.keys, buf + 7);
    ck_assert_int_eq(mp_proto_parse_keys(" a b", 4, &req, &used), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_GETS);
}
END_TEST

START_TEST(test_parse_keys_without_newline_stops_at_the_last_complete_key)
{
    req.cmd = MP_CMD_GET;
    ck_assert_int_eq(mp_proto_parse_keys("a bb cc", 7, &req, &used), MP_PARSE_OK);
    ck_assert(req.partial);
    assert_keys("a bb");
    ck_assert_uint_eq(used, 5); /* through the space, "cc" stays */
    ck_assert_int_eq(mp_proto_parse_keys("cc", 2, &req, &used), MP_PARSE_NEED_MORE);
    ck_assert_int_eq(mp_proto_parse_keys("cc\n", 3, &req, &used), MP_PARSE_OK);
    ck_assert(!req.partial);
    assert_keys("cc");
    ck_assert_uint_eq(used, 3);
}
END_TEST

START_TEST(test_parse_keys_continuation_of_only_the_line_end_has_no_keys)
{
    /* "get k1 ... kN \r\n" split right after the trailing space: the last part is the line end,
     * and its "\r" is not a key (memcached strips it from the whole line) */
    req.cmd = MP_CMD_GET;
    ck_assert_int_eq(mp_proto_parse_keys("\r\n", 2, &req, &used), MP_PARSE_OK);
    ck_assert_uint_eq(used, 2);
    ck_assert(!req.partial);
    ck_assert_uint_eq(req.nkeys, 0);
}
END_TEST

START_TEST(test_parse_keys_hands_out_a_key_too_long_to_be_valid)
{
    char buf[MP_KEY_MAX + 2];
    memset(buf, 'k', sizeof(buf));
    req.cmd = MP_CMD_GET;
    ck_assert_int_eq(mp_proto_parse_keys(buf, MP_KEY_MAX, &req, &used), MP_PARSE_NEED_MORE);
    ck_assert_int_eq(mp_proto_parse_keys(buf, MP_KEY_MAX + 1, &req, &used), MP_PARSE_OK);
    ck_assert_uint_eq(req.nkeys, MP_KEY_MAX + 1);
    ck_assert_uint_eq(used, MP_KEY_MAX + 1);
}
END_TEST

START_TEST(test_http_request_line_closes_the_connection)
{
    ck_assert_int_eq(parse("GET / HTTP/1.1\r\n"), MP_PARSE_CLOSE);
    ck_assert_int_eq(parse("POST /x HTTP/1.0\r\n"), MP_PARSE_CLOSE);
    /* a known command wins over the HTTP check */
    assert_cmd("get / HTTP/1.1\r\n", MP_CMD_GET);
    assert_error("GET / HTTP\r\n", "ERROR");
}
END_TEST

START_TEST(test_next_key_skips_runs_of_spaces)
{
    const char *list = "  a   bc ", *pos = list, *end = list + strlen(list), *key;
    size_t nkey;
    ck_assert(mp_proto_next_key(&pos, end, &key, &nkey));
    ck_assert_uint_eq(nkey, 1);
    ck_assert_int_eq(key[0], 'a');
    ck_assert(mp_proto_next_key(&pos, end, &key, &nkey));
    ck_assert_uint_eq(nkey, 2);
    ck_assert_int_eq(memcmp(key, "bc", 2), 0);
    ck_assert(!mp_proto_next_key(&pos, end, &key, &nkey));
    ck_assert_ptr_eq(pos, end);
    ck_assert(!mp_proto_next_key(&pos, end, &key, &nkey));
}
END_TEST

/* ---- replies ---------------------------------------------------------------------------------- */

START_TEST(test_value_header_bytes)
{
    char out[MP_PROTO_VALUE_HDR_MAX];
    size_t n = mp_proto_value_header(out, "foo", 3, 5, 10, false, 0);
    ck_assert_uint_eq(n, strlen("VALUE foo 5 10\r\n"));
    ck_assert_int_eq(memcmp(out, "VALUE foo 5 10\r\n", n), 0);
    n = mp_proto_value_header(out, "k", 1, 0, 0, true, 42);
    ck_assert_int_eq(memcmp(out, "VALUE k 0 0 42\r\n", n), 0);
    ck_assert_uint_eq(n, 16);
}
END_TEST

START_TEST(test_value_header_of_the_largest_fields_fits_its_bound)
{
    char out[MP_PROTO_VALUE_HDR_MAX + 1];
    char key[MP_KEY_MAX];
    memset(key, 'k', sizeof(key));
    out[MP_PROTO_VALUE_HDR_MAX] = '#';
    size_t n = mp_proto_value_header(out, key, MP_KEY_MAX, UINT32_MAX, UINT32_MAX, true, UINT64_MAX);
    ck_assert_uint_eq(n, 6 + 250 + 1 + 10 + 1 + 10 + 1 + 20 + 2);
    ck_assert_uint_le(n, MP_PROTO_VALUE_HDR_MAX);
    ck_assert_int_eq(memcmp(out + 256, " 4294967295 4294967295 18446744073709551615\r\n", n - 256), 0);
    ck_assert_int_eq(out[MP_PROTO_VALUE_HDR_MAX], '#');
}
END_TEST

START_TEST(test_result_strings_are_memcacheds)
{
    ck_assert_str_eq(mp_proto_result_str(MP_OK), "OK");
    ck_assert_str_eq(mp_proto_result_str(MP_STORED), "STORED");
    ck_assert_str_eq(mp_proto_result_str(MP_NOT_STORED), "NOT_STORED");
    ck_assert_str_eq(mp_proto_result_str(MP_EXISTS), "EXISTS");
    ck_assert_str_eq(mp_proto_result_str(MP_NOT_FOUND), "NOT_FOUND");
    ck_assert_str_eq(mp_proto_result_str(MP_DELETED), "DELETED");
    ck_assert_str_eq(mp_proto_result_str(MP_TOUCHED), "TOUCHED");
    ck_assert_str_eq(mp_proto_result_str(MP_NOMEM), "SERVER_ERROR out of memory storing object");
    ck_assert_str_eq(mp_proto_result_str(MP_TOO_LARGE), "SERVER_ERROR object too large for cache");
    ck_assert_str_eq(mp_proto_result_str(MP_NON_NUMERIC),
                     "CLIENT_ERROR cannot increment or decrement non-numeric value");
    ck_assert_str_eq(mp_proto_result_str(MP_BAD_CHUNK), "CLIENT_ERROR bad data chunk");
}
END_TEST

START_TEST(test_base64_round_trip_and_padding)
{
    char enc[16];
    unsigned char dec[16];
    ck_assert_uint_eq(mp_proto_base64_encode((const unsigned char *)"foob", 4, enc), 8);
    ck_assert_int_eq(memcmp(enc, "Zm9vYg==", 8), 0);
    ck_assert_uint_eq(mp_proto_base64_decode("Zm9vYg==", 8, dec, sizeof(dec)), 4);
    ck_assert_int_eq(memcmp(dec, "foob", 4), 0);
    ck_assert_uint_eq(mp_proto_base64_decode("Zm9vYmFy", 8, dec, sizeof(dec)), 6);
    ck_assert_int_eq(memcmp(dec, "foobar", 6), 0);
    ck_assert_uint_eq(mp_proto_base64_decode("Zm9", 3, dec, sizeof(dec)), 0); /* not a multiple of 4 */
    ck_assert_uint_eq(mp_proto_base64_decode("Zm9vYmFy", 8, dec, 5), 0);      /* no room */
    ck_assert_uint_eq(mp_proto_base64_decode("", 0, dec, sizeof(dec)), 0);
}
END_TEST

START_TEST(test_refresh_certs_takes_any_tokens_and_a_last_noreply)
{
    assert_cmd("refresh_certs\r\n", MP_CMD_REFRESH_CERTS);
    ck_assert(!req.noreply);
    assert_cmd("refresh_certs now please noreply\r\n", MP_CMD_REFRESH_CERTS);
    ck_assert(req.noreply);
}
END_TEST

/* mp_proto_parse_auth on a whole buffer given as a string. */
static enum mp_parse_status parse_auth(const char *s)
{
    used = (size_t)-1;
    return mp_proto_parse_auth(s, strlen(s), &req, &used);
}

START_TEST(test_auth_line_is_a_set_with_a_length_in_its_fifth_token)
{
    ck_assert_int_eq(parse_auth("set auth 0 0 12\r\nalice secret\r\n"), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_SET);
    ck_assert_uint_eq(req.auth_vlen, 12);
    ck_assert_uint_eq(used, 17); /* the line only: the value is the caller's */
    /* key, flags and exptime are not looked at; more tokens, and a line end of "\n", are fine */
    ck_assert_int_eq(parse_auth("set x y z 5 noreply\n"), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_SET);
    ck_assert_uint_eq(req.auth_vlen, 5);
    ck_assert_int_eq(parse_auth("set x y z 4294967295\r\n"), MP_PARSE_OK);
    ck_assert_uint_eq(req.auth_vlen, UINT32_MAX);
    /* memcached's safe_strtoul keeps the low 32 bits */
    ck_assert_int_eq(parse_auth("set x y z 4294967296\r\n"), MP_PARSE_OK);
    ck_assert_int_eq(req.cmd, MP_CMD_SET);
    ck_assert_uint_eq(req.auth_vlen, 0);
}
END_TEST

START_TEST(test_any_other_line_is_unauthenticated)
{
    static const char *const lines[] = {
        "get foo\r\n",     "set a 0 0\r\n", "set a 0 0 x\r\n",   "set a 0 0 -1\r\n", "add a 0 0 5\r\n",
        "SET a 0 0 5\r\n", "\r\n",          "set a\0 0 0 5\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        size_t n = strlen(lines[i]) + (i == 7 ? strlen(lines[i] + strlen(lines[i]) + 1) + 1 : 0);
        used = 0;
        ck_assert_int_eq(mp_proto_parse_auth(lines[i], n, &req, &used), MP_PARSE_OK);
        ck_assert_msg(req.cmd == MP_CMD_ERROR, "line %zu: cmd %d", i, req.cmd);
        ck_assert_str_eq(req.error, "CLIENT_ERROR unauthenticated");
        ck_assert_uint_eq(used, n);
    }
}
END_TEST

START_TEST(test_auth_lines_need_two_bytes_and_a_newline_within_2048)
{
    ck_assert_int_eq(parse_auth("\n"), MP_PARSE_NEED_MORE);
    ck_assert_int_eq(parse_auth("set a 0 0 5"), MP_PARSE_NEED_MORE);
    static char junk[2100];
    memset(junk, 'x', sizeof(junk) - 1);
    junk[2048] = '\0';
    ck_assert_int_eq(parse_auth(junk), MP_PARSE_NEED_MORE);
    junk[2048] = 'x';
    ck_assert_int_eq(parse_auth(junk), MP_PARSE_CLOSE);
}
END_TEST

START_TEST(test_auth_token_is_the_first_two_tokens_of_the_value)
{
    const char *u, *p;
    size_t ul, pl;
    ck_assert(mp_proto_auth_token(LIT("alice secret"), &u, &ul, &p, &pl));
    ck_assert(ul == 5 && memcmp(u, "alice", 5) == 0 && pl == 6 && memcmp(p, "secret", 6) == 0);
    ck_assert(mp_proto_auth_token(LIT("  bob   hunter2 extra"), &u, &ul, &p, &pl));
    ck_assert(ul == 3 && memcmp(u, "bob", 3) == 0 && pl == 7 && memcmp(p, "hunter2", 7) == 0);
    ck_assert(!mp_proto_auth_token(LIT("alice"), &u, &ul, &p, &pl));
    ck_assert(!mp_proto_auth_token(LIT("alice\0secret"), &u, &ul, &p, &pl)); /* the value ends at a NUL */
    ck_assert(!mp_proto_auth_token(LIT(""), &u, &ul, &p, &pl));
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("commands");
    tcase_add_test(tc, test_each_command_accepts_exactly_its_token_counts);
    tcase_add_test(tc, test_more_than_24_tokens_is_an_error_for_fixed_commands);
    tcase_add_test(tc, test_get_keeps_every_key_past_the_token_limit);
    tcase_add_test(tc, test_set_fields_are_read);
    tcase_add_test(tc, test_cas_reads_its_unique);
    tcase_add_test(tc, test_noreply_is_the_last_token_only);
    tcase_add_test(tc, test_noreply_is_known_even_when_the_line_is_refused);
    tcase_add_test(tc, test_key_of_250_bytes_is_accepted_and_251_refused);
    tcase_add_test(tc, test_bad_numbers_give_memcacheds_exact_errors);
    tcase_add_test(tc, test_set_flags_wrap_to_32_bits_as_memcached_casts_them);
    tcase_add_test(tc, test_negative_length_is_a_bad_command_line);
    tcase_add_test(tc, test_gat_reads_exptime_then_keys);
    tcase_add_test(tc, test_delete_accepts_a_zero_hold_time_and_noreply);
    tcase_add_test(tc, test_delete_with_a_hold_time_answers_the_usage_error);
    tcase_add_test(tc, test_flush_all_forms);
    tcase_add_test(tc, test_verbosity_reads_its_level);
    tcase_add_test(tc, test_admin_commands_hand_out_their_arguments);
    tcase_add_test(tc, test_meta_l_flag_is_known);
    tcase_add_test(tc, test_stats_hands_out_its_arguments);
    tcase_add_test(tc, test_refresh_certs_takes_any_tokens_and_a_last_noreply);
    suite_add_tcase(s, tc);

    tc = tcase_create("authentication");
    tcase_add_test(tc, test_auth_line_is_a_set_with_a_length_in_its_fifth_token);
    tcase_add_test(tc, test_any_other_line_is_unauthenticated);
    tcase_add_test(tc, test_auth_lines_need_two_bytes_and_a_newline_within_2048);
    tcase_add_test(tc, test_auth_token_is_the_first_two_tokens_of_the_value);
    suite_add_tcase(s, tc);

    tc = tcase_create("framing");
    tcase_add_test(tc, test_line_may_end_in_lf_or_crlf);
    tcase_add_test(tc, test_empty_lines_are_errors);
    tcase_add_test(tc, test_consumed_stops_after_the_first_line);
    tcase_add_test(tc, test_nul_byte_cuts_the_line);
    tcase_add_test(tc, test_incomplete_line_needs_more);
    tcase_add_test(tc, test_long_line_without_newline_closes_unless_get);
    tcase_add_test(tc, test_long_get_line_is_handed_out_in_parts);
    tcase_add_test(tc, test_long_gets_line_keeps_its_command);
    tcase_add_test(tc, test_parse_keys_without_newline_stops_at_the_last_complete_key);
    tcase_add_test(tc, test_parse_keys_continuation_of_only_the_line_end_has_no_keys);
    tcase_add_test(tc, test_parse_keys_hands_out_a_key_too_long_to_be_valid);
    tcase_add_test(tc, test_http_request_line_closes_the_connection);
    tcase_add_test(tc, test_next_key_skips_runs_of_spaces);
    suite_add_tcase(s, tc);

    tc = tcase_create("replies");
    tcase_add_test(tc, test_value_header_bytes);
    tcase_add_test(tc, test_value_header_of_the_largest_fields_fits_its_bound);
    tcase_add_test(tc, test_result_strings_are_memcacheds);
    tcase_add_test(tc, test_base64_round_trip_and_padding);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(proto_suite());
}

/* Unit tests for bproto: the pure binary-protocol parser and the reply headers. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "magpie/bproto.h"

static struct mp_brequest req;
static size_t used;
static char buf[1024];
static size_t len;

/* A request into buf: header, extras, key, value; lengths as given when not negative. */
static void build(uint8_t magic, uint8_t op, const char *ext, int extlen, const char *key, int keylen,
                  const char *value, int vlen, long bodylen, uint64_t cas)
{
    size_t ne = extlen < 0 ? 0 : (size_t)extlen, nk = keylen < 0 ? 0 : (size_t)keylen;
    size_t nv = vlen < 0 ? 0 : (size_t)vlen;
    uint32_t body = bodylen < 0 ? (uint32_t)(ne + nk + nv) : (uint32_t)bodylen;
    memset(buf, 0, MP_BPROTO_HDR);
    buf[0] = (char)magic;
    buf[1] = (char)op;
    buf[2] = (char)(nk >> 8);
    buf[3] = (char)nk;
    buf[4] = (char)ne;
    mp_bproto_put32(buf + 8, body);
    memcpy(buf + 12, "\x01\x02\x03\x04", 4);
    mp_bproto_put64(buf + 16, cas);
    len = MP_BPROTO_HDR;
    memcpy(buf + len, ext, ne);
    len += ne;
    memcpy(buf + len, key, nk);
    len += nk;
    memcpy(buf + len, value, nv);
    len += nv;
}

#define REQ(op, ext, key, value)                                                                                       \
    build(0x80, op, ext, sizeof(ext) - 1, key, sizeof(key) - 1, value, sizeof(value) - 1, -1, 0)

static enum mp_parse_status parse(size_t n)
{
    used = (size_t)-1;
    return mp_bproto_parse(buf, n, &req, &used);
}

static void parse_ok(void)
{
    ck_assert_int_eq(parse(len), MP_PARSE_OK);
}

/* A request memcached refuses: the status, and whether it then closes. */
static void assert_refused(uint16_t status, bool close)
{
    parse_ok();
    ck_assert_uint_eq(req.error, status);
    ck_assert_int_eq(req.close, close);
}

START_TEST(test_get_request_fields)
{
    REQ(MP_BOP_GET, "", "key", "");
    parse_ok();
    ck_assert_uint_eq(used, 27);
    ck_assert_uint_eq(req.opcode, MP_BOP_GET);
    ck_assert_uint_eq(req.cmd, MP_BOP_GET);
    ck_assert(!req.quiet);
    ck_assert_uint_eq(req.nkey, 3);
    ck_assert_int_eq(memcmp(req.key, "key", 3), 0);
    ck_assert_int_eq(memcmp(&req.opaque, "\x01\x02\x03\x04", 4), 0); /* as sent */
    ck_assert_uint_eq(req.error, 0);
}
END_TEST

START_TEST(test_header_and_body_arriving_in_parts_need_more)
{
    REQ(MP_BOP_GET, "", "key", "");
    for (size_t n = 0; n < len; n++)
        ck_assert_msg(parse(n) == MP_PARSE_NEED_MORE, "%zu bytes", n);
    parse_ok();
}
END_TEST

START_TEST(test_a_first_byte_other_than_0x80_closes)
{
    REQ(MP_BOP_GET, "", "key", "");
    buf[0] = (char)0x81;
    ck_assert_int_eq(parse(len), MP_PARSE_CLOSE);
    buf[0] = 'g';
    ck_assert_int_eq(parse(len), MP_PARSE_CLOSE);
    ck_assert_int_eq(parse(23), MP_PARSE_NEED_MORE); /* the magic is read with the header */
}
END_TEST

START_TEST(test_quiet_opcodes_fold_into_loud_ones)
{
    static const uint8_t pairs[][2] = {
        {MP_BOP_GETQ, MP_BOP_GET},
        {MP_BOP_GETKQ, MP_BOP_GETK},
        {MP_BOP_SETQ, MP_BOP_SET},
        {MP_BOP_ADDQ, MP_BOP_ADD},
        {MP_BOP_REPLACEQ, MP_BOP_REPLACE},
        {MP_BOP_DELETEQ, MP_BOP_DELETE},
        {MP_BOP_INCREMENTQ, MP_BOP_INCREMENT},
        {MP_BOP_DECREMENTQ, MP_BOP_DECREMENT},
        {MP_BOP_QUITQ, MP_BOP_QUIT},
        {MP_BOP_FLUSHQ, MP_BOP_FLUSH},
        {MP_BOP_APPENDQ, MP_BOP_APPEND},
        {MP_BOP_PREPENDQ, MP_BOP_PREPEND},
        {MP_BOP_GATQ, MP_BOP_GAT},
        {MP_BOP_GATKQ, MP_BOP_GATK},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        build(0x80, pairs[i][0], "", 0, "", 0, "", 0, -1, 0);
        ck_assert_int_eq(parse(len), MP_PARSE_OK);
        ck_assert_uint_eq(req.cmd, pairs[i][1]);
        ck_assert_uint_eq(req.opcode, pairs[i][0]);
        ck_assert(req.quiet);
    }
}
END_TEST

START_TEST(test_set_extras_and_value_length)
{
    build(0x80, MP_BOP_SETQ, "\xde\xad\xbe\xef\x00\x00\x01\x00", 8, "k", 1, "value", 5, -1, 0x0102030405060708ull);
    parse_ok();
    ck_assert_uint_eq(used, 24 + 8 + 1); /* the value is the caller's to read */
    ck_assert_uint_eq(req.flags, 0xdeadbeef);
    ck_assert_uint_eq(req.exptime, 256);
    ck_assert_uint_eq(req.vlen, 5);
    ck_assert_uint_eq(req.cas, 0x0102030405060708ull);
    ck_assert(req.quiet);
}
END_TEST

START_TEST(test_incr_extras)
{
    build(0x80, MP_BOP_INCREMENT,
          "\x00\x00\x00\x00\x00\x00\x00\x05"
          "\xff\xff\xff\xff\xff\xff\xff\xfe"
          "\xff\xff\xff\xff",
          20, "n", 1, "", 0, -1, 0);
    parse_ok();
    ck_assert_uint_eq(req.delta, 5);
    ck_assert_uint_eq(req.initial, UINT64_MAX - 1);
    ck_assert_uint_eq(req.exptime, UINT32_MAX);
}
END_TEST

START_TEST(test_flush_with_and_without_a_delay)
{
    REQ(MP_BOP_FLUSH, "", "", "");
    parse_ok();
    ck_assert_uint_eq(req.exptime, 0);
    REQ(MP_BOP_FLUSH, "\x00\x00\x00\x0a", "", "");
    parse_ok();
    ck_assert_uint_eq(req.exptime, 10);
    ck_assert_uint_eq(req.error, 0);
}
END_TEST

START_TEST(test_touch_and_append_lengths)
{
    REQ(MP_BOP_GATK, "\x00\x00\x00\x07", "k", "");
    parse_ok();
    ck_assert_uint_eq(req.exptime, 7);
    REQ(MP_BOP_APPEND, "", "k", "tail");
    parse_ok();
    ck_assert_uint_eq(req.vlen, 4);
    ck_assert_uint_eq(used, 25);
}
END_TEST

/* Each opcode's length rules, as memcached's dispatch_bin_command checks them: a request that
 * breaks them is "Invalid arguments" and the connection closes. */
START_TEST(test_wrong_lengths_are_invalid_and_close)
{
    REQ(MP_BOP_SET, "", "k", "v"); /* no extras */
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_SET, "\0\0\0\0\0\0\0\0", "", "v"); /* no key */
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_GET, "\0\0\0\0", "k", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_GET, "", "", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_GET, "", "k", "v");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_DELETE, "", "k", "v");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_INCREMENT, "\0\0\0\0\0\0\0\0", "k", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_VERSION, "", "k", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_NOOP, "", "", "x");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_QUIT, "\0", "", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_FLUSH, "\0\0", "", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_FLUSH, "\0\0\0\0", "", "x");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_TOUCH, "", "k", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_APPEND, "\0", "k", "v");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_STAT, "\0\0\0\0", "", "");
    assert_refused(MP_BST_EINVAL, true);
}
END_TEST

START_TEST(test_stat_takes_any_key_and_leaves_the_body)
{
    REQ(MP_BOP_STAT, "", "", "");
    parse_ok();
    ck_assert_uint_eq(req.error, 0);
    REQ(MP_BOP_STAT, "", "items", "extra");
    parse_ok();
    ck_assert_uint_eq(req.error, 0);
    ck_assert_uint_eq(used, 29); /* memcached reads the body past the key as the next request */
}
END_TEST

START_TEST(test_key_longer_than_the_body_is_unknown_and_closes_at_the_header)
{
    build(0x80, MP_BOP_GET, "", 0, "key", 3, "", 0, 2, 0);
    ck_assert_int_eq(parse(MP_BPROTO_HDR), MP_PARSE_OK);
    ck_assert_uint_eq(req.error, MP_BST_UNKNOWN_COMMAND);
    ck_assert(req.close);
    ck_assert_uint_eq(used, MP_BPROTO_HDR);
    build(0x80, MP_BOP_SET, "\0\0\0\0\0\0\0\0", 8, "k", 1, "", 0, 8, 0); /* extras and key past the body */
    assert_refused(MP_BST_UNKNOWN_COMMAND, true);
}
END_TEST

START_TEST(test_key_of_251_bytes_is_invalid_and_250_is_not)
{
    char key[251];
    memset(key, 'k', sizeof(key));
    build(0x80, MP_BOP_GET, "", 0, key, 251, "", 0, -1, 0);
    ck_assert_int_eq(parse(MP_BPROTO_HDR), MP_PARSE_OK); /* decided from the header */
    ck_assert_uint_eq(req.error, MP_BST_EINVAL);
    ck_assert(req.close);
    build(0x80, MP_BOP_GET, "", 0, key, 250, "", 0, -1, 0);
    parse_ok();
    ck_assert_uint_eq(req.error, 0);
    ck_assert_uint_eq(req.nkey, 250);
}
END_TEST

START_TEST(test_unknown_opcodes_swallow_the_body)
{
    build(0x80, 0x1b, "\0\0\0\1", 4, "", 0, "", 0, -1, 0); /* verbosity: not in 1.6.18's binary protocol */
    assert_refused(MP_BST_UNKNOWN_COMMAND, false);
    ck_assert_uint_eq(req.swallow, 4);
    ck_assert_uint_eq(used, 28);
    build(0x80, 0x31, "", 0, "key", 3, "value", 5, -1, 0);
    assert_refused(MP_BST_UNKNOWN_COMMAND, false);
    ck_assert_uint_eq(req.swallow, 8);
    ck_assert_uint_eq(used, 27);
}
END_TEST

START_TEST(test_sasl_is_unknown_without_sasl)
{
    REQ(MP_BOP_SASL_LIST_MECHS, "", "", "");
    assert_refused(MP_BST_UNKNOWN_COMMAND, false);
    ck_assert_uint_eq(req.swallow, 0);
    REQ(MP_BOP_SASL_AUTH, "", "PLAIN", "\0u\0p");
    assert_refused(MP_BST_UNKNOWN_COMMAND, false);
    ck_assert_uint_eq(req.swallow, 4);
    REQ(MP_BOP_SASL_STEP, "", "", "");
    assert_refused(MP_BST_EINVAL, true);
    REQ(MP_BOP_SASL_LIST_MECHS, "", "x", "");
    assert_refused(MP_BST_EINVAL, true);
}
END_TEST

START_TEST(test_response_header_bytes)
{
    char h[MP_BPROTO_HDR];
    uint32_t opaque;
    memcpy(&opaque, "\xaa\xbb\xcc\xdd", 4);
    mp_bproto_header(h, MP_BOP_GETK, MP_BST_KEY_ENOENT, 4, 0x0102, 0x01020304, opaque, 0x1122334455667788ull);
    ck_assert_int_eq(memcmp(h,
                            "\x81\x0c\x01\x02\x04\x00\x00\x01"
                            "\x01\x02\x03\x04\xaa\xbb\xcc\xdd"
                            "\x11\x22\x33\x44\x55\x66\x77\x88",
                            MP_BPROTO_HDR),
                     0);
}
END_TEST

START_TEST(test_error_texts_are_memcacheds)
{
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_KEY_ENOENT), "Not found");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_KEY_EEXISTS), "Data exists for key.");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_E2BIG), "Too large.");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_EINVAL), "Invalid arguments");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_NOT_STORED), "Not stored.");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_DELTA_BADVAL), "Non-numeric server-side value for incr or decr");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_UNKNOWN_COMMAND), "Unknown command");
    ck_assert_str_eq(mp_bproto_status_str(MP_BST_ENOMEM), "Out of memory");
}
END_TEST

static Suite *bproto_suite(void)
{
    Suite *s = suite_create("bproto");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_get_request_fields);
    tcase_add_test(tc, test_header_and_body_arriving_in_parts_need_more);
    tcase_add_test(tc, test_a_first_byte_other_than_0x80_closes);
    tcase_add_test(tc, test_quiet_opcodes_fold_into_loud_ones);
    tcase_add_test(tc, test_set_extras_and_value_length);
    tcase_add_test(tc, test_incr_extras);
    tcase_add_test(tc, test_flush_with_and_without_a_delay);
    tcase_add_test(tc, test_touch_and_append_lengths);
    tcase_add_test(tc, test_wrong_lengths_are_invalid_and_close);
    tcase_add_test(tc, test_stat_takes_any_key_and_leaves_the_body);
    tcase_add_test(tc, test_key_longer_than_the_body_is_unknown_and_closes_at_the_header);
    tcase_add_test(tc, test_key_of_251_bytes_is_invalid_and_250_is_not);
    tcase_add_test(tc, test_unknown_opcodes_swallow_the_body);
    tcase_add_test(tc, test_sasl_is_unknown_without_sasl);
    suite_add_tcase(s, tc);
    tc = tcase_create("reply");
    tcase_add_test(tc, test_response_header_bytes);
    tcase_add_test(tc, test_error_texts_are_memcacheds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(bproto_suite());
}

/*
 * bproto: the memcached binary protocol, bytes in and requests out, and the reply headers.
 *
 * The parser is pure, as proto.h's: no sockets, no locks, no allocation and no writes to its
 * input. It reads one request (a 24-byte header, then extras and key) from a buffer and describes
 * it in a caller-owned struct mp_brequest whose key points into that buffer. A storage request's
 * value follows it (vlen bytes); reading it is the caller's.
 *
 * It decides what memcached 1.6.18 decides before it runs a request (proto_bin.c's
 * try_read_command_binary and dispatch_bin_command): a first byte other than 0x80 closes the
 * connection without a reply; a key longer than the body, or than 250 bytes, and extras or
 * lengths an opcode does not take, are answered with an error and the connection closed; an
 * opcode memcached does not know (and SASL's, without -S) is answered "Unknown command" and the
 * number of bytes memcached then discards is given in `swallow`. Those decided from the header
 * alone are decided as soon as the header is in. The quiet opcodes (GETQ, SETQ, ...) are folded
 * into their loud form in `cmd`, with `quiet` set; the reply carries the opcode as sent.
 *
 * Multi-byte fields are big-endian on the wire; the struct holds them in host order, but for
 * `opaque`, which is echoed unchanged.
 */
#ifndef MAGPIE_BPROTO_H
#define MAGPIE_BPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/proto.h"

#define MP_BPROTO_HDR 24
#define MP_BPROTO_REQ 0x80 /* a request's magic byte */
#define MP_BPROTO_RES 0x81 /* a response's */

enum mp_bop {
    MP_BOP_GET = 0x00,
    MP_BOP_SET = 0x01,
    MP_BOP_ADD = 0x02,
    MP_BOP_REPLACE = 0x03,
    MP_BOP_DELETE = 0x04,
    MP_BOP_INCREMENT = 0x05,
    MP_BOP_DECREMENT = 0x06,
    MP_BOP_QUIT = 0x07,
    MP_BOP_FLUSH = 0x08,
    MP_BOP_GETQ = 0x09,
    MP_BOP_NOOP = 0x0a,
    MP_BOP_VERSION = 0x0b,
    MP_BOP_GETK = 0x0c,
    MP_BOP_GETKQ = 0x0d,
    MP_BOP_APPEND = 0x0e,
    MP_BOP_PREPEND = 0x0f,
    MP_BOP_STAT = 0x10,
    MP_BOP_SETQ = 0x11,
    MP_BOP_ADDQ = 0x12,
    MP_BOP_REPLACEQ = 0x13,
    MP_BOP_DELETEQ = 0x14,
    MP_BOP_INCREMENTQ = 0x15,
    MP_BOP_DECREMENTQ = 0x16,
    MP_BOP_QUITQ = 0x17,
    MP_BOP_FLUSHQ = 0x18,
    MP_BOP_APPENDQ = 0x19,
    MP_BOP_PREPENDQ = 0x1a,
    MP_BOP_TOUCH = 0x1c,
    MP_BOP_GAT = 0x1d,
    MP_BOP_GATQ = 0x1e,
    MP_BOP_SASL_LIST_MECHS = 0x20,
    MP_BOP_SASL_AUTH = 0x21,
    MP_BOP_SASL_STEP = 0x22,
    MP_BOP_GATK = 0x23,
    MP_BOP_GATKQ = 0x24,
};

/* Response status codes. */
enum mp_bstatus {
    MP_BST_SUCCESS = 0x00,
    MP_BST_KEY_ENOENT = 0x01,
    MP_BST_KEY_EEXISTS = 0x02,
    MP_BST_E2BIG = 0x03,
    MP_BST_EINVAL = 0x04,
    MP_BST_NOT_STORED = 0x05,
    MP_BST_DELTA_BADVAL = 0x06,
    MP_BST_AUTH_ERROR = 0x20,
    MP_BST_UNKNOWN_COMMAND = 0x81,
    MP_BST_ENOMEM = 0x82,
};

struct mp_brequest {
    uint8_t opcode; /* as sent: the reply carries it */
    uint8_t cmd;    /* the opcode with a quiet form folded into the loud one (GETQ -> GET) */
    bool quiet;
    uint8_t extlen;
    uint16_t nkey;
    uint32_t bodylen;
    uint32_t opaque; /* as sent, in network order */
    uint64_t cas;
    const char *key;
    uint32_t flags;   /* set/add/replace */
    uint32_t exptime; /* set/add/replace, incr/decr, touch/gat, flush (0 without extras) */
    uint64_t delta, initial;
    uint32_t vlen; /* set/add/replace/append/prepend: value bytes that follow */
    /* A refused request: answer with this status (not MP_BST_SUCCESS), then discard `swallow`
     * bytes, or close once the reply is written. */
    uint16_t error;
    bool close;
    uint32_t swallow;
};

/* The text command a (folded) opcode does the work of, so both protocols are counted by command
 * alike (latency.h); MP_CMD_ERROR for opcodes without one (SASL, unknown). */
enum mp_cmd mp_bproto_text_cmd(uint8_t cmd);

/* Parse one request from buf[0, len): NEED_MORE, OK (*req, *consumed bytes of header, extras and
 * key), or CLOSE (not a request: close without a reply). */
enum mp_parse_status mp_bproto_parse(const char *buf, size_t len, struct mp_brequest *req, size_t *consumed);

/* A response header into out[0, MP_BPROTO_HDR). */
void mp_bproto_header(char *out, uint8_t opcode, uint16_t status, uint8_t extlen, uint16_t nkey, uint32_t bodylen,
                      uint32_t opaque, uint64_t cas);

/* memcached's text for an error status ("Not found", ...), the body of an error reply. */
const char *mp_bproto_status_str(uint16_t status);

/* Big-endian stores, for extras and bodies. */
void mp_bproto_put32(char *out, uint32_t v);
void mp_bproto_put64(char *out, uint64_t v);

#endif

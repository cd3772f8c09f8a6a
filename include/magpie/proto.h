/*
 * proto: the memcached text protocol, bytes in and commands out, and the reply strings.
 *
 * The parser is pure: no sockets, no locks, no allocation and no writes to its input. It reads
 * one command line at a time from a buffer and describes it in a caller-owned struct mp_request
 * whose pointers point into that buffer. It reproduces memcached 1.6's rules exactly: tokens are
 * split on spaces, at most 24 of them; a line ends at "\n" with an optional "\r" before it and is
 * cut at a NUL byte; numbers are read as memcached's safe_strto* read them (see proto.c); the
 * token counts each command accepts; "noreply" as the last token.
 *
 * A line without "\n" in its first 2048 bytes is garbage and the connection is closed, unless it
 * is a get or gets, whose key lists are unbounded: those are handed out in parts (req.partial), the
 * keys seen so far, and the rest of the line is read with mp_proto_parse_keys(). So a get of any
 * number of keys needs no more than a fixed read buffer.
 *
 * Storage commands describe their value (vlen); reading vlen + 2 bytes of data is the caller's.
 */
#ifndef MAGPIE_PROTO_H
#define MAGPIE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/cache.h"

#define MP_PROTO_LINE_MAX 2048
#define MP_PROTO_MAX_TOKENS 24

enum mp_cmd {
    MP_CMD_GET,
    MP_CMD_GETS,
    MP_CMD_GAT,
    MP_CMD_GATS,
    MP_CMD_SET,
    MP_CMD_ADD,
    MP_CMD_REPLACE,
    MP_CMD_APPEND,
    MP_CMD_PREPEND,
    MP_CMD_CAS,
    MP_CMD_DELETE,
    MP_CMD_INCR,
    MP_CMD_DECR,
    MP_CMD_TOUCH,
    MP_CMD_FLUSH_ALL,
    MP_CMD_VERSION,
    MP_CMD_VERBOSITY,
    MP_CMD_QUIT,
    MP_CMD_STATS,
    MP_CMD_LRU_CRAWLER, /* admin commands: req.keys holds the arguments after the command */
    MP_CMD_SLABS,
    MP_CMD_MEMLIMIT, /* cache_memlimit */
    MP_CMD_WATCH,
    MP_CMD_SHUTDOWN,
    MP_CMD_MN,            /* meta no-op: "MN" */
    MP_CMD_MG,            /* meta get */
    MP_CMD_MS,            /* meta set */
    MP_CMD_MD,            /* meta delete */
    MP_CMD_MA,            /* meta arithmetic */
    MP_CMD_ME,            /* meta debug */
    MP_CMD_REFRESH_CERTS, /* reload the TLS certificates */
    MP_CMD_ERROR,         /* answer req.error (unless noreply) and go on; the last */
};

enum mp_parse_status {
    MP_PARSE_NEED_MORE, /* no complete line yet */
    MP_PARSE_OK,        /* *req describes a command; *consumed bytes of line were used */
    MP_PARSE_CLOSE,     /* garbage: close the connection without a reply, as memcached does */
};

#define MP_META_MAX_TOKENS 20 /* memcached's MFLAG_MAX_OPT_LENGTH: tokens in a meta command */
#define MP_META_OPAQUE_MAX 32

/* A meta command's flags (memcached's _meta_flag_preparse). Times are the client's values,
 * turned into item times by the caller (clock.h). The flag tokens themselves are kept, in order,
 * for the reply, whose flags follow the request's order. */
struct mp_meta {
    bool no_update;  /* u */
    bool vivify;     /* N */
    bool value;      /* v */
    bool set_stale;  /* I */
    bool no_reply;   /* q */
    bool has_cas;    /* C */
    bool new_ttl;    /* T */
    bool recache;    /* R */
    bool key_binary; /* b: the key was base64 and req.key is decoded into keybuf */
    char mode;       /* M */
    int32_t exptime, vivify_exptime, recache_time;
    uint32_t client_flags;
    uint64_t cas, delta, initial;
    const char *toks[MP_META_MAX_TOKENS]; /* flag tokens */
    uint8_t ntoklen[MP_META_MAX_TOKENS];
    size_t ntoks;
    char keybuf[MP_KEY_MAX];
};

struct mp_request {
    enum mp_cmd cmd;
    bool noreply;
    bool partial;    /* get/gets: more keys follow in the next parts of the line */
    const char *key; /* single-key commands */
    size_t nkey;
    const char *keys; /* get family: the space-separated keys; stats: its arguments */
    size_t nkeys;
    uint32_t flags;
    int32_t exptime;
    int32_t vlen;
    uint64_t cas;
    uint64_t delta;
    uint32_t level;     /* verbosity */
    const char *error;  /* MP_CMD_ERROR: the reply, without "\r\n" */
    size_t swallow;     /* MP_CMD_ERROR: bytes of value data to discard after it (ms) */
    uint32_t auth_vlen; /* mp_proto_parse_auth: the length of the "user password" value */
    struct mp_meta meta;
};

/* A token of a command line. */
struct mp_token {
    const char *p;
    size_t n;
};

/* Split an admin command's arguments (req.keys) on spaces as the parser splits a line: at most
 * `max` tokens; returns their count. */
size_t mp_proto_split(const char *s, size_t n, struct mp_token *t, size_t max);

/* Parse one command from buf[0, len). */
enum mp_parse_status mp_proto_parse(const char *buf, size_t len, struct mp_request *req, size_t *consumed);

/* Continue a partial get line: the next keys, up to the end of the line (req->partial false) or to
 * the last complete key in the buffer (true). NEED_MORE when no complete key is there yet. */
enum mp_parse_status mp_proto_parse_keys(const char *buf, size_t len, struct mp_request *req, size_t *consumed);

/* -Y, a connection not yet authenticated: one line as memcached's try_read_command_asciiauth
 * reads it. "set" and at least four more tokens, the fourth after it a length, open an
 * authentication: MP_CMD_SET, its value's length in auth_vlen (the value and "\r\n" follow). Any
 * other line is MP_CMD_ERROR "CLIENT_ERROR unauthenticated". NEED_MORE before two bytes and a
 * "\n"; CLOSE past MP_PROTO_LINE_MAX bytes without one. */
enum mp_parse_status mp_proto_parse_auth(const char *buf, size_t len, struct mp_request *req, size_t *consumed);

/* The "user password" of an authentication's value (without its "\r\n"), as memcached splits it:
 * the value ends at a NUL byte, tokens are split on spaces, the first two are taken. False when
 * there are fewer than two. */
bool mp_proto_auth_token(const char *value, size_t n, const char **user, size_t *ulen, const char **pass, size_t *plen);

/* Iterate over a key list: the next key, or false at its end. */
bool mp_proto_next_key(const char **pos, const char *end, const char **key, size_t *nkey);

/* The command's name as a client spells it ("get", "flush_all", "mg"); "error" for MP_CMD_ERROR. */
const char *mp_proto_cmd_name(enum mp_cmd cmd);

/* memcached's reply for an engine result, without "\r\n". */
const char *mp_proto_result_str(enum mp_result res);

/* "VALUE <key> <flags> <bytes>[ <cas>]\r\n" into out (room for MP_PROTO_VALUE_HDR_MAX bytes);
 * returns its length. */
#define MP_PROTO_VALUE_HDR_MAX (6 + MP_KEY_MAX + 1 + 10 + 1 + 10 + 1 + 20 + 2)
size_t mp_proto_value_header(char *out, const char *key, size_t nkey, uint32_t flags, uint32_t nbytes, bool with_cas,
                             uint64_t cas);

/* Base64 (RFC 4648, with padding) for meta's b flag. Encode returns the length written (out needs
 * 4 * ceil(n / 3) bytes); decode returns the decoded length, or 0 for invalid input or no room. */
size_t mp_proto_base64_encode(const unsigned char *in, size_t n, char *out);
size_t mp_proto_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#endif

/*
 * libFuzzer target: the pure parser. Bytes are parsed command after command, as a connection
 * would (long get lines continued with mp_proto_parse_keys, key lists walked with
 * mp_proto_next_key), and every pointer the parser hands out must lie inside the input. The same
 * bytes go through the -Y parser too (mp_proto_parse_auth, mp_proto_auth_token).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/proto.h"

static void inside(const char *p, size_t n, const uint8_t *buf, size_t len)
{
    if (n && (p < (const char *)buf || p + n > (const char *)buf + len))
        abort();
}

static void walk_keys(const struct mp_request *req, const uint8_t *buf, size_t len)
{
    inside(req->keys, req->nkeys, buf, len);
    const char *pos = req->keys, *end = req->keys + req->nkeys, *key;
    size_t nkey;
    while (mp_proto_next_key(&pos, end, &key, &nkey))
        if (nkey == 0 || key < req->keys || key + nkey > end)
            abort();
}

/* A connection that has not authenticated: auth lines and their values. */
static void auth_stream(const uint8_t *data, size_t size)
{
    size_t off = 0;
    struct mp_request req;
    while (off < size) {
        size_t used = 0;
        if (mp_proto_parse_auth((const char *)data + off, size - off, &req, &used) != MP_PARSE_OK)
            break;
        if (used == 0 || used > size - off || (req.cmd != MP_CMD_SET && (req.cmd != MP_CMD_ERROR || !req.error)))
            abort();
        off += used;
        if (req.cmd != MP_CMD_SET)
            continue;
        size_t n = (size_t)req.auth_vlen < size - off ? (size_t)req.auth_vlen : size - off;
        const char *user, *pass;
        size_t ulen, plen;
        if (mp_proto_auth_token((const char *)data + off, n, &user, &ulen, &pass, &plen)) {
            inside(user, ulen, data, size);
            inside(pass, plen, data, size);
            if (ulen == 0 || plen == 0)
                abort();
        }
        off += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auth_stream(data, size);
    size_t off = 0;
    bool in_keys = false;
    struct mp_request req;
    while (off < size) {
        size_t used = 0;
        enum mp_parse_status st = in_keys ? mp_proto_parse_keys((const char *)data + off, size - off, &req, &used)
                                          : mp_proto_parse((const char *)data + off, size - off, &req, &used);
        if (st != MP_PARSE_OK)
            break;
        if (used == 0 || used > size - off)
            abort();
        if (req.key != req.meta.keybuf)
            inside(req.key, req.nkey, data, size);
        if (req.nkey > MP_KEY_MAX && req.cmd != MP_CMD_ERROR)
            abort();
        if (req.cmd <= MP_CMD_GATS || in_keys)
            walk_keys(&req, data, size);
        if (req.cmd == MP_CMD_ERROR && !req.error)
            abort();
        in_keys = (req.cmd == MP_CMD_GET || req.cmd == MP_CMD_GETS) && req.partial;
        off += used;
        /* a storage command's value follows: skip it as a connection would */
        if (req.cmd >= MP_CMD_SET && req.cmd <= MP_CMD_CAS)
            off += (size_t)req.vlen + 2 < size - off ? (size_t)req.vlen + 2 : size - off;
    }
    return 0;
}

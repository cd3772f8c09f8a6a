/*
 * libFuzzer target: the pure binary-protocol parser. Bytes are parsed request after request, as a
 * connection would (a storage request's value and what a refused request swallows are skipped),
 * and what the parser hands out must agree with the bytes: the key inside the input and within
 * 250 bytes, the lengths adding up, a request either run or refused with a known status.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "magpie/bproto.h"
#include "magpie/item.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct mp_brequest req;
        size_t used = 0;
        enum mp_parse_status st = mp_bproto_parse((const char *)data + off, size - off, &req, &used);
        if (st != MP_PARSE_OK)
            break;
        if (used < MP_BPROTO_HDR || used > size - off)
            abort();
        if (req.error == 0) {
            if (used != MP_BPROTO_HDR + req.extlen + req.nkey || req.nkey > MP_KEY_MAX)
                abort();
            if (req.nkey &&
                (req.key < (const char *)data + off || req.key + req.nkey > (const char *)data + off + used))
                abort();
            if ((uint64_t)req.extlen + req.nkey + req.vlen > req.bodylen)
                abort();
        } else if (*mp_bproto_status_str(req.error) == '\0') {
            abort();
        }
        if (req.error && req.close)
            break; /* the connection would close here */
        off += used;
        size_t skip = req.error ? req.swallow : req.vlen;
        off += skip < size - off ? skip : size - off;
    }
    return 0;
}

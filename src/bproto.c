/* bproto: see include/magpie/bproto.h */
#include "magpie/bproto.h"

#include <string.h>

#include "magpie/item.h"

static uint16_t get16(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint16_t)(u[0] << 8 | u[1]);
}

static uint32_t get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t get64(const char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

void mp_bproto_put32(char *out, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        out[i] = (char)(v & 0xff);
}

void mp_bproto_put64(char *out, uint64_t v)
{
    mp_bproto_put32(out, (uint32_t)(v >> 32));
    mp_bproto_put32(out + 4, (uint32_t)v);
}

/* The quiet opcodes and the loud ones they fold into (memcached's dispatch_bin_command). */
static int loud_of(uint8_t op)
{
    switch (op) {
    case MP_BOP_SETQ: return MP_BOP_SET;
    case MP_BOP_ADDQ: return MP_BOP_ADD;
    case MP_BOP_REPLACEQ: return MP_BOP_REPLACE;
    case MP_BOP_DELETEQ: return MP_BOP_DELETE;
    case MP_BOP_INCREMENTQ: return MP_BOP_INCREMENT;
    case MP_BOP_DECREMENTQ: return MP_BOP_DECREMENT;
    case MP_BOP_QUITQ: return MP_BOP_QUIT;
    case MP_BOP_FLUSHQ: return MP_BOP_FLUSH;
    case MP_BOP_APPENDQ: return MP_BOP_APPEND;
    case MP_BOP_PREPENDQ: return MP_BOP_PREPEND;
    case MP_BOP_GETQ: return MP_BOP_GET;
    case MP_BOP_GETKQ: return MP_BOP_GETK;
    case MP_BOP_GATQ: return MP_BOP_GAT;
    case MP_BOP_GATKQ: return MP_BOP_GATK;
    default: return -1;
    }
}

static void refuse(struct mp_brequest *req, uint16_t status, bool close, uint32_t swallow)
{
    req->error = status;
    req->close = close;
    req->swallow = swallow;
}

/* Whether the lengths fit the command (memcached's checks, opcode by opcode), decoding the
 * extras of those that take them; false is a protocol error. Unknown opcodes are refused here. */
static bool check(struct mp_brequest *r, const char *ext)
{
    uint32_t ext8 = r->extlen, key = r->nkey, body = r->bodylen;
    bool bare = ext8 == 0 && key == 0 && body == 0;
    switch (r->cmd) {
    case MP_BOP_VERSION:
    case MP_BOP_NOOP:
    case MP_BOP_QUIT: return bare;
    case MP_BOP_FLUSH:
        if (key != 0 || body != ext8 || (ext8 != 0 && ext8 != 4))
            return false;
        r->exptime = ext8 == 4 ? get32(ext) : 0;
        return true;
    case MP_BOP_SET:
    case MP_BOP_ADD:
    case MP_BOP_REPLACE:
        if (ext8 != 8 || key == 0 || body < key + 8)
            return false;
        r->flags = get32(ext);
        r->exptime = get32(ext + 4);
        r->vlen = body - key - ext8;
        return true;
    case MP_BOP_GET:
    case MP_BOP_GETK: return ext8 == 0 && body == key && key > 0;
    case MP_BOP_DELETE: return key > 0 && ext8 == 0 && body == key;
    case MP_BOP_INCREMENT:
    case MP_BOP_DECREMENT:
        if (key == 0 || ext8 != 20 || body != key + ext8)
            return false;
        r->delta = get64(ext);
        r->initial = get64(ext + 8);
        r->exptime = get32(ext + 16);
        return true;
    case MP_BOP_APPEND:
    case MP_BOP_PREPEND:
        if (key == 0 || ext8 != 0)
            return false;
        r->vlen = body - key;
        return true;
    case MP_BOP_STAT: return ext8 == 0;
    case MP_BOP_TOUCH:
    case MP_BOP_GAT:
    case MP_BOP_GATK:
        if (ext8 != 4 || key == 0)
            return false;
        r->exptime = get32(ext);
        return true;
    /* SASL is answered only with -S, which Magpie does not have: these are unknown commands,
     * swallowing what memcached swallows, once their lengths pass its checks. */
    case MP_BOP_SASL_LIST_MECHS:
        if (!bare)
            return false;
        refuse(r, MP_BST_UNKNOWN_COMMAND, false, 0);
        return true;
    case MP_BOP_SASL_AUTH:
    case MP_BOP_SASL_STEP:
        if (ext8 != 0 || key == 0)
            return false;
        refuse(r, MP_BST_UNKNOWN_COMMAND, false, body - key);
        return true;
    default:
        /* memcached swallows the whole body, though the extras and key are already read: it
         * eats as many bytes again of what follows. */
        refuse(r, MP_BST_UNKNOWN_COMMAND, false, body);
        return true;
    }
}

enum mp_parse_status mp_bproto_parse(const char *buf, size_t len, struct mp_brequest *req, size_t *consumed)
{
    if (len < MP_BPROTO_HDR)
        return MP_PARSE_NEED_MORE;
    if ((unsigned char)buf[0] != MP_BPROTO_REQ)
        return MP_PARSE_CLOSE;
    memset(req, 0, sizeof(*req));
    req->opcode = (uint8_t)buf[1];
    req->nkey = get16(buf + 2);
    req->extlen = (uint8_t)buf[4];
    req->bodylen = get32(buf + 8);
    memcpy(&req->opaque, buf + 12, 4);
    req->cas = get64(buf + 16);
    int loud = loud_of(req->opcode);
    req->quiet = loud >= 0;
    req->cmd = loud >= 0 ? (uint8_t)loud : req->opcode;
    /* Errors the header alone decides, answered before the rest arrives. */
    if ((uint32_t)req->nkey + req->extlen > req->bodylen) {
        refuse(req, MP_BST_UNKNOWN_COMMAND, true, 0);
        *consumed = MP_BPROTO_HDR;
        return MP_PARSE_OK;
    }
    if (req->nkey > MP_KEY_MAX) {
        refuse(req, MP_BST_EINVAL, true, 0);
        *consumed = MP_BPROTO_HDR;
        return MP_PARSE_OK;
    }
    size_t need = MP_BPROTO_HDR + req->extlen + req->nkey;
    if (len < need)
        return MP_PARSE_NEED_MORE;
    req->key = buf + MP_BPROTO_HDR + req->extlen;
    *consumed = need;
    if (!check(req, buf + MP_BPROTO_HDR))
        refuse(req, MP_BST_EINVAL, true, 0);
    return MP_PARSE_OK;
}

void mp_bproto_header(char *out, uint8_t opcode, uint16_t status, uint8_t extlen, uint16_t nkey, uint32_t bodylen,
                      uint32_t opaque, uint64_t cas)
{
    out[0] = (char)MP_BPROTO_RES;
    out[1] = (char)opcode;
    out[2] = (char)(nkey >> 8);
    out[3] = (char)nkey;
    out[4] = (char)extlen;
    out[5] = 0; /* data type: raw bytes */
    out[6] = (char)(status >> 8);
    out[7] = (char)status;
    mp_bproto_put32(out + 8, bodylen);
    memcpy(out + 12, &opaque, 4);
    mp_bproto_put64(out + 16, cas);
}

const char *mp_bproto_status_str(uint16_t status)
{
    switch (status) {
    case MP_BST_ENOMEM: return "Out of memory";
    case MP_BST_UNKNOWN_COMMAND: return "Unknown command";
    case MP_BST_KEY_ENOENT: return "Not found";
    case MP_BST_EINVAL: return "Invalid arguments";
    case MP_BST_KEY_EEXISTS: return "Data exists for key.";
    case MP_BST_E2BIG: return "Too large.";
    case MP_BST_DELTA_BADVAL: return "Non-numeric server-side value for incr or decr";
    case MP_BST_NOT_STORED: return "Not stored.";
    case MP_BST_AUTH_ERROR: return "Auth failure.";
    default: return "";
    }
}

enum mp_cmd mp_bproto_text_cmd(uint8_t cmd)
{
    switch (cmd) {
    case MP_BOP_GET:
    case MP_BOP_GETK: return MP_CMD_GET;
    case MP_BOP_SET: return MP_CMD_SET;
    case MP_BOP_ADD: return MP_CMD_ADD;
    case MP_BOP_REPLACE: return MP_CMD_REPLACE;
    case MP_BOP_APPEND: return MP_CMD_APPEND;
    case MP_BOP_PREPEND: return MP_CMD_PREPEND;
    case MP_BOP_DELETE: return MP_CMD_DELETE;
    case MP_BOP_INCREMENT: return MP_CMD_INCR;
    case MP_BOP_DECREMENT: return MP_CMD_DECR;
    case MP_BOP_QUIT: return MP_CMD_QUIT;
    case MP_BOP_FLUSH: return MP_CMD_FLUSH_ALL;
    case MP_BOP_NOOP: return MP_CMD_MN;
    case MP_BOP_VERSION: return MP_CMD_VERSION;
    case MP_BOP_STAT: return MP_CMD_STATS;
    case MP_BOP_TOUCH: return MP_CMD_TOUCH;
    case MP_BOP_GAT:
    case MP_BOP_GATK: return MP_CMD_GAT;
    default: return MP_CMD_ERROR;
    }
}

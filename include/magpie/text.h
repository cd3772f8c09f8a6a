/*
 * text: runs text-protocol requests (proto.h) through the executor (exec.h) and writes
 * memcached's text replies.
 *
 * A get's keys are handed over one at a time by the connection, which walks the key list, reads
 * the rest of a long line and flushes at its high-water mark in between (conn.h); everything
 * else is one call per request. Knows nothing of sockets: replies go to x->out.
 */
#ifndef MAGPIE_TEXT_H
#define MAGPIE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "magpie/exec.h"
#include "magpie/proto.h"

/* Any request but the get family. */
enum mp_next mp_text_run(struct mp_exec *x, const struct mp_request *req);
/* A storage command's value and the two bytes after it are in: store it and answer. */
void mp_text_value_done(struct mp_exec *x, bool crlf_ok);

/* -Y: the n bytes of an authentication's value, its "\r\n" included: checked, answered and
 * counted (auth_cmds, auth_errors) as memcached does. On success x->authed is set. */
void mp_text_auth(struct mp_exec *x, const char *value, size_t n);
/* -Y: an authentication refused without reading its value (too long to be a password). */
void mp_text_auth_refuse(struct mp_exec *x);

/* get/gets/gat/gats: begin, one call per key, then the end ("END"), or a refusal that ends it. */
void mp_text_get_begin(struct mp_exec *x, const struct mp_request *req);
void mp_text_get_key(struct mp_exec *x, const char *key, size_t nkey);
void mp_text_get_end(struct mp_exec *x);
void mp_text_get_refuse(struct mp_exec *x);

#endif

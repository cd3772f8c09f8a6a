/*
 * binary: runs binary-protocol requests (bproto.h) through the executor (exec.h) and writes
 * memcached 1.6.18's binary replies: the same status codes, error bodies, CAS values in the
 * header, and quiet opcodes that answer only what memcached answers (a quiet get nothing on a
 * miss; a quiet set, delete, incr, flush or quit nothing on success; errors always).
 *
 * Knows nothing of sockets: replies go to x->out. A get's value is copied when small and pinned
 * and written from the item when large, as for the text protocol (out.h).
 */
#ifndef MAGPIE_BINARY_H
#define MAGPIE_BINARY_H

#include "magpie/bproto.h"
#include "magpie/exec.h"

enum mp_next mp_binary_run(struct mp_exec *x, const struct mp_brequest *req);
/* A storage request's value is in update.item: store it and answer. */
void mp_binary_value_done(struct mp_exec *x);

#endif

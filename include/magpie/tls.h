/*
 * tls: TLS for the listeners of -Z (memcached's flags: -o ssl_chain_cert, ssl_key, ssl_ca_cert,
 * ssl_verify_mode, ...), with OpenSSL driven through buffers, never through a socket.
 *
 * Two parts. struct mp_tls is the server's: the SSL_CTX made from the -o ssl_* files and settings.
 * `refresh_certs` makes a new context from the same files and swaps it in; sessions already made
 * keep the old one (OpenSSL counts its references), new ones get the new one, and a reload that
 * fails leaves the running context alone. struct mp_tls_conn is one connection's session.
 *
 * A session knows nothing of sockets: the connection (conn.h) does the I/O. Ciphertext is read
 * from the socket straight into the session's input buffer (mp_tls_in_room, mp_tls_in_added);
 * mp_tls_read decrypts it into the caller's buffer, advancing the handshake first while there is
 * one; mp_tls_write encrypts the caller's plaintext into the session's output buffer, whose bytes
 * the connection writes to the socket (mp_tls_out, mp_tls_out_done). The handshake's own messages
 * and alerts land in that output buffer too. The BIO under the SSL is Magpie's own, reading and
 * writing those two buffers, so no byte is copied between the socket and OpenSSL beyond what
 * OpenSSL itself does. The handshake therefore never blocks a worker: it goes as far as the bytes
 * that came allow, and the rest waits for the next read on the connection's loop.
 *
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION, as memcached), and a client that asks for it
 * on TLS 1.2 or older fails its session: mp_tls_read says MP_TLS_FAILED and the connection closes.
 *
 * Counters: a session counts ssl_handshake_errors (a handshake that fails, or a renegotiation
 * refused) and ssl_new_sessions
 * (with ssl_session_cache) in the stats block of the connection's worker (stats.h); a handshake
 * that runs out of time is the connection's to count.
 *
 * Locks: mp_tls.lock guards the current context pointer, held only to take a reference to it (a
 * new session) or to swap it (a reload), and never with another lock. A reload reads the files on
 * the thread that asks for it (the worker running refresh_certs), as memcached does. A session is touched by its
 * connection's thread alone. OpenSSL's error queue is per thread: every call here leaves it empty, so one connection's
 * error never shows up in another's.
 */
#ifndef MAGPIE_TLS_H
#define MAGPIE_TLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "magpie/config.h"
#include "magpie/stats.h"

struct ssl_ctx_st;    /* OpenSSL's SSL_CTX */
struct bio_method_st; /* and BIO_METHOD */

struct mp_tls {
    pthread_mutex_t lock;
    struct ssl_ctx_st *ctx;    /* guarded by lock */
    struct bio_method_st *bio; /* the sessions' BIO: reads and writes their buffers */
    const struct mp_tls_config *cfg;
    _Atomic uint32_t loaded_at; /* clock seconds of the last load (time_since_server_cert_refresh) */
    bool ready;
};

/* Make the context from cfg (which must outlive it). 0, or -1 with memcached's message in err. */
int mp_tls_setup(struct mp_tls *t, const struct mp_tls_config *cfg, uint32_t now, char *err, size_t errlen);
void mp_tls_teardown(struct mp_tls *t);
/* refresh_certs: load the files again into a new context. 0, or -1 with memcached's message in
 * err (the running context stays). Any thread. */
int mp_tls_refresh(struct mp_tls *t, uint32_t now, char *err, size_t errlen);

enum mp_tls_status {
    MP_TLS_OK,         /* bytes came out */
    MP_TLS_WANT_INPUT, /* nothing more until more ciphertext arrives */
    MP_TLS_CLOSED,     /* the peer ended the session (close_notify) */
    MP_TLS_FAILED,     /* a protocol error, a refused certificate, renegotiation: close */
};

struct mp_tls_conn;

/* A server session, counting in st. NULL when out of memory. */
struct mp_tls_conn *mp_tls_conn_create(struct mp_tls *t, struct mp_stats_thread *st);
void mp_tls_conn_destroy(struct mp_tls_conn **tc);

/* Where the next socket read goes, and how much fits (0: full, stop reading until mp_tls_read
 * has taken some). The buffer is made here if the connection has none (trimmed while idle);
 * out of memory, NULL and 0. */
char *mp_tls_in_room(struct mp_tls_conn *tc, size_t *room);
void mp_tls_in_added(struct mp_tls_conn *tc, size_t n);
/* Ciphertext received and not yet decrypted, or plaintext decrypted and not yet taken. */
bool mp_tls_has_input(const struct mp_tls_conn *tc);
/* The input buffer is full: no socket read until mp_tls_read has taken some. */
bool mp_tls_in_full(const struct mp_tls_conn *tc);
/* The connection is idle: free the buffers that hold nothing (the input and output buffers, made
 * again at the next read or write, and OpenSSL's record buffers), so an idle TLS connection holds
 * its session alone, as memcached's (SSL_MODE_RELEASE_BUFFERS) does. */
void mp_tls_conn_trim(struct mp_tls_conn *tc);

/* Advance the handshake with the ciphertext that came: MP_TLS_OK once it is done (and from then
 * on). Leaves its messages, or an alert, in the output buffer. */
enum mp_tls_status mp_tls_handshake(struct mp_tls_conn *tc);
/* Decrypt up to cap bytes into buf (cap > 0), doing the handshake first if it is not done.
 * May leave handshake messages or alerts in the output buffer, even when it fails. */
enum mp_tls_status mp_tls_read(struct mp_tls_conn *tc, char *buf, size_t cap, size_t *got);
/* Encrypt n bytes into the output buffer. 0, or -1 (out of memory, or the session failed). */
int mp_tls_write(struct mp_tls_conn *tc, const char *data, size_t n);
/* Queue a close_notify, for a connection that ends cleanly. */
void mp_tls_close_notify(struct mp_tls_conn *tc);

/* The ciphertext waiting for the socket: its length, and *data where it starts. The bytes stay
 * where they are until mp_tls_out_done, and no call that encrypts (mp_tls_read, mp_tls_write,
 * mp_tls_close_notify) may be made while a write of them is in flight. */
size_t mp_tls_out(const struct mp_tls_conn *tc, const char **data);
void mp_tls_out_done(struct mp_tls_conn *tc, size_t n);

/* The handshake is over and the session carries data. */
bool mp_tls_established(const struct mp_tls_conn *tc);
/* Why the session failed, for the log ("" if it did not). */
const char *mp_tls_why(const struct mp_tls_conn *tc);
/* The protocol version ("TLSv1.3") and cipher of an established session, for the log. */
const char *mp_tls_version(const struct mp_tls_conn *tc);
const char *mp_tls_describe(const struct mp_tls_conn *tc);

#endif

/* tls: see include/magpie/tls.h */
#include "magpie/tls.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Ciphertext read from the socket at once: a full record (16 KiB of data and its overhead) fits,
 * so a record never has to wait for room. */
#define IN_SIZE (16 * 1024 + 512)
#define OUT_KEEP (64 * 1024) /* an output buffer grown past this shrinks back once written */
#define SESSION_ID_CONTEXT "magpie"

struct mp_tls_conn {
    SSL *ssl;
    struct mp_stats_thread *st;
    char *in; /* IN_SIZE bytes of ciphertext not yet taken by OpenSSL: in[in_pos, in_len); NULL idle */
    size_t in_pos, in_len;
    char *out; /* ciphertext for the socket: out[out_pos, out_len) */
    size_t out_pos, out_len, out_cap;
    bool started; /* OpenSSL has been given the first record */
    bool established;
    bool failed;
    bool renegotiation; /* a ClientHello came after the handshake */
    char why[160];
};

/* ---- the BIO: reads from `in`, writes to `out` ----------------------------------------------- */

static int bio_read(BIO *b, char *buf, size_t n, size_t *got)
{
    struct mp_tls_conn *tc = BIO_get_data(b);
    size_t avail = tc->in_len - tc->in_pos;
    BIO_clear_retry_flags(b);
    if (avail == 0) {
        BIO_set_retry_read(b); /* nothing yet: the handshake or read waits for the socket */
        *got = 0;
        return 0;
    }
    size_t m = n < avail ? n : avail;
    memcpy(buf, tc->in + tc->in_pos, m);
    tc->in_pos += m;
    if (tc->in_pos == tc->in_len)
        tc->in_pos = tc->in_len = 0;
    *got = m;
    return 1;
}

/* Everything OpenSSL writes is taken: the output buffer grows, and the connection's backpressure
 * (it encrypts a bounded amount before it writes, and stops while a write is queued) bounds it. */
static int bio_write(BIO *b, const char *data, size_t n, size_t *written)
{
    struct mp_tls_conn *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (tc->out_len + n > tc->out_cap) {
        size_t cap = tc->out_cap ? tc->out_cap : 4096;
        while (cap < tc->out_len + n)
            cap *= 2;
        char *p = realloc(tc->out, cap);
        if (!p)
            return 0;
        tc->out = p;
        tc->out_cap = cap;
    }
    memcpy(tc->out + tc->out_len, data, n);
    tc->out_len += n;
    *written = n;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct mp_tls_conn *tc = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* the connection writes the buffer */
    case BIO_CTRL_PENDING: return (long)(tc->in_len - tc->in_pos);
    case BIO_CTRL_WPENDING: return (long)(tc->out_len - tc->out_pos);
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "magpie buffers");
    if (!m || !BIO_meth_set_read_ex(m, bio_read) || !BIO_meth_set_write_ex(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- contexts -------------------------------------------------------------------------------- */

/* OpenSSL's error queue as one line (the last error), then emptied. */
static void take_errors(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "%s", "unknown error");
    ERR_clear_error();
}

/* Renegotiation, on TLS 1.2 and older: a ClientHello after the handshake, or the no_renegotiation
 * alert OpenSSL answers one with when it turns it away by itself (before the message is shown). */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    (void)version;
    (void)arg;
    struct mp_tls_conn *tc = SSL_get_app_data(ssl);
    const unsigned char *b = buf;
    if (!tc || !tc->established)
        return;
    if ((!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 && b[0] == SSL3_MT_CLIENT_HELLO) ||
        (write_p && content_type == SSL3_RT_ALERT && len >= 2 && b[1] == SSL_AD_NO_RENEGOTIATION))
        tc->renegotiation = true;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)sess;
    struct mp_tls_conn *tc = SSL_get_app_data(ssl);
    if (tc)
        MP_STAT_INC(tc->st, ssl_new_sessions);
    return 0; /* the cache keeps its own reference */
}

/* memcached's order and messages (its load_server_certificates, then ssl_init's settings). */
static int load_files(SSL_CTX *ctx, const struct mp_tls_config *cfg, char *err, size_t errlen)
{
    char why[256];
    const char *key = cfg->key ? cfg->key : cfg->chain_cert;
    if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->chain_cert)) {
        take_errors(why, sizeof(why));
        snprintf(err, errlen, "Error loading the certificate chain: %s : %s", cfg->chain_cert, why);
        return -1;
    }
    if (!SSL_CTX_use_PrivateKey_file(ctx, key, cfg->keyformat)) {
        take_errors(why, sizeof(why));
        snprintf(err, errlen, "Error loading the key: %s : %s", key, why);
        return -1;
    }
    if (!SSL_CTX_check_private_key(ctx)) {
        take_errors(why, sizeof(why));
        snprintf(err, errlen, "Error validating the certificate: %s", why);
        return -1;
    }
    if (cfg->ca_cert) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_cert);
        if (!names || !SSL_CTX_load_verify_locations(ctx, cfg->ca_cert, NULL)) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            take_errors(why, sizeof(why));
            snprintf(err, errlen, "Error loading the CA certificate: %s : %s", cfg->ca_cert, why);
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* the names a client is told to choose from */
    }
    return 0;
}

static SSL_CTX *make_ctx(const struct mp_tls_config *cfg, char *err, size_t errlen)
{
    static const int versions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "%s", "Error creating the TLS context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, versions[cfg->min_version]);
    if (load_files(ctx, cfg, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, mp_config_tls_verify_flags(cfg->verify), NULL);
    if (cfg->ciphers && !SSL_CTX_set_cipher_list(ctx, cfg->ciphers)) {
        snprintf(err, errlen, "Error setting the provided cipher(s): %s", cfg->ciphers);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* A session's resumption needs its context named, when client certificates are asked for. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT, sizeof(SESSION_ID_CONTEXT) - 1);
    if (cfg->session_cache) {
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Take whatever ciphertext is there in one BIO read, not a record header and body apart. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_msg_callback(ctx, on_message);
    return ctx;
}

int mp_tls_setup(struct mp_tls *t, const struct mp_tls_config *cfg, uint32_t now, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    if (!(t->bio = make_bio_method())) {
        snprintf(err, errlen, "%s", "out of memory");
        return -1;
    }
    if (!(t->ctx = make_ctx(cfg, err, errlen))) {
        BIO_meth_free(t->bio);
        return -1;
    }
    pthread_mutex_init(&t->lock, NULL);
    atomic_store(&t->loaded_at, now);
    t->ready = true;
    return 0;
}

void mp_tls_teardown(struct mp_tls *t)
{
    if (!t->ready)
        return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio);
    pthread_mutex_destroy(&t->lock);
    t->ready = false;
}

int mp_tls_refresh(struct mp_tls *t, uint32_t now, char *err, size_t errlen)
{
    if (!t || !t->ready) {
        snprintf(err, errlen, "%s", "Error TLS not enabled");
        return -1;
    }
    SSL_CTX *ctx = make_ctx(t->cfg, err, errlen);
    if (!ctx)
        return -1;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* freed when the last session made from it ends */
    atomic_store(&t->loaded_at, now);
    return 0;
}

/* ---- sessions -------------------------------------------------------------------------------- */

struct mp_tls_conn *mp_tls_conn_create(struct mp_tls *t, struct mp_stats_thread *st)
{
    struct mp_tls_conn *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return NULL;
    tc->st = st;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *ctx = t->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&t->lock);
    tc->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    BIO *bio = tc->ssl ? BIO_new(t->bio) : NULL;
    if (!bio) {
        SSL_free(tc->ssl);
        free(tc->in);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(bio, tc);
    SSL_set_bio(tc->ssl, bio, bio); /* one BIO both ways; the SSL owns it */
    SSL_set_app_data(tc->ssl, tc);
    SSL_set_accept_state(tc->ssl);
    /* While the handshake goes on, OpenSSL's record buffers are freed whenever they are empty,
     * so a handshake left hanging (by the thousand, by a hostile client) holds little memory. */
    SSL_set_mode(tc->ssl, SSL_MODE_RELEASE_BUFFERS);
    return tc;
}

void mp_tls_conn_destroy(struct mp_tls_conn **tcp)
{
    struct mp_tls_conn *tc = *tcp;
    if (!tc)
        return;
    SSL_free(tc->ssl);
    free(tc->in);
    free(tc->out);
    free(tc);
    *tcp = NULL;
}

char *mp_tls_in_room(struct mp_tls_conn *tc, size_t *room)
{
    if (!tc->in && !(tc->in = malloc(IN_SIZE))) {
        *room = 0;
        return NULL;
    }
    if (tc->in_pos > 0) {
        memmove(tc->in, tc->in + tc->in_pos, tc->in_len - tc->in_pos);
        tc->in_len -= tc->in_pos;
        tc->in_pos = 0;
    }
    *room = IN_SIZE - tc->in_len;
    return tc->in + tc->in_len;
}

void mp_tls_in_added(struct mp_tls_conn *tc, size_t n)
{
    tc->in_len += n;
}

bool mp_tls_in_full(const struct mp_tls_conn *tc)
{
    return tc->in_len - tc->in_pos >= IN_SIZE;
}

void mp_tls_conn_trim(struct mp_tls_conn *tc)
{
    if (tc->in_pos == tc->in_len) {
        free(tc->in);
        tc->in = NULL;
        tc->in_pos = tc->in_len = 0;
    }
    if (tc->out_pos == tc->out_len) {
        free(tc->out);
        tc->out = NULL;
        tc->out_pos = tc->out_len = tc->out_cap = 0;
    }
    /* OpenSSL's own record buffers (about 34 KiB); it refuses while they hold anything, and makes
     * them again at the next record. During the handshake SSL_MODE_RELEASE_BUFFERS does this. */
    if (tc->established)
        SSL_free_buffers(tc->ssl);
}

bool mp_tls_has_input(const struct mp_tls_conn *tc)
{
    return tc->in_pos < tc->in_len || SSL_has_pending(tc->ssl);
}

static enum mp_tls_status fail(struct mp_tls_conn *tc, const char *why)
{
    if (why)
        snprintf(tc->why, sizeof(tc->why), "%s", why);
    else
        take_errors(tc->why, sizeof(tc->why));
    ERR_clear_error();
    if ((!tc->established || tc->renegotiation) && !tc->failed)
        MP_STAT_INC(tc->st, ssl_handshake_errors);
    tc->failed = true;
    return MP_TLS_FAILED;
}

/* What an SSL_read_ex or SSL_do_handshake that returned rc means. */
static enum mp_tls_status outcome(struct mp_tls_conn *tc, int rc)
{
    if (!tc->established && SSL_is_init_finished(tc->ssl)) {
        tc->established = true;
        SSL_clear_mode(tc->ssl, SSL_MODE_RELEASE_BUFFERS); /* keep them: they are in use from now */
    }
    if (tc->renegotiation)
        return fail(tc, "renegotiation refused");
    if (rc == 1)
        return MP_TLS_OK;
    switch (SSL_get_error(tc->ssl, rc)) {
    case SSL_ERROR_WANT_READ: return MP_TLS_WANT_INPUT;
    case SSL_ERROR_ZERO_RETURN: return MP_TLS_CLOSED;
    default: return fail(tc, NULL);
    }
}

/*
 * OpenSSL is not given the first record before it is whole: the handshake's state and buffers
 * (some 40 KiB) are made when it starts, so a client that sends part of a ClientHello and stops,
 * or nothing, costs no more than the session itself until its deadline. A first record that
 * cannot be a handshake's, or that would not fit the input buffer, goes to OpenSSL at once, to
 * be refused there.
 */
static bool first_record_whole(struct mp_tls_conn *tc)
{
    size_t n = tc->in_len - tc->in_pos;
    if (tc->started)
        return true;
    if (n < 5)
        return false;
    const unsigned char *p = (const unsigned char *)tc->in + tc->in_pos;
    size_t len = (size_t)p[3] << 8 | p[4];
    if (p[0] == SSL3_RT_HANDSHAKE && n < 5 + len && len <= IN_SIZE - 5)
        return false;
    tc->started = true;
    return true;
}

enum mp_tls_status mp_tls_handshake(struct mp_tls_conn *tc)
{
    if (tc->failed)
        return MP_TLS_FAILED;
    if (tc->established)
        return MP_TLS_OK;
    if (!first_record_whole(tc))
        return MP_TLS_WANT_INPUT;
    ERR_clear_error(); /* SSL_get_error reads the queue: nothing of another session's may be in it */
    return outcome(tc, SSL_do_handshake(tc->ssl));
}

enum mp_tls_status mp_tls_read(struct mp_tls_conn *tc, char *buf, size_t cap, size_t *got)
{
    *got = 0;
    if (tc->failed)
        return MP_TLS_FAILED;
    ERR_clear_error();
    size_t n = 0;
    enum mp_tls_status st = outcome(tc, SSL_read_ex(tc->ssl, buf, cap < INT_MAX ? cap : INT_MAX, &n));
    if (st == MP_TLS_OK)
        *got = n;
    return st;
}

int mp_tls_write(struct mp_tls_conn *tc, const char *data, size_t n)
{
    if (tc->failed)
        return -1;
    ERR_clear_error();
    while (n > 0) {
        size_t chunk = n < INT_MAX ? n : INT_MAX, done = 0;
        if (SSL_write_ex(tc->ssl, data, chunk, &done) != 1) {
            fail(tc, NULL);
            return -1;
        }
        data += done;
        n -= done;
    }
    return 0;
}

void mp_tls_close_notify(struct mp_tls_conn *tc)
{
    if (tc->established && !tc->failed && SSL_shutdown(tc->ssl) < 0)
        ERR_clear_error();
}

size_t mp_tls_out(const struct mp_tls_conn *tc, const char **data)
{
    *data = tc->out + tc->out_pos;
    return tc->out_len - tc->out_pos;
}

void mp_tls_out_done(struct mp_tls_conn *tc, size_t n)
{
    tc->out_pos += n;
    if (tc->out_pos < tc->out_len)
        return;
    tc->out_pos = tc->out_len = 0;
    if (tc->out_cap > OUT_KEEP) {
        free(tc->out);
        tc->out = NULL;
        tc->out_cap = 0;
    }
}

bool mp_tls_established(const struct mp_tls_conn *tc)
{
    return tc->established;
}

const char *mp_tls_describe(const struct mp_tls_conn *tc)
{
    return tc->established ? SSL_get_cipher_name(tc->ssl) : "handshake";
}

const char *mp_tls_version(const struct mp_tls_conn *tc)
{
    return SSL_get_version(tc->ssl);
}

const char *mp_tls_why(const struct mp_tls_conn *tc)
{
    return tc->why;
}

/*
 * Unit tests for tls: a server session driven as conn drives it (ciphertext into its input
 * buffer, plaintext out of mp_tls_read, ciphertext out of its output buffer), against an OpenSSL
 * client over memory BIOs, with certificates made here. No socket anywhere.
 */
#include <check.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "magpie/tls.h"

static char dir[64];
static char ca_pem[96], server_pem[96], server_key[96], client_pem[96], client_key[96], other_pem[96], other_key[96];
static struct mp_tls tls;
static struct mp_tls_config cfg;
static struct mp_stats_thread st; /* the worker's counters */
static char err[512];

/* ---- certificates ---------------------------------------------------------------------------- */

static EVP_PKEY *ca_key;
static X509 *ca_cert;

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

static void write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* A key and a certificate for cn, signed by the CA (or self-signed), as name.pem and name.key. */
static void issue(const char *cn, bool by_ca, char *pem, char *keypath, const char *name)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = make_cert(key, cn, by_ca ? ca_cert : NULL, by_ca ? ca_key : NULL, false);
    snprintf(pem, 96, "%s/%s.pem", dir, name);
    snprintf(keypath, 96, "%s/%s.key", dir, name);
    write_pem(pem, cert, NULL);
    write_pem(keypath, NULL, key);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void make_certs(void)
{
    strcpy(dir, "/tmp/magpie_test_tls.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca_cert = make_cert(ca_key, "test ca", NULL, NULL, true);
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    write_pem(ca_pem, ca_cert, NULL);
    issue("server", true, server_pem, server_key, "server");
    issue("client", true, client_pem, client_key, "client");
    issue("other", false, other_pem, other_key, "other");
}

static void remove_certs(void)
{
    const char *files[] = {ca_pem, server_pem, server_key, client_pem, client_key, other_pem, other_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(dir);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
}

static void setup(void)
{
    make_certs();
    memset(&st, 0, sizeof(st));
    memset(&cfg, 0, sizeof(cfg));
    cfg.enabled = true;
    cfg.chain_cert = server_pem;
    cfg.key = server_key;
    cfg.keyformat = SSL_FILETYPE_PEM;
    cfg.min_version = 2;
    cfg.wbuf_size = 64 * 1024;
}

static void teardown(void)
{
    mp_tls_teardown(&tls);
    remove_certs();
}

static uint64_t handshake_errors(void)
{
    return atomic_load(&st.ssl_handshake_errors);
}

/* ---- a client, and the bytes between it and a server session --------------------------------- */

struct pair {
    SSL_CTX *ctx;
    SSL *client;
    BIO *to_client, *from_client; /* the client's read and write BIOs */
    struct mp_tls_conn *server;
    enum mp_tls_status last; /* the server's last status */
    char got[1 << 20];       /* plaintext the server read */
    size_t ngot;
};

static void pair_open(struct pair *p, const char *cert, const char *key, int max_version)
{
    memset(p, 0, sizeof(*p));
    p->ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(p->ctx), ca_cert);
    SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(p->ctx, max_version);
    if (cert) {
        ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(p->ctx, cert), 1);
        ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(p->ctx, key, SSL_FILETYPE_PEM), 1);
    }
    p->client = SSL_new(p->ctx);
    p->to_client = BIO_new(BIO_s_mem());
    p->from_client = BIO_new(BIO_s_mem());
    SSL_set_bio(p->client, p->to_client, p->from_client);
    SSL_set_connect_state(p->client);
    p->server = mp_tls_conn_create(&tls, &st);
    ck_assert_ptr_nonnull(p->server);
}

static void pair_close(struct pair *p)
{
    mp_tls_conn_destroy(&p->server);
    ck_assert_ptr_null(p->server);
    SSL_free(p->client);
    SSL_CTX_free(p->ctx);
    ERR_clear_error();
}

/* Bytes from the client (or given raw) into the server's input, as conn's reads put them. */
static void feed(struct pair *p, const char *raw, size_t n)
{
    size_t room;
    char *dst = mp_tls_in_room(p->server, &room);
    ck_assert_uint_ge(room, n);
    memcpy(dst, raw, n);
    mp_tls_in_added(p->server, n);
}

/* The server's turn, as conn's tls_fill takes it: the handshake, then reads until no input is left. */
static void server_turn(struct pair *p)
{
    while (mp_tls_has_input(p->server)) {
        if (!mp_tls_established(p->server)) {
            p->last = mp_tls_handshake(p->server);
        } else {
            size_t got = 0;
            p->last = mp_tls_read(p->server, p->got + p->ngot, sizeof(p->got) - p->ngot, &got);
            p->ngot += got;
        }
        if (p->last != MP_TLS_OK)
            return;
    }
}

/* Move bytes both ways until neither side has more to say; each side advances in between. */
static void pump(struct pair *p)
{
    for (int i = 0; i < 200; i++) {
        bool moved = false;
        char buf[4096];
        int n;
        while ((n = BIO_read(p->from_client, buf, sizeof(buf))) > 0) {
            feed(p, buf, (size_t)n);
            server_turn(p);
            moved = true;
        }
        const char *out;
        size_t len = mp_tls_out(p->server, &out);
        if (len) {
            BIO_write(p->to_client, out, (int)len);
            mp_tls_out_done(p->server, len);
            moved = true;
        }
        if (!SSL_is_init_finished(p->client))
            SSL_do_handshake(p->client);
        if (!moved && BIO_ctrl_pending(p->from_client) == 0)
            return;
    }
}

/* Everything the client can read now. */
static size_t client_read(struct pair *p, char *buf, size_t cap)
{
    size_t total = 0, n;
    while (total < cap && SSL_read_ex(p->client, buf + total, cap - total, &n) == 1)
        total += n;
    ERR_clear_error();
    return total;
}

static void tls_up(void)
{
    ck_assert_int_eq(mp_tls_setup(&tls, &cfg, 100, err, sizeof(err)), 0);
}

/* ---- the tests ------------------------------------------------------------------------------- */

START_TEST(test_a_handshake_then_requests_and_replies_both_ways)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    pump(&p);
    ck_assert(SSL_is_init_finished(p.client));
    ck_assert(mp_tls_established(p.server));
    ck_assert_str_eq(mp_tls_version(p.server), "TLSv1.3");
    SSL_write(p.client, "get k\r\n", 7);
    pump(&p);
    ck_assert_uint_eq(p.ngot, 7);
    ck_assert(memcmp(p.got, "get k\r\n", 7) == 0);
    ck_assert_int_eq(mp_tls_write(p.server, "END\r\n", 5), 0);
    pump(&p);
    char reply[16];
    ck_assert_uint_eq(client_read(&p, reply, sizeof(reply)), 5);
    ck_assert(memcmp(reply, "END\r\n", 5) == 0);
    ck_assert_uint_eq(handshake_errors(), 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_a_batch_of_replies_is_one_record)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    pump(&p);
    const char *out;
    mp_tls_out_done(p.server, mp_tls_out(p.server, &out)); /* the session tickets */
    char batch[1000];
    memset(batch, 'v', sizeof(batch));
    ck_assert_int_eq(mp_tls_write(p.server, batch, sizeof(batch)), 0);
    size_t len = mp_tls_out(p.server, &out);
    /* one application-data record: its header says the rest of the output is its body */
    ck_assert_uint_ge(len, 5);
    ck_assert_uint_eq((unsigned char)out[0], 23);
    ck_assert_uint_eq(((size_t)(unsigned char)out[3] << 8 | (unsigned char)out[4]) + 5, len);
    pair_close(&p);
}
END_TEST

START_TEST(test_output_is_taken_in_parts_as_a_socket_takes_it)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    pump(&p);
    static char value[200000];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (char)('a' + i % 26);
    ck_assert_int_eq(mp_tls_write(p.server, value, sizeof(value)), 0);
    const char *out;
    size_t len = mp_tls_out(p.server, &out);
    ck_assert_uint_gt(len, sizeof(value));
    /* a socket that takes 1000 bytes, then the rest */
    BIO_write(p.to_client, out, 1000);
    mp_tls_out_done(p.server, 1000);
    len = mp_tls_out(p.server, &out);
    BIO_write(p.to_client, out, (int)len);
    mp_tls_out_done(p.server, len);
    ck_assert_uint_eq(mp_tls_out(p.server, &out), 0);
    static char back[sizeof(value)];
    ck_assert_uint_eq(client_read(&p, back, sizeof(back)), sizeof(value));
    ck_assert(memcmp(back, value, sizeof(value)) == 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_plaintext_instead_of_a_hello_fails_and_is_counted)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    feed(&p, LIT("get foo\r\n"));
    server_turn(&p);
    ck_assert_int_eq(p.last, MP_TLS_FAILED);
    ck_assert_ptr_nonnull(strstr(mp_tls_why(p.server), "wrong version number"));
    ck_assert_uint_eq(handshake_errors(), 1);
    /* and it stays failed, counted once */
    server_turn(&p);
    ck_assert_int_eq(mp_tls_write(p.server, "x", 1), -1);
    ck_assert_uint_eq(handshake_errors(), 1);
    ck_assert_uint_eq(ERR_peek_error(), 0); /* nothing left for the thread's next session */
    pair_close(&p);
}
END_TEST

START_TEST(test_part_of_a_first_record_waits_without_failing)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    SSL_do_handshake(p.client);
    char hello[2048];
    int n = BIO_read(p.from_client, hello, sizeof(hello));
    ck_assert_int_gt(n, 100);
    feed(&p, hello, 40);
    ck_assert_int_eq(mp_tls_handshake(p.server), MP_TLS_WANT_INPUT);
    const char *out;
    ck_assert_uint_eq(mp_tls_out(p.server, &out), 0); /* nothing said yet */
    feed(&p, hello + 40, (size_t)n - 40);
    server_turn(&p);
    ck_assert_uint_gt(mp_tls_out(p.server, &out), 0); /* the server's first flight */
    pump(&p);
    ck_assert(mp_tls_established(p.server));
    ck_assert_uint_eq(handshake_errors(), 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_mutual_tls_takes_a_certificate_from_the_ca_only)
{
    cfg.verify = MP_TLS_VERIFY_REQUIRE;
    cfg.ca_cert = ca_pem;
    tls_up();
    struct pair ok, none, other;
    pair_open(&ok, client_pem, client_key, 0);
    pump(&ok);
    ck_assert(mp_tls_established(ok.server));
    pair_open(&none, NULL, NULL, 0);
    pump(&none);
    ck_assert_int_eq(none.last, MP_TLS_FAILED);
    pair_open(&other, other_pem, other_key, 0);
    pump(&other);
    ck_assert_int_eq(other.last, MP_TLS_FAILED);
    ck_assert_uint_eq(handshake_errors(), 2);
    pair_close(&ok);
    pair_close(&none);
    pair_close(&other);
}
END_TEST

START_TEST(test_a_renegotiation_fails_the_session_and_is_counted)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, TLS1_2_VERSION);
    pump(&p);
    ck_assert(mp_tls_established(p.server));
    ck_assert_int_eq(SSL_renegotiate(p.client), 1);
    SSL_do_handshake(p.client);
    pump(&p);
    ck_assert_int_eq(p.last, MP_TLS_FAILED);
    ck_assert_str_eq(mp_tls_why(p.server), "renegotiation refused");
    ck_assert_uint_eq(handshake_errors(), 1);
    pair_close(&p);
}
END_TEST

START_TEST(test_close_notify_both_ways)
{
    struct pair p;
    tls_up();
    pair_open(&p, NULL, NULL, 0);
    pump(&p);
    mp_tls_close_notify(p.server);
    pump(&p);
    char buf[16];
    size_t n;
    ck_assert_int_eq(SSL_read_ex(p.client, buf, sizeof(buf), &n), 0);
    ck_assert_int_eq(SSL_get_error(p.client, 0), SSL_ERROR_ZERO_RETURN);
    SSL_shutdown(p.client);
    pump(&p);
    ck_assert_int_eq(p.last, MP_TLS_CLOSED);
    ck_assert_uint_eq(handshake_errors(), 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_files_that_cannot_be_loaded_give_memcacheds_messages)
{
    cfg.chain_cert = "/nonexistent/chain.pem";
    ck_assert_int_eq(mp_tls_setup(&tls, &cfg, 100, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "Error loading the certificate chain: /nonexistent/chain.pem : "));
    cfg.chain_cert = server_pem;
    cfg.key = client_key; /* a key, but not the certificate's */
    ck_assert_int_eq(mp_tls_setup(&tls, &cfg, 100, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "Error loading the key: "));
    cfg.key = server_key;
    cfg.ciphers = "NO-SUCH-CIPHER";
    ck_assert_int_eq(mp_tls_setup(&tls, &cfg, 100, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "Error setting the provided cipher(s): NO-SUCH-CIPHER");
    ck_assert_uint_eq(ERR_peek_error(), 0);
}
END_TEST

START_TEST(test_refresh_swaps_the_context_and_a_failed_one_keeps_it)
{
    char err2[512];
    ck_assert_int_eq(mp_tls_refresh(NULL, 100, err2, sizeof(err2)), -1);
    ck_assert_str_eq(err2, "Error TLS not enabled");
    tls_up();
    struct pair before;
    pair_open(&before, NULL, NULL, 0); /* a session made before the refresh */
    ck_assert_int_eq(mp_tls_refresh(&tls, 130, err, sizeof(err)), 0);
    ck_assert_uint_eq(atomic_load(&tls.loaded_at), 130);
    pump(&before);
    ck_assert(mp_tls_established(before.server)); /* on the old context, which it keeps alive */
    cfg.chain_cert = "/nonexistent/chain.pem";
    ck_assert_int_eq(mp_tls_refresh(&tls, 160, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "Error loading the certificate chain: "));
    ck_assert_uint_eq(atomic_load(&tls.loaded_at), 130);
    struct pair after;
    pair_open(&after, NULL, NULL, 0); /* the context that was loaded last serves */
    pump(&after);
    ck_assert(mp_tls_established(after.server));
    pair_close(&before);
    pair_close(&after);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_handshake_then_requests_and_replies_both_ways);
    tcase_add_test(tc, test_a_batch_of_replies_is_one_record);
    tcase_add_test(tc, test_output_is_taken_in_parts_as_a_socket_takes_it);
    tcase_add_test(tc, test_plaintext_instead_of_a_hello_fails_and_is_counted);
    tcase_add_test(tc, test_part_of_a_first_record_waits_without_failing);
    tcase_add_test(tc, test_mutual_tls_takes_a_certificate_from_the_ca_only);
    tcase_add_test(tc, test_a_renegotiation_fails_the_session_and_is_counted);
    tcase_add_test(tc, test_close_notify_both_ways);
    tcase_add_test(tc, test_files_that_cannot_be_loaded_give_memcacheds_messages);
    tcase_add_test(tc, test_refresh_swaps_the_context_and_a_failed_one_keeps_it);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(tls_suite());
}

/* health: see include/magpie/health.h */
#include "magpie/health.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "magpie/bproto.h"

#define TIMEOUT_MS 2000

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Wait for fd to be ready for `events` within what is left of the deadline. */
static int wait_for(int fd, short events, const struct timespec *start)
{
    long left = TIMEOUT_MS - elapsed_ms(start);
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

static int connect_to(const char *host, const char *port, const struct timespec *start)
{
    if (host[0] == '/') {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(host) >= sizeof(sa.sun_path))
            return -1;
        memcpy(sa.sun_path, host, strlen(host) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || wait_for(fd, POLLOUT, start) != 0)) {
            close(fd);
            fd = -1;
            continue;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The probe's connection: the socket, and a TLS session over it with -Z. */
struct probe {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct timespec start;
};

/* Wait for what a TLS call that could not go on asked for; 0, or -1 on an error or the deadline. */
static int tls_wait(struct probe *p, int rc)
{
    switch (SSL_get_error(p->ssl, rc)) {
    case SSL_ERROR_WANT_READ: return wait_for(p->fd, POLLIN, &p->start);
    case SSL_ERROR_WANT_WRITE: return wait_for(p->fd, POLLOUT, &p->start);
    default: return -1;
    }
}

/*
 * A TLS session for the probe. It checks that the server is alive, not who it is: the server's
 * certificate is not verified. The server's own ssl_chain_cert and ssl_key, when -Z gives them,
 * are presented as the client's certificate, for a server that requires one (ssl_verify_mode=2)
 * and accepts that certificate from a client.
 */
static int tls_start(struct probe *p, const struct mp_tls_config *tls)
{
    p->ctx = SSL_CTX_new(TLS_client_method());
    if (!p->ctx)
        return -1;
    SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
    if (tls->chain_cert &&
        (!SSL_CTX_use_certificate_chain_file(p->ctx, tls->chain_cert) ||
         !SSL_CTX_use_PrivateKey_file(p->ctx, tls->key ? tls->key : tls->chain_cert, tls->keyformat)))
        return -1;
    if (!(p->ssl = SSL_new(p->ctx)) || !SSL_set_fd(p->ssl, p->fd))
        return -1;
    for (int rc; (rc = SSL_connect(p->ssl)) != 1;)
        if (tls_wait(p, rc) != 0)
            return -1;
    return 0;
}

static int probe_send(struct probe *p, const char *data, size_t n)
{
    if (!p->ssl)
        return send(p->fd, data, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
    for (size_t done = 0; done < n;) {
        size_t w = 0;
        int rc = SSL_write_ex(p->ssl, data + done, n - done, &w);
        if (rc == 1)
            done += w;
        else if (tls_wait(p, rc) != 0)
            return -1;
    }
    return 0;
}

/* Some bytes of the reply: their number, or -1 (closed, an error, or the deadline). */
static ssize_t probe_recv(struct probe *p, char *buf, size_t cap)
{
    if (!p->ssl) {
        ssize_t n = wait_for(p->fd, POLLIN, &p->start) == 0 ? recv(p->fd, buf, cap, 0) : -1;
        return n > 0 ? n : -1;
    }
    for (;;) {
        size_t n = 0;
        int rc = SSL_read_ex(p->ssl, buf, cap, &n);
        if (rc == 1)
            return (ssize_t)n;
        if (tls_wait(p, rc) != 0)
            return -1;
    }
}

static void probe_close(struct probe *p)
{
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    close(p->fd);
}

/* The reply says the server is up: a VERSION line, or with -Y memcached's refusal of a
 * connection that has not authenticated (the server is there, it just wants a password). */
static bool alive(const char *buf, size_t got, bool binary)
{
    static const char unauth[] = "CLIENT_ERROR unauthenticated";
    if (!binary)
        return (got >= 8 && memcmp(buf, "VERSION ", 8) == 0) ||
               (got >= sizeof(unauth) - 1 && memcmp(buf, unauth, sizeof(unauth) - 1) == 0);
    /* a response (0x81) to VERSION with status 0 */
    return got >= MP_BPROTO_HDR && (unsigned char)buf[0] == MP_BPROTO_RES && buf[1] == MP_BOP_VERSION && buf[6] == 0 &&
           buf[7] == 0;
}

int mp_health_probe(const char *target, const char *default_host, int default_port, bool binary,
                    const struct mp_tls_config *tls)
{
    char host[256], port[16];
    snprintf(host, sizeof(host), "%s", default_host);
    snprintf(port, sizeof(port), "%d", default_port);
    if (target[0] == '/') {
        snprintf(host, sizeof(host), "%s", target);
    } else if (target[0]) {
        const char *colon = strrchr(target, ':');
        if (colon) {
            if (colon != target)
                snprintf(host, sizeof(host), "%.*s", (int)(colon - target), target);
            snprintf(port, sizeof(port), "%s", colon + 1);
        } else {
            snprintf(host, sizeof(host), "%s", target);
        }
    }
    struct probe p = {.fd = -1};
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    p.fd = connect_to(host, port, &p.start);
    if (p.fd < 0) {
        fprintf(stderr, "magpie --health: cannot connect to %s%s%s\n", host, host[0] == '/' ? "" : ":",
                host[0] == '/' ? "" : port);
        return 1;
    }
    if (tls && host[0] != '/' && tls_start(&p, tls) != 0) {
        fprintf(stderr, "magpie --health: no TLS session with %s:%s\n", host, port);
        probe_close(&p);
        return 1;
    }
    /* The text `version`, or with -B binary the binary VERSION request (magic 0x80, opcode 0x0b). */
    static const char text_req[] = "version\r\n";
    static const char bin_req[MP_BPROTO_HDR] = {(char)MP_BPROTO_REQ, MP_BOP_VERSION};
    const char *req = binary ? bin_req : text_req;
    size_t nreq = binary ? sizeof(bin_req) : sizeof(text_req) - 1;
    char buf[128];
    size_t got = 0;
    int ok = probe_send(&p, req, nreq) == 0;
    while (ok && got < sizeof(buf) - 1 && (binary ? got < MP_BPROTO_HDR : !memchr(buf, '\n', got))) {
        ssize_t n = probe_recv(&p, buf + got, sizeof(buf) - 1 - got);
        if (n < 0)
            ok = 0;
        else
            got += (size_t)n;
    }
    probe_close(&p);
    if (ok && alive(buf, got, binary))
        return 0;
    fprintf(stderr, "magpie --health: no VERSION reply from %s\n", host);
    return 1;
}

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

int mp_health_probe(const char *target, const char *default_host, int default_port, bool binary)
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
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int fd = connect_to(host, port, &start);
    if (fd < 0) {
        fprintf(stderr, "magpie --health: cannot connect to %s%s%s\n", host, host[0] == '/' ? "" : ":",
                host[0] == '/' ? "" : port);
        return 1;
    }
    /* The text `version`, or with -B binary the binary VERSION request (magic 0x80, opcode 0x0b). */
    static const char text_req[] = "version\r\n";
    static const char bin_req[MP_BPROTO_HDR] = {(char)MP_BPROTO_REQ, MP_BOP_VERSION};
    const char *req = binary ? bin_req : text_req;
    size_t nreq = binary ? sizeof(bin_req) : sizeof(text_req) - 1;
    char buf[128];
    size_t got = 0;
    int ok = send(fd, req, nreq, MSG_NOSIGNAL) == (ssize_t)nreq;
    while (ok && got < sizeof(buf) - 1 && (binary ? got < MP_BPROTO_HDR : !memchr(buf, '\n', got))) {
        ssize_t n = wait_for(fd, POLLIN, &start) == 0 ? recv(fd, buf + got, sizeof(buf) - 1 - got, 0) : -1;
        if (n <= 0)
            ok = 0;
        else
            got += (size_t)n;
    }
    close(fd);
    if (ok && !binary && got >= 8 && memcmp(buf, "VERSION ", 8) == 0)
        return 0;
    /* a response (0x81) to VERSION with status 0 */
    if (ok && binary && got >= MP_BPROTO_HDR && (unsigned char)buf[0] == MP_BPROTO_RES && buf[1] == MP_BOP_VERSION &&
        buf[6] == 0 && buf[7] == 0)
        return 0;
    fprintf(stderr, "magpie --health: no VERSION reply from %s\n", host);
    return 1;
}

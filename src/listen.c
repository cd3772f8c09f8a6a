/* listen: see include/magpie/listen.h */
#define _GNU_SOURCE /* accept4 */
#include "magpie/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "magpie/log.h"

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
static const char TOO_MANY[] = "ERROR Too many open connections\r\n";

/* ---- binding --------------------------------------------------------------------------------- */

int mp_listen_port(const struct mp_config *cfg, int i)
{
    return cfg->listen_port[i] >= 0 ? cfg->listen_port[i] : cfg->port;
}

/* A TCP socket for `ai`, with the options every listener has, bound and (unless `probe`)
 * listening. The descriptor, or -1 with errno set. */
static int tcp_socket(const struct mp_config *cfg, const struct addrinfo *ai, bool reuseport, bool probe)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit it (memcached sets it on its listeners alone too): no setsockopt
     * per connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (!probe && listen(fd, cfg->backlog) != 0)) {
        int why = errno;
        close(fd);
        errno = why;
        return -1;
    }
    return fd;
}

static void fill_listener(struct mp_listener *l, int fd, bool tls, unsigned copy, bool per_worker)
{
    *l = (struct mp_listener){.fd = fd, .tls = tls, .copy = copy, .per_worker = per_worker};
    socklen_t len = sizeof(l->addr);
    if (getsockname(fd, (struct sockaddr *)&l->addr, &len) != 0)
        l->addr.ss_family = AF_UNSPEC;
    l->wildcard =
        l->addr.ss_family == AF_UNSPEC ||
        (l->addr.ss_family == AF_INET && ((struct sockaddr_in *)&l->addr)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
        (l->addr.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&l->addr)->sin6_addr));
}

int mp_listen_tcp(const struct mp_config *cfg, int i, unsigned copies, struct mp_listener *out, int *n, int max,
                  char *err, size_t errlen)
{
    const char *host = strcmp(cfg->listen[i], "*") == 0 ? NULL : cfg->listen[i];
    int portnum = mp_listen_port(cfg, i);
    bool tls = cfg->tls.enabled && !cfg->listen_notls[i];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof(port), "%d", portnum);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", cfg->listen[i], gai_strerror(rc));
        return -1;
    }
    int bound = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (*n + (int)copies > max)
            break;
        /* The probe: a plain bind fails where anything listens already, SO_REUSEPORT or not. */
        int fd = tcp_socket(cfg, ai, false, true);
        if (fd < 0 && errno != EAFNOSUPPORT && errno != EPROTONOSUPPORT) {
            snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->listen[i], portnum, strerror(errno));
            freeaddrinfo(res);
            return -1;
        }
        if (fd < 0)
            continue; /* an address family this host lacks, as for a wildcard's IPv6 */
        close(fd);
        for (unsigned c = 0; c < copies; c++) {
            fd = tcp_socket(cfg, ai, copies > 1, false);
            if (fd < 0 && c == 0 && copies > 1 && (errno == ENOPROTOOPT || errno == EINVAL)) {
                mp_log(MP_LOG_INFO, "SO_REUSEPORT refused (%s): %s port %d has one acceptor", strerror(errno),
                       cfg->listen[i], portnum);
                copies = 1;
                fd = tcp_socket(cfg, ai, false, false);
            }
            if (fd < 0) {
                snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->listen[i], portnum, strerror(errno));
                freeaddrinfo(res);
                return -1;
            }
            fill_listener(&out[(*n)++], fd, tls, c, copies > 1);
        }
        bound++;
    }
    freeaddrinfo(res);
    if (!bound) {
        snprintf(err, errlen, "no usable address for %s", cfg->listen[i]);
        return -1;
    }
    return 0;
}

int mp_listen_unix(const struct mp_config *cfg, struct mp_listener *out, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->unix_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create unix socket: %s", strerror(errno));
        return -1;
    }
    /* A socket file left by an earlier run would make bind fail; memcached removes it too. */
    struct stat sb;
    if (lstat(cfg->unix_path, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(cfg->unix_path);
    mode_t old = umask((mode_t)(~cfg->unix_mask & 0777));
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || listen(fd, cfg->backlog) != 0) {
        snprintf(err, errlen, "cannot listen on unix socket %s: %s", cfg->unix_path, strerror(errno));
        close(fd);
        return -1;
    }
    *out = (struct mp_listener){.fd = fd, .is_unix = true};
    return 0;
}

void mp_listen_name(const struct mp_config *cfg, const struct mp_listener *l, struct mp_conn_listener *shown)
{
    shown->fd = l->fd;
    if (l->is_unix) {
        snprintf(shown->addr, sizeof(shown->addr), "unix:%s", cfg->unix_path);
        return;
    }
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (l->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(shown->addr, sizeof(shown->addr), "tcp6:[%s]:%d", host, ntohs(a->sin6_port));
        return;
    }
    if (l->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(shown->addr, sizeof(shown->addr), "tcp:%s:%d", host, port);
}

/* ---- accepting ------------------------------------------------------------------------------- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_accept(uv_poll_t *p, int status, int events);

static void watch_all(struct mp_acceptor *acc, bool on)
{
    for (int i = 0; i < acc->n; i++) {
        if (on)
            uv_poll_start(&acc->ls[i].poll, UV_READABLE, on_accept);
        else
            uv_poll_stop(&acc->ls[i].poll);
    }
}

static void on_retry(uv_timer_t *t)
{
    struct mp_acceptor *acc = t->data;
    MP_STAT_ADD(acc->st, time_in_listen_disabled_us, now_us() - acc->paused_at_us);
    MP_STAT_DEC(acc->st, accept_paused);
    watch_all(acc, true);
}

static void refuse(struct mp_acceptor *acc, int fd)
{
    /* Best effort, as memcached: one write of the error, then close. */
    ssize_t w = write(fd, TOO_MANY, sizeof(TOO_MANY) - 1);
    (void)w;
    close(fd);
    MP_STAT_INC(acc->st, rejected_connections);
    mp_log(MP_LOG_CONN, "refused a connection: %d open, limit %d", atomic_load(acc->nconns), acc->cfg->maxconns);
}

static void on_accept(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct mp_listener *l = p->data;
    struct mp_acceptor *acc = l->acc;
    if (status < 0 || acc->closed)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct mp_conn_accepted a = {.is_unix = l->is_unix, .tls = l->tls, .local = l->wildcard ? NULL : &l->addr};
        a.peerlen = l->is_unix ? 0 : sizeof(a.peer);
        int fd = accept4(l->fd, l->is_unix ? NULL : (struct sockaddr *)&a.peer, l->is_unix ? NULL : &a.peerlen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                mp_log(MP_LOG_ERROR, "accept: %s; pausing accepts for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                MP_STAT_INC(acc->st, listen_disabled_num);
                MP_STAT_INC(acc->st, accept_paused);
                acc->paused_at_us = now_us();
                watch_all(acc, false);
                uv_timer_start(&acc->retry, on_retry, ACCEPT_PAUSE_MS, 0);
            }
            return; /* EAGAIN, or an error of that one connection */
        }
        if (atomic_fetch_add(acc->nconns, 1) >= acc->cfg->maxconns) {
            atomic_fetch_sub(acc->nconns, 1);
            refuse(acc, fd);
            continue;
        }
        a.fd = fd;
        acc->deliver(acc->ctx, &a);
    }
}

void mp_acceptor_init(struct mp_acceptor *acc, const struct mp_config *cfg, _Atomic int *nconns,
                      struct mp_stats_thread *st, mp_accept_fn *deliver, void *ctx)
{
    memset(acc, 0, sizeof(*acc));
    acc->cfg = cfg;
    acc->nconns = nconns;
    acc->st = st;
    acc->deliver = deliver;
    acc->ctx = ctx;
}

void mp_acceptor_add(struct mp_acceptor *acc, const struct mp_listener *l)
{
    struct mp_listener *mine = &acc->ls[acc->n++];
    *mine = *l;
    mine->acc = acc;
}

void mp_acceptor_start(struct mp_acceptor *acc, uv_loop_t *loop)
{
    for (int i = 0; i < acc->n; i++) {
        uv_poll_init(loop, &acc->ls[i].poll, acc->ls[i].fd);
        acc->ls[i].poll.data = &acc->ls[i];
    }
    uv_timer_init(loop, &acc->retry);
    acc->retry.data = acc;
    acc->started = true;
    watch_all(acc, true);
}

void mp_acceptor_close(struct mp_acceptor *acc)
{
    if (!acc->started || acc->closed)
        return;
    acc->closed = true;
    for (int i = 0; i < acc->n; i++)
        uv_close((uv_handle_t *)&acc->ls[i].poll, NULL);
    uv_close((uv_handle_t *)&acc->retry, NULL);
}

void mp_acceptor_teardown(struct mp_acceptor *acc)
{
    for (int i = 0; i < acc->n; i++)
        close(acc->ls[i].fd);
    acc->n = 0;
}

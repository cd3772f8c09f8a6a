/*
 * libFuzzer target: byte streams through a real connection's read path into a real engine, text or
 * binary (a stream starting with 0x80 is binary, as -B auto has it).
 *
 * One engine (8 MiB) lives for the whole run, as in a server. Each input is split into chunks
 * (the first byte picks the chunk size, so commands and values arrive cut at every boundary; its
 * bit 0x40 makes the connection one of a server with -Y, whose one user is "user" with password
 * "pass", so the stream must authenticate first), sent
 * over a socketpair to a connection created with mp_conn_create, and the loop runs until the
 * connection has read everything and gone quiet; replies are read and dropped. Sanitizers catch
 * what goes wrong; the server's invariant checked here is that memory stays within the arena.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "magpie/auth.h"
#include "magpie/conn.h"
#include "magpie/log.h"

static struct mp_config cfg;
static struct mp_cache cache;
static struct mp_clock clk;
static struct mp_stats stats;
static struct mp_latency latency;
static struct mp_hotkeys hotkeys;
static struct mp_conn_env env, env_auth;
static struct mp_auth auth;
static struct mp_conn_list list;
static struct mp_conn_list *lists[1] = {&list};
static _Atomic int nconns;
static uv_loop_t loop;

static void setup(void)
{
    char err[256];
    mp_config_defaults(&cfg);
    cfg.mem_limit = 8u << 20;
    struct mp_cache_config cc = {.mem_limit = cfg.mem_limit,
                                 .item_max = cfg.item_max,
                                 .min_chunk = 32,
                                 .factor = 1.04,
                                 .stripe_bits = 6,
                                 .initial_buckets = 16};
    if (mp_cache_setup(&cache, &cc, err, sizeof(err)) != 0 || mp_stats_setup(&stats, 1, cache.slabs.nclasses) != 0)
        abort();
    mp_clock_setup_now(&clk);
    /* the observability hooks too: latency batches, hot keys, `stats hotkeys` */
    if (mp_latency_setup(&latency, 1) != 0 || mp_hotkeys_setup(&hotkeys, 1, mp_clock_now(&clk)) != 0)
        abort();
    mp_conn_list_init(&list);
    env = (struct mp_conn_env){.cache = &cache,
                               .clock = &clk,
                               .cfg = &cfg,
                               .stats = &stats,
                               .nconns = &nconns,
                               .lists = lists,
                               .nlists = 1,
                               .latency = &latency,
                               .hotkeys = &hotkeys};
    char users[] = "/tmp/fuzz_conn_users.XXXXXX";
    int fd = mkstemp(users);
    if (fd < 0 || write(fd, "user:pass\n", 10) != 10 || mp_auth_setup(&auth, users, err, sizeof(err)) != 0)
        abort();
    close(fd);
    unlink(users);
    env_auth = env;
    env_auth.auth = &auth;
    uv_loop_init(&loop);
    mp_log_set_level(MP_LOG_ERROR);
}

static void drain(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready++)
        setup();
    if (size == 0)
        return 0;
    size_t chunk = 1 + data[0] % 64 * (data[0] & 0x80 ? 64 : 1);
    const struct mp_conn_env *e = data[0] & 0x40 ? &env_auth : &env;
    data++;
    size--;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    atomic_fetch_add(&nconns, 1);
    if (mp_conn_create(&loop, e, &stats.threads[0], &list, sv[0], true, false) != 0)
        abort();
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t sent = 0;
        while (sent < n) {
            ssize_t w = write(sv[1], data + off + sent, n - sent);
            if (w > 0)
                sent += (size_t)w;
            uv_run(&loop, UV_RUN_NOWAIT);
            drain(sv[1]);
            if (w <= 0 && list.count == 0)
                break; /* the server hung up (garbage, quit) */
        }
        if (list.count == 0)
            break;
    }
    for (int i = 0; i < 4; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[1]);
    }
    close(sv[1]); /* EOF: the connection closes itself */
    while (list.count > 0)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (mp_slab_malloced(&cache.slabs) > cfg.mem_limit)
        abort();
    return 0;
}

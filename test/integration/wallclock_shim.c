/*
 * wallclock_shim: a preloaded library that steps the wall clock a server sees, for the tests of
 * time that must follow elapsed seconds (test_trust.py).
 *
 *   LD_PRELOAD=build/test/wallclock_shim.so MAGPIE_WALL_OFFSET_FILE=/tmp/offset magpie ...
 *
 * Every reading of the wall clock (time, gettimeofday, clock_gettime of CLOCK_REALTIME and its
 * coarse variant) is moved by the number of seconds written in the file, read afresh on each call,
 * so a test steps the clock by rewriting the file. CLOCK_MONOTONIC and the others pass through.
 * Built without sanitizers; the ASan test run tells ASan not to insist on coming first.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_seconds(void)
{
    const char *path = getenv("MAGPIE_WALL_OFFSET_FILE");
    if (!path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static clock_gettime_fn real;
    if (!real)
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += (time_t)offset_seconds();
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

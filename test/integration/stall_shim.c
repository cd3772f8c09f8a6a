/*
 * stall_shim: a preloaded library that stops a server in the middle of writing its snapshot, so a
 * test can kill it there (test_snapshot.py).
 *
 *   LD_PRELOAD=build/test/stall_shim.so MAGPIE_STALL_MARKER=/tmp/m MAGPIE_STALL_AFTER=65536 magpie ...
 *
 * Counts the bytes written with write() to files whose name ends in ".tmp" (the snapshot's
 * temporary file); the write that would take the count past MAGPIE_STALL_AFTER first creates the
 * file MAGPIE_STALL_MARKER and then sleeps for up to a minute before it goes on. Without
 * MAGPIE_STALL_MARKER every write passes straight through. Built without sanitizers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);

static int to_tmp_file(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 4)
        return 0;
    target[n] = '\0';
    return strcmp(target + n - 4, ".tmp") == 0;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    static write_fn real;
    static unsigned long long written;
    if (!real)
        real = (write_fn)dlsym(RTLD_NEXT, "write");
    const char *marker = getenv("MAGPIE_STALL_MARKER");
    if (marker && to_tmp_file(fd)) {
        const char *after = getenv("MAGPIE_STALL_AFTER");
        unsigned long long limit = after ? strtoull(after, NULL, 10) : 0;
        if (written + count > limit) {
            int m = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (m >= 0)
                close(m);
            struct timespec second = {1, 0};
            for (int i = 0; i < 60; i++)
                nanosleep(&second, NULL);
        }
        written += count;
    }
    return real(fd, buf, count);
}

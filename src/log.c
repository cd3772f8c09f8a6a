/* log: see include/magpie/log.h */
#include "magpie/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static _Atomic int log_level = MP_LOG_INFO;

void mp_log_set_level(int level)
{
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int mp_log_level(void)
{
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

int mp_log_enabled(enum mp_log_level level)
{
    return (int)level <= mp_log_level();
}

void mp_log(enum mp_log_level level, const char *fmt, ...)
{
    if (!mp_log_enabled(level))
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ magpie: ", &tm);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof(line) - (size_t)n - 1 ? (size_t)m : sizeof(line) - (size_t)n - 2);
    line[len++] = '\n';
    /* one fwrite per line so lines from several threads do not interleave */
    fwrite(line, 1, len, stderr);
}

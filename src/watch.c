/* watch: see include/magpie/watch.h */
#include "magpie/watch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

void mp_watch_setup(struct mp_watch *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
}

void mp_watch_teardown(struct mp_watch *w)
{
    for (int i = 0; i < MP_WATCH_MAX; i++)
        free(w->watchers[i]);
    pthread_mutex_destroy(&w->lock);
}

/* The union of the watchers' flags; the caller holds the lock. */
static void update_flags(struct mp_watch *w)
{
    unsigned f = 0, n = 0;
    for (int i = 0; i < MP_WATCH_MAX; i++) {
        if (w->watchers[i]) {
            f |= w->watchers[i]->flags;
            n++;
        }
    }
    atomic_store_explicit(&w->flags, f, memory_order_relaxed);
    atomic_store_explicit(&w->nwatchers, n, memory_order_relaxed);
}

struct mp_watcher *mp_watch_add(struct mp_watch *w, unsigned flags)
{
    struct mp_watcher *wr = NULL;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < MP_WATCH_MAX; i++) {
        if (w->watchers[i])
            continue;
        wr = malloc(sizeof(*wr));
        if (wr) {
            wr->flags = flags;
            wr->len = 0;
            wr->skipped = 0;
            w->watchers[i] = wr;
            update_flags(w);
        }
        break;
    }
    pthread_mutex_unlock(&w->lock);
    return wr;
}

void mp_watch_remove(struct mp_watch *w, struct mp_watcher **wrp)
{
    struct mp_watcher *wr = *wrp;
    *wrp = NULL;
    if (!wr)
        return;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < MP_WATCH_MAX; i++)
        if (w->watchers[i] == wr)
            w->watchers[i] = NULL;
    update_flags(w);
    pthread_mutex_unlock(&w->lock);
    free(wr);
}

size_t mp_watch_uriencode(const char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        bool plain = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' ||
                     ch == '.' || ch == '_' || ch == '~';
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return o;
}

void mp_watch_log(struct mp_watch *w, unsigned flag, const char *fmt, ...)
{
    char line[MP_WATCH_LINE_MAX];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    va_list ap;
    va_start(ap, fmt);
    char text[MP_WATCH_LINE_MAX];
    int m = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= sizeof(text))
        return;
    pthread_mutex_lock(&w->lock);
    int n = snprintf(line, sizeof(line), "ts=%lld.%d gid=%llu %s\n", (long long)tv.tv_sec, (int)tv.tv_usec,
                     (unsigned long long)++w->gid, text);
    if (n > 0 && (size_t)n < sizeof(line)) {
        for (int i = 0; i < MP_WATCH_MAX; i++) {
            struct mp_watcher *wr = w->watchers[i];
            if (!wr || !(wr->flags & flag))
                continue;
            if (wr->len + (size_t)n > sizeof(wr->buf)) {
                wr->skipped++;
                atomic_fetch_add_explicit(&w->skipped, 1, memory_order_relaxed);
                continue;
            }
            memcpy(wr->buf + wr->len, line, (size_t)n);
            wr->len += (size_t)n;
            atomic_fetch_add_explicit(&w->sent, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

size_t mp_watch_take(struct mp_watch *w, struct mp_watcher *wr, char *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    if (wr->skipped) {
        int k = snprintf(out, cap, "skipped=%llu\n", (unsigned long long)wr->skipped);
        if (k > 0 && (size_t)k < cap) {
            n = (size_t)k;
            wr->skipped = 0;
        }
    }
    size_t take = wr->len < cap - n ? wr->len : cap - n;
    /* whole lines only */
    while (take > 0 && take < wr->len && wr->buf[take - 1] != '\n')
        take--;
    memcpy(out + n, wr->buf, take);
    memmove(wr->buf, wr->buf + take, wr->len - take);
    wr->len -= take;
    pthread_mutex_unlock(&w->lock);
    return n + take;
}

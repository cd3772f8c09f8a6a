/* auth: see include/magpie/auth.h */
#include "magpie/auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

struct mp_auth_entry {
    unsigned char user[SHA256_DIGEST_LENGTH];
    unsigned char pass[SHA256_DIGEST_LENGTH];
};

/* One line, without its end: a blank one is skipped, one without ':' is malformed. */
static int parse_line(char *line, size_t len, struct mp_auth_entry **entries, size_t *n, size_t *cap)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len == 0)
        return 0;
    char *colon = memchr(line, ':', len);
    if (!colon)
        return -1;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct mp_auth_entry *ne = realloc(*entries, ncap * sizeof(*ne));
        if (!ne)
            return -2;
        *entries = ne;
        *cap = ncap;
    }
    struct mp_auth_entry *e = &(*entries)[(*n)++];
    SHA256((const unsigned char *)line, (size_t)(colon - line), e->user);
    SHA256((const unsigned char *)colon + 1, len - (size_t)(colon + 1 - line), e->pass);
    return 0;
}

/* The file's entries, or -1 with memcached's message. */
static int load(const char *path, struct mp_auth_entry **out, size_t *nout, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "Could not open authfile [%s] for reading, error %s", path, strerror(errno));
        return -1;
    }
    struct mp_auth_entry *entries = NULL;
    size_t n = 0, cap = 0, linecap = 0;
    char *line = NULL;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &linecap, f)) >= 0)
        rc = parse_line(line, (size_t)len, &entries, &n, &cap);
    if (line)
        OPENSSL_cleanse(line, linecap);
    free(line);
    fclose(f);
    if (rc != 0) {
        free(entries);
        if (rc == -2)
            snprintf(err, errlen, "Out of memory reading password file: %s", path);
        else
            snprintf(err, errlen, "Authfile [%s] has a malformed entry. Should be 'user:password'", path);
        return -1;
    }
    *out = entries;
    *nout = n;
    return 0;
}

int mp_auth_setup(struct mp_auth *a, const char *path, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->path = path;
    if (load(path, &a->entries, &a->nentries, err, errlen) != 0)
        return -1;
    pthread_mutex_init(&a->lock, NULL);
    a->ready = true;
    return 0;
}

void mp_auth_teardown(struct mp_auth *a)
{
    if (!a->ready)
        return;
    free(a->entries);
    pthread_mutex_destroy(&a->lock);
    a->ready = false;
}

int mp_auth_reload(struct mp_auth *a, char *err, size_t errlen)
{
    struct mp_auth_entry *entries, *old;
    size_t n;
    if (load(a->path, &entries, &n, err, errlen) != 0)
        return -1;
    pthread_mutex_lock(&a->lock);
    old = a->entries;
    a->entries = entries;
    a->nentries = n;
    pthread_mutex_unlock(&a->lock);
    free(old);
    return 0;
}

bool mp_auth_check(struct mp_auth *a, const char *user, size_t ulen, const char *pass, size_t plen)
{
    unsigned char u[SHA256_DIGEST_LENGTH], p[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)user, ulen, u);
    SHA256((const unsigned char *)pass, plen, p);
    unsigned match = 0;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->nentries; i++) {
        unsigned differ = (unsigned)CRYPTO_memcmp(u, a->entries[i].user, sizeof(u)) |
                          (unsigned)CRYPTO_memcmp(p, a->entries[i].pass, sizeof(p));
        match |= differ == 0;
    }
    pthread_mutex_unlock(&a->lock);
    OPENSSL_cleanse(p, sizeof(p));
    return match != 0;
}

/*
 * auth: ASCII authentication (-Y FILE), memcached's: the file holds user:password lines, and a
 * text connection must send `set <key> <flags> <exptime> <n>` with "user password" as its n-byte
 * value before anything else is answered (the connection's side is in conn.c and text.c).
 *
 * Owns the table of users read from the file; SIGHUP reads the file again (a file that cannot be
 * read, or has a line without ':', leaves the table as it was, as memcached). Unlike memcached,
 * which keeps the first 8 lines, every line counts; blank lines are skipped.
 *
 * The table holds SHA-256 digests of each user and password, not the passwords, and a check
 * compares the digests of what the client sent with every entry in constant time (CRYPTO_memcmp,
 * no early exit), so neither the time taken nor the position of a match tells an attacker how
 * much of a name or password was right, nor how long it is.
 *
 * Locks: `lock` guards the table; a check holds it for the comparisons, a reload to swap the table
 * (the file is read before, without it). It is never held with another lock.
 */
#ifndef MAGPIE_AUTH_H
#define MAGPIE_AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct mp_auth_entry;

struct mp_auth {
    pthread_mutex_t lock;
    struct mp_auth_entry *entries; /* guarded by lock */
    size_t nentries;
    const char *path;
    bool ready;
};

/* Read the file. 0, or -1 with memcached's message in err. */
int mp_auth_setup(struct mp_auth *a, const char *path, char *err, size_t errlen);
void mp_auth_teardown(struct mp_auth *a);
/* Read the file again (SIGHUP). 0, or -1 with a message in err and the table unchanged. */
int mp_auth_reload(struct mp_auth *a, char *err, size_t errlen);
/* Is user:pass a line of the file? Any thread. */
bool mp_auth_check(struct mp_auth *a, const char *user, size_t ulen, const char *pass, size_t plen);

#endif

/*
 * grace: grace periods for memory that lock-free readers may still be looking at.
 *
 * An optimistic get (table.h) reads items without any lock and checks afterwards that what it
 * read was whole. It may meanwhile look at memory that is being freed and reused: harmless for
 * its reads, which it throws away when the check fails, but it also records a hit after the
 * check, in an item it holds no reference to (item.h explains why that write is safe within a
 * size class). Memory that changes role entirely, a slab page moved to another class, must not
 * be reused while such a reader may still act on what it saw there. This module tells when every
 * read that had begun at a given moment has ended.
 *
 * Readers: each thread that reads optimistically has a slot, a counter it alone writes, odd
 * while it is inside a read (mp_grace_enter .. mp_grace_leave). Slots are made on a thread's first
 * read and kept in the registry until teardown, so a thread that ends leaves an even slot behind.
 *
 * Writers: mp_grace_wait() first makes every reader's slot store and the writer's own earlier
 * stores (the unlinks) visible to each other, then waits until every slot that was odd has moved
 * on. A read that began before the wait's barrier is waited for; one that begins after it sees the
 * writer's unlinks and cannot reach the memory. The barrier is the Dekker pattern, and its reader
 * half is the expensive one (a full fence on every get), so the writer, which is rare (a page
 * move), pays for both with the kernel's membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): it runs a
 * full barrier on every CPU running one of our threads, and readers need only a compiler barrier.
 * Where the kernel or a seccomp profile refuses membarrier, readers fence themselves.
 *
 * Locks: `lock` guards the slot list; mp_grace_wait holds it while it waits, and a reader takes it
 * only to register its slot, before its first read. A reader never waits for anything inside a
 * read, so a writer may wait while it holds other locks (a slab class lock) without deadlock.
 */
#ifndef MAGPIE_GRACE_H
#define MAGPIE_GRACE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mp_grace_slot {
    _Atomic uint64_t seq; /* odd while its thread reads */
    struct mp_grace_slot *next;
} __attribute__((aligned(64)));

struct mp_grace {
    uint64_t id;    /* tells this registry's thread slots from those of one set up before */
    bool expedited; /* membarrier works: readers need no fence of their own */
    pthread_mutex_t lock;
    struct mp_grace_slot *slots;
    _Atomic uint64_t waits; /* grace periods that found a reader to wait for (counted as they begin) */
};

void mp_grace_setup(struct mp_grace *g);
void mp_grace_teardown(struct mp_grace *g);

/* Begin a read; NULL when no slot could be made for this thread (out of memory), and then the
 * caller must not read optimistically. */
struct mp_grace_slot *mp_grace_enter(struct mp_grace *g);
void mp_grace_leave(struct mp_grace_slot *slot);

/* Return once every read that had begun when this was called has ended (see above). */
void mp_grace_wait(struct mp_grace *g);

#endif

/* grace: see include/magpie/grace.h */
#define _GNU_SOURCE /* syscall */
#include "magpie/grace.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "magpie/debug.h"

static int membarrier(int cmd)
{
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

void mp_grace_setup(struct mp_grace *g)
{
    static _Atomic uint64_t registries;
    memset(g, 0, sizeof(*g));
    g->id = atomic_fetch_add_explicit(&registries, 1, memory_order_relaxed) + 1;
    pthread_mutex_init(&g->lock, NULL);
    /* Registering twice is harmless; a refusal leaves readers fencing themselves. */
    g->expedited = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

void mp_grace_teardown(struct mp_grace *g)
{
    while (g->slots) {
        struct mp_grace_slot *s = g->slots;
        g->slots = s->next;
        free(s);
    }
    pthread_mutex_destroy(&g->lock);
    memset(g, 0, sizeof(*g));
}

/* The calling thread's slot in the registry it last read under. */
static __thread struct {
    uint64_t id;
    struct mp_grace_slot *slot;
} this_thread;

static struct mp_grace_slot *slot_of(struct mp_grace *g)
{
    if (this_thread.id == g->id)
        return this_thread.slot;
    struct mp_grace_slot *s = aligned_alloc(64, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->seq, 0);
    pthread_mutex_lock(&g->lock);
    s->next = g->slots;
    g->slots = s;
    pthread_mutex_unlock(&g->lock);
    this_thread.id = g->id;
    this_thread.slot = s;
    return s;
}

struct mp_grace_slot *mp_grace_enter(struct mp_grace *g)
{
    struct mp_grace_slot *s = slot_of(g);
    if (!s)
        return NULL;
    atomic_store_explicit(&s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 1, memory_order_relaxed);
    /* The odd count before any read of the table: the writer's membarrier supplies the hardware
     * half of the fence, or the reader does. */
    if (g->expedited)
        atomic_signal_fence(memory_order_seq_cst);
    else
        mp_fence(memory_order_seq_cst);
    return s;
}

void mp_grace_leave(struct mp_grace_slot *s)
{
    /* Release: every access of the read is done before the count says it is over. */
    atomic_store_explicit(&s->seq, atomic_load_explicit(&s->seq, memory_order_relaxed) + 1, memory_order_release);
}

void mp_grace_wait(struct mp_grace *g)
{
    if (!g->expedited || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
        mp_fence(memory_order_seq_cst);
    bool counted = false;
    pthread_mutex_lock(&g->lock);
    for (struct mp_grace_slot *s = g->slots; s; s = s->next) {
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (!(seq & 1))
            continue;
        if (!counted) /* before waiting, so a test can see the wait begin */
            atomic_fetch_add_explicit(&g->waits, 1, memory_order_relaxed);
        counted = true;
        /* A read is short and never waits on anything; a reader that was preempted inside one
         * gets its CPU back sooner if we yield. */
        for (unsigned spins = 0; atomic_load_explicit(&s->seq, memory_order_acquire) == seq; spins++)
            if (spins >= 64)
                sched_yield();
    }
    pthread_mutex_unlock(&g->lock);
}

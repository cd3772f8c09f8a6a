/*
 * debug: what differs between the plain build and the checking builds, in one place.
 *
 * - MP_ASSERT(cond): checked in the sanitizer builds (make asan, make tsan define MP_DEBUG), gone
 *   from the plain one. For rules about locks and ownership that no test could see broken from
 *   outside: who holds which lock when a field changes.
 * - Fences: ThreadSanitizer does not model standalone fences, and GCC refuses to compile them
 *   under it. mp_fence() is the fence the lock-free code needs; under ThreadSanitizer it is a
 *   read-modify-write of a private atomic, which is at least as strong on every target.
 * - Optimistic reads (table.h) read memory that a lock holder may be writing and then check, after
 *   the fact, that nothing changed: a data race by design, which ThreadSanitizer would report on
 *   every such read. MP_TSAN_IGNORE_READS_BEGIN/END tell it to ignore the accesses in between,
 *   so the read path runs, and is checked for everything else, in the TSan build too.
 *
 * MP_TSAN is 1 under ThreadSanitizer with either compiler (GCC defines __SANITIZE_THREAD__, clang
 * answers __has_feature(thread_sanitizer)).
 */
#ifndef MAGPIE_DEBUG_H
#define MAGPIE_DEBUG_H

#include <stdatomic.h>

#if defined(__SANITIZE_THREAD__)
#define MP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP_TSAN 1
#endif
#endif
#ifndef MP_TSAN
#define MP_TSAN 0
#endif

#ifdef MP_DEBUG
#include <assert.h>
#define MP_ASSERT(cond) assert(cond)
#else
#define MP_ASSERT(cond) ((void)0)
#endif

static inline void mp_fence(memory_order mo)
{
#if MP_TSAN
    static _Thread_local _Atomic int private_word;
    (void)mo;
    atomic_fetch_add_explicit(&private_word, 0, memory_order_seq_cst);
#else
    atomic_thread_fence(mo);
#endif
}

#if MP_TSAN
/* From the ThreadSanitizer runtime (its dynamic annotations). */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define MP_TSAN_IGNORE_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define MP_TSAN_IGNORE_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define MP_TSAN_IGNORE_READS_BEGIN() ((void)0)
#define MP_TSAN_IGNORE_READS_END() ((void)0)
#endif

#endif

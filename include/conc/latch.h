/* conc/latch.h - a count-down latch that is also a wait group - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * C++'s std::latch and Go's sync.WaitGroup in C: a count that workers bring down and waiters
 * wait to see at zero. add raises it (a WaitGroup's Add), done lowers it by one (count_down
 * by n), and it may be reused: raise it again after it reached zero.
 *
 * CONTENTS  quick start, API, errors, ordering contract, thread safety, configuration,
 *           caveats, design
 *
 * QUICK START
 *     static conc_latch_t jobs = CONC_LATCH_INIT(0);
 *     if (conc_latch_add(&jobs, 3) != 0)             // before starting the three workers
 *         return;
 *     // each worker, when finished:
 *     conc_latch_done(&jobs);
 *     // the coordinator:
 *     if (conc_latch_wait_until(&jobs, conc_deadline_in(CONC_SEC)) == ETIMEDOUT)
 *         puts("still running after 1 s");
 *
 * API
 *   init      conc_latch_init(l, count, flags)   flags: 0 or CONC_SHARED (others abort)
 *             = CONC_LATCH_INIT(count)            private
 *   count     conc_latch_add(l, n)                0, EOVERFLOW (past CONC_LATCH_MAX), EINVAL (n 0)
 *             conc_latch_done(l)                  0, EINVAL (the count is already 0)
 *             conc_latch_count_down(l, n)         0, EINVAL (n 0 or more than the count)
 *   wait      conc_latch_wait(l)                  blocks until the count is 0
 *             conc_latch_wait_until(l, dl)        0, ETIMEDOUT
 *   query     conc_latch_count(l)                 a snapshot
 *
 * ERRORS
 *   A count that would pass CONC_LATCH_MAX (EOVERFLOW) or go below zero (EINVAL: Go panics
 *   with "negative WaitGroup counter") is refused and the count left as it was.
 *   wait_until: ETIMEDOUT once the deadline has passed (never earlier) with the count still
 *   above zero; a past deadline looks once.
 *
 * ORDERING CONTRACT
 *   Everything a thread wrote before its done/count_down is visible to a waiter whose wait
 *   returns 0 because of the zero that done contributed to (or any later one).
 *   A wait returns 0 if the count was zero at any moment after the wait began, even if an
 *   add raised it again before the waiter ran (as conc_event's set-then-clear).
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init. As with a WaitGroup, an add that raises
 *   the count from zero should come before the waits it is meant to hold (otherwise a wait
 *   may return before the add). No destroy.
 *
 * CAVEATS
 *   - 8 bytes (one 64-bit word). CONC_SHARED latches in MAP_SHARED memory work across processes.
 *   - A waiter descheduled between its first look and its sleep across exactly 2^30 zeros
 *     (with adds between) would miss them (the generation wraps).
 *   - done is async-signal-safe (a CAS and maybe a futex wake).
 *
 * DESIGN
 *   One 64-bit word: the high half is the count, the low half {WAITERS bit 0, SHARED bit 1,
 *   generation bits 2..31} is the futex. Every change is one CAS; the one that brings the
 *   count to zero also advances the generation and clears WAITERS, and wakes everyone if
 *   WAITERS was up. A waiter remembers the generation it started in and returns when the
 *   count is 0 or the generation moved. tests/models/latch.pml checks it.
 */
#ifndef CONC_LATCH_H
#define CONC_LATCH_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_latch {
    uint64_t word __attribute__((aligned(8))); /* see DESIGN; all access atomic */
} conc_latch_t;

#define CONC_LATCH_MAX 0xffffffffu /* the count is the high half */

/* The static initializer. count must be <= CONC_LATCH_MAX: with a constant count past it (-1,
 * say) the line does not compile; with a run-time one a debug build aborts, naming the macro.
 * It used to keep the count's low 32 bits: -1 waited for 4,294,967,295 dones, 2^32 for none. */
// clang-format off
#define CONC_LATCH_INIT(count) \
    {((uint64_t)(count) << 32) + CONC__LATCH_INIT_CHECK(count) + \
     CONC__INIT_REFUSE(CONC__LATCH_INIT_BAD(count))}
// clang-format on
#define CONC__LATCH_INIT_BAD(count) (((uint64_t)(count) >> 32) != 0) /* > CONC_LATCH_MAX */
CONC_STATIC_ASSERT(CONC_LATCH_MAX == ((uint64_t)1 << 32) - 1, "the shift above is the bound");
#if CONC_DEBUG
/* The call sits in the arm a valid constant never evaluates: the initializer stays constant. */
#define CONC__LATCH_INIT_CHECK(count)                                                              \
    (CONC__LATCH_INIT_BAD(count) ? conc__latch_init_invalid_slow() : (uint64_t)0)
#else
#define CONC__LATCH_INIT_CHECK(count) ((uint64_t)0)
#endif
CONC_COLD uint64_t conc__latch_init_invalid_slow(void) {
    CONC_ABORT("CONC_LATCH_INIT: count > CONC_LATCH_MAX");
    return 0;
}

#define CONC__LATCH_WAITERS ((uint64_t)0x1)
#define CONC__LATCH_SHARED ((uint64_t)0x2)
#define CONC__LATCH_GEN_ONE ((uint64_t)0x4)
#define CONC__LATCH_GEN_MASK ((uint64_t)0xfffffffc)
#define CONC__LATCH_COUNT_SHIFT 32

/* Waiters sleep on the low half {generation, SHARED, WAITERS}: it changes only at a zero. */
CONC_INLINE uint32_t *conc__latch_futex(conc_latch_t *l) {
    return conc_futex_half_low(&l->word);
}
CONC_INLINE uint64_t conc__latch_count(uint64_t w) {
    return w >> CONC__LATCH_COUNT_SHIFT;
}
CONC_INLINE int conc__latch_futex_flags(uint64_t w) {
    return conc_futex_flags((uint32_t)w, (uint32_t)CONC__LATCH_SHARED);
}

/* Cannot fail: any unsigned count fits (CONC_LATCH_MAX is UINT32_MAX). */
static inline void conc_latch_init(conc_latch_t *l, unsigned count, int flags) {
    conc__base_check_init_flags(flags, "conc_latch_init");
    conc_store(&l->word,
               ((uint64_t)count << CONC__LATCH_COUNT_SHIFT) |
                   ((flags & CONC_SHARED) ? CONC__LATCH_SHARED : (uint64_t)0),
               CONC_RELAXED);
}

/* -------------------------------------------------------------------------------------------
 *   counter (the last done)                    waiter
 *   ---------------------------------------    --------------------------------------------
 *                                              load: count 1, generation g
 *                                              CAS: raise WAITERS
 *   CAS: count 1 -> 0, generation g+1,
 *        WAITERS off   [latch.R1]
 *   old word had WAITERS: wake(all)
 *                                              futex_wait(low, {g, WAITERS})
 *                                                -> EAGAIN: the generation moved
 *
 * Either the CAS comes first and futex_wait finds the low half changed, or the waiter is
 * queued first and the wake, decided from the very bit it raised, finds it. The low half
 * changes only at a zero (or when a waiter raises WAITERS), so a waiter is never woken by
 * adds and dones that do not reach zero.
 * ------------------------------------------------------------------------------------------- */

CONC_COLD void conc__latch_wake_slow(conc_latch_t *l, uint64_t w) {
    CONC_CHAOS_POINT();
    conc_futex_wake(conc__latch_futex(l), INT_MAX, conc__latch_futex_flags(w));
}

/* [latch.A1] acquire (every load and CAS failure in base.h's wait): pairs with the [latch.R1]
 * of the zero. The timeline above is conc_futex_wait_zero's. */
CONC_COLD int conc__latch_wait_slow(conc_latch_t *l, uint64_t w, int64_t deadline) {
    return conc_futex_wait_zero(&l->word, w, CONC__LATCH_WAITERS, CONC__LATCH_GEN_MASK,
                                conc__latch_futex_flags(w), deadline);
}

/* -------------------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------------------- */

CONC_NODISCARD static inline int conc_latch_add(conc_latch_t *l, unsigned n) {
    if (n == 0)
        return EINVAL;
    uint64_t w = conc_load(&l->word, CONC_RELAXED);
    do {
        if (conc__latch_count(w) + n > CONC_LATCH_MAX)
            return EOVERFLOW;
        /* Relaxed: an add publishes nothing (the count going up releases no waiter). */
    } while (!conc_cas_weak(&l->word, &w, w + ((uint64_t)n << CONC__LATCH_COUNT_SHIFT),
                            CONC_RELAXED, CONC_RELAXED));
    return 0;
}

/* One CAS. [latch.R1] release: this thread's writes go to the waiters the zero releases (the word's
 * RMWs form one release sequence, so every earlier done's writes go too). */
static inline int conc_latch_count_down(conc_latch_t *l, unsigned n) {
    uint64_t w = conc_load(&l->word, CONC_RELAXED), next;
    do {
        uint64_t count = conc__latch_count(w);
        if (n == 0 || n > count)
            return EINVAL;
        next = w - ((uint64_t)n << CONC__LATCH_COUNT_SHIFT);
        if (count == n) /* the zero: a new generation, nobody registered in it */
            next = (next & ~(CONC__LATCH_GEN_MASK | CONC__LATCH_WAITERS)) |
                   ((w + CONC__LATCH_GEN_ONE) & CONC__LATCH_GEN_MASK);
    } while (!conc_cas_weak(&l->word, &w, next, CONC_RELEASE, CONC_RELAXED));
    if (CONC_UNLIKELY(conc__latch_count(next) == 0 && (w & CONC__LATCH_WAITERS)))
        conc__latch_wake_slow(l, w);
    return 0;
}

static inline int conc_latch_done(conc_latch_t *l) {
    return conc_latch_count_down(l, 1);
}

static inline void conc_latch_wait(conc_latch_t *l) {
    uint64_t w = conc_load(&l->word, CONC_ACQUIRE); /* [latch.A1] */
    if (CONC_UNLIKELY(conc__latch_count(w) != 0))
        (void)conc__latch_wait_slow(l, w, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_latch_wait_until(conc_latch_t *l, int64_t deadline) {
    uint64_t w = conc_load(&l->word, CONC_ACQUIRE); /* [latch.A1] */
    if (CONC_LIKELY(conc__latch_count(w) == 0))
        return 0;
    return conc__latch_wait_slow(l, w, deadline);
}

/* Relaxed: a snapshot, ordered with nothing. */
static inline unsigned conc_latch_count(const conc_latch_t *l) {
    return (unsigned)conc__latch_count(conc_load(&l->word, CONC_RELAXED));
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_LATCH_H */

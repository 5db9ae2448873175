/* conc/sem.h - a counting semaphore in one 64-bit word, bounded or not - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Semaphore and BoundedSemaphore in C: a count of tokens; acquire takes
 * one (waiting while there are none), release gives tokens back.
 *
 * QUICK START (examples/04_semaphore_limit.c)
 *     static conc_sem_t slots = CONC_SEM_INIT(3);   // at most three inside at once
 *     conc_sem_acquire(&slots);
 *     talk_to_the_server();                          // up to three threads here
 *     conc_sem_release(&slots, 1);
 *     conc_sem_t bounded;                            // BoundedSemaphore(3)
 *     conc_sem_init(&bounded, 3, 3, 0);              // releasing a 4th token: EOVERFLOW
 *
 * API
 *   init      conc_sem_init(s, value, max, flags)  0, EINVAL; max 0: unbounded;
 *                                                 flags: 0 or CONC_SHARED
 *             = CONC_SEM_INIT(value)              unbounded, private
 *             = CONC_SEM_INIT_BOUNDED(value, max) bounded, private
 *   acquire   conc_sem_acquire(s)                 blocks until it takes a token
 *             conc_sem_try_acquire(s)             0, EAGAIN; never blocks
 *             conc_sem_acquire_until(s, dl)       0, ETIMEDOUT; dl is an absolute deadline
 *   release   conc_sem_release(s, n)              0, EOVERFLOW, EINVAL
 *   query     conc_sem_value(s)                   tokens now: a snapshot, stale at once
 *
 * ERRORS
 *   init: EINVAL if value > max (max != 0), or value or max > CONC_SEM_VALUE_MAX; the
 *   semaphore is left untouched. try_acquire: EAGAIN when no token is there (not EBUSY: a
 *   semaphore is empty, not held). acquire_until: ETIMEDOUT once the deadline has passed,
 *   never earlier; a past deadline tries once. A waiter that finds a token at its deadline
 *   takes it and returns 0. release: EOVERFLOW if n tokens would pass max (or
 *   CONC_SEM_VALUE_MAX when unbounded), and then nothing is released (Python's BoundedSemaphore
 *   raises ValueError); EINVAL for n == 0 (Python: ValueError).
 *
 * ORDERING CONTRACT
 *   Everything a thread wrote before conc_sem_release is visible to the thread whose acquire
 *   (or successful try/until) takes a token that release added, and to every later taker.
 *   A semaphore is not a lock: nothing orders two threads that are inside at the same time.
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init. Any thread may release (no owner), and
 *   the semaphore may be freed as soon as the last call on it has returned: release touches
 *   the semaphore's memory in one atomic operation and nothing after it (the wake syscall only
 *   names the address). No destroy is needed.
 *
 * CONFIGURATION
 *   CONC_SEM_SPIN  spin iterations (a relaxed load and a pause each, ~20 ns) before a waiter
 *                  sleeps (default 256); 0 disables spinning. Skipped on one CPU and while
 *                  others already sleep.
 *
 * CAVEATS
 *   - Values are limited to CONC_SEM_VALUE_MAX (16,777,215; sem_t allows 2^31-1): the price of
 *     fitting value, max, sleeper count and flag in one 8-byte word. See DESIGN.
 *   - More than 32,767 threads asleep on one semaphore: the extra ones cannot be counted, so
 *     they poll every millisecond instead of sleeping until woken. Correct, just slower.
 *   - CONC_SHARED semaphores in MAP_SHARED memory work across processes (they store no
 *     pointers and use non-private futexes). A process that dies holding a token keeps it.
 *   - fork(): a private semaphore is copied with its value and its sleeper count, but the
 *     parent's sleepers do not exist in the child: re-init it there if anyone was waiting (the
 *     stale count only costs spurious wake syscalls, and stops the child's waiters spinning).
 *   - conc_sem_release is async-signal-safe (one CAS and maybe a futex wake); acquire is not
 *     meant for signal handlers.
 *
 * DESIGN
 *   One 64-bit word: bits 0..23 value, bit 24 SHARED, bits 25..48 max (0: unbounded), bits
 *   49..63 the number of registered sleepers. A release is one CAS: it checks the bound, adds
 *   the tokens and, in the same RMW, reads how many sleepers to wake; it never reads the
 *   semaphore again (glibc's sem_post has the same shape, for the same destroy-after-post
 *   reason). The futex is the low 32-bit half, which holds the value and constant bits only,
 *   so a sleeper's futex_wait is disturbed only by a change of value. Why not glibc's
 *   {value 32, sleepers 32}: it leaves no room for max and the flag within 8 bytes. Why not a
 *   32-bit {value, sleepers} word beside a 32-bit max: either field would get 12-20 bits; here
 *   value and max get 24, sleepers 15.
 *   A waiter spins briefly (CONC_SEM_SPIN), then registers (sleepers + 1) with a CAS that fails
 *   if a token arrived, then sleeps while the value is 0. It leaves by taking a token and
 *   deregistering in one CAS, or by deregistering alone at its deadline. A spin model of the
 *   protocol is tests/models/sem.pml.
 */
#ifndef CONC_SEM_H
#define CONC_SEM_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_sem {
    uint64_t word __attribute__((aligned(8))); /* see DESIGN; all access atomic */
} conc_sem_t;

#define CONC_SEM_VALUE_MAX 0xffffffu /* 16,777,215 */

#define CONC__SEM_VALUE_MASK ((uint64_t)0xffffff)
#define CONC__SEM_SHARED ((uint64_t)1 << 24)
#define CONC__SEM_MAX_SHIFT 25
#define CONC__SEM_MAX_MASK ((uint64_t)0xffffff << CONC__SEM_MAX_SHIFT)
#define CONC__SEM_SLEEPER_SHIFT 49
#define CONC__SEM_SLEEPER ((uint64_t)1 << CONC__SEM_SLEEPER_SHIFT)
#define CONC__SEM_SLEEPERS_FULL 0x7fffu /* the sleeper field is 15 bits */

/* Static initializers. value and max must be <= CONC_SEM_VALUE_MAX, and value <= max. */
// clang-format off
#define CONC_SEM_INIT(value) {(uint64_t)(value)}
#define CONC_SEM_INIT_BOUNDED(value, max)                                                         \
    {(uint64_t)(value) | ((uint64_t)(max) << CONC__SEM_MAX_SHIFT)}
// clang-format on

#ifndef CONC_SEM_SPIN
#define CONC_SEM_SPIN 256
#endif

CONC_INLINE uint32_t conc__sem_value(uint64_t w) {
    return (uint32_t)(w & CONC__SEM_VALUE_MASK);
}
CONC_INLINE uint32_t conc__sem_sleepers(uint64_t w) {
    return (uint32_t)(w >> CONC__SEM_SLEEPER_SHIFT);
}
/* The most tokens the semaphore may hold. */
CONC_INLINE uint32_t conc__sem_limit(uint64_t w) {
    uint32_t max = (uint32_t)((w & CONC__SEM_MAX_MASK) >> CONC__SEM_MAX_SHIFT);
    return max ? max : CONC_SEM_VALUE_MAX;
}
CONC_INLINE int conc__sem_futex_flags(uint64_t w) {
    return (w & CONC__SEM_SHARED) ? CONC_SHARED : 0;
}
/* The futex is the 32-bit half of the word that holds the value (the low half). */
CONC_INLINE uint32_t *conc__sem_futex(conc_sem_t *s) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)(void *)&s->word + 1;
#else
    return (uint32_t *)(void *)&s->word;
#endif
}

CONC_NODISCARD static inline int conc_sem_init(conc_sem_t *s, unsigned value, unsigned max,
                                               int flags) {
    if (value > CONC_SEM_VALUE_MAX || max > CONC_SEM_VALUE_MAX || (max != 0 && value > max))
        return EINVAL;
    uint64_t w = (uint64_t)value | ((uint64_t)max << CONC__SEM_MAX_SHIFT);
    if (flags & CONC_SHARED)
        w |= CONC__SEM_SHARED;
    conc_store(&s->word, w, CONC_RELAXED);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * The sleep/wake protocol. A sleeper registers with a CAS that succeeds only while the value
 * is 0, then sleeps with futex_wait(low half, value 0): the kernel re-checks the half and
 * queues the sleeper atomically with respect to wake. So:
 *
 *   releaser                                   sleeper
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS word: {0, k} -> {0, k+1}    [registers]
 *   CAS word: {0, k+1} -> {n, k+1}  [R1]
 *   (the same CAS read k+1 sleepers:)
 *   wake(half, min(n, k+1))
 *                                              futex_wait(half, value 0)
 *                                                -> EAGAIN: the value is n now
 *
 *   Either the release comes first and the sleeper's futex_wait finds the value changed, or
 *   the sleeper is queued first and the wake finds it. Both CASes act on one word, so the
 *   release reads every registration made before it; a registration after it fails its CAS
 *   (the value is no longer 0) and takes the token instead. Each wake dequeues a different
 *   sleeper, and a woken sleeper always re-reads the value before anything else: if a barger
 *   took the token it sleeps again (the token was not lost, only taken), and a sleeper at its
 *   deadline still takes a token it finds. So no token sits in the semaphore while a
 *   registered sleeper sleeps with no wake on its way.
 * ------------------------------------------------------------------------------------------- */

CONC_COLD int conc__sem_acquire_slow(conc_sem_t *s, int64_t deadline) {
    uint32_t *futex = conc__sem_futex(s);
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    int flags = conc__sem_futex_flags(w);

    /* Spin while nobody sleeps (sleepers have first claim on the next token) and another CPU
     * can release meanwhile. A few microseconds: on a VM, waking a sleeper on another CPU
     * costs 13-150 us, so a ping-pong partner caught while spinning is the big win. */
    if (CONC_SEM_SPIN > 0 && conc_cpu_count() > 1 &&
        (deadline == CONC_FOREVER || deadline > conc_now())) {
        for (int i = 1; i <= CONC_SEM_SPIN && conc__sem_sleepers(w) == 0; i++) {
            if (conc__sem_value(w) > 0) {
                /* [A1] acquire: pairs with the release [R1] that added the token. */
                if (conc_cas(&s->word, &w, w - 1, CONC_ACQUIRE, CONC_RELAXED))
                    return 0;
                continue;
            }
            if (i % 64 == 0)
                sched_yield(); /* the releaser may be runnable on this very CPU: let it run */
            else
                conc_cpu_relax();
            w = conc_load(&s->word, CONC_RELAXED);
        }
    }

    /* Take a token if there is one, else register as a sleeper: one CAS decides which. */
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__sem_value(w) > 0) {
            if (conc_cas(&s->word, &w, w - 1, CONC_ACQUIRE, CONC_RELAXED)) /* [A1] */
                return 0;
            continue;
        }
        if (deadline != CONC_FOREVER && conc_now() >= deadline)
            return ETIMEDOUT; /* a past deadline: we tried once */
        if (CONC_UNLIKELY(conc__sem_sleepers(w) == CONC__SEM_SLEEPERS_FULL)) {
            /* No room to count us: poll. Every release changes the half we wait on, so a
             * release before we queue makes futex_wait return at once; one after is seen
             * within a millisecond at worst. */
            int64_t poll = conc_deadline_in(CONC_MS);
            (void)conc_futex_wait(futex, (uint32_t)w, poll < deadline ? poll : deadline, flags);
            w = conc_load(&s->word, CONC_RELAXED);
            continue;
        }
        /* Relaxed: registering publishes nothing; the kernel's re-check in futex_wait is what
         * makes the sleep safe (timeline above). */
        if (conc_cas(&s->word, &w, w + CONC__SEM_SLEEPER, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    w += CONC__SEM_SLEEPER;

    int r = 0;
    for (;;) {
        if (conc__sem_value(w) > 0) {
            /* [A2] acquire: pairs with [R1]. Takes the token and deregisters at once, so the
             * count never includes a thread that is no longer waiting. */
            if (conc_cas(&s->word, &w, w - 1 - CONC__SEM_SLEEPER, CONC_ACQUIRE, CONC_RELAXED))
                return 0;
            continue;
        }
        if (r == ETIMEDOUT) {
            if (conc_cas(&s->word, &w, w - CONC__SEM_SLEEPER, CONC_RELAXED, CONC_RELAXED))
                return ETIMEDOUT;
            continue; /* the word changed: maybe a token came; look again */
        }
        CONC_CHAOS_POINT();
        /* The low half of w: value 0 and constant bits. EINTR and spurious wakeups loop
         * with the same absolute deadline. */
        r = conc_futex_wait(futex, (uint32_t)w, deadline, flags);
        w = conc_load(&s->word, CONC_RELAXED);
    }
}

CONC_COLD int conc__sem_overflow(void) {
    return EOVERFLOW;
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* A relaxed load and one CAS value -> value - 1. [A1] acquire on success: pairs with the
 * [R1] that added the token. Relaxed on failure: the slow path reads again. */
CONC_INLINE bool conc__sem_fast(conc_sem_t *s) {
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    return conc__sem_value(w) > 0 && conc_cas(&s->word, &w, w - 1, CONC_ACQUIRE, CONC_RELAXED);
}

static inline void conc_sem_acquire(conc_sem_t *s) {
    if (CONC_UNLIKELY(!conc__sem_fast(s)))
        (void)conc__sem_acquire_slow(s, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_sem_try_acquire(conc_sem_t *s) {
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    while (conc__sem_value(w) > 0)
        if (conc_cas(&s->word, &w, w - 1, CONC_ACQUIRE, CONC_RELAXED)) /* [A1] */
            return 0;
    return EAGAIN;
}

CONC_NODISCARD static inline int conc_sem_acquire_until(conc_sem_t *s, int64_t deadline) {
    if (CONC_LIKELY(conc__sem_fast(s)))
        return 0;
    return conc__sem_acquire_slow(s, deadline);
}

/* One CAS: check the bound, add n tokens and learn, in the same RMW, how many sleepers to
 * wake. [R1] release: pairs with the taker's [A1]/[A2], so our writes are visible to it.
 * After the CAS the semaphore's memory is never read again (see THREAD SAFETY). */
static inline int conc_sem_release(conc_sem_t *s, unsigned n) {
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    if (CONC_UNLIKELY(n == 0))
        return EINVAL;
    do {
        if (CONC_UNLIKELY(n > conc__sem_limit(w) - conc__sem_value(w)))
            return conc__sem_overflow();
    } while (!conc_cas_weak(&s->word, &w, w + n, CONC_RELEASE, CONC_RELAXED));
    uint32_t sleepers = conc__sem_sleepers(w);
    if (CONC_UNLIKELY(sleepers != 0)) {
        CONC_CHAOS_POINT();
        conc_futex_wake(conc__sem_futex(s), (int)(n < sleepers ? n : sleepers),
                        conc__sem_futex_flags(w));
    }
    return 0;
}

/* Relaxed: a snapshot for diagnostics, ordered with nothing. */
static inline unsigned conc_sem_value(const conc_sem_t *s) {
    return conc__sem_value(conc_load(&s->word, CONC_RELAXED));
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_SEM_H */

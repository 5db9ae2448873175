/* conc/sem.h - a counting semaphore whose acquire and release are one atomic each - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Semaphore and BoundedSemaphore in C: a count of tokens; acquire takes
 * one (waiting while there are none), release gives tokens back.
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS,
 *   DESIGN; then the code: slow paths (timeline), fast paths.
 *
 * QUICK START (examples/04_semaphore_limit.c)
 *     static conc_sem_t slots = CONC_SEM_INIT(3);   // at most three inside at once
 *     conc_sem_acquire(&slots);
 *     puts("inside");                                // up to three threads here
 *     if (conc_sem_release(&slots, 1) != 0) abort(); // unbounded: fails only past 2^31-1
 *     static conc_sem_t bounded = CONC_SEM_INIT_BOUNDED(3, 3);   // BoundedSemaphore(3)
 *     if (conc_sem_release(&bounded, 1) == EOVERFLOW)            // a 4th token: refused,
 *         puts("released too many");                             //   nothing released
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
 *   init: EINVAL if value > max (max != 0), value or max > CONC_SEM_VALUE_MAX, s is NULL or flags
 *   has a bit other than CONC_SHARED; the semaphore is left untouched. try_acquire: EAGAIN when no
 *   token is there (not EBUSY: a semaphore is empty, not held). acquire_until: ETIMEDOUT once the
 *   deadline has passed, never earlier; a past deadline tries once. A waiter that finds a token at
 *   its deadline takes it and returns 0. release: EOVERFLOW if n tokens would pass max (or
 *   CONC_SEM_VALUE_MAX when unbounded), and then nothing is released (Python's BoundedSemaphore
 *   raises ValueError); EINVAL for n == 0 (Python: ValueError). CONC_SEM_INIT_BOUNDED(value, max)
 *   with value > max, and either macro with a value or max above CONC_SEM_VALUE_MAX (a negative
 *   int, say; Python's Semaphore(-1) raises ValueError): a compile error for constant arguments,
 *   an abort in debug builds for run-time ones.
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
 *   names the address; a release in steps, see CAVEATS, in one per step). No destroy is
 *   needed.
 *
 * CONFIGURATION
 *   CONC_SEM_SPIN  pauses a waiter spends spinning before it sleeps, a relaxed load after
 *                  each (a sched_yield before every 64th: base.h); default 256; 0 disables
 *                  spinning. Skipped on one CPU and while others already sleep.
 *
 * CAVEATS
 *   - 16 bytes, where sem_t has 32: an 8-byte word the fast paths update, and the bound.
 *   - More than 32,767 threads asleep on one semaphore at once: the extra ones cannot be
 *     counted, so they poll every millisecond instead of sleeping until woken. More than
 *     65,535 tokens handed to waiters and not yet picked up: the releaser yields until the
 *     waiters pick some up. Correct, just slower. A release of more tokens than that, with
 *     more waiters than that, hands them in steps of what fits; a bounded semaphore then
 *     checks its bound at each step, so a release racing it that fills the semaphore up to
 *     its max can make a later step fail with EOVERFLOW after earlier steps were handed.
 *   - CONC_SHARED semaphores in MAP_SHARED memory work across processes (they store no
 *     pointers and use non-private futexes). A process that dies holding a token keeps it. One
 *     that dies while waiting leaves its claim in the count: tokens still flow (any waiter may
 *     pick up a handed token, see DESIGN), but through the slow paths.
 *   - fork(): a private semaphore is copied with the parent's waiters, who do not exist in the
 *     child: the same as waiters that died. Re-init it in the child if anyone was waiting.
 *   - conc_sem_release is async-signal-safe (one CAS and maybe a futex wake) unless 65,535
 *     handed tokens wait to be picked up (see above); acquire is not meant for signal handlers.
 *
 * DESIGN
 *   The word is {count: signed, bits 32..63; handed: bits 0..15; sleepers: bits 16..30}.
 *   count is the number of free tokens, or, when negative, minus the number of waiters that no
 *   token has been handed to yet. handed holds tokens released for waiters and not yet picked
 *   up; sleepers counts waiters registered to sleep on the futex, which is the low half.
 *     acquire: one fetch_sub of count. A count above 0 means a token was taken. Otherwise the
 *       caller is now a waiter whose claim is in the count: it picks up a handed token, or, at
 *       its deadline with none handed, withdraws its claim (count + 1) in one CAS.
 *     release: one CAS that checks the bound (value = max(count, 0) + handed), adds n to
 *       count, moves min(n, waiters without a token) into handed, and reads sleepers to know
 *       how many to wake. It never reads the semaphore again (glibc's sem_post has the same
 *       shape, for the same destroy-after-post reason).
 *   Why a fetch_sub and not glibc's load + CAS: the load before a CAS waits for the previous
 *   atomic operation and then the CAS waits for the load; a fetch_sub has nothing to wait for.
 *   It made an uncontended acquire+release 10% faster than sem_t where first measured; on the
 *   issue-10 machine it is 1.03x sem_t, because there the release's load, which waits for the
 *   acquire's RMW, costs 1.6 ns of the pair's 16.5 (a test release without it: 0.93x). Release
 *   stays a load and a CAS: a fetch_add would show tokens past max to other threads before it
 *   could take them back (and a count raised past waiters before their tokens are handed).
 *   The price is 16 bytes instead of 8: a signed count, handed and sleepers fill the word
 *   that the fast paths update, and the bound (constant after init) sits beside it.
 *   Any waiter may pick up any handed token, so a waiter that spins or arrives late can take a
 *   token meant for a sleeper; the sleeper, woken, finds none and sleeps again. That keeps
 *   the semaphore moving instead of waiting for a sleeper to be scheduled, as glibc and musl
 *   allow too. try_acquire takes a free token, or a handed one (claim and pick up in one CAS),
 *   and never leaves a claim behind. A spin model of the protocol is tests/models/sem.pml;
 *   sem_hand_two.pml runs it with two tokens handed at a time, where a release's one wake
 *   must be for as many sleepers as it handed tokens.
 */
#ifndef CONC_SEM_H
#define CONC_SEM_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_sem {
    uint64_t word __attribute__((aligned(8))); /* {count, handed, sleepers}; all access atomic */
    uint32_t config; /* max (0: unbounded) | CONC__SEM_SHARED; set by init only */
    uint32_t reserved;
} conc_sem_t;

#define CONC_SEM_VALUE_MAX 0x7fffffffu /* 2,147,483,647, as glibc's SEM_VALUE_MAX */

#define CONC__SEM_COUNT_SHIFT 32 /* count: the signed high half of the word */
#define CONC__SEM_COUNT_ONE ((uint64_t)1 << CONC__SEM_COUNT_SHIFT)
#define CONC__SEM_HANDED_MASK ((uint64_t)0xffff) /* handed: bits 0..15 */
#define CONC__SEM_HANDED_MAX 0xffffu
#define CONC__SEM_SLEEPER_SHIFT 16 /* sleepers: bits 16..30 */
#define CONC__SEM_SLEEPER_ONE ((uint64_t)1 << CONC__SEM_SLEEPER_SHIFT)
#define CONC__SEM_SLEEPER_MAX 0x7fffu /* the sleeper field is 15 bits */
#define CONC__SEM_SHARED 0x80000000u  /* in config */

/* Static initializers. value and max must be <= CONC_SEM_VALUE_MAX, and value <= max (max 0:
 * unbounded). Both macros check that: with constant arguments a violation does not compile
 * ("array size is negative", in CONC__SEM_BOUNDED_CHECK); with run-time arguments a debug
 * build aborts naming the macro, and the check costs nothing for constant ones. (A value past
 * CONC_SEM_VALUE_MAX, a negative int say, would read as a negative count: that many waiters
 * that do not exist, each taking a released token, until 65,535 handed tokens stall release.) */
// clang-format off
#define CONC_SEM_INIT(value) \
    {(uint64_t)(value) << CONC__SEM_COUNT_SHIFT, \
     CONC__SEM_UNBOUNDED_MAX(value) + CONC__SEM_BOUNDED_CHECK(value, 0u), 0}
#define CONC_SEM_INIT_BOUNDED(value, max) \
    {(uint64_t)(value) << CONC__SEM_COUNT_SHIFT, \
     CONC__SEM_BOUNDED_MAX(value, max) + CONC__SEM_BOUNDED_CHECK(value, max), 0}
// clang-format on
/* Shifts and a difference, not comparisons with constants: base.h's CONC__INIT_REFUSE says
 * why. Both past CONC_SEM_VALUE_MAX (2^31 - 1) show in bit 31 and up; below it, value > max
 * makes max - value wrap into bit 63. */
#define CONC__SEM_BOUNDED_BAD(value, max)                                                          \
    (((uint64_t)(value) >> 31) != 0 || ((uint64_t)(max) >> 31) != 0 ||                             \
     ((uint64_t)(max) != 0 && (((uint64_t)(max) - (uint64_t)(value)) >> 63) != 0))
CONC_STATIC_ASSERT(CONC_SEM_VALUE_MAX == ((uint64_t)1 << 31) - 1, "the shifts above are the bound");
#define CONC__SEM_BOUNDED_CHECK(value, max) CONC__INIT_REFUSE(CONC__SEM_BOUNDED_BAD(value, max))
#if CONC_DEBUG
/* The call sits in the arm a valid constant never evaluates, so the initializer stays a
 * constant expression (C11 6.6p3) and a static semaphore needs no code to start. */
#define CONC__SEM_BOUNDED_MAX(value, max)                                                          \
    (CONC__SEM_BOUNDED_BAD(value, max) ? conc__sem_init_bounded_invalid_slow() : (uint32_t)(max))
#define CONC__SEM_UNBOUNDED_MAX(value)                                                             \
    (CONC__SEM_BOUNDED_BAD(value, 0u) ? conc__sem_init_invalid_slow() : 0u)
#else
#define CONC__SEM_BOUNDED_MAX(value, max) ((uint32_t)(max))
#define CONC__SEM_UNBOUNDED_MAX(value) 0u
#endif
CONC_COLD uint32_t conc__sem_init_bounded_invalid_slow(void) {
    CONC_ABORT("CONC_SEM_INIT_BOUNDED: value > max, or either > CONC_SEM_VALUE_MAX");
    return 0;
}
CONC_COLD uint32_t conc__sem_init_invalid_slow(void) {
    CONC_ABORT("CONC_SEM_INIT: value > CONC_SEM_VALUE_MAX");
    return 0;
}

CONC_STATIC_ASSERT(sizeof(conc_sem_t) == 16, "a conc_sem is its 8-byte word and its bound");
CONC_STATIC_ASSERT(offsetof(conc_sem_t, word) == 0 && __alignof__(conc_sem_t) == 8,
                   "the word is 8-aligned, so its low half is an aligned futex word");
CONC_STATIC_ASSERT((CONC__SEM_HANDED_MASK &
                    ((uint64_t)CONC__SEM_SLEEPER_MAX << CONC__SEM_SLEEPER_SHIFT)) == 0 &&
                       (((uint64_t)CONC__SEM_SLEEPER_MAX << CONC__SEM_SLEEPER_SHIFT) >>
                        CONC__SEM_COUNT_SHIFT) == 0,
                   "handed and sleepers are disjoint and fit in the low (futex) half");
CONC_STATIC_ASSERT(CONC_SEM_VALUE_MAX <= INT32_MAX, "a value fits the signed count");

#ifndef CONC_SEM_SPIN
#define CONC_SEM_SPIN 256
#endif

/* Free tokens if >= 0; minus the waiters no token has been handed to yet if < 0. */
CONC_INLINE int64_t conc__sem_count(uint64_t w) {
    return (int64_t)w >> CONC__SEM_COUNT_SHIFT;
}
CONC_INLINE uint32_t conc__sem_handed(uint64_t w) {
    return (uint32_t)(w & CONC__SEM_HANDED_MASK);
}
CONC_INLINE uint32_t conc__sem_sleepers(uint64_t w) {
    return (uint32_t)(w >> CONC__SEM_SLEEPER_SHIFT) & CONC__SEM_SLEEPER_MAX;
}
/* Tokens in the semaphore: free ones and handed ones not yet picked up. */
CONC_INLINE uint32_t conc__sem_value(uint64_t w) {
    int64_t count = conc__sem_count(w);
    return (uint32_t)(count > 0 ? count : 0) + conc__sem_handed(w);
}
/* The most tokens the semaphore may hold. */
CONC_INLINE uint32_t conc__sem_limit(uint32_t config) {
    uint32_t max = config & ~CONC__SEM_SHARED;
    return max ? max : CONC_SEM_VALUE_MAX;
}
/* Relaxed: config is written by init only, before any other call (THREAD SAFETY). */
CONC_INLINE uint32_t conc__sem_config(const conc_sem_t *s) {
    return conc_load(&s->config, CONC_RELAXED);
}
/* The futex is the 32-bit half of the word that holds handed and sleepers (the low half). */
CONC_INLINE uint32_t *conc__sem_futex(conc_sem_t *s) {
    return conc_futex_half_low(&s->word);
}

/* Not CONC_NODISCARD: the only error is EINVAL for arguments the caller chose (base.h). */
static inline int conc_sem_init(conc_sem_t *s, unsigned value, unsigned max, int flags) {
    if (!s || (flags & ~CONC_SHARED) || value > CONC_SEM_VALUE_MAX || max > CONC_SEM_VALUE_MAX ||
        (max != 0 && value > max))
        return EINVAL;
    conc_store(&s->word, (uint64_t)value << CONC__SEM_COUNT_SHIFT, CONC_RELAXED);
    conc_store(&s->config, max | ((flags & CONC_SHARED) ? CONC__SEM_SHARED : 0u), CONC_RELAXED);
    s->reserved = 0;
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * A waiter's claim is already in the count (its fetch_sub took count from <= 0 one lower).
 * It leaves by picking up a handed token ([sem.A2], and deregistering in the same CAS if it was
 * a sleeper), or, at its deadline with nothing handed, by withdrawing the claim (count + 1).
 * Nothing handed means count < 0 (every waiter without a token is in it), so the claim
 * withdrawn is one that no release has covered: no token is lost.
 *
 * A sleeper registers (sleepers + 1) with a CAS that succeeds only while handed is 0, then
 * sleeps with futex_wait(low half, {handed 0, sleepers}): the kernel re-checks the half and
 * queues the sleeper atomically with respect to wake. So:
 *
 *   releaser                                   sleeper (its claim is in count: count < 0)
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS: {c, 0, k} -> {c, 0, k+1}   [registers]
 *   CAS: {c, 0, k+1} -> {c+n, h, k+1}   [sem.R1]
 *     h = min(n, -c) handed to waiters;
 *     the same CAS read k+1 sleepers:
 *   wake(half, min(h, k+1))
 *                                              futex_wait(half, {0, k+1})
 *                                                -> EAGAIN: handed is h now
 *
 *   Either the release comes first and the sleeper's futex_wait finds the half changed, or
 *   the sleeper is queued first and the wake finds it. Both CASes act on one word, so the
 *   release reads every registration made before it; a registration after it fails its CAS
 *   (handed is no longer 0) and picks up the token instead. A woken sleeper always re-reads
 *   the word before sleeping again: if another waiter picked up the token first, that waiter
 *   was served and this one still has its claim in the count, for the next release. So no
 *   token sits in handed while every waiter sleeps with no wake on its way.
 * ------------------------------------------------------------------------------------------- */

CONC_COLD int conc__sem_wait_slow(conc_sem_t *s, int64_t deadline) {
    uint32_t *futex = conc__sem_futex(s);
    int flags = conc_futex_flags(conc__sem_config(s), CONC__SEM_SHARED);
    uint64_t w = conc_load(&s->word, CONC_RELAXED);

    /* Spin while nobody sleeps (a woken sleeper should find the token it was woken for) and
     * another CPU can release meanwhile. A few microseconds: on a VM, waking a sleeper on
     * another CPU costs 13-150 us, so a ping-pong partner caught while spinning is the big
     * win. */
    conc_spin_t spin = conc_spin_begin(CONC_SEM_SPIN, CONC_SPIN_STEADY, deadline);
    while (conc__sem_sleepers(w) == 0) {
        if (conc__sem_handed(w) > 0) {
            /* [sem.A2] acquire: pairs with the release [sem.R1] that handed the token. */
            if (conc_cas(&s->word, &w, w - 1, CONC_ACQUIRE, CONC_RELAXED))
                return 0;
            continue; /* w is fresh: decide again */
        }
        if (!conc_spin_next(&spin))
            break;
        w = conc_load(&s->word, CONC_RELAXED);
    }

    uint64_t registered = 0; /* CONC__SEM_SLEEPER_ONE once we count in sleepers */
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__sem_handed(w) > 0) {
            /* [sem.A2] acquire: pairs with [sem.R1]. Picks up the token and deregisters at once, so
             * sleepers never counts a thread that is no longer waiting. */
            if (conc_cas(&s->word, &w, w - 1 - registered, CONC_ACQUIRE, CONC_RELAXED))
                return 0;
            continue;
        }
        if (conc_deadline_passed(deadline)) {
            /* Relaxed: withdrawing a claim publishes nothing and takes nothing. */
            if (conc_cas(&s->word, &w, w + CONC__SEM_COUNT_ONE - registered, CONC_RELAXED,
                         CONC_RELAXED))
                return ETIMEDOUT; /* a past deadline: we tried once */
            continue;             /* the word changed: maybe a token was handed; look again */
        }
        int64_t until = deadline;
        if (!registered) {
            if (CONC_UNLIKELY(conc__sem_sleepers(w) == CONC__SEM_SLEEPER_MAX)) {
                /* No room to count us: poll. Every hand-over changes the half we wait on, so
                 * one before we queue makes futex_wait return at once; one after is seen
                 * within a millisecond at worst. */
                int64_t poll = conc_deadline_in(CONC_MS);
                until = poll < deadline ? poll : deadline;
            } else {
                /* Relaxed: registering publishes nothing; the kernel's re-check in futex_wait
                 * is what makes the sleep safe (timeline above). */
                if (!conc_cas(&s->word, &w, w + CONC__SEM_SLEEPER_ONE, CONC_RELAXED, CONC_RELAXED))
                    continue;
                w += CONC__SEM_SLEEPER_ONE;
                registered = CONC__SEM_SLEEPER_ONE;
            }
        }
        CONC_CHAOS_POINT();
        /* The low half of w: handed 0 and our sleeper count. EINTR, spurious wakeups and
         * timeouts all loop: the deadline test above decides. */
        (void)conc_futex_wait(futex, (uint32_t)w, flags, until);
        w = conc_load(&s->word, CONC_RELAXED);
    }
}

/* Waiters to serve, handed tokens, the bound near, or n == 0: everything but the plain add.
 * handed holds at most CONC__SEM_HANDED_MAX tokens: a release that would hand more (more
 * waiters' claims than that in the count, and n above the room left) hands what fits, wakes
 * for it, and goes on with the rest once waiters pick some up (yielding while none fits). */
CONC_COLD int conc__sem_release_slow(conc_sem_t *s, unsigned n) {
    if (n == 0)
        return EINVAL;
    uint32_t config = conc__sem_config(s); /* read before the CAS: nothing is read after it */
    uint32_t limit = conc__sem_limit(config);
    int flags = conc_futex_flags(config, CONC__SEM_SHARED);
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    while (n > 0) {
        uint32_t value = conc__sem_value(w);
        if (n > limit - value)
            return EOVERFLOW; /* nothing released (but see CAVEATS: a release in steps) */
        int64_t count = conc__sem_count(w);
        uint32_t hand = count < 0 ? (uint32_t)(-count < (int64_t)n ? -count : (int64_t)n) : 0;
        uint32_t step = n, room = CONC__SEM_HANDED_MAX - conc__sem_handed(w);
        if (CONC_UNLIKELY(hand > room)) {
            if (room == 0) {
                sched_yield(); /* 65,535 tokens wait to be picked up: let their waiters run */
                w = conc_load(&s->word, CONC_RELAXED);
                continue;
            }
            hand = step = room; /* every one of them handed: claims remain for the rest */
        }
        /* [sem.R1] release: pairs with the taker's [sem.A1]/[sem.A2], so our writes are
         * visible to it. */
        if (!conc_cas_weak(&s->word, &w, w + ((uint64_t)step << CONC__SEM_COUNT_SHIFT) + hand,
                           CONC_RELEASE, CONC_RELAXED))
            continue;
        uint32_t sleepers = conc__sem_sleepers(w);
        if (hand > 0 && sleepers > 0) {
            CONC_CHAOS_POINT();
            conc_futex_wake(conc__sem_futex(s), (int)(hand < sleepers ? hand : sleepers), flags);
        }
        n -= step;
        if (n > 0) /* a later step: the semaphore may be gone only after our last CAS */
            w = conc_load(&s->word, CONC_RELAXED);
    }
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* One fetch_sub of count: true if it took a free token (count was above 0). [sem.A1] acquire:
 * pairs with the [sem.R1] that added the token. Otherwise our claim is now in the count and the
 * caller must wait (conc__sem_wait_slow). */
CONC_INLINE bool conc__sem_take(conc_sem_t *s) {
    uint64_t old = conc_fetch_sub(&s->word, CONC__SEM_COUNT_ONE, CONC_ACQUIRE);
    return (int64_t)old >= (int64_t)CONC__SEM_COUNT_ONE; /* count >= 1 */
}

static inline void conc_sem_acquire(conc_sem_t *s) {
    if (CONC_UNLIKELY(!conc__sem_take(s)))
        (void)conc__sem_wait_slow(s, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_sem_acquire_until(conc_sem_t *s, int64_t deadline) {
    if (CONC_LIKELY(conc__sem_take(s)))
        return 0;
    return conc__sem_wait_slow(s, deadline);
}

/* A CAS, never a claim: a free token (count - 1), or a handed one (count - 1 and handed - 1:
 * claim and pick up at once). [sem.A1]/[sem.A2] acquire: pairs with [sem.R1]. */
CONC_NODISCARD static inline int conc_sem_try_acquire(conc_sem_t *s) {
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    for (;;) {
        uint64_t take = CONC__SEM_COUNT_ONE; /* a free token */
        if (CONC_UNLIKELY(conc__sem_count(w) <= 0)) {
            if (conc__sem_handed(w) == 0)
                return EAGAIN;
            take = CONC__SEM_COUNT_ONE + 1; /* a handed one */
        }
        if (conc_cas(&s->word, &w, w - take, CONC_ACQUIRE, CONC_RELAXED))
            return 0;
    }
}

/* The plain case in one CAS: nobody waits for a token (count >= 0), none is handed, and n
 * tokens fit. [sem.R1] release: pairs with the taker's [sem.A1]/[sem.A2]. After the CAS the
 * semaphore's memory is never read again (see THREAD SAFETY). */
CONC_NODISCARD static inline int conc_sem_release(conc_sem_t *s, unsigned n) {
    uint64_t w = conc_load(&s->word, CONC_RELAXED);
    uint32_t limit = conc__sem_limit(conc__sem_config(s));
    do {
        /* count < 0 puts w's top bit on, so (w >> COUNT_SHIFT) + n passes any limit */
        if (CONC_UNLIKELY(n == 0 || conc__sem_handed(w) != 0 ||
                          (w >> CONC__SEM_COUNT_SHIFT) + n > limit))
            return conc__sem_release_slow(s, n);
    } while (!conc_cas_weak(&s->word, &w, w + ((uint64_t)n << CONC__SEM_COUNT_SHIFT), CONC_RELEASE,
                            CONC_RELAXED));
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

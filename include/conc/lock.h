/* conc/lock.h - a 4-byte futex lock with eventual fairness - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Lock in C: a mutual-exclusion lock in one 32-bit word.
 *
 * QUICK START (examples/01_race_counter.c)
 *     static conc_lock_t lock = CONC_LOCK_INIT;
 *     static long counter;
 *     conc_lock_acquire(&lock);
 *     counter += 1;                       // a read-modify-write: needs the lock
 *     conc_lock_release(&lock);
 *     if (conc_lock_acquire_until(&lock, conc_deadline_in(10 * CONC_MS)) == 0)
 *         conc_lock_release(&lock);       // got it within 10 ms
 *
 * API
 *   init      conc_lock_init(l, flags)            flags: 0 or CONC_SHARED; or = CONC_LOCK_INIT
 *   acquire   conc_lock_acquire(l)                blocks
 *             conc_lock_try_acquire(l)            0, EBUSY; never blocks
 *             conc_lock_acquire_until(l, dl)      0, ETIMEDOUT; dl is an absolute deadline
 *   release   conc_lock_release(l)
 *   query     conc_lock_is_locked(l)              a snapshot: stale as soon as it returns
 *
 * ERRORS
 *   try_acquire: EBUSY if held. acquire_until: ETIMEDOUT once the deadline has passed (never
 *   earlier); a past deadline tries once. Releasing a lock that is not held aborts with
 *   "conc_lock_release: the lock is not held" (the check is free: it sits on the slow path).
 *
 * ORDERING CONTRACT
 *   Everything a thread wrote before conc_lock_release is visible to the next thread whose
 *   acquire (or successful try/until) returns 0 on that lock. As in Python, any thread may
 *   release a held lock, not only the one that acquired it (use conc_rlock for ownership).
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init, which needs the lock unused.
 *   No destroy is needed: a lock owns no resources.
 *
 * CONFIGURATION
 *   CONC_LOCK_SPIN     spin iterations before sleeping (default 128); 0 disables spinning.
 *   CONC_LOCK_FAIR_NS  how long a waiter waits before it asks for a handoff (default 1 ms).
 *
 * CAVEATS
 *   - fork(): a lock held by another thread at fork stays held in the child; re-init it there.
 *   - CONC_SHARED locks in MAP_SHARED memory work across processes. A process that dies while
 *     holding one leaves it held (no robust-futex support: that needs the owner's tid in the
 *     word, which a 4-byte barging lock cannot afford).
 *   - Signal handlers must not acquire a lock the interrupted code may hold.
 *   - Under ThreadSanitizer the lock announces itself (__tsan_mutex_*), so TSan checks
 *     races and lock order through it as through a pthread mutex. As TSan does for
 *     pthread_mutex_timedlock, try_acquire and acquire_until are announced as try-locks,
 *     which its lock-order checker ignores: only blocking acquires form lock-order edges.
 *
 * DESIGN
 *   The word: bit 0 HELD, bit 1 HANDOFF, bit 2 STARVING, bits 3..30 the number of registered
 *   sleepers, bit 31 SHARED. Uncontended, the word is 0 (or SHARED): acquire is one CAS
 *   0 -> HELD and release one CAS HELD -> 0, both inline, no syscall. Anything else goes to
 *   the cold paths below:
 *   - a contended acquire spins (bounded, CONC_LOCK_SPIN relaxed loads with a pause) while
 *     nobody sleeps and more than one CPU exists, then registers as a sleeper (+1 in the
 *     count) and sleeps on the word;
 *   - a release that sees sleepers wakes exactly one;
 *   - barging: a woken sleeper competes with newcomers, which is what makes a busy lock fast.
 *     A sleeper that has waited more than CONC_LOCK_FAIR_NS sets STARVING; the next release
 *     then keeps HELD, sets HANDOFF and wakes one sleeper, which owns the lock from that moment
 *     (newcomers see HELD and cannot barge). The kernel wakes sleepers of one word in FIFO
 *     order, so the starving sleeper is reached within (sleepers) handoffs. STARVING clears
 *     when a claimer waited less than CONC_LOCK_FAIR_NS itself, or was the last sleeper.
 *   Because sleepers are counted exactly, a HANDOFF is never stranded: the release that makes
 *   it saw at least one registered sleeper, and every sleeper registered before it, whether
 *   it wakes, times out or never got to sleep, re-reads the word and claims a pending HANDOFF
 *   before it leaves. A thread that registers after the HANDOFF was made sleeps once before
 *   it may claim one, so a newcomer cannot take the lock meant for a starving sleeper.
 *   A spin model of all this is tests/models/lock.pml.
 */
#ifndef CONC_LOCK_H
#define CONC_LOCK_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_lock {
    uint32_t word; /* see DESIGN above; all access atomic */
} conc_lock_t;

// clang-format off
#define CONC_LOCK_INIT {0}
// clang-format on

#ifndef CONC_LOCK_SPIN
#define CONC_LOCK_SPIN 128
#endif
#ifndef CONC_LOCK_FAIR_NS
#define CONC_LOCK_FAIR_NS (1 * CONC_MS)
#endif

#define CONC__LOCK_HELD 0x1u            /* someone owns the lock */
#define CONC__LOCK_HANDOFF 0x2u         /* owned by a sleeper that has not claimed it yet */
#define CONC__LOCK_STARVING 0x4u        /* a sleeper waited too long: releases hand off */
#define CONC__LOCK_SLEEPER 0x8u         /* one registered sleeper */
#define CONC__LOCK_SLEEPERS 0x7ffffff8u /* mask of the sleeper count */
#define CONC__LOCK_SHARED 0x80000000u   /* process-shared: non-private futex ops */

CONC_INLINE int conc__lock_futex_flags(uint32_t word) {
    return (word & CONC__LOCK_SHARED) ? CONC_SHARED : 0;
}

static inline void conc_lock_init(conc_lock_t *l, int flags) {
    conc_store(&l->word, (flags & CONC_SHARED) ? CONC__LOCK_SHARED : 0u, CONC_RELAXED);
    CONC_TSAN_MUTEX_CREATE(l, 0);
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * The sleep/wake protocol. A sleeper registers (count + 1) with a CAS that fails if the lock
 * became free, then sleeps with futex_wait(word, seen): the kernel re-checks word == seen and
 * queues the sleeper atomically with respect to wake. So:
 *
 *   releaser                                   sleeper
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS word: seen -> seen + SLEEPER   [registers]
 *   CAS word: v -> v & ~HELD   [R2, release]
 *   (v counts our sleeper, so:) wake(word, 1)
 *                                              futex_wait(word, seen + SLEEPER)
 *                                                -> EAGAIN: word lost HELD, so it differs
 *
 *   Either the releaser's CAS comes first, and the sleeper's futex_wait finds the word changed
 *   and returns at once; or the sleeper is queued first, and the releaser's wake finds it. The
 *   releaser reads the count in the same CAS that frees the lock, so it cannot miss a sleeper
 *   that registered before the lock was freed; one that registers after sees the lock free.
 *   If the word returns to the very value the sleeper saw (a barger took the lock again), the
 *   sleeper sleeps, and that barger's release sees the count and wakes someone: no lost
 *   wakeup, only the barger's turn first.
 * ------------------------------------------------------------------------------------------- */

/* The word a registered sleeper installs when it takes the lock from v: v must have HANDOFF
 * set (the lock was handed to a sleeper: any sleeper may claim it) or HELD clear (free). */
CONC_INLINE uint32_t conc__lock_claimed(uint32_t v, bool starving) {
    if (!(v & CONC__LOCK_HANDOFF))
        return (v | CONC__LOCK_HELD) - CONC__LOCK_SLEEPER;
    uint32_t next = (v & ~CONC__LOCK_HANDOFF) - CONC__LOCK_SLEEPER;
    /* Handoff mode ends when the claimer itself waited less than CONC_LOCK_FAIR_NS, or when
     * nobody is left who could be starving. */
    if (!starving || (next & CONC__LOCK_SLEEPERS) == 0)
        next &= ~CONC__LOCK_STARVING;
    return next;
}

/* Whether a registered sleeper may take the lock from v. A HANDOFF is meant for a thread that
 * was already waiting when it was made: one that registered after it (and so is not counted
 * in the release that made it) must sleep once before it may claim one, or a newcomer could
 * barge past the starving sleeper the handoff exists for. */
CONC_INLINE bool conc__lock_claimable(uint32_t v, bool may_claim_handoff) {
    return !(v & CONC__LOCK_HELD) || ((v & CONC__LOCK_HANDOFF) && may_claim_handoff);
}

CONC_COLD int conc__lock_acquire_slow(conc_lock_t *l, int64_t deadline) {
    uint32_t v = conc_load(&l->word, CONC_RELAXED);
    int flags = conc__lock_futex_flags(v);

    /* Spin while nobody sleeps and another CPU can release the lock meanwhile. Plain relaxed
     * loads: they keep the cache line shared until it is worth a CAS. */
    if (CONC_LOCK_SPIN > 0 && conc_cpu_count() > 1) {
        for (int i = 0; i < CONC_LOCK_SPIN && !(v & CONC__LOCK_SLEEPERS); i++) {
            if (!(v & CONC__LOCK_HELD)) {
                /* [A1] acquire: pairs with the releaser's [R1]/[R2]. */
                if (conc_cas(&l->word, &v, v | CONC__LOCK_HELD, CONC_ACQUIRE, CONC_RELAXED))
                    return 0;
                continue;
            }
            conc_cpu_relax();
            v = conc_load(&l->word, CONC_RELAXED);
        }
    }

    /* Take it if free, else register as a sleeper: one CAS decides which. */
    for (;;) {
        CONC_CHAOS_POINT();
        if (!(v & CONC__LOCK_HELD)) {
            if (conc_cas(&l->word, &v, v | CONC__LOCK_HELD, CONC_ACQUIRE, CONC_RELAXED)) /* [A1] */
                return 0;
            continue;
        }
        if (deadline != CONC_FOREVER && conc_now() >= deadline)
            return ETIMEDOUT; /* a past deadline: we tried once */
        /* Relaxed: registering publishes nothing; the kernel's re-check of the word in
         * futex_wait is what makes the sleep safe (timeline above). */
        if (conc_cas(&l->word, &v, v + CONC__LOCK_SLEEPER, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    bool may_claim_handoff = !(v & CONC__LOCK_HANDOFF); /* see conc__lock_claimable */
    v += CONC__LOCK_SLEEPER;

    int64_t since = 0; /* when we first slept; read lazily, the clock costs ~50 ns */
    bool starving = false;
    int r = 0;
    for (;;) {
        if (conc__lock_claimable(v, may_claim_handoff)) {
            /* [A2] acquire: pairs with [R2], the release that freed or handed over the lock.
             * Every way out of this loop passes here, so no registered sleeper leaves while a
             * HANDOFF is pending: that is why a handoff is never stranded. */
            if (conc_cas(&l->word, &v, conc__lock_claimed(v, starving), CONC_ACQUIRE,
                         CONC_RELAXED))
                return 0;
            continue;
        }
        if (r == ETIMEDOUT) {
            /* Held by someone else at our deadline: deregister. The last sleeper out also
             * ends handoff mode, which only sleepers can use. */
            uint32_t next = v - CONC__LOCK_SLEEPER;
            if ((next & CONC__LOCK_SLEEPERS) == 0)
                next &= ~CONC__LOCK_STARVING;
            if (conc_cas(&l->word, &v, next, CONC_RELAXED, CONC_RELAXED))
                return ETIMEDOUT;
            continue;
        }
        if (!starving) {
            int64_t now = conc_now();
            if (since == 0)
                since = now;
            else if (now - since >= CONC_LOCK_FAIR_NS)
                starving = true;
        }
        if (starving && !(v & CONC__LOCK_STARVING)) {
            /* Relaxed: a request that the releaser reads in its CAS [R2]. */
            conc_cas(&l->word, &v, v | CONC__LOCK_STARVING, CONC_RELAXED, CONC_RELAXED);
            continue; /* v is fresh either way */
        }
        CONC_CHAOS_POINT();
        r = conc_futex_wait(&l->word, v, deadline, flags);
        may_claim_handoff = true;
        v = conc_load(&l->word, CONC_RELAXED);
    }
}

CONC_COLD void conc__lock_release_slow(conc_lock_t *l) {
    uint32_t v = conc_load(&l->word, CONC_RELAXED);
    uint32_t next;
    for (;;) {
        if (!(v & CONC__LOCK_HELD) || (v & CONC__LOCK_HANDOFF))
            CONC_ABORT("conc_lock_release: the lock is not held");
        if ((v & CONC__LOCK_SLEEPERS) == 0)
            next = v & CONC__LOCK_SHARED; /* nobody to wake: just free it */
        else if (v & CONC__LOCK_STARVING)
            next = v | CONC__LOCK_HANDOFF; /* stays HELD: ownership passes to a sleeper */
        else
            next = v & ~CONC__LOCK_HELD;
        /* [R2] release: pairs with [A1]/[A2] of the next owner. */
        if (conc_cas(&l->word, &v, next, CONC_RELEASE, CONC_RELAXED))
            break;
    }
    if (v & CONC__LOCK_SLEEPERS) {
        CONC_CHAOS_POINT();
        conc_futex_wake(&l->word, 1, conc__lock_futex_flags(v));
    }
}

CONC_COLD int conc__lock_try_slow(conc_lock_t *l) {
    uint32_t v = conc_load(&l->word, CONC_RELAXED);
    while (!(v & CONC__LOCK_HELD)) /* free, but sleepers or SHARED make the word non-zero */
        if (conc_cas(&l->word, &v, v | CONC__LOCK_HELD, CONC_ACQUIRE, CONC_RELAXED)) /* [A1] */
            return 0;
    return EBUSY;
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* One CAS 0 -> HELD. [A1] acquire on success: pairs with [R1]/[R2], the previous owner's
 * release, so its writes are visible to us. Relaxed on failure: the value only routes us to
 * the slow path, which reads again. */
CONC_INLINE bool conc__lock_fast(conc_lock_t *l) {
    uint32_t expected = 0;
    return conc_cas(&l->word, &expected, CONC__LOCK_HELD, CONC_ACQUIRE, CONC_RELAXED);
}

static inline void conc_lock_acquire(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_LOCK(l, 0);
    if (CONC_UNLIKELY(!conc__lock_fast(l)))
        (void)conc__lock_acquire_slow(l, CONC_FOREVER);
    CONC_TSAN_MUTEX_POST_LOCK(l, 0);
}

CONC_NODISCARD static inline int conc_lock_try_acquire(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_LOCK(l, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = CONC_LIKELY(conc__lock_fast(l)) ? 0 : conc__lock_try_slow(l);
    CONC_TSAN_MUTEX_POST_LOCK(l, CONC_TSAN_MUTEX_TRY_LOCK |
                                     (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

CONC_NODISCARD static inline int conc_lock_acquire_until(conc_lock_t *l, int64_t deadline) {
    CONC_TSAN_MUTEX_PRE_LOCK(l, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = CONC_LIKELY(conc__lock_fast(l)) ? 0 : conc__lock_acquire_slow(l, deadline);
    CONC_TSAN_MUTEX_POST_LOCK(l, CONC_TSAN_MUTEX_TRY_LOCK |
                                     (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* One CAS HELD -> 0. [R1] release: pairs with the next owner's [A1]/[A2]. If the word holds
 * anything else (sleepers, STARVING, SHARED, or no HELD at all: misuse), the slow path
 * decides. */
static inline void conc_lock_release(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_UNLOCK(l);
    uint32_t expected = CONC__LOCK_HELD;
    if (CONC_UNLIKELY(!conc_cas(&l->word, &expected, 0u, CONC_RELEASE, CONC_RELAXED)))
        conc__lock_release_slow(l);
    CONC_TSAN_MUTEX_POST_UNLOCK(l);
}

/* Relaxed: a snapshot for assertions and diagnostics, ordered with nothing. */
static inline bool conc_lock_is_locked(const conc_lock_t *l) {
    return (conc_load(&l->word, CONC_RELAXED) & CONC__LOCK_HELD) != 0;
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_LOCK_H */

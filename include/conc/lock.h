/* conc/lock.h - a 4-byte futex lock with eventual fairness - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Lock in C: a mutual-exclusion lock in one 32-bit word.
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS,
 *   DESIGN; then the code: slow paths (timeline), fast paths, for other conc headers.
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
 *   init      conc_lock_init(l, flags)            flags: 0 or CONC_SHARED (others abort);
 *             = CONC_LOCK_INIT
 *   acquire   conc_lock_acquire(l)                blocks
 *             conc_lock_try_acquire(l)            0, EBUSY; never blocks
 *             conc_lock_acquire_until(l, dl)      0, ETIMEDOUT; dl is an absolute deadline
 *   release   conc_lock_release(l)
 *   scoped    CONC_WITH_LOCK(&l) { ... }          released on every way out but longjmp
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
 *   No destroy is needed: a lock owns no resources. As for a pthread mutex, a lock's memory
 *   may be freed (or reused) as soon as it is unlocked and no other call on it is running:
 *   a release touches nothing after the RMW that frees the lock (or hands it over) but a
 *   futex wake on its address, which is harmless once the memory is gone. So the last holder
 *   of a refcounted object may free it right after its own release, while an earlier
 *   holder's release is still returning, and a waiter may return from the frame that holds
 *   the lock another thread just released. The same holds for an rlock, a cond's lock and an
 *   rwlock.
 *
 * CONFIGURATION
 *   CONC_LOCK_SPIN     pauses a contended acquire spends spinning before it sleeps, looking at
 *                      the word after 1, 2, 4 ... 64 of them (default 2048: about 40 looks,
 *                      under base.h's yield-before-every-64th-look); 0 disables spinning.
 *   CONC_LOCK_FAIR_NS  how long a waiter waits before it asks for a handoff (default 1 ms).
 *
 * CAVEATS
 *   - fork(): a lock held by another thread at fork stays held in the child; re-init it there.
 *   - CONC_SHARED locks in MAP_SHARED memory work across processes. A process that dies while
 *     holding one leaves it held (no robust-futex support: that needs the owner's tid in the
 *     word, which a 4-byte barging lock cannot afford); so does one that dies after a release
 *     woke it to hand it the lock, until a waiter that slept before that handoff looks again
 *     (within 100 ms, below) or a later one has waited 10 ms for it (below). One
 *     that dies while asleep leaves its registration in the word: the lock goes on working
 *     and no release ever waits for it, but a release that finds only dead registrations
 *     sets WAKING for a wake that finds nobody, and no live sleeper is left to retire it. So
 *     the next contended acquire (it sleeps at once: the count is not 0) sleeps on that
 *     WAKING, the holder's release skips its wake, and it waits out
 *     CONC__LOCK_WAKING_WAIT_NS (10 ms) on a lock released long before: every stretch of
 *     contention starts with that 10 ms, for good. A release that
 *     hands the lock to a starving waiter that is not there (the dead one, or a live one
 *     whose claim kept STARVING because the dead registration looks like another waiter)
 *     leaves it held until a waiter that came later has waited CONC__LOCK_HANDOFF_WAIT_NS
 *     (10 ms) for it: about once per stretch of starvation. Meanwhile try_acquire fails, and
 *     so does an acquire_until whose deadline comes first. A waiter stopped (SIGSTOP, a
 *     debugger) costs the same while stopped, and takes its turn once continued. A waiter
 *     that dies after a release woke it and before it ran takes that wake with it (so does a
 *     process killed inside a release, between its CAS and its wake): WAKING stays set, so
 *     releases skip their wakes, and the sleepers asleep already are not woken. So a
 *     CONC_SHARED lock's sleeper sleeps at most CONC__LOCK_SHARED_RECHECK_NS (100 ms) at a
 *     time, then looks again: it takes a free lock, or a handoff made after it slept, or
 *     retires the WAKING (as one that slept on WAKING does after 10 ms). Such a death costs
 *     the sleepers up to 100 ms; a CONC_SHARED sleeper that waits long makes a futex call
 *     every 100 ms.
 *   - Latency: a release's wake that finds nobody (the sleepers were on their way into the
 *     kernel) cannot be followed up, since the releaser never looks at the word again; if a
 *     newcomer then takes the lock before those sleepers claim it, they sleep on WAKING for
 *     up to CONC__LOCK_WAKING_WAIT_NS (10 ms) while the lock passes among others (a sleeper
 *     alone retires that WAKING and is woken by the next release). On 2 CPUs with 4
 *     threads the worst single wait moved between 8.4 and 20.1 ms from one bench run to
 *     the next (a woken waiter may also wait a time slice for a CPU; 12-15 ms before a
 *     sleeper alone retired it): the price of freeing a lock as soon as it is unlocked.
 *   - Signal handlers must not acquire a lock the interrupted code may hold.
 *   - Under ThreadSanitizer, a release by another thread than the acquirer (allowed, as in
 *     Python) is reported as "unlock of an unlocked mutex (or by a wrong thread)", as for a
 *     pthread mutex: use a conc_sem_t of 1 for a lock handed between threads.
 *   - Under ThreadSanitizer the lock announces itself (__tsan_mutex_*), so TSan checks
 *     races and lock order through it as through a pthread mutex. As TSan does for
 *     pthread_mutex_timedlock, try_acquire and acquire_until are announced as try-locks,
 *     which its lock-order checker ignores: only blocking acquires form lock-order edges.
 *
 * DESIGN
 *   The word: bit 0 HELD, bit 1 HANDOFF, bit 2 STARVING, bit 3 WAKING, bits 4..7 the handoff
 *   generation, bits 8..30 the number of registered sleepers, bit 31 SHARED. Acquire is one
 *   RMW that sets HELD and sees whether it was set already; release is one CAS from HELD
 *   alone to 0. Both are inline and make no syscall. Only a failed acquire, or a release
 *   that finds more in the word, goes to the cold paths below:
 *   - a contended acquire spins (bounded: CONC_LOCK_SPIN pauses, the looks backing off) while
 *     nobody sleeps and more than one CPU exists, then registers as a sleeper (+1 in the
 *     count) and sleeps on the word;
 * *   - a release that finds sleepers decides everything in the one CAS that frees the lock (or
 *     hands it over), then only wakes: after that CAS the lock may already be someone else's,
 *     or freed, so it never looks at the word again. It wakes one sleeper, unless WAKING says
 *     a woken sleeper is in flight: that sleeper will re-check the word anyway, so a second
 *     wake would only add a thread fighting for the CPU. This keeps one woken thread in
 *     flight, like glibc's 0/1/2 mutex, while still counting sleepers exactly. The woken
 *     sleeper retires WAKING in its next CAS on the word, and any sleeper that claims the
 *     lock retires it too (one back from EAGAIN may claim first). A wake may find nobody (the
 *     sleepers were on their way into the kernel), and the releaser cannot look again, so
 *     WAKING may be stale. A sleeper that is the only one registered knows a WAKING it sees
 *     is stale (the wake was for it, and it is running) and retires it before it sleeps
 *     again; among several, a sleeper that sleeps on a word showing WAKING (registering
 *     keeps it, as re-sleeping does for a sleeper that was not woken) sleeps for at most
 *     CONC__LOCK_WAKING_WAIT_NS (10 ms), then retires it. A stale WAKING thus costs the
 *     sleepers it strands at most that, and only after a wake that found nobody and a
 *     newcomer that took the lock before any of those sleepers claimed it;
 *   - barging: a woken sleeper competes with newcomers, which is what makes a busy lock fast.
 *     A sleeper that has waited more than CONC_LOCK_FAIR_NS sets STARVING; the next release
 *     then keeps the lock HELD, sets HANDOFF and the next generation, and wakes one sleeper
 *     (a starving one if one is asleep). A sleeper may claim a HANDOFF if a release woke it,
 *     or if it slept (or was on its way to sleep) on a word without that handoff (no
 *     HANDOFF, or an older generation): the release's wake may have found nobody because it
 *     was not in the kernel yet, and it claims the handoff itself. Newcomers, which
 *     registered while the handoff was pending, cannot take the lock meant for the older
 *     sleepers, unless it stays unclaimed for CONC__LOCK_HANDOFF_WAIT_NS while they wait (its
 *     sleepers died or are stopped: CAVEATS); the last sleeper to time out of a pending
 *     handoff frees the lock. STARVING clears when a claimer itself waited less than
 *     CONC_LOCK_FAIR_NS, or when no sleeper is left.
 *   A spin model of all this is tests/models/lock.pml.
 *
 * FOR OTHER CONC HEADERS (the last section of this file)
 *   conc__lock_is_shared(l)                  whether the lock was made with CONC_SHARED
 *   conc__lock_acquire_polling_slow(l, pauses)  acquire, polling the word first while nobody
 *                                            sleeps on it (conc_cond after its wait)
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
#define CONC_LOCK_SPIN 2048
#endif
#ifndef CONC_LOCK_FAIR_NS
#define CONC_LOCK_FAIR_NS (1 * CONC_MS)
#endif

#define CONC__LOCK_HELD 0x1u         /* someone owns the lock */
#define CONC__LOCK_HANDOFF 0x2u      /* owned by a sleeper that has not claimed it yet */
#define CONC__LOCK_STARVING 0x4u     /* a sleeper waited too long: releases hand off */
#define CONC__LOCK_WAKING 0x8u       /* a woken sleeper has not run yet: no second wake */
#define CONC__LOCK_HANDOFF_GEN 0xf0u /* counts handoffs (mod 16): tells a newer from ours */
#define CONC__LOCK_HANDOFF_GEN_ONE 0x10u
#define CONC__LOCK_SLEEPER_ONE 0x100u       /* one registered sleeper */
#define CONC__LOCK_SLEEPER_MASK 0x7fffff00u /* the sleeper count */
#define CONC__LOCK_SHARED 0x80000000u       /* process-shared: non-private futex ops */
#define CONC__LOCK_TAG_PLAIN 0x1u           /* futex tag of a sleeper that is not starving */
#define CONC__LOCK_TAG_STARVING 0x2u        /* futex tag of a starving sleeper: handoffs go here */
/* How long a sleeper waits for a HANDOFF that is not its own (one that was pending when it
 * registered) before it claims it anyway: a handoff's wake finds a sleeper that is in the
 * kernel, and one on its way there claims it itself, well within this on a loaded machine or
 * under a sanitizer; a handoff made to a sleeper that died or was stopped (CAVEATS) holds the
 * lock until somebody has waited this long for it. */
#define CONC__LOCK_HANDOFF_WAIT_NS (10 * CONC_MS)
/* How long a sleeper sleeps on a word with WAKING before it takes WAKING for stale (a wake that
 * found nobody) and retires it: longer than a woken sleeper takes to run on a loaded machine,
 * as retiring a live WAKING costs a second wake. */
#define CONC__LOCK_WAKING_WAIT_NS (10 * CONC_MS)
/* How long a sleeper on a CONC_SHARED lock sleeps at most on a word without WAKING before it
 * looks again (and retires a WAKING it then finds, as one that slept on WAKING does): a
 * waiter whose process was killed after a release woke it, or a process killed inside a
 * release between its CAS and its wake, leaves WAKING (or a HANDOFF) with no wake coming,
 * and the sleepers asleep already would otherwise sleep until some later acquire has to
 * sleep, for good if none does (CAVEATS). A private lock's waiters die with their process. */
#define CONC__LOCK_SHARED_RECHECK_NS CONC_FUTEX_SHARED_RECHECK_NS /* base.h's recheck */

CONC_STATIC_ASSERT(sizeof(conc_lock_t) == 4, "a conc_lock is one 32-bit futex word");
CONC_STATIC_ASSERT(((CONC__LOCK_HELD | CONC__LOCK_HANDOFF | CONC__LOCK_STARVING |
                     CONC__LOCK_WAKING | CONC__LOCK_HANDOFF_GEN) &
                    (CONC__LOCK_SLEEPER_MASK | CONC__LOCK_SHARED)) == 0 &&
                       (CONC__LOCK_SLEEPER_MASK & CONC__LOCK_SHARED) == 0,
                   "the lock word's flags, sleeper count and SHARED bit are disjoint");
CONC_STATIC_ASSERT((CONC__LOCK_SLEEPER_MASK & -CONC__LOCK_SLEEPER_MASK) == CONC__LOCK_SLEEPER_ONE,
                   "one sleeper is the count's lowest bit");

static inline void conc_lock_init(conc_lock_t *l, int flags) {
    conc__base_check_init_flags(flags, "conc_lock_init");
    conc_store(&l->word, (flags & CONC_SHARED) ? CONC__LOCK_SHARED : 0u, CONC_RELAXED);
    CONC_TSAN_MUTEX_CREATE(l, 0);
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * The sleep/wake protocol. A sleeper registers (count + 1) with a CAS that
 * fails if the lock became free, then sleeps with futex_wait(word, seen): the kernel re-checks
 * word == seen and queues the sleeper atomically with respect to wake. A release decides in
 * the CAS that frees the lock, then only wakes. So:
 *
 *   releaser                                   sleeper
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS word: seen -> seen + SLEEPER
 *   CAS word: v -> (v - HELD) | WAKING          [registers]
 *     v counts our sleeper, no WAKING [lock.R2]
 *   (the word is not touched again)
 *   futex_wake(word, 1)                        futex_wait(word, seen + SLEEPER)
 *                                                -> EAGAIN: word lost HELD, so it differs
 *                                              load word: free; CAS: claim
 *                                                [lock.A2]
 *
 *   Either the release comes first, and the sleeper's futex_wait finds the word changed and
 *   returns at once; or the sleeper is queued first, and the releaser's wake finds it. The
 *   releaser reads the count in the same CAS that frees the lock, so it cannot miss a sleeper
 *   that registered before; one that registers after sees the lock free. If the word returns
 *   to the very value the sleeper saw (a barger took the lock again), the sleeper sleeps, and
 *   that barger's release wakes someone: no lost wakeup, only the barger's turn first. A
 *   release that finds WAKING set skips its wake: the sleeper it stands for was woken and
 *   looks at the word again; if the wake that set it found nobody, the sleepers were on their
 *   way in: those whose value lacked WAKING find the word changed (EAGAIN); one that is the
 *   only sleeper registered retires it before it sleeps again, and those that sleep on it
 *   time out of that sleep after CONC__LOCK_WAKING_WAIT_NS and retire it, so the next
 *   release wakes again. Handing over, the releaser keeps HELD and sets HANDOFF,
 *   WAKING and the next generation in that CAS, then wakes a starving sleeper, or any: one
 *   asleep is found; one on its way in sees a handoff newer than the word it slept on and
 *   claims it. Nothing the releaser does after its CAS depends on the word, so the lock may
 *   be taken, released and freed meanwhile: a wake on a freed address wakes nobody, or a
 *   sleeper of whatever lives there now, which re-checks its own word. A woken sleeper (or a
 *   releaser) of a CONC_SHARED lock may die before it acts: a sleeper of such a lock sleeps
 *   at most CONC__LOCK_SHARED_RECHECK_NS at a time, then looks again and retires the WAKING
 *   the dead one left, or claims the handoff it left (made after the value it slept on).
 * ------------------------------------------------------------------------------------------- */

/* The word a registered sleeper installs when it takes the lock from v: v has HELD clear (the
 * lock is free) or HANDOFF set (handed over, and this sleeper may claim it: see
 * conc__lock_acquire_slow). Whoever claims retires WAKING (below). */
CONC_INLINE uint32_t conc__lock_claimed(uint32_t v, bool starving) {
    /* Any claimer retires WAKING: a sleeper back from EAGAIN that claims the lock before the
     * woken one runs would otherwise leave it set with no wake in flight (the wake found
     * nobody), and the next sleeper would sleep CONC__LOCK_WAKING_WAIT_NS on a free lock.
     * Retiring it early costs at most one extra wake (the woken one re-sleeps). */
    uint32_t next = ((v | CONC__LOCK_HELD) - CONC__LOCK_SLEEPER_ONE) & ~CONC__LOCK_WAKING;
    if (v & CONC__LOCK_HANDOFF) {
        next &= ~CONC__LOCK_HANDOFF;
        /* Handoff mode ends when the claimer itself waited less than CONC_LOCK_FAIR_NS... */
        if (!starving)
            next &= ~CONC__LOCK_STARVING;
    }
    /* ...or when nobody is left who could be starving (a sleeper may find the lock free with
     * STARVING still set: a release with sleepers does not clear it). With nobody left, the
     * handoff generation has nobody to tell apart either. */
    if ((next & CONC__LOCK_SLEEPER_MASK) == 0)
        next &= ~(CONC__LOCK_STARVING | CONC__LOCK_HANDOFF_GEN);
    return next;
}

/* The futex deadline of a sleeper about to sleep on v: its own, or, if v holds a HANDOFF, at
 * most CONC__LOCK_HANDOFF_WAIT_NS after it first saw it pending (*seen: when, 0 if it does
 * not sleep on a HANDOFF), when it may claim it whoever it was for. */
CONC_INLINE int64_t conc__lock_sleep_deadline(uint32_t v, int64_t deadline, int64_t *seen) {
    if (!(v & CONC__LOCK_HANDOFF)) {
        *seen = 0;
        return deadline;
    }
    if (*seen == 0)
        *seen = conc_now();
    int64_t fallback = *seen + CONC__LOCK_HANDOFF_WAIT_NS;
    return fallback < deadline ? fallback : deadline;
}

CONC_COLD int conc__lock_acquire_slow(conc_lock_t *l, int64_t deadline) {
    uint32_t v = conc_load(&l->word, CONC_RELAXED);
    int flags = conc_futex_flags(v, CONC__LOCK_SHARED);

    /* Spin while nobody sleeps and another CPU can release the lock meanwhile: relaxed loads
     * with exponential backoff between them (base.h's CONC_SPIN_BACKOFF). Every load pulls the
     * line away from the owner, which then pays a cache miss to release; backing off lets an
     * owner with a short critical section run many rounds undisturbed. */
    conc_spin_t spin = conc_spin_begin(CONC_LOCK_SPIN, CONC_SPIN_BACKOFF, deadline);
    while (!(v & CONC__LOCK_SLEEPER_MASK)) {
        if (!(v & CONC__LOCK_HELD)) {
            /* [lock.A1] acquire: pairs with the releaser's [lock.R1]/[lock.R2]. */
            if (conc_cas(&l->word, &v, v | CONC__LOCK_HELD, CONC_ACQUIRE, CONC_RELAXED))
                return 0;
            continue; /* v is fresh: decide again */
        }
        if (!conc_spin_next(&spin))
            break;
        v = conc_load(&l->word, CONC_RELAXED);
    }

    /* Take it if free, else register as a sleeper: one CAS decides which. */
    uint32_t next;
    for (;;) {
        CONC_CHAOS_POINT();
        if (!(v & CONC__LOCK_HELD)) {
            if (conc_cas(&l->word, &v, v | CONC__LOCK_HELD, CONC_ACQUIRE,
                         CONC_RELAXED)) /* [lock.A1] */
                return 0;
            continue;
        }
        if (conc_deadline_passed(deadline))
            return ETIMEDOUT; /* a past deadline: we tried once */
        /* Relaxed: registering publishes nothing; the kernel's re-check of the word in
         * futex_wait is what makes the sleep safe (timeline above). */
        next = v + CONC__LOCK_SLEEPER_ONE;
        if (conc_cas(&l->word, &v, next, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    v = next;

    int64_t since = 0;        /* when we first slept; read lazily, the clock costs ~50 ns */
    int64_t handoff_seen = 0; /* when we first slept on the pending HANDOFF; 0: none */
    bool starving = false;
    bool woken = false;        /* our last futex_wait returned because a release woke us */
    bool timeout = false;      /* our own deadline has passed */
    bool waking_stale = false; /* our sleep's WAKING or CONC_SHARED cap ran out: a WAKING
                                  the word shows may be stale */
    uint32_t slept = v;        /* the value we last slept on, or tried to */
    for (;;) {
        bool claim = !(v & CONC__LOCK_HELD);
        if (!claim && (v & CONC__LOCK_HANDOFF)) {
            /* A handoff is ours to claim if it came after we slept: a release's wake found us
             * (woken), or it was made after the value we slept on (no HANDOFF there, or
             * another generation), so its wake may have found nobody because we were on our
             * way into the kernel. A newcomer's turn comes after the one it found pending,
             * or once that has waited CONC__LOCK_HANDOFF_WAIT_NS (nobody came for it: a
             * dead or stopped sleeper's, CAVEATS). */
            claim = woken || !(slept & CONC__LOCK_HANDOFF) ||
                    ((slept ^ v) & CONC__LOCK_HANDOFF_GEN) != 0 ||
                    (handoff_seen != 0 && conc_now() - handoff_seen >= CONC__LOCK_HANDOFF_WAIT_NS);
        }
        if (claim) {
            /* [lock.A2] acquire: pairs with [lock.R1]/[lock.R2], the release that freed or
             * handed over the lock. */
            if (conc_cas(&l->word, &v, conc__lock_claimed(v, starving), CONC_ACQUIRE, CONC_RELAXED))
                return 0;
            continue; /* v is fresh: decide again */
        }
        if (timeout) {
            /* Held by someone else at our deadline: deregister. The last sleeper out also ends
             * handoff mode, which only sleepers can use, and turns a pending HANDOFF (not
             * ours) into a free lock: [lock.R3] release, continuing the release sequence of
             * the [lock.R2] that made it; pairs with [lock.A1]/[lock.A2] of the next owner. */
            next = (v - CONC__LOCK_SLEEPER_ONE) & ~CONC__LOCK_WAKING;
            if ((next & CONC__LOCK_SLEEPER_MASK) == 0) {
                next &= ~(CONC__LOCK_STARVING | CONC__LOCK_HANDOFF_GEN);
                if (next & CONC__LOCK_HANDOFF)
                    next &= ~(CONC__LOCK_HELD | CONC__LOCK_HANDOFF);
            }
            if (conc_cas(&l->word, &v, next, CONC_RELEASE, CONC_RELAXED))
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
        /* Before sleeping again: a woken sleeper retires its WAKING (else the next release
         * would not wake anyone), as does one whose sleep on WAKING timed out (a wake that
         * found nobody left it) or whose CONC_SHARED sleep ran out (a dead process may have
         * left it), and one that is the only sleeper registered (no other can be in flight:
         * the WAKING was for a wake that missed it on its way in, and sleeping on it would
         * make the releases skip their wakes for CONC__LOCK_WAKING_WAIT_NS while a barger
         * takes the lock again and again); a starving one asks for a handoff. Relaxed: the
         * releaser reads both in its CAS [lock.R2]; nothing else is published. */
        next = v;
        if (woken || waking_stale || (v & CONC__LOCK_SLEEPER_MASK) == CONC__LOCK_SLEEPER_ONE)
            next &= ~CONC__LOCK_WAKING;
        if (starving)
            next |= CONC__LOCK_STARVING;
        if (next != v) {
            if (!conc_cas(&l->word, &v, next, CONC_RELAXED, CONC_RELAXED))
                continue; /* v is fresh: decide again */
            v = next;
        }
        slept = v;
        int64_t dl = conc__lock_sleep_deadline(v, deadline, &handoff_seen);
        /* On a word with WAKING: at most CONC__LOCK_WAKING_WAIT_NS, in case it is stale; on a
         * CONC_SHARED lock, at most CONC__LOCK_SHARED_RECHECK_NS in any case, in case a dead
         * process left a WAKING or a HANDOFF after we slept. */
        bool on_waking = (v & CONC__LOCK_WAKING) != 0;
        bool recheck = on_waking || (flags & CONC_SHARED);
        if (recheck) {
            int64_t w =
                conc_now() + (on_waking ? CONC__LOCK_WAKING_WAIT_NS : CONC__LOCK_SHARED_RECHECK_NS);
            if (w < dl)
                dl = w;
        }
        CONC_CHAOS_POINT();
        int r = conc_futex_wait_tagged(
            &l->word, v, flags, starving ? CONC__LOCK_TAG_STARVING : CONC__LOCK_TAG_PLAIN, dl);
        woken = r == 0;
        timeout = r == ETIMEDOUT && conc_deadline_passed(deadline);
        waking_stale = recheck && r == ETIMEDOUT;
        v = conc_load(&l->word, CONC_RELAXED);
    }
}

/* The release fast path's guess (the word is HELD and nothing else) was wrong; v is the word.
 * Decide everything in the one CAS that frees the lock or hands it over, then only wake:
 * after that CAS the lock may be taken, released and freed by others, so the word is not
 * touched again (a futex_wake on its address is harmless even then: it wakes nobody, or a
 * sleeper of whatever lives there now, and every futex user tolerates spurious wakes). */
CONC_COLD void conc__lock_release_slow(conc_lock_t *l, uint32_t v) {
    uint32_t next;
    do {
        if (!(v & CONC__LOCK_HELD) || (v & CONC__LOCK_HANDOFF))
            CONC_ABORT("conc_lock_release: the lock is not held");
        if (!(v & CONC__LOCK_SLEEPER_MASK)) {
            next = v & CONC__LOCK_SHARED; /* nobody to wake; no STARVING without sleepers */
        } else if (v & CONC__LOCK_STARVING) {
            /* Hand the lock to a sleeper: it stays HELD, so no newcomer can barge past the
             * starving sleeper; the next generation tells sleepers that slept before it from
             * newcomers. */
            next = ((v | CONC__LOCK_HANDOFF | CONC__LOCK_WAKING) & ~CONC__LOCK_HANDOFF_GEN) |
                   ((v + CONC__LOCK_HANDOFF_GEN_ONE) & CONC__LOCK_HANDOFF_GEN);
        } else if (v & CONC__LOCK_WAKING) {
            next = v & ~CONC__LOCK_HELD; /* a woken sleeper is on its way: no second wake */
        } else {
            next = (v & ~CONC__LOCK_HELD) | CONC__LOCK_WAKING; /* we wake; the woken retires it */
        }
        /* [lock.R2] release: pairs with [lock.A1]/[lock.A2] of the next owner (a claimer of
         * the handoff included). */
    } while (!conc_cas(&l->word, &v, next, CONC_RELEASE, CONC_RELAXED));
    if (!(v & CONC__LOCK_SLEEPER_MASK))
        return;
    int flags = conc_futex_flags(v, CONC__LOCK_SHARED);
    CONC_CHAOS_POINT();
    if (next & CONC__LOCK_HANDOFF) {
        /* To the oldest starving sleeper if one is asleep (a sleeper goes to the back of the
         * kernel's queue each time it sleeps again, so "oldest in the queue" is not "waited
         * longest"); else to the oldest sleeper. If nobody is asleep, the sleepers are on
         * their way in and claim it themselves. */
        if (conc_futex_wake_tagged(&l->word, 1, flags, CONC__LOCK_TAG_STARVING) == 0)
            (void)conc_futex_wake(&l->word, 1, flags);
    } else if (!(v & CONC__LOCK_WAKING)) {
        (void)conc_futex_wake(&l->word, 1, flags);
    }
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* One RMW: set HELD (a `lock bts` on x86) and see whether it was already set. It works whatever
 * else the word holds (sleepers, WAKING, SHARED), so a free lock is taken in one instruction
 * even under contention; during a HANDOFF the word stays HELD, so nobody barges then.
 * [lock.A1] acquire: pairs with [lock.R1]/[lock.R2], the previous owner's release, so its
 * writes are visible to us. */
CONC_INLINE bool conc__lock_fast(conc_lock_t *l) {
    return !(conc_fetch_or(&l->word, CONC__LOCK_HELD, CONC_ACQUIRE) & CONC__LOCK_HELD);
}

static inline void conc_lock_acquire(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_LOCK(l, 0);
    if (CONC_UNLIKELY(!conc__lock_fast(l)))
        (void)conc__lock_acquire_slow(l, CONC_FOREVER);
    CONC_TSAN_MUTEX_POST_LOCK(l, 0);
}

CONC_NODISCARD static inline int conc_lock_try_acquire(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_LOCK(l, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = CONC_LIKELY(conc__lock_fast(l)) ? 0 : EBUSY;
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

/* One RMW: a CAS from HELD alone to 0 (a `lock cmpxchg`). [lock.R1] release: pairs with the
 * next owner's [lock.A1]/[lock.A2]. If the word held anything besides HELD (sleepers, a
 * starving sleeper, SHARED, or no HELD at all: misuse), the CAS fails and the slow path
 * decides on the word it returned, in a CAS of its own, and then only wakes. */
static inline void conc_lock_release(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_UNLOCK(l);
    uint32_t v = conc_load(&l->word, CONC_RELAXED);
    if (CONC_UNLIKELY(v != CONC__LOCK_HELD ||
                      !conc_cas(&l->word, &v, 0u, CONC_RELEASE, CONC_RELAXED)))
        conc__lock_release_slow(l, v);
    CONC_TSAN_MUTEX_POST_UNLOCK(l);
}

/* Relaxed: a snapshot for assertions and diagnostics, ordered with nothing. */
static inline bool conc_lock_is_locked(const conc_lock_t *l) {
    return (conc_load(&l->word, CONC_RELAXED) & CONC__LOCK_HELD) != 0;
}

/* -------------------------------------------------------------------------------------------
 * Scoped form: CONC_WITH_LOCK(&l) { ... }  (Python's `with lock:`)
 *
 * Acquires l, runs the block, releases l however the block is left: falling off its end,
 * `return`, `break`, `continue` or a `goto` out of it. Built on __attribute__((cleanup)) (gcc
 * and clang, C and C++): the guard variable's cleanup releases the lock when the variable
 * goes out of scope; the hidden one-pass `for` releases it on the normal way out.
 * Caveats:
 *   - `break` and `continue` inside the block end the block: they bind to the hidden `for`,
 *     not to a loop around CONC_WITH_LOCK (to leave that loop, set a flag or use goto).
 *   - goto out of the block releases; never jump into it (past the acquire).
 *   - longjmp out of the block and exit() skip cleanups: the lock stays held.
 *   - C++ exceptions unwinding through the block run the cleanup (g++ and clang++ treat it as
 *     a destructor), but in C code compiled without -fexceptions they do not; in C++ prefer
 *     an RAII guard anyway.
 *   - Blocking acquire only: for a deadline use conc_lock_acquire_until and release yourself.
 * ------------------------------------------------------------------------------------------- */

#define CONC_WITH_LOCK(l) CONC__LOCK_WITH(conc__lock_guard, (l))

/* -------------------------------------------------------------------------------------------
 * For other conc headers. The only lock internals another header may use: a change to the
 * word's layout breaks here, at one declared place.
 * ------------------------------------------------------------------------------------------- */

/* The scoped-form mechanism (CONC_WITH_LOCK above; rwlock.h and rlock.h build theirs on it),
 * written once for every kind of lock:
 *   CONC__LOCK_GUARD_DEFINE(guard, lock_type, acquire, release) defines the guard type
 *     `guard` (its `held` points at the object while held, NULL once released), guard_take
 *     (acquire, then a guard holding the object: the object is evaluated once, and its type
 *     is checked) and guard_drop (release through the guard if still held). `release` returns
 *     void: a release that can fail gets a wrapper that aborts (see rlock.h).
 *   CONC__LOCK_WITH(guard, obj) is the statement prefix: one hidden one-pass `for` per use,
 *     its guard named uniquely by __COUNTER__, dropped by cleanup on every way out and by the
 *     `for` on the normal one. The caveats are CONC_WITH_LOCK's. */
#define CONC__LOCK_GUARD_DEFINE(guard, lock_type, acquire, release)                                \
    typedef struct guard {                                                                         \
        lock_type *held;                                                                           \
    } guard;                                                                                       \
    CONC_INLINE guard guard##_take(lock_type *obj) {                                               \
        acquire(obj);                                                                              \
        guard g = {obj};                                                                           \
        return g;                                                                                  \
    }                                                                                              \
    static inline void guard##_drop(guard *g) {                                                    \
        if (g->held != NULL) {                                                                     \
            release(g->held);                                                                      \
            g->held = NULL;                                                                        \
        }                                                                                          \
    }
#define CONC__LOCK_WITH_CAT2(a, b) a##b
#define CONC__LOCK_WITH_CAT(a, b) CONC__LOCK_WITH_CAT2(a, b)
#define CONC__LOCK_WITH_NAMED(guard, obj, g)                                                       \
    for (guard g __attribute__((cleanup(guard##_drop))) = guard##_take(obj); g.held != NULL;       \
         guard##_drop(&g))
#define CONC__LOCK_WITH(guard, obj)                                                                \
    CONC__LOCK_WITH_NAMED(guard, obj, CONC__LOCK_WITH_CAT(conc__lock_scope_, __COUNTER__))

CONC__LOCK_GUARD_DEFINE(conc__lock_guard, conc_lock_t, conc_lock_acquire, conc_lock_release)

/* Relaxed: the mark is written by init only, before the lock is shared. */
static inline bool conc__lock_is_shared(const conc_lock_t *l) {
    return (conc_load(&l->word, CONC_RELAXED) & CONC__LOCK_SHARED) != 0;
}

/* Acquires l, polling the word for up to `pauses` pauses first (base.h's spin, steady pace),
 * under the lock's own rule: only while nobody sleeps on it, and taking it with try_acquire
 * (so the TSan annotations and the barging rules are the lock's). For a caller that knows
 * the holder is about to release: conc_cond after its wait, whose notifier usually still
 * holds the lock for the length of its futex_wake syscall. The lock's own spin is tuned for
 * short critical sections and would give up and sleep ("hurry up and wait"). */
CONC_COLD void conc__lock_acquire_polling_slow(conc_lock_t *l, int pauses) {
    conc_spin_t spin = conc_spin_begin(pauses, CONC_SPIN_STEADY, CONC_FOREVER);
    while (conc_spin_next(&spin)) {
        uint32_t v = conc_load(&l->word, CONC_RELAXED);
        if (v & CONC__LOCK_SLEEPER_MASK)
            break;
        if (!(v & CONC__LOCK_HELD)) {
            if (conc_lock_try_acquire(l) == 0)
                return;
            break;
        }
    }
    conc_lock_acquire(l);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_LOCK_H */

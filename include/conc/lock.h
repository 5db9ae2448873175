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
 *   init      conc_lock_init(l, flags)            flags: 0 or CONC_SHARED; or = CONC_LOCK_INIT
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
 *   No destroy is needed: a lock owns no resources. Free (or reuse) a lock's memory only once
 *   every conc_lock_release on it has returned, not merely once it is unlocked (POSIX allows
 *   the latter for pthread mutexes; conc does not, yet): a release that found sleepers looks
 *   at the word again after freeing the lock (to wake one, or to hand the lock over), so a
 *   thread that takes the lock, releases it and frees it meanwhile frees memory that release
 *   still writes. The same holds for an rlock, a cond's lock and an rwlock. Patterns that
 *   break, and their fix:
 *     - the last holder frees the object that holds the lock: drop the reference after the
 *       release (`conc_lock_release(&o->l); if (conc_fetch_sub(&o->refs, 1, CONC_ACQ_REL)
 *       == 1) free(o);`), so every releaser's drop follows its own release;
 *     - a waiter returns from the frame that holds the lock (and cond) another thread
 *       notifies through: signal a one-shot completion with conc_event_t, conc_sem_t or a
 *       future (free-safe once the set or release returned), or keep the lock in memory
 *       that outlives both threads.
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
 *     woke it to hand it the lock. One that dies while asleep leaves its registration in the
 *     word: the lock goes on working, but each release that finds nobody else asleep makes
 *     two futex wakes that find nobody, and a release that hands the lock to a starving
 *     waiter that is not there (the dead one, or a live one whose claim kept STARVING
 *     because the dead registration looks like another waiter) holds the lock for
 *     CONC__LOCK_HANDOFF_WAIT_NS (10 ms) before it gives up: about once per stretch of
 *     starvation. A waiter stopped (SIGSTOP, a debugger) costs the same while stopped, and
 *     takes its turn once continued.
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
 *   The word: bit 0 HELD, bit 1 HANDOFF, bit 2 STARVING, bit 3 WAKING, bits 4..30 the number
 *   of registered sleepers, bit 31 SHARED. Acquire is one RMW that sets HELD and sees whether
 *   it was set already; release is one RMW that clears HELD and sees whether anything else is
 *   in the word. Both are inline and make no syscall, and both stay one RMW when sleepers
 *   are registered, so a busy lock is as cheap to pass around as an idle one. Only a failed
 *   acquire, or a release that finds sleepers, goes to the cold paths below:
 *   - a contended acquire spins (bounded: CONC_LOCK_SPIN pauses, the looks backing off) while
 *     nobody sleeps and more than one CPU exists, then registers as a sleeper (+1 in the
 *     count) and sleeps on the word;
 *   - a release that sees sleepers (and finds the lock still free) wakes one, unless WAKING
 *     says a sleeper it (or an earlier release) woke has not run yet: that sleeper will
 *     re-check the word anyway, so a second
 *     wake would only add a thread fighting for the CPU. This keeps one woken thread in
 *     flight, like glibc's 0/1/2 mutex, while still counting sleepers exactly. The woken
 *     thread clears WAKING in its next CAS on the word; a release whose wake found nobody in
 *     the kernel clears it itself, after making sure no registered sleeper is left asleep
 *     next to a free lock;
 *   - barging: a woken sleeper competes with newcomers, which is what makes a busy lock fast.
 *     A sleeper that has waited more than CONC_LOCK_FAIR_NS sets STARVING; the next release
 *     then takes the lock straight back (unless a newcomer beat it to that), sets HANDOFF and
 *     wakes one sleeper (the kernel wakes a word's sleepers
 *     in FIFO order, so the oldest). Only a thread returning from a wake may claim a HANDOFF,
 *     so newcomers and sleepers that have not been woken cannot take the lock meant for the
 *     oldest sleeper. The releaser keeps waking until some sleeper took the wake, or takes
 *     the HANDOFF back as a plain release if every sleeper left (timed out) or none claimed
 *     it within 10 ms (a dead or stopped waiter: CAVEATS): a HANDOFF is never stranded.
 *     STARVING clears when a claimer itself waited less than CONC_LOCK_FAIR_NS, or when no
 *     sleeper is left.
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

#define CONC__LOCK_HELD 0x1u                /* someone owns the lock */
#define CONC__LOCK_HANDOFF 0x2u             /* owned by a sleeper that has not claimed it yet */
#define CONC__LOCK_STARVING 0x4u            /* a sleeper waited too long: releases hand off */
#define CONC__LOCK_WAKING 0x8u              /* a woken sleeper has not run yet: no second wake */
#define CONC__LOCK_SLEEPER_ONE 0x10u        /* one registered sleeper */
#define CONC__LOCK_SLEEPER_MASK 0x7ffffff0u /* the sleeper count */
#define CONC__LOCK_SHARED 0x80000000u       /* process-shared: non-private futex ops */
#define CONC__LOCK_TAG_PLAIN 0x1u           /* futex tag of a sleeper that is not starving */
#define CONC__LOCK_TAG_STARVING 0x2u        /* futex tag of a starving sleeper: handoffs go here */
/* How long a handoff may go unclaimed (wakes a sched_yield apart) before it is retracted into
 * a plain release: a sleeper preempted on its way into futex_wait, on a loaded machine or under
 * a sanitizer, gets there well within it; one that died or was stopped costs the releaser this
 * once (the retract also clears STARVING, which a live starving sleeper sets again). */
#define CONC__LOCK_HANDOFF_WAIT_NS (10 * CONC_MS)

CONC_STATIC_ASSERT(sizeof(conc_lock_t) == 4, "a conc_lock is one 32-bit futex word");
CONC_STATIC_ASSERT(((CONC__LOCK_HELD | CONC__LOCK_HANDOFF | CONC__LOCK_STARVING |
                     CONC__LOCK_WAKING) &
                    (CONC__LOCK_SLEEPER_MASK | CONC__LOCK_SHARED)) == 0 &&
                       (CONC__LOCK_SLEEPER_MASK & CONC__LOCK_SHARED) == 0,
                   "the lock word's flags, sleeper count and SHARED bit are disjoint");
CONC_STATIC_ASSERT((CONC__LOCK_SLEEPER_MASK & -CONC__LOCK_SLEEPER_MASK) == CONC__LOCK_SLEEPER_ONE,
                   "one sleeper is the count's lowest bit");

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
 *   old = fetch_sub(word, HELD)   [lock.R1]
 *   old counts our sleeper, the lock is still
 *   free, no WAKING: CAS sets WAKING; wake(1)
 *                                              futex_wait(word, seen + SLEEPER)
 *                                                -> EAGAIN: word lost HELD, so it differs
 *
 *   Either the release comes first, and the sleeper's futex_wait finds the word changed and
 *   returns at once; or the sleeper is queued first, and the releaser's wake finds it. The
 *   releaser reads the count in the same RMW that frees the lock, so it cannot miss a sleeper
 *   that registered before the lock was freed; one that registers after sees the lock free.
 *   If a barger takes the lock before the releaser looks again, the releaser leaves the wake
 *   to the barger's own release. If the word returns to the very value the sleeper saw (a
 *   barger took the lock again), the sleeper sleeps, and that barger's release wakes someone:
 *   no lost wakeup, only the barger's turn first. WAKING set means a woken thread (or a
 *   releaser still in conc__lock_wake_one_slow) will look at the word again, so skipping the
 *   wake then loses nothing either.
 * ------------------------------------------------------------------------------------------- */

/* The word a registered sleeper installs when it takes the lock from v: v has HELD clear (the
 * lock is free) or, for a sleeper that was woken, HANDOFF set (handed to it). A woken sleeper
 * also retires the WAKING it was woken under. */
CONC_INLINE uint32_t conc__lock_claimed(uint32_t v, bool woken, bool starving) {
    uint32_t next = (v | CONC__LOCK_HELD) - CONC__LOCK_SLEEPER_ONE;
    if (woken)
        next &= ~CONC__LOCK_WAKING;
    if (v & CONC__LOCK_HANDOFF) {
        next &= ~CONC__LOCK_HANDOFF;
        /* Handoff mode ends when the claimer itself waited less than CONC_LOCK_FAIR_NS... */
        if (!starving)
            next &= ~CONC__LOCK_STARVING;
    }
    /* ...or when nobody is left who could be starving. This holds for a plain claim of a free
     * lock too: a release frees the lock (fetch_sub) before it looks for STARVING, so the last
     * sleeper may find the lock free with STARVING still set (found by tests/models/lock.pml). */
    if ((next & CONC__LOCK_SLEEPER_MASK) == 0)
        next &= ~CONC__LOCK_STARVING;
    return next;
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
        if (conc_cas(&l->word, &v, v + CONC__LOCK_SLEEPER_ONE, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    v += CONC__LOCK_SLEEPER_ONE;

    int64_t since = 0; /* when we first slept; read lazily, the clock costs ~50 ns */
    bool starving = false;
    bool woken = false; /* our last futex_wait returned because a release woke us */
    int r = 0;
    for (;;) {
        if (!(v & CONC__LOCK_HELD) || (woken && (v & CONC__LOCK_HANDOFF))) {
            /* [lock.A2] acquire: pairs with [lock.R2], the release that freed or handed over the
             * lock. */
            if (conc_cas(&l->word, &v, conc__lock_claimed(v, woken, starving), CONC_ACQUIRE,
                         CONC_RELAXED))
                return 0;
            continue;
        }
        if (r == ETIMEDOUT) {
            /* Held by someone else at our deadline: deregister. The last sleeper out also
             * ends handoff mode, which only sleepers can use. A pending HANDOFF is not ours
             * (we were not woken); its releaser is still waking, and takes it back if we
             * were the last sleeper. */
            uint32_t next = v - CONC__LOCK_SLEEPER_ONE;
            if ((next & CONC__LOCK_SLEEPER_MASK) == 0)
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
        /* Before sleeping again: a woken thread retires its WAKING (or the next release would
         * not wake anyone), and a starving one asks for a handoff. Relaxed: the releaser reads
         * both in its CAS [lock.R2]; nothing else is published. */
        uint32_t next = v;
        if (woken)
            next &= ~CONC__LOCK_WAKING;
        if (starving)
            next |= CONC__LOCK_STARVING;
        if (next != v) {
            if (!conc_cas(&l->word, &v, next, CONC_RELAXED, CONC_RELAXED))
                continue; /* v is fresh: decide again */
            v = next;
        }
        CONC_CHAOS_POINT();
        r = conc_futex_wait_tagged(&l->word, v, flags,
                                   starving ? CONC__LOCK_TAG_STARVING : CONC__LOCK_TAG_PLAIN,
                                   deadline);
        woken = r == 0;
        v = conc_load(&l->word, CONC_RELAXED);
    }
}

/* Whether a handoff that found nobody to wake may go on waking: for CONC__LOCK_HANDOFF_WAIT_NS
 * from the first time (*since: 0 until then). */
CONC_INLINE bool conc__lock_handoff_waiting(int64_t *since) {
    int64_t now = conc_now();
    if (*since == 0)
        *since = now;
    return now - *since < CONC__LOCK_HANDOFF_WAIT_NS;
}

/* After a release that set WAKING and woke: if the wake found nobody in the kernel, nobody
 * will retire WAKING, and releases skipped their wakes meanwhile. So take stock:
 *  - lock free, sleepers registered: retire WAKING, then wake once more. A sleeper that got
 *    into the kernel before that CAS is found by the last wake; one that gets there after
 *    it passes futex_wait a word that still had WAKING, so the kernel refuses it (EAGAIN)
 *    and it finds the lock free. A later release sees WAKING clear and wakes for itself.
 *  - handed off, sleepers registered: wake again (only a woken sleeper may claim a handoff;
 *    the sleepers are on their way into futex_wait, or out of it), for at most
 *    CONC__LOCK_HANDOFF_WAIT_NS; then retract the handoff into a plain release without
 *    STARVING and wake once more, as above.
 *  - a HANDOFF whose sleepers all left turns into a plain free lock;
 *  - otherwise retire WAKING: the holder's release wakes later.
 * No case waits for a registered sleeper to arrive, so one that died (a CONC_SHARED lock's
 * process killed while it waited) or is stopped (SIGSTOP, a debugger) never holds a release:
 * its registration stays in the count (each release then pays a wake that finds nobody), and
 * a stopped sleeper, once continued, finds the word changed and looks again.
 * tests/models/lock.pml checks every case. */
CONC_COLD void conc__lock_wake_one_slow(conc_lock_t *l, int flags, bool handoff) {
    int64_t handoff_since = 0; /* when a handoff first found nobody to wake; read lazily */
    for (;;) {
        CONC_CHAOS_POINT();
        /* A handoff goes to the oldest starving sleeper if one is asleep (a sleeper goes to
         * the back of the kernel's queue each time it sleeps again, so "oldest in the queue"
         * is not "waited longest"); else, and for plain wakes, to the oldest sleeper. */
        if (handoff && conc_futex_wake_tagged(&l->word, 1, flags, CONC__LOCK_TAG_STARVING) > 0)
            return;
        if (conc_futex_wake(&l->word, 1, flags) > 0)
            return; /* the woken thread retires WAKING */
        uint32_t v = conc_load(&l->word, CONC_RELAXED), next;
        bool wake_again, wake_last;
        do {
            bool sleepers = (v & CONC__LOCK_SLEEPER_MASK) != 0;
            wake_again = wake_last = false;
            if (!(v & CONC__LOCK_WAKING))
                return; /* a later release or a waking thread took over */
            if ((v & CONC__LOCK_HANDOFF) && !sleepers) {
                /* Every sleeper left: the handoff becomes a release. [lock.R3] release: pairs
                 * with [lock.A1] of whoever takes the lock next. */
                next = v & CONC__LOCK_SHARED;
            } else if (sleepers && (v & CONC__LOCK_HANDOFF) &&
                       conc__lock_handoff_waiting(&handoff_since)) {
                wake_again = true;
                break;
            } else if (sleepers && (v & CONC__LOCK_HANDOFF)) {
                /* Nobody arrived to claim it: a plain release ([lock.R3] as above) that keeps
                 * the sleepers; STARVING goes too, so a sleeper that is gone costs this wait
                 * once (a live starving one sets it again before it sleeps). */
                next = v & ~(CONC__LOCK_HELD | CONC__LOCK_HANDOFF | CONC__LOCK_WAKING |
                             CONC__LOCK_STARVING);
                wake_last = true;
            } else if (sleepers && !(v & CONC__LOCK_HELD)) {
                next = v & ~CONC__LOCK_WAKING;
                wake_last = true;
            } else {
                next = v & ~CONC__LOCK_WAKING;
            }
        } while (!conc_cas(&l->word, &v, next, CONC_RELEASE, CONC_RELAXED));
        if (wake_last) {
            CONC_CHAOS_POINT();
            (void)conc_futex_wake(&l->word, 1, flags); /* for a sleeper queued before the CAS */
            return;
        }
        if (!wake_again)
            return;
        sched_yield(); /* let the registered sleeper reach futex_wait */
    }
}

/* The release fast path has already cleared HELD [lock.R1]; `old` is the word it replaced. Here:
 * misuse, handing the lock over to a starving sleeper, or waking one. */
CONC_COLD void conc__lock_release_slow(conc_lock_t *l, uint32_t old) {
    if (!(old & CONC__LOCK_HELD) || (old & CONC__LOCK_HANDOFF))
        CONC_ABORT("conc_lock_release: the lock is not held");
    if (!(old & CONC__LOCK_SLEEPER_MASK))
        return; /* nobody to wake (STARVING never outlives the last sleeper) */
    uint32_t v = old - CONC__LOCK_HELD, next;
    for (;;) {
        /* Someone barged in since [lock.R1]: its own release hands over or wakes. All sleepers
         * gone (timed out): nothing to do. */
        if ((v & CONC__LOCK_HELD) || !(v & CONC__LOCK_SLEEPER_MASK))
            return;
        if (v & CONC__LOCK_STARVING) {
            /* Take the lock back and hand it to a sleeper: it stays HELD, so no newcomer can
             * barge past the starving sleeper. [lock.R2] release: pairs with the claimer's
             * [lock.A2] (and continues [lock.R1]'s release sequence). */
            next = v | CONC__LOCK_HELD | CONC__LOCK_HANDOFF | CONC__LOCK_WAKING;
        } else if (v & CONC__LOCK_WAKING) {
            return; /* a woken sleeper is on its way: it re-checks the word before sleeping */
        } else {
            next = v | CONC__LOCK_WAKING; /* we wake; the woken sleeper retires it */
        }
        if (conc_cas(&l->word, &v, next, CONC_RELEASE, CONC_RELAXED))
            break;
    }
    if (!(v & CONC__LOCK_WAKING))
        conc__lock_wake_one_slow(l, conc_futex_flags(v, CONC__LOCK_SHARED),
                                 (next & CONC__LOCK_HANDOFF) != 0);
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

/* One RMW: clear HELD (a `lock xadd`). [lock.R1] release: pairs with the next owner's
 * [lock.A1]/[lock.A2]. If the word held anything besides HELD (and SHARED), the slow path
 * sees what: sleepers to
 * wake, a starving sleeper to hand the lock to, or misuse (no HELD at all). */
static inline void conc_lock_release(conc_lock_t *l) {
    CONC_TSAN_MUTEX_PRE_UNLOCK(l);
    uint32_t old = conc_fetch_sub(&l->word, CONC__LOCK_HELD, CONC_RELEASE);
    if (CONC_UNLIKELY((old & ~CONC__LOCK_SHARED) != CONC__LOCK_HELD))
        conc__lock_release_slow(l, old);
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

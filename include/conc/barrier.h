/* conc/barrier.h - a reusable cyclic barrier that can break - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Barrier (and pthread_barrier_t) in C: `parties` threads wait until all
 * of them have arrived, then all go on together, and the barrier is ready for the next round.
 * A party that gives up (a deadline) or an abort breaks the barrier for everyone, as Python's
 * BrokenBarrierError does, until reset.
 *
 * CONTENTS  quick start, API, errors, ordering contract, thread safety, configuration,
 *           caveats, design
 *
 * QUICK START (examples/21_barrier_phases.c)
 *     static conc_barrier_t phase_end = CONC_BARRIER_INIT(4);   // four workers
 *     static double cell[4], next[4];
 *     int w = 0;                                     // this worker's slice
 *     next[w] = cell[w] + 1;                         // compute its part of the next step
 *     if (conc_barrier_wait(&phase_end) == CONC_BARRIER_LEADER)
 *         for (int i = 0; i < 4; i++)                // one party per round publishes it...
 *             cell[i] = next[i];
 *     conc_barrier_wait(&phase_end);                 // ...while the others wait here
 *
 * API
 *   init      conc_barrier_init(b, parties, flags)   0, EINVAL; flags: 0 or CONC_SHARED
 *             = CONC_BARRIER_INIT(parties)            private
 *   wait      conc_barrier_wait(b)                    0, CONC_BARRIER_LEADER, CONC_BARRIER_BROKEN
 *             conc_barrier_wait_until(b, dl)          ... or ETIMEDOUT (and the barrier breaks)
 *   break     conc_barrier_abort(b)                   break it: every waiter fails at once
 *             conc_barrier_reset(b)                   break the round in progress, wait for its
 *                                                     waiters to leave, ready again
 *   query     conc_barrier_parties(b), conc_barrier_waiting(b) (a snapshot),
 *             conc_barrier_is_broken(b)
 *
 * ERRORS
 *   wait returns 0 to every party but one, and CONC_BARRIER_LEADER (-1, like
 *   PTHREAD_BARRIER_SERIAL_THREAD) to the one whose arrival completed the round: negative,
 *   so it never collides with an error. CONC_BARRIER_BROKEN (ENOTRECOVERABLE: the errno of a
 *   robust mutex whose state is lost until re-init, the nearest pthread meaning of "broken")
 *   when the barrier is broken on arrival or breaks while waiting (Python: BrokenBarrierError).
 *   wait_until: ETIMEDOUT to the party whose deadline passed (never early; a past deadline
 *   still completes a round that its arrival completes); it breaks the barrier, so the other
 *   parties of that round get CONC_BARRIER_BROKEN. init: EINVAL for 0 parties or more than
 *   CONC_BARRIER_PARTIES_MAX, or flags other than CONC_SHARED. wait: EINVAL on a barrier that
 *   was never initialised (0 parties: zeroed memory, CONC_BARRIER_INIT(0)) or was given more
 *   than CONC_BARRIER_PARTIES_MAX by CONC_BARRIER_INIT (which cannot report it).
 *
 * ORDERING CONTRACT
 *   Everything every party wrote before its wait of a round is visible to every party when its
 *   wait of that round returns 0 or CONC_BARRIER_LEADER. A broken round orders nothing.
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init. More threads than parties may use one
 *   barrier: each round takes the first `parties` arrivals. reset blocks until the waiters of
 *   the round it broke have returned; waits that arrive meanwhile fail (it is broken).
 *   No destroy is needed. Free or reuse the memory once every party's wait of the last
 *   round has returned, not when one's has: the leader reads the barrier after it lets the
 *   others go, to wake them (pthread_barrier_destroy waits for the same).
 *
 * CONFIGURATION
 *   CONC_BARRIER_SPIN  pauses spent looking at the word (base.h's conc_spin: a look after each
 *                      pause, ~20 ns) before a waiter sleeps, when the parties fit on the
 *                      CPUs (default 128: a few microseconds, what a running partner needs to
 *                      arrive). 0 disables spinning.
 *   CONC_BARRIER_YIELDS  sched_yield rounds a waiter makes before it sleeps, when there are
 *                      more parties than CPUs (default 16): the parties still to come share
 *                      its CPU, and a yield lets one of them arrive for one syscall, where a
 *                      sleep and a wake cost two. Off for a while (base.h's yield policy)
 *                      while yields keep waiters off the CPU for long without parties
 *                      arriving (somebody else runs there). 0 disables yielding.
 *
 * CAVEATS
 *   - 32 bytes, as pthread_barrier_t: the word, parties and flags, and the yield policy's
 *     16 bytes of hints. CONC_SHARED barriers in MAP_SHARED memory work across processes; a
 *     party that dies leaves the round one short: break it with abort, or give the parties
 *     deadlines.
 *   - No action callback (Python's `action`): the leader runs it, then a second wait holds the
 *     others until it is done (QUICK START).
 *   - The generation has 31 bits: a waiter that stays descheduled across exactly 2^31 rounds of
 *     other threads (hours of back-to-back rounds) would take the generation for its own and
 *     miss its release.
 *   - A CONC_SHARED party that dies while it waits is never counted out: abort breaks the
 *     round for the others, but conc_barrier_reset waits for every waiter of the round to
 *     leave, so do not reset such a barrier; init a new one.
 *   - fork(): a private barrier copied mid-round counts parties that do not exist in the
 *     child, so that round never completes there and a reset waits for them for good; init
 *     it again in the child.
 *
 * DESIGN
 *   One 64-bit word: the low half is {arrived: bits 0..29, WAITERS 30, RESETTING 31}, the
 *   high half {generation: 31 bits, BROKEN}. Waiters sleep on the high half, which holds
 *   exactly what they wait for to change (a first version slept on the low half: a waiter on
 *   its way to sleep could find the next round's {1, WAITERS} there, the same value, and
 *   sleep through its release; test_barrier's two-party rounds caught it). Arriving is one
 *   CAS: count + 1, or, for the last party, count 0 and generation + 1 (the leader's release).
 *   A waiter returns when the generation moved (released: even if a later round broke
 *   meanwhile, the move is its release) or BROKEN is up with the generation unchanged (then it
 *   leaves: count - 1). BROKEN stays until reset, which waits for the broken round's waiters
 *   to leave, so a waiter that has not looked yet never mistakes a reset for a release.
 *   tests/models/barrier.pml checks it. A reset sleeps on the low half after raising
 *   RESETTING, which only the reset that clears BROKEN clears: the last waiter out wakes it
 *   (a reset that slept on the bare count could see the next round put the same count back,
 *   and sleep through it: tests/models/barrier_reset.pml). Before a waiter raises WAITERS and
 *   sleeps it spins (parties that fit on the CPUs) or yields (more parties than CPUs: those
 *   still to come share its CPU, and a round whose waiters all yielded makes no syscall at
 *   all); both only load the word, so the protocol the models check is the same.
 */
#ifndef CONC_BARRIER_H
#define CONC_BARRIER_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_barrier {
    uint64_t word __attribute__((aligned(8))); /* see DESIGN; all access atomic */
    uint32_t parties;                          /* set by init only */
    uint32_t config;                           /* CONC__BARRIER_SHARED (set by init only) */
    conc_yield_policy_t yields; /* whether waiters' yields pay (base.h; hints, relaxed) */
} conc_barrier_t;

#define CONC_BARRIER_LEADER (-1)             /* wait's result for the party that completed it */
#define CONC_BARRIER_BROKEN ENOTRECOVERABLE  /* the barrier is broken until reset */
#define CONC_BARRIER_PARTIES_MAX 0x3fffffffu /* the arrived field's width */

// clang-format off
#define CONC_BARRIER_INIT(parties) {0, (uint32_t)(parties), 0, {0, 0, 0}}
// clang-format on

#ifndef CONC_BARRIER_SPIN
#define CONC_BARRIER_SPIN 128
#endif
#ifndef CONC_BARRIER_YIELDS
#define CONC_BARRIER_YIELDS 16
#endif

#define CONC__BARRIER_ARRIVED_ONE ((uint64_t)1)
#define CONC__BARRIER_ARRIVED_MASK ((uint64_t)CONC_BARRIER_PARTIES_MAX)
#define CONC__BARRIER_WAITERS ((uint64_t)1 << 30) /* waiters may sleep (high half) */
#define CONC__BARRIER_GEN_SHIFT 32
#define CONC__BARRIER_GEN_ONE ((uint64_t)1 << CONC__BARRIER_GEN_SHIFT)
#define CONC__BARRIER_GEN_MASK ((uint64_t)0x7fffffff << CONC__BARRIER_GEN_SHIFT) /* 31 bits */
#define CONC__BARRIER_BROKEN ((uint64_t)1 << 63)
#define CONC__BARRIER_SHARED 0x1u /* in config */
/* Low half: a reset sleeps on it, waiting for a broken round's waiters to leave. Raised only
 * while BROKEN and cleared with it, so no later round can put the value a reset slept on back
 * (two resets once could: one cleared BROKEN, the next round raised {1, WAITERS} again, and
 * the other slept on through it); it also tells the last waiter out to wake the low half. */
#define CONC__BARRIER_RESETTING ((uint64_t)1 << 31)
/* A yield's credit (base.h's yield policy) per party that arrived during it: about one
 * context switch, what a party on our CPU needs to run to its next arrival. */
#define CONC__BARRIER_YIELD_ARRIVAL_NS (1 * CONC_US)

CONC_STATIC_ASSERT(sizeof(conc_barrier_t) == 32, "as pthread_barrier_t: word, parties, config, "
                                                 "yield hints");

/* Waiters sleep on the high half {generation, BROKEN}: exactly what they wait to change,
 * so no later round can make it look unchanged (short of 2^31 rounds). reset sleeps on the
 * low half {arrived, WAITERS, RESETTING}, waiting for the broken round's waiters to leave. */
CONC_INLINE uint32_t *conc__barrier_futex_high(conc_barrier_t *b) {
    return conc_futex_half_high(&b->word);
}
CONC_INLINE uint32_t *conc__barrier_futex_low(conc_barrier_t *b) {
    return conc_futex_half_low(&b->word);
}
/* Relaxed: parties and the SHARED bit are written by init only, before any other call. */
CONC_INLINE int conc__barrier_futex_flags(const conc_barrier_t *b) {
    return conc_futex_flags(conc_load(&b->config, CONC_RELAXED), CONC__BARRIER_SHARED);
}
CONC_INLINE uint64_t conc__barrier_arrived(uint64_t w) {
    return w & CONC__BARRIER_ARRIVED_MASK;
}
CONC_INLINE uint64_t conc__barrier_gen(uint64_t w) {
    return w & CONC__BARRIER_GEN_MASK;
}

/* Not CONC_NODISCARD: the only error is EINVAL for arguments the caller chose (base.h). */
static inline int conc_barrier_init(conc_barrier_t *b, unsigned parties, int flags) {
    if (!b || parties == 0 || parties > CONC_BARRIER_PARTIES_MAX || (flags & ~CONC_SHARED))
        return EINVAL;
    conc_store(&b->word, (uint64_t)0, CONC_RELAXED);
    conc_yield_policy_init(&b->yields); /* memory from malloc, or a barrier used before */
    conc_store(&b->parties, (uint32_t)parties, CONC_RELAXED);
    conc_store(&b->config, (flags & CONC_SHARED) ? CONC__BARRIER_SHARED : 0u, CONC_RELAXED);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 *   leader (last to arrive)                    waiter
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS: arrived k -> k+1, generation g   [barrier.A1]
 *                                              CAS: raise WAITERS
 *   CAS: arrived n-1 -> 0, WAITERS off,
 *        generation g+1   [barrier.R1]
 *   old word had WAITERS: wake(all, high)
 *                                              futex_wait(high, {g, not BROKEN})
 *                                                -> EAGAIN: the generation changed
 *
 * Either the leader's CAS comes first and futex_wait finds the high half changed, or the
 * waiter is queued first and the wake, decided from the very bit it raised, finds it.
 * Breaking (abort, a deadline) raises BROKEN in the high half with the same "wake all if
 * WAITERS" rule.
 * ------------------------------------------------------------------------------------------- */

CONC_COLD void conc__barrier_wake_all_slow(conc_barrier_t *b) {
    CONC_CHAOS_POINT();
    conc_futex_wake(conc__barrier_futex_high(b), INT_MAX, conc__barrier_futex_flags(b));
}

/* Leave a broken round: count - 1; the last one out wakes a reset waiting for that. */
CONC_COLD int conc__barrier_leave_broken_slow(conc_barrier_t *b, uint64_t w, int result) {
    uint64_t next;
    do {
        next = w - CONC__BARRIER_ARRIVED_ONE;
    } while (!conc_cas_weak(&b->word, &w, next, CONC_RELAXED, CONC_RELAXED));
    if (conc__barrier_arrived(next) == 0 && (next & CONC__BARRIER_RESETTING))
        conc_futex_wake(conc__barrier_futex_low(b), INT_MAX, conc__barrier_futex_flags(b));
    return result;
}

/* More parties than CPUs: some still to come share our CPU, so no pause lets them arrive, and
 * yielding to them beats a sleep and a wake while it pays (base.h's yield policy). The round's
 * progress during a yield is the parties that arrived (all the rest, if the generation moved).
 * Only loads of the word: the sleep/wake protocol below (and barrier.pml) is untouched. */
CONC_COLD uint64_t conc__barrier_yield_slow(conc_barrier_t *b, uint64_t w, uint64_t gen,
                                            unsigned parties, int64_t deadline) {
    for (int i = 0; i < CONC_BARRIER_YIELDS; i++) {
        int64_t before = conc_now();
        if (before >= deadline || (i == 0 && !conc_yield_allowed(&b->yields, before)))
            break; /* the deadline decides below; or yields are off: sleep at once */
        uint64_t arrived = conc__barrier_arrived(w);
        sched_yield();
        int64_t after = conc_now();
        w = conc_load(&b->word, CONC_ACQUIRE); /* [barrier.A2] */
        bool released = conc__barrier_gen(w) != gen;
        uint64_t now_arrived = released ? parties : conc__barrier_arrived(w);
        uint64_t came = now_arrived > arrived ? now_arrived - arrived : 0;
        if (!conc_yield_account(&b->yields, before, after, came, CONC__BARRIER_YIELD_ARRIVAL_NS) ||
            released || (w & CONC__BARRIER_BROKEN))
            break;
    }
    return w;
}

/* We arrived in generation `gen` and were not the last: wait for the release or a break. */
CONC_COLD int conc__barrier_wait_slow(conc_barrier_t *b, uint64_t w, int64_t deadline) {
    const uint64_t gen = conc__barrier_gen(w);
    int flags = conc__barrier_futex_flags(b);
    unsigned parties = conc_load(&b->parties, CONC_RELAXED);
    if (CONC_BARRIER_SPIN > 0 && (int)parties <= conc_cpu_count()) {
        /* The full spin every time. A spin that gave up once used to shorten the next ones
         * to 8 pauses; that locked two parties into sleeping by turns (each woken one
         * arrived too late for the other's short spin): 0.56 of pthread_barrier_t's time per
         * round where the full spin takes 0.04, and 1.1-1.2 where it takes 0.5-0.75 beside
         * two busy loops. */
        conc_spin_t spin = conc_spin_begin(CONC_BARRIER_SPIN, CONC_SPIN_STEADY, deadline);
        while (conc__barrier_gen(w) == gen &&
               !(w & (CONC__BARRIER_BROKEN | CONC__BARRIER_WAITERS)) && conc_spin_next(&spin))
            w = conc_load(&b->word, CONC_ACQUIRE); /* [barrier.A2] */
    } else if (CONC_BARRIER_YIELDS > 0 && (int)parties > conc_cpu_count()) {
        w = conc__barrier_yield_slow(b, w, gen, parties, deadline);
    }
    int r = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__barrier_gen(w) != gen)
            return 0; /* [barrier.A2] (load or CAS failure): pairs with the leader's [barrier.R1] */
        if (w & CONC__BARRIER_BROKEN)
            return conc__barrier_leave_broken_slow(b, w, CONC_BARRIER_BROKEN);
        if (r == ETIMEDOUT || conc_deadline_passed(deadline)) {
            /* Break the round and leave it in one CAS. Acquire on failure: w may be the
             * release we return 0 on. */
            uint64_t next = (w | CONC__BARRIER_BROKEN) - CONC__BARRIER_ARRIVED_ONE;
            if (!conc_cas(&b->word, &w, next, CONC_ACQUIRE, CONC_ACQUIRE))
                continue;
            if (w & CONC__BARRIER_WAITERS)
                conc__barrier_wake_all_slow(b);
            if (conc__barrier_arrived(next) == 0 && (next & CONC__BARRIER_RESETTING))
                conc_futex_wake(conc__barrier_futex_low(b), INT_MAX, flags);
            return ETIMEDOUT;
        }
        if (!(w & CONC__BARRIER_WAITERS)) {
            /* A request the leader's CAS reads (acquire for the failure case, see above). */
            if (!conc_cas(&b->word, &w, w | CONC__BARRIER_WAITERS, CONC_ACQUIRE, CONC_ACQUIRE))
                continue;
            w |= CONC__BARRIER_WAITERS;
        }
        r = conc_futex_wait(conc__barrier_futex_high(b), (uint32_t)(w >> 32), flags, deadline);
        w = conc_load(&b->word, CONC_ACQUIRE); /* [barrier.A2] */
    }
}

CONC_INLINE int conc__barrier_arrive(conc_barrier_t *b, int64_t deadline) {
    uint32_t parties = conc_load(&b->parties, CONC_RELAXED);
    /* Never initialised (zeroed memory, CONC_BARRIER_INIT(0)), or CONC_BARRIER_INIT past
     * CONC_BARRIER_PARTIES_MAX (-1, say), whose arrivals would overflow the arrived field:
     * one compare, parties - 1 wrapping 0 past the maximum. */
    if (CONC_UNLIKELY(parties - 1u >= CONC_BARRIER_PARTIES_MAX))
        return EINVAL;
    uint64_t w = conc_load(&b->word, CONC_RELAXED), next;
    bool leader;
    do {
        if (w & CONC__BARRIER_BROKEN)
            return CONC_BARRIER_BROKEN;
        leader = conc__barrier_arrived(w) + 1 == parties;
        next = leader ? (w & ~(CONC__BARRIER_ARRIVED_MASK | CONC__BARRIER_WAITERS |
                               CONC__BARRIER_GEN_MASK)) |
                            ((w + CONC__BARRIER_GEN_ONE) & CONC__BARRIER_GEN_MASK)
                      : w + CONC__BARRIER_ARRIVED_ONE;
        /* [barrier.A1]/[barrier.R1] acq_rel: an arrival releases its party's writes into the
         * word's release sequence; the leader's CAS acquires all of them and releases them to
         * the waiters. */
    } while (!conc_cas_weak(&b->word, &w, next, CONC_ACQ_REL, CONC_RELAXED));
    if (leader) {
        if (w & CONC__BARRIER_WAITERS)
            conc__barrier_wake_all_slow(b);
        return CONC_BARRIER_LEADER;
    }
    return conc__barrier_wait_slow(b, next, deadline);
}

/* -------------------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------------------- */

static inline int conc_barrier_wait(conc_barrier_t *b) {
    return conc__barrier_arrive(b, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_barrier_wait_until(conc_barrier_t *b, int64_t deadline) {
    return conc__barrier_arrive(b, deadline);
}

/* Relaxed: breaking publishes nothing (a broken round orders nothing). */
static inline void conc_barrier_abort(conc_barrier_t *b) {
    uint64_t old = conc_fetch_or(&b->word, CONC__BARRIER_BROKEN, CONC_RELAXED);
    if (!(old & CONC__BARRIER_BROKEN) && (old & CONC__BARRIER_WAITERS))
        conc__barrier_wake_all_slow(b);
}

/* Break the round in progress (if anyone waits), wait until its waiters have left, then clear
 * BROKEN: the barrier is fresh when reset returns. Several threads may reset at once. It waits
 * for every party of the broken round to leave: with CONC_SHARED, one that died while waiting
 * never does (see CAVEATS). Relaxed throughout, as abort: reset publishes and reads no data,
 * and every change it makes is an RMW of the one word, so each is decided against every
 * arrival's RMW in the word's single modification order; the next round's parties order
 * their data among themselves, through their own arrivals, never through reset. */
static inline void conc_barrier_reset(conc_barrier_t *b) {
    uint64_t w = conc_load(&b->word, CONC_RELAXED);
    if (conc__barrier_arrived(w) != 0 && !(w & CONC__BARRIER_BROKEN))
        conc_barrier_abort(b);
    int flags = conc__barrier_futex_flags(b);
    w = conc_load(&b->word, CONC_RELAXED);
    for (;;) {
        if (!(w & CONC__BARRIER_BROKEN))
            return; /* not broken (or another reset finished first) */
        if (conc__barrier_arrived(w) == 0) {
            if (conc_cas(
                    &b->word, &w,
                    w & ~(CONC__BARRIER_BROKEN | CONC__BARRIER_WAITERS | CONC__BARRIER_RESETTING),
                    CONC_RELAXED, CONC_RELAXED))
                return;
            continue;
        }
        if (!(w & CONC__BARRIER_RESETTING)) {
            /* Tell the last waiter out to wake us. */
            if (!conc_cas(&b->word, &w, w | CONC__BARRIER_RESETTING, CONC_RELAXED, CONC_RELAXED))
                continue;
            w |= CONC__BARRIER_RESETTING;
        }
        /* Either the last waiter's leaving CAS comes first, and futex_wait finds the low half
         * changed, or we are queued first and its wake, decided from the RESETTING we raised,
         * finds us. Nothing clears RESETTING while someone is still in the round, and once it
         * is cleared no round can put the value we slept on back
         * (tests/models/barrier_reset.pml). */
        (void)conc_futex_wait(conc__barrier_futex_low(b), (uint32_t)w, flags, CONC_FOREVER);
        w = conc_load(&b->word, CONC_RELAXED);
    }
}

static inline unsigned conc_barrier_parties(const conc_barrier_t *b) {
    return conc_load(&b->parties, CONC_RELAXED);
}
/* Relaxed snapshots, ordered with nothing. */
static inline unsigned conc_barrier_waiting(const conc_barrier_t *b) {
    return (unsigned)conc__barrier_arrived(conc_load(&b->word, CONC_RELAXED));
}
static inline bool conc_barrier_is_broken(const conc_barrier_t *b) {
    return (conc_load(&b->word, CONC_RELAXED) & CONC__BARRIER_BROKEN) != 0;
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_BARRIER_H */

/* conc/event.h - a 4-byte manual-reset event - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Event in C: a flag that threads can wait for. set() raises it and
 * releases every waiter; it stays raised (later waits return at once) until clear().
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS,
 *   DESIGN; then the code: the sleep/wake protocol (timeline), fast paths.
 *
 * QUICK START (examples/06_event_start_gun.c)
 *     static conc_event_t go = CONC_EVENT_INIT;
 *     // each worker:
 *     conc_event_wait(&go);                               // blocks until the start signal
 *     // main thread, once everything is ready:
 *     conc_event_set(&go);                                // releases them all at once
 *     if (conc_event_wait_until(&go, conc_deadline_in(2 * CONC_SEC)) == ETIMEDOUT)
 *         puts("nobody fired the gun within 2 s");
 *
 * API
 *   init      conc_event_init(e, flags)           flags: 0 or CONC_SHARED (others abort);
 *                                                 or = CONC_EVENT_INIT
 *   set       conc_event_set(e)                   raise the flag, wake every waiter
 *             conc_event_clear(e)                 lower it
 *   wait      conc_event_wait(e)                  blocks until set
 *             conc_event_wait_until(e, dl)        0 (set), ETIMEDOUT; dl is an absolute deadline
 *   query     conc_event_is_set(e)                a snapshot
 *
 * ERRORS
 *   wait_until: ETIMEDOUT once the deadline has passed (never earlier) with the event not set;
 *   it returns 0 if the event is set when it looks at the deadline, and a past deadline looks
 *   once. (Python's wait(timeout) returns the flag: False is ETIMEDOUT here.)
 *
 * ORDERING CONTRACT
 *   Everything a thread wrote before conc_event_set is visible to a thread whose wait returns
 *   0, or whose is_set returns true, because of that set or of any later change to the event.
 *   clear orders nothing by itself.
 *
 *   set, clear and waits racing: a wait returns 0 if the event was set at any moment after the
 *   wait began, even if clear() lowered it again before the waiter ran. So a thread already
 *   waiting never misses a set, and a "set(); clear();" pulse releases every current waiter.
 *   That is Python's behaviour too (Event.wait returns True for every thread that was waiting
 *   when set() ran). A wait that begins after the clear sees the event unset and blocks.
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init. No destroy is needed. An event may be freed
 *   once every wait on it has returned and no set is still running.
 *
 * CONFIGURATION
 *   CONC_EVENT_SPIN  pauses a waiter spends spinning before it sleeps, a load after each
 *                    (a sched_yield before every 64th: base.h); default 256; 0 disables spinning.
 *                    Skipped on one CPU and while others already sleep.
 *
 * CAVEATS
 *   - Not a latch with a count and not an auto-reset event: set releases all waiters and stays
 *     set. There is no pulse operation (Windows' PulseEvent is unreliable); set-then-clear is
 *     reliable here, see above.
 *   - After a timed wait gave up, the next set makes one wake syscall that wakes nobody (the
 *     4-byte word has a "maybe waiters" bit, not a count).
 *   - A wait that stays descheduled, between its first look and its sleep, across exactly 2^29
 *     set/clear pairs would miss them (the generation counter wraps): accepted, as Rust and
 *     glibc accept a 2^32 wrap in their condition variables.
 *   - CONC_SHARED events in MAP_SHARED memory work across processes. conc_event_set is
 *     async-signal-safe (one CAS and maybe a futex wake).
 *
 * DESIGN
 *   One 32-bit word: bit 0 SET, bit 1 WAITERS (someone may sleep), bits 2..30 a generation
 *   counter that every set of an unset event advances, bit 31 SHARED. set is one CAS that
 *   raises SET, advances the generation and drops WAITERS; it wakes all only if WAITERS was
 *   up, so a set with nobody asleep makes no syscall. A waiter remembers the generation it
 *   started with and returns as soon as SET is up or the generation moved: that is how a
 *   waiter woken by a set still returns 0 when a clear came right after. Every change of the
 *   word after init is an RMW, so the word's modification order is one long release
 *   sequence: an acquire load that reads any later value synchronizes with every earlier
 *   set. A spin model of the protocol is tests/models/event.pml.
 */
#ifndef CONC_EVENT_H
#define CONC_EVENT_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_event {
    uint32_t word; /* see DESIGN; all access atomic */
} conc_event_t;

// clang-format off
#define CONC_EVENT_INIT {0}
// clang-format on

#ifndef CONC_EVENT_SPIN
#define CONC_EVENT_SPIN 256
#endif

#define CONC__EVENT_SET 0x1u             /* raised */
#define CONC__EVENT_WAITERS 0x2u         /* someone may sleep: set must wake */
#define CONC__EVENT_GEN_ONE 0x4u         /* one generation (a set of an unset event) */
#define CONC__EVENT_GEN_MASK 0x7ffffffcu /* the generation counter */
#define CONC__EVENT_SHARED 0x80000000u   /* process-shared: non-private futex ops */

CONC_STATIC_ASSERT(sizeof(conc_event_t) == 4, "a conc_event is one 32-bit futex word");
CONC_STATIC_ASSERT(((CONC__EVENT_SET | CONC__EVENT_WAITERS) &
                    (CONC__EVENT_GEN_MASK | CONC__EVENT_SHARED)) == 0 &&
                       (CONC__EVENT_GEN_MASK & CONC__EVENT_SHARED) == 0 &&
                       (CONC__EVENT_GEN_MASK & -CONC__EVENT_GEN_MASK) == CONC__EVENT_GEN_ONE,
                   "the event word's fields are disjoint; one generation is the lowest bit");

static inline void conc_event_init(conc_event_t *e, int flags) {
    conc__base_check_init_flags(flags, "conc_event_init");
    conc_store(&e->word, (flags & CONC_SHARED) ? CONC__EVENT_SHARED : 0u, CONC_RELAXED);
}

/* -------------------------------------------------------------------------------------------
 * The sleep/wake protocol. A waiter raises WAITERS with a CAS from the unset word it saw, then
 * sleeps with futex_wait(word, that word): the kernel re-checks the word and queues the
 * waiter atomically with respect to wake. So:
 *
 *   setter                                     waiter
 *   ---------------------------------------    --------------------------------------------
 *                                              load: unset, generation g
 *                                              CAS word: g -> g|WAITERS
 *   CAS word: g|WAITERS -> SET|g+1   [event.R1]
 *   (the old word had WAITERS:) wake(all)
 *                                              futex_wait(word, g|WAITERS)
 *                                                -> EAGAIN: the word changed
 *
 *   Either the set comes first and futex_wait finds the word changed, or the waiter is queued
 *   first and the wake (which set's CAS decided on from the very word the waiter wrote) finds
 *   it. The set also drops WAITERS, so any waiter still around re-raises it before sleeping
 *   again. Whatever a woken waiter then reads (set, or cleared with a new generation), it
 *   returns 0.
 * ------------------------------------------------------------------------------------------- */

CONC_INLINE bool conc__event_fired(uint32_t w, uint32_t gen) {
    return (w & CONC__EVENT_SET) || (w & CONC__EVENT_GEN_MASK) != gen;
}

/* w: the caller's first look at the word (unset). The wait began there: any set after it
 * moves the generation, so it counts even if a clear follows before we look again. */
CONC_COLD int conc__event_wait_slow(conc_event_t *e, uint32_t w, int64_t deadline) {
    /* [event.A1] acquire loads throughout: pair with [event.R1] through the release sequence
     * (DESIGN). */
    uint32_t gen = w & CONC__EVENT_GEN_MASK;
    int flags = conc_futex_flags(w, CONC__EVENT_SHARED);

    /* Spin while nobody sleeps and another CPU may set meanwhile: catching a set while
     * spinning saves the setter's wake syscall and our sleep (13-150 us on a VM). */
    conc_spin_t spin = conc_spin_begin(CONC_EVENT_SPIN, CONC_SPIN_STEADY, deadline);
    while (!(w & CONC__EVENT_WAITERS) && conc_spin_next(&spin)) {
        w = conc_load(&e->word, CONC_ACQUIRE); /* [event.A1] */
        if (conc__event_fired(w, gen))
            return 0;
    }

    int r = 0;
    for (;;) {
        if (conc__event_fired(w, gen))
            return 0; /* even at the deadline: the set is what the caller waited for */
        if (r == ETIMEDOUT || conc_deadline_passed(deadline))
            return ETIMEDOUT;
        /* Raise WAITERS (it publishes nothing: a request that set's CAS reads) and sleep on
         * the word. Acquire, for the CAS's failure and the reload: w is fresh then and may be
         * a set word we return on ([event.A1]). EINTR and spurious wakeups loop with the same
         * absolute deadline. */
        r = conc_futex_wait_flagged(&e->word, &w, CONC__EVENT_WAITERS, flags, CONC_ACQUIRE,
                                    deadline);
    }
}

CONC_COLD void conc__event_wake_slow(conc_event_t *e, uint32_t w) {
    CONC_CHAOS_POINT();
    conc_futex_wake(&e->word, INT_MAX, conc_futex_flags(w, CONC__EVENT_SHARED));
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* One CAS (a CAS that rewrites the same word when already set, so that every set heads a
 * release sequence). [event.R1] release: pairs with the waiters' [event.A1]. Wakes all only if
 * the old word said someone may sleep. */
static inline void conc_event_set(conc_event_t *e) {
    uint32_t w = conc_load(&e->word, CONC_RELAXED);
    uint32_t next;
    do {
        if (w & CONC__EVENT_SET)
            next = w; /* WAITERS is never up while SET is: waiters raise it on unset words */
        else
            next = (w & CONC__EVENT_SHARED) | ((w + CONC__EVENT_GEN_ONE) & CONC__EVENT_GEN_MASK) |
                   CONC__EVENT_SET;
    } while (!conc_cas_weak(&e->word, &w, next, CONC_RELEASE, CONC_RELAXED));
    if (CONC_UNLIKELY(w & CONC__EVENT_WAITERS))
        conc__event_wake_slow(e, w);
}

/* Relaxed: clear publishes nothing (ORDERING CONTRACT). An RMW, not a store, so the word's
 * modification order stays one release sequence. Waiters are unaffected: those already
 * waiting see the generation moved and return 0; new ones see the event unset. */
static inline void conc_event_clear(conc_event_t *e) {
    if (conc_load(&e->word, CONC_RELAXED) & CONC__EVENT_SET)
        (void)conc_fetch_and(&e->word, ~CONC__EVENT_SET, CONC_RELAXED);
}

/* [event.A1] acquire: true means the writes before the set are visible. */
static inline bool conc_event_is_set(const conc_event_t *e) {
    return (conc_load(&e->word, CONC_ACQUIRE) & CONC__EVENT_SET) != 0;
}

static inline void conc_event_wait(conc_event_t *e) {
    uint32_t w = conc_load(&e->word, CONC_ACQUIRE); /* [event.A1] */
    if (CONC_UNLIKELY(!(w & CONC__EVENT_SET)))
        (void)conc__event_wait_slow(e, w, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_event_wait_until(conc_event_t *e, int64_t deadline) {
    uint32_t w = conc_load(&e->word, CONC_ACQUIRE); /* [event.A1] */
    if (CONC_LIKELY(w & CONC__EVENT_SET))
        return 0;
    return conc__event_wait_slow(e, w, deadline);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_EVENT_H */

/* conc/rwlock.h - a phase-fair reader-writer lock: one atomic each way for readers - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * pthread_rwlock_t (and Rust's RwLock, Go's sync.RWMutex) in C: many readers at once, or one
 * writer. A waiting writer stops new readers (writer preference), and a writer that leaves
 * lets in every reader that queued behind it before the next writer goes (phase-fair), so
 * neither side starves.
 *
 * CONTENTS  quick start, API, errors, ordering contract, thread safety, configuration,
 *           caveats, design (policy, word layout, sleep/wake timelines)
 *
 * QUICK START (examples/20_rwlock_cache.c)
 *     static conc_rwlock_t rw = CONC_RWLOCK_INIT;
 *     static long table[64], key;                // what rw guards
 *     conc_rwlock_acquire_shared(&rw);           // many readers at once
 *     long v = table[key];
 *     conc_rwlock_release_shared(&rw);
 *     conc_rwlock_acquire(&rw);                  // one writer, no readers
 *     table[key] = v + 1;
 *     conc_rwlock_downgrade(&rw);                // keep reading what we wrote, let readers in
 *     conc_rwlock_release_shared(&rw);
 *
 * API
 *   init       conc_rwlock_init(rw, flags)                flags: 0 or CONC_SHARED
 *              = CONC_RWLOCK_INIT                         private
 *   shared     conc_rwlock_acquire_shared(rw)             blocks
 *              conc_rwlock_try_acquire_shared(rw)         0, EBUSY; never blocks
 *              conc_rwlock_acquire_shared_until(rw, dl)   0, ETIMEDOUT
 *              conc_rwlock_release_shared(rw)
 *   exclusive  conc_rwlock_acquire(rw)                    blocks
 *              conc_rwlock_try_acquire(rw)                0, EBUSY; never blocks
 *              conc_rwlock_acquire_until(rw, dl)          0, ETIMEDOUT
 *              conc_rwlock_release(rw)
 *   downgrade  conc_rwlock_downgrade(rw)                  exclusive -> shared, never blocks
 *   scoped     CONC_WITH_RWLOCK_SHARED(&rw) { ... }       released on every way out but longjmp
 *              CONC_WITH_RWLOCK(&rw) { ... }              (exclusive; as CONC_WITH_LOCK)
 *   query      conc_rwlock_is_locked(rw)                  held exclusively: a snapshot
 *              conc_rwlock_readers(rw)                    readers inside or granted: a snapshot
 *   The exclusive verbs are spelled as conc_lock's, so a conc_rwlock_t drops in for a lock.
 *
 * ERRORS
 *   try_*: EBUSY when a writer holds or waits (shared), or anyone holds it (exclusive).
 *   *_until: ETIMEDOUT once the deadline has passed (never earlier); a past deadline tries
 *   once. A writer that times out while readers are still inside leaves no trace: the readers
 *   it held back are let in at once. Releasing a lock not held that way aborts with
 *   "conc_rwlock_release_shared: not held shared" or "conc_rwlock_release: not held
 *   exclusively" (downgrade: "conc_rwlock_downgrade: not held exclusively").
 *
 * ORDERING CONTRACT
 *   Everything a writer wrote before conc_rwlock_release (or downgrade) is visible to every
 *   thread whose acquire of either kind returns 0 after it. Everything a reader did before
 *   conc_rwlock_release_shared happens before the next writer's acquire returns. Readers
 *   inside together are ordered with nothing (they only read).
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init (needs the lock unused). The thread that
 *   acquired releases (TSan checks it); a lock owns no resources, so there is no destroy.
 *   Recursion: a reader that acquires shared again while a writer waits deadlocks (as with
 *   pthread_rwlock_t under writer preference); a writer acquiring again deadlocks.
 *
 * CONFIGURATION
 *   CONC_RWLOCK_SPIN  pauses spent looking at the word before sleeping (base.h's conc_spin: a
 *                     look after each pause, ~20 ns), default 128; 0 disables spinning.
 *                     Skipped on one CPU.
 *   Writers queue on an inner conc_lock, so CONC_LOCK_SPIN and CONC_LOCK_FAIR_NS apply too.
 *
 * CAVEATS
 *   - 16 bytes (pthread_rwlock_t: 56). Needs lock.h.
 *   - CONC_SHARED rwlocks in MAP_SHARED memory work across processes (no pointers stored). A
 *     process that dies holding the lock leaves it held.
 *   - At most 4,194,303 readers inside or queued at once (every thread Linux can create,
 *     PID_MAX_LIMIT); readers of process-shared locks in many pid namespaces count together.
 *   - fork(): a lock held by another thread stays held in the child; re-init it there.
 *   - Under ThreadSanitizer the lock announces itself (__tsan_mutex_* with the read-lock flag
 *     for the shared side), so TSan checks races and lock order through it as through a
 *     pthread_rwlock_t. Downgrade is announced as a write unlock followed by a read lock.
 *
 * DESIGN
 *   Policy: phase-fair (Brandenburg and Anderson, 2009; Go's RWMutex has the same shape).
 *   Writers queue on an inner conc_lock (eventually fair: no writer starves behind other
 *   writers). The writer at its head raises WRITER: from then on new readers queue, and the
 *   writer waits for the readers already inside to leave. Its release (or downgrade, or its
 *   timeout) admits every queued reader in the same atomic step that clears WRITER, so those
 *   readers are inside before the next writer can raise WRITER; that writer waits for them
 *   to leave. A reader waits at most for one writer's phase; a writer waits for the writers
 *   ahead of it and the readers inside when it raised WRITER. tests/models/rwlock.pml
 *   checks exclusion, no lost wakeup and this bound (with broken variants).
 *
 *   One 64-bit word: bits 0..21 readers inside (or admitted and on their way), 22 WRITER,
 *   23 WRITER_SLEEPS, 24 READERS_SLEEP, 25 SHARED, 26..31 the phase (advanced by every end of
 *   a writer's phase), bits 32..63 readers queued behind WRITER. The futex is the low half
 *   (everything a sleeper waits on changes it); readers and writers sleep there with
 *   different futex tags, so a wake for one never wakes the other.
 *     acquire_shared: one fetch_add of a reader. No WRITER in the old word: inside. Else
 *       the slow path moves the reader from "inside" to "queued" (one CAS), unless the phase
 *       it saw has ended already (then it was admitted, and is inside).
 *     release_shared: one fetch_sub. The reader that takes the count to 0 under WRITER
 *       wakes the writer if it sleeps.
 *     acquire: the inner lock, then one fetch_or of WRITER; wait while readers are inside.
 *     release: one CAS: inside += queued, queued = 0, WRITER and the sleep bits cleared, the
 *       phase advanced; then release the inner lock and wake the readers if any sleep.
 *   A reader that saw phase p under WRITER is admitted once the phase differs from p. The
 *   phase cannot move twice before such a reader looks again: it is counted inside after the
 *   first move, so the next writer waits for it. One bit would do; six make the word easy
 *   to read in a debugger.
 */
#ifndef CONC_RWLOCK_H
#define CONC_RWLOCK_H

#include "lock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_rwlock {
    uint64_t word __attribute__((aligned(8))); /* see DESIGN; all access atomic */
    conc_lock_t writers;                       /* writers queue here, one at a time */
    uint32_t reserved;
} conc_rwlock_t;

// clang-format off
#define CONC_RWLOCK_INIT {0, CONC_LOCK_INIT, 0}
// clang-format on

#ifndef CONC_RWLOCK_SPIN
#define CONC_RWLOCK_SPIN 128
#endif

#define CONC__RWLOCK_READER_ONE ((uint64_t)1)
#define CONC__RWLOCK_READERS_MASK ((uint64_t)0x3fffff) /* 22 bits: PID_MAX_LIMIT - 1 */
#define CONC__RWLOCK_WRITER ((uint64_t)1 << 22)        /* a writer holds or waits */
#define CONC__RWLOCK_WRITER_SLEEPS ((uint64_t)1 << 23) /* ... asleep until no reader is in */
#define CONC__RWLOCK_READERS_SLEEP ((uint64_t)1 << 24) /* queued readers may be asleep */
#define CONC__RWLOCK_SHARED ((uint64_t)1 << 25)        /* process-shared futex */
#define CONC__RWLOCK_PHASE_ONE ((uint64_t)1 << 26)     /* one end of a writer's phase */
#define CONC__RWLOCK_PHASE_MASK ((uint64_t)0x3f << 26) /* bits 26..31 */
#define CONC__RWLOCK_QUEUED_SHIFT 32
#define CONC__RWLOCK_QUEUED_ONE ((uint64_t)1 << CONC__RWLOCK_QUEUED_SHIFT) /* a queued reader */
#define CONC__RWLOCK_TAG_READER 0x1u /* futex tag of a sleeping reader */
#define CONC__RWLOCK_TAG_WRITER 0x2u /* futex tag of the sleeping writer */
/* Linux's PID_MAX_LIMIT (4 * 1024 * 1024): no more threads can exist, so neither count can
 * pass its field, and inside + queued (a release adds them) cannot reach WRITER. */
#define CONC__RWLOCK_THREADS_MAX ((uint64_t)4 * 1024 * 1024)
#if defined(__cplusplus)
static_assert(CONC__RWLOCK_READERS_MASK == CONC__RWLOCK_THREADS_MAX - 1, "reader field width");
static_assert(sizeof(conc_lock_t) == 4, "conc_rwlock_t is 16 bytes");
static_assert(CONC__RWLOCK_PHASE_MASK >> 32 == 0, "the sleepers' fields are in the low half");
#else
_Static_assert(CONC__RWLOCK_READERS_MASK == CONC__RWLOCK_THREADS_MAX - 1, "reader field width");
_Static_assert(sizeof(conc_lock_t) == 4, "conc_rwlock_t is 16 bytes");
_Static_assert(CONC__RWLOCK_PHASE_MASK >> 32 == 0, "the sleepers' fields are in the low half");
#endif

/* TSan: the read-lock flag, and unlock annotations that carry it (base.h's pass no flags). */
#if defined(CONC_TSAN)
#define CONC__RWLOCK_TSAN_READ (1u << 3) /* __tsan_mutex_read_lock */
#define CONC__RWLOCK_TSAN_PRE_UNLOCK(a, f) ((void)__tsan_mutex_pre_unlock((void *)(a), (f)))
#define CONC__RWLOCK_TSAN_POST_UNLOCK(a, f) __tsan_mutex_post_unlock((void *)(a), (f))
#else
#define CONC__RWLOCK_TSAN_READ 0u
#define CONC__RWLOCK_TSAN_PRE_UNLOCK(a, f) ((void)0)
#define CONC__RWLOCK_TSAN_POST_UNLOCK(a, f) ((void)0)
#endif

/* Sleepers wait on the low half: readers, WRITER, the sleep bits, SHARED and the phase. */
CONC_INLINE uint32_t *conc__rwlock_futex(conc_rwlock_t *rw) {
    return conc_futex_half_low(&rw->word);
}
CONC_INLINE int conc__rwlock_futex_flags(uint64_t w) {
    return conc_futex_flags((uint32_t)w, (uint32_t)CONC__RWLOCK_SHARED);
}
CONC_INLINE uint64_t conc__rwlock_readers(uint64_t w) {
    return w & CONC__RWLOCK_READERS_MASK;
}
/* A reader that saw phase `phase` under WRITER is admitted once that phase has ended. */
CONC_INLINE bool conc__rwlock_admitted(uint64_t w, uint64_t phase) {
    return !(w & CONC__RWLOCK_WRITER) || (w & CONC__RWLOCK_PHASE_MASK) != phase;
}

static inline void conc_rwlock_init(conc_rwlock_t *rw, int flags) {
    conc_store(&rw->word, (flags & CONC_SHARED) ? CONC__RWLOCK_SHARED : (uint64_t)0, CONC_RELAXED);
    conc_lock_init(&rw->writers, flags);
    rw->reserved = 0;
    CONC_TSAN_MUTEX_CREATE(rw, 0);
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * Queued readers sleep on the low half until the writer's phase ends:
 *
 *   writer (holds WRITER, phase p)             reader
 *   ---------------------------------------    --------------------------------------------
 *                                              fetch_add: +1 inside; old has WRITER, p
 *                                              CAS: -1 inside, +1 queued   [queues]
 *                                              CAS: raise READERS_SLEEP
 *   CAS: inside += queued, queued = 0,
 *        WRITER, READERS_SLEEP off, p+1  [rwlock.R2]
 *   old word had READERS_SLEEP: wake(readers)
 *                                              futex_wait(low, word with p, READERS_SLEEP)
 *                                                -> EAGAIN: the phase moved
 *
 * The writer waits for the readers inside to leave:
 *
 *   last reader inside                         writer
 *   ---------------------------------------    --------------------------------------------
 *                                              fetch_or: WRITER; old has n readers inside
 *                                              CAS: raise WRITER_SLEEPS
 *   fetch_sub: 1 -> 0 inside  [rwlock.R1]
 *   old had WRITER and WRITER_SLEEPS:
 *   fetch_and: WRITER_SLEEPS off; wake(writer)
 *                                              futex_wait(low, word with 1 inside)
 *                                                -> EAGAIN: the count changed
 *
 * Either the changing RMW comes first and futex_wait finds the half changed, or the sleeper
 * is queued first and the wake (decided from the very bit it raised) finds it. A reader that
 * queues takes its count from "inside" in a CAS that also wakes the writer if that leaves
 * nobody inside. Who clears WRITER_SLEEPS is who wakes, so a writer woken by a count that
 * rose again (a reader passing through on its way to the queue) raises it again.
 * ------------------------------------------------------------------------------------------- */

/* The word at the end of a writer's phase (release, downgrade, timeout): the queued readers
 * are let in (plus `extra`: the downgrading writer), WRITER and the sleep bits go, the phase
 * advances. Any readers counted inside meanwhile were passing through to the queue; they
 * find the phase moved and stay inside, admitted. */
CONC_INLINE uint64_t conc__rwlock_phase_end(uint64_t w, uint64_t extra) {
    uint64_t queued = w >> CONC__RWLOCK_QUEUED_SHIFT;
    return ((w & (CONC__RWLOCK_READERS_MASK | CONC__RWLOCK_SHARED)) + queued + extra) |
           ((w + CONC__RWLOCK_PHASE_ONE) & CONC__RWLOCK_PHASE_MASK);
}

/* Ends the writer's phase with one CAS, then lets the next writer at the inner lock and wakes
 * sleeping readers. [rwlock.R2] release: pairs with the admitted readers' [rwlock.A3] and,
 * through the word's release sequence, with the next writer's [rwlock.A2]. */
CONC_INLINE void conc__rwlock_end_phase(conc_rwlock_t *rw, uint64_t extra, const char *who) {
    uint64_t w = conc_load(&rw->word, CONC_RELAXED), next;
    do {
        if (!(w & CONC__RWLOCK_WRITER))
            CONC_ABORT(who);
        next = conc__rwlock_phase_end(w, extra);
    } while (!conc_cas_weak(&rw->word, &w, next, CONC_RELEASE, CONC_RELAXED));
    conc_lock_release(&rw->writers);
    if (w & CONC__RWLOCK_READERS_SLEEP) {
        CONC_CHAOS_POINT();
        conc_futex_wake_tagged(conc__rwlock_futex(rw), INT_MAX, conc__rwlock_futex_flags(w),
                               CONC__RWLOCK_TAG_READER);
    }
}

/* The reader or queuing reader whose RMW left nobody inside under WRITER: clear
 * WRITER_SLEEPS and wake the writer if it was up. */
CONC_COLD void conc__rwlock_wake_writer_slow(conc_rwlock_t *rw) {
    uint64_t old = conc_fetch_and(&rw->word, ~CONC__RWLOCK_WRITER_SLEEPS, CONC_RELAXED);
    if (old & CONC__RWLOCK_WRITER_SLEEPS) {
        CONC_CHAOS_POINT();
        conc_futex_wake_tagged(conc__rwlock_futex(rw), 1, conc__rwlock_futex_flags(old),
                               CONC__RWLOCK_TAG_WRITER);
    }
}

/* One sleep of a reader or the writer on the low half: raises `bit` (READERS_SLEEP or
 * WRITER_SLEEPS) if *w lacks it, a request the waker's RMW reads, then sleeps with `tag` while
 * the low half still equals *w's. The same step as base.h's conc_futex_wait_flagged, on a
 * 64-bit word whose futex is one half (the raising CAS must act on the whole word). Acquire
 * for the CAS failure and the reload: a fresh *w may be the word the caller returns on
 * ([rwlock.A2]/[rwlock.A3]). Returns 0 (look again) or futex_wait's ETIMEDOUT/EINTR/EAGAIN;
 * *w is fresh either way. */
CONC_INLINE int conc__rwlock_sleep(conc_rwlock_t *rw, uint64_t *w, uint64_t bit, uint32_t tag,
                                   int flags, int64_t deadline) {
    if (!(*w & bit)) {
        if (!conc_cas(&rw->word, w, *w | bit, CONC_ACQUIRE, CONC_ACQUIRE))
            return 0;
        *w |= bit;
    }
    int r = conc_futex_wait_tagged(conc__rwlock_futex(rw), (uint32_t)*w, flags, tag, deadline);
    *w = conc_load(&rw->word, CONC_ACQUIRE); /* [rwlock.A2]/[rwlock.A3] */
    return r;
}

/* The reader's fast-path fetch_add returned `old` with WRITER up: this reader is counted
 * inside but may not read. Queue (unless the phase already ended), then wait for the phase
 * to end or the deadline. */
CONC_COLD int conc__rwlock_shared_slow(conc_rwlock_t *rw, uint64_t old, int64_t deadline) {
    const uint64_t phase = old & CONC__RWLOCK_PHASE_MASK;
    int flags = conc__rwlock_futex_flags(old);
    uint64_t w = old + CONC__RWLOCK_READER_ONE;
    for (;;) {
        CONC_CHAOS_POINT();
        /* [rwlock.A3] acquire (the failure order): pairs with [rwlock.R2], the end of the phase. */
        if (conc__rwlock_admitted(w, phase))
            return 0;
        uint64_t next = w - CONC__RWLOCK_READER_ONE + CONC__RWLOCK_QUEUED_ONE;
        bool last = conc__rwlock_readers(next) == 0 && (w & CONC__RWLOCK_WRITER_SLEEPS);
        /* Queuing publishes nothing. Acquire is for the failure case, where w is fresh and may
         * be the end of the phase we return on ([rwlock.A3]); C11 wants success at least as
         * strong. */
        if (conc_cas(&rw->word, &w, next, CONC_ACQUIRE, CONC_ACQUIRE)) {
            if (last)
                conc__rwlock_wake_writer_slow(rw);
            w = next;
            break;
        }
    }

    conc_spin_t spin = conc_spin_begin(CONC_RWLOCK_SPIN, CONC_SPIN_STEADY, deadline);
    while (!conc__rwlock_admitted(w, phase) && !(w & CONC__RWLOCK_READERS_SLEEP) &&
           conc_spin_next(&spin))
        w = conc_load(&rw->word, CONC_ACQUIRE); /* [rwlock.A3] */

    int r = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__rwlock_admitted(w, phase))
            return 0; /* [rwlock.A3] by the acquire load or CAS failure that read w */
        if (r == ETIMEDOUT || conc_deadline_passed(deadline)) {
            /* Leave the queue: publishes nothing (acquire for the failure case, as above). */
            if (conc_cas(&rw->word, &w, w - CONC__RWLOCK_QUEUED_ONE, CONC_ACQUIRE, CONC_ACQUIRE))
                return ETIMEDOUT;
            continue;
        }
        /* READERS_SLEEP: a request the writer's [rwlock.R2] CAS reads. */
        r = conc__rwlock_sleep(rw, &w, CONC__RWLOCK_READERS_SLEEP, CONC__RWLOCK_TAG_READER, flags,
                               deadline);
    }
}

/* The writer holds the inner lock and raised WRITER; `w` is the word after that. Wait for
 * the readers inside to leave; at the deadline, end the phase as a release would. */
CONC_COLD int conc__rwlock_drain_slow(conc_rwlock_t *rw, uint64_t w, int64_t deadline) {
    int flags = conc__rwlock_futex_flags(w);
    conc_spin_t spin = conc_spin_begin(CONC_RWLOCK_SPIN, CONC_SPIN_STEADY, deadline);
    while (conc__rwlock_readers(w) != 0 && conc_spin_next(&spin))
        w = conc_load(&rw->word, CONC_ACQUIRE); /* [rwlock.A2] */
    int r = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__rwlock_readers(w) == 0)
            return 0; /* [rwlock.A2]: pairs with the last reader's [rwlock.R1] (release seq.) */
        if (r == ETIMEDOUT || conc_deadline_passed(deadline)) {
            conc__rwlock_end_phase(rw, 0, "conc_rwlock_acquire_until: lost WRITER");
            return ETIMEDOUT;
        }
        /* WRITER_SLEEPS: a request the last reader's [rwlock.R1] fetch_sub reads. */
        r = conc__rwlock_sleep(rw, &w, CONC__RWLOCK_WRITER_SLEEPS, CONC__RWLOCK_TAG_WRITER, flags,
                               deadline);
    }
}

/* The release fast path's fetch_sub returned `old` with more than a plain reader in it. */
CONC_COLD void conc__rwlock_release_shared_slow(conc_rwlock_t *rw, uint64_t old) {
    if (conc__rwlock_readers(old) == 0)
        CONC_ABORT("conc_rwlock_release_shared: not held shared");
    if (conc__rwlock_readers(old) == 1 && (old & CONC__RWLOCK_WRITER_SLEEPS))
        conc__rwlock_wake_writer_slow(rw);
}

/* Raise WRITER (the caller holds the inner lock) and wait for the readers inside. */
CONC_INLINE int conc__rwlock_exclusive(conc_rwlock_t *rw, int64_t deadline) {
    /* [rwlock.A2] acquire: pairs with the readers' [rwlock.R1] and the last writer's
     * [rwlock.R2]. */
    uint64_t old = conc_fetch_or(&rw->word, CONC__RWLOCK_WRITER, CONC_ACQUIRE);
    if (CONC_UNLIKELY(conc__rwlock_readers(old) != 0))
        return conc__rwlock_drain_slow(rw, old | CONC__RWLOCK_WRITER, deadline);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* One fetch_add. [rwlock.A1] acquire: pairs with [rwlock.R2], the end of the last writer's
 * phase. */
static inline void conc_rwlock_acquire_shared(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ);
    uint64_t old = conc_fetch_add(&rw->word, CONC__RWLOCK_READER_ONE, CONC_ACQUIRE);
    if (CONC_UNLIKELY(old & CONC__RWLOCK_WRITER))
        (void)conc__rwlock_shared_slow(rw, old, CONC_FOREVER);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ);
}

CONC_NODISCARD static inline int conc_rwlock_acquire_shared_until(conc_rwlock_t *rw,
                                                                  int64_t deadline) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK);
    /* [rwlock.A1] */
    uint64_t old = conc_fetch_add(&rw->word, CONC__RWLOCK_READER_ONE, CONC_ACQUIRE);
    int r =
        CONC_LIKELY(!(old & CONC__RWLOCK_WRITER)) ? 0 : conc__rwlock_shared_slow(rw, old, deadline);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* A CAS, not a fetch_add: a try must not count itself in while a writer waits. */
CONC_NODISCARD static inline int conc_rwlock_try_acquire_shared(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK);
    uint64_t w = conc_load(&rw->word, CONC_RELAXED);
    int r = 0;
    do {
        if (w & CONC__RWLOCK_WRITER) {
            r = EBUSY;
            break;
        }
        /* [rwlock.A1] on success */
    } while (
        !conc_cas_weak(&rw->word, &w, w + CONC__RWLOCK_READER_ONE, CONC_ACQUIRE, CONC_RELAXED));
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* One fetch_sub. [rwlock.R1] release: pairs with the next writer's [rwlock.A2]. */
static inline void conc_rwlock_release_shared(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, CONC__RWLOCK_TSAN_READ);
    uint64_t old = conc_fetch_sub(&rw->word, CONC__RWLOCK_READER_ONE, CONC_RELEASE);
    /* Slow only for misuse (nobody inside) or a writer asleep until the readers leave. */
    if (CONC_UNLIKELY((old & CONC__RWLOCK_WRITER_SLEEPS) || conc__rwlock_readers(old) == 0))
        conc__rwlock_release_shared_slow(rw, old);
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, CONC__RWLOCK_TSAN_READ);
}

static inline void conc_rwlock_acquire(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, 0);
    conc_lock_acquire(&rw->writers);
    (void)conc__rwlock_exclusive(rw, CONC_FOREVER);
    CONC_TSAN_MUTEX_POST_LOCK(rw, 0);
}

CONC_NODISCARD static inline int conc_rwlock_acquire_until(conc_rwlock_t *rw, int64_t deadline) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = conc_lock_acquire_until(&rw->writers, deadline);
    if (r == 0)
        r = conc__rwlock_exclusive(rw, deadline);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* Raises WRITER only if no reader is inside (a CAS), so a failed try disturbs nobody. */
CONC_NODISCARD static inline int conc_rwlock_try_acquire(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = conc_lock_try_acquire(&rw->writers);
    if (r == 0) {
        uint64_t w = conc_load(&rw->word, CONC_RELAXED);
        do {
            if (conc__rwlock_readers(w) != 0) {
                r = EBUSY;
                conc_lock_release(&rw->writers);
                break;
            }
            /* [rwlock.A2] on success */
        } while (
            !conc_cas_weak(&rw->word, &w, w | CONC__RWLOCK_WRITER, CONC_ACQUIRE, CONC_RELAXED));
    }
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

static inline void conc_rwlock_release(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, 0);
    conc__rwlock_end_phase(rw, 0, "conc_rwlock_release: not held exclusively");
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, 0);
}

/* Exclusive to shared in the one CAS that ends the phase: the caller is counted inside with
 * the readers it admits, so no writer can come between. */
static inline void conc_rwlock_downgrade(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, 0);
    conc__rwlock_end_phase(rw, CONC__RWLOCK_READER_ONE,
                           "conc_rwlock_downgrade: not held exclusively");
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, 0);
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ);
}

/* Relaxed snapshots for assertions and diagnostics: ordered with nothing. is_locked is true
 * while a writer holds the lock or waits for readers to leave. */
static inline bool conc_rwlock_is_locked(const conc_rwlock_t *rw) {
    return (conc_load(&rw->word, CONC_RELAXED) & CONC__RWLOCK_WRITER) != 0;
}
static inline unsigned conc_rwlock_readers(const conc_rwlock_t *rw) {
    return (unsigned)conc__rwlock_readers(conc_load(&rw->word, CONC_RELAXED));
}

/* -------------------------------------------------------------------------------------------
 * Scoped forms: CONC_WITH_RWLOCK_SHARED(&rw) { ... } and CONC_WITH_RWLOCK(&rw) { ... }
 *
 * Acquire rw (shared, or exclusive), run the block, release it however the block is left
 * (the end, return, break, continue, goto out). lock.h's mechanism (CONC__LOCK_WITH_GUARD) with
 * CONC_WITH_LOCK's caveats: break and continue end the block, not an enclosing loop;
 * longjmp and exit() skip the release; blocking acquires only; a downgrade inside
 * CONC_WITH_RWLOCK would leave the guard releasing the wrong side (not supported: release
 * by hand instead).
 * ------------------------------------------------------------------------------------------- */

typedef struct conc__rwlock_guard {
    conc_rwlock_t *held; /* NULL once released */
} conc__rwlock_guard;

CONC_INLINE conc__rwlock_guard conc__rwlock_guard_take_shared(conc_rwlock_t *rw) {
    conc_rwlock_acquire_shared(rw);
    conc__rwlock_guard g = {rw};
    return g;
}
static inline void conc__rwlock_guard_drop_shared(conc__rwlock_guard *g) {
    if (g->held != NULL) {
        conc_rwlock_release_shared(g->held);
        g->held = NULL;
    }
}
CONC_INLINE conc__rwlock_guard conc__rwlock_guard_take(conc_rwlock_t *rw) {
    conc_rwlock_acquire(rw);
    conc__rwlock_guard g = {rw};
    return g;
}
static inline void conc__rwlock_guard_drop(conc__rwlock_guard *g) {
    if (g->held != NULL) {
        conc_rwlock_release(g->held);
        g->held = NULL;
    }
}

#define CONC_WITH_RWLOCK_SHARED(rw)                                                                \
    CONC__LOCK_WITH_GUARD(conc__rwlock_guard, conc__rwlock_guard_take_shared,                      \
                          conc__rwlock_guard_drop_shared, (rw))
#define CONC_WITH_RWLOCK(rw)                                                                       \
    CONC__LOCK_WITH_GUARD(conc__rwlock_guard, conc__rwlock_guard_take, conc__rwlock_guard_drop,    \
                          (rw))

#ifdef __cplusplus
}
#endif
#endif /* CONC_RWLOCK_H */

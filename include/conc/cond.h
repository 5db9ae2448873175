/* conc/cond.h - an 8-byte condition variable: a sequence counter and a waiter count - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.Condition in C: threads wait, with a lock held, for a predicate over
 * data that lock protects; whoever changes that data notifies them. Needs base.h, lock.h and
 * rlock.h beside it (a cond waits with either lock).
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS,
 *   DESIGN; then the code: the wait protocol (timeline), waits, notify. cond.h reads no lock
 *   internals: it uses lock.h's and rlock.h's sections for other conc headers.
 *
 * QUICK START (examples/05_condition_producer_consumer.c)
 *     static conc_lock_t lock = CONC_LOCK_INIT;
 *     static conc_cond_t nonempty = CONC_COND_INIT;
 *     static int items[64], count;             // what the lock guards
 *     conc_lock_acquire(&lock);                // consumer
 *     while (count == 0)                       // a loop, never an if: see CAVEATS
 *         conc_cond_wait(&nonempty, &lock);
 *     printf("got %d\n", items[--count]);
 *     conc_lock_release(&lock);
 *     conc_lock_acquire(&lock); items[count++] = 42; conc_cond_notify(&nonempty);
 *     conc_lock_release(&lock);                // producer
 *
 * API
 *   init      conc_cond_init(c, flags)                  flags: 0 or CONC_SHARED (others abort);
 *                                                       or = CONC_COND_INIT
 *   wait      conc_cond_wait(c, lock)                   releases lock, sleeps, re-acquires it
 *             conc_cond_wait_until(c, lock, dl)         0, ETIMEDOUT; lock held again either way
 *             conc_cond_wait_rlock(c, rlock)            0, EPERM; the full depth is given up
 *             conc_cond_wait_rlock_until(c, rlock, dl)  0, ETIMEDOUT, EPERM     and restored
 *             conc_cond_wait_for(c, lock, pred, arg, dl)  pred's last value (bool): waits
 *                                                       until pred(arg) holds or dl passes
 *             conc_cond_wait_rlock_for(c, rlock, pred, arg, dl)  0, ETIMEDOUT (pred still
 *                                                       false at dl), EPERM, EINVAL (pred
 *                                                       NULL); as wait_for
 *   notify    conc_cond_notify(c)                       wake at least one waiter, if any
 *             conc_cond_notify_all(c)                   wake every waiter
 *
 * ERRORS
 *   wait_until / wait_rlock_until: ETIMEDOUT once the absolute deadline has passed (never
 *   earlier) with no notify seen; the lock is held again when they return, whatever they
 *   return. A past deadline still releases and re-acquires the lock once.
 *   wait_rlock / wait_rlock_until: EPERM if the calling thread does not own the rlock (Python:
 *   RuntimeError); nothing is released then. conc_cond_wait on a conc_lock_t that is not held
 *   aborts ("conc_cond_wait: the lock is not held"; wait_until and wait_for name themselves
 *   the same way), as does mixing a CONC_SHARED cond with a private lock or the other way
 *   round (cross-process wakeups would silently never arrive). An rlock is always private:
 *   the rlock forms abort with a CONC_SHARED cond ("conc_cond_wait_rlock: a CONC_SHARED cond
 *   with an rlock (always private)").
 *   A NULL pred: conc_cond_wait_rlock_for returns EINVAL (nothing released); conc_cond_wait_for,
 *   whose bool has no room for an error, aborts ("conc_cond_wait_for: pred is NULL").
 *
 * ORDERING CONTRACT
 *   The lock orders the data: change the predicate while holding the lock, then notify (with
 *   the lock held or just after releasing it; both are correct). A waiter that re-checks the
 *   predicate after its wait returns sees every write made under the lock before the notify.
 *   No wakeup is lost: a notify that follows (under the lock) a thread's call to wait reaches
 *   that thread or another waiter; notify_all reaches every thread already waiting.
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init, which needs the cond unused. Waits on one
 *   cond must all use the same lock (as in POSIX). notify and notify_all need not hold the
 *   lock. No destroy is needed: a cond owns no resources, and may be freed as soon as no
 *   thread is inside a wait on it and no notify is running.
 *
 * CONFIGURATION
 *   CONC_COND_SPIN  pauses a waiter spends polling the sequence counter before it sleeps (a
 *                   look after each pause, a sched_yield before every 64th: base.h); default
 *                   512, about 10 us on a recent Xeon (a pause is ~14 ns there). Skipped on one
 *                   CPU and while another waiter of the cond sleeps; 0 disables spinning. The
 *                   same budget applies to polling the lock after the wait. A wake across CPUs
 *                   costs 13-150 us on a VM: a waiter that catches its notify while spinning
 *                   pays none, and its notifier makes no syscall.
 *
 * CAVEATS
 *   - Spurious wakeups happen: a wait may return 0 although no notify was meant for it (a
 *     notify for another waiter, a signal, a notify racing the wait's start). Always wait in a
 *     loop on the predicate, as in QUICK START; Python's Condition.wait_for does the same.
 *   - notify wakes at least one waiter, maybe more (threads still spinning see every notify).
 *   - notify_all wakes every sleeper at once; they then queue on the lock (a "thundering herd"
 *     of wakeups, not of lock acquisitions: each sleeps on the lock and is woken in turn).
 *     No requeue onto the lock word: conc_lock counts its sleepers exactly and a requeued
 *     thread would be an uncounted sleeper that no release wakes (see DESIGN).
 *   - The counter is 32 bits: a waiter stalled between reading it and sleeping while exactly
 *     2^32 notifies pass would sleep through them (the same trade as Rust's std condvar).
 *   - CONC_SHARED: give both the cond and its lock CONC_SHARED, in MAP_SHARED memory. A
 *     process that dies inside a wait leaves its registration behind: notifies still reach
 *     live waiters, but each one then makes an RMW and a futex wake even with nobody waiting.
 *   - fork(): a cond with waiters in other threads is meaningless in the child; re-init it.
 *   - Signal handlers must not wait or notify (the lock is not async-signal-safe).
 *   - ThreadSanitizer: the lock's annotations carry the happens-before edges of the payload;
 *     the cond itself uses plain atomics and needs none.
 *
 * DESIGN
 *   Two 32-bit words:
 *     seq    the futex word: +1 by each notify that finds a waiter (wraps).
 *     state  bits 0..29 waiters: threads between registering (under the lock) and leaving the
 *            wait; bit 30 SLEEPING: one of them may be in futex_wait (cleared when the waiter
 *            count drops to 0); bit 31 SHARED: non-private futex ops.
 *   wait: register (waiters + 1) and read seq, both while holding the lock; release the lock;
 *   spin on seq for a few us, yielding now and then (if the notifier shares our CPU, the
 *   yield lets it run and the whole hand-off stays in user space); then set SLEEPING, re-read
 *   seq, and futex_wait(seq, seen). Leave (waiters - 1), then re-acquire: first by polling the
 *   lock word (the notifier usually still holds the lock, often for its whole futex_wake
 *   syscall, and the lock's own short spin would give up and sleep: "hurry up and wait"),
 *   then with conc_lock_acquire.
 *   notify: a relaxed load of state; no waiter means nothing to do (no RMW, no syscall).
 *   Otherwise seq + 1, and a futex wake only if SLEEPING: a waiter that catches the change
 *   while spinning costs the notifier no syscall. Why reading seq under the lock loses no
 *   wakeup, and why SLEEPING needs seq_cst, is shown in the timelines above the slow paths.
 *   The spin model is tests/models/cond.pml.
 */
#ifndef CONC_COND_H
#define CONC_COND_H

#include "lock.h"
#include "rlock.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_cond {
    uint32_t seq;   /* the futex word: notifies seen so far, mod 2^32; all access atomic */
    uint32_t state; /* waiters, SLEEPING, SHARED (see DESIGN); all access atomic */
} conc_cond_t;

// clang-format off
#define CONC_COND_INIT {0, 0}
// clang-format on

#ifndef CONC_COND_SPIN
#define CONC_COND_SPIN 512
#endif

#define CONC__COND_WAITER_ONE 0x1u         /* one registered waiter */
#define CONC__COND_WAITER_MASK 0x3fffffffu /* the waiter count */
#define CONC__COND_SLEEPING 0x40000000u    /* a waiter may be asleep: notify must wake */
#define CONC__COND_SHARED 0x80000000u      /* process-shared: non-private futex ops */

static inline void conc_cond_init(conc_cond_t *c, int flags) {
    conc__base_check_init_flags(flags, "conc_cond_init");
    conc_store(&c->seq, 0u, CONC_RELAXED);
    conc_store(&c->state, (flags & CONC_SHARED) ? CONC__COND_SHARED : 0u, CONC_RELAXED);
}

CONC_STATIC_ASSERT(sizeof(conc_cond_t) == 8, "a conc_cond is two 32-bit words");
CONC_STATIC_ASSERT(((CONC__COND_WAITER_MASK | CONC__COND_SLEEPING) & CONC__COND_SHARED) == 0 &&
                       (CONC__COND_WAITER_MASK & CONC__COND_SLEEPING) == 0,
                   "the state word's waiter count, SLEEPING and SHARED are disjoint");

/* -------------------------------------------------------------------------------------------
 * The wait protocol
 *
 * Registering and reading seq happen while the caller holds the lock: that is what makes a
 * notify issued after the predicate changed (under the same lock) visible to the waiter.
 *
 *   waiter (holds lock, predicate false)       notifier
 *   ---------------------------------------    --------------------------------------------
 *   state += WAITER               [relaxed]
 *   seen = seq                    [relaxed]
 *   release lock                  [lock.R1]
 *                                              acquire lock [lock.A1]; predicate = true
 *                                              release lock (or notify first, either way)
 *                                              state has a WAITER (the lock orders the
 *                                                increment before this load)
 *                                              seq += 1                           [cond.S1]
 *   spin: seq != seen? -> return
 *   state |= SLEEPING             [cond.S2]
 *   seq != seen? -> return        [cond.S3]
 *                                              state has SLEEPING?                [cond.S4]
 *                                                -> futex_wake(seq)
 *   futex_wait(seq, seen)  (kernel: seq == seen? else EAGAIN)
 *
 *   seen was read before the lock was released, and the notifier's seq += 1 comes after it
 *   acquired the lock, so seq != seen from [cond.S1] on: the waiter cannot sleep through it.
 *   S1..S4 are seq_cst: a store-buffering pair (waiter: store state, load seq; notifier: store
 *   seq, load state). Without a single order, both loads could read the old values: the
 *   waiter sleeps, the notifier skips the wake. With it, either [cond.S3] sees the new seq, or
 *   [cond.S4] sees SLEEPING and wakes; a wake that comes before the waiter reaches futex_wait
 *   leaves seq changed, so the kernel's re-check returns at once.
 * ------------------------------------------------------------------------------------------- */

/* Leave the wait: deregister; the last waiter out clears SLEEPING (nobody can be asleep when
 * nobody is registered, and a new waiter sets it again before it sleeps). Relaxed: the count
 * only steers notify's fast path, which the lock orders (timeline above). */
CONC_INLINE void conc__cond_leave(conc_cond_t *c) {
    uint32_t v = conc_load(&c->state, CONC_RELAXED);
    uint32_t next;
    do {
        next = v - CONC__COND_WAITER_ONE;
        if ((next & CONC__COND_WAITER_MASK) == 0)
            next &= ~CONC__COND_SLEEPING;
    } while (!conc_cas_weak(&c->state, &v, next, CONC_RELAXED, CONC_RELAXED));
}

/* Waits, with the lock released, until seq moves past seen, a futex wake arrives, or the
 * deadline passes. Returns 0 (woken, maybe spuriously) or ETIMEDOUT. */
CONC_COLD int conc__cond_block_slow(conc_cond_t *c, uint32_t seen, int64_t deadline) {
    uint32_t st = conc_load(&c->state, CONC_RELAXED);
    int flags = conc_futex_flags(st, CONC__COND_SHARED);
    /* Spin only where it can pay: another CPU exists to run the notifier, nobody already
     * sleeps here (sleepers mean the waits are long, or the CPUs oversubscribed: spinning
     * would steal the notifier's CPU), and the deadline is not already past (base.h's spin
     * checks the first and the last). */
    if (!(st & CONC__COND_SLEEPING)) {
        conc_spin_t spin = conc_spin_begin(CONC_COND_SPIN, CONC_SPIN_STEADY, deadline);
        /* Relaxed polls: the payload is ordered by the lock we re-acquire, not by seq. */
        while (conc_spin_next(&spin))
            if (conc_load(&c->seq, CONC_RELAXED) != seen)
                return 0;
    }
    CONC_CHAOS_POINT();
    /* [cond.S2] seq_cst: orders this store before the load [cond.S3] (store->load), see the
     * timeline. */
    conc_fetch_or(&c->state, CONC__COND_SLEEPING, CONC_SEQ_CST);
    for (;;) {
        if (conc_load(&c->seq, CONC_SEQ_CST) != seen) /* [cond.S3] */
            return 0;
        CONC_CHAOS_POINT();
        int r = conc_futex_wait(&c->seq, seen, flags, deadline);
        if (r == 0)
            return 0; /* woken: a notify picked us (or a rare spurious kernel wakeup) */
        if (r == ETIMEDOUT)
            /* A notify that landed as the deadline passed is reported as a wakeup, so a
             * notify-one is never spent on a waiter that then claims it saw none. */
            return conc_load(&c->seq, CONC_RELAXED) != seen ? 0 : ETIMEDOUT;
        /* EAGAIN (seq moved: the load above returns) or EINTR (sleep on, same deadline). */
    }
}

/* Registers the caller as a waiter and reads seq; the caller holds the lock. */
CONC_INLINE uint32_t conc__cond_enter(conc_cond_t *c) {
    /* Relaxed: the lock release that follows orders it before any notify that runs after
     * the notifier acquired the lock. */
    conc_fetch_add(&c->state, CONC__COND_WAITER_ONE, CONC_RELAXED);
    return conc_load(&c->seq, CONC_RELAXED); /* read while the lock is held: see timeline */
}

CONC_INLINE void conc__cond_check_lock(const conc_cond_t *c, const conc_lock_t *l,
                                       const char *caller) {
    if (CONC_UNLIKELY(!conc_lock_is_locked(l)))
        conc__base_misuse_slow(caller, "the lock is not held");
    if (CONC_UNLIKELY(conc__lock_is_shared(l) !=
                      ((conc_load(&c->state, CONC_RELAXED) & CONC__COND_SHARED) != 0)))
        conc__base_misuse_slow(caller, "the cond and the lock disagree on CONC_SHARED");
}

/* -------------------------------------------------------------------------------------------
 * Waits
 * ------------------------------------------------------------------------------------------- */

/* The lock wait, without CONC_NODISCARD so conc_cond_wait can drop the result. caller: the
 * public call, for the misuse message. */
CONC_INLINE int conc__cond_wait_lock(conc_cond_t *c, conc_lock_t *l, int64_t deadline,
                                     const char *caller) {
    conc__cond_check_lock(c, l, caller);
    uint32_t seen = conc__cond_enter(c);
    conc_lock_release(l);
    int r = conc__cond_block_slow(c, seen, deadline);
    conc__cond_leave(c);
    /* The notifier that woke us usually still holds the lock: poll it a while (lock.h). */
    conc__lock_acquire_polling_slow(l, CONC_COND_SPIN);
    return r;
}

CONC_NODISCARD static inline int conc_cond_wait_until(conc_cond_t *c, conc_lock_t *l,
                                                      int64_t deadline) {
    return conc__cond_wait_lock(c, l, deadline, "conc_cond_wait_until");
}

/* Returns 0 or, spuriously, without a notify: always re-check the predicate. */
static inline void conc_cond_wait(conc_cond_t *c, conc_lock_t *l) {
    (void)conc__cond_wait_lock(c, l, CONC_FOREVER, "conc_cond_wait");
}

/* An rlock is private (it keeps its owner's thread id), so a CONC_SHARED cond with one
 * aborts, as with a private conc_lock_t. Not an error code: `while (!ready)
 * conc_cond_wait_rlock(&c, &r);` would spin on it holding r, and the thread that sets ready
 * could never take r. Then EPERM if the caller does not own r (that loop spins without r,
 * until ready). */
CONC_INLINE int conc__cond_check_rlock(const conc_cond_t *c, const conc_rlock_t *r,
                                       const char *caller) {
    if (CONC_UNLIKELY(conc_load(&c->state, CONC_RELAXED) & CONC__COND_SHARED))
        conc__base_misuse_slow(caller, "a CONC_SHARED cond with an rlock (always private)");
    return CONC_UNLIKELY(!conc_rlock_is_owned(r)) ? EPERM : 0;
}

/* The rlock wait, without CONC_NODISCARD; caller: the public call, for the misuse message. */
CONC_INLINE int conc__cond_wait_rlock(conc_cond_t *c, conc_rlock_t *r, int64_t deadline,
                                      const char *caller) {
    int bad = conc__cond_check_rlock(c, r, caller);
    if (CONC_UNLIKELY(bad))
        return bad;
    uint32_t seen = conc__cond_enter(c);
    uint32_t depth = conc__rlock_release_save(r); /* gives up every level, not just one */
    int e = conc__cond_block_slow(c, seen, deadline);
    conc__cond_leave(c);
    conc__rlock_acquire_restore(r, depth, CONC_COND_SPIN); /* polls first, as above */
    return e;
}

CONC_NODISCARD static inline int conc_cond_wait_rlock_until(conc_cond_t *c, conc_rlock_t *r,
                                                            int64_t deadline) {
    return conc__cond_wait_rlock(c, r, deadline, "conc_cond_wait_rlock_until");
}

/* Not CONC_NODISCARD: its one error, EPERM, is the caller's own doing (base.h), and
 * `while (!ready) conc_cond_wait_rlock(&c, &r);` is the loop Python's Condition(RLock()) waits
 * in, as `conc_cond_wait` is the lock's. */
static inline int conc_cond_wait_rlock(conc_cond_t *c, conc_rlock_t *r) {
    int e = conc__cond_wait_rlock(c, r, CONC_FOREVER, "conc_cond_wait_rlock");
    return e == ETIMEDOUT ? 0 : e; /* cannot time out: 0 or EPERM */
}

/* -------------------------------------------------------------------------------------------
 * Notify
 * ------------------------------------------------------------------------------------------- */

CONC_COLD void conc__cond_notify_slow(conc_cond_t *c, int n) {
    conc_fetch_add(&c->seq, 1u, CONC_SEQ_CST);        /* [cond.S1]: pairs with [cond.S3] */
    uint32_t st = conc_load(&c->state, CONC_SEQ_CST); /* [cond.S4]: pairs with [cond.S2] */
    if (st & CONC__COND_SLEEPING) {
        CONC_CHAOS_POINT();
        conc_futex_wake(&c->seq, n, conc_futex_flags(st, CONC__COND_SHARED));
    }
}

/* Relaxed load of the waiter count: a waiter that registered before the notifier's lock
 * acquire is visible to it through the lock (timeline above); one that registers later reads
 * seq afterwards and sees the predicate change anyway. No waiter: no RMW, no syscall. */
static inline void conc_cond_notify(conc_cond_t *c) {
    if (CONC_UNLIKELY(conc_load(&c->state, CONC_RELAXED) & CONC__COND_WAITER_MASK))
        conc__cond_notify_slow(c, 1);
}

static inline void conc_cond_notify_all(conc_cond_t *c) {
    if (CONC_UNLIKELY(conc_load(&c->state, CONC_RELAXED) & CONC__COND_WAITER_MASK))
        conc__cond_notify_slow(c, INT_MAX);
}

/* -------------------------------------------------------------------------------------------
 * Predicate waits (Python's Condition.wait_for)
 * ------------------------------------------------------------------------------------------- */

/* The caller holds l; pred(arg) runs with l held, first before any wait, then after every
 * wake (a notify, a spurious wakeup or the deadline). Returns pred's last value: true as soon
 * as it holds, false once the deadline passed with it false (it is checked one last time after
 * the deadline's wait). A past deadline checks once and never waits. l is held on return. */
CONC_NODISCARD static inline bool conc_cond_wait_for(conc_cond_t *c, conc_lock_t *l,
                                                     bool (*pred)(void *), void *arg,
                                                     int64_t deadline) {
    if (CONC_UNLIKELY(!pred))
        CONC_ABORT("conc_cond_wait_for: pred is NULL");
    /* Before pred's first run, not only before a wait: misuse aborts even when pred already
     * holds or the deadline has passed, and pred never runs without the lock. */
    conc__cond_check_lock(c, l, "conc_cond_wait_for");
    bool result = pred(arg);
    while (!result) {
        if (deadline != CONC_FOREVER && conc_now() >= deadline)
            break;
        (void)conc__cond_wait_lock(c, l, deadline, "conc_cond_wait_for");
        result = pred(arg);
    }
    return result;
}

/* The same over an rlock (Python's Condition(RLock()).wait_for): the caller owns r at any
 * depth; pred(arg) runs with r held at that depth, and every wait gives up the full depth and
 * restores it (conc_cond_wait_rlock_until). Returns 0 as soon as pred holds, ETIMEDOUT once the
 * deadline passed with it false (checked one last time after the deadline's wait), EPERM if the
 * caller does not own r, EINVAL if pred is NULL (either way pred never runs, nothing is
 * released). An int, not wait_for's bool: the rlock family reports EPERM (as
 * wait_rlock does), which a bool could not carry. */
CONC_NODISCARD static inline int conc_cond_wait_rlock_for(conc_cond_t *c, conc_rlock_t *r,
                                                          bool (*pred)(void *), void *arg,
                                                          int64_t deadline) {
    int bad = pred ? conc__cond_check_rlock(c, r, "conc_cond_wait_rlock_for") : EINVAL;
    if (CONC_UNLIKELY(bad))
        return bad;
    while (!pred(arg)) {
        if (deadline != CONC_FOREVER && conc_now() >= deadline)
            return ETIMEDOUT;
        /* Owned, so 0 or ETIMEDOUT; either way pred decides. EPERM would mean pred released
         * r (misuse): report it rather than run pred without the rlock. */
        if (CONC_UNLIKELY(conc__cond_wait_rlock(c, r, deadline, "conc_cond_wait_rlock_for") ==
                          EPERM))
            return EPERM;
    }
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_COND_H */

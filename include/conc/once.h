/* conc/once.h - run an initializer exactly once; later calls cost one acquire load - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * pthread_once and C11 call_once, with an initializer that may fail: the first caller runs
 * it; callers that arrive meanwhile sleep (no spinning) until it finishes; once it succeeded,
 * every later call is one acquire load and a compare, inline.
 *
 * CONTENTS  quick start, API, errors, ordering contract, thread safety, configuration,
 *           caveats, design
 *
 * QUICK START
 *     static conc_once_t table_once = CONC_ONCE_INIT;
 *     static int table[256];
 *     static int build_table(void *arg) {
 *         (void)arg;
 *         for (int i = 0; i < 256; i++)
 *             table[i] = i * i;
 *         return 0;                         // nonzero: failed, the next caller tries again
 *     }
 *     if (conc_once(&table_once, build_table, NULL) == 0) { }   // table is ready here
 *
 * API
 *   init      = CONC_ONCE_INIT, or conc_once_init(o, flags)   flags: 0 or CONC_SHARED
 *                                           (others abort)
 *   run       conc_once(o, fn, arg)         0 once fn has succeeded (here or in another
 *                                           thread), else what fn returned in this thread;
 *                                           EINVAL for a NULL fn (unless already done)
 *   query     conc_once_is_done(o)          true once fn has succeeded (acquire)
 *
 * ERRORS
 *   conc_once returns 0, or the nonzero value fn returned when this caller ran it and it
 *   failed, or EINVAL when fn is NULL and the once is not done (a done once returns 0
 *   without looking at fn: the fast path stays one load and a compare). A failed run leaves
 *   the once not done and wakes the callers that were waiting; the first of them runs fn
 *   again (C++'s std::call_once does the same when the callable throws). A caller never
 *   returns another thread's failure. fn calling conc_once on its own once (directly or not)
 *   would wait for itself: that aborts with "conc_once: the init function called conc_once on
 *   its own once". So does it in a child fn forked (the child's copy of fn runs on a thread
 *   with another id), with "conc_once: the thread running fn is not in this process ..."
 *   (CAVEATS).
 *
 * ORDERING CONTRACT
 *   Everything fn (and its thread before it) wrote is visible to every caller whose conc_once
 *   returns 0 and to every conc_once_is_done that returns true.
 *
 * THREAD SAFETY
 *   Every call may overlap every other except conc_once_init (it resets the state: call it
 *   before the once is shared, or use CONC_ONCE_INIT). No destroy.
 *
 * CAVEATS
 *   - fn should return to conc_once; report failure by returning nonzero. A C++ exception out
 *     of fn ends the run as a failed one and goes on to the caller (std::call_once's rule),
 *     and so do pthread_exit and cancellation inside fn (pthread_once's), when the file that
 *     calls conc_once is built with exceptions (C++ without -fno-exceptions, or C with
 *     -fexceptions): the unwinding runs conc_once's cleanup. Elsewhere they, and a longjmp
 *     out of fn in any file, leave the once running forever.
 *   - A private once whose run has lost its thread never completes: fork() while another
 *     thread ran fn (in the child), or that thread exited inside fn (where, as above, the
 *     exit did not end the run). A conc_once on it from the process's first thread (the one
 *     fork() copies) aborts with "conc_once: the thread running fn is not in this process
 *     ..." (unless the kernel gave a new thread of the process the lost thread's id); from
 *     other threads it sleeps forever.
 *   - fork() inside fn is fine: fn goes on in the child, on its first thread, and the run
 *     ends there as usual (a private once); fn calling conc_once on its own once there aborts,
 *     as above.
 *   - CONC_SHARED onces in MAP_SHARED memory work across processes; the recursion check uses
 *     the kernel thread id, which is unique across the processes of one pid namespace. A
 *     process that dies inside fn leaves the once running forever: its waiters, and every
 *     later caller, sleep forever (there is no timed form).
 *
 * DESIGN
 *   One 32-bit state word {RUNNING 1, WAITERS 2, DONE 4, SHARED 8}, and the runner's kernel
 *   thread id beside it (for the recursion check). The first caller CASes 0 -> RUNNING and
 *   runs fn; others raise WAITERS and futex_wait on the word. The runner ends with one swap:
 *   DONE on success, back to 0 on failure; the old word says whether to wake. The fast path
 *   is `load(acquire) == DONE`. tests/models/once.pml checks it.
 */
#ifndef CONC_ONCE_H
#define CONC_ONCE_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tag is not "conc_once": in C++ it would clash with the function. */
typedef struct conc_once_control {
    uint32_t state; /* see DESIGN; all access atomic */
    uint32_t owner; /* kernel tid of the thread running fn; relaxed atomics */
} conc_once_t;

// clang-format off
#define CONC_ONCE_INIT {0, 0}
// clang-format on

#define CONC__ONCE_RUNNING 0x1u
#define CONC__ONCE_WAITERS 0x2u
#define CONC__ONCE_DONE 0x4u
#define CONC__ONCE_SHARED 0x8u

static inline void conc_once_init(conc_once_t *o, int flags) {
    conc__base_check_init_flags(flags, "conc_once_init");
    conc_store(&o->state, (flags & CONC_SHARED) ? CONC__ONCE_SHARED : 0u, CONC_RELAXED);
    conc_store(&o->owner, 0u, CONC_RELAXED);
}

/* -------------------------------------------------------------------------------------------
 * Slow path (cold, out of line)
 *
 *   runner                                     waiter
 *   ---------------------------------------    --------------------------------------------
 *   CAS 0 -> RUNNING; fn(arg)
 *                                              CAS RUNNING -> RUNNING|WAITERS
 *   old = swap(DONE)   [once.R1]
 *   old had WAITERS: wake(all)
 *                                              futex_wait(state, RUNNING|WAITERS)
 *                                                -> EAGAIN: the state is DONE
 *
 * Either the swap comes first and futex_wait finds the word changed, or the waiter is queued
 * first and the wake, decided from the very bit it raised, finds it. A failed run swaps in 0
 * (plus SHARED) the same way; the woken waiters race to CAS 0 -> RUNNING again.
 * ------------------------------------------------------------------------------------------- */

CONC_INLINE uint32_t conc__once_tid(void) {
    return (uint32_t)syscall(SYS_gettid);
}

/* Whether a private once's run that `owner` started can never end for `me`: asked when the
 * runner is not us. fork() copies one thread, into the child's first thread (its tid is the
 * pid), so a run copied mid-way has its runner in no thread of the child: either that first
 * thread is the runner's copy (fn forked, and this is fn calling conc_once on its own once
 * again) or the run was abandoned (another thread forked). Either way no swap will ever end
 * it, and the first thread would sleep forever. (A runner that exited inside fn looks the
 * same, and is caught the same way unless its id went to a new thread.) Other threads of the
 * child may be waiting for the runner's copy to finish, so only the first thread asks. A
 * runner in our process that finished and exited since we read owner moved the state on
 * first (owner 0, then the swap): the re-reads after the kernel's answer tell that apart. */
CONC_COLD bool conc__once_run_lost_slow(conc_once_t *o, uint32_t s, uint32_t owner, uint32_t me) {
    pid_t pid = getpid();
    if (owner == 0 || (uint32_t)pid != me)
        return false;
    int saved_errno = errno;
    bool gone = syscall(SYS_tgkill, pid, (pid_t)owner, 0) != 0 && errno == ESRCH;
    errno = saved_errno;
    return gone && conc_load(&o->state, CONC_ACQUIRE) == s &&
           conc_load(&o->owner, CONC_RELAXED) == owner;
}

/* The run ends, whichever way fn leaves: by returning (result: its value), or by unwinding
 * (a C++ exception, or pthread_exit or a cancellation, whose forced unwinding runs this too
 * where exceptions are on: result stays nonzero, a failed run, as std::call_once's is when
 * the callable throws, and the unwinding goes on). DONE on success, else back to not run (the
 * waiters race to run fn again), waking the waiters if any raised WAITERS. */
typedef struct conc__once_run {
    conc_once_t *o;
    uint32_t shared;
    int result;
} conc__once_run;
CONC_COLD void conc__once_run_ends_slow(conc__once_run *run) {
    conc_once_t *o = run->o;
    conc_store(&o->owner, 0u, CONC_RELAXED);
    /* [once.R1] release: fn's writes go out with DONE. */
    uint32_t old =
        conc_swap(&o->state, run->shared | (run->result == 0 ? CONC__ONCE_DONE : 0u), CONC_RELEASE);
    if (old & CONC__ONCE_WAITERS) {
        CONC_CHAOS_POINT();
        conc_futex_wake(&o->state, INT_MAX, run->shared ? CONC_SHARED : 0);
    }
}

CONC_COLD int conc__once_slow(conc_once_t *o, int (*fn)(void *), void *arg) {
    if (CONC_UNLIKELY(!fn))
        return EINVAL; /* before it can become the runner: nothing would end the run */
    uint32_t s = conc_load(&o->state, CONC_ACQUIRE); /* [once.A1] */
    const uint32_t shared = s & CONC__ONCE_SHARED;
    int flags = shared ? CONC_SHARED : 0;
    uint32_t me = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if (s & CONC__ONCE_DONE)
            return 0; /* [once.A1] (acquire load or CAS failure): pairs with [once.R1] */
        if (!(s & CONC__ONCE_RUNNING)) {
            /* Acquire: a failed earlier run's writes, if fn looks at them. */
            if (!conc_cas(&o->state, &s, shared | CONC__ONCE_RUNNING, CONC_ACQUIRE, CONC_ACQUIRE))
                continue;
            if (me == 0)
                me = conc__once_tid();
            conc_store(&o->owner, me, CONC_RELAXED);
            conc__once_run run __attribute__((cleanup(conc__once_run_ends_slow))) = {o, shared, -1};
            run.result = fn(arg);
            return run.result; /* the run ends as this scope does */
        }
        /* Running. Relaxed: only the runner writes owner, so reading our own id there means
         * we are the runner, whatever the ordering. */
        if (me == 0)
            me = conc__once_tid();
        uint32_t owner = conc_load(&o->owner, CONC_RELAXED);
        if (owner == me)
            CONC_ABORT("conc_once: the init function called conc_once on its own once");
        if (!shared && conc__once_run_lost_slow(o, s, owner, me))
            CONC_ABORT("conc_once: the thread running fn is not in this process (fork() while "
                       "it ran fn, or fn called conc_once on its own once in a child it forked, "
                       "or it exited inside fn): the run never ends");
        if (!(s & CONC__ONCE_WAITERS)) {
            /* A request the runner's swap reads (acquire for the failure case, see [once.A1]). */
            if (!conc_cas(&o->state, &s, s | CONC__ONCE_WAITERS, CONC_ACQUIRE, CONC_ACQUIRE))
                continue;
            s |= CONC__ONCE_WAITERS;
        }
        (void)conc_futex_wait(&o->state, s, flags, CONC_FOREVER);
        s = conc_load(&o->state, CONC_ACQUIRE); /* [once.A1] */
    }
}

/* -------------------------------------------------------------------------------------------
 * Fast path (inline): one acquire load [once.A1] and a compare.
 * ------------------------------------------------------------------------------------------- */

CONC_NODISCARD static inline int conc_once(conc_once_t *o, int (*fn)(void *), void *arg) {
    if (CONC_LIKELY(conc_load(&o->state, CONC_ACQUIRE) & CONC__ONCE_DONE))
        return 0;
    return conc__once_slow(o, fn, arg);
}

static inline bool conc_once_is_done(const conc_once_t *o) {
    return (conc_load(&o->state, CONC_ACQUIRE) & CONC__ONCE_DONE) != 0; /* [once.A1] */
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_ONCE_H */

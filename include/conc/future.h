/* conc/future.h - futures: completion, callbacks, wait_any/wait_all, as-completed - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's concurrent.futures.Future in C, with continuations (on_done), which std::future
 * lacks. The thread-pool executor and the lazy map that make futures for tasks live in
 * executor.h (which includes this header). As in the first design, where future.h held the
 * executor too, this header includes executor.h when it sits beside it in a folder named
 * conc (the folder copied whole, or installed), and coro_bridge.h (conc_coro_await) when
 * coro.h is included too; copied alone, with only base.h and lock.h, it is the futures and
 * nothing more (an application's own executor.h is never taken for conc's).
 *
 * CONTENTS
 *   API, ERRORS, RESULTS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS, DESIGN;
 *   then the code: the state word and the future; creation and references; completion (the
 *   waiter protocol, [future.R1]); queries and waiting; callbacks; wait_any / wait_all;
 *   as-completed; for other conc headers (executor.h, forkpool.h).
 *
 * QUICK START (examples/10_future_timeout_cancel.c)
 *     static int answer = 42;
 *     conc_future_t *f;
 *     if (conc_future_create(&f) != 0) abort();     // a promise: pending, one reference
 *     if (conc_future_complete(f, 0, &answer) != 0) abort();
 *     if (conc_future_wait(f) == 0) printf("%d\n", *(int *)conc_future_result(f));
 *     conc_future_release(f);
 *
 * API
 *   tasks     int fn(void *arg, void **result)   returns 0 or an error status (any non-zero int)
 *   future    conc_future_create(&f)               a promise: pending, one reference
 *             conc_future_complete(f, status, r)   0, EBUSY (already completing or done)
 *             conc_future_cancel(f)                0 if it was pending, EBUSY otherwise
 *   wait      conc_future_wait(f)                  outcome: 0, the task's status, ECANCELED
 *             conc_future_wait_until(f, dl)        ... or ETIMEDOUT
 *             conc_future_wait_any(fs, n, dl, &i)  0 (fs[i] is done), ETIMEDOUT, EINVAL, ENOMEM
 *             conc_future_wait_all(fs, n, dl)      0 (all done), ETIMEDOUT, EINVAL
 *   query     conc_future_is_done(f)               done, failed or cancelled
 *             conc_future_state(f)                 CONC_FUTURE_PENDING/RUNNING/DONE/FAILED/
 *                                                  CANCELLED
 *             conc_future_result(f)                done or failed: what the task (or complete)
 *                                                  stored; NULL otherwise (see RESULTS)
 *   callback  conc_future_on_done(f, fn, arg)      0, ENOMEM, EINVAL (fn NULL); fn(f, arg)
 *                                                  runs exactly once
 *   refs      conc_future_retain(f), conc_future_release(f)   release(NULL): no-op, as free
 *   as done   conc_as_completed_create(&ac, fs, n)           0, ENOMEM, EINVAL; n may be 0
 *             conc_as_completed_add(ac, f)                   0, ENOMEM, EINVAL
 *             (a set: a future given twice, or added again, is one member and comes out
 *             once, as Python's as_completed returns a duplicate once)
 *             conc_as_completed_next(ac, &f)                 0, EPIPE (every future returned),
 *                                                            EINVAL (NULL ac or &f)
 *             conc_as_completed_try_next(ac, &f)             0, EAGAIN, EPIPE, EINVAL
 *             conc_as_completed_next_until(ac, dl, &f)       0, ETIMEDOUT, EPIPE, EINVAL
 *             conc_as_completed_destroy(ac)
 *
 * ERRORS
 *   wait/wait_until return the OUTCOME: 0 (done), the task's non-zero status (failed),
 *   ECANCELED (cancelled), or ETIMEDOUT (wait_until only, never before the deadline). A task
 *   may itself return ECANCELED or ETIMEDOUT: conc_future_state tells them apart.
 *   complete: EBUSY if the future is already completing, done, failed or cancelled (the
 *   second completer loses; nothing is changed). cancel: EBUSY unless pending.
 *   wait_any: EINVAL for n 0. wait_any, wait_all, as_completed_create and _add: EINVAL for a
 *   NULL future (a failed submit leaves NULL where its future would be; nothing is waited
 *   for or added then). on_done: EINVAL for a NULL fn (nothing is registered: the thread
 *   that completes the future would call it).
 *   NULL for the future: EINVAL from complete, cancel, wait, wait_until and on_done (create
 *   and as_completed_create: for the out pointer); is_done, state, result and retain cannot
 *   report it and abort naming themselves. release(NULL) does nothing, as free(NULL).
 *
 * RESULTS
 *   A done future's result is what the task stored in *result (or complete's r). A failed
 *   one keeps its result too: the task's error detail, as Python's Future.exception()
 *   (NULL if it stored none). conc never frees a result, the task's or complete's: the code
 *   that consumes the outcome owns it (a task that mallocs an error message expects its
 *   waiter to free it). A cancelled future has none (NULL).
 *
 * ORDERING CONTRACT
 *   - Everything the task (or the thread calling complete) wrote before completing is visible
 *     to every thread whose wait returns that outcome, to every on_done callback, and to the
 *     thread that gets the future from as_completed_next or wait_any.
 *   - A future is completed exactly once: of complete, cancel and an executor running its
 *     task, exactly one wins.
 *
 * THREAD SAFETY
 *   Every call may overlap every other on the same future. REFERENCES: every call on a
 *   future needs a reference owned by the calling thread for the whole call, including
 *   conc_future_complete: if you pass a promise to another thread to complete, retain it for
 *   that thread. The futures an as-completed set returns stay valid until the set is
 *   destroyed (it holds a reference). wait_any/wait_all need the caller to hold references
 *   to every future in the array.
 *
 * CONFIGURATION
 *   CONC_FUTURE_SPIN     relaxed loads a waiter spins before sleeping (default 256; skipped on
 *                        a single CPU)
 *
 * CAVEATS
 *   - on_done callbacks run in the thread that completes the future (a worker, usually) or at
 *     once in the registering thread if it is already done: keep them short (one that blocks
 *     holds that thread, a worker of the executor, as long). A callback may submit to the
 *     executor: in one of its workers a submit never waits for room (executor.h).
 *   - C++: a callback must not throw. It is called from C frames, and an exception that
 *     leaves it skips the callbacks registered after it (never run, their nodes leaked) and
 *     comes out of the call that completed the future (a worker's: std::terminate).
 *   - Spurious futex wakeups are absorbed; a signal does not interrupt a wait.
 *   - A future released twice may already be someone else's (as with free).
 *   - At most 2^26 - 1 references to one future at a time (retain aborts past that).
 *   - Up to 4095 threads blocked at once in next on one as-completed set sleep until woken;
 *     more wait too, but poll (base.h's eventcount: every 1 to 16 ms), so they may learn of
 *     a completion that many ms late, until a place among the 4095 frees up.
 *   - A wait from an executor's worker blocks that worker, as in Python: when every worker
 *     waits for a task of the executor that none is free to start, the waits end only when
 *     another thread cancels those tasks or shuts the executor down with cancel_pending
 *     (executor.h's CAVEATS).
 *   - fork(): the child gets a copy of every future. One done before the fork reads the same
 *     there; one still pending is completed in the child only by what the child runs itself
 *     (an executor's workers and a fork pool's monitor are threads: the child has none of
 *     them), so a wait for it there waits for good. Waiters of the parent do not exist in the
 *     child.
 *
 * DESIGN
 *   A future is one 32-bit state word (low 3 bits: PENDING, RUNNING, COMPLETING, DONE,
 *   FAILED, CANCELLED; bit 3 WAITERS: someone sleeps on the word; bit 4 CALLBACKS: the list
 *   has nodes; bit 5 TASK: the executor's task completed it; bits 6-31 the reference count),
 *   the outcome, and a callback list under a 4-byte conc_lock: 64 bytes, one cache line.
 *   Completing is a CAS into COMPLETING (exactly one winner), plain writes of the outcome,
 *   then one add that moves the state to final [future.R1] and returns the flags: only if WAITERS
 *   was set is there a futex_wake, only if CALLBACKS was set is the lock taken. So a
 *   completion nobody waits for is two atomics and no syscall; a waiter spins briefly, then
 *   sets WAITERS and sleeps on the word. An executor's worker is the only writer of the
 *   task's own outcome fields, so it skips COMPLETING: the gate CAS (PENDING -> RUNNING),
 *   then one CAS to the final state that also drops the worker's reference. Callbacks are
 *   nodes in a doubly linked list. A node is added under the lock, after a CAS that sets
 *   CALLBACKS while the state is not final: since that CAS and [future.R1] act on one word, either
 *   the completer sees CALLBACKS (and takes the lock, so it finds the node) or the
 *   registrant sees the final state (and runs the callback itself). Internal "waker" nodes
 *   (wait_any, as-completed) run under the lock and can be unlinked again, which is how
 *   wait_any leaves no node behind. as-completed: each future gets a waker node that appends
 *   its entry to the set's FIFO and wakes one sleeper: O(1) per completion. wait_any and
 *   as-completed's next sleep on base.h's eventcount (tests/models/queue.pml checks its word;
 *   each one's timeline says which lock orders its registration before the notify).
 *   tests/models/future.pml checks completion, cancel, wait, on_done and the references
 *   together. A future whose `pool` is set goes back to its pool (executor.h) through the
 *   pool's own recycle function when its last reference goes.
 */
#ifndef CONC_FUTURE_H
#define CONC_FUTURE_H

#include "base.h"
#include "lock.h"
#include <string.h> /* forkpool.h, which includes this header, relies on it too */

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_FUTURE_SPIN
#define CONC_FUTURE_SPIN 256
#endif

typedef int (*conc_task_fn)(void *arg, void **result);
typedef struct conc_future conc_future_t;
typedef void (*conc_future_cb)(conc_future_t *f, void *arg);

typedef enum conc_future_state_t {
    CONC_FUTURE_PENDING = 0,
    CONC_FUTURE_RUNNING = 1,
    CONC_FUTURE_DONE = 3,
    CONC_FUTURE_FAILED = 4,
    CONC_FUTURE_CANCELLED = 5
} conc_future_state_t;

/* The state word: the state field (bits 0-2), three flags, the reference count above them. */
#define CONC__FUTURE_PENDING 0u      /* not started, cancellable */
#define CONC__FUTURE_RUNNING 1u      /* a worker runs the task */
#define CONC__FUTURE_COMPLETING 2u   /* one completer won and is writing the outcome */
#define CONC__FUTURE_DONE 3u         /* final: status 0, result valid */
#define CONC__FUTURE_FAILED 4u       /* final: non-zero status */
#define CONC__FUTURE_CANCELLED 5u    /* final: cancelled while pending */
#define CONC__FUTURE_STATE_MASK 0x7u /* the state field */
#define CONC__FUTURE_WAITERS 0x8u /* someone sleeps (or is about to) on the word: wake on final */
#define CONC__FUTURE_CALLBACKS 0x10u /* the callback list has (had) nodes: lock on final */
#define CONC__FUTURE_TASK 0x20u  /* final by the executor's task: outcome in task_status/_result */
#define CONC__FUTURE_REF_SHIFT 6 /* the reference count: the word's top 26 bits */
#define CONC__FUTURE_REF_ONE (1u << CONC__FUTURE_REF_SHIFT)
#define CONC__FUTURE_REF_MASK (~(CONC__FUTURE_REF_ONE - 1u))

CONC_STATIC_ASSERT(CONC__FUTURE_CANCELLED <= CONC__FUTURE_STATE_MASK, "every state fits its field");
CONC_STATIC_ASSERT(((CONC__FUTURE_STATE_MASK | CONC__FUTURE_WAITERS | CONC__FUTURE_CALLBACKS |
                     CONC__FUTURE_TASK) &
                    CONC__FUTURE_REF_MASK) == 0 &&
                       (CONC__FUTURE_STATE_MASK &
                        (CONC__FUTURE_WAITERS | CONC__FUTURE_CALLBACKS | CONC__FUTURE_TASK)) == 0 &&
                       CONC__FUTURE_TASK < CONC__FUTURE_REF_ONE,
                   "the state field, the flags and the reference count are disjoint");
CONC_STATIC_ASSERT(CONC_FUTURE_PENDING == CONC__FUTURE_PENDING &&
                       CONC_FUTURE_RUNNING == CONC__FUTURE_RUNNING &&
                       CONC_FUTURE_DONE == CONC__FUTURE_DONE &&
                       CONC_FUTURE_FAILED == CONC__FUTURE_FAILED &&
                       CONC_FUTURE_CANCELLED == CONC__FUTURE_CANCELLED,
                   "conc_future_state_t mirrors the state field (conc_future_state casts it)");

/* A callback node. waker nodes belong to the caller (wait_any, as-completed), run under the
 * future's lock and may be unlinked; user nodes are malloc'd by on_done, run outside it. */
typedef struct conc__future_node {
    struct conc__future_node *next, *prev;
    conc_future_cb fn;
    void *arg;
    bool waker;
    bool linked; /* in the list; under the future's lock */
} conc__future_node;

/* For other conc headers (executor.h): where a future goes when its last reference goes, if
 * its `pool` is set: the pool's own recycle function (executor.h embeds this first in its
 * pool). A `pool` with CONC__FUTURE_POOL_MALLOCED set only names the owner: plain free. */
typedef struct conc__future_pool {
    void (*recycle)(conc_future_t *f);
} conc__future_pool;
#define CONC__FUTURE_POOL_MALLOCED ((uintptr_t)1)

/* 64 bytes on LP64: a pooled future is exactly one cache line (see conc__future_pool). */
struct conc_future {
    uint32_t state;   /* futex word: state, flags and reference count, see DESIGN */
    int task_status;  /* the task's outcome (CONC__FUTURE_TASK); plain, published by [future.R1] */
    conc_lock_t lock; /* guards the callback list */
    int status;       /* outcome of complete/cancel; plain, published by [future.R1] */
    void *result;
    conc__future_node *head, *tail; /* under lock */
    conc_task_fn fn;                /* the task, for executor futures */
    union {
        void *arg;                /* the task's argument, until it runs */
        void *task_result;        /* then the task's result (CONC__FUTURE_TASK) */
        conc_future_t *next_free; /* released, in its pool's free lists */
    };
    conc__future_pool *pool; /* the executor pool it was carved from (for life); NULL: malloc'd */
};

#if UINTPTR_MAX == UINT64_MAX
CONC_STATIC_ASSERT(sizeof(conc_future_t) == CONC_CACHELINE, "a future is one cache line (LP64)");
#endif

CONC_INLINE bool conc__future_final(uint32_t v) {
    return (v & CONC__FUTURE_STATE_MASK) >= CONC__FUTURE_DONE;
}

/* -------------------------------------------------------------------------------------------
 * Futures: creation and references
 * ------------------------------------------------------------------------------------------- */
/* Resets a future from the pool (f->pool set) or from malloc (f->pool NULL). */
CONC_INLINE void conc__future_init(conc_future_t *f, uint32_t refs, conc_task_fn fn, void *arg) {
    f->state = CONC__FUTURE_PENDING | refs * CONC__FUTURE_REF_ONE;
    f->task_status = 0;
    conc_lock_init(&f->lock, 0);
    f->status = 0;
    f->result = NULL;
    f->head = f->tail = NULL;
    f->fn = fn;
    f->arg = arg;
}

CONC_INLINE conc_future_t *conc__future_malloc(void) {
    conc_future_t *f = (conc_future_t *)conc_malloc_keep_errno(sizeof *f);
    if (f)
        f->pool = NULL;
    return f;
}

CONC_NODISCARD static inline int conc_future_create(conc_future_t **out) {
    if (!out)
        return EINVAL;
    conc_future_t *f = conc__future_malloc();
    if (f)
        conc__future_init(f, 1, NULL, NULL);
    *out = f;
    return f ? 0 : ENOMEM;
}

/* Relaxed: taking a new reference needs an existing one, which already orders the object.
 * (It changes the word a waiter may be about to sleep on: that futex_wait returns EAGAIN,
 * and the waiter re-reads and sleeps again.) */
static inline void conc_future_retain(conc_future_t *f) {
    if (CONC_UNLIKELY(!f))
        CONC_ABORT("conc_future_retain: NULL future");
    uint32_t old = conc_fetch_add(&f->state, CONC__FUTURE_REF_ONE, CONC_RELAXED);
    if (CONC_UNLIKELY((old & CONC__FUTURE_REF_MASK) == CONC__FUTURE_REF_MASK))
        CONC_ABORT("conc_future_retain: more than 2^26 - 1 references");
}

/* A future made by conc__future_create_ext (declared at the end, for other conc headers). */
#define CONC__FUTURE_EXT ((conc__future_pool *)(uintptr_t)1)
CONC_COLD void conc__future_ext_free_slow(conc_future_t *f);

CONC_NOINLINE void conc__future_free(conc_future_t *f) {
    /* Callbacks of a future that never completed never run; only user nodes can be left
     * (waker owners hold a reference until they unlink). */
    for (conc__future_node *n = f->head, *next; n; n = next) {
        next = n->next;
        if (n->waker)
            CONC_ABORT("conc_future_release: freed while a waiter was registered on it");
        free(n);
    }
    conc__future_pool *p = f->pool;
    if (CONC_UNLIKELY(p == CONC__FUTURE_EXT)) {
        conc__future_ext_free_slow(f); /* see "For other conc headers" */
        return;
    }
    if (!p || ((uintptr_t)p & CONC__FUTURE_POOL_MALLOCED))
        free(f);
    else
        p->recycle(f); /* executor.h's pool */
}

/* [future.R2]/[future.A2] acq_rel: every thread's last use of the future happens before the
 * free. */
static inline void conc_future_release(conc_future_t *f) {
    if (!f)
        return; /* as free(NULL): a failed submit leaves NULL behind */
    uint32_t old = conc_fetch_sub(&f->state, CONC__FUTURE_REF_ONE, CONC_ACQ_REL);
    if (CONC_UNLIKELY((old & CONC__FUTURE_REF_MASK) == CONC__FUTURE_REF_ONE))
        conc__future_free(f);
#if defined(CONC_DEBUG) && CONC_DEBUG
    else if (CONC_UNLIKELY((old & CONC__FUTURE_REF_MASK) == 0))
        CONC_ABORT("conc_future_release: reference count underflow");
#endif
}

/* -------------------------------------------------------------------------------------------
 * Completion
 *
 * The waiter protocol on the state word:
 *
 *   completer                                   waiter
 *   ----------------------------------------    -------------------------------------------
 *   CAS state: PENDING -> COMPLETING            v = load state            (not final)
 *   status, result = ...   (plain)              CAS state: v -> v | WAITERS
 *   old = fetch_add(state, DONE - COMPLETING)   [future.R1]
 *   old has WAITERS: futex_wake(state, all)     futex_wait(state, v | WAITERS)
 *                                                 -> EAGAIN: [future.R1] changed the word
 *
 *   [future.R1] and the CAS act on one word, so they are ordered: if the CAS came first,
 *   [future.R1] returns WAITERS and the completer wakes; if [future.R1] came first, the CAS
 *   fails (the word changed), the waiter re-reads and sees the final state. Between the CAS
 *   and its futex_wait the kernel re-check catches [future.R1]. A completion whose
 *   [future.R1] returns no flags makes no syscall and takes no lock. [future.R1] is an add,
 *   not a store: it keeps the reference count (the word's top bits) and returns the flags set
 *   while the outcome was written (they stay set in the final word, where nobody looks at
 *   them any more).
 *
 *   The executor's task takes a shorter path (conc__future_task_done): the worker alone
 *   writes task_status/task_result, so it needs no COMPLETING claim to exclude a concurrent
 *   writer; one CAS from RUNNING to the final state | TASK publishes them [future.R1] and,
 *   when the word has no flags (nothing to do after it), also drops the worker's reference: a task
 *   nobody waits for costs the worker two atomics on the word, the gate and this CAS. The
 *   CAS fails only on a word that changed: a flag or a reference came or went (retry), or
 *   complete won the future meanwhile (state COMPLETING or final: the task's outcome is
 *   dropped, as complete documents).
 * ------------------------------------------------------------------------------------------- */

CONC_COLD void conc__future_finish_slow(conc_future_t *f, uint32_t old) {
    if (old & CONC__FUTURE_WAITERS) {
        CONC_CHAOS_POINT();
        conc_futex_wake(&f->state, INT_MAX, 0);
    }
    if (!(old & CONC__FUTURE_CALLBACKS))
        return;
    /* Detach the list under the lock. Waker nodes run here, under the lock, so whoever
     * unlinks them later (under the lock) knows no completer still touches them. */
    conc__future_node *user_head = NULL, *user_tail = NULL;
    conc_lock_acquire(&f->lock);
    for (conc__future_node *n = f->head, *next; n; n = next) {
        next = n->next;
        n->linked = false;
        if (n->waker) {
            n->fn(f, n->arg);
        } else {
            n->next = NULL;
            if (user_tail)
                user_tail->next = n;
            else
                user_head = n;
            user_tail = n;
        }
    }
    f->head = f->tail = NULL;
    conc_lock_release(&f->lock);
    /* User callbacks: outside the lock (they may call anything on f), in FIFO order. */
    for (conc__future_node *n = user_head, *next; n; n = next) {
        next = n->next;
        n->fn(f, n->arg);
        free(n);
    }
}

/* Claims the future if its state is in `from` (a bit set of states), writes the outcome and
 * publishes it. Returns 0 or EBUSY (someone else claimed it first). */
CONC_INLINE int conc__future_settle(conc_future_t *f, unsigned from, int status, void *result,
                                    uint32_t final_state) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    do {
        if (!(from & (1u << (v & CONC__FUTURE_STATE_MASK))))
            return EBUSY;
        /* Relaxed: the claim publishes nothing; [future.R1] does. */
    } while (!conc_cas_weak(&f->state, &v, (v & ~CONC__FUTURE_STATE_MASK) | CONC__FUTURE_COMPLETING,
                            CONC_RELAXED, CONC_RELAXED));
    CONC_CHAOS_POINT();
    f->status = status;
    f->result = result;
    /* [future.R1] release: publishes status/result; pairs with [future.A1] in wait, on_done,
     * is_done.
     * The state field is COMPLETING (ours alone): the add moves it to final_state and
     * returns the flags set while we wrote. */
    uint32_t old = conc_fetch_add(&f->state, final_state - CONC__FUTURE_COMPLETING, CONC_RELEASE);
    if (CONC_UNLIKELY(old & (CONC__FUTURE_WAITERS | CONC__FUTURE_CALLBACKS)))
        conc__future_finish_slow(f, old);
    return 0;
}

/* The worker's task returned: publish its outcome and drop the worker's reference (see the
 * timeline above). v is the word as the gate left it (a guess is fine: the CAS corrects it). */
CONC_INLINE void conc__future_task_done(conc_future_t *f, uint32_t v, int status, void *result) {
    f->task_status = status;
    f->task_result = result; /* kept for a failure too (RESULTS); f->arg is dead: it has run */
    uint32_t final_state =
        (status == 0 ? CONC__FUTURE_DONE : CONC__FUTURE_FAILED) | CONC__FUTURE_TASK;
    for (;;) {
        if (CONC_UNLIKELY((v & CONC__FUTURE_STATE_MASK) != CONC__FUTURE_RUNNING))
            break; /* complete() won while the task ran */
        uint32_t slow = v & (CONC__FUTURE_WAITERS | CONC__FUTURE_CALLBACKS);
        uint32_t next = (v & ~CONC__FUTURE_STATE_MASK) | final_state;
        if (!slow)
            next -= CONC__FUTURE_REF_ONE;
        CONC_CHAOS_POINT();
        /* [future.R1] release: publishes task_status/task_result; pairs with [future.A1].
         * Acquire too when it drops our reference: if that was the last one we free the
         * future, after every other holder's last use ([future.A2]). */
        if (conc_cas_weak(&f->state, &v, next, CONC_ACQ_REL, CONC_RELAXED)) {
            if (slow) {
                conc__future_finish_slow(f, v);
                break; /* and release below: the slow path needed the future alive */
            }
            if ((v & CONC__FUTURE_REF_MASK) == CONC__FUTURE_REF_ONE)
                conc__future_free(f);
            return;
        }
    }
    conc_future_release(f);
}

#define CONC__FUTURE_FROM(s) (1u << (s))

CONC_NODISCARD static inline int conc_future_complete(conc_future_t *f, int status, void *result) {
    if (!f)
        return EINVAL;
    return conc__future_settle(
        f, CONC__FUTURE_FROM(CONC__FUTURE_PENDING) | CONC__FUTURE_FROM(CONC__FUTURE_RUNNING),
        status, result, status == 0 ? CONC__FUTURE_DONE : CONC__FUTURE_FAILED);
}

static inline int conc_future_cancel(conc_future_t *f) {
    if (!f)
        return EINVAL;
    return conc__future_settle(f, CONC__FUTURE_FROM(CONC__FUTURE_PENDING), ECANCELED, NULL,
                               CONC__FUTURE_CANCELLED);
}

/* -------------------------------------------------------------------------------------------
 * Queries and waiting
 * ------------------------------------------------------------------------------------------- */

/* [future.A1] acquire: pairs with [future.R1]; a true answer makes the outcome visible. */
static inline bool conc_future_is_done(const conc_future_t *f) {
    if (CONC_UNLIKELY(!f))
        CONC_ABORT("conc_future_is_done: NULL future");
    return conc__future_final(conc_load(&f->state, CONC_ACQUIRE));
}

static inline conc_future_state_t conc_future_state(const conc_future_t *f) {
    if (CONC_UNLIKELY(!f))
        CONC_ABORT("conc_future_state: NULL future");
    uint32_t s = conc_load(&f->state, CONC_ACQUIRE) & CONC__FUTURE_STATE_MASK; /* [future.A1] */
    if (s == CONC__FUTURE_COMPLETING)
        s = CONC__FUTURE_RUNNING; /* a completion in progress: not yet observable as done */
    return (conc_future_state_t)s;
}

/* NULL unless the future is done or failed (a failed task keeps its result: its error detail).
 * [future.A1] acquire: pairs with [future.R1]. */
static inline void *conc_future_result(const conc_future_t *f) {
    if (CONC_UNLIKELY(!f))
        CONC_ABORT("conc_future_result: NULL future");
    uint32_t v = conc_load(&f->state, CONC_ACQUIRE);
    uint32_t s = v & CONC__FUTURE_STATE_MASK;
    if (s != CONC__FUTURE_DONE && s != CONC__FUTURE_FAILED)
        return NULL;
    return (v & CONC__FUTURE_TASK) ? f->task_result : f->result;
}

/* The outcome of a future whose final state v was read with acquire. */
CONC_INLINE int conc__future_outcome(const conc_future_t *f, uint32_t v) {
    switch (v & CONC__FUTURE_STATE_MASK) {
    case CONC__FUTURE_DONE:
        return 0;
    case CONC__FUTURE_CANCELLED:
        return ECANCELED;
    default:
        return (v & CONC__FUTURE_TASK) ? f->task_status : f->status;
    }
}

CONC_COLD int conc__future_wait_slow(conc_future_t *f, int64_t deadline) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    /* A completion usually follows soon (a worker on another CPU): spin before the syscall.
     * Not for an ext future (forkpool.h): its completion is a process round trip away, and
     * the spin would only take a CPU from the processes that complete it. */
    if (CONC_FUTURE_SPIN > 0 && conc_cpu_count() > 1 && f->pool != CONC__FUTURE_EXT &&
        (deadline == CONC_FOREVER || deadline > conc_now())) {
        for (int i = 0; i < CONC_FUTURE_SPIN && !conc__future_final(v); i++) {
            conc_cpu_relax();
            v = conc_load(&f->state, CONC_RELAXED);
        }
    }
    for (;;) {
        if (conc__future_final(v)) {
            v = conc_load(&f->state, CONC_ACQUIRE); /* [future.A1] pairs with [future.R1] */
            return conc__future_outcome(f, v);
        }
        if (conc_deadline_passed(deadline))
            return ETIMEDOUT;
        if (!(v & CONC__FUTURE_WAITERS)) {
            /* Relaxed: the kernel's re-check of the word orders the sleep (timeline above). */
            if (!conc_cas(&f->state, &v, v | CONC__FUTURE_WAITERS, CONC_RELAXED, CONC_RELAXED))
                continue;
            v |= CONC__FUTURE_WAITERS;
        }
        CONC_CHAOS_POINT();
        (void)conc_futex_wait(&f->state, v, 0, deadline);
        v = conc_load(&f->state, CONC_RELAXED);
    }
}

CONC_NODISCARD static inline int conc_future_wait_until(conc_future_t *f, int64_t deadline) {
    if (!f)
        return EINVAL;
    uint32_t v = conc_load(&f->state, CONC_ACQUIRE); /* [future.A1] pairs with [future.R1] */
    if (CONC_LIKELY(conc__future_final(v)))
        return conc__future_outcome(f, v);
    return conc__future_wait_slow(f, deadline);
}

static inline int conc_future_wait(conc_future_t *f) {
    return conc_future_wait_until(f, CONC_FOREVER);
}

/* -------------------------------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------------------------------- */

/* Links n unless the future is final; returns false (n not linked) if it is. The CAS that
 * sets CALLBACKS while the state is not final is ordered with the completer's [future.R1]:
 * either [future.R1] returns CALLBACKS (the completer will take the lock, after ours, and find
 * n) or the CAS fails on a final state. */
CONC_NOINLINE bool conc__future_link(conc_future_t *f, conc__future_node *n) {
    n->linked = false; /* still private: unlink of a node that never got in is a no-op */
    conc_lock_acquire(&f->lock);
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    for (;;) {
        if (conc__future_final(v)) {
            conc_lock_release(&f->lock);
            return false;
        }
        if (v & CONC__FUTURE_CALLBACKS)
            break;
        if (conc_cas(&f->state, &v, v | CONC__FUTURE_CALLBACKS, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    CONC__BASE_DLIST_APPEND(f, n);
    n->linked = true;
    conc_lock_release(&f->lock);
    return true;
}

/* Unlinks a waker node if the completer has not run it yet. After this returns, no
 * completer touches n (waker nodes run under the lock). */
CONC_NOINLINE void conc__future_unlink(conc_future_t *f, conc__future_node *n) {
    conc_lock_acquire(&f->lock);
    if (n->linked) {
        CONC__BASE_DLIST_UNLINK(f, n);
        n->linked = false;
    }
    conc_lock_release(&f->lock);
}

CONC_NODISCARD static inline int conc_future_on_done(conc_future_t *f, conc_future_cb fn,
                                                     void *arg) {
    if (!f || !fn) /* the completer would call fn, in whatever thread completes f */
        return EINVAL;
    if (!conc_future_is_done(f)) { /* [future.A1] on the way out if done */
        conc__future_node *n = (conc__future_node *)conc_malloc_keep_errno(sizeof *n);
        if (!n)
            return ENOMEM;
        n->fn = fn;
        n->arg = arg;
        n->waker = false;
        if (conc__future_link(f, n))
            return 0;
        free(n);
        (void)conc_load(&f->state, CONC_ACQUIRE); /* [future.A1]: the outcome is visible to fn */
    }
    fn(f, arg);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * wait_any / wait_all
 * ------------------------------------------------------------------------------------------- */
/* Waker nodes wait_any keeps on its stack (one per future): the common small waits malloc
 * nothing, and 8 nodes (256 bytes) keep the frame small. */
#define CONC__FUTURE_ANY_STACK_NODES 8

/* wait_any sleeps on base.h's eventcount (its proof: tests/models/queue.pml). The pairing it
 * relies on is the futures' locks, not a Dekker pair:
 *
 *   completer of fs[i]                         wait_any
 *   ---------------------------------------    --------------------------------------------
 *                                              v = enter(word)              [eventcount.W1]
 *                                              link a node to each future (under its lock;
 *                                                a future final already: no sleep)
 *   final RMW of fs[i]              [future.R1]
 *   under fs[i]'s lock, finds our node:
 *     notify(word, 1): F1 load, N1 CAS, wake   scan: any future done? ([future.A1]) -> done
 *                                              else wait(word, &v): pending? take it; or
 *                                                futex_wait(word, v) -> EAGAIN after N1
 *
 * The completer finds our node in a lock section after our link, so its F1 load happens after
 * W1 and sees us registered: it wakes us (or a wake is pending already, which our wait takes
 * before it sleeps). Our wait reads the word with acquire after N1 ([eventcount.N1] release,
 * after [future.R1] in the completer's order), so the re-scan sees that future done. */
typedef struct conc__future_any_waiter {
    uint32_t word; /* conc_eventcount word: one notify per future that completes */
} conc__future_any_waiter;

/* Runs under the completing future's lock, after its final [future.R1]. */
static inline void conc__future_any_wake(conc_future_t *f, void *arg) {
    CONC_UNUSED(f);
    conc__future_any_waiter *w = (conc__future_any_waiter *)arg;
    conc_eventcount_notify(&w->word, 1, 0);
}

CONC_INLINE bool conc__future_any_scan(conc_future_t *const *fs, size_t n, size_t *index) {
    for (size_t i = 0; i < n; i++)
        if (conc_future_is_done(fs[i])) { /* [future.A1] */
            if (index)
                *index = i;
            return true;
        }
    return false;
}

/* Whether any of fs[0..n) is NULL (not a future: a failed submit leaves NULL behind). */
CONC_INLINE bool conc__future_any_null(conc_future_t *const *fs, size_t n) {
    if (!fs && n > 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return true;
    return false;
}

CONC_NODISCARD static inline int conc_future_wait_any(conc_future_t *const *fs, size_t n,
                                                      int64_t deadline, size_t *index) {
    if (n == 0 || conc__future_any_null(fs, n))
        return EINVAL;
    if (conc__future_any_scan(fs, n, index))
        return 0;
    if (conc_deadline_passed(deadline))
        return ETIMEDOUT;
    conc__future_node stack_nodes[CONC__FUTURE_ANY_STACK_NODES];
    conc__future_node *nodes = (conc__future_node *)conc__base_scratch(
        stack_nodes, CONC__FUTURE_ANY_STACK_NODES, n, sizeof *nodes); /* keeps errno */
    if (!nodes)
        return ENOMEM;
    conc__future_any_waiter w = {0};
    size_t linked = 0;
    int r = ETIMEDOUT;
    /* [eventcount.W1] before the first link: a completer that finds a node sees us. */
    uint32_t v = conc_eventcount_enter(&w.word);
    for (; linked < n; linked++) {
        nodes[linked].fn = conc__future_any_wake;
        nodes[linked].arg = &w;
        nodes[linked].waker = true;
        if (!conc__future_link(fs[linked], &nodes[linked]))
            break; /* already final: no need to sleep */
    }
    if (linked == n) {
        /* Every future is registered: the first to complete notifies (timeline above). */
        while (!conc__future_any_scan(fs, n, NULL)) /* [future.A1] */
            if (conc_eventcount_wait(&w.word, &v, 0, deadline) == ETIMEDOUT)
                break;
    }
    /* Unlinking under each future's lock waits out a completer still notifying w. */
    for (size_t i = 0; i < linked; i++)
        conc__future_unlink(fs[i], &nodes[i]);
    conc_eventcount_leave(&w.word, v);
    if (conc__future_any_scan(fs, n, index))
        r = 0;
    conc__base_scratch_free(nodes, stack_nodes);
    return r;
}

CONC_NODISCARD static inline int conc_future_wait_all(conc_future_t *const *fs, size_t n,
                                                      int64_t deadline) {
    if (conc__future_any_null(fs, n))
        return EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (conc_future_is_done(fs[i]))
            continue;
        int outcome = conc_future_wait_until(fs[i], deadline);
        CONC_UNUSED(outcome); /* the caller reads each outcome itself */
        if (!conc_future_is_done(fs[i]))
            return ETIMEDOUT;
    }
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * As-completed: futures in the order they complete
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_as_completed conc_as_completed_t;

typedef struct conc__future_as_completed_entry {
    conc__future_node node; /* waker node on the future */
    conc_future_t *f;
    conc_as_completed_t *set;
    struct conc__future_as_completed_entry
        *done_next; /* the FIFO of completed entries, under set->lock */
    struct conc__future_as_completed_entry
        *all_next; /* every entry, for destroy; under set->lock */
} conc__future_as_completed_entry;

/* next() sleeps on base.h's eventcount (its proof: tests/models/queue.pml), with the set's
 * lock as the pairing (no Dekker pair needed):
 *
 *   completer (conc__future_as_completed_wake)   next()
 *   -----------------------------------------    ------------------------------------------
 *                                                lock; done list empty;
 *                                                v = enter(ec)  [eventcount.W1]; unlock
 *   lock; append the entry; unlock
 *   notify(ec, 1): F1 load, N1 CAS, wake         wait(ec, &v): pending? take it; or
 *                                                  futex_wait(ec, v) -> EAGAIN after N1
 *                                                lock; re-check the done list
 *
 * Both lock sections are RMWs on one lock word: either the append comes first (our re-check
 * under the lock sees it) or our registration does (the completer's lock acquire is after our
 * unlock, so its F1 load sees W1 and wakes us, or a wake is pending that our wait takes). */
struct conc_as_completed {
    conc_lock_t lock;
    uint32_t ec;      /* conc_eventcount word for next(); one notify per appended entry */
    size_t remaining; /* added but not yet returned; under lock */
    conc__future_as_completed_entry *done_head, *done_tail, *all;
    /* Every future ever added, an open-addressing set (linear probing, at most half full), so
     * that a future given twice is one member and comes out once, as Python's as_completed
     * returns a duplicate once. Under lock. */
    conc_future_t **members;
    size_t members_cap, members_n;
};

/* Where f is in the member table, or the empty slot where it would go (cap a power of two). */
CONC_INLINE size_t conc__future_as_completed_slot(conc_future_t *const *members, size_t cap,
                                                  const conc_future_t *f) {
    uint64_t h = (uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ull; /* Fibonacci hashing */
    size_t i = (size_t)(h ^ (h >> 29)) & (cap - 1);
    while (members[i] != NULL && members[i] != f)
        i = (i + 1) & (cap - 1);
    return i;
}

/* Makes f a member: 0, EEXIST (it is one already), ENOMEM (the table could not grow). Under
 * the set's lock. */
CONC_NOINLINE int conc__future_as_completed_insert(conc_as_completed_t *ac, conc_future_t *f) {
    if (ac->members_cap != 0 &&
        ac->members[conc__future_as_completed_slot(ac->members, ac->members_cap, f)] == f)
        return EEXIST;
    if ((ac->members_n + 1) * 2 > ac->members_cap) { /* grow: at most half full */
        size_t cap = ac->members_cap ? ac->members_cap * 2 : 16;
        if (cap < ac->members_cap)
            return ENOMEM;
        conc_future_t **m = (conc_future_t **)conc_calloc_keep_errno(cap, sizeof *m);
        if (!m)
            return ENOMEM;
        for (size_t i = 0; i < ac->members_cap; i++)
            if (ac->members[i])
                m[conc__future_as_completed_slot(m, cap, ac->members[i])] = ac->members[i];
        free(ac->members);
        ac->members = m;
        ac->members_cap = cap;
    }
    ac->members[conc__future_as_completed_slot(ac->members, ac->members_cap, f)] = f;
    ac->members_n++;
    return 0;
}

/* Runs under the completing future's lock, so destroy (which unlinks under that lock) knows
 * when it has finished with the set. */
static inline void conc__future_as_completed_wake(conc_future_t *f, void *arg) {
    CONC_UNUSED(f);
    conc__future_as_completed_entry *e = (conc__future_as_completed_entry *)arg;
    conc_as_completed_t *ac = e->set;
    conc_lock_acquire(&ac->lock);
    CONC__BASE_SLIST_APPEND(ac->done_head, ac->done_tail, e, done_next);
    conc_lock_release(&ac->lock);
    conc_eventcount_notify(&ac->ec, 1, 0); /* after the unlock: see the timeline above */
}

/* Adds f unless it is a member already (then 0, and nothing changes: it comes out once). */
CONC_NODISCARD static inline int conc_as_completed_add(conc_as_completed_t *ac, conc_future_t *f) {
    if (!ac || !f)
        return EINVAL;
    conc__future_as_completed_entry *e =
        (conc__future_as_completed_entry *)conc_malloc_keep_errno(sizeof *e);
    if (!e)
        return ENOMEM;
    e->f = f;
    e->set = ac;
    e->node.fn = conc__future_as_completed_wake;
    e->node.arg = e;
    e->node.waker = true;
    conc_lock_acquire(&ac->lock);
    int r = conc__future_as_completed_insert(ac, f);
    if (r != 0) {
        conc_lock_release(&ac->lock);
        free(e);
        return r == EEXIST ? 0 : r;
    }
    conc_future_retain(f);
    e->all_next = ac->all;
    ac->all = e;
    ac->remaining++;
    conc_lock_release(&ac->lock);
    if (!conc__future_link(f, &e->node))
        conc__future_as_completed_wake(f, e); /* already final: completed "now" */
    return 0;
}

static inline void conc_as_completed_destroy(conc_as_completed_t *ac) {
    if (!ac)
        return;
    /* Unlinking under each future's lock is also the barrier that waits out a completer
     * running conc__future_as_completed_wake on this set. */
    for (conc__future_as_completed_entry *e = ac->all, *next; e; e = next) {
        next = e->all_next;
        conc__future_unlink(e->f, &e->node);
        conc_future_release(e->f);
        free(e);
    }
    free(ac->members);
    free(ac);
}

CONC_NODISCARD static inline int conc_as_completed_create(conc_as_completed_t **out,
                                                          conc_future_t *const *fs, size_t n) {
    if (!out)
        return EINVAL;
    *out = NULL;
    if (conc__future_any_null(fs, n))
        return EINVAL; /* checked first: nothing is added */
    conc_as_completed_t *ac = (conc_as_completed_t *)conc_calloc_keep_errno(1, sizeof *ac);
    if (!ac)
        return ENOMEM;
    conc_lock_init(&ac->lock, 0);
    for (size_t i = 0; i < n; i++)
        if (conc_as_completed_add(ac, fs[i]) != 0) {
            conc_as_completed_destroy(ac);
            return ENOMEM;
        }
    *out = ac;
    return 0;
}

CONC_NODISCARD static inline int
conc_as_completed_next_until(conc_as_completed_t *ac, int64_t deadline, conc_future_t **out) {
    if (!ac || !out)
        return EINVAL;
    *out = NULL;
    conc_lock_acquire(&ac->lock);
    bool registered = false, last = false;
    uint32_t v = 0;
    int r;
    for (;;) {
        conc__future_as_completed_entry *e = ac->done_head;
        if (e) {
            ac->done_head = e->done_next;
            if (!ac->done_head)
                ac->done_tail = NULL;
            last = --ac->remaining == 0;
            /* [future.A1] the entry was appended after the future's final step [future.R1];
             * the set's lock carries that order to us. */
            *out = e->f;
            r = 0;
            break;
        }
        if (ac->remaining == 0) {
            r = EPIPE;
            break;
        }
        if (conc_deadline_passed(deadline)) {
            r = ETIMEDOUT;
            break;
        }
        /* Register under the lock (after this check of the list), sleep outside it. */
        if (!registered)
            v = conc_eventcount_enter(&ac->ec); /* [eventcount.W1] */
        registered = true;
        conc_lock_release(&ac->lock);
        (void)conc_eventcount_wait(&ac->ec, &v, 0, deadline); /* ETIMEDOUT: checked above */
        conc_lock_acquire(&ac->lock);
    }
    conc_lock_release(&ac->lock);
    if (registered)
        conc_eventcount_leave(&ac->ec, v);
    /* The last future is taken: every other thread asleep in next gets EPIPE now, not a
     * completion that will never come. After the unlock, as a completer's notify (the
     * timeline above): a sleeper's re-check under the lock sees remaining 0, or its
     * registration is seen here. */
    if (last)
        conc_eventcount_notify(&ac->ec, SIZE_MAX, 0);
    return r;
}

CONC_NODISCARD static inline int conc_as_completed_next(conc_as_completed_t *ac,
                                                        conc_future_t **out) {
    return conc_as_completed_next_until(ac, CONC_FOREVER, out);
}

CONC_NODISCARD static inline int conc_as_completed_try_next(conc_as_completed_t *ac,
                                                            conc_future_t **out) {
    int r = conc_as_completed_next_until(ac, 0, out);
    return r == ETIMEDOUT ? EAGAIN : r;
}

/* -------------------------------------------------------------------------------------------
 * For other conc headers (executor.h, forkpool.h, and any header that runs tasks as futures)
 *
 * Defined above, where they belong, and meant for other conc headers:
 *   conc__future_pool                see its comment
 *   conc__future_malloc()            an uninitialized future from malloc, owned by nobody
 *   conc__future_init(f, refs, fn, arg)   pending, `refs` references, task fn(arg)
 *   conc__future_free(f)             drop a future that never escaped (a failed submit)
 *   conc__future_task_done(f, v, status, result)   the task returned: publish its outcome
 *       [future.R1] and drop the runner's reference; v is the word the gate left
 *   conc__future_link(f, n), conc__future_unlink(f, n)   a caller-owned waker node (n->fn,
 *       n->arg, n->waker = true): linked unless f is final (false: it is, run nothing);
 *       fn(f, arg) runs under f's lock on the completing thread; after unlink no completer
 *       touches n (wait_any, as-completed and coro_bridge.h's await use them)
 * Defined here:
 *   conc__future_gate(f, &v)         PENDING -> RUNNING from a guess v of the word
 *   conc__future_fresh_word(refs)    that guess for a future fresh from conc__future_init
 *   conc__future_pool_of(f), conc__future_set_pool(f, p, malloced)   the owner pool
 *   conc__future_create_ext(&f, size, on_free, &ext)  a promise like conc_future_create, with
 *       `size` bytes after it that belong to the caller (*ext, max_align_t-aligned, not
 *       zeroed) and on_free(ext), run once when the last reference goes, before the memory
 *       is freed (the owner frees what the record points to). 0 or ENOMEM.
 *   conc__future_ext(f, on_free)   the record of a future made with this on_free, else NULL:
 *       a tag check (conc_forkpool_outcome says EINVAL for a future that is not its own).
 *   conc__future_start(f)          PENDING -> RUNNING (true), the executor's gate; false if
 *       it was cancelled or completed. conc_future_cancel then says EBUSY, as it does for a
 *       running executor task, and conc_future_complete still settles it.
 *   conc__future_cancel_started(f)   RUNNING -> CANCELLED, for a task its owner started
 *       (conc__future_start) and then cancelled itself: forkpool.h's task dropped at its
 *       worker or put back by its worker's death, and one whose worker conc_forkpool_cancel
 *       killed. As conc_future_cancel otherwise: 0, or EBUSY if it is done already.
 *   conc__future_call(f, &result)  runs the task: fn(arg, &result), its status
 *   conc__future_free_link(f)      the link of a released pooled future in its pool's free
 *       lists (the `arg` it had is gone then), until the pool hands it out again
 *   conc__future_link_offset()     the bytes before that link: what a pool may poison
 *   conc__future_retire(f)         a pooled future's last release: forget its lock (TSan)
 *       before the memory is reused (conc__future_init announces a new one)
 * An ext future is malloc'd, never pooled: its `pool` field holds CONC__FUTURE_EXT. A waiter
 * does not spin on it before sleeping (see conc__future_wait_slow). Other headers reach a
 * future's fields only through the functions of this section.
 * ------------------------------------------------------------------------------------------- */
typedef void (*conc__future_ext_fn)(void *ext);

typedef struct conc__future_ext_head {
    conc_future_t f;
    conc__future_ext_fn on_free;
} conc__future_ext_head;

#define CONC__FUTURE_EXT_OFFSET                                                                    \
    ((sizeof(conc__future_ext_head) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))

CONC_NODISCARD static inline int conc__future_create_ext(conc_future_t **out, size_t size,
                                                         conc__future_ext_fn on_free, void **ext) {
    *out = NULL;
    *ext = NULL;
    if (size > SIZE_MAX - CONC__FUTURE_EXT_OFFSET)
        return ENOMEM;
    conc__future_ext_head *h =
        (conc__future_ext_head *)conc_malloc_keep_errno(CONC__FUTURE_EXT_OFFSET + size);
    if (!h)
        return ENOMEM;
    h->f.pool = CONC__FUTURE_EXT;
    conc__future_init(&h->f, 1, NULL, NULL);
    h->on_free = on_free;
    *out = &h->f;
    *ext = (char *)h + CONC__FUTURE_EXT_OFFSET;
    return 0;
}

/* Out of line: inlined into code that made a plain 64-byte future, the trailer access on the
 * path the tag check rules out trips gcc's -Warray-bounds. */
CONC_NOINLINE void *conc__future_ext(const conc_future_t *f, conc__future_ext_fn on_free) {
    if (f->pool != CONC__FUTURE_EXT || ((const conc__future_ext_head *)f)->on_free != on_free)
        return NULL;
    return (char *)(uintptr_t)f + CONC__FUTURE_EXT_OFFSET;
}

/* The gate: PENDING -> RUNNING, starting from *v, a guess of the word (a load, or the word a
 * fresh task future has: conc__future_fresh_word). True: the caller won and runs the task,
 * *v is the word it left; false: cancelled or completed first, never to run. Relaxed: the
 * claim publishes nothing (the outcome's [future.R1] does); the task's inputs were ordered by
 * whatever handed the caller its reference (a queue, a claim word). */
CONC_INLINE bool conc__future_gate(conc_future_t *f, uint32_t *v) {
    while ((*v & CONC__FUTURE_STATE_MASK) == CONC__FUTURE_PENDING) {
        uint32_t next = (*v & ~CONC__FUTURE_STATE_MASK) | CONC__FUTURE_RUNNING;
        if (conc_cas_weak(&f->state, v, next, CONC_RELAXED, CONC_RELAXED)) {
            *v = next;
            return true;
        }
    }
    return false;
}

/* The word of a task future just made with conc__future_init(f, refs, ...). */
CONC_INLINE uint32_t conc__future_fresh_word(uint32_t refs) {
    return CONC__FUTURE_PENDING | refs * CONC__FUTURE_REF_ONE;
}

/* The pool a future names as its owner (conc__future_set_pool), tag bits cleared; NULL for a
 * plain or ext future. */
CONC_INLINE conc__future_pool *conc__future_pool_of(const conc_future_t *f) {
    if (f->pool == CONC__FUTURE_EXT)
        return NULL;
    return (conc__future_pool *)((uintptr_t)f->pool & ~CONC__FUTURE_POOL_MALLOCED);
}

/* Names p as f's owner. malloced: f came from malloc (the pool was at its cap or busy), so its
 * last release frees it instead of calling p->recycle. */
CONC_INLINE void conc__future_set_pool(conc_future_t *f, conc__future_pool *p, bool malloced) {
    f->pool = malloced ? (conc__future_pool *)((uintptr_t)p | CONC__FUTURE_POOL_MALLOCED) : p;
}

/* Runs f's task, once its gate was won: fn(arg, &result); returns the task's status. */
CONC_INLINE int conc__future_call(conc_future_t *f, void **result) {
    return f->fn(f->arg, result);
}

/* The free-list link of a released pooled future (it shares arg's bytes: the task has run). */
CONC_INLINE conc_future_t **conc__future_free_link(conc_future_t *f) {
    return &f->next_free;
}

/* The bytes of a future before its free link: a pool may poison them while it keeps the
 * future, so a use after the last release is still reported (ASan). */
CONC_INLINE size_t conc__future_link_offset(void) {
    return offsetof(conc_future_t, next_free);
}

/* A pooled future's last reference went: its memory will be reused without a free, so TSan
 * must forget its lock (conc__future_init, on reuse, announces it again). */
CONC_INLINE void conc__future_retire(conc_future_t *f) {
#if defined(CONC_TSAN)
    __tsan_mutex_destroy(&f->lock, 0);
#else
    CONC_UNUSED(f);
#endif
}

static inline bool conc__future_start(conc_future_t *f) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    return conc__future_gate(f, &v);
}

static inline int conc__future_cancel_started(conc_future_t *f) {
    return conc__future_settle(f, CONC__FUTURE_FROM(CONC__FUTURE_RUNNING), ECANCELED, NULL,
                               CONC__FUTURE_CANCELLED);
}

CONC_COLD void conc__future_ext_free_slow(conc_future_t *f) {
    conc__future_ext_head *h = (conc__future_ext_head *)f;
    h->on_free((char *)h + CONC__FUTURE_EXT_OFFSET);
    free(h);
}

#ifdef __cplusplus
}
#endif

/* Optional companions (see the top): not in README's "needs" lists, so named through macros;
 * looked for as "../conc/X.h", which only conc's own folder holds, so that an X.h of the
 * application's own on the include path is never taken for one. */
#if defined(__has_include)
#if __has_include("../conc/executor.h")
#define CONC__FUTURE_EXECUTOR_H "../conc/executor.h"
#include CONC__FUTURE_EXECUTOR_H
#endif
#if defined(CONC_CORO_H) && __has_include("../conc/coro_bridge.h")
#define CONC__FUTURE_BRIDGE_H "../conc/coro_bridge.h"
#include CONC__FUTURE_BRIDGE_H
#endif
#endif
#endif /* CONC_FUTURE_H */

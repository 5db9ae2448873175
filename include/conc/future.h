/* conc/future.h - futures, a thread-pool executor, as-completed and a lazy map - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's concurrent.futures in C, with a bounded submission queue (submit blocks or fails
 * with EAGAIN instead of growing without limit), a lazy map (at most k tasks in flight) and
 * continuations (on_done), which std::future lacks.
 *
 * QUICK START (examples/09_thread_pool_as_completed.c)
 *     static int work(void *arg, void **result) { *result = arg; return 0; }
 *     conc_executor_t *ex; conc_future_t *f;
 *     if (conc_executor_create(&ex, 4, 64) != 0) abort();
 *     if (conc_executor_submit(ex, work, "hi", &f) == 0) {
 *         if (conc_future_wait(f) == 0) puts((char *)conc_future_result(f));
 *         conc_future_release(f);               // the caller owns one reference
 *     }
 *     conc_executor_destroy(ex);                // finishes queued work, joins, frees
 *
 * API
 *   tasks     int fn(void *arg, void **result)   returns 0 or an error status (any non-zero int)
 *   future    conc_future_create(&f)               a promise: pending, one reference
 *             conc_future_complete(f, status, r)   0, EBUSY (already completing or done)
 *             conc_future_cancel(f)                0 if it was pending, EBUSY otherwise
 *   wait      conc_future_wait(f)                  outcome: 0, the task's status, ECANCELED
 *             conc_future_wait_until(f, dl)        ... or ETIMEDOUT
 *             conc_future_wait_any(fs, n, dl, &i)  0 (fs[i] is done), ETIMEDOUT, EINVAL, ENOMEM
 *             conc_future_wait_all(fs, n, dl)      0 (all done), ETIMEDOUT
 *   query     conc_future_is_done(f)               done, failed or cancelled
 *             conc_future_state(f)                 CONC_FUTURE_PENDING/RUNNING/DONE/FAILED/CANCELLED
 *             conc_future_result(f)                the result of a future done with status 0
 *   callback  conc_future_on_done(f, fn, arg)      0, ENOMEM; fn(f, arg) runs exactly once
 *   refs      conc_future_retain(f), conc_future_release(f)
 *   executor  conc_executor_create(&ex, threads, capacity)   0 threads: one per CPU
 *             conc_executor_submit(ex, fn, arg, &f)          blocks while full; 0, EPIPE
 *             conc_executor_try_submit(ex, fn, arg, &f)      0, EAGAIN, EPIPE
 *             conc_executor_submit_batch(ex, fn, args, n, fs, &done)   0, EPIPE, ENOMEM
 *             conc_executor_shutdown(ex, cancel_pending)     idempotent; joins
 *             conc_executor_destroy(ex)                      shutdown(false), then free
 *             conc_executor_threads(ex), conc_executor_queue_size(ex)
 *   as done   conc_as_completed_create(&ac, fs, n)           0, ENOMEM; n may be 0
 *             conc_as_completed_add(ac, f)                   0, ENOMEM
 *             conc_as_completed_next(ac, &f)                 0, EPIPE (every future returned)
 *             conc_as_completed_try_next(ac, &f)             0, EAGAIN, EPIPE
 *             conc_as_completed_next_until(ac, dl, &f)       0, ETIMEDOUT, EPIPE
 *             conc_as_completed_destroy(ac)
 *   lazy map  conc_map_create(&m, ex, fn, args, n, window)   0, EINVAL, ENOMEM, EPIPE
 *             conc_map_next(m, &i, &status, &result)         0, EPIPE (all n returned)
 *             conc_map_next_until(m, dl, &i, &status, &result)  0, ETIMEDOUT, EPIPE
 *             conc_map_destroy(m)                            cancels what is queued, waits
 *
 * ERRORS
 *   wait/wait_until return the OUTCOME: 0 (done), the task's non-zero status (failed),
 *   ECANCELED (cancelled), or ETIMEDOUT (wait_until only, never before the deadline). A task
 *   may itself return ECANCELED or ETIMEDOUT: conc_future_state tells them apart.
 *   complete: EBUSY if the future is already completing, done, failed or cancelled (the
 *   second completer loses; nothing is changed). cancel: EBUSY unless pending.
 *   submit: EPIPE once shutdown has begun (also for submitters blocked on a full queue at
 *   that moment); try_submit: EAGAIN when the queue is full. create: EINVAL (capacity or
 *   threads past 65535), ENOMEM, or pthread_create's error. On any error nothing is queued
 *   and *f is set to NULL.
 *   submit_batch args: args[i] is task i's argument; args == NULL passes the index i itself,
 *   as (void *)(uintptr_t)i (a parallel for). It blocks while the queue is full and returns 0
 *   once all n are queued, or EPIPE: then *submitted (may be NULL) says how many were queued,
 *   and fs[i] is NULL for the rest.
 *   conc_map_next: the results come in INPUT order (as Python's map); *status is task i's
 *   outcome, or EPIPE if input i could not be submitted because the executor shut down.
 *   conc_executor_destroy called from one of the executor's own tasks aborts with
 *   "conc_executor_destroy: called from one of its own tasks".
 *
 * ORDERING CONTRACT
 *   - Everything the submitter wrote before submit is visible to the task.
 *   - Everything the task (or the thread calling complete) wrote before completing is visible
 *     to every thread whose wait returns that outcome, to every on_done callback, and to the
 *     thread that gets the future from as_completed_next or wait_any.
 *   - A future is completed exactly once: of complete, cancel and the executor running the
 *     task, exactly one wins. A task runs or is cancelled, never both, never neither (after
 *     shutdown(true), what was queued is cancelled; otherwise it runs).
 *
 * THREAD SAFETY
 *   Every call may overlap every other on the same future or executor. REFERENCES: every call
 *   on a future needs a reference owned by the calling thread for the whole call, including
 *   conc_future_complete: if you pass a promise to another thread to complete, retain it for
 *   that thread. The executor holds its own reference while the task runs. The futures an
 *   as-completed set returns stay valid until the set is destroyed (it holds a reference).
 *   wait_any/wait_all need the caller to hold references to every future in the array.
 *   conc_executor_shutdown may be called from several threads at once, and from one of the
 *   executor's own tasks: there it refuses new work and cancels if asked, then returns without
 *   joining (a thread cannot join itself); a later shutdown or destroy from outside joins.
 *
 * CONFIGURATION
 *   CONC_FUTURE_SPIN     relaxed loads a waiter spins before sleeping (default 256)
 *   CONC_EXECUTOR_SPIN   pauses one idle worker polls the queue before it blocks (default 2048)
 *   Both skip spinning on a single CPU.
 *
 * CAVEATS
 *   - on_done callbacks run in the thread that completes the future (a worker, usually) or at
 *     once in the registering thread if it is already done: keep them short, and do not block
 *     in them on a full queue of the same executor (a worker waiting for itself deadlocks).
 *   - A task that waits for another task of the same executor can deadlock if every worker
 *     waits (Python's warning too). Size the executor for it or use on_done.
 *   - fork(): an executor's workers do not exist in the child. Use it only in the parent.
 *   - Spurious futex wakeups are absorbed; a signal does not interrupt a wait.
 *
 * DESIGN
 *   A future is one 32-bit state word (low 3 bits: PENDING, RUNNING, COMPLETING, DONE,
 *   FAILED, CANCELLED; bit 3 WAITERS: someone sleeps on the word; bit 4 CALLBACKS: the list
 *   has nodes), a reference count, the outcome, and a callback list under a 4-byte conc_lock.
 *   Completing is a CAS into COMPLETING (exactly one winner), plain writes of the outcome,
 *   then one swap to the final state [R1] that returns the flags: only if WAITERS was set is
 *   there a futex_wake, only if CALLBACKS was set is the lock taken. So a completion nobody
 *   waits for is two atomics and no syscall; a waiter spins briefly, then sets WAITERS and
 *   sleeps on the word. Callbacks are nodes in a doubly linked list. A node is added under
 *   the lock, after a CAS that sets CALLBACKS while the state is not final: since that CAS
 *   and the final swap act on one word, either the completer sees CALLBACKS (and takes the
 *   lock, so it finds the node) or the registrant sees the final state (and runs the callback
 *   itself). Internal "waker" nodes (wait_any, as-completed) run under the lock and can be
 *   unlinked again, which is how wait_any leaves no node behind: after unlinking under the
 *   lock, no completer can still be touching the caller's stack.
 *   The executor's submission queue is the kit's own conc_queue (queue.h) of future pointers:
 *   lock-free, bounded, blocking and closable, so submit blocks while full, try_submit gets
 *   EAGAIN, shutdown's close hands EPIPE to every submitter (blocked ones too) while the
 *   workers drain, and a busy stream makes no syscall. One idle worker at a time polls the
 *   queue for CONC_EXECUTOR_SPIN pauses before it blocks in conc_queue_pop, so a steady
 *   stream of tiny tasks finds a worker awake.
 *   as-completed: each future gets a waker node that appends its entry to the set's FIFO
 *   and wakes one sleeper: O(1) per completion. The lazy map keeps a ring of `window` futures
 *   and submits input i + window when result i is taken.
 */
#ifndef CONC_FUTURE_H
#define CONC_FUTURE_H

#include "base.h"
#include "lock.h"
#include "queue.h"
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_FUTURE_SPIN
#define CONC_FUTURE_SPIN 256
#endif
#ifndef CONC_EXECUTOR_SPIN
#define CONC_EXECUTOR_SPIN 2048
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

#define CONC__FUT_PENDING 0u      /* not started, cancellable */
#define CONC__FUT_RUNNING 1u      /* a worker runs the task */
#define CONC__FUT_COMPLETING 2u   /* one completer won and is writing the outcome */
#define CONC__FUT_DONE 3u         /* final: status 0, result valid */
#define CONC__FUT_FAILED 4u       /* final: non-zero status */
#define CONC__FUT_CANCELLED 5u    /* final: cancelled while pending */
#define CONC__FUT_STATE 0x7u      /* mask of the state field */
#define CONC__FUT_WAITERS 0x8u    /* someone sleeps (or is about to) on the word: wake on final */
#define CONC__FUT_CALLBACKS 0x10u /* the callback list has (had) nodes: take the lock on final */

/* A callback node. waker nodes belong to the caller (wait_any, as-completed), run under the
 * future's lock and may be unlinked; user nodes are malloc'd by on_done, run outside it. */
typedef struct conc__future_node {
    struct conc__future_node *next, *prev;
    conc_future_cb fn;
    void *arg;
    bool waker;
    bool linked; /* in the list; under the future's lock */
} conc__future_node;

struct conc_future {
    uint32_t state;   /* futex word, see DESIGN */
    uint32_t refs;    /* reference count */
    conc_lock_t lock; /* guards the callback list */
    int status;       /* outcome; plain, published by the final swap [R1] */
    void *result;
    conc__future_node *head, *tail; /* under lock */
    conc_task_fn fn;                /* the task, for executor futures */
    void *arg;
};

CONC_INLINE bool conc__fut_final(uint32_t v) {
    return (v & CONC__FUT_STATE) >= CONC__FUT_DONE;
}

/* -------------------------------------------------------------------------------------------
 * Futures: creation and references
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE conc_future_t *conc__future_new(uint32_t refs, conc_task_fn fn, void *arg) {
    conc_future_t *f = (conc_future_t *)malloc(sizeof *f);
    if (!f)
        return NULL;
    f->state = CONC__FUT_PENDING;
    f->refs = refs;
    conc_lock_init(&f->lock, 0);
    f->status = 0;
    f->result = NULL;
    f->head = f->tail = NULL;
    f->fn = fn;
    f->arg = arg;
    return f;
}

CONC_NODISCARD static inline int conc_future_create(conc_future_t **out) {
    *out = conc__future_new(1, NULL, NULL);
    return *out ? 0 : ENOMEM;
}

/* Relaxed: taking a new reference needs an existing one, which already orders the object. */
static inline void conc_future_retain(conc_future_t *f) {
    conc_fetch_add(&f->refs, 1u, CONC_RELAXED);
}

CONC_COLD void conc__future_free(conc_future_t *f) {
    /* Callbacks of a future that never completed never run; only user nodes can be left
     * (waker owners hold a reference until they unlink). */
    for (conc__future_node *n = f->head, *next; n; n = next) {
        next = n->next;
        if (n->waker)
            CONC_ABORT("conc_future_release: freed while a waiter was registered on it");
        free(n);
    }
    free(f);
}

/* [R2]/[A2] acq_rel: every thread's last use of the future happens before the free. */
static inline void conc_future_release(conc_future_t *f) {
    uint32_t old = conc_fetch_sub(&f->refs, 1u, CONC_ACQ_REL);
    if (CONC_UNLIKELY(old == 1))
        conc__future_free(f);
#if defined(CONC_DEBUG) && CONC_DEBUG
    else if (CONC_UNLIKELY(old == 0))
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
 *   old = swap(state, DONE)        [R1]
 *   old has WAITERS: futex_wake(state, all)     futex_wait(state, v | WAITERS)
 *                                                 -> EAGAIN: the swap changed the word
 *
 *   The swap and the CAS act on one word, so they are ordered: if the CAS came first, the
 *   swap returns WAITERS and the completer wakes; if the swap came first, the CAS fails (the
 *   word changed), the waiter re-reads and sees the final state. Between the CAS and its
 *   futex_wait the kernel re-check catches the swap. A completion whose swap returns no
 *   flags makes no syscall and takes no lock.
 * ------------------------------------------------------------------------------------------- */

CONC_COLD void conc__future_finish_slow(conc_future_t *f, uint32_t old) {
    if (old & CONC__FUT_WAITERS) {
        CONC_CHAOS_POINT();
        conc_futex_wake(&f->state, INT_MAX, 0);
    }
    if (!(old & CONC__FUT_CALLBACKS))
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
        if (!(from & (1u << (v & CONC__FUT_STATE))))
            return EBUSY;
        /* Relaxed: the claim publishes nothing; the final swap [R1] does. */
    } while (!conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_COMPLETING,
                            CONC_RELAXED, CONC_RELAXED));
    CONC_CHAOS_POINT();
    f->status = status;
    f->result = result;
    /* [R1] release: publishes status/result; pairs with [A1] in wait, on_done, is_done.
     * A swap, not a store: it returns the flags that were set while we wrote. */
    uint32_t old = conc_swap(&f->state, final_state, CONC_RELEASE);
    if (CONC_UNLIKELY(old & (CONC__FUT_WAITERS | CONC__FUT_CALLBACKS)))
        conc__future_finish_slow(f, old);
    return 0;
}

#define CONC__FROM(s) (1u << (s))

CONC_NODISCARD static inline int conc_future_complete(conc_future_t *f, int status, void *result) {
    return conc__future_settle(f, CONC__FROM(CONC__FUT_PENDING) | CONC__FROM(CONC__FUT_RUNNING),
                               status, status == 0 ? result : NULL,
                               status == 0 ? CONC__FUT_DONE : CONC__FUT_FAILED);
}

static inline int conc_future_cancel(conc_future_t *f) {
    return conc__future_settle(f, CONC__FROM(CONC__FUT_PENDING), ECANCELED, NULL,
                               CONC__FUT_CANCELLED);
}

/* -------------------------------------------------------------------------------------------
 * Queries and waiting
 * ------------------------------------------------------------------------------------------- */

/* [A1] acquire: pairs with [R1]; a true answer makes the outcome visible. */
static inline bool conc_future_is_done(const conc_future_t *f) {
    return conc__fut_final(conc_load(&f->state, CONC_ACQUIRE));
}

static inline conc_future_state_t conc_future_state(const conc_future_t *f) {
    uint32_t s = conc_load(&f->state, CONC_ACQUIRE) & CONC__FUT_STATE; /* [A1] */
    if (s == CONC__FUT_COMPLETING)
        s = CONC__FUT_RUNNING; /* a completion in progress: not yet observable as done */
    return (conc_future_state_t)s;
}

/* NULL unless the future is done with status 0. [A1] acquire: pairs with [R1]. */
static inline void *conc_future_result(const conc_future_t *f) {
    if ((conc_load(&f->state, CONC_ACQUIRE) & CONC__FUT_STATE) != CONC__FUT_DONE)
        return NULL;
    return f->result;
}

/* The outcome of a future whose final state v was read with acquire. */
CONC_INLINE int conc__future_outcome(const conc_future_t *f, uint32_t v) {
    switch (v & CONC__FUT_STATE) {
    case CONC__FUT_DONE:
        return 0;
    case CONC__FUT_CANCELLED:
        return ECANCELED;
    default:
        return f->status;
    }
}

CONC_COLD int conc__future_wait_slow(conc_future_t *f, int64_t deadline) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    /* A completion usually follows soon (a worker on another CPU): spin before the syscall. */
    if (CONC_FUTURE_SPIN > 0 && conc_cpu_count() > 1 &&
        (deadline == CONC_FOREVER || deadline > conc_now())) {
        for (int i = 0; i < CONC_FUTURE_SPIN && !conc__fut_final(v); i++) {
            conc_cpu_relax();
            v = conc_load(&f->state, CONC_RELAXED);
        }
    }
    for (;;) {
        if (conc__fut_final(v)) {
            v = conc_load(&f->state, CONC_ACQUIRE); /* [A1] pairs with [R1] */
            return conc__future_outcome(f, v);
        }
        if (deadline != CONC_FOREVER && conc_now() >= deadline)
            return ETIMEDOUT;
        if (!(v & CONC__FUT_WAITERS)) {
            /* Relaxed: the kernel's re-check of the word orders the sleep (timeline above). */
            if (!conc_cas(&f->state, &v, v | CONC__FUT_WAITERS, CONC_RELAXED, CONC_RELAXED))
                continue;
            v |= CONC__FUT_WAITERS;
        }
        CONC_CHAOS_POINT();
        (void)conc_futex_wait(&f->state, v, deadline, 0);
        v = conc_load(&f->state, CONC_RELAXED);
    }
}

CONC_NODISCARD static inline int conc_future_wait_until(conc_future_t *f, int64_t deadline) {
    uint32_t v = conc_load(&f->state, CONC_ACQUIRE); /* [A1] pairs with [R1] */
    if (CONC_LIKELY(conc__fut_final(v)))
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
 * sets CALLBACKS while the state is not final is ordered with the completer's swap [R1]:
 * either the swap returns CALLBACKS (the completer will take the lock, after ours, and find
 * n) or the CAS fails on a final state. */
CONC_NOINLINE bool conc__future_link(conc_future_t *f, conc__future_node *n) {
    n->linked = false; /* still private: unlink of a node that never got in is a no-op */
    conc_lock_acquire(&f->lock);
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    for (;;) {
        if (conc__fut_final(v)) {
            conc_lock_release(&f->lock);
            return false;
        }
        if (v & CONC__FUT_CALLBACKS)
            break;
        if (conc_cas(&f->state, &v, v | CONC__FUT_CALLBACKS, CONC_RELAXED, CONC_RELAXED))
            break;
    }
    n->next = NULL;
    n->prev = f->tail;
    if (f->tail)
        f->tail->next = n;
    else
        f->head = n;
    f->tail = n;
    n->linked = true;
    conc_lock_release(&f->lock);
    return true;
}

/* Unlinks a waker node if the completer has not run it yet. After this returns, no
 * completer touches n (waker nodes run under the lock). */
CONC_NOINLINE void conc__future_unlink(conc_future_t *f, conc__future_node *n) {
    conc_lock_acquire(&f->lock);
    if (n->linked) {
        if (n->prev)
            n->prev->next = n->next;
        else
            f->head = n->next;
        if (n->next)
            n->next->prev = n->prev;
        else
            f->tail = n->prev;
        n->linked = false;
    }
    conc_lock_release(&f->lock);
}

CONC_NODISCARD static inline int conc_future_on_done(conc_future_t *f, conc_future_cb fn,
                                                     void *arg) {
    if (!conc_future_is_done(f)) { /* [A1] on the way out if done */
        conc__future_node *n = (conc__future_node *)malloc(sizeof *n);
        if (!n)
            return ENOMEM;
        n->fn = fn;
        n->arg = arg;
        n->waker = false;
        if (conc__future_link(f, n))
            return 0;
        free(n);
        (void)conc_load(&f->state, CONC_ACQUIRE); /* [A1]: the outcome is visible to fn */
    }
    fn(f, arg);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * wait_any / wait_all
 * ------------------------------------------------------------------------------------------- */
typedef struct conc__any_waiter {
    uint32_t fired; /* futex word: 0 until a future completes */
} conc__any_waiter;

/* Runs under the completing future's lock. [R3] release: pairs with [A3]. */
static inline void conc__any_wake(conc_future_t *f, void *arg) {
    CONC_UNUSED(f);
    conc__any_waiter *w = (conc__any_waiter *)arg;
    conc_store(&w->fired, 1u, CONC_RELEASE);
    conc_futex_wake(&w->fired, 1, 0);
}

CONC_INLINE bool conc__any_scan(conc_future_t *const *fs, size_t n, size_t *index) {
    for (size_t i = 0; i < n; i++)
        if (conc_future_is_done(fs[i])) { /* [A1] */
            if (index)
                *index = i;
            return true;
        }
    return false;
}

CONC_NODISCARD static inline int conc_future_wait_any(conc_future_t *const *fs, size_t n,
                                                      int64_t deadline, size_t *index) {
    if (n == 0)
        return EINVAL;
    if (conc__any_scan(fs, n, index))
        return 0;
    if (deadline != CONC_FOREVER && conc_now() >= deadline)
        return ETIMEDOUT;
    conc__future_node stack_nodes[8];
    conc__future_node *nodes = stack_nodes;
    if (n > 8) {
        nodes = (conc__future_node *)malloc(n * sizeof *nodes);
        if (!nodes)
            return ENOMEM;
    }
    conc__any_waiter w = {0};
    size_t linked = 0;
    int r = ETIMEDOUT;
    for (; linked < n; linked++) {
        nodes[linked].fn = conc__any_wake;
        nodes[linked].arg = &w;
        nodes[linked].waker = true;
        if (!conc__future_link(fs[linked], &nodes[linked]))
            break; /* already final: no need to sleep */
    }
    if (linked == n) {
        /* Every future is registered: the first to complete sets w.fired. futex_wait
         * re-checks fired == 0 atomically with the wake [R3], so none is lost. */
        while (conc_load(&w.fired, CONC_ACQUIRE) == 0) { /* [A3] pairs with [R3] */
            if (conc_futex_wait(&w.fired, 0, deadline, 0) == ETIMEDOUT &&
                conc_load(&w.fired, CONC_ACQUIRE) == 0)
                break;
        }
    }
    for (size_t i = 0; i < linked; i++)
        conc__future_unlink(fs[i], &nodes[i]);
    if (conc__any_scan(fs, n, index))
        r = 0;
    if (nodes != stack_nodes)
        free(nodes);
    return r;
}

CONC_NODISCARD static inline int conc_future_wait_all(conc_future_t *const *fs, size_t n,
                                                      int64_t deadline) {
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

typedef struct conc__ac_entry {
    conc__future_node node; /* waker node on the future */
    conc_future_t *f;
    conc_as_completed_t *set;
    struct conc__ac_entry *done_next; /* the FIFO of completed entries, under set->lock */
    struct conc__ac_entry *all_next;  /* every entry, for destroy; under set->lock */
} conc__ac_entry;

/* A sleeper eventcount whose changes are all made under a lock: low 16 bits count the
 * registered sleepers, the rest is a sequence bumped by every notify. */
#define CONC__EC_SLEEPER 1u
#define CONC__EC_SLEEPERS 0xffffu
#define CONC__EC_SEQ 0x10000u

struct conc_as_completed {
    conc_lock_t lock;
    uint32_t ec;      /* eventcount for next(); changed under lock, read by futex */
    size_t remaining; /* added but not yet returned; under lock */
    conc__ac_entry *done_head, *done_tail, *all;
};

/* Runs under the completing future's lock, so destroy (which unlinks under that lock) knows
 * when it has finished with the set. */
static inline void conc__ac_wake(conc_future_t *f, void *arg) {
    CONC_UNUSED(f);
    conc__ac_entry *e = (conc__ac_entry *)arg;
    conc_as_completed_t *ac = e->set;
    conc_lock_acquire(&ac->lock);
    e->done_next = NULL;
    if (ac->done_tail)
        ac->done_tail->done_next = e;
    else
        ac->done_head = e;
    ac->done_tail = e;
    uint32_t ec = conc_load(&ac->ec, CONC_RELAXED);
    bool wake = (ec & CONC__EC_SLEEPERS) != 0;
    if (wake) /* the bump makes a sleeper that registered but has not slept yet see EAGAIN */
        conc_store(&ac->ec, ec + CONC__EC_SEQ, CONC_RELAXED);
    conc_lock_release(&ac->lock);
    if (wake)
        conc_futex_wake(&ac->ec, 1, 0);
}

CONC_NODISCARD static inline int conc_as_completed_add(conc_as_completed_t *ac, conc_future_t *f) {
    conc__ac_entry *e = (conc__ac_entry *)malloc(sizeof *e);
    if (!e)
        return ENOMEM;
    conc_future_retain(f);
    e->f = f;
    e->set = ac;
    e->node.fn = conc__ac_wake;
    e->node.arg = e;
    e->node.waker = true;
    conc_lock_acquire(&ac->lock);
    e->all_next = ac->all;
    ac->all = e;
    ac->remaining++;
    conc_lock_release(&ac->lock);
    if (!conc__future_link(f, &e->node))
        conc__ac_wake(f, e); /* already final: completed "now" */
    return 0;
}

static inline void conc_as_completed_destroy(conc_as_completed_t *ac) {
    if (!ac)
        return;
    /* Unlinking under each future's lock is also the barrier that waits out a completer
     * running conc__ac_wake on this set. */
    for (conc__ac_entry *e = ac->all, *next; e; e = next) {
        next = e->all_next;
        conc__future_unlink(e->f, &e->node);
        conc_future_release(e->f);
        free(e);
    }
    free(ac);
}

CONC_NODISCARD static inline int conc_as_completed_create(conc_as_completed_t **out,
                                                          conc_future_t *const *fs, size_t n) {
    conc_as_completed_t *ac = (conc_as_completed_t *)calloc(1, sizeof *ac);
    *out = NULL;
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
    *out = NULL;
    conc_lock_acquire(&ac->lock);
    bool registered = false;
    int r;
    for (;;) {
        conc__ac_entry *e = ac->done_head;
        if (e) {
            ac->done_head = e->done_next;
            if (!ac->done_head)
                ac->done_tail = NULL;
            ac->remaining--;
            /* [A1] the entry was appended after the future's final swap [R1]; the set's
             * lock carries that order to us. */
            *out = e->f;
            r = 0;
            break;
        }
        if (ac->remaining == 0) {
            r = EPIPE;
            break;
        }
        if (deadline != CONC_FOREVER && conc_now() >= deadline) {
            r = ETIMEDOUT;
            break;
        }
        /* Register under the lock, sleep outside it: a notifier, under the same lock, sees
         * the registration and bumps the sequence, so futex_wait returns EAGAIN if the entry
         * arrived between our unlock and our sleep. */
        uint32_t ec = conc_load(&ac->ec, CONC_RELAXED);
        if (!registered)
            ec += CONC__EC_SLEEPER;
        registered = true;
        conc_store(&ac->ec, ec, CONC_RELAXED);
        conc_lock_release(&ac->lock);
        (void)conc_futex_wait(&ac->ec, ec, deadline, 0);
        conc_lock_acquire(&ac->lock);
    }
    if (registered)
        conc_store(&ac->ec, conc_load(&ac->ec, CONC_RELAXED) - CONC__EC_SLEEPER, CONC_RELAXED);
    conc_lock_release(&ac->lock);
    return r;
}

static inline int conc_as_completed_next(conc_as_completed_t *ac, conc_future_t **out) {
    return conc_as_completed_next_until(ac, CONC_FOREVER, out);
}

CONC_NODISCARD static inline int conc_as_completed_try_next(conc_as_completed_t *ac,
                                                            conc_future_t **out) {
    int r = conc_as_completed_next_until(ac, 0, out);
    return r == ETIMEDOUT ? EAGAIN : r;
}

/* -------------------------------------------------------------------------------------------
 * The executor
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_executor {
    conc_queue_t *q;     /* the bounded submission queue: conc_future_t pointers */
    uint32_t polling;    /* 1 while an idle worker polls the queue (relaxed: a hint) */
    uint32_t cancelling; /* set by shutdown(cancel_pending): taken tasks are cancelled */
    unsigned nthreads;   /* workers started so far: written by create, read by shutdown */
    unsigned workers;    /* workers create starts; set before the first, read by workers */
    pthread_t *threads;  /* written by create before any worker starts; then read-only */
    conc_lock_t shutdown_lock;
    bool joined; /* under shutdown_lock */
} conc_executor_t;

/* Runs a future's task if it is still pending (PENDING -> RUNNING is the gate that cancel
 * races with: one CAS decides), then drops the executor's reference. */
CONC_INLINE void conc__executor_run(conc_future_t *f) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    for (;;) {
        if ((v & CONC__FUT_STATE) != CONC__FUT_PENDING)
            break; /* cancelled (or completed by hand): never run */
        /* Relaxed: the task's inputs were ordered by the queue (push happens-before pop). */
        if (conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, CONC_RELAXED,
                          CONC_RELAXED)) {
            CONC_CHAOS_POINT();
            void *result = NULL;
            int status = f->fn(f->arg, &result);
            (void)conc__future_settle(f, CONC__FROM(CONC__FUT_RUNNING), status,
                                      status == 0 ? result : NULL,
                                      status == 0 ? CONC__FUT_DONE : CONC__FUT_FAILED);
            break;
        }
    }
    conc_future_release(f);
}

/* Takes the next tasks into out[0..cap): how many, or 0 once shut down and drained. A worker
 * takes several tasks per claim when the queue is long (up to a 1/(2 * threads) share of it,
 * at most cap), so workers do not fight over the queue's head once per tiny task, while a
 * short queue is still spread one task per worker.
 * One idle worker at a time polls the queue for up to CONC_EXECUTOR_SPIN pauses before it
 * blocks in conc_queue_pop_batch (the others block at once: on two CPUs, two pollers would
 * starve the threads that submit and wait). So a steady stream of tiny tasks, or a
 * submit-then-wait loop, finds a worker awake and pays no wakeup. The poll is only an
 * optimization: the blocking pop decides. */
CONC_INLINE size_t conc__executor_take(conc_executor_t *ex, conc_future_t **out, size_t cap) {
    size_t share = conc_queue_size(ex->q) / (2u * ex->workers), n = 0;
    if (share < 1)
        share = 1;
    if (share > cap)
        share = cap;
    if (conc_queue_try_pop_batch(ex->q, out, share, &n) == 0)
        return n;
    uint32_t idle = 0;
    if (CONC_EXECUTOR_SPIN > 0 && conc_cpu_count() > 1 &&
        conc_cas(&ex->polling, &idle, 1u, CONC_RELAXED, CONC_RELAXED)) {
        int r = EAGAIN;
        for (int i = 1; i <= CONC_EXECUTOR_SPIN && r == EAGAIN; i++) {
            conc_cpu_relax();
            if ((i & 7) == 0) /* look at the queue now and then: every look moves its lines */
                r = conc_queue_try_pop_batch(ex->q, out, 1, &n);
        }
        conc_store(&ex->polling, 0u, CONC_RELAXED); /* a hint for other workers only */
        if (r != EAGAIN)
            return r == 0 ? n : 0;
    }
    return conc_queue_pop_batch(ex->q, out, 1, &n) == 0 ? n : 0;
}

static inline void *conc__executor_worker(void *arg) {
    conc_executor_t *ex = (conc_executor_t *)arg;
    conc_future_t *taken[16];
    size_t n;
    while ((n = conc__executor_take(ex, taken, sizeof taken / sizeof taken[0])) > 0) {
        for (size_t i = 0; i < n; i++) {
            /* Tasks this worker took but has not started are still "queued" for
             * shutdown(cancel_pending): acquire pairs with the release store there. */
            if (conc_load(&ex->cancelling, CONC_ACQUIRE)) {
                (void)conc_future_cancel(taken[i]);
                conc_future_release(taken[i]);
            } else {
                conc__executor_run(taken[i]);
            }
        }
    }
    return NULL;
}

CONC_INLINE bool conc__executor_is_worker(const conc_executor_t *ex) {
    pthread_t self = pthread_self();
    for (unsigned i = 0; i < ex->nthreads; i++)
        if (pthread_equal(ex->threads[i], self))
            return true;
    return false;
}

static inline void conc_executor_shutdown(conc_executor_t *ex, bool cancel_pending) {
    if (cancel_pending) /* release: pairs with the workers' acquire load */
        conc_store(&ex->cancelling, 1u, CONC_RELEASE);
    conc_queue_close(ex->q); /* new submits get EPIPE, blocked ones too; workers drain */
    if (cancel_pending) {
        conc_future_t *f;
        while (conc_queue_try_pop(ex->q, &f) == 0) { /* races the workers: each item once */
            (void)conc_future_cancel(f);
            conc_future_release(f);
        }
    }
    if (conc__executor_is_worker(ex))
        return; /* a thread cannot join itself: the joining is left to a caller outside */
    conc_lock_acquire(&ex->shutdown_lock);
    if (!ex->joined) {
        for (unsigned i = 0; i < ex->nthreads; i++)
            pthread_join(ex->threads[i], NULL);
        ex->joined = true;
    }
    conc_lock_release(&ex->shutdown_lock);
}

static inline void conc_executor_destroy(conc_executor_t *ex) {
    if (!ex)
        return;
    if (conc__executor_is_worker(ex))
        CONC_ABORT("conc_executor_destroy: called from one of its own tasks");
    conc_executor_shutdown(ex, false);
    free(ex->threads);
    conc_queue_destroy(ex->q);
    free(ex);
}

CONC_NODISCARD static inline int conc_executor_create(conc_executor_t **out, unsigned threads,
                                                      size_t queue_capacity) {
    *out = NULL;
    if (threads == 0)
        threads = (unsigned)conc_cpu_count();
    if (queue_capacity == 0)
        queue_capacity = 1024;
    if (threads > 65535 || queue_capacity > ((size_t)1 << 40))
        return EINVAL;
    conc_executor_t *ex = (conc_executor_t *)calloc(1, sizeof *ex);
    if (!ex)
        return ENOMEM;
    ex->threads = (pthread_t *)calloc(threads, sizeof *ex->threads);
    int e =
        ex->threads ? conc_queue_create(&ex->q, queue_capacity, sizeof(conc_future_t *)) : ENOMEM;
    if (e != 0) {
        free(ex->threads);
        free(ex);
        return e;
    }
    conc_lock_init(&ex->shutdown_lock, 0);
    ex->workers = threads; /* before any worker starts: pthread_create orders it for them */
    for (unsigned i = 0; i < threads; i++) {
        e = pthread_create(&ex->threads[i], NULL, conc__executor_worker, ex);
        if (e != 0) {
            ex->nthreads = i;
            conc_executor_destroy(ex);
            return e;
        }
        ex->nthreads = i + 1;
    }
    *out = ex;
    return 0;
}

static inline unsigned conc_executor_threads(const conc_executor_t *ex) {
    return ex->nthreads;
}

/* Relaxed: a snapshot of the queued (not yet started) tasks, for metrics. */
static inline size_t conc_executor_queue_size(const conc_executor_t *ex) {
    return conc_queue_size(ex->q);
}

CONC_INLINE int conc__executor_submit(conc_executor_t *ex, conc_task_fn fn, void *arg,
                                      conc_future_t **out, bool block) {
    if (out)
        *out = NULL;
    conc_future_t *f = conc__future_new(out ? 2u : 1u, fn, arg);
    if (!f)
        return ENOMEM;
    int r = block ? conc_queue_push(ex->q, &f) : conc_queue_try_push(ex->q, &f);
    if (r != 0) {
        free(f);
        return r;
    }
    if (out)
        *out = f;
    return 0;
}

CONC_NODISCARD static inline int conc_executor_submit(conc_executor_t *ex, conc_task_fn fn,
                                                      void *arg, conc_future_t **f) {
    return conc__executor_submit(ex, fn, arg, f, true);
}

CONC_NODISCARD static inline int conc_executor_try_submit(conc_executor_t *ex, conc_task_fn fn,
                                                          void *arg, conc_future_t **f) {
    return conc__executor_submit(ex, fn, arg, f, false);
}

CONC_NODISCARD static inline int conc_executor_submit_batch(conc_executor_t *ex, conc_task_fn fn,
                                                            void *const *args, size_t n,
                                                            conc_future_t **fs, size_t *submitted) {
    conc_future_t *chunk[64];
    const size_t chunk_max = sizeof chunk / sizeof chunk[0];
    size_t done = 0;
    int r = 0;
    while (done < n && r == 0) {
        size_t k = n - done < chunk_max ? n - done : chunk_max, made = 0, pushed = 0;
        for (; made < k; made++) {
            size_t i = done + made;
            chunk[made] = conc__future_new(fs ? 2u : 1u, fn, args ? args[i] : (void *)(uintptr_t)i);
            if (!chunk[made]) {
                r = ENOMEM;
                break;
            }
        }
        if (made > 0) {
            int e = conc_queue_push_batch(ex->q, chunk, made, &pushed);
            if (e != 0)
                r = e;
        }
        for (size_t j = 0; j < pushed; j++)
            if (fs)
                fs[done + j] = chunk[j];
        for (size_t j = pushed; j < made; j++)
            free(chunk[j]);
        done += pushed;
    }
    if (fs)
        for (size_t i = done; i < n; i++)
            fs[i] = NULL;
    if (submitted)
        *submitted = done;
    return r;
}

/* -------------------------------------------------------------------------------------------
 * The lazy map: results in input order, at most `window` tasks in flight
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_map {
    conc_executor_t *ex;
    conc_task_fn fn;
    void *const *args;
    size_t n, window, next_submit, next_result;
    conc_future_t **ring; /* ring[i % window]: input i, NULL if its submit failed */
    int submit_error;     /* why the submits stopped (EPIPE), for inputs with NULL */
} conc_map_t;

CONC_INLINE void conc__map_submit(conc_map_t *m) {
    size_t i = m->next_submit++;
    conc_future_t **slot = &m->ring[i % m->window];
    *slot = NULL;
    if (m->submit_error == 0)
        m->submit_error =
            conc_executor_submit(m->ex, m->fn, m->args ? m->args[i] : (void *)(uintptr_t)i, slot);
}

static inline void conc_map_destroy(conc_map_t *m) {
    if (!m)
        return;
    /* Cancel what has not started, wait for what runs (it may use the caller's args). */
    for (size_t i = m->next_result; i < m->next_submit; i++) {
        conc_future_t *f = m->ring[i % m->window];
        if (f) {
            (void)conc_future_cancel(f);
            (void)conc_future_wait(f);
            conc_future_release(f);
        }
    }
    free(m->ring);
    free(m);
}

CONC_NODISCARD static inline int conc_map_create(conc_map_t **out, conc_executor_t *ex,
                                                 conc_task_fn fn, void *const *args, size_t n,
                                                 size_t window) {
    *out = NULL;
    if (window == 0)
        return EINVAL;
    conc_map_t *m = (conc_map_t *)calloc(1, sizeof *m);
    if (!m)
        return ENOMEM;
    if (window > n)
        window = n > 0 ? n : 1;
    m->ring = (conc_future_t **)calloc(window, sizeof *m->ring);
    if (!m->ring) {
        free(m);
        return ENOMEM;
    }
    m->ex = ex;
    m->fn = fn;
    m->args = args;
    m->n = n;
    m->window = window;
    while (m->next_submit < n && m->next_submit < window)
        conc__map_submit(m);
    if (m->submit_error == EPIPE && m->ring[0] == NULL) {
        conc_map_destroy(m);
        return EPIPE;
    }
    *out = m;
    return 0;
}

CONC_NODISCARD static inline int conc_map_next_until(conc_map_t *m, int64_t deadline, size_t *index,
                                                     int *status, void **result) {
    if (m->next_result == m->n)
        return EPIPE;
    size_t i = m->next_result;
    conc_future_t *f = m->ring[i % m->window];
    int st;
    void *res = NULL;
    if (f) {
        st = conc_future_wait_until(f, deadline);
        if (!conc_future_is_done(f))
            return ETIMEDOUT; /* nothing consumed: call again */
        res = conc_future_result(f);
        conc_future_release(f);
    } else {
        st = m->submit_error;
    }
    m->next_result++;
    if (m->next_submit < m->n)
        conc__map_submit(m); /* keeps `window` in flight */
    if (index)
        *index = i;
    if (status)
        *status = st;
    if (result)
        *result = res;
    return 0;
}

static inline int conc_map_next(conc_map_t *m, size_t *index, int *status, void **result) {
    return conc_map_next_until(m, CONC_FOREVER, index, status, result);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_FUTURE_H */

/* conc/future.h - futures, a thread-pool executor, as-completed and a lazy map - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's concurrent.futures in C, with a bounded submission queue (submit blocks or fails
 * with EAGAIN instead of growing without limit), a lazy map (at most k tasks in flight) and
 * continuations (on_done), which std::future lacks.
 *
 * QUICK START (examples/09_thread_pool_as_completed.c)
 *     static int work(void *arg, void **result) { *result = arg; return 0; }
 *     static char greeting[] = "hi";
 *     conc_executor_t *ex; conc_future_t *f;
 *     if (conc_executor_create(&ex, 4, 64) != 0) abort();
 *     if (conc_executor_submit(ex, work, greeting, &f) == 0) {
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
 *             conc_future_state(f)                 CONC_FUTURE_PENDING/RUNNING/DONE/FAILED/
 *                                                  CANCELLED
 *             conc_future_result(f)                done or failed: what the task (or complete)
 *                                                  stored; NULL otherwise (see RESULTS)
 *   callback  conc_future_on_done(f, fn, arg)      0, ENOMEM; fn(f, arg) runs exactly once
 *   refs      conc_future_retain(f), conc_future_release(f)   release(NULL): no-op, as free
 *   executor  conc_executor_create(&ex, threads, capacity)   0, EINVAL, ENOMEM; threads 0:
 *                                                  one per CPU; capacity 0: 1024
 *             conc_executor_submit(ex, fn, arg, &f)          blocks while full; 0, EPIPE,
 *                                                  ENOMEM; f may be NULL (fire and forget)
 *             conc_executor_try_submit(ex, fn, arg, &f)      0, EAGAIN, EPIPE, ENOMEM
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
 *   that moment); try_submit: EAGAIN when the queue is full; both: ENOMEM when no future
 *   could be allocated (the pool is at CONC_EXECUTOR_POOL and malloc failed). On any error
 *   nothing is queued and *f is set to NULL (so a cleanup loop may release every entry:
 *   conc_future_release(NULL) does nothing). With f == NULL the task is fire and forget:
 *   it runs as usual, and its outcome is dropped when it ends.
 *   create: EINVAL for threads past 65535 or a capacity past 2^30 (CONC_EXECUTOR_THREADS_MAX,
 *   CONC_EXECUTOR_CAPACITY_MAX), ENOMEM, or pthread_create's error; threads 0 means one per
 *   CPU, capacity 0 the default, 1024 (CONC_EXECUTOR_CAPACITY_DEFAULT).
 *   submit_batch args: args[i] is task i's argument; args == NULL passes the index i itself,
 *   as (void *)(uintptr_t)i (a parallel for). It blocks while the queue is full and returns 0
 *   once all n are queued, or EPIPE: then *submitted (may be NULL) says how many were queued,
 *   and fs[i] is NULL for the rest.
 *   conc_map_create: args is NULL (input i gets (void *)(uintptr_t)i) or an array of n task
 *   arguments (void *const *: conc_map never writes or frees it). It is read lazily: args[i]
 *   when input i is submitted (the first `window` at create, then one each time a result is
 *   taken), so it must stay valid until every input is submitted or conc_map_destroy
 *   returns, and an element changed before its input is submitted is read as changed.
 *   window: EINVAL if 0; above n it is n.
 *   conc_map_next: the results come in INPUT order (as Python's map); *status is task i's
 *   outcome, or EPIPE if input i could not be submitted because the executor shut down;
 *   *result is conc_future_result of task i (so a failed input's error detail too).
 *
 * RESULTS
 *   A done future's result is what the task stored in *result (or complete's r). A failed
 *   one keeps its result too: the task's error detail, as Python's Future.exception()
 *   (NULL if it stored none). conc never frees a result, the task's or complete's: the code
 *   that consumes the outcome owns it (a task that mallocs an error message expects its
 *   waiter to free it). A cancelled future has none (NULL).
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
 *                        Both skip spinning on a single CPU.
 *   CONC_EXECUTOR_POOL   futures an executor keeps for reuse, at most (default 1 << 20, i.e.
 *                        64 MiB); past it, futures are malloc'd and freed one by one. 0: none.
 *   CONC_EXECUTOR_STEAL_HOOK(tasks)   called after every steal from another worker's claim
 *                        with the number of tasks taken; tests count steals with it.
 *   CONC_EXECUTOR_HELP_HOOK()  called when a waiting worker runs the awaited task itself.
 *                        Both default to nothing.
 *
 * CAVEATS
 *   - on_done callbacks run in the thread that completes the future (a worker, usually) or at
 *     once in the registering thread if it is already done: keep them short, and do not block
 *     in them on a full queue of the same executor (a worker waiting for itself deadlocks).
 *   - Tasks that wait for tasks of the same executor: whenever Python's ThreadPoolExecutor
 *     with as many workers finishes such a workload, so does this executor (a waiting worker
 *     runs an unstarted awaited task itself, and idle workers steal what a stuck worker
 *     claimed; see "Claims and steals"). Like Python's, it deadlocks when every worker waits
 *     for a task that none can start. One difference remains: a worker may start tasks of
 *     its own claim while an older claimed task waits behind another worker that is stuck,
 *     so a workload whose tasks block on each other through something other than a future
 *     (a semaphore, a lock) with every worker busy can stop where Python's would not. Size
 *     the executor for it, or wait on futures.
 *   - fork(): an executor's workers do not exist in the child. Use it only in the parent.
 *   - Spurious futex wakeups are absorbed; a signal does not interrupt a wait.
 *   - Memory: an executor keeps the futures it made for reuse (64 bytes each), so it holds
 *     the most that were ever alive at once, up to CONC_EXECUTOR_POOL, until it is destroyed
 *     and its last future is released. A future released twice may already be someone
 *     else's (as with free): under ASan a released pooled future is poisoned until reused.
 *   - At most 2^26 - 1 references to one future at a time (retain aborts past that).
 *   - A waiting worker may run the awaited task on its own stack (at most 8 deep): a task
 *     must not hold a non-recursive lock that a task it waits for takes (Python deadlocks
 *     there too, differently).
 *
 * DESIGN
 *   A future is one 32-bit state word (low 3 bits: PENDING, RUNNING, COMPLETING, DONE,
 *   FAILED, CANCELLED; bit 3 WAITERS: someone sleeps on the word; bit 4 CALLBACKS: the list
 *   has nodes; bit 5 TASK: the executor's task completed it; bits 6-31 the reference count),
 *   the outcome, and a callback list under a 4-byte conc_lock: 64 bytes, one cache line.
 *   Completing is a CAS into COMPLETING (exactly one winner), plain writes of the outcome,
 *   then one add that moves the state to final [R1] and returns the flags: only if WAITERS
 *   was set is there a futex_wake, only if CALLBACKS was set is the lock taken. So a
 *   completion nobody waits for is two atomics and no syscall; a waiter spins briefly, then
 *   sets WAITERS and sleeps on the word. The executor's worker is the only writer of the
 *   task's own outcome fields, so it skips COMPLETING: the gate CAS (PENDING -> RUNNING),
 *   then one CAS to the final state that also drops the worker's reference. A task nobody
 *   sleeps on costs its worker two atomics on the future, and its reference is gone by the
 *   time a waiter sees the outcome: the waiter's release is the last one, and the future
 *   goes back to the pool from the waiter's own CPU. Callbacks are nodes in a doubly linked
 *   list. A node is added under the lock, after a CAS that sets CALLBACKS while the state is
 *   not final: since that CAS and [R1] act on one word, either the completer sees CALLBACKS
 *   (and takes the lock, so it finds the node) or the registrant sees the final state (and
 *   runs the callback itself). Internal "waker" nodes (wait_any, as-completed) run under the
 *   lock and can be unlinked again, which is how wait_any leaves no node behind: after
 *   unlinking under the lock, no completer can still be touching the caller's stack.
 *   tests/models/future.pml checks completion, cancel, wait, on_done and the references
 *   together.
 *   The executor's submission queue is the kit's own conc_queue (queue.h) of future pointers:
 *   lock-free, bounded, blocking and closable, so submit blocks while full, try_submit gets
 *   EAGAIN, shutdown's close hands EPIPE to every submitter (blocked ones too) while the
 *   workers drain, and a busy stream makes no syscall. One idle worker at a time polls the
 *   queue for CONC_EXECUTOR_SPIN pauses before it sleeps, so a steady stream of tiny tasks
 *   finds a worker awake; it watches one slot's stamp, never the queue's tail (the
 *   submitter's line). A worker claims up to 16 ready tasks at once, as many as fit in
 *   about 50 us of work by its recent tasks' times (so long tasks still go one per worker),
 *   and a worker that drains a fast stream lets a few claims' worth pile up (at most 256
 *   pauses) before claiming again: it then never trails the submitter by a task or two,
 *   which would move the same lines back and forth on every task. No claimed task waits
 *   behind a stuck worker while another is free: a claim of two or more is published in the
 *   worker's slots, and any worker steals the older half of a claim 200 us old (its owner
 *   is stuck far past the claim's budget) before it takes newer tasks from the queue. Idle
 *   workers sleep on the executor's own eventcount (not in the queue), so a publish reaches
 *   them; one that sees an open claim sleeps only until it turns stale. A worker that waits
 *   for an unstarted task of its executor runs it itself. Why both, and not "give the claim
 *   back before blocking": only the waits conc sees could give it back, while a sleep, a
 *   lock or a syscall blocks too; stealing covers every kind of blocking, and running the
 *   awaited task covers the case where every worker waits. tests/models/executor.pml checks
 *   the claims, steals, idle sleep and ending.
 *   Futures come from a per-executor pool (conc__future_pool): carved from slabs, one cache
 *   line each, reused LIFO; a release pushes onto a lock-free stack, submitters take the
 *   whole stack at once under a try-lock (no ABA), and a submitter that finds the try-lock
 *   taken mallocs instead of waiting. The pool outlives the executor while its futures do.
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
#ifndef CONC_EXECUTOR_POOL
#define CONC_EXECUTOR_POOL (1u << 20)
#endif
#ifndef CONC_EXECUTOR_STEAL_HOOK
#define CONC_EXECUTOR_STEAL_HOOK(tasks) ((void)0)
#endif
#ifndef CONC_EXECUTOR_HELP_HOOK
#define CONC_EXECUTOR_HELP_HOOK() ((void)0)
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
#define CONC__FUT_TASK 0x20u      /* final by the executor's task: outcome in task_status/_result */
#define CONC__FUT_REF 0x40u       /* one reference: the count is the word's top 26 bits */
#define CONC__FUT_REFS 0xffffffc0u /* mask of the reference count */

/* A callback node. waker nodes belong to the caller (wait_any, as-completed), run under the
 * future's lock and may be unlinked; user nodes are malloc'd by on_done, run outside it. */
typedef struct conc__future_node {
    struct conc__future_node *next, *prev;
    conc_future_cb fn;
    void *arg;
    bool waker;
    bool linked; /* in the list; under the future's lock */
} conc__future_node;

typedef struct conc__future_pool conc__future_pool;

/* 64 bytes on LP64: a pooled future is exactly one cache line (see conc__future_pool). */
struct conc_future {
    uint32_t state;   /* futex word: state, flags and reference count, see DESIGN */
    int task_status;  /* the task's outcome (CONC__FUT_TASK); plain, published by [R1] */
    conc_lock_t lock; /* guards the callback list */
    int status;       /* outcome of complete/cancel; plain, published by [R1] */
    void *result;
    conc__future_node *head, *tail; /* under lock */
    conc_task_fn fn;                /* the task, for executor futures */
    union {
        void *arg;                /* the task's argument, until it runs */
        void *task_result;        /* then the task's result (CONC__FUT_TASK) */
        conc_future_t *next_free; /* released, in its pool's free lists */
    };
    conc__future_pool *pool; /* the executor pool it was carved from (for life); NULL: malloc'd */
};

CONC_INLINE bool conc__fut_final(uint32_t v) {
    return (v & CONC__FUT_STATE) >= CONC__FUT_DONE;
}

/* -------------------------------------------------------------------------------------------
 * The future pool: an executor's futures are recycled, not malloc'd and freed per task
 *
 * Futures are carved from slabs, one cache line each (a malloc'd future shares its lines
 * with its neighbours, which another thread is busy with: every submit then stalls on a
 * worker's line). A released future goes onto `returned`, a lock-free LIFO that any thread
 * pushes onto with one CAS [R4]. Submitters take from `local`, a plain list owned by whoever
 * holds `busy`, a try-lock; when `local` is empty, the holder takes the whole of `returned`
 * with one swap [A4]. Only the holder pops, and only by taking everything, so there is no ABA.
 * A submitter that finds `busy` taken does not wait: it mallocs its future (rare, and only
 * under contention between submitters).
 *
 * Lifetime: futures may outlive their executor. conc_executor_destroy closes the pool: it
 * swaps CLOSED into `returned` (pushes after it fail and see CLOSED), counts the futures
 * still out (those in the slabs minus those in the lists and the newest slab's uncarved
 * rest) and adds that count to `live`; a release that finds the pool closed subtracts one
 * instead of pushing. Whichever brings `live` to zero (the closer when nothing is out, else
 * the last release) frees the slabs and the pool. The releases may run before the closer's
 * add: `live` is modular, and only the add can bring it to zero from below.
 * ------------------------------------------------------------------------------------------- */
#define CONC__FUTURE_STRIDE                                                                        \
    ((sizeof(conc_future_t) + CONC_CACHELINE - 1) & ~(size_t)(CONC_CACHELINE - 1))
#define CONC__POOL_CLOSED ((uintptr_t)1) /* in `returned`: the executor is gone */
/* In a future's `pool`: malloc'd by the executor whose pool this is (the pointer only names
 * the executor, for conc__executor_help_slow; the future goes back to free). */
#define CONC__FUTURE_POOL_MALLOCED ((uintptr_t)1)
#define CONC__POOL_SLAB_MIN 16u   /* futures in the first slab; each next one doubles */
#define CONC__POOL_SLAB_MAX 4096u /* up to this many (256 KiB) */

typedef struct conc__future_slab {
    struct conc__future_slab *next; /* the slab's first line; its futures follow */
} conc__future_slab;

struct conc__future_pool {
    /* The taking side: submitters, one at a time. */
    uint32_t busy;                    /* try-lock: 1 while a submitter owns what follows */
    conc_future_t *local;             /* released futures, taken from `returned` */
    unsigned char *carve, *carve_end; /* the unused rest of the newest slab */
    size_t carved;                    /* futures in the slabs: at most CONC_EXECUTOR_POOL */
    size_t slab_n;                    /* futures in the next slab */
    conc__future_slab *slabs;         /* every slab, for the final free */
    /* The releasing side, written by every last release: its own line. */
    __attribute__((aligned(CONC_CACHELINE))) uintptr_t returned; /* LIFO via next_free; CLOSED */
    size_t live; /* once closed: futures still out (modular, see above) */
};

#if defined(CONC_ASAN)
/* A future in a free list is poisoned up to its link, so a use after the last release is
 * still reported (the pool never frees it), as it would be with malloc. */
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define CONC__FUTURE_POISON(f) __asan_poison_memory_region((f), offsetof(conc_future_t, next_free))
#define CONC__FUTURE_UNPOISON(f)                                                                   \
    __asan_unpoison_memory_region((f), offsetof(conc_future_t, next_free))
#else
#define CONC__FUTURE_POISON(f) ((void)0)
#define CONC__FUTURE_UNPOISON(f) ((void)0)
#endif

CONC_COLD conc__future_pool *conc__pool_create(void) {
    conc__future_pool *p =
        (conc__future_pool *)aligned_alloc(CONC_CACHELINE, sizeof(conc__future_pool));
    if (p) {
        memset(p, 0, sizeof *p);
        p->slab_n = CONC__POOL_SLAB_MIN;
    }
    return p;
}

CONC_COLD void conc__pool_destroy(conc__future_pool *p) {
    for (conc__future_slab *s = p->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(p);
}

/* `local` is empty: take what was released, else carve, else NULL (the cap is reached or no
 * memory: the caller mallocs). Under busy. */
CONC_NOINLINE conc_future_t *conc__pool_refill(conc__future_pool *p) {
    if (conc_load(&p->returned, CONC_RELAXED) != 0) { /* relaxed: a peek; the swap acquires */
        /* [A4] acquire: pairs with [R4]; every releaser's last use of these futures happens
         * before our reuse. Never CLOSED here: the pool closes only once submits are over. */
        conc_future_t *f = (conc_future_t *)conc_swap(&p->returned, (uintptr_t)0, CONC_ACQUIRE);
        p->local = f->next_free;
        return f;
    }
    if (p->carve == p->carve_end) {
        size_t n = p->slab_n;
        if (n > (size_t)CONC_EXECUTOR_POOL - p->carved)
            n = (size_t)CONC_EXECUTOR_POOL - p->carved;
        if (n == 0)
            return NULL;
        conc__future_slab *s = (conc__future_slab *)aligned_alloc(
            CONC_CACHELINE, CONC_CACHELINE + n * CONC__FUTURE_STRIDE);
        if (!s)
            return NULL;
        s->next = p->slabs;
        p->slabs = s;
        p->carve = (unsigned char *)s + CONC_CACHELINE;
        p->carve_end = p->carve + n * CONC__FUTURE_STRIDE;
        p->carved += n;
        if (p->slab_n < CONC__POOL_SLAB_MAX)
            p->slab_n *= 2;
    }
    conc_future_t *f = (conc_future_t *)(void *)p->carve;
    p->carve += CONC__FUTURE_STRIDE;
    f->pool = p;
    return f;
}

/* Up to n futures from the pool into fs (fewer when the cap is reached or another submitter
 * holds it): how many. */
CONC_INLINE size_t conc__pool_take(conc__future_pool *p, conc_future_t **fs, size_t n) {
    if (CONC_EXECUTOR_POOL == 0)
        return 0;
    /* acquire: pairs with the release below, so the last holder's list edits are ours. */
    if (conc_swap(&p->busy, 1u, CONC_ACQUIRE) != 0)
        return 0;
    size_t k = 0;
    for (; k < n; k++) {
        conc_future_t *f = p->local;
        if (CONC_LIKELY(f))
            p->local = f->next_free;
        else if (!(f = conc__pool_refill(p)))
            break;
        fs[k] = f;
    }
    conc_store(&p->busy, 0u, CONC_RELEASE);
    return k;
}

/* Closes the pool (conc_executor_destroy, after the last submit): see above. */
CONC_COLD void conc__pool_close(conc__future_pool *p) {
    /* Acquire: pairs with [R4], like [A4]: those futures are ours to count. */
    uintptr_t h = conc_swap(&p->returned, CONC__POOL_CLOSED, CONC_ACQUIRE);
    size_t in = 0;
    for (conc_future_t *f = p->local; f; f = f->next_free)
        in++;
    for (conc_future_t *f = (conc_future_t *)h; f; f = f->next_free)
        in++;
    in += (size_t)(p->carve_end - p->carve) / CONC__FUTURE_STRIDE; /* never handed out */
    size_t out = p->carved - in;
    /* acq_rel: joins the chain of the late releases' subtractions, so whoever frees has
     * seen every earlier use of the pool. */
    if (conc_fetch_add(&p->live, out, CONC_ACQ_REL) + out == 0)
        conc__pool_destroy(p);
}

/* The last reference is gone: back to the pool (or to free for a malloc'd future). */
CONC_NOINLINE void conc__future_recycle(conc_future_t *f) {
    conc__future_pool *p = f->pool;
    if (!p || ((uintptr_t)p & CONC__FUTURE_POOL_MALLOCED)) {
        free(f);
        return;
    }
#if defined(CONC_TSAN)
    __tsan_mutex_destroy(&f->lock, 0); /* conc_lock_init announces it again on reuse */
#endif
    CONC__FUTURE_POISON(f);
    uintptr_t h = conc_load(&p->returned, CONC_RELAXED); /* relaxed: the CAS decides */
    do {
        if (CONC_UNLIKELY(h & CONC__POOL_CLOSED)) {
            /* acq_rel: see conc__pool_close. */
            if (conc_fetch_sub(&p->live, (size_t)1, CONC_ACQ_REL) == 1)
                conc__pool_destroy(p);
            return;
        }
        f->next_free = (conc_future_t *)h;
        /* [R4] release: pairs with [A4]; our last use of f happens before its reuse. */
    } while (!conc_cas_weak(&p->returned, &h, (uintptr_t)f, CONC_RELEASE, CONC_RELAXED));
}

/* -------------------------------------------------------------------------------------------
 * Futures: creation and references
 * ------------------------------------------------------------------------------------------- */
/* Resets a future from the pool (f->pool set) or from malloc (f->pool NULL). */
CONC_INLINE void conc__future_init(conc_future_t *f, uint32_t refs, conc_task_fn fn, void *arg) {
    CONC__FUTURE_UNPOISON(f);
    f->state = CONC__FUT_PENDING | refs * CONC__FUT_REF;
    f->task_status = 0;
    conc_lock_init(&f->lock, 0);
    f->status = 0;
    f->result = NULL;
    f->head = f->tail = NULL;
    f->fn = fn;
    f->arg = arg;
}

CONC_INLINE conc_future_t *conc__future_malloc(void) {
    conc_future_t *f = (conc_future_t *)malloc(sizeof *f);
    if (f)
        f->pool = NULL;
    return f;
}

CONC_NODISCARD static inline int conc_future_create(conc_future_t **out) {
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
    uint32_t old = conc_fetch_add(&f->state, CONC__FUT_REF, CONC_RELAXED);
    if (CONC_UNLIKELY((old & CONC__FUT_REFS) == CONC__FUT_REFS))
        CONC_ABORT("conc_future_retain: more than 2^26 - 1 references");
}

/* A future made by conc__future_create_ext (declared at the end, for other conc headers). */
#define CONC__FUTURE_EXT ((conc__future_pool *)(uintptr_t)1)
CONC_NOINLINE void conc__future_ext_free(conc_future_t *f);

CONC_NOINLINE void conc__future_free(conc_future_t *f) {
    /* Callbacks of a future that never completed never run; only user nodes can be left
     * (waker owners hold a reference until they unlink). */
    for (conc__future_node *n = f->head, *next; n; n = next) {
        next = n->next;
        if (n->waker)
            CONC_ABORT("conc_future_release: freed while a waiter was registered on it");
        free(n);
    }
    if (CONC_UNLIKELY(f->pool == CONC__FUTURE_EXT)) {
        conc__future_ext_free(f); /* see "For other conc headers" */
        return;
    }
    conc__future_recycle(f);
}

/* [R2]/[A2] acq_rel: every thread's last use of the future happens before the free. */
static inline void conc_future_release(conc_future_t *f) {
    if (!f)
        return; /* as free(NULL): a failed submit leaves NULL behind */
    uint32_t old = conc_fetch_sub(&f->state, CONC__FUT_REF, CONC_ACQ_REL);
    if (CONC_UNLIKELY((old & CONC__FUT_REFS) == CONC__FUT_REF))
        conc__future_free(f);
#if defined(CONC_DEBUG) && CONC_DEBUG
    else if (CONC_UNLIKELY((old & CONC__FUT_REFS) == 0))
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
 *   old = fetch_add(state, DONE - COMPLETING)   [R1]
 *   old has WAITERS: futex_wake(state, all)     futex_wait(state, v | WAITERS)
 *                                                 -> EAGAIN: [R1] changed the word
 *
 *   [R1] and the CAS act on one word, so they are ordered: if the CAS came first, [R1]
 *   returns WAITERS and the completer wakes; if [R1] came first, the CAS fails (the word
 *   changed), the waiter re-reads and sees the final state. Between the CAS and its
 *   futex_wait the kernel re-check catches [R1]. A completion whose [R1] returns no flags
 *   makes no syscall and takes no lock. [R1] is an add, not a store: it keeps the reference
 *   count (the word's top bits) and returns the flags set while the outcome was written
 *   (they stay set in the final word, where nobody looks at them any more).
 *
 *   The executor's task takes a shorter path (conc__future_task_done): the worker alone
 *   writes task_status/task_result, so it needs no COMPLETING claim to exclude a concurrent
 *   writer; one CAS from RUNNING to the final state | TASK publishes them [R1] and, when the
 *   word has no flags (nothing to do after it), also drops the worker's reference: a task
 *   nobody waits for costs the worker two atomics on the word, the gate and this CAS. The
 *   CAS fails only on a word that changed: a flag or a reference came or went (retry), or
 *   complete won the future meanwhile (state COMPLETING or final: the task's outcome is
 *   dropped, as complete documents).
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
        /* Relaxed: the claim publishes nothing; [R1] does. */
    } while (!conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_COMPLETING,
                            CONC_RELAXED, CONC_RELAXED));
    CONC_CHAOS_POINT();
    f->status = status;
    f->result = result;
    /* [R1] release: publishes status/result; pairs with [A1] in wait, on_done, is_done.
     * The state field is COMPLETING (ours alone): the add moves it to final_state and
     * returns the flags set while we wrote. */
    uint32_t old = conc_fetch_add(&f->state, final_state - CONC__FUT_COMPLETING, CONC_RELEASE);
    if (CONC_UNLIKELY(old & (CONC__FUT_WAITERS | CONC__FUT_CALLBACKS)))
        conc__future_finish_slow(f, old);
    return 0;
}

/* The worker's task returned: publish its outcome and drop the worker's reference (see the
 * timeline above). v is the word as the gate left it (a guess is fine: the CAS corrects it). */
CONC_INLINE void conc__future_task_done(conc_future_t *f, uint32_t v, int status, void *result) {
    f->task_status = status;
    f->task_result = result; /* kept for a failure too (RESULTS); f->arg is dead: it has run */
    uint32_t final_state = (status == 0 ? CONC__FUT_DONE : CONC__FUT_FAILED) | CONC__FUT_TASK;
    for (;;) {
        if (CONC_UNLIKELY((v & CONC__FUT_STATE) != CONC__FUT_RUNNING))
            break; /* complete() won while the task ran */
        uint32_t slow = v & (CONC__FUT_WAITERS | CONC__FUT_CALLBACKS);
        uint32_t next = (v & ~CONC__FUT_STATE) | final_state;
        if (!slow)
            next -= CONC__FUT_REF;
        CONC_CHAOS_POINT();
        /* [R1] release: publishes task_status/task_result; pairs with [A1]. Acquire too when
         * it drops our reference: if that was the last one we free the future, after every
         * other holder's last use ([A2]). */
        if (conc_cas_weak(&f->state, &v, next, CONC_ACQ_REL, CONC_RELAXED)) {
            if (slow) {
                conc__future_finish_slow(f, v);
                break; /* and release below: the slow path needed the future alive */
            }
            if ((v & CONC__FUT_REFS) == CONC__FUT_REF)
                conc__future_free(f);
            return;
        }
    }
    conc_future_release(f);
}

#define CONC__FROM(s) (1u << (s))

CONC_NODISCARD static inline int conc_future_complete(conc_future_t *f, int status, void *result) {
    return conc__future_settle(f, CONC__FROM(CONC__FUT_PENDING) | CONC__FROM(CONC__FUT_RUNNING),
                               status, result, status == 0 ? CONC__FUT_DONE : CONC__FUT_FAILED);
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
    uint32_t v = conc_load(&f->state, CONC_ACQUIRE);
    uint32_t s = v & CONC__FUT_STATE;
    if (s != CONC__FUT_DONE && s != CONC__FUT_FAILED)
        return NULL;
    return (v & CONC__FUT_TASK) ? f->task_result : f->result;
}

/* The outcome of a future whose final state v was read with acquire. */
CONC_INLINE int conc__future_outcome(const conc_future_t *f, uint32_t v) {
    switch (v & CONC__FUT_STATE) {
    case CONC__FUT_DONE:
        return 0;
    case CONC__FUT_CANCELLED:
        return ECANCELED;
    default:
        return (v & CONC__FUT_TASK) ? f->task_status : f->status;
    }
}

/* A worker thread that waits for a task of its own executor that nobody has started runs it
 * itself (defined with the executor). */
CONC_NOINLINE void conc__executor_help_slow(conc_future_t *f);
/* The executor worker the calling thread is, or NULL. One variable for the whole program
 * (weak: every translation unit that includes this header defines it, the linker keeps one),
 * so a task compiled in another file than the executor's creator sees it too. */
struct conc__executor_worker;
#if defined(__cplusplus)
__attribute__((weak)) thread_local struct conc__executor_worker *conc__executor_self;
#else
__attribute__((weak)) _Thread_local struct conc__executor_worker *conc__executor_self;
#endif

CONC_COLD int conc__future_wait_slow(conc_future_t *f, int64_t deadline) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    if (conc__executor_self && f->fn && (v & CONC__FUT_STATE) == CONC__FUT_PENDING) {
        conc__executor_help_slow(f);
        v = conc_load(&f->state, CONC_RELAXED);
    }
    /* A completion usually follows soon (a worker on another CPU): spin before the syscall.
     * Not for an ext future (forkpool.h): its completion is a process round trip away, and
     * the spin would only take a CPU from the processes that complete it. */
    if (CONC_FUTURE_SPIN > 0 && conc_cpu_count() > 1 && f->pool != CONC__FUTURE_EXT &&
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
        (void)conc_futex_wait(&f->state, v, 0, deadline);
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
 * sets CALLBACKS while the state is not final is ordered with the completer's [R1]:
 * either [R1] returns CALLBACKS (the completer will take the lock, after ours, and find
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
            if (conc_futex_wait(&w.fired, 0, 0, deadline) == ETIMEDOUT &&
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
            /* [A1] the entry was appended after the future's final step [R1]; the set's
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
        (void)conc_futex_wait(&ac->ec, ec, 0, deadline);
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
#define CONC__EXECUTOR_CLAIM_MAX 16
#define CONC__EXECUTOR_CLAIM_NS ((int64_t)50000)
#define CONC__EXECUTOR_IDLE_PAUSES 64 /* polled this long for nothing: limit back to 1 */
#define CONC__EXECUTOR_LAG_MIN 4      /* a claim of at least this many (< limit): lag */
#define CONC__EXECUTOR_LAG_CLAIMS 4   /* lag until this many claims' worth are queued */
#define CONC__EXECUTOR_LAG_PAUSES 256 /* ... or for this long */
#define CONC__EXECUTOR_POLL_EVERY 8   /* a poller looks at the queue and claims every 8 pauses */
#define CONC__EXECUTOR_IDLE_YIELDS 4  /* an idle worker yields this often before it sleeps */
#define CONC__EXECUTOR_HELP_DEPTH 8   /* tasks run inline by waits within waits, at most */
/* A claim this old is stuck (its owner runs one task far past the claim's budget, 50 us):
 * a worker steals from it before it takes newer tasks from the queue. Well under the
 * millisecond within which a claimed task must start once a worker is free. */
#define CONC__EXECUTOR_STEAL_AGE_NS ((int64_t)200000)

/* A worker's claim word (see "Claims and steals"): bits 0-7 END (tasks in the claim), bits
 * 8-15 NEXT (the first not yet taken), bits 32-63 GEN (claims published: a thief's CAS on a
 * word it read before the owner re-published fails). */
#define CONC__EXECUTOR_CLAIM_END_MASK ((uint64_t)0xff)
#define CONC__EXECUTOR_CLAIM_NEXT_SHIFT 8
#define CONC__EXECUTOR_CLAIM_NEXT_ONE ((uint64_t)1 << CONC__EXECUTOR_CLAIM_NEXT_SHIFT)
#define CONC__EXECUTOR_CLAIM_NEXT_MASK ((uint64_t)0xff << CONC__EXECUTOR_CLAIM_NEXT_SHIFT)
#define CONC__EXECUTOR_CLAIM_GEN_ONE ((uint64_t)1 << 32)
#define CONC__EXECUTOR_CLAIM_GEN_MASK (~(CONC__EXECUTOR_CLAIM_GEN_ONE - 1))

/* The idle word, an eventcount idle workers sleep on: bits 0-15 SLEEPERS (registered),
 * bit 16 WAKING (a wake is on its way: later wakers need not make a syscall), bit 17
 * WATCHING (a sleeper sleeps until an open claim turns stale: a new claim need not wake
 * anyone), bits 18-31 a sequence every wake steps (a sleeper that registered before it
 * never sleeps through it). */
#define CONC__EXECUTOR_IDLE_SLEEPER_ONE 1u
#define CONC__EXECUTOR_IDLE_SLEEPERS_MASK 0xffffu
#define CONC__EXECUTOR_IDLE_WAKING 0x10000u
#define CONC__EXECUTOR_IDLE_WATCHING 0x20000u
#define CONC__EXECUTOR_IDLE_SEQ_ONE 0x40000u
/* create's limits (ERRORS). Threads: the idle word counts every sleeper in 16 bits. */
#define CONC_EXECUTOR_THREADS_MAX 65535u
#define CONC_EXECUTOR_CAPACITY_MAX ((size_t)1 << 30) /* 8 GiB of queue: any more is a mistake */
#define CONC_EXECUTOR_CAPACITY_DEFAULT ((size_t)1024)

#if defined(__cplusplus)
static_assert(CONC__EXECUTOR_CLAIM_MAX <= 0xff, "a claim's END and NEXT fit 8 bits");
static_assert(CONC_EXECUTOR_THREADS_MAX <= CONC__EXECUTOR_IDLE_SLEEPERS_MASK,
              "every worker can sleep at once");
#else
_Static_assert(CONC__EXECUTOR_CLAIM_MAX <= 0xff, "a claim's END and NEXT fit 8 bits");
_Static_assert(CONC_EXECUTOR_THREADS_MAX <= CONC__EXECUTOR_IDLE_SLEEPERS_MASK,
               "every worker can sleep at once");
#endif

typedef struct conc_executor conc_executor_t;

/* One worker and its published claim, on lines of its own (thieves read them). */
typedef struct conc__executor_worker {
    uint64_t claim; /* the claim word: the owner stores and CASes it, thieves CAS it */
    conc_future_t *slot[CONC__EXECUTOR_CLAIM_MAX]; /* the claim's tasks (atomic, relaxed) */
    int64_t claimed_at;  /* when the claim was published (relaxed: an age hint for thieves) */
    unsigned help_depth; /* tasks this worker runs inline while waiting (its own thread only) */
    conc_executor_t *ex;
    unsigned index;
    pthread_t thread;
} __attribute__((aligned(CONC_CACHELINE))) conc__executor_worker;

struct conc_executor {
    /* Read by every submit and every worker, written only by create/shutdown: one line. */
    conc_queue_t *q;         /* the bounded submission queue: conc_future_t pointers */
    conc__future_pool *pool; /* where its futures come from (outlives it if they do) */
    uint32_t cancelling;     /* set by shutdown(cancel_pending): taken tasks are cancelled */
    uint32_t closed;         /* set by shutdown after closing the queue: workers need never
                              * read the queue's tail (the submitter's line) to learn it */
    unsigned nthreads;       /* workers started so far: written by create, read by shutdown */
    conc__executor_worker *workers; /* written by create before any worker starts */
    conc_lock_t shutdown_lock;
    bool joined; /* under shutdown_lock */
    /* Written each time a worker starts or stops polling: away from the lines above. */
    __attribute__((aligned(CONC_CACHELINE))) uint32_t polling; /* 1 while a worker polls (a hint) */
    /* Read by every submit, written when a worker goes to sleep or wakes: its own line. */
    __attribute__((aligned(CONC_CACHELINE))) uint32_t idle; /* the idle eventcount, see above */
    uint32_t quiet; /* workers that found the queue closed, drained, nothing to steal */
};

/* Runs a future's task if it is still pending (PENDING -> RUNNING is the gate that cancel
 * races with: one CAS decides), then drops the executor's reference. */
CONC_INLINE void conc__executor_run(conc_future_t *f) {
    /* The first guess is the word as submit left it with a future for the caller: the CAS
     * then fetches the line once, for writing, instead of a load and then a CAS. */
    uint32_t v = CONC__FUT_PENDING | 2u * CONC__FUT_REF;
    for (;;) {
        /* Relaxed: the task's inputs were ordered by the queue (push happens-before pop) and,
         * for a stolen task, by the claim word (publish [exec.P1] before steal [exec.S1]). */
        if (conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, CONC_RELAXED,
                          CONC_RELAXED))
            break;
        if ((v & CONC__FUT_STATE) != CONC__FUT_PENDING) {
            conc_future_release(f); /* cancelled (or completed by hand): never run */
            return;
        }
    }
    CONC_CHAOS_POINT();
    void *result = NULL;
    int status = f->fn(f->arg, &result);
    conc__future_task_done(f, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, status, result);
}

/* A task this worker took: run it, or cancel it once shutdown(cancel_pending) has begun
 * (tasks taken but not started are still "queued" for it). Acquire: pairs with the release
 * store in shutdown. */
CONC_INLINE void conc__executor_start(conc_executor_t *ex, conc_future_t *f) {
    if (CONC_UNLIKELY(conc_load(&ex->cancelling, CONC_ACQUIRE))) {
        (void)conc_future_cancel(f);
        conc_future_release(f);
    } else {
        conc__executor_run(f);
    }
}

/* A worker that waits for a task of its own executor that has not started runs it itself,
 * inline, instead of blocking: if that task sits in the worker's own claim, or behind
 * another blocked worker, nobody else may start it soon (or ever, if every worker waits).
 * The gate decides as usual (one CAS: the claim's owner later finds it started and drops its
 * reference). Only tasks of the same executor (a task of another one would run outside its
 * own executor's thread count), never during shutdown(cancel_pending), and at most
 * CONC__EXECUTOR_HELP_DEPTH deep (each level is a task's frames on this stack). */
CONC_NOINLINE void conc__executor_help_slow(conc_future_t *f) {
    conc__executor_worker *w = conc__executor_self;
    conc_executor_t *ex = w->ex;
    if (((uintptr_t)f->pool & ~CONC__FUTURE_POOL_MALLOCED) != (uintptr_t)ex->pool ||
        w->help_depth >= CONC__EXECUTOR_HELP_DEPTH || conc_load(&ex->cancelling, CONC_ACQUIRE))
        return;
    /* Our own reference for the run: conc__future_task_done drops one, and the executor's
     * stays with the queue or claim entry, dropped when that entry finds the task started. */
    conc_future_retain(f);
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    while ((v & CONC__FUT_STATE) == CONC__FUT_PENDING) {
        /* Relaxed, as in conc__executor_run: the caller's reference ordered the inputs. */
        if (conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, CONC_RELAXED,
                          CONC_RELAXED)) {
            CONC_EXECUTOR_HELP_HOOK();
            w->help_depth++;
            void *result = NULL;
            int status = f->fn(f->arg, &result);
            w->help_depth--;
            conc__future_task_done(f, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, status, result);
            return;
        }
    }
    conc_future_release(f); /* started (or cancelled) meanwhile: wait as usual */
}

/* -------------------------------------------------------------------------------------------
 * Idle workers: sleeping and waking
 *
 * A worker with nothing to do polls (one at a time), then sleeps on the idle word, not in the
 * queue: a task can become startable without a push (a claim that holds tasks behind a
 * running one), and the sleeper must then be reachable. Three events wake one sleeper: a
 * submit, a published claim of two or more tasks (the rest are stealable), a take that left
 * more behind (a chain: each woken worker wakes the next while work is left).
 *
 *   waker (submit / publish / take)            idle worker
 *   ----------------------------------------    -------------------------------------------
 *   push (seq_cst CAS on tail)  or             (a poller: [exec.E0] store polling = 0)
 *   publish (seq_cst store of the claim word)   [exec.E1] v = fetch_add(idle, SLEEPER_ONE)
 *   [exec.E2] w = load(idle) (seq_cst)          fence seq_cst
 *   w has SLEEPERS, not WAKING, and             re-check: queue size, closed, claims
 *   load(polling) == 0 (seq_cst):                 -> work: leave, look again
 *     CAS idle: w -> w | WAKING + SEQ_ONE       futex_wait(idle, v)
 *     futex_wake(idle, 1)                       leave: SLEEPERS - 1, clear WAKING
 *
 *   [exec.E1] and [exec.E2] are a Dekker pair (seq_cst on both sides): either the waker's
 *   load sees the sleeper (and wakes it, or a wake is already on its way), or the sleeper's
 *   re-check sees the task. A waker that sees a poller wakes nobody: the poller's stop
 *   [exec.E0] comes after that load in the single seq_cst order, so its re-check sees the
 *   task too. The CAS steps the sequence, so a sleeper between its re-check
 *   and its futex_wait is refused the sleep (EAGAIN). WAKING saves a burst of submits a
 *   syscall each: while it is set a wake is on its way to a worker that will look, and that
 *   worker, if it leaves work behind, wakes the next (the chain). Every leaver clears WAKING:
 *   a clear too many costs a syscall, never a lost wake. tests/models/executor.pml checks it.
 * ------------------------------------------------------------------------------------------- */
CONC_COLD void conc__executor_wake_slow(conc_executor_t *ex, uint32_t v) {
    do {
        if ((v & CONC__EXECUTOR_IDLE_SLEEPERS_MASK) == 0 || (v & CONC__EXECUTOR_IDLE_WAKING))
            return;
        /* Relaxed: the futex word itself carries the wake; the Dekker pair is [E1]/[E2]. */
    } while (!conc_cas_weak(&ex->idle, &v,
                            (v | CONC__EXECUTOR_IDLE_WAKING) + CONC__EXECUTOR_IDLE_SEQ_ONE,
                            CONC_RELAXED, CONC_RELAXED));
    CONC_CHAOS_POINT();
    conc_futex_wake(&ex->idle, 1, 0);
}

/* [exec.E2] seq_cst: after the caller's seq_cst push or publish (the timeline above). For
 * a claim (stealable only once stale) no wake while a worker polls (it finds the claim, or
 * stops polling [exec.E0] and then registers and re-checks like any sleeper) or a sleeper
 * watches (it wakes when the oldest open claim turns stale and looks again; its leaving
 * [exec.E3] comes before its next re-check). A submit wakes a sleeper even while a worker
 * polls: the poller may be preempted (more threads than CPUs), and the task would wait for
 * the scheduler's next slice. */
CONC_INLINE void conc__executor_wake(conc_executor_t *ex, bool claim) {
    uint32_t v = conc_load(&ex->idle, CONC_SEQ_CST);
    uint32_t skip = CONC__EXECUTOR_IDLE_WAKING | (claim ? CONC__EXECUTOR_IDLE_WATCHING : 0u);
    if (CONC_UNLIKELY((v & CONC__EXECUTOR_IDLE_SLEEPERS_MASK) != 0 && !(v & skip)) &&
        (!claim || conc_load(&ex->polling, CONC_SEQ_CST) == 0))
        conc__executor_wake_slow(ex, v);
}

/* Whether shutdown has closed the queue. Acquire: pairs with the release in shutdown, so the
 * close itself is visible to the try_pop that follows. */
CONC_INLINE bool conc__executor_closed(conc_executor_t *ex) {
    return conc_load(&ex->closed, CONC_ACQUIRE) != 0;
}

/* Whether another worker's claim holds a task nobody has taken. Acquire: pairs with the
 * publish [exec.P1], so a thief that acts on the answer sees the slots. */
CONC_INLINE bool conc__executor_claim_open(uint64_t c) {
    return ((c & CONC__EXECUTOR_CLAIM_NEXT_MASK) >> CONC__EXECUTOR_CLAIM_NEXT_SHIFT) <
           (c & CONC__EXECUTOR_CLAIM_END_MASK);
}

/* Whether another worker's open claim is stale (see CONC__EXECUTOR_STEAL_AGE_NS); if none
 * is, *stale_at (may be NULL) is when the oldest open one turns stale, or CONC_FOREVER. */
CONC_NOINLINE bool conc__executor_stealable(conc_executor_t *ex, const conc__executor_worker *self,
                                            int64_t *stale_at) {
    unsigned n = conc_load(&ex->nthreads, CONC_RELAXED);
    int64_t first = CONC_FOREVER, now = 0;
    for (unsigned i = 0; i < n; i++) {
        const conc__executor_worker *v = &ex->workers[i];
        /* Acquire: pairs with [exec.P1]; claimed_at was stored before it. */
        if (v == self || !conc__executor_claim_open(conc_load(&v->claim, CONC_ACQUIRE)))
            continue;
        int64_t at = conc_load(&v->claimed_at, CONC_RELAXED) + CONC__EXECUTOR_STEAL_AGE_NS;
        if (now == 0)
            now = conc_now();
        if (at <= now)
            return true;
        if (at < first)
            first = at;
    }
    if (stale_at)
        *stale_at = first;
    return false;
}

/* All workers are quiet (see "Ending"). */
CONC_INLINE bool conc__executor_all_quiet(conc_executor_t *ex) {
    /* Acquire: pairs with the acq_rel arrivals, so the last one's view is everyone's. */
    return conc_load(&ex->quiet, CONC_ACQUIRE) == conc_load(&ex->nthreads, CONC_RELAXED);
}

/* Sleeps until woken, unless the re-check finds work: a task in the queue (or on its way
 * in: the size counts claimed slots), the close, a claim to steal; once quiet (see
 * "Ending"), a claim to steal or the end. */
CONC_COLD void conc__executor_sleep_slow(conc__executor_worker *w, bool quiet) {
    conc_executor_t *ex = w->ex;
    /* [exec.E1] seq_cst, and the fence after it: the re-check's loads cannot be ordered
     * before the registration (the timeline above). */
    uint32_t v = conc_fetch_add(&ex->idle, CONC__EXECUTOR_IDLE_SLEEPER_ONE, CONC_SEQ_CST) +
                 CONC__EXECUTOR_IDLE_SLEEPER_ONE;
    conc_fence_seq_cst(&ex->idle);
    int64_t deadline = CONC_FOREVER;
    bool work = conc__executor_stealable(ex, w, &deadline) ||
                (quiet ? conc__executor_all_quiet(ex)
                       : conc_queue_size(ex->q) > 0 || conc__executor_closed(ex));
    /* An open claim that is not stale yet: sleep until it is, and say so (WATCHING), so
     * that new claims do not wake anyone. Relaxed: the word is only the futex's here. */
    while (!work && deadline != CONC_FOREVER && !(v & CONC__EXECUTOR_IDLE_WATCHING) &&
           !conc_cas_weak(&ex->idle, &v, v | CONC__EXECUTOR_IDLE_WATCHING, CONC_RELAXED,
                          CONC_RELAXED)) {
    }
    if (!work && deadline != CONC_FOREVER)
        v |= CONC__EXECUTOR_IDLE_WATCHING;
    if (!work) {
        CONC_CHAOS_POINT();
        (void)conc_futex_wait(&ex->idle, v, 0, deadline);
    }
    /* [exec.E3] seq_cst: leaving, before the next look (a claim's waker that saw WATCHING
     * counts on it). It clears WAKING and WATCHING: a clear too many costs a syscall at most
     * (another sleeper's watch or wake is taken for over), never a lost wake. */
    v = conc_load(&ex->idle, CONC_RELAXED);
    while (!conc_cas_weak(&ex->idle, &v,
                          (v - CONC__EXECUTOR_IDLE_SLEEPER_ONE) &
                              ~(CONC__EXECUTOR_IDLE_WAKING | CONC__EXECUTOR_IDLE_WATCHING),
                          CONC_SEQ_CST, CONC_RELAXED)) {
    }
}

/* -------------------------------------------------------------------------------------------
 * Claims and steals
 *
 * A worker takes up to `limit` ready tasks with one claim on the queue (one CAS on its head),
 * not one task per claim: a worker that keeps pace with a submitter task by task moves the
 * queue's lines between the two CPUs on every task, and both slow down.
 *  - `limit` adapts to how long the worker's recent tasks took, so that a claim holds about
 *    CONC__EXECUTOR_CLAIM_NS of work: tiny tasks go up to 16 at a time, longer ones one at a
 *    time. A worker that found nothing to do for a while starts again at one task per claim.
 *  - A worker that drained the queue of a fast stream (its claim found at least a cache
 *    line's worth of tasks, 4, but fewer than `limit`) lets the next few claims' worth pile
 *    up before it claims again, for at most CONC__EXECUTOR_LAG_PAUSES: it then claims lines
 *    the submitter has finished with, instead of the line the submitter is writing. The claim
 *    right after a lag never lags again, so a moderate stream does not settle into lagging.
 *  - The worker looks at the queue by reading one slot's stamp (conc__queue_item_ready,
 *    queue.h's seam), and claims only when it is ready: it never reads the tail (the
 *    submitter's line) while it waits.
 *
 * No claimed task waits behind a running one while another worker is free (the mechanism,
 * chosen over giving claims back before blocking, which only works for the waits conc can
 * see, not for a sleep, a lock or a syscall): a claim of two or more tasks is PUBLISHED in the
 * worker's slots, and any other worker may STEAL from it. Owner and thieves take tasks from
 * the front of a claim with one CAS on its word (NEXT + k), so each task is taken exactly
 * once, and a claim starts in queue order. A worker looks for work oldest first: claims
 * before the queue, so the tasks that have started are the queue's first ones, as with
 * Python's one shared queue (except for two claims made at the same moment, whose order
 * among each other is the order their owners get to them). A thief takes the older half of
 * what is left and publishes it as its own claim: a claim that a blocked thief holds can be
 * stolen again. Publishing wakes a sleeper ([exec.E2]); the sleeper's re-check scans the
 * claims ([exec.E1]): a free worker starts a stolen task at once, a sleeping one within a
 * wakeup. The owner of a one-task claim publishes nothing (nothing would be left to steal).
 *
 *   owner                                        thief
 *   ----------------------------------------    -------------------------------------------
 *   claim n tasks from the queue or a claim      c = load claim (acquire)      [exec.S0]
 *   slot[1..n) = tasks (relaxed)                 c open: read slot[NEXT..NEXT+k) (relaxed)
 *   [exec.P1] store claim: GEN+1, NEXT 1, END n  [exec.S1] CAS claim: c -> c + k NEXT
 *     (seq_cst), then wake one sleeper             -> fails: the word changed, look again
 *   run tasks[0]; then for each next task:        publish the k tasks as its own claim
 *   CAS claim: NEXT -> NEXT + 1 (the same race)
 *
 *   The slots are rewritten only after the claim is used up, and the GEN step on publishing
 *   makes every CAS on an older word fail: a thief that read slots of a newer claim never
 *   takes them (no ABA). A thief starts or cancels what it took exactly like the owner.
 *
 * Ending: a worker that finds the queue closed and drained and nothing to steal does not exit
 * at once (a claim still open elsewhere may hold the task its owner waits for): it counts
 * itself QUIET and sleeps; it leaves QUIET to steal. A quiet worker holds no task, so once
 * all are quiet no claim is open, no task is in flight, and none can appear: the last to
 * arrive wakes the others and all exit.
 * ------------------------------------------------------------------------------------------- */

/* Steals the older half of a stale claim of another worker (published at least
 * CONC__EXECUTOR_STEAL_AGE_NS ago: its owner is stuck on a task far longer than the claim's
 * budget) into out: how many (0: none). */
CONC_NOINLINE size_t conc__executor_steal_slow(conc_executor_t *ex, conc__executor_worker *self,
                                               conc_future_t **out) {
    unsigned n = conc_load(&ex->nthreads, CONC_RELAXED);
    int64_t now = 0;
    for (unsigned d = 1; d < n; d++) {
        conc__executor_worker *v = &ex->workers[(self->index + d) % n];
        uint64_t c = conc_load(&v->claim, CONC_ACQUIRE); /* [exec.S0] pairs with [exec.P1] */
        if (conc__executor_claim_open(c)) {
            if (now == 0)
                now = conc_now();
            /* Relaxed: an age hint; a stale stamp (an older claim's) only makes us steal
             * sooner, and the CAS below decides what is taken. */
            if (now - conc_load(&v->claimed_at, CONC_RELAXED) < CONC__EXECUTOR_STEAL_AGE_NS)
                continue;
        }
        while (conc__executor_claim_open(c)) {
            size_t next =
                (size_t)((c & CONC__EXECUTOR_CLAIM_NEXT_MASK) >> CONC__EXECUTOR_CLAIM_NEXT_SHIFT);
            size_t left = (size_t)(c & CONC__EXECUTOR_CLAIM_END_MASK) - next;
            size_t k = (left + 1) / 2;
            for (size_t i = 0; i < k; i++)
                out[i] = conc_load(&v->slot[next + i], CONC_RELAXED);
            CONC_CHAOS_POINT();
            /* [exec.S1] acquire: pairs with [exec.P1] (the slots we read are that claim's:
             * the word, GEN included, is unchanged). The owner's CAS races this one. */
            if (conc_cas(&v->claim, &c, c + k * CONC__EXECUTOR_CLAIM_NEXT_ONE, CONC_ACQUIRE,
                         CONC_ACQUIRE)) {
                CONC_EXECUTOR_STEAL_HOOK(k);
                return k;
            }
        }
    }
    return 0;
}

/* The next task of the worker's own published claim, or NULL once it is used up (by the
 * worker or by thieves). The same CAS as a steal: exactly one of them takes each task. */
CONC_INLINE conc_future_t *conc__executor_claim_next(conc__executor_worker *w) {
    uint64_t c = conc_load(&w->claim, CONC_RELAXED); /* relaxed: our own word; the CAS decides */
    while (conc__executor_claim_open(c)) {
        size_t next =
            (size_t)((c & CONC__EXECUTOR_CLAIM_NEXT_MASK) >> CONC__EXECUTOR_CLAIM_NEXT_SHIFT);
        conc_future_t *f = conc_load(&w->slot[next], CONC_RELAXED); /* ours: written by us */
        if (conc_cas_weak(&w->claim, &c, c + CONC__EXECUTOR_CLAIM_NEXT_ONE, CONC_RELAXED,
                          CONC_RELAXED))
            return f;
    }
    return NULL;
}

/* Publishes tasks[0..n) (n >= 2) as the worker's claim, the first already taken by it. */
CONC_INLINE void conc__executor_publish(conc__executor_worker *w, conc_future_t **tasks, size_t n) {
    for (size_t i = 1; i < n; i++)
        conc_store(&w->slot[i], tasks[i], CONC_RELAXED);
    uint64_t gen = (conc_load(&w->claim, CONC_RELAXED) & CONC__EXECUTOR_CLAIM_GEN_MASK) +
                   CONC__EXECUTOR_CLAIM_GEN_ONE;
    /* [exec.P1] seq_cst: release for the slots (pairs with [exec.S0]/[exec.S1]), and the
     * first half of the Dekker pair with a sleeper's [exec.E1] (the caller's wake follows). */
    conc_store(&w->claim, gen | CONC__EXECUTOR_CLAIM_NEXT_ONE | (uint64_t)n, CONC_SEQ_CST);
}

/* The queue is closed and drained and there was nothing to steal: true once every worker
 * is quiet (exit), false when a claim opened (leave quiet and steal). */
CONC_COLD bool conc__executor_quiet_slow(conc__executor_worker *w) {
    conc_executor_t *ex = w->ex;
    /* acq_rel: every arrival sees the ones before it; the last sees them all. */
    uint32_t q = conc_fetch_add(&ex->quiet, 1u, CONC_ACQ_REL) + 1u;
    if (q == conc_load(&ex->nthreads, CONC_RELAXED)) {
        /* Wake all. seq_cst (release would do): a sleeper whose registration reads this step
         * sees our arrival in its re-check. */
        conc_fetch_add(&ex->idle, CONC__EXECUTOR_IDLE_SEQ_ONE, CONC_SEQ_CST);
        conc_futex_wake(&ex->idle, INT_MAX, 0);
        return true;
    }
    for (;;) {
        if (conc__executor_all_quiet(ex))
            return true;
        if (conc__executor_stealable(ex, w, NULL)) {
            conc_fetch_sub(&ex->quiet, 1u, CONC_RELAXED); /* still short of all: no race */
            return false;
        }
        conc__executor_sleep_slow(w, true);
    }
}

/* Takes the next tasks into out[0..*limit): how many, or 0 once the executor has ended.
 * Oldest first: another worker's open claim, then the queue. One idle worker at a time
 * polls for CONC_EXECUTOR_SPIN pauses before it sleeps (the others sleep at once: on two
 * CPUs, two pollers would starve the threads that submit and wait), so a steady stream of
 * tiny tasks, or a submit-then-wait loop, finds a worker awake and pays no wakeup. */
CONC_INLINE size_t conc__executor_take(conc__executor_worker *w, conc_future_t **out,
                                       size_t *limit) {
    conc_executor_t *ex = w->ex;
    size_t n = 0;
    for (;;) {
        bool many = conc_load(&ex->nthreads, CONC_RELAXED) > 1;
        if (many && (n = conc__executor_steal_slow(ex, w, out)) > 0)
            return n; /* a stuck claim: older than anything in the queue */
        int r = EAGAIN;
        if (conc__queue_item_ready(ex->q, 1) || conc__executor_closed(ex))
            r = conc_queue_try_pop_batch(ex->q, out, *limit, &n); /* closed, drained: EPIPE */
        if (r == 0)
            return n;
        if (r == EPIPE) {
            if (conc__executor_quiet_slow(w))
                return 0;
            continue;
        }
        uint32_t idle = 0;
        if (CONC_EXECUTOR_SPIN > 0 && conc_cpu_count() > 1 &&
            conc_cas(&ex->polling, &idle, 1u, CONC_RELAXED, CONC_RELAXED)) {
            for (int i = 1; i <= CONC_EXECUTOR_SPIN && r == EAGAIN; i++) {
                conc_cpu_relax();
                if (i == CONC__EXECUTOR_IDLE_PAUSES)
                    *limit = 1;
                if (i % CONC__EXECUTOR_POLL_EVERY == 0 &&
                    (conc__queue_item_ready(ex->q, 1) || conc__executor_closed(ex) ||
                     conc__executor_stealable(ex, w, NULL)))
                    r = 0; /* look again, from the top */
            }
            /* [exec.E0] seq_cst: a waker that saw us polling made no wake, so our stop must
             * come before our registration [exec.E1] in the one order (and it does: both
             * seq_cst, the waker's loads too). */
            conc_store(&ex->polling, 0u, CONC_SEQ_CST);
            if (r == 0)
                continue;
        }
        *limit = 1;
        /* A few yields before the sleep, as conc_queue_pop does: with more threads than
         * CPUs the submitter may be the one waiting for this CPU, and a sleep now would cost
         * it a wakeup once it runs again. */
        for (int i = 0; i < CONC__EXECUTOR_IDLE_YIELDS && r == EAGAIN && conc_cpu_count() > 1;
             i++) {
            sched_yield();
            if (conc__queue_item_ready(ex->q, 1) || conc__executor_closed(ex))
                r = 0;
        }
        if (r == EAGAIN)
            conc__executor_sleep_slow(w, false);
    }
}

/* See "Claims": waits (briefly) until the queue holds `tasks` tasks. */
CONC_INLINE void conc__executor_lag(conc_executor_t *ex, size_t tasks) {
    size_t half = conc_queue_capacity(ex->q) / 2; /* never wait for a full queue */
    if (tasks > half)
        tasks = half > 0 ? half : 1;
    for (int i = 1; i <= CONC__EXECUTOR_LAG_PAUSES; i++) {
        conc_cpu_relax();
        if (i % CONC__EXECUTOR_POLL_EVERY == 0 && conc__queue_item_ready(ex->q, tasks))
            return;
    }
}

static inline void *conc__executor_worker_main(void *arg) {
    conc__executor_worker *w = (conc__executor_worker *)arg;
    conc_executor_t *ex = w->ex;
    conc_future_t *taken[CONC__EXECUTOR_CLAIM_MAX];
    conc__executor_self = w;
    size_t n, limit = 1;
    bool lagged = false; /* the last claim followed a lag: its size says nothing of the rate */
    while ((n = conc__executor_take(w, taken, &limit)) > 0) {
        bool lag = !lagged && n >= CONC__EXECUTOR_LAG_MIN && n < limit;
        lagged = lag;
        /* A claim of one task when more were allowed tells nothing new: untimed (the common
         * case of a worker that keeps up with one submitter; a clock read is ~20 ns). */
        bool timed = n > 1 || limit == 1;
        int64_t t0 = timed ? conc_now() : 0;
        if (n > 1) {
            conc_store(&w->claimed_at, t0, CONC_RELAXED); /* before [exec.P1]: an age hint */
            conc__executor_publish(w, taken, n);
        }
        bool more = conc__queue_item_ready(ex->q, 1);
        if (n > 1 || more) /* work left behind: the chain (see "Idle workers") */
            conc__executor_wake(ex, !more);
        size_t ran = 1;
        conc__executor_start(ex, taken[0]);
        if (n > 1) {
            conc_future_t *f;
            while ((f = conc__executor_claim_next(w)) != NULL) {
                conc__executor_start(ex, f);
                ran++;
            }
        }
        if (timed) { /* the next limit: what fits the budget, at most doubling */
            int64_t per = (conc_now() - t0) / (int64_t)ran + 1;
            size_t fit =
                per >= CONC__EXECUTOR_CLAIM_NS ? 1 : (size_t)(CONC__EXECUTOR_CLAIM_NS / per);
            if (fit > 2 * limit)
                fit = 2 * limit;
            limit = fit > CONC__EXECUTOR_CLAIM_MAX ? CONC__EXECUTOR_CLAIM_MAX : fit;
        }
        if (lag)
            conc__executor_lag(ex, CONC__EXECUTOR_LAG_CLAIMS * limit);
    }
    return NULL;
}

CONC_INLINE bool conc__executor_is_worker(const conc_executor_t *ex) {
    pthread_t self = pthread_self();
    unsigned n = conc_load(&ex->nthreads, CONC_RELAXED);
    for (unsigned i = 0; i < n; i++)
        if (pthread_equal(ex->workers[i].thread, self))
            return true;
    return false;
}

static inline void conc_executor_shutdown(conc_executor_t *ex, bool cancel_pending) {
    if (cancel_pending) /* release: pairs with the workers' acquire load */
        conc_store(&ex->cancelling, 1u, CONC_RELEASE);
    conc_queue_close(ex->q); /* new submits get EPIPE, blocked ones too; workers drain */
    conc_store(&ex->closed, 1u, CONC_RELEASE); /* after the close: see conc__executor_closed */
    /* Every sleeper re-checks (and finds the queue closed): step the sequence, wake all.
     * seq_cst (release would do): a sleeper whose registration reads this step sees the
     * close in its re-check. */
    conc_fetch_add(&ex->idle, CONC__EXECUTOR_IDLE_SEQ_ONE, CONC_SEQ_CST);
    conc_futex_wake(&ex->idle, INT_MAX, 0);
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
            pthread_join(ex->workers[i].thread, NULL);
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
    free(ex->workers);
    conc_queue_destroy(ex->q);
    conc__pool_close(ex->pool); /* frees it now, or at the last release of its futures */
    free(ex);
}

CONC_NODISCARD static inline int conc_executor_create(conc_executor_t **out, unsigned threads,
                                                      size_t queue_capacity) {
    *out = NULL;
    if (threads == 0)
        threads = (unsigned)conc_cpu_count();
    if (queue_capacity == 0)
        queue_capacity = CONC_EXECUTOR_CAPACITY_DEFAULT;
    if (threads > CONC_EXECUTOR_THREADS_MAX || queue_capacity > CONC_EXECUTOR_CAPACITY_MAX)
        return EINVAL;
    conc_executor_t *ex = (conc_executor_t *)aligned_alloc(CONC_CACHELINE, sizeof *ex);
    if (!ex)
        return ENOMEM;
    memset(ex, 0, sizeof *ex);
    ex->workers = (conc__executor_worker *)aligned_alloc(CONC_CACHELINE,
                                                         threads * sizeof(conc__executor_worker));
    if (ex->workers)
        memset(ex->workers, 0, threads * sizeof(conc__executor_worker));
    ex->pool = conc__pool_create();
    int e = ex->workers && ex->pool
                ? conc_queue_create(&ex->q, queue_capacity, sizeof(conc_future_t *))
                : ENOMEM;
    if (e != 0) {
        free(ex->workers);
        free(ex->pool);
        free(ex);
        return e;
    }
    conc_lock_init(&ex->shutdown_lock, 0);
    for (unsigned i = 0; i < threads; i++) {
        ex->workers[i].ex = ex;
        ex->workers[i].index = i;
    }
    for (unsigned i = 0; i < threads; i++) {
        /* nthreads first: a worker scans workers[0..nthreads) and the new one must be in it.
         * Relaxed stores are enough for scans: pthread_create orders them for the new
         * thread, and an older worker that misses the newest one misses a worker with
         * nothing claimed yet. */
        conc_store(&ex->nthreads, i + 1, CONC_RELAXED);
        e = pthread_create(&ex->workers[i].thread, NULL, conc__executor_worker_main,
                           &ex->workers[i]);
        if (e != 0) {
            conc_store(&ex->nthreads, i, CONC_RELAXED);
            conc_executor_destroy(ex);
            return e;
        }
    }
    *out = ex;
    return 0;
}

static inline unsigned conc_executor_threads(const conc_executor_t *ex) {
    return ex->nthreads;
}

/* Relaxed: a snapshot of the queued tasks (not yet claimed by a worker), for metrics. */
static inline size_t conc_executor_queue_size(const conc_executor_t *ex) {
    return conc_queue_size(ex->q);
}

/* n futures into fs, uninitialized: from the pool, else malloc'd. How many (< n: ENOMEM). */
CONC_INLINE size_t conc__executor_futures(conc_executor_t *ex, conc_future_t **fs, size_t n) {
    size_t k = conc__pool_take(ex->pool, fs, n);
    for (; k < n; k++) {
        if (!(fs[k] = conc__future_malloc()))
            break;
        fs[k]->pool = (conc__future_pool *)((uintptr_t)ex->pool | CONC__FUTURE_POOL_MALLOCED);
    }
    return k;
}

CONC_INLINE int conc__executor_submit(conc_executor_t *ex, conc_task_fn fn, void *arg,
                                      conc_future_t **out, bool block) {
    if (out)
        *out = NULL;
    conc_future_t *f;
    if (conc__executor_futures(ex, &f, 1) == 0)
        return ENOMEM;
    conc__future_init(f, out ? 2u : 1u, fn, arg);
    int r = block ? conc_queue_push(ex->q, &f) : conc_queue_try_push(ex->q, &f);
    if (r != 0) {
        conc__future_recycle(f);
        return r;
    }
    conc__executor_wake(ex, false); /* [exec.E2], after the push's seq_cst claim */
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

/* Pushes all n (blocking while full), waking a worker after every piece that went in: a
 * blocking conc_queue_push_batch would sleep on a full queue with its first pieces in and
 * no worker told. 0 or EPIPE; *pushed says how many went in. */
CONC_INLINE int conc__executor_push_all(conc_executor_t *ex, conc_future_t **fs, size_t n,
                                        size_t *pushed) {
    *pushed = 0;
    while (*pushed < n) {
        size_t k = 0;
        int e = conc_queue_try_push_batch(ex->q, fs + *pushed, n - *pushed, &k);
        if (e == EAGAIN) { /* full: the workers are awake (a sleeper's re-check sees it) */
            e = conc_queue_push(ex->q, fs + *pushed);
            k = e == 0 ? 1 : 0;
        }
        *pushed += k;
        if (k > 0)
            conc__executor_wake(ex, false); /* [exec.E2]; a woken worker wakes the next */
        if (e != 0)
            return e;
    }
    return 0;
}

CONC_NODISCARD static inline int conc_executor_submit_batch(conc_executor_t *ex, conc_task_fn fn,
                                                            void *const *args, size_t n,
                                                            conc_future_t **fs, size_t *submitted) {
    conc_future_t *chunk[64];
    const size_t chunk_max = sizeof chunk / sizeof chunk[0];
    size_t done = 0;
    int r = 0;
    while (done < n && r == 0) {
        size_t k = n - done < chunk_max ? n - done : chunk_max, pushed = 0;
        size_t made = conc__executor_futures(ex, chunk, k);
        if (made < k)
            r = ENOMEM;
        for (size_t j = 0; j < made; j++) {
            size_t i = done + j;
            conc__future_init(chunk[j], fs ? 2u : 1u, fn, args ? args[i] : (void *)(uintptr_t)i);
        }
        if (made > 0) {
            int e = conc__executor_push_all(ex, chunk, made, &pushed);
            if (e != 0)
                r = e;
        }
        for (size_t j = 0; j < pushed; j++)
            if (fs)
                fs[done + j] = chunk[j];
        for (size_t j = pushed; j < made; j++)
            conc__future_recycle(chunk[j]);
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

/* -------------------------------------------------------------------------------------------
 * For other conc headers (forkpool.h): futures that carry their owner's record
 *
 *   conc__future_create_ext(&f, size, on_free, &ext)  a promise like conc_future_create, with
 *       `size` bytes after it that belong to the caller (*ext, max_align_t-aligned, not
 *       zeroed) and on_free(ext), run once when the last reference goes, before the memory
 *       is freed (the owner frees what the record points to). 0 or ENOMEM.
 *   conc__future_ext(f, on_free)   the record of a future made with this on_free, else NULL:
 *       a tag check (conc_forkpool_outcome says EINVAL for a future that is not its own).
 *   conc__future_start(f)          PENDING -> RUNNING (true), the executor's gate; false if
 *       it was cancelled or completed. conc_future_cancel then says EBUSY, as it does for a
 *       running executor task, and conc_future_complete still settles it.
 * Such a future is malloc'd, never pooled: its `pool` field holds CONC__FUTURE_EXT. A waiter
 * does not spin on it before sleeping (see conc__future_wait_slow).
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
    conc__future_ext_head *h = (conc__future_ext_head *)malloc(CONC__FUTURE_EXT_OFFSET + size);
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

/* Relaxed: like the executor's gate, the claim publishes nothing (complete's [R1] does). */
static inline bool conc__future_start(conc_future_t *f) {
    uint32_t v = conc_load(&f->state, CONC_RELAXED);
    do {
        if ((v & CONC__FUT_STATE) != CONC__FUT_PENDING)
            return false;
    } while (!conc_cas_weak(&f->state, &v, (v & ~CONC__FUT_STATE) | CONC__FUT_RUNNING, CONC_RELAXED,
                            CONC_RELAXED));
    return true;
}

CONC_NOINLINE void conc__future_ext_free(conc_future_t *f) {
    conc__future_ext_head *h = (conc__future_ext_head *)f;
    h->on_free((char *)h + CONC__FUTURE_EXT_OFFSET);
    free(h);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_FUTURE_H */

/* conc/executor.h - a thread-pool executor of futures, and a lazy map - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's concurrent.futures.ThreadPoolExecutor in C: unbounded as Python's, or with a bound
 * on queued tasks (submit then blocks or fails with EAGAIN instead of growing without limit),
 * and a lazy map (at most `window` tasks in flight). The futures themselves: future.h (included).
 *
 * CONTENTS
 *   API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS, DESIGN; then the
 *   code: the future pool (lifetime timeline); the executor (workers, the gate); staging
 *   (FIFO starts); the spill (submits past a full queue); idle workers (sleeping and
 *   waking); create, submit, shutdown, destroy; the lazy map.
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
 *   executor  conc_executor_create(&ex, threads, capacity)   0, EINVAL, ENOMEM; threads 0:
 *                                                  one per CPU; capacity 0: unbounded
 *                                                  (Python's); else a bound on queued tasks
 *             conc_executor_submit(ex, fn, arg, &f)          blocks while a bound is reached
 *                                                  (never in ex's own tasks: CAVEATS); 0, EPIPE,
 *                                                  CONC_EXECUTOR_BROKEN, ENOMEM, EINVAL
 *                                                  (fn NULL); f may be NULL (fire and forget)
 *             conc_executor_try_submit(ex, fn, arg, &f)      0, EAGAIN, EPIPE, ..._BROKEN,
 *                                                  ENOMEM, EINVAL
 *             conc_executor_submit_batch(ex, fn, args, n, fs, &done)   0, EPIPE,
 *                                                  CONC_EXECUTOR_BROKEN, ENOMEM, EINVAL
 *             conc_executor_create_with(&ex, &options)       create plus Python's initializer,
 *                                                  initargs and thread_name_prefix (below)
 *             conc_executor_shutdown(ex, cancel_pending)     idempotent; joins
 *             conc_executor_shutdown_nowait(ex, cancel_pending)  shutdown(wait=False): returns at
 *                                                  once; destroy joins later
 *             conc_executor_broken(ex)                       0, or the failed initializer's value
 *             conc_executor_destroy(ex)                      shutdown(false), then free
 *             conc_executor_threads(ex), conc_executor_queue_size(ex)
 *   lazy map  conc_map_create(&m, ex, fn, args, n, window)   0, EINVAL, ENOMEM, EPIPE,
 *                                                  CONC_EXECUTOR_BROKEN
 *             conc_map_next(m, &i, &status, &result)         0, EPIPE (all n returned),
 *                                                            EINVAL (m NULL)
 *             conc_map_next_until(m, dl, &i, &status, &result)  0, ETIMEDOUT, EPIPE, EINVAL
 *             conc_map_destroy(m)                            cancels what is queued, waits
 *
 * ERRORS
 *   submit: EPIPE once shutdown has begun (also for submitters blocked on a full queue at
 *   that moment); try_submit: EAGAIN when a bounded queue is full (or tasks wait behind it in
 *   the spill, see CAVEATS), never for an unbounded executor; both: ENOMEM when no future
 *   could be allocated (the pool is at CONC_EXECUTOR_POOL and malloc failed), or, past the
 *   queue of an unbounded executor or in a task of ex with the queue full, no room in the
 *   spill. On any error
 *   nothing is queued and *f is set to NULL (so a cleanup loop may release every entry:
 *   conc_future_release(NULL) does nothing). With f == NULL the task is fire and forget:
 *   it runs as usual, and its outcome is dropped when it ends.
 *   create_with: options.initializer(options.initarg) runs once in every worker thread,
 *   before that worker takes any task. If it returns nonzero the executor is BROKEN
 *   (Python's BrokenThreadPool): it refuses new work as after a shutdown, but submits get
 *   CONC_EXECUTOR_BROKEN (ENOTRECOVERABLE, as barrier.h's broken barrier) instead of EPIPE,
 *   every task not yet started fails with it (state FAILED, status CONC_EXECUTOR_BROKEN,
 *   result NULL; it never runs), tasks already running finish, and conc_executor_broken
 *   returns the first failing initializer's value (once a submit or a task reported the
 *   break, it is visible). The other workers' initializers still run once each. destroy
 *   joins and frees as usual. options.name_prefix names the workers "<prefix>_<i>" with
 *   prctl(PR_SET_NAME) before the initializer, visible in gdb, top -H, ps -L and
 *   /proc/<pid>/task/<tid>/comm; Linux keeps 15 bytes, so the prefix is cut to what fits
 *   beside "_" and the largest index (13 bytes for up to 10 workers, 12 up to 100...), the
 *   same for every worker. NULL or "": the workers keep the name they inherit.
 *   create: EINVAL for threads past 65535 or a capacity past 2^30 (CONC_EXECUTOR_THREADS_MAX,
 *   CONC_EXECUTOR_CAPACITY_MAX), ENOMEM, or pthread_create's error; threads 0 means one per
 *   CPU; capacity 0 means unbounded, as Python's pool: a queue of
 *   CONC_EXECUTOR_CAPACITY_DEFAULT (1024) tasks with the spill behind it (CAVEATS).
 *   submit_batch args: args[i] is task i's argument; args == NULL passes the index i itself,
 *   as (void *)(uintptr_t)i (a parallel for). It blocks while a bounded queue is full (as
 *   submit does: never in ex's own tasks) and returns 0 once all n are queued, or EPIPE
 *   (CONC_EXECUTOR_BROKEN) or ENOMEM: then *submitted (may be NULL) says how many were
 *   queued, and fs[i] is NULL for the rest.
 *   conc_map_create: args is NULL (input i gets (void *)(uintptr_t)i) or an array of n task
 *   arguments (void *const *: conc_map never writes or frees it). It is read lazily: args[i]
 *   when input i is submitted (the first `window` at create, then one each time a result is
 *   taken, or at a later call if conc_map_next_until found the queue full), so it must stay
 *   valid until every input is submitted or conc_map_destroy returns, and an element changed
 *   before its input is submitted is read as changed.
 *   window: EINVAL if 0; above n it is n. A NULL fn is EINVAL here and in every submit.
 *   A NULL executor (or out pointer of create or map_create) is EINVAL from every call that
 *   returns an int (conc_executor_broken too); shutdown, shutdown_nowait, threads and
 *   queue_size abort naming themselves; destroy(NULL) does nothing, as free(NULL).
 *   conc_map_next: the results come in INPUT order (as Python's map); *status is task i's
 *   outcome, or EPIPE if input i could not be submitted because the executor shut down
 *   (CONC_EXECUTOR_BROKEN if it broke); conc_map_create returns either when not even the
 *   first input could be submitted;
 *   *result is conc_future_result of task i (so a failed input's error detail too).
 *   conc_map_next blocks while a bounded executor's queue is full, as submit does (it submits
 *   the next input to keep `window` in flight, as create does); conc_map_next_until never
 *   waits past its deadline, as Python's map(timeout=) never does: an input that finds the
 *   queue full is submitted by a later call, and ETIMEDOUT when the input whose result it is
 *   asked for found no room by then (nothing is consumed: call again).
 *
 * ORDERING CONTRACT
 *   - Everything the submitter wrote before submit is visible to the task; what the task
 *     wrote before returning is visible to whoever sees its outcome (future.h).
 *   - A task runs or is cancelled, never both, never neither (after shutdown(true), what was
 *     queued is cancelled; otherwise it runs).
 *
 * THREAD SAFETY
 *   Every call may overlap every other on the same executor, except destroy, which frees
 *   it: call it once no other call can still be inside (a submit blocked on a full queue
 *   is: shut down first, which makes such a submit return EPIPE, and let that thread
 *   return, as with pthread_mutex_destroy and its waiters). The executor holds its own
 *   reference to a future while the task runs. conc_executor_shutdown may be called from
 *   several threads at once, and from one of the executor's own tasks: there it refuses new
 *   work and cancels if asked, then returns without joining (a thread cannot join itself); a
 *   later shutdown or destroy from outside joins. A map is used by one thread at a time.
 *
 * CONFIGURATION
 *   CONC_EXECUTOR_SPIN   pauses one idle worker polls the queue before it blocks (default 2048);
 *                        none on a single CPU.
 *   CONC_EXECUTOR_POOL   futures an executor keeps for reuse, at most (default 1 << 20, i.e.
 *                        64 MiB); past it, futures are malloc'd and freed one by one. 0: none.
 *   CONC_EXECUTOR_STAGE_HOOK(tasks)   called after every refill of staging from the queue
 *                        with the number of tasks moved; tests count refills with it.
 *                        Default: nothing.
 *
 * CAVEATS
 *   - C++: a task must not throw. The worker calls it from C frames, so an exception that
 *     leaves it ends the program (std::terminate): catch inside and return an error code.
 *   - Tasks start in submission order, each as soon as a worker is free, as in Python's
 *     ThreadPoolExecutor: whenever Python's pool with as many workers finishes a workload
 *     (tasks that wait for each other through futures, promises, events, semaphores, locks,
 *     sleeps, and tasks that submit more tasks), so does this executor. Like Python's, it
 *     stops when every worker blocks on something only a task not yet started would provide
 *     (an event, a semaphore, or the future of such a task: no worker is free to start it);
 *     give such waits a deadline, or size the executor for them. There, as in Python,
 *     another thread may still go on: cancel the awaited task, or shut down with
 *     cancel_pending, and the waits end (ECANCELED). So no worker ever runs a task that
 *     Python's pool would not have started yet, not even when every worker waits: a task
 *     started early (on a waiting worker's own stack, or on one more thread) may take a lock
 *     or a permit an older task needs and wait for it, may run inside its waiter's critical
 *     section (a recursive lock held by the waiter's thread), and cannot be cancelled any
 *     more: each a deadlock, or worse, where Python's pool finishes.
 *   - Capacity 0 (create's default) is unbounded, as Python's pool: no submit ever waits for
 *     room. Past the queue's 1024 tasks, a submit appends to the spill, an unbounded list
 *     behind the queue ("The spill"), so a producer that outruns the workers holds every
 *     pending task in memory (a 64-byte future each), as Python's does, and whatever the
 *     workers wait for, a submit returns. A capacity is a bound, asked for to hold producers
 *     back: a submit from outside the executor (a task of another executor too) waits while
 *     the queue is full. So with a bound, if the workers all wait for what a thread does
 *     after its submit, that thread waits for good, as a Python producer blocked in
 *     queue.Queue(maxsize).put would: give such a producer try_submit, or no bound. A task's
 *     submit to its own executor never waits, bounded or not (a full queue sends it to the
 *     spill), as Python's never does: a workload whose tasks spawn far more than the queue
 *     holds (a tree) uses memory for all of them, as Python's does. While the spill holds
 *     tasks, submits from outside a bounded executor wait for it to empty (try_submit says
 *     EAGAIN), so that tasks still start in submission order.
 *   - A capacity bounds the queue, not staging: a refill moves up to 16 of the queue's oldest
 *     tasks into staging (see "Staging"), where any free worker takes them, and frees their
 *     places. So while every worker is busy, up to capacity + 15 submitted tasks can wait
 *     unstarted (conc_executor_queue_size counts them all), and no more (the workers' own
 *     submits aside: "The spill"): a submit that finds the queue full waits (try_submit gets
 *     EAGAIN) until the next refill, once staging is empty, frees places.
 *   - A task cancelled while queued (conc_future_cancel) keeps its place in the queue until
 *     a worker takes it and drops it unrun: until then it still counts toward
 *     queue_capacity, so with every worker busy a full queue stays full (try_submit EAGAIN,
 *     submit waits) after such a cancel. Python's pool has no bound, so it cannot say.
 *   - fork(): an executor's workers do not exist in the child. Use it only in the parent.
 *   - An initializer runs on its worker before that worker takes any task, while the other
 *     workers already run tasks: one that blocks holds its worker, not the executor. It must
 *     not wait for a task of its own executor (with one worker, nothing would run it).
 *     Worker names: Linux thread names are 15 bytes (the prefix is cut, see ERRORS).
 *   - Memory: an executor keeps the futures it made for reuse (64 bytes each), so it holds
 *     the most that were ever alive at once, up to CONC_EXECUTOR_POOL, until it is destroyed
 *     and its last future is released. A future released twice may already be someone
 *     else's (as with free): under ASan a released pooled future is poisoned until reused.
 *
 * DESIGN
 *   The executor's submission queue is the kit's own conc_queue (queue.h) of future pointers:
 *   lock-free, bounded, blocking and closable. With a capacity, submit blocks while it is
 *   full (outside the executor's own tasks: "The spill") and try_submit gets EAGAIN; an
 *   unbounded executor's submits past it go to the spill; shutdown's close hands
 *   EPIPE to every submitter (blocked ones too) while the workers drain, and a busy stream
 *   makes no syscall. Tasks start in FIFO order on the first free worker, Python's schedule
 *   (see "Staging"): between the queue and the workers sits
 *   one shared FIFO of up to 16 tasks, refilled with one batch pop when empty (the
 *   submitter's lines are touched once per batch), from whose front every worker takes ONE
 *   task at a time with one CAS. Staged tasks are older than queued ones, so the tasks taken
 *   are always the queue's first, and any free worker can take any staged task: none waits
 *   behind a running one, whatever that one does (waits, sleeps, blocks on a lock or in a
 *   syscall). Per-worker claims with steals (the previous design) let a worker start its own
 *   newer tasks while older ones sat behind a blocked worker: tasks that block on each other
 *   through anything but a future could then stop where Python's pool finishes. One idle
 *   worker at a time polls for CONC_EXECUTOR_SPIN pauses before it sleeps, so a steady
 *   stream of tiny tasks finds a worker awake; it watches one slot's stamp, never the
 *   queue's tail (the submitter's line). Idle workers sleep on the executor's own eventcount
 *   (not in the queue), so a refill reaches them. A worker that waits for a future blocks,
 *   as Python's does, and no task ever starts before Python's would (CAVEATS). A worker's
 *   submit to its own full queue goes to the spill, an unbounded FIFO behind the queue (see
 *   "The spill"): only workers take, so a worker that waited there for room could wait for
 *   good.
 *   tests/models/executor.pml checks the takes, the refills, FIFO order, idle sleep,
 *   cancelling and ending; tests/models/executor_spill.pml and executor_spill_wake.pml the
 *   spill.
 *   Futures come from a per-executor pool (conc__future_pool): carved from slabs, one cache
 *   line each, reused LIFO; a release pushes onto a lock-free stack, submitters take the
 *   whole stack at once under a try-lock (no ABA), and a submitter that finds the try-lock
 *   taken mallocs instead of waiting. The pool outlives the executor while its futures do.
 *   as-completed: each future gets a waker node that appends its entry to the set's FIFO
 *   and wakes one sleeper: O(1) per completion. The lazy map keeps a ring of `window` futures
 *   and submits input i + window when result i is taken (next_until: if the queue has room;
 *   else the next call submits it first).
 */
#ifndef CONC_EXECUTOR_H
#define CONC_EXECUTOR_H

#include "base.h"
#include "future.h"
#include "lock.h"
#include "queue.h"
#include <pthread.h>
#include <sys/prctl.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_EXECUTOR_SPIN
#define CONC_EXECUTOR_SPIN 2048
#endif
#ifndef CONC_EXECUTOR_POOL
#define CONC_EXECUTOR_POOL (1u << 20)
#endif
#ifndef CONC_EXECUTOR_STAGE_HOOK
#define CONC_EXECUTOR_STAGE_HOOK(tasks) ((void)0)
#endif

/* -------------------------------------------------------------------------------------------
 * The future pool: an executor's futures are recycled, not malloc'd and freed per task
 *
 * Futures are carved from slabs, one cache line each (a malloc'd future shares its lines
 * with its neighbours, which another thread is busy with: every submit then stalls on a
 * worker's line). A released future goes onto `returned`, a lock-free LIFO that any thread
 * pushes onto with one CAS [executor.R4]. Submitters take from `local`, a plain list owned by
 * whoever holds `busy`, a try-lock; when `local` is empty, the holder takes the whole of
 * `returned` with one swap [executor.A4]. Only the holder pops, and only by taking
 * everything, so there is no ABA.
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
 *
 *   closer (conc_executor_destroy)               a future's last release (any thread)
 *   ----------------------------------------    -------------------------------------------
 *   [executor.A5] h = swap(returned, CLOSED)     h = load(returned)
 *   out = carved - (in local, in h, uncarved)    h has CLOSED:
 *   [executor.R5] old = fetch_add(live, out)       [executor.R5] fetch_sub(live, 1) == 1:
 *   old + out == 0: free slabs and pool              free slabs and pool (the last one out)
 *                                                 else [executor.R4] CAS returned: h -> f
 *                                                   (fails once CLOSED is in: see above)
 *
 *   The swap and the CAS act on one word, so every future is counted exactly once: pushed
 *   before the swap (in h, counted in) or released after it (subtracted from live). live
 *   starts at 0 and is modular: the subtractions may come first (it wraps below zero), and
 *   only the closer's add, or the last subtraction after it, brings it to exactly zero; acq_rel
 *   on both makes whoever frees see every earlier use of the pool.
 *   tests/models/executor_pool.pml checks that the pool is freed exactly once, after every
 *   use, whatever the order.
 * ------------------------------------------------------------------------------------------- */
#define CONC__EXECUTOR_FUTURE_STRIDE                                                               \
    ((sizeof(conc_future_t) + CONC_CACHELINE - 1) & ~(size_t)(CONC_CACHELINE - 1))
#define CONC__EXECUTOR_POOL_CLOSED ((uintptr_t)1) /* in `returned`: the executor is gone */
#define CONC__EXECUTOR_POOL_SLAB_MIN 16u   /* futures in the first slab; each next one doubles */
#define CONC__EXECUTOR_POOL_SLAB_MAX 4096u /* up to this many (256 KiB) */

typedef struct conc__executor_slab {
    struct conc__executor_slab *next; /* the slab's first line; its futures follow */
} conc__executor_slab;

typedef struct conc__executor_pool {
    conc__future_pool base; /* future.h's view: the recycle function (first: same address) */
    /* The taking side: submitters, one at a time. */
    uint32_t busy;                    /* try-lock: 1 while a submitter owns what follows */
    conc_future_t *local;             /* released futures, taken from `returned` */
    unsigned char *carve, *carve_end; /* the unused rest of the newest slab */
    size_t carved;                    /* futures in the slabs: at most CONC_EXECUTOR_POOL */
    size_t slab_n;                    /* futures in the next slab */
    conc__executor_slab *slabs;       /* every slab, for the final free */
    /* The releasing side, written by every last release: its own line. */
    __attribute__((aligned(CONC_CACHELINE))) uintptr_t returned; /* LIFO by free links; CLOSED */
    size_t live; /* once closed: futures still out (modular, see above) */
} conc__executor_pool;

#if defined(CONC_ASAN)
/* A future in a free list is poisoned up to its link, so a use after the last release is
 * still reported (the pool never frees it), as it would be with malloc. */
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define CONC__EXECUTOR_POISON(f) __asan_poison_memory_region((f), conc__future_link_offset())
#define CONC__EXECUTOR_UNPOISON(f) __asan_unpoison_memory_region((f), conc__future_link_offset())
#else
#define CONC__EXECUTOR_POISON(f) ((void)0)
#define CONC__EXECUTOR_UNPOISON(f) ((void)0)
#endif

CONC_NOINLINE void conc__executor_pool_recycle(conc_future_t *f);

CONC_COLD conc__executor_pool *conc__executor_pool_create_slow(void) {
    conc__executor_pool *p =
        (conc__executor_pool *)aligned_alloc(CONC_CACHELINE, sizeof(conc__executor_pool));
    if (p) {
        memset(p, 0, sizeof *p);
        p->base.recycle = conc__executor_pool_recycle;
        p->slab_n = CONC__EXECUTOR_POOL_SLAB_MIN;
    }
    return p;
}

CONC_COLD void conc__executor_pool_destroy_slow(conc__executor_pool *p) {
    for (conc__executor_slab *s = p->slabs, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    free(p);
}

/* `local` is empty: take what was released, else carve, else NULL (the cap is reached or no
 * memory: the caller mallocs). Under busy. */
CONC_NOINLINE conc_future_t *conc__executor_pool_refill_slow(conc__executor_pool *p) {
    if (conc_load(&p->returned, CONC_RELAXED) != 0) { /* relaxed: a peek; the swap acquires */
        /* [executor.A4] acquire: pairs with [executor.R4]; every releaser's last use of these
         * futures happens before our reuse. Never CLOSED here: the pool closes only once
         * submits are over. */
        conc_future_t *f = (conc_future_t *)conc_swap(&p->returned, (uintptr_t)0, CONC_ACQUIRE);
        p->local = *conc__future_free_link(f);
        return f;
    }
    if (p->carve == p->carve_end) {
        size_t n = p->slab_n;
        if (n > (size_t)CONC_EXECUTOR_POOL - p->carved)
            n = (size_t)CONC_EXECUTOR_POOL - p->carved;
        if (n == 0)
            return NULL;
        int saved_errno = conc_errno_save(); /* no conc call sets errno: a failure here does */
        conc__executor_slab *s = (conc__executor_slab *)aligned_alloc(
            CONC_CACHELINE, CONC_CACHELINE + n * CONC__EXECUTOR_FUTURE_STRIDE);
        conc_errno_restore(saved_errno);
        if (!s)
            return NULL;
        s->next = p->slabs;
        p->slabs = s;
        p->carve = (unsigned char *)s + CONC_CACHELINE;
        p->carve_end = p->carve + n * CONC__EXECUTOR_FUTURE_STRIDE;
        p->carved += n;
        if (p->slab_n < CONC__EXECUTOR_POOL_SLAB_MAX)
            p->slab_n *= 2;
    }
    conc_future_t *f = (conc_future_t *)(void *)p->carve;
    p->carve += CONC__EXECUTOR_FUTURE_STRIDE;
    conc__future_set_pool(f, &p->base, false);
    return f;
}

/* Up to n futures from the pool into fs (fewer when the cap is reached or another submitter
 * holds it): how many. */
CONC_INLINE size_t conc__executor_pool_take(conc__executor_pool *p, conc_future_t **fs, size_t n) {
    if (CONC_EXECUTOR_POOL == 0)
        return 0;
    /* acquire: pairs with the release below, so the last holder's list edits are ours. */
    if (conc_swap(&p->busy, 1u, CONC_ACQUIRE) != 0)
        return 0;
    size_t k = 0;
    for (; k < n; k++) {
        conc_future_t *f = p->local;
        if (CONC_LIKELY(f))
            p->local = *conc__future_free_link(f);
        else if (!(f = conc__executor_pool_refill_slow(p)))
            break;
        fs[k] = f;
    }
    conc_store(&p->busy, 0u, CONC_RELEASE);
    return k;
}

/* Closes the pool (conc_executor_destroy, after the last submit): see above. */
CONC_COLD void conc__executor_pool_close_slow(conc__executor_pool *p) {
    /* Acquire: pairs with [executor.R4], like [executor.A4]: those futures are ours to count. */
    uintptr_t h = conc_swap(&p->returned, CONC__EXECUTOR_POOL_CLOSED, CONC_ACQUIRE);
    size_t in = 0;
    for (conc_future_t *f = p->local; f; f = *conc__future_free_link(f))
        in++;
    for (conc_future_t *f = (conc_future_t *)h; f; f = *conc__future_free_link(f))
        in++;
    in += (size_t)(p->carve_end - p->carve) / CONC__EXECUTOR_FUTURE_STRIDE; /* never handed out */
    size_t out = p->carved - in;
    /* acq_rel: joins the chain of the late releases' subtractions, so whoever frees has
     * seen every earlier use of the pool. */
    if (conc_fetch_add(&p->live, out, CONC_ACQ_REL) + out == 0)
        conc__executor_pool_destroy_slow(p);
}

/* The last reference is gone: back to the pool (or to free for a malloc'd future). */
CONC_NOINLINE void conc__executor_pool_recycle(conc_future_t *f) {
    conc__executor_pool *p = (conc__executor_pool *)(void *)conc__future_pool_of(f);
    conc__future_retire(f);
    CONC__EXECUTOR_POISON(f);
    uintptr_t h = conc_load(&p->returned, CONC_RELAXED); /* relaxed: the CAS decides */
    do {
        if (CONC_UNLIKELY(h & CONC__EXECUTOR_POOL_CLOSED)) {
            /* acq_rel: see conc__executor_pool_close_slow. */
            if (conc_fetch_sub(&p->live, (size_t)1, CONC_ACQ_REL) == 1)
                conc__executor_pool_destroy_slow(p);
            return;
        }
        *conc__future_free_link(f) = (conc_future_t *)h;
        /* [executor.R4] release: pairs with [executor.A4]; our last use of f happens before
         * its reuse. */
    } while (!conc_cas_weak(&p->returned, &h, (uintptr_t)f, CONC_RELEASE, CONC_RELAXED));
}

/* -------------------------------------------------------------------------------------------
 * The executor
 * ------------------------------------------------------------------------------------------- */
#define CONC__EXECUTOR_STAGE_MAX 16  /* tasks one refill moves from the queue to staging */
#define CONC__EXECUTOR_POLL_EVERY 8  /* a poller looks for work every 8 pauses */
#define CONC__EXECUTOR_IDLE_YIELDS 4 /* an idle worker yields this often before it sleeps */
/* References a submitted future starts with when the caller takes one: the executor's (dropped
 * when the task ends or is cancelled) and the caller's. Fire and forget: the executor's only. */
#define CONC__EXECUTOR_SUBMIT_REFS 2u
/* submit_batch makes and pushes futures in chunks of this many, on its stack (512 bytes):
 * few enough that a failed chunk frees little, many enough that a push is one batch CAS. */
#define CONC__EXECUTOR_BATCH_CHUNK 64

/* The staging word (see "Staging"): bits 0-7 TAIL (tasks the last refill staged), bits 8-15
 * HEAD (the first not yet taken), bit 16 REFILLING (a worker is moving tasks in: nobody takes
 * from the queue meanwhile), bit 17 ENDED (the queue was found closed and drained: no task
 * will ever be staged again), bits 32-63 GEN (refills so far: a take whose CAS carries a
 * word read before a refill fails, so it never takes a slot the refill rewrote). */
#define CONC__EXECUTOR_STAGE_TAIL_MASK ((uint64_t)0xff)
#define CONC__EXECUTOR_STAGE_HEAD_SHIFT 8
#define CONC__EXECUTOR_STAGE_HEAD_ONE ((uint64_t)1 << CONC__EXECUTOR_STAGE_HEAD_SHIFT)
#define CONC__EXECUTOR_STAGE_HEAD_MASK ((uint64_t)0xff << CONC__EXECUTOR_STAGE_HEAD_SHIFT)
#define CONC__EXECUTOR_STAGE_REFILLING ((uint64_t)1 << 16)
#define CONC__EXECUTOR_STAGE_ENDED ((uint64_t)1 << 17)
#define CONC__EXECUTOR_STAGE_GEN_SHIFT 32
#define CONC__EXECUTOR_STAGE_GEN_ONE ((uint64_t)1 << CONC__EXECUTOR_STAGE_GEN_SHIFT)
#define CONC__EXECUTOR_STAGE_GEN_MASK (~(CONC__EXECUTOR_STAGE_GEN_ONE - 1))

/* The idle word, an eventcount idle workers sleep on: bits 0-15 SLEEPERS (registered),
 * bit 16 WAKING (a wake is on its way: later wakers need not make a syscall), bits 17-31 a
 * sequence every wake steps (a sleeper that registered before it never sleeps through it). */
#define CONC__EXECUTOR_IDLE_SLEEPER_ONE 1u
#define CONC__EXECUTOR_IDLE_SLEEPERS_MASK 0xffffu
#define CONC__EXECUTOR_IDLE_WAKING 0x10000u
#define CONC__EXECUTOR_IDLE_SEQ_SHIFT 17
#define CONC__EXECUTOR_IDLE_SEQ_ONE (1u << CONC__EXECUTOR_IDLE_SEQ_SHIFT)
/* create's limits (ERRORS). Threads: the idle word counts every sleeper in 16 bits. */
#define CONC_EXECUTOR_THREADS_MAX 65535u
#define CONC_EXECUTOR_CAPACITY_MAX ((size_t)1 << 30) /* 8 GiB of queue: any more is a mistake */
/* The ring of an unbounded executor (capacity 0): its lock-free fast path; the spill takes
 * what it cannot hold. */
#define CONC_EXECUTOR_CAPACITY_DEFAULT ((size_t)1024)

CONC_STATIC_ASSERT(CONC__EXECUTOR_STAGE_MAX <= CONC__EXECUTOR_STAGE_TAIL_MASK,
                   "staging's HEAD and TAIL fit 8 bits");
CONC_STATIC_ASSERT((CONC__EXECUTOR_STAGE_HEAD_MASK & CONC__EXECUTOR_STAGE_REFILLING) == 0 &&
                       CONC__EXECUTOR_STAGE_ENDED < CONC__EXECUTOR_STAGE_GEN_ONE,
                   "the staging word's fields are disjoint");
CONC_STATIC_ASSERT(CONC__EXECUTOR_IDLE_SLEEPERS_MASK < CONC__EXECUTOR_IDLE_WAKING &&
                       CONC__EXECUTOR_IDLE_WAKING < CONC__EXECUTOR_IDLE_SEQ_ONE,
                   "the idle word's fields are disjoint");
CONC_STATIC_ASSERT(CONC_EXECUTOR_THREADS_MAX <= CONC__EXECUTOR_IDLE_SLEEPERS_MASK,
                   "every worker can sleep at once");

typedef struct conc_executor conc_executor_t;

#define CONC__EXECUTOR_NAME_MAX 15 /* Linux's thread name limit (16 bytes with the NUL) */
/* A failing initializer's code for submits and for the tasks it stops (BrokenThreadPool). */
#define CONC_EXECUTOR_BROKEN ENOTRECOVERABLE
/* The `cancelling` word: why tasks taken but not started are dropped instead of run. */
#define CONC__EXECUTOR_DROP_CANCEL 1u /* shutdown(cancel_pending): cancelled */
#define CONC__EXECUTOR_DROP_BROKEN 2u /* an initializer failed: failed with CONC_EXECUTOR_BROKEN */

/* One worker, on lines of its own. */
typedef struct conc__executor_worker {
    conc_executor_t *ex;
    unsigned index;
    pthread_t thread;
} __attribute__((aligned(CONC_CACHELINE))) conc__executor_worker;

/* The calling thread's worker record, if it is a worker (see conc__executor_self). One variable
 * for the whole program (weak: every translation unit that includes this header defines it,
 * the linker keeps one), so a task compiled in another file than its executor's creator sees
 * it too. */
#if defined(__cplusplus)
extern thread_local conc__executor_worker *
    conc__executor_worker_self CONC__ABI(conc__executor_worker_self);
CONC__ONE_PER_PROGRAM thread_local conc__executor_worker *conc__executor_worker_self;
#else
extern _Thread_local conc__executor_worker *
    conc__executor_worker_self CONC__ABI(conc__executor_worker_self);
CONC__ONE_PER_PROGRAM _Thread_local conc__executor_worker *conc__executor_worker_self;
#endif

struct conc_executor {
    /* Read by every submit and every worker, written only by create/shutdown: one line. */
    conc_queue_t *q;           /* the bounded submission queue: conc_future_t pointers */
    conc__executor_pool *pool; /* where its futures come from (outlives it if they do) */
    uint32_t cancelling;       /* CONC__EXECUTOR_DROP_*: taken tasks are cancelled or failed */
    uint32_t closed;           /* set by shutdown after closing the queue: workers need never
                              * read the queue's tail (the submitter's line) to learn it */
    /* Tasks in the spill (see "The spill"), written under spill_lock (outside submitters wait
     * for 0). Written only while the queue overflows: the line stays read-mostly. */
    uint32_t spilled;
    unsigned nthreads; /* workers started so far: written by create, read by shutdown */
    bool unbounded;    /* created with capacity 0: no submit waits for room (written by create) */
    conc__executor_worker *workers; /* written by create before any worker starts */
    conc_lock_t shutdown_lock;
    bool joined; /* under shutdown_lock */
    /* Written each time a worker starts or stops polling: away from the lines above. */
    __attribute__((aligned(CONC_CACHELINE))) uint32_t polling; /* 1 while a worker polls (a hint) */
    /* Read by every submit, written when a worker goes to sleep or wakes: its own line. */
    __attribute__((aligned(CONC_CACHELINE))) uint32_t idle; /* the idle eventcount, see above */
    /* Staging (see "Staging"): the workers' lines, never the submitters'. */
    __attribute__((aligned(CONC_CACHELINE))) uint64_t stage; /* the staging word, see above */
    conc_future_t *staged[CONC__EXECUTOR_STAGE_MAX];         /* the last refill's tasks (atomic) */
    /* The spill (see "The spill"): touched only while the queue overflows. */
    __attribute__((aligned(CONC_CACHELINE))) conc_lock_t spill_lock;
    uint32_t spill_waiters;       /* outside submitters waiting for an empty spill (atomic) */
    uint32_t spill_epoch;         /* their futex word: stepped on an empty spill, the close */
    conc_future_t **spill;        /* under spill_lock: a ring of spill_cap (a power of two) */
    size_t spill_cap, spill_head; /* the oldest is spill[spill_head]; `spilled` of them */
    /* create_with's options: written by create before any worker starts, then read-only. */
    __attribute__((aligned(CONC_CACHELINE))) int (*init_fn)(void *arg); /* nonzero: broken */
    void *init_arg;
    char name_prefix[CONC__EXECUTOR_NAME_MAX + 1]; /* "" or the workers' name prefix */
    size_t name_prefix_len; /* what fits beside "_<largest index>" in 15 bytes */
    int broken; /* the first failing initializer's result; stored before DROP_BROKEN is set */
};

/* Runs a future's task if it is still pending (PENDING -> RUNNING is the gate that cancel
 * races with: one CAS decides), then drops the executor's reference. */
CONC_INLINE void conc__executor_run(conc_future_t *f) {
    /* The first guess is the word as submit left it with a future for the caller: the CAS
     * then fetches the line once, for writing, instead of a load and then a CAS. */
    uint32_t v = conc__future_fresh_word(CONC__EXECUTOR_SUBMIT_REFS);
    /* Relaxed (the gate's): the task's inputs were ordered by the queue (push happens-before
     * pop) and, for a staged task, by the staging word ([executor.F2] before [executor.T1]). */
    if (!conc__future_gate(f, &v)) {
        conc_future_release(f); /* cancelled (or completed by hand): never run */
        return;
    }
    CONC_CHAOS_POINT();
    void *result = NULL;
    int status = conc__future_call(f, &result);
    conc__future_task_done(f, v, status, result);
}

/* A task that will not run: failed with CONC_EXECUTOR_BROKEN once an initializer failed,
 * else cancelled (shutdown(cancel_pending)); the executor's reference goes either way. Only
 * a pending task: the gate, as for a run (the user may have cancelled or completed it
 * first), then the outcome a task would publish. */
CONC_COLD void conc__executor_drop_slow(conc_future_t *f, uint32_t drop) {
    if (drop & CONC__EXECUTOR_DROP_BROKEN) {
        uint32_t v = conc__future_fresh_word(CONC__EXECUTOR_SUBMIT_REFS); /* a guess */
        if (conc__future_gate(f, &v)) {
            conc__future_task_done(f, v, CONC_EXECUTOR_BROKEN, NULL); /* drops our reference */
            return;
        }
    } else {
        (void)conc_future_cancel(f);
    }
    conc_future_release(f);
}

/* A task this worker took: run it, or drop it once shutdown(cancel_pending) has begun or an
 * initializer failed (tasks taken but not started are still "queued" for both). Acquire:
 * pairs with the release in conc__executor_close. */
CONC_INLINE void conc__executor_start(conc_executor_t *ex, conc_future_t *f) {
    uint32_t drop = conc_load(&ex->cancelling, CONC_ACQUIRE);
    if (CONC_UNLIKELY(drop != 0))
        conc__executor_drop_slow(f, drop);
    else
        conc__executor_run(f);
}

/* -------------------------------------------------------------------------------------------
 * Staging: every task starts in submission order, on the first free worker
 *
 * Python's pool has one queue: a free worker takes its front and starts it, so tasks start
 * in FIFO order, each as soon as a worker is free, and a blocked worker never holds a task
 * that has not started. conc keeps exactly that schedule, with fewer touches of the
 * submitter's lines than one pop per task: between the queue and the workers sits STAGING,
 * one shared FIFO of at most CONC__EXECUTOR_STAGE_MAX tasks.
 *  - A worker takes ONE task at a time, from staging's front, with one CAS on the staging
 *    word (HEAD + 1) [executor.T1]: each task is taken exactly once, in staging order.
 *  - A worker that finds staging empty (and nobody refilling, and a task ready in the queue)
 *    REFILLS it: it sets REFILLING with a CAS [executor.F1] (only one refill at a time, and
 *    nobody pops the queue meanwhile), moves up to 16 tasks with one conc_queue_try_pop_batch
 *    (one CAS on the queue's head: the submitter's lines are touched once per batch), keeps
 *    the first for itself (staging's front: the oldest task) and publishes the rest
 *    [executor.F2] (HEAD 1, TAIL n, GEN + 1, REFILLING cleared).
 *  - Staged tasks are older than every queued one (a refill happens only when staging is
 *    empty, and takes the queue's front), so takes follow the queue's order: the tasks taken
 *    so far are always the queue's first ones, every one by a worker that was free and
 *    starts it at once. Anything staged can be taken by any free worker: no task waits
 *    behind a running one, whatever that one does (waits, sleeps, blocks in a syscall).
 *  - A refill is library code of bounded length (a batch pop and up to 16 stores): the tasks
 *    it holds in hand are not "held by a blocked worker". A worker that finds REFILLING
 *    polls or sleeps; the refiller's publish wakes it if work is left.
 *  - Takes read the slot, then CAS the word they read: a refill steps GEN, so a take whose
 *    word predates a refill fails and never takes a slot the refill rewrote (GEN is 32 bits:
 *    four billion refills would have to pass between one take's load and its CAS).
 *  - ENDED: a refill that finds the queue closed and drained publishes ENDED (staging
 *    empty, and nothing can be staged again: the queue accepts nothing once closed). Every
 *    worker that sees it exits; the refiller that set it wakes all sleepers first.
 *
 *   refiller                                     taker
 *   ----------------------------------------    -------------------------------------------
 *   s = load stage: HEAD == TAIL, no REFILLING    [executor.T0] s = load stage (acquire)
 *   [executor.F1] CAS stage: s -> GEN|REFILLING   s has HEAD < TAIL: f = staged[HEAD] (relaxed)
 *     (acquire: earlier takes' slot reads        [executor.T1] CAS stage: s -> s + HEAD_ONE
 *     happen before our writes)                    (seq_cst) -> fails: look again
 *   pop_batch(queue, got, 16) -> n               f is ours: start it
 *   staged[1..n) = got[1..n) (relaxed)           work left (staged, or queued and staging
 *   [executor.F2] store stage: GEN+1, HEAD 1,      empty): wake one sleeper (the chain)
 *     TAIL n (seq_cst); n == 0: GEN+1 (or ENDED)
 *   cancelling (seq_cst) [executor.C1]: drop got[0], then the staged (oldest first)
 *   else: work left: wake one sleeper; start got[0]
 *
 * shutdown(cancel_pending) drops what is staged and what is queued, oldest first, as Python
 * cancels its queue (a cancelled task's callback may wait for an older task): it sets
 * `cancelling` [executor.C1] (seq_cst), closes the queue, takes and drops every staged task
 * with the takers' CAS, then pops and drops every queued one. A refill racing it publishes,
 * then reads `cancelling` (seq_cst both sides, a Dekker pair): either the closer's takes see
 * the published tasks, or the refiller sees `cancelling` and drops them itself, the one it
 * kept for itself first. Tasks in flight in a worker's hand are dropped by
 * conc__executor_start (it reads `cancelling` too).
 * tests/models/executor.pml checks that each task is taken once, that takes follow
 * submission order, that no worker sleeps for good while a task is takeable, that cancel
 * and shutdown(cancel_pending) win or lose cleanly, and the ending.
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE size_t conc__executor_stage_left(uint64_t s) {
    return (size_t)(s & CONC__EXECUTOR_STAGE_TAIL_MASK) -
           (size_t)((s & CONC__EXECUTOR_STAGE_HEAD_MASK) >> CONC__EXECUTOR_STAGE_HEAD_SHIFT);
}

/* Takes staging's front task, or NULL when none is staged (empty, or being refilled); *seen
 * is the word after our take, or the word that had none. */
CONC_INLINE conc_future_t *conc__executor_stage_take(conc_executor_t *ex, uint64_t *seen) {
    /* [executor.T0] acquire: pairs with the refill's publish [executor.F2] (and the takes
     * after it, in its release sequence), so the slot read below is that refill's. */
    uint64_t s = conc_load(&ex->stage, CONC_ACQUIRE);
    while (conc__executor_stage_left(s) > 0) {
        size_t head =
            (size_t)((s & CONC__EXECUTOR_STAGE_HEAD_MASK) >> CONC__EXECUTOR_STAGE_HEAD_SHIFT);
        conc_future_t *f = conc_load(&ex->staged[head], CONC_RELAXED);
        CONC_CHAOS_POINT();
        /* [executor.T1] seq_cst: acquire for the slot (the word, GEN included, is unchanged
         * since the read, so the slot is that refill's); release so that our slot read
         * happens before the next refill's writes ([executor.F1] acquires); and the first
         * half of a Dekker pair with a sleeper's [executor.E1] (the caller's chain wake). */
        if (conc_cas(&ex->stage, &s, s + CONC__EXECUTOR_STAGE_HEAD_ONE, CONC_SEQ_CST,
                     CONC_ACQUIRE)) {
            *seen = s + CONC__EXECUTOR_STAGE_HEAD_ONE;
            return f;
        }
    }
    *seen = s;
    return NULL;
}

/* Drops every staged task (shutdown(cancel_pending), or a refill that found it began). */
CONC_COLD void conc__executor_drop_staged_slow(conc_executor_t *ex) {
    uint64_t s;
    conc_future_t *f;
    while ((f = conc__executor_stage_take(ex, &s)) != NULL)
        conc__executor_drop_slow(f, conc_load(&ex->cancelling, CONC_RELAXED));
}

/* Whether shutdown has closed the queue. Acquire: pairs with the release in shutdown, so the
 * close itself is visible to the try_pop that follows. */
CONC_INLINE bool conc__executor_closed(conc_executor_t *ex) {
    return conc_load(&ex->closed, CONC_ACQUIRE) != 0;
}

/* Whether a worker seeing staging word s has something to do: a staged task, the end, or
 * (nobody refilling) a task in the queue or the spill, or the close to find. `exact` (a
 * sleeper's re-check) counts a task still being pushed (the queue's size counts claimed
 * slots), else only a ready one (one slot's stamp: never the tail, the submitter's line).
 * `spilled`: seq_cst, the re-check's half of the Dekker pair with [executor.U0]. */
CONC_INLINE bool conc__executor_has_work(conc_executor_t *ex, uint64_t s, bool exact) {
    if (conc__executor_stage_left(s) > 0 || (s & CONC__EXECUTOR_STAGE_ENDED))
        return true;
    if (s & CONC__EXECUTOR_STAGE_REFILLING)
        return false; /* the refiller's publish wakes a sleeper if it leaves work */
    return (exact ? conc_queue_size(ex->q) > 0 : conc__queue_item_ready(ex->q, 1)) ||
           conc__executor_closed(ex) || conc_load(&ex->spilled, CONC_SEQ_CST) != 0;
}

/* -------------------------------------------------------------------------------------------
 * The spill: a task's submit to its own executor never waits
 *
 * Python's queue has no bound, so a task that submits more tasks never waits. Here the queue
 * has one, and a worker waiting in submit for room that only workers make can stop the
 * executor for good: every worker waiting so, or one waiting while another waits for what
 * the first does after its submit (a promise it completes, an event it sets). So a submit
 * from one of the executor's own workers that finds the queue full appends the task to the
 * SPILL, an unbounded FIFO under spill_lock, and returns. The bound stays for submitters
 * outside (the producers it is there to hold back), if there is one: an unbounded executor
 * (capacity 0) sends anyone's submit past a full queue there, with the same steps (nothing
 * below depends on who appends). The spill is the queue's continuation:
 * its tasks are newer than every queued one, so Python's single FIFO holds across the two:
 *  - while the spill holds tasks (`spilled` > 0), nothing is pushed past it: a worker's
 *    submit appends, a submit from outside waits until the spill is empty and then pushes as
 *    usual (it sleeps on spill_epoch; the refill that empties the spill wakes it), and
 *    try_submit says EAGAIN, as for a full queue. A submit reads `spilled` first (acquire,
 *    pairing with [executor.U1]): one that begins after a spilled submit returned sees the
 *    task in the spill, or sees it staged (the refill that empties the spill stages it
 *    first), and so its own task starts later;
 *  - a refill takes from the spill only when the queue holds no task: queued tasks first;
 *  - an append to an empty spill tries the queue first, under the lock. So the end needs no
 *    flag of its own: a refill that finds the queue closed and drained looks at the spill
 *    under its lock, and publishes ENDED only if it is empty, and an append after that look
 *    finds it empty, tries the closed queue and gets EPIPE. No task appended is left behind
 *    by the workers' exit;
 *  - shutdown(cancel_pending) drops what the spill holds, with what is queued and staged; a
 *    plain shutdown leaves it to the workers, as it leaves the queue. A worker's submit after
 *    shutdown began is EPIPE, as anyone's is.
 *
 *   worker's submit (queue full)                 refill (staging empty, queue has none ready)
 *   ----------------------------------------    -------------------------------------------
 *   lock spill_lock                              lock spill_lock
 *   closed: EPIPE                                queue holds a task (pushed since the pop):
 *   spilled == 0: try_push; EPIPE or done          k = 0 (it may be older: it goes first)
 *     unless the queue was full                  else k = up to 16 from the spill's front
 *   append; [executor.U0] store spilled + 1      [executor.U1] store spilled -= k (seq_cst)
 *     (seq_cst)                                  unlock; spilled now 0 and waiters: wake them
 *   unlock; wake a worker [executor.E2]          k > 0: stage them as a queue refill does;
 *                                                  k == 0 and the queue ended: ENDED
 *
 *   A sleeper's re-check reads `spilled` (seq_cst) after its registration [executor.E1]: with
 *   [executor.U0] and the wake that follows it, a Dekker pair like a push's (see "Idle
 *   workers"). An outside submitter registers in spill_waiters (seq_cst), reads spill_epoch,
 *   then `spilled` and `closed` again, and sleeps on spill_epoch: the refill's [executor.U1],
 *   and the closer's store of `closed`, each then a load of spill_waiters, are the other
 *   halves; a waker that sees a waiter steps spill_epoch before its futex_wake, so a waiter
 *   whose look came before the step is refused the sleep (or woken), and one whose epoch
 *   read saw the step sees the empty spill or the close in its look. Not on `spilled`: the
 *   close does not change it, and its wake, coming between a waiter's look and its sleep,
 *   was lost (the waiter slept until the spill emptied, for good if the workers waited for
 *   what it would do after its submit).
 * tests/models/executor_spill.pml checks that every task appended runs or is cancelled
 * exactly once and that starts keep the one FIFO, against the end and a shutdown with or
 * without cancel_pending; executor_spill_wake.pml that no idle worker or outside submitter
 * sleeps for good (the idle re-check against an append, the epoch against the close).
 * ------------------------------------------------------------------------------------------- */
#define CONC__EXECUTOR_SPILL_MIN 64u /* the spill ring's first size; it doubles when full */

/* Appends f to the spill, growing the ring: 0, or ENOMEM (nothing appended). Under spill_lock.
 * `spilled` is a futex word: past UINT32_MAX - 1 tasks (256 GiB of futures) it is ENOMEM too. */
CONC_COLD int conc__executor_spill_append_slow(conc_executor_t *ex, conc_future_t *f) {
    uint32_t n = conc_load(&ex->spilled, CONC_RELAXED); /* ours: under spill_lock */
    if (n == UINT32_MAX - 1)
        return ENOMEM;
    if (n == ex->spill_cap) {
        size_t cap = ex->spill_cap ? ex->spill_cap * 2 : CONC__EXECUTOR_SPILL_MIN;
        conc_future_t **ring = (conc_future_t **)conc_malloc_keep_errno(cap * sizeof *ring);
        if (!ring)
            return ENOMEM;
        for (size_t i = 0; i < n; i++) /* oldest first, from 0 */
            ring[i] = ex->spill[(ex->spill_head + i) & (ex->spill_cap - 1)];
        free(ex->spill);
        ex->spill = ring;
        ex->spill_cap = cap;
        ex->spill_head = 0;
    }
    ex->spill[(ex->spill_head + n) & (ex->spill_cap - 1)] = f;
    /* [executor.U0] seq_cst: the first half of the Dekker pair with a sleeper's re-check (the
     * caller wakes after unlocking); the task itself is published by the lock. */
    conc_store(&ex->spilled, n + 1, CONC_SEQ_CST);
    return 0;
}

/* A submit that never waits for room (a worker's to its own executor, anyone's to an unbounded
 * one), once the queue was full or the spill held tasks: into the queue if it has room and
 * the spill is empty, else into the spill. Never waits (the lock guards a few stores). 0,
 * EPIPE (shutdown has begun), ENOMEM. */
CONC_NOINLINE int conc__executor_spill_slow(conc_executor_t *ex, conc_future_t **f) {
    conc_lock_acquire(&ex->spill_lock);
    int r;
    if (conc__executor_closed(ex))
        r = EPIPE; /* shutdown began: refused, as a push to the closed queue is */
    else if (conc_load(&ex->spilled, CONC_RELAXED) != 0 ||
             (r = conc_queue_try_push(ex->q, f)) == EAGAIN)
        r = conc__executor_spill_append_slow(ex, *f);
    conc_lock_release(&ex->spill_lock);
    return r;
}

/* The spill is empty now, or the executor closed: wake the outside submitters waiting for
 * that (see above). seq_cst: after the store that emptied it, or the close; the other half is
 * their registration. The step of spill_epoch refuses the sleep of a waiter that looked
 * before it (seq_cst: a waiter whose epoch read sees it sees our store in its look). */
CONC_INLINE void conc__executor_wake_unspilled(conc_executor_t *ex) {
    if (conc_load(&ex->spill_waiters, CONC_SEQ_CST) != 0) {
        conc_fetch_add(&ex->spill_epoch, 1u, CONC_SEQ_CST);
        conc_futex_wake(&ex->spill_epoch, INT_MAX, 0);
    }
}

/* A refill that found the queue with no task ready (r: EAGAIN) or closed and drained (EPIPE):
 * up to CONC__EXECUTOR_STAGE_MAX of the spill's oldest tasks into got; 0 with *n of them, else
 * r (EPIPE only once the spill is empty: it stays so, see above). Not while the queue
 * holds a task (pushed since the refill's pop, or still being pushed): it may be older than
 * the spill's (one thread's push, then its append once the queue was full again), and the
 * refill's next look takes it first. Under the lock, that look sees every push that came
 * before an append we take (the append came after it in its thread, the lock orders us). */
CONC_NOINLINE int conc__executor_unspill_slow(conc_executor_t *ex, conc_future_t **got, size_t *n,
                                              int r) {
    conc_lock_acquire(&ex->spill_lock);
    uint32_t left = conc_load(&ex->spilled, CONC_RELAXED); /* ours: under spill_lock */
    size_t k = 0;
    if (r == EAGAIN && conc_queue_size(ex->q) > 0)
        left = 0; /* the queue first: its tasks may be older (above) */
    for (; k < CONC__EXECUTOR_STAGE_MAX && left > 0; k++, left--) {
        got[k] = ex->spill[ex->spill_head];
        ex->spill_head = (ex->spill_head + 1) & (ex->spill_cap - 1);
    }
    if (k > 0)
        conc_store(&ex->spilled, left, CONC_SEQ_CST); /* [executor.U1]: see above */
    conc_lock_release(&ex->spill_lock);
    if (k > 0 && left == 0)
        conc__executor_wake_unspilled(ex);
    *n = k;
    return k > 0 ? 0 : r;
}

/* shutdown(cancel_pending): drops what the spill holds (each task once: a refill takes under
 * the same lock; an append after this finds the queue closed). */
CONC_COLD void conc__executor_drop_spill_slow(conc_executor_t *ex) {
    conc_lock_acquire(&ex->spill_lock);
    uint32_t n = conc_load(&ex->spilled, CONC_RELAXED);
    conc_future_t **ring = ex->spill;
    size_t cap = ex->spill_cap, head = ex->spill_head;
    ex->spill = NULL;
    ex->spill_cap = ex->spill_head = 0;
    conc_store(&ex->spilled, 0u, CONC_SEQ_CST); /* [executor.U1]: see above */
    conc_lock_release(&ex->spill_lock);
    conc__executor_wake_unspilled(ex);
    for (uint32_t i = 0; i < n; i++) /* outside the lock: a drop completes a future */
        conc__executor_drop_slow(ring[(head + i) & (cap - 1)],
                                 conc_load(&ex->cancelling, CONC_RELAXED));
    free(ring);
}

/* A submitter from outside that found tasks in the spill: waits until it is empty (0), the
 * executor shut down (EPIPE) or the deadline passed (ETIMEDOUT). */
CONC_COLD int conc__executor_wait_unspilled_slow(conc_executor_t *ex, int64_t deadline) {
    for (;;) {
        if (conc__executor_closed(ex))
            return EPIPE;
        if (conc_load(&ex->spilled, CONC_ACQUIRE) == 0) /* acquire: as in conc__executor_push */
            return 0;
        /* seq_cst, after the registration: the Dekker pairs of the timeline above. */
        conc_fetch_add(&ex->spill_waiters, 1u, CONC_SEQ_CST);
        uint32_t epoch = conc_load(&ex->spill_epoch, CONC_SEQ_CST);
        uint32_t n = conc_load(&ex->spilled, CONC_SEQ_CST);
        int e = 0;
        if (n != 0 && conc_load(&ex->closed, CONC_SEQ_CST) == 0)
            e = conc_futex_wait(&ex->spill_epoch, epoch, 0, deadline);
        conc_fetch_sub(&ex->spill_waiters, 1u, CONC_RELAXED); /* a stale count: a spare wake */
        if (n == 0)
            return 0; /* acquire came with the seq_cst load: pairs with [executor.U1] */
        if (e == ETIMEDOUT)
            return ETIMEDOUT;
    }
}

/* -------------------------------------------------------------------------------------------
 * Idle workers: sleeping and waking
 *
 * A worker with nothing to do polls (one at a time), then sleeps on the idle word, not in the
 * queue: a task can become takeable without a push (a refill publishes staged tasks), and the
 * sleeper must then be reachable. Three events wake one sleeper: a submit; a take or refill
 * that leaves work behind (staged tasks, or queued ones with staging empty: the chain, each
 * woken worker wakes the next while work is left); the end (all, see "Staging").
 *
 *   waker (submit / take / refill)              idle worker
 *   ----------------------------------------    -------------------------------------------
 *   push (seq_cst CAS on tail)  or             (a poller: [executor.E0] store polling = 0)
 *   take [executor.T1] / publish [executor.F2]  [executor.E1] v = fetch_add(idle, SLEEPER_ONE)
 *   [executor.E2] w = load(idle) (seq_cst)          fence seq_cst; the queue's sleeper fence
 *   w has SLEEPERS, not WAKING, and             re-check: staging (a task, ENDED; REFILLING:
 *   (a submit, or load(polling) == 0):            none), queue size, closed
 *     CAS idle: w -> w | WAKING + SEQ_ONE         -> work: leave, look again
 *     futex_wake(idle, 1)                       futex_wait(idle, v)
 *                                               [executor.E3] leave: SLEEPERS - 1, clear WAKING
 *
 *   [executor.E1] and [executor.E2] are a Dekker pair (seq_cst on both sides): either the
 *   waker's load sees the sleeper (and wakes it, or a wake is already on its way), or the
 *   sleeper's re-check sees the work. (A push by the queue's bias owner is a plain store, not
 *   a CAS: the queue's sleeper fence, a heavy barrier while the bias lasts, is the pair's
 *   half for it: queue.h, "The bias".) A sleeper that saw REFILLING counts on the refiller:
 *   its publish [executor.F2] comes after that re-check, so its wake [executor.E2] sees the
 *   sleeper. A chain waker that sees a poller wakes nobody: the poller's stop [executor.E0]
 *   comes after that load in the single seq_cst order, so its look (or its re-check) sees the
 *   work too. A submit wakes a sleeper even while a worker polls: the poller may be
 *   preempted (more threads than CPUs), and the task would wait for the scheduler's next
 *   slice. The CAS
 *   steps the sequence, so a sleeper between its re-check and its futex_wait is refused the
 *   sleep (EAGAIN). WAKING saves a burst of submits a syscall each: while it is set a wake is
 *   on its way to a worker that will look, and that worker, if it leaves work behind, wakes
 *   the next. Every leaver clears WAKING: a clear too many costs a syscall, never a lost
 *   wake. tests/models/executor.pml checks it.
 * ------------------------------------------------------------------------------------------- */
CONC_COLD void conc__executor_wake_slow(conc_executor_t *ex, uint32_t v) {
    do {
        if ((v & CONC__EXECUTOR_IDLE_SLEEPERS_MASK) == 0 || (v & CONC__EXECUTOR_IDLE_WAKING))
            return;
        /* Relaxed: the futex word itself carries the wake; the Dekker pair is
         * [executor.E1]/[executor.E2]. */
    } while (!conc_cas_weak(&ex->idle, &v,
                            (v | CONC__EXECUTOR_IDLE_WAKING) + CONC__EXECUTOR_IDLE_SEQ_ONE,
                            CONC_RELAXED, CONC_RELAXED));
    CONC_CHAOS_POINT();
    conc_futex_wake(&ex->idle, 1, 0);
}

/* With sleepers and WAKING seen: the word again after a fence [executor.E4]. A waker that
 * sees WAKING wakes nobody, counting on the woken worker's look after it clears WAKING; but a
 * submit's look-able store is the queue's stamp publish (a plain release store) or a bias
 * owner's claim (queue.h), which a store buffer may hold past this load, while that worker's
 * look reads the stamps. The fence makes the pair: either we see WAKING cleared (and wake),
 * or its look comes after our publish. Found by a review; a few ns wide on x86. */
CONC_COLD void conc__executor_wake_fenced_slow(conc_executor_t *ex, bool chain) {
    conc_fence_seq_cst(&ex->idle);
    uint32_t v = conc_load(&ex->idle, CONC_SEQ_CST);
    if ((v & CONC__EXECUTOR_IDLE_SLEEPERS_MASK) != 0 && !(v & CONC__EXECUTOR_IDLE_WAKING) &&
        (!chain || conc_load(&ex->polling, CONC_SEQ_CST) == 0))
        conc__executor_wake_slow(ex, v);
}

/* [executor.E2] seq_cst: after the caller's seq_cst push, take or publish (the timeline
 * above). A chain wake (take, refill) wakes nobody while a worker polls. */
CONC_INLINE void conc__executor_wake(conc_executor_t *ex, bool chain) {
    uint32_t v = conc_load(&ex->idle, CONC_SEQ_CST);
    if (CONC_LIKELY((v & CONC__EXECUTOR_IDLE_SLEEPERS_MASK) == 0))
        return;
    if (v & CONC__EXECUTOR_IDLE_WAKING)
        conc__executor_wake_fenced_slow(ex, chain);
    else if (!chain || conc_load(&ex->polling, CONC_SEQ_CST) == 0)
        conc__executor_wake_slow(ex, v);
}

/* Wakes every sleeper (the close, the end): steps the sequence, so a sleeper between its
 * re-check and its futex_wait is refused the sleep. seq_cst (release would do for the
 * wake): a sleeper whose registration reads this step sees, in its re-check, what the
 * caller did before. */
CONC_COLD void conc__executor_wake_all_slow(conc_executor_t *ex) {
    conc_fetch_add(&ex->idle, CONC__EXECUTOR_IDLE_SEQ_ONE, CONC_SEQ_CST);
    conc_futex_wake(&ex->idle, INT_MAX, 0);
}

/* Sleeps until woken, unless the re-check finds work. */
CONC_COLD void conc__executor_sleep_slow(conc_executor_t *ex) {
    /* [executor.E1] seq_cst, and the fence after it: the re-check's loads cannot be ordered
     * before the registration (the timeline above). */
    uint32_t v = conc_fetch_add(&ex->idle, CONC__EXECUTOR_IDLE_SLEEPER_ONE, CONC_SEQ_CST) +
                 CONC__EXECUTOR_IDLE_SLEEPER_ONE;
    conc_fence_seq_cst(&ex->idle);
    /* A submit's push may be a plain store (queue.h's bias), not the seq_cst CAS the pair
     * needs: the queue's half for sleepers of our own orders it. */
    conc__queue_sleeper_fence(ex->q);
    /* seq_cst: the re-check's half of the Dekker pairs with [executor.T1], [executor.F2]. */
    if (!conc__executor_has_work(ex, conc_load(&ex->stage, CONC_SEQ_CST), true)) {
        CONC_CHAOS_POINT();
        (void)conc_futex_wait(&ex->idle, v, 0, CONC_FOREVER);
    }
    /* [executor.E3] seq_cst: leaving, before the next look. It clears WAKING: a clear too
     * many costs a syscall at most (another sleeper's wake is taken for over), never a lost
     * wake. */
    v = conc_load(&ex->idle, CONC_RELAXED);
    while (!conc_cas_weak(&ex->idle, &v,
                          (v - CONC__EXECUTOR_IDLE_SLEEPER_ONE) & ~CONC__EXECUTOR_IDLE_WAKING,
                          CONC_SEQ_CST, CONC_RELAXED)) {
    }
}

/* Refills empty staging (word s: no task left, not REFILLING, not ENDED) from the queue: 0
 * with *out the oldest task (the caller's to start; NULL once shutdown(cancel_pending) has
 * begun: every task moved was dropped), EAGAIN (the queue had none ready),
 * EPIPE (closed and drained: ENDED is published and every sleeper woken), EBUSY (another
 * worker changed the word first: look again). *s is the word published (or seen). */
CONC_NOINLINE int conc__executor_refill_slow(conc_executor_t *ex, uint64_t *s,
                                             conc_future_t **out) {
    uint64_t gen = *s & CONC__EXECUTOR_STAGE_GEN_MASK;
    /* [executor.F1] acquire: pairs with the takes' [executor.T1] (release), so every slot
     * read of the last refill's tasks happens before our writes below. */
    if (!conc_cas(&ex->stage, s, gen | CONC__EXECUTOR_STAGE_REFILLING, CONC_ACQUIRE, CONC_ACQUIRE))
        return EBUSY;
    conc_future_t *got[CONC__EXECUTOR_STAGE_MAX];
    size_t n = 0;
    int r = conc_queue_try_pop_batch(ex->q, got, CONC__EXECUTOR_STAGE_MAX, &n);
    /* None ready: the spill's turn (its tasks are newer than any queued). Relaxed: a hint
     * (the end always looks; a task appended after a miss comes with a wake). */
    if (r != 0 && (r == EPIPE || conc_load(&ex->spilled, CONC_RELAXED) != 0))
        r = conc__executor_unspill_slow(ex, got, &n, r);
    for (size_t i = 1; i < n; i++)
        conc_store(&ex->staged[i], got[i], CONC_RELAXED); /* published by [executor.F2] */
    uint64_t next = gen + CONC__EXECUTOR_STAGE_GEN_ONE;
    if (r == 0)
        next |= CONC__EXECUTOR_STAGE_HEAD_ONE | (uint64_t)n; /* got[0] is taken: ours */
    else if (r == EPIPE)
        next |= CONC__EXECUTOR_STAGE_ENDED;
    CONC_CHAOS_POINT();
    /* [executor.F2] seq_cst: release for the slots (pairs with [executor.T0]/[executor.T1]);
     * the first half of the Dekker pairs with a sleeper's [executor.E1] (the wake below)
     * and with the closer's [executor.C1] (the load of `cancelling` below). */
    conc_store(&ex->stage, next, CONC_SEQ_CST);
    *s = next;
    if (r == EPIPE) {
        conc__executor_wake_all_slow(ex); /* the end: every sleeper exits */
        return EPIPE;
    }
    if (r != 0)
        return EAGAIN;
    CONC_EXECUTOR_STAGE_HOOK(n);
    *out = got[0];
    /* seq_cst: [executor.C1]'s other half (see "Staging"). Oldest first, got[0] before the
     * staged, as Python cancels its queue: a cancelled task's callback may wait for an older
     * task, which must not be the one left in our hand. */
    uint32_t drop = conc_load(&ex->cancelling, CONC_SEQ_CST);
    if (CONC_UNLIKELY(drop != 0)) {
        conc__executor_drop_slow(got[0], drop);
        *out = NULL;
        if (n > 1)
            conc__executor_drop_staged_slow(ex);
    }
    return 0;
}

/* The oldest task not yet taken, without sleeping: staging's front, else the queue's through
 * a refill; NULL when none is takeable now (*s says why: ENDED, REFILLING, or nothing ready). */
CONC_INLINE conc_future_t *conc__executor_take_now(conc_executor_t *ex, uint64_t *s) {
    for (;;) {
        conc_future_t *f = conc__executor_stage_take(ex, s);
        if (!f && !(*s & (CONC__EXECUTOR_STAGE_REFILLING | CONC__EXECUTOR_STAGE_ENDED)) &&
            (conc__queue_item_ready(ex->q, 1) || conc__executor_closed(ex) ||
             conc_load(&ex->spilled, CONC_RELAXED) != 0) && /* relaxed: a hint, as above */
            conc__executor_refill_slow(ex, s, &f) == EBUSY)
            continue;
        /* Work left behind: wake the next worker (the chain, see "Idle workers"). `spilled`
         * seq_cst: an append that saw WAKING counted on this look. */
        if (f && (conc__executor_stage_left(*s) > 0 || conc__queue_item_ready(ex->q, 1) ||
                  conc_load(&ex->spilled, CONC_SEQ_CST) != 0))
            conc__executor_wake(ex, true);
        return f;
    }
}

/* The next task for a worker: the oldest not yet taken (staging's front, else the queue's
 * through a refill), or NULL once the executor has ended. One idle worker at a time polls
 * for CONC_EXECUTOR_SPIN pauses before it sleeps (the others sleep at once: on two CPUs, two
 * pollers would starve the threads that submit and wait), so a steady stream of tiny tasks,
 * or a submit-then-wait loop, finds a worker awake and pays no wakeup. */
CONC_INLINE conc_future_t *conc__executor_next(conc_executor_t *ex) {
    for (;;) {
        uint64_t s;
        conc_future_t *f = conc__executor_take_now(ex, &s);
        if (f)
            return f;
        if (s & CONC__EXECUTOR_STAGE_ENDED)
            return NULL;
        bool look = false;
        uint32_t idle = 0;
        if (CONC_EXECUTOR_SPIN > 0 && conc_cpu_count() > 1 &&
            conc_cas(&ex->polling, &idle, 1u, CONC_RELAXED, CONC_RELAXED)) {
            for (int i = 1; i <= CONC_EXECUTOR_SPIN && !look; i++) {
                conc_cpu_relax();
                /* Relaxed: a hint; the take's CAS decides. */
                if (i % CONC__EXECUTOR_POLL_EVERY == 0 &&
                    conc__executor_has_work(ex, conc_load(&ex->stage, CONC_RELAXED), false))
                    look = true;
            }
            /* [executor.E0] seq_cst: a chain waker that saw us polling made no wake, so our
             * stop must come before our next look and our registration [executor.E1] in the
             * one order (and it does: both seq_cst, the waker's loads too). */
            conc_store(&ex->polling, 0u, CONC_SEQ_CST);
            if (look)
                continue;
        }
        /* A few yields before the sleep, as conc_queue_pop does: with more threads than
         * CPUs the submitter may be the one waiting for this CPU, and a sleep now would cost
         * it a wakeup once it runs again. */
        for (int i = 0; i < CONC__EXECUTOR_IDLE_YIELDS && !look && conc_cpu_count() > 1; i++) {
            sched_yield();
            look = conc__executor_has_work(ex, conc_load(&ex->stage, CONC_RELAXED), false);
        }
        if (!look)
            conc__executor_sleep_slow(ex);
    }
}

/* Shutdown without the join: refuse new work, drop what is queued and staged if asked (drop:
 * 0, or CONC__EXECUTOR_DROP_CANCEL or _BROKEN), wake every worker. (conc_executor_shutdown
 * joins after it; shutdown_nowait and a failed initializer stop here.) */
CONC_INLINE void conc__executor_close(conc_executor_t *ex, uint32_t drop) {
    /* [executor.C1] seq_cst: release, pairing with the workers' acquire load in start and
     * with a refused submitter's (conc__executor_refusal): the close below comes after it;
     * and the first half of the Dekker pair with a refill's [executor.F2] (see "Staging").
     * An or, not a store: BROKEN stays once set, and wins over CANCEL
     * (conc__executor_drop_slow). */
    if (drop != 0)
        conc_fetch_or(&ex->cancelling, drop, CONC_SEQ_CST);
    conc_queue_close(ex->q); /* new submits get EPIPE, blocked ones too; workers drain */
    /* After the close: see conc__executor_closed. seq_cst: also the closer's half of the
     * Dekker pair with a submitter waiting for an empty spill (see "The spill"). */
    conc_store(&ex->closed, 1u, CONC_SEQ_CST);
    conc__executor_wake_unspilled(ex);
    conc__executor_wake_all_slow(ex); /* every sleeper re-checks and finds the close */
    if (drop != 0) {
        /* Oldest first, as Python cancels its queue (a cancelled task's callback may wait
         * for an older task): staging, then the queue, then the spill. */
        conc__executor_drop_staged_slow(ex); /* races the takes: each task once */
        conc_future_t *f;
        while (conc_queue_try_pop(ex->q, &f) == 0) /* races the refills: each item once */
            conc__executor_drop_slow(f, conc_load(&ex->cancelling, CONC_RELAXED));
        conc__executor_drop_spill_slow(ex); /* races the refills: each task once */
    }
}

/* What a submit refused with EPIPE says: CONC_EXECUTOR_BROKEN if an initializer failed. The
 * submit saw the queue closed (an acquire load of its tail, pairing with the close's
 * release), and a failed initializer sets BROKEN before it closes the queue. */
CONC_INLINE int conc__executor_refusal(conc_executor_t *ex, int e) {
    if (e == EPIPE && (conc_load(&ex->cancelling, CONC_ACQUIRE) & CONC__EXECUTOR_DROP_BROKEN))
        return CONC_EXECUTOR_BROKEN;
    return e;
}

/* A worker's first steps: its name (prctl sets the calling thread's, as gdb and top -H show
 * it), then the initializer. A failing initializer breaks the executor as Python's
 * BrokenThreadPool does: new submits fail with CONC_EXECUTOR_BROKEN, tasks not yet started
 * fail with it too (state FAILED, never run), and every worker, this one included, goes on
 * to the normal ending (a refill finds the queue closed and drained, publishes ENDED and
 * wakes every worker, see "Staging"); any task a worker still takes is dropped, not run.
 * conc_executor_broken reports the initializer's value; it is stored before BROKEN, so
 * whoever sees a task or a submit fail with CONC_EXECUTOR_BROKEN sees it. */
CONC_COLD void conc__executor_worker_start_slow(conc_executor_t *ex, unsigned index) {
    if (ex->name_prefix[0] != '\0') {
        char name[CONC__EXECUTOR_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s_%u", (int)ex->name_prefix_len, ex->name_prefix, index);
        (void)prctl(PR_SET_NAME, name, 0, 0, 0);
    }
    int e = ex->init_fn != NULL ? ex->init_fn(ex->init_arg) : 0;
    if (e != 0) {
        int none = 0; /* the first failure is the one reported */
        (void)conc_cas(&ex->broken, &none, e, CONC_RELAXED, CONC_RELAXED);
        conc__executor_close(ex, CONC__EXECUTOR_DROP_BROKEN);
    }
}

static inline void *conc__executor_worker_main(void *arg) {
    conc__executor_worker *w = (conc__executor_worker *)arg;
    conc_executor_t *ex = w->ex;
    conc__executor_worker_self = w;
    if (ex->init_fn != NULL || ex->name_prefix[0] != '\0')
        conc__executor_worker_start_slow(ex, w->index);
    conc_future_t *f;
    while ((f = conc__executor_next(ex)) != NULL)
        conc__executor_start(ex, f);
    return NULL;
}

/* The calling thread's record if it is one of ex's workers, else NULL: a worker's thread-local
 * conc__executor_worker_self (set first thing in conc__executor_worker_main) is its own record
 * in ex->workers. Not thread ids: once shutdown has joined a worker, the next thread created
 * may get its pthread_t, and would pass for a worker (destroy from it aborted, as if from a
 * task). */
CONC_INLINE conc__executor_worker *conc__executor_self(const conc_executor_t *ex) {
    uintptr_t self = (uintptr_t)conc__executor_worker_self, first = (uintptr_t)ex->workers;
    uintptr_t n = conc_load(&ex->nthreads, CONC_RELAXED);
    return self >= first && self - first < n * sizeof(conc__executor_worker)
               ? (conc__executor_worker *)self
               : NULL;
}

CONC_INLINE bool conc__executor_is_worker(const conc_executor_t *ex) {
    return conc__executor_self(ex) != NULL;
}

static inline void conc_executor_shutdown(conc_executor_t *ex, bool cancel_pending) {
    if (CONC_UNLIKELY(!ex))
        CONC_ABORT("conc_executor_shutdown: NULL executor");
    conc__executor_close(ex, cancel_pending ? CONC__EXECUTOR_DROP_CANCEL : 0u);
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

/* Python's shutdown(wait=False): refuses new work (and cancels what is queued if asked) and
 * returns at once; the workers finish what they have. conc_executor_destroy (or a later
 * shutdown) joins them and frees the executor. */
static inline void conc_executor_shutdown_nowait(conc_executor_t *ex, bool cancel_pending) {
    if (CONC_UNLIKELY(!ex))
        CONC_ABORT("conc_executor_shutdown_nowait: NULL executor");
    conc__executor_close(ex, cancel_pending ? CONC__EXECUTOR_DROP_CANCEL : 0u);
}

/* 0, or what the first failing initializer returned (the executor then refuses work).
 * Relaxed: a thread that saw a submit or a task fail with CONC_EXECUTOR_BROKEN already
 * happens after the store (it precedes DROP_BROKEN's release); anyone else gets a snapshot. */
static inline int conc_executor_broken(const conc_executor_t *ex) {
    if (!ex)
        return EINVAL; /* as every int call (ERRORS) */
    return conc_load(&ex->broken, CONC_RELAXED);
}

static inline void conc_executor_destroy(conc_executor_t *ex) {
    if (!ex)
        return;
    if (conc__executor_is_worker(ex))
        CONC_ABORT("conc_executor_destroy: called from one of its own tasks");
    conc_executor_shutdown(ex, false);
    free(ex->workers);
    free(ex->spill); /* empty: the workers ended only with it empty, or a cancel dropped it */
    conc_queue_destroy(ex->q);
    conc__executor_pool_close_slow(
        ex->pool); /* frees it now, or at the last release of its futures */
    free(ex);
}

/* create's arguments, and the Python ThreadPoolExecutor options create does not take. A
 * zeroed struct is create(&ex, 0, 0). */
typedef struct conc_executor_options {
    unsigned threads;              /* 0: one per CPU */
    size_t capacity;               /* a bound on queued tasks; 0: unbounded (Python's) */
    int (*initializer)(void *arg); /* run first in every worker (initializer=); nonzero: broken */
    void *initarg;                 /* initializer's argument (initargs=) */
    const char *name_prefix; /* workers named "<prefix>_<i>" (thread_name_prefix=); NULL: none */
} conc_executor_options_t;

CONC_NODISCARD static inline int conc__executor_build(conc_executor_t **out, unsigned threads,
                                                      size_t queue_capacity,
                                                      const conc_executor_options_t *o) {
    *out = NULL;
    if (threads == 0)
        threads = (unsigned)conc_cpu_count();
    bool unbounded = queue_capacity == 0;
    if (unbounded)
        queue_capacity = CONC_EXECUTOR_CAPACITY_DEFAULT; /* the ring; the spill takes the rest */
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
    ex->pool = conc__executor_pool_create_slow();
    int e = ex->workers && ex->pool
                ? conc_queue_create(&ex->q, queue_capacity, sizeof(conc_future_t *))
                : ENOMEM;
    if (e != 0) {
        free(ex->workers);
        free(ex->pool);
        free(ex);
        return e;
    }
    ex->unbounded = unbounded;
    conc_lock_init(&ex->shutdown_lock, 0);
    conc_lock_init(&ex->spill_lock, 0);
    if (o != NULL) {
        ex->init_fn = o->initializer;
        ex->init_arg = o->initarg;
        if (o->name_prefix != NULL) {
            /* Keep what fits beside "_" and the largest index: every worker's name then
             * has the same prefix, as long as Linux allows (15 bytes). */
            size_t digits = 1;
            for (unsigned top = threads - 1; top >= 10; top /= 10)
                digits++;
            size_t room = CONC__EXECUTOR_NAME_MAX - 1 - digits, len = strlen(o->name_prefix);
            ex->name_prefix_len = len < room ? len : room;
            memcpy(ex->name_prefix, o->name_prefix, ex->name_prefix_len);
            ex->name_prefix[ex->name_prefix_len] = '\0';
        }
    }
    for (unsigned i = 0; i < threads; i++) {
        ex->workers[i].ex = ex;
        ex->workers[i].index = i;
    }
    for (unsigned i = 0; i < threads; i++) {
        /* nthreads first: conc__executor_is_worker looks in workers[0..nthreads), and a new
         * worker must find itself there. Relaxed: pthread_create orders the store for the
         * new thread. */
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

/* build, leaving errno as it was: allocation, sysconf and pthread_create may set it, and no
 * conc call does. */
CONC_NODISCARD static inline int conc__executor_create(conc_executor_t **out, unsigned threads,
                                                       size_t queue_capacity,
                                                       const conc_executor_options_t *o) {
    if (!out)
        return EINVAL;
    int saved_errno = conc_errno_save();
    int e = conc__executor_build(out, threads, queue_capacity, o);
    conc_errno_restore(saved_errno);
    return e;
}

CONC_NODISCARD static inline int conc_executor_create(conc_executor_t **out, unsigned threads,
                                                      size_t queue_capacity) {
    return conc__executor_create(out, threads, queue_capacity, NULL);
}

/* create with options (o may be NULL: the defaults). Errors as create. */
CONC_NODISCARD static inline int conc_executor_create_with(conc_executor_t **out,
                                                           const conc_executor_options_t *o) {
    return conc__executor_create(out, o ? o->threads : 0, o ? o->capacity : 0, o);
}

static inline unsigned conc_executor_threads(const conc_executor_t *ex) {
    if (CONC_UNLIKELY(!ex))
        CONC_ABORT("conc_executor_threads: NULL executor");
    return ex->nthreads;
}

/* Relaxed: a snapshot of the tasks not yet taken by a worker (queued, spilled or staged), for
 * metrics. */
static inline size_t conc_executor_queue_size(const conc_executor_t *ex) {
    if (CONC_UNLIKELY(!ex))
        CONC_ABORT("conc_executor_queue_size: NULL executor");
    return conc_queue_size(ex->q) + conc_load(&ex->spilled, CONC_RELAXED) +
           conc__executor_stage_left(conc_load(&ex->stage, CONC_RELAXED));
}

/* n futures into fs, uninitialized: from the pool, else malloc'd. How many (< n: ENOMEM). */
CONC_INLINE size_t conc__executor_futures(conc_executor_t *ex, conc_future_t **fs, size_t n) {
    size_t k = conc__executor_pool_take(ex->pool, fs, n);
    for (size_t i = 0; i < k; i++)
        CONC__EXECUTOR_UNPOISON(fs[i]); /* poisoned while in the pool's lists */
    for (; k < n; k++) {
        if (!(fs[k] = conc__future_malloc()))
            break;
        conc__future_set_pool(fs[k], &ex->pool->base, true);
    }
    return k;
}

/* Pushes one task once the queue was full or the spill held tasks (see "The spill"). An
 * unbounded executor sends it to the spill, from anyone, waiting or not. A bounded one: block
 * false tries once (EAGAIN); true waits for room until deadline (ETIMEDOUT), except in one of
 * ex's own workers, which never waits: a full queue sends its task to the spill. */
CONC_NOINLINE int conc__executor_push_slow(conc_executor_t *ex, conc_future_t **f, bool block,
                                           int64_t deadline) {
    if (ex->unbounded || (block && conc__executor_self(ex)))
        return conc__executor_spill_slow(ex, f);
    if (!block)
        return conc__executor_closed(ex) ? EPIPE : EAGAIN; /* the queue was full or spilled */
    int e = conc__executor_wait_unspilled_slow(ex, deadline);
    if (e != 0)
        return e;
    return deadline == CONC_FOREVER ? conc_queue_push(ex->q, f)
                                    : conc_queue_push_until(ex->q, f, deadline);
}

CONC_INLINE int conc__executor_push(conc_executor_t *ex, conc_future_t **f, bool block,
                                    int64_t deadline) {
    /* Acquire: pairs with [executor.U1], so a spilled task whose submit returned before ours
     * began is in the spill or staged before our task can be queued (see "The spill"). */
    if (CONC_LIKELY(conc_load(&ex->spilled, CONC_ACQUIRE) == 0)) {
        int r = conc_queue_try_push(ex->q, f);
        if (CONC_LIKELY(r != EAGAIN))
            return r;
    }
    return conc__executor_push_slow(ex, f, block, deadline);
}

/* block false: try once (EAGAIN when full); true: wait for room until deadline (ETIMEDOUT). */
CONC_INLINE int conc__executor_submit(conc_executor_t *ex, conc_task_fn fn, void *arg,
                                      conc_future_t **out, bool block, int64_t deadline) {
    if (out)
        *out = NULL;
    if (!ex || !fn) /* a worker would call fn: refused here, where the caller learns of it */
        return EINVAL;
    conc_future_t *f;
    if (conc__executor_futures(ex, &f, 1) == 0)
        return ENOMEM;
    conc__future_init(f, out ? CONC__EXECUTOR_SUBMIT_REFS : 1u, fn, arg);
    int r = conc__executor_push(ex, &f, block, deadline);
    if (r != 0) {
        conc__future_free(f);
        return conc__executor_refusal(ex, r);
    }
    conc__executor_wake(ex, false); /* [executor.E2], after the push's seq_cst claim */
    if (out)
        *out = f;
    return 0;
}

CONC_NODISCARD static inline int conc_executor_submit(conc_executor_t *ex, conc_task_fn fn,
                                                      void *arg, conc_future_t **f) {
    return conc__executor_submit(ex, fn, arg, f, true, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_executor_try_submit(conc_executor_t *ex, conc_task_fn fn,
                                                          void *arg, conc_future_t **f) {
    return conc__executor_submit(ex, fn, arg, f, false, CONC_FOREVER);
}

/* Pushes all n (blocking while full), waking a worker after every piece that went in: a
 * blocking conc_queue_push_batch would sleep on a full queue with its first pieces in and
 * no worker told. 0, EPIPE or CONC_EXECUTOR_BROKEN; *pushed says how many went in. */
CONC_INLINE int conc__executor_push_all(conc_executor_t *ex, conc_future_t **fs, size_t n,
                                        size_t *pushed) {
    *pushed = 0;
    while (*pushed < n) {
        size_t k = 0;
        /* Acquire: as in conc__executor_push. */
        int e = conc_load(&ex->spilled, CONC_ACQUIRE) == 0
                    ? conc_queue_try_push_batch(ex->q, fs + *pushed, n - *pushed, &k)
                    : EAGAIN;
        if (e == EAGAIN) { /* full or spilled: the workers are awake (a re-check sees it) */
            e = conc__executor_push_slow(ex, fs + *pushed, true, CONC_FOREVER);
            k = e == 0 ? 1 : 0;
        }
        *pushed += k;
        if (k > 0)
            conc__executor_wake(ex, false); /* [executor.E2]; a woken worker wakes the next */
        if (e != 0)
            return conc__executor_refusal(ex, e);
    }
    return 0;
}

CONC_NODISCARD static inline int conc_executor_submit_batch(conc_executor_t *ex, conc_task_fn fn,
                                                            void *const *args, size_t n,
                                                            conc_future_t **fs, size_t *submitted) {
    conc_future_t *chunk[CONC__EXECUTOR_BATCH_CHUNK];
    const size_t chunk_max = CONC__EXECUTOR_BATCH_CHUNK;
    size_t done = 0;
    int r = ex && fn ? 0 : EINVAL; /* nothing queued: *submitted 0, every fs[i] NULL */
    while (done < n && r == 0) {
        size_t k = n - done < chunk_max ? n - done : chunk_max, pushed = 0;
        size_t made = conc__executor_futures(ex, chunk, k);
        if (made < k)
            r = ENOMEM;
        for (size_t j = 0; j < made; j++) {
            size_t i = done + j;
            conc__future_init(chunk[j], fs ? CONC__EXECUTOR_SUBMIT_REFS : 1u, fn,
                              args ? args[i] : (void *)(uintptr_t)i);
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
            conc__future_free(chunk[j]);
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

/* Submits input next_submit, waiting for room until deadline (block) or trying once: 0 (it
 * is in the ring, or NULL there after a refused submit, submit_error says why), or EAGAIN /
 * ETIMEDOUT: the queue stayed full, nothing changed, a later call submits it. */
CONC_INLINE int conc__executor_map_submit(conc_map_t *m, bool block, int64_t deadline) {
    size_t i = m->next_submit;
    conc_future_t **slot = &m->ring[i % m->window];
    *slot = NULL;
    if (m->submit_error == 0) {
        int e = conc__executor_submit(m->ex, m->fn, m->args ? m->args[i] : (void *)(uintptr_t)i,
                                      slot, block, deadline);
        if (e == EAGAIN || e == ETIMEDOUT)
            return e;
        m->submit_error = e;
    }
    m->next_submit++;
    return 0;
}

/* Submits the inputs the window has room for, in order: the one whose result is asked for
 * now (none was submitted past it) waits for room until deadline, the others only try (a
 * result already in flight is not kept waiting for a full queue). Stops at the first that
 * does not fit. */
CONC_INLINE void conc__executor_map_fill(conc_map_t *m, int64_t deadline) {
    while (m->next_submit < m->n && m->next_submit < m->next_result + m->window) {
        bool needed = m->next_submit == m->next_result;
        if (conc__executor_map_submit(m, needed || deadline == CONC_FOREVER, deadline) != 0)
            break;
    }
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
    if (!out)
        return EINVAL;
    *out = NULL;
    if (!ex || window == 0 || !fn)
        return EINVAL;
    int saved_errno = conc_errno_save(); /* no conc call sets errno: a failed calloc does */
    conc_map_t *m = (conc_map_t *)calloc(1, sizeof *m);
    conc_errno_restore(saved_errno);
    if (!m)
        return ENOMEM;
    if (window > n)
        window = n > 0 ? n : 1;
    m->ring = (conc_future_t **)calloc(window, sizeof *m->ring);
    conc_errno_restore(saved_errno);
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
        (void)conc__executor_map_submit(m, true, CONC_FOREVER); /* never EAGAIN or ETIMEDOUT */
    int refused = m->submit_error;
    if ((refused == EPIPE || refused == CONC_EXECUTOR_BROKEN) && m->ring[0] == NULL) {
        conc_map_destroy(m);
        return refused;
    }
    *out = m;
    return 0;
}

CONC_NODISCARD static inline int conc_map_next_until(conc_map_t *m, int64_t deadline, size_t *index,
                                                     int *status, void **result) {
    if (!m)
        return EINVAL;
    if (m->next_result == m->n)
        return EPIPE;
    conc__executor_map_fill(m, deadline); /* what a full queue left out last time */
    if (m->next_submit == m->next_result)
        return ETIMEDOUT; /* input i found no room by the deadline: nothing consumed */
    size_t i = m->next_result;
    conc_future_t *f = m->ring[i % m->window];
    int st;
    void *res = NULL;
    if (f) {
        st = conc_future_wait_until(f, deadline);
        if (!conc_future_is_done(f))
            return ETIMEDOUT; /* nothing consumed: call again */
        /* Done: the task's outcome. The wait's ETIMEDOUT, if the task ended right after it
         * gave up, is not the task's status: read it again (at once: f is done). */
        if (st == ETIMEDOUT)
            st = conc_future_wait_until(f, 0);
        res = conc_future_result(f);
        conc_future_release(f);
    } else {
        st = m->submit_error;
    }
    m->next_result++;
    /* Keeps `window` in flight: blocking for conc_map_next, as it always did; a call with a
     * deadline returns the result it has at once and leaves an input the full queue has no
     * room for to a later call. */
    conc__executor_map_fill(m, deadline == CONC_FOREVER ? CONC_FOREVER : 0);
    if (index)
        *index = i;
    if (status)
        *status = st;
    if (result)
        *result = res;
    return 0;
}

CONC_NODISCARD static inline int conc_map_next(conc_map_t *m, size_t *index, int *status,
                                               void **result) {
    return conc_map_next_until(m, CONC_FOREVER, index, status, result);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_EXECUTOR_H */

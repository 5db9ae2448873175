/* tests/test_future.c - futures, executor, as-completed, lazy map: unit, race and deadlock stress
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

/* Every futex syscall the library makes (relaxed: a statistic, never a synchronizer). */
static unsigned long futex_calls;
/* A case may also set futex_wait_hook in one of its threads: it runs there before that thread's
 * every futex wait (the case clears it), to hold the thread just before it sleeps. */
static __thread void (*futex_wait_hook)(void);
#define CONC_FUTEX_HOOK(kind)                                                                      \
    ((void)__atomic_fetch_add(&futex_calls, 1, __ATOMIC_RELAXED),                                  \
     (kind) == CONC_FUTEX_HOOK_WAIT && futex_wait_hook ? futex_wait_hook() : (void)0)
/* A small future pool, so that these tests run both kinds of executor futures: pooled ones
 * and, past the cap, malloc'd ones (the default cap is far above any test's needs). */
#ifndef CONC_EXECUTOR_POOL
#define CONC_EXECUTOR_POOL 256
#endif
/* Every refill of staging (relaxed: a statistic). */
static unsigned long refills;
#define CONC_EXECUTOR_STAGE_HOOK(tasks)                                                            \
    ((void)(tasks), __atomic_fetch_add(&refills, 1, __ATOMIC_RELAXED))
#include "conc/event.h"
#include "conc/future.h" /* the executor comes with it, as DESIGN's future.h held both */
#include "conc/rlock.h"
#include "conc/sem.h"

#include <dirent.h>
#include <sys/resource.h>

/* Instrumentation counters are relaxed atomics: a statistic, never a synchronizer. */
#define CNT_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define CNT_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static int task_echo(void *arg, void **result) {
    *result = arg;
    return 0;
}

static int task_fail(void *arg, void **result) {
    (void)result;
    return (int)(intptr_t)arg;
}

static int task_noop(void *arg, void **result) {
    (void)arg;
    (void)result;
    return 0;
}

static long noop_runs;
static int task_count(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&noop_runs, 1);
    return 0;
}

/* A task that blocks on a promise (a gate) until the test opens it. */
static int task_gate(void *arg, void **result) {
    (void)result;
    return conc_future_wait((conc_future_t *)arg);
}

/* ---------------------------------------------------------------------------------------------
 * Unit: futures
 * ------------------------------------------------------------------------------------------- */
static void future_create_is_pending(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK(!conc_future_is_done(f));
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_PENDING);
    TH_CHECK(conc_future_result(f) == NULL);
    TH_CHECK_EQ(conc_future_wait_until(f, 0), ETIMEDOUT);
    TH_CHECK_EQ(conc_future_wait_until(f, conc_now() - CONC_SEC), ETIMEDOUT);
    conc_future_release(f);
}

static void future_complete_done_then_ebusy(void) {
    conc_future_t *f;
    int value = 7;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(conc_future_complete(f, 0, &value), 0);
    TH_CHECK(conc_future_is_done(f));
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ(conc_future_wait_until(f, 0), 0);
    TH_CHECK(conc_future_result(f) == &value);
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), EBUSY);
    TH_CHECK_EQ(conc_future_complete(f, 5, NULL), EBUSY);
    TH_CHECK_EQ(conc_future_cancel(f), EBUSY);
    TH_CHECK(conc_future_result(f) == &value); /* the loser changed nothing */
    conc_future_release(f);
}

static void future_complete_failed_status(void) {
    conc_future_t *f;
    int value = 1;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(conc_future_complete(f, EIO, &value), 0);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_FAILED);
    TH_CHECK_EQ(conc_future_wait(f), EIO);
    TH_CHECK(conc_future_result(f) == &value); /* a failure keeps its detail */
    TH_CHECK_EQ(conc_future_cancel(f), EBUSY);
    conc_future_release(f);
}

static void future_cancel_pending_only(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(conc_future_cancel(f), 0);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_CANCELLED);
    TH_CHECK_EQ(conc_future_wait(f), ECANCELED);
    TH_CHECK_EQ(conc_future_cancel(f), EBUSY);
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), EBUSY);
    conc_future_release(f);
}

static void future_wait_until_never_early(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    for (int ms = 1; ms <= 20; ms *= 4) {
        int64_t start = conc_now(), deadline = start + ms * CONC_MS;
        TH_CHECK_EQ(conc_future_wait_until(f, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
    }
    conc_future_release(f);
}

typedef struct later {
    conc_future_t *f;
    int status;
    void *result;
} later;

static void *complete_later(void *p) {
    later *l = (later *)p;
    th_sleep_ns(2 * CONC_MS); /* only to make the waiter likely to sleep first; not assumed */
    TH_CHECK_EQ(conc_future_complete(l->f, l->status, l->result), 0);
    conc_future_release(l->f);
    return NULL;
}

static void future_wait_wakes_on_complete(void) {
    for (int round = 0; round < 20; round++) {
        conc_future_t *f;
        TH_CHECK_EQ(conc_future_create(&f), 0);
        conc_future_retain(f); /* the completer's own reference */
        int value = round;
        later l = {f, round % 2 ? 9 : 0, &value};
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, complete_later, &l), 0);
        int r = round % 3 ? conc_future_wait(f)
                          : conc_future_wait_until(f, conc_deadline_in(60 * CONC_SEC));
        TH_CHECK_EQ(r, round % 2 ? 9 : 0);
        TH_CHECK(conc_future_result(f) == (void *)&value); /* done or failed: kept */
        pthread_join(t, NULL);
        conc_future_release(f);
    }
}

typedef struct cb_log {
    int order[8];
    int n;
    pthread_t thread[8];
} cb_log;

typedef struct cb_arg {
    cb_log *log;
    int id;
} cb_arg;

static void cb_record(conc_future_t *f, void *p) {
    cb_arg *a = (cb_arg *)p;
    TH_CHECK(conc_future_is_done(f));
    a->log->thread[a->log->n] = pthread_self();
    a->log->order[a->log->n++] = a->id;
}

static void future_on_done_fifo_by_completer(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    cb_log log = {{0}, 0, {0}};
    cb_arg args[3] = {{&log, 1}, {&log, 2}, {&log, 3}};
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_future_on_done(f, cb_record, &args[i]), 0);
    TH_CHECK_EQ(log.n, 0); /* not yet */
    conc_future_retain(f);
    later l = {f, 0, NULL};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, complete_later, &l), 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(log.n, 3);
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(log.order[i], i + 1);
        TH_CHECK(pthread_equal(log.thread[i], t)); /* ran by the completing thread */
    }
    /* Already done: runs at once, in the caller. */
    cb_arg late = {&log, 4};
    TH_CHECK_EQ(conc_future_on_done(f, cb_record, &late), 0);
    TH_CHECK_EQ(log.n, 4);
    TH_CHECK_EQ(log.order[3], 4);
    TH_CHECK(pthread_equal(log.thread[3], pthread_self()));
    conc_future_release(f);
}

static void future_on_done_never_completed_is_freed(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    cb_log log = {{0}, 0, {0}};
    cb_arg a = {&log, 1};
    TH_CHECK_EQ(conc_future_on_done(f, cb_record, &a), 0);
    conc_future_release(f); /* the node is freed with it (ASan checks), the callback never runs */
    TH_CHECK_EQ(log.n, 0);
}

static void future_retain_release_balance(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    for (int i = 0; i < 10; i++)
        conc_future_retain(f);
    for (int i = 0; i < 10; i++)
        conc_future_release(f);
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), 0); /* still alive: one reference left */
    /* The count shares the state word: many references leave the state alone. */
    for (int i = 0; i < 100000; i++)
        conc_future_retain(f);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
    TH_CHECK_EQ(conc_future_wait_until(f, 0), 0);
    for (int i = 0; i < 100000; i++)
        conc_future_release(f);
    TH_CHECK(conc_future_is_done(f));
    conc_future_release(f);
}

/* Completing a future nobody waits for, with or without callbacks, and waiting for a done
 * one, make no syscall at all. */
static void future_complete_unwaited_makes_no_syscall(void) {
    cb_log log = {{0}, 0, {0}};
    cb_arg a = {&log, 1};
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(conc_future_create(&g), 0);
    TH_CHECK_EQ(conc_future_on_done(g, cb_record, &a), 0);
    unsigned long before = CNT_GET(&futex_calls);
    conc_future_retain(f);
    TH_CHECK_EQ(conc_future_complete(f, 0, &log), 0);
    TH_CHECK_EQ(conc_future_complete(g, EIO, NULL), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ(conc_future_wait(g), EIO);
    TH_CHECK_EQ(conc_future_cancel(f), EBUSY);
    conc_future_release(f);
    TH_CHECK_EQ(CNT_GET(&futex_calls), before);
    TH_CHECK_EQ(log.n, 1); /* the callback ran, in this thread */
    conc_future_release(f);
    conc_future_release(g);
}

static void future_wait_any_and_all(void) {
    enum { N = 12 }; /* more than the 8 stack nodes: exercises the malloc path */
    conc_future_t *fs[N];
    for (int i = 0; i < N; i++)
        TH_CHECK_EQ(conc_future_create(&fs[i]), 0);
    size_t index = 99;
    TH_CHECK_EQ(conc_future_wait_any(fs, 0, CONC_FOREVER, &index), EINVAL);
    TH_CHECK_EQ(conc_future_wait_any(fs, N, 0, &index), ETIMEDOUT);
    int64_t deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_future_wait_any(fs, N, deadline, &index), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(conc_future_wait_all(fs, N, conc_deadline_in(CONC_MS)), ETIMEDOUT);
    TH_CHECK_EQ(conc_future_wait_any(fs, 4, 0, &index), ETIMEDOUT); /* 4: the stack path */

    conc_future_retain(fs[7]);
    later l = {fs[7], 0, NULL};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, complete_later, &l), 0);
    TH_CHECK_EQ(conc_future_wait_any(fs, N, CONC_FOREVER, &index), 0);
    TH_CHECK_EQ(index, 7);
    pthread_join(t, NULL);
    TH_CHECK_EQ(conc_future_wait_any(fs, N, 0, &index), 0); /* already done: no sleeping */
    TH_CHECK_EQ(index, 7);
    for (int i = 0; i < N; i++)
        if (i != 7)
            TH_CHECK_EQ(conc_future_complete(fs[i], i, NULL), 0);
    TH_CHECK_EQ(conc_future_wait_all(fs, N, 0), 0);
    TH_CHECK_EQ(conc_future_wait_all(fs, N, CONC_FOREVER), 0);
    for (int i = 0; i < N; i++)
        conc_future_release(fs[i]); /* no waker node left behind (release aborts if so) */
}

/* A failed submit leaves NULL where its future would be (submit_batch's fs past a refusal):
 * wait_any, wait_all and as-completed refuse such an array with EINVAL and add or wait for
 * nothing (they read through the NULL and crashed). */
static void future_null_entry_is_einval(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 4), 0);
    conc_executor_shutdown(ex, false);
    conc_future_t *fs[3];
    size_t submitted = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_noop, NULL, 2, fs, &submitted), EPIPE);
    TH_CHECK(submitted == 0 && fs[0] == NULL && fs[1] == NULL);
    TH_CHECK_EQ(conc_future_create(&fs[2]), 0);
    TH_CHECK_EQ(conc_future_complete(fs[2], 0, NULL), 0);
    size_t index = 99;
    TH_CHECK_EQ(conc_future_wait_any(fs, 3, CONC_FOREVER, &index), EINVAL);
    TH_CHECK_EQ(index, 99);
    TH_CHECK_EQ(conc_future_wait_all(fs, 3, CONC_FOREVER), EINVAL);
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, fs, 3), EINVAL);
    TH_CHECK(ac == NULL);
    TH_CHECK_EQ(conc_as_completed_create(&ac, fs + 2, 1), 0);
    TH_CHECK_EQ(conc_as_completed_add(ac, fs[0]), EINVAL);
    conc_future_t *f = NULL;
    TH_CHECK_EQ(conc_as_completed_next(ac, &f), 0);
    TH_CHECK(f == fs[2]);
    TH_CHECK_EQ(conc_as_completed_next(ac, &f), EPIPE); /* the NULL added nothing */
    conc_as_completed_destroy(ac);
    for (int i = 0; i < 3; i++)
        conc_future_release(fs[i]);
    conc_executor_destroy(ex);
}

static void future_as_completed_order(void) {
    enum { N = 6 };
    conc_future_t *fs[N];
    for (int i = 0; i < N; i++)
        TH_CHECK_EQ(conc_future_create(&fs[i]), 0);
    TH_CHECK_EQ(conc_future_complete(fs[4], 0, NULL), 0); /* done before it is added */
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, fs, 5), 0);
    TH_CHECK_EQ(conc_as_completed_add(ac, fs[5]), 0);
    conc_future_t *got;
    TH_CHECK_EQ(conc_as_completed_next(ac, &got), 0);
    TH_CHECK(got == fs[4]);
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), EAGAIN);
    TH_CHECK(got == NULL);
    int64_t deadline = conc_deadline_in(3 * CONC_MS);
    TH_CHECK_EQ(conc_as_completed_next_until(ac, deadline, &got), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    int order[] = {2, 5, 0, 3, 1};
    for (int k = 0; k < 5; k++)
        TH_CHECK_EQ(conc_future_complete(fs[order[k]], order[k], NULL), 0);
    for (int k = 0; k < 5; k++) {
        TH_CHECK_EQ(conc_as_completed_next(ac, &got), 0);
        TH_CHECK(got == fs[order[k]]);
        TH_CHECK_EQ(conc_future_wait(got), order[k]);
    }
    TH_CHECK_EQ(conc_as_completed_next(ac, &got), EPIPE);
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), EPIPE);
    conc_as_completed_destroy(ac);
    for (int i = 0; i < N; i++)
        conc_future_release(fs[i]);
}

/* A set, as Python's as_completed: a future given twice (in fs, or added again, even after it
 * came out) is one member and comes out once. Before, each copy came out: a loop that releases
 * what next returns released the future twice. */
static void future_as_completed_duplicates_come_out_once(void) {
    conc_future_t *a, *b;
    TH_CHECK_EQ(conc_future_create(&a), 0);
    TH_CHECK_EQ(conc_future_create(&b), 0);
    TH_CHECK_EQ(conc_future_complete(b, 0, NULL), 0); /* final before it is added */
    conc_future_t *fs[] = {a, b, a, b, a};
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, fs, 5), 0);
    TH_CHECK_EQ(conc_as_completed_add(ac, a), 0);
    TH_CHECK_EQ(conc_as_completed_add(ac, b), 0);
    conc_future_t *got = NULL;
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), 0);
    TH_CHECK(got == b);
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), EAGAIN); /* not b again */
    TH_CHECK_EQ(conc_as_completed_add(ac, b), 0);              /* came out already: once */
    TH_CHECK_EQ(conc_future_complete(a, 0, NULL), 0);
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), 0);
    TH_CHECK(got == a);
    TH_CHECK_EQ(conc_as_completed_try_next(ac, &got), EPIPE);
    conc_as_completed_destroy(ac);
    /* Many members (the table grows), each given three times, half of them final first. */
    enum { N = 1000 };
    static conc_future_t *many[3 * N];
    for (int i = 0; i < N; i++) {
        TH_CHECK_EQ(conc_future_create(&many[i]), 0);
        many[N + i] = many[2 * N + i] = many[i];
        if (i % 2)
            TH_CHECK_EQ(conc_future_complete(many[i], 0, (void *)(uintptr_t)i), 0);
    }
    TH_CHECK_EQ(conc_as_completed_create(&ac, many, 3 * N), 0);
    for (int i = 0; i < N; i += 2)
        TH_CHECK_EQ(conc_future_complete(many[i], 0, (void *)(uintptr_t)i), 0);
    static unsigned char seen[N];
    int count = 0;
    while (conc_as_completed_try_next(ac, &got) == 0) {
        uintptr_t i = (uintptr_t)conc_future_result(got);
        TH_CHECK_MSG(seen[i]++ == 0, "future %u came out twice", (unsigned)i);
        count++;
    }
    TH_CHECK_EQ(count, N);
    conc_as_completed_destroy(ac);
    for (int i = 0; i < N; i++)
        conc_future_release(many[i]);
    conc_future_release(a);
    conc_future_release(b);
}

static void future_as_completed_destroy_early(void) {
    conc_future_t *fs[3];
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_future_create(&fs[i]), 0);
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, fs, 3), 0);
    conc_as_completed_destroy(ac); /* unlinks its nodes: completing later touches nothing */
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(conc_future_complete(fs[i], 0, NULL), 0);
        conc_future_release(fs[i]);
    }
    TH_CHECK_EQ(conc_as_completed_create(&ac, NULL, 0), 0);
    conc_future_t *got;
    TH_CHECK_EQ(conc_as_completed_next(ac, &got), EPIPE);
    conc_as_completed_destroy(ac);
}

/* ---------------------------------------------------------------------------------------------
 * Unit: executor
 * ------------------------------------------------------------------------------------------- */
static void executor_create_errors(void) {
    conc_executor_t *ex = (conc_executor_t *)1;
    TH_CHECK_EQ(conc_executor_create(&ex, 70000, 4), EINVAL);
    TH_CHECK(ex == NULL);
    TH_CHECK_EQ(conc_executor_create(&ex, 0, 0), 0);
    TH_CHECK_EQ(conc_executor_threads(ex), (unsigned)conc_cpu_count());
    TH_CHECK_EQ(conc_executor_queue_size(ex), 0);
    conc_executor_destroy(ex);
    conc_executor_destroy(NULL);
}

static void executor_submit_runs_task(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 3, 8), 0);
    int value = 5;
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_executor_submit(ex, task_echo, &value, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK(conc_future_result(f) == &value);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_fail, (void *)(intptr_t)EDOM, &g), 0);
    TH_CHECK_EQ(conc_future_wait(g), EDOM);
    TH_CHECK_EQ(conc_future_state(g), CONC_FUTURE_FAILED);
    TH_CHECK(conc_future_result(g) == NULL);
    TH_CHECK_EQ(conc_future_cancel(g), EBUSY);
    __atomic_store_n(&noop_runs, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < 100; i++) /* fire and forget: no future */
        TH_CHECK_EQ(conc_executor_submit(ex, task_count, NULL, NULL), 0);
    conc_executor_destroy(ex); /* finishes queued work */
    TH_CHECK_EQ(CNT_GET(&noop_runs), 100);
    conc_future_release(f);
    conc_future_release(g);
}

static void executor_try_submit_full_eagain(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 2), 0);
    conc_future_t *gate, *busy, *q1, *q2, *none = (conc_future_t *)1;
    TH_CHECK_EQ(conc_future_create(&gate), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate, gate, &busy), 0);
    while (conc_future_state(busy) != CONC_FUTURE_RUNNING) /* the worker took it */
        sched_yield();
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &q1), 0);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &q2), 0);
    TH_CHECK_EQ(conc_executor_queue_size(ex), 2);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &none), EAGAIN);
    TH_CHECK(none == NULL);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    TH_CHECK_EQ(conc_future_wait(busy), 0);
    TH_CHECK_EQ(conc_future_wait(q1), 0);
    TH_CHECK_EQ(conc_future_wait(q2), 0);
    conc_executor_destroy(ex);
    conc_future_release(gate);
    conc_future_release(busy);
    conc_future_release(q1);
    conc_future_release(q2);
}

/* A capacity bounds the queue, not staging (executor.h CAVEATS): one worker, capacity 16.
 * While the worker runs `first`, 16 tasks fill the queue; when it ends, one refill moves
 * them all to staging and the worker starts the oldest, `second`, which blocks: 15 staged
 * tasks wait, the queue is empty, and it takes exactly 16 more before try_submit says EAGAIN
 * again. Every task runs once, the staged ones before the queued ones. */
static void executor_bound_is_the_queue_staging_beside_it(void) {
    enum { CAP = 16 };
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, CAP), 0);
    conc_future_t *gate1, *gate2, *first, *second, *none = (conc_future_t *)1;
    conc_future_t *staged[CAP - 1], *queued[CAP];
    TH_CHECK_EQ(conc_future_create(&gate1), 0);
    TH_CHECK_EQ(conc_future_create(&gate2), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate, gate1, &first), 0);
    while (conc_future_state(first) != CONC_FUTURE_RUNNING)
        sched_yield();
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_gate, gate2, &second), 0);
    for (int i = 0; i < CAP - 1; i++)
        TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &staged[i]), 0);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &none), EAGAIN);
    TH_CHECK(none == NULL);
    TH_CHECK_EQ(conc_future_complete(gate1, 0, NULL), 0);
    while (conc_future_state(second) != CONC_FUTURE_RUNNING) /* after the refill */
        sched_yield();
    for (int i = 0; i < CAP; i++)
        TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &queued[i]), 0);
    none = (conc_future_t *)1;
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &none), EAGAIN);
    TH_CHECK(none == NULL);
    TH_CHECK_EQ(conc_executor_queue_size(ex), (size_t)(2 * CAP - 1));
    for (int i = 0; i < CAP - 1; i++)
        TH_CHECK_EQ(conc_future_state(staged[i]), CONC_FUTURE_PENDING);
    TH_CHECK_EQ(conc_future_complete(gate2, 0, NULL), 0);
    TH_CHECK_EQ(conc_future_wait(queued[CAP - 1]), 0); /* the last submitted: one worker, FIFO */
    for (int i = 0; i < CAP - 1; i++) {
        TH_CHECK_EQ(conc_future_state(staged[i]), CONC_FUTURE_DONE);
        conc_future_release(staged[i]);
    }
    for (int i = 0; i < CAP; i++) {
        TH_CHECK_EQ(conc_future_state(queued[i]), CONC_FUTURE_DONE);
        conc_future_release(queued[i]);
    }
    TH_CHECK_EQ(conc_executor_queue_size(ex), 0);
    conc_executor_destroy(ex);
    TH_CHECK_EQ(conc_future_wait(first), 0);
    TH_CHECK_EQ(conc_future_wait(second), 0);
    conc_future_release(first);
    conc_future_release(second);
    conc_future_release(gate1);
    conc_future_release(gate2);
}

typedef struct submitter {
    conc_executor_t *ex;
    int result;
    conc_future_t *f;
    int returned;
} submitter;

static void *submit_blocking(void *p) {
    submitter *s = (submitter *)p;
    s->result = conc_executor_submit(s->ex, task_noop, NULL, &s->f);
    __atomic_store_n(&s->returned, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* One worker held inside task_gate (busy) and a capacity-1 queue holding `queued`: the
 * executor is full, and stays so until gate completes. */
static conc_executor_t *full_executor(conc_future_t **gate, conc_future_t **busy,
                                      conc_future_t **queued) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 1), 0);
    TH_CHECK_EQ(conc_future_create(gate), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate, *gate, busy), 0);
    while (conc_future_state(*busy) != CONC_FUTURE_RUNNING)
        sched_yield();
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, queued), 0);
    return ex;
}

/* Python's map(timeout=) never waits past its timeout. conc_map_next_until refills the window
 * after taking a result; it used to do that with a blocking submit, so with the executor's
 * queue full it returned the result it had only once the queue had room (here: never, a hang
 * the harness reports). Now the refill only tries, and the next call submits the input
 * first, within its own deadline. */
static void executor_map_next_until_never_waits_for_a_full_queue(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 1), 0);
    conc_map_t *m;
    TH_CHECK_EQ(conc_map_create(&m, ex, task_echo, NULL, 3, 1), 0); /* input 0 submitted */
    conc_future_t *gate, *busy, *queued;
    TH_CHECK_EQ(conc_future_create(&gate), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate, gate, &busy), 0);
    while (conc_future_state(busy) != CONC_FUTURE_RUNNING) /* so input 0, before it, is done */
        sched_yield();
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, &queued), 0); /* the queue is full */
    size_t index = 99;
    int status = -1;
    void *result = &index;
    TH_CHECK_EQ(conc_map_next_until(m, conc_deadline_in(10 * CONC_MS), &index, &status, &result),
                0);
    TH_CHECK_EQ(index, 0);
    TH_CHECK_EQ(status, 0);
    TH_CHECK(result == NULL);
    /* Input 1 found no room: its call says ETIMEDOUT and consumes nothing. */
    TH_CHECK_EQ(conc_map_next_until(m, conc_now() - 1, &index, &status, &result), ETIMEDOUT);
    TH_CHECK_EQ(conc_map_next_until(m, conc_deadline_in(CONC_MS), &index, &status, &result),
                ETIMEDOUT);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    for (size_t k = 1; k < 3; k++) {
        TH_CHECK_EQ(conc_map_next_until(m, CONC_FOREVER, &index, &status, &result), 0);
        TH_CHECK_EQ(index, k);
        TH_CHECK_EQ(status, 0);
        TH_CHECK(result == (void *)(uintptr_t)k);
    }
    TH_CHECK_EQ(conc_map_next_until(m, CONC_FOREVER, &index, &status, &result), EPIPE);
    conc_map_destroy(m);
    TH_CHECK_EQ(conc_future_wait(queued), 0);
    conc_executor_destroy(ex);
    conc_future_release(queued);
    conc_future_release(busy);
    conc_future_release(gate);
}

/* conc_map_next_until waited with the caller's deadline, then took the input as done if its
 * future was done by then, with the wait's outcome as its status: a task that ended just
 * after the wait gave up came back with status ETIMEDOUT although it returned 0. Polling
 * with a past deadline while the workers finish tasks lands completions in that gap, often
 * (hundreds of 3000 on the old code); every status must be the task's own. */
static void executor_map_next_until_status_is_the_tasks_at_its_deadline(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 64), 0);
    enum { N = 3000 };
    conc_map_t *m;
    TH_CHECK_EQ(conc_map_create(&m, ex, task_echo, NULL, N, 8), 0);
    size_t want = 0, wrong = 0, polls = 0;
    for (;;) {
        size_t index;
        int status = -1;
        void *result = NULL;
        int e = conc_map_next_until(m, 0, &index, &status, &result);
        if (e == ETIMEDOUT) {
            if (++polls % 1024 == 0)
                sched_yield(); /* a worker sharing this CPU gets to run */
            continue;
        }
        if (e == EPIPE)
            break;
        TH_CHECK_EQ(e, 0);
        TH_CHECK_EQ(index, want);
        TH_CHECK(result == (void *)(uintptr_t)index);
        wrong += status != 0;
        want++;
    }
    TH_CHECK_EQ(want, N);
    TH_CHECK_EQ(wrong, 0);
    conc_map_destroy(m);
    conc_executor_destroy(ex);
}

static void executor_submit_blocks_then_proceeds(void) {
    conc_future_t *gate, *busy, *queued;
    conc_executor_t *ex = full_executor(&gate, &busy, &queued);
    submitter s = {ex, -1, NULL, 0};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, submit_blocking, &s), 0);
    /* Full: it blocks, registered as a waiter on the queue's not_full, and does not return
     * first (a submit that returned at once, or went on without waiting, fails here). */
    while (conc__base_ec_waiters(conc_load(&ex->q->not_full, CONC_RELAXED)) == 0 &&
           !__atomic_load_n(&s.returned, __ATOMIC_ACQUIRE))
        sched_yield();
    TH_CHECK_EQ(__atomic_load_n(&s.returned, __ATOMIC_ACQUIRE), 0);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(s.result, 0);
    TH_CHECK_EQ(conc_future_wait(s.f), 0);
    conc_executor_destroy(ex);
    conc_future_release(s.f);
    conc_future_release(gate);
    conc_future_release(busy);
    conc_future_release(queued);
}

static void *shutdown_cancelling(void *p) {
    conc_executor_shutdown((conc_executor_t *)p, true);
    return NULL;
}

static void executor_shutdown_epipe_wakes_blocked_submitter(void) {
    conc_future_t *gate, *busy, *queued;
    conc_executor_t *ex = full_executor(&gate, &busy, &queued);
    submitter s = {ex, -1, (conc_future_t *)1, 0};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, submit_blocking, &s), 0);
    /* Wait until it is really blocked: registered as a waiter on the queue's not_full. */
    while (conc__base_ec_waiters(conc_load(&ex->q->not_full, CONC_RELAXED)) == 0)
        sched_yield();
    /* shutdown joins, and the worker is stuck on the gate: shut down from another thread,
     * which must first wake the blocked submitter with EPIPE and cancel the queued task. */
    pthread_t closer;
    TH_CHECK_EQ(pthread_create(&closer, NULL, shutdown_cancelling, ex), 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(s.result, EPIPE);
    TH_CHECK(s.f == NULL);
    TH_CHECK_EQ(conc_future_wait(queued), ECANCELED);
    TH_CHECK_EQ(conc_future_state(busy), CONC_FUTURE_RUNNING); /* running work is not cancelled */
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    pthread_join(closer, NULL);
    TH_CHECK_EQ(conc_future_wait(busy), 0);
    conc_executor_shutdown(ex, false);
    conc_executor_shutdown(ex, true); /* idempotent */
    conc_future_t *late = (conc_future_t *)1;
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, &late), EPIPE);
    TH_CHECK(late == NULL);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_noop, NULL, &late), EPIPE);
    size_t done = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_noop, NULL, 3, NULL, &done), EPIPE);
    TH_CHECK_EQ(done, 0);
    conc_executor_destroy(ex);
    conc_future_release(gate);
    conc_future_release(busy);
    conc_future_release(queued);
}

static void executor_shutdown_finishes_queued_work(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 256), 0);
    __atomic_store_n(&noop_runs, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < 200; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_count, NULL, NULL), 0);
    conc_executor_shutdown(ex, false); /* like Python's shutdown(wait=True): runs the queue */
    TH_CHECK_EQ(CNT_GET(&noop_runs), 200);
    conc_executor_shutdown(ex, false);
    conc_executor_destroy(ex);
}

typedef struct self_stop {
    conc_executor_t *ex;
    int returned;
} self_stop;

static int task_shutdown_self(void *arg, void **result) {
    (void)result;
    self_stop *s = (self_stop *)arg;
    conc_executor_shutdown(s->ex, true); /* must return, not join itself */
    s->returned = 1;                     /* published by the future's completion */
    return 0;
}

static void executor_shutdown_from_own_task_returns(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 8), 0);
    self_stop s = {ex, 0};
    conc_future_t *f;
    TH_CHECK_EQ(conc_executor_submit(ex, task_shutdown_self, &s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ(s.returned, 1);
    conc_future_t *late = NULL;
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, &late), EPIPE);
    conc_executor_destroy(ex); /* joins the workers the task could not join */
    conc_future_release(f);
}

static int task_destroy_self(void *arg, void **result) {
    (void)result;
    conc_executor_destroy((conc_executor_t *)arg);
    return 0;
}

static void destroy_from_own_task(void) {
    conc_executor_t *ex;
    if (conc_executor_create(&ex, 1, 4) != 0)
        _exit(3);
    conc_future_t *f;
    if (conc_executor_submit(ex, task_destroy_self, ex, &f) != 0)
        _exit(4);
    (void)conc_future_wait(f);
    _exit(5); /* not reached: destroy aborts the process */
}

/* NULL where a future or an executor belongs: an error code from every call that returns
 * one, an abort naming the call from those that cannot report it (the queries, shutdown). */
static void on_done_ignore(conc_future_t *f, void *arg) {
    (void)f;
    (void)arg;
}
static void future_is_done_on_null(void) {
    (void)conc_future_is_done(NULL);
}
static void executor_shutdown_on_null(void) {
    conc_executor_shutdown(NULL, false);
}
static void executor_threads_on_null(void) {
    (void)conc_executor_threads(NULL);
}
static void executor_queue_size_on_null(void) {
    (void)conc_executor_queue_size(NULL);
}
static void null_handles_are_einval_or_abort_naming_the_call(void) {
    TH_CHECK_EQ(conc_future_create(NULL), EINVAL);
    TH_CHECK_EQ(conc_future_complete(NULL, 0, NULL), EINVAL);
    TH_CHECK_EQ(conc_future_cancel(NULL), EINVAL);
    TH_CHECK_EQ(conc_future_wait(NULL), EINVAL);
    TH_CHECK_EQ(conc_future_wait_until(NULL, 0), EINVAL);
    TH_CHECK_EQ(conc_future_on_done(NULL, on_done_ignore, NULL), EINVAL);
    size_t index = 99;
    TH_CHECK_EQ(conc_future_wait_any(NULL, 2, 0, &index), EINVAL);
    TH_CHECK_EQ(index, 99);
    TH_CHECK_EQ(conc_future_wait_all(NULL, 2, 0), EINVAL);
    TH_CHECK_EQ(conc_as_completed_create(NULL, NULL, 0), EINVAL);
    conc_future_t *done;
    TH_CHECK_EQ(conc_future_create(&done), 0);
    TH_CHECK_EQ(conc_as_completed_add(NULL, done), EINVAL);
    conc_future_release(done);
    conc_future_t *out = (conc_future_t *)&out;
    TH_CHECK_EQ(conc_as_completed_next(NULL, &out), EINVAL);
    TH_CHECK_EQ(conc_as_completed_try_next(NULL, &out), EINVAL);
    TH_CHECK_EQ(conc_as_completed_next_until(NULL, 0, &out), EINVAL);
    TH_CHECK(out == (conc_future_t *)&out); /* nothing written */
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, NULL, 0), 0);
    TH_CHECK_EQ(conc_as_completed_next(ac, NULL), EINVAL);
    conc_as_completed_destroy(ac);
    TH_CHECK_EQ(conc_map_next(NULL, NULL, NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_map_next_until(NULL, 0, NULL, NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_executor_create(NULL, 1, 4), EINVAL);
    conc_future_t *f = (conc_future_t *)&f;
    TH_CHECK_EQ(conc_executor_submit(NULL, task_noop, NULL, &f), EINVAL);
    TH_CHECK(f == NULL);
    TH_CHECK_EQ(conc_executor_try_submit(NULL, task_noop, NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_executor_broken(NULL), EINVAL);
    size_t submitted = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(NULL, task_noop, NULL, 1, &f, &submitted), EINVAL);
    TH_CHECK_EQ(submitted, (size_t)0);
    conc_map_t *m = (conc_map_t *)&m;
    TH_CHECK_EQ(conc_map_create(&m, NULL, task_noop, NULL, 1, 1), EINVAL);
    TH_CHECK(m == NULL);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 4), 0);
    TH_CHECK_EQ(conc_map_create(NULL, ex, task_noop, NULL, 1, 1), EINVAL);
    conc_executor_destroy(ex);
    conc_executor_destroy(NULL); /* as free(NULL) */
    conc_future_release(NULL);
    struct {
        void (*fn)(void);
        const char *msg;
    } aborts[] = {{future_is_done_on_null, "conc_future_is_done: NULL future"},
                  {executor_shutdown_on_null, "conc_executor_shutdown: NULL executor"},
                  {executor_threads_on_null, "conc_executor_threads: NULL executor"},
                  {executor_queue_size_on_null, "conc_executor_queue_size: NULL executor"}};
    for (size_t i = 0; i < sizeof aborts / sizeof aborts[0]; i++) {
        fflush(stdout);
        char msg[4096];
        int status = th_run_child_capturing_stderr(aborts[i].fn, msg, sizeof msg);
        TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
        TH_CHECK_MSG(strstr(msg, aborts[i].msg) != NULL, "message: %s", msg);
    }
}

static void executor_destroy_from_own_task_aborts(void) {
    fflush(stdout);
    char msg[4096];
    int status = th_run_child_capturing_stderr(destroy_from_own_task, msg, sizeof msg);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(msg, "conc_executor_destroy: called from one of its own tasks") != NULL,
                 "message: %s", msg);
}

/* Once shutdown has joined the workers, the next thread created may get a joined worker's
 * pthread_t (glibc reuses the freed thread descriptor at once). Such a thread is no worker:
 * its destroy must free the executor, not abort as if called from a task. */
static int task_record_self(void *arg, void **result) {
    (void)result;
    *(pthread_t *)arg = pthread_self();
    return 0;
}

typedef struct reused_id {
    pthread_t worker;
    conc_executor_t *ex;
    int reused;
} reused_id;

static void *destroy_if_reused(void *arg) {
    reused_id *r = (reused_id *)arg;
    if (pthread_equal(pthread_self(), r->worker)) {
        r->reused = 1;
        conc_executor_destroy(r->ex); /* aborted here before: "called from one of its own tasks" */
    }
    return NULL;
}

static void executor_destroy_from_a_thread_with_a_joined_workers_id(void) {
    reused_id r = {0};
    TH_CHECK_EQ(conc_executor_create(&r.ex, 1, 4), 0);
    conc_future_t *f;
    TH_CHECK_EQ(conc_executor_submit(r.ex, task_record_self, &r.worker, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    conc_executor_shutdown(r.ex, false); /* joins the worker: its id is free for reuse */
    for (int i = 0; i < 100 && !r.reused; i++) {
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, destroy_if_reused, &r), 0);
        TH_CHECK_EQ(pthread_join(t, NULL), 0);
    }
    if (!r.reused) {
        conc_executor_destroy(r.ex);
        TH_SKIP("no new thread got the joined worker's id (the C library did not reuse it)");
    }
}

/* Tasks that spawn work on their own executor without waiting for it (fire and forget): with
 * every worker in such a task and the queue full, each worker slept in its submit and nothing
 * ever took a task again; Python's pool (its queue has no bound) finishes. Now the last worker
 * to block runs the oldest task itself. The spawners start together (a gate), so that both
 * workers are spawning when the queue fills: the old code then hangs every time. */
typedef struct spawners {
    conc_executor_t *ex;
    conc_sem_t started;
    conc_future_t *gate;
    long leaves;
} spawners;

static spawners spawn_state;

static int task_leaf(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&spawn_state.leaves, 1);
    return 0;
}

static int task_spawn(void *arg, void **result) {
    (void)result;
    spawners *sp = &spawn_state;
    TH_CHECK_EQ(conc_sem_release(&sp->started, 1), 0);
    TH_CHECK_EQ(conc_future_wait(sp->gate), 0);
    if (arg == NULL) {
        for (int i = 0; i < 100; i++)
            TH_CHECK_EQ(conc_executor_submit(sp->ex, task_leaf, NULL, NULL), 0);
    } else {
        size_t done = 0;
        TH_CHECK_EQ(conc_executor_submit_batch(sp->ex, task_leaf, NULL, 100, NULL, &done), 0);
        TH_CHECK_EQ(done, 100);
    }
    return 0;
}

static void executor_workers_spawning_into_a_full_queue_finish(void) {
    spawners *sp = &spawn_state;
    sp->leaves = 0;
    TH_CHECK_EQ(conc_sem_init(&sp->started, 0, 0, 0), 0);
    TH_CHECK_EQ(conc_future_create(&sp->gate), 0);
    TH_CHECK_EQ(conc_executor_create(&sp->ex, 2, 4), 0);
    conc_future_t *fs[2];
    TH_CHECK_EQ(conc_executor_submit(sp->ex, task_spawn, NULL, &fs[0]), 0);      /* submit */
    TH_CHECK_EQ(conc_executor_submit(sp->ex, task_spawn, (void *)1, &fs[1]), 0); /* batch */
    conc_sem_acquire(&sp->started);
    conc_sem_acquire(&sp->started); /* both workers hold a spawner */
    TH_CHECK_EQ(conc_future_complete(sp->gate, 0, NULL), 0);
    TH_CHECK_EQ(conc_future_wait_all(fs, 2, CONC_FOREVER), 0); /* hung here before */
    conc_executor_shutdown(sp->ex, false);
    TH_CHECK_EQ(CNT_GET(&sp->leaves), 200);
    conc_executor_destroy(sp->ex);
    conc_future_release(fs[0]);
    conc_future_release(fs[1]);
    conc_future_release(sp->gate);
}

/* Every worker waits, untimed, for a task of the executor that none is free to start: Python's
 * pool waits there too, and another thread can still end it. Here, as there, the awaited
 * task must still be pending for that thread. One worker: A takes a recursive lock, submits
 * B, and waits for B; B would take the same lock. The main thread cancels B: the cancel wins,
 * B never runs (above all not inside A's critical section, on A's own thread, where the
 * recursive lock would let it in), and A's wait ends with ECANCELED. A pool that ran B on
 * A's stack once it was stuck failed all three. The pause before the cancel only gives such
 * a pool its chance; nothing here depends on it. */
typedef struct outside_cancel {
    conc_executor_t *ex;
    conc_rlock_t lock;
    conc_event_t b_submitted;
    conc_future_t *b;     /* published before b_submitted */
    long b_ran, b_inside; /* relaxed counters */
    bool a_in_section;    /* A holds the lock (read by B on A's thread only, if ever) */
} outside_cancel;

static int task_outside_cancel_b(void *arg, void **result) {
    (void)result;
    outside_cancel *oc = (outside_cancel *)arg;
    CNT_ADD(&oc->b_ran, 1);
    conc_rlock_acquire(&oc->lock);
    if (oc->a_in_section)
        CNT_ADD(&oc->b_inside, 1);
    TH_CHECK_EQ(conc_rlock_release(&oc->lock), 0);
    return 0;
}

static int task_outside_cancel_a(void *arg, void **result) {
    (void)result;
    outside_cancel *oc = (outside_cancel *)arg;
    conc_rlock_acquire(&oc->lock);
    oc->a_in_section = true;
    TH_CHECK_EQ(conc_executor_submit(oc->ex, task_outside_cancel_b, oc, &oc->b), 0);
    conc_event_set(&oc->b_submitted);
    int r = conc_future_wait(oc->b);
    oc->a_in_section = false;
    TH_CHECK_EQ(conc_rlock_release(&oc->lock), 0);
    return r;
}

static void executor_stuck_pool_waits_for_an_outside_cancel(void) {
    for (int round = 0; round < 4; round++) {
        outside_cancel oc;
        memset(&oc, 0, sizeof oc);
        conc_rlock_init(&oc.lock);
        conc_event_init(&oc.b_submitted, 0);
        TH_CHECK_EQ(conc_executor_create(&oc.ex, 1, 0), 0);
        conc_future_t *a;
        TH_CHECK_EQ(conc_executor_submit(oc.ex, task_outside_cancel_a, &oc, &a), 0);
        conc_event_wait(&oc.b_submitted);
        th_sleep_ns(5 * CONC_MS);
        TH_CHECK_EQ(conc_future_cancel(oc.b), 0);
        TH_CHECK_EQ(conc_future_wait(a), ECANCELED);
        TH_CHECK_EQ(conc_future_state(oc.b), CONC_FUTURE_CANCELLED);
        conc_executor_shutdown(oc.ex, false);
        TH_CHECK_EQ(CNT_GET(&oc.b_ran), 0);
        TH_CHECK_EQ(CNT_GET(&oc.b_inside), 0);
        conc_future_release(a);
        conc_future_release(oc.b);
        conc_executor_destroy(oc.ex);
    }
}

/* The same way out through shutdown(cancel_pending): each of N workers runs a waiter that
 * waits, untimed, for a late task queued behind all the waiters. Another thread shuts the
 * executor down with cancel_pending: as Python's shutdown(cancel_futures=True), it cancels
 * the late tasks, every waiter gets ECANCELED, and the shutdown returns; no late task ran. */
enum { SHUT_MAX = 3 };
typedef struct stuck_shutdown {
    conc_executor_t *ex;
    conc_future_t *late[SHUT_MAX]; /* published before `submitted` is set */
    conc_event_t submitted;
    conc_sem_t waiting; /* a permit per waiter about to wait */
    long late_ran;      /* relaxed counter */
} stuck_shutdown;

static stuck_shutdown stuck_shutdown_state;

static int task_stuck_late(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&stuck_shutdown_state.late_ran, 1);
    return 0;
}

static int task_stuck_waiter(void *arg, void **result) {
    (void)result;
    stuck_shutdown *ss = &stuck_shutdown_state;
    conc_event_wait(&ss->submitted);
    TH_CHECK_EQ(conc_sem_release(&ss->waiting, 1), 0);
    return conc_future_wait(ss->late[(uintptr_t)arg]);
}

static void executor_stuck_pool_ends_at_shutdown_cancel_pending(void) {
    stuck_shutdown *ss = &stuck_shutdown_state;
    for (unsigned workers = 1; workers <= SHUT_MAX; workers++) {
        memset(ss, 0, sizeof *ss);
        conc_event_init(&ss->submitted, 0);
        TH_CHECK_EQ(conc_sem_init(&ss->waiting, 0, 0, 0), 0);
        TH_CHECK_EQ(conc_executor_create(&ss->ex, workers, 0), 0);
        conc_future_t *waiter[SHUT_MAX];
        for (unsigned i = 0; i < workers; i++)
            TH_CHECK_EQ(
                conc_executor_submit(ss->ex, task_stuck_waiter, (void *)(uintptr_t)i, &waiter[i]),
                0);
        for (unsigned i = 0; i < workers; i++)
            TH_CHECK_EQ(conc_executor_submit(ss->ex, task_stuck_late, NULL, &ss->late[i]), 0);
        conc_event_set(&ss->submitted);
        for (unsigned i = 0; i < workers; i++)
            conc_sem_acquire(&ss->waiting);
        th_sleep_ns(5 * CONC_MS); /* the waiters' chance to be in their waits; not assumed */
        conc_executor_shutdown(ss->ex, true);
        for (unsigned i = 0; i < workers; i++) {
            TH_CHECK_EQ(conc_future_wait(waiter[i]), ECANCELED);
            TH_CHECK_EQ(conc_future_state(ss->late[i]), CONC_FUTURE_CANCELLED);
            conc_future_release(waiter[i]);
            conc_future_release(ss->late[i]);
        }
        TH_CHECK_EQ(CNT_GET(&ss->late_ran), 0);
        conc_executor_destroy(ss->ex);
    }
}

/* shutdown(cancel_pending) cancels oldest first, as Python's does, wherever the tasks wait:
 * a cancelled task's callback may wait for an older task, which must be cancelled already.
 * 1) A refill that finds the cancel begun dropped the staged tasks before its own first one:
 *    one worker runs A, which submits S1, S2 (the queue's capacity) and S3..S5 (the spill);
 *    S4's callback waits for S3. S1's callback, on the shutdown thread, lets A return and waits
 *    for S5: the worker's refill moves S3..S5 and cancels them. It held S3 while S4's
 *    callback waited for it, on the same thread: for good.
 * 2) The shutdown dropped the queue before staging: one worker runs A, which waits for St,
 *    staged (older) ahead of Q, queued; Q's callback waits for St. Cancelling Q first left
 *    its callback, on the shutdown thread, waiting for St, which only that thread or the one
 *    worker (waiting in A) could drop. */
typedef struct cancel_order {
    conc_executor_t *ex;
    conc_future_t *s[6]; /* 1) S1..S5 (s[1..5]); 2) St (s[0]) */
    conc_event_t a_may_return, a_submitted;
    conc_future_t *gate; /* 2) holds the worker until everything is submitted */
} cancel_order;

static cancel_order cancel_order_state;

static void on_cancel_wait_for(conc_future_t *f, void *arg) {
    (void)f;
    TH_CHECK_EQ(conc_future_wait((conc_future_t *)arg), ECANCELED);
}

static void on_s1_cancel(conc_future_t *f, void *arg) {
    (void)f;
    (void)arg;
    cancel_order *co = &cancel_order_state;
    conc_event_set(&co->a_may_return);
    TH_CHECK_EQ(conc_future_wait(co->s[5]), ECANCELED);
}

static int task_order_a_submits(void *arg, void **result) {
    (void)arg;
    (void)result;
    cancel_order *co = &cancel_order_state;
    for (int i = 1; i <= 5; i++)
        TH_CHECK_EQ(conc_executor_submit(co->ex, task_noop, NULL, &co->s[i]), 0);
    TH_CHECK_EQ(conc_future_on_done(co->s[4], on_cancel_wait_for, co->s[3]), 0);
    TH_CHECK_EQ(conc_future_on_done(co->s[1], on_s1_cancel, NULL), 0);
    conc_event_set(&co->a_submitted);
    conc_event_wait(&co->a_may_return);
    return 0;
}

static int task_order_gate(void *arg, void **result) {
    (void)arg;
    (void)result;
    return conc_future_wait(cancel_order_state.gate);
}

static int task_order_a_waits(void *arg, void **result) {
    (void)arg;
    (void)result;
    return conc_future_wait(cancel_order_state.s[0]);
}

static void executor_shutdown_cancels_oldest_first(void) {
    cancel_order *co = &cancel_order_state;
    /* 1) the refill's order */
    memset(co, 0, sizeof *co);
    conc_event_init(&co->a_may_return, 0);
    conc_event_init(&co->a_submitted, 0);
    TH_CHECK_EQ(conc_executor_create(&co->ex, 1, 2), 0);
    conc_future_t *a;
    TH_CHECK_EQ(conc_executor_submit(co->ex, task_order_a_submits, NULL, &a), 0);
    conc_event_wait(&co->a_submitted);
    conc_executor_shutdown(co->ex, true); /* hung here before */
    TH_CHECK_EQ(conc_future_wait(a), 0);
    conc_future_release(a);
    for (int i = 1; i <= 5; i++) {
        TH_CHECK_EQ(conc_future_state(co->s[i]), CONC_FUTURE_CANCELLED);
        conc_future_release(co->s[i]);
    }
    conc_executor_destroy(co->ex);
    /* 2) the shutdown's order: a refill stages A, St and 15 more; Q stays queued */
    enum { STAGED_MORE = 15 };
    memset(co, 0, sizeof *co);
    TH_CHECK_EQ(conc_future_create(&co->gate), 0);
    TH_CHECK_EQ(conc_executor_create(&co->ex, 1, 64), 0);
    conc_future_t *gate_task, *more[STAGED_MORE], *q;
    TH_CHECK_EQ(conc_executor_submit(co->ex, task_order_gate, NULL, &gate_task), 0);
    TH_CHECK_EQ(conc_executor_submit(co->ex, task_order_a_waits, NULL, &a), 0);
    TH_CHECK_EQ(conc_executor_submit(co->ex, task_noop, NULL, &co->s[0]), 0);
    for (int i = 0; i < STAGED_MORE - 1; i++)
        TH_CHECK_EQ(conc_executor_submit(co->ex, task_noop, NULL, &more[i]), 0);
    TH_CHECK_EQ(conc_executor_submit(co->ex, task_noop, NULL, &q), 0);
    TH_CHECK_EQ(conc_future_on_done(q, on_cancel_wait_for, co->s[0]), 0);
    TH_CHECK_EQ(conc_future_complete(co->gate, 0, NULL), 0);
    TH_CHECK_EQ(conc_future_wait(gate_task), 0);
    while (conc_future_state(a) == CONC_FUTURE_PENDING) /* A starts: the refill is done */
        sched_yield();
    conc_executor_shutdown(co->ex, true); /* hung here before */
    TH_CHECK_EQ(conc_future_wait(a), ECANCELED);
    TH_CHECK_EQ(conc_future_state(q), CONC_FUTURE_CANCELLED);
    for (int i = 0; i < STAGED_MORE - 1; i++)
        conc_future_release(more[i]);
    conc_future_release(q);
    conc_future_release(co->s[0]);
    conc_future_release(a);
    conc_future_release(gate_task);
    conc_future_release(co->gate);
    conc_executor_destroy(co->ex);
}

/* A waiting worker must not start a task ahead of Python's schedule. Two workers. A submits X
 * and then B, and waits for B; X (after a pause) takes L and sets E; B takes L and waits for E.
 * Python's pool runs X on the free worker, then B: done. A waiting worker that ran B at once,
 * inline, ahead of the older X, left B holding L while waiting for E, and X blocked on L: a
 * deadlock (the watchdog's kill here). The same with a one-permit semaphore for L and
 * wait_all for the wait, and with the other worker busy in an older task R (R pauses, takes
 * L, sets E) instead of a free one: Python starts B only once R is done. The pauses only
 * give the old fault its chance; nothing here depends on them. */
typedef struct early_start {
    conc_executor_t *ex;
    int mode; /* 0: lock, wait; 1: semaphore, wait_all; 2: R on the other worker */
    conc_lock_t l;
    conc_sem_t permit;
    conc_event_t e;
} early_start;

static void early_take(early_start *es) {
    if (es->mode == 1)
        conc_sem_acquire(&es->permit);
    else
        conc_lock_acquire(&es->l);
}

static void early_give(early_start *es) {
    if (es->mode == 1)
        TH_CHECK_EQ(conc_sem_release(&es->permit, 1), 0);
    else
        conc_lock_release(&es->l);
}

static int task_early_x(void *arg, void **result) { /* X, and R */
    (void)result;
    early_start *es = (early_start *)arg;
    th_sleep_ns(20 * 1000000);
    early_take(es);
    conc_event_set(&es->e);
    early_give(es);
    return 0;
}

static int task_early_b(void *arg, void **result) {
    (void)result;
    early_start *es = (early_start *)arg;
    early_take(es);
    conc_event_wait(&es->e);
    early_give(es);
    return 0;
}

static int task_early_a(void *arg, void **result) {
    (void)result;
    early_start *es = (early_start *)arg;
    conc_future_t *fs[2] = {NULL, NULL};
    if (es->mode != 2)
        TH_CHECK_EQ(conc_executor_submit(es->ex, task_early_x, es, &fs[1]), 0);
    TH_CHECK_EQ(conc_executor_submit(es->ex, task_early_b, es, &fs[0]), 0);
    TH_CHECK_EQ(es->mode == 1 ? conc_future_wait_all(fs, 1, CONC_FOREVER) : conc_future_wait(fs[0]),
                0);
    conc_future_release(fs[0]);
    conc_future_release(fs[1]);
    return 0;
}

static void executor_deadlock_waiter_starts_no_task_early(void) {
    for (int mode = 0; mode < 3; mode++)
        for (int round = 0; round < 4; round++) {
            early_start es;
            memset(&es, 0, sizeof es);
            es.mode = mode;
            conc_lock_init(&es.l, 0);
            TH_CHECK_EQ(conc_sem_init(&es.permit, 1, 1, 0), 0);
            conc_event_init(&es.e, 0);
            TH_CHECK_EQ(conc_executor_create(&es.ex, 2, 0), 0);
            conc_future_t *r = NULL, *a;
            if (mode == 2) /* R first: the other worker is busy with it */
                TH_CHECK_EQ(conc_executor_submit(es.ex, task_early_x, &es, &r), 0);
            TH_CHECK_EQ(conc_executor_submit(es.ex, task_early_a, &es, &a), 0);
            TH_CHECK_EQ(conc_future_wait(a), 0); /* hung here before */
            if (r) {
                TH_CHECK_EQ(conc_future_wait(r), 0);
                conc_future_release(r);
            }
            conc_future_release(a);
            conc_executor_destroy(es.ex);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Tasks that submit into their own full queue: Python's queue has no bound, so such a submit
 * returns at once there; here it goes to the spill and returns at once too (see executor.h,
 * "The spill"). Each workload below finishes in Python's pool with as many workers.
 * ------------------------------------------------------------------------------------------- */
typedef struct spill_state {
    conc_executor_t *ex;
    conc_future_t *promise; /* completed by a task after its submits */
    long leaves;
    long nodes, total, depth, fan;
    conc_future_t *all_done;
} spill_state;

static spill_state spill;

static int task_spill_leaf(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&spill.leaves, 1);
    return 0;
}

static int task_spill_leaf_waits(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&spill.leaves, 1);
    return conc_future_wait(spill.promise);
}

/* Submits `arg` leaves (the queue is full after the first few), then completes the promise. */
static int task_spill_producer(void *arg, void **result) {
    (void)result;
    for (uintptr_t i = 0; i < (uintptr_t)arg; i++)
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_leaf, NULL, NULL), 0);
    return conc_future_complete(spill.promise, 0, NULL);
}

/* Python: the producer's submits return, it completes the promise, the waiter ends. Here the
 * producer waited in its submit for room that only the other worker, waiting for the
 * promise, could make: both for good. */
static void executor_task_submits_past_full_while_another_waits_for_it(void) {
    for (int round = 0; round < 50; round++) {
        spill.leaves = 0;
        TH_CHECK_EQ(conc_future_create(&spill.promise), 0);
        TH_CHECK_EQ(conc_executor_create(&spill.ex, 2, 2), 0);
        conc_future_t *waiter, *producer;
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_gate, spill.promise, &waiter), 0);
        TH_CHECK_EQ(
            conc_executor_submit(spill.ex, task_spill_producer, (void *)(uintptr_t)8, &producer),
            0);
        TH_CHECK_EQ(conc_future_wait(producer), 0);
        TH_CHECK_EQ(conc_future_wait(waiter), 0);
        conc_executor_shutdown(spill.ex, false);
        TH_CHECK_EQ(CNT_GET(&spill.leaves), 8);
        conc_executor_destroy(spill.ex);
        conc_future_release(waiter);
        conc_future_release(producer);
        conc_future_release(spill.promise);
    }
}

/* One worker, a queue of one: the task submits a leaf that waits for the promise, then another
 * leaf (the queue is full), then completes the promise. Python finishes; here the second
 * submit ran the first leaf on the producer's stack, which waited for the producer. */
static int task_spill_producer_then_promise(void *arg, void **result) {
    (void)arg;
    (void)result;
    TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_leaf_waits, NULL, NULL), 0);
    TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_leaf, NULL, NULL), 0);
    return conc_future_complete(spill.promise, 0, NULL);
}

static void executor_task_submits_past_full_then_does_what_its_leaf_waits_for(void) {
    for (int round = 0; round < 50; round++) {
        spill.leaves = 0;
        TH_CHECK_EQ(conc_future_create(&spill.promise), 0);
        TH_CHECK_EQ(conc_executor_create(&spill.ex, 1, 1), 0);
        conc_future_t *producer;
        TH_CHECK_EQ(
            conc_executor_submit(spill.ex, task_spill_producer_then_promise, NULL, &producer), 0);
        TH_CHECK_EQ(conc_future_wait(producer), 0);
        conc_executor_shutdown(spill.ex, false);
        TH_CHECK_EQ(CNT_GET(&spill.leaves), 2);
        conc_executor_destroy(spill.ex);
        conc_future_release(producer);
        conc_future_release(spill.promise);
    }
}

/* A tree: every node above the last level submits `fan` children, fire and forget. With the
 * queue full, each node run frees one slot and wants `fan`: the spill takes the rest. */
static int task_spill_node(void *arg, void **result) {
    (void)result;
    long depth = (long)(uintptr_t)arg;
    if (depth < spill.depth)
        for (long i = 0; i < spill.fan; i++)
            TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_node,
                                             (void *)(uintptr_t)(depth + 1), NULL),
                        0);
    if (__atomic_add_fetch(&spill.nodes, 1, __ATOMIC_ACQ_REL) == spill.total)
        TH_CHECK_EQ(conc_future_complete(spill.all_done, 0, NULL), 0);
    return 0;
}

static void executor_spawn_trees_past_a_full_queue_finish(void) {
    static const struct {
        unsigned workers;
        size_t capacity;
        long depth, fan;
    } trees[] = {{1, 1, 10, 2}, {2, 2, 7, 3}, {3, 1, 9, 2}, {4, 4, 5, 4}};
    for (size_t t = 0; t < sizeof trees / sizeof trees[0]; t++) {
        spill.depth = trees[t].depth;
        spill.fan = trees[t].fan;
        spill.nodes = 0;
        spill.total = 0;
        for (long level = 0, width = 1; level <= spill.depth; level++, width *= spill.fan)
            spill.total += width;
        TH_CHECK_EQ(conc_future_create(&spill.all_done), 0);
        TH_CHECK_EQ(conc_executor_create(&spill.ex, trees[t].workers, trees[t].capacity), 0);
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_node, (void *)(uintptr_t)0, NULL), 0);
        TH_CHECK_EQ(conc_future_wait(spill.all_done), 0);
        conc_executor_destroy(spill.ex);
        TH_CHECK_EQ(__atomic_load_n(&spill.nodes, __ATOMIC_ACQUIRE), spill.total);
        conc_future_release(spill.all_done);
    }
}

/* Start order across the spill: a task submitted from outside after a task's spilled submit
 * returned starts after it (Python's one FIFO), though the queue has room before the spill
 * is empty. The only worker runs `first`, which spills `spilled` behind the full queue (a, b)
 * and then says so; the test then submits `late`. */
typedef struct spill_order {
    conc_future_t *go, *spilled_said;
    int order[8];
    int n; /* under the worker's own program order: one worker */
} spill_order;

static spill_order sorder;

static int task_spill_record(void *arg, void **result) {
    (void)result;
    sorder.order[sorder.n++] = (int)(uintptr_t)arg;
    return 0;
}

static int task_spill_first(void *arg, void **result) {
    (void)arg;
    (void)result;
    TH_CHECK_EQ(conc_future_wait(sorder.go), 0);
    TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_record, (void *)(uintptr_t)3, NULL), 0);
    /* The spill holds it: a try_submit now must not jump ahead of it. */
    conc_future_t *f = (conc_future_t *)1;
    TH_CHECK_EQ(conc_executor_try_submit(spill.ex, task_spill_record, NULL, &f), EAGAIN);
    TH_CHECK(f == NULL);
    return conc_future_complete(sorder.spilled_said, 0, NULL);
}

static void executor_spilled_task_starts_before_later_outside_submits(void) {
    for (int round = 0; round < 50; round++) {
        memset(&sorder, 0, sizeof sorder);
        TH_CHECK_EQ(conc_future_create(&sorder.go), 0);
        TH_CHECK_EQ(conc_future_create(&sorder.spilled_said), 0);
        TH_CHECK_EQ(conc_executor_create(&spill.ex, 1, 2), 0);
        conc_future_t *first;
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_first, NULL, &first), 0);
        while (conc_future_state(first) != CONC_FUTURE_RUNNING)
            sched_yield();
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_record, (void *)(uintptr_t)1, NULL),
                    0);
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_record, (void *)(uintptr_t)2, NULL),
                    0);
        TH_CHECK_EQ(conc_future_complete(sorder.go, 0, NULL), 0);
        TH_CHECK_EQ(conc_future_wait(sorder.spilled_said), 0);
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_record, (void *)(uintptr_t)4, NULL),
                    0);
        conc_executor_shutdown(spill.ex, false);
        TH_CHECK_EQ(sorder.n, 4);
        for (int i = 0; i < 4; i++)
            TH_CHECK_EQ(sorder.order[i], i + 1);
        conc_executor_destroy(spill.ex);
        conc_future_release(first);
        conc_future_release(sorder.go);
        conc_future_release(sorder.spilled_said);
    }
}

/* Spilled tasks are queued tasks for shutdown: shutdown(cancel_pending) cancels them, a plain
 * shutdown runs them, and a submit from a task after shutdown began is EPIPE. */
typedef struct spill_shut {
    conc_future_t *go, *spilled_said, *fs[6];
    int late_submit; /* the task's submit after the shutdown it waited for */
} spill_shut;

static spill_shut sshut;

static int task_spill_fill(void *arg, void **result) {
    (void)arg;
    (void)result;
    TH_CHECK_EQ(conc_future_wait(sshut.go), 0);
    for (int i = 0; i < 6; i++) /* 2 fit in the queue, 4 spill */
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_leaf, NULL, &sshut.fs[i]), 0);
    TH_CHECK_EQ(conc_future_complete(sshut.spilled_said, 0, NULL), 0);
    /* Wait for the shutdown to begin (a submit from outside sees it), then submit again. */
    conc_future_t *probe;
    while (conc_executor_try_submit(spill.ex, task_noop, NULL, &probe) != EPIPE)
        sched_yield();
    sshut.late_submit = conc_executor_submit(spill.ex, task_noop, NULL, &probe);
    TH_CHECK(probe == NULL);
    return 0;
}

static void *spill_shutdown_thread(void *arg) {
    conc_executor_shutdown(spill.ex, arg != NULL);
    return NULL;
}

static void executor_shutdown_cancels_or_runs_spilled_tasks(void) {
    for (int cancel = 0; cancel < 2; cancel++) {
        spill.leaves = 0;
        memset(&sshut, 0, sizeof sshut);
        TH_CHECK_EQ(conc_future_create(&sshut.go), 0);
        TH_CHECK_EQ(conc_future_create(&sshut.spilled_said), 0);
        TH_CHECK_EQ(conc_executor_create(&spill.ex, 1, 2), 0);
        conc_future_t *filler;
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_fill, NULL, &filler), 0);
        TH_CHECK_EQ(conc_future_complete(sshut.go, 0, NULL), 0);
        TH_CHECK_EQ(conc_future_wait(sshut.spilled_said), 0);
        TH_CHECK_EQ(conc_executor_queue_size(spill.ex), 6u); /* queued and spilled */
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, spill_shutdown_thread, cancel ? (void *)1 : NULL), 0);
        pthread_join(t, NULL);
        TH_CHECK_EQ(conc_future_wait(filler), 0);
        TH_CHECK_EQ(sshut.late_submit, EPIPE);
        for (int i = 0; i < 6; i++) {
            TH_CHECK_EQ(conc_future_wait(sshut.fs[i]), cancel ? ECANCELED : 0);
            conc_future_release(sshut.fs[i]);
        }
        TH_CHECK_EQ(CNT_GET(&spill.leaves), cancel ? 0 : 6);
        conc_executor_destroy(spill.ex);
        conc_future_release(filler);
        conc_future_release(sshut.go);
        conc_future_release(sshut.spilled_said);
    }
}

/* A submit from outside that waits for the spill to empty returns EPIPE once shutdown begins,
 * also when the close comes between its last look at `closed` and its sleep (the futex hook
 * holds it there until the close is done). It used to sleep on `spilled`, which the close
 * does not change: the close's wake came before the sleep, so it slept on until the spill
 * emptied, here for good (the only worker's task waits for what that thread does after its
 * submit, as a Python producer would be free to do). */
typedef struct spill_close {
    conc_future_t *spilled_said, *submitter_done;
    int at_sleep, closed, submit;
} spill_close;

static spill_close sclose;

static int task_spill_then_wait_outside(void *arg, void **result) {
    (void)arg;
    (void)result;
    for (int i = 0; i < 2; i++) /* the first fills the queue (capacity 1), the second spills */
        TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_leaf, NULL, NULL), 0);
    TH_CHECK_EQ(conc_future_complete(sclose.spilled_said, 0, NULL), 0);
    return conc_future_wait(sclose.submitter_done); /* a promise: only the main thread ends it */
}

static void spill_close_hold(void) {
    futex_wait_hook = NULL; /* once: the wait for an empty spill */
    __atomic_store_n(&sclose.at_sleep, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&sclose.closed, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
}

static void *spill_close_submitter(void *arg) {
    (void)arg;
    conc_future_t *f = (conc_future_t *)1;
    futex_wait_hook = spill_close_hold;
    sclose.submit = conc_executor_submit(spill.ex, task_noop, NULL, &f); /* hung here before */
    futex_wait_hook = NULL;
    TH_CHECK(f == NULL);
    TH_CHECK_EQ(conc_future_complete(sclose.submitter_done, 0, NULL), 0);
    return NULL;
}

static void executor_outside_submit_waiting_for_spill_gets_epipe_at_close(void) {
    spill.leaves = 0;
    memset(&sclose, 0, sizeof sclose);
    TH_CHECK_EQ(conc_future_create(&sclose.spilled_said), 0);
    TH_CHECK_EQ(conc_future_create(&sclose.submitter_done), 0);
    TH_CHECK_EQ(conc_executor_create(&spill.ex, 1, 1), 0);
    conc_future_t *task;
    TH_CHECK_EQ(conc_executor_submit(spill.ex, task_spill_then_wait_outside, NULL, &task), 0);
    TH_CHECK_EQ(conc_future_wait(sclose.spilled_said), 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, spill_close_submitter, NULL), 0);
    while (!__atomic_load_n(&sclose.at_sleep, __ATOMIC_ACQUIRE)) /* it looked: not closed */
        th_sleep_ns(100000);
    conc_executor_shutdown_nowait(spill.ex, false);
    __atomic_store_n(&sclose.closed, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    TH_CHECK_EQ(sclose.submit, EPIPE);
    TH_CHECK_EQ(conc_future_wait(task), 0);
    conc_executor_destroy(spill.ex); /* the queued and the spilled leaf run */
    TH_CHECK_EQ(CNT_GET(&spill.leaves), 2);
    conc_future_release(task);
    conc_future_release(sclose.spilled_said);
    conc_future_release(sclose.submitter_done);
}

static long batch_sum;
static int task_add_index(void *arg, void **result) {
    CNT_ADD(&batch_sum, (long)(uintptr_t)arg);
    *result = arg;
    return 0;
}

static void executor_submit_batch_runs_all(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 3, 50), 0); /* smaller than the batch: it blocks */
    enum { N = 1000 };
    static conc_future_t *fs[N];
    size_t done = 0;
    __atomic_store_n(&batch_sum, 0, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_add_index, NULL, N, fs, &done), 0);
    TH_CHECK_EQ(done, N);
    TH_CHECK_EQ(conc_future_wait_all(fs, N, CONC_FOREVER), 0);
    for (size_t i = 0; i < N; i++) {
        TH_CHECK(conc_future_result(fs[i]) == (void *)(uintptr_t)i);
        conc_future_release(fs[i]);
    }
    TH_CHECK_EQ(CNT_GET(&batch_sum), (long)N * (N - 1) / 2);
    static int values[3] = {10, 20, 30};
    void *args[3] = {&values[0], &values[1], &values[2]};
    conc_future_t *three[3];
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_echo, args, 3, three, NULL), 0);
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(conc_future_wait(three[i]), 0);
        TH_CHECK(conc_future_result(three[i]) == &values[i]);
        conc_future_release(three[i]);
    }
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_noop, NULL, 0, NULL, NULL), 0);
    conc_executor_destroy(ex);
}

static int in_flight, max_in_flight;
static int task_square_tracked(void *arg, void **result) {
    int now = __atomic_add_fetch(&in_flight, 1, __ATOMIC_RELAXED);
    int seen = __atomic_load_n(&max_in_flight, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&max_in_flight, &seen, now, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    sched_yield();
    uintptr_t i = (uintptr_t)arg;
    *result = (void *)(i * i);
    __atomic_sub_fetch(&in_flight, 1, __ATOMIC_RELAXED);
    return i % 7 == 3 ? ERANGE : 0;
}

static void executor_map_in_order_bounded(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 4, 64), 0);
    conc_map_t *m;
    TH_CHECK_EQ(conc_map_create(&m, ex, task_square_tracked, NULL, 10, 0), EINVAL);
    TH_CHECK(m == NULL);
    enum { N = 200, WINDOW = 3 };
    __atomic_store_n(&max_in_flight, 0, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc_map_create(&m, ex, task_square_tracked, NULL, N, WINDOW), 0);
    for (size_t k = 0; k < N; k++) {
        size_t index;
        int status;
        void *result;
        TH_CHECK_EQ(conc_map_next(m, &index, &status, &result), 0);
        TH_CHECK_EQ(index, k); /* input order */
        if (k % 7 == 3) {
            TH_CHECK_EQ(status, ERANGE);
            TH_CHECK_EQ((uintptr_t)result, k * k); /* a failed input keeps its result */
        } else {
            TH_CHECK_EQ(status, 0);
            TH_CHECK_EQ((uintptr_t)result, k * k);
        }
    }
    size_t index;
    int status;
    TH_CHECK_EQ(conc_map_next(m, &index, &status, NULL), EPIPE);
    conc_map_destroy(m);
    TH_CHECK(CNT_GET(&max_in_flight) <= WINDOW);
    TH_CHECK(CNT_GET(&max_in_flight) >= 1);

    /* Timeout leaves the map as it was; destroy early cancels what is queued. */
    conc_future_t *gate, *busy;
    TH_CHECK_EQ(conc_future_create(&gate), 0);
    conc_executor_t *one;
    TH_CHECK_EQ(conc_executor_create(&one, 1, 8), 0);
    TH_CHECK_EQ(conc_executor_submit(one, task_gate, gate, &busy), 0);
    void *args[4] = {gate, gate, gate, gate};
    TH_CHECK_EQ(conc_map_create(&m, one, task_gate, args, 4, 2), 0);
    TH_CHECK_EQ(conc_map_next_until(m, conc_deadline_in(2 * CONC_MS), &index, &status, NULL),
                ETIMEDOUT);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    TH_CHECK_EQ(conc_map_next(m, &index, &status, NULL), 0);
    TH_CHECK_EQ(index, 0);
    TH_CHECK_EQ(status, 0);
    conc_map_destroy(m); /* two left, one maybe queued: cancelled or finished, then freed */
    conc_executor_shutdown(one, false);
    TH_CHECK_EQ(conc_map_create(&m, one, task_noop, NULL, 4, 2), EPIPE);
    conc_executor_destroy(one);
    conc_future_release(busy);
    conc_future_release(gate);
    conc_executor_destroy(ex);
}

/* Futures come from the executor's pool and go back to it: each one handed out again must
 * behave as new (pending, no result, no old callbacks), whatever the previous one did. */
enum { FRESH_CYCLES = 600 };
typedef struct fresh_cb {
    int runs;            /* relaxed counter: how many times the callback ran */
    int saw;             /* the outcome the callback saw (written by the one run) */
    conc_future_t *self; /* the future it was registered on */
} fresh_cb;

static void cb_fresh(conc_future_t *f, void *p) {
    fresh_cb *c = (fresh_cb *)p;
    TH_CHECK(f == c->self);
    c->saw = conc_future_wait(f);
    CNT_ADD(&c->runs, 1);
}

static void executor_recycled_futures_are_fresh(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 4), 0);
    static int values[FRESH_CYCLES];
    static fresh_cb cbs[FRESH_CYCLES];
    static conc_future_t *seen[FRESH_CYCLES];
    memset(cbs, 0, sizeof cbs);
    size_t distinct = 0;
    for (int i = 0; i < FRESH_CYCLES; i++) {
        conc_future_t *f, *gate = NULL;
        int expect;
        if (i % 10 == 9) { /* held at a gate: observably pending or running, not done */
            TH_CHECK_EQ(conc_future_create(&gate), 0);
            TH_CHECK_EQ(conc_executor_submit(ex, task_gate, gate, &f), 0);
            TH_CHECK(!conc_future_is_done(f));
            TH_CHECK(conc_future_result(f) == NULL);
            conc_future_state_t st = conc_future_state(f);
            TH_CHECK(st == CONC_FUTURE_PENDING || st == CONC_FUTURE_RUNNING);
            TH_CHECK_EQ(conc_future_wait_until(f, 0), ETIMEDOUT);
            expect = 0;
        } else if (i % 2 == 0) {
            TH_CHECK_EQ(conc_executor_submit(ex, task_echo, &values[i], &f), 0);
            expect = 0;
        } else {
            expect = 1000 + i;
            TH_CHECK_EQ(conc_executor_submit(ex, task_fail, (void *)(intptr_t)expect, &f), 0);
        }
        if (i % 3 == 0) {
            cbs[i].self = f;
            TH_CHECK_EQ(conc_future_on_done(f, cb_fresh, &cbs[i]), 0);
        }
        if (gate)
            TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
        TH_CHECK_EQ(conc_future_wait(f), expect);
        if (gate) {
            conc_future_release(gate); /* the task is done with it */
            TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
            TH_CHECK(conc_future_result(f) == NULL); /* task_gate's result: nothing */
        } else if (expect == 0) {
            TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
            TH_CHECK(conc_future_result(f) == &values[i]);
        } else {
            TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_FAILED);
            TH_CHECK(conc_future_result(f) == NULL);
        }
        TH_CHECK_EQ(conc_future_cancel(f), EBUSY);
        TH_CHECK_EQ(conc_future_complete(f, 0, NULL), EBUSY);
        size_t k = 0;
        while (k < distinct && seen[k] != f)
            k++;
        if (k == distinct)
            seen[distinct++] = f;
        conc_future_release(f);
    }
    conc_executor_destroy(ex); /* joins: every callback has run */
    for (int i = 0; i < FRESH_CYCLES; i++) {
        TH_CHECK_EQ(cbs[i].runs, i % 3 == 0 ? 1 : 0);
        if (i % 3 == 0)
            TH_CHECK_EQ(cbs[i].saw, i % 10 == 9 || i % 2 == 0 ? 0 : 1000 + i);
    }
    /* One future (two, while the worker finishes with the last) is out at a time: the pool
     * serves every cycle with a handful of objects (malloc under ASan would not reuse). */
    printf("    %zu distinct futures for %d tasks\n", distinct, FRESH_CYCLES);
    if (CONC_EXECUTOR_POOL > 0)
        TH_CHECK(distinct <= 64);
}

/* Futures outlive their executor: the pool they came from lives until the last is released,
 * in any order, from any thread, pooled (up to CONC_EXECUTOR_POOL) or malloc'd (past it). */
enum { OUTLIVE_N = 700 }; /* > CONC_EXECUTOR_POOL: both kinds */
typedef struct outlive {
    conc_executor_t *ex;
    conc_future_t *fs[OUTLIVE_N];
    int values[OUTLIVE_N];
} outlive;

static void outlive_submit_thread(int index, void *p) {
    outlive *o = (outlive *)p;
    int n = th_threads(4);
    for (int i = index; i < OUTLIVE_N; i += n)
        TH_CHECK_EQ(conc_executor_submit(o->ex, task_echo, &o->values[i], &o->fs[i]), 0);
}

static void outlive_release_thread(int index, void *p) {
    outlive *o = (outlive *)p;
    int n = th_threads(4);
    for (int i = index; i < OUTLIVE_N; i += n) {
        TH_CHECK_EQ(conc_future_wait(o->fs[i]), 0);
        TH_CHECK(conc_future_result(o->fs[i]) == &o->values[i]);
        conc_future_release(o->fs[i]);
    }
}

static void executor_futures_outlive_destroy(void) {
    static outlive o;
    for (int round = 0; round < 3; round++) {
        memset(&o, 0, sizeof o);
        TH_CHECK_EQ(conc_executor_create(&o.ex, 2, 64), 0);
        th_run_threads(th_threads(4), outlive_submit_thread, &o); /* submitters contend */
        if (round == 1) /* half released before the executor goes, half after */
            for (int i = 0; i < OUTLIVE_N; i += 2) {
                TH_CHECK_EQ(conc_future_wait(o.fs[i]), 0);
                conc_future_release(o.fs[i]);
                o.fs[i] = NULL;
            }
        conc_future_t *kept = o.fs[1];
        conc_future_retain(kept);
        conc_executor_destroy(o.ex); /* finishes the queued work: all done */
        if (round == 1) {
            for (int i = 1; i < OUTLIVE_N; i += 2) {
                TH_CHECK_EQ(conc_future_wait(o.fs[i]), 0);
                conc_future_release(o.fs[i]);
            }
        } else {
            th_run_threads(th_threads(4), outlive_release_thread, &o); /* released in parallel */
        }
        TH_CHECK(conc_future_is_done(kept)); /* the last one standing: frees the pool */
        TH_CHECK(conc_future_result(kept) == &o.values[1]);
        conc_future_release(kept);
    }
    /* Cancelled by shutdown, outliving the executor; and none out at all when it goes. */
    conc_future_t *gate, *busy, *queued[8];
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_future_create(&gate), 0);
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 8), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate, gate, &busy), 0);
    for (int i = 0; i < 8; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, &queued[i]), 0);
    while (conc_future_state(busy) != CONC_FUTURE_RUNNING)
        sched_yield();
    pthread_t t; /* cancels the 8 queued, then joins: the running task goes on */
    TH_CHECK_EQ(pthread_create(&t, NULL, shutdown_cancelling, ex), 0);
    for (int i = 0; i < 8; i++)
        TH_CHECK_EQ(conc_future_wait(queued[i]), ECANCELED);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0); /* lets the running task end */
    pthread_join(t, NULL);
    conc_executor_destroy(ex);
    TH_CHECK_EQ(conc_future_wait(busy), 0);
    for (int i = 0; i < 8; i++)
        conc_future_release(queued[i]);
    conc_future_release(busy);
    conc_future_release(gate);
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 8), 0);
    conc_executor_destroy(ex); /* never submitted to */
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 8), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, NULL), 0);
    conc_executor_destroy(ex); /* every future released before destroy */
}

/* complete() may win a future whose task is running: exactly one outcome stands, the task's
 * or complete's, and the task still runs at most once. */
enum { RACE_TASKS = 2000 };
typedef struct run_race {
    conc_executor_t *ex;
    conc_future_t *fs[RACE_TASKS];
    int ran[RACE_TASKS]; /* written by the task only */
    int won[RACE_TASKS]; /* relaxed counter: complete() calls that returned 0 */
    int task_marker, hand_marker;
    long published; /* release/acquire: fs[0..published) are set */
} run_race;

static run_race *run_race_ctx;
static int task_dawdle(void *arg, void **result) {
    long i = (long)(intptr_t)arg;
    run_race *r = run_race_ctx;
    for (long k = i % 7; k > 0; k--)
        sched_yield();
    r->ran[i] += 1;
    *result = &r->task_marker;
    return i % 5 == 0 ? EDOM : 0;
}

static void run_race_thread(int index, void *p) {
    run_race *r = (run_race *)p;
    if (index == 0) {
        for (long i = 0; i < RACE_TASKS; i++) {
            TH_CHECK_EQ(conc_executor_submit(r->ex, task_dawdle, (void *)(intptr_t)i, &r->fs[i]),
                        0);
            __atomic_store_n(&r->published, i + 1, __ATOMIC_RELEASE);
        }
        return;
    }
    th_rng rng = th_rng_make((uint64_t)index + 200);
    for (;;) {
        long published = __atomic_load_n(&r->published, __ATOMIC_ACQUIRE);
        if (published == RACE_TASKS)
            break;
        if (published < 8)
            continue;
        long k = published - 1 - (long)th_rand_below(&rng, 8);
        int status = k % 3 == 0 ? EIO : 0;
        int c = conc_future_complete(r->fs[k], status, &r->hand_marker);
        TH_CHECK(c == 0 || c == EBUSY);
        if (c == 0)
            CNT_ADD(&r->won[k], 1);
    }
}

static void executor_stress_complete_vs_running_task(void) {
    static run_race r;
    long rounds = th_iters(5);
    for (long round = 0; round < rounds; round++) {
        memset(&r, 0, sizeof r);
        run_race_ctx = &r;
        TH_CHECK_EQ(conc_executor_create(&r.ex, 3, 32), 0);
        th_run_threads(th_threads(4), run_race_thread, &r);
        conc_executor_destroy(r.ex);  /* every task ran or was pre-empted by complete */
        long hand = 0, overtaken = 0; /* complete() won a task that ran anyway */
        for (long i = 0; i < RACE_TASKS; i++) {
            int won = CNT_GET(&r.won[i]), out = conc_future_wait(r.fs[i]);
            TH_CHECK(won <= 1 && r.ran[i] <= 1);
            if (won) { /* complete's outcome, whatever the task did */
                hand++;
                overtaken += r.ran[i];
                TH_CHECK_EQ(out, i % 3 == 0 ? EIO : 0);
                TH_CHECK(conc_future_result(r.fs[i]) == &r.hand_marker); /* failed too */
            } else {                                                     /* the task's own */
                TH_CHECK_EQ(r.ran[i], 1);
                TH_CHECK_EQ(out, i % 5 == 0 ? EDOM : 0);
                TH_CHECK(conc_future_result(r.fs[i]) == &r.task_marker); /* failed too */
            }
            conc_future_release(r.fs[i]);
        }
        if (round == 0)
            printf("    %ld of %d won by complete(), %ld of them while the task ran\n", hand,
                   RACE_TASKS, overtaken);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Race stress (more threads than cores; exact invariants)
 * ------------------------------------------------------------------------------------------- */
typedef struct cancel_race {
    conc_executor_t *ex;
    conc_future_t **fs;
    int *ran;       /* plain payload: written only by the task, read after its future is done */
    int *cancelled; /* plain payload: written only by the one cancelling thread that won */
    long n;
    long published; /* how many fs[] are set; release/acquire */
} cancel_race;

static int task_mark_ran(void *arg, void **result) {
    (void)result;
    *(int *)arg += 1;
    return 0;
}

/* Thread 0 submits; the others cancel random published futures while the workers start them. */
static void cancel_race_thread(int index, void *p) {
    cancel_race *c = (cancel_race *)p;
    if (index == 0) {
        for (long i = 0; i < c->n; i++) {
            conc_future_t *f;
            TH_CHECK_EQ(conc_executor_submit(c->ex, task_mark_ran, &c->ran[i], &f), 0);
            c->fs[i] = f;
            __atomic_store_n(&c->published, i + 1, __ATOMIC_RELEASE);
        }
        return;
    }
    th_rng rng = th_rng_make((uint64_t)index + 100);
    for (;;) {
        long published = __atomic_load_n(&c->published, __ATOMIC_ACQUIRE);
        if (published == c->n)
            break;
        if (published < 64)
            continue;
        /* Aim at the newest ones: they are the ones still queued. */
        long k = published - 1 - (long)th_rand_below(&rng, 64);
        if (conc_future_cancel(c->fs[k]) == 0)
            c->cancelled[k] += 1; /* one canceller can win per future, so this is race-free */
    }
}

static void future_stress_cancel_vs_start(void) {
    cancel_race c;
    memset(&c, 0, sizeof c);
    c.n = th_iters(30000);
    TH_CHECK_EQ(conc_executor_create(&c.ex, 4, 128), 0);
    c.fs = (conc_future_t **)calloc((size_t)c.n, sizeof *c.fs);
    c.ran = (int *)calloc((size_t)c.n, sizeof *c.ran);
    c.cancelled = (int *)calloc((size_t)c.n, sizeof *c.cancelled);
    TH_CHECK(c.fs && c.ran && c.cancelled);
    th_run_threads(th_threads(8), cancel_race_thread, &c);
    conc_executor_shutdown(c.ex, false);
    long ran = 0, cancelled = 0;
    for (long i = 0; i < c.n; i++) {
        TH_CHECK_EQ(conc_future_wait(c.fs[i]), c.cancelled[i] ? ECANCELED : 0);
        TH_CHECK_MSG(c.ran[i] + c.cancelled[i] == 1, "task %ld ran %d cancelled %d", i, c.ran[i],
                     c.cancelled[i]);
        ran += c.ran[i];
        cancelled += c.cancelled[i];
        conc_future_release(c.fs[i]);
    }
    TH_CHECK_EQ(ran + cancelled, c.n);
    printf("    %ld ran, %ld cancelled\n", ran, cancelled);
    conc_executor_destroy(c.ex);
    free(c.fs);
    free(c.ran);
    free(c.cancelled);
}

/* Half the threads register callbacks on every future, the other half race to complete each
 * one: every callback runs exactly once, exactly one completer wins, and it is its value. */
enum { RACE_FUTURES = 64 };
typedef struct cb_race {
    conc_future_t *fs[RACE_FUTURES];
    int runs[RACE_FUTURES];    /* relaxed counter: callbacks run per future */
    int winners[RACE_FUTURES]; /* relaxed counter: complete() that returned 0 */
    int registrants;
} cb_race;

static void cb_count(conc_future_t *f, void *p) {
    TH_CHECK(conc_future_is_done(f));
    CNT_ADD((int *)p, 1);
}

static void cb_race_thread(int index, void *p) {
    cb_race *c = (cb_race *)p;
    th_rng rng = th_rng_make((uint64_t)index);
    for (int i = 0; i < RACE_FUTURES; i++) {
        if (th_rand_below(&rng, 4) == 0)
            sched_yield();
        if (index % 2 == 0) {
            TH_CHECK_EQ(conc_future_on_done(c->fs[i], cb_count, &c->runs[i]), 0);
        } else {
            int r = conc_future_complete(c->fs[i], 0, (void *)(intptr_t)index);
            TH_CHECK(r == 0 || r == EBUSY);
            if (r == 0)
                CNT_ADD(&c->winners[i], 1);
        }
    }
}

static void future_stress_on_done_vs_complete(void) {
    int nthreads = th_threads(8);
    if (nthreads < 2)
        nthreads = 2;
    long rounds = th_iters(100);
    for (long round = 0; round < rounds; round++) {
        cb_race c;
        memset(&c, 0, sizeof c);
        for (int i = 0; i < RACE_FUTURES; i++)
            TH_CHECK_EQ(conc_future_create(&c.fs[i]), 0);
        th_run_threads(nthreads, cb_race_thread, &c);
        for (int i = 0; i < RACE_FUTURES; i++) {
            TH_CHECK_EQ(CNT_GET(&c.runs[i]), (nthreads + 1) / 2);
            TH_CHECK_EQ(CNT_GET(&c.winners[i]), 1);
            intptr_t winner = (intptr_t)conc_future_result(c.fs[i]);
            TH_CHECK(winner % 2 == 1);
            conc_future_release(c.fs[i]);
        }
    }
}

typedef struct many_waiters {
    conc_future_t *f;
    int value;
    int woke; /* relaxed counter */
} many_waiters;

static void many_waiters_thread(int index, void *p) {
    many_waiters *m = (many_waiters *)p;
    if (index == 0) {
        for (int i = 0; i < 50; i++)
            sched_yield(); /* give the waiters a chance to sleep; nothing assumes they did */
        TH_CHECK_EQ(conc_future_complete(m->f, 0, &m->value), 0);
        TH_CHECK_EQ(conc_future_complete(m->f, 0, NULL), EBUSY);
        return;
    }
    int r = index % 2 ? conc_future_wait(m->f)
                      : conc_future_wait_until(m->f, conc_deadline_in(600 * CONC_SEC));
    TH_CHECK_EQ(r, 0);
    TH_CHECK(conc_future_result(m->f) == &m->value);
    CNT_ADD(&m->woke, 1);
}

static void future_stress_many_waiters_all_wake(void) {
    int nthreads = th_threads(12);
    long rounds = th_iters(100);
    for (long round = 0; round < rounds; round++) {
        many_waiters m;
        memset(&m, 0, sizeof m);
        TH_CHECK_EQ(conc_future_create(&m.f), 0);
        th_run_threads(nthreads, many_waiters_thread, &m);
        TH_CHECK_EQ(CNT_GET(&m.woke), nthreads - 1);
        conc_future_release(m.f);
    }
}

/* Every thread owns one reference to every future and drops it after random retain/release
 * pairs and, for one thread, a completion: the last release frees (ASan: no leak, no UAF). */
typedef struct ref_race {
    conc_future_t *fs[RACE_FUTURES];
} ref_race;

static void ref_race_thread(int index, void *p) {
    ref_race *r = (ref_race *)p;
    th_rng rng = th_rng_make((uint64_t)index + 7);
    for (int round = 0; round < 50; round++)
        for (int i = 0; i < RACE_FUTURES; i++) {
            conc_future_retain(r->fs[i]);
            if (th_rand_below(&rng, 8) == 0)
                sched_yield();
            conc_future_release(r->fs[i]);
        }
    for (int i = 0; i < RACE_FUTURES; i++) {
        if (i % th_threads(8) == index)
            TH_CHECK_EQ(conc_future_complete(r->fs[i], 0, NULL), 0);
        conc_future_release(r->fs[i]); /* this thread's own reference */
    }
}

static void future_stress_retain_release(void) {
    int nthreads = th_threads(8);
    long rounds = th_iters(40);
    for (long round = 0; round < rounds; round++) {
        ref_race r;
        for (int i = 0; i < RACE_FUTURES; i++) {
            TH_CHECK_EQ(conc_future_create(&r.fs[i]), 0);
            for (int k = 1; k < nthreads; k++)
                conc_future_retain(r.fs[i]);
        }
        th_run_threads(nthreads, ref_race_thread, &r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Deadlock stress (under the watchdog)
 * ------------------------------------------------------------------------------------------- */
typedef struct shutdown_race {
    conc_executor_t *ex;
    long submitted; /* relaxed counter */
    long target;
    bool cancel;
} shutdown_race;

static void shutdown_race_thread(int index, void *p) {
    shutdown_race *s = (shutdown_race *)p;
    if (index == 0) {
        while (CNT_GET(&s->submitted) < s->target)
            sched_yield();
        conc_executor_shutdown(s->ex, s->cancel);
        return;
    }
    for (;;) {
        conc_future_t *f;
        int r = index % 3 == 0 ? conc_executor_try_submit(s->ex, task_noop, NULL, &f)
                               : conc_executor_submit(s->ex, task_noop, NULL, &f);
        if (r == EAGAIN)
            continue;
        if (r == EPIPE) {
            TH_CHECK(f == NULL);
            break;
        }
        TH_CHECK_EQ(r, 0);
        CNT_ADD(&s->submitted, 1);
        r = conc_future_wait(f);
        TH_CHECK(r == 0 || (s->cancel && r == ECANCELED));
        conc_future_release(f);
    }
}

static void executor_deadlock_shutdown_while_submitting(void) {
    long rounds = th_iters(30);
    for (long round = 0; round < rounds; round++) {
        shutdown_race s;
        memset(&s, 0, sizeof s);
        TH_CHECK_EQ(conc_executor_create(&s.ex, 2, 4), 0);
        s.target = 200 + round * 10;
        s.cancel = round % 2;
        th_run_threads(th_threads(9), shutdown_race_thread, &s);
        conc_executor_shutdown(s.ex, true); /* again: idempotent */
        conc_executor_destroy(s.ex);
    }
}

typedef struct chain_link {
    conc_future_t *prev; /* the task owns this reference */
    long *order;         /* plain: each task writes its slot after the previous one finished */
    long index;
} chain_link;

static int task_wait_prev(void *arg, void **result) {
    chain_link *l = (chain_link *)arg;
    (void)result;
    if (l->prev) {
        int r = conc_future_wait(l->prev);
        conc_future_release(l->prev);
        if (r != 0)
            return r;
        if (l->order[l->index - 1] != l->index - 1)
            return EPROTO; /* the previous task's write must be visible: it completed */
    }
    l->order[l->index] = l->index;
    return 0;
}

static void executor_deadlock_tasks_wait_on_tasks(void) {
    long n = th_iters(3000);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 4, 16), 0);
    chain_link *links = (chain_link *)calloc((size_t)n, sizeof *links);
    long *order = (long *)calloc((size_t)n, sizeof *order);
    conc_future_t **fs = (conc_future_t **)calloc((size_t)n, sizeof *fs);
    TH_CHECK(links && order && fs);
    for (long i = 0; i < n; i++) {
        links[i].prev = i ? fs[i - 1] : NULL;
        if (links[i].prev)
            conc_future_retain(links[i].prev);
        links[i].order = order;
        links[i].index = i;
        /* FIFO: task i starts after task i-1 started, so a waiting worker always waits on a
         * task that holds another worker (or is done): no cycle. */
        TH_CHECK_EQ(conc_executor_submit(ex, task_wait_prev, &links[i], &fs[i]), 0);
    }
    TH_CHECK_EQ(conc_future_wait_all(fs, (size_t)n, CONC_FOREVER), 0);
    for (long i = 0; i < n; i++) {
        TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
        TH_CHECK_EQ(order[i], i);
        conc_future_release(fs[i]);
    }
    conc_executor_destroy(ex);
    free(links);
    free(order);
    free(fs);
}

typedef struct spawner {
    conc_executor_t *ex;
    long target;
    long spawned;   /* atomic: tasks submitted so far */
    long completed; /* atomic */
    conc_future_t *all_done;
} spawner;

static void cb_spawn_next(conc_future_t *f, void *p);

static void spawn_one(spawner *s) {
    conc_future_t *f;
    int r = conc_executor_submit(s->ex, task_noop, NULL, &f);
    TH_CHECK_EQ(r, 0);
    TH_CHECK_EQ(conc_future_on_done(f, cb_spawn_next, s), 0);
    conc_future_release(f);
}

/* Runs on a worker (or at once in the registering thread): submits the next generation. */
static void cb_spawn_next(conc_future_t *f, void *p) {
    spawner *s = (spawner *)p;
    TH_CHECK_EQ(conc_future_wait_until(f, 0), 0);
    long done = __atomic_add_fetch(&s->completed, 1, __ATOMIC_ACQ_REL);
    if (__atomic_add_fetch(&s->spawned, 1, __ATOMIC_ACQ_REL) <= s->target)
        spawn_one(s);
    if (done == s->target)
        TH_CHECK_EQ(conc_future_complete(s->all_done, 0, NULL), 0);
}

static void executor_deadlock_callbacks_submit(void) {
    spawner s;
    memset(&s, 0, sizeof s);
    TH_CHECK_EQ(conc_executor_create(&s.ex, 3, 64), 0); /* in flight <= 8 < 64: never full */
    s.target = th_iters(20000);
    TH_CHECK_EQ(conc_future_create(&s.all_done), 0);
    conc_future_retain(s.all_done); /* the completing callback's reference (kept to the end) */
    s.spawned = 8;
    for (int i = 0; i < 8; i++)
        spawn_one(&s);
    TH_CHECK_EQ(conc_future_wait(s.all_done), 0);
    conc_executor_destroy(s.ex);
    TH_CHECK_EQ(__atomic_load_n(&s.completed, __ATOMIC_ACQUIRE), s.target);
    conc_future_release(s.all_done);
    conc_future_release(s.all_done);
}

enum { ANY_N = 48 };
typedef struct any_race {
    conc_future_t *fs[ANY_N];
} any_race;

static void any_race_thread(int index, void *p) {
    any_race *a = (any_race *)p;
    if (index == 0) {
        /* the waiter: wait_any over what is left, until nothing is */
        conc_future_t *left[ANY_N];
        size_t n = ANY_N, seen[ANY_N] = {0};
        memcpy(left, a->fs, sizeof left);
        while (n > 0) {
            size_t i;
            TH_CHECK_EQ(conc_future_wait_any(left, n, CONC_FOREVER, &i), 0);
            TH_CHECK(conc_future_is_done(left[i]));
            size_t id = (size_t)conc_future_wait(left[i]) - 1000;
            TH_CHECK(id < ANY_N);
            seen[id]++;
            left[i] = left[--n];
        }
        for (size_t i = 0; i < ANY_N; i++)
            TH_CHECK_EQ(seen[i], 1);
        return;
    }
    int completers = th_threads(5) - 1;
    th_rng rng = th_rng_make((uint64_t)index + 3);
    for (int i = index - 1; i < ANY_N; i += completers) {
        if (th_rand_below(&rng, 2))
            sched_yield();
        TH_CHECK_EQ(conc_future_complete(a->fs[i], 1000 + i, NULL), 0);
    }
}

static void future_deadlock_wait_any_many_completers(void) {
    long rounds = th_iters(200);
    for (long round = 0; round < rounds; round++) {
        any_race a;
        for (int i = 0; i < ANY_N; i++)
            TH_CHECK_EQ(conc_future_create(&a.fs[i]), 0);
        th_run_threads(th_threads(5), any_race_thread, &a);
        for (int i = 0; i < ANY_N; i++)
            conc_future_release(a.fs[i]);
    }
}

static void future_deadlock_as_completed_executor(void) {
    long rounds = th_iters(20);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 6, 32), 0);
    for (long round = 0; round < rounds; round++) {
        enum { N = 300 };
        conc_future_t *fs[N];
        int seen[N] = {0};
        TH_CHECK_EQ(conc_executor_submit_batch(ex, task_echo, NULL, N, fs, NULL), 0);
        conc_as_completed_t *ac;
        TH_CHECK_EQ(conc_as_completed_create(&ac, fs, N / 2), 0);
        for (int i = N / 2; i < N; i++) /* added while completing */
            TH_CHECK_EQ(conc_as_completed_add(ac, fs[i]), 0);
        conc_future_t *f;
        int got = 0;
        while (conc_as_completed_next(ac, &f) == 0) {
            TH_CHECK_EQ(conc_future_wait_until(f, 0), 0);
            seen[(uintptr_t)conc_future_result(f)]++;
            got++;
        }
        TH_CHECK_EQ(got, N);
        for (int i = 0; i < N; i++) {
            TH_CHECK_EQ(seen[i], 1);
            conc_future_release(fs[i]);
        }
        conc_as_completed_destroy(ac);
    }
    conc_executor_destroy(ex);
}

/* ---------------------------------------------------------------------------------------------
 * Claims: no task waits behind a blocked worker's running task while another worker is free
 * (issue 9). Every workload here is one Python's ThreadPoolExecutor with the same number of
 * workers finishes (checked with python3: see the closing note); conc must finish it too, so
 * a stranded task shows as a DEADLOCK? report. Each round starts with a burst of no-op tasks:
 * a worker that keeps up with it claims up to 16 tasks at once, so the tasks that follow are
 * claimed together, behind each other.
 * ------------------------------------------------------------------------------------------- */
enum { CLAIM_WARMUP = 64 };

static void claim_warmup(conc_executor_t *ex) {
    for (int i = 0; i < CLAIM_WARMUP; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, NULL), 0);
}

/* outer_i waits for inner_i, submitted right after it. The inner future is published to the
 * outer task once its submit returns (the submitter retains it for the outer). */
typedef struct pair_job {
    conc_future_t *inner; /* atomic: NULL until published */
    int64_t timeout_ns;   /* 0: wait for ever; else give up after this long (ETIMEDOUT) */
} pair_job;

static conc_future_t *await_published(conc_future_t **slot) {
    conc_future_t *g;
    while ((g = __atomic_load_n(slot, __ATOMIC_ACQUIRE)) == NULL)
        sched_yield();
    return g;
}

static int task_outer(void *arg, void **result) {
    pair_job *j = (pair_job *)arg;
    conc_future_t *g = await_published(&j->inner);
    int r = j->timeout_ns ? conc_future_wait_until(g, conc_deadline_in(j->timeout_ns))
                          : conc_future_wait(g);
    *result = r == 0 ? conc_future_result(g) : NULL;
    conc_future_release(g);
    return r;
}

static void claim_pairs(unsigned workers, int64_t timeout_ns) {
    enum { PAIRS = 8 };
    long rounds = th_iters(60);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
    for (long round = 0; round < rounds; round++) {
        pair_job jobs[PAIRS];
        conc_future_t *outer[PAIRS], *inner[PAIRS];
        long values[PAIRS];
        claim_warmup(ex);
        for (int i = 0; i < PAIRS; i++) {
            jobs[i].inner = NULL;
            jobs[i].timeout_ns = timeout_ns;
            values[i] = round * PAIRS + i;
            TH_CHECK_EQ(conc_executor_submit(ex, task_outer, &jobs[i], &outer[i]), 0);
            TH_CHECK_EQ(conc_executor_submit(ex, task_echo, &values[i], &inner[i]), 0);
            conc_future_retain(inner[i]); /* the outer task's reference */
            __atomic_store_n(&jobs[i].inner, inner[i], __ATOMIC_RELEASE);
        }
        for (int i = 0; i < PAIRS; i++) {
            int r = conc_future_wait(outer[i]);
            if (timeout_ns == 0) {
                TH_CHECK_EQ(r, 0);
                TH_CHECK(conc_future_result(outer[i]) == &values[i]);
            } else {
                TH_CHECK(r == 0 || r == ETIMEDOUT);
            }
            TH_CHECK_EQ(conc_future_wait(inner[i]), 0);
            TH_CHECK(conc_future_result(inner[i]) == &values[i]);
            conc_future_release(outer[i]);
            conc_future_release(inner[i]);
        }
    }
    conc_executor_destroy(ex);
}

/* A task waits with a deadline (or wait_all, or a past deadline) for a queued task of its own
 * executor, which waits for an event the first sets after its wait returns. Python's pool
 * finishes it: the wait times out, the event is set, the second task runs. A timed wait
 * that ran the awaited task inline would never return. With 1 worker, and with 2
 * where the other is busy until the end. */
typedef struct timed_help {
    conc_executor_t *ex;
    conc_event_t go;
    int mode; /* 0: wait_until 5 ms; 1: a past deadline; 2: wait_all, 5 ms */
    int first_wait;
    conc_event_t release_busy;
} timed_help;

static int task_waits_for_go(void *arg, void **result) {
    (void)result;
    conc_event_wait(&((timed_help *)arg)->go);
    return 0;
}

static int task_busy_until_released(void *arg, void **result) {
    (void)result;
    conc_event_wait(&((timed_help *)arg)->release_busy);
    return 0;
}

static int task_timed_wait_then_go(void *arg, void **result) {
    (void)result;
    timed_help *h = (timed_help *)arg;
    conc_future_t *b;
    TH_CHECK_EQ(conc_executor_submit(h->ex, task_waits_for_go, h, &b), 0);
    int64_t dl = h->mode == 1 ? conc_now() - 1 : conc_deadline_in(5 * CONC_MS);
    h->first_wait = h->mode == 2 ? conc_future_wait_all(&b, 1, dl) : conc_future_wait_until(b, dl);
    conc_event_set(&h->go);
    conc_future_release(b);
    return 0;
}

static void executor_timed_wait_on_own_task_keeps_its_deadline(void) {
    for (unsigned workers = 1; workers <= 2; workers++)
        for (int mode = 0; mode < 3; mode++) {
            timed_help h;
            memset(&h, 0, sizeof h);
            conc_event_init(&h.go, 0);
            conc_event_init(&h.release_busy, 0);
            h.mode = mode;
            TH_CHECK_EQ(conc_executor_create(&h.ex, workers, 64), 0);
            conc_future_t *busy = NULL, *a;
            if (workers == 2) /* the other worker: busy until the end */
                TH_CHECK_EQ(conc_executor_submit(h.ex, task_busy_until_released, &h, &busy), 0);
            TH_CHECK_EQ(conc_executor_submit(h.ex, task_timed_wait_then_go, &h, &a), 0);
            TH_CHECK_EQ(conc_future_wait(a), 0);
            TH_CHECK_EQ(h.first_wait, ETIMEDOUT);
            conc_event_set(&h.release_busy);
            if (busy) {
                TH_CHECK_EQ(conc_future_wait(busy), 0);
                conc_future_release(busy);
            }
            conc_future_release(a);
            conc_executor_destroy(h.ex); /* finishes the second task: go is set */
        }
}

/* Threads wait in next on a set whose one future is pending; the completion goes to one of
 * them, and the others, the set now empty, get EPIPE (they slept on for good). */
typedef struct ac_race {
    conc_as_completed_t *ac;
    int result;
    conc_future_t *got;
    int started; /* relaxed: the thread is about to call next */
} ac_race;

static void *ac_next_thread(void *p) {
    ac_race *r = (ac_race *)p;
    __atomic_store_n(&r->started, 1, __ATOMIC_RELAXED);
    r->result = conc_as_completed_next(r->ac, &r->got);
    return NULL;
}

static void future_as_completed_last_taken_wakes_the_other_waiters(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, &f, 1), 0);
    enum { T = 3 };
    ac_race r[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].ac = ac;
        TH_CHECK_EQ(pthread_create(&t[i], NULL, ac_next_thread, &r[i]), 0);
    }
    for (int i = 0; i < T; i++) /* each about to call next: asleep in it or not, the same */
        while (!__atomic_load_n(&r[i].started, __ATOMIC_RELAXED))
            sched_yield();
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), 0);
    int got = 0, epipe = 0;
    for (int i = 0; i < T; i++) {
        TH_CHECK_EQ(pthread_join(t[i], NULL), 0);
        if (r[i].result == 0 && r[i].got == f)
            got++;
        else if (r[i].result == EPIPE && r[i].got == NULL)
            epipe++;
    }
    TH_CHECK_EQ(got, 1);
    TH_CHECK_EQ(epipe, T - 1);
    conc_as_completed_destroy(ac);
    conc_future_release(f);
}

/* One worker: Python's pool deadlocks on outer-waits-for-inner (its only thread waits), and
 * so does this one, so the outer waits with a deadline there, as a Python user would
 * (result(timeout=...)): the outer gives up, the inner runs. Two and four workers: Python
 * finishes with plain waits. */
static void executor_deadlock_pairs_outer_waits_inner(void) {
    claim_pairs(1, CONC_MS);
    claim_pairs(2, 0);
    claim_pairs(4, 0);
}

/* A chain: task k waits for task k + 1, submitted after it; as many workers as tasks, so
 * Python's pool finishes it (each task gets a thread). */
typedef struct chain_job {
    conc_future_t *next; /* atomic: task k + 1's future (NULL for the last, once published) */
    bool last;
} chain_job;

static int task_chain(void *arg, void **result) {
    chain_job *j = (chain_job *)arg;
    long depth = 0;
    if (!j->last) {
        conc_future_t *g = await_published(&j->next);
        int r = conc_future_wait(g);
        depth = (long)(intptr_t)conc_future_result(g) + 1;
        conc_future_release(g);
        if (r != 0)
            return r;
    }
    *result = (void *)(intptr_t)depth;
    return 0;
}

static void executor_deadlock_chains_wait_on_later_tasks(void) {
    enum { MAX_LINKS = 4 };
    for (unsigned workers = 2; workers <= MAX_LINKS; workers++) {
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
        long rounds = th_iters(40);
        for (long round = 0; round < rounds; round++) {
            chain_job jobs[MAX_LINKS];
            conc_future_t *fs[MAX_LINKS];
            claim_warmup(ex);
            for (unsigned k = 0; k < workers; k++) {
                jobs[k].next = NULL;
                jobs[k].last = k + 1 == workers;
                TH_CHECK_EQ(conc_executor_submit(ex, task_chain, &jobs[k], &fs[k]), 0);
                if (k > 0) {
                    conc_future_retain(fs[k]); /* task k - 1's reference */
                    __atomic_store_n(&jobs[k - 1].next, fs[k], __ATOMIC_RELEASE);
                }
            }
            TH_CHECK_EQ(conc_future_wait(fs[0]), 0);
            TH_CHECK_EQ((long)(intptr_t)conc_future_result(fs[0]), (long)workers - 1);
            for (unsigned k = 0; k < workers; k++) {
                TH_CHECK_EQ(conc_future_wait(fs[k]), 0);
                conc_future_release(fs[k]);
            }
        }
        conc_executor_destroy(ex);
    }
}

/* A blocked task does not hold back the tasks claimed with it: the first task of a burst
 * blocks until every other task of the burst has run, first by sleeping (nanosleep in a
 * loop), then by waiting on a promise that the last of them completes. Ordering, not time:
 * the blocker returns only after the others ran, so a stranded one is a deadlock. */
enum { BURST_OTHERS = 7 };
typedef struct burst {
    long ran;             /* atomic: the others that have run */
    conc_future_t *gate;  /* completed by the last of the others (promise mode) */
    bool sleep_mode;      /* the blocker sleeps instead of waiting on the gate */
    long seen_by_blocker; /* plain: written by the blocker, read after its future */
} burst;

typedef struct burst_arg {
    burst *b;
    bool blocker;
} burst_arg;

static int task_burst(void *arg, void **result) {
    burst_arg *a = (burst_arg *)arg;
    burst *b = a->b;
    (void)result;
    if (a->blocker) {
        if (b->sleep_mode) {
            while (__atomic_load_n(&b->ran, __ATOMIC_ACQUIRE) < BURST_OTHERS)
                th_sleep_ns(100 * CONC_US);
        } else {
            TH_CHECK_EQ(conc_future_wait(b->gate), 0);
        }
        b->seen_by_blocker = __atomic_load_n(&b->ran, __ATOMIC_ACQUIRE);
        return 0;
    }
    if (__atomic_add_fetch(&b->ran, 1, __ATOMIC_ACQ_REL) == BURST_OTHERS && !b->sleep_mode)
        TH_CHECK_EQ(conc_future_complete(b->gate, 0, NULL), 0);
    return 0;
}

static void executor_deadlock_blocked_task_does_not_hold_its_claim(void) {
    for (unsigned workers = 2; workers <= 4; workers += 2) {
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
        long rounds = th_iters(60);
        for (long round = 0; round < rounds; round++) {
            burst b = {0, NULL, round % 2 == 0, -1};
            burst_arg args[BURST_OTHERS + 1];
            void *argv[BURST_OTHERS + 1];
            conc_future_t *fs[BURST_OTHERS + 1];
            TH_CHECK_EQ(conc_future_create(&b.gate), 0);
            for (int i = 0; i <= BURST_OTHERS; i++) {
                args[i].b = &b;
                args[i].blocker = i == 0;
                argv[i] = &args[i];
            }
            claim_warmup(ex);
            TH_CHECK_EQ(
                conc_executor_submit_batch(ex, task_burst, argv, BURST_OTHERS + 1, fs, NULL), 0);
            TH_CHECK_EQ(conc_future_wait_all(fs, BURST_OTHERS + 1, CONC_FOREVER), 0);
            TH_CHECK_EQ(b.seen_by_blocker, BURST_OTHERS); /* every other ran before it ended */
            for (int i = 0; i <= BURST_OTHERS; i++) {
                TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
                conc_future_release(fs[i]);
            }
            conc_future_release(b.gate);
        }
        conc_executor_destroy(ex);
    }
}

/* Takes from staging race cancel, on_done and shutdown(cancel_pending): bursts whose first
 * task sleeps while the other workers take the rest from staging, as the test cancels tasks
 * of it and every few rounds shuts the executor down with cancel_pending (which drops what is
 * queued and staged). Each task runs or is
 * cancelled, exactly once; each callback runs exactly once; nothing is left behind. */
enum { STAGED_BURST = 16 };
typedef struct staged_task {
    long runs;      /* atomic */
    long callbacks; /* atomic */
    bool blocker;   /* a burst's first task: it sleeps while the others are taken */
} staged_task;

static int task_staged(void *arg, void **result) {
    staged_task *s = (staged_task *)arg;
    (void)result;
    CNT_ADD(&s->runs, 1);
    if (s->blocker)
        th_sleep_ns(300 * CONC_US);
    return 0;
}

static void cb_staged(conc_future_t *f, void *p) {
    (void)f;
    /* Release: the round's memset of this task follows the acquire load that sees the count,
     * so the callback's write happens before it (a relaxed pair leaves them unordered). */
    __atomic_fetch_add(&((staged_task *)p)->callbacks, 1, __ATOMIC_RELEASE);
}

static void executor_stress_staged_vs_cancel_shutdown_on_done(void) {
    long rounds = th_iters(200);
    staged_task tasks[STAGED_BURST];
    th_rng rng = th_rng_make(9);
    unsigned long refills_before = CNT_GET(&refills);
    long ran = 0, cancelled = 0;
    conc_executor_t *ex = NULL;
    for (long round = 0; round < rounds; round++) {
        if (!ex)
            TH_CHECK_EQ(conc_executor_create(&ex, 4, 64), 0);
        memset(tasks, 0, sizeof tasks);
        tasks[0].blocker = true;
        void *argv[STAGED_BURST];
        conc_future_t *fs[STAGED_BURST];
        for (int i = 0; i < STAGED_BURST; i++)
            argv[i] = &tasks[i];
        claim_warmup(ex);
        TH_CHECK_EQ(conc_executor_submit_batch(ex, task_staged, argv, STAGED_BURST, fs, NULL), 0);
        for (int i = 0; i < STAGED_BURST; i++)
            TH_CHECK_EQ(conc_future_on_done(fs[i], cb_staged, &tasks[i]), 0);
        th_sleep_ns((int64_t)th_rand_below(&rng, 400) * CONC_US);
        for (int i = 1; i < STAGED_BURST; i++)
            if (th_rand_below(&rng, 4) == 0)
                (void)conc_future_cancel(fs[i]);
        if (round % 5 == 4) {
            conc_executor_shutdown(ex, true);
            conc_executor_destroy(ex);
            ex = NULL;
        }
        TH_CHECK_EQ(conc_future_wait_all(fs, STAGED_BURST, CONC_FOREVER), 0);
        for (int i = 0; i < STAGED_BURST; i++) {
            conc_future_state_t st = conc_future_state(fs[i]);
            long runs = CNT_GET(&tasks[i].runs);
            TH_CHECK(st == CONC_FUTURE_DONE || st == CONC_FUTURE_CANCELLED);
            TH_CHECK_EQ(runs, st == CONC_FUTURE_DONE ? 1 : 0);
            /* Acquire, paired with cb_staged's release: the callback runs after the final
             * state, and the next round's memset must come after it. */
            while (__atomic_load_n(&tasks[i].callbacks, __ATOMIC_ACQUIRE) == 0)
                sched_yield();
            TH_CHECK_EQ(CNT_GET(&tasks[i].callbacks), 1);
            ran += runs;
            cancelled += st == CONC_FUTURE_CANCELLED;
            conc_future_release(fs[i]);
        }
    }
    conc_executor_destroy(ex);
    printf("    %ld ran, %ld cancelled, %lu refills\n", ran, cancelled,
           CNT_GET(&refills) - refills_before);
    TH_CHECK_EQ(ran + cancelled, rounds * STAGED_BURST);
}

/* ---------------------------------------------------------------------------------------------
 * FIFO starts (issue 9): tasks start in submission order, each on the first free worker, as in
 * Python's ThreadPoolExecutor, so tasks that block on each other through anything (a promise,
 * an event, a semaphore) finish whenever Python's pool with as many workers does.
 * ------------------------------------------------------------------------------------------- */
enum { PAIR_ROUNDS_DEFAULT = 40, PAIR_N = 8 };
typedef enum { PAIR_PROMISE, PAIR_EVENT, PAIR_SEM } pair_kind;

/* A_i blocks until B_i signals, through a promise (a future no executor runs), an event or a
 * semaphore. */
typedef struct signal_pair {
    pair_kind kind;
    conc_future_t *promise;
    conc_event_t event;
    conc_sem_t sem;
    long signalled; /* atomic: B ran */
} signal_pair;

static int task_pair_wait(void *arg, void **result) {
    signal_pair *p = (signal_pair *)arg;
    (void)result;
    switch (p->kind) {
    case PAIR_PROMISE:
        return conc_future_wait(p->promise);
    case PAIR_EVENT:
        conc_event_wait(&p->event);
        break;
    case PAIR_SEM:
        conc_sem_acquire(&p->sem);
        break;
    }
    /* Acquire: pairs with task_pair_signal's release; B signalled before A returned. */
    return __atomic_load_n(&p->signalled, __ATOMIC_ACQUIRE) == 1 ? 0 : EPROTO;
}

static int task_pair_signal(void *arg, void **result) {
    signal_pair *p = (signal_pair *)arg;
    (void)result;
    __atomic_store_n(&p->signalled, 1, __ATOMIC_RELEASE);
    switch (p->kind) {
    case PAIR_PROMISE:
        return conc_future_complete(p->promise, 0, NULL);
    case PAIR_EVENT:
        conc_event_set(&p->event);
        return 0;
    case PAIR_SEM:
        return conc_sem_release(&p->sem, 1);
    }
    return EINVAL;
}

/* Rounds of PAIR_N pairs queued A0 B0 A1 B1 ... (B first with one worker: Python's single
 * thread would wait in A0 for ever), after a burst of no-op tasks that the old per-worker
 * claims batched. Every A and B must end with 0: a task held behind a blocked worker hangs
 * the round (a DEADLOCK? report). */
static void signal_pairs(pair_kind kind, unsigned workers) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
    long rounds = th_iters(PAIR_ROUNDS_DEFAULT);
    for (long round = 0; round < rounds; round++) {
        signal_pair pairs[PAIR_N];
        conc_future_t *fs[2 * PAIR_N];
        void *argv[2 * PAIR_N];
        conc_task_fn fns[2] = {task_pair_wait, task_pair_signal};
        bool b_first = workers == 1;
        for (int i = 0; i < PAIR_N; i++) {
            signal_pair *p = &pairs[i];
            memset(p, 0, sizeof *p);
            p->kind = kind;
            if (kind == PAIR_PROMISE)
                TH_CHECK_EQ(conc_future_create(&p->promise), 0);
            conc_event_init(&p->event, 0);
            TH_CHECK_EQ(conc_sem_init(&p->sem, 0, 0, 0), 0);
            argv[2 * i] = argv[2 * i + 1] = p;
        }
        claim_warmup(ex);
        /* One batch for the lot when the round is even (the tasks arrive together), one
         * submit each when odd. */
        for (int i = 0; i < 2 * PAIR_N; i++) {
            conc_task_fn fn = fns[(i % 2) ^ (b_first ? 1 : 0)];
            if (round % 2 == 0) {
                TH_CHECK_EQ(conc_executor_submit(ex, fn, argv[i], &fs[i]), 0);
            } else {
                conc_future_t **slot = &fs[i];
                TH_CHECK_EQ(conc_executor_submit_batch(ex, fn, &argv[i], 1, slot, NULL), 0);
            }
        }
        TH_CHECK_EQ(conc_future_wait_all(fs, 2 * PAIR_N, CONC_FOREVER), 0);
        for (int i = 0; i < 2 * PAIR_N; i++) {
            TH_CHECK_EQ(conc_future_wait(fs[i]), 0); /* A saw B's signal; B's signal took */
            conc_future_release(fs[i]);
        }
        for (int i = 0; i < PAIR_N; i++)
            conc_future_release(pairs[i].promise);
    }
    conc_executor_destroy(ex);
}

static void executor_deadlock_promise_pairs(void) {
    for (unsigned workers = 1; workers <= 4; workers++)
        signal_pairs(PAIR_PROMISE, workers);
}

static void executor_deadlock_event_pairs(void) {
    for (unsigned workers = 1; workers <= 4; workers++)
        signal_pairs(PAIR_EVENT, workers);
}

static void executor_deadlock_semaphore_pairs(void) {
    for (unsigned workers = 1; workers <= 4; workers++)
        signal_pairs(PAIR_SEM, workers);
}

/* A producer outside the executor submits more tasks than the queue holds, every one waiting
 * for an event the producer sets only after its last submit (Python:
 *     futs = [ex.submit(ev.wait) for _ in range(n)]; ev.set()
 * finishes, its queue has no bound). With the default capacity (0: unbounded) no submit may
 * wait for room: the workers all wait for the event, so a submit that waited would wait for
 * good (the watchdog's DEADLOCK). Single submits, try_submits and batch submits, 1-4 workers;
 * every task runs once, after the set. */
typedef struct after_set {
    conc_event_t set;
    long ran; /* relaxed counter */
} after_set;

static int task_wait_for_set(void *arg, void **result) {
    after_set *a = (after_set *)arg;
    (void)result;
    conc_event_wait(&a->set);
    CNT_ADD(&a->ran, 1);
    return 0;
}

static void executor_deadlock_outside_producer_sets_after_submitting(void) {
    long rounds = th_iters(6);
    for (long round = 0; round < rounds; round++) {
        unsigned workers = 1u + (unsigned)(round % 4);
        size_t n = 2 * CONC_EXECUTOR_CAPACITY_DEFAULT + workers + (size_t)round * 37;
        after_set a;
        memset(&a, 0, sizeof a);
        conc_event_init(&a.set, 0);
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create(&ex, workers, 0), 0);
        conc_future_t **fs = (conc_future_t **)calloc(n, sizeof *fs);
        void **args = (void **)calloc(n, sizeof *args);
        TH_CHECK(fs != NULL && args != NULL);
        for (size_t i = 0; i < n; i++)
            args[i] = &a;
        /* Submits first, past what the queue, staging and the workers hold; then try_submits,
         * then a batch for the rest. */
        size_t i = 0, singles = CONC_EXECUTOR_CAPACITY_DEFAULT + 64 + workers, done = 0;
        for (; i < singles; i++)
            TH_CHECK_EQ(conc_executor_submit(ex, task_wait_for_set, &a, &fs[i]), 0);
        for (; i < singles + (n - singles) / 2; i++)
            TH_CHECK_EQ(conc_executor_try_submit(ex, task_wait_for_set, &a, &fs[i]), 0);
        TH_CHECK_EQ(conc_executor_submit_batch(ex, task_wait_for_set, (void *const *)args + i,
                                               n - i, fs + i, &done),
                    0);
        TH_CHECK_EQ(done, n - i);
        TH_CHECK_EQ(CNT_GET(&a.ran), 0); /* nothing passed the event before its set */
        conc_event_set(&a.set);
        TH_CHECK_EQ(conc_future_wait_all(fs, n, CONC_FOREVER), 0);
        for (size_t k = 0; k < n; k++) {
            TH_CHECK_EQ(conc_future_wait(fs[k]), 0); /* the task's status */
            conc_future_release(fs[k]);
        }
        TH_CHECK_EQ(CNT_GET(&a.ran), (long)n);
        conc_executor_destroy(ex);
        free(fs);
        free(args);
    }
}

/* Start order: every task logs its start (a relaxed counter hands out log positions) and
 * then blocks on its own gate. The test releases one running task at a time, chosen at
 * random, and only then: exactly one worker is free at each step, so the next start must be
 * the oldest task not yet started, and nothing else may start. */
enum { FIFO_TASKS = 24 };
typedef struct fifo_log {
    long next;              /* relaxed: log positions */
    long order[FIFO_TASKS]; /* atomic: order[k] = the k-th task to start, -1 before */
} fifo_log;

typedef struct fifo_task {
    fifo_log *log;
    long id;
    conc_future_t *gate; /* completed by the test: the task returns */
} fifo_task;

static int task_fifo(void *arg, void **result) {
    fifo_task *t = (fifo_task *)arg;
    (void)result;
    long k = CNT_ADD(&t->log->next, 1);
    if (k < FIFO_TASKS)
        __atomic_store_n(&t->log->order[k], t->id, __ATOMIC_RELAXED);
    return conc_future_wait(t->gate);
}

static long fifo_await_start(fifo_log *log, long k) {
    long id;
    while ((id = __atomic_load_n(&log->order[k], __ATOMIC_RELAXED)) < 0)
        sched_yield();
    return id;
}

static void executor_fifo_start_order(void) {
    th_rng rng = th_rng_make(17);
    for (unsigned workers = 1; workers <= 4; workers++) {
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
        long rounds = th_iters(20);
        for (long round = 0; round < rounds; round++) {
            fifo_log log;
            fifo_task tasks[FIFO_TASKS];
            void *argv[FIFO_TASKS];
            conc_future_t *fs[FIFO_TASKS];
            bool running[FIFO_TASKS] = {false};
            log.next = 0;
            for (int i = 0; i < FIFO_TASKS; i++) {
                log.order[i] = -1;
                tasks[i].log = &log;
                tasks[i].id = i;
                TH_CHECK_EQ(conc_future_create(&tasks[i].gate), 0);
                argv[i] = &tasks[i];
            }
            claim_warmup(ex);
            if (round % 2 == 0) {
                TH_CHECK_EQ(conc_executor_submit_batch(ex, task_fifo, argv, FIFO_TASKS, fs, NULL),
                            0);
            } else {
                for (int i = 0; i < FIFO_TASKS; i++)
                    TH_CHECK_EQ(conc_executor_submit(ex, task_fifo, argv[i], &fs[i]), 0);
            }
            /* The first `workers` starts are the first `workers` tasks, in any order. */
            for (long k = 0; k < (long)workers; k++) {
                long id = fifo_await_start(&log, k);
                TH_CHECK(id >= 0 && id < (long)workers && !running[id]);
                running[id] = true;
            }
            TH_CHECK_EQ(CNT_GET(&log.next), (long)workers);
            for (long k = (long)workers; k < FIFO_TASKS; k++) {
                long r;
                do
                    r = (long)th_rand_below(&rng, FIFO_TASKS);
                while (!running[r]);
                running[r] = false;
                TH_CHECK_EQ(conc_future_complete(tasks[r].gate, 0, NULL), 0);
                TH_CHECK_EQ(fifo_await_start(&log, k), k); /* the oldest not yet started */
                TH_CHECK_EQ(CNT_GET(&log.next), k + 1);    /* and nothing else */
                running[k] = true;
            }
            for (int i = 0; i < FIFO_TASKS; i++)
                if (running[i])
                    TH_CHECK_EQ(conc_future_complete(tasks[i].gate, 0, NULL), 0);
            TH_CHECK_EQ(conc_future_wait_all(fs, FIFO_TASKS, CONC_FOREVER), 0);
            for (int i = 0; i < FIFO_TASKS; i++) {
                TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
                conc_future_release(fs[i]);
                conc_future_release(tasks[i].gate);
            }
        }
        conc_executor_destroy(ex);
    }
}

/* A sleeping task does not delay the tasks queued behind it while a worker is free: the
 * sleeper sleeps in short naps until every task behind it has run, and each of those records
 * whether the sleeper was still asleep when it ran. Ordering only: a task held back until
 * the sleeper returned would leave the sleeper napping for ever (a DEADLOCK? report). */
enum { NAP_BEHIND = 12 };
typedef struct nap_round {
    long behind_ran;       /* atomic: tasks behind the sleeper that have run */
    long sleeper_awake;    /* atomic: 1 once the sleeper stopped napping */
    long ran_while_asleep; /* atomic: tasks behind that ran while it napped */
} nap_round;

typedef struct nap_arg {
    nap_round *r;
    bool sleeper;
} nap_arg;

static int task_nap(void *arg, void **result) {
    nap_arg *a = (nap_arg *)arg;
    (void)result;
    if (a->sleeper) {
        while (__atomic_load_n(&a->r->behind_ran, __ATOMIC_ACQUIRE) < NAP_BEHIND)
            th_sleep_ns(200 * CONC_US);
        __atomic_store_n(&a->r->sleeper_awake, 1, __ATOMIC_RELEASE);
        return 0;
    }
    if (__atomic_load_n(&a->r->sleeper_awake, __ATOMIC_ACQUIRE) == 0)
        CNT_ADD(&a->r->ran_while_asleep, 1);
    __atomic_add_fetch(&a->r->behind_ran, 1, __ATOMIC_RELEASE);
    return 0;
}

static void executor_sleeping_task_does_not_delay_later_ones(void) {
    for (unsigned workers = 2; workers <= 4; workers++) {
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create(&ex, workers, 256), 0);
        long rounds = th_iters(20);
        for (long round = 0; round < rounds; round++) {
            nap_round r = {0, 0, 0};
            nap_arg args[NAP_BEHIND + 1];
            void *argv[NAP_BEHIND + 1];
            conc_future_t *fs[NAP_BEHIND + 1];
            for (int i = 0; i <= NAP_BEHIND; i++) {
                args[i].r = &r;
                args[i].sleeper = i == 0;
                argv[i] = &args[i];
            }
            claim_warmup(ex);
            TH_CHECK_EQ(conc_executor_submit_batch(ex, task_nap, argv, NAP_BEHIND + 1, fs, NULL),
                        0);
            TH_CHECK_EQ(conc_future_wait_all(fs, NAP_BEHIND + 1, CONC_FOREVER), 0);
            TH_CHECK_EQ(CNT_GET(&r.ran_while_asleep), NAP_BEHIND); /* every one, before it woke */
            for (int i = 0; i <= NAP_BEHIND; i++) {
                TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
                conc_future_release(fs[i]);
            }
        }
        conc_executor_destroy(ex);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The front door (issue 11): NULL and cleanup, failed results, create's limits, map's args
 * ------------------------------------------------------------------------------------------- */
static void future_release_null_is_noop(void) {
    conc_future_release(NULL);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 4), 0);
    conc_executor_shutdown(ex, false);
    conc_future_t *f = (conc_future_t *)&f; /* not NULL: submit must clear it */
    TH_CHECK_EQ(conc_executor_submit(ex, task_noop, NULL, &f), EPIPE);
    TH_CHECK(f == NULL);
    conc_future_release(f); /* the plain cleanup of a failed submit */
    conc_future_t *fs[3] = {NULL, NULL, NULL};
    size_t done = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_noop, NULL, 3, fs, &done), EPIPE);
    TH_CHECK_EQ(done, 0);
    for (int i = 0; i < 3; i++) {
        TH_CHECK(fs[i] == NULL);
        conc_future_release(fs[i]);
    }
    conc_executor_destroy(ex);
}

static char partial_detail[] = "partial";

static int task_fail_with_detail(void *arg, void **result) {
    if (arg) { /* a malloc'd detail: the waiter frees it */
        char *msg = (char *)malloc(16);
        if (msg)
            strcpy(msg, "disk full");
        *result = msg;
        return ENOSPC;
    }
    *result = partial_detail;
    return 42;
}

static void future_failed_task_keeps_result(void) {
    conc_executor_t *ex;
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 8), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_fail_with_detail, NULL, &f), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_fail_with_detail, &ex, &g), 0);
    TH_CHECK_EQ(conc_future_wait(f), 42);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_FAILED);
    TH_CHECK(conc_future_result(f) == partial_detail);
    TH_CHECK_EQ(conc_future_wait(g), ENOSPC);
    char *msg = (char *)conc_future_result(g);
    TH_CHECK(msg != NULL && strcmp(msg, "disk full") == 0);
    free(msg); /* the consumer owns the result (ASan reports a leak otherwise) */
    conc_future_release(f);
    conc_future_release(g);
    conc_future_t *c;
    TH_CHECK_EQ(conc_future_create(&c), 0);
    TH_CHECK_EQ(conc_future_cancel(c), 0);
    TH_CHECK(conc_future_result(c) == NULL); /* cancelled: no result */
    conc_future_release(c);
    conc_executor_destroy(ex);
}

/* add_done_callback(None) in Python fails only when the callback is called, and the future
 * logs it. conc_future_on_done(f, NULL, arg) returned 0 and stored the NULL: the thread that
 * completed f (an executor worker, the fork pool's monitor) then called it and the process
 * died there, far from the mistake. Now it is EINVAL at once and nothing is registered. */
static void future_on_done_null_fn_is_einval(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(conc_future_on_done(f, NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), 0);        /* nothing to call: no crash */
    TH_CHECK_EQ(conc_future_on_done(f, NULL, NULL), EINVAL); /* done: not called either */
    conc_future_release(f);
}

typedef struct gate_start {
    conc_future_t *gate;
    long started; /* atomic */
} gate_start;

static int task_gate_started(void *arg, void **result) {
    gate_start *g = (gate_start *)arg;
    (void)result;
    __atomic_store_n(&g->started, 1, __ATOMIC_RELEASE);
    return conc_future_wait(g->gate);
}

/* A NULL task function is refused where the caller can learn of it (a worker would call it):
 * EINVAL from every submit form and from conc_map_create, nothing queued, outputs cleared,
 * and the executor still runs what comes next. */
static void executor_null_task_is_einval(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 4), 0);
    conc_future_t *f = (conc_future_t *)&f; /* not NULL: submit must clear it */
    TH_CHECK_EQ(conc_executor_submit(ex, NULL, NULL, &f), EINVAL);
    TH_CHECK(f == NULL);
    f = (conc_future_t *)&f;
    TH_CHECK_EQ(conc_executor_try_submit(ex, NULL, NULL, &f), EINVAL);
    TH_CHECK(f == NULL);
    TH_CHECK_EQ(conc_executor_submit(ex, NULL, NULL, NULL), EINVAL);
    conc_future_t *fs[3] = {(conc_future_t *)&f, (conc_future_t *)&f, (conc_future_t *)&f};
    size_t submitted = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, NULL, NULL, 3, fs, &submitted), EINVAL);
    TH_CHECK_EQ(submitted, (size_t)0);
    for (int i = 0; i < 3; i++)
        TH_CHECK(fs[i] == NULL);
    conc_map_t *m = (conc_map_t *)&f;
    TH_CHECK_EQ(conc_map_create(&m, ex, NULL, NULL, 3, 2), EINVAL);
    TH_CHECK(m == NULL);
    TH_CHECK_EQ(conc_executor_queue_size(ex), (size_t)0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_echo, (void *)(uintptr_t)7, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK(conc_future_result(f) == (void *)(uintptr_t)7);
    conc_future_release(f);
    conc_executor_destroy(ex);
}

/* The start order of an unbounded executor's one worker (plain: that worker alone writes). */
typedef struct unbounded_log {
    long *order;
    long next;
} unbounded_log;
static unbounded_log *unbounded_log_current; /* set before the worker is let go */

static int task_log_order(void *arg, void **result) {
    (void)result;
    unbounded_log *log = unbounded_log_current;
    log->order[log->next++] = (long)(uintptr_t)arg;
    return 0;
}

static void executor_create_limits_match_docs(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, CONC_EXECUTOR_THREADS_MAX + 1, 4), EINVAL);
    TH_CHECK(ex == NULL);
    TH_CHECK_EQ(conc_executor_create(&ex, 1, CONC_EXECUTOR_CAPACITY_MAX + 1), EINVAL);
    TH_CHECK(ex == NULL);
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 100000), 0); /* past 65535: fine */
    conc_executor_destroy(ex);
    /* Capacity 0 is unbounded (Python's): while the only worker is held in a task, three
     * queues' worth of try_submits, submits and batch submits all go in (no EAGAIN, no
     * wait), queue_size counts them, and they run in submission order once it is free. */
    gate_start g = {NULL, 0};
    TH_CHECK_EQ(conc_future_create(&g.gate), 0);
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 0), 0);
    TH_CHECK_EQ(conc_executor_submit(ex, task_gate_started, &g, NULL), 0);
    while (__atomic_load_n(&g.started, __ATOMIC_ACQUIRE) == 0)
        sched_yield();
    enum { UNBOUNDED_TASKS = 3 * (int)CONC_EXECUTOR_CAPACITY_DEFAULT + 5 };
    static long order[UNBOUNDED_TASKS]; /* plain: the one worker writes, read after its join */
    static unbounded_log starts = {order, 0};
    static void *args[UNBOUNDED_TASKS];
    for (long i = 0; i < UNBOUNDED_TASKS; i++)
        args[i] = (void *)(uintptr_t)i;
    long i = 0;
    for (; i < UNBOUNDED_TASKS / 3; i++) /* f == NULL: fire and forget */
        TH_CHECK_EQ(conc_executor_try_submit(ex, task_log_order, args[i], NULL), 0);
    for (; i < 2 * (UNBOUNDED_TASKS / 3); i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_log_order, args[i], NULL), 0);
    size_t done = 0;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_log_order, (void *const *)(args + i),
                                           (size_t)(UNBOUNDED_TASKS - i), NULL, &done),
                0);
    TH_CHECK_EQ(done, (size_t)(UNBOUNDED_TASKS - i));
    TH_CHECK_EQ(conc_executor_queue_size(ex), (size_t)UNBOUNDED_TASKS);
    unbounded_log_current = &starts;
    TH_CHECK_EQ(conc_future_complete(g.gate, 0, NULL), 0);
    conc_executor_destroy(ex); /* runs what was queued, joins the worker */
    TH_CHECK_EQ(starts.next, (long)UNBOUNDED_TASKS);
    for (long k = 0; k < UNBOUNDED_TASKS; k++)
        if (order[k] != k) {
            TH_CHECK_EQ(order[k], k);
            break;
        }
    unbounded_log_current = NULL;
    conc_future_release(g.gate);
}

static void executor_map_reads_args_lazily(void) {
    enum { N = 6, WINDOW = 2 };
    static int values[N + 1] = {10, 11, 12, 13, 14, 15, 99};
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 8), 0);
    void **args = (void **)malloc(N * sizeof *args);
    TH_CHECK(args != NULL);
    for (int i = 0; i < N; i++)
        args[i] = &values[i];
    conc_map_t *m;
    TH_CHECK_EQ(conc_map_create(&m, ex, task_echo, args, N, WINDOW), 0);
    args[4] = &values[N]; /* input 4 is not submitted yet: it is read as changed */
    for (int i = 0; i < N; i++) {
        size_t index;
        int status;
        void *result;
        TH_CHECK_EQ(conc_map_next(m, &index, &status, &result), 0);
        TH_CHECK_EQ(index, (size_t)i);
        TH_CHECK_EQ(status, 0);
        TH_CHECK(result == (i == 4 ? &values[N] : &values[i]));
    }
    conc_map_destroy(m);
    /* Destroyed early: after it returns, args is no longer read. */
    TH_CHECK_EQ(conc_map_create(&m, ex, task_echo, args, N, WINDOW), 0);
    size_t index;
    int status;
    void *result;
    TH_CHECK_EQ(conc_map_next(m, &index, &status, &result), 0);
    TH_CHECK(index == 0 && status == 0 && result == &values[0]);
    conc_map_destroy(m);
    free(args); /* ASan: any later read would be a use after free */
    conc_executor_destroy(ex);
}

/* ---------------------------------------------------------------------------------------------
 * Issue 15's executor verbs: a failing initializer, shutdown without waiting, worker names
 * ------------------------------------------------------------------------------------------- */
typedef struct init_gate {
    conc_event_t open; /* the initializer waits for it */
    int result;        /* what the initializer then returns */
    long calls;        /* atomic */
} init_gate;

static int init_gated(void *arg) {
    init_gate *g = (init_gate *)arg;
    CNT_ADD(&g->calls, 1);
    conc_event_wait(&g->open);
    return g->result;
}

static long broken_runs; /* atomic: tasks of a broken executor that ran (must stay 0) */

static int task_count_run(void *arg, void **result) {
    (void)arg;
    (void)result;
    CNT_ADD(&broken_runs, 1);
    return 0;
}

/* One worker whose initializer waits for the test: the tasks queued meanwhile cannot start,
 * so when it fails every one of them must fail with CONC_EXECUTOR_BROKEN, never run; every
 * way of submitting then refuses with CONC_EXECUTOR_BROKEN, not EPIPE. */
static void executor_broken_initializer_fails_queued_tasks(void) {
    init_gate g = {CONC_EVENT_INIT, EIO, 0};
    conc_executor_options_t o;
    memset(&o, 0, sizeof o);
    o.threads = 1;
    o.capacity = 8;
    o.initializer = init_gated;
    o.initarg = &g;
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
    conc_future_t *fs[5];
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_count_run, NULL, &fs[i]), 0);
    TH_CHECK_EQ(conc_executor_broken(ex), 0);
    conc_event_set(&g.open); /* the initializer returns EIO */
    for (int i = 0; i < 5; i++) {
        TH_CHECK_EQ(conc_future_wait(fs[i]), CONC_EXECUTOR_BROKEN);
        TH_CHECK_EQ(conc_future_state(fs[i]), CONC_FUTURE_FAILED);
        TH_CHECK(conc_future_result(fs[i]) == NULL);
        conc_future_release(fs[i]);
    }
    TH_CHECK_EQ(CNT_GET(&broken_runs), 0);
    TH_CHECK_EQ(conc_executor_broken(ex), EIO); /* visible once a task reported the break */
    conc_future_t *f = (conc_future_t *)&f;
    TH_CHECK_EQ(conc_executor_submit(ex, task_count_run, NULL, &f), CONC_EXECUTOR_BROKEN);
    TH_CHECK(f == NULL);
    TH_CHECK_EQ(conc_executor_try_submit(ex, task_count_run, NULL, NULL), CONC_EXECUTOR_BROKEN);
    size_t done = 99;
    TH_CHECK_EQ(conc_executor_submit_batch(ex, task_count_run, NULL, 3, fs, &done),
                CONC_EXECUTOR_BROKEN);
    TH_CHECK_EQ(done, 0);
    TH_CHECK(fs[0] == NULL && fs[2] == NULL);
    conc_map_t *m = (conc_map_t *)&m;
    TH_CHECK_EQ(conc_map_create(&m, ex, task_count_run, NULL, 4, 2), CONC_EXECUTOR_BROKEN);
    TH_CHECK(m == NULL);
    conc_executor_shutdown(ex, false); /* a broken executor still shuts down and joins */
    conc_executor_destroy(ex);
    TH_CHECK_EQ(CNT_GET(&g.calls), 1);
    TH_CHECK_EQ(CNT_GET(&broken_runs), 0);
}

typedef struct nowait_blocker {
    conc_event_t started, gate;
} nowait_blocker;

static int task_block_on_gate(void *arg, void **result) {
    nowait_blocker *b = (nowait_blocker *)arg;
    conc_event_set(&b->started);
    conc_event_wait(&b->gate);
    *result = arg;
    return 0;
}

/* shutdown_nowait(ex, true): returns while a task still runs (it waits for a gate opened
 * only afterwards: a joining shutdown would hang, and the case's deadline would say so),
 * cancels what was queued behind it, refuses new work; the running task still completes,
 * and destroy joins. */
static void executor_shutdown_nowait_cancels_queued(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 16), 0);
    nowait_blocker b = {CONC_EVENT_INIT, CONC_EVENT_INIT};
    conc_future_t *running, *queued[4];
    TH_CHECK_EQ(conc_executor_submit(ex, task_block_on_gate, &b, &running), 0);
    conc_event_wait(&b.started); /* the one worker is inside the blocker */
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, task_count_run, NULL, &queued[i]), 0);
    long runs_before = CNT_GET(&broken_runs);
    conc_executor_shutdown_nowait(ex, true);
    TH_CHECK(!conc_future_is_done(running));
    for (int i = 0; i < 4; i++) {
        TH_CHECK_EQ(conc_future_wait(queued[i]), ECANCELED);
        conc_future_release(queued[i]);
    }
    conc_future_t *late;
    TH_CHECK_EQ(conc_executor_submit(ex, task_count_run, NULL, &late), EPIPE);
    conc_executor_shutdown_nowait(ex, false); /* idempotent, still does not wait */
    TH_CHECK(!conc_future_is_done(running));
    conc_event_set(&b.gate);
    TH_CHECK_EQ(conc_future_wait(running), 0);
    TH_CHECK(conc_future_result(running) == &b);
    conc_future_release(running);
    conc_executor_destroy(ex);
    TH_CHECK_EQ(CNT_GET(&broken_runs), runs_before);
}

static long named_inits; /* atomic: initializers that ran (each after its worker's naming) */

static int init_count(void *arg) {
    (void)arg;
    __atomic_fetch_add(&named_inits, 1, __ATOMIC_RELEASE);
    return 0;
}

/* How many of this process's threads carry each name in names[0..n) (from
 * /proc/self/task/<tid>/comm, what top -H and ps -L show); counts[i] gets name i's. */
static void count_thread_names(char (*names)[16], int n, int *counts) {
    for (int i = 0; i < n; i++)
        counts[i] = 0;
    DIR *d = opendir("/proc/self/task");
    TH_CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = {0}; /* d_name is at most 255 bytes */
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue; /* a thread that ended meanwhile */
        if (fgets(comm, sizeof comm, fp))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(fp);
        for (int i = 0; i < n; i++)
            if (strcmp(comm, names[i]) == 0)
                counts[i]++;
    }
    closedir(d);
}

/* Every worker carries "<prefix>_<i>", i from 0, each name once; a prefix too long for
 * Linux's 15 bytes is cut to what fits beside the largest index, the same for all. */
static void executor_worker_names_in_proc(void) {
    static const struct {
        const char *prefix;
        unsigned threads;
        const char *kept;
    } cases[] = {{"io", 3, "io"},
                 {"conc-long-worker-prefix", 4, "conc-long-wor"},  /* 13 + "_3" */
                 {"conc-long-worker-prefix", 12, "conc-long-wo"}}; /* 12 + "_11" */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        __atomic_store_n(&named_inits, 0, __ATOMIC_RELAXED);
        conc_executor_options_t o;
        memset(&o, 0, sizeof o);
        o.threads = cases[c].threads;
        o.name_prefix = cases[c].prefix;
        o.initializer = init_count;
        conc_executor_t *ex;
        TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
        /* Each worker names itself, then runs its initializer: once all have counted, all
         * are named. */
        while (__atomic_load_n(&named_inits, __ATOMIC_ACQUIRE) < (long)cases[c].threads)
            sched_yield();
        char names[16][16];
        int counts[16];
        for (unsigned i = 0; i < cases[c].threads; i++) {
            snprintf(names[i], sizeof names[i], "%s_%u", cases[c].kept, i);
            TH_CHECK_MSG(strlen(names[i]) <= 15, "%s", names[i]);
        }
        count_thread_names(names, (int)cases[c].threads, counts);
        for (unsigned i = 0; i < cases[c].threads; i++)
            TH_CHECK_MSG(counts[i] == 1, "%d threads named %s", counts[i], names[i]);
        conc_executor_destroy(ex);
    }
}

/* ---------------------------------------------------------------------------------------------
 * No call sets errno (DESIGN section 2): every error a future or executor call returns, and the
 * calls that reach the allocator or pthread_create, leave a sentinel in errno.
 * ------------------------------------------------------------------------------------------- */

static void on_done_noop(conc_future_t *f, void *arg) {
    (void)f;
    (void)arg;
}

static void future_errno_untouched(void) {
    int r = 0;
    conc_future_t *f, *g, *done_f;
    TH_CHECK_ERRNO_KEPT(r = conc_future_create(&f));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_future_create(&done_f));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait_until(f, conc_now() - 1));
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait_until(f, conc_deadline_in(CONC_MS))); /* sleeps */
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_future_on_done(f, on_done_noop, NULL)); /* a malloc'd node */
    TH_CHECK_EQ(r, 0);
    conc_future_t *many[CONC__FUTURE_ANY_STACK_NODES + 1]; /* wait_any's scratch: the heap */
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        many[i] = f;
    size_t index = 0;
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait_any(many, sizeof many / sizeof many[0],
                                                 conc_deadline_in(CONC_MS), &index));
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait_any(many, 0, CONC_FOREVER, &index));
    TH_CHECK_EQ(r, EINVAL);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait_all(many, 2, conc_deadline_in(CONC_MS)));
    TH_CHECK_EQ(r, ETIMEDOUT);
    conc_as_completed_t *ac = NULL;
    TH_CHECK_ERRNO_KEPT(r = conc_as_completed_create(&ac, many, 2));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_as_completed_next_until(ac, conc_deadline_in(CONC_MS), &g));
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(conc_as_completed_destroy(ac));
    TH_CHECK_ERRNO_KEPT(r = conc_future_cancel(f));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait(f));
    TH_CHECK_EQ(r, ECANCELED);
    TH_CHECK_ERRNO_KEPT(r = conc_future_cancel(f));
    TH_CHECK_EQ(r, EBUSY);
    TH_CHECK_ERRNO_KEPT(r = conc_future_complete(f, 0, NULL));
    TH_CHECK_EQ(r, EBUSY);
    TH_CHECK_ERRNO_KEPT(r = conc_future_complete(done_f, EIO, NULL));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait(done_f));
    TH_CHECK_EQ(r, EIO);
    TH_CHECK_ERRNO_KEPT(conc_future_release(f));
    TH_CHECK_ERRNO_KEPT(conc_future_release(done_f));

    conc_executor_t *ex = NULL;
    TH_CHECK_ERRNO_KEPT(r = conc_executor_create(&ex, CONC_EXECUTOR_THREADS_MAX + 1, 4));
    TH_CHECK_EQ(r, EINVAL);
    TH_CHECK_ERRNO_KEPT(r = conc_executor_create(&ex, 0, 0)); /* one per CPU: sysconf */
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(conc_executor_destroy(ex));
    TH_CHECK_ERRNO_KEPT(r = conc_executor_create(&ex, 1, 1));
    TH_CHECK_EQ(r, 0);
    conc_future_t *gate, *busy, *queued, *none;
    TH_CHECK_EQ(conc_future_create(&gate), 0);
    TH_CHECK_ERRNO_KEPT(r = conc_executor_submit(ex, task_gate, gate, &busy));
    TH_CHECK_EQ(r, 0);
    while (conc_future_state(busy) != CONC_FUTURE_RUNNING) /* the worker took it */
        sched_yield();
    TH_CHECK_ERRNO_KEPT(r = conc_executor_try_submit(ex, task_noop, NULL, &queued));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_executor_try_submit(ex, task_noop, NULL, &none)); /* full */
    TH_CHECK_EQ(r, EAGAIN);
    /* ENOMEM from calloc itself: a window of 2^61 futures (on a 32-bit target 2^31). */
    conc_map_t *m = NULL;
    size_t huge = TH_HUGE(61, SIZE_MAX / 2 + 1);
    TH_CHECK_ERRNO_KEPT(r = conc_map_create(&m, ex, task_noop, NULL, huge, huge));
    TH_CHECK_EQ(r, ENOMEM);
    TH_CHECK_EQ(conc_future_complete(gate, 0, NULL), 0);
    TH_CHECK_ERRNO_KEPT(r = conc_future_wait(queued));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(conc_executor_shutdown(ex, false));
    TH_CHECK_ERRNO_KEPT(r = conc_executor_submit(ex, task_noop, NULL, &none));
    TH_CHECK_EQ(r, EPIPE);
    TH_CHECK_ERRNO_KEPT(conc_executor_destroy(ex));
    conc_future_release(gate);
    conc_future_release(busy);
    conc_future_release(queued);
}

/* The same when malloc itself fails, in a process out of address space (RLIMIT_AS). The
 * sanitizers' runtimes cannot run under such a limit (their shadow and allocator regions
 * exceed it), so there the huge requests above are the allocation failures checked. */
#if !TH_SANITIZED
typedef struct hoard {
    struct hoard *next;
} hoard;
/* Where the blocks and the calls' results go: clang drops an allocation nobody reads, and then
 * calls it a success. */
static hoard *volatile oom_hoard;
static void *volatile oom_sink;

/* Exit codes name the check that failed: 10 + 2k wrong result, 11 + 2k errno changed. */
#define OOM_CHECK(k, call, out, want)                                                              \
    do {                                                                                           \
        errno = TH_ERRNO_SENTINEL;                                                                 \
        int r_ = (call);                                                                           \
        oom_sink = (void *)(out);                                                                  \
        if (errno != TH_ERRNO_SENTINEL)                                                            \
            _exit(11 + 2 * (k));                                                                   \
        if (r_ != (want))                                                                          \
            _exit(10 + 2 * (k));                                                                   \
    } while (0)

static void out_of_memory_child(void) {
    conc_future_t *pending;
    if (conc_future_create(&pending) != 0)
        _exit(2);
    conc_future_t *many[CONC__FUTURE_ANY_STACK_NODES + 1]; /* wait_any's scratch: the heap */
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        many[i] = pending;
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (!statm || fscanf(statm, "%ld", &pages) != 1)
        _exit(2);
    fclose(statm);
    /* Room for this function, and nothing like a thread stack (8 MiB). */
    rlim_t room = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)4 << 20);
    struct rlimit rl = {room, room};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        _exit(3);
    hoard *all = NULL;
    for (size_t size = 4096; size >= sizeof(hoard); size /= 2) /* every last byte */
        for (hoard *h; (h = (hoard *)malloc(size)) != NULL;) {
            h->next = all;
            all = h;
            oom_hoard = all;
        }
    conc_future_t *f = NULL;
    conc_executor_t *ex = NULL;
    conc_queue_t *q = NULL;
    conc_as_completed_t *ac = NULL;
    size_t index;
    OOM_CHECK(0, conc_future_create(&f), f, ENOMEM);
    OOM_CHECK(1, conc_queue_create(&q, 4, 8), q, ENOMEM);
    OOM_CHECK(2, conc_executor_create(&ex, 1, 4), ex, ENOMEM);
    OOM_CHECK(3, conc_future_on_done(pending, on_done_noop, NULL), pending, ENOMEM);
    OOM_CHECK(4, conc_as_completed_create(&ac, many, 1), ac, ENOMEM);
    OOM_CHECK(5, conc_future_wait_any(many, sizeof many / sizeof many[0], CONC_FOREVER, &index),
              many, ENOMEM);
    _exit(0);
}
#endif

static void future_errno_untouched_out_of_memory(void) {
#if TH_SANITIZED
    TH_SKIP("RLIMIT_AS: the sanitizer runtime needs more address space than the limit allows");
#else
    if (th_emulated())
        TH_SKIP("qemu-user does not apply RLIMIT_AS to the program it runs");
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0)
        out_of_memory_child();
    int status;
    TH_CHECK(waitpid(pid, &status, 0) == pid);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                 "out-of-memory child: status %#x (exit 10 + 2k: check k's result; 11 + 2k: "
                 "check k changed errno)",
                 status);
#endif
}

/* DESIGN.md's future.h is "futures + executor": a program that includes only conc/future.h
 * (as this file does) gets conc_executor_* too, since executor.h sits beside it. */
static int plus_one(void *arg, void **result) {
    *result = (void *)((uintptr_t)arg + 1);
    return 0;
}

static void future_header_brings_the_executor(void) {
#ifndef CONC_EXECUTOR_H
    TH_CHECK_MSG(false, "conc/future.h did not include executor.h");
#else
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 0), 0);
    conc_future_t *f;
    TH_CHECK_EQ(conc_executor_submit(ex, plus_one, (void *)(uintptr_t)41, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ((uintptr_t)conc_future_result(f), 42u);
    conc_future_release(f);
    conc_executor_destroy(ex);
#endif
}

TH_MAIN("future", TH_CASE(future_errno_untouched), TH_CASE(future_errno_untouched_out_of_memory),
        TH_CASE(future_create_is_pending), TH_CASE(future_complete_done_then_ebusy),
        TH_CASE(future_complete_failed_status), TH_CASE(future_cancel_pending_only),
        TH_CASE(future_wait_until_never_early), TH_CASE(future_wait_wakes_on_complete),
        TH_CASE(future_on_done_fifo_by_completer), TH_CASE(future_on_done_never_completed_is_freed),
        TH_CASE(future_retain_release_balance), TH_CASE(future_complete_unwaited_makes_no_syscall),
        TH_CASE(future_wait_any_and_all), TH_CASE(future_null_entry_is_einval),
        TH_CASE(future_as_completed_order), TH_CASE(future_as_completed_destroy_early),
        TH_CASE(executor_create_errors), TH_CASE(executor_submit_runs_task),
        TH_CASE(executor_try_submit_full_eagain),
        TH_CASE(executor_bound_is_the_queue_staging_beside_it),
        TH_CASE(null_handles_are_einval_or_abort_naming_the_call),
        TH_CASE(executor_submit_blocks_then_proceeds),
        TH_CASE(executor_shutdown_epipe_wakes_blocked_submitter),
        TH_CASE(executor_shutdown_finishes_queued_work),
        TH_CASE(executor_shutdown_from_own_task_returns),
        TH_CASE(executor_destroy_from_own_task_aborts), TH_CASE(executor_submit_batch_runs_all),
        TH_CASE(executor_map_in_order_bounded), TH_CASE(executor_recycled_futures_are_fresh),
        TH_CASE(executor_futures_outlive_destroy), TH_CASE_T(future_stress_cancel_vs_start, 120),
        TH_CASE_T(executor_stress_complete_vs_running_task, 120),
        TH_CASE_T(future_stress_on_done_vs_complete, 120),
        TH_CASE_T(future_stress_many_waiters_all_wake, 120),
        TH_CASE_T(future_stress_retain_release, 120),
        TH_CASE_T(executor_deadlock_shutdown_while_submitting, 120),
        TH_CASE_T(executor_deadlock_tasks_wait_on_tasks, 120),
        TH_CASE_T(executor_deadlock_callbacks_submit, 120),
        TH_CASE_T(future_deadlock_wait_any_many_completers, 120),
        TH_CASE_T(future_deadlock_as_completed_executor, 120),
        TH_CASE_T(executor_deadlock_pairs_outer_waits_inner, 120),
        TH_CASE(executor_timed_wait_on_own_task_keeps_its_deadline),
        TH_CASE(future_as_completed_last_taken_wakes_the_other_waiters),
        TH_CASE_T(executor_deadlock_chains_wait_on_later_tasks, 120),
        TH_CASE_T(executor_deadlock_blocked_task_does_not_hold_its_claim, 120),
        TH_CASE_T(executor_stress_staged_vs_cancel_shutdown_on_done, 120),
        TH_CASE_T(executor_deadlock_promise_pairs, 120),
        TH_CASE_T(executor_deadlock_event_pairs, 120),
        TH_CASE_T(executor_deadlock_outside_producer_sets_after_submitting, 120),
        TH_CASE_T(executor_deadlock_semaphore_pairs, 120),
        TH_CASE_T(executor_fifo_start_order, 120),
        TH_CASE_T(executor_sleeping_task_does_not_delay_later_ones, 120),
        TH_CASE(future_release_null_is_noop), TH_CASE(future_failed_task_keeps_result),
        TH_CASE(future_on_done_null_fn_is_einval), TH_CASE(executor_create_limits_match_docs),
        TH_CASE(executor_null_task_is_einval), TH_CASE(executor_map_reads_args_lazily),
        TH_CASE(executor_map_next_until_never_waits_for_a_full_queue),
        TH_CASE(executor_map_next_until_status_is_the_tasks_at_its_deadline),
        TH_CASE(executor_broken_initializer_fails_queued_tasks),
        TH_CASE(executor_shutdown_nowait_cancels_queued), TH_CASE(executor_worker_names_in_proc),
        TH_CASE(future_header_brings_the_executor),
        TH_CASE(executor_destroy_from_a_thread_with_a_joined_workers_id),
        TH_CASE(future_as_completed_duplicates_come_out_once),
        TH_CASE(executor_workers_spawning_into_a_full_queue_finish),
        TH_CASE_T(executor_stuck_pool_waits_for_an_outside_cancel, 60),
        TH_CASE_T(executor_stuck_pool_ends_at_shutdown_cancel_pending, 60),
        TH_CASE_T(executor_shutdown_cancels_oldest_first, 60),
        TH_CASE_T(executor_deadlock_waiter_starts_no_task_early, 120),
        TH_CASE(executor_task_submits_past_full_while_another_waits_for_it),
        TH_CASE(executor_task_submits_past_full_then_does_what_its_leaf_waits_for),
        TH_CASE(executor_spawn_trees_past_a_full_queue_finish),
        TH_CASE(executor_spilled_task_starts_before_later_outside_submits),
        TH_CASE(executor_shutdown_cancels_or_runs_spilled_tasks),
        TH_CASE(executor_outside_submit_waiting_for_spill_gets_epipe_at_close))

/* tests/test_once.c - conc_once: runs once, failures retry, recursion aborts, concurrent
 * callers sleep and see the initializer's plain writes.
 * SPDX-License-Identifier: MIT */

/* Count futex waits, to show that callers arriving during the run sleep instead of spinning;
 * not those of a thread inside fn (race_fn's own latch wait would stand in for the callers'). */
static unsigned long futex_waits;
static __thread int in_fn;
#define CONC_FUTEX_HOOK(kind)                                                                      \
    ((void)((kind) == CONC_FUTEX_HOOK_WAIT && !in_fn                                               \
                ? __atomic_fetch_add(&futex_waits, 1, __ATOMIC_RELAXED)                            \
                : 0))
#include "conc/once.h"
#include "conc/latch.h"

#include "harness.h"

#include <signal.h>

static int plain_runs; /* plain: written only by fn, which runs alone */
static int table[64];  /* plain: fn's output */

static int fill_table(void *arg) {
    int base = *(const int *)arg;
    plain_runs++;
    for (int i = 0; i < 64; i++)
        table[i] = base + i;
    return 0;
}

static void once_runs_once_then_one_load(void) {
    TH_CHECK_EQ(sizeof(conc_once_t), 8);
    conc_once_t o = CONC_ONCE_INIT;
    int base = 100;
    TH_CHECK(!conc_once_is_done(&o));
    TH_CHECK_EQ(conc_once(&o, fill_table, &base), 0);
    TH_CHECK(conc_once_is_done(&o));
    TH_CHECK_EQ(conc_once(&o, fill_table, &base), 0);
    TH_CHECK_EQ(plain_runs, 1);
    TH_CHECK_EQ(table[63], 163);
    TH_CHECK_EQ(o.state, CONC__ONCE_DONE); /* no flag left behind */
    conc_once_t s;
    conc_once_init(&s, CONC_SHARED);
    TH_CHECK_EQ(conc_once(&s, fill_table, &base), 0);
    TH_CHECK_EQ(s.state, CONC__ONCE_DONE | CONC__ONCE_SHARED);
}

static int fail_twice(void *arg) {
    int *calls = (int *)arg;
    return ++*calls <= 2 ? 7 : 0;
}

static void once_failure_is_returned_and_retried(void) {
    conc_once_t o = CONC_ONCE_INIT;
    int calls = 0;
    TH_CHECK_EQ(conc_once(&o, fail_twice, &calls), 7);
    TH_CHECK(!conc_once_is_done(&o));
    TH_CHECK_EQ(conc_once(&o, fail_twice, &calls), 7);
    TH_CHECK_EQ(conc_once(&o, fail_twice, &calls), 0);
    TH_CHECK_EQ(conc_once(&o, fail_twice, &calls), 0);
    TH_CHECK_EQ(calls, 3);
}

/* A NULL fn is EINVAL, and leaves the once as it was: it used to be called (a jump to 0). A
 * done once returns 0 without looking at fn (its fast path is one load and a compare). */
static void once_null_fn_is_einval(void) {
    conc_once_t o = CONC_ONCE_INIT;
    int calls = 2; /* fail_twice succeeds at its next call */
    TH_CHECK_EQ(conc_once(&o, NULL, NULL), EINVAL);
    TH_CHECK(!conc_once_is_done(&o));
    TH_CHECK_EQ(o.state, 0u); /* not left running */
    TH_CHECK_EQ(conc_once(&o, fail_twice, &calls), 0);
    TH_CHECK_EQ(calls, 3);
    TH_CHECK_EQ(conc_once(&o, NULL, NULL), 0);
}

static conc_once_t recursive_once = CONC_ONCE_INIT;
static int recurse(void *arg) {
    (void)arg;
    return conc_once(&recursive_once, recurse, NULL);
}
static void run_recursive(void) {
    if (conc_once(&recursive_once, recurse, NULL) != 0)
        _exit(3);
}
static void once_recursion_aborts_with_message(void) {
    char err[4096];
    int status = th_run_child_capturing_stderr(run_recursive, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, "conc_once: the init function called conc_once on its own once"),
                 "stderr: %s", err);
}

/* fn forks: in the child fn goes on, on the child's first thread, whose thread id is new.
 * Calling conc_once on its own once there is recursion and aborts, as in the parent (it used
 * to sleep forever: the check compared the parent's thread id, and nothing else can end the
 * copied run). A thread the child starts still waits for the copied run and gets its result. */
static conc_once_t forking_once = CONC_ONCE_INIT;
static bool in_waiting_child; /* plain: set in the child whose thread waits for the copied run */
static pthread_t waiting_thread;
static int fork_inside_fn(void *arg);

static void *wait_for_copied_run(void *arg) {
    (void)arg;
    return (void *)(intptr_t)conc_once(&forking_once, fork_inside_fn, NULL);
}

static int fork_inside_fn(void *arg) {
    (void)arg;
    pid_t recursing = fork();
    if (recursing == 0) {
        int r = conc_once(&forking_once, fork_inside_fn, NULL); /* must abort */
        _exit(6 + r);
    }
    pid_t waiting = fork();
    if (waiting == 0) {
        unsigned long w0 = __atomic_load_n(&futex_waits, __ATOMIC_RELAXED);
        if (pthread_create(&waiting_thread, NULL, wait_for_copied_run, NULL) != 0)
            _exit(7);
        while (__atomic_load_n(&futex_waits, __ATOMIC_RELAXED) == w0)
            sched_yield(); /* the thread sleeps on the copied run */
        in_waiting_child = true;
        return 0; /* the copied run ends: conc_once swaps DONE and wakes the thread */
    }
    int a = 0, b = 0;
    waitpid(recursing, &a, 0);
    waitpid(waiting, &b, 0);
    return (WIFSIGNALED(a) && WTERMSIG(a) == SIGABRT ? 0 : 1) |
           (WIFEXITED(b) && WEXITSTATUS(b) == 0 ? 0 : 2);
}

static void run_forking(void) {
    int r = conc_once(&forking_once, fork_inside_fn, NULL);
    if (in_waiting_child) {
        void *t = NULL;
        pthread_join(waiting_thread, &t);
        _exit(r == 0 && t == NULL ? 0 : 8);
    }
    _exit(r);
}

static void once_fork_inside_fn_recursion_aborts_in_child(void) {
    char err[4096];
    int status = th_run_child_capturing_stderr(run_forking, err, sizeof err);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 err);
    TH_CHECK_MSG(strstr(err, "conc_once: the thread running fn is not in this process"),
                 "stderr: %s", err);
}

/* Many callers at once; fn waits (on a latch the test opens) until every other caller has
 * arrived, so they really wait on the run. Each caller then reads fn's plain output. */
typedef struct race_ctx {
    conc_once_t once;
    conc_latch_t arrived; /* the callers that started (fn waits for all but itself) */
    int fails_left;       /* plain: touched only by fn */
    int runs, failures;   /* plain in fn; failures also relaxed from callers */
    int out[16];          /* plain: fn's output */
    int n;
} race_ctx;

static int race_fn(void *arg) {
    race_ctx *c = (race_ctx *)arg;
    in_fn = 1;
    c->runs++;
    conc_latch_wait(&c->arrived);
    /* Then until a caller has registered to wait on this run: it goes on to a futex wait. */
    while (c->n > 1 && !(conc_load(&c->once.state, CONC_RELAXED) & CONC__ONCE_WAITERS))
        sched_yield();
    in_fn = 0;
    if (c->fails_left > 0) {
        c->fails_left--;
        return 42;
    }
    for (int i = 0; i < 16; i++)
        c->out[i] = i * 3;
    return 0;
}

static void race_worker(int index, void *arg) {
    (void)index;
    race_ctx *c = (race_ctx *)arg;
    (void)conc_latch_done(&c->arrived);
    int e = conc_once(&c->once, race_fn, c);
    if (e == 42) {
        __atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
        e = conc_once(&c->once, race_fn, c); /* try again: someone succeeds eventually */
        TH_CHECK(e == 0 || e == 42);
        while (e == 42) {
            __atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
            e = conc_once(&c->once, race_fn, c);
        }
    }
    TH_CHECK_EQ(e, 0);
    for (int i = 0; i < 16; i++)
        TH_CHECK_EQ(c->out[i], i * 3);
}

static void run_race(int fails) {
    race_ctx *c = (race_ctx *)calloc(1, sizeof *c);
    TH_CHECK(c != NULL);
    c->n = th_threads(8);
    conc_latch_init(&c->arrived, (unsigned)c->n, 0);
    c->fails_left = fails;
    unsigned long waits0 = __atomic_load_n(&futex_waits, __ATOMIC_RELAXED);
    th_run_threads(c->n, race_worker, c);
    TH_CHECK_EQ(c->runs, fails + 1);
    TH_CHECK_EQ(c->failures, fails);
    TH_CHECK(conc_once_is_done(&c->once));
    /* The callers that came while fn ran slept on the futex (fn's own latch wait is not
     * counted): at least one futex wait happened; no caller spun its way through. */
    if (c->n > 1)
        TH_CHECK(__atomic_load_n(&futex_waits, __ATOMIC_RELAXED) > waits0);
    free(c);
}

static void once_stress_concurrent_callers_see_output(void) {
    for (int r = 0; r < th_iters(200); r++)
        run_race(0);
}
static void once_stress_failures_retried_by_waiters(void) {
    for (int r = 0; r < th_iters(100); r++)
        run_race(3);
}

/* fn leaves by unwinding: pthread_exit in it (its forced unwinding is what a C++ exception's
 * is; this file is built with -fexceptions, as a C++ file always is). The run ends as a
 * failed one and wakes the caller sleeping on it, which runs its own fn (pthread_once resets
 * on cancellation, std::call_once on an exception); before, both slept forever. */
static conc_once_t unwound_once = CONC_ONCE_INIT;
static int unwound_runs, retried_runs; /* plain: written only by the fn that runs */

static int exit_inside_fn(void *arg) {
    (void)arg;
    unwound_runs++;
    in_fn = 1; /* our wait for the sleeper is not the sleeper's */
    while (__atomic_load_n(&futex_waits, __ATOMIC_RELAXED) == 0)
        sched_yield(); /* until the other caller sleeps on the run */
    pthread_exit(NULL);
}

static int succeed_after(void *arg) {
    (void)arg;
    retried_runs++;
    return 0;
}

static void *run_exit_inside_fn(void *arg) {
    (void)arg;
    (void)!conc_once(&unwound_once, exit_inside_fn, NULL);
    TH_CHECK_MSG(0, "pthread_exit inside fn returned");
    return NULL;
}

static void *run_after(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&unwound_once.state, __ATOMIC_RELAXED))
        sched_yield(); /* until the first thread runs fn */
    TH_CHECK_EQ(conc_once(&unwound_once, succeed_after, NULL), 0);
    return NULL;
}

static void once_fn_left_by_unwinding_ends_a_failed_run(void) {
#if !defined(__EXCEPTIONS)
    TH_SKIP("built without -fexceptions: unwinding does not run conc_once's cleanup");
#endif
    __atomic_store_n(&futex_waits, 0, __ATOMIC_RELAXED);
    pthread_t runner, waiter;
    TH_CHECK_EQ(pthread_create(&runner, NULL, run_exit_inside_fn, NULL), 0);
    TH_CHECK_EQ(pthread_create(&waiter, NULL, run_after, NULL), 0);
    TH_CHECK_EQ(pthread_join(runner, NULL), 0);
    TH_CHECK_EQ(pthread_join(waiter, NULL), 0);
    TH_CHECK(conc_once_is_done(&unwound_once));
    TH_CHECK_EQ(unwound_runs, 1);
    TH_CHECK_EQ(retried_runs, 1);
    TH_CHECK_EQ(conc_once(&unwound_once, succeed_after, NULL), 0);
    TH_CHECK_EQ(retried_runs, 1);
}

TH_MAIN("once", TH_CASE(once_runs_once_then_one_load),
        TH_CASE(once_failure_is_returned_and_retried), TH_CASE(once_null_fn_is_einval),
        TH_CASE(once_recursion_aborts_with_message),
        TH_CASE(once_fork_inside_fn_recursion_aborts_in_child),
        TH_CASE(once_stress_concurrent_callers_see_output),
        TH_CASE(once_stress_failures_retried_by_waiters),
        TH_CASE(once_fn_left_by_unwinding_ends_a_failed_run))

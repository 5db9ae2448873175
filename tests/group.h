/* tests/group.h - threads that start together: the one thread group of the test harness
 * (tests/harness.h, th_run_threads) and the benchmark harness (bench/bench.h, bench_threads)
 * SPDX-License-Identifier: MIT
 *
 *     static void worker(int index, void *arg) { ... }
 *     int e = tgroup_run(8, worker, &shared);   // 0, or the pthread_create/ENOMEM error
 *
 * Every thread waits (yielding) until all n exist, so none runs ahead while the others are
 * still being created: a stress case or a benchmark starts with all of its threads at once.
 *
 * tgroup_wait_at_least and tgroup_advance are for the scaffolding waits of a case where
 * many threads wait on one with work to do (the start of a round): asleep, not yielding.
 * On a loaded machine a case's threads share one CPU or less with other work, and threads
 * that yield in a loop take the turns of the one that would let them go: beside one CPU
 * hog, the latch's round cases took 30 to 50 times as long as alone (4.6 s against 0.1),
 * and 0.1 s asleep. The group's own start stays a yield loop: asleep, it made no clear
 * difference either way beside a hog, and alone it delays the start by a wakeup.
 */
#ifndef CONC_TESTS_GROUP_H
#define CONC_TESTS_GROUP_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Sleeps until *word >= value. Acquire: what was written before the tgroup_advance that got
 * it there is visible after. No wakeup is lost:
 *
 *   waiter                                   advancer
 *   seen = load(word)          (< value)
 *                                            add_fetch(word, add)  (reaches value)
 *                                            FUTEX_WAKE(word, all)
 *   FUTEX_WAIT(word, seen): the kernel compares *word with seen under its bucket lock,
 *   finds it changed, and returns at once; had the wake come after the wait began, it
 *   would have found the waiter queued. Either way the loop loads word again. */
static inline void tgroup_wait_at_least(int *word, int value) {
    int seen;
    while ((seen = __atomic_load_n(word, __ATOMIC_ACQUIRE)) < value)
        (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

/* *word += add (release: pairs with tgroup_wait_at_least's acquire); wakes every sleeper on
 * word when the sum reaches wake_at, the value they wait for. */
static inline void tgroup_advance(int *word, int add, int wake_at) {
    if (__atomic_add_fetch(word, add, __ATOMIC_RELEASE) >= wake_at)
        (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

typedef void (*tgroup_fn)(int index, void *arg);

typedef struct tgroup {
    tgroup_fn fn;
    void *arg;
    int n;     /* threads that will run; lowered if a pthread_create fails (release/acquire) */
    int ready; /* threads started: each waits until ready == n (acq_rel / acquire) */
} tgroup;

typedef struct tgroup_member {
    tgroup *g;
    int index;
} tgroup_member;

static void *tgroup_thread_main(void *p) {
    tgroup_member *m = (tgroup_member *)p;
    __atomic_fetch_add(&m->g->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&m->g->ready, __ATOMIC_ACQUIRE) <
           __atomic_load_n(&m->g->n, __ATOMIC_ACQUIRE))
        sched_yield();
    m->g->fn(m->index, m->g->arg);
    return NULL;
}

/* Runs fn(index, arg) on n threads that start together; returns after all have been joined:
 * 0, or the error of the pthread_create that failed (ENOMEM if no memory for the handles).
 * After a failure the threads already started still run (as a smaller group) and are joined,
 * so the caller can report the error and go on. */
static inline int tgroup_run(int n, tgroup_fn fn, void *arg) {
    tgroup g = {fn, arg, n, 0};
    pthread_t *tids = (pthread_t *)calloc((size_t)(n > 0 ? n : 1), sizeof *tids);
    tgroup_member *members = (tgroup_member *)calloc((size_t)(n > 0 ? n : 1), sizeof *members);
    int e = (tids && members) ? 0 : ENOMEM, started = 0;
    for (; e == 0 && started < n; started++) {
        members[started].g = &g;
        members[started].index = started;
        e = pthread_create(&tids[started], NULL, tgroup_thread_main, &members[started]);
        if (e != 0)
            break;
    }
    if (e != 0)
        __atomic_store_n(&g.n, started, __ATOMIC_RELEASE); /* let the started ones go */
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    free(members);
    return e;
}

#endif /* CONC_TESTS_GROUP_H */

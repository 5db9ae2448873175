/* examples/09_thread_pool_as_completed.c - a thread pool, and results in completion order
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Python's classic ThreadPoolExecutor example, in C: ten I/O-bound tasks that each wait
 *   0.5 s (a sleep standing in for a network call) on five workers. Five run at once, so the
 *   whole batch takes about 1 s instead of 5 s, and as_completed hands back each result as
 *   soon as its task finishes, whatever order they were submitted in.
 *
 *       Python                                         C (this file)
 *       with ThreadPoolExecutor(max_workers=5) as ex:  conc_executor_create(&ex, 5, 16);
 *           fs = [ex.submit(io_task, i)                conc_executor_submit(ex, io_task,
 *                 for i in range(10)]                      (void *)(uintptr_t)i, &fs[i]);
 *           for f in as_completed(fs):                 conc_as_completed_create(&ac, fs, 10);
 *               print(f.result())                      while (conc_as_completed_next(ac, &f) == 0)
 *                                                          printf("%s\n", conc_future_result(f));
 *                                                      conc_executor_destroy(ex);
 *
 * RUN
 *   make examples && build/examples/09_thread_pool_as_completed
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/09_thread_pool_as_completed.c
 *        -pthread && ./a.out)
 *   It prints "done 4", "done 0", ... ten lines in the order the tasks finish (first the five
 *   that started first, in a scheduler-dependent order), then the elapsed time (about 1.0 s).
 *
 * WHY THREADS HELP HERE
 *   A sleeping (or waiting-for-the-network) thread uses no CPU: five of them wait at the same
 *   time. This is the case where Python's threads help too: the GIL is released while a thread
 *   sleeps or waits on I/O.
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - A task returns an int status (0 = success) and hands its result back through a
 *     `void **`; Python returns a value or raises. Here the result is a pointer to a string
 *     the task wrote into a buffer the caller owns.
 *   - Futures are reference counted: submit hands the caller one reference, released with
 *     conc_future_release. The as-completed set holds its own until it is destroyed.
 *   - The submission queue is bounded here (16): submit blocks while it is full, where
 *     Python's queue grows without limit. Capacity 0 gives Python's behaviour (no submit
 *     waits); a bound holds a fast producer back. Only submitters outside the pool wait: a
 *     task's submit to its own executor never does (past a full queue its task goes to a
 *     list behind it), as Python's never does.
 */
#include "conc/executor.h"

#include <stdio.h>
#include <time.h>

enum { TASKS = 10, WORKERS = 5 };
static char messages[TASKS][32]; /* each task writes only its own slot */

static int io_task(void *arg, void **result) {
    unsigned i = (unsigned)(uintptr_t)arg;
    struct timespec half_second = {0, 500000000};
    nanosleep(&half_second, NULL); /* stands in for a network call */
    snprintf(messages[i], sizeof messages[i], "done %u", i);
    *result = messages[i]; /* visible to whoever sees the future done */
    return 0;
}

int main(void) {
    conc_executor_t *ex;
    if (conc_executor_create(&ex, WORKERS, 16) != 0)
        return 1;
    int64_t start = conc_now();
    conc_future_t *fs[TASKS];
    for (unsigned i = 0; i < TASKS; i++)
        if (conc_executor_submit(ex, io_task, (void *)(uintptr_t)i, &fs[i]) != 0)
            return 1;

    conc_as_completed_t *ac;
    if (conc_as_completed_create(&ac, fs, TASKS) != 0)
        return 1;
    conc_future_t *f;
    int printed = 0;
    while (conc_as_completed_next(ac, &f) == 0) { /* EPIPE: every future came back */
        if (conc_future_wait(f) != 0)             /* done: returns at once with the outcome */
            return 1;
        printf("%s\n", (const char *)conc_future_result(f));
        printed++;
    }
    double seconds = (double)(conc_now() - start) / 1e9;
    printf("%d tasks of 0.5 s on %d workers took %.2f s\n", printed, WORKERS, seconds);

    conc_as_completed_destroy(ac);
    for (unsigned i = 0; i < TASKS; i++)
        conc_future_release(fs[i]);
    conc_executor_destroy(ex);

    /* Ten half-second waits, five at a time: two rounds, about 1 s. Sequentially: 5 s. */
    if (printed != TASKS || seconds < 0.99 || seconds > 3.0) {
        fprintf(stderr, "unexpected: %d results in %.2f s\n", printed, seconds);
        return 1;
    }
    return 0;
}

/* examples/10_future_timeout_cancel.c - a wait that times out, a cancelled task, a failure
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The three ways a future can disappoint, and how each is reported:
 *     1. f.result(timeout=0.05) raising TimeoutError   -> conc_future_wait_until: ETIMEDOUT
 *     2. f.cancel() on a task still in the queue       -> conc_future_cancel: 0, and its wait
 *                                                         returns ECANCELED; it never runs
 *     3. a task that raises                            -> its non-zero status is the outcome
 *   plus on_done (add_done_callback): a callback that runs exactly once, when the future
 *   completes, in the thread that completes it.
 *
 * RUN
 *   make examples && build/examples/10_future_timeout_cancel
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/10_future_timeout_cancel.c -pthread)
 *   It prints:
 *     slow task: not done after 50 ms (ETIMEDOUT), still running
 *     queued task: cancelled before it started (ECANCELED), ran 0 times
 *     failing task: outcome 33 (Numerical argument out of domain)
 *     callback ran once with outcome 0
 *     slow task: finished with result 42
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - No exceptions: a wait returns the outcome as an int, 0 for success, the task's own
 *     error code for a failure, ECANCELED or ETIMEDOUT. (A task may itself return ECANCELED
 *     or ETIMEDOUT; conc_future_state tells you which it was.)
 *   - A timed-out wait changes nothing: the task keeps running and can be waited for again.
 *     As in Python, a running task cannot be cancelled: cancel returns EBUSY.
 *   - Deadlines are absolute (conc_deadline_in(50 * CONC_MS)), so a retry loop does not
 *     stretch the total wait.
 */
#include "conc/executor.h"

#include <stdio.h>
#include <string.h>

static int slow_task(void *arg, void **result) {
    conc_future_t *gate = (conc_future_t *)arg;
    (void)conc_future_wait(gate); /* runs until main opens the gate */
    static int answer = 42;
    *result = &answer;
    return 0;
}

static int queued_runs; /* written by the queued task if it ever ran (it must not) */
static int queued_task(void *arg, void **result) {
    (void)arg;
    (void)result;
    queued_runs++;
    return 0;
}

static int failing_task(void *arg, void **result) {
    (void)arg;
    (void)result;
    return EDOM; /* Python: raise ValueError(...) */
}

static int callback_runs, callback_outcome;
static void on_done(conc_future_t *f, void *arg) {
    (void)arg;
    callback_runs++;
    callback_outcome = conc_future_wait(f); /* done: returns the outcome at once */
}

int main(void) {
    conc_executor_t *ex;
    if (conc_executor_create(&ex, 1, 8) != 0) /* one worker: later tasks wait in the queue */
        return 1;
    conc_future_t *gate, *slow, *queued, *failing;
    if (conc_future_create(&gate) != 0 || conc_executor_submit(ex, slow_task, gate, &slow) != 0 ||
        conc_executor_submit(ex, queued_task, NULL, &queued) != 0)
        return 1;

    while (conc_future_state(slow) != CONC_FUTURE_RUNNING) /* the worker has picked it up */
        sched_yield();

    /* 1. A wait with a deadline. */
    int r = conc_future_wait_until(slow, conc_deadline_in(50 * CONC_MS));
    printf("slow task: not done after 50 ms (%s), still running\n",
           r == ETIMEDOUT ? "ETIMEDOUT" : "?");
    if (r != ETIMEDOUT || conc_future_cancel(slow) != EBUSY) /* running: cannot cancel */
        return 1;

    /* 2. Cancel a task that is still queued behind the slow one. */
    if (conc_future_cancel(queued) != 0)
        return 1;
    r = conc_future_wait(queued);
    printf("queued task: cancelled before it started (%s), ran %d times\n",
           r == ECANCELED ? "ECANCELED" : "?", queued_runs);

    /* 3. A failing task, with a callback registered before it can finish. */
    if (conc_executor_submit(ex, failing_task, NULL, &failing) != 0 ||
        conc_future_on_done(slow, on_done, NULL) != 0)
        return 1;
    if (conc_future_complete(gate, 0, NULL) != 0) /* let the slow task finish */
        return 1;
    int failed = conc_future_wait(failing);
    printf("failing task: outcome %d (%s)\n", failed, strerror(failed));
    int slow_outcome = conc_future_wait(slow);
    conc_executor_destroy(ex); /* joins the worker: the callback has run */
    printf("callback ran %s with outcome %d\n", callback_runs == 1 ? "once" : "NOT once",
           callback_outcome);
    printf("slow task: finished with result %d\n", *(int *)conc_future_result(slow));

    bool ok = r == ECANCELED && queued_runs == 0 && failed == EDOM && slow_outcome == 0 &&
              callback_runs == 1 && callback_outcome == 0 &&
              conc_future_state(failing) == CONC_FUTURE_FAILED;
    conc_future_release(gate);
    conc_future_release(slow);
    conc_future_release(queued);
    conc_future_release(failing);
    return ok ? 0 : 1;
}

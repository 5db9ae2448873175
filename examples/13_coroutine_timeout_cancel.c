/* examples/13_coroutine_timeout_cancel.c - a deadline that expires, a cancelled coroutine
 * that cleans up, and a group whose failing child cancels its siblings
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   1. asyncio.wait({task}, timeout=0.05) (or wait_for(shield(task), 0.05)) -> conc_coro_join
 *      with a deadline: ETIMEDOUT, and the coroutine keeps running (join again to wait on).
 *      asyncio.wait_for(task, 0.05) and asyncio.timeout(0.05) also cancel the task when time
 *      is up: in C that is the join's ETIMEDOUT followed by conc_coro_cancel (part 2).
 *   2. task.cancel() -> conc_coro_cancel: the coroutine's pending wait returns ECANCELED, and
 *      so does every later one; the coroutine runs its cleanup and returns. Cancellation is a
 *      return value it handles, never an exception that unwinds its frames.
 *   3. async with asyncio.TaskGroup() as tg: ... -> conc_group_*: the first child that fails
 *      cancels its siblings; conc_group_wait reports the first failure once all have ended.
 *
 * RUN
 *   make examples && build/examples/13_coroutine_timeout_cancel
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/13_coroutine_timeout_cancel.c
 *    -pthread)
 *   It prints:
 *       1. slow job: not done within 50 ms (ETIMEDOUT); it finishes later with status 0
 *       2. worker: cancelled while waiting (ECANCELED); cleaned up 1 buffer
 *       3. group: "fetch c" failed (EIO); "fetch a" and "fetch b" were cancelled
 *          group status: EIO, after every child ended
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - There is no CancelledError to swallow by mistake: ECANCELED comes back from every
 *     blocking call until the coroutine returns, so a loop that retries on errors still ends.
 *   - Deadlines are absolute: one deadline can cover several calls (a whole conversation)
 *     without recomputing what is left.
 *   - A join's timeout never cancels what it waits for (asyncio.wait_for does): cancelling
 *     is a separate, explicit call.
 *   - TaskGroup raises an ExceptionGroup with every child's failure; conc_group_wait returns
 *     the first failure's status only (record the others in the children if you need them).
 */
#include "conc/coro.h"

#include <stdio.h>
#include <string.h>

static int slow_job(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(conc_deadline_in(200 * CONC_MS));
}

static int worker(void *arg) {
    int *cleaned = (int *)arg;
    char *buffer = (char *)malloc(4096); /* something to clean up */
    int e = conc_coro_sleep_until(CONC_FOREVER);
    printf("2. worker: %s while waiting (%s); ", e == ECANCELED ? "cancelled" : "woken",
           e == ECANCELED ? "ECANCELED" : "?");
    free(buffer);
    (*cleaned)++;
    printf("cleaned up %d buffer\n", *cleaned);
    return e;
}

typedef struct fetch {
    const char *name;
    int64_t ms;    /* how long it takes */
    int fails;     /* returns EIO when done */
    int cancelled; /* set when its wait returned ECANCELED */
} fetch_t;

static int fetch(void *arg) {
    fetch_t *f = (fetch_t *)arg;
    int e = conc_coro_sleep_until(conc_deadline_in(f->ms * CONC_MS));
    if (e == ECANCELED) {
        f->cancelled = 1;
        return e;
    }
    return f->fails ? EIO : 0;
}

static int main_coro(void *arg) {
    (void)arg;
    /* 1. a deadline that expires */
    conc_coro_t *job;
    if (conc_coro_spawn(NULL, slow_job, NULL, NULL, &job) != 0)
        return ENOMEM;
    int status = -1;
    int e = conc_coro_join(job, conc_deadline_in(50 * CONC_MS), &status);
    printf("1. slow job: not done within 50 ms (%s); ", e == ETIMEDOUT ? "ETIMEDOUT" : "?");
    if (e != ETIMEDOUT)
        return 1;
    e = conc_coro_join(job, CONC_FOREVER, &status);
    printf("it finishes later with status %d\n", status);
    conc_coro_release(job);
    if (e != 0 || status != 0)
        return 1;

    /* 2. a cancelled coroutine cleans up */
    int cleaned = 0;
    conc_coro_t *w;
    if (conc_coro_spawn(NULL, worker, &cleaned, NULL, &w) != 0)
        return ENOMEM;
    if (conc_coro_yield() != 0) /* let it start waiting */
        return 1;
    conc_coro_cancel(w);
    e = conc_coro_join(w, CONC_FOREVER, &status);
    conc_coro_release(w);
    if (e != 0 || status != ECANCELED || cleaned != 1)
        return 1;

    /* 3. a group whose failing child cancels its siblings */
    /* a and b would take a minute: only c's failure, never a timing, ends them early */
    fetch_t f[3] = {{"fetch a", 60000, 0, 0}, {"fetch b", 60000, 0, 0}, {"fetch c", 10, 1, 0}};
    conc_group_t *g;
    if (conc_group_create(NULL, &g) != 0)
        return ENOMEM;
    for (int i = 0; i < 3; i++)
        if (conc_group_spawn(g, fetch, &f[i], NULL) != 0)
            return ENOMEM;
    e = conc_group_wait(g, CONC_FOREVER, &status);
    conc_group_destroy(g);
    printf("3. group: \"%s\" failed (%s); \"%s\" and \"%s\" were %s\n", f[2].name,
           status == EIO ? "EIO" : "?", f[0].name, f[1].name,
           f[0].cancelled && f[1].cancelled ? "cancelled" : "NOT cancelled");
    printf("   group status: %s, after every child ended\n", status == EIO ? "EIO" : "?");
    return e == 0 && status == EIO && f[0].cancelled && f[1].cancelled ? 0 : 1;
}

int main(void) {
    int status = -1;
    int e = conc_run(main_coro, NULL, &status);
    if (e != 0 || status != 0) {
        fprintf(stderr, "conc_run: %s, status %d\n", strerror(e), status);
        return 1;
    }
    return 0;
}

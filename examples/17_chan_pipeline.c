/* examples/17_chan_pipeline.c - a producer, four workers and a collector joined by channels
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Go's pipeline pattern on coroutines: the producer sends jobs into a small buffered
 *   channel, four workers receive, work and send results into a rendezvous channel, and a
 *   collector adds them up. Shutdown is by close alone, nobody counts messages:
 *     - the producer closes `jobs` when it has sent everything;
 *     - each worker receives until EPIPE (closed and drained), so no job is lost;
 *     - the last worker to leave closes `results`;
 *     - the collector receives until EPIPE and knows it has every result.
 *   A worker "waits for I/O" on every job (conc_coro_sleep_until), so the four overlap on
 *   one thread, and a select with a deadline reports progress while results trickle in.
 *
 * RUN
 *   make examples && build/examples/17_chan_pipeline
 *   It prints a progress line every 10 ms ("  ... 37 results so far"; the run takes about
 *   25 ms), "sum of squares 0..99 = 328350 (checked)" and each worker's share.
 */
#include "conc/chan.h"

#include <stdio.h>

enum { JOBS = 100, WORKERS = 4 };

typedef struct pipeline {
    conc_chan_t *jobs, *results;
    int workers_left;
    int done_by[WORKERS];
} pipeline;

typedef struct worker_arg {
    pipeline *p;
    int id;
} worker_arg;

static int producer(void *arg) {
    pipeline *p = (pipeline *)arg;
    for (int i = 0; i < JOBS; i++)
        if (conc_chan_send(p->jobs, &i) != 0)
            return 1;         /* closed under us (not in this program) or cancelled */
    conc_chan_close(p->jobs); /* "no more jobs": workers drain what is left, then EPIPE */
    return 0;
}

static int worker(void *arg) {
    worker_arg *w = (worker_arg *)arg;
    pipeline *p = w->p;
    int job;
    while (conc_chan_recv(p->jobs, &job) == 0) {
        /* pretend to fetch something: 1 ms of waiting, during which the others run */
        if (conc_coro_sleep_until(conc_deadline_in(CONC_MS)) != 0)
            return 1;
        long square = (long)job * job;
        if (conc_chan_send(p->results, &square) != 0)
            return 1;
        p->done_by[w->id]++;
    }
    if (--p->workers_left == 0) /* the last one out closes the results */
        conc_chan_close(p->results);
    return 0;
}

static int collector(void *arg) {
    pipeline *p = (pipeline *)arg;
    long sum = 0, got = 0, v;
    /* One absolute deadline for every select until it passes: a progress line each 10 ms
     * however often results come. (A deadline made anew for each call, 10 ms from then,
     * would never pass here: a result comes about every 0.25 ms.) */
    int64_t report = conc_deadline_in(10 * CONC_MS);
    for (;;) {
        conc_chan_op_t op = {p->results, CONC_CHAN_RECV, &v};
        size_t which;
        int e = conc_chan_select(&op, 1, report, &which);
        if (e == ETIMEDOUT) {
            printf("  ... %ld results so far\n", got);
            report = conc_deadline_in(10 * CONC_MS);
            continue;
        }
        if (e != 0)
            break; /* EPIPE: closed and drained, every result is in */
        sum += v;
        got++;
    }
    long want = 0;
    for (long i = 0; i < JOBS; i++)
        want += i * i;
    printf("sum of squares 0..%d = %ld (%s)\n", JOBS - 1, sum, sum == want ? "checked" : "WRONG");
    return sum == want && got == JOBS ? 0 : 1;
}

static int pipeline_main(void *arg) {
    (void)arg;
    pipeline p;
    memset(&p, 0, sizeof p);
    p.workers_left = WORKERS;
    if (conc_chan_create(&p.jobs, 8, sizeof(int)) != 0 ||
        conc_chan_create(&p.results, 0, sizeof(long)) != 0)
        return 1;
    conc_group_t *g;
    if (conc_group_create(NULL, &g) != 0)
        return 1;
    worker_arg wa[WORKERS];
    int bad = conc_group_spawn(g, producer, &p, NULL) | conc_group_spawn(g, collector, &p, NULL);
    for (int i = 0; i < WORKERS; i++) {
        wa[i].p = &p;
        wa[i].id = i;
        bad |= conc_group_spawn(g, worker, &wa[i], NULL);
    }
    int status = 1;
    if (!bad && conc_group_wait(g, CONC_FOREVER, &status) != 0)
        status = 1;
    conc_group_destroy(g);
    for (int i = 0; i < WORKERS; i++)
        printf("worker %d did %d jobs\n", i, p.done_by[i]);
    conc_chan_destroy(p.jobs);
    conc_chan_destroy(p.results);
    return status;
}

int main(void) {
    int status = 1;
    if (conc_run(pipeline_main, NULL, &status) != 0 || status != 0) {
        puts("pipeline failed");
        return 1;
    }
    return 0;
}

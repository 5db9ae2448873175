/* examples/21_barrier_phases.c - a phased simulation: workers step together at a barrier
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Heat spreading along a rod of 64 cells, 200 time steps, four workers, each owning 16
 *   cells. A step reads the neighbours' current temperatures and writes the next ones, so no
 *   worker may start step k+1 before every worker finished step k: that is what a barrier is
 *   for. One party per round (the leader) swaps the buffers while the others wait at a second
 *   barrier. The result is compared with the same simulation run on one thread. Then a
 *   deadline: one worker stops showing up, one of the others gives up after 50 ms, and the
 *   barrier breaks for everyone until reset. Python's threading.Barrier, in C:
 *
 *       Python                                  C (this file)
 *       b = threading.Barrier(4)                static conc_barrier_t b = CONC_BARRIER_INIT(4);
 *       i = b.wait(); if i == 0: swap()         if (conc_barrier_wait(&b) == CONC_BARRIER_LEADER)
 *                                                   swap();
 *       b.wait(timeout=0.05)                    conc_barrier_wait_until(&b, conc_deadline_in(...))
 *       except BrokenBarrierError               == CONC_BARRIER_BROKEN (ENOTRECOVERABLE)
 *       b.reset(), b.abort()                    conc_barrier_reset(&b), conc_barrier_abort(&b)
 *
 * ORDERING
 *   Everything a worker wrote before its wait of a round is visible to every worker after
 *   the wait of that round returns: the cells need no lock and no atomics.
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - wait returns CONC_BARRIER_LEADER (-1, like PTHREAD_BARRIER_SERIAL_THREAD) to the party
 *     whose arrival completed the round and 0 to the others, instead of an arrival index;
 *     there is no `action` callable: the leader runs it, and a second wait holds the others.
 *   - The party whose deadline passed gets ETIMEDOUT; the others get CONC_BARRIER_BROKEN.
 *
 * RUN
 *   make examples && build/examples/21_barrier_phases
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/21_barrier_phases.c -pthread && ./a.out
 *
 * PRINTS
 *   4 workers, 64 cells, 200 steps: matches the one-thread run (middle cell 39.87)
 *   one worker missing: 3 parties broke the barrier (1 ETIMEDOUT, 2 BROKEN)
 *   after reset: a full round again (1 leader)
 *
 *   The program exits 1 if the result differs from the one-thread run, or the broken round
 *   or the reset do not behave as printed.
 */
#include "conc/barrier.h"

#include <pthread.h>
#include <stdio.h>

enum { WORKERS = 4, CELLS = 64, STEPS = 200, SLICE = CELLS / WORKERS };

static conc_barrier_t step_done = CONC_BARRIER_INIT(WORKERS);
static double bufs[2][CELLS]; /* plain: a worker writes only its slice of `next` */
static int cur;               /* plain: flipped by the leader between the two waits */
static int leaders;           /* plain: only the leader writes it, between the waits */

static void step_cells(const double *from, double *to, int lo, int hi) {
    for (int i = lo; i < hi; i++) {
        double left = i > 0 ? from[i - 1] : from[i];
        double right = i < CELLS - 1 ? from[i + 1] : from[i];
        to[i] = from[i] + 0.25 * (left - 2 * from[i] + right);
    }
}

static void *worker(void *arg) {
    int w = (int)(intptr_t)arg;
    for (int s = 0; s < STEPS; s++) {
        step_cells(bufs[cur], bufs[1 - cur], w * SLICE, (w + 1) * SLICE);
        if (conc_barrier_wait(&step_done) == CONC_BARRIER_LEADER) {
            cur = 1 - cur; /* everyone finished step s: publish it */
            leaders++;
        }
        conc_barrier_wait(&step_done); /* nobody starts s+1 before the swap */
    }
    return NULL;
}

typedef struct party {
    int result;
} party;
static conc_barrier_t meet = CONC_BARRIER_INIT(WORKERS);
static void *timed_party(void *arg) {
    party *p = (party *)arg;
    p->result = conc_barrier_wait_until(&meet, conc_deadline_in(50 * CONC_MS));
    return NULL;
}
static void *prompt_party(void *arg) {
    party *p = (party *)arg;
    p->result = conc_barrier_wait(&meet);
    return NULL;
}

int main(void) {
    double ref[2][CELLS] = {{0}};
    bufs[0][CELLS / 2] = ref[0][CELLS / 2] = 1000.0; /* a hot spot in the middle */
    for (int s = 0; s < STEPS; s++)
        step_cells(ref[s % 2], ref[1 - s % 2], 0, CELLS);

    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    bool same = leaders == STEPS;
    for (int i = 0; i < CELLS; i++)
        same = same && bufs[cur][i] == ref[STEPS % 2][i];
    printf("%d workers, %d cells, %d steps: %s (middle cell %.2f)\n", WORKERS, CELLS, STEPS,
           same ? "matches the one-thread run" : "DIFFERS from the one-thread run",
           bufs[cur][CELLS / 2]);

    /* One worker of four never comes. Of the three that do, one waits with a 50 ms deadline
     * and two without: when the deadline passes, that one breaks the barrier (ETIMEDOUT) and
     * the two see it broken (CONC_BARRIER_BROKEN), as Python's waits all raise
     * BrokenBarrierError once one b.wait(timeout=0.05) gives up. */
    party p[WORKERS - 1];
    pthread_t q[WORKERS - 1];
    for (int i = 0; i < WORKERS - 1; i++)
        pthread_create(&q[i], NULL, i == 0 ? timed_party : prompt_party, &p[i]);
    for (int i = 0; i < WORKERS - 1; i++)
        pthread_join(q[i], NULL);
    int timeouts = 0, broken = 0;
    for (int i = 0; i < WORKERS - 1; i++) {
        timeouts += p[i].result == ETIMEDOUT;
        broken += p[i].result == CONC_BARRIER_BROKEN;
    }
    printf("one worker missing: %d parties broke the barrier (%d ETIMEDOUT, %d BROKEN)\n",
           WORKERS - 1, timeouts, broken);
    bool broke_ok = timeouts == 1 && broken == WORKERS - 2 && conc_barrier_is_broken(&meet);

    conc_barrier_reset(&meet); /* fresh again: a full round works */
    for (int i = 0; i < WORKERS - 1; i++)
        pthread_create(&q[i], NULL, prompt_party, &p[i]);
    int mine = conc_barrier_wait(&meet);
    int lead = mine == CONC_BARRIER_LEADER;
    for (int i = 0; i < WORKERS - 1; i++) {
        pthread_join(q[i], NULL);
        lead += p[i].result == CONC_BARRIER_LEADER;
    }
    printf("after reset: a full round again (%d leader)\n", lead);
    return same && broke_ok && lead == 1 ? 0 : 1;
}

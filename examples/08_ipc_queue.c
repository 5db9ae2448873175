/* examples/08_ipc_queue.c - worker processes sharing one queue: multiprocessing.Queue in C
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The parent maps a block of shared memory, builds two queues in it (tasks and results),
 *   and forks 3 worker processes. Each worker pops numbers from `tasks`, counts the primes
 *   below each, and pushes {number, count, its pid} to `results`. The parent hands out 40
 *   tasks, closes `tasks` (workers drain it and exit), collects 40 results and checks them.
 *
 *       Python                                      C (this file)
 *       tasks = multiprocessing.Queue(16)           mmap(MAP_SHARED) + conc_queue_init_in(
 *                                                       ..., CONC_SHARED)
 *       p = multiprocessing.Process(target=work)    fork()
 *       tasks.put(n)                                conc_queue_push(tasks, &n)
 *       n = tasks.get()                             conc_queue_pop(tasks, &n)
 *       tasks.put(None) per worker; p.join()        conc_queue_close(tasks); waitpid()
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - multiprocessing.Queue pickles each object and sends it through a pipe, with a feeder
 *     thread and a lock: every item costs system calls and a copy through the kernel. Here
 *     the queue itself lives in memory both processes map: a push is a copy into the ring and
 *     one atomic operation, and a system call happens only when somebody has to sleep or be
 *     woken (the queue's futexes are process-shared: CONC_SHARED).
 *   - Only plain bytes cross: a pointer means nothing in the other process (it maps memory at
 *     other addresses). The queue itself follows that rule: it stores offsets, never pointers,
 *     so conc_queue_attach works on a mapping at any address (shm_open + mmap in an unrelated
 *     process); after fork the mapping happens to sit at the same address.
 *   - A worker that crashes is not replaced, and a process killed in the middle of a push can
 *     leave one slot stuck; a process pool built for that comes later (forkpool.h). What this
 *     file does about it: the parent pushes and pops with deadlines and looks at its workers
 *     between waits, so a worker killed with a task in hand (or every worker killed) ends the
 *     run with "FAILED" and exit 1, not with a parent waiting for good.
 *
 * RUN
 *   make examples && build/examples/08_ipc_queue
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/08_ipc_queue.c -pthread && ./a.out
 *
 * PRINTS (which worker did how many varies)
 *   3 worker processes, 40 tasks through a queue in shared memory
 *   worker 41001: 14 tasks, worker 41002: 13 tasks, worker 41003: 13 tasks
 *   all 40 prime counts correct (primes below 100000: 9592)
 *   exits 1 if any count is wrong or a worker failed.
 */
#include "conc/queue.h"

#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>

enum { WORKERS = 3, TASKS = 40, DEPTH = 16 };

typedef struct result {
    long number;
    long primes; /* primes below number */
    int pid;
} result;

static long count_primes_below(long n) {
    long count = 0;
    for (long k = 2; k < n; k++) {
        bool prime = true;
        for (long d = 2; d * d <= k; d++)
            if (k % d == 0) {
                prime = false;
                break;
            }
        count += prime;
    }
    return count;
}

static int work(void *tasks_mem, void *results_mem) {
    /* attach: find the queues from the memory alone (works at any mapping address) */
    conc_queue_t *tasks = conc_queue_attach(tasks_mem);
    conc_queue_t *results = conc_queue_attach(results_mem);
    if (!tasks || !results)
        return 2;
    long n;
    while (conc_queue_pop(tasks, &n) == 0) { /* EPIPE: closed and drained: done */
        result r = {n, count_primes_below(n), (int)getpid()};
        if (conc_queue_push(results, &r) != 0)
            return 3;
    }
    return 0;
}

typedef struct tally_t {
    const pid_t *pids;
    int done, bad, per_worker[WORKERS];
    bool reaped[WORKERS];
    int exited, failed_workers;
} tally_t;

/* One result in: checked against a count made here, and credited to its worker. */
static void tally(tally_t *t, const result *r) {
    t->done++;
    t->bad += r->primes != count_primes_below(r->number);
    for (int i = 0; i < WORKERS; i++)
        t->per_worker[i] += t->pids[i] == r->pid;
}

/* Reaps the workers that have exited (wait: all of them), counting those that failed; returns
 * how many have exited so far. */
static int look_at_workers(tally_t *t, bool wait) {
    for (int i = 0; i < WORKERS; i++) {
        int status = 0;
        if (!t->reaped[i] && waitpid(t->pids[i], &status, wait ? 0 : WNOHANG) == t->pids[i]) {
            t->reaped[i] = true;
            t->exited++;
            t->failed_workers += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }
    return t->exited;
}

int main(void) {
    size_t tasks_size = conc_queue_footprint(DEPTH, sizeof(long));
    size_t results_size = conc_queue_footprint(DEPTH, sizeof(result));
    size_t offset = (tasks_size + 63) & ~(size_t)63; /* the second queue, 64-byte aligned */
    size_t total = offset + results_size;
    char *shared =
        (char *)mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    conc_queue_t *tasks, *results;
    if (conc_queue_init_in(&tasks, shared, tasks_size, DEPTH, sizeof(long), CONC_SHARED) ||
        conc_queue_init_in(&results, shared + offset, results_size, DEPTH, sizeof(result),
                           CONC_SHARED)) {
        fprintf(stderr, "init_in failed\n");
        return 1;
    }
    printf("%d worker processes, %d tasks through a queue in shared memory\n", WORKERS, TASKS);

    pid_t pids[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0)
            _exit(work(shared, shared + offset)); /* the child never returns to main */
    }

    /* Hand out the tasks: 2500, 5000, ... 100000. The queue holds 16: a push waits for room
     * while the workers catch up (backpressure across processes). Results pile up meanwhile:
     * that queue holds 16 too, so we collect as we go with try_pop.
     * A queue cannot tell that the processes on its other side died (neither can Python's
     * multiprocessing.Queue: put() and get() would wait for good), and a worker killed with a
     * task in hand never pushes its result. So every wait here lasts 50 ms at a time, and
     * between waits we look at the workers: once all of them have exited, nobody will take
     * another task, and what the results queue holds is all there will be. */
    tally_t t = {.pids = pids};
    result r;
    for (long k = 1; k <= TASKS && t.exited < WORKERS; k++) {
        long n = k * 2500;
        for (;;) {
            while (conc_queue_try_pop(results, &r) == 0)
                tally(&t, &r);
            int e = conc_queue_push_until(tasks, &n, conc_deadline_in(50 * CONC_MS));
            if (e == 0)
                break;
            if (e != ETIMEDOUT) /* EPIPE: only after close, which comes last */
                abort();
            if (look_at_workers(&t, false) == WORKERS)
                break; /* nobody is left to take it */
        }
    }
    conc_queue_close(tasks); /* workers finish what is queued, then their pop says EPIPE */
    while (t.done < TASKS && t.exited < WORKERS) {
        if (conc_queue_pop_until(results, &r, conc_deadline_in(50 * CONC_MS)) == 0)
            tally(&t, &r);
        else /* ETIMEDOUT: nothing for 50 ms; who is left? */
            look_at_workers(&t, false);
    }
    while (t.done < TASKS && conc_queue_try_pop(results, &r) == 0) /* what the last ones left */
        tally(&t, &r);
    look_at_workers(&t, true);
    for (int i = 0; i < WORKERS; i++)
        printf("%sworker %d: %d tasks", i ? ", " : "", (int)pids[i], t.per_worker[i]);
    printf("\n");
    bool ok = t.done == TASKS && t.bad == 0 && t.failed_workers == 0;
    if (ok)
        printf("all %d prime counts correct (primes below 100000: %ld)\n", TASKS,
               count_primes_below(100000));
    else
        printf("FAILED: %d results, %d wrong, %d workers failed\n", t.done, t.bad,
               t.failed_workers);
    munmap(shared, total);
    return ok ? 0 : 1;
}

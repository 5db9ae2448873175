/* examples/15_process_pool_map.c - CPU-bound work over processes, results through shared memory
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The concept notes' CPU-bound loop (total += (i * i) % 97) in 16 parts, run once in this
 *   process and once over a fork pool with one worker process per CPU. Each worker writes its
 *   part's total straight into memory the parent sees (conc_forkpool_alloc): nothing is
 *   pickled, nothing is copied back. It prints both times and the speed-up (close to the
 *   number of CPUs on an idle machine), then what the processes cost: the time to fork the
 *   pool. The memory model that comes with them is explained below.
 *
 *       Python (processes: true parallelism)          C (this file)
 *       with Pool() as pool:                          conc_forkpool_create(&p, NULL);
 *           totals = pool.map(cpu_task, parts)        conc_forkpool_map(p, cpu_part, io, PARTS,
 *                                                                       NULL);
 *
 * RUN
 *   make examples && build/examples/15_process_pool_map
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -O2 -Iinclude examples/15_process_pool_map.c -pthread)
 *   It checks that both ways compute the same totals and exits 1 if they do not.
 *
 * WHERE PROCESSES BEAT THREADS, AND WHERE THEY COST MORE
 *   - In C, threads already run CPU-bound code in parallel (examples/11): choose processes
 *     for isolation. A worker that crashes, leaks or corrupts its heap takes only itself down
 *     (examples/16), and max_tasks_per_child recycles leaky code.
 *   - Fork time: a pool is forked at create (about a millisecond here, more from a parent
 *     with a large resident set: the page tables are copied). Create it once, reuse it.
 *   - Memory: a worker sees the parent as it was at create, copy-on-write; what the parent
 *     changes or allocates later is invisible to it. Data goes through the shared region:
 *     conc_forkpool_alloc memory is live in every process, at the same address.
 *   - Results: a map item writes its result into the shared region (here, totals[i]); a
 *     submit task returns bytes, which cross a socket (examples/16 uses map).
 */
#include "conc/forkpool.h"

#include <inttypes.h>
#include <stdio.h>

enum { PARTS = 16 };
static const long part_size = 3000000;

/* What the workers read and write: in the shared region, so the parent sees their writes. */
typedef struct work {
    long sizes[PARTS];
    uint64_t totals[PARTS];
} work;

static uint64_t cpu_loop(long n) {
    uint64_t total = 0;
    for (long i = 0; i < n; i++)
        total += (uint64_t)((i * i) % 97);
    return total;
}

/* Runs in a worker: fn(i, arg) for one part. */
static int cpu_part(size_t i, void *arg) {
    work *w = (work *)arg;
    w->totals[i] = cpu_loop(w->sizes[i]);
    return 0;
}

int main(void) {
    int64_t t0 = conc_now();
    conc_forkpool_t *p;
    int e = conc_forkpool_create(&p, NULL); /* one worker per CPU, forked now */
    if (e != 0) {
        fprintf(stderr, "conc_forkpool_create: %s\n", strerror(e));
        return 1;
    }
    int64_t created = conc_now();
    work *w = (work *)conc_forkpool_alloc(p, sizeof *w);
    if (!w)
        return 1;
    for (int i = 0; i < PARTS; i++)
        w->sizes[i] = part_size + i; /* parts differ a little: no two totals are folded */

    uint64_t one[PARTS];
    int64_t a = conc_now();
    for (int i = 0; i < PARTS; i++)
        one[i] = cpu_loop(w->sizes[i]);
    int64_t b = conc_now();
    e = conc_forkpool_map(p, cpu_part, w, PARTS, NULL);
    int64_t c = conc_now();
    if (e != 0) {
        fprintf(stderr, "conc_forkpool_map: %s\n", strerror(e));
        return 1;
    }
    for (int i = 0; i < PARTS; i++)
        if (w->totals[i] != one[i]) {
            fprintf(stderr, "part %d: %" PRIu64 " in a worker, %" PRIu64 " here\n", i, w->totals[i],
                    one[i]);
            return 1;
        }
    printf("%d parts of %ld iterations, totals agree (part 0: %" PRIu64 ")\n", PARTS, part_size,
           one[0]);
    printf("one process:               %7.1f ms\n", (double)(b - a) / 1e6);
    printf("fork pool, %u workers:      %7.1f ms  (speed-up %.2fx)\n", conc_forkpool_workers(p),
           (double)(c - b) / 1e6, (double)(b - a) / (double)(c - b));
    printf("the pool's create (fork):  %7.1f ms, paid once\n", (double)(created - t0) / 1e6);
    conc_forkpool_free(p, w);
    conc_forkpool_destroy(p); /* workers exit and are reaped: no zombie, no fd left */
    return 0;
}

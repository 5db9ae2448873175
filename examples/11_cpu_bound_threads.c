/* examples/11_cpu_bound_threads.c - CPU-bound work split over threads: in C it speeds up
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The concept notes' CPU-bound loop (total += (i * i) % 97; the notes run four parts of
 *   500,000, this file four of 20 million, so that the times stand above the noise) run once
 *   on one thread and once split over an executor with one worker per CPU. The
 *   notes say threads do not speed up CPU-bound Python because of the GIL; in C they do:
 *   each worker runs on its own core at the same time. It prints both times and the speed-up
 *   (close to the number of CPUs on an idle machine: about 2x on two cores).
 *
 *       Python (no speed-up with threads)              C (this file)
 *       with ThreadPoolExecutor() as ex:               conc_executor_create(&ex, 0, 16);
 *           results = list(ex.map(cpu_task, work))     conc_map_create(&m, ex, cpu_task, args,
 *                                                                      4, 4);
 *                                                      while (conc_map_next(m, &i, &st, &r)
 *                                                             == 0) ...
 *
 * RUN
 *   make examples && build/examples/11_cpu_bound_threads
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -O2 -Iinclude examples/11_cpu_bound_threads.c -pthread)
 *   It prints the per-part totals, the two times, the speed-up, and checks that both ways
 *   compute the same totals.
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - No GIL: threads are the tool for CPU-bound work in C; Python needs processes
 *     (ProcessPoolExecutor) and pays for pickling the data in and out.
 *   - conc_map is lazy and bounded: it keeps at most `window` tasks in flight and returns the
 *     results in input order, like Python's map(..., buffersize=) of 3.14.
 *   - The speed-up is a measurement, not a promise: on a busy machine other processes take
 *     the cores. The example checks only that the answers agree.
 */
#include "conc/executor.h"

#include <inttypes.h>
#include <stdio.h>

enum { PARTS = 4 };
static const long part_size = 20000000;

/* The concept notes' loop: each part is independent, so the parts can run at once. */
static int cpu_task(void *arg, void **result) {
    long n = *(const long *)arg;
    uint64_t total = 0;
    for (long i = 0; i < n; i++)
        total += (uint64_t)((i * i) % 97);
    *result = (void *)(uintptr_t)total;
    return 0;
}

int main(void) {
    long sizes[PARTS];
    void *args[PARTS];
    for (int i = 0; i < PARTS; i++) {
        sizes[i] = part_size;
        args[i] = &sizes[i];
    }

    /* One thread: the parts one after another. */
    uint64_t serial[PARTS];
    int64_t t0 = conc_now();
    for (int i = 0; i < PARTS; i++) {
        void *r;
        cpu_task(args[i], &r);
        serial[i] = (uint64_t)(uintptr_t)r;
    }
    double one = (double)(conc_now() - t0) / 1e9;

    /* An executor with one worker per CPU, fed through the lazy map. */
    conc_executor_t *ex;
    if (conc_executor_create(&ex, 0, 16) != 0)
        return 1;
    int64_t t1 = conc_now();
    conc_map_t *m;
    if (conc_map_create(&m, ex, cpu_task, args, PARTS, PARTS) != 0)
        return 1;
    size_t i;
    int status;
    void *result;
    bool same = true;
    while (conc_map_next(m, &i, &status, &result) == 0) {
        printf("part %zu: total %" PRIu64 "\n", i, (uint64_t)(uintptr_t)result);
        same = same && status == 0 && (uint64_t)(uintptr_t)result == serial[i];
    }
    double many = (double)(conc_now() - t1) / 1e9;
    conc_map_destroy(m);
    unsigned workers = conc_executor_threads(ex);
    conc_executor_destroy(ex);

    printf("one thread: %.2f s; %u worker threads: %.2f s; speed-up %.2fx on %d CPUs\n", one,
           workers, many, one / many, conc_cpu_count());
    if (!same) {
        fprintf(stderr, "the threaded totals differ from the serial ones\n");
        return 1;
    }
    return 0;
}

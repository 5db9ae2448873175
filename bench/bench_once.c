/* bench/bench_once.c - conc_once against pthread_once, after completion
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_once && flock /tmp/conc-bench.lock build/bench/bench_once
 *
 * Case: the initializer has run; every call afterwards is the fast path. One thread, and two
 * threads calling at once (the once's cache line is shared, read-only). The loop adds what
 * the initializer produced, so the compiler cannot drop the calls' ordering.
 *
 * Bar (issue 15): after completion at most 1.0x pthread_once (time ratio <= 1.0).
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/once.h"

static conc_once_t conc_o = CONC_ONCE_INIT;
static pthread_once_t pt_o = PTHREAD_ONCE_INIT;
static long value; /* written by the initializers, read after every call */

static int conc_init(void *arg) {
    (void)arg;
    value = 1;
    return 0;
}
static void pt_init(void) {
    value = 1;
}

static long calls(void) {
    return bench_state.quick ? 10000000 : 50000000;
}

typedef struct par {
    bool conc;
    long sum[2];
    int64_t wall[2];
} par;

static void caller(int index, void *arg) {
    par *p = (par *)arg;
    long n = calls(), sum = 0;
    int64_t t0 = bench_now();
    if (p->conc) {
        for (long i = 0; i < n; i++) {
            if (conc_once(&conc_o, conc_init, NULL) != 0)
                abort();
            sum += value;
        }
    } else {
        for (long i = 0; i < n; i++) {
            pthread_once(&pt_o, pt_init);
            sum += value;
        }
    }
    p->wall[index] = bench_now() - t0;
    p->sum[index] = sum;
}

static void run(void *ctx, bench_sample *s) {
    int threads = *(const int *)ctx >> 1;
    par p;
    memset(&p, 0, sizeof p);
    p.conc = (*(const int *)ctx & 1) != 0;
    bench_threads(threads, caller, &p);
    int64_t wall = p.wall[0] > p.wall[1] ? p.wall[0] : p.wall[1];
    for (int i = 0; i < threads; i++)
        if (p.sum[i] != calls())
            abort();
    s->ops = (double)calls() * threads;
    s->wall_ns = (double)wall;
}

int main(void) {
    bench_init("once");
    if (conc_once(&conc_o, conc_init, NULL) != 0)
        return 1;
    pthread_once(&pt_o, pt_init);
    bench_table("once after completion: call + read what the initializer wrote", NULL);
    static int c1 = 2 | 1, p1 = 2, c2 = 4 | 1, p2 = 4;
    bench_impl one[2] = {{"conc_once", run, &c1}, {"pthread_once", run, &p1}};
    bench_run("1 thread", one, 2);
    bench_result r1 = bench_last[1];
    bench_impl two[2] = {{"conc_once", run, &c2}, {"pthread_once", run, &p2}};
    bench_run("2 threads", two, 2);
    bench_result r2 = bench_last[1];
    printf("\n");
    bench_bar("once after completion, 1 thread, time vs pthread_once", r1.ratio.median, "<=", 1.0);
    bench_bar("once after completion, 2 threads, time vs pthread_once", r2.ratio.median, "<=", 1.0);
    return bench_done();
}

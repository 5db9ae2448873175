/* bench/bench_barrier.c - conc_barrier against pthread_barrier_t
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_barrier && flock /tmp/conc-bench.lock build/bench/bench_barrier
 *
 * Case: `parties` threads (unpinned) pass the barrier round after round for
 * bench_duration_ns(); ns/op is wall time per round (so rounds/s = 1e9 / ns/op). Thread 0
 * checks the clock every 256 rounds and raises a stop flag that every thread reads right
 * after a round, so all leave after the same round.
 *
 * Bars (issue 15): at least 1.5x pthread_barrier_t rounds per second at 2 and 8 parties
 * (time ratio <= 0.667).
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/barrier.h"

typedef struct round_ctx {
    int parties;
    bool use_conc;
    conc_barrier_t cb;
    pthread_barrier_t pb;
    int stop; /* written by thread 0 between two rounds; read after the next */
    long rounds;
    int64_t wall;
} round_ctx;

static void pass(round_ctx *c) {
    if (c->use_conc)
        (void)conc_barrier_wait(&c->cb);
    else
        (void)pthread_barrier_wait(&c->pb);
}

static void round_thread(int index, void *arg) {
    round_ctx *c = (round_ctx *)arg;
    int64_t t0 = bench_now(), stop_at = t0 + bench_duration_ns();
    long rounds = 0;
    for (;;) {
        pass(c);
        rounds++;
        /* The flag is written by thread 0 before a round and read by all after it: every
         * thread sees the same value after the same round. A second pass keeps thread 0 from
         * writing it while others still read the previous one. */
        if (index == 0 && (rounds & 255) == 1 && bench_now() >= stop_at)
            __atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
        pass(c);
        rounds++;
        if (__atomic_load_n(&c->stop, __ATOMIC_RELAXED))
            break;
    }
    if (index == 0) {
        c->rounds = rounds;
        c->wall = bench_now() - t0;
    }
}

static void run_rounds(void *ctx, bench_sample *s) {
    round_ctx *c = (round_ctx *)ctx;
    c->stop = 0;
    if (c->use_conc) {
        if (conc_barrier_init(&c->cb, (unsigned)c->parties, 0) != 0)
            exit(1);
    } else
        pthread_barrier_init(&c->pb, NULL, (unsigned)c->parties);
    unsigned long f0 = bench_futex_count();
    bench_threads(c->parties, round_thread, c);
    s->ops = (double)c->rounds;
    s->wall_ns = (double)c->wall;
    /* only conc's futex calls are counted: pthread's row has no figure ("-") */
    s->extra[0] = !c->use_conc ? NAN
                  : c->rounds  ? (double)(bench_futex_count() - f0) / (double)c->rounds
                               : 0;
    if (!c->use_conc)
        pthread_barrier_destroy(&c->pb);
}

int main(void) {
    bench_init("barrier");
    static const char *const cols[] = {"conc futex/round", NULL};
    bench_table("barrier: rounds, every party passes every round; ns/op = ns per round", cols);
    static round_ctx ctx[2][2];
    const int parties[2] = {2, 8};
    bench_result r[2];
    for (int k = 0; k < 2; k++) {
        ctx[k][0].parties = ctx[k][1].parties = parties[k];
        ctx[k][0].use_conc = true;
        bench_impl impls[2] = {{"conc_barrier", run_rounds, &ctx[k][0]},
                               {"pthread_barrier_t", run_rounds, &ctx[k][1]}};
        char name[32];
        snprintf(name, sizeof name, "%d parties", parties[k]);
        bench_run(name, impls, 2);
        r[k] = bench_last[1];
    }
    printf("\n");
    bench_bar("barrier 2 parties, time per round vs pthread_barrier_t", r[0].ratio.median,
              "<=", 1 / 1.5);
    bench_bar("barrier 8 parties, time per round vs pthread_barrier_t", r[1].ratio.median,
              "<=", 1 / 1.5);
    return bench_done();
}

/* bench/bench_rwlock.c - conc_rwlock against pthread_rwlock_t, ck_rwlock and ck_pflock
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_rwlock && flock /tmp/conc-bench.lock build/bench/bench_rwlock
 *   (CONC_BENCH_QUICK=1 for a short run; CONC_BENCH_REPS, CONC_BENCH_CSV as in bench.h)
 *
 * Baselines: pthread_rwlock_t (glibc's default: prefers readers), ck_rwlock (a writer flag and
 * a reader count, spinning; writers first) and ck_pflock (Brandenburg and Anderson's
 * phase-fair ticket lock, spinning: the same policy as conc_rwlock).
 *
 * Cases: every thread runs for bench_duration_ns(), unpinned; each operation is a read (sum
 * a 4-long record under the shared side) or a write (bump the record under the exclusive
 * side). Read-mostly: one write every 1,000 operations per thread, 1, 2 and 8 threads (8 on
 * 2 CPUs: more threads than CPUs). Write-heavy: every other operation a write, 2 and 8
 * threads. Every write and every 64th read is timed: "max wait us" is the longest single
 * acquire of either kind over the run (the starvation figure), "min share" the slowest
 * thread's operations over an equal share. Readers check the record is consistent; the run
 * checks the writes all landed.
 *
 * Bars (issue 15): read-mostly with 8 threads at least 2x pthread_rwlock_t throughput (time
 * ratio <= 0.5) and at least 1.0x ck_pflock (ratio <= 1.0); worst wait reported.
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/rwlock.h"

#include <ck_pflock.h>
#include <ck_rwlock.h>

#define CACHELINE 64
#define SAMPLE_MASK 63u

static struct {
    _Alignas(CACHELINE) conc_rwlock_t conc;
    _Alignas(CACHELINE) pthread_rwlock_t pt;
    _Alignas(CACHELINE) ck_rwlock_t ckrw;
    _Alignas(CACHELINE) ck_pflock_t ckpf;
    _Alignas(CACHELINE) long record[4]; /* plain: written under the exclusive side */
    _Alignas(CACHELINE) int stop;       /* set by the timer thread; relaxed loads */
} g;

typedef bench_worker_stat thread_stat; /* ops, writes, t0, t1, worst_wait */

typedef struct run_cfg {
    int threads;
    unsigned write_every; /* one write per this many operations */
} run_cfg;

typedef bench_timed_worker worker_fn; /* its cfg: a const run_cfg * */

static void run_case(const run_cfg *cfg, worker_fn worker, bench_sample *s) {
    memset(g.record, 0, sizeof g.record);
    unsigned long futex0 = bench_futex_count();
    bench_timed_totals t = bench_timed_run(cfg->threads, worker, cfg, &g.stop);
    unsigned long futex1 = bench_futex_count();
    if ((double)g.record[0] != t.writes || g.record[3] != 4 * g.record[0]) {
        printf("ERROR: the record is {%ld, %ld} after %.0f writes\n", g.record[0], g.record[3],
               t.writes);
        exit(1);
    }
    bench_timed_sample(&t, cfg->threads, futex1 - futex0, s);
}

#define CONC_RD conc_rwlock_acquire_shared(&g.conc)
#define CONC_RU conc_rwlock_release_shared(&g.conc)
#define CONC_WR conc_rwlock_acquire(&g.conc)
#define CONC_WU conc_rwlock_release(&g.conc)
#define PT_RD pthread_rwlock_rdlock(&g.pt)
#define PT_RU pthread_rwlock_unlock(&g.pt)
#define PT_WR pthread_rwlock_wrlock(&g.pt)
#define PT_WU pthread_rwlock_unlock(&g.pt)
#define CKRW_RD ck_rwlock_read_lock(&g.ckrw)
#define CKRW_RU ck_rwlock_read_unlock(&g.ckrw)
#define CKRW_WR ck_rwlock_write_lock(&g.ckrw)
#define CKRW_WU ck_rwlock_write_unlock(&g.ckrw)
#define CKPF_RD ck_pflock_read_lock(&g.ckpf)
#define CKPF_RU ck_pflock_read_unlock(&g.ckpf)
#define CKPF_WR ck_pflock_write_lock(&g.ckpf)
#define CKPF_WU ck_pflock_write_unlock(&g.ckpf)

#define DEFINE_RW(tag, RD, RU, WR, WU)                                                             \
    static void worker_##tag(int index, const void *arg, thread_stat *st) {                        \
        const run_cfg *cfg = (const run_cfg *)arg;                                                 \
        const unsigned every = cfg->write_every;                                                   \
        unsigned long ops = 0, writes = 0;                                                         \
        unsigned phase = (unsigned)index * 97u % every; /* writers spread out */                   \
        int64_t worst = 0;                                                                         \
        st->t0 = bench_now();                                                                      \
        while (!__atomic_load_n(&g.stop, __ATOMIC_RELAXED)) {                                      \
            if (++phase == every) {                                                                \
                phase = 0;                                                                         \
                int64_t a = bench_now();                                                           \
                WR;                                                                                \
                int64_t w = bench_now() - a;                                                       \
                worst = w > worst ? w : worst;                                                     \
                g.record[0]++;                                                                     \
                g.record[1] += 2;                                                                  \
                g.record[2] += 3;                                                                  \
                g.record[3] += 4;                                                                  \
                WU;                                                                                \
                writes++;                                                                          \
            } else if ((ops & SAMPLE_MASK) == 0) {                                                 \
                int64_t a = bench_now();                                                           \
                RD;                                                                                \
                int64_t w = bench_now() - a;                                                       \
                worst = w > worst ? w : worst;                                                     \
                if (g.record[3] != 4 * g.record[0])                                                \
                    abort();                                                                       \
                RU;                                                                                \
            } else {                                                                               \
                RD;                                                                                \
                if (g.record[3] != 4 * g.record[0])                                                \
                    abort();                                                                       \
                RU;                                                                                \
            }                                                                                      \
            ops++;                                                                                 \
        }                                                                                          \
        st->t1 = bench_now();                                                                      \
        st->ops = (double)ops;                                                                     \
        st->writes = (double)writes;                                                               \
        st->worst_wait = worst;                                                                    \
    }                                                                                              \
    static void run_##tag(void *ctx, bench_sample *s) {                                            \
        run_case((const run_cfg *)ctx, worker_##tag, s);                                           \
        if (worker_##tag != worker_conc) /* only conc's futex calls are counted */                 \
            s->extra[2] = NAN;                                                                     \
    }

DEFINE_RW(conc, CONC_RD, CONC_RU, CONC_WR, CONC_WU)
DEFINE_RW(pt, PT_RD, PT_RU, PT_WR, PT_WU)
DEFINE_RW(ckrw, CKRW_RD, CKRW_RU, CKRW_WR, CKRW_WU)
DEFINE_RW(ckpf, CKPF_RD, CKPF_RU, CKPF_WR, CKPF_WU)

enum { I_CONC, I_PT, I_CKRW, I_CKPF, N_IMPLS };

static void impls_for(bench_impl *impls, run_cfg *cfg) {
    static const char *const names[N_IMPLS] = {"conc_rwlock", "pthread_rwlock_t", "ck_rwlock",
                                               "ck_pflock"};
    bench_fn fns[N_IMPLS] = {run_conc, run_pt, run_ckrw, run_ckpf};
    for (int i = 0; i < N_IMPLS; i++) {
        impls[i].name = names[i];
        impls[i].fn = fns[i];
        impls[i].ctx = cfg;
    }
}

int main(void) {
    bench_init("rwlock");
    conc_rwlock_init(&g.conc, 0);
    pthread_rwlock_init(&g.pt, NULL);
    ck_rwlock_init(&g.ckrw);
    ck_pflock_init(&g.ckpf);

    static const char *const cols[] = {"min share", "max wait us", "conc futex/op", NULL};
    bench_impl impls[N_IMPLS];
    static bench_result rm8[N_IMPLS], wh8[N_IMPLS];
    double worst_conc = 0;

    bench_table("rwlock, read-mostly: one write per 1,000 operations per thread; unpinned, "
                "every write and every 64th read timed",
                cols);
    const int counts[] = {1, 2, 8};
    for (int k = 0; k < 3; k++) {
        run_cfg cfg = {counts[k], 1000};
        char name[32];
        snprintf(name, sizeof name, "%d thread%s", counts[k], counts[k] > 1 ? "s" : "");
        impls_for(impls, &cfg);
        bench_run(name, impls, N_IMPLS);
        if (bench_last[I_CONC].extra[1].max > worst_conc)
            worst_conc = bench_last[I_CONC].extra[1].max;
        if (counts[k] == 8)
            memcpy(rm8, bench_last, sizeof rm8);
    }

    bench_table("rwlock, write-heavy: every other operation a write", cols);
    const int wcounts[] = {2, 8};
    for (int k = 0; k < 2; k++) {
        run_cfg cfg = {wcounts[k], 2};
        char name[32];
        snprintf(name, sizeof name, "%d threads", wcounts[k]);
        impls_for(impls, &cfg);
        bench_run(name, impls, N_IMPLS);
        if (bench_last[I_CONC].extra[1].max > worst_conc)
            worst_conc = bench_last[I_CONC].extra[1].max;
        if (wcounts[k] == 8)
            memcpy(wh8, bench_last, sizeof wh8);
    }

    printf("\n");
    bench_bar("rwlock read-mostly 8 threads, time vs pthread_rwlock_t", rm8[I_PT].ratio.median,
              "<=", 0.5);
    bench_bar("rwlock read-mostly 8 threads, time vs ck_pflock", rm8[I_CKPF].ratio.median,
              "<=", 1.0);
    printf("info: worst single wait, read-mostly 8 threads (us): conc %.0f, pthread %.0f, "
           "ck_rwlock %.0f, ck_pflock %.0f\n",
           rm8[I_CONC].extra[1].max, rm8[I_PT].extra[1].max, rm8[I_CKRW].extra[1].max,
           rm8[I_CKPF].extra[1].max);
    printf("info: worst single wait, write-heavy 8 threads (us): conc %.0f, pthread %.0f, "
           "ck_rwlock %.0f, ck_pflock %.0f\n",
           wh8[I_CONC].extra[1].max, wh8[I_PT].extra[1].max, wh8[I_CKRW].extra[1].max,
           wh8[I_CKPF].extra[1].max);
    printf("info: conc_rwlock worst single wait over every case and repetition: %.0f us\n",
           worst_conc);
    return bench_done();
}

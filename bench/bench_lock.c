/* bench/bench_lock.c - conc_lock against pthread_mutex and Concurrency Kit's spin locks;
 * conc_rlock against a recursive pthread_mutex
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_lock && flock /tmp/conc-bench.lock build/bench/bench_lock
 *   (CONC_BENCH_QUICK=1 for a short run; CONC_BENCH_REPS, CONC_BENCH_CSV as in bench.h)
 *
 * Baselines: pthread_mutex_t (glibc's default mutex), ck_spinlock_fas (one xchg),
 * ck_spinlock_ticket (FIFO tickets) and ck_spinlock_mcs (a queue of per-waiter nodes); for
 * conc_rlock, a PTHREAD_MUTEX_RECURSIVE mutex.
 *
 * Cases:
 *   - uncontended acquire + counter++ + release on one thread (the harness keeps a second
 *     thread alive, so glibc's single-thread shortcut does not flatter pthread);
 *   - contended, 1, 2, 4 and 8 threads unpinned (8 on 2 cores: more threads than CPUs) for
 *     bench_duration_ns(), on a tiny critical section (counter++) and on one of about 200 ns
 *     (a busy loop calibrated once at start). Every thread stops taking new acquires once a
 *     timer thread sets the stop flag, so an oversubscribed spin lock cannot hang the run;
 *   - fairness, 4 threads, the clock read around every acquire.
 * Figures: ns/op is wall time over all acquisitions (throughput), CPU ns/op the process CPU
 * time over them (spinning shows here). "min share" is the slowest thread's acquisitions
 * over an equal share (1.0 = fair, 0 = starved). "max wait us" is the longest single
 * acquire; in the contended tables only every 64th acquire is timed (the clock stays off the
 * hot path), in the fairness table every one. "conc futex/op" counts conc's futex syscalls
 * per acquisition (the baselines' syscalls are not counted: 0 for them).
 * The shared counter is a plain long: each run checks it equals the acquisitions.
 *
 * Bars (issue 2): uncontended at most 1.0x pthread_mutex; 2 and 8 threads at least 1.0x
 * pthread_mutex throughput (ratio <= 1.0); at least 10x ck_spinlock_ticket at 8 threads
 * (ratio <= 0.1); worst acquisition wait with 4 threads under 20 ms; rlock uncontended at
 * most 1.0x the recursive pthread_mutex.
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/lock.h"
#include "conc/rlock.h"

#include <ck_spinlock.h>

#define CACHELINE 64
#define SAMPLE_MASK 63u /* contended tables time every 64th acquire */

/* Every lock and the payload on its own cache line, so no two share a line by accident. */
static struct {
    _Alignas(CACHELINE) conc_lock_t conc;
    _Alignas(CACHELINE) pthread_mutex_t pt;
    _Alignas(CACHELINE) ck_spinlock_fas_t fas;
    _Alignas(CACHELINE) ck_spinlock_ticket_t ticket;
    _Alignas(CACHELINE) ck_spinlock_mcs_t mcs;
    _Alignas(CACHELINE) conc_rlock_t rconc;
    _Alignas(CACHELINE) pthread_mutex_t rpt;
    _Alignas(CACHELINE) long counter; /* the protected payload: plain, guarded by the lock */
    _Alignas(CACHELINE) int stop;     /* set by the timer thread; relaxed loads */
} g;

/* ---- the critical section ------------------------------------------------------------------- */

static unsigned cs_200ns_iters; /* busy-loop iterations for about 200 ns, calibrated */

/* An empty loop the compiler must keep: the asm hides i's value from the optimiser. */
static inline void busy(unsigned iters) {
    for (unsigned i = 0; i < iters; i++)
        __asm__ volatile("" : "+r"(i));
}

static void calibrate_busy(void) {
    const unsigned probe = 2000000;
    int64_t best = INT64_MAX;
    for (int k = 0; k < 5; k++) {
        int64_t t0 = bench_now();
        busy(probe);
        int64_t t = bench_now() - t0;
        if (t < best)
            best = t;
    }
    double ns_per_iter = (double)best / probe;
    double iters = 200.0 / (ns_per_iter > 0 ? ns_per_iter : 0.1);
    cs_200ns_iters = iters < 1 ? 1u : (unsigned)iters;
    int64_t t0 = bench_now();
    for (int k = 0; k < 1000; k++)
        busy(cs_200ns_iters);
    printf("critical section \"200 ns\": %u busy-loop iterations, measured %.0f ns\n",
           cs_200ns_iters, (double)(bench_now() - t0) / 1000);
}

/* ---- one run of n threads for bench_duration_ns() ------------------------------------------ */

typedef bench_worker_stat thread_stat; /* ops, t0, t1, worst_wait */

typedef struct run_cfg {
    int threads;
    unsigned cs_iters;  /* 0: counter++ only */
    unsigned time_mask; /* time acquire number k when (k & mask) == 0 */
} run_cfg;

typedef bench_timed_worker worker_fn; /* its cfg: a const run_cfg * */

static void run_contended(const run_cfg *cfg, worker_fn worker, bench_sample *s) {
    g.counter = 0;
    unsigned long futex0 = bench_futex_count();
    bench_timed_totals t = bench_timed_run(cfg->threads, worker, cfg, &g.stop);
    unsigned long futex1 = bench_futex_count();
    if ((double)g.counter != t.ops) {
        printf("ERROR: the counter is %ld after %.0f acquisitions: the lock let two in\n",
               g.counter, t.ops);
        exit(1);
    }
    bench_timed_sample(&t, cfg->threads, futex1 - futex0, s);
}

/* ---- the five locks, each with its acquire and release inlined in its own loops ------------ */

#define CONC_ACQ(node) conc_lock_acquire(&g.conc)
#define CONC_REL(node) conc_lock_release(&g.conc)
#define PT_ACQ(node) pthread_mutex_lock(&g.pt)
#define PT_REL(node) pthread_mutex_unlock(&g.pt)
#define FAS_ACQ(node) ck_spinlock_fas_lock(&g.fas)
#define FAS_REL(node) ck_spinlock_fas_unlock(&g.fas)
#define TICKET_ACQ(node) ck_spinlock_ticket_lock(&g.ticket)
#define TICKET_REL(node) ck_spinlock_ticket_unlock(&g.ticket)
#define MCS_ACQ(node) ck_spinlock_mcs_lock(&g.mcs, &(node))
#define MCS_REL(node) ck_spinlock_mcs_unlock(&g.mcs, &(node))

static long uncontended_ops(void) {
    return bench_state.quick ? 2000000 : 8000000;
}

#define DEFINE_LOCK(tag, ACQ, REL)                                                                 \
    static void uncontended_##tag(void *ctx, bench_sample *s) {                                    \
        (void)ctx;                                                                                 \
        ck_spinlock_mcs_context_t node;                                                            \
        (void)node;                                                                                \
        long n = uncontended_ops();                                                                \
        g.counter = 0;                                                                             \
        int64_t t0 = bench_now();                                                                  \
        for (long i = 0; i < n; i++) {                                                             \
            ACQ(node);                                                                             \
            g.counter++;                                                                           \
            REL(node);                                                                             \
        }                                                                                          \
        s->wall_ns = (double)(bench_now() - t0);                                                   \
        s->ops = (double)n;                                                                        \
        if (g.counter != n) {                                                                      \
            printf("ERROR: the counter is %ld after %ld acquisitions\n", g.counter, n);            \
            exit(1);                                                                               \
        }                                                                                          \
    }                                                                                              \
    static void worker_##tag(int index, const void *arg, thread_stat *st) {                        \
        const run_cfg *cfg = (const run_cfg *)arg;                                                 \
        (void)index;                                                                               \
        ck_spinlock_mcs_context_t node;                                                            \
        (void)node;                                                                                \
        const unsigned mask = cfg->time_mask, cs = cfg->cs_iters;                                  \
        unsigned long ops = 0;                                                                     \
        int64_t worst = 0;                                                                         \
        st->t0 = bench_now();                                                                      \
        /* The stop flag is read between operations only: no new acquire once it is set. */        \
        while (!__atomic_load_n(&g.stop, __ATOMIC_RELAXED)) {                                      \
            if ((ops & mask) == 0) {                                                               \
                int64_t a = bench_now();                                                           \
                ACQ(node);                                                                         \
                int64_t w = bench_now() - a;                                                       \
                worst = w > worst ? w : worst;                                                     \
            } else {                                                                               \
                ACQ(node);                                                                         \
            }                                                                                      \
            g.counter++;                                                                           \
            busy(cs);                                                                              \
            REL(node);                                                                             \
            ops++;                                                                                 \
        }                                                                                          \
        st->t1 = bench_now();                                                                      \
        st->ops = (double)ops;                                                                     \
        st->worst_wait = worst;                                                                    \
    }                                                                                              \
    static void contended_##tag(void *ctx, bench_sample *s) {                                      \
        run_contended((const run_cfg *)ctx, worker_##tag, s);                                      \
        if (worker_##tag != worker_conc) /* only conc's futex calls are counted */                 \
            s->extra[2] = NAN;                                                                     \
    }

DEFINE_LOCK(conc, CONC_ACQ, CONC_REL)
DEFINE_LOCK(pt, PT_ACQ, PT_REL)
DEFINE_LOCK(fas, FAS_ACQ, FAS_REL)
DEFINE_LOCK(ticket, TICKET_ACQ, TICKET_REL)
DEFINE_LOCK(mcs, MCS_ACQ, MCS_REL)

enum { I_CONC, I_PT, I_FAS, I_TICKET, I_MCS, N_LOCKS };

static void lock_impls(bench_impl *impls, bool contended, run_cfg *cfg) {
    static const char *const names[N_LOCKS] = {"conc_lock", "pthread_mutex", "ck_spinlock_fas",
                                               "ck_spinlock_ticket", "ck_spinlock_mcs"};
    bench_fn un[N_LOCKS] = {uncontended_conc, uncontended_pt, uncontended_fas, uncontended_ticket,
                            uncontended_mcs};
    bench_fn co[N_LOCKS] = {contended_conc, contended_pt, contended_fas, contended_ticket,
                            contended_mcs};
    for (int i = 0; i < N_LOCKS; i++) {
        impls[i].name = names[i];
        impls[i].fn = contended ? co[i] : un[i];
        impls[i].ctx = cfg;
    }
}

/* ---- rlock ---------------------------------------------------------------------------------- */

static void rlock_check(int e) {
    if (e != 0) {
        printf("ERROR: conc_rlock_release returned %d\n", e);
        exit(1);
    }
}

static void rlock_conc(void *ctx, bench_sample *s) {
    int depth = *(const int *)ctx;
    long n = uncontended_ops();
    int64_t t0 = bench_now();
    if (depth == 1) {
        for (long i = 0; i < n; i++) {
            conc_rlock_acquire(&g.rconc);
            g.counter++;
            rlock_check(conc_rlock_release(&g.rconc));
        }
    } else {
        for (long i = 0; i < n; i++) {
            conc_rlock_acquire(&g.rconc);
            conc_rlock_acquire(&g.rconc);
            g.counter++;
            rlock_check(conc_rlock_release(&g.rconc));
            rlock_check(conc_rlock_release(&g.rconc));
        }
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
}

static void rlock_pt(void *ctx, bench_sample *s) {
    int depth = *(const int *)ctx;
    long n = uncontended_ops();
    int64_t t0 = bench_now();
    if (depth == 1) {
        for (long i = 0; i < n; i++) {
            pthread_mutex_lock(&g.rpt);
            g.counter++;
            pthread_mutex_unlock(&g.rpt);
        }
    } else {
        for (long i = 0; i < n; i++) {
            pthread_mutex_lock(&g.rpt);
            pthread_mutex_lock(&g.rpt);
            g.counter++;
            pthread_mutex_unlock(&g.rpt);
            pthread_mutex_unlock(&g.rpt);
        }
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(void) {
    bench_init("lock");
    conc_lock_init(&g.conc, 0);
    pthread_mutex_init(&g.pt, NULL);
    ck_spinlock_fas_init(&g.fas);
    ck_spinlock_ticket_init(&g.ticket);
    ck_spinlock_mcs_init(&g.mcs);
    conc_rlock_init(&g.rconc);
    pthread_mutexattr_t ra;
    pthread_mutexattr_init(&ra);
    pthread_mutexattr_settype(&ra, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g.rpt, &ra);
    pthread_mutexattr_destroy(&ra);
    calibrate_busy();

    bench_impl impls[N_LOCKS];
    bench_result un, vs_pt[2][9], vs_ticket8[2], fair[2]; /* [critical section][threads] */
    const int counts[] = {1, 2, 4, 8};

    bench_table("lock, uncontended: acquire + counter++ + release, 1 thread (a second thread "
                "alive)",
                NULL);
    lock_impls(impls, false, NULL);
    bench_run("1 thread", impls, N_LOCKS);
    un = bench_last[I_PT];

    static const char *const cols[] = {"min share", "max wait us", "conc futex/op", NULL};
    const char *cs_names[2] = {"tiny critical section (counter++)", "200 ns critical section"};
    for (int c = 0; c < 2; c++) {
        char title[160];
        snprintf(title, sizeof title,
                 "lock, contended, %s; unpinned, 2 CPUs; every 64th acquire timed", cs_names[c]);
        bench_table(title, cols);
        for (int k = 0; k < 4; k++) {
            run_cfg cfg = {counts[k], c ? cs_200ns_iters : 0u, SAMPLE_MASK};
            char name[32];
            snprintf(name, sizeof name, "%d thread%s", counts[k], counts[k] > 1 ? "s" : "");
            lock_impls(impls, true, &cfg);
            bench_run(name, impls, N_LOCKS);
            vs_pt[c][counts[k]] = bench_last[I_PT];
            if (counts[k] == 8)
                vs_ticket8[c] = bench_last[I_TICKET];
        }
    }

    bench_table("lock, fairness: 4 threads, the clock read around every acquire", cols);
    for (int c = 0; c < 2; c++) {
        run_cfg cfg = {4, c ? cs_200ns_iters : 0u, 0u};
        lock_impls(impls, true, &cfg);
        bench_run(c ? "4 threads, 200 ns" : "4 threads, tiny", impls, N_LOCKS);
        fair[c] = bench_last[I_CONC];
    }

    bench_table("rlock, uncontended: acquire + counter++ + release, 1 thread", NULL);
    int depth1 = 1, depth2 = 2;
    bench_impl r1[] = {{"conc_rlock", rlock_conc, &depth1},
                       {"pthread_mutex recursive", rlock_pt, &depth1}};
    bench_run("depth 1", r1, 2);
    bench_result rl = bench_last[1];
    bench_impl r2[] = {{"conc_rlock", rlock_conc, &depth2},
                       {"pthread_mutex recursive", rlock_pt, &depth2}};
    bench_run("nested, depth 2", r2, 2);
    bench_result rl2 = bench_last[1];

    printf("\n");
    bench_bar("lock uncontended, time vs pthread_mutex", un.ratio.median, "<=", 1.0);
    bench_bar("lock 2 threads tiny CS, time vs pthread_mutex", vs_pt[0][2].ratio.median, "<=", 1.0);
    bench_bar("lock 8 threads tiny CS, time vs pthread_mutex", vs_pt[0][8].ratio.median, "<=", 1.0);
    bench_bar("lock 2 threads 200 ns CS, time vs pthread_mutex", vs_pt[1][2].ratio.median,
              "<=", 1.0);
    bench_bar("lock 8 threads 200 ns CS, time vs pthread_mutex", vs_pt[1][8].ratio.median,
              "<=", 1.0);
    bench_bar("lock 8 threads tiny CS, time vs ck_spinlock_ticket", vs_ticket8[0].ratio.median,
              "<=", 0.1);
    bench_bar("lock 8 threads 200 ns CS, time vs ck_spinlock_ticket", vs_ticket8[1].ratio.median,
              "<=", 0.1);
    double worst_us =
        fair[0].extra[1].max > fair[1].extra[1].max ? fair[0].extra[1].max : fair[1].extra[1].max;
    bench_bar("lock worst acquisition wait, 4 threads, all repetitions (us)", worst_us,
              "<=", 20000.0);
    bench_bar("rlock uncontended, time vs recursive pthread_mutex", rl.ratio.median, "<=", 1.0);
    bench_bar("rlock nested depth 2, time vs recursive pthread_mutex", rl2.ratio.median, "<=", 1.0);
    return bench_done();
}

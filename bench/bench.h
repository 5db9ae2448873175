/* bench/bench.h - the conc benchmark harness (benchmarks only)
 * SPDX-License-Identifier: MIT
 *
 * Runs conc and each baseline in the same process, interleaved (ABAB, then BABA), after a
 * warm-up, for several repetitions, and prints a markdown table: the median and min-max of
 * each figure, and of the per-repetition time ratio conc/baseline (below 1.0: conc is faster).
 *
 *     #include "bench.h"          // before any conc header: it counts futex syscalls
 *     #include "conc/lock.h"
 *     static void run_conc(void *ctx, bench_sample *s) { ...; s->ops = n; s->wall_ns = t; }
 *     int main(void) {
 *         bench_init("lock");
 *         bench_table("uncontended acquire+release", NULL);
 *         bench_impl impls[] = {{"conc_lock", run_conc, NULL}, {"pthread_mutex", run_pt, NULL}};
 *         bench_run("1 thread", impls, 2);
 *         return bench_done();
 *     }
 *
 * A bench function runs one repetition of at least 100k operations (clock reads around the
 * whole batch, never around one operation), fills ops and wall_ns, and may fill extras
 * (columns named in bench_table; NAN where an implementation has no such figure: the table
 * prints "-"). The harness measures process CPU time around the call; a function whose work
 * runs in another process (a Python script) sets cpu_elsewhere and its CPU column prints "-".
 *
 * Environment: CONC_BENCH_REPS (default 7), CONC_BENCH_QUICK=1 (3 reps, shorter runs),
 * CONC_BENCH_CSV=file (append rows as CSV), CONC_BENCH_FILTER=word (only the tables whose
 * title contains word; the others, and their bar lines, are skipped).
 */
#ifndef CONC_BENCH_H
#define CONC_BENCH_H

#if !defined(_GNU_SOURCE)
#error "bench.h pins threads (CPU_SET, pthread_setaffinity_np): build with -D_GNU_SOURCE"
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <gnu/libc-version.h>

#include "../tests/group.h"

/* Every futex syscall conc makes is counted here (relaxed: a statistic, ordered with nothing). */
static unsigned long bench_futex_calls;
#define CONC_FUTEX_HOOK(kind)                                                                      \
    ((void)(kind), __atomic_fetch_add(&bench_futex_calls, 1, __ATOMIC_RELAXED))
static inline unsigned long bench_futex_count(void) {
    return __atomic_load_n(&bench_futex_calls, __ATOMIC_RELAXED);
}

#define BENCH_MAX_EXTRA 4
#define BENCH_MAX_IMPLS 8
#define BENCH_MAX_REPS 64

typedef struct bench_sample {
    double ops;                    /* operations in this repetition */
    double wall_ns;                /* wall time for them */
    double extra[BENCH_MAX_EXTRA]; /* figures named by bench_table, per repetition */
    bool cpu_elsewhere; /* the work ran in another process (a Python script): this process's
                         * CPU time says nothing about it, so CPU ns/op prints "-" */
} bench_sample;

typedef void (*bench_fn)(void *ctx, bench_sample *out);

typedef struct bench_impl {
    const char *name;
    bench_fn fn;
    void *ctx;
} bench_impl;

static struct {
    const char *suite;
    const char *extra_names[BENCH_MAX_EXTRA];
    int n_extra;
    int reps;
    bool quick;
    FILE *csv;
    pthread_t idle;
    int idle_stop;
    bool skip_table; /* CONC_BENCH_FILTER left the current table out */
} bench_state;

static inline int64_t bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t bench_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How long a timed repetition should run: 200 ms, or 50 ms with CONC_BENCH_QUICK. */
static inline int64_t bench_duration_ns(void) {
    return bench_state.quick ? 50000000 : 200000000;
}

/* Pin the calling thread to one CPU (modulo the CPU count); returns 0 or an errno value. */
static inline int bench_pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_SET((size_t)(cpu % (n > 0 ? n : 1)), &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static inline void bench_unpin(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n; i++)
        CPU_SET((size_t)i, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* A second thread that stays alive (asleep) for the whole run: glibc skips atomics in a
 * process that never made a thread, which would flatter the pthread baselines. */
static void *bench_idle_main(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&bench_state.idle_stop, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Threads that start together (tests/group.h): fn(index, arg) on n threads; returns after
 * all joined. A thread that cannot be created ends the benchmark. */
typedef tgroup_fn bench_thread_fn;
static inline void bench_threads(int n, bench_thread_fn fn, void *arg) {
    int e = tgroup_run(n, fn, arg);
    if (e != 0) {
        fprintf(stderr, "bench: starting %d threads: %s\n", n, strerror(e));
        exit(1);
    }
}

/* Ping-pong between two threads over two one-way signals: A sends to B and waits for B's
 * answer, B waits and answers, for bench_duration_ns(). send(ctx, to) signals thread `to`
 * (0 = A, 1 = B); recv(ctx, me) waits for a signal to thread `me`. Fills s->ops (round trips)
 * and s->wall_ns. With pinned, A runs on CPU 0 and B on CPU 1. */
typedef struct bench_pingpong {
    void (*send)(void *ctx, int to);
    void (*recv)(void *ctx, int me);
    void *ctx;
    bool pinned;
    int stop;   /* release/acquire: set by A before its last send */
    long trips; /* written by A */
    int64_t wall_ns;
} bench_pingpong;

static void bench_pingpong_thread(int index, void *arg) {
    bench_pingpong *p = (bench_pingpong *)arg;
    if (p->pinned)
        bench_pin(index);
    if (index == 1) {
        for (;;) {
            p->recv(p->ctx, 1);
            if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
                return;
            p->send(p->ctx, 0);
        }
    }
    int64_t start = bench_now(), stop_at = start + bench_duration_ns();
    long trips = 0;
    for (;;) {
        p->send(p->ctx, 1);
        p->recv(p->ctx, 0);
        if ((++trips & 255) == 0 && bench_now() >= stop_at)
            break;
    }
    p->wall_ns = bench_now() - start;
    p->trips = trips;
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
    p->send(p->ctx, 1);
}

static inline void bench_pingpong_run(void (*send)(void *, int), void (*recv)(void *, int),
                                      void *ctx, bool pinned, bench_sample *s) {
    bench_pingpong p = {send, recv, ctx, pinned, 0, 0, 0};
    bench_threads(2, bench_pingpong_thread, &p);
    s->ops = (double)p.trips;
    s->wall_ns = (double)p.wall_ns;
}

/* ---- Timed runs: n workers until a timer thread says stop ---------------------------------- */

/* One worker's figures in a timed run; each on its own cache line. */
typedef struct bench_worker_stat {
    _Alignas(64) double ops; /* operations done */
    double writes;           /* a second count, for cases that keep one (rwlock: writes) */
    int64_t t0, t1;          /* the worker's first and last bench_now() */
    int64_t worst_wait;      /* the longest single timed wait, ns */
} bench_worker_stat;

/* A timed run's worker: runs until *stop (relaxed loads) and fills *st. cfg is the case's. */
typedef void (*bench_timed_worker)(int index, const void *cfg, bench_worker_stat *st);

#define BENCH_MAX_WORKERS 16

static struct {
    int workers;
    int *stop; /* set to 1 by the timer thread (relaxed: workers poll it) */
    bench_timed_worker worker;
    const void *cfg;
    bench_worker_stat stat[BENCH_MAX_WORKERS];
} bench_timed;

static void bench_timed_thread(int index, void *p) {
    (void)p;
    if (index == bench_timed.workers) { /* the timer: asleep, so it costs no CPU */
        int64_t d = bench_duration_ns();
        struct timespec ts = {(time_t)(d / 1000000000), (long)(d % 1000000000)};
        while (nanosleep(&ts, &ts) != 0)
            ;
        __atomic_store_n(bench_timed.stop, 1, __ATOMIC_RELAXED);
        return;
    }
    bench_timed.worker(index, bench_timed.cfg, &bench_timed.stat[index]);
}

/* The sums of a timed run's workers. */
typedef struct bench_timed_totals {
    double ops, writes, least; /* least: the slowest worker's ops */
    int64_t first, last, worst;
} bench_timed_totals;

static inline bench_timed_totals bench_timed_sum(const bench_worker_stat *st, int workers) {
    bench_timed_totals t = {0, 0, 1e300, INT64_MAX, 0, 0};
    for (int i = 0; i < workers; i++) {
        t.ops += st[i].ops;
        t.writes += st[i].writes;
        t.least = st[i].ops < t.least ? st[i].ops : t.least;
        t.first = st[i].t0 < t.first ? st[i].t0 : t.first;
        t.last = st[i].t1 > t.last ? st[i].t1 : t.last;
        t.worst = st[i].worst_wait > t.worst ? st[i].worst_wait : t.worst;
    }
    return t;
}

/* Runs worker(index, cfg, &its stat) on `workers` threads started together (at most
 * BENCH_MAX_WORKERS), and a timer thread that sets *stop after bench_duration_ns() (it is
 * cleared first); returns the workers' sums after all joined. */
static inline bench_timed_totals bench_timed_run(int workers, bench_timed_worker worker,
                                                 const void *cfg, int *stop) {
    if (workers > BENCH_MAX_WORKERS) {
        fprintf(stderr, "bench: %d workers, at most %d\n", workers, BENCH_MAX_WORKERS);
        exit(1);
    }
    memset(bench_timed.stat, 0, sizeof bench_timed.stat);
    bench_timed.workers = workers;
    bench_timed.stop = stop;
    bench_timed.worker = worker;
    bench_timed.cfg = cfg;
    __atomic_store_n(stop, 0, __ATOMIC_RELAXED);
    bench_threads(workers + 1, bench_timed_thread, NULL);
    return bench_timed_sum(bench_timed.stat, workers);
}

/* A timed run's sample: its operations over the time from the first start to the last stop,
 * and three extras: the slowest worker's share of an equal split ("min share"), the worst wait
 * in microseconds, and futex calls per operation. */
static inline void bench_timed_sample(const bench_timed_totals *t, int workers,
                                      unsigned long futex_calls, bench_sample *s) {
    s->ops = t->ops;
    s->wall_ns = (double)(t->last - t->first);
    s->extra[0] = t->ops > 0 ? t->least * workers / t->ops : 0;
    s->extra[1] = (double)t->worst / 1000.0;
    s->extra[2] = t->ops > 0 ? (double)futex_calls / t->ops : 0;
}

/* ---- Baselines in Python (bench/python/NAME.py, run in child processes) ------------------- */

/* Scripts that print one row per workload, "name ops ns": bench_script_run reads them. */
#define BENCH_SCRIPT_ROWS 16
typedef struct bench_script_row {
    char name[32];
    double ops, ns;
} bench_script_row;
static bench_script_row bench_script_rows[BENCH_SCRIPT_ROWS];
static int bench_script_count;

/* Runs cmd (a shell command line running script) and keeps its rows; any other line goes to
 * stderr. Then says what was measured: "Python: <what>, ok|NOT AVAILABLE; ...". */
static inline void bench_script_run(const char *cmd, const char *what, const char *script) {
    FILE *f = popen(cmd, "r");
    if (f) {
        char line[256];
        while (bench_script_count < BENCH_SCRIPT_ROWS && fgets(line, sizeof line, f)) {
            bench_script_row *r = &bench_script_rows[bench_script_count];
            if (sscanf(line, "%31s %lf %lf", r->name, &r->ops, &r->ns) == 3)
                bench_script_count++;
            else
                fprintf(stderr, "python: %s", line);
        }
        pclose(f);
    }
    printf("Python: %s, %s; measured by %s in the same run (%d workloads)\n", what,
           bench_script_count ? "ok" : "NOT AVAILABLE", script, bench_script_count);
}

/* The row a script printed under name, or NULL. */
static inline const bench_script_row *bench_script_row_named(const char *name) {
    for (int i = 0; i < bench_script_count; i++)
        if (strcmp(bench_script_rows[i].name, name) == 0)
            return &bench_script_rows[i];
    return NULL;
}

/* Scripts that run one workload per call, named by their arguments, and print "ops N",
 * "ns_per_op X" (and "rss_per_op X"): bench_python_find, then bench_python_sample. */
static char bench_python_script[1024];

/* Finds bench/python/<name>: from the source tree's root (make bench), else from the binary's
 * place (build/bench/X: ../../bench/python/<name>). False without python3 or the script. */
static inline bool bench_python_find(const char *name, const char *argv0) {
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return false;
    snprintf(bench_python_script, sizeof bench_python_script, "bench/python/%s", name);
    if (access(bench_python_script, R_OK) == 0)
        return true;
    char dir[900];
    snprintf(dir, sizeof dir, "%s", argv0);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return false;
    *slash = 0;
    snprintf(bench_python_script, sizeof bench_python_script, "%s/../../bench/python/%s", dir,
             name);
    return access(bench_python_script, R_OK) == 0;
}

/* One repetition of a Python row: runs the script with the arguments printf(fmt, ...) makes,
 * and fills s with ops operations at the script's ns per op; *rss gets its rss_per_op when rss
 * is not NULL. A failed run ends the benchmark. */
__attribute__((format(printf, 4, 5))) static inline void
bench_python_sample(bench_sample *s, double ops, double *rss, const char *fmt, ...) {
    char args[128], cmd[1400], line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "python3 %s %s", bench_python_script, args);
    FILE *f = popen(cmd, "r");
    double n = 0, ns = 0, r = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "ops %lf", &n) == 1 || sscanf(line, "rss_per_op %lf", &r) == 1)
            continue;
        (void)sscanf(line, "ns_per_op %lf", &ns);
    }
    if (!f || pclose(f) != 0 || n <= 0 || ns <= 0) {
        fprintf(stderr, "bench_%s: %s failed\n", bench_state.suite, cmd);
        exit(1);
    }
    if (rss)
        *rss = r;
    s->ops = ops;
    s->wall_ns = ns * ops;
    s->cpu_elsewhere = true;
}

static inline void bench_machine_line(void) {
    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    printf("machine: %s, %ld CPUs, Linux %s, %s, glibc %s\n", model, sysconf(_SC_NPROCESSORS_ONLN),
           u.release,
#if defined(__clang__)
           "clang " __clang_version__,
#else
           "gcc " __VERSION__,
#endif
           gnu_get_libc_version());
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_stat {
    double median, min, max;
} bench_stat;

static inline bench_stat bench_stats(const double *v, int n) {
    double tmp[BENCH_MAX_REPS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, bench_cmp_double);
    bench_stat s = {n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2, tmp[0], tmp[n - 1]};
    return s;
}

/* The host's distance between CPU 0 and CPU 1: a cache line handed there and back by two
 * pinned threads (the median of 5 runs of 100,000 round trips, after one to warm up),
 * measured when a benchmark starts and again when it ends. On a VM it is where the host put
 * the two vCPUs at the time, and that moves: one EPYC VM gave 49 to 61 ns or 340 to 390,
 * flipping from one binary of a `make bench` run to the next. Every row whose threads talk
 * across CPUs moves with it, and a baseline that stays on one CPU (Python's GIL-bound pools)
 * does not: a ratio between them moves too. Two points a run say roughly which regime it ran
 * in, not how long each lasted. Skipped unless this process may run on CPUs 0 and 1 (two
 * spinning threads sharing one CPU would take a time slice a round trip). */
static int bench_line_peer_flag; /* odd: the peer's turn, even: ours; -1: stop */

/* Release/acquire on the flag: plain moves on x86, where the trip of the line is what is
 * timed; elsewhere they keep each turn's store and load in order. No pause in the loops: a
 * pause would add its own latency to every trip. */
static void *bench_line_peer(void *arg) {
    long trips = (long)(intptr_t)arg;
    bench_pin(1);
    for (int v = 1; v < 2 * trips; v += 2) {
        int seen;
        while ((seen = __atomic_load_n(&bench_line_peer_flag, __ATOMIC_ACQUIRE)) != v)
            if (seen < 0)
                return NULL;
        __atomic_store_n(&bench_line_peer_flag, v + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static inline void bench_host_line(const char *when) {
    enum { TRIPS = 100000, RUNS = 5 };
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t saved;
    if (pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) != 0 ||
        !CPU_ISSET(0, &saved) || !CPU_ISSET(1, &saved) || bench_pin(0) != 0)
        return;
    pthread_t t;
    __atomic_store_n(&bench_line_peer_flag, 0, __ATOMIC_RELAXED);
    if (pthread_create(&t, NULL, bench_line_peer, (void *)(intptr_t)((RUNS + 1) * TRIPS)) != 0) {
        pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
        return;
    }
    /* Two seconds at most: if the peer could not be pinned to CPU 1 and shares CPU 0 with us,
     * each trip waits for a time slice, and the line would take half an hour to measure. The
     * clock is read every 64 trips: a third of a nanosecond a trip. */
    int64_t give_up = bench_now() + 2000000000;
    double ns[RUNS];
    int v = 0;
    bool late = false;
    for (int r = -1; r < RUNS && !late; r++) { /* run -1 warms up: the peer starts, vCPUs wake */
        int64_t t0 = bench_now();
        for (int i = 0; i < TRIPS; i++, v += 2) {
            __atomic_store_n(&bench_line_peer_flag, v + 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&bench_line_peer_flag, __ATOMIC_ACQUIRE) != v + 2)
                ;
            if ((i & 63) == 0 && bench_now() > give_up) {
                late = true;
                break;
            }
        }
        if (r >= 0 && !late)
            ns[r] = (double)(bench_now() - t0) / TRIPS;
    }
    if (late)
        __atomic_store_n(&bench_line_peer_flag, -1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    printf("host %s: a cache line from CPU 0 to CPU 1 and back ", when);
    if (late) {
        printf("not measured (2 s passed)\n");
        return;
    }
    bench_stat st = bench_stats(ns, RUNS);
    printf("takes %.0f ns (median of %d runs, %.0f-%.0f)\n", st.median, RUNS, st.min, st.max);
}

static inline void bench_init(const char *suite) {
    bench_state.suite = suite;
    const char *q = getenv("CONC_BENCH_QUICK");
    bench_state.quick = q && *q && *q != '0';
    const char *r = getenv("CONC_BENCH_REPS");
    bench_state.reps = r ? atoi(r) : (bench_state.quick ? 3 : 7);
    if (bench_state.reps < 1)
        bench_state.reps = 1;
    if (bench_state.reps > BENCH_MAX_REPS)
        bench_state.reps = BENCH_MAX_REPS;
    const char *csv = getenv("CONC_BENCH_CSV");
    if (csv && *csv)
        bench_state.csv = fopen(csv, "a");
    pthread_create(&bench_state.idle, NULL, bench_idle_main, NULL);
    printf("\n# %s\n\n", suite);
    bench_machine_line();
    bench_host_line("at the start");
    printf("(%d repetitions, interleaved; median [min-max]; ratio = conc time / baseline time, "
           "below 1.0 conc is faster)\n",
           bench_state.reps);
}

/* Starts a table. extra_names: NULL-terminated names of the extra figures, or NULL. */
static inline void bench_table(const char *title, const char *const *extra_names) {
    const char *filter = getenv("CONC_BENCH_FILTER");
    bench_state.skip_table = filter && *filter && !strstr(title, filter);
    if (bench_state.skip_table)
        return;
    bench_state.n_extra = 0;
    for (int i = 0; extra_names && extra_names[i] && i < BENCH_MAX_EXTRA; i++)
        bench_state.extra_names[bench_state.n_extra++] = extra_names[i];
    printf("\n### %s\n\n| case | implementation | ns/op | CPU ns/op |", title);
    for (int i = 0; i < bench_state.n_extra; i++)
        printf(" %s |", bench_state.extra_names[i]);
    printf(" ratio conc/this |\n|---|---|---:|---:|");
    for (int i = 0; i < bench_state.n_extra; i++)
        printf("---:|");
    printf("---:|\n");
    fflush(stdout);
}

/* A figure a baseline does not have (NAN, e.g. futex calls of a pthread or Python row) prints
 * as "-". */
static inline void bench_fmt(char *buf, size_t size, bench_stat s) {
    if (isnan(s.median)) {
        snprintf(buf, size, "-");
        return;
    }
    int digits = s.median >= 100 ? 0 : (s.median >= 10 ? 1 : 2);
    snprintf(buf, size, "%.*f [%.*f-%.*f]", digits, s.median, digits, s.min, digits, s.max);
}

/* The per-implementation results of the last bench_run, for callers that check bars. */
typedef struct bench_result {
    bench_stat ns_per_op, cpu_per_op, ratio;
    bench_stat extra[BENCH_MAX_EXTRA];
} bench_result;
static bench_result bench_last[BENCH_MAX_IMPLS];

/* Runs impls[0] (conc) and every baseline, interleaved, and prints one row each. */
static inline void bench_run(const char *case_name, const bench_impl *impls, int n) {
    static double ns[BENCH_MAX_IMPLS][BENCH_MAX_REPS], cpu[BENCH_MAX_IMPLS][BENCH_MAX_REPS],
        ex[BENCH_MAX_IMPLS][BENCH_MAX_EXTRA][BENCH_MAX_REPS];
    if (bench_state.skip_table)
        return;
    if (n > BENCH_MAX_IMPLS)
        n = BENCH_MAX_IMPLS;
    int reps = bench_state.reps;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up, not recorded */
        for (int k = 0; k < n; k++) {
            int i = (r & 1) ? n - 1 - k : k; /* ABAB then BABA */
            bench_sample s;
            memset(&s, 0, sizeof s);
            int64_t c0 = bench_cpu_now();
            impls[i].fn(impls[i].ctx, &s);
            int64_t c1 = bench_cpu_now();
            if (r < 0)
                continue;
            double ops = s.ops > 0 ? s.ops : 1;
            ns[i][r] = s.wall_ns / ops;
            cpu[i][r] = s.cpu_elsewhere ? NAN : (double)(c1 - c0) / ops;
            for (int e = 0; e < bench_state.n_extra; e++)
                ex[i][e][r] = s.extra[e];
        }
    }
    for (int i = 0; i < n; i++) {
        double ratio[BENCH_MAX_REPS];
        for (int r = 0; r < reps; r++)
            ratio[r] = ns[0][r] / (ns[i][r] > 0 ? ns[i][r] : 1e-9);
        bench_result *res = &bench_last[i];
        res->ns_per_op = bench_stats(ns[i], reps);
        res->cpu_per_op = bench_stats(cpu[i], reps);
        res->ratio = bench_stats(ratio, reps);
        char a[64], b[64], c[64];
        bench_fmt(a, sizeof a, res->ns_per_op);
        bench_fmt(b, sizeof b, res->cpu_per_op);
        printf("| %s | %s | %s | %s |", i == 0 ? case_name : "", impls[i].name, a, b);
        for (int e = 0; e < bench_state.n_extra; e++) {
            res->extra[e] = bench_stats(ex[i][e], reps);
            bench_fmt(c, sizeof c, res->extra[e]);
            printf(" %s |", c);
        }
        if (i == 0) {
            printf(" - |\n");
        } else {
            snprintf(c, sizeof c, "%.2f [%.2f-%.2f]", res->ratio.median, res->ratio.min,
                     res->ratio.max);
            printf(" %s |\n", c);
        }
        if (bench_state.csv) {
            fprintf(bench_state.csv, "%s,%s,%s,ns_per_op,%g,%g,%g\n", bench_state.suite, case_name,
                    impls[i].name, res->ns_per_op.median, res->ns_per_op.min, res->ns_per_op.max);
            if (!isnan(res->cpu_per_op.median))
                fprintf(bench_state.csv, "%s,%s,%s,cpu_ns_per_op,%g,%g,%g\n", bench_state.suite,
                        case_name, impls[i].name, res->cpu_per_op.median, res->cpu_per_op.min,
                        res->cpu_per_op.max);
            for (int e = 0; e < bench_state.n_extra; e++) {
                if (isnan(res->extra[e].median)) /* a figure this row does not have */
                    continue;
                fprintf(bench_state.csv, "%s,%s,%s,%s,%g,%g,%g\n", bench_state.suite, case_name,
                        impls[i].name, bench_state.extra_names[e], res->extra[e].median,
                        res->extra[e].min, res->extra[e].max);
            }
        }
    }
    fflush(stdout);
}

/* Prints a bar check line: "bar: <what>: <value> (<op> <limit>) ok|MISSED". Informational:
 * benchmarks never fail the build, but the table says plainly whether a bar was met. */
static inline void bench_bar(const char *what, double value, const char *op, double limit) {
    if (bench_state.skip_table)
        return;
    bool ok = strcmp(op, "<=") == 0 ? value <= limit : value >= limit;
    printf("bar: %s: %.3g (%s %.3g) %s\n", what, value, op, limit, ok ? "ok" : "MISSED");
}

static inline int bench_done(void) {
    printf("\n");
    bench_host_line("at the end");
    __atomic_store_n(&bench_state.idle_stop, 1, __ATOMIC_RELEASE);
    pthread_join(bench_state.idle, NULL);
    if (bench_state.csv)
        fclose(bench_state.csv);
    return 0;
}

#endif /* CONC_BENCH_H */

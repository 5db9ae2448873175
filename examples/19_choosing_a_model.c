/* examples/19_choosing_a_model.c - the same I/O-bound and CPU-bound jobs on coroutines,
 * threads and processes, measured: which model fits which work
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The concept notes' decision rule as a table this machine fills in:
 *     I/O-bound job:  200 requests that each wait 10 ms (a stand-in for a remote call);
 *     CPU-bound job:  16 chunks of pure arithmetic (about 15 ms each here).
 *   Each job runs three ways:
 *     coroutines  one thread, one coroutine per request or chunk (coro.h); CPU chunks are
 *                 awaited from a coroutine when handed to the executor (coro_bridge.h);
 *     threads     an executor with 8 threads for the waits, one per CPU for the arithmetic
 *                 (future.h);
 *     processes   a fork pool, one worker per CPU (forkpool.h).
 *   For each: wall time, CPU time (this process and its reaped children) and memory (how
 *   much this process grew while the job ran; for the fork pool also the largest worker).
 *
 * THE LESSON (printed at the end, with this run's figures)
 *   - I/O-bound: coroutines. Waiting costs nothing on a coroutine: 200 waits overlap on one
 *     thread in about one wait's time, for a page or two of memory each. A thread pool
 *     serializes waits beyond its size (or needs one thread, and its stack, per wait), and a
 *     process pool is the same with heavier workers.
 *   - CPU-bound: threads in C. Arithmetic on coroutines runs on one core, one chunk after the
 *     other: coroutines give concurrency, not parallelism. Threads use every core, share
 *     memory and start in microseconds. Processes scale the same and buy isolation (a crash
 *     or a leak stays in the worker) for a fork and a copy of the address space: take them
 *     when that isolation matters.
 *   - In CPython the GIL lets only one thread run Python code at a time, so there only
 *     processes parallelise CPU work; C threads have no such lock.
 *   - Mixed: run the I/O on coroutines and hand each CPU chunk to a pool, awaiting its future
 *     (conc_coro_await, asyncio's run_in_executor): the scheduler's thread never blocks.
 *
 * RUN
 *   make examples && build/examples/19_choosing_a_model      (about 2 s)
 */
#include "conc/coro_bridge.h"
#include "conc/executor.h"
#include "conc/forkpool.h"

#include <stdio.h>
#include <sys/resource.h>

enum { IO_REQUESTS = 200, IO_WAIT_MS = 10, CPU_CHUNKS = 16, IO_THREADS = 8 };

static long chunk_iters; /* calibrated: about 15 ms of arithmetic */
static uint64_t want_cpu[CPU_CHUNKS];

static uint64_t burn(uint64_t seed, long n) {
    uint64_t x = seed;
    for (long i = 0; i < n; i++) { /* an LCG and a mix: nothing the compiler can fold */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        x ^= x >> 29;
    }
    return x;
}

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- measuring: wall, CPU, memory ---- */
static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct sampler {
    pthread_t t;
    int stop;  /* atomic */
    long peak; /* written by the sampler, read after join */
} sampler;

static void *sampler_main(void *p) {
    sampler *s = (sampler *)p;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        long r = rss_kib();
        if (r > s->peak)
            s->peak = r;
        sleep_ms(1);
    }
    return NULL;
}

static double cpu_s(void) {
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
                    b.ru_stime.tv_usec) /
               1e6;
}

typedef struct measure {
    int64_t t0;
    double cpu0;
    long rss0;
    sampler s;
} measure;

static void measure_start(measure *m) {
    memset(m, 0, sizeof *m);
    m->rss0 = rss_kib();
    m->s.peak = m->rss0;
    if (pthread_create(&m->s.t, NULL, sampler_main, &m->s) != 0)
        exit(1);
    m->cpu0 = cpu_s();
    m->t0 = conc_now();
}

static void measure_end(measure *m, const char *job, const char *model, const char *note) {
    double wall = (double)(conc_now() - m->t0) / 1e9, cpu = cpu_s() - m->cpu0;
    __atomic_store_n(&m->s.stop, 1, __ATOMIC_RELEASE);
    pthread_join(m->s.t, NULL);
    printf("| %-4s | %-10s | %6.0f ms | %6.0f ms | %7.0f KiB | %s\n", job, model, wall * 1e3,
           cpu * 1e3, (double)(m->s.peak - m->rss0), note);
}

static void check(bool ok, const char *what) {
    if (!ok) {
        printf("CHECK FAILED: %s\n", what);
        exit(1);
    }
}

/* ---- the I/O-bound job ---- */
static int io_coro(void *arg) {
    int *done = (int *)arg;
    if (conc_coro_sleep_until(conc_deadline_in(IO_WAIT_MS * CONC_MS)) != 0)
        return 1;
    (*done)++;
    return 0;
}

static int io_task(void *arg, void **result) {
    (void)arg;
    sleep_ms(IO_WAIT_MS);
    *result = NULL;
    return 0;
}

static int io_item(size_t i, void *arg) {
    (void)i;
    (void)arg;
    sleep_ms(IO_WAIT_MS);
    return 0;
}

/* ---- the CPU-bound job ---- */
typedef struct cpu_ctx {
    uint64_t got[CPU_CHUNKS];
    conc_executor_t *ex; /* NULL: compute on the coroutine itself */
} cpu_ctx;

typedef struct cpu_arg {
    cpu_ctx *c;
    size_t i;
} cpu_arg;

static int cpu_task_store(void *arg, void **result) {
    cpu_arg *a = (cpu_arg *)arg;
    a->c->got[a->i] = burn(a->i + 1, chunk_iters); /* published by the future's completion */
    *result = NULL;
    return 0;
}

static int cpu_chunk_coro(void *arg) {
    cpu_arg *a = (cpu_arg *)arg;
    if (!a->c->ex) { /* on this thread: every other coroutine waits meanwhile */
        a->c->got[a->i] = burn(a->i + 1, chunk_iters);
        return 0;
    }
    conc_future_t *f; /* handed to a pool thread; this coroutine parks, the thread does not */
    int e = conc_executor_submit(a->c->ex, cpu_task_store, a, &f);
    if (e == 0) {
        e = conc_coro_await(f, CONC_FOREVER);
        conc_future_release(f);
    }
    return e;
}

typedef struct spawn_all {
    conc_coro_fn fn;
    void *args;
    size_t size, n;
} spawn_all;

static int spawn_all_main(void *p) {
    spawn_all *s = (spawn_all *)p;
    conc_group_t *g;
    if (conc_group_create(NULL, &g) != 0)
        return 1;
    int e = 0;
    for (size_t i = 0; i < s->n && e == 0; i++)
        e = conc_group_spawn(g, s->fn, (char *)s->args + i * s->size, NULL);
    int status = 0;
    if (conc_group_wait(g, CONC_FOREVER, &status) != 0)
        status = 1;
    conc_group_destroy(g);
    return e ? e : status;
}

static int cpu_item(size_t i, void *arg) {
    uint64_t *out = (uint64_t *)arg; /* fork-pool shared memory */
    out[i] = burn(i + 1, chunk_iters);
    return 0;
}

int main(void) {
    int ncpu = conc_cpu_count();
    /* calibrate one chunk to about 15 ms of CPU (this thread's CPU clock: a loaded machine
     * stretches wall time, not the work) */
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    volatile uint64_t sink = burn(7, 2000000);
    (void)sink;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    double ns_per =
        ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) / 2e6;
    chunk_iters = (long)(15e6 / (ns_per > 0.1 ? ns_per : 0.1));
    for (size_t i = 0; i < CPU_CHUNKS; i++)
        want_cpu[i] = burn(i + 1, chunk_iters);

    printf("%d CPUs. I/O job: %d requests waiting %d ms each. CPU job: %d chunks of arithmetic "
           "(~15 ms each).\n\n",
           ncpu, IO_REQUESTS, IO_WAIT_MS, CPU_CHUNKS);
    printf("| job  | model      |      wall |       CPU |      memory | how\n");
    printf("|------|------------|-----------|-----------|-------------|-----\n");
    measure m;
    double io_wall[3], cpu_wall[3];

    /* I/O on coroutines */
    int done = 0;
    spawn_all sa = {io_coro, &done, 0, IO_REQUESTS}; /* every coroutine gets &done */
    measure_start(&m);
    int status = 1;
    check(conc_run(spawn_all_main, &sa, &status) == 0 && status == 0 && done == IO_REQUESTS,
          "I/O job on coroutines");
    io_wall[0] = (double)(conc_now() - m.t0);
    measure_end(&m, "I/O", "coroutines", "1 thread, 200 coroutines");

    /* I/O on threads */
    conc_executor_t *ex;
    conc_future_t *fs[IO_REQUESTS];
    measure_start(&m); /* the pool's creation counts: coroutines and processes pay theirs */
    check(conc_executor_create(&ex, IO_THREADS, IO_REQUESTS) == 0, "executor");
    for (int i = 0; i < IO_REQUESTS; i++)
        check(conc_executor_submit(ex, io_task, NULL, &fs[i]) == 0, "submit");
    for (int i = 0; i < IO_REQUESTS; i++) {
        check(conc_future_wait(fs[i]) == 0, "I/O task");
        conc_future_release(fs[i]);
    }
    io_wall[1] = (double)(conc_now() - m.t0);
    measure_end(&m, "I/O", "threads", "an executor of 8 threads");
    conc_executor_destroy(ex);

    /* I/O on processes */
    conc_forkpool_opts_t po;
    memset(&po, 0, sizeof po);
    po.workers = (unsigned)ncpu;
    po.shared_size = (size_t)1 << 20;
    conc_forkpool_t *pool;
    measure_start(&m);
    check(conc_forkpool_create(&pool, &po) == 0, "fork pool");
    check(conc_forkpool_map(pool, io_item, NULL, IO_REQUESTS, NULL) == 0, "I/O map");
    conc_forkpool_destroy(pool);
    io_wall[2] = (double)(conc_now() - m.t0);
    measure_end(&m, "I/O", "processes", "a fork pool, one worker per CPU");

    /* CPU on coroutines: one thread computes every chunk in turn */
    cpu_ctx cc;
    memset(&cc, 0, sizeof cc);
    cpu_arg ca[CPU_CHUNKS];
    for (size_t i = 0; i < CPU_CHUNKS; i++)
        ca[i].c = &cc, ca[i].i = i;
    spawn_all sc = {cpu_chunk_coro, ca, sizeof ca[0], CPU_CHUNKS};
    measure_start(&m);
    check(conc_run(spawn_all_main, &sc, &status) == 0 && status == 0, "CPU job on coroutines");
    cpu_wall[0] = (double)(conc_now() - m.t0);
    measure_end(&m, "CPU", "coroutines", "1 thread: chunks run one after another");
    check(memcmp(cc.got, want_cpu, sizeof want_cpu) == 0, "CPU results (coroutines)");

    /* CPU on threads, awaited from coroutines (the mixed model) */
    memset(&cc, 0, sizeof cc);
    measure_start(&m);
    check(conc_executor_create(&cc.ex, (unsigned)ncpu, CPU_CHUNKS) == 0, "executor");
    check(conc_run(spawn_all_main, &sc, &status) == 0 && status == 0, "CPU job on threads");
    cpu_wall[1] = (double)(conc_now() - m.t0);
    measure_end(&m, "CPU", "threads", "an executor, one thread per CPU, awaited by coroutines");
    conc_executor_destroy(cc.ex);
    check(memcmp(cc.got, want_cpu, sizeof want_cpu) == 0, "CPU results (threads)");

    /* CPU on processes */
    measure_start(&m);
    check(conc_forkpool_create(&pool, &po) == 0, "fork pool");
    uint64_t *out = (uint64_t *)conc_forkpool_alloc(pool, sizeof want_cpu);
    check(out != NULL, "shared memory");
    check(conc_forkpool_map(pool, cpu_item, out, CPU_CHUNKS, NULL) == 0, "CPU map");
    bool same = memcmp(out, want_cpu, sizeof want_cpu) == 0;
    conc_forkpool_destroy(pool);
    cpu_wall[2] = (double)(conc_now() - m.t0);
    measure_end(&m, "CPU", "processes", "a fork pool, one worker per CPU");
    check(same, "CPU results (processes)");
    struct rusage ch;
    getrusage(RUSAGE_CHILDREN, &ch);

    printf("\n(memory: how much this process grew while the job ran; each fork-pool worker is a "
           "copy-on-write copy of it, the largest reached %ld KiB resident)\n\n",
           ch.ru_maxrss);
    printf("The lesson, with this run's figures:\n");
    printf("- I/O-bound: coroutines. %d waits of %d ms overlapped on one thread in %.0f ms; "
           "8 threads took %.0f ms (%.1fx), %d processes %.0f ms (%.1fx).\n",
           IO_REQUESTS, IO_WAIT_MS, io_wall[0] / 1e6, io_wall[1] / 1e6, io_wall[1] / io_wall[0],
           ncpu, io_wall[2] / 1e6, io_wall[2] / io_wall[0]);
    printf("- CPU-bound: threads in C. Coroutines ran the chunks one after another (%.0f ms); "
           "%d threads took %.0f ms (%.1fx faster), %d processes %.0f ms: as fast, plus a fork, "
           "for isolation when a chunk may crash or leak.\n",
           cpu_wall[0] / 1e6, ncpu, cpu_wall[1] / 1e6, cpu_wall[0] / cpu_wall[1], ncpu,
           cpu_wall[2] / 1e6);
    if (cpu_wall[0] / cpu_wall[1] < 1.3)
        printf("  (this run had little free CPU: the CPU column shows the same work in every "
               "row, but other processes kept the cores busy, so parallel rows could not go "
               "faster; on an idle machine threads and processes approach %dx)\n",
               ncpu);
    printf("- In CPython only processes parallelise CPU work (the GIL); in C threads do.\n");
    printf("- Mixed work: I/O on coroutines, CPU chunks handed to a pool and awaited "
           "(conc_coro_await), as the threads row above does.\n");
    return 0;
}

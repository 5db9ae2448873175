/* bench/bench_coro.c - conc coroutines against a swapcontext ping-pong, pthreads and asyncio
 * SPDX-License-Identifier: MIT
 *
 * Side by side, in one run (asyncio in a child process: bench/python/asyncio_bench.py, whose
 * own timings are parsed):
 *   - switch round trip between two coroutines (A yields to B, B back to A) against a plain
 *     swapcontext ping-pong written here and two asyncio tasks awaiting sleep(0);
 *   - syscalls per yield, counted with strace -c around a million yields;
 *   - yield cost with 1k, 10k and 100k coroutines (the first round, which faults the stacks
 *     in, is not timed) against asyncio at the same counts;
 *   - spawn+join (a batch of 100 spawned, then joined) against pthread_create+join and asyncio
 *     create_task+gather;
 *   - resident memory per idle coroutine at 100k (64 KiB stacks, guard pages on) against
 *     asyncio tasks and threads;
 *   - 10k coroutines sleeping random deadlines up to 50 ms: CPU time per sleep;
 *   - one byte back and forth over a socketpair between two coroutines against asyncio
 *     streams.
 * The library is measured as users build it for production: -O2 with CONC_DEBUG off (debug
 * builds add a stack canary check per switch and one page per coroutine).
 */
#define CONC_DEBUG 0
#include "bench.h"
#include "conc/coro.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucontext.h>

static bool have_python;

static long rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static void must(int e, const char *what) {
    if (e) {
        fprintf(stderr, "bench_coro: %s: %s\n", what, strerror(e));
        exit(1);
    }
}

/* ------------------------------------------------------------------------------------------
 * Switch round trip
 * ---------------------------------------------------------------------------------------- */
typedef struct sw_ctx {
    long rounds;
    int64_t t0, t1;
} sw_ctx;

static int sw_side(void *p) {
    sw_ctx *c = (sw_ctx *)p;
    if (!c->t0)
        c->t0 = bench_now();
    for (long i = 0; i < c->rounds; i++)
        conc_coro_yield();
    c->t1 = bench_now();
    return 0;
}

static long sw_rounds(void) {
    return bench_state.quick ? 1000000 : 5000000;
}

static void run_conc_switch(void *ctx, bench_sample *s) {
    (void)ctx;
    conc_sched_t *sc;
    must(conc_sched_create(&sc, NULL), "conc_sched_create");
    sw_ctx c = {sw_rounds(), 0, 0};
    must(conc_coro_spawn(sc, sw_side, &c, NULL, NULL), "spawn");
    must(conc_coro_spawn(sc, sw_side, &c, NULL, NULL), "spawn");
    must(conc_sched_run(sc), "run");
    conc_sched_destroy(sc);
    s->ops = (double)c.rounds;
    s->wall_ns = (double)(c.t1 - c.t0);
}

static ucontext_t uc_main, uc_a, uc_b;
static long uc_rounds;

static void uc_side_b(void) {
    for (;;)
        swapcontext(&uc_b, &uc_a);
}

static void run_swapcontext(void *ctx, bench_sample *s) {
    (void)ctx;
    static char stack[64 * 1024] __attribute__((aligned(16)));
    getcontext(&uc_b);
    uc_b.uc_stack.ss_sp = stack;
    uc_b.uc_stack.ss_size = sizeof stack;
    uc_b.uc_link = &uc_main;
    makecontext(&uc_b, uc_side_b, 0);
    uc_rounds = sw_rounds() / 10; /* ~30x slower: keep the repetition short */
    int64_t t0 = bench_now();
    for (long i = 0; i < uc_rounds; i++)
        swapcontext(&uc_a, &uc_b); /* A -> B and B -> A: one round trip */
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)uc_rounds;
}

static void run_py_switch(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 30000 : 100000;
    bench_python_sample(s, (double)n, NULL, "switch %ld", n);
}

/* Syscalls per yield: strace -c -f around this binary in --yields mode, with 0 and with
 * 1,000,000 yields; the difference divided by a million. */
static int yields_only(long n) {
    conc_sched_t *sc;
    must(conc_sched_create(&sc, NULL), "conc_sched_create");
    sw_ctx c = {n / 2, 0, 0};
    must(conc_coro_spawn(sc, sw_side, &c, NULL, NULL), "spawn");
    must(conc_coro_spawn(sc, sw_side, &c, NULL, NULL), "spawn");
    must(conc_sched_run(sc), "run");
    conc_sched_destroy(sc);
    return 0;
}

static long strace_syscalls(const char *self, long yields) {
    char cmd[1200], line[512];
    snprintf(cmd, sizeof cmd, "strace -f -c -o /dev/stdout %s --yields %ld 2>/dev/null", self,
             yields);
    FILE *f = popen(cmd, "r");
    long total = -1;
    while (f && fgets(line, sizeof line, f)) {
        long calls;
        if (strstr(line, "total") && sscanf(line, "%*f %*f %*d %ld", &calls) == 1)
            total = calls;
        else if (strstr(line, "total") && sscanf(line, "%*f %*f %ld", &calls) == 1)
            total = calls;
    }
    if (f)
        pclose(f);
    return total;
}

/* ------------------------------------------------------------------------------------------
 * Yield among many coroutines
 * ---------------------------------------------------------------------------------------- */
typedef struct many_ctx {
    conc_sched_t *sc;
    long k, rounds, warm, done;
    int64_t t0, t1;
} many_ctx;

static int many_worker(void *p) {
    many_ctx *m = (many_ctx *)p;
    conc_coro_yield();
    if (++m->warm == m->k)
        m->t0 = bench_now(); /* every coroutine has run once: stacks faulted in */
    for (long i = 1; i < m->rounds; i++)
        conc_coro_yield();
    if (++m->done == m->k)
        m->t1 = bench_now();
    return 0;
}

static void run_conc_many(void *ctx, bench_sample *s) {
    many_ctx *m = (many_ctx *)ctx;
    m->warm = m->done = 0;
    for (long i = 0; i < m->k; i++)
        must(conc_coro_spawn(m->sc, many_worker, m, NULL, NULL), "spawn");
    must(conc_sched_run(m->sc), "run");
    s->ops = (double)(m->k * (m->rounds - 1));
    s->wall_ns = (double)(m->t1 - m->t0);
}

typedef struct py_many {
    long k, rounds;
} py_many;

static void run_py_many(void *ctx, bench_sample *s) {
    py_many *p = (py_many *)ctx;
    bench_python_sample(s, (double)(p->k * (p->rounds - 1)), NULL, "yield %ld %ld", p->k,
                        p->rounds);
}

/* ------------------------------------------------------------------------------------------
 * Spawn + join
 * ---------------------------------------------------------------------------------------- */
#define SPAWN_BATCH 100

static int trivial(void *arg) {
    return (int)(intptr_t)arg;
}

typedef struct spawn_ctx {
    long n;
    long sum;
} spawn_ctx;

static int spawner(void *p) {
    spawn_ctx *c = (spawn_ctx *)p;
    conc_coro_t *h[SPAWN_BATCH];
    for (long done = 0; done < c->n; done += SPAWN_BATCH) {
        for (int i = 0; i < SPAWN_BATCH; i++)
            must(conc_coro_spawn(NULL, trivial, (void *)(intptr_t)1, NULL, &h[i]), "spawn");
        for (int i = 0; i < SPAWN_BATCH; i++) {
            int st = 0;
            must(conc_coro_join(h[i], CONC_FOREVER, &st), "join");
            conc_coro_release(h[i]);
            c->sum += st;
        }
    }
    return 0;
}

static void run_conc_spawn(void *ctx, bench_sample *s) {
    conc_sched_t *sc = (conc_sched_t *)ctx;
    spawn_ctx c = {bench_state.quick ? 100000 : 500000, 0};
    int64_t t0 = bench_now();
    must(conc_coro_spawn(sc, spawner, &c, NULL, NULL), "spawn");
    must(conc_sched_run(sc), "run");
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)c.n;
    if (c.sum != c.n)
        exit(1);
}

static void *pt_trivial(void *arg) {
    return arg;
}

static void run_pthread_spawn(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 2000 : 10000;
    int64_t t0 = bench_now();
    for (long done = 0; done < n; done += SPAWN_BATCH) {
        pthread_t t[SPAWN_BATCH];
        for (int i = 0; i < SPAWN_BATCH; i++)
            if (pthread_create(&t[i], NULL, pt_trivial, NULL) != 0)
                exit(1);
        for (int i = 0; i < SPAWN_BATCH; i++)
            pthread_join(t[i], NULL);
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
}

static void run_py_spawn(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 20000 : 100000;
    bench_python_sample(s, (double)n, NULL, "spawn %ld %d", n, SPAWN_BATCH);
}

/* ------------------------------------------------------------------------------------------
 * Resident memory per idle coroutine
 * ---------------------------------------------------------------------------------------- */
#define IDLE_N 100000

typedef struct idle_ctx {
    conc_coro_waitq_t q;
    long parked;
    long before, after;
    int64_t t0, t1;
} idle_ctx;

static int idle_worker(void *p) {
    idle_ctx *c = (idle_ctx *)p;
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "bench";
    c->parked++;
    return conc_coro_waitq_wait(&c->q, &w, CONC_FOREVER);
}

static int idle_main(void *p) {
    idle_ctx *c = (idle_ctx *)p;
    c->t0 = bench_now();
    for (long i = 0; i < IDLE_N; i++)
        must(conc_coro_spawn(NULL, idle_worker, c, NULL, NULL), "spawn");
    while (c->parked < IDLE_N)
        conc_coro_yield();
    c->t1 = bench_now();
    c->after = rss_bytes();
    conc_coro_waitq_wake_all(&c->q, 0);
    return 0;
}

static void run_conc_idle(void *ctx, bench_sample *s) {
    (void)ctx;
    idle_ctx c;
    memset(&c, 0, sizeof c);
    conc_sched_t *sc;
    must(conc_sched_create(&sc, NULL), "conc_sched_create"); /* fresh: nothing resident yet */
    c.before = rss_bytes();
    must(conc_coro_spawn(sc, idle_main, &c, NULL, NULL), "spawn");
    must(conc_sched_run(sc), "run");
    conc_sched_destroy(sc);
    s->ops = IDLE_N;
    s->wall_ns = (double)(c.t1 - c.t0); /* spawn + first run to the park, per coroutine */
    s->extra[0] = (double)(c.after - c.before) / IDLE_N / 1024.0;
}

#define THREADS_N 2000
static pthread_barrier_t idle_barrier;

static void *idle_thread(void *arg) {
    (void)arg;
    pthread_barrier_wait(&idle_barrier); /* all started */
    pthread_barrier_wait(&idle_barrier); /* measured: go */
    return NULL;
}

static void run_threads_idle(void *ctx, bench_sample *s) {
    (void)ctx;
    pthread_t *t = (pthread_t *)calloc(THREADS_N, sizeof *t);
    pthread_barrier_init(&idle_barrier, NULL, THREADS_N + 1);
    long before = rss_bytes();
    int64_t t0 = bench_now();
    for (int i = 0; i < THREADS_N; i++)
        if (pthread_create(&t[i], NULL, idle_thread, NULL) != 0)
            exit(1);
    pthread_barrier_wait(&idle_barrier);
    int64_t t1 = bench_now();
    long after = rss_bytes();
    pthread_barrier_wait(&idle_barrier);
    for (int i = 0; i < THREADS_N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&idle_barrier);
    free(t);
    s->ops = THREADS_N;
    s->wall_ns = (double)(t1 - t0);
    s->extra[0] = (double)(after - before) / THREADS_N / 1024.0;
}

static void run_py_idle(void *ctx, bench_sample *s) {
    (void)ctx;
    double rss = 0;
    bench_python_sample(s, IDLE_N, &rss, "rss %d", IDLE_N);
    s->extra[0] = rss / 1024.0;
}

/* ------------------------------------------------------------------------------------------
 * Timers: 10k sleepers, random deadlines up to 50 ms; the figure is CPU time per sleep
 * ---------------------------------------------------------------------------------------- */
#define TIMERS_N 10000
#define TIMERS_SPAN_MS 50

static int timer_sleeper(void *arg) {
    int64_t offset = (int64_t)(intptr_t)arg;
    return conc_coro_sleep_until(conc_now() + offset);
}

static void run_conc_timers(void *ctx, bench_sample *s) {
    conc_sched_t *sc = (conc_sched_t *)ctx;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < TIMERS_N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        intptr_t off = (intptr_t)(x % (uint64_t)(TIMERS_SPAN_MS * CONC_MS));
        must(conc_coro_spawn(sc, timer_sleeper, (void *)off, NULL, NULL), "spawn");
    }
    int64_t c0 = bench_cpu_now();
    must(conc_sched_run(sc), "run");
    s->wall_ns = (double)(bench_cpu_now() - c0);
    s->ops = TIMERS_N;
}

static void run_py_timers(void *ctx, bench_sample *s) {
    (void)ctx;
    bench_python_sample(s, TIMERS_N, NULL, "timers %d %d", TIMERS_N, TIMERS_SPAN_MS);
}

/* ------------------------------------------------------------------------------------------
 * fd ping-pong over a socketpair
 * ---------------------------------------------------------------------------------------- */
typedef struct fdpp {
    int sv[2];
    long rounds;
} fdpp;

static int fd_echo(void *p) {
    fdpp *f = (fdpp *)p;
    char b;
    size_t n;
    for (long i = 0; i < f->rounds; i++) {
        must(conc_coro_read(f->sv[1], &b, 1, CONC_FOREVER, &n), "read");
        must(conc_coro_write(f->sv[1], &b, 1, CONC_FOREVER, &n), "write");
    }
    return 0;
}

static int fd_client(void *p) {
    fdpp *f = (fdpp *)p;
    char b = 'x';
    size_t n;
    for (long i = 0; i < f->rounds; i++) {
        must(conc_coro_write(f->sv[0], &b, 1, CONC_FOREVER, &n), "write");
        must(conc_coro_read(f->sv[0], &b, 1, CONC_FOREVER, &n), "read");
    }
    return 0;
}

static void run_conc_fdpp(void *ctx, bench_sample *s) {
    (void)ctx;
    fdpp f;
    f.rounds = bench_state.quick ? 20000 : 50000;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f.sv) != 0)
        exit(1);
    conc_sched_t *sc;
    must(conc_sched_create(&sc, NULL), "conc_sched_create");
    must(conc_coro_spawn(sc, fd_echo, &f, NULL, NULL), "spawn");
    must(conc_coro_spawn(sc, fd_client, &f, NULL, NULL), "spawn");
    int64_t t0 = bench_now();
    must(conc_sched_run(sc), "run");
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)f.rounds;
    conc_sched_destroy(sc);
    close(f.sv[0]);
    close(f.sv[1]);
}

static void run_py_fdpp(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 10000 : 20000;
    bench_python_sample(s, (double)n, NULL, "fdpingpong %ld", n);
}

/* ------------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--yields") == 0)
        return yields_only(atol(argv[2]));
    have_python = bench_python_find("asyncio_bench.py", argv[0]);
    bench_init("coro");
    if (!have_python)
        printf("(python3 or bench/python/asyncio_bench.py not found: asyncio rows skipped)\n");
    int np = have_python ? 1 : 0;

    bench_table("switch round trip between two coroutines (A yields to B, B back to A)", NULL);
    bench_impl sw[] = {{"conc_coro_yield", run_conc_switch, NULL},
                       {"swapcontext ping-pong", run_swapcontext, NULL},
                       {"asyncio sleep(0)", run_py_switch, NULL}};
    bench_run("round trip", sw, 2 + np);
    double r_swap = bench_last[1].ratio.median;
    double r_py = np ? bench_last[2].ratio.median : 0;

    long none = strace_syscalls(argv[0], 0), million = strace_syscalls(argv[0], 1000000);
    double per_yield = (none >= 0 && million >= 0) ? (double)(million - none) / 1e6 : -1;
    if (per_yield >= 0)
        printf("\nsyscalls per yield (strace -c -f, 10^6 yields minus 0 yields: %ld - %ld): "
               "%.6f\n",
               million, none, per_yield);
    else
        printf("\nsyscalls per yield: not measured (strace missing)\n");

    bench_table("yield with many coroutines (each yields in turn; first round untimed)", NULL);
    static const long ks[] = {1000, 10000, 100000};
    double r_100k = 0;
    for (int i = 0; i < 3; i++) {
        many_ctx m;
        memset(&m, 0, sizeof m);
        m.k = ks[i];
        m.rounds = ks[i] >= 100000 ? 11 : (ks[i] >= 10000 ? 31 : 201);
        must(conc_sched_create(&m.sc, NULL), "conc_sched_create");
        py_many p = {ks[i], ks[i] >= 100000 ? 6 : (ks[i] >= 10000 ? 11 : 51)};
        bench_impl im[] = {{"conc_coro_yield", run_conc_many, &m},
                           {"asyncio sleep(0)", run_py_many, &p}};
        char name[32];
        snprintf(name, sizeof name, "%ld coroutines", ks[i]);
        bench_run(name, im, 1 + np);
        if (ks[i] == 100000 && np)
            r_100k = bench_last[1].ratio.median;
        conc_sched_destroy(m.sc);
    }

    bench_table("spawn + join (batches of 100: spawn them, then join each)", NULL);
    conc_sched_t *sp;
    must(conc_sched_create(&sp, NULL), "conc_sched_create");
    bench_impl spi[] = {{"conc_coro_spawn+join", run_conc_spawn, sp},
                        {"pthread_create+join", run_pthread_spawn, NULL},
                        {"asyncio create_task+gather", run_py_spawn, NULL}};
    bench_run("spawn+join", spi, 2 + np);
    double r_pt = bench_last[1].ratio.median, r_pyspawn = np ? bench_last[2].ratio.median : 0;
    conc_sched_destroy(sp);

    static const char *const mem_cols[] = {"KiB resident each", NULL};
    bench_table("idle coroutines: resident memory each (100k coroutines with 64 KiB stacks and "
                "guard pages; 100k asyncio tasks; 2,000 threads); ns/op: spawn to parked",
                mem_cols);
    bench_impl idl[] = {{"conc coroutine", run_conc_idle, NULL},
                        {"pthread (default stack)", run_threads_idle, NULL},
                        {"asyncio task", run_py_idle, NULL}};
    bench_run("idle", idl, 2 + np);
    double kib = bench_last[0].extra[0].median;

    bench_table("10,000 sleepers, random deadlines within 50 ms (ns/op: CPU time per sleep)", NULL);
    conc_sched_t *ts;
    must(conc_sched_create(&ts, NULL), "conc_sched_create");
    bench_impl ti[] = {{"conc_coro_sleep_until", run_conc_timers, ts},
                       {"asyncio.sleep", run_py_timers, NULL}};
    bench_run("timers", ti, 1 + np);
    conc_sched_destroy(ts);

    bench_table("one byte back and forth over a socketpair between two coroutines", NULL);
    bench_impl fi[] = {{"conc_coro_read/write", run_conc_fdpp, NULL},
                       {"asyncio streams", run_py_fdpp, NULL}};
    bench_run("fd ping-pong", fi, 1 + np);

    printf("\n");
    bench_bar("switch round trip / swapcontext ping-pong", r_swap, "<=", 0.15);
    if (np)
        bench_bar("asyncio sleep(0) round trip / switch round trip", 1.0 / r_py, ">=", 50);
    if (per_yield >= 0)
        bench_bar("syscalls per yield", per_yield, "<=", 0.0001);
    if (np)
        bench_bar("asyncio yield / conc yield at 100k", 1.0 / r_100k, ">=", 10);
    bench_bar("pthread_create+join / spawn+join", 1.0 / r_pt, ">=", 10);
    if (np)
        bench_bar("asyncio create_task+gather / spawn+join", 1.0 / r_pyspawn, ">=", 20);
    bench_bar("KiB resident per idle coroutine at 100k", kib, "<=", 8);
    return bench_done();
}

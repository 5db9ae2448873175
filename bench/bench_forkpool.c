/* bench/bench_forkpool.c - conc_forkpool against multiprocessing and a plain C fork pool
 * SPDX-License-Identifier: MIT
 *
 * Workloads (the Python ones in bench/python/mp_bench.py, run here through popen):
 *   tiny map      x -> 2x for 1M items into shared memory: conc_forkpool_map; a plain C pool
 *                 (forked workers, one pipe message per item each way); Pool.map with its
 *                 default chunksize and with chunksize 1; ProcessPoolExecutor.map
 *   round trip    submit + wait of a no-op task: conc_forkpool_submit; the plain pool (one
 *                 message each way); Pool.apply_async(...).get()
 *   create        pool create + destroy: conc; plain fork + waitpid; Pool() + close + join
 *   CPU-bound     the concept notes' loop (total += (i * i) % 97) in parts: conc_forkpool_map
 *                 on one worker per CPU against the same parts run in this process
 *   recovery      a worker SIGKILLed while it runs a map item: the time until map returns
 *                 with that item reported, and until a replacement is ready
 * Bars: tiny map >= 3x Pool.map (default) and >= 100x Pool.map(chunksize=1); round trip
 * <= 0.2x apply_async().get(); recovery (replacement ready) <= 5 ms median; CPU-bound on 2
 * workers >= 1.6x one process.
 */
#include "bench.h"

#include "conc/forkpool.h"

#include <sys/wait.h>

#define TINY_N 1000000L   /* items of the fast maps */
#define SLOW_N 20000L     /* items of the one-message-per-item baselines */
#define RT_N 2000L        /* round trips per repetition */
#define CPU_PARTS 16      /* parts of the CPU-bound map */
#define CPU_LOOP 2000000L /* iterations of the loop per part */
#define CREATE_N 5        /* create+destroy per repetition */

static long tiny_n = TINY_N, slow_n = SLOW_N, rt_n = RT_N, cpu_loop = CPU_LOOP;

/* -------------------------------------------------------------------------------------------
 * The plain C pool: forked workers, a pipe each way, one 8-byte message per item
 * ------------------------------------------------------------------------------------------- */
typedef struct plain_pool {
    int n;
    pid_t pid[64];
    int to[64], from[64];
} plain_pool;

static void plain_worker(int in, int out) {
    int64_t x;
    while (read(in, &x, sizeof x) == (ssize_t)sizeof x) {
        x = 2 * x;
        if (write(out, &x, sizeof x) != (ssize_t)sizeof x)
            break;
    }
    _exit(0);
}

static void plain_create(plain_pool *p, int n) {
    p->n = n;
    for (int k = 0; k < n; k++) {
        int a[2], b[2];
        if (pipe(a) || pipe(b))
            exit(1);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            for (int j = 0; j < k; j++) { /* the classic bug: close the other workers' ends */
                close(p->to[j]);
                close(p->from[j]);
            }
            close(a[1]);
            close(b[0]);
            plain_worker(a[0], b[1]);
        }
        close(a[0]);
        close(b[1]);
        p->pid[k] = pid;
        p->to[k] = a[1];
        p->from[k] = b[0];
    }
}

static void plain_destroy(plain_pool *p) {
    for (int k = 0; k < p->n; k++) {
        close(p->to[k]);
        close(p->from[k]);
    }
    for (int k = 0; k < p->n; k++)
        waitpid(p->pid[k], NULL, 0);
}

static int64_t *plain_out;

/* Every worker has one item in flight; each reply brings the next. */
static void plain_map(void *ctx, bench_sample *s) {
    plain_pool *p = (plain_pool *)ctx;
    int64_t t = bench_now();
    long next = 0, done = 0;
    int64_t item[64];
    for (int k = 0; k < p->n && next < slow_n; k++, next++) {
        item[k] = next;
        if (write(p->to[k], &item[k], sizeof item[k]) != (ssize_t)sizeof item[k])
            exit(1);
    }
    while (done < slow_n) {
        for (int k = 0; k < p->n && done < slow_n; k++) {
            int64_t r;
            if (read(p->from[k], &r, sizeof r) != (ssize_t)sizeof r)
                exit(1);
            plain_out[item[k]] = r;
            done++;
            if (next < slow_n) {
                item[k] = next++;
                if (write(p->to[k], &item[k], sizeof item[k]) != (ssize_t)sizeof item[k])
                    exit(1);
            }
        }
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)slow_n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

static void plain_round_trip(void *ctx, bench_sample *s) {
    plain_pool *p = (plain_pool *)ctx;
    int64_t t = bench_now();
    for (long i = 0; i < rt_n; i++) {
        int64_t x = i, r;
        if (write(p->to[0], &x, sizeof x) != (ssize_t)sizeof x ||
            read(p->from[0], &r, sizeof r) != (ssize_t)sizeof r)
            exit(1);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)rt_n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

static void plain_create_destroy(void *ctx, bench_sample *s) {
    int n = *(int *)ctx;
    int64_t t = bench_now();
    for (int i = 0; i < CREATE_N; i++) {
        plain_pool p;
        plain_create(&p, n);
        plain_destroy(&p);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = CREATE_N;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

/* -------------------------------------------------------------------------------------------
 * conc
 * ------------------------------------------------------------------------------------------- */
static conc_forkpool_t *pool;
/* In the pool's shared region. The globals are set after create, so workers never see them
 * (they see this process as it was at create): they get `io` as map's argument instead. */
typedef struct map_io {
    int64_t *in, *out;
} map_io;
static map_io *io;

static int twice_item(size_t i, void *arg) {
    map_io *m = (map_io *)arg;
    m->out[i] = 2 * m->in[i];
    return 0;
}

static void conc_tiny_map(void *ctx, bench_sample *s) {
    (void)ctx;
    int64_t t = bench_now();
    if (conc_forkpool_map(pool, twice_item, io, (size_t)tiny_n, NULL) != 0)
        exit(1);
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)tiny_n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
    if (io->out[tiny_n - 1] != 2 * io->in[tiny_n - 1])
        exit(1);
}

static int noop_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    return 0;
}

static void conc_round_trip(void *ctx, bench_sample *s) {
    (void)ctx;
    int64_t t = bench_now();
    for (long i = 0; i < rt_n; i++) {
        conc_future_t *f;
        if (conc_forkpool_submit(pool, noop_task, NULL, 0, &f) != 0 || conc_future_wait(f) != 0)
            exit(1);
        conc_future_release(f);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)rt_n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

static void conc_create_destroy(void *ctx, bench_sample *s) {
    int n = *(int *)ctx;
    int64_t t = bench_now();
    for (int i = 0; i < CREATE_N; i++) {
        conc_forkpool_opts_t o;
        memset(&o, 0, sizeof o);
        o.workers = (unsigned)n;
        conc_forkpool_t *p;
        if (conc_forkpool_create(&p, &o) != 0)
            exit(1);
        conc_forkpool_destroy(p);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = CREATE_N;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

/* The concept notes' CPU-bound loop. */
static int64_t cpu_part(long n) {
    int64_t total = 0;
    for (long i = 0; i < n; i++)
        total += (int64_t)((i * i) % 97);
    return total;
}

static int cpu_item(size_t i, void *arg) {
    ((map_io *)arg)->out[i] =
        cpu_part(cpu_loop + (long)(i & 1)); /* +0/1: the compiler cannot fold parts */
    return 0;
}

/* CPU time (user + system) a process has used so far, in ns; clock ticks from /proc. */
static double proc_cpu_ns(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long ut = 0, st = 0;
    int r = fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    fclose(f);
    return r == 2 ? (double)(ut + st) * 1e9 / (double)sysconf(_SC_CLK_TCK) : 0;
}

/* "CPUs obtained": the workers' CPU time over the wall time. On a loaded machine with
 * autogroup scheduling, all of a session's processes share one share of the CPUs: this
 * column tells a pool that cannot run in parallel from a scheduler that will not let it. */
static void conc_cpu_map(void *ctx, bench_sample *s) {
    (void)ctx;
    pid_t pids[64];
    size_t np = conc_forkpool_pids(pool, pids, 64);
    double c0 = 0, c1 = 0;
    for (size_t k = 0; k < np; k++)
        c0 += proc_cpu_ns(pids[k]);
    int64_t t = bench_now();
    if (conc_forkpool_map(pool, cpu_item, io, CPU_PARTS, NULL) != 0)
        exit(1);
    s->wall_ns = (double)(bench_now() - t);
    for (size_t k = 0; k < np; k++)
        c1 += proc_cpu_ns(pids[k]);
    s->ops = CPU_PARTS;
    s->extra[0] = (c1 - c0) / s->wall_ns;
}

static void one_process_cpu(void *ctx, bench_sample *s) {
    (void)ctx;
    double c0 = proc_cpu_ns(getpid());
    int64_t t = bench_now(), sum = 0;
    for (int i = 0; i < CPU_PARTS; i++)
        sum += cpu_part(cpu_loop + (i & 1));
    s->wall_ns = (double)(bench_now() - t);
    s->ops = CPU_PARTS;
    s->extra[0] = (proc_cpu_ns(getpid()) - c0) / s->wall_ns;
    if (sum == 42)
        puts("");
}

/* Recovery: item 0 of a two-item map raises a flag and hangs; a thread SIGKILLs its worker. */
typedef struct hang_page {
    uint32_t flag;
    pid_t pid;
} hang_page;
static hang_page *hang; /* the parent's handle; workers get it as map's argument */

static int hang_item(size_t i, void *arg) {
    if (i == 0) {
        hang_page *h = (hang_page *)arg;
        h->pid = getpid();
        __atomic_store_n(&h->flag, 1u, __ATOMIC_RELEASE);
        for (;;)
            pause();
    }
    return 0;
}

static int64_t kill_at;
static void *killer(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&hang->flag, __ATOMIC_ACQUIRE))
        sched_yield();
    kill_at = bench_now();
    kill(hang->pid, SIGKILL);
    return NULL;
}

static void conc_recovery(void *ctx, bench_sample *s) {
    unsigned workers = *(unsigned *)ctx;
    hang->flag = 0;
    pthread_t t;
    pthread_create(&t, NULL, killer, NULL);
    conc_forkpool_outcome_t out[2];
    if (conc_forkpool_map(pool, hang_item, hang, 2, out) != ECHILD || out[0].signal != SIGKILL)
        exit(1);
    int64_t reported = bench_now();
    pthread_join(t, NULL);
    pid_t pids[64];
    while (conc_forkpool_pids(pool, pids, 64) < workers)
        sched_yield();
    int64_t ready = bench_now();
    s->wall_ns = (double)(ready - kill_at);
    s->ops = 1;
    s->extra[0] = (double)(reported - kill_at) / 1e3;
}

/* -------------------------------------------------------------------------------------------
 * Python
 * ------------------------------------------------------------------------------------------- */
static void run_python(int workers) {
    char cmd[256], what[64];
    snprintf(cmd, sizeof cmd, "MP_BENCH_N='%ld %ld' python3 bench/python/mp_bench.py 2>&1", tiny_n,
             slow_n);
    snprintf(what, sizeof what, "multiprocessing (fork), %d workers", workers);
    bench_script_run(cmd, what, "bench/python/mp_bench.py");
}

static void python_result(void *ctx, bench_sample *s) {
    const bench_script_row *r = (const bench_script_row *)ctx;
    s->ops = r->ops;
    s->wall_ns = r->ns;
    s->cpu_elsewhere = true; /* measured by the script: CPU ns/op prints "-" */
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

static const bench_script_row *py(const char *name) {
    return bench_script_row_named(name);
}

/* Runs conc plus the baselines that are there (a missing Python row is left out). */
static void run_rows(const char *case_name, bench_impl *impls, int n) {
    bench_impl have[BENCH_MAX_IMPLS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (impls[i].fn != python_result || impls[i].ctx)
            have[k++] = impls[i];
    bench_run(case_name, have, k);
}

static double ratio_of(const bench_impl *impls, int n, const char *name) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (impls[i].fn == python_result && !impls[i].ctx)
            continue;
        if (strcmp(impls[i].name, name) == 0)
            return bench_last[k].ratio.median;
        k++;
    }
    return NAN;
}

int main(void) {
    bench_init("forkpool");
    if (bench_state.quick) {
        tiny_n /= 4;
        slow_n /= 4;
        rt_n /= 4;
        cpu_loop /= 4;
    }
    int workers = conc_cpu_count();
    run_python(workers);
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = (unsigned)workers;
    if (conc_forkpool_create(&pool, &o) != 0)
        return 1;
    io = (map_io *)conc_forkpool_alloc(pool, sizeof *io);
    hang = (hang_page *)conc_forkpool_alloc(pool, sizeof *hang);
    plain_out = (int64_t *)calloc((size_t)slow_n, sizeof *plain_out);
    if (!io || !hang || !plain_out)
        return 1;
    io->in = (int64_t *)conc_forkpool_alloc(pool, (size_t)tiny_n * sizeof(int64_t));
    io->out = (int64_t *)conc_forkpool_alloc(pool, (size_t)tiny_n * sizeof(int64_t));
    if (!io->in || !io->out)
        return 1;
    for (long i = 0; i < tiny_n; i++)
        io->in[i] = i;
    plain_pool plain;
    plain_create(&plain, workers);
    const char *extras[] = {"items/s", NULL};
    char title[160];

    snprintf(title, sizeof title,
             "map of tiny items (x -> 2x), %d workers; %ld items (conc, Pool default), %ld "
             "(one message per item), %ld (ProcessPoolExecutor)",
             workers, tiny_n, slow_n, slow_n / 4);
    bench_table(title, extras);
    bench_impl map_rows[5] = {
        {"conc_forkpool_map", conc_tiny_map, NULL},
        {"plain C pool, one pipe message per item", plain_map, &plain},
        {"Python Pool.map (default chunksize)", python_result, (void *)py("map_default")},
        {"Python Pool.map(chunksize=1)", python_result, (void *)py("map_cs1")},
        {"Python ProcessPoolExecutor.map", python_result, (void *)py("ppe_map")}};
    run_rows("tiny map", map_rows, 5);
    double r_default = ratio_of(map_rows, 5, "Python Pool.map (default chunksize)");
    double r_cs1 = ratio_of(map_rows, 5, "Python Pool.map(chunksize=1)");

    const char *rt_extras[] = {"round trips/s", NULL};
    bench_table("submit round trip (no-op task, submit then wait)", rt_extras);
    bench_impl rt_rows[3] = {
        {"conc_forkpool_submit + conc_future_wait", conc_round_trip, NULL},
        {"plain C pool, one message each way", plain_round_trip, &plain},
        {"Python apply_async().get()", python_result, (void *)py("apply_latency")}};
    run_rows("round trip", rt_rows, 3);
    double r_rt = ratio_of(rt_rows, 3, "Python apply_async().get()");
    plain_destroy(&plain);

    snprintf(title, sizeof title, "pool create + destroy, %d workers", workers);
    const char *cd_extras[] = {"pools/s", NULL};
    bench_table(title, cd_extras);
    bench_impl cd_rows[3] = {
        {"conc_forkpool_create + destroy", conc_create_destroy, &workers},
        {"plain fork + pipes + waitpid", plain_create_destroy, &workers},
        {"Python Pool() + close + join", python_result, (void *)py("create_destroy")}};
    run_rows("create", cd_rows, 3);

    snprintf(title, sizeof title,
             "CPU-bound map: %d parts of the concept notes' loop (%ld iterations each)", CPU_PARTS,
             cpu_loop);
    const char *cpu_extras[] = {"CPUs obtained", NULL};
    bench_table(title, cpu_extras);
    char conc_name[64];
    snprintf(conc_name, sizeof conc_name, "conc_forkpool_map, %d workers", workers);
    bench_impl cpu_rows[2] = {{conc_name, conc_cpu_map, NULL},
                              {"one process", one_process_cpu, NULL}};
    bench_run("parts", cpu_rows, 2);
    double speedup = 1.0 / bench_last[1].ratio.median;
    double cpus_pool = bench_last[0].extra[0].median, cpus_one = bench_last[1].extra[0].median;

    const char *rec_extras[] = {"item reported (us)", NULL};
    bench_table("a worker SIGKILLed mid-map: until a replacement is ready (ns/op = per kill)",
                rec_extras);
    unsigned w = (unsigned)workers;
    bench_impl rec_rows[1] = {
        {"conc_forkpool (kill -> item reported -> replacement)", conc_recovery, &w}};
    bench_run("recovery", rec_rows, 1);
    double rec_ms = bench_last[0].ns_per_op.median / 1e6;
    double rep_us = bench_last[0].extra[0].median;

    printf("\n");
    if (!isnan(r_default))
        bench_bar("tiny map, speed-up over Pool.map (default chunksize)", 1.0 / r_default,
                  ">=", 3.0);
    if (!isnan(r_cs1))
        bench_bar("tiny map, speed-up over Pool.map(chunksize=1)", 1.0 / r_cs1, ">=", 100.0);
    if (!isnan(r_rt))
        bench_bar("submit round trip / apply_async().get()", r_rt, "<=", 0.2);
    bench_bar("SIGKILLed worker: item reported (ms, median)", rep_us / 1e3, "<=", 5.0);
    bench_bar("SIGKILLed worker: replacement ready (ms, median)", rec_ms, "<=", 5.0);
    if (workers == 2)
        bench_bar("CPU-bound map on 2 workers, speed-up over one process", speedup, ">=", 1.6);
    else
        printf("bar: CPU-bound speed-up on %d workers: %.2f (the bar is for 2)\n", workers,
               speedup);
    printf("CPU-bound: the workers obtained %.2f CPUs, the one process %.2f (when these are "
           "close, the machine's load, not the pool, caps the speed-up)\n",
           cpus_pool, cpus_one);
    conc_forkpool_destroy(pool);
    free(plain_out);
    return 0;
}

/* bench/bench_future.c - conc_executor against a plain mutex+cond pool and Python's
 * ThreadPoolExecutor
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_future && flock /tmp/conc-bench.lock build/bench/bench_future
 *
 * Workloads (the same in bench/python/futures_bench.py, run here through popen):
 *   no-op tasks, single submit   submit N no-op tasks each with a future, then wait for all
 *   no-op tasks, batch           the same through the batch submit (Python: map, one future
 *                                per item: ThreadPoolExecutor ignores map's chunksize)
 *   submit-then-wait latency     one task at a time: submit, wait, release
 *   1 ms sleeping fan-out        200 tasks that sleep 1 ms on 20 workers (I/O bound)
 *   CPU-bound fan-out            the concept notes' loop, 4 parts, one thread vs one per CPU
 * The plain pool is what a C programmer writes first: a mutex+cond ring of jobs and a
 * malloc'd future per task with its own mutex+cond.
 */
#include "bench.h"
#include "conc/executor.h"

#define NOOP_TASKS 200000
#define BATCH 256

/* ---------------------------------------------------------------------------------------------
 * The plain pool
 * ------------------------------------------------------------------------------------------- */
typedef struct plain_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    void *result;
    conc_task_fn fn;
    void *arg;
    int refs; /* atomic: submitter + worker */
} plain_future;

typedef struct plain_pool {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    plain_future **ring;
    size_t cap, head, count;
    int closed;
    pthread_t threads[64];
    int nthreads;
} plain_pool;

static void plain_future_release(plain_future *f) {
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
    }
}

static void *plain_worker(void *p) {
    plain_pool *pool = (plain_pool *)p;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (pool->count == 0 && !pool->closed)
            pthread_cond_wait(&pool->not_empty, &pool->mu);
        if (pool->count == 0) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        plain_future *f = pool->ring[pool->head];
        pool->head = pool->head + 1 == pool->cap ? 0 : pool->head + 1; /* no div: see below */
        pool->count--;
        pthread_cond_signal(&pool->not_full);
        pthread_mutex_unlock(&pool->mu);
        void *result = NULL;
        int status = f->fn(f->arg, &result);
        pthread_mutex_lock(&f->mu);
        f->status = status;
        f->result = result;
        f->done = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        plain_future_release(f);
    }
}

static void plain_create(plain_pool *pool, int threads, size_t cap) {
    memset(pool, 0, sizeof *pool);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->not_empty, NULL);
    pthread_cond_init(&pool->not_full, NULL);
    pool->ring = (plain_future **)malloc(cap * sizeof *pool->ring);
    pool->cap = cap;
    pool->nthreads = threads;
    for (int i = 0; i < threads; i++)
        pthread_create(&pool->threads[i], NULL, plain_worker, pool);
}

static void plain_destroy(plain_pool *pool) {
    pthread_mutex_lock(&pool->mu);
    pool->closed = 1;
    pthread_cond_broadcast(&pool->not_empty);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->ring);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->not_empty);
    pthread_cond_destroy(&pool->not_full);
}

static plain_future *plain_new(conc_task_fn fn, void *arg) {
    plain_future *f = (plain_future *)calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->fn = fn;
    f->arg = arg;
    f->refs = 2;
    return f;
}

/* Submits n tasks under one lock acquisition per run of free slots (the batch form). */
static void plain_submit_n(plain_pool *pool, plain_future **fs, size_t n) {
    size_t done = 0;
    pthread_mutex_lock(&pool->mu);
    while (done < n) {
        while (pool->count == pool->cap)
            pthread_cond_wait(&pool->not_full, &pool->mu);
        size_t k = 0;
        while (done < n && pool->count < pool->cap) {
            /* head + count < 2 * cap: one compare, not `%` by a run-time cap (a div, 10-40
             * cycles, under the lock) */
            size_t slot = pool->head + pool->count;
            pool->ring[slot < pool->cap ? slot : slot - pool->cap] = fs[done++];
            pool->count++;
            k++;
        }
        if (k == 1)
            pthread_cond_signal(&pool->not_empty);
        else
            pthread_cond_broadcast(&pool->not_empty);
    }
    pthread_mutex_unlock(&pool->mu);
}

static int plain_wait(plain_future *f) {
    pthread_mutex_lock(&f->mu);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    int s = f->status;
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------------------------------- */
static int task_noop(void *arg, void **result) {
    (void)arg;
    (void)result;
    return 0;
}

static int task_sleep_1ms(void *arg, void **result) {
    (void)arg;
    (void)result;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    return 0;
}

static long cpu_n = 500000;
/* The concept notes' CPU-bound loop (total += (i * i) % 97). volatile-free: the result is
 * returned, so the compiler cannot drop the work. */
static int task_cpu(void *arg, void **result) {
    long n = (long)(intptr_t)arg, total = 0;
    for (long i = 0; i < n; i++)
        total += (i * i) % 97;
    *result = (void *)(intptr_t)total;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Benchmark bodies
 * ------------------------------------------------------------------------------------------- */
typedef struct ctx {
    conc_executor_t *ex;
    plain_pool *plain;
    const char *py_name; /* Python: a precomputed result */
    double py_ops, py_ns;
    int workers;
} ctx;

static conc_future_t *conc_fs[NOOP_TASKS];
static plain_future *plain_fs[NOOP_TASKS];
static long tasks_n = NOOP_TASKS;

static void fill_futex(bench_sample *s, unsigned long f0) {
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
    s->extra[1] = (double)(bench_futex_count() - f0) / s->ops;
}

static void conc_noop_single(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    unsigned long f0 = bench_futex_count();
    int64_t t = bench_now();
    for (long i = 0; i < tasks_n; i++)
        if (conc_executor_submit(c->ex, task_noop, NULL, &conc_fs[i]) != 0)
            abort();
    for (long i = 0; i < tasks_n; i++) {
        if (conc_future_wait(conc_fs[i]) != 0)
            abort();
        conc_future_release(conc_fs[i]);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)tasks_n;
    fill_futex(s, f0);
}

static void conc_noop_batch(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    unsigned long f0 = bench_futex_count();
    int64_t t = bench_now();
    for (long i = 0; i < tasks_n; i += BATCH) {
        size_t k = (size_t)(tasks_n - i < BATCH ? tasks_n - i : BATCH);
        if (conc_executor_submit_batch(c->ex, task_noop, NULL, k, &conc_fs[i], NULL) != 0)
            abort();
    }
    for (long i = 0; i < tasks_n; i++) {
        if (conc_future_wait(conc_fs[i]) != 0)
            abort();
        conc_future_release(conc_fs[i]);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)tasks_n;
    fill_futex(s, f0);
}

static void plain_noop(void *p, bench_sample *s, bool batch) {
    ctx *c = (ctx *)p;
    int64_t t = bench_now();
    for (long i = 0; i < tasks_n; i++) {
        plain_fs[i] = plain_new(task_noop, NULL);
        if (!batch)
            plain_submit_n(c->plain, &plain_fs[i], 1);
        else if ((i + 1) % BATCH == 0 || i + 1 == tasks_n)
            plain_submit_n(c->plain, &plain_fs[i / BATCH * BATCH], (size_t)(i % BATCH + 1));
    }
    for (long i = 0; i < tasks_n; i++) {
        plain_wait(plain_fs[i]);
        plain_future_release(plain_fs[i]);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)tasks_n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
    s->extra[1] = NAN; /* futex calls are counted for conc only */
}

static void plain_noop_single(void *p, bench_sample *s) {
    plain_noop(p, s, false);
}

static void plain_noop_batch(void *p, bench_sample *s) {
    plain_noop(p, s, true);
}

static void conc_latency(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    unsigned long f0 = bench_futex_count();
    int64_t t = bench_now(), end = t + bench_duration_ns() / 2;
    long n = 0;
    do {
        for (int k = 0; k < 1000; k++, n++) {
            conc_future_t *f;
            if (conc_executor_submit(c->ex, task_noop, NULL, &f) != 0 || conc_future_wait(f) != 0)
                abort();
            conc_future_release(f);
        }
    } while (bench_now() < end);
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)n;
    fill_futex(s, f0);
}

static void plain_latency(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    int64_t t = bench_now(), end = t + bench_duration_ns() / 2;
    long n = 0;
    do {
        for (int k = 0; k < 1000; k++, n++) {
            plain_future *f = plain_new(task_noop, NULL);
            plain_submit_n(c->plain, &f, 1);
            plain_wait(f);
            plain_future_release(f);
        }
    } while (bench_now() < end);
    s->wall_ns = (double)(bench_now() - t);
    s->ops = (double)n;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
    s->extra[1] = NAN; /* futex calls are counted for conc only */
}

static int sleep_tasks = 200;

static void conc_sleep_fanout(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    conc_future_t *fs[1024];
    int64_t t = bench_now();
    if (conc_executor_submit_batch(c->ex, task_sleep_1ms, NULL, (size_t)sleep_tasks, fs, NULL))
        abort();
    if (conc_future_wait_all(fs, (size_t)sleep_tasks, CONC_FOREVER) != 0)
        abort();
    s->wall_ns = (double)(bench_now() - t);
    for (int i = 0; i < sleep_tasks; i++)
        conc_future_release(fs[i]);
    s->ops = sleep_tasks;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

static void plain_sleep_fanout(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    plain_future *fs[1024];
    int64_t t = bench_now();
    for (int i = 0; i < sleep_tasks; i++)
        fs[i] = plain_new(task_sleep_1ms, NULL);
    plain_submit_n(c->plain, fs, (size_t)sleep_tasks);
    for (int i = 0; i < sleep_tasks; i++) {
        plain_wait(fs[i]);
        plain_future_release(fs[i]);
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = sleep_tasks;
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
}

#define CPU_PARTS 4
static void conc_cpu_fanout(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    void *args[CPU_PARTS];
    conc_future_t *fs[CPU_PARTS];
    for (int i = 0; i < CPU_PARTS; i++)
        args[i] = (void *)(intptr_t)cpu_n;
    int64_t t = bench_now();
    if (conc_executor_submit_batch(c->ex, task_cpu, args, CPU_PARTS, fs, NULL) != 0 ||
        conc_future_wait_all(fs, CPU_PARTS, CONC_FOREVER) != 0)
        abort();
    s->wall_ns = (double)(bench_now() - t);
    for (int i = 0; i < CPU_PARTS; i++)
        conc_future_release(fs[i]);
    s->ops = CPU_PARTS;
}

static void one_thread_cpu(void *p, bench_sample *s) {
    (void)p;
    int64_t t = bench_now();
    intptr_t sum = 0;
    for (int i = 0; i < CPU_PARTS; i++) {
        void *r;
        task_cpu((void *)(intptr_t)cpu_n, &r);
        sum += (intptr_t)r;
    }
    s->wall_ns = (double)(bench_now() - t);
    s->ops = CPU_PARTS;
    if (sum == 42)
        puts("");
}

/* Python: measured once by the script (median of its repetitions), reported per repetition. */
static void python_result(void *p, bench_sample *s) {
    ctx *c = (ctx *)p;
    s->ops = c->py_ops;
    s->wall_ns = c->py_ns;
    s->cpu_elsewhere = true; /* measured by the script: CPU ns/op prints "-" */
    s->extra[0] = s->ops / (s->wall_ns / 1e9);
    s->extra[1] = NAN; /* futex calls are counted for conc only */
}

static void run_python(int workers) {
    char cmd[256], what[64];
    snprintf(cmd, sizeof cmd,
             "FUTURES_BENCH_SLEEP='%d 20' FUTURES_BENCH_CPU='%d %ld' python3 "
             "bench/python/futures_bench.py 2>&1",
             sleep_tasks, CPU_PARTS, cpu_n);
    snprintf(what, sizeof what, "concurrent.futures.ThreadPoolExecutor(%d workers)", workers);
    bench_script_run(cmd, what, "bench/python/futures_bench.py");
}

static bool python_ctx(const char *name, ctx *c) {
    const bench_script_row *r = bench_script_row_named(name);
    if (r) {
        c->py_ops = r->ops;
        c->py_ns = r->ns;
    }
    return r != NULL;
}

int main(void) {
    bench_init("future");
    if (bench_state.quick) {
        tasks_n = NOOP_TASKS / 4;
        cpu_n /= 4;
    }
    int workers = conc_cpu_count();
    run_python(workers);

    conc_executor_t *ex;
    if (conc_executor_create(&ex, (unsigned)workers, 1024) != 0)
        return 1;
    plain_pool plain;
    plain_create(&plain, workers, 1024);
    ctx c = {ex, &plain, NULL, 0, 0, workers}, py = c;
    const char *extras[] = {"tasks/s", "futex/task", NULL};
    char title[128];

    snprintf(title, sizeof title, "no-op tasks, %d workers, %ld tasks per repetition", workers,
             tasks_n);
    bench_table(title, extras);
    bench_impl single[3] = {{"conc_executor_submit", conc_noop_single, &c},
                            {"plain mutex+cond pool", plain_noop_single, &c},
                            {"Python ThreadPoolExecutor.submit", python_result, &py}};
    bool have_py = python_ctx("noop_single", &py);
    bench_run("single submit", single, have_py ? 3 : 2);
    double single_vs_plain = bench_last[1].ns_per_op.median / bench_last[0].ns_per_op.median;
    double single_vs_py =
        have_py ? bench_last[2].ns_per_op.median / bench_last[0].ns_per_op.median : 0;

    bench_impl batch[3] = {{"conc_executor_submit_batch", conc_noop_batch, &c},
                           {"plain pool, batch push", plain_noop_batch, &c},
                           {"Python ThreadPoolExecutor.map", python_result, &py}};
    have_py = python_ctx("noop_batch", &py);
    bench_run("batch submit (256)", batch, have_py ? 3 : 2);
    double batch_vs_plain = bench_last[1].ns_per_op.median / bench_last[0].ns_per_op.median;
    double batch_vs_py =
        have_py ? bench_last[2].ns_per_op.median / bench_last[0].ns_per_op.median : 0;

    bench_table("submit-then-wait latency (one task in flight)", extras);
    bench_impl lat[3] = {{"conc_executor_submit + wait", conc_latency, &c},
                         {"plain mutex+cond pool", plain_latency, &c},
                         {"Python submit().result()", python_result, &py}};
    have_py = python_ctx("latency", &py);
    bench_run("round trip", lat, have_py ? 3 : 2);
    double lat_vs_plain = bench_last[0].ns_per_op.median / bench_last[1].ns_per_op.median;

    conc_executor_destroy(ex);
    plain_destroy(&plain);

    /* I/O bound: 1 ms sleeps on 20 workers: every implementation should approach 20 tasks
     * per ms; the figure shows the per-task overhead on top of the sleep. */
    if (conc_executor_create(&ex, 20, 1024) != 0)
        return 1;
    plain_create(&plain, 20, 1024);
    c.ex = ex;
    snprintf(title, sizeof title, "1 ms sleeping tasks, %d tasks on 20 workers (I/O bound)",
             sleep_tasks);
    const char *io_extras[] = {"tasks/s", NULL};
    bench_table(title, io_extras);
    bench_impl io[3] = {{"conc_executor", conc_sleep_fanout, &c},
                        {"plain mutex+cond pool", plain_sleep_fanout, &c},
                        {"Python ThreadPoolExecutor(20)", python_result, &py}};
    have_py = python_ctx("sleep_fanout", &py);
    bench_run("fan-out", io, have_py ? 3 : 2);
    conc_executor_destroy(ex);
    plain_destroy(&plain);

    /* CPU bound: C threads run in parallel (no GIL); the ratio against one thread is the
     * inverse of the speed-up. Python's rows show the GIL: threads do not help. */
    if (conc_executor_create(&ex, (unsigned)workers, 64) != 0)
        return 1;
    c.ex = ex;
    snprintf(title, sizeof title,
             "CPU-bound fan-out: %d parts of the concept loop (n = %ld), %d workers", CPU_PARTS,
             cpu_n, workers);
    bench_table(title, NULL);
    ctx py1 = c, pyn = c;
    bool have1 = python_ctx("cpu_fanout_1", &py1), haven = python_ctx("cpu_fanout_n", &pyn);
    bench_impl cpu[4] = {{"conc_executor (one worker per CPU)", conc_cpu_fanout, &c},
                         {"one thread, no executor", one_thread_cpu, NULL},
                         {"Python ThreadPoolExecutor(1)", python_result, &py1},
                         {"Python ThreadPoolExecutor(cpus)", python_result, &pyn}};
    bench_run("parts", cpu, have1 && haven ? 4 : 2);
    double speedup = bench_last[1].ns_per_op.median / bench_last[0].ns_per_op.median;
    printf("\nCPU-bound speed-up over one thread: conc %.2fx on %d CPUs", speedup, workers);
    if (have1 && haven)
        printf("; Python threads %.2fx (the GIL)",
               (py1.py_ns / py1.py_ops) / (pyn.py_ns / pyn.py_ops));
    printf("\n");
    conc_executor_destroy(ex);

    printf("\n");
    bench_bar("no-op tasks/s, single submit, conc / plain C pool", single_vs_plain, ">=", 2.0);
    bench_bar("no-op tasks/s, batch submit, conc / plain C pool", batch_vs_plain, ">=", 2.0);
    if (single_vs_py > 0)
        bench_bar("no-op tasks/s, single submit, conc / Python TPE", single_vs_py, ">=", 100.0);
    if (batch_vs_py > 0)
        bench_bar("no-op tasks/s, batch submit, conc / Python TPE", batch_vs_py, ">=", 100.0);
    bench_bar("submit-then-wait latency, conc / plain C pool", lat_vs_plain, "<=", 0.5);
    return bench_done();
}

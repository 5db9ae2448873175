/* bench/bench_sem.c - conc_sem against glibc's sem_t
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_sem && flock /tmp/conc-bench.lock build/bench/bench_sem
 *
 * Cases: uncontended acquire+release; ping-pong round trips through two semaphores, pinned to
 * two CPUs and unpinned; producer/consumer throughput (1P1C and 4P4C, every item one release
 * and one acquire); release with nobody waiting (release + try_acquire). Every row shows wall
 * and CPU time per operation; conc rows also show futex syscalls per operation.
 * Bars (issue 3): uncontended at most 1.0x sem_t; ping-pong at most 0.5x sem_t's round trip
 * without more than 1.5x its CPU time per round trip; release with nobody waiting makes no
 * syscall.
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/sem.h"

#include <semaphore.h>

static const char *const futex_col[] = {"futex/op", NULL};

/* ---- one seam, two semaphores ------------------------------------------------------------ */

typedef union any_sem {
    conc_sem_t c;
    sem_t p;
} any_sem;

typedef struct sem_ops {
    const char *name;
    bool is_conc;
    void (*init)(any_sem *s, unsigned value);
    void (*acquire)(any_sem *s);
    int (*try_acquire)(any_sem *s);
    void (*release)(any_sem *s);
    void (*destroy)(any_sem *s);
} sem_ops;

static void c_init(any_sem *s, unsigned v) {
    if (conc_sem_init(&s->c, v, 0, 0) != 0)
        abort();
}
static void c_acquire(any_sem *s) {
    conc_sem_acquire(&s->c);
}
static int c_try(any_sem *s) {
    return conc_sem_try_acquire(&s->c);
}
static void c_release(any_sem *s) {
    (void)!conc_sem_release(&s->c, 1); /* unbounded: cannot fail here */
}
static void c_destroy(any_sem *s) {
    (void)s;
}
static void p_init(any_sem *s, unsigned v) {
    sem_init(&s->p, 0, v);
}
static void p_acquire(any_sem *s) {
    while (sem_wait(&s->p) != 0) {
    }
}
static int p_try(any_sem *s) {
    return sem_trywait(&s->p) == 0 ? 0 : EAGAIN;
}
static void p_release(any_sem *s) {
    sem_post(&s->p);
}
static void p_destroy(any_sem *s) {
    sem_destroy(&s->p);
}

static const sem_ops conc_ops = {"conc_sem", true, c_init, c_acquire, c_try, c_release, c_destroy};
static const sem_ops posix_ops = {"sem_t", false, p_init, p_acquire, p_try, p_release, p_destroy};

typedef struct impl_ctx {
    const sem_ops *ops;
    bool pinned;
    int pairs;
} impl_ctx;

static long batch(void) {
    return bench_state.quick ? 200000 : 1000000;
}

static void futex_per_op(const impl_ctx *impl, bench_sample *s, unsigned long f0) {
    s->extra[0] = impl->ops->is_conc ? (double)(bench_futex_count() - f0) / s->ops : NAN;
}

/* ---- uncontended ------------------------------------------------------------------------- */

static void run_uncontended(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    const sem_ops *ops = impl->ops;
    any_sem sem;
    ops->init(&sem, 1);
    long n = batch() * 4;
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    for (long i = 0; i < n; i++) {
        ops->acquire(&sem);
        ops->release(&sem);
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
    futex_per_op(impl, s, f0);
    ops->destroy(&sem);
}

/* Release with nobody waiting (and a try_acquire, so the value stays at 0 or 1). */
static void run_idle_release(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    const sem_ops *ops = impl->ops;
    any_sem sem;
    ops->init(&sem, 0);
    long n = batch() * 4;
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    for (long i = 0; i < n; i++) {
        ops->release(&sem);
        if (ops->try_acquire(&sem) != 0)
            abort();
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
    futex_per_op(impl, s, f0);
    ops->destroy(&sem);
}

/* ---- ping-pong --------------------------------------------------------------------------- */

typedef struct pingpong {
    const impl_ctx *impl;
    any_sem to[2]; /* to[0]: A's semaphore, to[1]: B's */
} pingpong;

static void pingpong_send(void *ctx, int to) {
    pingpong *p = (pingpong *)ctx;
    p->impl->ops->release(&p->to[to]);
}

static void pingpong_recv(void *ctx, int me) {
    pingpong *p = (pingpong *)ctx;
    p->impl->ops->acquire(&p->to[me]);
}

static void run_pingpong(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    pingpong *p = (pingpong *)calloc(1, sizeof *p);
    p->impl = impl;
    impl->ops->init(&p->to[0], 0);
    impl->ops->init(&p->to[1], 0);
    unsigned long f0 = bench_futex_count();
    bench_pingpong_run(pingpong_send, pingpong_recv, p, impl->pinned, s);
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&p->to[0]);
    impl->ops->destroy(&p->to[1]);
    free(p);
}

/* ---- producer/consumer ------------------------------------------------------------------- */

typedef struct flow {
    const impl_ctx *impl;
    any_sem items;
    long per_thread;
} flow;

static void flow_thread(int index, void *arg) {
    flow *f = (flow *)arg;
    const sem_ops *ops = f->impl->ops;
    if (index % 2 == 0)
        for (long i = 0; i < f->per_thread; i++)
            ops->release(&f->items);
    else
        for (long i = 0; i < f->per_thread; i++)
            ops->acquire(&f->items);
}

static void run_flow(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    flow *f = (flow *)calloc(1, sizeof *f);
    f->impl = impl;
    f->per_thread = batch() / impl->pairs;
    impl->ops->init(&f->items, 0);
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    bench_threads(2 * impl->pairs, flow_thread, f);
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)(f->per_thread * impl->pairs);
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&f->items);
    free(f);
}

/* ---- main -------------------------------------------------------------------------------- */

static void run_case(const char *name, bench_fn fn, bool pinned, int pairs) {
    impl_ctx c = {&conc_ops, pinned, pairs}, p = {&posix_ops, pinned, pairs};
    bench_impl impls[] = {{conc_ops.name, fn, &c}, {posix_ops.name, fn, &p}};
    bench_run(name, impls, 2);
}

static void pingpong_bars(const char *what) {
    char text[160];
    snprintf(text, sizeof text, "sem ping-pong %s round trip, conc/sem_t", what);
    bench_bar(text, bench_last[1].ratio.median, "<=", 0.5);
    snprintf(text, sizeof text, "sem ping-pong %s CPU per round trip, conc/sem_t", what);
    bench_bar(text, bench_last[0].cpu_per_op.median / bench_last[1].cpu_per_op.median, "<=", 1.5);
}

int main(void) {
    bench_init("sem");

    bench_table("uncontended acquire+release", futex_col);
    run_case("1 thread", run_uncontended, false, 1);
    bench_bar("sem uncontended acquire+release, conc/sem_t", bench_last[1].ratio.median, "<=", 1.0);

    bench_table("release with nobody waiting (release + try_acquire)", futex_col);
    run_case("1 thread", run_idle_release, false, 1);
    bench_bar("sem release with nobody waiting: conc futex calls per release",
              bench_last[0].extra[0].max, "<=", 0);

    bench_table("ping-pong round trip (two semaphores, two threads)", futex_col);
    run_case("pinned to CPUs 0 and 1", run_pingpong, true, 1);
    pingpong_bars("pinned");
    run_case("unpinned", run_pingpong, false, 1);
    pingpong_bars("unpinned");

    bench_table("producer/consumer: one release and one acquire per item", futex_col);
    run_case("1P1C", run_flow, false, 1);
    run_case("4P4C (8 threads, 2 CPUs)", run_flow, false, 4);

    return bench_done();
}

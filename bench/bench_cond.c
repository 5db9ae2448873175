/* bench/bench_cond.c - conc_cond + conc_lock against pthread_cond_t + pthread_mutex_t
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_cond && flock /tmp/conc-bench.lock build/bench/bench_cond
 *
 * Cases: ping-pong round trips (two threads take turns through a lock and a condition),
 * pinned to two CPUs and unpinned; producer/consumer throughput through a 64-slot bounded
 * buffer (1P1C, 2P2C, 4P4C); notify and notify_all with nobody waiting. Every row shows the
 * wall and CPU time per operation and the futex syscalls per operation that conc made.
 * Bars (issue 3): ping-pong at most 0.5x pthread's round trip without more than 1.5x its
 * CPU time per round trip; notify with nobody waiting makes no syscall.
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/cond.h"

static const char *const futex_col[] = {"futex/op", NULL};

/* ---- a tiny seam so one workload body serves both implementations ------------------------ */

typedef struct sync_ops {
    void (*lock)(void *m);
    void (*unlock)(void *m);
    void (*wait)(void *c, void *m);
    void (*notify)(void *c);
    void (*notify_all)(void *c);
} sync_ops;

static void c_lock(void *m) {
    conc_lock_acquire((conc_lock_t *)m);
}
static void c_unlock(void *m) {
    conc_lock_release((conc_lock_t *)m);
}
static void c_wait(void *c, void *m) {
    conc_cond_wait((conc_cond_t *)c, (conc_lock_t *)m);
}
static void c_notify(void *c) {
    conc_cond_notify((conc_cond_t *)c);
}
static void c_notify_all(void *c) {
    conc_cond_notify_all((conc_cond_t *)c);
}
static void p_lock(void *m) {
    pthread_mutex_lock((pthread_mutex_t *)m);
}
static void p_unlock(void *m) {
    pthread_mutex_unlock((pthread_mutex_t *)m);
}
static void p_wait(void *c, void *m) {
    pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m);
}
static void p_notify(void *c) {
    pthread_cond_signal((pthread_cond_t *)c);
}
static void p_notify_all(void *c) {
    pthread_cond_broadcast((pthread_cond_t *)c);
}
static const sync_ops conc_ops = {c_lock, c_unlock, c_wait, c_notify, c_notify_all};
static const sync_ops pthread_ops = {p_lock, p_unlock, p_wait, p_notify, p_notify_all};

typedef struct impl_ctx {
    const sync_ops *ops;
    bool is_conc;
    bool pinned;
    int pairs; /* producer/consumer pairs */
} impl_ctx;

/* Fresh objects per repetition: either kind, statically initialised. */
typedef struct objects {
    conc_lock_t cl;
    conc_cond_t cc, cc2;
    pthread_mutex_t pm;
    pthread_cond_t pc, pc2;
} objects;

static void objects_init(objects *o) {
    conc_lock_init(&o->cl, 0);
    conc_cond_init(&o->cc, 0);
    conc_cond_init(&o->cc2, 0);
    pthread_mutex_init(&o->pm, NULL);
    pthread_cond_init(&o->pc, NULL);
    pthread_cond_init(&o->pc2, NULL);
}
static void objects_destroy(objects *o) {
    pthread_mutex_destroy(&o->pm);
    pthread_cond_destroy(&o->pc);
    pthread_cond_destroy(&o->pc2);
}

/* ---- ping-pong --------------------------------------------------------------------------- */

typedef struct pingpong {
    const impl_ctx *impl;
    void *m, *c;
    int turn;         /* guarded by the lock */
    bool stop;        /* guarded by the lock */
    long round_trips; /* written by thread 0 only */
    int64_t wall_ns;
} pingpong;

static void pingpong_thread(int index, void *arg) {
    pingpong *p = (pingpong *)arg;
    const sync_ops *ops = p->impl->ops;
    if (p->impl->pinned)
        bench_pin(index);
    int64_t start = bench_now(), stop_at = start + bench_duration_ns();
    long trips = 0;
    ops->lock(p->m);
    for (;;) {
        while (p->turn != index && !p->stop)
            ops->wait(p->c, p->m);
        if (p->stop)
            break;
        p->turn = 1 - index;
        ops->notify(p->c);
        if (index == 0 && (++trips & 255) == 0 && bench_now() >= stop_at) {
            p->stop = true; /* thread 1 waits for turn 1, which it has just been given */
            p->wall_ns = bench_now() - start;
            p->round_trips = trips;
        }
    }
    ops->unlock(p->m);
}

static void run_pingpong(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    objects o;
    objects_init(&o);
    pingpong p = {impl,
                  impl->is_conc ? (void *)&o.cl : (void *)&o.pm,
                  impl->is_conc ? (void *)&o.cc : (void *)&o.pc,
                  0,
                  false,
                  0,
                  0};
    unsigned long f0 = bench_futex_count();
    bench_threads(2, pingpong_thread, &p);
    s->ops = (double)p.round_trips;
    s->wall_ns = (double)p.wall_ns;
    s->extra[0] = impl->is_conc ? (double)(bench_futex_count() - f0) / s->ops : NAN;
    objects_destroy(&o);
}

/* ---- producer/consumer ------------------------------------------------------------------- */

#define SLOTS 64
typedef struct pc {
    const impl_ctx *impl;
    void *m, *not_empty, *not_full;
    long ring[SLOTS];
    int head, count; /* guarded by the lock */
    long produced;   /* guarded by the lock */
    long consumed;   /* guarded by the lock */
    bool stop;       /* guarded by the lock */
    int64_t start, wall_ns;
    long sum;
} pc;

static void pc_thread(int index, void *arg) {
    pc *q = (pc *)arg;
    const sync_ops *ops = q->impl->ops;
    int64_t stop_at = q->start + bench_duration_ns();
    if (index % 2 == 0) { /* producer */
        for (long i = 0;; i++) {
            ops->lock(q->m);
            while (q->count == SLOTS && !q->stop)
                ops->wait(q->not_full, q->m);
            if (q->stop) {
                ops->unlock(q->m);
                break;
            }
            q->ring[(q->head + q->count) % SLOTS] = i;
            q->count++;
            q->produced++;
            if ((q->produced & 1023) == 0 && bench_now() >= stop_at) {
                q->stop = true;
                q->wall_ns = bench_now() - q->start;
                ops->notify_all(q->not_empty);
                ops->notify_all(q->not_full);
            }
            ops->unlock(q->m);
            ops->notify(q->not_empty);
        }
    } else {
        long sum = 0;
        for (;;) {
            ops->lock(q->m);
            while (q->count == 0 && !q->stop)
                ops->wait(q->not_empty, q->m);
            if (q->count == 0) {
                ops->unlock(q->m);
                break;
            }
            sum += q->ring[q->head];
            q->head = (q->head + 1) % SLOTS;
            q->count--;
            q->consumed++;
            ops->unlock(q->m);
            ops->notify(q->not_full);
        }
        ops->lock(q->m);
        q->sum += sum;
        ops->unlock(q->m);
    }
}

static void run_pc(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    objects o;
    objects_init(&o);
    pc q;
    memset(&q, 0, sizeof q);
    q.impl = impl;
    q.m = impl->is_conc ? (void *)&o.cl : (void *)&o.pm;
    q.not_empty = impl->is_conc ? (void *)&o.cc : (void *)&o.pc;
    q.not_full = impl->is_conc ? (void *)&o.cc2 : (void *)&o.pc2;
    unsigned long f0 = bench_futex_count();
    q.start = bench_now();
    bench_threads(2 * impl->pairs, pc_thread, &q);
    if (q.consumed != q.produced) {
        fprintf(stderr, "bench_cond: produced %ld, consumed %ld\n", q.produced, q.consumed);
        exit(1);
    }
    s->ops = (double)q.consumed;
    s->wall_ns = (double)q.wall_ns;
    s->extra[0] = impl->is_conc ? (double)(bench_futex_count() - f0) / s->ops : NAN;
    objects_destroy(&o);
}

/* ---- notify with nobody waiting ---------------------------------------------------------- */

static unsigned long idle_futex_calls;

static void run_idle_notify(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    objects o;
    objects_init(&o);
    void *c = impl->is_conc ? (void *)&o.cc : (void *)&o.pc;
    void (*notify)(void *) = impl->pairs ? impl->ops->notify_all : impl->ops->notify;
    long n = bench_state.quick ? 2000000 : 10000000;
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    for (long i = 0; i < n; i++)
        notify(c);
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
    if (impl->is_conc) {
        unsigned long calls = bench_futex_count() - f0;
        idle_futex_calls += calls;
        s->extra[0] = (double)calls / s->ops;
    } else {
        s->extra[0] = NAN;
    }
    objects_destroy(&o);
}

int main(void) {
    bench_init("cond");

    bench_table("ping-pong round trip (two threads take turns through lock + condition)",
                futex_col);
    impl_ctx conc_pinned = {&conc_ops, true, true, 0}, pt_pinned = {&pthread_ops, false, true, 0};
    bench_impl pinned[] = {{"conc_cond+conc_lock", run_pingpong, &conc_pinned},
                           {"pthread_cond+mutex", run_pingpong, &pt_pinned}};
    bench_run("pinned to 2 CPUs", pinned, 2);
    double pinned_ratio = bench_last[1].ratio.median;
    double pinned_cpu = bench_last[0].cpu_per_op.median / bench_last[1].cpu_per_op.median;

    impl_ctx conc_free = {&conc_ops, true, false, 0}, pt_free = {&pthread_ops, false, false, 0};
    bench_impl unpinned[] = {{"conc_cond+conc_lock", run_pingpong, &conc_free},
                             {"pthread_cond+mutex", run_pingpong, &pt_free}};
    bench_run("unpinned", unpinned, 2);
    double free_ratio = bench_last[1].ratio.median;
    double free_cpu = bench_last[0].cpu_per_op.median / bench_last[1].cpu_per_op.median;

    bench_table("producer/consumer through a 64-slot buffer (ns per item)", futex_col);
    int pair_counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        impl_ctx c = {&conc_ops, true, false, pair_counts[k]};
        impl_ctx p = {&pthread_ops, false, false, pair_counts[k]};
        bench_impl impls[] = {{"conc_cond+conc_lock", run_pc, &c},
                              {"pthread_cond+mutex", run_pc, &p}};
        char name[32];
        snprintf(name, sizeof name, "%dP%dC", pair_counts[k], pair_counts[k]);
        bench_run(name, impls, 2);
    }

    bench_table("notify with nobody waiting", futex_col);
    impl_ctx cn = {&conc_ops, true, false, 0}, pn = {&pthread_ops, false, false, 0};
    bench_impl one[] = {{"conc_cond_notify", run_idle_notify, &cn},
                        {"pthread_cond_signal", run_idle_notify, &pn}};
    bench_run("notify", one, 2);
    impl_ctx ca = {&conc_ops, true, false, 1}, pa = {&pthread_ops, false, false, 1};
    bench_impl all[] = {{"conc_cond_notify_all", run_idle_notify, &ca},
                        {"pthread_cond_broadcast", run_idle_notify, &pa}};
    bench_run("notify_all", all, 2);

    printf("\n");
    bench_bar("cond ping-pong pinned, time ratio conc/pthread", pinned_ratio, "<=", 0.5);
    bench_bar("cond ping-pong pinned, CPU per round trip conc/pthread", pinned_cpu, "<=", 1.5);
    bench_bar("cond ping-pong unpinned, time ratio conc/pthread", free_ratio, "<=", 0.5);
    bench_bar("cond ping-pong unpinned, CPU per round trip conc/pthread", free_cpu, "<=", 1.5);
    bench_bar("cond notify/notify_all with nobody waiting, futex syscalls (all reps)",
              (double)idle_futex_calls, "<=", 0);
    return bench_done();
}

/* bench/bench_event.c - conc_event against an eventfd event and a mutex+cond event
 * SPDX-License-Identifier: MIT
 *
 *   make build/bench/bench_event && flock /tmp/conc-bench.lock build/bench/bench_event
 *
 * Baselines: an eventfd used as an event (set = write 1, wait+clear = a blocking read that
 * also zeroes it: eventfd's best case; is_set = poll with no timeout) and Python's Event in C
 * (a flag, a pthread mutex and a pthread condition; set broadcasts).
 * Cases: set + clear with nobody waiting (with the futex syscall count); wait on a set event;
 * ping-pong round trips through two events (set, wait, clear), pinned to two CPUs and
 * unpinned; a start gun: one setter releases 4 waiters per round (two alternating events).
 * Bars (issue 3): ping-pong at most 0.5x the mutex+cond event's round trip without more than
 * 1.5x its CPU time; set with nobody waiting makes no syscall.
 */
#include "bench.h" /* first: it counts futex syscalls */
#include "conc/event.h"

#include <poll.h>
#include <sys/eventfd.h>

static const char *const futex_col[] = {"futex/op", NULL};

/* ---- three events behind one seam -------------------------------------------------------- */

typedef struct pt_event {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool flag;
} pt_event;

typedef struct any_event {
    conc_event_t c;
    int fd;
    pt_event p;
} any_event;

typedef struct event_ops {
    const char *name;
    bool is_conc;
    void (*init)(any_event *e);
    void (*set)(any_event *e);
    void (*clear)(any_event *e);
    bool (*is_set)(any_event *e);
    void (*wait_clear)(any_event *e); /* wait until set, then clear */
    void (*wait)(any_event *e);
    void (*destroy)(any_event *e);
} event_ops;

static void c_init(any_event *e) {
    conc_event_init(&e->c, 0);
}
static void c_set(any_event *e) {
    conc_event_set(&e->c);
}
static void c_clear(any_event *e) {
    conc_event_clear(&e->c);
}
static bool c_is_set(any_event *e) {
    return conc_event_is_set(&e->c);
}
static void c_wait(any_event *e) {
    conc_event_wait(&e->c);
}
static void c_wait_clear(any_event *e) {
    conc_event_wait(&e->c);
    conc_event_clear(&e->c);
}
static void c_destroy(any_event *e) {
    (void)e;
}

static void f_init(any_event *e) {
    e->fd = eventfd(0, EFD_CLOEXEC);
    if (e->fd < 0)
        abort();
}
static void f_set(any_event *e) {
    uint64_t one = 1;
    if (write(e->fd, &one, sizeof one) != sizeof one)
        abort();
}
static void f_clear(any_event *e) {
    struct pollfd p = {e->fd, POLLIN, 0};
    uint64_t v;
    if (poll(&p, 1, 0) == 1 && read(e->fd, &v, sizeof v) != sizeof v)
        abort();
}
static bool f_is_set(any_event *e) {
    struct pollfd p = {e->fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}
static void f_wait(any_event *e) {
    struct pollfd p = {e->fd, POLLIN, 0};
    while (poll(&p, 1, -1) != 1) {
    }
}
static void f_wait_clear(any_event *e) {
    uint64_t v;
    if (read(e->fd, &v, sizeof v) != sizeof v) /* blocks until set, and zeroes it */
        abort();
}
static void f_destroy(any_event *e) {
    close(e->fd);
}

static void p_init(any_event *e) {
    pthread_mutex_init(&e->p.m, NULL);
    pthread_cond_init(&e->p.c, NULL);
    e->p.flag = false;
}
static void p_set(any_event *e) {
    pthread_mutex_lock(&e->p.m);
    e->p.flag = true;
    pthread_cond_broadcast(&e->p.c);
    pthread_mutex_unlock(&e->p.m);
}
static void p_clear(any_event *e) {
    pthread_mutex_lock(&e->p.m);
    e->p.flag = false;
    pthread_mutex_unlock(&e->p.m);
}
static bool p_is_set(any_event *e) {
    pthread_mutex_lock(&e->p.m);
    bool f = e->p.flag;
    pthread_mutex_unlock(&e->p.m);
    return f;
}
static void p_wait(any_event *e) {
    pthread_mutex_lock(&e->p.m);
    while (!e->p.flag)
        pthread_cond_wait(&e->p.c, &e->p.m);
    pthread_mutex_unlock(&e->p.m);
}
static void p_wait_clear(any_event *e) {
    pthread_mutex_lock(&e->p.m);
    while (!e->p.flag)
        pthread_cond_wait(&e->p.c, &e->p.m);
    e->p.flag = false;
    pthread_mutex_unlock(&e->p.m);
}
static void p_destroy(any_event *e) {
    pthread_mutex_destroy(&e->p.m);
    pthread_cond_destroy(&e->p.c);
}

static const event_ops conc_ops = {"conc_event", true,         c_init, c_set,    c_clear,
                                   c_is_set,     c_wait_clear, c_wait, c_destroy};
static const event_ops fd_ops = {"eventfd", false,        f_init, f_set,    f_clear,
                                 f_is_set,  f_wait_clear, f_wait, f_destroy};
static const event_ops pt_ops = {"mutex+cond", false,        p_init, p_set,    p_clear,
                                 p_is_set,     p_wait_clear, p_wait, p_destroy};

typedef struct impl_ctx {
    const event_ops *ops;
    bool pinned;
} impl_ctx;

static long batch(void) {
    return bench_state.quick ? 100000 : 500000;
}

static void futex_per_op(const impl_ctx *impl, bench_sample *s, unsigned long f0) {
    s->extra[0] = impl->ops->is_conc ? (double)(bench_futex_count() - f0) / s->ops : NAN;
}

/* ---- nobody waiting ---------------------------------------------------------------------- */

static void run_set_clear(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    any_event e;
    impl->ops->init(&e);
    long n = batch();
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    for (long i = 0; i < n; i++) {
        impl->ops->set(&e);
        impl->ops->clear(&e);
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&e);
}

static void run_wait_when_set(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    any_event e;
    impl->ops->init(&e);
    impl->ops->set(&e);
    long n = batch() * 4;
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    for (long i = 0; i < n; i++)
        impl->ops->wait(&e);
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)n;
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&e);
}

/* ---- ping-pong --------------------------------------------------------------------------- */

typedef struct pingpong {
    const impl_ctx *impl;
    any_event to[2]; /* to[0]: A's event, to[1]: B's */
} pingpong;

static void pingpong_send(void *ctx, int to) {
    pingpong *p = (pingpong *)ctx;
    p->impl->ops->set(&p->to[to]);
}

static void pingpong_recv(void *ctx, int me) {
    pingpong *p = (pingpong *)ctx;
    p->impl->ops->wait_clear(&p->to[me]);
}

static void run_pingpong(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    pingpong *p = (pingpong *)calloc(1, sizeof *p);
    p->impl = impl;
    impl->ops->init(&p->to[0]);
    impl->ops->init(&p->to[1]);
    unsigned long f0 = bench_futex_count();
    bench_pingpong_run(pingpong_send, pingpong_recv, p, impl->pinned, s);
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&p->to[0]);
    impl->ops->destroy(&p->to[1]);
    free(p);
}

/* ---- start gun: one setter, WAITERS waiters per round ------------------------------------ */

enum { GUN_WAITERS = 4 };

typedef struct gun {
    const impl_ctx *impl;
    any_event go[2];
    long rounds;
    long arrived; /* release/acquire */
} gun;

static void gun_thread(int index, void *arg) {
    gun *g = (gun *)arg;
    const event_ops *ops = g->impl->ops;
    if (index == 0) {
        for (long r = 1; r <= g->rounds; r++) {
            ops->clear(&g->go[(r + 1) % 2]); /* everyone is past it: they arrived last round */
            ops->set(&g->go[r % 2]);
            while (__atomic_load_n(&g->arrived, __ATOMIC_ACQUIRE) != r * GUN_WAITERS)
                sched_yield();
        }
        return;
    }
    for (long r = 1; r <= g->rounds; r++) {
        ops->wait(&g->go[r % 2]);
        __atomic_fetch_add(&g->arrived, 1, __ATOMIC_RELEASE);
    }
}

static void run_gun(void *ctx, bench_sample *s) {
    const impl_ctx *impl = (const impl_ctx *)ctx;
    gun *g = (gun *)calloc(1, sizeof *g);
    g->impl = impl;
    g->rounds = bench_state.quick ? 2000 : 10000;
    impl->ops->init(&g->go[0]);
    impl->ops->init(&g->go[1]);
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    bench_threads(1 + GUN_WAITERS, gun_thread, g);
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)g->rounds;
    futex_per_op(impl, s, f0);
    impl->ops->destroy(&g->go[0]);
    impl->ops->destroy(&g->go[1]);
    free(g);
}

/* ---- main -------------------------------------------------------------------------------- */

static void run_case(const char *name, bench_fn fn, bool pinned) {
    impl_ctx c = {&conc_ops, pinned}, f = {&fd_ops, pinned}, p = {&pt_ops, pinned};
    bench_impl impls[] = {{conc_ops.name, fn, &c}, {fd_ops.name, fn, &f}, {pt_ops.name, fn, &p}};
    bench_run(name, impls, 3);
}

static void pingpong_bars(const char *what) {
    char text[160];
    snprintf(text, sizeof text, "event ping-pong %s round trip, conc/mutex+cond", what);
    bench_bar(text, bench_last[2].ratio.median, "<=", 0.5);
    snprintf(text, sizeof text, "event ping-pong %s CPU per round trip, conc/mutex+cond", what);
    bench_bar(text, bench_last[0].cpu_per_op.median / bench_last[2].cpu_per_op.median, "<=", 1.5);
    snprintf(text, sizeof text, "event ping-pong %s round trip, conc/eventfd", what);
    bench_bar(text, bench_last[1].ratio.median, "<=", 0.5);
}

int main(void) {
    bench_init("event");

    bench_table("set + clear with nobody waiting", futex_col);
    run_case("1 thread", run_set_clear, false);
    bench_bar("event set with nobody waiting: conc futex calls per set", bench_last[0].extra[0].max,
              "<=", 0);

    bench_table("wait on an event that is set", futex_col);
    run_case("1 thread", run_wait_when_set, false);

    bench_table("ping-pong round trip (two events: set, wait, clear)", futex_col);
    run_case("pinned to CPUs 0 and 1", run_pingpong, true);
    pingpong_bars("pinned");
    run_case("unpinned", run_pingpong, false);
    pingpong_bars("unpinned");

    bench_table("start gun: one set releases 4 waiters (per round)", futex_col);
    run_case("1 setter, 4 waiters", run_gun, false);

    return bench_done();
}

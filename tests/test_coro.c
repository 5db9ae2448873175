/* tests/test_coro.c - coroutines: lifecycle, run order (FIFO, runnext), nesting, join, cancel
 * in every blocking call, deadlines, fd waits, groups, 100,000 guarded coroutines, stack reuse,
 * the EDEADLK report, stack overflow in a forked child, schedulers on many threads handing
 * work across, and the park/wake section other headers build on.
 * Also compiled as C++17 (make test: build/<cc>-cxx/test_coro) and with -D_FORTIFY_SOURCE=2.
 * SPDX-License-Identifier: MIT */
/* Counts coro.h's epoll_ctl calls (relaxed: an instrumentation counter; schedulers on other
 * threads of the stress case add to it too, so cases read it from inside one scheduler). */
static unsigned long epoll_ctl_calls;
#define CONC_CORO_EPOLL_CTL_HOOK(op)                                                               \
    ((void)(op), (void)__atomic_fetch_add(&epoll_ctl_calls, 1ul, __ATOMIC_RELAXED))
#include "conc/coro.h"
/* After coro.h, so that coro.h's own include of chan.h is what coro_header_brings_chan_and_await
 * checks; future.h then brings executor.h and coro_bridge.h (conc_coro_await). */
#include "conc/event.h"
#include "conc/future.h"

#include "harness.h"

#if defined(__has_include)
#if __has_include(<execinfo.h>)
#include <execinfo.h> /* glibc's backtrace(); musl has none */
#define HAVE_BACKTRACE 1
#endif
#endif
#include <fcntl.h>
#include <malloc.h>
#if defined(__cplusplus)
#include <cstring>
#include <exception>
#include <stdexcept>
#endif
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

/* gcc's ThreadSanitizer runtime (libtsan of gcc 12) spends about 7 ms on each fiber a
 * coroutine creates and destroys, clang's a fraction of that: cases that make thousands of
 * coroutines make a quarter as many there, and keep their full count under clang's. */
#if defined(CONC_TSAN) && !defined(__clang__)
#define GCC_TSAN_FEWER(n) ((n) / 4)
#else
#define GCC_TSAN_FEWER(n) (n)
#endif

/* ---- helpers ------------------------------------------------------------------------------ */

/* Runs fn(arg) as the main coroutine of a fresh scheduler; checks run's result and returns
 * fn's status. */
static int run_main(conc_coro_fn fn, void *arg) {
    int status = -1;
    int e = conc_run(fn, arg, &status);
    TH_CHECK_EQ(e, 0);
    return status;
}

static conc_coro_t *spawn_h(conc_coro_fn fn, void *arg, const char *name) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = name;
    conc_coro_t *c = NULL;
    TH_CHECK_EQ(conc_coro_spawn(NULL, fn, arg, &o, &c), 0);
    TH_CHECK(c != NULL);
    return c;
}

static int join_release(conc_coro_t *c) {
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    conc_coro_release(c);
    return st;
}

/* An event log: plain data (coroutines of one scheduler never run at once). */
typedef struct log_t {
    int v[4096];
    int n;
} log_t;
static void log_add(log_t *l, int x) {
    TH_CHECK(l->n < 4096);
    l->v[l->n++] = x;
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    TH_CHECK(fl >= 0);
    TH_CHECK_EQ(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static int return_arg(void *arg) {
    return (int)(intptr_t)arg;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static int lifecycle_main(void *arg) {
    TH_CHECK(arg == (void *)0x1234);
    conc_coro_t *self = conc_coro_self();
    TH_CHECK(self != NULL);
    TH_CHECK(strncmp(conc_coro_name(self), "coro#", 5) == 0);
    conc_coro_t *c = spawn_h(return_arg, (void *)(intptr_t)42, "answer");
    TH_CHECK(strcmp(conc_coro_name(c), "answer") == 0);
    TH_CHECK(conc_coro_id(c) > conc_coro_id(self));
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 42);
    /* join does not consume the handle: a second join sees the same status */
    st = -1;
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 42);
    conc_coro_release(c);
    /* detached: no handle; it still runs before conc_run returns */
    TH_CHECK_EQ(conc_coro_spawn(NULL, return_arg, NULL, NULL, NULL), 0);
    return 7;
}

static void coro_lifecycle_spawn_join_status(void) {
    TH_CHECK(conc_coro_self() == NULL);
    TH_CHECK_EQ(run_main(lifecycle_main, (void *)0x1234), 7);
    TH_CHECK(conc_coro_self() == NULL);
}

static int long_name(void *arg) {
    (void)arg;
    TH_CHECK_EQ(strlen(conc_coro_name(conc_coro_self())), CONC_CORO_NAME_MAX - 1);
    return 0;
}

/* A spawn that fails on bad input takes no scheduler over: another thread's refused spawn,
 * before the first run, left the creating thread's own spawns EPERM. */
static void *spawn_with_a_bad_stack(void *arg) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.stack_size = CONC_CORO_STACK_MIN - 1;
    return (void *)(intptr_t)conc_coro_spawn((conc_sched_t *)arg, return_arg, NULL, &o, NULL);
}

static void coro_bad_input_gets_error_codes(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(NULL, NULL), EINVAL);
    conc_sched_opts_t so;
    memset(&so, 0, sizeof so);
    so.stack_size = 100;
    TH_CHECK_EQ(conc_sched_create(&s, &so), EINVAL);
    so.stack_size = 0;
    so.flags = 0x80u; /* no such flag: it was ignored */
    TH_CHECK_EQ(conc_sched_create(&s, &so), EINVAL);
    so.flags = 0;
    so.poll_interval = -1; /* was taken for the default */
    TH_CHECK_EQ(conc_sched_create(&s, &so), EINVAL);
    TH_CHECK(s == NULL);
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    conc_coro_t *c = (conc_coro_t *)0x1;
    TH_CHECK_EQ(conc_coro_spawn(s, NULL, NULL, NULL, &c), EINVAL);
    TH_CHECK(c == NULL);
    TH_CHECK_EQ(conc_coro_spawn(NULL, return_arg, NULL, NULL, NULL), EINVAL); /* no current */
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.stack_size = CONC_CORO_STACK_MIN - 1;
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, NULL, &o, NULL), EINVAL);
    o.stack_size = CONC_CORO_STACK_MAX + 1;
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, NULL, &o, NULL), EINVAL);
    pthread_t other;
    void *refused = NULL;
    TH_CHECK_EQ(pthread_create(&other, NULL, spawn_with_a_bad_stack, s), 0);
    TH_CHECK_EQ(pthread_join(other, &refused), 0);
    TH_CHECK_EQ((int)(intptr_t)refused, EINVAL); /* and s is still this thread's to run */
    /* blocking calls outside a coroutine */
    TH_CHECK_EQ(conc_coro_yield(), EPERM);
    TH_CHECK_EQ(conc_coro_sleep_until(CONC_FOREVER), EPERM);
    TH_CHECK_EQ(conc_coro_wait_fd(0, CONC_FD_READ, CONC_FOREVER), EPERM);
    TH_CHECK_EQ(conc_coro_wait_fd(-1, CONC_FD_READ, CONC_FOREVER), EINVAL);
    TH_CHECK_EQ(conc_coro_wait_fd(0, 4, CONC_FOREVER), EINVAL);
    TH_CHECK_EQ(conc_coro_park(NULL, CONC_FOREVER), EPERM);
    conc_coro_t *h;
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, NULL, NULL, &h), 0);
    TH_CHECK_EQ(conc_coro_join(h, CONC_FOREVER, NULL), EPERM);
    TH_CHECK_EQ(conc_coro_join(NULL, CONC_FOREVER, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_cancel(NULL), EINVAL);
    TH_CHECK_EQ(conc_sched_run(NULL), EINVAL);
    TH_CHECK_EQ(conc_run(NULL, NULL, NULL), EINVAL);
    conc_group_t *g;
    TH_CHECK_EQ(conc_group_create(NULL, &g), EINVAL);
    TH_CHECK_EQ(conc_group_create(s, NULL), EINVAL);
    TH_CHECK_EQ(conc_sched_spawn(NULL, return_arg, NULL), EINVAL);
    TH_CHECK_EQ(conc_sched_spawn(s, NULL, NULL), EINVAL);
    /* a name longer than the maximum is truncated, not refused */
    o.stack_size = 0;
    o.name = "a-name-that-is-much-longer-than-thirty-two-characters";
    TH_CHECK_EQ(conc_coro_spawn(s, long_name, NULL, &o, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    /* after the run, outside any coroutine: h finished, so the join has nothing to wait for */
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(h, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 0);
    conc_coro_release(h);
    conc_sched_destroy(s);
}

/* Outside any coroutine, once the run ended: a join returns the status, a group wait the
 * group's (asyncio's task.result() after asyncio.run). Before that: EPERM (no thread may
 * block in them). */
static void coro_join_and_group_wait_after_the_run(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    conc_coro_t *h;
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, (void *)(intptr_t)42, NULL, &h), 0);
    conc_group_t *g;
    TH_CHECK_EQ(conc_group_create(s, &g), 0);
    TH_CHECK_EQ(conc_group_spawn(g, return_arg, (void *)(intptr_t)0, NULL), 0);
    TH_CHECK_EQ(conc_group_spawn(g, return_arg, (void *)(intptr_t)7, NULL), 0);
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(h, 0, &st), EPERM);
    TH_CHECK_EQ(conc_group_wait(g, 0, &st), EPERM);
    TH_CHECK_EQ(st, -1);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    TH_CHECK_EQ(conc_coro_join(h, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 42);
    TH_CHECK_EQ(conc_coro_join(h, 0, NULL), 0); /* does not consume the handle */
    st = -1;
    TH_CHECK_EQ(conc_group_wait(g, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 7);
    conc_group_destroy(g);
    conc_coro_release(h);
    conc_sched_destroy(s);
}

/* A scheduler created on one thread and run on another: the first spawn or run there takes
 * it over (it never ran), its coroutines run there, and the creator may destroy it once the
 * run left nothing. From then on it stays on the thread that ran it. */
typedef struct handover {
    conc_sched_t *s;
    bool spawn_there;    /* spawn on the runner thread before the run */
    pthread_t runner;    /* the runner thread's id (written by it) */
    pthread_t ran_on[2]; /* where each coroutine ran */
    int run, spawn, join, status;
} handover;
static int record_thread(void *arg) {
    *(pthread_t *)arg = pthread_self();
    return 5;
}
static void *handover_runner(void *arg) {
    handover *h = (handover *)arg;
    h->runner = pthread_self();
    conc_coro_t *c = NULL;
    if (h->spawn_there)
        h->spawn = conc_coro_spawn(h->s, record_thread, &h->ran_on[1], NULL, &c);
    h->run = conc_sched_run(h->s);
    if (c) {
        h->join = conc_coro_join(c, CONC_FOREVER, &h->status);
        conc_coro_release(c);
    }
    return NULL;
}
static void coro_sched_handed_to_the_thread_that_runs_it(void) {
    for (int spawn_there = 0; spawn_there < 2; spawn_there++) {
        handover h;
        memset(&h, 0, sizeof h);
        h.spawn_there = spawn_there != 0;
        h.status = -1;
        TH_CHECK_EQ(conc_sched_create(&h.s, NULL), 0);
        TH_CHECK_EQ(conc_coro_spawn(h.s, record_thread, &h.ran_on[0], NULL, NULL), 0);
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, handover_runner, &h), 0);
        pthread_join(t, NULL);
        TH_CHECK_EQ(h.run, 0);
        TH_CHECK(pthread_equal(h.ran_on[0], h.runner)); /* spawned here, ran there */
        if (spawn_there) {
            TH_CHECK_EQ(h.spawn, 0);
            TH_CHECK(pthread_equal(h.ran_on[1], h.runner));
            TH_CHECK_EQ(h.join, 0);
            TH_CHECK_EQ(h.status, 5);
        }
        /* it ran on the other thread: it stays there */
        TH_CHECK_EQ(conc_coro_spawn(h.s, return_arg, NULL, NULL, NULL), EPERM);
        TH_CHECK_EQ(conc_sched_run(h.s), EPERM);
        conc_sched_destroy(h.s); /* nothing left to run: any thread may free it */
    }
}

/* The creator hands a scheduler to a runner thread and feeds it with conc_sched_spawn at
 * once, while the runner takes it over and runs it: every spawn goes through the inbox and
 * runs exactly once, on the runner. Then a spawn posted after the run ended: the creator may
 * still destroy the scheduler, and that coroutine runs then (cancelled), on the creator. */
#define FEED_SPAWNS GCC_TSAN_FEWER(2000)
typedef struct feed {
    conc_sched_t *s;
    pthread_t runner;
    int run;
    long ran, off_runner, late_ran, late_cancelled; /* written by coroutines, read after */
} feed;
static feed the_feed;
static int fed(void *arg) {
    (void)arg;
    the_feed.ran++;
    if (!pthread_equal(pthread_self(), the_feed.runner))
        the_feed.off_runner++;
    return 0;
}
static int fed_late(void *arg) {
    (void)arg;
    the_feed.late_ran++;
    if (conc_coro_yield() == ECANCELED)
        the_feed.late_cancelled++;
    return 0;
}
static void *feed_runner(void *arg) {
    feed *f = (feed *)arg;
    f->runner = pthread_self();
    f->run = conc_sched_run(f->s);
    return NULL;
}
static void coro_creator_feeds_a_scheduler_another_thread_runs(void) {
    memset(&the_feed, 0, sizeof the_feed);
    TH_CHECK_EQ(conc_sched_create(&the_feed.s, NULL), 0);
    conc_sched_hold(the_feed.s); /* more work comes: the run must not end meanwhile */
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, feed_runner, &the_feed), 0);
    for (int i = 0; i < FEED_SPAWNS; i++)
        TH_CHECK_EQ(conc_sched_spawn(the_feed.s, fed, NULL), 0);
    conc_sched_unhold(the_feed.s);
    pthread_join(t, NULL);
    TH_CHECK_EQ(the_feed.run, 0);
    TH_CHECK_EQ(the_feed.ran, FEED_SPAWNS);
    TH_CHECK_EQ(the_feed.off_runner, 0);
    /* it ran on the runner: the creator is not its owner any more */
    conc_coro_t *c = (conc_coro_t *)0x1;
    TH_CHECK_EQ(conc_coro_spawn(the_feed.s, fed, NULL, NULL, &c), EPERM);
    TH_CHECK(c == NULL);
    TH_CHECK_EQ(conc_sched_spawn(the_feed.s, fed_late, NULL), 0); /* a late post: inbox */
    conc_sched_destroy(the_feed.s); /* nothing started is left: the creator may destroy it */
    TH_CHECK_EQ(the_feed.late_ran, 1);
    TH_CHECK_EQ(the_feed.late_cancelled, 1);
}

/* No call changes errno, out of memory included. RLIMIT_AS makes the allocations fail (not
 * under the sanitizers, whose allocators reserve terabytes and abort on failure, nor under
 * valgrind, whose own mappings need the room). */
static void enomem_child(void) {
    struct rlimit rl = {0, 0};
    TH_CHECK_EQ(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = 64u << 20; /* what the process has mapped already is more than enough */
    TH_CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
    static void *hog[1 << 16];
    size_t n = 0;
    for (size_t size = 64 << 10; size >= 16; size /= 4) /* use up what is left, to the crumbs */
        while (n < sizeof hog / sizeof hog[0] && (hog[n] = malloc(size)) != NULL)
            n++;
    errno = 4321;
    conc_sched_t *s = (conc_sched_t *)0x1;
    int e = conc_sched_create(&s, NULL);
    int err = errno;
    for (size_t i = 0; i < n; i++)
        free(hog[i]);
    if (!(e == ENOMEM && s == NULL && err == 4321))
        fprintf(stderr, "conc_sched_create: %d, s %p, errno %d (after %zu hogs)", e, (void *)s, err,
                n);
    _exit(e == ENOMEM && s == NULL && err == 4321 ? 0 : 10);
}
/* Runs child, which lowers RLIMIT_AS and exits 0 if all went well, in a process of its own. */
static void run_address_space_child(void (*child)(void)) {
#if TH_SANITIZED
    (void)child;
    TH_SKIP("the sanitizers' allocators abort on failure");
#else
    if (UNDER_VALGRIND())
        TH_SKIP("valgrind's own mappings need the address space");
    if (th_emulated())
        TH_SKIP("qemu-user does not apply RLIMIT_AS to the program it runs");
    char buf[256];
    int status = th_run_child_capturing_stderr(child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
#endif
}

static void coro_out_of_memory_leaves_errno(void) {
    run_address_space_child(enomem_child);
}

/* A coroutine with a big stack under an address-space limit its one stack fits in: spawn
 * must not ask for room for 64 such stacks at once (2 GiB of 32 MiB ones, where 256 MiB are
 * left) and fail with ENOMEM. */
static int big_stack_body(void *arg) {
    volatile char deep[4 << 20]; /* well past a default stack: the big one is really there */
    deep[0] = 1;
    deep[sizeof deep - 1] = 2;
    return (int)(intptr_t)arg + deep[0] + deep[sizeof deep - 1];
}

/* In a child: RLIMIT_AS at the address space in use now plus `room` bytes (exit 20 if the
 * size cannot be read). */
static void cap_address_space_at_now_plus(rlim_t room) {
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lu", &pages) != 1)
        _exit(20);
    fclose(f);
    struct rlimit rl;
    TH_CHECK_EQ(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + room;
    TH_CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
}

static void big_stack_child(void) {
    cap_address_space_at_now_plus((rlim_t)256 << 20);
    conc_sched_t *s;
    if (conc_sched_create(&s, NULL) != 0)
        _exit(21);
    conc_coro_opts_t o = {(size_t)32 << 20, "big"};
    conc_coro_t *c[2];
    int e0 = conc_coro_spawn(s, big_stack_body, (void *)(intptr_t)40, &o, &c[0]);
    int e1 = e0 ? e0 : conc_coro_spawn(s, big_stack_body, (void *)(intptr_t)50, &o, &c[1]);
    if (e0 || e1) {
        fprintf(stderr, "spawn with a 32 MiB stack: %d, then %d", e0, e1);
        _exit(22);
    }
    int st0 = -1, st1 = -1;
    if (conc_sched_run(s) != 0 || conc_coro_join(c[0], CONC_FOREVER, &st0) != 0 ||
        conc_coro_join(c[1], CONC_FOREVER, &st1) != 0 || st0 != 43 || st1 != 53)
        _exit(23);
    conc_coro_release(c[0]);
    conc_coro_release(c[1]);
    conc_sched_destroy(s);
    _exit(0);
}

static void coro_big_stack_fits_under_an_address_space_limit(void) {
    run_address_space_child(big_stack_child);
}

/* A wait on a big fd number that is not open is EBADF at once: the scheduler's per-number
 * table is not first grown to that number (32 bytes a number: 1 GiB zeroed for 2^25, and
 * ENOMEM near INT_MAX). Under an address-space limit 256 MiB above what the process uses, the
 * old growth said ENOMEM for both. */
static int huge_fd_waits(void *arg) {
    (void)arg;
    static const int fds[] = {1 << 25, INT_MAX - 1};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (fcntl(fds[i], F_GETFD) != -1)
            continue; /* open after all (a huge RLIMIT_NOFILE): nothing to check */
        if (conc_coro_wait_fd(fds[i], CONC_FD_READ, conc_deadline_in(CONC_SEC)) != EBADF)
            return 30 + (int)i;
        if (conc_coro_wait_fd(fds[i], CONC_FD_WRITE, CONC_FOREVER) != EBADF)
            return 40 + (int)i;
    }
    /* The table still grows for an fd that is open (dup2 to a number past its 64 slots). */
    int p[2];
    if (pipe(p) != 0)
        return 50;
    int high = dup2(p[1], 1000);
    if (high < 0)
        return 51;
    int e = conc_coro_wait_fd(high, CONC_FD_WRITE, conc_deadline_in(CONC_SEC));
    close(high);
    close(p[0]);
    close(p[1]);
    return e == 0 ? 0 : 52;
}

static void huge_fd_child(void) {
    cap_address_space_at_now_plus((rlim_t)256 << 20);
    int st = -1;
    int e = conc_run(huge_fd_waits, NULL, &st);
    _exit(e ? 10 : st);
}

static void coro_fd_wait_on_a_huge_closed_number_is_ebadf(void) {
    run_address_space_child(huge_fd_child);
}

/* EMFILE: no fd left for the scheduler's epoll instance and eventfd. EPERM: a scheduler used
 * from another thread than its owner. */
static void emfile_child(void) {
    int probe = dup(0); /* the lowest free fd number: the limit goes right there */
    TH_CHECK(probe >= 0);
    close(probe);
    struct rlimit rl;
    TH_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = (rlim_t)probe;
    TH_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    conc_sched_t *s = (conc_sched_t *)0x1;
    int e = conc_sched_create(&s, NULL);
    _exit(e == EMFILE && s == NULL ? 0 : 10 + e);
}

static void *other_thread_spawns(void *p) { /* s has run on its owner: it stays there */
    conc_sched_t *s = (conc_sched_t *)p;
    conc_coro_t *c = NULL;
    intptr_t ok = conc_coro_spawn(s, return_arg, NULL, NULL, &c) == EPERM && c == NULL &&
                  conc_sched_run(s) == EPERM;
    ok = ok && conc_sched_spawn(s, return_arg, NULL) == 0; /* this one works from anywhere */
    return (void *)ok;
}

static void coro_emfile_and_eperm_from_another_thread(void) {
    char buf[256];
    int status = th_run_child_capturing_stderr(emfile_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0); /* nothing to run, but now it ran here */
    pthread_t t;
    void *ok = NULL;
    TH_CHECK_EQ(pthread_create(&t, NULL, other_thread_spawns, s), 0);
    pthread_join(t, &ok);
    TH_CHECK(ok != NULL);
    TH_CHECK_EQ(conc_sched_run(s), 0); /* runs the coroutine handed over */
    conc_sched_destroy(s);
}

/* No call changes errno. */
static int errno_main(void *arg) {
    (void)arg;
    int p[2];
    TH_CHECK_EQ(pipe(p), 0);
    set_nonblock(p[0]);
    errno = 1234;
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_wait_fd(p[0], CONC_FD_READ, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_coro_wait_fd(p[0], CONC_FD_READ, 0), ETIMEDOUT);
    char b;
    size_t got;
    dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_read(p[0], &b, 1, dl, &got), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl); /* an empty pipe: waited for its deadline, not given up at once */
    TH_CHECK_EQ(errno, 1234);
    close(p[0]);
    close(p[1]);
    return 0;
}

/* errno belongs to the thread, so every coroutine on it shares one: a coroutine that set
 * errno and yielded or slept read the value another coroutine set meanwhile. Each keeps its
 * own now, and the loop's caller keeps its own across the run. */
static int errno_keeper(void *arg) {
    int mine = (int)(intptr_t)arg;
    for (int i = 0; i < 3; i++) {
        errno = mine + i;
        TH_CHECK_EQ(conc_coro_yield(), 0);
        TH_CHECK_EQ(errno, mine + i);
        errno = mine + 10 + i;
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS / 4)), 0);
        TH_CHECK_EQ(errno, mine + 10 + i);
    }
    errno = mine + 99; /* set as it ends: not the loop's caller's either */
    return 0;
}

static void coro_calls_leave_errno_alone(void) {
    TH_CHECK_EQ(run_main(errno_main, NULL), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    for (int k = 1; k <= 3; k++)
        TH_CHECK_EQ(conc_coro_spawn(s, errno_keeper, (void *)(intptr_t)(k * 1000), NULL, NULL), 0);
    errno = 4321;
    TH_CHECK_EQ(conc_sched_run(s), 0);
    TH_CHECK_EQ(errno, 4321);
    conc_sched_destroy(s);
}

/* ---- run order ---------------------------------------------------------------------------- */

typedef struct order_arg {
    log_t *log;
    int id;
} order_arg;

static int yield_thrice(void *p) {
    order_arg *a = (order_arg *)p;
    for (int i = 0; i < 3; i++) {
        log_add(a->log, a->id * 10 + i);
        TH_CHECK_EQ(conc_coro_yield(), 0);
    }
    return 0;
}

static void coro_run_order_is_fifo(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    log_t log;
    memset(&log, 0, sizeof log);
    order_arg a[3];
    for (int i = 0; i < 3; i++) {
        a[i].log = &log;
        a[i].id = i + 1;
        TH_CHECK_EQ(conc_coro_spawn(s, yield_thrice, &a[i], NULL, NULL), 0);
    }
    TH_CHECK_EQ(conc_sched_run(s), 0);
    static const int want[] = {10, 20, 30, 11, 21, 31, 12, 22, 32};
    TH_CHECK_EQ(log.n, 9);
    for (int i = 0; i < 9; i++)
        TH_CHECK_EQ(log.v[i], want[i]);
    conc_sched_destroy(s);
}

/* runnext: a coroutine woken by the running one runs before the queue. */
typedef struct runnext_ctx {
    log_t log;
    conc_coro_waitq_t q[2];
} runnext_ctx;

/* Parks on q until a wake with status 77. */
static void park_on_test_queue(conc_coro_waitq_t *q) {
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "test queue";
    w.object = q;
    TH_CHECK_EQ(conc_coro_waitq_wait(q, &w, CONC_FOREVER), 77);
}

static int runnext_sleeper(void *p) {
    runnext_ctx *r = (runnext_ctx *)p;
    log_add(&r->log, 1);
    park_on_test_queue(&r->q[0]);
    log_add(&r->log, 2);
    return 0;
}

static int runnext_other(void *p) {
    runnext_ctx *r = (runnext_ctx *)p;
    log_add(&r->log, 10);
    return 0;
}

static int runnext_waker(void *p) {
    runnext_ctx *r = (runnext_ctx *)p;
    log_add(&r->log, 3);
    TH_CHECK_EQ(conc_coro_spawn(NULL, runnext_other, r, NULL, NULL), 0); /* queued first */
    TH_CHECK(conc_coro_waitq_wake_one(&r->q[0], 77));                    /* but this runs first */
    TH_CHECK(!conc_coro_waitq_wake_one(&r->q[0], 77));                   /* nobody left */
    TH_CHECK_EQ(conc_coro_yield(), 0);
    log_add(&r->log, 4);
    return 0;
}

static void coro_run_order_runnext_for_the_woken(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    runnext_ctx *r = (runnext_ctx *)calloc(1, sizeof *r);
    TH_CHECK(r);
    TH_CHECK_EQ(conc_coro_spawn(s, runnext_sleeper, r, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, runnext_waker, r, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    static const int want[] = {1, 3, 2, 10, 4};
    TH_CHECK_EQ(r->log.n, 5);
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(r->log.v[i], want[i]);
    conc_sched_destroy(s);
    free(r);
}

/* Two wakes by the running coroutine: the first keeps runnext, the second queues behind what
 * is already queued; neither overtakes the other. */
typedef struct wake_order_arg {
    runnext_ctx *r;
    int id;
} wake_order_arg;

static int wake_order_sleeper(void *p) {
    wake_order_arg *a = (wake_order_arg *)p;
    park_on_test_queue(&a->r->q[a->id]);
    log_add(&a->r->log, 1 + a->id);
    return 0;
}

static int wake_order_waker(void *p) {
    runnext_ctx *r = (runnext_ctx *)p;
    TH_CHECK_EQ(conc_coro_spawn(NULL, runnext_other, r, NULL, NULL), 0); /* queued first */
    TH_CHECK(conc_coro_waitq_wake_one(&r->q[0], 77)); /* runnext: before `other` */
    TH_CHECK(conc_coro_waitq_wake_one(&r->q[1], 77)); /* runnext taken: after `other` */
    TH_CHECK_EQ(conc_coro_yield(), 0);
    log_add(&r->log, 4);
    return 0;
}

static void coro_run_order_two_wakes_keep_their_order(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    runnext_ctx *r = (runnext_ctx *)calloc(1, sizeof *r);
    TH_CHECK(r);
    wake_order_arg a[2] = {{r, 0}, {r, 1}};
    TH_CHECK_EQ(conc_coro_spawn(s, wake_order_sleeper, &a[0], NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, wake_order_sleeper, &a[1], NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, wake_order_waker, r, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    static const int want[] = {1, 10, 2, 4};
    TH_CHECK_EQ(r->log.n, 4);
    for (int i = 0; i < 4; i++)
        TH_CHECK_MSG(r->log.v[i] == want[i], "log[%d] = %d, want %d", i, r->log.v[i], want[i]);
    conc_sched_destroy(s);
    free(r);
}

/* Two coroutines waking each other through runnext forever must not starve a third. */
typedef struct pingpong_ctx {
    conc_coro_waitq_t q[2];
    int stop;
    long rounds;
} pingpong_ctx;

static int pingpong_side(void *p, int me) {
    pingpong_ctx *c = (pingpong_ctx *)p;
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "pingpong";
    while (!c->stop) {
        c->rounds++;
        conc_coro_waitq_wake_one(&c->q[1 - me], 0);
        if (c->stop)
            break;
        int e = conc_coro_waitq_wait(&c->q[me], &w, CONC_FOREVER);
        TH_CHECK_EQ(e, 0);
    }
    conc_coro_waitq_wake_one(&c->q[1 - me], 0);
    return 0;
}
static int pingpong_a(void *p) {
    return pingpong_side(p, 0);
}
static int pingpong_b(void *p) {
    return pingpong_side(p, 1);
}
static int pingpong_stopper(void *p) {
    ((pingpong_ctx *)p)->stop = 1;
    return 0;
}

static void coro_runnext_handoffs_cannot_starve_the_queue(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    pingpong_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_coro_spawn(s, pingpong_a, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, pingpong_b, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, pingpong_stopper, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0); /* a starved stopper would make this hang */
    TH_CHECK(c.rounds > 0);
    conc_sched_destroy(s);
}

/* ---- nesting ------------------------------------------------------------------------------ */

typedef struct tree_arg {
    int depth;
    long *count;
} tree_arg;

static int tree_node(void *p) {
    tree_arg *a = (tree_arg *)p;
    (*a->count)++;
    if (a->depth == 0)
        return 1;
    tree_arg kids[2];
    conc_coro_t *c[2];
    for (int i = 0; i < 2; i++) {
        kids[i].depth = a->depth - 1;
        kids[i].count = a->count;
        TH_CHECK_EQ(conc_coro_spawn(NULL, tree_node, &kids[i], NULL, &c[i]), 0);
    }
    int sum = 1;
    for (int i = 0; i < 2; i++)
        sum += join_release(c[i]);
    return sum;
}

static void coro_nesting_spawns_a_tree(void) {
    long count = 0;
    int depth = GCC_TSAN_FEWER(2048) == 2048 ? 10 : 8;
    tree_arg root = {depth, &count};
    long nodes = (2L << depth) - 1; /* 2^(depth + 1) - 1 */
    TH_CHECK_EQ(run_main(tree_node, &root), nodes);
    TH_CHECK_EQ(count, nodes);
}

/* ---- join --------------------------------------------------------------------------------- */

static int sleep_ms_then_return(void *arg) {
    int ms = (int)(intptr_t)arg;
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(ms * CONC_MS)), 0);
    return ms;
}

static int join_deadline_main(void *arg) {
    (void)arg;
    conc_coro_t *c = spawn_h(sleep_ms_then_return, (void *)(intptr_t)200, "slow");
    int64_t dl = conc_deadline_in(20 * CONC_MS);
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(c, dl, &st), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(st, -1);
    TH_CHECK_EQ(conc_coro_join(c, 0, &st), ETIMEDOUT); /* a past deadline looks once */
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 200);
    TH_CHECK_EQ(conc_coro_join(c, 0, &st), 0); /* finished: a past deadline still succeeds */
    conc_coro_release(c);
    /* several joiners of one coroutine all get its status */
    return 0;
}

static void coro_join_deadline_never_early(void) {
    TH_CHECK_EQ(run_main(join_deadline_main, NULL), 0);
}

typedef struct multi_join {
    conc_coro_t *target;
    int seen;
} multi_join;

static int joiner(void *p) {
    multi_join *m = (multi_join *)p;
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(m->target, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 5);
    m->seen++;
    return 0;
}

static int multi_join_main(void *arg) {
    (void)arg;
    multi_join m;
    m.seen = 0;
    m.target = spawn_h(sleep_ms_then_return, (void *)(intptr_t)5, "target");
    conc_coro_t *j[4];
    for (int i = 0; i < 4; i++)
        j[i] = spawn_h(joiner, &m, "joiner");
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(join_release(j[i]), 0);
    TH_CHECK_EQ(m.seen, 4);
    conc_coro_release(m.target);
    return 0;
}

static void coro_join_many_joiners_all_see_the_status(void) {
    TH_CHECK_EQ(run_main(multi_join_main, NULL), 0);
}

/* ---- cancel ------------------------------------------------------------------------------- */

typedef struct cancel_arg {
    int which; /* the blocking call to sit in */
    int first, later;
    int started;
    int fds[2];
    conc_coro_t *other;
    conc_coro_waitq_t q;
} cancel_arg;

enum { IN_SLEEP, IN_JOIN, IN_FD, IN_PARK, IN_GROUP, IN_YIELD_LOOP, IN_CALLS };

static int forever(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(CONC_FOREVER);
}

static int blocked(void *p) {
    cancel_arg *a = (cancel_arg *)p;
    a->started = 1;
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "test";
    switch (a->which) {
    case IN_SLEEP:
        a->first = conc_coro_sleep_until(CONC_FOREVER);
        break;
    case IN_JOIN:
        a->first = conc_coro_join(a->other, CONC_FOREVER, NULL);
        break;
    case IN_FD:
        a->first = conc_coro_wait_fd(a->fds[0], CONC_FD_READ, CONC_FOREVER);
        break;
    case IN_PARK:
        a->first = conc_coro_waitq_wait(&a->q, &w, CONC_FOREVER);
        break;
    case IN_GROUP: {
        conc_group_t *g;
        TH_CHECK_EQ(conc_group_create(NULL, &g), 0);
        TH_CHECK_EQ(conc_group_spawn(g, forever, NULL, NULL), 0);
        int st = -1;
        a->first = conc_group_wait(g, CONC_FOREVER, &st);
        conc_group_destroy(g); /* cancels the child and joins it, though we are cancelled */
        break;
    }
    case IN_YIELD_LOOP:
        while ((a->first = conc_coro_yield()) == 0) {
        }
        break;
    }
    /* every later blocking call returns ECANCELED too */
    int later = 0;
    later += conc_coro_yield() == ECANCELED;
    later += conc_coro_sleep_until(conc_deadline_in(CONC_SEC)) == ECANCELED;
    later += conc_coro_join(a->other, CONC_FOREVER, NULL) == ECANCELED;
    later += conc_coro_wait_fd(a->fds[0], CONC_FD_READ, CONC_FOREVER) == ECANCELED;
    later += conc_coro_park(&w, CONC_FOREVER) == ECANCELED;
    later += conc_coro_waitq_wait(&a->q, &w, CONC_FOREVER) == ECANCELED;
    a->later = later;
    return ECANCELED;
}

static int cancel_main(void *p) {
    cancel_arg *a = (cancel_arg *)p;
    a->other = spawn_h(forever, NULL, "forever");
    conc_coro_t *c = spawn_h(blocked, a, "blocked");
    while (!a->started)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    for (int i = 0; i < 3; i++) /* let it get into its call */
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_cancel(c), 0);
    TH_CHECK_EQ(conc_coro_cancel(c), 0); /* idempotent */
    TH_CHECK_EQ(join_release(c), ECANCELED);
    TH_CHECK_EQ(a->first, ECANCELED);
    TH_CHECK_EQ(a->later, 6);
    TH_CHECK_EQ(conc_coro_cancel(a->other), 0);
    TH_CHECK_EQ(join_release(a->other), ECANCELED);
    return 0;
}

static void coro_cancel_while_blocked_in_each_call(void) {
    for (int which = 0; which < IN_CALLS; which++) {
        cancel_arg a;
        memset(&a, 0, sizeof a);
        a.which = which;
        TH_CHECK_EQ(pipe(a.fds), 0);
        TH_CHECK_EQ(run_main(cancel_main, &a), 0);
        close(a.fds[0]);
        close(a.fds[1]);
    }
}

static int cancel_first_check(void *p) {
    int *ran = (int *)p;
    *ran = 1;
    TH_CHECK(conc_coro_is_cancelled(conc_coro_self()));
    TH_CHECK_EQ(conc_coro_yield(), ECANCELED);
    return conc_coro_sleep_until(CONC_FOREVER);
}

static int cancel_before_start_main(void *arg) {
    (void)arg;
    int ran = 0;
    conc_coro_t *c = spawn_h(cancel_first_check, &ran, "never-started");
    TH_CHECK_EQ(conc_coro_cancel(c), 0); /* before its first switch */
    TH_CHECK_EQ(ran, 0);
    TH_CHECK_EQ(join_release(c), ECANCELED);
    TH_CHECK_EQ(ran, 1); /* it still ran, so it could free what it owns */
    /* cancelling a finished coroutine is a no-op */
    c = spawn_h(return_arg, (void *)(intptr_t)3, "done");
    int st;
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(conc_coro_cancel(c), 0);
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 3);
    conc_coro_release(c);
    return 0;
}

static void coro_cancel_before_the_first_switch(void) {
    TH_CHECK_EQ(run_main(cancel_before_start_main, NULL), 0);
}

/* A cancelled joiner gets ECANCELED; the joined coroutine goes on. Joining a finished
 * coroutine still works after a cancel (it does not block). */
static int cancelled_joiner(void *p) {
    conc_coro_t *target = (conc_coro_t *)p;
    int e = conc_coro_join(target, CONC_FOREVER, NULL);
    TH_CHECK_EQ(e, ECANCELED);
    return e;
}

static int cancel_joiner_main(void *arg) {
    (void)arg;
    conc_coro_t *t = spawn_h(sleep_ms_then_return, (void *)(intptr_t)10, "target");
    conc_coro_t *j = spawn_h(cancelled_joiner, t, "joiner");
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_cancel(j), 0);
    TH_CHECK_EQ(join_release(j), ECANCELED);
    TH_CHECK_EQ(join_release(t), 10);
    return 0;
}

static void coro_cancel_a_joiner_leaves_the_target_running(void) {
    TH_CHECK_EQ(run_main(cancel_joiner_main, NULL), 0);
}

/* First wake wins: woken with a result, then cancelled before it ran: it gets the result. */
static int wake_then_cancel_waiter(void *p) {
    conc_coro_waitq_t *q = (conc_coro_waitq_t *)p;
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "handoff";
    TH_CHECK_EQ(conc_coro_waitq_wait(q, &w, CONC_FOREVER), 5);
    TH_CHECK_EQ(conc_coro_yield(), ECANCELED);
    return 0;
}

static int wake_then_cancel_main(void *arg) {
    (void)arg;
    conc_coro_waitq_t q = CONC_CORO_WAITQ_INIT;
    conc_coro_t *c = spawn_h(wake_then_cancel_waiter, &q, "waiter");
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK(!conc_coro_waitq_is_empty(&q));
    TH_CHECK_EQ(conc_coro_waitq_wake_all(&q, 5), 1);
    TH_CHECK_EQ(conc_coro_cancel(c), 0);
    TH_CHECK(!conc_coro_wake(c, 9)); /* not parked any more: left alone */
    TH_CHECK_EQ(join_release(c), 0);
    return 0;
}

static void coro_wake_before_cancel_wins(void) {
    TH_CHECK_EQ(run_main(wake_then_cancel_main, NULL), 0);
}

/* ---- deadlines and timers ----------------------------------------------------------------- */

typedef struct timer_ctx {
    int64_t *woke_deadline;
    int n, done;
    uint64_t seed;
} timer_ctx;

typedef struct timer_arg {
    timer_ctx *t;
    int64_t deadline; /* an offset until the sleeper runs */
} timer_arg;

static int timer_sleeper(void *p) {
    timer_arg *a = (timer_arg *)p;
    a->deadline += conc_now();
    /* One that first runs after its deadline passed never sleeps (it yields once): only the
     * ones the timer heap woke are checked for order. */
    int parked = conc_now() < a->deadline;
    TH_CHECK_EQ(conc_coro_sleep_until(a->deadline), 0);
    TH_CHECK_NOT_EARLY(a->deadline);
    a->t->woke_deadline[a->t->done++] = parked ? a->deadline : -1;
    return 0;
}

static void coro_sleepers_wake_in_deadline_order_never_early(void) {
    int n = (int)th_iters(2000);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    timer_ctx t;
    memset(&t, 0, sizeof t);
    t.woke_deadline = (int64_t *)calloc((size_t)n, sizeof(int64_t));
    timer_arg *args = (timer_arg *)calloc((size_t)n, sizeof *args);
    TH_CHECK(t.woke_deadline && args);
    th_rng rng = th_rng_make(1);
    for (int i = 0; i < n; i++) {
        args[i].t = &t;
        args[i].deadline = 20 * CONC_MS + (int64_t)th_rand_below(&rng, 50) * CONC_MS +
                           (int64_t)th_rand_below(&rng, 1000) * CONC_US;
        TH_CHECK_EQ(conc_coro_spawn(s, timer_sleeper, &args[i], NULL, NULL), 0);
    }
    TH_CHECK_EQ(conc_sched_run(s), 0);
    TH_CHECK_EQ(t.done, n);
    int64_t last = 0;
    int checked = 0;
    for (int i = 0; i < n; i++) { /* the heap hands them out in deadline order */
        if (t.woke_deadline[i] < 0)
            continue;
        TH_CHECK_MSG(last <= t.woke_deadline[i], "woke out of order at %d", i);
        last = t.woke_deadline[i];
        checked++;
    }
    TH_CHECK(checked > 0);
    conc_sched_destroy(s);
    free(t.woke_deadline);
    free(args);
}

static int past_deadline_main(void *arg) {
    (void)arg;
    int64_t past = conc_now() - CONC_SEC;
    TH_CHECK_EQ(conc_coro_sleep_until(past), 0); /* yields once, returns */
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "nothing";
    TH_CHECK_EQ(conc_coro_park(&w, past), ETIMEDOUT);
    int64_t dl = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_coro_park(&w, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    return 0;
}

static void coro_past_deadlines_look_once(void) {
    TH_CHECK_EQ(run_main(past_deadline_main, NULL), 0);
}

/* ---- fd waits ----------------------------------------------------------------------------- */

typedef struct fd_ctx {
    int fds[2];
    int step;
} fd_ctx;

static int fd_writer_later(void *p) {
    fd_ctx *f = (fd_ctx *)p;
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(5 * CONC_MS)), 0);
    f->step = 1;
    size_t put;
    TH_CHECK_EQ(conc_coro_write(f->fds[1], "x", 1, CONC_FOREVER, &put), 0);
    TH_CHECK_EQ(put, 1);
    return 0;
}

static int fd_closer_later(void *p) {
    fd_ctx *f = (fd_ctx *)p;
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(5 * CONC_MS)), 0);
    f->step = 2;
    close(f->fds[1]);
    return 0;
}

static int fd_reader(void *p) {
    fd_ctx *f = (fd_ctx *)p;
    int64_t dl = conc_deadline_in(10 * CONC_MS);
    TH_CHECK_EQ(conc_coro_wait_fd(f->fds[0], CONC_FD_READ, dl), ETIMEDOUT); /* nothing yet */
    TH_CHECK_NOT_EARLY(dl);
    conc_coro_t *w = spawn_h(fd_writer_later, f, "writer");
    TH_CHECK_EQ(conc_coro_wait_fd(f->fds[0], CONC_FD_READ, CONC_FOREVER), 0);
    TH_CHECK_EQ(f->step, 1); /* readable only after the write */
    char b = 0;
    size_t got = 0;
    TH_CHECK_EQ(conc_coro_read(f->fds[0], &b, 1, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(got, 1);
    TH_CHECK_EQ(b, 'x');
    TH_CHECK_EQ(join_release(w), 0);
    /* hang-up: the other end closes: readable (EOF) */
    w = spawn_h(fd_closer_later, f, "closer");
    TH_CHECK_EQ(conc_coro_read(f->fds[0], &b, 1, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(f->step, 2);
    TH_CHECK_EQ(got, 0); /* EOF */
    TH_CHECK_EQ(join_release(w), 0);
    return 0;
}

static void coro_fd_wait_pipe_readable_hangup_deadline(void) {
    fd_ctx f;
    memset(&f, 0, sizeof f);
    TH_CHECK_EQ(pipe(f.fds), 0);
    set_nonblock(f.fds[0]);
    set_nonblock(f.fds[1]);
    TH_CHECK_EQ(run_main(fd_reader, &f), 0);
    close(f.fds[0]);
}

typedef struct sock_ctx {
    int sv[2];
    long rounds;
    int busy;
} sock_ctx;

static int sock_echo(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    char buf[64];
    for (;;) {
        size_t got;
        TH_CHECK_EQ(conc_coro_read(c->sv[1], buf, sizeof buf, CONC_FOREVER, &got), 0);
        if (got == 0)
            return 0;
        size_t put;
        TH_CHECK_EQ(conc_coro_write(c->sv[1], buf, got, CONC_FOREVER, &put), 0);
    }
}

static int sock_client(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    conc_coro_t *e = spawn_h(sock_echo, c, "echo");
    for (long i = 0; i < c->rounds; i++) {
        char msg[16], back[16];
        int len = snprintf(msg, sizeof msg, "m%ld", i);
        size_t put, got = 0, n;
        TH_CHECK_EQ(conc_coro_write(c->sv[0], msg, (size_t)len, CONC_FOREVER, &put), 0);
        while (got < (size_t)len) {
            TH_CHECK_EQ(conc_coro_read(c->sv[0], back + got, sizeof back - got, CONC_FOREVER, &n),
                        0);
            TH_CHECK(n > 0);
            got += n;
        }
        TH_CHECK(memcmp(msg, back, (size_t)len) == 0);
    }
    shutdown(c->sv[0], SHUT_WR);
    TH_CHECK_EQ(join_release(e), 0);
    /* writable: a socket with room in its buffer is writable at once */
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), 0);
    return 0;
}

/* Runs fn(ctx) as the main coroutine with sv a connected pair of non-blocking sockets. */
static void run_on_socketpair(conc_coro_fn fn, void *ctx, int sv[2]) {
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
    TH_CHECK_EQ(run_main(fn, ctx), 0);
    close(sv[0]);
    close(sv[1]);
}

static void coro_fd_socketpair_echo(void) {
    sock_ctx c;
    memset(&c, 0, sizeof c);
    c.rounds = th_iters(2000);
    run_on_socketpair(sock_client, &c, c.sv);
}

/* A socket whose peer closes mid-write: the write ends with EPIPE and says how much went
 * out, and the process lives (no SIGPIPE; the harness runs each case in a child, which the
 * signal would kill). */
static int pipe_peer_reads_then_closes(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    char buf[1000];
    size_t got = 0, n;
    while (got < sizeof buf) {
        TH_CHECK_EQ(conc_coro_read(c->sv[1], buf + got, sizeof buf - got, CONC_FOREVER, &n), 0);
        TH_CHECK(n > 0);
        got += n;
    }
    TH_CHECK_EQ(close(c->sv[1]), 0);
    c->sv[1] = -1;
    return 0;
}

static int write_to_closing_peer(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    static char big[4 << 20]; /* more than the socket buffers hold: the write waits */
    memset(big, 'w', sizeof big);
    conc_coro_t *peer = spawn_h(pipe_peer_reads_then_closes, c, "peer");
    size_t put = 0;
    TH_CHECK_EQ(conc_coro_write(c->sv[0], big, sizeof big, CONC_FOREVER, &put), EPIPE);
    TH_CHECK(put >= 1000 && put < sizeof big);
    TH_CHECK_EQ(c->sv[1], -1); /* the peer had closed */
    TH_CHECK_EQ(conc_coro_write(c->sv[0], "x", 1, CONC_FOREVER, &put), EPIPE);
    TH_CHECK_EQ(put, 0);
    TH_CHECK_EQ(join_release(peer), 0);
    return 0;
}

static void coro_write_to_a_gone_peer_is_epipe_not_sigpipe(void) {
    sock_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, c.sv), 0);
    set_nonblock(c.sv[0]);
    set_nonblock(c.sv[1]);
    TH_CHECK_EQ(run_main(write_to_closing_peer, &c), 0);
    close(c.sv[0]);
}

static int fd_fill_then_wait_writable(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    char buf[4096];
    memset(buf, 'z', sizeof buf);
    while (write(c->sv[0], buf, sizeof buf) > 0) {
    }
    TH_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    int64_t dl = conc_deadline_in(10 * CONC_MS);
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, dl), ETIMEDOUT); /* full */
    TH_CHECK_NOT_EARLY(dl);
    /* a second waiter for the same direction is refused */
    c->busy = 1;
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), 0); /* drained */
    return 0;
}

static int fd_second_writer(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    while (!c->busy)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), EBUSY);
    /* now drain the other end so the first waiter becomes writable */
    char buf[4096];
    while (read(c->sv[1], buf, sizeof buf) > 0) {
    }
    return 0;
}

static int fd_writable_main(void *p) {
    conc_coro_t *a = spawn_h(fd_fill_then_wait_writable, p, "filler");
    conc_coro_t *b = spawn_h(fd_second_writer, p, "second");
    TH_CHECK_EQ(join_release(a), 0);
    TH_CHECK_EQ(join_release(b), 0);
    return 0;
}

static void coro_fd_writable_after_drain_and_ebusy(void) {
    sock_ctx c;
    memset(&c, 0, sizeof c);
    run_on_socketpair(fd_writable_main, &c, c.sv);
}

/* One epoll_ctl per wait: an echo round trip between two coroutines of one scheduler is two
 * waits (the client for the reply, the echo for the next request), so two epoll_ctl calls,
 * the first ADD of each fd included (registering and dropping the interest per wait was 4). */
static int sock_client_counting(void *p) {
    sock_ctx *c = (sock_ctx *)p;
    unsigned long before = __atomic_load_n(&epoll_ctl_calls, __ATOMIC_RELAXED);
    conc_coro_t *e = spawn_h(sock_echo, c, "echo");
    for (long i = 0; i < c->rounds; i++) {
        char msg[16], back[16];
        int len = snprintf(msg, sizeof msg, "r%ld", i);
        size_t put, n;
        TH_CHECK_EQ(conc_coro_write(c->sv[0], msg, (size_t)len, CONC_FOREVER, &put), 0);
        TH_CHECK_EQ(conc_coro_read(c->sv[0], back, sizeof back, CONC_FOREVER, &n), 0);
        TH_CHECK_EQ(n, (size_t)len); /* one write of a few bytes arrives whole on a socketpair */
        TH_CHECK(memcmp(msg, back, (size_t)len) == 0);
    }
    unsigned long calls = __atomic_load_n(&epoll_ctl_calls, __ATOMIC_RELAXED) - before;
    TH_CHECK_EQ(calls, (unsigned long)(2 * c->rounds));
    shutdown(c->sv[0], SHUT_WR);
    TH_CHECK_EQ(join_release(e), 0);
    return 0;
}

static void coro_fd_echo_round_trip_costs_two_epoll_ctl(void) {
    sock_ctx c;
    memset(&c, 0, sizeof c);
    c.rounds = th_iters(500);
    run_on_socketpair(sock_client_counting, &c, c.sv);
}

/* An fd closed while still registered (a wait on it timed out, so its one-shot stays armed),
 * its number reused by another file: the next wait must see the new file's events (no missed
 * wake), and an event of the old file (kept open by a dup, so epoll keeps its registration)
 * must wake nobody. */
static int fd_reuse_main(void *arg) {
    (void)arg;
    int a[2], b[2];
    char ch = 'x';
    /* 1: the last dup closed (epoll dropped the registration), the number reused */
    TH_CHECK_EQ(pipe(a), 0);
    set_nonblock(a[0]);
    int num = a[0];
    TH_CHECK_EQ(conc_coro_wait_fd(num, CONC_FD_READ, conc_deadline_in(CONC_MS)), ETIMEDOUT);
    close(a[0]);
    close(a[1]);
    TH_CHECK_EQ(pipe(b), 0);
    if (b[0] != num) { /* lowest free number: normally num again; make sure */
        TH_CHECK_EQ(dup2(b[0], num), num);
        close(b[0]);
        b[0] = num;
    }
    TH_CHECK_EQ(write(b[1], &ch, 1), 1);
    TH_CHECK_EQ(conc_coro_wait_fd(num, CONC_FD_READ, CONC_FOREVER), 0);
    TH_CHECK_EQ(read(num, &ch, 1), 1);
    /* 2: a dup keeps the old file (and its armed registration) alive */
    TH_CHECK_EQ(conc_coro_wait_fd(num, CONC_FD_READ, conc_deadline_in(CONC_MS)), ETIMEDOUT);
    int keep = dup(num);
    TH_CHECK(keep >= 0);
    close(num);
    TH_CHECK_EQ(pipe(a), 0);
    if (a[0] != num) {
        TH_CHECK_EQ(dup2(a[0], num), num);
        close(a[0]);
        a[0] = num;
    }
    TH_CHECK_EQ(write(b[1], &ch, 1), 1); /* the old file (still registered) becomes readable */
    int64_t dl = conc_deadline_in(20 * CONC_MS);
    TH_CHECK_EQ(conc_coro_wait_fd(num, CONC_FD_READ, dl), ETIMEDOUT); /* the new one is not */
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(write(a[1], &ch, 1), 1);
    TH_CHECK_EQ(conc_coro_wait_fd(num, CONC_FD_READ, CONC_FOREVER), 0);
    TH_CHECK_EQ(read(num, &ch, 1), 1);
    /* the old file waited on again under its own (new) number still works */
    TH_CHECK_EQ(conc_coro_wait_fd(keep, CONC_FD_READ, CONC_FOREVER), 0);
    TH_CHECK_EQ(read(keep, &ch, 1), 1);
    close(keep);
    close(num);
    close(a[1]);
    close(b[1]);
    return 0;
}

static void coro_fd_reuse_after_close_while_registered(void) {
    TH_CHECK_EQ(run_main(fd_reuse_main, NULL), 0);
}

/* A reader and a writer on one fd: an event for one direction (which disarms the one-shot
 * registration) wakes only its waiter, and the other is still woken by its own event later. */
typedef struct two_ctx {
    int sv[2];
    log_t log;
} two_ctx;

static int two_reader(void *p) {
    two_ctx *c = (two_ctx *)p;
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_READ, CONC_FOREVER), 0);
    log_add(&c->log, 'R');
    return 0;
}

static int two_writer(void *p) {
    two_ctx *c = (two_ctx *)p;
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), 0);
    log_add(&c->log, 'W');
    return 0;
}

static void two_fill(two_ctx *c) {
    char buf[4096];
    memset(buf, 'f', sizeof buf);
    while (write(c->sv[0], buf, sizeof buf) > 0) {
    }
    TH_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void two_drain(two_ctx *c) {
    char buf[4096];
    while (read(c->sv[1], buf, sizeof buf) > 0) {
    }
}

/* Both directions empty again, for the next round. */
static void two_empty_both(two_ctx *c) {
    char ch;
    while (read(c->sv[0], &ch, 1) > 0) {
    }
    two_drain(c);
}

/* Yields until the log holds n entries; both waiters parked meanwhile, or one woken. */
static void two_yield_until(two_ctx *c, int n) {
    while (c->log.n < n)
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
}

static int two_main(void *p) {
    two_ctx *c = (two_ctx *)p;
    for (int first_read = 1; first_read >= 0; first_read--) {
        c->log.n = 0;
        two_fill(c);
        conc_coro_t *r = spawn_h(two_reader, c, "reader");
        conc_coro_t *w = spawn_h(two_writer, c, "writer");
        while (!conc_coro_is_parked(r) || !conc_coro_is_parked(w))
            TH_CHECK_EQ(conc_coro_yield(), 0);
        /* a second waiter in a direction already taken: EBUSY, the others undisturbed */
        TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_READ, CONC_FOREVER), EBUSY);
        char ch = 'q';
        if (first_read)
            TH_CHECK_EQ(write(c->sv[1], &ch, 1), 1);
        else
            two_drain(c);
        two_yield_until(c, 1);
        TH_CHECK_EQ(c->log.v[0], first_read ? 'R' : 'W');
        /* the other one is still parked: the event for the first did not wake it */
        TH_CHECK(conc_coro_is_parked(first_read ? w : r));
        if (first_read)
            two_drain(c);
        else
            TH_CHECK_EQ(write(c->sv[1], &ch, 1), 1);
        two_yield_until(c, 2);
        TH_CHECK_EQ(c->log.v[1], first_read ? 'W' : 'R');
        TH_CHECK_EQ(join_release(r), 0);
        TH_CHECK_EQ(join_release(w), 0);
        two_empty_both(c);
    }
    return 0;
}

static void coro_fd_reader_and_writer_on_one_fd(void) {
    two_ctx c;
    memset(&c, 0, sizeof c);
    run_on_socketpair(two_main, &c, c.sv);
}

/* ---- fd watches: a coroutine spawned once an fd is ready ----------------------------------- */

typedef struct watch_ctx {
    int sv[2];
    int spawned;     /* handler coroutines started */
    int cancelled;   /* ... that found themselves cancelled */
    char seen;       /* the byte the last handler read */
    const char *sim; /* the name the handler expects for itself */
} watch_ctx;

/* Reads the byte that made sv[0] readable and answers it on the same fd. */
static int watch_answer(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    c->spawned++;
    TH_CHECK(strcmp(conc_coro_name(conc_coro_self()), c->sim) == 0);
    size_t got = 0;
    TH_CHECK_EQ(conc_coro_read(c->sv[0], &c->seen, 1, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(got, 1);
    TH_CHECK_EQ(conc_coro_write(c->sv[0], "y", 1, CONC_FOREVER, NULL), 0);
    return 0;
}

static int watch_once_main(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = c->sim = "answer";
    o.stack_size = CONC_CORO_STACK_MIN;
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_READ, watch_answer, c, &o), 0);
    /* not ready: nothing spawns however long the others run (sleeps poll epoll) */
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
    TH_CHECK_EQ(c->spawned, 0);
    /* the direction is taken: a wait or a second watch on it is EBUSY, the other is free */
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_READ, CONC_FOREVER), EBUSY);
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_WRITE, watch_answer, c, &o), EBUSY);
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), 0);
    TH_CHECK_EQ(conc_coro_write(c->sv[1], "a", 1, CONC_FOREVER, NULL), 0);
    char back = 0;
    size_t got = 0;
    TH_CHECK_EQ(conc_coro_read(c->sv[1], &back, 1, CONC_FOREVER, &got), 0); /* its answer */
    TH_CHECK_EQ(back, 'y');
    TH_CHECK_EQ(c->spawned, 1);
    TH_CHECK_EQ(c->seen, 'a');
    /* one-shot: the watch ended when it fired; more data spawns nothing, and the fd is free */
    TH_CHECK_EQ(conc_coro_unwatch_fd(NULL, c->sv[0]), ENOENT);
    TH_CHECK_EQ(conc_coro_write(c->sv[1], "b", 1, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_read(c->sv[0], &back, 1, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(back, 'b');
    TH_CHECK_EQ(c->spawned, 1);
    /* unwatch before it fires: data that comes after spawns nothing */
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_READ, watch_answer, c, &o), 0);
    TH_CHECK_EQ(conc_coro_unwatch_fd(NULL, c->sv[0]), 0);
    TH_CHECK_EQ(conc_coro_unwatch_fd(NULL, c->sv[0]), ENOENT);
    TH_CHECK_EQ(conc_coro_write(c->sv[1], "c", 1, CONC_FOREVER, NULL), 0);
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
    TH_CHECK_EQ(c->spawned, 1);
    TH_CHECK_EQ(conc_coro_read(c->sv[0], &back, 1, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(back, 'c');
    return 0;
}

static void coro_watch_fd_spawns_once_when_ready(void) {
    watch_ctx c;
    memset(&c, 0, sizeof c);
    run_on_socketpair(watch_once_main, &c, c.sv);
    TH_CHECK_EQ(c.spawned, 1);
}

/* A write-watch fires while a coroutine stays parked reading the same fd, and a read-watch
 * waits while a coroutine writes: one registration, armed for both. */
static int watch_note_writable(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    c->spawned++;
    return 0;
}

static int watch_parked_reader(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_READ, CONC_FOREVER), 0);
    c->seen = 'R';
    return 0;
}

static int watch_two_directions_main(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    conc_coro_t *r = spawn_h(watch_parked_reader, c, "reader");
    while (!conc_coro_is_parked(r))
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_READ, watch_note_writable, c, NULL),
                EBUSY);
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_WRITE, watch_note_writable, c, NULL), 0);
    while (c->spawned == 0) /* writable at once: it fires at the next poll */
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
    TH_CHECK(conc_coro_is_parked(r)); /* the write event did not wake the reader */
    TH_CHECK_EQ(c->seen, 0);
    TH_CHECK_EQ(conc_coro_write(c->sv[1], "z", 1, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(join_release(r), 0);
    TH_CHECK_EQ(c->seen, 'R');
    TH_CHECK_EQ(c->spawned, 1);
    return 0;
}

static void coro_watch_fd_and_a_waiter_share_the_fd(void) {
    watch_ctx c;
    memset(&c, 0, sizeof c);
    run_on_socketpair(watch_two_directions_main, &c, c.sv);
}

/* The pattern the watch is for: a server whose idle connections hold no coroutine. Each
 * request spawns a handler that echoes it and watches the connection again; end of file
 * closes it. Every echo is checked, and every spawn is accounted for. */
enum { WATCH_CONNS = 64, WATCH_ROUNDS = 20 };

typedef struct watch_server {
    int srv[WATCH_CONNS], cli[WATCH_CONNS];
    int spawned, closed, echoed;
    conc_coro_opts_t opts;
} watch_server;

typedef struct watch_conn {
    watch_server *w;
    int i;
} watch_conn;

static watch_conn watch_conns[WATCH_CONNS];

static int watch_serve(void *p) {
    watch_conn *k = (watch_conn *)p;
    watch_server *w = k->w;
    w->spawned++;
    char buf[64];
    size_t got = 0;
    TH_CHECK_EQ(conc_coro_read(w->srv[k->i], buf, sizeof buf, CONC_FOREVER, &got), 0);
    if (got == 0) {
        close(w->srv[k->i]);
        w->closed++;
        return 0;
    }
    TH_CHECK_EQ(conc_coro_write(w->srv[k->i], buf, got, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, w->srv[k->i], CONC_FD_READ, watch_serve, k, &w->opts), 0);
    return 0;
}

static int watch_client(void *p) {
    watch_conn *k = (watch_conn *)p;
    watch_server *w = k->w;
    for (int r = 0; r < WATCH_ROUNDS; r++) {
        char msg[32], back[32];
        int len = snprintf(msg, sizeof msg, "c%d r%d", k->i, r);
        TH_CHECK_EQ(conc_coro_write(w->cli[k->i], msg, (size_t)len, CONC_FOREVER, NULL), 0);
        size_t got = 0, n = 0;
        while (got < (size_t)len) {
            TH_CHECK_EQ(
                conc_coro_read(w->cli[k->i], back + got, sizeof back - got, CONC_FOREVER, &n), 0);
            TH_CHECK(n > 0);
            got += n;
        }
        TH_CHECK_EQ(got, (size_t)len);
        TH_CHECK(memcmp(back, msg, (size_t)len) == 0);
        w->echoed++;
        if (r % 7 == k->i % 7)
            TH_CHECK_EQ(conc_coro_yield(), 0); /* interleave the connections */
    }
    shutdown(w->cli[k->i], SHUT_WR); /* end of file: the server closes its end */
    return 0;
}

static int watch_server_main(void *p) {
    watch_server *w = (watch_server *)p;
    for (int i = 0; i < WATCH_CONNS; i++) {
        watch_conns[i].w = w;
        watch_conns[i].i = i;
        TH_CHECK_EQ(conc_coro_watch_fd(NULL, w->srv[i], CONC_FD_READ, watch_serve, &watch_conns[i],
                                       &w->opts),
                    0);
    }
    for (int i = 0; i < WATCH_CONNS; i++)
        TH_CHECK_EQ(conc_coro_spawn(NULL, watch_client, &watch_conns[i], NULL, NULL), 0);
    return 0; /* the run goes on: the clients, then the watches, keep it going */
}

static void coro_watch_fd_echo_server_holds_no_coroutine_per_idle_connection(void) {
    static watch_server w;
    memset(&w, 0, sizeof w);
    w.opts.stack_size = CONC_CORO_STACK_MIN;
    for (int i = 0; i < WATCH_CONNS; i++) {
        int sv[2];
        TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        w.srv[i] = sv[0];
        w.cli[i] = sv[1];
    }
    TH_CHECK_EQ(run_main(watch_server_main, &w), 0);
    TH_CHECK_EQ(w.echoed, WATCH_CONNS * WATCH_ROUNDS);
    TH_CHECK_EQ(w.closed, WATCH_CONNS);
    /* one spawn per request and one per end of file: no spurious one, none missed */
    TH_CHECK_EQ(w.spawned, WATCH_CONNS * (WATCH_ROUNDS + 1));
    for (int i = 0; i < WATCH_CONNS; i++)
        close(w.cli[i]);
}

/* A pending watch keeps the run going after every coroutine has returned; destroy spawns the
 * watches left, cancelled, so each can free its argument (ASan's leak check would see it
 * otherwise), and a watch made during destroy is ECANCELED. */
typedef struct late_ctx {
    watch_ctx c;
    int set; /* atomic: the watch is in place, the writer may go */
} late_ctx;

static void *late_write(void *p) {
    late_ctx *l = (late_ctx *)p;
    while (!__atomic_load_n(&l->set, __ATOMIC_ACQUIRE))
        sched_yield();
    usleep(20000); /* when the run would have returned, had the watch not kept it going */
    TH_CHECK_EQ(write(l->c.sv[1], "w", 1), 1);
    return NULL;
}

static int watch_set_and_return(void *p) {
    late_ctx *l = (late_ctx *)p;
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = l->c.sim = "late";
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, l->c.sv[0], CONC_FD_READ, watch_answer, &l->c, &o), 0);
    __atomic_store_n(&l->set, 1, __ATOMIC_RELEASE);
    return 0;
}

static int watch_cancelled_frees(void *p) {
    watch_ctx *c = *(watch_ctx **)p;
    c->spawned++;
    TH_CHECK_EQ(conc_coro_yield(), ECANCELED);
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_READ, watch_cancelled_frees, p, NULL),
                ECANCELED);
    c->cancelled++;
    free(p);
    return 0;
}

static void coro_watch_fd_keeps_run_going_and_destroy_spawns_it_cancelled(void) {
    static late_ctx l;
    memset(&l, 0, sizeof l);
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, l.c.sv), 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, late_write, &l), 0);
    TH_CHECK_EQ(run_main(watch_set_and_return, &l), 0);
    TH_CHECK_EQ(l.c.spawned, 1); /* the run returned only once the watch had fired */
    TH_CHECK_EQ(l.c.seen, 'w');
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    char back = 0;
    TH_CHECK_EQ(read(l.c.sv[1], &back, 1), 1);
    TH_CHECK_EQ(back, 'y');
    /* destroy with a watch pending (set from outside any coroutine, before any run) */
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    watch_ctx **arg = (watch_ctx **)malloc(sizeof *arg);
    TH_CHECK(arg != NULL);
    *arg = &l.c;
    l.c.spawned = 0;
    TH_CHECK_EQ(conc_coro_watch_fd(s, l.c.sv[0], CONC_FD_READ, watch_cancelled_frees, arg, NULL),
                0);
    conc_sched_destroy(s);
    TH_CHECK_EQ(l.c.spawned, 1);
    TH_CHECK_EQ(l.c.cancelled, 1);
    close(l.c.sv[0]);
    close(l.c.sv[1]);
}

/* Every way a watch ends gives back what it counted: after a fire, an unwatch, a failed arm on
 * a number already in the table and a regular file's spawn, the scheduler says "0 fd waits"
 * (a count left behind would keep the loop polling, and hide a deadlock from EDEADLK). */
static int watch_count(void *p);

static int watch_books_balance(void *p) {
    watch_ctx *c = (watch_ctx *)p;
    int n = 0;
    conc_sched_t *s = NULL;
    TH_CHECK_EQ(conc_coro_watch_fd(s, c->sv[0], CONC_FD_READ, watch_count, &n, NULL), 0);
    TH_CHECK_EQ(conc_coro_unwatch_fd(s, c->sv[0]), 0);
    TH_CHECK_EQ(conc_coro_watch_fd(s, c->sv[0], CONC_FD_READ, watch_count, &n, NULL), 0);
    TH_CHECK_EQ(conc_coro_write(c->sv[1], "x", 1, CONC_FOREVER, NULL), 0);
    while (n == 0)
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_MS)), 0);
    int closed = dup(c->sv[0]); /* below the table's size now: the arm itself fails */
    TH_CHECK(closed >= 0);
    close(closed);
    TH_CHECK_EQ(conc_coro_watch_fd(s, closed, CONC_FD_READ, watch_count, &n, NULL), EBADF);
    char path[] = "/tmp/conc-watch-XXXXXX";
    int f = mkstemp(path);
    TH_CHECK(f >= 0);
    unlink(path);
    TH_CHECK_EQ(conc_coro_watch_fd(s, f, CONC_FD_READ, watch_count, &n, NULL), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the file's coroutine runs */
    TH_CHECK_EQ(n, 2);
    close(f);
    return 0;
}

static void coro_watch_fd_every_end_gives_back_its_counts(void) {
    watch_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c.sv), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, watch_books_balance, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    TH_CHECK(out != NULL);
    conc_sched_dump(s, out);
    fclose(out);
    TH_CHECK_MSG(strstr(text, " 0 fd waits (0 of them watches)") != NULL, "%s", text);
    free(text);
    conc_sched_destroy(s);
    close(c.sv[0]);
    close(c.sv[1]);
}

/* One registration armed for both parties: a read watch fires while a writer stays parked on
 * a full buffer, and the writer still wakes once the buffer drains, whichever came first. */
static int watch_blocked_writer(void *p) {
    two_ctx *c = (two_ctx *)p;
    TH_CHECK_EQ(conc_coro_wait_fd(c->sv[0], CONC_FD_WRITE, CONC_FOREVER), 0);
    log_add(&c->log, 'W');
    return 0;
}

static int watch_note_read(void *p) {
    two_ctx *c = (two_ctx *)p;
    log_add(&c->log, 'R');
    return 0;
}

static int watch_union_main(void *p) {
    two_ctx *c = (two_ctx *)p;
    for (int watch_first = 0; watch_first <= 1; watch_first++) {
        c->log.n = 0;
        two_fill(c);
        conc_coro_t *w = NULL;
        if (!watch_first) {
            w = spawn_h(watch_blocked_writer, c, "writer");
            while (!conc_coro_is_parked(w))
                TH_CHECK_EQ(conc_coro_yield(), 0);
        }
        TH_CHECK_EQ(conc_coro_watch_fd(NULL, c->sv[0], CONC_FD_READ, watch_note_read, c, NULL), 0);
        if (watch_first) {
            w = spawn_h(watch_blocked_writer, c, "writer");
            while (!conc_coro_is_parked(w))
                TH_CHECK_EQ(conc_coro_yield(), 0);
        }
        char ch = 'q';
        TH_CHECK_EQ(write(c->sv[1], &ch, 1), 1);
        two_yield_until(c, 1);
        TH_CHECK_EQ(c->log.v[0], 'R');
        TH_CHECK(conc_coro_is_parked(w)); /* the read event did not wake the writer */
        two_drain(c);
        TH_CHECK_EQ(join_release(w), 0);
        TH_CHECK_EQ(c->log.n, 2);
        TH_CHECK_EQ(c->log.v[1], 'W');
        two_empty_both(c);
    }
    return 0;
}

static void coro_watch_fd_and_a_parked_writer_share_the_registration(void) {
    two_ctx c;
    memset(&c, 0, sizeof c);
    run_on_socketpair(watch_union_main, &c, c.sv);
}

/* Bad input, the thread rule, a closed fd, and a regular file (always ready: spawned now). */
static int watch_count(void *p) {
    ++*(int *)p;
    return 0;
}

static void coro_watch_fd_bad_input_and_regular_files(void) {
    int n = 0;
    conc_coro_opts_t small;
    memset(&small, 0, sizeof small);
    small.stack_size = CONC_CORO_STACK_MIN - 1;
    /* s NULL outside a coroutine: no scheduler of its own to name */
    TH_CHECK_EQ(conc_coro_watch_fd(NULL, 0, CONC_FD_READ, watch_count, &n, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_unwatch_fd(NULL, 0), EINVAL);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    int sv[2];
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    TH_CHECK_EQ(conc_coro_watch_fd(s, -1, CONC_FD_READ, watch_count, &n, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_watch_fd(s, sv[0], 0, watch_count, &n, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_watch_fd(s, sv[0], 4, watch_count, &n, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_watch_fd(s, sv[0], CONC_FD_READ, NULL, &n, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_watch_fd(s, sv[0], CONC_FD_READ, watch_count, &n, &small), EINVAL);
    TH_CHECK_EQ(conc_coro_unwatch_fd(s, -1), EINVAL);
    TH_CHECK_EQ(conc_coro_unwatch_fd(s, sv[0]), ENOENT);
    TH_CHECK_EQ(conc_coro_unwatch_fd(s, 1 << 20), ENOENT);
    TH_CHECK_EQ(conc_coro_watch_fd(s, 1 << 20, CONC_FD_READ, watch_count, &n, NULL), EBADF);
    int closed = dup(sv[0]);
    TH_CHECK(closed >= 0);
    close(closed);
    TH_CHECK_EQ(conc_coro_watch_fd(s, closed, CONC_FD_READ, watch_count, &n, NULL), EBADF);
    /* a regular file: poll calls it always ready, so the coroutine starts at once */
    char path[] = "/tmp/conc-watch-XXXXXX";
    int f = mkstemp(path);
    TH_CHECK(f >= 0);
    unlink(path);
    TH_CHECK_EQ(conc_coro_watch_fd(s, f, CONC_FD_READ, watch_count, &n, NULL), 0);
    TH_CHECK_EQ(conc_coro_unwatch_fd(s, f), ENOENT); /* nothing pending: it was spawned */
    TH_CHECK_EQ(conc_sched_run(s), 0);
    TH_CHECK_EQ(n, 1);
    conc_sched_destroy(s);
    close(f);
    close(sv[0]);
    close(sv[1]);
}

/* I/O never starves: a coroutine that yields forever cannot keep an fd waiter from running. */
typedef struct starve_ctx {
    int fds[2];
    int got;
} starve_ctx;

static int starve_yielder(void *p) {
    starve_ctx *c = (starve_ctx *)p;
    while (!c->got)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    return 0;
}

static int starve_reader(void *p) {
    starve_ctx *c = (starve_ctx *)p;
    TH_CHECK_EQ(conc_coro_wait_fd(c->fds[0], CONC_FD_READ, CONC_FOREVER), 0);
    c->got = 1;
    return 0;
}

static void coro_fd_polled_while_coroutines_stay_runnable(void) {
    starve_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(pipe(c.fds), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, starve_reader, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, starve_yielder, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, starve_yielder, &c, NULL, NULL), 0);
    TH_CHECK_EQ(write(c.fds[1], "y", 1), 1); /* ready before run: only a poll can see it */
    TH_CHECK_EQ(conc_sched_run(s), 0);       /* hangs if epoll is never polled while busy */
    TH_CHECK_EQ(c.got, 1);
    conc_sched_destroy(s);
    close(c.fds[0]);
    close(c.fds[1]);
}

/* A busy scheduler polls every few milliseconds, not every so many switches (DESIGN: "at
 * least every few milliseconds even while coroutines are runnable"): coroutines that each
 * compute BUSY_SLICE_NS of wall time between yields must not delay a ready fd by dozens of
 * their runs (the look used to come every 64 switches: 64 slices). Counted in switches, not
 * time: each slice lasts at least its wall time, so a loaded machine only makes fewer.
 * Counted from the coarse clock's next tick, which the look waits for: on a busy VM that
 * clock fell 21 ms (5 ticks of 4 ms) behind CLOCK_MONOTONIC while its timekeeping vCPU was
 * off the host's CPU (make test-shaken saw 13 slices where one tick's worth allowed 11). */
#define BUSY_SLICE_NS (2 * CONC_MS)
#define BUSY_COROS 4
#define BUSY_ROUNDS 4
#define BUSY_RUNS_KEPT 1024
typedef struct busy_ctx {
    int fds[2];
    unsigned runs; /* slices computed by the busy coroutines */
    unsigned wrote_at[BUSY_ROUNDS], woke_at[BUSY_ROUNDS];
    int64_t coarse_at_write[BUSY_ROUNDS];
    int64_t started[BUSY_RUNS_KEPT]; /* the coarse clock as slice k (runs after it) began */
    int round, stop;
} busy_ctx;

static int64_t busy_coarse_now(void) {
    struct timespec ts;
    TH_CHECK_EQ(clock_gettime(CLOCK_MONOTONIC_COARSE, &ts), 0);
    return (int64_t)ts.tv_sec * CONC_SEC + ts.tv_nsec;
}

static int busy_worker(void *p) {
    busy_ctx *c = (busy_ctx *)p;
    while (!c->stop) {
        int64_t began = busy_coarse_now();
        int64_t end = conc_now() + BUSY_SLICE_NS;
        while (conc_now() < end) {
        }
        if (++c->runs < BUSY_RUNS_KEPT)
            c->started[c->runs] = began;
        if (c->runs % 8 == 0 && c->round < BUSY_ROUNDS && !c->wrote_at[c->round]) {
            c->wrote_at[c->round] = c->runs;
            TH_CHECK_EQ(write(c->fds[1], "b", 1), 1);
            c->coarse_at_write[c->round] = busy_coarse_now();
        }
        TH_CHECK_EQ(conc_coro_yield(), 0);
    }
    return 0;
}

/* The slice by whose end the scheduler has looked since round r's write: the first that began
 * after the coarse clock moved past its reading at the write (the switch that ends it reads a
 * value no look has seen), or the 64th switch after, whichever comes first. */
static unsigned busy_look_by(const busy_ctx *c, int r) {
    unsigned by = c->wrote_at[r] + CONC__CORO_TICKS_MASK + 1;
    for (unsigned k = c->wrote_at[r] + 1; k < by && k < BUSY_RUNS_KEPT && k <= c->runs; k++)
        if (c->started[k] > c->coarse_at_write[r])
            return k;
    return by;
}

static int busy_reader(void *p) {
    busy_ctx *c = (busy_ctx *)p;
    for (; c->round < BUSY_ROUNDS; c->round++) {
        TH_CHECK_EQ(conc_coro_wait_fd(c->fds[0], CONC_FD_READ, CONC_FOREVER), 0);
        c->woke_at[c->round] = c->runs;
        char b;
        TH_CHECK_EQ(read(c->fds[0], &b, 1), 1);
    }
    c->stop = 1;
    return 0;
}

static void coro_fd_polled_every_few_ms_between_long_runs(void) {
    struct timespec res;
    TH_CHECK_EQ(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
    int64_t tick = (int64_t)res.tv_sec * CONC_SEC + res.tv_nsec;
    if (tick > 10 * CONC_MS)
        TH_SKIP("the coarse clock ticks less often than every 10 ms");
    /* After the look: the busy coroutines queued ahead of the reader, and slack. Each slice
     * outlasts the poll interval (2 ms), so a look at a slice's end polls. The 64-switch look
     * left 0 to 63 more. */
    CONC_STATIC_ASSERT(BUSY_SLICE_NS >= CONC_CORO_POLL_NS, "a look after a slice polls");
    unsigned bound = BUSY_COROS + 4;
    busy_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(pipe(c.fds), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, busy_reader, &c, NULL, NULL), 0);
    for (int i = 0; i < BUSY_COROS; i++)
        TH_CHECK_EQ(conc_coro_spawn(s, busy_worker, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    for (int r = 0; r < BUSY_ROUNDS; r++) {
        unsigned look = busy_look_by(&c, r);
        TH_CHECK_MSG(c.woke_at[r] <= look + bound,
                     "round %d: the ready fd waited %u runs of %lld ms after the write, %d after "
                     "the coarse clock's tick (at most %u)",
                     r, c.woke_at[r] - c.wrote_at[r], (long long)(BUSY_SLICE_NS / CONC_MS),
                     (int)c.woke_at[r] - (int)look, bound);
    }
    conc_sched_destroy(s);
    close(c.fds[0]);
    close(c.fds[1]);
}

/* ---- groups ------------------------------------------------------------------------------- */

typedef struct group_ctx {
    int cancelled, finished;
} group_ctx;

static int group_sleeper(void *p) {
    group_ctx *g = (group_ctx *)p;
    int e = conc_coro_sleep_until(conc_deadline_in(60 * CONC_SEC));
    if (e == ECANCELED)
        g->cancelled++;
    g->finished++;
    return e;
}

static int group_failer(void *p) {
    (void)p;
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(2 * CONC_MS)), 0);
    return EIO;
}

static int group_main(void *p) {
    group_ctx *gc = (group_ctx *)p;
    conc_group_t *g;
    TH_CHECK_EQ(conc_group_create(NULL, &g), 0);
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_group_spawn(g, group_sleeper, gc, NULL), 0);
    TH_CHECK_EQ(conc_group_spawn(g, group_failer, gc, NULL), 0);
    int st = -1;
    TH_CHECK_EQ(conc_group_wait(g, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, EIO);          /* the first failure */
    TH_CHECK_EQ(gc->cancelled, 5); /* cancelled the siblings */
    TH_CHECK_EQ(gc->finished, 5);  /* and waited for them */
    TH_CHECK_EQ(conc_group_spawn(g, group_sleeper, gc, NULL), ECANCELED); /* failed group */
    conc_group_destroy(g);
    /* a group whose children all succeed reports 0; an empty group waits for nothing */
    TH_CHECK_EQ(conc_group_create(NULL, &g), 0);
    TH_CHECK_EQ(conc_group_wait(g, 0, &st), 0);
    TH_CHECK_EQ(st, 0);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_group_spawn(g, return_arg, NULL, NULL), 0);
    int64_t dl = conc_deadline_in(0);
    st = -1;
    TH_CHECK_EQ(conc_group_wait(g, dl, &st), ETIMEDOUT);
    TH_CHECK_EQ(conc_group_wait(g, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 0);
    conc_group_destroy(g);
    /* destroy cancels and joins the children left */
    gc->cancelled = gc->finished = 0;
    TH_CHECK_EQ(conc_group_create(NULL, &g), 0);
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(conc_group_spawn(g, group_sleeper, gc, NULL), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    conc_group_destroy(g);
    TH_CHECK_EQ(gc->finished, 4);
    TH_CHECK_EQ(gc->cancelled, 4);
    return 0;
}

static void coro_group_first_failure_cancels_siblings_destroy_joins(void) {
    group_ctx gc;
    memset(&gc, 0, sizeof gc);
    TH_CHECK_EQ(run_main(group_main, &gc), 0);
}

static void coro_group_destroy_outside_a_coroutine_runs_them_out(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    conc_group_t *g;
    TH_CHECK_EQ(conc_group_create(s, &g), 0);
    group_ctx gc;
    memset(&gc, 0, sizeof gc);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_group_spawn(g, group_sleeper, &gc, NULL), 0);
    conc_group_destroy(g); /* the loop runs them, cancelled, until they return */
    TH_CHECK_EQ(gc.finished, 3);
    TH_CHECK_EQ(gc.cancelled, 3);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
}

/* A group destroyed from outside any coroutine while a coroutine waits in conc_group_wait:
 * the last child's exit wakes the waiter, and destroy returns only after the waiter has run
 * (it reads the group). The child computes for 50 ms after its cancel while a 1 ms timer is
 * due, so its exit goes back to the loop (a timer to fire) with the waiter still queued: the
 * loop used to see the group empty there and free it under the waiter. */
typedef struct group_waiter_ctx {
    conc_group_t *g;
    int result, status, done;
} group_waiter_ctx;

static int slow_to_leave(void *arg) {
    (void)arg;
    int e = conc_coro_sleep_until(CONC_FOREVER);
    int64_t until = conc_now() + 50 * CONC_MS;
    while (conc_now() < until) /* no switch: the timer below falls due meanwhile */
        ;
    return e;
}

static int group_waiter(void *arg) {
    group_waiter_ctx *c = (group_waiter_ctx *)arg;
    c->result = conc_group_wait(c->g, CONC_FOREVER, &c->status);
    c->done = 1;
    return 0;
}

static int short_sleeper(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(conc_deadline_in(CONC_MS));
}

static void coro_group_destroy_outside_waits_for_its_waiters(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    group_waiter_ctx c;
    memset(&c, 0, sizeof c);
    c.result = c.status = -1;
    TH_CHECK_EQ(conc_group_create(s, &c.g), 0);
    /* Run order in destroy's loop: the waiter parks, the sleeper sets its timer, the child
     * (cancelled by destroy) computes and leaves, which wakes the waiter. */
    TH_CHECK_EQ(conc_coro_spawn(s, group_waiter, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, short_sleeper, NULL, NULL, NULL), 0);
    TH_CHECK_EQ(conc_group_spawn(c.g, slow_to_leave, NULL, NULL), 0);
    conc_group_destroy(c.g);
    TH_CHECK_EQ(c.done, 1); /* the waiter returned before the group went */
    TH_CHECK_EQ(c.result, 0);
    TH_CHECK_EQ(c.status, ECANCELED); /* the child's status: it was cancelled */
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
}

/* A reader whose wait a cancel ended, not yet run again, no longer holds the fd: another
 * coroutine's wait on it is no EBUSY. And the old reader, once it runs, leaves the new
 * reader's slot alone: a third coroutine gets EBUSY while the new reader stays parked. */
typedef struct fd_handover_ctx {
    int p[2];
    int old_result, probe_result;
} fd_handover_ctx;

static int fd_old_reader(void *arg) {
    fd_handover_ctx *c = (fd_handover_ctx *)arg;
    c->old_result = conc_coro_wait_fd(c->p[0], CONC_FD_READ, CONC_FOREVER);
    return 0;
}

static int fd_probe_reader(void *arg) { /* runs after the old reader, while main is parked */
    fd_handover_ctx *c = (fd_handover_ctx *)arg;
    c->probe_result = conc_coro_wait_fd(c->p[0], CONC_FD_READ, conc_deadline_in(50 * CONC_MS));
    TH_CHECK_EQ(write(c->p[1], "x", 1), 1); /* then main's wait ends */
    return 0;
}

static int fd_handover_main(void *arg) {
    fd_handover_ctx *c = (fd_handover_ctx *)arg;
    conc_coro_t *old_reader, *probe;
    TH_CHECK_EQ(conc_coro_spawn(NULL, fd_old_reader, c, NULL, &old_reader), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);            /* it parks on p[0] */
    TH_CHECK_EQ(conc_coro_cancel(old_reader), 0); /* woken, not yet run */
    TH_CHECK_EQ(conc_coro_spawn(NULL, fd_probe_reader, c, NULL, &probe), 0);
    /* Not EBUSY: the old reader's wait is over. Parked here, the old reader runs (and must
     * not clear our slot), then the probe (EBUSY: we are parked on p[0] for reading), which
     * then writes the byte that ends our wait. */
    TH_CHECK_EQ(conc_coro_wait_fd(c->p[0], CONC_FD_READ, CONC_FOREVER), 0);
    TH_CHECK_EQ(conc_coro_join(old_reader, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_join(probe, CONC_FOREVER, NULL), 0);
    conc_coro_release(old_reader);
    conc_coro_release(probe);
    return 0;
}

static void coro_fd_wait_ended_by_cancel_frees_the_fd_at_once(void) {
    fd_handover_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(pipe(c.p), 0);
    set_nonblock(c.p[0]);
    set_nonblock(c.p[1]);
    int status = -1;
    TH_CHECK_EQ(conc_run(fd_handover_main, &c, &status), 0);
    TH_CHECK_EQ(status, 0);
    TH_CHECK_EQ(c.old_result, ECANCELED);
    TH_CHECK_EQ(c.probe_result, EBUSY);
    close(c.p[0]);
    close(c.p[1]);
}

/* The waiter is cancelled (the CAVEATS' "wake or cancel the waiter first"), then its fd is
 * closed and the number reused before it runs again: a wait on the new file must arm it (the
 * woken waiter's slot proves nothing about the file any more) and see its byte at once. */
static int fd_reuse_cancelled_waiter(void *arg) {
    return conc_coro_wait_fd(*(int *)arg, CONC_FD_READ, CONC_FOREVER);
}

static int fd_reuse_cancelled_main(void *arg) {
    (void)arg;
    int sp[2];
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    conc_coro_t *a;
    TH_CHECK_EQ(conc_coro_spawn(NULL, fd_reuse_cancelled_waiter, &sp[0], NULL, &a), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* it parks on sp[0] */
    TH_CHECK_EQ(conc_coro_cancel(a), 0);
    int old = sp[0];
    close(sp[0]);
    close(sp[1]);
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp), 0);
    TH_CHECK_EQ(sp[0], old); /* the lowest free number: the same one */
    TH_CHECK_EQ(write(sp[1], "x", 1), 1);
    TH_CHECK_EQ(conc_coro_wait_fd(sp[0], CONC_FD_READ, CONC_FOREVER), 0);
    int status = -1;
    TH_CHECK_EQ(conc_coro_join(a, CONC_FOREVER, &status), 0);
    TH_CHECK_EQ(status, ECANCELED);
    conc_coro_release(a);
    close(sp[0]);
    close(sp[1]);
    return 0;
}

static void coro_fd_reused_after_its_waiter_was_cancelled(void) {
    int status = -1;
    TH_CHECK_EQ(conc_run(fd_reuse_cancelled_main, NULL, &status), 0);
    TH_CHECK_EQ(status, 0);
}

/* conc_sched_destroy inside a coroutine of another scheduler, on one with work handed over
 * (a spawn in its inbox): abort, with the message that says why. */
static int never_runs(void *arg) {
    (void)arg;
    return 0;
}

static int nested_destroy_main(void *arg) {
    (void)arg;
    conc_sched_t *other;
    if (conc_sched_create(&other, NULL) != 0 || conc_sched_spawn(other, never_runs, NULL) != 0)
        _exit(2);
    conc_sched_destroy(other); /* aborts */
    return 0;
}

static void nested_destroy_child(void) {
    int status = -1;
    int e = conc_run(nested_destroy_main, NULL, &status);
    (void)e;
    _exit(3); /* not reached */
}

static void coro_sched_destroy_inside_a_coroutine_aborts_saying_why(void) {
    char buf[4096];
    int status = th_run_child_capturing_stderr(nested_destroy_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, buf);
    TH_CHECK_MSG(strstr(buf, "conc_sched_destroy: called inside a coroutine") != NULL, "%s", buf);
}

/* A Unix listener whose backlog is full: a non-blocking connect says EAGAIN and starts
 * nothing. conc_coro_connect tries again until the deadline (ETIMEDOUT while nobody accepts,
 * never 0 on a socket that is not connected), and connects once an accept makes room. */
typedef struct unix_backlog_ctx {
    int listener;
    struct sockaddr_un addr;
    int filled[64];
    int nfilled;
    int accepted;
} unix_backlog_ctx;

static int unix_acceptor(void *arg) {
    unix_backlog_ctx *c = (unix_backlog_ctx *)arg;
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(2 * CONC_MS)), 0);
    for (;;) {
        int fd = accept(c->listener, NULL, NULL);
        if (fd < 0)
            break;
        c->accepted++;
        close(fd);
    }
    return 0;
}

static int unix_backlog_main(void *arg) {
    unix_backlog_ctx *c = (unix_backlog_ctx *)arg;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TH_CHECK(fd >= 0);
    int e = conc_coro_connect(fd, (const struct sockaddr *)&c->addr, sizeof c->addr,
                              conc_deadline_in(3 * CONC_MS));
    TH_CHECK_EQ(e, ETIMEDOUT);
    close(fd);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TH_CHECK(fd >= 0);
    conc_coro_t *a;
    TH_CHECK_EQ(conc_coro_spawn(NULL, unix_acceptor, c, NULL, &a), 0);
    TH_CHECK_EQ(
        conc_coro_connect(fd, (const struct sockaddr *)&c->addr, sizeof c->addr, CONC_FOREVER), 0);
    struct sockaddr_un peer;
    socklen_t len = sizeof peer;
    TH_CHECK_EQ(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
    TH_CHECK_EQ(conc_coro_join(a, CONC_FOREVER, NULL), 0);
    conc_coro_release(a);
    close(fd);
    return 0;
}

static void coro_connect_to_a_full_unix_backlog_retries_until_the_deadline(void) {
    unix_backlog_ctx c;
    memset(&c, 0, sizeof c);
    c.listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TH_CHECK(c.listener >= 0);
    c.addr.sun_family = AF_UNIX; /* abstract: nothing left in the file system */
    snprintf(c.addr.sun_path + 1, sizeof c.addr.sun_path - 1, "conc-test-backlog-%d",
             (int)getpid());
    TH_CHECK_EQ(bind(c.listener, (const struct sockaddr *)&c.addr, sizeof c.addr), 0);
    TH_CHECK_EQ(listen(c.listener, 1), 0);
    for (;;) { /* fill the backlog until a connect says EAGAIN */
        TH_CHECK(c.nfilled < 64);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        TH_CHECK(fd >= 0);
        if (connect(fd, (const struct sockaddr *)&c.addr, sizeof c.addr) != 0) {
            TH_CHECK_EQ(errno, EAGAIN);
            close(fd);
            break;
        }
        c.filled[c.nfilled++] = fd;
    }
    int status = -1;
    TH_CHECK_EQ(conc_run(unix_backlog_main, &c, &status), 0);
    TH_CHECK_EQ(status, 0);
    TH_CHECK(c.accepted >= 1);
    for (int i = 0; i < c.nfilled; i++)
        close(c.filled[i]);
    close(c.listener);
}

/* A coroutine cancelled while its yield waits its turn: the yield returns ECANCELED (asyncio
 * raises CancelledError at the sleep(0) it resumes from), and so does its next call. The same
 * for a sleep whose deadline has passed, which yields once (asyncio's sleep(-1) raises too). */
typedef struct yield_cancel {
    conc_coro_t *yielder;
    bool by_past_sleep;
    int first, second;
} yield_cancel;

static int yield_then_report(void *p) {
    yield_cancel *y = (yield_cancel *)p;
    /* queued behind the canceller */
    y->first = y->by_past_sleep ? conc_coro_sleep_until(0) : conc_coro_yield();
    y->second = conc_coro_yield();
    return 0;
}

static int cancel_the_yielder(void *p) {
    yield_cancel *y = (yield_cancel *)p;
    TH_CHECK(!conc_coro_is_parked(y->yielder)); /* runnable: its yield is queued */
    TH_CHECK_EQ(conc_coro_cancel(y->yielder), 0);
    return 0;
}

static int yield_cancel_main(void *p) {
    yield_cancel *y = (yield_cancel *)p;
    conc_coro_t *c;
    TH_CHECK_EQ(conc_coro_spawn(NULL, yield_then_report, y, NULL, &y->yielder), 0);
    TH_CHECK_EQ(conc_coro_spawn(NULL, cancel_the_yielder, y, NULL, &c), 0);
    TH_CHECK_EQ(conc_coro_join(y->yielder, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, NULL), 0);
    conc_coro_release(y->yielder);
    conc_coro_release(c);
    return 0;
}

static void coro_cancel_while_a_yield_waits_its_turn(void) {
    for (int past_sleep = 0; past_sleep < 2; past_sleep++) {
        yield_cancel y;
        memset(&y, 0, sizeof y);
        y.by_past_sleep = past_sleep;
        int status = -1;
        TH_CHECK_EQ(conc_run(yield_cancel_main, &y, &status), 0);
        TH_CHECK_EQ(status, 0);
        TH_CHECK_MSG(y.first == ECANCELED, "%s: %d", past_sleep ? "sleep_until(0)" : "yield",
                     y.first);
        TH_CHECK_EQ(y.second, ECANCELED);
    }
}

/* A cancelled coroutine's bare yield loop waiting for another coroutine (cleanup code that
 * polls: try a send, yield) still lets that coroutine run, so the loop ends. The loop is
 * bounded so that a yield which returns without switching fails the case instead of
 * spinning for good. Also conc_coro_sleep_until with a past deadline (asyncio.sleep(0)). */
typedef struct cancelled_poll {
    int flag, by_past_sleep;
    long yields, not_cancelled;
} cancelled_poll;

static int poll_for_the_flag(void *p) {
    cancelled_poll *c = (cancelled_poll *)p;
    TH_CHECK(conc_coro_is_cancelled(conc_coro_self()));
    while (!c->flag && c->yields < 100000) {
        int e = c->by_past_sleep ? conc_coro_sleep_until(0) : conc_coro_yield();
        c->yields++;
        c->not_cancelled += e != ECANCELED;
    }
    return 0;
}

static int set_the_flag(void *p) {
    ((cancelled_poll *)p)->flag = 1;
    return 0;
}

static int cancelled_poll_main(void *p) {
    conc_coro_t *poller, *setter;
    TH_CHECK_EQ(conc_coro_spawn(NULL, poll_for_the_flag, p, NULL, &poller), 0);
    TH_CHECK_EQ(conc_coro_spawn(NULL, set_the_flag, p, NULL, &setter), 0);
    TH_CHECK_EQ(conc_coro_cancel(poller), 0); /* before it first runs */
    TH_CHECK_EQ(join_release(poller), 0);
    TH_CHECK_EQ(join_release(setter), 0);
    return 0;
}

static void coro_cancelled_yield_still_lets_the_others_run(void) {
    for (int past_sleep = 0; past_sleep < 2; past_sleep++) {
        cancelled_poll c;
        memset(&c, 0, sizeof c);
        c.by_past_sleep = past_sleep;
        TH_CHECK_EQ(run_main(cancelled_poll_main, &c), 0);
        TH_CHECK_MSG(c.flag == 1 && c.yields == 1, "%s: flag %d after %ld yields",
                     past_sleep ? "sleep_until(0)" : "yield", c.flag, c.yields);
        TH_CHECK_EQ(c.not_cancelled, 0);
    }
}

/* ---- scheduler lifecycle ------------------------------------------------------------------ */

/* A nested conc_sched_destroy of a scheduler with no coroutine left but a pin whose message
 * another thread has yet to post (a mailbox sender between taking the wake and posting it)
 * waits for that message, runs it, and frees the scheduler; it does not abort. */
typedef struct pinned_post {
    conc_sched_t *s;
    conc_sched_msg_t *msg;
    int ran;
} pinned_post;

static int unpin_on_arrival(void *p) {
    pinned_post *pp = (pinned_post *)p;
    pp->ran = 1;
    conc_sched_unpin_here(pp->s);
    return 0;
}

static void *post_later(void *p) {
    pinned_post *pp = (pinned_post *)p;
    th_sleep_ns(20 * CONC_MS); /* most likely after destroy's first look; either order passes */
    conc_sched_msg_post(pp->s, pp->msg);
    return NULL;
}

static int destroy_nested(void *p) {
    conc_sched_destroy(((pinned_post *)p)->s);
    return 0;
}

static void coro_nested_destroy_waits_for_a_message_in_flight(void) {
    pinned_post pp;
    memset(&pp, 0, sizeof pp);
    TH_CHECK_EQ(conc_sched_create(&pp.s, NULL), 0);
    conc_sched_pin(pp.s);
    TH_CHECK_EQ(conc_sched_msg_create(&pp.msg, unpin_on_arrival, &pp), 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, post_later, &pp), 0);
    int status = -1;
    TH_CHECK_EQ(conc_run(destroy_nested, &pp, &status), 0);
    TH_CHECK_EQ(status, 0);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_EQ(pp.ran, 1);
}

typedef struct cleanup_ctx {
    int cleaned;
} cleanup_ctx;

static int needs_cleanup(void *p) {
    cleanup_ctx *c = (cleanup_ctx *)p;
    int e = conc_coro_sleep_until(CONC_FOREVER);
    TH_CHECK_EQ(e, ECANCELED);
    c->cleaned++;
    return e;
}

static void coro_sched_destroy_cancels_and_runs_cleanup(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    cleanup_ctx c = {0};
    for (int i = 0; i < 10; i++)
        TH_CHECK_EQ(conc_coro_spawn(s, needs_cleanup, &c, NULL, NULL), 0);
    conc_coro_t *h;
    TH_CHECK_EQ(conc_coro_spawn(s, needs_cleanup, &c, NULL, &h), 0);
    conc_coro_release(h); /* handle dropped: it runs on, detached */
    TH_CHECK_EQ(c.cleaned, 0);
    conc_sched_destroy(s); /* never ran: destroy starts them cancelled */
    TH_CHECK_EQ(c.cleaned, 11);
}

/* A cancelled coroutine whose cleanup spawns another during destroy: the new one starts
 * cancelled too (its sleep returns ECANCELED at once), so destroy does not wait on it. */
typedef struct late_spawn_ctx {
    int helper_result, helper_ran;
} late_spawn_ctx;

static int late_helper(void *p) {
    late_spawn_ctx *c = (late_spawn_ctx *)p;
    c->helper_ran = 1;
    c->helper_result = conc_coro_sleep_until(CONC_FOREVER);
    return 0;
}

static int cleanup_spawns(void *p) {
    TH_CHECK_EQ(conc_coro_sleep_until(CONC_FOREVER), ECANCELED);
    TH_CHECK_EQ(conc_coro_spawn(NULL, late_helper, p, NULL, NULL), 0); /* during destroy */
    return 0;
}

static void coro_sched_destroy_cancels_what_cleanup_spawns(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    late_spawn_ctx c = {-1, 0};
    TH_CHECK_EQ(conc_coro_spawn(s, cleanup_spawns, &c, NULL, NULL), 0);
    conc_sched_destroy(s);
    TH_CHECK_EQ(c.helper_ran, 1);
    TH_CHECK_EQ(c.helper_result, ECANCELED);
}

/* conc_run inside a coroutine is EPERM, as conc_sched_run is: nothing made, fn never run. */
static int nested_never(void *p) {
    ++*(int *)p;
    return 0;
}

static int nested_run_main(void *p) {
    int status = -1;
    TH_CHECK_EQ(conc_run(nested_never, p, &status), EPERM);
    TH_CHECK_EQ(status, -1);
    return 0;
}

static void coro_conc_run_inside_a_coroutine_is_eperm(void) {
    int ran = 0, status = -1;
    TH_CHECK_EQ(conc_run(nested_run_main, &ran, &status), 0);
    TH_CHECK_EQ(status, 0);
    TH_CHECK_EQ(ran, 0);
}

/* ---- stacks ------------------------------------------------------------------------------- */

typedef struct many_ctx {
    long alive, woke;
    int go;
    conc_coro_waitq_t q;
} many_ctx;

static int many_waiter(void *p) {
    many_ctx *m = (many_ctx *)p;
    volatile char touch[256]; /* use some stack */
    touch[0] = 1;
    m->alive++;
    conc_coro_wait_t w;
    memset(&w, 0, sizeof w);
    w.what = "go";
    TH_CHECK_EQ(conc_coro_waitq_wait(&m->q, &w, CONC_FOREVER), 0);
    m->woke++;
    return touch[0] - 1;
}

static int many_main(void *p) {
    many_ctx *m = (many_ctx *)p;
    long n = (long)(intptr_t)m->go;
    for (long i = 0; i < n; i++)
        TH_CHECK_EQ(conc_coro_spawn(NULL, many_waiter, m, NULL, NULL), 0);
    while (m->alive < n)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_waitq_wake_all(&m->q, 0), (size_t)n); /* all alive at once */
    return 0;
}

static void coro_100k_alive_at_once_with_guards(void) {
    long n = 100000;
#if defined(CONC_TSAN)
    n = GCC_TSAN_FEWER(2000); /* every coroutine is a TSan fiber: TSan's thread table, memory
                               * and (gcc's) time bound it */
#elif defined(CONC_ASAN)
    n = 20000; /* ASan gives every fiber a fake stack */
#endif
    if (UNDER_VALGRIND())
        n = 2000;
    else if (sizeof(void *) < 8)
        n = 10000; /* 100,000 stacks of 64 KiB are more than a 32-bit address space */
    many_ctx m;
    memset(&m, 0, sizeof m);
    m.go = (int)n;
    TH_CHECK_EQ(run_main(many_main, &m), 0);
    TH_CHECK_EQ(m.alive, n);
    TH_CHECK_EQ(m.woke, n);
}

/* QEMU's no-dangling-access: a slot reused by a new coroutine carries nothing over. */
static int dirty_and_return(void *arg) {
    volatile unsigned char junk[2048];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 0xEE;
    (void)arg;
    return junk[7];
}

static int check_clean(void *arg) {
    conc_coro_t *self = conc_coro_self();
    TH_CHECK(arg == (void *)0x77);
    TH_CHECK(!conc_coro_is_cancelled(self)); /* the previous owner of the slot was cancelled */
    TH_CHECK(strcmp(conc_coro_name(self), "second") == 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    return 11;
}

static int reuse_main(void *arg) {
    (void)arg;
    conc_coro_t *a = spawn_h(dirty_and_return, NULL, "first");
    TH_CHECK_EQ(conc_coro_cancel(a), 0);
    TH_CHECK_EQ(join_release(a), 0xEE);
    conc_coro_t *b = spawn_h(check_clean, (void *)0x77, "second");
    TH_CHECK(b == a); /* LIFO free list: the very same slot */
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(b, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 11);
    /* the handle stays valid after the coroutine finished, until released */
    TH_CHECK(strcmp(conc_coro_name(b), "second") == 0);
    conc_coro_release(b);
    /* different stack sizes use different slots and both work */
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.stack_size = 256 * 1024;
    o.name = "big";
    conc_coro_t *c;
    TH_CHECK_EQ(conc_coro_spawn(NULL, dirty_and_return, NULL, &o, &c), 0);
    TH_CHECK(c != a);
    TH_CHECK_EQ(join_release(c), 0xEE);
    return 0;
}

/* Coroutines of two stack sizes carve slots from two arenas, in turn: each carved slot is
 * counted in its own arena, the one destroy walks to end its TSan fiber and clear its ASan
 * shadow. The count went to the scheduler's newest arena, another size's: destroy then
 * walked slots never carved (their fibers garbage) and missed carved ones. */
static int park_until_cancelled(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(CONC_FOREVER) == ECANCELED ? 0 : 1;
}

static int two_sizes_main(void *arg) {
    (void)arg;
    conc_coro_opts_t big;
    memset(&big, 0, sizeof big);
    big.stack_size = 256 * 1024;
    conc_coro_t *c[7];
    for (int i = 0; i < 7; i++)
        TH_CHECK_EQ(conc_coro_spawn(NULL, park_until_cancelled, NULL, i == 3 ? &big : NULL, &c[i]),
                    0);
    conc_sched_t *s = conc_coro_self()->sched;
    for (int i = 0; i < 7; i++) {
        const conc__coro_arena *home = NULL;
        for (const conc__coro_arena *a = s->arenas; a; a = a->next)
            if ((const char *)c[i] > a->base && (const char *)c[i] <= a->base + a->len)
                home = a;
        TH_CHECK(home != NULL);
        size_t slot = (size_t)((const char *)c[i] - home->base) / home->slot_size;
        TH_CHECK_MSG(slot < home->carved, "coroutine %d: slot %zu of an arena counting %zu", i,
                     slot, home->carved);
    }
    for (int i = 0; i < 7; i++) {
        TH_CHECK_EQ(conc_coro_cancel(c[i]), 0);
        TH_CHECK_EQ(join_release(c[i]), 0);
    }
    return 0;
}

static void coro_two_stack_sizes_count_their_own_slots(void) {
    TH_CHECK_EQ(run_main(two_sizes_main, NULL), 0);
}

static void coro_stack_reuse_without_dangling_data(void) {
    TH_CHECK_EQ(run_main(reuse_main, NULL), 0);
}

#if defined(__cplusplus)
/* C++: the exceptions being handled are each coroutine's own (coro.h swaps the runtime's
 * per-thread record at every switch). Two coroutines yield while unwinding and inside their
 * catch blocks; each must still count one exception in flight, rethrow its own, and end with
 * none (shared, `throw;` rethrew the other's and leaving a block freed the other's). */
struct yields_while_unwinding {
    int *in_flight_before, *in_flight_after;
    ~yields_while_unwinding() {
        *in_flight_before = std::uncaught_exceptions();
        TH_CHECK_EQ(conc_coro_yield(), 0); /* the other coroutine throws meanwhile */
        *in_flight_after = std::uncaught_exceptions();
    }
};

static int throw_yield_rethrow(void *arg) {
    const char *name = static_cast<const char *>(arg);
    int before = -1, after = -1;
    try {
        yields_while_unwinding guard = {&before, &after};
        throw std::runtime_error(name);
    } catch (const std::exception &) {
        TH_CHECK_EQ(conc_coro_yield(), 0); /* the other coroutine is in its catch block too */
        try {
            throw;
        } catch (const std::exception &again) {
            TH_CHECK_MSG(std::strcmp(again.what(), name) == 0, "coroutine %s rethrew %s", name,
                         again.what());
        }
        TH_CHECK_EQ(conc_coro_yield(), 0);
    }
    TH_CHECK_EQ(before, 1);
    TH_CHECK_EQ(after, 1);
    TH_CHECK(std::current_exception() == nullptr);
    TH_CHECK_EQ(std::uncaught_exceptions(), 0);
    return 0;
}

static int two_throwers(void *arg) {
    (void)arg;
    static char a_name[] = "A", b_name[] = "B";
    conc_coro_t *a = spawn_h(throw_yield_rethrow, a_name, "A");
    conc_coro_t *b = spawn_h(throw_yield_rethrow, b_name, "B");
    TH_CHECK_EQ(join_release(a), 0);
    TH_CHECK_EQ(join_release(b), 0);
    return 0;
}

static void coro_cxx_exceptions_being_handled_are_each_coroutines_own(void) {
    try {
        throw std::logic_error("the thread's own"); /* the loop's context has one too */
    } catch (const std::logic_error &) {
        TH_CHECK_EQ(run_main(two_throwers, NULL), 0);
        try {
            throw;
        } catch (const std::logic_error &again) {
            TH_CHECK(std::strcmp(again.what(), "the thread's own") == 0);
        }
    }
    TH_CHECK(std::current_exception() == nullptr);
}
#define CXX_ONLY_CASES TH_CASE(coro_cxx_exceptions_being_handled_are_each_coroutines_own),
#else
#define CXX_ONLY_CASES
#endif

/* Destroyed schedulers give their address space back: their stacks' arenas and, under ASan
 * with detect_stack_use_after_return (the suite's setting), each slot's fake stack, which ASan
 * frees only when the slot's fiber leaves for good (2.8 MB a scheduler stayed mapped). Each
 * round destroys three: one from a coroutine of another, one on a thread it never ran on. */
static int frame_on_the_fake_stack(void *arg) {
    volatile char buf[256]; /* an instrumented frame: ASan moves it to the fake stack */
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)i;
    TH_CHECK_EQ(conc_coro_yield(), 0);
    errno = EDOM; /* its own: destroy's last visit to its slot must not bring it back */
    return buf[(uintptr_t)arg] - (int)(uintptr_t)arg;
}

static conc_sched_t *a_scheduler_that_ran(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    for (uintptr_t k = 0; k < 3; k++)
        TH_CHECK_EQ(conc_coro_spawn(s, frame_on_the_fake_stack, (void *)k, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    return s;
}

static int destroy_it_here(void *arg) {
    TH_CHECK_ERRNO_KEPT(conc_sched_destroy((conc_sched_t *)arg));
    return 0;
}

static void *destroy_it_on_this_thread(void *arg) {
    TH_CHECK_ERRNO_KEPT(conc_sched_destroy((conc_sched_t *)arg));
    return NULL;
}

static void three_schedulers_come_and_go(void) {
    int status = -1;
    TH_CHECK_EQ(conc_run(destroy_it_here, a_scheduler_that_ran(), &status), 0);
    TH_CHECK_EQ(status, 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, destroy_it_on_this_thread, a_scheduler_that_ran()), 0);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
}

static unsigned long address_space_pages(void) {
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    TH_CHECK(f != NULL);
    TH_CHECK_EQ(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    return pages;
}

static void coro_destroyed_schedulers_give_their_address_space_back(void) {
    for (int i = 0; i < 4; i++) /* the allocators' and the thread cache's first growth */
        three_schedulers_come_and_go();
    unsigned long before = address_space_pages();
    for (int i = 0; i < 32; i++)
        three_schedulers_come_and_go();
    unsigned long grown_kb =
        (address_space_pages() - before) * (unsigned long)(getpagesize() / 1024);
    /* kept fake stacks: 96 schedulers of 3 or 4 slots, 700 KB each (over 200 MB) */
    TH_CHECK_MSG(grown_kb < 16 * 1024, "32 rounds of 3 schedulers grew the address space by %lu KB",
                 grown_kb);
}

static int use_stack(void *arg) {
    size_t n = (size_t)(uintptr_t)arg;
    volatile char *buf = (volatile char *)__builtin_alloca(n);
    for (size_t i = 0; i < n; i += 64)
        buf[i] = 1;
    return buf[0] - 1;
}

static void coro_stack_usage_high_water_mark(void) {
    conc_sched_t *s;
    conc_sched_opts_t so;
    memset(&so, 0, sizeof so);
    so.flags = CONC_SCHED_STACK_USAGE;
    TH_CHECK_EQ(conc_sched_create(&s, &so), 0);
    conc_coro_t *small, *big;
    TH_CHECK_EQ(conc_coro_spawn(s, use_stack, (void *)(uintptr_t)1024, NULL, &small), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, use_stack, (void *)(uintptr_t)(32 * 1024), NULL, &big), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    size_t us = 0, ub = 0;
    TH_CHECK_EQ(conc_coro_stack_usage(small, &us), 0);
    TH_CHECK_EQ(conc_coro_stack_usage(big, &ub), 0);
    TH_CHECK_MSG(us >= 1024 && us < 32 * 1024, "small used %zu", us);
    TH_CHECK_MSG(ub >= 32 * 1024 && ub < 64 * 1024, "big used %zu", ub);
    conc_coro_release(small);
    conc_coro_release(big);
    conc_sched_destroy(s);
    /* without the flag: ENOTSUP */
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, NULL, NULL, &small), 0);
    TH_CHECK_EQ(conc_coro_stack_usage(small, &us), ENOTSUP);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_coro_release(small);
    conc_sched_destroy(s);
}

/* Stack overflow, caught in a forked child: the message names the coroutine. */
static int recurse(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    if (depth > (1 << 28))
        return frame[0];
    return recurse(depth + 1) + frame[0];
}

static int overflow_coro(void *arg) {
    (void)arg;
    return recurse(0);
}

/* A child's whole run: one coroutine named `name` on a fresh scheduler, which must abort. */
static void run_named_until_abort(unsigned sched_flags, conc_coro_fn fn, const char *name) {
    conc_sched_opts_t so;
    memset(&so, 0, sizeof so);
    so.flags = sched_flags;
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, &so), 0);
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = name;
    TH_CHECK_EQ(conc_coro_spawn(s, fn, NULL, &o, NULL), 0);
    int e = conc_sched_run(s);
    printf("run returned %d\n", e); /* not reached */
}

/* Runs child in a child process: it must abort with an overflow report naming `name`. */
static void check_overflow_report(void (*child)(void), const char *name) {
    char buf[4096], want[128];
    int status = th_run_child_capturing_stderr(child, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d, stderr: %s",
                 status, buf);
    snprintf(want, sizeof want, "stack overflow in coroutine \"%s\"", name);
    TH_CHECK_MSG(strstr(buf, want) != NULL, "stderr: %s", buf);
}

static void overflow_child(void) {
    TH_CHECK_EQ(conc_coro_catch_overflow(), 0);
    /* qemu-user says MADV_GUARD_INSTALL worked and installs nothing: mprotect guards there */
    run_named_until_abort(th_emulated() ? CONC_SCHED_GUARD_MPROTECT : 0, overflow_coro,
                          "deep-diver");
}

static void coro_stack_overflow_names_the_coroutine(void) {
    check_overflow_report(overflow_child, "deep-diver");
}

/* A kernel before 6.13 answers MADV_GUARD_INSTALL with EINVAL: the scheduler's guard pages
 * fall back to mprotect for good, and an overflow is caught and named all the same. Any other
 * error (ENOMEM: no memory for the page tables, for a moment) takes mprotect for that stack
 * only. The kernel here has the call, so a seccomp filter refuses it (th_refuse_syscalls). */
static int guard_refused_with;

static void overflow_without_guard_madvise_child(void) {
    const th_refusal r[] = {{SYS_madvise, 2, MADV_GUARD_INSTALL, guard_refused_with}};
    if (!th_refuse_syscalls(r, 1))
        _exit(TH_SKIP_CODE);
    TH_CHECK_EQ(conc_coro_catch_overflow(), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = "deep-diver";
    TH_CHECK_EQ(conc_coro_spawn(s, overflow_coro, NULL, &o, NULL), 0); /* its stack: guarded */
    TH_CHECK_EQ(s->guard_mprotect, guard_refused_with == EINVAL);
    int e = conc_sched_run(s);
    printf("run returned %d\n", e); /* not reached */
}

static void check_overflow_without_guard_madvise(int err) {
    guard_refused_with = err;
    char buf[4096];
    int status =
        th_run_child_capturing_stderr(overflow_without_guard_madvise_child, buf, sizeof buf);
    if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE)
        TH_SKIP("no seccomp filter here (an emulator, valgrind, or an unknown architecture)");
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d, stderr: %s",
                 status, buf);
    TH_CHECK_MSG(strstr(buf, "stack overflow in coroutine \"deep-diver\"") != NULL, "stderr: %s",
                 buf);
}

static void coro_stack_overflow_caught_on_a_kernel_without_guard_madvise(void) {
    check_overflow_without_guard_madvise(EINVAL);
}

static void coro_stack_overflow_caught_when_guard_madvise_fails_for_a_moment(void) {
    check_overflow_without_guard_madvise(ENOMEM);
}

/* A program's own SIGSEGV handler, installed first, handles a fault of its own and returns
 * (a write barrier's protected page): the overflow reporter must still be there for the
 * overflow that comes later. */
static char *own_trap;
static volatile sig_atomic_t own_faults;

static void own_segv(int sig, siginfo_t *si, void *uctx) {
    (void)uctx;
    char *a = (char *)si->si_addr;
    long page = sysconf(_SC_PAGESIZE);
    if (a >= own_trap && a < own_trap + page) {
        own_faults++;
        (void)mprotect(own_trap, (size_t)page, PROT_READ | PROT_WRITE);
        return;
    }
    signal(sig, SIG_DFL); /* not its own: die of it */
}

static void overflow_after_own_fault_child(void) {
    long page = sysconf(_SC_PAGESIZE);
    own_trap = (char *)mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(own_trap != MAP_FAILED);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    TH_CHECK_EQ(sigaction(SIGSEGV, &sa, NULL), 0);
    TH_CHECK_EQ(conc_coro_catch_overflow(), 0);
#ifdef VALGRIND_DISABLE_ERROR_REPORTING
    VALGRIND_DISABLE_ERROR_REPORTING; /* memcheck: the fault is the point */
#endif
    *(volatile char *)own_trap = 1; /* the program's fault: its handler makes it writable */
#ifdef VALGRIND_ENABLE_ERROR_REPORTING
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    TH_CHECK_EQ(own_faults, 1);
    overflow_child();
}

static void coro_stack_overflow_reported_after_a_fault_another_handler_took(void) {
    char buf[4096];
    int status = th_run_child_capturing_stderr(overflow_after_own_fault_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d, stderr: %s",
                 status, buf);
    TH_CHECK_MSG(strstr(buf, "stack overflow in coroutine \"deep-diver\"") != NULL, "stderr: %s",
                 buf);
}

/* The debug canary: only on a scheduler without guard pages (a guard page already stops an
 * overflow, and the canary's write makes the stack's bottom page resident). There, a write
 * over it is caught at the coroutine's next switch, and the abort names the coroutine. */
static int smash_own_canary(void *arg) {
    (void)arg;
    conc_coro_t *self = conc_coro_self();
    uint64_t *bottom = (uint64_t *)(void *)self->stack_lo;
    if (*bottom != (CONC__CORO_CANARY ^ (uint64_t)(uintptr_t)self)) {
        fprintf(stderr, "no canary at the bottom of the stack\n");
        _exit(3);
    }
    *bottom ^= 1u; /* what an overflow past the bottom would have done */
    (void)conc_coro_yield();
    return 0;
}

static void smashed_canary_child(void) {
    run_named_until_abort(CONC_SCHED_NO_GUARD, smash_own_canary, "smasher");
}

static void coro_canary_without_guard_pages_names_the_coroutine(void) {
    if (!CONC_DEBUG)
        TH_SKIP("the canary is a debug-build check (CONC_DEBUG)");
    check_overflow_report(smashed_canary_child, "smasher");
}

/* A guarded stack's bottom page stays untouched (not resident) while its coroutine lives: a
 * debug build wrote the canary there on every scheduler, 4 KiB more per idle coroutine. A
 * page in the middle of the stack, untouched too, is the control: resident, it says pages
 * come in bigger units here (transparent huge pages), and the case cannot tell. */
typedef struct bottom_pages {
    conc_coro_t *child;
    int bottom, middle; /* mincore's answers: 1 resident, 0 not, -1 failed */
} bottom_pages;

static int park_once(void *arg) {
    (void)arg;
    return conc_coro_yield();
}

static int resident(const char *page_start, size_t page) {
    unsigned char v = 0;
    if (mincore((void *)(uintptr_t)page_start, page, &v) != 0)
        return -1;
    return v & 1u;
}

static int look_at_bottom_pages(void *arg) {
    bottom_pages *b = (bottom_pages *)arg;
    TH_CHECK_EQ(conc_coro_spawn(NULL, park_once, NULL, NULL, &b->child), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the child has run, and is parked in its yield */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const char *lo = b->child->stack_lo;
    TH_CHECK_EQ((uintptr_t)lo % page, 0u);
    b->bottom = resident(lo, page);
    b->middle = resident(lo + (b->child->stack_size / 2 / page) * page, page);
    TH_CHECK_EQ(conc_coro_join(b->child, CONC_FOREVER, NULL), 0);
    conc_coro_release(b->child);
    return 0;
}

static void coro_guarded_stack_leaves_its_bottom_page_untouched(void) {
    bottom_pages b = {NULL, -1, -1};
    TH_CHECK_EQ(run_main(look_at_bottom_pages, &b), 0);
    TH_CHECK_MSG(b.bottom >= 0 && b.middle >= 0, "mincore failed: errno %d", errno);
    if (b.middle)
        TH_SKIP("an untouched page of the stack is resident: pages come in bigger units here");
    TH_CHECK_MSG(b.bottom == 0, "the bottom page of a guarded stack is resident");
}

/* tests/tu2_coro.c, a release (NDEBUG) file: a scheduler created there, a spawn there. Weak:
 * the coroutine variants' builds (build/coro-*) are this file alone. */
int tu2_coro_debug(void) __attribute__((weak));
int tu2_coro_sched_create_unguarded(conc_sched_t **s) __attribute__((weak));
int tu2_coro_spawn(conc_sched_t *s, conc_coro_fn fn, void *arg, const char *name)
    __attribute__((weak));

static int count_three_laps(void *arg) {
    int *laps = (int *)arg;
    for (int i = 0; i < 3; i++) {
        ++*laps;
        if (conc_coro_yield() != 0)
            return -1;
    }
    return 0;
}

/* Whether a scheduler's stacks carry the canary is the choice of the file that created it:
 * every file's spawn writes it then, and only a debug file's switch checks it. A debug
 * scheduler's coroutine spawned by a release file, and a release scheduler's coroutines
 * spawned in either file, switch in this debug file without a false "stack overflow". */
static void canary_across_files_child(void) {
    int laps = 0;
    conc_sched_t *s;
    conc_sched_opts_t so;
    memset(&so, 0, sizeof so);
    so.flags = CONC_SCHED_NO_GUARD;
    TH_CHECK_EQ(conc_sched_create(&s, &so), 0); /* here: a debug scheduler */
    TH_CHECK_EQ(tu2_coro_spawn(s, count_three_laps, &laps, "spawned-in-release"), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
    TH_CHECK_EQ(laps, 3);
    TH_CHECK_EQ(tu2_coro_sched_create_unguarded(&s), 0); /* there: a release scheduler */
    TH_CHECK_EQ(tu2_coro_spawn(s, count_three_laps, &laps, "release-in-release"), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, count_three_laps, &laps, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
    TH_CHECK_EQ(laps, 9);
}

static void coro_canary_is_the_creating_files_choice(void) {
    if (!tu2_coro_spawn)
        TH_SKIP("built without tests/tu2_coro.c (a coroutine variant's build)");
    if (!CONC_DEBUG || tu2_coro_debug() != 0)
        TH_SKIP("needs this file built with CONC_DEBUG and tests/tu2_coro.c without");
    char buf[4096];
    int status = th_run_child_capturing_stderr(canary_across_files_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 buf);
}

/* Two threads that call conc_coro_catch_overflow at once (each thread calls it for its own
 * alternate stack) install the reporter once: the handler it keeps to pass foreign faults on
 * to is the one that was there before (here SIG_DFL), never the reporter itself. Both used
 * to see it not installed and both call sigaction, the second saving the reporter as the
 * one before it: a fault not its own then went round the reporter until the alternate stack
 * ran out, and the program's own handler was never called. Each round resets what the
 * reporter keeps, in a child of its own; the threads meet at a spinning gate to overlap.
 * valgrind runs one thread at a time, so the race hardly happens there: a few rounds check
 * what the case can still see (thread creation is slow under it: 1000 rounds took 23 s). */
enum { OVERFLOW_INSTALL_ROUNDS = 1000, OVERFLOW_INSTALL_ROUNDS_VALGRIND = 50 };
enum { INSTALL_RACER_PAUSES_PER_YIELD = 1024 }; /* tens of microseconds of pauses */

typedef struct install_race {
    uint32_t ready, go;
    char altstack[2][CONC__CORO_ALTSTACK_SIZE];
} install_race;

static uint32_t install_race_next;

static void *install_racer(void *arg) {
    install_race *r = (install_race *)arg;
    uint32_t k = __atomic_fetch_add(&install_race_next, 1u, __ATOMIC_RELAXED) & 1u;
    stack_t st; /* an alternate stack of ours: catch_overflow allocates none */
    memset(&st, 0, sizeof st);
    st.ss_sp = r->altstack[k];
    st.ss_size = sizeof r->altstack[k];
    TH_CHECK_EQ(sigaltstack(&st, NULL), 0);
    __atomic_add_fetch(&r->ready, 1u, __ATOMIC_ACQ_REL);
    /* Pauses, so that two racers on two CPUs start within nanoseconds of each other; now and
     * then a yield, so that a racer sharing its CPU with the other (or with the thread that
     * says go) does not hold it for a whole time slice: 4 ms a round, before. */
    for (unsigned pauses = 1; !__atomic_load_n(&r->go, __ATOMIC_ACQUIRE); pauses++) {
        if (pauses % INSTALL_RACER_PAUSES_PER_YIELD == 0)
            sched_yield();
        conc_cpu_relax();
    }
    TH_CHECK_EQ(conc_coro_catch_overflow(), 0);
    st.ss_flags = SS_DISABLE;
    TH_CHECK_EQ(sigaltstack(&st, NULL), 0);
    return NULL;
}

static void overflow_install_race_child(void) {
    install_race *r = (install_race *)calloc(1, sizeof *r);
    TH_CHECK(r != NULL);
    int self = 0;
    int rounds = UNDER_VALGRIND() ? OVERFLOW_INSTALL_ROUNDS_VALGRIND : OVERFLOW_INSTALL_ROUNDS;
    for (int round = 0; round < rounds; round++) {
        signal(SIGSEGV, SIG_DFL);
        conc_store(&conc__coro_overflow_installed, 0, CONC_RELEASE);
        __atomic_store_n(&r->ready, 0u, __ATOMIC_RELAXED);
        __atomic_store_n(&r->go, 0u, __ATOMIC_RELAXED);
        pthread_t t[2];
        for (int k = 0; k < 2; k++)
            TH_CHECK_EQ(pthread_create(&t[k], NULL, install_racer, r), 0);
        while (__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE) < 2)
            sched_yield(); /* the CPU to the racer not yet there, not to our spinning */
        __atomic_store_n(&r->go, 1u, __ATOMIC_RELEASE);
        for (int k = 0; k < 2; k++)
            TH_CHECK_EQ(pthread_join(t[k], NULL), 0);
        const struct sigaction *prev = &conc__coro_overflow_prev;
        if ((prev->sa_flags & SA_SIGINFO) || prev->sa_handler != SIG_DFL)
            self++;
    }
    free(r);
    if (self)
        fprintf(stderr, "%d of %d rounds kept a handler other than SIG_DFL as the one before", self,
                rounds);
    _exit(self ? 1 : 0);
}

static void coro_overflow_reporter_installed_once_by_racing_threads(void) {
    char buf[256];
    int status = th_run_child_capturing_stderr(overflow_install_race_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
}

/* conc_coro_catch_overflow gives a thread that has none an alternate stack of 64 KiB, kept for
 * the thread's life: a pool whose threads each call it and end lost 64 KiB with every thread.
 * mallinfo2 sums every arena's bytes in use: glibc's malloc only (a sanitizer's leaves it
 * unset, and MemorySanitizer reports the read), and a thread that keeps 64 KiB first shows
 * that it counts (under valgrind's malloc it does not, and the case is skipped). */
enum { ALTSTACK_THREADS = 16 };

static size_t malloc_bytes_in_use(void) {
#if defined(__GLIBC__)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    /* musl has no mallinfo2: the case below skips, as its check of the count does */
    return 0;
#endif
}

static void *altstack_keeper(void *arg) {
    *(void **)arg = malloc(CONC__CORO_ALTSTACK_SIZE);
    return NULL;
}

static void *altstack_user(void *arg) {
    CONC_UNUSED(arg);
    TH_CHECK_EQ(conc_coro_catch_overflow(), 0);
    stack_t cur;
    TH_CHECK_EQ(sigaltstack(NULL, &cur), 0);
    TH_CHECK(!(cur.ss_flags & SS_DISABLE)); /* it has one now */
    return NULL;
}

static void coro_catch_overflow_frees_its_alternate_stack_with_its_thread(void) {
    if (TH_SANITIZED)
        TH_SKIP("mallinfo2 counts glibc's malloc only");
    void *kept = NULL;
    pthread_t t;
    size_t before = malloc_bytes_in_use();
    TH_CHECK_EQ(pthread_create(&t, NULL, altstack_keeper, &kept), 0);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK(kept != NULL);
    bool counts = malloc_bytes_in_use() >= before + CONC__CORO_ALTSTACK_SIZE;
    free(kept);
    if (!counts)
        TH_SKIP("mallinfo2 does not count this malloc's blocks");
    before = malloc_bytes_in_use();
    for (int i = 0; i < ALTSTACK_THREADS; i++) {
        TH_CHECK_EQ(pthread_create(&t, NULL, altstack_user, NULL), 0);
        TH_CHECK_EQ(pthread_join(t, NULL), 0);
    }
    size_t after = malloc_bytes_in_use();
    TH_CHECK_MSG(after < before + ALTSTACK_THREADS * CONC__CORO_ALTSTACK_SIZE / 2,
                 "%zu bytes more in use after %d threads", after - before, ALTSTACK_THREADS);
}

/* mprotect guards (kernels before 6.13): hitting vm.max_map_count is ENOMEM with a message
 * that names the limit, once per scheduler (it came with every failed spawn). The child first
 * uses up all but `leave` mappings (isolated PROT_NONE pages), so a few hundred coroutines
 * reach the limit. */
static long read_long_file(const char *path) {
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static long count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int ch;
    TH_CHECK(f);
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static void consume_map_count(long leave) {
    long max = read_long_file("/proc/sys/vm/max_map_count");
    TH_CHECK(max > 0);
    long want = max - count_mappings() - leave;
    if (want <= 0)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (size_t)want + 4;
    char *m = (char *)mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TH_CHECK(m != MAP_FAILED);
    /* Counted once, then by arithmetic: /proc/self/maps at 65,000 lines takes milliseconds
     * to read, and reading it every few hundred pages was seconds of the case. */
    long have = count_mappings();
    for (size_t k = 1; k + 1 < pages && have < max - leave; k += 2, have += 2)
        if (mprotect(m + k * page, page, PROT_NONE) != 0) /* an isolated page: +2 mappings */
            return;
}

static void map_count_child(void) {
    consume_map_count(1000);
    conc_sched_t *s;
    conc_sched_opts_t so;
    memset(&so, 0, sizeof so);
    so.flags = CONC_SCHED_GUARD_MPROTECT;
    TH_CHECK_EQ(conc_sched_create(&s, &so), 0);
    long spawned = 0;
    int e = 0;
    while ((e = conc_coro_spawn(s, return_arg, NULL, NULL, NULL)) == 0)
        spawned++;
    printf("spawned %ld, then %d\n", spawned, e);
    if (e != ENOMEM)
        _exit(2);
    for (int i = 0; i < 3; i++) /* each fails the same way: the line was printed once */
        if (conc_coro_spawn(s, return_arg, NULL, NULL, NULL) != ENOMEM)
            _exit(4);
    _exit(spawned > 10 ? 0 : 3); /* the scheduler is left to the exit: no cleanup needed */
}

static void coro_mprotect_guards_name_vm_max_map_count(void) {
    if (UNDER_VALGRIND())
        TH_SKIP("valgrind keeps its own table of mappings and stops far below vm.max_map_count");
#if defined(CONC_TSAN)
    TH_SKIP("TSan maps memory for every fiber: at the limit its runtime dies before the guard "
            "(the plain, C++, fortified and ASan builds run this case)");
#endif
    char buf[4096];
    int status = th_run_child_capturing_stderr(map_count_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 buf);
    TH_CHECK_MSG(strstr(buf, "vm.max_map_count") != NULL, "stderr: %s", buf);
    const char *line = strstr(buf, "conc_coro_spawn: ENOMEM");
    TH_CHECK_MSG(line && !strstr(line + 1, "conc_coro_spawn: ENOMEM"), "not one line: %s", buf);
}

/* ---- deadlock detection ------------------------------------------------------------------- */

typedef struct cycle_ctx {
    conc_coro_t *a, *b;
    int ready;
} cycle_ctx;

static int join_b(void *p) {
    cycle_ctx *c = (cycle_ctx *)p;
    while (!c->ready)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    return conc_coro_join(c->b, CONC_FOREVER, NULL);
}

static int join_a(void *p) {
    cycle_ctx *c = (cycle_ctx *)p;
    while (!c->ready)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    return conc_coro_join(c->a, CONC_FOREVER, NULL);
}

static int join_self(void *p) {
    (void)p;
    return conc_coro_join(conc_coro_self(), CONC_FOREVER, NULL);
}

static void deadlock_child(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    cycle_ctx c;
    memset(&c, 0, sizeof c);
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = "alice";
    TH_CHECK_EQ(conc_coro_spawn(s, join_b, &c, &o, &c.a), 0);
    o.name = "bob";
    TH_CHECK_EQ(conc_coro_spawn(s, join_a, &c, &o, &c.b), 0);
    o.name = "narcissus";
    conc_coro_t *n;
    TH_CHECK_EQ(conc_coro_spawn(s, join_self, &c, &o, &n), 0);
    c.ready = 1;
    TH_CHECK_EQ(conc_sched_run(s), EDEADLK);
    int st = -1; /* narcissus's join of itself failed at once, and it finished */
    TH_CHECK_EQ(conc_coro_join(n, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, EDEADLK);
    conc_coro_release(n);
    conc_sched_dump(s, stdout);
    /* destroy cancels them: every join returns ECANCELED */
    conc_sched_destroy(s);
    _exit(0);
}

static void coro_deadlock_report_join_cycle_and_self_join(void) {
    char buf[8192];
    int status = th_run_child_capturing_stderr(deadlock_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 buf);
    TH_CHECK_MSG(strstr(buf, "EDEADLK") != NULL, "stderr: %s", buf);
    TH_CHECK_MSG(strstr(buf, "coro \"alice\" (#1) waiting on join of coro \"bob\" (#2); "
                             "spawned at tests/test_coro.c:") != NULL,
                 "stderr: %s", buf);
    TH_CHECK_MSG(strstr(buf, "coro \"bob\" (#2) waiting on join of coro \"alice\" (#1)") != NULL,
                 "stderr: %s", buf);
    TH_CHECK_MSG(strstr(buf, "narcissus") == NULL, "stderr: %s", buf); /* not stuck */
    int lines = 0;
    for (const char *p = buf; (p = strstr(p, "conc:   coro ")) != NULL; p++)
        lines++;
    TH_CHECK_EQ(lines, 2); /* one line per stuck coroutine */
}

typedef struct self_wait_ctx {
    conc_group_t *g;
    int self_join, group_wait; /* what each returned */
    int returned;              /* how many of the two have */
} self_wait_ctx;

static int join_itself(void *p) {
    self_wait_ctx *x = (self_wait_ctx *)p;
    x->self_join = conc_coro_join(conc_coro_self(), CONC_FOREVER, NULL);
    x->returned++;
    return 0;
}

static int wait_for_own_group(void *p) {
    self_wait_ctx *x = (self_wait_ctx *)p;
    x->group_wait = conc_group_wait(x->g, CONC_FOREVER, NULL);
    x->returned++;
    return 0;
}

static int self_wait_main(void *p) {
    self_wait_ctx *x = (self_wait_ctx *)p;
    TH_CHECK_EQ(conc_group_create(NULL, &x->g), 0);
    TH_CHECK_EQ(conc_group_spawn(x->g, wait_for_own_group, x, NULL), 0);
    conc_coro_t *c;
    TH_CHECK_EQ(conc_coro_spawn(NULL, join_itself, x, NULL, &c), 0);
    /* Neither parks: a few turns of this coroutine see both return (they parked for good,
     * and the run ended EDEADLK once this one had finished, or never with a timer alive). */
    for (int i = 0; i < 8 && x->returned < 2; i++)
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(x->returned, 2);
    TH_CHECK_EQ(x->self_join, EDEADLK);
    TH_CHECK_EQ(x->group_wait, EDEADLK);
    int st = -1;
    TH_CHECK_EQ(conc_group_wait(x->g, CONC_FOREVER, &st), 0); /* not a child: waits as ever */
    TH_CHECK_EQ(st, 0);
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    TH_CHECK_EQ(st, 0);
    conc_coro_release(c);
    conc_group_destroy(x->g);
    return 0;
}

/* A coroutine that joins itself, or waits for the group it is a child of, would wait for
 * itself: EDEADLK at once (asyncio: "Task cannot await on itself"), where it used to park until
 * the whole scheduler went idle, and for good while anything else kept it busy. */
static void coro_join_of_itself_and_wait_for_own_group_are_edeadlk_at_once(void) {
    self_wait_ctx x;
    memset(&x, 0, sizeof x);
    int status = -1;
    TH_CHECK_EQ(conc_run(self_wait_main, &x, &status), 0);
    TH_CHECK_EQ(status, 0);
}

typedef struct hold_ctx {
    conc_sched_t *s;
    int ran;
    int release; /* atomic: the main thread lets the helper go */
} hold_ctx;

static int mark_ran(void *p) {
    hold_ctx *h = (hold_ctx *)p;
    h->ran++;
    return 0;
}

static void *hold_helper(void *p) {
    hold_ctx *h = (hold_ctx *)p;
    while (!__atomic_load_n(&h->release, __ATOMIC_ACQUIRE))
        th_sleep_ns(100 * 1000);
    TH_CHECK_EQ(conc_sched_spawn(h->s, mark_ran, h), 0);
    conc_sched_unhold(h->s);
    return NULL;
}

static int release_helper(void *p) {
    hold_ctx *h = (hold_ctx *)p;
    __atomic_store_n(&h->release, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Another thread's unhold may come at any time while the scheduler exists, destroy's run of
 * the cancelled coroutines included. Destroy wrote the hold count over (with the pins it
 * waits for), so that unhold took the count below zero: "more unholds than holds", an abort
 * (and with a pin outstanding it would have taken the pin's place). */
static conc_sched_t *unhold_sched;
static int unhold_phase; /* release/acquire: 1 destroy has begun (cleanup runs), 2 unheld */

static int cleanup_waits_for_an_unhold(void *arg) {
    (void)arg;
    int r = conc_coro_sleep_until(CONC_FOREVER); /* destroy cancels it */
    __atomic_store_n(&unhold_phase, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&unhold_phase, __ATOMIC_ACQUIRE) != 2)
        th_sleep_ns(100 * 1000); /* cleanup that outlasts the other thread's unhold */
    return r == ECANCELED ? 0 : 1;
}

static void *unhold_during_destroy(void *arg) {
    (void)arg;
    while (__atomic_load_n(&unhold_phase, __ATOMIC_ACQUIRE) != 1)
        th_sleep_ns(100 * 1000);
    conc_sched_unhold(unhold_sched);
    __atomic_store_n(&unhold_phase, 2, __ATOMIC_RELEASE);
    return NULL;
}

static void coro_unhold_while_destroy_runs_is_harmless(void) {
    TH_CHECK_EQ(conc_sched_create(&unhold_sched, NULL), 0);
    conc_coro_t *c;
    TH_CHECK_EQ(conc_coro_spawn(unhold_sched, cleanup_waits_for_an_unhold, NULL, NULL, &c), 0);
    conc_coro_release(c);
    conc_sched_hold(unhold_sched); /* the other thread's, taken before it starts */
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, unhold_during_destroy, NULL), 0);
    conc_sched_destroy(unhold_sched);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_EQ(__atomic_load_n(&unhold_phase, __ATOMIC_ACQUIRE), 2);
}

static void coro_hold_keeps_run_waiting_for_another_thread(void) {
    hold_ctx h;
    memset(&h, 0, sizeof h);
    TH_CHECK_EQ(conc_sched_create(&h.s, NULL), 0);
    conc_sched_hold(h.s); /* before the helper exists: run must wait for it */
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, hold_helper, &h), 0);
    TH_CHECK_EQ(conc_coro_spawn(h.s, release_helper, &h, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(h.s), 0); /* without the hold: returns before the spawn */
    TH_CHECK_EQ(h.ran, 1);
    pthread_join(t, NULL);
    conc_sched_destroy(h.s);
}

static int sleeps_forever_named(void *p) {
    (void)p;
    return conc_coro_sleep_until(CONC_FOREVER);
}

static void dump_child(void) {
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = "sleepy";
    TH_CHECK_EQ(conc_coro_spawn(s, sleeps_forever_named, NULL, &o, NULL), 0);
    o.name = "queued";
    TH_CHECK_EQ(conc_coro_spawn(s, return_arg, NULL, &o, NULL), 0);
    conc_sched_dump(s, stderr); /* before run: both runnable */
    TH_CHECK_EQ(conc_sched_run(s), EDEADLK);
    conc_sched_dump(s, stderr);
    conc_sched_destroy(s);
    _exit(0);
}

static void coro_dump_lists_every_coroutine(void) {
    char buf[8192];
    int status = th_run_child_capturing_stderr(dump_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
    TH_CHECK_MSG(strstr(buf, "coro \"sleepy\" (#1) runnable; spawned at") != NULL, "%s", buf);
    TH_CHECK_MSG(strstr(buf, "coro \"queued\" (#2) runnable") != NULL, "%s", buf);
    TH_CHECK_MSG(strstr(buf, "coro \"sleepy\" (#1) waiting on sleep forever") != NULL, "%s", buf);
}

/* ---- many schedulers on many threads ------------------------------------------------------ */

#define XT_MAX 16
typedef struct xt_ctx {
    conc_sched_t *s[XT_MAX];
    int n;
    long per_thread;
    long received[XT_MAX]; /* each written only by its own scheduler's coroutines */
    int ready;             /* atomic: schedulers created */
} xt_ctx;

typedef struct xt_msg {
    xt_ctx *x;
    int to;
} xt_msg;

static int xt_receive(void *p) {
    xt_msg *m = (xt_msg *)p;
    m->x->received[m->to]++;
    int to = m->to;
    free(m);
    int e = conc_coro_yield();
    return e == 0 ? to - to : e;
}

typedef struct xt_sender {
    xt_ctx *x;
    int me;
} xt_sender;

static int xt_send_all(void *p) {
    xt_sender *snd = (xt_sender *)p;
    xt_ctx *x = snd->x;
    th_rng rng = th_rng_make((uint64_t)snd->me + 100);
    for (long i = 0; i < x->per_thread; i++) {
        xt_msg *m = (xt_msg *)malloc(sizeof *m);
        TH_CHECK(m);
        m->x = x;
        m->to = (int)th_rand_below(&rng, (uint32_t)x->n);
        TH_CHECK_EQ(conc_sched_spawn(x->s[m->to], xt_receive, m), 0);
        if ((i & 15) == 0)
            TH_CHECK_EQ(conc_coro_yield(), 0);
    }
    /* done sending to everyone: let go of every scheduler's hold */
    for (int k = 0; k < x->n; k++)
        conc_sched_unhold(x->s[k]);
    return 0;
}

static void xt_thread(int index, void *arg) {
    xt_ctx *x = (xt_ctx *)arg;
    TH_CHECK_EQ(conc_sched_create(&x->s[index], NULL), 0);
    for (int k = 0; k < x->n; k++) /* one hold per sender, each dropped when it is done */
        conc_sched_hold(x->s[index]);
    __atomic_fetch_add(&x->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&x->ready, __ATOMIC_ACQUIRE) < x->n)
        sched_yield();
    xt_sender snd = {x, index};
    TH_CHECK_EQ(conc_coro_spawn(x->s[index], xt_send_all, &snd, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(x->s[index]), 0);
    /* Every sender has let go of this scheduler: nothing can reach it any more. */
    conc_sched_destroy(x->s[index]);
}

static void coro_stress_many_schedulers_spawn_across_threads(void) {
    xt_ctx *x = (xt_ctx *)calloc(1, sizeof *x);
    TH_CHECK(x);
    x->n = th_threads(6);
    if (x->n > XT_MAX)
        x->n = XT_MAX;
    x->per_thread = th_iters(20000);
#if defined(CONC_TSAN)
    /* Each message becomes a coroutine, and each live coroutine is a TSan fiber: TSan allows
     * 8128 threads and fibers in all. */
    if (x->per_thread > 600)
        x->per_thread = 600;
#if !defined(__clang__)
    /* gcc 12's TSan runtime takes about 2.7 ms a message here (10 s a run), clang's 0.4 */
    if (x->per_thread > 200)
        x->per_thread = 200;
#endif
#endif
    th_run_threads(x->n, xt_thread, x);
    long total = 0;
    for (int i = 0; i < x->n; i++)
        total += x->received[i];
    TH_CHECK_EQ(total, x->n * x->per_thread);
    free(x);
}

/* fork inside a coroutine: the child runs on that coroutine's stack but in no scheduler (its
 * parent's is not its own to run: coro.h CAVEATS), so it builds and runs new ones. conc_run
 * and conc_sched_run there used to say EPERM ("inside a coroutine"), and conc_coro_self()
 * named the parent's coroutine, whose blocking calls switched into the copy of its loop. */
static int forked_inner(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(conc_deadline_in(CONC_MS)) == 0 ? 42 : 1;
}

static int forked_sleeper(void *arg) {
    (void)arg;
    return conc_coro_sleep_until(conc_deadline_in(20 * CONC_MS));
}

/* In the child: 0 if everything held, else the number of the first check that failed. */
static int forked_child_checks(void) {
    if (conc_coro_self() != NULL)
        return 10;
    if (conc_coro_yield() != EPERM)
        return 11;
    int st = -1;
    if (conc_run(forked_inner, NULL, &st) != 0 || st != 42)
        return 12;
    conc_sched_t *s;
    if (conc_sched_create(&s, NULL) != 0)
        return 13;
    conc_coro_t *c;
    if (conc_coro_spawn(s, forked_inner, NULL, NULL, &c) != 0)
        return 14;
    if (conc_sched_run(s) != 0 || conc_coro_join(c, CONC_FOREVER, &st) != 0 || st != 42)
        return 15;
    conc_coro_release(c);
    conc_sched_destroy(s);
    return 0;
}

static int forking_coro(void *arg) {
    (void)arg;
    TH_CHECK_EQ(conc_coro_spawn(NULL, forked_sleeper, NULL, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the sleeper is parked on a timer */
    fflush(NULL);
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0)
        _exit(forked_child_checks());
    int ws;
    TH_CHECK_EQ(waitpid(pid, &ws, 0), pid);
    TH_CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child status %#x", ws);
    TH_CHECK(conc_coro_self() != NULL); /* the parent's side is untouched */
    return 0;
}

static void coro_fork_inside_a_coroutine_child_runs_new_schedulers(void) {
    int st = -1;
    TH_CHECK_EQ(conc_run(forking_coro, NULL, &st), 0);
    TH_CHECK_EQ(st, 0);
}

/* The signal mask is the thread's, whatever the switch: a mask a coroutine sets (to read a
 * signalfd, say) holds for the coroutine that runs after it and for the loop, and one the
 * thread set after a slot was made reaches that slot's coroutine. With swapcontext each
 * context used to carry the mask it last left with. */
static bool sig_blocked(int sig) {
    sigset_t m;
    sigemptyset(&m);
    TH_CHECK_EQ(pthread_sigmask(SIG_BLOCK, NULL, &m), 0);
    return sigismember(&m, sig) == 1;
}

static int mask_setter(void *arg) {
    (void)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    TH_CHECK_EQ(pthread_sigmask(SIG_BLOCK, &m, NULL), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK(sig_blocked(SIGUSR1)); /* still set when it comes back */
    return 0;
}

static int mask_seer(void *arg) {
    int *seen = (int *)arg;
    *seen = sig_blocked(SIGUSR1) + 2 * sig_blocked(SIGUSR2);
    return 0;
}

static void coro_signal_mask_is_the_threads_across_switches(void) {
    sigset_t old, m;
    TH_CHECK_EQ(pthread_sigmask(SIG_BLOCK, NULL, &old), 0);
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    int early = -1, late = -1;
    /* Its slot (and that slot's first context) is made before the thread blocks SIGUSR2. */
    TH_CHECK_EQ(conc_coro_spawn(s, mask_seer, &early, NULL, NULL), 0);
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    TH_CHECK_EQ(pthread_sigmask(SIG_BLOCK, &m, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, mask_setter, NULL, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, mask_seer, &late, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
    TH_CHECK_EQ(early, 2); /* SIGUSR2 only: the setter has not run yet */
    TH_CHECK_EQ(late, 3);  /* both: the setter's block reached the next coroutine */
    TH_CHECK(sig_blocked(SIGUSR1) && sig_blocked(SIGUSR2)); /* and the thread after the run */
    TH_CHECK_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/* A coroutine's stack ends where its first frame does: an unwinder walking up from a coroutine
 * (backtrace(), gdb, the forced unwind of pthread_exit or a cancellation) finds a zero return
 * address in the trampoline's frame and stops. On aarch64 that frame once named the
 * trampoline's own entry as its caller: backtrace() showed a third frame that is not there,
 * and the unwinder then read on past the stack's top (pthread_exit in a coroutine hung in
 * it, in coro_thread_ended_inside_run_leaves_a_destroyable_scheduler). */
#if defined(HAVE_BACKTRACE)
static int backtrace_depth(void *arg) {
    void *frames[256];
    *(int *)arg = backtrace(frames, 256);
    return 0;
}
#endif

static void coro_backtrace_ends_at_the_coroutines_first_frame(void) {
#if !defined(HAVE_BACKTRACE)
    TH_SKIP("no <execinfo.h> (musl): no backtrace() to walk a coroutine's frames with");
#else
    int depth = 0;
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, backtrace_depth, &depth, NULL, NULL), 0);
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
    /* The body's frame and the trampoline's; elsewhere than the asm switch, makecontext's
     * start and the setjmp backend's boot entry too; and a sanitizer's backtrace interceptor
     * is a frame of its own. On 32-bit ARM (EHABI) C built without -funwind-tables has no
     * unwind tables: backtrace may find none. */
#if defined(CONC__CORO_BACKEND_ASM)
    int most = 2 + TH_SANITIZED;
#else
    int most = 4 + TH_SANITIZED;
#endif
#if defined(__arm__)
    int least = 0;
#else
    int least = 2;
#endif
    TH_CHECK_MSG(depth >= least && depth <= most, "backtrace in a coroutine: %d frames", depth);
#endif
}

/* errno's address is per thread, and the compiler looks it up once per function (glibc and
 * musl declare __errno_location const). A slot's context parks where its last coroutine
 * finished, inside the switch that puts that coroutine's errno back; when a destroy on
 * thread B runs a late spawn in a slot that last ran on thread A, the context resumes on B.
 * It used to put the errno back through A's address: into A's errno while A went on (here),
 * into A's freed stack once A had ended (musl unmaps it:
 * coro_creator_feeds_a_scheduler_another_thread_runs died of SIGSEGV there). */
typedef struct errno_home {
    conc_sched_t *s;
    int run, a_errno_after, late_ran;
    conc_event_t ran, destroyed;
} errno_home;

static int finish_with_errno(void *arg) {
    (void)arg;
    errno = 777; /* the coroutine's own, put back when its slot next resumes */
    return 0;
}

static int late_on_b(void *arg) {
    ((errno_home *)arg)->late_ran = 1;
    return 0;
}

static void *errno_home_runner(void *arg) {
    errno_home *h = (errno_home *)arg;
    h->run = conc_sched_run(h->s);
    errno = 5; /* A's own, from now on */
    conc_event_set(&h->ran);
    conc_event_wait(&h->destroyed);
    h->a_errno_after = errno;
    return NULL;
}

static void coro_slot_resumed_on_another_thread_leaves_the_first_threads_errno(void) {
    errno_home h;
    memset(&h, 0, sizeof h);
    TH_CHECK_EQ(conc_sched_create(&h.s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(h.s, finish_with_errno, NULL, NULL, NULL), 0);
    pthread_t a;
    TH_CHECK_EQ(pthread_create(&a, NULL, errno_home_runner, &h), 0);
    conc_event_wait(&h.ran);
    TH_CHECK_EQ(h.run, 0);
    TH_CHECK_EQ(conc_sched_spawn(h.s, late_on_b, &h), 0); /* after the run: the inbox */
    errno = 9;
    conc_sched_destroy(h.s); /* on B, this thread: the late spawn runs here, in A's slot */
    TH_CHECK_EQ(errno, 9);
    TH_CHECK_EQ(h.late_ran, 1);
    conc_event_set(&h.destroyed);
    TH_CHECK_EQ(pthread_join(a, NULL), 0);
    TH_CHECK_EQ(h.a_errno_after, 5);
}

/* A thread that ends inside conc_sched_run, by pthread_cancel while the loop sleeps in
 * epoll_wait or by pthread_exit in a coroutine, orphans its scheduler: run says EPERM, and
 * destroy from another thread frees it (its coroutines never run again). destroy used to
 * abort, "called while the scheduler runs", as the run never returned. Under ASan the thread's
 * teardown after a pthread_exit in a coroutine met the poison of the frames its unwind left
 * on the thread's own stack (a stack-buffer-underflow in ASan's sigaltstack). In a child
 * process. */
typedef struct orphan_ctx {
    conc_sched_t *s;
    int pipe[2];
    int parked;
    int exits; /* 0: cancelled in epoll_wait; 1: pthread_exit beside a parked reader; 2: alone */
} orphan_ctx;

static int orphan_reader(void *arg) {
    orphan_ctx *c = (orphan_ctx *)arg;
    char b;
    size_t got;
    __atomic_store_n(&c->parked, 1, __ATOMIC_RELEASE); /* the next switch parks it */
    return conc_coro_read(c->pipe[0], &b, 1, CONC_FOREVER, &got);
}

static int orphan_exiter(void *arg) {
    (void)arg;
    pthread_exit((void *)(intptr_t)42);
    return 0;
}

static void *orphan_thread(void *arg) {
    orphan_ctx *c = (orphan_ctx *)arg;
    if (conc_sched_create(&c->s, NULL) != 0 ||
        (c->exits != 2 && conc_coro_spawn(c->s, orphan_reader, c, NULL, NULL) != 0) ||
        (c->exits && conc_coro_spawn(c->s, orphan_exiter, c, NULL, NULL) != 0))
        return (void *)(intptr_t)1;
    int e = conc_sched_run(c->s); /* never returns: the thread ends inside */
    return (void *)(intptr_t)(100 + e);
}

static int orphan_round(int exits) {
    orphan_ctx c;
    memset(&c, 0, sizeof c);
    c.exits = exits;
    if (pipe(c.pipe) != 0)
        return 10;
    pthread_t t;
    if (pthread_create(&t, NULL, orphan_thread, &c) != 0)
        return 11;
    if (!exits) {
        while (!__atomic_load_n(&c.parked, __ATOMIC_ACQUIRE))
            sched_yield();
        pthread_cancel(t); /* acts at the loop's epoll_wait, the next cancellation point */
    }
    void *r = NULL;
    pthread_join(t, &r);
    if (r != (exits ? (void *)(intptr_t)42 : PTHREAD_CANCELED))
        return 12;
    if (conc_sched_run(c.s) != EPERM)
        return 13;
    conc_sched_destroy(c.s); /* from this thread: frees it, runs nothing */
    close(c.pipe[0]);
    close(c.pipe[1]);
    return 0;
}

static void orphan_child(void) {
    int e = orphan_round(0);
#if !defined(CONC_TSAN) /* TSan's pthread_exit checks it runs on the thread's own fiber */
    if (!e)
        e = orphan_round(1);
    if (!e)
        e = orphan_round(2); /* the exiter alone: ASan's teardown tripped on poison left */
#endif
    _exit(e);
}

static void coro_thread_ended_inside_run_leaves_a_destroyable_scheduler(void) {
    char buf[2048];
    int status = th_run_child_capturing_stderr(orphan_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 buf);
}

/* conc_coro_read/write/accept on fds in blocking mode (a plain pipe(), socketpair() or
 * socket()) park the coroutine, never the thread: the reader (and the acceptor) run first and
 * find nothing, the peer coroutine then writes (connects), and everything arrives. The
 * writer pushes four times a pipe's capacity, so it must park while the reader drains. */
typedef struct blocking_fds {
    int pipe[2], sv[2], listener;
    struct sockaddr_un addr;
    size_t piped, socketed;
    int accepted;
} blocking_fds;

enum { BLOCKING_BYTES = 4 * 65536 };

static int blocking_pipe_reader(void *arg) {
    blocking_fds *b = (blocking_fds *)arg;
    static char buf[8192];
    for (;;) {
        size_t got = 0;
        TH_CHECK_EQ(conc_coro_read(b->pipe[0], buf, sizeof buf, CONC_FOREVER, &got), 0);
        if (got == 0)
            return 0;
        b->piped += got;
    }
}

static int blocking_socket_reader(void *arg) {
    blocking_fds *b = (blocking_fds *)arg;
    static char buf[8192];
    while (b->socketed < BLOCKING_BYTES) {
        size_t got = 0;
        TH_CHECK_EQ(conc_coro_read(b->sv[1], buf, sizeof buf, CONC_FOREVER, &got), 0);
        TH_CHECK(got > 0);
        b->socketed += got;
    }
    return 0;
}

static int blocking_acceptor(void *arg) {
    blocking_fds *b = (blocking_fds *)arg;
    int fd = -1;
    TH_CHECK_EQ(conc_coro_accept(b->listener, NULL, NULL, CONC_FOREVER, &fd), 0);
    b->accepted = fd >= 0;
    if (fd >= 0)
        close(fd);
    return 0;
}

static int blocking_fds_main(void *arg) {
    blocking_fds *b = (blocking_fds *)arg;
    static char data[BLOCKING_BYTES];
    conc_coro_t *r1, *r2, *a;
    TH_CHECK_EQ(conc_coro_spawn(NULL, blocking_pipe_reader, b, NULL, &r1), 0);
    TH_CHECK_EQ(conc_coro_spawn(NULL, blocking_socket_reader, b, NULL, &r2), 0);
    TH_CHECK_EQ(conc_coro_spawn(NULL, blocking_acceptor, b, NULL, &a), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* all three ran and parked: nothing to read or accept */
    TH_CHECK_EQ(b->piped + b->socketed, 0u);
    TH_CHECK_EQ(b->accepted, 0);
    size_t put = 0;
    TH_CHECK_EQ(conc_coro_write(b->pipe[1], data, sizeof data, CONC_FOREVER, &put), 0);
    TH_CHECK_EQ(put, sizeof data);
    close(b->pipe[1]);
    TH_CHECK_EQ(conc_coro_write(b->sv[0], data, sizeof data, CONC_FOREVER, &put), 0);
    TH_CHECK_EQ(put, sizeof data);
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    TH_CHECK(c >= 0);
    TH_CHECK_EQ(
        conc_coro_connect(c, (const struct sockaddr *)&b->addr, sizeof b->addr, CONC_FOREVER), 0);
    TH_CHECK_EQ(conc_coro_join(r1, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_join(r2, CONC_FOREVER, NULL), 0);
    TH_CHECK_EQ(conc_coro_join(a, CONC_FOREVER, NULL), 0);
    conc_coro_release(r1);
    conc_coro_release(r2);
    conc_coro_release(a);
    close(c);
    return 0;
}

static void coro_fd_calls_on_blocking_fds_park_the_coroutine(void) {
    blocking_fds b;
    memset(&b, 0, sizeof b);
    TH_CHECK_EQ(pipe(b.pipe), 0); /* blocking mode, as pipe() makes them */
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, b.sv), 0);
    b.listener = socket(AF_UNIX, SOCK_STREAM, 0);
    TH_CHECK(b.listener >= 0);
    b.addr.sun_family = AF_UNIX;
    snprintf(b.addr.sun_path, sizeof b.addr.sun_path, "/tmp/conc-coro-blocking-%d", (int)getpid());
    unlink(b.addr.sun_path);
    TH_CHECK_EQ(bind(b.listener, (const struct sockaddr *)&b.addr, sizeof b.addr), 0);
    TH_CHECK_EQ(listen(b.listener, 4), 0);
    int st = -1;
    TH_CHECK_EQ(conc_run(blocking_fds_main, &b, &st), 0);
    TH_CHECK_EQ(st, 0);
    TH_CHECK_EQ(b.piped, (size_t)BLOCKING_BYTES);
    TH_CHECK_EQ(b.socketed, (size_t)BLOCKING_BYTES);
    TH_CHECK_EQ(b.accepted, 1);
    unlink(b.addr.sun_path);
    close(b.pipe[0]);
    close(b.sv[0]);
    close(b.sv[1]);
    close(b.listener);
}

/* An fd in blocking mode that the call cannot use is never ready for it, so waiting for
 * readiness first (as for the fds above) waited for good: a read of a pipe's write end, a
 * write of its read end, an accept of a pipe, a connected socket or a datagram socket. Each
 * returns at once, with the error read(2), write(2) or accept(2) gives, even without a
 * deadline (the run would never end) and with nothing lost: the pipe's byte is still there. */
static int unusable_fds_main(void *arg) {
    const int *fds = (const int *)arg; /* pipe read end, pipe write end, socketpair end, UDP */
    char byte = 'x';
    size_t n = 99;
    TH_CHECK_EQ(conc_coro_read(fds[1], &byte, 1, CONC_FOREVER, &n), EBADF);
    TH_CHECK_EQ(n, 0u);
    TH_CHECK_EQ(conc_coro_write(fds[0], &byte, 1, CONC_FOREVER, &n), EBADF);
    TH_CHECK_EQ(n, 0u);
    int nfd = 123;
    TH_CHECK_EQ(conc_coro_accept(fds[0], NULL, NULL, CONC_FOREVER, &nfd), ENOTSOCK);
    TH_CHECK_EQ(nfd, -1);
    TH_CHECK_EQ(conc_coro_accept(fds[2], NULL, NULL, CONC_FOREVER, &nfd), EINVAL);
    TH_CHECK_EQ(conc_coro_accept(fds[3], NULL, NULL, CONC_FOREVER, &nfd), EOPNOTSUPP);
    TH_CHECK_EQ(conc_coro_read(fds[0], &byte, 1, CONC_FOREVER, &n), 0); /* still there */
    TH_CHECK_EQ(n, 1u);
    TH_CHECK_EQ(byte, 'p');
    return 0;
}

static void coro_fd_calls_on_fds_they_cannot_use_fail_at_once(void) {
    int p[2], sv[2];
    TH_CHECK_EQ(pipe(p), 0); /* blocking mode */
    TH_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    TH_CHECK(udp >= 0);
    TH_CHECK_EQ(write(p[1], "p", 1), 1);
    int fds[4] = {p[0], p[1], sv[0], udp}, st = -1;
    TH_CHECK_EQ(conc_run(unusable_fds_main, fds, &st), 0);
    TH_CHECK_EQ(st, 0);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    close(udp);
}

/* A regular file is never "not ready" (poll says so): conc_coro_write writes it with one
 * write(2), as write(2) itself would, not a pipe's PIPE_BUF chunk at a time with an epoll_ctl
 * before each (16 writes for 64 KiB, and an O_APPEND file's other writers could land between
 * the chunks). /proc/thread-self/io counts this thread's write syscalls; the coroutine runs on
 * it. */
enum { FILE_BYTES = 65536 };

static long thread_write_syscalls(void) {
    FILE *f = fopen("/proc/thread-self/io", "r");
    if (!f)
        return -1;
    char line[128];
    long n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "syscw: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

static int file_writer(void *arg) {
    int fd = *(int *)arg;
    static char data[FILE_BYTES];
    memset(data, 'x', sizeof data);
    long before = thread_write_syscalls();
    unsigned long ctl_before = __atomic_load_n(&epoll_ctl_calls, __ATOMIC_RELAXED);
    size_t put = 0;
    TH_CHECK_EQ(conc_coro_write(fd, data, sizeof data, CONC_FOREVER, &put), 0);
    long after = thread_write_syscalls();
    TH_CHECK_EQ(put, sizeof data);
    TH_CHECK_EQ(__atomic_load_n(&epoll_ctl_calls, __ATOMIC_RELAXED) - ctl_before, 0ul);
    /* valgrind makes syscalls of its own on this thread, which syscw counts too */
    TH_CHECK_MSG(after - before == 1 || UNDER_VALGRIND(),
                 "%ld write syscalls for one write of %d bytes to a file", after - before,
                 FILE_BYTES);
    static char back[FILE_BYTES];
    size_t got = 0;
    TH_CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    TH_CHECK_EQ(conc_coro_read(fd, back, sizeof back, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(got, sizeof back);
    TH_CHECK(memcmp(back, data, sizeof data) == 0);
    return 0;
}

static void coro_write_to_a_file_is_one_write(void) {
    if (thread_write_syscalls() < 0)
        TH_SKIP("no /proc/thread-self/io");
    char path[64];
    snprintf(path, sizeof path, "/tmp/conc-coro-file-XXXXXX");
    int fd = mkstemp(path);
    TH_CHECK(fd >= 0);
    unlink(path);
    TH_CHECK_EQ(fcntl(fd, F_SETFL, O_APPEND), 0); /* blocking mode, as open() makes it */
    int st = -1;
    TH_CHECK_EQ(conc_run(file_writer, &fd, &st), 0);
    TH_CHECK_EQ(st, 0);
    close(fd);
}

/* DESIGN.md puts channels, the coroutine lock/semaphore/event and conc_coro_await under coro.h:
 * a program that includes conc/coro.h (and future.h for the futures) gets them, since chan.h
 * and coro_bridge.h sit beside it. */
#if defined(CONC_CHAN_H) && defined(CONC_CORO_BRIDGE_H)
static int answer_task(void *arg, void **result) {
    *result = arg;
    return 0;
}

static int chan_and_await_coro(void *arg) {
    (void)arg;
    conc_chan_t *ch;
    TH_CHECK_EQ(conc_chan_create(&ch, 1, sizeof(int)), 0);
    int in = 7, out = 0;
    TH_CHECK_EQ(conc_chan_send(ch, &in), 0);
    TH_CHECK_EQ(conc_chan_recv(ch, &out), 0);
    TH_CHECK_EQ(out, 7);
    conc_chan_destroy(ch);
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 1, 0), 0);
    conc_future_t *f;
    TH_CHECK_EQ(conc_executor_submit(ex, answer_task, &in, &f), 0);
    TH_CHECK_EQ(conc_coro_await(f, CONC_FOREVER), 0);
    TH_CHECK(conc_future_result(f) == &in);
    conc_future_release(f);
    conc_executor_destroy(ex);
    return 0;
}
#endif

static void coro_header_brings_chan_and_await(void) {
#if defined(CONC_CHAN_H) && defined(CONC_CORO_BRIDGE_H)
    int st = -1;
    TH_CHECK_EQ(conc_run(chan_and_await_coro, NULL, &st), 0);
    TH_CHECK_EQ(st, 0);
#else
    TH_CHECK_MSG(false, "conc/coro.h did not include chan.h, or coro.h and future.h did not "
                        "bring coro_bridge.h");
#endif
}

TH_MAIN("coro", TH_CASE(coro_header_brings_chan_and_await),
        TH_CASE_T(coro_fd_calls_on_blocking_fds_park_the_coroutine, 20),
        TH_CASE_T(coro_fd_calls_on_fds_they_cannot_use_fail_at_once, 20),
        TH_CASE(coro_write_to_a_file_is_one_write), TH_CASE(coro_lifecycle_spawn_join_status),
        TH_CASE(coro_bad_input_gets_error_codes),
        TH_CASE(coro_nested_destroy_waits_for_a_message_in_flight),
        TH_CASE(coro_join_and_group_wait_after_the_run),
        TH_CASE(coro_sched_handed_to_the_thread_that_runs_it),
        TH_CASE(coro_creator_feeds_a_scheduler_another_thread_runs),
        TH_CASE(coro_out_of_memory_leaves_errno),
        TH_CASE(coro_big_stack_fits_under_an_address_space_limit),
        TH_CASE(coro_emfile_and_eperm_from_another_thread), TH_CASE(coro_calls_leave_errno_alone),
        TH_CASE(coro_run_order_is_fifo), TH_CASE(coro_run_order_runnext_for_the_woken),
        TH_CASE(coro_run_order_two_wakes_keep_their_order),
        TH_CASE(coro_runnext_handoffs_cannot_starve_the_queue), TH_CASE(coro_nesting_spawns_a_tree),
        TH_CASE(coro_join_deadline_never_early), TH_CASE(coro_join_many_joiners_all_see_the_status),
        TH_CASE(coro_cancel_while_blocked_in_each_call),
        TH_CASE(coro_cancel_before_the_first_switch),
        TH_CASE(coro_cancel_while_a_yield_waits_its_turn),
        TH_CASE(coro_cancelled_yield_still_lets_the_others_run),
        TH_CASE(coro_cancel_a_joiner_leaves_the_target_running),
        TH_CASE(coro_wake_before_cancel_wins),
        TH_CASE(coro_sleepers_wake_in_deadline_order_never_early),
        TH_CASE(coro_past_deadlines_look_once), TH_CASE(coro_fd_wait_pipe_readable_hangup_deadline),
        TH_CASE(coro_fd_socketpair_echo), TH_CASE(coro_write_to_a_gone_peer_is_epipe_not_sigpipe),
        TH_CASE(coro_fd_writable_after_drain_and_ebusy),
        TH_CASE(coro_fd_polled_while_coroutines_stay_runnable),
        TH_CASE(coro_fd_polled_every_few_ms_between_long_runs),
        TH_CASE(coro_fd_echo_round_trip_costs_two_epoll_ctl),
        TH_CASE(coro_fd_reuse_after_close_while_registered),
        TH_CASE(coro_fd_wait_on_a_huge_closed_number_is_ebadf),
        TH_CASE(coro_fd_reader_and_writer_on_one_fd), TH_CASE(coro_watch_fd_spawns_once_when_ready),
        TH_CASE(coro_watch_fd_and_a_waiter_share_the_fd),
        TH_CASE(coro_watch_fd_echo_server_holds_no_coroutine_per_idle_connection),
        TH_CASE(coro_watch_fd_keeps_run_going_and_destroy_spawns_it_cancelled),
        TH_CASE(coro_watch_fd_bad_input_and_regular_files),
        TH_CASE(coro_watch_fd_every_end_gives_back_its_counts),
        TH_CASE(coro_watch_fd_and_a_parked_writer_share_the_registration),
        TH_CASE(coro_group_first_failure_cancels_siblings_destroy_joins),
        TH_CASE(coro_group_destroy_outside_a_coroutine_runs_them_out),
        TH_CASE(coro_group_destroy_outside_waits_for_its_waiters),
        TH_CASE(coro_sched_destroy_cancels_and_runs_cleanup),
        TH_CASE(coro_sched_destroy_cancels_what_cleanup_spawns),
        TH_CASE(coro_conc_run_inside_a_coroutine_is_eperm),
        TH_CASE(coro_fd_wait_ended_by_cancel_frees_the_fd_at_once),
        TH_CASE(coro_fd_reused_after_its_waiter_was_cancelled),
        TH_CASE(coro_sched_destroy_inside_a_coroutine_aborts_saying_why),
        TH_CASE(coro_connect_to_a_full_unix_backlog_retries_until_the_deadline),
        TH_CASE_T(coro_100k_alive_at_once_with_guards, 120),
        TH_CASE(coro_stack_reuse_without_dangling_data),
        TH_CASE(coro_destroyed_schedulers_give_their_address_space_back),
        CXX_ONLY_CASES TH_CASE(coro_two_stack_sizes_count_their_own_slots),
        TH_CASE(coro_stack_usage_high_water_mark), TH_CASE(coro_stack_overflow_names_the_coroutine),
        TH_CASE(coro_stack_overflow_caught_on_a_kernel_without_guard_madvise),
        TH_CASE(coro_stack_overflow_caught_when_guard_madvise_fails_for_a_moment),
        TH_CASE(coro_stack_overflow_reported_after_a_fault_another_handler_took),
        TH_CASE(coro_canary_without_guard_pages_names_the_coroutine),
        TH_CASE(coro_guarded_stack_leaves_its_bottom_page_untouched),
        TH_CASE(coro_canary_is_the_creating_files_choice),
        TH_CASE(coro_overflow_reporter_installed_once_by_racing_threads),
        TH_CASE_T(coro_mprotect_guards_name_vm_max_map_count, 120),
        TH_CASE(coro_deadlock_report_join_cycle_and_self_join),
        TH_CASE(coro_join_of_itself_and_wait_for_own_group_are_edeadlk_at_once),
        TH_CASE(coro_hold_keeps_run_waiting_for_another_thread),
        TH_CASE(coro_unhold_while_destroy_runs_is_harmless),
        TH_CASE(coro_dump_lists_every_coroutine),
        TH_CASE(coro_backtrace_ends_at_the_coroutines_first_frame),
        TH_CASE(coro_slot_resumed_on_another_thread_leaves_the_first_threads_errno),
        TH_CASE(coro_fork_inside_a_coroutine_child_runs_new_schedulers),
        TH_CASE(coro_signal_mask_is_the_threads_across_switches),
        TH_CASE(coro_thread_ended_inside_run_leaves_a_destroyable_scheduler),
        TH_CASE(coro_catch_overflow_frees_its_alternate_stack_with_its_thread),
        TH_CASE_T(coro_stress_many_schedulers_spawn_across_threads, 120))

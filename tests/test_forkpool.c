/* tests/test_forkpool.c - forkpool.h: map exactly once, deaths, timeouts, submit, cancel,
 * recycling, fork hygiene, and nothing left behind
 * SPDX-License-Identifier: MIT
 *
 * Workers are real processes: every case checks what they did through counters in the shared
 * region (relaxed atomics: instrumentation), never through timing. A worker the test kills is
 * told apart by a flag it raises in shared memory before it blocks, so the kill lands exactly
 * on the item the test means.
 */
#include "harness.h"

/* A submitter that armed its gate (fp_send_gate_here = &g) stops right before it writes its
 * task to a worker's socket, outside the pool lock, until the test opens the gate. */
typedef struct fp_send_gate {
    int reached, open; /* release/acquire: hand the fd over, then the test's go */
    int fd;            /* the socket it is about to write to */
} fp_send_gate;
static __thread fp_send_gate *fp_send_gate_here;
static void fp_send_hook(int fd);
#define CONC_FORKPOOL_SEND_HOOK(fd) fp_send_hook(fd)

/* A worker that has read a submit task stops right before it claims it at the start gate,
 * while the hold is armed, until the test opens it. The hold is MAP_SHARED memory that the
 * case maps before create, so every worker inherits the pointer. */
typedef struct fp_start_hold {
    uint32_t armed;   /* the test: stop the next worker that gets here */
    uint32_t reached; /* release/acquire: a worker is held (in process `pid`) */
    uint32_t open;    /* the test's go */
    pid_t pid;
} fp_start_hold;
static fp_start_hold *fp_start_hold_here;
static void fp_start_hook(void);
#define CONC_FORKPOOL_START_HOOK() fp_start_hook()

/* The parent's buffer for the next task result of this many bytes fails (0: none does). */
static size_t fp_fail_result_of;
static void *fp_result_malloc(size_t n);
#define CONC_FORKPOOL_RESULT_MALLOC(n) fp_result_malloc(n)

/* calloc fails in the fork server (a direct child of the process whose pid this holds), for
 * forkpool.h's code only: the macro is gone after the include. */
static pid_t fp_calloc_fails_in_children_of;
static void *fp_calloc(size_t k, size_t n) {
    pid_t under = __atomic_load_n(&fp_calloc_fails_in_children_of, __ATOMIC_RELAXED);
    if (under && getppid() == under)
        return NULL;
    return calloc(k, n);
}

#include "conc/event.h"
#define calloc(k, n) fp_calloc(k, n)
#include "conc/forkpool.h"
#undef calloc

#include <dirent.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define FP_FLAG_WAIT_NS (200 * 1000) /* polling step while waiting for a worker's flag */

/* tests/tu2_forkpool.c, another translation unit: a submit there, and reads of a future. */
int tu2_forkpool_submit(conc_forkpool_t *p, const char *text, conc_future_t **f);
const void *tu2_forkpool_result(conc_future_t *f, size_t *len);
int tu2_forkpool_outcome(conc_future_t *f, conc_forkpool_outcome_t *out);
int tu2_forkpool_cancel(conc_future_t *f);

/* -------------------------------------------------------------------------------------------
 * A kernel without pidfds: CONC_TEST_NO_PIDFD=1 runs the whole suite so (make test does),
 * and forkpool_holds_pidfds_only_where_it_can_open_them one pool in any run.
 * ------------------------------------------------------------------------------------------- */
/* pidfd_open and pidfd_send_signal fail with ENOSYS, as before Linux 5.3 (5.1 for the
 * second) or in a seccomp profile older than them (th_refuse_syscalls). */
static bool fp_refuse_pidfds(void) {
    const th_refusal r[] = {{SYS_pidfd_open, -1, 0, ENOSYS},
                            {SYS_pidfd_send_signal, -1, 0, ENOSYS}};
    return th_refuse_syscalls(r, 2);
}

/* waitid on a pidfd (P_PIDFD, 3) fails with EINVAL, as on Linux 5.3, which has pidfds. */
static bool fp_refuse_waitid_on_pidfds(void) {
    const th_refusal r[] = {{SYS_waitid, 0, 3 /* P_PIDFD */, EINVAL}};
    return th_refuse_syscalls(r, 1);
}

/* CONC_TEST_NO_PIDFD=1: no pidfds at all; =waitid: pidfds, but no waitid on one (Linux 5.3). */
__attribute__((constructor)) static void fp_no_pidfds_from_the_environment(void) {
    const char *v = getenv("CONC_TEST_NO_PIDFD");
    if (!v || !*v || strcmp(v, "0") == 0)
        return;
    bool waitid_only = strcmp(v, "waitid") == 0;
    if (!(waitid_only ? fp_refuse_waitid_on_pidfds() : fp_refuse_pidfds())) {
        fprintf(stderr, "CONC_TEST_NO_PIDFD=%s: cannot install the filter here (%s)\n", v,
                strerror(errno));
        exit(2);
    }
}

/* How many of this process's fds are pidfds. */
static int fp_pidfd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    TH_CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = 0;
            n += strcmp(link, "anon_inode:[pidfd]") == 0;
        }
    }
    closedir(d);
    return n;
}

/* -------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */
static int fp_fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    TH_CHECK(d != NULL);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* No child of ours is left, dead or alive (the harness runs each case in its own process). */
static void fp_check_no_children(void) {
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    TH_CHECK_MSG(r == -1 && errno == ECHILD, "a child is left (waitpid gave %d)", (int)r);
}

/* Waits until *flag (shared memory, written by a worker) is at least want. */
static void fp_wait_flag(const uint32_t *flag, uint32_t want) {
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < want)
        th_sleep_ns(FP_FLAG_WAIT_NS);
}

/* The state letter /proc gives process pid (R, S, T, Z, ...), 0 if it is gone. */
static char fp_pid_state(pid_t pid) {
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int r = fscanf(f, "%*d %*s %c", &state);
    fclose(f);
    return r == 1 ? state : 0;
}

static bool fp_pid_alive(pid_t pid) {
    char state = fp_pid_state(pid);
    return state != 0 && state != 'Z' && state != 'X';
}

/* task_timeout for the timeout cases: long enough that a loaded machine never stalls an
 * ordinary item that long (a trivial task's round trip took over 300 ms once at load 12),
 * stretched like every deadline for sanitizer builds. */
static int64_t fp_timeout_ns(void) {
    double ns = 300e6 * th_env_double("CONC_TEST_TIMEOUT_SCALE", 1.0);
    return (int64_t)(ns > 1e9 ? ns : 1e9);
}

static conc_forkpool_t *fp_create(unsigned workers) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = workers;
    o.shared_size = 64u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    return p;
}

/* The shared scratch of most cases: per-item counters plus a few flags. */
typedef struct fp_shared {
    uint32_t flag;    /* raised by the worker running the item the test waits for */
    uint32_t tries;   /* attempts of a "fails once" item */
    pid_t pid;        /* the pid of the worker that raised flag */
    uint32_t count[]; /* per-item runs */
} fp_shared;

static fp_shared *fp_shared_alloc(conc_forkpool_t *p, size_t n) {
    fp_shared *s = (fp_shared *)conc_forkpool_alloc(p, sizeof(fp_shared) + n * sizeof(uint32_t));
    TH_CHECK(s != NULL);
    memset(s, 0, sizeof(fp_shared) + n * sizeof(uint32_t));
    return s;
}

/* The fp_shared a submit task got the address of as its argument bytes. */
static fp_shared *fp_task_shared(const void *arg) {
    fp_shared *s;
    memcpy(&s, arg, sizeof s);
    return s;
}

static void fp_check_once_except(const fp_shared *s, size_t n, size_t skip) {
    for (size_t i = 0; i < n; i++)
        if (i != skip)
            TH_CHECK_MSG(__atomic_load_n(&s->count[i], __ATOMIC_RELAXED) == 1,
                         "item %zu ran %u times", i, s->count[i]);
}

/* Items: count the run; special items do what the case names. */
enum { FP_NONE, FP_HANG, FP_SEGV, FP_ABORT, FP_EXIT3, FP_FAIL_ONCE, FP_STATUS, FP_SIGINT };
typedef struct fp_map_arg {
    fp_shared *s;
    size_t special[4];
    int what[4];
} fp_map_arg;

static void fp_hang(fp_shared *s) {
    s->pid = getpid();
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    for (;;)
        pause();
}

static int fp_item(size_t i, void *arg) {
    fp_map_arg *a = (fp_map_arg *)arg;
    __atomic_fetch_add(&a->s->count[i], 1u, __ATOMIC_RELAXED);
    for (int k = 0; k < 4; k++) {
        if (a->special[k] != i)
            continue;
        switch (a->what[k]) {
        case FP_HANG:
            fp_hang(a->s);
            break;
        case FP_SEGV:
            raise(SIGSEGV);
            break;
        case FP_ABORT:
            abort();
        case FP_EXIT3:
            exit(3);
        case FP_FAIL_ONCE:
            if (__atomic_fetch_add(&a->s->tries, 1u, __ATOMIC_RELAXED) == 0)
                raise(SIGKILL);
            break;
        case FP_STATUS:
            return (int)(100 + i);
        case FP_SIGINT:
            __atomic_store_n(&a->s->flag, 1u, __ATOMIC_RELEASE);
            while (__atomic_load_n(&a->s->flag, __ATOMIC_ACQUIRE) != 2)
                usleep(100);
            break;
        default:
            break;
        }
    }
    return 0;
}

static fp_map_arg *fp_arg(conc_forkpool_t *p, fp_shared *s) {
    fp_map_arg *a = (fp_map_arg *)conc_forkpool_alloc(p, sizeof *a);
    TH_CHECK(a != NULL);
    memset(a, 0, sizeof *a);
    a->s = s;
    for (int k = 0; k < 4; k++)
        a->special[k] = SIZE_MAX;
    return a;
}

/* -------------------------------------------------------------------------------------------
 * map
 * ------------------------------------------------------------------------------------------- */
static void forkpool_map_exactly_once(void) {
    conc_forkpool_t *p = fp_create(3);
    size_t n = (size_t)th_iters(200000);
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), 0);
    fp_check_once_except(s, n, SIZE_MAX);
    for (size_t i = 0; i < n; i++)
        TH_CHECK(out[i].status == 0 && out[i].attempts == 1 && out[i].signal == 0);
    /* Again on the same workers, with no outcomes array, and a map of nothing. */
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        TH_CHECK_EQ(s->count[i], 2);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, 0, NULL), 0);
    TH_CHECK_EQ(conc_forkpool_map(p, NULL, a, 1, NULL), EINVAL);
    TH_CHECK_EQ(conc_forkpool_map(NULL, fp_item, a, 1, NULL), EINVAL);
    /* DESIGN's struct tag names the typedef's type in C (C++ keeps the typedef's name). */
    struct conc_forkpool_outcome one[1];
    conc_forkpool_outcome_t *same = one;
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, 1, same), 0);
    TH_CHECK(one[0].status == 0 && one[0].attempts == 1);
    free(out);
    conc_forkpool_destroy(p);
}

static void forkpool_map_first_failing_status(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t n = 5000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = 4000, a->what[0] = FP_STATUS;
    a->special[1] = 1234, a->what[1] = FP_STATUS;
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), 100 + 1234);
    TH_CHECK_EQ(out[1234].status, 1334);
    TH_CHECK_EQ(out[4000].status, 4100);
    TH_CHECK_EQ(out[4000].attempts, 1);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 1334); /* no outcomes: the same */
    fp_check_once_except(s, 0, 0);
    free(out);
    conc_forkpool_destroy(p);
}

/* Every second item fails: the parent keeps no memory per failure, with an outcomes array or
 * without one. It kept a 32-byte record of each (16 MiB here, doubled as it grew) and aborted
 * the process when that ran out; now the failures go straight to the caller's array, or to
 * the first failing item, under an address-space limit the old records would pass. A plain
 * build only: a sanitizer reserves more address space than any limit a test can set. Then a
 * map after shutdown leaves every outcome "never started". */
static int fp_odd_items_fail(size_t i, void *arg) {
    (void)arg;
    return i % 2 ? (int)(i % 5) + 1 : 0;
}

static long fp_vm_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static void forkpool_map_failures_take_no_memory(void) {
    if (TH_SANITIZED)
        TH_SKIP("an address-space limit: plain builds only");
    enum { N = 1 << 20 };
    conc_forkpool_t *p = fp_create(2);
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(N * sizeof *out);
    TH_CHECK(out != NULL);
    memset(out, 0xff, N * sizeof *out); /* touched: the limit below counts it in */
    long vm = fp_vm_bytes();
    TH_CHECK(vm > 0);
    struct rlimit old, rl;
    TH_CHECK_EQ(getrlimit(RLIMIT_AS, &old), 0);
    rl.rlim_cur = rl.rlim_max = (rlim_t)vm + (8u << 20); /* the records took 16 MiB */
    TH_CHECK_EQ(setrlimit(RLIMIT_AS, &rl), 0);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_odd_items_fail, NULL, N, NULL), 2); /* item 1 */
    TH_CHECK_EQ(conc_forkpool_map(p, fp_odd_items_fail, NULL, N, out), 2);
    for (size_t i = 0; i < N; i++)
        TH_CHECK(out[i].status == fp_odd_items_fail(i, NULL) && out[i].attempts == 1 &&
                 out[i].signal == 0 && out[i].exit_code == 0);
    conc_forkpool_shutdown(p, false);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_odd_items_fail, NULL, 3, out), EPIPE);
    for (size_t i = 0; i < 3; i++)
        TH_CHECK(out[i].status == EPIPE && out[i].attempts == 0);
    conc_forkpool_destroy(p);
    free(out);
}

/* A worker SIGKILLed from outside while it runs item 777: that item is reported with the
 * signal, every other item runs exactly once, and a replacement serves the next map. */
static void forkpool_map_worker_sigkilled(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t n = 20000, victim = 777;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = victim, a->what[0] = FP_HANG;
    pid_t before[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, before, 2), 2);
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    pid_t killer = fork();
    if (killer == 0) { /* kills from outside the pool's process tree view: another process */
        fp_wait_flag(&s->flag, 1);
        kill(s->pid, SIGKILL);
        _exit(0);
    }
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), ECHILD);
    TH_CHECK_EQ(waitpid(killer, NULL, 0), killer);
    TH_CHECK_EQ(out[victim].status, ECHILD);
    TH_CHECK_EQ(out[victim].signal, SIGKILL);
    TH_CHECK_EQ(out[victim].attempts, 1);
    fp_check_once_except(s, n, victim);
    for (size_t i = 0; i < n; i++)
        if (i != victim)
            TH_CHECK(out[i].status == 0 && out[i].attempts == 1);
    /* The pool is whole again: a replacement with a new pid. */
    a->special[0] = SIZE_MAX;
    memset(s->count, 0, n * sizeof s->count[0]);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    fp_check_once_except(s, n, SIZE_MAX);
    pid_t after[2];
    while (conc_forkpool_pids(p, after, 2) != 2) /* the replacement may still be starting */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    TH_CHECK(after[0] != s->pid && after[1] != s->pid);
    free(out);
    conc_forkpool_destroy(p);
}

/* More workers than a SEQPACKET queue holds packets (net.unix.max_dgram_qlen, 10): spawning
 * them all must not wedge the parent and the fork server against each other. */
static void forkpool_many_workers(void) {
    conc_forkpool_t *p = fp_create(24);
    size_t n = 50000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    fp_check_once_except(s, n, SIZE_MAX);
    pid_t pids[32];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 32), 24);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* Maps from several threads run one after another, each exactly once over its own items. */
typedef struct fp_two_maps {
    conc_forkpool_t *p;
    fp_map_arg *a[2];
} fp_two_maps;

static void fp_two_maps_thread(int index, void *arg) {
    fp_two_maps *t = (fp_two_maps *)arg;
    size_t n = 3000;
    for (int round = 0; round < 20; round++)
        TH_CHECK_EQ(conc_forkpool_map(t->p, fp_item, t->a[index], n, NULL), 0);
    for (size_t i = 0; i < n; i++)
        TH_CHECK_EQ(t->a[index]->s->count[i], 20);
}

static void forkpool_maps_from_two_threads(void) {
    fp_two_maps t;
    t.p = fp_create(2);
    for (int k = 0; k < 2; k++)
        t.a[k] = fp_arg(t.p, fp_shared_alloc(t.p, 3000));
    th_run_threads(2, fp_two_maps_thread, &t);
    conc_forkpool_destroy(t.p);
}

/* Maps from several threads take turns in the order they came: a thread that maps again as
 * soon as its map returns does not pass one that was already waiting (it did: the waiter was
 * only woken, and the returning thread took the pool again first, so a thread mapping in a
 * loop kept every other map out). Thread A's first map waits on a gate; B calls map meanwhile
 * and sleeps; then the gate opens and A maps again at once: B's item runs first. */
typedef struct fp_turns {
    uint32_t gate, started, seq;
    uint32_t at[3]; /* when map k's item ran: 0 A's gated map, 1 B's, 2 A's next */
    conc_forkpool_t *p;
    struct fp_turn_arg {
        struct fp_turns *t;
        uint32_t k;
    } arg[3];
} fp_turns;

static int fp_turn_item(size_t i, void *arg) {
    (void)i;
    const struct fp_turn_arg *a = (const struct fp_turn_arg *)arg;
    fp_turns *t = a->t;
    if (a->k == 0) {
        __atomic_store_n(&t->started, 1u, __ATOMIC_RELEASE);
        fp_wait_flag(&t->gate, 1);
    }
    t->at[a->k] = __atomic_add_fetch(&t->seq, 1u, __ATOMIC_RELAXED);
    return 0;
}

static void *fp_turns_a(void *arg) {
    fp_turns *t = (fp_turns *)arg;
    TH_CHECK_EQ(conc_forkpool_map(t->p, fp_turn_item, &t->arg[0], 1, NULL), 0);
    TH_CHECK_EQ(conc_forkpool_map(t->p, fp_turn_item, &t->arg[2], 1, NULL), 0);
    return NULL;
}

static void *fp_turns_b(void *arg) {
    fp_turns *t = (fp_turns *)arg;
    TH_CHECK_EQ(conc_forkpool_map(t->p, fp_turn_item, &t->arg[1], 1, NULL), 0);
    return NULL;
}

/* How many maps have taken their turn (a ticket) so far: read under the pool's lock. */
static uint64_t fp_map_turns_taken(conc_forkpool_t *p) {
    conc_lock_acquire(&p->lock);
    uint64_t n = p->map_turns;
    conc_lock_release(&p->lock);
    return n;
}

static void forkpool_maps_take_turns(void) {
    conc_forkpool_t *p = fp_create(1);
    for (int round = 0; round < 3; round++) {
        fp_turns *t = (fp_turns *)conc_forkpool_alloc(p, sizeof *t);
        TH_CHECK(t != NULL);
        memset(t, 0, sizeof *t);
        t->p = p;
        for (uint32_t k = 0; k < 3; k++)
            t->arg[k].t = t, t->arg[k].k = k;
        pthread_t a, b;
        TH_CHECK_EQ(pthread_create(&a, NULL, fp_turns_a, t), 0);
        fp_wait_flag(&t->started, 1); /* A's first map runs its gated item */
        TH_CHECK_EQ(pthread_create(&b, NULL, fp_turns_b, t), 0);
        /* B has taken its turn, after A's gated map and before A's next (asleep alone would
         * not say so: B may sleep on the pool's lock before it takes one) */
        while (fp_map_turns_taken(p) < 3 * (uint64_t)round + 2)
            th_sleep_ns(FP_FLAG_WAIT_NS);
        __atomic_store_n(&t->gate, 1u, __ATOMIC_RELEASE);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        TH_CHECK_MSG(t->at[0] == 1 && t->at[1] == 2 && t->at[2] == 3,
                     "round %d: A's maps ran at %u and %u, B's at %u", round, t->at[0], t->at[2],
                     t->at[1]);
        conc_forkpool_free(p, t);
    }
    conc_forkpool_destroy(p);
}

/* raise(SIGSEGV), abort() and exit(3) inside fn: each item names its death. */
static void forkpool_map_crashes_named(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t n = 3000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = 13, a->what[0] = FP_SEGV;
    a->special[1] = 1777, a->what[1] = FP_ABORT;
    a->special[2] = 2999, a->what[2] = FP_EXIT3;
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), ECHILD);
    TH_CHECK(out[13].status == ECHILD && out[13].signal == SIGSEGV && out[13].exit_code == 0);
    TH_CHECK(out[1777].status == ECHILD && out[1777].signal == SIGABRT);
    TH_CHECK(out[2999].status == ECHILD && out[2999].signal == 0 && out[2999].exit_code == 3);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        failed += out[i].status != 0;
        TH_CHECK_EQ(s->count[i], 1); /* the three were started once too: no retries */
    }
    TH_CHECK_EQ(failed, 3);
    free(out);
    conc_forkpool_destroy(p);
}

static void forkpool_map_retry_succeeds(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.retries = 2;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    size_t n = 4000, k = 2500;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = k, a->what[0] = FP_FAIL_ONCE;
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), 0);
    TH_CHECK_EQ(out[k].status, 0);
    TH_CHECK_EQ(out[k].attempts, 2);
    TH_CHECK_EQ(s->count[k], 2);
    TH_CHECK_EQ(s->tries, 2);
    fp_check_once_except(s, n, k);
    free(out);
    conc_forkpool_destroy(p);
}

/* A later round of a map with no room for its chunk table: the arena fills (alloc overlaps the
 * map) while the first attempt of item 0 holds its worker, which then dies. The items of its
 * chunk that never ran and item 0's retry cannot run: map says ENOMEM, an item that never
 * ran says EPIPE with no attempt, item 0 keeps its death (one attempt), the rest ran once. */
#define FP_FULL_N 10      /* items: one worker's first chunk holds item 0 and some after it */
#define FP_FULL_BLOCKS 64 /* room for the blocks that fill a 1 MiB arena, halving sizes */

typedef struct fp_full {
    conc_forkpool_t *p;
    fp_shared *s;
    conc_forkpool_outcome_t out[FP_FULL_N];
    int status;
    void *blocks[FP_FULL_BLOCKS];
    size_t nblocks;
} fp_full;

static int fp_die_once_when_full(size_t i, void *arg) {
    fp_shared *s = (fp_shared *)arg;
    __atomic_fetch_add(&s->count[i], 1u, __ATOMIC_RELAXED);
    if (i == 0 && __atomic_load_n(&s->flag, __ATOMIC_ACQUIRE) == 0) { /* the first map only */
        __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
        fp_wait_flag(&s->flag, 2); /* the parent has filled the arena */
        raise(SIGKILL);
    }
    return 0;
}

static void fp_full_thread(int index, void *arg) {
    fp_full *t = (fp_full *)arg;
    if (index == 0) {
        t->status = conc_forkpool_map(t->p, fp_die_once_when_full, t->s, FP_FULL_N, t->out);
        return;
    }
    fp_wait_flag(&t->s->flag, 1); /* item 0 runs: the round's table is in place */
    for (size_t sz = (size_t)1 << 20; sz >= 64; sz /= 2)
        for (void *m; (m = conc_forkpool_alloc(t->p, sz)) != NULL;) {
            TH_CHECK(t->nblocks < FP_FULL_BLOCKS);
            t->blocks[t->nblocks++] = m;
        }
    __atomic_store_n(&t->s->flag, 2u, __ATOMIC_RELEASE);
}

static void forkpool_map_round_without_room(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.retries = 1;
    o.shared_size = 1u << 20;
    fp_full *t = (fp_full *)calloc(1, sizeof *t);
    TH_CHECK(t != NULL);
    TH_CHECK_EQ(conc_forkpool_create(&t->p, &o), 0);
    t->s = fp_shared_alloc(t->p, FP_FULL_N);
    th_run_threads(2, fp_full_thread, t);
    TH_CHECK_EQ(t->status, ENOMEM);
    TH_CHECK_EQ(t->s->count[0], 1);
    TH_CHECK(t->out[0].status == ECHILD && t->out[0].signal == SIGKILL);
    TH_CHECK_EQ(t->out[0].attempts, 1);
    unsigned never = 0;
    for (size_t i = 1; i < FP_FULL_N; i++) {
        uint32_t runs = t->s->count[i];
        TH_CHECK_MSG(runs <= 1, "item %zu ran %u times", i, runs);
        int want = runs ? 0 : EPIPE;
        TH_CHECK_MSG(t->out[i].status == want && t->out[i].attempts == runs,
                     "item %zu ran %u times: status %d, attempts %u", i, runs, t->out[i].status,
                     t->out[i].attempts);
        never += runs == 0;
    }
    TH_CHECK(never > 0); /* item 0's chunk-mates: the case met the round it means */
    /* Room again: the pool maps as before. */
    for (size_t k = 0; k < t->nblocks; k++)
        conc_forkpool_free(t->p, t->blocks[k]);
    memset(t->s->count, 0, FP_FULL_N * sizeof t->s->count[0]);
    TH_CHECK_EQ(conc_forkpool_map(t->p, fp_die_once_when_full, t->s, FP_FULL_N, t->out), 0);
    for (size_t i = 0; i < FP_FULL_N; i++)
        TH_CHECK(t->s->count[i] == 1 && t->out[i].status == 0 && t->out[i].attempts == 1);
    conc_forkpool_destroy(t->p);
    free(t);
}

static void forkpool_map_task_timeout(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.retries = 3; /* a timed-out item is never re-run */
    o.task_timeout = fp_timeout_ns();
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    size_t n = 200, k = 50;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = k, a->what[0] = FP_HANG;
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    int64_t t0 = th_now();
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, out), ETIMEDOUT);
    TH_CHECK(th_now() - t0 >= o.task_timeout); /* never before its time */
    TH_CHECK_EQ(out[k].status, ETIMEDOUT);
    TH_CHECK_EQ(out[k].signal, SIGTERM); /* SIGTERM ends pause(); no KILL was needed */
    TH_CHECK_EQ(out[k].attempts, 1);
    TH_CHECK_EQ(s->count[k], 1);
    fp_check_once_except(s, n, k);
    free(out);
    conc_forkpool_destroy(p);
}

/* SIGINT to the whole process group mid-map: it does not reach the pool's own group (whose
 * processes ignore SIGINT besides), the parent's own handler sees it, and the map completes
 * exactly once. */
static volatile sig_atomic_t fp_sigints;
static void fp_on_sigint(int sig) {
    (void)sig;
    fp_sigints++;
}

static void forkpool_map_sigint_to_group(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t n = 10000, k = 3000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = k, a->what[0] = FP_SIGINT;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fp_on_sigint;
    sa.sa_flags = SA_RESTART;
    TH_CHECK_EQ(sigaction(SIGINT, &sa, NULL), 0);
    pid_t helper = fork();
    if (helper == 0) {
        signal(SIGINT, SIG_IGN);
        fp_wait_flag(&s->flag, 1);
        kill(0, SIGINT); /* the process group: parent, server, workers, this helper */
        __atomic_store_n(&s->flag, 2u, __ATOMIC_RELEASE);
        _exit(0);
    }
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    TH_CHECK_EQ(waitpid(helper, NULL, 0), helper);
    TH_CHECK(fp_sigints >= 1);
    fp_check_once_except(s, n, SIZE_MAX);
    pid_t pids[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2); /* nobody died of it */
    conc_forkpool_destroy(p);
}

/* Signals sent to the host's whole process group (a terminal's hangup, Ctrl-\, kill(0, sig),
 * timeout(1)) that the host handles or ignores leave the pool alone, a running task included:
 * its processes are in a group of their own. The fork server had default dispositions, so the
 * first such signal killed it, with the workers, and the pool gave up for good (later submits
 * said EPIPE), while the host ran on. */
static volatile sig_atomic_t fp_group_signals;
static void fp_on_group_signal(int sig) {
    (void)sig;
    fp_group_signals++;
}

static int fp_flag_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)result, (void)result_len;
    uint32_t *flag;
    if (len != sizeof flag)
        return EINVAL;
    memcpy(&flag, arg, sizeof flag);
    __atomic_store_n(flag, 1u, __ATOMIC_RELEASE);
    fp_wait_flag(flag, 2);
    return 0;
}

/* arg: the host's process group. 0 if the worker is outside it, and ignores the signals the
 * header says it ignores; else which check failed. */
static int fp_worker_signals_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)result, (void)result_len;
    pid_t host_group;
    if (len != sizeof host_group)
        return EINVAL;
    memcpy(&host_group, arg, sizeof host_group);
    if (getpgid(0) == host_group)
        return 100;
    static const int ignored[] = {SIGINT, SIGTTOU, SIGTTIN};
    for (int i = 0; i < 3; i++) {
        struct sigaction now;
        if (sigaction(ignored[i], NULL, &now) != 0 || now.sa_handler != SIG_IGN)
            return 101 + i;
    }
    return 0;
}

static void forkpool_group_signals_leave_the_pool_alone(void) {
    static const int handled[] = {SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM};
    enum { HANDLED = sizeof handled / sizeof handled[0] };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fp_on_group_signal;
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < HANDLED; i++)
        TH_CHECK_EQ(sigaction(handled[i], &sa, NULL), 0);
    TH_CHECK(signal(SIGHUP, SIG_IGN) != SIG_ERR); /* as under nohup */
    conc_forkpool_t *p = fp_create(2);
    pid_t before[2], after[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, before, 2), 2);
    uint32_t *flag = (uint32_t *)conc_forkpool_alloc(p, sizeof *flag);
    TH_CHECK(flag != NULL);
    *flag = 0;
    conc_future_t *running;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_flag_task, &flag, sizeof flag, &running), 0);
    fp_wait_flag(flag, 1);
    for (int i = 0; i < HANDLED; i++)
        TH_CHECK_EQ(kill(0, handled[i]), 0);
    TH_CHECK_EQ(kill(0, SIGHUP), 0);
    while (fp_group_signals < HANDLED) /* any thread of ours may take them */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    __atomic_store_n(flag, 2u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(running), 0);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(running, &o), 0);
    TH_CHECK_EQ(o.status, 0); /* it ran to its end: the server's death gave ECHILD here */
    TH_CHECK_EQ(o.attempts, 1);
    conc_future_release(running);
    conc_future_t *f;
    pid_t host_group = getpgid(0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_worker_signals_task, &host_group, sizeof host_group, &f),
                0); /* EPIPE before */
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK_EQ(o.status, 0);
    conc_future_release(f);
    TH_CHECK_EQ(conc_forkpool_pids(p, after, 2), 2); /* nobody died of it */
    TH_CHECK((after[0] == before[0] && after[1] == before[1]) ||
             (after[0] == before[1] && after[1] == before[0]));
    conc_forkpool_destroy(p);
}

/* -------------------------------------------------------------------------------------------
 * submit
 * ------------------------------------------------------------------------------------------- */
static int fp_echo(const void *arg, size_t len, void **result, size_t *result_len) {
    if (len == 0)
        return 0;
    *result = malloc(len);
    memcpy(*result, arg, len);
    *result_len = len;
    return 0;
}

static int fp_fail7(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    return 7;
}

static int fp_getpid(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len;
    pid_t *r = (pid_t *)malloc(sizeof *r);
    *r = getpid();
    *result = r;
    *result_len = sizeof *r;
    return 0;
}

/* arg: a size; result: that many bytes, byte i = i * 7 + 1. */
static int fp_big(const void *arg, size_t len, void **result, size_t *result_len) {
    TH_CHECK_EQ(len, sizeof(size_t));
    size_t n;
    memcpy(&n, arg, sizeof n);
    unsigned char *r = (unsigned char *)malloc(n);
    for (size_t i = 0; i < n; i++)
        r[i] = (unsigned char)(i * 7 + 1);
    *result = r;
    *result_len = n;
    return 0;
}

static void fp_check_big(conc_future_t *f, size_t n) {
    size_t len;
    const unsigned char *r = (const unsigned char *)conc_forkpool_result(f, &len);
    TH_CHECK(r != NULL);
    TH_CHECK_EQ(len, n);
    for (size_t i = 0; i < n; i++)
        if (r[i] != (unsigned char)(i * 7 + 1))
            TH_CHECK_MSG(false, "byte %zu of %zu is wrong", i, n);
}

/* Hangs after raising the flag in the shared page it got the address of. */
static int fp_hang_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    fp_hang(s);
    return 0;
}

/* The same, deaf to SIGTERM: only the SIGKILL after the grace period ends it. */
static int fp_hang_task_no_term(const void *arg, size_t len, void **result, size_t *result_len) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    return fp_hang_task(arg, len, result, result_len);
}

static int fp_kill_self(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    raise(SIGKILL);
    return 0;
}

/* Raises the flag, then sleeps far past any task_timeout a case sets; returns 0 if it woke. */
static int fp_sleep_long_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    s->pid = getpid();
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    sleep(30);
    return 0;
}

/* Deaf to SIGTERM: waits until one is pending (the pool timed it out), then returns a result
 * during the grace period, before the SIGKILL. */
static int fp_term_then_return(const void *arg, size_t len, void **result, size_t *result_len) {
    sigset_t term, pending;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    fp_shared *s = fp_task_shared(arg);
    s->pid = getpid();
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    do {
        th_sleep_ns(FP_FLAG_WAIT_NS);
        sigpending(&pending);
    } while (!sigismember(&pending, SIGTERM));
    return fp_getpid(arg, len, result, result_len);
}

static pid_t fp_pid_of(conc_future_t *f) {
    size_t len;
    const pid_t *r = (const pid_t *)conc_forkpool_result(f, &len);
    TH_CHECK(r != NULL && len == sizeof *r);
    return *r;
}

static uint32_t fp_done_calls;
static void fp_on_done(conc_future_t *f, void *arg) {
    (void)f;
    __atomic_fetch_add((uint32_t *)arg, 1u, __ATOMIC_RELAXED);
}

static void forkpool_submit_future_api(void) {
    conc_forkpool_t *p = fp_create(2);
    conc_future_t *f[4];
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "hello", 6, &f[0]), 0);
    TH_CHECK_EQ(conc_future_wait(f[0]), 0);
    size_t len;
    TH_CHECK_EQ(strcmp((const char *)conc_forkpool_result(f[0], &len), "hello"), 0);
    TH_CHECK_EQ(len, 6);
    TH_CHECK_EQ(strcmp((const char *)conc_future_result(f[0]), "hello"), 0);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f[0], &o), 0);
    TH_CHECK(o.status == 0 && o.attempts == 1 && o.signal == 0);
    TH_CHECK_EQ(conc_forkpool_cancel(f[0]), EBUSY);
    /* A failing task: status, no bytes. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_fail7, NULL, 0, &f[1]), 0);
    TH_CHECK_EQ(conc_future_wait(f[1]), 7);
    TH_CHECK(conc_forkpool_result(f[1], &len) == NULL && len == 0);
    /* An empty result is "" (not NULL) with status 0. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, NULL, 0, &f[2]), 0);
    TH_CHECK_EQ(conc_future_wait(f[2]), 0);
    TH_CHECK(conc_forkpool_result(f[2], &len) != NULL && len == 0);
    /* wait_any, as_completed and on_done on fork-pool futures. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &f[3]), 0);
    TH_CHECK_EQ(conc_future_on_done(f[3], fp_on_done, &fp_done_calls), 0);
    size_t idx;
    TH_CHECK_EQ(conc_future_wait_any(&f[3], 1, CONC_FOREVER, &idx), 0);
    TH_CHECK_EQ(idx, 0);
    conc_as_completed_t *ac;
    TH_CHECK_EQ(conc_as_completed_create(&ac, f, 4), 0);
    int seen = 0;
    conc_future_t *g;
    while (conc_as_completed_next(ac, &g) == 0)
        seen++;
    TH_CHECK_EQ(seen, 4);
    conc_as_completed_destroy(ac);
    TH_CHECK_EQ(conc_future_wait(f[3]), 0);
    /* Callbacks run after the final state is published, as in Python: the wait may return
     * before the completer has called them, so wait for the call rather than assume it. */
    while (__atomic_load_n(&fp_done_calls, __ATOMIC_RELAXED) == 0)
        sched_yield();
    /* Not a fork-pool future: EINVAL. */
    conc_future_t *plain;
    TH_CHECK_EQ(conc_future_create(&plain), 0);
    TH_CHECK_EQ(conc_forkpool_outcome(plain, &o), EINVAL);
    TH_CHECK_EQ(conc_forkpool_cancel(plain), EINVAL);
    TH_CHECK(conc_forkpool_result(plain, &len) == NULL);
    conc_future_release(plain);
    TH_CHECK_EQ(conc_forkpool_submit(p, NULL, NULL, 0, &g), EINVAL);
    TH_CHECK(g == NULL);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, NULL, 3, &g), EINVAL);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "fire", 4, NULL), 0); /* no future wanted */
    /* NULL for the pool, the future or the outcome: EINVAL, nothing done. */
    TH_CHECK_EQ(conc_forkpool_create(NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_forkpool_submit(NULL, fp_echo, "x", 1, &g), EINVAL);
    TH_CHECK(g == NULL);
    TH_CHECK_EQ(conc_forkpool_try_submit(NULL, fp_echo, "x", 1, NULL), EINVAL);
    TH_CHECK_EQ(conc_forkpool_outcome(NULL, &o), EINVAL);
    TH_CHECK_EQ(conc_forkpool_outcome(f[0], NULL), EINVAL);
    TH_CHECK_EQ(conc_forkpool_cancel(NULL), EINVAL);
    TH_CHECK(conc_forkpool_result(NULL, &len) == NULL && len == 0);
    for (int i = 0; i < 4; i++)
        conc_future_release(f[i]);
    conc_forkpool_destroy(p);
    TH_CHECK_EQ(__atomic_load_n(&fp_done_calls, __ATOMIC_RELAXED), 1); /* once, never twice */
}

/* A future submitted in one translation unit is a fork-pool future in every other one. Its
 * tag was a static function, with an address per file: a future made in tests/tu2_forkpool.c
 * had no result here, outcome and cancel said EINVAL, and the same the other way round. */
static void forkpool_future_of_another_file(void) {
    conc_forkpool_t *p = fp_create(1);
    conc_future_t *there, *here;
    TH_CHECK_EQ(tu2_forkpool_submit(p, "there", &there), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "here", 5, &here), 0);
    TH_CHECK_EQ(conc_future_wait(there), 0);
    TH_CHECK_EQ(conc_future_wait(here), 0);
    size_t len = 0;
    const char *r = (const char *)conc_forkpool_result(there, &len);
    TH_CHECK_MSG(r != NULL && len == 6 && strcmp(r, "there") == 0, "result %p, len %zu",
                 (const void *)r, len);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(there, &o), 0);
    TH_CHECK(o.status == 0 && o.attempts == 1);
    TH_CHECK_EQ(conc_forkpool_cancel(there), EBUSY); /* done: not "not a fork-pool future" */
    len = 0;
    r = (const char *)tu2_forkpool_result(here, &len);
    TH_CHECK_MSG(r != NULL && len == 5 && strcmp(r, "here") == 0, "result %p, len %zu",
                 (const void *)r, len);
    memset(&o, 0xff, sizeof o);
    TH_CHECK_EQ(tu2_forkpool_outcome(here, &o), 0);
    TH_CHECK(o.status == 0 && o.attempts == 1);
    TH_CHECK_EQ(tu2_forkpool_cancel(here), EBUSY);
    conc_future_release(there);
    conc_future_release(here);
    conc_forkpool_destroy(p);
}

static void *fp_result_malloc(size_t n) {
    size_t fail = __atomic_load_n(&fp_fail_result_of, __ATOMIC_RELAXED);
    if (fail && n == fail &&
        __atomic_compare_exchange_n(&fp_fail_result_of, &fail, 0, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        return NULL;
    return malloc(n);
}

/* Counts its run in the shared page it got the address of, and answers with fp_big's bytes. */
static int fp_count_and_answer(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len;
    fp_shared *s = fp_task_shared(arg);
    s->pid = getpid();
    __atomic_fetch_add(&s->count[0], 1u, __ATOMIC_RELAXED);
    size_t n = 777777;
    return fp_big(&n, sizeof n, result, result_len);
}

/* The parent has no memory for a task's result: the task ends ENOMEM (fn ran once: one
 * attempt, no signal, result NULL) and its worker stays, with retries too. Before, the pool
 * killed that worker: ECHILD with SIGKILL, and with a retry the task ran a second time. */
static void forkpool_no_parent_memory_for_a_result_is_enomem(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.retries = 1;
    o.shared_size = 1u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    fp_shared *s = fp_shared_alloc(p, 1);
    pid_t before, after;
    TH_CHECK_EQ(conc_forkpool_pids(p, &before, 1), 1);
    __atomic_store_n(&fp_fail_result_of, (size_t)777777, __ATOMIC_RELAXED);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_count_and_answer, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ENOMEM);
    TH_CHECK_EQ(__atomic_load_n(&fp_fail_result_of, __ATOMIC_RELAXED), 0); /* it did fail */
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK_EQ(out.status, ENOMEM);
    TH_CHECK_EQ(out.signal, 0);
    TH_CHECK_EQ(out.attempts, 1u);
    size_t len = 1;
    TH_CHECK(conc_forkpool_result(f, &len) == NULL);
    TH_CHECK_EQ(len, 0);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 1u);
    conc_future_release(f);
    /* The same worker answers the next one, whole. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_count_and_answer, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    fp_check_big(f, 777777);
    conc_future_release(f);
    TH_CHECK_EQ(conc_forkpool_pids(p, &after, 1), 1);
    TH_CHECK_EQ(after, before);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 2u);
    conc_forkpool_destroy(p);
}

/* The fork server has no memory for its books: create fails with ENOMEM, as the kit's own
 * allocation failures do, and leaves nothing behind. It said ECHILD (a worker died). */
static void forkpool_create_with_a_server_out_of_memory_is_enomem(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    conc_forkpool_t *p = NULL;
    __atomic_store_n(&fp_calloc_fails_in_children_of, getpid(), __ATOMIC_RELAXED);
    int e = conc_forkpool_create(&p, &o);
    __atomic_store_n(&fp_calloc_fails_in_children_of, 0, __ATOMIC_RELAXED);
    TH_CHECK_EQ(e, ENOMEM);
    TH_CHECK(p == NULL);
    fp_check_no_children();
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0); /* and the next one works */
    conc_forkpool_destroy(p);
}

static void forkpool_submit_big_result(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t n = (size_t)8 << 20;
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_big, &n, sizeof n, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    fp_check_big(f, n);
    conc_future_release(f);
    /* And a large argument (past any socket buffer) echoed back. */
    size_t m = (size_t)3 << 20;
    unsigned char *arg = (unsigned char *)malloc(m);
    for (size_t i = 0; i < m; i++)
        arg[i] = (unsigned char)(i * 7 + 1);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, arg, m, &f), 0);
    free(arg); /* submit copied it */
    TH_CHECK_EQ(conc_future_wait(f), 0);
    fp_check_big(f, m);
    conc_future_release(f);
    conc_forkpool_destroy(p);
}

/* 10,000 tiny tasks and 10 huge ones (1 MiB results), interleaved, through a small queue
 * (submit blocks while it is full). */
static void forkpool_submit_tiny_and_huge(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.queue_capacity = 16;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    size_t tiny = (size_t)th_iters(10000), huge = 10, big = (size_t)1 << 20;
    size_t total = tiny + huge;
    conc_future_t **f = (conc_future_t **)calloc(total, sizeof *f);
    size_t every = tiny / huge;
    for (size_t i = 0, h = 0; i < total; i++) {
        if (h < huge && i % (every + 1) == every) {
            TH_CHECK_EQ(conc_forkpool_submit(p, fp_big, &big, sizeof big, &f[i]), 0);
            h++;
        } else {
            uint64_t v = i;
            TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, &v, sizeof v, &f[i]), 0);
        }
    }
    size_t bigs = 0;
    for (size_t i = 0; i < total; i++) {
        TH_CHECK_EQ(conc_future_wait(f[i]), 0);
        size_t len;
        const void *r = conc_forkpool_result(f[i], &len);
        if (len == big) {
            fp_check_big(f[i], big);
            bigs++;
        } else {
            uint64_t v;
            TH_CHECK_EQ(len, sizeof v);
            memcpy(&v, r, sizeof v);
            TH_CHECK_EQ(v, i);
        }
        conc_future_release(f[i]);
    }
    TH_CHECK_EQ(bigs, huge);
    free(f);
    conc_forkpool_destroy(p);
}

/* Returns ECANCELED itself: a failure, not a cancel. */
static int fp_returns_ecanceled(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    return ECANCELED;
}

static void forkpool_submit_cancel_running_and_queued(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *run, *queued, *after;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &run), 0);
    fp_wait_flag(&s->flag, 1); /* it is running in the only worker */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "q", 1, &queued), 0);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(queued, &o), EAGAIN);
    TH_CHECK_EQ(conc_forkpool_cancel(queued), 0); /* queued: dropped */
    TH_CHECK_EQ(conc_future_wait(queued), ECANCELED);
    TH_CHECK_EQ(conc_future_state(queued), CONC_FUTURE_CANCELLED);
    TH_CHECK_EQ(conc_future_cancel(run), EBUSY); /* future.h cannot stop a running task */
    TH_CHECK_EQ(conc_forkpool_cancel(run), 0);   /* forkpool.h kills its worker */
    TH_CHECK_EQ(conc_future_wait(run), ECANCELED);
    /* Cancelled, not failed: the state tells it from a task that returned ECANCELED. */
    TH_CHECK_EQ(conc_future_state(run), CONC_FUTURE_CANCELLED);
    TH_CHECK_EQ(conc_forkpool_outcome(run, &o), 0);
    TH_CHECK(o.status == ECANCELED && o.signal == SIGKILL && o.attempts == 1);
    TH_CHECK_EQ(conc_forkpool_cancel(run), EBUSY);
    conc_future_t *own;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_returns_ecanceled, NULL, 0, &own), 0);
    TH_CHECK_EQ(conc_future_wait(own), ECANCELED);
    TH_CHECK_EQ(conc_future_state(own), CONC_FUTURE_FAILED);
    conc_future_release(own);
    /* A replacement serves the next task. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &after), 0);
    TH_CHECK_EQ(conc_future_wait(after), 0);
    TH_CHECK(*(const pid_t *)conc_forkpool_result(after, NULL) != s->pid);
    TH_CHECK(!fp_pid_alive(s->pid));
    conc_future_release(run);
    conc_future_release(queued);
    conc_future_release(after);
    conc_forkpool_destroy(p);
}

static conc_forkpool_t *fp_timed_pool(unsigned workers);
#define FP_NO_FILTER_HERE 77

/* Runs body in a child process refused pidfds (fp_refuse_pidfds, if the kernel gives them:
 * under CONC_TEST_NO_PIDFD the process is refused already) and checks that it exited 0
 * leaving no child; skips where the test has no filter for the architecture. */
static void fp_without_pidfds(void (*body)(void), const char *what) {
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0) {
        int probe = (int)syscall(SYS_pidfd_open, getpid(), 0);
        if (probe >= 0) {
            close(probe);
            if (!fp_refuse_pidfds())
                _exit(FP_NO_FILTER_HERE);
        }
        TH_CHECK(syscall(SYS_pidfd_open, getpid(), 0) == -1 && errno == ENOSYS);
        body();
        fp_check_no_children();
        _exit(0);
    }
    int st;
    TH_CHECK_EQ(waitpid(child, &st, 0), child);
    if (WIFEXITED(st) && WEXITSTATUS(st) == FP_NO_FILTER_HERE)
        TH_SKIP("no seccomp filter for this architecture in the test");
    TH_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s without pidfds: status %#x", what, st);
    fp_check_no_children();
}

/* Where the kernel gives pidfds the pool watches by them: one per worker, one for the server.
 * Where pidfd_open fails with ENOSYS (Linux before 5.3, or a seccomp profile older than it),
 * create used to fail with ENOSYS; the same pool now runs watched without them (DESIGN,
 * "Without pidfds"): it holds none, and a map, a crash, a cancel of a running task, a
 * timeout and its replacements work there as anywhere. Under CONC_TEST_NO_PIDFD=1 (the
 * whole suite so, in make test) the first half is refused too. */
static void fp_pool_without_pidfds(void) {
    conc_forkpool_t *p = fp_timed_pool(2);
    TH_CHECK_EQ(fp_pidfd_count(), 0);
    fp_shared *s = fp_shared_alloc(p, 100);
    fp_map_arg *a = fp_arg(p, s);
    a->special[0] = 37, a->what[0] = FP_SEGV;
    conc_forkpool_outcome_t out[100];
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, 100, out), ECHILD);
    for (size_t i = 0; i < 100; i++)
        TH_CHECK_EQ(s->count[i], 1u);
    TH_CHECK(out[37].status == ECHILD && out[37].signal == SIGSEGV);
    fp_shared *h = fp_shared_alloc(p, 1), *t = fp_shared_alloc(p, 1);
    conc_future_t *run, *timed, *after;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &h, sizeof h, &run), 0);
    fp_wait_flag(&h->flag, 1);
    TH_CHECK_EQ(conc_forkpool_cancel(run), 0); /* returns once that worker has exited */
    TH_CHECK(!fp_pid_alive(h->pid));
    TH_CHECK_EQ(conc_future_wait(run), ECANCELED);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task_no_term, &t, sizeof t, &timed), 0);
    TH_CHECK_EQ(conc_future_wait(timed), ETIMEDOUT);
    TH_CHECK_EQ(conc_forkpool_outcome(timed, &out[0]), 0);
    TH_CHECK(out[0].status == ETIMEDOUT && out[0].signal == SIGKILL);
    TH_CHECK(!fp_pid_alive(t->pid));
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &after), 0);
    TH_CHECK_EQ(conc_future_wait(after), 0);
    pid_t served = *(const pid_t *)conc_forkpool_result(after, NULL);
    TH_CHECK(served != h->pid && served != t->pid);
    conc_future_release(run);
    conc_future_release(timed);
    conc_future_release(after);
    TH_CHECK_EQ(fp_pidfd_count(), 0);
    conc_forkpool_destroy(p);
}

static void forkpool_holds_pidfds_only_where_it_can_open_them(void) {
    int probe = (int)syscall(SYS_pidfd_open, getpid(), 0), probe_errno = errno;
    bool kernel_gives = probe >= 0;
    if (probe >= 0)
        close(probe);
    int before = fp_pidfd_count();
    conc_forkpool_t *p = fp_create(2);
    TH_CHECK_EQ(fp_pidfd_count() - before, kernel_gives ? 3 : 0);
    conc_forkpool_destroy(p);
    if (!kernel_gives)
        TH_CHECK_EQ(probe_errno, ENOSYS); /* refused, as by an old kernel */
    fp_without_pidfds(fp_pool_without_pidfds, "a pool");
}

/* Without pidfds every kill is a packet to the fork server, and terminate sends one for each
 * worker under the pool lock, where nobody reads the server's answers meanwhile. The server
 * reads one packet per turn and blocks on its answers (a death each) once our socket is
 * full; then its own socket filled, and terminate waited for room in it for good, the pool
 * lock held (hundreds of workers at the default buffers; here 40, the pool's sockets shrunk to
 * the kernel's least by an atfork handler, which runs before the server's fork and each of
 * the server's forks of a worker). Now the sender reads the server's packets while its socket
 * is full. */
static int fp_shrink_armed;

static void fp_shrink_pool_sockets(void) {
    if (!fp_shrink_armed)
        return;
    for (int fd = 3; fd < 256; fd++) {
        int type = 0, least = 1;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET)
            (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &least, sizeof least);
    }
}

static void fp_terminate_many(void) {
    TH_CHECK_EQ(pthread_atfork(fp_shrink_pool_sockets, NULL, NULL), 0);
    fp_shrink_armed = 1;
    conc_forkpool_t *p = fp_create(40);
    TH_CHECK(!p->pidfds);
    conc_forkpool_terminate(p); /* hung here */
    conc_forkpool_destroy(p);
}

static void forkpool_terminate_of_many_workers_without_pidfds_finishes(void) {
    fp_without_pidfds(fp_terminate_many, "terminate");
}

/* Counts its run in s->count[i] before anything else: arg is {fp_shared *s; size_t i}. */
typedef struct fp_mark_arg {
    fp_shared *s;
    size_t i;
} fp_mark_arg;

static int fp_mark_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_mark_arg a;
    memcpy(&a, arg, sizeof a);
    __atomic_fetch_add(&a.s->count[a.i], 1u, __ATOMIC_RELAXED);
    return 0;
}

static void fp_start_hook(void) {
    fp_start_hold *h = fp_start_hold_here;
    if (!h || !__atomic_load_n(&h->armed, __ATOMIC_RELAXED))
        return;
    h->pid = getpid();
    __atomic_store_n(&h->reached, 1u, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&h->open, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
}

static fp_start_hold *fp_start_hold_map(void) {
    void *m = mmap(NULL, sizeof(fp_start_hold), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    TH_CHECK(m != MAP_FAILED);
    memset(m, 0, sizeof(fp_start_hold));
    return (fp_start_hold *)m;
}

/* f ended by a cancel with its fn not running: CANCELLED, ECANCELED, no signal, and the
 * starts it had. */
static void fp_check_cancelled_unstarted(conc_future_t *f, unsigned attempts) {
    TH_CHECK_EQ(conc_future_wait(f), ECANCELED);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_CANCELLED);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK_MSG(o.status == ECANCELED && o.signal == 0 && o.attempts == attempts,
                 "outcome: status %d, signal %d, attempts %u (%u)", o.status, o.signal, o.attempts,
                 attempts);
}

/* cancel of a task that never started: dropped, CANCELLED, ECANCELED with no signal and no
 * attempt; a second cancel finds it done. */
static void fp_cancel_drops(conc_future_t *f) {
    TH_CHECK_EQ(conc_forkpool_cancel(f), 0);
    fp_check_cancelled_unstarted(f, 0);
    TH_CHECK_EQ(conc_forkpool_cancel(f), EBUSY);
}

/* A one-worker pool whose worker has read a fp_mark_task (item 0 of *s) and waits at the
 * start gate, held by *h (armed still: the next worker that gets there stops too). */
static conc_forkpool_t *fp_one_held_at_the_gate(fp_start_hold **h, fp_shared **s,
                                                conc_future_t **f) {
    *h = fp_start_hold_here = fp_start_hold_map();
    __atomic_store_n(&(*h)->armed, 1u, __ATOMIC_RELAXED); /* before create: workers see it */
    conc_forkpool_t *p = fp_create(1);
    *s = fp_shared_alloc(p, 2);
    fp_mark_arg a = {*s, 0};
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &a, sizeof a, f), 0);
    fp_wait_flag(&(*h)->reached, 1); /* the only worker has read it and waits at the gate */
    return p;
}

/* task_timeout runs from fn's start. It ran from the dispatch, so a task whose worker was
 * slow to reach its start gate (taking in a long argument; here a hold before the gate) was
 * SIGTERMed before fn ever ran and ended ETIMEDOUT. Held for 1.5 timeouts, it now runs. */
static void forkpool_task_timeout_runs_from_fn_s_start(void) {
    fp_start_hold *h = fp_start_hold_here = fp_start_hold_map();
    __atomic_store_n(&h->armed, 1u, __ATOMIC_RELAXED); /* before create: workers see it */
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.shared_size = 1u << 20;
    o.task_timeout = fp_timeout_ns();
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    fp_shared *s = fp_shared_alloc(p, 1);
    fp_mark_arg a = {s, 0};
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &a, sizeof a, &f), 0);
    fp_wait_flag(&h->reached, 1);
    int64_t held_until = th_now() + o.task_timeout * 3 / 2;
    while (th_now() < held_until)
        th_sleep_ns(CONC_MS);
    TH_CHECK(!conc_future_is_done(f)); /* it was killed, and ETIMEDOUT, by now */
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED);
    __atomic_store_n(&h->open, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK_MSG(out.status == 0 && out.signal == 0 && out.attempts == 1,
                 "outcome: status %d, signal %d, attempts %u", out.status, out.signal,
                 out.attempts);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 1u);
    conc_future_release(f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* A task handed over to its worker but not yet started is dropped, as a queued one is: its fn
 * never runs, its worker is not killed but takes the next task, its future is CANCELLED and its
 * outcome says ECANCELED with no signal and no attempt. (Before the start gate, cancel killed
 * the worker of every task handed over, started or not.) */
static void forkpool_cancel_handed_over_not_started_drops(void) {
    fp_start_hold *h;
    fp_shared *s;
    conc_future_t *f, *after;
    conc_forkpool_t *p = fp_one_held_at_the_gate(&h, &s, &f);
    fp_cancel_drops(f);
    TH_CHECK(fp_pid_alive(h->pid)); /* cancel did not kill it */
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED);
    __atomic_store_n(&h->open, 1u, __ATOMIC_RELEASE);
    /* The same worker, not a replacement, serves the next task. */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &after), 0);
    TH_CHECK_EQ(conc_future_wait(after), 0);
    TH_CHECK_EQ(*(const pid_t *)conc_forkpool_result(after, NULL), h->pid);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 0u); /* fn never ran */
    conc_future_release(f);
    conc_future_release(after);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* A worker that dies holding a task it has not started (read, not claimed at the start gate:
 * killed while idle, say, as the task reached it) takes nothing with it: fn never ran there,
 * so the task runs on the replacement, as if it had waited in the queue, with one attempt and
 * no retry spent (retries is 0 here). Before the death took the gate, it ended ECHILD,
 * SIGKILL, attempts 1: the death of a worker it never ran on. */
static void forkpool_worker_dead_before_the_start_gate_runs_the_task_elsewhere(void) {
    fp_start_hold *h;
    fp_shared *s;
    conc_future_t *f, *pid_f;
    conc_forkpool_t *p = fp_one_held_at_the_gate(&h, &s, &f);
    pid_t held = h->pid;
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED); /* the replacement goes straight on */
    TH_CHECK_EQ(kill(held, SIGKILL), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_DONE);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK_MSG(o.status == 0 && o.signal == 0 && o.exit_code == 0 && o.attempts == 1,
                 "outcome: status %d, signal %d, exit code %d, attempts %u", o.status, o.signal,
                 o.exit_code, o.attempts);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 1u); /* once, elsewhere */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &pid_f), 0);
    TH_CHECK_EQ(conc_future_wait(pid_f), 0);
    TH_CHECK(*(const pid_t *)conc_forkpool_result(pid_f, NULL) != held); /* a replacement */
    conc_future_release(f);
    conc_future_release(pid_f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* The fork server dies while a map runs in another thread, and destroy comes at once (or a
 * moment later): destroy waits for that map, which returns EPIPE (the pool's end). Shutdown
 * stopped waiting for a map once the pool had given up, and the monitor ended without ending
 * the map's round, so destroy freed the pool under the map (ASan: a use after free; or the
 * map slept for good). */
typedef struct fp_gave_up {
    conc_forkpool_t *p;
    fp_shared *s;
    int map_result; /* read after the join */
} fp_gave_up;

static int fp_raise_and_hang(size_t i, void *arg) {
    fp_shared *s = (fp_shared *)arg;
    (void)i;
    __atomic_fetch_add(&s->flag, 1u, __ATOMIC_RELEASE);
    while (true)
        pause(); /* killed here */
    return 0;
}

static void *fp_gave_up_mapper(void *arg) {
    fp_gave_up *g = (fp_gave_up *)arg;
    g->map_result = conc_forkpool_map(g->p, fp_raise_and_hang, g->s, 8, NULL);
    return NULL;
}

static void forkpool_destroy_waits_for_a_map_the_pool_gave_up_on(void) {
    for (int round = 0; round < 6; round++) {
        fp_gave_up g;
        memset(&g, 0, sizeof g);
        g.p = fp_create(2);
        g.s = fp_shared_alloc(g.p, 1);
        pthread_t mapper;
        TH_CHECK_EQ(pthread_create(&mapper, NULL, fp_gave_up_mapper, &g), 0);
        fp_wait_flag(&g.s->flag, 2); /* both workers run an item of the map */
        TH_CHECK_EQ(kill(g.p->server_pid, SIGKILL), 0);
        if (round % 2)
            th_sleep_ns(round * 100 * 1000);
        conc_forkpool_destroy(g.p);
        TH_CHECK_EQ(pthread_join(mapper, NULL), 0);
        TH_CHECK_EQ(g.map_result, EPIPE);
    }
    fp_check_no_children();
}

/* A worker with no memory for a task's argument (here: an address-space limit that init sets
 * in every worker) exited with code 1 before the start gate, which read as fn's own exit(1)
 * and cost a fork per try. Now it reads the bytes and drops them, and the task ends ENOMEM
 * with one attempt and fn never run; the same worker then runs the next task. Plain builds
 * only, like every address-space limit here. */
enum { FP_ARG_HEADROOM = 16 << 20, FP_BIG_ARG = 64 << 20 };

static int fp_limit_address_space(void *arg) {
    (void)arg;
    struct rlimit rl = {(rlim_t)fp_vm_bytes() + FP_ARG_HEADROOM, RLIM_INFINITY};
    return setrlimit(RLIMIT_AS, &rl) == 0 ? 0 : errno;
}

static int fp_count_run(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    __atomic_fetch_add(&s->count[0], 1u, __ATOMIC_RELAXED);
    return 0;
}

static void forkpool_task_whose_argument_the_worker_cannot_hold_ends_enomem(void) {
    if (TH_SANITIZED)
        TH_SKIP("an address-space limit: plain builds only");
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.shared_size = 1u << 20;
    o.init = fp_limit_address_space;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    pid_t before, after;
    TH_CHECK_EQ(conc_forkpool_pids(p, &before, 1), 1);
    fp_shared *s = fp_shared_alloc(p, 1);
    char *big = (char *)calloc(1, FP_BIG_ARG);
    TH_CHECK(big != NULL);
    memcpy(big, &s, sizeof s); /* fn, if it ran, would count */
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_count_run, big, FP_BIG_ARG, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ENOMEM);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK_MSG(out.status == ENOMEM && out.signal == 0 && out.exit_code == 0 && out.attempts == 1,
                 "outcome: status %d, signal %d, exit %d, attempts %u", out.status, out.signal,
                 out.exit_code, out.attempts);
    conc_future_release(f);
    free(big);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 0u); /* fn never ran */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_count_run, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0); /* the stream stayed in step */
    conc_future_release(f);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 1u);
    TH_CHECK_EQ(conc_forkpool_pids(p, &after, 1), 1);
    TH_CHECK_EQ(after, before); /* the same worker */
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* SIGPIPE in the workers is the host's at create: ignored (as servers and Python ignore it),
 * a task's write to a pipe whose reader is gone fails with EPIPE and the task's result
 * stands; it was reset to the default, which killed the worker and lost the result (ECHILD,
 * SIGPIPE). With the default in the host, the worker dies of it as the host would. */
static int fp_write_to_a_readerless_pipe(const void *arg, size_t len, void **result,
                                         size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    int fds[2];
    if (pipe(fds) != 0)
        return errno;
    close(fds[0]);
    ssize_t r = write(fds[1], "x", 1);
    int e = r < 0 ? errno : 0;
    close(fds[1]);
    return e == EPIPE ? 0 : -1; /* 0: the write failed with EPIPE, the task goes on */
}

static void forkpool_workers_keep_the_hosts_ignored_sigpipe(void) {
    for (int ignored = 1; ignored >= 0; ignored--) {
        signal(SIGPIPE, ignored ? SIG_IGN : SIG_DFL);
        conc_forkpool_t *p = fp_create(1);
        signal(SIGPIPE, ignored ? SIG_DFL : SIG_IGN); /* the pool keeps what create saw */
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_write_to_a_readerless_pipe, NULL, 0, &f), 0);
        int st = conc_future_wait(f);
        conc_forkpool_outcome_t out;
        TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
        if (ignored)
            TH_CHECK_MSG(st == 0 && out.signal == 0, "status %d, signal %d", st, out.signal);
        else
            TH_CHECK_MSG(st == ECHILD && out.signal == SIGPIPE, "status %d, signal %d", st,
                         out.signal);
        conc_future_release(f);
        conc_forkpool_destroy(p);
    }
    signal(SIGPIPE, SIG_DFL);
    fp_check_no_children();
}

/* A task whose worker dies before its start gate every time (one that cannot take the task's
 * argument: out of memory for it, say) went back to the queue for good, handed to worker
 * after worker. It goes back CONC__FORKPOOL_PUT_BACK_MAX times; the next such death is its
 * own outcome: ECHILD with the signal, one attempt, fn never run. */
static void forkpool_task_whose_workers_all_die_before_its_gate_ends(void) {
    fp_start_hold *h;
    fp_shared *s;
    conc_future_t *f;
    conc_forkpool_t *p = fp_one_held_at_the_gate(&h, &s, &f); /* held; stays armed */
    for (unsigned death = 0; death <= CONC__FORKPOOL_PUT_BACK_MAX; death++) {
        pid_t held = h->pid;
        __atomic_store_n(&h->reached, 0u, __ATOMIC_RELAXED); /* the next holder raises it */
        TH_CHECK_EQ(kill(held, SIGKILL), 0);
        if (death < CONC__FORKPOOL_PUT_BACK_MAX)
            fp_wait_flag(&h->reached, 1); /* put back: the replacement holds it at the gate */
    }
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK_MSG(o.status == ECHILD && o.signal == SIGKILL && o.attempts == 1,
                 "outcome: status %d, signal %d, attempts %u", o.status, o.signal, o.attempts);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 0u); /* fn never ran */
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED);
    conc_future_release(f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* The replacement's init waits for the test (shared memory mapped before create, so every
 * worker inherits it): the first worker's init passes, later ones stop until `open`. */
typedef struct fp_init_hold {
    uint32_t calls;   /* relaxed: instrumentation, raised at each init */
    uint32_t reached; /* release/acquire: a replacement waits in init */
    uint32_t open;    /* the test's go */
} fp_init_hold;

static int fp_init_held_after_first(void *arg) {
    fp_init_hold *h = (fp_init_hold *)arg;
    if (__atomic_fetch_add(&h->calls, 1u, __ATOMIC_RELAXED) == 0)
        return 0;
    __atomic_store_n(&h->reached, 1u, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&h->open, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    return 0;
}

/* A one-worker pool (retries as given) whose replacements wait in init on *ih. */
static conc_forkpool_t *fp_create_init_held(fp_init_hold **ih, unsigned retries) {
    *ih = (fp_init_hold *)mmap(NULL, sizeof(fp_init_hold), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(*ih != MAP_FAILED);
    memset(*ih, 0, sizeof **ih);
    conc_forkpool_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.workers = 1;
    opts.shared_size = 64u << 20;
    opts.retries = retries;
    opts.init = fp_init_held_after_first;
    opts.init_arg = *ih;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &opts), 0);
    return p;
}

/* The task a death put back waits in the queue (the replacement is still in init): a cancel
 * there drops it as any queued task, CANCELLED (its future had gone RUNNING when it was
 * handed over), ECANCELED with no signal and no attempt, fn never run; the task behind it
 * runs on the replacement. */
static void forkpool_task_put_back_by_a_death_cancels_as_queued(void) {
    fp_start_hold *h = fp_start_hold_here = fp_start_hold_map();
    __atomic_store_n(&h->armed, 1u, __ATOMIC_RELAXED);
    fp_init_hold *ih;
    conc_forkpool_t *p = fp_create_init_held(&ih, 0);
    fp_shared *s = fp_shared_alloc(p, 2);
    fp_mark_arg a0 = {s, 0}, a1 = {s, 1};
    conc_future_t *f, *behind;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &a0, sizeof a0, &f), 0);
    fp_wait_flag(&h->reached, 1);
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &a1, sizeof a1, &behind), 0); /* queued */
    TH_CHECK_EQ(kill(h->pid, SIGKILL), 0);
    /* The replacement is asked for by the death's handling, after it put the task back. */
    fp_wait_flag(&ih->reached, 1);
    fp_cancel_drops(f);
    __atomic_store_n(&ih->open, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(behind), 0);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(behind, &o), 0);
    TH_CHECK_EQ(o.attempts, 1u);
    conc_forkpool_shutdown(p, false); /* every worker reaped: nothing runs fn any more */
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 0u);
    TH_CHECK_EQ(__atomic_load_n(&s->count[1], __ATOMIC_RELAXED), 1u);
    conc_future_release(f);
    conc_future_release(behind);
    conc_forkpool_destroy(p);
    munmap(ih, sizeof *ih);
    fp_check_no_children();
}

/* A task whose worker died under it waits in the queue for its retry (the replacement is still
 * in init): a cancel there, or terminate, ends it CANCELLED, as any queued task, with the
 * death's start counted (attempts 1) and no signal (the SIGKILL ended that start; the cancel
 * ended the task: it kept the death's signal); fn does not run again. terminate kills the
 * replacement in its init too. */
static void fp_end_a_retry_waiting(bool terminate) {
    fp_init_hold *ih;
    conc_forkpool_t *p = fp_create_init_held(&ih, 1);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
    fp_wait_flag(&ih->reached, 1); /* it died; its replacement waits in init; f waits queued */
    if (terminate)
        conc_forkpool_terminate(p);
    else
        TH_CHECK_EQ(conc_forkpool_cancel(f), 0);
    fp_check_cancelled_unstarted(f, 1);
    __atomic_store_n(&ih->open, 1u, __ATOMIC_RELEASE);
    conc_forkpool_shutdown(p, false);
    TH_CHECK_EQ(__atomic_load_n(&ih->calls, __ATOMIC_RELAXED), 2u); /* no third worker */
    conc_future_release(f);
    conc_forkpool_destroy(p);
    munmap(ih, sizeof *ih);
    fp_check_no_children();
}

static void forkpool_retry_cancelled_while_queued_is_cancelled(void) {
    fp_end_a_retry_waiting(false);
}

/* Cancel right after submit, round after round, races the worker's claim at the start gate:
 * whoever wins, the outcome must say what happened. Dropped (no signal, no attempt): fn never
 * ran; killed (SIGKILL, one attempt): it may have; done first (cancel EBUSY): it ran once. */
static void forkpool_cancel_races_the_start_gate(void) {
    conc_forkpool_t *p = fp_create(2);
    size_t rounds = (size_t)th_iters(300);
    fp_shared *s = fp_shared_alloc(p, rounds);
    bool *was_dropped = (bool *)calloc(rounds, sizeof *was_dropped);
    TH_CHECK(was_dropped != NULL);
    size_t dropped = 0, killed = 0, done = 0;
    for (size_t i = 0; i < rounds; i++) {
        fp_mark_arg a = {s, i};
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &a, sizeof a, &f), 0);
        int c = conc_forkpool_cancel(f);
        int w = conc_future_wait(f);
        conc_forkpool_outcome_t o;
        TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
        uint32_t ran = __atomic_load_n(&s->count[i], __ATOMIC_RELAXED);
        if (c == EBUSY) { /* it finished before the cancel */
            TH_CHECK_MSG(w == 0 && o.status == 0 && ran == 1, "round %zu: wait %d, ran %u", i, w,
                         ran);
            done++;
        } else if (o.signal == 0) {
            TH_CHECK_EQ(c, 0);
            TH_CHECK_MSG(w == ECANCELED && o.status == ECANCELED && o.attempts == 0 && ran == 0,
                         "round %zu: dropped, but wait %d, status %d, attempts %u, ran %u", i, w,
                         o.status, o.attempts, ran);
            TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_CANCELLED);
            was_dropped[i] = true;
            dropped++;
        } else {
            TH_CHECK_EQ(c, 0);
            TH_CHECK_MSG(w == ECANCELED && o.status == ECANCELED && o.signal == SIGKILL &&
                             o.attempts == 1 && ran <= 1,
                         "round %zu: killed, but wait %d, status %d, signal %d, attempts %u, "
                         "ran %u",
                         i, w, o.status, o.signal, o.attempts, ran);
            TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_CANCELLED);
            killed++;
        }
        conc_future_release(f);
    }
    printf("    %zu rounds: %zu dropped (queued or at the gate), %zu killed, %zu done first\n",
           rounds, dropped, killed, done);
    /* Once every worker has been reaped, a dropped task's fn has still never run (a worker
     * that ran it anyway could have done so after the wait above returned). */
    conc_forkpool_shutdown(p, false);
    for (size_t i = 0; i < rounds; i++)
        if (was_dropped[i])
            TH_CHECK_MSG(__atomic_load_n(&s->count[i], __ATOMIC_RELAXED) == 0,
                         "round %zu: dropped, yet its fn ran", i);
    free(was_dropped);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* conc_future_cancel dropped a queued task first: the future is done, so conc_forkpool_cancel
 * says EBUSY (the task still sat in the pool's queue, and was reported dropped again). */
static void forkpool_cancel_after_future_cancel(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *run, *queued;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &run), 0);
    fp_wait_flag(&s->flag, 1); /* it holds the only worker: the next task stays queued */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "q", 1, &queued), 0);
    TH_CHECK_EQ(conc_future_cancel(queued), 0);
    TH_CHECK_EQ(conc_forkpool_cancel(queued), EBUSY);
    TH_CHECK_EQ(conc_forkpool_cancel(queued), EBUSY);
    TH_CHECK_EQ(conc_future_state(queued), CONC_FUTURE_CANCELLED);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(queued, &o), 0);
    TH_CHECK(o.status == ECANCELED && o.attempts == 0);
    TH_CHECK_EQ(conc_forkpool_cancel(run), 0);
    TH_CHECK_EQ(conc_future_wait(run), ECANCELED);
    conc_future_release(run);
    conc_future_release(queued);
    conc_forkpool_destroy(p);
}

/* conc_forkpool_cancel of a task whose result has left its worker but is not yet read: the
 * worker is SIGKILLed all the same, so the task queued behind must not be handed to it. The
 * monitor thread is held in an on_done callback (they run there) while the quick task runs,
 * returns and sends its result; once the worker is asleep again (in its read of the next
 * message: nothing else blocks between fn's return and it), the result is on its way. */
typedef struct fp_cancel_race {
    uint32_t go;  /* parent -> the gate task: return */
    uint32_t ran; /* the quick task ran, in worker `pid` */
    pid_t pid;
    uint32_t held;    /* parent-side: the monitor is in the callback ... */
    uint32_t release; /* ... until this is set */
} fp_cancel_race;

static int fp_gate_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_cancel_race *r;
    memcpy(&r, arg, sizeof r);
    fp_wait_flag(&r->go, 1);
    return 0;
}

static int fp_quick_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_cancel_race *r;
    memcpy(&r, arg, sizeof r);
    r->pid = getpid();
    __atomic_store_n(&r->ran, 1u, __ATOMIC_RELEASE);
    return 0;
}

static void fp_hold_monitor(conc_future_t *f, void *arg) {
    (void)f;
    fp_cancel_race *r = (fp_cancel_race *)arg;
    __atomic_store_n(&r->held, 1u, __ATOMIC_RELEASE);
    fp_wait_flag(&r->release, 1);
}

/* Waits until process pid sleeps (state S in /proc/PID/stat). */
static void fp_wait_asleep(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (;;) {
        FILE *f = fopen(path, "r");
        TH_CHECK(f != NULL);
        char state = 0;
        int n = fscanf(f, "%*d %*s %c", &state);
        fclose(f);
        TH_CHECK(n == 1 && state != 'Z');
        if (state == 'S')
            return;
        th_sleep_ns(FP_FLAG_WAIT_NS);
    }
}

/* conc_forkpool_cancel of a running task returns (and completes its future) only once its
 * worker has exited: fn writes nothing to the shared region after. It returned as soon as
 * the SIGKILL was sent, and a worker running on another CPU went on writing for a moment (in
 * about half the rounds here), into memory the caller may already have freed and handed out
 * again. Rounds from a plain thread, then one from an on_done callback on the monitor. */
typedef struct fp_spin {
    uint64_t count;        /* the spinning task's writes */
    pid_t pid;             /* its worker */
    uint32_t ran, go;      /* the gate task's */
    conc_future_t *victim; /* parent-side: what the callback cancels */
    uint64_t at_cancel;    /* parent-side: count when the callback's cancel returned */
    int cancelled;         /* parent-side: the callback's cancel's return */
    int alive;             /* parent-side: its worker ran when the callback's cancel returned */
    uint32_t called;       /* parent-side: the callback has returned */
} fp_spin;

static int fp_spin_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_spin *s;
    memcpy(&s, arg, sizeof s);
    s->pid = getpid();
    while (__atomic_add_fetch(&s->count, 1u, __ATOMIC_RELAXED) != 0) { /* until killed */
    }
    return 0;
}

static int fp_spin_gate_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_spin *s;
    memcpy(&s, arg, sizeof s);
    __atomic_store_n(&s->ran, 1u, __ATOMIC_RELEASE);
    fp_wait_flag(&s->go, 1);
    return 0;
}

static void fp_cancel_victim(conc_future_t *f, void *arg) {
    (void)f;
    fp_spin *s = (fp_spin *)arg;
    s->cancelled = conc_forkpool_cancel(s->victim);
    s->at_cancel = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
    s->alive = fp_pid_alive(s->pid);
    __atomic_store_n(&s->called, 1u, __ATOMIC_RELEASE);
}

/* Starts the spinning task and waits until it writes. */
static conc_future_t *fp_start_spin(conc_forkpool_t *p, fp_spin *s) {
    __atomic_store_n(&s->count, 0u, __ATOMIC_RELAXED);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_spin_task, &s, sizeof s, &f), 0);
    while (__atomic_load_n(&s->count, __ATOMIC_RELAXED) < 1000)
        th_sleep_ns(FP_FLAG_WAIT_NS);
    return f;
}

/* The spinner's worker is gone, and it wrote nothing after `at`. */
static void fp_check_spin_stopped(const fp_spin *s, uint64_t at, int round) {
    while (fp_pid_alive(s->pid))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    uint64_t now = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
    TH_CHECK_MSG(now == at, "round %d: %llu writes after cancel returned", round,
                 (unsigned long long)(now - at));
}

static void forkpool_cancel_returns_once_the_worker_is_dead(void) {
    conc_forkpool_t *p = fp_create(2);
    fp_spin *s = (fp_spin *)conc_forkpool_alloc(p, sizeof *s);
    TH_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    int rounds = 20;
    for (int round = 0; round < rounds; round++) {
        conc_future_t *f = fp_start_spin(p, s);
        TH_CHECK_EQ(conc_forkpool_cancel(f), 0);
        uint64_t at = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
        TH_CHECK_MSG(!fp_pid_alive(s->pid), "round %d: the worker still runs", round);
        TH_CHECK(conc_future_is_done(f));
        fp_check_spin_stopped(s, at, round);
        TH_CHECK_EQ(conc_future_wait(f), ECANCELED);
        conc_future_release(f);
    }
    s->victim = fp_start_spin(p, s);
    conc_future_t *gate;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_spin_gate_task, &s, sizeof s, &gate), 0);
    TH_CHECK_EQ(conc_future_on_done(gate, fp_cancel_victim, s), 0); /* before it can finish */
    __atomic_store_n(&s->go, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(gate), 0);
    fp_wait_flag(&s->called, 1);
    TH_CHECK_EQ(s->cancelled, 0);
    TH_CHECK_EQ(s->alive, 0);
    TH_CHECK_EQ(conc_future_wait(s->victim), ECANCELED);
    fp_check_spin_stopped(s, s->at_cancel, rounds);
    conc_future_release(s->victim);
    conc_future_release(gate);
    conc_forkpool_free(p, s);
    conc_forkpool_destroy(p);
}

/* Without pidfds cancel kills through the server and waits for the worker's exit. From an
 * on_done callback, on the monitor thread, after the same callback killed every other worker:
 * the server reported those deaths until our socket was full and then waited for room, never
 * reading the KILL, and the monitor, the one reader of its reports, was the thread waiting
 * (40 workers, the pool's sockets shrunk by fp_shrink_pool_sockets: hung). Now that wait reads
 * the server's packets too. */
typedef struct fp_cb_cancel {
    conc_forkpool_t *pool;
    conc_future_t *victim;
    fp_shared *s; /* the victim's: its pid */
    int status;   /* the callback's cancel */
    uint32_t called;
} fp_cb_cancel;

static void fp_kill_the_others_then_cancel(conc_future_t *f, void *arg) {
    (void)f;
    fp_cb_cancel *c = (fp_cb_cancel *)arg;
    pid_t pids[64];
    size_t n = conc_forkpool_pids(c->pool, pids, 64);
    for (size_t i = 0; i < n; i++)
        if (pids[i] != c->s->pid)
            (void)kill(pids[i], SIGKILL);
    for (size_t i = 0; i < n; i++) /* dead: the server reports each as it reaps it */
        while (pids[i] != c->s->pid && fp_pid_alive(pids[i]))
            th_sleep_ns(FP_FLAG_WAIT_NS);
    c->status = conc_forkpool_cancel(c->victim); /* hung here */
    __atomic_store_n(&c->called, 1u, __ATOMIC_RELEASE);
}

/* Returns once the test raises count[0] of the fp_shared it got the address of. */
static int fp_wait_count_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *g = fp_task_shared(arg);
    fp_wait_flag(&g->count[0], 1);
    return 0;
}

static void fp_cancel_from_on_done(void) {
    TH_CHECK_EQ(pthread_atfork(fp_shrink_pool_sockets, NULL, NULL), 0);
    fp_shrink_armed = 1;
    fp_cb_cancel c;
    memset(&c, 0, sizeof c);
    c.pool = fp_create(40);
    c.s = fp_shared_alloc(c.pool, 1);
    TH_CHECK_EQ(conc_forkpool_submit(c.pool, fp_hang_task, &c.s, sizeof c.s, &c.victim), 0);
    fp_wait_flag(&c.s->flag, 1);
    fp_shared *g = fp_shared_alloc(c.pool, 1);
    conc_future_t *gate;
    TH_CHECK_EQ(conc_forkpool_submit(c.pool, fp_wait_count_task, &g, sizeof g, &gate), 0);
    TH_CHECK_EQ(conc_future_on_done(gate, fp_kill_the_others_then_cancel, &c), 0);
    __atomic_store_n(&g->count[0], 1u, __ATOMIC_RELEASE); /* the callback runs on the monitor */
    TH_CHECK_EQ(conc_future_wait(gate), 0);
    fp_wait_flag(&c.called, 1);
    TH_CHECK_EQ(c.status, 0);
    TH_CHECK_EQ(conc_future_wait(c.victim), ECANCELED);
    TH_CHECK(!fp_pid_alive(c.s->pid));
    conc_future_release(c.victim);
    conc_future_release(gate);
    conc_forkpool_destroy(c.pool);
}

static void forkpool_cancel_from_on_done_after_many_deaths_without_pidfds(void) {
    fp_without_pidfds(fp_cancel_from_on_done, "cancel from on_done");
}

/* conc_forkpool_cancel in a fork of the parent says EPERM, as map and submit do. The fork's
 * copy of the pool holds the parent's pidfds: its cancel returned 0 and SIGKILLed the
 * parent's worker, whose task then ended ECHILD in the parent. */
static void forkpool_cancel_in_a_fork_says_eperm(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_spin *s = (fp_spin *)conc_forkpool_alloc(p, sizeof *s);
    TH_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_spin_gate_task, &s, sizeof s, &f), 0);
    fp_wait_flag(&s->ran, 1); /* running */
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0)
        _exit(conc_forkpool_cancel(f) == EPERM ? 0 : 1);
    int st;
    TH_CHECK_EQ(waitpid(child, &st, 0), child);
    TH_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "cancel in the fork did not say EPERM");
    __atomic_store_n(&s->go, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), 0); /* untouched */
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK(o.status == 0 && o.signal == 0 && o.attempts == 1);
    conc_future_release(f);
    conc_forkpool_free(p, s);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

static void forkpool_cancel_after_result_spares_next(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_cancel_race *r = (fp_cancel_race *)conc_forkpool_alloc(p, sizeof *r);
    TH_CHECK(r != NULL);
    memset(r, 0, sizeof *r);
    conc_future_t *gate, *quick, *next;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_gate_task, &r, sizeof r, &gate), 0);
    TH_CHECK_EQ(conc_future_on_done(gate, fp_hold_monitor, r), 0); /* before it can finish */
    __atomic_store_n(&r->go, 1u, __ATOMIC_RELEASE);
    fp_wait_flag(&r->held, 1); /* the monitor reads no socket until r->release */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_quick_task, &r, sizeof r, &quick), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &next), 0); /* queued behind */
    fp_wait_flag(&r->ran, 1);
    fp_wait_asleep(r->pid);                      /* quick's result is sent, unread */
    TH_CHECK_EQ(conc_forkpool_cancel(quick), 0); /* still running in the books: killed */
    __atomic_store_n(&r->release, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(quick), ECANCELED);
    TH_CHECK_EQ(conc_future_wait(next), 0); /* on the replacement, untouched by the kill */
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(next, &o), 0);
    TH_CHECK(o.status == 0 && o.signal == 0 && o.attempts == 1);
    TH_CHECK(fp_pid_of(next) != r->pid);
    TH_CHECK_EQ(conc_forkpool_outcome(quick, &o), 0);
    TH_CHECK(o.status == ECANCELED && o.attempts == 1);
    TH_CHECK_EQ(conc_future_wait(gate), 0);
    conc_future_release(gate);
    conc_future_release(quick);
    conc_future_release(next);
    conc_forkpool_destroy(p);
}

/* A pool whose tasks time out (fp_timeout_ns), with room for shared flags. */
static conc_forkpool_t *fp_timed_pool(unsigned workers) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = workers;
    o.task_timeout = fp_timeout_ns();
    o.shared_size = 16u << 20;
    conc_forkpool_t *p = NULL;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    return p;
}

static void forkpool_submit_timeout_and_crash(void) {
    conc_forkpool_t *p = fp_timed_pool(2);
    fp_shared *s = fp_shared_alloc(p, 1), *s2 = fp_shared_alloc(p, 1);
    conc_future_t *f, *g, *h;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "ok", 3, &g), 0);
    TH_CHECK_EQ(conc_future_wait(g), 0); /* the other worker is free meanwhile */
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task_no_term, &s2, sizeof s2, &h), 0);
    TH_CHECK_EQ(conc_future_wait(f), ETIMEDOUT);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK(out.status == ETIMEDOUT && out.signal == SIGTERM && out.attempts == 1);
    TH_CHECK_EQ(conc_future_wait(h), ETIMEDOUT); /* TERM ignored: KILL after the grace */
    TH_CHECK_EQ(conc_forkpool_outcome(h, &out), 0);
    TH_CHECK(out.status == ETIMEDOUT && out.signal == SIGKILL && out.attempts == 1);
    TH_CHECK(!fp_pid_alive(s->pid) && !fp_pid_alive(s2->pid));
    conc_future_release(f);
    conc_future_release(g);
    conc_future_release(h);
    conc_forkpool_destroy(p);
}

/* task_timeout may be as large as CONC_FOREVER, no limit in practice. The monitor's deadline
 * sums (start + timeout) overflowed: undefined, an abort under -fsanitize=undefined, and
 * elsewhere a wrapped deadline far in the past for the monitor to wake at. While a task and
 * then a map item wait on a gate, the monitor's wake time must not be in the past. */
typedef struct fp_forever {
    uint32_t ran, go;
} fp_forever;

static int fp_forever_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_forever *g;
    memcpy(&g, arg, sizeof g);
    __atomic_store_n(&g->ran, 1u, __ATOMIC_RELEASE);
    fp_wait_flag(&g->go, 1);
    return 0;
}

static int fp_forever_item(size_t i, void *arg) {
    fp_forever *g = (fp_forever *)arg;
    if (i == 0) {
        __atomic_store_n(&g->ran, 2u, __ATOMIC_RELEASE);
        fp_wait_flag(&g->go, 2);
    }
    return 0;
}

static conc_forkpool_t *fp_forever_pool;
static void *fp_forever_map(void *arg) {
    return (void *)(intptr_t)conc_forkpool_map(fp_forever_pool, fp_forever_item, arg, 4, NULL);
}

static void fp_check_wake_not_past(conc_forkpool_t *p) {
    int64_t now = conc_now();
    conc_lock_acquire(&p->lock);
    int64_t wake = p->monitor_wake_at;
    conc_lock_release(&p->lock);
    TH_CHECK_MSG(wake >= now, "the monitor wakes at %lld, before now (%lld)", (long long)wake,
                 (long long)now);
}

static void forkpool_task_timeout_forever(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.task_timeout = CONC_FOREVER;
    o.shared_size = 1u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    fp_forever *g = (fp_forever *)conc_forkpool_alloc(p, sizeof *g);
    TH_CHECK(g != NULL);
    memset(g, 0, sizeof *g);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_forever_task, &g, sizeof g, &f), 0);
    fp_wait_flag(&g->ran, 1);
    fp_check_wake_not_past(p);
    __atomic_store_n(&g->go, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    fp_forever_pool = p;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_forever_map, g), 0);
    fp_wait_flag(&g->ran, 2);
    fp_check_wake_not_past(p);
    __atomic_store_n(&g->go, 2u, __ATOMIC_RELEASE);
    void *st;
    TH_CHECK_EQ(pthread_join(t, &st), 0);
    TH_CHECK_EQ((int)(intptr_t)st, 0);
    conc_forkpool_free(p, g);
    conc_forkpool_destroy(p);
}

/* task_timeout holds for a submit task whoever hands it to the worker: here the submitting
 * thread itself (one idle worker, nothing else running, so the monitor had no deadline to
 * sleep until), with a crashed worker before it or not. The overrun task ends ETIMEDOUT by
 * SIGTERM long before its own sleep would; the next task runs on a replacement; a task within
 * its time is untouched (same worker, plain outcome). Twice, so a replacement's task is
 * watched too. */
static void fp_submit_timeout_case(bool crash_first) {
    conc_forkpool_t *p = fp_timed_pool(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *f;
    conc_forkpool_outcome_t out;
    if (crash_first) {
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
        TH_CHECK_EQ(conc_future_wait(f), ECHILD);
        conc_future_release(f);
    }
    for (int round = 0; round < 2; round++) {
        __atomic_store_n(&s->flag, 0u, __ATOMIC_RELAXED);
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_sleep_long_task, &s, sizeof s, &f), 0);
        TH_CHECK_EQ(conc_future_wait(f), ETIMEDOUT);
        TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
        TH_CHECK_EQ(out.status, ETIMEDOUT);
        TH_CHECK_EQ(out.signal, SIGTERM); /* its default action ends sleep() and the worker */
        TH_CHECK_EQ(out.exit_code, 0);
        TH_CHECK_EQ(out.attempts, 1);
        size_t len = 1;
        TH_CHECK(conc_forkpool_result(f, &len) == NULL && len == 0);
        conc_future_release(f);
        fp_wait_flag(&s->flag, 1);
        pid_t timed_out = s->pid;
        TH_CHECK(!fp_pid_alive(timed_out));
        conc_future_t *g, *h;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &g), 0);
        TH_CHECK_EQ(conc_future_wait(g), 0);
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &h), 0);
        TH_CHECK_EQ(conc_future_wait(h), 0);
        TH_CHECK(fp_pid_of(g) != timed_out);     /* a replacement ran it */
        TH_CHECK_EQ(fp_pid_of(h), fp_pid_of(g)); /* within its time: the worker lives on */
        TH_CHECK_EQ(conc_forkpool_outcome(h, &out), 0);
        TH_CHECK(out.status == 0 && out.signal == 0 && out.exit_code == 0 && out.attempts == 1);
        conc_future_release(g);
        conc_future_release(h);
    }
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

static void forkpool_submit_timeout_caller_dispatched(void) {
    fp_submit_timeout_case(false);
}

static void forkpool_submit_timeout_after_crash(void) {
    fp_submit_timeout_case(true);
}

/* A timed-out task whose result comes back in the grace period (it blocks SIGTERM, sees it
 * pending and returns) still ends ETIMEDOUT, by the SIGKILL, and its doomed worker gets no
 * new task: the one queued behind it runs on the replacement. */
static void forkpool_submit_timeout_result_in_grace(void) {
    conc_forkpool_t *p = fp_timed_pool(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_term_then_return, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &g), 0);
    TH_CHECK_EQ(conc_future_wait(f), ETIMEDOUT);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK(out.status == ETIMEDOUT && out.signal == SIGKILL && out.attempts == 1);
    TH_CHECK(conc_forkpool_result(f, NULL) == NULL);
    TH_CHECK_EQ(conc_future_wait(g), 0);
    fp_wait_flag(&s->flag, 1);
    TH_CHECK(fp_pid_of(g) != s->pid);
    TH_CHECK_EQ(conc_forkpool_outcome(g, &out), 0);
    TH_CHECK(out.status == 0 && out.attempts == 1);
    conc_future_release(f);
    conc_future_release(g);
    conc_forkpool_destroy(p);
}

static void forkpool_submit_bounded_queue(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.queue_capacity = 2;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *run, *q[2], *extra = NULL;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &run), 0);
    fp_wait_flag(&s->flag, 1);
    TH_CHECK_EQ(conc_forkpool_try_submit(p, fp_echo, "a", 1, &q[0]), 0);
    TH_CHECK_EQ(conc_forkpool_try_submit(p, fp_echo, "b", 1, &q[1]), 0);
    TH_CHECK_EQ(conc_forkpool_try_submit(p, fp_echo, "c", 1, &extra), EAGAIN);
    TH_CHECK(extra == NULL);
    TH_CHECK_EQ(conc_forkpool_cancel(run), 0); /* frees the worker: the queue drains */
    for (int i = 0; i < 2; i++) {
        TH_CHECK_EQ(conc_future_wait(q[i]), 0);
        conc_future_release(q[i]);
    }
    conc_future_release(run);
    conc_forkpool_shutdown(p, false);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "d", 1, &extra), EPIPE);
    TH_CHECK_EQ(conc_forkpool_try_submit(p, fp_echo, "d", 1, &extra), EPIPE);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, NULL, 1, NULL), EPIPE);
    conc_forkpool_shutdown(p, true); /* idempotent */
    conc_forkpool_destroy(p);
}

static void forkpool_shutdown_cancels_pending(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *run, *q;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &run), 0);
    fp_wait_flag(&s->flag, 1);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "a", 1, &q), 0);
    TH_CHECK_EQ(conc_forkpool_cancel(run), 0);
    conc_forkpool_shutdown(p, true);
    int st = conc_future_wait(q); /* cancelled, unless the worker took it first */
    TH_CHECK(st == ECANCELED || st == 0);
    conc_future_release(run);
    conc_future_release(q);
    conc_forkpool_destroy(p);
}

static int fp_nothing_item(size_t i, void *arg);

/* terminate (Python's Pool.terminate): running work is killed, queued work never runs, both
 * end ECANCELED with CANCELLED futures; the pool then refuses work and leaves no process. */
static void forkpool_terminate_cancels_running_and_queued(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_shared *s = fp_shared_alloc(p, 2);
    conc_future_t *run, *queued;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_hang_task, &s, sizeof s, &run), 0);
    fp_wait_flag(&s->flag, 1); /* running in the only worker */
    fp_mark_arg m0 = {s, 0}, m1 = {s, 1};
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &m0, sizeof m0, &queued), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_mark_task, &m1, sizeof m1, NULL), 0);
    conc_forkpool_terminate(p);
    TH_CHECK(!fp_pid_alive(s->pid));
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_future_wait(run), ECANCELED);
    TH_CHECK_EQ(conc_future_state(run), CONC_FUTURE_CANCELLED);
    TH_CHECK_EQ(conc_forkpool_outcome(run, &o), 0);
    TH_CHECK_MSG(o.status == ECANCELED && o.signal == SIGKILL && o.attempts == 1,
                 "running: status %d signal %d attempts %u", o.status, o.signal, o.attempts);
    fp_check_cancelled_unstarted(queued, 0);
    TH_CHECK_EQ(s->count[0] + s->count[1], 0u); /* neither queued task ran */
    TH_CHECK_EQ(conc_forkpool_cancel(run), EBUSY);
    conc_future_t *late = NULL;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &late), EPIPE);
    TH_CHECK(late == NULL);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 4, NULL), EPIPE);
    conc_forkpool_terminate(p); /* idempotent, as are the shutdown and destroy after it */
    conc_forkpool_shutdown(p, false);
    fp_check_no_children();
    conc_future_release(run);
    conc_future_release(queued);
    conc_forkpool_destroy(p);
}

/* A task nothing else can reach (submitted with no future, no task_timeout) kept shutdown
 * and destroy waiting for good. terminate from another thread ends it, and the shutdown. */
typedef struct fp_waiting_shutdown {
    conc_forkpool_t *p;
    int returned; /* 1 once shutdown returned (release) */
} fp_waiting_shutdown;

static void *fp_shutdown_cancelling(void *arg) {
    fp_waiting_shutdown *w = (fp_waiting_shutdown *)arg;
    conc_forkpool_shutdown(w->p, true);
    __atomic_store_n(&w->returned, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void forkpool_terminate_ends_a_shutdown_waiting_for_a_hung_task(void) {
    fp_waiting_shutdown w = {fp_create(2), 0};
    fp_shared *s = fp_shared_alloc(w.p, 1);
    TH_CHECK_EQ(conc_forkpool_submit(w.p, fp_hang_task, &s, sizeof s, NULL), 0);
    fp_wait_flag(&s->flag, 1);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_shutdown_cancelling, &w), 0);
    /* Not a timing: the shutdown cannot return while the task runs, whenever we look. */
    th_sleep_ns(20 * 1000 * 1000);
    TH_CHECK(!__atomic_load_n(&w.returned, __ATOMIC_ACQUIRE));
    conc_forkpool_terminate(w.p);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK(!fp_pid_alive(s->pid));
    conc_forkpool_destroy(w.p);
    fp_check_no_children();
}

/* terminate during a map (from another thread): the map returns ECANCELED; each item either
 * ran to the end (0, once), was killed running (ECANCELED, SIGKILL, one start) or never
 * started (ECANCELED, no start, never run). */
typedef struct fp_terminated_map {
    conc_forkpool_t *p;
    fp_map_arg *a;
    conc_forkpool_outcome_t *out;
    size_t n;
    int result; /* read after the join */
} fp_terminated_map;

static void *fp_terminated_mapper(void *arg) {
    fp_terminated_map *m = (fp_terminated_map *)arg;
    m->result = conc_forkpool_map(m->p, fp_item, m->a, m->n, m->out);
    return NULL;
}

static void forkpool_terminate_ends_a_running_map(void) {
    enum { N = 256 };
    for (int round = 0; round < 4; round++) {
        fp_terminated_map m;
        m.p = fp_create(2);
        m.n = N;
        fp_shared *s = fp_shared_alloc(m.p, N);
        m.a = fp_arg(m.p, s);
        m.a->special[0] = (size_t)(round % 2 ? N / 2 : 0); /* hangs, raising s->flag */
        m.a->what[0] = FP_HANG;
        m.out = (conc_forkpool_outcome_t *)calloc(N, sizeof *m.out);
        TH_CHECK(m.out != NULL);
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, fp_terminated_mapper, &m), 0);
        fp_wait_flag(&s->flag, 1);
        conc_forkpool_terminate(m.p);
        TH_CHECK_EQ(pthread_join(t, NULL), 0);
        TH_CHECK_EQ(m.result, ECANCELED);
        size_t killed = 0;
        for (size_t i = 0; i < N; i++) {
            conc_forkpool_outcome_t o = m.out[i];
            uint32_t runs = __atomic_load_n(&s->count[i], __ATOMIC_RELAXED);
            bool done = o.status == 0 && o.attempts == 1 && runs == 1;
            bool cut = o.status == ECANCELED && o.signal == SIGKILL && o.attempts == 1 && runs == 1;
            bool never = o.status == ECANCELED && o.signal == 0 && o.attempts == 0 && runs == 0;
            TH_CHECK_MSG(done || cut || never,
                         "round %d item %zu: status %d signal %d attempts %u, ran %u times", round,
                         i, o.status, o.signal, o.attempts, runs);
            killed += cut;
        }
        size_t hung = m.a->special[0];
        TH_CHECK_MSG(m.out[hung].status == ECANCELED && m.out[hung].attempts == 1,
                     "the hung item: status %d attempts %u", m.out[hung].status,
                     m.out[hung].attempts);
        TH_CHECK(killed >= 1 && killed <= 2); /* one item a worker at most */
        free(m.out);
        conc_forkpool_destroy(m.p);
        fp_check_no_children();
    }
}

static void forkpool_terminate_cancels_a_retry_waiting(void) {
    fp_end_a_retry_waiting(true);
}

/* The same for a map: item 0 died (its retry waits: the replacement is held in init) and
 * item 1 never started. terminate ends both ECANCELED with no signal, with the starts they
 * had. Item 0 kept its death (ECHILD, SIGKILL). */
typedef struct fp_held_map {
    conc_forkpool_t *p;
    fp_map_arg *a;
    conc_forkpool_outcome_t out[2];
    int result; /* read after the join */
} fp_held_map;

static void *fp_held_mapper(void *arg) {
    fp_held_map *m = (fp_held_map *)arg;
    m->result = conc_forkpool_map(m->p, fp_item, m->a, 2, m->out);
    return NULL;
}

static void forkpool_terminate_cancels_a_map_retry_waiting(void) {
    fp_init_hold *ih;
    fp_held_map m;
    memset(&m, 0, sizeof m);
    m.p = fp_create_init_held(&ih, 1);
    fp_shared *s = fp_shared_alloc(m.p, 2);
    m.a = fp_arg(m.p, s);
    m.a->special[0] = 0;
    m.a->what[0] = FP_FAIL_ONCE; /* SIGKILLs its worker on its first run */
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_held_mapper, &m), 0);
    fp_wait_flag(&ih->reached, 1); /* item 0's worker died; nothing runs the map now */
    conc_forkpool_terminate(m.p);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_EQ(m.result, ECANCELED);
    TH_CHECK_MSG(m.out[0].status == ECANCELED && m.out[0].signal == 0 && m.out[0].attempts == 1,
                 "item 0: status %d, signal %d, attempts %u", m.out[0].status, m.out[0].signal,
                 m.out[0].attempts);
    TH_CHECK_MSG(m.out[1].status == ECANCELED && m.out[1].signal == 0 && m.out[1].attempts == 0,
                 "item 1: status %d, signal %d, attempts %u", m.out[1].status, m.out[1].signal,
                 m.out[1].attempts);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 1u);
    TH_CHECK_EQ(__atomic_load_n(&s->count[1], __ATOMIC_RELAXED), 0u);
    conc_forkpool_destroy(m.p);
    munmap(ih, sizeof *ih);
    fp_check_no_children();
}

/* A task held before its start gate after CONC__FORKPOOL_PUT_BACK_MAX deaths there: a
 * further death is the task's own (ECHILD, forkpool_task_whose_workers_all_die_...), but not
 * terminate's kill: fn never started, so ECANCELED with no signal and no start. */
static void forkpool_terminate_ends_a_task_held_at_its_gate_unstarted(void) {
    fp_start_hold *h;
    fp_shared *s;
    conc_future_t *f;
    conc_forkpool_t *p = fp_one_held_at_the_gate(&h, &s, &f); /* held; stays armed */
    for (unsigned death = 0; death < CONC__FORKPOOL_PUT_BACK_MAX; death++) {
        __atomic_store_n(&h->reached, 0u, __ATOMIC_RELAXED); /* the next holder raises it */
        TH_CHECK_EQ(kill(h->pid, SIGKILL), 0);
        fp_wait_flag(&h->reached, 1); /* put back: the replacement holds it at the gate */
    }
    conc_forkpool_terminate(p);
    fp_check_cancelled_unstarted(f, 0);
    TH_CHECK_EQ(__atomic_load_n(&s->count[0], __ATOMIC_RELAXED), 0u); /* fn never ran */
    __atomic_store_n(&h->armed, 0u, __ATOMIC_RELAXED);
    conc_future_release(f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* A task whose worker died by itself with a retry due, the death reaching the monitor only
 * after terminate: the monitor is held in an on_done callback of another task, which lets the
 * worker crash, waits for its exit, then terminates. Cancelled, as a retry waiting in the
 * queue is; it ended FAILED with the death's ECHILD, so the outcome hung on which came first. */
static conc_forkpool_t *fp_late_pool;

static int fp_segv_when_told(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    s->pid = getpid();
    __atomic_store_n(&s->count[0], 1u, __ATOMIC_RELEASE);
    fp_wait_flag(&s->count[1], 1);
    raise(SIGSEGV);
    return 0;
}

static int fp_return_when_told(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    fp_wait_flag(&s->count[2], 1);
    return 0;
}

static void fp_crash_then_terminate(conc_future_t *f, void *arg) {
    (void)f;
    fp_shared *s = (fp_shared *)arg;
    __atomic_store_n(&s->count[1], 1u, __ATOMIC_RELEASE); /* the other task's worker crashes */
    while (fp_pid_alive(s->pid))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_forkpool_terminate(fp_late_pool); /* on the monitor: kills, cancels, returns */
    __atomic_store_n(&s->count[3], 1u, __ATOMIC_RELEASE);
}

static void forkpool_terminate_cancels_a_retry_its_death_asks_for_late(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.retries = 1;
    o.shared_size = 1u << 20;
    TH_CHECK_EQ(conc_forkpool_create(&fp_late_pool, &o), 0);
    fp_shared *s = fp_shared_alloc(fp_late_pool, 4);
    conc_future_t *crasher, *holder;
    TH_CHECK_EQ(conc_forkpool_submit(fp_late_pool, fp_segv_when_told, &s, sizeof s, &crasher), 0);
    fp_wait_flag(&s->count[0], 1);
    TH_CHECK_EQ(conc_forkpool_submit(fp_late_pool, fp_return_when_told, &s, sizeof s, &holder), 0);
    TH_CHECK_EQ(conc_future_on_done(holder, fp_crash_then_terminate, s), 0);
    __atomic_store_n(&s->count[2], 1u, __ATOMIC_RELEASE);
    fp_check_cancelled_unstarted(crasher, 1);
    conc_forkpool_shutdown(fp_late_pool, false);
    TH_CHECK_EQ(__atomic_load_n(&s->count[3], __ATOMIC_ACQUIRE), 1u);
    conc_future_release(crasher);
    conc_future_release(holder);
    conc_forkpool_destroy(fp_late_pool);
    fp_check_no_children();
}

/* A plain giving up (no terminate) while a retry waits for a start it never gets: its first
 * start died (SIGSEGV), the retry's worker died before its start gate (the task went back),
 * then the pool gave up (mode 0: every replacement dies in init; mode 1: the fork server is
 * killed while the retry is held at the gate). The task keeps the death that asked for the
 * retry. It ended DONE with status 0 (mode 0), reading as a success of a task whose fn never
 * returned, or EPIPE (mode 1): dispatch had cleared the death for the re-run. */
typedef struct fp_retry_giving_up {
    uint32_t runs;       /* relaxed: fn's starts */
    uint32_t crash_init; /* release/acquire: replacements die in init */
} fp_retry_giving_up;

static int fp_init_crashes_when_told(void *arg) {
    fp_retry_giving_up *g = (fp_retry_giving_up *)arg;
    if (__atomic_load_n(&g->crash_init, __ATOMIC_ACQUIRE))
        raise(SIGKILL);
    return 0;
}

/* The first start arms the gate hold for the retry's worker, then crashes. */
static int fp_segv_arming_the_hold(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_retry_giving_up *g;
    memcpy(&g, arg, sizeof g);
    if (__atomic_fetch_add(&g->runs, 1u, __ATOMIC_RELAXED) == 0) {
        __atomic_store_n(&fp_start_hold_here->armed, 1u, __ATOMIC_RELAXED);
        raise(SIGSEGV);
    }
    return 0;
}

static void forkpool_gave_up_retry_put_back_keeps_its_death(void) {
    fp_start_hold *h = fp_start_hold_here = fp_start_hold_map();
    fp_retry_giving_up *g = (fp_retry_giving_up *)mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE,
                                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(g != MAP_FAILED);
    for (int mode = 0; mode < 2; mode++) {
        memset(h, 0, sizeof *h);
        memset(g, 0, sizeof *g);
        conc_forkpool_opts_t o;
        memset(&o, 0, sizeof o);
        o.workers = 1;
        o.retries = 1;
        o.shared_size = 1u << 20;
        o.init = fp_init_crashes_when_told;
        o.init_arg = g;
        conc_forkpool_t *p;
        TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_segv_arming_the_hold, &g, sizeof g, &f), 0);
        fp_wait_flag(&h->reached, 1); /* the retry, handed over, held before its gate */
        if (mode == 0) {
            __atomic_store_n(&g->crash_init, 1u, __ATOMIC_RELEASE);
            TH_CHECK_EQ(kill(h->pid, SIGKILL), 0);
        } else {
            TH_CHECK_EQ(kill(p->server_pid, SIGKILL), 0);
        }
        TH_CHECK_EQ(conc_future_wait(f), ECHILD);
        TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_FAILED);
        conc_forkpool_outcome_t out;
        TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
        TH_CHECK_MSG(out.status == ECHILD && out.signal == SIGSEGV && out.attempts == 1,
                     "mode %d: status %d, signal %d, attempts %u", mode, out.status, out.signal,
                     out.attempts);
        TH_CHECK_EQ(__atomic_load_n(&g->runs, __ATOMIC_RELAXED), 1u);
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, NULL), EPIPE); /* given up */
        conc_future_release(f);
        conc_forkpool_destroy(p);
        fp_check_no_children();
    }
    munmap(g, sizeof *g);
    munmap(h, sizeof *h);
}

/* -------------------------------------------------------------------------------------------
 * Workers: init, recycling, the pristine image, a parent with threads
 * ------------------------------------------------------------------------------------------- */
static int fp_init_fails(void *arg) {
    (void)arg;
    return 7;
}

static int fp_init_crashes(void *arg) {
    (void)arg;
    raise(SIGKILL);
    return 0;
}

static void forkpool_init_failing_leaves_nothing(void) {
    int fds = fp_fd_count();
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.init = fp_init_fails;
    conc_forkpool_t *p = (conc_forkpool_t *)1;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 7);
    TH_CHECK(p == NULL);
    o.init = fp_init_crashes;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), ECHILD);
    TH_CHECK_EQ(fp_fd_count(), fds);
    fp_check_no_children();
    o.workers = CONC_FORKPOOL_MAX_WORKERS + 1;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), EINVAL);
}

static int fp_init_marks(void *arg) {
    __atomic_fetch_add((uint32_t *)arg, 1u, __ATOMIC_RELAXED);
    return 0;
}

static void forkpool_max_tasks_per_child(void) {
    uint32_t *inits =
        (uint32_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(inits != MAP_FAILED);
    *inits = 0;
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.max_tasks_per_child = 2;
    o.init = fp_init_marks;
    o.init_arg = inits;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    enum { TASKS = 10 };
    pid_t pids[TASKS];
    for (int i = 0; i < TASKS; i++) {
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_getpid, NULL, 0, &f), 0);
        TH_CHECK_EQ(conc_future_wait(f), 0);
        pids[i] = *(const pid_t *)conc_forkpool_result(f, NULL);
        conc_future_release(f);
    }
    int distinct = 0;
    for (int i = 0; i < TASKS; i++) {
        int same = 0, j;
        for (j = 0; j < i; j++)
            same |= pids[j] == pids[i];
        distinct += !same;
        for (j = 0, same = 0; j < TASKS; j++)
            same += pids[j] == pids[i];
        TH_CHECK_EQ(same, 2); /* each worker served exactly two */
    }
    TH_CHECK_EQ(distinct, TASKS / 2);
    /* A map counts chunks: it completes across recycling, exactly once. */
    size_t n = 5000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    fp_check_once_except(s, n, SIZE_MAX);
    conc_forkpool_destroy(p);
    TH_CHECK(__atomic_load_n(inits, __ATOMIC_RELAXED) >= (uint32_t)(TASKS / 2));
    munmap(inits, 4096);
}

/* A replacement sees the parent as it was at create, not as it is now. */
static int fp_image_value = 1;
static int fp_read_image(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len;
    int *r = (int *)malloc(sizeof *r);
    *r = fp_image_value;
    *result = r;
    *result_len = sizeof *r;
    return 0;
}

static void *fp_spinner(void *arg) {
    uint32_t *stop = (uint32_t *)arg;
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE))
        th_sleep_ns(100 * 1000);
    return NULL;
}

typedef struct fp_maker {
    conc_forkpool_t *p;
} fp_maker;

static void *fp_make_pool(void *arg) {
    fp_maker *m = (fp_maker *)arg;
    TH_CHECK_EQ(conc_forkpool_create(&m->p, NULL), 0);
    return NULL;
}

static void forkpool_parent_threads_and_pristine_replacements(void) {
    /* A thread runs in the parent throughout, and the pool is made by a thread that then
     * exits: PDEATHSIG follows the forking thread, and the pool must outlive that one. */
    uint32_t stop = 0;
    pthread_t spin, maker;
    TH_CHECK_EQ(pthread_create(&spin, NULL, fp_spinner, &stop), 0);
    fp_image_value = 1;
    fp_maker m = {NULL};
    TH_CHECK_EQ(pthread_create(&maker, NULL, fp_make_pool, &m), 0);
    TH_CHECK_EQ(pthread_join(maker, NULL), 0);
    conc_forkpool_t *p = m.p;
    fp_image_value = 2; /* after create: no worker may ever see it */
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK(o.signal == SIGKILL && o.attempts == 1);
    conc_future_release(f);
    for (int i = 0; i < 8; i++) { /* replacements among them */
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_read_image, NULL, 0, &f), 0);
        TH_CHECK_EQ(conc_future_wait(f), 0);
        TH_CHECK_EQ(*(const int *)conc_forkpool_result(f, NULL), 1);
        conc_future_release(f);
    }
    size_t n = 20000;
    fp_shared *s = fp_shared_alloc(p, n);
    fp_map_arg *a = fp_arg(p, s);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, a, n, NULL), 0);
    fp_check_once_except(s, n, SIZE_MAX);
    conc_forkpool_destroy(p);
    __atomic_store_n(&stop, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(pthread_join(spin, NULL), 0);
}

/* Replacements whose init crashes: after CONC_FORKPOOL_GIVE_UP immediate deaths the pool
 * gives up: pending work fails with EPIPE, later calls get EPIPE, nothing is left behind. */
static int fp_init_crash_when(void *arg) {
    if (__atomic_load_n((uint32_t *)arg, __ATOMIC_ACQUIRE))
        raise(SIGKILL);
    return 0;
}

static void forkpool_gives_up_on_immediate_deaths(void) {
    int fds = fp_fd_count();
    uint32_t *crash =
        (uint32_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(crash != MAP_FAILED);
    *crash = 0;
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.init = fp_init_crash_when;
    o.init_arg = crash;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    __atomic_store_n(crash, 1u, __ATOMIC_RELEASE);
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &g), 0);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    TH_CHECK_EQ(conc_future_wait(g), EPIPE); /* it never got a worker */
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(g, &out), 0);
    TH_CHECK(out.status == EPIPE && out.attempts == 0);
    conc_future_release(f);
    conc_future_release(g);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &g), EPIPE);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_item, NULL, 10, NULL), EPIPE);
    conc_forkpool_destroy(p);
    munmap(crash, 4096);
    TH_CHECK_EQ(fp_fd_count(), fds);
    fp_check_no_children();
}

/* A worker killed mid-map (retries asked for) whose replacements all die in init: the pool
 * gives up before the retry runs, and the killed item still says how its worker died; items
 * that never ran get EPIPE. The same for a submit task awaiting its re-run. */
typedef struct fp_doom_arg {
    uint32_t *crash; /* fp_init_crash_when's flag, mapped before create */
    size_t victim;
} fp_doom_arg;

/* Dies, and dooms every replacement to die in init (fp_init_crash_when's flag). */
static void fp_die_dooming_replacements(uint32_t *crash) {
    __atomic_store_n(crash, 1u, __ATOMIC_RELEASE);
    raise(SIGKILL);
}

static int fp_doom_item(size_t i, void *arg) {
    const fp_doom_arg *a = (const fp_doom_arg *)arg;
    if (i == a->victim)
        fp_die_dooming_replacements(a->crash);
    return 0;
}

static int fp_doom_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    uint32_t *crash;
    memcpy(&crash, arg, sizeof crash);
    fp_die_dooming_replacements(crash);
    return 0;
}

static void forkpool_gave_up_retry_keeps_its_death(void) {
    uint32_t *crash =
        (uint32_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(crash != MAP_FAILED);
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1; /* the victim's chunk runs in order: items before it are done */
    o.retries = 1;
    o.init = fp_init_crash_when;
    o.init_arg = crash;
    o.shared_size = 16u << 20;
    size_t n = 64, victim = 5;
    conc_forkpool_outcome_t out[64];
    for (int with_outcomes = 1; with_outcomes >= 0; with_outcomes--) {
        __atomic_store_n(crash, 0u, __ATOMIC_RELAXED);
        conc_forkpool_t *p;
        TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
        fp_doom_arg *a = (fp_doom_arg *)conc_forkpool_alloc(p, sizeof *a);
        TH_CHECK(a != NULL);
        a->crash = crash;
        a->victim = victim;
        /* First failing item in index order: the victim, however the outcomes are asked. */
        TH_CHECK_EQ(conc_forkpool_map(p, fp_doom_item, a, n, with_outcomes ? out : NULL), ECHILD);
        if (with_outcomes) {
            for (size_t i = 0; i < victim; i++)
                TH_CHECK(out[i].status == 0 && out[i].attempts == 1);
            TH_CHECK_EQ(out[victim].status, ECHILD);
            TH_CHECK_EQ(out[victim].signal, SIGKILL);
            TH_CHECK_EQ(out[victim].exit_code, 0);
            TH_CHECK_EQ(out[victim].attempts, 1);
            for (size_t i = victim + 1; i < n; i++)
                TH_CHECK_MSG(out[i].status == EPIPE && out[i].attempts == 0,
                             "item %zu: status %d, attempts %u", i, out[i].status, out[i].attempts);
        }
        TH_CHECK_EQ(conc_forkpool_map(p, fp_doom_item, a, n, NULL), EPIPE);
        conc_forkpool_destroy(p);
    }
    __atomic_store_n(crash, 0u, __ATOMIC_RELAXED);
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_doom_task, &crash, sizeof crash, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    conc_forkpool_outcome_t oc;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &oc), 0);
    TH_CHECK(oc.status == ECHILD && oc.signal == SIGKILL && oc.exit_code == 0);
    TH_CHECK_EQ(oc.attempts, 1);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &g), EPIPE); /* given up */
    conc_future_release(f);
    conc_forkpool_destroy(p);
    munmap(crash, 4096);
    fp_check_no_children();
}

/* A queued task whose future was cancelled (conc_future_cancel) when the pool gives up: its
 * outcome says ECANCELED, as its future does and as it would had a worker come free for it.
 * The giving up set EPIPE over it. The only worker runs a task that waits for the word, then
 * dies, and every replacement of it dies in init. */
static int fp_doom_when_told(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    uint32_t *page; /* [0]: fp_init_crash_when's flag, [1]: the word */
    memcpy(&page, arg, sizeof page);
    while (!__atomic_load_n(&page[1], __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    fp_die_dooming_replacements(&page[0]);
    return 0;
}

static void forkpool_gave_up_cancelled_stays_cancelled(void) {
    uint32_t *page =
        (uint32_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(page != MAP_FAILED);
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.init = fp_init_crash_when;
    o.init_arg = &page[0];
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_doom_when_told, &page, sizeof page, &f), 0);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &g), 0); /* queued: no worker free */
    TH_CHECK_EQ(conc_future_cancel(g), 0);
    __atomic_store_n(&page[1], 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    /* Waits for the giving up (g is still queued): every future is final after it. */
    conc_forkpool_destroy(p);
    TH_CHECK_EQ(conc_future_wait(g), ECANCELED);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(g, &out), 0);
    TH_CHECK_MSG(out.status == ECANCELED && out.attempts == 0, "status %d, attempts %u", out.status,
                 out.attempts);
    conc_future_release(f);
    conc_future_release(g);
    munmap(page, 4096);
    fp_check_no_children();
}

/* What a healthy worker runs when the pool gives up (its worker is killed in the giving up)
 * ends with EPIPE, as the items and tasks that never started: it never ran to the end
 * because the pool gave up. It was reported as ECHILD with SIGKILL, as if something outside
 * had killed its worker. One worker hangs in item 0 (or task f); the other dies once it has
 * started, and every replacement of it dies in init. */
typedef struct fp_giveup {
    uint32_t *crash; /* fp_init_crash_when's flag, mapped before create */
    uint32_t hanging;
} fp_giveup;

static int fp_giveup_item(size_t i, void *arg) {
    fp_giveup *g = (fp_giveup *)arg;
    if (i == 0) {
        __atomic_store_n(&g->hanging, 1u, __ATOMIC_RELEASE);
        while (pause() != 0) { /* pause returns only -1: until the giving up kills us */
        }
        return 0;
    }
    while (!__atomic_load_n(&g->hanging, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    fp_die_dooming_replacements(g->crash);
    return 0;
}

static int fp_giveup_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_giveup *g;
    memcpy(&g, arg, sizeof g);
    return fp_giveup_item(0, g);
}

static int fp_giveup_kill_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_giveup *g;
    memcpy(&g, arg, sizeof g);
    return fp_giveup_item(1, g);
}

static void forkpool_gave_up_kill_says_epipe(void) {
    uint32_t *crash =
        (uint32_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(crash != MAP_FAILED);
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2; /* two chunks of one item each: each item on its own worker */
    o.init = fp_init_crash_when;
    o.init_arg = crash;
    o.shared_size = 16u << 20;
    for (int mapping = 1; mapping >= 0; mapping--) {
        __atomic_store_n(crash, 0u, __ATOMIC_RELAXED);
        conc_forkpool_t *p;
        TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
        fp_giveup *g = (fp_giveup *)conc_forkpool_alloc(p, sizeof *g);
        TH_CHECK(g != NULL);
        g->crash = crash;
        g->hanging = 0;
        conc_forkpool_outcome_t out[2];
        if (mapping) {
            TH_CHECK_EQ(conc_forkpool_map(p, fp_giveup_item, g, 2, out), EPIPE);
            TH_CHECK(out[1].status == ECHILD && out[1].signal == SIGKILL); /* died by itself */
            TH_CHECK_EQ(out[1].attempts, 1);
        } else {
            conc_future_t *f, *k;
            TH_CHECK_EQ(conc_forkpool_submit(p, fp_giveup_task, &g, sizeof g, &f), 0);
            TH_CHECK_EQ(conc_forkpool_submit(p, fp_giveup_kill_task, &g, sizeof g, &k), 0);
            TH_CHECK_EQ(conc_future_wait(k), ECHILD);
            TH_CHECK_EQ(conc_future_wait(f), EPIPE);
            TH_CHECK_EQ(conc_forkpool_outcome(f, &out[0]), 0);
            conc_future_release(f);
            conc_future_release(k);
        }
        TH_CHECK_MSG(out[0].status == EPIPE && out[0].signal == SIGKILL && out[0].attempts == 1,
                     "status %d, signal %d, attempts %u", out[0].status, out[0].signal,
                     out[0].attempts);
        TH_CHECK_EQ(conc_forkpool_map(p, fp_giveup_item, g, 2, NULL), EPIPE); /* given up */
        conc_forkpool_destroy(p);
    }
    munmap(crash, 4096);
    fp_check_no_children();
}

/* A replacement the fork server cannot make: once its fd limit is lowered so that no worker's
 * socketpair fits and the only worker has died, the pool gives up after its spawn budget, and
 * the map whose only worker died ends (it asked the server again every 256 ms for good, and
 * the map waited as long). The server is the parent of every worker. */
static pid_t fp_parent_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    TH_CHECK(f != NULL);
    int ppid = 0;
    TH_CHECK_EQ(fscanf(f, "%*d %*s %*c %d", &ppid), 1);
    fclose(f);
    return (pid_t)ppid;
}

static int fp_nothing_item(size_t i, void *arg) {
    (void)i;
    (void)arg;
    return 0;
}

static int fp_first_dies(size_t i, void *arg) {
    (void)arg;
    if (i == 0)
        raise(SIGKILL);
    return 0;
}

/* The server's fd limit: at 4 no new socketpair or pidfd fits (its own 0, 1, 2, its socket
 * and one pidfd per worker stay open). prlimit(2) itself: glibc declares its wrapper only
 * with _GNU_SOURCE. */
static struct rlimit fp_limit_server_fds(pid_t server, rlim_t limit) {
    struct rlimit old;
    TH_CHECK_EQ(syscall(SYS_prlimit64, server, RLIMIT_NOFILE, NULL, &old), 0);
    struct rlimit rl = {limit, old.rlim_max}; /* the soft limit: it can be put back */
    TH_CHECK_EQ(syscall(SYS_prlimit64, server, RLIMIT_NOFILE, &rl, NULL), 0);
    return old;
}

/* While one worker lives, a replacement the server cannot make (for a while: a burst of
 * EMFILE, EAGAIN from RLIMIT_NPROC) does not break the pool: it goes on with the workers it
 * has, asks again at the backoff, and is whole again once the server can fork. (It gave up
 * for good after 5 failures, 31 ms.) */
static void forkpool_server_cannot_spawn_while_a_worker_lives(void) {
    conc_forkpool_t *p = fp_create(2);
    pid_t pids[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2);
    pid_t server = fp_parent_of(pids[0]);
    struct rlimit old = fp_limit_server_fds(server, 4);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    conc_future_release(f);
    /* Well past the 31 ms of the old budget, the pool still runs work on the one left. */
    int64_t until = th_now() + 300 * CONC_MS;
    int maps = 0;
    while (th_now() < until || maps < 3) {
        TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 4, NULL), 0);
        maps++;
        th_sleep_ns(20 * CONC_MS);
    }
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    TH_CHECK_EQ(syscall(SYS_prlimit64, server, RLIMIT_NOFILE, &old, NULL), 0);
    while (conc_forkpool_pids(p, pids, 2) < 2) /* the next ask (at most 256 ms) succeeds */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* This process short of fds (every number taken) while one worker lives and another is
 * replaced: the replacement's socket and pidfd cannot be taken in (MSG_CTRUNC), so it is
 * killed, and asked again at the backoff. That counted as a worker that died before it was
 * ready, and five of those gave up: 31 ms of fd exhaustion killed the healthy worker's work
 * and every later call said EPIPE. Now it counts as a spawn that failed, which gives up only
 * once no worker is left. The dead worker's own two fds free up first: the case takes them
 * holding the pool lock, before the monitor can take in the replacement's; if it was too
 * late (the replacement came in), a task kills a worker again and the case tries once more. */
enum { FP_FD_HOLD_MAX = 1 << 16, FP_FD_SHORT_TRIES = 50 };

static void fp_take_every_fd(int *held, int *n) {
    int fd;
    while (*n < FP_FD_HOLD_MAX && (fd = dup(0)) >= 0)
        held[(*n)++] = fd;
}

static void forkpool_parent_short_of_fds_while_a_worker_lives(void) {
    conc_forkpool_t *p = fp_create(2);
    struct rlimit rl;
    TH_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur > FP_FD_HOLD_MAX / 2) { /* a child of the harness: its own limit to lower */
        rl.rlim_cur = FP_FD_HOLD_MAX / 2;
        TH_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int *held = (int *)malloc(FP_FD_HOLD_MAX * sizeof *held);
    TH_CHECK(held != NULL);
    int n = 0;
    bool short_of_fds = false;
    for (int tries = 0; tries < FP_FD_SHORT_TRIES && !short_of_fds; tries++) {
        fp_take_every_fd(held, &n);
        TH_CHECK_EQ(errno, EMFILE);
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
        TH_CHECK_EQ(conc_future_wait(f), ECHILD);
        conc_future_release(f);
        conc_lock_acquire(&p->lock);
        fp_take_every_fd(held, &n); /* the dead worker's */
        conc_lock_release(&p->lock);
        /* Well past five failed replacements (31 ms of backoff), work runs on the other. */
        int64_t until = th_now() + 300 * CONC_MS;
        for (int maps = 0; th_now() < until || maps < 3; maps++) {
            TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 4, NULL), 0);
            fp_take_every_fd(held, &n); /* one of a pair that came in, and was closed */
            th_sleep_ns(20 * CONC_MS);
        }
        conc_lock_acquire(&p->lock);
        short_of_fds = p->spawn_failing_since != 0;
        conc_lock_release(&p->lock);
    }
    TH_CHECK_MSG(short_of_fds, "the replacement got its fds in each of %d tries",
                 FP_FD_SHORT_TRIES);
    while (n > 0)
        close(held[--n]);
    free(held);
    pid_t pids[2];
    while (conc_forkpool_pids(p, pids, 2) < 2) /* the next ask (at most 256 ms) succeeds */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

static void forkpool_server_cannot_spawn_gives_up(void) {
    int fds = fp_fd_count();
    conc_forkpool_t *p = fp_create(1);
    pid_t worker = 0;
    TH_CHECK_EQ(conc_forkpool_pids(p, &worker, 1), 1);
    (void)fp_limit_server_fds(fp_parent_of(worker), 4);
    conc_forkpool_outcome_t out[4];
    TH_CHECK_EQ(conc_forkpool_map(p, fp_first_dies, NULL, 4, out), ECHILD);
    TH_CHECK(out[0].status == ECHILD && out[0].signal == SIGKILL && out[0].attempts == 1);
    for (int i = 1; i < 4; i++)
        TH_CHECK_MSG(out[i].status == EPIPE && out[i].attempts == 0, "item %d: %d, attempts %u", i,
                     out[i].status, out[i].attempts);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, &f), EPIPE);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_first_dies, NULL, 4, NULL), EPIPE);
    conc_forkpool_destroy(p);
    TH_CHECK_EQ(fp_fd_count(), fds);
    fp_check_no_children();
}

/* The host's children stay the host's: the pool installs no SIGCHLD handler and reaps only
 * its own (the fork server reaps the workers). And a host that ignores SIGCHLD (its children
 * reaped by the kernel) still gets a working pool whose destroy returns. */
static volatile sig_atomic_t fp_sigchlds;
static void fp_on_sigchld(int sig) {
    (void)sig;
    fp_sigchlds++;
}

static void forkpool_host_children_untouched(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fp_on_sigchld;
    sa.sa_flags = SA_RESTART;
    TH_CHECK_EQ(sigaction(SIGCHLD, &sa, NULL), 0);
    pid_t mine = fork();
    if (mine == 0)
        _exit(42);
    conc_forkpool_t *p = fp_create(2);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0); /* a worker dies */
    TH_CHECK_EQ(conc_future_wait(f), ECHILD);
    conc_future_release(f);
    struct sigaction now;
    TH_CHECK_EQ(sigaction(SIGCHLD, NULL, &now), 0);
    TH_CHECK(now.sa_handler == fp_on_sigchld); /* still ours */
    int st;
    TH_CHECK_EQ(waitpid(mine, &st, 0), mine); /* not reaped by anyone else */
    TH_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);
    TH_CHECK(fp_sigchlds >= 1);
    conc_forkpool_destroy(p);
    fp_check_no_children();

    signal(SIGCHLD, SIG_IGN);
    p = fp_create(2);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ECHILD); /* the server still sees its worker's status */
    conc_forkpool_outcome_t o;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &o), 0);
    TH_CHECK_EQ(o.signal, SIGKILL);
    conc_future_release(f);
    conc_forkpool_destroy(p);
}

/* A program a task starts (exec) holds no fd of the pool: the worker's socket is close-on-exec.
 * A helper left running in the background (`sleep`, named in s->pid) then delays nothing:
 * the timeout of a task that hangs after starting it, and a shutdown after a task that
 * returned, both come while the helper still runs (a held socket made them wait for its
 * exit: the pool sees a worker dead at its socket's EOF). As the subreaper we inherit each
 * helper when its worker dies, and kill and reap it. */
extern char **environ;

/* Status: how many fds past 0, 1 and 2 an exec would keep open (the pool's: none). */
static int fp_inheritable_fds(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    DIR *d = opendir("/proc/self/fd"); /* itself close-on-exec */
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name), flags;
        if (e->d_name[0] != '.' && fd > STDERR_FILENO && fd != dirfd(d) &&
            (flags = fcntl(fd, F_GETFD)) >= 0 && !(flags & FD_CLOEXEC))
            n++;
    }
    closedir(d);
    return n;
}

/* Starts `sleep 30` (stdio on /dev/null), names it in s->pid and raises s->flag. */
static int fp_start_helper(fp_shared *s) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
        if (posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDWR, 0) != 0)
            return -1;
    char *argv[] = {"sleep", "30", NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "sleep", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0)
        return e;
    s->pid = pid;
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    return 0;
}

static int fp_helper_then_hang(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    int e = fp_start_helper(s);
    if (e != 0)
        return e;
    for (;;)
        pause();
}

static int fp_helper_then_return(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    return fp_start_helper(s);
}

/* The helper outlived what the pool did meanwhile; now it goes (it is our child by now). */
static void fp_end_helper(pid_t helper) {
    TH_CHECK_MSG(fp_pid_alive(helper), "the helper %d ended first", (int)helper);
    TH_CHECK_EQ(kill(helper, SIGKILL), 0);
    int st;
    TH_CHECK_EQ(waitpid(helper, &st, 0), helper);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* A task that hangs after starting a helper (hang): ETIMEDOUT by SIGTERM, the helper alive;
 * one that returns after starting it (ret): shutdown returns, the helper alive. Then the
 * pool goes, leaving no child. s->flag says a helper started. */
static void fp_helpers_outlive_tasks(conc_forkpool_t *p, fp_shared *s, conc_forkpool_task_fn hang,
                                     conc_forkpool_task_fn ret) {
    conc_future_t *f;
    __atomic_store_n(&s->flag, 0u, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc_forkpool_submit(p, hang, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), ETIMEDOUT);
    conc_forkpool_outcome_t out;
    TH_CHECK_EQ(conc_forkpool_outcome(f, &out), 0);
    TH_CHECK(out.status == ETIMEDOUT && out.signal == SIGTERM && out.attempts == 1);
    conc_future_release(f);
    TH_CHECK_EQ(s->flag, 1);
    fp_end_helper(s->pid);
    __atomic_store_n(&s->flag, 0u, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc_forkpool_submit(p, ret, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    conc_forkpool_shutdown(p, false);
    TH_CHECK_EQ(s->flag, 1);
    fp_end_helper(s->pid);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

static void forkpool_exec_holds_no_pool_fd(void) {
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    conc_forkpool_t *p = fp_timed_pool(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_inheritable_fds, NULL, 0, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    conc_future_release(f);
    fp_helpers_outlive_tasks(p, s, fp_helper_then_hang, fp_helper_then_return);
}

/* A child that fn forks without exec keeps a copy of the worker's socket (close-on-exec does
 * not apply). The worker's death must not wait for that child: a task that hangs after forking
 * it times out, a map item that dies after forking it is reported, and a shutdown after a task
 * that returned from forking it returns, each while the child still runs (the pool waited for
 * the socket's EOF, which came only when the child exited: a child that lives on hung the
 * future, the map and the shutdown). As the subreaper we inherit each child and reap it. */
static void fp_fork_helper(fp_shared *s) {
    pid_t pid = fork();
    if (pid == 0) {
        s->pid = getpid();
        __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
        for (;;)
            pause();
    }
    fp_wait_flag(&s->flag, 1); /* the child runs before fn goes on */
}

static int fp_fork_then_hang(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    fp_fork_helper(s);
    while (pause() != 0) { /* pause returns only -1: this waits for the timeout's SIGTERM */
    }
    return 0;
}

static int fp_fork_then_return(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    fp_fork_helper(s);
    return 0;
}

static int fp_fork_then_die(size_t i, void *arg) {
    if (i == 0) {
        fp_fork_helper((fp_shared *)arg);
        raise(SIGKILL);
    }
    return 0;
}

static void forkpool_forked_child_delays_no_death(void) {
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    conc_forkpool_t *p = fp_timed_pool(1);
    fp_shared *s = fp_shared_alloc(p, 1);
    conc_forkpool_outcome_t out[4];
    TH_CHECK_EQ(conc_forkpool_map(p, fp_fork_then_die, s, 4, out), ECHILD);
    TH_CHECK(out[0].status == ECHILD && out[0].signal == SIGKILL && out[0].attempts == 1);
    for (int i = 1; i < 4; i++)
        TH_CHECK(out[i].status == 0 && out[i].attempts == 1);
    TH_CHECK_EQ(s->flag, 1);
    fp_end_helper(s->pid);
    fp_helpers_outlive_tasks(p, s, fp_fork_then_hang, fp_fork_then_return);
}

/* -------------------------------------------------------------------------------------------
 * Nothing left behind; the parent killed
 * ------------------------------------------------------------------------------------------- */
/* Output another thread buffers in stdout or stderr between create's fflush(NULL) and the
 * monitor's fork of the server is written once, by the parent: the server's copy of those bytes
 * is dropped, not flushed (before it forks a worker, it wrote them a second time). The window
 * is made exact with an atfork handler, which runs in the monitor right between its flush and
 * its fork and prints a numbered line into each stream. In a child whose stdout and stderr are
 * one file, fully buffered, each line must come out exactly once, a task's lines too. */
#define FP_DUP_CREATES 3

/* The lines' kinds: numbered 0 to FP_DUP_CREATES - 1, "begin" 0 and 1 (before any pool). */
static const char *const fp_dup_kinds[4] = {"stdout", "stderr", "task", "begin"};
static pid_t fp_dup_parent; /* the process whose forks print: not the server's forks */
static int fp_dup_forks;    /* written by the monitor; read after create returned */

static void fp_dup_print_at_fork(void) {
    if (getpid() != fp_dup_parent)
        return;
    printf("stdout %d\n", fp_dup_forks);
    fprintf(stderr, "stderr %d\n", fp_dup_forks);
    fp_dup_forks++;
}

static int fp_dup_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    int i;
    memcpy(&i, arg, sizeof i);
    printf("task %d\n", i); /* its worker flushes stdio after the task */
    return 0;
}

static void fp_dup_child(int fd) {
    if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(2);
    close(fd);
    static char outbuf[1 << 16], errbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    setvbuf(stderr, errbuf, _IOFBF, sizeof errbuf);
    /* A first write after setvbuf may go out at once, in part (glibc): after this one, what
     * is printed stays in the buffers until a flush. */
    printf("begin 0\n");
    fprintf(stderr, "begin 1\n");
    fflush(NULL);
    fp_dup_parent = getpid();
    if (pthread_atfork(fp_dup_print_at_fork, NULL, NULL) != 0)
        _exit(3);
    for (int i = 0; i < FP_DUP_CREATES; i++) {
        conc_forkpool_opts_t o;
        memset(&o, 0, sizeof o);
        o.workers = 1;
        o.shared_size = 1u << 20;
        conc_forkpool_t *p;
        conc_future_t *f;
        if (conc_forkpool_create(&p, &o) != 0)
            _exit(4);
        if (conc_forkpool_submit(p, fp_dup_task, &i, sizeof i, &f) != 0 || conc_future_wait(f))
            _exit(5);
        conc_future_release(f);
        conc_forkpool_destroy(p);
    }
    fflush(NULL);
    _exit(fp_dup_forks == FP_DUP_CREATES ? 0 : 6);
}

static void forkpool_output_at_create_written_once(void) {
    char path[] = "/tmp/conc-forkpool-dup-XXXXXX";
    int fd = mkstemp(path);
    TH_CHECK(fd >= 0);
    unlink(path);
    fflush(NULL);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0)
        fp_dup_child(fd);
    int st;
    TH_CHECK_EQ(waitpid(child, &st, 0), child);
    TH_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
    /* Every line: its kind and number, seen once. */
    int seen[4][FP_DUP_CREATES];
    memset(seen, 0, sizeof seen);
    FILE *in = fdopen(fd, "r");
    TH_CHECK(in != NULL);
    rewind(in);
    char line[128];
    while (fgets(line, sizeof line, in)) {
        char kind[16];
        int n, k = 4;
        TH_CHECK_MSG(sscanf(line, "%15s %d", kind, &n) == 2, "line \"%s\"", line);
        for (int j = 0; j < 4; j++)
            if (strcmp(kind, fp_dup_kinds[j]) == 0)
                k = j;
        TH_CHECK_MSG(k < 4 && n >= 0 && n < FP_DUP_CREATES, "line \"%s\"", line);
        seen[k][n]++;
    }
    fclose(in);
    for (int k = 0; k < 4; k++)
        for (int n = 0; n < (k < 3 ? FP_DUP_CREATES : 2); n++)
            TH_CHECK_MSG(seen[k][n] == 1, "line \"%s %d\" came out %d times", fp_dup_kinds[k], n,
                         seen[k][n]);
    fp_check_no_children();
}

/* A host that closed fds 0, 1 and 2 (a daemon that did not reopen /dev/null): the pool's fds
 * took those numbers, so the host's printf and a task's (a worker keeps 0-2 as they are) wrote
 * into the pool's sockets and broke it. In a child: the host prints, tasks print, every task
 * succeeds, and no fd of the pool is below 3. The child's exit status says what failed. */
static int fp_printf_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)arg, (void)len, (void)result, (void)result_len;
    printf("a task prints a line\n");
    fprintf(stderr, "and an error\n");
    return 0; /* its worker flushes stdio after the task */
}

enum { FP_STDIO_CREATE = 10, FP_STDIO_SUBMIT = 20, FP_STDIO_TASK = 30, FP_STDIO_LOW_FD = 40 };

static void fp_closed_stdio_child(void) {
    close(0);
    close(1);
    close(2);
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.shared_size = 1u << 20;
    conc_forkpool_t *p;
    if (conc_forkpool_create(&p, &o) != 0)
        _exit(FP_STDIO_CREATE);
    printf("the host prints a line\n");
    fflush(stdout);
    for (int i = 0; i < 8; i++) {
        conc_future_t *f;
        if (conc_forkpool_submit(p, fp_printf_task, NULL, 0, &f) != 0)
            _exit(FP_STDIO_SUBMIT + i);
        int st = conc_future_wait(f);
        conc_future_release(f);
        if (st != 0)
            _exit(FP_STDIO_TASK + i);
    }
    conc_lock_acquire(&p->lock);
    bool low = p->evfd < 3 || p->ctl < 3;
    for (unsigned k = 0; k < p->nworkers; k++)
        low = low || p->w[k].sock < 3 || (p->pidfds && p->w[k].pidfd < 3);
    conc_lock_release(&p->lock);
    if (low)
        _exit(FP_STDIO_LOW_FD);
    conc_forkpool_destroy(p);
    _exit(0);
}

static void forkpool_closed_stdio_keeps_pool_fds_above(void) {
    fflush(NULL);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0)
        fp_closed_stdio_child();
    int st;
    TH_CHECK_EQ(waitpid(child, &st, 0), child);
    TH_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                 "child: status %#x (exit 10: create failed, 2i: submit i, 3i: task i failed, "
                 "40: a pool fd below 3)",
                 st);
    fp_check_no_children();
}

/* The parent submits more tasks than the old default bound held (64 per worker), each
 * waiting in its worker for an event in the shared region that the parent sets only after
 * its last submit (Python's ProcessPoolExecutor finishes this: its queue has no bound). With
 * the default queue_capacity no submit may wait for room, or the parent waits for good (the
 * watchdog's DEADLOCK). Every task runs once, after the set. */
static int fp_wait_for_set(const void *arg, size_t len, void **result, size_t *result_len) {
    conc_event_t *set;
    if (len != sizeof set)
        return EINVAL;
    memcpy(&set, arg, sizeof set);
    conc_event_wait(set);
    (void)result, (void)result_len;
    return 0;
}

static void forkpool_submit_past_the_old_bound_then_set(void) {
    enum { WORKERS = 2, TASKS = 64 * WORKERS + WORKERS + 40 };
    conc_forkpool_t *p = fp_create(WORKERS); /* queue_capacity 0: the default */
    conc_event_t *set = (conc_event_t *)conc_forkpool_alloc(p, sizeof *set);
    TH_CHECK(set != NULL);
    conc_event_init(set, CONC_SHARED);
    static conc_future_t *fs[TASKS];
    for (int i = 0; i < TASKS; i++)
        TH_CHECK_EQ(i % 2 ? conc_forkpool_try_submit(p, fp_wait_for_set, &set, sizeof set, &fs[i])
                          : conc_forkpool_submit(p, fp_wait_for_set, &set, sizeof set, &fs[i]),
                    0);
    for (int i = 0; i < TASKS; i++)
        TH_CHECK(!conc_future_is_done(fs[i])); /* every one waits for the set */
    conc_event_set(set);
    for (int i = 0; i < TASKS; i++) {
        TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
        conc_forkpool_outcome_t o;
        TH_CHECK_EQ(conc_forkpool_outcome(fs[i], &o), 0);
        TH_CHECK_EQ(o.attempts, 1u);
        conc_future_release(fs[i]);
    }
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

static void forkpool_destroy_leaves_nothing(void) {
    int fds = fp_fd_count();
    for (int round = 0; round < 3; round++) {
        conc_forkpool_t *p = fp_create(2);
        pid_t pids[2];
        TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2);
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0); /* one replaced */
        TH_CHECK_EQ(conc_future_wait(f), ECHILD);
        conc_future_release(f);
        void *m = conc_forkpool_alloc(p, 1000);
        TH_CHECK(m != NULL && ((uintptr_t)m & 63) == 0);
        conc_forkpool_destroy(p);
        TH_CHECK_EQ(fp_fd_count(), fds);
        fp_check_no_children();
        for (int i = 0; i < 2; i++)
            TH_CHECK(!fp_pid_alive(pids[i]));
    }
}

/* A child the host forks without exec (so it holds copies of every fd) that lives until
 * fp_release_gated_child: it reads a pipe whose write end, *gate, only we hold. */
static pid_t fp_fork_gated_child(int *gate) {
    int fds[2];
    TH_CHECK_EQ(pipe(fds), 0);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0) {
        close(fds[1]);
        char c;
        _exit(read(fds[0], &c, 1) == 1 ? 0 : 1);
    }
    close(fds[0]);
    *gate = fds[1];
    return child;
}

/* The gated child was still alive (nothing waited for it to go), and leaves cleanly. */
static void fp_release_gated_child(pid_t child, int gate) {
    TH_CHECK(fp_pid_alive(child));
    TH_CHECK_EQ(write(gate, "x", 1), 1);
    close(gate);
    int st;
    TH_CHECK_EQ(waitpid(child, &st, 0), child);
    TH_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A child the host forks without exec holds copies of the pool's fds, the server's socket
 * among them. shutdown ended the server's stream by closing our end, which that copy kept
 * open: the server never saw its EOF, and destroy waited for the child to exit. The child
 * here lives until destroy has returned (it reads a pipe we write only then). */
static void forkpool_host_fork_delays_no_destroy(void) {
    conc_forkpool_t *p = fp_create(2);
    int gate;
    pid_t child = fp_fork_gated_child(&gate);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 8, NULL), 0);
    conc_forkpool_destroy(p); /* hung here for good: the child waits for us */
    fp_release_gated_child(child, gate);
    fp_check_no_children();
}

static void forkpool_alloc_free(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.shared_size = 1u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    char *a = (char *)conc_forkpool_alloc(p, 100);
    char *b = (char *)conc_forkpool_alloc(p, 64);
    TH_CHECK(a && b && ((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0 && a != b);
    TH_CHECK(conc_forkpool_alloc(p, 2u << 20) == NULL); /* past the region */
    conc_forkpool_free(p, a);
    char *c = (char *)conc_forkpool_alloc(p, 128);
    TH_CHECK(c == a); /* first fit reuses the hole */
    conc_forkpool_free(p, b);
    conc_forkpool_free(p, c);
    conc_forkpool_free(p, NULL);
    char *all = (char *)conc_forkpool_alloc(p, (1u << 20) - 4096 * 4); /* coalesced again */
    TH_CHECK(all != NULL);
    conc_forkpool_free(p, all);
    conc_forkpool_destroy(p);
}

/* shared_size is what alloc can hand out, rounded up to whole pages, with the pool's control
 * pages on top. It was the whole mapping, control pages included, unless that left less than
 * a page: 4096 bytes gave 4096, 8192 gave 4096 too (one worker), 1 MiB gave 1 MiB - 4096. */
static void forkpool_shared_size_is_all_for_alloc(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned workers[] = {1, 64};
    size_t sizes[] = {1, page, 2 * page, 3 * page + 1, 1u << 20};
    for (size_t wi = 0; wi < sizeof workers / sizeof workers[0]; wi++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            conc_forkpool_opts_t o;
            memset(&o, 0, sizeof o);
            o.workers = workers[wi];
            o.shared_size = sizes[si];
            conc_forkpool_t *p;
            TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
            size_t whole = (sizes[si] + page - 1) / page * page;
            char *m = (char *)conc_forkpool_alloc(p, whole);
            TH_CHECK_MSG(m != NULL, "%u workers, shared_size %zu: alloc(%zu) failed", workers[wi],
                         sizes[si], whole);
            memset(m, 1, whole);
            TH_CHECK(conc_forkpool_alloc(p, 1) == NULL); /* and not a byte more */
            conc_forkpool_free(p, m);
            conc_forkpool_destroy(p);
        }
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    conc_forkpool_t *p = (conc_forkpool_t *)1;
    for (size_t back = 0; back <= page; back += page / 2) { /* no room for control pages */
        o.shared_size = SIZE_MAX - back;
        TH_CHECK_EQ(conc_forkpool_create(&p, &o), EINVAL);
        TH_CHECK(p == NULL);
    }
    o.shared_size = SIZE_MAX - 2 * page; /* fits, with the control page: mmap says no */
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), ENOMEM);
    TH_CHECK(p == NULL);
}

static conc_forkpool_t *fp_misuse_pool;
static void fp_free_bogus(void) {
    static char not_ours[64];
    conc_forkpool_free(fp_misuse_pool, not_ours);
}

static void forkpool_free_misuse_aborts(void) {
    fp_misuse_pool = fp_create(1);
    char buf[512];
    int st = th_run_child_capturing_stderr(fp_free_bogus, buf, sizeof buf);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_free") != NULL, "stderr: %s", buf);
    conc_forkpool_destroy(fp_misuse_pool);
}

/* The queries on a NULL pool abort naming themselves, as alloc and pids do: workers read
 * through the NULL and died of SIGSEGV. */
static void fp_workers_of_null(void) {
    printf("%u workers\n", conc_forkpool_workers(NULL)); /* not reached */
}
static void fp_pids_of_null(void) {
    pid_t pids[1];
    printf("%zu pids\n", conc_forkpool_pids(NULL, pids, 1)); /* not reached */
}

static void forkpool_queries_on_null_abort_naming_themselves(void) {
    char buf[512];
    int st = th_run_child_capturing_stderr(fp_workers_of_null, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d, stderr: %s", st, buf);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_workers: NULL pool") != NULL, "stderr: %s", buf);
    st = th_run_child_capturing_stderr(fp_pids_of_null, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d, stderr: %s", st, buf);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_pids: NULL pool") != NULL, "stderr: %s", buf);
}

/* An on_done callback of a fork-pool future runs on the pool's monitor thread, which every
 * wait of shutdown and destroy needs. shutdown there refuses new work and returns (it waited
 * for the monitor, that is for itself, for good); a later destroy from another thread
 * finishes the task queued before it and reaps. destroy there aborts, naming itself. */
static conc_forkpool_t *fp_cb_pool;
static uint32_t fp_cb_returned;

static void fp_shutdown_cb(conc_future_t *f, void *arg) {
    (void)f, (void)arg;
    conc_forkpool_shutdown(fp_cb_pool, false);
    __atomic_store_n(&fp_cb_returned, 1u, __ATOMIC_RELEASE);
}

static void fp_destroy_cb(conc_future_t *f, void *arg) {
    (void)f, (void)arg;
    conc_forkpool_destroy(fp_cb_pool);
}

/* Returns once the test opens the gate (s->flag): a callback registered before that runs on
 * the monitor thread, never at once in the registering thread. */
static int fp_gated_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len, (void)result, (void)result_len;
    fp_shared *s = fp_task_shared(arg);
    fp_wait_flag(&s->flag, 1);
    return 0;
}

static void fp_destroy_from_callback(void) {
    fp_cb_pool = fp_create(1);
    fp_shared *s = fp_shared_alloc(fp_cb_pool, 1);
    conc_future_t *f;
    if (conc_forkpool_submit(fp_cb_pool, fp_gated_task, &s, sizeof s, &f) != 0 ||
        conc_future_on_done(f, fp_destroy_cb, NULL) != 0)
        _exit(1);
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    (void)conc_future_wait(f);
    for (;;) /* the callback aborts the process */
        pause();
}

static void forkpool_shutdown_from_on_done(void) {
    int fds = fp_fd_count();
    fp_cb_pool = fp_create(1);
    fp_shared *s = fp_shared_alloc(fp_cb_pool, 1);
    conc_future_t *f, *g, *h;
    TH_CHECK_EQ(conc_forkpool_submit(fp_cb_pool, fp_gated_task, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_forkpool_submit(fp_cb_pool, fp_echo, "y", 1, &g), 0);
    TH_CHECK_EQ(conc_future_on_done(f, fp_shutdown_cb, NULL), 0);
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    while (!__atomic_load_n(&fp_cb_returned, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    TH_CHECK_EQ(conc_forkpool_submit(fp_cb_pool, fp_echo, "z", 1, &h), EPIPE);
    TH_CHECK_EQ(conc_future_wait(g), 0); /* queued or running at the shutdown: it finishes */
    size_t len;
    const char *r = (const char *)conc_forkpool_result(g, &len);
    TH_CHECK(r != NULL && len == 1 && r[0] == 'y');
    conc_future_release(f);
    conc_future_release(g);
    conc_forkpool_destroy(fp_cb_pool);
    TH_CHECK_EQ(fp_fd_count(), fds);
    fp_check_no_children();
    /* The aborted child's fork server and worker die with it (PDEATHSIG); as the subreaper
     * we adopt them and reap them. */
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    char buf[512];
    int st = th_run_child_capturing_stderr(fp_destroy_from_callback, buf, sizeof buf);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_destroy") != NULL, "stderr: %s", buf);
    while (waitpid(-1, &st, 0) > 0) {
    }
}

/* A map, or a blocking submit that finds the queue full, from an on_done callback would wait
 * for the monitor thread the callback runs on, the one thread that makes room (for good):
 * both return EDEADLK. try_submit there is the plain EAGAIN. */
typedef struct fp_cb_calls {
    fp_shared *gate;          /* the tasks the callback submits wait for gate->flag */
    int tries[3];             /* try_submit until the queue (capacity 1) is full */
    conc_future_t *queued[3]; /* what they submitted */
    int submit, map;          /* the blocking calls */
    uint32_t done;
} fp_cb_calls;

static void fp_blocking_calls_cb(conc_future_t *f, void *arg) {
    (void)f;
    fp_cb_calls *c = (fp_cb_calls *)arg;
    for (int i = 0; i < 3; i++) {
        c->tries[i] = conc_forkpool_try_submit(fp_cb_pool, fp_gated_task, &c->gate, sizeof c->gate,
                                               &c->queued[i]);
        if (c->tries[i] != 0)
            break;
    }
    conc_future_t *never = NULL;
    c->submit = conc_forkpool_submit(fp_cb_pool, fp_echo, "x", 1, &never);
    if (never)
        conc_future_release(never);
    c->map = conc_forkpool_map(fp_cb_pool, fp_nothing_item, NULL, 1, NULL);
    __atomic_store_n(&c->done, 1u, __ATOMIC_RELEASE);
}

static void forkpool_blocking_calls_from_on_done_say_edeadlk(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.queue_capacity = 1;
    o.shared_size = 16u << 20;
    TH_CHECK_EQ(conc_forkpool_create(&fp_cb_pool, &o), 0);
    fp_shared *s = fp_shared_alloc(fp_cb_pool, 1);
    static fp_cb_calls c;
    memset(&c, 0, sizeof c);
    c.gate = fp_shared_alloc(fp_cb_pool, 1);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(fp_cb_pool, fp_gated_task, &s, sizeof s, &f), 0);
    TH_CHECK_EQ(conc_future_on_done(f, fp_blocking_calls_cb, &c), 0);
    __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
    TH_CHECK_EQ(conc_future_wait(f), 0);
    fp_wait_flag(&c.done, 1); /* hangs, on a pool whose blocking calls wait for themselves */
    int accepted = 0;
    while (accepted < 3 && c.tries[accepted] == 0)
        accepted++;
    TH_CHECK_MSG(accepted >= 1 && accepted <= 2 && c.tries[accepted] == EAGAIN,
                 "accepted %d, then %d", accepted, accepted < 3 ? c.tries[accepted] : 0);
    TH_CHECK_EQ(c.submit, EDEADLK);
    TH_CHECK_EQ(c.map, EDEADLK);
    __atomic_store_n(&c.gate->flag, 1u, __ATOMIC_RELEASE);
    for (int i = 0; i < accepted; i++) {
        TH_CHECK_EQ(conc_future_wait(c.queued[i]), 0);
        conc_future_release(c.queued[i]);
    }
    TH_CHECK_EQ(conc_forkpool_map(fp_cb_pool, fp_nothing_item, NULL, 1, NULL), 0); /* pool fine */
    conc_future_release(f);
    conc_forkpool_destroy(fp_cb_pool);
    fp_check_no_children();
}

/* A worker calling through its copy of the pool (it has no monitor, and the sockets are the
 * parent's) is refused with EPERM; the calls that cannot say so abort in any process but the
 * parent, here a fork of the parent, and leave the parent's pool working. */
typedef struct fp_foreign_calls {
    conc_forkpool_t *pool;
    int map, submit;
} fp_foreign_calls;

static int fp_item_calls_the_pool(size_t i, void *arg) {
    (void)i;
    fp_foreign_calls *c = (fp_foreign_calls *)arg;
    c->map = conc_forkpool_map(c->pool, fp_nothing_item, NULL, 1, NULL);
    c->submit = conc_forkpool_submit(c->pool, fp_echo, "x", 1, NULL);
    return 0;
}

static void fp_shutdown_in_a_fork(void) {
    conc_forkpool_shutdown(fp_misuse_pool, false);
}
static void fp_terminate_in_a_fork(void) {
    conc_forkpool_terminate(fp_misuse_pool);
}
static void fp_pids_in_a_fork(void) {
    pid_t pids[4];
    (void)conc_forkpool_pids(fp_misuse_pool, pids, 4);
}

/* Whether madvise takes MADV_WIPEONFORK here (Linux 4.14 on). */
static bool fp_kernel_wipes_on_fork(void) {
#ifdef MADV_WIPEONFORK
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(m != MAP_FAILED);
    bool ok = madvise(m, page, MADV_WIPEONFORK) == 0;
    munmap(m, page);
    return ok;
#else
    return false;
#endif
}

/* with_getpid: the check a kernel without MADV_WIPEONFORK gets (no home page). */
static void fp_other_processes_are_refused(bool with_getpid) {
    fp_misuse_pool = fp_create(1);
    const uint32_t *home = fp_misuse_pool->home;
    TH_CHECK_MSG(home != NULL || !fp_kernel_wipes_on_fork(),
                 "no home page, though this kernel has MADV_WIPEONFORK");
    if (with_getpid)
        fp_misuse_pool->home = NULL;
    fp_foreign_calls *c = (fp_foreign_calls *)conc_forkpool_alloc(fp_misuse_pool, sizeof *c);
    TH_CHECK(c != NULL);
    c->pool = fp_misuse_pool;
    c->map = c->submit = -1;
    TH_CHECK_EQ(conc_forkpool_map(fp_misuse_pool, fp_item_calls_the_pool, c, 1, NULL), 0);
    TH_CHECK_EQ(c->map, EPERM);
    TH_CHECK_EQ(c->submit, EPERM);
    char buf[512];
    int st = th_run_child_capturing_stderr(fp_shutdown_in_a_fork, buf, sizeof buf);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_shutdown") != NULL, "stderr: %s", buf);
    st = th_run_child_capturing_stderr(fp_terminate_in_a_fork, buf, sizeof buf);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_terminate") != NULL, "stderr: %s", buf);
    st = th_run_child_capturing_stderr(fp_pids_in_a_fork, buf, sizeof buf);
    TH_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    TH_CHECK_MSG(strstr(buf, "conc_forkpool_pids") != NULL, "stderr: %s", buf);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(fp_misuse_pool, fp_echo, "y", 1, &f), 0);
    TH_CHECK_EQ(conc_future_wait(f), 0); /* the parent's worker still runs */
    conc_future_release(f);
    conc_forkpool_free(fp_misuse_pool, c);
    fp_misuse_pool->home = home; /* destroy unmaps it */
    conc_forkpool_destroy(fp_misuse_pool);
    fp_check_no_children();
}

static void forkpool_other_processes_are_refused(void) {
    fp_other_processes_are_refused(false);
}

static void forkpool_other_processes_are_refused_by_getpid(void) {
    fp_other_processes_are_refused(true);
}

/* The fork server SIGKILLed while a map runs: its workers die with it (PDEATHSIG), the pool
 * gives up: the map returns EPIPE, its running items end as in any giving up (EPIPE, signal
 * SIGKILL: they once said ECHILD with no signal, a death whose cause the pool could not
 * know), and later calls say EPIPE. The monitor is held on the pool lock while they all
 * die, so that its next poll finds the server's end and the workers' at once: it settled the
 * workers' deaths before it gave up, and the round they left waited for replacements that
 * could never come. The map never returned. */
typedef struct fp_server_kill {
    conc_forkpool_t *pool;
    uint32_t started; /* items running */
    int status;       /* the map's */
    conc_forkpool_outcome_t out[4];
} fp_server_kill;

static int fp_started_then_hang(size_t i, void *arg) {
    (void)i;
    fp_server_kill *k = (fp_server_kill *)arg;
    __atomic_fetch_add(&k->started, 1u, __ATOMIC_RELEASE);
    while (pause() == -1) { /* until its worker dies */
    }
    return 0;
}

static void *fp_server_kill_map(void *arg) {
    fp_server_kill *k = (fp_server_kill *)arg;
    k->status = conc_forkpool_map(k->pool, fp_started_then_hang, k, 4, k->out);
    return NULL;
}

static void forkpool_server_killed_with_its_workers(void) {
    conc_forkpool_t *p = fp_create(2);
    fp_server_kill *k = (fp_server_kill *)conc_forkpool_alloc(p, sizeof *k);
    TH_CHECK(k != NULL);
    memset(k, 0, sizeof *k);
    k->pool = p;
    pid_t pids[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_server_kill_map, k), 0);
    fp_wait_flag(&k->started, 2); /* both workers in the round */
    conc_lock_acquire(&p->lock);  /* the monitor stops at its next look at the books */
    conc__forkpool_kick(p);
    pid_t server = p->server_pid;
    TH_CHECK_EQ(kill(server, SIGKILL), 0);
    while (fp_pid_alive(server) || fp_pid_alive(pids[0]) || fp_pid_alive(pids[1]))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_lock_release(&p->lock);
    TH_CHECK_EQ(pthread_join(t, NULL), 0); /* hung here for good */
    TH_CHECK_EQ(k->status, EPIPE);
    int killed = 0;
    for (int i = 0; i < 4; i++) {
        TH_CHECK_EQ(k->out[i].status, EPIPE);
        killed += k->out[i].signal == SIGKILL && k->out[i].attempts == 1;
    }
    TH_CHECK_EQ(killed, 2); /* the two running items; the two others never started */
    TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 1, NULL), EPIPE);
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_echo, "x", 1, NULL), EPIPE);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* The fork server SIGKILLed while a map's item has forked a child of its own, which holds a
 * copy of its worker's socket: the worker dies with the server, but the socket's end stays
 * open in that child. With no death report to come, the monitor settled a worker only at its
 * socket's EOF, so the map waited for as long as the child lived. Now the worker's pidfd
 * settles it: the map returns EPIPE while the child still lives, then the child is let go. */
typedef struct fp_forked_holder {
    uint32_t started;  /* the item runs, and its child is forked */
    uint32_t release;  /* the child may exit */
    int32_t child_pid; /* the item's child */
    int status;        /* the map's */
    uint32_t returned; /* the map has returned */
    conc_forkpool_t *pool;
} fp_forked_holder;

#define FP_HOLDER_MAX_NS (60 * CONC_SEC) /* the child's own bound, if the test is gone */

static int fp_fork_a_holder_then_hang(size_t i, void *arg) {
    (void)i;
    fp_forked_holder *h = (fp_forked_holder *)arg;
    pid_t child = fork();
    if (child == 0) { /* holds every fd its worker had, the worker's socket among them */
        int64_t until = conc_deadline_in(FP_HOLDER_MAX_NS);
        while (!__atomic_load_n(&h->release, __ATOMIC_ACQUIRE) && conc_now() < until)
            th_sleep_ns(FP_FLAG_WAIT_NS);
        _exit(0);
    }
    __atomic_store_n(&h->child_pid, (int32_t)child, __ATOMIC_RELAXED);
    __atomic_store_n(&h->started, 1u, __ATOMIC_RELEASE);
    while (pause() == -1) { /* until its worker dies */
    }
    return 0;
}

static void *fp_forked_holder_map(void *arg) {
    fp_forked_holder *h = (fp_forked_holder *)arg;
    h->status = conc_forkpool_map(h->pool, fp_fork_a_holder_then_hang, h, 1, NULL);
    __atomic_store_n(&h->returned, 1u, __ATOMIC_RELEASE);
    return NULL;
}

static void forkpool_server_killed_while_an_item_s_child_holds_its_socket(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_forked_holder *h = (fp_forked_holder *)conc_forkpool_alloc(p, sizeof *h);
    TH_CHECK(h != NULL);
    memset(h, 0, sizeof *h);
    h->pool = p;
    pid_t worker = 0;
    TH_CHECK_EQ(conc_forkpool_pids(p, &worker, 1), 1);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_forked_holder_map, h), 0);
    fp_wait_flag(&h->started, 1);
    pid_t child = (pid_t)__atomic_load_n(&h->child_pid, __ATOMIC_RELAXED);
    TH_CHECK(child > 0);
    pid_t server = p->server_pid;
    TH_CHECK_EQ(kill(server, SIGKILL), 0);
    fp_wait_flag(&h->returned, 1); /* hung here until the child exited */
    TH_CHECK(fp_pid_alive(child)); /* it did not wait for the child */
    TH_CHECK_EQ(h->status, EPIPE);
    TH_CHECK(!fp_pid_alive(worker));
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    __atomic_store_n(&h->release, 1u, __ATOMIC_RELEASE);
    while (fp_pid_alive(child))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* A host that is a child subreaper, its fork server SIGKILLed: the workers, dying with it,
 * are re-parented to the host, whose zombies they stayed for its whole life (nobody reaped
 * them: the server was gone, and the pool never waited for a process it had not forked).
 * Now the monitor reaps each one (waitid on its pidfd: exactly that process). */
static void forkpool_server_killed_in_a_subreaper_leaves_no_zombie(void) {
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    conc_forkpool_t *p = fp_create(2);
    pid_t pids[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2);
    fp_shared *s = fp_shared_alloc(p, 0);
    conc_future_t *f;
    TH_CHECK_EQ(conc_forkpool_submit(p, fp_sleep_long_task, &s, sizeof s, &f), 0);
    fp_wait_flag(&s->flag, 1);
    TH_CHECK_EQ(kill(p->server_pid, SIGKILL), 0);
    TH_CHECK_EQ(conc_future_wait(f), EPIPE);
    conc_future_release(f);
    while (fp_pid_alive(pids[0]) || fp_pid_alive(pids[1])) /* dead, or zombies */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_forkpool_destroy(p);
    fp_check_no_children(); /* reaped a worker's zombie here, before */
}

/* The same with a worker that died before its server, with the server stopped: its zombie
 * was the server's when the server was killed, and the host saw the server's end before the
 * kernel handed the zombie over (the server's exit closes its fds first). Without pidfds the
 * monitor settled it as another's zombie and never reaped it once it was the host's (5 of
 * 10 runs of this case, of 20 pools each, left one). Now a zombie whose parent is still the
 * dead server is looked at again until it is ours. */
static void forkpool_worker_dead_before_its_server_in_a_subreaper_leaves_no_zombie(void) {
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    for (int round = 0; round < 20; round++) {
        conc_forkpool_t *p = fp_create(1);
        pid_t worker = 0;
        TH_CHECK_EQ(conc_forkpool_pids(p, &worker, 1), 1);
        TH_CHECK_EQ(kill(p->server_pid, SIGSTOP), 0);
        while (fp_pid_state(p->server_pid) != 'T')
            th_sleep_ns(FP_FLAG_WAIT_NS);
        conc_future_t *f;
        TH_CHECK_EQ(conc_forkpool_submit(p, fp_kill_self, NULL, 0, &f), 0);
        while (fp_pid_state(worker) != 'Z') /* a zombie of the stopped server */
            th_sleep_ns(FP_FLAG_WAIT_NS);
        TH_CHECK_EQ(kill(p->server_pid, SIGKILL), 0);
        int st = conc_future_wait(f);
        TH_CHECK_MSG(st == ECHILD || st == EPIPE, "the task: %d", st);
        conc_future_release(f);
        conc_forkpool_destroy(p);
        fp_check_no_children();
    }
}

/* Shutdown after the fork server died while a submitter writes its task to a worker's socket
 * outside the pool lock: the monitor stopped at once with the server gone, and its clear of
 * the workers closed that socket under the submitter (whose send then went to whatever took
 * the fd number) and wiped the flag the submitter clears. Now it waits for the submitter. The
 * submitter is held at the send; the server is killed (its worker dies with it); shutdown
 * starts; once the monitor has taken shutdown's kick (the eventfd read under the pool lock,
 * the decision made before that lock is free), the socket must still be the worker's. */
static void fp_send_hook(int fd) {
    fp_send_gate *g = fp_send_gate_here;
    if (!g)
        return;
    fp_send_gate_here = NULL; /* one stop per arming */
    g->fd = fd;
    __atomic_store_n(&g->reached, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&g->open, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
}

typedef struct fp_held_send {
    conc_forkpool_t *p;
    fp_send_gate gate;
    int status; /* the submit's */
    conc_future_t *f;
} fp_held_send;

static void *fp_held_submitter(void *arg) {
    fp_held_send *h = (fp_held_send *)arg;
    fp_send_gate_here = &h->gate;
    h->status = conc_forkpool_submit(h->p, fp_echo, "held", 5, &h->f);
    return NULL;
}

static void *fp_shutdown_thread(void *arg) {
    conc_forkpool_shutdown((conc_forkpool_t *)arg, false);
    return NULL;
}

/* Waits until the pool flag *b (read under the pool lock) is true. */
static void fp_wait_locked_flag(conc_forkpool_t *p, const bool *b) {
    for (;;) {
        conc_lock_acquire(&p->lock);
        bool set = *b;
        conc_lock_release(&p->lock);
        if (set)
            return;
        th_sleep_ns(FP_FLAG_WAIT_NS);
    }
}

static void forkpool_shutdown_spares_a_socket_being_written(void) {
    conc_forkpool_t *p = fp_create(1);
    fp_held_send h;
    memset(&h, 0, sizeof h);
    h.p = p;
    pthread_t sub, down;
    TH_CHECK_EQ(pthread_create(&sub, NULL, fp_held_submitter, &h), 0);
    while (!__atomic_load_n(&h.gate.reached, __ATOMIC_ACQUIRE))
        th_sleep_ns(FP_FLAG_WAIT_NS);
    struct stat before;
    TH_CHECK_EQ(fstat(h.gate.fd, &before), 0);
    pid_t server = p->server_pid;
    TH_CHECK_EQ(kill(server, SIGKILL), 0);
    fp_wait_locked_flag(p, &p->broken); /* the monitor saw the server die: it gave up */
    TH_CHECK_EQ(pthread_create(&down, NULL, fp_shutdown_thread, p), 0);
    fp_wait_locked_flag(p, &p->stopping); /* shutdown's kick is in the eventfd */
    struct pollfd kick = {p->evfd, POLLIN, 0};
    while (poll(&kick, 1, 0) == 1) /* not yet read by the monitor */
        th_sleep_ns(FP_FLAG_WAIT_NS);
    conc_lock_acquire(&p->lock); /* the monitor decided, and cleared what it would */
    struct stat now;
    bool same =
        fstat(h.gate.fd, &now) == 0 && now.st_ino == before.st_ino && now.st_dev == before.st_dev;
    bool flag = p->w[0].caller_sends;
    conc_lock_release(&p->lock);
    TH_CHECK_MSG(same && flag, "the socket being written to was %s and the flag %s",
                 same ? "kept" : "closed", flag ? "kept" : "cleared");
    __atomic_store_n(&h.gate.open, 1, __ATOMIC_RELEASE);
    TH_CHECK_EQ(pthread_join(sub, NULL), 0);
    TH_CHECK_EQ(h.status, 0);
    TH_CHECK_EQ(pthread_join(down, NULL), 0); /* it ends once the submitter is done */
    int st = conc_future_wait(h.f);           /* its worker died with the server */
    TH_CHECK_MSG(st == ECHILD || st == EPIPE, "task: %d", st);
    conc_future_release(h.f);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* A child the host forks without exec while create runs, before the monitor has closed its
 * copy of the server's end of the control socket, holds that end for as long as it lives.
 * The pool learned of its server's death only from that socket's EOF: with the server
 * killed, a map waited for the child to exit. Here the fork in the window is made exact: an
 * atfork handler running in the monitor's fork of the server keeps copies of the pool's
 * sockets, which a child forked after create holds until we let it go. */
static int fp_held[8], fp_nheld;
static int fp_hold_armed;

static void fp_hold_pool_sockets(void) {
    if (!fp_hold_armed)
        return;
    fp_hold_armed = 0;
    int socks[8], n = 0;
    for (int fd = 3; fd < 256 && n < 8; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
            socks[n++] = fd;
    }
    for (int i = 0; i < n; i++)
        fp_held[fp_nheld++] = fcntl(socks[i], F_DUPFD_CLOEXEC, 0);
}

static void forkpool_server_end_held_by_a_host_fork(void) {
    TH_CHECK_EQ(pthread_atfork(NULL, fp_hold_pool_sockets, NULL), 0);
    fp_hold_armed = 1;
    conc_forkpool_t *p = fp_create(2);
    TH_CHECK(fp_nheld >= 2); /* the control socket's two ends */
    pid_t pids[2];
    TH_CHECK_EQ(conc_forkpool_pids(p, pids, 2), 2);
    int gate;
    pid_t child = fp_fork_gated_child(&gate);
    for (int i = 0; i < fp_nheld; i++)
        close(fp_held[i]); /* only the child holds them now */
    pid_t server = p->server_pid;
    TH_CHECK_EQ(kill(server, SIGKILL), 0);
    while (fp_pid_alive(server) || fp_pid_alive(pids[0]) || fp_pid_alive(pids[1]))
        th_sleep_ns(FP_FLAG_WAIT_NS);                              /* the workers die with it */
    int st = conc_forkpool_map(p, fp_nothing_item, NULL, 8, NULL); /* hung here */
    TH_CHECK_MSG(st == ECHILD || st == EPIPE, "map: %d", st);
    TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 8, NULL), EPIPE);
    conc_forkpool_destroy(p);
    fp_release_gated_child(child, gate);
    fp_check_no_children();
}

/* A map of SIZE_MAX items (or nearly: within the chunk divisor of it) runs like any other.
 * Its chunk sizing added div - 1 to what remained, which wrapped to a chunk of 0: map looped
 * for good holding the pool lock, and every other call of the pool waited for it. Here the
 * items block until the pool gives up (its fork server killed), while another call must go
 * through; then the map returns. */
static void *fp_huge_map(void *arg) {
    fp_server_kill *k = (fp_server_kill *)arg;
    k->status = conc_forkpool_map(k->pool, fp_started_then_hang, k, SIZE_MAX, NULL);
    return NULL;
}

static void forkpool_map_of_size_max_items(void) {
    conc_forkpool_t *p = fp_create(2);
    fp_server_kill *k = (fp_server_kill *)conc_forkpool_alloc(p, sizeof *k);
    TH_CHECK(k != NULL);
    memset(k, 0, sizeof *k);
    k->pool = p;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, fp_huge_map, k), 0);
    fp_wait_flag(&k->started, 2);         /* both workers in the round: it was set up */
    void *m = conc_forkpool_alloc(p, 64); /* hung here: the lock was never free again */
    TH_CHECK(m != NULL);
    conc_forkpool_free(p, m);
    TH_CHECK_EQ(kill(p->server_pid, SIGKILL), 0); /* the only way such a map ends */
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_MSG(k->status == ECHILD || k->status == EPIPE, "map: %d", k->status);
    conc_forkpool_destroy(p);
    fp_check_no_children();
}

/* The parent SIGKILLed: the fork server and every worker die with it (PDEATHSIG). We adopt
 * the orphans (a subreaper) so that we can reap them and see them go. */
static void forkpool_parent_killed_workers_die(void) {
    TH_CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    int pfd[2];
    TH_CHECK_EQ(pipe(pfd), 0);
    pid_t parent = fork();
    if (parent == 0) {
        close(pfd[0]);
        conc_forkpool_t *p = fp_create(2);
        pid_t pids[2];
        if (conc_forkpool_pids(p, pids, 2) != 2)
            _exit(1);
        if (write(pfd[1], pids, sizeof pids) != (ssize_t)sizeof pids)
            _exit(1);
        for (;;)
            pause();
    }
    close(pfd[1]);
    pid_t pids[2];
    TH_CHECK_EQ(read(pfd[0], pids, sizeof pids), (ssize_t)sizeof pids);
    close(pfd[0]);
    TH_CHECK(fp_pid_alive(pids[0]) && fp_pid_alive(pids[1]));
    int64_t t0 = th_now();
    TH_CHECK_EQ(kill(parent, SIGKILL), 0);
    TH_CHECK_EQ(waitpid(parent, NULL, 0), parent);
    /* Within a second (stretched like every deadline for sanitizer builds). */
    int64_t limit = (int64_t)(1e9 * th_env_double("CONC_TEST_TIMEOUT_SCALE", 1.0));
    while ((fp_pid_alive(pids[0]) || fp_pid_alive(pids[1])) && th_now() - t0 < limit)
        th_sleep_ns(1000 * 1000);
    TH_CHECK_MSG(!fp_pid_alive(pids[0]) && !fp_pid_alive(pids[1]),
                 "workers alive %.0f ms after the parent's death", (double)(th_now() - t0) / 1e6);
    printf("    workers gone %.1f ms after the parent's SIGKILL\n", (double)(th_now() - t0) / 1e6);
    /* Reap the adopted server and workers. */
    while (waitpid(-1, NULL, WNOHANG) > 0 || (errno != ECHILD && th_now() - t0 < 10 * limit))
        th_sleep_ns(1000 * 1000);
}

/* -------------------------------------------------------------------------------------------
 * Stress: submitters that cancel at random, a mapping thread, and items and tasks that kill
 * their own worker at random (deaths without any pid race)
 * ------------------------------------------------------------------------------------------- */
#define FP_STRESS_N 4000        /* items per map */
#define FP_STRESS_DIE_EVERY 997 /* about one self-kill per this many first attempts */

typedef struct fp_stress {
    conc_forkpool_t *p;
    fp_shared *s;   /* per-item runs of the current map */
    uint32_t *salt; /* in shared memory: changes per map, so other items die each time */
    int64_t stop_at;
    uint32_t maps, tasks, cancels, deaths; /* relaxed: statistics */
} fp_stress;

typedef struct fp_stress_item_arg {
    fp_shared *s;
    uint32_t *salt;
} fp_stress_item_arg;

static uint32_t fp_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static int fp_stress_item(size_t i, void *arg) {
    fp_stress_item_arg *a = (fp_stress_item_arg *)arg;
    uint32_t before = __atomic_fetch_add(&a->s->count[i], 1u, __ATOMIC_RELAXED);
    uint32_t salt = __atomic_load_n(a->salt, __ATOMIC_RELAXED);
    if (before == 0 && fp_hash(i * 31 + salt) % FP_STRESS_DIE_EVERY == 0)
        raise(SIGKILL);
    return 0;
}

/* arg: 8 bytes; dies on the first attempt when they hash so; result: the bytes, reversed. */
static int fp_stress_task(const void *arg, size_t len, void **result, size_t *result_len) {
    uint64_t v;
    memcpy(&v, arg, sizeof v);
    if (fp_hash(v) % 61 == 0 && (v & 1))
        raise(SIGKILL);
    unsigned char *r = (unsigned char *)malloc(len);
    for (size_t i = 0; i < len; i++)
        r[i] = ((const unsigned char *)arg)[len - 1 - i];
    *result = r;
    *result_len = len;
    return 0;
}

static void fp_stress_submitter(int index, void *arg) {
    fp_stress *st = (fp_stress *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 1);
    for (long n = 0; n == 0 || th_now() < st->stop_at; n++) { /* a late start: one batch */
        enum { BATCH = 16 };
        conc_future_t *f[BATCH];
        uint64_t v[BATCH];
        for (int k = 0; k < BATCH; k++) {
            v[k] = th_rand(&rng);
            int e = th_rand_below(&rng, 4) == 0
                        ? conc_forkpool_try_submit(st->p, fp_stress_task, &v[k], sizeof v[k], &f[k])
                        : conc_forkpool_submit(st->p, fp_stress_task, &v[k], sizeof v[k], &f[k]);
            TH_CHECK(e == 0 || e == EAGAIN);
            if (e == EAGAIN) {
                TH_CHECK(f[k] == NULL);
                continue;
            }
            if (th_rand_below(&rng, 8) == 0) {
                int c = conc_forkpool_cancel(f[k]);
                TH_CHECK(c == 0 || c == EBUSY);
                __atomic_fetch_add(&st->cancels, (uint32_t)(c == 0), __ATOMIC_RELAXED);
            }
        }
        for (int k = 0; k < BATCH; k++) {
            if (!f[k])
                continue;
            int w = conc_future_wait(f[k]);
            conc_forkpool_outcome_t o;
            TH_CHECK_EQ(conc_forkpool_outcome(f[k], &o), 0);
            TH_CHECK(w == 0 || w == ECANCELED || w == ECHILD);
            if (w == 0) {
                size_t len;
                const unsigned char *r = (const unsigned char *)conc_forkpool_result(f[k], &len);
                TH_CHECK(len == sizeof v[k]);
                for (size_t i = 0; i < len; i++)
                    TH_CHECK(r[i] == ((const unsigned char *)&v[k])[len - 1 - i]);
                TH_CHECK(o.attempts >= 1);
            } else if (w == ECHILD) {
                TH_CHECK(o.signal == SIGKILL && o.attempts == 2); /* retries = 1, both died? */
            }
            __atomic_fetch_add(&st->deaths, (uint32_t)(o.attempts > 1), __ATOMIC_RELAXED);
            __atomic_fetch_add(&st->tasks, 1u, __ATOMIC_RELAXED);
            conc_future_release(f[k]);
        }
    }
}

static void fp_stress_mapper(fp_stress *st) {
    size_t n = FP_STRESS_N;
    fp_stress_item_arg *a = (fp_stress_item_arg *)conc_forkpool_alloc(st->p, sizeof *a);
    TH_CHECK(a != NULL);
    a->s = st->s;
    a->salt = st->salt;
    conc_forkpool_outcome_t *out = (conc_forkpool_outcome_t *)malloc(n * sizeof *out);
    for (long m = 0; m == 0 || th_now() < st->stop_at; m++) { /* a late start: one map */
        memset(st->s->count, 0, n * sizeof st->s->count[0]);
        __atomic_fetch_add(st->salt, 1u, __ATOMIC_RELAXED);
        int e = conc_forkpool_map(st->p, fp_stress_item, a, n, out);
        TH_CHECK(e == 0 || e == ECHILD);
        for (size_t i = 0; i < n; i++) {
            uint32_t c = st->s->count[i];
            /* Never more runs than reported starts; untouched items exactly once. A start
             * killed before its first instruction may leave one run uncounted. */
            TH_CHECK_MSG(c <= out[i].attempts && c + 1 >= out[i].attempts,
                         "item %zu ran %u times, %u starts reported", i, c, out[i].attempts);
            if (out[i].attempts == 1 && out[i].status == 0)
                TH_CHECK_EQ(c, 1);
            TH_CHECK(out[i].status == 0 || (out[i].status == ECHILD && out[i].signal == SIGKILL));
        }
        __atomic_fetch_add(&st->maps, 1u, __ATOMIC_RELAXED);
    }
    free(out);
}

static void fp_stress_thread(int index, void *arg) {
    if (index == 0)
        fp_stress_mapper((fp_stress *)arg);
    else
        fp_stress_submitter(index, arg);
}

static void forkpool_stress_mixed(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 3;
    o.retries = 1;
    o.queue_capacity = 8;
    o.shared_size = 16u << 20;
    conc_forkpool_t *p;
    TH_CHECK_EQ(conc_forkpool_create(&p, &o), 0);
    fp_stress st;
    memset(&st, 0, sizeof st);
    st.p = p;
    st.s = fp_shared_alloc(p, FP_STRESS_N);
    st.salt = (uint32_t *)conc_forkpool_alloc(p, sizeof *st.salt);
    *st.salt = 0;
    st.stop_at = th_now() + th_duration_ns(1.5);
    th_run_threads(th_threads(5), fp_stress_thread, &st);
    printf("    %u maps, %u tasks, %u cancelled, %u re-run after a death\n", st.maps, st.tasks,
           st.cancels, st.deaths);
    TH_CHECK(st.maps > 0 && st.tasks > 0);
    conc_forkpool_destroy(p);
}

/* Out of fds: create says EMFILE at whichever step ran out, and leaves nothing behind. With a
 * few fds left the parent's own ones fit but a worker's socket and pidfd, passed back from the
 * fork server, do not (the kernel drops them from the message): that said ECHILD ("a worker
 * died in init"), as if init had failed. */

static void forkpool_create_out_of_fds_says_emfile(void) {
    struct rlimit old;
    TH_CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = {256, old.rlim_max};
    TH_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fill[256];
    int emfile = 0, created = 0;
    for (int k = 0; k <= 12; k++) {
        int before = fp_fd_count();
        int n = 0, fd;
        while (n < 256 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
            fill[n++] = fd;
        TH_CHECK(n < 256);
        for (int i = 0; i < k && n > 0; i++)
            close(fill[--n]);
        conc_forkpool_opts_t o;
        memset(&o, 0, sizeof o);
        o.workers = 2;
        o.shared_size = 1u << 20;
        conc_forkpool_t *p = (conc_forkpool_t *)1;
        int r = conc_forkpool_create(&p, &o);
        while (n > 0)
            close(fill[--n]);
        TH_CHECK_MSG(r == 0 || r == EMFILE, "create with %d fds free: %d (%s)", k, r, strerror(r));
        if (r == 0) {
            created++;
            TH_CHECK_EQ(conc_forkpool_map(p, fp_nothing_item, NULL, 4, NULL), 0);
            conc_forkpool_destroy(p);
        } else {
            emfile++;
            TH_CHECK(p == NULL);
        }
        TH_CHECK_EQ(fp_fd_count(), before);
        fp_check_no_children();
    }
    TH_CHECK(emfile > 0 && created > 0);
    TH_CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* -------------------------------------------------------------------------------------------
 * errno: no call changes it, failing or not
 * ------------------------------------------------------------------------------------------- */
#define FP_CHECK_ERRNO_KEPT(call, want) TH_CHECK_ERRNO_KEPT(TH_CHECK_EQ((call), (want)))

/* In a child: an address-space limit with the heap eaten up to it, so create's first malloc
 * fails. Exits 0 if create said ENOMEM and left errno alone. */
static void fp_create_under_rlimit_as(void) {
    struct rlimit rl = {64u << 20, 64u << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        _exit(2);
    /* Each block stored through a volatile: an allocation whose result goes unused may be
     * elided, and clang -O2 then folds the loop into an endless one with no side effects (UB),
     * which it drops along with everything after it. */
    static void *volatile last_block;
    while ((last_block = malloc(1u << 16)) != NULL) {
    }
    while ((last_block = malloc(64)) != NULL) {
    }
    conc_forkpool_t *p;
    errno = TH_ERRNO_SENTINEL;
    int r = conc_forkpool_create(&p, NULL);
    _exit(r == ENOMEM && errno == TH_ERRNO_SENTINEL && p == NULL ? 0 : 1);
}

static void forkpool_errno_kept(void) {
    conc_forkpool_t *p = (conc_forkpool_t *)1;
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 1;
    o.shared_size = TH_HUGE(62, SIZE_MAX - (1u << 20)); /* past any address space: mmap fails */
    FP_CHECK_ERRNO_KEPT(conc_forkpool_create(&p, &o), ENOMEM);
    TH_CHECK(p == NULL);
    o.shared_size = 0;
    o.workers = CONC_FORKPOOL_MAX_WORKERS + 1;
    FP_CHECK_ERRNO_KEPT(conc_forkpool_create(&p, &o), EINVAL);
    o.workers = 1;
    o.shared_size = 1u << 20;
    FP_CHECK_ERRNO_KEPT(conc_forkpool_create(&p, &o), 0);
    /* A 4 MiB argument fills the socket: the send stops at EAGAIN and the monitor ends it. */
    size_t big = 4u << 20;
    char *arg = (char *)malloc(big);
    TH_CHECK(arg != NULL);
    for (size_t i = 0; i < big; i++)
        arg[i] = (char)(i * 13 + 5);
    conc_future_t *f = NULL, *g = NULL;
    FP_CHECK_ERRNO_KEPT(conc_forkpool_submit(p, fp_echo, arg, big, &f), 0);
    errno = TH_ERRNO_SENTINEL;
    TH_CHECK_EQ(conc_future_wait(f), 0);
    size_t len;
    const char *res = (const char *)conc_forkpool_result(f, &len);
    TH_CHECK(res != NULL && len == big && memcmp(res, arg, big) == 0);
    conc_forkpool_outcome_t out;
    FP_CHECK_ERRNO_KEPT(conc_forkpool_outcome(f, &out), 0);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_cancel(f), EBUSY);
    conc_future_release(f);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_submit(p, NULL, NULL, 0, &g), EINVAL);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_try_submit(p, fp_echo, NULL, 1, &g), EINVAL);
    if (!TH_SANITIZED) /* malloc of the argument's copy fails (see TH_SANITIZED) */
        FP_CHECK_ERRNO_KEPT(conc_forkpool_submit(p, fp_echo, arg, SIZE_MAX / 2, &g), ENOMEM);
    TH_CHECK(g == NULL);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_map(p, NULL, NULL, 1, NULL), EINVAL);
    /* The arena full: no room for the chunk table. */
    errno = TH_ERRNO_SENTINEL;
    TH_CHECK(conc_forkpool_alloc(p, TH_HUGE(40, SIZE_MAX - 4096)) == NULL);
    size_t lo = 0, hi = 1u << 20; /* the largest block that fits: the whole arena */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        void *m = conc_forkpool_alloc(p, mid);
        conc_forkpool_free(p, m);
        *(m ? &lo : &hi) = mid;
    }
    void *all = conc_forkpool_alloc(p, lo);
    TH_CHECK(all != NULL && errno == TH_ERRNO_SENTINEL);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_map(p, fp_item, NULL, 1, NULL), ENOMEM);
    conc_forkpool_free(p, all);
    pid_t pid;
    errno = TH_ERRNO_SENTINEL;
    TH_CHECK_EQ(conc_forkpool_pids(p, &pid, 1), 1);
    conc_forkpool_shutdown(p, false);
    TH_CHECK_EQ(errno, TH_ERRNO_SENTINEL);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_submit(p, fp_echo, "x", 1, &g), EPIPE);
    FP_CHECK_ERRNO_KEPT(conc_forkpool_map(p, fp_item, NULL, 1, NULL), EPIPE);
    conc_forkpool_destroy(p);
    TH_CHECK_EQ(errno, TH_ERRNO_SENTINEL);
    free(arg);
    if (!TH_SANITIZED) {
        fflush(stdout);
        pid_t child = fork();
        TH_CHECK(child >= 0);
        if (child == 0)
            fp_create_under_rlimit_as();
        int st;
        TH_CHECK_EQ(waitpid(child, &st, 0), child);
        TH_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "create under RLIMIT_AS: status %#x",
                     st);
    }
    fp_check_no_children();
}

TH_MAIN("forkpool", TH_CASE(forkpool_map_exactly_once), TH_CASE(forkpool_map_first_failing_status),
        TH_CASE_T(forkpool_map_failures_take_no_memory, 120),
        TH_CASE(forkpool_map_worker_sigkilled), TH_CASE(forkpool_many_workers),
        TH_CASE(forkpool_maps_from_two_threads), TH_CASE(forkpool_maps_take_turns),
        TH_CASE(forkpool_map_crashes_named), TH_CASE(forkpool_map_retry_succeeds),
        TH_CASE(forkpool_map_round_without_room), TH_CASE(forkpool_map_task_timeout),
        TH_CASE(forkpool_map_sigint_to_group), TH_CASE(forkpool_group_signals_leave_the_pool_alone),
        TH_CASE(forkpool_submit_future_api), TH_CASE(forkpool_future_of_another_file),
        TH_CASE(forkpool_submit_big_result),
        TH_CASE(forkpool_no_parent_memory_for_a_result_is_enomem),
        TH_CASE(forkpool_create_with_a_server_out_of_memory_is_enomem),
        TH_CASE(forkpool_submit_tiny_and_huge), TH_CASE(forkpool_submit_cancel_running_and_queued),
        TH_CASE(forkpool_holds_pidfds_only_where_it_can_open_them),
        TH_CASE(forkpool_terminate_of_many_workers_without_pidfds_finishes),
        TH_CASE(forkpool_cancel_after_future_cancel),
        TH_CASE(forkpool_cancel_handed_over_not_started_drops),
        TH_CASE(forkpool_worker_dead_before_the_start_gate_runs_the_task_elsewhere),
        TH_CASE(forkpool_task_whose_workers_all_die_before_its_gate_ends),
        TH_CASE(forkpool_task_whose_argument_the_worker_cannot_hold_ends_enomem),
        TH_CASE(forkpool_task_timeout_runs_from_fn_s_start),
        TH_CASE(forkpool_workers_keep_the_hosts_ignored_sigpipe),
        TH_CASE_T(forkpool_destroy_waits_for_a_map_the_pool_gave_up_on, 60),
        TH_CASE(forkpool_task_put_back_by_a_death_cancels_as_queued),
        TH_CASE(forkpool_retry_cancelled_while_queued_is_cancelled),
        TH_CASE(forkpool_cancel_races_the_start_gate),
        TH_CASE(forkpool_cancel_after_result_spares_next),
        TH_CASE(forkpool_cancel_returns_once_the_worker_is_dead),
        TH_CASE(forkpool_cancel_from_on_done_after_many_deaths_without_pidfds),
        TH_CASE(forkpool_cancel_in_a_fork_says_eperm), TH_CASE(forkpool_submit_timeout_and_crash),
        TH_CASE(forkpool_submit_timeout_caller_dispatched),
        TH_CASE(forkpool_submit_timeout_after_crash), TH_CASE(forkpool_task_timeout_forever),
        TH_CASE(forkpool_submit_timeout_result_in_grace), TH_CASE(forkpool_submit_bounded_queue),
        TH_CASE(forkpool_shutdown_cancels_pending),
        TH_CASE(forkpool_terminate_cancels_running_and_queued),
        TH_CASE(forkpool_terminate_ends_a_shutdown_waiting_for_a_hung_task),
        TH_CASE(forkpool_terminate_ends_a_running_map),
        TH_CASE(forkpool_terminate_cancels_a_retry_waiting),
        TH_CASE(forkpool_terminate_cancels_a_map_retry_waiting),
        TH_CASE(forkpool_terminate_ends_a_task_held_at_its_gate_unstarted),
        TH_CASE(forkpool_terminate_cancels_a_retry_its_death_asks_for_late),
        TH_CASE(forkpool_gave_up_retry_put_back_keeps_its_death),
        TH_CASE(forkpool_init_failing_leaves_nothing), TH_CASE(forkpool_max_tasks_per_child),
        TH_CASE(forkpool_parent_threads_and_pristine_replacements),
        TH_CASE(forkpool_gives_up_on_immediate_deaths),
        TH_CASE(forkpool_gave_up_retry_keeps_its_death), TH_CASE(forkpool_gave_up_kill_says_epipe),
        TH_CASE(forkpool_gave_up_cancelled_stays_cancelled),
        TH_CASE(forkpool_server_cannot_spawn_while_a_worker_lives),
        TH_CASE(forkpool_parent_short_of_fds_while_a_worker_lives),
        TH_CASE(forkpool_server_cannot_spawn_gives_up), TH_CASE(forkpool_host_children_untouched),
        TH_CASE(forkpool_exec_holds_no_pool_fd), TH_CASE(forkpool_forked_child_delays_no_death),
        TH_CASE(forkpool_output_at_create_written_once),
        TH_CASE(forkpool_closed_stdio_keeps_pool_fds_above),
        TH_CASE(forkpool_destroy_leaves_nothing), TH_CASE(forkpool_host_fork_delays_no_destroy),
        TH_CASE(forkpool_alloc_free), TH_CASE(forkpool_shared_size_is_all_for_alloc),
        TH_CASE(forkpool_free_misuse_aborts),
        TH_CASE(forkpool_queries_on_null_abort_naming_themselves),
        TH_CASE(forkpool_shutdown_from_on_done),
        TH_CASE(forkpool_blocking_calls_from_on_done_say_edeadlk),
        TH_CASE(forkpool_other_processes_are_refused),
        TH_CASE(forkpool_other_processes_are_refused_by_getpid),
        TH_CASE(forkpool_server_killed_with_its_workers),
        TH_CASE(forkpool_server_killed_while_an_item_s_child_holds_its_socket),
        TH_CASE(forkpool_server_killed_in_a_subreaper_leaves_no_zombie),
        TH_CASE(forkpool_worker_dead_before_its_server_in_a_subreaper_leaves_no_zombie),
        TH_CASE(forkpool_shutdown_spares_a_socket_being_written),
        TH_CASE(forkpool_server_end_held_by_a_host_fork), TH_CASE(forkpool_map_of_size_max_items),
        TH_CASE(forkpool_parent_killed_workers_die), TH_CASE(forkpool_errno_kept),
        TH_CASE(forkpool_create_out_of_fds_says_emfile), TH_CASE_T(forkpool_stress_mixed, 120),
        TH_CASE_T(forkpool_submit_past_the_old_bound_then_set, 60))

/* tests/harness.h - the conc test harness (tests only, no dependencies)
 * SPDX-License-Identifier: MIT
 *
 * Every case runs in a forked child, in its own process group, under a deadline. A case
 * that passes its deadline asleep (its threads ran for no time at all in the last second,
 * sanitizer runtime threads not counted) is reported as
 *     DEADLOCK? lock.stress_mixed exceeded 60 s (asleep: no CPU time in the last 1 s)
 * followed by every thread's stack (gdb in batch mode, when installed); the harness then
 * kills the child's process group, counts a failure and carries on with the next case. A
 * case past its deadline that still uses CPU is slow, not stuck (a loaded machine gives it
 * a fraction of a core): it runs on, up to TH_BUSY_GRACE times its deadline, after which it
 * is reported the same way as a livelock. When the harness itself is killed (Ctrl-C,
 * timeout(1), even SIGKILL), the running case's process group is killed with it: no case
 * and nothing a case forked outlives the run.
 *
 * Writing a test file:
 *     #include "harness.h"
 *     static void lock_try_acquire_busy(void) { ...; TH_CHECK(x == 1); TH_CHECK_EQ(a, b); }
 *     TH_MAIN("lock",
 *             TH_CASE(lock_try_acquire_busy),
 *             TH_CASE_T(lock_stress_mixed, 120))     // deadline in seconds (default 60)
 *
 * Running a test binary:
 *     ./test_lock                       all cases
 *     ./test_lock --list                the case names
 *     ./test_lock --filter=stress,until  only cases whose name contains one of the words
 *                                       (--filter WORDS too; a word with a dot may be a full
 *                                       name as --list prints it: lock.lock_try_acquire_busy)
 * It ends with the line "N passed, N failed, N skipped" and exits 1 if anything failed.
 *
 * Environment knobs (read with th_threads(), th_iters(), th_duration_ns(), th_seed()):
 *     CONC_TEST_THREADS        threads for stress cases (default: the case's own, >= 8)
 *     CONC_TEST_ITERS          iteration multiplier in percent (default 100)
 *     CONC_TEST_DURATION       seconds for timed stress loops (default: the case's own)
 *     CONC_TEST_TIMEOUT_SCALE  multiplies every deadline (sanitizer builds: 4 or more)
 *     CONC_TEST_SEED           the seed (printed at start; set it to replay a run)
 * A case exits 77 (TH_SKIP) to be skipped. Failures print file:line and the expression.
 */
#ifndef CONC_TESTS_HARNESS_H
#define CONC_TESTS_HARNESS_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "group.h"

/* TH_SANITIZED: an ASan, TSan or MSan build. Their allocators then return NULL for a request
 * they cannot serve, as malloc does, instead of reporting and exiting: the out-of-memory cases
 * ask for more memory than exists. (They still reserve more address space than any RLIMIT_AS
 * a test could set: cases that need that run in plain builds only.) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                        \
    __has_feature(memory_sanitizer)
#define TH_SANITIZED 1
#endif
#endif
#ifndef TH_SANITIZED
#define TH_SANITIZED 0
#endif
/* No conc call changes errno (DESIGN section 2): TH_CHECK_ERRNO_KEPT(call) runs call with
 * TH_ERRNO_SENTINEL (no errno value) in errno and fails if the call changed it. */
#define TH_ERRNO_SENTINEL 4321
#define TH_CHECK_ERRNO_KEPT(call)                                                                  \
    do {                                                                                           \
        errno = TH_ERRNO_SENTINEL;                                                                 \
        call;                                                                                      \
        int th_errno_ = errno;                                                                     \
        TH_CHECK_MSG(th_errno_ == TH_ERRNO_SENTINEL, "%s set errno to %d", #call, th_errno_);      \
    } while (0)

/* Whether the suite runs under a user-mode emulator (CONC_TEST_EMULATED set: make test runs the
 * aarch64 and armhf builds under qemu-user). Such an emulator answers a few calls as no kernel
 * does, and the cases that rely on them say how they differ there: qemu-user ignores RLIMIT_AS
 * (it would limit the emulator), reports MADV_GUARD_INSTALL done without installing a guard,
 * and its /proc shows the host's system calls. */
static inline bool th_emulated(void) {
    const char *e = getenv("CONC_TEST_EMULATED");
    return e && *e && strcmp(e, "0") != 0;
}

/* Kernels we do not have, and sandboxes: from here on, in this process and every process it
 * forks, the listed system calls fail as an older kernel or a seccomp profile would have them
 * fail (a seccomp filter, on every thread at once: a sanitizer's threads run already). Each
 * refusal names a call, optionally one argument's value (arg -1: any call), and the errno.
 * false where the harness does not know the architecture, or the filter cannot be installed
 * (qemu-user, for one): the caller skips. */
typedef struct th_refusal {
    long nr; /* SYS_... */
    int arg; /* which argument must equal value (its low 32 bits); -1: any */
    uint32_t value;
    int err;
} th_refusal;

#if defined(__x86_64__)
#define TH_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TH_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__)
#define TH_AUDIT_ARCH AUDIT_ARCH_ARM
#endif

#ifdef TH_AUDIT_ARCH
/* One BPF instruction (the kernel's macros are brace lists that C++ will not take here). */
static inline struct sock_filter th_bpf(unsigned code, unsigned jt, unsigned jf, uint32_t k) {
    struct sock_filter f;
    f.code = (uint16_t)code;
    f.jt = (uint8_t)jt;
    f.jf = (uint8_t)jf;
    f.k = k;
    return f;
}
#endif

static inline bool th_refuse_syscalls(const th_refusal *r, size_t n) {
#ifdef TH_AUDIT_ARCH
    struct sock_filter code[64];
    size_t k = 0;
    if (th_emulated() || 4 + 5 * n > sizeof code / sizeof code[0])
        return false;
    const uint32_t load = BPF_LD | BPF_W | BPF_ABS, equal = BPF_JMP | BPF_JEQ | BPF_K;
    const uint32_t ret = BPF_RET | BPF_K;
    code[k++] = th_bpf(load, 0, 0, (uint32_t)offsetof(struct seccomp_data, arch));
    code[k++] = th_bpf(equal, 1, 0, TH_AUDIT_ARCH);
    code[k++] = th_bpf(ret, 0, 0, SECCOMP_RET_ALLOW);
    for (size_t i = 0; i < n; i++) { /* a block per refusal: on to the next unless it matches */
        bool by_arg = r[i].arg >= 0;
        uint32_t low = (uint32_t)(offsetof(struct seccomp_data, args) + 8 * (size_t)r[i].arg) +
                       (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 4);
        code[k++] = th_bpf(load, 0, 0, (uint32_t)offsetof(struct seccomp_data, nr));
        code[k++] = th_bpf(equal, 0, by_arg ? 3 : 1, (uint32_t)r[i].nr);
        if (by_arg) {
            code[k++] = th_bpf(load, 0, 0, low);
            code[k++] = th_bpf(equal, 0, 1, r[i].value);
        }
        code[k++] = th_bpf(ret, 0, 0, SECCOMP_RET_ERRNO | ((uint32_t)r[i].err & 0xffff));
    }
    code[k++] = th_bpf(ret, 0, 0, SECCOMP_RET_ALLOW);
    struct sock_fprog prog;
    prog.len = (unsigned short)k;
    prog.filter = code;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0;
#else
    (void)r, (void)n;
    return false;
#endif
}

/* A size no allocation can get: 2^bits64 where size_t has 64 bits; where it has 32 (armhf), the
 * test's own choice, one that passes the callee's overflow checks and that a 32-bit address
 * space cannot hold. Read through a volatile: a constant would let gcc see an allocator called
 * with more than PTRDIFF_MAX and stop the build (-Walloc-size-larger-than). */
static inline size_t th_huge(uint64_t size64, size_t size32) {
    volatile size_t size = sizeof(size_t) >= 8 ? (size_t)size64 : size32;
    return size;
}
#define TH_HUGE(bits64, size32) th_huge(UINT64_C(1) << (bits64), (size_t)(size32))

#if TH_SANITIZED
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) {
    return "allocator_may_return_null=1";
}
const char *__msan_default_options(void);
const char *__msan_default_options(void) {
    return "allocator_may_return_null=1";
}
#endif

#define TH_STR_(x) #x
#define TH_STR(x) TH_STR_(x)

typedef struct th_case {
    const char *name;
    void (*fn)(void);
    int timeout_s;
} th_case;

#define TH_CASE(fn)                                                                                \
    { #fn, fn, 60 }
#define TH_CASE_T(fn, seconds)                                                                     \
    { #fn, fn, seconds }

/* ------------------------------------------------------------------------------------------
 * Checks. They run inside the forked child: a failure prints and ends the child.
 * ---------------------------------------------------------------------------------------- */
static void th_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static void th_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    _exit(1);
}

#define TH_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            th_fail(__FILE__, __LINE__, "%s", #cond);                                              \
    } while (0)

#define TH_CHECK_EQ(a, b)                                                                          \
    do {                                                                                           \
        long long th_a_ = (long long)(a), th_b_ = (long long)(b);                                  \
        if (th_a_ != th_b_)                                                                        \
            th_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, th_a_, th_b_);          \
    } while (0)

#define TH_CHECK_MSG(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            th_fail(__FILE__, __LINE__, __VA_ARGS__);                                              \
    } while (0)

/* A wait that returned ETIMEDOUT (or gave up) at `deadline` must not have returned early. */
#define TH_CHECK_NOT_EARLY(deadline)                                                               \
    do {                                                                                           \
        int64_t th_now_ = th_now(), th_dl_ = (deadline);                                           \
        if (th_now_ < th_dl_)                                                                      \
            th_fail(__FILE__, __LINE__, "returned %lld ns before its deadline",                    \
                    (long long)(th_dl_ - th_now_));                                                \
    } while (0)

#define TH_SKIP_CODE 77 /* a case's exit status that says "skipped" */
#define TH_SKIP(why)                                                                               \
    do {                                                                                           \
        printf("    SKIP: %s\n", why);                                                             \
        fflush(stdout);                                                                            \
        _exit(TH_SKIP_CODE);                                                                       \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * Knobs
 * ---------------------------------------------------------------------------------------- */
static inline long th_env_long(const char *name, long fallback) {
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    long v = strtol(s, &end, 0);
    return (*end == 0 && v > 0) ? v : fallback;
}

static inline double th_env_double(const char *name, double fallback) {
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    double v = strtod(s, &end);
    return (*end == 0 && v > 0) ? v : fallback;
}

/* Threads for a stress case: CONC_TEST_THREADS, else the case's default. */
static inline int th_threads(int fallback) {
    return (int)th_env_long("CONC_TEST_THREADS", fallback);
}

/* Iterations: the case's default scaled by CONC_TEST_ITERS percent (at least 1). */
static inline long th_iters(long fallback) {
    long pct = th_env_long("CONC_TEST_ITERS", 100);
    long n = fallback / 100 * pct + fallback % 100 * pct / 100;
    return n < 1 ? 1 : n;
}

/* Duration of a timed stress loop in ns: CONC_TEST_DURATION seconds, else the default. */
static inline int64_t th_duration_ns(double fallback_s) {
    return (int64_t)(th_env_double("CONC_TEST_DURATION", fallback_s) * 1e9);
}

static uint64_t th_seed_value;
static inline uint64_t th_seed(void) {
    return th_seed_value;
}

/* xorshift64*: a per-thread generator seeded from th_seed() and a stream number. */
typedef struct th_rng {
    uint64_t s;
} th_rng;
static inline th_rng th_rng_make(uint64_t stream) {
    th_rng r = {(th_seed_value ^ (stream * 0x9E3779B97F4A7C15ull)) | 1};
    return r;
}
static inline uint64_t th_rand(th_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}
static inline uint32_t th_rand_below(th_rng *r, uint32_t n) {
    return (uint32_t)((th_rand(r) >> 32) % n);
}

static inline int64_t th_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void th_sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------------------------
 * Threads: run fn(index, arg) on n threads that start together (tests/group.h); returns
 * after all joined. A thread that cannot be created fails the case.
 * ---------------------------------------------------------------------------------------- */
typedef tgroup_fn th_thread_fn;

static inline void th_run_threads(int n, th_thread_fn fn, void *arg) {
    int e = tgroup_run(n, fn, arg);
    TH_CHECK_MSG(e == 0, "starting %d threads: %s", n, strerror(e));
}

/* ------------------------------------------------------------------------------------------
 * A token passed around a ring of threads through some signalling primitive: thread i takes
 * the token (take(ctx, i, rng): blocks until it is its turn), counts a pass in plain memory
 * that only the token holder touches, and gives it to thread i + 1 (give(ctx, next)). One
 * lost wakeup anywhere stops the whole ring: the case deadline turns it into a DEADLOCK?
 * report. th_ring_run checks the exact number of passes.
 * ---------------------------------------------------------------------------------------- */
typedef struct th_ring {
    void (*take)(void *ctx, int me, th_rng *rng);
    void (*give)(void *ctx, int next);
    void *ctx;
    int n;       /* threads in the ring (at most 64) */
    long rounds; /* passes per thread */
    long passes; /* plain: only the token holder writes it */
} th_ring;

static void th_ring_worker(int index, void *arg) {
    th_ring *r = (th_ring *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 5);
    for (long round = 0; round < r->rounds; round++) {
        r->take(r->ctx, index, &rng);
        r->passes++;
        r->give(r->ctx, (index + 1) % r->n);
    }
}

/* The caller has given the token to thread 0 already. */
static inline void th_ring_run(th_ring *r) {
    TH_CHECK(r->n > 0 && r->n <= 64);
    r->passes = 0;
    th_run_threads(r->n, th_ring_worker, r);
    TH_CHECK_EQ(r->passes, r->n * r->rounds);
}

/* ------------------------------------------------------------------------------------------
 * Helpers for misuse and signal cases
 * ---------------------------------------------------------------------------------------- */

/* The state letter of a /proc stat file ("pid (comm) S ..."): S while asleep (in futex_wait,
 * for a sleeper), R while running; '?' when it cannot be read. */
static inline char th_stat_state(const char *path) {
    char buf[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

/* The same for a thread of this process (tid from gettid). */
static inline char th_thread_state(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    return th_stat_state(path);
}

/* Runs fn in a forked child with its stderr captured into buf (always NUL-terminated);
 * returns the child's wait status. For misuse that must abort with a clear message. */
static inline int th_run_child_capturing_stderr(void (*fn)(void), char *buf, size_t size) {
    int fds[2];
    TH_CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    memset(buf, 0, size);
    while (len < size - 1 && (n = read(fds[0], buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* fn, run in a child, must abort (SIGABRT) with message somewhere in its stderr. */
static inline void th_check_aborts_with(void (*fn)(void), const char *message) {
    char err[4096];
    int status = th_run_child_capturing_stderr(fn, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, err);
    TH_CHECK_MSG(strstr(err, message) != NULL, "want \"%s\", stderr: %s", message, err);
}

/* A table of misuse cases, each checked as above. */
typedef struct th_abort_case {
    void (*body)(void);
    const char *message;
} th_abort_case;

static inline void th_check_each_aborts(const th_abort_case *cases, size_t n) {
    for (size_t i = 0; i < n; i++)
        th_check_aborts_with(cases[i].body, cases[i].message);
}

static void th_ignore_signal(int sig) {
    (void)sig;
}

/* Installs a do-nothing handler for sig without SA_RESTART, so that a thread blocked in a
 * futex wait really returns EINTR when sig arrives: for "signals do not end a timed wait
 * early, nor stretch it". */
static inline void th_interrupt_waits_with(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = th_ignore_signal;
    sigaction(sig, &sa, NULL);
}

/* Runs waiter(arg) in a new thread and sends it sig every half millisecond until *done (an
 * acquire-loaded flag the waiter sets when its wait returned) is non-zero, then joins it.
 * Returns how many signals were sent: with th_interrupt_waits_with(sig) installed, each one
 * makes a blocked futex wait return EINTR, which the primitive must absorb without ending or
 * stretching its deadline. */
static inline int th_run_interrupted(void *(*waiter)(void *), void *arg, int sig, const int *done) {
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, arg) != 0) {
        fprintf(stderr, "th_run_interrupted: pthread_create failed\n");
        abort();
    }
    int sent = 0;
    while (!__atomic_load_n(done, __ATOMIC_ACQUIRE)) {
        pthread_kill(t, sig);
        sent++;
        th_sleep_ns(500 * 1000);
    }
    pthread_join(t, NULL);
    return sent;
}

/* Repeats its block until an attempt sent at least one signal (the block stores
 * th_run_interrupted's count in `sent`): a case about signals during a timed wait needs a
 * signal while the waiter waits, and on a loaded machine the signalling thread may not run
 * again before the waiter's deadline. The block sets its scenario up afresh each time.
 *     TH_UNTIL_SIGNALLED(sent) { ...set up...; sent = th_run_interrupted(...); ...check... }
 */
#define TH_UNTIL_SIGNALLED(sent)                                                                   \
    for (int sent = 0, th_first_attempt = 1; th_first_attempt || sent == 0; th_first_attempt = 0)

/* ------------------------------------------------------------------------------------------
 * The runner
 * ---------------------------------------------------------------------------------------- */
/* A word matches a case whose name contains it; a word with a dot is matched against the
 * full name "suite.case" too, so a name copied from --list runs that case. */
static bool th_matches(const char *suite, const char *name, const char *filter) {
    if (!filter || !*filter)
        return true;
    char buf[512], full[512];
    snprintf(buf, sizeof buf, "%s", filter);
    snprintf(full, sizeof full, "%s.%s", suite, name);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (strstr(name, w) || (strchr(w, '.') && strstr(full, w)))
            return true;
    return false;
}

static void th_dump_stacks(pid_t pid) {
    if (system("command -v gdb >/dev/null 2>&1") != 0) {
        printf("    (install gdb to see every thread's stack here)\n");
        return;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "timeout 60 gdb -p %d -batch -nx -ex 'set pagination off' "
             "-ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)' | head -200",
             (int)pid);
    fflush(stdout);
    if (system(cmd) != 0)
        printf("    (gdb could not attach)\n");
}

/* A case past its deadline still using CPU runs on, up to this many times its deadline: a
 * loaded machine (other builds, make test-shaken's CPU hogs) stretches a busy case, never a
 * deadlocked one. */
#define TH_BUSY_GRACE 4
/* How often the watchdog looks at the case's CPU time: "asleep" means none in this window.
 * A timeout scale below 1 shrinks the window with the deadlines (th_progress_window_ns), so
 * the harness's own test of its watchdog takes a few seconds, not ten, in every
 * configuration; real runs use scales of 1 and up, and this window. */
#define TH_PROGRESS_WINDOW_NS 1000000000LL
/* Sanitizer runtime threads the watchdog leaves out (TSan starts one or two). */
#define TH_RUNTIME_THREADS_MAX 16

/* ------------------------------------------------------------------------------------------
 * Is the case asleep? The watchdog sums the run time of every thread of every process in the
 * case's process group and calls the case asleep when the sum did not move in a window.
 *   - Run time, not CPU ticks: /proc/PID/stat's utime and stime are sampled at the timer tick.
 *     A thread that runs a few microseconds and yields (a queue handoff beside a CPU hog, whose
 *     time slice ends at a tick) is running at no tick, so it is charged nothing however much
 *     it gets done: a busy case read as asleep. /proc/PID/task/TID/schedstat gives each
 *     thread's exact run time in ns, charged at every switch.
 *   - Without the sanitizer's own threads: TSan starts a background thread (at fork and at the
 *     first pthread_create) that wakes every 100 ms and runs for microseconds; with ns
 *     accounting it would make every deadlocked case look busy. Those threads cannot be told
 *     apart by name (a thread inherits its creator's), so the case's process names them: before
 *     the case runs, it starts and joins one thread of its own, so the runtime has started
 *     whatever it starts, and reports every other thread id it has then (th_runtime_threads).
 *     Longer windows would not help: ticks miss the yielding thread every time, not by chance.
 *   - Limit: a process the case forks gets runtime threads the watchdog cannot name; a deadlock
 *     in such a process under TSan is reported at TH_BUSY_GRACE times the deadline as busy.
 * Any change of the sum (a thread that exited takes its time with it) counts as activity.
 * ---------------------------------------------------------------------------------------- */
static inline int64_t th_progress_window_ns(double scale) {
    return scale < 1 ? (int64_t)((double)TH_PROGRESS_WINDOW_NS * scale) : TH_PROGRESS_WINDOW_NS;
}

typedef struct th_runtime_threads {
    pid_t tid[TH_RUNTIME_THREADS_MAX];
    int n;
} th_runtime_threads;

static void *th_noop_thread(void *arg) {
    return arg;
}

/* In the case's process, before the case: writes the ids of the threads the sanitizer runtime
 * has started to fd, then closes it. */
static void th_report_runtime_threads(int fd) {
    pthread_t t;
    if (pthread_create(&t, NULL, th_noop_thread, NULL) == 0)
        pthread_join(t, NULL);
    DIR *d = opendir("/proc/self/task");
    pid_t self = getpid();
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != self && write(fd, &tid, sizeof tid) != (ssize_t)sizeof tid)
            break;
    }
    if (d)
        closedir(d);
    close(fd);
}

/* In the harness: reads what th_report_runtime_threads wrote (until the case closed it). */
static void th_read_runtime_threads(int fd, th_runtime_threads *rt) {
    rt->n = 0;
    pid_t tid;
    ssize_t n;
    while ((n = read(fd, &tid, sizeof tid)) == (ssize_t)sizeof tid || (n < 0 && errno == EINTR))
        if (n > 0 && rt->n < TH_RUNTIME_THREADS_MAX)
            rt->tid[rt->n++] = tid;
    close(fd);
}

static bool th_is_runtime_thread(const th_runtime_threads *rt, pid_t pid, pid_t tid) {
    for (int i = 0; i < rt->n; i++)
        if (rt->tid[i] == tid && tid != pid)
            return true;
    return false;
}

static bool th_read_text(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return n > 0;
}

/* One thread's run time in ns: schedstat's first field, else its utime + stime in ticks. */
static long long th_thread_runtime(int pid, int tid) {
    char path[300], buf[1024];
    unsigned long long ns, ut, st;
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, tid);
    if (th_read_text(path, buf, sizeof buf) && sscanf(buf, "%llu", &ns) == 1)
        return (long long)ns;
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    const char *p = th_read_text(path, buf, sizeof buf) ? strrchr(buf, ')') : NULL;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
        return (long long)(ut + st) * (1000000000LL / sysconf(_SC_CLK_TCK));
    return 0; /* gone meanwhile */
}

/* The sum the watchdog compares from window to window (see above); -1 if /proc cannot be read.
 * Reaped children count by their ticks: being reaped is activity anyway. */
static long long th_group_runtime(pid_t pgid, const th_runtime_threads *rt) {
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    long long sum = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (!th_read_text(path, buf, sizeof buf))
            continue; /* gone meanwhile */
        /* After the command name in parentheses: state ppid pgrp session tty_nr tpgid flags
         * minflt cminflt majflt cmajflt utime stime cutime cstime (proc(5)). */
        const char *p = strrchr(buf, ')');
        int pgrp;
        unsigned long long cut, cst;
        if (!p ||
            sscanf(p + 2, "%*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %llu %llu", &pgrp,
                   &cut, &cst) != 3 ||
            pgrp != (int)pgid)
            continue;
        sum += (long long)(cut + cst) * (1000000000LL / sysconf(_SC_CLK_TCK));
        snprintf(path, sizeof path, "/proc/%s/task", e->d_name);
        DIR *td = opendir(path);
        for (struct dirent *t; td && (t = readdir(td)) != NULL;) {
            pid_t tid = (pid_t)atoi(t->d_name);
            if (tid > 0 && !th_is_runtime_thread(rt, (pid_t)atoi(e->d_name), tid))
                sum += th_thread_runtime(atoi(e->d_name), (int)tid);
        }
        if (td)
            closedir(td);
    }
    closedir(d);
    return sum;
}

/* ------------------------------------------------------------------------------------------
 * No case outlives the harness. A case runs in its own process group (so that a timeout kills
 * whatever it forked), which also keeps Ctrl-C and timeout(1)'s signal, sent to the harness's
 * group, from reaching it. So the harness forks a guardian at start, in a process group of its
 * own (group signals miss it too), that holds the other end of a socket: the harness sends it
 * each case's group id as the case starts and 0 when it is reaped. When the harness dies, by
 * any signal, SIGKILL included, the guardian reads end-of-file, kills the running case's group
 * and exits. The case's own process also has PR_SET_PDEATHSIG, for the moment between its fork
 * and the guardian hearing of it.
 * ---------------------------------------------------------------------------------------- */
static int th_guardian_fd = -1;

static void th_guardian_start(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return; /* no guardian: cases still die with the harness, their children may not */
    fflush(stdout);
    pid_t g = fork();
    if (g < 0) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (g == 0) {
        close(sv[0]);
        setpgid(0, 0);
        pid_t pgid = 0, v;
        ssize_t n;
        while ((n = read(sv[1], &v, sizeof v)) == (ssize_t)sizeof v || (n < 0 && errno == EINTR))
            if (n > 0)
                pgid = v;
        if (pgid > 0)
            kill(-pgid, SIGKILL);
        _exit(0);
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    th_guardian_fd = sv[0];
}

static void th_guardian_tell(pid_t pgid) {
    if (th_guardian_fd >= 0)
        (void)send(th_guardian_fd, &pgid, sizeof pgid, MSG_NOSIGNAL);
}

/* Runs one case in a forked child; returns 0 passed, 1 failed, 2 skipped. */
static int th_run_case(const char *suite, const th_case *c, double scale) {
    printf("[ RUN  ] %s.%s\n", suite, c->name);
    fflush(stdout);
    int rtfd[2];
    if (pipe(rtfd) != 0) {
        printf("    FAIL pipe: %s\n", strerror(errno));
        return 1;
    }
    int64_t start = th_now();
    pid_t harness = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        printf("    FAIL fork: %s\n", strerror(errno));
        close(rtfd[0]);
        close(rtfd[1]);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != harness)
            _exit(1); /* the harness died before PDEATHSIG was set */
        if (th_guardian_fd >= 0) {
            /* The case names its group itself, before it can fork into it: the harness told
             * the guardian after the fork, and a harness preempted there and then killed left
             * the case's child running (a case that waited 40 s for it). The harness's tell of
             * 0, after it has reaped the case, still comes after this one. */
            th_guardian_tell(getpid());
            close(th_guardian_fd);
        }
        close(rtfd[0]);
        th_report_runtime_threads(rtfd[1]);
        c->fn();
        fflush(stdout);
        exit(0); /* exit, not _exit: sanitizers run their end-of-process checks */
    }
    setpgid(pid, pid);
    if (getenv("CONC_HARNESS_SLOW_TELL")) /* tests/test_harness.c: a harness preempted here */
        th_sleep_ns(200 * 1000 * 1000);
    close(rtfd[1]);
    th_runtime_threads rt;
    th_read_runtime_threads(rtfd[0], &rt);
    int64_t limit = (int64_t)(c->timeout_s * scale * 1e9);
    const int64_t window = th_progress_window_ns(scale);
    int64_t window_start = start;
    long long window_cpu = th_group_runtime(pid, &rt);
    bool late = false;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            printf("    FAIL waitpid: %s\n", strerror(errno));
            th_guardian_tell(0);
            return 1;
        }
        int64_t now = th_now();
        if (now - window_start >= window) {
            long long cpu = th_group_runtime(pid, &rt);
            bool busy = cpu >= 0 && window_cpu >= 0 && cpu != window_cpu;
            window_cpu = cpu;
            window_start = now;
            if (now - start > limit) {
                bool too_long = now - start > limit * TH_BUSY_GRACE;
                if (!busy || too_long) {
                    printf("DEADLOCK? %s.%s exceeded %g s (", suite, c->name, c->timeout_s * scale);
                    if (!busy)
                        printf("asleep: no CPU time in the last %g s)\n", (double)window / 1e9);
                    else
                        printf("still busy at " TH_STR(TH_BUSY_GRACE) "x that: livelock?)\n");
                    th_dump_stacks(pid);
                    kill(-pid, SIGKILL);
                    kill(pid, SIGKILL);
                    waitpid(pid, &status, 0);
                    th_guardian_tell(0);
                    printf("[ FAIL ] %s.%s (killed)\n", suite, c->name);
                    return 1;
                }
                late = true;
            }
        }
        th_sleep_ns(2000000);
    }
    th_guardian_tell(0);
    double ms = (double)(th_now() - start) / 1e6;
    if (late)
        printf("    NOTE: ran past its %g s deadline, using CPU all along (a loaded machine)\n",
               c->timeout_s * scale);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("[  OK  ] %s.%s (%.0f ms)\n", suite, c->name, ms);
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE) {
        printf("[ SKIP ] %s.%s\n", suite, c->name);
        return 2;
    }
    if (WIFSIGNALED(status))
        printf("[ FAIL ] %s.%s (signal %d: %s)\n", suite, c->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
        printf("[ FAIL ] %s.%s (exit %d)\n", suite, c->name, WEXITSTATUS(status));
    return 1;
}

static int th_main(const char *suite, const th_case *cases, size_t n, int argc, char **argv) {
    const char *filter = getenv("CONC_TEST_FILTER");
    bool list = false;
    for (int i = 1; i < argc; i++) { /* every argument first: --list obeys a later --filter */
        if (strcmp(argv[i], "--list") == 0) {
            list = true;
        } else if (strncmp(argv[i], "--filter=", 9) == 0) {
            filter = argv[i] + 9;
        } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else {
            bool help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            fprintf(help ? stdout : stderr, "usage: %s [--list] [--filter=word[,word...]]\n",
                    argv[0]);
            return help ? 0 : 2;
        }
    }
    if (list) {
        for (size_t k = 0; k < n; k++)
            if (th_matches(suite, cases[k].name, filter))
                printf("%s.%s\n", suite, cases[k].name);
        return 0;
    }
    const char *seed_env = getenv("CONC_TEST_SEED");
    th_seed_value = seed_env ? (uint64_t)strtoull(seed_env, NULL, 0)
                             : ((uint64_t)time(NULL) ^ (uint64_t)getpid());
    if (th_seed_value == 0)
        th_seed_value = 1;
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%" PRIu64, th_seed_value);
    setenv("CONC_CHAOS_SEED", seed_text, 0); /* CONC_CHAOS builds replay with the same seed */
    double scale = th_env_double("CONC_TEST_TIMEOUT_SCALE", 1.0);
    printf("# %s: seed %s (replay: CONC_TEST_SEED=%s), timeout scale %g\n", suite, seed_text,
           seed_text, scale);
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_guardian_start();
    int passed = 0, failed = 0, skipped = 0;
    for (size_t k = 0; k < n; k++) {
        if (!th_matches(suite, cases[k].name, filter))
            continue;
        int r = th_run_case(suite, &cases[k], scale);
        passed += r == 0;
        failed += r == 1;
        skipped += r == 2;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#define TH_MAIN(suite, ...)                                                                        \
    static const th_case th_cases_[] = {__VA_ARGS__};                                              \
    int main(int argc, char **argv) {                                                              \
        return th_main(suite, th_cases_, sizeof th_cases_ / sizeof th_cases_[0], argc, argv);      \
    }

#endif /* CONC_TESTS_HARNESS_H */

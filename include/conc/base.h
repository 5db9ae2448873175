/* conc/base.h - time, deadlines, futex seam, atomics seam, sanitizer hooks - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * The one header every conc module stands on. You rarely call it directly, but
 * three things in it are part of every module's API:
 *
 * QUICK START
 *     static conc_lock_t lock = CONC_LOCK_INIT;              // conc/lock.h
 *     int64_t deadline = conc_deadline_in(250 * CONC_MS);   // 250 ms from now
 *     if (conc_lock_acquire_until(&lock, deadline) == ETIMEDOUT)
 *         puts("gave up after 250 ms");
 *     else
 *         conc_lock_release(&lock);
 *
 * API
 *   time      conc_now()                  CLOCK_MONOTONIC in nanoseconds
 *             conc_deadline_in(ns)        now + ns, saturating at CONC_FOREVER
 *             CONC_FOREVER                INT64_MAX: a deadline that never comes
 *             CONC_US, CONC_MS, CONC_SEC  int64_t multipliers (5 * CONC_MS)
 *   futex     conc_futex_wait(word, expected, deadline, flags)  0, EAGAIN, ETIMEDOUT, EINTR
 *             conc_futex_wake(word, n, flags)                   number woken
 *             conc_futex_wait_tagged / conc_futex_wake_tagged   the same, waking by tag
 *             (flags: 0 for a private object, CONC_SHARED between processes)
 *   cpu       conc_cpu_relax()            the spin-loop hint (pause / yield)
 *             conc_cpu_count()            online CPUs, cached
 *   version   CONC_VERSION_MAJOR/MINOR/PATCH, CONC_VERSION_STRING
 *
 * CONVENTIONS (all modules)
 *   - A call that can fail returns int: 0 on success, else a positive errno value
 *     (EBUSY, EAGAIN, ETIMEDOUT, EPIPE, ECANCELED, EPERM, EOVERFLOW, EINVAL, ENOMEM).
 *     No call sets errno. Beware: `if (conc_lock_try_acquire(&l))` is true on FAILURE.
 *   - Deadlines are absolute int64_t nanoseconds on CLOCK_MONOTONIC. A deadline in the
 *     past means "try once" and fails with ETIMEDOUT. A wait interrupted by a signal or
 *     woken spuriously keeps the same deadline (FUTEX_WAIT_BITSET takes it as absolute).
 *
 * ORDERING CONTRACT
 *   base.h itself orders nothing: each module states its own contract. The atomic
 *   wrappers take an explicit memory order; none has a default.
 *
 * CONFIGURATION (define before including)
 *   CONC_DEBUG    extra misuse checks that abort with a message (on by default when
 *                 NDEBUG is not defined).
 *   CONC_CHAOS    turn CONC_CHAOS_POINT() into seeded random delays and yields, so stress
 *                 tests shake out interleavings two cores rarely produce. Seed:
 *                 CONC_CHAOS_SEED in the environment (printed by the test harness).
 *   CONC_ABORT(msg)  how misuse is reported (default: message and the caller's frames to
 *                 stderr, then abort()).
 *   CONC_NO_BACKTRACE  leave the caller's frames out of that message (they come from glibc's
 *                 backtrace(); function names need the program linked with -rdynamic).
 *   CONC_FUTEX_HOOK(kind)  called before every futex syscall (kind: CONC_FUTEX_HOOK_WAIT or
 *                 CONC_FUTEX_HOOK_WAKE); benchmarks count syscalls with it. Default: nothing.
 *
 * CAVEATS
 *   - Linux only for now: futex wait/wake live behind conc_futex_wait/conc_futex_wake,
 *     the one seam a port (macOS os_sync_wait_on_address, FreeBSD _umtx_op, Windows
 *     WaitOnAddress) replaces.
 *   - Needs C11 (or C++17) and the GCC/Clang __atomic builtins. With -std=c11 also
 *     define _DEFAULT_SOURCE (or use -std=gnu11): strict C11 hides syscall().
 *   - conc_cpu_count() caches its answer in a static per translation unit: a harmless
 *     cache (every copy holds the same value), the only file-scope object in conc.
 */
#ifndef CONC_BASE_H
#define CONC_BASE_H

#if !defined(__cplusplus) && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L)
#error "conc needs C11 or later (-std=c11 -D_DEFAULT_SOURCE, or -std=gnu11)"
#endif
#if !defined(__GNUC__)
#error "conc needs the GCC/Clang __atomic builtins"
#endif
#if !defined(__linux__)
#error "conc supports Linux for now: port conc_futex_wait/conc_futex_wake first"
#endif
#if !defined(__cplusplus) && !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE) &&                 \
    defined(__STRICT_ANSI__)
#error "strict -std=c11 hides syscall(): add -D_DEFAULT_SOURCE (or compile with -std=gnu11)"
#endif

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
#include <sys/syscall.h>
#include <linux/futex.h>

#define CONC_VERSION_MAJOR 0
#define CONC_VERSION_MINOR 1
#define CONC_VERSION_PATCH 0
#define CONC_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Compiler vocabulary
 * ------------------------------------------------------------------------------------------- */
#define CONC_INLINE static inline __attribute__((always_inline))
/* Slow paths: out of line and out of the way, so the inline fast path stays a few bytes.
 * (unused: a translation unit that never calls one gets no warning.) */
#define CONC_COLD static __attribute__((noinline, cold, unused))
#define CONC_NOINLINE static __attribute__((noinline, unused))
#define CONC_LIKELY(x) __builtin_expect(!!(x), 1)
#define CONC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#if defined(__cplusplus)
#define CONC_NODISCARD [[nodiscard]]
#else
#define CONC_NODISCARD __attribute__((warn_unused_result))
#endif
#define CONC_CACHELINE 64
#define CONC_UNUSED(x) ((void)(x))

#if !defined(CONC_DEBUG) && !defined(NDEBUG)
#define CONC_DEBUG 1
#endif

#ifndef CONC_ABORT
#define CONC_ABORT(msg) conc__abort(__FILE__, __LINE__, msg)
#endif
/* The caller's frames after the message (glibc's backtrace; CONC_NO_BACKTRACE turns it off).
 * Names need the program linked with -rdynamic; a static function, or the `fn.cold` part gcc
 * splits off at -O2 (-fno-reorder-blocks-and-partition keeps it in fn), shows as
 * prog(+0xOFFSET), which `addr2line -f -i -e prog 0xOFFSET` turns into functions and lines. */
#if !defined(CONC_NO_BACKTRACE) && defined(__GLIBC__) && defined(__has_include)
#if __has_include(<execinfo.h>)
#include <execinfo.h>
#define CONC__BASE_ABORT_BACKTRACE 1
#endif
#endif
#define CONC__BASE_ABORT_FRAMES 24 /* enough to reach the user's code through any conc slow path */

CONC_INLINE void conc__base_abort_write(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}
/* Misuse that cannot be reported. Only write(2) and backtrace_symbols_fd (no stdio, no malloc
 * once backtrace is loaded), so it works however broken the caller's state is. */
CONC_COLD void conc__abort(const char *file, int line, const char *msg) {
    char digits[12];
    int i = (int)sizeof digits - 1;
    unsigned u = line > 0 ? (unsigned)line : 0u;
    digits[i] = '\0';
    do
        digits[--i] = (char)('0' + u % 10u);
    while ((u /= 10u) != 0 && i > 0);
    conc__base_abort_write("conc: fatal: ");
    conc__base_abort_write(msg);
    conc__base_abort_write(" (");
    conc__base_abort_write(file);
    conc__base_abort_write(":");
    conc__base_abort_write(digits + i);
    conc__base_abort_write(")\n");
#if defined(CONC__BASE_ABORT_BACKTRACE)
    void *frames[CONC__BASE_ABORT_FRAMES];
    int n = backtrace(frames, CONC__BASE_ABORT_FRAMES);
    if (n > 1) { /* frames[0] is this function */
        conc__base_abort_write("conc: called from (most recent first; names need -rdynamic; "
                               "addr2line -f -i -e PROG 0xOFFSET names any frame):\n");
        backtrace_symbols_fd(frames + 1, n - 1, STDERR_FILENO);
    }
#endif
    abort();
}

/* ---------------------------------------------------------------------------------------------
 * Sanitizer detection
 * ------------------------------------------------------------------------------------------- */
#if defined(__SANITIZE_THREAD__)
#define CONC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CONC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CONC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONC_ASAN 1
#endif
#endif

#if defined(CONC_TSAN)
/* The TSan annotation interface (compiler-rt tsan_interface.h), declared here so no
 * sanitizer header is needed. Locks announce themselves so TSan's happens-before and
 * lock-order (deadlock) checkers see them as mutexes. */
void __tsan_mutex_create(void *addr, unsigned flags);
void __tsan_mutex_destroy(void *addr, unsigned flags);
void __tsan_mutex_pre_lock(void *addr, unsigned flags);
void __tsan_mutex_post_lock(void *addr, unsigned flags, int recursion);
int __tsan_mutex_pre_unlock(void *addr, unsigned flags);
void __tsan_mutex_post_unlock(void *addr, unsigned flags);
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define CONC_TSAN_MUTEX_TRY_LOCK (1u << 4)        /* __tsan_mutex_try_lock */
#define CONC_TSAN_MUTEX_TRY_LOCK_FAILED (1u << 5) /* __tsan_mutex_try_lock_failed */
#define CONC_TSAN_MUTEX_CREATE(a, f) __tsan_mutex_create((void *)(a), (f))
#define CONC_TSAN_MUTEX_PRE_LOCK(a, f) __tsan_mutex_pre_lock((void *)(a), (f))
#define CONC_TSAN_MUTEX_POST_LOCK(a, f) __tsan_mutex_post_lock((void *)(a), (f), 0)
#define CONC_TSAN_MUTEX_PRE_UNLOCK(a) ((void)__tsan_mutex_pre_unlock((void *)(a), 0))
#define CONC_TSAN_MUTEX_POST_UNLOCK(a) __tsan_mutex_post_unlock((void *)(a), 0)
#define CONC_TSAN_ACQUIRE(a) __tsan_acquire((void *)(a))
#define CONC_TSAN_RELEASE(a) __tsan_release((void *)(a))
#else
#define CONC_TSAN_MUTEX_TRY_LOCK 0u
#define CONC_TSAN_MUTEX_TRY_LOCK_FAILED 0u
#define CONC_TSAN_MUTEX_CREATE(a, f) ((void)0)
#define CONC_TSAN_MUTEX_PRE_LOCK(a, f) ((void)0)
#define CONC_TSAN_MUTEX_POST_LOCK(a, f) ((void)0)
#define CONC_TSAN_MUTEX_PRE_UNLOCK(a) ((void)0)
#define CONC_TSAN_MUTEX_POST_UNLOCK(a) ((void)0)
#define CONC_TSAN_ACQUIRE(a) ((void)0)
#define CONC_TSAN_RELEASE(a) ((void)0)
#endif

/* ---------------------------------------------------------------------------------------------
 * Atomics seam: thin wrappers over the __atomic builtins. Every call names its memory
 * order (no defaults), so a reader can grep the pairs, and a model or stress build can
 * hook in here. They are macros so one spelling serves 32- and 64-bit words.
 * ------------------------------------------------------------------------------------------- */
#define CONC_RELAXED __ATOMIC_RELAXED
#define CONC_ACQUIRE __ATOMIC_ACQUIRE
#define CONC_RELEASE __ATOMIC_RELEASE
#define CONC_ACQ_REL __ATOMIC_ACQ_REL
#define CONC_SEQ_CST __ATOMIC_SEQ_CST

#define conc_load(p, mo) __atomic_load_n((p), (mo))
#define conc_store(p, v, mo) __atomic_store_n((p), (v), (mo))
#define conc_swap(p, v, mo) __atomic_exchange_n((p), (v), (mo))
#define conc_fetch_add(p, v, mo) __atomic_fetch_add((p), (v), (mo))
#define conc_fetch_sub(p, v, mo) __atomic_fetch_sub((p), (v), (mo))
#define conc_fetch_or(p, v, mo) __atomic_fetch_or((p), (v), (mo))
#define conc_fetch_and(p, v, mo) __atomic_fetch_and((p), (v), (mo))
/* Strong CAS. On failure *expected receives the current value. */
#define conc_cas(p, expected, desired, mo_ok, mo_fail)                                             \
    __atomic_compare_exchange_n((p), (expected), (desired), false, (mo_ok), (mo_fail))
/* Weak CAS, for loops that retry anyway. */
#define conc_cas_weak(p, expected, desired, mo_ok, mo_fail)                                        \
    __atomic_compare_exchange_n((p), (expected), (desired), true, (mo_ok), (mo_fail))

/* A standalone fence, with the TSan annotation TSan needs (it ignores fences): callers pass
 * the address whose synchronization the fence stands for. */
#if defined(CONC_TSAN) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
/* gcc rejects __atomic_thread_fence under -fsanitize=thread (-Wtsan); TSan cannot see a
 * fence anyway, so under TSan the hardware fence does the ordering and the annotations
 * around it tell TSan about it. */
#define conc__fence_seq_cst_raw() __asm__ __volatile__("mfence" ::: "memory")
#else
#define conc__fence_seq_cst_raw() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#define conc_fence_seq_cst(addr)                                                                   \
    do {                                                                                           \
        CONC_TSAN_RELEASE(addr);                                                                   \
        conc__fence_seq_cst_raw();                                                                 \
        CONC_TSAN_ACQUIRE(addr);                                                                   \
    } while (0)

CONC_INLINE void conc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Online CPUs. Cached: sysconf reads /sys on each call. Relaxed: every writer stores the
 * same value, so any value read is either 0 (not yet cached) or right. */
static inline int conc_cpu_count(void) {
    static int cached; /* benign per-translation-unit cache, see CAVEATS */
    int n = conc_load(&cached, CONC_RELAXED);
    if (CONC_UNLIKELY(n == 0)) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v < 1 ? 1 : (v > INT_MAX ? INT_MAX : (int)v);
        conc_store(&cached, n, CONC_RELAXED);
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Time: int64_t nanoseconds on CLOCK_MONOTONIC
 * ------------------------------------------------------------------------------------------- */
#define CONC_FOREVER INT64_MAX
#define CONC_US ((int64_t)1000)
#define CONC_MS ((int64_t)1000000)
#define CONC_SEC ((int64_t)1000000000)

static inline int64_t conc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CONC_SEC + (int64_t)ts.tv_nsec;
}

/* now + ns, saturating: a huge timeout becomes CONC_FOREVER, a negative one "already past". */
static inline int64_t conc_deadline_in(int64_t ns) {
    int64_t now = conc_now();
    if (ns > 0 && now > CONC_FOREVER - ns)
        return CONC_FOREVER;
    return now + ns;
}

/* ---------------------------------------------------------------------------------------------
 * Chaos points: in CONC_CHAOS builds, a seeded random delay or yield at the library's racy
 * points; empty otherwise. The state is thread-local and per translation unit: it only has
 * to be random, not shared. Seeded from CONC_CHAOS_SEED and the thread's stack address.
 * ------------------------------------------------------------------------------------------- */
#if defined(CONC_CHAOS)
static inline void conc__chaos(void) {
    static __thread uint64_t state;
    uint64_t x = state;
    if (CONC_UNLIKELY(x == 0)) {
        const char *s = getenv("CONC_CHAOS_SEED");
        x = (s ? strtoull(s, NULL, 0) : 1u) * 0x9E3779B97F4A7C15ull;
        x ^= (uint64_t)(uintptr_t)&x;
        x |= 1;
    }
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    state = x;
    unsigned r = (unsigned)(x >> 32);
    if ((r & 63) == 0) { /* 1 in 64: a short busy delay of up to ~500 pauses */
        for (unsigned i = (r >> 8) % 500; i; i--)
            conc_cpu_relax();
    } else if ((r & 1023) == 1) { /* 1 in 1024: give the CPU away */
        sched_yield();
    }
}
#define CONC_CHAOS_POINT() conc__chaos()
#else
#define CONC_CHAOS_POINT() ((void)0)
#endif

/* ---------------------------------------------------------------------------------------------
 * Futex seam. The one place that talks to the kernel about sleeping; every module's
 * blocking path goes through these two functions.
 * ------------------------------------------------------------------------------------------- */
#define CONC_SHARED 1 /* init flag: the object lives in memory shared between processes */

/* CONC_FUTEX_HOOK(kind) runs before every futex syscall. Benchmarks and tests define it
 * (before including any conc header) to count syscalls: "no syscall when nobody waits"
 * is a claim they check by counting. */
#define CONC_FUTEX_HOOK_WAIT 0
#define CONC_FUTEX_HOOK_WAKE 1
#ifndef CONC_FUTEX_HOOK
#define CONC_FUTEX_HOOK(kind) ((void)0)
#endif

/* Tags: a sleeper may carry a tag, and a wake may name the tags it wants. A wake for
 * CONC_FUTEX_ANY wakes the oldest sleepers whatever their tags; a wake for one tag wakes the
 * oldest sleepers carrying it (Linux: FUTEX_WAIT_BITSET / FUTEX_WAKE_BITSET). conc_lock uses
 * this to hand the lock to a starving sleeper rather than to whoever slept first. A port
 * without tags may treat every tag as CONC_FUTEX_ANY: only who is woken first changes. */
#define CONC_FUTEX_ANY 0xffffffffu

/* Sleep while *word == expected, until woken or the absolute CLOCK_MONOTONIC deadline.
 * Returns 0 (woken), EAGAIN (*word != expected at the call), ETIMEDOUT (deadline passed) or
 * EINTR (a signal). The kernel compares *word with expected and queues the caller atomically
 * with respect to conc_futex_wake: that atomic check is what every sleep/wake protocol in
 * conc builds on. The deadline is absolute (FUTEX_WAIT_BITSET), so a retry after EINTR does
 * not stretch the wait. tag: see above (CONC_FUTEX_ANY if unsure). */
static inline int conc_futex_wait_tagged(uint32_t *word, uint32_t expected, int64_t deadline,
                                         int flags, uint32_t tag) {
    struct timespec ts, *tsp = NULL;
    if (deadline != CONC_FOREVER) {
        if (deadline <= conc_now())
            return ETIMEDOUT;
        ts.tv_sec = (time_t)(deadline / CONC_SEC);
        ts.tv_nsec = (long)(deadline % CONC_SEC);
        tsp = &ts;
    }
    int op = FUTEX_WAIT_BITSET | ((flags & CONC_SHARED) ? 0 : FUTEX_PRIVATE_FLAG);
    int saved_errno = errno; /* conc never changes errno: put back what syscall() sets */
    CONC_FUTEX_HOOK(CONC_FUTEX_HOOK_WAIT);
    long r = syscall(SYS_futex, word, op, expected, tsp, NULL, tag);
    int e = r == 0 ? 0 : errno;
    errno = saved_errno;
    if (e == 0 || e == EAGAIN || e == ETIMEDOUT || e == EINTR)
        return e;
    return EINTR; /* EFAULT/EINVAL cannot happen with a valid word; callers re-check anyway */
}

/* Wake up to n threads sleeping on word whose tag intersects tags (n = INT_MAX: all).
 * Returns how many woke. */
static inline int conc_futex_wake_tagged(uint32_t *word, int n, int flags, uint32_t tags) {
    int op = FUTEX_WAKE_BITSET | ((flags & CONC_SHARED) ? 0 : FUTEX_PRIVATE_FLAG);
    int saved_errno = errno;
    CONC_FUTEX_HOOK(CONC_FUTEX_HOOK_WAKE);
    long r = syscall(SYS_futex, word, op, n, NULL, NULL, tags);
    errno = saved_errno;
    return r < 0 ? 0 : (int)r;
}

static inline int conc_futex_wait(uint32_t *word, uint32_t expected, int64_t deadline, int flags) {
    return conc_futex_wait_tagged(word, expected, deadline, flags, CONC_FUTEX_ANY);
}

static inline int conc_futex_wake(uint32_t *word, int n, int flags) {
    return conc_futex_wake_tagged(word, n, flags, CONC_FUTEX_ANY);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_BASE_H */

/* conc/base.h - time, deadlines, futex seam, spinning, eventcount, atomics seam - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * The one header every conc module stands on. You rarely call it directly, but three things
 * in it are part of every module's API: time and deadlines (conc_deadline_in, CONC_MS,
 * CONC_FOREVER), the conventions every call follows (return codes, CONC_NODISCARD, names)
 * and the CONC_SHARED flag.
 *
 * CONTENTS
 *   QUICK START, API, CONVENTIONS (return codes, deadlines, CONC_NODISCARD, names),
 *   ORDERING CONTRACT, CONFIGURATION, CAVEATS; then the code: compiler vocabulary,
 *   sanitizers, atomics, time and deadlines, chaos points, futex seam, spinning, yields that
 *   pay, eventcount, and the section for other conc headers (intrusive lists, scratch arrays,
 *   the would-block test).
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
 *             conc_deadline_passed(dl)    dl is not CONC_FOREVER and now >= dl
 *   futex     conc_futex_wait(word, expected, flags, dl)        0, EAGAIN, ETIMEDOUT, EINTR
 *                                         (a past dl tries once: EAGAIN if the value differs)
 *                                         (the first design's order, (word, expected, dl,
 *                                         flags), works too: an int64_t third argument is dl,
 *                                         but wide flags (a long) before an int64_t are flags)
 *                                         (a word the kernel refuses, not 4-byte aligned or
 *                                         unmapped, aborts in a debug build; else EINTR)
 *             conc_futex_wake(word, n, flags)                   number woken
 *             conc_futex_wait_tagged(word, expected, flags, tag, dl) / conc_futex_wake_tagged
 *                                         the same, waking by tag
 *             conc_futex_flags(bits, shared_bit)  CONC_SHARED if bits has shared_bit, else 0
 *             conc_futex_sleep_until(flags, dl)  one sleep's deadline: dl, or for CONC_SHARED
 *                                         at most CONC_FUTEX_SHARED_RECHECK_NS from now
 *             conc_futex_half_low(w64) / conc_futex_half_high(w64)  a 64-bit word's halves
 *             conc_futex_wait_flagged(word, &v, bit, flags, mo, dl)  raise a waiters bit, sleep
 *             conc_futex_wait_zero(word64, w, bit, gen_mask, flags, dl)  until a count is 0
 *             (flags: 0 for a private object, CONC_SHARED between processes)
 *   cpu       conc_cpu_relax()            the spin-loop hint (pause / yield)
 *             conc_cpu_count()            online CPUs, cached
 *   asymmetric conc_light_barrier(), conc_heavy_barrier(caller),
 *             conc_heavy_barrier_available()  a Dekker pair whose frequent side pays no
 *                                         fence and whose rare side pays membarrier(2)
 *             conc_thread_token()         the calling thread, as a number (its pointer)
 *             conc_fork_generation()      fork() calls this process descends through
 *   spin      conc_spin_begin(pauses, pace, dl), conc_spin_next(&spin)
 *                                         the one spin-before-sleeping loop (see Spinning)
 *   yield     conc_yield_policy_t (zero, or conc_yield_policy_init), conc_yield_allowed(&p, now),
 *             conc_yield_account(&p, before, after, progress, unit_ns)
 *                                         yield to peers on our CPU while that pays
 *   eventcount  conc_eventcount_enter/wait/leave, conc_eventcount_notify/close
 *             (notify = conc_eventcount_wants_wake + conc_eventcount_wake_slow),
 *             conc_eventcount_waiters(w)  registered waiters in a word
 *                                         sleep until a condition other threads make true
 *   compile   CONC_STATIC_ASSERT(cond, why)  a size or layout claim, C11 and C++17
 *             CONC__INIT_REFUSE(bad)        0; a compile error in an initializer if a
 *                                         constant `bad` holds
 *   misuse    conc__base_misuse_slow(caller, what)  abort with "caller: what"
 *             conc__base_check_init_flags(flags, caller)  a void init's flags: any bit but
 *                                         CONC_SHARED aborts, naming the caller
 *   errno     conc_errno_save(), conc_errno_restore(saved)  keep errno across libc calls;
 *             conc_malloc_keep_errno(n), _calloc_(k, n), _realloc_(p, n): failure is NULL only
 *   version   CONC_VERSION_MAJOR/MINOR/PATCH, CONC_VERSION_STRING
 *
 * CONVENTIONS (all modules)
 *   - A call that can fail returns int: 0 on success, else a positive errno value
 *     (EBUSY, EAGAIN, ETIMEDOUT, EPIPE, ECANCELED, EPERM, EOVERFLOW, EINVAL, ENOMEM).
 *     No call sets errno. Beware: `if (conc_lock_try_acquire(&l))` is true on FAILURE.
 *   - Deadlines are absolute int64_t nanoseconds on CLOCK_MONOTONIC. A deadline in the
 *     past means "try once" and fails with ETIMEDOUT. A wait interrupted by a signal or
 *     woken spuriously keeps the same deadline (FUTEX_WAIT_BITSET takes it as absolute).
 *   - The deadline is the last argument before the out-parameters (or the last argument when
 *     there are none): conc_queue_pop_batch_until(q, items, n, dl, &popped).
 *   - CONC_NODISCARD marks every call whose result says whether the work was done for a
 *     reason the caller does not control: every try_ and _until call, create, and any call
 *     whose error loses work (a semaphore release past its bound: EOVERFLOW; a push to or a
 *     pop from a closed queue: EPIPE). It is not on calls that cannot fail, nor on init
 *     calls whose only error is EINVAL for arguments the caller chose (conc_sem_init(&s, 3,
 *     3, 0) with constants cannot fail; with run-time arguments, check it). To drop a marked
 *     result on purpose write `(void)!call(...)`: gcc's warn_unused_result ignores a plain
 *     (void) cast, the `!` uses the value.
 *   - Names: public conc_<module>_<verb>[_<qualifier>]; internals conc__<module>_* and
 *     CONC__<MODULE>_* (the full module name: base.h's are conc__base_*); bit fields
 *     *_ONE (one unit), *_MASK, *_SHIFT; cold out-of-line paths end in _slow; timeline tags
 *     name their module ([lock.R1], [eventcount.W1]). A header reads another header's
 *     internals only through the section "For other conc headers" at that header's end.
 *
 * ORDERING CONTRACT
 *   base.h itself orders nothing: each module states its own contract. The atomic
 *   wrappers take an explicit memory order; none has a default.
 *
 * CONFIGURATION (define before including)
 *   CONC_DEBUG    extra misuse checks that abort with a message: 1 or 0, by default 1
 *                 unless NDEBUG is defined (always defined after base.h: `#if CONC_DEBUG`).
 *   CONC_CHAOS    turn CONC_CHAOS_POINT() into seeded random delays and yields, so stress
 *                 tests shake out interleavings two cores rarely produce. Seed:
 *                 CONC_CHAOS_SEED in the environment (printed by the test harness).
 *   CONC_ABORT(msg)  how misuse is reported (default: message and the caller's frames to
 *                 stderr, then abort()).
 *   CONC_NO_BACKTRACE  leave the caller's frames out of that message (they come from glibc's
 *                 backtrace(); function names need the program linked with -rdynamic, and
 *                 on 32-bit ARM, frames at all need C built with -funwind-tables).
 *   CONC_FUTEX_HOOK(kind)  called before every futex syscall (kind: CONC_FUTEX_HOOK_WAIT or
 *                 CONC_FUTEX_HOOK_WAKE); benchmarks count syscalls with it. Default: nothing.
 *   Every module's CONC_<MODULE>_SPIN counts pauses (see Spinning below).
 *
 * CAVEATS
 *   - Linux only for now (glibc or musl; x86-64, aarch64 and 32-bit armhf are tested):
 *     futex wait/wake live behind conc_futex_wait/conc_futex_wake, the one seam a port
 *     (macOS os_sync_wait_on_address, FreeBSD _umtx_op, Windows WaitOnAddress) replaces.
 *   - Needs C11 (or C++11; from C++17 CONC_NODISCARD is [[nodiscard]]) and the GCC/Clang
 *     __atomic builtins. With -std=c11 also define _DEFAULT_SOURCE (or use -std=gnu11):
 *     strict C11 hides syscall().
 *   - No state per translation unit: the headers' few variables are weak, one per program
 *     whichever files include them, and thread-local where per thread (conc_cpu_count()'s
 *     cache, base.h's chaos state, coro.h's current scheduler and overflow-handler flag,
 *     executor.h's worker mark, chan.h's select random state). Shared libraries share them
 *     too, built with -fvisibility=hidden as well (they are exported whatever the default),
 *     except a library linked with -Bsymbolic, --exclude-libs or a version script that makes
 *     them local (local: *), or loaded with dlopen by a program that does not export its own
 *     (link it with -rdynamic): such a library keeps its own copies, and
 *     in a coroutine of the program's scheduler, or a worker of its executor, the library's
 *     code finds none (conc_coro_self() is NULL there, its coroutine calls say EPERM).
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
#include <pthread.h>
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
#if defined(__cplusplus) && __cplusplus >= 201703L
#define CONC_NODISCARD [[nodiscard]] /* a (void) cast discards it, as a C++ reader expects */
#else /* C, and C++ before 17 (where [[nodiscard]] is an extension -Wpedantic rejects) */
#define CONC_NODISCARD __attribute__((warn_unused_result))
#endif
#define CONC_CACHELINE 64
#define CONC_UNUSED(x) ((void)(x))

/* A size or layout claim checked at compile time, in C11 and in C++17. File scope or block
 * scope; `why` is a string literal that the compiler prints when the claim breaks. */
#if defined(__cplusplus)
#define CONC_STATIC_ASSERT(cond, why) static_assert(cond, why)
#else
#define CONC_STATIC_ASSERT(cond, why) _Static_assert(cond, why)
#endif

/* A static initializer's check of its arguments (CONC_SEM_INIT, CONC_LATCH_INIT): 0, and when
 * `bad` is a constant that holds, a negative array size, so the line does not compile. With
 * run-time arguments it is 0, and the header's debug build checks them instead; the array is
 * then variable-length, which C++ knows only as an extension (__extension__: no -Wpedantic
 * error in g++). `bad` compares no argument with a constant outside the argument's type
 * (a shift instead): with a uint16_t argument, gcc's -Wtype-limits calls such a comparison
 * always false and -Werror stops the build. */
#define CONC__INIT_REFUSE(bad)                                                                     \
    (__extension__(0u * (uint32_t)sizeof(char[(__builtin_constant_p(bad) && (bad)) ? -1 : 1])))

/* Always defined, 0 or 1, so `#if CONC_DEBUG` and `if (CONC_DEBUG)` read it under -Wundef in a
 * release build too. */
#ifndef CONC_DEBUG
#ifdef NDEBUG
#define CONC_DEBUG 0
#else
#define CONC_DEBUG 1
#endif
#endif

#ifndef CONC_ABORT
#define CONC_ABORT(msg) conc__base_abort_slow(__FILE__, __LINE__, msg)
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
CONC_COLD void conc__base_abort_slow(const char *file, int line, const char *msg) {
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

/* No conc call sets errno (CONVENTIONS): a call that reaches libc where errno may change
 * (allocation, thread creation, sysconf) saves it first and puts it back before returning. */
/* The compiler barriers keep both ends where they are written: clang takes malloc for a call that
 * touches none of the caller's memory, errno included, and would move the load after it or drop
 * the store as one that writes back the value it believes is still there. */
CONC_INLINE int conc_errno_save(void) {
    int saved = errno;
    __asm__ __volatile__("" ::: "memory");
    return saved;
}
CONC_INLINE void conc_errno_restore(int saved) {
    __asm__ __volatile__("" ::: "memory");
    errno = saved;
}
/* Allocation that leaves errno alone: a conc call reports its failure as ENOMEM. */
CONC_INLINE void *conc_malloc_keep_errno(size_t bytes) {
    int saved = conc_errno_save();
    void *p = malloc(bytes);
    conc_errno_restore(saved);
    return p;
}
CONC_INLINE void *conc_calloc_keep_errno(size_t count, size_t size) {
    int saved = conc_errno_save();
    void *p = calloc(count, size);
    conc_errno_restore(saved);
    return p;
}
CONC_INLINE void *conc_realloc_keep_errno(void *old, size_t bytes) {
    int saved = conc_errno_save();
    void *p = realloc(old, bytes);
    conc_errno_restore(saved);
    return p;
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
#define conc__base_fence_seq_cst_raw() __asm__ __volatile__("mfence" ::: "memory")
#else
#define conc__base_fence_seq_cst_raw() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif
#define conc_fence_seq_cst(addr)                                                                   \
    do {                                                                                           \
        CONC_TSAN_RELEASE(addr);                                                                   \
        conc__base_fence_seq_cst_raw();                                                            \
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
 * same value, so any value read is either 0 (not yet cached) or right. errno kept: without
 * /sys (containers, chroots) glibc falls back to /proc and leaves ENOENT behind. */
/* The headers' few variables, and the one function whose address is a tag: weak, so that
 * every file that includes a header may define them and the linker keeps one; of default
 * visibility, so that a shared library built with -fvisibility=hidden exports them, and the
 * dynamic linker binds its uses to the program's (linked with -Bsymbolic, or loaded with
 * dlopen by a program that exports nothing, it keeps its own: see CAVEATS). Their symbols
 * carry the kit's version (CONC__ABI_NAME, on the first declaration), and coro.h's the
 * switch backend too (it changes the scheduler's layout): two libraries that vendor
 * different builds of conc keep their state apart, as they must, instead of sharing
 * variables whose layouts differ. */
#define CONC__ONE_PER_PROGRAM __attribute__((weak, visibility("default")))
#define CONC__ABI_STR_(x) #x
#define CONC__ABI_STR(x) CONC__ABI_STR_(x)
#define CONC__ABI_VERSION                                                                          \
    "_v" CONC__ABI_STR(CONC_VERSION_MAJOR) "_" CONC__ABI_STR(                                      \
        CONC_VERSION_MINOR) "_" CONC__ABI_STR(CONC_VERSION_PATCH)
#define CONC__ABI_NAME(name, tag) __asm__(#name CONC__ABI_VERSION tag)
#define CONC__ABI(name) CONC__ABI_NAME(name, "")

extern int conc__base_cpu_count_cached CONC__ABI(conc__base_cpu_count_cached);
CONC__ONE_PER_PROGRAM int conc__base_cpu_count_cached = 0;

static inline int conc_cpu_count(void) {
    int *cached = &conc__base_cpu_count_cached;
    int n = conc_load(cached, CONC_RELAXED);
    if (CONC_UNLIKELY(n == 0)) {
        int saved = conc_errno_save();
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        conc_errno_restore(saved);
        n = v < 1 ? 1 : (v > INT_MAX ? INT_MAX : (int)v);
        conc_store(cached, n, CONC_RELAXED);
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

/* Whether a wait with this deadline must stop now. CONC_FOREVER never passes and costs no
 * clock read. Every blocking path in conc asks this one question, the same way. */
static inline bool conc_deadline_passed(int64_t deadline) {
    return deadline != CONC_FOREVER && conc_now() >= deadline;
}

/* ---------------------------------------------------------------------------------------------
 * Chaos points: in CONC_CHAOS builds, a seeded random delay or yield at the library's racy
 * points; empty otherwise. The state is thread-local, one for the whole program (weak, as
 * coro.h's current scheduler: a `static` one would give each file its own stream). Seeded
 * from CONC_CHAOS_SEED and the address of the thread's state.
 * ------------------------------------------------------------------------------------------- */
#define CONC__BASE_CHAOS_SEED_MIX 0x9E3779B97F4A7C15ull /* 2^64 / golden ratio: spreads seeds */
#define CONC__BASE_CHAOS_DELAY_MASK 63u                 /* 1 point in 64 gets a busy delay... */
#define CONC__BASE_CHAOS_DELAY_MAX 500u   /* ...of fewer than this many pauses (~10 us) */
#define CONC__BASE_CHAOS_YIELD_MASK 1023u /* 1 point in 1024 gives the CPU away */
#define CONC__BASE_CHAOS_DELAY_SHIFT 8    /* delay length: bits above the ones that chose */
#define CONC__BASE_CHAOS_NONE 0           /* what a chaos point does: nothing, */
#define CONC__BASE_CHAOS_DELAY 1          /* spin for *pauses pauses, */
#define CONC__BASE_CHAOS_YIELD 2          /* or sched_yield */

/* A generator state from a seed (CONC_CHAOS_SEED) and a per-thread address: never 0. */
static inline uint64_t conc__base_chaos_seed(uint64_t seed, const void *thread_address) {
    uint64_t x = seed * CONC__BASE_CHAOS_SEED_MIX;
    x ^= (uint64_t)(uintptr_t)thread_address;
    return x | 1;
}

/* One draw: what the next chaos point does (a CONC__BASE_CHAOS_* value; *pauses is the delay's
 * length). Pure, so tests can check the mix without timing anything. */
static inline int conc__base_chaos_draw(uint64_t *state, unsigned *pauses) {
    uint64_t x = *state;
    x ^= x << 13; /* xorshift64 (Marsaglia's 13, 7, 17 triple) */
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    unsigned r = (unsigned)(x >> 32); /* the high half: the better-mixed bits */
    *pauses = 0;
    if ((r & CONC__BASE_CHAOS_DELAY_MASK) == 0) {
        *pauses = (r >> CONC__BASE_CHAOS_DELAY_SHIFT) % CONC__BASE_CHAOS_DELAY_MAX;
        return CONC__BASE_CHAOS_DELAY;
    }
    if ((r & CONC__BASE_CHAOS_YIELD_MASK) == 1)
        return CONC__BASE_CHAOS_YIELD;
    return CONC__BASE_CHAOS_NONE;
}

#if defined(CONC_CHAOS)
extern __thread uint64_t conc__base_chaos_state CONC__ABI(conc__base_chaos_state);
CONC__ONE_PER_PROGRAM __thread uint64_t conc__base_chaos_state = 0; /* 0: not seeded yet */

static inline void conc__base_chaos(void) {
    uint64_t *state = &conc__base_chaos_state;
    if (CONC_UNLIKELY(*state == 0)) {
        const char *s = getenv("CONC_CHAOS_SEED");
        *state = conc__base_chaos_seed(s ? strtoull(s, NULL, 0) : 1u, state);
    }
    unsigned pauses;
    int what = conc__base_chaos_draw(state, &pauses);
    if (what == CONC__BASE_CHAOS_DELAY) {
        for (; pauses; pauses--)
            conc_cpu_relax();
    } else if (what == CONC__BASE_CHAOS_YIELD) {
        sched_yield();
    }
}
#define CONC_CHAOS_POINT() conc__base_chaos()
#else
#define CONC_CHAOS_POINT() ((void)0)
#endif

/* ---------------------------------------------------------------------------------------------
 * Futex seam. The one place that talks to the kernel about sleeping; every module's
 * blocking path goes through these two functions.
 * ------------------------------------------------------------------------------------------- */
#define CONC_SHARED 1 /* init flag: the object lives in memory shared between processes */

/* Misuse a call cannot report: aborts with "<caller>: <what>", naming the public call the
 * user wrote where one internal path serves several. */
CONC_COLD void conc__base_misuse_slow(const char *caller, const char *what) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", caller, what);
    CONC_ABORT(msg);
}

/* The void inits (lock, cond, event, once, latch, rwlock) cannot report flags other than
 * CONC_SHARED: rather than drop them silently they abort, naming the caller. */
CONC_INLINE void conc__base_check_init_flags(int flags, const char *caller) {
    if (CONC_UNLIKELY(flags & ~CONC_SHARED))
        conc__base_misuse_slow(caller, "flags other than 0 and CONC_SHARED");
}

/* ---------------------------------------------------------------------------------------------
 * Asymmetric barrier: a Dekker pair whose one side runs often and the other rarely. The
 * frequent side orders its store before its load with a compiler barrier alone
 * (conc_light_barrier, free); the rare side issues conc_heavy_barrier, which makes every
 * thread of the process that is running execute a full barrier (membarrier(2)'s
 * PRIVATE_EXPEDITED: an IPI to the CPUs running them; a thread not running has passed one
 * in its context switch). Then, with X and Y zero at first:
 *
 *   frequent: store X = 1; light barrier; load Y     rare: store Y = 1; heavy barrier; load X
 *
 * at least one of the loads reads 1: if the frequent thread's barrier point falls after its
 * store, the rare load sees X; if before, its load comes after a full barrier that follows
 * the rare store. (The liburcu and folly technique.) The rare side pays a syscall: 0.25 us
 * here with no other thread of ours running, 10 us when one runs on the other CPU of a VM.
 * ------------------------------------------------------------------------------------------- */
/* Forks this process descends through: a child's handler (pthread_atfork) steps it, so a
 * child tells its parent's threads from its own. A forking thread's pointer lives on in the
 * child, and glibc gives the child's new threads stacks (and thread pointers) of the
 * parent's threads: an identity kept across a fork must carry this too. One per program,
 * with its handler registered once, at load time (a constructor of the first file that runs
 * one): never from a signal handler (pthread_atfork is not async-signal-safe and waits for a
 * fork in progress), and every copy of the count (a library that keeps its own, CAVEATS) has
 * a handler of its own. A child made without the handlers (_Fork, a raw clone) is not told. */
extern unsigned conc__base_fork_generation CONC__ABI(conc__base_fork_generation);
CONC__ONE_PER_PROGRAM unsigned conc__base_fork_generation = 0;
extern int conc__base_fork_handler CONC__ABI(conc__base_fork_handler);
CONC__ONE_PER_PROGRAM int conc__base_fork_handler = 0; /* 0 none, 1 registering, 2 registered */

static void conc__base_forked_child(void) {
    conc_store(&conc__base_fork_generation, conc__base_fork_generation + 1, CONC_RELAXED);
}

__attribute__((constructor)) static void conc__base_register_fork_handler(void) {
    int none = 0; /* relaxed: the first constructor to run registers; the rest see it done */
    if (conc_cas(&conc__base_fork_handler, &none, 1, CONC_RELAXED, CONC_RELAXED))
        conc_store(&conc__base_fork_handler,
                   pthread_atfork(NULL, NULL, conc__base_forked_child) == 0 ? 2 : -1, CONC_RELEASE);
}

/* Relaxed: it changes only in a child, before any thread but the forking one runs there. */
CONC_INLINE unsigned conc_fork_generation(void) {
    return conc_load(&conc__base_fork_generation, CONC_RELAXED);
}

/* The calling thread, as a number no other live thread of this process has (never 0, 1 or
 * 2: it is an aligned address). The thread pointer, one register read; glibc's pthread_self()
 * returns the same value on x86-64 but costs a call. */
CONC_INLINE uintptr_t conc_thread_token(void) {
#if (defined(__x86_64__) || defined(__aarch64__)) && (defined(__clang__) || __GNUC__ >= 11)
    return (uintptr_t)__builtin_thread_pointer();
#else
    return (uintptr_t)pthread_self();
#endif
}

/* The frequent side's half: keeps the compiler from moving the store after the load; the
 * heavy barrier does what the CPU would otherwise need a fence for. */
CONC_INLINE void conc_light_barrier(void) {
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

#define CONC__BASE_MEMBARRIER_PRIVATE_EXPEDITED (1 << 3)          /* linux/membarrier.h */
#define CONC__BASE_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED (1 << 4) /* since Linux 4.14 */

CONC_COLD long conc__base_membarrier_slow(int cmd) {
#ifdef SYS_membarrier
    int saved = conc_errno_save();
    long r = syscall(SYS_membarrier, cmd, 0u, 0);
    long e = r < 0 ? errno : 0;
    conc_errno_restore(saved);
    return e;
#else
    (void)cmd;
    return ENOSYS;
#endif
}

/* Whether the heavy barrier works here: registers the process once (a file's first call
 * makes the syscall; registering twice is harmless). False where the kernel (before 4.14),
 * a seccomp filter or an emulator refuses it: then the frequent side must pay a real fence
 * (the caller's choice; a queue keeps its CAS). */
static inline bool conc_heavy_barrier_available(void) {
    static int state; /* 0 unknown, 1 registered, -1 refused; relaxed: every file's answer */
    int s = conc_load(&state, CONC_RELAXED);
    if (s == 0) {
        long e = conc__base_membarrier_slow(CONC__BASE_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED);
        /* A user of the barrier that keeps an identity across fork needs the generation:
         * acquire, pairs with the constructor's release. */
        s = e == 0 && conc_load(&conc__base_fork_handler, CONC_ACQUIRE) == 2 ? 1 : -1;
        conc_store(&state, s, CONC_RELAXED);
    }
    return s > 0;
}

/* The rare side's half. Only after conc_heavy_barrier_available() said yes: a refusal now
 * (a seccomp filter installed since) leaves the frequent side unordered, so it aborts,
 * naming the caller. A forked child registers again: the kernel may not carry it over. */
static inline void conc_heavy_barrier(const char *caller) {
    long e = conc__base_membarrier_slow(CONC__BASE_MEMBARRIER_PRIVATE_EXPEDITED);
    if (e == EPERM &&
        conc__base_membarrier_slow(CONC__BASE_MEMBARRIER_REGISTER_PRIVATE_EXPEDITED) == 0)
        e = conc__base_membarrier_slow(CONC__BASE_MEMBARRIER_PRIVATE_EXPEDITED);
    if (CONC_UNLIKELY(e != 0))
        conc__base_misuse_slow(caller, "membarrier(2) refused after it had worked (a seccomp "
                                       "filter installed while a queue relied on it?)");
}

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

#define CONC__BASE_HALF_SHIFT 32 /* a 64-bit word's high half: w >> CONC__BASE_HALF_SHIFT */

/* The low and the high 32-bit halves of a 64-bit word, as futex words (a futex is 32 bits):
 * for objects whose fast paths update one 64-bit word but whose sleepers wait for one half of
 * it to change. The word must be 8-byte aligned. */
CONC_INLINE uint32_t *conc_futex_half_low(uint64_t *word) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)(void *)word + 1;
#else
    return (uint32_t *)(void *)word;
#endif
}
CONC_INLINE uint32_t *conc_futex_half_high(uint64_t *word) {
    uint32_t *low = conc_futex_half_low(word), *base = (uint32_t *)(void *)word;
    return low == base ? base + 1 : base;
}

/* The futex flags of an object that keeps its CONC_SHARED mark as shared_bit in bits: every
 * module stores the mark in a word it reads anyway, and asks here. */
CONC_INLINE int conc_futex_flags(uint32_t bits, uint32_t shared_bit) {
    return (bits & shared_bit) ? CONC_SHARED : 0;
}

/* How long a sleeper on a CONC_SHARED word sleeps at most before it looks again. A wake can
 * die with a process: one killed asleep stays queued on the futex until it runs again, and
 * a FUTEX_WAKE that picks it meanwhile counts it as woken while a live sleeper beside it
 * sleeps on; one killed between the RMW that lets sleepers go and its wake takes the wake
 * with it. Either way no wake is coming, so every shared sleep ends after this long and the
 * sleeper looks at its condition again. A private object's threads die with their process:
 * its sleepers sleep until their deadline. */
#define CONC_FUTEX_SHARED_RECHECK_NS (100 * CONC_MS)

/* The deadline of one sleep: the caller's, or for a CONC_SHARED word at most
 * CONC_FUTEX_SHARED_RECHECK_NS from now. A sleep that ends at a deadline earlier than the
 * caller's is a recheck: look again, as after a wake. */
CONC_INLINE int64_t conc_futex_sleep_until(int flags, int64_t deadline) {
    if (flags & CONC_SHARED) {
        int64_t recheck = conc_now() + CONC_FUTEX_SHARED_RECHECK_NS;
        if (recheck < deadline)
            return recheck;
    }
    return deadline;
}

/* The kernel refused a futex wait: EINVAL for a word that is not 4-byte aligned (in a
 * packed struct, say) or a tag of 0, EFAULT for a word in no mapping (used after a free or an
 * munmap). No caller could ever sleep there: each would look at its word again and again at
 * full speed. A debug build says so; a release build returns EINTR, and its callers poll. */
CONC_COLD void conc__base_futex_refused_slow(int e) {
    if (e == EINVAL)
        CONC_ABORT("conc_futex_wait: the kernel refused the word (EINVAL): not 4-byte aligned "
                   "(a packed struct?), or a tag of 0");
    if (e == EFAULT)
        CONC_ABORT("conc_futex_wait: the word is in no mapping (EFAULT): used after it was "
                   "freed or unmapped?");
}

/* Sleep while *word == expected, until woken or the absolute CLOCK_MONOTONIC deadline.
 * Returns 0 (woken), EAGAIN (*word != expected at the call), ETIMEDOUT (deadline passed) or
 * EINTR (a signal). The kernel compares *word with expected and queues the caller atomically
 * with respect to conc_futex_wake: that atomic check is what every sleep/wake protocol in
 * conc builds on. The deadline is absolute (FUTEX_WAIT_BITSET), so a retry after EINTR does
 * not stretch the wait. tag: see above (CONC_FUTEX_ANY if unsure). */
static inline int conc_futex_wait_tagged(uint32_t *word, uint32_t expected, int flags, uint32_t tag,
                                         int64_t deadline) {
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
#if CONC_DEBUG
    conc__base_futex_refused_slow(e);
#endif
    return EINTR; /* release builds: callers look at the word again (and poll, see above) */
}

/* Wake up to n threads sleeping on word whose tag intersects tags (n = INT_MAX: all).
 * Returns how many woke. n <= 0 wakes nobody (the kernel would wake one). */
static inline int conc_futex_wake_tagged(uint32_t *word, int n, int flags, uint32_t tags) {
    if (n <= 0)
        return 0;
    int op = FUTEX_WAKE_BITSET | ((flags & CONC_SHARED) ? 0 : FUTEX_PRIVATE_FLAG);
    int saved_errno = errno;
    CONC_FUTEX_HOOK(CONC_FUTEX_HOOK_WAKE);
    long r = syscall(SYS_futex, word, op, n, NULL, NULL, tags);
    errno = saved_errno;
    return r < 0 ? 0 : (int)r;
}

/* conc_futex_wait: the same with CONC_FUTEX_ANY. A deadline already past tries once, as the
 * kernel's own FUTEX_WAIT would: EAGAIN if *word != expected, else ETIMEDOUT. The tagged form
 * returns ETIMEDOUT there without looking (lock.h reads that as a WAKING wait's end). */
static inline int conc_futex_wait(uint32_t *word, uint32_t expected, int flags, int64_t deadline) {
    if (deadline != CONC_FOREVER && deadline <= conc_now())
        return conc_load(word, CONC_RELAXED) != expected ? EAGAIN : ETIMEDOUT;
    return conc_futex_wait_tagged(word, expected, flags, CONC_FUTEX_ANY, deadline);
}

/* The first design wrote conc_futex_wait(word, expected, deadline, flags); the rule "the
 * deadline last" won. A call written in that order still works: a deadline is an int64_t and
 * flags an int, so the macro takes the third argument for the deadline when it is as wide as
 * an int64_t, unless the fourth is as wide too and the third's value fits an int: flags held
 * in a long, a size_t or an int64_t are flags (a deadline that fits an int is 2 s after boot
 * at most, long past, and so is the fourth argument read as one: the call tries once either
 * way). A past deadline written as the literal 0 reads as flags 0, and the call still tries
 * once. The width is that of the argument + 0 (its promoted type), so a bit-field, which
 * sizeof refuses, passes as it would to the function. The function keeps its name:
 * &conc_futex_wait and (conc_futex_wait)(...) reach it directly. */
CONC_INLINE int conc__base_futex_wait_either(uint32_t *word, uint32_t expected, bool third_wide,
                                             bool fourth_wide, int64_t third, int64_t fourth) {
    bool third_is_deadline = third_wide && (!fourth_wide || third < INT_MIN || third > INT_MAX);
    return third_is_deadline ? conc_futex_wait(word, expected, (int)fourth, third)
                             : conc_futex_wait(word, expected, (int)third, fourth);
}
#define conc_futex_wait(word, expected, third, fourth)                                             \
    conc__base_futex_wait_either((word), (expected), sizeof((third) + 0) == sizeof(int64_t),       \
                                 sizeof((fourth) + 0) == sizeof(int64_t), (int64_t)(third),        \
                                 (int64_t)(fourth))

static inline int conc_futex_wake(uint32_t *word, int n, int flags) {
    return conc_futex_wake_tagged(word, n, flags, CONC_FUTEX_ANY);
}

/* One sleep on a word that carries a "someone may sleep" bit (conc_event's WAITERS, a future's
 * waiters bit): raises the bit if *v lacks it (a request that the waker's RMW reads: it wakes
 * only if it replaced a word with the bit), then sleeps while the word still equals *v. The
 * kernel's re-check of the word is what makes the sleep safe. mo orders the raising CAS and
 * the reload: acquire when a fresh *v may be the final word the caller returns on, else
 * relaxed. Returns 0 (look again: *v is fresh) or futex_wait's ETIMEDOUT/EINTR/EAGAIN, with *v
 * fresh too. The caller checks its condition and its deadline before each call. */
CONC_INLINE int conc_futex_wait_flagged(uint32_t *word, uint32_t *v, uint32_t bit, int flags,
                                        int mo, int64_t deadline) {
    if (!(*v & bit)) {
        if (!conc_cas(word, v, *v | bit, mo, mo))
            return 0; /* *v is fresh: decide again */
        *v |= bit;
    }
    CONC_CHAOS_POINT();
    int r = conc_futex_wait(word, *v, flags, deadline);
    *v = conc_load(word, mo);
    return r;
}

/* A wait group's wait (conc_latch, conc_queue's task count), on a 64-bit word whose high half
 * is a count and whose low half, the futex, holds waiters_bit and a generation (the bits of
 * gen_mask) that the RMW bringing the count to zero advances, clearing waiters_bit (and wakes
 * everyone if it was up). w is the caller's acquire load of the word, count above zero.
 * Returns 0 once the count reads zero or the generation differs from w's (a zero came since w:
 * an add right after it does not strand the waiter), ETIMEDOUT once the deadline has passed
 * with neither. Acquire loads and CAS failures: the word the wait returns on pairs with the
 * zeroing RMW's release. The raising CAS acts on the whole word, so the zeroing RMW reads the
 * bit; the sleep is on the low half, which changes only at a zero or when a waiter raises the
 * bit, so adds and decrements that do not reach zero never wake a waiter. */
static inline int conc_futex_wait_zero(uint64_t *word, uint64_t w, uint64_t waiters_bit,
                                       uint64_t gen_mask, int flags, int64_t deadline) {
    const uint64_t gen = w & gen_mask;
    int r = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if ((w >> CONC__BASE_HALF_SHIFT) == 0 || (w & gen_mask) != gen)
            return 0;
        if (r == ETIMEDOUT || conc_deadline_passed(deadline))
            return ETIMEDOUT;
        if (!(w & waiters_bit)) {
            /* A request the zeroing RMW reads; acquire for the failure case (w is fresh). */
            if (!conc_cas(word, &w, w | waiters_bit, CONC_ACQUIRE, CONC_ACQUIRE))
                continue;
            w |= waiters_bit;
        }
        r = conc_futex_wait(conc_futex_half_low(word), (uint32_t)w, flags, deadline);
        w = conc_load(word, CONC_ACQUIRE);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Spinning: the one loop lock, sem, cond, event, rwlock and barrier run before they sleep (the
 * queue, future and executor spin their own way: their headers say how).
 *
 * A thread about to sleep first spins a little, in case the event it waits for is a few
 * microseconds away: a futex sleep and wake across CPUs costs 13-150 us on a VM, a pause
 * 10-40 ns. Every module's CONC_<MODULE>_SPIN setting counts the same unit, pauses
 * (conc_cpu_relax), whatever the module looks at between them. One rule for yields: before
 * every CONC_SPIN_YIELD_LOOKS-th look, a sched_yield takes the place of the gap's pauses,
 * because when the thread we wait for shares our CPU (oversubscribed, or a busy machine) no
 * number of pauses lets it run. (Counted in looks, not pauses: a backing-off spin looks
 * rarely, and a yield between two widely spaced looks of a lock word would only hand the CPU
 * to another spinner; measured in bench_lock at 8 threads on 2 CPUs.)
 * Spinning is skipped on one CPU (nobody can make progress while we spin) and when the
 * deadline has passed (a past deadline tries once). The pace is how many pauses separate
 * two looks: CONC_SPIN_STEADY looks after every pause; CONC_SPIN_BACKOFF doubles the gap
 * after each look up to CONC_SPIN_GAP_MAX pauses, for a word whose owner pays a cache miss
 * for every look (a lock).
 *
 *     conc_spin_t spin = conc_spin_begin(CONC_SEM_SPIN, CONC_SPIN_STEADY, deadline);
 *     while (conc_spin_next(&spin)) {     // pauses first, then says "look now"
 *         w = conc_load(&s->word, CONC_RELAXED);
 *         if (ready(w)) return take(w);
 *     }
 *     ...register and sleep...
 * ------------------------------------------------------------------------------------------- */
#define CONC_SPIN_YIELD_LOOKS 64u /* a sched_yield before every 64th look */
#define CONC_SPIN_GAP_MAX 64u     /* backoff: at most this many pauses between two looks */
#define CONC_SPIN_STEADY 0u       /* a look after every pause */
#define CONC_SPIN_BACKOFF 1u      /* gaps of 1, 2, 4 ... CONC_SPIN_GAP_MAX pauses */

typedef struct conc_spin {
    int32_t left;   /* pauses left in the budget */
    uint32_t looks; /* looks so far: the yield rule counts them */
    uint32_t gap;   /* pauses before the next look */
    uint32_t pace;  /* CONC_SPIN_STEADY or CONC_SPIN_BACKOFF */
} conc_spin_t;

CONC_INLINE conc_spin_t conc_spin_begin(int pauses, uint32_t pace, int64_t deadline) {
    conc_spin_t spin = {0, 0, 1, pace};
    if (pauses > 0 && conc_cpu_count() > 1 && !conc_deadline_passed(deadline))
        spin.left = pauses;
    return spin;
}

/* Spends the next gap of the budget; false once it is spent (then sleep). */
CONC_INLINE bool conc_spin_next(conc_spin_t *spin) {
    if (spin->left <= 0)
        return false;
    uint32_t gap = spin->gap;
    if (++spin->looks % CONC_SPIN_YIELD_LOOKS == 0) {
        sched_yield(); /* the peer may be runnable on this very CPU: let it run */
    } else {
        for (uint32_t i = 0; i < gap; i++)
            conc_cpu_relax();
    }
    spin->left -= (int32_t)gap;
    if (spin->pace == CONC_SPIN_BACKOFF && gap < CONC_SPIN_GAP_MAX)
        spin->gap = gap * 2;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Yields that pay. When the threads a waiter waits for share its CPU (more threads than CPUs,
 * or a peer the scheduler placed beside it), a sched_yield hands them the CPU for one syscall,
 * where a futex sleep and wake cost two and a wake on another CPU 13-150 us on a VM. But the
 * scheduler may hand the CPU to somebody else instead (a busy loop beside us): the yield then
 * loses a whole time slice (0.75 ms and up), where a futex sleeper would have been back sooner
 * (its wake preempts). So whoever yields keeps the running average of its yields' waste: a
 * yield's time off the CPU, less a credit per unit of the work it waits for that got done
 * meanwhile (items moved, parties arrived). While the average is above
 * CONC__BASE_YIELD_SLOW_NS, waiters sleep without yielding for a period (10 ms, doubled after
 * each period that a probing yield found still wasteful, up to 1.28 s); after the period one
 * waiter probes with a yield while the others still sleep, and its yield decides on the next
 * (seven parties of a barrier probing at once lost seven slices). A policy is a hint (relaxed
 * loads, stores and CASes; lost updates between threads cost only precision) and belongs to
 * one kind of waiter (a queue side, a barrier); zero is a fresh policy, with yields on.
 *
 *     if (conc_yield_allowed(&policy, conc_now()))     // before the first yield of a wait
 *         for (int i = 0; i < CONC_X_YIELDS; i++) {
 *             int64_t before = conc_now();
 *             sched_yield();
 *             if (done()) break;
 *             if (!conc_yield_account(&policy, before, conc_now(), progress, unit_ns)) break;
 *         }
 *     ...register and sleep...
 * ------------------------------------------------------------------------------------------- */
/* Above this average waste yields stop: on a busy machine about 1 yield in 100 loses a time
 * slice, and the average stays below. */
#define CONC__BASE_YIELD_SLOW_NS (100 * CONC_US)
/* The average's weight: each yield moves it by 1/64 of the difference, so it takes a few
 * wasted slices in a row to cross CONC__BASE_YIELD_SLOW_NS, not one unlucky yield. */
#define CONC__BASE_YIELD_AVG_SHIFT 6
/* A yield's waste counts at most this much (the average stays within 32 bits). */
#define CONC__BASE_YIELD_CLAMP_NS (100 * CONC_MS)
/* The first period off, and how many times it doubles at most (10 ms .. 1.28 s): beside a busy
 * loop that runs for good, a handful of wasted time slices over a waiter's life. */
#define CONC__BASE_YIELD_OFF_NS (10 * CONC_MS)
#define CONC__BASE_YIELD_STRIKES_MAX 7u

typedef struct conc_yield_policy {
    int64_t resume;   /* CLOCK_MONOTONIC ns before which waiters sleep without yielding */
    uint32_t strikes; /* periods off in a row (each doubles the next) */
    uint32_t average; /* running average of a yield's waste, ns */
} conc_yield_policy_t;

CONC_STATIC_ASSERT(CONC__BASE_YIELD_CLAMP_NS <= UINT32_MAX, "the average fits its 32 bits");

/* A fresh policy (yields on), for memory that is not zeroed. */
CONC_INLINE void conc_yield_policy_init(conc_yield_policy_t *policy) {
    conc_store(&policy->resume, (int64_t)0, CONC_RELAXED);
    conc_store(&policy->strikes, 0u, CONC_RELAXED);
    conc_store(&policy->average, 0u, CONC_RELAXED);
}

/* Whether a wait may yield now: false during a period off; after one, true for a single
 * probing waiter (its CAS moves the period on while it probes), whose yield decides the next. */
CONC_INLINE bool conc_yield_allowed(conc_yield_policy_t *policy, int64_t now) {
    int64_t resume = conc_load(&policy->resume, CONC_RELAXED);
    if (now < resume)
        return false;
    if (CONC_LIKELY(conc_load(&policy->strikes, CONC_RELAXED) == 0))
        return true;
    return conc_cas(&policy->resume, &resume, now + CONC__BASE_YIELD_OFF_NS, CONC_RELAXED,
                    CONC_RELAXED);
}

/* Books one yield that kept the caller off the CPU from `before` to `after`, during which
 * `progress` units of the work it waits for got done, each worth `unit_ns` of the time off
 * (0 or less: progress earns no credit). False when that turned yields off (then sleep). */
static inline bool conc_yield_account(conc_yield_policy_t *policy, int64_t before, int64_t after,
                                      uint64_t progress, int64_t unit_ns) {
    int64_t off = after > before ? after - before : 0;
    int64_t waste = off; /* less the credit, progress * unit_ns, without overflowing */
    if (unit_ns > 0)
        waste = progress > (uint64_t)(off / unit_ns) ? 0 : off - (int64_t)progress * unit_ns;
    if (waste > CONC__BASE_YIELD_CLAMP_NS)
        waste = CONC__BASE_YIELD_CLAMP_NS;
    uint32_t strikes = conc_load(&policy->strikes, CONC_RELAXED);
    if (strikes > CONC__BASE_YIELD_STRIKES_MAX)
        strikes = CONC__BASE_YIELD_STRIKES_MAX; /* hints: a torn or stray value stays in range */
    int64_t average = conc_load(&policy->average, CONC_RELAXED);
    if (strikes != 0 && waste <= CONC__BASE_YIELD_SLOW_NS)
        average = waste; /* a probe that paid outweighs the history that turned yields off
                          * (at 1/64 a step that history would take minutes to fade) */
    else
        average += (waste - average) / (1 << CONC__BASE_YIELD_AVG_SHIFT);
    conc_store(&policy->average, (uint32_t)average, CONC_RELAXED);
    if (average > CONC__BASE_YIELD_SLOW_NS) {
        conc_store(&policy->resume, after + (CONC__BASE_YIELD_OFF_NS << strikes), CONC_RELAXED);
        if (strikes < CONC__BASE_YIELD_STRIKES_MAX)
            conc_store(&policy->strikes, strikes + 1, CONC_RELAXED);
        return false;
    }
    if (strikes != 0) { /* a probe found that yields pay again: on for every waiter */
        conc_store(&policy->strikes, 0u, CONC_RELAXED);
        conc_store(&policy->resume, (int64_t)0, CONC_RELAXED);
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Eventcount: sleep until a condition that other threads make true, without a lock and
 * without a syscall while nobody sleeps. One 32-bit word per condition:
 *   bits 0..11   waiters registered (at most CONC_EVENTCOUNT_WAITERS_MAX)
 *   bits 12..23  pending wakes: issued by a notifier, not yet taken by a waiter
 *   bits 24..30  a wake sequence, stepped by every notify that wakes (no ABA for a sleeper)
 *   bit 31       CLOSED: nobody may sleep any more
 * Zero is a valid, empty word. Waiter and notifier:
 *
 *   notifier (made the condition true)            waiter (found it false)
 *   -------------------------------------------    ------------------------------------------
 *                                                  v = enter(word)        [eventcount.W1]
 *   the RMW that makes it true (seq_cst, or
 *     under a lock the waiter's re-check takes)
 *   notify: w = load(word)   [eventcount.F1]      re-check the condition (seq_cst loads, or
 *     waiters(w) > pending(w):                       under that lock): true -> leave
 *   CAS word: w + k PENDING + SEQ [eventcount.N1] wait(word, &v): pending(v)? take one, look
 *   futex_wake(word, k)                              again; else futex_wait(word, v)
 *                                                    -> EAGAIN: the word moved past v
 *
 *   [eventcount.W1] and the notifier's RMW + [eventcount.F1] are the two halves of a Dekker
 *   pair (seq_cst: one total order): either the notifier's load sees the registration (and
 *   wakes), or the waiter's re-check, after W1, sees the condition. The waiter sleeps on v,
 *   read before its re-check, so the kernel refuses the sleep if N1 came first, and the
 *   wake finds it queued otherwise. It never sleeps while a wake is pending (that wake may
 *   have been its own, issued between W1 and its sleep). close sets CLOSED and wakes all.
 *   The proof is tests/models/queue.pml: it checks exactly this word against a condition
 *   abstracted to a count (no lost wakeup, no waiter stranded by close, pending <= waiters),
 *   with a broken variant for each rule above. conc_queue (not_empty/not_full) uses it.
 *
 *   Past CONC_EVENTCOUNT_WAITERS_MAX registered waiters, enter registers nobody and hands out
 *   a ticket (a word with no waiters, which a registered waiter's never is): wait then sleeps
 *   a while without the futex (1 ms, doubling up to 16 ms, never past the deadline), tries
 *   to register again, and returns 0 either way, so the caller re-checks its condition
 *   after every sleep and after the registration. Nothing is lost: such a waiter only learns
 *   of a notify or a close later. It sleeps off the futex because a wake meant for k
 *   registered sleepers may wake any k sleepers of the word, and it must not take one.
 *
 *     uint32_t v = conc_eventcount_enter(&word);
 *     while (!condition())
 *         if (conc_eventcount_wait(&word, &v, flags, deadline) == ETIMEDOUT) break;
 *     conc_eventcount_leave(&word, v);
 * ------------------------------------------------------------------------------------------- */
#define CONC__BASE_EC_WAITER_ONE 0x1u        /* one registered waiter */
#define CONC__BASE_EC_WAITER_MASK 0xfffu     /* the waiter count */
#define CONC__BASE_EC_PENDING_ONE 0x1000u    /* one pending wake */
#define CONC__BASE_EC_PENDING_MASK 0xfff000u /* the pending count */
#define CONC__BASE_EC_PENDING_SHIFT 12
#define CONC__BASE_EC_SEQ_ONE 0x1000000u   /* one wake sequence step */
#define CONC__BASE_EC_SEQ_MASK 0x7f000000u /* the wake sequence */
#define CONC__BASE_EC_CLOSED 0x80000000u   /* closed: nobody may sleep */
#define CONC_EVENTCOUNT_WAITERS_MAX 4095u  /* registered at once; more poll (see above) */

#define CONC__BASE_EC_POLL_FIRST_NS (1 * CONC_MS) /* a ticket's first sleep, doubled... */
#define CONC__BASE_EC_POLL_MAX_NS (16 * CONC_MS)  /* ...up to this */
CONC_STATIC_ASSERT((CONC__BASE_EC_WAITER_MASK & CONC__BASE_EC_PENDING_MASK) == 0 &&
                       (CONC__BASE_EC_PENDING_MASK & CONC__BASE_EC_SEQ_MASK) == 0 &&
                       (CONC__BASE_EC_SEQ_MASK & CONC__BASE_EC_CLOSED) == 0,
                   "eventcount fields overlap");
CONC_STATIC_ASSERT(CONC__BASE_EC_PENDING_ONE == 1u << CONC__BASE_EC_PENDING_SHIFT &&
                       CONC__BASE_EC_PENDING_MASK >> CONC__BASE_EC_PENDING_SHIFT ==
                           CONC__BASE_EC_WAITER_MASK,
                   "pending wakes must count as far as waiters do");
CONC_STATIC_ASSERT(CONC_EVENTCOUNT_WAITERS_MAX == CONC__BASE_EC_WAITER_MASK,
                   "the documented limit is the field's capacity");

CONC_INLINE uint32_t conc__base_ec_waiters(uint32_t w) {
    return w & CONC__BASE_EC_WAITER_MASK;
}
CONC_INLINE uint32_t conc__base_ec_pending(uint32_t w) {
    return (w & CONC__BASE_EC_PENDING_MASK) >> CONC__BASE_EC_PENDING_SHIFT;
}

/* How many waiters a word counts as registered (those between enter and leave). */
CONC_INLINE uint32_t conc_eventcount_waiters(uint32_t w) {
    return conc__base_ec_waiters(w);
}

/* Whether a word (as enter or wait left it in *v) is closed. */
CONC_INLINE bool conc_eventcount_is_closed(uint32_t w) {
    return (w & CONC__BASE_EC_CLOSED) != 0;
}

/* Registers the caller as a waiter; returns the word to pass to conc_eventcount_wait and
 * conc_eventcount_leave. The caller re-checks its condition after this and before every
 * wait. With CONC_EVENTCOUNT_WAITERS_MAX registered already, it returns a ticket instead
 * (registered nobody; its wait polls: see above). */
CONC_INLINE uint32_t conc_eventcount_enter(uint32_t *word) {
    /* Relaxed: a guess at the count, which the CAS checks. */
    uint32_t w = conc_load(word, CONC_RELAXED);
    do {
        if (conc__base_ec_waiters(w) >= CONC_EVENTCOUNT_WAITERS_MAX)
            return w & CONC__BASE_EC_CLOSED; /* a ticket: no waiters, no sleeps polled yet */
        /* [eventcount.W1] seq_cst: forbids the re-check's loads from moving before the
         * registration (the waiter's half of the Dekker pair with F1). Its acquire half
         * pairs with N1. Relaxed on failure: w is only a fresh guess to try again. */
    } while (!conc_cas(word, &w, w + CONC__BASE_EC_WAITER_ONE, CONC_SEQ_CST, CONC_RELAXED));
    return w + CONC__BASE_EC_WAITER_ONE;
}

/* A ticket's wait (conc_eventcount_enter): sleeps off the futex, the n-th time for
 * CONC__BASE_EC_POLL_FIRST_NS << n (at most CONC__BASE_EC_POLL_MAX_NS, and not past the
 * deadline), then registers if there is room. *v: a ticket again (the sleeps counted in its
 * pending field), or the registered word. */
CONC_COLD int conc__base_ec_poll_slow(uint32_t *word, uint32_t *v, int64_t deadline) {
    if (conc_deadline_passed(deadline))
        return ETIMEDOUT;
    uint32_t polls = conc__base_ec_pending(*v);
    int64_t ns = CONC__BASE_EC_POLL_MAX_NS;
    if (polls < 4)
        ns = CONC__BASE_EC_POLL_FIRST_NS << polls;
    int64_t now = conc_now();
    if (deadline != CONC_FOREVER && deadline - now < ns)
        ns = deadline - now;
    if (ns > 0) {
        struct timespec ts = {(time_t)(ns / CONC_SEC), (long)(ns % CONC_SEC)};
        int saved_errno = errno; /* EINTR: a signal cut the sleep short; re-check anyway */
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        errno = saved_errno;
    }
    uint32_t w = conc_eventcount_enter(word);
    if (conc__base_ec_waiters(w) == 0 && polls < CONC__BASE_EC_WAITER_MASK)
        w |= (polls + 1) << CONC__BASE_EC_PENDING_SHIFT; /* a ticket still */
    *v = w;
    return 0;
}

/* After a re-check found the condition false: takes a pending wake if there is one, else
 * sleeps on *v until a notify, close, signal or the deadline. Returns 0 (look again: the
 * condition may be true now) or ETIMEDOUT (the deadline passed; still registered). */
static inline int conc_eventcount_wait(uint32_t *word, uint32_t *v, int flags, int64_t deadline) {
    uint32_t w = *v;
    if (CONC_UNLIKELY(conc__base_ec_waiters(w) == 0)) { /* a ticket: registered nobody */
        if (!(w & CONC__BASE_EC_CLOSED))
            return conc__base_ec_poll_slow(word, v, deadline);
        sched_yield(); /* closed: as below, and *v stays a ticket */
        return 0;
    }
    if (conc__base_ec_pending(w) > 0) {
        /* Take the pending wake before sleeping: it may have been meant for us. seq_cst: its
         * acquire pairs with N1, and the caller's re-check that follows must not be ordered
         * before it: a notifier that saw the wake still pending woke nobody, counting on
         * that re-check (the pair with its seq_cst load, or its fence after a plain store:
         * queue.h's bias). On failure w is fresh: the caller re-checks either way. */
        if (conc_cas(word, &w, w - CONC__BASE_EC_PENDING_ONE, CONC_SEQ_CST, CONC_ACQUIRE))
            w -= CONC__BASE_EC_PENDING_ONE;
        *v = w;
        return 0;
    }
    if (w & CONC__BASE_EC_CLOSED) {
        /* Never sleep on a closed word: the condition's owner decides what closed means
         * (the caller's re-check sees it); a peer still mid-operation is waited out here. */
        sched_yield();
        *v = conc_load(word, CONC_ACQUIRE);
        return 0;
    }
    if (conc_deadline_passed(deadline))
        return ETIMEDOUT;
    CONC_CHAOS_POINT();
    /* A shared word's sleep ends every CONC_FUTEX_SHARED_RECHECK_NS: a process killed asleep
     * here may have been picked by a notify's wake meant for a live sleeper (the caller's
     * re-check then finds what that wake announced). */
    (void)conc_futex_wait(word, w, flags, conc_futex_sleep_until(flags, deadline));
    *v = conc_load(word, CONC_ACQUIRE); /* acquire: pairs with N1 and with close's RMW */
    return 0;
}

/* Deregisters: one waiter fewer, and one pending wake fewer (it may have been ours; if it
 * was another's, that one re-checks anyway, and at worst a later notify wakes once more).
 * v: the word enter or the last wait left (a ticket registered nobody: nothing to undo). */
CONC_INLINE void conc_eventcount_leave(uint32_t *word, uint32_t v) {
    if (conc__base_ec_waiters(v) == 0)
        return;
    uint32_t w = conc_load(word, CONC_RELAXED);
    for (;;) {
        uint32_t next = w - CONC__BASE_EC_WAITER_ONE;
        uint32_t pending = conc__base_ec_pending(w);
        if (pending > 0)
            pending--;
        if (pending > conc__base_ec_waiters(next))
            pending = conc__base_ec_waiters(next);
        next = (next & ~CONC__BASE_EC_PENDING_MASK) | (pending << CONC__BASE_EC_PENDING_SHIFT);
        /* Relaxed: leaving publishes nothing and takes nothing. */
        if (conc_cas(word, &w, next, CONC_RELAXED, CONC_RELAXED))
            return;
    }
}

/* The slow half of notify: w is the word conc_eventcount_wants_wake returned. */
CONC_COLD void conc_eventcount_wake_slow(uint32_t *word, uint32_t w, size_t k, int flags) {
    for (;;) {
        uint32_t waiting = conc__base_ec_waiters(w), pending = conc__base_ec_pending(w);
        if (waiting <= pending)
            return;
        uint32_t m = waiting - pending;
        if ((size_t)m > k)
            m = (uint32_t)k;
        /* The sequence step makes the word differ from every value read before it, even
         * after the pending wake was taken again: no ABA for a waiter about to sleep. */
        uint32_t next = ((w + m * CONC__BASE_EC_PENDING_ONE) & ~CONC__BASE_EC_SEQ_MASK) |
                        ((w + CONC__BASE_EC_SEQ_ONE) & CONC__BASE_EC_SEQ_MASK);
        /* [eventcount.N1] release: a waiter that reads this word (acquire) before its
         * re-check sees what the notifier published before F1. */
        if (conc_cas(word, &w, next, CONC_RELEASE, CONC_RELAXED)) {
            CONC_CHAOS_POINT();
            conc_futex_wake(word, (int)m, flags);
            return;
        }
    }
}

/* The fast half of notify, for callers whose futex flags cost a load: the F1 load; returns
 * the word when a registered sleeper has no wake coming (then call conc_eventcount_wake_slow
 * with it), else 0 (a word with a waiter is never 0). */
CONC_INLINE uint32_t conc_eventcount_wants_wake(uint32_t *word) {
    /* [eventcount.F1] seq_cst load, after the caller's seq_cst RMW: in the single total order
     * either this load comes after the waiter's W1 (we see it and wake), or the waiter's
     * re-check comes after our RMW (it sees the condition). No fence needed: on x86 this is a
     * plain load, and the RMW's lock prefix was the barrier. */
    uint32_t w = conc_load(word, CONC_SEQ_CST);
    /* Nobody registered, the busy case, is one test. The empty asm keeps gcc from folding it
     * into the comparison below (six instructions on every push and pop of a queue: they cost
     * a 1P1C queue on one CPU about 5% of its throughput). */
    if (CONC_LIKELY(conc__base_ec_waiters(w) == 0))
        return 0u;
    __asm__("" : "+r"(w));
    return conc__base_ec_waiters(w) > conc__base_ec_pending(w) ? w : 0u;
}

/* After the condition became true for k waiters (k items, slots, completions): wakes up to k
 * sleepers that have no wake coming yet. While nobody sleeps it is one load: no RMW, no
 * syscall. The caller made the condition true with a seq_cst RMW (or under a lock that the
 * waiters' re-check takes) just before. */
CONC_INLINE void conc_eventcount_notify(uint32_t *word, size_t k, int flags) {
    uint32_t w = conc_eventcount_wants_wake(word);
    if (CONC_UNLIKELY(w != 0))
        conc_eventcount_wake_slow(word, w, k, flags);
}

/* Sets CLOSED and wakes every sleeper; idempotent. Nobody registered: no syscall. */
CONC_INLINE void conc_eventcount_close(uint32_t *word, int flags) {
    /* Release: pairs with the waiters' acquire reads of the word. A waiter that read the word
     * before this RMW sleeps on a value without CLOSED: the kernel refuses it, or the wake
     * below finds it queued. Acquire: the caller may read what a waiter published. */
    uint32_t w = conc_fetch_or(word, CONC__BASE_EC_CLOSED, CONC_ACQ_REL);
    if (conc__base_ec_waiters(w) > 0)
        conc_futex_wake(word, INT_MAX, flags);
}

/* ---------------------------------------------------------------------------------------------
 * For other conc headers: the list, scratch-array and would-block steps several modules write
 * the same way.
 * Not API. The list steps are macros because each module's nodes are its own types; their
 * arguments are lvalues evaluated more than once, so pass plain names and fields.
 * ------------------------------------------------------------------------------------------- */

/* Appends node to the FIFO (head, tail) singly linked through node->link. */
#define CONC__BASE_SLIST_APPEND(head, tail, node, link)                                            \
    do {                                                                                           \
        (node)->link = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->link = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)

/* Appends node to list, whose ->head and ->tail are doubly linked through ->prev and ->next. */
#define CONC__BASE_DLIST_APPEND(list, node)                                                        \
    do {                                                                                           \
        (node)->next = NULL;                                                                       \
        (node)->prev = (list)->tail;                                                               \
        if ((list)->tail)                                                                          \
            (list)->tail->next = (node);                                                           \
        else                                                                                       \
            (list)->head = (node);                                                                 \
        (list)->tail = (node);                                                                     \
    } while (0)

/* Takes node, which is on list, out of it; node's own links are left as they were. */
#define CONC__BASE_DLIST_UNLINK(list, node)                                                        \
    do {                                                                                           \
        if ((node)->prev)                                                                          \
            (node)->prev->next = (node)->next;                                                     \
        else                                                                                       \
            (list)->head = (node)->next;                                                           \
        if ((node)->next)                                                                          \
            (node)->next->prev = (node)->prev;                                                     \
        else                                                                                       \
            (list)->tail = (node)->prev;                                                           \
    } while (0)

/* Room for n items of size bytes: local (room for local_n of them, on the caller's stack) when
 * they fit, else the heap (errno kept); NULL when the heap has none or n * size overflows. Give
 * it back with conc__base_scratch_free. */
static inline void *conc__base_scratch(void *local, size_t local_n, size_t n, size_t size) {
    if (n <= local_n)
        return local;
    if (size && n > SIZE_MAX / size)
        return NULL;
    return conc_malloc_keep_errno(n * size);
}

static inline void conc__base_scratch_free(void *scratch, void *local) {
    if (scratch != local)
        free(scratch);
}

/* Whether a non-blocking call's error e says it would have blocked. POSIX lets EWOULDBLOCK be
 * its own value; where it is EAGAIN's (Linux), `e == EAGAIN || e == EWOULDBLOCK` is gcc's
 * -Wlogical-op warning in every file that includes the header. */
CONC_INLINE bool conc__base_would_block(int e) {
#if EWOULDBLOCK != EAGAIN
    return e == EAGAIN || e == EWOULDBLOCK;
#else
    return e == EAGAIN;
#endif
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_BASE_H */

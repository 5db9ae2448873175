/* tests/test_base.c - base.h: time and deadlines, the futex seam, spinning, the eventcount,
 * chaos points and misuse reports: what every module stands on.
 * SPDX-License-Identifier: MIT */

/* Counts futex syscalls, so "no syscall while nobody waits" is checked by counting. Defined
 * before base.h, as bench.h does. Relaxed: a statistic, ordered with nothing. */
static unsigned long futex_calls;
#define CONC_FUTEX_HOOK(kind) ((void)(kind), __atomic_fetch_add(&futex_calls, 1, __ATOMIC_RELAXED))

#include "conc/base.h"
#include "harness.h"

#include "conc/cond.h"
#include "conc/event.h"
#include "conc/latch.h"
#include "conc/once.h"
#include "conc/rwlock.h"

#include <signal.h>

static unsigned long futex_count(void) {
    return __atomic_load_n(&futex_calls, __ATOMIC_RELAXED);
}

/* Compile-time claims: at file scope here, at block scope below. */
CONC_STATIC_ASSERT(sizeof(uint32_t) == 4, "futex words are 32 bits");

/* ---- time and deadlines --------------------------------------------------------------- */

static void base_time_and_deadlines(void) {
    CONC_STATIC_ASSERT(CONC_FOREVER == INT64_MAX, "CONC_FOREVER is the largest deadline");
    int64_t a = conc_now(), b = conc_now();
    TH_CHECK(a > 0 && b >= a);
    TH_CHECK_EQ(conc_deadline_in(CONC_FOREVER), CONC_FOREVER); /* saturates */
    TH_CHECK_EQ(conc_deadline_in(INT64_MAX - 5), CONC_FOREVER);
    TH_CHECK(conc_deadline_in(-CONC_SEC) < conc_now()); /* negative: already past */
    int64_t d = conc_deadline_in(5 * CONC_MS);
    TH_CHECK(d >= b + 5 * CONC_MS);
    TH_CHECK_EQ(CONC_SEC, 1000 * CONC_MS);
    TH_CHECK_EQ(CONC_MS, 1000 * CONC_US);
    TH_CHECK(strcmp(CONC_VERSION_STRING, "0.1.0") == 0);
    TH_CHECK(conc_cpu_count() >= 1);
}

/* sysconf as glibc leaves it where /sys is not mounted (containers, chroots): the answer
 * comes from its fallback, with ENOENT left in errno by the file it could not open. Defined
 * here, it stands in for libc's for this binary; __sysconf is glibc's own entry. Not under
 * TSan or MSan: their runtimes call sysconf while they start, before instrumented code may
 * run. */
#if defined(__has_feature)
#if __has_feature(memory_sanitizer)
#define SYSCONF_CALLED_BY_THE_RUNTIME 1
#endif
#endif
#if defined(CONC_TSAN)
#define SYSCONF_CALLED_BY_THE_RUNTIME 1
#endif
#if !defined(__GLIBC__)
#define SYSCONF_NOT_GLIBCS 1 /* musl: no __sysconf to stand in front of */
#endif
#if !defined(SYSCONF_CALLED_BY_THE_RUNTIME) && !defined(SYSCONF_NOT_GLIBCS)
extern long __sysconf(int name);
static int sysconf_leaves_enoent;
long sysconf(int name) {
    long v = __sysconf(name);
    if (name == _SC_NPROCESSORS_ONLN && sysconf_leaves_enoent)
        errno = ENOENT;
    return v;
}
#endif

/* Each case runs in a child of its own, so this is the translation unit's first call: the
 * one that reaches sysconf. */
static void base_cpu_count_keeps_errno_when_sysconf_sets_it(void) {
#if defined(SYSCONF_CALLED_BY_THE_RUNTIME)
    TH_SKIP("sysconf cannot be replaced under TSan or MSan (the runtime calls it as it starts)");
#elif defined(SYSCONF_NOT_GLIBCS)
    TH_SKIP("glibc's sysconf fallback only (the stand-in calls glibc's __sysconf)");
#else
    sysconf_leaves_enoent = 1;
    int n = 0;
    TH_CHECK_ERRNO_KEPT(n = conc_cpu_count());
    TH_CHECK(n >= 1);
#endif
}

static void base_deadline_passed(void) {
    TH_CHECK(!conc_deadline_passed(CONC_FOREVER));
    TH_CHECK(conc_deadline_passed(0));
    TH_CHECK(conc_deadline_passed(conc_now()));
    TH_CHECK(conc_deadline_passed(conc_now() - 1));
    int64_t later = conc_deadline_in(CONC_SEC);
    TH_CHECK(!conc_deadline_passed(later) || conc_now() >= later);
    int64_t soon = conc_deadline_in(2 * CONC_MS);
    while (!conc_deadline_passed(soon))
        th_sleep_ns(100 * 1000);
    TH_CHECK_NOT_EARLY(soon);
}

/* ---- the futex seam ------------------------------------------------------------------- */

static void base_futex_wait_and_wake(void) {
    uint32_t word = 7;
    errno = 12345;
    TH_CHECK_EQ(conc_futex_wait(&word, 8, 0, CONC_FOREVER), EAGAIN);      /* value differs */
    TH_CHECK_EQ(conc_futex_wait(&word, 7, 0, conc_now() - 1), ETIMEDOUT); /* past deadline */
    TH_CHECK_EQ(conc_futex_wait(&word, 8, 0, conc_now() - 1), EAGAIN);    /* tried once: differs */
    int64_t deadline = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, CONC_SHARED, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(conc_futex_wake(&word, 1, 0), 0); /* nobody sleeps */
    TH_CHECK_EQ(errno, 12345);                    /* conc never changes errno */
}

/* "Wake up to n": n of 0 or less wakes nobody. The kernel's FUTEX_WAKE wakes one there, and
 * conc_futex_wake passed it through (returned 1 with a sleeper). */
typedef struct zero_wake {
    uint32_t word;
    pid_t tid; /* relaxed: /proc is read until the sleeper shows asleep */
} zero_wake;

static void *zero_wake_sleeper(void *arg) {
    zero_wake *z = (zero_wake *)arg;
    __atomic_store_n(&z->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    while (__atomic_load_n(&z->word, __ATOMIC_ACQUIRE) == 0)
        (void)conc_futex_wait(&z->word, 0, 0, CONC_FOREVER);
    return NULL;
}

static void base_futex_wake_of_none_wakes_none(void) {
    zero_wake z = {0, 0};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, zero_wake_sleeper, &z), 0);
    while (__atomic_load_n(&z.tid, __ATOMIC_RELAXED) == 0 ||
           th_thread_state(__atomic_load_n(&z.tid, __ATOMIC_RELAXED)) != 'S')
        th_sleep_ns(100 * 1000);
    TH_CHECK_EQ(conc_futex_wake(&z.word, 0, 0), 0);
    TH_CHECK_EQ(conc_futex_wake(&z.word, -1, 0), 0);
    TH_CHECK_EQ(conc_futex_wake(&z.word, INT_MIN, 0), 0);
    TH_CHECK_EQ(conc_futex_wake_tagged(&z.word, 0, 0, CONC_FUTEX_ANY), 0);
    __atomic_store_n(&z.word, 1u, __ATOMIC_RELEASE);
    while (conc_futex_wake(&z.word, 1, 0) != 1 && th_thread_state(z.tid) == 'S')
        th_sleep_ns(100 * 1000); /* asleep, it is woken by this wake (or saw the 1 first) */
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
}

/* DESIGN.md's order, (word, expected, deadline, flags), as a program written to it calls it. */
typedef struct first_order_waiter {
    uint32_t word;
    int result;
} first_order_waiter;

static void *first_order_wait_main(void *arg) {
    first_order_waiter *w = (first_order_waiter *)arg;
    w->result = conc_futex_wait(&w->word, 0, CONC_FOREVER, 0);
    return NULL;
}

/* main sleeps on w->word (0) with no deadline; the word changes and a wake follows: main
 * returns 0 (woken) or EAGAIN (it saw the new value first), never anything else. */
static void check_forever_sleeper(void *(*main)(void *)) {
    first_order_waiter w = {0, -1};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, main, &w), 0);
    __atomic_store_n(&w.word, 1, __ATOMIC_RELEASE);
    (void)conc_futex_wake(&w.word, INT_MAX, 0);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_MSG(w.result == 0 || w.result == EAGAIN, "result %d", w.result);
}

static void base_futex_wait_takes_the_first_designs_argument_order(void) {
    uint32_t word = 7;
    errno = 12345;
    TH_CHECK_EQ(conc_futex_wait(&word, 8, CONC_FOREVER, 0), EAGAIN); /* value differs */
    TH_CHECK_EQ(conc_futex_wait(&word, 7, conc_now() - 1, 0), ETIMEDOUT);
    int64_t deadline = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, deadline, 0), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    deadline = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, deadline, CONC_SHARED), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(errno, 12345);
    /* a sleeper without a deadline in that order sleeps until a wake (or sees the new value) */
    check_forever_sleeper(first_order_wait_main);
    /* the function itself, reached past the macro, keeps the order (flags, deadline) */
    int (*fn)(uint32_t *, uint32_t, int, int64_t) = conc_futex_wait;
    TH_CHECK_EQ(fn(&word, 7, 0, conc_now() - 1), ETIMEDOUT);
    TH_CHECK_EQ((conc_futex_wait)(&word, 8, 0, CONC_FOREVER), EAGAIN);
}

static void *wide_flags_wait_main(void *arg) {
    first_order_waiter *w = (first_order_waiter *)arg;
    long flags = 0;
    w->result = conc_futex_wait(&w->word, 0, flags, CONC_FOREVER);
    return NULL;
}

/* The macro tells the two orders apart by the third argument: flags held in a `long`, a
 * `size_t` or an `int64_t` are as wide as a deadline, yet they are flags (the fourth
 * argument then is the deadline); read as a deadline, their 0 or 1 was a deadline long past,
 * and the wait returned ETIMEDOUT at once, CONC_FOREVER included. */
static void base_futex_wait_wide_flags_are_flags(void) {
    uint32_t word = 7;
    long lflags = 0;
    size_t zflags = CONC_SHARED;
    int64_t qflags = 0;
    int64_t deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, lflags, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, zflags, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, qflags, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(conc_futex_wait(&word, 8, 0L, CONC_FOREVER), EAGAIN);
    /* the first design's order with wide flags: the deadline is still the deadline */
    deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, deadline, lflags), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, conc_now() - 1, zflags), ETIMEDOUT);
    TH_CHECK_EQ(conc_futex_wait(&word, 8, conc_now() - 1, zflags), EAGAIN);
    /* a sleeper with wide flags and no deadline sleeps until a wake (or sees the new value) */
    check_forever_sleeper(wide_flags_wait_main);
}

/* Arguments kept in bit-fields go to the function as their promoted values; sizeof, which
 * the macro used to tell the orders apart, refuses a bit-field, so these did not compile. */
static void base_futex_wait_takes_bit_field_arguments(void) {
    struct {
        unsigned shared : 1;
        unsigned narrow : 31;
        uint64_t deadline : 63;
    } bits = {0, 0, 0};
    uint32_t word = 7;
    int64_t deadline = conc_deadline_in(5 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, bits.shared, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(conc_futex_wait(&word, 8, bits.shared, CONC_FOREVER), EAGAIN);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, bits.shared, bits.narrow), ETIMEDOUT); /* 0: past */
    bits.deadline = (uint64_t)conc_deadline_in(5 * CONC_MS) & ((1ull << 63) - 1);
    TH_CHECK_EQ(conc_futex_wait(&word, 7, bits.deadline, bits.shared), ETIMEDOUT); /* first order */
    TH_CHECK_NOT_EARLY((int64_t)bits.deadline);
    TH_CHECK_EQ(conc_futex_wait(&word, 8, bits.deadline, bits.shared), EAGAIN);
}

/* A futex word the kernel refuses (misaligned, or a tag of 0) could never be slept on: every
 * caller would poll it at full speed. A debug build aborts naming the cause. */
static _Alignas(8) unsigned char refused_buf[16];
static void futex_wait_misaligned(void) {
    uint32_t *word = (uint32_t *)(void *)(refused_buf + 1);
    (void)!conc_futex_wait(word, 0, 0, CONC_FOREVER);
}
static void futex_wait_tag_zero(void) {
    uint32_t word = 0;
    (void)!conc_futex_wait_tagged(&word, 0, 0, 0, CONC_FOREVER);
}
static void base_futex_word_the_kernel_refuses_aborts_in_debug(void) {
#if CONC_DEBUG
    char err[1024];
    int st = th_run_child_capturing_stderr(futex_wait_misaligned, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d", st);
    TH_CHECK_MSG(strstr(err, "not 4-byte aligned") != NULL, "stderr: %s", err);
    st = th_run_child_capturing_stderr(futex_wait_tag_zero, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %d", st);
    TH_CHECK_MSG(strstr(err, "or a tag of 0") != NULL, "stderr: %s", err);
#else
    TH_SKIP("a release build (NDEBUG) returns EINTR there and lets its callers poll");
#endif
}

/* tests/tu2_base.c: the headers included by a release build (NDEBUG) under -Wundef. */
int tu2_base_conc_debug(void);

/* CONC_DEBUG is always defined, 0 or 1: a release translation unit that reads it under -Wundef
 * -Werror (tu2_base.c) builds, and sees 0. */
static void base_conc_debug_is_defined_in_release_builds(void) {
    TH_CHECK_EQ(tu2_base_conc_debug(), 0);
}

int tu2_base_cpu_count(void);

/* The headers keep no state per file: conc_cpu_count()'s cache, filled by a call in the other
 * file, is the one this file reads (a `static` cache gave each file its own). */
static void base_cpu_count_cache_is_one_per_program(void) {
    conc_store(&conc__base_cpu_count_cached, 0, CONC_RELAXED);
    int n = tu2_base_cpu_count();
    TH_CHECK(n >= 1);
    TH_CHECK_EQ(conc_load(&conc__base_cpu_count_cached, CONC_RELAXED), n);
    TH_CHECK_EQ(conc_cpu_count(), n);
}

static void base_futex_halves_of_a_64_bit_word(void) {
    uint64_t word __attribute__((aligned(8))) = 0x1122334455667788ull;
    TH_CHECK_EQ(*conc_futex_half_low(&word), 0x55667788u);
    TH_CHECK_EQ(*conc_futex_half_high(&word), 0x11223344u);
    TH_CHECK(conc_futex_half_low(&word) != conc_futex_half_high(&word));
}

static void base_futex_flags(void) {
    TH_CHECK_EQ(conc_futex_flags(0x80000001u, 0x80000000u), CONC_SHARED);
    TH_CHECK_EQ(conc_futex_flags(0x7fffffffu, 0x80000000u), 0);
    TH_CHECK_EQ(conc_futex_flags(CONC_SHARED, CONC_SHARED), CONC_SHARED);
}

typedef struct tagged_sleeper {
    uint32_t word; /* stays 0: only wakes end a sleep */
    int stop;      /* release/acquire: the sleepers may leave once woken */
    int woken[2];  /* relaxed: how many times sleeper i's futex_wait returned 0 */
    int left;      /* relaxed: sleepers that have left */
} tagged_sleeper;

static void tagged_sleeper_run(int index, void *arg) {
    tagged_sleeper *t = (tagged_sleeper *)arg;
    uint32_t tag = index == 0 ? 0x1u : 0x2u;
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE))
        if (conc_futex_wait_tagged(&t->word, 0, 0, tag, CONC_FOREVER) == 0)
            __atomic_fetch_add(&t->woken[index], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&t->left, 1, __ATOMIC_RELAXED);
}

static void *tagged_sleepers_main(void *arg) {
    th_run_threads(2, tagged_sleeper_run, arg);
    return NULL;
}

/* A wake for one tag reaches only the sleeper carrying it (what conc_lock's handoff uses). */
static void base_futex_tagged_wake_reaches_its_tag(void) {
    tagged_sleeper t;
    memset(&t, 0, sizeof t);
    pthread_t runner;
    TH_CHECK_EQ(pthread_create(&runner, NULL, tagged_sleepers_main, &t), 0);
    /* Once a tag-2 wake has found a sleeper, that sleeper was thread 1 (it sleeps again). */
    while (conc_futex_wake_tagged(&t.word, 1, 0, 0x2u) == 0)
        th_sleep_ns(100 * 1000);
    while (__atomic_load_n(&t.woken[1], __ATOMIC_RELAXED) == 0)
        th_sleep_ns(100 * 1000);
    TH_CHECK_EQ(__atomic_load_n(&t.woken[0], __ATOMIC_RELAXED), 0);
    __atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&t.left, __ATOMIC_RELAXED) < 2) {
        (void)conc_futex_wake(&t.word, INT_MAX, 0); /* CONC_FUTEX_ANY: every tag */
        th_sleep_ns(100 * 1000);
    }
    pthread_join(runner, NULL);
}

/* ---- the wait group's wait ------------------------------------------------------------ */

/* A latch-shaped word: the count in the high half; WAITERS bit 0, the generation above it. */
#define ZW_WAITERS ((uint64_t)0x1)
#define ZW_GEN_ONE ((uint64_t)0x2)
#define ZW_GEN_MASK ((uint64_t)0xfffffffe)
#define ZW_COUNT_ONE ((uint64_t)1 << 32)

typedef struct zero_waiter {
    uint64_t word __attribute__((aligned(8)));
    int result; /* written by the waiter before it returns; read after the join */
} zero_waiter;

static void *zero_waiter_main(void *arg) {
    zero_waiter *z = (zero_waiter *)arg;
    uint64_t w = conc_load(&z->word, CONC_ACQUIRE);
    z->result = conc_futex_wait_zero(&z->word, w, ZW_WAITERS, ZW_GEN_MASK, 0, CONC_FOREVER);
    return NULL;
}

/* Returns at a zero, or at a zero already past (the generation moved, the count raised again);
 * times out not early, with its waiters bit raised; a sleeper is woken by the zeroing RMW. */
static void base_futex_wait_zero_returns_at_a_zero(void) {
    uint64_t word __attribute__((aligned(8))) = ZW_GEN_ONE; /* count 0 */
    TH_CHECK_EQ(conc_futex_wait_zero(&word, word, ZW_WAITERS, ZW_GEN_MASK, 0, 0), 0);
    uint64_t before = ZW_COUNT_ONE | ZW_GEN_ONE;
    word = 2 * ZW_COUNT_ONE | 2 * ZW_GEN_ONE; /* a zero came, and two adds after it */
    TH_CHECK_EQ(conc_futex_wait_zero(&word, before, ZW_WAITERS, ZW_GEN_MASK, 0, CONC_FOREVER), 0);
    TH_CHECK_EQ(word, 2 * ZW_COUNT_ONE | 2 * ZW_GEN_ONE); /* its raising CAS found the new word */
    word = before;
    int64_t deadline = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_futex_wait_zero(&word, word, ZW_WAITERS, ZW_GEN_MASK, 0, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    /* The count and generation are untouched; the bit is up unless a preemption carried the
     * waiter past its deadline before its raising CAS (then it times out without asking). */
    TH_CHECK_EQ(word & ~ZW_WAITERS, before);

    zero_waiter z = {ZW_COUNT_ONE | ZW_GEN_ONE, -1};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, zero_waiter_main, &z), 0);
    while (!(conc_load(&z.word, CONC_RELAXED) & ZW_WAITERS)) /* registered: about to sleep */
        th_sleep_ns(100 * 1000);
    /* The zero: count 0, a new generation, WAITERS off; the bit it replaced asks for a wake. */
    uint64_t old = conc_swap(&z.word, 2 * ZW_GEN_ONE, CONC_RELEASE);
    TH_CHECK(old & ZW_WAITERS);
    (void)conc_futex_wake(conc_futex_half_low(&z.word), INT_MAX, 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(z.result, 0);
}

/* ---- spinning ------------------------------------------------------------------------- */

static int count_looks(int pauses, uint32_t pace, int64_t deadline, uint32_t *spent) {
    conc_spin_t spin = conc_spin_begin(pauses, pace, deadline);
    int looks = 0;
    while (conc_spin_next(&spin))
        looks++;
    *spent = pauses > 0 && looks > 0 ? (uint32_t)(pauses - spin.left) : 0;
    TH_CHECK_EQ(spin.looks, looks);
    return looks;
}

/* Every setting counts pauses: a steady spin looks after each one, a backoff spin after 1, 2,
 * 4 ... CONC_SPIN_GAP_MAX of them. No spin on one CPU, with a past deadline, or a budget 0. */
static void base_spin_budget_counts_pauses(void) {
    uint32_t spent;
    bool multi = conc_cpu_count() > 1;
    TH_CHECK_EQ(count_looks(100, CONC_SPIN_STEADY, CONC_FOREVER, &spent), multi ? 100 : 0);
    TH_CHECK_EQ(spent, multi ? 100 : 0);
    TH_CHECK_EQ(count_looks(127, CONC_SPIN_BACKOFF, CONC_FOREVER, &spent), multi ? 7 : 0);
    TH_CHECK_EQ(spent, multi ? 127 : 0); /* 1 + 2 + 4 + 8 + 16 + 32 + 64 */
    TH_CHECK_EQ(count_looks(127 + 3 * 64, CONC_SPIN_BACKOFF, CONC_FOREVER, &spent),
                multi ? 10 : 0); /* the gap stops growing at CONC_SPIN_GAP_MAX */
    TH_CHECK_EQ(count_looks(1000, CONC_SPIN_STEADY, conc_now() - 1, &spent), 0);
    TH_CHECK_EQ(count_looks(0, CONC_SPIN_STEADY, CONC_FOREVER, &spent), 0);
    TH_CHECK_EQ(count_looks(-5, CONC_SPIN_BACKOFF, CONC_FOREVER, &spent), 0);
}

/* ---- yields that pay ------------------------------------------------------------------- */

/* The average moves 1/64 of the way to each yield's waste (time off less the progress's
 * credit, never below 0, clamped); crossing the bar turns yields off for 10 ms, doubled per
 * period in a row up to 7 doublings; a yield that keeps the average below turns them on. */
static void base_yield_policy_books_waste(void) {
    conc_yield_policy_t p = {0, 0, 0};
    TH_CHECK(conc_yield_allowed(&p, 0)); /* zero: a fresh policy, yields on */
    /* 10 us off, 20 items moved at 1 us each: no waste, the average stays 0 */
    TH_CHECK(conc_yield_account(&p, 1000, 11000, 20, CONC_US));
    TH_CHECK_EQ(p.average, 0);
    /* 1 ms off, 200 us of it credited: 800 us of waste, a 64th of it in the average */
    TH_CHECK(conc_yield_account(&p, 0, CONC_MS, 200, CONC_US));
    TH_CHECK_EQ(p.average, 800 * CONC_US / 64);
    /* a yield that lost a whole second counts as CONC__BASE_YIELD_CLAMP_NS */
    uint32_t avg = p.average;
    bool on = conc_yield_account(&p, 0, CONC_SEC, 0, CONC_US);
    TH_CHECK_EQ(p.average, avg + (CONC__BASE_YIELD_CLAMP_NS - avg) / 64);
    TH_CHECK(!on); /* 100 ms / 64 is above the 100 us bar */
    int64_t after = 5 * CONC_SEC;
    for (uint32_t strike = 1; strike <= 9; strike++) {
        TH_CHECK(!conc_yield_account(&p, after - CONC_MS, after, 0, CONC_US));
        uint32_t doublings =
            strike < CONC__BASE_YIELD_STRIKES_MAX ? strike : CONC__BASE_YIELD_STRIKES_MAX;
        TH_CHECK_EQ(p.resume, after + (CONC__BASE_YIELD_OFF_NS << doublings));
        TH_CHECK_EQ(p.strikes, strike + 1 < CONC__BASE_YIELD_STRIKES_MAX
                                   ? strike + 1
                                   : CONC__BASE_YIELD_STRIKES_MAX);
        TH_CHECK(!conc_yield_allowed(&p, p.resume - 1));
        int64_t probe_at = p.resume;
        TH_CHECK(conc_yield_allowed(&p, probe_at)); /* one waiter probes... */
        TH_CHECK_EQ(p.resume, probe_at + CONC__BASE_YIELD_OFF_NS);
        TH_CHECK(!conc_yield_allowed(&p, probe_at)); /* ...while the others sleep */
        after = probe_at + CONC_MS;
    }
    /* a probe that wastes too much is one more strike, however little above the bar */
    TH_CHECK(p.average > CONC__BASE_YIELD_SLOW_NS);
    TH_CHECK(!conc_yield_account(&p, after, after + CONC__BASE_YIELD_SLOW_NS + 1, 0, CONC_US));
    TH_CHECK_EQ(p.strikes, CONC__BASE_YIELD_STRIKES_MAX);
    /* the first probe that pays turns yields on again at once, for every waiter: its waste
     * replaces the average (at 1/64 a step the strikes' history would take minutes to fade) */
    TH_CHECK(conc_yield_account(&p, 0, 50 * CONC_US, 0, CONC_US));
    TH_CHECK_EQ(p.average, 50 * CONC_US);
    TH_CHECK_EQ(p.strikes, 0);
    TH_CHECK_EQ(p.resume, 0); /* on again for every waiter, not only the prober */
    TH_CHECK(conc_yield_allowed(&p, 0));
    TH_CHECK(conc_yield_allowed(&p, 0));
    /* with yields on, the average moves by 1/64 again */
    TH_CHECK(conc_yield_account(&p, 0, 50 * CONC_US + 64, 0, 1));
    TH_CHECK_EQ(p.average, 50 * CONC_US + 1);
    /* the credit is progress * unit_ns: no progress earns none, even in a yield shorter than
     * one unit, nor does progress worth 0 ns (no division by it) */
    conc_yield_policy_init(&p);
    TH_CHECK(conc_yield_account(&p, 0, 640, 0, CONC_US));
    TH_CHECK_EQ(p.average, 640 / 64);
    conc_yield_policy_init(&p);
    TH_CHECK(conc_yield_account(&p, 0, 64 * CONC_US + 640, 64, CONC_US)); /* 640 ns left over */
    TH_CHECK_EQ(p.average, 640 / 64);
    conc_yield_policy_init(&p);
    TH_CHECK(conc_yield_account(&p, 0, 6400, 5, 0));
    TH_CHECK_EQ(p.average, 6400 / 64);
    TH_CHECK(conc_yield_account(&p, 0, 6400, 5, -CONC_US));
    TH_CHECK_EQ(p.average, 100 + (6400 - 100) / 64);
    /* init: a policy in memory that held anything is fresh */
    memset(&p, 0xaa, sizeof p);
    conc_yield_policy_init(&p);
    TH_CHECK_EQ(p.resume, 0);
    TH_CHECK_EQ(p.strikes, 0);
    TH_CHECK_EQ(p.average, 0);
    TH_CHECK(conc_yield_allowed(&p, 0));
}

/* ---- the eventcount ------------------------------------------------------------------- */

typedef struct ec_case {
    uint32_t word; /* the eventcount */
    int ready;     /* the condition: seq_cst RMWs and loads (the eventcount's contract) */
    int result;    /* relaxed: the last waiter's result */
    int done;      /* release/acquire */
    int64_t deadline;
} ec_case;

static void *ec_waiter(void *arg) {
    ec_case *c = (ec_case *)arg;
    uint32_t v = conc_eventcount_enter(&c->word);
    int r = 0;
    while (__atomic_load_n(&c->ready, __ATOMIC_SEQ_CST) == 0 && !conc_eventcount_is_closed(v)) {
        r = conc_eventcount_wait(&c->word, &v, 0, c->deadline);
        if (r == ETIMEDOUT)
            break;
    }
    conc_eventcount_leave(&c->word, v);
    __atomic_store_n(&c->result, r, __ATOMIC_RELAXED); /* several waiters may share c */
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void wait_registered(ec_case *c) {
    while ((conc_load(&c->word, CONC_RELAXED) & CONC__BASE_EC_WAITER_MASK) == 0)
        th_sleep_ns(100 * 1000);
}

/* Nobody registered: notify and close are a load and an RMW, no syscall. */
static void base_eventcount_idle_notify_makes_no_syscall(void) {
    uint32_t word = 0;
    unsigned long before = futex_count();
    for (int i = 0; i < 1000; i++)
        conc_eventcount_notify(&word, 1, 0);
    TH_CHECK_EQ(futex_count(), before);
    TH_CHECK_EQ(word, 0);
    conc_eventcount_close(&word, 0);
    TH_CHECK_EQ(futex_count(), before);
    TH_CHECK(conc_eventcount_is_closed(word));
}

static void base_eventcount_notify_wakes_a_waiter(void) {
    ec_case c;
    memset(&c, 0, sizeof c);
    c.deadline = CONC_FOREVER;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, ec_waiter, &c), 0);
    wait_registered(&c);
    __atomic_fetch_add(&c.ready, 1, __ATOMIC_SEQ_CST); /* the condition's seq_cst RMW */
    conc_eventcount_notify(&c.word, 1, 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(c.result, 0);
    TH_CHECK_EQ(c.word & (CONC__BASE_EC_WAITER_MASK | CONC__BASE_EC_PENDING_MASK), 0);
}

static void base_eventcount_close_wakes_every_waiter(void) {
    ec_case c;
    memset(&c, 0, sizeof c);
    c.deadline = CONC_FOREVER;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(pthread_create(&t[i], NULL, ec_waiter, &c), 0);
    while ((conc_load(&c.word, CONC_RELAXED) & CONC__BASE_EC_WAITER_MASK) < 3)
        th_sleep_ns(100 * 1000);
    conc_eventcount_close(&c.word, 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    TH_CHECK_EQ(c.word & CONC__BASE_EC_WAITER_MASK, 0);
    TH_CHECK(conc_eventcount_is_closed(c.word));
}

static void base_eventcount_wait_times_out_not_early(void) {
    th_interrupt_waits_with(SIGUSR1);
    TH_UNTIL_SIGNALLED(sent) {
        ec_case c;
        memset(&c, 0, sizeof c);
        c.deadline = conc_deadline_in(30 * CONC_MS);
        sent = th_run_interrupted(ec_waiter, &c, SIGUSR1, &c.done); /* neither end nor stretch it */
        TH_CHECK_EQ(c.result, ETIMEDOUT);
        TH_CHECK_NOT_EARLY(c.deadline);
        TH_CHECK_EQ(c.word, 0); /* left: no waiter, no pending wake */
    }
}

/* A notify that finds a registered waiter leaves a pending wake; the waiter takes it instead
 * of sleeping (it may have been its own), and leaving clears what is left. */
static void base_eventcount_pending_wake_is_taken_not_slept_on(void) {
    uint32_t word = 0;
    uint32_t v = conc_eventcount_enter(&word);
    conc_eventcount_notify(&word, 1, 0); /* wakes nobody in the kernel, leaves one pending */
    TH_CHECK_EQ((word & CONC__BASE_EC_PENDING_MASK) >> CONC__BASE_EC_PENDING_SHIFT, 1);
    v = conc_load(&word, CONC_ACQUIRE);
    TH_CHECK_EQ(conc_eventcount_wait(&word, &v, 0, conc_now() - 1), 0); /* took it: no sleep */
    TH_CHECK_EQ(word & CONC__BASE_EC_PENDING_MASK, 0);
    TH_CHECK_EQ(conc_eventcount_wait(&word, &v, 0, conc_now() - 1), ETIMEDOUT);
    conc_eventcount_leave(&word, v);
    TH_CHECK_EQ(word & (CONC__BASE_EC_WAITER_MASK | CONC__BASE_EC_PENDING_MASK), 0);
}

/* Past CONC_EVENTCOUNT_WAITERS_MAX registered waiters (made here by counting 4,095 that do
 * not exist, so that no test needs 4,096 threads), enter aborted the process. Now the next
 * waiter polls off the futex: a notify or a close reaches it at its next look, its leave
 * undoes nothing, and once a place frees up it registers and sleeps on the futex. */
static void base_eventcount_past_its_waiters_a_waiter_polls(void) {
    const uint32_t full = CONC_EVENTCOUNT_WAITERS_MAX;
    for (int how = 0; how < 3; how++) { /* ended by: notify, close, a place then a notify */
        ec_case c;
        memset(&c, 0, sizeof c);
        c.word = full;
        c.deadline = CONC_FOREVER;
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, ec_waiter, &c), 0);
        th_sleep_ns(5 * CONC_MS); /* it polls (or would have aborted) */
        /* it registered nobody (an atomic load: it may register, once a place frees up) */
        TH_CHECK_EQ(conc_load(&c.word, CONC_RELAXED) & CONC__BASE_EC_WAITER_MASK, full);
        TH_CHECK_EQ(__atomic_load_n(&c.done, __ATOMIC_ACQUIRE), 0);
        if (how == 0) {
            __atomic_fetch_add(&c.ready, 1, __ATOMIC_SEQ_CST);
            conc_eventcount_notify(&c.word, 1, 0);
        } else if (how == 1) {
            conc_eventcount_close(&c.word, 0);
        } else {
            (void)__atomic_fetch_sub(&c.word, 1u, __ATOMIC_SEQ_CST); /* one of them left */
            while ((conc_load(&c.word, CONC_RELAXED) & CONC__BASE_EC_WAITER_MASK) != full)
                th_sleep_ns(100 * 1000); /* it took the place: registered, asleep or soon */
            __atomic_fetch_add(&c.ready, 1, __ATOMIC_SEQ_CST);
            conc_eventcount_notify(&c.word, 1, 0);
        }
        pthread_join(t, NULL);
        TH_CHECK_EQ(c.result, 0);
        /* Back to the counted waiters: its leave took away only what its enter added. */
        TH_CHECK_EQ(c.word & CONC__BASE_EC_WAITER_MASK, how == 2 ? full - 1 : full);
    }
    /* A ticket's wait keeps its deadline, and leaving with it changes nothing. */
    uint32_t word = full;
    uint32_t v = conc_eventcount_enter(&word);
    TH_CHECK_EQ(conc_eventcount_waiters(v), 0);
    int64_t deadline = conc_deadline_in(3 * CONC_MS);
    int r;
    while ((r = conc_eventcount_wait(&word, &v, 0, deadline)) == 0)
        TH_CHECK_EQ(conc_eventcount_waiters(v), 0);
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    conc_eventcount_leave(&word, v);
    TH_CHECK_EQ(word, full);
}

/* ---- chaos points and misuse reports -------------------------------------------------- */

/* The chaos mix: about 1 point in 64 delays (fewer than CONC__BASE_CHAOS_DELAY_MAX pauses),
 * about 1 in 1024 yields, and a seed replays the same sequence. */
static void base_chaos_points_mix_and_replay(void) {
    enum { DRAWS = 1 << 18 };
    static const char thread_address; /* any address: the library passes its thread-local's */
    uint64_t a = conc__base_chaos_seed(42, &thread_address), b = a;
    TH_CHECK(a != 0);
    long delays = 0, yields = 0;
    for (int i = 0; i < DRAWS; i++) {
        unsigned pa, pb;
        int wa = conc__base_chaos_draw(&a, &pa), wb = conc__base_chaos_draw(&b, &pb);
        TH_CHECK(wa == wb && pa == pb);
        delays += wa == CONC__BASE_CHAOS_DELAY;
        yields += wa == CONC__BASE_CHAOS_YIELD;
        TH_CHECK(pa < CONC__BASE_CHAOS_DELAY_MAX);
        TH_CHECK(wa == CONC__BASE_CHAOS_DELAY || pa == 0);
    }
    TH_CHECK_MSG(delays > DRAWS / 64 / 2 && delays < DRAWS / 64 * 2, "delays %ld", delays);
    TH_CHECK_MSG(yields > DRAWS / 1024 / 2 && yields < DRAWS / 1024 * 2, "yields %ld", yields);
    uint64_t c = conc__base_chaos_seed(43, &a);
    unsigned pc;
    uint64_t a2 = conc__base_chaos_seed(42, &a);
    int differ = 0;
    for (int i = 0; i < 64; i++) {
        unsigned pa2;
        (void)conc__base_chaos_draw(&c, &pc);
        (void)conc__base_chaos_draw(&a2, &pa2);
        differ += c != a2;
    }
    TH_CHECK(differ > 0); /* another seed, another sequence */
    for (int i = 0; i < 1000; i++)
        CONC_CHAOS_POINT(); /* a no-op, or (CONC_CHAOS builds) a short delay: returns */
}

static void abort_with_message(void) {
    CONC_ABORT("conc_test: a message naming the function");
}

static void base_abort_names_the_function(void) {
    char err[512];
    int status = th_run_child_capturing_stderr(abort_with_message, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, "conc: fatal: conc_test: a message naming the function") != NULL,
                 "stderr: %s", err);
    TH_CHECK_MSG(strstr(err, "test_base.c:") != NULL, "stderr: %s", err);
}

/* ---- base_check_init_flags: a void init cannot report flags it does not know --------------- */

static int init_flags_bad = 0x2 | CONC_SHARED; /* not a constant: as a caller's variable */

static void init_lock_bad_flags(void) {
    conc_lock_t l;
    conc_lock_init(&l, init_flags_bad);
}
static void init_cond_bad_flags(void) {
    conc_cond_t c;
    conc_cond_init(&c, init_flags_bad);
}
static void init_event_bad_flags(void) {
    conc_event_t e;
    conc_event_init(&e, init_flags_bad);
}
static void init_latch_bad_flags(void) {
    conc_latch_t l;
    conc_latch_init(&l, 1, init_flags_bad);
}
static void init_once_bad_flags(void) {
    conc_once_t o;
    conc_once_init(&o, init_flags_bad);
}
static void init_rwlock_bad_flags(void) {
    static conc_rwlock_t rw;
    conc_rwlock_init(&rw, init_flags_bad);
}

/* Each void init aborts naming itself on a flag other than CONC_SHARED (it used to drop it
 * silently); 0 and CONC_SHARED still initialise. */
static void base_void_inits_refuse_unknown_flags(void) {
    static const th_abort_case cases[] = {
        {init_lock_bad_flags, "conc_lock_init: flags other than 0 and CONC_SHARED"},
        {init_cond_bad_flags, "conc_cond_init: flags other than 0 and CONC_SHARED"},
        {init_event_bad_flags, "conc_event_init: flags other than 0 and CONC_SHARED"},
        {init_latch_bad_flags, "conc_latch_init: flags other than 0 and CONC_SHARED"},
        {init_once_bad_flags, "conc_once_init: flags other than 0 and CONC_SHARED"},
        {init_rwlock_bad_flags, "conc_rwlock_init: flags other than 0 and CONC_SHARED"},
    };
    th_check_each_aborts(cases, sizeof cases / sizeof cases[0]);
    conc_lock_t l;
    conc_lock_init(&l, CONC_SHARED);
    TH_CHECK_EQ(conc_lock_try_acquire(&l), 0);
    conc_lock_release(&l);
    conc_event_t e;
    conc_event_init(&e, 0);
    TH_CHECK(!conc_event_is_set(&e));
}

TH_MAIN("base", TH_CASE(base_time_and_deadlines), TH_CASE(base_void_inits_refuse_unknown_flags),
        TH_CASE(base_deadline_passed), TH_CASE(base_cpu_count_keeps_errno_when_sysconf_sets_it),
        TH_CASE(base_futex_wait_and_wake), TH_CASE(base_futex_wake_of_none_wakes_none),
        TH_CASE(base_futex_flags), TH_CASE(base_futex_word_the_kernel_refuses_aborts_in_debug),
        TH_CASE(base_conc_debug_is_defined_in_release_builds),
        TH_CASE(base_cpu_count_cache_is_one_per_program),
        TH_CASE(base_futex_halves_of_a_64_bit_word),
        TH_CASE(base_futex_tagged_wake_reaches_its_tag),
        TH_CASE(base_futex_wait_zero_returns_at_a_zero), TH_CASE(base_spin_budget_counts_pauses),
        TH_CASE(base_yield_policy_books_waste),
        TH_CASE(base_eventcount_idle_notify_makes_no_syscall),
        TH_CASE(base_eventcount_notify_wakes_a_waiter),
        TH_CASE(base_eventcount_close_wakes_every_waiter),
        TH_CASE(base_eventcount_wait_times_out_not_early),
        TH_CASE(base_eventcount_pending_wake_is_taken_not_slept_on),
        TH_CASE(base_eventcount_past_its_waiters_a_waiter_polls),
        TH_CASE(base_chaos_points_mix_and_replay), TH_CASE(base_abort_names_the_function),
        TH_CASE(base_futex_wait_takes_the_first_designs_argument_order),
        TH_CASE(base_futex_wait_wide_flags_are_flags),
        TH_CASE(base_futex_wait_takes_bit_field_arguments))

/* tests/test_harness.c - the harness tests itself: a real ABBA deadlock is reported as
 * DEADLOCK? with every thread's stack, killed, counted as a failure, and the run carries on;
 * a case that runs past its deadline while using CPU (a loaded machine) is not a deadlock,
 * unless it is still at it TH_BUSY_GRACE times later (a livelock).
 * SPDX-License-Identifier: MIT
 *
 * The outer cases run this same binary again with CONC_HARNESS_INNER=1, which selects the
 * inner cases below (a deadlock, a failing check, a skip, a pass), and read what it printed. */
#include "conc/lock.h"
#include "harness.h"

/* ---- inner cases: only run as the subject of the outer cases ------------------------------ */

typedef struct abba {
    conc_lock_t a, b;
    int arrived; /* relaxed-atomic rendezvous: both hold their first lock before either goes on */
} abba;

static void abba_worker(int index, void *arg) {
    abba *s = (abba *)arg;
    conc_lock_t *first = index ? &s->b : &s->a, *second = index ? &s->a : &s->b;
    conc_lock_acquire(first);
    __atomic_fetch_add(&s->arrived, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&s->arrived, __ATOMIC_RELAXED) < 2)
        sched_yield();
    conc_lock_acquire(second); /* each waits for the other's first lock: forever */
    conc_lock_release(second);
    conc_lock_release(first);
}

static void inner_abba_deadlock(void) {
    abba s;
    memset(&s, 0, sizeof s);
    th_run_threads(2, abba_worker, &s);
}

static void inner_failing_check(void) {
    int two = 2;
    TH_CHECK_EQ(two + two, 5);
}

static void inner_skip(void) {
    TH_SKIP("skipping on purpose");
}

static void inner_passes_after_the_deadlock(void) {
    TH_CHECK(1 + 1 == 2);
}

/* Busy for half again its 1 s deadline, as a case is on a machine that gives it a fraction
 * of a core: it uses CPU all along, so the harness lets it finish. */
static void inner_busy_past_its_deadline(void) {
    int64_t until = th_now() + 1500 * 1000000LL;
    volatile unsigned long spins = 0;
    while (th_now() < until)
        spins++;
    TH_CHECK(spins > 0);
}

/* Spins without end: busy, but still at it TH_BUSY_GRACE times its deadline later. */
static void inner_livelock(void) {
    volatile unsigned long spins = 0;
    for (;;)
        spins++;
}

static const th_case inner_cases[] = {
    TH_CASE_T(inner_abba_deadlock, 1),
    TH_CASE(inner_failing_check),
    TH_CASE(inner_skip),
    TH_CASE(inner_passes_after_the_deadlock),
    TH_CASE_T(inner_busy_past_its_deadline, 1),
    TH_CASE_T(inner_livelock, 1),
};

/* ---- outer cases -------------------------------------------------------------------------- */

static char self_path[4096];

/* Runs this binary as the inner suite with extra arguments; returns its output and status. */
static char *run_inner(const char *args, int *status) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "CONC_HARNESS_INNER=1 CONC_TEST_FILTER= CONC_TEST_TIMEOUT_SCALE=1 CONC_TEST_SEED=4242 "
             "%s %s 2>&1",
             self_path, args);
    FILE *p = popen(cmd, "r");
    TH_CHECK(p != NULL);
    size_t cap = 1 << 16, len = 0;
    char *out = (char *)malloc(cap);
    TH_CHECK(out != NULL);
    size_t n;
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0) {
        len += n;
        if (len == cap - 1) {
            cap *= 2;
            out = (char *)realloc(out, cap);
            TH_CHECK(out != NULL);
        }
    }
    out[len] = 0;
    *status = pclose(p);
    return out;
}

static void harness_reports_kills_and_carries_on_after_deadlock(void) {
    int status;
    char *out = run_inner("", &status);
    TH_CHECK_MSG(strstr(out, "DEADLOCK? harness.inner_abba_deadlock exceeded 1 s"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[ FAIL ] harness.inner_abba_deadlock (killed)"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[ FAIL ] harness.inner_failing_check"), "%s", out);
    TH_CHECK_MSG(strstr(out, "two + two == 5 (4 != 5)"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[ SKIP ] harness.inner_skip"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[  OK  ] harness.inner_passes_after_the_deadlock"), "%s", out);
    TH_CHECK_MSG(strstr(out, "DEADLOCK? harness.inner_abba_deadlock exceeded 1 s (asleep"), "%s",
                 out);
    TH_CHECK_MSG(strstr(out, "NOTE: ran past its 1 s deadline"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[  OK  ] harness.inner_busy_past_its_deadline"), "%s", out);
    TH_CHECK_MSG(strstr(out, "DEADLOCK? harness.inner_livelock exceeded 1 s (still busy"), "%s",
                 out);
    TH_CHECK_MSG(strstr(out, "[ FAIL ] harness.inner_livelock (killed)"), "%s", out);
    TH_CHECK_MSG(strstr(out, "\n2 passed, 3 failed, 1 skipped\n"), "%s", out);
    TH_CHECK_MSG(strstr(out, "seed 4242"), "%s", out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    /* With gdb installed, the report shows each thread's stack: both workers inside the lock. */
    if (system("command -v gdb >/dev/null 2>&1") == 0)
        TH_CHECK_MSG(strstr(out, "conc_lock_acquire") || strstr(out, "conc__lock_acquire_slow") ||
                         strstr(out, "(gdb could not attach)"),
                     "no stacks in: %s", out);
    free(out);
}

static void harness_list_and_filter(void) {
    int status;
    char *out = run_inner("--list", &status);
    TH_CHECK_MSG(strstr(out, "harness.inner_abba_deadlock\nharness.inner_failing_check\n"), "%s",
                 out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
    out = run_inner("--filter=passes,skip", &status);
    TH_CHECK_MSG(strstr(out, "\n1 passed, 0 failed, 1 skipped\n"), "%s", out);
    TH_CHECK_MSG(!strstr(out, "inner_abba"), "%s", out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
}

static void harness_knobs_scale_work(void) {
    setenv("CONC_TEST_ITERS", "25", 1);
    TH_CHECK_EQ(th_iters(1000), 250);
    TH_CHECK_EQ(th_iters(2), 1); /* never zero */
    setenv("CONC_TEST_THREADS", "3", 1);
    TH_CHECK_EQ(th_threads(8), 3);
    setenv("CONC_TEST_DURATION", "0.25", 1);
    TH_CHECK_EQ(th_duration_ns(1.0), 250000000);
    unsetenv("CONC_TEST_THREADS");
    TH_CHECK_EQ(th_threads(8), 8);
}

static const th_case outer_cases[] = {
    TH_CASE_T(harness_reports_kills_and_carries_on_after_deadlock, 120),
    TH_CASE(harness_list_and_filter),
    TH_CASE(harness_knobs_scale_work),
};

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 2;
    self_path[n] = 0;
    if (getenv("CONC_HARNESS_INNER"))
        return th_main("harness", inner_cases, sizeof inner_cases / sizeof inner_cases[0], argc,
                       argv);
    return th_main("harness", outer_cases, sizeof outer_cases / sizeof outer_cases[0], argc, argv);
}

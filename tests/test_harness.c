/* tests/test_harness.c - the harness tests itself: a real ABBA deadlock is reported as
 * DEADLOCK? with every thread's stack, killed, counted as a failure, and the run carries on;
 * a case that runs past its deadline while using CPU (a loaded machine) is not a deadlock,
 * unless it is still at it TH_BUSY_GRACE times later (a livelock); a harness killed while a
 * case runs leaves neither the case nor what the case forked behind.
 * SPDX-License-Identifier: MIT
 *
 * The outer cases run this same binary again with CONC_HARNESS_INNER=1, which selects the
 * inner cases below (a deadlock, a failing check, a skip, a pass), and read what it printed;
 * CONC_HARNESS_INNER=orphans selects a case that sleeps beside a child, for the kill cases. */
#include "conc/lock.h"
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>

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

/* Busy for half again its deadline, as a case is on a machine that gives it a fraction of a
 * core: it uses CPU all along, so the harness lets it finish. */
static void inner_busy_past_its_deadline(void) {
    int64_t deadline_ns = (int64_t)(th_env_double("CONC_TEST_TIMEOUT_SCALE", 1.0) * 1e9);
    int64_t until = th_now() + deadline_ns * 3 / 2;
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

/* The inner run's timeout scale: its 1 s deadlines last INNER_SCALE s, and the watchdog's
 * window shrinks with them (th_progress_window_ns), so the run takes about 3 s instead of 9
 * (the deadlock's stacks from gdb take most of it). */
#define INNER_SCALE "0.25"

static const th_case inner_cases[] = {
    TH_CASE_T(inner_abba_deadlock, 1),
    TH_CASE(inner_failing_check),
    TH_CASE(inner_skip),
    TH_CASE(inner_passes_after_the_deadlock),
    TH_CASE_T(inner_busy_past_its_deadline, 1),
    TH_CASE_T(inner_livelock, 1),
};

/* Forks a child that sleeps, writes "CASE CHILD\n" (both pids) to $CONC_HARNESS_PIDFILE and
 * sleeps too: the outer case kills the harness running it and checks that neither is left. */
static void inner_sleeps_beside_its_child(void) {
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0)
        for (;;)
            pause();
    const char *path = getenv("CONC_HARNESS_PIDFILE");
    TH_CHECK(path != NULL);
    char tmp[4200], text[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int len = snprintf(text, sizeof text, "%d %d\n", (int)getpid(), (int)child);
    FILE *f = fopen(tmp, "w");
    TH_CHECK(f != NULL);
    TH_CHECK_EQ(fwrite(text, 1, (size_t)len, f), len);
    TH_CHECK_EQ(fclose(f), 0);
    TH_CHECK_EQ(rename(tmp, path), 0); /* the outer case sees both pids or none */
    for (;;)
        pause();
}

static const th_case orphan_cases[] = {
    TH_CASE(inner_sleeps_beside_its_child),
};

/* ---- outer cases -------------------------------------------------------------------------- */

static char self_path[4096];

/* Runs this binary as the inner suite with extra arguments; returns its output and status. */
static char *run_inner(const char *args, int *status) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "CONC_HARNESS_INNER=1 CONC_TEST_FILTER= CONC_TEST_TIMEOUT_SCALE=" INNER_SCALE
             " CONC_TEST_SEED=4242 %s %s 2>&1",
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
    TH_CHECK_MSG(strstr(out, "DEADLOCK? harness.inner_abba_deadlock exceeded " INNER_SCALE " s"),
                 "%s", out);
    TH_CHECK_MSG(strstr(out, "[ FAIL ] harness.inner_abba_deadlock (killed)"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[ FAIL ] harness.inner_failing_check"), "%s", out);
    TH_CHECK_MSG(strstr(out, "two + two == 5 (4 != 5)"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[ SKIP ] harness.inner_skip"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[  OK  ] harness.inner_passes_after_the_deadlock"), "%s", out);
    TH_CHECK_MSG(strstr(out, "DEADLOCK? harness.inner_abba_deadlock exceeded " INNER_SCALE
                             " s (asleep: no CPU time in the last " INNER_SCALE " s)"),
                 "%s", out);
    TH_CHECK_MSG(strstr(out, "NOTE: ran past its " INNER_SCALE " s deadline"), "%s", out);
    TH_CHECK_MSG(strstr(out, "[  OK  ] harness.inner_busy_past_its_deadline"), "%s", out);
    TH_CHECK_MSG(
        strstr(out, "DEADLOCK? harness.inner_livelock exceeded " INNER_SCALE " s (still busy"),
        "%s", out);
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

/* Whether pid is a live (not zombie) process in process group pgid: a pid reused since by
 * another process is not in that group. */
static bool alive_in_group(pid_t pid, pid_t pgid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    char state;
    int pgrp;
    if (!p || sscanf(p + 2, "%c %*d %d", &state, &pgrp) != 2)
        return false;
    return state != 'Z' && state != 'X' && pgrp == (int)pgid;
}

/* A harness killed by sig while a case runs (Ctrl-C, timeout(1), kill -9) takes the case and
 * what it forked along: both live in the case's own process group, which the harness's group
 * signals do not reach. slow_tell: the harness is held up right after forking the case
 * (CONC_HARNESS_SLOW_TELL), as a preempted harness is; the case has forked its child by then. */
static void killed_harness_leaves_nothing(int sig, bool slow_tell) {
    char path[] = "/tmp/conc-harness-pids-XXXXXX";
    int fd = mkstemp(path);
    TH_CHECK(fd >= 0);
    close(fd);
    unlink(path); /* the inner case creates it, by rename, once both pids are in it */
    pid_t harness = fork();
    TH_CHECK(harness >= 0);
    if (harness == 0) {
        setenv("CONC_HARNESS_INNER", "orphans", 1);
        setenv("CONC_HARNESS_PIDFILE", path, 1);
        setenv("CONC_TEST_TIMEOUT_SCALE", "1000", 1); /* only the kill ends it */
        if (slow_tell)
            setenv("CONC_HARNESS_SLOW_TELL", "1", 1);
        unsetenv("CONC_TEST_FILTER");
        signal(sig, SIG_DFL); /* a background shell may have left SIGINT ignored */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(self_path, self_path, (char *)NULL);
        _exit(127);
    }
    int case_pid = 0, child_pid = 0;
    for (;;) { /* until the case has started its child: an event, not a delay */
        FILE *f = fopen(path, "r");
        if (f) {
            int got = fscanf(f, "%d %d", &case_pid, &child_pid);
            fclose(f);
            TH_CHECK_EQ(got, 2);
            break;
        }
        int status;
        TH_CHECK_MSG(waitpid(harness, &status, WNOHANG) == 0, "the inner harness ended early");
        th_sleep_ns(1000000);
    }
    unlink(path);
    TH_CHECK(alive_in_group(case_pid, case_pid) && alive_in_group(child_pid, case_pid));
    TH_CHECK_EQ(kill(harness, sig), 0);
    int status;
    TH_CHECK_EQ(waitpid(harness, &status, 0), harness);
    TH_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == sig);
    /* Killing is asynchronous: wait for both to go. If they never do, the deadline reports it. */
    while (alive_in_group(case_pid, case_pid) || alive_in_group(child_pid, case_pid))
        th_sleep_ns(1000000);
}

static void harness_killed_by_sigterm_leaves_no_case_behind(void) {
    killed_harness_leaves_nothing(SIGTERM, false);
}

static void harness_killed_by_sigint_leaves_no_case_behind(void) {
    killed_harness_leaves_nothing(SIGINT, false);
}

static void harness_killed_by_sigkill_leaves_no_case_behind(void) {
    killed_harness_leaves_nothing(SIGKILL, false);
}

/* Found by CI once, when the harness told the guardian the case's group after the fork: the
 * case had forked its child before that, and the child outlived the harness. */
static void harness_killed_before_naming_the_case_group_leaves_nothing(void) {
    killed_harness_leaves_nothing(SIGINT, true);
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

/* --list obeys a --filter written after it; --filter takes its words as the next argument
 * too; a full name as --list prints it ("suite.case") selects that case. */
static void harness_list_and_filter_forms(void) {
    int status;
    char *out = run_inner("--list --filter=failing", &status);
    TH_CHECK_MSG(strcmp(out, "harness.inner_failing_check\n") == 0, "%s", out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
    out = run_inner("--filter passes,skip", &status);
    TH_CHECK_MSG(strstr(out, "\n1 passed, 0 failed, 1 skipped\n"), "%s", out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
    out = run_inner("--filter=harness.inner_passes_after_the_deadlock", &status);
    TH_CHECK_MSG(strstr(out, "\n1 passed, 0 failed, 0 skipped\n"), "%s", out);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
}

/* make stress's loop (tests/run.sh stress SECONDS BIN...) looks at the clock before each
 * binary, not once per round over all of them: a round of every binary takes minutes, so
 * `make stress DURATION=5` ran for minutes ("-144 s left"), and DURATION=0 ran nothing. With
 * 0 seconds exactly one of three binaries runs (at least one always does). */
static void harness_stress_loop_checks_the_clock_before_each_binary(void) {
    char dir[] = "/tmp/conc-stress-XXXXXX";
    TH_CHECK(mkdtemp(dir) != NULL);
    char bin[64], runs[64], root[4096], cmd[4400];
    snprintf(bin, sizeof bin, "%s/fake_test", dir);
    snprintf(runs, sizeof runs, "%s/runs", dir);
    FILE *f = fopen(bin, "w");
    TH_CHECK(f != NULL);
    fprintf(f, "#!/bin/sh\necho run >>%s\necho '2 passed, 0 failed, 0 skipped'\n", runs);
    TH_CHECK_EQ(fclose(f), 0);
    TH_CHECK_EQ(chmod(bin, 0755), 0);
    snprintf(root, sizeof root, "%s", self_path); /* ROOT/build/CONFIG/test_harness */
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(root, '/');
        TH_CHECK(slash != NULL);
        *slash = 0;
    }
    snprintf(cmd, sizeof cmd, "bash %s/tests/run.sh stress 0 %s %s %s 2>&1", root, bin, bin, bin);
    FILE *p = popen(cmd, "r");
    TH_CHECK(p != NULL);
    char out[8192];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    TH_CHECK_EQ(pclose(p), 0);
    TH_CHECK_MSG(strstr(out, "\n2 passed, 0 failed, 0 skipped\n") != NULL, "%s", out);
    f = fopen(runs, "r");
    TH_CHECK_MSG(f != NULL, "no binary ran: %s", out);
    int lines = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        lines += c == '\n';
    fclose(f);
    TH_CHECK_MSG(lines == 1, "%d binaries ran: %s", lines, out);
    unlink(runs);
    unlink(bin);
    rmdir(dir);
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
    TH_CASE(harness_list_and_filter_forms),
    TH_CASE(harness_stress_loop_checks_the_clock_before_each_binary),
    TH_CASE(harness_knobs_scale_work),
    TH_CASE_T(harness_killed_by_sigterm_leaves_no_case_behind, 10),
    TH_CASE_T(harness_killed_by_sigint_leaves_no_case_behind, 10),
    TH_CASE_T(harness_killed_by_sigkill_leaves_no_case_behind, 10),
    TH_CASE_T(harness_killed_before_naming_the_case_group_leaves_nothing, 10),
};

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 2;
    self_path[n] = 0;
    const char *inner = getenv("CONC_HARNESS_INNER");
    if (inner && strcmp(inner, "orphans") == 0)
        return th_main("harness", orphan_cases, sizeof orphan_cases / sizeof orphan_cases[0], argc,
                       argv);
    if (inner)
        return th_main("harness", inner_cases, sizeof inner_cases / sizeof inner_cases[0], argc,
                       argv);
    return th_main("harness", outer_cases, sizeof outer_cases / sizeof outer_cases[0], argc, argv);
}

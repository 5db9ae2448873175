/* examples/14_all_asleep.c - two coroutines that join each other: a report, not a hang
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Alice waits for Bob to finish and Bob waits for Alice. Nothing else can happen, ever.
 *   asyncio hangs here forever (the event loop sleeps with nothing scheduled). Go aborts with
 *   "all goroutines are asleep - deadlock!". conc_sched_run returns EDEADLK and prints one
 *   line per stuck coroutine: its name, what it waits on and where it was spawned. Then
 *   conc_sched_destroy cancels them: each join returns ECANCELED and both return cleanly.
 *
 *   The scheduler can tell because it knows every way a coroutine could be woken: a runnable
 *   coroutine, a timer, an fd wait, another thread's conc_sched_spawn, or a "hold"
 *   (conc_sched_hold: a thread promising work later). When none is left, nobody can wake.
 *
 * RUN
 *   make examples && build/examples/14_all_asleep
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/14_all_asleep.c -pthread)
 *   It prints, on stderr, the report (addresses and line numbers vary):
 *       conc: conc_sched_run: EDEADLK: all 2 coroutines are asleep and nothing can wake them ...
 *       conc:   coro "bob" (#2) waiting on join of coro "alice" (#1); spawned at examples/...
 *       conc:   coro "alice" (#1) waiting on join of coro "bob" (#2); spawned at examples/...
 *   and on stdout:
 *       conc_sched_run: EDEADLK (the report above names both)
 *       after destroy: alice's join returned ECANCELED, bob's join returned ECANCELED
 *   The example checks the report itself: it reads its own stderr back from a pipe.
 */
#include "conc/coro.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct pair {
    conc_coro_t *alice, *bob;
    int alice_got, bob_got;
} pair_t;

static int alice(void *arg) {
    pair_t *p = (pair_t *)arg;
    p->alice_got = conc_coro_join(p->bob, CONC_FOREVER, NULL); /* waits for Bob */
    return p->alice_got;
}

static int bob(void *arg) {
    pair_t *p = (pair_t *)arg;
    p->bob_got = conc_coro_join(p->alice, CONC_FOREVER, NULL); /* waits for Alice */
    return p->bob_got;
}

int main(void) {
    /* Capture stderr in a pipe to check the report (and echo it for the reader). */
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    int saved_stderr = dup(2);
    dup2(fds[1], 2);

    conc_sched_t *s;
    if (conc_sched_create(&s, NULL) != 0)
        return 1;
    pair_t p = {NULL, NULL, -1, -1};
    conc_coro_opts_t o = {0, "alice"};
    if (conc_coro_spawn(s, alice, &p, &o, &p.alice) != 0)
        return 1;
    o.name = "bob";
    if (conc_coro_spawn(s, bob, &p, &o, &p.bob) != 0)
        return 1;
    int e = conc_sched_run(s); /* asyncio would hang here */

    fflush(stderr);
    dup2(saved_stderr, 2);
    close(fds[1]);
    char report[4096];
    ssize_t n = read(fds[0], report, sizeof report - 1);
    report[n > 0 ? n : 0] = 0;
    close(fds[0]);
    fputs(report, stderr);

    printf("conc_sched_run: %s (the report above names both)\n",
           e == EDEADLK ? "EDEADLK" : strerror(e));
    int ok = e == EDEADLK &&
             strstr(report, "coro \"alice\" (#1) waiting on join of coro \"bob\"") &&
             strstr(report, "coro \"bob\" (#2) waiting on join of coro \"alice\"") &&
             strstr(report, "spawned at " __FILE__ ":"); /* the path it was built from */

    conc_coro_release(p.alice); /* handles go before the scheduler; the coroutines run on */
    conc_coro_release(p.bob);
    conc_sched_destroy(s); /* cancels both: their joins return ECANCELED, they return */
    printf("after destroy: alice's join returned %s, bob's join returned %s\n",
           p.alice_got == ECANCELED ? "ECANCELED" : "?",
           p.bob_got == ECANCELED ? "ECANCELED" : "?");
    return ok && p.alice_got == ECANCELED && p.bob_got == ECANCELED ? 0 : 1;
}

/* tests/models/once.pml - the conc_once protocol (include/conc/once.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The state is {RUNNING, WAITERS, DONE}; each CAS and the runner's closing swap are one atomic
 * step, futex_wait(state) the kernel's atomic "compare and queue". Three callers; fn fails
 * nondeterministically, at most twice in all (then another caller must run it again). Checked:
 *   - fn never runs in two threads at once, and succeeds at most once;
 *   - a caller that returns 0 finds fn's success already there (DONE orders it);
 *   - no lost wakeup: every caller finishes (invalid end state otherwise), and since fn fails
 *     at most twice with three callers, at least one run succeeds.
 *
 * // broken: BROKEN_NO_RECHECK     futex_wait sleeps without the kernel's compare
 * // broken: BROKEN_SPLIT_FINISH   the runner reads WAITERS, then stores DONE in a second step:
 *                                  a waiter raising WAITERS in between is never woken
 * // broken: BROKEN_FAIL_NO_WAKE   a failed run goes back to 0 without waking the waiters
 */
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_SPLIT_FINISH
// broken: BROKEN_FAIL_NO_WAKE
// pan-cc: -DSAFETY
// pan-run: -m1000000

bool running = false, waiters = false, done = false;
bool asleep[4];
byte runs_inside = 0;   /* ghost */
byte successes = 0;     /* ghost */
byte failures = 0;      /* ghost */
byte finished = 0;      /* ghost: callers that returned (0 or failure) */

#define STATE (running + 2 * waiters + 4 * done)

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: STATE == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    !asleep[_pid]
}

inline wake_all() {
    d_step { asleep[0] = false; asleep[1] = false; asleep[2] = false; asleep[3] = false }
}

proctype caller() {
    bool ok, had_waiters;
    byte seen;
    do
    :: atomic { done -> assert(successes == 1); break }                  /* [once.A1] returns 0 */
    :: atomic { !done && !running -> running = true; runs_inside++; assert(runs_inside == 1) };
       /* fn(arg) */
       if
       :: atomic { failures < 2 -> failures++; ok = false }
       :: atomic { true -> successes++; ok = true; assert(successes == 1) }
       fi;
       runs_inside--;
#ifdef BROKEN_SPLIT_FINISH
       had_waiters = waiters;
       atomic { running = false; waiters = false; done = ok };
#else
       /* [once.R1] the swap */
       atomic { had_waiters = waiters; running = false; waiters = false; done = ok };
#endif
#ifdef BROKEN_FAIL_NO_WAKE
       if :: !ok -> had_waiters = false :: else -> skip fi;
#endif
       if :: had_waiters -> wake_all() :: else -> skip fi;
       break                                                             /* returns fn's result */
    :: atomic { !done && running && !waiters -> waiters = true }
    :: atomic { !done && running && waiters -> seen = STATE };
       futex_wait(seen); seen = 0
    od;
    finished++
}

init {
    atomic { run caller(); run caller(); run caller() }
    (_nr_pr == 1);
    assert(finished == 3 && !running && !waiters)
}

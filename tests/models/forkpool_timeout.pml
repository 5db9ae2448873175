/* tests/models/forkpool_timeout.pml - task_timeout for tasks a submitter starts itself: the
 * monitor's sleep and the submitter's kick of include/conc/forkpool.h ([forkpool.T]), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Time is an abstract clock that ticks from 0 to MAXT at any moment, between any two steps of
 * anybody. Two submitters each hand one task to their own idle worker (conc_forkpool_submit,
 * dispatch with `mine`): under the pool lock, in one step, the task starts (task_started =
 * now) and the submitter compares its deadline, task_started + TO, with monitor_wake_at; if
 * it is earlier, monitor_wake_at takes it and the submitter owes a kick [forkpool.T2], which
 * it writes to the eventfd after dropping the lock [forkpool.T3]. The monitor, under the
 * lock, reads the eventfd to zero if its last poll saw it readable [forkpool.T5], samples
 * now, kills (SIGTERM) every task whose deadline has come, takes the earliest deadline left
 * as `next` and records it in monitor_wake_at [forkpool.T1]; after dropping the lock it polls
 * [forkpool.T4], which returns when the eventfd counter is non-zero, when the clock reaches
 * `next`, or at any time for another fd (a worker's socket). A task runs until the monitor
 * kills it: a task that ends by itself only raises the earliest deadline, as a kill does.
 * The check, in every state: while the monitor is on its way to sleep or asleep (from the
 * unlock after T1 until poll returns) with the eventfd counter at zero and no kick owed, no
 * running task it has not killed has a deadline before the time it sleeps until. Such a task
 * would run past its deadline unnoticed: its submitter started it and let the monitor sleep.
 * (Comparing with <= instead of < in T2 only adds kicks, for a deadline the monitor's own
 * timer meets; reading the eventfd before the lock instead of under it loses nothing either,
 * since a write read there followed its T2, which T1 then sees.)
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
// broken: BROKEN_DECIDE_UNLOCKED the submitter reads monitor_wake_at before taking the lock:
//         a stale early time from a task the monitor has just killed stops its kick
// broken: BROKEN_WAKE_AT_UNLOCKED the monitor records monitor_wake_at after dropping the
//         lock: a submitter in between compares with the old, earlier time and does not kick
// broken: BROKEN_NO_WRITE the submitter lowers monitor_wake_at but never writes the eventfd
// broken: BROKEN_DRAIN_LATE the monitor reads the eventfd after T1, on its way to poll: it
//         swallows the kick of a task T1 did not see
// broken: BROKEN_CMP_SWAPPED T2 compares the other way round: it kicks for a deadline after
//         the monitor's time and not for one before it
// pan-cc: -DSAFETY
// pan-run: -m100000
 */

#define NSUB 2
#define TO 2        /* task_timeout, in ticks */
#define MAXT 4      /* the clock stops here */
#define FOREVER 255 /* CONC_FOREVER */

byte now = 0;
bool locked = false;
byte wake_at = FOREVER; /* monitor_wake_at: FOREVER until the monitor first sleeps */
bool running[NSUB];     /* worker k runs submitter k's task */
byte started[NSUB];     /* task_started */
bool killed[NSUB];      /* SIGTERM sent (timed_out) */
byte evfd = 0;          /* the eventfd counter */
byte owed = 0;          /* ghost: kicks decided at T2 and not yet written at T3 */
bool asleep = false;    /* ghost: the monitor is between its unlock after T1 and poll's return */
byte poll_at = FOREVER; /* ghost: the time that poll waits until (its `next`) */

#define OVERLOOKED(k) (running[k] && !killed[k] && started[k] + TO < poll_at)

proctype submitter(byte k) {
    byte seen;
    bool kick = false;
#ifdef BROKEN_DECIDE_UNLOCKED
    seen = wake_at;
#endif
    atomic {
        !locked -> locked = true;
        running[k] = true;                                              /* [forkpool.T2] */
        started[k] = now;
#ifndef BROKEN_DECIDE_UNLOCKED
        seen = wake_at;
#endif
        if
#ifdef BROKEN_CMP_SWAPPED
        :: seen < started[k] + TO ->
#else
        :: started[k] + TO < seen ->
#endif
            wake_at = started[k] + TO;
            kick = true;
#ifndef BROKEN_NO_WRITE
            owed++
#endif
        :: else -> skip
        fi
    };
    locked = false;
#ifndef BROKEN_NO_WRITE
    if
    :: kick -> atomic { evfd++; owed-- }                                /* [forkpool.T3] */
    :: else -> skip
    fi
#endif
}

/* [forkpool.T1]'s look at worker k: kill the task if its deadline has come, else note it. */
inline scan(k) {
    if
    :: running[k] && !killed[k] && mnow >= started[k] + TO -> killed[k] = true
    :: running[k] && !killed[k] && mnow < started[k] + TO && started[k] + TO < next ->
        next = started[k] + TO
    :: else -> skip
    fi
}

proctype monitor() {
    byte mnow, next;
    bool readable = false;
    do
    :: atomic { !locked -> locked = true };
#ifndef BROKEN_DRAIN_LATE
        if
        :: readable -> evfd = 0                                         /* [forkpool.T5] */
        :: else -> skip
        fi;
#endif
        atomic {                                                        /* [forkpool.T1] */
            mnow = now;
            next = FOREVER;
            scan(0);
            scan(1);
#ifndef BROKEN_WAKE_AT_UNLOCKED
            wake_at = next
#endif
        };
        atomic { locked = false; asleep = true; poll_at = next };
#ifdef BROKEN_WAKE_AT_UNLOCKED
        wake_at = next;
#endif
#ifdef BROKEN_DRAIN_LATE
        evfd = 0;
#endif
end_poll:
        if                                                              /* [forkpool.T4] */
        :: atomic { evfd > 0 || now >= next -> readable = (evfd > 0); asleep = false }
        :: atomic { readable = (evfd > 0); asleep = false }             /* another fd */
        fi
    od
}

proctype clock() {
    do
    :: now < MAXT -> now++
    :: else -> break
    od
}

active proctype watch() {
end:
    do
    :: assert(!(asleep && evfd == 0 && owed == 0 && (OVERLOOKED(0) || OVERLOOKED(1))))
    od
}

init {
    atomic { run monitor(); run clock(); run submitter(0); run submitter(1) }
}

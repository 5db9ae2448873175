/* tests/models/coro_bridge_two.pml - the mailbox with two receiving coroutines, one of which
 * may time out (include/conc/coro_bridge.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * coro_bridge.pml has one receiver that parks until the wake, so it cannot reach the two
 * rules that matter once several coroutines receive: the posted wake [coro_bridge.M5] wakes
 * every linked waiter (each stays linked until its own receive runs and unlinks it), and a
 * receiver whose park ended without the wake (a timeout; a cancel is the same path) undoes
 * the arm only when it is the last one linked. Here both receivers are coroutines of one
 * scheduler thread: they, and the loop that runs the posted message, run one at a time (the
 * `cpu` token), and switch only where conc switches: at a park, and at a receive's end. Two
 * sender threads push one item each and notify [coro_bridge.M3, M4]. R0 wants one item and
 * may time out of one park; R1 wants both, or the one R0 left. When nothing can move, an
 * item still in the queue means a receiver sleeps on with nobody to wake it: the monitor
 * asserts the queue is empty then (R0 may sleep on with none: R1 took both and R0 was woken
 * as well as timed out, which conc reads as woken).
 *
 * // broken: BROKEN_DISARM_NOT_LAST  a timed-out receiver undoes the arm while the other is
 *                                    still parked: a sender then finds nobody armed
 * // broken: BROKEN_WAKE_FIRST_ONLY  the posted wake wakes only the first linked waiter
 */
// broken: BROKEN_DISARM_NOT_LAST
// broken: BROKEN_WAKE_FIRST_ONLY
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define IDLE 9
#define LOOP 8

byte queue = 0;      /* items in the conc_queue */
bool armed = false;  /* the atomic word */
bool posted = false; /* the wake message sits in the scheduler's inbox */
byte inflight = 0;   /* arms not yet undone (owner thread) */
byte got = 0;        /* items received, by both */
byte cpu = IDLE;     /* who runs on the scheduler's thread */
bool linked[2];      /* on the mailbox's waiter list */
bool woken[2];

inline take_cpu(me) { atomic { cpu == IDLE -> cpu = me } }
inline give_cpu() { cpu = IDLE }

/* conc__coro_bridge_mailbox_disarm: the swap decides against a sender's which posts */
inline disarm() { atomic { if :: armed -> armed = false; inflight-- :: else -> skip fi } }

proctype sender() {
    queue++;                                                        /* push, [coro_bridge.M3] */
    atomic { if :: armed -> armed = false; posted = true :: else -> skip fi } /* [.M4] */
}

proctype sched_loop() { /* runs the posted message: conc__coro_bridge_mailbox_wake [.M5] */
end_loop:
    do
    :: atomic { cpu == IDLE && posted -> cpu = LOOP; posted = false };
        inflight--;
#ifdef BROKEN_WAKE_FIRST_ONLY
        if
        :: linked[0] -> woken[0] = true
        :: else -> if :: linked[1] -> woken[1] = true :: else -> skip fi
        fi;
#else
        if :: linked[0] -> woken[0] = true :: else -> skip fi;
        if :: linked[1] -> woken[1] = true :: else -> skip fi;
#endif
        give_cpu()
    od
}

proctype receiver(byte me; bool may_time_out; byte want) {
    byte mine = 0;
    bool timed = false;
    take_cpu(me);
    do
    :: mine == want || (me == 1 && got == 2) -> break
    :: else ->
        if
        :: queue > 0 -> queue--; got++; mine++
        :: else ->
            if
            :: !armed && inflight == 0 ->           /* the first to sleep arms: [.M1], [.M2] */
                inflight++;
                armed = true;
                if
                :: queue > 0 ->                     /* the second look */
                    queue--; got++; mine++;
                    disarm();
                    goto next
                :: else -> skip
                fi
            :: else -> skip
            fi;
            linked[me] = true;
            woken[me] = false;
            give_cpu();
end_park:
            if
            :: woken[me] -> skip
            :: may_time_out && !timed -> timed = true
            fi;
            take_cpu(me);
            linked[me] = false;
            if
            :: timed && !woken[me] ->               /* conc_coro_park returned ETIMEDOUT */
#ifdef BROKEN_DISARM_NOT_LAST
                if :: inflight > 0 -> disarm() :: else -> skip fi;
#else
                if :: !linked[1 - me] && inflight > 0 -> disarm() :: else -> skip fi;
#endif
                break
            :: else -> skip
            fi
        fi;
next:   skip
    od;
    give_cpu()
}

proctype monitor() {
end_monitor:
    atomic { timeout -> assert(queue == 0) }
}

init {
    atomic {
        run sched_loop(); run sender(); run sender();
        run receiver(0, true, 1); run receiver(1, false, 2);
        run monitor()
    }
}

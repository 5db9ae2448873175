/* tests/models/coro_inbox.pml - conc_sched_spawn from other threads (include/conc/coro.h,
 * "Cross-thread spawn"), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Two threads each hand the scheduler two coroutines through the inbox: under the inbox
 * mutex (one atomic step here) they note whether the list was empty, append and raise the
 * pending hint [coro.I1], and the one that found it empty writes the eventfd [coro.I2]
 * (still under the mutex, so a scheduler that took the message and ended cannot close it
 * under the writer). The scheduler either drains on the pending hint (the busy loop; it may
 * also miss the hint, which is relaxed, so the model lets it go idle at any time), or sleeps
 * in epoll_wait until the eventfd counter is non-zero, reads it to zero [coro.I3] and drains
 * [coro.I5]. It stops once it has taken all four. A message left in the list while the
 * scheduler sleeps with the counter at zero is a lost wakeup: spin reports the scheduler
 * blocked as an invalid end state.
 *
 * // broken: BROKEN_DRAIN_FIRST   drain, then read the eventfd: a message appended between
 *                                 the two wrote the counter that the read then swallows
 * // broken: BROKEN_ALWAYS_SKIP   a thread writes the eventfd only for its first message,
 *                                 though a later one may again find the list empty
 */
// broken: BROKEN_DRAIN_FIRST
// broken: BROKEN_ALWAYS_SKIP

#define TOTAL 4

byte inbox = 0;     /* messages in the list (under the mutex) */
byte counter = 0;   /* the eventfd counter */
bool pending = false;
byte taken = 0;

proctype producer() {
    byte i = 0;
    bool was_empty;
    do
    :: i < 2 ->
        atomic {
            was_empty = (inbox == 0); inbox++; pending = true;          /* [coro.I1] */
#ifdef BROKEN_ALWAYS_SKIP
            if :: was_empty && i == 0 -> counter++ :: else -> skip fi
#else
            if :: was_empty -> counter++ :: else -> skip fi             /* [coro.I2] */
#endif
        };
        i++
    :: else -> break
    od
}

proctype scheduler() {
    do
    :: taken == TOTAL -> break
    :: else ->
        if
        :: pending ->                                   /* busy loop saw the hint */
            atomic { taken = taken + inbox; inbox = 0; pending = false }
        :: true ->                                      /* idle: epoll_wait on the eventfd */
            (counter > 0);
#ifdef BROKEN_DRAIN_FIRST
            atomic { taken = taken + inbox; inbox = 0; pending = false };
            counter = 0
#else
            counter = 0;                                                 /* [coro.I3] */
            atomic { taken = taken + inbox; inbox = 0; pending = false } /* [coro.I5] */
#endif
        fi
    od;
    assert(taken == TOTAL && inbox == 0)
}

init {
    atomic { run producer(); run producer(); run scheduler() }
}

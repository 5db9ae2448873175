/* tests/models/sem.pml - the conc_sem sleep/wake protocol (include/conc/sem.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {value, sleepers}; each CAS of sem.h is one atomic step. futex_wait(value 0) is
 * the kernel's atomic "compare and queue"; futex_wake(n) wakes up to n queued sleepers, any of
 * them. Three takers (one of which may time out once and retry) and two releasers (release(1)
 * twice; release(2) once) move exactly 4 tokens. A lost wakeup leaves a taker asleep with
 * tokens in the semaphore: spin reports it as an invalid end state. Checked: every taker
 * finishes, tokens are conserved, and no registration is left behind.
 *
 * // broken: BROKEN_SPLIT_RELEASE   release reads the sleeper count, then adds the tokens in a
 *                                   second step: a sleeper registering in between is missed
 * // broken: BROKEN_NO_RECHECK      futex_wait sleeps without the kernel's compare: a release
 *                                   between registering and sleeping is missed
 * // broken: BROKEN_WAKE_IF_EMPTY   release wakes only when the old value was 0 (instead of when
 *                                   sleepers are registered)
 */
// broken: BROKEN_SPLIT_RELEASE
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_WAKE_IF_EMPTY

#define TAKERS 3
#define TOKENS 4

byte value = 0;
byte sleepers = 0;
bool asleep[6];       /* queued on the futex, indexed by _pid */
byte taken = 0;
byte released = 0;

inline futex_wait() {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: value == 0 -> asleep[_pid] = true :: else -> skip fi }
#endif
    /* woken, or a timeout/EINTR/spurious return: the taker re-reads the word either way */
    if
    :: !asleep[_pid]
    :: atomic { asleep[_pid] && timeouts < 1 -> asleep[_pid] = false; timeouts++; timed_out = true }
    fi
}

inline futex_wake(count) {
    atomic {
        woke = 0;
        do
        :: woke < count && asleep[0] -> asleep[0] = false; woke++
        :: woke < count && asleep[1] -> asleep[1] = false; woke++
        :: woke < count && asleep[2] -> asleep[2] = false; woke++
        :: woke < count && asleep[3] -> asleep[3] = false; woke++
        :: woke < count && asleep[4] -> asleep[4] = false; woke++
        :: woke < count && asleep[5] -> asleep[5] = false; woke++
        :: else -> break
        od
    }
}

proctype taker(byte rounds) {
    byte timeouts = 0;
    bool timed_out;
    do
    :: rounds == 0 -> break
    :: rounds > 0 ->
        timed_out = false;
        /* fast path, or register: one CAS decides which */
        if
        :: atomic { value > 0 -> value--; goto got }
        :: atomic { value == 0 -> sleepers++ }
        fi;
        do
        :: atomic { value > 0 -> value--; sleepers--; break }   /* take + deregister */
        :: atomic { value == 0 && timed_out -> sleepers--; timed_out = false; goto retry }
        :: atomic { value == 0 && !timed_out -> skip };
           futex_wait()
        od;
got:
        atomic { taken++; rounds-- };
retry:
        skip
    od
}

proctype releaser(byte n; byte times) {
    byte old_sleepers, old_value, woke, wake_n;
    do
    :: times == 0 -> break
    :: times > 0 ->
#ifdef BROKEN_SPLIT_RELEASE
        old_sleepers = sleepers;
        atomic { value = value + n; released = released + n };
#else
        atomic { old_sleepers = sleepers; old_value = value; value = value + n; released = released + n };
#endif
#ifdef BROKEN_WAKE_IF_EMPTY
        if
        :: old_value == 0 -> futex_wake(n)
        :: else -> skip
        fi;
#else
        if
        :: old_sleepers > 0 ->
            wake_n = (n < old_sleepers -> n : old_sleepers);
            futex_wake(wake_n)
        :: else -> skip
        fi;
#endif
        times--
    od
}

init {
    atomic {
        run taker(2);
        run taker(1);
        run taker(1);
        run releaser(1, 2);
        run releaser(2, 1);
    }
    (_nr_pr == 1);
    assert(taken == TOKENS && released == TOKENS && value == 0 && sleepers == 0)
}

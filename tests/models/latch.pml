/* tests/models/latch.pml - the conc_latch protocol (include/conc/latch.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {count, WAITERS, generation}; every CAS of latch.h is one atomic step,
 * futex_wait(low half) the kernel's atomic "compare and queue" on {WAITERS, generation}. The
 * count starts at 2; two workers call done; an adder raises it by 1 right after the zero
 * (and nobody brings it down again). Two waiters start before any done; one has a deadline
 * that may come at any moment. The contract: a wait returns 0 if the count was zero at any
 * moment after it began, so the untimed waiter must finish even though the count is up again
 * before it runs. Checked: a waiter returns 0 only after a zero; every process finishes; the
 * count never goes below zero.
 *
 * // broken: BROKEN_NO_RECHECK     futex_wait sleeps without the kernel's compare
 * // broken: BROKEN_SPLIT_ZERO     the last done reads WAITERS, then zeroes in a second step
 * // broken: BROKEN_NO_GENERATION  a waiter returns only when it sees the count at zero: an add
 *                                  right after the zero strands it
 */
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_SPLIT_ZERO
// broken: BROKEN_NO_GENERATION
// pan-cc: -DSAFETY
// pan-run: -m1000000

byte count = 2;
bool waiters = false;
byte gen = 0;
byte zeros = 0;       /* ghost */
byte started = 0;     /* ghost */
bool asleep[6];

#define LOW (waiters + 2 * gen)
#ifdef BROKEN_NO_GENERATION
#define RELEASED (count == 0)
#else
#define RELEASED (count == 0 || gen != my_gen)
#endif

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: LOW == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    if
    :: !asleep[_pid]
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true }
    fi
}

proctype waiter(bool timed) {
    byte my_gen, my_zeros, seen;
    bool past = false;
    atomic { my_gen = gen; my_zeros = zeros; started++ };
    do
    :: atomic { RELEASED -> assert(zeros > my_zeros || count == 0); break }   /* 0 */
    :: atomic { !RELEASED && past -> break }                                   /* ETIMEDOUT */
    :: atomic { !RELEASED && timed && !past -> past = true }
    :: atomic { !RELEASED && !past && !waiters -> waiters = true }
    :: atomic { !RELEASED && !past && waiters -> seen = LOW };
       futex_wait(seen); seen = 0
    od
}

proctype worker() {
    bool had_waiters;
    (started == 2);
#ifdef BROKEN_SPLIT_ZERO
    had_waiters = waiters;
    atomic {
        assert(count > 0); count--;
        if :: count == 0 -> gen++; zeros++; waiters = false :: else -> had_waiters = false fi
    };
#else
    atomic {                                                    /* [latch.R1] the one CAS */
        assert(count > 0); count--;
        if :: count == 0 -> had_waiters = waiters; gen++; zeros++; waiters = false
           :: else -> had_waiters = false fi
    };
#endif
    if :: had_waiters -> d_step { asleep[0] = false; asleep[1] = false; asleep[2] = false;
                                  asleep[3] = false; asleep[4] = false; asleep[5] = false }
       :: else -> skip fi
}

proctype adder() {
    (zeros == 1);   /* right after the zero, racing the waiters' wakeups */
    count++
}

init {
    atomic { run waiter(false); run waiter(true); run worker(); run worker(); run adder() }
    (_nr_pr == 1)
}

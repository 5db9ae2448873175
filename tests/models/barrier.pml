/* tests/models/barrier.pml - the conc_barrier protocol (include/conc/barrier.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {arrived, BROKEN, WAITERS, generation}; every CAS of barrier.h is one atomic
 * step, futex_wait(high half) the kernel's atomic "compare and queue" on {generation,
 * BROKEN}. Two parties (barrier_three.pml: three) wait two rounds each (so one round's
 * waiter may still be on its way out while the next round starts); one has a deadline that
 * may come at any moment, and another thread may abort once. A thread that sees the barrier
 * broken stops. Checked:
 *   - a party released from generation g (0 or LEADER) saw every party of g arrive;
 *   - exactly one LEADER per completed generation;
 *   - no lost wakeup: every thread finishes (invalid end state otherwise);
 *   - a broken round's waiters all leave: at the end arrived is 0 if the barrier broke.
 *
 * // broken: BROKEN_NO_RECHECK          futex_wait sleeps without the kernel's compare
 * // broken: BROKEN_SPLIT_LEADER        the leader reads WAITERS, then releases in a second step:
 *                                       a waiter raising WAITERS in between is never woken
 * // broken: BROKEN_TIMEOUT_NO_BREAK    a party at its deadline leaves without breaking the
 *                                       barrier: the round can never complete, its waiter hangs
 * // broken: BROKEN_SLEEP_ON_COUNT      waiters sleep on {arrived, WAITERS} (barrier.h's first
 *                                       version): the next round can put the same value back
 */
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_SPLIT_LEADER
// broken: BROKEN_TIMEOUT_NO_BREAK
// broken: BROKEN_SLEEP_ON_COUNT
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#ifndef PARTIES /* barrier_three.pml: 3 */
#define PARTIES 2
#endif
#define ROUNDS 2
#define GENS 8

byte arrived = 0;
bool broken = false;
bool waiters = false;
byte gen = 0;
bool asleep[8];
byte arrivals[GENS];   /* ghost: arrivals counted in each generation */
byte leaders[GENS];    /* ghost */

#define LOW (arrived + 8 * waiters)
#define HIGH (gen + GENS * broken)
#ifdef BROKEN_SLEEP_ON_COUNT
#define SLEEP_WORD LOW
#else
#define SLEEP_WORD HIGH
#endif

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: SLEEP_WORD == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    if
    :: !asleep[_pid]
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true }
    fi
}

#ifdef BROKEN_WAKE_ONE
inline wake_all() { /* futex_wake(high, 1): one sleeper, any */
    atomic { if :: asleep[1] -> asleep[1] = false :: asleep[2] -> asleep[2] = false
                :: asleep[3] -> asleep[3] = false :: else -> skip fi }
}
#else
inline wake_all() {
    d_step { i = 0; do :: i < 8 -> asleep[i] = false; i++ :: else -> break od; i = 0 }
}
#endif

proctype party(byte rounds; bool timed) {
    byte my_gen, i;
    bool past = false, had_waiters, stop = false;
    int seen;
    do
    :: rounds == 0 || stop -> break
    :: rounds > 0 && !stop ->
        if
        :: atomic { broken -> stop = true }                             /* CONC_BARRIER_BROKEN */
        :: atomic { !broken && arrived + 1 == PARTIES ->         /* the leader [barrier.R1] */
                    my_gen = gen; arrivals[my_gen]++;
                    assert(arrivals[my_gen] == PARTIES);
                    leaders[my_gen]++; assert(leaders[my_gen] == 1);
#ifndef BROKEN_SPLIT_LEADER
                    had_waiters = waiters; arrived = 0; waiters = false; gen++
#else
                    had_waiters = waiters
#endif
           };
#ifdef BROKEN_SPLIT_LEADER
           atomic { arrived = 0; waiters = false; gen++ };
#endif
           if :: had_waiters -> wake_all() :: else -> skip fi;
           had_waiters = false
        :: atomic { !broken && arrived + 1 < PARTIES ->                 /* [barrier.A1] */
                    my_gen = gen; arrivals[my_gen]++; arrived++ };
           do
           :: atomic { gen != my_gen -> assert(arrivals[my_gen] == PARTIES); break }  /* released */
           :: atomic { gen == my_gen && broken -> arrived-- };    /* leave_broken: no wake */
              stop = true; break
           :: atomic { gen == my_gen && !broken && past ->
#ifndef BROKEN_TIMEOUT_NO_BREAK
                       broken = true;
#endif
                       arrived--;
                       had_waiters = waiters };           /* WAITERS stays, for reset to clear */
              if :: had_waiters -> wake_all() :: else -> skip fi;
              stop = true; break                                         /* ETIMEDOUT */
           :: atomic { gen == my_gen && !broken && timed && !past -> past = true }
           :: atomic { gen == my_gen && !broken && !past && !waiters -> waiters = true }
           :: atomic { gen == my_gen && !broken && !past && waiters -> seen = SLEEP_WORD };
              futex_wait(seen); seen = 0
           od
        fi;
        rounds--
    od
}

proctype aborter() {
    bool had_waiters;
    byte i;
    atomic { had_waiters = (waiters && !broken); broken = true };
    if :: had_waiters -> wake_all() :: else -> skip fi
}

init {
    atomic {
        run party(ROUNDS, false);
        run party(ROUNDS, true);
#if PARTIES == 3
        run party(ROUNDS, false);
#endif
        if :: true -> run aborter() :: true -> skip fi
    }
    (_nr_pr == 1);
    assert(!broken || arrived == 0)
}

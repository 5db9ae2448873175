/* tests/models/event.pml - the conc_event sleep/wake protocol (include/conc/event.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {SET, WAITERS, generation}; each CAS of event.h is one atomic step, and
 * futex_wait(word) is the kernel's atomic "compare and queue". Three waiters start (their
 * first look at the word); only then do the setters act, so each set comes after every wait
 * began. A waiter's futex_wait may return spuriously (EINTR) once; the first waiter
 * has a deadline, which may come at any moment (then ETIMEDOUT is allowed), the other two
 * wait forever and so must be released. The setter pulses
 * (set, then clear at once) and a clearer clears at any moment; there is no final set. The
 * contract says a wait that began before a set returns 0 even if a clear follows, so every
 * waiter must finish: a waiter left asleep is a lost wakeup, reported as an invalid end state.
 * A second setter sets once more concurrently, so two sets can race the WAITERS bit.
 * Each waiter also asserts that it returns only after a set that came after its first look.
 *
 * // broken: BROKEN_NO_GENERATION  a waiter returns only when it sees SET (no generation): a
 *                                  clear right after the set strands it
 * // broken: BROKEN_SPLIT_SET      set decides whether to wake from a load, then stores SET in a
 *                                  second step: a waiter raising WAITERS in between is missed
 * // broken: BROKEN_NO_RECHECK     futex_wait sleeps without the kernel's compare: a set
 *                                  between raising WAITERS and sleeping is missed
 */
// broken: BROKEN_NO_GENERATION
// broken: BROKEN_SPLIT_SET
// broken: BROKEN_NO_RECHECK

#define WAITERS_N 3

bool set = false;
bool waiters = false;
byte gen = 0;
byte sets = 0;        /* ghost: how many sets have happened */
byte started = 0;     /* ghost: waits that have begun */
bool asleep[6];

#define WORD (set + 2 * waiters + 4 * gen)

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: WORD == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    if
    :: !asleep[_pid]                                                   /* woken */
    :: atomic { asleep[_pid] && !spurious -> asleep[_pid] = false; spurious = true } /* EINTR */
    :: atomic { asleep[_pid] && timed -> asleep[_pid] = false; timed_out = true } /* deadline */
    fi
}

inline wake_all() {
    atomic {
        asleep[0] = false; asleep[1] = false; asleep[2] = false;
        asleep[3] = false; asleep[4] = false; asleep[5] = false
    }
}

#ifdef BROKEN_NO_GENERATION
#define FIRED (set)
#else
#define FIRED (set || gen != my_gen)
#endif

proctype waiter(bool timed) {
    byte my_gen, my_sets, seen;
    bool timed_out = false, spurious = false;
    atomic { my_gen = gen; my_sets = sets; started++ };   /* the wait begins */
    do
    :: atomic { FIRED -> assert(sets > my_sets || set); break }   /* returns 0 */
    :: atomic { !FIRED && timed_out -> break }                     /* returns ETIMEDOUT */
    :: atomic { !FIRED && !timed_out && !waiters -> waiters = true }
    :: atomic { !FIRED && !timed_out && waiters -> seen = WORD };
       futex_wait(seen)
    od
}

inline do_set() {
#ifdef BROKEN_SPLIT_SET
    had_waiters = waiters;
    atomic {
        if :: !set -> gen++; sets++ :: else -> skip fi;
        set = true; waiters = false
    };
#else
    atomic {
        had_waiters = waiters;
        if :: !set -> gen++; sets++ :: else -> skip fi;
        set = true; waiters = false
    };
#endif
    if :: had_waiters -> wake_all() :: else -> skip fi
}

proctype setter() {
    bool had_waiters;
    (started == WAITERS_N);
    do_set();
    set = false    /* the pulse: clear at once */
}

proctype second_setter() {
    bool had_waiters;
    (started == WAITERS_N);
    do_set()
}

proctype clearer() {
    set = false
}

init {
    atomic {
        run waiter(true); run waiter(false); run waiter(false);
        run setter(); run second_setter(); run clearer()
    }
}

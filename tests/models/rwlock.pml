/* tests/models/rwlock.pml - the conc_rwlock phase-fair protocol (include/conc/rwlock.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {inside, queued, WRITER, WRITER_SLEEPS, READERS_SLEEP, phase}; each RMW of
 * rwlock.h is one atomic step (the readers' fetch_add/fetch_sub, every CAS, the writer's
 * fetch_or, the fetch_and that retires WRITER_SLEEPS). futex_wait(low half) is the kernel's
 * atomic "compare and queue" on {inside, WRITER, the sleep bits, phase}; readers and writers
 * sleep with different tags, and a wake for one tag wakes only those. The writers' inner lock
 * is conc_lock (tests/models/lock.pml), here one atomic test-and-set.
 *
 * Two readers (one has a deadline that may come at any moment) and two
 * writers (one has a deadline while it waits for readers to leave; the other may downgrade).
 * Checked:
 *   - exclusion: no reader inside its critical section together with a writer, at most one
 *     writer;
 *   - no lost wakeup: every process finishes (a sleeper left asleep is an invalid end state);
 *   - phase fairness: when a writer enters, no reader is still waiting whose phase has ended
 *     (a reader waits for one writer's phase at most; it is never overtaken by a second
 *     writer);
 *   - writer preference: a reader whose fetch_add saw WRITER does not enter until that
 *     phase ended;
 *   - at the end the word is back to {0, 0, no bits}.
 *
 * // broken: BROKEN_NO_PHASE        a queued reader is admitted only by seeing WRITER clear: the
 *                                   next writer raises it first and waits for the admitted
 *                                   reader forever
 * // broken: BROKEN_READER_BARGES   the reader fast path ignores WRITER (reader preference):
 *                                   a reader enters beside the writer
 * // broken: BROKEN_SPLIT_RELEASE   release_shared reads WRITER_SLEEPS, then decrements in a
 *                                   second step: the writer raising it in between is never woken
 * // broken: BROKEN_NO_RECHECK      futex_wait sleeps without the kernel's compare
 * // broken: BROKEN_TIMEOUT_CLEARS  a writer at its deadline only clears WRITER, admitting the
 *                                   queued readers without counting them inside
 */
// broken: BROKEN_NO_PHASE
// broken: BROKEN_READER_BARGES
// broken: BROKEN_SPLIT_RELEASE
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_TIMEOUT_CLEARS
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m2000000

#define PHASES 4

byte inside = 0;        /* readers inside, or admitted and on their way */
byte queued = 0;        /* readers queued behind WRITER */
bool writer = false;
bool wsleeps = false;
bool rsleep = false;
byte phase = 0;
bool wl = false;        /* the writers' inner lock */
bool asleep[8];
bool is_writer[8];      /* futex tag */
byte cs_readers = 0;    /* ghost: readers in their critical sections */
bool cs_writer = false; /* ghost */
bool pending[8];        /* ghost: queued reader, not yet inside its critical section */
byte rphase[8];         /* ghost: the phase it queued in */

#define LOW (inside + 8 * writer + 16 * wsleeps + 32 * rsleep + 64 * phase)
#ifdef BROKEN_NO_PHASE
#define ADMITTED (!writer)
#else
#define ADMITTED (!writer || phase != p)
#endif

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: LOW == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    if
    :: !asleep[_pid]                                                       /* woken */
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true } /* deadline */
    fi
}

inline wake_readers() {
    d_step {
        i = 0;
        do
        :: i < 8 -> if :: !is_writer[i] -> asleep[i] = false :: else -> skip fi; i++
        :: else -> break
        od;
        i = 0
    }
}

inline wake_writer() {
    /* fetch_and: WRITER_SLEEPS off; wake one writer if it was up */
    atomic { old_ws = wsleeps; wsleeps = false };
    if
    :: old_ws ->
        d_step {
            i = 0;
            do
            :: i < 8 && is_writer[i] && asleep[i] -> asleep[i] = false; break
            :: i < 8 && !(is_writer[i] && asleep[i]) -> i++
            :: i == 8 -> break
            od;
            i = 0; old_ws = false
        }
    :: else -> skip
    fi
}

inline release_shared() {
    atomic { cs_readers-- };
#ifdef BROKEN_SPLIT_RELEASE
    old_ws = wsleeps;
    atomic { old_in = inside; inside-- };
#else
    atomic { old_in = inside; old_ws = wsleeps; inside-- };             /* [rwlock.R1] fetch_sub */
#endif
    if :: old_in == 1 && old_ws -> wake_writer() :: else -> skip fi;
    old_in = 0; old_ws = false
}

inline end_phase(extra) {
    atomic {
#ifdef BROKEN_TIMEOUT_CLEARS
        if
        :: timed && past -> had_rsleep = rsleep; writer = false; rsleep = false; wsleeps = false
        :: else ->
#endif
        had_rsleep = rsleep;
        inside = inside + queued + extra; queued = 0;
        writer = false; wsleeps = false; rsleep = false;
        phase = (phase + 1) % PHASES
#ifdef BROKEN_TIMEOUT_CLEARS
        fi
#endif
    };
    wl = false;
    if :: had_rsleep -> wake_readers() :: else -> skip fi;
    had_rsleep = false
}

proctype reader(byte rounds; bool timed) {
    bool saw_writer, past, last, old_ws;
    byte p, old_in, i;
    int seen;
    do
    :: rounds == 0 -> break
    :: rounds > 0 ->
        past = false;
        atomic { saw_writer = writer; p = phase; inside++ };      /* [rwlock.A1] fetch_add */
#ifdef BROKEN_READER_BARGES
        saw_writer = false;
#endif
        if
        :: !saw_writer -> goto enter
        :: else -> skip
        fi;
        /* queue, unless the phase ended already */
        if
        :: atomic { ADMITTED -> goto enter }
        :: atomic { !ADMITTED -> inside--; queued++; last = (inside == 0 && wsleeps);
                    pending[_pid] = true; rphase[_pid] = p }
        fi;
        if :: last -> wake_writer() :: else -> skip fi;
        do
        :: atomic { ADMITTED -> goto enter }                                /* [rwlock.A3] */
        :: atomic { !ADMITTED && past ->                                 /* ETIMEDOUT */
                    queued--; pending[_pid] = false; goto next }
        :: atomic { !ADMITTED && timed && !past -> past = true }           /* the deadline comes */
        :: atomic { !ADMITTED && !past && !rsleep -> rsleep = true }
        :: atomic { !ADMITTED && !past && rsleep -> seen = LOW };
           futex_wait(seen); seen = 0
        od;
enter:
        atomic {
            assert(!cs_writer);
            assert(!saw_writer || phase != p);  /* waited for the writer it saw */
            cs_readers++; pending[_pid] = false
        };
        release_shared();
next:
        rounds--
    od
}

proctype writer_proc(bool timed; bool may_downgrade) {
    bool past = false, had_rsleep, old_ws;
    byte i, old_in;
    int seen;
    is_writer[_pid] = true;
    atomic { !wl -> wl = true };                                            /* inner lock */
    atomic { writer = true };                                     /* [rwlock.A2] fetch_or */
    do
    :: atomic { inside == 0 -> break }                                      /* [rwlock.A2] */
    :: atomic { inside != 0 && past -> skip };                              /* ETIMEDOUT */
       end_phase(0);
       goto done
    :: atomic { inside != 0 && timed && !past -> past = true }
    :: atomic { inside != 0 && !past && !wsleeps -> wsleeps = true }
    :: atomic { inside != 0 && !past && wsleeps -> seen = LOW };
       futex_wait(seen); seen = 0
    od;
    atomic {
        assert(cs_readers == 0 && !cs_writer);
        i = 0;
        do   /* phase fairness: nobody admitted is overtaken */
        :: i < 8 -> assert(!(pending[i] && rphase[i] != phase)); i++
        :: else -> break
        od;
        cs_writer = true
    };
    if
    :: may_downgrade ->
        atomic { cs_writer = false; cs_readers++ };   /* keeps reading: counted by extra */
        end_phase(1);
        release_shared()
    :: true ->
        cs_writer = false;
        end_phase(0)
    fi;
done:
    skip
}

init {
    atomic {
        run reader(1, false);
        run reader(1, true);
        run writer_proc(false, true);
        run writer_proc(true, false);
    }
    (_nr_pr == 1);
    assert(inside == 0 && queued == 0 && !writer && !wsleeps && !wl && cs_readers == 0)
}

/* tests/models/lock.pml - the conc_lock protocol (include/conc/lock.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * Modelled as lock.h does it:
 *   - the word: HELD, HANDOFF, STARVING and the exact sleeper count (SHARED is left out: it
 *     only picks the futex flavour);
 *   - acquire, try_acquire and acquire_until: the inline fast CAS, the slow path's take-if-free
 *     or register CAS, the sleep loop (claim, timeout deregistration, STARVING);
 *   - futex_wait(word, seen): atomically "if word == seen, sleep"; the sleeper returns when
 *     woken, on a spurious wakeup or EINTR (a small global budget), or, for acquire_until only,
 *     on timeout at any sleep (and before any sleep: a deadline already past);
 *   - futex_wake(1): wakes one sleeper, chosen nondeterministically (the kernel's FIFO order is
 *     not relied on for safety), or nobody if nobody sleeps;
 *   - release: free the lock, or keep HELD and set HANDOFF when STARVING, then wake one.
 *   N = 3 processes run ROUNDS = 2 rounds each, each round choosing acquire, try_acquire or
 *   acquire_until.
 *
 * One reduction keeps this small: a CAS loop whose decisions depend only on the value it read
 * is one atomic step here. A failed CAS changes nothing but the caller's copy of the word, and
 * the retry decides afresh from the value the CAS returned, so the loop behaves as a single
 * read-modify-write at the moment its successful CAS (or its give-up read) happened. This
 * also covers the bounded spin, which only reads and takes the lock when it is free: the
 * take-if-free step below at a later moment. What the reduction may not merge stays
 * separate: the value a sleeper passes to futex_wait is read in one step and compared by the
 * kernel in a later one, and a release frees the lock in one step and wakes in another.
 *
 * Checked (pan -DSAFETY):
 *   - mutual exclusion: inside == 1 whenever a process enters, and the word then says HELD
 *     with no pending HANDOFF;
 *   - a release never finds the lock free or handed off (lock.h would abort);
 *   - no lost wakeup and no stranded HANDOFF: every process finishes its rounds (a sleeper
 *     left behind is an invalid end state). Plain acquires cannot time out and spurious
 *     wakeups are budgeted, so a missed wake really strands someone;
 *   - afterwards the word is 0 again: no sleeper count, STARVING or HANDOFF leaks.
 *
 * Status: lock.h as of f710d39 ("handoff goes to a sleeper that was waiting", may_claim_handoff)
 * FAILS here: a stranded HANDOFF (invalid end state, 2 processes, ~80 steps). A sleeper that
 * registered on a word holding a HANDOFF (may_claim false) sleeps on that word; the lock is
 * claimed, handed off again to this very sleeper (it is counted now, but not yet queued, so
 * the wake finds nobody), and the claimer re-registers as a newcomer: the word is back to the
 * exact value the sleeper registered (ABA), so its futex_wait sleeps, and so does the
 * newcomer's. With may_claim true at registration (the protocol before f710d39) the model
 * verifies (about 1.5 million states, errors: 0).
 *
 * Run: bash tests/run.sh models /tmp/m.log, or by hand:
 *   spin -a lock.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -m1000000 | grep errors
 * Spin is sequentially consistent: memory ordering is TSan's job (tests/test_lock.c).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_WAKE release frees the lock for its sleepers but forgets to wake one
// broken: WAKE_BEFORE_FREE release wakes before the CAS that frees: the woken sleeper re-sleeps
// broken: TIMEOUT_SKIPS_HANDOFF a timed-out sleeper deregisters without claiming a pending HANDOFF
// broken: HANDOFF_DROPS_HELD a handoff release clears HELD: a newcomer barges past the claimer
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define N 3 /* processes: futex_wake_one names each one */
#define ROUNDS 2

#define HELD 1
#define HANDOFF 2
#define STARVING 4
#define SLEEPER 8
#define SLEEPERS 120 /* bits 3..6: room for 15 sleepers; N is 3 */

#define ACQUIRE 0
#define TRY 1
#define UNTIL 2

#define ETIMEDOUT 1

byte word;         /* the lock word */
bool sleeping[N];  /* queued on the word in the kernel */
byte inside;       /* processes between a successful acquire and their release */
byte spurious = 1; /* spurious wakeups (or EINTR) left to hand out */
hidden byte nv;    /* scratch inside one atomic step */

/* A process got the lock: nobody else may be inside, and the word must say so. */
#define ENTER                                                                                   \
    inside++;                                                                                   \
    assert(inside == 1 && (word & HELD) != 0 && (word & HANDOFF) == 0)

/* conc__lock_claimable(x, may_claim) */
#define CLAIMABLE(x) (((x) & HELD) == 0 || (((x) & HANDOFF) != 0 && may_claim))

/* The end of a round: forget its locals, so equal global states compare equal. */
#define NEXT_ROUND                                                                              \
    round++;                                                                                    \
    mode = 0;                                                                                   \
    v = 0;                                                                                      \
    r = 0;                                                                                      \
    starving = false;                                                                           \
    may_claim = false

inline futex_wake_one() {
    if
    :: sleeping[0] -> sleeping[0] = false
    :: sleeping[1] -> sleeping[1] = false
    :: sleeping[2] -> sleeping[2] = false
    :: else -> skip
    fi
}

/* conc__lock_claimed(v, starving) into nv */
inline claimed() {
    if
    :: (v & HANDOFF) == 0 -> nv = (v | HELD) - SLEEPER
    :: else ->
        nv = (v & ~HANDOFF) - SLEEPER;
        if
        :: !starving || (nv & SLEEPERS) == 0 -> nv = nv & ~STARVING
        :: else -> skip
        fi
    fi
}

/* The timed-out sleeper's way out when the lock is held by someone else: deregister; the
 * last sleeper out ends handoff mode. */
inline deregister() {
    assert((v & SLEEPERS) != 0);
    nv = v - SLEEPER;
    if
    :: (nv & SLEEPERS) == 0 -> nv = nv & ~STARVING
    :: else -> skip
    fi;
    word = nv
}

proctype P(byte me) {
    byte round, mode, v, r;
    bool starving, may_claim;

next:
    atomic {
        if
        :: round == ROUNDS -> goto finished
        :: else -> skip
        fi;
        if
        :: mode = ACQUIRE
        :: mode = TRY
        :: mode = UNTIL
        fi;
        /* The fast CAS 0 -> HELD [A1], try's slow path, the spin and the register loop all
         * take the lock if HELD is clear; otherwise try gives up, acquire_until may find its
         * deadline passed, and the rest register as a sleeper. */
        if
        :: (word & HELD) == 0 -> word = word | HELD; ENTER; goto critical
        :: else -> skip
        fi;
        if
        :: mode == TRY -> NEXT_ROUND; goto next                   /* EBUSY */
        :: mode == UNTIL -> NEXT_ROUND; goto next                 /* ETIMEDOUT */
        :: mode != TRY ->                                         /* registered */
            may_claim = ((word & HANDOFF) == 0); /* a pending HANDOFF is not for us */
            word = word + SLEEPER;
            v = word
        fi
    };
    /* The first pass of the sleep loop works on v, the word as we registered it (HELD): it
     * may claim a HANDOFF in it only if may_claim (a failed CAS sends it to a normal pass);
     * r is 0 and the clock has only just been read (not starving yet), so otherwise it goes
     * straight to futex_wait(v). */
    atomic {
        if
        :: CLAIMABLE(v) && word == v -> claimed(); word = nv; ENTER; goto critical /* [A2] */
        :: CLAIMABLE(v) && word != v -> goto sleep_loop
        :: else -> skip
        fi
    };
    goto futex_wait;

    /* The later passes. Each reads the word (lock.h reuses the value its last load or failed
     * CAS returned: the word as it was a moment earlier, a case of reading now) and acts on it
     * in one step; its CAS is that step's write. */
sleep_loop:
    if
    :: atomic { mode == UNTIL && sleeping[me] -> sleeping[me] = false; r = ETIMEDOUT; goto sleep_loop }
    :: atomic { spurious > 0 && sleeping[me] -> spurious--; sleeping[me] = false; goto sleep_loop }
    :: atomic {
        !sleeping[me] -> /* woken, or not asleep: run a pass */
        v = word;
#ifdef TIMEOUT_SKIPS_HANDOFF
        if
        :: r == ETIMEDOUT -> deregister(); NEXT_ROUND; goto next
        :: else -> skip
        fi;
#endif
        if
        :: CLAIMABLE(v) -> claimed(); word = nv; ENTER; goto critical /* [A2] */
        :: else -> skip
        fi;
        if
        :: r == ETIMEDOUT -> deregister(); NEXT_ROUND; goto next
        :: else -> skip
        fi;
        if
        :: !starving -> starving = true /* waited CONC_LOCK_FAIR_NS by now */
        :: true -> skip
        fi;
        if
        :: starving && (v & STARVING) == 0 -> word = v | STARVING; v = 0; goto sleep_loop
        :: else -> skip
        fi
       }
    fi;
futex_wait:
    /* r = conc_futex_wait(&word, v, deadline): compare and queue in one step; then lock.h
     * sets may_claim_handoff (after any return) and reloads v (the next pass reads). */
    atomic {
        if
        :: mode == UNTIL -> r = ETIMEDOUT /* deadline already past: no syscall */
        :: word == v -> sleeping[me] = true
        :: else -> skip                    /* EAGAIN */
        fi;
        may_claim = true;
        v = 0
    };
    goto sleep_loop;

critical:
    /* conc_lock_release: the fast CAS HELD -> 0 [R1], else the slow path's CAS loop [R2] */
    atomic {
        inside--;
        v = word;
#ifdef WAKE_BEFORE_FREE
        if
        :: (v & SLEEPERS) != 0 -> futex_wake_one()
        :: else -> skip
        fi
    };
    atomic {
        v = word;
#endif
        assert((v & HELD) != 0 && (v & HANDOFF) == 0); /* "the lock is not held" */
        if
        :: (v & SLEEPERS) == 0 -> word = 0
#ifdef HANDOFF_DROPS_HELD
        :: else -> if
                   :: (v & STARVING) != 0 -> word = (v | HANDOFF) & ~HELD
                   :: else -> word = v & ~HELD
                   fi
#else
        :: else -> if
                   :: (v & STARVING) != 0 -> word = v | HANDOFF
                   :: else -> word = v & ~HELD
                   fi
#endif
        fi;
#if defined(NO_WAKE) || defined(WAKE_BEFORE_FREE)
        NEXT_ROUND; goto next
#else
        if
        :: (v & SLEEPERS) == 0 -> NEXT_ROUND; goto next
        :: else -> v = 0
        fi
#endif
    };
    atomic {
        futex_wake_one();
        NEXT_ROUND;
        goto next
    };

finished:
    skip
}

init {
    atomic { run P(0); run P(1); run P(2) };
    (_nr_pr == 1); /* every process finished its rounds: nobody is stranded asleep */
    assert(word == 0 && !sleeping[0] && !sleeping[1] && !sleeping[2])
}

/* tests/models/cond.pml - the conc_cond protocol (include/conc/cond.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as cond.h does it:
 *   - the two words: seq (the futex word) and state (waiter count, SLEEPING);
 *   - wait: register and read seq while holding the lock, release the lock, spin on seq (any
 *     number of polls, possibly none), set SLEEPING, re-read seq, futex_wait(seq, seen);
 *     leave (deregister; the last waiter out clears SLEEPING); re-acquire the lock;
 *   - futex_wait(seq, seen): atomically "if seq == seen, sleep"; it returns when woken, on a
 *     spurious wakeup (EINTR, a small global budget: the wait then sleeps again), or, for
 *     timed waits, on timeout at any sleep or before it (a deadline already past);
 *   - futex_wake(1): wakes one sleeper chosen nondeterministically (the kernel's FIFO order
 *     is not relied on), or nobody; futex_wake(all) wakes every sleeper;
 *   - notify / notify_all: a load of the waiter count (none: return), seq + 1, then a wake
 *     only if SLEEPING; issued with the lock held or just after releasing it (both are legal);
 *   - the lock itself is an ideal blocking mutex (tests/models/lock.pml checks the real one).
 *
 * The workload is the one users write: a producer puts ITEMS items under the lock and
 * notifies once per item; CONSUMERS consumers each take ITEMS/CONSUMERS items, waiting in a
 * loop on "count > 0" (each wait plain or timed, chosen nondeterministically). Then the
 * producer closes a gate (done = 1) and calls notify_all once; every consumer waits in a loop
 * on done. A lost wakeup leaves a consumer asleep forever: an invalid end state.
 *
 * Checked (pan -DSAFETY): every process finishes (no lost wakeup, plain waits cannot time
 * out, spurious wakeups are budgeted, so a missed wake really strands someone); items are
 * conserved (count never negative, 0 at the end); afterwards no waiter is counted and SLEEPING
 * is clear. Spin is sequentially consistent: the seq_cst pairs [cond.S1]-[cond.S4] are what
 * make the hardware behave like that; TSan builds of tests/test_cond.c check the ordering.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: SEQ_AFTER_RELEASE the waiter reads seq after releasing the lock (a notify in
//         between is missed)
// broken: REGISTER_AFTER_RELEASE the waiter counts itself after releasing the lock (notify
//         skips it)
// broken: LEAVE_CLEARS_SLEEPING every leaving waiter clears SLEEPING, not only the last one
// broken: WAKE_WITHOUT_BUMP notify wakes sleepers but does not move seq (a waiter about to
//         sleep sleeps)
// broken: NOTIFY_ALL_WAKES_ONE notify_all wakes a single sleeper
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define CONSUMERS 2
#define ITEMS 2

#define SLEEPING 128 /* state: bit 7; bits 0..6 the waiter count */
#define WAITERS 127

#define EAGAIN 1
#define ETIMEDOUT 2
#define EINTR 3

byte seq;                 /* the futex word */
byte state;               /* waiters + SLEEPING */
bool sleeping[CONSUMERS]; /* queued in the kernel's futex queue of seq */
bool lk;                  /* the lock: an ideal mutex */
byte count;               /* the predicate's data, guarded by lk */
bool done;                /* the gate, guarded by lk */
byte spurious = 1;        /* spurious wakeups (EINTR) left to hand out */

inline lock_acquire() {
    atomic { !lk -> lk = true }
}

inline lock_release() {
    assert(lk);
    lk = false
}

inline futex_wake(all) {
    atomic {
        if
        :: all ->
            sleeping[0] = false;
            sleeping[1] = false
        :: else ->
            if
            :: sleeping[0] -> sleeping[0] = false
            :: sleeping[1] -> sleeping[1] = false
            :: else -> skip
            fi
        fi
    }
}

/* conc__cond_notify_slow behind the fast-path check */
inline notify(all) {
    if
    :: (state & WAITERS) != 0 ->
#ifndef WAKE_WITHOUT_BUMP
        seq++; /* [cond.S1] */
#endif
        if
        :: (state & SLEEPING) != 0 -> /* [cond.S4] */
#ifdef NOTIFY_ALL_WAKES_ONE
            futex_wake(false)
#else
            futex_wake(all)
#endif
        :: else -> skip
        fi
    :: else -> skip /* nobody waits: no RMW, no syscall */
    fi
}

/* conc__cond_leave */
inline leave() {
    atomic {
        state--;
#ifdef LEAVE_CLEARS_SLEEPING
        state = state & ~SLEEPING
#else
        if
        :: (state & WAITERS) == 0 -> state = state & ~SLEEPING
        :: else -> skip
        fi
#endif
    }
}

/* conc_cond_wait_until(c, lock, timed ? some deadline : CONC_FOREVER); r = 0 or ETIMEDOUT */
inline wait() {
    if :: timed = true :: timed = false fi;
#ifndef REGISTER_AFTER_RELEASE
    state++;
#endif
#ifndef SEQ_AFTER_RELEASE
    seen = seq;
#endif
    lock_release();
#ifdef REGISTER_AFTER_RELEASE
    state++;
#endif
#ifdef SEQ_AFTER_RELEASE
    seen = seq;
#endif
    /* the spin: any number of polls, maybe none (one CPU, bound reached) */
    do
    :: seq != seen -> r = 0; goto woken
    :: true -> break
    od;
    state = state | SLEEPING; /* [cond.S2] */
    do
    :: seq != seen -> r = 0; break /* [cond.S3] */
    :: else ->
        if
        :: timed -> r = ETIMEDOUT /* deadline already past: no syscall */
        :: true ->
            atomic {
                if
                :: seq == seen -> sleeping[me] = true; r = 0
                :: else -> r = EAGAIN
                fi
            };
            if
            :: r == 0 ->
                if
                :: !sleeping[me] -> skip /* woken by futex_wake */
                :: atomic { timed && sleeping[me] -> sleeping[me] = false; r = ETIMEDOUT }
                :: atomic { spurious > 0 && sleeping[me] -> spurious--; sleeping[me] = false; r = EINTR }
                fi
            :: else -> skip
            fi
        fi;
        if
        :: r == 0 -> break
        :: r == ETIMEDOUT ->
            if :: seq != seen -> r = 0 :: else -> skip fi;
            break
        :: else -> skip /* EAGAIN, EINTR: round again */
        fi
    od;
woken:
    leave();
    lock_acquire();
    /* forget this wait's locals: fewer distinct states */
    atomic { seen = 0; timed = false; r = 0 }
}

proctype Consumer(byte me) {
    byte seen, r, got;
    bool timed;
    do
    :: got == ITEMS / CONSUMERS -> break
    :: else ->
        lock_acquire();
        do
        :: count > 0 -> break
        :: else -> wait()
        od;
        count--;
        got++;
        lock_release()
    od;
    lock_acquire();
    do
    :: done -> break
    :: else -> wait()
    od;
    lock_release()
}

proctype Producer() {
    byte made;
    bool inside;
    do
    :: made == ITEMS -> break
    :: else ->
        lock_acquire();
        count++;
        made++;
        if
        :: inside = true; notify(false); lock_release()
        :: inside = false; lock_release(); notify(false)
        fi
    od;
    lock_acquire();
    done = true;
    if
    :: notify(true); lock_release()
    :: lock_release(); notify(true)
    fi
}

init {
    atomic { run Consumer(0); run Consumer(1); run Producer() };
    (_nr_pr == 1); /* every process finished: nobody is stranded asleep */
    assert(count == 0 && state == 0 && !lk && !sleeping[0] && !sleeping[1])
}

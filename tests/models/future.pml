/* tests/models/future.pml - a future's completion against wait, cancel and on_done
 * (include/conc/future.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as future.h does it:
 *   - the state word: a state field (PENDING, RUNNING, COMPLETING, DONE, FAILED, CANCELLED)
 *     and two flags, WAITERS and CALLBACKS; each CAS or swap is one atomic step;
 *   - settle (complete, cancel, and the worker finishing its task): CAS the state from an
 *     allowed one to COMPLETING (exactly one winner), write the outcome (plain), swap to the
 *     final state; if the swap returned WAITERS, futex_wake(all); if it returned CALLBACKS,
 *     take the callback lock and run every linked callback;
 *   - the worker: CAS PENDING -> RUNNING (the gate cancel races with), then settle from RUNNING;
 *   - wait: read the word; final: done (it asserts the outcome is written); else set WAITERS
 *     with a CAS (retry if the word moved), futex_wait(word, seen) = atomically "sleep if
 *     the word still equals seen", with one spurious wakeup allowed;
 *   - on_done: under the callback lock, read the word: final -> run the callback itself;
 *     else CAS CALLBACKS in (retry if the word moved) and link the callback.
 *
 * Processes: a worker that starts and finishes the task, a canceller, a second completer
 * (conc_future_complete on the same future: at most one of the three wins), WAITERS_N
 * waiters (1 by default; -DWAITERS_N=2 also verifies but needs 5 GB) and one callback
 * registrant. Checked (pan -DSAFETY): every process ends (a lost wakeup leaves a
 * waiter asleep: an invalid end state); exactly one settle wins; the task ran iff the worker
 * won the gate, and never both ran and was cancelled; the callback ran exactly once; every
 * waiter saw the written outcome.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: SPLIT_SWAP the completer reads the flags, then stores the final state (a WAITERS set in between is lost)
// broken: NO_RECHECK futex_wait sleeps without the kernel's compare (a completion before the sleep is missed)
// broken: LINK_WITHOUT_FLAG on_done links its node without setting CALLBACKS (the completer never looks)
// broken: CANCEL_WHILE_RUNNING cancel is allowed from RUNNING too (a task runs and is cancelled)
// pan-cc: -DSAFETY
// pan-run: -m1000000

#ifndef WAITERS_N
#define WAITERS_N 1 /* 2 also verifies (about 70 M states, 5 GB, 200 s): too slow for make test */
#endif

#define PENDING 0
#define RUNNING 1
#define COMPLETING 2
#define DONE 3
#define FAILED 4
#define CANCELLED 5
#define STATE 7
#define WAITERS 8
#define CALLBACKS 16

byte word = PENDING;
bool outcome_written = false;
byte winners = 0;
bool task_ran = false;
bool cancelled = false;

bool cb_lock = false;
bool cb_linked = false;
byte cb_runs = 0;

bool sleeping[2];  /* waiter i is queued in futex_wait */
byte finished = 0;

inline lock_cb() { atomic { !cb_lock -> cb_lock = true } }
inline unlock_cb() { cb_lock = false }

inline futex_wake_all() {
    atomic { sleeping[0] = false; sleeping[1] = false }
}

/* settle(from_mask, final): one winner; ok set to true if we won */
inline settle(from_mask, final, ok) {
    byte s_v, s_old;
    ok = false;
    do
    :: atomic {
        s_v = word;
        if
        :: ((1 << (s_v & STATE)) & (from_mask)) == 0 -> break
        :: else -> word = (s_v & ~STATE) | COMPLETING; ok = true; break
        fi
       }
    od;
    if
    :: ok ->
        winners++;
        outcome_written = true;
#ifdef SPLIT_SWAP
        s_old = word;
        word = final;
#else
        atomic { s_old = word; word = final }
#endif
        if
        :: s_old & WAITERS -> futex_wake_all()
        :: else -> skip
        fi;
        if
        :: s_old & CALLBACKS ->
            lock_cb();
            if
            :: cb_linked -> cb_runs++; cb_linked = false
            :: else -> skip
            fi;
            unlock_cb()
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype worker() {
    byte v;
    bool won = false, ok;
    do
    :: atomic {
        v = word;
        if
        :: (v & STATE) != PENDING -> break
        :: else -> word = (v & ~STATE) | RUNNING; won = true; break
        fi
       }
    od;
    if
    :: won ->
        task_ran = true;
        settle(1 << RUNNING, DONE, ok) /* a hand completion may have won first */
    :: else -> skip
    fi;
    finished++
}

proctype canceller() {
    bool ok;
#ifdef CANCEL_WHILE_RUNNING
    settle((1 << PENDING) | (1 << RUNNING), CANCELLED, ok);
#else
    settle(1 << PENDING, CANCELLED, ok);
#endif
    if
    :: ok -> cancelled = true
    :: else -> skip
    fi;
    finished++
}

proctype completer() {
    bool ok;
    settle((1 << PENDING) | (1 << RUNNING), FAILED, ok);
    finished++
}

proctype waiter(byte id) {
    byte v;
    bool spurious = true;
    do
    :: v = word;
       if
       :: (v & STATE) >= DONE -> assert(outcome_written); break
       :: else ->
          if
          :: !(v & WAITERS) ->
             atomic {
                if
                :: word == v -> word = v | WAITERS; v = v | WAITERS
                :: else -> goto retry
                fi
             }
          :: else -> skip
          fi;
          /* futex_wait(word, v): the kernel compares and queues atomically */
#ifdef NO_RECHECK
          sleeping[id] = true;
#else
          atomic {
             if
             :: word == v -> sleeping[id] = true
             :: else -> skip
             fi
          }
#endif
          if
          :: spurious -> spurious = false; sleeping[id] = false /* EINTR / spurious */
          :: !sleeping[id] -> skip
          fi
       fi;
retry: skip
    od;
    finished++
}

proctype registrant() {
    byte v;
    lock_cb();
    do
    :: v = word;
       if
       :: (v & STATE) >= DONE -> unlock_cb(); cb_runs++; break
#ifdef LINK_WITHOUT_FLAG
       :: else -> cb_linked = true; unlock_cb(); break
#else
       :: (v & STATE) < DONE && (v & CALLBACKS) -> cb_linked = true; unlock_cb(); break
       :: (v & STATE) < DONE && !(v & CALLBACKS) ->
          atomic {
             if
             :: word == v -> word = v | CALLBACKS; cb_linked = true
             :: else -> skip
             fi
          };
          if
          :: cb_linked -> unlock_cb(); break
          :: else -> skip
          fi
#endif
       fi
    od;
    finished++
}

init {
    atomic {
        run worker();
        run canceller();
        run completer();
        run waiter(0);
#if WAITERS_N > 1
        run waiter(1);
#endif
        run registrant()
    }
    finished == 4 + WAITERS_N;
    assert(winners == 1);
    assert(!(task_ran && cancelled));
    assert(cancelled || task_ran || (word & STATE) == FAILED);
    assert(cb_runs == 1);
    assert(!cb_linked)
}

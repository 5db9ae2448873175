/* tests/models/future.pml - a future's completion against wait, cancel, on_done and the
 * references (include/conc/future.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as future.h does it:
 *   - the state word: a state field (PENDING, RUNNING, COMPLETING, DONE, FAILED, CANCELLED),
 *     three flags (WAITERS, CALLBACKS, TASK) and the reference count above them; each CAS,
 *     add or subtract is one atomic step;
 *   - settle (complete and cancel): CAS the state from an allowed one to COMPLETING (exactly
 *     one winner), write the outcome (plain), add (final - COMPLETING) to the word [future.R1]; if
 *     the old word had WAITERS, futex_wake(all); if it had CALLBACKS, take the callback lock
 *     and run every linked callback;
 *   - the worker: CAS PENDING -> RUNNING (the gate cancel races with), run the task, write its
 *     outcome into the task's own fields (plain), then one CAS from RUNNING to DONE | TASK
 *     that also drops the worker's reference when the word has no flags; with flags it keeps
 *     the reference, does the slow path (wake, callbacks) and then releases. The CAS fails on
 *     any change of the word: retry, or give up if complete() won the state meanwhile;
 *   - wait: read the word; final: done (it asserts the outcome it reads, from the fields the
 *     TASK flag names, is the winner's); else set WAITERS with a CAS (retry if the word moved),
 *     futex_wait(word, seen) = atomically "sleep if the word still equals seen", with one
 *     spurious wakeup allowed;
 *   - on_done: under the callback lock, read the word: final -> run the callback itself;
 *     else CAS CALLBACKS in (retry if the word moved), then link the callback (a second
 *     step, as in C: a completer must not look at the list before it takes the lock);
 *   - references: every process holds one (the worker's is the executor's); release subtracts
 *     one, and the one that takes the count to zero frees the future. Every access to the
 *     future asserts it is not freed.
 *
 * Processes: a worker that starts and finishes the task, a canceller, a second completer
 * (conc_future_complete on the same future: at most one of the three wins), WAITERS_N
 * waiters (1 by default) and one callback registrant, each holding a reference. Checked
 * (pan -DSAFETY): every process ends (a lost wakeup leaves a waiter asleep: an invalid end
 * state); exactly one settle wins; the task ran iff the worker won the gate, and never both
 * ran and was cancelled; the callback ran exactly once; every waiter saw the winner's
 * outcome; the future was freed exactly once, after every use.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: SPLIT_FINAL the completer reads the word, then writes it plus the final state in a second
//   step (a WAITERS flag or a release in between is lost)
// broken: NO_RECHECK futex_wait sleeps without the kernel's compare (a completion before the sleep
//   is missed)
// broken: LINK_WITHOUT_FLAG on_done links its node without setting CALLBACKS (the completer never
//   looks)
// broken: CANCEL_WHILE_RUNNING cancel is allowed from RUNNING too (a task runs and is cancelled)
// broken: DROP_REF_WITH_FLAGS the worker drops its reference in its final CAS even when it still
//   has a wake or callbacks to do
// broken: TASK_OUTCOME_IN_STATUS the worker writes its outcome into complete's fields (it races a
//   complete that won)
// broken: SCAN_UNLOCKED the completer looks at the callback list before taking its lock (a
//   registrant between its CAS and its link is missed)
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#ifndef WAITERS_N
#define WAITERS_N 1 /* future_two_waiters.pml: 2, without the canceller and the completer */
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
#define TASK 32
#define REF 64
#define REFS_OF(w) ((w) / REF)

/* outcome values: who wrote them */
#define OUT_TASK 1
#define OUT_COMPLETE 2
#define OUT_CANCEL 3

/* one reference each: worker, canceller, completer, registrant, waiters */
#ifdef NO_SETTLERS
short word = PENDING + (2 + WAITERS_N) * REF;
#else
short word = PENDING + (4 + WAITERS_N) * REF;
#endif
byte hand_out = 0;  /* status/result: written by the settle winner */
byte task_out = 0;  /* task_status/task_result: written by the worker */
byte winners = 0;
bool task_ran = false;
bool cancelled = false;
bool freed = false;

bool cb_lock = false;
bool cb_linked = false;
byte cb_runs = 0;

bool sleeping[2];  /* waiter i is queued in futex_wait */
byte finished = 0;

inline lock_cb() { atomic { assert(!freed); !cb_lock -> cb_lock = true } }
inline unlock_cb() { cb_lock = false }

#ifdef WAKE_ONE
/* futex_wake(&f->state, 1, 0): one sleeper, any */
inline futex_wake_all() {
    atomic { assert(!freed); if :: sleeping[0] -> sleeping[0] = false
                                :: sleeping[1] -> sleeping[1] = false :: else -> skip fi }
}
#else
inline futex_wake_all() {
    atomic { assert(!freed); sleeping[0] = false; sleeping[1] = false }
}
#endif

/* The slow path after a final step whose old word was `old`. */
inline finish_slow(old) {
    if
    :: old & WAITERS -> futex_wake_all()
    :: else -> skip
    fi;
    if
    :: old & CALLBACKS ->
#ifdef SCAN_UNLOCKED
        /* a look at the list before taking the lock: if (!f->head) return; */
        if
        :: atomic { !cb_linked -> skip }
        :: atomic { cb_linked -> skip };
#endif
        lock_cb();
        if
        :: cb_linked -> cb_runs++; cb_linked = false
        :: else -> skip
        fi;
        unlock_cb()
#ifdef SCAN_UNLOCKED
        fi
#endif
    :: else -> skip
    fi
}

inline release() {
    atomic {
        assert(!freed && REFS_OF(word) > 0);
        word = word - REF;
        if
        :: REFS_OF(word) == 0 -> freed = true
        :: else -> skip
        fi
    }
}

/* settle(from_mask, final, val): one winner; ok set to true if we won */
inline settle(from_mask, final, val, ok) {
    short s_v, s_old;
    ok = false;
    atomic {
        assert(!freed);
        s_v = word;
        if
        :: ((1 << (s_v & STATE)) & (from_mask)) == 0 -> skip
        :: else -> word = (s_v & ~STATE) | COMPLETING; ok = true
        fi
    };
    if
    :: ok ->
        atomic { winners++; hand_out = val };
#ifdef SPLIT_FINAL
        s_old = word;
        word = s_old + (final - COMPLETING);
#else
        atomic { assert(!freed); s_old = word; word = word + (final - COMPLETING) }
#endif
        finish_slow(s_old)
    :: else -> skip
    fi
}

proctype worker() {
    short v, next;
    bool won = false, slow;
    atomic {
        assert(!freed);
        v = word;
        if
        :: (v & STATE) == PENDING -> word = (v & ~STATE) | RUNNING; won = true
        :: else -> skip
        fi
    };
    if
    :: won ->
#ifdef TASK_OUTCOME_IN_STATUS
        atomic { task_ran = true; hand_out = OUT_TASK };
#else
        atomic { task_ran = true; task_out = OUT_TASK };
#endif
        do
        :: atomic {
            assert(!freed);
            v = word;
            if
            :: (v & STATE) != RUNNING -> break /* complete() won meanwhile */
            :: else ->
                slow = (v & (WAITERS | CALLBACKS)) != 0;
                next = (v & ~STATE) | DONE | TASK;
#ifdef DROP_REF_WITH_FLAGS
                next = next - REF;
#else
                if
                :: !slow -> next = next - REF
                :: else -> skip
                fi;
#endif
                word = next;
                winners++;
                if
                :: REFS_OF(next) == 0 -> freed = true /* ours was the last reference */
                :: else -> skip
                fi;
                goto published
            fi
           }
        od;
        release();
        goto out;
published:
        if
        :: slow ->
            finish_slow(v);
#ifndef DROP_REF_WITH_FLAGS
            release()
#endif
        :: else -> skip
        fi
    :: else -> release()
    fi;
out:
    finished++
}

proctype canceller() {
    bool ok;
#ifdef CANCEL_WHILE_RUNNING
    settle((1 << PENDING) | (1 << RUNNING), CANCELLED, OUT_CANCEL, ok);
#else
    settle(1 << PENDING, CANCELLED, OUT_CANCEL, ok);
#endif
    if
    :: ok -> cancelled = true
    :: else -> skip
    fi;
    release();
    finished++
}

proctype completer() {
    bool ok;
    settle((1 << PENDING) | (1 << RUNNING), FAILED, OUT_COMPLETE, ok);
    release();
    finished++
}

proctype waiter(byte id) {
    short v;
    bool spurious = true;
    do
    :: atomic { assert(!freed); v = word };
       if
       :: (v & STATE) >= DONE ->
          /* the outcome, from the fields the final word names */
          atomic {
             assert(!freed);
#ifdef TASK_OUTCOME_IN_STATUS
             if
             :: v & TASK -> assert(hand_out == OUT_TASK)
             :: (v & STATE) == CANCELLED -> assert(hand_out == OUT_CANCEL)
             :: !(v & TASK) && (v & STATE) != CANCELLED -> assert(hand_out == OUT_COMPLETE)
             fi
#else
             if
             :: v & TASK -> assert(task_out == OUT_TASK)
             :: (v & STATE) == CANCELLED -> assert(hand_out == OUT_CANCEL)
             :: !(v & TASK) && (v & STATE) != CANCELLED -> assert(hand_out == OUT_COMPLETE)
             fi
#endif
          };
          break
       :: else ->
          if
          :: !(v & WAITERS) ->
             atomic {
                assert(!freed);
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
    release();
    finished++
}

proctype registrant() {
    short v;
    bool linked = false;
    lock_cb();
    do
    :: atomic { assert(!freed); v = word };
       if
       :: (v & STATE) >= DONE -> unlock_cb(); cb_runs++; break
#ifdef LINK_WITHOUT_FLAG
       :: else -> cb_linked = true; unlock_cb(); break
#else
       :: (v & STATE) < DONE && (v & CALLBACKS) -> cb_linked = true; unlock_cb(); break
       :: (v & STATE) < DONE && !(v & CALLBACKS) ->
          atomic {
             if
             :: word == v -> word = v | CALLBACKS; linked = true
             :: else -> skip
             fi
          };
          if :: linked -> cb_linked = true :: else -> skip fi; /* then the link, a step apart */
          if
          :: linked -> unlock_cb(); break
          :: else -> skip
          fi
#endif
       fi
    od;
    release();
    finished++
}

init {
    atomic {
        run worker();
#ifndef NO_SETTLERS
        run canceller();
        run completer();
#endif
        run waiter(0);
#if WAITERS_N > 1
        run waiter(1);
#endif
        run registrant()
    }
#ifdef NO_SETTLERS
    finished == 2 + WAITERS_N;
#else
    finished == 4 + WAITERS_N;
#endif
    assert(winners == 1);
    assert(!(task_ran && cancelled));
    assert(cancelled || task_ran || (word & STATE) == FAILED);
    assert(cb_runs == 1);
    assert(!cb_linked);
    assert(freed && REFS_OF(word) == 0)
}

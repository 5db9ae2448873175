/* tests/models/executor_spill.pml - a submit past the executor's full queue (the spill): a
 * task's submit to its own executor, and any submit to an unbounded one; the order of starts,
 * the end and shutdown against it (include/conc/executor.h, "The spill"), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as executor.h does it:
 *   - the queue: one slot (capacity 1); a push and a pop are one atomic step each; close
 *     makes pushes fail (EPIPE) and a pop of the empty closed queue say EPIPE;
 *   - the spill: a FIFO of task numbers, `spilled` of them, under spill_lock (a lock taken and
 *     released in one step each);
 *   - two workers. Worker 0 first runs task P, which submits SUB1 then SUB2 from inside (the
 *     queue starts full of task A, pushed from outside before P's submits): the fast path
 *     reads `spilled`, tries the push (a separate step), and on a full queue (or spilled
 *     tasks) takes the lock: closed is EPIPE, an empty spill is a push (EPIPE if the queue is
 *     closed) unless the queue is full, else an append [executor.U0]; then the unlock. P then
 *     says its submits returned and waits until SUB1 is final (through something that is not
 *     a future of the executor, so nothing runs it inline: another worker must);
 *   - a worker's take (staging abstracted to batches of one: executor.pml checks staging):
 *     REFILLING taken with one CAS, a pop of the queue; none ready (EAGAIN, or EPIPE when
 *     closed and drained): with the end, or `spilled` read nonzero (a separate read), the
 *     lock, a look at the queue (a task pushed since the pop: the spill waits), the spill's
 *     front [executor.U1], the unlock; REFILLING cleared (and ENDED published at the end). A
 *     task taken is started (its gate), or dropped once `cancelling` is set;
 *   - an outside submitter of task X, once P's submits have returned. The executor is bounded
 *     or unbounded (capacity 0), chosen at the start: bounded, it waits while the spill holds
 *     tasks (EPIPE once closed), then pushes (blocking while the queue is full); unbounded, it
 *     submits as P does (the same steps, conc__executor_push_slow);
 *   - sleeping and waking are abstracted: an idle worker, and the outside submitter, block
 *     until what they wait for holds (work to take; an empty spill or the close), which is
 *     what a wake protocol that loses nothing gives them. executor_spill_wake.pml checks the
 *     wakes (the idle re-check against an append, the outside submitter's wait against the
 *     refill that empties the spill and the close);
 *   - a closer: at any time, or once P's wait has ended; with or without cancel_pending:
 *     `cancelling`, the queue's close, `closed`, then (cancelling) the queue drained and the
 *     spill drained, dropping each.
 * Checked (pan -DSAFETY): every process ends (a task left behind leaves P waiting for SUB1, or
 * the outside submitter waiting: an invalid end state); every task accepted by a submit runs
 * exactly once or is cancelled, and none refused runs; starts keep the one FIFO: SUB1 starts
 * after A was taken, SUB2 after SUB1, X (submitted after SUB1's and SUB2's submits returned)
 * after both.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_PUSH_FIRST an append to an empty spill does not try the queue first (an append
//         after the end's look is never run)
// broken: OUTSIDE_SKIPS_SPILL an outside submit pushes past spilled tasks (FIFO broken)
// broken: SPILL_FIRST a refill takes the spill before the queue (FIFO broken)
// broken: NO_QUEUE_LOOK a refill takes the spill without looking at the queue again under the
//         lock (a push since its pop, older than the append behind it, starts later)
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define W 2
#define NONE 255
#define A 0
#define SUB1 1
#define SUB2 2
#define X 3
#define T 4

#define PENDING 0
#define DONE 2
#define CANCELLED 3

byte qslot = A;          /* the queue (capacity 1): starts full of A, pushed from outside */
bool qclosed = false;
bool closed = false;     /* `closed`: stored after the queue's close */
bool cancelling = false;

#define SPILL_RING 3
byte spill[SPILL_RING];  /* the spill's ring: SUB1, SUB2, and X when unbounded */
byte shead = 0;
byte spilled = 0;        /* written under the lock; read without it */
bool locked = false;     /* spill_lock */

bool refilling = false;
bool ended = false;


bool accepted[T];
byte taken[T];
byte tstate[T];
byte runs[T];
bool p_returned = false;
bool p_done = false;     /* P's wait for SUB1 ended */
bool x_returned = false;
bool unbounded;          /* chosen in init: capacity 0, every submit past the queue spills */
byte exited = 0;

/* The refill's look at the queue under the spill's lock: a task pushed since its pop may be
 * older than the spill's. */
#ifdef NO_QUEUE_LOOK
#define QUEUE_EMPTY true
#else
#define QUEUE_EMPTY (qslot == NONE)
#endif
#define HAS_WORK (ended || (!refilling && (qslot != NONE || closed || spilled > 0)))
/* Starts follow submission order. */
#define BEFORE(u) (!accepted[u] || taken[u] == 1)
#define FIFO_OK(t) (((t) != SUB1 || BEFORE(A)) && ((t) != SUB2 || BEFORE(SUB1)) && \
                    ((t) != X || (BEFORE(SUB1) && BEFORE(SUB2))))

inline lock() { atomic { !locked -> locked = true } }
inline unlock() { locked = false }

/* The wakes are abstracted: an idle worker (idle_wait) and a waiting outside submitter block
 * until there is work (or an empty spill) to see, which is what a wake protocol that loses
 * nothing gives them; executor_spill_wake.pml checks the wakes themselves. */
inline idle_wait() { atomic { HAS_WORK } }

/* A submit that never waits for room (conc__executor_push, _spill_slow): a worker's to its own
 * executor, or anyone's to an unbounded one. */
inline inside_submit(t, ok) {
    ok = false;
    if
    :: spilled == 0 ->                                           /* the fast path */
       atomic {
           if
           :: qclosed -> ok = true                               /* EPIPE: refused */
           :: !qclosed && qslot == NONE -> qslot = t; accepted[t] = true; ok = true
           :: else -> skip
           fi
       }
    :: else -> skip
    fi;
    if
    :: !ok ->
       lock();
       if
       :: closed -> skip                                         /* EPIPE */
       :: else ->
          atomic {
              if
#ifndef NO_PUSH_FIRST
              :: spilled == 0 && !qclosed && qslot == NONE -> qslot = t; accepted[t] = true
              :: spilled == 0 && qclosed -> skip                 /* try_push: EPIPE */
#endif
              :: else ->                                         /* [executor.U0] */
                 spill[(shead + spilled) % SPILL_RING] = t; spilled++; accepted[t] = true
              fi
          }
       fi;
       unlock()
    :: else -> skip
    fi;
    ok = false
}

/* The gate (conc__executor_start) for a task this worker took. */
inline start(t) {
    atomic {
        assert(accepted[t] && taken[t] == 1);
        if
        :: tstate[t] != PENDING -> skip
        :: tstate[t] == PENDING && cancelling -> tstate[t] = CANCELLED
        :: tstate[t] == PENDING && !cancelling ->
           assert(FIFO_OK(t)); runs[t]++; tstate[t] = DONE
        fi
    }
}

inline drop(t) {
    atomic {
        assert(accepted[t] && taken[t] == 0); taken[t]++;
        if :: tstate[t] == PENDING -> tstate[t] = CANCELLED :: else -> skip fi
    }
}

proctype worker(byte me) {
    byte t, n;
    bool got, epipe, ok;
    if
    :: me == 0 ->                                                /* task P */
       inside_submit(SUB1, ok);
       inside_submit(SUB2, ok);
       p_returned = true;
       (!accepted[SUB1] || tstate[SUB1] != PENDING);                 /* waits for SUB1 */
       p_done = true
    :: else -> skip
    fi;
top:
    atomic {
        t = NONE; n = 0; got = false; epipe = false;
        if :: ended -> goto out :: else -> skip fi;
        if :: !refilling -> refilling = true; ok = true :: else -> ok = false fi
    };
    if
    :: ok ->
#ifdef SPILL_FIRST
       lock();
       atomic { if :: spilled > 0 -> t = spill[shead]; shead = (shead + 1) % SPILL_RING; spilled--;
                                     taken[t]++; got = true
                   :: else -> skip fi };
       unlock();
       if :: got -> goto have :: else -> skip fi;
#endif
       atomic {                                                  /* pop_batch */
           if
           :: qslot != NONE -> t = qslot; qslot = NONE; taken[t]++; got = true
           :: qslot == NONE && qclosed -> epipe = true
           :: else -> skip
           fi
       };
       if
       :: !got && (epipe || spilled > 0) ->                      /* the spill's turn */
          lock();
          atomic {
              if
              :: spilled > 0 && (epipe || QUEUE_EMPTY) ->         /* [executor.U1] */
                 t = spill[shead]; shead = (shead + 1) % SPILL_RING; spilled--; taken[t]++; got = true
              :: else -> skip
              fi
          };
          unlock()
       :: else -> skip
       fi;
#ifdef SPILL_FIRST
have:
#endif
       if
       :: !got && epipe -> atomic { refilling = false; ended = true }; goto out
       :: else -> refilling = false
       fi
    :: else -> skip
    fi;
    if
    :: got ->
       start(t);
       goto top
    :: else -> skip
    fi;
    idle_wait();
    goto top;
out:
    exited++
}

/* The submit of X from outside, once P's submits returned (conc__executor_push, then
 * _wait_unspilled_slow). */
proctype outsider() {
    bool ok;
    p_returned;
    if
    :: unbounded -> inside_submit(X, ok); goto returned
    :: else -> skip
    fi;
#ifndef OUTSIDE_SKIPS_SPILL
    if
    :: closed -> goto returned
    :: spilled == 0 -> skip              /* waits while the spill holds tasks */
    fi;
#endif
    atomic {                                                     /* the push: waits for room */
        (qslot == NONE || qclosed) ->
        if
        :: qclosed -> skip
        :: else -> qslot = X; accepted[X] = true
        fi
    };
returned:
    x_returned = true
}

proctype closer() {
    byte t, i;
    bool late;
    /* The choice comes first: a guard `p_done` beside `skip` would never block, and the
     * close, which wakes everyone, would always be there to end a lost wake. */
    if
    :: late = false                                              /* at any time */
    :: late = true
    fi;
    if :: late -> p_done :: else -> skip fi;                     /* after P's wait */
    if
    :: cancelling = true
    :: skip
    fi;
    qclosed = true;
    closed = true;
    if
    :: cancelling ->
       atomic { if :: qslot != NONE -> t = qslot; qslot = NONE; drop(t) :: else -> skip fi };
       lock();
       do
       :: atomic { spilled > 0 -> t = spill[shead]; shead = (shead + 1) % SPILL_RING; spilled--; drop(t) }
       :: spilled == 0 -> break
       od;
       unlock()
    :: else -> skip
    fi;
    exited == W && x_returned;
    i = 0;
    do
    :: i < T ->
       if
       :: accepted[i] ->
          assert(taken[i] == 1);
          assert((tstate[i] == DONE && runs[i] == 1) || (tstate[i] == CANCELLED && runs[i] == 0))
       :: else -> assert(runs[i] == 0 && taken[i] == 0)
       fi;
       i++
    :: else -> break
    od
}

init {
    atomic {
        accepted[A] = true;
        if :: unbounded = false :: unbounded = true fi;
        run worker(0);
        run worker(1);
        run outsider();
        run closer()
    }
}

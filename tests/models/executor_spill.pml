/* tests/models/executor_spill.pml - a task's submit past its own executor's full queue (the
 * spill), the end and shutdown against it (include/conc/executor.h, "The spill"), checked by
 * spin
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
 *     closed) unless the queue is full, else an append [executor.U0]; then the unlock, and a
 *     wake. P then says its submits returned and waits until SUB1 is final (through
 *     something that is not a future of the executor, so nothing runs it inline: another
 *     worker must);
 *   - a worker's take (staging abstracted to batches of one: executor.pml checks staging):
 *     REFILLING taken with one CAS, a pop of the queue; none ready (EAGAIN, or EPIPE when
 *     closed and drained): with the end, or `spilled` read nonzero (a separate relaxed read, a
 *     hint: it may miss an append), the lock, a look at the queue (a task pushed since the
 *     pop: the spill waits), the spill's front [executor.U1], the unlock, and a wake of the
 *     outside submitters once the spill is empty; REFILLING
 *     cleared (and ENDED published, all woken, at the end). A task taken is started (its
 *     gate), or dropped once `cancelling` is set; work left behind wakes one more worker;
 *   - idle workers: register, re-check (ENDED, or with nobody refilling a queued task, a
 *     spilled one, the close), sleep until woken (a wake that comes between the re-check and
 *     the sleep refuses it, as the sequence step does);
 *   - an outside submitter of task X, once P's submits have returned: `spilled` read zero is
 *     the push (blocking while the queue is full); else it registers in spill_waiters, reads
 *     spill_epoch, `spilled` and `closed` again, and sleeps on spill_epoch until woken (a
 *     changed value refuses the sleep, as futex_wait does); a wake of the outside submitters
 *     (the refill that empties the spill, the close, the cancel's drain) steps spill_epoch
 *     when it sees one registered;
 *   - worker 1 may first run a task H that waits until X's submit has returned (what a
 *     producer outside does after its submit: the close must then reach a waiting X, as only
 *     the close lets the spill drain), the closer then closing at any time;
 *   - a closer: at any time, or once X's submit has returned; with or without cancel_pending:
 *     `cancelling`, the queue's close, `closed`, a wake of the outside submitters and of every
 *     worker, then (cancelling) the queue drained and the spill drained, dropping each.
 * Checked (pan -DSAFETY): every process ends (a lost wake leaves a worker asleep, P waiting
 * for SUB1, or the outside submitter asleep: an invalid end state); every task accepted by a
 * submit runs exactly once or is cancelled, and none refused runs; starts keep the one FIFO:
 * SUB1 starts after A was taken, SUB2 after SUB1, X (submitted after SUB1's and SUB2's
 * submits returned) after both.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_PUSH_FIRST an append to an empty spill does not try the queue first (an append
//         after the end's look is never run)
// broken: NO_SPILL_RECHECK a sleeper's re-check ignores the spill (an append's wake is lost)
// broken: NO_UNSPILL_WAKE the refill that empties the spill wakes no outside submitter
// broken: OUTSIDE_SKIPS_SPILL an outside submit pushes past spilled tasks (FIFO broken)
// broken: SPILL_FIRST a refill takes the spill before the queue (FIFO broken)
// broken: NO_QUEUE_LOOK a refill takes the spill without looking at the queue again under the
//         lock (a push since its pop, older than the append behind it, starts later)
// broken: WAIT_ON_SPILLED the outside submitter sleeps on `spilled`, which the close does not
//         change (the close's wake, between its look and its sleep, is lost: H waits for good)
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

byte spill[2];           /* the spill's ring: only SUB1 and SUB2 ever go there */
byte shead = 0;
byte spilled = 0;        /* written under the lock; read without it */
bool locked = false;     /* spill_lock */

bool refilling = false;
bool ended = false;
byte sleepers = 0;
byte seq = 0;            /* the idle word's sequence */
bool sleeping[W];

byte spill_waiters = 0;
byte sepoch = 0;         /* spill_epoch */
bool osleeping = false;  /* the outside submitter, in futex_wait on spill_epoch */
bool hold = false;       /* worker 1 first runs H, which waits for X's submit to return */

bool accepted[T];
byte taken[T];
byte tstate[T];
byte runs[T];
bool p_returned = false;
bool x_returned = false;
byte exited = 0;

/* The refill's look at the queue under the spill's lock: a task pushed since its pop may be
 * older than the spill's. */
#ifdef NO_QUEUE_LOOK
#define QUEUE_EMPTY true
#else
#define QUEUE_EMPTY (qslot == NONE)
#endif
#define HAS_WORK (ended || (!refilling && (qslot != NONE || closed || SPILL_SEEN)))
#ifdef NO_SPILL_RECHECK
#define SPILL_SEEN false
#else
#define SPILL_SEEN (spilled > 0)
#endif
/* Starts follow submission order. */
#define BEFORE(u) (!accepted[u] || taken[u] == 1)
#define FIFO_OK(t) (((t) != SUB1 || BEFORE(A)) && ((t) != SUB2 || BEFORE(SUB1)) && \
                    ((t) != X || (BEFORE(SUB1) && BEFORE(SUB2))))

inline lock() { atomic { !locked -> locked = true } }
inline unlock() { locked = false }

inline wake_one() {
    atomic {
        if
        :: sleepers > 0 ->
           seq++;
           if
           :: sleeping[0] -> sleeping[0] = false
           :: sleeping[1] -> sleeping[1] = false
           :: else -> skip
           fi
        :: else -> skip
        fi
    }
}

inline wake_all() { atomic { seq++; sleeping[0] = false; sleeping[1] = false } }

inline wake_unspilled() {
    atomic { if :: spill_waiters > 0 -> sepoch++; osleeping = false :: else -> skip fi }
}

inline idle_sleep(me) {
    byte v;
    bool work;
    atomic { sleepers++; v = seq };                              /* [executor.E1] */
    work = HAS_WORK;                                             /* the re-check */
    if
    :: !work ->
       atomic { if :: seq == v -> sleeping[me] = true :: else -> skip fi }; /* futex_wait */
       !sleeping[me]
    :: else -> skip
    fi;
    atomic { sleepers--; v = 0; work = false }                   /* [executor.E3] */
}

/* A worker's submit of task t to its own executor (conc__executor_push, _spill_slow). */
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
                 spill[(shead + spilled) % 2] = t; spilled++; accepted[t] = true
              fi
          }
       fi;
       unlock()
    :: else -> skip
    fi;
    ok = false;
    wake_one()                                                   /* [executor.E2] */
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
    bool got, epipe, ok, hint;
    if
    :: me == 0 ->                                                /* task P */
       inside_submit(SUB1, ok);
       inside_submit(SUB2, ok);
       p_returned = true;
       (!accepted[SUB1] || tstate[SUB1] != PENDING)                  /* waits for SUB1 */
    :: else ->
       if :: hold -> x_returned :: else -> skip fi                   /* task H */
    fi;
top:
    atomic {
        t = NONE; n = 0; got = false; epipe = false; hint = false;
        if :: ended -> goto out :: else -> skip fi;
        if :: !refilling -> refilling = true; ok = true :: else -> ok = false fi
    };
    if
    :: ok ->
#ifdef SPILL_FIRST
       lock();
       atomic { if :: spilled > 0 -> t = spill[shead]; shead = (shead + 1) % 2; spilled--;
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
       :: spilled > 0 -> hint = true                             /* relaxed: it may miss */
       :: true -> hint = false
       fi;
       if
       :: !got && (epipe || hint) ->                             /* the spill's turn */
          lock();
          atomic {
              if
              :: spilled > 0 && (epipe || QUEUE_EMPTY) ->         /* [executor.U1] */
                 t = spill[shead]; shead = (shead + 1) % 2; spilled--; taken[t]++; got = true
              :: else -> skip
              fi
          };
          unlock();
          if
#ifndef NO_UNSPILL_WAKE
          :: got && spilled == 0 -> wake_unspilled()
#endif
          :: else -> skip
          fi
       :: else -> skip
       fi;
#ifdef SPILL_FIRST
have:
#endif
       if
       :: !got && epipe -> atomic { refilling = false; ended = true }; wake_all(); goto out
       :: else -> refilling = false
       fi
    :: else -> skip
    fi;
    if
    :: got ->
       if :: qslot != NONE || spilled > 0 -> wake_one() :: else -> skip fi; /* the chain */
       start(t);
       goto top
    :: else -> skip
    fi;
    idle_sleep(me);
    goto top;
out:
    exited++
}

/* The submit of X from outside, once P's submits returned (conc__executor_push, then
 * _wait_unspilled_slow). */
proctype outsider() {
    byte n, e;
    p_returned;
#ifndef OUTSIDE_SKIPS_SPILL
    do
    :: closed -> goto refused
    :: !closed ->
       if
       :: spilled == 0 -> break
       :: else -> skip
       fi;
       spill_waiters++;
       e = sepoch;
       n = spilled;
       if
       :: n != 0 && !closed ->
#ifdef WAIT_ON_SPILLED
          atomic { if :: spilled == n -> osleeping = true :: else -> skip fi };
#else
          atomic { if :: sepoch == e -> osleeping = true :: else -> skip fi };
#endif
          !osleeping
       :: else -> skip
       fi;
       spill_waiters--;
       if :: n == 0 -> break :: else -> skip fi
    od;
#endif
    atomic {                                                     /* the push: waits for room */
        (qslot == NONE || qclosed) ->
        if
        :: qclosed -> skip
        :: else -> qslot = X; accepted[X] = true
        fi
    };
    wake_one();
refused:
    x_returned = true
}

proctype closer() {
    byte t, i;
    bool late;
    /* The choice comes first: a guard `x_returned` beside `skip` would never block. */
    if
    :: late = false                                              /* at any time */
    :: !hold -> late = true
    fi;
    if :: late -> x_returned :: else -> skip fi;                 /* after X's submit */
    if
    :: cancelling = true
    :: skip
    fi;
    qclosed = true;
    closed = true;
    wake_unspilled();
    wake_all();
    if
    :: cancelling ->
       atomic { if :: qslot != NONE -> t = qslot; qslot = NONE; drop(t) :: else -> skip fi };
       lock();
       do
       :: atomic { spilled > 0 -> t = spill[shead]; shead = (shead + 1) % 2; spilled--; drop(t) }
       :: spilled == 0 -> break
       od;
       unlock();
       wake_unspilled()
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
    if
    :: hold = true
    :: skip
    fi;
    atomic {
        accepted[A] = true;
        run worker(0);
        run worker(1);
        run outsider();
        run closer()
    }
}

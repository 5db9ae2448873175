/* tests/models/executor.pml - the executor's staging (FIFO takes, refills), idle sleep,
 * cancelling and ending (include/conc/executor.h, "Staging", "Idle workers"), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as executor.h does it:
 *   - the queue: tasks 0..T-1 pushed in order by a submitter (waking after each push); a
 *     refill takes up to STAGE of them with one atomic step (conc_queue_try_pop_batch: the
 *     CAS on the queue's head; with the queue closed and drained it reports EPIPE);
 *   - staging: the word (HEAD, TAIL, GEN, REFILLING, ENDED) and the slots (here: the first
 *     staged task's number; the slots hold consecutive tasks). A take reads the word
 *     [executor.T0], then the slot (a separate step), then CASes the word it read
 *     [executor.T1]. A refill CASes REFILLING in on an empty word [executor.F1], pops a batch,
 *     writes the slots (a separate step), publishes HEAD 1, TAIL n, GEN + 1 in one store
 *     [executor.F2] (the first task is the refiller's), reads `cancelling` and drops what is
 *     staged if set [executor.C1], then wakes one sleeper if work is left (staged, or queued);
 *     a refill that finds the queue closed and drained publishes ENDED and wakes every sleeper;
 *   - the idle word: SLEEPERS, WAKING, SEQ in one futex word. A worker that finds nothing to
 *     do may poll (one at a time: `polling`), then registers [executor.E1], re-checks (a staged
 *     task, ENDED, or with nobody refilling: the queue, the close), and sleeps on the word it
 *     read until the word changes. Leaving [executor.E3] drops SLEEPERS and WAKING. A waker
 *     [executor.E2] reads the word; with sleepers and no WAKING (and, for a take's or refill's
 *     chain wake, nobody polling) it CASes WAKING and SEQ + 1 in, then futex-wakes one;
 *   - tasks: task 0 blocks until task 1 is final (done or cancelled), through something that
 *     is not a future of the executor (a promise, an event: no worker runs it inline), as in
 *     the workload Python finishes and per-worker claims did not. The gate is one CAS from
 *     PENDING to RUNNING (run) or CANCELLED (a canceller that may cancel task 1; any worker
 *     once shutdown(cancel_pending) began, for what it takes; the closer, for what it drops);
 *   - shutdown: the submitter pushes T tasks, then waits until every task is final or not,
 *     and shuts down with or without cancel_pending: `cancelling` [executor.C1], the close,
 *     a wake of all, then (cancelling) it takes and drops every staged task with the
 *     takers' CAS and pops and drops every queued one (oldest first); a refill that sees
 *     `cancelling` drops the task it kept, then the ones it staged.
 * Checked (pan -DSAFETY): every process ends (a task stranded behind a blocked worker or a
 * lost wake leaves a worker asleep, task 0 blocked, or the submitter waiting: an invalid end
 * state); each task is taken exactly once (by a worker's take or refill, or by the closer);
 * when a worker starts a task, every older task has been taken (a task is taken one at a
 * time, by a free worker, which starts it next: the order of Python's pool, where a worker
 * pops the queue's front, then starts it; a task held in a worker's private batch is not
 * taken until that worker gets to it); each task ends run exactly once or cancelled, never
 * both, never neither.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_REFILL_WAKE a refill that leaves work staged wakes nobody (a sleeper that saw
//         REFILLING sleeps on)
// broken: OWN_BATCH the refiller keeps its batch and starts it before anyone else may
//         (per-worker claims)
// broken: TAKE_WITHOUT_CAS a take stores HEAD + 1 without a CAS (a task taken twice, or a
//         rewritten slot)
// broken: NO_RECHECK a sleeper sleeps without its re-check (a push's wake is lost)
// broken: NO_END_WAKE the refill that finds the end wakes nobody (a sleeper never exits)
// broken: EXIT_WHEN_DRAINED a worker exits once the queue is closed and drained (staged
//         tasks stranded)
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define T 3
#define W 2
#define STAGE 2

#define PENDING 0
#define RUNNING 1
#define DONE 2
#define CANCELLED 3

#define SLEEPERS 7
#define WAKING 8
#define SEQ 16       /* the sequence: the top four bits, modulo 16 */

byte pushed = 0;      /* tasks pushed */
byte head = 0;        /* the queue's next task */
bool closed = false;
bool cancelling = false;

byte tstate[T];       /* the gate */
byte runs[T];
byte taken[T];        /* times taken from staging or the queue, to start or to drop */

/* the staging word and slots */
byte sbase = 0;       /* slot 0's task (the slots are consecutive tasks) */
byte shead = 0;
byte stail = 0;
byte sgen = 0;
bool refilling = false;
bool ended = false;

byte word = 0;        /* the idle word */
bool sleeping[W];     /* in futex_wait on `word` */
bool polling = false;
byte exited = 0;

/* Starts follow submission order: every task older than t is taken. */
#define FIFO_OK(t) ((t) < 1 || taken[0] == 1) && ((t) < 2 || taken[1] == 1)
/* What a poller or a sleeper's re-check counts as work. */
#define HAS_WORK (shead < stail || ended || (!refilling && (head < pushed || closed)))

inline futex_wake_one() {
    atomic {
        if
        :: sleeping[0] -> sleeping[0] = false
        :: sleeping[1] -> sleeping[1] = false
        :: else -> skip
        fi
    }
}

inline futex_wake_all() { atomic { sleeping[0] = false; sleeping[1] = false } }

/* [executor.E2]; chain: a take's or refill's wake, which skips while a worker polls */
inline wake(chain) {
    byte w_v;
    do
    :: w_v = word;
       if
       :: (w_v & SLEEPERS) == 0 || (w_v & WAKING) -> break
       :: (chain && polling) -> break
       :: else ->
          atomic {
              if
              :: word == w_v -> word = ((w_v | WAKING) + SEQ) % 256; w_v = 255
              :: else -> skip
              fi
          };
          if
          :: w_v == 255 -> futex_wake_one(); break
          :: else -> skip
          fi
       fi
    od;
    w_v = 0
}

inline wake_all() { atomic { word = (word + SEQ) % 256; futex_wake_all() } }

/* [executor.T0], the slot, [executor.T1]: got says whether t is ours. */
inline take(t, got, h, tl, g) {
    got = false;
    do
    :: atomic { shead < stail -> h = shead; tl = stail; g = sgen };
       t = sbase + h;                                       /* the slot: a separate read */
#ifdef TAKE_WITHOUT_CAS
       shead = h + 1;
       atomic { assert(taken[t] == 0); taken[t]++; got = true };
       break
#else
       atomic {
           if
           :: shead == h && stail == tl && sgen == g ->
              shead = h + 1; assert(taken[t] == 0); taken[t]++; got = true
           :: else -> skip
           fi
       };
       if :: got -> break :: else -> skip fi
#endif
    :: shead >= stail -> break
    od;
    atomic { h = 0; tl = 0; g = 0 }
}

/* A task taken that will not run (conc__executor_drop_slow): cancelled if still pending. */
inline drop(t) {
    atomic { if :: tstate[t] == PENDING -> tstate[t] = CANCELLED :: else -> skip fi }
}

inline drop_staged(t, got, h, tl, g) {
    do
    :: take(t, got, h, tl, g);
       if :: got -> drop(t) :: else -> break fi
    od
}

/* The gate and the task body (conc__executor_start), for a task this worker took. */
inline start(me, t, ok) {
    atomic {
        assert(taken[t] == 1);
        ok = false;
        if
        :: tstate[t] != PENDING -> skip                         /* cancelled: never runs */
        :: tstate[t] == PENDING && cancelling -> tstate[t] = CANCELLED
        :: tstate[t] == PENDING && !cancelling ->
           assert(FIFO_OK(t));
           if
           :: t != 0 -> runs[t]++; tstate[t] = DONE
           :: t == 0 -> tstate[t] = RUNNING; ok = true
           fi
        fi
    };
    if
    :: ok ->                                                    /* task 0: stuck until 1 ends */
       (tstate[1] == DONE || tstate[1] == CANCELLED);
       atomic { runs[0]++; tstate[0] = DONE; ok = false }
    :: else -> skip
    fi
}

/* Sleeps (or not, after the re-check). */
inline idle_sleep(me) {
    byte s_v;
    bool work;
    atomic { word++; s_v = word };                              /* [executor.E1] */
#ifdef NO_RECHECK
    work = false;
#else
    atomic { work = HAS_WORK };
#endif
    if
    :: !work ->
       atomic { if :: word == s_v -> sleeping[me] = true :: else -> skip fi };
       !sleeping[me]
    :: else -> skip
    fi;
    atomic { word = (word - 1) & ~WAKING; s_v = 0; work = false } /* [executor.E3] */
}

proctype worker(byte me) {
    byte t, n, h, tl, g, k;
    bool ok, got, look;
top:
    /* Locals keep no stale values between rounds (they would only multiply the states). */
    atomic { t = 0; n = 0; k = 0; ok = false; got = false; look = false };
#ifdef EXIT_WHEN_DRAINED
    if :: atomic { closed && head == pushed -> goto out } :: else -> skip fi;
#endif
    /* 1. staging's front */
    take(t, got, h, tl, g);
    /* 2. a refill: staging empty, nobody refilling, not ended, a task queued or the close */
    if
    :: !got ->
       atomic {                                                 /* [executor.F1] */
           if
           :: shead == stail && !refilling && !ended && (head < pushed || closed) ->
              refilling = true; shead = 0; stail = 0; ok = true
           :: else -> ok = false
           fi
       };
       if
       :: ok ->
          atomic {                                              /* pop_batch */
              t = head;
              n = pushed - head;
              if :: n > STAGE -> n = STAGE :: else -> skip fi;
              head = head + n;
              look = n == 0 && closed;                           /* EPIPE */
#ifndef OWN_BATCH
              if :: n > 0 -> assert(taken[t] == 0); taken[t]++ :: else -> skip fi /* ours */
#endif
          };
#ifdef OWN_BATCH
          atomic { sgen++; refilling = false; if :: look -> ended = true :: else -> skip fi };
          if :: look -> wake_all(); goto out :: else -> skip fi;
          k = 0;
          do
          :: k < n -> atomic { assert(taken[t + k] == 0); taken[t + k]++ }; start(me, t + k, ok); k++
          :: else -> break
          od;
          goto top;
#endif
          sbase = t;                                             /* the slots */
          atomic {                                               /* [executor.F2] */
              sgen++;
              refilling = false;
              if
              :: n > 0 -> shead = 1; stail = n
              :: else -> shead = 0; stail = 0
              fi;
              if :: look -> ended = true :: else -> skip fi
          };
          if
          :: look ->
#ifndef NO_END_WAKE
             wake_all();
#endif
             goto out
          :: else -> skip
          fi;
          if
          :: n > 0 && cancelling ->          /* [executor.C1]: oldest first, ours first */
             drop(t); drop_staged(k, look, h, tl, g); n = 0
          :: else -> skip
          fi;
          look = false;
          got = n > 0
       :: else -> skip
       fi
    :: else -> skip
    fi;
    /* 3. a task: wake the next if work is left (the chain), then start it */
    if
    :: got ->
#ifdef NO_REFILL_WAKE
       if :: n == 0 && (shead < stail || (shead >= stail && head < pushed)) -> wake(true)
          :: else -> skip fi;
#else
       if :: shead < stail || (shead >= stail && head < pushed) -> wake(true)
          :: else -> skip fi;
#endif
       start(me, t, ok);
       goto top
    :: else -> skip
    fi;
    if
    :: ended -> goto out
    :: else -> skip
    fi;
    /* 4. idle: poll (one at a time), then sleep */
    atomic { if :: !polling -> polling = true; ok = true :: else -> ok = false fi };
    if
    :: ok ->
       if
       :: atomic { HAS_WORK -> look = true }
       :: true -> skip                                          /* the spin ran out */
       fi;
       polling = false;                                         /* [executor.E0] */
       if :: look -> goto top :: else -> skip fi
    :: else -> skip
    fi;
    idle_sleep(me);
    goto top;
out:
    exited++
}

proctype canceller() {
    if
    :: atomic { if :: tstate[1] == PENDING -> tstate[1] = CANCELLED :: else -> skip fi }
    :: skip
    fi
}

proctype submitter() {
    byte i = 0, t, h, tl, g, mode;
    bool got;
    do
    :: i < T -> pushed++; i++; wake(false)
    :: else -> break
    od;
    /* The choice comes first: a guard beside `true` branches would never block, and a
     * shutdown (which wakes every worker) would always be there to end a lost wake. */
    if
    :: mode = 0
    :: mode = 1
    :: mode = 2
    fi;
    if
    :: mode == 0 -> (tstate[0] >= DONE && tstate[1] >= DONE && tstate[2] >= DONE) /* wait first */
    :: mode == 1 -> skip                                                   /* shut down now */
    :: mode == 2 -> cancelling = true                   /* ... cancelling [executor.C1] */
    fi;
    mode = 0;
    closed = true;
    wake_all();
    if
    :: cancelling ->
       drop_staged(t, got, h, tl, g);                     /* staging: races the takes */
       do                                                 /* the queue: races the refills */
       :: atomic { head < pushed -> t = head; head++; assert(taken[t] == 0); taken[t]++ }; drop(t)
       :: head >= pushed -> break
       od
    :: else -> skip
    fi;
    exited == W;
    i = 0;
    do
    :: i < T ->
       assert(taken[i] == 1);
       assert((tstate[i] == DONE && runs[i] == 1) || (tstate[i] == CANCELLED && runs[i] == 0));
       i++
    :: else -> break
    od
}

init {
    atomic {
        run worker(0);
        run worker(1);
        run canceller();
        run submitter()
    }
}

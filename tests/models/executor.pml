/* tests/models/executor.pml - the executor's claims, steals, idle sleep and ending
 * (include/conc/executor.h, "Idle workers", "Claims and steals"), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as future.h does it:
 *   - the queue: tasks 0..T-1 pushed in order by a submitter; a claim takes up to LIMIT of the
 *     queued tasks with one atomic step (the CAS on the queue's head);
 *   - a claim of two or more is PUBLISHED: the slots (here: the first task's number) are
 *     written, then the claim word (GEN, NEXT, END) in one store [executor.P1], then a wake. The
 *     owner takes each next task with a CAS on its word; a thief reads the word, then the
 *     slot (a separate step), then CASes the word it read (GEN included): the same race;
 *   - a thief steals from a STALE claim: one whose owner is blocked in a task must be stolen
 *     from; any other open claim may be (the C code's age test also finds a claim stale whose
 *     owner is merely slow, and that owner races the thief). With T = 2 and LIMIT = 2 a thief
 *     takes one task (the older half of what is left), never re-published;
 *   - the idle word: SLEEPERS, WAKING, WATCHING, SEQ in one futex word. A sleeper registers
 *     [executor.E1], re-checks (queue, close, stale claims), sleeps on the word it read: with a
 *     timeout when a claim is open but not stale (WATCHING; the timeout may fire at any
 *     moment), else until the word changes. Leaving [executor.E3] drops SLEEPERS, WAKING and
 *     WATCHING. A waker [executor.E2] reads the word; with sleepers and no WAKING (and, for a
 *     claim, no WATCHING) it CASes WAKING and SEQ + 1 in, then futex-wakes one sleeper;
 *   - tasks: task 0 blocks until task 1 is final (done or cancelled): a worker that claimed
 *     both is stuck on its own claim and only a thief can free it. The gate is one CAS from
 *     PENDING to RUNNING (run) or CANCELLED (cancel: a canceller that may cancel task 1, and
 *     any worker once shutdown(cancel_pending) began, for what it takes and for what shutdown
 *     drains);
 *   - ending: a worker that finds the queue closed and drained counts itself QUIET, sleeps,
 *     leaves QUIET to steal from a stale claim, and exits once every worker is quiet (the
 *     last to arrive wakes all);
 *   - the submitter pushes T tasks (waking after each push), then either waits until every
 *     task is final and shuts down, or shuts down at once, with or without cancel_pending.
 * Checked (pan -DSAFETY): every process ends (a stranded task or a lost wake leaves a worker
 * asleep or the submitter waiting: an invalid end state); each task is taken from the queue
 * or a claim exactly once; each task ends run exactly once or cancelled, never both, never
 * neither.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_CLAIM_WAKE a published claim wakes nobody (an earlier sleeper sleeps on)
// broken: STEAL_WITHOUT_CAS a thief stores NEXT + 1 without a CAS (a task taken twice)
// broken: NO_RECHECK a sleeper sleeps without its re-check (a push's wake is lost)
// broken: EXIT_WHEN_DRAINED a worker exits once closed and drained (a claim is stranded)
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define T 2
#define W 2
#define LIMIT 2

#define PENDING 0
#define RUNNING 1
#define DONE 2
#define CANCELLED 3

#define SLEEPERS 15
#define WAKING 16
#define WATCHING 32
#define SEQ 64       /* the sequence: the top two bits, modulo 4 */

byte pushed = 0;      /* tasks pushed */
byte head = 0;        /* the next task a claim takes */
bool closed = false;
bool cancelling = false;

byte tstate[T];       /* the gate */
byte runs[T];
byte taken[T];        /* times taken from the queue or a claim */

/* the claim words and slots */
byte cbase[W];        /* slot 0's task (the slots are consecutive tasks) */
byte cnext[W];
byte cend[W];
byte cgen[W];
bool blocked[W];      /* the worker is stuck in task 0 (its claim is stale) */

byte word = 0;        /* the idle word */
bool sleeping[W];     /* in futex_wait on `word` */
byte quiet = 0;
byte exited = 0;

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

/* [executor.E2]: claim says whether WATCHING also holds the wake back */
inline wake(claim) {
    byte w_v;
    do
    :: w_v = word;
       if
       :: (w_v & SLEEPERS) == 0 || (w_v & WAKING) || (claim && (w_v & WATCHING)) -> break
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

#define STALE_OPEN(o) (cnext[o] < cend[o] && blocked[o])

/* The gate and the task body. */
inline start(me, t) {
    atomic {
        assert(taken[t] == 0);
        taken[t]++;
        ok = false;
        if
        :: tstate[t] != PENDING -> skip                         /* cancelled: never runs */
        :: tstate[t] == PENDING && cancelling -> tstate[t] = CANCELLED
        :: tstate[t] == PENDING && !cancelling && t != 0 -> runs[t]++; tstate[t] = DONE
        :: tstate[t] == PENDING && !cancelling && t == 0 -> tstate[t] = RUNNING; ok = true
        fi
    };
    if
    :: ok ->                                                    /* task 0: stuck until 1 ends */
       blocked[me] = true;
       (tstate[1] == DONE || tstate[1] == CANCELLED);
       atomic { blocked[me] = false; runs[0]++; tstate[0] = DONE }
    :: else -> skip
    fi
}

/* Sleeps (or not, after the re-check). quietly: the ending's sleep. */
inline idle_sleep(me, o, quietly) {
    byte s_v;
    bool work;
    atomic { word++; s_v = word };                         /* [executor.E1] */
#ifdef NO_RECHECK
    work = false;
#else
    if
    :: STALE_OPEN(o) || (!quietly && (head < pushed || closed)) || (quietly && quiet == W) ->
       work = true
    :: else -> work = false
    fi;
#endif
    if
    :: !work && cnext[o] < cend[o] ->                      /* open, not stale: watch */
       atomic { word = word | WATCHING; s_v = word };
       atomic { if :: word == s_v -> sleeping[me] = true :: else -> skip fi };
       if
       :: !sleeping[me] -> skip
       :: sleeping[me] -> sleeping[me] = false             /* the timeout */
       fi
    :: !work && cnext[o] >= cend[o] ->
       atomic { if :: word == s_v -> sleeping[me] = true :: else -> skip fi };
       !sleeping[me]
    :: else -> skip
    fi;
    atomic { word = (word - 1) & ~(WAKING | WATCHING); s_v = 0; work = false } /* [executor.E3] */
}

proctype worker(byte me) {
    byte o = 1 - me, t, n, nx, en, g;
    bool ok, got, more;
top:
    /* Locals keep no stale values between rounds (they would only multiply the states). */
    atomic { t = 0; n = 0; nx = 0; en = 0; g = 0; ok = false; got = false; more = false };
    /* 1. a stale claim: older than the queue (one whose owner is stuck must be taken) */
    if
    :: atomic { cnext[o] < cend[o] -> nx = cnext[o]; en = cend[o]; g = cgen[o] } ->
       t = cbase[o] + nx;                                   /* the slot: a separate read */
#ifdef STEAL_WITHOUT_CAS
       cnext[o] = nx + 1; got = true
#else
       atomic {
           if
           :: cnext[o] == nx && cend[o] == en && cgen[o] == g -> cnext[o] = nx + 1; got = true
           :: else -> skip
           fi
       }
#endif
    :: !STALE_OPEN(o) -> skip
    fi;
    if
    :: got -> start(me, t); goto top
    :: else -> skip
    fi;
    /* 2. the queue */
    atomic {
        if
        :: head < pushed ->
           t = head;
           n = pushed - head;
           if :: n > LIMIT -> n = LIMIT :: else -> skip fi;
           head = head + n;
           more = head < pushed
        :: else -> n = 0
        fi
    };
    if
    :: n > 0 ->
       if
       :: n > 1 ->
          cbase[me] = t;
          atomic { cgen[me]++; cnext[me] = 1; cend[me] = n }   /* [executor.P1] */
       :: else -> skip
       fi;
       if
#ifdef NO_CLAIM_WAKE
       :: n == 1 && more -> wake(false)
#else
       :: n > 1 || more -> wake(!more)
#endif
       :: else -> skip
       fi;
       start(me, t);
       do                                                      /* the rest of the claim */
       :: atomic {
              if
              :: cnext[me] < cend[me] -> t = cbase[me] + cnext[me]; cnext[me]++; got = true
              :: else -> got = false
              fi
          };
          if
          :: got -> start(me, t)
          :: else -> break
          fi
       od;
       goto top
    :: else -> skip
    fi;
    /* 3. closed and drained: the ending */
    if
    :: closed && head == pushed ->
#ifdef EXIT_WHEN_DRAINED
       goto out;
#endif
       atomic { quiet++; ok = quiet == W };
       if
       :: ok -> atomic { word = (word + SEQ) % 256; futex_wake_all() }; goto out
       :: else -> skip
       fi;
       do
       :: quiet == W -> goto out
       :: STALE_OPEN(o) -> quiet--; goto top
       :: else -> idle_sleep(me, o, true)
       od
    :: else -> skip
    fi;
    /* 4. sleep */
    idle_sleep(me, o, false);
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
    byte i = 0, t;
    do
    :: i < T -> pushed++; i++; wake(false)
    :: else -> break
    od;
    if
    :: (tstate[0] >= DONE && tstate[1] >= DONE) -> skip /* wait, then shut down */
    :: true -> skip                                                           /* shut down now */
    :: true -> cancelling = true                                              /* ... cancelling */
    fi;
    closed = true;
    atomic { word = (word + SEQ) % 256; futex_wake_all() };
    if
    :: cancelling ->
       do                                                 /* drain: races the workers */
       :: atomic { head < pushed -> t = head; head++; taken[t]++ };
          atomic { if :: tstate[t] == PENDING -> tstate[t] = CANCELLED :: else -> skip fi }
       :: else -> break
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

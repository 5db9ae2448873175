/* conc/forkpool.h - a pool of worker processes that never hangs when one dies - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's multiprocessing.Pool and ProcessPoolExecutor for C: CPU-bound work spread over
 * processes, with the promise neither keeps: a worker that crashes, is killed or hangs never
 * hangs the pool and loses nothing. The item it was running gets an outcome naming how it
 * died, every other item runs exactly once, a replacement starts, the pool stays usable.
 *
 * CONTENTS   quick start, API, errors, ordering, overlap, configuration, caveats, design
 *
 * QUICK START (examples/15_process_pool_map.c does the same with timings)
 *     static int twice(size_t i, void *arg) { ((long *)arg)[i] *= 2; return 0; }
 *     conc_forkpool_t *p;
 *     if (conc_forkpool_create(&p, NULL) != 0) abort();        // one worker per CPU
 *     long *v = (long *)conc_forkpool_alloc(p, 1000 * sizeof *v); // seen by every worker
 *     for (int i = 0; i < 1000; i++) v[i] = i;
 *     int st = conc_forkpool_map(p, twice, v, 1000, NULL);     // 0: every item returned 0
 *     printf("%d %ld\n", st, v[999]);                          // 0 1998
 *     conc_forkpool_destroy(p);                                // reaps every worker
 *
 * API
 *   create    conc_forkpool_create(&p, opts)          opts NULL: defaults (conc_forkpool_opts_t)
 *   memory    conc_forkpool_alloc(p, size)            shared, same address everywhere, 64-aligned
 *             conc_forkpool_free(p, mem)              NULL is a no-op
 *   map       conc_forkpool_map(p, fn, arg, n, outcomes)   fn(i, arg) for i in [0, n) in workers
 *   submit    conc_forkpool_submit(p, fn, arg, len, &f)    bytes in, bytes out, a future.h future
 *             conc_forkpool_try_submit(p, fn, arg, len, &f)   ... EAGAIN when a bound is full
 *             conc_forkpool_result(f, &len)          the result bytes (status 0), else NULL
 *             conc_forkpool_outcome(f, &out)         status, signal, exit code, attempts
 *             conc_forkpool_cancel(f)                queued or handed over and not started:
 *                                                    dropped; running: worker killed
 *   stop      conc_forkpool_shutdown(p, cancel_pending)   idempotent, reaps every worker
 *             conc_forkpool_terminate(p)             Pool.terminate(): kills running work too
 *             conc_forkpool_destroy(p)               shutdown(false), unmap, free
 *   query     conc_forkpool_workers(p), conc_forkpool_pids(p, pids, n)
 *   A fork-pool future is a future.h future: conc_future_wait, wait_until, wait_any,
 *   as_completed, on_done, retain and release all work on it.
 *
 * ERRORS
 *   create: EINVAL (workers past CONC_FORKPOOL_MAX_WORKERS, a negative task_timeout, a shared
 *     size so large that rounding it up, or adding the control pages, overflows), ENOMEM,
 *     the errno of mmap/socketpair/fork/pthread_create (and of the fork server's signalfd,
 *     on a kernel without pidfds: DESIGN, "Without pidfds"), EMFILE (no fd left
 *     for a worker's socket and pidfd), init's non-zero return (create fails with it and
 *     leaves no process, fd or mapping behind), ECHILD (a worker died in init).
 *   map: 0 if every item returned 0, else the final status of the first failing item in
 *     index order; EINVAL (fn NULL), ENOMEM (no room in the shared region for the chunk
 *     table, or in the parent's heap for the items a death leaves to run again), EPIPE
 *     (after shutdown, or the pool gave up), EDEADLK (from an on_done callback of the
 *     pool's futures: the map would wait for the thread it blocks), EPERM (in a process
 *     other than the pool's parent: a worker, or a fork of the parent). A failing item
 *     costs the parent no memory: outcomes go straight to the caller's array. Per item
 *     (outcomes[i], every one set once map gets past EINVAL, EPERM and EDEADLK):
 *       status    fn's return; ECHILD: its worker died (signal or exit_code says how);
 *                 ETIMEDOUT: it ran past task_timeout and was killed; EPIPE: it never ran
 *                 to the end because the pool gave up on repeated immediate deaths (never
 *                 started, or its worker killed in the giving up: signal SIGKILL), because
 *                 the map could not begin (EPIPE, ENOMEM: attempts 0), or because a later
 *                 round of the map (the items a death left) found no room for its chunk
 *                 table or its ranges (map then returns ENOMEM); an item whose worker died
 *                 and whose retry never ran keeps the outcome of that death (so does such
 *                 a submit task, given up while it waited for its retry); ECANCELED:
 *                 terminate ended it (below)
 *       attempts  times it was started (0: never), 1 plus one per retry
 *   submit: 0, EPIPE (after shutdown or once the pool gave up), EAGAIN (try_submit, a
 *     queue_capacity reached), EINVAL (fn NULL, or arg NULL with len > 0), ENOMEM, EDEADLK (a
 *     blocking submit from an on_done callback of the pool's futures while a queue_capacity
 *     is reached: only that thread makes room), EPERM (as map). On error *f is NULL. A task the
 *     pool gave up on (queued, or running on a worker the giving up killed) ends with EPIPE,
 *     but one whose future was cancelled while queued keeps ECANCELED (outcome too). A task
 *     whose worker has no memory for its argument ends ENOMEM (one attempt, fn never run);
 *     so does one whose result the parent has no memory for (fn ran once; result NULL, the
 *     worker stays).
 *   terminate: map items and submit tasks it ends end ECANCELED where a giving up says
 *     EPIPE. Running ones are killed: signal SIGKILL, that start counted (one that its
 *     task_timeout is killing already stays ETIMEDOUT). The others (queued, not yet started,
 *     or waiting for a retry) never run again: signal 0, with the starts they had (0 unless
 *     a death asked for the retry). The tasks' futures end CANCELLED, as after
 *     conc_forkpool_cancel. A map waiting its turn, and every map and submit after, says
 *     EPIPE, as after shutdown.
 *   outcome: 0, EAGAIN (not done), EINVAL (not a fork-pool future, or out NULL).
 *   cancel: 0 (queued, or handed over to a worker that has not started it: dropped, the
 *     future CANCELLED, fn never runs, the worker stays, and the outcome is ECANCELED with
 *     signal 0 and attempts as before; running: its worker is SIGKILLed and replaced, and
 *     once that process has exited, so that fn writes nothing more to the shared region,
 *     cancel returns and the future is CANCELLED too, and the outcome is ECANCELED with
 *     signal SIGKILL and that start counted: conc_future_state tells a cancelled task from
 *     one whose fn returned ECANCELED itself, FAILED), EBUSY
 *     (already done, or another cancel of it is under way), EINVAL (not a fork-pool future),
 *     EPERM (as map).
 *   free of memory this pool did not hand out aborts: "conc_forkpool_free: not a block ...".
 *   alloc, free, pids, shutdown, terminate and destroy in a process other than the pool's
 *   parent abort: "conc_forkpool_shutdown: called in a process other than the pool's parent".
 *   NULL for the pool (or create's out pointer): EINVAL from create, map, submit and
 *   try_submit; alloc, pids, workers, shutdown, terminate and free of a block abort
 *   ("conc_forkpool_alloc: NULL pool"); destroy(NULL) does nothing. A NULL future: EINVAL from
 *   outcome and cancel, NULL from result.
 *   No call changes errno, failing or not (what libc sets on the way is put back).
 *
 * ORDERING CONTRACT
 *   - A worker sees the parent's memory as it was at create, plus the shared region, live.
 *     Replacement workers see exactly that too, however the parent changed since.
 *   - Shared-memory writes the parent made before map/submit are visible to fn; writes fn made
 *     to the shared region are visible to the parent once map returns (or the future is done).
 *   - Exactly once: every map item runs once, except the one running when its worker died,
 *     which is reported as died even if fn had just returned (and with retries may run again).
 *     Items its worker finished stay done; items of its chunk it had not started run elsewhere.
 *
 * WHICH CALLS MAY OVERLAP
 *   Every call may come from any thread of the parent at any time, except destroy, which
 *   frees the pool (and never from an on_done callback: see CAVEATS): call it once no other
 *   call can still be inside (a submit blocked on a full queue is: shut down first, which
 *   makes such a submit return EPIPE, and let that thread return; a map still running is
 *   waited for). Maps from several threads run one after another, in the order they were
 *   called (a thread that maps in a loop passes no other); submits run on workers
 *   the running map does not need (a map takes every idle worker, so submits wait for it).
 *   alloc/free may overlap maps: the region is live.
 *   Workers, and every other process but the parent, must not call forkpool functions (they
 *   have no pool, only a copy of its memory): map, submit and cancel return EPERM there,
 *   alloc, free, pids, shutdown, terminate and destroy abort (ERRORS).
 *
 * CONFIGURATION (conc_forkpool_opts_t, or NULL for defaults)
 *   workers              0: one per CPU (at most CONC_FORKPOOL_MAX_WORKERS = 1024)
 *   init, init_arg       runs in each new worker, replacements too; non-zero fails create
 *   max_tasks_per_child  a worker exits and is replaced after this many submit tasks or map
 *                        chunks (0: never)
 *   task_timeout         ns per map item and per submit task from its start (0: none); past
 *                        it: SIGTERM, SIGKILL CONC_FORKPOOL_GRACE later, then a replacement
 *   retries              re-runs of a map item or submit task whose worker died (ECHILD
 *                        only: timed-out and cancelled work is never re-run). A submit
 *                        task whose worker died before it started it (handed over, not
 *                        yet past the start gate) never ran: it goes back to the head of
 *                        the queue with no attempt counted and no retry used, twice; a
 *                        third such death in a row is its own (a worker that cannot take
 *                        its argument would take it for good), as any other death
 *   queue_capacity       a bound on queued submit tasks, past which submit waits (0: none,
 *                        as Python's ProcessPoolExecutor: a submit never waits for room)
 *   shared_size          bytes reserved for the shared region (0: 1 GiB, paid as touched);
 *                        rounded up to whole pages, all of it for conc_forkpool_alloc (and
 *                        a map's chunk table): the pool's own control pages come on top
 *   Macros: CONC_FORKPOOL_GRACE (100 ms), CONC_FORKPOOL_GIVE_UP (5 immediate deaths in a
 *   row), CONC_FORKPOOL_BACKOFF (1 ms, doubling up to 256 ms between immediate deaths),
 *   CONC_FORKPOOL_SEND_HOOK(fd) (called in a submitter right before it writes its task to a
 *   worker's socket fd itself, outside the pool lock; tests hold it there; default nothing),
 *   CONC_FORKPOOL_START_HOOK() (called in a worker that has read a submit task, right before
 *   it claims it at the start gate; tests hold a worker there; default nothing),
 *   CONC_FORKPOOL_RESULT_MALLOC(n) (allocates, in the parent, the buffer for a task's result
 *   of n bytes; tests fail it; default malloc).
 *
 * CAVEATS (fork)
 *   - A worker is a fork of the parent at create: pointers to memory made later (malloc'd
 *     after create) mean nothing there. Pass data through the shared region or through
 *     memory set up before create; map's arg and submit's fn must be valid there.
 *   - Create the pool early, before threads that hold locks (a fork copies locked mutexes
 *     as they are). glibc makes malloc and stdio safe across fork; your own locks are not.
 *     create flushes every stdio stream first (fflush(NULL), so no buffered output is
 *     duplicated into the workers): it waits for a stream another thread holds locked.
 *     Output that another thread buffers after that flush, before the fork server is forked,
 *     is copied into the server: in stdout and stderr the server and the workers drop it
 *     (__fpurge), so only the parent writes it; in any other stream (which cannot be
 *     enumerated) the server writes it once more, as it forks its first worker: make such
 *     a stream unbuffered (setvbuf) if other threads may write to it while create runs.
 *     Replacements never copy the live parent: they are forked from a fork server made at
 *     create, a single-threaded copy of the parent as it was then.
 *   - The fork server and the workers run in a process group of their own: a signal sent to
 *     the host's group (a terminal's hangup, Ctrl-C, Ctrl-\, kill(0, sig), timeout(1))
 *     reaches the host only, which decides; a signal that kills a worker is its death
 *     (ECHILD), one that kills the server the pool's end (it gives up: EPIPE). Workers ignore
 *     SIGINT, SIGTTOU and SIGTTIN (outside the terminal's foreground group, a read from it
 *     fails with EIO and a write goes through), and SIGPIPE if the host ignored it at create
 *     (a task's write to a pipe with no reader then fails with EPIPE, as in Python's workers;
 *     with SIGPIPE's default it kills the worker, as it would the host), every other signal
 *     at its default; they die with the parent (PR_SET_PDEATHSIG),
 *     keep only fds 0, 1 and 2 besides their socket to the parent at fd 3, leave with
 *     _exit (stdio is flushed after each task).
 *     fn must leave fd 3 alone: a worker whose socket fn closed or replaced (dup2, a loop
 *     that closes every fd past 2) dies when it answers. A submitted task's outcome is then
 *     that death (ECHILD, exit code 0); map items report through shared memory, so theirs
 *     stand, and the pool replaces the worker. If fd 3 is then some other socket, a task
 *     ends only by task_timeout or cancel. fn that calls exit() runs, in the worker, the
 *     atexit handlers the parent had at create (its outcome is ECHILD with that exit code):
 *     _exit skips them. No SIGCHLD handler is installed: the host's children are never
 *     touched. The pool's own fds are close-on-exec, and 3 or above in every process of the
 *     pool: where the host closed 0, 1 or 2, the pool never takes those numbers (a printf
 *     there, the host's or fn's, fails rather than write into a pool socket). A child that
 *     fn forks without exec keeps a copy of its worker's socket; the pool never waits for it
 *     (a worker's death is settled when the server reaps it, not at its socket's EOF; with
 *     the server dead, at its exit, which its pidfd shows). A child the host forks without
 *     exec keeps copies of the pool's fds too; shutdown and destroy never wait for it either.
 *     A host that is a child subreaper inherits the workers of a server that died: the pool
 *     reaps them (waitid on each one's pidfd, never another child of the host; without
 *     pidfds, by its pid while /proc shows it is our zombie).
 *   - on_done callbacks of fork-pool futures run on the pool's monitor thread: keep them
 *     short and never block on the same pool: a map there returns EDEADLK, and so does a
 *     blocking submit that finds a bounded queue full (try_submit: EAGAIN), since only that
 *     thread makes room. conc_forkpool_shutdown there refuses new work (and cancels what
 *     is queued if asked), then returns without waiting, as conc_executor_shutdown from a
 *     task does: a later shutdown or destroy from another thread finishes and reaps.
 *     conc_forkpool_destroy there aborts ("called from an on_done callback").
 *   - shutdown and destroy wait for running work, as Python's close and join do: a task that
 *     never returns, with no task_timeout and no future to conc_forkpool_cancel it by, keeps
 *     them waiting. conc_forkpool_terminate ends it, and from another thread of the parent a
 *     shutdown that waits for it; destroy overlaps no call (WHICH CALLS MAY OVERLAP), so shut
 *     down (or terminate) first where such a task may run, then destroy. From an on_done
 *     callback terminate kills and cancels, then returns without waiting, as shutdown does.
 *   - conc_future_cancel on a fork-pool future drops a queued task but cannot stop a running
 *     one (EBUSY): use conc_forkpool_cancel to kill it.
 *   - A worker that dies holding a lock in the shared region leaves it held (as PostgreSQL's
 *     postmaster knows): the pool reports the death; what the shared data means is yours.
 *   - The pool memory region is reserved with MAP_NORESERVE: touching more than the machine
 *     can back ends in SIGBUS (a worker's is reported as its death).
 *   - Under ThreadSanitizer the fork server and the workers are forks of a multi-threaded
 *     parent: TSan turns its checks off in such a child (its ForkChildAfter: "ignores for
 *     everything") and would die only if it started a thread (die_after_fork), which neither
 *     ever does, so no TSAN_OPTIONS are needed. The parent side, where the threads are (API
 *     calls and the monitor), is checked in full; a worker is single-threaded.
 *
 * DESIGN
 *   Processes. create maps the shared region (MAP_SHARED|MAP_ANONYMOUS|MAP_NORESERVE) and
 *   starts one monitor thread in the parent. The monitor forks the fork server, and the fork
 *   server forks every worker, first generation and replacements alike, so all of them see
 *   the same pristine image. The monitor forks it (not the caller) because PR_SET_PDEATHSIG
 *   fires when the forking THREAD exits: the monitor lives exactly as long as the pool, the
 *   calling thread may not. The fork server sets PDEATHSIG too, so parent death takes the
 *   server down and the server's death takes its workers down; both check getppid() after
 *   prctl for a parent that died first. The server is the workers' parent: it reaps them
 *   (it polls a pidfd per worker) and reports each death with its wait status. It sends the
 *   monitor the worker's socket and a pidfd (SCM_RIGHTS): the pidfd lets the monitor signal
 *   that exact process (timeouts, cancel) with no pid-reuse race. The monitor polls the
 *   server's own pidfd too: its socket's EOF would not show the server's death while a child
 *   the host forked during create holds a copy of the server's end.
 *   Why a monitor thread, not the server, watches the workers: results and argument bytes
 *   travel between the parent and the workers, and only a thread of the parent can read
 *   them into the parent's memory and complete its futures. One thread polls everything
 *   (an eventfd for the API calls, the server's socket, each worker's socket) and owns the
 *   state under one lock; API calls take the lock briefly and may write to an idle worker
 *   themselves (submit's round trip then skips a thread hop).
 *   Death. A worker is dead once the server reported its status; every byte it sent is read
 *   first (a result sent just before dying is not lost). Those bytes are all queued on its
 *   socket by the time it is reaped, so the pool reads what is there then and does not wait
 *   for the socket's EOF, which a child that fn forked (and that holds a copy of the socket)
 *   would put off for as long as it lives. With the server dead no report comes: a worker is
 *   dead once its pidfd polls readable (it has exited), and is read the same way. What it was
 *   doing is in the parent's books (a submit task) or in its slot in shared memory (a map).
 *   map. The items of a round are a list of ranges; the round's index space is cut into
 *   chunks that shrink toward the end (each 1/(2 workers) of what remains) and written into
 *   a table in shared memory before the round starts. Workers take chunk numbers with one
 *   fetch_add on a shared cursor and, per item, store "item v+1 running" in their slot:
 *
 *   worker (per chunk)                       parent, when the worker is dead
 *   -------------------------------------    ------------------------------------------------
 *   slot.running = 0                         c = slot.chunk, r = slot.running
 *   j = fetch_add(cursor, 1)                 if c and !done[c-1]: items before r-1 are done,
 *   slot.chunk = j + 1                         r-1 is the victim (ECHILD/ETIMEDOUT, maybe
 *   for v in chunk j:                          retried), the rest of the chunk runs again;
 *     slot.running = v + 1; fn(v)              mark done[c-1]
 *     (non-zero: send FAIL(v) first)         round end (no worker left in it): every chunk
 *   done[j] = 1                                j < cursor still !done was taken by a worker
 *                                              that died before slot.chunk: all of it runs again
 *
 *   A worker that dies before `slot.chunk = j + 1` leaves chunk j undone with no slot naming
 *   it: the end-of-round scan finds it. Dying after `running = v + 1` names v. The parent
 *   reads the slots for a death only after it (reported through the kernel, which orders it
 *   after the dead process's last store), so relaxed atomics suffice there; the monitor's
 *   live timeout sample pairs an acquire load of running with the worker's release store,
 *   which orders started_ns before it. Orphaned ranges
 *   and retries form the next round, until a round leaves nothing over. tests/models/
 *   forkpool.pml checks exactly-once with either or both workers dying at any step.
 *   submit. A task is a future made by future.h's conc__future_create_ext: the task record
 *   rides in the future's own allocation and is freed (with the result bytes) when the last
 *   reference goes. Frames on the worker's socket: a 32-byte header and the bytes; the
 *   monitor reads and writes without blocking, so a huge result never stalls other workers.
 *   A task handed over is claimed by its worker at a start gate (one CAS in its slot) before
 *   fn runs; cancel tries the same CAS first, so a task not yet started is dropped without
 *   a kill, and so does the death of its worker, so a task handed to a worker that died
 *   before it started it (killed while idle, say) runs on the next worker, as if it had
 *   waited in the queue (see "The start gate"), up to CONC__FORKPOOL_PUT_BACK_MAX times.
 *   Respawn. A worker that dies before it reported ready is an immediate death: the next
 *   spawn waits CONC_FORKPOOL_BACKOFF, doubling; after CONC_FORKPOOL_GIVE_UP in a row the
 *   pool gives up: every worker is killed, pending work fails with EPIPE, later calls EPIPE.
 *   A worker the server could not make at all (fork, socketpair or pidfd_open failed there:
 *   out of processes, memory or fds, often for a moment), or whose socket and pidfd the
 *   parent had no fd for (it is killed then), is asked for again at the same backoff while
 *   the other workers carry on; only with no worker left for 2 s of such failures
 *   (CONC__FORKPOOL_SPAWN_GIVE_UP_NS) does the pool give up.
 *   shutdown. Refuse new work, cancel or finish queued tasks, wait for the running map, send
 *   each worker QUIT (exit), wait for every death report, shut down and close the server's
 *   socket (it reaps what is left and exits), reap the server, join the monitor, close every fd.
 *   terminate. The giving up on purpose: cancel the queue (under the same lock hold, so no
 *   queued task reads as given up), kill every worker, then the shutdown above, which finds
 *   no running work to wait for. The deaths settle what the workers ran, as any giving up's
 *   do, with ECANCELED for EPIPE (conc__forkpool_given_up_status).
 *   Without pidfds. pidfd_open is Linux 5.3 (RHEL 8's 4.18 has none), and seccomp profiles
 *   written before it refuse it (ENOSYS, or EPERM as older container runtimes' did). create
 *   tries it once; refused, the pool runs the same, watching its processes the older way,
 *   each pidfd's job done by something a kernel of any age has:
 *     the server learns of its workers' exits from SIGCHLD, blocked and read from a
 *     signalfd (every child of the server is a worker), and reaps each by its pid;
 *     a signal to a worker (timeout, cancel, kill at a stop or giving up) goes through the
 *     server (a KILL packet), which sends it only while that worker is its unreaped child,
 *     so the pid cannot name another process: the one thing a pidfd was for;
 *     cancel waits for the killed worker's exit by its pid (conc__forkpool_pid_look: /proc
 *     shows it a zombie with no thread left, or it is gone; the kernel gives a pid out again
 *     only after its reap, and only once it has gone through every other free pid);
 *     the monitor looks whether the server has exited every CONC__FORKPOOL_LOOK_NS (100
 *     ms), as its socket's EOF may never come (a child the host forked holds its end), and
 *     with the server gone it settles each worker at its exit by its pid, as above, a
 *     subreaper host reaping its zombie once the kernel has handed it over. A packet to the
 *     server never blocks for good: while the socket is full the sender reads the server's
 *     packets (the server may be waiting for room to answer), and a full socket with an
 *     exited server is EPIPE. tests/test_forkpool.c runs whole under CONC_TEST_NO_PIDFD=1
 *     (make test does), a seccomp filter refusing pidfd_open and pidfd_send_signal (ENOSYS),
 *     and under CONC_TEST_NO_PIDFD=waitid, refusing waitid on a pidfd as Linux 5.3 does.
 */
#ifndef CONC_FORKPOOL_H
#define CONC_FORKPOOL_H

#include "base.h"
#include "cond.h"
#include "future.h"
#include "lock.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_FORKPOOL_GRACE
#define CONC_FORKPOOL_GRACE (100 * CONC_MS) /* SIGTERM to SIGKILL for a timed-out worker */
#endif
#ifndef CONC_FORKPOOL_GIVE_UP
#define CONC_FORKPOOL_GIVE_UP 5 /* immediate deaths in a row before the pool gives up */
#endif
#ifndef CONC_FORKPOOL_BACKOFF
#define CONC_FORKPOOL_BACKOFF (1 * CONC_MS) /* first respawn delay after an immediate death */
#endif
#define CONC_FORKPOOL_BACKOFF_MAX (256 * CONC_MS) /* the doubling stops here */
/* How often the monitor looks whether the fork server has exited when it has no pidfd to poll
 * for that (DESIGN, "Without pidfds"). */
#define CONC__FORKPOOL_LOOK_NS (100 * CONC_MS)
/* CONC_FORKPOOL_SEND_HOOK(fd) runs in a submitter that writes its task to an idle worker's
 * socket fd itself, outside the pool lock, right before the write; tests hold a thread there.
 * Default: nothing. */
#ifndef CONC_FORKPOOL_SEND_HOOK
#define CONC_FORKPOOL_SEND_HOOK(fd) ((void)0)
#endif
/* CONC_FORKPOOL_START_HOOK() runs in a worker that has read a submit task (and its argument),
 * right before it claims the task at the gate (see "The start gate"); tests hold a worker
 * there. Default: nothing. */
#ifndef CONC_FORKPOOL_START_HOOK
#define CONC_FORKPOOL_START_HOOK() ((void)0)
#endif
/* CONC_FORKPOOL_RESULT_MALLOC(n) allocates, in the parent's monitor, the buffer a task's
 * result of n bytes is read into; tests fail it. Default: malloc. */
#ifndef CONC_FORKPOOL_RESULT_MALLOC
#define CONC_FORKPOOL_RESULT_MALLOC(n) malloc(n)
#endif
/* How long the fork server may fail to make any process (fork, socketpair or pidfd_open
 * failing: out of processes, memory or fds, often for a moment) while no worker is left,
 * before the pool gives up: long enough for a burst to pass, short enough that a map with no
 * worker does not wait for good. With a worker left the pool goes on with fewer. */
#define CONC__FORKPOOL_SPAWN_GIVE_UP_NS (2 * CONC_SEC)
#define CONC_FORKPOOL_MAX_WORKERS 1024u     /* a poll set and a slot table, not a fleet */
#define CONC__FORKPOOL_SHARED_DEFAULT ((size_t)1 << 30) /* reserved, paid as touched */
#define CONC__FORKPOOL_CHUNK_DIV 2u              /* a chunk is 1/(2 workers) of what remains */
#define CONC__FORKPOOL_STOP_GRACE (2 * CONC_SEC) /* QUIT to SIGKILL for a worker at shutdown */
#define CONC__FORKPOOL_FD 3       /* the worker's socket (and the server's) after hygiene */
#define CONC__FORKPOOL_FD_MIN 3   /* the lowest pool fd: 0-2 are stdio, closed or not (fd_up) */
#define CONC__FORKPOOL_STAGE 4096 /* bytes one recv takes: a small message is one call */
/* SPAWN requests in flight at most. A SEQPACKET socket queues at most net.unix.max_dgram_qlen
 * (default 10) packets: with fewer requests in flight than that, the parent's blocking send
 * never waits for a server that is itself waiting to send to the parent. */
#define CONC__FORKPOOL_SPAWN_BATCH 4u
/* First capacity of the map's ranges to run again next round (doubled when full). */
#define CONC__FORKPOOL_RERUNS_FIRST 16u
/* A task whose worker dies before its start gate goes back to the queue this many times; the
 * next such death is its own (a worker that cannot take its argument, say: out of memory
 * for it), or it would be handed to worker after worker for good. */
#define CONC__FORKPOOL_PUT_BACK_MAX 2u

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* one number on every architecture (new syscall table) */
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

typedef struct conc_forkpool_opts {
    unsigned workers;       /* 0: one per CPU */
    int (*init)(void *arg); /* runs in each new worker; non-zero fails create */
    void *init_arg;
    unsigned max_tasks_per_child; /* 0: never recycle */
    int64_t task_timeout;         /* ns from the start of an item or task; 0: none */
    unsigned retries;             /* re-runs after a worker death (ECHILD only) */
    size_t queue_capacity;        /* a bound on queued submit tasks; 0: none (Python's) */
    size_t shared_size;           /* bytes of the shared region; 0: 1 GiB */
} conc_forkpool_opts_t;

/* DESIGN's tag in C. In C++ the function conc_forkpool_outcome would hide a struct of that
 * name (g++ -Wshadow says so), so there the tag is the typedef's name. Code shared by both
 * languages names the type by its typedef, conc_forkpool_outcome_t. */
#if defined(__cplusplus)
typedef struct conc_forkpool_outcome_t {
#else
typedef struct conc_forkpool_outcome {
#endif
    int status;        /* fn's return, or ECANCELED / ETIMEDOUT / ECHILD / EPIPE / ENOMEM */
    int signal;        /* the signal that ended the worker, 0 if it exited */
    int exit_code;     /* its exit status, 0 if signalled */
    unsigned attempts; /* times started: 1, plus one per retry; 0: never started */
} conc_forkpool_outcome_t;

typedef int (*conc_forkpool_task_fn)(const void *arg, size_t len, void **result,
                                     size_t *result_len);
typedef int (*conc_forkpool_map_fn)(size_t i, void *arg);
typedef struct conc_forkpool conc_forkpool_t;

/* -------------------------------------------------------------------------------------------
 * Shared memory: the control area (round descriptor, one slot per worker), then the arena
 * ------------------------------------------------------------------------------------------- */
typedef struct conc__forkpool_range {
    uint64_t lo, hi;   /* item indexes [lo, hi) */
    uint64_t vstart;   /* the round's virtual index of lo */
    uint64_t attempts; /* what a start of these items makes their attempt count (parent only) */
    conc_forkpool_outcome_t death; /* a retry: how its last start ended, its outcome if the
                                      retry never runs; status 0: none (parent only) */
} conc__forkpool_range;

typedef struct conc__forkpool_round {
    uint64_t cursor; /* next chunk number: fetch_add by workers; its own line */
    char pad_[CONC_CACHELINE - sizeof(uint64_t)];
    /* Written by the parent before it sends MAP; read-only for the round. */
    conc_forkpool_map_fn fn;
    void *arg;
    uint64_t id; /* the round's number */
    uint64_t nranges, nchunks;
    conc__forkpool_range *ranges; /* nranges, in the arena */
    uint64_t *starts;             /* nchunks + 1 virtual chunk starts, in the arena */
    uint8_t *done;                /* nchunks flags, in the arena */
    uint32_t timed;               /* store started_ns per item (task_timeout set) */
} __attribute__((aligned(CONC_CACHELINE))) conc__forkpool_round;

typedef struct conc__forkpool_slot {
    uint64_t chunk;     /* chunk number + 1 being run, 0: none (worker-written) */
    uint64_t running;   /* virtual item + 1 started, 0: none (worker-written) */
    int64_t started_ns; /* when `running` started (only if the round is timed) */
    uint64_t gate;      /* submit task id * 4 + HANDED, STARTED or DROPPED: "The start gate" */
    char pad_[CONC_CACHELINE - 4 * sizeof(uint64_t)];
} conc__forkpool_slot;
CONC_STATIC_ASSERT(sizeof(conc__forkpool_slot) == CONC_CACHELINE, "a slot is one line");
CONC_STATIC_ASSERT(sizeof(conc__forkpool_round) % CONC_CACHELINE == 0, "round: lines");

/* -------------------------------------------------------------------------------------------
 * Messages. Worker socket: SOCK_STREAM, a header then `len` bytes. Server socket:
 * SOCK_SEQPACKET, one conc__forkpool_ctl per packet (fds ride with SPAWNED).
 * ------------------------------------------------------------------------------------------- */
enum {
    CONC__FORKPOOL_MSG_MAP = 1,  /* P->W: run round `id` */
    CONC__FORKPOOL_MSG_TASK,     /* P->W: task `id`, fn in `a`, len argument bytes */
    CONC__FORKPOOL_MSG_QUIT,     /* P->W: exit */
    CONC__FORKPOOL_MSG_READY,    /* W->P: init returned 0 */
    CONC__FORKPOOL_MSG_INITFAIL, /* W->P: init returned `status` */
    CONC__FORKPOOL_MSG_FAIL,     /* W->P: map item (virtual `a`) returned `status` */
    CONC__FORKPOOL_MSG_DONE,     /* W->P: no chunk left in round `id` */
    CONC__FORKPOOL_MSG_RESULT    /* W->P: task `id` returned `status`, len result bytes;
                                   a = 1: the worker exits now (max_tasks_per_child) */
};
typedef struct conc__forkpool_msg {
    uint32_t type;
    int32_t status;
    uint64_t id;
    uint64_t a;
    uint64_t len;
} conc__forkpool_msg;
CONC_STATIC_ASSERT(sizeof(conc__forkpool_msg) == 32, "a frame header is 32 bytes");

enum {
    CONC__FORKPOOL_CTL_SPAWN = 1, /* P->S: fork a worker for slot */
    CONC__FORKPOOL_CTL_SPAWNED,   /* S->P: slot, pid; fds: socket, pidfd (none without) */
    CONC__FORKPOOL_CTL_SPAWNFAIL, /* S->P: slot, errno in status */
    CONC__FORKPOOL_CTL_DIED,      /* S->P: slot, pid, wait status */
    CONC__FORKPOOL_CTL_KILL       /* P->S: send signal `status` to slot's pid if not reaped */
};
typedef struct conc__forkpool_ctl {
    int32_t type, slot, pid, status;
} conc__forkpool_ctl;

/* -------------------------------------------------------------------------------------------
 * Parent-side books
 * ------------------------------------------------------------------------------------------- */
enum { /* task states, under the pool lock */
       CONC__FORKPOOL_T_QUEUED,
       CONC__FORKPOOL_T_RUNNING,
       CONC__FORKPOOL_T_DONE
};

typedef struct conc__forkpool_task {
    conc_forkpool_t *pool;
    conc_future_t *f;
    struct conc__forkpool_task *next; /* queue link */
    conc_forkpool_task_fn fn;
    void *arg; /* a malloc'd copy */
    size_t len;
    void *result; /* malloc'd by the monitor; freed with the future */
    size_t result_len;
    conc_forkpool_outcome_t outcome; /* final once done */
    uint64_t id;
    int state;      /* under the pool lock */
    uint32_t done;  /* 1 once final: read without the lock by cancel (acquire) */
    int worker;     /* while RUNNING */
    bool cancelled; /* conc_forkpool_cancel killed its worker, or dropped it (below) */
    bool dropped;   /* conc_forkpool_cancel won the start gate: its worker skips it and stays */
    bool handed;    /* handed over once (its future RUNNING), started or not: attempts may be 0
                       again if its worker died before the start gate */
    bool by_cancel; /* ended by a cancel other than conc_forkpool_cancel's kill (a cancel or
                       shutdown(cancel_pending) while queued, or terminate): its ECANCELED is
                       a cancel's, not fn's, and its future ends CANCELLED */
    /* Times a worker died with it before its start gate (CONC__FORKPOOL_PUT_BACK_MAX). */
    uint8_t put_back;
    /* How the start before a retry ended (status 0: no retry due). Dispatch clears the
     * outcome for the re-run; a death before its gate puts this back, so a retry that never
     * starts keeps the death that asked for it. */
    conc_forkpool_outcome_t retry_death;
} conc__forkpool_task;

enum {                            /* worker states, under the pool lock */
       CONC__FORKPOOL_W_EMPTY,    /* no process; spawn_at says when to ask for one */
       CONC__FORKPOOL_W_SPAWNING, /* SPAWN sent to the server */
       CONC__FORKPOOL_W_STARTING, /* have its socket; waiting for READY */
       CONC__FORKPOOL_W_IDLE,
       CONC__FORKPOOL_W_TASK, /* running `task` */
       CONC__FORKPOOL_W_MAP,  /* in round `round` */
       CONC__FORKPOOL_W_GONE  /* shutting down: QUIT sent or killed; waiting for the death */
};

typedef struct conc__forkpool_worker {
    int state;
    pid_t pid;
    int sock, pidfd;
    bool eof, died; /* a death is handled once both are true */
    int wstatus;
    int init_status;  /* INITFAIL's status */
    int64_t spawn_at; /* EMPTY: when to spawn */
    int64_t kill_at;  /* a SIGTERM was sent: SIGKILL at this time (0: none) */
    bool timed_out;   /* killed for task_timeout: victim_v names the item (map) */
    bool given_up;    /* killed because the pool gave up: what it ran ends EPIPE */
    bool fdless;      /* we had no fd for its socket or pidfd: its death was ours to cause */
    uint64_t victim_v;
    conc__forkpool_task *task;
    int64_t task_started;
    uint64_t round;
    /* input: header, then payload */
    conc__forkpool_msg in_hdr;
    size_t in_got;
    char *in_buf;
    size_t in_off; /* a payload of in_hdr.len bytes with no in_buf: no memory, read and dropped */
    /* output: one message at a time */
    conc__forkpool_msg out_hdr;
    const char *out_buf;
    size_t out_len, out_off; /* out_off counts header bytes too */
    uint8_t out_busy;        /* a message is (partly) unsent; relaxed atomic, see out_busy() */
    bool caller_sends;       /* a submitter writes this message outside the lock: until it
                                clears this (under the lock), the output fields and the fd
                                are its own, and the worker's death waits */
} conc__forkpool_worker;

typedef struct conc__forkpool_block { /* the arena allocator's books, parent-private */
    size_t off, size;
    bool used;
    struct conc__forkpool_block *next;
} conc__forkpool_block;

struct conc_forkpool {
    conc_forkpool_opts_t opts;
    unsigned nworkers;
    char *shm; /* the shared region */
    size_t shm_size;
    conc__forkpool_round *round; /* at shm */
    conc__forkpool_slot *slots;  /* after it */
    size_t arena_off;            /* where the arena starts in shm */
    conc__forkpool_block *blocks;
    pid_t parent_pid, server_pid;
    bool pidfds; /* pidfd_open works here; else the pool watches without them (DESIGN) */
    /* A private page wiped in every fork (MADV_WIPEONFORK) holding CONC__FORKPOOL_HOME_MARK:
     * the parent reads the mark, any fork of it reads 0. NULL where the kernel has no
     * MADV_WIPEONFORK (before 4.14): getpid then. */
    const uint32_t *home;
    int evfd, ctl, ctl_server; /* ctl: our end; ctl_server: the server's (until forked) */
    pthread_t monitor;
    conc_lock_t lock;
    conc_cond_t cond; /* everything waits here: create, submit (full), map, shutdown */
    /* under lock */
    conc__forkpool_worker *w;
    conc__forkpool_task *qhead, *qtail;
    size_t queued, running_tasks;
    uint64_t next_task_id;
    int create_status;       /* -1 while create waits */
    int64_t monitor_wake_at; /* the monitor looks at the books again by then (see dispatch) */
    bool closed, stopping, stopped, broken, joined;
    bool terminated; /* the giving up was terminate's: what it ends is ECANCELED, not EPIPE */
    unsigned quick_deaths;
    int64_t spawn_failing_since; /* the first of the server's failures in a row, 0: none */
    int64_t backoff;
    /* the map in progress */
    uint64_t map_turns, map_serving; /* maps take turns in arrival order: tickets given, served */
    unsigned maps_inside; /* threads in a map, waiting their turn or not: destroy waits for 0 */
    bool map_active, map_finished, round_live;
    int map_status;
    /* Item outcomes as they happen, later ones replacing earlier ones: into the caller's
     * array, or without one only the first failing item in index order (map_first, UINT64_MAX:
     * none), which is all map returns. No memory grows with the failures. */
    conc_forkpool_outcome_t *map_out;
    uint64_t map_first;
    int map_first_status;
    conc__forkpool_range *next_ranges; /* orphans and retries for the next round (private) */
    size_t nnext, cap_next;
    conc__forkpool_range *cur_ranges; /* the round's ranges, private copy */
    char *round_mem;                  /* the round's tables in the arena */
};

/* -------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */
/* Sends (sending) or receives len bytes in full, through EINTR and short transfers: 0, EPIPE
 * (end of file before len bytes came), or an errno. */
CONC_NOINLINE int conc__forkpool_transfer_full(int fd, char *p, size_t len, bool sending) {
    while (len) {
        ssize_t n = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n == 0 && !sending)
            return EPIPE;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

CONC_INLINE int conc__forkpool_write_full(int fd, const void *buf, size_t len) {
    return conc__forkpool_transfer_full(fd, (char *)(uintptr_t)buf, len, true);
}

CONC_INLINE int conc__forkpool_read_full(int fd, void *buf, size_t len) {
    return conc__forkpool_transfer_full(fd, (char *)buf, len, false);
}

/* Room for the SCM_RIGHTS message of a control packet: up to two fds. */
typedef union conc__forkpool_ctl_fds {
    char buf[CMSG_SPACE(2 * sizeof(int))];
    struct cmsghdr align;
} conc__forkpool_ctl_fds;

/* The msghdr of one control packet m: one iovec (iov), and u's room for fds. */
CONC_INLINE void conc__forkpool_ctl_msghdr(struct msghdr *mh, struct iovec *iov, void *m,
                                           conc__forkpool_ctl_fds *u) {
    iov->iov_base = m;
    iov->iov_len = sizeof(conc__forkpool_ctl);
    memset(mh, 0, sizeof *mh);
    mh->msg_iov = iov;
    mh->msg_iovlen = 1;
    mh->msg_control = u->buf;
    mh->msg_controllen = sizeof u->buf;
}

/* One control packet, with up to two fds; flags: 0 or MSG_DONTWAIT. */
CONC_NOINLINE int conc__forkpool_ctl_send(int fd, const conc__forkpool_ctl *m, const int *fds,
                                          int nfds, int flags) {
    struct iovec iov;
    struct msghdr mh;
    conc__forkpool_ctl_fds u;
    conc__forkpool_ctl_msghdr(&mh, &iov, (void *)(uintptr_t)m, &u);
    if (nfds <= 0) {
        mh.msg_control = NULL; /* no SCM_RIGHTS message */
        mh.msg_controllen = 0;
    } else {
        memset(&u, 0, sizeof u);
        /* The lengths' types differ by libc (glibc: size_t; musl, as POSIX: socklen_t), and
         * -Wconversion stops a musl build that assigns them a size_t as it is. */
        mh.msg_controllen = (__typeof__(mh.msg_controllen))CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = (__typeof__(c->cmsg_len))CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | flags);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return errno;
    }
}

/* 0 and a packet (fds[i] -1 when absent), EPIPE at EOF, EAGAIN, or an errno. */
CONC_NOINLINE int conc__forkpool_ctl_recv(int fd, conc__forkpool_ctl *m, int *fds, int flags) {
    struct iovec iov;
    struct msghdr mh;
    conc__forkpool_ctl_fds u;
    conc__forkpool_ctl_msghdr(&mh, &iov, m, &u);
    fds[0] = fds[1] = -1;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    if (n == 0)
        return EPIPE;
    /* One control message at most: the pool's sockets carry nothing but its own SCM_RIGHTS
     * (no SO_PASSCRED). So no CMSG_NXTHDR, whose musl definition -Wsign-conversion rejects
     * in the including file. */
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds, CMSG_DATA(c), (k > 2 ? 2 : k) * sizeof(int));
    }
    return (size_t)n == sizeof *m ? 0 : EPROTO;
}

CONC_INLINE int conc__forkpool_pidfd_signal(int pidfd, int sig) {
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 ? 0 : errno;
}

/* Returns once the process of pidfd has exited (a pidfd polls readable then, reaped or not;
 * every store it made to the shared region came before). */
CONC_NOINLINE void conc__forkpool_wait_exit(int pidfd) {
    struct pollfd pf = {pidfd, POLLIN, 0};
    while (poll(&pf, 1, -1) < 0 && errno == EINTR) {
    }
}

/* Whether this kernel, and the sandbox around us, gives pidfds: pidfd_open is Linux 5.3, and
 * a seccomp profile older than that refuses it (ENOSYS, or EPERM, as container runtimes'
 * default profiles did). Without them the pool watches its processes the older way (DESIGN,
 * "Without pidfds"). Any other failure (EMFILE, ENOMEM) is for the moment: the pool takes
 * pidfds, and a spawn that cannot have one fails and is asked for again. */
CONC_NOINLINE bool conc__forkpool_pidfds_work(void) {
    int saved = conc_errno_save();
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    bool works = fd >= 0 || (errno != ENOSYS && errno != EPERM);
    if (fd >= 0)
        close(fd);
    conc_errno_restore(saved);
    return works;
}

/* Without pidfds: what became of process pid, which may not be our child (a worker is the
 * server's), or our child the server's death left us (this process a child subreaper).
 *   OUR_ZOMBIE  it has exited and is ours to reap (waitid WNOWAIT, which leaves it there);
 *   ZOMBIE      it has exited, another's zombie: /proc says Z with one thread left (a
 *               group leader shows Z as soon as its own thread ends, while its other
 *               threads may still store into the shared region); *ppid: its parent;
 *   GONE        reaped (no /proc entry; without /proc, kill says ESRCH);
 *   LIVE        anything else; *ppid its parent when /proc says (else 0).
 * Its stores to the shared region came before any but LIVE. The kernel hands a pid out again
 * only after that reap, and only once it has gone through every other free pid: looked at
 * every millisecond or so, as here, pid names the process we mean. Without /proc, a zombie
 * counts once it is reaped. */
enum {
    CONC__FORKPOOL_PID_LIVE,
    CONC__FORKPOOL_PID_OUR_ZOMBIE,
    CONC__FORKPOOL_PID_ZOMBIE,
    CONC__FORKPOOL_PID_GONE
};
/* Fields 3, 4 and 20 of proc(5)'s /proc/<pid>/stat, after the name: state, ppid, num_threads. */
#define CONC__FORKPOOL_STAT_FIELDS                                                                 \
    " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %ld"
CONC_NOINLINE int conc__forkpool_pid_look(pid_t pid, pid_t *ppid) {
    int saved = conc_errno_save();
    siginfo_t si;
    memset(&si, 0, sizeof si);
    *ppid = 0;
    int state = CONC__FORKPOOL_PID_LIVE;
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
        state = CONC__FORKPOOL_PID_OUR_ZOMBIE;
    } else {
        char path[40], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        const char *paren = NULL;
        if (n > 0) {
            buf[n] = 0;
            paren = strrchr(buf, ')'); /* the name, in parentheses, may hold anything */
        }
        char st = 0;
        int parent = 0;
        long threads = 0;
        if (paren && sscanf(paren + 1, CONC__FORKPOOL_STAT_FIELDS, &st, &parent, &threads) == 3) {
            *ppid = (pid_t)parent;
            if ((st == 'Z' || st == 'X') && threads <= 1)
                state = CONC__FORKPOOL_PID_ZOMBIE;
        } else if (kill(pid, 0) != 0 && errno == ESRCH) {
            state = CONC__FORKPOOL_PID_GONE; /* no /proc entry (or no /proc), no process */
        }
    }
    conc_errno_restore(saved);
    return state;
}

CONC_INLINE bool conc__forkpool_pid_exited(pid_t pid) {
    pid_t ppid;
    return conc__forkpool_pid_look(pid, &ppid) != CONC__FORKPOOL_PID_LIVE;
}

CONC_INLINE void conc__forkpool_kick(conc_forkpool_t *p) {
    uint64_t one = 1;
    ssize_t r = write(p->evfd, &one, sizeof one); /* EAGAIN: the counter is already set */
    CONC_UNUSED(r);
}

/* fd, moved to CONC__FORKPOOL_FD_MIN or above (close-on-exec) if it landed lower: in a host
 * that closed 0, 1 or 2 a new fd takes the lowest number, and a pool fd there would take in a
 * printf's bytes (the host's, or a task's: a worker keeps 0-2) and break the pool. -1 with
 * errno if no fd was free up there (fd is closed either way); -1 stays -1. */
CONC_NOINLINE int conc__forkpool_fd_up(int fd) {
    if (fd < 0 || fd >= CONC__FORKPOOL_FD_MIN)
        return fd;
    int up = fcntl(fd, F_DUPFD_CLOEXEC, CONC__FORKPOOL_FD_MIN);
    int e = errno;
    close(fd);
    errno = e;
    return up;
}

/* A close-on-exec AF_UNIX socketpair of `type`, both ends moved up (conc__forkpool_fd_up):
 * 0, or an errno with neither end open. */
CONC_NOINLINE int conc__forkpool_socketpair(int type, int sv[2]) {
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
        return errno;
    int e = 0;
    for (int i = 0; i < 2; i++)
        if ((sv[i] = conc__forkpool_fd_up(sv[i])) < 0 && !e)
            e = errno;
    if (e)
        for (int i = 0; i < 2; i++)
            if (sv[i] >= 0)
                close(sv[i]);
    return e;
}

/* Process hygiene after fork (server and workers): nothing buffered in stdout and stderr, default
 * signal dispositions with SIGINT, SIGTTOU and SIGTTIN ignored (and SIGPIPE if the host ignored
 * it at create, as servers and Python do: a task's write to a pipe whose reader is gone then
 * fails with EPIPE, where a default SIGPIPE killed the worker), an empty mask, death with the
 * parent, and no fd but 0, 1, 2 and `keep`, which ends up as CONC__FORKPOOL_FD, close-on-exec
 * (dup2 clears the flag): neither ever execs, and a program a task starts must not hold the
 * socket, or the worker's death (its EOF) would wait for that program to exit. Returns false
 * if the parent is already gone. */
CONC_NOINLINE bool conc__forkpool_hygiene(int keep, pid_t parent) {
    /* What stdout and stderr held at the fork is the forking process's to write: another
     * thread of the parent may have printed between the monitor's fflush(NULL) and its fork
     * of the server, and the server's flush before it forks a worker would write those bytes
     * a second time. Dropped here, unwritten (the server writes nothing of its own; a
     * worker's own output starts now). Other streams cannot be enumerated: see CAVEATS. */
    __fpurge(stdout);
    __fpurge(stderr);
    struct sigaction sa, pipe_was;
    bool pipe_ignored = sigaction(SIGPIPE, NULL, &pipe_was) == 0 && pipe_was.sa_handler == SIG_IGN;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &sa, NULL); /* fails harmlessly for the real-time ones libc owns */
    sa.sa_handler = SIG_IGN;
    (void)sigaction(SIGINT, &sa, NULL);
    /* The pool's group is not the terminal's foreground group: a write to the terminal under
     * `stty tostop`, or a read, would stop the worker (SIGTTOU, SIGTTIN) for good. Ignored,
     * the write goes through and the read fails (EIO). */
    (void)sigaction(SIGTTOU, &sa, NULL);
    (void)sigaction(SIGTTIN, &sa, NULL);
    if (pipe_ignored)
        (void)sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) /* died before prctl: the signal will never come */
        return false;
    if (keep != CONC__FORKPOOL_FD) {
        if (dup2(keep, CONC__FORKPOOL_FD) < 0)
            return false;
    }
    if (fcntl(CONC__FORKPOOL_FD, F_SETFD, FD_CLOEXEC) != 0)
        return false;
    if (syscall(SYS_close_range, CONC__FORKPOOL_FD + 1, ~0u, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = CONC__FORKPOOL_FD + 1; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            (void)close((int)fd);
    }
    return true;
}

/* -------------------------------------------------------------------------------------------
 * The start gate: a submit task handed over to a worker but not started is still dropped
 *
 * dispatch stores gate = id * 4 + HANDED in the worker's slot before it sends the task; the
 * worker, once it has read the task, claims it with one CAS to STARTED before it calls fn;
 * conc_forkpool_cancel, finding the task RUNNING in the books, first tries a CAS from HANDED
 * to DROPPED. Both CASes expect the same value, so exactly one wins:
 *
 *   worker (task id read)                    canceller (pool lock held, task RUNNING)
 *   -------------------------------------    ---------------------------------------------
 *   CAS gate: id*4+HANDED -> id*4+STARTED    CAS gate: id*4+HANDED -> id*4+DROPPED
 *     [forkpool.G1]                            [forkpool.G2]
 *   won: fn runs                             won: no fn will run; the future is CANCELLED,
 *   lost (DROPPED): no fn; answer RESULT       the worker stays; its RESULT only takes the
 *     ECANCELED, take the next task            task off the books
 *                                            lost (STARTED): fn may be running: SIGKILL
 *
 * A dropped task never runs and its worker is not replaced; a started one is killed as
 * before. The worker's death, once the server reports it (the process is gone), tries the
 * canceller's CAS too [forkpool.G3]: won, fn never ran there and the task goes back to the
 * head of the queue, its attempt undone; lost, the task started (or cancel dropped it) and
 * the death is its outcome, as before. The gate value holds the id, so a stale value (an
 * earlier task's STARTED) can never match. Relaxed: the one word decides; the store at
 * dispatch reaches the worker before the task does (the socket's send and receive order them:
 * the kernel's locks on the socket buffer); the death's CAS reads the dead worker's last store
 * through the kernel's report. One thing rides on a win, for a pool with a task_timeout: the
 * worker stamps the slot's started_ns before its CAS, whose success is a release for that,
 * and the monitor reads STARTED with an acquire before it times the task from that stamp.
 * tests/models/forkpool_gate.pml checks that fn never runs for a task cancel dropped, that
 * cancel never reports a drop of a started task, and that a death never puts back a task
 * whose fn started.
 * ------------------------------------------------------------------------------------------- */
#define CONC__FORKPOOL_GATE_HANDED 0u
#define CONC__FORKPOOL_GATE_STARTED 1u
#define CONC__FORKPOOL_GATE_DROPPED 2u
CONC_INLINE uint64_t conc__forkpool_gate(uint64_t id, unsigned state) {
    return id * 4 + state;
}

/* The canceller's side, under the pool lock for a RUNNING task: true if it won. The death
 * of the task's worker takes the same side. */
CONC_INLINE bool conc__forkpool_gate_drop(conc_forkpool_t *p, const conc__forkpool_task *t) {
    uint64_t handed = conc__forkpool_gate(t->id, CONC__FORKPOOL_GATE_HANDED);
    /* [forkpool.G2] relaxed: see above. */
    return conc_cas(&p->slots[t->worker].gate, &handed,
                    conc__forkpool_gate(t->id, CONC__FORKPOOL_GATE_DROPPED), CONC_RELAXED,
                    CONC_RELAXED);
}

/* -------------------------------------------------------------------------------------------
 * The worker (a child of the fork server)
 * ------------------------------------------------------------------------------------------- */
CONC_NOINLINE void conc__forkpool_worker_exit(int code) {
    fflush(NULL);
    _exit(code);
}

/* Header and payload in one sendmsg when they fit (one wakeup, one read for the parent). */
CONC_NOINLINE void conc__forkpool_send_or_exit(int fd, const conc__forkpool_msg *m, const void *b) {
    struct iovec iov[2];
    iov[0].iov_base = (void *)(uintptr_t)m;
    iov[0].iov_len = sizeof *m;
    iov[1].iov_base = (void *)(uintptr_t)b;
    iov[1].iov_len = (size_t)m->len;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = m->len ? 2 : 1;
    ssize_t r;
    do
        r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        conc__forkpool_worker_exit(0); /* the parent is gone */
    size_t sent = (size_t)r;
    if (sent < sizeof *m &&
        conc__forkpool_write_full(fd, (const char *)m + sent, sizeof *m - sent) != 0)
        conc__forkpool_worker_exit(0);
    size_t body = sent > sizeof *m ? sent - sizeof *m : 0;
    if (m->len > body &&
        conc__forkpool_write_full(fd, (const char *)b + body, (size_t)m->len - body) != 0)
        conc__forkpool_worker_exit(0);
}

/* Runs round chunks until none is left. Returns chunks run (for max_tasks_per_child), or
 * exits when the quota is reached between chunks. */
CONC_NOINLINE void conc__forkpool_worker_map(const conc_forkpool_t *p, conc__forkpool_slot *slot,
                                             int fd, unsigned *tasks) {
    conc__forkpool_round *rd = p->round;
    const conc__forkpool_range *ranges = rd->ranges;
    uint64_t nchunks = rd->nchunks;
    bool timed = rd->timed != 0;
    for (;;) {
        /* Relaxed (but for one store below): the parent reads the slot for a death only
         * after this process is dead, and learns of it through the kernel (see DESIGN).
         * The one live reader is the monitor's timeout sample of running and started_ns. */
        conc_store(&slot->running, (uint64_t)0, CONC_RELAXED);
        /* Relaxed: the chunk number is all we take; the table was written before MAP. */
        uint64_t j = conc_fetch_add(&rd->cursor, (uint64_t)1, CONC_RELAXED);
        if (j >= nchunks)
            break;
        conc_store(&slot->chunk, j + 1, CONC_RELAXED);
        uint64_t v = rd->starts[j], end = rd->starts[j + 1];
        size_t r = 0, hi_r = (size_t)rd->nranges;
        while (hi_r - r > 1) { /* the range holding v */
            size_t mid = r + (hi_r - r) / 2;
            if (ranges[mid].vstart <= v)
                r = mid;
            else
                hi_r = mid;
        }
        for (; v < end; v++) {
            while (v >= ranges[r].vstart + (ranges[r].hi - ranges[r].lo))
                r++;
            size_t i = (size_t)(ranges[r].lo + (v - ranges[r].vstart));
            if (timed)
                conc_store(&slot->started_ns, conc_now(), CONC_RELAXED);
            /* Release: the monitor's timeout sample (acquire) that reads v + 1 reads this
             * item's started_ns or a later one, never the previous item's, so it cannot time
             * out an item that has just started. */
            conc_store(&slot->running, v + 1, CONC_RELEASE);
            int st = rd->fn(i, rd->arg);
            if (CONC_UNLIKELY(st != 0)) {
                conc__forkpool_msg m;
                memset(&m, 0, sizeof m);
                m.type = CONC__FORKPOOL_MSG_FAIL;
                m.status = st;
                m.a = v;
                conc__forkpool_send_or_exit(fd, &m, NULL);
            }
        }
        conc_store(&rd->done[j], (uint8_t)1, CONC_RELAXED);
        if (p->opts.max_tasks_per_child && ++*tasks >= p->opts.max_tasks_per_child) {
            conc_store(&slot->running, (uint64_t)0, CONC_RELAXED);
            conc__forkpool_worker_exit(0); /* recycled between chunks: nothing is lost */
        }
    }
}

CONC_NOINLINE void conc__forkpool_worker_main(const conc_forkpool_t *p, unsigned k) {
    int fd = CONC__FORKPOOL_FD;
    conc__forkpool_slot *slot = &p->slots[k];
    conc__forkpool_msg m;
    memset(&m, 0, sizeof m);
    if (p->opts.init) {
        int st = p->opts.init(p->opts.init_arg);
        if (st != 0) {
            m.type = CONC__FORKPOOL_MSG_INITFAIL;
            m.status = st;
            conc__forkpool_send_or_exit(fd, &m, NULL);
            conc__forkpool_worker_exit(0);
        }
    }
    fflush(NULL);
    m.type = CONC__FORKPOOL_MSG_READY;
    conc__forkpool_send_or_exit(fd, &m, NULL);
    unsigned tasks = 0;
    /* The parent sends one message at a time and nothing until we answer, so a read of
     * more than a header takes only this message: a small argument comes with it. */
    char stage[CONC__FORKPOOL_STAGE];
    size_t staged = 0;
    for (;;) {
        ssize_t got;
        do
            got = recv(fd, stage, sizeof stage, 0);
        while (got < 0 && errno == EINTR);
        if (got <= 0)
            conc__forkpool_worker_exit(0);
        staged = (size_t)got;
        if (staged < sizeof m &&
            conc__forkpool_read_full(fd, stage + staged, sizeof m - staged) != 0)
            conc__forkpool_worker_exit(0);
        if (staged < sizeof m)
            staged = sizeof m;
        memcpy(&m, stage, sizeof m);
        staged -= sizeof m;
        if (m.type == CONC__FORKPOOL_MSG_QUIT)
            conc__forkpool_worker_exit(0);
        if (m.type == CONC__FORKPOOL_MSG_MAP) {
            conc__forkpool_worker_map(p, slot, fd, &tasks);
            fflush(NULL);
            uint64_t id = m.id;
            memset(&m, 0, sizeof m);
            m.type = CONC__FORKPOOL_MSG_DONE;
            m.id = id;
            conc__forkpool_send_or_exit(fd, &m, NULL);
            continue;
        }
        /* TASK */
        void *arg = NULL;
        bool no_memory = false;
        if (m.len) {
            size_t have = staged < m.len ? staged : (size_t)m.len;
            arg = malloc((size_t)m.len);
            if (arg) {
                memcpy(arg, stage + sizeof m, have);
                if (have < m.len &&
                    conc__forkpool_read_full(fd, (char *)arg + have, (size_t)m.len - have) != 0)
                    conc__forkpool_worker_exit(0);
            } else {
                /* No memory here for the argument: its bytes are read and dropped (the stream
                 * stays in step) and the task ends ENOMEM without fn, as a Python worker
                 * reports its MemoryError. The worker exited, which read as fn's exit(1). */
                no_memory = true;
                for (size_t left = (size_t)m.len - have; left > 0;) {
                    size_t chunk = left < sizeof stage ? left : sizeof stage;
                    if (conc__forkpool_read_full(fd, stage, chunk) != 0)
                        conc__forkpool_worker_exit(0);
                    left -= chunk;
                }
            }
        }
        conc_forkpool_task_fn fn = (conc_forkpool_task_fn)(uintptr_t)m.a;
        void *res = NULL;
        size_t res_len = 0;
        CONC_FORKPOOL_START_HOOK();
        if (p->opts.task_timeout > 0) /* its timeout runs from here: see "The start gate" */
            conc_store(&slot->started_ns, conc_now(), CONC_RELAXED);
        /* [forkpool.G1] release on success (the stamp above), relaxed on failure: see "The
         * start gate". */
        uint64_t handed = conc__forkpool_gate(m.id, CONC__FORKPOOL_GATE_HANDED);
        bool started =
            conc_cas(&slot->gate, &handed, conc__forkpool_gate(m.id, CONC__FORKPOOL_GATE_STARTED),
                     CONC_RELEASE, CONC_RELAXED);
        if (!started && handed != conc__forkpool_gate(m.id, CONC__FORKPOOL_GATE_DROPPED))
            CONC_ABORT("conc_forkpool: a worker's start gate holds another task's value");
        int st = !started ? ECANCELED : no_memory ? ENOMEM : fn(arg, (size_t)m.len, &res, &res_len);
        free(arg);
        fflush(NULL);
        uint64_t id = m.id;
        memset(&m, 0, sizeof m);
        m.type = CONC__FORKPOOL_MSG_RESULT;
        m.id = id;
        m.status = st;
        m.len = (st == 0 && res) ? res_len : 0;
        /* A dropped task did not run: it does not count toward max_tasks_per_child. */
        bool retire =
            started && p->opts.max_tasks_per_child && ++tasks >= p->opts.max_tasks_per_child;
        m.a = retire; /* the parent sends nothing more: no task is lost to the exit */
        conc__forkpool_send_or_exit(fd, &m, res);
        free(res);
        if (retire)
            conc__forkpool_worker_exit(0);
    }
}

/* -------------------------------------------------------------------------------------------
 * The fork server (a child of the monitor thread, single-threaded)
 * ------------------------------------------------------------------------------------------- */
/* The server has reaped worker k (wait status ws): tell the parent. */
CONC_NOINLINE void conc__forkpool_server_reaped(int ctl, pid_t *pids, unsigned k, int ws,
                                                bool *quit) {
    conc__forkpool_ctl m = {CONC__FORKPOOL_CTL_DIED, (int32_t)k, pids[k], ws};
    pids[k] = 0;
    if (!*quit && conc__forkpool_ctl_send(ctl, &m, NULL, 0, 0) != 0)
        *quit = true;
}

CONC_NOINLINE void conc__forkpool_server_main(const conc_forkpool_t *p) {
    int ctl = CONC__FORKPOOL_FD;
    unsigned n = p->nworkers;
    pid_t self = getpid();
    pid_t *pids = (pid_t *)calloc(n, sizeof *pids);
    /* The parent's socket, a pidfd per worker, and without pidfds a signalfd (below). */
    struct pollfd *pf = (struct pollfd *)calloc(n + 2, sizeof *pf);
    int watch_err = !pids || !pf ? ENOMEM : 0;
    int chld = -1;
    if (!watch_err && !p->pidfds) {
        /* Without pidfds a worker's exit shows as a SIGCHLD, read from a signalfd: blocked
         * here (a worker unblocks every signal: hygiene), at its default disposition (never
         * SIG_IGN, which would reap the workers unseen). Every child of the server is a
         * worker, each one reaped by its pid. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        (void)sigprocmask(SIG_BLOCK, &set, NULL);
        chld = conc__forkpool_fd_up(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
        if (chld < 0)
            watch_err = errno;
    }
    if (watch_err) {
        /* No memory for its books, or no fd to watch with: answer every request with that
         * until the parent lets go, so that create fails with it (a server that just died
         * would read as a worker's death, ECHILD, and one gone before create's last request
         * as the pool's end). */
        conc__forkpool_ctl m;
        int fds[2];
        while (conc__forkpool_ctl_recv(ctl, &m, fds, 0) == 0 &&
               m.type == CONC__FORKPOOL_CTL_SPAWN) {
            conc__forkpool_ctl r = {CONC__FORKPOOL_CTL_SPAWNFAIL, m.slot, 0, watch_err};
            if (conc__forkpool_ctl_send(ctl, &r, NULL, 0, 0) != 0)
                break;
        }
        _exit(1);
    }
    for (unsigned k = 0; k < n; k++)
        pf[k + 1].fd = -1;
    pf[0].fd = ctl;
    pf[0].events = POLLIN;
    pf[n + 1].fd = chld;
    pf[n + 1].events = POLLIN;
    bool quit = false;
    for (;;) {
        unsigned live = 0;
        for (unsigned k = 0; k < n; k++)
            live += pids[k] != 0;
        if (quit && live == 0)
            break;
        if (poll(pf, n + 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (unsigned k = 0; k < n; k++) {
            if (pf[k + 1].fd < 0 || !(pf[k + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int ws = 0;
            pid_t r;
            do
                r = waitpid(pids[k], &ws, 0);
            while (r < 0 && errno == EINTR);
            close(pf[k + 1].fd);
            pf[k + 1].fd = -1;
            conc__forkpool_server_reaped(ctl, pids, k, ws, &quit);
        }
        if (chld >= 0 && pf[n + 1].revents) {
            /* SIGCHLDs merge while pending: one read may stand for several exits. */
            struct signalfd_siginfo si;
            while (read(chld, &si, sizeof si) == (ssize_t)sizeof si) {
            }
            for (unsigned k = 0; k < n; k++) {
                int ws = 0;
                if (pids[k] != 0 && waitpid(pids[k], &ws, WNOHANG) == pids[k])
                    conc__forkpool_server_reaped(ctl, pids, k, ws, &quit);
            }
        }
        if (quit || !(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        conc__forkpool_ctl m;
        int fds[2];
        int got = conc__forkpool_ctl_recv(ctl, &m, fds, 0);
        if (got == 0 && m.type == CONC__FORKPOOL_CTL_KILL) {
            /* Without pidfds the parent signals a worker through us: not yet reaped (still
             * in pids), the pid is still that worker's. */
            if (m.slot >= 0 && (unsigned)m.slot < n && m.pid > 0 && pids[m.slot] == m.pid)
                (void)kill(m.pid, m.status);
            continue;
        }
        if (got != 0 || m.type != CONC__FORKPOOL_CTL_SPAWN || m.slot < 0 || (unsigned)m.slot >= n ||
            pids[m.slot] != 0) {
            quit = true; /* the parent closed us (shutdown) or is gone: kill what is left */
            for (unsigned k = 0; k < n; k++)
                if (pids[k])
                    kill(pids[k], SIGKILL); /* not yet reaped: the pid is still ours */
            pf[0].fd = -1;
            continue;
        }
        unsigned k = (unsigned)m.slot;
        int sp[2];
        int err = conc__forkpool_socketpair(SOCK_STREAM, sp);
        if (!err) {
            /* Nothing to write of its own: stdout and stderr are empty (hygiene). Another
             * stream may hold bytes copied from the parent at our fork: written here, once,
             * rather than by every worker after its first task (CAVEATS). */
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                free(pids); /* the server's books mean nothing here (and LeakSanitizer, */
                free(pf);   /* run by an exit() in fn, would call them leaked) */
                if (!conc__forkpool_hygiene(sp[1], self))
                    _exit(0);
                conc__forkpool_worker_main(p, k);
                _exit(0);
            }
            close(sp[1]);
            int pidfd = pid > 0 && p->pidfds
                            ? conc__forkpool_fd_up((int)syscall(SYS_pidfd_open, pid, 0))
                            : -1;
            if (pid < 0 || (p->pidfds && pidfd < 0)) {
                err = errno;
                if (pid > 0) {
                    kill(pid, SIGKILL);
                    waitpid(pid, NULL, 0);
                }
                close(sp[0]);
            } else {
                pids[k] = pid;
                pf[k + 1].fd = pidfd;
                pf[k + 1].events = POLLIN;
                conc__forkpool_ctl r = {CONC__FORKPOOL_CTL_SPAWNED, (int32_t)k, pid, 0};
                int out[2] = {sp[0], pidfd};
                if (conc__forkpool_ctl_send(ctl, &r, out, pidfd >= 0 ? 2 : 1, 0) != 0)
                    quit = true;
                close(sp[0]);
            }
        }
        if (err) {
            conc__forkpool_ctl r = {CONC__FORKPOOL_CTL_SPAWNFAIL, (int32_t)k, 0, err};
            if (conc__forkpool_ctl_send(ctl, &r, NULL, 0, 0) != 0)
                quit = true;
        }
    }
    _exit(0);
}

/* -------------------------------------------------------------------------------------------
 * The arena (parent only; under the pool lock)
 * ------------------------------------------------------------------------------------------- */
CONC_NOINLINE void *conc__forkpool_alloc_locked(conc_forkpool_t *p, size_t size) {
    if (size == 0)
        size = 1;
    if (size > p->shm_size)
        return NULL;
    size = (size + CONC_CACHELINE - 1) & ~(size_t)(CONC_CACHELINE - 1);
    for (conc__forkpool_block *b = p->blocks; b; b = b->next) {
        if (b->used || b->size < size)
            continue;
        if (b->size > size) {
            conc__forkpool_block *rest = (conc__forkpool_block *)malloc(sizeof *rest);
            if (!rest)
                return NULL;
            rest->off = b->off + size;
            rest->size = b->size - size;
            rest->used = false;
            rest->next = b->next;
            b->next = rest;
            b->size = size;
        }
        b->used = true;
        return p->shm + b->off;
    }
    return NULL;
}

/* Returns false if mem is not a block in use. */
CONC_NOINLINE bool conc__forkpool_free_locked(conc_forkpool_t *p, void *mem) {
    conc__forkpool_block *prev = NULL;
    for (conc__forkpool_block *b = p->blocks; b; prev = b, b = b->next) {
        if (p->shm + b->off != (char *)mem)
            continue;
        if (!b->used)
            return false;
        b->used = false;
        conc__forkpool_block *nx = b->next;
        if (nx && !nx->used) {
            b->size += nx->size;
            b->next = nx->next;
            free(nx);
        }
        if (prev && !prev->used) {
            prev->size += b->size;
            prev->next = b->next;
            free(b);
        }
        return true;
    }
    return false;
}

#define CONC__FORKPOOL_HOME_MARK 0x686f6d65u /* "home": any nonzero value */

/* The home page, or NULL (then the check is a getpid): a page is all madvise works on. */
CONC_NOINLINE void conc__forkpool_home_init(conc_forkpool_t *p) {
    p->home = NULL;
#ifdef MADV_WIPEONFORK
    int saved = conc_errno_save();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
        if (madvise(m, page, MADV_WIPEONFORK) == 0) {
            conc_store((uint32_t *)m, CONC__FORKPOOL_HOME_MARK, CONC_RELAXED);
            p->home = (const uint32_t *)m;
        } else {
            munmap(m, page);
        }
    }
    conc_errno_restore(saved);
#endif
}

/* Whether the caller is a process other than the pool's parent: a worker (or a child fn
 * forked) calling through its copy of the pool, or a child the parent forked. Its copy has
 * no monitor, and its pidfds and sockets are the parent's: a map would wait for good, a
 * shutdown would kill the parent's workers. One load of the home page, which every fork
 * finds zeroed (a getpid, a syscall since glibc 2.25 caches no pid, made this check most of
 * an alloc+free pair); getpid where that page could not be had. Relaxed: the mark was
 * written before the pool was handed to any caller. */
CONC_INLINE bool conc__forkpool_foreign(const conc_forkpool_t *p) {
    if (CONC_LIKELY(p->home != NULL))
        return conc_load(p->home, CONC_RELAXED) != CONC__FORKPOOL_HOME_MARK;
    return getpid() != p->parent_pid;
}

/* For the calls that cannot report it (caller: a string literal naming the call). */
#define CONC__FORKPOOL_CHECK_PARENT(p, caller)                                                     \
    do {                                                                                           \
        if (CONC_UNLIKELY(!(p)))                                                                   \
            CONC_ABORT(caller ": NULL pool");                                                      \
        if (CONC_UNLIKELY(conc__forkpool_foreign(p)))                                              \
            CONC_ABORT(caller ": called in a process other than the pool's parent (a worker, "     \
                              "or a fork of the parent)");                                         \
    } while (0)

static inline void *conc_forkpool_alloc(conc_forkpool_t *p, size_t size) {
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_alloc");
    int saved_errno = conc_errno_save(); /* no call sets errno: malloc and the lock's futex may */
    conc_lock_acquire(&p->lock);
    void *m = conc__forkpool_alloc_locked(p, size);
    conc_lock_release(&p->lock);
    conc_errno_restore(saved_errno);
    return m;
}

static inline void conc_forkpool_free(conc_forkpool_t *p, void *mem) {
    if (!mem)
        return;
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_free");
    int saved_errno = conc_errno_save();
    conc_lock_acquire(&p->lock);
    bool ok = conc__forkpool_free_locked(p, mem);
    conc_lock_release(&p->lock);
    conc_errno_restore(saved_errno);
    if (!ok)
        CONC_ABORT("conc_forkpool_free: not a block of this pool's shared region");
}

/* -------------------------------------------------------------------------------------------
 * Parent side: sending, tasks, rounds (all under the pool lock)
 * ------------------------------------------------------------------------------------------- */
/* Pushes the worker's pending output without blocking. false: the socket is broken. */
CONC_NOINLINE bool conc__forkpool_flush(conc__forkpool_worker *w) {
    size_t hdr = sizeof w->out_hdr, total = hdr + w->out_len;
    while (w->out_off < total) {
        struct iovec iov[2];
        int n = 0;
        if (w->out_off < hdr) {
            iov[n].iov_base = (char *)&w->out_hdr + w->out_off;
            iov[n++].iov_len = hdr - w->out_off;
        }
        if (w->out_len) {
            size_t skip = w->out_off > hdr ? w->out_off - hdr : 0;
            iov[n].iov_base = (void *)(uintptr_t)(w->out_buf + skip);
            iov[n++].iov_len = w->out_len - skip;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        ssize_t r = sendmsg(w->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (conc__base_would_block(errno))
                return true;
            conc_store(&w->out_busy, (uint8_t)0, CONC_RELAXED); /* broken: EOF and a death follow */
            return false;
        }
        w->out_off += (size_t)r;
    }
    conc_store(&w->out_busy, (uint8_t)0, CONC_RELAXED);
    return true;
}

/* The pool lock orders everything here; out_busy is accessed with relaxed atomics only so
 * that no compiler merges it with the caller_sends load next to it: while a submitter sends,
 * out_busy is the submitter's, and only caller_sends may be read. */
CONC_INLINE bool conc__forkpool_out_busy(const conc__forkpool_worker *w) {
    if (w->caller_sends)
        return true;
    return conc_load(&w->out_busy, CONC_RELAXED) != 0;
}

CONC_NOINLINE void conc__forkpool_prepare(conc__forkpool_worker *w, uint32_t type, uint64_t id,
                                          uint64_t a, const void *buf, size_t len) {
    memset(&w->out_hdr, 0, sizeof w->out_hdr);
    w->out_hdr.type = type;
    w->out_hdr.id = id;
    w->out_hdr.a = a;
    w->out_hdr.len = len;
    w->out_buf = (const char *)buf;
    w->out_len = len;
    w->out_off = 0;
    conc_store(&w->out_busy, (uint8_t)1, CONC_RELAXED);
}

CONC_NOINLINE void conc__forkpool_send(conc__forkpool_worker *w, uint32_t type, uint64_t id,
                                       uint64_t a, const void *buf, size_t len) {
    conc__forkpool_prepare(w, type, id, a, buf, len);
    (void)conc__forkpool_flush(w); /* a broken socket shows as EOF on the read side */
}

/* A task record rides in its future's allocation (future.h's ext futures). This function is
 * also the tag that marks a future as a fork-pool one (conc__future_ext compares it), so it
 * has one address for the whole program: weak, defined in every translation unit that
 * includes this header and kept once by the linker (a static one has an address per file,
 * and a future submitted in one file was "not a fork-pool future" in another). */
void conc__forkpool_task_free(void *ext) CONC__ABI(conc__forkpool_task_free);
CONC__ONE_PER_PROGRAM void conc__forkpool_task_free(void *ext) {
    conc__forkpool_task *t = (conc__forkpool_task *)ext;
    free(t->arg);
    free(t->result);
}

CONC_INLINE conc__forkpool_task *conc__forkpool_task_of(conc_future_t *f) {
    return f ? (conc__forkpool_task *)conc__future_ext(f, conc__forkpool_task_free) : NULL;
}

typedef struct conc__forkpool_done_list { /* futures to complete once the lock is dropped */
    conc__forkpool_task *head;
} conc__forkpool_done_list;

/* Final outcome: the task leaves the books; its future is completed after the unlock. */
CONC_NOINLINE void conc__forkpool_task_finish(conc_forkpool_t *p, conc__forkpool_task *t,
                                              conc__forkpool_done_list *dl) {
    if (t->state == CONC__FORKPOOL_T_RUNNING)
        p->running_tasks--;
    t->state = CONC__FORKPOOL_T_DONE;
    t->next = dl->head;
    dl->head = t;
}

/* A task cancelled while queued ends CANCELLED, as conc_future_cancel leaves a pending one:
 * from PENDING if it was never handed over, else from RUNNING (a re-run waiting for its retry,
 * or a task its worker's death put back). False if the user settled its future first. */
CONC_INLINE bool conc__forkpool_settle_cancelled(conc__forkpool_task *t) {
    return (t->handed ? conc__future_cancel_started(t->f) : conc_future_cancel(t->f)) == 0;
}

CONC_NOINLINE void conc__forkpool_complete(conc__forkpool_done_list *dl) {
    for (conc__forkpool_task *t = dl->head, *next; t; t = next) {
        next = t->next;
        conc_future_t *f = t->f;
        /* [forkpool.R5] release: the outcome fields are final; pairs with [forkpool.A5] in
         * cancel/outcome. */
        conc_store(&t->done, 1u, CONC_RELEASE);
        if (!t->cancelled) { /* a cancel completed it already */
            int st = t->outcome.status;
            if (!t->by_cancel || !conc__forkpool_settle_cancelled(t)) {
                int won = conc_future_complete(f, st, st == 0 ? t->result : NULL);
                CONC_UNUSED(won); /* EBUSY: the user cancelled it first */
            }
        }
        conc_future_release(f); /* the pool's reference */
    }
    dl->head = NULL;
}

/* Items [lo, hi) of the map ended (for now) with o: a later outcome of the same item (its
 * retry's) replaces it. Without the caller's array only a failure counts, as the first in
 * index order; an item that will run again is given no failure here (its death rides with
 * its range: conc__forkpool_next_add), so none is ever taken back. */
CONC_NOINLINE void conc__forkpool_item_outcome(conc_forkpool_t *p, uint64_t lo, uint64_t hi,
                                               conc_forkpool_outcome_t o) {
    if (p->map_out) {
        for (uint64_t i = lo; i < hi; i++)
            p->map_out[i] = o;
    } else if (o.status != 0 && lo < hi && lo < p->map_first) {
        p->map_first = lo;
        p->map_first_status = o.status;
    }
}

/* What the giving up ends (work it killed, or that never ran to the end): EPIPE, or
 * ECANCELED when terminate asked for it. */
CONC_INLINE int conc__forkpool_given_up_status(const conc_forkpool_t *p) {
    return p->terminated ? ECANCELED : EPIPE;
}

/* The outcome of items that will not run again after all: their last start's death, or EPIPE
 * (never ran to the end) with the starts they had. Under terminate, ECANCELED with the starts
 * they had and no signal, a retry's too: terminate cancelled it, whatever ended its last
 * start (as a submit task's retry waiting in the queue: conc__forkpool_cancelled_unstarted). */
CONC_INLINE conc_forkpool_outcome_t conc__forkpool_not_rerun(const conc_forkpool_t *p,
                                                             const conc__forkpool_range *r) {
    conc_forkpool_outcome_t o = r->death;
    if (o.status == 0 || p->terminated) {
        memset(&o, 0, sizeof o);
        o.status = conc__forkpool_given_up_status(p);
        o.attempts = (unsigned)r->attempts - 1;
    }
    return o;
}

/* A task cancelled with its fn not running (queued, a retry waiting, or handed over and not
 * started): ECANCELED, the starts it had, and no signal or exit code, which were an earlier
 * start's. Its future ends CANCELLED (by_cancel), unless the caller settles it otherwise. */
CONC_INLINE void conc__forkpool_cancelled_unstarted(conc__forkpool_task *t) {
    t->outcome.status = ECANCELED;
    t->outcome.signal = t->outcome.exit_code = 0;
    t->by_cancel = true;
}

/* Items [lo, hi) run again next round, starting their attempt number `attempts`; `death`
 * (status 0: none) is how a retry's last start ended. With no memory for the range they
 * cannot: they end as conc__forkpool_not_rerun says and map returns ENOMEM, as when a later
 * round finds no room for its chunk table. */
CONC_NOINLINE void conc__forkpool_next_add(conc_forkpool_t *p, uint64_t lo, uint64_t hi,
                                           uint64_t attempts, conc_forkpool_outcome_t death) {
    if (lo >= hi)
        return;
    conc__forkpool_range r = {lo, hi, 0, attempts, death}; /* vstart: set when a round starts */
    if (p->nnext == p->cap_next) {
        size_t grown = p->cap_next ? 2 * p->cap_next : CONC__FORKPOOL_RERUNS_FIRST;
        void *more =
            grown <= SIZE_MAX / sizeof r ? realloc(p->next_ranges, grown * sizeof r) : NULL;
        if (!more) {
            conc__forkpool_item_outcome(p, lo, hi, conc__forkpool_not_rerun(p, &r));
            p->map_status = ENOMEM;
            return;
        }
        p->next_ranges = (conc__forkpool_range *)more;
        p->cap_next = grown;
    }
    p->next_ranges[p->nnext++] = r;
}

/* The range of the current round holding virtual index v. */
CONC_INLINE const conc__forkpool_range *conc__forkpool_range_of(conc_forkpool_t *p, uint64_t v) {
    const conc__forkpool_range *r = p->cur_ranges;
    size_t lo = 0, hi = (size_t)p->round->nranges;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].vstart <= v)
            lo = mid;
        else
            hi = mid;
    }
    return &r[lo];
}

/* Virtual [v0, v1) of the current round goes into the next round (not yet started). */
CONC_NOINLINE void conc__forkpool_orphan(conc_forkpool_t *p, uint64_t v0, uint64_t v1) {
    while (v0 < v1) {
        const conc__forkpool_range *r = conc__forkpool_range_of(p, v0);
        uint64_t rend = r->vstart + (r->hi - r->lo);
        uint64_t e = v1 < rend ? v1 : rend;
        conc__forkpool_next_add(p, r->lo + (v0 - r->vstart), r->lo + (e - r->vstart), r->attempts,
                                r->death); /* not started again: a retry keeps its death */
        v0 = e;
    }
}

/* The next chunk's size: rem / div rounded up, without the sum that overflows for a map of
 * nearly SIZE_MAX items (rem + div - 1 wrapped to a chunk of 0, a loop for good under the
 * pool lock). */
CONC_INLINE uint64_t conc__forkpool_chunk(uint64_t rem, uint64_t div) {
    return rem / div + (rem % div != 0);
}

/* Sets up a round over ranges (private copy kept in cur_ranges). ENOMEM if the arena is full. */
CONC_NOINLINE int conc__forkpool_round_setup(conc_forkpool_t *p, conc__forkpool_range *ranges,
                                             size_t nranges, conc_forkpool_map_fn fn, void *arg) {
    uint64_t total = 0;
    for (size_t i = 0; i < nranges; i++) {
        ranges[i].vstart = total;
        total += ranges[i].hi - ranges[i].lo;
    }
    uint64_t div = (uint64_t)CONC__FORKPOOL_CHUNK_DIV * p->nworkers, nchunks = 0;
    for (uint64_t rem = total; rem; nchunks++)
        rem -= conc__forkpool_chunk(rem, div);
    size_t rsz = nranges * sizeof(conc__forkpool_range);
    size_t ssz = (size_t)(nchunks + 1) * sizeof(uint64_t);
    size_t need = rsz + ssz + (size_t)nchunks;
    char *mem = (char *)conc__forkpool_alloc_locked(p, need);
    if (!mem)
        return ENOMEM;
    if (p->round_mem)
        (void)conc__forkpool_free_locked(p, p->round_mem);
    p->round_mem = mem;
    conc__forkpool_range *sr = (conc__forkpool_range *)(void *)mem;
    memcpy(sr, ranges, rsz);
    uint64_t *starts = (uint64_t *)(void *)(mem + rsz);
    uint8_t *done = (uint8_t *)(mem + rsz + ssz);
    uint64_t at = 0, j = 0;
    for (uint64_t rem = total; rem; j++) {
        starts[j] = at;
        uint64_t c = conc__forkpool_chunk(rem, div);
        at += c;
        rem -= c;
    }
    starts[nchunks] = total;
    memset(done, 0, (size_t)nchunks);
    conc__forkpool_round *rd = p->round;
    rd->fn = fn;
    rd->arg = arg;
    rd->id++;
    rd->nranges = nranges;
    rd->nchunks = nchunks;
    rd->ranges = sr;
    rd->starts = starts;
    rd->done = done;
    rd->timed = p->opts.task_timeout > 0;
    /* Relaxed: workers read the round only after the MAP message, which orders it. */
    conc_store(&rd->cursor, (uint64_t)0, CONC_RELAXED);
    p->cur_ranges = sr; /* the parent reads the same table (it is not written in a round) */
    p->round_live = true;
    return 0;
}

/* A worker slot whose process is gone: its fds closed, its buffer freed, the slot EMPTY. */
CONC_NOINLINE void conc__forkpool_worker_clear(conc__forkpool_worker *w) {
    if (w->sock >= 0)
        close(w->sock);
    if (w->pidfd >= 0)
        close(w->pidfd);
    free(w->in_buf);
    memset(w, 0, sizeof *w);
    w->sock = w->pidfd = -1;
    w->state = CONC__FORKPOOL_W_EMPTY;
}

CONC_NOINLINE bool conc__forkpool_server_read(conc_forkpool_t *p);

/* The server's packets read off the monitor's thread, under the pool lock: the server answers
 * deaths and spawns with blocking sends and reads nothing of ours while it waits for room, so
 * a thread that needs it to read (below) reads its answers into the books first, and kicks
 * the monitor to act on them. false: the server is gone (EOF). */
CONC_NOINLINE bool conc__forkpool_take_server_packets(conc_forkpool_t *p) {
    bool alive = conc__forkpool_server_read(p);
    conc__forkpool_kick(p);
    return alive;
}

/* Without pidfds, cancel's wait (outside the pool lock) for the worker it killed through the
 * server. The server must first read our KILL, and it reads none while it waits for room to
 * report deaths; the monitor reads those, but from an on_done callback we are the monitor
 * (a callback that killed many workers, then cancelled a task, waited for good). So the wait
 * reads the server's packets too, as a send to it does (conc__forkpool_to_server). */
CONC_NOINLINE void conc__forkpool_wait_killed(conc_forkpool_t *p, pid_t pid) {
    long ns = 50 * (long)CONC_US;
    while (!conc__forkpool_pid_exited(pid)) {
        conc_lock_acquire(&p->lock);
        if (p->ctl >= 0)
            (void)conc__forkpool_take_server_packets(p);
        conc_lock_release(&p->lock);
        struct timespec ts = {0, ns};
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        if (ns < (long)CONC_MS)
            ns *= 2;
    }
}

/* A packet to the fork server (a spawn request, or a kill without pidfds), under the pool
 * lock. Never blocked for good. The server reads one packet per turn of its loop, so a burst
 * of packets (a kill for each of hundreds of workers) can fill our socket while the server
 * waits for room in its own: while ours is full we take its packets, and it goes on. A full
 * socket and an exited server (its end of the socket kept open by a child the host
 * forked, a blocking send would wait for that child, and the pool lock with it) is EPIPE.
 * A send short of kernel memory is tried again. 0, EPIPE, or another errno of the send. */
CONC_NOINLINE int conc__forkpool_to_server(conc_forkpool_t *p, const conc__forkpool_ctl *m) {
    for (;;) {
        int e = conc__forkpool_ctl_send(p->ctl, m, NULL, 0, MSG_DONTWAIT);
        if (!conc__base_would_block(e) && e != ENOBUFS && e != ENOMEM)
            return e;
        if (!conc__forkpool_take_server_packets(p) || conc__forkpool_pid_exited(p->server_pid))
            return EPIPE;
        struct pollfd pf = {p->ctl, POLLOUT | POLLIN, 0}; /* room, or more of its packets */
        (void)poll(&pf, 1, conc__base_would_block(e) ? 10 : 1);
    }
}

/* Whether worker w's process can be signalled: through its pidfd, or without pidfds through
 * the server, whose unreaped child it is until the server reports its death, so that its pid
 * names it there (a kill by pid from here could reach a process that took the pid after the
 * server reaped the worker). Not for a worker we had no fd for (killed at once). Once the
 * server is gone every worker dies with it (PDEATHSIG), and a kill sent there is lost
 * (EPIPE) or waits unread at an end a child of the host holds: either way harmless. */
CONC_INLINE bool conc__forkpool_can_signal(const conc_forkpool_t *p,
                                           const conc__forkpool_worker *w) {
    return w->pidfd >= 0 || (!p->pidfds && !w->fdless && w->pid > 0 && p->ctl >= 0);
}

/* Sends sig to worker w's process, if it can be (above). Under the pool lock: the server's
 * socket carries the monitor's and the lock holders' packets alone. */
CONC_NOINLINE void conc__forkpool_signal(conc_forkpool_t *p, const conc__forkpool_worker *w,
                                         int sig) {
    if (w->pidfd >= 0) {
        (void)conc__forkpool_pidfd_signal(w->pidfd, sig);
    } else if (conc__forkpool_can_signal(p, w)) {
        conc__forkpool_ctl m = {CONC__FORKPOOL_CTL_KILL, (int32_t)(w - p->w), w->pid, sig};
        (void)conc__forkpool_to_server(p, &m);
    }
}

/* The pool gives up: the monitor kills every worker, pending work fails, calls say EPIPE. */
CONC_INLINE void conc__forkpool_give_up(conc_forkpool_t *p) {
    p->broken = true;
    p->closed = true;
}

/* The giving up's kill of every worker: one not reaped already is marked, so that its death
 * (by SIGKILL) reads as ours. */
CONC_NOINLINE void conc__forkpool_kill_all(conc_forkpool_t *p) {
    for (unsigned k = 0; k < p->nworkers; k++)
        if (conc__forkpool_can_signal(p, &p->w[k])) {
            conc__forkpool_signal(p, &p->w[k], SIGKILL);
            if (!p->w[k].died) /* not one already reaped: it died by itself */
                p->w[k].given_up = true;
        }
}

/* t + ns for a time t >= 0 and ns >= 0, saturating at CONC_FOREVER: a task_timeout may be as
 * large as CONC_FOREVER (no limit in practice), and a signed sum past it is undefined. */
CONC_INLINE int64_t conc__forkpool_after(int64_t t, int64_t ns) {
    return ns > CONC_FOREVER - t ? CONC_FOREVER : t + ns;
}

/* Slot w's next spawn waits CONC_FORKPOOL_BACKOFF, doubling up to CONC_FORKPOOL_BACKOFF_MAX. */
CONC_INLINE void conc__forkpool_back_off(conc_forkpool_t *p, conc__forkpool_worker *w,
                                         int64_t now) {
    p->backoff = p->backoff
                     ? (p->backoff * 2 > CONC_FORKPOOL_BACKOFF_MAX ? CONC_FORKPOOL_BACKOFF_MAX
                                                                   : p->backoff * 2)
                     : CONC_FORKPOOL_BACKOFF;
    w->spawn_at = now + p->backoff;
}

/* Worker slot w's process died before it reported ready (init crashed, say): after
 * CONC_FORKPOOL_GIVE_UP in a row the pool gives up, since every replacement would too. */
CONC_NOINLINE void conc__forkpool_quick_death(conc_forkpool_t *p, conc__forkpool_worker *w,
                                              int64_t now) {
    p->quick_deaths++;
    conc__forkpool_back_off(p, w, now);
    if (p->quick_deaths >= CONC_FORKPOOL_GIVE_UP && !p->broken)
        conc__forkpool_give_up(p);
}

/* The server could not make slot w a process at all. Unlike a quick death this says nothing
 * about the workers, only about the machine for now: ask again at the backoff while other
 * workers carry on; give up only once no worker is left and the failures have lasted
 * CONC__FORKPOOL_SPAWN_GIVE_UP_NS (or a map would wait for good). */
CONC_NOINLINE void conc__forkpool_spawn_failed(conc_forkpool_t *p, conc__forkpool_worker *w,
                                               int64_t now) {
    conc__forkpool_back_off(p, w, now);
    if (!p->spawn_failing_since)
        p->spawn_failing_since = now;
    bool live = false;
    for (unsigned k = 0; k < p->nworkers && !live; k++)
        live = p->w[k].state >= CONC__FORKPOOL_W_STARTING && p->w[k].state != CONC__FORKPOOL_W_GONE;
    if (!live && now - p->spawn_failing_since >= CONC__FORKPOOL_SPAWN_GIVE_UP_NS && !p->broken)
        conc__forkpool_give_up(p);
}

/* A RUNNING task goes back to the head of the queue, to be dispatched again. */
CONC_INLINE void conc__forkpool_requeue_first(conc_forkpool_t *p, conc__forkpool_task *t) {
    t->state = CONC__FORKPOOL_T_QUEUED;
    p->running_tasks--;
    t->next = p->qhead;
    p->qhead = t;
    if (!p->qtail)
        p->qtail = t;
    p->queued++;
}

/* A worker died: what it was doing gets its outcome. */
CONC_NOINLINE void conc__forkpool_death(conc_forkpool_t *p, unsigned k,
                                        conc__forkpool_done_list *dl) {
    conc__forkpool_worker *w = &p->w[k];
    conc_forkpool_outcome_t o;
    memset(&o, 0, sizeof o);
    o.status = ECHILD;
    if (WIFSIGNALED(w->wstatus))
        o.signal = WTERMSIG(w->wstatus);
    else if (WIFEXITED(w->wstatus))
        o.exit_code = WEXITSTATUS(w->wstatus);
    if (w->timed_out)
        o.status = ETIMEDOUT;
    else if (w->given_up && WIFSIGNALED(w->wstatus) && WTERMSIG(w->wstatus) == SIGKILL)
        o.status = conc__forkpool_given_up_status(p); /* our kill: it did not die by itself */
    int prior = w->state;
    if (prior == CONC__FORKPOOL_W_TASK && w->task) {
        conc__forkpool_task *t = w->task;
        w->task = NULL;
        unsigned att = t->outcome.attempts;
        /* [forkpool.G3] relaxed, in conc__forkpool_gate_drop: see "The start gate". */
        if (!t->cancelled && !w->timed_out &&
            (t->put_back < CONC__FORKPOOL_PUT_BACK_MAX || p->broken) &&
            conc__forkpool_gate_drop(p, t)) {
            /* Handed over but never started ("The start gate": the death took the gate, as a
             * cancel would): fn never ran, so this death is not the task's. Back to the head
             * of the queue with the attempt undone, its future still RUNNING; EPIPE with that
             * count if the pool has given up (nothing dispatches any more), as fail_all says
             * for the tasks that never ran (ECANCELED under terminate, as a cancel's). Past
             * CONC__FORKPOOL_PUT_BACK_MAX such deaths, the death is the task's, as below,
             * unless the pool has given up: then the kill was ours. */
            t->put_back++;
            if (t->retry_death.status != 0) /* a retry that did not start: its death stands */
                t->outcome = t->retry_death;
            t->outcome.attempts = att - 1;
            if (p->broken) {
                if (p->terminated)
                    conc__forkpool_cancelled_unstarted(t);
                else if (t->retry_death.status == 0)
                    t->outcome.status = EPIPE;
                conc__forkpool_task_finish(p, t, dl);
            } else {
                conc__forkpool_requeue_first(p, t);
            }
        } else if (!t->cancelled && o.status == ECHILD && att <= p->opts.retries && !p->broken) {
            /* How it died: its outcome if the pool gives up before the re-run starts. */
            t->outcome = t->retry_death = o;
            t->outcome.attempts = t->retry_death.attempts = att;
            conc__forkpool_requeue_first(p, t); /* re-run at the head of the queue */
        } else if (!t->cancelled && o.status == ECHILD && att <= p->opts.retries && p->terminated) {
            /* A retry was due; terminate cancels it, as one waiting in the queue. */
            t->outcome.attempts = att;
            conc__forkpool_cancelled_unstarted(t);
            conc__forkpool_task_finish(p, t, dl);
        } else {
            if (!t->cancelled) {
                t->outcome = o;
                t->outcome.attempts = att;
                t->by_cancel = p->terminated && o.status == ECANCELED; /* terminate's kill */
            }
            conc__forkpool_task_finish(p, t, dl);
        }
    } else if (prior == CONC__FORKPOOL_W_MAP && p->round_live && w->round == p->round->id) {
        conc__forkpool_round *rd = p->round;
        conc__forkpool_slot *s = &p->slots[k];
        /* Relaxed: the death report came through the kernel, after the worker's last store. */
        uint64_t c = conc_load(&s->chunk, CONC_RELAXED);
        uint64_t r = conc_load(&s->running, CONC_RELAXED);
        if (c != 0 && c <= rd->nchunks && !conc_load(&rd->done[c - 1], CONC_RELAXED)) {
            uint64_t v0 = rd->starts[c - 1], v1 = rd->starts[c];
            uint64_t from = v0;
            if (r != 0 && r - 1 >= v0 && r - 1 < v1) {
                uint64_t v = r - 1;
                const conc__forkpool_range *rg = conc__forkpool_range_of(p, v);
                uint64_t i = rg->lo + (v - rg->vstart);
                conc_forkpool_outcome_t vo = o;
                if (w->timed_out && w->victim_v != v)
                    vo.status = ECHILD; /* the timed-out item ended; this one was hit */
                vo.attempts = (unsigned)rg->attempts;
                if (vo.status == ECHILD && rg->attempts <= p->opts.retries) {
                    conc_forkpool_outcome_t reset; /* its outcome if the retry returns 0 */
                    memset(&reset, 0, sizeof reset);
                    reset.attempts = (unsigned)rg->attempts + 1;
                    conc__forkpool_item_outcome(p, i, i + 1, reset);
                    conc__forkpool_next_add(p, i, i + 1, rg->attempts + 1, vo);
                } else {
                    conc__forkpool_item_outcome(p, i, i + 1, vo);
                }
                from = v + 1;
            }
            conc__forkpool_orphan(p, from, v1);
            conc_store(&rd->done[c - 1], (uint8_t)1, CONC_RELAXED); /* resolved */
        }
    }
    /* The process is gone: close its fds and plan a replacement. */
    bool immediate = prior == CONC__FORKPOOL_W_STARTING, fdless = w->fdless;
    conc__forkpool_worker_clear(w);
    if (p->create_status == -1 && immediate)
        p->create_status = ECHILD; /* overwritten by INITFAIL's status if one came */
    int64_t now = conc_now();
    if (fdless)
        conc__forkpool_spawn_failed(p, w, now);
    else if (immediate)
        conc__forkpool_quick_death(p, w, now);
    else
        w->spawn_at = now;
}

/* Sends work to idle workers: the map's round first, then queued tasks. With `mine` (a
 * submitter), the first task message is only prepared and handed back in *mine: the
 * submitter writes it after dropping the lock. (Written under the lock, the worker's answer
 * came back while the submitter was still in sendmsg, and the monitor spun on the lock.)
 * Returns true if the monitor must be woken (conc__forkpool_kick) to learn a task deadline
 * earlier than the one it sleeps until: only the monitor enforces task_timeout.
 *
 * [forkpool.T] A task started by a thread other than the monitor must not go unwatched:
 *   submitter (dispatch, pool lock held)          monitor
 *   --------------------------------------------  -------------------------------------------
 *                                                 [forkpool.T1] lock; scan every deadline:
 *                                                   next; monitor_wake_at = next; unlock
 *   [forkpool.T2] lock; task_started = now;
 *     started + timeout < monitor_wake_at:
 *     monitor_wake_at = started + timeout, kick
 *   unlock; [forkpool.T3] write(evfd)             [forkpool.T4] poll(evfd, ..., next): the
 *                                                   counter T3 set ends it at once, even if
 *                                                   T3 came before poll began
 *                                                 [forkpool.T5] lock; read(evfd); T1 again:
 *                                                   sees task_started (T2's unlock, T5's lock)
 * task_started is the earliest a task can time out: its timeout runs from fn's start, the
 * stamp its worker leaves at the start gate; the monitor looks again until the task starts.
 * No atomics: monitor_wake_at and task_started are read and written under the pool lock only
 * (its acquire/release orders T1 before T2 or T2 before T1), and the eventfd counter keeps a
 * kick until T5 reads it. If T2 runs while the monitor is between poll and T5 (a stale
 * monitor_wake_at), T1 follows anyway before the stale time. A kick lowers monitor_wake_at, so
 * a burst of submits wakes the monitor once. tests/models/forkpool_timeout.pml checks this (and
 * the broken orders). */
CONC_NOINLINE bool conc__forkpool_dispatch(conc_forkpool_t *p, conc__forkpool_worker **mine) {
    bool wake = false;
    for (unsigned k = 0; k < p->nworkers; k++) {
        conc__forkpool_worker *w = &p->w[k];
        /* timed_out: SIGTERM is on its way (a map whose chunk ended just then): no new work. */
        /* died: reported, not settled yet (a send to the server may read reports while the
         * monitor is elsewhere): no task for it. */
        if (w->state != CONC__FORKPOOL_W_IDLE || w->timed_out || w->died ||
            conc__forkpool_out_busy(w))
            continue;
        conc__forkpool_round *rd = p->round;
        /* Relaxed: a hint; a late worker just finds the cursor past the end. */
        if (p->round_live && !p->broken && conc_load(&rd->cursor, CONC_RELAXED) < rd->nchunks &&
            w->round != rd->id) {
            conc_store(&p->slots[k].chunk, (uint64_t)0, CONC_RELAXED);
            conc_store(&p->slots[k].running, (uint64_t)0, CONC_RELAXED);
            w->state = CONC__FORKPOOL_W_MAP;
            w->round = rd->id;
            conc__forkpool_send(w, CONC__FORKPOOL_MSG_MAP, rd->id, 0, NULL, 0);
            continue;
        }
        while (p->qhead) {
            conc__forkpool_task *t = p->qhead;
            p->qhead = t->next;
            if (!p->qhead)
                p->qtail = NULL;
            p->queued--;
            t->next = NULL;
            /* The gate: PENDING -> RUNNING, or the user cancelled it (conc_future_cancel). A
             * task handed over before (a re-run, or one whose worker died before it started
             * it) is RUNNING already. */
            if (!t->handed && !conc__future_start(t->f)) {
                t->state = CONC__FORKPOOL_T_DONE; /* final already: no complete */
                t->outcome.status = ECANCELED;
                conc_store(&t->done, 1u, CONC_RELEASE); /* [forkpool.R5] */
                conc_future_release(t->f);
                continue;
            }
            t->handed = true;
            t->state = CONC__FORKPOOL_T_RUNNING;
            t->worker = (int)k;
            /* [forkpool.G0] relaxed, before the send that hands the task over (see "The start
             * gate"). */
            conc_store(&p->slots[k].gate, conc__forkpool_gate(t->id, CONC__FORKPOOL_GATE_HANDED),
                       CONC_RELAXED);
            t->outcome.status = t->outcome.signal = t->outcome.exit_code = 0; /* a re-run's */
            t->outcome.attempts++;
            p->running_tasks++;
            w->state = CONC__FORKPOOL_W_TASK;
            w->task = t;
            w->task_started = conc_now();
            int64_t to = p->opts.task_timeout;
            int64_t due = conc__forkpool_after(w->task_started, to);
            if (to > 0 && due < p->monitor_wake_at) { /* [forkpool.T2] */
                p->monitor_wake_at = due;
                wake = true;
            }
            if (mine && !*mine) {
                conc__forkpool_prepare(w, CONC__FORKPOOL_MSG_TASK, t->id,
                                       (uint64_t)(uintptr_t)t->fn, t->arg, t->len);
                w->caller_sends = true;
                *mine = w;
            } else {
                conc__forkpool_send(w, CONC__FORKPOOL_MSG_TASK, t->id, (uint64_t)(uintptr_t)t->fn,
                                    t->arg, t->len);
            }
            conc_cond_notify_all(&p->cond); /* a queue slot is free */
            break;
        }
    }
    return wake;
}

/* End of a round: nobody is left in it. Plans the next round or finishes the map. */
CONC_NOINLINE void conc__forkpool_round_check(conc_forkpool_t *p) {
    if (!p->round_live)
        return;
    conc__forkpool_round *rd = p->round;
    for (unsigned k = 0; k < p->nworkers; k++)
        if (p->w[k].state == CONC__FORKPOOL_W_MAP && p->w[k].round == rd->id)
            return;
    /* Relaxed: no worker is in the round; the last DONE/death message ordered their adds. */
    uint64_t cursor = conc_load(&rd->cursor, CONC_RELAXED);
    if (cursor < rd->nchunks && !p->broken)
        return; /* chunks left and no worker free yet: a replacement will join */
    for (uint64_t j = 0; j < rd->nchunks; j++)
        if (!conc_load(&rd->done[j], CONC_RELAXED))
            conc__forkpool_orphan(p, rd->starts[j], rd->starts[j + 1]);
    p->round_live = false;
    if (p->nnext && !p->broken) {
        size_t n = p->nnext;
        conc__forkpool_range *r = (conc__forkpool_range *)malloc(n * sizeof *r);
        if (r) {
            memcpy(r, p->next_ranges, n * sizeof *r);
            int e = conc__forkpool_round_setup(p, r, n, rd->fn, rd->arg);
            free(r);
            if (e == 0) {
                p->nnext = 0; /* the new round's own orphans and retries go here */
                return;       /* the dispatch that follows sends the new round */
            }
            p->map_status = e; /* no room for its table: the ranges get their outcomes below */
        } else {
            p->map_status = ENOMEM;
        }
    }
    /* Finished, or cannot go on (given up, or no room for the next round's table): what is
     * left fails with EPIPE (never ran to the end), but a retry that never ran keeps the
     * outcome of the death that asked for it. */
    for (size_t i = 0; i < p->nnext; i++)
        conc__forkpool_item_outcome(p, p->next_ranges[i].lo, p->next_ranges[i].hi,
                                    conc__forkpool_not_rerun(p, &p->next_ranges[i]));
    p->nnext = 0;
    p->map_finished = true;
    conc_cond_notify_all(&p->cond);
}

/* Handles one complete message from worker k. */
CONC_NOINLINE void conc__forkpool_message(conc_forkpool_t *p, unsigned k,
                                          conc__forkpool_done_list *dl) {
    conc__forkpool_worker *w = &p->w[k];
    conc__forkpool_msg *m = &w->in_hdr;
    switch (m->type) {
    case CONC__FORKPOOL_MSG_READY:
        if (w->state == CONC__FORKPOOL_W_STARTING) {
            w->state = CONC__FORKPOOL_W_IDLE;
            p->quick_deaths = 0;
            p->backoff = 0;
            p->spawn_failing_since = 0;
        }
        break;
    case CONC__FORKPOOL_MSG_INITFAIL:
        if (p->create_status == -1 || p->create_status == ECHILD)
            p->create_status = m->status;
        break;
    case CONC__FORKPOOL_MSG_FAIL:
        if (w->state == CONC__FORKPOOL_W_MAP && p->round_live && w->round == p->round->id) {
            const conc__forkpool_range *rg = conc__forkpool_range_of(p, m->a);
            uint64_t i = rg->lo + (m->a - rg->vstart);
            conc_forkpool_outcome_t o;
            memset(&o, 0, sizeof o);
            o.status = m->status;
            o.attempts = (unsigned)rg->attempts;
            conc__forkpool_item_outcome(p, i, i + 1, o);
        }
        break;
    case CONC__FORKPOOL_MSG_DONE:
        if (w->state == CONC__FORKPOOL_W_MAP) {
            w->state = CONC__FORKPOOL_W_IDLE;
            conc__forkpool_round_check(p);
        }
        break;
    case CONC__FORKPOOL_MSG_RESULT:
        /* timed_out: SIGTERM is on its way; the task ran past its time and ends ETIMEDOUT at
         * the death, like a map item whose fn had just returned (and its worker stays busy). */
        if (w->state == CONC__FORKPOOL_W_TASK && w->task && w->task->id == m->id && !w->timed_out) {
            conc__forkpool_task *t = w->task;
            w->task = NULL;
            /* a: retiring. cancelled: conc_forkpool_cancel SIGKILLed the worker after this
             * result left it; the kill lands anyway, so it must get no new task either. A
             * dropped task's worker skipped it (this is its answer) and stays. */
            bool killed = t->cancelled && !t->dropped;
            w->state = m->a || killed ? CONC__FORKPOOL_W_GONE : CONC__FORKPOOL_W_IDLE;
            if (!t->cancelled) { /* else its outcome is final already: readers may look */
                bool lost = m->len && !w->in_buf; /* no memory for it (conc__forkpool_consume) */
                t->result = w->in_buf;
                t->result_len = lost ? 0 : (size_t)m->len;
                w->in_buf = NULL;
                t->outcome.status = lost ? ENOMEM : m->status;
            }
            conc__forkpool_task_finish(p, t, dl);
        }
        break;
    default:
        break;
    }
    free(w->in_buf);
    w->in_buf = NULL;
}

/* Takes bytes from a worker's stream (a header, then its payload) and handles each message
 * as it completes. A payload the parent has no memory for is read and dropped, so the stream
 * stays in step and the worker (which did nothing wrong) stays: its task ends ENOMEM, with
 * the one attempt it had, as a task whose worker had no memory for its argument does. */
CONC_NOINLINE void conc__forkpool_consume(conc_forkpool_t *p, unsigned k, const char *b, size_t n,
                                          conc__forkpool_done_list *dl) {
    conc__forkpool_worker *w = &p->w[k];
    while (n) {
        if (w->in_got < sizeof w->in_hdr) {
            size_t c = sizeof w->in_hdr - w->in_got;
            c = c < n ? c : n;
            memcpy((char *)&w->in_hdr + w->in_got, b, c);
            w->in_got += c;
            b += c;
            n -= c;
            if (w->in_got < sizeof w->in_hdr)
                break;
            w->in_off = 0;
            w->in_buf = NULL;
            if (w->in_hdr.len)
                w->in_buf = (char *)CONC_FORKPOOL_RESULT_MALLOC((size_t)w->in_hdr.len);
        } else {
            size_t c = (size_t)w->in_hdr.len - w->in_off;
            c = c < n ? c : n;
            if (w->in_buf) /* else no memory for it: dropped */
                memcpy(w->in_buf + w->in_off, b, c);
            w->in_off += c;
            b += c;
            n -= c;
        }
        if (w->in_off == w->in_hdr.len) {
            w->in_got = 0;
            conc__forkpool_message(p, k, dl);
        }
    }
}

/* Reads what worker k sent, without blocking, and sets eof at the end of the stream. A read
 * that comes back short has (most likely) drained the socket: back to poll, which is
 * level-triggered, rather than one more recv to hear EAGAIN; with `drain` (the worker is
 * dead) it reads on until EAGAIN. A long payload is read straight into its buffer. */
CONC_NOINLINE void conc__forkpool_read(conc_forkpool_t *p, unsigned k, conc__forkpool_done_list *dl,
                                       bool drain) {
    conc__forkpool_worker *w = &p->w[k];
    char stage[CONC__FORKPOOL_STAGE];
    for (;;) {
        bool direct = w->in_got == sizeof w->in_hdr && w->in_buf &&
                      (size_t)w->in_hdr.len - w->in_off >= CONC__FORKPOOL_STAGE;
        char *dst = direct ? w->in_buf + w->in_off : stage;
        size_t want = direct ? (size_t)w->in_hdr.len - w->in_off : sizeof stage;
        ssize_t r = recv(w->sock, dst, want, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && conc__base_would_block(errno))
            return;
        if (r <= 0) {
            w->eof = true;
            return;
        }
        if (direct) {
            w->in_off += (size_t)r;
            if (w->in_off == w->in_hdr.len) {
                w->in_got = 0;
                conc__forkpool_message(p, k, dl);
            }
        } else {
            conc__forkpool_consume(p, k, stage, (size_t)r, dl);
        }
        if ((size_t)r < want && !drain)
            return;
    }
}

/* Messages from the fork server. false: it is gone. */
CONC_NOINLINE bool conc__forkpool_server_read(conc_forkpool_t *p) {
    for (;;) {
        conc__forkpool_ctl m;
        int fds[2];
        int e = conc__forkpool_ctl_recv(p->ctl, &m, fds, MSG_DONTWAIT);
        if (conc__base_would_block(e))
            return true;
        if (e != 0)
            return false;
        if (m.slot < 0 || (unsigned)m.slot >= p->nworkers) {
            for (int i = 0; i < 2; i++)
                if (fds[i] >= 0)
                    close(fds[i]);
            continue;
        }
        for (int i = 0; i < 2; i++)
            fds[i] = conc__forkpool_fd_up(fds[i]);
        conc__forkpool_worker *w = &p->w[m.slot];
        if (m.type == CONC__FORKPOOL_CTL_SPAWNED) {
            if (fds[0] < 0 || (p->pidfds && fds[1] < 0)) {
                /* The kernel dropped the fds (MSG_CTRUNC), or none was free above stdio: this
                 * process has no fd left for them. The worker can never be reached. The server
                 * closed its copy of our end, so the worker reads EOF and exits by itself; the
                 * kill is for one still in init. (The server reaps a worker once it has
                 * exited, so the pid could be reused between that exit and this kill only if
                 * every other pid were handed out in those microseconds.) Its death says
                 * nothing of the workers, only that this process is short of fds for now: it
                 * counts as a failed spawn (asked again at the backoff while other workers
                 * carry on), not as a quick death (five of those give up, and a burst of fd
                 * exhaustion took the pool down); a create still waiting fails with EMFILE. */
                for (int i = 0; i < 2; i++)
                    if (fds[i] >= 0)
                        close(fds[i]);
                if (m.pid > 0)
                    (void)kill(m.pid, SIGKILL);
                w->sock = w->pidfd = -1;
                w->pid = m.pid;
                w->eof = true; /* nothing to read: its death report settles it */
                w->fdless = true;
                w->state = CONC__FORKPOOL_W_STARTING;
                if (p->create_status == -1)
                    p->create_status = EMFILE;
                continue;
            }
            w->sock = fds[0];
            w->pidfd = fds[1]; /* -1 without pidfds */
            w->pid = m.pid;
            (void)fcntl(w->sock, F_SETFL, fcntl(w->sock, F_GETFL) | O_NONBLOCK);
            if (p->stopping) {
                w->state = CONC__FORKPOOL_W_GONE;
                conc__forkpool_signal(p, w, SIGKILL);
            } else {
                w->state = CONC__FORKPOOL_W_STARTING;
            }
        } else if (m.type == CONC__FORKPOOL_CTL_SPAWNFAIL) {
            /* No process at all (fork, socketpair or pidfd_open failed in the server). At
             * create, create fails with its errno; later the pool asks again at the backoff
             * and gives up only when no worker is left (conc__forkpool_spawn_failed). */
            w->state = CONC__FORKPOOL_W_EMPTY;
            if (p->create_status == -1) {
                conc__forkpool_quick_death(p, w, conc_now());
                p->create_status = m.status;
            } else {
                conc__forkpool_spawn_failed(p, w, conc_now());
            }
        } else if (m.type == CONC__FORKPOOL_CTL_DIED) {
            w->died = true;
            w->wstatus = m.status;
        }
    }
}

#ifndef P_PIDFD
#define P_PIDFD 3 /* waitid on a pidfd: Linux 5.4 (glibc 2.36 names it) */
#endif

/* With the server gone, worker w is its orphan: re-parented to init, or to this process if it
 * is a child subreaper (PR_SET_CHILD_SUBREAPER), and then its zombie is ours to reap, or it
 * stays one for the host's life. Whether w has exited: its pidfd says (false: not yet; the
 * monitor polls that pidfd and looks again), or with `wait` the monitor's last look kills it
 * (PDEATHSIG has already) and waits. waitid on the pidfd reaps exactly w, never another
 * child of the host, and says ECHILD when w is not ours (EINVAL before Linux 5.4: then by
 * its pid, which its zombie keeps). The dying server hands its children over only after it
 * has signalled them, so an orphan that has exited may not be on a subreaper's list of
 * children yet: a subreaper asks again for up to CONC__FORKPOOL_REAP_TRIES ms (ECHILD for all
 * of them: the host reaped it itself). Without pidfds: conc__forkpool_reap_orphan_by_pid. */
#define CONC__FORKPOOL_REAP_TRIES 100

/* The same by its pid (conc__forkpool_pid_look), without pidfds, or on Linux 5.3. Reaped by
 * that pid only once it is our zombie, whose pid stays its own until we reap it: gone, the pid
 * may name another child of the host. A zombie whose parent is still the dead server is on
 * its way to a subreaper host: looked at again, as the pidfd path asks again. Killed only
 * while it is our live child (its pid is its own until we reap it): one that is not ours,
 * PDEATHSIG has killed, unless fn took that away (a change of credentials clears it). With a
 * wait_until (0: one look), looked at every millisecond until then, when the monitor's last
 * look gives up on such an orphan: nothing of ours waits on it. The monitor's last look
 * gives all its workers one deadline, CONC__FORKPOOL_ORPHAN_WAIT_NS away. */
#define CONC__FORKPOOL_ORPHAN_WAIT_NS (2 * CONC_SEC)
CONC_NOINLINE bool conc__forkpool_reap_orphan_by_pid(pid_t server, pid_t pid, int64_t wait_until) {
    int saved = conc_errno_save(), subreaper = 0;
    (void)prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    pid_t self = getpid();
    bool settled = false, wait = wait_until != 0;
    for (;;) {
        pid_t ppid;
        int state = conc__forkpool_pid_look(pid, &ppid);
        if (state == CONC__FORKPOOL_PID_OUR_ZOMBIE) {
            (void)waitpid(pid, NULL, WNOHANG);
            settled = true;
        } else if (state == CONC__FORKPOOL_PID_GONE ||
                   (state == CONC__FORKPOOL_PID_ZOMBIE &&
                    (!subreaper || (ppid != server && ppid != self)))) {
            settled = true; /* reaped, or another process's to reap */
        } else if (state == CONC__FORKPOOL_PID_LIVE && wait && ppid == self) {
            (void)kill(pid, SIGKILL);
        }
        if (settled || !wait)
            break;
        if (conc_now() >= wait_until) {
            settled = true;
            break;
        }
        struct timespec ms = {0, (long)CONC_MS};
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ms, NULL);
    }
    conc_errno_restore(saved);
    return settled;
}

/* wait_until: 0, one look; else the monitor's last look, with the deadline by_pid needs. */
CONC_NOINLINE bool conc__forkpool_reap_orphan(const conc_forkpool_t *p, conc__forkpool_worker *w,
                                              int64_t wait_until) {
    bool wait = wait_until != 0;
    if (w->pidfd < 0) {
        if (p->pidfds || w->pid <= 0)
            return true; /* never had one (no fd for it): the death report was all there was */
        return conc__forkpool_reap_orphan_by_pid(p->server_pid, w->pid, wait_until);
    }
    if (wait) {
        (void)conc__forkpool_pidfd_signal(w->pidfd, SIGKILL);
        conc__forkpool_wait_exit(w->pidfd);
    } else {
        struct pollfd pf = {w->pidfd, POLLIN, 0};
        if (poll(&pf, 1, 0) != 1)
            return false;
    }
    int saved = conc_errno_save(), subreaper = 0;
    (void)prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    for (int tries = 0;; tries++) {
        siginfo_t si;
        if (waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) == 0)
            break;
        if (errno == EINVAL) { /* Linux 5.3: pidfds, no waitid on one; by pid, as without */
            bool settled = conc__forkpool_reap_orphan_by_pid(p->server_pid, w->pid, wait_until);
            conc_errno_restore(saved);
            return settled; /* false: its zombie is on its way to us; its pidfd wakes us */
        }
        if (errno != ECHILD || !subreaper || tries == CONC__FORKPOOL_REAP_TRIES)
            break;
        struct timespec ms = {0, (long)CONC_MS};
        (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &ms, NULL);
    }
    conc_errno_restore(saved);
    return true;
}

/* -------------------------------------------------------------------------------------------
 * The monitor thread
 * ------------------------------------------------------------------------------------------- */
CONC_NOINLINE void conc__forkpool_fail_all(conc_forkpool_t *p, conc__forkpool_done_list *dl) {
    while (p->qhead) {
        conc__forkpool_task *t = p->qhead;
        p->qhead = t->next;
        p->queued--;
        /* Never ran: EPIPE, unless its future was cancelled while queued (conc_future_cancel),
         * which keeps ECANCELED, as dispatch would have; the same gate decides (a later
         * conc_future_cancel says EBUSY), so the future and the outcome agree. A re-run keeps
         * the death that asked for it. */
        if (t->outcome.attempts == 0)
            t->outcome.status = t->handed || conc__future_start(t->f) ? EPIPE : ECANCELED;
        conc__forkpool_task_finish(p, t, dl);
    }
    p->qtail = NULL;
    conc_cond_notify_all(&p->cond);
}

CONC_NOINLINE void *conc__forkpool_monitor(void *arg) {
    conc_forkpool_t *p = (conc_forkpool_t *)arg;
    /* The fork server: forked from this thread, whose life is the pool's (PDEATHSIG). */
    fflush(NULL);
    pid_t server = fork();
    /* A process group of its own for the server and the workers it forks, set on both sides
     * of the fork so that no signal can come between: a signal sent to the host's group (a
     * terminal's hangup, Ctrl-C or Ctrl-\, kill(0, ...), timeout(1)) is the host's to decide
     * on. The server's default dispositions would let the first such signal the host handles
     * or ignores kill the server, and a pool without its server gives up for good. The pool
     * still dies with the host (PDEATHSIG). */
    if (server >= 0)
        (void)setpgid(server, server); /* 0, 0 in the child: whichever side runs first */
    if (server == 0) {
        if (!conc__forkpool_hygiene(p->ctl_server, p->parent_pid))
            _exit(0);
        conc__forkpool_server_main(p);
        _exit(0);
    }
    conc_lock_acquire(&p->lock);
    close(p->ctl_server);
    p->ctl_server = -1;
    /* The event fd, the server's socket and pidfd; a socket per worker, and once the server
     * is gone a pidfd per worker. Allocated after the fork: the server never sees them. */
    size_t npf = 3 + 2 * (size_t)p->nworkers;
    struct pollfd *pf = server > 0 ? (struct pollfd *)calloc(npf, sizeof *pf) : NULL;
    int *who = server > 0 ? (int *)calloc(npf, sizeof *who) : NULL;
    if (server > 0 && (!pf || !who)) {
        kill(server, SIGKILL); /* our own child, not yet reaped */
        waitpid(server, NULL, 0);
        server = -1;
        errno = ENOMEM;
    }
    if (server < 0) {
        free(pf);
        free(who);
        p->create_status = errno;
        p->stopped = true;
        conc_cond_notify_all(&p->cond);
        conc_lock_release(&p->lock);
        return NULL;
    }
    p->server_pid = server;
    /* The server's end of the control socket can outlive the server: a child the host forked
     * (no exec) while create ran, before our copy was closed above, holds one. Its EOF is
     * then no sign of the server's death; the server's pidfd is. Without one (no pidfds, or
     * no fd for it) the monitor looks at its child the server every CONC__FORKPOOL_LOOK_NS. */
    int server_pidfd =
        p->pidfds ? conc__forkpool_fd_up((int)syscall(SYS_pidfd_open, server, 0)) : -1;
    int64_t server_look_at = 0;
    conc__forkpool_done_list dl = {NULL};
    bool server_ok = true;
    bool ctl_closed = false;
    int64_t stop_deadline = 0;
    for (;;) {
        int64_t now = conc_now();
        /* Give up / shutdown: once stopping, no spawns; kill or QUIT what is there. */
        if (p->broken && !p->stopping) {
            conc__forkpool_kill_all(p);
            conc__forkpool_fail_all(p, &dl);
            if (p->create_status == -1)
                p->create_status = ECHILD;
        }
        if (p->stopping) {
            if (!stop_deadline)
                stop_deadline = now + CONC__FORKPOOL_STOP_GRACE;
            bool left = false, sending = false;
            for (unsigned k = 0; k < p->nworkers; k++) {
                conc__forkpool_worker *w = &p->w[k];
                if (w->caller_sends) { /* a submitter's send ends soon, then it kicks us */
                    left = sending = true;
                    continue;
                }
                if (w->state == CONC__FORKPOOL_W_IDLE || w->state == CONC__FORKPOOL_W_STARTING) {
                    conc__forkpool_send(w, CONC__FORKPOOL_MSG_QUIT, 0, 0, NULL, 0);
                    w->state = CONC__FORKPOOL_W_GONE;
                } else if ((w->state == CONC__FORKPOOL_W_TASK || w->state == CONC__FORKPOOL_W_MAP ||
                            (w->state == CONC__FORKPOOL_W_GONE && now >= stop_deadline)) &&
                           conc__forkpool_can_signal(p, w) && !w->kill_at) {
                    /* Work still running at a stop is the give-up or create-failure case
                     * (shutdown waited for the rest): kill it; its death settles it. */
                    conc__forkpool_signal(p, w, SIGKILL);
                    w->kill_at = CONC_FOREVER;
                } else if (w->state == CONC__FORKPOOL_W_EMPTY) {
                    w->spawn_at = 0;
                }
                if (w->state != CONC__FORKPOOL_W_EMPTY)
                    left = true;
            }
            /* With the server gone no death report will come: stop without waiting for the
             * workers (they die with it), but not while a submitter still writes to a
             * worker's socket outside the lock: the clear below would close the fd under it
             * (its send would go to whatever took the number) and wipe the flag it clears. */
            if (!left || (!server_ok && !sending))
                break;
        } else if (server_ok) {
            unsigned asked = 0;
            for (unsigned k = 0; k < p->nworkers; k++)
                asked += p->w[k].state == CONC__FORKPOOL_W_SPAWNING;
            for (unsigned k = 0; k < p->nworkers && asked < CONC__FORKPOOL_SPAWN_BATCH; k++) {
                conc__forkpool_worker *w = &p->w[k];
                if (w->state == CONC__FORKPOOL_W_EMPTY && !p->broken && w->spawn_at <= now) {
                    asked++;
                    conc__forkpool_ctl m = {CONC__FORKPOOL_CTL_SPAWN, (int32_t)k, 0, 0};
                    if (conc__forkpool_to_server(p, &m) != 0)
                        server_ok = false;
                    w->state = CONC__FORKPOOL_W_SPAWNING;
                }
            }
            (void)conc__forkpool_dispatch(p, NULL); /* the scan below sees what it started */
        }
        /* Timeouts: SIGTERM past task_timeout, SIGKILL after the grace. */
        int64_t next = CONC_FOREVER;
        int64_t to = p->opts.task_timeout;
        /* A look again in a quarter timeout, for what may start to count after this scan. */
        int64_t relook =
            to > 0 ? conc__forkpool_after(now, to / 4 > CONC_MS ? to / 4 : CONC_MS) : 0;
        for (unsigned k = 0; k < p->nworkers; k++) {
            conc__forkpool_worker *w = &p->w[k];
            if (w->kill_at) {
                if (now >= w->kill_at) {
                    conc__forkpool_signal(p, w, SIGKILL);
                    w->kill_at = CONC_FOREVER;
                } else if (w->kill_at < next) {
                    next = w->kill_at;
                }
                continue;
            }
            if (w->state == CONC__FORKPOOL_W_EMPTY && !p->stopping && !p->broken &&
                w->spawn_at < next)
                next = w->spawn_at;
            if (to <= 0 || w->timed_out)
                continue;
            int64_t start = 0;
            uint64_t v = 0;
            if (w->state == CONC__FORKPOOL_W_TASK && w->task) {
                /* From fn's start, not the dispatch: a worker still taking in a long argument
                 * has not started the task. Acquire: pairs with the gate's release, so the
                 * stamp is this task's. Not started yet: look at task_started + to (when it
                 * could time out at the earliest), and from then on every quarter timeout. */
                uint64_t g = conc_load(&p->slots[k].gate, CONC_ACQUIRE);
                if (g == conc__forkpool_gate(w->task->id, CONC__FORKPOOL_GATE_STARTED)) {
                    start = conc_load(&p->slots[k].started_ns, CONC_RELAXED);
                } else if (g == conc__forkpool_gate(w->task->id, CONC__FORKPOOL_GATE_HANDED)) {
                    int64_t look = now - w->task_started < to
                                       ? conc__forkpool_after(w->task_started, to)
                                       : relook;
                    if (look < next)
                        next = look;
                }
            } else if (w->state == CONC__FORKPOOL_W_MAP) {
                /* Acquire: pairs with the worker's release of running, so start is this
                 * item's or a later one's (later only delays the timeout); a sample, the
                 * item identity is re-checked at the death. */
                v = conc_load(&p->slots[k].running, CONC_ACQUIRE);
                start = conc_load(&p->slots[k].started_ns, CONC_RELAXED);
                if (v == 0)
                    start = 0;
            }
            if (!start)
                continue;
            if (now - start >= to) {
                w->timed_out = true;
                w->victim_v = v - 1;
                conc__forkpool_signal(p, w, SIGTERM);
                w->kill_at = now + CONC_FORKPOOL_GRACE;
                if (w->kill_at < next)
                    next = w->kill_at;
            } else if (conc__forkpool_after(start, to) < next) {
                next = conc__forkpool_after(start, to);
            }
        }
        if (p->stopping && stop_deadline < next)
            next = stop_deadline;
        /* No pidfd for the server: a look at it now and then (below). */
        if (!ctl_closed && server_pidfd < 0) {
            if (!server_look_at)
                server_look_at = conc__forkpool_after(now, CONC__FORKPOOL_LOOK_NS);
            if (server_look_at < next)
                next = server_look_at;
        }
        /* The server gone, without pidfds: a look at each worker's pid every millisecond
         * until it has exited (and is settled), as PDEATHSIG makes it do at once. */
        for (unsigned k = 0; k < p->nworkers && !server_ok && !p->pidfds; k++)
            if (p->w[k].state != CONC__FORKPOOL_W_EMPTY && now + CONC_MS < next)
                next = now + CONC_MS;
        /* A map item that started after our sample may time out before we look again. */
        if (to > 0 && p->round_live && relook < next)
            next = relook;
        /* Poll set. */
        size_t n = 0;
        pf[n].fd = p->evfd;
        pf[n].events = POLLIN;
        who[n++] = -1;
        if (!ctl_closed) {
            pf[n].fd = p->ctl;
            pf[n].events = POLLIN;
            who[n++] = -2;
            if (server_pidfd >= 0) {
                pf[n].fd = server_pidfd;
                pf[n].events = POLLIN;
                who[n++] = -3;
            }
        }
        for (unsigned k = 0; k < p->nworkers; k++) {
            conc__forkpool_worker *w = &p->w[k];
            if (w->sock < 0 || w->eof)
                continue;
            pf[n].fd = w->sock;
            pf[n].events =
                (short)(POLLIN | (!w->caller_sends && conc__forkpool_out_busy(w) ? POLLOUT : 0));
            who[n++] = (int)k;
        }
        for (unsigned k = 0; k < p->nworkers && !server_ok; k++) {
            /* No death report will come, and the socket's EOF may not either while a child
             * that fn forked holds a copy of the worker's end: the worker's exit will. */
            conc__forkpool_worker *w = &p->w[k];
            if (w->pidfd < 0 || w->state == CONC__FORKPOOL_W_EMPTY)
                continue;
            pf[n].fd = w->pidfd;
            pf[n].events = POLLIN;
            who[n++] = (int)(p->nworkers + k);
        }
        p->monitor_wake_at = next; /* [forkpool.T1]: a submitter kicks us for anything sooner */
        int timeout_ms = -1;
        if (next != CONC_FOREVER) {
            int64_t d = next - now;
            timeout_ms = d <= 0                       ? 0
                         : d / CONC_MS >= INT_MAX - 1 ? INT_MAX /* 24 days; looks again then */
                                                      : (int)((d + CONC_MS - 1) / CONC_MS);
        }
        conc_lock_release(&p->lock);
        conc__forkpool_complete(&dl); /* callbacks run without the pool lock */
        int r = poll(pf, (nfds_t)n, timeout_ms);
        conc_lock_acquire(&p->lock);
        if (r < 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (!pf[i].revents)
                continue;
            if (who[i] == -1) {
                uint64_t v;
                ssize_t rr = read(p->evfd, &v, sizeof v);
                CONC_UNUSED(rr);
            } else if (who[i] == -2 || who[i] == -3) {
                /* -3: the server has exited; what it sent before is queued: read it all. */
                if (!ctl_closed && (!conc__forkpool_server_read(p) || who[i] == -3)) {
                    server_ok = false;
                    ctl_closed = true;
                }
            } else if (who[i] >= (int)p->nworkers) {
                /* The worker has exited, with the server gone: every byte it sent is queued
                 * at our end; read them, and take that for the EOF (settled below). */
                unsigned k = (unsigned)who[i] - p->nworkers;
                if (!p->w[k].eof && p->w[k].sock >= 0) {
                    conc__forkpool_read(p, k, &dl, true);
                    p->w[k].eof = true;
                }
            } else {
                unsigned k = (unsigned)who[i];
                if ((pf[i].revents & POLLOUT) && !p->w[k].caller_sends)
                    (void)conc__forkpool_flush(&p->w[k]);
                if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
                    conc__forkpool_read(p, k, &dl, false);
            }
        }
        if (!ctl_closed && server_pidfd < 0 && conc_now() >= server_look_at) {
            server_look_at = 0;
            /* Our child: exited (its zombie), or reaped by the host's own wait. What it sent
             * before is queued: read it all, as for its pidfd. */
            if (conc__forkpool_pid_exited(server)) {
                (void)conc__forkpool_server_read(p);
                server_ok = false;
                ctl_closed = true;
            }
        }
        for (unsigned k = 0; k < p->nworkers && !server_ok && !p->pidfds; k++) {
            /* As for a worker's pidfd with the server gone (above): by its pid. */
            conc__forkpool_worker *w = &p->w[k];
            if (w->state != CONC__FORKPOOL_W_EMPTY && !w->eof && w->sock >= 0 &&
                conc__forkpool_pid_exited(w->pid)) {
                conc__forkpool_read(p, k, &dl, true);
                w->eof = true;
            }
        }
        for (unsigned k = 0; k < p->nworkers; k++) {
            conc__forkpool_worker *w = &p->w[k];
            if (w->died && !w->eof && w->sock >= 0) {
                /* Reaped: every byte it sent is on its socket already (a send returns once
                 * the bytes are queued at our end, and it exited after its last one). Read
                 * them now rather than wait for the EOF, which a child that fn forked, still
                 * holding a copy of the socket, would put off for as long as it lives. */
                conc__forkpool_read(p, k, &dl, true);
                w->eof = true;
            }
            if (w->state != CONC__FORKPOOL_W_EMPTY && w->eof && w->died && !w->caller_sends) {
                conc__forkpool_death(p, k, &dl);
                conc__forkpool_round_check(p);
            }
        }
        if (!server_ok) { /* the server is gone: so is every worker, soon (PDEATHSIG) */
            /* No replacement will come: give up before the deaths below, or a round they end
             * would wait for one (a map left for good when the workers' ends came in the same
             * poll as the server's). */
            if (!p->broken)
                conc__forkpool_give_up(p);
            for (unsigned k = 0; k < p->nworkers; k++) {
                conc__forkpool_worker *w = &p->w[k];
                if (w->state == CONC__FORKPOOL_W_SPAWNING) {
                    w->state = CONC__FORKPOOL_W_EMPTY;
                } else if (w->state != CONC__FORKPOOL_W_EMPTY && w->eof && !w->caller_sends &&
                           conc__forkpool_reap_orphan(p, w, 0)) {
                    /* No report will come. The server's death killed it (PDEATHSIG: SIGKILL),
                     * as a giving up does: what it ran ends EPIPE, as then. */
                    w->died = true;
                    w->wstatus = SIGKILL; /* a wait status: killed by SIGKILL */
                    w->given_up = true;
                    conc__forkpool_death(p, k, &dl);
                }
            }
            conc__forkpool_round_check(p);
        }
        if (p->create_status == -1) {
            unsigned ready = 0;
            for (unsigned k = 0; k < p->nworkers; k++)
                ready += p->w[k].state == CONC__FORKPOOL_W_IDLE;
            if (ready == p->nworkers) {
                p->create_status = 0;
                conc_cond_notify_all(&p->cond);
            }
        } else if (p->create_status > 0 && !p->stopping) {
            p->stopping = p->closed = true; /* create failed: tear down */
            conc_cond_notify_all(&p->cond);
        }
        if (p->broken && p->round_live)
            conc__forkpool_round_check(p);
        conc_cond_notify_all(&p->cond); /* cheap when nobody waits */
    }
    /* Every worker is reaped (the server reported each death). Let the server go: shutdown,
     * not just close, ends its stream (its EOF) whatever copies of our end live on; a child
     * the host forked without exec holds one for as long as it lives. */
    (void)shutdown(p->ctl, SHUT_RDWR);
    close(p->ctl);
    p->ctl = -1;
    int64_t orphans_until = conc__forkpool_after(conc_now(), CONC__FORKPOOL_ORPHAN_WAIT_NS);
    for (unsigned k = 0; k < p->nworkers; k++) {
        conc__forkpool_worker *w = &p->w[k];
        if (w->task) { /* the server vanished with it: no status will come */
            if (!w->task->cancelled) {
                w->task->outcome.status = ECHILD;
                w->task->outcome.signal = SIGKILL;
            }
            conc__forkpool_task_finish(p, w->task, &dl);
        }
        if (!server_ok && w->state != CONC__FORKPOOL_W_EMPTY)
            (void)conc__forkpool_reap_orphan(p, w, orphans_until);
        conc__forkpool_worker_clear(w);
    }
    /* A map's round still live (the pool gave up, or the server went, before a worker in it
     * reported) has nobody left to run it: it ends as a round the pool gave up on does, what
     * did not run to the end EPIPE, and the map returns. */
    if (p->round_live) {
        p->broken = true;
        conc__forkpool_round_check(p);
    }
    conc__forkpool_fail_all(p, &dl);
    conc_lock_release(&p->lock);
    conc__forkpool_complete(&dl);
    int ws;
    while (waitpid(server, &ws, 0) < 0 && errno == EINTR) {
    }
    if (server_pidfd >= 0)
        close(server_pidfd);
    free(pf);
    free(who);
    conc_lock_acquire(&p->lock);
    p->stopped = true;
    conc_cond_notify_all(&p->cond);
    conc_lock_release(&p->lock);
    return NULL;
}

/* -------------------------------------------------------------------------------------------
 * Create, shutdown, destroy
 * ------------------------------------------------------------------------------------------- */
CONC_NOINLINE void conc__forkpool_free_all(conc_forkpool_t *p) {
    if (p->evfd >= 0)
        close(p->evfd);
    if (p->ctl >= 0)
        close(p->ctl);
    if (p->ctl_server >= 0)
        close(p->ctl_server);
    if (p->shm)
        munmap(p->shm, p->shm_size);
    if (p->home)
        munmap((void *)(uintptr_t)p->home, (size_t)sysconf(_SC_PAGESIZE));
    for (conc__forkpool_block *b = p->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(p->w);
    free(p->next_ranges);
    free(p);
}

/* Whether the caller is the pool's monitor thread (an on_done callback of a fork-pool future
 * runs there), which everything past the closing waits for. Under the pool lock: once joined,
 * the monitor's pthread_t may belong to a new thread. */
CONC_INLINE bool conc__forkpool_on_monitor(const conc_forkpool_t *p) {
    return !p->joined && pthread_equal(pthread_self(), p->monitor);
}

/* Every queued task ends ECANCELED, never run, its future CANCELLED. */
CONC_NOINLINE void conc__forkpool_cancel_queued(conc_forkpool_t *p, conc__forkpool_done_list *dl) {
    while (p->qhead) {
        conc__forkpool_task *t = p->qhead;
        p->qhead = t->next;
        p->queued--;
        conc__forkpool_cancelled_unstarted(t);
        conc__forkpool_task_finish(p, t, dl);
    }
    p->qtail = NULL;
}

CONC_NOINLINE void conc__forkpool_shutdown_body(conc_forkpool_t *p, bool cancel_pending) {
    conc__forkpool_done_list dl = {NULL};
    conc_lock_acquire(&p->lock);
    bool on_monitor = conc__forkpool_on_monitor(p);
    p->closed = true;
    conc_cond_notify_all(&p->cond); /* blocked submitters and maps get EPIPE */
    if (cancel_pending)
        conc__forkpool_cancel_queued(p, &dl);
    conc_lock_release(&p->lock);
    conc__forkpool_complete(&dl);
    if (on_monitor)
        return; /* an on_done callback: the monitor cannot wait for itself; a later shutdown
                   or destroy from another thread finishes the work and joins */
    conc_lock_acquire(&p->lock);
    /* Finish queued and running work and the running map, then stop the workers. One kick:
     * the monitor notifies the cond on every turn of its loop, so a kick per wake would have
     * the two threads wake each other, both CPUs busy, for as long as a task runs. */
    conc__forkpool_kick(p);
    while (!p->stopped && (p->queued || p->running_tasks || p->map_active) && !p->broken)
        conc_cond_wait(&p->cond, &p->lock);
    p->stopping = true;
    conc__forkpool_kick(p);
    /* Stopped, the monitor has ended any map's round (no worker is left to run it); the map
     * itself, and maps that were waiting their turn, still have to wake and leave before the
     * pool may be freed. */
    while (!p->stopped || p->maps_inside)
        conc_cond_wait(&p->cond, &p->lock);
    bool join = !p->joined;
    p->joined = true;
    conc_lock_release(&p->lock);
    if (join)
        pthread_join(p->monitor, NULL);
}

static inline void conc_forkpool_shutdown(conc_forkpool_t *p, bool cancel_pending) {
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_shutdown");
    int saved_errno = conc_errno_save(); /* no call sets errno: the waits, writes and join may */
    conc__forkpool_shutdown_body(p, cancel_pending);
    conc_errno_restore(saved_errno);
}

/* Python's Pool.terminate(): the pool gives up on purpose (the giving up's path: every worker
 * killed, nothing spawned, no retry), with ECANCELED where a giving up says EPIPE. The queue
 * is cancelled first, under the same lock, so that no queued task reads as given up. A pool
 * that has stopped or given up already has nothing running: the shutdown alone. */
CONC_NOINLINE void conc__forkpool_terminate_body(conc_forkpool_t *p) {
    conc__forkpool_done_list dl = {NULL};
    conc_lock_acquire(&p->lock);
    if (!p->stopping && !p->broken) {
        p->terminated = true;
        conc__forkpool_cancel_queued(p, &dl);
        conc__forkpool_give_up(p);
        conc__forkpool_kill_all(p);
        conc_cond_notify_all(&p->cond); /* a shutdown waiting for the work: it is ending */
        conc__forkpool_kick(p);
    }
    conc_lock_release(&p->lock);
    conc__forkpool_complete(&dl);
    conc__forkpool_shutdown_body(p, true);
}

static inline void conc_forkpool_terminate(conc_forkpool_t *p) {
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_terminate");
    int saved_errno = conc_errno_save(); /* as shutdown's, and the kills' */
    conc__forkpool_terminate_body(p);
    conc_errno_restore(saved_errno);
}

static inline void conc_forkpool_destroy(conc_forkpool_t *p) {
    if (!p)
        return;
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_destroy");
    int saved_errno = conc_errno_save(); /* close and munmap too */
    conc_lock_acquire(&p->lock);
    bool on_monitor = conc__forkpool_on_monitor(p);
    conc_lock_release(&p->lock);
    if (on_monitor) /* it would wait for itself, then free the pool it runs in */
        CONC_ABORT("conc_forkpool_destroy: called from an on_done callback of its own pool");
    conc_forkpool_shutdown(p, false);
    conc__forkpool_free_all(p);
    conc_errno_restore(saved_errno);
}

CONC_NOINLINE int conc__forkpool_create_body(conc_forkpool_t **out, const conc_forkpool_opts_t *o) {
    *out = NULL;
    conc_forkpool_opts_t opts;
    memset(&opts, 0, sizeof opts);
    if (o)
        opts = *o;
    if (opts.workers == 0) { /* one per CPU, at most the most a pool may have */
        opts.workers = (unsigned)conc_cpu_count();
        if (opts.workers > CONC_FORKPOOL_MAX_WORKERS)
            opts.workers = CONC_FORKPOOL_MAX_WORKERS;
    }
    if (opts.workers > CONC_FORKPOOL_MAX_WORKERS || opts.task_timeout < 0)
        return EINVAL;
    if (opts.queue_capacity == 0)
        opts.queue_capacity = SIZE_MAX; /* unbounded: no submit waits for room (Python's) */
    if (opts.shared_size == 0)
        opts.shared_size = CONC__FORKPOOL_SHARED_DEFAULT;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t ctl_bytes = sizeof(conc__forkpool_round) + opts.workers * sizeof(conc__forkpool_slot);
    size_t arena_off = (ctl_bytes + page - 1) & ~(page - 1);
    /* The arena is shared_size in whole pages; the control pages come on top of it. */
    size_t arena = (opts.shared_size + page - 1) & ~(page - 1);
    if (arena < opts.shared_size || arena > SIZE_MAX - arena_off)
        return EINVAL; /* the rounding or the control pages overflow */
    size_t shm_size = arena_off + arena;
    conc_forkpool_t *p = (conc_forkpool_t *)calloc(1, sizeof *p);
    if (!p)
        return ENOMEM;
    p->opts = opts;
    p->nworkers = opts.workers;
    p->evfd = p->ctl = p->ctl_server = -1;
    p->create_status = -1;
    p->monitor_wake_at = CONC_FOREVER; /* until the monitor first sleeps: any deadline kicks */
    conc_lock_init(&p->lock, 0);
    conc_cond_init(&p->cond, 0);
    p->parent_pid = getpid();
    p->pidfds = conc__forkpool_pidfds_work();
    conc__forkpool_home_init(p);
    int e = 0;
    p->w = (conc__forkpool_worker *)calloc(opts.workers, sizeof *p->w);
    void *shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (shm == MAP_FAILED) {
        e = errno;
    } else {
        p->shm = (char *)shm;
        p->shm_size = shm_size;
    }
    if (!e && !p->w)
        e = ENOMEM;
    if (!e) {
        p->round = (conc__forkpool_round *)shm;
        p->slots = (conc__forkpool_slot *)(void *)((char *)shm + sizeof(conc__forkpool_round));
        p->arena_off = arena_off;
        p->blocks = (conc__forkpool_block *)calloc(1, sizeof *p->blocks);
        if (!p->blocks)
            e = ENOMEM;
        else {
            p->blocks->off = arena_off;
            p->blocks->size = shm_size - arena_off;
        }
    }
    for (unsigned k = 0; !e && k < opts.workers; k++)
        p->w[k].sock = p->w[k].pidfd = -1;
    if (!e && (p->evfd = conc__forkpool_fd_up(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))) < 0)
        e = errno;
    int sv[2];
    if (!e) {
        if ((e = conc__forkpool_socketpair(SOCK_SEQPACKET, sv)) == 0) {
            /* Blocking sends (see CONC__FORKPOOL_SPAWN_BATCH), MSG_DONTWAIT reads. */
            p->ctl = sv[0];
            p->ctl_server = sv[1];
        }
    }
    if (!e) {
        /* The monitor runs with every signal blocked: the host's handlers run in the host's
         * threads, and a signal never lands in the fork that makes the server. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        e = pthread_create(&p->monitor, NULL, conc__forkpool_monitor, p);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (e) {
        conc__forkpool_free_all(p);
        return e;
    }
    conc_lock_acquire(&p->lock);
    while (p->create_status == -1 && !p->stopped)
        conc_cond_wait(&p->cond, &p->lock);
    e = p->create_status;
    conc_lock_release(&p->lock);
    if (e != 0) {
        conc_forkpool_shutdown(p, true);
        conc__forkpool_free_all(p);
        return e;
    }
    *out = p;
    return 0;
}

CONC_NODISCARD static inline int conc_forkpool_create(conc_forkpool_t **out,
                                                      const conc_forkpool_opts_t *o) {
    if (!out)
        return EINVAL;
    int saved_errno = conc_errno_save(); /* no call sets errno: malloc, mmap, socketpair... may */
    int e = conc__forkpool_create_body(out, o);
    conc_errno_restore(saved_errno);
    return e;
}

static inline unsigned conc_forkpool_workers(const conc_forkpool_t *p) {
    if (CONC_UNLIKELY(!p))
        CONC_ABORT("conc_forkpool_workers: NULL pool"); /* a query: no error to return */
    return p->nworkers;
}

/* The live workers' pids (for tests and tools): how many were written, at most n. */
static inline size_t conc_forkpool_pids(conc_forkpool_t *p, pid_t *pids, size_t n) {
    CONC__FORKPOOL_CHECK_PARENT(p, "conc_forkpool_pids"); /* a copy's lock may be held for good */
    size_t k = 0;
    int saved_errno = conc_errno_save(); /* the lock's futex may set it */
    conc_lock_acquire(&p->lock);
    for (unsigned i = 0; i < p->nworkers && k < n; i++)
        if (p->w[i].state >= CONC__FORKPOOL_W_IDLE && p->w[i].state != CONC__FORKPOOL_W_GONE)
            pids[k++] = p->w[i].pid;
    conc_lock_release(&p->lock);
    conc_errno_restore(saved_errno);
    return k;
}

/* -------------------------------------------------------------------------------------------
 * map
 * ------------------------------------------------------------------------------------------- */
/* Every item's outcome before the map: never started (a map that cannot begin: EPIPE,
 * attempts 0), or, until a later outcome replaces it, returned 0 on its first start. */
CONC_INLINE void conc__forkpool_outcomes_fill(conc_forkpool_outcome_t *out, size_t n, int status,
                                              unsigned attempts) {
    for (size_t i = 0; out && i < n; i++) {
        out[i].status = status;
        out[i].signal = out[i].exit_code = 0;
        out[i].attempts = attempts;
    }
}

/* A map leaves the pool (under its lock, released here): the next turn may go, and a
 * shutdown that waits for every map to be out may end. */
CONC_INLINE void conc__forkpool_map_leave(conc_forkpool_t *p) {
    p->maps_inside--;
    conc_cond_notify_all(&p->cond);
    conc_lock_release(&p->lock);
}

CONC_NOINLINE int conc__forkpool_map_body(conc_forkpool_t *p, conc_forkpool_map_fn fn, void *arg,
                                          size_t n, conc_forkpool_outcome_t *outcomes) {
    if (!p || !fn)
        return EINVAL;
    if (conc__forkpool_foreign(p))
        return EPERM;
    /* Outside the pool lock (n may be large): the monitor writes them only once our round
     * is set up, under the lock. */
    conc__forkpool_outcomes_fill(outcomes, n, 0, 1);
    conc_lock_acquire(&p->lock);
    if (conc__forkpool_on_monitor(p)) { /* the map would wait for the thread it blocks */
        conc_lock_release(&p->lock);
        return EDEADLK;
    }
    p->maps_inside++; /* until conc__forkpool_map_leave */
    /* A turn in arrival order: a thread that maps again as soon as its map returns must not
     * pass one that was already waiting (woken, it would find the pool taken again). Once
     * the pool is closed every waiter leaves with EPIPE, and no turn matters any more. */
    uint64_t turn = p->map_turns++;
    while ((p->map_active || turn != p->map_serving) && !p->closed)
        conc_cond_wait(&p->cond, &p->lock);
    if (p->closed) {
        conc__forkpool_map_leave(p);
        conc__forkpool_outcomes_fill(outcomes, n, EPIPE, 0);
        return EPIPE;
    }
    if (n == 0) {
        p->map_serving++;
        conc__forkpool_map_leave(p);
        return 0;
    }
    conc__forkpool_range r0;
    memset(&r0, 0, sizeof r0);
    r0.lo = 0;
    r0.hi = n;
    r0.attempts = 1;
    p->map_out = outcomes;
    p->map_first = UINT64_MAX;
    p->map_first_status = 0;
    p->nnext = 0;
    p->map_status = 0;
    p->map_finished = false;
    int e = conc__forkpool_round_setup(p, &r0, 1, fn, arg);
    if (e) {
        p->map_out = NULL;
        p->map_serving++;
        conc__forkpool_map_leave(p);
        conc__forkpool_outcomes_fill(outcomes, n, EPIPE, 0);
        return e;
    }
    p->map_active = true;
    (void)conc__forkpool_dispatch(p, NULL);
    conc__forkpool_kick(p); /* always: the monitor samples the round's item deadlines */
    while (!p->map_finished)
        conc_cond_wait(&p->cond, &p->lock);
    if (p->round_mem) {
        (void)conc__forkpool_free_locked(p, p->round_mem);
        p->round_mem = NULL;
    }
    int status = p->map_status;
    if (status == 0 && !outcomes)
        status = p->map_first_status;
    p->map_out = NULL;
    p->map_active = false;
    p->map_serving++; /* the next turn's */
    conc__forkpool_map_leave(p);
    /* The first failing item in index order (an item's last outcome is in the array). */
    for (size_t i = 0; outcomes && status == 0 && i < n; i++)
        status = outcomes[i].status;
    return status;
}

CONC_NODISCARD static inline int conc_forkpool_map(conc_forkpool_t *p, conc_forkpool_map_fn fn,
                                                   void *arg, size_t n,
                                                   conc_forkpool_outcome_t *outcomes) {
    /* No call sets errno: the waits and the kick's write may. */
    int saved_errno = conc_errno_save();
    int e = conc__forkpool_map_body(p, fn, arg, n, outcomes);
    conc_errno_restore(saved_errno);
    return e;
}

/* -------------------------------------------------------------------------------------------
 * submit
 * ------------------------------------------------------------------------------------------- */
CONC_NOINLINE int conc__forkpool_submit_body(conc_forkpool_t *p, conc_forkpool_task_fn fn,
                                             const void *arg, size_t len, conc_future_t **out,
                                             bool block) {
    if (out)
        *out = NULL;
    if (!p || !fn || (!arg && len))
        return EINVAL;
    if (conc__forkpool_foreign(p))
        return EPERM;
    conc_future_t *f;
    void *ext;
    if (conc__future_create_ext(&f, sizeof(conc__forkpool_task), conc__forkpool_task_free, &ext) !=
        0)
        return ENOMEM;
    conc__forkpool_task *t = (conc__forkpool_task *)ext;
    memset(t, 0, sizeof *t);
    t->pool = p;
    t->f = f;
    t->fn = fn;
    t->len = len;
    if (len) {
        t->arg = malloc(len);
        if (!t->arg) {
            conc_future_release(f);
            return ENOMEM;
        }
        memcpy(t->arg, arg, len);
    }
    conc_lock_acquire(&p->lock);
    /* Only the monitor (an on_done callback runs there) makes room: it must not wait for it. */
    int full = block && conc__forkpool_on_monitor(p) ? EDEADLK : EAGAIN;
    while (!p->closed && p->queued >= p->opts.queue_capacity && full == EAGAIN && block)
        conc_cond_wait(&p->cond, &p->lock);
    int e = p->closed ? EPIPE : p->queued >= p->opts.queue_capacity ? full : 0;
    if (e) {
        conc_lock_release(&p->lock);
        conc_future_release(f);
        return e;
    }
    if (out)
        conc_future_retain(f); /* the caller's; the pool keeps the first until done */
    t->id = ++p->next_task_id;
    t->state = CONC__FORKPOOL_T_QUEUED;
    CONC__BASE_SLIST_APPEND(p->qhead, p->qtail, t, next);
    p->queued++;
    conc__forkpool_worker *mine = NULL;
    /* An idle worker gets it now, without a thread hop; the monitor hears of its deadline. */
    bool kick = conc__forkpool_dispatch(p, &mine);
    kick = kick || p->queued > 0;
    for (unsigned k = 0; k < p->nworkers && !kick; k++)
        kick = &p->w[k] != mine && conc__forkpool_out_busy(&p->w[k]); /* the monitor writes */
    /* The task we send may finish (and its argument be freed) before our sendmsg returns:
     * hold its future until we are done with the bytes. */
    conc_future_t *held = mine ? mine->task->f : NULL;
    if (held)
        conc_future_retain(held);
    conc_lock_release(&p->lock);
    if (mine) {
        /* Ours until caller_sends is cleared: the monitor keeps off its output and its fd. */
        CONC_FORKPOOL_SEND_HOOK(mine->sock);
        (void)conc__forkpool_flush(mine);
        conc_lock_acquire(&p->lock);
        mine->caller_sends = false;
        /* A long argument is left for the monitor to finish; a death or a dispatch it put
         * off while we sent needs it awake. */
        kick = kick || conc__forkpool_out_busy(mine) || mine->eof || p->queued > 0 || p->stopping;
        conc_lock_release(&p->lock);
        conc_future_release(held);
    }
    if (kick)
        conc__forkpool_kick(p);
    if (out)
        *out = f;
    return 0;
}

CONC_INLINE int conc__forkpool_submit(conc_forkpool_t *p, conc_forkpool_task_fn fn, const void *arg,
                                      size_t len, conc_future_t **out, bool block) {
    /* No call sets errno: malloc may, and sendmsg's EAGAIN on success. */
    int saved_errno = conc_errno_save();
    int e = conc__forkpool_submit_body(p, fn, arg, len, out, block);
    conc_errno_restore(saved_errno);
    return e;
}

CONC_NODISCARD static inline int conc_forkpool_submit(conc_forkpool_t *p, conc_forkpool_task_fn fn,
                                                      const void *arg, size_t len,
                                                      conc_future_t **f) {
    return conc__forkpool_submit(p, fn, arg, len, f, true);
}

CONC_NODISCARD static inline int conc_forkpool_try_submit(conc_forkpool_t *p,
                                                          conc_forkpool_task_fn fn, const void *arg,
                                                          size_t len, conc_future_t **f) {
    return conc__forkpool_submit(p, fn, arg, len, f, false);
}

static inline const void *conc_forkpool_result(conc_future_t *f, size_t *len) {
    conc__forkpool_task *t = conc__forkpool_task_of(f);
    if (len)
        *len = 0;
    /* [future.A1] acquire inside conc_future_state: the monitor wrote result and result_len before
     * completing ([future.R1]). A task that returned 0 with no bytes gets "" (not NULL). */
    if (!t || conc_future_state(f) != CONC_FUTURE_DONE)
        return NULL;
    if (len)
        *len = t->result_len;
    return t->result ? t->result : "";
}

CONC_NODISCARD static inline int conc_forkpool_outcome(conc_future_t *f,
                                                       conc_forkpool_outcome_t *out) {
    conc__forkpool_task *t = conc__forkpool_task_of(f);
    if (!t || !out)
        return EINVAL;
    if (!conc_future_is_done(f))
        return EAGAIN;
    /* [forkpool.A5] acquire: pairs with [forkpool.R5]; the outcome fields are final. Done but
     * not yet off the books: conc_forkpool_cancel completed it (and wrote the outcome before
     * completing, which [future.A1] in is_done orders before us), or the user cancelled it
     * while queued. */
    if (!conc_load(&t->done, CONC_ACQUIRE) && !t->cancelled) {
        memset(out, 0, sizeof *out);
        out->status = ECANCELED;
        return 0;
    }
    *out = t->outcome;
    return 0;
}

CONC_NODISCARD static inline int conc_forkpool_cancel(conc_future_t *f) {
    conc__forkpool_task *t = conc__forkpool_task_of(f);
    if (!t)
        return EINVAL;
    if (conc_load(&t->done, CONC_ACQUIRE)) /* [forkpool.A5]: the pool may be gone; done is final */
        return EBUSY;
    conc_forkpool_t *p = t->pool;
    if (conc__forkpool_foreign(p)) /* its pidfds are the parent's: it would kill a worker there */
        return EPERM;
    conc__forkpool_done_list dl = {NULL};
    int r = 0, watch = -1;
    pid_t watch_pid = 0;
    bool kill_done = false, dropped_first = false, dropped_handed = false;
    int saved_errno = conc_errno_save(); /* no call sets errno: the kill and the lock's futex may */
    conc_lock_acquire(&p->lock);
    if (t->state == CONC__FORKPOOL_T_QUEUED) {
        /* Dropped from the queue either way (no dispatch starts it now). Never handed over:
         * its future may be CANCELLED already by conc_future_cancel, which leaves the task
         * queued for dispatch to drop; see the cancel below. Handed over once to a worker
         * that died before it started it, or a re-run waiting for its retry: its future is
         * RUNNING, and the completion makes it CANCELLED (conc__forkpool_settle_cancelled). */
        dropped_first = !t->handed;
        conc__forkpool_task **pp = &p->qhead, *prev = NULL;
        while (*pp != t) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = t->next;
        if (p->qtail == t)
            p->qtail = prev;
        p->queued--;
        conc__forkpool_cancelled_unstarted(t);
        conc__forkpool_task_finish(p, t, &dl);
        conc_cond_notify_all(&p->cond);
    } else if (t->state == CONC__FORKPOOL_T_RUNNING && !t->cancelled &&
               conc__forkpool_gate_drop(p, t)) {
        /* Handed over, not started, and now never will be. Its worker answers and stays;
         * that answer takes the task off the books. */
        t->cancelled = t->dropped = true;
        conc__forkpool_cancelled_unstarted(t); /* its future: conc__future_cancel_started */
        t->outcome.attempts--;                 /* this attempt never started */
        dropped_handed = true;
    } else if (t->state == CONC__FORKPOOL_T_RUNNING && !t->cancelled) {
        conc__forkpool_worker *w = &p->w[t->worker];
        conc__forkpool_signal(p, w, SIGKILL);
        /* The kill lands a moment later (an IPI away): until the process has exited, fn may
         * still write to the shared region. Wait for that outside the lock, on a copy of the
         * pidfd (the monitor closes w's once it hears of the death); with no fd to spare,
         * here. */
        watch = w->pidfd < 0 ? -1 : fcntl(w->pidfd, F_DUPFD_CLOEXEC, CONC__FORKPOOL_FD_MIN);
        if (watch < 0 && w->pidfd >= 0)
            conc__forkpool_wait_exit(w->pidfd);
        else if (w->pidfd < 0 && !p->pidfds && !w->fdless)
            watch_pid = w->pid; /* without pidfds: by its pid (conc__forkpool_pid_exited) */
        t->cancelled = true;
        t->outcome.status = ECANCELED;
        t->outcome.signal = SIGKILL;
        kill_done = true;
    } else {
        r = EBUSY;
    }
    conc_lock_release(&p->lock);
    if (watch >= 0) {
        conc__forkpool_wait_exit(watch);
        close(watch);
    }
    if (watch_pid > 0)
        conc__forkpool_wait_killed(p, watch_pid);
    /* Completed now that the worker has exited, outside the lock (callbacks may call into the
     * pool); its death, once the server reports it, only takes the task off the books. The
     * pool's reference keeps f alive. */
    if (kill_done) {
        /* CANCELLED, as a dropped one: conc_future_state tells a cancelled task from one whose
         * fn returned ECANCELED itself (future.h); the outcome's SIGKILL says it was killed.
         * EBUSY only if the user settled it with conc_future_complete first. */
        int won = conc__future_cancel_started(f);
        CONC_UNUSED(won);
    }
    /* The future's own PENDING -> CANCELLED decides who cancelled a queued task: EBUSY if
     * conc_future_cancel did, before us (it was done already). A re-run waiting for its
     * retry has a RUNNING future nobody else completes: the complete below does, 0. */
    if (dropped_first && conc_future_cancel(f) != 0)
        r = EBUSY;
    /* CANCELLED, as a task dropped while queued (EBUSY only if the user settled the future
     * with conc_future_complete first: that outcome stands). */
    if (dropped_handed) {
        int won = conc__future_cancel_started(f);
        CONC_UNUSED(won);
    }
    conc__forkpool_complete(&dl);
    conc_errno_restore(saved_errno);
    return r;
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_FORKPOOL_H */

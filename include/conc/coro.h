/* conc/coro.h - stackful coroutines on one thread: asyncio for C - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * One scheduler per thread runs thousands of coroutines, each on its own stack, that wait for
 * time, file descriptors and each other without blocking the thread. A switch is a dozen
 * instructions and no syscall; when every coroutine is asleep for good, conc_sched_run says
 * so (EDEADLK, with one line per stuck coroutine) instead of hanging. Only what the scheduler
 * can see counts: a hold (conc_sched_pin), and with it a coroutine parked in a bridge wait for
 * another thread (an await, a mailbox receive), keeps run going, since the scheduler cannot
 * know that thread's plans (coro_bridge.h, CAVEATS).
 *
 * Channels, select and the coroutine lock, semaphore, event and condition live in chan.h, and
 * conc_coro_await (a future.h future) in coro_bridge.h. As in the first design, where coro.h
 * held them, this header includes chan.h when it sits beside it in a folder named conc (the
 * folder copied whole, or installed), and coro_bridge.h when future.h is included too; copied
 * alone, with only base.h, it is the scheduler and nothing more (an application's own chan.h
 * is never taken for conc's).
 *
 * CONTENTS
 *   quick start - API - errors - ordering contract - thread safety - configuration - caveats -
 *   design - code: the switch, structures, run queue, timers, park/wake, stacks, spawn, the
 *   loop, cross-thread spawn, lifecycle, fds, groups, overflow - FOR OTHER CONC HEADERS (park,
 *   wake, wait queues)
 *
 * QUICK START (examples/12_asyncio_gather.c has the whole program)
 *     static int download(void *arg) {                    // a coroutine: returns its status
 *         (void)arg;
 *         return conc_coro_sleep_until(conc_deadline_in(CONC_SEC)); // 0 (or ECANCELED)
 *     }
 *     conc_sched_t *s;
 *     if (conc_sched_create(&s, NULL) != 0) return;
 *     for (int i = 0; i < 3; i++)                         // three downloads, one thread
 *         if (conc_coro_spawn(s, download, NULL, NULL, NULL) != 0) puts("out of memory");
 *     if (conc_sched_run(s) == 0) puts("all three done in about 1 s, not 3");
 *     conc_sched_destroy(s);
 *
 * API
 *   scheduler  conc_sched_create(&s, opts)          opts NULL: defaults; 0, ENOMEM, EMFILE
 *              conc_sched_run(s)                    until every coroutine finished and every
 *                                                   fd watch fired or was dropped: 0; EDEADLK
 *              conc_sched_destroy(s)                cancels what is left, runs it out, frees
 *                                                   (what its cleanup spawns starts cancelled;
 *                                                   holds are dropped, pins waited for)
 *              conc_run(fn, arg, &status)           asyncio.run: create, spawn, run, destroy
 *              conc_sched_spawn(s, fn, arg)         from ANY thread: a detached coroutine
 *              conc_sched_hold(s) / unhold(s)       from any thread: "more work will come"
 *              conc_sched_dump(s, FILE *)           every coroutine: name, state, wait, origin
 *   spawn      conc_coro_spawn(s, fn, arg, opts, &c)  s NULL: the current scheduler; c NULL:
 *                                                   detached, else the caller owns a handle
 *   lifecycle  conc_coro_join(c, deadline, &status) 0 (status: fn's return), ETIMEDOUT,
 *                                                   ECANCELED (the joiner was cancelled),
 *                                                   EDEADLK (c is the caller)
 *              conc_coro_cancel(c)                  its pending and later blocking calls fail
 *              conc_coro_release(c)                 drop the handle (exactly once)
 *              conc_coro_self()                     the running coroutine, NULL outside one
 *              conc_coro_name(c), conc_coro_id(c)   for messages
 *   wait       conc_coro_yield()                    0, ECANCELED (lets the others run, even
 *                                                   when cancelled: ECANCELED if cancelled
 *                                                   before or while it waited its turn)
 *              conc_coro_sleep_until(deadline)      0, ECANCELED, ENOMEM (ERRORS); never early
 *              conc_coro_wait_fd(fd, ev, deadline)  CONC_FD_READ|CONC_FD_WRITE: 0 (ready, hung
 *                                                   up or in error), ETIMEDOUT, ECANCELED, EBUSY
 *              conc_coro_read(fd, buf, n, dl, &got) one read(2) that waits: 0 (got 0: EOF)
 *              conc_coro_write(fd, buf, n, dl, &put) every byte, or the error (EPIPE when a
 *                                                   socket's peer is gone: no SIGPIPE)
 *              conc_coro_accept(fd, addr, &len, dl, &newfd)  a non-blocking, close-on-exec
 *                                                   connection; addr/len may be NULL
 *              conc_coro_connect(fd, addr, len, dl) 0 once connected, or the socket's error;
 *                                                   a full Unix backlog: tried again until dl
 *   watches    conc_coro_watch_fd(s, fd, ev, fn, arg, opts)  asyncio's add_reader with a
 *                                                   coroutine: spawns fn(arg), detached, once
 *                                                   fd is ready for ev (one-shot); an idle
 *                                                   connection then holds no stack. 0, EBUSY,
 *                                                   EBADF, ENOMEM, ENOSPC, EINVAL, EPERM,
 *                                                   ECANCELED (s is being destroyed)
 *              conc_coro_unwatch_fd(s, fd)          drops it before it fires: 0, ENOENT
 *   groups     conc_group_create(s, &g)             asyncio.TaskGroup; s NULL: current
 *              conc_group_spawn(g, fn, arg, opts)   a child; ECANCELED once the group failed
 *              conc_group_wait(g, deadline, &status) 0 once every child finished (status: 0
 *                                                   or the first non-zero child status);
 *                                                   EDEADLK from a child of g
 *              conc_group_destroy(g)                cancels and joins what is left, frees
 *                                                   (once its conc_group_wait calls returned)
 *   stacks     conc_coro_catch_overflow()           opt-in SIGSEGV reporter that names the
 *                                                   coroutine; 0 or an errno
 *              conc_coro_stack_usage(c, &bytes)     high-water mark (CONC_SCHED_STACK_USAGE)
 *
 * ERRORS
 *   EINVAL  NULL function, bad fd or events, a handle of another scheduler, a stack size
 *           below CONC_CORO_STACK_MIN or above CONC_CORO_STACK_MAX; conc_sched_create with
 *           an unknown flag or a negative poll_interval.
 *   EBADF   conc_coro_wait_fd (and the I/O calls) on an fd that is not open; a read of an fd
 *           opened write-only, a write of one opened read-only, at once (they wait for
 *           nothing). An accept of anything but a listening socket fails at once as accept(2)
 *           does (ENOTSOCK, EINVAL, EOPNOTSUPP).
 *   EPERM   a call that must run on the scheduler's own thread (spawn, join, cancel, run)
 *           made from another one (before its first run, a spawn or a run there takes it over
 *           instead, and after that the others are the owner's: THREAD SAFETY); a blocking
 *           call made outside any coroutine; conc_sched_run or conc_run inside a coroutine (a
 *           loop cannot run nested in another's: the outer one's coroutines would be
 *           stranded); conc_sched_run on a scheduler whose thread ended inside a run (CAVEATS).
 *   ENOMEM  no memory for a stack or a table. When guard pages come from mprotect (kernels
 *           before 6.13) and the process hits vm.max_map_count, spawn also prints one line
 *           naming that limit (once per scheduler). Also every wait with a deadline
 *           (conc_coro_sleep_until, join, wait_fd and the I/O calls, group_wait, and chan.h's
 *           and coro_bridge.h's waits) whose timer the scheduler's timer heap has no room for:
 *           it returns ENOMEM at once, having waited for nothing (wait again, or without a
 *           deadline).
 *   ECANCELED  the calling coroutine was cancelled: every call that would block returns it
 *           from then on (a call that completes at once still completes: joining a finished
 *           coroutine returns its status). A wake that came first wins: a coroutine woken
 *           with a result (a lock handed to it, say) gets the result, and ECANCELED next time.
 *           conc_coro_watch_fd on a scheduler being destroyed: the watch could never fire.
 *   ETIMEDOUT  the absolute deadline passed; never returned before it. A past deadline looks
 *           once. conc_coro_sleep_until returns 0 at its deadline (sleeping was the point).
 *   EDEADLK conc_sched_run found nothing runnable, no timer, no fd wait or watch, no hold and
 *           no cross-thread spawn pending, with coroutines still waiting: they can never wake.
 *           conc_coro_join of the calling coroutine itself, and conc_group_wait by a child of
 *           the group, at once: each would wait for itself (asyncio raises RuntimeError).
 *   EBUSY   conc_coro_wait_fd: another coroutine is parked on that fd in that direction (one
 *           whose wait a timer, a cancel or the fd has already ended does not count), or the
 *           fd's watch waits for it. conc_coro_watch_fd: the same, or the fd has a watch
 *           already (one per fd, for either direction or both).
 *   ENOENT  conc_coro_unwatch_fd: the fd has no pending watch (it fired, or never was).
 *   EMFILE  conc_sched_create: no fd left for epoll or the eventfd.
 *   ENOSPC  conc_coro_wait_fd (and the I/O calls that wait) and conc_coro_watch_fd: the
 *           user's epoll watches are at their limit (/proc/sys/fs/epoll/max_user_watches);
 *           epoll_ctl's own error.
 *   ENOTSUP conc_coro_stack_usage on a scheduler created without CONC_SCHED_STACK_USAGE.
 *
 * ORDERING CONTRACT
 *   Coroutines of one scheduler run one at a time on its thread, so they share plain data
 *   with no atomics: everything a coroutine wrote before it blocked (or finished) is seen by
 *   the coroutine that runs next. Run order: a spawned coroutine, a yielding one and one woken
 *   by a timer or an fd go to the tail of one FIFO queue; a coroutine woken by the running one
 *   (a join completing, a lock handed over) runs next (Go's runnext), at most
 *   CONC__CORO_RUNNEXT_MAX times in a row before the queue gets a turn; when it wakes
 *   several before it gives up the CPU, the first runs next and the others go to the tail
 *   in the order they were woken (wakes never overtake each other). Across threads:
 *   everything a thread wrote before conc_sched_spawn is visible to the coroutine it starts.
 *
 * THREAD SAFETY
 *   A scheduler belongs to one thread, its owner: the thread that created it, until it first
 *   runs. Before that it may be handed to another thread (the program orders the hand-over:
 *   pthread_create, a mutex), and the first conc_coro_spawn or conc_sched_run made there
 *   takes it over; from its first run on it stays on the thread that ran it. From other
 *   threads only conc_sched_spawn, conc_sched_hold and conc_sched_unhold may be called, at any
 *   time while the scheduler exists, and conc_sched_destroy once nothing is left to run.
 *   Everything else runs on the owner thread: the coroutine calls inside its coroutines,
 *   run/destroy/dump and spawn/cancel/release/join outside them (a join or group wait
 *   outside any coroutine returns at once once there is nothing to wait for; else EPERM).
 *
 * CONFIGURATION (define before including)
 *   CONC_CORO_SWAPCONTEXT  switch with swapcontext (two sigprocmask syscalls per switch: the
 *                          thread's mask is read and carried over, so it stays the thread's)
 *                          instead of the built-in switch. Automatic under CET shadow stacks
 *                          (__CET__ & 2), whose shadow stack glibc's swapcontext switches.
 *   CONC_CORO_SETJMP       the portable fallback: makecontext to create, _setjmp/_longjmp to
 *                          switch (QEMU's technique); the default on architectures other than
 *                          x86-64 and aarch64 unless _FORTIFY_SOURCE turns _longjmp into the
 *                          checking __longjmp_chk, which aborts on a stack change: then the
 *                          swapcontext switch is used.
 *   CONC_CORO_STACK_DEFAULT  stack size when neither the spawn nor the scheduler names one
 *                          (64 KiB). CONC_CORO_STACK_MIN (16 KiB) / CONC_CORO_STACK_MAX (1 GiB).
 *   CONC_CORO_POLL_NS      how often a busy scheduler still polls epoll and its timers
 *                          (default 2 ms; also conc_sched_opts_t.poll_interval).
 *   CONC_CORO_EPOLL_CTL_HOOK(op)  called before every epoll_ctl for an fd wait (op:
 *                          EPOLL_CTL_ADD or _MOD); tests count syscalls with it. Default: nothing.
 *   CONC_CORO_NO_VALGRIND  do not register stacks with valgrind even if <valgrind/valgrind.h>
 *                          exists (it costs a few instructions per stack, never per switch).
 *   CONC_DEBUG             (base.h; on unless NDEBUG) on a scheduler without guard pages
 *                          (CONC_SCHED_NO_GUARD), check a canary at the bottom of each stack
 *                          at every switch and abort naming the coroutine. It touches one
 *                          more page per coroutine (about 4 KiB resident), so guarded stacks,
 *                          whose guard page already stops an overflow, go without it. The
 *                          file that creates the scheduler decides; files built with and
 *                          without NDEBUG may share it (every spawn writes the canary, only
 *                          a debug file's switch checks it).
 *
 * CAVEATS
 *   - Coroutines never migrate between threads; use one scheduler per thread and
 *     conc_sched_spawn to hand work across. A coroutine may use thread-locals (the thread
 *     never changes under it), and conc itself never caches a TLS address across a switch.
 *     The signal mask is the thread's too, with every switch: one a coroutine sets (say, to
 *     read a signalfd) holds for the others and the loop until it is set again.
 *   - Cancellation is a return code, never an unwind: a cancelled coroutine keeps running
 *     until it returns; it is told by ECANCELED from every blocking call. One that was
 *     cancelled before it first ran still runs (so it can free its argument).
 *   - C++: the exceptions being handled (what `throw;` rethrows, std::current_exception,
 *     std::uncaught_exceptions) are each coroutine's own, so a coroutine may block inside a
 *     catch block or a destructor that runs while unwinding. An exception must not leave
 *     the coroutine's function: past it are the kit's C frames and the slot's first frame,
 *     so the C++ runtime calls std::terminate (catch everything in the body if it can throw).
 *   - A blocking call that is not conc's (read(2) on a blocking fd, sleep, a pthread lock)
 *     blocks every coroutine of the thread. conc_coro_read/write/accept do not, on blocking
 *     fds too (a socket is read and written with MSG_DONTWAIT; another fd in blocking mode is
 *     waited for first, and written a PIPE_BUF chunk at a time, but for a regular file or a
 *     block device, which poll calls always ready: one read or write(2)). That wait is only
 *     as good as the fd is ours: if another thread or process reads the data, fills the pipe
 *     or accepts the connection between the wait and the call, the call blocks the thread,
 *     so give an fd that others share O_NONBLOCK (and a listener that others accept on);
 *     conc_coro_connect needs a non-blocking socket (a blocking connect blocks the thread
 *     until it ends).
 *   - Stack overflow: one guard page below each stack stops an overflow that touches it; a
 *     frame larger than a page can jump it (keep big arrays off coroutine stacks, or use a
 *     bigger stack). conc_coro_catch_overflow turns the fault into a message naming the
 *     coroutine; it installs a SIGSEGV handler only when you call it (and an alternate
 *     signal stack, 64 KiB, on each thread that calls it and has none: freed as the thread
 *     ends; a run's own, while it runs). A fault elsewhere goes to the handler installed
 *     before it (called directly, on the alternate stack).
 *   - conc_coro_write to a socket never raises SIGPIPE (it sends with MSG_NOSIGNAL); to a
 *     pipe whose reader is gone it does, as write(2) does, and SIGPIPE's default ends the
 *     process: ignore it (signal(SIGPIPE, SIG_IGN), as Python does) to get EPIPE instead.
 *   - Do not close an fd while a coroutine waits on it or a watch waits for it (epoll forgets
 *     it silently): wake or cancel the waiter, or unwatch, first.
 *   - A watch keeps conc_sched_run going as a coroutine does, until it fires or is dropped.
 *     If its spawn finds no memory, the watch stays armed and the loop tries again at every
 *     poll, which returns at once while the fd is ready: the thread spins until memory comes
 *     back, and nothing is lost. conc_sched_destroy spawns the watches left, cancelled, so
 *     each can free its argument (one it has no memory for is dropped, and so are all of
 *     them in a forked child's copy, whose fds are its parent's). Such a coroutine runs from
 *     its first line, so a handler that reads or accepts should check
 *     conc_coro_is_cancelled(conc_coro_self()) first. A watch pending makes a destroy inside
 *     another scheduler's coroutine abort, as a coroutine left does: unwatch first. An
 *     orphaned scheduler (a thread that ended inside its run) frees its watches unspawned.
 *   - fork: a child must not use its parent's schedulers (the epoll set is shared); build
 *     new ones. In a child forked inside a coroutine, conc_coro_self() is NULL and the
 *     coroutine calls say EPERM: it runs on that coroutine's stack but in no scheduler, and
 *     may run new ones. Signals: handlers must not call coroutine functions.
 *   - Handles: release each one exactly once, before its scheduler is destroyed.
 *   - A thread that ends inside conc_sched_run (pthread_exit in a coroutine, or pthread_cancel:
 *     epoll_wait and the syscalls of the I/O calls are cancellation points) orphans the
 *     scheduler: its coroutines never run again (they never migrate; their cleanup does not
 *     run and what they own is lost, but for the C++ destructors pthread_exit unwinds through
 *     in the coroutine that called it), run says EPERM, and conc_sched_destroy, from any
 *     thread, only frees it, once the messages of its pending bridges (a conc_coro_await's
 *     completion, a mailbox's send) have come: it waits for them as a nested destroy does,
 *     then aborts naming the cause. To stop such a thread cleanly, tell its coroutines instead
 *     (conc_sched_spawn one that cancels them) and join it once its run has returned. Under
 *     ThreadSanitizer a pthread_exit in a coroutine is not possible at all: TSan's pthread_exit
 *     checks that it runs on the thread's own fiber, and aborts the program.
 *   - Under ThreadSanitizer every coroutine slot is a TSan fiber until its scheduler is freed,
 *     and gcc 12's runtime allows 8,128 threads and fibers in all ("Thread limit exceeded"):
 *     keep fewer coroutines alive at once in such builds (clang's runtime allows far more).
 *
 * DESIGN
 *   Contexts. A coroutine's stack is a slot carved from a large mmap arena: a guard page, the
 *   stack, and at the very top the coroutine's own struct (so its state and its saved
 *   registers share the top page, and an idle coroutine costs one resident page). On
 *   x86-64 and aarch64 a 20-instruction switch saves exactly what the ABI makes callee-saved
 *   (conc__coro_ctx_switch, below) and moves the stack pointer: no syscall, nothing for
 *   _FORTIFY_SOURCE to check. Elsewhere makecontext creates and _setjmp/_longjmp switch. A
 *   slot's first context runs a trampoline that loops: when a coroutine returns, the slot
 *   goes to the free list with its context parked in the loop, and the next spawn on it just
 *   resumes the loop with a new function (QEMU's pool). Creating a coroutine is therefore a
 *   pop from a free list and a push on the run queue. With the asm switch the trampoline's
 *   frame has a zero return address, as a thread's first frame has (with makecontext, the
 *   libc's start function ends the chain): unwinders (backtrace, gdb, pthread_exit's forced
 *   unwind) stop there instead of reading past the stack's top.
 *   Scheduling. A ring buffer of runnable coroutines plus a runnext slot. A coroutine that
 *   blocks switches straight to the next runnable one; only when none is runnable, or when
 *   timers, fds or the inbox are due (a look every CONC__CORO_TICKS switches and at every
 *   tick of the coarse clock, so a busy scheduler still polls every few ms), does it switch
 *   to the scheduler's loop, which fires due timers (a binary heap), polls epoll, drains the
 *   cross-thread inbox and otherwise sleeps in epoll_wait until the next deadline.
 *   Deadlock detection falls out of the loop: nothing runnable and nothing that could wake
 *   anyone (no timer, no fd, no hold, no inbox) is EDEADLK.
 *   fd waits. Each fd number keeps one epoll registration between waits, armed one-shot: its
 *   event disarms it, the next wait re-arms it with one EPOLL_CTL_MOD (no ADD/DEL pair), so a
 *   wait costs one epoll_ctl and an echo request read-EAGAIN, MOD, read, write plus a share of
 *   an epoll_wait. conc_coro_read/write/accept try the syscall first and wait only on EAGAIN
 *   (a socket with MSG_DONTWAIT; another fd in blocking mode waits first).
 *   A registration is never dropped by hand: epoll drops it when the file's last dup closes,
 *   and one left by an fd closed between waits (a dup still open) carries an older generation
 *   in its event data than the number's next registration, so it wakes nobody. Timeline
 *   [coro.F1-F4] at the code.
 *   fd watches. A parked coroutine keeps its stack's top page resident (about 4 KiB), so a
 *   server with a coroutine per connection pays a page per idle connection: half a
 *   thread's two, still four times the bytes of what an idle connection needs. A watch is
 *   the same registration armed for a coroutine that does not exist yet: when the fd is
 *   ready, the loop spawns it (a free-list pop; slots are reused, so only as many stacks
 *   stay resident as requests were in hand at once). An echo request then costs read,
 *   write, MOD (the next watch) and no read-EAGAIN, and an idle connection holds a watch
 *   record (about 80 bytes, kept for the fd's next watch) beside its fd table entry (40
 *   bytes) and the kernel's epoll entry.
 */
#ifndef CONC_CORO_H
#define CONC_CORO_H

#include "base.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <ucontext.h>

#if !defined(CONC_CORO_NO_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CONC__CORO_VALGRIND 1
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A wait-queue waiter lives on the waiting coroutine's stack and is unlinked before its frame
 * ends (after the park returns); gcc 12+ cannot see the unlink across the switch and calls
 * the queued address dangling. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#define CONC__CORO_POP_DIAGNOSTIC 1
#endif

/* ---------------------------------------------------------------------------------------------
 * Backend selection
 * ------------------------------------------------------------------------------------------- */
#if defined(__CET__) && (__CET__ & 2) && !defined(CONC_CORO_SWAPCONTEXT)
#define CONC_CORO_SWAPCONTEXT 1 /* shadow stacks: only glibc's swapcontext switches them */
#endif
#if defined(CONC_CORO_SWAPCONTEXT)
#define CONC__CORO_BACKEND_UCONTEXT 1
#elif defined(CONC_CORO_SETJMP)
#if defined(__USE_FORTIFY_LEVEL) && __USE_FORTIFY_LEVEL > 0
/* _longjmp is __longjmp_chk here, which aborts when it lands on another stack. */
#define CONC__CORO_BACKEND_UCONTEXT 1
#else
#define CONC__CORO_BACKEND_SJLJ 1
#endif
#elif defined(__x86_64__) || defined(__aarch64__)
#define CONC__CORO_BACKEND_ASM 1
#elif defined(__USE_FORTIFY_LEVEL) && __USE_FORTIFY_LEVEL > 0
#define CONC__CORO_BACKEND_UCONTEXT 1
#else
#define CONC__CORO_BACKEND_SJLJ 1
#endif

/* The backend changes the scheduler's layout: coro.h's one-per-program symbols name it
 * (base.h's CONC__ABI_NAME), so that builds with different backends never share them. */
#if defined(CONC__CORO_BACKEND_ASM)
#define CONC__CORO_ABI_TAG "_asm"
#elif defined(CONC__CORO_BACKEND_SJLJ)
#define CONC__CORO_ABI_TAG "_sjlj"
#else
#define CONC__CORO_ABI_TAG "_ucontext"
#endif
#define CONC__CORO_ABI(name) CONC__ABI_NAME(name, CONC__CORO_ABI_TAG)

/* ---------------------------------------------------------------------------------------------
 * Public types and constants
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_sched conc_sched_t;
typedef struct conc_coro conc_coro_t;
typedef struct conc_group conc_group_t;
typedef int (*conc_coro_fn)(void *arg); /* returns the coroutine's status */

#ifndef CONC_CORO_STACK_DEFAULT
#define CONC_CORO_STACK_DEFAULT ((size_t)64 * 1024)
#endif
#ifndef CONC_CORO_STACK_MIN
#define CONC_CORO_STACK_MIN ((size_t)16 * 1024) /* the struct, the trampoline, a few frames */
#endif
#ifndef CONC_CORO_STACK_MAX
#define CONC_CORO_STACK_MAX ((size_t)1 << 30) /* a typo guard, not a resource limit */
#endif
#ifndef CONC_CORO_POLL_NS
#define CONC_CORO_POLL_NS (2 * CONC_MS)
#endif

/* conc_sched_opts_t.flags */
#define CONC_SCHED_NO_GUARD 0x1u       /* no guard pages (saves a madvise per new stack) */
#define CONC_SCHED_GUARD_MPROTECT 0x2u /* mprotect guards even if MADV_GUARD_INSTALL works */
#define CONC_SCHED_STACK_USAGE 0x4u    /* paint stacks so conc_coro_stack_usage can measure */
#define CONC__SCHED_FLAGS (CONC_SCHED_NO_GUARD | CONC_SCHED_GUARD_MPROTECT | CONC_SCHED_STACK_USAGE)

typedef struct conc_sched_opts {
    size_t stack_size;     /* default stack of its coroutines; 0: CONC_CORO_STACK_DEFAULT */
    unsigned flags;        /* CONC_SCHED_* */
    int64_t poll_interval; /* ns between epoll polls while busy; 0: CONC_CORO_POLL_NS */
} conc_sched_opts_t;

typedef struct conc_coro_opts {
    size_t stack_size; /* 0: the scheduler's default */
    const char *name;  /* copied (truncated to CONC_CORO_NAME_MAX - 1); NULL: "coro#<id>" */
} conc_coro_opts_t;

#define CONC_CORO_NAME_MAX 32
#define CONC_FD_READ 1
#define CONC_FD_WRITE 2

/* What a parked coroutine waits on: the EDEADLK report and conc_sched_dump print it. Other
 * conc headers fill one in for each wait (see the section "for other conc headers"). */
typedef struct conc_coro_wait {
    const char *what;   /* "join", "sleep", "fd", "lock", "channel recv", ... */
    const void *object; /* the thing waited on */
    long detail;        /* a number worth printing (an fd), or 0 */
    /* Optional: writes a fuller description ("lock 0x... held by coro \"a\" (#3)"). */
    void (*describe)(const struct conc_coro_wait *w, char *buf, size_t size);
} conc_coro_wait_t;

/* A wait's description in one expression (other headers build one per park; see the end). */
static inline conc_coro_wait_t
conc_coro_wait_make(const char *what, const void *object, long detail,
                    void (*describe)(const conc_coro_wait_t *w, char *buf, size_t size)) {
    conc_coro_wait_t w;
    w.what = what;
    w.object = object;
    w.detail = detail;
    w.describe = describe;
    return w;
}

/* A waiter in a wait queue: lives on the waiting coroutine's stack while it waits. */
typedef struct conc_coro_waiter {
    struct conc_coro_waiter *prev, *next;
    conc_coro_t *coro;
    void *data; /* free for the queue's owner (a channel's item pointer, say) */
    int linked; /* in a queue */
} conc_coro_waiter_t;

typedef struct conc_coro_waitq {
    conc_coro_waiter_t *head, *tail;
} conc_coro_waitq_t;

// clang-format off
#define CONC_CORO_WAITQ_INIT {NULL, NULL}
// clang-format on

/* ---------------------------------------------------------------------------------------------
 * Internal constants (each with its reason)
 * ------------------------------------------------------------------------------------------- */
/* Switches between two looks at the precise clock while coroutines stay runnable: a read
 * costs 20-75 ns here, a switch 5-10, so one look per 64 switches is noise. Coroutines that
 * compute between switches make 64 switches long, so while a timer, an fd wait or a message
 * could be due, every switch also reads the coarse clock (4-5 ns: a vDSO load, no TSC) and
 * looks when it has ticked (every 1-4 ms, CONFIG_HZ): those then wait at most a tick plus
 * one coroutine's run, not 64 of them. On a loaded VM the coarse clock may stall for a few
 * ticks while the vCPU that keeps time is off the host's CPU (21 ms, 5 ticks of 4 ms, seen
 * beside a CPU hog on each core), and the wait stretches with it. */
#define CONC__CORO_TICKS 64u
#define CONC__CORO_TICKS_MASK (CONC__CORO_TICKS - 1u)
/* How long a nested conc_sched_destroy waits for a message another thread is about to post:
 * that thread only has to run once (a time slice or two), so anything longer is a pin that
 * will never be undone. */
#define CONC__CORO_DESTROY_PIN_WAIT_NS (10 * CONC_SEC)
/* Consecutive runnext handoffs before the FIFO queue gets a turn: two coroutines that wake
 * each other forever must not starve the rest (Go bounds it by the time slice). */
#define CONC__CORO_RUNNEXT_MAX 64u
/* conc_coro_connect's pauses between tries while a Unix listener's backlog is full: short
 * enough that an accept loop's room is taken soon, doubling so a stuck one costs little. */
#define CONC__CORO_CONNECT_RETRY_MIN (50 * CONC_US)
#define CONC__CORO_CONNECT_RETRY_MAX (10 * CONC_MS)
/* Run queue ring: initial slots (a power of two; it doubles when full). */
#define CONC__CORO_RING_INIT 256u
/* Prefetch distances in the run queue: the struct of the coroutine this far ahead, and the
 * saved registers of the one half as far (its struct line is in cache by then). */
#define CONC__CORO_PREFETCH_STRUCT 4u
#define CONC__CORO_PREFETCH_STACK 2u
/* [coro.I7] The loop's poll of the inbox before it sleeps while another thread holds it (an
 * await, a mailbox): a sleep and its wake cost 5-10 us here (epoll_wait, the eventfd write
 * and read, two context switches), an executor's trivial task 1-2 us. Adaptive between MIN
 * and MAX: a poll that saw the work come doubles the next one, one that ran out halves it, so
 * a scheduler whose work comes late (or whose CPU is shared) soon spends MIN once per
 * CONC__CORO_SPIN_SKIP sleeps. */
#define CONC__CORO_SPIN_MIN_NS ((int64_t)500)
#define CONC__CORO_SPIN_MAX_NS ((int64_t)20 * CONC_US)
/* Sleeps that skip the poll after one at MIN came up empty (the work comes late here, or
 * the CPUs are shared): then the poll costs MIN once per this many sleeps. */
#define CONC__CORO_SPIN_SKIP 8u
/* Pauses between two clock reads in that poll (a pause is 10-40 ns, a clock read 20-75). */
#define CONC__CORO_SPIN_CLOCK_MASK 31u
/* Arena growth: the first arena of a size class holds this many stacks, each next one twice
 * as many, up to the cap (64 KiB stacks: 4 MiB, then up to 68 MiB of address space). */
#define CONC__CORO_ARENA_SLOTS_MIN 64u
#define CONC__CORO_ARENA_SLOTS_MAX 1024u
/* CONC_CORO_EPOLL_CTL_HOOK(op) runs before every epoll_ctl on a waited fd; tests count
 * syscalls per wait with it. Default: nothing. */
#ifndef CONC_CORO_EPOLL_CTL_HOOK
#define CONC_CORO_EPOLL_CTL_HOOK(op) ((void)0)
#endif
/* epoll events taken per epoll_wait call. */
#define CONC__CORO_EVENTS 64
/* epoll data of the scheduler's eventfd: no fd has this number (an fd's data is its number in
 * the low half, which is below 2^31, and its registration's generation in the high half). */
#define CONC__CORO_EVFD_TAG UINT64_MAX
#define CONC__CORO_FD_GEN_SHIFT 32u
#define CONC__CORO_FD_NUM_MASK 0xffffffffu
/* Debug canary at the bottom of each unguarded stack (xor the coroutine's address). */
#define CONC__CORO_CANARY 0x5a17c0de0ddba11ull
/* High-water painting: the byte, and the distance kept below the painter's own frame. */
#define CONC__CORO_PAINT_BYTE 0xa5
#define CONC__CORO_PAINT_MARGIN 1024u
/* Alternate signal stack for the overflow reporter. */
#define CONC__CORO_ALTSTACK_SIZE ((size_t)64 * 1024)
/* The struct at the top of each stack is aligned to a cache line. */
#define CONC__CORO_ALIGN 64u
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 uapi/asm-generic/mman-common.h */
#endif

/* Coroutine states */
#define CONC__CORO_FREE 0     /* a slot on the free list */
#define CONC__CORO_RUNNABLE 1 /* in the run queue or runnext */
#define CONC__CORO_RUNNING 2  /* s->current */
#define CONC__CORO_PARKED 3   /* waiting for a wake, a timer or a cancel */
#define CONC__CORO_DONE 4     /* returned; kept while a handle holds it */

/* ---------------------------------------------------------------------------------------------
 * Sanitizer and valgrind interfaces (declared here: no sanitizer header needed)
 * ------------------------------------------------------------------------------------------- */
#if defined(CONC_ASAN)
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
/* ASan's __asan_unpoison_memory_region under a name of coro.h's own (an asm label binds it to
 * the runtime's symbol): executor.h declares it too, and a file that includes both would meet
 * a second declaration, gcc's -Wredundant-decls. */
void conc__coro_asan_unpoison(void const volatile *addr,
                              size_t size) __asm__("__asan_unpoison_memory_region");
#endif
#if defined(CONC_TSAN)
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_set_fiber_name(void *fiber, const char *name);
#endif

/* ---------------------------------------------------------------------------------------------
 * The context switch
 * ------------------------------------------------------------------------------------------- */
/* The C++ runtime keeps the exceptions being handled per thread (the Itanium C++ ABI's
 * __cxa_eh_globals, libstdc++'s and libc++abi's alike): the caught ones, a stack threaded
 * through the exception objects, and the count of those thrown and not yet caught. Coroutines
 * share their thread, so a coroutine that blocks inside a catch block would find another's
 * caught exception on top when it resumes: `throw;` rethrows the wrong one, and leaving the
 * block frees an exception another still uses. Each context keeps its own, swapped in at
 * every switch, as folly's fibers do. An asm label binds the runtime's function, so the
 * declaration never meets <cxxabi.h>'s, whose return type differs. A C++ file built with
 * exceptions is linked with its runtime and refers to it plainly (weak, it would make a call
 * to __cxa_get_globals in the same file weak, and a linker with --as-needed drops a runtime
 * only weakly used); other files weakly: NULL in a program without a C++ runtime. Which one a
 * scheduler uses is decided once, at create, and every file's switches of it use that one,
 * so a swap is never done on one side of a switch only (a C program's scheduler, created
 * before it loaded a C++ plugin, swaps nothing: its coroutines share the thread's record, as
 * threads' code always does). Without one it costs a test a switch. */
typedef struct conc__coro_eh {
    void *caught;      /* caughtExceptions */
    unsigned uncaught; /* uncaughtExceptions */
#if defined(__arm__)
    void *propagating; /* propagatingExceptions: ARM EHABI's record has it too */
#endif
} conc__coro_eh;
typedef void *(*conc__coro_eh_globals_fn)(void);
#if defined(__cplusplus) && (defined(__cpp_exceptions) || defined(__EXCEPTIONS))
void *conc__coro_cxa_get_globals(void) __asm__("__cxa_get_globals");
#else
void *conc__coro_cxa_get_globals(void) __asm__("__cxa_get_globals") __attribute__((weak));
#endif

#if defined(CONC__CORO_BACKEND_ASM)
typedef struct conc__coro_ctx {
    void *sp; /* the saved stack pointer; the registers sit on the stack below it */
    conc__coro_eh eh;
} conc__coro_ctx;

/* void conc__coro_ctx_switch(void **save_sp, void *load_sp): saves the callee-saved state on
 * the current stack, stores the stack pointer in *save_sp, loads load_sp and restores the
 * state saved there, returning into whoever saved it. Written as a weak, hidden symbol in a
 * COMDAT group so every translation unit that includes this header may define it and the
 * linker keeps one copy; hidden so each shared object calls its own without a PLT. The
 * .ifndef guard is for link-time optimization: gcc -flto puts the top-level asm of every
 * translation unit into one assembly file, where a second definition of the label is an
 * error; the guard's .L symbol never leaves the object. */
void conc__coro_ctx_switch(void **save_sp, void *load_sp);

#if defined(__x86_64__)
/* System V x86-64: rbx, rbp, r12-r15 are callee-saved (the caller may keep values in them
 * across our call); the MXCSR control bits and the x87 control word are callee-saved too
 * (psABI 3.2.1: a coroutine that sets rounding or masks exceptions must not change them for
 * the others). Everything else is caller-saved: the compiler already spilled it before the
 * call. The direction flag is clear at every call by the ABI. */
__asm__(".ifndef .Lconc__coro_ctx_switch_emitted\n"
        ".set .Lconc__coro_ctx_switch_emitted, 1\n"
        ".pushsection .text.conc__coro_ctx_switch,\"axG\",@progbits,conc__coro_ctx_switch,comdat\n"
        ".weak conc__coro_ctx_switch\n"
        ".hidden conc__coro_ctx_switch\n"
        ".type conc__coro_ctx_switch,@function\n"
        ".p2align 4\n"
        "conc__coro_ctx_switch:\n"
        "  pushq %rbp\n" /* frame pointer: callee-saved */
        "  pushq %rbx\n" /* callee-saved */
        "  pushq %r12\n" /* r12-r15: callee-saved */
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"    /* SSE rounding/exception masks: callee-saved control bits */
        "  fnstcw 4(%rsp)\n"    /* x87 precision/rounding control word: callee-saved */
        "  movq %rsp, (%rdi)\n" /* *save_sp = sp */
        "  movq %rsi, %rsp\n"   /* sp = load_sp: now on the other stack */
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n" /* into the other context's caller (or its trampoline) */
        ".size conc__coro_ctx_switch,.-conc__coro_ctx_switch\n"
        ".popsection\n"
        ".endif\n");
/* The initial frame of a new context, from its top down: a zero return address (ends
 * backtraces), the trampoline as the address `ret` pops, six zeroed registers, and the
 * MXCSR/x87 words. */
#define CONC__CORO_FRAME_WORDS 9u
#elif defined(__aarch64__)
/* AAPCS64: x19-x28, the frame pointer x29 and the link register x30 are callee-saved, as are
 * the low 64 bits of v8-v15 (d8-d15); FPCR (rounding mode, flush-to-zero) is callee-saved
 * control state. sp stays 16-byte aligned: the frame is 176 bytes. */
__asm__(".ifndef .Lconc__coro_ctx_switch_emitted\n"
        ".set .Lconc__coro_ctx_switch_emitted, 1\n"
        ".pushsection .text.conc__coro_ctx_switch,\"axG\",%progbits,conc__coro_ctx_switch,comdat\n"
        ".weak conc__coro_ctx_switch\n"
        ".hidden conc__coro_ctx_switch\n"
        ".type conc__coro_ctx_switch,%function\n"
        ".p2align 4\n"
        "conc__coro_ctx_switch:\n"
        "  sub sp, sp, #176\n"
        "  stp x19, x20, [sp, #0]\n" /* x19-x28: callee-saved */
        "  stp x21, x22, [sp, #16]\n"
        "  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n"
        "  stp x27, x28, [sp, #64]\n"
        "  stp x29, x30, [sp, #80]\n" /* frame pointer, and the return address we resume at */
        "  stp d8, d9, [sp, #96]\n"   /* d8-d15: callee-saved halves of v8-v15 */
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mrs x9, fpcr\n" /* rounding mode / flush-to-zero: callee-saved */
        "  str x9, [sp, #160]\n"
        "  mov x9, sp\n"
        "  str x9, [x0]\n" /* *save_sp = sp */
        "  mov sp, x1\n"   /* sp = load_sp */
        "  ldr x9, [sp, #160]\n"
        "  msr fpcr, x9\n"
        "  ldp x19, x20, [sp, #0]\n"
        "  ldp x21, x22, [sp, #16]\n"
        "  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n"
        "  ldp x27, x28, [sp, #64]\n"
        "  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #176\n"
        "  ret\n" /* to x30: the caller, or a new context's start */
        ".size conc__coro_ctx_switch,.-conc__coro_ctx_switch\n"
        /* A new context's start: the switch returns here with the trampoline in x19. It
         * enters the trampoline with a zero link register, which the trampoline saves as its
         * return address: unwinders stop at a zero one (as at a thread's start). Returning
         * into the trampoline itself, as x86-64's does, would leave its address in x30: the
         * trampoline's frame would name its own entry as its caller, a frame that is not
         * there, and the unwinder read on past the stack's top (pthread_exit in a coroutine
         * hung in it). x16: the register a BTI "c" landing pad accepts an indirect branch
         * from. */
        ".weak conc__coro_ctx_start\n"
        ".hidden conc__coro_ctx_start\n"
        ".type conc__coro_ctx_start,%function\n"
        ".p2align 2\n"
        "conc__coro_ctx_start:\n"
        "  mov x30, xzr\n"
        "  mov x16, x19\n"
        "  br x16\n"
        ".size conc__coro_ctx_start,.-conc__coro_ctx_start\n"
        ".popsection\n"
        ".endif\n");
void conc__coro_ctx_start(void);
#define CONC__CORO_FRAME_WORDS 22u /* 176 bytes */
#endif

CONC_INLINE void conc__coro_ctx_jump(conc__coro_ctx *from, conc__coro_ctx *to) {
    conc__coro_ctx_switch(&from->sp, to->sp);
}

#elif defined(CONC__CORO_BACKEND_SJLJ)
typedef struct conc__coro_ctx {
    jmp_buf jb; /* _setjmp: no signal mask, so no syscall (plain setjmp may save it on BSDs) */
    conc__coro_eh eh;
} conc__coro_ctx;
/* Noinline: the function that calls _setjmp must still exist when _longjmp comes back. */
CONC_NOINLINE void conc__coro_ctx_jump(conc__coro_ctx *from, conc__coro_ctx *to) {
    if (!_setjmp(from->jb))
        _longjmp(to->jb, 1);
}
#else
typedef struct conc__coro_ctx {
    ucontext_t uc;
    conc__coro_eh eh;
} conc__coro_ctx;
CONC_NOINLINE void conc__coro_ctx_jump(conc__coro_ctx *from, conc__coro_ctx *to) {
    /* swapcontext loads the mask `to` saved when it last left (or its slot's first context
     * took): hand it the thread's mask now, so the signal mask stays the thread's, as with the
     * other switches (a mask a coroutine set survives its switch, the loop's reaches it). */
    (void)pthread_sigmask(SIG_SETMASK, NULL, &to->uc.uc_sigmask);
    if (swapcontext(&from->uc, &to->uc) != 0)
        CONC_ABORT("conc_coro: swapcontext failed");
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Structures
 * ------------------------------------------------------------------------------------------- */
typedef struct conc__coro_class conc__coro_class;

struct conc_coro {
    conc__coro_ctx ctx; /* first: the switch touches it, and it shares the line with state */
    conc_sched_t *sched;
    conc_coro_fn fn;
    void *arg;
    uint8_t state;                /* CONC__CORO_* */
    uint8_t cancelled;            /* its blocking calls return ECANCELED */
    uint8_t handle;               /* a handle is outstanding: the slot outlives the coroutine */
    uint8_t immune;               /* parked in a wait cancellation cannot end (a group destroy) */
    int status;                   /* fn's return value, once DONE */
    int wake_status;              /* what the pending park returns */
    size_t heap_index;            /* in the timer heap, or SIZE_MAX */
    int64_t deadline;             /* of the pending park */
    const conc_coro_wait_t *wait; /* while parked */
    conc_coro_waitq_t joiners;
    conc_group_t *group;
    conc_coro_t *group_prev, *group_next;
    conc_coro_t *all_prev, *all_next; /* every coroutine of the scheduler not yet freed */
    conc_coro_t *free_next;           /* the size class's free list */
    conc__coro_class *cls;
    char *stack_lo;    /* lowest usable byte, right above the guard page */
    size_t stack_size; /* usable bytes below this struct */
    void *tsan_fiber;
    unsigned valgrind_id;
    uint64_t id;
    uint64_t parent_id; /* 0: spawned outside any coroutine */
    const char *spawn_file;
    int spawn_line;
    char name[CONC_CORO_NAME_MAX];
};

struct conc__coro_class {
    conc__coro_class *next;
    size_t stack_size; /* usable stack including the struct at its top */
    size_t slot_size;  /* guard + stack */
    conc_coro_t *free;
    char *carve;       /* next uncarved slot in the newest arena */
    size_t carve_left; /* slots left there */
    /* That arena (the scheduler's newest may be another class's). */
    struct conc__coro_arena *arena;
    size_t next_slots; /* slots in the next arena */
};

typedef struct conc__coro_arena {
    struct conc__coro_arena *next;
    char *base;
    size_t len;
    size_t slot_size;
    size_t carved;
} conc__coro_arena;

/* A conc_coro_watch_fd: the coroutine to spawn once its fd is ready. Kept, inactive, after it
 * fires or is removed, for the fd number's next watch (a connection re-watched after every
 * request allocates nothing). Freed with the scheduler. */
typedef struct conc__coro_watch {
    conc_coro_fn fn;
    void *arg;
    size_t stack_size;
    const char *spawn_file;
    int spawn_line;
    int events;                    /* CONC_FD_READ | CONC_FD_WRITE; 0: inactive */
    char name[CONC_CORO_NAME_MAX]; /* empty: the default "coro#<id>" */
} conc__coro_watch;

/* One fd number's registration (see "fd waits" in DESIGN and the timeline at the code). */
typedef struct conc__coro_fdw {
    /* set only while a coroutine is inside conc_coro_wait_fd */
    conc_coro_t *reader, *writer;
    conc__coro_watch *watch; /* NULL until the number's first watch */
    uint32_t armed;          /* the mask last armed (EPOLLONESHOT); 0: fired, or never armed */
    uint32_t gen;            /* generation: bumped by every EPOLL_CTL_ADD, carried in the event */
    uint32_t registered;     /* 1: an ADD succeeded and no failure since said it is gone */
} conc__coro_fdw;

typedef struct conc__coro_msg {
    struct conc__coro_msg *next;
    conc_coro_fn fn;
    void *arg;
    const char *file;
    int line;
    int call; /* 1: the loop calls fn (conc_sched_msg_*); 0: it spawns a coroutine running fn */
} conc__coro_msg;

struct conc_sched {
    conc_coro_t *current; /* the running coroutine; NULL while the loop runs */
    conc_coro_t **ring;   /* the FIFO run queue */
    size_t ring_mask, head, tail;
    conc_coro_t *runnext;
    unsigned runnext_streak;
    unsigned ticks;
    int64_t coarse_seen; /* the coarse clock at the last look it prompted */
    uint8_t destroying;  /* conc_sched_destroy has begun: every spawn starts cancelled */
    int64_t last_poll;
    int64_t poll_ns;
    conc__coro_ctx main_ctx; /* the thread's own context while coroutines run */
    const void *main_lo;     /* the thread stack's bounds (ASan learns them at the first switch) */
    size_t main_size;
    void *main_fiber;  /* TSan */
    int from_main;     /* the switch in flight leaves the thread's context */
    conc_coro_t *boot; /* SJLJ: the slot whose context is being created */
    conc__coro_ctx boot_ctx;
    void *boot_fake;    /* SJLJ under ASan: the creating context's fake stack meanwhile */
    int retiring;       /* ASan: free is switching into each slot a last time (its fake stack) */
    conc_coro_t **heap; /* timers: min-heap on deadline */
    size_t heap_len, heap_cap;
    int epfd, evfd;
    conc__coro_fdw *fds;
    size_t fds_cap;
    size_t fd_waiters; /* coroutines parked on an fd, and active watches: the loop polls */
    size_t fd_watches; /* active watches: each keeps conc_sched_run going, as a coroutine does */
    pid_t pid;         /* the creating process: a forked child's copy never spawns its watches */
    pthread_mutex_t inbox_lock;
    conc__coro_msg *inbox_head, *inbox_tail; /* under inbox_lock */
    uint32_t inbox_pending; /* atomic hint: the inbox is not empty (read outside the lock) */
    uint32_t holds;         /* atomic: conc_sched_hold count */
    size_t pins;            /* owner thread: the holds of conc_sched_pin (kept by destroy) */
    uint32_t asleep;        /* atomic: the loop blocks, or is about to, in epoll_wait [coro.I6] */
    uint32_t kicking;       /* atomic: posters between their unlock and their eventfd write */
    int64_t spin_ns;        /* the loop's adaptive poll of the inbox before it sleeps */
    unsigned spin_skip;     /* sleeps left that skip that poll */
    size_t live;            /* coroutines not yet returned */
    conc_coro_t *all;       /* every coroutine not yet freed */
    conc__coro_class *classes;
    conc__coro_arena *arenas;
    size_t page, stack_default;
    unsigned flags;
    /* Its stacks carry the debug canary: fixed at creation (conc__coro_has_canary), so that every
     * file's spawn writes it, and a file built with NDEBUG beside a debug one never leaves a
     * debug file's switch checking a canary nobody wrote. */
    uint8_t canary;
    int guard_mprotect; /* MADV_GUARD_INSTALL unavailable: mprotect guards */
    int told_map_count; /* spawn printed its vm.max_map_count line (once per scheduler) */
    conc__coro_eh_globals_fn eh_globals; /* the C++ runtime's, or NULL (conc__coro_eh) */
    int running;
    int ran;         /* it has run (then it never changes thread: its coroutines started) */
    pthread_t owner; /* atomic (relaxed): conc_sched_spawn compares it from any thread */
    uint64_t next_id;
    uint64_t serial;             /* process-unique, never 0 (the registry) */
    conc_sched_t *registry_next; /* the registry's list, under conc__coro_registry_lock */
    void *altstack; /* the overflow reporter's alternate stack installed by run, or NULL */
    /* While it runs: the scheduler whose run this one is nested in (or NULL). */
    conc_sched_t *run_outer;
    /* Its thread ended inside a run: nothing of it runs again (conc__coro_thread_exit). */
    int orphaned;
};

struct conc_group {
    conc_sched_t *sched;
    conc_coro_t *children; /* live children */
    size_t live;
    int status; /* the first non-zero child status */
    conc_coro_waitq_t waiters;
    size_t waiting; /* coroutines inside conc_group_wait: destroy frees g only once they left */
};

CONC_STATIC_ASSERT(sizeof(struct conc_coro) - sizeof(conc__coro_ctx) <= 512,
                   "the coroutine struct must stay small: it shares the top page with the first "
                   "frames (the ucontext backend adds its ~1 KiB ucontext_t)");
CONC_STATIC_ASSERT((CONC__CORO_TICKS & (CONC__CORO_TICKS - 1u)) == 0, "ticks: a power of two");
CONC_STATIC_ASSERT((CONC__CORO_RING_INIT & (CONC__CORO_RING_INIT - 1u)) == 0,
                   "ring: a power of two");

/* ---------------------------------------------------------------------------------------------
 * The thread's current scheduler. One weak thread-local shared by every translation unit
 * (a `static` one would give each file its own copy). Read only through a noinline function,
 * so no compiler can keep its address across a switch (QEMU's lesson; coroutines never
 * migrate here, but the rule costs ~1 ns and removes the question).
 * ------------------------------------------------------------------------------------------- */
extern __thread conc_sched_t *conc__coro_tls_sched CONC__CORO_ABI(conc__coro_tls_sched);
CONC__ONE_PER_PROGRAM __thread conc_sched_t *conc__coro_tls_sched = NULL;
/* The overflow reporter's process-wide state (weak: one copy for every translation unit).
 * installed: 0 not, 2 a thread is installing it, 1 installed. */
extern int conc__coro_overflow_installed CONC__CORO_ABI(conc__coro_overflow_installed);
CONC__ONE_PER_PROGRAM int conc__coro_overflow_installed = 0;
extern struct sigaction conc__coro_overflow_prev CONC__CORO_ABI(conc__coro_overflow_prev);
CONC__ONE_PER_PROGRAM struct sigaction conc__coro_overflow_prev;

CONC_NOINLINE conc_sched_t *conc__coro_sched_here(void) {
    return conc__coro_tls_sched;
}
CONC_NOINLINE void conc__coro_sched_set_here(conc_sched_t *s) {
    conc__coro_tls_sched = s;
}

/* fork: the child's one thread runs no scheduler (its parent's are not its own, CAVEATS), so
 * one forked inside a coroutine may build and run new ones, and its coroutine calls say EPERM
 * instead of switching into the copy of its parent's loop. Registered before the first run. */
extern int conc__coro_atfork_registered CONC__CORO_ABI(conc__coro_atfork_registered);
CONC__ONE_PER_PROGRAM int conc__coro_atfork_registered = 0;

/* The registry: every scheduler that exists, by serial, in one process-wide list (weak: one
 * for every translation unit) under one mutex. It answers, without following a pointer into
 * a scheduler that may be gone, whether the scheduler with a serial still exists: chan.h's
 * owner check and a coroutine lock's owner keep serials, not pointers (conc_sched_lookup,
 * conc_coro_find). create and free take the mutex; the lookups are cold. */
extern pthread_mutex_t conc__coro_registry_lock CONC__CORO_ABI(conc__coro_registry_lock);
CONC__ONE_PER_PROGRAM pthread_mutex_t conc__coro_registry_lock = PTHREAD_MUTEX_INITIALIZER;
extern conc_sched_t *conc__coro_registry CONC__CORO_ABI(conc__coro_registry);
CONC__ONE_PER_PROGRAM conc_sched_t *conc__coro_registry = NULL;
/* the last serial given, under the mutex */
extern uint64_t conc__coro_registry_serial CONC__CORO_ABI(conc__coro_registry_serial);
CONC__ONE_PER_PROGRAM uint64_t conc__coro_registry_serial = 0;

static inline void conc__coro_atfork_child(void) {
    conc__coro_tls_sched = NULL;
    /* The parent's schedulers are not the child's (CAVEATS), and the mutex may have been held
     * by a thread the child does not have: start the registry afresh. */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    conc__coro_registry_lock = fresh;
    conc__coro_registry = NULL;
}
CONC_INLINE void conc__coro_atfork_register(void) {
    /* Relaxed: one registration is enough, a second (a race) only resets NULL twice. */
    if (!conc_load(&conc__coro_atfork_registered, CONC_RELAXED) &&
        conc_swap(&conc__coro_atfork_registered, 1, CONC_RELAXED) == 0)
        (void)pthread_atfork(NULL, NULL, conc__coro_atfork_child);
}

/* A thread-specific key whose destructor runs at each thread's end, made once per process
 * (weak: one for every file that includes this header): NAME_once, NAME_key, NAME_key_ok (0:
 * no key was left) and NAME_key_create, for pthread_once(&NAME_once, NAME_key_create). */
#define CONC__CORO_THREAD_END_KEY(name, destructor)                                                \
    extern pthread_once_t name##_once CONC__CORO_ABI(name##_once);                                 \
    CONC__ONE_PER_PROGRAM pthread_once_t name##_once = PTHREAD_ONCE_INIT;                          \
    extern pthread_key_t name##_key CONC__CORO_ABI(name##_key);                                    \
    CONC__ONE_PER_PROGRAM pthread_key_t name##_key;                                                \
    extern int name##_key_ok CONC__CORO_ABI(name##_key_ok);                                        \
    CONC__ONE_PER_PROGRAM int name##_key_ok = 0;                                                   \
    static inline void name##_key_create(void) {                                                   \
        name##_key_ok = pthread_key_create(&name##_key, destructor) == 0;                          \
    }

/* A thread that ends inside a run (pthread_exit in a coroutine; pthread_cancel acting at
 * epoll_wait or at a coroutine's syscall) orphans the schedulers it was running: their
 * coroutines never go on (they never migrate, and one may be half unwound), run says EPERM
 * from then on, and destroy, from any thread, frees them without running anything. A
 * thread-specific value set while a run is in progress calls this at the thread's end (no
 * setjmp-based cleanup on the hot path); the thread-local names what was running. */
CONC_COLD void conc__coro_sched_orphan_slow(conc_sched_t *s);
static inline void conc__coro_thread_exit(void *unused) {
    CONC_UNUSED(unused);
    conc_sched_t *s = conc__coro_tls_sched;
    conc__coro_tls_sched = NULL;
    for (; s; s = s->run_outer)
        conc__coro_sched_orphan_slow(s);
}
CONC__CORO_THREAD_END_KEY(conc__coro_exit, conc__coro_thread_exit)

/* conc_coro_catch_overflow's alternate stack for its thread, freed as the thread ends: taken
 * off first if it is still the thread's (a destructor runs outside any signal handler). */
static inline void conc__coro_altstack_free(void *mem) {
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem && !(cur.ss_flags & SS_DISABLE)) {
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        (void)sigaltstack(&off, NULL);
    }
    free(mem);
}
CONC__CORO_THREAD_END_KEY(conc__coro_altstack, conc__coro_altstack_free)

/* Without a key (none left), or without memory for the value, it stays for the process's life.
 * One the thread had before is no longer its alternate stack (this one was set in its place
 * only because the thread had none), so it goes now. */
static inline void conc__coro_altstack_keep(void *mem) {
    (void)pthread_once(&conc__coro_altstack_once, conc__coro_altstack_key_create);
    if (!conc__coro_altstack_key_ok)
        return;
    void *before = pthread_getspecific(conc__coro_altstack_key);
    if (pthread_setspecific(conc__coro_altstack_key, mem) == 0)
        free(before);
}

CONC_INLINE int conc__coro_on_owner(const conc_sched_t *s) {
    /* Relaxed: only the owner itself stores its id (create, or adopt below), so a thread that
     * reads its own id here has stored it; any other value just says "not me". */
    return pthread_equal(conc_load(&s->owner, CONC_RELAXED), pthread_self());
}

/* Whether the calling thread may act as s's owner: it is, or s has never run and is not
 * running, and the calling thread takes it over (created on one thread, handed to the thread
 * that runs it; the hand-over itself is the program's to order, as for any object). From
 * its first run on, a scheduler stays on its thread: its coroutines may rely on it. */
CONC_INLINE int conc__coro_sched_adopt(conc_sched_t *s) {
    if (conc__coro_on_owner(s))
        return 1;
    /* Relaxed: the owner's run stores them; a thread taking s over after a proper hand-over
     * sees them through that hand-over, and a racing one at least reads no torn value. */
    if (conc_load(&s->ran, CONC_RELAXED) || conc_load(&s->running, CONC_RELAXED))
        return 0;
    conc_store(&s->owner, pthread_self(), CONC_RELAXED);
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Switching: the context jump wrapped in the sanitizer fiber protocol (QEMU's order)
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE void conc__coro_arrived(conc_sched_t *s, void *fake) {
#if defined(CONC_ASAN)
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &lo, &size);
    if (s->from_main) { /* we came from the thread's own stack: remember where it is */
        s->main_lo = lo;
        s->main_size = size;
    }
#else
    CONC_UNUSED(s);
    CONC_UNUSED(fake);
#endif
}

/* The thread's C++ exception state goes with the context that leaves, and the arriving
 * context's comes back (see conc__coro_eh). */
CONC_INLINE void conc__coro_eh_swap(const conc_sched_t *s, conc__coro_ctx *from,
                                    const conc__coro_ctx *to) {
    if (!s->eh_globals)
        return;
    conc__coro_eh *now = (conc__coro_eh *)s->eh_globals();
    if (from)
        from->eh = *now;
    *now = to->eh;
}

/* Switch from the context `from` to coroutine `to` (NULL: the scheduler's own context). */
CONC_INLINE void conc__coro_switch(conc_sched_t *s, conc__coro_ctx *from, int from_main,
                                   conc_coro_t *to) {
    conc__coro_ctx *dest = to ? &to->ctx : &s->main_ctx;
    s->from_main = from_main;
#if defined(CONC_ASAN)
    void *fake = NULL;
    if (to)
        __sanitizer_start_switch_fiber(&fake, to->stack_lo, to->stack_size);
    else
        __sanitizer_start_switch_fiber(&fake, s->main_lo, s->main_size);
#else
    void *fake = NULL;
#endif
#if defined(CONC_TSAN)
    __tsan_switch_to_fiber(to ? to->tsan_fiber : s->main_fiber, 0);
#endif
    conc__coro_eh_swap(s, from, dest);
    conc__coro_ctx_jump(from, dest);
    conc__coro_arrived(s, fake);
}

/* ---------------------------------------------------------------------------------------------
 * Run queue: a ring buffer plus the runnext slot
 * ------------------------------------------------------------------------------------------- */
CONC_COLD int conc__coro_sched_ring_grow_slow(conc_sched_t *s) {
    size_t cap = s->ring_mask + 1, n = s->tail - s->head;
    conc_coro_t **ring = (conc_coro_t **)conc_malloc_keep_errno(2 * cap * sizeof *ring);
    if (!ring)
        return ENOMEM;
    for (size_t i = 0; i < n; i++)
        ring[i] = s->ring[(s->head + i) & s->ring_mask];
    free(s->ring);
    s->ring = ring;
    s->ring_mask = 2 * cap - 1;
    s->head = 0;
    s->tail = n;
    return 0;
}

/* Every runnable coroutine has a ring slot reserved at spawn (conc__coro_sched_reserve), so a
 * push never fails. */
CONC_INLINE void conc__coro_sched_push_tail(conc_sched_t *s, conc_coro_t *c) {
    s->ring[s->tail++ & s->ring_mask] = c;
}

/* Makes c runnable: runnext if the running coroutine woke it and runnext is free, else the
 * tail. The first wake keeps the slot (Go's newest wake takes it and sends the older one to
 * the tail): a coroutine that wakes several before it parks (notify_all, then a lock handed
 * over) has them run in the order it woke them. */
CONC_INLINE void conc__coro_sched_ready(conc_sched_t *s, conc_coro_t *c, int next) {
    c->state = CONC__CORO_RUNNABLE;
    if (next && s->runnext == NULL)
        s->runnext = c;
    else
        conc__coro_sched_push_tail(s, c);
}

CONC_INLINE conc_coro_t *conc__coro_sched_pop(conc_sched_t *s) {
    conc_coro_t *c = s->runnext;
    if (c) {
        s->runnext = NULL;
        if (s->runnext_streak < CONC__CORO_RUNNEXT_MAX || s->head == s->tail) {
            s->runnext_streak++;
            return c;
        }
        conc__coro_sched_push_tail(s, c); /* its streak is over: the queue goes first */
    }
    s->runnext_streak = 0;
    if (s->head == s->tail)
        return NULL;
    size_t h = s->head++;
    c = s->ring[h & s->ring_mask];
    /* Cache and TLB misses dominate a yield among 100k coroutines: start loading the
     * coroutines a few places ahead (their struct, then the registers their stack holds). */
    if (h + CONC__CORO_PREFETCH_STRUCT < s->tail)
        __builtin_prefetch(s->ring[(h + CONC__CORO_PREFETCH_STRUCT) & s->ring_mask]);
#if defined(CONC__CORO_BACKEND_ASM)
    if (h + CONC__CORO_PREFETCH_STACK < s->tail) {
        conc_coro_t *a = s->ring[(h + CONC__CORO_PREFETCH_STACK) & s->ring_mask];
        __builtin_prefetch(a->ctx.sp);
        __builtin_prefetch((char *)a->ctx.sp + CONC_CACHELINE);
    }
#endif
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * Timer heap (min-heap on deadline; each coroutine knows its index)
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE void conc__coro_sched_heap_set(conc_sched_t *s, size_t i, conc_coro_t *c) {
    s->heap[i] = c;
    c->heap_index = i;
}

static inline void conc__coro_sched_heap_up(conc_sched_t *s, size_t i) {
    conc_coro_t *c = s->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p]->deadline <= c->deadline)
            break;
        conc__coro_sched_heap_set(s, i, s->heap[p]);
        i = p;
    }
    conc__coro_sched_heap_set(s, i, c);
}

static inline void conc__coro_sched_heap_down(conc_sched_t *s, size_t i) {
    conc_coro_t *c = s->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = c->deadline;
        if (l < s->heap_len && s->heap[l]->deadline < best) {
            m = l;
            best = s->heap[l]->deadline;
        }
        if (l + 1 < s->heap_len && s->heap[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        conc__coro_sched_heap_set(s, i, s->heap[m]);
        i = m;
    }
    conc__coro_sched_heap_set(s, i, c);
}

static inline int conc__coro_sched_heap_push(conc_sched_t *s, conc_coro_t *c) {
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? 2 * s->heap_cap : 64;
        conc_coro_t **h = (conc_coro_t **)conc_realloc_keep_errno(s->heap, cap * sizeof *h);
        if (!h)
            return ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    conc__coro_sched_heap_set(s, s->heap_len++, c);
    conc__coro_sched_heap_up(s, s->heap_len - 1);
    return 0;
}

static inline void conc__coro_sched_heap_remove(conc_sched_t *s, conc_coro_t *c) {
    size_t i = c->heap_index;
    c->heap_index = SIZE_MAX;
    conc_coro_t *last = s->heap[--s->heap_len];
    if (i == s->heap_len)
        return;
    conc__coro_sched_heap_set(s, i, last);
    conc__coro_sched_heap_up(s, i);
    conc__coro_sched_heap_down(s, last->heap_index);
}

/* ---------------------------------------------------------------------------------------------
 * Park and wake: the one blocking mechanism (the public face is at the end of this header)
 * ------------------------------------------------------------------------------------------- */
/* Whether the stacks of a scheduler created with these flags carry the debug canary: in a
 * debug build, and only without guard pages. Writing it touches the stack's bottom page, which
 * doubles an idle coroutine's resident memory (4 to 8 KiB), and a guard page already stops the
 * overflow it would catch (a frame larger than a page can jump either: the canary only if it
 * skips the bottom 8 bytes too). Decided once, by the file that creates the scheduler
 * (s->canary): files built with and without NDEBUG may share it. */
CONC_INLINE bool conc__coro_has_canary(unsigned sched_flags) {
    return CONC_DEBUG && (sched_flags & CONC_SCHED_NO_GUARD);
}

/* Only a debug file checks; any file's spawn writes the canary when s->canary says so. */
CONC_INLINE void conc__coro_check_canary(const conc_sched_t *s, conc_coro_t *c) {
    if (CONC_DEBUG && s->canary &&
        CONC_UNLIKELY(*(uint64_t *)(void *)c->stack_lo !=
                      (CONC__CORO_CANARY ^ (uint64_t)(uintptr_t)c))) {
        fprintf(stderr,
                "conc: stack overflow in coroutine \"%s\" (#%llu): the canary at the bottom of "
                "its %zu-byte stack was overwritten\n",
                c->name, (unsigned long long)c->id, c->stack_size);
        CONC_ABORT("conc_coro: stack canary overwritten");
    }
}

CONC_NOINLINE int conc__coro_sched_service_due_slow(conc_sched_t *s) {
    if (conc_load(&s->inbox_pending, CONC_RELAXED)) /* a hint: the loop re-reads under lock */
        return 1;
    if (!s->heap_len && !s->fd_waiters)
        return 0;
    int64_t now = conc_now();
    if (s->heap_len && s->heap[0]->deadline <= now)
        return 1;
    return s->fd_waiters && now - s->last_poll >= s->poll_ns;
}

/* CLOCK_MONOTONIC_COARSE: the time of the last tick, read without touching the TSC. */
CONC_INLINE int64_t conc__coro_coarse_now(void) {
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * CONC_SEC + (int64_t)ts.tv_nsec;
#else
    return 0; /* the 64-switch look alone */
#endif
}

/* Whether a switch should ask the loop's question (timers, fds, inbox): every
 * CONC__CORO_TICKS switches, and whenever the coarse clock ticked since the last such look. */
CONC_INLINE bool conc__coro_sched_look_due(conc_sched_t *s) {
    if (CONC_UNLIKELY((++s->ticks & CONC__CORO_TICKS_MASK) == 0))
        return true;
    /* Nothing that could be due (no timer, no fd waiter, no message): no clock read. Relaxed:
     * the inbox flag is a hint, as in conc__coro_sched_service_due_slow. */
    if (CONC_LIKELY(!s->heap_len && !s->fd_waiters && !conc_load(&s->inbox_pending, CONC_RELAXED)))
        return false;
    int64_t coarse = conc__coro_coarse_now();
    if (CONC_LIKELY(coarse == s->coarse_seen))
        return false;
    s->coarse_seen = coarse;
    return true;
}

/* Puts a coroutine's errno back once its switch returns. Out of line: errno's address is the
 * thread's, and the compiler looks it up once per function (glibc and musl declare
 * __errno_location const), so inline it reused the address found before the switch. A
 * slot's context that last ran on thread A and resumes on B (a destroy on B runs a late spawn
 * in it) then wrote into A's errno: a race with A, or, A gone, a write into its freed stack
 * (musl unmaps it: SIGSEGV). A call: a nanosecond or two of a 15 to 23 ns round trip. */
CONC_NOINLINE void conc__coro_errno_put_back(int saved) {
    __asm__ __volatile__("" ::: "memory"); /* as conc_errno_restore */
    errno = saved;
}

/* The running coroutine `from` gives up the CPU: the caller queued it (yield), parked it or
 * it returned. Runs the next runnable coroutine directly, or returns to the scheduler's loop
 * when none is runnable or when timers, fds or the inbox need a look. Returns when `from`
 * is resumed (never, for a returned coroutine whose slot is not reused). */
static inline void conc__coro_sched_switch_away(conc_sched_t *s, conc_coro_t *from) {
    conc__coro_check_canary(s, from);
    conc_coro_t *next = NULL;
    if (CONC_LIKELY(!conc__coro_sched_look_due(s)) || !conc__coro_sched_service_due_slow(s))
        next = conc__coro_sched_pop(s);
    if (next == from) {
        from->state = CONC__CORO_RUNNING;
        return;
    }
    s->current = next;
    if (next)
        next->state = CONC__CORO_RUNNING;
    /* errno is the thread's, and every coroutine of the thread shares it: each keeps its own
     * across the switches its blocking calls make (no conc call changes errno). */
    int saved_errno = conc_errno_save();
    conc__coro_switch(s, &from->ctx, 0, next);
    conc__coro_errno_put_back(saved_errno); /* perhaps on another thread: see there */
}

/* Parks the running coroutine until conc__coro_wake, its deadline or a cancel. */
static inline int conc__coro_park(conc_sched_t *s, conc_coro_t *co, const conc_coro_wait_t *w,
                                  int64_t deadline) {
    if (co->cancelled && !co->immune)
        return ECANCELED;
    if (deadline != CONC_FOREVER) {
        if (deadline <= conc_now())
            return ETIMEDOUT;
        co->deadline = deadline;
        if (conc__coro_sched_heap_push(s, co) != 0)
            return ENOMEM;
    }
    co->wait = w;
    co->wake_status = 0;
    co->state = CONC__CORO_PARKED;
    conc__coro_sched_switch_away(s, co);
    co->wait = NULL;
    return co->wake_status;
}

/* Makes a parked coroutine runnable with `status` as its park's result. The first wake wins:
 * a coroutine no longer parked is left alone (0). next: runnext, else the queue's tail. */
static inline int conc__coro_wake_to(conc_sched_t *s, conc_coro_t *c, int status, int next) {
    if (c->state != CONC__CORO_PARKED)
        return 0;
    if (c->heap_index != SIZE_MAX)
        conc__coro_sched_heap_remove(s, c);
    c->wake_status = status;
    conc__coro_sched_ready(s, c, next);
    return 1;
}

/* A wake by the running coroutine goes to runnext; one by the loop (timer, fd) to the tail. */
static inline void conc__coro_wake(conc_sched_t *s, conc_coro_t *c, int status) {
    conc__coro_wake_to(s, c, status, s->current != NULL);
}

/* Push, park, remove (at the end of this header). */
static inline int conc__coro_waitq_wait_on(conc_coro_waitq_t *q, const conc_coro_wait_t *w,
                                           int64_t deadline, uint8_t immune);

/* Wakes up to max still-parked waiters of q in FIFO order: the first runs next (if the running
 * coroutine wakes them), the others follow it at the queue's tail in their order. */
static inline size_t conc__coro_wake_n(conc_sched_t *s, conc_coro_waitq_t *q, size_t max,
                                       int status);

/* ---------------------------------------------------------------------------------------------
 * Wait queues (intrusive FIFO of waiters on the waiting coroutines' stacks)
 * ------------------------------------------------------------------------------------------- */
static inline void conc_coro_waitq_push(conc_coro_waitq_t *q, conc_coro_waiter_t *w) {
    CONC__BASE_DLIST_APPEND(q, w);
    w->linked = 1;
}

static inline void conc_coro_waitq_remove(conc_coro_waitq_t *q, conc_coro_waiter_t *w) {
    if (!w->linked)
        return;
    CONC__BASE_DLIST_UNLINK(q, w);
    w->prev = w->next = NULL;
    w->linked = 0;
}

static inline conc_coro_waiter_t *conc_coro_waitq_pop(conc_coro_waitq_t *q) {
    conc_coro_waiter_t *w = q->head;
    if (w)
        conc_coro_waitq_remove(q, w);
    return w;
}

static inline bool conc_coro_waitq_is_empty(const conc_coro_waitq_t *q) {
    return q->head == NULL;
}

static inline size_t conc__coro_wake_n(conc_sched_t *s, conc_coro_waitq_t *q, size_t max,
                                       int status) {
    size_t n = 0;
    conc_coro_waiter_t *w;
    while (n < max && (w = conc_coro_waitq_pop(q)) != NULL)
        n += (size_t)conc__coro_wake_to(s, w->coro, status, n == 0 && s->current != NULL);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Stacks: size classes, arenas, guard pages
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE size_t conc__coro_struct_span(void) {
    return (sizeof(conc_coro_t) + CONC__CORO_ALIGN - 1) & ~(size_t)(CONC__CORO_ALIGN - 1);
}

CONC_COLD int conc__coro_guard_slow(conc_sched_t *s, char *guard) {
    int saved = conc_errno_save(), e = 0;
    if (!s->guard_mprotect) {
        if (madvise(guard, s->page, MADV_GUARD_INSTALL) == 0)
            goto out;
        /* EINVAL: a kernel before 6.13 (or valgrind): mprotect from now on. Another error
         * (out of memory for the page tables, for a moment): mprotect this once. */
        if (errno == EINVAL)
            s->guard_mprotect = 1;
    }
    if (mprotect(guard, s->page, PROT_NONE) != 0) {
        e = errno == ENOMEM ? ENOMEM : errno;
        if (e == ENOMEM && !s->told_map_count) {
            s->told_map_count = 1; /* one line per scheduler, not one per failed spawn */
            char line[96];
            FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
            if (!f || !fgets(line, sizeof line, f))
                snprintf(line, sizeof line, "?\n");
            if (f)
                fclose(f);
            fprintf(stderr,
                    "conc_coro_spawn: ENOMEM: a guard page (mprotect) needs a mapping and the "
                    "process reached vm.max_map_count = %.*s (raise it: sysctl -w "
                    "vm.max_map_count=262144, use a kernel with MADV_GUARD_INSTALL (6.13+), or "
                    "CONC_SCHED_NO_GUARD)\n",
                    (int)strcspn(line, "\n"), line);
        }
    }
out:
    conc_errno_restore(saved);
    return e;
}

/* The slot's first context: a trampoline that runs coroutine after coroutine. */
static inline void conc__coro_trampoline(void);

#if defined(CONC_ASAN)
/* With detect_stack_use_after_return, ASan gives every fiber a fake stack for the frames it
 * moves off the real one, and frees it only when the fiber leaves for good: a last switch
 * that saves none (NULL). A slot leaves for good only when its scheduler is freed, so free
 * switches into each slot once more (every one is parked in conc__coro_finish then) and the
 * trampoline comes here: 100 KB a scheduler stayed mapped before (4 yielding coroutines). */
CONC_COLD void conc__coro_asan_retire_slot_slow(conc_sched_t *s) {
    s->from_main = 0;
    conc__coro_eh_swap(s, NULL, &s->main_ctx);
    __sanitizer_start_switch_fiber(NULL, s->main_lo, s->main_size);
    /* Not a local to save into: the NULL freed the fake stack that may hold this frame's. */
    conc__coro_ctx_jump(&s->current->ctx, &s->main_ctx);
    CONC_ABORT("conc_sched_destroy: a retired coroutine slot was resumed");
}
#endif

#if defined(CONC__CORO_BACKEND_SJLJ)
/* Creating a context with _setjmp: makecontext gives the new stack a first frame, setcontext
 * enters it once, and the trampoline saves itself with _setjmp and jumps back. */
static inline void conc__coro_boot_entry(void) {
    conc_sched_t *s = conc__coro_sched_here();
    conc_coro_t *co = s->boot;
#if defined(CONC_ASAN)
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(NULL, &lo, &size);
#endif
    if (!_setjmp(co->ctx.jb)) {
#if defined(CONC_ASAN)
        void *fake = NULL;
        __sanitizer_start_switch_fiber(&fake, lo, size);
#endif
#if defined(CONC_TSAN)
        __tsan_switch_to_fiber(s->main_fiber, 0);
#endif
        _longjmp(s->boot_ctx.jb, 1);
    }
    /* First real switch into this slot: go on as any arrival does. */
    conc__coro_arrived(s, NULL);
    conc__coro_trampoline();
}
#endif

static inline int conc__coro_ctx_make(conc_sched_t *s, conc_coro_t *co) {
#if defined(CONC__CORO_BACKEND_ASM)
    CONC_UNUSED(s);
    void **top = (void **)(void *)co; /* 64-byte aligned: a valid 16-byte-aligned stack top */
    void **sp = top - CONC__CORO_FRAME_WORDS;
    memset(sp, 0, CONC__CORO_FRAME_WORDS * sizeof(void *));
#if defined(__x86_64__)
    uint32_t mxcsr;
    uint16_t fpcw;
    __asm__ __volatile__("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpcw));
    memcpy((char *)sp, &mxcsr, sizeof mxcsr);         /* the spawner's FP control state, */
    memcpy((char *)sp + 4, &fpcw, sizeof fpcw);       /* as a new thread inherits it */
    sp[7] = (void *)(uintptr_t)conc__coro_trampoline; /* what the switch's `ret` pops */
    /* sp[8] = 0: the trampoline's return address, which ends backtraces */
#else
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    sp[0] = (void *)(uintptr_t)conc__coro_trampoline; /* x19: where the start goes */
    sp[11] = (void *)(uintptr_t)conc__coro_ctx_start;  /* x30: where `ret` goes */
    sp[20] = (void *)(uintptr_t)fpcr;
#endif
    co->ctx.sp = sp;
    return 0;
#else
    ucontext_t *uc;
#if defined(CONC__CORO_BACKEND_SJLJ)
    ucontext_t boot;
    uc = &boot;
#else
    uc = &co->ctx.uc;
#endif
    int saved = conc_errno_save();
    if (getcontext(uc) != 0) {
        int e = errno;
        conc_errno_restore(saved);
        return e;
    }
    conc_errno_restore(saved);
    uc->uc_stack.ss_sp = co->stack_lo;
    uc->uc_stack.ss_size = co->stack_size;
    uc->uc_link = NULL;
#if defined(CONC__CORO_BACKEND_SJLJ)
    makecontext(uc, conc__coro_boot_entry, 0);
    conc_sched_t *prev = conc__coro_sched_here();
    conc__coro_sched_set_here(s);
    s->boot = co;
#if defined(CONC_TSAN)
    void *here_fiber = __tsan_get_current_fiber();
    void *main_fiber = s->main_fiber;
    s->main_fiber = here_fiber; /* the boot entry switches back to this fiber */
#endif
    if (!_setjmp(s->boot_ctx.jb)) {
#if defined(CONC_ASAN)
        /* In s, not a local: a local changed after _setjmp is indeterminate after the jump. */
        __sanitizer_start_switch_fiber(&s->boot_fake, co->stack_lo, co->stack_size);
#endif
#if defined(CONC_TSAN)
        __tsan_switch_to_fiber(co->tsan_fiber, 0);
#endif
        setcontext(uc);
        CONC_ABORT("conc_coro: setcontext failed");
    }
#if defined(CONC_ASAN)
    __sanitizer_finish_switch_fiber(s->boot_fake, NULL, NULL); /* the creator's frames go on */
    s->boot_fake = NULL;
#endif
#if defined(CONC_TSAN)
    s->main_fiber = main_fiber;
#endif
    s->boot = NULL;
    conc__coro_sched_set_here(prev);
#else
    CONC_UNUSED(s);
    makecontext(uc, conc__coro_trampoline, 0);
#endif
    return 0;
#endif
}

/* A size class for a usable stack size (page multiple). */
static inline conc__coro_class *conc__coro_class_for(conc_sched_t *s, size_t stack_size) {
    for (conc__coro_class *k = s->classes; k; k = k->next)
        if (k->stack_size == stack_size)
            return k;
    conc__coro_class *k = (conc__coro_class *)conc_calloc_keep_errno(1, sizeof *k);
    if (!k)
        return NULL;
    k->stack_size = stack_size;
    k->slot_size = stack_size + s->page;
    k->next_slots = CONC__CORO_ARENA_SLOTS_MIN;
    k->next = s->classes;
    s->classes = k;
    return k;
}

CONC_COLD int conc__coro_arena_slow(conc_sched_t *s, conc__coro_class *k) {
    conc__coro_arena *a = (conc__coro_arena *)conc_calloc_keep_errno(1, sizeof *a);
    if (!a)
        return ENOMEM;
    /* An arena the address space (RLIMIT_AS) or the commit limit refuses gets half as many
     * slots, down to one: a big stack (64 of them are gigabytes) is refused only when its own
     * slot does not fit. */
    size_t slots = k->next_slots;
    int saved = conc_errno_save();
    void *mem;
    while ((mem = mmap(NULL, slots * k->slot_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)) == MAP_FAILED &&
           slots > 1)
        slots /= 2;
    conc_errno_restore(saved);
    if (mem == MAP_FAILED) {
        free(a);
        return ENOMEM;
    }
    a->base = (char *)mem;
    a->len = slots * k->slot_size;
    a->slot_size = k->slot_size;
    a->next = s->arenas;
    s->arenas = a;
    k->carve = a->base;
    k->carve_left = slots;
    k->arena = a;
    k->next_slots = slots < CONC__CORO_ARENA_SLOTS_MAX ? slots * 2 : slots; /* from what fit */
    return 0;
}

CONC_INLINE conc_coro_t *conc__coro_of_slot(char *slot, size_t slot_size) {
    return (conc_coro_t *)(void *)(slot + slot_size - conc__coro_struct_span());
}

#if defined(CONC_ASAN)
/* Free's side of it: into each slot that ran and back (the orphaned scheduler's slots may
 * be mid-body on a thread that ended: they keep theirs). Only for schedulers of at most
 * CONC__CORO_ASAN_RETIRE_MAX slots: ASan clears a freed fake stack's shadow (88 KB) by
 * mapping fresh pages over it, which splits the shadow's mapping in three, and six threads
 * freeing 20,000 slots each ran into the kernel's 65,530 mappings. Many small schedulers
 * come and go (their fake stacks then get the same addresses again), few large ones do. */
#define CONC__CORO_ASAN_RETIRE_MAX 256
CONC_COLD void conc__coro_asan_retire_slots_slow(conc_sched_t *s) {
    size_t slots = 0;
    for (conc__coro_arena *a = s->arenas; a; a = a->next)
        slots += a->carved;
    if (s->orphaned || slots > CONC__CORO_ASAN_RETIRE_MAX)
        return;
    int saved_errno = conc_errno_save(); /* each slot's switch_away puts back the errno it had */
    s->retiring = 1;
    for (conc__coro_arena *a = s->arenas; a; a = a->next)
        for (size_t i = 0; i < a->carved; i++) {
            conc_coro_t *co = conc__coro_of_slot(a->base + i * a->slot_size, a->slot_size);
            if (!co->fn || (co->state != CONC__CORO_DONE && co->state != CONC__CORO_FREE))
                continue; /* never given a coroutine (its context failed), or never finished */
            s->current = co;
            conc__coro_switch(s, &s->main_ctx, 1, co);
        }
    s->current = NULL;
    s->retiring = 0;
    conc_errno_restore(saved_errno);
}
#endif

/* A fresh slot: carve it, guard it, give it a context parked in the trampoline. */
CONC_COLD int conc__coro_carve_slow(conc_sched_t *s, conc__coro_class *k, conc_coro_t **out) {
    if (!k->carve_left) {
        int e = conc__coro_arena_slow(s, k);
        if (e)
            return e;
    }
    char *slot = k->carve;
    if (!(s->flags & CONC_SCHED_NO_GUARD)) {
        int e = conc__coro_guard_slow(s, slot);
        if (e)
            return e;
    }
    k->carve += k->slot_size;
    k->carve_left--;
    k->arena->carved++; /* this class's arena: destroy walks its carved slots */
    conc_coro_t *co = conc__coro_of_slot(slot, k->slot_size);
    memset(co, 0, sizeof *co);
    co->cls = k;
    co->stack_lo = slot + s->page;
    co->stack_size = (size_t)((char *)co - co->stack_lo);
#if defined(CONC_TSAN)
    co->tsan_fiber = __tsan_create_fiber(0);
#endif
#if defined(CONC__CORO_VALGRIND)
    co->valgrind_id = VALGRIND_STACK_REGISTER(co->stack_lo, (char *)co);
#endif
    int e = conc__coro_ctx_make(s, co);
    if (e)
        return e; /* the slot stays carved; its memory goes with the arena */
    *out = co;
    return 0;
}

static inline int conc__coro_alloc(conc_sched_t *s, size_t stack_size, conc_coro_t **out) {
    conc__coro_class *k = s->classes;
    if (CONC_UNLIKELY(!k || k->stack_size != stack_size)) {
        k = conc__coro_class_for(s, stack_size);
        if (!k)
            return ENOMEM;
    }
    conc_coro_t *co = k->free;
    if (CONC_LIKELY(co != NULL)) {
        k->free = co->free_next;
        *out = co;
        return 0;
    }
    return conc__coro_carve_slow(s, k, out);
}

/* The two intrusive lists a coroutine is on (every coroutine of a scheduler; a group's
 * children), pushed at the head and unlinked anywhere: one body for both, named by its link
 * fields. */
#define CONC__CORO_LIST_PUSH(head, co, prev, next)                                                 \
    do {                                                                                           \
        (co)->prev = NULL;                                                                         \
        (co)->next = (head);                                                                       \
        if (head)                                                                                  \
            (head)->prev = (co);                                                                   \
        (head) = (co);                                                                             \
    } while (0)
#define CONC__CORO_LIST_UNLINK(head, co, prev, next)                                               \
    do {                                                                                           \
        if ((co)->prev)                                                                            \
            (co)->prev->next = (co)->next;                                                         \
        else                                                                                       \
            (head) = (co)->next;                                                                   \
        if ((co)->next)                                                                            \
            (co)->next->prev = (co)->prev;                                                         \
    } while (0)

static inline void conc__coro_slot_put(conc_sched_t *s, conc_coro_t *co) {
    CONC__CORO_LIST_UNLINK(s->all, co, all_prev, all_next);
    co->state = CONC__CORO_FREE;
    co->free_next = co->cls->free;
    co->cls->free = co;
}

/* ---------------------------------------------------------------------------------------------
 * Spawn, finish, the trampoline
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE int conc__coro_sched_reserve(conc_sched_t *s) {
    /* Room in the ring for every coroutine that could be runnable at once: live ones. */
    if (CONC_UNLIKELY(s->live + 1 > s->ring_mask)) /* +1: runnext can spill one back */
        return conc__coro_sched_ring_grow_slow(s);
    return 0;
}

static inline int conc__coro_spawn_on(conc_sched_t *s, conc_coro_fn fn, void *arg,
                                      const conc_coro_opts_t *o, conc_coro_t **c, const char *file,
                                      int line) {
    size_t size = (o && o->stack_size) ? o->stack_size : s->stack_default;
    if (size < CONC_CORO_STACK_MIN || size > CONC_CORO_STACK_MAX)
        return EINVAL;
    size = (size + s->page - 1) & ~(s->page - 1);
    int e = conc__coro_sched_reserve(s);
    if (e)
        return e;
    conc_coro_t *co;
    e = conc__coro_alloc(s, size, &co);
    if (e)
        return e;
    co->sched = s;
    co->fn = fn;
    co->arg = arg;
    co->cancelled = s->destroying; /* cleanup code's spawns during destroy: cancelled too */
    co->handle = c != NULL;
    co->immune = 0;
    co->status = 0;
    co->wake_status = 0;
    co->heap_index = SIZE_MAX;
    co->wait = NULL;
    co->joiners.head = co->joiners.tail = NULL;
    co->group = NULL;
    co->group_prev = co->group_next = NULL;
    co->id = ++s->next_id;
    co->parent_id = s->current ? s->current->id : 0;
    co->spawn_file = file;
    co->spawn_line = line;
    if (o && o->name)
        snprintf(co->name, sizeof co->name, "%s", o->name);
    else
        snprintf(co->name, sizeof co->name, "coro#%llu", (unsigned long long)co->id);
    if (s->canary)
        *(uint64_t *)(void *)co->stack_lo = CONC__CORO_CANARY ^ (uint64_t)(uintptr_t)co;
    CONC__CORO_LIST_PUSH(s->all, co, all_prev, all_next);
    s->live++;
    conc__coro_sched_ready(s, co, 0);
    if (c)
        *c = co;
    return 0;
}

static inline void conc__coro_group_child_done(conc_group_t *g, conc_coro_t *co);
CONC_NOINLINE void conc__coro_paint(conc_coro_t *co);

/* The coroutine returned: wake its joiners, tell its group, free or keep its slot, and
 * switch away for good (until the slot is reused). */
static inline void conc__coro_finish(conc_sched_t *s, conc_coro_t *co, int status) {
    co->status = status;
    co->state = CONC__CORO_DONE;
    s->live--;
    conc__coro_wake_n(s, &co->joiners, SIZE_MAX, 0);
    if (co->group)
        conc__coro_group_child_done(co->group, co);
    if (!co->handle)
        conc__coro_slot_put(s, co); /* we still run on it: safe until we switch away */
    conc__coro_sched_switch_away(s, co);
}

static inline void conc__coro_trampoline(void) {
    conc_sched_t *s = conc__coro_sched_here(); /* read once, at the slot's first entry */
    conc_coro_t *co = s->current;
#if defined(CONC__CORO_BACKEND_SJLJ)
    /* its boot entry already did conc__coro_arrived */
#else
    conc__coro_arrived(s, NULL);
#endif
    for (;;) {
        if (s->flags & CONC_SCHED_STACK_USAGE)
            conc__coro_paint(co);
        int status = co->fn(co->arg);
        s = co->sched; /* the same scheduler: a slot never changes owner */
        conc__coro_finish(s, co, status);
        /* Resumed: the slot was reused by a new spawn (co is the same address), or the
         * scheduler is being freed and wants the slot's fake stack back. */
#if defined(CONC_ASAN)
        if (CONC_UNLIKELY(s->retiring))
            conc__coro_asan_retire_slot_slow(s);
#endif
    }
}

/* ---------------------------------------------------------------------------------------------
 * Stack high-water mark (CONC_SCHED_STACK_USAGE)
 * ------------------------------------------------------------------------------------------- */
/* Paints from above the canary up to CONC__CORO_PAINT_MARGIN below this frame, word by word
 * through a volatile pointer, with no call: a callee's frames would lie in the range being
 * painted (clang's ASan memset interceptor takes 2 KiB of stack, and painted its own return
 * addresses), and a plain loop would be compiled back into a memset call. */
CONC_NOINLINE void conc__coro_paint(conc_coro_t *co) {
    uintptr_t hi = (uintptr_t)__builtin_frame_address(0) - CONC__CORO_PAINT_MARGIN;
    uintptr_t lo = (uintptr_t)co->stack_lo + sizeof(uint64_t); /* above the canary */
    const uint64_t word = CONC__CORO_PAINT_BYTE * (UINT64_MAX / 0xff); /* the byte, 8 times */
#if defined(CONC__CORO_VALGRIND)
    VALGRIND_DISABLE_ERROR_REPORTING; /* memcheck: writing below the stack pointer is on purpose */
#endif
    for (volatile uint64_t *p = (volatile uint64_t *)lo; (uintptr_t)(p + 1) <= hi; p++)
        *p = word;
#if defined(CONC__CORO_VALGRIND)
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * The scheduler's loop
 * ------------------------------------------------------------------------------------------- */
static inline int conc__coro_sched_fd_arm(conc_sched_t *s, int fd, uint32_t want);

/* The epoll events that wait for the directions in `events` (CONC_FD_READ | CONC_FD_WRITE). */
CONC_INLINE uint32_t conc__coro_fd_epoll_bits(int events) {
    return ((events & CONC_FD_READ) ? (uint32_t)(EPOLLIN | EPOLLRDHUP) : 0u) |
           ((events & CONC_FD_WRITE) ? (uint32_t)EPOLLOUT : 0u);
}

/* Whether the event ev ends a wait for those directions: a hang-up or an error ends either. */
CONC_INLINE bool conc__coro_fd_event_ends(int events, uint32_t ev) {
    return ((events & CONC_FD_READ) && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) ||
           ((events & CONC_FD_WRITE) && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)));
}

/* The directions fd's watch waits for; 0: none. */
CONC_INLINE int conc__coro_fdw_watching(const conc__coro_fdw *w) {
    return w->watch ? w->watch->events : 0;
}

/* What fd's registration must be armed for: its parked waiters' and its watch's directions. */
CONC_INLINE uint32_t conc__coro_fdw_want(const conc__coro_fdw *w) {
    return conc__coro_fd_epoll_bits((w->reader ? CONC_FD_READ : 0) |
                                    (w->writer ? CONC_FD_WRITE : 0) | conc__coro_fdw_watching(w));
}

/* A watch that fired, was removed, or was spawned by destroy: no longer waiting. */
CONC_INLINE void conc__coro_watch_end(conc_sched_t *s, conc__coro_watch *wt) {
    wt->events = 0;
    s->fd_watches--;
    s->fd_waiters--;
}

/* Spawns a fired watch's coroutine (detached): 0, or the spawn's error (ENOMEM), and then the
 * watch stays, armed again by the caller, and the next poll tries once more. */
static inline int conc__coro_watch_fire(conc_sched_t *s, conc__coro_watch *wt) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o); /* a field added later gets its default */
    o.stack_size = wt->stack_size;
    o.name = wt->name[0] ? wt->name : NULL;
    int e = conc__coro_spawn_on(s, wt->fn, wt->arg, &o, NULL, wt->spawn_file, wt->spawn_line);
    if (e == 0)
        conc__coro_watch_end(s, wt);
    return e;
}

/* An event of fd's registration `data` ([coro.F3]). One of an earlier generation belongs to a
 * file that was closed while registered (its number since reused): nobody waits on it. The
 * event disarmed the one-shot registration, so a waiter or watch it did not end is armed
 * again. */
static inline void conc__coro_sched_fd_wake(conc_sched_t *s, uint64_t data, uint32_t ev) {
    size_t fd = (size_t)(data & CONC__CORO_FD_NUM_MASK);
    if (fd >= s->fds_cap)
        return;
    conc__coro_fdw *w = &s->fds[fd];
    if ((uint32_t)(data >> CONC__CORO_FD_GEN_SHIFT) != w->gen)
        return; /* stale: one-shot, so it cannot fire again */
    w->armed = 0;
    uint32_t rest = 0;
    if (w->reader) {
        if (conc__coro_fd_event_ends(CONC_FD_READ, ev))
            conc__coro_wake(s, w->reader, 0);
        else if (w->reader->state == CONC__CORO_PARKED)
            rest |= conc__coro_fd_epoll_bits(CONC_FD_READ);
    }
    if (w->writer) {
        if (conc__coro_fd_event_ends(CONC_FD_WRITE, ev))
            conc__coro_wake(s, w->writer, 0);
        else if (w->writer->state == CONC__CORO_PARKED)
            rest |= conc__coro_fd_epoll_bits(CONC_FD_WRITE);
    }
    int watching = conc__coro_fdw_watching(w);
    if (watching &&
        (!conc__coro_fd_event_ends(watching, ev) || conc__coro_watch_fire(s, w->watch) != 0))
        rest |= conc__coro_fd_epoll_bits(watching);
    if (rest)
        (void)conc__coro_sched_fd_arm(s, (int)fd, rest); /* fails only if closed (misuse) */
}

static inline void conc__coro_sched_drain_inbox(conc_sched_t *s);

/* One epoll_wait (timeout_ms: 0 polls, -1 blocks) and what it found. */
CONC_NOINLINE void conc__coro_sched_poll(conc_sched_t *s, int timeout_ms) {
    struct epoll_event ev[CONC__CORO_EVENTS];
    int saved = conc_errno_save();
    int n = epoll_wait(s->epfd, ev, CONC__CORO_EVENTS, timeout_ms);
    conc_errno_restore(saved);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == CONC__CORO_EVFD_TAG) {
            /* [coro.I3] clear the eventfd, then drain: see the inbox timeline */
            uint64_t v;
            saved = conc_errno_save();
            ssize_t r = read(s->evfd, &v, sizeof v);
            conc_errno_restore(saved);
            (void)r;
            conc__coro_sched_drain_inbox(s);
        } else {
            conc__coro_sched_fd_wake(s, ev[i].data.u64, ev[i].events);
        }
    }
}

CONC_INLINE void conc__coro_sched_fire_timers(conc_sched_t *s, int64_t now) {
    while (s->heap_len && s->heap[0]->deadline <= now)
        conc__coro_wake(s, s->heap[0], ETIMEDOUT); /* removes it from the heap */
}

static inline bool conc__coro_sched_has_runnable(const conc_sched_t *s) {
    return s->runnext != NULL || s->head != s->tail;
}

CONC_COLD void conc__coro_sched_describe_slow(const conc_coro_t *c, char *buf, size_t size) {
    const conc_coro_wait_t *w = c->wait;
    if (!w) {
        snprintf(buf, size, "-");
    } else if (w->describe) {
        w->describe(w, buf, size);
    } else if (w->detail) {
        snprintf(buf, size, "%s %p (%ld)", w->what, w->object, w->detail);
    } else {
        snprintf(buf, size, "%s %p", w->what, w->object);
    }
}

CONC_COLD void conc__coro_sched_line_slow(FILE *out, const char *lead, const conc_coro_t *c) {
    static const char *const states[] = {"free", "runnable", "running", "waiting", "done"};
    char what[160], origin[160];
    conc__coro_sched_describe_slow(c, what, sizeof what);
    if (c->parent_id)
        snprintf(origin, sizeof origin, "%s:%d by coro #%llu", c->spawn_file ? c->spawn_file : "?",
                 c->spawn_line, (unsigned long long)c->parent_id);
    else
        snprintf(origin, sizeof origin, "%s:%d", c->spawn_file ? c->spawn_file : "?",
                 c->spawn_line);
    fprintf(out, "%scoro \"%s\" (#%llu) %s%s%s; spawned at %s\n", lead, c->name,
            (unsigned long long)c->id, states[c->state],
            c->state == CONC__CORO_PARKED ? " on " : "", c->state == CONC__CORO_PARKED ? what : "",
            origin);
}

CONC_COLD int conc__coro_sched_deadlock_slow(conc_sched_t *s) {
    fprintf(stderr,
            "conc: conc_sched_run: EDEADLK: all %zu coroutines are asleep and nothing can wake "
            "them (no timer, fd wait, hold or cross-thread spawn pending):\n",
            s->live);
    for (conc_coro_t *c = s->all; c; c = c->all_next)
        if (c->state == CONC__CORO_PARKED)
            conc__coro_sched_line_slow(stderr, "conc:   ", c);
    fflush(stderr);
    return EDEADLK;
}

/* [coro.I7] Nothing is runnable, but other threads hold the scheduler (an await, a mailbox
 * receive): watch the inbox hint and the holds for a while before paying a sleep and a wake.
 * true: one of them moved. Bounded and adaptive (CONC__CORO_SPIN_*); never on one CPU, where
 * it would only delay the thread that hands the work over. */
CONC_NOINLINE bool conc__coro_sched_spin_slow(conc_sched_t *s, uint32_t holds) {
    if (conc_cpu_count() < 2)
        return false;
    if (s->spin_skip) {
        s->spin_skip--;
        return false;
    }
    int64_t end = conc_now() + s->spin_ns;
    for (unsigned i = 1;; i++) {
        conc_cpu_relax();
        /* Relaxed: hints; the drain takes the mutex and the stop check reads holds again. */
        if (conc_load(&s->inbox_pending, CONC_RELAXED) ||
            conc_load(&s->holds, CONC_RELAXED) != holds) {
            s->spin_ns =
                s->spin_ns * 2 > CONC__CORO_SPIN_MAX_NS ? CONC__CORO_SPIN_MAX_NS : s->spin_ns * 2;
            return true;
        }
        if ((i & CONC__CORO_SPIN_CLOCK_MASK) == 0 && conc_now() >= end)
            break;
    }
    if (s->spin_ns / 2 < CONC__CORO_SPIN_MIN_NS) {
        s->spin_ns = CONC__CORO_SPIN_MIN_NS;
        s->spin_skip = CONC__CORO_SPIN_SKIP; /* empty at MIN: sit a few sleeps out */
    } else {
        s->spin_ns /= 2;
    }
    return false;
}

/* [coro.I6] Announces the sleep under the inbox mutex, if the inbox is still empty and the
 * holds are what the loop decided on: from here posters and the last unhold kick the eventfd.
 * false: something came in between; the loop looks again instead of sleeping. */
static inline bool conc__coro_sched_doze(conc_sched_t *s, uint32_t holds) {
    pthread_mutex_lock(&s->inbox_lock);
    /* Relaxed: the mutex orders these against the posters' appends and unhold's decrement. */
    bool ok = s->inbox_head == NULL && conc_load(&s->holds, CONC_RELAXED) == holds;
    if (ok)
        conc_store(&s->asleep, 1u, CONC_RELAXED);
    pthread_mutex_unlock(&s->inbox_lock);
    return ok;
}

/* Whether holds (the count, as read) keep s's loop going. Once destroy has begun only the
 * pins do: conc_sched_hold's holds no longer matter, the scheduler is going away, but the
 * count is left alone, since their unholds may still come from other threads meanwhile (an
 * overwritten count took them below zero: an abort, or a pin's place). */
CONC_INLINE bool conc__coro_sched_kept(const conc_sched_t *s, uint32_t holds) {
    return s->destroying ? s->pins != 0 : holds != 0;
}

/* Runs the loop until stop(s, arg) holds (0) or nothing can ever run again (EDEADLK). */
static inline int conc__coro_sched_loop(conc_sched_t *s, bool (*stop)(conc_sched_t *, void *),
                                        void *arg) {
    for (;;) {
        if (conc_load(&s->inbox_pending, CONC_RELAXED))
            conc__coro_sched_drain_inbox(s);
        if (stop(s, arg))
            return 0;
        if (s->heap_len || s->fd_waiters) {
            int64_t now = conc_now();
            conc__coro_sched_fire_timers(s, now);
            if (s->fd_waiters && now - s->last_poll >= s->poll_ns &&
                conc__coro_sched_has_runnable(s)) {
                conc__coro_sched_poll(s, 0); /* busy: still look at fds every poll interval */
                s->last_poll = now;
            }
        }
        conc_coro_t *next = conc__coro_sched_pop(s);
        if (next) {
            s->current = next;
            next->state = CONC__CORO_RUNNING;
            int saved_errno = conc_errno_save(); /* the loop's, as a coroutine's above */
            conc__coro_switch(s, &s->main_ctx, 1, next);
            conc_errno_restore(saved_errno);
            continue; /* a coroutine had nothing to run after it, or the loop is due */
        }
        if (stop(s, arg))
            return 0;
        /* [coro.I4] holds is read (acquire) before the inbox hint, see conc_sched_unhold */
        uint32_t holds = conc_load(&s->holds, CONC_ACQUIRE);
        if (!s->heap_len && !s->fd_waiters && !conc__coro_sched_kept(s, holds) &&
            !conc_load(&s->inbox_pending, CONC_RELAXED))
            return conc__coro_sched_deadlock_slow(s);
        /* A pending inbox nobody kicked (a drain that ran out of memory put it back): look
         * again at once rather than sleep on the eventfd. */
        int timeout = conc_load(&s->inbox_pending, CONC_RELAXED) ? 0 : -1;
        if (timeout != 0 && s->heap_len) {
            int64_t left = s->heap[0]->deadline - conc_now();
            /* round up: waking a little late is allowed, early is not (the loop re-checks) */
            int64_t ms = left <= 0 ? 0 : (left + CONC_MS - 1) / CONC_MS;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        if (timeout != 0 && conc__coro_sched_kept(s, holds) && conc__coro_sched_spin_slow(s, holds))
            continue; /* [coro.I7] the work came while we polled: no sleep, no wake */
        if (timeout != 0 && !conc__coro_sched_doze(s, holds))
            continue; /* [coro.I6] a message or an unhold came in between: look again */
        conc__coro_sched_poll(s, timeout);
        conc_store(&s->asleep, 0u, CONC_RELAXED); /* awake: posters need not kick (a hint) */
        s->last_poll = conc_now();
    }
}

static inline bool conc__coro_sched_stop_all_done(conc_sched_t *s, void *arg) {
    CONC_UNUSED(arg);
    return s->live == 0 && s->fd_watches == 0 &&
           !conc__coro_sched_kept(s, conc_load(&s->holds, CONC_ACQUIRE)) &&
           !conc_load(&s->inbox_pending, CONC_RELAXED);
}

/* ---------------------------------------------------------------------------------------------
 * Cross-thread spawn: a mutex-guarded inbox and an eventfd that is written only while the loop
 * sleeps.
 *
 *   posting thread                         scheduler
 *   -----------------------------------    ----------------------------------------------
 *   lock; append; pending = 1  [coro.I1]   nothing runnable: poll pending briefly [coro.I7]
 *   kick = asleep; asleep = 0;             lock; if the list is empty and holds as seen:
 *   if kick: kicking++         [coro.I2]     asleep = 1                          [coro.I6]
 *   unlock                                 unlock (else: look again, no sleep)
 *   if kick: write(evfd, 1);               epoll_wait ... returns: asleep = 0 (a hint)
 *     kicking-- (release)      [coro.I8]   read(evfd): counter -> 0              [coro.I3]
 *                                          lock; take the list; pending = 0; unlock [coro.I5]
 *   The mutex orders [coro.I1]/[coro.I2] against [coro.I6]: a message appended before the
 *   loop announced its sleep keeps it awake, one appended after sees asleep == 1 and its
 *   poster writes the eventfd. A loop that is awake is not kicked at all (its pending hint or
 *   the check under the mutex finds the message): a completion that lands while the loop
 *   polls costs no syscall on either side. A read of the eventfd that swallows a write whose
 *   message is still in the list loses nothing: the next [coro.I6] finds the message and
 *   the loop does not sleep. A late write (its message already taken by the busy loop) only
 *   wakes the loop once for nothing. The last conc_sched_unhold kicks the same way.
 *   The write happens outside the mutex (a scheduler waking on it would otherwise block on
 *   the mutex its waker still holds), so the scheduler may finish and be destroyed while a
 *   poster is still writing: conc_sched_destroy takes the mutex (every claim [coro.I2] is then
 *   visible) and waits for kicking to reach 0 [coro.I8] before it closes the eventfd.
 *   tests/models/coro_inbox.pml checks this (and the broken orders).
 * ------------------------------------------------------------------------------------------- */
/* Under the inbox mutex: a loop announced its sleep [coro.I6], and this caller will wake it
 * (true: call conc__coro_sched_kick after unlocking). */
CONC_INLINE bool conc__coro_sched_claim_kick(conc_sched_t *s) {
    /* Relaxed: the mutex orders asleep and kicking against the loop and against destroy. */
    if (!conc_load(&s->asleep, CONC_RELAXED))
        return false;
    conc_store(&s->asleep, 0u, CONC_RELAXED);
    conc_fetch_add(&s->kicking, 1u, CONC_RELAXED); /* [coro.I2] */
    return true;
}

/* After the unlock: the eventfd write a claim promised, then the last touch of s [coro.I8]. */
CONC_INLINE void conc__coro_sched_kick(conc_sched_t *s) {
    uint64_t one = 1;
    int saved = conc_errno_save();
    ssize_t r = write(s->evfd, &one, sizeof one);
    conc_errno_restore(saved);
    (void)r; /* EAGAIN only at a counter of 2^64-2: it is readable anyway */
    /* Release: destroy's acquire load that sees 0 closes the eventfd after our write. */
    conc_fetch_sub(&s->kicking, 1u, CONC_RELEASE);
}

static inline void conc__coro_sched_drain_inbox(conc_sched_t *s) {
    pthread_mutex_lock(&s->inbox_lock);
    conc__coro_msg *m = s->inbox_head; /* [coro.I5] */
    s->inbox_head = s->inbox_tail = NULL;
    conc_store(&s->inbox_pending, 0u, CONC_RELAXED);
    pthread_mutex_unlock(&s->inbox_lock);
    while (m) {
        conc__coro_msg *next = m->next;
        conc_coro_opts_t o = {0, NULL};
        if (m->call) { /* conc_sched_msg_post: the loop calls it (it never parks) */
            (void)m->fn(m->arg);
            free(m);
            m = next;
            continue;
        }
        if (conc__coro_spawn_on(s, m->fn, m->arg, &o, NULL, m->file, m->line) != 0) {
            /* Out of memory for a stack: put the rest back and retry on the next pass. */
            pthread_mutex_lock(&s->inbox_lock);
            conc__coro_msg *tail = m;
            while (tail->next)
                tail = tail->next;
            tail->next = s->inbox_head;
            if (!s->inbox_head)
                s->inbox_tail = tail;
            s->inbox_head = m;
            conc_store(&s->inbox_pending, 1u, CONC_RELAXED);
            pthread_mutex_unlock(&s->inbox_lock);
            return;
        }
        free(m);
        m = next;
    }
}

/* An orphaned scheduler's inbox (see conc_sched_destroy): calls the call messages that have
 * come, as the loop would, and frees the spawn messages unspawned, as conc__coro_sched_free
 * would (nothing of an orphan starts). */
CONC_COLD void conc__coro_sched_call_posted_slow(conc_sched_t *s) {
    pthread_mutex_lock(&s->inbox_lock);
    conc__coro_msg *m = s->inbox_head;
    s->inbox_head = s->inbox_tail = NULL;
    conc_store(&s->inbox_pending, 0u, CONC_RELAXED);
    pthread_mutex_unlock(&s->inbox_lock);
    while (m) {
        conc__coro_msg *next = m->next;
        if (m->call)
            (void)m->fn(m->arg);
        free(m);
        m = next;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Scheduler lifecycle
 * ------------------------------------------------------------------------------------------- */
CONC_NODISCARD static inline int conc_sched_create(conc_sched_t **out, const conc_sched_opts_t *o) {
    if (!out)
        return EINVAL;
    *out = NULL;
    if (o && o->stack_size &&
        (o->stack_size < CONC_CORO_STACK_MIN || o->stack_size > CONC_CORO_STACK_MAX))
        return EINVAL;
    if (o && ((o->flags & ~CONC__SCHED_FLAGS) || o->poll_interval < 0))
        return EINVAL; /* a flag this header does not know, a negative interval */
    conc_sched_t *s = (conc_sched_t *)conc_calloc_keep_errno(1, sizeof *s);
    if (!s)
        return ENOMEM;
    s->ring = (conc_coro_t **)conc_malloc_keep_errno(CONC__CORO_RING_INIT * sizeof *s->ring);
    if (!s->ring) {
        free(s);
        return ENOMEM;
    }
    s->ring_mask = CONC__CORO_RING_INIT - 1;
    long page = sysconf(_SC_PAGESIZE);
    s->page = page > 0 ? (size_t)page : 4096u;
    s->pid = getpid();
    s->stack_default = (o && o->stack_size) ? o->stack_size : CONC_CORO_STACK_DEFAULT;
    s->flags = o ? o->flags : 0u;
    s->canary = conc__coro_has_canary(s->flags);
    s->guard_mprotect = (s->flags & CONC_SCHED_GUARD_MPROTECT) != 0;
    s->eh_globals = conc__coro_cxa_get_globals; /* NULL here: no C++ runtime (conc__coro_eh) */
    s->poll_ns = (o && o->poll_interval > 0) ? o->poll_interval : CONC_CORO_POLL_NS;
    conc_store(&s->owner, pthread_self(), CONC_RELAXED);
    int saved = conc_errno_save();
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->evfd = s->epfd < 0 ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = CONC__CORO_EVFD_TAG;
    int e = 0;
    if (s->epfd < 0 || s->evfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) != 0)
        e = (errno == EMFILE || errno == ENFILE) ? EMFILE : ENOMEM;
    conc_errno_restore(saved);
    if (e) {
        if (s->evfd >= 0)
            close(s->evfd);
        if (s->epfd >= 0)
            close(s->epfd);
        free(s->ring);
        free(s);
        return e;
    }
    pthread_mutex_init(&s->inbox_lock, NULL);
    s->spin_ns = CONC__CORO_SPIN_MIN_NS;
    conc__coro_atfork_register(); /* before the registry's first use: the child resets it */
    pthread_mutex_lock(&conc__coro_registry_lock);
    s->serial = ++conc__coro_registry_serial;
    s->registry_next = conc__coro_registry;
    conc__coro_registry = s;
    pthread_mutex_unlock(&conc__coro_registry_lock);
    *out = s;
    return 0;
}

/* Before conc_sched_run: an alternate signal stack on this thread for the overflow reporter,
 * if it is installed and the thread has none yet. */
CONC_COLD void conc__coro_sched_altstack_slow(conc_sched_t *s) {
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE))
        return;
    void *mem = conc_malloc_keep_errno(CONC__CORO_ALTSTACK_SIZE);
    if (!mem)
        return;
    stack_t st;
    memset(&st, 0, sizeof st);
    st.ss_sp = mem;
    st.ss_size = CONC__CORO_ALTSTACK_SIZE;
    if (sigaltstack(&st, NULL) != 0) {
        free(mem);
        return;
    }
    s->altstack = mem;
}

CONC_COLD void conc__coro_sched_altstack_remove_slow(conc_sched_t *s) {
    stack_t st;
    memset(&st, 0, sizeof st);
    st.ss_flags = SS_DISABLE;
    sigaltstack(&st, NULL);
    free(s->altstack);
    s->altstack = NULL;
}

/* The thread ended inside s's run (see conc__coro_thread_exit). */
CONC_COLD void conc__coro_sched_orphan_slow(conc_sched_t *s) {
#if defined(CONC_TSAN)
    if (s->current) /* the thread left a coroutine's stack for good */
        __tsan_switch_to_fiber(s->main_fiber, 0);
#endif
#if defined(CONC_ASAN)
    /* The unwind that ends the thread (uninstrumented: libc's) left the redzones of the
     * frames it skipped poisoned on the thread's own stack, where ASan's teardown of the
     * thread runs next; a pthread_exit in a coroutine jumps back there from the coroutine's
     * stack, which ASan, told it was current, is the one it would clear. */
    if (s->main_size)
        conc__coro_asan_unpoison(s->main_lo, s->main_size);
#endif
    s->orphaned = 1;
    if (s->altstack)
        conc__coro_sched_altstack_remove_slow(s);
    conc_store(&s->running, 0, CONC_RELAXED);
}

static inline int conc__coro_sched_run_until(conc_sched_t *s, bool (*stop)(conc_sched_t *, void *),
                                             void *arg) {
    if (s->orphaned || conc_load(&s->running, CONC_RELAXED) || !conc__coro_sched_adopt(s))
        return EPERM;
    conc_sched_t *outer = conc__coro_sched_here();
    if (outer && outer->current)
        return EPERM; /* inside a coroutine: a nested loop would strand it */
    int saved = conc_errno_save();
    conc__coro_atfork_register();
    if (conc_load(&conc__coro_overflow_installed, CONC_ACQUIRE))
        conc__coro_sched_altstack_slow(s);
    conc_store(&s->running, 1, CONC_RELAXED); /* relaxed: see conc__coro_sched_adopt */
    conc_store(&s->ran, 1, CONC_RELAXED);
    (void)pthread_once(&conc__coro_exit_once, conc__coro_exit_key_create);
    if (conc__coro_exit_key_ok) /* the thread's end, inside this run, orphans s */
        (void)pthread_setspecific(conc__coro_exit_key, s);
    s->run_outer = outer;
    conc__coro_sched_set_here(s);
#if defined(CONC_TSAN)
    s->main_fiber = __tsan_get_current_fiber();
#endif
    s->last_poll = conc_now();
    int e = conc__coro_sched_loop(s, stop, arg);
    conc__coro_sched_set_here(outer);
    if (conc__coro_exit_key_ok)
        (void)pthread_setspecific(conc__coro_exit_key, outer);
    conc_store(&s->running, 0, CONC_RELAXED);
    if (s->altstack)
        conc__coro_sched_altstack_remove_slow(s);
    conc_errno_restore(saved);
    return e;
}

CONC_NODISCARD static inline int conc_sched_run(conc_sched_t *s) {
    if (!s)
        return EINVAL;
    return conc__coro_sched_run_until(s, conc__coro_sched_stop_all_done, NULL);
}

static inline int conc__coro_cancel_on(conc_sched_t *s, conc_coro_t *c);
static inline void conc__coro_sched_free(conc_sched_t *s);

/* destroy: every pending watch's coroutine starts now, cancelled (s->destroying). One that
 * cannot (no memory) is dropped: its argument is the program's to free. So are all of them in
 * a forked child destroying its copy of a parent's scheduler: the fds are shared with the
 * parent, and a handler run here (its first read or accept is tried before any wait) would
 * take the parent's data or connection. */
CONC_COLD void conc__coro_sched_spawn_watches_slow(conc_sched_t *s) {
    bool ours = getpid() == s->pid;
    for (size_t fd = 0; fd < s->fds_cap && s->fd_watches; fd++) {
        conc__coro_watch *wt = s->fds[fd].watch;
        if (wt && wt->events && (!ours || conc__coro_watch_fire(s, wt) != 0))
            conc__coro_watch_end(s, wt);
    }
}

static inline void conc_sched_destroy(conc_sched_t *s) {
    if (!s)
        return;
    if (conc_load(&s->running, CONC_RELAXED))
        CONC_ABORT("conc_sched_destroy: called while the scheduler runs");
    if (s->orphaned) {
        /* Its thread ended inside a run: nothing of it runs again, it is only freed. A pin
         * stands for a message another thread will post to s (a future's completion, a
         * mailbox send): freeing s before it comes would be a use after free there. Those
         * that came, or come within the bound the nested destroy below also waits, end their
         * pins here as the loop would have (a call message only marks a coroutine ready and
         * unpins: no coroutine runs). */
        conc_store(&s->owner, pthread_self(), CONC_RELAXED);
        conc__coro_sched_call_posted_slow(s);
        int64_t until = conc_deadline_in(CONC__CORO_DESTROY_PIN_WAIT_NS);
        while (s->pins && !conc_deadline_passed(until)) {
            sched_yield();
            conc__coro_sched_call_posted_slow(s);
        }
        if (s->pins)
            CONC_ABORT("conc_sched_destroy: its thread ended inside its run while a future or "
                       "a mailbox still had to post to it");
        conc__coro_sched_free(s);
        return;
    }
    if (!conc__coro_sched_adopt(s)) {
        /* Ran on another thread: destroy may finish it here only if no coroutine that has
         * started is left (it would go on on a thread it never ran on). Messages still in the
         * inbox never started anywhere: they run here, cancelled, as on the owner. */
        if (s->live != 0)
            CONC_ABORT("conc_sched_destroy: coroutines left, and the scheduler runs on another "
                       "thread");
        conc_store(&s->owner, pthread_self(), CONC_RELAXED);
    }
    conc_sched_t *outer = conc__coro_sched_here();
    bool nested = outer && outer->current; /* inside a coroutine (of another scheduler) */
    s->destroying = 1;
    /* Whatever other threads handed over still runs (cancelled), so it can free its argument;
     * so does every pending watch's coroutine. */
    conc__coro_sched_drain_inbox(s);
    conc__coro_sched_spawn_watches_slow(s);
    if (nested && !s->live && s->pins) {
        /* No coroutine left: a pin now stands for a message another thread is about to post
         * (a mailbox sender between taking the wake and posting it), so wait for it here,
         * where no loop may run. Bounded, so a pin never undone still ends in the abort. */
        int64_t until = conc_deadline_in(CONC__CORO_DESTROY_PIN_WAIT_NS);
        while (s->pins && !conc_deadline_passed(until)) {
            sched_yield();
            conc__coro_sched_drain_inbox(s);
        }
    }
    if (s->live && nested)
        CONC_ABORT("conc_sched_destroy: called inside a coroutine while the scheduler has "
                   "coroutines or fd watches left (its loop cannot run nested in another's)");
    if (s->pins && nested)
        CONC_ABORT("conc_sched_destroy: called inside a coroutine while a message another "
                   "thread was to post never came (a conc_sched_pin not undone?)");
    for (conc_coro_t *c = s->all; c; c = c->all_next)
        if (c->state != CONC__CORO_DONE)
            conc__coro_cancel_on(s, c);
    if (s->live || s->pins) {
        /* conc_sched_hold's holds no longer matter: the scheduler is going away. A pin
         * does: a callback elsewhere (a future's, a mailbox sender's) will post to s and
         * its message must find s alive, so the loop runs until every pin is gone
         * (conc__coro_sched_kept). */
        int e = conc__coro_sched_run_until(s, conc__coro_sched_stop_all_done, NULL);
        if (e)
            CONC_ABORT("conc_sched_destroy: coroutines still blocked after being cancelled");
    }
    conc__coro_sched_free(s);
}

/* Frees s and all it holds, once nothing of it runs (destroy). */
static inline void conc__coro_sched_free(conc_sched_t *s) {
    /* Out of the registry before its coroutines' memory goes: a lookup that found s holds the
     * mutex while it reads them. Not found: a copy of a parent's scheduler in a forked child. */
    pthread_mutex_lock(&conc__coro_registry_lock);
    for (conc_sched_t **at = &conc__coro_registry; *at; at = &(*at)->registry_next)
        if (*at == s) {
            *at = s->registry_next;
            break;
        }
    pthread_mutex_unlock(&conc__coro_registry_lock);
#if defined(CONC_ASAN)
    conc__coro_asan_retire_slots_slow(s);
#endif
    for (conc__coro_arena *a = s->arenas, *an; a; a = an) {
        an = a->next;
        for (size_t i = 0; i < a->carved; i++) {
            conc_coro_t *co = conc__coro_of_slot(a->base + i * a->slot_size, a->slot_size);
            CONC_UNUSED(co);
#if defined(CONC_TSAN)
            __tsan_destroy_fiber(co->tsan_fiber);
#endif
#if defined(CONC__CORO_VALGRIND)
            VALGRIND_STACK_DEREGISTER(co->valgrind_id);
#endif
        }
#if defined(CONC_ASAN)
        /* Frames left on the stacks (each slot's trampoline) keep their redzones poisoned in
         * ASan's shadow, which munmap does not reset: the next mmap of this range would
         * inherit them. Only carved slots ran: the arena's other slots (it reserves many)
         * have a clean shadow, and writing it (1/8 of their size) cost a destroy seconds
         * with large stacks. */
        conc__coro_asan_unpoison(a->base, a->carved * a->slot_size);
#endif
        int saved = conc_errno_save();
        munmap(a->base, a->len);
        conc_errno_restore(saved);
        free(a);
    }
    for (conc__coro_class *k = s->classes, *kn; k; k = kn) {
        kn = k->next;
        free(k);
    }
    for (conc__coro_msg *m = s->inbox_head, *mn; m; m = mn) {
        mn = m->next;
        free(m);
    }
    /* Wait out a conc_sched_spawn or unhold still writing the eventfd (see the inbox): after
     * the mutex every claim is visible [coro.I2]; acquire pairs with the kick's release. */
    pthread_mutex_lock(&s->inbox_lock);
    pthread_mutex_unlock(&s->inbox_lock);
    while (conc_load(&s->kicking, CONC_ACQUIRE))
        sched_yield(); /* a write syscall in flight: a few microseconds */
    close(s->evfd);
    close(s->epfd);
    pthread_mutex_destroy(&s->inbox_lock);
    for (size_t fd = 0; fd < s->fds_cap; fd++)
        free(s->fds[fd].watch);
    free(s->fds);
    free(s->heap);
    free(s->ring);
    free(s);
}

/* A cross-thread spawn's message, allocated by the sending thread. */
static inline conc__coro_msg *conc__coro_msg_new(conc_coro_fn fn, void *arg, const char *file,
                                                 int line) {
    conc__coro_msg *m = (conc__coro_msg *)conc_malloc_keep_errno(sizeof *m);
    if (m) {
        m->next = NULL;
        m->fn = fn;
        m->arg = arg;
        m->file = file;
        m->line = line;
        m->call = 0;
    }
    return m;
}

/* Append m to s's inbox from any thread ([coro.I1], [coro.I2]) and wake the loop if it sleeps.
 * Once the scheduler can drain m, run may return and destroy free s: after the unlock we touch
 * only the eventfd and kicking, which destroy waits out [coro.I8]. */
static inline void conc__coro_inbox_post(conc_sched_t *s, conc__coro_msg *m) {
    m->next = NULL;
    pthread_mutex_lock(&s->inbox_lock);
    if (s->inbox_tail) /* [coro.I1] */
        s->inbox_tail->next = m;
    else
        s->inbox_head = m;
    s->inbox_tail = m;
    conc_store(&s->inbox_pending, 1u, CONC_RELAXED); /* the mutex orders it; a hint to run */
    bool kick = conc__coro_sched_claim_kick(s);
    pthread_mutex_unlock(&s->inbox_lock);
    if (kick)
        conc__coro_sched_kick(s);
}

/* From any thread: spawn a detached coroutine on s (asyncio's call_soon_threadsafe). */
CONC_NODISCARD static inline int conc__coro_sched_spawn_at(conc_sched_t *s, conc_coro_fn fn,
                                                           void *arg, const char *file, int line) {
    if (!s || !fn)
        return EINVAL;
    /* Directly only from inside s's own run on this thread (a coroutine of s, or its loop):
     * anywhere else, even on the thread that created s, another thread may be taking s over
     * or running it right now, so the inbox it is (a run drains it first). */
    if (conc__coro_sched_here() == s)
        return conc__coro_spawn_on(s, fn, arg, NULL, NULL, file, line);
    conc__coro_msg *m = conc__coro_msg_new(fn, arg, file, line);
    if (!m)
        return ENOMEM;
    conc__coro_inbox_post(s, m);
    return 0;
}

static inline void conc_sched_hold(conc_sched_t *s) {
    if (CONC_UNLIKELY(!s))
        CONC_ABORT("conc_sched_hold: NULL scheduler");
    /* Relaxed: a hold publishes nothing; the work it announces comes through the inbox. */
    if (CONC_UNLIKELY(conc_fetch_add(&s->holds, 1u, CONC_RELAXED) == UINT32_MAX))
        CONC_ABORT("conc_sched_hold: 4,294,967,295 holds already (an unhold missing?)");
}

static inline void conc_sched_unhold(conc_sched_t *s) {
    /* [coro.I4] release: a spawn made before the unhold is seen by a loop that reads
     * holds == 0 with acquire and then looks at the inbox. Then kick a loop asleep in
     * epoll_wait, so it re-checks whether it is done. Under the inbox mutex, which orders the
     * decrement against [coro.I6]: a loop announcing its sleep sees the new count. The
     * scheduler may end and be destroyed the moment holds reaches 0: destroy waits out our
     * kick [coro.I8]. */
    if (CONC_UNLIKELY(!s))
        CONC_ABORT("conc_sched_unhold: NULL scheduler");
    pthread_mutex_lock(&s->inbox_lock);
    uint32_t old = conc_fetch_sub(&s->holds, 1u, CONC_RELEASE);
    bool kick = old == 1 && conc__coro_sched_claim_kick(s);
    pthread_mutex_unlock(&s->inbox_lock);
    if (kick)
        conc__coro_sched_kick(s);
    if (old == 0)
        CONC_ABORT("conc_sched_unhold: more unholds than holds");
}

static inline void conc_sched_dump(conc_sched_t *s, FILE *out) {
    if (!s || !out)
        return;
    fprintf(out,
            "conc scheduler %p: %zu live coroutines, %zu timers, %zu fd waits (%zu of them "
            "watches), %u holds\n",
            (void *)s, s->live, s->heap_len, s->fd_waiters, s->fd_watches,
            conc_load(&s->holds, CONC_RELAXED));
    for (conc_coro_t *c = s->all; c; c = c->all_next)
        conc__coro_sched_line_slow(out, "  ", c);
    fflush(out);
}

/* ---------------------------------------------------------------------------------------------
 * Coroutines
 * ------------------------------------------------------------------------------------------- */
/* The scheduler a spawn or a watch names: *s, or the caller's own when *s is NULL (EINVAL
 * outside a coroutine), adopted by this thread before its first run (else EPERM). */
static inline int conc__coro_sched_mine(conc_sched_t **s) {
    if (!*s) {
        *s = conc__coro_sched_here();
        if (!*s || !(*s)->current)
            return EINVAL; /* s NULL means "mine", and this is no coroutine */
    }
    return conc__coro_sched_adopt(*s) ? 0 : EPERM;
}

CONC_NODISCARD static inline int conc__coro_spawn_at(conc_sched_t *s, conc_coro_fn fn, void *arg,
                                                     const conc_coro_opts_t *o, conc_coro_t **c,
                                                     const char *file, int line) {
    if (c)
        *c = NULL;
    /* Bad input is refused before s is adopted: a failed spawn takes no scheduler over. */
    if (!fn || (o && o->stack_size &&
                (o->stack_size < CONC_CORO_STACK_MIN || o->stack_size > CONC_CORO_STACK_MAX)))
        return EINVAL;
    int e = conc__coro_sched_mine(&s);
    return e ? e : conc__coro_spawn_on(s, fn, arg, o, c, file, line);
}

/* The functions, and macros of the same names that add the spawn site for the reports
 * ((conc_coro_spawn)(...) calls the function without it). */
CONC_NODISCARD static inline int conc_coro_spawn(conc_sched_t *s, conc_coro_fn fn, void *arg,
                                                 const conc_coro_opts_t *o, conc_coro_t **c) {
    return conc__coro_spawn_at(s, fn, arg, o, c, NULL, 0);
}
CONC_NODISCARD static inline int conc_sched_spawn(conc_sched_t *s, conc_coro_fn fn, void *arg) {
    return conc__coro_sched_spawn_at(s, fn, arg, NULL, 0);
}
#define conc_coro_spawn(...) conc__coro_spawn_at(__VA_ARGS__, __FILE__, __LINE__)
#define conc_sched_spawn(...) conc__coro_sched_spawn_at(__VA_ARGS__, __FILE__, __LINE__)

static inline conc_coro_t *conc_coro_self(void) {
    conc_sched_t *s = conc__coro_sched_here();
    return s ? s->current : NULL;
}

static inline const char *conc_coro_name(const conc_coro_t *c) {
    return c ? c->name : "";
}

static inline uint64_t conc_coro_id(const conc_coro_t *c) {
    return c ? c->id : 0;
}

/* The running coroutine and its scheduler, or EPERM outside a coroutine. */
CONC_INLINE int conc__coro_me(conc_sched_t **s, conc_coro_t **co) {
    *s = conc__coro_sched_here();
    *co = *s ? (*s)->current : NULL;
    return *co ? 0 : EPERM;
}

/* The running coroutine, when it runs on owner: EPERM outside a coroutine, EINVAL on another
 * scheduler (an object of owner's, used from elsewhere). */
CONC_INLINE int conc__coro_me_on(const conc_sched_t *owner, conc_coro_t **co) {
    conc_sched_t *s;
    if (conc__coro_me(&s, co) != 0)
        return EPERM;
    return s == owner ? 0 : EINVAL;
}

/* Not CONC_NODISCARD: a bare yield in a loop is the common use (gcc's warn_unused_result cannot
 * be silenced with a cast); a cancelled coroutine still hears of it at its next real wait. */
static inline int conc_coro_yield(void) {
    conc_sched_t *s;
    conc_coro_t *co;
    if (CONC_UNLIKELY(conc__coro_me(&s, &co) != 0))
        return EPERM;
    /* The others run even if co is cancelled: a bare yield loop waiting for another
     * coroutine (the common use) must not spin without ever letting it run. */
    conc__coro_sched_ready(s, co, 0);
    conc__coro_sched_switch_away(s, co);
    /* Cancelled before or while it waited its turn: ECANCELED (asyncio raises
     * CancelledError at the sleep(0) it resumes from). */
    return co->cancelled ? ECANCELED : 0;
}

CONC_COLD void conc__coro_describe_join_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_coro_t *t = (const conc_coro_t *)w->object;
    snprintf(buf, size, "join of coro \"%s\" (#%llu)", t->name, (unsigned long long)t->id);
}

CONC_NODISCARD static inline int conc_coro_join(conc_coro_t *c, int64_t deadline, int *status) {
    conc_coro_t *co;
    int e = c ? conc__coro_me_on(c->sched, &co) : EINVAL;
    if (e == EPERM && conc__coro_on_owner(c->sched) && c->state == CONC__CORO_DONE)
        e = 0; /* outside any coroutine, after the run: nothing to wait for (asyncio's
                * task.result() once the loop ended) */
    if (e)
        return e;
    if (c->state == CONC__CORO_FREE)
        return EINVAL;
    if (CONC_UNLIKELY(c == co))
        return EDEADLK; /* it would wait for itself forever (asyncio: "cannot await itself") */
    while (c->state != CONC__CORO_DONE) {
        const conc_coro_wait_t w = conc_coro_wait_make("join", c, 0, conc__coro_describe_join_slow);
        e = conc__coro_waitq_wait_on(&c->joiners, &w, deadline, 0);
        if (e)
            return e;
    }
    if (status)
        *status = c->status;
    return 0;
}

static inline int conc__coro_cancel_on(conc_sched_t *s, conc_coro_t *c) {
    if (c->state == CONC__CORO_DONE || c->state == CONC__CORO_FREE)
        return 0;
    c->cancelled = 1;
    if (c->state == CONC__CORO_PARKED && !c->immune)
        conc__coro_wake(s, c, ECANCELED);
    return 0;
}

static inline int conc_coro_cancel(conc_coro_t *c) {
    if (!c)
        return EINVAL;
    if (!conc__coro_on_owner(c->sched))
        return EPERM;
    return conc__coro_cancel_on(c->sched, c);
}

static inline void conc_coro_release(conc_coro_t *c) {
    if (!c)
        return;
    if (!c->handle)
        CONC_ABORT("conc_coro_release: a handle released twice (or a detached coroutine)");
    if (!conc__coro_on_owner(c->sched))
        CONC_ABORT("conc_coro_release: called from another thread than the scheduler's");
    c->handle = 0;
    if (c->state == CONC__CORO_DONE)
        conc__coro_slot_put(c->sched, c);
}

CONC_NODISCARD static inline int conc_coro_sleep_until(int64_t deadline) {
    conc_sched_t *s;
    conc_coro_t *co;
    if (conc__coro_me(&s, &co) != 0)
        return EPERM;
    const conc_coro_wait_t w =
        conc_coro_wait_make(deadline == CONC_FOREVER ? "sleep forever" : "sleep", co, 0, NULL);
    for (;;) {
        if (deadline != CONC_FOREVER && deadline <= conc_now())
            return conc_coro_yield(); /* once, as asyncio.sleep(0): ECANCELED if cancelled */
        int e = conc__coro_park(s, co, &w, deadline); /* cancelled: ECANCELED at once */
        if (e == ETIMEDOUT)
            return 0;
        if (e)
            return e; /* ECANCELED (or ENOMEM for the timer) */
    }
}

/* ---------------------------------------------------------------------------------------------
 * File descriptors
 * ------------------------------------------------------------------------------------------- */
CONC_COLD int conc__coro_sched_fds_grow_slow(conc_sched_t *s, int fd) {
    /* Only for an open fd: a stray number (garbage, a closed fd) is EBADF, not a table as long
     * as the number (40 bytes each: 1.25 GiB, zeroed, for fd 2^25; ENOMEM near INT_MAX). */
    int saved = conc_errno_save();
    bool is_open = fcntl(fd, F_GETFD) != -1;
    conc_errno_restore(saved);
    if (!is_open)
        return EBADF;
    size_t cap = s->fds_cap ? s->fds_cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    conc__coro_fdw *f = (conc__coro_fdw *)conc_realloc_keep_errno(s->fds, cap * sizeof *f);
    if (!f)
        return ENOMEM;
    memset(f + s->fds_cap, 0, (cap - s->fds_cap) * sizeof *f);
    s->fds = f;
    s->fds_cap = cap;
    return 0;
}

/*
 * fd waits: one epoll registration per fd number, kept between waits, armed one-shot.
 *
 *   waiter (conc_coro_wait_fd)                   the loop (conc__coro_sched_poll)
 *   ------------------------------------------   ------------------------------------------
 *   reader/writer = me                 [coro.F1]
 *   arm: MOD(fd, want|ONESHOT, gen)    [coro.F2]
 *     ENOENT (closed, number reused):  gen++,    epoll_wait: event (data: fd, gen)  [coro.F3]
 *     ADD; EEXIST: MOD; not registered           gen != fds[fd].gen: stale, dropped
 *     yet: gen++, ADD first                      (the old file's one-shot cannot fire again)
 *   park                                         armed = 0 (the one-shot fired); wake the
 *                                                waiter whose direction it is; arm again for
 *                                                one still parked (one MOD)
 *   reader/writer = NULL (no DEL)      [coro.F4]
 *
 * One epoll_ctl per wait instead of two (ADD and DEL): the registration stays, disarmed by its
 * own event, and the next wait's MOD re-arms it. MOD re-evaluates readiness, so a wait on an
 * fd that is ready already returns at once, as with a fresh ADD. Why a generation: epoll keys a
 * registration by (open file, fd number) and drops it only when the last dup of the file is
 * closed. An fd closed between waits while a dup stays open leaves its registration behind,
 * and the number may name another file by the next wait: that wait's MOD finds no
 * registration for the new file (ENOENT), ADDs one under a new generation, and the old file's
 * event, if its one-shot is still armed, carries the old generation and wakes nobody. A wait
 * that ends by deadline or cancel leaves its registration armed: the event comes later for
 * nobody and disarms it (one spurious epoll_wait return at most). The arm is skipped only
 * when another coroutine is inside a wait on the same fd (so it cannot have been closed, see
 * CAVEATS) and the armed mask already covers the new direction.
 */
static inline int conc__coro_sched_fd_ctl(conc_sched_t *s, int op, int fd, uint32_t want) {
    conc__coro_fdw *w = &s->fds[fd];
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want | (uint32_t)EPOLLONESHOT;
    ev.data.u64 = (uint64_t)(unsigned)fd | ((uint64_t)w->gen << CONC__CORO_FD_GEN_SHIFT);
    CONC_CORO_EPOLL_CTL_HOOK(op);
    return epoll_ctl(s->epfd, op, fd, &ev) == 0 ? 0 : errno;
}

/* Arms fd's one-shot registration for `want` ([coro.F2]): 0, or epoll_ctl's error (EPERM: a
 * regular file; EBADF: not open). errno is left alone. */
static inline int conc__coro_sched_fd_arm(conc_sched_t *s, int fd, uint32_t want) {
    conc__coro_fdw *w = &s->fds[fd];
    int saved = conc_errno_save();
    int e;
    if (w->registered) {
        e = conc__coro_sched_fd_ctl(s, EPOLL_CTL_MOD, fd, want);
        if (e == ENOENT) { /* the file we registered was closed; the number names another */
            w->gen++;
            e = conc__coro_sched_fd_ctl(s, EPOLL_CTL_ADD, fd, want);
        }
    } else {
        w->gen++;
        e = conc__coro_sched_fd_ctl(s, EPOLL_CTL_ADD, fd, want);
        if (e == EEXIST) /* registered by this set before we knew: adopt it */
            e = conc__coro_sched_fd_ctl(s, EPOLL_CTL_MOD, fd, want);
    }
    conc_errno_restore(saved);
    w->registered = e == 0;
    w->armed = e == 0 ? want : 0;
    return e;
}

/* fd's registration for a wait or a watch in the directions `events`, the table grown to hold
 * it: EBADF, ENOMEM, or EBUSY when a parked waiter or the watch has one of them already.
 * *other: a wait or a watch on fd is in progress, so fd was not closed meanwhile (CAVEATS). */
static inline int conc__coro_fd_claim(conc_sched_t *s, int fd, int events, conc__coro_fdw **out,
                                      bool *other) {
    int e = (size_t)fd >= s->fds_cap ? conc__coro_sched_fds_grow_slow(s, fd) : 0;
    if (e)
        return e;
    conc__coro_fdw *w = &s->fds[fd];
    /* A waiter that a timer, a cancel or the fd already woke is out of its wait: it leaves
     * when it next runs (clearing its slot only if it is still its own), and meanwhile the fd
     * may have been closed and its number reused (the CAVEATS allow that once the waiter is
     * woken). So its slot is free now, and only a parked waiter makes the fd busy, or proves
     * it still open. */
    if (w->reader && w->reader->state != CONC__CORO_PARKED)
        w->reader = NULL;
    if (w->writer && w->writer->state != CONC__CORO_PARKED)
        w->writer = NULL;
    int taken = (w->reader ? CONC_FD_READ : 0) | (w->writer ? CONC_FD_WRITE : 0) |
                conc__coro_fdw_watching(w);
    if (events & taken)
        return EBUSY;
    *other = taken != 0;
    *out = w;
    return 0;
}

/* [coro.F2] for what fd's registration now wants, unless a wait or watch in progress (other)
 * has it armed for that already. */
static inline int conc__coro_fd_arm_wanted(conc_sched_t *s, int fd, bool other) {
    uint32_t want = conc__coro_fdw_want(&s->fds[fd]);
    return (other && (s->fds[fd].armed & want) == want) ? 0 : conc__coro_sched_fd_arm(s, fd, want);
}

/* After a failed arm was rolled back: the directions of the other waiters and of the watch
 * must stay armed. */
static inline void conc__coro_fd_arm_rest(conc_sched_t *s, int fd) {
    uint32_t left = conc__coro_fdw_want(&s->fds[fd]);
    if (left)
        (void)conc__coro_sched_fd_arm(s, fd, left);
}

CONC_COLD void conc__coro_describe_fd_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    snprintf(buf, size, "fd %ld", w->detail);
}

CONC_NODISCARD static inline int conc_coro_wait_fd(int fd, int events, int64_t deadline) {
    conc_sched_t *s;
    conc_coro_t *co;
    if (fd < 0 || !events || (events & ~(CONC_FD_READ | CONC_FD_WRITE)))
        return EINVAL;
    if (conc__coro_me(&s, &co) != 0)
        return EPERM;
    if (co->cancelled)
        return ECANCELED;
    if (deadline != CONC_FOREVER && deadline <= conc_now()) {
        /* A past deadline looks once, without parking. */
        struct pollfd p;
        p.fd = fd;
        p.events = (short)(((events & CONC_FD_READ) ? POLLIN : 0) |
                           ((events & CONC_FD_WRITE) ? POLLOUT : 0));
        p.revents = 0;
        int saved = conc_errno_save();
        int r = poll(&p, 1, 0);
        conc_errno_restore(saved);
        return r > 0 ? ((p.revents & POLLNVAL) ? EBADF : 0) : ETIMEDOUT;
    }
    conc__coro_fdw *w;
    bool other;
    int e = conc__coro_fd_claim(s, fd, events, &w, &other);
    if (e)
        return e; /* EBADF, ENOMEM, EBUSY */
    /* [coro.F1] */
    if (events & CONC_FD_READ)
        w->reader = co;
    if (events & CONC_FD_WRITE)
        w->writer = co;
    e = conc__coro_fd_arm_wanted(s, fd, other);
    if (e) {
        if (events & CONC_FD_READ)
            w->reader = NULL;
        if (events & CONC_FD_WRITE)
            w->writer = NULL;
        conc__coro_fd_arm_rest(s, fd);
        return e == EPERM ? 0 : e; /* EPERM: a regular file, always ready (as poll says) */
    }
    s->fd_waiters++;
    conc_coro_wait_t wd;
    memset(&wd, 0, sizeof wd);
    wd.what =
        (events == CONC_FD_READ) ? "fd readable" : (events == CONC_FD_WRITE ? "fd writable" : "fd");
    wd.object = co;
    wd.detail = fd;
    wd.describe = conc__coro_describe_fd_slow;
    e = conc__coro_park(s, co, &wd, deadline);
    s->fd_waiters--;
    w = &s->fds[fd]; /* [coro.F4] the registration stays (armed or fired) for the next wait */
    if ((events & CONC_FD_READ) && w->reader == co)
        w->reader = NULL;
    if ((events & CONC_FD_WRITE) && w->writer == co)
        w->writer = NULL;
    return e;
}

/*
 * fd watches: a coroutine spawned once an fd is ready, so an idle connection holds no stack.
 *
 *   conc_coro_watch_fd (owner thread)             the loop (conc__coro_sched_poll)
 *   ------------------------------------------   ------------------------------------------
 *   claim fd: EBUSY if a parked waiter or the    epoll_wait: event (data: fd, gen)  [coro.F3]
 *   watch has one of its directions              the watch's direction (or a hang-up or an
 *   watch = {fn, arg, opts}, events              error): spawn fn(arg), detached; the watch
 *   arm: MOD(fd, wanted|ONESHOT, gen) [coro.F2]  ends (fd_watches--); another direction's
 *   fd_watches++ (run keeps going)               event, or no memory to spawn: armed again
 *
 * The same registration as a wait's, armed for the union of the parked waiters' and the
 * watch's directions, so a coroutine may write to a connection whose reads a watch waits for.
 * One-shot, as the registration is: the spawned coroutine serves the fd and watches it again
 * when it is done (it may also read until EAGAIN first), so two coroutines never serve one fd
 * at once by accident. conc_coro_unwatch_fd ends a watch; its registration stays armed, and
 * its event, if it comes, finds nobody (as a wait ended by its deadline). A pending watch
 * keeps conc_sched_run going and counts as an fd wait for EDEADLK; conc_sched_destroy spawns
 * what is left, cancelled, so each can free its argument.
 */
CONC_NODISCARD static inline int conc__coro_watch_fd_at(conc_sched_t *s, int fd, int events,
                                                        conc_coro_fn fn, void *arg,
                                                        const conc_coro_opts_t *o, const char *file,
                                                        int line) {
    if (fd < 0 || !fn || !events || (events & ~(CONC_FD_READ | CONC_FD_WRITE)) ||
        (o && o->stack_size &&
         (o->stack_size < CONC_CORO_STACK_MIN || o->stack_size > CONC_CORO_STACK_MAX)))
        return EINVAL;
    int e = conc__coro_sched_mine(&s);
    if (e)
        return e;
    if (s->destroying)
        return ECANCELED; /* it could never fire: destroy has spawned the watches left */
    conc__coro_fdw *w;
    bool other;
    e = conc__coro_fd_claim(s, fd, events, &w, &other);
    if (e)
        return e; /* EBADF, ENOMEM, EBUSY */
    if (conc__coro_fdw_watching(w))
        return EBUSY; /* one watch per fd, for either direction or both */
    if (!w->watch) {
        w->watch = (conc__coro_watch *)conc_malloc_keep_errno(sizeof *w->watch);
        if (!w->watch)
            return ENOMEM;
        w->watch->events = 0;
    }
    conc__coro_watch *wt = w->watch;
    wt->fn = fn;
    wt->arg = arg;
    wt->stack_size = o ? o->stack_size : 0;
    wt->spawn_file = file;
    wt->spawn_line = line;
    snprintf(wt->name, sizeof wt->name, "%s", (o && o->name) ? o->name : "");
    wt->events = events;
    s->fd_watches++;
    s->fd_waiters++;
    e = conc__coro_fd_arm_wanted(s, fd, other);
    if (e) {
        conc__coro_watch_end(s, wt);
        conc__coro_fd_arm_rest(s, fd);
        if (e != EPERM)
            return e;
        /* EPERM: a regular file, always ready (as poll says): the coroutine starts now. */
        return conc__coro_spawn_on(s, fn, arg, o, NULL, file, line);
    }
    return 0;
}

CONC_NODISCARD static inline int conc_coro_watch_fd(conc_sched_t *s, int fd, int events,
                                                    conc_coro_fn fn, void *arg,
                                                    const conc_coro_opts_t *o) {
    return conc__coro_watch_fd_at(s, fd, events, fn, arg, o, NULL, 0);
}
#define conc_coro_watch_fd(...) conc__coro_watch_fd_at(__VA_ARGS__, __FILE__, __LINE__)

/* Ends fd's pending watch before it fires: 0, or ENOENT (none: it fired, or never was). */
CONC_NODISCARD static inline int conc_coro_unwatch_fd(conc_sched_t *s, int fd) {
    if (fd < 0)
        return EINVAL;
    int e = conc__coro_sched_mine(&s);
    if (e)
        return e;
    if ((size_t)fd >= s->fds_cap || !conc__coro_fdw_watching(&s->fds[fd]))
        return ENOENT;
    conc__coro_watch_end(s, s->fds[fd].watch);
    return 0;
}

/* After a non-blocking call on fd failed with e: 0 to try again (EINTR, or fd became ready for
 * events), or the error to return (e itself, or the wait's ETIMEDOUT / ECANCELED / EPERM). */
static inline int conc__coro_io_retry(int fd, int e, int events, int64_t deadline) {
    if (e == EINTR)
        return 0;
    if (!conc__base_would_block(e))
        return e;
    return conc_coro_wait_fd(fd, events, deadline);
}

#define CONC__CORO_FD_ACCEPT 4 /* conc__coro_fd_blocks: for accept (CONC_FD_READ | WRITE: 3) */

/* Whether fd is in blocking mode (no O_NONBLOCK) and the call `use` names (CONC_FD_READ,
 * CONC_FD_WRITE or CONC__CORO_FD_ACCEPT) would block the thread on it, so the caller waits for
 * readiness first. A regular file or a block device says no: poll calls it always ready, and
 * it is read and written whole, as read/write(2) do (an O_APPEND file's write stays one
 * write). So does an fd the call cannot use, which would never be ready for it: a read of an
 * fd opened write-only, a write of one opened read-only (EBADF), an accept of anything but a
 * listening socket (ENOTSOCK, EINVAL): the call runs at once and reports its own error. An
 * fstat, fcntl or getsockopt that fails says no too, for the same reason. */
static inline bool conc__coro_fd_blocks(int fd, int use) {
    int saved = conc_errno_save();
    int fl = fcntl(fd, F_GETFL);
    int mode = fl & O_ACCMODE;
    struct stat st; /* asked only of a blocking fd: a non-blocking pipe's read pays no fstat */
    bool blocks = fl >= 0 && !(fl & O_NONBLOCK) && !(use == CONC_FD_READ && mode == O_WRONLY) &&
                  !(use == CONC_FD_WRITE && mode == O_RDONLY) && fstat(fd, &st) == 0 &&
                  !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode);
    if (blocks && use == CONC__CORO_FD_ACCEPT) {
        int listening = 0;
        socklen_t len = sizeof listening;
        blocks = S_ISSOCK(st.st_mode) &&
                 getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening;
    }
    conc_errno_restore(saved);
    return blocks;
}

#ifdef PIPE_BUF
#define CONC__CORO_BLOCKING_CHUNK ((size_t)PIPE_BUF) /* fits a pipe that polls writable */
#else
#define CONC__CORO_BLOCKING_CHUNK ((size_t)4096)
#endif

/* A socket is read with recv(MSG_DONTWAIT), so a blocking one never blocks the thread; any
 * other fd with read(2), after waiting for readiness when it is in blocking mode. */
CONC_NODISCARD static inline int conc_coro_read(int fd, void *buf, size_t n, int64_t deadline,
                                                size_t *got) {
    if (got)
        *got = 0;
    bool sock = true, wait_first = false;
    for (;;) {
        int e;
        if (wait_first && (e = conc_coro_wait_fd(fd, CONC_FD_READ, deadline)) != 0)
            return e;
        int saved = conc_errno_save();
        ssize_t r = sock ? recv(fd, buf, n, MSG_DONTWAIT) : read(fd, buf, n);
        e = r < 0 ? errno : 0;
        conc_errno_restore(saved);
        if (r >= 0) {
            if (got)
                *got = (size_t)r;
            return 0;
        }
        if (e == ENOTSOCK && sock) { /* a pipe, a tty, a file: read(2) */
            sock = false;
            wait_first = conc__coro_fd_blocks(fd, CONC_FD_READ);
            continue;
        }
        e = conc__coro_io_retry(fd, e, CONC_FD_READ, deadline);
        if (e)
            return e;
    }
}

CONC_NODISCARD static inline int conc_coro_write(int fd, const void *buf, size_t n,
                                                 int64_t deadline, size_t *put) {
    size_t done = 0;
    int e = 0;
    /* send's MSG_NOSIGNAL: a socket whose peer is gone is EPIPE, no SIGPIPE; MSG_DONTWAIT: a
     * blocking socket never blocks the thread. Any other fd in blocking mode is written after
     * it polls writable, a pipe's atomic chunk at a time, which then fits without blocking. */
    bool sock = true, wait_first = false;
    while (done < n) {
        if (wait_first && (e = conc_coro_wait_fd(fd, CONC_FD_WRITE, deadline)) != 0)
            break;
        size_t chunk = n - done;
        if (wait_first && chunk > CONC__CORO_BLOCKING_CHUNK)
            chunk = CONC__CORO_BLOCKING_CHUNK;
        int saved = conc_errno_save();
        ssize_t r = sock ? send(fd, (const char *)buf + done, chunk, MSG_NOSIGNAL | MSG_DONTWAIT)
                         : write(fd, (const char *)buf + done, chunk);
        e = r < 0 ? errno : 0;
        conc_errno_restore(saved);
        if (r >= 0) {
            done += (size_t)r;
            continue;
        }
        if (e == ENOTSOCK && sock) { /* a pipe, a tty, a file: write(2) (CAVEATS: SIGPIPE) */
            sock = false;
            wait_first = conc__coro_fd_blocks(fd, CONC_FD_WRITE);
            continue;
        }
        e = conc__coro_io_retry(fd, e, CONC_FD_WRITE, deadline);
        if (e)
            break;
    }
    if (put)
        *put = done;
    return done == n ? 0 : e;
}

/* accept4 on a listening fd, waiting while no connection is pending (first, when the fd is in
 * blocking mode, so the thread does not block unless another thread or process takes the
 * connection in between: CAVEATS). The new fd is non-blocking and close-on-exec.
 * ECONNABORTED (a client that left before we looked) is retried: the caller asked for a
 * connection. */
CONC_NODISCARD static inline int conc_coro_accept(int fd, struct sockaddr *addr, socklen_t *len,
                                                  int64_t deadline, int *newfd) {
    if (!newfd)
        return EINVAL;
    *newfd = -1;
    bool wait_first = conc__coro_fd_blocks(fd, CONC__CORO_FD_ACCEPT);
    for (;;) {
        int e0;
        if (wait_first && (e0 = conc_coro_wait_fd(fd, CONC_FD_READ, deadline)) != 0)
            return e0;
        int saved = conc_errno_save();
        /* accept4 is a _GNU_SOURCE declaration; the syscall is there under strict C11 too. */
        int r = (int)syscall(SYS_accept4, fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int e = r < 0 ? errno : 0;
        conc_errno_restore(saved);
        if (r >= 0) {
            *newfd = r;
            return 0;
        }
        if (e == ECONNABORTED)
            continue;
        e = conc__coro_io_retry(fd, e, CONC_FD_READ, deadline);
        if (e)
            return e;
    }
}

/* connect on a non-blocking socket: EINPROGRESS (or EINTR, after which the kernel goes on
 * connecting) waits for writability, then SO_ERROR says how it ended. EAGAIN (a Unix socket
 * whose listener's backlog is full) started nothing, and no readiness says when room
 * appears: the connect is tried again, after pauses that double up to a limit, until the
 * deadline (a blocking connect waits the same way). On ETIMEDOUT or ECANCELED an attempt
 * may still be in flight: close the fd. */
CONC_NODISCARD static inline int conc_coro_connect(int fd, const struct sockaddr *addr,
                                                   socklen_t len, int64_t deadline) {
    int64_t pause = CONC__CORO_CONNECT_RETRY_MIN;
    int r, e;
    for (;;) {
        int saved = conc_errno_save();
        r = connect(fd, addr, len);
        e = r < 0 ? errno : 0;
        conc_errno_restore(saved);
        if (r == 0)
            return 0;
        /* EAGAIN is a full backlog only for a Unix socket (for TCP, no local port: retrying
         * could go on for good), and addr says which. */
        if (e != EAGAIN || !addr || addr->sa_family != AF_UNIX)
            break;
        int64_t now = conc_now();
        if (deadline != CONC_FOREVER && deadline <= now)
            return ETIMEDOUT;
        int64_t until = deadline - now > pause ? now + pause : deadline;
        int w = conc_coro_sleep_until(until);
        if (w)
            return w;
        if (pause < CONC__CORO_CONNECT_RETRY_MAX)
            pause *= 2;
    }
    if (e != EINPROGRESS && e != EINTR)
        return e; /* EAGAIN too, from a socket that is not a Unix one */
    e = conc_coro_wait_fd(fd, CONC_FD_WRITE, deadline);
    if (e)
        return e;
    int err = 0;
    socklen_t n = sizeof err;
    int saved = conc_errno_save();
    r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n);
    e = r < 0 ? errno : err;
    conc_errno_restore(saved);
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Groups (asyncio.TaskGroup; libdill's bundles)
 * ------------------------------------------------------------------------------------------- */
CONC_NODISCARD static inline int conc_group_create(conc_sched_t *s, conc_group_t **out) {
    if (!out)
        return EINVAL;
    *out = NULL;
    if (!s) {
        s = conc__coro_sched_here();
        if (!s || !s->current)
            return EINVAL;
    }
    if (!conc__coro_on_owner(s))
        return EPERM;
    conc_group_t *g = (conc_group_t *)conc_calloc_keep_errno(1, sizeof *g);
    if (!g)
        return ENOMEM;
    g->sched = s;
    *out = g;
    return 0;
}

CONC_NODISCARD static inline int conc__coro_group_spawn_at(conc_group_t *g, conc_coro_fn fn,
                                                           void *arg, const conc_coro_opts_t *o,
                                                           const char *file, int line) {
    if (!g || !fn)
        return EINVAL;
    if (!conc__coro_on_owner(g->sched))
        return EPERM;
    if (g->status != 0)
        return ECANCELED; /* the group failed: its children are being cancelled */
    conc_coro_t *co;
    int e = conc__coro_spawn_on(g->sched, fn, arg, o, &co, file, line);
    if (e)
        return e;
    co->handle = 0; /* the group keeps track; nothing to release */
    co->group = g;
    CONC__CORO_LIST_PUSH(g->children, co, group_prev, group_next);
    g->live++;
    return 0;
}
CONC_NODISCARD static inline int conc_group_spawn(conc_group_t *g, conc_coro_fn fn, void *arg,
                                                  const conc_coro_opts_t *o) {
    return conc__coro_group_spawn_at(g, fn, arg, o, NULL, 0);
}
#define conc_group_spawn(...) conc__coro_group_spawn_at(__VA_ARGS__, __FILE__, __LINE__)

static inline void conc__coro_group_child_done(conc_group_t *g, conc_coro_t *co) {
    CONC__CORO_LIST_UNLINK(g->children, co, group_prev, group_next);
    co->group = NULL;
    g->live--;
    if (co->status != 0 && g->status == 0) {
        g->status = co->status; /* the first failure cancels the siblings */
        for (conc_coro_t *c = g->children; c; c = c->group_next)
            conc__coro_cancel_on(g->sched, c);
    }
    if (g->live == 0)
        conc__coro_wake_n(g->sched, &g->waiters, SIZE_MAX, 0);
}

CONC_COLD void conc__coro_group_describe_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_group_t *g = (const conc_group_t *)w->object;
    snprintf(buf, size, "group %p (%zu children left)", w->object, g->live);
}

static inline int conc__coro_group_wait(conc_group_t *g, int64_t deadline, uint8_t immune) {
    while (g->live) {
        const conc_coro_wait_t w =
            conc_coro_wait_make("group", g, 0, conc__coro_group_describe_slow);
        int e = conc__coro_waitq_wait_on(&g->waiters, &w, deadline, immune);
        if (e)
            return e;
    }
    return 0;
}

CONC_NODISCARD static inline int conc_group_wait(conc_group_t *g, int64_t deadline, int *status) {
    conc_coro_t *co;
    int e = g ? conc__coro_me_on(g->sched, &co) : EINVAL;
    if (e == EPERM && conc__coro_on_owner(g->sched) && g->live == 0) {
        if (status) /* outside any coroutine, every child finished: nothing to wait for */
            *status = g->status;
        return 0;
    }
    if (e)
        return e;
    if (CONC_UNLIKELY(co->group == g))
        return EDEADLK; /* a child waiting for its own group waits for itself */
    if (g->live && co->cancelled)
        return ECANCELED;
    g->waiting++; /* a woken waiter reads g when it runs: destroy waits for it */
    e = conc__coro_group_wait(g, deadline, 0);
    if (!e && status)
        *status = g->status;
    g->waiting--;
    return e;
}

static inline bool conc__coro_group_stop_empty(conc_sched_t *s, void *arg) {
    CONC_UNUSED(s);
    const conc_group_t *g = (const conc_group_t *)arg;
    return g->live == 0 && g->waiting == 0;
}

static inline void conc_group_destroy(conc_group_t *g) {
    if (!g)
        return;
    conc_sched_t *s = g->sched;
    if (!conc__coro_on_owner(s))
        CONC_ABORT("conc_group_destroy: called from another thread than the scheduler's");
    for (conc_coro_t *c = g->children; c; c = c->group_next)
        conc__coro_cancel_on(s, c);
    /* Also outlive the coroutines in conc_group_wait: the last child's exit woke them, and
     * each reads g when it runs, which may come after the loop saw the group empty. */
    if (g->live || g->waiting) {
        conc_coro_t *co = s->current;
        if (co) {
            if (co->group == g)
                CONC_ABORT("conc_group_destroy: called by a child of the group (it would wait "
                           "for itself)");
            /* immune: joining the cancelled children is not itself cancellable */
            int e = conc__coro_group_wait(g, CONC_FOREVER, 1);
            if (e)
                CONC_ABORT("conc_group_destroy: could not join the children");
            while (g->waiting) /* woken, not yet run: a yield runs them (cancelled or not) */
                (void)conc_coro_yield();
        } else if (conc__coro_sched_here() && conc__coro_sched_here()->current) {
            CONC_ABORT("conc_group_destroy: called inside a coroutine of another scheduler "
                       "while the group has children or waiters (their loop cannot run nested)");
        } else if (conc__coro_sched_run_until(s, conc__coro_group_stop_empty, g) != 0) {
            CONC_ABORT("conc_group_destroy: the cancelled children could not finish");
        }
    }
    free(g);
}

/* ---------------------------------------------------------------------------------------------
 * asyncio.run
 * ------------------------------------------------------------------------------------------- */
CONC_NODISCARD static inline int conc_run(conc_coro_fn fn, void *arg, int *status) {
    conc_sched_t *s;
    conc_coro_t *c;
    if (!fn)
        return EINVAL;
    conc_sched_t *outer = conc__coro_sched_here();
    if (outer && outer->current)
        return EPERM; /* inside a coroutine: its loop cannot run nested (conc_sched_run's rule) */
    int e = conc_sched_create(&s, NULL);
    if (e)
        return e;
    e = (conc_coro_spawn)(s, fn, arg, NULL, &c);
    if (e) {
        conc_sched_destroy(s);
        return e;
    }
    c->spawn_file = "conc_run";
    e = conc_sched_run(s);
    if (e == 0 && status)
        *status = c->status;
    conc_coro_release(c);
    conc_sched_destroy(s);
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Stack overflow reporter and high-water mark
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE size_t conc__coro_append(char *buf, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap)
        buf[at++] = *s++;
    return at;
}

static inline void conc__coro_segv(int sig, siginfo_t *si, void *uctx) {
    conc_sched_t *s = conc__coro_tls_sched;
    conc_coro_t *co = s ? s->current : NULL;
    char *a = (char *)si->si_addr;
    if (co && a < co->stack_lo && a >= co->stack_lo - s->page) {
        char msg[256], num[24];
        size_t n = 0, k = sizeof num;
        unsigned long long id = (unsigned long long)co->id;
        num[--k] = 0;
        do
            num[--k] = (char)('0' + id % 10);
        while ((id /= 10) != 0 && k > 0);
        n = conc__coro_append(msg, n, sizeof msg, "conc: stack overflow in coroutine \"");
        n = conc__coro_append(msg, n, sizeof msg, co->name);
        n = conc__coro_append(msg, n, sizeof msg, "\" (#");
        n = conc__coro_append(msg, n, sizeof msg, num + k);
        n = conc__coro_append(msg, n, sizeof msg,
                              "): it hit the guard page below its stack (give it a bigger "
                              "conc_coro_opts_t.stack_size)\n");
        ssize_t r = write(2, msg, n);
        (void)r;
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not ours: the handler that was there before gets it, and this one stays (a program's
     * own SIGSEGV handler may handle its faults and return: a write barrier, a JIT). */
    const struct sigaction *prev = &conc__coro_overflow_prev;
    if (prev->sa_flags & SA_SIGINFO) {
        prev->sa_sigaction(sig, si, uctx);
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
    } else {
        /* The default action: a fault happens again once we return, a SIGSEGV that was
         * sent (kill, raise) is sent again, and either ends the process. */
        sigaction(sig, prev, NULL);
        if (si->si_code <= 0)
            raise(sig);
    }
}

static inline int conc_coro_catch_overflow(void) {
    int saved = conc_errno_save(), e = 0;
    /* One thread installs (0 -> 2 -> 1; back to 0 if sigaction fails): two that both called
     * sigaction would leave the second's prev naming the reporter itself, so a fault not ours
     * would go round it, and the handler that was there before would never see it. */
    for (int st; (st = conc_load(&conc__coro_overflow_installed, CONC_ACQUIRE)) != 1;) {
        if (st == 2 ||
            !conc_cas(&conc__coro_overflow_installed, &st, 2, CONC_ACQUIRE, CONC_RELAXED)) {
            sched_yield(); /* another thread is installing it: wait for its answer */
            continue;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = conc__coro_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSEGV, &sa, &conc__coro_overflow_prev) != 0) {
            e = errno;
            conc_store(&conc__coro_overflow_installed, 0, CONC_RELEASE);
        } else {
            conc_store(&conc__coro_overflow_installed, 1, CONC_RELEASE);
        }
        break;
    }
    if (!e) {
        /* The calling thread's alternate stack, kept for the thread's life and freed at its
         * end (a thread-specific value: a pool's threads that come and go leak nothing). */
        stack_t cur;
        if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
            stack_t st;
            memset(&st, 0, sizeof st);
            st.ss_sp = conc_malloc_keep_errno(CONC__CORO_ALTSTACK_SIZE);
            st.ss_size = CONC__CORO_ALTSTACK_SIZE;
            if (!st.ss_sp) {
                e = ENOMEM;
            } else if (sigaltstack(&st, NULL) != 0) {
                e = errno;
                free(st.ss_sp);
            } else {
                conc__coro_altstack_keep(st.ss_sp);
            }
        }
    }
    conc_errno_restore(saved);
    return e;
}

/* Bytes of c's stack ever used (high-water mark, from the top of the stack down to the
 * deepest byte written), for a scheduler created with CONC_SCHED_STACK_USAGE. */
CONC_NODISCARD static inline int conc_coro_stack_usage(const conc_coro_t *c, size_t *bytes) {
    if (!c || !bytes)
        return EINVAL;
    if (!(c->sched->flags & CONC_SCHED_STACK_USAGE))
        return ENOTSUP;
    const unsigned char *p = (const unsigned char *)c->stack_lo + sizeof(uint64_t);
    const unsigned char *top = (const unsigned char *)c;
#if defined(CONC__CORO_VALGRIND)
    VALGRIND_DISABLE_ERROR_REPORTING; /* memcheck: the bytes sit below that stack's pointer */
#endif
    while (p < top && *p == CONC__CORO_PAINT_BYTE)
        p++;
#if defined(CONC__CORO_VALGRIND)
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    *bytes = (size_t)(top - p);
    return 0;
}

/* =============================================================================================
 * FOR OTHER CONC HEADERS: parking a coroutine and waking it
 *
 * Every coroutine-aware primitive (locks, semaphores, events, channels, bridges) blocks
 * through these, so cancellation, deadlines, the EDEADLK report and the dump work the same
 * for all of them. Owner-thread only, like everything in a scheduler.
 *
 *   conc_coro_park(wait, deadline)   parks the running coroutine: returns the status given to
 *                                    conc_coro_wake, ETIMEDOUT at the deadline, ECANCELED on
 *                                    cancel (at once if already cancelled), EPERM outside a
 *                                    coroutine. `wait` (kept by the caller until park returns)
 *                                    says what it waits on, for the report.
 *   conc_coro_wake(c, status)        makes a parked c runnable, its park returning status; the
 *                                    running coroutine's wake puts c next in line (runnext).
 *                                    First wake wins; a c not parked is left alone (false).
 *   conc_coro_wait_make(what, object, detail, describe)  the `wait` below, in one expression.
 *   conc_coro_is_cancelled(c)        so a primitive can refuse work before parking.
 *   conc_coro_is_parked(c)           c waits in a park (a queued waiter whose timer or cancel
 *                                    already woke it is not parked: skip it, it will unlink).
 *   conc_coro_has_finished(c)        c's function returned (its struct, pooled, may already
 *                                    belong to a newer coroutine: compare conc_coro_id too).
 *   conc_coro_sched(c)               the scheduler c belongs to.
 *   conc_sched_is_owner(s)           the calling thread is s's owner thread.
 *   conc_sched_serial(s)             s's number: process-wide unique, never 0, never reused
 *                                    (keep it, not s, in an object that may outlive s).
 *   conc_sched_lookup(serial)        CONC_SCHED_GONE (no such scheduler exists now),
 *                                    CONC_SCHED_OURS (it exists, the caller is its owner
 *                                    thread) or CONC_SCHED_THEIRS (it exists, another thread
 *                                    owns it). Takes the registry's mutex: for cold paths.
 *   conc_coro_find(c, serial, id)    c (kept with its scheduler's serial and its id, taken
 *                                    together), if that scheduler exists and c is still
 *                                    coroutine `id`, not finished; else NULL, and c is never
 *                                    read (it may point into a freed scheduler).
 *   conc_sched_msg_create(&m, fn, a) call_soon_threadsafe in two halves, for a wake that
 *   conc_sched_msg_post(s, m)        must not fail where nobody could report it (a future's
 *   conc_sched_msg_free(m)           callback on another thread): create allocates on the
 *                                    owner thread (0, ENOMEM), post (any thread) hands it to
 *                                    s's inbox and cannot fail, and s's loop then calls fn(a)
 *                                    on its thread, outside any coroutine (fn must not park;
 *                                    its wakes queue at the tail); free drops one never posted.
 *   conc_sched_unhold_here(s)        conc_sched_unhold on s's own thread: its loop is not
 *                                    asleep (it runs the caller), so no eventfd write.
 *   conc_sched_pin(s)                a hold taken on s's own thread for a message that will be
 *   conc_sched_unpin_here(s)         posted from elsewhere (a future's callback): unlike
 *                                    conc_sched_hold's, conc_sched_destroy keeps it and runs
 *                                    its loop until the message came and the pin is undone
 *                                    (freeing s first would leave the post a freed scheduler).
 *                                    So a pin must be undone: one that never is leaves
 *                                    destroy waiting for good (nested: aborting after 10 s).
 *   conc_coro_waitq_*                an intrusive FIFO of waiters: push a waiter, park, and on
 *                                    return remove it (a no-op if a waker popped it).
 *   conc_coro_waitq_wait(q, w, dl)   that sequence in one call.
 *   conc_coro_waitq_wait_uncancellable(q, w)  the same without a deadline, and a cancel
 *                                    neither refuses nor ends it (it stays pending for the
 *                                    next blocking call): for a wait that must finish, such
 *                                    as a condition re-taking its lock (asyncio's too).
 *   conc_coro_waitq_wake_one/n/all   pop and wake with a status: the first (true if any), up
 *                                    to n or all still-parked waiters (how many woke), FIFO:
 *                                    the first woken runs first.
 *
 * The protocol, single-threaded (no atomics: one scheduler runs one coroutine at a time):
 *
 *   waiter (running)                           waker (running later)
 *   ---------------------------------------    ---------------------------------------
 *   condition false? push(q, &me)              make the condition true
 *   park(&wait, deadline) -- switches away     w = pop(q); wake(w->coro, 0)
 *   ... resumed: remove(q, &me) (no-op)        (the waiter runs next)
 *   status 0: the condition was handed over
 *   A timeout or cancel wakes the waiter while it is still queued: its remove unlinks it,
 *   so no waker can hand a resource to a coroutine that has stopped waiting.
 * ============================================================================================= */
CONC_NODISCARD static inline int conc_coro_park(const conc_coro_wait_t *w, int64_t deadline) {
    conc_sched_t *s;
    conc_coro_t *co;
    if (conc__coro_me(&s, &co) != 0)
        return EPERM;
    return conc__coro_park(s, co, w, deadline);
}

static inline bool conc_coro_wake(conc_coro_t *c, int status) {
    if (!c || c->state != CONC__CORO_PARKED)
        return false;
    conc__coro_wake(c->sched, c, status);
    return true;
}

static inline bool conc_coro_is_cancelled(const conc_coro_t *c) {
    return c && c->cancelled;
}

static inline bool conc_coro_is_parked(const conc_coro_t *c) {
    return c && c->state == CONC__CORO_PARKED;
}

static inline bool conc_coro_has_finished(const conc_coro_t *c) {
    return c && (c->state == CONC__CORO_DONE || c->state == CONC__CORO_FREE);
}

static inline conc_sched_t *conc_coro_sched(const conc_coro_t *c) {
    return c ? c->sched : NULL;
}

static inline bool conc_sched_is_owner(const conc_sched_t *s) {
    return s && conc__coro_on_owner(s);
}

static inline uint64_t conc_sched_serial(const conc_sched_t *s) {
    return s ? s->serial : 0;
}

/* The live scheduler with that serial, or NULL. Under conc__coro_registry_lock. */
CONC_INLINE conc_sched_t *conc__coro_registry_find(uint64_t serial) {
    conc_sched_t *s = conc__coro_registry;
    while (s && s->serial != serial)
        s = s->registry_next;
    return s;
}

enum { CONC_SCHED_GONE, CONC_SCHED_OURS, CONC_SCHED_THEIRS };

static inline int conc_sched_lookup(uint64_t serial) {
    pthread_mutex_lock(&conc__coro_registry_lock);
    conc_sched_t *s = serial ? conc__coro_registry_find(serial) : NULL;
    int r = !s ? CONC_SCHED_GONE : conc__coro_on_owner(s) ? CONC_SCHED_OURS : CONC_SCHED_THEIRS;
    pthread_mutex_unlock(&conc__coro_registry_lock);
    return r;
}

/* Reads c only once its scheduler is found alive: the registry's mutex keeps it so (free
 * leaves the registry before it unmaps the slots), and a slot lives as long as its scheduler. */
static inline conc_coro_t *conc_coro_find(conc_coro_t *c, uint64_t serial, uint64_t id) {
    if (!c || !serial)
        return NULL;
    pthread_mutex_lock(&conc__coro_registry_lock);
    conc_sched_t *s = conc__coro_registry_find(serial);
    bool found = s && c->sched == s && c->id == id && !conc_coro_has_finished(c);
    pthread_mutex_unlock(&conc__coro_registry_lock);
    return found ? c : NULL;
}

/* Push, park, remove; immune: a cancel neither refuses nor ends the park (the group destroy's
 * flag: saved and restored, so the waits nest). */
static inline int conc__coro_waitq_wait_on(conc_coro_waitq_t *q, const conc_coro_wait_t *w,
                                           int64_t deadline, uint8_t immune) {
    conc_sched_t *s;
    conc_coro_t *co;
    if (conc__coro_me(&s, &co) != 0)
        return EPERM;
    conc_coro_waiter_t me;
    memset(&me, 0, sizeof me);
    me.coro = co;
    uint8_t was = co->immune;
    if (co->cancelled && !was && !immune)
        return ECANCELED;
    co->immune = (uint8_t)(was | immune);
    conc_coro_waitq_push(q, &me);
    int e = conc__coro_park(s, co, w, deadline);
    conc_coro_waitq_remove(q, &me);
    co->immune = was;
    return e;
}

CONC_NODISCARD static inline int conc_coro_waitq_wait(conc_coro_waitq_t *q,
                                                      const conc_coro_wait_t *w, int64_t deadline) {
    return conc__coro_waitq_wait_on(q, w, deadline, 0);
}

CONC_NODISCARD static inline int conc_coro_waitq_wait_uncancellable(conc_coro_waitq_t *q,
                                                                    const conc_coro_wait_t *w) {
    return conc__coro_waitq_wait_on(q, w, CONC_FOREVER, 1);
}

static inline size_t conc_coro_waitq_wake_n(conc_coro_waitq_t *q, size_t n, int status) {
    if (!q->head)
        return 0;
    return conc__coro_wake_n(q->head->coro->sched, q, n, status);
}

static inline bool conc_coro_waitq_wake_one(conc_coro_waitq_t *q, int status) {
    return conc_coro_waitq_wake_n(q, 1, status) == 1;
}

static inline size_t conc_coro_waitq_wake_all(conc_coro_waitq_t *q, int status) {
    return conc_coro_waitq_wake_n(q, SIZE_MAX, status);
}

typedef struct conc__coro_msg conc_sched_msg_t;

CONC_NODISCARD static inline int conc_sched_msg_create(conc_sched_msg_t **out, conc_coro_fn fn,
                                                       void *arg) {
    if (!out || !fn)
        return EINVAL;
    conc__coro_msg *m = conc__coro_msg_new(fn, arg, NULL, 0);
    if (m)
        m->call = 1;
    *out = m;
    return m ? 0 : ENOMEM;
}

/* The second half: the inbox post of conc__coro_sched_spawn_at's cross-thread path. */
static inline void conc_sched_msg_post(conc_sched_t *s, conc_sched_msg_t *m) {
    conc__coro_inbox_post(s, m);
}

static inline void conc_sched_msg_free(conc_sched_msg_t *m) {
    free(m);
}

static inline void conc_sched_unhold_here(conc_sched_t *s) {
    if (!conc__coro_on_owner(s))
        CONC_ABORT("conc_sched_unhold_here: called from another thread than the scheduler's");
    /* [coro.I4] release, as conc_sched_unhold; the loop that reads it runs on this thread. */
    uint32_t old = conc_fetch_sub(&s->holds, 1u, CONC_RELEASE);
    if (old == 0)
        CONC_ABORT("conc_sched_unhold_here: more unholds than holds");
}

/* A hold that conc_sched_destroy waits for too: on the owner thread, before registering
 * something that will post a message to s from elsewhere. */
static inline void conc_sched_pin(conc_sched_t *s) {
    if (!conc__coro_on_owner(s))
        CONC_ABORT("conc_sched_pin: called from another thread than the scheduler's");
    s->pins++;
    conc_sched_hold(s);
}

static inline void conc_sched_unpin_here(conc_sched_t *s) {
    if (!conc__coro_on_owner(s))
        CONC_ABORT("conc_sched_unpin_here: called from another thread than the scheduler's");
    if (s->pins == 0)
        CONC_ABORT("conc_sched_unpin_here: more unpins than pins");
    s->pins--;
    conc_sched_unhold_here(s);
}

#if defined(CONC__CORO_POP_DIAGNOSTIC)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

/* Optional companions (see the top): not in README's "needs" lists, so named through macros;
 * looked for as "../conc/X.h", which only conc's own folder holds, so that an X.h of the
 * application's own on the include path is never taken for one. */
#if defined(__has_include)
#if __has_include("../conc/chan.h")
#define CONC__CORO_CHAN_H "../conc/chan.h"
#include CONC__CORO_CHAN_H
#endif
#if defined(CONC_FUTURE_H) && __has_include("../conc/coro_bridge.h")
#define CONC__CORO_BRIDGE_H "../conc/coro_bridge.h"
#include CONC__CORO_BRIDGE_H
#endif
#endif
#endif /* CONC_CORO_H */

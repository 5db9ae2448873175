/* conc/conc.h - every conc module in one include - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * The umbrella: it lives in the folder with the modules, so copying the folder copies it.
 * Each module is one header here; copy the ones you use and the ones they need (the README's
 * opening lists what each needs). Installed, this is <conc/conc.h>.
 *
 * QUICK START
 *     #include "conc/conc.h"                   // cc -std=c11 -D_DEFAULT_SOURCE -Iinclude -pthread
 *     static conc_lock_t lock = CONC_LOCK_INIT;
 *     static conc_event_t done = CONC_EVENT_INIT;
 *     conc_lock_acquire(&lock);
 *     conc_event_set(&done);
 *     conc_lock_release(&lock);
 */
/* Not CONC_H: a guard that general is any project's conc.h, and the umbrella would vanish. */
#ifndef CONC_CONC_H
#define CONC_CONC_H

#include "base.h"
#include "lock.h"
#include "rlock.h"
#include "sem.h"
#include "event.h"
#include "cond.h"
#include "future.h"
#include "executor.h"
#include "queue.h"
#include "forkpool.h"
#include "rwlock.h"
#include "barrier.h"
#include "once.h"
#include "latch.h"
#include "coro.h"
#include "chan.h"
#include "coro_bridge.h"

#endif /* CONC_CONC_H */

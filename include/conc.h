/* conc.h - every conc module in one include - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Each module is one header under conc/ and needs only conc/base.h (plus the modules it
 * names): copy the ones you use. This umbrella includes them all.
 */
#ifndef CONC_H
#define CONC_H

#include "conc/base.h"
#include "conc/lock.h"
#include "conc/rlock.h"
#include "conc/sem.h"
#include "conc/event.h"
#include "conc/cond.h"
#include "conc/future.h"
#include "conc/queue.h"
#include "conc/forkpool.h"
#include "conc/rwlock.h"

#endif /* CONC_H */

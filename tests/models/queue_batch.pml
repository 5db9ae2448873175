/* tests/models/queue_batch.pml - queue.pml with pushes of two items (a batch push), for spin.
 * SPDX-License-Identifier: MIT
 *
 * queue.pml's producer pushes one item at a time, so each notify makes one wake pending and
 * a notify that woke one sleeper whatever it made pending would pass it. Here the producer
 * pushes two items at a time, twice, as conc_queue_push_batch does, and its notify makes
 * min(waiters - pending, 2) wakes pending (conc_eventcount_wake_slow's m): it must wake as
 * many, or a second consumer sleeps on beside an item. LEAVE_KEEPS_PENDING is queue.pml's to
 * catch: with two items a push, the wake it strands is soon made up.
 *
 * // broken: BROKEN_WAKE_ONE  a notify makes m wakes pending and wakes one sleeper
 */
// broken: BROKEN_WAKE_ONE
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define BATCH 2
#define NITEMS 4
#include "queue.pml"

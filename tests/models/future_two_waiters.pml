/* tests/models/future_two_waiters.pml - future.pml with two waiters, for spin.
 * SPDX-License-Identifier: MIT
 *
 * future.pml has one waiter, so a completion that woke one sleeper where future.h wakes them
 * all would pass it, and two waiters beside its three settlers make some 650 M states. Here
 * the worker alone settles (no canceller, no second completer), and two waiters and the
 * callback registrant race its completion: the one a single wake misses sleeps on for good.
 *
 * // broken: WAKE_ONE  the completion wakes one sleeper, not all
 */
// broken: WAKE_ONE
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define NO_SETTLERS
#define WAITERS_N 2
#include "future.pml"

/* tests/models/executor_stuck_deep.pml - tests/models/executor_stuck.pml with a worker too
 * deep to run a task inline
 * SPDX-License-Identifier: MIT
 *
 * The model of workers that submit to their own executor's full queue (executor_stuck.pml:
 * what is modelled and checked) with DEEP: one worker already runs CONC__EXECUTOR_HELP_DEPTH
 * tasks inline when its submit finds the queue full, so it may not run another there; it
 * counts itself in `stuck` and sleeps whatever the count, and the spawners block after it.
 * The last spawner to count then sees every worker counted and runs the oldest task, and
 * everything still finishes.
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: DEEP_UNCOUNTED the deep worker sleeps uncounted (the old code): the spawners' count
//                        never reaches every worker's, and all three sleep with the queue full
// pan-cc: -DSAFETY
// pan-run: -m100000

#define DEEP 1
#include "executor_stuck.pml"

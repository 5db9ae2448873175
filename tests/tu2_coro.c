/* tests/tu2_coro.c - test_coro's second translation unit, built as a release (NDEBUG) file
 * beside test_coro.c's debug one (the Makefile links tests/tu2_NAME.c into test_NAME)
 * SPDX-License-Identifier: MIT
 *
 * Whether a scheduler's stacks carry the debug canary was decided by each file's CONC_DEBUG:
 * a spawn here wrote none, and a switch in test_coro.c checked it and aborted with a "stack
 * overflow" that never happened. Each function here creates a scheduler or spawns a
 * coroutine for coro_canary_is_the_creating_files_choice, which switches in the other file.
 */
#define NDEBUG 1
#include "conc/coro.h"

int tu2_coro_debug(void);
int tu2_coro_sched_create_unguarded(conc_sched_t **s);
int tu2_coro_spawn(conc_sched_t *s, conc_coro_fn fn, void *arg, const char *name);

int tu2_coro_debug(void) {
    return CONC_DEBUG;
}

int tu2_coro_sched_create_unguarded(conc_sched_t **s) {
    conc_sched_opts_t o;
    memset(&o, 0, sizeof o);
    o.flags = CONC_SCHED_NO_GUARD;
    return conc_sched_create(s, &o);
}

int tu2_coro_spawn(conc_sched_t *s, conc_coro_fn fn, void *arg, const char *name) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = name;
    return conc_coro_spawn(s, fn, arg, &o, NULL);
}

/* tests/futex_gate.h - a gate at the futex seam, for cases that must order a step the
 * scheduler orders only by chance
 * SPDX-License-Identifier: MIT
 *
 * Include it before any conc header (it defines CONC_FUTEX_HOOK, which base.h reads once).
 * A thread that armed its gate (gate_here = &g) stops before its next futex_wait syscall,
 * as a preemption there would stop it, until the test opens the gate. One stop per arming.
 * A thread that armed its wake gate (gate_wake_here = &g) stops the same way before its next
 * futex_wake, as a process killed there would stop for good.
 * Acquire/release on the flags: they hand the test's view of the object over. */
#ifndef CONC_TEST_FUTEX_GATE_H
#define CONC_TEST_FUTEX_GATE_H

#include <sched.h>

typedef struct futex_gate {
    int reached, open; /* release/acquire */
} futex_gate;
static __thread futex_gate *gate_here;
static __thread futex_gate *gate_wake_here;
static void gate_hook(int kind);
#define CONC_FUTEX_HOOK(kind) gate_hook(kind)

#include "conc/base.h"

static void gate_hook(int kind) {
    futex_gate **armed = kind == CONC_FUTEX_HOOK_WAIT ? &gate_here : &gate_wake_here;
    futex_gate *g = *armed;
    if (!g)
        return;
    *armed = NULL; /* one stop per arming */
    __atomic_store_n(&g->reached, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&g->open, __ATOMIC_ACQUIRE)) {
        if (kind == CONC_FUTEX_HOOK_WAKE) /* stopped as a dead process is: asleep */
            (void)syscall(SYS_futex, &g->open, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        else
            sched_yield();
    }
}
static inline void gate_wait_reached(futex_gate *g) {
    while (!__atomic_load_n(&g->reached, __ATOMIC_ACQUIRE))
        sched_yield();
}
static inline void gate_open(futex_gate *g) {
    __atomic_store_n(&g->open, 1, __ATOMIC_RELEASE);
    (void)syscall(SYS_futex, &g->open, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif

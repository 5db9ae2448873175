/* examples/06_event_start_gun.c - one event releases every waiting runner at once
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Five runner threads get ready and wait for the start gun. The main thread writes the race
 *   distance, then fires the gun: one conc_event_set releases them all, and each runner reads
 *   the distance the main thread wrote before the set. Then a timeout variant: a runner waits
 *   for a finish signal with a deadline; nobody sends it the first time (ETIMEDOUT, never
 *   early), and the second time it arrives in time (0). Python's threading.Event, in C:
 *
 *       Python                                C (this file)
 *       go = threading.Event()                static conc_event_t go = CONC_EVENT_INIT;
 *       go.wait()                             conc_event_wait(&go);
 *       go.set()                              conc_event_set(&go);
 *       ok = done.wait(timeout=0.05)          ok = conc_event_wait_until(&done,
 *                                                      conc_deadline_in(50 * CONC_MS)) == 0;
 *       go.clear(), go.is_set()               conc_event_clear(&go), conc_event_is_set(&go)
 *
 * AN EVENT IS A FLAG YOU CAN WAIT FOR
 *   set() raises the flag and wakes every waiter; the flag stays up, so a runner that arrives
 *   late passes straight through (unlike a condition variable, where a notify with nobody
 *   waiting is lost). clear() lowers it again. Whatever main wrote before set() is visible to
 *   every runner whose wait returned: that is the event's ordering contract, so `distance`
 *   below needs no lock and no atomic.
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - wait(timeout) takes an absolute deadline (conc_deadline_in(ns) turns "50 ms from now"
 *     into one), so a wait interrupted by a signal resumes with the same deadline; it returns
 *     ETIMEDOUT where Python returns False.
 *   - The event is 4 bytes and needs no destroy; a set with nobody waiting costs one atomic
 *     instruction and no system call (Python's takes a lock and notifies a Condition).
 *
 * RUN
 *   make examples && build/examples/06_event_start_gun
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/06_event_start_gun.c -pthread && ./a.out
 *
 * PRINTS (runner order changes from run to run)
 *   5 runners waiting for the gun
 *   bang: distance 400 m
 *   runner 2 off, running 400 m
 *   ...
 *   all 5 runners started after the gun
 *   finish signal within 50 ms? no (ETIMEDOUT after >= 50 ms)
 *   finish signal within 2 s? yes (0)
 *
 *   The program exits 1 if a runner started before the gun or read a wrong distance, if the
 *   timed wait returned early or wrongly, or if the signalled wait did not return 0.
 */
#include "conc/event.h"

#include <pthread.h>
#include <stdio.h>

enum { RUNNERS = 5 };

static conc_event_t ready_go = CONC_EVENT_INIT;
static conc_event_t finish = CONC_EVENT_INIT;
static int distance;  /* plain: written before the set, read after the wait */
static int gun_fired; /* plain, same reason */
static int waiting;   /* atomic: runners that are about to wait */
static int good_starts;

static void *runner(void *arg) {
    int id = (int)(intptr_t)arg;
    __atomic_add_fetch(&waiting, 1, __ATOMIC_RELAXED);
    conc_event_wait(&ready_go); /* blocks until main fires the gun */
    bool ok = gun_fired == 1 && distance == 400;
    printf("runner %d off, running %d m\n", id, distance);
    if (ok)
        __atomic_add_fetch(&good_starts, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *late_finisher(void *arg) {
    (void)arg;
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
    conc_event_set(&finish);
    return NULL;
}

int main(void) {
    printf("%d runners waiting for the gun\n", RUNNERS);
    pthread_t t[RUNNERS];
    for (int i = 0; i < RUNNERS; i++)
        pthread_create(&t[i], NULL, runner, (void *)(intptr_t)i);
    while (__atomic_load_n(&waiting, __ATOMIC_RELAXED) < RUNNERS)
        sched_yield(); /* not needed for correctness: a late runner passes a set event */
    distance = 400;
    gun_fired = 1;
    printf("bang: distance %d m\n", distance);
    conc_event_set(&ready_go); /* one call releases all five */
    for (int i = 0; i < RUNNERS; i++)
        pthread_join(t[i], NULL);
    printf("all %d runners started after the gun\n", good_starts);
    bool ok = good_starts == RUNNERS;

    /* Timeout variant: nobody signals the finish within 50 ms. */
    int64_t deadline = conc_deadline_in(50 * CONC_MS);
    int r = conc_event_wait_until(&finish, deadline);
    bool on_time = conc_now() >= deadline;
    printf("finish signal within 50 ms? %s\n",
           r == ETIMEDOUT ? (on_time ? "no (ETIMEDOUT after >= 50 ms)" : "no (EARLY: wrong)")
                          : "yes (wrong: nobody set it)");
    ok = ok && r == ETIMEDOUT && on_time;

    /* Now someone does signal it, well before the 2 s deadline. */
    pthread_t f;
    pthread_create(&f, NULL, late_finisher, NULL);
    r = conc_event_wait_until(&finish, conc_deadline_in(2 * CONC_SEC));
    pthread_join(f, NULL);
    printf("finish signal within 2 s? %s\n", r == 0 ? "yes (0)" : "no (wrong)");
    ok = ok && r == 0 && conc_event_is_set(&finish);
    return ok ? 0 : 1;
}

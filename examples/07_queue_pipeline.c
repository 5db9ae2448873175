/* examples/07_queue_pipeline.c - a three-stage pipeline with backpressure and clean shutdown
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   A reader thread feeds the numbers 1..100000 into a small queue; three workers square them
 *   and feed a second small queue; one collector adds the squares up. The queues are bounded
 *   (8 items), so a fast stage cannot run ahead of a slow one and pile up memory: its push
 *   simply waits for room (backpressure). Shutdown needs no sentinels: the reader closes the
 *   first queue, workers drain it and see EPIPE, the last worker out closes the second queue,
 *   the collector drains it and sees EPIPE. Python's queue.Queue(maxsize), in C:
 *
 *       Python                                  C (this file)
 *       q = queue.Queue(maxsize=8)              conc_queue_create(&q, 8, sizeof(long));
 *       q.put(x)            # blocks when full  conc_queue_push(q, &x);
 *       x = q.get()         # blocks when empty conc_queue_pop(q, &x)   -> 0, or EPIPE
 *       q.put(None) per worker (a sentinel)     conc_queue_close(q);    wakes every waiter
 *       q.shutdown()        # Python 3.13       conc_queue_close(q);
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - Items are copied bytes of a fixed size (here a long), not references to objects: what
 *     you pop is a copy, and a pointer inside an item is only as good as what it points to.
 *   - Before Python 3.13 there is no close: the idiom is one sentinel per consumer, which
 *     breaks when you miscount consumers. close cannot be miscounted: every pop, present or
 *     future, returns the remaining items and then EPIPE.
 *   - Three workers squaring numbers in C really run in parallel; in CPython (with the GIL)
 *     they would take turns.
 *
 * RUN
 *   make examples && build/examples/07_queue_pipeline
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/07_queue_pipeline.c -pthread && ./a.out
 *
 * PRINTS (the wait counts vary from run to run; the sum never does)
 *   pipeline: 100000 numbers -> 3 workers -> 1 collector, queues of 8
 *   reader waited for room 18162 times (backpressure); the first queue held at most 8 (capacity 8)
 *   sum of squares = 333338333350000 (expected 333338333350000): ok
 *   exits 1 if the sum is wrong.
 */
#include "conc/queue.h"

#include <pthread.h>
#include <stdio.h>

enum { NUMBERS = 100000, WORKERS = 3, DEPTH = 8 };

static conc_queue_t *numbers, *squares;
static int workers_left = WORKERS; /* the last worker out closes `squares` */
static long reader_waits;          /* written by the reader only, read after join */

static void *reader(void *arg) {
    (void)arg;
    for (long n = 1; n <= NUMBERS; n++) {
        /* try first, only to count how often backpressure held us up; push alone would do */
        if (conc_queue_try_push(numbers, &n) == EAGAIN) {
            reader_waits++;
            if (conc_queue_push(numbers, &n) != 0) /* waits for room: a worker pops, we go on */
                abort(); /* EPIPE: only once closed, and only this thread closes it */
        }
    }
    conc_queue_close(numbers); /* "no more": workers drain what is left, then see EPIPE */
    return NULL;
}

static void *worker(void *arg) {
    (void)arg;
    long n;
    while (conc_queue_pop(numbers, &n) == 0) { /* 0: an item; EPIPE: closed and empty */
        long square = n * n;
        if (conc_queue_push(squares, &square) != 0) /* closed only after every worker is done */
            abort();
    }
    /* Acq_rel: the last one out must see every other worker's pushes done before it closes
     * (close after a push means that push's item is still popped: nothing is lost). */
    if (__atomic_sub_fetch(&workers_left, 1, __ATOMIC_ACQ_REL) == 0)
        conc_queue_close(squares);
    return NULL;
}

int main(void) {
    if (conc_queue_create(&numbers, DEPTH, sizeof(long)) != 0 ||
        conc_queue_create(&squares, DEPTH, sizeof(long)) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("pipeline: %d numbers -> %d workers -> 1 collector, queues of %d\n", NUMBERS, WORKERS,
           DEPTH);
    pthread_t r, w[WORKERS];
    pthread_create(&r, NULL, reader, NULL);
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, worker, NULL);

    /* The collector is the main thread. */
    long long sum = 0, square;
    size_t most = 0;
    while (conc_queue_pop(squares, &square) == 0) {
        sum += square;
        size_t now = conc_queue_size(numbers);
        if (now > most)
            most = now;
    }
    pthread_join(r, NULL);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);

    long long expected = (long long)NUMBERS * (NUMBERS + 1) * (2LL * NUMBERS + 1) / 6;
    printf("reader waited for room %ld times (backpressure); the first queue held at most %zu "
           "(capacity %d)\n",
           reader_waits, most, DEPTH);
    printf("sum of squares = %lld (expected %lld): %s\n", sum, expected,
           sum == expected ? "ok" : "WRONG");
    bool ok = sum == expected && most <= (size_t)DEPTH;
    conc_queue_destroy(numbers);
    conc_queue_destroy(squares);
    return ok ? 0 : 1;
}

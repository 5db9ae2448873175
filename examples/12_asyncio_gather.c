/* examples/12_asyncio_gather.c - three 1-second "downloads" on one thread take about 1 s
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   The concept notes' asyncio example, in C (the notes' fetch_data sleeps 0.5 s; their
 *   first sketch sleeps 1 s, as this file does, which makes the overlap plain):
 *       async def fetch(i): await asyncio.sleep(1); return {"id": i}
 *       async def main(): print(await asyncio.gather(fetch(1), fetch(2), fetch(3)))
 *       asyncio.run(main())
 *   conc_run is asyncio.run; conc_coro_spawn is create_task (it returns a handle you own);
 *   joining each handle is gather; conc_coro_sleep_until is asyncio.sleep. While one
 *   coroutine sleeps, the scheduler runs the others: the three waits overlap, so the whole
 *   program takes about 1 s, not 3, on a single thread.
 *
 * RUN
 *   make examples && build/examples/12_asyncio_gather
 *   (or: cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/12_asyncio_gather.c -pthread)
 *   It prints (times vary a little):
 *       0.000 s  fetch 1 starts
 *       0.000 s  fetch 2 starts
 *       0.000 s  fetch 3 starts
 *       1.000 s  fetch 1 done
 *       1.000 s  fetch 2 done
 *       1.000 s  fetch 3 done
 *       results: {id: 1} {id: 2} {id: 3} in 1.00 s on one thread (3 s of waiting)
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - A coroutine is a plain function with its own stack: it can wait anywhere, in any
 *     nested call, with no async/await colouring. The cost is the stack (64 KiB of address
 *     space, about 4 KiB resident while idle).
 *   - Results come back through the status (an int) or memory the coroutine writes, here
 *     the `result` field: no boxed objects.
 *   - A handle must be released (like free); a coroutine spawned without one is detached
 *     and still runs to the end before conc_run returns. Nothing is garbage-collected away.
 */
#include "conc/coro.h"

#include <stdio.h>

typedef struct fetch {
    int id;
    int result; /* "the downloaded data" */
} fetch_t;

static int64_t t0;
static int events[6], n_events; /* the order things happened in: +id start, -id done */

static double since_start(void) {
    return (double)(conc_now() - t0) / 1e9;
}

static int fetch(void *arg) {
    fetch_t *f = (fetch_t *)arg;
    printf("%.3f s  fetch %d starts\n", since_start(), f->id);
    events[n_events++] = f->id;
    int e = conc_coro_sleep_until(conc_deadline_in(CONC_SEC)); /* await asyncio.sleep(1) */
    if (e)
        return e; /* ECANCELED: nobody cancels here, but a coroutine always handles it */
    f->result = f->id;
    printf("%.3f s  fetch %d done\n", since_start(), f->id);
    events[n_events++] = -f->id;
    return 0;
}

static int main_coro(void *arg) {
    (void)arg;
    fetch_t f[3] = {{1, 0}, {2, 0}, {3, 0}};
    conc_coro_t *c[3];
    for (int i = 0; i < 3; i++) /* create_task x 3 */
        if (conc_coro_spawn(NULL, fetch, &f[i], NULL, &c[i]) != 0)
            return ENOMEM;
    int failed = 0;
    for (int i = 0; i < 3; i++) { /* gather: join each */
        int status = 0;
        if (conc_coro_join(c[i], CONC_FOREVER, &status) != 0 || status != 0)
            failed = 1;
        conc_coro_release(c[i]);
    }
    printf("results: {id: %d} {id: %d} {id: %d} in %.2f s on one thread (3 s of waiting)\n",
           f[0].result, f[1].result, f[2].result, since_start());
    return failed;
}

int main(void) {
    t0 = conc_now();
    int status = -1;
    int e = conc_run(main_coro, NULL, &status); /* asyncio.run(main()) */
    if (e != 0 || status != 0) {
        fprintf(stderr, "conc_run: %d, status %d\n", e, status);
        return 1;
    }
    /* The lesson, checked without timing: all three started before any finished. */
    for (int i = 0; i < 3; i++)
        if (events[i] <= 0) {
            fprintf(stderr, "a fetch finished before all three had started\n");
            return 1;
        }
    return 0;
}

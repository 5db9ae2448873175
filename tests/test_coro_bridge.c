/* tests/test_coro_bridge.c - coroutines awaiting futures and mailboxes fed by other threads
 * SPDX-License-Identifier: MIT */
#include "conc/coro_bridge.h"
#include "conc/conc.h" /* the executor and the fork pool */

#include "harness.h"

static int run_main(conc_coro_fn fn, void *arg) {
    int status = -1;
    TH_CHECK_EQ(conc_run(fn, arg, &status), 0);
    return status;
}

/* ---- await ------------------------------------------------------------------------------- */

static int square_task(void *arg, void **result) {
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * x);
    return x < 0 ? EDOM : 0;
}

typedef struct ex_ctx {
    conc_executor_t *ex;
    int ticks; /* another coroutine ran while we waited */
} ex_ctx;

static int ticker(void *p) {
    ex_ctx *c = (ex_ctx *)p;
    for (int i = 0; i < 3; i++) {
        __atomic_fetch_add(&c->ticks, 1, __ATOMIC_RELEASE); /* the gate task reads it */
        if (conc_coro_yield() != 0)
            break;
    }
    return 0;
}

static int gate_task(void *arg, void **result) { /* waits for the coroutine to tick */
    volatile int *ticks = (volatile int *)arg;
    while (__atomic_load_n(ticks, __ATOMIC_ACQUIRE) == 0)
        th_sleep_ns(CONC_US * 100);
    *result = NULL;
    return 0;
}

static int await_main(void *p) {
    ex_ctx *c = (ex_ctx *)p;
    conc_future_t *f;
    TH_CHECK_EQ(conc_coro_await(NULL, CONC_FOREVER), EINVAL);
    /* result and status */
    TH_CHECK_EQ(conc_executor_submit(c->ex, square_task, (void *)(intptr_t)7, &f), 0);
    TH_CHECK_EQ(conc_coro_await(f, CONC_FOREVER), 0);
    TH_CHECK_EQ((intptr_t)conc_future_result(f), 49);
    TH_CHECK_EQ(conc_coro_await(f, 0), 0); /* done: at once, even with a past deadline */
    conc_future_release(f);
    TH_CHECK_EQ(conc_executor_submit(c->ex, square_task, (void *)(intptr_t)-1, &f), 0);
    TH_CHECK_EQ(conc_coro_await(f, CONC_FOREVER), EDOM);
    conc_future_release(f);
    /* the thread is not blocked: a sibling coroutine runs while the task waits for it */
    int ticks_seen = 0;
    conc_coro_t *t;
    TH_CHECK_EQ(conc_coro_spawn(NULL, ticker, c, NULL, &t), 0);
    TH_CHECK_EQ(conc_executor_submit(c->ex, gate_task, &c->ticks, &f), 0);
    TH_CHECK_EQ(conc_coro_await(f, CONC_FOREVER), 0);
    ticks_seen = __atomic_load_n(&c->ticks, __ATOMIC_RELAXED);
    TH_CHECK(ticks_seen > 0);
    conc_future_release(f);
    TH_CHECK_EQ(conc_coro_join(t, CONC_FOREVER, NULL), 0);
    conc_coro_release(t);
    return 0;
}

static void bridge_await_executor_future_without_blocking(void) {
    ex_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_executor_create(&c.ex, 2, 16), 0);
    TH_CHECK_EQ(run_main(await_main, &c), 0);
    conc_executor_destroy(c.ex);
}

/* A promise completed by a thread after the await timed out: the timed-out await left nothing
 * on it, and the second await gets the completion. */
typedef struct late_ctx {
    conc_future_t *f;
    int stage; /* atomic */
} late_ctx;

static void *late_completer(void *p) {
    late_ctx *l = (late_ctx *)p;
    while (__atomic_load_n(&l->stage, __ATOMIC_ACQUIRE) != 1)
        th_sleep_ns(CONC_US * 100);
    TH_CHECK_EQ(conc_future_complete(l->f, 0, (void *)(intptr_t)5), 0);
    return NULL;
}

static int late_main(void *p) {
    late_ctx *l = (late_ctx *)p;
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_coro_await(l->f, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_coro_await(l->f, 0), ETIMEDOUT); /* past deadline, not done */
    __atomic_store_n(&l->stage, 1, __ATOMIC_RELEASE);
    /* wait again, now for real */
    TH_CHECK_EQ(conc_coro_await(l->f, CONC_FOREVER), 0);
    TH_CHECK_EQ((intptr_t)conc_future_result(l->f), 5);
    return 0;
}

static void bridge_await_timeout_then_late_completion(void) {
    late_ctx l;
    memset(&l, 0, sizeof l);
    TH_CHECK_EQ(conc_future_create(&l.f), 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, late_completer, &l), 0);
    TH_CHECK_EQ(run_main(late_main, &l), 0);
    pthread_join(t, NULL);
    conc_future_release(l.f);
}

/* Cancel while parked in an await: ECANCELED; the completion later is harmless. */
typedef struct cancel_ctx {
    conc_future_t *f;
    int result;
} cancel_ctx;

static int cancel_waiter(void *p) {
    cancel_ctx *c = (cancel_ctx *)p;
    c->result = conc_coro_await(c->f, CONC_FOREVER);
    return 0;
}

static int cancel_main(void *p) {
    cancel_ctx *c = (cancel_ctx *)p;
    conc_coro_t *w;
    TH_CHECK_EQ(conc_coro_spawn(NULL, cancel_waiter, c, NULL, &w), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_coro_cancel(w), 0);
    TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, NULL), 0);
    conc_coro_release(w);
    TH_CHECK_EQ(c->result, ECANCELED);
    TH_CHECK_EQ(conc_future_complete(c->f, 3, NULL), 0); /* on this thread: the wake posts */
    return 0;
}

static void bridge_await_cancelled_while_parked(void) {
    cancel_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_future_create(&c.f), 0);
    TH_CHECK_EQ(run_main(cancel_main, &c), 0);
    TH_CHECK_EQ(conc_future_wait(c.f), 3);
    conc_future_release(c.f);
}

/* A fork-pool future, awaited like any other. */
static int fp_task(const void *arg, size_t len, void **result, size_t *result_len) {
    (void)len;
    int *r = (int *)malloc(sizeof *r);
    if (!r)
        return ENOMEM;
    *r = *(const int *)arg * 3;
    *result = r;
    *result_len = sizeof *r;
    return 0;
}

static int fp_main(void *p) {
    conc_forkpool_t *pool = (conc_forkpool_t *)p;
    conc_future_t *f[4];
    int in[4];
    for (int i = 0; i < 4; i++) {
        in[i] = i + 1;
        TH_CHECK_EQ(conc_forkpool_submit(pool, fp_task, &in[i], sizeof in[i], &f[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        TH_CHECK_EQ(conc_coro_await(f[i], CONC_FOREVER), 0);
        size_t len;
        const int *r = (const int *)conc_forkpool_result(f[i], &len);
        TH_CHECK_EQ(len, sizeof(int));
        TH_CHECK_EQ(*r, 3 * (i + 1));
        conc_future_release(f[i]);
    }
    return 0;
}

static void bridge_await_fork_pool_future(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.shared_size = (size_t)1 << 20;
    conc_forkpool_t *pool;
    TH_CHECK_EQ(conc_forkpool_create(&pool, &o), 0);
    TH_CHECK_EQ(run_main(fp_main, pool), 0);
    conc_forkpool_destroy(pool);
}

/* Stress: schedulers on several threads, many coroutines each awaiting promises that many
 * other threads complete in random order. */
enum { ST_SCHEDS = 3, ST_CORO = 40, ST_COMPLETERS = 4 };

typedef struct st_ctx {
    conc_future_t **fs;
    size_t n;
    size_t next;  /* atomic: completers claim futures */
    long awaited; /* atomic */
    int rounds;
} st_ctx;

typedef struct st_arg {
    st_ctx *c;
    size_t base;
} st_arg;

static int st_coro(void *p) {
    st_arg *a = (st_arg *)p;
    for (int r = 0; r < a->c->rounds; r++) {
        conc_future_t *f = a->c->fs[a->base + (size_t)r];
        intptr_t want = (intptr_t)(a->base + (size_t)r);
        int e;
        /* sometimes a short deadline first: a timed-out await, then the real one */
        if (r % 3 == 0 && (e = conc_coro_await(f, conc_deadline_in(CONC_US * 20))) != 0)
            TH_CHECK_EQ(e, ETIMEDOUT);
        TH_CHECK_EQ(conc_coro_await(f, CONC_FOREVER), 0);
        TH_CHECK_EQ((intptr_t)conc_future_result(f), want);
        __atomic_fetch_add(&a->c->awaited, 1, __ATOMIC_RELAXED);
    }
    return 0;
}

static void st_sched_thread(int idx, void *arg) {
    st_ctx *c = (st_ctx *)arg;
    if (idx >= ST_SCHEDS) { /* a completer */
        size_t i;
        while ((i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n) {
            /* a permutation of the indices: completions out of await order */
            size_t j = (i * 7919u) % c->n;
            TH_CHECK_EQ(conc_future_complete(c->fs[j], 0, (void *)(intptr_t)j), 0);
        }
        return;
    }
    conc_sched_t *s;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    st_arg args[ST_CORO];
    for (int k = 0; k < ST_CORO; k++) {
        args[k].c = c;
        args[k].base = ((size_t)idx * ST_CORO + (size_t)k) * (size_t)c->rounds;
        TH_CHECK_EQ(conc_coro_spawn(s, st_coro, &args[k], NULL, NULL), 0);
    }
    TH_CHECK_EQ(conc_sched_run(s), 0);
    conc_sched_destroy(s);
}

static void bridge_stress_many_threads_complete_many_schedulers_await(void) {
    st_ctx c;
    memset(&c, 0, sizeof c);
    c.rounds = (int)th_iters(40);
    if (c.rounds < 3)
        c.rounds = 3;
    c.n = (size_t)ST_SCHEDS * ST_CORO * (size_t)c.rounds;
    while (c.n % 7919u == 0)
        c.rounds++, c.n = (size_t)ST_SCHEDS * ST_CORO * (size_t)c.rounds;
    c.fs = (conc_future_t **)calloc(c.n, sizeof *c.fs);
    TH_CHECK(c.fs);
    for (size_t i = 0; i < c.n; i++)
        TH_CHECK_EQ(conc_future_create(&c.fs[i]), 0);
    th_run_threads(ST_SCHEDS + ST_COMPLETERS, st_sched_thread, &c);
    TH_CHECK_EQ(c.awaited, (long)c.n);
    for (size_t i = 0; i < c.n; i++)
        conc_future_release(c.fs[i]);
    free(c.fs);
}

/* ---- mailboxes ----------------------------------------------------------------------------- */

typedef struct mb_ctx {
    conc_queue_t *q;
    conc_coro_mailbox_t *mb;
    conc_sched_t *s;
    int producers;
    long per_producer;
    long got_n, got_sum; /* plain: the receivers share one thread */
    int ready;           /* atomic: the mailbox exists */
    int closers_left;    /* atomic */
} mb_ctx;

static int mb_receiver(void *p) {
    mb_ctx *c = (mb_ctx *)p;
    long v;
    int e;
    for (;;) {
        /* mix deadlines in: a timed-out receiver undoes its arm */
        e = (c->got_n % 5 == 0) ? conc_coro_mailbox_recv_until(c->mb, &v, conc_deadline_in(CONC_US))
                                : conc_coro_mailbox_recv(c->mb, &v);
        if (e == ETIMEDOUT)
            continue;
        if (e != 0)
            break;
        TH_CHECK(v >= 1);
        c->got_n++;
        c->got_sum += v;
    }
    TH_CHECK_EQ(e, EPIPE);
    return 0;
}

static int mb_main(void *p) {
    mb_ctx *c = (mb_ctx *)p;
    TH_CHECK_EQ(conc_coro_mailbox_create(&c->mb, NULL, c->q), 0);
    __atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
    conc_coro_t *r[4];
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(conc_coro_spawn(NULL, mb_receiver, c, NULL, &r[i]), 0);
    for (int i = 0; i < 4; i++) {
        TH_CHECK_EQ(conc_coro_join(r[i], CONC_FOREVER, NULL), 0);
        conc_coro_release(r[i]);
    }
    return 0;
}

static void mb_thread(int idx, void *arg) {
    mb_ctx *c = (mb_ctx *)arg;
    if (idx == 0) {
        TH_CHECK_EQ(run_main(mb_main, c), 0);
        return;
    }
    while (!__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE))
        th_sleep_ns(CONC_US * 50);
    for (long i = 1; i <= c->per_producer; i++) {
        if (i % 3 == 0) { /* a plain queue push, then notify */
            TH_CHECK_EQ(conc_queue_push(c->q, &i), 0);
            conc_coro_mailbox_notify(c->mb);
        } else {
            TH_CHECK_EQ(conc_coro_mailbox_send(c->mb, &i), 0);
        }
        if (i % 64 == 0)
            th_sleep_ns(CONC_US * 20); /* let the receivers go to sleep now and then */
    }
    if (__atomic_sub_fetch(&c->closers_left, 1, __ATOMIC_ACQ_REL) == 0)
        conc_coro_mailbox_close(c->mb);
}

static void bridge_mailbox_every_item_once_from_many_threads(void) {
    mb_ctx c;
    memset(&c, 0, sizeof c);
    c.producers = 4;
    c.per_producer = th_iters(4000);
    c.closers_left = c.producers;
    TH_CHECK_EQ(conc_queue_create(&c.q, 8, sizeof(long)), 0);
    th_run_threads(1 + c.producers, mb_thread, &c);
    TH_CHECK_EQ(c.got_n, c.producers * c.per_producer);
    TH_CHECK_EQ(c.got_sum, c.producers * c.per_producer * (c.per_producer + 1) / 2);
    conc_coro_mailbox_destroy(c.mb);
    conc_queue_destroy(c.q);
}

/* Single-threaded edges: try forms, deadline, cancel, other scheduler, destroy while armed. */
typedef struct edge_ctx {
    conc_coro_mailbox_t *mb;
    int result;
} edge_ctx;

static int edge_waiter(void *p) {
    edge_ctx *e = (edge_ctx *)p;
    long v;
    e->result = conc_coro_mailbox_recv(e->mb, &v);
    return 0;
}

static int edge_main(void *p) {
    conc_queue_t *q = (conc_queue_t *)p;
    conc_coro_mailbox_t *mb;
    TH_CHECK_EQ(conc_coro_mailbox_create(&mb, NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_mailbox_create(&mb, NULL, q), 0);
    long v = 0;
    TH_CHECK_EQ(conc_coro_mailbox_try_recv(mb, &v), EAGAIN);
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_coro_mailbox_recv_until(mb, &v, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    v = 4;
    TH_CHECK_EQ(conc_coro_mailbox_try_send(mb, &v), 0); /* from a coroutine: try_send */
    v = 0;
    TH_CHECK_EQ(conc_coro_mailbox_recv(mb, &v), 0);
    TH_CHECK_EQ(v, 4);
    edge_ctx e = {mb, -1};
    conc_coro_t *w;
    TH_CHECK_EQ(conc_coro_spawn(NULL, edge_waiter, &e, NULL, &w), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* parked, armed */
    TH_CHECK_EQ(conc_coro_cancel(w), 0);
    TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, NULL), 0);
    conc_coro_release(w);
    TH_CHECK_EQ(e.result, ECANCELED);
    /* close wakes a parked receiver with EPIPE */
    TH_CHECK_EQ(conc_coro_spawn(NULL, edge_waiter, &e, NULL, &w), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    conc_coro_mailbox_close(mb);
    TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, NULL), 0);
    conc_coro_release(w);
    TH_CHECK_EQ(e.result, EPIPE);
    TH_CHECK_EQ(conc_coro_mailbox_try_send(mb, &v), EPIPE);
    conc_coro_mailbox_destroy(mb);
    return 0;
}

static void bridge_mailbox_edges_deadline_cancel_close(void) {
    conc_queue_t *q;
    TH_CHECK_EQ(conc_queue_create(&q, 2, sizeof(long)), 0);
    TH_CHECK_EQ(run_main(edge_main, q), 0);
    conc_queue_destroy(q);
}

/* conc_coro_mailbox_destroy right after a receiver's wait ended, before that receiver ran:
 * cancelled, timed out, or woken by a send to look again. The destroy drops it, as
 * conc_chan_destroy drops a finished waiter, and the receive returns without touching the
 * mailbox: ECANCELED, ETIMEDOUT, EPIPE (the mailbox is gone). It used to abort for the first
 * two ("coroutines still wait"), and a build without CONC_DEBUG freed the mailbox under them;
 * the third was freed under the woken receiver in every build, which then popped the item
 * through the freed mailbox (or parked in it for good). */
typedef struct gone_ctx {
    conc_coro_mailbox_t *mb;
    int64_t deadline;
    int result;
} gone_ctx;

static int gone_waiter(void *p) {
    gone_ctx *g = (gone_ctx *)p;
    long v;
    g->result = conc_coro_mailbox_recv_until(g->mb, &v, g->deadline);
    return 0;
}

static int gone_main(void *p) {
    conc_queue_t *q = (conc_queue_t *)p;
    static const int want[3] = {ECANCELED, ETIMEDOUT, EPIPE};
    int64_t timeout = CONC_MS;
    for (int how = 0; how < 3; how++) {
        gone_ctx g = {NULL, how == 1 ? conc_deadline_in(timeout) : CONC_FOREVER, -1};
        TH_CHECK_EQ(conc_coro_mailbox_create(&g.mb, NULL, q), 0);
        conc_coro_t *w;
        TH_CHECK_EQ(conc_coro_spawn(NULL, gone_waiter, &g, NULL, &w), 0);
        /* it parks */
        TH_CHECK_EQ(conc_coro_yield(), 0);
        if (how == 1 && !conc_coro_is_parked(w)) { /* a slow machine: its deadline came first */
            TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, NULL), 0);
            conc_coro_release(w);
            TH_CHECK_EQ(g.result, ETIMEDOUT);
            conc_coro_mailbox_destroy(g.mb);
            timeout *= 2;
            how--;
            continue;
        }
        TH_CHECK(conc_coro_is_parked(w));
        long v = 7;
        if (how == 0)
            TH_CHECK_EQ(conc_coro_cancel(w), 0);
        else if (how == 2)
            TH_CHECK_EQ(conc_coro_mailbox_try_send(g.mb, &v), 0); /* the wake comes via the loop */
        /* how 1: until its timer fired */
        while (conc_coro_is_parked(w))
            TH_CHECK_EQ(conc_coro_yield(), 0);
        TH_CHECK_EQ(g.result, -1); /* woken, not run yet: it queued behind us */
        conc_coro_mailbox_destroy(g.mb);
        TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, NULL), 0);
        conc_coro_release(w);
        TH_CHECK_EQ(g.result, want[how]);
    }
    long v = 0;
    TH_CHECK_EQ(conc_queue_try_pop(q, &v), 0); /* the item stayed in the queue */
    TH_CHECK_EQ(v, 7);
    return 0;
}

static void bridge_mailbox_destroy_after_a_receivers_wait_ended(void) {
    conc_queue_t *q;
    TH_CHECK_EQ(conc_queue_create(&q, 2, sizeof(long)), 0);
    TH_CHECK_EQ(run_main(gone_main, q), 0);
    conc_queue_destroy(q);
}

/* Close, then destroy at once: the receivers close woke through the loop's inbox have not
 * run, and are still parked (the posted wake has not been drained). Destroy wakes and drops
 * them, and each receive returns EPIPE without touching the freed mailbox. It used to abort
 * ("coroutines still wait on the mailbox") although the CAVEATS named close as the way to
 * end the receives. Closed here, and closed by another thread (joined before the destroy). */
enum { CLOSE_GONE_RECEIVERS = 3 };

typedef struct close_gone_ctx {
    conc_queue_t *q;
    conc_coro_mailbox_t *mb;
    bool close_on_another_thread;
    int result[CLOSE_GONE_RECEIVERS];
} close_gone_ctx;

typedef struct close_gone_arg {
    close_gone_ctx *c;
    int i;
} close_gone_arg;

static int close_gone_recv(void *p) {
    close_gone_arg *a = (close_gone_arg *)p;
    long v;
    a->c->result[a->i] = conc_coro_mailbox_recv(a->c->mb, &v);
    return 0;
}

static void *close_gone_closer(void *p) {
    conc_coro_mailbox_close((conc_coro_mailbox_t *)p);
    return NULL;
}

static int close_gone_main(void *p) {
    close_gone_ctx *c = (close_gone_ctx *)p;
    TH_CHECK_EQ(conc_coro_mailbox_create(&c->mb, NULL, c->q), 0);
    close_gone_arg args[CLOSE_GONE_RECEIVERS];
    conc_coro_t *w[CLOSE_GONE_RECEIVERS];
    for (int i = 0; i < CLOSE_GONE_RECEIVERS; i++) {
        args[i].c = c;
        args[i].i = i;
        c->result[i] = -1;
        TH_CHECK_EQ(conc_coro_spawn(NULL, close_gone_recv, &args[i], NULL, &w[i]), 0);
    }
    for (int i = 0; i < CLOSE_GONE_RECEIVERS; i++)
        while (!conc_coro_is_parked(w[i]))
            TH_CHECK_EQ(conc_coro_yield(), 0);
    if (c->close_on_another_thread) {
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, close_gone_closer, c->mb), 0);
        TH_CHECK_EQ(pthread_join(t, NULL), 0); /* closed; its wake posted, not run */
    } else {
        conc_coro_mailbox_close(c->mb);
    }
    conc_coro_mailbox_destroy(c->mb);
    for (int i = 0; i < CLOSE_GONE_RECEIVERS; i++) {
        TH_CHECK_EQ(conc_coro_join(w[i], CONC_FOREVER, NULL), 0);
        conc_coro_release(w[i]);
        TH_CHECK_EQ(c->result[i], EPIPE);
    }
    return 0;
}

static void bridge_mailbox_close_then_destroy_wakes_the_parked_receivers(void) {
    for (int other = 0; other < 2; other++) {
        close_gone_ctx c;
        memset(&c, 0, sizeof c);
        c.close_on_another_thread = other != 0;
        TH_CHECK_EQ(conc_queue_create(&c.q, 2, sizeof(long)), 0);
        TH_CHECK_EQ(run_main(close_gone_main, &c), 0);
        conc_queue_destroy(c.q);
    }
}

/* A sender caught between claiming its slot and publishing it (preempted there, or a process
 * stopped there on a CONC_SHARED queue) must not stop the receiving scheduler's thread:
 * queue.h's try forms wait such a slot out with sched_yield, which here would freeze every
 * coroutine of the thread until the sender ran again (for good if it never does). try_recv
 * says EAGAIN and a receive parks; the sender's notify after its publish wakes it. The claim
 * is made by hand (a CAS of tail with no copy after it), and published by a helper thread
 * once the scheduler has shown it still runs coroutines (after a 5 s fallback the helper
 * publishes anyway, so that the old code, stuck in try_pop until then, fails instead of
 * hanging). */
typedef struct midcopy_ctx {
    conc_queue_t *q;
    conc_coro_mailbox_t *mb;
    uint64_t pos;     /* the claimed position */
    int go;           /* atomic: the scheduler ran on past the claimed slot */
    int went_on_time; /* written by the helper: go was set before the publish */
    int result;
    long got;
} midcopy_ctx;

static void *midcopy_publisher(void *p) {
    midcopy_ctx *m = (midcopy_ctx *)p;
    int64_t fallback = conc_deadline_in(5 * CONC_SEC);
    while (!conc_load(&m->go, CONC_ACQUIRE) && !conc_deadline_passed(fallback))
        sched_yield();
    m->went_on_time = conc_load(&m->go, CONC_ACQUIRE);
    long v = 42;
    conc__queue_move_one(m->q, m->pos, true, NULL, (const unsigned char *)&v); /* the copy */
    conc_coro_mailbox_notify(m->mb);
    return NULL;
}

static int midcopy_receiver(void *p) {
    midcopy_ctx *m = (midcopy_ctx *)p;
    m->result = conc_coro_mailbox_recv(m->mb, &m->got);
    return 0;
}

static int midcopy_main(void *p) {
    midcopy_ctx *m = (midcopy_ctx *)p;
    TH_CHECK_EQ(conc_coro_mailbox_create(&m->mb, NULL, m->q), 0);
    uint64_t tail = conc_load(&m->q->tail, CONC_RELAXED); /* a sender claims position 0 */
    TH_CHECK(conc_cas(&m->q->tail, &tail, tail + 1, CONC_SEQ_CST, CONC_RELAXED));
    m->pos = tail;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, midcopy_publisher, m), 0);
    long v = 0;
    TH_CHECK_EQ(conc_coro_mailbox_try_recv(m->mb, &v), EAGAIN);
    conc_coro_t *r;
    TH_CHECK_EQ(conc_coro_spawn(NULL, midcopy_receiver, m, NULL, &r), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the receiver parks, and we run again */
    TH_CHECK(conc_coro_is_parked(r));
    conc_store(&m->go, 1, CONC_RELEASE);
    TH_CHECK_EQ(conc_coro_join(r, CONC_FOREVER, NULL), 0);
    conc_coro_release(r);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK(m->went_on_time);
    TH_CHECK_EQ(m->result, 0);
    TH_CHECK_EQ(m->got, 42);
    conc_coro_mailbox_destroy(m->mb);
    return 0;
}

static void bridge_mailbox_receive_does_not_wait_on_a_sender_mid_copy(void) {
    midcopy_ctx m;
    memset(&m, 0, sizeof m);
    TH_CHECK_EQ(conc_queue_create(&m.q, 4, sizeof(long)), 0);
    TH_CHECK_EQ(run_main(midcopy_main, &m), 0);
    conc_queue_destroy(m.q);
}

/* The other side of the same: the caveats tell a coroutine of the receiving scheduler to send
 * with try_send, and queue.h's try_push waits out, with sched_yield, a consumer of q (another
 * thread popping q directly) caught between claiming the slot at the tail of a full queue and
 * finishing its copy out. try_send says EAGAIN instead, as for a full queue. The claim is made
 * by hand (a CAS of head with no copy after it) and finished by a helper thread once the
 * coroutine is past its try_send (after a 5 s fallback the helper finishes it anyway, so that
 * the old code, stuck in try_push until then, fails instead of hanging). */
static void *midcopy_consumer(void *p) {
    midcopy_ctx *m = (midcopy_ctx *)p;
    int64_t fallback = conc_deadline_in(5 * CONC_SEC);
    while (!conc_load(&m->go, CONC_ACQUIRE) && !conc_deadline_passed(fallback))
        sched_yield();
    m->went_on_time = conc_load(&m->go, CONC_ACQUIRE);
    conc__queue_move_one(m->q, m->pos, false, (unsigned char *)&m->got, NULL); /* the copy */
    return NULL;
}

static int midcopy_send_main(void *p) {
    midcopy_ctx *m = (midcopy_ctx *)p;
    TH_CHECK_EQ(conc_coro_mailbox_create(&m->mb, NULL, m->q), 0);
    long v = 1;
    TH_CHECK_EQ(conc_coro_mailbox_try_send(m->mb, &v), 0);
    v = 2;
    TH_CHECK_EQ(conc_coro_mailbox_try_send(m->mb, &v), 0);
    v = 3;
    TH_CHECK_EQ(conc_coro_mailbox_try_send(m->mb, &v), EAGAIN); /* full */
    /* a consumer claims item 1 */
    uint64_t head = conc_load(&m->q->head, CONC_RELAXED);
    TH_CHECK(conc_cas(&m->q->head, &head, head + 1, CONC_SEQ_CST, CONC_RELAXED));
    m->pos = head;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, midcopy_consumer, m), 0);
    TH_CHECK_EQ(conc_coro_mailbox_try_send(m->mb, &v), EAGAIN);
    conc_store(&m->go, 1, CONC_RELEASE);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK(m->went_on_time);
    TH_CHECK_EQ(m->got, 1);
    TH_CHECK_EQ(conc_coro_mailbox_try_send(m->mb, &v), 0); /* its slot is free now */
    TH_CHECK_EQ(conc_coro_mailbox_recv(m->mb, &v), 0);
    TH_CHECK_EQ(v, 2);
    TH_CHECK_EQ(conc_coro_mailbox_recv(m->mb, &v), 0);
    TH_CHECK_EQ(v, 3);
    conc_coro_mailbox_destroy(m->mb);
    return 0;
}

static void bridge_mailbox_try_send_does_not_wait_on_a_consumer_mid_copy(void) {
    midcopy_ctx m;
    memset(&m, 0, sizeof m);
    TH_CHECK_EQ(conc_queue_create(&m.q, 2, sizeof(long)), 0);
    TH_CHECK_EQ(run_main(midcopy_send_main, &m), 0);
    conc_queue_destroy(m.q);
}

/* conc_sched_destroy after a partial run (a group destroyed from outside any coroutine runs the
 * loop only until that group is empty) finds a receiver parked on a mailbox and an await
 * parked on a future another thread completes later: it cancels both (each undoes its own
 * pin) and frees the scheduler; the completion that comes later finds nothing of it. It used
 * to abort (more unholds than holds), or to post into the freed scheduler. */
typedef struct late_destroy_ctx {
    conc_future_t *f;
    conc_coro_mailbox_t *mb;
    int await_result, recv_result;
    int cancelled; /* atomic: the awaiter saw its cancel; the completer may go */
} late_destroy_ctx;

static int ld_awaiter(void *p) {
    late_destroy_ctx *c = (late_destroy_ctx *)p;
    c->await_result = conc_coro_await(c->f, CONC_FOREVER);
    __atomic_store_n(&c->cancelled, 1, __ATOMIC_RELEASE);
    return 0;
}

static int ld_receiver(void *p) {
    late_destroy_ctx *c = (late_destroy_ctx *)p;
    long v;
    c->recv_result = conc_coro_mailbox_recv(c->mb, &v);
    return 0;
}

static int ld_yielder(void *p) {
    (void)p;
    (void)conc_coro_yield(); /* the others park before the group is empty */
    return 0;
}

static void *ld_completer(void *p) {
    late_destroy_ctx *c = (late_destroy_ctx *)p;
    while (!__atomic_load_n(&c->cancelled, __ATOMIC_ACQUIRE))
        th_sleep_ns(CONC_US * 100);
    TH_CHECK_EQ(conc_future_complete(c->f, 0, NULL), 0);
    conc_future_release(c->f); /* the reference handed to this thread */
    return NULL;
}

static void bridge_sched_destroy_with_a_parked_await_and_receiver(void) {
    late_destroy_ctx c;
    memset(&c, 0, sizeof c);
    c.await_result = c.recv_result = -1;
    conc_queue_t *q;
    conc_sched_t *s;
    conc_group_t *g;
    TH_CHECK_EQ(conc_queue_create(&q, 2, sizeof(long)), 0);
    TH_CHECK_EQ(conc_future_create(&c.f), 0);
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_mailbox_create(&c.mb, s, q), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, ld_awaiter, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, ld_receiver, &c, NULL, NULL), 0);
    TH_CHECK_EQ(conc_group_create(s, &g), 0);
    TH_CHECK_EQ(conc_group_spawn(g, ld_yielder, NULL, NULL), 0);
    conc_group_destroy(g); /* runs the loop until the yielder is done: both others park */
    TH_CHECK_EQ(c.await_result, -1);
    TH_CHECK_EQ(c.recv_result, -1);
    conc_future_retain(c.f);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, ld_completer, &c), 0);
    conc_sched_destroy(s); /* used to abort (more unholds than holds), or free s too soon */
    TH_CHECK_EQ(c.await_result, ECANCELED);
    TH_CHECK_EQ(c.recv_result, ECANCELED);
    pthread_join(t, NULL);
    conc_coro_mailbox_destroy(c.mb);
    conc_queue_destroy(q);
    conc_future_release(c.f);
}

/* An await that ended by its deadline or a cancel takes its callback off the future and its
 * pin off the scheduler: the run ends while the future is still pending, and destroy does not
 * wait for a future nobody awaits any more (it used to keep the pin until the future
 * completed: forever for a promise released pending). */
static unsigned holds_of(conc_sched_t *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    TH_CHECK(out != NULL);
    conc_sched_dump(s, out);
    fclose(out);
    const char *at = strstr(buf, " holds");
    TH_CHECK(at != NULL);
    while (at > buf && at[-1] >= '0' && at[-1] <= '9')
        at--;
    unsigned n = (unsigned)strtoul(at, NULL, 10);
    free(buf);
    return n;
}

static int ended_awaiter(void *p) {
    return conc_coro_await((conc_future_t *)p, CONC_FOREVER);
}

static int ended_main(void *p) {
    conc_future_t *f = (conc_future_t *)p;
    conc_sched_t *s = conc_coro_sched(conc_coro_self());
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_await(f, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(holds_of(s), 0u);
    conc_coro_t *w;
    TH_CHECK_EQ(conc_coro_spawn(NULL, ended_awaiter, f, NULL, &w), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* parked in the await: pinned */
    TH_CHECK_EQ(holds_of(s), 1u);
    TH_CHECK_EQ(conc_coro_cancel(w), 0);
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(w, CONC_FOREVER, &st), 0);
    conc_coro_release(w);
    TH_CHECK_EQ(st, ECANCELED);
    TH_CHECK_EQ(holds_of(s), 0u);
    return 0;
}

static int ended_yielder(void *p) {
    (void)p;
    (void)conc_coro_yield();
    return 0;
}

static void bridge_await_that_ended_leaves_nothing_behind(void) {
    conc_future_t *f;
    TH_CHECK_EQ(conc_future_create(&f), 0);
    TH_CHECK_EQ(run_main(ended_main, f), 0); /* returns with f still pending */
    TH_CHECK(!conc_future_is_done(f));
    TH_CHECK_EQ(conc_future_complete(f, 0, NULL), 0); /* runs nothing of the ended awaits */
    conc_future_release(f);
    /* destroy after a partial run: the parked await is cancelled, its future never completes */
    TH_CHECK_EQ(conc_future_create(&f), 0);
    conc_sched_t *s;
    conc_group_t *g;
    TH_CHECK_EQ(conc_sched_create(&s, NULL), 0);
    TH_CHECK_EQ(conc_coro_spawn(s, ended_awaiter, f, NULL, NULL), 0);
    TH_CHECK_EQ(conc_group_create(s, &g), 0);
    TH_CHECK_EQ(conc_group_spawn(g, ended_yielder, NULL, NULL), 0);
    conc_group_destroy(g);
    TH_CHECK_EQ(holds_of(s), 1u);
    conc_sched_destroy(s);  /* used to wait for f's completion, which never comes */
    conc_future_release(f); /* pending, with nothing left on it */
}

/* A thread that ends inside conc_sched_run (here pthread_cancel while its loop sleeps)
 * orphans its scheduler; a coroutine of it was parked in conc_coro_await of a promise, so the
 * scheduler is pinned for the completion's message. Once the promise is completed, that
 * message has come, and destroy from another thread frees the scheduler: it used to abort
 * ("still had to post to it"), since only the loop, which never runs again, ended the pin.
 * In a child process (the cancelled thread's unwinding leaves the orphan's stacks behind). */
typedef struct orphan_await_ctx {
    conc_sched_t *s;
    conc_future_t *f;
    int parked;
} orphan_await_ctx;

static int orphan_awaiter(void *arg) {
    orphan_await_ctx *c = (orphan_await_ctx *)arg;
    __atomic_store_n(&c->parked, 1, __ATOMIC_RELEASE); /* the await parks it: no syscall */
    return conc_coro_await(c->f, CONC_FOREVER);
}

static void *orphan_await_thread(void *arg) {
    orphan_await_ctx *c = (orphan_await_ctx *)arg;
    if (conc_coro_spawn(c->s, orphan_awaiter, c, NULL, NULL) != 0)
        return (void *)(intptr_t)1;
    int e = conc_sched_run(c->s); /* never returns: cancelled in its epoll_wait */
    return (void *)(intptr_t)(100 + e);
}

static void orphan_await_child(void) {
    orphan_await_ctx c;
    memset(&c, 0, sizeof c);
    if (conc_future_create(&c.f) != 0 || conc_sched_create(&c.s, NULL) != 0)
        _exit(10);
    pthread_t t;
    if (pthread_create(&t, NULL, orphan_await_thread, &c) != 0)
        _exit(11);
    while (!__atomic_load_n(&c.parked, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_cancel(t); /* acts at the loop's epoll_wait, the next cancellation point */
    void *r = NULL;
    pthread_join(t, &r);
    if (r != PTHREAD_CANCELED)
        _exit(12);
    if (conc_future_complete(c.f, 0, NULL) != 0) /* posts to the orphan: its last message */
        _exit(13);
    conc_sched_destroy(c.s); /* aborted here */
    conc_future_release(c.f);
    _exit(0);
}

static void bridge_orphaned_scheduler_with_a_completed_await_is_destroyed(void) {
#if defined(CONC_ASAN)
    TH_SKIP("ASan's thread teardown after a cancellation unwind trips on the unwound frames' "
            "stale stack poison (with or without conc)");
#endif
    char buf[2048];
    int status = th_run_child_capturing_stderr(orphan_await_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status,
                 buf);
}

/* A receiver that got the last item, or EPIPE, destroys the mailbox at once, while the send
 * or close that gave it may still be in its notify. That notify read (and could swap) the
 * freed mailbox: ASan's heap-use-after-free, and in plain builds heap corruption (7 of 12
 * runs of 3,000 rounds). Destroy now waits such calls out. Hogs beside keep both CPUs busy,
 * so that the feeder is preempted between its push or close and its notify. */
typedef struct feed_rounds {
    conc_coro_mailbox_t *mb; /* plain: written before go's release, read after its acquire */
    unsigned go, done;       /* atomics: the round the feeder may start, and has finished */
    unsigned rounds;
    int stop; /* atomic: the hogs' end */
} feed_rounds;

static void *feed_each_round(void *arg) {
    feed_rounds *r = (feed_rounds *)arg;
    for (unsigned it = 1; it <= r->rounds; it++) {
        while (__atomic_load_n(&r->go, __ATOMIC_ACQUIRE) != it)
            sched_yield();
        int v = (int)it;
        if (it & 1)
            conc_coro_mailbox_close(r->mb);
        else
            TH_CHECK_EQ(conc_coro_mailbox_send(r->mb, &v), 0);
        __atomic_store_n(&r->done, it, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *hog_until_stopped(void *arg) {
    feed_rounds *r = (feed_rounds *)arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        for (volatile int i = 0; i < 10000; i++) {
        }
        sched_yield();
    }
    return NULL;
}

static int receive_then_destroy(void *arg) {
    feed_rounds *r = (feed_rounds *)arg;
    for (unsigned it = 1; it <= r->rounds; it++) {
        conc_queue_t *q;
        conc_coro_mailbox_t *mb;
        TH_CHECK_EQ(conc_queue_create(&q, 4, sizeof(int)), 0);
        TH_CHECK_EQ(conc_coro_mailbox_create(&mb, NULL, q), 0);
        r->mb = mb;
        __atomic_store_n(&r->go, it, __ATOMIC_RELEASE);
        int v = 0, e;
        if (it % 4 < 2) { /* polling, or parked until the notify's wake */
            while ((e = conc_coro_mailbox_try_recv(mb, &v)) == EAGAIN)
                TH_CHECK_EQ(conc_coro_yield(), 0);
        } else {
            e = conc_coro_mailbox_recv(mb, &v);
        }
        TH_CHECK_EQ(e, (it & 1) ? EPIPE : 0);
        TH_CHECK_EQ(v, (it & 1) ? 0 : (int)it);
        conc_coro_mailbox_destroy(mb); /* the feeder may not have returned yet */
        while (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) != it)
            TH_CHECK_EQ(conc_coro_yield(), 0);
        conc_queue_destroy(q); /* q is ours: once the feeder has returned */
    }
    return 0;
}

static void bridge_mailbox_destroyed_as_soon_as_the_last_item_or_epipe_is_seen(void) {
    feed_rounds r;
    memset(&r, 0, sizeof r);
    r.rounds = (unsigned)th_iters(3000);
    pthread_t feeder, hogs[2];
    TH_CHECK_EQ(pthread_create(&feeder, NULL, feed_each_round, &r), 0);
    for (int i = 0; i < 2; i++)
        TH_CHECK_EQ(pthread_create(&hogs[i], NULL, hog_until_stopped, &r), 0);
    TH_CHECK_EQ(run_main(receive_then_destroy, &r), 0);
    TH_CHECK_EQ(pthread_join(feeder, NULL), 0);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 2; i++)
        TH_CHECK_EQ(pthread_join(hogs[i], NULL), 0);
}

TH_MAIN("coro_bridge", TH_CASE(bridge_await_executor_future_without_blocking),
        TH_CASE(bridge_await_timeout_then_late_completion),
        TH_CASE(bridge_await_cancelled_while_parked), TH_CASE(bridge_await_fork_pool_future),
        TH_CASE_T(bridge_stress_many_threads_complete_many_schedulers_await, 120),
        TH_CASE_T(bridge_mailbox_every_item_once_from_many_threads, 120),
        TH_CASE(bridge_mailbox_edges_deadline_cancel_close),
        TH_CASE(bridge_sched_destroy_with_a_parked_await_and_receiver),
        TH_CASE(bridge_await_that_ended_leaves_nothing_behind),
        TH_CASE(bridge_mailbox_destroy_after_a_receivers_wait_ended),
        TH_CASE(bridge_mailbox_close_then_destroy_wakes_the_parked_receivers),
        TH_CASE(bridge_mailbox_receive_does_not_wait_on_a_sender_mid_copy),
        TH_CASE(bridge_mailbox_try_send_does_not_wait_on_a_consumer_mid_copy),
        TH_CASE(bridge_orphaned_scheduler_with_a_completed_await_is_destroyed),
        TH_CASE_T(bridge_mailbox_destroyed_as_soon_as_the_last_item_or_epipe_is_seen, 120))

/* tests/test_chan.c - channels, select, coroutine locks, semaphores, events; accept/connect
 * SPDX-License-Identifier: MIT */
#include "conc/chan.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "harness.h"

/* Runs fn as the only top-level coroutine of a fresh scheduler; returns its status. */
static int run_main(conc_coro_fn fn, void *arg) {
    int status = -1;
    TH_CHECK_EQ(conc_run(fn, arg, &status), 0);
    return status;
}

typedef struct log_t {
    int v[4096];
    int n;
} log_t;

static void log_add(log_t *l, int x) {
    TH_CHECK(l->n < (int)(sizeof l->v / sizeof l->v[0]));
    l->v[l->n++] = x;
}

static conc_coro_t *spawn_named(conc_coro_fn fn, void *arg, const char *name) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = name;
    conc_coro_t *c;
    TH_CHECK_EQ(conc_coro_spawn(NULL, fn, arg, &o, &c), 0);
    return c;
}

static int join_ok(conc_coro_t *c) {
    int st = -1;
    TH_CHECK_EQ(conc_coro_join(c, CONC_FOREVER, &st), 0);
    conc_coro_release(c);
    return st;
}

/* ---- channels: basics ---------------------------------------------------------------------- */

static int bad_input_main(void *arg) {
    (void)arg;
    conc_chan_t *ch;
    TH_CHECK_EQ(conc_chan_create(NULL, 1, 4), EINVAL);
    TH_CHECK_EQ(conc_chan_create(&ch, 1, 0), EINVAL);
    TH_CHECK(ch == NULL);
    TH_CHECK_EQ(conc_chan_create(&ch, SIZE_MAX / 2, 4), EINVAL);
    TH_CHECK_EQ(conc_chan_create(&ch, 2, sizeof(int)), 0);
    int x = 1;
    TH_CHECK_EQ(conc_chan_send(NULL, &x), EINVAL);
    TH_CHECK_EQ(conc_chan_send(ch, NULL), EINVAL);
    TH_CHECK_EQ(conc_chan_recv(ch, NULL), EINVAL);
    conc_chan_op_t op = {ch, 3, &x};
    size_t chosen = 0;
    TH_CHECK_EQ(conc_chan_select(&op, 1, CONC_FOREVER, &chosen), EINVAL);
    TH_CHECK_EQ(chosen, SIZE_MAX);
    TH_CHECK_EQ(conc_chan_select(&op, 1, CONC_FOREVER, NULL), EINVAL);
    TH_CHECK_EQ(conc_chan_select(NULL, 1, CONC_FOREVER, &chosen), EINVAL);
    conc_coro_lock_t l = CONC_CORO_LOCK_INIT;
    TH_CHECK_EQ(conc_coro_lock_release(&l), EPERM);
    TH_CHECK_EQ(conc_coro_lock_acquire(NULL), EINVAL);
    conc_coro_sem_t s;
    TH_CHECK_EQ(conc_coro_sem_init(&s, 3, 2), EINVAL);
    conc_chan_destroy(ch);
    return 0;
}

static void chan_bad_input_gets_error_codes(void) {
    TH_CHECK_EQ(run_main(bad_input_main, NULL), 0);
    /* every call that may park needs a coroutine */
    conc_chan_t *ch;
    TH_CHECK_EQ(conc_chan_create(&ch, 1, sizeof(int)), 0);
    int x = 0;
    size_t chosen;
    conc_chan_op_t op = {ch, CONC_CHAN_RECV, &x};
    TH_CHECK_EQ(conc_chan_send(ch, &x), EPERM);
    TH_CHECK_EQ(conc_chan_try_send(ch, &x), EPERM); /* try forms too (chan.h ERRORS) */
    TH_CHECK_EQ(conc_chan_size(ch), (size_t)0);
    TH_CHECK_EQ(conc_chan_try_recv(ch, &x), EPERM);
    TH_CHECK_EQ(conc_chan_select(&op, 1, 0, &chosen), EPERM);
    TH_CHECK_EQ(conc_chan_try_select(&op, 1, &chosen), EPERM);
    conc_coro_lock_t l = CONC_CORO_LOCK_INIT;
    TH_CHECK_EQ(conc_coro_lock_acquire(&l), EPERM);
    TH_CHECK_EQ(conc_coro_lock_try_acquire(&l), EPERM);
    TH_CHECK(!conc_coro_lock_is_locked(&l));
    conc_coro_sem_t sem;
    TH_CHECK_EQ(conc_coro_sem_init(&sem, 1, 0), 0);
    TH_CHECK_EQ(conc_coro_sem_try_acquire(&sem), EPERM);
    TH_CHECK_EQ(conc_coro_sem_release(&sem, 1), 0); /* release: allowed outside */
    TH_CHECK_EQ(conc_coro_sem_value(&sem), 2);
    conc_coro_event_t e = CONC_CORO_EVENT_INIT;
    TH_CHECK_EQ(conc_coro_event_wait(&e), EPERM);
    conc_coro_event_set(&e); /* set: allowed outside; a wait on a set event still needs one */
    TH_CHECK_EQ(conc_coro_event_wait(&e), EPERM);
    conc_chan_close(ch); /* outside any coroutine: allowed */
    TH_CHECK(conc_chan_is_closed(ch));
    conc_chan_destroy(ch);
}

static int buffered_main(void *arg) {
    (void)arg;
    conc_chan_t *ch;
    TH_CHECK_EQ(conc_chan_create(&ch, 3, sizeof(int)), 0);
    TH_CHECK_EQ(conc_chan_capacity(ch), 3);
    int x;
    TH_CHECK_EQ(conc_chan_try_recv(ch, &x), EAGAIN);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_chan_try_send(ch, &i), 0);
    TH_CHECK_EQ(conc_chan_size(ch), 3);
    x = 99;
    TH_CHECK_EQ(conc_chan_try_send(ch, &x), EAGAIN); /* exactly capacity items */
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_chan_send_until(ch, &x, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_chan_send_until(ch, &x, 0), ETIMEDOUT); /* past deadline: tries once */
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(conc_chan_recv(ch, &x), 0);
        TH_CHECK_EQ(x, i); /* FIFO, and the timed-out item never went in */
    }
    TH_CHECK_EQ(conc_chan_recv_until(ch, &x, 0), ETIMEDOUT);
    /* wrap around the ring several times */
    for (int i = 0; i < 10; i++) {
        TH_CHECK_EQ(conc_chan_send(ch, &i), 0);
        TH_CHECK_EQ(conc_chan_recv(ch, &x), 0);
        TH_CHECK_EQ(x, i);
    }
    conc_chan_destroy(ch);
    return 0;
}

static void chan_buffered_fifo_try_and_deadlines(void) {
    TH_CHECK_EQ(run_main(buffered_main, NULL), 0);
}

/* A rendezvous send completes only when its receiver takes the item. */
typedef struct rv_ctx {
    conc_chan_t *ch;
    log_t log;
} rv_ctx;

static int rv_sender(void *p) {
    rv_ctx *r = (rv_ctx *)p;
    for (int i = 0; i < 3; i++) {
        log_add(&r->log, 100 + i);
        TH_CHECK_EQ(conc_chan_send(r->ch, &i), 0);
        log_add(&r->log, 200 + i); /* after the receiver took it */
    }
    return 0;
}

static int rv_main(void *p) {
    rv_ctx *r = (rv_ctx *)p;
    TH_CHECK_EQ(conc_chan_create(&r->ch, 0, sizeof(int)), 0);
    int x = 5;
    TH_CHECK_EQ(conc_chan_try_send(r->ch, &x), EAGAIN); /* nobody receiving */
    conc_coro_t *s = spawn_named(rv_sender, r, "sender");
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(conc_coro_yield(), 0); /* the sender parks */
        TH_CHECK_EQ(conc_chan_size(r->ch), 0);
        log_add(&r->log, 300 + i);
        TH_CHECK_EQ(conc_chan_recv(r->ch, &x), 0);
        TH_CHECK_EQ(x, i);
    }
    TH_CHECK_EQ(join_ok(s), 0);
    conc_chan_destroy(r->ch);
    return 0;
}

static void chan_rendezvous_send_waits_for_its_receiver(void) {
    rv_ctx r;
    memset(&r, 0, sizeof r);
    TH_CHECK_EQ(run_main(rv_main, &r), 0);
    static const int want[] = {100, 300, 200, 101, 301, 201, 102, 302, 202};
    TH_CHECK_EQ(r.log.n, 9);
    for (int i = 0; i < 9; i++)
        TH_CHECK_EQ(r.log.v[i], want[i]);
}

/* ---- close --------------------------------------------------------------------------------- */

typedef struct close_ctx {
    conc_chan_t *ch;
    int results[16];
    int values[16];
} close_ctx;

typedef struct close_arg {
    close_ctx *c;
    int i;
} close_arg;

static int close_sender(void *p) {
    close_arg *a = (close_arg *)p;
    int v = 1000 + a->i;
    a->c->results[a->i] = conc_chan_send(a->c->ch, &v);
    return 0;
}

static int close_receiver(void *p) {
    close_arg *a = (close_arg *)p;
    a->c->values[a->i] = -1;
    a->c->results[a->i] = conc_chan_recv(a->c->ch, &a->c->values[a->i]);
    return 0;
}

static int close_main(void *p) {
    close_ctx *c = (close_ctx *)p;
    close_arg args[16];
    conc_coro_t *h[16];
    /* blocked senders on a full buffered channel: the buffer drains, then EPIPE */
    TH_CHECK_EQ(conc_chan_create(&c->ch, 2, sizeof(int)), 0);
    int x = 1;
    TH_CHECK_EQ(conc_chan_send(c->ch, &x), 0);
    x = 2;
    TH_CHECK_EQ(conc_chan_send(c->ch, &x), 0);
    for (int i = 0; i < 4; i++) {
        args[i].c = c;
        args[i].i = i;
        h[i] = spawn_named(close_sender, &args[i], NULL);
    }
    TH_CHECK_EQ(conc_coro_yield(), 0); /* all four park */
    conc_chan_close(c->ch);
    conc_chan_close(c->ch); /* idempotent */
    for (int i = 0; i < 4; i++)
        join_ok(h[i]);
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(c->results[i], EPIPE);
    TH_CHECK_EQ(conc_chan_send(c->ch, &x), EPIPE);
    TH_CHECK_EQ(conc_chan_try_send(c->ch, &x), EPIPE);
    TH_CHECK_EQ(conc_chan_recv(c->ch, &x), 0);
    TH_CHECK_EQ(x, 1);
    TH_CHECK_EQ(conc_chan_try_recv(c->ch, &x), 0);
    TH_CHECK_EQ(x, 2);
    TH_CHECK_EQ(conc_chan_recv(c->ch, &x), EPIPE);
    TH_CHECK_EQ(conc_chan_try_recv(c->ch, &x), EPIPE);
    conc_chan_destroy(c->ch);
    /* blocked receivers on a rendezvous channel: every one wakes with EPIPE */
    TH_CHECK_EQ(conc_chan_create(&c->ch, 0, sizeof(int)), 0);
    for (int i = 0; i < 5; i++) {
        args[i].c = c;
        args[i].i = i;
        h[i] = spawn_named(close_receiver, &args[i], NULL);
    }
    TH_CHECK_EQ(conc_coro_yield(), 0);
    x = 7;
    TH_CHECK_EQ(conc_chan_send(c->ch, &x), 0); /* the first receiver gets it */
    conc_chan_close(c->ch);
    for (int i = 0; i < 5; i++)
        join_ok(h[i]);
    TH_CHECK_EQ(c->results[0], 0);
    TH_CHECK_EQ(c->values[0], 7);
    for (int i = 1; i < 5; i++) {
        TH_CHECK_EQ(c->results[i], EPIPE);
        TH_CHECK_EQ(c->values[i], -1); /* untouched */
    }
    conc_chan_destroy(c->ch);
    return 0;
}

static void chan_close_wakes_every_waiter_receivers_drain(void) {
    close_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(run_main(close_main, &c), 0);
}

/* ---- cancel and timeouts while parked ------------------------------------------------------ */

typedef struct park_ctx {
    conc_chan_t *ch;
    conc_coro_lock_t lock;
    conc_coro_sem_t sem;
    conc_coro_event_t ev;
    int result;
    int value;
} park_ctx;

static int park_send(void *p) {
    park_ctx *k = (park_ctx *)p;
    int v = 42;
    k->result = conc_chan_send(k->ch, &v);
    return 0;
}
static int park_recv(void *p) {
    park_ctx *k = (park_ctx *)p;
    k->result = conc_chan_recv(k->ch, &k->value);
    return 0;
}
static int park_select(void *p) {
    park_ctx *k = (park_ctx *)p;
    size_t chosen = 0;
    int v = 43;
    conc_chan_op_t ops[2] = {{k->ch, CONC_CHAN_RECV, &k->value}, {k->ch, CONC_CHAN_SEND, &v}};
    k->result = conc_chan_select(ops, 2, CONC_FOREVER, &chosen);
    if (k->result == ECANCELED)
        TH_CHECK_EQ(chosen, SIZE_MAX);
    return 0;
}
static int park_lock(void *p) {
    park_ctx *k = (park_ctx *)p;
    k->result = conc_coro_lock_acquire(&k->lock);
    return 0;
}
static int park_sem(void *p) {
    park_ctx *k = (park_ctx *)p;
    k->result = conc_coro_sem_acquire(&k->sem);
    return 0;
}
static int park_event(void *p) {
    park_ctx *k = (park_ctx *)p;
    k->result = conc_coro_event_wait(&k->ev);
    return 0;
}

static int cancel_main(void *arg) {
    (void)arg;
    conc_coro_fn fns[] = {park_send, park_recv, park_select, park_lock, park_sem, park_event};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        park_ctx k;
        memset(&k, 0, sizeof k);
        k.value = -1;
        TH_CHECK_EQ(conc_chan_create(&k.ch, 0, sizeof(int)), 0);
        conc_coro_lock_init(&k.lock);
        TH_CHECK_EQ(conc_coro_lock_acquire(&k.lock), 0); /* held by us */
        TH_CHECK_EQ(conc_coro_sem_init(&k.sem, 0, 1), 0);
        conc_coro_event_init(&k.ev);
        conc_coro_t *c = spawn_named(fns[i], &k, NULL);
        TH_CHECK_EQ(conc_coro_yield(), 0); /* it parks */
        TH_CHECK_EQ(conc_coro_cancel(c), 0);
        join_ok(c);
        TH_CHECK_EQ(k.result, ECANCELED);
        /* nothing was handed to it, and its waiter is gone from every queue */
        TH_CHECK_EQ(k.value, -1);
        int v = 1;
        TH_CHECK_EQ(conc_chan_try_send(k.ch, &v), EAGAIN);
        TH_CHECK_EQ(conc_chan_try_recv(k.ch, &v), EAGAIN);
        TH_CHECK_EQ(conc_coro_lock_release(&k.lock), 0);
        TH_CHECK(!conc_coro_lock_is_locked(&k.lock));
        TH_CHECK_EQ(conc_coro_sem_release(&k.sem, 1), 0);
        TH_CHECK_EQ(conc_coro_sem_value(&k.sem), 1);
        conc_chan_destroy(k.ch);
    }
    return 0;
}

static void chan_cancel_while_parked_in_each_call_hands_nothing(void) {
    TH_CHECK_EQ(run_main(cancel_main, NULL), 0);
}

/* A handoff that came before the cancel wins: the item is received, ECANCELED comes next. */
static int handoff_then_cancel_main(void *arg) {
    (void)arg;
    park_ctx k;
    memset(&k, 0, sizeof k);
    TH_CHECK_EQ(conc_chan_create(&k.ch, 0, sizeof(int)), 0);
    conc_coro_t *c = spawn_named(park_recv, &k, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    int v = 9;
    TH_CHECK_EQ(conc_chan_send(k.ch, &v), 0); /* handed over: c is runnable with 0 */
    TH_CHECK_EQ(conc_coro_cancel(c), 0);
    join_ok(c);
    TH_CHECK_EQ(k.result, 0);
    TH_CHECK_EQ(k.value, 9);
    conc_chan_destroy(k.ch);
    return 0;
}

static void chan_handoff_before_cancel_wins(void) {
    TH_CHECK_EQ(run_main(handoff_then_cancel_main, NULL), 0);
}

/* A timed-out waiter still linked (runnable, not yet run) is skipped by the next handoff. */
typedef struct stale_ctx {
    conc_chan_t *ch;
    int r1, r2, v1, v2;
} stale_ctx;

static int stale_first(void *p) {
    stale_ctx *s = (stale_ctx *)p;
    s->v1 = -1;
    s->r1 = conc_chan_recv_until(s->ch, &s->v1, conc_deadline_in(CONC_MS));
    return 0;
}
static int stale_second(void *p) {
    stale_ctx *s = (stale_ctx *)p;
    s->v2 = -1;
    s->r2 = conc_chan_recv(s->ch, &s->v2);
    return 0;
}

static int stale_main(void *p) {
    stale_ctx *s = (stale_ctx *)p;
    TH_CHECK_EQ(conc_chan_create(&s->ch, 0, sizeof(int)), 0);
    conc_coro_t *a = spawn_named(stale_first, s, NULL);
    conc_coro_t *b = spawn_named(stale_second, s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* both park, a first */
    /* Yield until a's timer has fired: a is then queued behind us, runnable with ETIMEDOUT
     * and still linked in the channel's queue when we send. */
    while (conc_coro_is_parked(a))
        TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK(conc_coro_is_parked(b));
    int v = 5;
    TH_CHECK_EQ(conc_chan_send(s->ch, &v), 0);
    join_ok(a);
    conc_chan_close(s->ch);
    join_ok(b);
    TH_CHECK_EQ(s->r1, ETIMEDOUT);
    TH_CHECK_EQ(s->v1, -1);
    TH_CHECK_EQ(s->r2, 0);
    TH_CHECK_EQ(s->v2, 5);
    conc_chan_destroy(s->ch);
    return 0;
}

static void chan_timed_out_waiter_is_skipped_by_the_handoff(void) {
    stale_ctx s;
    memset(&s, 0, sizeof s);
    TH_CHECK_EQ(run_main(stale_main, &s), 0);
}

/* ---- select -------------------------------------------------------------------------------- */

static int select_fair_main(void *arg) {
    (void)arg;
    enum { N = 3, ROUNDS = 6000 };
    conc_chan_t *ch[N];
    for (int i = 0; i < N; i++)
        TH_CHECK_EQ(conc_chan_create(&ch[i], 1, sizeof(int)), 0);
    int counts[N] = {0};
    int x = 0, got = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) /* keep every channel ready */
            if (conc_chan_size(ch[i]) == 0)
                TH_CHECK_EQ(conc_chan_try_send(ch[i], &i), 0);
        conc_chan_op_t ops[N + 1];
        for (int i = 0; i < N; i++) {
            ops[i].chan = ch[i];
            ops[i].dir = CONC_CHAN_RECV;
            ops[i].item = &got;
        }
        ops[N].chan = NULL; /* switched off: never chosen */
        ops[N].dir = CONC_CHAN_RECV;
        ops[N].item = &x;
        size_t c = 99;
        TH_CHECK_EQ(conc_chan_select(ops, N + 1, CONC_FOREVER, &c), 0);
        TH_CHECK(c < N);
        TH_CHECK_EQ(got, (int)c);
        counts[c]++;
    }
    /* each near 2000; a fixed or rotating-start pick would fail one of these bounds */
    for (int i = 0; i < N; i++)
        TH_CHECK_MSG(counts[i] > ROUNDS / N / 2 && counts[i] < ROUNDS / N * 3 / 2,
                     "counts %d %d %d", counts[0], counts[1], counts[2]);
    /* ready ops at indices 0 and 1 of 4 (a random start plus a scan gives index 0 3/4) */
    int c01[2] = {0, 0};
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 2; i++)
            if (conc_chan_size(ch[i]) == 0)
                TH_CHECK_EQ(conc_chan_try_send(ch[i], &i), 0);
        while (conc_chan_size(ch[2]))
            TH_CHECK_EQ(conc_chan_try_recv(ch[2], &x), 0);
        conc_chan_op_t ops[4] = {{ch[0], CONC_CHAN_RECV, &got},
                                 {ch[1], CONC_CHAN_RECV, &got},
                                 {ch[2], CONC_CHAN_RECV, &got},
                                 {NULL, CONC_CHAN_RECV, &got}};
        size_t c;
        TH_CHECK_EQ(conc_chan_try_select(ops, 4, &c), 0);
        TH_CHECK(c < 2);
        c01[c]++;
    }
    TH_CHECK_MSG(c01[0] > ROUNDS * 2 / 5 && c01[1] > ROUNDS * 2 / 5, "%d %d", c01[0], c01[1]);
    for (int i = 0; i < N; i++)
        conc_chan_destroy(ch[i]);
    return 0;
}

/* A select that completed on one channel leaves its waiter on the other until it runs
 * again; destroying that other channel meanwhile is no misuse (nobody waits on it). And a
 * coroutine still parked on a channel makes its destroy abort (it would be freed under it). */
typedef struct stale_select {
    conc_chan_t *a, *b;
    size_t chosen;
    int got, result;
} stale_select;

static int stale_selector(void *p) {
    stale_select *x = (stale_select *)p;
    int va = 0, vb = 0;
    conc_chan_op_t ops[2] = {{x->a, CONC_CHAN_RECV, &va}, {x->b, CONC_CHAN_RECV, &vb}};
    x->result = conc_chan_select(ops, 2, CONC_FOREVER, &x->chosen);
    x->got = va;
    return 0;
}

static int stale_select_main(void *p) {
    stale_select *x = (stale_select *)p;
    TH_CHECK_EQ(conc_chan_create(&x->a, 0, sizeof(int)), 0);
    TH_CHECK_EQ(conc_chan_create(&x->b, 0, sizeof(int)), 0);
    conc_coro_t *h = spawn_named(stale_selector, x, "selector");
    TH_CHECK_EQ(conc_coro_yield(), 0); /* it parks on both */
    int v = 7;
    TH_CHECK_EQ(conc_chan_send(x->a, &v), 0); /* its select is over; it has not run yet */
    conc_chan_destroy(x->b);                  /* its waiter on b is still linked */
    join_ok(h);
    TH_CHECK_EQ(x->result, 0);
    TH_CHECK_EQ(x->chosen, 0);
    TH_CHECK_EQ(x->got, 7);
    conc_chan_destroy(x->a);
    return 0;
}

static int parked_receiver(void *p) {
    int v;
    return conc_chan_recv((conc_chan_t *)p, &v);
}

static int destroy_under_parked_main(void *p) {
    (void)p;
    conc_chan_t *ch;
    if (conc_chan_create(&ch, 0, sizeof(int)) != 0)
        _exit(2);
    spawn_named(parked_receiver, ch, "receiver");
    (void)conc_coro_yield(); /* it parks */
    conc_chan_destroy(ch);   /* aborts */
    return 0;
}

static void destroy_under_parked_child(void) {
    int status = -1;
    int e = conc_run(destroy_under_parked_main, NULL, &status);
    (void)e;
    _exit(3); /* not reached: destroy aborts */
}

static void chan_destroy_after_a_finished_select_and_under_a_parked_waiter(void) {
    stale_select x;
    memset(&x, 0, sizeof x);
    TH_CHECK_EQ(run_main(stale_select_main, &x), 0);
    char buf[4096];
    int status = th_run_child_capturing_stderr(destroy_under_parked_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, buf);
    TH_CHECK_MSG(strstr(buf, "conc_chan_destroy: coroutines still wait on the channel") != NULL,
                 "%s", buf);
}

/* An all-zero condition (never initialised) has its own lock, as init(c, NULL) gives. */
static int zero_cond_main(void *p) {
    conc_coro_cond_t *c = (conc_coro_cond_t *)p;
    conc_coro_lock_t *l = conc_coro_cond_lock(c);
    TH_CHECK(l != NULL);
    TH_CHECK_EQ(conc_coro_cond_notify(c, 1), EPERM); /* the lock is not held */
    TH_CHECK_EQ(conc_coro_lock_acquire(l), 0);
    TH_CHECK_EQ(conc_coro_cond_notify_all(c), 0);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_cond_wait_until(c, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK(conc_coro_lock_owner(l) == conc_coro_self());
    TH_CHECK_EQ(conc_coro_lock_release(l), 0);
    return 0;
}

static void chan_cond_all_zero_has_its_own_lock(void) {
    static conc_coro_cond_t zero; /* all-zero, as static storage is */
    TH_CHECK_EQ(run_main(zero_cond_main, &zero), 0);
    conc_coro_cond_t on_stack;
    memset(&on_stack, 0, sizeof on_stack);
    TH_CHECK_EQ(run_main(zero_cond_main, &on_stack), 0);
}

static void chan_select_picks_fairly_among_ready_ops(void) {
    TH_CHECK_EQ(run_main(select_fair_main, NULL), 0);
}

/* tests/tu2_chan.c: the same header code, compiled in another file. */
uint64_t *tu2_chan_select_random_state(void);
uint64_t tu2_chan_select_draw(void);

static void *select_random_state_of_thread(void *arg) {
    (void)arg;
    return &conc__chan_select_random_state;
}

/* Both files draw from one stream: from the same state, a draw here then one there gives what
 * two draws here give (per-file states would not even start from it). And the state is the
 * thread's own. */
static void chan_select_random_state_is_one_per_program(void) {
    TH_CHECK(tu2_chan_select_random_state() == &conc__chan_select_random_state);
    const uint64_t start = 0x0123456789abcdefull;
    conc__chan_select_random_state = start;
    uint64_t here_first = conc__chan_random(), there_second = tu2_chan_select_draw();
    conc__chan_select_random_state = start;
    uint64_t first = conc__chan_random(), second = conc__chan_random();
    TH_CHECK_EQ(here_first, first);
    TH_CHECK_EQ(there_second, second);
    TH_CHECK(first != second);
    pthread_t t;
    void *other = NULL;
    TH_CHECK_EQ(pthread_create(&t, NULL, select_random_state_of_thread, NULL), 0);
    TH_CHECK_EQ(pthread_join(t, &other), 0);
    TH_CHECK(other != (void *)&conc__chan_select_random_state);
}

typedef struct sel_ctx {
    conc_chan_t *a, *b, *c;
    int result;
    size_t chosen;
    int got;
} sel_ctx;

static int sel_waiter(void *p) {
    sel_ctx *s = (sel_ctx *)p;
    int out = 77;
    conc_chan_op_t ops[3] = {{s->a, CONC_CHAN_RECV, &s->got},
                             {s->b, CONC_CHAN_RECV, &s->got},
                             {s->c, CONC_CHAN_SEND, &out}};
    s->result = conc_chan_select(ops, 3, CONC_FOREVER, &s->chosen);
    return 0;
}

static int sel_many_waiter(void *p) { /* more ops than the on-stack waiters */
    sel_ctx *s = (sel_ctx *)p;
    conc_chan_op_t ops[9];
    for (int i = 0; i < 9; i++) {
        ops[i].chan = i == 7 ? s->b : s->a;
        ops[i].dir = CONC_CHAN_RECV;
        ops[i].item = &s->got;
    }
    s->result = conc_chan_select(ops, 9, CONC_FOREVER, &s->chosen);
    return 0;
}

static int select_park_main(void *arg) {
    (void)arg;
    sel_ctx s;
    memset(&s, 0, sizeof s);
    TH_CHECK_EQ(conc_chan_create(&s.a, 0, sizeof(int)), 0);
    TH_CHECK_EQ(conc_chan_create(&s.b, 0, sizeof(int)), 0);
    TH_CHECK_EQ(conc_chan_create(&s.c, 0, sizeof(int)), 0);
    /* parked on three ops; a send on b completes exactly that op */
    conc_coro_t *w = spawn_named(sel_waiter, &s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    int v = 11;
    TH_CHECK_EQ(conc_chan_send(s.b, &v), 0);
    v = 12; /* right after, before the selector ran: a's waiter is stale now */
    TH_CHECK_EQ(conc_chan_try_send(s.a, &v), EAGAIN);
    TH_CHECK_EQ(conc_chan_try_recv(s.c, &v), EAGAIN);
    join_ok(w);
    TH_CHECK_EQ(s.result, 0);
    TH_CHECK_EQ(s.chosen, 1);
    TH_CHECK_EQ(s.got, 11);
    /* a receive from c completes the send op */
    w = spawn_named(sel_waiter, &s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    TH_CHECK_EQ(conc_chan_recv(s.c, &v), 0);
    TH_CHECK_EQ(v, 77);
    join_ok(w);
    TH_CHECK_EQ(s.chosen, 2);
    /* closing one channel wakes the selector with EPIPE on that op */
    w = spawn_named(sel_waiter, &s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    conc_chan_close(s.a);
    join_ok(w);
    TH_CHECK_EQ(s.result, EPIPE);
    TH_CHECK_EQ(s.chosen, 0);
    /* a closed channel is ready at once */
    conc_chan_op_t op = {s.a, CONC_CHAN_RECV, &v};
    size_t c;
    TH_CHECK_EQ(conc_chan_try_select(&op, 1, &c), EPIPE);
    TH_CHECK_EQ(c, 0);
    /* deadline */
    op.chan = s.b;
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_chan_select(&op, 1, dl, &c), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(c, SIZE_MAX);
    TH_CHECK_EQ(conc_chan_try_select(&op, 1, &c), EAGAIN);
    TH_CHECK_EQ(conc_chan_select(NULL, 0, 0, &c), ETIMEDOUT); /* nothing to wait for */
    /* nine ops (heap-allocated waiters) */
    conc_chan_t *closed = s.a;
    s.a = s.c; /* open rendezvous channels */
    w = spawn_named(sel_many_waiter, &s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    v = 5;
    TH_CHECK_EQ(conc_chan_send(s.b, &v), 0);
    join_ok(w);
    TH_CHECK_EQ(s.chosen, 7);
    TH_CHECK_EQ(s.got, 5);
    conc_chan_destroy(closed);
    conc_chan_destroy(s.b);
    conc_chan_destroy(s.c);
    return 0;
}

static void chan_select_parked_completes_exactly_one_op(void) {
    TH_CHECK_EQ(run_main(select_park_main, NULL), 0);
}

/* ---- lock, semaphore, event ------------------------------------------------------------------ */

typedef struct lock_ctx {
    conc_coro_lock_t l;
    log_t log;
    int inside;
} lock_ctx;

typedef struct lock_arg {
    lock_ctx *c;
    int id;
} lock_arg;

static int lock_worker(void *p) {
    lock_arg *a = (lock_arg *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(&a->c->l), 0);
    TH_CHECK_EQ(a->c->inside++, 0);
    TH_CHECK(conc_coro_lock_owner(&a->c->l) == conc_coro_self());
    log_add(&a->c->log, a->id);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* others run and queue meanwhile */
    a->c->inside--;
    TH_CHECK_EQ(conc_coro_lock_release(&a->c->l), 0);
    return 0;
}

static int barger(void *p) { /* runs between a release and the new owner's turn */
    lock_arg *a = (lock_arg *)p;
    TH_CHECK_EQ(conc_coro_lock_try_acquire(&a->c->l), EBUSY);
    return 0;
}

static int lock_main(void *p) {
    lock_ctx *c = (lock_ctx *)p;
    conc_coro_lock_init(&c->l);
    TH_CHECK_EQ(conc_coro_lock_acquire(&c->l), 0);
    TH_CHECK_EQ(conc_coro_lock_acquire(&c->l), EDEADLK); /* itself: refused, not hung */
    TH_CHECK_EQ(conc_coro_lock_try_acquire(&c->l), EBUSY);
    lock_arg a[5];
    conc_coro_t *h[5];
    for (int i = 0; i < 5; i++) {
        a[i].c = c;
        a[i].id = i;
        h[i] = spawn_named(lock_worker, &a[i], NULL);
    }
    TH_CHECK_EQ(conc_coro_yield(), 0); /* all five queue, in spawn order */
    lock_arg b = {c, 0};
    conc_coro_t *bh = spawn_named(barger, &b, NULL); /* queued behind us in the run queue */
    TH_CHECK_EQ(conc_coro_lock_release(&c->l), 0);
    TH_CHECK(conc_coro_lock_is_locked(&c->l)); /* handed over, not free */
    TH_CHECK_EQ(conc_coro_lock_release(&c->l), EPERM);
    for (int i = 0; i < 5; i++)
        join_ok(h[i]);
    join_ok(bh);
    TH_CHECK_EQ(c->log.n, 5);
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(c->log.v[i], i); /* FIFO */
    TH_CHECK(!conc_coro_lock_is_locked(&c->l));
    /* timeout */
    TH_CHECK_EQ(conc_coro_lock_acquire(&c->l), 0);
    return conc_coro_lock_release(&c->l);
}

static void chan_lock_fifo_handoff_no_barging_edeadlk(void) {
    lock_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(run_main(lock_main, &c), 0);
}

static int lock_timeout_helper(void *p) {
    lock_ctx *c = (lock_ctx *)p;
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_coro_lock_acquire_until(&c->l, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_coro_lock_acquire_until(&c->l, 0), ETIMEDOUT);
    return 0;
}

static int sem_worker(void *p) {
    conc_coro_sem_t *s = (conc_coro_sem_t *)p;
    return conc_coro_sem_acquire(s);
}

static int event_worker(void *p) {
    return conc_coro_event_wait((conc_coro_event_t *)p);
}

static int sem_event_main(void *arg) {
    (void)arg;
    lock_ctx c;
    memset(&c, 0, sizeof c);
    conc_coro_lock_init(&c.l);
    TH_CHECK_EQ(conc_coro_lock_acquire(&c.l), 0);
    join_ok(spawn_named(lock_timeout_helper, &c, NULL));
    TH_CHECK_EQ(conc_coro_lock_release(&c.l), 0);
    /* bounded semaphore */
    conc_coro_sem_t s;
    TH_CHECK_EQ(conc_coro_sem_init(&s, 1, 2), 0);
    TH_CHECK_EQ(conc_coro_sem_release(&s, 2), EOVERFLOW); /* 3 > 2: nothing released */
    TH_CHECK_EQ(conc_coro_sem_value(&s), 1);
    TH_CHECK_EQ(conc_coro_sem_release(&s, 0), EINVAL); /* as sem.h: no units is a mistake */
    TH_CHECK_EQ(conc_coro_sem_value(&s), 1);
    TH_CHECK_EQ(conc_coro_sem_release(&s, 1), 0);
    TH_CHECK_EQ(conc_coro_sem_acquire(&s), 0);
    TH_CHECK_EQ(conc_coro_sem_try_acquire(&s), 0);
    TH_CHECK_EQ(conc_coro_sem_try_acquire(&s), EAGAIN);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_sem_acquire_until(&s, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    conc_coro_t *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = spawn_named(sem_worker, &s, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* three parked */
    /* 3 waiters take 3 units, so releasing 4 leaves 1 <= 2 (the waiters count) */
    TH_CHECK_EQ(conc_coro_sem_release(&s, 4), 0);
    TH_CHECK_EQ(conc_coro_sem_value(&s), 1);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(join_ok(h[i]), 0);
    /* unbounded */
    conc_coro_sem_t u;
    TH_CHECK_EQ(conc_coro_sem_init(&u, UINT_MAX - 1, 0), 0);
    TH_CHECK_EQ(conc_coro_sem_release(&u, 2), EOVERFLOW);
    TH_CHECK_EQ(conc_coro_sem_release(&u, 1), 0);
    /* event */
    conc_coro_event_t e = CONC_CORO_EVENT_INIT;
    dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_event_wait_until(&e, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    for (int i = 0; i < 3; i++)
        h[i] = spawn_named(event_worker, &e, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0);
    conc_coro_event_set(&e);
    conc_coro_event_clear(&e); /* cleared before they run: they were released anyway */
    TH_CHECK(!conc_coro_event_is_set(&e));
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(join_ok(h[i]), 0);
    conc_coro_event_set(&e);
    TH_CHECK_EQ(conc_coro_event_wait(&e), 0);
    return 0;
}

static void chan_sem_bounded_and_event_release_all(void) {
    TH_CHECK_EQ(run_main(sem_event_main, NULL), 0);
}

/* ---- condition (asyncio.Condition) ------------------------------------------------------- */

typedef struct cv_ctx {
    conc_coro_lock_t lock;
    conc_coro_cond_t cv;
    log_t log;
    int ready; /* the predicate: plain data under the lock */
    int64_t deadline;
    int result[8];
} cv_ctx;

typedef struct cv_arg {
    cv_ctx *c;
    int id;
} cv_arg;

/* Waits once (deadline c->deadline for odd ids, none for even ones), logs 100+id once the wait
 * returned holding the lock, then releases it. */
static int cv_waiter(void *p) {
    cv_arg *a = (cv_arg *)p;
    cv_ctx *c = a->c;
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    log_add(&c->log, a->id);
    if (a->id & 1) /* 20 ms: the case needs it to pass only while the waiter is parked */
        c->deadline = conc_deadline_in(20 * CONC_MS);
    int e =
        (a->id & 1) ? conc_coro_cond_wait_until(&c->cv, c->deadline) : conc_coro_cond_wait(&c->cv);
    TH_CHECK(conc_coro_lock_owner(c->cv.lock) == conc_coro_self()); /* back, whatever ended it */
    if (e == ETIMEDOUT)
        TH_CHECK_NOT_EARLY(c->deadline);
    c->result[a->id] = e;
    log_add(&c->log, 100 + a->id);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    return 0;
}

static int cv_bad_input_main(void *arg) {
    (void)arg;
    conc_coro_cond_t cv;
    conc_coro_lock_t l = CONC_CORO_LOCK_INIT;
    TH_CHECK_EQ(conc_coro_cond_init(NULL, NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_cond_init(&cv, &l), 0);
    TH_CHECK(conc_coro_cond_lock(&cv) == &l);
    TH_CHECK_EQ(conc_coro_cond_wait(NULL), EINVAL);
    TH_CHECK_EQ(conc_coro_cond_notify(NULL, 1), EINVAL);
    TH_CHECK_EQ(conc_coro_cond_wait(&cv), EPERM); /* the lock is not held */
    TH_CHECK_EQ(conc_coro_cond_notify(&cv, 1), EPERM);
    TH_CHECK_EQ(conc_coro_cond_notify_all(&cv), EPERM);
    TH_CHECK_EQ(conc_coro_lock_acquire(&l), 0);
    /* a past deadline: ETIMEDOUT at once, the lock still held and never let go */
    TH_CHECK_EQ(conc_coro_cond_wait_until(&cv, conc_now() - 1), ETIMEDOUT);
    TH_CHECK(conc_coro_lock_owner(&l) == conc_coro_self());
    TH_CHECK_EQ(conc_coro_cond_notify(&cv, 3), 0); /* nobody waits: nothing happens */
    TH_CHECK_EQ(conc_coro_cond_notify_all(&cv), 0);
    /* already cancelled: ECANCELED at once, still holding the lock */
    TH_CHECK_EQ(conc_coro_cancel(conc_coro_self()), 0);
    TH_CHECK_EQ(conc_coro_cond_wait(&cv), ECANCELED);
    TH_CHECK(conc_coro_lock_owner(&l) == conc_coro_self());
    TH_CHECK_EQ(conc_coro_lock_release(&l), 0);
    return 0;
}

static void chan_cond_bad_input_eperm_and_immediate_results(void) {
    TH_CHECK_EQ(run_main(cv_bad_input_main, NULL), 0);
    conc_coro_cond_t cv;
    TH_CHECK_EQ(conc_coro_cond_init(&cv, NULL), 0); /* its own lock */
    TH_CHECK(conc_coro_cond_lock(&cv) != NULL);
    TH_CHECK_EQ(conc_coro_cond_wait(&cv), EPERM); /* outside a coroutine */
    TH_CHECK_EQ(conc_coro_cond_notify(&cv, 1), EPERM);
}

/* notify(2) wakes the first two in FIFO order, notify_all the rest; each re-takes the lock in
 * turn, after the notifier released it. */
static int cv_fifo_main(void *arg) {
    cv_ctx *c = (cv_ctx *)arg;
    cv_arg a[4];
    conc_coro_t *h[4];
    for (int i = 0; i < 4; i++) {
        a[i].c = c;
        a[i].id = 2 * i; /* even: no deadline */
        h[i] = spawn_named(cv_waiter, &a[i], NULL);
    }
    TH_CHECK_EQ(conc_coro_yield(), 0); /* all four wait: they logged 0 2 4 6 */
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    TH_CHECK_EQ(conc_coro_cond_notify(&c->cv, 2), 0);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the notified run, find the lock held, queue for it */
    log_add(&c->log, 50);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    join_ok(h[0]);
    join_ok(h[1]);
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    log_add(&c->log, 60);
    TH_CHECK_EQ(conc_coro_cond_notify_all(&c->cv), 0);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    join_ok(h[2]);
    join_ok(h[3]);
    static const int want[] = {0, 2, 4, 6, 50, 100, 102, 60, 104, 106};
    TH_CHECK_EQ(c->log.n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < c->log.n; i++)
        TH_CHECK_MSG(c->log.v[i] == want[i], "log[%d] = %d, want %d", i, c->log.v[i], want[i]);
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(c->result[2 * i], 0);
    return 0;
}

static void chan_cond_notify_n_and_all_fifo_relock_after_notifier(void) {
    cv_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, NULL), 0); /* its own lock */
    TH_CHECK_EQ(run_main(cv_fifo_main, &c), 0);
    memset(&c, 0, sizeof c);
    conc_coro_lock_init(&c.lock);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, &c.lock), 0); /* the caller's lock */
    TH_CHECK_EQ(run_main(cv_fifo_main, &c), 0);
}

/* Wakes that a notifier makes after notify_all, before it parks, never overtake the notified:
 * a lock handed to a coroutine already queued for it, an item handed to a parked receiver.
 * The notified re-take the lock in the order they waited, behind the one queued before. */
typedef struct cv_handoff_ctx {
    cv_ctx *c;
    conc_chan_t *ch;
} cv_handoff_ctx;

static int cv_queued_for_lock(void *p) {
    cv_ctx *c = (cv_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    log_add(&c->log, 90);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    return 0;
}

static int cv_item_receiver(void *p) {
    cv_handoff_ctx *x = (cv_handoff_ctx *)p;
    int v = 0;
    TH_CHECK_EQ(conc_chan_recv(x->ch, &v), 0);
    log_add(&x->c->log, 80 + v);
    return 0;
}

static int cv_handoff_main(void *arg) {
    cv_handoff_ctx *x = (cv_handoff_ctx *)arg;
    cv_ctx *c = x->c;
    cv_arg a[3];
    conc_coro_t *h[3];
    TH_CHECK_EQ(conc_chan_create(&x->ch, 0, sizeof(int)), 0); /* rendezvous */
    for (int i = 0; i < 3; i++) {
        a[i].c = c;
        a[i].id = 2 * i; /* even: no deadline */
        h[i] = spawn_named(cv_waiter, &a[i], NULL);
    }
    conc_coro_t *rx = spawn_named(cv_item_receiver, x, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* the three wait (logged 0 2 4), rx is parked */
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    conc_coro_t *q = spawn_named(cv_queued_for_lock, c, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* q queues for the lock */
    TH_CHECK_EQ(conc_coro_cond_notify_all(&c->cv), 0);
    int v = 1;
    TH_CHECK_EQ(conc_chan_send(x->ch, &v), 0);          /* hands rx an item: a wake of ours */
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0); /* hands q the lock: another */
    join_ok(q);
    join_ok(rx);
    for (int i = 0; i < 3; i++)
        join_ok(h[i]);
    conc_chan_destroy(x->ch);
    /* rx and q were woken after the three: they run after them, in their own order; the
     * three find the lock q holds and queue behind it in the order they waited. */
    static const int want[] = {0, 2, 4, 81, 90, 100, 102, 104};
    TH_CHECK_EQ(c->log.n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < c->log.n; i++)
        TH_CHECK_MSG(c->log.v[i] == want[i], "log[%d] = %d, want %d", i, c->log.v[i], want[i]);
    return 0;
}

static void chan_cond_wakes_after_notify_all_keep_the_notified_in_order(void) {
    cv_ctx c;
    memset(&c, 0, sizeof c);
    conc_coro_lock_init(&c.lock);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, &c.lock), 0);
    cv_handoff_ctx x = {&c, NULL};
    TH_CHECK_EQ(run_main(cv_handoff_main, &x), 0);
}

/* Cancel while parked on the condition: the waiter returns ECANCELED only once it holds the
 * lock again, which the canceller still holds (and keeps across a second cancel). A cancel
 * that comes after a notify (while the notified waiter queues for the lock) is not its
 * result: 0, and the next blocking call says ECANCELED. */
static bool cv_is_ready(void *p) {
    return ((cv_ctx *)p)->ready >= 3;
}

/* wait_for(predicate): spurious notifies (ready below 3) do not end it; the third does. */
static int cv_wait_for_waiter(void *p) {
    cv_ctx *c = (cv_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    TH_CHECK_EQ(conc_coro_cond_wait_for(&c->cv, NULL, c, CONC_FOREVER), EINVAL);
    int64_t dl = conc_deadline_in(CONC_US * 100);
    int e = conc_coro_cond_wait_for(&c->cv, cv_is_ready, c, dl); /* nobody notifies yet */
    TH_CHECK_EQ(e, ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK(conc_coro_lock_owner(c->cv.lock) == conc_coro_self());
    log_add(&c->log, 1);
    c->result[0] = conc_coro_cond_wait_for(&c->cv, cv_is_ready, c, CONC_FOREVER);
    log_add(&c->log, 100 + c->ready);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    return 0;
}

static int cv_wait_for_main(void *arg) {
    cv_ctx *c = (cv_ctx *)arg;
    conc_coro_t *h = spawn_named(cv_wait_for_waiter, c, NULL);
    while (c->log.n == 0) /* until it has timed out once and waits again */
        TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_US * 50)), 0);
    for (int i = 0; i < 3; i++) {
        TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
        c->ready++;
        TH_CHECK_EQ(conc_coro_cond_notify(&c->cv, 1), 0);
        TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
        TH_CHECK_EQ(conc_coro_yield(), 0);
    }
    join_ok(h);
    TH_CHECK_EQ(c->result[0], 0);
    TH_CHECK_EQ(c->log.n, 2);
    TH_CHECK_EQ(c->log.v[1], 103); /* it returned only once ready reached 3 */
    return 0;
}

static void chan_cond_wait_for_predicate(void) {
    cv_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, NULL), 0);
    TH_CHECK_EQ(run_main(cv_wait_for_main, &c), 0);
}

static int cv_cancel_after_notify(void *p) {
    cv_arg *a = (cv_arg *)p;
    cv_waiter(p);
    a->c->result[7] = conc_coro_yield();
    return 0;
}

static int cv_cancel_main(void *arg) {
    cv_ctx *c = (cv_ctx *)arg;
    cv_arg a0 = {c, 0}, a2 = {c, 2};
    conc_coro_t *h0 = spawn_named(cv_waiter, &a0, NULL);
    conc_coro_t *h2 = spawn_named(cv_cancel_after_notify, &a2, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* both wait */
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    TH_CHECK_EQ(conc_coro_cancel(h0), 0); /* parked on the condition: woken with ECANCELED */
    TH_CHECK_EQ(conc_coro_cond_notify(&c->cv, 1), 0); /* skips h0 (woken already): h2 */
    TH_CHECK_EQ(conc_coro_yield(), 0); /* both run and queue for the lock, uncancellably */
    TH_CHECK_EQ(conc_coro_cancel(h2), 0);
    TH_CHECK_EQ(conc_coro_cancel(h0), 0);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_coro_yield(), 0); /* still queued: the cancels woke nobody */
    log_add(&c->log, 50);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    join_ok(h0);
    join_ok(h2);
    /* h0 was woken first (by the cancel): it runs, and queues for the lock, first */
    static const int want[] = {0, 2, 50, 100, 102};
    TH_CHECK_EQ(c->log.n, 5);
    for (int i = 0; i < c->log.n; i++)
        TH_CHECK_MSG(c->log.v[i] == want[i], "log[%d] = %d, want %d", i, c->log.v[i], want[i]);
    TH_CHECK_EQ(c->result[0], ECANCELED);
    TH_CHECK_EQ(c->result[2], 0);         /* notified before the cancel */
    TH_CHECK_EQ(c->result[7], ECANCELED); /* ... which its next blocking call reports */
    TH_CHECK(!conc_coro_lock_is_locked(c->cv.lock));
    return 0;
}

static void chan_cond_cancel_while_parked_retakes_the_lock_first(void) {
    cv_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, NULL), 0);
    TH_CHECK_EQ(run_main(cv_cancel_main, &c), 0);
}

/* A timed wait: ETIMEDOUT, never early, returned holding the lock that the notifier held past
 * the deadline; a notify then skips the waiter that left and wakes the next one. */
static int cv_timeout_main(void *arg) {
    cv_ctx *c = (cv_ctx *)arg;
    cv_arg a1 = {c, 1}, a2 = {c, 2};
    conc_coro_t *h1 = spawn_named(cv_waiter, &a1, NULL);
    conc_coro_t *h2 = spawn_named(cv_waiter, &a2, NULL);
    TH_CHECK_EQ(conc_coro_yield(), 0); /* both wait: 1 with the deadline */
    TH_CHECK_EQ(conc_coro_lock_acquire(c->cv.lock), 0);
    TH_CHECK_EQ(conc_coro_sleep_until(c->deadline + CONC_MS), 0); /* past it, lock held */
    TH_CHECK_EQ(conc_coro_cond_notify(&c->cv, 1), 0);             /* 1 left on its timeout: 2 */
    log_add(&c->log, 50);
    TH_CHECK_EQ(conc_coro_lock_release(c->cv.lock), 0);
    join_ok(h1);
    join_ok(h2);
    static const int want[] = {1, 2, 50, 101, 102};
    TH_CHECK_EQ(c->log.n, 5);
    for (int i = 0; i < c->log.n; i++)
        TH_CHECK_MSG(c->log.v[i] == want[i], "log[%d] = %d, want %d", i, c->log.v[i], want[i]);
    TH_CHECK_EQ(c->result[1], ETIMEDOUT);
    TH_CHECK_EQ(c->result[2], 0);
    return 0;
}

static void chan_cond_timeout_retakes_the_lock_and_notify_skips_it(void) {
    cv_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_coro_cond_init(&c.cv, NULL), 0);
    TH_CHECK_EQ(run_main(cv_timeout_main, &c), 0);
}

/* Stress: a bounded buffer (plain data under the coroutine lock) with producers and consumers
 * that wait on two conditions with random deadlines, notify one or all at random, and some
 * consumers cancelled midway; every item is taken exactly once and every wait returns holding
 * the lock. */
#define CVS_CAP 4
typedef struct cvs_ctx {
    conc_coro_lock_t lock;
    conc_coro_cond_t not_full, not_empty;
    int buf[CVS_CAP];
    int count, head, in_lock, producers_left;
    long put_sum, got_sum, put_n, got_n;
    uint64_t seed;
} cvs_ctx;

typedef struct cvs_arg {
    cvs_ctx *c;
    int id;
} cvs_arg;

static void cvs_notify(conc_coro_cond_t *cv, th_rng *r) {
    TH_CHECK_EQ(th_rand_below(r, 3) == 0 ? conc_coro_cond_notify_all(cv)
                                         : conc_coro_cond_notify(cv, 1 + th_rand_below(r, 2)),
                0);
}

/* The lock is held around every wait: check it is ours again, and nobody else is inside. */
static int cvs_wait(cvs_ctx *c, conc_coro_cond_t *cv, th_rng *r) {
    c->in_lock--;
    int64_t dl = th_rand_below(r, 3) == 0 ? conc_deadline_in(CONC_US * 30) : CONC_FOREVER;
    int e = conc_coro_cond_wait_until(cv, dl);
    TH_CHECK(conc_coro_lock_owner(&c->lock) == conc_coro_self());
    TH_CHECK_EQ(c->in_lock++, 0);
    TH_CHECK_MSG(e == 0 || e == ETIMEDOUT || e == ECANCELED, "wait: %d", e);
    return e;
}

static int cvs_producer(void *p) {
    cvs_arg *a = (cvs_arg *)p;
    cvs_ctx *c = a->c;
    th_rng r = th_rng_make(c->seed + (uint64_t)a->id);
    long iters = th_iters(1500);
    for (long i = 0; i < iters; i++) {
        int v = (int)th_rand_below(&r, 1000) + 1;
        TH_CHECK_EQ(conc_coro_lock_acquire(&c->lock), 0);
        TH_CHECK_EQ(c->in_lock++, 0);
        while (c->count == CVS_CAP)
            (void)cvs_wait(c, &c->not_full, &r); /* producers are never cancelled */
        c->buf[(c->head + c->count++) % CVS_CAP] = v;
        c->put_sum += v;
        c->put_n++;
        cvs_notify(&c->not_empty, &r);
        if (th_rand_below(&r, 4) == 0)
            TH_CHECK_EQ(conc_coro_yield(), 0); /* holding the lock: others queue for it */
        c->in_lock--;
        TH_CHECK_EQ(conc_coro_lock_release(&c->lock), 0);
    }
    TH_CHECK_EQ(conc_coro_lock_acquire(&c->lock), 0);
    c->producers_left--;
    TH_CHECK_EQ(conc_coro_cond_notify_all(&c->not_empty), 0); /* consumers re-check the end */
    TH_CHECK_EQ(conc_coro_lock_release(&c->lock), 0);
    return 0;
}

static int cvs_consumer(void *p) {
    cvs_arg *a = (cvs_arg *)p;
    cvs_ctx *c = a->c;
    th_rng r = th_rng_make(c->seed + 1000u + (uint64_t)a->id);
    for (;;) {
        if (conc_coro_lock_acquire(&c->lock) != 0)
            return 0; /* cancelled while queued for the lock */
        TH_CHECK_EQ(c->in_lock++, 0);
        int e = 0;
        while (c->count == 0 && c->producers_left && e != ECANCELED)
            e = cvs_wait(c, &c->not_empty, &r);
        bool done = c->count == 0; /* no producers left, or cancelled */
        if (c->count) {
            c->got_sum += c->buf[c->head];
            c->got_n++;
            c->head = (c->head + 1) % CVS_CAP;
            c->count--;
            cvs_notify(&c->not_full, &r);
        }
        c->in_lock--;
        TH_CHECK_EQ(conc_coro_lock_release(&c->lock), 0);
        if (done || e == ECANCELED || conc_coro_is_cancelled(conc_coro_self()))
            return 0;
    }
}

static int cvs_main(void *p) {
    cvs_ctx *c = (cvs_ctx *)p;
    enum { PRODUCERS = 6, CONSUMERS = 6 };
    cvs_arg a[PRODUCERS + CONSUMERS];
    conc_coro_t *h[PRODUCERS + CONSUMERS];
    c->producers_left = PRODUCERS;
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        a[i].c = c;
        a[i].id = i;
        h[i] = spawn_named(i < PRODUCERS ? cvs_producer : cvs_consumer, &a[i], NULL);
    }
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_US * 300)), 0);
    TH_CHECK_EQ(conc_coro_cancel(h[PRODUCERS]), 0); /* two consumers leave midway */
    TH_CHECK_EQ(conc_coro_cancel(h[PRODUCERS + 3]), 0);
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        join_ok(h[i]);
    return 0;
}

static void chan_cond_stress_bounded_buffer_timeouts_cancels_notify_races(void) {
    cvs_ctx c;
    memset(&c, 0, sizeof c);
    c.seed = th_seed();
    conc_coro_lock_init(&c.lock);
    TH_CHECK_EQ(conc_coro_cond_init(&c.not_full, &c.lock), 0);
    TH_CHECK_EQ(conc_coro_cond_init(&c.not_empty, &c.lock), 0);
    TH_CHECK_EQ(run_main(cvs_main, &c), 0);
    TH_CHECK(c.put_n > 0);
    TH_CHECK_EQ(c.count, 0); /* the consumers left took everything */
    TH_CHECK_EQ(c.put_n, c.got_n);
    TH_CHECK_EQ(c.put_sum, c.got_sum);
    TH_CHECK(!conc_coro_lock_is_locked(&c.lock));
}

/* ---- EDEADLK report and the owner check -------------------------------------------------- */

typedef struct dl_ctx {
    conc_coro_lock_t l;
    conc_chan_t *ch;
    conc_coro_cond_t cv;
} dl_ctx;

static int dl_alice(void *p) {
    dl_ctx *d = (dl_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(&d->l), 0);
    int x;
    return conc_chan_recv(d->ch, &x); /* nobody will send */
}

static int dl_bob(void *p) {
    dl_ctx *d = (dl_ctx *)p;
    return conc_coro_lock_acquire(&d->l);
}

static int dl_carol(void *p) { /* nobody will notify */
    dl_ctx *d = (dl_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(conc_coro_cond_lock(&d->cv)), 0);
    return conc_coro_cond_wait(&d->cv);
}

/* A select whose every op is switched off (NULL channels) can never end: the report says so. */
static int dl_dave(void *p) {
    (void)p;
    int a = 0, b = 0;
    conc_chan_op_t ops[2] = {{NULL, CONC_CHAN_RECV, &a}, {NULL, CONC_CHAN_SEND, &b}};
    size_t chosen;
    return conc_chan_select(ops, 2, CONC_FOREVER, &chosen);
}

/* In a child that reports a deadlock: a named coroutine on s, or the child exits (code 3). */
static void spawn_named_on_or_exit(conc_sched_t *s, conc_coro_fn fn, void *arg, const char *name) {
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.name = name;
    if (conc_coro_spawn(s, fn, arg, &o, NULL) != 0)
        _exit(3);
}

static void deadlock_child(void) {
    conc_sched_t *s;
    dl_ctx d;
    conc_coro_lock_init(&d.l);
    if (conc_coro_cond_init(&d.cv, NULL) != 0)
        _exit(2);
    if (conc_chan_create(&d.ch, 0, sizeof(int)) != 0 || conc_sched_create(&s, NULL) != 0)
        _exit(2);
    spawn_named_on_or_exit(s, dl_alice, &d, "alice");
    spawn_named_on_or_exit(s, dl_bob, &d, "bob");
    spawn_named_on_or_exit(s, dl_carol, &d, "carol");
    spawn_named_on_or_exit(s, dl_dave, &d, "dave");
    fprintf(stderr, "lock=%p chan=%p cond=%p cond_lock=%p\n", (void *)&d.l, (void *)d.ch,
            (void *)&d.cv, (void *)conc_coro_cond_lock(&d.cv));
    _exit(conc_sched_run(s) == EDEADLK ? 0 : 5);
}

static void chan_deadlock_report_names_the_lock_owner_and_channel(void) {
    char buf[8192];
    int status = th_run_child_capturing_stderr(deadlock_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
    void *l = NULL, *ch = NULL, *cv = NULL, *cvl = NULL;
    TH_CHECK_EQ(sscanf(buf, "lock=%p chan=%p cond=%p cond_lock=%p", &l, &ch, &cv, &cvl), 4);
    char want[256];
    snprintf(want, sizeof want, "coro \"alice\" (#1) waiting on channel %p recv (capacity 0", ch);
    TH_CHECK_MSG(strstr(buf, want) != NULL, "want %s in: %s", want, buf);
    snprintf(want, sizeof want, "coro \"bob\" (#2) waiting on lock %p held by coro \"alice\" (#1)",
             l);
    TH_CHECK_MSG(strstr(buf, want) != NULL, "want %s in: %s", want, buf);
    snprintf(want, sizeof want, "coro \"carol\" (#3) waiting on condition %p (lock %p)", cv, cvl);
    TH_CHECK_MSG(strstr(buf, want) != NULL, "want %s in: %s", want, buf);
    TH_CHECK_MSG(strstr(buf, "coro \"dave\" (#4) waiting on select over 2 channel ops: none of "
                             "them on a channel") != NULL,
                 "%s", buf);
}

/* A coroutine that finishes holding a lock leaves it locked for good, and the next coroutine
 * spawned (which reuses the finished one's pooled struct) is not taken for its owner:
 * acquire waits (ETIMEDOUT here, not EDEADLK), release is EPERM, owner is NULL; a coroutine
 * left waiting for it gets a deadlock report that says so. */
typedef struct dead_owner_ctx {
    conc_coro_lock_t l;
    conc_coro_t *first, *second;
} dead_owner_ctx;

static int dead_owner_keeps(void *p) {
    dead_owner_ctx *d = (dead_owner_ctx *)p;
    d->first = conc_coro_self();
    TH_CHECK_EQ(conc_coro_lock_acquire(&d->l), 0);
    return 0; /* never released */
}

static int dead_owner_next(void *p) {
    dead_owner_ctx *d = (dead_owner_ctx *)p;
    d->second = conc_coro_self();
    TH_CHECK(conc_coro_lock_is_locked(&d->l));
    TH_CHECK(conc_coro_lock_owner(&d->l) == NULL);
    TH_CHECK_EQ(conc_coro_lock_try_acquire(&d->l), EBUSY);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_coro_lock_acquire_until(&d->l, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_coro_lock_release(&d->l), EPERM);
    TH_CHECK(conc_coro_lock_is_locked(&d->l));
    return 0;
}

static int dead_owner_main(void *p) {
    dead_owner_ctx *d = (dead_owner_ctx *)p;
    join_ok(spawn_named(dead_owner_keeps, d, "keeper"));
    join_ok(spawn_named(dead_owner_next, d, "next"));
    TH_CHECK_MSG(d->first == d->second, "the second coroutine reuses the first one's struct");
    return 0;
}

static int lock_waiter(void *p) {
    return conc_coro_lock_acquire((conc_coro_lock_t *)p);
}

static void dead_owner_child(void) {
    static dead_owner_ctx d; /* the lock stays held: no cleanup */
    conc_coro_lock_init(&d.l);
    conc_sched_t *s;
    if (conc_sched_create(&s, NULL) != 0)
        _exit(2);
    spawn_named_on_or_exit(s, dead_owner_keeps, &d, "keeper");
    spawn_named_on_or_exit(s, lock_waiter, &d.l, "waiter");
    fprintf(stderr, "lock=%p\n", (void *)&d.l);
    _exit(conc_sched_run(s) == EDEADLK ? 0 : 5);
}

static void chan_lock_kept_by_a_finished_coroutine_has_no_owner(void) {
    dead_owner_ctx d;
    memset(&d, 0, sizeof d);
    conc_coro_lock_init(&d.l);
    TH_CHECK_EQ(run_main(dead_owner_main, &d), 0);
    char buf[8192];
    int status = th_run_child_capturing_stderr(dead_owner_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
    void *l = NULL;
    TH_CHECK_EQ(sscanf(buf, "lock=%p", &l), 1);
    char want[256];
    snprintf(want, sizeof want,
             "coro \"waiter\" (#2) waiting on lock %p held by a finished coroutine (#1)", l);
    TH_CHECK_MSG(strstr(buf, want) != NULL, "want %s in: %s", want, buf);
}

static conc_chan_t *foreign_ch;

static int foreign_use(void *arg) {
    (void)arg;
    int x = 1;
    return conc_chan_try_send(foreign_ch, &x);
}

static void foreign_child(void) {
    if (conc_chan_create(&foreign_ch, 4, sizeof(int)) != 0)
        _exit(2);
    conc_sched_t *s1, *s2; /* both alive: two distinct schedulers */
    if (conc_sched_create(&s1, NULL) != 0 || conc_sched_create(&s2, NULL) != 0)
        _exit(3);
    if (conc_coro_spawn(s1, foreign_use, NULL, NULL, NULL) != 0 || conc_sched_run(s1) != 0)
        _exit(4); /* binds the channel to s1 */
    if (conc_coro_spawn(s2, foreign_use, NULL, NULL, NULL) != 0 || conc_sched_run(s2) != 0)
        _exit(5); /* s2's coroutine: aborts */
    _exit(6);
}

static void chan_used_by_a_second_scheduler_aborts_in_debug(void) {
#if !CONC_DEBUG
    TH_SKIP("the one-scheduler check is a debug-build check (CONC_DEBUG)");
#endif
    char buf[4096];
    int status = th_run_child_capturing_stderr(foreign_child, buf, sizeof buf);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, buf);
    TH_CHECK_MSG(strstr(buf, "conc_chan_try_send: the channel belongs to another scheduler"), "%s",
                 buf);
}

/* ---- a lock and a channel that outlive their scheduler ------------------------------------
 * A lock left held by a coroutine of a scheduler since destroyed, and a channel that scheduler
 * used: the lock has no owner and nobody after is taken for it (the next scheduler's first
 * coroutine often has the same struct address and the same id, #1), and the channel's owner
 * check reads nothing of the freed scheduler (ASan: no use after free; elsewhere memory
 * reused by malloc made close abort) and lets the next scheduler have the idle channel. */
typedef struct outlive_ctx {
    conc_coro_lock_t *lock;
    conc_chan_t *ch;
} outlive_ctx;

static int outlive_keeper(void *p) {
    outlive_ctx *o = (outlive_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire(o->lock), 0);
    int x = 7;
    TH_CHECK_EQ(conc_chan_try_send(o->ch, &x), 0); /* binds the channel to this scheduler */
    return 0;                                      /* finishes holding the lock */
}

static int outlive_later(void *p) {
    outlive_ctx *o = (outlive_ctx *)p;
    TH_CHECK_EQ(conc_coro_lock_acquire_until(o->lock, conc_deadline_in(CONC_MS)), ETIMEDOUT);
    TH_CHECK_EQ(conc_coro_lock_release(o->lock), EPERM);
    TH_CHECK(conc_coro_lock_is_locked(o->lock));
    TH_CHECK(conc_coro_lock_owner(o->lock) == NULL);
    int x = 0;
    TH_CHECK_EQ(conc_chan_try_recv(o->ch, &x), 0); /* the idle channel passes to us */
    TH_CHECK_EQ(x, 7);
    return 0;
}

static void chan_lock_and_channel_outlive_their_scheduler(void) {
    conc_coro_lock_t lock = CONC_CORO_LOCK_INIT;
    outlive_ctx o;
    memset(&o, 0, sizeof o);
    o.lock = &lock;
    TH_CHECK_EQ(conc_chan_create(&o.ch, 2, sizeof(int)), 0);
    TH_CHECK_EQ(run_main(outlive_keeper, &o), 0); /* its scheduler is destroyed on return */
    enum { JUNK = 16 };
    void *junk[JUNK]; /* the freed scheduler's memory, taken by others and scribbled on */
    for (int i = 0; i < JUNK; i++) {
        junk[i] = malloc(sizeof(conc_sched_t));
        TH_CHECK(junk[i] != NULL);
        memset(junk[i], 0xa5, sizeof(conc_sched_t));
    }
    TH_CHECK(conc_coro_lock_is_locked(&lock));
    TH_CHECK(conc_coro_lock_owner(&lock) == NULL); /* its owner's slot is unmapped */
    TH_CHECK_EQ(run_main(outlive_later, &o), 0);
    conc_chan_close(o.ch); /* outside any coroutine, both schedulers gone */
    TH_CHECK(conc_chan_is_closed(o.ch));
    conc_chan_destroy(o.ch);
    for (int i = 0; i < JUNK; i++)
        free(junk[i]);
}

/* ---- stress: many coroutines, random ops, timeouts, cancels, close racing ----------------- */

typedef struct st_ctx {
    conc_chan_t *ch[3];
    conc_coro_lock_t lock;
    conc_coro_sem_t sem;
    long sent_sum, recv_sum, sent_n, recv_n; /* plain: one thread */
    long in_lock, in_sem;
    int sem_max;
    uint64_t seed;
    int senders_left;
} st_ctx;

typedef struct st_arg {
    st_ctx *c;
    int id;
} st_arg;

static int st_sender(void *p) {
    st_arg *a = (st_arg *)p;
    st_ctx *c = a->c;
    th_rng r = th_rng_make(c->seed + (uint64_t)a->id);
    long iters = th_iters(2000);
    for (long i = 0; i < iters; i++) {
        int v = (int)th_rand_below(&r, 1000) + 1;
        int64_t dl = th_rand_below(&r, 4) == 0 ? conc_deadline_in(CONC_US * 50) : CONC_FOREVER;
        int e;
        if (th_rand_below(&r, 3) == 0) {
            conc_chan_op_t ops[2] = {{c->ch[th_rand_below(&r, 3)], CONC_CHAN_SEND, &v},
                                     {c->ch[th_rand_below(&r, 3)], CONC_CHAN_SEND, &v}};
            size_t k;
            e = conc_chan_select(ops, 2, dl, &k);
        } else {
            e = conc_chan_send_until(c->ch[th_rand_below(&r, 3)], &v, dl);
        }
        if (e == 0) {
            c->sent_sum += v;
            c->sent_n++;
        } else {
            TH_CHECK_MSG(e == ETIMEDOUT || e == ECANCELED, "send: %d", e);
            if (e == ECANCELED)
                break;
        }
        /* the lock and the semaphore guard plain counters across a yield */
        if (conc_coro_lock_acquire_until(&c->lock, dl) == 0) {
            TH_CHECK_EQ(c->in_lock++, 0);
            if (th_rand_below(&r, 2))
                TH_CHECK(conc_coro_yield() == 0 || conc_coro_is_cancelled(conc_coro_self()));
            c->in_lock--;
            TH_CHECK_EQ(conc_coro_lock_release(&c->lock), 0);
        }
        if (conc_coro_sem_acquire_until(&c->sem, dl) == 0) {
            TH_CHECK(++c->in_sem <= c->sem_max);
            if (th_rand_below(&r, 2))
                TH_CHECK(conc_coro_yield() == 0 || conc_coro_is_cancelled(conc_coro_self()));
            c->in_sem--;
            TH_CHECK_EQ(conc_coro_sem_release(&c->sem, 1), 0);
        }
    }
    if (--c->senders_left == 0)
        for (int i = 0; i < 3; i++)
            conc_chan_close(c->ch[i]);
    return 0;
}

static int st_receiver(void *p) {
    st_arg *a = (st_arg *)p;
    st_ctx *c = a->c;
    th_rng r = th_rng_make(c->seed + 1000u + (uint64_t)a->id);
    int open = 3;
    while (open) {
        int v = 0;
        int64_t dl = th_rand_below(&r, 4) == 0 ? conc_deadline_in(CONC_US * 50) : CONC_FOREVER;
        conc_chan_op_t ops[3] = {{c->ch[0], CONC_CHAN_RECV, &v},
                                 {c->ch[1], CONC_CHAN_RECV, &v},
                                 {c->ch[2], CONC_CHAN_RECV, &v}};
        size_t k;
        int e = conc_chan_select(ops, 3, dl, &k);
        if (e == 0) {
            TH_CHECK(v >= 1 && v <= 1000);
            c->recv_sum += v;
            c->recv_n++;
        } else if (e == EPIPE) {
            open = (int)(!conc_chan_is_closed(c->ch[0]) + !conc_chan_is_closed(c->ch[1]) +
                         !conc_chan_is_closed(c->ch[2]));
            if (conc_chan_size(c->ch[0]) + conc_chan_size(c->ch[1]) + conc_chan_size(c->ch[2]))
                open = 1; /* closed channels still hold items: drain them */
        } else {
            TH_CHECK_MSG(e == ETIMEDOUT, "recv: %d", e);
        }
    }
    return 0;
}

static int st_main(void *p) {
    st_ctx *c = (st_ctx *)p;
    enum { SENDERS = 24, RECEIVERS = 6 };
    st_arg a[SENDERS + RECEIVERS];
    conc_coro_t *h[SENDERS + RECEIVERS];
    c->senders_left = SENDERS;
    for (int i = 0; i < SENDERS + RECEIVERS; i++) {
        a[i].c = c;
        a[i].id = i;
        h[i] = spawn_named(i < SENDERS ? st_sender : st_receiver, &a[i], NULL);
    }
    /* cancel a few senders midway (they count what they sent before) */
    TH_CHECK_EQ(conc_coro_sleep_until(conc_deadline_in(CONC_US * 200)), 0);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_coro_cancel(h[i * 7]), 0);
    for (int i = 0; i < SENDERS + RECEIVERS; i++)
        join_ok(h[i]);
    return 0;
}

static void chan_stress_every_item_once_with_timeouts_cancels_close(void) {
    st_ctx c;
    memset(&c, 0, sizeof c);
    c.seed = th_seed();
    size_t caps[3] = {0, 1, 8};
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_chan_create(&c.ch[i], caps[i], sizeof(int)), 0);
    conc_coro_lock_init(&c.lock);
    c.sem_max = 3;
    TH_CHECK_EQ(conc_coro_sem_init(&c.sem, 3, 3), 0);
    TH_CHECK_EQ(run_main(st_main, &c), 0);
    TH_CHECK(c.sent_n > 0);
    TH_CHECK_EQ(c.sent_n, c.recv_n);
    TH_CHECK_EQ(c.sent_sum, c.recv_sum);
    TH_CHECK_EQ(conc_coro_sem_value(&c.sem), 3);
    for (int i = 0; i < 3; i++)
        conc_chan_destroy(c.ch[i]);
}

/* Ping-pong across many pairs and several schedulers on threads (each channel stays with its
 * scheduler). */
typedef struct pp_ctx {
    conc_chan_t *to, *from;
    long n;
} pp_ctx;

static int pp_echo(void *p) {
    pp_ctx *c = (pp_ctx *)p;
    long v;
    while (conc_chan_recv(c->to, &v) == 0)
        TH_CHECK_EQ(conc_chan_send(c->from, &v), 0);
    return 0;
}

static int pp_main(void *p) {
    pp_ctx *c = (pp_ctx *)p;
    conc_coro_t *e = spawn_named(pp_echo, c, NULL);
    for (long i = 0; i < c->n; i++) {
        long v;
        TH_CHECK_EQ(conc_chan_send(c->to, &i), 0);
        TH_CHECK_EQ(conc_chan_recv(c->from, &v), 0);
        TH_CHECK_EQ(v, i);
    }
    conc_chan_close(c->to);
    return join_ok(e);
}

static void pp_thread(int idx, void *arg) {
    (void)arg;
    pp_ctx c;
    c.n = th_iters(20000) / 4;
    TH_CHECK_EQ(conc_chan_create(&c.to, (size_t)(idx % 2), sizeof(long)), 0);
    TH_CHECK_EQ(conc_chan_create(&c.from, 0, sizeof(long)), 0);
    TH_CHECK_EQ(run_main(pp_main, &c), 0);
    conc_chan_destroy(c.to);
    conc_chan_destroy(c.from);
}

static void chan_ping_pong_on_schedulers_in_many_threads(void) {
    th_run_threads(4, pp_thread, NULL);
}

/* ---- accept / connect ---------------------------------------------------------------------- */

typedef struct net_ctx {
    int lfd;
    struct sockaddr_in addr;
    int served;
} net_ctx;

static int net_server(void *p) {
    net_ctx *n = (net_ctx *)p;
    for (int i = 0; i < 2; i++) {
        int fd;
        TH_CHECK_EQ(conc_coro_accept(n->lfd, NULL, NULL, CONC_FOREVER, &fd), 0);
        TH_CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
        char b[8];
        size_t got;
        TH_CHECK_EQ(conc_coro_read(fd, b, sizeof b, CONC_FOREVER, &got), 0);
        TH_CHECK_EQ(conc_coro_write(fd, b, got, CONC_FOREVER, NULL), 0);
        close(fd);
        n->served++;
    }
    return 0;
}

static int net_client(void *p) {
    net_ctx *n = (net_ctx *)p;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    TH_CHECK(fd >= 0);
    TH_CHECK_EQ(conc_coro_connect(fd, (struct sockaddr *)&n->addr, sizeof n->addr, CONC_FOREVER),
                0);
    TH_CHECK_EQ(conc_coro_write(fd, "hello", 5, CONC_FOREVER, NULL), 0);
    char b[8];
    size_t got;
    TH_CHECK_EQ(conc_coro_read(fd, b, sizeof b, CONC_FOREVER, &got), 0);
    TH_CHECK_EQ(got, 5);
    TH_CHECK(memcmp(b, "hello", 5) == 0);
    close(fd);
    return 0;
}

static int net_main(void *p) {
    net_ctx *n = (net_ctx *)p;
    int fd;
    /* nobody connecting: the deadline */
    int64_t dl = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_coro_accept(n->lfd, NULL, NULL, dl, &fd), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(fd, -1);
    TH_CHECK_EQ(conc_coro_accept(n->lfd, NULL, NULL, dl, NULL), EINVAL);
    conc_coro_t *s = spawn_named(net_server, n, "server");
    conc_coro_t *c1 = spawn_named(net_client, n, "client1");
    conc_coro_t *c2 = spawn_named(net_client, n, "client2");
    join_ok(c1);
    join_ok(c2);
    join_ok(s);
    TH_CHECK_EQ(n->served, 2);
    /* a refused connection: the listening socket is gone */
    close(n->lfd);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    TH_CHECK_EQ(conc_coro_connect(fd, (struct sockaddr *)&n->addr, sizeof n->addr, CONC_FOREVER),
                ECONNREFUSED);
    close(fd);
    return 0;
}

static void chan_accept_connect_loopback_and_deadlines(void) {
    net_ctx n;
    memset(&n, 0, sizeof n);
    n.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    TH_CHECK(n.lfd >= 0);
    n.addr.sin_family = AF_INET;
    n.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TH_CHECK_EQ(bind(n.lfd, (struct sockaddr *)&n.addr, sizeof n.addr), 0);
    socklen_t len = sizeof n.addr;
    TH_CHECK_EQ(getsockname(n.lfd, (struct sockaddr *)&n.addr, &len), 0);
    TH_CHECK_EQ(listen(n.lfd, 16), 0);
    TH_CHECK_EQ(run_main(net_main, &n), 0);
}

TH_MAIN("chan", TH_CASE(chan_bad_input_gets_error_codes),
        TH_CASE(chan_buffered_fifo_try_and_deadlines),
        TH_CASE(chan_rendezvous_send_waits_for_its_receiver),
        TH_CASE(chan_close_wakes_every_waiter_receivers_drain),
        TH_CASE(chan_cancel_while_parked_in_each_call_hands_nothing),
        TH_CASE(chan_handoff_before_cancel_wins),
        TH_CASE(chan_timed_out_waiter_is_skipped_by_the_handoff),
        TH_CASE(chan_select_picks_fairly_among_ready_ops),
        TH_CASE(chan_select_random_state_is_one_per_program),
        TH_CASE(chan_select_parked_completes_exactly_one_op),
        TH_CASE(chan_lock_fifo_handoff_no_barging_edeadlk),
        TH_CASE(chan_sem_bounded_and_event_release_all),
        TH_CASE(chan_cond_bad_input_eperm_and_immediate_results),
        TH_CASE(chan_cond_notify_n_and_all_fifo_relock_after_notifier),
        TH_CASE(chan_cond_wakes_after_notify_all_keep_the_notified_in_order),
        TH_CASE(chan_cond_all_zero_has_its_own_lock),
        TH_CASE(chan_destroy_after_a_finished_select_and_under_a_parked_waiter),
        TH_CASE(chan_cond_cancel_while_parked_retakes_the_lock_first),
        TH_CASE(chan_cond_wait_for_predicate),
        TH_CASE(chan_cond_timeout_retakes_the_lock_and_notify_skips_it),
        TH_CASE(chan_cond_stress_bounded_buffer_timeouts_cancels_notify_races),
        TH_CASE(chan_deadlock_report_names_the_lock_owner_and_channel),
        TH_CASE(chan_lock_kept_by_a_finished_coroutine_has_no_owner),
        TH_CASE(chan_used_by_a_second_scheduler_aborts_in_debug),
        TH_CASE(chan_lock_and_channel_outlive_their_scheduler),
        TH_CASE(chan_stress_every_item_once_with_timeouts_cancels_close),
        TH_CASE(chan_ping_pong_on_schedulers_in_many_threads),
        TH_CASE(chan_accept_connect_loopback_and_deadlines))

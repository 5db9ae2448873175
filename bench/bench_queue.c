/* bench/bench_queue.c - conc_queue against a mutex+cond ring, ck_ring MPMC and queue.Queue
 * SPDX-License-Identifier: MIT
 *
 * Throughput: P producers push ITEMS/P items each, C consumers pop ITEMS/C each, through one
 * queue of capacity 1024 (ck_ring: 1024 slots, 1023 usable; it needs a power of two). One op
 * is one item moved end to end. 1P1C, 2P2C and 4P4C (8 threads on this 2-core machine), 8- and
 * 64-byte items, batch sizes 1 and 32 (conc: push_batch/pop_batch; the mutex ring: one lock
 * per batch; ck_ring has no batch: a loop of singles). ck_ring cannot block, so its threads
 * retry with sched_yield, and run against a deadline rather than a fixed count (see struct
 * run: its producers can stall each other for whole time slices). Python's queue.Queue runs
 * the same 8-byte workload in a child process (bench/python/queue_bench.py); its ns/op is
 * parsed so its ratio comes from this run (its CPU column prints "-": the work runs in the
 * child, whose CPU time this process does not see).
 *
 * Placement: 1P1C with 8-byte items three ways: both threads pinned to CPU 0 (they take turns:
 * each runs until the queue is full or empty, so the cost is the operations themselves and
 * how cheaply a side gives the CPU away), producer on CPU 0 and consumer on CPU 1, and
 * unpinned (wherever the scheduler puts them: on a busy host often one CPU).
 *
 * One thread: on CPU 0, 1,023 pushes and then 1,023 pops, repeated (no handoff, no wait): the
 * push and pop themselves, the part of the same-CPU row that is not the handoffs.
 *
 * Latency: ping-pong through two queues (push to one, pop the answer from the other), round
 * trip ns, with the two threads pinned to different CPUs and unpinned.
 *
 * futex/100 ops counts conc's futex syscalls (CONC_FUTEX_HOOK); baselines show "-" (not
 * counted). CPU ns/op is process CPU time: spinning shows up there.
 *
 * Run: make build/bench/bench_queue && flock /tmp/conc-bench.lock build/bench/bench_queue
 */
#include "bench.h"
#include "conc/queue.h"

#include <ck_ring.h>

#define CAPACITY 1024
#define MAX_ITEM 64

typedef struct item8 {
    uint64_t v;
} item8;
typedef struct item64 {
    uint64_t v[8];
} item64;
CK_RING_PROTOTYPE(item8, item8)
CK_RING_PROTOTYPE(item64, item64)

typedef enum impl_kind { IMPL_CONC, IMPL_MUTEX, IMPL_CK } impl_kind;

/* Where the threads of a throughput run are: unpinned, all on CPU 0, or thread i on CPU i. */
typedef enum placement { PLACE_UNPINNED, PLACE_SAME_CPU, PLACE_SPREAD } placement;

/* ------------------------------------------------------------------------------------------
 * The plain mutex+cond ring (what most C code writes by hand)
 * ---------------------------------------------------------------------------------------- */
typedef struct mring {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    size_t cap, item, head, count;
    unsigned char *buf;
} mring;

static void mring_init(mring *r, size_t cap, size_t item) {
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    pthread_cond_init(&r->not_full, NULL);
    r->cap = cap;
    r->item = item;
    r->head = r->count = 0;
    r->buf = (unsigned char *)malloc(cap * item);
    if (!r->buf)
        abort();
}

static void mring_fini(mring *r) {
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->not_empty);
    pthread_cond_destroy(&r->not_full);
    free(r->buf);
}

/* Slot of position i < 2 * cap: one compare, not a division (cap is a run-time value, so `%`
 * would be a div instruction, 10-40 cycles, inside the critical section). */
static inline size_t mring_slot(const mring *r, size_t i) {
    return i < r->cap ? i : i - r->cap;
}

/* Moves up to n items in under one lock hold (blocks while full); returns how many. */
static size_t mring_push(mring *r, const unsigned char *items, size_t n) {
    pthread_mutex_lock(&r->lock);
    while (r->count == r->cap)
        pthread_cond_wait(&r->not_full, &r->lock);
    size_t k = r->cap - r->count < n ? r->cap - r->count : n;
    for (size_t i = 0; i < k; i++)
        memcpy(r->buf + mring_slot(r, r->head + r->count + i) * r->item, items + i * r->item,
               r->item);
    r->count += k;
    if (k > 1)
        pthread_cond_broadcast(&r->not_empty);
    else
        pthread_cond_signal(&r->not_empty);
    pthread_mutex_unlock(&r->lock);
    return k;
}

static size_t mring_pop(mring *r, unsigned char *items, size_t n) {
    pthread_mutex_lock(&r->lock);
    while (r->count == 0)
        pthread_cond_wait(&r->not_empty, &r->lock);
    size_t k = r->count < n ? r->count : n;
    for (size_t i = 0; i < k; i++)
        memcpy(items + i * r->item, r->buf + mring_slot(r, r->head + i) * r->item, r->item);
    r->head = mring_slot(r, r->head + k);
    r->count -= k;
    if (k > 1)
        pthread_cond_broadcast(&r->not_full);
    else
        pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->lock);
    return k;
}

/* ------------------------------------------------------------------------------------------
 * One run: the same thread bodies for every implementation
 * ---------------------------------------------------------------------------------------- */
typedef struct run {
    impl_kind kind;
    placement place;
    int producers, consumers;
    size_t item_size, batch;
    uint64_t per_producer, per_consumer;
    conc_queue_t *cq;
    mring mr;
    ck_ring_t ck;
    void *ck_buf;
    uint64_t checksum; /* relaxed: consumers add what they saw, checked after the join */
    /* ck_ring only: a time limit. Its MPMC producers spin inside ck (no yield) until every
     * earlier producer has committed; with 8 threads on 2 CPUs a preempted producer stalls
     * the rest for a time slice at a time and a fixed item count can take minutes. So ck
     * runs move as many items as they can before the deadline, then drain. */
    int64_t deadline;
    uint64_t sent[8];   /* per producer, read after the join */
    int producers_done; /* release by each producer when it stops */
    /* Each thread's first and last clock read, read after the join: the run is timed from
     * the first thread's start to the last one's end, not around thread creation and join,
     * which cost about as much for every implementation but weigh more in a short run
     * (conc's fixed count) than in a long one (ck's deadline). */
    int64_t t_begin[8], t_end[8];
} run;

static void ck_push1(run *r, const unsigned char *item) {
    if (r->item_size == 8) {
        while (!ck_ring_enqueue_mpmc_item8(&r->ck, (item8 *)r->ck_buf, (item8 *)(uintptr_t)item))
            sched_yield();
    } else {
        while (!ck_ring_enqueue_mpmc_item64(&r->ck, (item64 *)r->ck_buf, (item64 *)(uintptr_t)item))
            sched_yield();
    }
}

static void ck_pop1(run *r, unsigned char *item) {
    if (r->item_size == 8) {
        while (!ck_ring_dequeue_mpmc_item8(&r->ck, (item8 *)r->ck_buf, (item8 *)(void *)item))
            sched_yield();
    } else {
        while (!ck_ring_dequeue_mpmc_item64(&r->ck, (item64 *)r->ck_buf, (item64 *)(void *)item))
            sched_yield();
    }
}

static void producer(run *r, int index) {
    uint64_t buf[32 * MAX_ITEM / 8];
    memset(buf, 0, sizeof buf);
    size_t words = r->item_size / 8;
    uint64_t sent = 0, base = (uint64_t)index * r->per_producer;
    /* ck only (the rows with a deadline): a clock read costs ~35 ns here, 0.5 ns per item if
     * taken every 64 items, which conc's rows do not pay; so 1P1C, where ck runs at about
     * conc's speed, reads it every 1,024. With several producers ck can stall for whole time
     * slices per item (see struct run), and every 64 keeps the run near its deadline. */
    const uint64_t check_mask = r->producers > 1 ? 63 : 1023;
    while (sent < r->per_producer) {
        if (r->deadline && (sent & check_mask) == 0 && bench_now() >= r->deadline)
            break;
        size_t n = r->batch;
        if (n > r->per_producer - sent)
            n = (size_t)(r->per_producer - sent);
        for (size_t i = 0; i < n; i++)
            buf[i * words] = base + sent + i;
        const unsigned char *p = (const unsigned char *)buf;
        switch (r->kind) {
        case IMPL_CONC:
            if (n == 1) {
                if (conc_queue_push(r->cq, p) != 0)
                    abort();
            } else if (conc_queue_push_batch(r->cq, p, n, NULL) != 0) {
                abort();
            }
            break;
        case IMPL_MUTEX:
            for (size_t done = 0; done < n;)
                done += mring_push(&r->mr, p + done * r->item_size, n - done);
            break;
        case IMPL_CK:
            for (size_t i = 0; i < n; i++)
                ck_push1(r, p + i * r->item_size);
            break;
        }
        sent += n;
    }
    r->sent[index] = sent;
    /* Release: pairs with the consumers' acquire: every enqueue of ours is committed. */
    __atomic_fetch_add(&r->producers_done, 1, __ATOMIC_RELEASE);
}

/* ck consumers under a deadline: pop until the producers are done and the ring is empty. */
static void ck_consumer_timed(run *r) {
    uint64_t sum = 0;
    unsigned char item[MAX_ITEM];
    uint64_t first;
    for (;;) {
        bool ok =
            r->item_size == 8
                ? ck_ring_dequeue_mpmc_item8(&r->ck, (item8 *)r->ck_buf, (item8 *)(void *)item)
                : ck_ring_dequeue_mpmc_item64(&r->ck, (item64 *)r->ck_buf, (item64 *)(void *)item);
        if (ok) {
            memcpy(&first, item, sizeof first);
            sum += first;
            continue;
        }
        if (__atomic_load_n(&r->producers_done, __ATOMIC_ACQUIRE) == r->producers) {
            ok = r->item_size == 8
                     ? ck_ring_dequeue_mpmc_item8(&r->ck, (item8 *)r->ck_buf, (item8 *)(void *)item)
                     : ck_ring_dequeue_mpmc_item64(&r->ck, (item64 *)r->ck_buf,
                                                   (item64 *)(void *)item);
            if (!ok)
                break;
            memcpy(&first, item, sizeof first);
            sum += first;
            continue;
        }
        sched_yield();
    }
    __atomic_fetch_add(&r->checksum, sum, __ATOMIC_RELAXED);
}

static void consumer(run *r) {
    uint64_t buf[32 * MAX_ITEM / 8];
    size_t words = r->item_size / 8;
    uint64_t got = 0, sum = 0;
    if (r->kind == IMPL_CONC && r->batch == 1) {
        /* Single items: one pop and one add an item, the loop ck_consumer_timed runs, so that
         * the rows compare the queues and not the batch bookkeeping below, which ck_ring's
         * consumer never ran. */
        for (; got < r->per_consumer; got++) {
            if (conc_queue_pop(r->cq, buf) != 0)
                abort();
            sum += buf[0];
        }
    }
    while (got < r->per_consumer) {
        size_t want = r->batch, n = 0;
        if (want > r->per_consumer - got)
            want = (size_t)(r->per_consumer - got);
        unsigned char *p = (unsigned char *)buf;
        switch (r->kind) {
        case IMPL_CONC:
            if (want == 1) {
                if (conc_queue_pop(r->cq, p) != 0)
                    abort();
                n = 1;
            } else if (conc_queue_pop_batch(r->cq, p, want, &n) != 0) {
                abort();
            }
            break;
        case IMPL_MUTEX:
            n = mring_pop(&r->mr, p, want);
            break;
        case IMPL_CK:
            for (size_t i = 0; i < want; i++)
                ck_pop1(r, p + i * r->item_size);
            n = want;
            break;
        }
        for (size_t i = 0; i < n; i++)
            sum += buf[i * words];
        got += n;
    }
    __atomic_fetch_add(&r->checksum, sum, __ATOMIC_RELAXED);
}

static void run_thread(int index, void *arg) {
    run *r = (run *)arg;
    if (r->place != PLACE_UNPINNED)
        bench_pin(r->place == PLACE_SAME_CPU ? 0 : index);
    r->t_begin[index] = bench_now();
    if (index < r->producers)
        producer(r, index);
    else if (r->deadline)
        ck_consumer_timed(r);
    else
        consumer(r);
    r->t_end[index] = bench_now();
}

typedef struct tp_case {
    impl_kind kind;
    int producers, consumers;
    size_t item_size, batch;
    placement place;
} tp_case;

static uint64_t tp_items(void) {
    return bench_state.quick ? 200000 : 1000000;
}

static void run_throughput(void *ctx, bench_sample *s) {
    tp_case *c = (tp_case *)ctx;
    run *r = (run *)aligned_alloc(64, (sizeof(run) + 63) & ~(size_t)63);
    if (!r)
        abort();
    memset(r, 0, sizeof *r);
    r->kind = c->kind;
    r->place = c->place;
    r->producers = c->producers;
    r->consumers = c->consumers;
    r->item_size = c->item_size;
    r->batch = c->batch;
    uint64_t items = tp_items();
    items -= items % (uint64_t)(c->producers * c->consumers);
    r->per_producer = items / (uint64_t)c->producers;
    r->per_consumer = items / (uint64_t)c->consumers;
    switch (c->kind) {
    case IMPL_CONC:
        if (conc_queue_create(&r->cq, CAPACITY, c->item_size) != 0)
            abort();
        break;
    case IMPL_MUTEX:
        mring_init(&r->mr, CAPACITY, c->item_size);
        break;
    case IMPL_CK:
        ck_ring_init(&r->ck, CAPACITY);
        r->ck_buf = aligned_alloc(64, CAPACITY * c->item_size);
        if (!r->ck_buf)
            abort();
        r->deadline = bench_now() + bench_duration_ns() / 2;
        break;
    }
    unsigned long f0 = bench_futex_count();
    bench_threads(c->producers + c->consumers, run_thread, r);
    unsigned long f1 = bench_futex_count();
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    for (int i = 0; i < c->producers + c->consumers; i++) {
        t0 = r->t_begin[i] < t0 ? r->t_begin[i] : t0;
        t1 = r->t_end[i] > t1 ? r->t_end[i] : t1;
    }
    uint64_t expect = items * (items - 1) / 2;
    if (r->deadline) { /* ck: what each producer managed to send */
        expect = 0;
        items = 0;
        for (int p = 0; p < c->producers; p++) {
            uint64_t base = (uint64_t)p * r->per_producer, n = r->sent[p];
            expect += base * n + n * (n - 1) / 2;
            items += n;
        }
    }
    if (r->checksum != expect) {
        fprintf(stderr, "bench_queue: checksum %llu != %llu\n", (unsigned long long)r->checksum,
                (unsigned long long)expect);
        abort();
    }
    s->ops = (double)items;
    s->wall_ns = (double)(t1 - t0);
    s->extra[0] = (double)items / ((double)(t1 - t0) / 1e9) / 1e6;
    s->extra[1] = c->kind == IMPL_CONC ? (double)(f1 - f0) * 100.0 / (double)items : NAN;
    switch (c->kind) {
    case IMPL_CONC:
        conc_queue_destroy(r->cq);
        break;
    case IMPL_MUTEX:
        mring_fini(&r->mr);
        break;
    case IMPL_CK:
        free(r->ck_buf);
        break;
    }
    free(r);
}

/* ------------------------------------------------------------------------------------------
 * Python queue.Queue, same workload, in a child process
 * ---------------------------------------------------------------------------------------- */
static char python_script[1024];

static bool find_python_script(const char *argv0) {
    const char *candidates[] = {"bench/python/queue_bench.py", NULL};
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], R_OK) == 0) {
            snprintf(python_script, sizeof python_script, "%s", candidates[i]);
            return access("/usr/bin/python3", X_OK) == 0 ||
                   system("command -v python3 >/dev/null") == 0;
        }
    /* next to the binary: build/bench/bench_queue -> ../../bench/python */
    char dir[900];
    snprintf(dir, sizeof dir, "%s", argv0);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return false;
    *slash = 0;
    snprintf(python_script, sizeof python_script, "%s/../../bench/python/queue_bench.py", dir);
    return access(python_script, R_OK) == 0 && system("command -v python3 >/dev/null") == 0;
}

static void run_python(void *ctx, bench_sample *s) {
    tp_case *c = (tp_case *)ctx;
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "python3 %s %d %d %d %zu %d", python_script, c->producers,
             c->consumers, bench_state.quick ? 30000 : 100000, c->item_size, CAPACITY);
    FILE *f = popen(cmd, "r");
    double ops = 0, ns = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "ops %lf", &ops) == 1)
            continue;
        (void)sscanf(line, "ns_per_op %lf", &ns);
    }
    if (!f || pclose(f) != 0 || ops <= 0 || ns <= 0) {
        fprintf(stderr, "bench_queue: %s failed\n", cmd);
        exit(1);
    }
    s->ops = ops;
    s->wall_ns = ns * ops;
    s->cpu_elsewhere = true; /* a child process: CPU ns/op prints "-" */
    s->extra[0] = 1e3 / ns;
    s->extra[1] = NAN; /* futex calls are counted for conc only */
}

/* ------------------------------------------------------------------------------------------
 * Ping-pong latency
 * ---------------------------------------------------------------------------------------- */
typedef struct pingpong {
    impl_kind kind;
    bool pin;
    conc_queue_t *cq[2];
    mring mr[2];
    ck_ring_t ck[2];
    item8 *ck_buf[2];
    uint64_t rounds; /* set by thread 0 when it stops */
} pingpong;

static void pp_send(pingpong *p, int which, uint64_t v) {
    item8 it = {v};
    switch (p->kind) {
    case IMPL_CONC:
        if (conc_queue_push(p->cq[which], &it) != 0)
            abort();
        break;
    case IMPL_MUTEX:
        mring_push(&p->mr[which], (const unsigned char *)&it, 1);
        break;
    case IMPL_CK:
        while (!ck_ring_enqueue_mpmc_item8(&p->ck[which], p->ck_buf[which], &it))
            sched_yield();
        break;
    }
}

static uint64_t pp_recv(pingpong *p, int which) {
    item8 it = {0};
    switch (p->kind) {
    case IMPL_CONC:
        if (conc_queue_pop(p->cq[which], &it) != 0)
            abort();
        break;
    case IMPL_MUTEX:
        mring_pop(&p->mr[which], (unsigned char *)&it, 1);
        break;
    case IMPL_CK:
        while (!ck_ring_dequeue_mpmc_item8(&p->ck[which], p->ck_buf[which], &it))
            sched_yield();
        break;
    }
    return it.v;
}

static void pp_thread(int index, void *arg) {
    pingpong *p = (pingpong *)arg;
    if (p->pin)
        bench_pin(index);
    if (index == 0) {
        int64_t end = bench_now() + bench_duration_ns();
        uint64_t i = 0;
        for (;;) {
            pp_send(p, 0, i);
            if (pp_recv(p, 1) != i + 1)
                abort();
            i++;
            if ((i & 63) == 0 && bench_now() >= end)
                break;
        }
        pp_send(p, 0, UINT64_MAX); /* stop */
        p->rounds = i;
    } else {
        for (;;) {
            uint64_t v = pp_recv(p, 0);
            if (v == UINT64_MAX)
                break;
            pp_send(p, 1, v + 1);
        }
    }
    if (p->pin)
        bench_unpin();
}

static void run_pingpong(void *ctx, bench_sample *s) {
    pingpong *proto = (pingpong *)ctx;
    pingpong p;
    memset(&p, 0, sizeof p);
    p.kind = proto->kind;
    p.pin = proto->pin;
    for (int i = 0; i < 2; i++) {
        switch (p.kind) {
        case IMPL_CONC:
            if (conc_queue_create(&p.cq[i], CAPACITY, sizeof(item8)) != 0)
                abort();
            break;
        case IMPL_MUTEX:
            mring_init(&p.mr[i], CAPACITY, sizeof(item8));
            break;
        case IMPL_CK:
            ck_ring_init(&p.ck[i], CAPACITY);
            p.ck_buf[i] = (item8 *)aligned_alloc(64, CAPACITY * sizeof(item8));
            if (!p.ck_buf[i])
                abort();
            break;
        }
    }
    unsigned long f0 = bench_futex_count();
    int64_t t0 = bench_now();
    bench_threads(2, pp_thread, &p);
    int64_t t1 = bench_now();
    unsigned long f1 = bench_futex_count();
    s->ops = (double)p.rounds;
    s->wall_ns = (double)(t1 - t0);
    s->extra[0] = (double)p.rounds / ((double)(t1 - t0) / 1e9) / 1e6;
    s->extra[1] = p.kind == IMPL_CONC ? (double)(f1 - f0) * 100.0 / (double)(2 * p.rounds) : NAN;
    for (int i = 0; i < 2; i++) {
        switch (p.kind) {
        case IMPL_CONC:
            conc_queue_destroy(p.cq[i]);
            break;
        case IMPL_MUTEX:
            mring_fini(&p.mr[i]);
            break;
        case IMPL_CK:
            free(p.ck_buf[i]);
            break;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
static void bars(const char *label, bool with_python, bool with_futex) {
    char what[160];
    /* bench_last[i].ratio = conc time / baseline time: speedup = 1 / ratio */
    snprintf(what, sizeof what, "%s throughput vs mutex+cond ring (x)", label);
    bench_bar(what, 1.0 / bench_last[1].ratio.median, ">=", 1.5);
    snprintf(what, sizeof what, "%s throughput vs ck_ring mpmc + yield (x)", label);
    bench_bar(what, 1.0 / bench_last[2].ratio.median, ">=", 1.0);
    if (with_python) {
        snprintf(what, sizeof what, "%s throughput vs Python queue.Queue (x)", label);
        bench_bar(what, 1.0 / bench_last[3].ratio.median, ">=", 25);
    }
    if (with_futex) {
        snprintf(what, sizeof what, "%s futex calls per 100 ops, both sides busy", label);
        bench_bar(what, bench_last[0].extra[1].median, "<=", 1.0);
    }
}

/* ---- one thread, no handoff: a ring's worth of pushes, then as many pops ------------------ */

/* What the same-CPU row costs apart from its handoffs: the push and the pop themselves, on one
 * thread (pinned to CPU 0), 1,023 items (ck_ring's usable capacity) in and then out, repeated.
 * Neither queue ever waits or yields here. */
typedef struct alone_case {
    impl_kind kind;
} alone_case;

static void run_alone(void *ctx, bench_sample *s) {
    alone_case *c = (alone_case *)ctx;
    const uint64_t per_lap = CAPACITY - 1, laps = bench_state.quick ? 2000 : 10000;
    conc_queue_t *q = NULL;
    ck_ring_t ck;
    item8 *ck_buf = NULL;
    if (c->kind == IMPL_CONC) {
        if (conc_queue_create(&q, CAPACITY, sizeof(uint64_t)) != 0)
            abort();
    } else {
        ck_ring_init(&ck, CAPACITY);
        ck_buf = (item8 *)aligned_alloc(64, CAPACITY * sizeof(item8));
        if (!ck_buf)
            abort();
    }
    bench_pin(0);
    uint64_t sum = 0;
    int64_t t0 = bench_now();
    /* One loop per queue, so that neither pays for a test of the kind per item. */
    if (c->kind == IMPL_CONC) {
        for (uint64_t lap = 0; lap < laps; lap++) {
            for (uint64_t i = 0; i < per_lap; i++)
                if (conc_queue_try_push(q, &i) != 0)
                    abort();
            for (uint64_t i = 0, v; i < per_lap; i++, sum += v)
                if (conc_queue_try_pop(q, &v) != 0)
                    abort();
        }
    } else {
        for (uint64_t lap = 0; lap < laps; lap++) {
            for (uint64_t i = 0; i < per_lap; i++) {
                item8 it = {i};
                if (!ck_ring_enqueue_mpmc_item8(&ck, ck_buf, &it))
                    abort();
            }
            for (uint64_t i = 0; i < per_lap; i++) {
                item8 it;
                if (!ck_ring_dequeue_mpmc_item8(&ck, ck_buf, &it))
                    abort();
                sum += it.v;
            }
        }
    }
    int64_t t1 = bench_now();
    bench_unpin();
    if (sum != laps * (per_lap * (per_lap - 1) / 2)) /* every lap gave back its 0..1,022 */
        abort();
    conc_queue_destroy(q);
    free(ck_buf);
    s->ops = (double)(laps * per_lap);
    s->wall_ns = (double)(t1 - t0);
}

/* ---- task accounting (opt-in): the same 1P1C transfer with and without it ---------------- */

typedef struct tasks_case {
    bool counted;
    conc_queue_t *q;
    long items;
    int64_t wall;
} tasks_case;

static void tasks_thread(int index, void *arg) {
    tasks_case *c = (tasks_case *)arg;
    uint64_t v = 0;
    if (index == 0) {
        int64_t t0 = bench_now();
        for (long i = 0; i < c->items; i++) {
            v = (uint64_t)i;
            if ((c->counted ? conc_queue_push_task(c->q, &v) : conc_queue_push(c->q, &v)) != 0)
                abort();
        }
        if (c->counted)
            conc_queue_join(c->q); /* every item popped and done */
        c->wall = bench_now() - t0;
        return;
    }
    for (long i = 0; i < c->items; i++) {
        if (conc_queue_pop(c->q, &v) != 0 || v != (uint64_t)i)
            abort();
        if (c->counted && conc_queue_task_done(c->q) != 0)
            abort();
    }
}

static void run_tasks(void *ctx, bench_sample *s) {
    tasks_case *c = (tasks_case *)ctx;
    if (conc_queue_create(&c->q, CAPACITY, sizeof(uint64_t)) != 0)
        abort();
    c->items = bench_state.quick ? 200000 : 1000000;
    bench_threads(2, tasks_thread, c);
    if (conc_queue_unfinished(c->q) != 0)
        abort();
    conc_queue_destroy(c->q);
    s->ops = (double)c->items;
    s->wall_ns = (double)c->wall;
}

int main(int argc, char **argv) {
    (void)argc;
    bench_init("queue");
    bool python = find_python_script(argv[0]);
    if (!python)
        printf("(python3 or bench/python/queue_bench.py not found: Python rows skipped)\n");
    static const char *const tp_cols[] = {"M items/s", "futex/100 ops", NULL};
    const int pairs[] = {1, 2, 4};
    const size_t sizes[] = {8, 64};
    const size_t batches[] = {1, 32};
    for (size_t si = 0; si < 2; si++) {
        for (size_t bi = 0; bi < 2; bi++) {
            char title[128];
            snprintf(title, sizeof title,
                     "throughput, %zu-byte items, batch %zu, capacity %d (2 CPUs)", sizes[si],
                     batches[bi], CAPACITY);
            bench_table(title, tp_cols);
            for (size_t pi = 0; pi < 3; pi++) {
                int n = pairs[pi];
                tp_case cc = {IMPL_CONC, n, n, sizes[si], batches[bi], PLACE_UNPINNED};
                tp_case cm = {IMPL_MUTEX, n, n, sizes[si], batches[bi], PLACE_UNPINNED};
                tp_case ck = {IMPL_CK, n, n, sizes[si], batches[bi], PLACE_UNPINNED};
                tp_case cp = {IMPL_CONC, n, n, sizes[si], batches[bi], PLACE_UNPINNED};
                bool py = python && sizes[si] == 8 && batches[bi] == 1;
                bench_impl impls[] = {
                    {batches[bi] > 1 ? "conc_queue push_batch/pop_batch" : "conc_queue",
                     run_throughput, &cc},
                    {"mutex+cond ring", run_throughput, &cm},
                    {batches[bi] > 1 ? "ck_ring mpmc + yield (singles)" : "ck_ring mpmc + yield",
                     run_throughput, &ck},
                    {"Python queue.Queue", run_python, &cp},
                };
                char name[32];
                snprintf(name, sizeof name, "%dP%dC", n, n);
                bench_run(name, impls, py ? 4 : 3);
                if (sizes[si] == 8 && batches[bi] == 1) {
                    char label[48];
                    snprintf(label, sizeof label, "%s 8-byte", name);
                    bars(label, py, true);
                }
            }
        }
    }

    bench_table("1P1C by placement, 8-byte items, batch 1, capacity 1024", tp_cols);
    static const struct {
        placement place;
        const char *name, *label;
    } places[] = {{PLACE_SAME_CPU, "same CPU (both on CPU 0)", "1P1C same CPU"},
                  {PLACE_SPREAD, "two CPUs (producer 0, consumer 1)", "1P1C two CPUs"},
                  {PLACE_UNPINNED, "unpinned", "1P1C unpinned"}};
    for (size_t pl = 0; pl < sizeof places / sizeof places[0]; pl++) {
        tp_case cc = {IMPL_CONC, 1, 1, 8, 1, places[pl].place};
        tp_case cm = {IMPL_MUTEX, 1, 1, 8, 1, places[pl].place};
        tp_case ck = {IMPL_CK, 1, 1, 8, 1, places[pl].place};
        bench_impl impls[] = {{"conc_queue", run_throughput, &cc},
                              {"mutex+cond ring", run_throughput, &cm},
                              {"ck_ring mpmc + yield", run_throughput, &ck}};
        bench_run(places[pl].name, impls, 3);
        char what[96];
        snprintf(what, sizeof what, "%s 8-byte throughput vs ck_ring mpmc + yield (x)",
                 places[pl].label);
        bench_bar(what, 1.0 / bench_last[2].ratio.median, ">=", 1.0);
    }

    bench_table("one thread on CPU 0: 1,023 pushes, then 1,023 pops (no handoff; ns/op: one item "
                "in and out)",
                NULL);
    static alone_case alone_conc = {IMPL_CONC}, alone_ck = {IMPL_CK};
    bench_impl aimpls[] = {{"conc_queue try_push / try_pop", run_alone, &alone_conc},
                           {"ck_ring mpmc enqueue / dequeue", run_alone, &alone_ck}};
    bench_run("8-byte items", aimpls, 2);

    static const char *const pp_cols[] = {"M round trips/s", "futex/100 ops", NULL};
    bench_table("ping-pong latency: round trip through two queues (ns/op = one round trip)",
                pp_cols);
    for (int pin = 1; pin >= 0; pin--) {
        static pingpong pc, pm, pk; /* only kind and pin are read from these */
        pc.kind = IMPL_CONC;
        pm.kind = IMPL_MUTEX;
        pk.kind = IMPL_CK;
        pc.pin = pm.pin = pk.pin = pin != 0;
        bench_impl impls[] = {{"conc_queue", run_pingpong, &pc},
                              {"mutex+cond ring", run_pingpong, &pm},
                              {"ck_ring mpmc + yield", run_pingpong, &pk}};
        bench_run(pin ? "pinned" : "unpinned", impls, 3);
    }

    /* Task accounting is opt-in: plain push/pop never touch the task word, which sits in
     * spare room of the eventcount line (sizeof(conc_queue_t) is the same with it). */
    bench_table("task accounting (opt-in): 1P1C 8-byte items, unpinned; the counted run ends "
                "with join",
                NULL);
    static tasks_case plain = {false, NULL, 0, 0}, counted = {true, NULL, 0, 0};
    bench_impl timpls[] = {{"push_task / pop + task_done", run_tasks, &counted},
                           {"push / pop (no accounting)", run_tasks, &plain}};
    bench_run("1P1C", timpls, 2);
    printf("sizeof(conc_queue_t) = %zu bytes: the task word is at offset %zu, in the eventcount "
           "line that starts at %zu (queue.h asserts it adds no room)\n",
           sizeof(conc_queue_t), offsetof(conc_queue_t, tasks), offsetof(conc_queue_t, not_empty));
    return bench_done();
}

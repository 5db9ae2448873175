/* bench/bench_chan.c - channels, coroutine locks, awaiting futures and an echo server on
 * coroutines, against asyncio, a Go-style rendezvous and a thread-per-connection server
 * SPDX-License-Identifier: MIT
 *
 * Side by side, in one run (asyncio in child processes: bench/python/chan_bench.py):
 *   - ping-pong between two coroutines over two channels of capacity 1, against asyncio
 *     Queue(maxsize=1); the same over rendezvous channels (capacity 0, Go's unbuffered chan);
 *   - lock handoff: 4 coroutines each acquire, yield while holding, release (every release
 *     hands the lock to a parked waiter), against asyncio.Lock;
 *   - awaiting an executor future (a trivial task on a 2-thread executor) from a coroutine,
 *     against asyncio's run_in_executor round trip on a 2-thread pool;
 *   - an echo server: one thread of coroutines (conc_coro_accept/read/write), both with a
 *     coroutine spawned per request by an fd watch (conc_coro_watch_fd: an idle connection
 *     holds no stack) and with one coroutine per connection; asyncio streams; and a thread per
 *     connection, each in its own process on 127.0.0.1, driven by a C load
 *     generator (an epoll loop holding 1, 100 or 1,000 connections, one 64-byte request in
 *     flight on each, every echo checked) for a bounded time per repetition; the extra column
 *     is the server's resident memory.
 * The soft RLIMIT_NOFILE is raised to the hard limit first (1,000 connections need more than
 * the usual 1,024 fds in the client). Built as users build for production: CONC_DEBUG 0.
 */
#define CONC_DEBUG 0
#include "bench.h"
#include "conc/chan.h"
#include "conc/coro_bridge.h"
#include "conc/conc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

static bool have_python;

static void must(int e, const char *what) {
    if (e) {
        fprintf(stderr, "bench_chan: %s: %s\n", what, strerror(e));
        exit(1);
    }
}

/* ------------------------------------------------------------------------------------------
 * Channel ping-pong
 * ---------------------------------------------------------------------------------------- */
typedef struct pp_ctx {
    conc_chan_t *to, *from;
    long rounds;
    int64_t t0, t1;
} pp_ctx;

static int pp_echo(void *p) {
    pp_ctx *c = (pp_ctx *)p;
    long v;
    while (conc_chan_recv(c->to, &v) == 0)
        if (conc_chan_send(c->from, &v) != 0)
            break;
    return 0;
}

static int pp_main(void *p) {
    pp_ctx *c = (pp_ctx *)p;
    must(conc_coro_spawn(NULL, pp_echo, c, NULL, NULL), "spawn");
    c->t0 = bench_now();
    for (long i = 0; i < c->rounds; i++) {
        long v;
        if (conc_chan_send(c->to, &i) != 0 || conc_chan_recv(c->from, &v) != 0 || v != i)
            must(EPROTO, "ping-pong");
    }
    c->t1 = bench_now();
    conc_chan_close(c->to);
    return 0;
}

static long pp_rounds(void) {
    return bench_state.quick ? 300000 : 2000000;
}

static void run_chan_pp(void *ctx, bench_sample *s) {
    size_t cap = (size_t)(uintptr_t)ctx;
    pp_ctx c;
    memset(&c, 0, sizeof c);
    c.rounds = pp_rounds();
    must(conc_chan_create(&c.to, cap, sizeof(long)), "chan");
    must(conc_chan_create(&c.from, cap, sizeof(long)), "chan");
    int st;
    must(conc_run(pp_main, &c, &st), "conc_run");
    conc_chan_destroy(c.to);
    conc_chan_destroy(c.from);
    s->ops = (double)c.rounds;
    s->wall_ns = (double)(c.t1 - c.t0);
}

static void run_py_pp(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 10000 : 40000;
    bench_python_sample(s, (double)n, NULL, "pingpong %ld", n);
}

/* ------------------------------------------------------------------------------------------
 * Lock handoff
 * ---------------------------------------------------------------------------------------- */
enum { LOCK_TASKS = 4 };

typedef struct lk_ctx {
    conc_coro_lock_t lock;
    long per;
    long held; /* plain: guarded by the lock */
} lk_ctx;

static int lk_worker(void *p) {
    lk_ctx *c = (lk_ctx *)p;
    for (long i = 0; i < c->per; i++) {
        must(conc_coro_lock_acquire(&c->lock), "acquire");
        c->held++;
        must(conc_coro_yield(), "yield"); /* the others arrive and park */
        must(conc_coro_lock_release(&c->lock), "release");
    }
    return 0;
}

static void run_conc_lock(void *ctx, bench_sample *s) {
    (void)ctx;
    lk_ctx c;
    memset(&c, 0, sizeof c);
    conc_coro_lock_init(&c.lock);
    c.per = (bench_state.quick ? 200000 : 1000000) / LOCK_TASKS;
    conc_sched_t *sc;
    must(conc_sched_create(&sc, NULL), "sched");
    for (int i = 0; i < LOCK_TASKS; i++)
        must(conc_coro_spawn(sc, lk_worker, &c, NULL, NULL), "spawn");
    int64_t t0 = bench_now();
    must(conc_sched_run(sc), "run");
    s->wall_ns = (double)(bench_now() - t0);
    conc_sched_destroy(sc);
    if (c.held != c.per * LOCK_TASKS)
        must(EPROTO, "lock count");
    s->ops = (double)c.held;
}

static void run_py_lock(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 10000 : 40000;
    bench_python_sample(s, (double)n, NULL, "lock %ld %d", n, LOCK_TASKS);
}

/* ------------------------------------------------------------------------------------------
 * Awaiting an executor future
 * ---------------------------------------------------------------------------------------- */
typedef struct aw_ctx {
    conc_executor_t *ex;
    long rounds;
    int64_t ns;
} aw_ctx;

static int trivial_task(void *arg, void **result) {
    *result = arg;
    return 0;
}

static int aw_main(void *p) {
    aw_ctx *c = (aw_ctx *)p;
    int64_t t0 = bench_now();
    for (long i = 0; i < c->rounds; i++) {
        conc_future_t *f;
        must(conc_executor_submit(c->ex, trivial_task, (void *)(intptr_t)i, &f), "submit");
        must(conc_coro_await(f, CONC_FOREVER), "await");
        if ((intptr_t)conc_future_result(f) != i)
            must(EPROTO, "await result");
        conc_future_release(f);
    }
    c->ns = bench_now() - t0;
    return 0;
}

static void run_conc_await(void *ctx, bench_sample *s) {
    aw_ctx *c = (aw_ctx *)ctx;
    c->rounds = bench_state.quick ? 5000 : 20000;
    int st;
    must(conc_run(aw_main, c, &st), "conc_run");
    s->ops = (double)c->rounds;
    s->wall_ns = (double)c->ns;
}

static void run_py_executor(void *ctx, bench_sample *s) {
    (void)ctx;
    long n = bench_state.quick ? 1000 : 4000;
    bench_python_sample(s, (double)n, NULL, "executor %ld", n);
}

/* ------------------------------------------------------------------------------------------
 * Echo servers (each in a child process) and the load generator
 * ---------------------------------------------------------------------------------------- */
#define ECHO_MSG 64
#define ECHO_BUF 512 /* a server's read buffer (on its coroutine's or thread's stack) */
#define ECHO_BACKLOG 4096

static int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        must(errno, "socket");
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, ECHO_BACKLOG) != 0)
        must(errno, "bind/listen");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        must(errno, "getsockname");
    *port = ntohs(a.sin_port);
    return fd;
}

static int coro_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF];
    for (;;) {
        size_t got;
        if (conc_coro_read(fd, buf, sizeof buf, CONC_FOREVER, &got) != 0 || got == 0)
            break;
        if (conc_coro_write(fd, buf, got, CONC_FOREVER, NULL) != 0)
            break;
    }
    close(fd);
    return 0;
}

/* The same server with no coroutine per idle connection: a watch spawns one for each request,
 * which echoes it and watches the connection again (asyncio's add_reader, with a coroutine
 * for the callback). What stays per connection is a watch record and the fd table's entry. */
static const conc_coro_opts_t ready_opts = {CONC_CORO_STACK_MIN, NULL};

static int ready_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF];
    size_t got;
    if (conc_coro_read(fd, buf, sizeof buf, CONC_FOREVER, &got) != 0 || got == 0 ||
        conc_coro_write(fd, buf, got, CONC_FOREVER, NULL) != 0 ||
        conc_coro_watch_fd(NULL, fd, CONC_FD_READ, ready_conn, arg, &ready_opts) != 0)
        close(fd);
    return 0;
}

static bool serve_per_request; /* the design; set in the server's own process, before its run */

static int coro_acceptor(void *arg) {
    int lfd = (int)(intptr_t)arg;
    conc_coro_opts_t o;
    memset(&o, 0, sizeof o);
    o.stack_size = CONC_CORO_STACK_MIN; /* a connection needs a few frames and the buffer */
    for (;;) {
        int fd;
        if (conc_coro_accept(lfd, NULL, NULL, CONC_FOREVER, &fd) != 0)
            break;
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        void *conn = (void *)(intptr_t)fd;
        if ((serve_per_request
                 ? conc_coro_watch_fd(NULL, fd, CONC_FD_READ, ready_conn, conn, &ready_opts)
                 : conc_coro_spawn(NULL, coro_conn, conn, &o, NULL)) != 0)
            close(fd);
    }
    return 0;
}

static void serve_coro(int lfd, bool per_request) {
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    serve_per_request = per_request;
    int st;
    must(conc_run(coro_acceptor, (void *)(intptr_t)lfd, &st), "conc_run (server)");
}

static void *thread_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[ECHO_BUF];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
}

static void serve_threads(int lfd) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, &at, thread_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}

typedef struct server {
    pid_t pid;
    int port;
    int stdin_fd; /* python: closing it ends the server */
} server;

enum { SRV_CORO_READY, SRV_CORO, SRV_THREADS, SRV_ASYNCIO };

static server server_start(int kind) {
    server sv;
    memset(&sv, 0, sizeof sv);
    sv.stdin_fd = -1;
    if (kind == SRV_ASYNCIO) {
        int in[2], out[2];
        if (pipe(in) != 0 || pipe(out) != 0)
            must(errno, "pipe");
        sv.pid = fork();
        if (sv.pid == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            close(in[1]);
            close(out[0]);
            execlp("python3", "python3", bench_python_script, "echo", (char *)NULL);
            _exit(127);
        }
        close(in[0]);
        close(out[1]);
        sv.stdin_fd = in[1];
        FILE *f = fdopen(out[0], "r");
        if (!f || fscanf(f, "port %d", &sv.port) != 1)
            must(EPROTO, "asyncio echo server did not start");
        fclose(f);
        return sv;
    }
    int lfd = listen_loopback(&sv.port);
    sv.pid = fork();
    if (sv.pid == 0) {
        if (kind == SRV_THREADS)
            serve_threads(lfd);
        else
            serve_coro(lfd, kind == SRV_CORO_READY);
        _exit(0);
    }
    close(lfd);
    return sv;
}

static void server_stop(server *sv) {
    if (sv->stdin_fd >= 0)
        close(sv->stdin_fd);
    kill(sv->pid, SIGKILL);
    waitpid(sv->pid, NULL, 0);
}

static double server_rss_kib(const server *sv) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)sv->pid);
    long pages = 0, resident = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1024.0;
}

typedef struct conn {
    int fd;
    uint32_t seq;
    size_t got;
    char want[ECHO_MSG], in[ECHO_MSG];
} conn;

/* KernelStack of /proc/meminfo, KiB (every thread's kernel stack: 16 KiB each on x86-64). A
 * machine-wide figure: its change across a server's setup is that server's threads, give or
 * take what other processes started meanwhile. */
static double kernel_stack_kib(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "KernelStack: %lf kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

typedef struct echo_ctx {
    int kind, n;
    double kstack_kib; /* KernelStack's change across the server's start and across its setup */
    double kstack_mib; /* the same in MiB, once the server held every connection */
    server sv;
    conn *cs;
    int ep;
} echo_ctx;

static void conn_fill(conn *c, int id) {
    memset(c->want, 'a' + (int)(c->seq % 26u), ECHO_MSG);
    memcpy(c->want, &id, sizeof id);
    memcpy(c->want + sizeof id, &c->seq, sizeof c->seq);
}

static void conn_send(conn *c, int id) {
    conn_fill(c, id);
    c->got = 0;
    if (write(c->fd, c->want, ECHO_MSG) != ECHO_MSG) /* 64 bytes into an empty socket buffer */
        must(errno ? errno : EIO, "client write");
}

/* Starts e's server. Every server of a round starts before any client is set up: a forked
 * server's resident memory counts the pages it shares with this process at the fork, and the
 * clients' connection arrays (144 KiB at 1,000 connections) would count in the servers
 * started after them and not in the others. */
static void echo_start(echo_ctx *e) {
    double k0 = kernel_stack_kib();
    e->sv = server_start(e->kind);
    e->kstack_kib = kernel_stack_kib() - k0;
}

static void echo_setup(echo_ctx *e) {
    double k0 = kernel_stack_kib();
    e->cs = (conn *)calloc((size_t)e->n, sizeof *e->cs);
    e->ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)e->sv.port);
    for (int i = 0; i < e->n; i++) {
        conn *c = &e->cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            must(errno, "client socket");
        int tries = 0;
        while (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
            if (++tries > 200) /* the server may still be starting (python) */
                must(errno, "connect");
            usleep(10000);
            close(c->fd);
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        }
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        if (epoll_ctl(e->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            must(errno, "epoll_ctl");
    }
    /* One echo per connection, so the server holds every connection (a thread each, for the
     * threaded one) before the kernel stacks are counted: its change across this setup. */
    for (int i = 0; i < e->n; i++) {
        conn *c = &e->cs[i];
        conn_send(c, i);
        while (c->got < ECHO_MSG) {
            struct pollfd p = {c->fd, POLLIN, 0};
            (void)poll(&p, 1, 1000);
            ssize_t r = read(c->fd, c->in + c->got, ECHO_MSG - c->got);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                must(r == 0 ? ECONNRESET : errno, "client read (setup)");
            if (r > 0)
                c->got += (size_t)r;
        }
        if (memcmp(c->in, c->want, ECHO_MSG) != 0)
            must(EPROTO, "echo differs (setup)");
        c->seq++;
    }
    e->kstack_kib += kernel_stack_kib() - k0;
    e->kstack_mib = e->kstack_kib / 1024.0;
}

static void echo_teardown(echo_ctx *e) {
    for (int i = 0; i < e->n; i++)
        close(e->cs[i].fd);
    close(e->ep);
    free(e->cs);
    server_stop(&e->sv);
}

/* One repetition: every connection has one request in flight; for the bounded time, each
 * echo read back whole is checked and answered with the next request. Counted: echoes. */
static void run_echo(void *ctx, bench_sample *s) {
    echo_ctx *e = (echo_ctx *)ctx;
    int64_t span = bench_state.quick ? 150 * CONC_MS : 400 * CONC_MS;
    for (int i = 0; i < e->n; i++)
        conn_send(&e->cs[i], i);
    struct epoll_event evs[256];
    long done = 0;
    int64_t t0 = bench_now(), end = t0 + span;
    int outstanding = e->n;
    bool stopping = false;
    while (outstanding > 0) {
        if (!stopping && bench_now() >= end)
            stopping = true; /* no new requests: drain those in flight */
        int k = epoll_wait(e->ep, evs, 256, 1000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            must(k == 0 ? ETIMEDOUT : errno, "client epoll_wait");
        for (int j = 0; j < k; j++) {
            int id = (int)evs[j].data.u32;
            conn *c = &e->cs[id];
            ssize_t r = read(c->fd, c->in + c->got, ECHO_MSG - c->got);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0)
                must(r == 0 ? ECONNRESET : errno, "client read");
            c->got += (size_t)r;
            if (c->got < ECHO_MSG)
                continue;
            if (memcmp(c->in, c->want, ECHO_MSG) != 0)
                must(EPROTO, "echo differs");
            done++;
            c->seq++;
            if (stopping)
                outstanding--;
            else
                conn_send(c, id);
        }
    }
    s->wall_ns = (double)(bench_now() - t0);
    s->ops = (double)done;
    s->extra[0] = server_rss_kib(&e->sv) / 1024.0;
    s->extra[1] = e->kstack_mib;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &r);
    }
    if (getrlimit(RLIMIT_NOFILE, &r) == 0)
        printf("RLIMIT_NOFILE soft %llu (raised to the hard limit)\n",
               (unsigned long long)r.rlim_cur);
}

/* ------------------------------------------------------------------------------------------ */
int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    have_python = bench_python_find("chan_bench.py", argv[0]);
    bench_init("chan");
    raise_nofile();
    if (!have_python)
        printf("(python3 or bench/python/chan_bench.py not found: asyncio rows skipped)\n");
    int np = have_python ? 1 : 0;

    bench_table("channel ping-pong between two coroutines (ns/op: one round trip)", NULL);
    bench_impl pp[] = {{"conc_chan capacity 1", run_chan_pp, (void *)(uintptr_t)1},
                       {"conc_chan capacity 0 (Go-style rendezvous)", run_chan_pp, (void *)0},
                       {"asyncio Queue(maxsize=1)", run_py_pp, NULL}};
    bench_run("ping-pong", pp, 2 + np);
    double r_pp = np ? bench_last[2].ratio.median : 0;

    bench_table("lock handoff: 4 coroutines acquire, yield holding it, release", NULL);
    bench_impl lk[] = {{"conc_coro_lock", run_conc_lock, NULL},
                       {"asyncio.Lock", run_py_lock, NULL}};
    bench_run("handoff", lk, 1 + np);
    double r_lk = np ? bench_last[1].ratio.median : 0;

    bench_table("awaiting an executor future (a trivial task, 2 pool threads; ns/op: round trip)",
                NULL);
    aw_ctx aw;
    memset(&aw, 0, sizeof aw);
    must(conc_executor_create(&aw.ex, 2, 64), "executor");
    bench_impl ai[] = {{"conc_coro_await", run_conc_await, &aw},
                       {"asyncio run_in_executor", run_py_executor, NULL}};
    bench_run("await", ai, 1 + np);
    double r_aw = np ? bench_last[1].ratio.median : 0;
    conc_executor_destroy(aw.ex);

    static const char *const echo_cols[] = {
        "server MiB resident",
        "MiB of kernel stacks (KernelStack change; not in resident, not in the bar)", NULL};
    bench_table("echo server on 127.0.0.1, 64-byte requests, one in flight per connection "
                "(ns/op: per echo; a C epoll load generator checks every echo)",
                echo_cols);
    static const int conns[] = {1, 100, 1000};
    double rps_coro = 0, rps_py = 0, rps_thr = 0, mib_coro = 0, mib_thr = 0, kmib_thr = 0;
    double rps_each = 0, mib_each = 0;
    for (int i = 0; i < 3; i++) {
        echo_ctx ec[4];
        memset(ec, 0, sizeof ec);
        int kinds[4] = {SRV_CORO_READY, SRV_CORO, SRV_THREADS, SRV_ASYNCIO};
        int nk = 3 + np;
        for (int k = 0; k < nk; k++) {
            ec[k].kind = kinds[k];
            ec[k].n = conns[i];
        }
        for (int k = 0; k < nk; k++)
            echo_start(&ec[k]);
        for (int k = 0; k < nk; k++)
            echo_setup(&ec[k]);
        bench_impl ei[] = {{"conc coroutines spawned on readiness (1 thread)", run_echo, &ec[0]},
                           {"conc coroutine per connection (1 thread)", run_echo, &ec[1]},
                           {"thread per connection", run_echo, &ec[2]},
                           {"asyncio streams", run_echo, &ec[3]}};
        char name[48];
        snprintf(name, sizeof name, "%d connection%s", conns[i], conns[i] > 1 ? "s" : "");
        bench_run(name, ei, nk);
        if (conns[i] == 1000) {
            rps_coro = 1e9 / bench_last[0].ns_per_op.median;
            rps_each = 1e9 / bench_last[1].ns_per_op.median;
            rps_thr = 1e9 / bench_last[2].ns_per_op.median;
            rps_py = np ? 1e9 / bench_last[3].ns_per_op.median : 0;
            mib_coro = bench_last[0].extra[0].median;
            mib_each = bench_last[1].extra[0].median;
            mib_thr = bench_last[2].extra[0].median;
            kmib_thr = bench_last[2].extra[1].median;
        }
        for (int k = 0; k < nk; k++)
            echo_teardown(&ec[k]);
    }

    printf("\n");
    if (np) {
        bench_bar("channel ping-pong, asyncio Queue(maxsize=1) time / conc time", 1.0 / r_pp,
                  ">=", 50);
        bench_bar("lock handoff, asyncio.Lock time / conc time", 1.0 / r_lk, ">=", 50);
        bench_bar("awaiting an executor future, conc / asyncio run_in_executor", r_aw, "<=", 0.1);
        bench_bar("echo at 1,000 connections, conc (spawned on readiness) requests/s / asyncio's",
                  rps_coro / rps_py, ">=", 5);
    }
    bench_bar(
        "echo at 1,000 connections, conc (spawned on readiness) resident / thread per connection's",
        mib_coro / mib_thr, "<=", 0.25);
    bench_bar("echo at 1,000 connections, conc (spawned on readiness) requests/s / thread per "
              "connection's",
              rps_coro / rps_thr, ">=", 1.0);
    printf("echo at 1,000 connections: conc %.0f req/s in %.1f MiB (a coroutine per connection: "
           "%.0f req/s in %.1f MiB, %.3f of the threads' resident), threads %.0f req/s in %.1f "
           "MiB (and %.1f MiB of kernel stacks outside resident), asyncio %.0f req/s\n",
           rps_coro, mib_coro, rps_each, mib_each, mib_each / mib_thr, rps_thr, mib_thr, kmib_thr,
           rps_py);
    return bench_done();
}

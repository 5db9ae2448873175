/* examples/18_echo_server.c - 2,000 connections served by one thread of coroutines, twice
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   An echo server written as plain blocking-style code, one coroutine per connection
 *   (conc_coro_accept, conc_coro_read, conc_coro_write), all on the main thread. The
 *   example starts its own client on 127.0.0.1: a second thread running its own scheduler
 *   with one coroutine per connection, each sending five messages and checking every echo
 *   byte for byte. Nothing leaves the machine; the run is bounded (a fixed number of
 *   connections and messages, a deadline on every call).
 *   asyncio writes this with start_server and `async def handle(reader, writer)`; a
 *   thread-per-connection server needs 2,000 threads. Here: 2,000 coroutines whose idle cost
 *   is a page or two each (the example prints the server's resident memory).
 *   Then the same server again, with a coroutine per request instead of per connection:
 *   conc_coro_watch_fd spawns one when a connection becomes readable, and it echoes and
 *   watches the connection again (asyncio's loop.add_reader, with a coroutine for the
 *   callback). An idle connection then holds no stack at all; the second line shows the
 *   difference. In C the two are the same code shape; in Python the second is a Protocol's
 *   data_received, a callback that cannot wait (here the request may still block on write).
 *
 * RUN
 *   make examples && build/examples/18_echo_server
 *   It prints "2000 connections x 5 echoes checked ..." twice, once per server design (fewer
 *   connections if the fd limit is low: it raises the soft RLIMIT_NOFILE to the hard limit
 *   first).
 */
#include "conc/coro.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

enum { WANT_CONNS = 2000, MESSAGES = 5, MSG = 32 };

static int conns = WANT_CONNS;
static struct sockaddr_in addr;
static long echoes_checked; /* written by the client's coroutines only (one thread) */
static long rss_kib(void);
static long rss_all_open; /* sampled by the acceptor once every connection is accepted */

/* ---- the server: main thread ---- */
static int serve_one(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[256];
    for (;;) {
        size_t got;
        if (conc_coro_read(fd, buf, sizeof buf, conc_deadline_in(10 * CONC_SEC), &got) != 0 ||
            got == 0) /* error, timeout or EOF: done with this client */
            break;
        if (conc_coro_write(fd, buf, got, conc_deadline_in(10 * CONC_SEC), NULL) != 0)
            break;
    }
    close(fd);
    return 0;
}

/* The second design: spawned because fd is readable, so the read returns at once. */
static const conc_coro_opts_t request_opts = {CONC_CORO_STACK_MIN, "request"};

static int serve_request(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[256];
    size_t got;
    if (conc_coro_read(fd, buf, sizeof buf, conc_deadline_in(10 * CONC_SEC), &got) != 0 ||
        got == 0 || conc_coro_write(fd, buf, got, conc_deadline_in(10 * CONC_SEC), NULL) != 0 ||
        conc_coro_watch_fd(NULL, fd, CONC_FD_READ, serve_request, arg, &request_opts) != 0)
        close(fd); /* EOF, an error, or no memory for the next watch: done with this client */
    return 0;      /* and the stack goes back to the scheduler's free list */
}

static int per_request; /* which design the acceptor uses */

static int acceptor(void *arg) {
    int lfd = (int)(intptr_t)arg;
    conc_coro_opts_t o = {CONC_CORO_STACK_MIN, "conn"}; /* a few frames and a 256-byte buffer */
    for (int i = 0; i < conns; i++) {
        int fd;
        int e = conc_coro_accept(lfd, NULL, NULL, conc_deadline_in(30 * CONC_SEC), &fd);
        if (e != 0) {
            fprintf(stderr, "accept: %s\n", strerror(e));
            return 1;
        }
        void *conn = (void *)(intptr_t)fd;
        e = per_request
                ? conc_coro_watch_fd(NULL, fd, CONC_FD_READ, serve_request, conn, &request_opts)
                : conc_coro_spawn(NULL, serve_one, conn, &o, NULL);
        if (e != 0)
            close(fd);
    }
    rss_all_open = rss_kib();
    return 0;
}

/* ---- the client: a second thread with its own scheduler ---- */
static int client_one(void *arg) {
    int id = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int e = conc_coro_connect(fd, (struct sockaddr *)&addr, sizeof addr,
                              conc_deadline_in(30 * CONC_SEC));
    for (int m = 0; e == 0 && m < MESSAGES; m++) {
        char out[MSG], in[MSG];
        snprintf(out, sizeof out, "conn %5d message %d ........", id, m);
        e = conc_coro_write(fd, out, MSG, conc_deadline_in(10 * CONC_SEC), NULL);
        size_t have = 0;
        while (e == 0 && have < MSG) { /* TCP may split the echo: read until it is whole */
            size_t got;
            e = conc_coro_read(fd, in + have, MSG - have, conc_deadline_in(10 * CONC_SEC), &got);
            if (e == 0 && got == 0)
                e = ECONNRESET;
            have += got;
        }
        if (e == 0 && memcmp(in, out, MSG) != 0)
            e = EPROTO;
        if (e == 0)
            echoes_checked++;
    }
    close(fd);
    return e;
}

static int client_main(void *arg) {
    (void)arg;
    conc_group_t *g;
    if (conc_group_create(NULL, &g) != 0)
        return ENOMEM;
    conc_coro_opts_t o = {CONC_CORO_STACK_MIN, "client"};
    int e = 0;
    for (int i = 0; i < conns && e == 0; i++)
        e = conc_group_spawn(g, client_one, (void *)(intptr_t)i, &o);
    int status = 0;
    if (conc_group_wait(g, CONC_FOREVER, &status) != 0 && status == 0)
        status = ECANCELED;
    conc_group_destroy(g);
    return e ? e : status;
}

static void *client_thread(void *arg) {
    int *status = (int *)arg;
    if (conc_run(client_main, NULL, status) != 0)
        *status = EDEADLK;
    return NULL;
}

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void) {
    struct rlimit r; /* two fds per connection in this one process, plus a few */
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
        r.rlim_cur = r.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &r);
        if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < (rlim_t)(2 * WANT_CONNS + 64)) {
            /* 64 fds kept spare, or 16 under a small limit (the process needs about 10) */
            long spare = (long)r.rlim_cur - (r.rlim_cur > 128 ? 64 : 16);
            conns = spare >= 2 ? (int)(spare / 2) : 1;
        }
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only */
    socklen_t len = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) != 0 || listen(lfd, 4096) != 0) {
        perror("listen");
        return 1;
    }
    for (per_request = 0; per_request <= 1; per_request++) {
        echoes_checked = 0;
        long rss0 = rss_kib();
        int64_t t0 = conc_now();
        pthread_t t;
        int client_status = -1, server_status = -1;
        if (pthread_create(&t, NULL, client_thread, &client_status) != 0)
            return 1;
        /* Returns once every coroutine has finished and no watch is left (run's rule). */
        int e = conc_run(acceptor, (void *)(intptr_t)lfd, &server_status);
        pthread_join(t, NULL);
        double s = (double)(conc_now() - t0) / 1e9;
        if (e != 0 || server_status != 0 || client_status != 0 ||
            echoes_checked != (long)conns * MESSAGES) {
            printf("failed: run %d, server %d, client %d, %ld echoes checked\n", e, server_status,
                   client_status, echoes_checked);
            return 1;
        }
        printf("%d connections x %d echoes checked in %.2f s on one server thread, a coroutine "
               "per %s: with every connection accepted the process had grown by %ld KiB, %ld "
               "bytes per connection (%s; socket buffers are the kernel's)\n",
               conns, MESSAGES, s, per_request ? "request (conc_coro_watch_fd)" : "connection",
               rss_all_open - rss0, (rss_all_open - rss0) * 1024 / conns,
               per_request ? "the client's coroutine alone: an idle server connection holds no "
                             "stack"
                           : "a coroutine at each end");
    }
    close(lfd);
    return 0;
}

/* tests/test_queue.c - unit, race stress, deadlock stress and process-shared tests of conc/queue.h
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Count futex syscalls (relaxed: a statistic) and let one test make allocation fail (setting
 * errno as a failing malloc does). */
static unsigned long futex_calls;
#define CONC_FUTEX_HOOK(kind) ((void)(kind), __atomic_fetch_add(&futex_calls, 1, __ATOMIC_RELAXED))
static int fail_alloc;
/* With malloc_like set, the allocator's memory is 16 bytes past a 64-byte boundary, as
 * malloc's may be; test_free checks it is given back exactly what test_alloc returned. */
static int malloc_like;
static void *last_alloc;
static int bad_frees;
static void *test_alloc(size_t n) {
    if (fail_alloc) {
        errno = ENOMEM;
        return NULL;
    }
    if (!malloc_like)
        return aligned_alloc(64, n);
    unsigned char *base = (unsigned char *)aligned_alloc(64, n + 64);
    return last_alloc = base ? base + 16 : NULL;
}
static void test_free(void *p) {
    if (!malloc_like || !p) {
        free(p);
        return;
    }
    if (p != last_alloc) {
        bad_frees++; /* not ours: leak it rather than corrupt the heap */
        return;
    }
    free((unsigned char *)p - 16);
}
#define CONC_QUEUE_ALLOC(n) test_alloc(n)
#define CONC_QUEUE_FREE(p) test_free(p)
#include "conc/queue.h"

static conc_queue_t *make(size_t cap, size_t size) {
    conc_queue_t *q = NULL;
    TH_CHECK_EQ(conc_queue_create(&q, cap, size), 0);
    TH_CHECK(q != NULL);
    return q;
}

/* ------------------------------------------------------------------------------------------
 * Unit cases
 * ---------------------------------------------------------------------------------------- */
static void queue_create_einval_enomem(void) {
    conc_queue_t *q = (conc_queue_t *)1;
    TH_CHECK_EQ(conc_queue_create(&q, 0, 8), EINVAL);
    TH_CHECK_EQ(conc_queue_create(&q, 8, 0), EINVAL);
    TH_CHECK_EQ(conc_queue_create(&q, SIZE_MAX, 8), EINVAL);
    TH_CHECK_EQ(conc_queue_create(&q, 8, SIZE_MAX), EINVAL);
    TH_CHECK_EQ(conc_queue_create(&q, SIZE_MAX / 64, 64), EINVAL);
    TH_CHECK_EQ(conc_queue_create(NULL, 8, 8), EINVAL);
    TH_CHECK(q == NULL); /* NULL on error, as every create leaves it */
    TH_CHECK_EQ(conc_queue_footprint(0, 8), 0);
    TH_CHECK_EQ(conc_queue_footprint(8, 0), 0);
    TH_CHECK_EQ(conc_queue_footprint(SIZE_MAX, 1), 0);
    TH_CHECK(conc_queue_footprint(1, 1) >= sizeof(conc_queue_t) + 16);
    fail_alloc = 1;
    q = (conc_queue_t *)1;
    TH_CHECK_EQ(conc_queue_create(&q, 16, 8), ENOMEM);
    fail_alloc = 0;
    TH_CHECK(q == NULL);
    q = make(16, 8);
    TH_CHECK_EQ(conc_queue_capacity(q), 16);
    TH_CHECK_EQ(conc_queue_item_size(q), 8);
    TH_CHECK_EQ(conc_queue_size(q), 0);
    TH_CHECK(!conc_queue_is_closed(q));
    conc_queue_destroy(q);
    conc_queue_destroy(NULL); /* a no-op, like free(NULL) */
}

/* CONC_QUEUE_ALLOC may return memory at malloc's alignment: create works at every capacity,
 * and destroy hands the allocator back its own pointer. */
static void queue_alloc_hook_any_alignment(void) {
    malloc_like = 1;
    for (size_t cap = 1; cap <= 70; cap++) {
        for (size_t size = 1; size <= 24; size += 7) {
            conc_queue_t *q = NULL;
            TH_CHECK_EQ(conc_queue_create(&q, cap, size), 0);
            TH_CHECK(q != NULL);
            TH_CHECK_EQ((uintptr_t)q % CONC_QUEUE_ALIGN, 0);
            unsigned char item[24] = {(unsigned char)cap}, out[24] = {0};
            for (size_t i = 0; i < cap; i++)
                TH_CHECK_EQ(conc_queue_try_push(q, item), 0);
            TH_CHECK_EQ(conc_queue_try_push(q, item), EAGAIN);
            for (size_t i = 0; i < cap; i++)
                TH_CHECK_EQ(conc_queue_try_pop(q, out), 0);
            TH_CHECK_EQ(out[0], (unsigned char)cap);
            conc_queue_destroy(q);
            TH_CHECK_EQ(bad_frees, 0);
        }
    }
    malloc_like = 0;
}

static void queue_init_in_attach(void) {
    size_t need = conc_queue_footprint(5, 12);
    TH_CHECK(need > 0);
    size_t mem_size = (need + 127) & ~(size_t)63;
    unsigned char *mem = (unsigned char *)aligned_alloc(64, mem_size);
    TH_CHECK(mem != NULL);
    /* Zeroed, as a fresh shared mapping is: attach reads the magic (garbage could match it). */
    memset(mem, 0, mem_size);
    conc_queue_t *q = (conc_queue_t *)1;
    TH_CHECK_EQ(conc_queue_init_in(&q, NULL, need, 5, 12, 0), EINVAL);
    /* NULL on error, as every create leaves it */
    TH_CHECK(q == NULL);
    TH_CHECK(conc_queue_attach(mem + 8) == NULL); /* nothing built at mem + 64 either */
    /* Aligned mem: no gap, so the footprint's slack is spare; one byte less than the queue
     * itself is too small. */
    size_t bytes = need - (CONC_QUEUE_ALIGN - 1);
    TH_CHECK_EQ(conc_queue_init_in(&q, mem, bytes - 1, 5, 12, 0), EINVAL); /* too small */
    TH_CHECK_EQ(conc_queue_init_in(&q, mem, need, 5, 12, 4), EINVAL);      /* unknown flag */
    TH_CHECK_EQ(conc_queue_init_in(&q, mem, need, 0, 12, 0), EINVAL);
    TH_CHECK_EQ(conc_queue_init_in(NULL, mem, need, 5, 12, 0), EINVAL);
    TH_CHECK(q == NULL);
    TH_CHECK(conc_queue_attach(mem) == NULL); /* not built yet */
    TH_CHECK_EQ(conc_queue_init_in(&q, mem, need, 5, 12, CONC_SHARED), 0);
    TH_CHECK(q == (conc_queue_t *)(void *)mem);
    TH_CHECK(conc_queue_attach(mem) == q);
    TH_CHECK(conc_queue_attach(NULL) == NULL);
    char item[12] = "hello world";
    TH_CHECK_EQ(conc_queue_try_push(q, item), 0);
    char out[12] = {0};
    TH_CHECK_EQ(conc_queue_try_pop(conc_queue_attach(mem), out), 0);
    TH_CHECK(memcmp(item, out, 12) == 0);
    conc_queue_destroy(q); /* caller memory: only forgets the queue */
    TH_CHECK(conc_queue_attach(mem) == NULL);
    free(mem);
}

/* A queue in a static array and in one on the stack, destroyed: the memory is the caller's,
 * and destroy's free of create's block must not even be seen. gcc 12 -Werror failed such a
 * file with -Wfree-nonheap-object when destroy was inlined where the array is known:
 * flatten inlines it here, so this file no longer builds if the warning comes back. */
static unsigned char static_queue_mem[1024];
__attribute__((flatten)) static void queue_init_in_caller_arrays(void) {
    unsigned char stack_mem[1024];
    conc_queue_t *q;
    uint64_t v = 42, out = 0;
    TH_CHECK(conc_queue_footprint(4, 8) <= sizeof stack_mem);
    TH_CHECK_EQ(conc_queue_init_in(&q, static_queue_mem, sizeof static_queue_mem, 4, 8, 0), 0);
    TH_CHECK_EQ(conc_queue_try_push(q, &v), 0);
    TH_CHECK_EQ(conc_queue_try_pop(q, &out), 0);
    TH_CHECK_EQ(out, 42);
    conc_queue_destroy(q);
    TH_CHECK(conc_queue_attach(static_queue_mem) == NULL);
    TH_CHECK_EQ(conc_queue_init_in(&q, stack_mem, sizeof stack_mem, 4, 8, 0), 0);
    TH_CHECK_EQ(conc_queue_try_push(q, &v), 0);
    conc_queue_destroy(q);
    TH_CHECK(conc_queue_attach(stack_mem) == NULL);
}

/* DESIGN's footprint is "bytes for init_in": malloc(footprint) is enough, whatever malloc's
 * alignment, and so is footprint bytes from any offset into a buffer. The queue sits at the
 * first 64-byte boundary, attach finds it there, and one byte less than that needs fails. */
static void queue_init_in_any_offset(void) {
    const size_t cap = 7, size = 12;
    size_t need = conc_queue_footprint(cap, size);
    TH_CHECK(need > 0);
    size_t bytes = need - (CONC_QUEUE_ALIGN - 1); /* the queue itself, from its aligned start */
    void *plain = malloc(need);                   /* DESIGN's literal use */
    TH_CHECK(plain != NULL);
    conc_queue_t *q = NULL;
    TH_CHECK_EQ(conc_queue_init_in(&q, plain, need, cap, size, 0), 0);
    TH_CHECK(conc_queue_attach(plain) == q);
    conc_queue_destroy(q);
    free(plain);
    for (size_t off = 0; off < CONC_QUEUE_ALIGN; off++) {
        /* Exactly off + footprint bytes, so ASan sees any byte written past the footprint. */
        unsigned char *buf = (unsigned char *)calloc(1, off + need), *mem = buf + off;
        TH_CHECK(buf != NULL); /* zeroed: see queue_init_in_attach */
        size_t gap = (size_t)(-(uintptr_t)mem % CONC_QUEUE_ALIGN);
        q = NULL;
        TH_CHECK_EQ(conc_queue_init_in(&q, mem, gap + bytes - 1, cap, size, 0), EINVAL);
        TH_CHECK(q == NULL);
        if (gap == CONC_QUEUE_ALIGN - 1) /* the worst gap uses the whole slack */
            TH_CHECK_EQ(conc_queue_init_in(&q, mem, need - 1, cap, size, 0), EINVAL);
        TH_CHECK(conc_queue_attach(mem) == NULL); /* not built yet */
        TH_CHECK_EQ(conc_queue_init_in(&q, mem, need, cap, size, 0), 0);
        TH_CHECK_MSG((unsigned char *)q == mem + gap, "offset %zu: queue at +%td, not +%zu", off,
                     (unsigned char *)q - mem, gap);
        TH_CHECK_EQ((uintptr_t)q % CONC_QUEUE_ALIGN, 0);
        TH_CHECK(conc_queue_attach(mem) == q);
        TH_CHECK(conc_queue_attach(q) == q); /* the queue pointer itself: no gap */
        for (int lap = 0; lap < 3; lap++) {  /* every slot, three times round */
            char item[12];
            for (size_t i = 0; i < cap; i++) {
                memset(item, (int)(off * 3 + i + (size_t)lap), sizeof item);
                TH_CHECK_EQ(conc_queue_try_push(q, item), 0);
            }
            TH_CHECK_EQ(conc_queue_try_push(q, item), EAGAIN); /* exactly cap */
            for (size_t i = 0; i < cap; i++) {
                char want[12];
                memset(want, (int)(off * 3 + i + (size_t)lap), sizeof want);
                TH_CHECK_EQ(conc_queue_try_pop(conc_queue_attach(mem), item), 0);
                TH_CHECK(memcmp(item, want, sizeof item) == 0);
            }
            TH_CHECK_EQ(conc_queue_try_pop(q, item), EAGAIN);
        }
        /* An exact fit, gap included, is enough. */
        conc_queue_destroy(q);
        TH_CHECK_EQ(conc_queue_init_in(&q, mem, gap + bytes, cap, size, CONC_SHARED), 0);
        TH_CHECK((unsigned char *)q == mem + gap);
        conc_queue_destroy(q);
        TH_CHECK(conc_queue_attach(mem) == NULL);
        free(buf);
    }
}

/* The parent's end of a shared-queue case: the child exited 0, and the object is gone. */
static void child_reaped_and_unmapped(pid_t pid, const char *name, int fd, char *base,
                                      size_t total) {
    int status;
    TH_CHECK(waitpid(pid, &status, 0) == pid);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    munmap(base, total);
    close(fd);
    shm_unlink(name);
}

/* In a forked child: the shared object `name` mapped again, at another address than the
 * parent's `base`, and the inherited mapping dropped, so nothing can point into it. Exits 2
 * or 3 when that fails. */
static char *child_remap(const char *name, char *base, size_t total) {
    int cfd = shm_open(name, O_RDWR, 0);
    if (cfd < 0)
        _exit(2);
    char *mine = (char *)mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    if (mine == MAP_FAILED || mine == base)
        _exit(3);
    munmap(base, total);
    return mine;
}

/* A queue at an offset that is not a multiple of 64 in shared memory: a child maps the object
 * at another address, attaches at the same offset, and pushes what the parent pops. */
static void queue_shared_attach_unaligned(void) {
    const size_t off = 40, cap = 4; /* 40: the queue starts 24 bytes in */
    char name[64];
    snprintf(name, sizeof name, "/conc_test_queue_off_%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    TH_CHECK_MSG(fd >= 0, "shm_open: %s", strerror(errno));
    size_t need = conc_queue_footprint(cap, sizeof(uint64_t)), total = off + need;
    TH_CHECK_EQ(ftruncate(fd, (off_t)total), 0);
    char *base = (char *)mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    TH_CHECK(base != MAP_FAILED);
    conc_queue_t *q;
    TH_CHECK_EQ(conc_queue_init_in(&q, base + off, need, cap, sizeof(uint64_t), CONC_SHARED), 0);
    TH_CHECK((char *)q != base + off); /* a gap before it */
    ptrdiff_t at = (char *)q - base;
    long rounds = th_iters(20000);
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        char *mine = child_remap(name, base, total);
        conc_queue_t *cq = conc_queue_attach(mine + off);
        if (!cq || (char *)cq - mine != at)
            _exit(4);
        for (long i = 0; i < rounds; i++) {
            uint64_t x = (uint64_t)i * 3 + 1;
            if (conc_queue_push(cq, &x) != 0)
                _exit(5);
        }
        conc_queue_close(cq);
        _exit(0);
    }
    for (long i = 0; i < rounds; i++) {
        uint64_t x;
        TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
        TH_CHECK_EQ(x, (uint64_t)i * 3 + 1);
    }
    uint64_t x;
    TH_CHECK_EQ(conc_queue_pop(q, &x), EPIPE); /* the child closed it after its last push */
    child_reaped_and_unmapped(pid, name, fd, base, total);
}

/* No call sets errno (DESIGN section 2): every error a queue call can return, and the calls
 * that reach the allocator, leave a sentinel in errno. */

static void queue_errno_untouched(void) {
    conc_queue_t *q = NULL;
    int r = 0;
    /* ENOMEM from the allocator itself: more than any machine has (2^40 items of 1 KiB; on a
     * 32-bit target nearly 4 GiB). */
    TH_CHECK_ERRNO_KEPT(r = conc_queue_create(&q, TH_HUGE(40, SIZE_MAX / 1088), 1024));
    TH_CHECK_EQ(r, ENOMEM);
    fail_alloc = 1; /* and from an allocator that fails as malloc does, setting errno */
    TH_CHECK_ERRNO_KEPT(r = conc_queue_create(&q, 16, 8));
    fail_alloc = 0;
    TH_CHECK_EQ(r, ENOMEM);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_create(&q, 0, 8));
    TH_CHECK_EQ(r, EINVAL);
    size_t need = conc_queue_footprint(2, 8);
    unsigned char *mem = (unsigned char *)malloc(need);
    TH_CHECK(mem != NULL);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_init_in(&q, mem, 8, 2, 8, 0));
    TH_CHECK_EQ(r, EINVAL);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_init_in(&q, mem, need, 2, 8, 0));
    TH_CHECK_EQ(r, 0);
    conc_queue_destroy(q);
    free(mem);

    TH_CHECK_ERRNO_KEPT(r = conc_queue_create(&q, 2, sizeof(uint64_t)));
    TH_CHECK_EQ(r, 0);
    uint64_t x = 1, two[2] = {2, 3}, out[2];
    size_t moved = 0;
    TH_CHECK_ERRNO_KEPT(r = conc_queue_try_pop(q, &x));
    TH_CHECK_EQ(r, EAGAIN);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_pop_until(q, &x, conc_now() - 1));
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_pop_until(q, &x, conc_deadline_in(CONC_MS))); /* sleeps */
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_try_pop_batch(q, out, 2, &moved));
    TH_CHECK_EQ(r, EAGAIN);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_push_batch(q, two, 2, &moved));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_try_push(q, &x));
    TH_CHECK_EQ(r, EAGAIN);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_push_until(q, &x, conc_deadline_in(CONC_MS))); /* sleeps */
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_push_batch_until(q, two, 2, conc_now() - 1, &moved));
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_task_done(q));
    TH_CHECK_EQ(r, EINVAL);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_try_push_task(q, &x));
    TH_CHECK_EQ(r, EAGAIN);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_pop(q, &x));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_push_task(q, &x));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_join_until(q, conc_deadline_in(CONC_MS))); /* sleeps */
    TH_CHECK_EQ(r, ETIMEDOUT);
    TH_CHECK_ERRNO_KEPT(conc_queue_close(q));
    TH_CHECK_ERRNO_KEPT(r = conc_queue_push(q, &x));
    TH_CHECK_EQ(r, EPIPE);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_try_push_batch(q, two, 2, &moved));
    TH_CHECK_EQ(r, EPIPE);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_pop_batch(q, out, 2, &moved)); /* drains the two */
    TH_CHECK_EQ(r, 0);
    TH_CHECK_EQ(moved, 2);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_pop(q, &x));
    TH_CHECK_EQ(r, EPIPE);
    TH_CHECK_ERRNO_KEPT(
        r = conc_queue_pop_batch_until(q, out, 2, conc_deadline_in(CONC_MS), &moved));
    TH_CHECK_EQ(r, EPIPE);
    TH_CHECK_ERRNO_KEPT(r = conc_queue_task_done(q));
    TH_CHECK_EQ(r, 0);
    TH_CHECK_ERRNO_KEPT(conc_queue_destroy(q));
    TH_CHECK_ERRNO_KEPT(TH_CHECK(conc_queue_attach(NULL) == NULL));
}

/* With exactly capacity items inside, try_push fails; below that it succeeds; across laps. */
static void queue_capacity_exact(void) {
    const size_t caps[] = {1, 2, 3, 7, 150, 1000, 1024};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        size_t cap = caps[c];
        conc_queue_t *q = make(cap, sizeof(uint64_t));
        uint64_t next_in = 0, next_out = 0, x;
        for (int lap = 0; lap < 5; lap++) {
            /* fill from whatever is inside up to exactly cap */
            while (conc_queue_size(q) < cap) {
                TH_CHECK_EQ(conc_queue_try_push(q, &next_in), 0);
                next_in++;
            }
            TH_CHECK_EQ(conc_queue_size(q), cap);
            x = 12345;
            TH_CHECK_EQ(conc_queue_try_push(q, &x), EAGAIN);
            TH_CHECK_EQ(conc_queue_push_until(q, &x, conc_now() - 1), ETIMEDOUT);
            size_t pushed = 99;
            TH_CHECK_EQ(conc_queue_try_push_batch(q, &x, 1, &pushed), EAGAIN);
            TH_CHECK_EQ(pushed, 0);
            /* take out a lap-dependent number, in order, so the positions wrap unevenly */
            size_t take = cap == 1 ? 1 : 1 + (size_t)lap * 7 % cap;
            for (size_t i = 0; i < take; i++) {
                TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
                TH_CHECK_EQ(x, next_out);
                next_out++;
            }
            TH_CHECK_EQ(conc_queue_size(q), cap - take);
        }
        while (conc_queue_try_pop(q, &x) == 0) {
            TH_CHECK_EQ(x, next_out);
            next_out++;
        }
        TH_CHECK_EQ(next_out, next_in);
        TH_CHECK_EQ(conc_queue_try_pop(q, &x), EAGAIN);
        TH_CHECK_EQ(conc_queue_size(q), 0);
        conc_queue_destroy(q);
    }
}

/* Odd and large item sizes are copied whole, and only the item's bytes are written. */
static void queue_item_sizes(void) {
    const size_t sizes[] = {1, 3, 4, 8, 13, 16, 64, 100, 4096};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t size = sizes[s];
        conc_queue_t *q = make(3, size);
        unsigned char *in = (unsigned char *)malloc(size), *out = (unsigned char *)malloc(size + 8);
        TH_CHECK(in && out);
        for (int round = 0; round < 10; round++) {
            memset(in, round + 1, size);
            TH_CHECK_EQ(conc_queue_try_push(q, in), 0);
            memset(out, 0xEE, size + 8);
            TH_CHECK_EQ(conc_queue_try_pop(q, out), 0);
            TH_CHECK(memcmp(in, out, size) == 0);
            for (size_t i = size; i < size + 8; i++)
                TH_CHECK_EQ(out[i], 0xEE);
        }
        free(in);
        free(out);
        conc_queue_destroy(q);
    }
}

static void queue_batch_unit(void) {
    conc_queue_t *q = make(5, sizeof(int));
    int in[8] = {0, 1, 2, 3, 4, 5, 6, 7}, out[8];
    size_t n = 99;
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in, 0, &n), 0);
    TH_CHECK_EQ(n, 0);
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 8, &n), EAGAIN);
    TH_CHECK_EQ(n, 0);
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in, 3, &n), 0);
    TH_CHECK_EQ(n, 3);
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in + 3, 5, &n), 0); /* only 2 fit */
    TH_CHECK_EQ(n, 2);
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in, 1, NULL), EAGAIN);
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 4, &n), 0);
    TH_CHECK_EQ(n, 4);
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(out[i], i);
    TH_CHECK_EQ(conc_queue_pop_batch(q, out, 8, &n), 0); /* takes what is there: 1 */
    TH_CHECK_EQ(n, 1);
    TH_CHECK_EQ(out[0], 4);
    /* A batch larger than the capacity goes in claim by claim (pop side drains meanwhile). */
    int64_t dl = conc_now() + 5 * CONC_MS;
    TH_CHECK_EQ(conc_queue_push_batch_until(q, in, 8, dl, &n), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(n, 5);
    TH_CHECK_EQ(conc_queue_pop_batch_until(q, out, 8, conc_now() + CONC_SEC, &n), 0);
    TH_CHECK_EQ(n, 5);
    TH_CHECK_EQ(conc_queue_pop_batch_until(q, out, 8, conc_now() - 1, &n), ETIMEDOUT);
    TH_CHECK_EQ(n, 0);
    conc_queue_close(q);
    TH_CHECK_EQ(conc_queue_push_batch(q, in, 2, &n), EPIPE);
    TH_CHECK_EQ(n, 0);
    TH_CHECK_EQ(conc_queue_pop_batch(q, out, 2, &n), EPIPE);
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 2, &n), EPIPE);
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in, 2, &n), EPIPE);
    conc_queue_destroy(q);
}

/* Timeouts: never early, on both sides, single and batch. */
static void queue_until_never_early(void) {
    conc_queue_t *q = make(1, sizeof(int));
    int x = 1;
    const int64_t waits[] = {0, 1 * CONC_MS, 5 * CONC_MS, 20 * CONC_MS};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_pop_until(q, &x, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
        deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_push_until(q, &x, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        size_t n = 7;
        deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_push_batch_until(q, &x, 1, deadline, &n), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        TH_CHECK_EQ(n, 0);
        TH_CHECK_EQ(conc_queue_pop_until(q, &x, CONC_FOREVER), 0);
        deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_pop_batch_until(q, &x, 1, deadline, &n), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
    }
    /* A past deadline still tries once: it succeeds when it can. */
    TH_CHECK_EQ(conc_queue_push_until(q, &x, 0), 0);
    TH_CHECK_EQ(conc_queue_pop_until(q, &x, 0), 0);
    conc_queue_destroy(q);
}

/* A peer that claimed a slot and never finishes its copy (a process killed or stopped there,
 * CAVEATS) holds up the other side at that slot; the until forms still return at their
 * deadline. The claims are made by hand: a CAS of tail (head) with no copy after it. */
static void queue_until_deadline_past_stuck_peer(void) {
    conc_queue_t *q = make(4, sizeof(uint64_t));
    uint64_t x = 7, out[4];
    size_t n = 9;
    uint64_t tail = conc_load(&q->tail, CONC_RELAXED); /* a producer claims position 0 */
    TH_CHECK(conc_cas(&q->tail, &tail, tail + 1, CONC_SEQ_CST, CONC_RELAXED));
    const int64_t waits[] = {-1, 0, 2 * CONC_MS};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_pop_until(q, &x, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_pop_batch_until(q, out, 4, deadline, &n), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        TH_CHECK_EQ(n, 0);
    }
    conc_queue_close(q); /* closed, the claimed slot still holds pops up to their deadline */
    TH_CHECK_EQ(conc_queue_pop_until(q, &x, conc_now()), ETIMEDOUT);
    conc_queue_destroy(q);

    q = make(4, sizeof(uint64_t)); /* full, and a consumer claims the head item */
    for (int i = 0; i < 4; i++)
        TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
    uint64_t head = conc_load(&q->head, CONC_RELAXED);
    TH_CHECK(conc_cas(&q->head, &head, head + 1, CONC_SEQ_CST, CONC_RELAXED));
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_push_until(q, &x, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        deadline = conc_now() + waits[i];
        TH_CHECK_EQ(conc_queue_push_batch_until(q, out, 2, deadline, &n), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        TH_CHECK_EQ(n, 0);
        TH_CHECK_EQ(conc_queue_push_task_until(q, &x, deadline), ETIMEDOUT);
        TH_CHECK_EQ(conc_queue_unfinished(q), 0);
    }
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0); /* the three items after the claimed one */
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
    TH_CHECK_EQ(x, 7);
    conc_queue_destroy(q);
}

/* A peer stuck a whole lap behind: the ring moved on until the other side came round to its
 * slot again. A try there says EAGAIN (empty, or full) and an until form returns at its
 * deadline; they took the old stamp for a stale position and retried forever. Claims and the
 * late copy are made by hand, as above. Capacity 4: positions 0..3, then 8..11 (one_lap 8). */
static void queue_stuck_peer_a_lap_behind(void) {
    conc_queue_t *q = make(4, sizeof(uint64_t));
    uint64_t x = 7, out[4];
    size_t n = 9;
    /* A consumer claims position 0 and never copies out; the ring then runs empty past it. */
    TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
    uint64_t head = conc_load(&q->head, CONC_RELAXED);
    TH_CHECK(conc_cas(&q->head, &head, head + 1, CONC_SEQ_CST, CONC_RELAXED));
    for (uint64_t i = 1; i < 4; i++)
        TH_CHECK_EQ(conc_queue_try_push(q, &i), 0);
    for (uint64_t i = 1; i < 4; i++) {
        TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
        TH_CHECK_EQ(x, i);
    }
    TH_CHECK_EQ(conc_queue_size(q), 0);
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), EAGAIN);
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 4, &n), EAGAIN);
    TH_CHECK_EQ(n, 0);
    int64_t deadline = conc_now() + 2 * CONC_MS;
    TH_CHECK_EQ(conc_queue_pop_until(q, &x, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    deadline = conc_now() + 2 * CONC_MS;
    TH_CHECK_EQ(conc_queue_pop_batch_until(q, out, 4, deadline, &n), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    /* Its copy-out ends: the slot is free for the next lap, and the ring works on. */
    conc_store(conc__queue_stamp(conc__queue_slot(q, 0)), q->one_lap, CONC_RELEASE);
    x = 42;
    TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
    TH_CHECK_EQ(x, 42);
    conc_queue_close(q);
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), EPIPE);
    conc_queue_destroy(q);

    /* A producer claims position 0 and never copies in; the ring then fills up past it. */
    q = make(4, sizeof(uint64_t));
    uint64_t tail = conc_load(&q->tail, CONC_RELAXED);
    TH_CHECK(conc_cas(&q->tail, &tail, tail + 1, CONC_SEQ_CST, CONC_RELAXED));
    for (uint64_t i = 1; i < 4; i++)
        TH_CHECK_EQ(conc_queue_try_push(q, &i), 0);
    TH_CHECK_EQ(conc_queue_size(q), 4);
    TH_CHECK_EQ(conc_queue_try_push(q, &x), EAGAIN);
    TH_CHECK_EQ(conc_queue_try_push_batch(q, out, 2, &n), EAGAIN);
    TH_CHECK_EQ(n, 0);
    deadline = conc_now() + 2 * CONC_MS;
    TH_CHECK_EQ(conc_queue_push_until(q, &x, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    deadline = conc_now() + 2 * CONC_MS;
    TH_CHECK_EQ(conc_queue_push_batch_until(q, out, 2, deadline, &n), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK_EQ(n, 0);
    /* Its copy-in ends: position 0's item is published, and all four come out in order. */
    unsigned char *slot = conc__queue_slot(q, 0);
    uint64_t zero = 0;
    memcpy(slot + CONC__QUEUE_STAMP_SIZE, &zero, sizeof zero);
    conc_store(conc__queue_stamp(slot), (uint64_t)1, CONC_RELEASE);
    for (uint64_t i = 0; i < 4; i++) {
        TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
        TH_CHECK_EQ(x, i);
    }
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), EAGAIN);
    conc_queue_destroy(q);
}

/* destroy while a thread is still blocked in the queue (misuse: it must be closed and the
 * waiter must have returned) aborts with a message, rather than freeing the memory the waiter
 * sleeps on. Run in a child: the blocked thread is never released. */
static conc_queue_t *blocked_q;
static void *block_in_pop(void *arg) {
    (void)arg;
    uint64_t x;
    (void)!conc_queue_pop(blocked_q, &x);
    return NULL;
}
static void *block_in_push(void *arg) {
    (void)arg;
    uint64_t x = 2;
    (void)!conc_queue_push(blocked_q, &x);
    return NULL;
}
static void destroy_under_blocked(bool push) {
    blocked_q = make(1, sizeof(uint64_t));
    uint64_t x = 1;
    if (push)
        TH_CHECK_EQ(conc_queue_try_push(blocked_q, &x), 0); /* full */
    uint32_t *word = push ? &blocked_q->not_full : &blocked_q->not_empty;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, push ? block_in_push : block_in_pop, NULL), 0);
    while ((conc_load(word, CONC_ACQUIRE) & CONC_EVENTCOUNT_WAITERS_MAX) == 0)
        sched_yield(); /* until it has registered as a sleeper */
    conc_queue_destroy(blocked_q);
    _exit(3); /* not reached: destroy aborts */
}
static void destroy_under_blocked_pop(void) {
    destroy_under_blocked(false);
}
static void destroy_under_blocked_push(void) {
    destroy_under_blocked(true);
}
/* A forked child's copy of a private queue counts the parent's sleepers, but no thread of
 * the child sleeps there: destroying the copy frees it (the child cannot know what the
 * parent's threads were doing at fork). */
static void queue_destroy_in_forked_child_with_a_parent_sleeper(void) {
    blocked_q = make(1, sizeof(uint64_t));
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, block_in_pop, NULL), 0);
    while ((conc_load(&blocked_q->not_empty, CONC_ACQUIRE) & CONC_EVENTCOUNT_WAITERS_MAX) == 0)
        sched_yield(); /* until it has registered as a sleeper */
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        conc_queue_destroy(blocked_q); /* the child's cleanup of its own copy */
        _exit(0);
    }
    int status;
    TH_CHECK(waitpid(pid, &status, 0) == pid);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    conc_queue_close(blocked_q);
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    conc_queue_destroy(blocked_q);
}

static void queue_destroy_under_blocked_waiter_aborts(void) {
    void (*const fns[])(void) = {destroy_under_blocked_pop, destroy_under_blocked_push};
    for (size_t i = 0; i < 2; i++) {
        char buf[4096];
        int status = th_run_child_capturing_stderr(fns[i], buf, sizeof buf);
        TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status,
                     buf);
        TH_CHECK_MSG(strstr(buf, "conc_queue_destroy: threads still blocked") != NULL, "%s", buf);
    }
}

/* close from every state: empty, partly full, full, twice. */
static void queue_close_every_state(void) {
    for (size_t fill = 0; fill <= 4; fill++) {
        conc_queue_t *q = make(4, sizeof(size_t));
        for (size_t i = 0; i < fill; i++)
            TH_CHECK_EQ(conc_queue_push(q, &i), 0);
        conc_queue_close(q);
        TH_CHECK(conc_queue_is_closed(q));
        size_t x = 99;
        TH_CHECK_EQ(conc_queue_try_push(q, &x), EPIPE);
        TH_CHECK_EQ(conc_queue_push(q, &x), EPIPE);
        TH_CHECK_EQ(conc_queue_push_until(q, &x, conc_now() + CONC_SEC), EPIPE);
        TH_CHECK_EQ(conc_queue_size(q), fill);
        for (size_t i = 0; i < fill; i++) {
            if (i % 2)
                TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
            else
                TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
            TH_CHECK_EQ(x, i);
        }
        TH_CHECK_EQ(conc_queue_try_pop(q, &x), EPIPE);
        TH_CHECK_EQ(conc_queue_pop(q, &x), EPIPE);
        TH_CHECK_EQ(conc_queue_pop_until(q, &x, conc_now() + CONC_SEC), EPIPE);
        conc_queue_close(q); /* idempotent */
        TH_CHECK(conc_queue_is_closed(q));
        TH_CHECK_EQ(conc_queue_try_pop(q, &x), EPIPE);
        conc_queue_destroy(q);
    }
}

/* With nobody waiting, push and pop make no syscall; a sleeper is woken by exactly one. */
static void queue_no_syscall_without_waiters(void) {
    conc_queue_t *q = make(64, sizeof(int));
    unsigned long before = __atomic_load_n(&futex_calls, __ATOMIC_RELAXED);
    for (int round = 0; round < 1000; round++) {
        int x = round;
        TH_CHECK_EQ(conc_queue_push(q, &x), 0);
        TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
        TH_CHECK_EQ(x, round);
    }
    int batch[32] = {0};
    size_t n;
    TH_CHECK_EQ(conc_queue_push_batch(q, batch, 32, &n), 0);
    TH_CHECK_EQ(conc_queue_pop_batch(q, batch, 32, &n), 0);
    conc_queue_close(q); /* nobody registered: no wake either */
    TH_CHECK_EQ(__atomic_load_n(&futex_calls, __ATOMIC_RELAXED), before);
    conc_queue_destroy(q);
}

/* ------------------------------------------------------------------------------------------
 * Race stress: every item popped exactly once (bitmap), per-producer order per consumer
 * ---------------------------------------------------------------------------------------- */
typedef struct stress {
    conc_queue_t *q;
    int producers, consumers;
    uint64_t per_producer;
    uint64_t *seen;      /* bitmap, relaxed fetch_or: instrumentation */
    uint64_t popped;     /* relaxed counter */
    uint64_t *pushed_ok; /* per producer: how many went in (close races) */
    int close_after;     /* 0: producers finish, then main closes; else close racing */
    uint64_t join_after; /* 0: all start at once; else producer 0 and consumer 0 run alone
                          * until this many items were popped (each side's bias held) */
    int producers_left;  /* join_after without a close race: the last producer closes */
} stress;

static inline uint64_t item_of(int producer, uint64_t seq) {
    return ((uint64_t)producer << 40) | seq;
}

static void mark_seen(stress *s, uint64_t item) {
    uint64_t p = item >> 40, seq = item & ((1ull << 40) - 1);
    TH_CHECK_MSG(p < (uint64_t)s->producers && seq < s->per_producer, "bad item %llx",
                 (unsigned long long)item);
    uint64_t bit = p * s->per_producer + seq;
    uint64_t old = __atomic_fetch_or(&s->seen[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
    TH_CHECK_MSG(!(old & (1ull << (bit % 64))), "item %llx popped twice", (unsigned long long)item);
}

/* The mode (of 0..7) a stress thread takes after a try failed: the plain blocking call. */
#define TRY_THEN_BLOCK_MODE 4u

static void stress_producer(int index, void *arg) {
    stress *s = (stress *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 1);
    uint64_t seq = 0, batch[16];
    bool block_next = false;
    while (seq < s->per_producer) {
        /* After a try found the ring full, a blocking push: a sched_yield there instead would
         * hand a CPU hog beside the test a whole time slice per full ring. */
        uint32_t mode = block_next ? TRY_THEN_BLOCK_MODE : th_rand_below(&rng, 8);
        block_next = false;
        int r;
        size_t n = 1;
        if (mode < 2) { /* batch */
            size_t want = 1 + th_rand_below(&rng, 16);
            if (want > s->per_producer - seq)
                want = (size_t)(s->per_producer - seq);
            for (size_t i = 0; i < want; i++)
                batch[i] = item_of(index, seq + i);
            if (mode == 0) {
                r = conc_queue_push_batch(s->q, batch, want, &n);
            } else {
                r = conc_queue_try_push_batch(s->q, batch, want, &n);
                if (r == EAGAIN) {
                    block_next = true;
                    continue;
                }
            }
        } else {
            uint64_t x = item_of(index, seq);
            if (mode == 2) {
                r = conc_queue_try_push(s->q, &x);
                if (r == EAGAIN) {
                    block_next = true;
                    continue;
                }
            } else if (mode == 3) {
                r = conc_queue_push_until(s->q, &x, conc_now() + 100 * CONC_US);
                if (r == ETIMEDOUT)
                    continue;
            } else {
                r = conc_queue_push(s->q, &x);
            }
            n = r == 0 ? 1 : 0;
        }
        seq += n; /* n is also right on EPIPE: what went in before the close */
        if (r == EPIPE)
            break;
        TH_CHECK_EQ(r, 0);
    }
    s->pushed_ok[index] = seq; /* read after the join */
}

static void stress_consumer(int index, void *arg) {
    stress *s = (stress *)arg;
    th_rng rng = th_rng_make(1000 + (uint64_t)index);
    uint64_t *last = (uint64_t *)calloc((size_t)s->producers, sizeof *last); /* seq + 1 */
    TH_CHECK(last != NULL);
    uint64_t batch[16];
    bool block_next = false;
    for (;;) {
        uint32_t mode = block_next ? TRY_THEN_BLOCK_MODE : th_rand_below(&rng, 8);
        block_next = false;
        size_t n = 1;
        int r;
        if (mode < 2) {
            size_t want = 1 + th_rand_below(&rng, 16);
            r = mode == 0 ? conc_queue_pop_batch(s->q, batch, want, &n)
                          : conc_queue_try_pop_batch(s->q, batch, want, &n);
        } else if (mode == 2) {
            r = conc_queue_try_pop(s->q, &batch[0]);
        } else if (mode == 3) {
            r = conc_queue_pop_until(s->q, &batch[0], conc_now() + 100 * CONC_US);
        } else {
            r = conc_queue_pop(s->q, &batch[0]);
        }
        if (r == EPIPE)
            break;
        if (r == EAGAIN || r == ETIMEDOUT) {
            block_next = r == EAGAIN; /* as the producer: block next, never yield */
            continue;
        }
        TH_CHECK_EQ(r, 0);
        for (size_t i = 0; i < n; i++) {
            uint64_t item = batch[i];
            mark_seen(s, item);
            int p = (int)(item >> 40);
            uint64_t seq = item & ((1ull << 40) - 1);
            TH_CHECK_MSG(seq + 1 > last[p], "producer %d: item %llu after %llu", p,
                         (unsigned long long)seq, (unsigned long long)(last[p] - 1));
            last[p] = seq + 1;
        }
        uint64_t total = __atomic_add_fetch(&s->popped, n, __ATOMIC_RELAXED);
        /* Whoever pops past the mark closes (close is idempotent), racing with producers
         * still pushing. Not one chosen consumer: if it popped nothing after the mark (the
         * others drained everything), nobody closed and every consumer slept forever. */
        if (s->close_after && total >= (uint64_t)s->close_after)
            conc_queue_close(s->q);
    }
    free(last);
}

static void stress_thread(int index, void *arg) {
    stress *s = (stress *)arg;
    if (index != 0 && index != s->producers)
        while (__atomic_load_n(&s->popped, __ATOMIC_RELAXED) < s->join_after &&
               !conc_queue_is_closed(s->q))
            sched_yield();
    if (index < s->producers) {
        stress_producer(index, s);
        if (s->join_after && !s->close_after &&
            __atomic_sub_fetch(&s->producers_left, 1, __ATOMIC_RELAXED) == 0)
            conc_queue_close(s->q);
    } else
        stress_consumer(index - s->producers, s);
}

/* Without a close race: thread 0 runs the producers as a group and closes after they all
 * returned, so consumers drain everything and then see EPIPE. */
static void producers_then_close(int index, void *arg) {
    stress *s = (stress *)arg;
    if (index == 0) {
        th_run_threads(s->producers, stress_producer, s);
        conc_queue_close(s->q);
    } else {
        stress_consumer(index - 1, s);
    }
}

static void check_exactly_once(stress *s) {
    uint64_t expect = 0;
    for (int p = 0; p < s->producers; p++) {
        TH_CHECK(s->pushed_ok[p] <= s->per_producer);
        for (uint64_t i = 0; i < s->per_producer; i++) {
            uint64_t bit = (uint64_t)p * s->per_producer + i;
            bool seen = (s->seen[bit / 64] >> (bit % 64)) & 1;
            TH_CHECK_MSG(seen == (i < s->pushed_ok[p]),
                         "producer %d item %llu: pushed %d, popped %d", p, (unsigned long long)i,
                         i < s->pushed_ok[p], seen);
        }
        expect += s->pushed_ok[p];
    }
    TH_CHECK_EQ(__atomic_load_n(&s->popped, __ATOMIC_RELAXED), expect);
}

/* The stress run on a queue the caller made (capacity and item size uint64_t); leaves it.
 * join_after: see the struct. */
static void stress_case_joining(conc_queue_t *q, int producers, int consumers, long iters,
                                int close_race, bool late_joiners) {
    stress s;
    memset(&s, 0, sizeof s);
    s.q = q;
    s.producers_left = producers;
    s.producers = producers;
    s.consumers = consumers;
    s.per_producer = (uint64_t)th_iters(iters);
    s.join_after = late_joiners ? s.per_producer / 4 + 1 : 0;
    uint64_t bits = (uint64_t)producers * s.per_producer;
    s.seen = (uint64_t *)calloc((size_t)(bits / 64 + 1), sizeof(uint64_t));
    s.pushed_ok = (uint64_t *)calloc((size_t)producers, sizeof(uint64_t));
    TH_CHECK(s.seen && s.pushed_ok);
    if (close_race || late_joiners) {
        s.close_after = close_race ? (int)(bits / 3 + 1) : 0;
        th_run_threads(producers + consumers, stress_thread, &s);
        if (!close_race) /* the last producer closed: the consumers drained everything */
            for (int p = 0; p < producers; p++)
                TH_CHECK_EQ(s.pushed_ok[p], s.per_producer);
        TH_CHECK(conc_queue_is_closed(s.q));
    } else {
        th_run_threads(consumers + 1, producers_then_close, &s);
        for (int p = 0; p < producers; p++)
            TH_CHECK_EQ(s.pushed_ok[p], s.per_producer);
    }
    check_exactly_once(&s);
    TH_CHECK_EQ(conc_queue_size(s.q), 0);
    free(s.seen);
    free(s.pushed_ok);
}

static void stress_case_on(conc_queue_t *q, int producers, int consumers, long iters,
                           int close_race) {
    stress_case_joining(q, producers, consumers, iters, close_race, false);
}

static void stress_case(int producers, int consumers, size_t capacity, long iters, int close_race) {
    conc_queue_t *q = make(capacity, sizeof(uint64_t));
    stress_case_on(q, producers, consumers, iters, close_race);
    conc_queue_destroy(q);
}

static void queue_stress_1p1c(void) {
    stress_case(1, 1, 7, 200000, 0);
}
static void queue_stress_4p4c(void) {
    stress_case(4, 4, 16, 50000, 0);
}
static void queue_stress_8p1c(void) {
    stress_case(8, 1, 5, 20000, 0);
}
static void queue_stress_1p8c(void) {
    stress_case(1, 8, 5, 150000, 0);
}
static void queue_stress_cap1_mixed(void) {
    stress_case(3, 3, 1, 20000, 0);
}
/* A wide ring whose capacity is no power of two: one-item calls, batches and timed calls
 * interleave while positions cross laps at an index that is not a lap's (one_lap 256). */
static void queue_stress_wide_ring_mixed(void) {
    stress_case(3, 3, 150, 60000, 0);
}
/* The yield policy's hints (queue.h, conc__queue_spin_slow), set by hand: the blocking paths
 * stay exact whatever they say, and the policy does what they say. */
/* Presets of the average on either side of the bar, by construction. */
#define YIELD_AVG_BELOW_BAR ((uint32_t)(CONC__BASE_YIELD_SLOW_NS / 2))
#define YIELD_AVG_ABOVE_BAR ((uint32_t)(CONC__BASE_YIELD_SLOW_NS * 10))

/* Yields off for good on both sides: every wait past the pauses sleeps on the futex at once,
 * and no yield runs (any yield would move the preset average). */
static void queue_stress_yields_off(void) {
    conc_queue_t *q = make(7, sizeof(uint64_t));
    q->push_yields.resume = q->pop_yields.resume = CONC_FOREVER;
    q->push_yields.average = q->pop_yields.average = YIELD_AVG_BELOW_BAR;
    stress_case_on(q, 1, 1, 50000, 0);
    TH_CHECK_EQ(q->push_yields.average, YIELD_AVG_BELOW_BAR);
    TH_CHECK_EQ(q->pop_yields.average, YIELD_AVG_BELOW_BAR);
    TH_CHECK_EQ(q->push_yields.strikes, 0);
    TH_CHECK_EQ(q->pop_yields.strikes, 0);
    conc_queue_destroy(q);
}

/* Yields that wasted their time on average: the first yield a side makes turns its yields off
 * (a period set, a strike counted), and the items still arrive exactly once. A probe after the
 * period (10 ms on) may find yields paying and turn them on again: then its waste replaced
 * the average. */
static void queue_stress_yields_wasteful(void) {
    conc_queue_t *q = make(5, sizeof(uint64_t));
    q->push_yields.average = q->pop_yields.average = YIELD_AVG_ABOVE_BAR;
    stress_case_on(q, 4, 1, 20000, 0);
    uint64_t avg[2] = {q->push_yields.average, q->pop_yields.average};
    int64_t resume[2] = {q->push_yields.resume, q->pop_yields.resume};
    uint32_t strikes[2] = {q->push_yields.strikes, q->pop_yields.strikes};
    for (int side = 0; side < 2; side++) {
        if (avg[side] == YIELD_AVG_ABOVE_BAR && resume[side] == 0)
            continue; /* this side never yielded (its waits ended in the pauses, or none) */
        bool off = resume[side] > 0 && strikes[side] >= 1;
        bool on_again =
            resume[side] == 0 && strikes[side] == 0 && avg[side] <= CONC__BASE_YIELD_SLOW_NS;
        TH_CHECK_MSG(off || on_again, "side %d: resume %lld, strikes %u, average %llu", side,
                     (long long)resume[side], strikes[side], (unsigned long long)avg[side]);
    }
    conc_queue_destroy(q);
}

static void queue_stress_close_race(void) {
    int rounds = (int)th_iters(20);
    for (int i = 0; i < rounds; i++)
        stress_case(1 + i % 4, 1 + (i / 2) % 4, (size_t)(1 + i % 9), 5000, 1);
}

/* ------------------------------------------------------------------------------------------
 * Deadlock stress
 * ---------------------------------------------------------------------------------------- */
typedef struct blocked {
    conc_queue_t *empty, *full;
    int registered; /* relaxed: how many threads are about to block */
    int results[16];
} blocked;

static void block_one(int index, void *arg) {
    blocked *b = (blocked *)arg;
    int x = index;
    __atomic_fetch_add(&b->registered, 1, __ATOMIC_RELAXED);
    switch (index % 4) {
    case 0:
        b->results[index] = conc_queue_pop(b->empty, &x);
        break;
    case 1:
        b->results[index] = conc_queue_push(b->full, &x);
        break;
    case 2:
        b->results[index] = conc_queue_pop_until(b->empty, &x, CONC_FOREVER);
        break;
    default: {
        size_t n;
        b->results[index] = conc_queue_push_batch(b->full, &x, 1, &n);
    }
    }
}

static void closer_thread(int index, void *arg) {
    blocked *b = (blocked *)arg;
    if (index == 0) {
        th_run_threads(12, block_one, b);
        return;
    }
    /* Wait until every waiter is registered on a word (the words say so), then close. */
    for (;;) {
        uint32_t e = __atomic_load_n(&b->empty->not_empty, __ATOMIC_RELAXED);
        uint32_t f = __atomic_load_n(&b->full->not_full, __ATOMIC_RELAXED);
        if ((e & 0xfff) == 6 && (f & 0xfff) == 6)
            break;
        sched_yield();
    }
    conc_queue_close(b->empty);
    conc_queue_close(b->full);
}

static void queue_deadlock_close_releases_waiters(void) {
    int rounds = (int)th_iters(30);
    for (int round = 0; round < rounds; round++) {
        blocked b;
        memset(&b, 0, sizeof b);
        b.empty = make(2, sizeof(int));
        b.full = make(2, sizeof(int));
        int x = 0;
        TH_CHECK_EQ(conc_queue_push(b.full, &x), 0);
        TH_CHECK_EQ(conc_queue_push(b.full, &x), 0);
        th_run_threads(2, closer_thread, &b);
        for (int i = 0; i < 12; i++)
            TH_CHECK_EQ(b.results[i], EPIPE);
        TH_CHECK_EQ(conc_queue_size(b.full), 2); /* still drainable */
        conc_queue_destroy(b.empty);
        conc_queue_destroy(b.full);
    }
}

/* Close racing with sleepers that come and go with deadlines: nobody stays asleep, and
 * every item pushed before the close is popped. */
typedef struct timeouts {
    conc_queue_t *q;
    long items;
    uint64_t popped; /* relaxed */
} timeouts;

static void deadline_thread(int index, void *arg) {
    timeouts *t = (timeouts *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 77);
    int x = 0;
    if (index == 0) { /* the producer, then the closer */
        for (long i = 0; i < t->items; i++) {
            TH_CHECK_EQ(conc_queue_push(t->q, &x), 0);
            if (th_rand_below(&rng, 4) == 0)
                sched_yield();
        }
        conc_queue_close(t->q);
        return;
    }
    for (;;) {
        int64_t wait = (int64_t)th_rand_below(&rng, 200) * CONC_US;
        int r = conc_queue_pop_until(t->q, &x, conc_now() + wait);
        if (r == EPIPE)
            return;
        TH_CHECK(r == ETIMEDOUT || r == 0);
        if (r == 0)
            __atomic_fetch_add(&t->popped, 1, __ATOMIC_RELAXED);
    }
}

static void queue_deadlock_close_vs_timeouts(void) {
    int rounds = (int)th_iters(20);
    for (int round = 0; round < rounds; round++) {
        timeouts t;
        memset(&t, 0, sizeof t);
        t.q = make(1 + (size_t)round % 4, sizeof(int));
        t.items = 500;
        th_run_threads(9, deadline_thread, &t);
        TH_CHECK_EQ(t.popped, (uint64_t)t.items);
        conc_queue_destroy(t.q);
    }
}

/* A capacity-1 queue, one token, 8 threads: each pops it, bumps it, pushes it back. */
typedef struct pingpong {
    conc_queue_t *q;
    long iters;
    long moves[8]; /* per thread, checked after the join */
} pingpong;

static void pingpong_thread(int index, void *arg) {
    pingpong *p = (pingpong *)arg;
    for (long i = 0; i < p->iters; i++) {
        uint64_t token;
        TH_CHECK_EQ(conc_queue_pop(p->q, &token), 0);
        token++;
        TH_CHECK_EQ(conc_queue_push(p->q, &token), 0);
        p->moves[index]++;
    }
}

static void queue_deadlock_pingpong_cap1(void) {
    pingpong p;
    memset(&p, 0, sizeof p);
    p.q = make(1, sizeof(uint64_t));
    p.iters = th_iters(5000);
    uint64_t token = 0;
    TH_CHECK_EQ(conc_queue_push(p.q, &token), 0);
    th_run_threads(8, pingpong_thread, &p);
    TH_CHECK_EQ(conc_queue_try_pop(p.q, &token), 0);
    TH_CHECK_EQ(token, (uint64_t)(8 * p.iters));
    for (int i = 0; i < 8; i++)
        TH_CHECK_EQ(p.moves[i], p.iters);
    conc_queue_destroy(p.q);
}

/* ------------------------------------------------------------------------------------------
 * Process-shared
 * ---------------------------------------------------------------------------------------- */
#define SHARED_PRODUCERS 3
#define SHARED_CONSUMERS 3

typedef struct shared_area {
    uint64_t popped; /* relaxed */
    uint64_t per_producer;
    uint64_t seen[1]; /* bitmap; the queue follows the bitmap */
} shared_area;

static void queue_shared_fork_exactly_once(void) {
    uint64_t per = (uint64_t)th_iters(20000);
    size_t bitmap = (size_t)((SHARED_PRODUCERS * per) / 64 + 1) * sizeof(uint64_t);
    size_t qoff = (sizeof(shared_area) + bitmap + 63) & ~(size_t)63;
    size_t need = conc_queue_footprint(64, sizeof(uint64_t));
    size_t total = qoff + need;
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(mem != MAP_FAILED);
    shared_area *a = (shared_area *)mem;
    a->per_producer = per;
    conc_queue_t *q;
    TH_CHECK_EQ(conc_queue_init_in(&q, (char *)mem + qoff, need, 64, sizeof(uint64_t), CONC_SHARED),
                0);
    pid_t pids[SHARED_PRODUCERS + SHARED_CONSUMERS];
    for (int i = 0; i < SHARED_PRODUCERS + SHARED_CONSUMERS; i++) {
        pids[i] = fork();
        TH_CHECK(pids[i] >= 0);
        if (pids[i] != 0)
            continue;
        if (i < SHARED_PRODUCERS) {
            for (uint64_t s = 0; s < per;) {
                uint64_t batch[8];
                size_t want = (size_t)(per - s < 8 ? per - s : 8), n;
                for (size_t k = 0; k < want; k++)
                    batch[k] = ((uint64_t)i << 40) | (s + k);
                if (s % 3 == 0) {
                    if (conc_queue_push_batch(q, batch, want, &n) != 0)
                        _exit(2);
                } else {
                    if (conc_queue_push(q, &batch[0]) != 0)
                        _exit(2);
                    n = 1;
                }
                s += n;
            }
            _exit(0);
        }
        uint64_t last[SHARED_PRODUCERS] = {0};
        uint64_t x;
        while (conc_queue_pop(q, &x) == 0) {
            uint64_t p = x >> 40, s = x & ((1ull << 40) - 1);
            if (p >= SHARED_PRODUCERS || s >= per || s + 1 <= last[p])
                _exit(3); /* garbage, or one producer's items out of order */
            last[p] = s + 1;
            uint64_t bit = p * per + s;
            uint64_t old =
                __atomic_fetch_or(&a->seen[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
            if (old & (1ull << (bit % 64)))
                _exit(4); /* twice */
            __atomic_fetch_add(&a->popped, 1, __ATOMIC_RELAXED);
        }
        _exit(0);
    }
    int status;
    for (int i = 0; i < SHARED_PRODUCERS; i++) {
        TH_CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "producer status %d", status);
    }
    conc_queue_close(q);
    for (int i = SHARED_PRODUCERS; i < SHARED_PRODUCERS + SHARED_CONSUMERS; i++) {
        TH_CHECK(waitpid(pids[i], &status, 0) == pids[i]);
        TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "consumer status %d", status);
    }
    TH_CHECK_EQ(a->popped, SHARED_PRODUCERS * per);
    for (uint64_t b = 0; b < SHARED_PRODUCERS * per; b++)
        TH_CHECK((a->seen[b / 64] >> (b % 64)) & 1);
    munmap(mem, total);
}

/* A process killed while it sleeps stays queued on the futex until it runs again, and a wake
 * the kernel hands it meanwhile is lost to the live sleeper beside it: two processes sleep on
 * one side (D, then L), D is killed, and one item (or one free slot) comes at once. L must
 * get it: before CONC_SHARED sleeps ended every CONC_FUTEX_SHARED_RECHECK_NS, L slept on
 * with the item in the queue (the watchdog's kill here, nearly every round on 2 CPUs). The
 * rounds do not depend on D being picked: when it is not, L gets the wake itself. */
static unsigned shared_sleepers(conc_queue_t *q, bool pop) {
    return conc_eventcount_waiters(
        __atomic_load_n(pop ? &q->not_empty : &q->not_full, __ATOMIC_SEQ_CST));
}

static pid_t shared_sleeper(conc_queue_t *q, bool pop, unsigned sleepers_before) {
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        uint64_t x = 7;
        _exit((pop ? conc_queue_pop(q, &x) : conc_queue_push(q, &x)) == 0 ? 0 : 1);
    }
    while (shared_sleepers(q, pop) < sleepers_before + 1) /* registered... */
        th_sleep_ns(100000);
    th_sleep_ns(5 * 1000000); /* ...and most likely asleep in the kernel by now */
    return pid;
}

static void queue_shared_killed_sleeper_takes_no_live_wake(void) {
    const size_t cap = 2;
    size_t need = conc_queue_footprint(cap, sizeof(uint64_t));
    void *mem = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(mem != MAP_FAILED);
    for (int pop = 1; pop >= 0; pop--) {
        conc_queue_t *q;
        TH_CHECK_EQ(conc_queue_init_in(&q, mem, need, cap, sizeof(uint64_t), CONC_SHARED), 0);
        uint64_t x = 1;
        if (!pop) /* pushers sleep on a full queue */
            for (size_t i = 0; i < cap; i++)
                TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
        for (int round = 0; round < 4; round++) {
            unsigned dead = shared_sleepers(q, pop); /* earlier rounds' D stay counted */
            pid_t d = shared_sleeper(q, pop, dead);
            pid_t l = shared_sleeper(q, pop, dead + 1);
            TH_CHECK_EQ(kill(d, SIGKILL), 0);
            if (pop)
                TH_CHECK_EQ(conc_queue_push(q, &x), 0); /* the item L must get */
            else
                TH_CHECK_EQ(conc_queue_pop(q, &x), 0); /* the slot L must fill */
            int status;
            TH_CHECK(waitpid(d, &status, 0) == d);
            TH_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            TH_CHECK(waitpid(l, &status, 0) == l); /* hung here before */
            TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "L's status %d", status);
            TH_CHECK_EQ(conc_queue_size(q), pop ? 0 : cap);
        }
    }
    munmap(mem, need);
}

/* Two processes through shm_open: the child maps the object at another address, attaches,
 * and answers requests on a second queue in the same object. */
static void queue_shared_shm_attach(void) {
    char name[64];
    snprintf(name, sizeof name, "/conc_test_queue_%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    TH_CHECK_MSG(fd >= 0, "shm_open: %s", strerror(errno));
    size_t one = (conc_queue_footprint(4, sizeof(uint64_t)) + 63) & ~(size_t)63;
    size_t total = 2 * one;
    TH_CHECK_EQ(ftruncate(fd, (off_t)total), 0);
    char *base = (char *)mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    TH_CHECK(base != MAP_FAILED);
    conc_queue_t *req, *rep;
    TH_CHECK_EQ(conc_queue_init_in(&req, base, one, 4, sizeof(uint64_t), CONC_SHARED), 0);
    TH_CHECK_EQ(conc_queue_init_in(&rep, base + one, one, 4, sizeof(uint64_t), CONC_SHARED), 0);
    long rounds = th_iters(20000);
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        char *mine = child_remap(name, base, total);
        conc_queue_t *creq = conc_queue_attach(mine), *crep = conc_queue_attach(mine + one);
        if (!creq || !crep)
            _exit(4);
        uint64_t x;
        while (conc_queue_pop(creq, &x) == 0) {
            x = x * 2 + 1;
            if (conc_queue_push(crep, &x) != 0)
                _exit(5);
        }
        conc_queue_close(crep);
        _exit(0);
    }
    for (long i = 0; i < rounds; i++) {
        uint64_t x = (uint64_t)i;
        TH_CHECK_EQ(conc_queue_push(req, &x), 0);
        if (i % 3 == 2) { /* keep up to 3 in flight */
            for (long k = i - 2; k <= i; k++) {
                TH_CHECK_EQ(conc_queue_pop(rep, &x), 0);
                TH_CHECK_EQ(x, (uint64_t)k * 2 + 1);
            }
        }
    }
    for (long k = rounds - rounds % 3; k < rounds; k++) {
        uint64_t x;
        TH_CHECK_EQ(conc_queue_pop(rep, &x), 0);
        TH_CHECK_EQ(x, (uint64_t)k * 2 + 1);
    }
    conc_queue_close(req);
    uint64_t x;
    TH_CHECK_EQ(conc_queue_pop(rep, &x), EPIPE); /* the child closed its side */
    child_reaped_and_unmapped(pid, name, fd, base, total);
}

/* ------------------------------------------------------------------------------------------
 * The bias (queue.h): a side's first claimer claims by store until another claimer comes
 * ---------------------------------------------------------------------------------------- */
static uint64_t bias_of(conc_queue_t *q, bool push) {
    return __atomic_load_n(push ? &q->tail_bias : &q->head_bias, __ATOMIC_ACQUIRE);
}

/* What a first claim on a side leaves there: the claimer owns it, where membarrier works. */
static uint64_t owner_bias(void) {
    return CONC_QUEUE_BIAS && conc_heavy_barrier_available() ? conc__queue_self()
                                                             : CONC__QUEUE_REVOKED;
}

static void push_item_three(int index, void *arg) {
    (void)index;
    uint64_t x = 3;
    TH_CHECK_EQ(conc_queue_push((conc_queue_t *)arg, &x), 0);
}

static void pop_item_two(int index, void *arg) {
    (void)index;
    uint64_t x = 0;
    TH_CHECK_EQ(conc_queue_try_pop((conc_queue_t *)arg, &x), 0);
    TH_CHECK_EQ(x, 2u);
}

static void queue_bias_first_claimer_owns_until_another_claims(void) {
    conc_queue_t *q = make(8, sizeof(uint64_t));
    uint64_t fresh = CONC_QUEUE_BIAS ? CONC__QUEUE_UNOWNED : CONC__QUEUE_REVOKED;
    TH_CHECK_EQ(bias_of(q, true), fresh);
    TH_CHECK_EQ(bias_of(q, false), fresh);
    uint64_t x = 1;
    TH_CHECK_EQ(conc_queue_push(q, &x), 0);
    x = 2;
    TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
    TH_CHECK_EQ(bias_of(q, true), owner_bias());
    TH_CHECK_EQ(bias_of(q, false), fresh); /* a side's own: no pop yet */
    TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
    TH_CHECK_EQ(x, 1u);
    TH_CHECK_EQ(bias_of(q, false), owner_bias());
    th_run_threads(1, push_item_three, q); /* a second producer: revokes, then its CAS */
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    x = 4;
    TH_CHECK_EQ(conc_queue_push(q, &x), 0); /* the first owner claims by CAS now */
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    th_run_threads(1, pop_item_two, q);
    TH_CHECK_EQ(bias_of(q, false), CONC__QUEUE_REVOKED);
    uint64_t out[4];
    size_t n = 0;
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 4, &n), 0);
    TH_CHECK_EQ(n, 2u);
    TH_CHECK_EQ(out[0], 3u);
    TH_CHECK_EQ(out[1], 4u);
    conc_queue_destroy(q);

    /* The owner's batches; and close by the owner revokes its bias before CLOSED goes in. */
    q = make(4, sizeof(uint64_t));
    uint64_t in[6] = {10, 11, 12, 13, 14, 15};
    TH_CHECK_EQ(conc_queue_try_push_batch(q, in, 6, &n), 0);
    TH_CHECK_EQ(n, 4u); /* a full ring: one claim of four */
    TH_CHECK_EQ(conc_queue_try_push(q, &in[4]), EAGAIN);
    TH_CHECK_EQ(bias_of(q, true), owner_bias());
    TH_CHECK_EQ(conc_queue_pop_batch(q, out, 3, &n), 0);
    TH_CHECK_EQ(n, 3u);
    TH_CHECK_EQ(out[2], 12u);
    TH_CHECK_EQ(conc_queue_push_batch(q, in + 4, 2, &n), 0);
    conc_queue_close(q);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    TH_CHECK(conc_queue_is_closed(q));
    TH_CHECK_EQ(conc_queue_try_push(q, &x), EPIPE);
    TH_CHECK_EQ(conc_queue_try_pop_batch(q, out, 4, &n), 0);
    TH_CHECK_EQ(n, 3u);
    TH_CHECK_EQ(out[0], 13u);
    TH_CHECK_EQ(out[2], 15u);
    TH_CHECK_EQ(conc_queue_pop(q, &x), EPIPE);
    conc_queue_destroy(q);

    /* A queue between processes never has one: the heavy barrier reaches one process. */
    size_t size = conc_queue_footprint(4, sizeof(uint64_t));
    void *mem = malloc(size);
    TH_CHECK(mem != NULL);
    TH_CHECK_EQ(conc_queue_init_in(&q, mem, size, 4, sizeof(uint64_t), CONC_SHARED), 0);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    TH_CHECK_EQ(conc_queue_push(q, &x), 0);
    TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    TH_CHECK_EQ(bias_of(q, false), CONC__QUEUE_REVOKED);
    free(mem);
}

/* One producer and one consumer own their sides for the first quarter of the stream; then
 * three more of each join, revoking both biases while items flow: each item exactly once,
 * each producer's items in order. With a close racing too. */
static void queue_bias_revoked_mid_stream_loses_nothing(void) {
    for (int close_race = 0; close_race < 2; close_race++) {
        conc_queue_t *q = make(64, sizeof(uint64_t));
        stress_case_joining(q, 4, 4, 20000, close_race, true);
        TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED); /* by the joiners, or the close */
        conc_queue_destroy(q);
    }
    /* One producer, one consumer, a close while the producer still owns its side. */
    conc_queue_t *q = make(64, sizeof(uint64_t));
    stress_case_on(q, 1, 1, 50000, 1);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    conc_queue_destroy(q);
}

/* A consumer that sleeps for every item while the producer owns its side: each push meets the
 * consumer registered, somewhere between its registration, its barrier and its sleep, and
 * must wake it. The barriers the sleeper pays are debt: the bias is revoked once they cost
 * more than the owner's stores saved (with an item a sleep, soon). */
typedef struct sleeper_case {
    conc_queue_t *q;
    uint64_t received; /* relaxed: the consumer's count, watched by the producer */
} sleeper_case;

static void sleeper_consumer(int index, void *arg) {
    (void)index;
    sleeper_case *c = (sleeper_case *)arg;
    uint64_t x, expect = 0;
    int r;
    while ((r = conc_queue_pop_until(c->q, &x, conc_now() + 20 * CONC_SEC)) == 0) {
        TH_CHECK_EQ(x, expect);
        expect++;
        __atomic_store_n(&c->received, expect, __ATOMIC_RELAXED);
    }
    TH_CHECK_EQ(r, EPIPE); /* ETIMEDOUT: a push that never woke us */
}

static void sleeper_producer(int index, void *arg) {
    (void)index;
    sleeper_case *c = (sleeper_case *)arg;
    long rounds = 0, max_rounds = th_iters(200000);
    uint64_t sent = 0;
    th_rng rng = th_rng_make(th_seed());
    /* First pushes at random moments of the consumer's way to sleep (its pauses, yields,
     * registration, barrier), each once it took the item before: the lost wake the barrier
     * prevents needs a push whose word load passes its own store just as the consumer
     * registers. The barriers' debt may revoke the bias meanwhile. */
    for (long i = 0, first = th_iters(10000); i < first; i++) {
        while (__atomic_load_n(&c->received, __ATOMIC_RELAXED) != sent)
            conc_cpu_relax();
        for (uint32_t spin = th_rand_below(&rng, 2048); spin > 0; spin--)
            conc_cpu_relax();
        TH_CHECK_EQ(conc_queue_push(c->q, &sent), 0);
        sent++;
    }
    while (rounds < max_rounds) {
        /* Until the consumer is registered on not_empty (it took every item sent so far). */
        int64_t give_up = conc_now() + 20 * CONC_SEC;
        while (conc_eventcount_waiters(__atomic_load_n(&c->q->not_empty, __ATOMIC_RELAXED)) == 0 ||
               __atomic_load_n(&c->received, __ATOMIC_RELAXED) != sent) {
            TH_CHECK_MSG(conc_now() < give_up, "the consumer never slept again (%llu items)",
                         (unsigned long long)sent);
            sched_yield();
        }
        TH_CHECK_EQ(conc_queue_push(c->q, &sent), 0);
        sent++;
        rounds++;
        if (bias_of(c->q, true) == CONC__QUEUE_REVOKED && rounds >= 100)
            break; /* and a hundred pushes more with the CAS, sleepers unfenced */
    }
    TH_CHECK_EQ(bias_of(c->q, true), CONC__QUEUE_REVOKED);
    conc_queue_close(c->q);
}

static void sleeper_thread(int index, void *arg) {
    if (index == 0)
        sleeper_producer(index, arg);
    else
        sleeper_consumer(index, arg);
}

static void queue_bias_sleepers_fence_then_revoke_it(void) {
    sleeper_case c;
    memset(&c, 0, sizeof c);
    c.q = make(4, sizeof(uint64_t));
    th_run_threads(2, sleeper_thread, &c);
    TH_CHECK(__atomic_load_n(&c.received, __ATOMIC_RELAXED) >= 100);
    conc_queue_destroy(c.q);
}

/* An owner held inside its claim window (preempted there, for the test: the header's own
 * step opens the window and the thread waits) holds up a revoker: an until form returns
 * ETIMEDOUT at its deadline, and the claim goes in once the window closes. In a forked
 * child's copy that owner thread does not exist: the child's revocation does not wait for
 * it. A revocation left REVOKING (its revoker preempted, or interrupted by a signal handler
 * that uses the queue) is finished by the next claimer. */
typedef struct held_owner {
    conc_queue_t *q;
    int opened, release; /* relaxed: the test's own handshake */
    int child_pushed;    /* in a forked child: its thread's push_until result */
} held_owner;

static void *push_until_in_child(void *arg) {
    held_owner *h = (held_owner *)arg;
    uint64_t x = 2;
    h->child_pushed = conc_queue_push_until(h->q, &x, conc_now() + 10 * CONC_SEC);
    return NULL;
}

static void *owner_held_in_window(void *arg) {
    held_owner *h = (held_owner *)arg;
    uint64_t x = 1;
    TH_CHECK_EQ(conc_queue_push(h->q, &x), 0); /* takes the producers' bias */
    TH_CHECK_EQ(conc__queue_claim_way(h->q, true), CONC__QUEUE_BY_STORE);
    __atomic_store_n(&h->opened, 1, __ATOMIC_RELAXED);
    while (!__atomic_load_n(&h->release, __ATOMIC_RELAXED))
        th_sleep_ns(100000);
    conc__queue_window_close(h->q, true);
    return NULL;
}

static void queue_bias_owner_held_in_its_window(void) {
    if (!CONC_QUEUE_BIAS || !conc_heavy_barrier_available())
        TH_SKIP("no bias here: membarrier(2) refused");
    for (int in_child = 0; in_child < 2; in_child++) {
        held_owner h = {make(8, sizeof(uint64_t)), 0, 0, 0};
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, owner_held_in_window, &h), 0);
        while (!__atomic_load_n(&h.opened, __ATOMIC_RELAXED))
            th_sleep_ns(100000);
        uint64_t x = 2;
        if (!in_child) {
            TH_CHECK_EQ(conc_queue_push_until(h.q, &x, conc_now() + 20 * CONC_MS), ETIMEDOUT);
            TH_CHECK(conc__queue_revoking(bias_of(h.q, true)));
            __atomic_store_n(&h.release, 1, __ATOMIC_RELAXED);
            TH_CHECK_EQ(conc_queue_push(h.q, &x), 0); /* finishes the revocation */
        } else {
            pid_t pid = fork();
            TH_CHECK(pid >= 0);
            if (pid == 0) { /* the copy: its owner's window stays open for good */
                alarm(20);
                /* A new thread here likely runs on the owner's old stack, with its thread
                 * pointer: it is no owner of the parent's all the same (fork generation). */
                /* TSan and qemu-user start no thread in the child of a multi-threaded process. */
#ifdef CONC_TSAN
                bool new_thread = false;
#else
                bool new_thread = !th_emulated();
#endif
                pthread_t child_thread;
                if (!new_thread)
                    (void)push_until_in_child(&h);
                else if (pthread_create(&child_thread, NULL, push_until_in_child, &h) != 0 ||
                         pthread_join(child_thread, NULL) != 0)
                    _exit(3);
                if (h.child_pushed != 0)
                    _exit(3);
                conc_queue_close(h.q);
                uint64_t y[2];
                size_t n = 0;
                if (conc_queue_try_pop_batch(h.q, y, 2, &n) != 0 || n != 2 || y[0] != 1 ||
                    y[1] != 2)
                    _exit(4);
                _exit(bias_of(h.q, true) == CONC__QUEUE_REVOKED ? 0 : 5);
            }
            int status;
            TH_CHECK_EQ(waitpid(pid, &status, 0), pid);
            TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
            __atomic_store_n(&h.release, 1, __ATOMIC_RELAXED);
            TH_CHECK_EQ(conc_queue_push(h.q, &x), 0);
        }
        TH_CHECK_EQ(pthread_join(t, NULL), 0);
        TH_CHECK_EQ(bias_of(h.q, true), CONC__QUEUE_REVOKED);
        TH_CHECK_EQ(conc_queue_pop(h.q, &x), 0);
        TH_CHECK_EQ(x, 1u);
        TH_CHECK_EQ(conc_queue_pop(h.q, &x), 0);
        TH_CHECK_EQ(x, 2u);
        conc_queue_destroy(h.q);
    }
    /* A revocation nobody finishes (its revoker interrupted for good): the next claim does. */
    conc_queue_t *q = make(8, sizeof(uint64_t));
    th_run_threads(1, push_item_three, q); /* another thread owns the producers' side */
    uint64_t owner = bias_of(q, true);
    TH_CHECK(owner > CONC__QUEUE_REVOKED);
    __atomic_store_n(&q->tail_bias, (owner & CONC__QUEUE_GEN_MASK) | CONC__QUEUE_REVOKING,
                     __ATOMIC_SEQ_CST);
    uint64_t x = 4;
    TH_CHECK_EQ(conc_queue_try_push(q, &x), 0);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    TH_CHECK_EQ(conc_queue_try_pop(q, &x), 0);
    TH_CHECK_EQ(x, 3u);
    conc_queue_destroy(q);
}

/* A thread that owns a side and forks: in the child it is no owner (the fork generation is
 * part of an owner's identity), so a second thread there cannot claim beside its stores, and
 * close cannot lose CLOSED to them. Before, the forking owner kept its bias in the child, and
 * a revocation there skipped waiting for it: a position claimed twice. */
static void *push_many_in_child(void *arg) {
    conc_queue_t *q = (conc_queue_t *)arg;
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t x = (1ull << 32) | i;
        if (conc_queue_push(q, &x) != 0)
            return (void *)1;
    }
    return NULL;
}

static void owner_forks_child(void) {
    conc_queue_t *q = make(4096, sizeof(uint64_t));
    uint64_t x = 0;
    TH_CHECK_EQ(conc_queue_push(q, &x), 0); /* the main thread owns the producers' side */
    if (bias_of(q, true) <= CONC__QUEUE_REVOKED)
        _exit(TH_SKIP_CODE);
    pid_t pid = fork();
    TH_CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        if (conc__queue_claim_way(q, true) != CONC__QUEUE_UNSETTLED)
            _exit(10); /* it would claim by store (or by CAS beside an unrevoked bias) */
        pthread_t t;
        if (pthread_create(&t, NULL, push_many_in_child, q) != 0)
            _exit(3);
        for (uint64_t i = 1; i <= 1000; i++)
            if (conc_queue_push(q, &i) != 0)
                _exit(4);
        void *r;
        if (pthread_join(t, &r) != 0 || r != NULL)
            _exit(5);
        if (bias_of(q, true) != CONC__QUEUE_REVOKED) /* the forking thread owned nothing here */
            _exit(6);
        conc_queue_close(q);
        uint64_t mine = 0, theirs = 0, y;
        while (conc_queue_try_pop(q, &y) == 0) {
            if (y >> 32) {
                if ((y & 0xffffffffu) != theirs++)
                    _exit(7);
            } else if (y != mine++) {
                _exit(8);
            }
        }
        _exit(mine == 1001 && theirs == 1000 && conc_queue_is_closed(q) ? 0 : 9);
    }
    int status;
    TH_CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE)
        _exit(TH_SKIP_CODE);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    TH_CHECK_EQ(bias_of(q, true), conc__queue_self()); /* the parent's owner keeps its bias */
    conc_queue_destroy(q);
}

static void queue_bias_owner_forks(void) {
    for (int round = 0; round < 20; round++) {
        char buf[4096];
        int status = th_run_child_capturing_stderr(owner_forks_child, buf, sizeof buf);
        if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE)
            TH_SKIP("no bias here: membarrier(2) refused");
        TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
    }
}

/* Where membarrier(2) is refused (an old kernel, a seccomp profile) nobody takes a bias; a
 * refusal after a bias was taken cannot be reported (the owner's stores would go unordered):
 * the revoker aborts, naming the queue. */
static void membarrier_refused_from_the_start(void) {
    const th_refusal r[] = {{SYS_membarrier, -1, 0, ENOSYS}};
    if (!th_refuse_syscalls(r, 1))
        _exit(TH_SKIP_CODE);
    conc_queue_t *q = make(4, sizeof(uint64_t));
    uint64_t x = 7;
    TH_CHECK_EQ(conc_queue_push(q, &x), 0);
    TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
    TH_CHECK_EQ(bias_of(q, true), CONC__QUEUE_REVOKED);
    TH_CHECK_EQ(bias_of(q, false), CONC__QUEUE_REVOKED);
    stress_case_on(q, 2, 2, 2000, 0);
    conc_queue_destroy(q);
}

static void membarrier_refused_after_a_bias(void) {
    conc_queue_t *q = make(4, sizeof(uint64_t));
    uint64_t x = 7;
    TH_CHECK_EQ(conc_queue_push(q, &x), 0);
    if (bias_of(q, true) != conc__queue_self())
        _exit(TH_SKIP_CODE); /* no membarrier here at all */
    const th_refusal r[] = {{SYS_membarrier, -1, 0, EPERM}};
    if (!th_refuse_syscalls(r, 1))
        _exit(TH_SKIP_CODE);
    th_run_threads(1, push_item_three, q); /* revokes: its heavy barrier is refused */
}

static void queue_bias_needs_membarrier(void) {
    char buf[4096];
    int status = th_run_child_capturing_stderr(membarrier_refused_from_the_start, buf, sizeof buf);
    if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE)
        TH_SKIP("no seccomp filter here (an emulator, valgrind, or an unknown architecture)");
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, buf);
    status = th_run_child_capturing_stderr(membarrier_refused_after_a_bias, buf, sizeof buf);
    if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_CODE)
        TH_SKIP("membarrier(2) or a seccomp filter missing here");
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d: %s", status, buf);
    TH_CHECK_MSG(strstr(buf, "conc_queue (revoking a side's bias): membarrier(2) refused") != NULL,
                 "%s", buf);
}

TH_MAIN("queue", TH_CASE(queue_create_einval_enomem), TH_CASE(queue_init_in_attach),
        TH_CASE(queue_init_in_caller_arrays), TH_CASE(queue_init_in_any_offset),
        TH_CASE(queue_errno_untouched), TH_CASE(queue_capacity_exact), TH_CASE(queue_item_sizes),
        TH_CASE(queue_batch_unit), TH_CASE(queue_until_never_early),
        TH_CASE(queue_close_every_state), TH_CASE(queue_no_syscall_without_waiters),
        TH_CASE_T(queue_stress_1p1c, 60), TH_CASE_T(queue_stress_4p4c, 60),
        TH_CASE_T(queue_stress_8p1c, 60), TH_CASE_T(queue_stress_1p8c, 60),
        TH_CASE_T(queue_stress_cap1_mixed, 60), TH_CASE_T(queue_stress_wide_ring_mixed, 60),
        TH_CASE_T(queue_stress_yields_off, 60), TH_CASE_T(queue_stress_yields_wasteful, 60),
        TH_CASE_T(queue_stress_close_race, 60),
        TH_CASE_T(queue_deadlock_close_releases_waiters, 60),
        TH_CASE_T(queue_deadlock_close_vs_timeouts, 60),
        TH_CASE_T(queue_deadlock_pingpong_cap1, 60), TH_CASE_T(queue_shared_fork_exactly_once, 60),
        TH_CASE_T(queue_shared_shm_attach, 60), TH_CASE_T(queue_shared_attach_unaligned, 60),
        TH_CASE_T(queue_shared_killed_sleeper_takes_no_live_wake, 60),
        TH_CASE(queue_alloc_hook_any_alignment),
        TH_CASE_T(queue_until_deadline_past_stuck_peer, 20),
        TH_CASE_T(queue_stuck_peer_a_lap_behind, 20),
        TH_CASE_T(queue_destroy_under_blocked_waiter_aborts, 20),
        TH_CASE_T(queue_destroy_in_forked_child_with_a_parent_sleeper, 20),
        TH_CASE(queue_bias_first_claimer_owns_until_another_claims),
        TH_CASE_T(queue_bias_revoked_mid_stream_loses_nothing, 60),
        TH_CASE_T(queue_bias_sleepers_fence_then_revoke_it, 60),
        TH_CASE_T(queue_bias_needs_membarrier, 20),
        TH_CASE_T(queue_bias_owner_held_in_its_window, 30), TH_CASE_T(queue_bias_owner_forks, 60))

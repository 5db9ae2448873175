#!/usr/bin/env python3
# bench/python/mp_bench.py - the bench_forkpool workloads with multiprocessing
# SPDX-License-Identifier: MIT
#
# Run by bench/bench_forkpool.c (popen) in the same run as the C implementations; prints one
# line per workload: "<name> <ops> <wall_ns>" (the median repetition), so the C side can put
# Python in the same table. Run alone: python3 bench/python/mp_bench.py [--quick]
#   MP_BENCH_N='tiny slow' items for the fast maps and for the one-message-per-item ones.
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

QUICK = "--quick" in sys.argv or os.environ.get("CONC_BENCH_QUICK", "0") not in ("", "0")
REPS = 3 if QUICK else 5
WORKERS = os.cpu_count() or 2


def twice(x):
    return 2 * x


def noop():
    return None


def median_run(fn, reps=REPS):
    runs = [fn() for _ in range(reps)]
    runs.sort(key=lambda r: r[1] / r[0])
    return runs[len(runs) // 2]


def pool_map(pool, n, chunksize=None):
    def once():
        t = time.perf_counter_ns()
        pool.map(twice, range(n), chunksize=chunksize)
        return n, time.perf_counter_ns() - t
    return median_run(once)


def ppe_map(ex, n):
    def once():
        t = time.perf_counter_ns()
        list(ex.map(twice, range(n)))  # chunksize 1, its default
        return n, time.perf_counter_ns() - t
    return median_run(once)


def apply_latency(pool, n):
    def once():
        t = time.perf_counter_ns()
        for _ in range(n):
            pool.apply_async(noop).get()
        return n, time.perf_counter_ns() - t
    return median_run(once)


def create_destroy():
    def once():
        t = time.perf_counter_ns()
        p = mp.Pool(WORKERS)
        p.close()
        p.join()
        return 1, time.perf_counter_ns() - t
    return median_run(once)


def main():
    mp.set_start_method("fork")  # the C side forks too; 3.14 defaults to forkserver
    sizes = os.environ.get("MP_BENCH_N")
    tiny, slow = (int(a) for a in (sizes or "1000000 20000").split())
    if QUICK and not sizes:  # bench_forkpool.c passes sizes already cut for quick runs
        tiny, slow = tiny // 4, slow // 4
    results = {}
    with mp.Pool(WORKERS) as pool:
        pool.map(twice, range(WORKERS * 4))  # warm-up: every worker started
        results["map_default"] = pool_map(pool, tiny)
        results["map_cs1"] = pool_map(pool, slow, 1)
        results["apply_latency"] = apply_latency(pool, slow // 10)
    with ProcessPoolExecutor(WORKERS) as ex:
        list(ex.map(twice, range(WORKERS * 4)))
        results["ppe_map"] = ppe_map(ex, slow // 4)
    results["create_destroy"] = create_destroy()
    for name, (ops, ns) in results.items():
        print(f"{name} {ops} {ns}")


if __name__ == "__main__":
    main()

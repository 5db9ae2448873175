#!/usr/bin/env python3
# bench/python/futures_bench.py - the bench_future workloads with concurrent.futures
# SPDX-License-Identifier: MIT
#
# Run by bench/bench_future.c (popen) in the same run as the C implementations; prints one
# line per workload: "<name> <ops> <wall_ns>" (the median repetition), so the C side can put
# Python in the same table. Run alone: python3 bench/python/futures_bench.py [--quick]
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

QUICK = "--quick" in sys.argv or os.environ.get("CONC_BENCH_QUICK", "0") not in ("", "0")
REPS = 3 if QUICK else 5
WORKERS = os.cpu_count() or 2


def noop():
    return None


def sleep_1ms(_):
    time.sleep(0.001)


def cpu_task(n):
    # the concept notes' CPU-bound loop (000/001: total += (i * i) % 97)
    total = 0
    for i in range(n):
        total += (i * i) % 97
    return total


def median_run(fn):
    runs = [fn() for _ in range(REPS)]
    runs.sort(key=lambda r: r[1] / r[0])
    return runs[len(runs) // 2]


def noop_single(ex, n=20000 if not QUICK else 5000):
    def once():
        t = time.perf_counter_ns()
        fs = [ex.submit(noop) for _ in range(n)]
        for f in fs:
            f.result()
        return n, time.perf_counter_ns() - t
    return median_run(once)


def noop_batch(ex, n=20000 if not QUICK else 5000):
    def once():
        t = time.perf_counter_ns()
        # ThreadPoolExecutor has no batch submit, and its map ignores chunksize (one future
        # per item): map is the closest peer of conc_executor_submit_batch.
        for _ in ex.map(lambda _: None, range(n)):
            pass
        return n, time.perf_counter_ns() - t
    return median_run(once)


def latency(ex, n=5000 if not QUICK else 1000):
    def once():
        t = time.perf_counter_ns()
        for _ in range(n):
            ex.submit(noop).result()
        return n, time.perf_counter_ns() - t
    return median_run(once)


def sleep_fanout(tasks, workers):
    with ThreadPoolExecutor(max_workers=workers) as ex:
        list(ex.map(sleep_1ms, range(workers)))  # start the threads outside the timing

        def once():
            t = time.perf_counter_ns()
            list(ex.map(sleep_1ms, range(tasks)))
            return tasks, time.perf_counter_ns() - t
        return median_run(once)


def cpu_fanout(parts, n, workers):
    with ThreadPoolExecutor(max_workers=workers) as ex:
        def once():
            t = time.perf_counter_ns()
            list(ex.map(cpu_task, [n] * parts))
            return parts, time.perf_counter_ns() - t
        return median_run(once)


def main():
    tasks, sleepers = (int(a) for a in os.environ.get("FUTURES_BENCH_SLEEP", "200 20").split())
    cpu = os.environ.get("FUTURES_BENCH_CPU")
    parts, n = (int(a) for a in (cpu or "4 500000").split())
    if QUICK and not cpu:  # bench_future.c passes sizes already cut for quick runs
        n //= 4
    with ThreadPoolExecutor(max_workers=WORKERS) as ex:
        list(ex.map(lambda _: None, range(WORKERS * 4)))  # warm-up: start every thread
        results = {
            "noop_single": noop_single(ex),
            "noop_batch": noop_batch(ex),
            "latency": latency(ex),
        }
    results["sleep_fanout"] = sleep_fanout(tasks, sleepers)
    results["cpu_fanout_1"] = cpu_fanout(parts, n, 1)
    results["cpu_fanout_n"] = cpu_fanout(parts, n, WORKERS)
    for name, (ops, ns) in results.items():
        print(f"{name} {ops} {ns}")


if __name__ == "__main__":
    main()

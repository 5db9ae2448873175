#!/usr/bin/env python3
# bench/python/queue_bench.py - the queue workload of bench/bench_queue.c in Python
# SPDX-License-Identifier: MIT
#
# usage: queue_bench.py PRODUCERS CONSUMERS ITEMS ITEM_SIZE [CAPACITY]
# P producer threads put ITEMS/P items each into one queue.Queue(maxsize=CAPACITY); C consumer
# threads get ITEMS/C each. 8-byte items are ints, larger ones bytes objects of that size.
# Prints "ops N" and "ns_per_op X" (wall time from start to the last join); bench_queue.c
# parses these lines so the ratio conc/Python comes from one run.
import queue
import sys
import threading
import time


def main():
    producers, consumers, items, item_size = (int(a) for a in sys.argv[1:5])
    capacity = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
    items -= items % (producers * consumers)  # every thread gets an equal share
    q = queue.Queue(maxsize=capacity)
    payload = None if item_size <= 8 else bytes(item_size)
    per_producer, per_consumer = items // producers, items // consumers
    totals = [0] * consumers
    start = threading.Barrier(producers + consumers + 1)

    def produce():
        start.wait()
        put = q.put
        if payload is None:
            for i in range(per_producer):
                put(i)
        else:
            for _ in range(per_producer):
                put(payload)

    def consume(index):
        start.wait()
        get = q.get
        n = 0
        for _ in range(per_consumer):
            get()
            n += 1
        totals[index] = n

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    threads += [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    elapsed = time.perf_counter_ns() - t0
    if sum(totals) != items:
        print("error: moved %d of %d items" % (sum(totals), items))
        return 1
    print("ops %d" % items)
    print("ns_per_op %.3f" % (elapsed / items))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# bench/python/asyncio_bench.py - the coroutine workloads of bench/bench_coro.c in asyncio
# SPDX-License-Identifier: MIT
#
# usage: asyncio_bench.py MODE ARGS...
#   switch ROUNDS            two tasks that each await asyncio.sleep(0) ROUNDS times: one round
#                            trip is one sleep(0) of each (two switches through the loop)
#   yield TASKS ROUNDS       TASKS tasks, each awaiting sleep(0) ROUNDS times; the first round
#                            (first run of every task) is not timed
#   spawn TASKS BATCH        create_task of a trivial coroutine BATCH at a time, then gather
#   rss TASKS                TASKS idle tasks (each awaits one Event): resident bytes per task
#   timers TASKS SPAN_MS     TASKS tasks sleeping random delays up to SPAN_MS: CPU ns per sleep
#   fdpingpong ROUNDS        two tasks, one byte back and forth over a socketpair with streams
# Prints "ops N", "ns_per_op X" (and "rss_per_op BYTES" for rss); bench_coro.c parses them so
# every ratio comes from one run.
import asyncio
import random
import socket
import sys
import time


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def switch(rounds):
    async def side():
        for _ in range(rounds):
            await asyncio.sleep(0)

    t0 = time.perf_counter_ns()
    await asyncio.gather(side(), side())
    return rounds, time.perf_counter_ns() - t0


async def yields(tasks, rounds):
    state = {"warm": 0, "t0": 0}

    async def worker():
        await asyncio.sleep(0)
        state["warm"] += 1
        if state["warm"] == tasks:
            state["t0"] = time.perf_counter_ns()
        for _ in range(rounds - 1):
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * (rounds - 1), time.perf_counter_ns() - state["t0"]


async def spawn(tasks, batch):
    async def trivial():
        return 1

    t0 = time.perf_counter_ns()
    done = 0
    while done < tasks:
        ts = [asyncio.create_task(trivial()) for _ in range(batch)]
        done += sum(await asyncio.gather(*ts))
    return tasks, time.perf_counter_ns() - t0


async def rss(tasks):
    ev = asyncio.Event()
    before = rss_bytes()
    ts = [asyncio.create_task(ev.wait()) for _ in range(tasks)]
    t0 = time.perf_counter_ns()
    await asyncio.sleep(0)  # every task runs up to its wait
    elapsed = time.perf_counter_ns() - t0
    after = rss_bytes()
    ev.set()
    await asyncio.gather(*ts)
    print("rss_per_op %.1f" % ((after - before) / tasks))
    return tasks, elapsed


async def timers(tasks, span_ms):
    rng = random.Random(1)

    async def sleeper(delay):
        await asyncio.sleep(delay)

    # The tasks are made before the clock starts, as bench_coro.c spawns its coroutines before
    # it starts its clock; they first run (and start their sleeps) inside the timed part.
    ts = [asyncio.create_task(sleeper(rng.random() * span_ms / 1000)) for _ in range(tasks)]
    c0 = time.process_time_ns()
    await asyncio.gather(*ts)
    return tasks, time.process_time_ns() - c0  # CPU time: the timer cost, not the waiting


async def fdpingpong(rounds):
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)

    async def echo():
        for _ in range(rounds):
            x = await rb.readexactly(1)
            wb.write(x)
            await wb.drain()

    async def client():
        for _ in range(rounds):
            wa.write(b"x")
            await wa.drain()
            await ra.readexactly(1)

    t0 = time.perf_counter_ns()
    await asyncio.gather(echo(), client())
    elapsed = time.perf_counter_ns() - t0
    wa.close()
    wb.close()
    return rounds, elapsed


def main():
    mode, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    fn = {"switch": switch, "yield": yields, "spawn": spawn, "rss": rss, "timers": timers,
          "fdpingpong": fdpingpong}[mode]
    ops, ns = asyncio.run(fn(*args))
    print("ops %d" % ops)
    print("ns_per_op %.3f" % (ns / ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# bench/python/chan_bench.py - the asyncio baselines of bench/bench_chan.c
# SPDX-License-Identifier: MIT
#
# usage: chan_bench.py MODE ARGS...
#   pingpong ROUNDS       two tasks, two asyncio.Queue(maxsize=1): put to the other, get back
#   lock ROUNDS TASKS     TASKS tasks: async with lock: await asyncio.sleep(0) (every release
#                         hands the lock to a waiting task); ROUNDS acquisitions in all
#   executor ROUNDS       await loop.run_in_executor(pool, trivial) in a loop, a 2-thread pool
#   echo                  asyncio streams echo server on 127.0.0.1, an ephemeral port; prints
#                         "port N", serves until stdin closes
# Prints "ops N" and "ns_per_op X"; bench_chan.c parses them so every ratio is from one run.
import asyncio
import concurrent.futures
import sys
import time


async def pingpong(rounds):
    a, b = asyncio.Queue(maxsize=1), asyncio.Queue(maxsize=1)

    async def echo():
        for _ in range(rounds):
            await b.put(await a.get())

    t = asyncio.create_task(echo())
    t0 = time.perf_counter_ns()
    for i in range(rounds):
        await a.put(i)
        await b.get()
    dt = time.perf_counter_ns() - t0
    await t
    return rounds, dt


async def lock(rounds, tasks):
    lk = asyncio.Lock()
    per = rounds // tasks

    async def worker():
        for _ in range(per):
            async with lk:
                await asyncio.sleep(0)

    t0 = time.perf_counter_ns()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return per * tasks, time.perf_counter_ns() - t0


def trivial():
    return 1


async def executor(rounds):
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        await loop.run_in_executor(pool, trivial)  # start the threads
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            await loop.run_in_executor(pool, trivial)
        dt = time.perf_counter_ns() - t0
    return rounds, dt


async def echo_server():
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(1024)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print("port", server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done


def main():
    mode = sys.argv[1]
    if mode == "echo":
        asyncio.run(echo_server())
        return
    if mode == "pingpong":
        ops, ns = asyncio.run(pingpong(int(sys.argv[2])))
    elif mode == "lock":
        ops, ns = asyncio.run(lock(int(sys.argv[2]), int(sys.argv[3])))
    elif mode == "executor":
        ops, ns = asyncio.run(executor(int(sys.argv[2])))
    else:
        sys.exit("unknown mode " + mode)
    print("ops", ops)
    print("ns_per_op", ns / ops)


if __name__ == "__main__":
    main()

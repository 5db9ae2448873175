#!/usr/bin/env python3
"""bench/rwlock_slot_hash.py - how rwlock.h's slot multipliers were chosen, and how they spread.

conc_rwlock puts a reader in slot (page * M mod 2^64) >> (64 - bits), page being its thread
pointer's page number and 2^bits = CONC_RWLOCK_SLOTS. glibc places the thread pointers of
threads made with default attributes 2049 pages apart (an 8 MiB stack and its guard page), so
a pool's threads are an arithmetic progression page0 + 2049 k. When 2049 M = c 2^(64-bits)
(mod 2^64) for an odd c, up to a rounding error far below 2^(64-bits), thread k lands in slot
(slot(page0) + k c) mod 2^bits: any 2^bits consecutive such threads get distinct slots,
whatever page0. Each m in 0..2048 gives one such M (M = (c 2^(64-bits) + m 2^64) / 2049, made
odd); this picks, per slot count, the (m, c) whose M also spreads other strides best: odd
strides (other stack sizes with a guard page), powers of two (stacks without one) and random
ones (threads made at different times), without giving up the 2049 guarantee.

    python3 bench/rwlock_slot_hash.py          # the table for rwlock.h, and the comparison

It prints, for every slot count, the multiplier and the mean number of distinct slots that
2^bits threads fill (more is better; 2^bits is perfect), against the golden-ratio multiplier.
"""
import random

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
GLIBC_STRIDE = 2049
ODD = [3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, 4097, 8193]
POW2 = [1 << j for j in range(14)]


def slot(page, mul, bits):
    return ((page * mul) & MASK) >> (64 - bits)


def spread(mul, bits, stride, starts):
    """Mean and least number of distinct slots over the starting pages."""
    n = 1 << bits
    counts = [len({slot(p + stride * k, mul, bits) for k in range(n)}) for p in starts]
    return sum(counts) / len(counts), min(counts)


def profile(mul, bits, starts, randoms):
    glibc = spread(mul, bits, GLIBC_STRIDE, starts)
    odd = [spread(mul, bits, s, starts) for s in ODD]
    pow2 = [spread(mul, bits, s, starts) for s in POW2]
    rnd = [spread(mul, bits, s, starts)[0] for s in randoms]
    return (glibc, (min(x[1] for x in odd), sum(x[0] for x in odd) / len(odd)),
            (min(x[1] for x in pow2), sum(x[0] for x in pow2) / len(pow2)),
            sum(rnd) / len(rnd))


def choose(bits, starts, randoms):
    n, best = 1 << bits, None
    for m in range(GLIBC_STRIDE):
        for c in range(1, n, 2):
            mul = ((c << (64 - bits)) + (m << 64)) // GLIBC_STRIDE | 1
            if spread(mul, bits, GLIBC_STRIDE, starts[:3])[1] < n:
                continue
            _, odd, pow2, rnd = profile(mul, bits, starts[:4], randoms)
            score = odd[0] + odd[1] + pow2[0] + pow2[1] + rnd
            if best is None or score > best[0]:
                best = (score, mul)
    return best[1]


def main():
    rng = random.Random(3)
    starts = [rng.randrange(1 << 36) for _ in range(8)]
    randoms = rng.sample(range(2, 6000), 30)
    check = [rng.randrange(1 << 36) for _ in range(200)]
    print("slots  multiplier            stride 2049     odd (min, mean)   2^j (min, mean)   random")
    for bits in range(1, 7):
        mul = choose(bits, starts, randoms)
        for name, m in (("chosen", mul), ("golden", GOLDEN)):
            g, odd, pow2, rnd = profile(m, bits, check, randoms)
            print(f"{1 << bits:5}  {name} 0x{m:016x}  {g[0]:5.2f} (min {g[1]:2})  "
                  f"{odd[0]:3} {odd[1]:6.2f}        {pow2[0]:3} {pow2[1]:6.2f}        {rnd:6.2f}")


if __name__ == "__main__":
    main()

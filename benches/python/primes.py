"""Finding primes with a Pool, the book's way: check_prime per number, Pool.map at each chunk
size, and the serial loop.

Usage: python3 primes.py [--range A..B] [--chunksizes 1,10,...,auto] [--processes 2] [--repeat R]
Prints one JSON object per setting: seconds is the median of R runs.
"""
import argparse
import json
import math
import multiprocessing
import statistics
import time


def check_prime(n):
    if n % 2 == 0:
        return False
    for i in range(3, int(math.sqrt(n)) + 1, 2):
        if n % i == 0:
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--range", default="100000000..101000000")
    ap.add_argument("--chunksizes", default="1,10,100,1000,10000,auto")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.range.split(".."))
    numbers = range(lo, hi)
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        primes = sum(1 for n in numbers if check_prime(n))
        times.append(time.perf_counter() - t)
    print(json.dumps({"call": "serial", "chunksize": None, "primes": primes, "seconds": statistics.median(times)}), flush=True)
    with multiprocessing.Pool(a.processes) as pool:
        for c in a.chunksizes.split(","):
            chunk = None if c == "auto" else int(c)
            times = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                primes = sum(pool.map(check_prime, numbers, chunksize=chunk))
                times.append(time.perf_counter() - t)
            print(json.dumps({"call": "map", "chunksize": c, "primes": primes, "seconds": statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()

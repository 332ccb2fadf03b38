"""Monte Carlo pi, the book's way: pure Python lists (serial, threads, processes) and numpy
(serial, processes), each worker reseeding its generator as the book's fix says.

Usage: python3 pi.py [--samples-lists N] [--samples-numpy N] [--workers 2] [--repeat R]
Prints one JSON object per (impl, mode, workers): seconds is the median of R runs.
"""
import argparse
import json
import multiprocessing
import random
import statistics
import threading
import time

try:
    import numpy as np  # imported here, before any timing (and inherited by forked workers)
except ImportError:
    np = None


def lists_block(n):
    random.seed()  # reseed: a forked worker would otherwise repeat its parent's stream
    inside = 0
    for _ in range(int(n)):
        x = random.uniform(0, 1)
        y = random.uniform(0, 1)
        inside += x * x + y * y <= 1.0
    return inside


def numpy_block(n):
    np.random.seed()
    inside = 0
    left = int(n)
    while left > 0:  # 10^7 darts at a time keeps memory bounded
        k = min(left, 10_000_000)
        xs = np.random.uniform(0, 1, k)
        ys = np.random.uniform(0, 1, k)
        inside += int(np.sum((xs * xs + ys * ys) <= 1))
        left -= k
    return inside


def run(impl, mode, workers, samples):
    block = lists_block if impl == "lists" else numpy_block
    shares = [samples // workers] * workers
    t = time.perf_counter()
    if mode == "serial":
        inside = sum(block(n) for n in shares)
    elif mode == "threads":
        out = [0] * workers
        def work(i):
            out[i] = block(shares[i])
        ts = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        inside = sum(out)
    else:
        with multiprocessing.Pool(workers) as pool:
            t = time.perf_counter()  # the pool's start-up is not timed (mproc's is not either)
            inside = sum(pool.map(block, shares))
    return time.perf_counter() - t, 4.0 * inside / sum(shares)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples-lists", type=int, default=10_000_000)
    ap.add_argument("--samples-numpy", type=int, default=100_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    impls = ["lists", "numpy"] if np is not None else ["lists"]
    for impl in impls:
        samples = a.samples_lists if impl == "lists" else a.samples_numpy
        modes = [("serial", 1), ("threads", a.workers), ("processes", a.workers)]
        if impl == "numpy":
            modes = [("serial", 1), ("processes", a.workers)]
        for mode, w in modes:
            runs = [run(impl, mode, w, samples) for _ in range(a.repeat)]
            secs = statistics.median(r[0] for r in runs)
            print(json.dumps({"impl": impl, "mode": mode, "workers": w, "samples": samples,
                              "seconds": secs, "ns_per_dart": secs * 1e9 / samples, "pi": runs[0][1]}), flush=True)


if __name__ == "__main__":
    main()

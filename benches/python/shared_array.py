"""The book's shared numpy array: a multiprocessing.RawArray viewed by numpy, rows filled by
forked workers (pid fill: worker w writes rows w, w+P, ...).

Usage: python3 shared_array.py [--rows R] [--cols C] [--processes P]
Prints one JSON object: alloc_s (creating the RawArray), fill_s (the workers' map), fill_gb_s.
"""
import argparse
import ctypes
import json
import multiprocessing
import time

import numpy as np

SHARED = None


def fill(args):
    w, processes, rows, cols = args
    a = np.frombuffer(SHARED, dtype=np.float64).reshape(rows, cols)
    for r in range(w, rows, processes):
        a[r, :] = w + 1
    return len(range(w, rows, processes))


def main():
    global SHARED
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--cols", type=int, default=20_000)
    ap.add_argument("--processes", type=int, default=2)
    a = ap.parse_args()
    t = time.perf_counter()
    SHARED = multiprocessing.RawArray(ctypes.c_double, a.rows * a.cols)
    alloc = time.perf_counter() - t
    with multiprocessing.Pool(a.processes) as pool:  # forked after the array exists: it is inherited
        t = time.perf_counter()
        rows = sum(pool.map(fill, [(w, a.processes, a.rows, a.cols) for w in range(a.processes)]))
        fill_s = time.perf_counter() - t
    arr = np.frombuffer(SHARED, dtype=np.float64).reshape(a.rows, a.cols)
    ok = all(arr[r, 0] == r % a.processes + 1 for r in range(0, a.rows, max(1, a.rows // 100)))
    print(json.dumps({"rows": a.rows, "cols": a.cols, "processes": a.processes, "alloc_s": alloc, "fill_s": fill_s,
                      "fill_gb_s": rows * a.cols * 8 / fill_s / 1e9, "checked": ok}), flush=True)


if __name__ == "__main__":
    main()

"""Python's multiprocessing.Pool measured the way `mproc bench pool` measures mproc's Pool.

Usage: python3 pool_overhead.py [--tasks N] [--chunksize 1,auto] [--processes P] [--repeat R]
Prints one JSON object per chunk size with the keys of `mproc bench pool --json`.
"""
import argparse
import json
import multiprocessing
import statistics
import time


def identity(x):
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--chunksize", default="1,auto")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    startups = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        pool = multiprocessing.Pool(a.processes)
        pool.apply(identity, (1,))
        pool.close()
        pool.join()
        startups.append((time.perf_counter() - t) * 1e3)
    startup = statistics.median(startups)
    with multiprocessing.Pool(a.processes) as pool:
        for c in a.chunksize.split(","):
            chunk = None if c == "auto" else int(c)
            times = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                out = pool.map(identity, range(a.tasks), chunksize=chunk)
                times.append(time.perf_counter() - t)
                assert len(out) == a.tasks
            s = statistics.median(times)
            print(json.dumps(dict(bench="pool", processes=a.processes, tasks=a.tasks, chunksize=c, seconds=s,
                                  per_task_us=s / a.tasks * 1e6, startup_ms=startup)), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()

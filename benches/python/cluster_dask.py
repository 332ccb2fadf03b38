"""Dask `distributed` measured the way `mproc bench cluster` measures mproc's cluster.

A LocalCluster of 2 worker processes (1 thread each): trivial tasks one per future ("unbatched")
and batched (a list per future), an apply round trip, and verify-primes (a prime's odd divisors
in 2 interleaved ranges, one future each) beside the same loop serially.

Usage: python3 cluster_dask.py [--tasks N] [--batched-tasks N] [--batch B] [--repeat R] [--prime N]
Prints one JSON object per figure, with the keys of `mproc bench cluster --json`.
"""
import argparse
import json
import statistics
import time


def square(x):
    return x * x


def square_batch(xs):
    return [x * x for x in xs]


def first_factor(n, start, step):
    d, end = start, int(n ** 0.5)
    while d <= end:
        if n % d == 0:
            return d
        d += step
    return None


def is_prime_mr(n):
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def main():
    from dask.distributed import Client, LocalCluster

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--batched-tasks", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prime", type=int, default=10**13, help="verify-primes on the first prime from here")
    a = ap.parse_args()
    n = a.prime | 1
    while not is_prime_mr(n):
        n += 2
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2)

        def timed(f):
            ts = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            return statistics.median(ts)

        lat = []
        for x in range(200):
            t = time.perf_counter()
            assert client.submit(square, x, pure=False).result() == x * x
            lat.append((time.perf_counter() - t) * 1e6)
        lat.sort()
        p50, p99 = lat[len(lat) // 2], lat[len(lat) * 99 // 100]
        unb = timed(lambda: client.gather(client.map(square, range(a.tasks), pure=False)))
        chunks = [list(range(i, min(i + a.batch, a.batched_tasks))) for i in range(0, a.batched_tasks, a.batch)]
        bat = timed(lambda: client.gather(client.map(square_batch, chunks, pure=False)))
        for kind, count, chunk, s in (("unbatched", a.tasks, 1, unb), ("batched", a.batched_tasks, a.batch, bat)):
            print(json.dumps({"bench": "cluster", "label": "dask", "kind": kind, "workers": 2, "tasks": count,
                              "chunksize": chunk, "seconds": s, "tasks_per_s": count / s, "us_per_task": s * 1e6 / count,
                              "apply_p50_us": p50, "apply_p99_us": p99}), flush=True)
        serial = timed(lambda: first_factor(n, 3, 2))
        par = timed(lambda: client.gather(client.map(first_factor, [n, n], [3, 5], [4, 4], pure=False)))
        print(json.dumps({"bench": "verify-primes", "label": "dask", "number": n, "workers": 2,
                          "serial_s": serial, "seconds": par, "speedup": serial / par}), flush=True)


if __name__ == "__main__":
    main()

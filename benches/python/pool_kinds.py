"""Python's multiprocessing.Pool on the item kinds of `mproc bench pool`: ints, ~20-byte strings,
a range, and byte blobs (one way and round trip), each beside a serial loop.

Usage: python3 pool_kinds.py [--tasks N] [--chunksize 1,1000,auto] [--processes P] [--repeat R]
                             [--blob-bytes B]
Prints one JSON object per figure with the keys of `mproc bench pool --json` (`pool_kind`,
`pool_blob` rows).
"""
import argparse
import json
import multiprocessing
import statistics
import time


def identity(x):
    return x


def length(b):
    return len(b)


def timed(repeat, make, f):
    times = []
    for _ in range(repeat):
        x = make()
        t = time.perf_counter()
        f(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--chunksize", default="1,1000,auto")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--blob-bytes", type=int, default=256 << 20)
    a = ap.parse_args()
    with multiprocessing.Pool(a.processes) as pool:
        for c in a.chunksize.split(","):
            chunk = None if c == "auto" else int(c)
            n = min(a.tasks, 100_000) if chunk == 1 else a.tasks
            kinds = {
                "u64": (lambda: list(range(n)), lambda v: pool.map(identity, v, chunksize=chunk), lambda v: [identity(x) for x in v]),
                "string": (
                    lambda: [f"item number {x:08}" for x in range(n)],
                    lambda v: pool.map(identity, v, chunksize=chunk),
                    lambda v: [identity(x) for x in v],
                ),
                "range": (lambda: range(n), lambda v: pool.map(identity, v, chunksize=chunk), lambda v: [identity(x) for x in v]),
            }
            for kind, (make, par, ser) in kinds.items():
                s = timed(a.repeat, make, par)
                serial = timed(a.repeat, make, ser)
                print(json.dumps({"bench": "pool_kind", "kind": kind, "processes": a.processes, "tasks": n,
                                  "chunksize": c, "seconds": s, "ns_per_item": s / n * 1e9,
                                  "serial_ns_per_item": serial / n * 1e9}), flush=True)
        for size in [1 << 10, 64 << 10, 1 << 20]:
            blobs = max(a.blob_bytes // size, 1)
            make = lambda: [bytes([i % 256]) * size for i in range(blobs)]
            for c in a.chunksize.split(","):
                chunk = None if c == "auto" else int(c)
                for direction, f in [("one_way", length), ("round_trip", identity)]:
                    s = timed(a.repeat, make, lambda v: pool.map(f, v, chunksize=chunk))
                    print(json.dumps({"bench": "pool_blob", "bytes": size, "direction": direction,
                                      "processes": a.processes, "blobs": blobs, "chunksize": c, "seconds": s,
                                      "gb_per_s": blobs * size / s / 1e9}), flush=True)


if __name__ == "__main__":
    main()

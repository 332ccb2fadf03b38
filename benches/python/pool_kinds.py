"""Python's twin of `mproc bench pool --kinds ...`: the same items through
`multiprocessing.Pool.map` and `concurrent.futures.ProcessPoolExecutor.map(..., chunksize=...)`,
fork start method, 2 worker processes unless told otherwise.

Usage: python3 pool_kinds.py [--tasks N] [--chunksize 1,1000,auto] [--processes P] [--repeat R]
                             [--kinds serde,plain,struct64,string,range,blob] [--blob-bytes B]
                             [--impls Pool.map,ProcessPoolExecutor.map] [--quick]

Prints one JSON object per (impl, kind, chunk size) with the keys of `mproc bench pool --json`
plus "impl":
  {"bench": "pool_kind", "impl", "kind", "processes", "tasks", "chunksize", "seconds",
   "ns_per_item", "serial_ns_per_item", "parallelism"}
  {"bench": "pool_blob", "impl", "bytes", "direction", "processes", "blobs", "chunksize",
   "seconds", "gb_per_s", "memcpy_gb_per_s", "parallelism"}
Each figure is the median of --repeat runs; a fresh input is built outside the clock for each run,
and the executor is warmed up (workers started) before anything is timed.

The items, as Python has them:
  serde, plain  ints (Python has one int; both kinds measure the same thing, twice)
  struct64      a tuple of 8 ints (64 bytes of data in mproc's #[repr(C)] struct)
  string        the same ~20-byte strings, "item number 00000001"
  range         range(n) handed to map as it is (Pool.map slices it without building a list)
  blob          bytes objects of 1 KiB, 64 KiB and 1 MiB, --blob-bytes in all per size;
                one way = map(len), round trip = map(identity)
The serial floor is a list comprehension over the same items in this process; memcpy_gb_per_s is
Python copying one blob into a preallocated bytearray, blob after blob.

Chunk size "auto": Pool.map is given chunksize=None, its own rule
(divmod(len, 4 * processes), rounded up). ProcessPoolExecutor.map's default is chunksize=1, one
future per item, which is pathological for bulk work and would compare mproc's automatic chunking
with no chunking at all; so for "auto" it is given the number Pool.map would compute for the same
input. The row says "auto" either way.

Chunk size 1 costs Python a task record (and, for the executor, a future) per item, ~15-40 us
each: at chunk size 1 Pool.map runs at most 20,000 items and ProcessPoolExecutor.map at most
5,000 (blobs too: those caps count blobs). A capped row carries "capped_from" (the count asked
for) and a note goes to stderr. ns per item and GB/s are per item and per byte, so the figures
stay comparable with mproc's, which runs more items at chunk size 1.

"parallelism": how many cores P busy processes get right now (P on a quiet P-core machine),
measured once at start the way mproc measures it: spin for 50 ms alone, then P forked processes
spin 50 ms each at once; the ratio of the work done.
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import time

KINDS = ["serde", "plain", "struct64", "string", "range", "blob"]
IMPLS = ["Pool.map", "ProcessPoolExecutor.map"]
CAP = {"Pool.map": 20_000, "ProcessPoolExecutor.map": 5_000}
BLOB_SIZES = [1 << 10, 64 << 10, 1 << 20]


def identity(x):
    return x


def length(b):
    return len(b)


def spin(d):
    end = time.perf_counter() + d
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def spin_into(barrier, total, d):
    barrier.wait()
    n = spin(d)
    with total.get_lock():
        total.value += n


def parallelism(processes, d=0.05):
    solo = spin(d)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes)
    total = ctx.Value("q", 0)
    ps = [ctx.Process(target=spin_into, args=(barrier, total, d)) for _ in range(processes)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return total.value / solo


def timed(repeat, make, f):
    """Median seconds of `repeat` runs of f, each on a fresh input from make (outside the clock)."""
    times = []
    for _ in range(repeat):
        x = make()
        t = time.perf_counter()
        f(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pool_rule(n, processes):
    """Pool.map's chunk size for chunksize=None (Lib/multiprocessing/pool.py, _map_async)."""
    if n == 0:
        return 1
    c, extra = divmod(n, processes * 4)
    return c + 1 if extra else c


class Runner:
    """One implementation's map with the chunk size resolved, checking the result's length."""

    def __init__(self, impl, processes):
        self.impl = impl
        self.processes = processes
        ctx = multiprocessing.get_context("fork")
        if impl == "Pool.map":
            self.ex = ctx.Pool(processes)
        else:
            self.ex = concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=ctx)
        self.map(identity, list(range(10 * processes)), 1)  # start (and warm) the workers

    def map(self, f, items, chunk):
        if self.impl == "Pool.map":
            out = self.ex.map(f, items, chunksize=chunk)
        else:
            c = chunk if chunk is not None else pool_rule(len(items), self.processes)
            out = list(self.ex.map(f, items, chunksize=c))
        if len(out) != len(items):
            raise RuntimeError(f"{self.impl}: {len(out)} results for {len(items)} items")
        return out

    def close(self):
        if self.impl == "Pool.map":
            self.ex.close()
            self.ex.join()
        else:
            self.ex.shutdown()


def make_items(kind, n):
    if kind in ("serde", "plain"):
        return lambda: list(range(n))
    if kind == "struct64":
        return lambda: [(x,) * 8 for x in range(n)]
    if kind == "string":
        return lambda: [f"item number {x:08}" for x in range(n)]
    if kind == "range":
        return lambda: range(n)
    raise SystemExit(f"--kinds: unknown kind {kind}")


def capped(impl, chunk, n, what):
    if chunk == 1 and n > CAP[impl]:
        print(f"pool_kinds: {impl} at chunk size 1: {CAP[impl]} {what} instead of {n}", file=sys.stderr, flush=True)
        return CAP[impl]
    return n


def emit(row, asked, n):
    if n != asked:
        row["capped_from"] = asked
    print(json.dumps(row), flush=True)


def kind_rows(a, run, kind, par, serial_cache):
    for c in a.chunksize.split(","):
        c = c.strip()
        chunk = None if c == "auto" else int(c)
        n = capped(run.impl, chunk, a.tasks, "items")
        make = make_items(kind, n)
        s = timed(a.repeat, make, lambda v: run.map(identity, v, chunk))
        key = (kind, n)
        if key not in serial_cache:
            serial_cache[key] = timed(a.repeat, make, lambda v: [identity(x) for x in v])
        emit({"bench": "pool_kind", "impl": run.impl, "kind": kind, "processes": a.processes, "tasks": n,
              "chunksize": c, "seconds": s, "ns_per_item": s / n * 1e9,
              "serial_ns_per_item": serial_cache[key] / n * 1e9, "parallelism": par}, a.tasks, n)


def memcpy_s(size, blobs, repeat):
    src = bytes(size)
    dst = bytearray(size)

    def copy(_):
        for _ in range(blobs):
            dst[:] = src

    return timed(repeat, lambda: None, copy)


def blob_rows(a, run, par):
    for size in BLOB_SIZES:
        asked = max(a.blob_bytes // size, 1)
        for c in a.chunksize.split(","):
            c = c.strip()
            chunk = None if c == "auto" else int(c)
            blobs = capped(run.impl, chunk, asked, f"blobs of {size} B")
            make = lambda: [bytes([i % 256]) * size for i in range(blobs)]
            copy = memcpy_s(size, blobs, a.repeat)
            for direction, f in [("one_way", length), ("round_trip", identity)]:
                s = timed(a.repeat, make, lambda v: run.map(f, v, chunk))
                emit({"bench": "pool_blob", "impl": run.impl, "bytes": size, "direction": direction,
                      "processes": a.processes, "blobs": blobs, "chunksize": c, "seconds": s,
                      "gb_per_s": blobs * size / s / 1e9, "memcpy_gb_per_s": blobs * size / copy / 1e9,
                      "parallelism": par}, asked, blobs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=None, help="items per map (default 1,000,000; --quick 100,000)")
    ap.add_argument("--chunksize", default="1,1000,auto")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure, the median is printed (default 5; --quick 1)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--blob-bytes", type=int, default=None, help="bytes per blob size (default 256 MiB; --quick 32 MiB)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one run per figure")
    a = ap.parse_args()
    if a.tasks is None:
        a.tasks = 100_000 if a.quick else 1_000_000
    if a.repeat is None:
        a.repeat = 1 if a.quick else 5
    if a.blob_bytes is None:
        a.blob_bytes = (32 if a.quick else 256) << 20
    if a.repeat < 1 or a.tasks < 1:
        raise SystemExit("--repeat and --tasks must be at least 1")
    kinds = [k.strip() for k in a.kinds.split(",")]
    for k in kinds:
        if k not in KINDS:
            raise SystemExit(f"--kinds: unknown kind {k} (known: {','.join(KINDS)})")
    impls = [i.strip() for i in a.impls.split(",")]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f"--impls: unknown implementation {i} (known: {','.join(IMPLS)})")
    par = parallelism(a.processes)
    serial_cache = {}
    for impl in impls:
        run = Runner(impl, a.processes)
        try:
            for kind in (k for k in KINDS if k in kinds and k != "blob"):
                kind_rows(a, run, kind, par, serial_cache)
            if "blob" in kinds:
                blob_rows(a, run, par)
        finally:
            run.close()


if __name__ == "__main__":
    main()

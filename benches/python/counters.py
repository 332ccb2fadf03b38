"""The book's counters in Python (High Performance Python, multiprocessing chapter), for `make compare`.

Usage: python3 counters.py [--processes N] [--count M] [--json]
Prints one JSON object per variant with the same keys as `mproc counters --json`.
"""
import argparse
import fcntl
import json
import multiprocessing
import os
import shutil
import tempfile
import time


def file_work(filename, count, lock_filename, start):
    start.wait()
    for _ in range(count):
        lf = open(lock_filename, "a") if lock_filename else None
        if lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
        with open(filename, "r") as f:
            try:
                nbr = int(f.read())
            except ValueError:
                nbr = 0
        with open(filename, "w") as f:
            f.write(str(nbr + 1) + "\n")
        if lf:
            fcntl.flock(lf, fcntl.LOCK_UN)
            lf.close()


def value_nolock(value, count, start):
    start.wait()
    for _ in range(count):
        value.value += 1


def value_lock(value, count, start):
    start.wait()
    for _ in range(count):
        with value.get_lock():
            value.value += 1


def rawvalue_lock(value, lock, count, start):
    start.wait()
    for _ in range(count):
        with lock:
            value.value += 1


def run(variant, processes, count):
    if variant == "rawvalue-atomic":
        return None  # Python has no atomic fetch_add on a RawValue: rawvalue-atomic has no twin
    start = multiprocessing.Barrier(processes)
    tmp = tempfile.mkdtemp(prefix="mproc-compare-")
    try:
        return run_in(variant, processes, count, start, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_in(variant, processes, count, start, tmp):
    data = os.path.join(tmp, "count.txt")
    with open(data, "w") as f:
        f.write("0\n")
    if variant in ("file-nolock", "file-lock"):
        lock_file = os.path.join(tmp, "count.lock") if variant == "file-lock" else None
        target, args, read = file_work, (data, count, lock_file, start), lambda: int(open(data).read() or 0)
    elif variant == "value-nolock":
        v = multiprocessing.Value("q", 0)
        target, args, read = value_nolock, (v, count, start), lambda: v.value
    elif variant == "value-lock":
        v = multiprocessing.Value("q", 0)
        target, args, read = value_lock, (v, count, start), lambda: v.value
    elif variant == "rawvalue-lock":
        v = multiprocessing.RawValue("q", 0)
        lock = multiprocessing.Lock()
        target, args, read = rawvalue_lock, (v, lock, count, start), lambda: v.value
    t0 = time.perf_counter()
    procs = [multiprocessing.Process(target=target, args=args) for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    got = read()
    expected = processes * count
    return dict(variant=variant, processes=processes, count=count, expected=expected, got=got,
                lost=expected - got, seconds=seconds)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    for variant in ("file-nolock", "file-lock", "value-nolock", "value-lock", "rawvalue-atomic", "rawvalue-lock"):
        r = run(variant, a.processes, a.count)
        if r:
            print(json.dumps(r), flush=True)

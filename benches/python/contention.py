"""`mproc contention`'s Python twin, for `make compare`: N processes each repeatedly take a shared
lock, add 1 to a shared counter (a read and a write, exact only if the lock excludes) and release,
for a fixed time; throughput in Mops/s over all processes, the count checked exactly.

Primitives: multiprocessing.Lock (a POSIX semaphore underneath), Value.get_lock() (an RLock, also a
semaphore), and fcntl.flock on a file each process opens itself.

Usage: python3 contention.py [--processes 1,2] [--duration S] [--primitives mp-lock,value-lock,flock]
Prints one JSON object per primitive and process count.
"""
import argparse
import ctypes
import fcntl
import json
import multiprocessing
import os
import tempfile
import time

# mproc's row nearest to each Python primitive, for compare.py.
COUNTERPART = {"mp-lock": "posix-sem", "value-lock": "posix-sem", "flock": "flock"}


def work(kind, lock, value, counter, path, duration, start, ops, me):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if kind == "flock" else None
    start.wait()
    end = time.monotonic() + duration
    n = 0
    while True:
        if n % 64 == 0 and time.monotonic() >= end:  # a clock read every 64 operations
            break
        if kind == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
            counter.value += 1
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif kind == "value-lock":
            with value.get_lock():
                value.value += 1
        else:
            with lock:
                counter.value += 1
        n += 1
    ops[me] = n


def run(kind, processes, duration):
    lock = multiprocessing.Lock()
    value = multiprocessing.Value(ctypes.c_longlong, 0)  # with its own lock
    counter = multiprocessing.RawValue(ctypes.c_longlong, 0)
    ops = multiprocessing.RawArray(ctypes.c_longlong, processes)
    start = multiprocessing.Barrier(processes + 1)
    tmp = tempfile.mkdtemp(prefix="mproc-compare-")
    path = os.path.join(tmp, "contention.lock")
    procs = [multiprocessing.Process(target=work, args=(kind, lock, value, counter, path, duration, start, ops, i))
             for i in range(processes)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.monotonic()
    for p in procs:
        p.join()
    seconds = time.monotonic() - t0
    if os.path.exists(path):
        os.remove(path)
    os.rmdir(tmp)
    per = list(ops)
    expected = sum(per)
    counted = value.value if kind == "value-lock" else counter.value
    sq = sum(x * x for x in per)
    return {
        "primitive": kind,
        "counterpart": COUNTERPART[kind],
        "processes": processes,
        "mops": expected / seconds / 1e6,
        "expected": expected,
        "counted": counted,
        "lost": expected - counted,
        "ops_per_process": per,
        "jain": (expected * expected / (processes * sq)) if sq else 1.0,
        "seconds": seconds,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--duration", type=float, default=0.3)
    ap.add_argument("--primitives", default="mp-lock,value-lock,flock")
    a = ap.parse_args()
    for kind in a.primitives.split(","):
        for n in (int(x) for x in a.processes.split(",")):
            print(json.dumps(run(kind, n, a.duration)), flush=True)

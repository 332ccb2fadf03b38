"""The book's prime search through queues with poison pills: multiprocessing.Queue and a
Manager queue, one number per message or in batches.

Usage: python3 primes_queue.py [--range A..B] [--processes 2] [--batch 1,100] [--manager]
Prints one JSON object per (queue kind, batch): seconds and us_per_number.
"""
import argparse
import json
import math
import multiprocessing
import time

POISON = None


def check_prime(n):
    if n % 2 == 0:
        return n == 2
    for i in range(3, int(math.sqrt(n)) + 1, 2):
        if n % i == 0:
            return False
    return True


def worker(jobs, results):
    while True:
        batch = jobs.get()
        if batch is POISON:
            results.put(POISON)
            return
        results.put([n for n in batch if check_prime(n)])


def run(kind, lo, hi, processes, batch):
    manager = multiprocessing.Manager() if kind == "manager" else None
    make = manager.Queue if manager else multiprocessing.Queue
    jobs, results = make(), make()
    t = time.perf_counter()
    procs = [multiprocessing.Process(target=worker, args=(jobs, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    numbers = range(lo, hi)
    for i in range(0, len(numbers), batch):
        jobs.put(list(numbers[i:i + batch]))
    for _ in procs:
        jobs.put(POISON)
    primes, done = 0, 0
    while done < processes:
        r = results.get()
        if r is POISON:
            done += 1
        else:
            primes += len(r)
    for p in procs:
        p.join()
    secs = time.perf_counter() - t
    if manager:
        manager.shutdown()
    return secs, primes, len(numbers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--range", default="100000000..100100000")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--batch", default="1,100,10000")
    ap.add_argument("--manager", action="store_true")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.range.split(".."))
    kinds = ["queue", "manager"] if a.manager else ["queue"]
    for kind in kinds:
        for b in (int(x) for x in a.batch.split(",")):
            secs, primes, n = run(kind, lo, hi, a.processes, b)
            print(json.dumps({"kind": kind, "batch": b, "seconds": secs, "primes": primes,
                              "us_per_number": secs * 1e6 / n}), flush=True)


if __name__ == "__main__":
    main()

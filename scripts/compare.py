"""`make compare`: runs the Python programs under benches/python and mproc's versions in the same
run, and prints both figures with the ratio Python / mproc. Medians of --repeat runs."""
import argparse
import os
import json
import statistics
import subprocess
import sys


def lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def counters(mproc, processes, count, repeat):
    py, rs = {}, {}
    for _ in range(repeat):
        for r in lines([sys.executable, "benches/python/counters.py", "--processes", str(processes), "--count", str(count)]):
            py.setdefault(r["variant"], []).append(r["seconds"])
        for r in lines([mproc, "counters", "--processes", str(processes), "--count", str(count), "--barrier", "--json"]):
            rs.setdefault(r["variant"], []).append(r["seconds"])
    print(f"counters: {processes} processes x {count} increments, median of {repeat} runs (seconds, incl. process start-up)")
    print(f"{'variant':<16} {'python':>10} {'mproc':>10} {'python/mproc':>13}")
    for v, times in rs.items():
        m = statistics.median(times)
        if v in py:
            p = statistics.median(py[v])
            print(f"{v:<16} {p:>10.4f} {m:>10.4f} {p / m:>12.1f}x")
        else:
            print(f"{v:<16} {'-':>10} {m:>10.4f} {'-':>13}")


def pool(mproc, processes, tasks, repeat):
    args = ["--tasks", str(tasks), "--processes", str(processes), "--repeat", str(repeat), "--chunksize", "1,auto"]
    py = {r["chunksize"]: r for r in lines([sys.executable, "benches/python/pool_overhead.py"] + args)}
    rs = {r["chunksize"]: r for r in lines([mproc, "bench", "pool", "--json"] + args)}
    par = next(iter(rs.values()))["parallelism"]
    print(f"\npool overhead: {processes} processes, {tasks} trivial tasks, median of {repeat} (parallelism check {par:.2})")
    print(f"{'figure':<28} {'python':>12} {'mproc':>12} {'python/mproc':>13}")
    for c in rs:
        p, m = py[c]["per_task_us"], rs[c]["per_task_us"]
        print(f"{'per task, chunksize ' + c + ' (µs)':<28} {p:>12.3f} {m:>12.3f} {p / m:>12.1f}x")
    p, m = next(iter(py.values()))["startup_ms"], next(iter(rs.values()))["startup_ms"]
    print(f"{'start-up + 1 task + join (ms)':<28} {p:>12.2f} {m:>12.2f} {p / m:>12.1f}x")


def verify(mproc, processes, repeat, variants):
    common = ["--processes", str(processes), "--repeat", str(repeat), "--flag", ",".join(variants)]
    key = lambda r: (r["variant"], r["number"])
    print(f"\nverify-primes: {processes} processes, median of {repeat} (seconds); Python polls every 1000 (the book)", flush=True)
    py = {key(r): r for r in lines([sys.executable, "benches/python/verify_primes.py", "--check-every", "1000"] + common)}
    auto = {key(r): r for r in lines([mproc, "verify-primes", "--json", "--check-every", "auto"] + common) if r["variant"] != "serial"}
    book = {key(r): r for r in lines([mproc, "verify-primes", "--json", "--check-every", "1000"] + common) if r["variant"] != "serial"}
    print(f"{'variant':<11} {'number':>20} {'python':>9} {'mproc auto':>11} {'ratio':>7} {'mproc 1000':>11} {'ratio':>7}")
    for k, r in auto.items():
        p = py.get(k)
        b = book.get(k)
        if p and p["is_prime"] != r["is_prime"]:
            print(f"MISMATCH: {k}: python says {p['is_prime']}, mproc says {r['is_prime']}")
        pm = p["median_s"] if p else float("nan")
        ratio = lambda m: f"{pm / m:>6.1f}x" if p and m > 0 else f"{'-':>7}"
        bm = b["median_s"] if b else float("nan")
        print(f"{k[0]:<11} {k[1]:>20} {pm:>9.4f} {r['median_s']:>11.6f} {ratio(r['median_s'])} {bm:>11.6f} {ratio(bm)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mproc", default="target/release/mproc")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--only", default="counters,pool,verify", help="which tables")
    ap.add_argument("--variants", default="none,less-naive,manager,redis,rawvalue,mmap,mmap-redux")
    a = ap.parse_args()
    only = a.only.split(",")
    if "counters" in only:
        counters(a.mproc, a.processes, a.count, a.repeat)
    if "pool" in only:
        pool(a.mproc, a.processes, a.tasks, max(a.repeat, 5))
    if "verify" in only:
        variants = [v for v in a.variants.split(",") if v != "redis" or os.environ.get("MPROC_REDIS_URL")]
        verify(a.mproc, a.processes, a.repeat, variants)

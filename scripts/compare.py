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


def pool(mproc, processes, tasks, repeat, baseline=None):
    args = ["--tasks", str(tasks), "--processes", str(processes), "--repeat", str(repeat), "--chunksize", "1,auto"]
    py = {r["chunksize"]: r for r in lines([sys.executable, "benches/python/pool_overhead.py"] + args)}
    # Baseline and current binary alternate, so machine noise hits both alike.
    # Only the u64 rows (`bench: "pool"`); the other kinds have rows of their own. A baseline
    # older than `--kinds` prints only those rows anyway.
    ours = args + ["--kinds", "u64"]
    base = {r["chunksize"]: r for r in lines([baseline, "bench", "pool", "--json"] + args) if r.get("bench") == "pool"} if baseline else None
    rs = {r["chunksize"]: r for r in lines([mproc, "bench", "pool", "--json"] + ours) if r.get("bench") == "pool"}
    par = next(iter(rs.values()))["parallelism"]
    print(f"\npool overhead: {processes} processes, {tasks} trivial tasks, median of {repeat} (parallelism check {par:.2})")
    head = f"{'figure':<30} {'python':>10} {'mproc':>10} {'python/mproc':>13}"
    if base:
        head += f" {'before':>10} {'before/now':>11}"
    print(head)

    def row(label, p, m, b):
        line = f"{label:<30} {p:>10.3f} {m:>10.3f} {p / m:>12.1f}x"
        if b is not None:
            line += f" {b:>10.3f} {b / m:>10.2f}x"
        print(line)

    for c in rs:
        b = base[c]["per_task_us"] if base and c in base else None
        row(f"per task, chunksize {c} (µs)", py[c]["per_task_us"], rs[c]["per_task_us"], b)
    b = next(iter(base.values()))["startup_ms"] if base else None
    row("start-up + 1 task + join (ms)", next(iter(py.values()))["startup_ms"], next(iter(rs.values()))["startup_ms"], b)


def verify(mproc, processes, repeat, variants, baseline=None):
    common = ["--processes", str(processes), "--repeat", str(repeat), "--flag", ",".join(variants)]
    key = lambda r: (r["variant"], r["number"])
    print(f"\nverify-primes: {processes} processes, median of {repeat} (seconds); Python polls every 1000 (the book)", flush=True)
    py = {key(r): r for r in lines([sys.executable, "benches/python/verify_primes.py", "--check-every", "1000"] + common)}
    run = lambda exe, every: {key(r): r for r in lines([exe, "verify-primes", "--json", "--check-every", every] + common) if r["variant"] != "serial"}
    before = run(baseline, "auto") if baseline else {}
    auto = run(mproc, "auto")
    book = run(mproc, "1000")
    head = f"{'variant':<11} {'number':>20} {'python':>9} {'mproc auto':>11} {'ratio':>7} {'mproc 1000':>11} {'ratio':>7}"
    if baseline:
        head += f" {'before auto':>11} {'before/now':>10}"
    print(head)
    for k, r in auto.items():
        p = py.get(k)
        b = book.get(k)
        if p and p["is_prime"] != r["is_prime"]:
            print(f"MISMATCH: {k}: python says {p['is_prime']}, mproc says {r['is_prime']}")
        pm = p["median_s"] if p else float("nan")
        ratio = lambda m: f"{pm / m:>6.1f}x" if p and m > 0 else f"{'-':>7}"
        bm = b["median_s"] if b else float("nan")
        line = f"{k[0]:<11} {k[1]:>20} {pm:>9.4f} {r['median_s']:>11.6f} {ratio(r['median_s'])} {bm:>11.6f} {ratio(bm)}"
        if baseline and k in before:
            was = before[k]["median_s"]
            line += f" {was:>11.6f} {was / r['median_s']:>9.2f}x"
        print(line)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mproc", default="target/release/mproc")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--only", default="counters,pool,verify", help="which tables")
    ap.add_argument("--baseline", default=None, help="an older mproc binary to measure beside this one (before/after)")
    ap.add_argument("--variants", default="none,less-naive,manager,redis,rawvalue,mmap,mmap-redux")
    a = ap.parse_args()
    only = a.only.split(",")
    if "counters" in only:
        counters(a.mproc, a.processes, a.count, a.repeat)
    if "pool" in only:
        pool(a.mproc, a.processes, a.tasks, max(a.repeat, 5), a.baseline)
    if "verify" in only:
        variants = [v for v in a.variants.split(",") if v != "redis" or os.environ.get("MPROC_REDIS_URL")]
        verify(a.mproc, a.processes, a.repeat, variants, a.baseline)

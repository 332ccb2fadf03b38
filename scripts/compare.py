"""`make compare`: runs the Python programs under benches/python and mproc's versions in the same
run, and prints both figures with the ratio Python / mproc. Medians of --repeat runs."""
import argparse
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


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mproc", default="target/release/mproc")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    counters(a.mproc, a.processes, a.count, a.repeat)

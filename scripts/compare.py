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


def pool_kinds(mproc, processes, tasks, blob_bytes, repeat, py_repeat, baseline=None):
    """The item kinds of `mproc bench pool` beside Python's Pool.map and ProcessPoolExecutor.map of
    the same items (benches/python/pool_kinds.py): ns per item, or GB/s for byte blobs, with
    mproc's floors (a serial loop, an in-process rayon map where the binary has it, a memcpy)."""
    kinds = "serde,plain,struct64,string,range,slice,range-into,slice-into,blob"
    # A baseline older than the `_into` kinds rejects them: it runs the kinds it has.
    base_kinds = "serde,plain,struct64,string,range,slice,blob"
    # Python has no counterpart of `slice` (a shared array its workers read themselves); the
    # `range-into` row is set beside Python's map of the same range (its way to do that work).
    py_kinds = "serde,plain,struct64,string,range,blob"
    chunks = "1,1000,auto"
    args = ["--tasks", str(tasks), "--processes", str(processes), "--chunksize", chunks, "--blob-bytes", str(blob_bytes)]
    bench = lambda exe, r, ks=kinds: lines([exe, "bench", "pool", "--json", "--kinds", ks, "--repeat", str(r)] + args)
    kind_key = lambda r: (r["kind"], r["chunksize"])
    blob_key = lambda r: (r["bytes"], r["direction"], r["chunksize"])

    def split(rows):
        return ({kind_key(r): r for r in rows if r.get("bench") == "pool_kind"},
                {blob_key(r): r for r in rows if r.get("bench") == "pool_blob"})

    before = None
    if baseline:
        # A binary older than `--kinds` rejects the flag: then this table has no before column.
        try:
            lines([baseline, "bench", "pool", "--json", "--kinds", base_kinds, "--tasks", "10", "--chunksize", "auto",
                   "--repeat", "1", "--blob-bytes", str(1 << 20), "--processes", str(processes)])
            before = split(bench(baseline, repeat, base_kinds))
        except subprocess.CalledProcessError:
            print("pool kinds: the baseline binary has no --kinds; no before column", flush=True)
    ours = split(bench(mproc, repeat))
    py_rows = lines([sys.executable, "benches/python/pool_kinds.py", "--kinds", py_kinds, "--repeat", str(py_repeat)] + args)
    py = {impl: split([r for r in py_rows if r["impl"] == impl]) for impl in ("Pool.map", "ProcessPoolExecutor.map")}
    every = list(ours[0].values()) + list(ours[1].values())
    if not every:
        print("pool kinds: no figures")
        return
    par = every[0]["parallelism"]
    py_par = py_rows[0]["parallelism"] if py_rows else float("nan")
    # At chunk size 1 each side runs fewer items than asked (a task record per item is slow).
    fewer = {f"mproc {r['tasks']}" for r in ours[0].values() if r["chunksize"] == "1" and r["tasks"] != tasks}
    fewer |= {f"{r['impl']} {r.get('tasks', r.get('blobs'))}" for r in py_rows if "capped_from" in r}
    print(f"\npool kinds: map(identity) over {tasks} items, {processes} processes; mproc median of {repeat}, Python of {py_repeat}"
          f" (parallelism check mproc {par:.2}, python {py_par:.2})")
    if fewer:
        print(f"at chunk size 1 at most: {', '.join(sorted(fewer))} items or blobs (figures are per item or per byte)")
    ratio = lambda p, m: f"{p / m:>6.1f}x" if p and m else f"{'-':>7}"
    change = lambda b, m: f"{b / m:>9.2f}x" if b and m else f"{'-':>10}"
    num = lambda x, w, d: f"{x:>{w}.{d}f}" if x is not None else f"{'-':>{w}}"
    get = lambda rows, k, f: rows[k][f] if rows and k in rows and f in rows[k] else None

    head = (f"{'kind':<10} {'chunk':>5} {'mproc ns':>9} {'Pool.map':>9} {'ratio':>7} {'PPE.map':>9} {'ratio':>7}"
            f" {'serial':>7} {'rayon':>7}")
    if before:
        head += f" {'before':>9} {'before/now':>10}"
    print(head)
    for k, r in ours[0].items():
        m = r["ns_per_item"]
        pk = ("range", k[1]) if k[0] == "range-into" else k
        p = get(py["Pool.map"][0], pk, "ns_per_item")
        e = get(py["ProcessPoolExecutor.map"][0], pk, "ns_per_item")
        line = (f"{k[0]:<10} {k[1]:>5} {m:>9.2f} {num(p, 9, 1)} {ratio(p, m)} {num(e, 9, 1)} {ratio(e, m)}"
                f" {num(r.get('serial_ns_per_item'), 7, 2)} {num(r.get('rayon_ns_per_item'), 7, 2)}")
        if before:
            b = get(before[0], k, "ns_per_item")
            line += f" {num(b, 9, 2)} {change(b, m)}"
        print(line)

    size = lambda b: f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"
    head = (f"{'blob':<7} {'direction':<10} {'chunk':>5} {'mproc GB/s':>10} {'Pool.map':>9} {'ratio':>7} {'PPE.map':>9}"
            f" {'ratio':>7} {'memcpy':>7}")
    if before:
        head += f" {'before':>9} {'now/before':>10}"
    if ours[1]:
        print(f"byte blobs, {blob_bytes >> 20} MiB per size (GB/s of blob bytes; ratio = mproc / python; memcpy: mproc's"
              " single-threaded copy of the same blobs)")
        print(head)
    for k, r in ours[1].items():
        m = r["gb_per_s"]
        p = get(py["Pool.map"][1], k, "gb_per_s")
        e = get(py["ProcessPoolExecutor.map"][1], k, "gb_per_s")
        line = (f"{size(k[0]):<7} {k[1]:<10} {k[2]:>5} {m:>10.2f} {num(p, 9, 3)} {ratio(m, p)} {num(e, 9, 3)} {ratio(m, e)}"
                f" {num(r.get('memcpy_gb_per_s'), 7, 2)}")
        if before:
            b = get(before[1], k, "gb_per_s")
            line += f" {num(b, 9, 2)} {change(m, b)}"
        print(line)


def verify(mproc, processes, repeat, variants, baseline=None, numbers=None):
    common = ["--processes", str(processes), "--repeat", str(repeat), "--flag", ",".join(variants)]
    if numbers:
        common += ["--numbers", numbers]
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


def pi(mproc, processes, repeat, quick):
    lists_n, numpy_n = (1_000_000, 10_000_000) if quick else (10_000_000, 100_000_000)
    samples = 10 * numpy_n
    print(f"\npi: Python lists {lists_n:.0e} darts, numpy {numpy_n:.0e}, mproc {samples:.0e}; {processes} workers, median of {repeat} (ns per dart)", flush=True)
    py = lines([sys.executable, "benches/python/pi.py", "--samples-lists", str(lists_n), "--samples-numpy", str(numpy_n),
                "--workers", str(processes), "--repeat", str(repeat)])
    rs = lines([mproc, "pi", "--json", "--samples", str(samples), "--workers", f"1,{processes}", "--mode", "serial,threads,processes"])
    # mproc: the median per (mode, kernel, workers) over the repeats is not needed: one run of 10x the darts.
    ours = {(r["mode"], r["kernel"], r["workers"]): r["seconds"] * 1e9 / r["samples"] for r in rs}
    par = rs[0]["parallelism"] if rs else float("nan")
    print(f"{'python':<28} {'ns/dart':>9}   {'mproc (batched kernel)':<28} {'ns/dart':>9} {'python/mproc':>13}   (parallelism check {par:.2})")
    for r in py:
        key = (r["mode"], "batched", r["workers"])
        m = ours.get(key)
        label = f"{r['impl']} {r['mode']} x{r['workers']}"
        if m:
            print(f"{label:<28} {r['ns_per_dart']:>9.2f}   {key[0] + ' x' + str(key[2]):<28} {m:>9.3f} {r['ns_per_dart'] / m:>12.1f}x")
        else:
            print(f"{label:<28} {r['ns_per_dart']:>9.2f}")
    plain = ours.get(("processes", "plain", processes))
    if plain:
        print(f"{'':<40} mproc plain kernel, processes x{processes}: {plain:.3f} ns/dart")


def primes(mproc, processes, repeat, quick):
    rng = "100000000..100100000" if quick else "100000000..101000000"
    chunks = "1,10,100,1000,10000,auto"
    print(f"\nprimes in [{rng.replace('..', ', ')}): Pool.map at each chunk size, {processes} processes (seconds; Python once, mproc median of {repeat})", flush=True)
    py = lines([sys.executable, "benches/python/primes.py", "--range", rng, "--chunksizes", chunks, "--processes", str(processes)])
    rs = lines([mproc, "primes", "--json", "--serial", "--range", rng, "--chunksizes", chunks, "--processes", str(processes), "--repeat", str(repeat)])
    auto = rs[-1]["chunksize"] if rs else None  # the last setting is "auto", resolved to its number
    ours = {}
    for r in rs:
        c = r["chunksize"]
        ours["serial" if r["call"] == "serial" else str(c)] = r["median_s"]
    print(f"{'setting':<18} {'python':>9} {'mproc':>9} {'python/mproc':>13}")
    best_py, best_rs = float("inf"), float("inf")
    for r in py:
        key = "serial" if r["call"] == "serial" else r["chunksize"]
        m = ours.get(key) if key != "auto" else ours.get(str(auto))
        if r["call"] != "serial":
            best_py = min(best_py, r["seconds"])
        if m:
            if key != "serial":
                best_rs = min(best_rs, m)
            print(f"{'chunksize ' + key if key != 'serial' else 'serial':<18} {r['seconds']:>9.3f} {m:>9.4f} {r['seconds'] / m:>12.1f}x")
    if best_rs < float("inf"):
        print(f"{'best Pool setting':<18} {best_py:>9.3f} {best_rs:>9.4f} {best_py / best_rs:>12.1f}x")


def shared_array(mproc, processes, quick):
    rows, cols = (2000, 20000) if quick else (10000, 20000)
    print(f"\nshared array: {rows} x {cols} f64 ({rows * cols * 8 / 1e9:.2f} GB), {processes} processes, pid fill", flush=True)
    py = lines([sys.executable, "benches/python/shared_array.py", "--rows", str(rows), "--cols", str(cols), "--processes", str(processes)])
    rs = lines([mproc, "shared-array", "--json", "--rows", str(rows), "--cols", str(cols), "--processes", str(processes)])
    if not py or not rs:
        print("shared array: no figures")
        return
    p, m = py[0], rs[0]
    print(f"{'figure':<34} {'python':>10} {'mproc':>10} {'python/mproc':>13}")
    print(f"{'allocate the shared array (s)':<34} {p['alloc_s']:>10.4f} {m['alloc_s']:>10.6f} {p['alloc_s'] / max(m['alloc_s'], 1e-9):>12.0f}x")
    print(f"{'allocate + first fill (s)':<34} {p['alloc_s'] + p['fill_s']:>10.4f} {m['alloc_s'] + m['bytes'] / m['fill_gb_s'] / 1e9:>10.4f}")
    print(f"{'fill bandwidth, warm pages (GB/s)':<34} {p['fill_gb_s']:>10.2f} {m['warm_fill_gb_s']:>10.2f} {m['warm_fill_gb_s'] / p['fill_gb_s']:>12.1f}x (mproc/python)")
    print(f"mproc: one process filling a fresh private buffer: first touch {m['memset_gb_s']:.2f} GB/s, warm {m['warm_memset_gb_s']:.2f} GB/s;"
          f" the shared fill reaches {m['fill_gb_s'] / m['memset_gb_s']:.0%} / {m['warm_fill_gb_s'] / m['warm_memset_gb_s']:.0%} of it")
    growth = max((w["after"]["anon_kib"] - w["before"]["anon_kib"]) * 1024 / m["bytes"] for w in m["workers"])
    print(f"mproc: largest worker RssAnon growth {growth:.3%} of the array; system Shmem grew {m['system_shmem_growth_kib'] / 1024:.0f} MiB for a {m['bytes'] / 2**20:.0f} MiB array")


def primes_queue(mproc, processes, quick):
    rng = "100000000..100020000" if quick else "100000000..100100000"
    print(f"\nprimes through queues with poison pills, [{rng.replace('..', ', ')}), {processes} workers (µs per number)", flush=True)
    py = lines([sys.executable, "benches/python/primes_queue.py", "--range", rng, "--processes", str(processes), "--batch", "1,100", "--manager"])
    rs = lines([mproc, "primes-queue", "--json", "--range", rng, "--processes", str(processes), "--batch", "1,100"])
    ours = {r["batch"]: r["us_per_number"] for r in rs if not r["odd_only"]}
    print(f"{'python':<26} {'µs/number':>10}   {'mproc Queue':>12} {'python/mproc':>13}")
    for r in py:
        m = ours.get(r["batch"])
        label = f"{'mp.Queue' if r['kind'] == 'queue' else 'Manager queue'}, batch {r['batch']}"
        print(f"{label:<26} {r['us_per_number']:>10.2f}   {m:>12.3f} {r['us_per_number'] / m:>12.1f}x")


def contention(mproc, processes, repeat, quick):
    """Python's multiprocessing.Lock, Value.get_lock() and fcntl.flock beside mproc's nearest rows,
    measured the same way (N processes, a fixed time, a counter checked exactly). Medians of repeat."""
    duration = "0.1" if quick else "0.3"
    counts = f"1,{processes}"
    py, rs, par = {}, {}, []
    for _ in range(repeat):
        for r in lines([sys.executable, "benches/python/contention.py", "--processes", counts, "--duration", duration]):
            py.setdefault((r["primitive"], r["processes"]), []).append(r)
        for r in lines([mproc, "contention", "--json", "--no-death", "--primitives", "lock,robust,posix-sem,flock",
                        "--processes", counts, "--duration", duration]):
            rs.setdefault((r["primitive"], r["processes"]), []).append(r)
            par.append(r["parallelism"])
    med = lambda rows: statistics.median(r["mops"] for r in rows)
    exact = lambda rows: all(r["lost"] == 0 for r in rows)
    print(f"\ncontention: lock + increment + unlock for {duration} s, median of {repeat} (Mops/s over all processes; "
          f"parallelism check {statistics.median(par):.2f})")
    print(f"{'python':<12} {'n':>2} {'Mops/s':>8} {'exact':>6}   {'mproc':<10} {'Mops/s':>8} {'exact':>6} {'mproc/python':>13}")
    for (kind, n), rows in py.items():
        for ours in dict.fromkeys([rows[0]["counterpart"], "lock"]):
            m = rs.get((ours, n))
            if not m:
                continue
            print(f"{kind:<12} {n:>2} {med(rows):>8.3f} {str(exact(rows)):>6}   {ours:<10} {med(m):>8.3f} {str(exact(m)):>6} "
                  f"{med(m) / med(rows):>12.1f}x")


def queue(mproc, repeat, py_repeat, quick):
    """`mproc bench queue` (Queue through serde, its plain-data path, Pipe, with a Unix socket pair
    and ipc-channel measured by the same binary) beside Python's multiprocessing.Queue, Pipe and a
    Manager queue (benches/python/queue_bench.py), the same sizes in the same run. Each mproc
    transport's figure has its ratio against every peer: how many times faster mproc is."""
    sizes = "8,1024,65536" if quick else "8,1024,65536,1048576"
    # Round trips pinned (parent on CPU 0, echo on CPU 1) on both sides: "while both sides spin".
    ours = lines([mproc, "bench", "queue", "--json", "--pin", "--sizes", sizes, "--repeat", str(repeat)]
                 + (["--round-trips", "5000"] if quick else []))
    py_rows = lines([sys.executable, "benches/python/queue_bench.py", "--pin", "--sizes", sizes,
                     "--repeat", str(py_repeat)] + (["--quick"] if quick else []))
    mine = ("Queue", "Queue plain", "Pipe")
    peers = [("socketpair", "socket"), ("ipc-channel", "ipc-ch")]
    py_peers = [("multiprocessing.Queue", "mp.Queue"), ("Pipe", "mp.Pipe"), ("Manager.Queue", "Manager")]
    at = {(r["bench"], r["transport"], r["bytes"]): r for r in ours}
    py = {(r["bench"], r["impl"], r["bytes"]): r for r in py_rows}
    if not ours:
        print("queue: no figures")
        return
    par = ours[0]["parallelism"]
    py_par = py_rows[0]["parallelism"] if py_rows else float("nan")
    print(f"\nqueue: forked processes, round trips pinned to CPUs 0 and 1, mproc median of {repeat}, Python of {py_repeat}"
          f" (parallelism check mproc {par:.2}, python {py_par:.2}); ratio = how many times mproc is faster")
    num = lambda x, w, d: f"{x:>{w}.{d}f}" if x is not None and x == x else f"{'-':>{w}}"
    ratio = lambda x: f"{x:>8.1f}x" if x is not None and x == x else f"{'-':>9}"
    size = lambda b: f"{b >> 20} MiB" if b >= 1 << 20 else (f"{b >> 10} KiB" if b >= 1 << 10 else f"{b} B")
    every = peers + py_peers
    for field, label, lower_better, d in (("round_trip_us", "round trip µs", True, 2),
                                          ("items_per_s", "items/s 1->1", False, 0),
                                          ("items_per_s_2x2", "items/s 2->2", False, 0)):
        print(f"{label:<14} {'size':>7} {'mproc':>11}" + "".join(f" {short:>11} {'ratio':>9}" for _, short in every))
        for b in sorted({r["bytes"] for r in ours if r["bench"] == "queue"}):
            for t in mine:
                r = at.get(("queue", t, b))
                if not r:
                    continue
                m = r[field]
                line = f"{t:<14} {size(b):>7} {num(m, 11, d)}"
                for name, _ in every:
                    o = (at if (name, _) in peers else py).get(("queue", name, b), {}).get(field)
                    q = None
                    if o and m and o == o and m == m:
                        q = o / m if lower_better else m / o
                    line += f" {num(o, 11, d)} {ratio(q)}"
                print(line)
    floor = [(b, r["round_trip_us"]) for (bench, t, b), r in sorted(at.items()) if bench == "queue" and t == "atomic floor"]
    if floor:
        print("floor, one shared word handed back and forth in the same rounds (round trip µs): "
              + ", ".join(f"{num(f, 0, 3).strip()} ({size(b)} rounds)" for b, f in floor))
    wake = [(t, at.get(("queue_wake", t, 8), {}).get("wake_us")) for t in ("Queue", "Queue plain")]
    wake += [(n, py.get(("queue_wake", n, 8), {}).get("wake_us")) for n, _ in py_peers]
    print("blocked get woken by a put (µs, median): " + ", ".join(f"{t} {num(w, 0, 1).strip()}" for t, w in wake))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mproc", default="target/release/mproc")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=None,
                    help="items per map: pool 100,000 (--quick 20,000), pool-kinds 1,000,000 (--quick 100,000)")
    ap.add_argument("--only", default="counters,pool,pool-kinds,verify,pi,primes,primes-queue,shared-array,contention,queue", help="which tables")
    ap.add_argument("--quick", action="store_true", help="smaller sizes: the whole comparison in about two minutes")
    ap.add_argument("--baseline", default=None, help="an older mproc binary to measure beside this one (before/after)")
    ap.add_argument("--variants", default="none,less-naive,manager,redis,rawvalue,mmap,mmap-redux")
    a = ap.parse_args()
    only = a.only.split(",")
    if a.quick:
        a.repeat, a.count = 1, 500
    pool_tasks = a.tasks or (20_000 if a.quick else 100_000)
    kind_tasks = a.tasks or (100_000 if a.quick else 1_000_000)
    steps = [t for t in ["counters", "pool", "pool-kinds", "verify", "pi", "primes", "primes-queue", "shared-array", "contention", "queue"] if t in only]
    for i, table in enumerate(steps, 1):
        print(f"\n[{i}/{len(steps)}] {table}: running Python and mproc ...", flush=True)
        if table == "counters":
            counters(a.mproc, a.processes, a.count, a.repeat)
        elif table == "pool":
            pool(a.mproc, a.processes, pool_tasks, max(a.repeat, 5) if not a.quick else 3, a.baseline)
        elif table == "pool-kinds":
            # mproc's runs are short, Python's long: mproc gets the pool table's repeats, Python --repeat.
            blob_bytes = (32 if a.quick else 256) << 20
            pool_kinds(a.mproc, a.processes, kind_tasks, blob_bytes, max(a.repeat, 5) if not a.quick else 3, a.repeat, a.baseline)
        elif table == "verify":
            variants = [v for v in a.variants.split(",") if v != "redis" or os.environ.get("MPROC_REDIS_URL")]
            numbers = None
            if a.quick:  # one composite and one prime, four variants
                variants = [v for v in variants if v in ("none", "rawvalue", "mmap-redux", "manager")]
                numbers = "100109100129100369,100109100129100151"
            verify(a.mproc, a.processes, a.repeat, variants, a.baseline, numbers)
        elif table == "pi":
            pi(a.mproc, a.processes, a.repeat, a.quick)
        elif table == "primes":
            primes(a.mproc, a.processes, a.repeat, a.quick)
        elif table == "primes-queue":
            primes_queue(a.mproc, a.processes, a.quick)
        elif table == "shared-array":
            shared_array(a.mproc, a.processes, a.quick)
        elif table == "contention":
            contention(a.mproc, a.processes, a.repeat, a.quick)
        elif table == "queue":
            queue(a.mproc, max(a.repeat, 5) if not a.quick else 3, a.repeat, a.quick)

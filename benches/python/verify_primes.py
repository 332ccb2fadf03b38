"""The book's verify-primes experiment in Python (High Performance Python, multiprocessing chapter),
with the same variants, numbers and parameters as `mproc verify-primes`, for `make compare`.

Usage: python3 verify_primes.py [--numbers LIST] [--flag LIST|all] [--processes N] [--check-every K]
       [--serial-cutoff C] [--split interleaved|contiguous] [--repeat R] [--redis-url URL] [--serial]
Prints one JSON object per (variant, number) with the keys of `mproc verify-primes --json`.
Flags live where the book keeps them: a Manager Value, a Redis key, a RawValue, one byte of an
anonymous mmap (polled by countdown, or between blocks: "redux").
"""
import argparse
import json
import math
import mmap
import multiprocessing
import os
import statistics
import time

BOOK_NUMBERS = [112272535095295, 100109100129100369, 100109100129101027, 100109100129100151, 100109100129162907]
VARIANTS = ["none", "less-naive", "manager", "redis", "rawvalue", "mmap", "mmap-redux"]
FLAG_CLEAR, FLAG_SET = b"0", b"1"

# Inherited by the forked workers, as in the book.
RAW = None
SH_MEM = None
REDIS_URL = None
_redis = (None, None)  # (pid, connection): one connection per process, opened after fork


def redis_conn():
    global _redis
    if _redis[0] != os.getpid():
        import redis
        _redis = (os.getpid(), redis.Redis.from_url(REDIS_URL))
    return _redis[1]


def flag_ops(variant, manager_value):
    if variant == "rawvalue":
        return (lambda: RAW.value == 1), (lambda: setattr(RAW, "value", 1))
    if variant in ("mmap", "mmap-redux"):
        return (lambda: SH_MEM[0] == FLAG_SET[0]), (lambda: SH_MEM.__setitem__(0, FLAG_SET[0]))
    if variant == "manager":
        return (lambda: manager_value.value == FLAG_SET), (lambda: setattr(manager_value, "value", FLAG_SET))
    if variant == "redis":
        return (lambda: redis_conn().get("flag") == FLAG_SET), (lambda: redis_conn().set("flag", FLAG_SET))
    return None, None


def check_range(args):
    n, start, end, step, every, variant, manager_value = args
    is_set, set_flag = flag_ops(variant, manager_value)
    if is_set is None:
        for i in range(start, end + 1, step):
            if n % i == 0:
                return i
        return None
    if variant == "mmap-redux":
        for outer in range(start, end + 1, step * every):
            upper = min(end + 1, outer + step * every)
            for i in range(outer, upper, step):
                if n % i == 0:
                    set_flag()
                    return i
            if is_set():
                return None
        return None
    countdown = every
    for i in range(start, end + 1, step):
        countdown -= 1
        if not countdown:
            if is_set():
                return None
            countdown = every
        if n % i == 0:
            set_flag()
            return i
    return None


def split(n, frm, to, parts, how):
    if how == "interleaved":
        return [(n, frm + 2 * w, to, 2 * parts) for w in range(parts) if frm + 2 * w <= to]
    per = -(-((to - frm) // 2 + 1) // parts)
    out = []
    for w in range(parts):
        start = frm + 2 * per * w
        if start <= to:
            out.append((n, start, min(to, start + 2 * (per - 1)), 2))
    return out


def clear_flag(variant, manager_value):
    if variant == "rawvalue":
        RAW.value = 0
    elif variant in ("mmap", "mmap-redux"):
        SH_MEM[0] = FLAG_CLEAR[0]
    elif variant == "manager":
        manager_value.value = FLAG_CLEAR
    elif variant == "redis":
        redis_conn().set("flag", FLAG_CLEAR)


def check(n, variant, pool, a, manager_value):
    if n < 2:
        return False
    if n in (2, 3):
        return True
    if n % 2 == 0:
        return False
    frm = 3
    if variant != "none":
        cutoff = min(a.serial_cutoff, math.isqrt(n) + 1)
        for i in range(3, cutoff, 2):
            if n % i == 0:
                return False
        frm = max(3, a.serial_cutoff | 1)
    to = math.isqrt(n)
    if frm > to:
        return True
    clear_flag(variant, manager_value)
    tasks = [r + (a.check_every, variant, manager_value) for r in split(n, frm, to, a.processes, a.split)]
    return all(f is None for f in pool.map(check_range, tasks, chunksize=1))


def main():
    global RAW, SH_MEM, REDIS_URL
    ap = argparse.ArgumentParser()
    ap.add_argument("--numbers", default=",".join(map(str, BOOK_NUMBERS)))
    ap.add_argument("--flag", default="rawvalue")
    ap.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    ap.add_argument("--check-every", type=int, default=1000)
    ap.add_argument("--serial-cutoff", type=int, default=21)
    ap.add_argument("--split", default="interleaved", choices=["interleaved", "contiguous"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--redis-url", default=os.environ.get("MPROC_REDIS_URL", "redis://127.0.0.1:6379/"))
    ap.add_argument("--serial", action="store_true", help="also time a serial trial division (slow)")
    a = ap.parse_args()
    numbers = [int(x) for x in a.numbers.split(",")]
    variants = VARIANTS if a.flag == "all" else a.flag.split(",")
    REDIS_URL = a.redis_url
    RAW = multiprocessing.RawValue("b", 0)
    SH_MEM = mmap.mmap(-1, 1)
    manager = multiprocessing.Manager() if "manager" in variants else None
    manager_value = manager.Value("c", FLAG_CLEAR) if manager else None
    with multiprocessing.Pool(a.processes) as pool:
        for variant in variants:
            for n in numbers:
                times, answer = [], None
                for _ in range(a.repeat):
                    t = time.perf_counter()
                    answer = check(n, variant, pool, a, manager_value)
                    times.append(time.perf_counter() - t)
                print(json.dumps(dict(variant=variant, number=n, is_prime=answer, processes=a.processes,
                                      best_s=min(times), median_s=statistics.median(times), repeat=a.repeat,
                                      check_every=a.check_every)), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()

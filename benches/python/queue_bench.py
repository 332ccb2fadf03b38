"""Python's twin of `mproc bench queue --json`: ping-pong round trip, 1 -> 1 and 2 -> 2 throughput
for bytes items of each size, through `multiprocessing.Queue`, `multiprocessing.Pipe` and a
Manager queue (fork start method), and how soon a `get` blocked in the queue returns after a `put`.

Usage: python3 queue_bench.py [--sizes 8,1024,65536,1048576] [--round-trips N] [--repeat R]
                              [--impls multiprocessing.Queue,Pipe,Manager.Queue] [--quick]

Prints one JSON object per (impl, size) with the keys of `mproc bench queue --json` plus "impl":
  {"bench": "queue", "impl", "transport", "bytes", "round_trip_us", "items_per_s", "gb_per_s",
   "items_per_s_2x2", "gb_per_s_2x2", "wake_us", "parallelism"}
and one {"bench": "queue_wake", ...} row per impl with "wake_us". Each figure is the median of
--repeat runs. As in mproc's bench: a round trip is one message each way through an echo
process; throughput is items per second from one producer to one consumer, and 2 -> 2 is two
producers and two consumers sharing one queue (for Pipe, a point-to-point channel: two pairs).
Python is slow per item, so counts are smaller than mproc's (--round-trips, and at most 64 MiB
moved per figure; a Manager queue a quarter of that); figures are per item and per byte.
"""
import argparse
import json
import os
import multiprocessing as mp
import statistics
import time


def count(n, size):
    return max(50, min(n, (64 << 20) // max(size, 1)))


def parallelism():
    def spin(d, out=None):
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < d:
            n += 1
        if out is not None:
            with out.get_lock():
                out.value += n
        return n

    solo = spin(0.05)
    total = mp.Value("q", 0)
    ps = [mp.Process(target=spin, args=(0.05, total)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return total.value / solo


# --pin: the ping-pong's parent on CPU 0 and its echo on CPU 1, as `mproc bench queue --pin`.
PIN = False


def echo_cpu():
    if PIN:
        os.sched_setaffinity(0, {1})


def echo_q(a, b, n):
    echo_cpu()
    for _ in range(n):
        b.put(a.get())


def drain_q(q, n):
    for _ in range(n):
        q.get()


def fill_q(q, msg, n):
    for _ in range(n):
        q.put(msg)


def echo_pipe(c, n):
    echo_cpu()
    for _ in range(n):
        c.send_bytes(c.recv_bytes())


def drain_pipe(c, n):
    for _ in range(n):
        c.recv_bytes()


def pipe_pair(msg, n):
    r, w = mp.Pipe(duplex=False)
    p = mp.Process(target=drain_pipe, args=(r, n))
    p.start()
    for _ in range(n):
        w.send_bytes(msg)
    p.join()


class Impl:
    def __init__(self, name, manager=None):
        self.name, self.manager = name, manager

    def queue(self):
        return self.manager.Queue() if self.manager else mp.Queue()

    def ping_pong(self, size, n):
        if not PIN:
            return self.ping_pong_here(size, n)
        had = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})
        try:
            return self.ping_pong_here(size, n)
        finally:
            os.sched_setaffinity(0, had)

    def ping_pong_here(self, size, n):
        msg = b"x" * size
        if self.name == "Pipe":
            a, b = mp.Pipe()
            p = mp.Process(target=echo_pipe, args=(b, n))
            p.start()
            t = time.perf_counter()
            for _ in range(n):
                a.send_bytes(msg)
                a.recv_bytes()
        else:
            there, back = self.queue(), self.queue()
            p = mp.Process(target=echo_q, args=(there, back, n))
            p.start()
            there.put(msg)  # warm-up: the feeder thread and the echo are running
            back.get()
            n -= 1
            t = time.perf_counter()
            for _ in range(n):
                there.put(msg)
                back.get()
        s = time.perf_counter() - t
        p.join()
        return s / n

    def stream(self, size, n, k):
        msg, per = b"x" * size, n // k
        t = time.perf_counter()
        if self.name == "Pipe":
            ps = [mp.Process(target=pipe_pair, args=(msg, per)) for _ in range(k)]
        else:
            q = self.queue()
            ps = [mp.Process(target=drain_q, args=(q, per)) for _ in range(k)]
            ps += [mp.Process(target=fill_q, args=(q, msg, per)) for _ in range(k)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        return per * k / (time.perf_counter() - t)

    def wake(self, samples):
        q, lat = self.queue(), mp.Array("d", samples)

        if self.name == "Pipe":
            r, w = mp.Pipe(duplex=False)
            get, put = r.recv, w.send
        else:
            get, put = q.get, q.put

        def consumer():
            for i in range(samples):
                sent = get()
                lat[i] = (time.monotonic_ns() - sent) / 1e3

        p = mp.Process(target=consumer)
        p.start()
        for _ in range(samples):
            time.sleep(0.002)  # the consumer is blocked by now
            put(time.monotonic_ns())
        p.join()
        return statistics.median(lat[:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="8,1024,65536,1048576")
    ap.add_argument("--round-trips", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--impls", default="multiprocessing.Queue,Pipe,Manager.Queue")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pin", action="store_true", help="ping-pong on CPUs 0 and 1")
    a = ap.parse_args()
    global PIN
    PIN = a.pin
    mp.set_start_method("fork")
    if a.quick:
        a.round_trips, a.repeat = 500, 3
    par = parallelism()
    manager = mp.Manager() if "Manager.Queue" in a.impls else None
    impls = [Impl(n, manager if n == "Manager.Queue" else None) for n in a.impls.split(",")]
    med = lambda f, r: statistics.median(f() for _ in range(r))
    for size in [int(s) for s in a.sizes.split(",")]:
        for im in impls:
            n = count(a.round_trips, size)
            if im.manager:
                n = max(50, n // 4)
            rt = med(lambda: im.ping_pong(size, n), a.repeat)
            ips = med(lambda: im.stream(size, 4 * n, 1), a.repeat)
            ips2 = med(lambda: im.stream(size, 4 * n, 2), a.repeat)
            print(json.dumps({"bench": "queue", "impl": im.name, "transport": im.name, "bytes": size,
                              "round_trip_us": rt * 1e6, "items_per_s": ips, "gb_per_s": ips * size / 1e9,
                              "items_per_s_2x2": ips2, "gb_per_s_2x2": ips2 * size / 1e9, "wake_us": None,
                              "parallelism": par}), flush=True)
    for im in impls:
        w = med(lambda: im.wake(50), a.repeat)
        print(json.dumps({"bench": "queue_wake", "impl": im.name, "transport": im.name, "bytes": 8,
                          "round_trip_us": None, "items_per_s": None, "gb_per_s": None, "items_per_s_2x2": None,
                          "gb_per_s_2x2": None, "wake_us": w, "parallelism": par}), flush=True)


if __name__ == "__main__":
    main()

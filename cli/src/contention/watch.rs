//! `mproc contention watch ARENA`: live figures of a running program's mproc locks — `perf lock`
//! for the locks in a [`NamedArena`], with no root and no BPF.
//!
//! Every mproc lock keeps its acquisitions, contended acquisitions, total wait and a wait-time
//! histogram in its own shared memory (`Lock::stats`); the watcher opens the program's arena by
//! name, finds every object that has a lock (a `Lock`, `RLock`, `Value`, `Array`, `Condition`,
//! `Queue`, …), and every interval reads each lock's figures and prints what changed: operations
//! per second, the contended share, the mean wait and the interval's wait percentiles (from the
//! difference of two histograms). It only reads: the program being watched pays nothing more.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use mproc::{LockStats, NamedArena};
use serde::Serialize;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// The named arena (mproc::NamedArena) of the program to watch: its locks are listed and
    /// read. `mproc shm list` shows the arenas there are.
    arena: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Stop after this many refreshes (default: until interrupted, or until the program's
    /// creator process is gone).
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per lock per refresh, instead of a table.
    #[arg(long)]
    json: bool,
}

/// One lock's figures over one interval.
#[derive(Serialize)]
struct Line {
    bench: &'static str,
    /// Seconds since the watcher started.
    t: f64,
    arena: String,
    object: String,
    kind: String,
    /// Totals since the lock was made (or its stats reset).
    acquisitions: u64,
    contended: u64,
    /// Over this interval.
    acquisitions_per_s: f64,
    contended_pct: f64,
    /// Mean wait of this interval's waits, timed waits that gave up included (the percentiles
    /// are of the waits that got the lock).
    wait_ns_mean: Option<f64>,
    wait_ns_p50: Option<u64>,
    wait_ns_p99: Option<u64>,
    wait_ns_max: Option<u64>,
    /// Timed waits that gave up, in total since the lock was made.
    timeouts: u64,
}

fn ns(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// What changed from `before` to `now` for one lock, over `secs`.
fn line(t: f64, arena: &str, object: &str, kind: &str, before: &LockStats, now: &LockStats, secs: f64) -> Line {
    let acq = now.acquisitions.saturating_sub(before.acquisitions);
    let contended = now.contended.saturating_sub(before.contended);
    let h = now.waits.since(&before.waits);
    // The histogram holds the waits that got the lock; `wait` and `contended` also count timed
    // waits that gave up.
    let waited = now.wait.saturating_sub(before.wait);
    let won = h.count();
    Line {
        bench: "contention_watch",
        t,
        arena: arena.to_owned(),
        object: object.to_owned(),
        kind: kind.to_owned(),
        acquisitions: now.acquisitions,
        contended: now.contended,
        acquisitions_per_s: if secs > 0.0 { acq as f64 / secs } else { 0.0 },
        contended_pct: if acq == 0 { 0.0 } else { 100.0 * won as f64 / acq as f64 },
        wait_ns_mean: (contended > 0).then(|| waited.as_nanos() as f64 / contended as f64),
        wait_ns_p50: ns(h.percentile(0.5)),
        wait_ns_p99: ns(h.percentile(0.99)),
        wait_ns_max: ns(h.max()),
        timeouts: now.timeouts,
    }
}

fn fmt_ns(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n < 10_000 => format!("{n} ns"),
        Some(n) if n < 10_000_000 => format!("{:.1} µs", n as f64 / 1e3),
        Some(n) => format!("{:.1} ms", n as f64 / 1e6),
    }
}

pub fn run(w: WatchArgs) -> crate::Result<()> {
    if !(w.interval.is_finite() && w.interval >= 0.01 && w.interval <= 3600.0) {
        return Err(format!("--interval: {} is not a number of seconds in [0.01, 3600]", w.interval).into());
    }
    let arena = NamedArena::open(&w.arena)?;
    let creator = arena.creator_pid();
    let tty = !w.json && std::io::stdout().is_terminal();
    let start = Instant::now();
    // The locks seen so far, with the figures last read.
    let mut seen: Vec<(String, String, mproc::Lock, LockStats)> = Vec::new();
    let mut last = Instant::now();
    let mut n = 0u64;
    loop {
        // Objects added since the last refresh join the table.
        for o in arena.objects()? {
            if o.kind.has_lock() && !seen.iter().any(|(name, ..)| *name == o.name) {
                let lock = arena.lock_of(&o.name)?;
                let s = lock.stats();
                seen.push((o.name.clone(), o.type_label(), lock, s));
            }
        }
        if n > 0 || w.count == Some(0) {
            let now = Instant::now();
            // `--count 0` prints the totals at once: no interval, no rates.
            let secs = if n == 0 { 0.0 } else { now.duration_since(last).as_secs_f64().max(1e-9) };
            last = now;
            let t = start.elapsed().as_secs_f64();
            let mut out = std::io::stdout().lock();
            if tty {
                // Home and clear, as top does.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            if !w.json {
                writeln!(
                    out,
                    "mproc contention watch {} (creator pid {creator}), every {:.2} s, t = {t:.1} s",
                    w.arena, w.interval
                )?;
                writeln!(
                    out,
                    "{:<20} {:<22} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "object",
                    "kind",
                    "acquisitions",
                    "acquisitions/s",
                    "contended",
                    "wait mean",
                    "wait p50",
                    "wait p99",
                    "wait max"
                )?;
            }
            for (name, kind, lock, before) in &mut seen {
                let s = lock.stats();
                let l = line(t, &w.arena, name, kind, before, &s, secs);
                *before = s;
                if w.json {
                    writeln!(out, "{}", serde_json::to_string(&l).expect("plain struct serialises"))?;
                } else {
                    writeln!(
                        out,
                        "{:<20} {:<22} {:>12} {:>14.0} {:>9.1}% {:>10} {:>10} {:>10} {:>10}",
                        l.object,
                        l.kind,
                        l.acquisitions,
                        l.acquisitions_per_s,
                        l.contended_pct,
                        fmt_ns(l.wait_ns_mean.map(|m| m as u64)),
                        fmt_ns(l.wait_ns_p50),
                        fmt_ns(l.wait_ns_p99),
                        fmt_ns(l.wait_ns_max)
                    )?;
                }
            }
            if seen.is_empty() && !w.json {
                writeln!(out, "(no object with a lock in this arena yet)")?;
            }
            out.flush()?;
            if w.count.is_some_and(|c| n >= c) || w.count == Some(0) {
                return Ok(());
            }
        }
        n += 1;
        if creator > 0 && !std::path::Path::new(&format!("/proc/{creator}")).exists() {
            if !w.json {
                println!("the arena's creator (pid {creator}) is gone; stopping");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(w.interval));
    }
}

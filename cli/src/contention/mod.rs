//! `mproc contention`: N forked processes hammer one shared lock; every primitive side by side.
//!
//! Per primitive and process count, two passes over the same primitive: an uninstrumented one
//! (throughput, per-process op counts, context switches) and a timed one (a clock read before the
//! attempt, after the acquisition and before the release: wait and hold histograms kept in shared
//! memory per process, contended acquisitions found by a failed try first, owner hand-overs).
//! The critical section adds 1 to a plain shared counter (a load and a store), which ends exact
//! only if the lock excludes. Then, once per primitive, a holder is SIGKILLed inside its critical
//! section and a waiting process reports what it saw.

mod hist;
mod prims;
pub(crate) mod sys;
mod watch;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use mproc::{Barrier, Process, Segment, ShmSafe, monotonic_ns};
use serde::Serialize;

use hist::{Hist, Summary};
use prims::{Counting, Got, InShm, Primitive};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    sub: Option<Sub>,
    /// Comma-separated primitives, or `all`: lock, robust, pthread, raw-sync, futex, spin, ticket,
    /// flock, fs2, fcntl, ofd, posix-sem, sysv-sem, atomic, padded.
    #[arg(long, default_value = "all")]
    primitives: String,
    /// Comma-separated process counts.
    #[arg(long, default_value = "1,2,4")]
    processes: String,
    /// Critical-section length: busy work of about N ns while holding the lock.
    #[arg(long, default_value_t = 0, conflicts_with = "cs_lines")]
    cs_ns: u64,
    /// Critical section: read-modify-write K more cache lines while holding the lock (at most 64).
    #[arg(long, default_value_t = 0)]
    cs_lines: usize,
    /// Non-critical work between operations: about N ns of busy work.
    #[arg(long, default_value_t = 0)]
    think_ns: u64,
    /// Seconds per pass (each primitive and process count runs two passes).
    #[arg(long, default_value_t = 0.3, conflicts_with = "ops")]
    duration: f64,
    /// Operations per process per pass, instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Pin process i to CPU i mod the CPU count.
    #[arg(long)]
    pin: bool,
    /// How long the others may wait after a holder is killed before they count as hung.
    #[arg(long, default_value_t = 500)]
    death_wait_ms: u64,
    /// Skip the holder-death column.
    #[arg(long)]
    no_death: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Write throughput.svg (throughput against processes) and wait-cdf.svg (wait-time CDF at 2
    /// processes) into DIR.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Live figures of a running program's mproc locks (those in its named arena): acquisitions
    /// per second, contended share, wait time, refreshed like top (`--json` for scripts).
    Watch(watch::WatchArgs),
}

/// A primitive: its name on the command line, what it is, and the function that implements it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Lock,
    Robust,
    Pthread,
    RawSync,
    Futex,
    Spin,
    Ticket,
    Flock,
    Fs2,
    Fcntl,
    Ofd,
    PosixSem,
    SysvSem,
    Atomic,
    Padded,
}

impl Kind {
    const ALL: [Kind; 15] = [
        Kind::Lock,
        Kind::Robust,
        Kind::Pthread,
        Kind::RawSync,
        Kind::Futex,
        Kind::Spin,
        Kind::Ticket,
        Kind::Flock,
        Kind::Fs2,
        Kind::Fcntl,
        Kind::Ofd,
        Kind::PosixSem,
        Kind::SysvSem,
        Kind::Atomic,
        Kind::Padded,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Robust => "robust",
            Kind::Pthread => "pthread",
            Kind::RawSync => "raw-sync",
            Kind::Futex => "futex",
            Kind::Spin => "spin",
            Kind::Ticket => "ticket",
            Kind::Flock => "flock",
            Kind::Fs2 => "fs2",
            Kind::Fcntl => "fcntl",
            Kind::Ofd => "ofd",
            Kind::PosixSem => "posix-sem",
            Kind::SysvSem => "sysv-sem",
            Kind::Atomic => "atomic",
            Kind::Padded => "padded",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Lock => "mproc Lock: robust process-shared pthread mutex + owner pid + stats",
            Kind::Robust => "bare robust process-shared pthread mutex",
            Kind::Pthread => "process-shared pthread mutex, not robust",
            Kind::RawSync => "raw_sync crate's Mutex (unmaintained, not robust)",
            Kind::Futex => "futex lock, 3 states, shared futex (no PRIVATE flag)",
            Kind::Spin => "TTAS spinlock, crossbeam Backoff (spins, then yields)",
            Kind::Ticket => "ticket lock (FIFO), pure spinning",
            Kind::Flock => "mproc FileLock: flock, one descriptor per process",
            Kind::Fs2 => "fs2 crate's lock_exclusive: flock (unmaintained; shadowed by std's File::lock)",
            Kind::Fcntl => "fcntl F_SETLKW record lock (owned by the process)",
            Kind::Ofd => "fcntl F_OFD_SETLKW open-file-description lock",
            Kind::PosixSem => "POSIX semaphore: sem_init pshared, in shared memory",
            Kind::SysvSem => "System V semaphore: semop with SEM_UNDO",
            Kind::Atomic => "no lock: one shared AtomicU64 fetch_add",
            Kind::Padded => "no lock: per-process padded counters, summed at the end",
        }
    }

    fn implemented_by(self) -> &'static str {
        match self {
            Kind::Lock => "mproc::Lock::lock",
            Kind::Robust => "mproc::raw::RobustMutex::lock",
            Kind::Pthread => "contention::sys::PlainMutex::lock",
            Kind::RawSync => "raw_sync::locks::Mutex::lock",
            Kind::Futex => "contention::prims::FutexLock::run",
            Kind::Spin => "contention::prims::SpinLock::run",
            Kind::Ticket => "contention::prims::TicketLock::run",
            Kind::Flock => "mproc::FileLock::lock",
            Kind::Fs2 => "fs2::FileExt::lock_exclusive",
            Kind::Fcntl | Kind::Ofd => "contention::sys::record_lock",
            Kind::PosixSem => "contention::sys::PosixSem::wait",
            Kind::SysvSem => "contention::sys::SysvSem::wait",
            Kind::Atomic => "AtomicU64::fetch_add",
            Kind::Padded => "contention::Slot::own (CachePadded<AtomicU64>)",
        }
    }

    fn parse_list(list: &str) -> crate::Result<Vec<Kind>> {
        if list.trim() == "all" {
            return Ok(Kind::ALL.to_vec());
        }
        let mut out = Vec::new();
        for s in list.split(',').map(str::trim) {
            let k = Kind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("--primitives: unknown primitive {s:?} (known: {}, or all)", names.join(", "))
            })?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// A lock file that the process which made it removes.
struct TempFile(PathBuf, u32);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        let me = std::process::id();
        TempFile(std::env::temp_dir().join(format!("mproc-contention-{me}-{tag}.lock")), me)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if std::process::id() == self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Builds `$kind`'s primitive as `$p` and evaluates `$body` with it, so that generic code is
/// compiled once per primitive.
macro_rules! with_primitive {
    ($kind:expr, $file:expr, |$p:ident| $body:expr) => {{
        let file: &Path = $file;
        let s = |e: mproc::Error| e.to_string();
        match $kind {
            Kind::Lock => {
                let $p = prims::MprocLock(mproc::Lock::new().map_err(s)?);
                $body
            }
            Kind::Robust => {
                let $p = prims::Robust(mproc::raw::RobustMutex::new_shared().map_err(s)?);
                $body
            }
            Kind::Pthread => {
                let $p = prims::Plain::new()?;
                $body
            }
            Kind::RawSync => {
                let $p = prims::RawSync::new()?;
                $body
            }
            Kind::Futex => {
                let $p = prims::FutexLock(InShm::zeroed().map_err(s)?);
                $body
            }
            Kind::Spin => {
                let $p = prims::SpinLock(InShm::zeroed().map_err(s)?);
                $body
            }
            Kind::Ticket => {
                let $p = prims::TicketLock(InShm::zeroed().map_err(s)?);
                $body
            }
            Kind::Flock => {
                let $p = prims::Flock(mproc::FileLock::new(file));
                $body
            }
            Kind::Fs2 => {
                let $p = prims::Fs2 { path: file.to_owned(), file: OnceCell::new() };
                $body
            }
            Kind::Fcntl | Kind::Ofd => {
                let kind = if $kind == Kind::Fcntl { sys::RecordLock::Posix } else { sys::RecordLock::Ofd };
                let $p = prims::Record { kind, path: file.to_owned(), file: OnceCell::new() };
                $body
            }
            Kind::PosixSem => {
                let $p = prims::PosixSemLock::new()?;
                $body
            }
            Kind::SysvSem => {
                let $p = prims::SysvSemLock(sys::SysvSem::new(1).map_err(|e| e.to_string())?);
                $body
            }
            Kind::Atomic => {
                let $p = prims::Atomic;
                $body
            }
            Kind::Padded => {
                let $p = prims::PerProcess;
                $body
            }
        }
    }};
}

/// At most this many extra cache lines in the critical section.
const MAX_LINES: usize = 64;

/// What the parent and its children share for one pass.
#[repr(C)]
struct Ctl {
    stop: AtomicU32,
    /// Holder death: the victim holds the lock.
    holding: AtomicU32,
    /// Holder death: the survivor is about to take it.
    ready: AtomicU32,
    /// Holder death: 1 acquired, 2 told the owner died.
    got: AtomicU32,
    /// Holder death: the survivor took it a second time.
    again: AtomicU32,
    t_acquired: AtomicU64,
}

/// The critical section's data: written only under the lock (plain load + store).
#[repr(C)]
struct Counter {
    value: AtomicU64,
    last_owner: AtomicU64,
    handovers: AtomicU64,
}

/// One process's figures, written by that process only.
#[repr(C)]
struct Slot {
    ops: AtomicU64,
    contended: AtomicU64,
    switches: AtomicU64,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    /// The `padded` primitive's counter (and its extra lines).
    own: CachePadded<AtomicU64>,
    own_lines: [CachePadded<AtomicU64>; MAX_LINES],
    wait: CachePadded<Hist>,
    hold: CachePadded<Hist>,
}

// SAFETY: atomics, padded atomics and histograms of atomics only; zero is the valid start state;
// no pointers, no Drop. (The same holds for `Counter` and `Slot`.)
unsafe impl ShmSafe for Ctl {}
// SAFETY: see `Ctl`.
unsafe impl ShmSafe for Counter {}
// SAFETY: see `Ctl`.
unsafe impl ShmSafe for Slot {}

struct Shared {
    ctl: InShm<CachePadded<Ctl>>,
    counter: InShm<CachePadded<Counter>>,
    lines: InShm<[CachePadded<AtomicU64>; MAX_LINES]>,
    slots: Segment,
    barrier: Barrier,
}

const SLOT: usize = std::mem::size_of::<CachePadded<Slot>>();

impl Shared {
    fn new(n: usize) -> mproc::Result<Shared> {
        Ok(Shared {
            ctl: InShm::zeroed()?,
            counter: InShm::zeroed()?,
            lines: InShm::zeroed()?,
            slots: Segment::anonymous(n * SLOT)?,
            barrier: Barrier::new(n as u32 + 1)?,
        })
    }

    fn slot(&self, i: usize) -> &Slot {
        self.slots.get::<CachePadded<Slot>>(i * SLOT).expect("the segment was sized for every slot")
    }
}

/// The run's settings, copied into every child by the fork.
struct Cfg {
    cs_spins: u64,
    think_spins: u64,
    cs_lines: usize,
    ops: Option<u64>,
    duration: Duration,
    pin: bool,
    cpus: usize,
    death_wait: Duration,
}

#[inline]
fn spin(iters: u64) {
    for i in 0..iters {
        std::hint::black_box(i);
    }
}

/// Iterations of [`spin`] per nanosecond on this machine (best of three short timings).
fn spins_per_ns() -> f64 {
    let n = 2_000_000u64;
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            spin(n);
            t.elapsed().as_nanos().max(1) as f64
        })
        .fold(f64::INFINITY, f64::min);
    n as f64 / best
}

/// The critical section: the counter, the extra lines, the busy work.
#[inline(always)]
fn critical<P: Primitive>(sh: &Shared, slot: &Slot, cfg: &Cfg) {
    let plain = |c: &AtomicU64| c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    match P::COUNTING {
        Counting::Plain => {
            plain(&sh.counter.value);
            sh.lines.iter().take(cfg.cs_lines).for_each(|l| plain(l));
        }
        Counting::Atomic => {
            sh.counter.value.fetch_add(1, Relaxed);
            sh.lines.iter().take(cfg.cs_lines).for_each(|l| {
                l.fetch_add(1, Relaxed);
            });
        }
        Counting::PerProcess => {
            plain(&slot.own);
            slot.own_lines.iter().take(cfg.cs_lines).for_each(|l| plain(l));
        }
    }
    spin(cfg.cs_spins);
}

/// One child's loop.
fn worker<P: Primitive>(p: &P, sh: &Shared, cfg: &Cfg, me: usize, timed: bool) -> Result<(), String> {
    if cfg.pin {
        sys::pin_to(me % cfg.cpus).map_err(|e| e.to_string())?;
    }
    p.prepare()?;
    let slot = sh.slot(me);
    let stop = &sh.ctl.stop;
    let id = me as u64 + 1;
    sh.barrier.wait_timeout(Duration::from_secs(30)).map_err(|e| format!("start barrier: {e}"))?;
    let switches = sys::context_switches();
    slot.start_ns.store(monotonic_ns(), Relaxed);
    let (mut ops, mut contended) = (0u64, 0u64);
    loop {
        match cfg.ops {
            Some(n) if ops >= n => break,
            None if stop.load(Relaxed) != 0 => break,
            _ => {}
        }
        if timed {
            let t0 = monotonic_ns();
            let (mut t1, mut t2) = (0, 0);
            let c = p.run(true, |_| {
                t1 = monotonic_ns();
                critical::<P>(sh, slot, cfg);
                if P::COUNTING == Counting::Plain {
                    let last = &sh.counter.last_owner;
                    if last.load(Relaxed) != id {
                        last.store(id, Relaxed);
                        let h = &sh.counter.handovers;
                        h.store(h.load(Relaxed) + 1, Relaxed);
                    }
                }
                t2 = monotonic_ns();
            })?;
            contended += u64::from(c);
            slot.wait.record(t1 - t0);
            slot.hold.record(t2 - t1);
        } else {
            p.run(false, |_| critical::<P>(sh, slot, cfg))?;
        }
        spin(cfg.think_spins);
        ops += 1;
    }
    slot.end_ns.store(monotonic_ns(), Relaxed);
    slot.switches.store(sys::context_switches() - switches, Relaxed);
    slot.ops.store(ops, Relaxed);
    slot.contended.store(contended, Relaxed);
    Ok(())
}

/// Waits at most `limit` for `p`: its status, or `None` if it is still running.
fn timed_join(p: &mut Process, limit: Duration) -> Result<Option<mproc::ExitStatus>, String> {
    match p.join_timeout(limit) {
        Ok(st) => Ok(Some(st)),
        Err(mproc::Error::Timeout) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Joins every child, killing them all if one does not end in time.
fn join_all(procs: &mut [Process], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut failure = None;
    for p in procs.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        match timed_join(p, left)? {
            Some(st) if st.success() => {}
            Some(st) => failure = failure.or(Some(format!("a worker process ended badly: {st}"))),
            None => failure = failure.or(Some(format!("the workers did not finish within {limit:?}"))),
        }
    }
    if let Some(f) = failure {
        for p in procs.iter_mut() {
            let _ = p.kill();
            let _ = p.join();
        }
        return Err(f);
    }
    Ok(())
}

/// What one pass measured.
struct Pass {
    ops: Vec<u64>,
    switches: u64,
    contended: u64,
    seconds: f64,
    expected: u64,
    counted: u64,
    lines_exact: bool,
    handovers: u64,
    wait: Summary,
    hold: Summary,
}

fn pass<P: Primitive>(p: &P, cfg: &Cfg, n: usize, timed: bool) -> Result<Pass, String> {
    let sh = Shared::new(n).map_err(|e| e.to_string())?;
    let mut procs = Vec::with_capacity(n);
    for me in 0..n {
        let (sh, p) = (&sh, p);
        match Process::spawn(move || worker(p, sh, cfg, me, timed)) {
            Ok(c) => procs.push(c),
            Err(e) => {
                drop(procs); // kills and reaps the ones started
                return Err(e.to_string());
            }
        }
    }
    if let Err(e) = sh.barrier.wait_timeout(Duration::from_secs(30)) {
        drop(procs);
        return Err(format!("the workers did not start: {e}"));
    }
    let limit = match cfg.ops {
        Some(_) => Duration::from_secs(300),
        None => {
            std::thread::sleep(cfg.duration);
            sh.ctl.stop.store(1, Relaxed);
            Duration::from_secs(30)
        }
    };
    join_all(&mut procs, limit)?;
    let slots: Vec<&Slot> = (0..n).map(|i| sh.slot(i)).collect();
    let ops: Vec<u64> = slots.iter().map(|s| s.ops.load(Relaxed)).collect();
    let expected: u64 = ops.iter().sum();
    let start = slots.iter().map(|s| s.start_ns.load(Relaxed)).min().unwrap_or(0);
    let end = slots.iter().map(|s| s.end_ns.load(Relaxed)).max().unwrap_or(0);
    let (counted, lines_exact) = match P::COUNTING {
        Counting::PerProcess => (
            slots.iter().map(|s| s.own.load(Relaxed)).sum(),
            (0..cfg.cs_lines).all(|j| slots.iter().map(|s| s.own_lines[j].load(Relaxed)).sum::<u64>() == expected),
        ),
        _ => (sh.counter.value.load(Relaxed), sh.lines.iter().take(cfg.cs_lines).all(|l| l.load(Relaxed) == expected)),
    };
    let (mut wait, mut hold) = (Summary::empty(), Summary::empty());
    for s in &slots {
        wait.merge(&s.wait.snapshot());
        hold.merge(&s.hold.snapshot());
    }
    Ok(Pass {
        ops,
        switches: slots.iter().map(|s| s.switches.load(Relaxed)).sum(),
        contended: slots.iter().map(|s| s.contended.load(Relaxed)).sum(),
        seconds: end.saturating_sub(start) as f64 / 1e9,
        expected,
        counted,
        lines_exact,
        handovers: sh.counter.handovers.load(Relaxed),
        wait,
        hold,
    })
}

/// Percentiles of a histogram, in ns.
#[derive(Serialize, Clone, Copy)]
struct Pcts {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn pcts(s: &Summary) -> Option<Pcts> {
    Some(Pcts {
        p50: s.quantile(0.5)?,
        p90: s.quantile(0.9)?,
        p99: s.quantile(0.99)?,
        p999: s.quantile(0.999)?,
        max: s.max,
    })
}

#[derive(Serialize)]
struct Row {
    row: &'static str,
    primitive: &'static str,
    what: &'static str,
    implemented_by: &'static str,
    processes: usize,
    /// Uninstrumented pass.
    mops: f64,
    /// Timed pass (three clock reads per operation).
    mops_timed: f64,
    /// How much slower the timed pass ran, in percent of the uninstrumented throughput.
    instrumentation_cost_pct: f64,
    expected: u64,
    counted: u64,
    /// Over both passes; 0 when the lock excludes.
    lost: i64,
    exact: bool,
    /// `None` for the primitives that are not locks.
    wait_ns: Option<Pcts>,
    hold_ns: Option<Pcts>,
    contended_fraction: Option<f64>,
    handovers_per_op: Option<f64>,
    context_switches_per_op: f64,
    ops_per_process: Vec<u64>,
    jain: f64,
    min_over_max: f64,
    seconds: f64,
    cs_ns: u64,
    cs_lines: usize,
    think_ns: u64,
    pinned: bool,
    parallelism: f64,
}

/// Jain's fairness index: 1 when every process did the same, 1/n when one did everything.
fn jain(x: &[u64]) -> f64 {
    let s: f64 = x.iter().map(|&v| v as f64).sum();
    let q: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    if q == 0.0 { 1.0 } else { s * s / (x.len() as f64 * q) }
}

fn measure<P: Primitive>(k: Kind, p: &P, cfg: &Cfg, a: &Args, n: usize, par: f64) -> Result<(Row, Summary), String> {
    let plain = pass(p, cfg, n, false)?;
    let timed = pass(p, cfg, n, true)?;
    let mops = plain.expected as f64 / plain.seconds.max(1e-9) / 1e6;
    let mops_timed = timed.expected as f64 / timed.seconds.max(1e-9) / 1e6;
    let is_lock = P::COUNTING == Counting::Plain;
    let lost = (plain.expected as i64 - plain.counted as i64) + (timed.expected as i64 - timed.counted as i64);
    let (lo, hi) = (plain.ops.iter().min().copied().unwrap_or(0), plain.ops.iter().max().copied().unwrap_or(0));
    let row = Row {
        row: "throughput",
        primitive: k.name(),
        what: k.what(),
        implemented_by: k.implemented_by(),
        processes: n,
        mops,
        mops_timed,
        instrumentation_cost_pct: (1.0 - mops_timed / mops) * 100.0,
        expected: plain.expected + timed.expected,
        counted: plain.counted + timed.counted,
        lost,
        exact: lost == 0 && plain.lines_exact && timed.lines_exact,
        wait_ns: if is_lock { pcts(&timed.wait) } else { None },
        hold_ns: pcts(&timed.hold),
        contended_fraction: is_lock.then(|| timed.contended as f64 / timed.expected.max(1) as f64),
        handovers_per_op: is_lock.then(|| timed.handovers as f64 / timed.expected.max(1) as f64),
        context_switches_per_op: plain.switches as f64 / plain.expected.max(1) as f64,
        jain: jain(&plain.ops),
        min_over_max: if hi == 0 { 1.0 } else { lo as f64 / hi as f64 },
        ops_per_process: plain.ops,
        seconds: plain.seconds,
        cs_ns: a.cs_ns,
        cs_lines: cfg.cs_lines,
        think_ns: a.think_ns,
        pinned: cfg.pin,
        parallelism: par,
    };
    Ok((row, timed.wait))
}

#[derive(Serialize)]
struct Death {
    row: &'static str,
    primitive: &'static str,
    /// recovered (the next locker just got it), told (it got it and was told the owner died),
    /// hung (nobody got it within the bounded wait; the waiter was killed), failed, or n/a.
    outcome: &'static str,
    /// From the SIGKILL to the waiter's acquisition (recovered, told).
    after_us: Option<f64>,
    /// The waiter took the lock a second time afterwards.
    works_again: bool,
    /// How long the check took from the SIGKILL (the bounded wait, for hung).
    seconds: f64,
    detail: String,
    /// The holder and the waiter: both reaped by the time this row is printed.
    pids: Vec<i32>,
}

fn holder_death<P: Primitive>(k: Kind, p: &P, cfg: &Cfg) -> Result<Death, String> {
    let mut d = Death {
        row: "holder-death",
        primitive: k.name(),
        outcome: "n/a",
        after_us: None,
        works_again: false,
        seconds: 0.0,
        detail: "no lock: nothing is held".into(),
        pids: Vec::new(),
    };
    if P::COUNTING != Counting::Plain {
        return Ok(d);
    }
    let sh = Shared::new(1).map_err(|e| e.to_string())?;
    let ctl = &sh.ctl;
    let wait_for = |w: &AtomicU32, what: &str| -> Result<(), String> {
        let t = Instant::now();
        while w.load(Relaxed) == 0 {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("holder death: {what} did not happen within 10 s"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    };
    let mut victim = Process::spawn(|| -> Result<(), String> {
        p.prepare()?;
        p.run(false, |_| {
            ctl.holding.store(1, Relaxed);
            loop {
                std::thread::sleep(Duration::from_secs(1)); // killed in here
            }
        })?;
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    wait_for(&ctl.holding, "the holder taking the lock")?;
    let mut waiter = Process::spawn(|| -> Result<(), String> {
        p.prepare()?;
        ctl.ready.store(1, Relaxed);
        p.run(false, |got| {
            ctl.t_acquired.store(monotonic_ns(), Relaxed);
            ctl.got.store(if got == Got::OwnerDied { 2 } else { 1 }, Relaxed);
        })?;
        p.run(false, |_| {})?;
        ctl.again.store(1, Relaxed);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    d.pids = vec![victim.pid(), waiter.pid()];
    wait_for(&ctl.ready, "the waiter starting")?;
    std::thread::sleep(Duration::from_millis(20)); // the waiter is inside its lock call by now
    let t_kill = monotonic_ns();
    let t = Instant::now();
    victim.kill().map_err(|e| e.to_string())?;
    victim.join().map_err(|e| e.to_string())?;
    let status = timed_join(&mut waiter, cfg.death_wait)?;
    d.seconds = t.elapsed().as_secs_f64();
    match status {
        None => {
            waiter.kill().map_err(|e| e.to_string())?;
            waiter.join().map_err(|e| e.to_string())?;
            d.outcome = "hung";
            d.detail =
                format!("no acquisition within {} ms; the waiter was killed and reaped", cfg.death_wait.as_millis());
        }
        Some(st) => {
            let t_acq = ctl.t_acquired.load(Relaxed);
            d.works_again = ctl.again.load(Relaxed) != 0;
            if t_acq != 0 && t_acq < t_kill {
                d.outcome = "failed";
                d.detail = "the waiter took the lock while the holder still held it".into();
            } else if !st.success() || t_acq == 0 {
                d.outcome = "failed";
                d.detail = format!("the waiter ended: {st}");
            } else {
                d.after_us = Some((t_acq - t_kill) as f64 / 1e3);
                if ctl.got.load(Relaxed) == 2 {
                    d.outcome = "told";
                    d.detail = "the next locker got it with OwnerDied, made it consistent, carried on".into();
                } else {
                    d.outcome = "recovered";
                    d.detail = if k == Kind::SysvSem {
                        "the kernel undid the dead holder's decrement (SEM_UNDO); the next locker was not told"
                    } else {
                        "the kernel released it when the holder died; the next locker was not told"
                    }
                    .into();
                }
            }
        }
    }
    Ok(d)
}

fn fmt_ns(v: u64) -> String {
    match v {
        0..1_000 => format!("{v}ns"),
        1_000..1_000_000 => format!("{:.1}µs", v as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", v as f64 / 1e6),
        _ => format!("{:.1}s", v as f64 / 1e9),
    }
}

fn parse_counts(s: &str) -> crate::Result<Vec<usize>> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim) {
        let n: usize = t.parse().map_err(|_| format!("--processes: not a process count: {t:?}"))?;
        if !(1..=256).contains(&n) {
            return Err(format!("--processes: {n} is out of range (1 to 256)").into());
        }
        out.push(n);
    }
    Ok(out)
}

fn print_row(r: &Row) {
    let p = |x: Option<Pcts>, f: fn(Pcts) -> u64| x.map(|x| fmt_ns(f(x))).unwrap_or_else(|| "-".into());
    let opt = |x: Option<f64>, scale: f64| x.map(|v| format!("{:.2}", v * scale)).unwrap_or_else(|| "-".into());
    println!(
        "{:<10} {:>2} {:>9.3} {:>9.3} {:>5.0}% {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8.4} {:>6.3} {:>6.3}",
        r.primitive,
        r.processes,
        r.mops,
        r.mops_timed,
        r.instrumentation_cost_pct,
        r.lost,
        p(r.wait_ns, |x| x.p50),
        p(r.wait_ns, |x| x.p90),
        p(r.wait_ns, |x| x.p99),
        p(r.wait_ns, |x| x.p999),
        p(r.wait_ns, |x| x.max),
        p(r.hold_ns, |x| x.p50),
        p(r.hold_ns, |x| x.p99),
        opt(r.contended_fraction, 100.0),
        opt(r.handovers_per_op, 1.0),
        r.context_switches_per_op,
        r.jain,
        r.min_over_max,
    );
}

pub fn run(a: Args) -> crate::Result<()> {
    if let Some(Sub::Watch(w)) = a.sub {
        return watch::run(w);
    }
    let kinds = Kind::parse_list(&a.primitives)?;
    let counts = parse_counts(&a.processes)?;
    if a.cs_lines > MAX_LINES {
        return Err(format!("--cs-lines: at most {MAX_LINES}").into());
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 3600.0) {
        return Err(format!("--duration: {} is not a number of seconds in (0, 3600]", a.duration).into());
    }
    if a.ops == Some(0) {
        return Err("--ops: at least 1".into());
    }
    if a.death_wait_ms == 0 {
        return Err("--death-wait-ms: at least 1".into());
    }
    let per_ns = spins_per_ns();
    let cfg = Cfg {
        cs_spins: (a.cs_ns as f64 * per_ns) as u64,
        think_spins: (a.think_ns as f64 * per_ns) as u64,
        cs_lines: a.cs_lines,
        ops: a.ops,
        duration: Duration::from_secs_f64(a.duration),
        pin: a.pin,
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        death_wait: Duration::from_millis(a.death_wait_ms),
    };
    let par = crate::bench::parallelism()?;
    let length = match a.ops {
        Some(n) => format!("{n} ops per process per pass"),
        None => format!("{} s per pass", a.duration),
    };
    if !a.json {
        println!(
            "mproc contention: {length} (uninstrumented, then timed); critical section: counter{}{}, think {} ns; {}; {} CPUs; parallelism check {par:.2}",
            if a.cs_lines > 0 { format!(" + {} lines", a.cs_lines) } else { String::new() },
            if a.cs_ns > 0 { format!(" + {} ns", a.cs_ns) } else { String::new() },
            a.think_ns,
            if a.pin { "pinned" } else { "not pinned" },
            cfg.cpus,
        );
        println!();
        for k in &kinds {
            println!("  {:<10} {:<82} {}", k.name(), k.what(), k.implemented_by());
        }
        println!();
        println!(
            "{:<10} {:>2} {:>9} {:>9} {:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8} {:>6} {:>6}",
            "primitive",
            "n",
            "Mops/s",
            "timed",
            "cost",
            "lost",
            "wait50",
            "wait90",
            "wait99",
            "w99.9",
            "waitmax",
            "hold50",
            "hold99",
            "cont%",
            "hand/op",
            "csw/op",
            "jain",
            "min/mx"
        );
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut cdfs: Vec<(Kind, Summary)> = Vec::new();
    let mut deaths = Vec::new();
    let mut inexact = Vec::new();
    for &k in &kinds {
        let file = TempFile::new(k.name());
        for &n in &counts {
            let (row, wait) = with_primitive!(k, &file.0, |p| measure(k, &p, &cfg, &a, n, par))?;
            if !row.exact {
                inexact.push(format!("{} x{}: lost {}", k.name(), n, row.lost));
            }
            if a.json {
                println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
            } else {
                print_row(&row);
            }
            if n == 2 && row.wait_ns.is_some() {
                cdfs.push((k, wait));
            }
            rows.push(row);
        }
        if !a.no_death {
            let dfile = TempFile::new(&format!("{}-death", k.name()));
            deaths.push(with_primitive!(k, &dfile.0, |p| holder_death(k, &p, &cfg))?);
        }
    }
    if !deaths.is_empty() {
        if a.json {
            for d in &deaths {
                println!("{}", serde_json::to_string(d).expect("plain struct serialises"));
            }
        } else {
            println!();
            println!(
                "holder death: a holder is SIGKILLed inside its critical section while another process waits (bounded wait {} ms)",
                a.death_wait_ms
            );
            println!(
                "{:<10} {:<10} {:>10} {:>11}  what the waiter saw",
                "primitive", "outcome", "after", "works again"
            );
            for d in &deaths {
                let after = match d.after_us {
                    Some(us) => fmt_ns((us * 1e3) as u64),
                    None if d.outcome == "hung" => format!(">{}", fmt_ns((d.seconds * 1e9) as u64)),
                    None => "-".into(),
                };
                let again = if d.outcome == "n/a" {
                    "-"
                } else if d.works_again {
                    "yes"
                } else {
                    "no"
                };
                println!("{:<10} {:<10} {:>10} {:>11}  {}", d.primitive, d.outcome, after, again, d.detail);
            }
        }
    }
    if let Some(dir) = &a.svg {
        let paths = crate::plot::contention(
            dir,
            &rows.iter().map(|r| (r.primitive, r.processes, r.mops)).collect::<Vec<_>>(),
            &cdfs.iter().map(|(k, s)| (k.name(), s.cdf())).collect::<Vec<_>>(),
            par,
        )?;
        if !a.json {
            for p in paths {
                println!("wrote {}", p.display());
            }
        }
    }
    if !inexact.is_empty() {
        return Err(format!("lost updates: {}", inexact.join("; ")).into());
    }
    Ok(())
}

//! The cluster side of the CLI: `mproc worker`, `verify-primes --backend`, `primes --backend`
//! and `bench cluster`. Every host runs this same binary, so the names below resolve to the
//! same functions everywhere.

use std::time::{Duration, Instant};

use mproc_book::find_primes;
use mproc_book::kernel::Kernel;
use mproc_book::primes::{self, Range, Split};
use mproc_cluster::{ClusterPool, Named, Registry, TaskCtx, WorkerHost, builtin};

/// One range of divisors of a number, polling the job's flag every so many divisors: the
/// factor found, or whether the flag stopped the scan.
pub const VERIFY_RANGE: Named<(Range, u64, bool), (Option<u64>, bool)> = Named::new("book.verify_range");
/// Whether a number is prime (fast kernel), as 0 or 1.
pub const IS_PRIME_FAST: Named<u64, u8> = Named::new("book.is_prime_fast");
/// Whether a number is prime (plain kernel), as 0 or 1.
pub const IS_PRIME_PLAIN: Named<u64, u8> = Named::new("book.is_prime_plain");

fn verify_range(ctx: &TaskCtx<'_>, (range, every, fast): (Range, u64, bool)) -> (Option<u64>, bool) {
    let kernel = if fast { Kernel::Fast } else { Kernel::Plain };
    let r = primes::scan_range(range, every, ctx.flag(), kernel);
    if r.0.is_some() {
        ctx.stop(); // every other range of this number, on every host, can stop
    }
    r
}

/// The tasks every `mproc worker` serves.
pub fn registry() -> Registry {
    builtin::add(
        Registry::new()
            .task(VERIFY_RANGE, verify_range)
            .task(IS_PRIME_FAST, |_, n| u8::from(find_primes::is_prime(n, Kernel::Fast)))
            .task(IS_PRIME_PLAIN, |_, n| u8::from(find_primes::is_prime(n, Kernel::Plain))),
    )
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The Redis server the jobs come through: redis://HOST:PORT/.
    #[arg(long)]
    connect: String,
    /// Worker processes on this host (default: the CPUs available).
    #[arg(long)]
    processes: Option<usize>,
    /// The queue to serve (a key prefix; callers use the same).
    #[arg(long, default_value = "mproc")]
    queue: String,
    /// A chunk unrenewed this long belongs to a dead host and is taken over, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    reclaim_after_ms: u64,
    /// Chunks a process takes at once.
    #[arg(long, default_value_t = 1)]
    prefetch: usize,
    /// After Ctrl-C, seconds running chunks may take before they are handed back.
    #[arg(long, default_value_t = 10)]
    drain: u64,
}

pub fn worker(a: WorkerArgs) -> crate::Result<()> {
    let mut host = WorkerHost::new(&a.connect)
        .queue(a.queue)
        .reclaim_after(Duration::from_millis(a.reclaim_after_ms))
        .prefetch(a.prefetch)
        .drain(Duration::from_secs(a.drain))
        .log(|m| eprintln!("mproc worker: {m}"));
    if let Some(n) = a.processes {
        host = host.processes(n);
    }
    let r = host.serve(&registry())?;
    eprintln!(
        "mproc worker: stopped after {} chunks ({} processes replaced, {} chunks handed back)",
        r.tasks, r.respawned, r.handed_back
    );
    Ok(())
}

/// The cluster to run on: `--backend`, else `$MPROC_BACKEND` when it is a `redis://` URL (the
/// way Ray's and mpi4py's Pools take the cluster's address), else none (run locally).
pub fn backend(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned).or_else(|| {
        std::env::var("MPROC_BACKEND").ok().filter(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
    })
}

/// The cluster at `url` and how many workers serve it; an error naming the command to start one
/// when none does.
fn connect_served(url: &str) -> crate::Result<(ClusterPool, usize)> {
    let pool = ClusterPool::connect(url)?;
    let workers = pool.workers()?;
    if workers == 0 {
        return Err(format!("no worker is serving {url}: start one with `mproc worker --connect {url}`").into());
    }
    Ok((pool, workers))
}

/// `verify-primes --backend redis://…`: each number's divisors split into interleaved ranges,
/// one chunk each, on whatever workers are connected.
pub fn verify_primes(
    url: &str,
    numbers: &[u64],
    parts: Option<usize>,
    kernel: Kernel,
    repeat: usize,
    json: bool,
) -> crate::Result<()> {
    let (pool, workers) = connect_served(url)?;
    let parts = parts.unwrap_or(workers);
    // The poll interval as for the local flags: at most 1 % of the work (the flag is local memory).
    let per_64 = Duration::from_secs_f64(primes::iteration_ns(kernel) * 64e-9);
    let flag = mproc::Flag::new()?;
    let every = mproc::flag::poll_interval(mproc::flag::poll_cost(&flag, 101)?, per_64, 0.01).saturating_mul(64);
    if !json {
        println!(
            "verify-primes on the cluster at {url}: {workers} worker processes, {parts} ranges per number, {kernel} kernel, poll every {every}"
        );
        println!("{:>20} {:<6} {:>10} {:>10}", "number", "prime?", "best s", "median s");
    }
    for &n in numbers {
        let mut times = Vec::new();
        let mut factor = None;
        for _ in 0..repeat {
            let t = Instant::now();
            factor = check(&pool, n, parts, every, kernel)?;
            times.push(t.elapsed().as_secs_f64());
        }
        if factor.is_none() != primes::is_prime_miller_rabin(n) {
            return Err(format!(
                "the cluster said {n} is {}prime; Miller–Rabin disagrees",
                if factor.is_none() { "" } else { "not " }
            )
            .into());
        }
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
        if json {
            println!(
                "{}",
                serde_json::json!({"variant": "cluster", "number": n, "is_prime": factor.is_none(), "factor": factor,
                    "workers": workers, "ranges": parts, "best_s": best, "median_s": median, "repeat": repeat})
            );
        } else {
            println!("{n:>20} {:<6} {best:>10.6} {median:>10.6}", if factor.is_none() { "prime" } else { "no" });
        }
    }
    Ok(())
}

fn check(pool: &ClusterPool, n: u64, parts: usize, every: u64, kernel: Kernel) -> crate::Result<Option<u64>> {
    match n {
        0 | 1 => return Ok(Some(n)),
        2 | 3 => return Ok(None),
        _ if n.is_multiple_of(2) => return Ok(Some(2)),
        _ => {}
    }
    // Small divisors here: a job costs a round trip, they cost nanoseconds.
    const CUTOFF: u64 = 1 << 12;
    let to = n.isqrt();
    if let f @ Some(_) = kernel.first_factor(n, 3, to.min(CUTOFF), 2) {
        return Ok(f);
    }
    if to <= CUTOFF {
        return Ok(None);
    }
    let ranges = primes::split(n, CUTOFF + 1, to, parts, Split::Interleaved);
    let tasks: Vec<_> = ranges.into_iter().map(|r| (r, every, kernel == Kernel::Fast)).collect();
    let results = pool.map(VERIFY_RANGE, tasks, Some(1))?;
    Ok(results.iter().filter_map(|r| r.0).min())
}

/// `primes --backend redis://…`: the numbers of the range through the cluster at each chunk size.
pub fn primes(
    url: &str,
    lo: u64,
    hi: u64,
    chunksizes: &[usize],
    kernel: Kernel,
    repeat: usize,
    json: bool,
) -> crate::Result<()> {
    let (pool, workers) = connect_served(url)?;
    let task = if kernel == Kernel::Fast { IS_PRIME_FAST } else { IS_PRIME_PLAIN };
    let numbers = find_primes::numbers(lo, hi, false);
    let want = find_primes::sieve_count(lo, hi);
    if !json {
        println!(
            "primes in [{lo}, {hi}) on the cluster at {url}: {} numbers, {want} primes (sieve), {workers} worker processes, {kernel} kernel",
            numbers.len()
        );
        println!("{:>9} {:>7} {:>8} {:>10} {:>10}", "chunksize", "chunks", "primes", "best s", "median s");
    }
    for &c in chunksizes {
        let mut times = Vec::new();
        for _ in 0..repeat {
            let t = Instant::now();
            let got: u64 = pool.map(task, numbers.iter().copied(), Some(c))?.into_iter().map(u64::from).sum();
            times.push(t.elapsed().as_secs_f64());
            if got != want {
                return Err(format!("the cluster counted {got} primes at chunk size {c}; the sieve says {want}").into());
            }
        }
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
        let chunks = numbers.len().div_ceil(c);
        if json {
            println!(
                "{}",
                serde_json::json!({"call": "cluster.map", "range": [lo, hi], "chunksize": c, "chunks": chunks, "primes": want,
                    "workers": workers, "best_s": best, "median_s": median})
            );
        } else {
            println!("{c:>9} {chunks:>7} {want:>8} {best:>10.4} {median:>10.4}");
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The Redis server the workers serve.
    #[arg(long)]
    connect: String,
    /// Tasks per run, one per stream entry.
    #[arg(long, default_value_t = 2000)]
    tasks: u64,
    /// Tasks per batched run (in entries of --batch each).
    #[arg(long, default_value_t = 100_000)]
    batched_tasks: u64,
    /// Tasks per entry in the batched run.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A label for the rows (e.g. how many hosts are connected).
    #[arg(long, default_value = "")]
    label: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn bench(a: BenchArgs) -> crate::Result<()> {
    let pool = ClusterPool::connect(&a.connect)?;
    let workers = pool.workers()?;
    if workers == 0 {
        return Err(format!(
            "no worker is serving {}: start one with `mproc worker --connect {}`",
            a.connect, a.connect
        )
        .into());
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let time = |f: &dyn Fn() -> crate::Result<()>| -> crate::Result<f64> {
        let mut v = Vec::new();
        for _ in 0..a.repeat.max(1) {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64());
        }
        Ok(median(v))
    };
    // One round trip, alone: apply of one task.
    let mut lat = Vec::new();
    for x in 0..200u64 {
        let t = Instant::now();
        let r = pool.apply(builtin::SQUARE, x)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, x * x);
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
    let single = time(&|| {
        let r = pool.map(builtin::SQUARE, 0..a.tasks, Some(1))?;
        if r.len() as u64 != a.tasks {
            return Err("short result".into());
        }
        Ok(())
    })?;
    let batched = time(&|| {
        let r = pool.map(builtin::SQUARE, 0..a.batched_tasks, Some(a.batch))?;
        if r.len() as u64 != a.batched_tasks {
            return Err("short result".into());
        }
        Ok(())
    })?;
    // The local Pool on the same trivial task, chunk size 1, two processes.
    let local_pool = mproc::Pool::new(2)?;
    let local = time(&|| {
        local_pool.map(|_, x: u64| x.wrapping_mul(x), 0..a.tasks * 10, Some(1))?;
        Ok(())
    })?;
    drop(local_pool);
    let rows = [
        ("unbatched", a.tasks, 1usize, single),
        ("batched", a.batched_tasks, a.batch, batched),
        ("local-pool", a.tasks * 10, 1, local),
    ];
    for (kind, n, chunk, s) in rows {
        let rate = n as f64 / s;
        let per_us = s * 1e6 / n as f64;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"bench": "cluster", "label": a.label, "kind": kind, "workers": workers, "tasks": n,
                    "chunksize": chunk, "seconds": s, "tasks_per_s": rate, "us_per_task": per_us,
                    "apply_p50_us": p50, "apply_p99_us": p99})
            );
        } else {
            println!(
                "{:<10} {kind:<11} {workers} workers {n:>7} tasks (chunk {chunk:>4}) {rate:>12.0} tasks/s {per_us:>9.2} µs/task",
                a.label
            );
        }
    }
    if !a.json {
        println!("{:<10} apply round trip p50 {p50:.0} µs, p99 {p99:.0} µs", a.label);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct JobArgs {
    /// The Redis server the workers serve.
    #[arg(long)]
    connect: String,
    /// The queue the workers serve.
    #[arg(long, default_value = "mproc")]
    queue: String,
    /// Tasks in the job (one per chunk).
    #[arg(long, default_value_t = 200)]
    tasks: u64,
    /// Milliseconds each task sleeps.
    #[arg(long, default_value_t = 20)]
    ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// Runs the job; prints one JSON line; fails unless every result arrived exactly once.
pub fn job(a: JobArgs) -> crate::Result<()> {
    let pool = ClusterPool::builder(&a.connect).queue(&a.queue).timeout(Duration::from_secs(a.timeout)).build()?;
    let t = Instant::now();
    let items: Vec<(u64, u64)> = (0..a.tasks).map(|x| (x, a.ms.max(1))).collect();
    let mut got: Vec<u64> = pool.imap_unordered(builtin::SLOW_SQUARE, items, 1)?.collect::<Result<_, _>>()?;
    let seconds = t.elapsed().as_secs_f64();
    got.sort_unstable();
    let want: Vec<u64> = (0..a.tasks).map(|x| x * x).collect();
    if got != want {
        return Err(format!("{} results for {} tasks, or some wrong or repeated", got.len(), a.tasks).into());
    }
    let s = pool.last_job();
    let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    println!(
        "{}",
        serde_json::json!({"tasks": a.tasks, "seconds": seconds, "exactly_once": true, "duplicates": s.duplicates,
            "redelivered": s.redelivered, "last_redelivered_epoch": s.last_redelivered.map(epoch)})
    );
    Ok(())
}

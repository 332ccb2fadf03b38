//! Sharing a big array between processes without copying it: the book's numpy-over-`RawArray`
//! experiment.
//!
//! The array (rows × cols `f64`) lives in one anonymous shared mapping created before the pool
//! forks its workers; each worker writes whole rows through an `ndarray` view of it. The evidence
//! that nothing is copied is read from the kernel: each worker's `/proc/self/smaps_rollup` after
//! filling (its private memory, `RssAnon`, barely grows; its shared memory, `RssShmem`, grows by
//! the rows it wrote), and the machine's `Shmem` in `/proc/meminfo` grows by one array whatever
//! the worker count.
//!
//! Two fills: `pid` gives worker `w` the rows `w, w + P, …` (each row written exactly once);
//! `random` has every worker pick its rows at random — with reseeded workers they land mostly
//! apart, without reseeding every worker draws the *same* rows (the book found 750 of 2000 rows
//! written twice) — the trap again, counted exactly by a per-row write counter.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use mproc::{Error, Pool, Progress, RawArray, Result, SharedArray};

use crate::pi::mix;

/// How workers choose the rows they write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fill {
    /// Worker `w` writes rows `w, w + P, w + 2P, …` with its worker number + 1.
    #[default]
    Pid,
    /// Every worker writes `rows / P` rows drawn at random.
    Random,
}

impl Fill {
    /// Both fills.
    pub const ALL: [Fill; 2] = [Fill::Pid, Fill::Random];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Fill::Pid => "pid",
            Fill::Random => "random",
        }
    }
}

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fill {
    type Err = Error;
    fn from_str(s: &str) -> Result<Fill> {
        crate::by_name(s, &Fill::ALL, Fill::name, "fill")
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Worker processes.
    pub processes: usize,
    /// How rows are chosen.
    pub fill: Fill,
    /// Whether workers reseed (random fill only); `false` shows the trap.
    pub reseed: bool,
    /// The parent's seed.
    pub seed: u64,
}

/// Memory figures of one process, in KiB, from `/proc/<pid>/smaps_rollup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rss {
    /// Private anonymous memory.
    pub anon_kib: u64,
    /// Shared memory mapped and touched.
    pub shmem_kib: u64,
}

/// Reads this process's `RssAnon` and `RssShmem`.
pub fn rss_self() -> Rss {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    // smaps_rollup has no RssAnon/RssShmem lines on every kernel; status has them.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let sfield = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| field(name))
    };
    Rss { anon_kib: sfield("RssAnon:"), shmem_kib: sfield("RssShmem:") }
}

/// The machine's shared memory (`Shmem` in `/proc/meminfo`), in KiB.
pub fn system_shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What one worker reports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerReport {
    /// Its worker index.
    pub worker: usize,
    /// Rows it wrote.
    pub rows: u64,
    /// A hash of the sequence of rows it chose: equal in two workers means they drew the same.
    pub picks_hash: u64,
    /// Its first pass over its rows (first touch of the pages: the kernel zero-fills them).
    pub first_s: f64,
    /// A second pass over the same rows (warm pages: memory bandwidth).
    pub warm_s: f64,
    /// Its memory before and after writing.
    pub before: Rss,
    /// After.
    pub after: Rss,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// Rows × cols.
    pub shape: [usize; 2],
    /// Bytes of the array.
    pub bytes: u64,
    /// Worker processes.
    pub processes: usize,
    /// The fill.
    pub fill: &'static str,
    /// Whether workers reseeded.
    pub reseeded: bool,
    /// Creating the shared array.
    pub alloc_s: f64,
    /// Filling it: the workers' map, both passes.
    pub fill_s: f64,
    /// First-pass bandwidth (first touch), all workers together.
    pub fill_gb_s: f64,
    /// Second-pass bandwidth (warm pages), all workers together.
    pub warm_fill_gb_s: f64,
    /// One process filling a fresh private buffer (up to 512 MiB): first pass.
    pub memset_gb_s: f64,
    /// The same, warm.
    pub warm_memset_gb_s: f64,
    /// Rows written exactly once.
    pub rows_once: u64,
    /// Rows written more than once (duplicates).
    pub rows_duplicate: u64,
    /// Rows never written.
    pub rows_never: u64,
    /// Whether two workers chose exactly the same rows (the unreseeded-fork trap).
    pub identical_picks: bool,
    /// The parent's memory before and after.
    pub parent_before: Rss,
    /// After.
    pub parent_after: Rss,
    /// The machine's `Shmem` growth while the array lived.
    pub system_shmem_growth_kib: u64,
    /// Each worker's report.
    pub workers: Vec<WorkerReport>,
}

/// What every task sees: the array, the per-row write counts, and progress.
struct Ctx {
    data: SharedArray<f64, ndarray::Ix2>,
    writes: RawArray<u32>,
    progress: Progress,
    rows: usize,
    cols: usize,
}

/// The parent's seed, which forked workers inherit unless they reseed.
static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn reseed(_: &Ctx) {
    if let Some(s) = mproc::worker::seed() {
        SEED.store(s, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One worker's share: (fill code, worker slot, workers).
fn fill_task(ctx: &Ctx, (fill, slot, workers): (u8, u64, u64)) -> WorkerReport {
    let before = rss_self();
    let rows = ctx.rows as u64;
    let mine: Vec<u64> = if fill == 0 {
        (slot..rows).step_by(workers as usize).collect()
    } else {
        let seed = SEED.load(std::sync::atomic::Ordering::Relaxed);
        (0..rows / workers).map(|i| mix(seed, i) % rows).collect()
    };
    let value = (slot + 1) as f64;
    let t = Instant::now();
    write_rows(ctx, fill, &mine, value, true);
    let first_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    write_rows(ctx, fill, &mine, value, false);
    let warm_s = t.elapsed().as_secs_f64();
    let picks_hash = mine.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &r| (h ^ r).wrapping_mul(0x100_0000_01b3));
    WorkerReport {
        worker: mproc::worker::index().unwrap_or(0),
        rows: mine.len() as u64,
        picks_hash,
        first_s,
        warm_s,
        before,
        after: rss_self(),
    }
}

/// Writes `value` into `rows`; counts the writes (and progress) when `count`.
fn write_rows(ctx: &Ctx, fill: u8, rows: &[u64], value: f64, count: bool) {
    if fill == 0 {
        // SAFETY: in the `pid` fill the workers' rows are disjoint, so no other process touches
        // the elements this view is used to write; the array outlives the task.
        let mut view = unsafe { ctx.data.view_mut() };
        for &r in rows {
            view.row_mut(r as usize).fill(value);
            if count {
                ctx.writes.fetch_add(r as usize, 1);
                ctx.progress.add(1);
            }
        }
    } else {
        // Random rows may collide between workers: write them with atomic stores, so a collision
        // is a counted duplicate, not a data race.
        for &r in rows {
            let start = r as usize * ctx.cols;
            for i in start..start + ctx.cols {
                ctx.data.raw().store(i, value);
            }
            if count {
                ctx.writes.fetch_add(r as usize, 1);
                ctx.progress.add(1);
            }
        }
    }
}

/// GB/s of one process filling a fresh private buffer of `bytes`: the first pass (first touch,
/// as in the shared fill's first pass) and a second, warm one.
pub fn memset_gb_s(bytes: usize) -> (f64, f64) {
    let mut v: Vec<f64> = Vec::with_capacity(bytes / 8);
    let t = Instant::now();
    v.resize(bytes / 8, 1.0);
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    v.fill(2.0);
    std::hint::black_box(&v);
    let warm = t.elapsed().as_secs_f64();
    (bytes as f64 / first / 1e9, bytes as f64 / warm / 1e9)
}

/// Runs the experiment once, counting rows written towards `progress` (rows in all).
pub fn run(cfg: &Config, progress: &Progress) -> Result<Outcome> {
    if cfg.rows == 0 || cfg.cols == 0 || cfg.processes == 0 {
        return Err(Error::InvalidArgument("--rows, --cols and --processes must be at least 1".into()));
    }
    let len = cfg.rows.checked_mul(cfg.cols).ok_or_else(|| Error::InvalidArgument("rows × cols overflows".into()))?;
    let bytes = len as u64 * 8;
    SEED.store(cfg.seed, std::sync::atomic::Ordering::Relaxed);
    let shmem0 = system_shmem_kib();
    let parent_before = rss_self();
    let t = Instant::now();
    let data = SharedArray::<f64, _>::zeroed((cfg.rows, cfg.cols))?;
    let alloc_s = t.elapsed().as_secs_f64();
    let writes = RawArray::<u32>::zeroed(cfg.rows)?;
    let ctx = Ctx { data, writes, progress: progress.clone(), rows: cfg.rows, cols: cfg.cols };
    let mut b = Pool::builder().processes(cfg.processes).seed(cfg.seed).context(ctx);
    if cfg.reseed {
        b = b.initializer(reseed);
    }
    let pool = b.build()?;
    let fill = u8::from(cfg.fill == Fill::Random);
    let tasks: Vec<(u8, u64, u64)> = (0..cfg.processes as u64).map(|w| (fill, w, cfg.processes as u64)).collect();
    let t = Instant::now();
    let workers = pool.map(fill_task, tasks, Some(1))?;
    let fill_s = t.elapsed().as_secs_f64();
    let shmem1 = system_shmem_kib();
    let ctx = pool.context();
    let (mut once, mut dup, mut never) = (0, 0, 0);
    for r in 0..cfg.rows {
        match ctx.writes.load(r) {
            0 => never += 1,
            1 => once += 1,
            _ => dup += 1,
        }
    }
    // The pid fill must leave every row constant, and equal to its writer's number.
    if cfg.fill == Fill::Pid {
        // SAFETY: the workers have finished (the map returned); nothing writes the array now.
        let all = unsafe { ctx.data.raw().as_slice() };
        for (r, row) in all.chunks(cfg.cols).enumerate() {
            let want = (r % cfg.processes + 1) as f64;
            if row.iter().any(|&x| x != want) {
                return Err(Error::Corrupt(format!("row {r} does not hold its writer's value {want}")));
            }
        }
    }
    let rows_written: u64 = workers.iter().map(|w| w.rows).sum();
    let fill_bytes = rows_written * cfg.cols as u64 * 8;
    let slowest = |f: fn(&WorkerReport) -> f64| workers.iter().map(f).fold(1e-9, f64::max);
    let (memset, warm_memset) = memset_gb_s(bytes.min(512 << 20) as usize);
    Ok(Outcome {
        shape: [cfg.rows, cfg.cols],
        bytes,
        processes: cfg.processes,
        fill: cfg.fill.name(),
        reseeded: cfg.reseed,
        alloc_s,
        fill_s,
        fill_gb_s: fill_bytes as f64 / slowest(|w| w.first_s) / 1e9,
        warm_fill_gb_s: fill_bytes as f64 / slowest(|w| w.warm_s) / 1e9,
        memset_gb_s: memset,
        warm_memset_gb_s: warm_memset,
        rows_once: once,
        rows_duplicate: dup,
        rows_never: never,
        identical_picks: workers
            .iter()
            .enumerate()
            .any(|(i, a)| workers[i + 1..].iter().any(|b| a.worker != b.worker && a.picks_hash == b.picks_hash)),
        parent_before,
        parent_after: rss_self(),
        system_shmem_growth_kib: shmem1.saturating_sub(shmem0),
        workers,
    })
}

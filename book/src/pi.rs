//! Estimating π by Monte Carlo: the book's first lesson (processes scale where Python's threads
//! cannot), and its trap (forked workers that do not reseed draw the same "random" numbers).
//!
//! Each dart is a point `(x, y)` in the unit square; the fraction inside the quarter circle
//! `x² + y² ≤ 1` tends to π/4. The work is split into one block per worker, run serially, on
//! threads, or on a [`Pool`]'s processes.
//!
//! Random numbers come from a counter-based generator (SplitMix64 of a position in a stream), so
//! a block of darts is a pure function of `(stream seed, position)` and the batched kernel can
//! compute many at once. Each process has one stream ([`STREAM`]): the parent seeds it once, and a
//! forked worker inherits it — so unless the worker reseeds it (from [`mproc::worker::seed`]),
//! every worker continues the *same* stream from the same position and throws the same darts.
//! That is the book's "random numbers in parallel systems" trap, reproduced exactly: with
//! `reseed: false` the blocks' counts come out identical.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mproc::{Error, Pool, Progress, Result};

/// How the darts are thrown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// One dart per iteration, two floats from the generator, the book's loop.
    Plain,
    /// Blocks of 16 darts from 32-bit fixed-point coordinates: no floats, vectorised.
    #[default]
    Batched,
}

impl Kernel {
    /// Both, plain first.
    pub const ALL: [Kernel; 2] = [Kernel::Plain, Kernel::Batched];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Plain => "plain",
            Kernel::Batched => "batched",
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Kernel> {
        crate::by_name(s, &Kernel::ALL, Kernel::name, "pi kernel")
    }
}

/// Where the blocks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One after the other in this process.
    Serial,
    /// On scoped threads of this process (each with its own stream: threads share memory).
    Threads,
    /// On a Pool's worker processes.
    Processes,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Serial, Mode::Threads, Mode::Processes];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Serial => "serial",
            Mode::Threads => "threads",
            Mode::Processes => "processes",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        crate::by_name(s, &Mode::ALL, Mode::name, "mode")
    }
}

/// This process's random stream: its seed (how far it has been read is kept beside it).
pub static STREAM: AtomicU64 = AtomicU64::new(0);
/// How far this process has read its stream.
static POSITION: AtomicU64 = AtomicU64::new(0);

/// Points this process's stream at `seed`, from its start.
pub fn seed_stream(seed: u64) {
    STREAM.store(seed, Ordering::Relaxed);
    POSITION.store(0, Ordering::Relaxed);
}

/// Takes the next `n` positions of this process's stream: `(seed, first position)`.
fn take(n: u64) -> (u64, u64) {
    (STREAM.load(Ordering::Relaxed), POSITION.fetch_add(n, Ordering::Relaxed))
}

/// SplitMix64's output for position `i` of the stream `seed`.
#[inline(always)]
pub(crate) fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Darts `first..first + n` of stream `seed` that land inside the quarter circle.
pub fn count_inside(kernel: Kernel, seed: u64, first: u64, n: u64) -> u64 {
    match kernel {
        Kernel::Plain => {
            let mut inside = 0;
            for i in first..first + n {
                let r = mix(seed, i);
                // Two 32-bit halves as floats in [0, 1), as `random.random()` gives.
                let x = (r >> 32) as f64 * (1.0 / 4_294_967_296.0);
                let y = (r & 0xffff_ffff) as f64 * (1.0 / 4_294_967_296.0);
                if x * x + y * y <= 1.0 {
                    inside += 1;
                }
            }
            inside
        }
        Kernel::Batched => batched(seed, first, n),
    }
}

/// The batched kernel, compiled for the widest vectors this CPU has (chosen at run time: its
/// 64-bit multiplies vectorise only with AVX-512).
fn batched(seed: u64, first: u64, n: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: both features the function enables were detected on this CPU.
        return unsafe { batched_avx512(seed, first, n) };
    }
    batched_body(seed, first, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
fn batched_avx512(seed: u64, first: u64, n: u64) -> u64 {
    batched_body(seed, first, n)
}

/// Fixed point: x, y are 31-bit integers, 1.0 is 2^31; x² + y² < 2^63 never overflows. The same
/// darts as the plain kernel up to the lowest bit of each coordinate.
#[inline(always)]
fn batched_body(seed: u64, first: u64, n: u64) -> u64 {
    const B: u64 = 16;
    let limit = 1u64 << 62;
    let mut inside = 0;
    let mut i = first;
    let end = first + n;
    while i + B <= end {
        let mut block = 0;
        for k in 0..B {
            let r = mix(seed, i + k);
            let x = r >> 33;
            let y = (r & 0xffff_ffff) >> 1;
            block += u64::from(x * x + y * y <= limit);
        }
        inside += block;
        i += B;
    }
    inside + count_inside(Kernel::Plain, seed, i, end - i)
}

/// One block's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// Darts thrown.
    pub darts: u64,
    /// Darts inside the quarter circle.
    pub inside: u64,
    /// The Pool worker that threw them (`None` outside a pool).
    pub worker: Option<usize>,
}

/// Darts thrown between two bumps of the shared [`Progress`].
const BUMP: u64 = 1 << 20;

/// Darts `first..first + n` of stream `seed`, counted towards `progress` every [`BUMP`] darts.
fn count_counted(kernel: Kernel, seed: u64, first: u64, n: u64, progress: Option<&Progress>) -> u64 {
    let mut inside = 0;
    let mut done = 0;
    while done < n {
        let k = BUMP.min(n - done);
        inside += count_inside(kernel, seed, first + done, k);
        if let Some(p) = progress {
            p.add(k);
        }
        done += k;
    }
    inside
}

/// Throws one block of darts from this process's stream.
fn throw(kernel: Kernel, darts: u64, progress: Option<&Progress>) -> Block {
    let (seed, first) = take(darts);
    Block { darts, inside: count_counted(kernel, seed, first, darts, progress), worker: mproc::worker::index() }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Darts in all.
    pub samples: u64,
    /// Blocks (workers, threads, or serial pieces).
    pub workers: usize,
    /// The parent's seed.
    pub seed: u64,
    /// Whether pool workers reseed their stream from their per-worker seed (the fix); `false`
    /// shows the trap.
    pub reseed: bool,
    /// How darts are thrown.
    pub kernel: Kernel,
}

/// What a run came to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Where it ran.
    pub mode: &'static str,
    /// The dart kernel.
    pub kernel: &'static str,
    /// Blocks.
    pub workers: usize,
    /// Darts in all.
    pub samples: u64,
    /// The estimate of π.
    pub pi: f64,
    /// `pi − π`.
    pub error: f64,
    /// Wall time, without starting the pool.
    pub seconds: f64,
    /// Darts inside per block.
    pub inside: Vec<u64>,
    /// Whether two blocks of different workers came out identical: the unreseeded-fork trap.
    pub duplicate_blocks: bool,
    /// How many distinct workers (threads, processes) threw the blocks.
    pub workers_used: usize,
}

fn estimate(mode: Mode, cfg: &Config, blocks: &[Block], seconds: f64) -> Estimate {
    let darts: u64 = blocks.iter().map(|b| b.darts).sum();
    let inside: u64 = blocks.iter().map(|b| b.inside).sum();
    let pi = 4.0 * inside as f64 / darts.max(1) as f64;
    let duplicate_blocks = blocks.iter().enumerate().any(|(i, a)| {
        blocks[i + 1..].iter().any(|b| a.worker != b.worker && a.darts == b.darts && a.inside == b.inside)
    });
    Estimate {
        mode: mode.name(),
        kernel: cfg.kernel.name(),
        workers: cfg.workers,
        samples: darts,
        pi,
        error: pi - std::f64::consts::PI,
        seconds,
        inside: blocks.iter().map(|b| b.inside).collect(),
        duplicate_blocks,
        workers_used: blocks.iter().map(|b| b.worker).collect::<std::collections::BTreeSet<_>>().len(),
    }
}

/// Darts per block: `samples` split as evenly as possible.
fn shares(samples: u64, workers: usize) -> Vec<u64> {
    let w = workers as u64;
    (0..w).map(|i| samples / w + u64::from(i < samples % w)).collect()
}

/// Runs the blocks serially or on threads (each thread with a stream of its own), counting the
/// darts towards `progress` if given.
pub fn run_local(mode: Mode, cfg: &Config, progress: Option<&Progress>) -> Result<Estimate> {
    check(cfg)?;
    let t = Instant::now();
    let blocks: Vec<Block> = match mode {
        Mode::Serial => {
            seed_stream(cfg.seed);
            shares(cfg.samples, cfg.workers).into_iter().map(|n| throw(cfg.kernel, n, progress)).collect()
        }
        Mode::Threads => std::thread::scope(|s| {
            let handles: Vec<_> = shares(cfg.samples, cfg.workers)
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let (kernel, seed) = (cfg.kernel, mproc::worker::seed_for(cfg.seed, i));
                    s.spawn(move || Block {
                        darts: n,
                        inside: count_counted(kernel, seed, 0, n, progress),
                        worker: Some(i),
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a dart thread panicked")).collect()
        }),
        Mode::Processes => return Err(Error::Misuse("processes run on a pool: use Pi::run".into())),
    };
    Ok(estimate(mode, cfg, &blocks, t.elapsed().as_secs_f64()))
}

fn check(cfg: &Config) -> Result<()> {
    if cfg.workers == 0 {
        return Err(Error::InvalidArgument("--workers must be at least 1".into()));
    }
    if cfg.samples == 0 {
        return Err(Error::InvalidArgument("--samples must be at least 1".into()));
    }
    Ok(())
}

fn reseed_from_worker_seed(_: &Progress) {
    if let Some(s) = mproc::worker::seed() {
        seed_stream(s);
    }
}

/// A pool of dart-throwing processes. The parent seeds its stream before forking them, as a
/// program that seeds its RNG at start-up does.
#[derive(Debug)]
pub struct Pi {
    pool: Pool<Progress>,
    cfg: Config,
}

impl Pi {
    /// Seeds this process's stream with `cfg.seed`, then forks `cfg.workers` processes, which
    /// reseed from their per-worker seeds if `cfg.reseed`. The workers count their darts in
    /// `progress` (give it at least `workers + 1` slots).
    pub fn new(cfg: Config, progress: Progress) -> Result<Pi> {
        check(&cfg)?;
        seed_stream(cfg.seed);
        let mut b = Pool::builder().processes(cfg.workers).seed(cfg.seed).context(progress);
        if cfg.reseed {
            b = b.initializer(reseed_from_worker_seed);
        }
        Ok(Pi { pool: b.build()?, cfg })
    }

    /// Throws the darts on the pool: one block per worker.
    pub fn run(&self) -> Result<Estimate> {
        let t = Instant::now();
        let tasks: Vec<(u8, u64)> =
            shares(self.cfg.samples, self.cfg.workers).into_iter().map(|n| (self.cfg.kernel as u8, n)).collect();
        let blocks = self.pool.map(
            |p: &Progress, (k, n): (u8, u64)| {
                throw(if k == Kernel::Plain as u8 { Kernel::Plain } else { Kernel::Batched }, n, Some(p))
            },
            tasks,
            Some(1),
        )?;
        Ok(estimate(Mode::Processes, &self.cfg, &blocks, t.elapsed().as_secs_f64()))
    }

    /// The darts the workers have thrown so far, counted in shared memory.
    pub fn progress(&self) -> &Progress {
        self.pool.context()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kernels_estimate_pi_within_three_standard_errors() {
        let n = 4_000_000u64;
        // σ of the estimate: 4·sqrt(p(1−p)/n) with p = π/4.
        let p = std::f64::consts::FRAC_PI_4;
        let sigma = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
        for k in Kernel::ALL {
            let est = 4.0 * count_inside(k, 12345, 0, n) as f64 / n as f64;
            assert!((est - std::f64::consts::PI).abs() < 3.0 * sigma, "{k}: {est}");
        }
    }

    #[test]
    fn the_batched_kernel_throws_nearly_the_same_darts_as_the_plain_one() {
        // Same stream; only the lowest bit of each coordinate differs, so at most a handful of
        // darts on the circle's edge change side.
        let (a, b) = (count_inside(Kernel::Plain, 7, 0, 1_000_000), count_inside(Kernel::Batched, 7, 0, 1_000_000));
        assert!(a.abs_diff(b) <= 5, "{a} vs {b}");
    }

    #[test]
    fn threads_use_distinct_streams_and_serial_blocks_continue_one() {
        let cfg = Config { samples: 200_000, workers: 4, seed: 1, reseed: true, kernel: Kernel::Batched };
        for mode in [Mode::Serial, Mode::Threads] {
            let e = run_local(mode, &cfg, None).unwrap();
            assert!(!e.duplicate_blocks, "{mode}: {:?}", e.inside);
            assert_eq!(e.samples, 200_000);
        }
    }
}

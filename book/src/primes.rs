//! Verifying primes with an early-exit flag, the book's six ways (plus the naive pool).
//!
//! One number is checked by trial division: its odd divisors up to `√n` are split across the
//! Pool's workers. When one worker finds a factor it raises a flag; the others poll the flag and
//! stop. The variants differ in where the flag lives and how the loop polls it:
//!
//! | variant      | serial pre-check | flag                            | poll |
//! |--------------|------------------|---------------------------------|------|
//! | `none`       | no               | none: every range runs to its end | —  |
//! | `less-naive` | divisors < 21    | none                            | —    |
//! | `manager`    | yes              | a value in a [`Manager`] server | countdown |
//! | `redis`      | yes              | a Redis key (feature `redis`)   | countdown |
//! | `rawvalue`   | yes              | [`Flag`] in shared memory       | countdown |
//! | `mmap`       | yes              | a byte of an mmap ([`MmapFlag`]) | countdown |
//! | `mmap-redux` | yes              | [`MmapFlag`]                    | between blocks |
//!
//! "Countdown" is the book's loop: a counter decremented every divisor, the flag read when it
//! reaches 0. "Between blocks" is its redux: an inner loop over a block of divisors with no
//! check at all, the flag read between blocks.
//!
//! How often to poll is the trade-off: see [`mproc::flag::poll_interval`]. `CheckEvery::Auto`
//! measures the flag's poll cost and the loop's speed here and polls as often as 1 % overhead
//! allows; `CheckEvery::Every(1000)` is the book's setting.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mproc::flag::{EarlyExit, poll_cost, poll_interval};
use mproc::monotonic_ns;
use mproc::{Error, Flag, Manager, ManagerFlag, MmapFlag, OnWorkerDeath, Pool, RawValue, Result};

use crate::kernel::Kernel;

/// The book's five numbers: a composite with a tiny factor, two composites whose factors sit 30 %
/// and 54 % of the way to `√n`, and two primes.
pub const BOOK_NUMBERS: [u64; 5] = [
    112_272_535_095_295,
    100_109_100_129_100_369,
    100_109_100_129_101_027,
    100_109_100_129_100_151,
    100_109_100_129_162_907,
];

/// How the workers learn that a factor was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The naive pool: no pre-check, no flag.
    None,
    /// Serial pre-check of small divisors, then the pool without a flag.
    LessNaive,
    /// A value in a Manager server.
    Manager,
    /// A Redis key.
    Redis,
    /// A shared-memory flag (the book's `RawValue`).
    Rawvalue,
    /// A byte of an mmap, polled by countdown.
    Mmap,
    /// A byte of an mmap, polled between blocks.
    MmapRedux,
}

impl Variant {
    /// Every variant, in the book's order.
    pub const ALL: [Variant; 7] = [
        Variant::None,
        Variant::LessNaive,
        Variant::Manager,
        Variant::Redis,
        Variant::Rawvalue,
        Variant::Mmap,
        Variant::MmapRedux,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::LessNaive => "less-naive",
            Variant::Manager => "manager",
            Variant::Redis => "redis",
            Variant::Rawvalue => "rawvalue",
            Variant::Mmap => "mmap",
            Variant::MmapRedux => "mmap-redux",
        }
    }

    /// Whether the variant has a flag to poll.
    pub fn has_flag(self) -> bool {
        !matches!(self, Variant::None | Variant::LessNaive)
    }

    fn code(self) -> u8 {
        Variant::ALL.iter().position(|&v| v == self).expect("listed") as u8
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Variant> {
        super::by_name(s, &Variant::ALL, Variant::name, "flag variant")
    }
}

/// How the divisor range is divided between workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Worker `w` of `P` checks `from + 2w, from + 2w + 2P, …`: every worker sweeps the whole
    /// range, so a factor is found as early as a serial scan would find it, divided by `P`.
    #[default]
    Interleaved,
    /// The book's: `P` consecutive sub-ranges. No speed-up when the factor sits early in the
    /// first one (100109100129100369's does).
    Contiguous,
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Split> {
        match s {
            "interleaved" => Ok(Split::Interleaved),
            "contiguous" => Ok(Split::Contiguous),
            _ => Err(Error::InvalidArgument(format!("--split must be interleaved or contiguous, not {s:?}"))),
        }
    }
}

/// How often a worker polls the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckEvery {
    /// Measured per flag: polling costs at most 1 % of the work.
    #[default]
    Auto,
    /// Every this many divisors (the book: 1000).
    Every(u64),
}

impl FromStr for CheckEvery {
    type Err = Error;
    fn from_str(s: &str) -> Result<CheckEvery> {
        match s {
            "auto" => Ok(CheckEvery::Auto),
            n => match n.parse::<u64>() {
                Ok(k) if k > 0 => Ok(CheckEvery::Every(k)),
                _ => Err(Error::InvalidArgument(format!("--check-every must be a positive number or auto, not {s:?}"))),
            },
        }
    }
}

/// Settings of a [`Verifier`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker processes.
    pub processes: usize,
    /// How often to poll the flag.
    pub check_every: CheckEvery,
    /// Divisors below this are checked serially before the pool (not by `none`).
    pub serial_cutoff: u64,
    /// How the range is divided.
    pub split: Split,
    /// Redis server for the `redis` variant.
    pub redis_url: Option<String>,
    /// Run a range again if its worker dies (instead of failing).
    pub retry: bool,
    /// The trial-division loop (default: the fast kernel).
    pub kernel: Kernel,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            processes: 2,
            check_every: CheckEvery::Auto,
            serial_cutoff: 21,
            split: Split::Interleaved,
            redis_url: None,
            retry: false,
            kernel: Kernel::default(),
        }
    }
}

/// Odd divisors `start, start + step, …` up to and including `end`, of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The number.
    pub n: u64,
    /// First divisor.
    pub start: u64,
    /// Last divisor (inclusive bound).
    pub end: u64,
    /// Distance between divisors (even).
    pub step: u64,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "divisors {}, {}, … ≤ {} of {}", self.start, self.start + self.step, self.end, self.n)
    }
}

/// Splits the odd divisors `from..=to` (`from` odd) of `n` into `parts` ranges.
pub fn split(n: u64, from: u64, to: u64, parts: usize, how: Split) -> Vec<Range> {
    let parts = parts.max(1) as u64;
    match how {
        Split::Interleaved => (0..parts)
            .map(|w| Range { n, start: from + 2 * w, end: to, step: 2 * parts })
            .filter(|r| r.start <= r.end)
            .collect(),
        Split::Contiguous => {
            let odd_count = (to - from) / 2 + 1;
            let per = odd_count.div_ceil(parts);
            (0..parts)
                .map(|w| {
                    let start = from + 2 * per * w;
                    Range { n, start, end: to.min(start + 2 * (per - 1)), step: 2 }
                })
                .filter(|r| r.start <= r.end && r.start <= to)
                .collect()
        }
    }
}

/// What a scan of a range came to.
enum Scan {
    Factor(u64),
    /// The flag was seen set: another worker found a factor.
    Stopped,
    Done,
}

#[inline]
fn scan(r: Range, kernel: Kernel) -> Option<u64> {
    kernel.first_factor(r.n, r.start, r.end, r.step)
}

/// The book's loop: count down every divisor, poll when the count reaches 0. The fast kernel
/// checks [`LANES`](crate::kernel::LANES) divisors per step, so a per-divisor countdown has no
/// meaning there: it polls between blocks of `every` divisors, like the redux.
#[inline]
fn scan_countdown<F: EarlyExit + ?Sized>(r: Range, every: u64, flag: &F, kernel: Kernel) -> Result<Scan> {
    if kernel == Kernel::Fast {
        return scan_blocks(r, every, flag, kernel);
    }
    let mut countdown = every;
    let mut d = r.start;
    while d <= r.end {
        countdown -= 1;
        if countdown == 0 {
            if flag.is_set()? {
                return Ok(Scan::Stopped);
            }
            countdown = every;
        }
        if r.n.is_multiple_of(d) {
            return Ok(Scan::Factor(d));
        }
        d += r.step;
    }
    Ok(Scan::Done)
}

/// The redux: a tight inner loop over a block of `every` divisors, the poll between blocks.
#[inline]
fn scan_blocks<F: EarlyExit + ?Sized>(r: Range, every: u64, flag: &F, kernel: Kernel) -> Result<Scan> {
    let mut lo = r.start;
    while lo <= r.end {
        let hi = r.end.min(lo.saturating_add(r.step.saturating_mul(every - 1)));
        if let Some(d) = scan(Range { start: lo, end: hi, ..r }, kernel) {
            return Ok(Scan::Factor(d));
        }
        if flag.is_set()? {
            return Ok(Scan::Stopped);
        }
        lo = match hi.checked_add(r.step) {
            Some(x) => x,
            None => break,
        };
    }
    Ok(Scan::Done)
}

/// Scans range `r` for a factor, polling `flag` between blocks of `every` divisors (the redux's
/// loop): `(Some(factor), _)`, or `(None, stopped)` where `stopped` says the flag ended the scan.
/// The task a cluster worker runs for `verify-primes --backend`: the flag is a shared-memory
/// one, relayed from the network by the worker host.
pub fn scan_range(r: Range, every: u64, flag: &Flag, kernel: Kernel) -> (Option<u64>, bool) {
    match scan_blocks(r, every.max(1), flag, kernel) {
        Ok(Scan::Factor(d)) => (Some(d), false),
        Ok(Scan::Stopped) => (None, true),
        Ok(Scan::Done) | Err(_) => (None, false),
    }
}

/// The smallest factor of `n` (`None` when `n` is prime; `Some(n)` for 0 and 1), by trial
/// division in this process with the plain `%` loop: the reference.
pub fn smallest_factor(n: u64) -> Option<u64> {
    smallest_factor_with(n, Kernel::Plain)
}

/// [`smallest_factor`] with the given kernel: the serial baseline of a run.
pub fn smallest_factor_with(n: u64, kernel: Kernel) -> Option<u64> {
    match n {
        0 | 1 => Some(n),
        2 | 3 => None,
        _ if n.is_multiple_of(2) => Some(2),
        _ => scan(Range { n, start: 3, end: n.isqrt(), step: 2 }, kernel),
    }
}

/// Whether `n` is prime, by trial division in this process.
pub fn is_prime_serial(n: u64) -> bool {
    smallest_factor(n).is_none()
}

/// Deterministic Miller–Rabin for every `u64` (bases 2 … 37): the oracle the trial division is
/// tested against.
pub fn is_prime_miller_rabin(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mul = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(n)) as u64;
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    };
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// What the workers share: every flag backend in use, and when a factor was found.
pub struct Ctx {
    raw: Flag,
    mmap: MmapFlag,
    manager: Option<ManagerFlag>,
    #[cfg(feature = "redis")]
    redis: Option<mproc::RedisFlag>,
    found_ns: RawValue<u64>,
}

impl Ctx {
    fn flag(&self, v: Variant) -> Result<&dyn EarlyExit> {
        match v {
            Variant::Rawvalue => Ok(&self.raw),
            Variant::Mmap | Variant::MmapRedux => Ok(&self.mmap),
            Variant::Manager => {
                self.manager.as_ref().map(|f| f as &dyn EarlyExit).ok_or_else(|| not_started("manager"))
            }
            #[cfg(feature = "redis")]
            Variant::Redis => self.redis.as_ref().map(|f| f as &dyn EarlyExit).ok_or_else(|| not_started("redis")),
            _ => Err(not_started(v.name())),
        }
    }
}

fn not_started(what: &str) -> Error {
    Error::Misuse(format!("the {what} flag was not set up: pass its variant to Verifier::new"))
}

/// One task: a range, the variant, and the poll interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Task {
    range: Range,
    variant: u8,
    every: u64,
    fast: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskResult {
    factor: Option<u64>,
    /// When the worker saw the flag and stopped (0: it did not).
    stopped_ns: u64,
    error: Option<String>,
}

fn run_task(ctx: &Ctx, t: Task) -> TaskResult {
    let variant = Variant::ALL[usize::from(t.variant)];
    let k = if t.fast { Kernel::Fast } else { Kernel::Plain };
    let scan = match variant {
        Variant::None | Variant::LessNaive => Ok(scan(t.range, k).map_or(Scan::Done, Scan::Factor)),
        // Statically dispatched for the shared-memory flags: the poll inlines to one load.
        Variant::Rawvalue => scan_countdown(t.range, t.every, &ctx.raw, k),
        Variant::Mmap => scan_countdown(t.range, t.every, &ctx.mmap, k),
        Variant::MmapRedux => scan_blocks(t.range, t.every, &ctx.mmap, k),
        Variant::Manager | Variant::Redis => ctx.flag(variant).and_then(|f| scan_countdown(t.range, t.every, f, k)),
    };
    match scan {
        Ok(Scan::Factor(d)) => {
            // Record the moment first, then raise the flag (Release): a worker that sees the
            // flag also sees the time.
            let _ = ctx.found_ns.compare_exchange(0, monotonic_ns());
            let error = if variant.has_flag() {
                ctx.flag(variant).and_then(|f| f.set()).err().map(|e| e.to_string())
            } else {
                None
            };
            TaskResult { factor: Some(d), stopped_ns: 0, error }
        }
        Ok(Scan::Stopped) => TaskResult { factor: None, stopped_ns: monotonic_ns(), error: None },
        Ok(Scan::Done) => TaskResult { factor: None, stopped_ns: 0, error: None },
        Err(e) => TaskResult { factor: None, stopped_ns: 0, error: Some(e.to_string()) },
    }
}

/// The outcome of checking one number once.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The number.
    pub n: u64,
    /// Whether it is prime.
    pub is_prime: bool,
    /// A factor, if one was found (the smallest the workers found; for `0`/`1`, the number).
    pub factor: Option<u64>,
    /// Wall time of the whole check (pre-check, flag reset, pool).
    pub seconds: f64,
    /// From the factor's discovery until the last other worker stopped (flag variants only).
    pub stop_latency: Option<Duration>,
}

/// Runs the verify-primes experiment: a Pool with every requested flag backend in its context.
pub struct Verifier {
    // Field order is drop order: the pool's workers go before the manager they talk to.
    pool: Pool<Ctx>,
    _manager: Option<Manager>,
    cfg: Config,
    every: Vec<(Variant, u64)>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("cfg", &self.cfg).field("every", &self.every).finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts the backends `variants` need (a Manager, a Redis connection) and the Pool, and
    /// works out each variant's poll interval.
    pub fn new(cfg: Config, variants: &[Variant]) -> Result<Verifier> {
        if cfg.processes == 0 {
            return Err(Error::InvalidArgument("--processes must be at least 1".into()));
        }
        let manager = if variants.contains(&Variant::Manager) { Some(Manager::start()?) } else { None };
        let manager_flag = manager.as_ref().map(|m| m.flag("verify-primes:found")).transpose()?;
        #[cfg(feature = "redis")]
        let redis = if variants.contains(&Variant::Redis) {
            let url = cfg.redis_url.clone().unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
            Some(mproc::RedisFlag::new(&url, &format!("mproc:verify-primes:{}", std::process::id()))?)
        } else {
            None
        };
        #[cfg(not(feature = "redis"))]
        if variants.contains(&Variant::Redis) {
            return Err(Error::InvalidArgument("the redis variant needs mproc built with the `redis` feature".into()));
        }
        let ctx = Ctx {
            raw: Flag::new()?,
            mmap: MmapFlag::new()?,
            manager: manager_flag,
            #[cfg(feature = "redis")]
            redis,
            found_ns: RawValue::new(0)?,
        };
        // Polls are planned per 64 steps: one step of the fast kernel is too short for a Duration.
        let per_64 = Duration::from_secs_f64(iteration_ns(cfg.kernel) * 64e-9);
        let mut every = Vec::new();
        for &v in variants.iter().filter(|v| v.has_flag()) {
            let k = match cfg.check_every {
                CheckEvery::Every(k) => k,
                CheckEvery::Auto => poll_interval(poll_cost(ctx.flag(v)?, 101)?, per_64, 0.01).saturating_mul(64),
            };
            every.push((v, k));
        }
        let policy = if cfg.retry { OnWorkerDeath::Retry(1) } else { OnWorkerDeath::Fail };
        let pool = Pool::builder().processes(cfg.processes).on_worker_death(policy).context(ctx).build()?;
        Ok(Verifier { pool, _manager: manager, cfg, every })
    }

    /// The poll interval chosen for `v` (`None` for variants without a flag).
    pub fn check_every(&self, v: Variant) -> Option<u64> {
        self.every.iter().find(|(x, _)| *x == v).map(|&(_, k)| k)
    }

    /// Pids of the pool's workers.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.pool.worker_pids()
    }

    /// The ranges `n` is split into for the pool (task `i` of a check is range `i`).
    pub fn ranges(&self, v: Variant, n: u64) -> Vec<Range> {
        let from = if v == Variant::None { 3 } else { (self.cfg.serial_cutoff.max(3)) | 1 };
        let to = n.isqrt();
        if from > to { Vec::new() } else { split(n, from, to, self.cfg.processes, self.cfg.split) }
    }

    /// Checks `n` once with variant `v`.
    pub fn check(&self, v: Variant, n: u64) -> Result<Checked> {
        let t0 = Instant::now();
        let done = |factor: Option<u64>, stop_latency| Checked {
            n,
            is_prime: factor.is_none(),
            factor,
            seconds: t0.elapsed().as_secs_f64(),
            stop_latency,
        };
        match n {
            0 | 1 => return Ok(done(Some(n), None)),
            2 | 3 => return Ok(done(None, None)),
            _ if n.is_multiple_of(2) => return Ok(done(Some(2), None)),
            _ => {}
        }
        if v != Variant::None {
            let cutoff = self.cfg.serial_cutoff.min(n.isqrt() + 1);
            if cutoff > 3
                && let Some(f) = scan(Range { n, start: 3, end: cutoff - 1, step: 2 }, Kernel::Plain)
            {
                return Ok(done(Some(f), None));
            }
        }
        let ranges = self.ranges(v, n);
        if ranges.is_empty() {
            return Ok(done(None, None));
        }
        let ctx = self.pool.context();
        if v.has_flag() {
            ctx.flag(v)?.clear()?;
        }
        ctx.found_ns.store(0);
        let every = self.check_every(v).unwrap_or(u64::MAX);
        let fast = self.cfg.kernel == Kernel::Fast;
        let tasks: Vec<Task> = ranges.iter().map(|&range| Task { range, variant: v.code(), every, fast }).collect();
        let results = self.pool.map(run_task, tasks, Some(1))?;
        if let Some(e) = results.iter().find_map(|r| r.error.clone()) {
            return Err(Error::Backend {
                backend: "flag",
                target: v.to_string(),
                message: format!("failed in a worker: {e}"),
            });
        }
        let factor = results.iter().filter_map(|r| r.factor).min();
        let found = ctx.found_ns.load();
        let last_stop = results.iter().map(|r| r.stopped_ns).max().unwrap_or(0);
        let latency =
            (v.has_flag() && found > 0 && last_stop > 0).then(|| Duration::from_nanos(last_stop.saturating_sub(found)));
        Ok(done(factor, latency))
    }
}

/// The cost of one trial-division step of `kernel` here, in nanoseconds (best of three timed
/// runs over 2^21 divisors of a large prime). A fast-kernel step costs well under 1 ns, below
/// what a `Duration` can hold, hence the float.
pub fn iteration_ns(kernel: Kernel) -> f64 {
    const STEPS: u64 = 1 << 21;
    const FROM: u64 = 1 << 13 | 1;
    let n = BOOK_NUMBERS[3];
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(scan(
                Range { n: std::hint::black_box(n), start: FROM, end: FROM + 2 * STEPS, step: 2 },
                kernel,
            ));
            t.elapsed().as_secs_f64() * 1e9 / STEPS as f64
        })
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn primes_below(limit: u64) -> Vec<u64> {
        (2..limit).filter(|&p| is_prime_miller_rabin(p)).collect()
    }

    #[test]
    fn trial_division_agrees_with_miller_rabin_on_edge_cases() {
        for n in [0, 1, 2, 3, 4, 5, 9, 15, 25, 49, 97, 1 << 20, u64::MAX, u64::MAX - 1, 18_446_744_073_709_551_557] {
            if n == 18_446_744_073_709_551_557 {
                assert!(is_prime_miller_rabin(n), "the largest u64 prime");
                continue; // trial division of it takes seconds; its twin below is covered
            }
            assert_eq!(is_prime_serial(n), is_prime_miller_rabin(n), "{n}");
        }
        assert!(!is_prime_serial(0) && !is_prime_serial(1) && is_prime_serial(2) && is_prime_serial(3));
        for n in (4..10_000u64).step_by(2) {
            assert!(!is_prime_serial(n));
        }
    }

    #[test]
    fn trial_division_agrees_with_miller_rabin_on_random_values() {
        let mut s = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let n = xorshift(&mut s) >> (24 + xorshift(&mut s) % 40); // 1 to 40 bits
            assert_eq!(is_prime_serial(n), is_prime_miller_rabin(n), "{n}");
        }
    }

    #[test]
    fn squares_of_primes_and_products_of_two_large_primes_are_composite() {
        let small = primes_below(2000);
        for &p in &small {
            assert_eq!(smallest_factor(p * p), Some(p), "{p}²");
        }
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let big: Vec<u64> =
            (0..40).map(|_| (xorshift(&mut s) >> 40) | 1).filter(|&x| is_prime_miller_rabin(x)).take(8).collect();
        assert!(big.len() >= 4);
        for (i, &p) in big.iter().enumerate() {
            for &q in &big[i..] {
                let n = p * q;
                assert!(!is_prime_serial(n) && !is_prime_miller_rabin(n), "{p}·{q}");
                assert_eq!(smallest_factor(n), Some(p.min(q)));
            }
        }
    }

    #[test]
    fn the_book_numbers_are_what_the_book_says() {
        assert_eq!(smallest_factor(BOOK_NUMBERS[0]), Some(5));
        for n in BOOK_NUMBERS {
            assert_eq!(
                is_prime_miller_rabin(n),
                [false, false, false, true, true][BOOK_NUMBERS.iter().position(|&x| x == n).unwrap()]
            );
        }
    }

    #[test]
    fn splits_cover_every_odd_divisor_exactly_once() {
        for (from, to, parts) in [(3u64, 3u64, 1usize), (21, 1001, 2), (21, 1003, 3), (3, 99, 4), (21, 23, 4)] {
            for how in [Split::Interleaved, Split::Contiguous] {
                let mut seen: Vec<u64> = split(1, from, to, parts, how)
                    .iter()
                    .flat_map(|r| (r.start..=r.end).step_by(r.step as usize))
                    .collect();
                seen.sort_unstable();
                let want: Vec<u64> = (from..=to).step_by(2).collect();
                assert_eq!(seen, want, "{from}..={to} in {parts} {how:?}");
            }
        }
    }

    #[test]
    fn poll_loops_find_the_same_factor_and_stop_on_a_raised_flag() {
        struct Fixed(bool);
        impl EarlyExit for Fixed {
            fn set(&self) -> Result<()> {
                Ok(())
            }
            fn is_set(&self) -> Result<bool> {
                Ok(self.0)
            }
            fn clear(&self) -> Result<()> {
                Ok(())
            }
        }
        let r = Range { n: 1_000_003 * 999_983, start: 3, end: 999_983, step: 2 };
        for k in Kernel::ALL {
            for every in [1, 7, 1000, 1 << 40] {
                assert!(matches!(scan_countdown(r, every, &Fixed(false), k).unwrap(), Scan::Factor(999_983)));
                assert!(matches!(scan_blocks(r, every, &Fixed(false), k).unwrap(), Scan::Factor(999_983)));
            }
            assert!(matches!(scan_countdown(r, 10, &Fixed(true), k).unwrap(), Scan::Stopped));
            assert!(matches!(scan_blocks(r, 10, &Fixed(true), k).unwrap(), Scan::Stopped));
            let prime = Range { n: 1_000_003, start: 3, end: 1000, step: 2 };
            assert!(matches!(scan_blocks(prime, 3, &Fixed(false), k).unwrap(), Scan::Done));
            assert!(matches!(scan_countdown(prime, 3, &Fixed(false), k).unwrap(), Scan::Done));
        }
    }
}

//! Finding the primes in a range with a Pool: the book's chunksize study and its sawtooth.
//!
//! One task is one number, checked by trial division ([`is_prime`]); the Pool's chunk size says
//! how many numbers travel to a worker at once. In Python a task costs tens of microseconds of
//! pickling and pipe traffic, so chunk size 1 is slower than serial and large chunks win; the
//! **sawtooth** (time against the number of chunks) dips whenever the chunk count is a multiple
//! of the process count, because then no process is left with one chunk more than the others.
//! In mproc a task costs a fraction of a microsecond: the programs show how much of each lesson
//! is left.
//!
//! Every count is checked against [`sieve_count`], a segmented sieve of Eratosthenes.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use mproc::{Error, Pool, Progress, Result};

use crate::kernel::Kernel;

/// The book's range for the chunksize study: [10⁸, 1.01·10⁸), 54,208 primes.
pub const BOOK_RANGE: (u64, u64) = (100_000_000, 101_000_000);
/// The book's range for the sawtooth: [10⁸, 1.001·10⁸).
pub const SAWTOOTH_RANGE: (u64, u64) = (100_000_000, 100_100_000);

/// Parses `A..B` (numbers, `1e8` notation allowed), or a name: `book`, `sawtooth`.
pub fn parse_range(s: &str) -> Result<(u64, u64)> {
    match s {
        "book" => return Ok(BOOK_RANGE),
        "sawtooth" => return Ok(SAWTOOTH_RANGE),
        _ => {}
    }
    let bad = || Error::InvalidArgument(format!("--range: expected A..B (A < B), book or sawtooth, not {s:?}"));
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let num = |x: &str| -> Result<u64> {
        let x = x.trim();
        x.parse::<u64>().or_else(|_| match x.parse::<f64>() {
            Ok(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
            _ => Err(bad()),
        })
    };
    let (a, b) = (num(a)?, num(b)?);
    if a >= b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Whether `n` is prime: 2, or odd and no odd divisor up to `√n` divides it (the book's
/// `check_prime`, with the chosen trial-division kernel).
#[inline]
pub fn is_prime(n: u64, kernel: Kernel) -> bool {
    match n {
        0 | 1 => false,
        2 | 3 => true,
        _ if n.is_multiple_of(2) => false,
        _ => kernel.first_factor(n, 3, n.isqrt(), 2).is_none(),
    }
}

/// The number of primes in `[a, b)` by a segmented sieve of Eratosthenes: the oracle.
pub fn sieve_count(a: u64, b: u64) -> u64 {
    if b <= a {
        return 0;
    }
    let root = (b - 1).isqrt() + 1;
    let mut small = vec![true; root as usize + 1];
    let mut primes = Vec::new();
    for i in 2..=root as usize {
        if small[i] {
            primes.push(i as u64);
            let mut j = i * i;
            while j <= root as usize {
                small[j] = false;
                j += i;
            }
        }
    }
    let mut count = 0;
    const SEGMENT: u64 = 1 << 18;
    let mut lo = a;
    while lo < b {
        let hi = b.min(lo + SEGMENT);
        let mut is = vec![true; (hi - lo) as usize];
        for &p in &primes {
            if p * p >= hi {
                break;
            }
            let mut m = (lo.div_ceil(p) * p).max(p * p);
            while m < hi {
                is[(m - lo) as usize] = false;
                m += p;
            }
        }
        count += is.iter().enumerate().filter(|&(i, &v)| v && lo + i as u64 >= 2).count() as u64;
        lo = hi;
    }
    count
}

/// How the Pool is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Call {
    /// `map`: all results at once, in order.
    #[default]
    Map,
    /// `imap`: results as an ordered stream.
    Imap,
    /// `imap_unordered`: results as they finish.
    ImapUnordered,
}

impl Call {
    /// Every call.
    pub const ALL: [Call; 3] = [Call::Map, Call::Imap, Call::ImapUnordered];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Call::Map => "map",
            Call::Imap => "imap",
            Call::ImapUnordered => "imap-unordered",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Call {
    type Err = Error;
    fn from_str(s: &str) -> Result<Call> {
        crate::by_name(s, &Call::ALL, Call::name, "pool call")
    }
}

/// One timed run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    /// `serial`, or the Pool call.
    pub call: String,
    /// Tasks per chunk (`None`: serial; Python's automatic rule is resolved to its number).
    pub chunksize: Option<usize>,
    /// Chunks the range was cut into.
    pub chunks: Option<usize>,
    /// Primes found.
    pub primes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// The numbers of `[a, b)`, optionally shuffled (a fixed permutation, so runs compare).
pub fn numbers(a: u64, b: u64, shuffle: bool) -> Vec<u64> {
    let mut v: Vec<u64> = (a..b).collect();
    if shuffle {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for i in (1..v.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v.swap(i, (s % (i as u64 + 1)) as usize);
        }
    }
    v
}

/// Counts the primes among `numbers` in this process (counting progress, if given, per 2^16).
pub fn serial(numbers: &[u64], kernel: Kernel, progress: Option<&Progress>) -> Run {
    let t = Instant::now();
    let mut primes = 0;
    for block in numbers.chunks(1 << 16) {
        primes += block.iter().filter(|&&n| is_prime(n, kernel)).count() as u64;
        if let Some(p) = progress {
            p.add(block.len() as u64);
        }
    }
    Run { call: "serial".into(), chunksize: None, chunks: None, primes, seconds: t.elapsed().as_secs_f64() }
}

/// Numbers a process checks between two bumps of the shared [`Progress`]: a bump per number
/// would cost ~2 % of a fast-kernel check.
const BUMP_EVERY: u32 = 256;

std::thread_local! {
    static UNREPORTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts one checked number towards `progress`, in batches of [`BUMP_EVERY`].
#[inline]
fn bump(progress: &Progress) {
    UNREPORTED.with(|u| {
        let n = u.get() + 1;
        if n == BUMP_EVERY {
            progress.add(u64::from(n));
            u.set(0);
        } else {
            u.set(n);
        }
    });
}

// The results are `u8`, not `bool`: plain data crosses as bytes, and not every byte is a `bool`.
fn check_fast(p: &Progress, n: u64) -> u8 {
    bump(p);
    u8::from(is_prime(n, Kernel::Fast))
}

fn check_plain(p: &Progress, n: u64) -> u8 {
    bump(p);
    u8::from(is_prime(n, Kernel::Plain))
}

/// A pool whose tasks count their progress in its context.
pub fn pool(processes: usize) -> Result<Pool<Progress>> {
    Pool::builder().processes(processes).context(Progress::new(processes + 1)?).build()
}

/// Python's automatic chunk size for `map`: a quarter of each worker's share, rounded up.
pub fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(processes * 4).max(1)
}

/// Counts the primes among `numbers` on `pool`, one task per number, `chunksize` per chunk.
pub fn on_pool(pool: &Pool<Progress>, numbers: &[u64], kernel: Kernel, call: Call, chunksize: usize) -> Result<Run> {
    let f = if kernel == Kernel::Fast { check_fast } else { check_plain };
    let items = numbers.to_vec();
    let t = Instant::now();
    let primes = match call {
        Call::Map => pool.map_plain(f, items, Some(chunksize))?.into_iter().map(u64::from).sum(),
        Call::Imap | Call::ImapUnordered => {
            let it = if call == Call::Imap {
                pool.imap(f, items, chunksize)?
            } else {
                pool.imap_unordered(f, items, chunksize)?
            };
            let mut primes = 0;
            for r in it {
                primes += u64::from(r?);
            }
            primes
        }
    };
    Ok(Run {
        call: call.name().into(),
        chunksize: Some(chunksize),
        chunks: Some(numbers.len().div_ceil(chunksize)),
        primes,
        seconds: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_knows_the_books_count_and_small_ones() {
        assert_eq!(sieve_count(0, 100), 25);
        assert_eq!(sieve_count(2, 3), 1);
        assert_eq!(sieve_count(0, 2), 0);
        assert_eq!(sieve_count(BOOK_RANGE.0, BOOK_RANGE.1), 54_208);
    }

    #[test]
    fn trial_division_counts_match_the_sieve_with_both_kernels() {
        for (a, b) in [(0, 10_000), (1_000_000_000, 1_000_020_000), (SAWTOOTH_RANGE.0, SAWTOOTH_RANGE.0 + 20_000)] {
            for k in Kernel::ALL {
                let r = serial(&numbers(a, b, false), k, None);
                assert_eq!(r.primes, sieve_count(a, b), "{k} [{a}, {b})");
            }
        }
    }

    #[test]
    fn ranges_parse_by_name_and_by_bounds_and_bad_ones_are_errors() {
        assert_eq!(parse_range("book").unwrap(), BOOK_RANGE);
        assert_eq!(parse_range("1e8..100100000").unwrap(), SAWTOOTH_RANGE);
        for bad in ["5..5", "9..3", "x..4", "100", "1.5..3"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shuffling_permutes_the_range() {
        let mut v = numbers(10, 1010, true);
        assert_ne!(v, numbers(10, 1010, false));
        v.sort_unstable();
        assert_eq!(v, numbers(10, 1010, false));
    }
}

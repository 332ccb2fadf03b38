//! Trial division kernels: the plain `%` loop (the reference) and a float-quotient kernel.
//!
//! Trial division spends its time in 64-bit integer division: ~2 ns per divisor on an AMD Zen 4,
//! ~3.3 ns on an Intel Xeon. The fast kernel replaces it with floating point, several divisors
//! at a time, exactly:
//!
//! 1. `n` is split into `nh = n as f64` (rounded) and `nl = n − nh`, exact in an `f64` because
//!    `|nl| ≤ 2^10`.
//! 2. For a divisor `d ≥ 2^13` (exact in an `f64`), `x = nh / d` (one correctly rounded
//!    division) is within `2^10 / d + (n / d)·2^-53 ≤ 1/8 + 1/4` of `n / d`, because
//!    `n / d ≤ 2^51`. So `q = round(x)` is within 7/8 of `n / d`: when `d` divides `n`, `q` *is*
//!    `n / d`.
//! 3. `r = fma(−q, d, nh) + nl` is then **exactly** `n − q·d`: every term is an integer and the
//!    true difference is below 2^53 in magnitude, so the fused multiply-add rounds nothing, and
//!    neither does the addition.
//! 4. So `d` divides `n` exactly when `r = 0` (the kernel also accepts `r = ±d`, which the bound
//!    rules out, as a margin). A lane that says "divides" is confirmed with `%` before it is
//!    returned: a flaw in this argument could only miss a factor, never invent one — and the
//!    property tests against the `%` loop and Miller–Rabin would catch a miss.
//!
//! For `n < 2^51` every divisor takes the float path (`nh = n` exactly, and `n / d ≤ 2^51`);
//! above, divisors below 2^13 use `%` (a few thousand of them per number). The lanes vectorise where
//! the CPU has fused multiply-add: AVX-512 or AVX2 with FMA on x86-64 (chosen at run time), NEON
//! on aarch64. Elsewhere the fast kernel is the plain one.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use mproc::{Error, Result};

/// Which trial-division loop to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// One `n % d` per divisor: the book's loop, and the reference the fast kernel is tested against.
    Plain,
    /// Float quotients corrected exactly, [`LANES`] divisors at a time (see the module docs).
    #[default]
    Fast,
}

/// Divisors the fast kernel checks per step.
pub const LANES: usize = 8;

/// Below this, divisors are checked with `%`: the float quotient needs `n / d ≤ 2^51`.
const FLOAT_FROM: u64 = 1 << 13;

impl Kernel {
    /// Both kernels, plain first.
    pub const ALL: [Kernel; 2] = [Kernel::Plain, Kernel::Fast];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Plain => "plain",
            Kernel::Fast => "fast",
        }
    }

    /// The smallest divisor `d` of `n` among `start, start + step, …, ≤ end`, if any.
    #[inline]
    pub fn first_factor(self, n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
        match self {
            Kernel::Plain => plain(n, start, end, step),
            Kernel::Fast => fast(n, start, end, step),
        }
    }

    /// What the fast kernel runs on this CPU (`"avx512"`, `"avx2+fma"`, `"neon"`, or `"plain"`
    /// where it has no float path).
    pub fn fast_path() -> &'static str {
        match path() {
            PATH_AVX512 => "avx512",
            PATH_AVX2 => "avx2+fma",
            PATH_NEON => "neon",
            _ => "plain",
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
        crate::by_name(s, &Kernel::ALL, Kernel::name, "kernel")
    }
}

/// The reference: one integer division per divisor.
#[inline]
pub fn plain(n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
    let mut d = start;
    while d <= end {
        if n.is_multiple_of(d) {
            return Some(d);
        }
        d = d.checked_add(step)?;
    }
    None
}

const PATH_UNKNOWN: u8 = 0;
const PATH_PLAIN: u8 = 1;
const PATH_AVX512: u8 = 2;
const PATH_AVX2: u8 = 3;
const PATH_NEON: u8 = 4;

static PATH: AtomicU8 = AtomicU8::new(PATH_UNKNOWN);

/// The float path this CPU supports, detected once.
fn path() -> u8 {
    let p = PATH.load(Ordering::Relaxed);
    if p != PATH_UNKNOWN {
        return p;
    }
    let p = detect();
    PATH.store(p, Ordering::Relaxed);
    p
}

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("fma")
    {
        PATH_AVX512
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        PATH_AVX2
    } else {
        PATH_PLAIN
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> u8 {
    PATH_NEON // NEON and FMA are part of every aarch64 CPU
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> u8 {
    PATH_PLAIN
}

fn fast(n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
    // Below 2^51, `n` is exact in an f64 and `n / d ≤ 2^51` for every `d`: the float path
    // holds from the first divisor. Above, the small divisors are checked exactly.
    let float_from = if n < 1 << 51 { 0 } else { FLOAT_FROM };
    let mut d = start;
    while d <= end && d < float_from {
        if n.is_multiple_of(d) {
            return Some(d);
        }
        d = d.checked_add(step)?;
    }
    if d > end {
        return None;
    }
    match path() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path()` chose this only after detecting every feature the function enables.
        PATH_AVX512 => unsafe { lanes_avx512(n, d, end, step) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        PATH_AVX2 => unsafe { lanes_avx2(n, d, end, step) },
        #[cfg(target_arch = "aarch64")]
        PATH_NEON => lanes(n, d, end, step),
        _ => plain(n, d, end, step),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,fma")]
fn lanes_avx512(n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
    lanes(n, start, end, step)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn lanes_avx2(n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
    lanes(n, start, end, step)
}

/// The float kernel over divisors `start, start + step, … ≤ end`, where `start ≥ 2^13` or
/// `n < 2^51` (see the module docs). Compiled into each caller with its target features, so the
/// lanes vectorise there.
#[inline(always)]
fn lanes(n: u64, start: u64, end: u64, step: u64) -> Option<u64> {
    debug_assert!(start >= FLOAT_FROM || n < 1 << 51);
    let nh = n as f64;
    let nl = (i128::from(n) - nh as i128) as f64;
    let mut d = start;
    // Whole blocks of LANES divisors; `d + (LANES − 1)·step ≤ end` keeps every lane in range.
    while end.checked_sub(d).is_some_and(|left| left / step >= LANES as u64 - 1) {
        let mut hit = false;
        for k in 0..LANES {
            let df = (d + k as u64 * step) as f64;
            let q = (nh / df).round_ties_even();
            let r = (-q).mul_add(df, nh) + nl;
            hit |= r == 0.0 || r.abs() == df;
        }
        if hit {
            // Confirm exactly: a lane can only ever miss, never invent, a factor.
            if let Some(f) = plain(n, d, d + (LANES as u64 - 1) * step, step) {
                return Some(f);
            }
        }
        d += LANES as u64 * step;
    }
    plain(n, d, end, step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primes::is_prime_miller_rabin;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Both kernels agree with the reference on a range, for every step the experiments use.
    fn agree(n: u64, start: u64, end: u64) {
        for step in [2, 4, 6, 16] {
            let want = plain(n, start, end, step);
            assert_eq!(
                Kernel::Fast.first_factor(n, start, end, step),
                want,
                "n={n} start={start} end={end} step={step}"
            );
        }
    }

    #[test]
    fn fast_agrees_with_plain_for_products_of_two_primes_near_2_to_the_32() {
        // Divisors near 2^32 are where n / d is smallest relative to d, and n near 2^64.
        let near = |from: u64| (from..).filter(|&p| is_prime_miller_rabin(p)).take(6).collect::<Vec<_>>();
        let ps = near((1 << 32) - 200);
        for &p in &ps {
            for &q in &ps {
                if let Some(n) = p.checked_mul(q) {
                    let lo = p.min(q);
                    agree(n, (lo - 3000) | 1, lo + 100);
                }
            }
        }
    }

    #[test]
    fn fast_agrees_with_plain_near_2_to_the_63_and_the_top_of_u64() {
        for n in [(1u64 << 63) - 25, (1 << 63) + 1, (1 << 63) + 45, u64::MAX, u64::MAX - 58, u64::MAX - 82] {
            agree(n, 3, 40_000);
            let r = n.isqrt();
            agree(n, (r - 50_000) | 1, r);
        }
    }

    #[test]
    fn fast_finds_every_factor_of_random_semiprimes_and_none_in_primes() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut checked = 0;
        while checked < 300 {
            let a = (xorshift(&mut s) % (1 << 31)) | 1 | (1 << 13);
            let b = (xorshift(&mut s) % (1 << 32)) | 1 | (1 << 13);
            let Some(n) = a.checked_mul(b) else { continue };
            let lo = a.min(b);
            // A window that holds the smallest factor (or some factor of it), crossing many blocks.
            agree(n, lo.saturating_sub(2 * 997) | 1, lo + 2 * 13);
            checked += 1;
        }
        for n in [100_109_100_129_100_151u64, 100_109_100_129_162_907, 18_446_744_073_709_551_557] {
            assert!(is_prime_miller_rabin(n));
            assert_eq!(Kernel::Fast.first_factor(n, 3, 2_000_000, 2), None);
        }
    }

    #[test]
    fn the_book_numbers_give_the_same_factor_with_both_kernels() {
        for n in crate::primes::BOOK_NUMBERS {
            let end = n.isqrt();
            // The composites in full; for the primes the top 2 million divisors (debug builds are slow).
            let start = if is_prime_miller_rabin(n) { (end - 2_000_000) | 1 } else { 3 };
            assert_eq!(Kernel::Fast.first_factor(n, start, end, 2), plain(n, start, end, 2), "{n}");
        }
    }

    #[test]
    fn fast_agrees_with_plain_on_every_small_number_and_random_ones_below_2_to_the_51() {
        for n in 0..20_000u64 {
            agree(n, 3, n.isqrt().max(3));
        }
        let mut s = 99u64;
        for _ in 0..2000 {
            let n = xorshift(&mut s) >> (13 + xorshift(&mut s) % 40);
            agree(n, 3, n.isqrt().clamp(3, 50_000));
        }
    }

    #[test]
    fn kernel_names_round_trip_and_bad_ones_are_errors() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>().unwrap(), k);
        }
        assert!("turbo".parse::<Kernel>().unwrap_err().to_string().contains("plain"));
    }
}

//! Who am I? Inside a [`Pool`](crate::Pool) worker: its index and its RNG seed.
//!
//! A forked child inherits its parent's RNG state, so workers that each seed from "the current
//! state" all draw the same numbers — the book's "random numbers in parallel systems" trap
//! (Monte Carlo pi estimated from N copies of one stream). mproc gives every worker its own seed,
//! different per worker and reproducible from the builder's seed:
//!
//! ```
//! let pool = mproc::Pool::builder().processes(2).seed(42).build()?;
//! let seeds = pool.map(|_, _: u32| mproc::worker::seed().unwrap(), 0..64u32, Some(1))?;
//! assert!(seeds.iter().any(|&s| s != seeds[0]), "two workers, two seeds");
//! assert!(seeds.iter().all(|&s| s == mproc::worker::seed_for(42, 0) || s == mproc::worker::seed_for(42, 1)));
//! # Ok::<(), mproc::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

static INDEX: AtomicUsize = AtomicUsize::new(usize::MAX);
static SEED: AtomicU64 = AtomicU64::new(0);

/// This worker's index (0 to processes − 1); `None` outside a worker.
pub fn index() -> Option<usize> {
    match INDEX.load(Ordering::Relaxed) {
        usize::MAX => None,
        i => Some(i),
    }
}

/// This worker's seed: [`seed_for`]`(builder seed, index)`; `None` outside a worker.
pub fn seed() -> Option<u64> {
    index().map(|_| SEED.load(Ordering::Relaxed))
}

/// The seed worker `index` gets from the pool seed `base` (SplitMix64 of the pair): distinct per
/// index, the same in every run with the same base.
pub fn seed_for(base: u64, index: usize) -> u64 {
    let mut z = base ^ (index as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn set(index: usize, seed: u64) {
    INDEX.store(index, Ordering::Relaxed);
    SEED.store(seed, Ordering::Relaxed);
}

//! The experiments of the multiprocessing chapter of *High Performance Python*, as functions.
//!
//! The `mproc` CLI, the example programs and the tests all run these, so the figures a user sees
//! and the outcomes the tests assert come from the same code.

pub mod counters;
pub mod find_primes;
pub mod kernel;
pub mod pi;
pub mod primes;
pub mod primes_queue;
pub mod shared_array;

use mproc::{Error, Result};

/// The one of `all` whose `name` is `s`; otherwise an error listing the names (`what` says what
/// kind of name it is). Shared by the experiments' variant enums.
pub(crate) fn by_name<T: Copy>(s: &str, all: &[T], name: fn(T) -> &'static str, what: &str) -> Result<T> {
    all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
        let names: Vec<_> = all.iter().map(|&v| name(v)).collect();
        Error::InvalidArgument(format!("unknown {what} {s:?}; choose from {} or all", names.join(", ")))
    })
}

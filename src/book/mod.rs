//! The experiments of the multiprocessing chapter of *High Performance Python*, as functions.
//!
//! The `mproc` CLI, the example programs and the tests all run these, so the figures a user sees
//! and the outcomes the tests assert come from the same code.

pub mod counters;
pub mod primes;

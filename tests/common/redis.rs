//! The Redis server the tests use: `MPROC_REDIS_URL` (`make test` starts a private one).
//!
//! Without it a Redis test is skipped, and says so by name on the terminal — the harness captures
//! `eprintln!`, so the line is written to the stderr descriptor directly and shows even when the
//! test passes. Under `CI=true` a missing server is a failure, never a skip.

use std::io::Write;

/// The server's URL, or `None` (after reporting `test` as skipped) when there is none.
pub fn url(test: &str) -> Option<String> {
    match std::env::var("MPROC_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{test}: CI=true but MPROC_REDIS_URL is not set: run the tests with `make test`, which starts redis-server"
            )
        }
        _ => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: MPROC_REDIS_URL is not set (`make test` starts a private redis-server)"
            );
            None
        }
    }
}

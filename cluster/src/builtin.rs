//! Trivial tasks for tests and benchmarks: register [`registry`] on the workers (the `mproc
//! worker` command does), call the constants from the caller.

use std::time::Duration;

use crate::registry::{Named, Registry, TaskCtx};

/// `x → x²` (wrapping): the trivial task of the throughput figures.
pub const SQUARE: Named<u64, u64> = Named::new("mproc.square");
/// `(x, ms) → x²` after sleeping `ms` milliseconds, or until the job is stopped; `ms == 0`
/// stops the job (at once, on every host).
pub const SLOW_SQUARE: Named<(u64, u64), u64> = Named::new("mproc.slow_square");
/// `x → x`, but first raises the job's flag when `x` is 0: the early-exit path.
pub const STOP_AT_ZERO: Named<u64, u64> = Named::new("mproc.stop_at_zero");
/// Kills its own process (SIGKILL) for every argument: a task that kills workers.
pub const KILL_WORKER: Named<u64, u64> = Named::new("mproc.kill_worker");
/// Panics for every argument.
pub const PANIC: Named<u64, u64> = Named::new("mproc.panic");

fn square(_: &TaskCtx<'_>, x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn slow_square(ctx: &TaskCtx<'_>, (x, ms): (u64, u64)) -> u64 {
    if ms == 0 {
        ctx.stop();
    }
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < until && !ctx.stopped() {
        std::thread::sleep(Duration::from_millis(1));
    }
    x.wrapping_mul(x)
}

fn stop_at_zero(ctx: &TaskCtx<'_>, x: u64) -> u64 {
    if x == 0 {
        ctx.stop();
    }
    x
}

fn kill_worker(_: &TaskCtx<'_>, _: u64) -> u64 {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL was raised")
}

fn panic(_: &TaskCtx<'_>, x: u64) -> u64 {
    panic!("task asked to panic on {x}")
}

/// A registry of the tasks above.
pub fn registry() -> Registry {
    add(Registry::new())
}

/// `r` with the tasks above added.
pub fn add(r: Registry) -> Registry {
    r.task(SQUARE, square)
        .task(SLOW_SQUARE, slow_square)
        .task(STOP_AT_ZERO, stop_at_zero)
        .task(KILL_WORKER, kill_worker)
        .task(PANIC, panic)
}

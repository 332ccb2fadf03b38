//! # mproc-cluster — the same Pool job on several hosts, through Redis Streams
//!
//! [`ClusterPool`] has the calls of mproc's `Pool` that make sense across machines — `map`,
//! `imap_unordered`, `apply_async` — and runs them on [`WorkerHost`]s on other machines, through
//! one Redis server: chunks are entries of a stream read by a consumer group, results come back
//! on a stream of the job's own. The `mproc` CLI wraps both ends: `mproc worker --connect
//! redis://HOST:PORT/` on each worker host, `--backend redis://HOST:PORT/` on the book's programs.
//!
//! # Example: a worker host and a caller
//! The same binary runs on every host; it declares its tasks once:
//! ```no_run
//! use mproc_cluster::{ClusterPool, Named, Registry, TaskCtx, WorkerHost};
//!
//! // Shared by both sides: the name, and the types of the argument and the result.
//! const SQUARE: Named<u64, u64> = Named::new("example.square");
//!
//! fn registry() -> Registry {
//!     Registry::new().task(SQUARE, |_: &TaskCtx, x| x * x)
//! }
//!
//! let url = "redis://10.0.0.5:6379/";
//! if std::env::args().any(|a| a == "--worker") {
//!     // Forks 4 worker processes and serves until SIGINT/SIGTERM (then drains).
//!     let report = WorkerHost::new(url).processes(4).serve(&registry())?;
//!     eprintln!("ran {} chunks", report.tasks);
//! } else {
//!     let pool = ClusterPool::connect(url)?;
//!     let squares = pool.map(SQUARE, 0..10_000u64, Some(500))?; // 20 stream entries
//!     assert_eq!(squares[99], 9801);
//!     for r in pool.imap_unordered(SQUARE, [3u64, 4], 1)? {
//!         println!("{}", r?); // as each finishes
//!     }
//!     assert_eq!(pool.apply_async(SQUARE, 12)?.get()?, 144);
//! }
//! # Ok::<(), mproc_cluster::Error>(())
//! ```
//!
//! # Example: stop every host early
//! A task raises its job's flag with [`TaskCtx::stop`]; every task of the job, on every host,
//! sees it in [`TaskCtx::stopped`] — a load from shared memory, which the host's relay sets
//! when the stop is published, so an inner loop can poll it every iteration:
//! ```
//! use mproc_cluster::{Named, Registry, TaskCtx};
//!
//! const FIND: Named<(u64, u64), Option<u64>> = Named::new("example.find");
//!
//! fn find(ctx: &TaskCtx, (from, to): (u64, u64)) -> Option<u64> {
//!     for x in from..to {
//!         if x % 4096 == 0 && ctx.stopped() {
//!             return None; // another task, maybe on another host, found it
//!         }
//!         if x * x == 1_000_000 * 1_000_000 {
//!             ctx.stop();
//!             return Some(x);
//!         }
//!     }
//!     None
//! }
//! let registry = Registry::new().task(FIND, find);
//! assert!(registry.contains("example.find"));
//! ```
//!
//! # Named tasks: a registry, not a macro
//! A local Pool task is a code address, meaningless on another host; a cluster task is a name. The
//! names are bound by a [`Registry`] built at start-up, not by a registration macro: a macro
//! that collects functions from all over the program needs link-time collection (the
//! `inventory`/`linkme` kind: linker sections, a dependency, surprises with some linkers and
//! with static libraries), and hides which binary serves what. A registry is plain code: the
//! binary says which tasks it serves, a test can build one with exactly the tasks it needs, and
//! two functions under one name panic at start-up. The [`Named`] constant a caller uses carries
//! the argument and result types, so within one program both sides agree at compile time; a
//! worker built from other code answers [`Error::UnknownTask`] (naming the task) or a decode
//! error, never a wrong answer.
//!
//! # A ClusterPool, not a Pool backend
//! The local Pool's tasks are function pointers with a shared-memory context, plain-data fast
//! paths and failures of its own processes; a cluster's are names with serde arguments, and
//! fail in ways a local pool cannot (Redis down, a task that kills hosts). One type behind both
//! would make every local call pay for checks that only make sense remotely, and blur what is
//! guaranteed. So [`ClusterPool`] is its own type with the same call shapes.
//!
//! # Guarantees
//! - **At-least-once execution**: a chunk whose worker died (or was taken for dead) runs again,
//!   so **tasks must be idempotent**.
//! - **Exactly-once results**: the caller keeps the first result of each chunk (by task index)
//!   and drops the others ([`JobStats::duplicates`]).
//! - **A dead host's chunks are taken over** after the idle limit ([`WorkerHost::reclaim_after`],
//!   `XAUTOCLAIM`); live hosts renew the claims of long chunks (`XCLAIM … JUSTID`). A dead worker
//!   *process*'s chunks are handed back by its host at once.
//! - **A chunk that kills its workers** fails with [`Error::KilledWorkers`] after
//!   [`ClusterPoolBuilder::max_deliveries`] deliveries.
//! - **Bounded waits**: connecting times out after 2 s, each reply after 5 s; Redis down, killed
//!   or a wrong URL is one [`Error::Redis`]; a job may have a time limit
//!   ([`ClusterPoolBuilder::timeout`]).
//! - **Nothing a rerun trips over**: a job's keys are removed when it ends (and expire if its
//!   caller dies); workers skip chunks of jobs that ended.
//!
//! # Keys
//! Queue `q` (default `mproc`; [`ClusterPoolBuilder::queue`], [`WorkerHost::queue`]): the task
//! stream `q:tasks` with group `workers` (the queue itself, kept), per job `q:job:<id>` (its
//! results) and `q:job:<id>:stop`, the channel `q:stop`, and `q:host:<name>` per live host.
//!
//! # Fork safety
//! [`WorkerHost::serve`] forks its worker processes and replacements: call it from a
//! single-threaded process, before starting threads. Each process opens its own connections (a
//! socket is never shared across fork). [`ClusterPool`] does not fork; it belongs to the thread
//! that made it (one connection, used by one call at a time).

pub mod builtin;
mod conn;
mod error;
mod host;
mod pool;
mod registry;

pub use error::{Error, Result};
pub use host::{HostReport, WorkerHost};
pub use pool::{ClusterIter, ClusterPool, ClusterPoolBuilder, ClusterResult, JobStats};
pub use registry::{Named, Registry, TaskCtx};

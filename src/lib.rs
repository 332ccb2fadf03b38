//! # mproc — Python's `multiprocessing`, done right, in Rust
//!
//! A parent process forks worker processes that share values, arrays and early-exit flags
//! through `mmap`'d segments, guarded by crash-recoverable process-shared locks, atomics and file
//! locks. **Linux only** (x86-64 and aarch64): it is built on `fork`, robust pthread mutexes,
//! shared futexes, `pidfd` and `prctl`.
//!
//! | Python                                   | mproc                                          |
//! |------------------------------------------|------------------------------------------------|
//! | `Pool(n)`: `map`, `imap`, `imap_unordered`, `starmap`, `apply_async`, `map_async`, callbacks | [`Pool`]: workers forked once; a dead worker fails one task, not the pool; [`Pool::map_with`] sends a per-call value once |
//! | `Process(target=f)`                      | [`Process::spawn`]: join gives exit code, signal or panic message |
//! | `Value`, `RawValue`                      | [`Value<T>`] (with its own lock), [`RawValue<T>`] (atomics) |
//! | `Array`, `RawArray`                      | [`Array<T>`], [`RawArray<T>`]                  |
//! | `Lock`, `RLock`                          | [`Lock`], [`RLock`]: report a holder that died |
//! | `Semaphore`, `Event`, `Barrier`          | [`Semaphore`], [`Event`], [`Barrier`]          |
//! | `Condition`, `BoundedSemaphore`          | [`Condition`], [`BoundedSemaphore`]            |
//! | `mmap.mmap(-1, 1)` / `RawValue` as a flag | [`Flag`], and the [`EarlyExit`] trait          |
//! | file lock (`fcntl.flock`)                | [`FileLock`]: reopened per process automatically |
//! | `Queue`, `JoinableQueue`, `SimpleQueue`  | [`Queue<T>`], [`JoinableQueue<T>`], [`SimpleQueue`]: bounded, in shared memory, crash-safe |
//! | `Pipe()` → two `Connection`s             | [`Pipe::new`] → two [`Connection`]s: `send`/`recv`, bytes, `poll`; end of file when the peer drops or dies |
//! | a progress counter per worker            | [`Progress`]                                   |
//! | `shared_memory.SharedMemory`             | [`Segment`] (anonymous or named), [`Arena`]    |
//! | objects shared with an unrelated program (`SharedMemory(name=…)`, a `Manager`) | [`NamedArena`]: create by name, [`NamedArena::add`] objects; another program opens it and [`NamedArena::get`]s them by name and type |
//!
//! # Example: a Pool whose tasks share an early-exit flag
//! ```
//! use mproc::{Flag, Pool};
//!
//! // Shared objects are created before build() and handed to every task as `&Ctx`.
//! let pool = Pool::builder().processes(2).context(Flag::new()?).build()?;
//! let hits = pool.map(
//!     |found: &Flag, n: u64| {
//!         if found.is_set() { return false; } // another task already found one: stop early
//!         let hit = n > 0 && n % 997 == 0;
//!         if hit { found.set(); }
//!         hit
//!     },
//!     0..100_000u64,
//!     None, // chunk size: automatic
//! )?;
//! assert!(hits.iter().any(|&h| h));
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! A task is a plain `fn(&Ctx, T) -> R` (a closure that captures nothing); arguments and results
//! cross through shared memory (serde, or copied bytes with [`Pool::map_plain`]). If a
//! worker is killed mid-task, that task fails with [`Error::WorkerDied`] (or is retried, see
//! [`OnWorkerDeath`]), a new worker is forked, and every other result arrives exactly once.
//!
//! # Example: count in four processes without losing an update
//! ```
//! use mproc::{Process, Value};
//!
//! let total = Value::new(0u64)?;
//! let workers: Vec<Process> = (0..4)
//!     .map(|_| Process::spawn(|| -> mproc::Result<()> {
//!         for _ in 0..1000 {
//!             *total.lock()? += 1; // one guard for the whole read-modify-write
//!         }
//!         Ok(())
//!     }))
//!     .collect::<Result<_, _>>()?;
//! for mut w in workers {
//!     assert!(w.join()?.success());
//! }
//! assert_eq!(total.get()?, 4000);
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Example: stop every worker as soon as one finds the answer
//! ```
//! use mproc::{Flag, Process, RawValue};
//!
//! let found = Flag::new()?;
//! let answer = RawValue::new(0u64)?;
//! let mut workers = Vec::new();
//! for w in 0..2u64 {
//!     let (found, answer) = (&found, &answer);
//!     workers.push(Process::spawn(move || {
//!         // interleaved ranges: worker w checks w, w+2, w+4, ...
//!         for n in (w..10_000_000).step_by(2) {
//!             if found.is_set() { return; }
//!             if n > 0 && n % 7919 == 0 {
//!                 answer.store(n);
//!                 found.set(); // Release: the answer is visible to whoever sees the flag
//!                 return;
//!             }
//!         }
//!     })?);
//! }
//! for mut w in workers { w.join()?; }
//! assert!(found.is_set());
//! assert!(answer.load() == 7919 || answer.load() == 2 * 7919);
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Example: survive a holder that dies
//! ```
//! use mproc::{Lock, LockError, Process};
//!
//! let lock = Lock::new()?;
//! let mut child = Process::spawn(|| {
//!     let _g = lock.lock();
//!     // SAFETY: raise has no memory-safety preconditions.
//!     unsafe { libc::raise(libc::SIGKILL) }; // dies holding the lock
//! })?;
//! child.join()?;
//! match lock.lock() {
//!     Err(LockError::OwnerDied { pid, guard }) => {
//!         assert_eq!(pid, Some(child.pid()));
//!         drop(guard); // repair the protected data here, then release
//!     }
//!     other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
//! }
//! let _ok = lock.lock()?; // the lock works again
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Example: share a queue and a counter with an unrelated program, by name
//! ```
//! use mproc::{NamedArena, Queue, Value};
//!
//! let name = format!("mproc-crate-doc-{}", std::process::id());
//! // The server creates the arena and its objects (mode 0600, removed when it drops them or dies):
//! let arena = NamedArena::create(&name, 1 << 16)?;
//! let jobs = arena.add("jobs", |a| Queue::<u64>::new_in(a, 128, 16))?;
//! let served = arena.add("served", |a| Value::new_in(a, 0u64))?;
//!
//! // A client started separately knows only the names (here it runs in the same process):
//! let client = NamedArena::open(&name)?;
//! client.get::<Queue<u64>>("jobs")?.put(7)?;
//! *client.get::<Value<u64>>("served")?.lock()? += 1;
//!
//! assert_eq!(jobs.get()?, 7);
//! assert_eq!(served.get()?, 1);
//! // The wrong type is an error, never undefined behaviour:
//! assert!(client.get::<Value<u32>>("served").is_err());
//! # Ok::<(), mproc::Error>(())
//! ```
//! `examples/ipc_unrelated.rs` runs the same conversation between two programs.
//!
//! # Example: measure contention
//! Every [`Lock`] counts acquisitions, contended acquisitions and wait time, in shared memory:
//! ```
//! let lock = mproc::Lock::new()?;
//! drop(lock.lock()?);
//! let s = lock.stats();
//! assert_eq!((s.acquisitions, s.contended), (1, 0));
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Fork safety
//! - **Create shared objects before forking.** A `Lock`, `Value`, `Flag`, … made before
//!   [`Process::spawn`] or [`PoolBuilder::build`] is shared with the child; one made afterwards in
//!   the child is the child's own. Ordinary memory (a `Vec`, a `String`) is *copied* into the
//!   child: its changes never come back. Use `Value`/`Array`/`RawArray` for anything the parent
//!   must see. For a Pool, put the shared objects in its context ([`PoolBuilder::context`]).
//! - **What Pool workers inherit**: everything the parent had at `build()` — the context, globals,
//!   open files — as it was then. A replacement worker (after a death, or
//!   [`PoolBuilder::max_tasks_per_child`]) is forked later and sees the parent as it is then; its
//!   [`worker::seed`] is the same as its predecessor's. Workers ignore SIGINT and run the
//!   [`PoolBuilder::initializer`] before their first task. A task's panic is reported to the
//!   caller, not printed: `build()` installs one panic hook, once per process and in the parent
//!   (a worker takes no lock after fork), which records the message inside a worker and hands
//!   every other panic to the hook that was there before.
//! - **What may run before `build()`**: anything single-threaded. Start threads (a runtime, a
//!   logger with a background thread) after the pool is built — the Pool forks replacements later,
//!   so keep the process single-threaded while it lives, or opt in (below) knowingly.
//! - **Fork before starting threads.** `fork` copies only the calling thread; a lock another
//!   thread holds stays locked forever in the child, and data it was midway through updating stays
//!   half-updated. mproc counts the threads and refuses with [`Error::MultiThreaded`]. Opting in
//!   is an `unsafe` promise: [`set_fork_policy`]`(unsafe {`[`ForkPolicy::allow_threads`]`()})`
//!   (or per call with [`ProcessBuilder::fork_policy`] / [`PoolBuilder::fork_policy`]) states
//!   that the other threads are idle — holding no lock the child's code takes (stdout's and
//!   stderr's included: `println!`, the default panic hook) and midway through nothing it reads.
//!   In such a child **mproc itself takes no lock**: its prologue makes only async-signal-safe
//!   calls, and it leaves without flushing stdout (a last unterminated line may be lost). After a
//!   fork of a parent verified single-threaded, the child flushes stdout at exit as usual.
//! - **Descriptors**: a child closes every descriptor mproc opened in the parent — the pidfds of
//!   [`Process`] handles, the eventfds of pools, [`Manager`] sockets — except the ones it needs
//!   (a pool worker keeps its pool's wake-up eventfd; the Manager server keeps its socket). Your
//!   own descriptors are inherited as usual.
//! - **What the child inherits**: all memory (copy-on-write), open files (close-on-exec does not
//!   apply to fork), the signal dispositions. [`FileLock`] reopens its file in each new process,
//!   because an `flock` on an inherited descriptor does not exclude parent from child.
//! - **What the child does not do**: return into the parent's code or run the parent's
//!   destructors — it `_exit`s after its closure. It dies when its parent dies
//!   (`PR_SET_PDEATHSIG`, tied to the *thread* that forked it).
//! - The exact rules mproc follows around each fork are written in the `sys` module's source.
//!
//! # Crate features
//! - `ndarray`: [`RawArray::view_mut`], an `ndarray` view over shared memory.
//! - `redis`: `RedisFlag` and `RedisCounter` (the book's Redis variants).

#![deny(clippy::undocumented_unsafe_blocks)]
// docs.rs builds with `--cfg docsrs` on nightly: feature-gated items get a badge saying which feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("mproc supports Linux only (fork, robust pthread mutexes, shared futexes, pidfd, prctl).");

mod array;
mod error;
mod file_lock;
pub mod flag;
mod manager;
mod pool;
mod process;
mod progress;
mod queue;
#[cfg(feature = "redis")]
mod redis;
mod shm;
mod sync;
mod sys;
mod value;
pub mod worker;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::redis::{RedisCounter, RedisFlag};
#[cfg(feature = "ndarray")]
#[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
pub use array::SharedArray;
pub use array::{Array, ArrayGuard, RawArray};
/// The plain-data contract [`Plain`] is bytemuck's `Pod`: re-exported so `#[derive(Pod, Zeroable)]`
/// (feature `derive`) and `unsafe impl Pod` need no extra dependency.
pub use bytemuck;
pub use error::{Error, Result, Signal};
pub use file_lock::{FileLock, FileLockGuard};
pub use flag::{EarlyExit, Flag, MmapFlag};
pub use manager::{Manager, ManagerClient, ManagerFlag};
pub use pool::{AsyncResult, DEFAULT_MAX_MESSAGE_BYTES, OnWorkerDeath, Pool, PoolBuilder, RangeItem, ResultIter};
pub use process::{ChildResult, ExitStatus, ForkPolicy, Process, ProcessBuilder, set_fork_policy};
pub use progress::Progress;
pub use queue::{Connection, DEFAULT_MAX_ITEM_BYTES, JoinableQueue, Pipe, PutError, Queue, SimpleQueue};
pub use shm::{Arena, GuardedFile, NamedArena, NamedObject, ObjectInfo, ObjectKind, Plain, Segment, ShmBox, ShmSafe};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, LockGuard, LockStats, RLock, RLockGuard, Semaphore,
    WaitHistogram,
};
pub use sys::monotonic_ns;
pub use value::{AtomicValue, RawValue, Value, ValueGuard};

/// Bare primitives, for measuring what mproc's wrappers cost (benchmarks, the contention tool).
pub mod raw {
    pub use crate::sys::{LockStatus, RobustMutex};
}

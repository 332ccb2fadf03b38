//! Every raw system call mproc makes lives below this module.
//!
//! Nothing outside `sys` calls `fork`, `mmap`, `futex`, `pthread_*`, `prctl` or signal functions
//! directly (clippy's `disallowed-methods` in `clippy.toml` keeps it that way). Each `unsafe` block
//! here says why it holds; the safe wrappers are what the rest of the crate sees.
//!
//! # Fork rules
//!
//! These are the rules every fork in mproc follows. They are written down once, here.
//!
//! 1. **Before the fork, in the parent**: flush Rust's stdout buffer (otherwise both processes print it),
//!    allocate every shared object the child needs (segments, result slots), and check the thread
//!    count. Forking a multi-threaded parent copies only the calling thread; any lock another thread
//!    held (an allocator arena, stdout, a user mutex) stays locked forever in the child. mproc refuses
//!    such a fork unless the caller opted in ([`crate::ForkPolicy`]).
//! 2. **In the child, before its code runs**: only async-signal-safe calls: `prctl(PR_SET_PDEATHSIG)`
//!    so the child dies with its parent, `getppid` to catch a parent that died before that call, and
//!    `sigaction`/`sigprocmask` where the caller asked for a signal disposition. No allocation.
//! 3. **The child's code** then runs on the child's copy of the parent's stack, inside
//!    `catch_unwind`. Its panic message is copied into a shared slot allocated in step 1.
//! 4. **The child never returns** into the parent's stack frames and never runs the parent's
//!    destructors: it flushes stdout and calls `_exit` ([`exit_now`]). Dropping copies of the
//!    parent's objects in the child would, for example, unlink a named segment the parent still uses.
//!
//! Anything shared across the fork must live in a `MAP_SHARED` mapping: a private copy-on-write
//! page written by the child is never seen by the parent.

#![allow(clippy::disallowed_methods)] // the one place raw calls are allowed

mod futex;
mod mem;
mod proc;
mod pthread;
mod signal;

pub(crate) use futex::{FutexWait, futex_wait, futex_wake_all, futex_wake_one};
pub(crate) use mem::{
    Mapped, map_fd, map_shared_anonymous, page_size, random_bytes, shm_create, shm_open, shm_unlink, unmap,
};
pub use proc::monotonic_ns;
pub(crate) use proc::{
    Fork, PidFd, WaitOutcome, child_prepare, current_pid, exit_now, fork, kill, parent_pid, pid_alive, thread_count,
    wait_exit, wait_readable,
};
pub use pthread::{LockStatus, RobustMutex};
pub(crate) use signal::{EventFd, SigintGuard, ignore_signal, take_sigint};

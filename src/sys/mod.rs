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
//! 1. **Before the fork, in the parent**: count the threads; flush Rust's stdout buffer if there is
//!    only this one (otherwise both processes print it — with other threads running, one of them may
//!    hold stdout's lock indefinitely, so mproc leaves it alone, and the child never flushes the copy)
//!    and this process is not itself descended from a fork of a multi-threaded parent (it has one
//!    thread then, but a lock it inherited may be held by a thread it does not have);
//!    allocate every shared object the child needs (segments, result slots).
//!    Forking a multi-threaded parent copies only the calling thread; any lock another thread held
//!    (stdout's, a logger's, a user mutex) stays locked forever in the child, and any data another
//!    thread was midway through updating stays half-updated. mproc refuses such a fork
//!    ([`crate::Error::MultiThreaded`]) unless the caller opted in with the `unsafe`
//!    [`crate::ForkPolicy::allow_threads`], promising that no other thread is in such a state.
//! 2. **In the child, before its code runs** (`child_prepare`): only async-signal-safe work — no
//!    allocation, no lock: note whether the parent was verified single-threaded; close every
//!    descriptor of mproc's own (pidfds, eventfds, Manager sockets: the registry in `fds`) except
//!    the ones this child is handed (`keep_fds`); `prctl(PR_SET_PDEATHSIG)` so the child dies with
//!    its parent *process* (the signal follows the forking thread, so a child forked from a helper
//!    thread gets a handler that checks `getppid` first: see `child_prepare`), and `getppid` to
//!    catch a parent that died before that call.
//! 3. **The child's code** then runs on the child's copy of the parent's stack, inside
//!    `catch_unwind`. Its panic message is copied into a shared slot allocated in step 1.
//! 4. **The child never returns** into the parent's stack frames and never runs the parent's
//!    destructors: it calls `_exit` ([`exit_now`]). Dropping copies of the parent's objects in the
//!    child would, for example, unlink a named segment the parent still uses; a copied descriptor
//!    wrapper (`Registered`) knows it belongs to another pid and does not close the number.
//!    [`exit_now`] flushes stdout first only when the parent was verified single-threaded (rule 1):
//!    after an opted-in fork of a multi-threaded parent, **mproc takes no lock in the child at all**
//!    — taking stdout's could block forever — and neither does any child that child forks, at any
//!    depth.
//!
//! Anything shared across the fork must live in a `MAP_SHARED` mapping: a private copy-on-write
//! page written by the child is never seen by the parent.

#![allow(clippy::disallowed_methods)] // the one place raw calls are allowed

mod fds;
mod futex;
mod mem;
mod proc;
mod pthread;
mod signal;
mod ticks;

pub(crate) use fds::Registered;
pub(crate) use futex::{FutexWait, futex_wait, futex_wake_all, futex_wake_one};
pub(crate) use mem::{
    MAX_NAME_LEN, Mapped, advise_huge_pages, map_fd, map_shared_anonymous, page_size, random_bytes, shm_create,
    shm_open, shm_remove, shm_unlink, store_fence, stream_store, stream_store_shared, streams, streams_shared,
    unlink_path, unmap,
};
pub use proc::monotonic_ns;
pub(crate) use proc::{
    Fork, PidFd, WaitOutcome, chdir_root, child_prepare, close_all_fds_except, coarse_ns, current_pid, exit_now, fork,
    kill, locks_may_be_held, on_main_thread, parent_pid, pid_alive, pid_running, pidfd_open_raw, poll_two, set_user,
    thread_count, wait_exit, wait_readable,
};
pub use pthread::{LockStatus, RobustMutex};
pub(crate) use signal::{EventFd, SigintGuard, ignore_signal, take_sigint};
pub(crate) use ticks::{ns_per_tick, ticks};

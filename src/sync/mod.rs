//! Process-shared synchronisation: [`Lock`] (crash-recoverable), [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Condition`], [`Event`], [`Barrier`].
//!
//! All of them live in shared memory created before fork and work between any processes that map
//! it. Locks are robust pthread mutexes; the others are small atomic protocols that sleep on shared
//! futexes (never `FUTEX_PRIVATE_FLAG`, which cannot wake another process).

mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockError, LockGuard, LockStats, RLock, RLockGuard, WaitHistogram};
pub use semaphore::{BoundedSemaphore, Semaphore};

use std::time::{Duration, Instant};

/// Remaining time until `deadline`, or `None` if it has passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        None => Some(None),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|r| !r.is_zero()).map(Some),
    }
}

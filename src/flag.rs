//! The early-exit flag: one process says "stop", every other sees it within microseconds.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_utils::CachePadded;

use crate::error::Result;
use crate::shm::{Arena, ShmBox};

/// Anything that can tell workers to stop early: the book's six ways share this trait.
///
/// Backends that talk to a server (Manager, Redis) can fail, hence the `Result`s; the shared
/// memory ones never do, and offer infallible inherent methods of the same names.
pub trait EarlyExit {
    /// Raise the flag.
    fn set(&self) -> Result<()>;
    /// Whether it is raised. Called in hot loops: keep it cheap.
    fn is_set(&self) -> Result<bool>;
    /// Lower it.
    fn clear(&self) -> Result<()>;
}

/// The early-exit flag in shared memory (the book's `RawValue` way): a `bool` on a cache line of
/// its own, so polling it never contends with other data.
///
/// Memory ordering: `set` is a Release store and `is_set` an Acquire load, so whatever the setter
/// wrote before `set` (say, the factor it found) is visible to a process that sees the flag set.
/// An Acquire load is a plain load on x86-64 and `ldar` on aarch64: cheap enough to call every
/// iteration. Cache coherence makes the store visible to the other cores within ~1–2 µs.
///
/// # Example
/// ```
/// let found = mproc::Flag::new()?;
/// assert!(!found.is_set());
/// found.set();
/// assert!(found.is_set());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Flag {
    b: ShmBox<CachePadded<AtomicBool>>,
}

impl std::fmt::Debug for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Flag").field(&self.is_set()).finish()
    }
}

impl Flag {
    /// A new, lowered flag in its own anonymous shared segment.
    pub fn new() -> Result<Flag> {
        Ok(Flag { b: ShmBox::new(CachePadded::new(AtomicBool::new(false)))? })
    }

    /// A new, lowered flag in `arena`.
    pub fn new_in(arena: &Arena) -> Result<Flag> {
        Ok(Flag { b: arena.alloc(CachePadded::new(AtomicBool::new(false)))? })
    }

    /// Raises the flag.
    #[inline]
    pub fn set(&self) {
        self.b.store(true, Ordering::Release);
    }

    /// Whether it is raised.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.b.load(Ordering::Acquire)
    }

    /// Lowers it.
    #[inline]
    pub fn clear(&self) {
        self.b.store(false, Ordering::Release);
    }
}

impl EarlyExit for Flag {
    fn set(&self) -> Result<()> {
        Flag::set(self);
        Ok(())
    }
    fn is_set(&self) -> Result<bool> {
        Ok(Flag::is_set(self))
    }
    fn clear(&self) -> Result<()> {
        Flag::clear(self);
        Ok(())
    }
}

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox, ShmSafe};
use crate::sync::remaining;
use crate::sys::{FutexWait, futex_wait, futex_wake_one};

/// The shared state: a count, and how many sleep waiting for it (so `release` skips the wake-up
/// system call when nobody sleeps).
///
/// Ordering: `release` bumps `count` then reads `waiters`; a sleeper bumps `waiters` then lets
/// the kernel re-read `count` (FUTEX_WAIT compares atomically). Both sides are SeqCst, so at
/// least one of them sees the other's write: no wake-up is lost.
#[repr(C)]
struct SemState {
    count: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: two atomics; zero is a valid state; no Drop.
unsafe impl ShmSafe for SemState {}

impl SemState {
    fn try_take(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self.count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }
}

/// A process-shared counting semaphore.
///
/// # Example
/// ```
/// let slots = mproc::Semaphore::new(2)?;
/// slots.acquire()?;
/// assert!(slots.try_acquire());
/// assert!(!slots.try_acquire());
/// slots.release()?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    st: ShmBox<SemState>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.value()).finish()
    }
}

impl Semaphore {
    /// A semaphore holding `value` permits.
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore { st: ShmBox::new(SemState { count: AtomicU32::new(value), waiters: AtomicU32::new(0) })? })
    }

    /// The same, in `arena`.
    pub fn new_in(arena: &Arena, value: u32) -> Result<Semaphore> {
        Ok(Semaphore { st: arena.alloc(SemState { count: AtomicU32::new(value), waiters: AtomicU32::new(0) })? })
    }

    /// Permits available now.
    pub fn value(&self) -> u32 {
        self.st.count.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        self.st.try_take()
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(None)
    }

    /// Takes a permit, waiting at most `timeout` ([`Error::Timeout`] then).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<()> {
        if self.st.try_take() {
            return Ok(());
        }
        self.st.waiters.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            if self.st.try_take() {
                break Ok(());
            }
            let Some(left) = remaining(deadline) else { break Err(Error::Timeout) };
            if futex_wait(&self.st.count, 0, left) == FutexWait::TimedOut && remaining(deadline).is_none() {
                break if self.st.try_take() { Ok(()) } else { Err(Error::Timeout) };
            }
        };
        self.st.waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Returns a permit, waking one waiter. Fails only if the count would overflow `u32`.
    pub fn release(&self) -> Result<()> {
        self.release_up_to(
            u32::MAX,
            "Semaphore::release: the count would overflow u32 (released more often than acquired?)",
        )
    }

    fn release_up_to(&self, max: u32, why: &str) -> Result<()> {
        self.st
            .count
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| (c < max).then_some(c + 1))
            .map_err(|_| Error::Misuse(why.into()))?;
        if self.st.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_one(&self.st.count);
        }
        Ok(())
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value, like Python's
/// `BoundedSemaphore`: an extra `release` is a bug, reported as [`Error::Misuse`] instead of
/// silently creating a permit.
///
/// # Example
/// ```
/// let s = mproc::BoundedSemaphore::new(1)?;
/// s.acquire()?;
/// s.release()?;
/// assert!(matches!(s.release(), Err(mproc::Error::Misuse(_))));
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
    max: u32,
}

impl std::fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedSemaphore").field("value", &self.value()).field("max", &self.max).finish()
    }
}

impl BoundedSemaphore {
    /// A semaphore holding `value` permits, and never more.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore { sem: Semaphore::new(value)?, max: value })
    }

    /// The same, in `arena`.
    pub fn new_in(arena: &Arena, value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore { sem: Semaphore::new_in(arena, value)?, max: value })
    }

    /// Permits available now.
    pub fn value(&self) -> u32 {
        self.sem.value()
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.sem.acquire()
    }

    /// Takes a permit, waiting at most `timeout` ([`Error::Timeout`] then).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.sem.acquire_timeout(timeout)
    }

    /// Returns a permit; [`Error::Misuse`] if that would exceed the initial value.
    pub fn release(&self) -> Result<()> {
        self.sem.release_up_to(self.max, "BoundedSemaphore::release: released more often than acquired")
    }
}

impl Sealed for Semaphore {}

impl NamedObject for Semaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<SemState>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.st);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Semaphore's; its one part is its state (atomics: any bits are valid).
        Ok(Semaphore { st: unsafe { r.part::<SemState>(0)? } })
    }
}

impl Sealed for BoundedSemaphore {}

impl NamedObject for BoundedSemaphore {
    const KIND: ObjectKind = ObjectKind::BoundedSemaphore;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<SemState>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.sem.st);
        parts.value(u64::from(self.max));
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        let max = u32::try_from(r.value(1)).map_err(|_| r.corrupt(format!("bound {}", r.value(1))))?;
        // SAFETY: the entry is a BoundedSemaphore's; its part is its state (atomics only).
        Ok(BoundedSemaphore { sem: Semaphore { st: unsafe { r.part::<SemState>(0)? } }, max })
    }
}

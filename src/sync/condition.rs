//! [`Condition`]: a process-shared condition variable over mproc's [`Lock`], like Python's
//! `multiprocessing.Condition`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox, ShmSafe};
use crate::sync::{Lock, LockError, LockGuard, remaining};
use crate::sys::{futex_wait, futex_wake_all, futex_wake_one};

/// Protocol: `seq` counts notifications. A waiter reads `seq` *while holding the lock*, counts
/// itself in `waiters`, releases the lock and sleeps while `seq` is unchanged; a notifier changes
/// the protected state under the lock, bumps `seq` and wakes if `waiters > 0` (both SeqCst). A
/// notification after the waiter read `seq` changes it, so the futex returns at once: none is
/// lost. Wake-ups may be spurious, as with every condition variable: wait in a loop on the
/// condition itself ([`Condition::wait_while`] does).
#[repr(C)]
struct CondState {
    seq: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: two atomics (every bit pattern valid); no pointers; no Drop.
unsafe impl ShmSafe for CondState {}

/// A condition variable for processes: wait for a change another process makes under a [`Lock`].
///
/// # Example: wait in one process for a value another sets
/// ```
/// use mproc::{Condition, Process, RawValue};
///
/// let cond = Condition::new()?;
/// let ready = RawValue::new(0u32)?;
/// let mut p = Process::spawn(|| -> mproc::Result<()> {
///     let _g = cond.lock()?;
///     ready.store(1);
///     cond.notify_all();
///     Ok(())
/// })?;
/// let g = cond.lock()?;
/// let _g = cond.wait_while(g, || ready.load() == 0)?;
/// assert_eq!(ready.load(), 1);
/// drop(_g);
/// assert!(p.join()?.success());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    st: ShmBox<CondState>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("waiters", &self.st.waiters.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Condition {
    /// A condition with a new lock of its own.
    pub fn new() -> Result<Condition> {
        Condition::with_lock(Lock::new()?)
    }

    /// A condition over an existing `lock` (Python's `Condition(lock)`).
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Ok(Condition { lock, st: ShmBox::new(CondState { seq: AtomicU32::new(0), waiters: AtomicU32::new(0) })? })
    }

    /// A condition with its own lock, both in `arena`.
    pub fn new_in(arena: &Arena) -> Result<Condition> {
        Ok(Condition {
            lock: Lock::new_in(arena)?,
            st: arena.alloc(CondState { seq: AtomicU32::new(0), waiters: AtomicU32::new(0) })?,
        })
    }

    /// The lock (Python's `acquire`/`release` go through it).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the lock (see [`Lock::lock`]).
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock.lock()
    }

    fn check<'a>(&self, guard: &LockGuard<'a>) -> Result<()> {
        if !guard.is_of(&self.lock) {
            return Err(Error::Misuse("Condition::wait: the guard is not of this condition's lock".into()));
        }
        Ok(())
    }

    /// Releases the lock, sleeps until notified (or spuriously), takes the lock again.
    pub fn wait<'a>(&'a self, guard: LockGuard<'a>) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        self.wait_until(guard, None).map(|(g, _)| g)
    }

    /// Like [`Condition::wait`] for at most `timeout`; the `bool` says whether it was notified
    /// (`false`: the time ran out, the lock is held again either way).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: LockGuard<'a>,
        timeout: Duration,
    ) -> Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        self.wait_until(guard, Some(Instant::now() + timeout))
    }

    fn wait_until<'a>(
        &'a self,
        guard: LockGuard<'a>,
        deadline: Option<Instant>,
    ) -> Result<(LockGuard<'a>, bool), LockError<LockGuard<'a>>> {
        if let Err(e) = self.check(&guard) {
            return Err(LockError::Failed(e));
        }
        let st = &*self.st;
        let seen = st.seq.load(Ordering::SeqCst);
        st.waiters.fetch_add(1, Ordering::SeqCst);
        drop(guard);
        let mut notified = true;
        match remaining(deadline) {
            None => notified = false,
            Some(left) => {
                if futex_wait(&st.seq, seen, left) == crate::sys::FutexWait::TimedOut {
                    notified = st.seq.load(Ordering::SeqCst) != seen;
                }
            }
        }
        st.waiters.fetch_sub(1, Ordering::SeqCst);
        match self.lock.lock() {
            Ok(g) => Ok((g, notified)),
            Err(e) => Err(e),
        }
    }

    /// Waits while `condition()` holds (checked under the lock, before each wait).
    pub fn wait_while<'a>(
        &'a self,
        mut guard: LockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<LockGuard<'a>, LockError<LockGuard<'a>>> {
        while condition() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Wakes one waiter (call it with the lock held, after changing the state).
    pub fn notify(&self) {
        self.st.seq.fetch_add(1, Ordering::SeqCst);
        if self.st.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_one(&self.st.seq);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.st.seq.fetch_add(1, Ordering::SeqCst);
        if self.st.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.st.seq);
        }
    }
}

impl Sealed for Condition {}

impl NamedObject for Condition {
    const KIND: ObjectKind = ObjectKind::Condition;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[Lock::SHAPE, shape::<CondState>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(self.lock.raw_box());
        parts.part(&self.st);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Condition's: its lock, then its state (atomics only).
        unsafe { Ok(Condition { lock: Lock::rebuild_at(r, 0, false)?, st: r.part::<CondState>(1)? }) }
    }
}

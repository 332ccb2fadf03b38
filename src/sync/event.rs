use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox, ShmSafe};
use crate::sync::remaining;
use crate::sys::{futex_wait, futex_wake_all};

/// `state` is 0 (clear) or 1 (set). Ordering: `set` stores `state` (SeqCst, so writes made
/// before `set` are visible to whoever sees it set) then reads `waiters`; a waiter bumps
/// `waiters` then sleeps only while the kernel still reads 0. No wake-up is lost.
#[repr(C)]
struct EventState {
    state: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: two atomics; zero is a valid (clear) state; no Drop.
unsafe impl ShmSafe for EventState {}

/// A process-shared event: `wait` blocks until another process calls `set`.
///
/// # Example
/// ```
/// let ev = mproc::Event::new()?;
/// assert!(matches!(ev.wait_timeout(std::time::Duration::from_millis(1)), Err(mproc::Error::Timeout)));
/// ev.set();
/// ev.wait_timeout(std::time::Duration::from_millis(1))?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    st: ShmBox<EventState>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Result<Event> {
        Ok(Event { st: ShmBox::new(EventState { state: AtomicU32::new(0), waiters: AtomicU32::new(0) })? })
    }

    /// The same, in `arena`.
    pub fn new_in(arena: &Arena) -> Result<Event> {
        Ok(Event { st: arena.alloc(EventState { state: AtomicU32::new(0), waiters: AtomicU32::new(0) })? })
    }

    /// Sets it and wakes every waiter, in every process.
    pub fn set(&self) {
        self.st.state.store(1, Ordering::SeqCst);
        if self.st.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.st.state);
        }
    }

    /// Clears it.
    pub fn clear(&self) {
        self.st.state.store(0, Ordering::SeqCst);
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.st.state.load(Ordering::Acquire) == 1
    }

    /// Blocks until set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks until set, or fails with [`Error::Timeout`] once `timeout` has passed (Python's
    /// returns `False` then; mproc has one shape for every timeout).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        if self.wait_until(Some(Instant::now() + timeout)) { Ok(()) } else { Err(Error::Timeout) }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        self.st.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            if self.is_set() {
                break true;
            }
            let Some(left) = remaining(deadline) else { break false };
            futex_wait(&self.st.state, 0, left);
        };
        self.st.waiters.fetch_sub(1, Ordering::SeqCst);
        set
    }
}

impl Sealed for Event {}

impl NamedObject for Event {
    const KIND: ObjectKind = ObjectKind::Event;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<EventState>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.st);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Event's; its one part is its state (atomics: any bits are valid).
        Ok(Event { st: unsafe { r.part::<EventState>(0)? } })
    }
}

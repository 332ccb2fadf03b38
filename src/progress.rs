//! [`Progress`]: how far a parallel job has got, counted by the workers in shared memory and
//! summed by whoever watches.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox};

/// Per-worker progress counters in shared memory: each process bumps its own cache-padded slot
/// (so bumps never contend: ~1 ns instead of ~20 for one shared counter under contention), and
/// [`Progress::total`] sums them, from any process.
///
/// Slot 0 is the parent's (any process outside a Pool); Pool worker `i` uses slot `i + 1`
/// (modulo the number of slots). Create it before the pool, in the pool's context.
///
/// # Example
/// ```
/// use mproc::{Pool, Progress};
///
/// let pool = Pool::builder().processes(2).context(Progress::new(3)?).build()?;
/// pool.map(|p: &Progress, x: u64| { p.add(1); x }, 0..1000u64, None)?;
/// assert_eq!(pool.context().total(), 1000);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Progress {
    slots: ShmBox<[CachePadded<AtomicU64>]>,
}

impl Progress {
    /// `slots` counters, all zero: give it the worker count + 1.
    pub fn new(slots: usize) -> Result<Progress> {
        if slots == 0 {
            return Err(Error::InvalidArgument("Progress needs at least 1 slot".into()));
        }
        Ok(Progress { slots: ShmBox::zeroed_slice(slots)? })
    }

    /// `slots` counters in `arena` (a [`NamedArena`](crate::NamedArena)'s, to watch a job
    /// from another program).
    pub fn new_in(arena: &Arena, slots: usize) -> Result<Progress> {
        if slots == 0 {
            return Err(Error::InvalidArgument("Progress needs at least 1 slot".into()));
        }
        Ok(Progress { slots: arena.alloc_zeroed_slice(slots)? })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Adds `n` to this process's slot (exact from any number of threads: an uncontended atomic
    /// add on a line no other process writes).
    #[inline]
    pub fn add(&self, n: u64) {
        let i = crate::worker::index().map_or(0, |w| (w + 1) % self.slots.len());
        self.slots[i].fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of every slot (a snapshot: the workers go on counting).
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// Each slot's count.
    pub fn per_slot(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).collect()
    }

    /// Sets every slot back to zero (while nobody counts).
    pub fn reset(&self) {
        for s in self.slots.iter() {
            s.store(0, Ordering::Relaxed);
        }
    }
}

impl Clone for Progress {
    fn clone(&self) -> Self {
        Progress { slots: self.slots.clone() }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress").field("total", &self.total()).field("slots", &self.slots()).finish()
    }
}

impl Sealed for Progress {}

impl NamedObject for Progress {
    const KIND: ObjectKind = ObjectKind::Progress;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<CachePadded<AtomicU64>>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.slots);
        parts.value(self.slots.len() as u64);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        if r.value(1) == 0 {
            // `add` picks a slot modulo their number.
            return Err(r.corrupt("no progress slots"));
        }
        // SAFETY: the entry is a Progress's: its padded counters (atomics), then their number.
        Ok(Progress { slots: unsafe { r.slice::<CachePadded<AtomicU64>>(0, r.value(1))? } })
    }
}

//! The early-exit flag: one process says "stop", every other sees it within microseconds.

use std::sync::atomic::{AtomicU8, Ordering};

use crossbeam_utils::CachePadded;

use crate::error::Result;
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
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

/// The early-exit flag in shared memory (the book's `RawValue` way): one byte on a cache line of
/// its own, so polling it never contends with other data. The byte is an `AtomicU8`, not an
/// `AtomicBool`: another process may write any value there, and any non-zero byte means "set".
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
    b: ShmBox<CachePadded<AtomicU8>>,
}

impl std::fmt::Debug for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Flag").field(&self.is_set()).finish()
    }
}

impl Flag {
    /// A new, lowered flag in its own anonymous shared segment.
    pub fn new() -> Result<Flag> {
        Ok(Flag { b: ShmBox::new(CachePadded::new(AtomicU8::new(0)))? })
    }

    /// A new, lowered flag in `arena`.
    pub fn new_in(arena: &Arena) -> Result<Flag> {
        Ok(Flag { b: arena.alloc(CachePadded::new(AtomicU8::new(0)))? })
    }

    /// Raises the flag.
    #[inline]
    pub fn set(&self) {
        self.b.store(1, Ordering::Release);
    }

    /// Whether it is raised.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.b.load(Ordering::Acquire) != 0
    }

    /// Lowers it.
    #[inline]
    pub fn clear(&self) {
        self.b.store(0, Ordering::Release);
    }
}

impl Sealed for Flag {}

impl NamedObject for Flag {
    const KIND: ObjectKind = ObjectKind::Flag;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<CachePadded<AtomicU8>>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.b);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Flag's; its one part is its padded byte (an atomic).
        Ok(Flag { b: unsafe { r.part::<CachePadded<AtomicU8>>(0)? } })
    }
}

/// The shared-memory flags cannot fail: their trait methods forward to the inherent ones.
macro_rules! infallible_early_exit {
    ($($t:ty),*) => { $(
        impl EarlyExit for $t {
            fn set(&self) -> Result<()> {
                <$t>::set(self);
                Ok(())
            }
            fn is_set(&self) -> Result<bool> {
                Ok(<$t>::is_set(self))
            }
            fn clear(&self) -> Result<()> {
                <$t>::clear(self);
                Ok(())
            }
        }
    )* };
}
infallible_early_exit!(Flag, MmapFlag);

/// The early-exit flag as one byte of an `mmap`'d page — the book's `mmap.mmap(-1, 1)` way.
///
/// Functionally the same as [`Flag`] (a shared byte read and written atomically), minus the
/// cache-line padding; it exists so the book's "mmap" and "mmap redux" experiments have their
/// own backend. Memory ordering as for [`Flag`].
#[derive(Clone)]
pub struct MmapFlag {
    seg: crate::Segment,
}

impl std::fmt::Debug for MmapFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MmapFlag").field(&self.is_set()).finish()
    }
}

impl MmapFlag {
    /// A lowered flag in a fresh one-page anonymous shared mapping.
    pub fn new() -> Result<MmapFlag> {
        Ok(MmapFlag { seg: crate::Segment::anonymous(1)? })
    }

    fn byte(&self) -> &std::sync::atomic::AtomicU8 {
        self.seg.get(0).expect("offset 0 of a page holds a byte")
    }

    /// Raises the flag (writes byte 0).
    #[inline]
    pub fn set(&self) {
        self.byte().store(1, Ordering::Release);
    }

    /// Whether byte 0 is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.byte().load(Ordering::Acquire) != 0
    }

    /// Lowers it.
    #[inline]
    pub fn clear(&self) {
        self.byte().store(0, Ordering::Release);
    }
}

/// What one `is_set` costs on this backend, from this process: the median of `samples` timed
/// polls (after one untimed poll, which may open a connection).
///
/// # Example
/// ```
/// let f = mproc::Flag::new()?;
/// let cost = mproc::flag::poll_cost(&f, 101)?;
/// assert!(cost < std::time::Duration::from_micros(50));
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn poll_cost(flag: &dyn EarlyExit, samples: usize) -> Result<std::time::Duration> {
    flag.is_set()?;
    let samples = samples.max(1);
    // Cheap backends are timed in batches, so the clock's own cost does not dominate.
    let batch = 64;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = std::time::Instant::now();
        for _ in 0..batch {
            std::hint::black_box(flag.is_set()?);
        }
        times.push(t.elapsed() / batch);
        if times.last().is_some_and(|d| *d > std::time::Duration::from_micros(5)) && times.len() >= 5 {
            break; // an expensive backend: a few samples say enough
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// How many loop iterations to run between polls so that polling costs at most `max_overhead`
/// (a fraction, e.g. 0.01) of the work, given one poll's cost and one iteration's cost.
///
/// This is the trade-off of early exit: polling more often stops workers sooner after a find,
/// but costs more when nothing is found. The interval returned is the shortest (so the stop
/// delay, `interval × iteration`, is the shortest) whose polling cost stays within budget.
/// The book polls every 1000 iterations: in Python that is ~35 µs of work, far more than a
/// shared-memory poll; in Rust it is ~2 µs, less than one Redis round trip.
///
/// ```
/// use std::time::Duration;
/// // A 20 µs round trip against 2 ns iterations, at 1 %: poll every million iterations (2 ms).
/// assert_eq!(mproc::flag::poll_interval(Duration::from_micros(20), Duration::from_nanos(2), 0.01), 1_000_000);
/// // A 1 ns shared-memory load: poll every 50 iterations (100 ns).
/// assert_eq!(mproc::flag::poll_interval(Duration::from_nanos(1), Duration::from_nanos(2), 0.01), 50);
/// ```
pub fn poll_interval(poll: std::time::Duration, iteration: std::time::Duration, max_overhead: f64) -> u64 {
    let iter_ns = iteration.as_secs_f64().max(1e-12);
    let k = (poll.as_secs_f64() / (iter_ns * max_overhead.clamp(1e-6, 1.0))).ceil();
    if k.is_finite() { (k as u64).max(1) } else { u64::MAX }
}

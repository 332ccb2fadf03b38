use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox};
use crate::sys::{self, LockStatus, RobustMutex};

/// A failed or qualified lock attempt. `OwnerDied` still hands over the guard, like std's
/// `PoisonError`: the lock is held and already made consistent, so the caller can repair the
/// data it protects.
///
/// `?` converts it into [`Error`] (dropping, and so releasing, any guard); use
/// [`LockError::recover`] to keep the guard and carry on.
#[must_use]
pub enum LockError<G> {
    /// The previous holder died while holding the lock. `guard` holds it now.
    OwnerDied {
        /// The dead holder's pid, when known.
        pid: Option<i32>,
        /// The lock, held by the caller.
        guard: G,
    },
    /// `try_lock`: someone else holds it.
    WouldBlock,
    /// `lock_timeout`: the time ran out.
    Timeout,
    /// The lock can never be taken again.
    Unrecoverable,
    /// Something else failed (opening a lock file, a system call).
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, if the lock was taken (`OwnerDied`); the error otherwise. For callers whose
    /// protected data cannot be left half-updated (or who check it themselves).
    pub fn recover(self) -> Result<G> {
        match self {
            LockError::OwnerDied { guard, .. } => Ok(guard),
            other => Err(other.into()),
        }
    }

    #[inline]
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied { pid, guard } => LockError::OwnerDied { pid, guard: f(guard) },
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::Unrecoverable => LockError::Unrecoverable,
            LockError::Failed(e) => LockError::Failed(e),
        }
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied { pid, .. } => Error::OwnerDied { pid },
            LockError::WouldBlock => Error::WouldBlock,
            LockError::Timeout => Error::Timeout,
            LockError::Unrecoverable => Error::LockUnrecoverable,
            LockError::Failed(e) => e,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied { pid, .. } => f.debug_struct("OwnerDied").field("pid", pid).finish_non_exhaustive(),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Unrecoverable => f.write_str("Unrecoverable"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied { pid, .. } => fmt::Display::fmt(&Error::OwnerDied { pid: *pid }, f),
            LockError::WouldBlock => fmt::Display::fmt(&Error::WouldBlock, f),
            LockError::Timeout => fmt::Display::fmt(&Error::Timeout, f),
            LockError::Unrecoverable => fmt::Display::fmt(&Error::LockUnrecoverable, f),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// Contention figures of one lock, summed over every process that used it.
///
/// The first reading in a process spins about 5 ms once (on x86-64) to calibrate the counter the
/// waits were timed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStats {
    /// Times the lock was taken.
    pub acquisitions: u64,
    /// Times a locker found it held and had to wait (including timed waits that gave up).
    pub contended: u64,
    /// Total time lockers spent waiting (including timed waits that gave up).
    pub wait: Duration,
    /// Timed waits that gave up.
    pub timeouts: u64,
    /// How long the contended acquisitions waited, in power-of-two buckets.
    pub waits: WaitHistogram,
}

/// Buckets of [`WaitHistogram`].
const BUCKETS: usize = 44;

/// The waits of a lock's contended acquisitions, by powers of two: bucket `k` counts the waits of
/// `2^k` to `2^(k+1)` ticks of the clock they were timed with (the CPU's cycle counter where it
/// has a constant-rate one, ~0.3 ns a tick here; else nanoseconds), the last bucket everything
/// longer. A percentile is the upper bound of its bucket: at most twice the true figure, and
/// exact enough to tell a 100 ns hand-over from a 20 µs sleep. Kept in the lock's shared memory
/// (352 bytes per lock, so per `Value`, `Array`, `Queue` and `Condition` too), one plain add per
/// contended acquisition (under the lock), none on the uncontended path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WaitHistogram {
    buckets: [u64; BUCKETS],
    /// Picoseconds per tick, to convert bucket bounds.
    ps_per_tick: u64,
}

impl Default for WaitHistogram {
    fn default() -> Self {
        WaitHistogram { buckets: [0; BUCKETS], ps_per_tick: 1000 }
    }
}

impl fmt::Debug for WaitHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitHistogram")
            .field("count", &self.count())
            .field("p50", &self.percentile(0.5))
            .field("p99", &self.percentile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

impl WaitHistogram {
    /// Waits recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn bound(&self, k: usize) -> Duration {
        let ticks = 1u128 << (k + 1);
        Duration::from_nanos((ticks * u128::from(self.ps_per_tick) / 1000).min(u128::from(u64::MAX)) as u64)
    }

    /// The wait that `q` (0.0 to 1.0) of the waits did not exceed, as its bucket's upper bound;
    /// `None` with no waits.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (k, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(self.bound(k));
            }
        }
        Some(self.bound(BUCKETS - 1))
    }

    /// The upper bound of the longest wait's bucket.
    pub fn max(&self) -> Option<Duration> {
        self.buckets.iter().rposition(|&c| c > 0).map(|k| self.bound(k))
    }

    /// The waits recorded after `earlier` (an older reading of the same lock): what a watcher
    /// shows for one interval.
    pub fn since(&self, earlier: &WaitHistogram) -> WaitHistogram {
        let mut h = *self;
        for (b, e) in h.buckets.iter_mut().zip(&earlier.buckets) {
            *b = b.saturating_sub(*e);
        }
        h
    }

    /// The non-empty buckets: `(from, to, count)`.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(k, &c)| (if k == 0 { Duration::ZERO } else { self.bound(k - 1) }, self.bound(k), c))
    }
}

/// The bucket of a wait of `ticks`.
#[inline]
fn bucket(ticks: u64) -> usize {
    ((63 - ticks.max(1).leading_zeros()) as usize).min(BUCKETS - 1)
}

/// The shared part of a lock: the mutex, the holder's pid, contention counters.
///
/// The first three counters and the histogram are written only by the holder, inside the
/// critical section, with plain (relaxed load + store) updates: the mutex orders them, so no
/// atomic read-modify-write is needed and they cost well under a nanosecond. Timed waits that
/// give up do not hold the lock, so they count in separate fields with `fetch_add` (a rare,
/// already slow path). Waits are in ticks of `sys::ticks` (converted when read). Readers in
/// other processes may see figures a few acquisitions old.
#[repr(C)]
pub(crate) struct RawLock {
    mutex: RobustMutex,
    recursive: bool,
    owner: AtomicI32,
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_ticks: AtomicU64,
    timeouts: AtomicU64,
    timeout_wait_ticks: AtomicU64,
    wait_hist: [AtomicU64; BUCKETS],
}

// Not `ShmSafe`: zeroed bytes are not an initialised robust mutex, and `recursive` is a `bool`.
// A `RawLock` is only ever made by `new_box`, in place, through the crate-private allocators.

impl RawLock {
    /// # Safety
    /// `p` is valid, aligned, zeroed or otherwise writable memory at the lock's final address.
    unsafe fn init(p: *mut RawLock, recursive: bool) -> Result<()> {
        // SAFETY: per the caller; the mutex field is initialised in place, the rest written whole.
        unsafe {
            std::ptr::addr_of_mut!((*p).recursive).write(recursive);
            std::ptr::addr_of_mut!((*p).owner).write(AtomicI32::new(0));
            std::ptr::addr_of_mut!((*p).acquisitions).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).contended).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).wait_ticks).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).timeouts).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).timeout_wait_ticks).write(AtomicU64::new(0));
            std::ptr::addr_of_mut!((*p).wait_hist).write([const { AtomicU64::new(0) }; BUCKETS]);
            RobustMutex::init(std::ptr::addr_of_mut!((*p).mutex), recursive)
        }
    }

    /// The lock an opener of a named arena finds at the offset in parameter `i`; its
    /// `recursive` byte is checked (0 or 1, and the kind asked for) before any `&RawLock` exists.
    ///
    /// # Safety
    /// The arena's creator initialised a `RawLock` there (see [`Rebuild::part`]).
    pub(crate) unsafe fn rebuild(r: &Rebuild<'_>, i: usize, recursive: bool) -> Result<ShmBox<RawLock>> {
        let p = r.range(i, std::mem::size_of::<RawLock>(), std::mem::align_of::<RawLock>())?.cast::<RawLock>();
        // SAFETY: `p` is in bounds and aligned (checked by `range`); the byte is read through a
        // raw pointer, so a value other than 0 or 1 is seen as a number, never as a `bool`. It
        // is written once, before the lock was published.
        let byte = unsafe { std::ptr::addr_of!((*p).recursive).cast::<u8>().read_volatile() };
        if byte != u8::from(recursive) {
            return Err(r.corrupt(format!("its lock's kind byte is {byte}, expected {}", u8::from(recursive))));
        }
        // SAFETY: in bounds, aligned, initialised by the creator per the caller's contract.
        Ok(unsafe { ShmBox::from_raw(p, r.map.clone()) })
    }

    pub(crate) fn new_box(arena: Option<&Arena>, recursive: bool) -> Result<ShmBox<RawLock>> {
        // Decide the wait clock now, in the creating process, not on a first contended wait in a
        // child (deciding reads a file: an allocation, never wanted after a fork).
        let _ = sys::ticks();
        // SAFETY: `init` fully initialises the fresh slot in place; a RawLock holds no pointers,
        // needs no Drop, and is only used through the mutex's own process-shared protocol and
        // atomics (`recursive` is written once, before the lock is shared).
        unsafe {
            match arena {
                Some(a) => a.alloc_in_place(|p| RawLock::init(p, recursive)),
                None => ShmBox::new_in_place(|p| RawLock::init(p, recursive)),
            }
        }
    }

    /// Blocking lock. `Err(OwnerDied)` still means the lock is held.
    #[inline]
    pub(crate) fn acquire(&self) -> Result<(), LockError<()>> {
        let st = self.mutex.try_lock();
        if st == LockStatus::Busy {
            return self.acquire_contended(None);
        }
        self.finish(st, false, 0)
    }

    #[cold]
    fn acquire_contended(&self, timeout: Option<Duration>) -> Result<(), LockError<()>> {
        let t0 = sys::ticks();
        let st = match timeout {
            None => self.mutex.lock(),
            Some(t) => self.mutex.lock_timeout(t),
        };
        self.finish(st, true, sys::ticks().saturating_sub(t0))
    }

    pub(crate) fn try_acquire(&self) -> Result<(), LockError<()>> {
        self.finish(self.mutex.try_lock(), false, 0)
    }

    pub(crate) fn acquire_timeout(&self, timeout: Duration) -> Result<(), LockError<()>> {
        let st = self.mutex.try_lock();
        if st == LockStatus::Busy {
            return self.acquire_contended(Some(timeout));
        }
        self.finish(st, false, 0)
    }

    /// `waited`: ticks of `sys::ticks` (0 if it did not wait).
    #[inline]
    fn finish(&self, st: LockStatus, contended: bool, waited: u64) -> Result<(), LockError<()>> {
        let died = match st {
            LockStatus::Acquired => None,
            LockStatus::OwnerDied => {
                // The dead holder's pid is still in `owner`: it is cleared only on a clean unlock.
                let pid = self.owner.load(Ordering::Relaxed);
                self.mutex.make_consistent();
                Some(if pid == 0 { None } else { Some(pid) })
            }
            LockStatus::Busy => return Err(LockError::WouldBlock),
            LockStatus::TimedOut => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.timeout_wait_ticks.fetch_add(waited, Ordering::Relaxed);
                return Err(LockError::Timeout);
            }
            LockStatus::Unrecoverable => return Err(LockError::Unrecoverable),
        };
        // Held from here on: the mutex orders these plain updates.
        self.owner.store(sys::current_pid(), Ordering::Relaxed);
        bump(&self.acquisitions, 1);
        if contended {
            bump(&self.contended, 1);
            bump(&self.wait_ticks, waited);
            bump(&self.wait_hist[bucket(waited)], 1);
        }
        match died {
            None => Ok(()),
            Some(pid) => Err(LockError::OwnerDied { pid, guard: () }),
        }
    }

    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    pub(crate) unsafe fn release(&self) {
        if !self.recursive {
            self.owner.store(0, Ordering::Relaxed);
        }
        // SAFETY: the caller holds the lock.
        unsafe { self.mutex.unlock() }
    }

    pub(crate) fn stats(&self) -> LockStats {
        let timeouts = self.timeouts.load(Ordering::Relaxed);
        let ticks =
            self.wait_ticks.load(Ordering::Relaxed).saturating_add(self.timeout_wait_ticks.load(Ordering::Relaxed));
        let rate = sys::ns_per_tick();
        let mut waits = WaitHistogram { buckets: [0; BUCKETS], ps_per_tick: (rate * 1000.0).round().max(1.0) as u64 };
        for (b, a) in waits.buckets.iter_mut().zip(&self.wait_hist) {
            *b = a.load(Ordering::Relaxed);
        }
        LockStats {
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed) + timeouts,
            wait: Duration::from_nanos((ticks as f64 * rate) as u64),
            timeouts,
            waits,
        }
    }

    pub(crate) fn reset_stats(&self) {
        self.acquisitions.store(0, Ordering::Relaxed);
        self.contended.store(0, Ordering::Relaxed);
        self.wait_ticks.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
        self.timeout_wait_ticks.store(0, Ordering::Relaxed);
        for b in &self.wait_hist {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Add under the lock: a load and a store, not a locked read-modify-write.
#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// A process-shared mutual-exclusion lock that survives the death of its holder.
///
/// Built on a robust, process-shared pthread mutex. When a process dies holding it (even by
/// SIGKILL), the next `lock()` returns [`LockError::OwnerDied`] — carrying the guard and the dead
/// holder's pid — instead of hanging forever, and the lock keeps working. Every lock counts its
/// acquisitions, contended acquisitions and wait time ([`Lock::stats`]), readable from any process.
///
/// Clone the handle freely; clones and forked copies all refer to the same lock.
///
/// # Example
/// ```
/// let lock = mproc::Lock::new()?;
/// {
///     let _guard = lock.lock()?; // released when the guard drops
/// }
/// assert_eq!(lock.stats().acquisitions, 1);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    raw: ShmBox<RawLock>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Holds a [`Lock`]; releases it on drop. Must be dropped by the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    raw: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether this guard holds `lock`.
    pub(crate) fn is_of(&self, lock: &Lock) -> bool {
        std::ptr::eq(self.raw, &*lock.raw)
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its thread holds the lock.
        unsafe { self.raw.release() }
    }
}

impl Lock {
    /// A new lock in its own anonymous shared segment.
    pub fn new() -> Result<Lock> {
        Ok(Lock { raw: RawLock::new_box(None, false)? })
    }

    /// A new lock in `arena`.
    pub fn new_in(arena: &Arena) -> Result<Lock> {
        Ok(Lock { raw: RawLock::new_box(Some(arena), false)? })
    }

    #[inline]
    fn guard(&self, r: Result<(), LockError<()>>) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        let g = || LockGuard { raw: &self.raw, _not_send: PhantomData };
        match r {
            Ok(()) => Ok(g()),
            Err(e) => Err(e.map(|()| g())),
        }
    }

    /// Blocks until the lock is held.
    ///
    /// Errors: [`LockError::OwnerDied`] (the lock is held; see its docs), or
    /// [`LockError::Unrecoverable`].
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.guard(self.raw.acquire())
    }

    /// Takes the lock only if it is free now ([`LockError::WouldBlock`] otherwise).
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.guard(self.raw.try_acquire())
    }

    /// Waits at most `timeout` ([`LockError::Timeout`] then). Any duration works, sub-second too.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.guard(self.raw.acquire_timeout(timeout))
    }

    /// Contention figures, summed over all processes.
    pub fn stats(&self) -> LockStats {
        self.raw.stats()
    }

    /// Sets the figures back to zero (do it while no process is using the lock).
    pub fn reset_stats(&self) {
        self.raw.reset_stats()
    }
}

impl Lock {
    /// Size and alignment of the shared part, for a named arena's layout fingerprints.
    pub(crate) const SHAPE: (usize, usize) = shape::<RawLock>();

    /// The shared part, for a named arena's directory.
    pub(crate) fn raw_box(&self) -> &ShmBox<RawLock> {
        &self.raw
    }

    /// # Safety
    /// As for [`RawLock::rebuild`].
    pub(crate) unsafe fn rebuild_at(r: &Rebuild<'_>, i: usize, recursive: bool) -> Result<Lock> {
        // SAFETY: forwarded.
        Ok(Lock { raw: unsafe { RawLock::rebuild(r, i, recursive)? } })
    }
}

impl Sealed for Lock {}

impl NamedObject for Lock {
    const KIND: ObjectKind = ObjectKind::Lock;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<RawLock>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.raw);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: forwarded (the entry is a Lock's, whose one part is its RawLock).
        unsafe { Lock::rebuild_at(r, 0, false) }
    }
}

impl Sealed for RLock {}

impl NamedObject for RLock {
    const KIND: ObjectKind = ObjectKind::RLock;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<RawLock>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.raw);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: forwarded (the entry is an RLock's, whose one part is its RawLock).
        Ok(RLock { raw: unsafe { RawLock::rebuild(r, 0, true)? } })
    }
}

/// A re-entrant process-shared lock: the thread that holds it may take it again; it is released
/// when every guard is dropped. Crash-recoverable like [`Lock`].
#[derive(Clone)]
pub struct RLock {
    raw: ShmBox<RawLock>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").field("stats", &self.raw.stats()).finish_non_exhaustive()
    }
}

/// Holds one level of an [`RLock`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    raw: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its thread holds (one level of) the lock.
        unsafe { self.raw.release() }
    }
}

impl RLock {
    /// A new re-entrant lock in its own anonymous shared segment.
    pub fn new() -> Result<RLock> {
        Ok(RLock { raw: RawLock::new_box(None, true)? })
    }

    /// A new re-entrant lock in `arena`.
    pub fn new_in(arena: &Arena) -> Result<RLock> {
        Ok(RLock { raw: RawLock::new_box(Some(arena), true)? })
    }

    #[inline]
    fn guard(&self, r: Result<(), LockError<()>>) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        let g = || RLockGuard { raw: &self.raw, _not_send: PhantomData };
        match r {
            Ok(()) => Ok(g()),
            Err(e) => Err(e.map(|()| g())),
        }
    }

    /// Blocks until held (immediately if this thread already holds it).
    pub fn lock(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.guard(self.raw.acquire())
    }

    /// Takes it only if free or already held by this thread.
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.guard(self.raw.try_acquire())
    }

    /// Waits at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.guard(self.raw.acquire_timeout(timeout))
    }

    /// Contention figures (every level counts as an acquisition).
    pub fn stats(&self) -> LockStats {
        self.raw.stats()
    }
}

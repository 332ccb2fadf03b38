//! The primitives measured side by side, behind one small trait so the measuring loop is
//! compiled once per primitive (no dynamic dispatch in the timed path).

use std::cell::OnceCell;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;
use mproc::raw::{LockStatus, RobustMutex};
use mproc::{LockError, Segment, ShmSafe};

use super::sys::{self, PlainMutex, PosixSem, RecordLock, SysvSem};

/// How an acquisition went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Got {
    Acquired,
    /// The previous holder died holding it; the caller holds it now (robust mutexes only).
    OwnerDied,
}

/// How the critical section's counter is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// A plain load + store of one shared counter, which only the lock makes exact.
    Plain,
    /// One shared `fetch_add` (no lock).
    Atomic,
    /// Each process adds to its own padded counter; the counters are summed at the end.
    PerProcess,
}

type Res<T> = std::result::Result<T, String>;

/// Takes a lock, and says whether it was contended. With `probe` (the instrumented pass) a
/// try-lock goes first and the blocking `lock` runs only if it failed; without, `lock` alone
/// runs, so the throughput pass pays for nothing but the lock.
#[inline(always)]
fn acquire(probe: bool, try_lock: impl FnOnce() -> Res<bool>, lock: impl FnOnce() -> Res<()>) -> Res<bool> {
    let contended = probe && !try_lock()?;
    if !probe || contended {
        lock()?;
    }
    Ok(contended)
}

/// One primitive, placed in shared memory (or in the kernel) by the parent before the fork.
pub trait Primitive {
    const COUNTING: Counting = Counting::Plain;
    /// Per-process set-up, run in each child after the fork: files are opened here, never
    /// inherited (an inherited descriptor shares its lock with the parent).
    fn prepare(&self) -> Res<()> {
        Ok(())
    }
    /// Takes the lock (after one non-blocking try first when `probe`), runs `cs`, releases.
    /// Returns whether that try found it taken.
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool>;
}

/// A `T` alone in its own anonymous shared segment (created before the fork, so children share it).
pub struct InShm<T> {
    _seg: Segment,
    ptr: *const T,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> InShm<T> {
    /// A zeroed `T` (`ShmSafe` says zero is a valid value).
    pub fn zeroed() -> mproc::Result<InShm<T>> {
        let seg = Segment::anonymous(std::mem::size_of::<T>().max(1))?;
        let ptr = seg.get::<T>(0)? as *const T;
        Ok(InShm { _seg: seg, ptr, _t: PhantomData })
    }

    /// A `T` initialised in place by `init` (for pthread objects, which must not move).
    pub fn init(init: impl FnOnce(*mut T) -> io::Result<()>) -> Res<InShm<T>> {
        let s = InShm::<T>::zeroed().map_err(|e| e.to_string())?;
        init(s.ptr.cast_mut()).map_err(|e| e.to_string())?;
        Ok(s)
    }
}

impl<T> std::ops::Deref for InShm<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into `_seg`, in bounds and aligned (checked by `Segment::get`),
        // and the mapping lives as long as `self`; `T: ShmSafe` makes shared access sound.
        unsafe { &*self.ptr }
    }
}

/// `lock`/`try_lock` of mproc's guard-returning locks, with the probe. Always inlined, as a
/// caller's own `match lock.lock()` would be: left a call, its moves of the `Result`s cost more
/// instructions than the lock itself and the `lock` row would measure this harness.
#[inline(always)]
fn guarded<'a, G>(
    probe: bool,
    try_lock: impl FnOnce() -> std::result::Result<G, LockError<G>>,
    lock: impl FnOnce() -> std::result::Result<G, LockError<G>> + 'a,
) -> Res<(G, Got, bool)> {
    let taken = |r: std::result::Result<G, LockError<G>>| match r {
        Ok(g) => Ok(Some((g, Got::Acquired))),
        Err(LockError::OwnerDied { guard, .. }) => Ok(Some((guard, Got::OwnerDied))),
        Err(LockError::WouldBlock) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    if probe && let Some((g, got)) = taken(try_lock())? {
        return Ok((g, got, false));
    }
    match taken(lock())? {
        Some((g, got)) => Ok((g, got, probe)),
        None => Err("a blocking lock returned WouldBlock".into()),
    }
}

/// mproc's `Lock`: a robust process-shared pthread mutex plus the holder's pid and statistics.
pub struct MprocLock(pub mproc::Lock);

impl Primitive for MprocLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let (g, got, contended) = guarded(probe, || self.0.try_lock(), || self.0.lock())?;
        cs(got);
        drop(g);
        Ok(contended)
    }
}

/// The bare robust mutex under `Lock`.
pub struct Robust(pub mproc::ShmBox<RobustMutex>);

impl Primitive for Robust {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let mut contended = false;
        let mut st = if probe { self.0.try_lock() } else { LockStatus::Busy };
        if st == LockStatus::Busy {
            contended = probe;
            st = self.0.lock();
        }
        let got = match st {
            LockStatus::Acquired => Got::Acquired,
            LockStatus::OwnerDied => {
                self.0.make_consistent();
                Got::OwnerDied
            }
            other => return Err(format!("robust mutex: {other:?}")),
        };
        cs(got);
        // SAFETY: this thread took the lock above (Acquired or OwnerDied).
        unsafe { self.0.unlock() };
        Ok(contended)
    }
}

/// A process-shared pthread mutex without the robust attribute.
pub struct Plain(pub InShm<PlainMutex>);

impl Primitive for Plain {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let contended = acquire(probe, || Ok(self.0.try_lock()), || self.0.lock().map_err(|e| e.to_string()))?;
        cs(Got::Acquired);
        // SAFETY: taken above by this thread.
        unsafe { self.0.unlock() };
        Ok(contended)
    }
}

/// `raw_sync::locks::Mutex`: a process-shared, non-robust pthread mutex (unmaintained crate).
pub struct RawSync {
    _mem: Segment,
    lock: Box<dyn raw_sync::locks::LockImpl>,
}

impl RawSync {
    pub fn new() -> Res<RawSync> {
        use raw_sync::locks::LockInit;
        let mem = Segment::anonymous(4096).map_err(|e| e.to_string())?;
        let base = mem.as_ptr();
        // SAFETY: `base` is a fresh, zeroed, page-aligned mapping of 4096 bytes, more than
        // `Mutex::size_of` (a pthread_mutex_t plus alignment); the data pointer is never
        // dereferenced by us, and the mapping outlives `lock` (both in `RawSync`).
        let (lock, _) = unsafe { raw_sync::locks::Mutex::new(base, base.add(2048)) }.map_err(|e| e.to_string())?;
        Ok(RawSync { _mem: mem, lock })
    }
}

impl Primitive for RawSync {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        // The probe is a real try (pthread_mutex_trylock on its mutex): raw_sync's own `try_lock`
        // is a timed lock, which sleeps once in the kernel when the lock is held, and rejects
        // sub-second timeouts other than zero (the timespec is not normalised).
        // SAFETY: `as_raw` is the pthread mutex raw_sync initialised in `_mem`, which lives as
        // long as `self`.
        if probe && unsafe { sys::pthread_try_raw(self.lock.as_raw()) } {
            cs(Got::Acquired);
            return self.lock.release().map(|()| false).map_err(|e| format!("raw_sync release: {e}"));
        }
        let g = self.lock.lock().map_err(|e| format!("raw_sync: {e}"))?;
        cs(Got::Acquired);
        drop(g);
        Ok(probe)
    }
}

/// A futex lock (Drepper's three states: 0 free, 1 held, 2 held with sleepers), on a shared
/// futex (no `FUTEX_PRIVATE_FLAG`, which only works inside one process).
pub struct FutexLock(pub InShm<AtomicU32>);

impl FutexLock {
    #[inline]
    fn try_lock(&self) -> bool {
        self.0.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[cold]
    fn lock_slow(&self) {
        // Acquire: the holder's writes before its Release unlock are visible once we own it.
        while self.0.swap(2, Ordering::Acquire) != 0 {
            sys::futex_wait(&self.0, 2);
        }
    }
}

impl Primitive for FutexLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let free = self.try_lock();
        if !free {
            self.lock_slow();
        }
        cs(Got::Acquired);
        // Release: publishes the critical section's writes to the next holder.
        if self.0.swap(0, Ordering::Release) == 2 {
            sys::futex_wake_one(&self.0);
        }
        Ok(probe && !free)
    }
}

/// A test-and-test-and-set spinlock that backs off with `crossbeam_utils::Backoff` (spins,
/// then yields the CPU).
pub struct SpinLock(pub InShm<AtomicU32>);

impl Primitive for SpinLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let w = &*self.0;
        let mut contended = false;
        if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            contended = probe;
            let b = Backoff::new();
            loop {
                while w.load(Ordering::Relaxed) != 0 {
                    b.snooze();
                }
                if w.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    break;
                }
            }
        }
        cs(Got::Acquired);
        w.store(0, Ordering::Release);
        Ok(contended)
    }
}

/// Two counters of a ticket lock.
#[repr(C)]
pub struct Tickets {
    next: AtomicU32,
    serving: AtomicU32,
}

// SAFETY: atomics only; zero is a free lock; no pointers, no Drop.
unsafe impl ShmSafe for Tickets {}

/// A ticket lock: take a number, spin until it is served. Fair (FIFO) and pure spinning: when
/// there are more processes than CPUs, the next in line is often not running.
pub struct TicketLock(pub InShm<Tickets>);

impl Primitive for TicketLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let t = &*self.0;
        let mine = t.next.fetch_add(1, Ordering::Relaxed);
        // Acquire pairs with the Release store of the previous holder.
        let contended = t.serving.load(Ordering::Acquire) != mine;
        while t.serving.load(Ordering::Acquire) != mine {
            std::hint::spin_loop();
        }
        cs(Got::Acquired);
        t.serving.store(mine.wrapping_add(1), Ordering::Release);
        Ok(probe && contended)
    }
}

/// mproc's `FileLock` (flock on a descriptor each process opens itself).
pub struct Flock(pub mproc::FileLock);

impl Primitive for Flock {
    fn prepare(&self) -> Res<()> {
        // Opens this process's descriptor; a try, so a holder elsewhere does not block us here.
        match self.0.try_lock() {
            Ok(_) | Err(LockError::WouldBlock) | Err(LockError::OwnerDied { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    }
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let (g, got, contended) = guarded(probe, || self.0.try_lock(), || self.0.lock())?;
        cs(got);
        drop(g);
        Ok(contended)
    }
}

fn open(path: &Path) -> Res<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// fs2's `lock_exclusive` (flock). Its `unlock` is shadowed by std's `File::unlock` of the same
/// name, so it is called by its full path.
pub struct Fs2 {
    pub path: PathBuf,
    pub file: OnceCell<File>,
}

impl Primitive for Fs2 {
    fn prepare(&self) -> Res<()> {
        let _ = self.file.set(open(&self.path)?);
        Ok(())
    }
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let f = self.file.get().ok_or("fs2: not prepared")?;
        let contended = probe && fs2::FileExt::try_lock_exclusive(f).is_err();
        if !probe || contended {
            fs2::FileExt::lock_exclusive(f).map_err(|e| format!("fs2 lock_exclusive: {e}"))?;
        }
        cs(Got::Acquired);
        fs2::FileExt::unlock(f).map_err(|e| format!("fs2 unlock: {e}"))?;
        Ok(contended)
    }
}

/// fcntl record locks on the whole file: classic POSIX (owned by the process) or OFD (owned by
/// the open file description, so each process opens the file itself).
pub struct Record {
    pub kind: RecordLock,
    pub path: PathBuf,
    pub file: OnceCell<File>,
}

impl Primitive for Record {
    fn prepare(&self) -> Res<()> {
        let _ = self.file.set(open(&self.path)?);
        Ok(())
    }
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let f = self.file.get().ok_or("fcntl: not prepared")?;
        let e = |e: io::Error| e.to_string();
        let contended = acquire(
            probe,
            || sys::record_lock(f, self.kind, false, false).map_err(e),
            || sys::record_lock(f, self.kind, false, true).map(drop).map_err(e),
        )?;
        cs(Got::Acquired);
        sys::record_lock(f, self.kind, true, false).map_err(e)?;
        Ok(contended)
    }
}

/// A POSIX unnamed semaphore of value 1, `sem_init` pshared, in shared memory.
pub struct PosixSemLock(pub InShm<PosixSem>);

impl Primitive for PosixSemLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let contended = acquire(probe, || Ok(self.0.try_wait()), || self.0.wait().map_err(|e| e.to_string()))?;
        cs(Got::Acquired);
        self.0.post();
        Ok(contended)
    }
}

/// A System V semaphore of value 1 (semop with `SEM_UNDO`).
pub struct SysvSemLock(pub SysvSem);

impl Primitive for SysvSemLock {
    #[inline]
    fn run(&self, probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        let e = |e: io::Error| e.to_string();
        let contended = acquire(probe, || self.0.try_wait().map_err(e), || self.0.wait().map_err(e))?;
        cs(Got::Acquired);
        self.0.post().map_err(e)?;
        Ok(contended)
    }
}

/// No lock: the critical section is one `fetch_add` on a shared counter.
pub struct Atomic;

impl Primitive for Atomic {
    const COUNTING: Counting = Counting::Atomic;
    #[inline]
    fn run(&self, _probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        cs(Got::Acquired);
        Ok(false)
    }
}

/// No lock: each process adds to its own cache-padded counter, summed at the end.
pub struct PerProcess;

impl Primitive for PerProcess {
    const COUNTING: Counting = Counting::PerProcess;
    #[inline]
    fn run(&self, _probe: bool, cs: impl FnOnce(Got)) -> Res<bool> {
        cs(Got::Acquired);
        Ok(false)
    }
}

impl Plain {
    pub fn new() -> Res<Plain> {
        // SAFETY: the fresh zeroed slot is exclusively ours, aligned, and stays in place for as
        // long as the segment lives (inside `InShm`).
        InShm::init(|p| unsafe { PlainMutex::init(p) }).map(Plain)
    }
}

impl PosixSemLock {
    pub fn new() -> Res<PosixSemLock> {
        // SAFETY: as in `Plain::new`: a fresh, exclusively owned, aligned slot that never moves.
        InShm::init(|p| unsafe { PosixSem::init(p, 1) }).map(PosixSemLock)
    }
}

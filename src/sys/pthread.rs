//! Robust, process-shared pthread mutexes.
//!
//! A robust mutex is the only lock on Linux that tells the next locker when its holder died:
//! the kernel walks the dead thread's robust list and marks the futex `OWNER_DIED`, and the next
//! `pthread_mutex_lock` returns `EOWNERDEAD` instead of hanging. It must then be marked consistent
//! (`pthread_mutex_consistent`) before unlock, or it becomes `ENOTRECOVERABLE` for good.

use std::cell::UnsafeCell;
use std::time::Duration;

use crate::error::{Error, Result};

unsafe extern "C" {
    // glibc >= 2.30. Not in the libc crate; declared here so the timed lock can use
    // CLOCK_MONOTONIC (pthread_mutex_timedlock only takes CLOCK_REALTIME, which jumps).
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// What a lock attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LockStatus {
    /// The caller holds the lock.
    Acquired,
    /// The caller holds the lock, and its previous holder died while holding it. Call
    /// [`RobustMutex::make_consistent`] before unlocking.
    OwnerDied,
    /// `try_lock` only: another process holds it.
    Busy,
    /// Timed lock only: the time ran out.
    TimedOut,
    /// A previous holder died and the lock was unlocked without being made consistent: it can
    /// never be locked again.
    Unrecoverable,
}

/// A bare robust, process-shared pthread mutex: no guard, no statistics.
///
/// This is the primitive under [`crate::Lock`]; it is public so benchmarks and the contention tool
/// can measure the bare cost beside `Lock`'s. Place it in shared memory with
/// [`RobustMutex::new_shared`] (or, `unsafe`, [`RobustMutex::init`] in place). It cannot be
/// borrowed out of a segment's bytes:
///
/// ```compile_fail
/// // Regression (robust_mutex_is_not_shm_safe): a zeroed arena slot is not an initialised mutex.
/// let arena = mproc::Arena::new(4096)?;
/// let m = arena.alloc_zeroed_slice::<mproc::raw::RobustMutex>(1)?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[repr(transparent)]
pub struct RobustMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex is designed to be used from many threads and processes
// at once; all access goes through pthread calls that synchronise internally.
unsafe impl Sync for RobustMutex {}
// SAFETY: the mutex holds no thread-bound state while unlocked; moving the handle is fine.
unsafe impl Send for RobustMutex {}

// Deliberately not `ShmSafe`: zeroed (or arbitrary) bytes are not a robust, process-shared
// mutex, so safe code must not be able to borrow one out of a segment. The only ways to get one
// are `new_shared` and the `unsafe` in-place `init`.

impl std::fmt::Debug for RobustMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobustMutex").finish_non_exhaustive()
    }
}

fn check(call: &'static str, rc: libc::c_int) -> Result<()> {
    if rc == 0 { Ok(()) } else { Err(Error::Sys { call, source: std::io::Error::from_raw_os_error(rc) }) }
}

fn status(rc: libc::c_int) -> LockStatus {
    match rc {
        0 => LockStatus::Acquired,
        libc::EOWNERDEAD => LockStatus::OwnerDied,
        libc::EBUSY => LockStatus::Busy,
        libc::ETIMEDOUT => LockStatus::TimedOut,
        // ENOTRECOVERABLE; EAGAIN (recursion limit) and EINVAL cannot happen on a mutex
        // initialised by `init`, and are treated the same way: the lock is unusable.
        _ => LockStatus::Unrecoverable,
    }
}

impl RobustMutex {
    /// Initialises a robust, process-shared mutex in place.
    ///
    /// # Safety
    /// - `this` is valid for writes, aligned, and stays at this address for as long as it is used
    ///   (a pthread mutex must not move after `pthread_mutex_init`);
    /// - no other thread or process uses the memory while it is initialised.
    pub unsafe fn init(this: *mut RobustMutex, recursive: bool) -> Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is local, initialised by pthread_mutexattr_init before any other use and
        // destroyed before it goes out of scope; `this` is valid per the caller's contract.
        unsafe {
            check("pthread_mutexattr_init", libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let a = attr.as_mut_ptr();
            let kind = if recursive { libc::PTHREAD_MUTEX_RECURSIVE } else { libc::PTHREAD_MUTEX_NORMAL };
            let r = check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
            )
            .and_then(|()| {
                check("pthread_mutexattr_setrobust", libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST))
            })
            .and_then(|()| check("pthread_mutexattr_settype", libc::pthread_mutexattr_settype(a, kind)))
            .and_then(|()| check("pthread_mutex_init", libc::pthread_mutex_init((*this).0.get(), a)));
            libc::pthread_mutexattr_destroy(a);
            r
        }
    }

    /// Allocates one in its own anonymous shared segment, so forked children share it.
    pub fn new_shared() -> Result<crate::shm::ShmBox<RobustMutex>> {
        // SAFETY: `init` fully initialises the fresh, exclusively owned slot at its final address;
        // a process-shared mutex is made to be used from several processes through `&self`.
        unsafe { crate::shm::ShmBox::new_in_place(|p| RobustMutex::init(p, false)) }
    }

    /// Blocks until the lock is held. Returns `Acquired`, `OwnerDied` or `Unrecoverable`.
    #[inline]
    pub fn lock(&self) -> LockStatus {
        // SAFETY: the mutex was initialised in place (the only way to get one) and never moved.
        status(unsafe { libc::pthread_mutex_lock(self.0.get()) })
    }

    /// Takes the lock if it is free. Returns `Acquired`, `OwnerDied`, `Busy` or `Unrecoverable`.
    #[inline]
    pub fn try_lock(&self) -> LockStatus {
        // SAFETY: as in `lock`.
        status(unsafe { libc::pthread_mutex_trylock(self.0.get()) })
    }

    /// Blocks for at most `timeout` (measured on `CLOCK_MONOTONIC`). The deadline's timespec is
    /// normalised (`tv_nsec < 1e9`), so sub-second timeouts work.
    pub fn lock_timeout(&self, timeout: Duration) -> LockStatus {
        let deadline = monotonic_deadline(timeout);
        // SAFETY: as in `lock`; `deadline` is a valid, normalised timespec.
        status(unsafe { pthread_mutex_clocklock(self.0.get(), libc::CLOCK_MONOTONIC, &deadline) })
    }

    /// After `OwnerDied`: marks the state consistent so the lock keeps working after unlock.
    pub fn make_consistent(&self) {
        // SAFETY: as in `lock`; on a mutex not in the owner-died state this returns EINVAL, harmless.
        unsafe { libc::pthread_mutex_consistent(self.0.get()) };
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling thread holds the lock.
    #[inline]
    pub unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}

/// `CLOCK_MONOTONIC` now + `timeout`, normalised. Saturates far in the future instead of overflowing.
pub(crate) fn monotonic_deadline(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let mut sec = now.tv_sec.saturating_add(timeout.as_secs().min(i64::MAX as u64 / 2) as i64);
    let mut nsec = now.tv_nsec + i64::from(timeout.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    // time_t and c_long are i64 on the 64-bit targets mproc supports.
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

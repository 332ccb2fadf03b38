//! Shared futexes: wait and wake on a 32-bit word in shared memory.
//!
//! Always without `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the process's address space
//! and never wakes a waiter in another process (std's `Mutex` and parking_lot use private ones,
//! which is why neither may be put in shared memory).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Why [`futex_wait`] returned. Callers re-check their condition in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken (or spuriously returned): re-check.
    Woken,
    /// The word no longer held `expected` when the call was made.
    Changed,
    /// The relative timeout passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, for at most `timeout` (`None`: forever).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; the timespec pointer is
    // null or points to a local that outlives the call. FUTEX_WAIT only reads the word.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32) };
    if rc == 0 {
        return FutexWait::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::Changed,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        _ => FutexWait::Woken, // EINTR: the caller re-checks
    }
}

fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access it beyond its address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n, 0usize, 0usize, 0u32) };
}

/// Wakes one waiter on `word`, in any process.
pub(crate) fn futex_wake_one(word: &AtomicU32) {
    wake(word, 1);
}

/// Wakes every waiter on `word`, in any process.
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    wake(word, i32::MAX);
}

//! eventfd, and the SIGINT handling of a Pool call.
//!
//! While a Pool call waits, SIGINT is caught: the handler (async-signal-safe: an atomic store and
//! a `write`) records it and wakes the waiting parent through the pool's eventfd. The previous
//! disposition is restored when the call returns, so outside Pool calls Ctrl-C behaves as usual.
//! Workers ignore SIGINT; they are stopped by the parent (or die with it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::fds::Registered;
use crate::error::{Error, Result};

/// An eventfd: a counter other processes (or a signal handler) bump to wake a `poll`. Registered,
/// so forked children close it unless it is passed in `keep_fds` (see [`super::fds`]).
#[derive(Debug)]
pub(crate) struct EventFd(Registered<OwnedFd>);

impl EventFd {
    pub(crate) fn new() -> Result<EventFd> {
        // SAFETY: eventfd takes an initial value and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::Sys { call: "eventfd", source: io::Error::last_os_error() });
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(EventFd(Registered::new(unsafe { OwnedFd::from_raw_fd(fd) })?))
    }

    /// Adds 1 (wakes a poller). Async-signal-safe.
    pub(crate) fn notify(&self) {
        notify_raw(self.0.as_raw_fd());
    }

    /// Resets the counter to 0 (non-blocking).
    pub(crate) fn drain(&self) {
        drain_raw(self.0.as_raw_fd());
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// Resets the counter of the eventfd `fd` to 0 (non-blocking). Async-signal-safe.
fn drain_raw(fd: i32) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a local u64; EAGAIN (already 0) is fine.
    unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

fn notify_raw(fd: i32) {
    let one = 1u64;
    // SAFETY: write is async-signal-safe; it reads 8 bytes from a local u64.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);
static SIGINT_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigint(_: libc::c_int) {
    SIGINT_SEEN.store(true, Ordering::SeqCst);
    let fd = SIGINT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        notify_raw(fd);
    }
}

/// Catches SIGINT until dropped, waking `fd` when it arrives; restores the old disposition then.
pub(crate) struct SigintGuard {
    old: libc::sigaction,
    old_fd: i32,
}

impl SigintGuard {
    pub(crate) fn install(fd: &EventFd) -> Result<SigintGuard> {
        let old_fd = SIGINT_FD.swap(fd.as_raw_fd(), Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only does
        // async-signal-safe work; `old` receives the previous action.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigint as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGINT, &sa, &mut old) != 0 {
                SIGINT_FD.store(old_fd, Ordering::SeqCst);
                return Err(Error::Sys { call: "sigaction", source: io::Error::last_os_error() });
            }
            Ok(SigintGuard { old, old_fd })
        }
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        // SAFETY: restores the action saved by `install`.
        unsafe { libc::sigaction(libc::SIGINT, &self.old, std::ptr::null_mut()) };
        SIGINT_FD.store(self.old_fd, Ordering::SeqCst);
    }
}

/// Whether SIGINT arrived since the last [`take_sigint`]; clears it.
pub(crate) fn take_sigint() -> bool {
    SIGINT_SEEN.swap(false, Ordering::SeqCst)
}

/// Sets `sig` to be ignored in this process (workers ignore SIGINT). Async-signal-safe.
pub(crate) fn ignore_signal(sig: i32) {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

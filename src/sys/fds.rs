//! The registry of mproc's own descriptors, so every forked child closes the ones it must not
//! inherit.
//!
//! `fork` copies every open descriptor. A child that keeps its parent's pidfds, eventfds or
//! Manager sockets keeps those objects alive (a socket peer never sees EOF), can read or write
//! them by mistake, and can exhaust its descriptor limit. So every descriptor mproc opens is
//! recorded here while it is open, and the child prologue closes all of them except the ones the
//! child is handed explicitly (`keep_fds`: a pool worker's wake-up eventfd, the Manager server's
//! listening socket).
//!
//! The registry is a fixed array of atomics: registering is a compare-exchange into a free slot,
//! and walking it in the child is a loop of loads and `close` calls — async-signal-safe, no
//! allocation, no lock. Descriptors a user opens are never touched.

use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// More than the default soft limit on open descriptors (1024).
const SLOTS: usize = 4096;
const FREE: i32 = -1;

static REGISTRY: [AtomicI32; SLOTS] = [const { AtomicI32::new(FREE) }; SLOTS];
/// Slots ever used: a prefix of `REGISTRY` (a descriptor takes the first free slot), so the
/// child walks only this far and touches no page of the registry beyond it (every page a fresh
/// child reads or writes costs it a fault).
static USED: AtomicUsize = AtomicUsize::new(0);

/// Records `fd` as one of mproc's own. Fails only when the registry is full.
fn register(fd: RawFd) -> Result<()> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        // Relaxed: the registry is read by this process's own children after fork, which sees
        // this thread's writes in program order; no other thread needs to see a slot's content.
        if slot.load(Ordering::Relaxed) == FREE
            && slot.compare_exchange(FREE, fd, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            USED.fetch_max(i + 1, Ordering::Relaxed);
            return Ok(());
        }
    }
    Err(Error::Sys {
        call: "register descriptor",
        source: std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("more than {SLOTS} mproc descriptors (pidfds, eventfds, Manager sockets) are open"),
        ),
    })
}

/// Forgets `fd` (before it is closed, so a number reused later is not closed by mistake).
fn unregister(fd: RawFd) {
    for slot in &REGISTRY[..USED.load(Ordering::Relaxed)] {
        if slot.compare_exchange(fd, FREE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return;
        }
    }
}

/// Child prologue: closes every registered descriptor except those in `keep`, and forgets them.
/// Async-signal-safe: loads, stores and `close`.
pub(crate) fn close_registered_except(keep: &[RawFd]) {
    for slot in &REGISTRY[..USED.load(Ordering::Relaxed)] {
        let fd = slot.load(Ordering::Relaxed);
        if fd != FREE && !keep.contains(&fd) {
            slot.store(FREE, Ordering::Relaxed);
            // SAFETY: `fd` was opened by mproc in the parent and inherited; the wrapper that owns
            // it in this child's copy of memory never closes it (it belongs to another pid), so
            // closing it here is the only close.
            unsafe { libc::close(fd) };
        }
    }
}

/// Whether `fd` is registered (tests).
#[cfg(test)]
pub(crate) fn is_registered(fd: RawFd) -> bool {
    REGISTRY.iter().any(|s| s.load(Ordering::Relaxed) == fd)
}

/// A descriptor of mproc's own (`F` owns it: an `OwnedFd`, a `UnixStream`, …), registered while
/// open so forked children close it.
///
/// Dropped in the process that opened it, it unregisters and closes the descriptor. Dropped in a
/// forked child — a copy of the parent's memory — it does nothing: the child prologue already
/// closed the inherited descriptor (or kept it on purpose), and the number may by now belong to
/// something the child opened itself.
#[derive(Debug)]
pub(crate) struct Registered<F: AsRawFd> {
    inner: ManuallyDrop<F>,
    pid: i32,
}

impl<F: AsRawFd> Registered<F> {
    /// Registers `f`'s descriptor; on failure `f` is dropped (closed) and the error returned.
    pub(crate) fn new(f: F) -> Result<Registered<F>> {
        register(f.as_raw_fd())?;
        Ok(Registered { inner: ManuallyDrop::new(f), pid: super::current_pid() })
    }

    /// The owner of the descriptor.
    pub(crate) fn get(&self) -> &F {
        &self.inner
    }

    /// The owner of the descriptor, mutably (to read from or write to a socket).
    pub(crate) fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F: AsRawFd> AsRawFd for Registered<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<F: AsRawFd> Drop for Registered<F> {
    fn drop(&mut self) {
        if super::current_pid() == self.pid {
            unregister(self.inner.as_raw_fd());
            // SAFETY: dropped once, here, and `inner` is not used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_descriptors_are_forgotten_when_dropped() {
        let f = Registered::new(std::fs::File::open("/dev/null").unwrap()).unwrap();
        let fd = f.as_raw_fd();
        assert!(is_registered(fd));
        drop(f);
        assert!(!is_registered(fd));
    }
}

//! [`FileLock`]: an advisory lock on a file (`flock`), as the book's file-locked counter uses.
//!
//! Built on std's `File::lock` family (stable since Rust 1.89: plain `flock`). The `fs2` crate
//! is not used: it is unmaintained, and its `lock_shared`/`unlock` methods are now shadowed by
//! std's inherent methods of the same names, which silently changes which code runs.

use std::cell::UnsafeCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sync::LockError;
use crate::sys;

/// The file this process has open, and which process opened it.
struct Opened {
    pid: i32,
    file: File,
}

/// An exclusive or shared `flock` on a file, usable from several processes.
///
/// An `flock` belongs to an *open file description*, and a forked child shares its parent's:
/// locking an inherited descriptor gives **no exclusion** between parent and child. `FileLock`
/// therefore notices when it is used in a process other than the one that opened the file and
/// opens it again there. Within one process, threads are serialised by a small lock word that
/// records the holder's pid, so a copy inherited across fork — even one taken while the parent
/// held the lock — is recognised as stale and taken over instead of blocking forever.
///
/// The kernel drops an `flock` when its holder dies, so a crashed holder never blocks the others.
/// Plain `flock` cannot say that this happened; [`FileLock::tracked`] can (it writes the holder's
/// pid into the lock file, one extra `pwrite` per lock and per unlock), and then `lock()` returns
/// [`LockError::OwnerDied`] after such a crash.
///
/// # Example
/// ```
/// let path = std::env::temp_dir().join(format!("mproc-doc-{}.lock", std::process::id()));
/// let lock = mproc::FileLock::new(&path);
/// {
///     let _g = lock.lock()?;
///     // ... read-modify-write a shared file ...
/// }
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct FileLock {
    path: PathBuf,
    tracked: bool,
    /// In-process lock word: 0 when free, else the pid of the process whose thread holds it.
    local: AtomicU32,
    /// Threads of this process asleep on `local` (so `leave` skips the wake-up syscall if none).
    waiters: AtomicU32,
    /// Accessed only by the thread that holds `local` with this process's pid.
    state: UnsafeCell<Option<Opened>>,
}

// SAFETY: `state` is only touched by the thread that holds `local` (see `enter`), which makes
// the access exclusive within a process; other processes have their own copies.
unsafe impl Sync for FileLock {}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLock").field("path", &self.path).field("tracked", &self.tracked).finish()
    }
}

/// Holds a [`FileLock`]; unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct FileLockGuard<'a> {
    lock: &'a FileLock,
    exclusive: bool,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for FileLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLockGuard").field("path", &self.lock.path).field("exclusive", &self.exclusive).finish()
    }
}

impl Drop for FileLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard holds `local`, so this thread has exclusive use of `state`.
        if let Some(o) = unsafe { &*self.lock.state.get() } {
            if self.lock.tracked && self.exclusive {
                let _ = o.file.write_at(&[0u8; PID_FIELD], 0);
            }
            let _ = o.file.unlock();
        }
        self.lock.leave();
    }
}

const PID_FIELD: usize = 16;

#[derive(Clone, Copy)]
enum Mode {
    Exclusive,
    Shared,
}

/// The entered in-process lock, released on drop unless handed to a guard.
struct Entered<'a>(&'a FileLock);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl FileLock {
    /// A lock on `path` (created, mode 0600, when first locked). Nothing is opened yet.
    pub fn new(path: impl AsRef<Path>) -> FileLock {
        FileLock {
            path: path.as_ref().to_owned(),
            tracked: false,
            local: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            state: UnsafeCell::new(None),
        }
    }

    /// Like [`FileLock::new`], but exclusive holders write their pid into the file, so a lock
    /// left by a holder that died is reported as [`LockError::OwnerDied`]. The file is reserved
    /// for the lock: do not keep data in it.
    pub fn tracked(path: impl AsRef<Path>) -> FileLock {
        FileLock { tracked: true, ..FileLock::new(path) }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the in-process lock word. A word holding another pid was copied from the parent at
    /// fork time; its holder does not exist in this process, so it is taken over.
    fn enter(&self) -> Entered<'_> {
        let me = sys::current_pid() as u32;
        loop {
            let cur = self.local.load(Ordering::Relaxed);
            if cur != me && self.local.compare_exchange(cur, me, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                return Entered(self);
            }
            if cur == me {
                // Another thread of this process holds it: sleep until it leaves. `waiters` is
                // raised before the kernel re-checks `local`, and `leave` clears `local` before
                // reading `waiters` (SeqCst both): one of the two always sees the other.
                self.waiters.fetch_add(1, Ordering::SeqCst);
                sys::futex_wait(&self.local, me, None);
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn leave(&self) {
        self.local.store(0, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake_one(&self.local);
        }
    }

    /// The file, open in this process (reopened after a fork). Called with `local` held.
    fn file(&self) -> Result<&File, LockError<FileLockGuard<'_>>> {
        let me = sys::current_pid();
        // SAFETY: the caller holds `local`, so this thread has exclusive use of `state`.
        let st = unsafe { &mut *self.state.get() };
        if st.as_ref().is_none_or(|o| o.pid != me) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&self.path)
                .map_err(|e| {
                    LockError::Failed(Error::Io(io::Error::new(
                        e.kind(),
                        format!("cannot open lock file {}: {e}", self.path.display()),
                    )))
                })?;
            // Replacing an inherited copy closes only this process's descriptor; the parent's
            // lock, if any, lives on through its own.
            *st = Some(Opened { pid: me, file });
        }
        Ok(&st.as_ref().expect("just opened").file)
    }

    fn finish<'a>(
        &'a self,
        entered: Entered<'a>,
        mode: Mode,
    ) -> Result<FileLockGuard<'a>, LockError<FileLockGuard<'a>>> {
        std::mem::forget(entered); // the guard releases `local` from now on
        let exclusive = matches!(mode, Mode::Exclusive);
        let guard = FileLockGuard { lock: self, exclusive, _not_send: PhantomData };
        if !(self.tracked && exclusive) {
            return Ok(guard);
        }
        let file = self.file()?;
        let mut field = [0u8; PID_FIELD];
        let n = file.read_at(&mut field, 0).unwrap_or(0);
        let previous = std::str::from_utf8(&field[..n])
            .ok()
            .and_then(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).parse::<i32>().ok());
        let mut mine = [0u8; PID_FIELD];
        let text = format!("{}\n", sys::current_pid());
        mine[..text.len()].copy_from_slice(text.as_bytes());
        if let Err(e) = file.write_at(&mine, 0) {
            return Err(LockError::Failed(Error::Io(e)));
        }
        match previous {
            Some(pid) if pid != 0 => Err(LockError::OwnerDied { pid: Some(pid), guard }),
            _ => Ok(guard),
        }
    }

    fn blocking(&self, mode: Mode) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        let entered = self.enter();
        let file = self.file()?;
        loop {
            let r = match mode {
                Mode::Exclusive => file.lock(),
                Mode::Shared => file.lock_shared(),
            };
            match r {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LockError::Failed(Error::Io(e))),
            }
        }
        self.finish(entered, mode)
    }

    fn attempt(
        &self,
        mode: Mode,
        deadline: Option<Instant>,
    ) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        let entered = self.enter();
        let file = self.file()?;
        let mut pause = Duration::from_micros(50);
        loop {
            let r = match mode {
                Mode::Exclusive => file.try_lock(),
                Mode::Shared => file.try_lock_shared(),
            };
            match r {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Failed(Error::Io(e))),
            }
            // flock has no timed form: back off, up to 5 ms between tries.
            let Some(left) = deadline.and_then(|d| d.checked_duration_since(Instant::now())) else {
                return Err(if deadline.is_some() { LockError::Timeout } else { LockError::WouldBlock });
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        self.finish(entered, mode)
    }

    /// Takes the lock exclusively, waiting as long as it takes.
    pub fn lock(&self) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        self.blocking(Mode::Exclusive)
    }

    /// Takes it exclusively if it is free now ([`LockError::WouldBlock`] otherwise).
    pub fn try_lock(&self) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        self.attempt(Mode::Exclusive, None)
    }

    /// Takes it exclusively, waiting at most `timeout` ([`LockError::Timeout`] then).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        self.attempt(Mode::Exclusive, Some(Instant::now() + timeout))
    }

    /// Takes a shared lock (other processes may hold shared locks too; none an exclusive one).
    pub fn lock_shared(&self) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        self.blocking(Mode::Shared)
    }

    /// Takes a shared lock if possible now.
    pub fn try_lock_shared(&self) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        self.attempt(Mode::Shared, None)
    }
}

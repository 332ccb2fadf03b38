//! [`FileLock`]: an advisory lock on a file (`flock`), as the book's file-locked counter uses.
//!
//! Built on std's `File::lock` family (stable since Rust 1.89: plain `flock`). The `fs2` crate
//! is not used: it is unmaintained, and its `lock_shared`/`unlock` methods are now shadowed by
//! std's inherent methods of the same names, which silently changes which code runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
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
/// opens it again there. Within one process, threads are serialised by an ordinary mutex.
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
    state: Mutex<Option<Opened>>,
    /// Pid of the process whose thread holds `state` locked with an `flock` taken (0: none).
    holder: AtomicI32,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLock").field("path", &self.path).field("tracked", &self.tracked).finish()
    }
}

/// Holds a [`FileLock`]; unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct FileLockGuard<'a> {
    lock: &'a FileLock,
    state: MutexGuard<'a, Option<Opened>>,
    exclusive: bool,
}

impl Drop for FileLockGuard<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.state.as_ref() {
            if self.lock.tracked && self.exclusive {
                let _ = o.file.write_at(&[0u8; PID_FIELD], 0);
            }
            let _ = o.file.unlock();
        }
        self.lock.holder.store(0, Ordering::Relaxed);
    }
}

const PID_FIELD: usize = 16;

enum Mode {
    Exclusive,
    Shared,
}

impl FileLock {
    /// A lock on `path` (created, mode 0600, when first locked). Nothing is opened yet.
    pub fn new(path: impl AsRef<Path>) -> FileLock {
        FileLock { path: path.as_ref().to_owned(), tracked: false, state: Mutex::new(None), holder: AtomicI32::new(0) }
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

    /// The file, open in this process (reopened after a fork).
    fn state(&self) -> Result<MutexGuard<'_, Option<Opened>>, LockError<FileLockGuard<'_>>> {
        let me = sys::current_pid();
        let h = self.holder.load(Ordering::Relaxed);
        if h != 0 && h != me {
            // Our copy of the in-process mutex was locked by a thread of the parent when this
            // process was forked; that thread does not exist here, so waiting would hang forever.
            return Err(LockError::Failed(Error::InvalidState(format!(
                "FileLock {} was held by process {h} when this process was forked from it; \
                 release file locks before forking",
                self.path.display()
            ))));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
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
            *st = Some(Opened { pid: me, file });
        }
        Ok(st)
    }

    fn finish<'a>(
        &'a self,
        state: MutexGuard<'a, Option<Opened>>,
        mode: Mode,
    ) -> Result<FileLockGuard<'a>, LockError<FileLockGuard<'a>>> {
        self.holder.store(sys::current_pid(), Ordering::Relaxed);
        let exclusive = matches!(mode, Mode::Exclusive);
        let guard = FileLockGuard { lock: self, state, exclusive };
        if !(self.tracked && exclusive) {
            return Ok(guard);
        }
        let file = &guard.state.as_ref().expect("opened by state()").file;
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
        let st = self.state()?;
        let file = &st.as_ref().expect("opened by state()").file;
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
        self.finish(st, mode)
    }

    fn attempt(&self, mode: Mode, deadline: Option<Instant>) -> Result<FileLockGuard<'_>, LockError<FileLockGuard<'_>>> {
        let st = self.state()?;
        let file = &st.as_ref().expect("opened by state()").file;
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
        self.finish(st, mode)
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

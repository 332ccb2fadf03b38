//! The guardian: a small process that removes this process's named objects if it dies without
//! removing them itself (SIGKILL, an abort, the OOM killer).
//!
//! # Design
//! - **A table of names to unlink**, in an anonymous shared mapping that the creator and its
//!   guardian both map: fixed slots of (state, kind, name). Only the creator writes it; the
//!   guardian reads it only once the creator is gone, when nothing writes it any more. The table
//!   is generic (`Kind`): today named segments (`shm_unlink`) and plain files (`unlink`), so other
//!   named objects can be registered the same way.
//! - **Registered before it exists**: a name enters the table *before* `shm_open` creates it, so
//!   there is no instant at which the object exists and nobody would remove it. Removing a name
//!   that was never created is harmless (its random name belongs to nobody else).
//! - **Started lazily** by the first registration, and **stopped** when the last registered name
//!   is released: a process with no named object has no guardian, and a test that checks for
//!   leftover children finds none. Stopping is `SIGKILL` through a pidfd, then `waitpid`: the
//!   creator is alive and has released every name, so the guardian has nothing left to do, and a
//!   kill cannot be ignored or delayed (not even by a stopped guardian).
//! - **Learns of the death through a pidfd** of the creator, opened by the guardian itself right
//!   after the fork and double-checked with `getppid()` (if the creator already died, the parent
//!   changed). A pidfd is about the *process*; `PR_SET_PDEATHSIG` would fire when the forking
//!   *thread* ends, which is why the guardian does not use it: that signal would make it unlink
//!   the names of a creator that is still alive. Without pidfds (kernels before 5.3) it polls
//!   `getppid()` every 100 ms.
//! - **Never unlinks a living creator's names**: it unlinks only after the pidfd reported the
//!   creator's end (or its parent changed), and only names still registered then. A name the
//!   creator handed on ([`Segment::persist`](crate::Segment::persist)) was released from the table
//!   first, so the guardian never sees it.
//! - **Holds nothing of anyone's**: it is forked without the fork policy's thread check because
//!   its whole life is async-signal-safe system calls on memory it reads (no allocation, no lock,
//!   no output), it closes every descriptor it inherited (so a pipe its creator's parent reads
//!   sees EOF when the creator ends), moves to `/` and ignores SIGINT, SIGTERM, SIGHUP, SIGQUIT and
//!   SIGTSTP, which a terminal or a supervisor sends to the whole process group: it must outlive the
//!   creator by the time it takes to unlink. It cannot survive SIGKILL of itself; `mproc shm
//!   clean` ([`Segment::cleanup_stale`](crate::Segment::cleanup_stale)) remains for that.
//! - **Forked children** (Pool workers, `Process` children) inherit a copy of the creator's
//!   registry state; it records the creator's pid, so a child neither writes the parent's table nor
//!   stops the parent's guardian. A child that creates named segments of its own starts its own
//!   guardian with a fresh table.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::shm::Mapping;
use crate::sys::{self, Fork, PidFd, WaitOutcome};

/// What to do with a registered name when its creator dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    /// A POSIX shared-memory object: `shm_unlink`.
    Shm = 1,
    /// A file path: `unlink`.
    File = 2,
}

const SLOTS: usize = 4096;
/// Longest name a slot holds (a shm name is at most 255 bytes plus the leading `/`).
const NAME_CAP: usize = 512 - 12;

const FREE: u32 = 0;
const LIVE: u32 = 1;

#[repr(C)]
struct Slot {
    state: AtomicU32,
    kind: AtomicU32,
    len: AtomicU32,
    bytes: [AtomicU8; NAME_CAP],
}

#[repr(C)]
struct Table {
    slots: [Slot; SLOTS],
}

/// A slot taken in the table, released with [`release`]. No `Drop`: a copy in a forked child
/// must not release the parent's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    slot: u32,
}

impl Ticket {
    /// As a number, to keep in an atomic.
    pub(crate) fn into_raw(self) -> u64 {
        u64::from(self.slot)
    }

    /// From [`Ticket::into_raw`].
    pub(crate) fn from_raw(v: u64) -> Ticket {
        Ticket { slot: v as u32 }
    }
}

struct Running {
    pid: i32,
    /// To signal exactly this process even if someone else reaped it and its pid was reused.
    pidfd: Option<PidFd>,
}

impl Running {
    /// Kills and reaps the guardian.
    fn stop(self) {
        match &self.pidfd {
            Some(fd) => fd.send_signal(libc::SIGKILL),
            None => {
                let _ = sys::kill(self.pid, libc::SIGKILL);
            }
        }
        // If something else reaped it already, there is nothing to wait for.
        let _ = sys::wait_exit(self.pid, true);
    }
}

struct Registry {
    /// The process this registry belongs to; a forked child's inherited copy is not its own.
    owner: i32,
    table: Arc<Mapping>,
    guardian: Option<Running>,
    live: usize,
}

impl Registry {
    fn table(&self) -> &Table {
        table_of(&self.table)
    }
}

fn table_of(m: &Mapping) -> &Table {
    // SAFETY: every table mapping is at least `size_of::<Table>()` bytes, page-aligned,
    // zero-filled at creation (a valid `Table`: atomics only) and lives as long as `m`.
    unsafe { &*m.ptr().cast::<Table>() }
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Registers `name` to be removed (as `kind`) if this process dies before it calls [`release`],
/// starting the guardian if none runs. Call it before creating the object.
pub(crate) fn register(kind: Kind, name: &CStr) -> Result<Ticket> {
    let bytes = name.to_bytes();
    if bytes.len() > NAME_CAP {
        return Err(Error::InvalidArgument(format!("name {name:?} is longer than the guardian's {NAME_CAP} bytes")));
    }
    let me = sys::current_pid();
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if reg.as_ref().is_none_or(|r| r.owner != me) {
        // First use here, or the copy a forked child inherited (its table and guardian are the
        // parent's: leave them alone, make our own).
        if let Some(inherited) = reg.take() {
            std::mem::forget(inherited);
        }
        let table = Mapping::anonymous(std::mem::size_of::<Table>())?;
        *reg = Some(Registry { owner: me, table, guardian: None, live: 0 });
    }
    let r = reg.as_mut().expect("set above");
    let table = r.table.clone();
    let t = table_of(&table);
    let Some(slot) = t.slots.iter().position(|s| s.state.load(Ordering::Relaxed) == FREE) else {
        return Err(Error::InvalidArgument(format!(
            "more than {SLOTS} named objects of this process are live; drop some before creating more"
        )));
    };
    let s = &t.slots[slot];
    s.kind.store(kind as u32, Ordering::Relaxed);
    for (a, &b) in s.bytes.iter().zip(bytes) {
        a.store(b, Ordering::Relaxed);
    }
    s.len.store(bytes.len() as u32, Ordering::Relaxed);
    // Release: the guardian reads the name after it sees LIVE (it reads only after our death,
    // which orders everything anyway; the pairing documents the intent).
    s.state.store(LIVE, Ordering::Release);
    r.live += 1;
    if let Err(e) = ensure_guardian(r) {
        s.state.store(FREE, Ordering::Release);
        r.live -= 1;
        return Err(e);
    }
    Ok(Ticket { slot: slot as u32 })
}

/// Forgets a registered name (it was removed, or handed on). Stops the guardian when it was the
/// last one. Does nothing in a process that does not own the ticket's registry.
pub(crate) fn release(ticket: Ticket) {
    let me = sys::current_pid();
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(r) = reg.as_mut().filter(|r| r.owner == me) else { return };
    let s = &r.table().slots[ticket.slot as usize];
    if s.state.swap(FREE, Ordering::Release) != LIVE {
        return;
    }
    r.live -= 1;
    if r.live == 0
        && let Some(g) = r.guardian.take()
    {
        g.stop();
    }
}

/// The pid of this process's guardian, if one runs.
pub(crate) fn guardian_pid() -> Option<i32> {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.as_ref().filter(|r| r.owner == sys::current_pid()).and_then(|r| r.guardian.as_ref().map(|g| g.pid))
}

fn ensure_guardian(r: &mut Registry) -> Result<()> {
    if let Some(g) = &r.guardian {
        match sys::wait_exit(g.pid, false) {
            Ok(WaitOutcome::Running) => return Ok(()),
            // Killed, or reaped by someone else's `wait`: start another.
            _ => r.guardian = None,
        }
    }
    let table = r.table() as *const Table as usize;
    let creator = sys::current_pid();
    // No fork-policy check and no stdout flush: the guardian never returns to Rust code that
    // could take a lock, allocate or print. It runs `guard` (async-signal-safe system calls on
    // the shared table) and `_exit`s, so forking it from a multi-threaded process is sound.
    // SAFETY: the child branch does only async-signal-safe work (`child_prepare`, `guard`) and
    // leaves through `exit_now`.
    match unsafe { sys::fork()? } {
        Fork::Child => {
            sys::child_prepare(creator, false, false, false, &[]);
            // SAFETY: `table` is the creator's table mapping, inherited by this child (MAP_SHARED,
            // so the creator's later writes are seen), and never unmapped here.
            let t = unsafe { &*(table as *const Table) };
            guard(t, creator)
        }
        Fork::Parent(pid) => {
            // Our unreaped child: the pid is its until we wait for it.
            r.guardian = Some(Running { pid, pidfd: PidFd::open(pid).ok() });
            Ok(())
        }
    }
}

/// The guardian's whole life. Async-signal-safe throughout: no allocation, no lock, no output.
fn guard(t: &Table, creator: i32) -> ! {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGTSTP, libc::SIGPIPE] {
        sys::ignore_signal(sig);
    }
    sys::close_all_fds_except(-1);
    sys::chdir_root();
    // Opened here, then checked: if the creator is still our parent, the pidfd is its (a pid is
    // not reused while its process is our living parent); if not, it is already gone.
    let pidfd = sys::pidfd_open_raw(creator);
    while sys::parent_pid() == creator {
        let (dead, _) = match pidfd {
            Some(fd) => sys::poll_two(fd, -1, -1),
            None => sys::poll_two(-1, -1, 100),
        };
        if dead {
            break;
        }
    }
    unlink_registered(t);
    sys::exit_now(0)
}

/// Removes every name still registered in `t` (its creator is gone).
fn unlink_registered(t: &Table) {
    let mut buf = [0u8; NAME_CAP + 1];
    for s in &t.slots {
        if s.state.load(Ordering::Acquire) != LIVE {
            continue;
        }
        let n = (s.len.load(Ordering::Relaxed) as usize).min(NAME_CAP);
        for (b, a) in buf.iter_mut().zip(&s.bytes[..n]) {
            *b = a.load(Ordering::Relaxed);
        }
        buf[n] = 0;
        let Ok(name) = CStr::from_bytes_until_nul(&buf[..=n]) else { continue };
        match s.kind.load(Ordering::Relaxed) {
            k if k == Kind::Shm as u32 => sys::shm_unlink(name),
            k if k == Kind::File as u32 => sys::unlink_path(name),
            _ => {}
        }
    }
}

/// A file that is removed when this handle is dropped — or, if the process is killed first
/// (SIGKILL, the OOM killer), by the process's guardian within a second of its death. For lock
/// files, count files and sockets that must not outlive their creator.
///
/// Only the process that created the handle removes the file: a forked child dropping its copy
/// (or exiting) leaves it alone.
///
/// # Example
/// ```
/// let dir = std::env::temp_dir();
/// let f = mproc::GuardedFile::new(dir.join(format!("mproc-doc-{}.lock", std::process::id())))?;
/// std::fs::write(f.path(), b"")?;
/// let path = f.path().to_owned();
/// drop(f);
/// assert!(!path.exists());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct GuardedFile {
    path: std::path::PathBuf,
    ticket: Ticket,
    owner: i32,
}

impl GuardedFile {
    /// Guards `path` (it need not exist yet; create it after this call, so there is no moment
    /// when it exists unguarded).
    pub fn new(path: impl Into<std::path::PathBuf>) -> Result<GuardedFile> {
        use std::os::unix::ffi::OsStrExt;
        let path = path.into();
        let abs = if path.is_absolute() { path.clone() } else { std::env::current_dir()?.join(&path) };
        let c = std::ffi::CString::new(abs.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidArgument(format!("path {} contains a NUL byte", path.display())))?;
        let ticket = register(Kind::File, &c)?;
        Ok(GuardedFile { path, ticket, owner: sys::current_pid() })
    }

    /// The guarded path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl std::fmt::Debug for GuardedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedFile").field("path", &self.path).finish()
    }
}

impl Drop for GuardedFile {
    fn drop(&mut self) {
        if self.owner == sys::current_pid() {
            let _ = std::fs::remove_file(&self.path);
            release(self.ticket);
        }
    }
}

//! fork, _exit, waitpid, pidfd, prctl, kill and signal dispositions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::fds::Registered;
use crate::error::{Error, Result};

/// What [`fork`] returned in this process.
pub(crate) enum Fork {
    /// We are the parent; this is the child's pid.
    Parent(i32),
    /// We are the new child.
    Child,
}

/// `fork(2)`. See the fork rules in the module docs of [`crate::sys`].
///
/// # Safety
/// The caller follows the fork rules: in the `Child` branch it does only async-signal-safe work
/// before running the child's code, and leaves with [`exit_now`], never by returning.
pub(crate) unsafe fn fork() -> Result<Fork> {
    init_pid_cache();
    // SAFETY: the caller promises to follow the fork rules in the child branch.
    match unsafe { libc::fork() } {
        -1 => Err(Error::Sys { call: "fork", source: io::Error::last_os_error() }),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Set in a child forked from a parent that was not verified single-threaded (fork rule 2):
/// another thread may have held stdout's lock at the fork, so the child must not take it.
static LOCKS_MAY_BE_HELD: AtomicBool = AtomicBool::new(false);

/// Ends this process at once with `code`: no destructors, no atexit handlers, no unwinding.
/// Rust's stdout buffer is flushed first so a child's last lines are not lost — unless this is a
/// child forked from a multi-threaded parent, where the flush could block forever on a lock some
/// other thread of the parent held at the fork (a last unterminated line is lost then).
pub(crate) fn exit_now(code: i32) -> ! {
    if !LOCKS_MAY_BE_HELD.load(Ordering::Relaxed) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// First thing a forked child does (fork rule 2), async-signal-safe throughout: note whether the
/// parent was verified single-threaded, close mproc's inherited descriptors except `keep_fds`,
/// die with the parent (`PR_SET_PDEATHSIG`) and leave at once if the parent already died before
/// that took effect.
pub(crate) fn child_prepare(parent: i32, die_with_parent: bool, single_threaded: bool, keep_fds: &[i32]) {
    LOCKS_MAY_BE_HELD.store(!single_threaded, Ordering::Relaxed);
    super::fds::close_registered_except(keep_fds);
    if !die_with_parent {
        return;
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if parent_pid() != parent {
        exit_now(128 + libc::SIGKILL);
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so times taken
/// in different processes can be subtracted.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub(crate) fn parent_pid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

static PID: AtomicI32 = AtomicI32::new(0);
static PID_INIT: Once = Once::new();

extern "C" fn refresh_pid_after_fork() {
    // SAFETY: getpid is async-signal-safe; this runs in the child right after fork.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

fn init_pid_cache() {
    PID_INIT.call_once(|| {
        // SAFETY: the handler only calls getpid and stores an atomic: async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(refresh_pid_after_fork)) };
        refresh_pid_after_fork();
    });
}

/// This process's pid, cached (glibc no longer caches it and the syscall costs ~50 ns). The cache is
/// refreshed in every child by a `pthread_atfork` handler, so it stays right across any `fork`.
#[inline]
pub(crate) fn current_pid() -> i32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    init_pid_cache();
    PID.load(Ordering::Relaxed)
}

/// Number of threads in this process, from `/proc/self/status` (`None` if it cannot be read).
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()))
}

/// How a child ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    Exited(i32),
    Signaled(i32),
    Running,
}

/// Reaps `pid` (`waitpid`). With `block == false` returns [`WaitOutcome::Running`] if it has not ended.
pub(crate) fn wait_exit(pid: i32, block: bool) -> Result<WaitOutcome> {
    let flags = if block { None } else { Some(WaitPidFlag::WNOHANG) };
    loop {
        match waitpid(Pid::from_raw(pid), flags) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(WaitOutcome::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(WaitOutcome::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(WaitOutcome::Running),
            Ok(_) => continue, // stopped/continued: not an end
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys { call: "waitpid", source: e.into() }),
        }
    }
}

/// Sends `sig` to `pid`. A process that is already gone (`ESRCH`) is not an error.
pub(crate) fn kill(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(Error::Sys { call: "kill", source: e });
        }
    }
    Ok(())
}

/// Whether a process with this pid exists (it may be a zombie).
pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
}

/// A pidfd: becomes readable when the process ends. Lets a parent wait for a child with a timeout,
/// or for several children at once, without polling `waitpid`. Registered, so forked children
/// close it (see [`super::fds`]).
#[derive(Debug)]
pub(crate) struct PidFd(Registered<OwnedFd>);

impl PidFd {
    pub(crate) fn open(pid: i32) -> Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(Error::Sys { call: "pidfd_open", source: io::Error::last_os_error() });
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        Ok(PidFd(Registered::new(unsafe { OwnedFd::from_raw_fd(fd as i32) })?))
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// Waits until any of `fds` is readable, or `timeout` passes (`None`: forever). Returns the indices
/// of the readable ones (empty on timeout). `EINTR` returns early with an empty list.
pub(crate) fn wait_readable(fds: &[i32], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = match timeout {
        None => -1,
        Some(d) => d.as_millis().min(i32::MAX as u128) as i32 + i32::from(d.subsec_nanos() % 1_000_000 != 0),
    };
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        return Err(Error::Sys { call: "poll", source: e });
    }
    Ok(pfds.iter().enumerate().filter(|(_, p)| p.revents != 0).map(|(i, _)| i).collect())
}

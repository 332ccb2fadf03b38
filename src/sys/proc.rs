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
/// another thread may have held stdout's lock at the fork, so the child must not take it. Sticky:
/// such a child has one thread, but the lock it inherited stays held by a thread that no longer
/// exists, and so does every copy its own children inherit.
static LOCKS_MAY_BE_HELD: AtomicBool = AtomicBool::new(false);

/// Whether this process descends, through any number of forks, from a parent that was not
/// verified single-threaded when it forked: a lock may then be held by a thread that does not
/// exist here, even though this process has only one thread.
pub(crate) fn locks_may_be_held() -> bool {
    LOCKS_MAY_BE_HELD.load(Ordering::Relaxed)
}

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
/// parent was verified single-threaded with clean locks (a parent that was not leaves the note
/// set for good), close mproc's inherited descriptors except `keep_fds`,
/// die with the parent *process* and leave at once if it already died before that took effect.
///
/// `PR_SET_PDEATHSIG` fires when the parent **thread** that forked the child ends, not when the
/// parent process does: a child forked from a helper thread would be killed when that thread
/// returns, while the process (and the handle that will join the child) lives on. So:
/// - forked from the main thread (`from_main_thread`), the death signal is `SIGKILL`, as robust
///   as it gets (it cannot be caught or blocked). The main thread ending ends the process, except
///   after a `pthread_exit` from `main`, which Rust programs do not do;
/// - forked from any other thread, the death signal is [`PARENT_GONE_SIGNAL`] with a handler that
///   checks `getppid()`: when the forking thread ends the kernel hands the child to another
///   thread of the same process, so the parent's pid is unchanged and the child keeps running;
///   when the whole process is gone, the child is reparented (to init or a subreaper) and kills
///   itself with `SIGKILL`.
pub(crate) fn child_prepare(
    parent: i32,
    die_with_parent: bool,
    from_main_thread: bool,
    single_threaded: bool,
    keep_fds: &[i32],
) {
    if !single_threaded {
        LOCKS_MAY_BE_HELD.store(true, Ordering::Relaxed);
    }
    super::fds::close_registered_except(keep_fds);
    if !die_with_parent {
        return;
    }
    let sig = if from_main_thread {
        libc::SIGKILL
    } else {
        PARENT.store(parent, Ordering::Relaxed);
        // SAFETY: a zeroed sigaction is a valid starting point; the handler is async-signal-safe
        // (getppid, getpid, kill).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_parent_thread_gone as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(parent_gone_signal(), &sa, std::ptr::null_mut());
        }
        parent_gone_signal()
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if parent_pid() != parent {
        exit_now(128 + libc::SIGKILL);
    }
}

/// The parent-death signal of a child forked from a thread other than the main one (see
/// [`child_prepare`]): the second-highest real-time signal. Such a child must leave it alone.
pub(crate) fn parent_gone_signal() -> i32 {
    libc::SIGRTMAX() - 1
}

/// The pid of the process that forked this one (children forked from a non-main thread).
static PARENT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_parent_thread_gone(_: libc::c_int) {
    // A thread of the parent ended: only the end of the whole process counts.
    if parent_pid() != PARENT.load(Ordering::Relaxed) {
        // SAFETY: getpid and kill are async-signal-safe; SIGKILL ends this process here.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Whether the calling thread is the process's main thread (its tid is the pid).
pub(crate) fn on_main_thread() -> bool {
    // SAFETY: gettid and getpid have no preconditions and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

/// Closes every descriptor of this process except `keep` (which may be -1): a process forked to
/// outlive its parent (the guardian) must not hold the parent's pipes, sockets or files open.
/// Async-signal-safe.
pub(crate) fn close_all_fds_except(keep: i32) {
    if keep > 0 {
        close_fds(0, keep as u32 - 1);
    }
    if keep >= 0 { close_fds(keep as u32 + 1, u32::MAX) } else { close_fds(0, u32::MAX) }
}

/// Closes descriptors `lo..=hi`. Async-signal-safe.
fn close_fds(lo: u32, hi: u32) {
    // SAFETY: close_range only closes descriptors of this process; the caller (a freshly forked
    // child) uses none of them.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) };
    if rc != 0 {
        // Kernels before 5.9: one by one, up to the descriptor limit.
        // SAFETY: sysconf has no preconditions.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(1024, 1 << 20) as u32;
        for fd in lo..=hi.min(max) {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
        }
    }
}

/// `pidfd_open(pid)` without registering the descriptor (for a process that never forks again):
/// the raw descriptor, or `None`. Async-signal-safe.
pub(crate) fn pidfd_open_raw(pid: i32) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then_some(fd as i32)
}

/// Waits until `a` or `b` (either may be -1) is readable or `timeout_ms` passes (-1: forever);
/// returns which are. No allocation: async-signal-safe.
pub(crate) fn poll_two(a: i32, b: i32, timeout_ms: i32) -> (bool, bool) {
    let mut p = [
        libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `p` is a valid array of two pollfd structures (negative fds are ignored).
    let n = unsafe { libc::poll(p.as_mut_ptr(), 2, timeout_ms) };
    if n <= 0 {
        return (false, false);
    }
    (p[0].revents != 0, p[1].revents != 0)
}

/// Moves to `/`, so a long-lived helper process pins no directory (and no mount).
pub(crate) fn chdir_root() {
    // SAFETY: the path is a valid C string.
    unsafe { libc::chdir(c"/".as_ptr()) };
}

/// Sets this process's user and group ids to `uid`/`gid` and drops supplementary groups (raw
/// system calls, not glibc's wrappers: those signal every thread and take locks, which a forked
/// child must not). For a child that must run as another user.
pub(crate) fn set_user(uid: u32, gid: u32) -> Result<()> {
    // SAFETY: setgroups with an empty list reads no memory.
    if unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) } != 0 {
        return Err(Error::Sys { call: "setgroups", source: io::Error::last_os_error() });
    }
    // SAFETY: setgid/setuid take plain integers.
    if unsafe { libc::syscall(libc::SYS_setgid, gid) } != 0 {
        return Err(Error::Sys { call: "setgid", source: io::Error::last_os_error() });
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_setuid, uid) } != 0 {
        return Err(Error::Sys { call: "setuid", source: io::Error::last_os_error() });
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so times taken
/// in different processes can be subtracted.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// A coarse monotonic clock in ns (`CLOCK_MONOTONIC_COARSE`: the last timer tick, a few ms
/// old, read from the vDSO for a few ns where the precise clock costs tens): for "has a while
/// passed" checks on fast paths.
pub(crate) fn coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// `clock` in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; both clocks used here exist on every Linux this
    // crate supports (CLOCK_MONOTONIC_COARSE since 2.6.32).
    unsafe { libc::clock_gettime(clock, &mut t) };
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

/// Number of threads in this process: the entries of `/proc/self/task` (`None` if it cannot be
/// read). Counted before every fork; listing the directory costs about a third of parsing
/// `/proc/self/status` (5 against 15 µs measured here), which was a tenth of a pool's start-up.
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(Iterator::count)
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

/// Whether `pid` is a running process: it exists and is not a zombie (a killed child its parent
/// has not reaped yet is dead for every purpose but `kill(pid, 0)`). Reads `/proc/PID/stat`; where
/// that cannot be read, falls back to [`pid_alive`].
pub(crate) fn pid_running(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // The state is the field after the command name, which is in parentheses and may itself
        // hold spaces and parentheses: take the last `)`.
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X' | b'x')),
            None => pid_alive(pid),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => pid_alive(pid),
    }
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

impl PidFd {
    /// Sends `sig` to the process (`pidfd_send_signal`); a process already gone is not an error.
    pub(crate) fn send_signal(&self, sig: i32) {
        // SAFETY: pidfd_send_signal takes a descriptor, a signal, a null siginfo and flags.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.as_raw_fd(), sig, std::ptr::null::<u8>(), 0) };
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

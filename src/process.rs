//! [`Process`]: run a closure in a forked child, like Python's `multiprocessing.Process`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Signal};
use crate::shm::{ShmBox, ShmSafe};
use crate::sys::{self, Fork, PidFd, WaitOutcome};

/// What to do when asked to fork a process that runs more than one thread.
///
/// `fork` copies only the calling thread. A lock some other thread held at that instant — inside
/// stdout, a logger, any `Mutex` — stays locked forever in the child, which then hangs the first
/// time it needs it; data another thread was midway through updating stays half-updated. Python
/// 3.12 warns about this; mproc refuses by default, and allowing it is an `unsafe` promise
/// ([`ForkPolicy::allow_threads`]).
///
/// # Example
/// ```
/// use mproc::ForkPolicy;
/// assert_eq!(ForkPolicy::default(), ForkPolicy::refuse_threads());
/// assert!(!ForkPolicy::default().allows_threads());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForkPolicy {
    allow_threads: bool,
}

impl ForkPolicy {
    /// Fail with [`Error::MultiThreaded`] when other threads run (the default).
    pub const fn refuse_threads() -> ForkPolicy {
        ForkPolicy { allow_threads: false }
    }

    /// Fork even when other threads run.
    ///
    /// mproc still counts the threads: when the parent turns out to be single-threaded the fork is
    /// as usual; otherwise the child is run without mproc taking any lock in it (its prologue only
    /// makes async-signal-safe calls, and it leaves without flushing stdout, so a last
    /// unterminated line of output may be lost).
    ///
    /// # Safety
    /// While this policy is in effect, at every fork mproc makes, no *other* thread of the
    /// process may be in a state the child could trip over:
    /// - holding a lock the child's code will take — std's stdout/stderr locks (`println!`,
    ///   `eprintln!`, the default panic hook), a `Mutex` or `RwLock` of yours or of a library
    ///   (a logger, a runtime);
    /// - midway through updating data the child will read (a lock-free structure, a cache
    ///   guarded by a spinlock).
    ///
    /// Threads that are idle — blocked on a channel, a condition variable, a lock they do not
    /// hold, or a sleep — satisfy this. The child's own code must also not wait for work from
    /// threads that do not exist in it.
    pub const unsafe fn allow_threads() -> ForkPolicy {
        ForkPolicy { allow_threads: true }
    }

    /// Whether this policy forks while other threads run.
    pub const fn allows_threads(self) -> bool {
        self.allow_threads
    }
}

static POLICY: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide default [`ForkPolicy`] (builders can override it per call). A policy
/// that allows threads can only be made with the `unsafe` [`ForkPolicy::allow_threads`].
pub fn set_fork_policy(p: ForkPolicy) {
    POLICY.store(u8::from(p.allow_threads), Ordering::Relaxed);
}

pub(crate) fn fork_policy() -> ForkPolicy {
    ForkPolicy { allow_threads: POLICY.load(Ordering::Relaxed) != 0 }
}

/// Forks a child that runs `child` and `_exit`s with the code it returns.
///
/// Checks the fork policy, flushes stdout (single-threaded parents only), forks, and in the child applies the fork rules of
/// [`crate::sys`] (descriptors, parent-death signal) before calling `child`. Returns the child's
/// pid. `keep_fds`: descriptors of mproc's own that the child needs (the pool's wake-up eventfd);
/// every other descriptor mproc registered is closed in the child.
pub(crate) fn fork_with(policy: Option<ForkPolicy>, keep_fds: &[i32], child: impl FnOnce() -> i32) -> Result<i32> {
    fork_child(policy, true, keep_fds, child)
}

/// [`fork_with`], optionally without the parent-death signal (for a child that watches its
/// parent itself and must clean up before it goes).
pub(crate) fn fork_child(
    policy: Option<ForkPolicy>,
    die_with_parent: bool,
    keep_fds: &[i32],
    child: impl FnOnce() -> i32,
) -> Result<i32> {
    let threads = sys::thread_count();
    if !policy.unwrap_or_else(fork_policy).allows_threads()
        && let Some(threads) = threads.filter(|&n| n > 1)
    {
        return Err(Error::MultiThreaded { threads });
    }
    // Counted, not assumed: only a parent seen with one thread lets the child take locks — and
    // not even then if this process is itself the child of a multi-threaded fork: it has one
    // thread, but a lock another thread of its parent held at that fork (the test harness
    // printing a result holds stdout's) is held here for good, and flushing would wait forever.
    let single_threaded = threads == Some(1) && !sys::locks_may_be_held();
    if single_threaded {
        // Otherwise both processes would print what is buffered. With other threads running this
        // is skipped: one of them may hold stdout's lock for as long as it likes (even until after
        // this fork), and the child, which never flushes then, does not print the copied buffer.
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    let parent = sys::current_pid();
    // PR_SET_PDEATHSIG follows the forking *thread*; `child_prepare` ties the child to the
    // process instead when this is not the main thread (see there for how).
    let from_main_thread = sys::on_main_thread();
    // SAFETY: the child branch only calls `child_prepare` (async-signal-safe) before the child's
    // code, and leaves through `exit_now`, never returning into the parent's frames. A fork of a
    // multi-threaded parent happens only under `ForkPolicy::allow_threads`, whose caller vouched
    // that no other thread is in a state the child could trip over.
    match unsafe { sys::fork()? } {
        Fork::Child => {
            sys::child_prepare(parent, die_with_parent, from_main_thread, single_threaded, keep_fds);
            let code = child();
            sys::exit_now(code)
        }
        Fork::Parent(pid) => Ok(pid),
    }
}

/// How a [`Process`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It returned or called `exit` with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(Signal),
    /// Its closure panicked; the panic message.
    Panicked(String),
    /// Its closure returned `Err`; the error's message (exit code 1).
    Failed(String),
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited (panics exit with 101, `Err` with 1).
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(*c),
            ExitStatus::Panicked(_) => Some(101),
            ExitStatus::Failed(_) => Some(1),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<Signal> {
        match self {
            ExitStatus::Signaled(s) => Some(*s),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by {s}"),
            ExitStatus::Panicked(m) => write!(f, "panicked: {m}"),
            ExitStatus::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

/// What a child's closure may return: `()`, an exit code, or a `Result` whose error message
/// reaches the parent.
pub trait ChildResult {
    /// The exit code, and a message for the parent if there is one.
    fn into_exit(self) -> (i32, Option<String>);
}

impl ChildResult for () {
    fn into_exit(self) -> (i32, Option<String>) {
        (0, None)
    }
}

impl ChildResult for i32 {
    fn into_exit(self) -> (i32, Option<String>) {
        (self, None)
    }
}

impl<E: fmt::Display> ChildResult for std::result::Result<(), E> {
    fn into_exit(self) -> (i32, Option<String>) {
        match self {
            Ok(()) => (0, None),
            Err(e) => (1, Some(e.to_string())),
        }
    }
}

const MESSAGE_CAP: usize = 4000;
const NO_MESSAGE: u32 = 0;
const PANICKED: u32 = 1;
const FAILED: u32 = 2;

/// Where a child leaves its panic or error message for the parent.
#[repr(C)]
struct MessageSlot {
    kind: AtomicU32,
    len: AtomicU32,
    bytes: [AtomicU8; MESSAGE_CAP],
}

// SAFETY: atomics only; any bits are valid (zero means "no message"); no Drop.
unsafe impl ShmSafe for MessageSlot {}

impl MessageSlot {
    /// Child side: store `msg` (cut at a char boundary to fit).
    fn put(&self, kind: u32, msg: &str) {
        let mut n = msg.len().min(MESSAGE_CAP);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        // Relaxed: only the child writes the bytes, once, and the parent reads them only after
        // reaping the child (waitpid orders the accesses; `kind` is Release/Acquire as well).
        for (a, &b) in self.bytes.iter().zip(&msg.as_bytes()[..n]) {
            a.store(b, Ordering::Relaxed);
        }
        self.len.store(n as u32, Ordering::Relaxed);
        self.kind.store(kind, Ordering::Release);
    }

    /// Parent side, after the child was reaped.
    fn take(&self) -> Option<(u32, String)> {
        let kind = self.kind.load(Ordering::Acquire);
        if kind == NO_MESSAGE {
            return None;
        }
        let n = (self.len.load(Ordering::Relaxed) as usize).min(MESSAGE_CAP);
        let bytes: Vec<u8> = self.bytes[..n].iter().map(|a| a.load(Ordering::Relaxed)).collect();
        Some((kind, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Text of a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Options for [`Process`]; `Process::builder()` starts one.
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct ProcessBuilder {
    policy: Option<ForkPolicy>,
    outlive_parent: bool,
    /// mproc's own descriptors the child keeps (the Manager server's listening socket).
    keep_fds: Vec<i32>,
    /// User and group to switch to in the child.
    user: Option<(u32, u32)>,
}

impl ProcessBuilder {
    /// Overrides the process-wide [`ForkPolicy`] for this spawn.
    pub fn fork_policy(mut self, p: ForkPolicy) -> Self {
        self.policy = Some(p);
        self
    }

    /// Whether the child is killed when this **process** ends (default `true`). A child that
    /// outlives its parent must watch for that itself and end.
    ///
    /// The kernel's parent-death signal (`PR_SET_PDEATHSIG`) follows the *thread* that forked:
    /// on its own, a child spawned from a helper thread would die as soon as that thread
    /// returned. mproc ties the child to the process instead: from the main thread the signal
    /// is `SIGKILL`; from any other thread it is the second-highest real-time signal
    /// (`SIGRTMAX - 1`), whose handler kills the child only once the parent process is gone
    /// (its parent pid changed). Such a child must not install its own handler for that signal
    /// or block it; if it `exec`s, the handler is lost and a helper thread's end kills it again —
    /// spawn it from the main thread, or with `die_with_parent(false)`.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.outlive_parent = !yes;
        self
    }

    /// Runs the child as user `uid`, group `gid` (supplementary groups dropped) — a parent
    /// running as root handing work to an unprivileged child. Set before the closure runs; if
    /// the change is refused, the child fails (`ExitStatus::Failed`) without running it.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Descriptors of mproc's own that the child keeps open (all others it registered are closed
    /// in the child).
    pub(crate) fn keep_fds(mut self, fds: Vec<i32>) -> Self {
        self.keep_fds = fds;
        self
    }

    /// Forks a child that runs `f`. See [`Process::spawn`].
    pub fn spawn<F, R>(self, f: F) -> Result<Process>
    where
        F: FnOnce() -> R,
        R: ChildResult,
    {
        let slot = ShmBox::new(MessageSlot {
            kind: AtomicU32::new(0),
            len: AtomicU32::new(0),
            bytes: [const { AtomicU8::new(0) }; MESSAGE_CAP],
        })?;
        let child_slot = &*slot;
        let user = self.user;
        let pid = fork_child(self.policy, !self.outlive_parent, &self.keep_fds, move || {
            if let Some((uid, gid)) = user
                && let Err(e) = sys::set_user(uid, gid)
            {
                child_slot.put(FAILED, &format!("cannot switch to uid {uid}, gid {gid}: {e}"));
                return 1;
            }
            match catch_unwind(AssertUnwindSafe(f)) {
                Ok(r) => {
                    let (code, msg) = r.into_exit();
                    if let Some(m) = msg {
                        child_slot.put(FAILED, &m);
                    }
                    code
                }
                Err(p) => {
                    child_slot.put(PANICKED, &panic_message(&*p));
                    101
                }
            }
        })?;
        // A pidfd lets join_timeout sleep in poll() instead of polling waitpid; if the kernel is
        // too old for it, join_timeout falls back to short sleeps.
        let pidfd = PidFd::open(pid).ok();
        Ok(Process { pid, pidfd, slot, status: None })
    }
}

/// A child process running a closure, forked from this one.
///
/// The closure runs on the child's copy of this process's memory: it can use anything the parent
/// had (no pickling, no `Send` or `'static` bound), but its writes reach the parent only through
/// shared memory (`Value`, `Array`, `Flag`, …). The child dies with its parent process — not with
/// the thread that spawned it (see [`ProcessBuilder::die_with_parent`]) — and never runs the
/// parent's destructors.
///
/// **Dropping a `Process` that was not joined kills it (SIGKILL) and reaps it**, so no child
/// outlives its handle and no zombie is left. Join it to let it finish. The type is
/// `#[must_use]`, so a handle thrown away by mistake is a warning:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// // Regression (process_handle_dropped_at_once): the child would be killed before it ran.
/// fn start() -> mproc::Result<()> {
///     mproc::Process::spawn(|| println!("working"))?;
///     Ok(())
/// }
/// ```
///
/// # Example
/// ```
/// let hits = mproc::RawValue::new(0u64)?;
/// let mut p = mproc::Process::spawn(|| { hits.fetch_add(1); })?;
/// assert!(p.join()?.success());
/// assert_eq!(hits.load(), 1);
///
/// let mut q = mproc::Process::spawn(|| -> () { panic!("bad input") })?;
/// assert_eq!(q.join()?, mproc::ExitStatus::Panicked("bad input".into()));
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "dropping a Process kills the child (SIGKILL); keep it and join it to let the child finish"]
pub struct Process {
    pid: i32,
    pidfd: Option<PidFd>,
    slot: ShmBox<MessageSlot>,
    status: Option<ExitStatus>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).field("status", &self.status).finish()
    }
}

impl Process {
    /// Options: the fork policy.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// Forks a child that runs `f` and exits: code 0 (or the `i32` `f` returns), 1 with a message
    /// if `f` returns `Err`, 101 with the message if it panics.
    ///
    /// Fails with [`Error::MultiThreaded`] if this process runs other threads, unless the
    /// [`ForkPolicy`] allows it.
    pub fn spawn<F, R>(f: F) -> Result<Process>
    where
        F: FnOnce() -> R,
        R: ChildResult,
    {
        ProcessBuilder::default().spawn(f)
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn record(&mut self, w: WaitOutcome) -> Option<ExitStatus> {
        let st = match w {
            WaitOutcome::Running => return None,
            WaitOutcome::Signaled(s) => ExitStatus::Signaled(Signal(s)),
            WaitOutcome::Exited(code) => match self.slot.take() {
                Some((PANICKED, m)) => ExitStatus::Panicked(m),
                Some((_, m)) if code == 1 => ExitStatus::Failed(m),
                _ => ExitStatus::Exited(code),
            },
        };
        self.status = Some(st.clone());
        Some(st)
    }

    /// Waits for the child to end and reaps it.
    pub fn join(&mut self) -> Result<ExitStatus> {
        if let Some(s) = &self.status {
            return Ok(s.clone());
        }
        let w = sys::wait_exit(self.pid, true)?;
        Ok(self.record(w).expect("a blocking wait returns only when the child ended"))
    }

    /// Waits at most `timeout` for the child to end and reaps it; [`Error::Timeout`] if it is
    /// still running then (it keeps running: join again, or kill it).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = &self.status {
            return Ok(s.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let w = sys::wait_exit(self.pid, false)?;
            if let Some(st) = self.record(w) {
                return Ok(st);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Err(Error::Timeout);
            };
            match &self.pidfd {
                Some(fd) => {
                    use std::os::fd::AsRawFd;
                    sys::wait_readable(&[fd.as_raw_fd()], Some(left))?;
                }
                None => std::thread::sleep(left.min(Duration::from_millis(1))),
            }
        }
    }

    /// Whether the child is still running (reaps it if it ended).
    pub fn is_alive(&mut self) -> Result<bool> {
        if self.status.is_some() {
            return Ok(false);
        }
        let w = sys::wait_exit(self.pid, false)?;
        Ok(self.record(w).is_none())
    }

    /// The exit status, if it was reaped already.
    pub fn exit_status(&self) -> Option<&ExitStatus> {
        self.status.as_ref()
    }

    /// Sends SIGTERM (no effect once reaped).
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (no effect once reaped).
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `sig` (no effect once reaped: the pid may belong to another process by then).
    pub fn signal(&self, sig: i32) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        sys::kill(self.pid, sig)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::wait_exit(self.pid, true);
        }
    }
}

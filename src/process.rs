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
/// the allocator, stdout, a logger, any `Mutex` — stays locked forever in the child, which then
/// hangs the first time it needs it. Python 3.12 warns about this; mproc refuses by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForkPolicy {
    /// Fail with [`Error::MultiThreaded`] (the default).
    #[default]
    RefuseThreads,
    /// Fork anyway: the caller knows the other threads hold no lock the child will need
    /// (for example the idle threads of a test harness).
    AllowThreads,
}

static POLICY: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide default [`ForkPolicy`] (builders can override it per call).
pub fn set_fork_policy(p: ForkPolicy) {
    POLICY.store(p as u8, Ordering::Relaxed);
}

pub(crate) fn fork_policy() -> ForkPolicy {
    match POLICY.load(Ordering::Relaxed) {
        0 => ForkPolicy::RefuseThreads,
        _ => ForkPolicy::AllowThreads,
    }
}

/// Forks a child that runs `child` and `_exit`s with the code it returns.
///
/// Checks the fork policy, flushes stdout, forks, and in the child applies the fork rules of
/// [`crate::sys`] (parent-death signal first) before calling `child`. Returns the child's pid.
/// `keep_fds`: descriptors of mproc's own that the child needs (the pool's wake-up eventfd);
/// every other descriptor mproc registered is closed in the child.
pub(crate) fn fork_with(policy: Option<ForkPolicy>, keep_fds: &[i32], child: impl FnOnce() -> i32) -> Result<i32> {
    let _ = keep_fds; // see the fd registry in `sys`
    fork_child(policy, true, child)
}

/// [`fork_with`], optionally without the parent-death signal (for a child that watches its
/// parent itself and must clean up before it goes).
pub(crate) fn fork_child(
    policy: Option<ForkPolicy>,
    die_with_parent: bool,
    child: impl FnOnce() -> i32,
) -> Result<i32> {
    if policy.unwrap_or_else(fork_policy) == ForkPolicy::RefuseThreads {
        let threads = sys::thread_count();
        if threads > 1 {
            return Err(Error::MultiThreaded { threads });
        }
    }
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    let parent = sys::current_pid();
    // SAFETY: the child branch only calls `child_prepare` (async-signal-safe) before the child's
    // code, and leaves through `exit_now`, never returning into the parent's frames.
    match unsafe { sys::fork()? } {
        Fork::Child => {
            sys::child_prepare(parent, die_with_parent);
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
#[must_use]
pub struct ProcessBuilder {
    policy: Option<ForkPolicy>,
    outlive_parent: bool,
}

impl ProcessBuilder {
    /// Overrides the process-wide [`ForkPolicy`] for this spawn.
    pub fn fork_policy(mut self, p: ForkPolicy) -> Self {
        self.policy = Some(p);
        self
    }

    /// Whether the child is killed when the thread that forked it ends (`PR_SET_PDEATHSIG`;
    /// default `true`). A child that outlives its parent must watch for that itself and end.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.outlive_parent = !yes;
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
        let pid = fork_child(self.policy, !self.outlive_parent, move || match catch_unwind(AssertUnwindSafe(f)) {
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
/// shared memory (`Value`, `Array`, `Flag`, …). The child dies with its parent (`PR_SET_PDEATHSIG`)
/// and never runs the parent's destructors.
///
/// **Dropping a `Process` that was not joined kills it (SIGKILL) and reaps it**, so no child
/// outlives its handle and no zombie is left. Join it to let it finish.
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

    /// Waits at most `timeout`; `Ok(None)` if it is still running.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        if let Some(s) = &self.status {
            return Ok(Some(s.clone()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let w = sys::wait_exit(self.pid, false)?;
            if let Some(st) = self.record(w) {
                return Ok(Some(st));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Ok(None);
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

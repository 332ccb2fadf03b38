//! The one error type of mproc.

use std::fmt;

/// A signal number, displayed by name (`SIGKILL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(s) => f.write_str(s.as_str()),
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

/// Everything that can go wrong in mproc. Variants carry what a caller needs to act on them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A worker process ended while it was running a task.
    #[error("worker {pid} died ({}) while running task {}", describe_end(*.signal, *.code), describe_task(*.task))]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// The signal that killed it, if one did.
        signal: Option<Signal>,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The task it was running, if it was running one.
        task: Option<u64>,
    },

    /// A task panicked in a worker. The worker survived and keeps serving.
    #[error("task {task} panicked: {message}")]
    TaskPanicked {
        /// The task's index.
        task: u64,
        /// The panic message.
        message: String,
    },

    /// Some tasks of a `map` (or `starmap`) failed; the others succeeded. `first` is the failure of
    /// the lowest-numbered failed task.
    #[error("{failed} of {total} tasks failed; first: {first}")]
    MapFailed {
        /// How many tasks failed.
        failed: usize,
        /// How many tasks the call had.
        total: usize,
        /// The first failure.
        first: Box<Error>,
    },

    /// A task ran longer than its time limit ([`crate::PoolBuilder::task_timeout`]): its worker
    /// was killed and replaced.
    #[error("task {task} ran past its time limit of {after:?}; its worker {pid} was killed and replaced")]
    TaskTimedOut {
        /// The task's index.
        task: u64,
        /// The worker that was running it.
        pid: i32,
        /// The limit it ran past.
        after: std::time::Duration,
    },

    /// The iterator a Pool call took its items from panicked while producing item `task`. The
    /// items before it were run and delivered; the call ends there.
    #[error("the source iterator panicked producing item {task}: {message}")]
    SourcePanicked {
        /// The index of the item being produced.
        task: u64,
        /// The panic message.
        message: String,
    },

    /// A task's argument or result is larger than the Pool's message limit; or a queue item or
    /// pipe message larger than its slots (`task` is 0 then).
    #[error("{}", describe_too_large(.what, *.task, *.size, *.limit))]
    MessageTooLarge {
        /// `"argument"` or `"result"`.
        what: &'static str,
        /// The task.
        task: u64,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// The pool was closed or terminated and takes no more work.
    #[error("the pool is closed (or was terminated) and takes no more work")]
    PoolClosed,

    /// The previous holder of a lock died while holding it. The lock was made consistent and
    /// works again; data it protected may be half-updated.
    #[error("the previous holder of the lock{} died while holding it; the lock was recovered", describe_pid(*.pid))]
    OwnerDied {
        /// The pid that held it, when known.
        pid: Option<i32>,
    },

    /// A lock can never be taken again (a holder died and it was not made consistent).
    #[error("the lock is unrecoverable: a holder died and its state was never made consistent")]
    LockUnrecoverable,

    /// A segment (or one object's storage) larger than the memory that can back it.
    #[error("a shared segment of {requested} bytes does not fit: {available} bytes available")]
    SegmentTooLarge {
        /// Bytes asked for.
        requested: u64,
        /// Bytes free where it would live (`/dev/shm` for named segments, free memory otherwise).
        available: u64,
    },

    /// An [`Arena`](crate::Arena) has no room left for an object.
    #[error("arena full: {requested} bytes requested, {remaining} remaining")]
    ArenaFull {
        /// Bytes asked for.
        requested: usize,
        /// Bytes left.
        remaining: usize,
    },

    /// No named segment by that name.
    #[error(
        "no shared segment named {name} (its creator removed it, or never created it; `mproc shm list` shows the names there are)"
    )]
    SegmentNotFound {
        /// The name looked for.
        name: String,
    },

    /// A shared segment's name is not one the system accepts (the reason says why: too long, a
    /// `/` after the first character, a NUL byte, empty).
    #[error("bad shared segment name {name:?}: {reason}")]
    BadSegmentName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A named segment exists but this process may not open it: it belongs to another user, or
    /// its mode forbids this user (mproc creates segments with mode 0600: their creator's user
    /// only). Run as that user, or have the creator share it differently.
    #[error(
        "permission denied for shared segment {name}{}: this process runs as uid {uid}; \
         mproc segments are readable and writable by their creator's user only",
        describe_owner(*.owner, *.mode)
    )]
    SegmentPermissionDenied {
        /// The segment's name.
        name: String,
        /// Its owner's uid, when it could be read.
        owner: Option<u32>,
        /// Its permission bits, when they could be read.
        mode: Option<u32>,
        /// This process's effective uid.
        uid: u32,
    },

    /// A call on a named segment failed for another reason (the OS error, and what to do when
    /// there is something to do).
    #[error("shared segment {name}: {call} failed: {source}{}", if .hint.is_empty() { String::new() } else { format!("; {}", .hint) })]
    SegmentIo {
        /// The segment's name.
        name: String,
        /// The call (`shm_open`, `posix_fallocate`, `mmap`, `fstat`).
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it, or empty.
        hint: &'static str,
    },

    /// A named segment by that name already exists (another program, or an earlier run of this
    /// one, created it). Pick another name, open the existing one, or remove a stale one with
    /// [`Segment::unlink`](crate::Segment::unlink).
    #[error("a shared segment named {name} already exists (open it, or remove it if its creator is gone)")]
    SegmentExists {
        /// The name.
        name: String,
    },

    /// A segment opened as a [`NamedArena`](crate::NamedArena) is not one: its header does not
    /// start with mproc's magic, or its creator never finished initialising it.
    #[error("shared segment {name} is not an mproc named arena: {reason}")]
    NotNamedArena {
        /// The segment's name.
        name: String,
        /// What was found instead.
        reason: String,
    },

    /// A [`NamedArena`](crate::NamedArena) was laid out by a version of mproc whose layout this
    /// one does not read. Build both programs against the same mproc release.
    #[error(
        "named arena {name} has layout version {found}; this build of mproc reads version {supported}: \
         build the creating and the opening program against the same mproc release"
    )]
    ArenaVersion {
        /// The segment's name.
        name: String,
        /// The version in its header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// No object of that name in a [`NamedArena`](crate::NamedArena) (yet).
    #[error("named arena {arena} has no object named {object:?} (it has: {})", describe_names(.available))]
    ObjectNotFound {
        /// The arena's name.
        arena: String,
        /// The name looked for.
        object: String,
        /// The names it does have.
        available: Vec<String>,
    },

    /// [`NamedArena::add`](crate::NamedArena::add) with a name the arena already has.
    #[error("named arena {arena} already has an object named {object:?}")]
    ObjectExists {
        /// The arena's name.
        arena: String,
        /// The name.
        object: String,
    },

    /// A named object was opened as a type other than the one it was created as (another kind
    /// of object, or another `T`, `T` size or alignment).
    #[error(
        "object {object:?} in named arena {arena} is a {found}; it was opened as a {expected} \
         (both programs must name the same type, by the same path, built the same way)"
    )]
    ObjectTypeMismatch {
        /// The arena's name.
        arena: String,
        /// The object's name.
        object: String,
        /// The type asked for (kind, `T`, size and alignment).
        expected: String,
        /// The type it was created as.
        found: String,
    },

    /// A named arena or object was still being created when the bounded wait for it ran out (its
    /// creator is slow, stopped, or died while creating it).
    #[error("{what} was still being initialised after {waited:?} (its creator is stopped, or died creating it)")]
    NotReady {
        /// Which arena or object.
        what: String,
        /// How long this process waited.
        waited: std::time::Duration,
    },

    /// `JoinableQueue::join`: the items not yet done were taken by consumer processes that
    /// died before calling `task_done`, so they will never be done (a consumer killed after
    /// taking an item loses it, as in Python — where `join` then hangs).
    #[error("{items} item(s) will never be marked done: taken by process {pid}, which died before task_done")]
    ItemsLost {
        /// A dead consumer that owes items (the first found).
        pid: i32,
        /// Items owed by dead consumers, in all.
        items: u64,
    },

    /// A timed wait ran out.
    #[error("timed out")]
    Timeout,

    /// A queue was closed (and, for a `get`, drained): nothing more will come.
    #[error("the queue is closed")]
    Disconnected,

    /// A `try_` call found the object busy.
    #[error("would block: held by another process or thread")]
    WouldBlock,

    /// A barrier was broken: a waiter timed out, so the others can never be released together.
    #[error("the barrier is broken (a waiter timed out)")]
    BrokenBarrier,

    /// A server-backed object (Manager, Redis) could not be reached or answered wrongly.
    #[error("{backend} at {target}: {message}")]
    Backend {
        /// `"manager"` or `"redis"`.
        backend: &'static str,
        /// Where it was looked for (socket path, URL).
        target: String,
        /// What went wrong, and what to do about it.
        message: String,
    },

    /// Interrupted by Ctrl-C (SIGINT); workers were stopped and reaped.
    #[error("interrupted")]
    Interrupted,

    /// Forking now would copy a multi-threaded process; see the crate docs' "Fork safety".
    #[error(
        "refusing to fork: this process has {threads} threads, and locks held by the other threads \
         would stay locked forever in the child; fork before starting threads, or opt in with \
         the unsafe ForkPolicy::allow_threads() if the other threads are idle"
    )]
    MultiThreaded {
        /// Threads in the process at the time.
        threads: usize,
    },

    /// The pool can run no more work: its workers could not be kept alive (the reason says why,
    /// e.g. an initializer that fails in every new worker). Build a new pool.
    #[error("the pool is broken: {reason}")]
    PoolBroken {
        /// What broke it.
        reason: String,
    },

    /// A call that the object does not allow in its current state (the message says which call
    /// and what to do instead): a programming error, not a runtime failure.
    #[error("misuse: {0}")]
    Misuse(String),

    /// A task's argument or result could not be encoded (serde). Nothing was sent for that task.
    #[error("the {what} of task {task} could not be encoded: {message}")]
    Encode {
        /// `"argument"` or `"result"`.
        what: &'static str,
        /// The task.
        task: u64,
        /// The serializer's message.
        message: String,
    },

    /// A task's argument or result could not be decoded on the other side (serde): the type's
    /// `Serialize` and `Deserialize` disagree.
    #[error("the {what} of task {task} could not be decoded: {message}")]
    Decode {
        /// `"argument"` or `"result"`.
        what: &'static str,
        /// The task.
        task: u64,
        /// The deserializer's message.
        message: String,
    },

    /// Shared state was found malformed: written by something other than mproc's own code (or a
    /// bug). The message says what was wrong where.
    #[error("corrupt shared state: {0}")]
    Corrupt(String),

    /// A child process ended in failure (an experiment's worker, say).
    #[error("process {pid} {status}")]
    ChildFailed {
        /// Its pid.
        pid: i32,
        /// How it ended.
        status: crate::ExitStatus,
    },

    /// A bad argument (the message says which and why).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
    },

    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn describe_too_large(what: &str, task: u64, size: usize, limit: usize) -> String {
    match what {
        "argument" | "result" | "per-call value" => {
            format!(
                "the {what} of task {task} is {size} bytes; the pool's limit is {limit} (PoolBuilder::max_message_bytes)"
            )
        }
        _ => format!("the {what} is {size} bytes; the limit is {limit}"),
    }
}

fn describe_end(signal: Option<Signal>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(s), _) => format!("killed by {s}"),
        (None, Some(c)) => format!("exit code {c}"),
        (None, None) => "cause unknown".into(),
    }
}

fn describe_owner(owner: Option<u32>, mode: Option<u32>) -> String {
    match (owner, mode) {
        (Some(u), Some(m)) => format!(" (owned by uid {u}, mode {m:04o})"),
        _ => String::new(),
    }
}

fn describe_names(names: &[String]) -> String {
    if names.is_empty() { "no objects".into() } else { names.join(", ") }
}

fn describe_task(task: Option<u64>) -> String {
    task.map_or_else(|| "none".into(), |t| t.to_string())
}

fn describe_pid(pid: Option<i32>) -> String {
    pid.map_or_else(String::new, |p| format!(" (pid {p})"))
}

impl Error {
    /// The underlying failure: for [`Error::MapFailed`] its first failure, otherwise itself.
    pub fn root(&self) -> &Error {
        match self {
            Error::MapFailed { first, .. } => first.root(),
            e => e,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

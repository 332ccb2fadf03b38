//! The errors of a cluster job.

/// What can go wrong with a cluster job or a worker host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis could not be reached, refused a command, or the connection was lost.
    #[error("Redis at {url}: {message}")]
    Redis {
        /// The server's URL.
        url: String,
        /// What went wrong, and what to do about it.
        message: String,
    },

    /// A worker does not know the task's name (an older or different binary).
    #[error("task {task} ({name:?}): no worker knows a task of that name; start workers built with it registered")]
    UnknownTask {
        /// The task's index in its job.
        task: u64,
        /// The name.
        name: String,
    },

    /// The task ran and failed: it panicked, or its arguments or result did not decode.
    #[error("task {task} ({name:?}) failed on a worker: {message}")]
    TaskFailed {
        /// The task's index in its job.
        task: u64,
        /// The task's registered name.
        name: String,
        /// The panic message or decode error.
        message: String,
    },

    /// The task was handed out this many times and every worker that took it died before it
    /// finished: it is taken to be what kills them (Dask's `KilledWorker`).
    #[error(
        "task {task} ({name:?}) killed the workers that ran it: delivered {deliveries} times, never finished; \
         not handing it out again"
    )]
    KilledWorkers {
        /// The task's index in its job.
        task: u64,
        /// The task's registered name.
        name: String,
        /// How many times it was delivered.
        deliveries: u64,
    },

    /// Some tasks of a `map` failed (the others ran); `first` is the lowest-numbered failure.
    #[error("{failed} of {total} tasks failed; first: {first}")]
    MapFailed {
        /// How many tasks failed.
        failed: usize,
        /// How many the job had.
        total: usize,
        /// The first failure.
        first: Box<Error>,
    },

    /// The job did not finish within the pool's time limit ([`crate::ClusterPoolBuilder::timeout`]).
    #[error("the job did not finish within {limit:?}: {done} of {total} tasks done (are workers running?)")]
    Timeout {
        /// The limit.
        limit: std::time::Duration,
        /// Tasks whose results arrived.
        done: u64,
        /// Tasks of the job.
        total: u64,
    },

    /// An argument or result could not be encoded or decoded.
    #[error("task {task} ({name:?}): cannot {what}: {message}")]
    Codec {
        /// The task's index.
        task: u64,
        /// The task's name.
        name: String,
        /// `"encode its arguments"`, `"decode its result"`, ...
        what: &'static str,
        /// The codec's message.
        message: String,
    },

    /// A bad setting or argument.
    #[error("{0}")]
    InvalidArgument(String),

    /// The local machinery (forking worker processes, shared flags) failed.
    #[error(transparent)]
    Local(#[from] mproc::Error),
}

impl Error {
    /// The failure inside a [`Error::MapFailed`], or this error.
    pub fn root(&self) -> &Error {
        match self {
            Error::MapFailed { first, .. } => first.root(),
            e => e,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

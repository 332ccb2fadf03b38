//! # mproc-cluster — the same Pool job on several hosts, through Redis Streams
//!
//! (docs to come)

pub mod builtin;
mod conn;
mod error;
mod host;
mod pool;
mod registry;

pub use error::{Error, Result};
pub use host::{HostReport, WorkerHost};
pub use pool::{ClusterIter, ClusterPool, ClusterPoolBuilder, ClusterResult, JobStats};
pub use registry::{Named, Registry, TaskCtx};

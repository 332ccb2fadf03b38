//! Shared-memory queues. [`ring`] is the single-producer, single-consumer record ring the Pool
//! uses to hand work to each worker and to get results back; `channel` holds the public
//! multi-producer, multi-consumer [`Queue`] and [`JoinableQueue`]; `pipe` the [`Pipe`] of two
//! [`Connection`]s.

pub(crate) mod ring;

mod channel;
mod pipe;

pub use channel::{DEFAULT_MAX_ITEM_BYTES, JoinableQueue, PutError, Queue};
pub use pipe::{Connection, Pipe};

/// Python's `SimpleQueue` is a `Queue` without the feeder thread and the join counter; mproc's
/// [`Queue`] has neither to begin with, so a `SimpleQueue` is a `Queue`.
pub type SimpleQueue<T> = Queue<T>;

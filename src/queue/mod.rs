//! Shared-memory queues. [`ring`] is the single-producer, single-consumer record ring the Pool
//! uses to hand work to each worker and to get results back; `channel` holds the public
//! multi-producer, multi-consumer [`Queue`] and [`JoinableQueue`].

pub(crate) mod ring;

mod channel;

pub use channel::{DEFAULT_MAX_ITEM_BYTES, JoinableQueue, PutError, Queue};

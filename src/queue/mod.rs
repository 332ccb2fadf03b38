//! Shared-memory queues. [`ring`] is the single-producer, single-consumer record ring the Pool
//! uses to hand work to each worker and to get results back.

pub(crate) mod ring;

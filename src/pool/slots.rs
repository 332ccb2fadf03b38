//! Worker slots: each worker's shared channel (its two rings and what it publishes about itself),
//! its process, and the chunks it has been handed and not yet answered.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::pool::wire::RECORD_SLACK;
use crate::pool::worker::WorkerShared;
use crate::queue::ring::{Consumer, Futex, Producer, RingControl};
use crate::shm::Segment;
use crate::sys::{EventFd, PidFd};

/// Tasks handed to a worker and not yet answered: items `start..end` of a chunk (numbered `seq`
/// on its slot once sent; `base` and `flags` as in the task header).
#[derive(Debug)]
pub(crate) struct InFlight {
    pub job: u64,
    pub first: u64,
    pub start: u32,
    pub end: u32,
    pub bytes: Rc<crate::pool::wire::ChunkBytes>,
    pub retries: u32,
    pub seq: u64,
    pub base: u64,
    pub flags: u64,
}

impl InFlight {
    pub(crate) fn items(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether absolute task index `t` is one of these.
    pub(crate) fn holds(&self, job: u64, t: u64) -> bool {
        job == self.job && t >= self.first + u64::from(self.start) && t < self.first + u64::from(self.end)
    }
}

/// One worker's shared segment: `[WorkerShared | tasks ctl | results ctl | tasks data | results
/// data]`, each part 128-byte aligned. The parent and the worker (its fork) each have a copy of
/// this handle; the parent uses only `tasks` and `results`, the worker only `worker_tasks` and
/// `worker_results`, so each ring has one producer and one consumer. Not `Sync`: one thread of
/// each process uses it.
pub(crate) struct Channel {
    seg: Segment,
    cap: usize,
    _not_sync: PhantomData<*const ()>,
}

const ALIGN: usize = 128;

impl Channel {
    pub(crate) fn new(max_message: usize) -> Result<Channel> {
        // A record of one item of `max_message` bytes, its header and a few failure entries
        // always fits (records up to half the ring do).
        let cap = (2 * (max_message + RECORD_SLACK)).next_multiple_of(4096);
        let seg = Segment::anonymous(Self::data_off() + 2 * cap)?;
        Ok(Channel { seg, cap, _not_sync: PhantomData })
    }

    fn ctl_len() -> usize {
        std::mem::size_of::<RingControl>().next_multiple_of(ALIGN)
    }

    fn data_off() -> usize {
        std::mem::size_of::<WorkerShared>().next_multiple_of(ALIGN) + 2 * Self::ctl_len()
    }

    fn ctl_ptr(&self, ring: usize) -> *mut RingControl {
        let off = std::mem::size_of::<WorkerShared>().next_multiple_of(ALIGN) + ring * Self::ctl_len();
        // SAFETY: the offset is inside the segment (see `new`).
        unsafe { self.seg.as_ptr().add(off).cast() }
    }

    fn ctl(&self, ring: usize) -> &RingControl {
        // SAFETY: a zeroed (valid, atomics only) control block inside the segment, which `self`
        // keeps mapped; shared access only.
        unsafe { &*self.ctl_ptr(ring) }
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: the offset is inside the segment (see `new`).
        unsafe { self.seg.as_ptr().add(Self::data_off() + ring * self.cap) }
    }

    /// What the worker publishes about itself.
    pub(crate) fn shared(&self) -> &WorkerShared {
        // SAFETY: at offset 0 of the segment, zeroed (valid: atomics only), kept mapped by `self`.
        unsafe { &*self.seg.as_ptr().cast::<WorkerShared>() }
    }

    /// Largest task record payload.
    pub(crate) fn max_record(&self) -> usize {
        self.tasks().max_record()
    }

    /// Parent: the producer of the tasks ring (its consumer, the worker, sleeps on a futex).
    pub(crate) fn tasks(&self) -> Producer<'_, Futex> {
        // SAFETY: the ring's memory is in the segment, mapped while `self` is borrowed; only the
        // parent produces on the tasks ring, from one thread (`Channel` is not `Sync`), and the
        // parent never holds two of these at once.
        unsafe { Producer::from_raw(self.ctl(0), self.data(0), self.cap, Futex) }
    }

    /// Parent: the consumer of the results ring (its producer, the worker, sleeps on a futex).
    pub(crate) fn results(&self) -> Consumer<'_, Futex> {
        // SAFETY: as for `tasks`, for the one consumer of the results ring.
        unsafe { Consumer::from_raw(self.ctl(1), self.data(1), self.cap, Futex) }
    }

    /// Worker: the consumer of the tasks ring.
    pub(crate) fn worker_tasks(&self) -> Consumer<'_, Futex> {
        // SAFETY: as for `tasks`: only the worker consumes the tasks ring, and it makes one.
        unsafe { Consumer::from_raw(self.ctl(0), self.data(0), self.cap, Futex) }
    }

    /// Worker: the producer of the results ring; it wakes the parent through `wake`.
    pub(crate) fn worker_results<'a>(&'a self, wake: &'a EventFd) -> Producer<'a, &'a EventFd> {
        // SAFETY: as for `tasks`: only the worker produces on the results ring, and it makes one.
        unsafe { Producer::from_raw(self.ctl(1), self.data(1), self.cap, wake) }
    }

    /// Empties both rings and the worker's record. Only once the worker is dead.
    pub(crate) fn reset(&mut self) {
        for ring in 0..2 {
            // SAFETY: `&mut self`: no half of this channel exists in this process, and the worker
            // (the only other user) is dead, so nothing else accesses the control block.
            unsafe { &mut *self.ctl_ptr(ring) }.reset();
        }
        let s = self.shared();
        for a in [&s.current_item, &s.done, &s.started, &s.claim] {
            a.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        // `fence` is kept: sequence numbers only grow, so an old fence revokes nothing new.
    }
}

/// How much work, in time, a worker's queue may hold beyond its first two chunks.
const QUEUE_TARGET_NS: f64 = 1e6;
/// And at most this many tasks or chunks, whatever their measured cost.
const QUEUE_MAX_ITEMS: usize = 8192;
const QUEUE_MAX_CHUNKS: usize = 256;

/// One worker: its channel, its process, its unanswered chunks.
pub(crate) struct Slot {
    pub chan: Channel,
    pub pid: i32,
    pub pidfd: Option<PidFd>,
    pub alive: bool,
    pub inflight: VecDeque<InFlight>,
    pub inflight_items: usize,
    /// Deaths in a row without finishing a task or being blamed for one.
    pub strikes: u32,
    /// Jobs whose per-call value this incarnation has received.
    pub args_sent: Vec<u64>,
    /// Sequence number of the last chunk sent to this slot (never reset: see `WorkerShared`).
    pub seq: u64,
    /// Measured cost of one task on this worker (ns, moving average over records).
    pub ns_per_item: f64,
    /// The chunk (by seq) the worker was running when its queue was taken back: no more work
    /// goes to it until that chunk is answered.
    pub stalled_on: Option<u64>,
    /// The progress mark (`started`, `done`, `current_item`) last seen, and when it was first seen.
    pub watch: ((u64, u64, u64), Instant),
    /// Set when the parent killed the worker for running past its time limit.
    pub timed_out: Option<Duration>,
}

impl Slot {
    pub(crate) fn new(max_message: usize) -> Result<Slot> {
        Ok(Slot {
            chan: Channel::new(max_message)?,
            pid: 0,
            pidfd: None,
            alive: false,
            inflight: VecDeque::new(),
            inflight_items: 0,
            strikes: 0,
            args_sent: Vec::new(),
            seq: 0,
            ns_per_item: 2000.0,
            stalled_on: None,
            watch: ((0, 0, 0), Instant::now()),
            timed_out: None,
        })
    }

    /// Whether the worker has enough queued: two chunks, plus as many as its measured speed
    /// gets through in about a millisecond (bounded). A short queue is what lets a stuck worker
    /// hold up little, and what the parent takes back when another worker runs dry.
    pub(crate) fn saturated(&self) -> bool {
        if self.stalled_on.is_some_and(|q| self.inflight.front().is_some_and(|f| f.seq == q)) {
            return true;
        }
        let n = self.inflight.len();
        n >= 2
            && (n >= QUEUE_MAX_CHUNKS
                || self.inflight_items >= QUEUE_MAX_ITEMS
                || self.inflight_items as f64 * self.ns_per_item >= QUEUE_TARGET_NS)
    }

    /// Learns the cost of a task from a record of `count` tasks that took `busy_ns` (0: not timed).
    /// (A function of the field, so it can be called while the channel is borrowed.)
    pub(crate) fn learn(ns_per_item: &mut f64, count: u32, busy_ns: u64) {
        if count > 0 && busy_ns > 0 {
            let x = busy_ns as f64 / f64::from(count);
            *ns_per_item = 0.75 * *ns_per_item + 0.25 * x.max(1.0);
        }
    }

    /// Takes back every chunk the worker has not started (the claim/fence handshake of
    /// `WorkerShared`): they are returned, to be sent elsewhere. The chunk it runs stays.
    pub(crate) fn revoke(&mut self) -> Vec<InFlight> {
        let Some(last) = self.inflight.back().map(|f| f.seq) else { return Vec::new() };
        let shared = self.chan.shared();
        // Never lowered (a chunk moved earlier must stay revoked): a SeqCst read-modify-write,
        // in the handshake's total order like a store.
        shared.fence.fetch_max(last, Ordering::SeqCst);
        let claimed = shared.claim.load(Ordering::SeqCst);
        let mut moved = Vec::new();
        let mut kept = VecDeque::new();
        for f in self.inflight.drain(..) {
            if f.seq > claimed { moved.push(f) } else { kept.push_back(f) }
        }
        self.inflight = kept;
        self.inflight_items = self.inflight.iter().map(InFlight::items).sum();
        self.stalled_on = self.inflight.front().map(|f| f.seq);
        moved
    }

    /// Marks the worker gone (after it was reaped).
    pub(crate) fn gone(&mut self) {
        self.alive = false;
        self.pidfd = None;
        self.stalled_on = None;
    }
}

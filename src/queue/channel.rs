//! [`Queue`] and [`JoinableQueue`]: bounded multi-producer, multi-consumer queues in shared
//! memory, like Python's `multiprocessing.Queue` — without its feeder thread and pipe.
//!
//! # Layout and protocol
//! One anonymous shared mapping holds `capacity` slots of `8 + max_item` bytes (a length, then the
//! item's postcard bytes), two crash-recoverable [`Lock`]s (one for producers, one for
//! consumers) and a small state block: `head` and `tail` (items taken and items published; both
//! only grow, the number queued is `tail − head`), two wake-up words (`not_empty`, `not_full`)
//! with waiter counts, and `closed`.
//!
//! A producer, under the put lock, encodes its item straight into slot `tail % capacity` (free
//! once `tail − head < capacity`: the consumers are done with it) and only then advances `tail`;
//! a consumer, under the get lock, decodes or copies slot `head % capacity` out (published once
//! `head < tail`) and only then advances `head`. Only producers write `tail` and the slot at it,
//! only consumers write `head`, so the two sides never wait for each other's lock: a 1 → 1
//! queue's locks never leave their process's cache, and what crosses between the cores per item
//! is the slot and the two indices. The advance is the single store that
//! publishes, so a process killed while holding a lock (mid-copy) leaves the queue as it was
//! before its operation: its half-written item is never seen (it is dropped), its half-read item
//! stays queued (another consumer gets it, whole). The next locker is told `OwnerDied` by the
//! robust lock and carries on. A consumer killed *after* taking an item loses it, as in Python.
//! A [`JoinableQueue`] counts done items beside `tail`: unfinished is `tail − done`, so no
//! death between two counters can leave `join` waiting for an item nobody has. It also counts,
//! per consumer process, the items taken and marked done, so that `join` can tell the items a
//! dead consumer took from those still being worked on, and report them
//! ([`Error::ItemsLost`]) instead of waiting for ever.
//!
//! # Sleeping
//! A blocked side spins ~30 µs watching `head`/`tail`, then sleeps on its wake-up word (a shared
//! futex). Lost wake-ups are impossible by the usual handshake: the sleeper bumps the waiter count
//! and reads the word (SeqCst), re-checks the queue (SeqCst loads), and sleeps only while the word
//! is unchanged; the other side publishes (a SeqCst store), then reads the waiter count (SeqCst)
//! and, only if it is non-zero, bumps the word and wakes. Either the sleeper sees the new item, or
//! the waker sees the sleeper (and the futex returns at once because the word moved; the proof is
//! at `notify_one`). With nobody asleep a put or get writes no wake-up word at all. A process
//! killed while asleep leaves the waiter count too high, which costs the others a wake-up
//! syscall per operation, never a lost item. A process killed between its publishing store and
//! its wake-up call would leave a sleeper asleep beside an item it could take, so no sleep lasts
//! longer than 50 ms before the sleeper looks again by itself.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::array::RawArray;
use crate::error::{Error, Result};
use crate::queue::ring::spin_until;
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, Plain, ShmBox, ShmSafe};
use crate::sync::{Lock, LockError, LockGuard};
use crate::sys::{self, FutexWait, futex_wait, futex_wake_all, futex_wake_one};

/// Default largest encoded item of [`Queue::new`].
pub const DEFAULT_MAX_ITEM_BYTES: usize = 64 << 10;

#[repr(C)]
struct State {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    not_empty: CachePadded<AtomicU32>,
    not_full: CachePadded<AtomicU32>,
    getters: AtomicU32,
    putters: AtomicU32,
    closed: AtomicU32,
    /// JoinableQueue: items marked done (never more than `tail`; unfinished is `tail − done`).
    done: CachePadded<AtomicU64>,
    all_done: AtomicU32,
    joiners: AtomicU32,
    /// Times a process died holding the lock (and the queue carried on).
    owner_deaths: AtomicU64,
    /// JoinableQueue: what each consumer process took and marked done, so that `join` can tell
    /// items a dead consumer took (and will never mark done) from items still being worked on.
    consumers: [Consumer; CONSUMERS],
}

/// Consumer processes a [`JoinableQueue`] tracks (a slot of a dead one that owes nothing is
/// taken over; past this many at once, further consumers go untracked).
const CONSUMERS: usize = 64;

/// One consumer process's counts. `taking` and `taken` are written only under the get lock;
/// `pid` by the process that claims the slot;
/// `done` by its own `task_done`.
#[repr(C)]
struct Consumer {
    pid: AtomicI32,
    _pad: u32,
    /// `head + 1` of the item being taken (or last taken).
    taking: AtomicU64,
    /// Items taken, times 2, plus 1 while one is being taken: a take sets the low bit before
    /// it moves `head`, and one store after it both counts the item and clears the bit, so a
    /// consumer killed at any point leaves either a settled count or the bit, which the next
    /// get-lock holder settles by `head` (see `settle_dead_taker`).
    taken: AtomicU64,
    done: AtomicU64,
}

impl Consumer {
    fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed) >> 1
    }
}

// SAFETY: atomics only (every bit pattern valid), no pointers, no Drop.
unsafe impl ShmSafe for State {}

/// Why a `put` did not happen. Every case hands the item back.
pub enum PutError<T> {
    /// `try_put`: the queue is full.
    Full(T),
    /// The queue was closed.
    Closed(T),
    /// `put_timeout`: the time ran out.
    Timeout(T),
    /// The item's encoding is larger than the queue's slots.
    TooLarge {
        /// The item.
        item: T,
        /// Its encoded size.
        size: usize,
        /// The queue's limit ([`Queue::max_item_bytes`]).
        limit: usize,
    },
    /// It could not be encoded, or the queue's lock could not be taken.
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::Closed(t) | PutError::Timeout(t) | PutError::Failed(t, _) => t,
            PutError::TooLarge { item, .. } => item,
        }
    }
}

impl<T> PutError<T> {
    /// The same error around another item (or none).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> PutError<U> {
        match self {
            PutError::Full(t) => PutError::Full(f(t)),
            PutError::Closed(t) => PutError::Closed(f(t)),
            PutError::Timeout(t) => PutError::Timeout(f(t)),
            PutError::TooLarge { item, size, limit } => PutError::TooLarge { item: f(item), size, limit },
            PutError::Failed(t, e) => PutError::Failed(f(t), e),
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::TooLarge { size, limit, .. } => write!(f, "TooLarge {{ size: {size}, limit: {limit}, .. }}"),
            PutError::Failed(_, e) => write!(f, "Failed(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Closed(_) => f.write_str("the queue is closed"),
            PutError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            PutError::TooLarge { size, limit, .. } => {
                write!(
                    f,
                    "the item is {size} bytes encoded; the queue's slots hold {limit} (Queue::with_max_item_bytes)"
                )
            }
            PutError::Failed(_, e) => write!(f, "{e}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Error {
        match e {
            PutError::Full(_) => Error::WouldBlock,
            PutError::Closed(_) => Error::Disconnected,
            PutError::Timeout(_) => Error::Timeout,
            PutError::TooLarge { size, limit, .. } => {
                Error::MessageTooLarge { what: "queue item", task: 0, size, limit }
            }
            PutError::Failed(_, e) => e,
        }
    }
}

/// A bounded multi-producer, multi-consumer queue in shared memory, for any serde type.
///
/// Create it before forking; clones and forked copies are the same queue. See the module docs
/// for what a process killed mid-operation leaves behind (nothing torn; a half-put item is
/// dropped, a half-got one stays queued).
///
/// # Example: a worker squares what the parent sends, until a poison pill
/// ```
/// use mproc::{Process, Queue};
///
/// let (jobs, results) = (Queue::<Option<u64>>::new(16)?, Queue::<u64>::new(16)?);
/// let mut worker = Process::spawn(|| -> mproc::Result<()> {
///     while let Some(n) = jobs.get()? {
///         results.put(n * n)?;
///     }
///     Ok(())
/// })?;
/// for n in 1..=10 {
///     jobs.put(Some(n))?;
/// }
/// jobs.put(None)?; // the poison pill
/// let total: u64 = (0..10).map(|_| results.get()).sum::<mproc::Result<u64>>()?;
/// assert_eq!(total, 385);
/// assert!(worker.join()?.success());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Queue<T> {
    /// The consumers' lock (the first part of a named queue: what `contention watch` shows).
    lock: Lock,
    /// The producers' lock.
    put_lock: Lock,
    st: ShmBox<State>,
    buf: RawArray<u8>,
    capacity: usize,
    slot: usize,
    /// This handle's last reading of `head`, for producers: a lower bound (`head` only grows),
    /// so while it shows room there is room, and a producer running ahead of the consumers does
    /// not pull their index's cache line across on every `put`.
    seen_head: AtomicU64,
    /// This handle's last reading of `tail`, for consumers, likewise: items below it are there.
    seen_tail: AtomicU64,
    /// A [`JoinableQueue`]'s: only then does a `get` count what this process took.
    joinable: bool,
    /// This process's slot in `State::consumers`: `pid << 32 | index + 1` (0: none yet). Keyed
    /// by pid, since a forked child starts with its parent's copy of the handle.
    my_slot: AtomicU64,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        let parts = (self.lock.clone(), self.put_lock.clone(), self.st.clone(), self.buf.clone());
        Queue { joinable: self.joinable, ..Queue::from_parts(parts, self.capacity, self.slot) }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("max_item_bytes", &self.slot)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Why [`Queue::put_raw`]'s writer could not lay an item into its slot.
enum Unwritable {
    /// Its encoding has this many bytes, more than a slot holds.
    TooLarge(usize),
    /// It could not be encoded.
    Failed(Error),
}

/// A writer for [`Queue::put_raw`] of bytes whose length was checked against the slot already.
fn copy_into(bytes: &[u8], dst: &mut [u8]) -> std::result::Result<usize, Unwritable> {
    match dst.get_mut(..bytes.len()) {
        Some(d) => {
            d.copy_from_slice(bytes);
            Ok(bytes.len())
        }
        None => Err(Unwritable::TooLarge(bytes.len())),
    }
}

fn encode_error(e: postcard::Error) -> Error {
    Error::Encode { what: "queue item", task: 0, message: e.to_string() }
}

/// Takes one of the queue's locks; a holder that died mid-operation left the state consistent
/// (see the module docs), so its death is not an error here, only counted. `get_lock`: it is
/// the consumers' lock, whose dead holder may have been mid-take.
fn take<'a>(lock: &'a Lock, st: &State, get_lock: bool) -> Result<LockGuard<'a>> {
    match lock.lock() {
        Ok(g) => Ok(g),
        Err(LockError::OwnerDied { guard, .. }) => {
            st.owner_deaths.fetch_add(1, Ordering::Relaxed);
            if get_lock {
                settle_dead_taker(st);
            }
            Ok(guard)
        }
        Err(e) => Err(e.into()),
    }
}

/// After the get lock's holder died: a consumer that died mid-take left the low bit of its
/// `taken` word set. Only the get lock's holder sets and clears it, so whatever is set now is
/// the dead holder's (its pid may still look alive: the kernel frees robust locks before the
/// process is a zombie). If `head` moved past the item, the dead consumer took it: count it as
/// taken, so that a JoinableQueue's `join` reports it; if not, the item is still queued.
fn settle_dead_taker(st: &State) {
    let head = st.head.load(Ordering::SeqCst);
    for c in &st.consumers {
        let w = c.taken.load(Ordering::Relaxed);
        if w & 1 != 0 {
            let took = u64::from(head >= c.taking.load(Ordering::Relaxed));
            c.taken.store(((w >> 1).wrapping_add(took)) << 1, Ordering::Relaxed);
        }
    }
}

/// The longest a queue's sleeper waits before it looks again by itself (see `wait_for`).
const RECHECK: Duration = Duration::from_millis(50);

/// Spins until `ready` as the rings do ([`spin_until`]: a short pure spin, then bursts that
/// yield the core), then sleeps on `word` (with `waiters` counted) until `ready` or `deadline`.
/// Returns whether `ready` held.
fn wait_for(word: &AtomicU32, waiters: &AtomicU32, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
    if spin_until(&ready) {
        return true;
    }
    loop {
        waiters.fetch_add(1, Ordering::SeqCst);
        let seen = word.load(Ordering::SeqCst);
        if ready() {
            waiters.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
                Some(l) => Some(l),
                None => {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    return false;
                }
            },
        };
        // Never asleep for more than `RECHECK`: a process killed between its publishing store
        // and its wake-up call (the only wake-up that could be missed) costs the sleepers at
        // most that long, instead of leaving them asleep with an item queued.
        let r = futex_wait(word, seen, Some(left.map_or(RECHECK, |l| l.min(RECHECK))));
        waiters.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return true;
        }
        if r == FutexWait::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

/// After a SeqCst store that makes a sleeper's condition true: if anyone is counted asleep,
/// bumps `word` and wakes one. With no sleeper it touches nothing shared but the waiter count's
/// line (read, not written), which is what keeps a busy queue's hand-off cheap.
///
/// No wake-up is lost. The publisher's condition store, its `waiters` load, the sleeper's
/// `waiters` increment and its re-check of the condition are all SeqCst, in one total order. If
/// the publisher's load comes first, its store does too, so the sleeper's later re-check sees the
/// condition and it does not sleep. Otherwise the publisher sees the sleeper and bumps `word`: if
/// the sleeper read `word` before the bump, its `futex_wait` returns at once (the value moved) or
/// is woken; if after, its re-check (later in its program than that read) sees the condition.
fn notify_one(word: &AtomicU32, waiters: &AtomicU32) {
    if waiters.load(Ordering::SeqCst) > 0 {
        word.fetch_add(1, Ordering::SeqCst);
        futex_wake_one(word);
    }
}

/// [`notify_one`], waking every sleeper.
fn notify_all(word: &AtomicU32, waiters: &AtomicU32) {
    if waiters.load(Ordering::SeqCst) > 0 {
        word.fetch_add(1, Ordering::SeqCst);
        futex_wake_all(word);
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of `capacity` items of at most [`DEFAULT_MAX_ITEM_BYTES`] encoded.
    pub fn new(capacity: usize) -> Result<Queue<T>> {
        Queue::with_max_item_bytes(capacity, DEFAULT_MAX_ITEM_BYTES)
    }

    /// A queue of `capacity` items of at most `max_item_bytes` each, encoded (postcard). The
    /// mapping reserves `capacity × (max_item_bytes + 8)` bytes of address space; pages are only
    /// touched as slots are used.
    pub fn with_max_item_bytes(capacity: usize, max_item_bytes: usize) -> Result<Queue<T>> {
        Queue::build(None, capacity, max_item_bytes)
    }

    /// A queue of `capacity` items of at most `max_item_bytes` each in `arena` — an anonymous
    /// [`Arena`], or a [`NamedArena`](crate::NamedArena)'s (whose space is reserved up front:
    /// keep `capacity × (max_item_bytes + 8)` to what the items need).
    pub fn new_in(arena: &Arena, capacity: usize, max_item_bytes: usize) -> Result<Queue<T>> {
        Queue::build(Some(arena), capacity, max_item_bytes)
    }
}

impl<T> Queue<T> {
    fn build(arena: Option<&Arena>, capacity: usize, max_item_bytes: usize) -> Result<Queue<T>> {
        if capacity == 0 || max_item_bytes == 0 {
            return Err(Error::InvalidArgument("a queue needs a capacity and an item size of at least 1".into()));
        }
        let slot = max_item_bytes
            .checked_add(8)
            .and_then(|s| s.checked_next_multiple_of(8))
            .ok_or(Error::SegmentTooLarge { requested: u64::MAX, available: 0 })?;
        let bytes = capacity.checked_mul(slot).ok_or(Error::SegmentTooLarge { requested: u64::MAX, available: 0 })?;
        let state = State {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            not_empty: CachePadded::new(AtomicU32::new(0)),
            not_full: CachePadded::new(AtomicU32::new(0)),
            getters: AtomicU32::new(0),
            putters: AtomicU32::new(0),
            closed: AtomicU32::new(0),
            done: CachePadded::new(AtomicU64::new(0)),
            all_done: AtomicU32::new(0),
            joiners: AtomicU32::new(0),
            owner_deaths: AtomicU64::new(0),
            consumers: [const {
                Consumer {
                    pid: AtomicI32::new(0),
                    _pad: 0,
                    taking: AtomicU64::new(0),
                    taken: AtomicU64::new(0),
                    done: AtomicU64::new(0),
                }
            }; CONSUMERS],
        };
        let (lock, put_lock, st, buf) = match arena {
            None => (Lock::new()?, Lock::new()?, ShmBox::new(state)?, RawArray::zeroed(bytes)?),
            Some(a) => (Lock::new_in(a)?, Lock::new_in(a)?, a.alloc(state)?, RawArray::zeroed_in(a, bytes)?),
        };
        Ok(Queue::from_parts((lock, put_lock, st, buf), capacity, slot))
    }

    /// A handle on a queue's shared parts (consumers' lock, producers' lock, state, slots), with
    /// this handle's own fields fresh: no index seen yet, no consumer slot, not joinable.
    fn from_parts(parts: (Lock, Lock, ShmBox<State>, RawArray<u8>), capacity: usize, slot: usize) -> Queue<T> {
        let (lock, put_lock, st, buf) = parts;
        Queue {
            lock,
            put_lock,
            st,
            buf,
            capacity,
            slot,
            seen_head: AtomicU64::new(0),
            seen_tail: AtomicU64::new(0),
            joinable: false,
            my_slot: AtomicU64::new(0),
            _t: PhantomData,
        }
    }

    /// Largest encoded item it takes.
    pub fn max_item_bytes(&self) -> usize {
        self.slot - 8
    }

    /// How many items it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items queued now. Approximate: other processes put and get meanwhile.
    pub fn len(&self) -> usize {
        let head = self.st.head.load(Ordering::Acquire);
        (self.st.tail.load(Ordering::Acquire).saturating_sub(head)) as usize
    }

    /// Whether it is empty now (approximate, like [`Queue::len`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times a process died while holding one of the queue's internal locks (mid-`put`
    /// or mid-`get`); the queue recovered each time (see the module docs).
    pub fn owner_deaths(&self) -> u64 {
        self.st.owner_deaths.load(Ordering::Relaxed)
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.st.closed.load(Ordering::Acquire) != 0
    }

    /// Takes no more items: `put` fails with `Closed`; `get` drains what is queued, then returns
    /// [`Error::Disconnected`]. Wakes everyone waiting.
    pub fn close(&self) {
        self.st.closed.store(1, Ordering::SeqCst);
        notify_all(&self.st.not_empty, &self.st.getters);
        notify_all(&self.st.not_full, &self.st.putters);
    }

    // Both checks also hold when the indices are impossible (overwritten by something other
    // than mproc's code): the waiter then takes the lock and reports `Corrupt` instead of
    // waiting forever for a change that cannot come.

    fn has_room(&self) -> bool {
        let st = &*self.st;
        // Head first: the tail read after it can only be larger (both only grow, head ≤ tail).
        // SeqCst: a sleeper's re-check takes part in the handshake of `notify_one`.
        let head = st.head.load(Ordering::SeqCst);
        let tail = st.tail.load(Ordering::SeqCst);
        // Room unless exactly full; an impossible `head > tail` or `tail − head > capacity` counts
        // as room (see above).
        st.closed.load(Ordering::SeqCst) != 0 || head > tail || tail - head != self.capacity as u64
    }

    fn has_item(&self) -> bool {
        let st = &*self.st;
        let head = st.head.load(Ordering::SeqCst);
        let tail = st.tail.load(Ordering::SeqCst);
        // An item unless empty; an impossible `head > tail` counts as one (see above).
        st.closed.load(Ordering::SeqCst) != 0 || tail != head
    }

    /// Checks the indices read under the lock: `head ≤ tail ≤ head + capacity` always holds for
    /// a queue only mproc's code wrote.
    fn check_indices(&self, head: u64, tail: u64) -> Result<()> {
        // `tail == u64::MAX` cannot be reached by puts; rejected so that `tail + 1` cannot wrap.
        if head > tail || tail - head > self.capacity as u64 || tail == u64::MAX {
            return Err(Error::Corrupt(format!(
                "queue indices head {head}, tail {tail} are impossible for capacity {}",
                self.capacity
            )));
        }
        Ok(())
    }
}

impl<T> Queue<T> {
    /// This process's consumer slot (claimed on first use: a free one, or one of a dead process
    /// that owes nothing); `None` when all are taken.
    fn consumer(&self) -> Option<&Consumer> {
        let pid = sys::current_pid();
        let cached = self.my_slot.load(Ordering::Relaxed);
        let slots = &self.st.consumers;
        if cached >> 32 == pid as u64 && cached as u32 != 0 {
            return slots.get(cached as u32 as usize - 1);
        }
        for (i, c) in slots.iter().enumerate() {
            let owner = c.pid.load(Ordering::Acquire);
            let free = owner == 0
                || (owner != pid
                    && c.taken.load(Ordering::Relaxed) & 1 == 0
                    && c.taken() <= c.done.load(Ordering::Relaxed)
                    && !sys::pid_running(owner));
            if owner == pid || (free && c.pid.compare_exchange(owner, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
            {
                if owner != pid {
                    c.taken.store(0, Ordering::Relaxed);
                    c.done.store(0, Ordering::Relaxed);
                }
                self.my_slot.store((pid as u64) << 32 | (i as u64 + 1), Ordering::Relaxed);
                return Some(c);
            }
        }
        None
    }

    /// The one put protocol of every codec: `write` lays the item into the slot's item bytes
    /// (all [`Queue::max_item_bytes`] of them, under the lock, before `tail` publishes them) and
    /// says how many it wrote. `len`: the item's size when known before encoding (checked
    /// against the slot before anything else).
    fn put_raw<I>(
        &self,
        item: I,
        len: Option<usize>,
        deadline: Option<Instant>,
        block: bool,
        write: impl Fn(&I, &mut [u8]) -> std::result::Result<usize, Unwritable>,
    ) -> Result<(), PutError<I>> {
        let limit = self.max_item_bytes();
        if let Some(len) = len.filter(|&l| l > limit) {
            return Err(PutError::TooLarge { item, size: len, limit });
        }
        loop {
            if self.is_closed() {
                return Err(PutError::Closed(item));
            }
            {
                let _g = match take(&self.put_lock, &self.st, false) {
                    Ok(g) => g,
                    Err(e) => return Err(PutError::Failed(item, e)),
                };
                let st = &*self.st;
                // Own index, then head with Acquire: the consumers' copy out of a slot happens
                // before the `head` store that frees it. A stale head only makes the queue look
                // fuller, so the shared one is read only when the last reading shows no room.
                let tail = st.tail.load(Ordering::Relaxed);
                let mut head = self.seen_head.load(Ordering::Acquire);
                if head > tail || tail - head >= self.capacity as u64 {
                    head = st.head.load(Ordering::Acquire);
                    self.seen_head.store(head, Ordering::Release);
                }
                if let Err(e) = self.check_indices(head, tail) {
                    return Err(PutError::Failed(item, e));
                }
                if tail - head < self.capacity as u64 {
                    let off = (tail % self.capacity as u64) as usize * self.slot;
                    // SAFETY: the put lock is held, so no other producer writes the slot at
                    // `tail`, and no consumer reads it: consumers read only slots in
                    // `head..tail`, and `tail − head < capacity` says this one was freed; the
                    // slot is `off..off + slot`, inside the mapping (`off + slot ≤ capacity ×
                    // slot`), its first 8 bytes the length and the rest the item's.
                    let (p, dst) = unsafe {
                        let p = self.buf.as_ptr().add(off);
                        (p, std::slice::from_raw_parts_mut(p.add(8), limit))
                    };
                    let len = match write(&item, dst) {
                        // Every writer returns the length of a prefix of `dst` (and a consumer
                        // checks the length against the slot again).
                        Ok(len) => {
                            debug_assert!(len <= limit, "a writer claims {len} of {limit} bytes");
                            len
                        }
                        Err(Unwritable::TooLarge(size)) => return Err(PutError::TooLarge { item, size, limit }),
                        Err(Unwritable::Failed(e)) => return Err(PutError::Failed(item, e)),
                    };
                    // SAFETY: as above, the slot's first 8 bytes (8-aligned: `off` is a multiple
                    // of the slot size, itself of 8).
                    unsafe { p.cast::<u64>().write_unaligned(len as u64) }
                    // Publish: the one store that makes the item visible (it orders the copy
                    // before it; SeqCst for the wake-up handshake, see `notify_one`).
                    st.tail.store(tail + 1, Ordering::SeqCst);
                    drop(_g);
                    notify_one(&st.not_empty, &st.getters);
                    return Ok(());
                }
            }
            if !block {
                return Err(PutError::Full(item));
            }
            if !wait_for(&self.st.not_full, &self.st.putters, deadline, || self.has_room()) {
                return Err(PutError::Timeout(item));
            }
        }
    }

    /// The one get protocol of both codecs: `read` gets the slot's bytes (its length checked
    /// against the slot) under the lock, before `head` frees them.
    fn get_raw<R>(
        &self,
        deadline: Option<Instant>,
        block: bool,
        mut read: impl FnMut(&[u8]) -> Result<R>,
    ) -> Result<R> {
        loop {
            {
                let _g = take(&self.lock, &self.st, true)?;
                let st = &*self.st;
                // Own index first: the tail read after it can only be larger. The shared tail is
                // read only when the last reading shows nothing left (as `head` for producers).
                let head = st.head.load(Ordering::Relaxed);
                let mut tail = self.seen_tail.load(Ordering::Acquire);
                if tail <= head {
                    tail = st.tail.load(Ordering::Acquire);
                    self.seen_tail.store(tail, Ordering::Release);
                }
                self.check_indices(head, tail)?;
                if tail > head {
                    let off = (head % self.capacity as u64) as usize * self.slot;
                    // SAFETY: the get lock is held, so no other consumer takes the slot at
                    // `head`, and it was published (tail > head, read with Acquire), so no
                    // producer writes it until `head` moves past it; its length was written by
                    // the producer, which checked it against the slot size — checked again here
                    // against a corrupted length.
                    let bytes = unsafe {
                        let p = self.buf.as_ptr().add(off);
                        let len = p.cast::<u64>().read_unaligned() as usize;
                        if len > self.max_item_bytes() {
                            return Err(Error::Corrupt(format!(
                                "queue slot {} claims {len} bytes",
                                head % self.capacity as u64
                            )));
                        }
                        std::slice::from_raw_parts(p.add(8), len)
                    };
                    // A record `read` refuses stays queued: no half-taken state.
                    let r = read(bytes)?;
                    let me = if self.joinable { self.consumer() } else { None };
                    if let Some(c) = me {
                        c.taking.store(head + 1, Ordering::Relaxed);
                        c.taken.store(c.taken.load(Ordering::Relaxed) | 1, Ordering::SeqCst);
                    }
                    st.head.store(head + 1, Ordering::SeqCst);
                    if let Some(c) = me {
                        let n = c.taken.load(Ordering::Relaxed) >> 1;
                        c.taken.store(n.wrapping_add(1) << 1, Ordering::SeqCst);
                    }
                    drop(_g);
                    notify_one(&st.not_full, &st.putters);
                    return Ok(r);
                }
            }
            if self.is_closed() {
                return Err(Error::Disconnected);
            }
            if !block {
                return Err(Error::WouldBlock);
            }
            if !wait_for(&self.st.not_empty, &self.st.getters, deadline, || self.has_item()) {
                return Err(Error::Timeout);
            }
        }
    }
}

impl<T> Queue<T> {
    /// A message of raw bytes, copied into the slot as it is (no encoding): the [`Pipe`]'s
    /// messages, whose queues only ever carry these. `block`: waits for room until `deadline`;
    /// otherwise only if there is room now.
    ///
    /// [`Pipe`]: crate::Pipe
    pub(crate) fn put_bytes(&self, bytes: &[u8], deadline: Option<Instant>, block: bool) -> Result<(), PutError<()>> {
        self.put_raw((), Some(bytes.len()), deadline, block, |_, dst| copy_into(bytes, dst))
    }

    /// The next message of raw bytes ([`Queue::put_bytes`]'s), copied out of its slot; waits as
    /// `put_bytes` does ([`Error::WouldBlock`] when not blocking and there is none).
    pub(crate) fn get_bytes(&self, deadline: Option<Instant>, block: bool) -> Result<Vec<u8>> {
        self.get_raw(deadline, block, |b| Ok(b.to_vec()))
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Encodes `item` straight into its slot, under the put lock: no buffer of its own, one copy
    /// of the bytes (an item of 1 MiB is written once, not encoded into a `Vec` and copied).
    /// Its size is measured (one more encoding pass) only when the queue is full: so that an
    /// item too large for any slot is refused at once instead of after a wait for room.
    fn put_until(&self, item: T, deadline: Option<Instant>, block: bool) -> Result<(), PutError<T>> {
        let encode = |item: &T, dst: &mut [u8]| match postcard::to_slice(item, dst) {
            Ok(used) => Ok(used.len()),
            // Measured after the lock is dropped (a second encoding pass), below.
            Err(postcard::Error::SerializeBufferFull) => Err(Unwritable::TooLarge(0)),
            Err(e) => Err(Unwritable::Failed(encode_error(e))),
        };
        let sized = |r: Result<(), PutError<T>>| match r {
            Err(PutError::TooLarge { item, size: 0, limit }) => match postcard::experimental::serialized_size(&item) {
                Ok(size) => Err(PutError::TooLarge { item, size, limit }),
                Err(e) => Err(PutError::Failed(item, encode_error(e))),
            },
            r => r,
        };
        match sized(self.put_raw(item, None, deadline, false, encode)) {
            Err(PutError::Full(item)) => {
                let limit = self.max_item_bytes();
                match postcard::experimental::serialized_size(&item) {
                    Ok(size) if size > limit => Err(PutError::TooLarge { item, size, limit }),
                    Err(e) => Err(PutError::Failed(item, encode_error(e))),
                    Ok(_) if !block => Err(PutError::Full(item)),
                    Ok(_) => sized(self.put_raw(item, None, deadline, true, encode)),
                }
            }
            r => r,
        }
    }

    /// Waits for room and puts `item` (the item comes back in the error).
    ///
    /// The item is encoded straight into its slot while the producers' lock is held: its
    /// `Serialize` must not put into the same queue (that would wait for itself) or wait for
    /// something another producer of this queue holds.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None, true)
    }

    /// Puts `item` only if there is room now.
    pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None, false)
    }

    /// Waits at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now() + timeout), true)
    }

    fn get_until(&self, deadline: Option<Instant>, block: bool) -> Result<T> {
        // Decoded straight from the slot, under the lock: one copy and one allocation fewer than
        // copying the bytes out first. A record that does not decode is taken all the same (it
        // would fail every consumer in turn), and reported.
        let r = self.get_raw(deadline, block, |b| Ok(postcard::from_bytes::<T>(b)))?;
        r.map_err(|e| Error::Decode { what: "queue item", task: 0, message: e.to_string() })
    }

    /// Waits for an item and takes it. After [`Queue::close`], returns what is left, then
    /// [`Error::Disconnected`].
    pub fn get(&self) -> Result<T> {
        self.get_until(None, true)
    }

    /// Takes an item if one is there now ([`Error::WouldBlock`] otherwise).
    pub fn try_get(&self) -> Result<T> {
        self.get_until(None, false)
    }

    /// Waits at most `timeout` ([`Error::Timeout`] then).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_until(Some(Instant::now() + timeout), true)
    }

    /// The items as they come, until the queue is closed and drained (or an error).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get().ok())
    }
}

/// The plain-data path: items of a [`Plain`] type cross as their bytes, copied straight into the
/// slot under the lock and straight out of it, with no encoding, no allocation and no
/// intermediate buffer.
///
/// Why methods of their own (`put_plain`, `get_plain`) rather than a codec picked by type, as the
/// Pool's `Auto` does: `Auto` can only tell plain types from others among the few it knows
/// (integers, floats, byte vectors), since Rust has no specialisation; a user's
/// `#[derive(Pod)]` struct would still go through serde. Here the caller says which path, the
/// bound is checked at compile time, and `T` needs no serde at all. A queue made with
/// [`Queue::plain`] has slots of exactly `size_of::<T>()` bytes. Every crash-safety property of
/// the module docs holds unchanged: the same lock, the same single publishing store.
///
/// Keep to one path per queue: `get_plain` refuses (with [`Error::Decode`], the record left
/// queued) a record that is not `size_of::<T>()` bytes, but `get` on a plain record would try to
/// read postcard out of raw bytes.
///
/// # Example: 4-byte records with no serde
/// ```
/// use mproc::{Process, Queue};
///
/// let q = Queue::<[u32; 2]>::plain(64)?;
/// let mut w = Process::spawn(|| -> mproc::Result<()> {
///     for i in 0..100u32 {
///         q.put_plain([i, i * i])?;
///     }
///     Ok(())
/// })?;
/// let sum: u32 = (0..100).map(|_| q.get_plain().map(|[_, sq]| sq)).sum::<mproc::Result<u32>>()?;
/// assert_eq!(sum, 328_350);
/// assert!(w.join()?.success());
/// # Ok::<(), mproc::Error>(())
/// ```
impl<T: Plain> Queue<T> {
    /// A queue of `capacity` plain items, each slot exactly `size_of::<T>()` bytes (plus its
    /// 8-byte length).
    pub fn plain(capacity: usize) -> Result<Queue<T>> {
        Queue::build(None, capacity, size_of::<T>().max(1))
    }

    /// [`Queue::plain`] in `arena` (an [`Arena`] or a [`NamedArena`](crate::NamedArena)'s).
    pub fn plain_in(arena: &Arena, capacity: usize) -> Result<Queue<T>> {
        Queue::build(Some(arena), capacity, size_of::<T>().max(1))
    }

    fn put_plain_until(&self, item: T, deadline: Option<Instant>, block: bool) -> Result<(), PutError<T>> {
        self.put_raw(item, Some(size_of::<T>()), deadline, block, |item, dst| copy_into(bytemuck::bytes_of(item), dst))
    }

    fn get_plain_until(&self, deadline: Option<Instant>, block: bool) -> Result<T> {
        self.get_raw(deadline, block, |b| {
            bytemuck::try_pod_read_unaligned(b).map_err(|_| Error::Decode {
                what: "plain queue item",
                task: 0,
                message: format!("a record of {} bytes, not the {} of the item type", b.len(), size_of::<T>()),
            })
        })
    }

    /// Waits for room and puts `item` as its bytes (the item comes back in the error).
    pub fn put_plain(&self, item: T) -> Result<(), PutError<T>> {
        self.put_plain_until(item, None, true)
    }

    /// [`Queue::put_plain`] only if there is room now.
    pub fn try_put_plain(&self, item: T) -> Result<(), PutError<T>> {
        self.put_plain_until(item, None, false)
    }

    /// [`Queue::put_plain`], waiting at most `timeout` for room.
    pub fn put_plain_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_plain_until(item, Some(Instant::now() + timeout), true)
    }

    /// [`Queue::put_plain`] from a reference, for items too large to move about by value (a
    /// 1 MiB array in a `Box`): the bytes go from `item` straight into the slot. The error
    /// carries no item (the caller still has it).
    pub fn put_plain_ref(&self, item: &T) -> Result<(), PutError<()>> {
        self.put_raw(item, Some(size_of::<T>()), None, true, |item, dst| copy_into(bytemuck::bytes_of(*item), dst))
            .map_err(|e| e.map(|_| ()))
    }

    /// [`Queue::get_plain`] into `out`, straight from the slot (for large items, with
    /// [`Queue::put_plain_ref`]).
    pub fn get_plain_into(&self, out: &mut T) -> Result<()> {
        self.get_raw(None, true, |b| {
            if b.len() != size_of::<T>() {
                return Err(Error::Decode {
                    what: "plain queue item",
                    task: 0,
                    message: format!("a record of {} bytes, not the {} of the item type", b.len(), size_of::<T>()),
                });
            }
            bytemuck::bytes_of_mut(out).copy_from_slice(b);
            Ok(())
        })
    }

    /// Waits for an item put with [`Queue::put_plain`] and takes it; after [`Queue::close`],
    /// returns what is left, then [`Error::Disconnected`].
    pub fn get_plain(&self) -> Result<T> {
        self.get_plain_until(None, true)
    }

    /// [`Queue::get_plain`] if an item is there now ([`Error::WouldBlock`] otherwise).
    pub fn try_get_plain(&self) -> Result<T> {
        self.get_plain_until(None, false)
    }

    /// [`Queue::get_plain`], waiting at most `timeout` ([`Error::Timeout`] then).
    pub fn get_plain_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_plain_until(Some(Instant::now() + timeout), true)
    }
}

/// A [`Queue`] that counts unfinished items, like Python's `JoinableQueue`: every `put` adds one,
/// every [`JoinableQueue::task_done`] takes one away, and [`JoinableQueue::join`] waits for zero.
///
/// # Example
/// ```
/// use mproc::{JoinableQueue, Process};
///
/// let q = JoinableQueue::<u32>::new(8)?;
/// let mut w = Process::spawn(|| -> mproc::Result<()> {
///     for _ in 0..5 {
///         let _job = q.get()?;
///         q.task_done()?;
///     }
///     Ok(())
/// })?;
/// for i in 0..5 {
///     q.put(i)?;
/// }
/// q.join()?; // every item was marked done
/// assert!(w.join()?.success());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue").field("queue", &self.q).field("unfinished", &self.unfinished()).finish()
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue of `capacity` items (see [`Queue::new`]).
    pub fn new(capacity: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { q: Queue { joinable: true, ..Queue::new(capacity)? } })
    }

    /// A joinable queue in `arena` (see [`Queue::new_in`]).
    pub fn new_in(arena: &Arena, capacity: usize, max_item_bytes: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue { q: Queue { joinable: true, ..Queue::new_in(arena, capacity, max_item_bytes)? } })
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken with `get` as done. Calling it more often than items were put is
    /// [`Error::Misuse`].
    pub fn task_done(&self) -> Result<()> {
        let st = &*self.q.st;
        // `done` never passes `tail`: unfinished is their difference, so nothing a dying
        // producer or consumer leaves half-done can make it wrong (see the module docs).
        let prev = st
            .done
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| (d < st.tail.load(Ordering::SeqCst)).then_some(d + 1))
            .map_err(|_| Error::Misuse("task_done() called more times than there were items put".into()))?;
        if let Some(c) = self.q.consumer() {
            c.done.fetch_add(1, Ordering::Relaxed);
        }
        if prev.wrapping_add(1) == st.tail.load(Ordering::SeqCst) {
            notify_all(&st.all_done, &st.joiners);
        }
        Ok(())
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> u64 {
        let st = &*self.q.st;
        let done = st.done.load(Ordering::Acquire);
        st.tail.load(Ordering::Acquire).saturating_sub(done)
    }

    fn all_done(&self) -> bool {
        let st = &*self.q.st;
        let done = st.done.load(Ordering::SeqCst);
        // Done first: the tail read after it is at least as large, so equality is real.
        done >= st.tail.load(Ordering::SeqCst)
    }

    /// [`Error::ItemsLost`] if every item not yet done was taken by a consumer process that has
    /// since died (so nothing can ever finish them); `None` while any may still be done.
    fn lost(&self) -> Option<Error> {
        let unfinished = self.unfinished();
        if unfinished == 0 {
            return None;
        }
        let me = sys::current_pid();
        let (mut first, mut items) = (0, 0u64);
        for c in &self.q.st.consumers {
            let pid = c.pid.load(Ordering::Acquire);
            let owed = c.taken().saturating_sub(c.done.load(Ordering::Relaxed));
            if pid > 0 && pid != me && owed > 0 && !sys::pid_running(pid) {
                first = if first == 0 { pid } else { first };
                items = items.saturating_add(owed);
            }
        }
        (items > 0 && unfinished <= items).then_some(Error::ItemsLost { pid: first, items })
    }

    /// Waits for every item to be done, or until `deadline`; between waits of at most 20 ms it
    /// looks for items that dead consumers took.
    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        let st = &*self.q.st;
        loop {
            if self.all_done() {
                return Ok(());
            }
            if let Some(e) = self.lost() {
                return Err(e);
            }
            let step = Instant::now() + Duration::from_millis(20);
            let until = deadline.map_or(step, |d| d.min(step));
            if wait_for(&st.all_done, &st.joiners, Some(until), || self.all_done()) {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }

    /// Waits until every item put has been marked done. A consumer process that died after
    /// taking an item never marks it done: once the only items left are such, this returns
    /// [`Error::ItemsLost`] (with a dead consumer's pid) instead of waiting for ever. Consumers
    /// are tracked per process (up to 64 at a time); a pid reused by a new process before the
    /// check hides its predecessor's death.
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Waits at most `timeout` for every item to be marked done ([`Error::Timeout`] then;
    /// [`Error::ItemsLost`] as for [`JoinableQueue::join`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Some(Instant::now() + timeout))
    }
}

impl<T> Queue<T> {
    fn describe_parts(&self, parts: &mut Parts) {
        // The get lock first: every kind with a lock records it as its first part.
        parts.part(self.lock.raw_box());
        parts.part(&self.st);
        parts.part(self.buf.data_box());
        parts.value(self.capacity as u64);
        parts.value(self.slot as u64);
        parts.part(self.put_lock.raw_box());
    }

    /// # Safety
    /// As for [`NamedObject::rebuild`], for a queue's entry.
    unsafe fn rebuild_parts(r: &Rebuild<'_>) -> Result<Self> {
        let (capacity, slot) = (r.value(3), r.value(4));
        // Every slot offset `(i % capacity) × slot + 8 + len` (len ≤ slot − 8) stays inside the
        // buffer of capacity × slot bytes, whose bounds `slice` checks against the entry.
        let buf_len = match capacity.checked_mul(slot) {
            Some(n) if capacity > 0 && slot >= 16 && slot.is_multiple_of(8) => n,
            _ => return Err(r.corrupt(format!("queue of capacity {capacity}, slots of {slot} bytes"))),
        };
        let capacity = usize::try_from(capacity).map_err(|_| r.corrupt("capacity"))?;
        let slot = usize::try_from(slot).map_err(|_| r.corrupt("slot size"))?;
        // SAFETY: per the caller: its locks, its state (atomics only), its buffer of plain
        // bytes (any bits valid; accessed under a lock, lengths checked on every read).
        unsafe {
            let parts = (
                Lock::rebuild_at(r, 0, false)?,
                Lock::rebuild_at(r, 5, false)?,
                r.part::<State>(1)?,
                RawArray::from_box(r.slice(2, buf_len)?),
            );
            Ok(Queue::from_parts(parts, capacity, slot))
        }
    }
}

impl<T> Sealed for Queue<T> {}

impl<T> NamedObject for Queue<T> {
    const KIND: ObjectKind = ObjectKind::Queue;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[Lock::SHAPE, shape::<State>(), Lock::SHAPE])
    }
    fn describe(&self, parts: &mut Parts) {
        self.describe_parts(parts);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: forwarded.
        unsafe { Queue::rebuild_parts(r) }
    }
}

impl<T> Sealed for JoinableQueue<T> {}

impl<T> NamedObject for JoinableQueue<T> {
    const KIND: ObjectKind = ObjectKind::JoinableQueue;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[Lock::SHAPE, shape::<State>(), Lock::SHAPE])
    }
    fn describe(&self, parts: &mut Parts) {
        self.q.describe_parts(parts);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: forwarded.
        Ok(JoinableQueue { q: Queue { joinable: true, ..unsafe { Queue::rebuild_parts(r)? } } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Impossible indices (written by something other than mproc's code) make even untimed
    /// operations fail with `Corrupt` instead of waiting for a change that cannot come. A handle
    /// reads the other side's index only when its last reading shows no room (or no item), so an
    /// operation may still succeed on that reading (in bounds: offsets are taken modulo the
    /// capacity); the first one that reads the impossible index reports it.
    #[test]
    fn impossible_indices_fail_untimed_operations_instead_of_hanging() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let q = Queue::<u64>::with_max_item_bytes(4, 16).unwrap();
            q.st.head.store(9, Ordering::SeqCst); // taken more than was ever put
            let a = matches!(q.get(), Err(Error::Corrupt(_)));
            // This handle last saw head 0, so the put goes ahead; the get after it reads tail.
            let b = matches!(q.put(1), Ok(())) && matches!(q.get(), Err(Error::Corrupt(_)));
            q.st.head.store(0, Ordering::SeqCst);
            q.st.tail.store(100, Ordering::SeqCst); // more queued than it holds
            let c = matches!(q.put(2), Err(PutError::Failed(2, Error::Corrupt(_))));
            // Gets may take what the last reading of tail showed, then read it and report.
            let gets: Vec<_> = (0..=q.capacity()).map(|_| q.get()).collect();
            let d = gets.iter().all(|g| matches!(g, Ok(_) | Err(Error::Corrupt(_))))
                && gets.iter().any(|g| matches!(g, Err(Error::Corrupt(_))));
            let _ = tx.send([a, b, c, d]);
        });
        let r = rx.recv_timeout(Duration::from_secs(10)).expect("an untimed operation hung on impossible indices");
        assert_eq!(r, [true; 4]);
    }

    /// Items are encoded straight into their slot: one that does not fit is refused whole, with
    /// its exact size, at once even when the queue is full (never after a wait for room), and
    /// leaves nothing behind; one that exactly fits goes through.
    #[test]
    fn an_item_encoded_in_place_that_does_not_fit_is_refused_at_once_and_leaves_nothing() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let q = Queue::<String>::with_max_item_bytes(2, 64).unwrap();
            let limit = q.max_item_bytes();
            let fits = "x".repeat(limit - 1); // postcard: a 1-byte length, then the bytes
            let over = "y".repeat(limit);
            let too_large = |r: std::result::Result<(), PutError<String>>| match r {
                Err(PutError::TooLarge { item, size, limit: l }) => item == over && size == limit + 1 && l == limit,
                _ => false,
            };
            let a = too_large(q.put(over.clone()));
            q.put(fits.clone()).unwrap();
            q.put("a".into()).unwrap();
            let b = too_large(q.put(over.clone())) && too_large(q.try_put(over.clone()));
            let c = q.get().unwrap() == fits && q.get().unwrap() == "a" && q.is_empty();
            let _ = tx.send([a, b, c]);
        });
        let r = rx.recv_timeout(Duration::from_secs(10)).expect("a put of a too-large item waited for room");
        assert_eq!(r, [true; 3]);
    }
}

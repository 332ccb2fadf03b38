//! A single-producer, single-consumer ring of variable-length records in shared memory, and the
//! sleep/wake handshake of its two sides.
//!
//! Why SPSC and not one MPMC queue for all workers: each Pool worker has a ring of its own in each
//! direction, so no two processes ever write the same ring, and a producer that dies mid-write
//! cannot corrupt anything — a record becomes visible only when `head` is published after it is
//! complete. The parent also knows exactly which records went to which worker, which is what lets
//! it say which task a dead worker was running.
//!
//! # Layout
//! Positions `head` (bytes written) and `tail` (bytes read) only grow; a position's offset is
//! `pos % cap`. A record is an 8-byte header (`len: u32`, `kind: u32`) and `len` bytes, padded to
//! 8. A record that would straddle the end is preceded by a `PAD` header that fills the rest of
//! the buffer, and starts again at offset 0. Any record of at most `cap / 2 - 8` bytes always fits
//! in an empty ring.
//!
//! # The two halves
//! A ring is used through a [`Producer`] and a [`Consumer`], each tied by its lifetime to the
//! memory it points into, neither `Copy` nor `Clone`. The consumer hands out a [`Record`] guard
//! that borrows it: the record's bytes cannot outlive it, and only [`Record::commit`] frees them.
//!
//! # Sleeping and waking (the handshake, written once, here)
//! A side that finds nothing to do spins for [`SPIN`], then sleeps. Each side has a flag in the
//! control block (`consumer_asleep`, `producer_asleep`). How a side sleeps differs (a worker in
//! `futex_wait` on its flag; the parent in `poll` on an eventfd and every worker's pidfd, so a
//! death wakes it too), and so does how the other side wakes it: that is the [`Wake`] trait. The
//! protocol is the same for both and lives in two functions below, `wake_if_asleep` (the side that
//! just published) and `doze` (the side that wants to sleep):
//!
//! - sleeper: `flag = ASLEEP` (SeqCst); re-check the condition (SeqCst load of `head` or `tail`);
//!   sleep only if still not ready; `flag = AWAKE` after waking.
//! - publisher: store `head` or `tail` (SeqCst); load `flag` (SeqCst); if `ASLEEP`, swap it to
//!   `AWAKE` and wake the sleeper.
//!
//! The four accesses are SeqCst, so they fall in one total order. If the publisher's flag load
//! comes before the sleeper's flag store, then its position store (earlier in its program) also
//! comes before the sleeper's re-check (later in the sleeper's program), and the re-check sees the
//! new position: the sleeper does not sleep. Otherwise the publisher sees `ASLEEP` and wakes it.
//! A futex sleeper passes `ASLEEP` as the expected value: if the publisher swapped the flag before
//! the sleeper entered the kernel, `futex_wait` returns at once. The eventfd keeps a count, so a
//! notify that lands before `poll` is not lost either. No wake-up is lost, so no sleep has a
//! timeout: a bug here hangs (and a watchdog catches it) instead of being hidden by a backstop.
//!
//! # Memory ordering of the data
//! The producer writes the bytes, then publishes `head` (SeqCst, which includes Release); the
//! consumer loads `head` (Acquire or SeqCst) before it reads the bytes. Symmetrically for `tail`,
//! which tells the producer the space is free again.

use std::borrow::Borrow;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::shm::ShmSafe;
use crate::sys::{self, EventFd};

const PAD: u32 = u32::MAX;
const HDR: usize = 8;
const AWAKE: u32 = 0;
const ASLEEP: u32 = 1;

/// How long a side spins looking for work or room before it sleeps. Spinning catches the quick
/// hand-offs (tens of ns); sleeping costs ~20 µs per wake-up on a VM but leaves the core to
/// processes that have work.
pub(crate) const SPIN: Duration = Duration::from_micros(30);

/// How long a side spins before it starts yielding its core between bursts of spinning.
pub(crate) const SPIN_HOT: Duration = Duration::from_micros(2);

/// Spins until `ready()` for up to [`SPIN`] of wall time; returns whether it became ready. After
/// [`SPIN_HOT`] it yields the core between bursts: when processes outnumber cores (a parent and
/// two workers on two), a side spinning on the core its peer needs holds the peer off for the
/// whole spin (measured on a 2-core machine: `map` at chunk size 1 ran at half speed in some runs,
/// by where the scheduler put the processes, and start-up was a third slower). A yield may return
/// late when another task holds the core, so the bound is on spinning, not on the call.
pub(crate) fn spin_until(ready: impl Fn() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        for _ in 0..64 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        let spent = t0.elapsed();
        if spent > SPIN {
            return ready();
        }
        if spent > SPIN_HOT {
            std::thread::yield_now();
        }
    }
}

/// The shared control block of one ring; the data follows it in the same segment.
#[repr(C)]
pub(crate) struct RingControl {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    consumer_asleep: CachePadded<AtomicU32>,
    producer_asleep: CachePadded<AtomicU32>,
}

// SAFETY: atomics only; zero is the valid empty state; no Drop.
unsafe impl ShmSafe for RingControl {}

impl RingControl {
    /// An empty ring's control block (the same as zeroed memory).
    #[cfg(test)]
    pub(crate) fn new() -> RingControl {
        RingControl {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            consumer_asleep: CachePadded::new(AtomicU32::new(AWAKE)),
            producer_asleep: CachePadded::new(AtomicU32::new(AWAKE)),
        }
    }

    /// Empties the ring. `&mut`: no half of it is in use (its other process is dead).
    pub(crate) fn reset(&mut self) {
        *self.head.get_mut() = 0;
        *self.tail.get_mut() = 0;
        *self.consumer_asleep.get_mut() = AWAKE;
        *self.producer_asleep.get_mut() = AWAKE;
    }
}

/// How one side wakes the other once it has found it asleep (see the module docs).
pub(crate) trait Wake {
    /// Wakes the side that sleeps on `flag` (which the caller just swapped to `AWAKE`).
    fn wake(&self, flag: &AtomicU32);
}

/// The other side sleeps in `futex_wait` on its flag (a worker).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Futex;

impl Wake for Futex {
    fn wake(&self, flag: &AtomicU32) {
        sys::futex_wake_one(flag);
    }
}

impl Futex {
    fn sleep(flag: &AtomicU32) {
        // No timeout: see "Sleeping and waking". Returns at once if the flag is no longer ASLEEP.
        sys::futex_wait(flag, ASLEEP, None);
    }
}

/// The other side sleeps in `poll` on this eventfd (the parent).
impl Wake for &EventFd {
    fn wake(&self, _flag: &AtomicU32) {
        self.notify();
    }
}

/// The publishing side of the handshake. Called right after the SeqCst store of `head` or `tail`.
#[inline]
fn wake_if_asleep(flag: &AtomicU32, w: &impl Wake) {
    // SeqCst load: ordered after our position store, against the sleeper's flag store.
    if flag.load(Ordering::SeqCst) == ASLEEP && flag.swap(AWAKE, Ordering::SeqCst) == ASLEEP {
        w.wake(flag);
    }
}

/// The sleeping side of the handshake, for one or several flags: announce on every flag, re-check
/// `ready`, sleep only if still not ready, retract. Returns what `sleep` returned, if it slept.
#[cold]
fn doze<'f, R>(
    flags: impl Iterator<Item = &'f AtomicU32> + Clone,
    ready: impl Fn() -> bool,
    sleep: impl FnOnce() -> R,
) -> Option<R> {
    for f in flags.clone() {
        f.store(ASLEEP, Ordering::SeqCst);
    }
    // The re-check's loads of head/tail are SeqCst, after the flag stores.
    let slept = if ready() { None } else { Some(sleep()) };
    for f in flags {
        f.store(AWAKE, Ordering::SeqCst);
    }
    slept
}

fn padded(len: usize) -> usize {
    (HDR + len).next_multiple_of(8)
}

/// Why a push did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Not enough free space now.
    Full,
    /// Larger than the ring can ever hold.
    TooLarge,
}

/// The memory of one ring, shared by both halves' code.
struct Raw<'seg> {
    ctl: &'seg RingControl,
    data: NonNull<u8>,
    cap: usize,
}

impl<'seg> Raw<'seg> {
    /// # Safety
    /// See [`Producer::from_raw`].
    unsafe fn new(ctl: &'seg RingControl, data: *mut u8, cap: usize) -> Raw<'seg> {
        debug_assert!(cap.is_multiple_of(8) && cap >= 64);
        Raw { ctl, data: NonNull::new(data).expect("ring data is not null"), cap }
    }

    fn max_record(&self) -> usize {
        self.cap / 2 - HDR
    }

    fn has_data(&self) -> bool {
        self.ctl.head.load(Ordering::SeqCst) != self.ctl.tail.load(Ordering::Relaxed)
    }

    fn has_room(&self, len: usize) -> bool {
        let head = self.ctl.head.load(Ordering::Relaxed) as usize;
        let used = head - self.ctl.tail.load(Ordering::SeqCst) as usize;
        let to_end = self.cap - head % self.cap;
        let need = padded(len);
        self.cap - used >= need + if to_end < need { to_end } else { 0 }
    }

    fn write_header(&self, off: usize, len: u32, kind: u32) {
        // SAFETY: `off` is 8-aligned and at most cap - 8, so the 8 header bytes are inside the
        // buffer, in space the consumer has released (checked by the caller).
        unsafe {
            self.data.as_ptr().add(off).cast::<u32>().write(len);
            self.data.as_ptr().add(off + 4).cast::<u32>().write(kind);
        }
    }

    fn read_header(&self, off: usize) -> (usize, u32) {
        // SAFETY: a published record header lies at the 8-aligned `off` < cap (the caller loaded
        // `head` with Acquire or SeqCst after it was published).
        unsafe {
            let p = self.data.as_ptr().add(off);
            (p.cast::<u32>().read() as usize, p.add(4).cast::<u32>().read())
        }
    }
}

/// The writing half of a ring. One exists per ring at a time, across all processes.
pub(crate) struct Producer<'seg, W: Wake> {
    raw: Raw<'seg>,
    waker: W,
    sleeps: u64,
    /// The record being written in place ([`Producer::reserve`]), until it is committed.
    reserved: Option<Reserved>,
}

/// Where a record goes ([`Producer::place`]; kept while a record is written in place): a PAD
/// first at `pad` (offset, bytes to the ring's end) if it wraps, then its header at `start` and
/// its payload (at most `room` bytes); `head` is the position of its header.
#[derive(Debug, Clone, Copy)]
struct Reserved {
    pad: Option<(usize, usize)>,
    start: usize,
    room: usize,
    head: usize,
}

/// The reading half of a ring. One exists per ring at a time, across all processes.
pub(crate) struct Consumer<'seg, W: Wake> {
    raw: Raw<'seg>,
    waker: W,
    sleeps: u64,
}

// SAFETY: the pointer refers to memory that stays mapped for 'seg in every thread of the process;
// the SPSC protocol makes the accesses of this half race-free wherever it runs. Not `Sync`: one
// half is used by one thread at a time.
unsafe impl<W: Wake + Send> Send for Producer<'_, W> {}
// SAFETY: as for `Producer`.
unsafe impl<W: Wake + Send> Send for Consumer<'_, W> {}

impl<W: Wake> std::fmt::Debug for Producer<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("cap", &self.raw.cap).finish_non_exhaustive()
    }
}

impl<W: Wake> std::fmt::Debug for Consumer<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("cap", &self.raw.cap).finish_non_exhaustive()
    }
}

impl<'seg, W: Wake> Producer<'seg, W> {
    /// The producer of the ring at `ctl` and `data`; `waker` wakes its consumer.
    ///
    /// # Safety
    /// - `ctl` is a zeroed or previously used `RingControl` and `data` points to `cap` bytes, both
    ///   mapped (and not otherwise written) for `'seg`; `cap` is a multiple of 8 and at least 64;
    /// - no other producer of this ring is used while this one is (in any process or thread).
    pub(crate) unsafe fn from_raw(ctl: &'seg RingControl, data: *mut u8, cap: usize, waker: W) -> Self {
        // SAFETY: the same contract.
        Producer { raw: unsafe { Raw::new(ctl, data, cap) }, waker, sleeps: 0, reserved: None }
    }

    /// Largest record payload that always fits.
    pub(crate) fn max_record(&self) -> usize {
        self.raw.max_record()
    }

    /// Whether a record of `len` bytes would fit now.
    #[cfg(test)]
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.raw.has_room(len)
    }

    /// How many times this half went to sleep waiting for room.
    #[cfg(test)]
    pub(crate) fn sleeps(&self) -> u64 {
        self.sleeps
    }

    /// Where a record of at least `min` payload bytes (at most `max`, as many as are free in one
    /// piece) goes now, if it fits: before the ring's end, or at its start after a PAD.
    fn place(&self, min: usize, max: usize) -> Option<Reserved> {
        let (ctl, cap) = (self.raw.ctl, self.raw.cap);
        let need = padded(min);
        let head = ctl.head.load(Ordering::Relaxed) as usize;
        // Acquire: the consumer is done with the bytes before `tail`.
        let free = cap - (head - ctl.tail.load(Ordering::Acquire) as usize);
        let off = head % cap;
        let to_end = cap - off;
        // Positions and `cap` are multiples of 8, so is `free`.
        let r = if to_end >= need {
            if free < need {
                return None;
            }
            Reserved { pad: None, start: off, room: to_end.min(free) - HDR, head }
        } else {
            if free < to_end + need {
                return None;
            }
            Reserved { pad: Some((off, to_end)), start: 0, room: free - to_end - HDR, head: head + to_end }
        };
        debug_assert!(r.room >= min && padded(r.room.min(max)) <= free);
        Some(Reserved { room: r.room.min(max), ..r })
    }

    /// Publishes the record placed at `r` as `len` bytes of `kind` (its payload written), and
    /// wakes the consumer if it sleeps.
    fn publish(&mut self, r: Reserved, kind: u32, len: usize) {
        if let Some((off, to_end)) = r.pad {
            self.raw.write_header(off, (to_end - HDR) as u32, PAD);
        }
        self.raw.write_header(r.start, len as u32, kind);
        let ctl = self.raw.ctl;
        // SeqCst: Release for the bytes, and the handshake's position store.
        ctl.head.store((r.head + padded(len)) as u64, Ordering::SeqCst);
        wake_if_asleep(&ctl.consumer_asleep, &self.waker);
    }

    /// Appends a record of `kind` whose payload `fill` writes into the slice it is given (exactly
    /// `len` bytes), publishes it and wakes the consumer if it sleeps.
    pub(crate) fn try_push_with(
        &mut self,
        kind: u32,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), PushError> {
        if len > self.max_record() {
            return Err(PushError::TooLarge);
        }
        self.reserved = None; // this record takes the space a reservation had found
        let r = self.place(len, len).ok_or(PushError::Full)?;
        // SAFETY: `place` put the record's `len` payload bytes inside the buffer, before its end,
        // in free space that only this producer writes until it publishes `head`.
        let body = unsafe { std::slice::from_raw_parts_mut(self.raw.data.as_ptr().add(r.start + HDR), len) };
        fill(body);
        self.publish(r, kind, len);
        Ok(())
    }

    /// Waits (spin, then `futex_wait`) until a record of `len` bytes fits: only for a side with
    /// nothing else to watch (a worker), which sleeps until the consumer makes room.
    fn wait_for_room(&mut self, len: usize) {
        while !self.raw.has_room(len) {
            if spin_until(|| self.raw.has_room(len)) {
                break;
            }
            let flag: &AtomicU32 = &self.raw.ctl.producer_asleep;
            if doze(std::iter::once(flag), || self.raw.has_room(len), || Futex::sleep(flag)).is_some() {
                self.sleeps += 1;
            }
        }
    }

    /// Reserves a record to be written in place: at least `min` payload bytes (waiting, as
    /// [`Producer::push_with`] does, while the ring has less room), at most `max`, as many as
    /// are free in one piece. Returns where the payload goes and how many bytes it may take.
    /// The consumer sees nothing until [`Producer::commit_reserved`]; any other push drops the
    /// reservation (its space goes to that record).
    pub(crate) fn reserve(&mut self, min: usize, max: usize) -> Result<(NonNull<u8>, usize), PushError> {
        if min > self.max_record() {
            return Err(PushError::TooLarge);
        }
        let max = max.clamp(min, self.max_record());
        self.wait_for_room(min);
        // Only this producer takes space, so the room found above is still there.
        let r = self.place(min, max).expect("room for the record");
        self.reserved = Some(r);
        // SAFETY: `place` put the record's payload (`room` bytes) inside the buffer, before its end.
        Ok((unsafe { self.raw.data.add(r.start + HDR) }, r.room))
    }

    /// Publishes the reserved record ([`Producer::reserve`]) as `len` bytes of `kind`, written
    /// in place, and wakes the consumer if it sleeps.
    ///
    /// # Panics
    /// If nothing is reserved, or `len` is more than the reservation's room.
    pub(crate) fn commit_reserved(&mut self, kind: u32, len: usize) {
        let r = self.reserved.take().expect("a reserved record");
        assert!(len <= r.room, "a record of {len} bytes in a reservation of {}", r.room);
        self.publish(r, kind, len);
    }

    /// Appends `bytes` as one record.
    pub(crate) fn try_push(&mut self, kind: u32, bytes: &[u8]) -> Result<(), PushError> {
        self.try_push_with(kind, bytes.len(), |b| b.copy_from_slice(bytes))
    }

    /// Like [`Producer::try_push_with`], but waits (spin, then `futex_wait`) while the ring is
    /// full. Only for a side with nothing else to watch (a worker): it sleeps until the consumer
    /// makes room, however long that takes.
    pub(crate) fn push_with(&mut self, kind: u32, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), PushError> {
        if len > self.max_record() {
            return Err(PushError::TooLarge);
        }
        self.wait_for_room(len);
        // Only this producer takes space, so the room found above is still there.
        self.try_push_with(kind, len, fill)
    }
}

impl<'seg, W: Wake> Consumer<'seg, W> {
    /// The consumer of the ring at `ctl` and `data`; `waker` wakes its producer.
    ///
    /// # Safety
    /// As [`Producer::from_raw`], for consumers: no other consumer of this ring is used while
    /// this one is.
    pub(crate) unsafe fn from_raw(ctl: &'seg RingControl, data: *mut u8, cap: usize, waker: W) -> Self {
        // SAFETY: the same contract.
        Consumer { raw: unsafe { Raw::new(ctl, data, cap) }, waker, sleeps: 0 }
    }

    /// How many times this half went to sleep waiting for a record.
    #[cfg(test)]
    pub(crate) fn sleeps(&self) -> u64 {
        self.sleeps
    }

    /// The oldest record, if any. It stays in the ring until [`Record::commit`].
    pub(crate) fn try_recv(&mut self) -> Option<Record<'_, 'seg, W>> {
        let ctl = self.raw.ctl;
        // Acquire: the record's bytes were written before `head` was published.
        let head = ctl.head.load(Ordering::Acquire) as usize;
        let mut tail = ctl.tail.load(Ordering::Relaxed) as usize;
        loop {
            if tail == head {
                return None;
            }
            let off = tail % self.raw.cap;
            let (len, kind) = self.raw.read_header(off);
            if kind == PAD {
                tail += padded(len);
                // A PAD is always followed by a record published with it, which is committed
                // (and wakes the producer) next.
                ctl.tail.store(tail as u64, Ordering::SeqCst);
                continue;
            }
            return Some(Record { ring: self, kind, off, len });
        }
    }

    /// The oldest record, waiting for one (spin, then `futex_wait`) if the ring is empty. Only for
    /// a side with nothing else to watch (a worker).
    pub(crate) fn recv(&mut self) -> Record<'_, 'seg, W> {
        while !self.raw.has_data() {
            if spin_until(|| self.raw.has_data()) {
                break;
            }
            let flag: &AtomicU32 = &self.raw.ctl.consumer_asleep;
            if doze(std::iter::once(flag), || self.raw.has_data(), || Futex::sleep(flag)).is_some() {
                self.sleeps += 1;
            }
        }
        // `head != tail`, and a PAD is never published alone: a record is there.
        self.try_recv().expect("a published record")
    }
}

/// Waits until any of `consumers` has a record: spins for [`SPIN`], then sleeps through `sleep`
/// (which must return when the producers' [`Wake`] fires). Returns what `sleep` returned, if it
/// slept. The parent uses it with `poll` on its eventfd and the workers' pidfds.
pub(crate) fn wait_any<'seg, W, C, R>(
    consumers: impl Iterator<Item = C> + Clone,
    sleep: impl FnOnce() -> R,
) -> Option<R>
where
    W: Wake + 'seg,
    C: Borrow<Consumer<'seg, W>>,
{
    let any = || consumers.clone().any(|c| c.borrow().raw.has_data());
    if spin_until(any) {
        return None;
    }
    let flags = consumers.clone().map(|c| {
        let ctl: &'seg RingControl = c.borrow().raw.ctl;
        &*ctl.consumer_asleep
    });
    doze(flags, any, sleep)
}

/// A record of a [`Consumer`], borrowed from it: its bytes stay valid (and in the ring) until
/// [`Record::commit`]; dropping the guard without committing leaves the record in the ring.
#[must_use = "the record stays in the ring until commit()"]
pub(crate) struct Record<'c, 'seg, W: Wake> {
    ring: &'c mut Consumer<'seg, W>,
    kind: u32,
    off: usize,
    len: usize,
}

impl<W: Wake> Record<'_, '_, W> {
    /// The record's kind.
    pub(crate) fn kind(&self) -> u32 {
        self.kind
    }

    /// The record's payload.
    pub(crate) fn body(&self) -> &[u8] {
        // SAFETY: the `len` bytes follow the header at `off` and were published with it; the
        // producer does not reuse them before `tail` passes them, which only `commit` does, and
        // `commit` consumes this guard.
        unsafe { std::slice::from_raw_parts(self.ring.raw.data.as_ptr().add(self.off + HDR), self.len) }
    }

    /// Removes the record from the ring, and wakes the producer if it waits for room.
    pub(crate) fn commit(self) {
        let ctl = self.ring.raw.ctl;
        let tail = ctl.tail.load(Ordering::Relaxed) as usize;
        debug_assert_eq!(tail % self.ring.raw.cap, self.off);
        // SeqCst: Release (we are done with the bytes), and the handshake's position store.
        ctl.tail.store((tail + padded(self.len)) as u64, Ordering::SeqCst);
        wake_if_asleep(&ctl.producer_asleep, &self.ring.waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    struct Owned {
        ctl: RingControl,
        data: Vec<u64>,
    }

    fn mem(cap: usize) -> Owned {
        Owned { ctl: RingControl::new(), data: vec![0; cap / 8] }
    }

    fn halves<W: Wake + Clone>(o: &mut Owned, w: W) -> (Producer<'_, W>, Consumer<'_, W>) {
        halves2(o, w.clone(), w)
    }

    /// `pw` wakes the consumer, `cw` the producer.
    fn halves2<PW: Wake, CW: Wake>(o: &mut Owned, pw: PW, cw: CW) -> (Producer<'_, PW>, Consumer<'_, CW>) {
        let cap = o.data.len() * 8;
        let data = o.data.as_mut_ptr().cast::<u8>();
        // SAFETY: both live in `o`, borrowed for the halves' lifetime; one producer, one consumer.
        unsafe { (Producer::from_raw(&o.ctl, data, cap, pw), Consumer::from_raw(&o.ctl, data, cap, cw)) }
    }

    /// Aborts the test binary if not dropped within `limit`: a lost wake-up fails, never hangs.
    struct Watchdog(Option<mpsc::Sender<()>>);

    fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: {name} ran past {limit:?} (a lost wake-up?); aborting");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }

    impl Drop for Watchdog {
        fn drop(&mut self) {
            self.0.take();
        }
    }

    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn record_bytes(i: u64) -> Vec<u8> {
        let len = (i.wrapping_mul(0x9e37_79b9) % 120) as usize;
        (0..len).map(|j| (i as usize).wrapping_mul(31).wrapping_add(j) as u8).collect()
    }

    /// Takes the ring's oldest record, if any, and checks it is the oracle's oldest.
    fn pop_against(c: &mut Consumer<'_, Futex>, oracle: &mut std::collections::VecDeque<(u32, Vec<u8>)>) {
        match c.try_recv() {
            Some(rec) => {
                let (k, b) = oracle.pop_front().expect("ring has a record the oracle lacks");
                assert_eq!((rec.kind(), rec.body()), (k, &b[..]));
                rec.commit();
            }
            None => assert!(oracle.is_empty()),
        }
    }

    /// Against a VecDeque oracle: random pushes and pops of random sizes keep order and bytes,
    /// across many wrap-arounds, and `Full` happens only when the bytes really do not fit.
    #[test]
    fn matches_a_vecdeque_oracle_across_wraparounds() {
        let mut o = mem(1024);
        let (mut p, mut c) = halves(&mut o, Futex);
        let mut oracle = std::collections::VecDeque::new();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut pushed = 0;
        for i in 0..200_000u32 {
            if !next().is_multiple_of(3) {
                let len = (next() % 300) as usize;
                let bytes: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                match p.try_push(i, &bytes) {
                    Ok(()) => {
                        oracle.push_back((i, bytes));
                        pushed += 1;
                    }
                    Err(PushError::Full) => assert!(!oracle.is_empty(), "full while empty"),
                    Err(PushError::TooLarge) => unreachable!("{len} < max"),
                }
            } else {
                pop_against(&mut c, &mut oracle);
            }
        }
        assert!(pushed > 50_000);
    }

    /// Records written in place (`reserve`, then `commit_reserved` of fewer or as many bytes as
    /// reserved), mixed with pushes, some reservations let go for a push: against the oracle,
    /// across wrap-arounds (a reservation that does not fit before the end starts at 0).
    #[test]
    fn reserved_records_match_the_oracle_across_wraparounds() {
        let mut o = mem(1024);
        let (mut p, mut c) = halves(&mut o, Futex);
        let mut oracle = std::collections::VecDeque::new();
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let (mut reserved, mut dropped) = (0, 0);
        for i in 0..200_000u32 {
            let roll = next() % 6;
            if roll < 2 {
                let min = (next() % 200) as usize;
                if !p.has_room(min) {
                    continue; // `reserve` would wait for the consumer: this test has none
                }
                let (at, room) = p.reserve(min, min + (next() % 300) as usize).unwrap();
                assert!(room >= min);
                if roll == 1 && !next().is_multiple_of(4) {
                    let len = min + (next() as usize % (room - min + 1));
                    let bytes: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
                    // SAFETY: `reserve` handed out `room >= len` writable bytes at `at`.
                    unsafe { at.as_ptr().copy_from_nonoverlapping(bytes.as_ptr(), len) };
                    p.commit_reserved(i, len);
                    oracle.push_back((i, bytes));
                    reserved += 1;
                } else {
                    // Let go: the next push takes the space.
                    dropped += 1;
                }
            } else if roll < 4 {
                let bytes: Vec<u8> = (0..(next() % 250) as usize).map(|j| (i as usize + j) as u8).collect();
                if p.try_push(i, &bytes).is_ok() {
                    oracle.push_back((i, bytes));
                }
            } else {
                pop_against(&mut c, &mut oracle);
            }
        }
        assert!(reserved > 10_000 && dropped > 5_000, "{reserved} reserved, {dropped} let go");
    }

    /// A producer thread whose reservations wait for a slow consumer thread: every record
    /// arrives whole and in order, and a wait for room ends (the watchdog fails a lost wake-up).
    #[test]
    fn a_reservation_waits_for_room_and_every_record_arrives() {
        let _w = watchdog("reserve_waits", Duration::from_secs(60));
        let mut o = mem(4096);
        let (mut p, mut c) = halves(&mut o, Futex);
        const N: u64 = 20_000;
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..N {
                    let (at, room) = p.reserve(600, 1500).unwrap();
                    let bytes = record_bytes(i);
                    let len = (600 + bytes.len()).min(room);
                    // SAFETY: `room >= len` writable bytes at `at`.
                    let body = unsafe { std::slice::from_raw_parts_mut(at.as_ptr(), len) };
                    body.iter_mut().enumerate().for_each(|(j, b)| *b = (i as usize ^ j) as u8);
                    p.commit_reserved(i as u32, len);
                }
            });
            for i in 0..N {
                let rec = c.recv();
                assert_eq!(rec.kind(), i as u32);
                assert!(rec.body().len() >= 600);
                assert!(rec.body().iter().enumerate().all(|(j, &b)| b == (i as usize ^ j) as u8), "record {i}");
                rec.commit();
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(2)); // let the producer fill the ring
                }
            }
        });
    }

    #[test]
    fn the_largest_record_fits_in_an_empty_ring_at_any_offset_and_larger_is_refused() {
        let mut o = mem(256);
        let (mut p, mut c) = halves(&mut o, Futex);
        for shift in 0..40 {
            p.try_push(1, &vec![7; shift]).unwrap();
            c.try_recv().unwrap().commit();
            let big = vec![shift as u8; p.max_record()];
            assert!(p.has_room(big.len()));
            p.try_push(2, &big).unwrap();
            let rec = c.try_recv().unwrap();
            assert_eq!(rec.body(), &big[..]);
            rec.commit();
        }
        assert_eq!(p.try_push(3, &vec![0; p.max_record() + 1]), Err(PushError::TooLarge));
    }

    #[test]
    fn a_record_dropped_without_commit_stays_in_the_ring() {
        let mut o = mem(256);
        let (mut p, mut c) = halves(&mut o, Futex);
        p.try_push(5, b"hello").unwrap();
        drop(c.try_recv().unwrap());
        let rec = c.try_recv().unwrap();
        assert_eq!((rec.kind(), rec.body()), (5, &b"hello"[..]));
        rec.commit();
        assert!(c.try_recv().is_none());
    }

    /// A wake that records which flag it was called for, to see the handshake from outside.
    #[derive(Clone, Default)]
    struct Count(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl Wake for Count {
        fn wake(&self, _flag: &AtomicU32) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_side_announced_asleep_is_woken_exactly_once_and_an_awake_side_never() {
        let mut o = mem(256);
        let w = Count::default();
        let (mut p, mut c) = halves(&mut o, w.clone());
        p.try_push(1, b"x").unwrap();
        assert_eq!(w.0.load(Ordering::SeqCst), 0, "nobody was asleep");
        c.raw.ctl.consumer_asleep.store(ASLEEP, Ordering::SeqCst);
        p.try_push(1, b"y").unwrap();
        p.try_push(1, b"z").unwrap();
        assert_eq!(w.0.load(Ordering::SeqCst), 1, "woken once: the first publish swapped the flag");
        c.raw.ctl.producer_asleep.store(ASLEEP, Ordering::SeqCst);
        c.try_recv().unwrap().commit();
        assert_eq!(w.0.load(Ordering::SeqCst), 2, "the producer waiting for room was woken");
    }

    /// Producer and consumer threads, both sleeping often (bursts with pauses on the producer so
    /// the consumer sleeps; pauses on the consumer so the ring fills and the producer sleeps):
    /// every record arrives once, in order, with its exact bytes, and neither side hangs — the
    /// futex handshake has no timeout, so a lost wake-up trips the watchdog.
    #[test]
    fn futex_sides_under_contention_sleep_hundreds_of_times_and_lose_no_wake_up() {
        let _dog = watchdog("futex_sides_under_contention", Duration::from_secs(20));
        let mut o = mem(1024);
        let (mut p, mut c) = halves(&mut o, Futex);
        let consumer_sleeps = AtomicU64::new(0);
        let producer_done = AtomicBool::new(false);
        const MIN_SLEEPS: u64 = 200;
        const MIN_RECORDS: u64 = 20_000;
        std::thread::scope(|s| {
            let producer = s.spawn(|| {
                let mut rnd = xorshift(7);
                let mut i = 0u64;
                while i < MIN_RECORDS || p.sleeps() < MIN_SLEEPS || consumer_sleeps.load(Ordering::Relaxed) < MIN_SLEEPS
                {
                    assert!(i < 5_000_000, "the sides did not sleep often enough");
                    for _ in 0..1 + rnd() % 48 {
                        let b = record_bytes(i);
                        p.push_with(i as u32, b.len(), |out| out.copy_from_slice(&b)).unwrap();
                        i += 1;
                    }
                    if rnd().is_multiple_of(2) {
                        std::thread::sleep(Duration::from_micros(50 + rnd() % 200));
                    }
                }
                producer_done.store(true, Ordering::SeqCst);
                p.push_with(u32::MAX - 1, 0, |_| {}).unwrap(); // end marker
                (i, p.sleeps())
            });
            let consumer = s.spawn(|| {
                let mut rnd = xorshift(11);
                let mut i = 0u64;
                loop {
                    let rec = c.recv();
                    if rec.kind() == u32::MAX - 1 {
                        rec.commit();
                        break;
                    }
                    assert_eq!(rec.kind(), i as u32, "order");
                    assert_eq!(rec.body(), &record_bytes(i)[..], "bytes of record {i}");
                    rec.commit();
                    consumer_sleeps.store(c.sleeps(), Ordering::Relaxed);
                    i += 1;
                    if rnd().is_multiple_of(40) {
                        std::thread::sleep(Duration::from_micros(50 + rnd() % 200));
                    }
                }
                i
            });
            let (sent, psleeps) = producer.join().unwrap();
            let got = consumer.join().unwrap();
            assert!(producer_done.load(Ordering::SeqCst));
            assert_eq!(got, sent, "every record arrived once");
            assert!(psleeps >= MIN_SLEEPS && consumer_sleeps.load(Ordering::Relaxed) >= MIN_SLEEPS);
        });
    }

    /// The parent's way: the consumer sleeps in `poll` on an eventfd (through [`wait_any`]) and
    /// the producer (a worker) wakes it through that eventfd.
    #[test]
    fn eventfd_consumer_waiting_in_poll_is_woken_hundreds_of_times_and_loses_nothing() {
        let _dog = watchdog("eventfd_consumer_waiting_in_poll", Duration::from_secs(20));
        let efd = EventFd::new().unwrap();
        let mut o = mem(1024);
        let (mut p, mut c) = halves2(&mut o, &efd, Futex);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let producer = s.spawn(|| {
                let mut rnd = xorshift(3);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for _ in 0..1 + rnd() % 16 {
                        let b = record_bytes(i);
                        p.push_with(i as u32, b.len(), |out| out.copy_from_slice(&b)).unwrap();
                        i += 1;
                    }
                    std::thread::sleep(Duration::from_micros(50 + rnd() % 200));
                }
            });
            let (mut i, mut slept) = (0u64, 0u32);
            while slept < 300 {
                while let Some(rec) = c.try_recv() {
                    assert_eq!((rec.kind(), rec.body()), (i as u32, &record_bytes(i)[..]));
                    rec.commit();
                    i += 1;
                }
                let fd = std::os::fd::AsRawFd::as_raw_fd(&efd);
                if wait_any(std::iter::once(&c), || sys::wait_readable(&[fd], None).unwrap()).is_some() {
                    efd.drain();
                    slept += 1;
                }
            }
            stop.store(true, Ordering::SeqCst);
            // Keep draining so a producer blocked on a full ring can finish.
            while !producer.is_finished() {
                while let Some(rec) = c.try_recv() {
                    assert_eq!((rec.kind(), rec.body()), (i as u32, &record_bytes(i)[..]));
                    rec.commit();
                    i += 1;
                }
                std::thread::yield_now();
            }
            assert!(i > 300, "records arrived: {i}");
        });
    }
}

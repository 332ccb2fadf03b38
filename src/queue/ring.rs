//! A single-producer, single-consumer ring of variable-length records in shared memory.
//!
//! Why SPSC and not one MPMC queue for all workers: each Pool worker has a ring of its own in each
//! direction, so no two processes ever write the same ring, and a producer that dies mid-write
//! cannot corrupt anything — a record becomes visible only when `head` is published after it is
//! complete. The parent also knows exactly which records went to which worker, which is what lets
//! it say which task a dead worker was running.
//!
//! Layout: positions `head` (bytes written) and `tail` (bytes read) only grow; a position's
//! offset is `pos % cap`. A record is an 8-byte header (`len: u32`, `kind: u32`) and `len` bytes,
//! padded to 8. A record that would straddle the end is preceded by a `PAD` header that fills the
//! rest of the buffer, and starts again at offset 0. Any record of at most `cap / 2 - 8` bytes
//! always fits in an empty ring.
//!
//! Memory ordering: the producer writes the bytes, then publishes `head` (Release; SeqCst, see
//! below); the consumer reads `head` (Acquire) before the bytes. Symmetrically for `tail`, which
//! tells the producer the space is free again.
//!
//! Sleeping is the caller's business; the ring only keeps the two flags it needs. A consumer that
//! wants to sleep sets `consumer_asleep` and re-checks for data before sleeping; the producer
//! publishes `head` and then reads the flag. Both sides use SeqCst for these two accesses, so at
//! least one of them sees the other's write: no wake-up is lost. The same holds for
//! `producer_asleep` and `tail`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::shm::ShmSafe;

const PAD: u32 = u32::MAX;
const HDR: usize = 8;

/// The shared control block of one ring; the data follows it in the same segment.
#[repr(C)]
pub(crate) struct RingControl {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    pub(crate) consumer_asleep: CachePadded<AtomicU32>,
    pub(crate) producer_asleep: CachePadded<AtomicU32>,
}

// SAFETY: atomics only; zero is the valid empty state; no Drop.
unsafe impl ShmSafe for RingControl {}

/// A handle on one ring: its control block and its data buffer (both in shared memory that
/// outlives the handle; the owner of the segment guarantees that).
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    ctl: *const RingControl,
    data: *mut u8,
    cap: usize,
}

// SAFETY: the pointers refer to shared memory that every process and thread using the handle
// keeps mapped; the SPSC protocol above makes the accesses race-free.
unsafe impl Send for Ring {}

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

impl Ring {
    /// # Safety
    /// `ctl` points to a zeroed or previously used `RingControl` and `data` to `cap` bytes, both
    /// in memory that stays mapped as long as the handle is used; `cap` is a multiple of 8 and at
    /// least 64; at most one process produces and one consumes at a time.
    pub(crate) unsafe fn from_raw(ctl: *const RingControl, data: *mut u8, cap: usize) -> Ring {
        debug_assert!(cap.is_multiple_of(8) && cap >= 64);
        Ring { ctl, data, cap }
    }

    pub(crate) fn ctl(&self) -> &RingControl {
        // SAFETY: per `from_raw`, the control block stays mapped while the handle is used.
        unsafe { &*self.ctl }
    }

    /// Largest record payload that always fits.
    pub(crate) fn max_record(&self) -> usize {
        self.cap / 2 - HDR
    }

    fn write_header(&self, off: usize, len: u32, kind: u32) {
        // SAFETY: `off` is 8-aligned and at most cap - 8, so the 8 header bytes are inside the
        // buffer, in space the consumer has released (checked by the caller).
        unsafe {
            self.data.add(off).cast::<u32>().write(len);
            self.data.add(off + 4).cast::<u32>().write(kind);
        }
    }

    /// Producer: appends a record of `kind` whose payload `fill` writes into the slice it is given
    /// (exactly `len` bytes). Returns whether the consumer had said it was going to sleep (the
    /// caller wakes it then).
    pub(crate) fn try_push_with(&self, kind: u32, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<bool, PushError> {
        if len > self.max_record() {
            return Err(PushError::TooLarge);
        }
        let ctl = self.ctl();
        let need = padded(len);
        let mut head = ctl.head.load(Ordering::Relaxed) as usize;
        let tail = ctl.tail.load(Ordering::Acquire) as usize;
        let free = self.cap - (head - tail);
        let off = head % self.cap;
        let to_end = self.cap - off;
        let mut start = off;
        if to_end < need {
            if free < to_end + need {
                return Err(PushError::Full);
            }
            self.write_header(off, (to_end - HDR) as u32, PAD);
            head += to_end;
            start = 0;
        } else if free < need {
            return Err(PushError::Full);
        }
        self.write_header(start, len as u32, kind);
        // SAFETY: `start + HDR + len <= cap` (checked above) and the range is free space.
        let body = unsafe { std::slice::from_raw_parts_mut(self.data.add(start + HDR), len) };
        fill(body);
        ctl.head.store((head + need) as u64, Ordering::SeqCst);
        Ok(ctl.consumer_asleep.load(Ordering::SeqCst) != 0)
    }

    /// Producer: appends `bytes` as one record.
    pub(crate) fn try_push(&self, kind: u32, bytes: &[u8]) -> Result<bool, PushError> {
        self.try_push_with(kind, bytes.len(), |b| b.copy_from_slice(bytes))
    }

    /// Consumer: the oldest record (`kind`, payload), if any. It stays valid, and in the ring,
    /// until [`Ring::pop`].
    pub(crate) fn peek(&self) -> Option<(u32, &[u8])> {
        let ctl = self.ctl();
        let head = ctl.head.load(Ordering::Acquire) as usize;
        let mut tail = ctl.tail.load(Ordering::Relaxed) as usize;
        loop {
            if tail == head {
                return None;
            }
            let off = tail % self.cap;
            // SAFETY: a published record header lies at `off` (head was read with Acquire).
            let (len, kind) = unsafe {
                (self.data.add(off).cast::<u32>().read() as usize, self.data.add(off + 4).cast::<u32>().read())
            };
            if kind == PAD {
                tail += padded(len);
                ctl.tail.store(tail as u64, Ordering::SeqCst);
                continue;
            }
            // SAFETY: the record's `len` bytes follow its header and were published with it.
            return Some((kind, unsafe { std::slice::from_raw_parts(self.data.add(off + HDR), len) }));
        }
    }

    /// Consumer: drops the record [`Ring::peek`] returned. Returns whether the producer had said
    /// it was going to sleep waiting for space (the caller wakes it then).
    pub(crate) fn pop(&self) -> bool {
        let ctl = self.ctl();
        let tail = ctl.tail.load(Ordering::Relaxed) as usize;
        let off = tail % self.cap;
        // SAFETY: `peek` returned a record at `tail`, so its header is there.
        let len = unsafe { self.data.add(off).cast::<u32>().read() } as usize;
        ctl.tail.store((tail + padded(len)) as u64, Ordering::SeqCst);
        ctl.producer_asleep.load(Ordering::SeqCst) != 0
    }

    /// Whether a record is waiting (consumer side).
    pub(crate) fn has_data(&self) -> bool {
        let ctl = self.ctl();
        ctl.head.load(Ordering::SeqCst) != ctl.tail.load(Ordering::Relaxed)
    }

    /// Whether a record of `len` bytes would fit now (producer side).
    pub(crate) fn has_room(&self, len: usize) -> bool {
        let ctl = self.ctl();
        let head = ctl.head.load(Ordering::Relaxed) as usize;
        let used = head - ctl.tail.load(Ordering::SeqCst) as usize;
        let to_end = self.cap - head % self.cap;
        let need = padded(len);
        self.cap - used >= need + if to_end < need { to_end } else { 0 }
    }

    /// Empties the ring. Only when neither side is in use (its other process is dead).
    pub(crate) fn reset(&self) {
        let ctl = self.ctl();
        ctl.head.store(0, Ordering::SeqCst);
        ctl.tail.store(0, Ordering::SeqCst);
        ctl.consumer_asleep.store(0, Ordering::SeqCst);
        ctl.producer_asleep.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        ctl: Box<RingControl>,
        data: Vec<u64>,
    }

    fn ring(cap: usize) -> (Owned, Ring) {
        let mut o = Owned {
            ctl: Box::new(RingControl {
                head: CachePadded::new(AtomicU64::new(0)),
                tail: CachePadded::new(AtomicU64::new(0)),
                consumer_asleep: CachePadded::new(AtomicU32::new(0)),
                producer_asleep: CachePadded::new(AtomicU32::new(0)),
            }),
            data: vec![0; cap / 8],
        };
        // SAFETY: both live in `o`, returned alongside and outliving every use in these tests.
        let r = unsafe { Ring::from_raw(&*o.ctl, o.data.as_mut_ptr().cast(), cap) };
        (o, r)
    }

    /// Against a VecDeque oracle: random pushes and pops of random sizes keep order and bytes,
    /// across many wrap-arounds, and `Full` happens only when the bytes really do not fit.
    #[test]
    fn matches_a_vecdeque_oracle_across_wraparounds() {
        let (_o, r) = ring(1024);
        let mut oracle = std::collections::VecDeque::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut pushed = 0;
        for i in 0..200_000u32 {
            if next() % 3 != 0 {
                let len = (next() % 300) as usize;
                let bytes: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
                match r.try_push(i, &bytes) {
                    Ok(_) => {
                        oracle.push_back((i, bytes));
                        pushed += 1;
                    }
                    Err(PushError::Full) => assert!(!oracle.is_empty(), "full while empty"),
                    Err(PushError::TooLarge) => unreachable!("{len} < max"),
                }
            } else if let Some((kind, body)) = r.peek() {
                let (k, b) = oracle.pop_front().expect("ring has a record the oracle lacks");
                assert_eq!((kind, body), (k, &b[..]));
                r.pop();
            } else {
                assert!(oracle.is_empty());
            }
        }
        assert!(pushed > 50_000);
    }

    #[test]
    fn the_largest_record_fits_in_an_empty_ring_at_any_offset_and_larger_is_refused() {
        let (_o, r) = ring(256);
        for shift in 0..40 {
            r.try_push(1, &vec![7; shift]).unwrap();
            r.peek().unwrap();
            r.pop();
            let big = vec![shift as u8; r.max_record()];
            assert!(r.has_room(big.len()));
            r.try_push(2, &big).unwrap();
            assert_eq!(r.peek().unwrap().1, &big[..]);
            r.pop();
        }
        assert_eq!(r.try_push(3, &vec![0; r.max_record() + 1]), Err(PushError::TooLarge));
    }

    #[test]
    fn sleep_flags_are_reported_to_the_other_side() {
        let (_o, r) = ring(256);
        r.ctl().consumer_asleep.store(1, Ordering::SeqCst);
        assert_eq!(r.try_push(1, b"x"), Ok(true));
        r.ctl().producer_asleep.store(1, Ordering::SeqCst);
        r.peek().unwrap();
        assert!(r.pop());
    }
}

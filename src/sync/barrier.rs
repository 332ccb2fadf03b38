use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::{Arena, ShmBox, ShmSafe};
use crate::sync::remaining;
use crate::sys::{futex_wait, futex_wake_all};

/// Protocol: each arrival bumps `arrived`; the last one resets it to 0, then bumps `generation`
/// (Release) and wakes everyone sleeping on `generation`. Waiters sleep while `generation` holds
/// the value they read on arrival. Because the reset happens before the bump, a process released
/// from one round that arrives at the next sees `arrived` already at 0.
///
/// A waiter that times out marks the barrier broken and wakes the others, who then fail with
/// [`Error::BrokenBarrier`] instead of waiting forever for a party that left.
#[repr(C)]
struct BarrierState {
    parties: u32,
    arrived: AtomicU32,
    generation: AtomicU32,
    broken: AtomicU32,
}

// SAFETY: a u32 and atomics; no pointers; no Drop. (Zero parties is refused at construction.)
unsafe impl ShmSafe for BarrierState {}

/// A process-shared barrier for a fixed number of parties.
///
/// # Example
/// ```
/// let b = mproc::Barrier::new(1)?;
/// assert!(b.wait()?); // the last (here: only) party to arrive is the leader
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    st: ShmBox<BarrierState>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier").field("parties", &self.st.parties).finish_non_exhaustive()
    }
}

fn state(parties: u32) -> Result<BarrierState> {
    if parties == 0 {
        return Err(Error::InvalidArgument("a barrier needs at least 1 party".into()));
    }
    Ok(BarrierState { parties, arrived: AtomicU32::new(0), generation: AtomicU32::new(0), broken: AtomicU32::new(0) })
}

impl Barrier {
    /// A barrier that releases its waiters once `parties` of them have arrived.
    pub fn new(parties: u32) -> Result<Barrier> {
        Ok(Barrier { st: ShmBox::new(state(parties)?)? })
    }

    /// The same, in `arena`.
    pub fn new_in(arena: &Arena, parties: u32) -> Result<Barrier> {
        Ok(Barrier { st: arena.alloc(state(parties)?)? })
    }

    /// Number of parties.
    pub fn parties(&self) -> u32 {
        self.st.parties
    }

    /// Waits for all parties. Returns `true` in exactly one of them (the last to arrive).
    pub fn wait(&self) -> Result<bool> {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; on timeout returns [`Error::Timeout`] and breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let st = &*self.st;
        if st.broken.load(Ordering::Acquire) != 0 {
            return Err(Error::BrokenBarrier);
        }
        let generation = st.generation.load(Ordering::Acquire);
        if st.arrived.fetch_add(1, Ordering::AcqRel) + 1 == st.parties {
            st.arrived.store(0, Ordering::Relaxed);
            st.generation.fetch_add(1, Ordering::Release);
            futex_wake_all(&st.generation);
            return Ok(true);
        }
        loop {
            if st.generation.load(Ordering::Acquire) != generation {
                return Ok(false);
            }
            if st.broken.load(Ordering::Acquire) != 0 {
                return Err(Error::BrokenBarrier);
            }
            let Some(left) = remaining(deadline) else {
                st.broken.store(1, Ordering::Release);
                futex_wake_all(&st.generation);
                return Err(Error::Timeout);
            };
            futex_wait(&st.generation, generation, left);
        }
    }

    /// Repairs a broken barrier (call it while no process is waiting).
    pub fn reset(&self) {
        self.st.arrived.store(0, Ordering::Relaxed);
        self.st.broken.store(0, Ordering::Release);
    }
}

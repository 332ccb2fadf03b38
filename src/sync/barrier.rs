use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, ShmBox, ShmSafe};
use crate::sync::remaining;
use crate::sys::{futex_wait, futex_wake_all};

/// Low 31 bits of `released`: rounds released so far (wrapping). Bit 31: the barrier is broken.
const BROKEN: u32 = 1 << 31;
const ROUNDS: u32 = BROKEN - 1;

/// Protocol: a ticket per arrival. Arrival `t` (from `tickets.fetch_add(1)`) belongs to round
/// `t / parties`; the one with `t % parties == parties - 1` is that round's leader. The leader
/// bumps the round count in `released` and wakes everyone sleeping on it; the others sleep until
/// `released` has counted past their round. More than `parties` waiters are fine (Python's
/// semantics): the extra ones hold tickets of the next round and wait for it to fill.
///
/// Leaders of consecutive rounds may bump in either order; that is harmless, because `r + 1`
/// bumps can only have happened once the leader of round `r` has taken its ticket — which means
/// every ticket of round `r` was taken, so round `r` is full.
///
/// Ordering: every arrival's `fetch_add` on `tickets` is AcqRel, so the leader's (the last of its
/// round in the ticket order) acquires every earlier arrival's writes; its Release bump of
/// `released`, read with Acquire by the sleepers, passes them on. No wake-up is lost: a sleeper
/// passes the value of `released` it just checked to FUTEX_WAIT, which sleeps only while the word
/// still holds it, and the leader changes the word before it wakes.
///
/// A waiter that times out marks the barrier broken (bit 31, in the same futex word, so sleepers
/// are woken by the change) and the others fail with [`Error::BrokenBarrier`] instead of waiting
/// forever for a party that left.
#[repr(C)]
struct BarrierState {
    parties: AtomicU32,
    released: AtomicU32,
    tickets: AtomicU64,
}

// SAFETY: atomics only; any bits are valid (zero parties is treated as one, see `parties`); no
// Drop.
unsafe impl ShmSafe for BarrierState {}

/// A process-shared barrier for a fixed number of parties.
///
/// Like Python's `Barrier`: when more than `parties` processes or threads wait at once, the
/// extra ones wait for the next round.
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
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("broken", &(self.st.released.load(Ordering::Relaxed) & BROKEN != 0))
            .finish_non_exhaustive()
    }
}

fn state(parties: u32) -> Result<BarrierState> {
    if parties == 0 {
        return Err(Error::InvalidArgument("a barrier needs at least 1 party".into()));
    }
    Ok(BarrierState { parties: AtomicU32::new(parties), released: AtomicU32::new(0), tickets: AtomicU64::new(0) })
}

/// Whether `released` (its round count) has counted past round `round`: the wrapping distance is
/// in `1..2^30` (far more rounds than can be in flight at once).
fn released_past(released: u32, round: u32) -> bool {
    let d = released.wrapping_sub(round) & ROUNDS;
    d != 0 && d < (1 << 30)
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
        self.st.parties.load(Ordering::Relaxed).max(1)
    }

    /// Waits for all parties. Returns `true` in exactly one of them per round (the last to
    /// arrive).
    pub fn wait(&self) -> Result<bool> {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; on timeout returns [`Error::Timeout`] and breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let st = &*self.st;
        if st.released.load(Ordering::Acquire) & BROKEN != 0 {
            return Err(Error::BrokenBarrier);
        }
        let parties = u64::from(self.parties());
        let ticket = st.tickets.fetch_add(1, Ordering::AcqRel);
        let round = ((ticket / parties) as u32) & ROUNDS;
        if ticket % parties == parties - 1 {
            // Leader: count one more released round, keeping the broken bit.
            let _ = st.released.fetch_update(Ordering::Release, Ordering::Relaxed, |r| {
                Some((r & BROKEN) | (r.wrapping_add(1) & ROUNDS))
            });
            futex_wake_all(&st.released);
            return Ok(true);
        }
        loop {
            let r = st.released.load(Ordering::Acquire);
            if released_past(r, round) {
                return Ok(false);
            }
            if r & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            let Some(left) = remaining(deadline) else {
                // Break it — only if `released` still holds `r`, the value just found neither
                // released past this round nor broken; if it changed, look again.
                if st.released.compare_exchange(r, r | BROKEN, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                    continue;
                }
                futex_wake_all(&st.released);
                return Err(Error::Timeout);
            };
            futex_wait(&st.released, r, left);
        }
    }

    /// Repairs a broken barrier (call it while no process is waiting): a new first round starts.
    pub fn reset(&self) {
        self.st.tickets.store(0, Ordering::Relaxed);
        self.st.released.store(0, Ordering::Release);
    }
}

impl Sealed for Barrier {}

impl NamedObject for Barrier {
    const KIND: ObjectKind = ObjectKind::Barrier;
    fn elem() -> TypeIdent {
        TypeIdent::none()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<BarrierState>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.st);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Barrier's; its one part is its state (atomics: any bits are valid).
        Ok(Barrier { st: unsafe { r.part::<BarrierState>(0)? } })
    }
}

use std::sync::atomic::*;

/// Plain data: a `Copy` type made of numbers, for which **every bit pattern is a valid value** and
/// which has **no padding** — so a value can be copied out of shared memory that another process
/// may have written (anything it wrote is a valid `T`), and copied in as bytes without leaking
/// uninitialised padding.
///
/// This is [`bytemuck::Pod`] (plus `Send + Sync`); every `Pod` type is `Plain`. Integers, floats,
/// arrays of them and `#[repr(C)]` structs of them without padding qualify (derive `Pod` with
/// bytemuck's `derive` feature, re-exported as mproc's `derive` feature). `bool` and `char` do
/// not: not every byte is a valid `bool`.
///
/// Plain data is *copied* through shared memory ([`crate::Value`], [`crate::Segment::read`]),
/// never borrowed while another process may write it: for that, see [`ShmSafe`].
///
/// ```compile_fail
/// // Regression (plain_data_rejects_bool): a `bool` whose byte is 2 is undefined behaviour.
/// fn needs_plain<T: mproc::Plain>() {}
/// needs_plain::<bool>();
/// ```
pub trait Plain: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Plain for T {}

/// Types that may live in shared memory and be used **through `&T` from several processes at
/// once** — handed out by [`crate::Segment::get`], [`crate::Arena::alloc`] and
/// [`crate::ShmBox`].
///
/// A `&T` into shared memory promises the compiler that the bytes behind it do not change except
/// through interior mutability, and that they hold a valid `T`. Another process can write
/// anything there at any moment, so only types whose every change goes through atomics, and for
/// which every bit pattern is valid, may be borrowed that way. The integer atomics qualify;
/// `u64` does not (a plain `&u64` that changes under its reader is a data race), nor `bool`
/// (a byte of 2 is not a `bool`), nor `AtomicBool` (the same: its only valid bytes are 0 and 1 —
/// keep a flag in an `AtomicU8` or `AtomicU32`). To *copy* plain numbers in and out, use
/// [`Plain`] data with [`crate::Segment::read`] / [`crate::Segment::write`] or
/// [`crate::Value`].
///
/// # Safety
/// Implement it only for a type that:
/// - holds no pointers, references, heap allocations, file descriptors or other per-process
///   handles — its bytes mean the same thing in every process and at any address;
/// - is valid for **every bit pattern** (another process may have written anything, and
///   segments start zero-filled);
/// - is only ever mutated through interior mutability that tolerates concurrent access from
///   other processes (atomics): no field that safe code can change with plain writes;
/// - needs no `Drop`: mproc never runs destructors of objects in shared memory.
///
/// A `#[repr(C)]` struct whose fields are all `ShmSafe` (integer atomics, arrays of them,
/// [`crossbeam_utils::CachePadded`] of them) qualifies:
/// ```
/// use std::sync::atomic::{AtomicU32, AtomicU64};
/// #[repr(C)]
/// struct Progress { done: AtomicU64, failed: AtomicU32, stage: AtomicU32 }
/// // SAFETY: atomics only: no pointers, any bits are valid, mutated only atomically, no Drop.
/// unsafe impl mproc::ShmSafe for Progress {}
/// let arena = mproc::Arena::new(4096)?;
/// let p = arena.alloc(Progress { done: AtomicU64::new(0), failed: AtomicU32::new(0), stage: AtomicU32::new(1) })?;
/// p.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
/// # Ok::<(), mproc::Error>(())
/// ```
pub unsafe trait ShmSafe: Send + Sync {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: an integer atomic: no pointers, every bit pattern is a valid value, mutated
        // only atomically, no Drop.
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: an array or slice of shm-safe elements is laid out contiguously and inherits every
// property listed above from its element type.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: as for arrays.
unsafe impl<T: ShmSafe> ShmSafe for [T] {}
// SAFETY: CachePadded only adds alignment padding around `T`, and padding bytes are never read.
unsafe impl<T: ShmSafe> ShmSafe for crossbeam_utils::CachePadded<T> {}

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
/// ```compile_fail
/// // Regression (plain_data_rejects_bool): a `bool` whose byte is 2 is undefined behaviour.
/// fn needs_plain<T: mproc::Plain>() {}
/// needs_plain::<bool>();
/// ```
pub trait Plain: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Plain for T {}

/// Types that may live in shared memory and be used from several processes at once.
///
/// # Safety
/// Implement it only for a type that:
/// - holds no pointers, references, heap allocations, file descriptors or other per-process
///   handles — its bytes mean the same thing in every process and at any address;
/// - is `Sync`, and is only ever mutated through atomics, a lock held in the same shared memory,
///   or `&mut` access that the owner guarantees is exclusive across processes;
/// - accepts the all-zero bit pattern as a valid value (segments are zero-filled; large arrays
///   are handed out without touching their pages);
/// - needs no `Drop`: mproc never runs destructors of objects in shared memory.
///
/// Plain `#[repr(C)]` structs of integers, floats, `bool`s, atomics and arrays of them qualify.
pub unsafe trait ShmSafe: Sync {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: a plain value type with no pointers, valid when zeroed, no Drop.
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    (),
    AtomicBool,
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
// SAFETY: CachePadded only adds alignment padding around `T`.
unsafe impl<T: ShmSafe> ShmSafe for crossbeam_utils::CachePadded<T> {}

//! [`Value`] (a value with its own lock) and [`RawValue`] (an atomic, no lock), as in Python's
//! `multiprocessing.Value` / `RawValue`.

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::*;

use crate::error::Result;
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, Plain, ShmBox, ShmSafe};
use crate::sync::{Lock, LockError, LockGuard};

/// Storage for a `T` that only ever changes through exclusive access (a held lock, or an
/// `unsafe` promise of the caller). `repr(transparent)`, so a slice of slots is a slice of `T`.
#[repr(transparent)]
pub(crate) struct Slot<T: ?Sized>(pub(crate) UnsafeCell<T>);

// SAFETY: every access to the inner value goes through a lock guard or an `unsafe` method whose
// contract demands exclusion — like `Mutex<T>`, which is `Sync` when `T: Send`: a thread that
// takes the lock gets the `T` (by `&mut`) as if it had been sent to it.
unsafe impl<T: ?Sized + Send> Sync for Slot<T> {}
// Not `ShmSafe`: the value changes through plain writes under a lock. Slots are placed with the
// crate-private unchecked allocators.

impl<T: ?Sized> Slot<T> {
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// Integer and float types that [`RawValue`] and [`crate::RawArray`] can update atomically.
///
/// Floats are stored as their bits; their `fetch_add` is a compare-exchange loop.
pub trait AtomicValue: Plain + PartialEq + fmt::Debug + private::Sealed {
    /// The atomic type with the same size and alignment.
    type Atomic: ShmSafe;
    /// A new atomic holding `v`.
    fn new_atomic(v: Self) -> Self::Atomic;
    /// Views a `Self` in place as its atomic (same size and alignment).
    ///
    /// # Safety
    /// `p` is valid and aligned for as long as the reference is used.
    unsafe fn as_atomic<'a>(p: *mut Self) -> &'a Self::Atomic;
    /// Atomic load.
    fn load(a: &Self::Atomic, o: Ordering) -> Self;
    /// Atomic store.
    fn store(a: &Self::Atomic, v: Self, o: Ordering);
    /// Atomic swap.
    fn swap(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    /// Atomic add (wrapping for integers); returns the previous value.
    fn fetch_add(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    /// Atomic subtract (wrapping for integers); returns the previous value.
    fn fetch_sub(a: &Self::Atomic, v: Self, o: Ordering) -> Self;
    /// Atomic compare-exchange: `Ok(previous)` if it held `current`, else `Err(actual)`.
    fn compare_exchange(a: &Self::Atomic, current: Self, new: Self) -> Result<Self, Self>;
}

mod private {
    pub trait Sealed {}
}

macro_rules! atomic_int {
    ($($t:ty => $a:ty),* $(,)?) => { $(
        impl private::Sealed for $t {}
        impl AtomicValue for $t {
            type Atomic = $a;
            #[inline]
            fn new_atomic(v: $t) -> $a { <$a>::new(v) }
            #[inline]
            unsafe fn as_atomic<'a>(p: *mut $t) -> &'a $a {
                const { assert!(std::mem::align_of::<$t>() == std::mem::align_of::<$a>()) };
                // SAFETY: same size and (asserted) alignment; the caller vouches for `p`.
                unsafe { <$a>::from_ptr(p) }
            }
            #[inline]
            fn load(a: &$a, o: Ordering) -> $t { a.load(o) }
            #[inline]
            fn store(a: &$a, v: $t, o: Ordering) { a.store(v, o) }
            #[inline]
            fn swap(a: &$a, v: $t, o: Ordering) -> $t { a.swap(v, o) }
            #[inline]
            fn fetch_add(a: &$a, v: $t, o: Ordering) -> $t { a.fetch_add(v, o) }
            #[inline]
            fn fetch_sub(a: &$a, v: $t, o: Ordering) -> $t { a.fetch_sub(v, o) }
            #[inline]
            fn compare_exchange(a: &$a, c: $t, n: $t) -> Result<$t, $t> {
                a.compare_exchange(c, n, Ordering::AcqRel, Ordering::Acquire)
            }
        }
    )* };
}
atomic_int!(u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
            i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize);

macro_rules! atomic_float {
    ($($t:ty => $a:ty),* $(,)?) => { $(
        impl private::Sealed for $t {}
        impl AtomicValue for $t {
            type Atomic = $a;
            #[inline]
            fn new_atomic(v: $t) -> $a { <$a>::new(v.to_bits()) }
            #[inline]
            unsafe fn as_atomic<'a>(p: *mut $t) -> &'a $a {
                const { assert!(std::mem::align_of::<$t>() == std::mem::align_of::<$a>()) };
                // SAFETY: same size and (asserted) alignment; the caller vouches for `p`.
                unsafe { <$a>::from_ptr(p.cast()) }
            }
            #[inline]
            fn load(a: &$a, o: Ordering) -> $t { <$t>::from_bits(a.load(o)) }
            #[inline]
            fn store(a: &$a, v: $t, o: Ordering) { a.store(v.to_bits(), o) }
            #[inline]
            fn swap(a: &$a, v: $t, o: Ordering) -> $t { <$t>::from_bits(a.swap(v.to_bits(), o)) }
            #[inline]
            fn fetch_add(a: &$a, v: $t, o: Ordering) -> $t {
                let prev = a.fetch_update(o, Ordering::Relaxed, |b| Some((<$t>::from_bits(b) + v).to_bits()));
                <$t>::from_bits(prev.unwrap_or_else(|b| b))
            }
            #[inline]
            fn fetch_sub(a: &$a, v: $t, o: Ordering) -> $t { Self::fetch_add(a, -v, o) }
            #[inline]
            fn compare_exchange(a: &$a, c: $t, n: $t) -> Result<$t, $t> {
                a.compare_exchange(c.to_bits(), n.to_bits(), Ordering::AcqRel, Ordering::Acquire)
                    .map(<$t>::from_bits).map_err(<$t>::from_bits)
            }
        }
    )* };
}
atomic_float!(f32 => AtomicU32, f64 => AtomicU64);

/// A number in shared memory with no lock: every operation is one atomic instruction.
///
/// Orderings: `load` is Acquire, `store` Release, read-modify-writes AcqRel — so a `RawValue`
/// can also publish data written before a `store`. On x86-64 these cost the same as Relaxed.
///
/// # Example
/// ```
/// let hits = mproc::RawValue::new(0u64)?;
/// hits.fetch_add(5);
/// assert_eq!(hits.load(), 5);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct RawValue<T: AtomicValue> {
    a: ShmBox<T::Atomic>,
}

impl<T: AtomicValue> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue { a: self.a.clone() }
    }
}

impl<T: AtomicValue> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.load()).finish()
    }
}

impl<T: AtomicValue> RawValue<T> {
    /// A new value in its own anonymous shared segment.
    pub fn new(v: T) -> Result<Self> {
        Ok(RawValue { a: ShmBox::new(T::new_atomic(v))? })
    }

    /// A new value in `arena` (on a cache line of its own).
    pub fn new_in(arena: &Arena, v: T) -> Result<Self> {
        Ok(RawValue { a: arena.alloc(T::new_atomic(v))? })
    }

    /// Reads it.
    #[inline]
    pub fn load(&self) -> T {
        T::load(&self.a, Ordering::Acquire)
    }

    /// Writes it.
    #[inline]
    pub fn store(&self, v: T) {
        T::store(&self.a, v, Ordering::Release)
    }

    /// Writes `v`, returns the previous value.
    #[inline]
    pub fn swap(&self, v: T) -> T {
        T::swap(&self.a, v, Ordering::AcqRel)
    }

    /// Adds `v` (wrapping), returns the previous value.
    #[inline]
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(&self.a, v, Ordering::AcqRel)
    }

    /// Subtracts `v` (wrapping), returns the previous value.
    #[inline]
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(&self.a, v, Ordering::AcqRel)
    }

    /// Stores `new` if it holds `current`: `Ok(previous)`, or `Err(actual)`.
    #[inline]
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        T::compare_exchange(&self.a, current, new)
    }
}

/// A value in shared memory with its own [`Lock`], like Python's `multiprocessing.Value`.
///
/// `lock()` gives `&mut T` for as long as the guard lives. `get` and `set` each take the lock
/// once — so `v.set(v.get()? + 1)` is **not** atomic and loses updates between processes, exactly
/// like `v.value += 1` in Python. Hold one guard for the whole read-modify-write instead.
///
/// `T` is [`Plain`] data: numbers, arrays and `#[repr(C)]` structs of them — anything whose every
/// bit pattern is valid, because another process may have written the bytes.
///
/// # Example
/// ```
/// let counter = mproc::Value::new(0u64)?;
/// *counter.lock()? += 1;
/// assert_eq!(counter.get()?, 1);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// ```compile_fail
/// // Regression (value_rejects_pointers): a pointer means nothing in another process.
/// let v = mproc::Value::new(std::ptr::null_mut::<u8>())?;
/// # Ok::<(), mproc::Error>(())
/// ```
/// ```compile_fail
/// // Regression (value_rejects_bool): another process may leave a 2 in the byte.
/// let v = mproc::Value::new(false)?;
/// # Ok::<(), mproc::Error>(())
/// ```
/// ```compile_fail
/// // Regression (raw_value_rejects_bool): the same for the lock-free value.
/// let v = mproc::RawValue::new(false)?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Value<T: Plain> {
    lock: Lock,
    slot: ShmBox<Slot<T>>,
}

impl<T: Plain> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { lock: self.lock.clone(), slot: self.slot.clone() }
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lock.try_lock() {
            // SAFETY: the lock is held for the read.
            Ok(_g) => f.debug_tuple("Value").field(unsafe { &*self.slot.get() }).finish(),
            Err(_) => f.write_str("Value(<locked>)"),
        }
    }
}

/// Holds a [`Value`]'s lock and gives access to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    _guard: LockGuard<'a>,
    value: *mut T,
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the value's lock, so no other process or thread accesses it.
        unsafe { &*self.value }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only live reference.
        unsafe { &mut *self.value }
    }
}

impl<T: Plain> Value<T> {
    /// A new value (and its lock) in a small anonymous shared segment of its own.
    pub fn new(v: T) -> Result<Self> {
        let arena = Arena::new(3 * crate::shm::arena::OBJECT_ALIGN + std::mem::size_of::<T>())?;
        Self::new_in(&arena, v)
    }

    /// A new value and its lock in `arena`.
    pub fn new_in(arena: &Arena, v: T) -> Result<Self> {
        let lock = Lock::new_in(arena)?;
        // SAFETY: the closure writes a whole slot. `T: Plain` holds no pointers and accepts any
        // bits; the slot is only accessed under `lock`, which lives in the same arena.
        let slot = unsafe {
            arena.alloc_in_place(|p: *mut Slot<T>| {
                p.write(Slot(UnsafeCell::new(v)));
                Ok(())
            })?
        };
        Ok(Value { lock, slot })
    }

    /// The lock guarding the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the lock; the guard derefs to the value. See [`Lock::lock`] for the errors.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        let value = self.slot.get();
        let wrap = |g| ValueGuard { _guard: g, value };
        self.lock.lock().map(wrap).map_err(|e| e.map(wrap))
    }
}

impl<T: Plain> Value<T> {
    /// Reads the value under the lock.
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Writes the value under the lock.
    pub fn set(&self, v: T) -> Result<()> {
        *self.lock()? = v;
        Ok(())
    }
}

impl<T: AtomicValue> Sealed for RawValue<T> {}

impl<T: AtomicValue> NamedObject for RawValue<T> {
    const KIND: ObjectKind = ObjectKind::RawValue;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<T::Atomic>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.a);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a RawValue<T>'s; its one part is T's atomic (any bits valid).
        Ok(RawValue { a: unsafe { r.part::<T::Atomic>(0)? } })
    }
}

impl<T: Plain> Sealed for Value<T> {}

impl<T: Plain> NamedObject for Value<T> {
    const KIND: ObjectKind = ObjectKind::Value;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[Lock::SHAPE, shape::<Slot<T>>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(self.lock.raw_box());
        parts.part(&self.slot);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a Value<T>'s: its lock, then its slot (a `T: Plain`, valid for
        // any bits, accessed only under the lock).
        unsafe { Ok(Value { lock: Lock::rebuild_at(r, 0, false)?, slot: r.part::<Slot<T>>(1)? }) }
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;

    /// Compiles only if `T` is **not** `Sync` (two impls apply to a `Sync` type, which makes the
    /// `_` ambiguous).
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

    #[test]
    fn slot_is_sync_only_when_its_value_is_send() {
        // A `MutexGuard` is `Sync` but not `Send`: handing one to another thread through a lock
        // (which is what sharing a `Slot` does) must not be possible.
        <Slot<std::sync::MutexGuard<'static, ()>> as AmbiguousIfSync<_>>::check();
        fn sync<T: Sync + ?Sized>() {}
        sync::<Slot<u64>>();
    }
}

//! [`Array`] (a fixed-length array with its own lock) and [`RawArray`] (no lock), as in Python's
//! `multiprocessing.Array` / `RawArray`.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::error::Result;
use crate::shm::named::{NamedObject, ObjectKind, Parts, Rebuild, Sealed, TypeIdent, layout_hash, shape};
use crate::shm::{Arena, Plain, ShmBox};
use crate::sync::{Lock, LockError, LockGuard};
use crate::value::{AtomicValue, Slot};

/// A fixed-length array in shared memory with no lock — the way to share a big buffer between
/// workers without copying it (the book's numpy-over-`RawArray` experiment).
///
/// Elements start zeroed and pages are only touched when used, so creating a GiB array is free.
/// Element access is either atomic (`load`/`store`/`fetch_add` for integer and float types) or
/// through `unsafe` slices whose contract is that processes never touch the same element at once
/// (each worker owns a disjoint range).
///
/// # Example
/// ```
/// let a = mproc::RawArray::<u64>::zeroed(1024)?;
/// a.store(3, 7);
/// a.fetch_add(3, 1);
/// assert_eq!(a.load(3), 8);
/// // SAFETY: no other process exists yet, so nothing else touches the array.
/// let s = unsafe { a.as_mut_slice() };
/// s[0] = 1;
/// assert_eq!(s.iter().sum::<u64>(), 9);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// Elements are [`Plain`] data:
/// ```compile_fail
/// // Regression (raw_array_rejects_bool): another process may leave a 2 in an element.
/// let a = mproc::RawArray::<bool>::zeroed(8)?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct RawArray<T: Plain> {
    data: ShmBox<[Slot<T>]>,
}

impl<T: Plain> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray { data: self.data.clone() }
    }
}

impl<T: Plain> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl<T: Plain> RawArray<T> {
    /// `len` zeroed elements in their own anonymous shared segment.
    pub fn zeroed(len: usize) -> Result<Self> {
        // SAFETY: `T: Plain` accepts all-zero bytes and holds no pointers; elements are accessed
        // atomically or through `unsafe` slices whose contract demands exclusion.
        Ok(RawArray { data: unsafe { ShmBox::zeroed_slice_unchecked(len)? } })
    }

    /// `len` zeroed elements in `arena`.
    pub fn zeroed_in(arena: &Arena, len: usize) -> Result<Self> {
        // SAFETY: as in `zeroed`.
        Ok(RawArray { data: unsafe { arena.alloc_zeroed_slice_unchecked(len)? } })
    }

    /// A copy of `values` in shared memory.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let a = Self::zeroed(values.len())?;
        // SAFETY: the array was just created; no other process can reach it yet.
        unsafe { a.as_mut_slice() }.copy_from_slice(values);
        Ok(a)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The creation order of the mapping the array lives in ([`crate::Pool::map_array`] checks
    /// the workers have it).
    pub(crate) fn mapping_serial(&self) -> u64 {
        self.data.mapping_serial()
    }

    /// Pointer to the first element.
    pub fn as_ptr(&self) -> *mut T {
        self.data.as_ptr().cast()
    }

    /// The elements as a shared slice.
    ///
    /// # Safety
    /// No process or thread writes the array while the slice is in use (except through atomics
    /// on elements this slice is not used to read).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `Slot<T>` is transparent over `T`; the caller guarantees no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// While the slice is in use, no other process or thread reads or writes the elements it is
    /// used to access. Workers writing disjoint ranges satisfy this.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as for `as_slice`, with exclusivity promised by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    /// An ndarray view over the elements with `shape` (row-major).
    ///
    /// # Safety
    /// As for [`RawArray::as_mut_slice`], for the elements the view is used to touch.
    #[cfg(feature = "ndarray")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
    pub unsafe fn view_mut<Sh: ndarray::ShapeBuilder>(
        &self,
        shape: Sh,
    ) -> Result<ndarray::ArrayViewMut<'_, T, Sh::Dim>> {
        // SAFETY: forwarded: the caller upholds `as_mut_slice`'s contract for what the view touches.
        let slice = unsafe { self.as_mut_slice() };
        ndarray::ArrayViewMut::from_shape(shape, slice)
            .map_err(|e| crate::Error::InvalidArgument(format!("shape does not fit {} elements: {e}", self.len())))
    }
}

impl<T: AtomicValue> RawArray<T> {
    fn atomic(&self, i: usize) -> &T::Atomic {
        let p = self.data[i].get();
        // SAFETY: `p` points to an element of the live mapping, aligned for `T` and so for its atomic.
        unsafe { T::as_atomic(p) }
    }

    /// Atomic read of element `i` (Acquire). Panics if `i >= len()`, like slice indexing.
    #[inline]
    pub fn load(&self, i: usize) -> T {
        T::load(self.atomic(i), std::sync::atomic::Ordering::Acquire)
    }

    /// Atomic write of element `i` (Release). Panics if `i >= len()`.
    #[inline]
    pub fn store(&self, i: usize, v: T) {
        T::store(self.atomic(i), v, std::sync::atomic::Ordering::Release)
    }

    /// Atomic add to element `i`; returns the previous value. Panics if `i >= len()`.
    #[inline]
    pub fn fetch_add(&self, i: usize, v: T) -> T {
        T::fetch_add(self.atomic(i), v, std::sync::atomic::Ordering::AcqRel)
    }
}

/// A fixed-length array in shared memory with its own [`Lock`], like Python's
/// `multiprocessing.Array`: `lock()` gives `&mut [T]`.
///
/// # Example
/// ```
/// let a = mproc::Array::from_slice(&[1u32, 2, 3])?;
/// a.lock()?[1] = 20;
/// assert_eq!(a.to_vec()?, vec![1, 20, 3]);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Array<T: Plain> {
    lock: Lock,
    raw: RawArray<T>,
}

impl<T: Plain> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { lock: self.lock.clone(), raw: self.raw.clone() }
    }
}

impl<T: Plain> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("len", &self.len()).finish_non_exhaustive()
    }
}

/// Holds an [`Array`]'s lock; derefs to the elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    _guard: LockGuard<'a>,
    ptr: *mut T,
    len: usize,
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the guard holds the array's lock; the mapping outlives the borrow of the Array.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: Plain> Array<T> {
    /// `len` zeroed elements and a lock, in one anonymous shared segment.
    pub fn zeroed(len: usize) -> Result<Self> {
        let bytes = std::mem::size_of::<T>()
            .checked_mul(len)
            .and_then(|b| b.checked_add(3 * crate::shm::arena::OBJECT_ALIGN))
            .ok_or(crate::Error::SegmentTooLarge { requested: u64::MAX, available: 0 })?;
        Self::zeroed_in(&Arena::new(bytes)?, len)
    }

    /// `len` zeroed elements and a lock in `arena`.
    pub fn zeroed_in(arena: &Arena, len: usize) -> Result<Self> {
        Ok(Array { lock: Lock::new_in(arena)?, raw: RawArray::zeroed_in(arena, len)? })
    }

    /// A copy of `values` with a lock.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let a = Self::zeroed(values.len())?;
        // SAFETY: the array was just created; no other process can reach it yet.
        unsafe { a.raw.as_mut_slice() }.copy_from_slice(values);
        Ok(a)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The lock guarding the elements (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Takes the lock; the guard derefs to `[T]`. See [`Lock::lock`] for the errors.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        let (ptr, len) = (self.raw.as_ptr(), self.raw.len());
        let wrap = |g| ArrayGuard { _guard: g, ptr, len };
        self.lock.lock().map(wrap).map_err(|e| e.map(wrap))
    }

    /// A copy of the elements, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

impl<T: Plain> RawArray<T> {
    /// The array over existing elements (a queue's buffer in a named arena).
    pub(crate) fn from_box(data: ShmBox<[Slot<T>]>) -> Self {
        RawArray { data }
    }

    pub(crate) fn data_box(&self) -> &ShmBox<[Slot<T>]> {
        &self.data
    }
}

impl<T: Plain> Sealed for RawArray<T> {}

impl<T: Plain> NamedObject for RawArray<T> {
    const KIND: ObjectKind = ObjectKind::RawArray;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[shape::<Slot<T>>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(&self.data);
        parts.value(self.len() as u64);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is a RawArray<T>'s: its elements (`T: Plain`, any bits valid), then
        // their number (checked against the region by `slice`).
        Ok(RawArray { data: unsafe { r.slice::<Slot<T>>(0, r.value(1))? } })
    }
}

impl<T: Plain> Sealed for Array<T> {}

impl<T: Plain> NamedObject for Array<T> {
    const KIND: ObjectKind = ObjectKind::Array;
    fn elem() -> TypeIdent {
        TypeIdent::of::<T>()
    }
    fn layout() -> u64 {
        layout_hash(&[Lock::SHAPE, shape::<Slot<T>>()])
    }
    fn describe(&self, parts: &mut Parts) {
        parts.part(self.lock.raw_box());
        parts.part(&self.raw.data);
        parts.value(self.len() as u64);
    }
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self> {
        // SAFETY: the entry is an Array<T>'s: its lock, its elements, their number.
        unsafe {
            Ok(Array {
                lock: Lock::rebuild_at(r, 0, false)?,
                raw: RawArray { data: r.slice::<Slot<T>>(1, r.value(2))? },
            })
        }
    }
}

/// An n-dimensional array in shared memory: a [`RawArray`] with a shape, viewed through
/// `ndarray` — the book's numpy array over a `RawArray`, without copying it into any worker.
///
/// Create it before forking; every forked worker sees the same elements. Views are `unsafe`
/// for the reason [`RawArray::as_mut_slice`] is: processes must not touch the same element at
/// once (give each worker its own rows), and mproc cannot check that.
///
/// # Example: two workers fill their own rows of one array
/// ```
/// use mproc::{Process, SharedArray};
///
/// let a = SharedArray::<f64, _>::zeroed((4, 3))?;
/// let workers: Vec<Process> = (0..2)
///     .map(|w| {
///         let a = &a;
///         Process::spawn(move || {
///             // SAFETY: worker w writes only rows w and w + 2; no other process touches them.
///             let mut v = unsafe { a.view_mut() };
///             for r in (w..4).step_by(2) {
///                 v.row_mut(r).fill((w + 1) as f64);
///             }
///         })
///     })
///     .collect::<Result<_, _>>()?;
/// for mut w in workers {
///     w.join()?;
/// }
/// // SAFETY: the workers have ended; nothing writes the array now.
/// let v = unsafe { a.view() };
/// assert_eq!(v.column(0).to_vec(), vec![1.0, 2.0, 1.0, 2.0]);
/// # Ok::<(), mproc::Error>(())
/// ```
#[cfg(feature = "ndarray")]
#[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
pub struct SharedArray<T: Plain, D: ndarray::Dimension> {
    raw: RawArray<T>,
    dim: D,
}

#[cfg(feature = "ndarray")]
impl<T: Plain, D: ndarray::Dimension> Clone for SharedArray<T, D> {
    fn clone(&self) -> Self {
        SharedArray { raw: self.raw.clone(), dim: self.dim.clone() }
    }
}

#[cfg(feature = "ndarray")]
impl<T: Plain, D: ndarray::Dimension> fmt::Debug for SharedArray<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray").field("shape", &self.dim.slice()).finish_non_exhaustive()
    }
}

#[cfg(feature = "ndarray")]
impl<T: Plain, D: ndarray::Dimension> SharedArray<T, D> {
    /// A zeroed array of `shape` (row-major) in its own anonymous shared segment. Pages are
    /// touched only when written, so creating a GiB array costs microseconds.
    pub fn zeroed<Sh: ndarray::IntoDimension<Dim = D>>(shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        let len = dim
            .slice()
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| crate::Error::InvalidArgument(format!("shape {:?} overflows usize", dim.slice())))?;
        Ok(SharedArray { raw: RawArray::zeroed(len)?, dim })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// The elements as a flat [`RawArray`] (atomic element access, raw slices).
    pub fn raw(&self) -> &RawArray<T> {
        &self.raw
    }

    /// A read-only view.
    ///
    /// # Safety
    /// No process or thread writes the elements the view is used to read while it is in use.
    pub unsafe fn view(&self) -> ndarray::ArrayView<'_, T, D> {
        // SAFETY: forwarded to the caller (as for `RawArray::as_slice`); the shape was checked to
        // cover exactly the array's elements at creation.
        let slice = unsafe { self.raw.as_slice() };
        ndarray::ArrayView::from_shape(self.dim.clone(), slice).expect("the shape covers the elements")
    }

    /// A mutable view.
    ///
    /// # Safety
    /// While the view is in use, no other process or thread reads or writes the elements it is
    /// used to touch (workers writing disjoint rows satisfy this).
    pub unsafe fn view_mut(&self) -> ndarray::ArrayViewMut<'_, T, D> {
        // SAFETY: forwarded to the caller (as for `RawArray::as_mut_slice`).
        let slice = unsafe { self.raw.as_mut_slice() };
        ndarray::ArrayViewMut::from_shape(self.dim.clone(), slice).expect("the shape covers the elements")
    }
}

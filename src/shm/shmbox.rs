use std::alloc::Layout;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::Result;
use crate::shm::{Mapping, ShmSafe};

/// An owning handle to one object in shared memory, like `Arc<T>` whose memory is shared with
/// forked children.
///
/// Cloning it clones the handle, not the object. The memory stays mapped while any handle in this
/// process lives; the object's destructor never runs (see [`ShmSafe`]).
pub struct ShmBox<T: ?Sized> {
    ptr: NonNull<T>,
    _map: Arc<Mapping>,
}

// SAFETY: a ShmBox only hands out `&T`; sending or sharing it is sharing `&T`, which needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for ShmBox<T> {}

impl<T: ?Sized> ShmBox<T> {
    /// The creation order of the mapping this lives in (see [`crate::shm::mapping_serial`]).
    pub(crate) fn mapping_serial(&self) -> u64 {
        self._map.serial()
    }
}

impl<T: ?Sized> Clone for ShmBox<T> {
    fn clone(&self) -> Self {
        ShmBox { ptr: self.ptr, _map: self._map.clone() }
    }
}

impl<T: ?Sized> Deref for ShmBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into `_map`, which stays mapped while this handle lives, and the
        // object was fully initialised before the handle was created.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: ShmSafe> ShmBox<T> {
    /// Moves `value` into its own anonymous shared segment.
    pub fn new(value: T) -> Result<ShmBox<T>> {
        // SAFETY: the closure writes a whole `T` into the fresh slot; `T: ShmSafe` makes it fit
        // for shared use through `&T`.
        unsafe {
            Self::new_in_place(|p: *mut T| {
                p.write(value);
                Ok(())
            })
        }
    }
}

impl<T> ShmBox<T> {
    /// Builds a `T` in place in its own anonymous shared segment; for types that must not move
    /// once initialised (pthread mutexes) or that are not [`ShmSafe`] but are used by mproc
    /// under a protocol of its own (a lock, a value behind a lock).
    ///
    /// # Safety
    /// - On `Ok`, `init` has fully initialised the `T` at the pointer it was given.
    /// - The `T` is fit to be shared with forked children through `&T`: it holds no per-process
    ///   pointers or handles, needs no `Drop`, and every access to it from any process follows a
    ///   protocol that makes it free of data races (atomics, or a lock in the same segment).
    pub(crate) unsafe fn new_in_place(init: impl FnOnce(*mut T) -> Result<()>) -> Result<ShmBox<T>> {
        let map = Mapping::anonymous(std::mem::size_of::<T>())?;
        let p = map.ptr().cast::<T>();
        // The mapping is page-aligned, at least size_of::<T>() long and exclusively ours.
        init(p)?;
        // SAFETY: `p` is non-null (it came from mmap) and now holds an initialised `T`.
        Ok(unsafe { ShmBox::from_raw(p, map) })
    }
}

impl<T: ShmSafe> ShmBox<[T]> {
    /// `len` zeroed elements in their own anonymous shared segment. Pages are not touched until
    /// used, so a large array costs nothing up front.
    pub fn zeroed_slice(len: usize) -> Result<ShmBox<[T]>> {
        // SAFETY: `T: ShmSafe` accepts every bit pattern, zero included, and is fit for `&T` use.
        unsafe { Self::zeroed_slice_unchecked(len) }
    }
}

impl<T> ShmBox<[T]> {
    /// `len` zeroed elements in their own anonymous shared segment.
    ///
    /// # Safety
    /// All-zero bytes are a valid `T`, and `T` is fit to be shared as for [`ShmBox::new_in_place`].
    pub(crate) unsafe fn zeroed_slice_unchecked(len: usize) -> Result<ShmBox<[T]>> {
        let bytes = Layout::array::<T>(len)
            .map_err(|_| crate::Error::SegmentTooLarge { requested: u64::MAX, available: 0 })?
            .size();
        let map = Mapping::anonymous(bytes)?;
        // SAFETY: the mapping is page-aligned and holds `len` elements; the caller vouches that
        // the zeroed bytes are valid elements.
        Ok(unsafe { ShmBox::from_raw_slice(map.ptr().cast::<T>(), len, map) })
    }
}

impl<T> ShmBox<T> {
    /// # Safety
    /// `p` is non-null, points into `map` and to an initialised `T`.
    pub(crate) unsafe fn from_raw(p: *mut T, map: Arc<Mapping>) -> ShmBox<T> {
        // SAFETY: the caller guarantees `p` is non-null.
        ShmBox { ptr: unsafe { NonNull::new_unchecked(p) }, _map: map }
    }
}

impl<T> ShmBox<[T]> {
    /// # Safety
    /// `p` is non-null and aligned, and `p..p+len` lies in `map` and holds initialised `T`s.
    pub(crate) unsafe fn from_raw_slice(p: *mut T, len: usize, map: Arc<Mapping>) -> ShmBox<[T]> {
        let slice = std::ptr::slice_from_raw_parts_mut(p, len);
        // SAFETY: the caller guarantees `p` is non-null.
        ShmBox { ptr: unsafe { NonNull::new_unchecked(slice) }, _map: map }
    }
}

impl<T: ?Sized> ShmBox<T> {
    /// Raw pointer to the object (valid while this handle lives).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

use std::ffi::CString;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::shm::ShmSafe;
use crate::sys;

/// Prefix of every named segment mproc creates (as listed in `/dev/shm`).
pub(crate) const NAME_PREFIX: &str = "mproc-";

/// One mapping, unmapped when the last handle in this process drops it.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: sys::Mapped,
    /// Named segments: the `shm_open` name, and the pid that created it (0 if opened).
    name: Option<(CString, i32)>,
}

// SAFETY: the mapping is plain shared memory; handles only hand out access through types whose
// own Send/Sync rules apply.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn anonymous(len: usize) -> Result<Arc<Mapping>> {
        let len = round_to_page(len.max(1))?;
        Ok(Arc::new(Mapping { map: sys::map_shared_anonymous(len)?, name: None }))
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.map.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and every handle into it (ShmBox, Segment) holds this Arc,
        // so none is left when it drops.
        unsafe { sys::unmap(self.map) };
        if let Some((name, creator)) = &self.name {
            // Only the creating process unlinks: a forked child that drops its copy must not
            // remove the name its parent (or an unrelated reader) still relies on.
            if *creator == sys::current_pid() {
                sys::shm_unlink(name);
            }
        }
    }
}

fn round_to_page(len: usize) -> Result<usize> {
    let page = sys::page_size();
    len.checked_next_multiple_of(page).ok_or(Error::SegmentTooLarge { requested: len as u64, available: 0 })
}

/// A shared-memory segment: anonymous (shared with forked children) or named (shared with any
/// process that opens it by name).
///
/// # Example: hand a message to an unrelated process
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// let seg = mproc::Segment::create_named(4096)?;
/// // Another process would call `Segment::open(name)`; here we open it a second time ourselves.
/// let name = seg.name().unwrap().to_owned();
/// let ready: &AtomicU32 = seg.get(0)?;
/// ready.store(42, Ordering::Release);
/// let other = mproc::Segment::open(&name)?;
/// assert_eq!(other.get::<AtomicU32>(0)?.load(Ordering::Acquire), 42);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Segment {
    pub(crate) map: Arc<Mapping>,
}

impl Segment {
    /// An anonymous shared segment of at least `len` bytes (rounded up to a page), zero-filled.
    /// Create it before forking; children inherit it.
    pub fn anonymous(len: usize) -> Result<Segment> {
        if len == 0 {
            return Err(Error::InvalidArgument("a segment needs a length of at least 1 byte".into()));
        }
        Ok(Segment { map: Mapping::anonymous(len)? })
    }

    /// A new named segment of at least `len` bytes with a fresh random name, mode 0600. Its
    /// whole size is reserved now: asking for more than `/dev/shm` has free returns
    /// [`Error::SegmentTooLarge`]. The name is removed when this process drops its last handle.
    pub fn create_named(len: usize) -> Result<Segment> {
        if len == 0 {
            return Err(Error::InvalidArgument("a segment needs a length of at least 1 byte".into()));
        }
        let len = round_to_page(len)?;
        let mut rnd = [0u8; 6];
        sys::random_bytes(&mut rnd)?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let name =
            CString::new(format!("/{NAME_PREFIX}{}-{hex}", sys::current_pid())).expect("generated name has no NUL");
        let fd = sys::shm_create(&name, len)?;
        let map = match sys::map_fd(&fd, len) {
            Ok(m) => m,
            Err(e) => {
                sys::shm_unlink(&name);
                return Err(e);
            }
        };
        Ok(Segment { map: Arc::new(Mapping { map, name: Some((name, sys::current_pid())) }) })
    }

    /// Opens a named segment created by another process (with or without the leading `/`).
    /// This handle never unlinks it.
    pub fn open(name: &str) -> Result<Segment> {
        let full = if name.starts_with('/') { name.to_owned() } else { format!("/{name}") };
        let cname = CString::new(full).map_err(|_| Error::InvalidArgument("segment name contains NUL".into()))?;
        let (fd, len) = sys::shm_open(&cname)?;
        if len == 0 {
            return Err(Error::InvalidArgument(format!("segment {name} has size 0")));
        }
        let map = sys::map_fd(&fd, len)?;
        Ok(Segment { map: Arc::new(Mapping { map, name: Some((cname, 0)) }) })
    }

    /// The name to pass to [`Segment::open`] (no leading `/`); `None` for anonymous segments.
    pub fn name(&self) -> Option<&str> {
        self.map.name.as_ref().and_then(|(n, _)| n.to_str().ok()).map(|n| n.trim_start_matches('/'))
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: segments have at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of the segment.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr()
    }

    /// A shared reference to a `T` at byte `offset`: checked for bounds and alignment.
    pub fn get<T: ShmSafe>(&self, offset: usize) -> Result<&T> {
        let size = std::mem::size_of::<T>();
        if offset.checked_add(size).is_none_or(|end| end > self.len()) {
            return Err(Error::InvalidArgument(format!(
                "{size} bytes at offset {offset} do not fit in a segment of {} bytes",
                self.len()
            )));
        }
        if !offset.is_multiple_of(std::mem::align_of::<T>()) {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is not aligned to {}",
                std::mem::align_of::<T>()
            )));
        }
        // SAFETY: in bounds and aligned (the mapping is page-aligned); `T: ShmSafe` means any
        // bytes another process left there, including zeroes, form a valid `T` used only through
        // shared, internally synchronised access.
        Ok(unsafe { &*self.as_ptr().add(offset).cast::<T>() })
    }

    /// The whole segment as bytes.
    ///
    /// # Safety
    /// No other thread or process writes the segment while the slice is in use.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is live for `&self`; exclusion is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The whole segment as mutable bytes.
    ///
    /// # Safety
    /// No other thread or process reads or writes the segment while the slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_bytes_mut(&self) -> &mut [u8] {
        // SAFETY: the mapping is live for `&self`; exclusion is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    /// Removes named segments left in `/dev/shm` by mproc processes that no longer exist
    /// (a creator killed by SIGKILL cannot unlink). Returns the names removed.
    pub fn cleanup_stale() -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let dir = match std::fs::read_dir("/dev/shm") {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(Error::Io(e)),
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(NAME_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if !sys::pid_alive(pid) {
                let c = CString::new(format!("/{name}")).expect("dir entry has no NUL");
                sys::shm_unlink(&c);
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

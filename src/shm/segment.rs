use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::shm::guardian::{self, Kind, Ticket};
use crate::shm::{Plain, ShmSafe};
use crate::sys;

/// Prefix of every named segment mproc creates (as listed in `/dev/shm`).
pub(crate) const NAME_PREFIX: &str = "mproc-";

/// One mapping, unmapped when the last handle in this process drops it.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: sys::Mapped,
    /// Named segments only.
    name: Option<Named>,
    /// Order of creation in this process ([`mapping_serial`]): a process forked after a mapping
    /// was made has it at the same address.
    serial: u64,
}

/// Mappings made so far by this process (and the process it was forked from).
static MAPPINGS: AtomicU64 = AtomicU64::new(0);

fn next_serial() -> u64 {
    MAPPINGS.fetch_add(1, Ordering::Relaxed) + 1
}

/// The serial the next mapping will exceed: every mapping with a serial at most this one
/// exists now (or existed: a dropped one's address may have been reused by a newer one, which
/// has a larger serial).
pub(crate) fn mapping_serial() -> u64 {
    MAPPINGS.load(Ordering::Relaxed)
}

/// A named segment's name and who removes it.
#[derive(Debug)]
struct Named {
    /// The `shm_open` name (with the leading `/`).
    name: CString,
    /// The pid that created it (0 if this process opened it by name).
    creator: i32,
    /// The pid that removes the name when its last handle drops: the creator, or 0 when the
    /// segment was opened by name or persisted.
    unlinker: AtomicI32,
    /// The creator's entry in its guardian's table (`NO_TICKET` if none).
    ticket: AtomicU64,
}

const NO_TICKET: u64 = u64::MAX;

impl Named {
    fn take_ticket(&self) -> Option<Ticket> {
        let t = self.ticket.swap(NO_TICKET, Ordering::AcqRel);
        (t != NO_TICKET).then(|| Ticket::from_raw(t))
    }
}

// SAFETY: the mapping is plain shared memory; handles only hand out access through types whose
// own Send/Sync rules apply.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn anonymous(len: usize) -> Result<Arc<Mapping>> {
        let len = round_to_page(len.max(1))?;
        Ok(Arc::new(Mapping { map: sys::map_shared_anonymous(len)?, name: None, serial: next_serial() }))
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.map.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len
    }

    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }
}

impl Mapping {
    /// A new named segment called exactly `name` (mode 0600, `O_EXCL`: an existing name is
    /// [`Error::SegmentExists`]), unlinked by this process's last handle or by its guardian.
    ///
    /// Unlike [`Segment::create_named`]'s random names, a chosen name may belong to someone else,
    /// so it is looked up first and registered with the guardian only if it is free; `O_EXCL`
    /// then decides a race with another creator, and the loser releases its registration without
    /// removing anything. (Dying in the microseconds between that registration and the losing
    /// `shm_open` is the one case in which the guardian could remove another creator's name.)
    pub(crate) fn create_named_exact(name: &str, len: usize) -> Result<Arc<Mapping>> {
        let cname = segment_cname(name)?;
        if len == 0 {
            return Err(Error::InvalidArgument("a segment needs a length of at least 1 byte".into()));
        }
        let len = round_to_page(len)?;
        match sys::shm_open(&cname) {
            Ok(_) => return Err(Error::SegmentExists { name: name.trim_start_matches('/').to_owned() }),
            Err(Error::SegmentNotFound { .. }) => {}
            // Exists, but not ours to open: still taken.
            Err(Error::SegmentPermissionDenied { .. }) => {
                return Err(Error::SegmentExists { name: name.trim_start_matches('/').to_owned() });
            }
            Err(e) => return Err(e),
        }
        let ticket = guardian::register(Kind::Shm, &cname)?;
        let fd = match sys::shm_create(&cname, len) {
            Ok(fd) => fd,
            Err(e) => {
                guardian::release(ticket);
                return Err(e);
            }
        };
        let map = match sys::map_fd(&fd, len, &cname) {
            Ok(m) => m,
            Err(e) => {
                sys::shm_unlink(&cname);
                guardian::release(ticket);
                return Err(e);
            }
        };
        let named = Named {
            name: cname,
            creator: sys::current_pid(),
            unlinker: AtomicI32::new(sys::current_pid()),
            ticket: AtomicU64::new(ticket.into_raw()),
        };
        Ok(Arc::new(Mapping { map, name: Some(named), serial: next_serial() }))
    }

    /// The segment's name without the leading `/` (`None` if anonymous).
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_ref().and_then(|n| n.name.to_str().ok()).map(|n| n.trim_start_matches('/'))
    }

    /// The pid that created this named segment, if this process did.
    pub(crate) fn created_here(&self) -> bool {
        self.name.as_ref().is_some_and(|n| n.creator == sys::current_pid())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and every handle into it (ShmBox, Segment) holds this Arc,
        // so none is left when it drops.
        unsafe { sys::unmap(self.map) };
        if let Some(n) = &self.name {
            // Only the creating process unlinks: a forked child that drops its copy must not
            // remove the name its parent (or an unrelated reader) still relies on.
            if n.unlinker.load(Ordering::Relaxed) == sys::current_pid() {
                // Unlinked first, then released: dying in between leaves the guardian a name that
                // is already gone, never a name that nobody removes.
                sys::shm_unlink(&n.name);
                if let Some(t) = n.take_ticket() {
                    guardian::release(t);
                }
            }
        }
    }
}

/// Checks a segment name as a caller gave it and makes the `shm_open` name (leading `/`).
fn segment_cname(name: &str) -> Result<CString> {
    let bad = |reason: &str| Err(Error::BadSegmentName { name: name.to_owned(), reason: reason.to_owned() });
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return bad("empty");
    }
    if bare.len() > sys::MAX_NAME_LEN {
        return Err(Error::BadSegmentName {
            name: name.to_owned(),
            reason: format!(
                "{} bytes long; Linux allows at most {} (without the leading `/`)",
                bare.len(),
                sys::MAX_NAME_LEN
            ),
        });
    }
    if bare.contains('\0') {
        return bad("contains a NUL byte");
    }
    if bare.contains('/') {
        return bad("contains `/` (only one leading `/` is allowed: a segment name is a single path component)");
    }
    if bare == "." || bare == ".." {
        return bad("`.` and `..` are not names");
    }
    Ok(CString::new(format!("/{bare}")).expect("checked for NUL above"))
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
    /// [`Error::SegmentTooLarge`].
    ///
    /// The name is removed when this process drops its last handle — and, if this process dies
    /// first (SIGKILL, abort, the OOM killer), within moments by its **guardian**: a small helper
    /// process started with the first live named segment and stopped with the last one, which
    /// watches this process and removes the names still registered when it ends (see
    /// [`Segment::guardian_pid`]). It never removes a name while this process lives. To hand the
    /// name on so that it outlives this process, call [`Segment::persist`].
    ///
    /// The name is `mproc-<pid>-<12 hex digits>`: at most 31 bytes, the portable limit.
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
        // Registered before it exists: there is no moment when the name is there and nobody
        // would remove it.
        let ticket = guardian::register(Kind::Shm, &name)?;
        let fd = match sys::shm_create(&name, len) {
            Ok(fd) => fd,
            Err(e) => {
                guardian::release(ticket);
                return Err(e);
            }
        };
        let map = match sys::map_fd(&fd, len, &name) {
            Ok(m) => m,
            Err(e) => {
                sys::shm_unlink(&name);
                guardian::release(ticket);
                return Err(e);
            }
        };
        let named = Named {
            name,
            creator: sys::current_pid(),
            unlinker: AtomicI32::new(sys::current_pid()),
            ticket: AtomicU64::new(ticket.into_raw()),
        };
        Ok(Segment { map: Arc::new(Mapping { map, name: Some(named), serial: next_serial() }) })
    }

    /// Opens a named segment created by another process (with or without the leading `/`).
    /// This handle never unlinks it.
    ///
    /// Names are checked first: at most 255 bytes (Linux's limit for a name in `/dev/shm`;
    /// mproc's own names stay within the portable 31), not empty, no `/` after an optional
    /// leading one, no NUL, not `.` or `..` — each a [`Error::BadSegmentName`] saying which.
    /// A name that does not exist is [`Error::SegmentNotFound`]; one this user may not open is
    /// [`Error::SegmentPermissionDenied`] (with its owner and mode).
    pub fn open(name: &str) -> Result<Segment> {
        let cname = segment_cname(name)?;
        let (fd, len) = sys::shm_open(&cname)?;
        if len == 0 {
            return Err(Error::InvalidArgument(format!(
                "segment {} has size 0 (its creator has not sized it yet, or it is not an mproc segment)",
                name.trim_start_matches('/')
            )));
        }
        let map = sys::map_fd(&fd, len, &cname)?;
        let named = Named { name: cname, creator: 0, unlinker: AtomicI32::new(0), ticket: AtomicU64::new(NO_TICKET) };
        Ok(Segment { map: Arc::new(Mapping { map, name: Some(named), serial: next_serial() }) })
    }

    /// Hands the name on: neither this process nor its guardian removes it any more, so it
    /// outlives this process until someone calls `shm_unlink` on it (another process that took
    /// ownership, or `mproc shm clean` / [`Segment::cleanup_stale`], which removes names of
    /// creators that no longer exist, persisted or not).
    ///
    /// Only the creating process can persist a segment ([`Error::Misuse`] otherwise); anonymous
    /// segments have no name ([`Error::InvalidArgument`]). Persisting twice is harmless.
    ///
    /// # Example
    /// ```
    /// let seg = mproc::Segment::create_named(4096)?;
    /// seg.persist()?;
    /// let name = seg.name().unwrap().to_owned();
    /// drop(seg);
    /// let again = mproc::Segment::open(&name)?; // still there
    /// # drop(again); mproc::Segment::unlink(&name)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn persist(&self) -> Result<()> {
        let Some(n) = &self.map.name else {
            return Err(Error::InvalidArgument("an anonymous segment has no name to persist".into()));
        };
        let me = sys::current_pid();
        if n.creator != me {
            return Err(Error::Misuse(format!(
                "segment {} was not created by this process (pid {me}); only its creator can persist it",
                self.name().unwrap_or("?")
            )));
        }
        n.unlinker.store(0, Ordering::Relaxed);
        if let Some(t) = n.take_ticket() {
            guardian::release(t);
        }
        Ok(())
    }

    /// Removes the name `name` from `/dev/shm` (the segment itself lives on in the processes that
    /// map it). For names handed on with [`Segment::persist`]. Errors as for [`Segment::open`].
    pub fn unlink(name: &str) -> Result<()> {
        let cname = segment_cname(name)?;
        sys::shm_remove(&cname)
    }

    /// The pid of this process's guardian, if one runs (it runs while this process has a live
    /// named segment it created and did not persist). For diagnostics and tests.
    pub fn guardian_pid() -> Option<i32> {
        guardian::guardian_pid()
    }

    /// The name to pass to [`Segment::open`] (no leading `/`); `None` for anonymous segments.
    pub fn name(&self) -> Option<&str> {
        self.map.name.as_ref().and_then(|n| n.name.to_str().ok()).map(|n| n.trim_start_matches('/'))
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

    /// Checks that `size` bytes at `offset` lie in the segment and that `offset` is a multiple of
    /// `align`.
    fn check(&self, offset: usize, size: usize, align: usize) -> Result<()> {
        if offset.checked_add(size).is_none_or(|end| end > self.len()) {
            return Err(Error::InvalidArgument(format!(
                "{size} bytes at offset {offset} do not fit in a segment of {} bytes",
                self.len()
            )));
        }
        if !offset.is_multiple_of(align) {
            return Err(Error::InvalidArgument(format!("offset {offset} is not aligned to {align}")));
        }
        Ok(())
    }

    /// A shared reference to a `T` at byte `offset`: checked for bounds and alignment.
    ///
    /// Only [`ShmSafe`] types — atomics and structs of them — can be borrowed: another process
    /// may write the bytes at any time, which is fine for an atomic and undefined behaviour for
    /// anything else. To copy plain numbers in and out, use [`Segment::read`] and
    /// [`Segment::write`].
    ///
    /// ```compile_fail
    /// // Regression (segment_get_rejects_bool): another process may write a 2 into the byte.
    /// let seg = mproc::Segment::anonymous(4096)?;
    /// let b: &bool = seg.get::<bool>(0)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    /// ```compile_fail
    /// // Regression (segment_get_rejects_plain_integers): a `&u64` that changes under its reader.
    /// let seg = mproc::Segment::anonymous(4096)?;
    /// let n: &u64 = seg.get::<u64>(0)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    /// ```compile_fail
    /// // Regression (segment_get_rejects_robust_mutex): zeroed bytes are not an initialised
    /// // robust mutex; the only ways to get one are `RobustMutex::new_shared` and its unsafe init.
    /// let seg = mproc::Segment::anonymous(4096)?;
    /// let m = seg.get::<mproc::raw::RobustMutex>(0)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn get<T: ShmSafe>(&self, offset: usize) -> Result<&T> {
        self.check(offset, std::mem::size_of::<T>(), std::mem::align_of::<T>())?;
        // SAFETY: in bounds and aligned (the mapping is page-aligned and lives as long as
        // `&self`); `T: ShmSafe` means any bytes another process left there, including zeroes,
        // form a valid `T`, which is only ever changed through atomics.
        Ok(unsafe { &*self.as_ptr().add(offset).cast::<T>() })
    }

    /// Copies the plain value at byte `offset` out of the segment (no alignment needed).
    ///
    /// The copy is made with relaxed atomic loads — of whole words when `offset` is aligned for
    /// `T`, else of bytes — so it never races with a writer in another process in the sense of
    /// undefined behaviour. It is **not** one atomic read: a concurrent [`Segment::write`] may
    /// leave a torn mix of old and new words, which is still a valid `T` because `T` is
    /// [`Plain`] (every bit pattern is valid). Synchronise with a lock or a flag when the value
    /// must be consistent.
    ///
    /// # Example
    /// ```
    /// let seg = mproc::Segment::anonymous(4096)?;
    /// seg.write(16, [1.5f64, 2.5])?;
    /// assert_eq!(seg.read::<[f64; 2]>(16)?, [1.5, 2.5]);
    /// assert_eq!(seg.read::<u8>(4095)?, 0);
    /// assert!(seg.read::<u64>(4090).is_err()); // out of bounds
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn read<T: Plain>(&self, offset: usize) -> Result<T> {
        self.check(offset, std::mem::size_of::<T>(), 1)?;
        let mut v = T::zeroed();
        let dst = bytemuck::bytes_of_mut(&mut v);
        // SAFETY: `offset..offset + len` lies in the live mapping (checked above).
        let src = unsafe { self.as_ptr().add(offset) };
        // SAFETY: as above; `dst` is a local buffer of exactly that length.
        unsafe { atomic_copy(src, dst.as_mut_ptr(), dst.len(), word_for::<T>(src), false) };
        Ok(v)
    }

    /// Copies the plain value `v` into the segment at byte `offset` (no alignment needed), with
    /// relaxed atomic stores: see [`Segment::read`] for what a concurrent reader may see.
    pub fn write<T: Plain>(&self, offset: usize, v: T) -> Result<()> {
        self.check(offset, std::mem::size_of::<T>(), 1)?;
        let src = bytemuck::bytes_of(&v);
        // SAFETY: `offset..offset + len` lies in the live mapping (checked above).
        let dst = unsafe { self.as_ptr().add(offset) };
        // SAFETY: as above; `src` is a local buffer of exactly that length.
        unsafe { atomic_copy(dst, src.as_ptr().cast_mut(), src.len(), word_for::<T>(dst), true) };
        Ok(())
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
    /// (a creator killed by SIGKILL cannot unlink, and its guardian may have been killed too).
    /// A segment's creator is the pid in its `mproc-<pid>-…` name, or, for a
    /// [`NamedArena`](crate::NamedArena) of any name, the creator pid in its header. Returns the
    /// names removed.
    pub fn cleanup_stale() -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let dir = match std::fs::read_dir("/dev/shm") {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(Error::Io(e)),
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = super::named::creator_of(&entry.path()).or_else(|| {
                name.strip_prefix(NAME_PREFIX)
                    .and_then(|rest| rest.split('-').next())
                    .and_then(|p| p.parse::<i32>().ok())
            }) else {
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

/// The widest access (1, 2, 4 or 8 bytes) that tiles a `T` at `p`: `T`'s own alignment (capped
/// at 8) when `p` honours it, so a `u64` field is copied as one word, as a reader using an
/// `AtomicU64` there would access it; bytes otherwise.
fn word_for<T>(p: *const u8) -> usize {
    let w = std::mem::align_of::<T>().min(8);
    if (p as usize).is_multiple_of(w) { w } else { 1 }
}

/// Copies `len` bytes between shared memory `shared` and the local buffer `local`, touching the
/// shared side only with relaxed atomic accesses of `word` bytes (`to_shared`: local → shared).
///
/// # Safety
/// `shared..shared + len` lies in a live mapping and is aligned to `word`; `local..local + len` is
/// a local buffer nothing else accesses; `len` is a multiple of `word`.
unsafe fn atomic_copy(shared: *mut u8, local: *mut u8, len: usize, word: usize, to_shared: bool) {
    use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
    macro_rules! copy {
        ($a:ty, $t:ty) => {
            for i in (0..len).step_by(word) {
                // SAFETY: in bounds and aligned per the caller; shared memory is only accessed
                // atomically here; the local side is read/written unaligned.
                unsafe {
                    let a = <$a>::from_ptr(shared.add(i).cast::<$t>());
                    let l = local.add(i).cast::<$t>();
                    if to_shared { a.store(l.read_unaligned(), Relaxed) } else { l.write_unaligned(a.load(Relaxed)) }
                }
            }
        };
    }
    debug_assert!(len.is_multiple_of(word));
    match word {
        8 => copy!(AtomicU64, u64),
        4 => copy!(AtomicU32, u32),
        2 => copy!(AtomicU16, u16),
        _ => copy!(AtomicU8, u8),
    }
}

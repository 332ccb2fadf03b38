//! mmap, shm_open and friends.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// A raw mapping: start and length. Unmapped explicitly with [`unmap`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapped {
    pub ptr: NonNull<u8>,
    pub len: usize,
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported on Linux.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// `mmap(MAP_SHARED | MAP_ANONYMOUS)`: memory that a forked child shares with its parent.
///
/// The pages are zero-filled and allocated on first touch. A request the kernel's commit limit
/// cannot cover fails here with `ENOMEM`, reported as [`Error::SegmentTooLarge`].
pub(crate) fn map_shared_anonymous(len: usize) -> Result<Mapped> {
    // SAFETY: a fresh anonymous mapping with a null hint aliases no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOMEM) {
            return Err(Error::SegmentTooLarge { requested: len as u64, available: available_memory() });
        }
        return Err(Error::Sys { call: "mmap", source: e });
    }
    Ok(Mapped { ptr: NonNull::new(p.cast()).expect("mmap returned null without MAP_FIXED"), len })
}

/// Maps `len` bytes of the shared-memory object `name` (open as `fd`), read-write and shared.
pub(crate) fn map_fd(fd: &OwnedFd, len: usize, name: &CStr) -> Result<Mapped> {
    // SAFETY: a fresh MAP_SHARED mapping of a file we hold open; a null hint aliases nothing.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOMEM) {
            return Err(Error::SegmentTooLarge { requested: len as u64, available: available_memory() });
        }
        return Err(segment_error(name, "mmap", e));
    }
    Ok(Mapped { ptr: NonNull::new(p.cast()).expect("mmap returned null without MAP_FIXED"), len })
}

/// The name as the caller spells it (no leading `/`).
fn display_name(name: &CStr) -> String {
    name.to_string_lossy().trim_start_matches('/').to_owned()
}

/// Turns the errno of a call on the shared-memory object `name` into an error a caller can act
/// on: which segment, which call, and what the reason means.
fn segment_error(name: &CStr, call: &'static str, e: io::Error) -> Error {
    let shown = display_name(name);
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::SegmentNotFound { name: shown },
        Some(libc::EEXIST) => Error::SegmentExists { name: shown },
        Some(libc::EACCES) | Some(libc::EPERM) => {
            // Who owns it, so the message can say why this process may not open it.
            let mut path = Vec::with_capacity(9 + shown.len());
            path.extend_from_slice(b"/dev/shm/");
            path.extend_from_slice(shown.as_bytes());
            let owner = std::ffi::CString::new(path).ok().and_then(|p| {
                let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                // SAFETY: `p` is a valid C string and `st` writable memory of the right type.
                (unsafe { libc::stat(p.as_ptr(), st.as_mut_ptr()) } == 0).then(|| {
                    // SAFETY: stat returned 0, so it filled `st`.
                    let st = unsafe { st.assume_init() };
                    (st.st_uid, st.st_mode & 0o777)
                })
            });
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            Error::SegmentPermissionDenied { name: shown, owner: owner.map(|o| o.0), mode: owner.map(|o| o.1), uid: me }
        }
        Some(libc::ENAMETOOLONG) => {
            Error::BadSegmentName { name: shown, reason: format!("longer than {MAX_NAME_LEN} bytes") }
        }
        Some(libc::EINVAL) if call == "shm_open" => Error::BadSegmentName {
            name: shown,
            reason: "not a valid shared-memory name (one path component, no `/` after the first character)".into(),
        },
        Some(libc::EMFILE) | Some(libc::ENFILE) => Error::SegmentIo {
            name: shown,
            call,
            source: e,
            hint: "too many open files: raise the descriptor limit (ulimit -n) or close some",
        },
        _ => Error::SegmentIo { name: shown, call, source: e, hint: "" },
    }
}

/// The size of a transparent huge page: what one page-middle-directory entry maps (a page of
/// entries of 8 bytes, each mapping a page): 2 MiB with 4 KiB pages, 512 MiB with 64 KiB ones.
fn huge_page_size() -> usize {
    let page = page_size();
    page * (page / 8)
}

/// Asks the kernel to back the whole huge pages inside `buf` with huge pages when it first
/// touches them (`madvise(MADV_HUGEPAGE)`, honoured where transparent huge pages are set to
/// `always` or `madvise`). For a large buffer about to be written through once, this replaces
/// one page fault per 4 KiB with one per 2 MiB: measured on a 2-core VM, writing 80 MB into a
/// fresh allocation ran 4.4 ns per 8 bytes with small pages, 1.8-2.0 with huge ones (1.3 warm).
/// Only the aligned interior is advised, so no other allocation's memory is touched; a buffer
/// smaller than two huge pages is left alone. Advice only: a kernel without huge pages says no,
/// and that is not an error.
pub(crate) fn advise_huge_pages<T>(buf: &mut [std::mem::MaybeUninit<T>]) {
    let huge = huge_page_size();
    let bytes = std::mem::size_of_val(buf);
    if bytes < 2 * huge {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let (from, to) = (start.next_multiple_of(huge), (start + bytes) / huge * huge);
    // SAFETY: `from..to` lies inside `buf`, memory this caller holds exclusively; MADV_HUGEPAGE
    // changes how its pages are backed, never what they hold, so nothing that reads or writes
    // the buffer, or any other memory, can tell (except by speed).
    unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
}

/// Whether [`stream_store`] writes a value of `size` bytes past the caches on this CPU (x86-64,
/// a whole number of 8-byte words); elsewhere it is a plain store.
pub(crate) const fn streams(size: usize) -> bool {
    cfg!(target_arch = "x86_64") && size > 0 && size.is_multiple_of(8)
}

/// Stores `v` at `dst` as its bytes, with non-temporal stores where [`streams`] says so
/// (`movnti`: the line goes to memory without being read into this core's cache first, and
/// leaves it). For a long run of results another process reads once, later: an ordinary store
/// first fetches the line from the cache of the core that last read it (measured on a 2-core VM,
/// a worker's CPU per `u64` result of `map_range` went from 1.4 to 1.0 ns, medians of 5
/// alternated runs).
///
/// # Safety
/// - `dst` is valid for writes of `size_of::<T>()` bytes and 8-aligned when [`streams`] holds
///   for that size, and nothing else reads or writes those bytes meanwhile;
/// - `T` is plain data (its bytes are the whole value; it has no drop glue that matters: `v`
///   is moved into memory, as `write_unaligned` would);
/// - [`store_fence`] runs after the last such store and before another process is told the
///   bytes are there (a release store alone does not order non-temporal stores).
#[inline(always)]
pub(crate) unsafe fn stream_store<T>(dst: *mut u8, v: T) {
    #[cfg(target_arch = "x86_64")]
    if streams(std::mem::size_of::<T>()) {
        debug_assert!(dst.addr().is_multiple_of(8));
        let v = std::mem::ManuallyDrop::new(v);
        let src = (&raw const v).cast::<u64>();
        for i in 0..std::mem::size_of::<T>() / 8 {
            // SAFETY: word `i` lies inside `v` (a whole number of words; read unaligned, as `T`
            // may be less aligned) and inside the caller's `dst` range (8-aligned: the caller's
            // promise); `movnti` has no other requirement.
            unsafe {
                let w = src.add(i).read_unaligned();
                std::arch::x86_64::_mm_stream_si64(dst.cast::<i64>().add(i), w as i64);
            }
        }
        return;
    }
    // SAFETY: the caller's promise: `dst` is valid for the value's bytes.
    unsafe { dst.cast::<T>().write_unaligned(v) };
}

/// Whether [`stream_store_shared`] streams a value of `size` bytes (x86-64: 4 or 8 bytes).
pub(crate) const fn streams_shared(size: usize) -> bool {
    cfg!(target_arch = "x86_64") && (size == 4 || size == 8)
}

/// [`stream_store`] of one element of a shared array that other processes may read with atomic
/// loads meanwhile: one aligned `movnti` of 4 or 8 bytes, in inline assembly. An aligned store of
/// up to 8 bytes is single-copy atomic on x86-64, non-temporal ones too, and the assembly is
/// opaque to the compiler (it cannot split, merge or elide it): a reader sees the old value or
/// the new one, as with a relaxed atomic store — only ordered later, by [`store_fence`]. (The
/// intrinsic [`stream_store`] uses is an ordinary, non-atomic store to the compiler: right for
/// memory no one else touches until it is published, not for an array others may read.)
///
/// # Safety
/// - [`streams_shared`] holds for `size_of::<T>()`;
/// - `dst` is valid for writes of a `T`, aligned for it, and accessed by others only atomically;
/// - [`store_fence`] runs after the last such store and before another process is told the
///   value is there.
#[inline(always)]
pub(crate) unsafe fn stream_store_shared<T: bytemuck::Pod>(dst: *mut T, v: T) {
    debug_assert!(streams_shared(std::mem::size_of::<T>()) && dst.is_aligned());
    #[cfg(target_arch = "x86_64")]
    match std::mem::size_of::<T>() {
        // SAFETY: per the caller's promise `dst` is an aligned, writable `T` of 8 bytes; the
        // instruction writes exactly those bytes and touches no other memory, stack or flag.
        8 => unsafe {
            let w: u64 = bytemuck::cast(v);
            std::arch::asm!("movnti qword ptr [{p}], {w}", p = in(reg) dst, w = in(reg) w,
                options(nostack, preserves_flags));
        },
        // SAFETY: as above, for 4 bytes.
        4 => unsafe {
            let w: u32 = bytemuck::cast(v);
            std::arch::asm!("movnti dword ptr [{p}], {w:e}", p = in(reg) dst, w = in(reg) w,
                options(nostack, preserves_flags));
        },
        _ => unreachable!("streams_shared admits 4 and 8 bytes"),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("streams_shared is false here: {dst:p}, {}", std::mem::size_of_val(&v));
}

/// Orders every [`stream_store`] before the stores that follow (`sfence`); nothing to do where
/// stores are not streamed.
#[inline(always)]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it touches no memory.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Longest segment name Linux accepts (`NAME_MAX` of the tmpfs behind `/dev/shm`), without the
/// leading `/`. mproc's own generated names stay within 31 bytes, the portable limit of systems
/// with short shared-memory names.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Unmaps a mapping made by this module.
///
/// # Safety
/// - `m` came from [`map_shared_anonymous`] or [`map_fd`] and was not unmapped before;
/// - no reference into the mapping is used afterwards.
pub(crate) unsafe fn unmap(m: Mapped) {
    // SAFETY: the caller guarantees the range is one live mapping of ours with no users left.
    unsafe { libc::munmap(m.ptr.as_ptr().cast(), m.len) };
}

/// Bytes free in the tmpfs behind `shm_open` (`/dev/shm`), or `u64::MAX` when it cannot be read.
pub(crate) fn shm_available() -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the path is a valid C string and `st` is writable memory of the right type.
    let rc = unsafe { libc::statvfs(c"/dev/shm".as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    st.f_bavail.saturating_mul(st.f_frsize)
}

fn available_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_AVPHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages.max(0) as u64).saturating_mul(size.max(0) as u64)
}

/// Creates a new POSIX shared-memory object: `O_CREAT | O_EXCL`, mode 0600, `len` bytes reserved.
///
/// The size is reserved with `posix_fallocate`, so a full `/dev/shm` is an error now rather than a
/// `SIGBUS` on first touch later. A request larger than the free space is refused before anything
/// is allocated. On any error the object is unlinked again.
pub(crate) fn shm_create(name: &CStr, len: usize) -> Result<OwnedFd> {
    let available = shm_available();
    if len as u64 > available {
        return Err(Error::SegmentTooLarge { requested: len as u64, available });
    }
    // SAFETY: `name` is a valid C string; the flags ask for a new object only.
    let fd =
        unsafe { libc::shm_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(segment_error(name, "shm_open", io::Error::last_os_error()));
    }
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is open for writing; offset 0 and a positive length are valid.
    let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len as libc::off_t) };
    if rc != 0 {
        shm_unlink(name);
        if rc == libc::ENOSPC || rc == libc::EFBIG {
            return Err(Error::SegmentTooLarge { requested: len as u64, available: shm_available() });
        }
        return Err(segment_error(name, "posix_fallocate", io::Error::from_raw_os_error(rc)));
    }
    Ok(fd)
}

/// Opens an existing shared-memory object read-write; returns it with its size.
pub(crate) fn shm_open(name: &CStr) -> Result<(OwnedFd, usize)> {
    // SAFETY: `name` is a valid C string; no O_CREAT, so no mode is needed.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(segment_error(name, "shm_open", io::Error::last_os_error()));
    }
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open and `st` is writable memory of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(segment_error(name, "fstat", io::Error::last_os_error()));
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let size = unsafe { st.assume_init() }.st_size as usize;
    Ok((fd, size))
}

/// Removes a shared-memory object's name. Errors are ignored: the name may already be gone.
pub(crate) fn shm_unlink(name: &CStr) {
    // SAFETY: `name` is a valid C string.
    unsafe { libc::shm_unlink(name.as_ptr()) };
}

/// Removes a shared-memory object's name, reporting why it could not be.
pub(crate) fn shm_remove(name: &CStr) -> Result<()> {
    // SAFETY: `name` is a valid C string.
    if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
        return Err(segment_error(name, "shm_unlink", io::Error::last_os_error()));
    }
    Ok(())
}

/// Removes a file's name (`unlink(2)`); errors are ignored, the name may already be gone.
/// Async-signal-safe.
pub(crate) fn unlink_path(path: &CStr) {
    // SAFETY: `path` is a valid C string.
    unsafe { libc::unlink(path.as_ptr()) };
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Sys { call: "getrandom", source: e });
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_store_writes_each_value_as_its_bytes_streamed_or_not() {
        // Words of 8-aligned memory: one `u64`, a 24-byte array, a 4-byte value (never streamed),
        // each written at its offset and read back after the fence, the bytes around untouched.
        let mut buf = [0xa5a5_a5a5_a5a5_a5a5u64; 8];
        let p = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: every store lies inside `buf` (64 bytes), at 8-aligned offsets; the values are
        // plain data.
        unsafe {
            stream_store(p.add(8), 0x0102_0304_0506_0708u64);
            stream_store(p.add(16), [1u64, u64::MAX, 3]);
            stream_store(p.add(40), 0xdead_beefu32);
        }
        store_fence();
        assert!(streams(8) == cfg!(target_arch = "x86_64") && !streams(4) && !streams(0));
        assert_eq!(buf[0], 0xa5a5_a5a5_a5a5_a5a5);
        assert_eq!(buf[1], 0x0102_0304_0506_0708);
        assert_eq!(buf[2..5], [1, u64::MAX, 3]);
        assert_eq!(buf[5].to_ne_bytes()[..4], 0xdead_beefu32.to_ne_bytes());
        assert_eq!(buf[5].to_ne_bytes()[4..], [0xa5; 4]);
        assert_eq!(buf[6..], [0xa5a5_a5a5_a5a5_a5a5; 2]);
        // Elements of a shared array: 8 and 4 bytes, aligned.
        if streams_shared(8) {
            let mut words = [7u64; 3];
            let mut halves = [7u32; 3];
            // SAFETY: aligned elements of local arrays nothing else accesses.
            unsafe {
                stream_store_shared(words.as_mut_ptr().add(1), 0x1122_3344_5566_7788u64);
                stream_store_shared(halves.as_mut_ptr().add(2), 0x99aa_bbccu32);
            }
            store_fence();
            assert_eq!((words, halves), ([7, 0x1122_3344_5566_7788, 7], [7, 7, 0x99aa_bbcc]));
        }
        assert!(!streams_shared(2) && !streams_shared(16));
    }
}

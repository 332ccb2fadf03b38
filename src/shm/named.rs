//! [`NamedArena`]: a named segment with a directory of objects, so that programs not related by
//! fork find a `Queue`, `Lock`, `Value`, … by name.
//!
//! # Layout (version 2, `LAYOUT_VERSION`)
//! ```text
//! 0      header (80 bytes): magic "mprocARN", layout version, ready word, header and entry
//!        sizes, directory offset and capacity, entries used, data offset, segment length, bump
//!        counter, creator pid, size and alignment of a lock, checksum of the fixed fields
//! 128    directory: `capacity` entries of 256 bytes: state, kind, name (≤ 64 bytes), T's type
//!        name (≤ 72 bytes, for display), T's size, alignment and type fingerprint (a hash of
//!        `std::any::type_name`), a fingerprint of the sizes and alignments of mproc's own
//!        shared structs for that kind, byte offset and size of the object's region, six
//!        kind-specific parameters (offsets of its parts, lengths), checksum of all but the state
//! data   the objects, each on its own 128-byte lines (the bump allocator of [`Arena`])
//! ```
//! A change to the header or the directory, or to any shared struct behind a named kind (a
//! lock's, a queue's state), must bump `LAYOUT_VERSION`; the per-entry shape fingerprint catches
//! a struct that changed size without one, as an [`Error::ObjectTypeMismatch`].
//!
//! All of it is atomics, so any process may read it at any time without a data race; everything
//! read from it is copied out first and then checked, so a value that changes under the reader
//! cannot get past a check.
//!
//! # Publication (memory ordering)
//! - The creator fills the header, stores `magic`, then `ready = 1` with Release; an opener
//!   loads `ready` with Acquire before it reads any other field. All-zero bytes mean "still being
//!   created": openers wait for `ready`, bounded ([`NamedArena::open_timeout`]), then fail.
//! - An object is added under a process-local mutex, by the creating process only: its entry is
//!   written with state `INIT` (Release) and counted in `entries used` (Release); the object is
//!   built in the data area; then its offsets and checksum are written and the state set to
//!   `READY` with Release. An opener loads the state with Acquire and reads the entry after it;
//!   it waits (bounded) for an entry it finds in `INIT`.
//!
//! # What is checked, and the trust model
//! Opening checks the magic, the version (before anything else in the header, whose shape may
//! differ in another version), the header's checksum and every size and offset in it against
//! the segment's real length. Getting an object checks its entry's checksum, the kind and `T`
//! asked for, and that every part of the object lies inside its region, inside the segment, and
//! aligned. A queue checks its indices and each record's length on every operation. So bytes
//! overwritten by accident or by a buggy program give an [`Error`] (mostly [`Error::Corrupt`]),
//! never an out-of-bounds access. A queue record's payload carries no checksum: overwritten, it
//! decodes as a [`Error::Decode`] or as another value of `T`, still never undefined behaviour.
//! What no check can do is make a lock whose own bytes were
//! overwritten behave, or stop a process that can write the segment from holding a lock forever:
//! named arenas are created mode 0600, so only the creator's user can open them, and every
//! process of that user is trusted as much as the creator (one that shrinks the segment with
//! `ftruncate` makes the others' next access to the lost pages a `SIGBUS`).

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::arena::OBJECT_ALIGN;
use crate::shm::{Arena, Mapping, Segment, ShmBox, ShmSafe};
use crate::sync::Lock;
use crate::sys;

/// The first 8 bytes of every named arena.
pub const MAGIC: u64 = u64::from_le_bytes(*b"mprocARN");
/// The layout this build writes and reads; a segment with another version is
/// [`Error::ArenaVersion`]. (Version 1 was the first; it already included the lock's wait
/// histogram. Version 2: a queue has a lock for its producers beside its consumers', and its
/// state counts done items and each consumer's takes.)
pub const LAYOUT_VERSION: u32 = 2;
const DEFAULT_OBJECTS: usize = 64;

const MAX_OBJECTS: usize = 4096;
const DIR_OFFSET: usize = OBJECT_ALIGN;
const ENTRY_SIZE: usize = 256;
const NAME_CAP: usize = 64;
const TYPE_CAP: usize = 72;
const PARAMS: usize = 6;
/// How long `open` and `get` wait for something still being created.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);

const EMPTY: u32 = 0;
const INIT: u32 = 1;
const READY: u32 = 2;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    ready: AtomicU32,
    header_size: AtomicU32,
    entry_size: AtomicU32,
    dir_offset: AtomicU64,
    dir_capacity: AtomicU32,
    /// Entries in use (changes as objects are added; not in the checksum).
    dir_len: AtomicU32,
    data_offset: AtomicU64,
    seg_len: AtomicU64,
    /// The data area's bump counter (not in the checksum).
    next: AtomicUsize,
    creator_pid: AtomicI32,
    /// Size (high 16 bits) and alignment (low 16) of the creator's lock struct, for
    /// [`NamedArena::lock_of`], which takes a lock out of any kind of object.
    lock_shape: AtomicU32,
    checksum: AtomicU64,
}

// SAFETY: atomics only (every bit pattern valid), no pointers, no Drop.
unsafe impl ShmSafe for Header {}

#[repr(C)]
struct Entry {
    state: AtomicU32,
    kind: AtomicU32,
    name_len: AtomicU32,
    type_len: AtomicU32,
    name: [AtomicU8; NAME_CAP],
    type_name: [AtomicU8; TYPE_CAP],
    t_size: AtomicU64,
    t_align: AtomicU64,
    t_hash: AtomicU64,
    layout: AtomicU64,
    offset: AtomicU64,
    size: AtomicU64,
    params: [AtomicU64; PARAMS],
    checksum: AtomicU64,
}

// SAFETY: atomics only (every bit pattern valid), no pointers, no Drop.
unsafe impl ShmSafe for Entry {}

const _: () = assert!(std::mem::size_of::<Entry>() == ENTRY_SIZE);
const _: () = assert!(std::mem::size_of::<Header>() <= DIR_OFFSET);

fn data_offset_for(capacity: usize) -> usize {
    (DIR_OFFSET + capacity * ENTRY_SIZE).next_multiple_of(OBJECT_ALIGN)
}

/// FNV-1a, 64 bits: the type fingerprint and the checksums (not cryptographic: it catches
/// accidents, not forgers; see the module docs).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(mut self, b: &[u8]) -> Fnv {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    fn u64(self, v: u64) -> Fnv {
        self.bytes(&v.to_le_bytes())
    }
}

/// The kinds of object a [`NamedArena`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// [`crate::Lock`]
    Lock = 1,
    /// [`crate::RLock`]
    RLock = 2,
    /// [`crate::Value`]
    Value = 3,
    /// [`crate::RawValue`]
    RawValue = 4,
    /// [`crate::Array`]
    Array = 5,
    /// [`crate::RawArray`]
    RawArray = 6,
    /// [`crate::Event`]
    Event = 7,
    /// [`crate::Semaphore`]
    Semaphore = 8,
    /// [`crate::BoundedSemaphore`]
    BoundedSemaphore = 9,
    /// [`crate::Barrier`]
    Barrier = 10,
    /// [`crate::Condition`]
    Condition = 11,
    /// [`crate::Flag`]
    Flag = 12,
    /// [`crate::Queue`] (and [`crate::SimpleQueue`])
    Queue = 13,
    /// [`crate::JoinableQueue`]
    JoinableQueue = 14,
    /// [`crate::Progress`]
    Progress = 15,
}

impl ObjectKind {
    const ALL: [ObjectKind; 15] = [
        ObjectKind::Lock,
        ObjectKind::RLock,
        ObjectKind::Value,
        ObjectKind::RawValue,
        ObjectKind::Array,
        ObjectKind::RawArray,
        ObjectKind::Event,
        ObjectKind::Semaphore,
        ObjectKind::BoundedSemaphore,
        ObjectKind::Barrier,
        ObjectKind::Condition,
        ObjectKind::Flag,
        ObjectKind::Queue,
        ObjectKind::JoinableQueue,
        ObjectKind::Progress,
    ];

    fn from_u32(v: u32) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// Whether objects of this kind carry a [`Lock`] (see [`NamedArena::lock_of`]).
    pub fn has_lock(self) -> bool {
        matches!(
            self,
            ObjectKind::Lock
                | ObjectKind::RLock
                | ObjectKind::Value
                | ObjectKind::Array
                | ObjectKind::Condition
                | ObjectKind::Queue
                | ObjectKind::JoinableQueue
        )
    }

    /// Whether the kind has a type parameter `T` (`Value<T>`, `Queue<T>`, …).
    fn generic(self) -> bool {
        matches!(
            self,
            ObjectKind::Value
                | ObjectKind::RawValue
                | ObjectKind::Array
                | ObjectKind::RawArray
                | ObjectKind::Queue
                | ObjectKind::JoinableQueue
        )
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One object of a [`NamedArena`], as [`NamedArena::objects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: ObjectKind,
    /// `T`'s type name as the creator's compiler spelled it (`"()"` for kinds without a `T`;
    /// cut to 72 bytes).
    pub type_name: String,
    /// `T`'s size in bytes.
    pub elem_size: u64,
    /// `T`'s alignment.
    pub elem_align: u64,
    /// Byte offset of the object's region in the segment.
    pub offset: u64,
    /// Size of that region in bytes.
    pub size: u64,
}

impl ObjectInfo {
    /// `Queue<u64>`, `Lock`: the kind with its `T`.
    pub fn type_label(&self) -> String {
        if self.kind.generic() { format!("{}<{}>", self.kind, self.type_name) } else { self.kind.to_string() }
    }
}

mod hidden {
    use super::*;

    /// Seals [`NamedObject`]: only mproc's own shared types are named objects.
    pub trait Sealed {}

    /// The identity of an object's type parameter.
    #[derive(Debug, Clone, Copy)]
    pub struct TypeIdent {
        pub(crate) name: &'static str,
        pub(crate) size: usize,
        pub(crate) align: usize,
    }

    impl TypeIdent {
        pub(crate) fn of<T>() -> TypeIdent {
            TypeIdent {
                name: std::any::type_name::<T>(),
                size: std::mem::size_of::<T>(),
                align: std::mem::align_of::<T>(),
            }
        }

        pub(crate) fn none() -> TypeIdent {
            TypeIdent::of::<()>()
        }

        pub(crate) fn hash(&self) -> u64 {
            Fnv::new().bytes(self.name.as_bytes()).0
        }
    }

    /// What a newly built object records in its directory entry: the offsets of its parts
    /// (checked to lie in the region it was built in) and plain parameters.
    #[derive(Debug)]
    pub struct Parts {
        pub(crate) base: usize,
        pub(crate) lo: usize,
        pub(crate) hi: usize,
        pub(crate) params: [u64; PARAMS],
        pub(crate) n: usize,
        pub(crate) bad: Option<String>,
    }

    impl Parts {
        fn push(&mut self, v: u64) {
            if self.n < PARAMS {
                self.params[self.n] = v;
                self.n += 1;
            } else {
                self.bad = Some("too many parameters".into());
            }
        }

        /// Records the offset of a part of the object.
        pub(crate) fn part<U: ?Sized>(&mut self, b: &ShmBox<U>) {
            let addr = b.as_ptr().cast::<u8>() as usize;
            let size = std::mem::size_of_val::<U>(b);
            let off = addr.wrapping_sub(self.base);
            if addr < self.base + self.lo || off.saturating_add(size) > self.hi {
                self.bad = Some(format!(
                    "a part of the object lies outside the space it was built in (bytes {}..{} of the arena): \
                     build it in the arena passed to the closure",
                    self.lo, self.hi
                ));
            }
            self.push(off as u64);
        }

        /// Records a plain parameter (a length, a capacity).
        pub(crate) fn value(&mut self, v: u64) {
            self.push(v);
        }
    }

    /// An entry's region and parameters, checked, from which an opener rebuilds its handle.
    #[derive(Debug)]
    pub struct Rebuild<'a> {
        pub(crate) map: &'a Arc<Mapping>,
        pub(crate) lo: usize,
        pub(crate) hi: usize,
        pub(crate) params: [u64; PARAMS],
        pub(crate) what: &'a str,
    }

    impl Rebuild<'_> {
        /// Parameter `i`.
        pub(crate) fn value(&self, i: usize) -> u64 {
            self.params[i]
        }

        /// A corruption error about this object.
        pub(crate) fn corrupt(&self, why: impl fmt::Display) -> Error {
            Error::Corrupt(format!("{}: {why}", self.what))
        }

        /// The address of `size` bytes at the offset in parameter `i`, aligned to `align`, all
        /// inside the object's region.
        pub(crate) fn range(&self, i: usize, size: usize, align: usize) -> Result<*mut u8> {
            let off = usize::try_from(self.params[i]).map_err(|_| self.corrupt(format!("part {i} offset")))?;
            if off < self.lo || off.checked_add(size).is_none_or(|end| end > self.hi) {
                return Err(self.corrupt(format!(
                    "part {i} ({size} bytes at {off}) is outside the object's region {}..{}",
                    self.lo, self.hi
                )));
            }
            // SAFETY: `off + size <= hi <= map.len()` (the region was checked against the
            // segment's length), so the address is inside the mapping.
            let p = unsafe { self.map.ptr().add(off) };
            if !(p as usize).is_multiple_of(align) {
                return Err(self.corrupt(format!("part {i} at {off} is not aligned to {align}")));
            }
            Ok(p)
        }

        /// A handle to the `U` at the offset in parameter `i`.
        ///
        /// # Safety
        /// The object's creator placed an initialised `U` there, fit to be shared (as for
        /// [`ShmBox::from_raw`]): only the bounds and the alignment are checked here.
        pub(crate) unsafe fn part<U>(&self, i: usize) -> Result<ShmBox<U>> {
            let p = self.range(i, std::mem::size_of::<U>(), std::mem::align_of::<U>())?;
            // SAFETY: in bounds of the mapping, aligned; initialised per the caller.
            Ok(unsafe { ShmBox::from_raw(p.cast::<U>(), self.map.clone()) })
        }

        /// A handle to `len` elements `U` at the offset in parameter `i`.
        ///
        /// # Safety
        /// As for [`Rebuild::part`], for every element.
        pub(crate) unsafe fn slice<U>(&self, i: usize, len: u64) -> Result<ShmBox<[U]>> {
            let len = usize::try_from(len).map_err(|_| self.corrupt("length"))?;
            let bytes = len.checked_mul(std::mem::size_of::<U>()).ok_or_else(|| self.corrupt("length overflows"))?;
            let p = self.range(i, bytes, std::mem::align_of::<U>())?;
            // SAFETY: `len` elements in bounds, aligned; initialised per the caller.
            Ok(unsafe { ShmBox::from_raw_slice(p.cast::<U>(), len, self.map.clone()) })
        }
    }
}

pub(crate) use hidden::{Parts, Rebuild, Sealed, TypeIdent};

/// The fingerprint [`NamedObject::layout`] returns: a hash of `(size, align)` of each shared
/// struct a kind is made of. It catches a struct that grew or shrank between two builds; a
/// change that keeps every size (fields reordered, a protocol changed) must bump
/// [`LAYOUT_VERSION`] instead — as must any change to the header or the directory.
pub(crate) fn layout_hash(parts: &[(usize, usize)]) -> u64 {
    parts.iter().fold(Fnv::new(), |h, &(s, a)| h.u64(s as u64).u64(a as u64)).0
}

/// `(size, align)` of `T`, for [`layout_hash`].
pub(crate) const fn shape<T>() -> (usize, usize) {
    (std::mem::size_of::<T>(), std::mem::align_of::<T>())
}

/// An mproc shared object that can live in a [`NamedArena`] under a name: [`crate::Lock`],
/// [`crate::RLock`], [`crate::Value`], [`crate::RawValue`], [`crate::Array`],
/// [`crate::RawArray`], [`crate::Event`], [`crate::Semaphore`], [`crate::BoundedSemaphore`],
/// [`crate::Barrier`], [`crate::Condition`], [`crate::Flag`], [`crate::Queue`],
/// [`crate::JoinableQueue`] and [`crate::Progress`]. Sealed: its methods are mproc's own.
pub trait NamedObject: Sized + Sealed {
    #[doc(hidden)]
    const KIND: ObjectKind;

    /// The identity of the type parameter (`()` for none).
    #[doc(hidden)]
    fn elem() -> TypeIdent;

    /// A fingerprint of the sizes and alignments of mproc's shared structs behind this kind
    /// ([`layout_hash`]), so that two builds whose structs differ refuse each other's objects.
    #[doc(hidden)]
    fn layout() -> u64;

    /// Records where the object's parts are.
    #[doc(hidden)]
    fn describe(&self, parts: &mut Parts);

    /// Rebuilds a handle from a checked entry.
    ///
    /// # Safety
    /// The entry was written by [`NamedArena::add`] for an object of this very type (kind and
    /// type parameter checked by the caller), so its parts hold what `describe` recorded.
    #[doc(hidden)]
    unsafe fn rebuild(r: &Rebuild<'_>) -> Result<Self>;
}

/// An entry copied out of shared memory.
#[derive(Debug, Clone)]
struct EntryData {
    kind: u32,
    name: Vec<u8>,
    type_name: Vec<u8>,
    t_size: u64,
    t_align: u64,
    t_hash: u64,
    layout: u64,
    offset: u64,
    size: u64,
    params: [u64; PARAMS],
}

impl EntryData {
    fn checksum(&self) -> u64 {
        let mut h = Fnv::new().u64(u64::from(self.kind)).u64(self.name.len() as u64).bytes(&self.name);
        h = h.u64(self.type_name.len() as u64).bytes(&self.type_name);
        for v in [self.t_size, self.t_align, self.t_hash, self.layout, self.offset, self.size] {
            h = h.u64(v);
        }
        for v in self.params {
            h = h.u64(v);
        }
        h.0
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    fn type_label(&self) -> String {
        let tn = String::from_utf8_lossy(&self.type_name);
        match ObjectKind::from_u32(self.kind) {
            Some(k) if k.generic() => format!("{k}<{tn}> (T: {} bytes, align {})", self.t_size, self.t_align),
            Some(k) => k.to_string(),
            None => format!("unknown kind {}", self.kind),
        }
    }
}

fn expected_label<O: NamedObject>() -> String {
    let e = O::elem();
    if O::KIND.generic() {
        format!("{}<{}> (T: {} bytes, align {})", O::KIND, e.name, e.size, e.align)
    } else {
        O::KIND.to_string()
    }
}

fn load_bytes(src: &[AtomicU8], n: usize) -> Vec<u8> {
    src[..n].iter().map(|b| b.load(Ordering::Relaxed)).collect()
}

fn store_bytes(dst: &[AtomicU8], src: &[u8]) {
    for (d, &s) in dst.iter().zip(src) {
        d.store(s, Ordering::Relaxed);
    }
}

impl Entry {
    /// Copies the entry out (after its state was loaded with Acquire).
    fn load(&self) -> std::result::Result<EntryData, String> {
        let name_len = self.name_len.load(Ordering::Relaxed) as usize;
        let type_len = self.type_len.load(Ordering::Relaxed) as usize;
        if name_len == 0 || name_len > NAME_CAP {
            return Err(format!("name length {name_len}"));
        }
        if type_len > TYPE_CAP {
            return Err(format!("type name length {type_len}"));
        }
        let mut params = [0; PARAMS];
        for (p, a) in params.iter_mut().zip(&self.params) {
            *p = a.load(Ordering::Relaxed);
        }
        Ok(EntryData {
            kind: self.kind.load(Ordering::Relaxed),
            name: load_bytes(&self.name, name_len),
            type_name: load_bytes(&self.type_name, type_len),
            t_size: self.t_size.load(Ordering::Relaxed),
            t_align: self.t_align.load(Ordering::Relaxed),
            t_hash: self.t_hash.load(Ordering::Relaxed),
            layout: self.layout.load(Ordering::Relaxed),
            offset: self.offset.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
            params,
        })
    }

    /// Writes every field but the state.
    fn store(&self, d: &EntryData) {
        self.kind.store(d.kind, Ordering::Relaxed);
        self.name_len.store(d.name.len() as u32, Ordering::Relaxed);
        store_bytes(&self.name, &d.name);
        self.type_len.store(d.type_name.len() as u32, Ordering::Relaxed);
        store_bytes(&self.type_name, &d.type_name);
        self.t_size.store(d.t_size, Ordering::Relaxed);
        self.t_align.store(d.t_align, Ordering::Relaxed);
        self.t_hash.store(d.t_hash, Ordering::Relaxed);
        self.layout.store(d.layout, Ordering::Relaxed);
        self.offset.store(d.offset, Ordering::Relaxed);
        self.size.store(d.size, Ordering::Relaxed);
        for (a, &p) in self.params.iter().zip(&d.params) {
            a.store(p, Ordering::Relaxed);
        }
        self.checksum.store(d.checksum(), Ordering::Relaxed);
    }
}

/// The fixed fields of a header, copied out.
struct HeaderData {
    magic: u64,
    version: u32,
    header_size: u32,
    entry_size: u32,
    dir_offset: u64,
    dir_capacity: u32,
    data_offset: u64,
    seg_len: u64,
    creator_pid: i32,
    lock_shape: u32,
}

fn lock_shape() -> u32 {
    let (size, align) = Lock::SHAPE;
    ((size as u32) << 16) | (align as u32 & 0xffff)
}

impl HeaderData {
    fn load(h: &Header) -> HeaderData {
        HeaderData {
            magic: h.magic.load(Ordering::Relaxed),
            version: h.version.load(Ordering::Relaxed),
            header_size: h.header_size.load(Ordering::Relaxed),
            entry_size: h.entry_size.load(Ordering::Relaxed),
            dir_offset: h.dir_offset.load(Ordering::Relaxed),
            dir_capacity: h.dir_capacity.load(Ordering::Relaxed),
            data_offset: h.data_offset.load(Ordering::Relaxed),
            seg_len: h.seg_len.load(Ordering::Relaxed),
            creator_pid: h.creator_pid.load(Ordering::Relaxed),
            lock_shape: h.lock_shape.load(Ordering::Relaxed),
        }
    }

    fn checksum(&self) -> u64 {
        Fnv::new()
            .u64(self.magic)
            .u64(u64::from(self.version))
            .u64(u64::from(self.header_size))
            .u64(u64::from(self.entry_size))
            .u64(self.dir_offset)
            .u64(u64::from(self.dir_capacity))
            .u64(self.data_offset)
            .u64(self.seg_len)
            .u64(self.creator_pid as u32 as u64)
            .u64(u64::from(self.lock_shape))
            .0
    }
}

struct Inner {
    map: Arc<Mapping>,
    name: String,
    capacity: usize,
    data_offset: usize,
    creator_pid: i32,
    wait: Duration,
    /// Serialises [`NamedArena::add`] in this process (process memory, never shared).
    adding: Mutex<()>,
    /// The data area as an allocator (used by the creator only).
    arena: Arena,
}

/// A named shared segment holding named objects, for programs that are **not** related by fork:
/// one program creates the arena and adds a `Queue`, `Lock`, `Value`, … under names; any other
/// program of the same user opens the arena by name and gets the objects by name and type.
///
/// - **Create** with [`NamedArena::create`] (the name must be free: [`Error::SegmentExists`]
///   otherwise), then [`NamedArena::add`] each object, built by the same `new_in` constructors
///   as in an anonymous [`Arena`]. Only the creating process adds objects.
/// - **Open** with [`NamedArena::open`], then [`NamedArena::get`] with the type:
///   `arena.get::<Queue<Job>>("jobs")`. The wrong kind, the wrong `T` (by type name, size and
///   alignment), an arena written by another layout version, or a segment that is not an mproc
///   arena at all is an [`Error`], never undefined behaviour. [`NamedArena::objects`] lists what
///   is there; [`NamedArena::lock_of`] gives the [`Lock`] of any object that has one, to read its
///   contention figures.
/// - **Lifetime**: the segment is created mode 0600; its name is removed when the creator has
///   dropped the arena and every object it got from it — or, if the creator is killed, by its
///   guardian (see [`Segment::create_named`]). Openers never remove it. Objects stay usable in
///   every process that holds them after the name is gone.
///
/// `T` is identified by [`std::any::type_name`], so both programs must name the same type by the
/// same path (a type in a crate both depend on), built by the same compiler.
///
/// # Example: a queue and a guarded counter shared by name
/// ```
/// use mproc::{Lock, NamedArena, Queue, Value};
///
/// let name = format!("mproc-doc-{}", std::process::id());
/// // The creating program:
/// let arena = NamedArena::create(&name, 1 << 16)?;
/// let jobs = arena.add("jobs", |a| Queue::<String>::new_in(a, 64, 256))?;
/// let done = arena.add("done", |a| Value::new_in(a, 0u64))?;
/// jobs.put("hello".to_owned())?;
///
/// // Another program (here: the same one) opens it by name:
/// let other = NamedArena::open(&name)?;
/// let q: Queue<String> = other.get("jobs")?;
/// assert_eq!(q.get()?, "hello");
/// *other.get::<Value<u64>>("done")?.lock()? += 1;
/// assert_eq!(done.get()?, 1);
/// // The wrong type is an error, not undefined behaviour:
/// assert!(matches!(other.get::<Queue<u32>>("jobs"), Err(mproc::Error::ObjectTypeMismatch { .. })));
/// assert!(matches!(other.get::<Lock>("jobs"), Err(mproc::Error::ObjectTypeMismatch { .. })));
/// let names: Vec<String> = other.objects()?.into_iter().map(|o| o.name).collect();
/// assert_eq!(names, ["jobs", "done"]);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone)]
pub struct NamedArena {
    inner: Arc<Inner>,
}

impl fmt::Debug for NamedArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedArena")
            .field("name", &self.inner.name)
            .field("len", &self.len())
            .field("creator_pid", &self.inner.creator_pid)
            .finish_non_exhaustive()
    }
}

fn check_object_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_CAP || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "object name {name:?}: names are 1 to {NAME_CAP} bytes long, without NUL"
        )));
    }
    Ok(())
}

fn not_arena(name: &str, reason: impl Into<String>) -> Error {
    Error::NotNamedArena { name: name.to_owned(), reason: reason.into() }
}

impl NamedArena {
    /// The first 8 bytes of every named arena's segment (little-endian), to recognise one
    /// without opening it.
    pub const MAGIC: u64 = MAGIC;
    /// The layout version this build writes and reads.
    pub const LAYOUT_VERSION: u32 = LAYOUT_VERSION;
    /// Longest object name, in bytes.
    pub const MAX_OBJECT_NAME: usize = NAME_CAP;
    /// Directory entries (objects it can hold) of [`NamedArena::create`].
    pub const DEFAULT_OBJECTS: usize = DEFAULT_OBJECTS;

    /// Creates the named segment `name` with room for [`NamedArena::DEFAULT_OBJECTS`] objects totalling
    /// about `len` bytes (each object starts on a fresh 128-byte line; a queue takes
    /// `capacity × (max_item_bytes + 8)` bytes plus ~1 KiB). The whole size is reserved now.
    ///
    /// `name` follows [`Segment::open`]'s rules; a name in use is [`Error::SegmentExists`].
    pub fn create(name: &str, len: usize) -> Result<NamedArena> {
        NamedArena::create_with_capacity(name, len, DEFAULT_OBJECTS)
    }

    /// As [`NamedArena::create`], with a directory of `max_objects` entries (1 to 4096).
    pub fn create_with_capacity(name: &str, len: usize, max_objects: usize) -> Result<NamedArena> {
        if max_objects == 0 || max_objects > MAX_OBJECTS {
            return Err(Error::InvalidArgument(format!("a named arena holds 1 to {MAX_OBJECTS} objects")));
        }
        let data_offset = data_offset_for(max_objects);
        let total = len.checked_add(data_offset).ok_or(Error::SegmentTooLarge { requested: u64::MAX, available: 0 })?;
        let map = Mapping::create_named_exact(name, total)?;
        let h = header_of(&map);
        let me = sys::current_pid();
        let d = HeaderData {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_size: std::mem::size_of::<Header>() as u32,
            entry_size: ENTRY_SIZE as u32,
            dir_offset: DIR_OFFSET as u64,
            dir_capacity: max_objects as u32,
            data_offset: data_offset as u64,
            seg_len: map.len() as u64,
            creator_pid: me,
            lock_shape: lock_shape(),
        };
        h.version.store(d.version, Ordering::Relaxed);
        h.header_size.store(d.header_size, Ordering::Relaxed);
        h.entry_size.store(d.entry_size, Ordering::Relaxed);
        h.dir_offset.store(d.dir_offset, Ordering::Relaxed);
        h.dir_capacity.store(d.dir_capacity, Ordering::Relaxed);
        h.dir_len.store(0, Ordering::Relaxed);
        h.data_offset.store(d.data_offset, Ordering::Relaxed);
        h.seg_len.store(d.seg_len, Ordering::Relaxed);
        h.next.store(data_offset, Ordering::Relaxed);
        h.creator_pid.store(me, Ordering::Relaxed);
        h.lock_shape.store(d.lock_shape, Ordering::Relaxed);
        h.checksum.store(d.checksum(), Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        // Publication: an opener that loads `ready == 1` with Acquire sees every store above.
        h.ready.store(1, Ordering::Release);
        let name = map.name().unwrap_or(name).to_owned();
        Ok(NamedArena::from_parts(map, name, max_objects, data_offset, me, DEFAULT_WAIT))
    }

    fn from_parts(
        map: Arc<Mapping>,
        name: String,
        capacity: usize,
        data_offset: usize,
        creator_pid: i32,
        wait: Duration,
    ) -> NamedArena {
        let counter = std::mem::offset_of!(Header, next);
        // SAFETY: `next` is an aligned AtomicUsize inside the header, before the data area; the
        // data area starts at `data_offset` (a multiple of OBJECT_ALIGN, checked to lie inside
        // the mapping) and only this arena's bump counter hands it out.
        let arena = unsafe { Arena::over(map.clone(), counter, data_offset) };
        NamedArena {
            inner: Arc::new(Inner {
                map,
                name,
                capacity,
                data_offset,
                creator_pid,
                wait,
                adding: Mutex::new(()),
                arena,
            }),
        }
    }

    /// Opens the named arena `name` created by another process, waiting up to 2 s for its
    /// creator to finish initialising it. See [`NamedArena::open_timeout`].
    pub fn open(name: &str) -> Result<NamedArena> {
        NamedArena::open_timeout(name, DEFAULT_WAIT)
    }

    /// Opens the named arena `name`, waiting up to `wait` for a creator that is still
    /// initialising it (and, later, in [`NamedArena::get`], for an object still being built).
    ///
    /// Errors: [`Error::SegmentNotFound`] and [`Error::SegmentPermissionDenied`] as for
    /// [`Segment::open`]; [`Error::NotNamedArena`] for a segment that is not an mproc arena (or
    /// whose header stayed blank for `wait`); [`Error::NotReady`] when it was still being
    /// initialised after `wait`; [`Error::ArenaVersion`] for another layout version;
    /// [`Error::Corrupt`] for a header that fails its checks.
    pub fn open_timeout(name: &str, wait: Duration) -> Result<NamedArena> {
        let deadline = Instant::now() + wait;
        let seg = loop {
            match Segment::open(name) {
                Ok(s) => break s,
                // Size 0: the creator is between `shm_open` and reserving the size.
                Err(Error::InvalidArgument(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(Error::InvalidArgument(_)) => return Err(not_arena(name, "it is empty (size 0)")),
                Err(e) => return Err(e),
            }
        };
        let map = seg.map;
        let shown = map.name().unwrap_or(name).to_owned();
        if map.len() < DIR_OFFSET {
            return Err(not_arena(&shown, format!("it is only {} bytes long", map.len())));
        }
        let h = header_of(&map);
        loop {
            let magic = h.magic.load(Ordering::Acquire);
            if magic != 0 && magic != MAGIC {
                return Err(not_arena(&shown, format!("its first 8 bytes are {magic:#018x}, not mproc's magic")));
            }
            match h.ready.load(Ordering::Acquire) {
                1 if magic == MAGIC => break,
                0 | 1 => {}
                r => return Err(Error::Corrupt(format!("named arena {shown}: ready word is {r}"))),
            }
            if Instant::now() >= deadline {
                return Err(if magic == 0 {
                    not_arena(&shown, format!("its header was still blank after {wait:?}"))
                } else {
                    Error::NotReady { what: format!("named arena {shown}"), waited: wait }
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let d = HeaderData::load(h);
        if d.version != LAYOUT_VERSION {
            return Err(Error::ArenaVersion { name: shown, found: d.version, supported: LAYOUT_VERSION });
        }
        let bad = |why: String| Err(Error::Corrupt(format!("named arena {shown}: {why}")));
        let stored = h.checksum.load(Ordering::Relaxed);
        if stored != d.checksum() {
            return bad(format!("header checksum {stored:#x} does not match its fields ({:#x})", d.checksum()));
        }
        let capacity = d.dir_capacity as usize;
        if d.header_size as usize != std::mem::size_of::<Header>() || d.entry_size as usize != ENTRY_SIZE {
            return bad(format!("header size {} / entry size {}", d.header_size, d.entry_size));
        }
        if d.dir_offset != DIR_OFFSET as u64 || capacity == 0 || capacity > MAX_OBJECTS {
            return bad(format!("directory at {} with {} entries", d.dir_offset, capacity));
        }
        if d.data_offset != data_offset_for(capacity) as u64 {
            return bad(format!("data offset {}", d.data_offset));
        }
        if d.seg_len != map.len() as u64 || d.data_offset > d.seg_len {
            return bad(format!("the header says {} bytes; the segment has {}", d.seg_len, map.len()));
        }
        let arena = NamedArena::from_parts(map, shown, capacity, d.data_offset as usize, d.creator_pid, wait);
        // Every entry published so far must pass its checks (objects added later are checked
        // when they are got).
        arena.objects()?;
        Ok(arena)
    }

    fn header(&self) -> &Header {
        header_of(&self.inner.map)
    }

    fn entry(&self, i: usize) -> &Entry {
        debug_assert!(i < self.inner.capacity);
        // SAFETY: the directory (DIR_OFFSET + capacity × ENTRY_SIZE ≤ data_offset ≤ len, checked
        // at open or set at creation) lies in the mapping, which lives as long as `self`;
        // entries are 8-aligned (DIR_OFFSET and ENTRY_SIZE are multiples of 8, the mapping is
        // page-aligned); atomics only, so any bytes are a valid Entry.
        unsafe { &*self.inner.map.ptr().add(DIR_OFFSET + i * ENTRY_SIZE).cast::<Entry>() }
    }

    /// Entries in use, checked against the capacity.
    fn used(&self) -> Result<usize> {
        let n = self.header().dir_len.load(Ordering::Acquire) as usize;
        if n > self.inner.capacity {
            return Err(Error::Corrupt(format!(
                "named arena {}: {n} directory entries used of {}",
                self.inner.name, self.inner.capacity
            )));
        }
        Ok(n)
    }

    /// The arena's name (what [`NamedArena::open`] takes).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The segment's length in bytes.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Always false: an arena has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes still free for objects.
    pub fn remaining(&self) -> usize {
        self.inner.arena.remaining()
    }

    /// The pid of the process that created it.
    pub fn creator_pid(&self) -> i32 {
        self.inner.creator_pid
    }

    /// Builds an object in the arena with `build` (given the arena's data area as an [`Arena`]:
    /// pass it to the type's `new_in`) and publishes it under `name`. Openers that look for the
    /// name meanwhile wait (bounded) until it is complete.
    ///
    /// Only the creating process adds objects ([`Error::Misuse`] otherwise, also in its forked
    /// children); a name already there is [`Error::ObjectExists`]; names are 1 to 64 bytes.
    ///
    /// ```
    /// # let arena = mproc::NamedArena::create(&format!("mproc-doc-add-{}", std::process::id()), 1 << 16)?;
    /// let lock = arena.add("lock", mproc::Lock::new_in)?;
    /// let slots = arena.add("slots", |a| mproc::Semaphore::new_in(a, 4))?;
    /// assert!(matches!(arena.add("lock", mproc::Lock::new_in), Err(mproc::Error::ObjectExists { .. })));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn add<O: NamedObject>(&self, name: &str, build: impl FnOnce(&Arena) -> Result<O>) -> Result<O> {
        check_object_name(name)?;
        if !self.inner.map.created_here() {
            return Err(Error::Misuse(format!(
                "named arena {} was created by pid {}; only its creator adds objects (others open them with get)",
                self.inner.name, self.inner.creator_pid
            )));
        }
        let _g = self.inner.adding.lock().unwrap_or_else(|p| p.into_inner());
        let h = self.header();
        let used = self.used()?;
        for i in 0..used {
            let e = self.entry(i);
            if e.state.load(Ordering::Acquire) != EMPTY && e.load().is_ok_and(|d| d.name == name.as_bytes()) {
                return Err(Error::ObjectExists { arena: self.inner.name.clone(), object: name.to_owned() });
            }
        }
        if used == self.inner.capacity {
            return Err(Error::InvalidArgument(format!(
                "named arena {} has room for {} objects and holds that many; create it with \
                 NamedArena::create_with_capacity",
                self.inner.name, self.inner.capacity
            )));
        }
        let elem = O::elem();
        let mut type_name = elem.name.as_bytes();
        if type_name.len() > TYPE_CAP {
            let mut cut = TYPE_CAP;
            while !elem.name.is_char_boundary(cut) {
                cut -= 1;
            }
            type_name = &type_name[..cut];
        }
        let mut d = EntryData {
            kind: O::KIND as u32,
            name: name.as_bytes().to_vec(),
            type_name: type_name.to_vec(),
            t_size: elem.size as u64,
            t_align: elem.align as u64,
            t_hash: elem.hash(),
            layout: O::layout(),
            offset: 0,
            size: 0,
            params: [0; PARAMS],
        };
        let e = self.entry(used);
        e.store(&d);
        e.state.store(INIT, Ordering::Release);
        h.dir_len.store(used as u32 + 1, Ordering::Release);
        let rollback = || {
            e.state.store(EMPTY, Ordering::Release);
            h.dir_len.store(used as u32, Ordering::Release);
        };
        let arena = &self.inner.arena;
        // Every allocation starts on a fresh OBJECT_ALIGN line, so the object's region does too.
        let lo = arena.cursor().next_multiple_of(OBJECT_ALIGN);
        // A `build` that panics must not leave the entry half-made (openers would wait on it, and
        // its name would be taken for good): roll back, then let the panic go on.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(arena)));
        let obj = match built {
            Ok(Ok(o)) => o,
            Ok(Err(err)) => {
                rollback();
                return Err(err);
            }
            Err(p) => {
                rollback();
                std::panic::resume_unwind(p);
            }
        };
        let hi = arena.cursor().max(lo);
        let mut parts = Parts { base: self.inner.map.ptr() as usize, lo, hi, params: [0; PARAMS], n: 0, bad: None };
        obj.describe(&mut parts);
        if let Some(why) = parts.bad {
            rollback();
            return Err(Error::Misuse(format!("NamedArena::add({name:?}): {why}")));
        }
        d.offset = lo as u64;
        d.size = (hi - lo) as u64;
        d.params = parts.params;
        e.store(&d);
        // Publication: an opener that loads READY with Acquire sees the object and the entry.
        e.state.store(READY, Ordering::Release);
        Ok(obj)
    }

    /// Finds `name`: its index and state, or the names that are there.
    fn find(&self, name: &str) -> Result<std::result::Result<(usize, u32), Vec<String>>> {
        let mut names = Vec::new();
        for i in 0..self.used()? {
            let e = self.entry(i);
            let state = e.state.load(Ordering::Acquire);
            match state {
                EMPTY => continue,
                INIT | READY => {}
                s => return Err(self.corrupt_entry(i, format!("state {s}"))),
            }
            let d = e.load().map_err(|why| self.corrupt_entry(i, why))?;
            if d.name == name.as_bytes() {
                return Ok(Ok((i, state)));
            }
            if state == READY {
                names.push(d.name());
            }
        }
        Ok(Err(names))
    }

    fn corrupt_entry(&self, i: usize, why: impl fmt::Display) -> Error {
        Error::Corrupt(format!("named arena {}: directory entry {i}: {why}", self.inner.name))
    }

    /// Loads a READY entry and checks its checksum and region.
    fn checked(&self, i: usize) -> Result<EntryData> {
        let d = self.entry(i).load().map_err(|why| self.corrupt_entry(i, why))?;
        let stored = self.entry(i).checksum.load(Ordering::Relaxed);
        if stored != d.checksum() {
            return Err(self.corrupt_entry(i, format!("checksum {stored:#x} does not match ({:#x})", d.checksum())));
        }
        if ObjectKind::from_u32(d.kind).is_none() {
            return Err(self.corrupt_entry(i, format!("unknown kind {}", d.kind)));
        }
        let end = d.offset.checked_add(d.size);
        if d.offset < self.inner.data_offset as u64 || end.is_none_or(|e| e > self.len() as u64) {
            return Err(self.corrupt_entry(i, format!("region {} + {} is outside the data area", d.offset, d.size)));
        }
        Ok(d)
    }

    /// Waits (bounded) for `name` to be READY — and, with `appear`, for it to be added at all
    /// until then; returns its checked entry.
    fn ready_entry(&self, name: &str, appear: Option<Instant>) -> Result<EntryData> {
        let deadline = Instant::now() + self.inner.wait;
        loop {
            match self.find(name)? {
                Err(_) if appear.is_some_and(|a| Instant::now() < a) => std::thread::sleep(Duration::from_millis(1)),
                Err(available) => {
                    return Err(Error::ObjectNotFound {
                        arena: self.inner.name.clone(),
                        object: name.to_owned(),
                        available,
                    });
                }
                Ok((i, READY)) => return self.checked(i),
                Ok(_) if Instant::now() >= deadline => {
                    return Err(Error::NotReady {
                        what: format!("object {name:?} in named arena {}", self.inner.name),
                        waited: self.inner.wait,
                    });
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// The object `name`, as an `O` (`Queue<Job>`, `Lock`, `Value<u64>`, …): a handle like the
    /// creator's, in this process.
    ///
    /// Errors: [`Error::ObjectNotFound`] (listing the names there are);
    /// [`Error::ObjectTypeMismatch`] if it was created as another kind or with another `T`;
    /// [`Error::NotReady`] if it was still being built after the arena's wait;
    /// [`Error::Corrupt`] if its entry or its parts fail their checks.
    pub fn get<O: NamedObject>(&self, name: &str) -> Result<O> {
        self.get_until(name, None)
    }

    /// Like [`NamedArena::get`], but if there is no object `name` yet, waits up to `timeout` for
    /// the creator to add it — for a program that may start before the one that creates its
    /// objects. Then [`Error::ObjectNotFound`].
    pub fn get_timeout<O: NamedObject>(&self, name: &str, timeout: Duration) -> Result<O> {
        self.get_until(name, Some(Instant::now() + timeout))
    }

    fn get_until<O: NamedObject>(&self, name: &str, appear: Option<Instant>) -> Result<O> {
        let d = self.ready_entry(name, appear)?;
        let elem = O::elem();
        if d.kind != O::KIND as u32
            || d.t_size != elem.size as u64
            || d.t_align != elem.align as u64
            || d.t_hash != elem.hash()
        {
            return Err(Error::ObjectTypeMismatch {
                arena: self.inner.name.clone(),
                object: name.to_owned(),
                expected: expected_label::<O>(),
                found: d.type_label(),
            });
        }
        if d.layout != O::layout() {
            return Err(Error::ObjectTypeMismatch {
                arena: self.inner.name.clone(),
                object: name.to_owned(),
                expected: format!("{} as this build of mproc lays it out", expected_label::<O>()),
                found: format!("{} laid out by another build of mproc (another release?)", d.type_label()),
            });
        }
        let what = format!("object {name:?} in named arena {}", self.inner.name);
        let r = Rebuild {
            map: &self.inner.map,
            lo: d.offset as usize,
            hi: (d.offset + d.size) as usize,
            params: d.params,
            what: &what,
        };
        // SAFETY: the entry is READY (published after `add` built the object and recorded its
        // parts), passed its checksum, and its kind and type parameter are `O`'s.
        unsafe { O::rebuild(&r) }
    }

    /// The [`Lock`] of the object `name` — a `Lock`, or the lock inside an `RLock`, `Value`,
    /// `Array`, `Condition`, `Queue` or `JoinableQueue` (a queue's consumers' lock; its producers
    /// take one of their own) — whatever its `T`. For tools that watch
    /// a running program's locks ([`Lock::stats`]): taking it also works, and excludes the
    /// object's own users (for a queue, its consumers only).
    pub fn lock_of(&self, name: &str) -> Result<Lock> {
        let d = self.ready_entry(name, None)?;
        let kind = ObjectKind::from_u32(d.kind).expect("checked");
        let found_shape = self.header().lock_shape.load(Ordering::Relaxed);
        if found_shape != lock_shape() {
            return Err(Error::ObjectTypeMismatch {
                arena: self.inner.name.clone(),
                object: name.to_owned(),
                expected: format!("a lock of {} bytes, as this build of mproc lays it out", Lock::SHAPE.0),
                found: format!("locks of {} bytes, laid out by another build of mproc", found_shape >> 16),
            });
        }
        if !kind.has_lock() {
            return Err(Error::ObjectTypeMismatch {
                arena: self.inner.name.clone(),
                object: name.to_owned(),
                expected: "an object with a lock".into(),
                found: d.type_label(),
            });
        }
        let what = format!("object {name:?} in named arena {}", self.inner.name);
        let r = Rebuild {
            map: &self.inner.map,
            lo: d.offset as usize,
            hi: (d.offset + d.size) as usize,
            params: d.params,
            what: &what,
        };
        // SAFETY: every kind with a lock records it as its first part (see each type's
        // `describe`), and the entry is READY and passed its checks.
        unsafe { Lock::rebuild_at(&r, 0, kind == ObjectKind::RLock) }
    }

    /// Every object published so far, in the order they were added — for another process to
    /// enumerate a running program's objects (`mproc shm list` prints them).
    pub fn objects(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for i in 0..self.used()? {
            match self.entry(i).state.load(Ordering::Acquire) {
                READY => {}
                EMPTY | INIT => continue,
                s => return Err(self.corrupt_entry(i, format!("state {s}"))),
            }
            let d = self.checked(i)?;
            out.push(ObjectInfo {
                name: d.name(),
                kind: ObjectKind::from_u32(d.kind).expect("checked"),
                type_name: String::from_utf8_lossy(&d.type_name).into_owned(),
                elem_size: d.t_size,
                elem_align: d.t_align,
                offset: d.offset,
                size: d.size,
            });
        }
        Ok(out)
    }
}

/// The creator pid in the header of the named arena at `path` (a file in `/dev/shm`), read
/// with plain file I/O; `None` if it is not one (or not readable, or its header fails its
/// checksum).
pub(crate) fn creator_of(path: &std::path::Path) -> Option<i32> {
    use std::io::Read;
    let mut b = [0u8; std::mem::size_of::<Header>()];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut b)).ok()?;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let d = HeaderData {
        magic: u64_at(std::mem::offset_of!(Header, magic)),
        version: u32_at(std::mem::offset_of!(Header, version)),
        header_size: u32_at(std::mem::offset_of!(Header, header_size)),
        entry_size: u32_at(std::mem::offset_of!(Header, entry_size)),
        dir_offset: u64_at(std::mem::offset_of!(Header, dir_offset)),
        dir_capacity: u32_at(std::mem::offset_of!(Header, dir_capacity)),
        data_offset: u64_at(std::mem::offset_of!(Header, data_offset)),
        seg_len: u64_at(std::mem::offset_of!(Header, seg_len)),
        creator_pid: u32_at(std::mem::offset_of!(Header, creator_pid)) as i32,
        lock_shape: u32_at(std::mem::offset_of!(Header, lock_shape)),
    };
    let ok = d.magic == MAGIC
        && d.version == LAYOUT_VERSION
        && u64_at(std::mem::offset_of!(Header, checksum)) == d.checksum()
        && d.creator_pid > 0;
    ok.then_some(d.creator_pid)
}

fn header_of(map: &Mapping) -> &Header {
    // SAFETY: every mapping given here is at least DIR_OFFSET bytes (checked at open; created
    // larger), page-aligned, and lives as long as `map`; a Header is atomics only, so any bytes
    // are a valid one.
    unsafe { &*map.ptr().cast::<Header>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_fingerprints_tell_apart_types_of_the_same_size() {
        assert_ne!(TypeIdent::of::<u64>().hash(), TypeIdent::of::<i64>().hash());
        assert_eq!(TypeIdent::of::<u64>().hash(), TypeIdent::of::<u64>().hash());
    }

    #[test]
    fn an_object_laid_out_by_another_build_is_refused_by_its_shape_fingerprint() {
        let name = format!("mproc-{}-unit-shape", std::process::id());
        let arena = NamedArena::create(&name, 4096).unwrap();
        let _l = arena.add("lock", Lock::new_in).unwrap();
        // What another build, whose RawLock had another size, would have written.
        let e = arena.entry(0);
        let mut d = e.load().unwrap();
        d.layout = layout_hash(&[(1, 1)]);
        e.store(&d);
        match arena.get::<Lock>("lock") {
            Err(e @ Error::ObjectTypeMismatch { .. }) => assert!(e.to_string().contains("another build"), "{e}"),
            other => panic!("expected ObjectTypeMismatch, got {other:?}"),
        }
        // A lock watcher (`lock_of`) built with another lock struct is refused too.
        let was = arena.header().lock_shape.swap(1 << 16 | 1, Ordering::Relaxed);
        match arena.lock_of("lock") {
            Err(e @ Error::ObjectTypeMismatch { .. }) => assert!(e.to_string().contains("another build"), "{e}"),
            other => panic!("expected ObjectTypeMismatch, got {other:?}"),
        }
        arena.header().lock_shape.store(was, Ordering::Relaxed);
        // And a checksum that does not match is corruption.
        e.checksum.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(arena.get::<Lock>("lock"), Err(Error::Corrupt(_))));
        assert!(matches!(NamedArena::open(&name), Err(Error::Corrupt(_))));
    }

    #[test]
    fn every_kind_round_trips_through_its_number() {
        for k in ObjectKind::ALL {
            assert_eq!(ObjectKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(ObjectKind::from_u32(0), None);
    }
}

//! What crosses the rings: record kinds and headers (plain data, read with bytemuck), the
//! results record's layout (successful results back to back, then a list of the failed items),
//! and the codecs (serde in the Pool's own format, plain bytes, and `Auto`, which picks one by
//! type).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::fixint;
use crate::pool::task::TaskFn;

/// In-ring record kinds (parent → worker).
pub(crate) const TASK: u32 = 1;
pub(crate) const STOP: u32 = 2;
/// The per-call value of a job ([`crate::Pool::map_with`]): a [`JobHeader`] and its bytes.
pub(crate) const CALL_ARG: u32 = 3;
/// The job is over: the worker drops its per-call value. A [`JobHeader`].
pub(crate) const JOB_END: u32 = 4;
/// Out-ring record kinds (worker → parent): a chunk's results; or a chunk the worker skipped
/// without running any of it, because the parent revoked it (see `WorkerShared::fence`).
pub(crate) const RESULTS: u32 = 1;
pub(crate) const SKIPPED: u32 = 2;

/// Why an item of a results record failed (its entry in the record's exception list).
pub(crate) const PANICKED: u8 = 1;
pub(crate) const TOO_LARGE: u8 = 2;
/// The argument could not be decoded in the worker (message follows).
pub(crate) const UNDECODABLE: u8 = 3;
/// The result could not be encoded in the worker (message follows).
pub(crate) const UNENCODABLE: u8 = 4;

/// [`TaskHeader::flags`]: the chunk carries no items; item `i` is the job's range start plus
/// `first + i` ([`crate::Pool::map_range`]).
pub(crate) const RANGE: u64 = 1;

/// A chunk of tasks: items `start..end` of the items encoded after the header, whose item 0 is
/// task `first` of job `job`, each run by `task`. `seq` numbers the chunks sent to one worker
/// slot (strictly increasing); `base` is the range start ([`RANGE`]).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct TaskHeader {
    pub job: u64,
    pub first: u64,
    pub start: u32,
    pub end: u32,
    pub task: TaskFn,
    pub seq: u64,
    pub base: u64,
    pub flags: u64,
}

/// Results of tasks `first..first+count` of job `job` (from the chunk numbered `seq`). The body
/// is the successful results, encoded back to back (`ok_len` bytes, no per-item tag), then
/// `exceptions` entries for the items that failed, each `[index in record: u32][why: u8][detail]`,
/// in index order. `busy_ns`: how long the worker spent on these items.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct ResultHeader {
    pub job: u64,
    pub first: u64,
    pub count: u32,
    pub exceptions: u32,
    pub ok_len: u64,
    pub seq: u64,
    pub busy_ns: u64,
}

/// Names the job of a [`CALL_ARG`] or [`JOB_END`] record.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct JobHeader {
    pub job: u64,
}

// The three headers are `repr(C)` structs of u64/u32 fields (and `TaskFn`, itself two u64s) laid
// out without padding (checked below), so they have no uninitialised bytes, and any bit pattern
// is a valid value of each field, hence of the struct; the zero pattern is one of them.
// SAFETY: see above.
unsafe impl bytemuck::Zeroable for TaskHeader {}
// SAFETY: see above.
unsafe impl bytemuck::Pod for TaskHeader {}
// SAFETY: see above.
unsafe impl bytemuck::Zeroable for ResultHeader {}
// SAFETY: see above.
unsafe impl bytemuck::Pod for ResultHeader {}
// SAFETY: see above.
unsafe impl bytemuck::Zeroable for JobHeader {}
// SAFETY: see above.
unsafe impl bytemuck::Pod for JobHeader {}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<TaskHeader>() == 8 + 8 + 4 + 4 + size_of::<TaskFn>() + 8 + 8 + 8);
    assert!(size_of::<ResultHeader>() == 8 + 8 + 4 + 4 + 8 + 8 + 8);
    assert!(size_of::<JobHeader>() == 8);
};

pub(crate) const TASK_HDR: usize = std::mem::size_of::<TaskHeader>();
pub(crate) const RESULT_HDR: usize = std::mem::size_of::<ResultHeader>();
pub(crate) const JOB_HDR: usize = std::mem::size_of::<JobHeader>();

/// Longest failure message kept in a results record (longer ones are cut at a char boundary).
pub(crate) const MAX_MESSAGE: usize = 1024;

/// Room a ring keeps beside the largest item: headers and a few exception entries.
pub(crate) const RECORD_SLACK: usize = 4096;

/// Reads a header from the front of a record: `None` if the record is shorter than the header.
pub(crate) fn read_header<H: bytemuck::Pod>(bytes: &[u8]) -> Option<H> {
    bytes.get(..std::mem::size_of::<H>()).map(bytemuck::pod_read_unaligned)
}

/// Byte strings at least this long are moved into a chunk whole ([`ChunkBytes::blobs`]) rather
/// than copied into its buffer: their bytes are then copied once, straight into the ring.
pub(crate) const BLOB_MIN: usize = 16 << 10;

/// A chunk's encoded items: a buffer, with large byte strings spliced in at their offsets
/// without being copied first (each `(at, blob)` goes before `inline[at..]`). The record is the
/// concatenation; it is copied into the ring once, and kept (buffer and blobs) for sending again
/// if its worker dies.
#[derive(Debug, Default)]
pub(crate) struct ChunkBytes {
    pub inline: Vec<u8>,
    pub blobs: Vec<(usize, Vec<u8>)>,
    blob_len: usize,
    /// When the job's results can be built in them ([`Wire::reuses_buffers`]): the heap
    /// buffers of the chunk's `String` and `Vec<u8>` arguments shorter than [`BLOB_MIN`], one
    /// entry per task in order (empty for an argument that has none), kept until the results
    /// come back. A result is then built in its own task's argument buffer
    /// ([`Wire::decode_reusing`]) when that buffer is not much larger than the result: no malloc
    /// and no free per item in the parent, a map's bottleneck on such items.
    pub kept: Vec<Vec<u8>>,
}

/// A position in a [`ChunkBytes`], to roll back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    inline: usize,
    blobs: usize,
    blob_len: usize,
}

impl ChunkBytes {
    /// Bytes in the record.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.inline.len() + self.blob_len
    }

    pub(crate) fn clear(&mut self) {
        self.inline.clear();
        self.blobs.clear();
        self.blob_len = 0;
        self.kept.clear();
    }

    /// Moves `blob` in at the current end.
    pub(crate) fn push_blob(&mut self, blob: Vec<u8>) {
        self.blob_len += blob.len();
        self.blobs.push((self.inline.len(), blob));
    }

    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        Mark { inline: self.inline.len(), blobs: self.blobs.len(), blob_len: self.blob_len }
    }

    /// A mark that keeps every byte written inline (and every blob there is now): for a loop that
    /// writes through a [`fixint::Cursor`], which drops a failed item's bytes itself.
    pub(crate) fn mark_keeping_inline(&self) -> Mark {
        Mark { inline: usize::MAX, blobs: self.blobs.len(), blob_len: self.blob_len }
    }

    /// Bytes of blobs moved in whole (beside the inline bytes).
    pub(crate) fn blob_bytes(&self) -> usize {
        self.blob_len
    }

    /// Drops everything after `m`.
    pub(crate) fn truncate(&mut self, m: Mark) {
        self.inline.truncate(m.inline);
        self.blobs.truncate(m.blobs);
        self.blob_len = m.blob_len;
    }

    /// Takes everything after `m` out, as a chunk of its own.
    pub(crate) fn split_off(&mut self, m: Mark) -> ChunkBytes {
        let inline = self.inline.split_off(m.inline);
        let blobs: Vec<_> = self.blobs.drain(m.blobs..).map(|(at, b)| (at - m.inline, b)).collect();
        let blob_len = self.blob_len - m.blob_len;
        self.blob_len = m.blob_len;
        ChunkBytes { inline, blobs, blob_len, kept: Vec::new() }
    }

    /// Appends `other` (a chunk taken out with [`ChunkBytes::split_off`]).
    pub(crate) fn append(&mut self, other: ChunkBytes) {
        let base = self.inline.len();
        self.inline.extend_from_slice(&other.inline);
        self.blobs.extend(other.blobs.into_iter().map(|(at, b)| (at + base, b)));
        self.blob_len += other.blob_len;
    }

    /// Writes the record into `dst`, which is [`ChunkBytes::len`] bytes long.
    pub(crate) fn copy_to(&self, dst: &mut [u8]) {
        let (mut from, mut to) = (0, 0);
        for (at, blob) in &self.blobs {
            let n = at - from;
            dst[to..to + n].copy_from_slice(&self.inline[from..*at]);
            to += n;
            dst[to..to + blob.len()].copy_from_slice(blob);
            to += blob.len();
            from = *at;
        }
        dst[to..].copy_from_slice(&self.inline[from..]);
    }
}

/// How values are turned into bytes and back.
///
/// # Safety
/// An implementation whose [`Wire::plain_size`] returns `Some(n)` for `T` promises that `T` is
/// plain data of `n` bytes (no padding, every bit pattern valid: `bytemuck::Pod`) and that
/// `encode` writes exactly its `n` bytes: callers then copy whole runs of values as bytes.
pub(crate) unsafe trait Wire<T> {
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// Encodes `v` into a chunk: a large byte string may be moved in rather than copied (then
    /// `None`); otherwise `v` is handed back, for the caller to drop or keep.
    #[inline]
    fn encode_owned(v: T, out: &mut ChunkBytes) -> Result<Option<T>, String> {
        Self::encode(&v, &mut out.inline).map(|()| Some(v))
    }
    /// [`Wire::encode`] at a cursor into a chunk's bytes (the feeding loop's, which keeps its
    /// length in a register). On failure the cursor may hold part of the value (the caller
    /// truncates it).
    #[inline]
    fn encode_at(v: &T, c: &mut fixint::Cursor<'_>) -> Result<(), String> {
        c.with_vec(|out| Self::encode(v, out))
    }
    fn decode(input: &mut &[u8]) -> Result<T, String>;
    /// [`Wire::decode`], given the buffer of the task's argument ([`ChunkBytes::kept`]) to
    /// build the value in if it can (a `String` or `Vec<u8>` result, and a buffer at most about
    /// twice its size, so that no result holds on to a much larger argument's memory); dropped
    /// otherwise, before the value is decoded, so the allocator hands its memory straight to it.
    #[inline]
    fn decode_reusing(input: &mut &[u8], spare: Vec<u8>) -> Result<T, String> {
        drop(spare);
        Self::decode(input)
    }
    /// Whether [`Wire::decode_reusing`] can build a `T` in an argument's buffer: when it cannot,
    /// arguments are not kept. True only for a `String` or `Vec<u8>` laid out as [`Serde`] lays
    /// it out (a `u64` length, then the bytes), which the map's feeding loop then writes itself.
    fn reuses_buffers() -> bool {
        false
    }
    /// `Some(size_of::<T>())` when values are their own bytes (see the trait's safety rule).
    fn plain_size() -> Option<usize> {
        None
    }
}

/// serde, in the Pool's own format ([`crate::pool::fixint`]: fixed-width numbers, no varints):
/// any `Serialize + DeserializeOwned` type.
pub(crate) struct Serde;

// SAFETY: `plain_size` is `None`.
unsafe impl<T: Serialize + DeserializeOwned> Wire<T> for Serde {
    #[inline]
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
        // On failure `fixint::encode` leaves `out` as it was (its cursor keeps nothing).
        fixint::encode(v, out).map_err(|e| e.0)
    }

    #[inline]
    fn encode_at(v: &T, c: &mut fixint::Cursor<'_>) -> Result<(), String> {
        fixint::encode_at(v, c).map_err(|e| e.0)
    }

    /// On failure `input` is left where it was (the failed value's bytes are not skipped: the
    /// caller cannot know where the next value starts).
    #[inline]
    fn decode(input: &mut &[u8]) -> Result<T, String> {
        let mut rest = *input;
        let v = fixint::decode(&mut rest).map_err(|e| e.0)?;
        *input = rest;
        Ok(v)
    }
}

/// The copy-free path: plain data ([`crate::Plain`]: no padding, every bit pattern valid) is
/// copied as its bytes, no encoding.
pub(crate) struct Plain;

// SAFETY: `T: Pod`, and `encode` writes exactly `bytes_of(v)`.
unsafe impl<T: crate::Plain> Wire<T> for Plain {
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(bytemuck::bytes_of(v));
        Ok(())
    }

    fn decode(input: &mut &[u8]) -> Result<T, String> {
        let n = std::mem::size_of::<T>();
        let Some(bytes) = input.get(..n) else { return Err("truncated plain value".into()) };
        let v = bytemuck::pod_read_unaligned(bytes);
        *input = &input[n..];
        Ok(v)
    }

    fn plain_size() -> Option<usize> {
        Some(std::mem::size_of::<T>())
    }
}

/// What [`crate::Pool::map`] and its serde siblings use: a primitive number type (`u8`…`u128`,
/// `i8`…`i128`, `usize`, `isize`, `f32`, `f64`) crosses as its bytes, like [`Plain`]; a
/// `Vec<u8>` as [`Serde`] lays it out (a `u64` length, then the bytes) but copied in one piece
/// rather than byte by byte through serde; any other type through [`Serde`]. A `String` or
/// `Vec<u8>` result is built in its argument's buffer when the parent kept it
/// ([`Wire::decode_reusing`]). Chosen per type
/// by `TypeId` (no specialisation needed: the test compares constants, folded away in each
/// instance).
pub(crate) struct Auto;

/// Whether `T` is one of the primitive number types (all `bytemuck::Pod`).
fn is_primitive<T: 'static>() -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    macro_rules! any_of { ($($p:ty),*) => { false $(|| t == TypeId::of::<$p>())* }; }
    any_of!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64)
}

// SAFETY: `plain_size` is `Some` only for the primitive number types, which are `Pod`; for them
// `encode` writes exactly the value's bytes.
unsafe impl<T: Serialize + DeserializeOwned + 'static> Wire<T> for Auto {
    #[inline]
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(bytes) = (v as &dyn std::any::Any).downcast_ref::<Vec<u8>>() {
            put_bytes(out, bytes);
            return Ok(());
        }
        if is_primitive::<T>() {
            // SAFETY: `T` is a primitive number type: `size_of::<T>()` initialised bytes, no
            // padding.
            let b = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) };
            out.extend_from_slice(b);
            return Ok(());
        }
        <Serde as Wire<T>>::encode(v, out)
    }

    #[inline]
    fn encode_at(v: &T, c: &mut fixint::Cursor<'_>) -> Result<(), String> {
        if is_primitive::<T>() {
            // SAFETY: as in `encode`.
            c.put(unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) });
            return Ok(());
        }
        if is_buffer::<T>() {
            return c.with_vec(|out| Self::encode(v, out));
        }
        <Serde as Wire<T>>::encode_at(v, c)
    }

    #[inline]
    fn encode_owned(v: T, out: &mut ChunkBytes) -> Result<Option<T>, String> {
        let bytes = match cast::<T, Vec<u8>>(v) {
            Err(v) => return Self::encode(&v, &mut out.inline).map(|()| Some(v)),
            Ok(bytes) => bytes,
        };
        if bytes.len() >= BLOB_MIN {
            put_u64(&mut out.inline, bytes.len() as u64);
            out.push_blob(bytes);
            return Ok(None);
        }
        put_bytes(&mut out.inline, &bytes);
        Ok(cast::<Vec<u8>, T>(bytes).ok())
    }

    #[inline]
    fn decode_reusing(input: &mut &[u8], spare: Vec<u8>) -> Result<T, String> {
        if is_buffer::<T>() {
            let mut rest = *input;
            let bytes = take_bytes(&mut rest)?;
            // ASCII (checked a word at a time) is UTF-8; anything else gets the full check.
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<String>()
                && !bytes.is_ascii()
                && let Err(e) = std::str::from_utf8(bytes)
            {
                return Err(format!("invalid UTF-8: {e}"));
            }
            let mut buf = if spare.capacity() <= 2 * bytes.len() + 64 { spare } else { Vec::new() };
            buf.clear();
            extend_short(&mut buf, bytes);
            *input = rest;
            // SAFETY: the bytes were checked to be UTF-8 if `T` is `String`.
            return Ok(unsafe { from_buffer(buf) }.expect("T is String or Vec<u8>"));
        }
        drop(spare);
        Self::decode(input)
    }

    fn reuses_buffers() -> bool {
        is_buffer::<T>()
    }

    #[inline]
    fn decode(input: &mut &[u8]) -> Result<T, String> {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<u8>>() {
            let mut rest = *input;
            let v = take_bytes(&mut rest)?.to_vec();
            *input = rest;
            return Ok(cast::<Vec<u8>, T>(v).expect("T is Vec<u8>"));
        }
        if is_primitive::<T>() {
            let n = std::mem::size_of::<T>();
            let Some(bytes) = input.get(..n) else { return Err("truncated plain value".into()) };
            // SAFETY: `n` readable bytes; `T` is a primitive number type, valid for any bits;
            // unaligned read.
            let v = unsafe { bytes.as_ptr().cast::<T>().read_unaligned() };
            *input = &input[n..];
            return Ok(v);
        }
        <Serde as Wire<T>>::decode(input)
    }

    fn plain_size() -> Option<usize> {
        is_primitive::<T>().then(std::mem::size_of::<T>)
    }
}

/// Moves `v` out as a `U` when `T` is `U` (the same type: the value is taken as itself, once).
#[inline]
fn cast<T: 'static, U: 'static>(v: T) -> Result<U, T> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<U>() {
        return Err(v);
    }
    let v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `T` and `U` are the same type (same TypeId), and `v` is not dropped.
    Ok(unsafe { std::mem::transmute_copy::<T, U>(&v) })
}

/// Whether `T` is `String` or `Vec<u8>`: a value that can be built in a kept buffer.
pub(crate) fn is_buffer<T: 'static>() -> bool {
    let t = std::any::TypeId::of::<T>();
    t == std::any::TypeId::of::<String>() || t == std::any::TypeId::of::<Vec<u8>>()
}

/// A `String`'s or `Vec<u8>`'s heap buffer, moved out of it; any other value back as it is.
/// (The caller keeps only buffers shorter than [`BLOB_MIN`].)
#[inline]
pub(crate) fn into_buffer<T: 'static>(v: T) -> Result<Vec<u8>, T> {
    let v = match cast::<T, String>(v) {
        Ok(s) => return Ok(s.into_bytes()),
        Err(v) => v,
    };
    cast::<T, Vec<u8>>(v)
}

/// A buffer as a `T` that is `Vec<u8>` or `String`; `None` for any other `T`.
///
/// # Safety
/// If `T` is `String`, the bytes are UTF-8.
#[inline]
pub(crate) unsafe fn from_buffer<T: 'static>(b: Vec<u8>) -> Option<T> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<String>() {
        // SAFETY: UTF-8, by the caller's promise.
        return cast::<String, T>(unsafe { String::from_utf8_unchecked(b) }).ok();
    }
    cast::<Vec<u8>, T>(b).ok()
}

/// Reads a byte string as [`Serde`] lays it out (a `u64` length, then the bytes), borrowed.
#[inline]
fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let Some(n) = input.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return Err("truncated length".into());
    };
    let n = usize::try_from(n).map_err(|_| format!("length {n} out of range"))?;
    let Some(bytes) = input.get(8..).and_then(|b| b.get(..n)) else { return Err("truncated bytes".into()) };
    *input = &input[8 + n..];
    Ok(bytes)
}

/// Encodes a panic or error message, cut to [`MAX_MESSAGE`] bytes.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len().min(MAX_MESSAGE);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    put_bytes(out, &s.as_bytes()[..n]);
}

pub(crate) fn get_str(input: &mut &[u8]) -> String {
    let n = get_u64(input) as usize;
    let s = input.get(..n).map_or_else(|| "(message truncated)".to_owned(), |b| String::from_utf8_lossy(b).into());
    *input = input.get(n..).unwrap_or(&[]);
    s
}

/// A byte string as [`Serde`] lays it out: a `u64` length, then the bytes (the one writer of
/// that layout: serde's byte strings, `Auto`'s byte vectors, the feeding loop's kept strings,
/// messages).
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(8 + b.len());
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    extend_short(out, b);
}

/// `out.extend_from_slice(src)`, with a string of up to 32 bytes copied by two (overlapping)
/// word moves instead of a call to `memcpy`: a map over short strings copies each one twice in
/// the calling process (into its chunk, into its result) and twice in a worker, and those calls
/// were about a tenth of the map's time.
#[inline]
pub(crate) fn extend_short(out: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    if !(4..=32).contains(&n) {
        out.extend_from_slice(src);
        return;
    }
    out.reserve(n);
    let len = out.len();
    // SAFETY: `reserve` made room for `n` bytes after `len`, and `src` has `n` readable bytes.
    // Each pair of moves covers `[0, n)` (the second ends at `n`, overlapping the first when
    // `n` is less than twice the word), and no move reaches outside it: for `16 ≤ n ≤ 32` the
    // words are 16 bytes, for `8 ≤ n < 16` 8 bytes, for `4 ≤ n < 8` 4 bytes. Unaligned moves;
    // `src` and the vector's spare room do not overlap (`src` is borrowed while `out` is
    // borrowed mutably). All `n` bytes are then initialised.
    unsafe {
        let (s, d) = (src.as_ptr(), out.as_mut_ptr().add(len));
        if n >= 16 {
            let (a, b) = (s.cast::<[u8; 16]>().read_unaligned(), s.add(n - 16).cast::<[u8; 16]>().read_unaligned());
            d.cast::<[u8; 16]>().write_unaligned(a);
            d.add(n - 16).cast::<[u8; 16]>().write_unaligned(b);
        } else if n >= 8 {
            let (a, b) = (s.cast::<u64>().read_unaligned(), s.add(n - 8).cast::<u64>().read_unaligned());
            d.cast::<u64>().write_unaligned(a);
            d.add(n - 8).cast::<u64>().write_unaligned(b);
        } else {
            let (a, b) = (s.cast::<u32>().read_unaligned(), s.add(n - 4).cast::<u32>().read_unaligned());
            d.cast::<u32>().write_unaligned(a);
            d.add(n - 4).cast::<u32>().write_unaligned(b);
        }
        out.set_len(len + n);
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn get_u64(input: &mut &[u8]) -> u64 {
    let Some(b) = input.get(..8) else {
        *input = &[];
        return 0;
    };
    let v = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    *input = &input[8..];
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_copies_append_exactly_the_bytes_at_every_length_and_offset() {
        let src: Vec<u8> = (0..80u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
        for n in 0..=40 {
            for off in 0..5 {
                for before in [0, 3, 17] {
                    let mut out = vec![0xEEu8; before];
                    out.reserve_exact(1); // a vector with little spare room, to make it grow
                    extend_short(&mut out, &src[off..off + n]);
                    let mut want = vec![0xEEu8; before];
                    want.extend_from_slice(&src[off..off + n]);
                    assert_eq!(out, want, "n {n} offset {off} after {before}");
                }
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        put_bytes(&mut a, b"twenty bytes or so..");
        <Serde as Wire<String>>::encode(&"twenty bytes or so..".to_owned(), &mut b).unwrap();
        assert_eq!(a, b, "the feeding loop lays a string out as serde does");
    }

    #[test]
    fn auto_lays_out_bytes_and_numbers_as_serde_and_plain_do() {
        for v in [vec![], vec![7u8; 5], vec![1u8; 300], vec![2u8; 70_000]] {
            let (mut a, mut p) = (Vec::new(), Vec::new());
            <Auto as Wire<Vec<u8>>>::encode(&v, &mut a).unwrap();
            <Serde as Wire<Vec<u8>>>::encode(&v, &mut p).unwrap();
            assert_eq!(a, p, "len {}", v.len());
            assert_eq!(<Auto as Wire<Vec<u8>>>::decode(&mut &a[..]).unwrap(), v);
        }
        let mut a = Vec::new();
        <Auto as Wire<u64>>::encode(&0x0102_0304_0506_0708, &mut a).unwrap();
        assert_eq!(a, 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(<Auto as Wire<u64>>::plain_size(), Some(8));
        assert_eq!(<Auto as Wire<String>>::plain_size(), None);
        assert!(<Auto as Wire<Vec<u8>>>::decode(&mut &[5u8, 0, 0][..]).is_err(), "truncated length");
        assert!(<Auto as Wire<Vec<u8>>>::decode(&mut &[5u8, 0, 0, 0, 0, 0, 0, 0, 1][..]).is_err(), "truncated bytes");
    }

    #[test]
    fn a_string_or_bytes_result_is_built_in_its_arguments_buffer_and_checked() {
        let mut rec = Vec::new();
        for v in ["item number 00000007", "", "naïve ✓ and a good deal longer than the buffer it is given"] {
            <Serde as Wire<String>>::encode(&v.to_owned(), &mut rec).unwrap();
        }
        let mut input = &rec[..];
        let spare = String::from("an argument of twenty").into_bytes();
        let at = spare.as_ptr();
        let s = <Auto as Wire<String>>::decode_reusing(&mut input, spare).unwrap();
        assert_eq!((s.as_str(), s.as_ptr()), ("item number 00000007", at), "built in the argument's buffer");
        assert_eq!(<Auto as Wire<String>>::decode_reusing(&mut input, Vec::new()).unwrap(), "");
        let long = <Auto as Wire<String>>::decode_reusing(&mut input, vec![b'x'; 4]).unwrap();
        assert!(long.starts_with("naïve ✓") && input.is_empty(), "grown when the buffer is short");
        // Bytes that are not UTF-8 are refused, and the input is left where it was.
        let mut bad = Vec::new();
        put_u64(&mut bad, 2);
        bad.extend_from_slice(&[0xC3, 0x28]);
        let mut input = &bad[..];
        let e = <Auto as Wire<String>>::decode_reusing(&mut input, vec![0; 8]).unwrap_err();
        assert!(e.contains("invalid UTF-8") && input.len() == bad.len(), "{e}");
        assert!(<Auto as Wire<String>>::decode_reusing(&mut &bad[..9], Vec::new()).is_err(), "truncated");
        // A byte vector likewise; any other type drops the buffer and decodes as usual.
        let mut b = Vec::new();
        <Serde as Wire<Vec<u8>>>::encode(&vec![9u8; 5], &mut b).unwrap();
        assert_eq!(<Auto as Wire<Vec<u8>>>::decode_reusing(&mut &b[..], vec![1; 64]).unwrap(), vec![9u8; 5]);
        let mut n = Vec::new();
        <Auto as Wire<u64>>::encode(&77, &mut n).unwrap();
        assert_eq!(<Auto as Wire<u64>>::decode_reusing(&mut &n[..], vec![1; 64]).unwrap(), 77);
        // Which arguments have a buffer to keep.
        assert_eq!(into_buffer(String::from("ab")).unwrap(), b"ab");
        assert_eq!(into_buffer(vec![3u8]).unwrap(), [3]);
        assert_eq!(into_buffer(5u64).unwrap_err(), 5);
    }

    #[test]
    fn a_chunk_with_blobs_is_the_concatenation_and_splits_and_rolls_back_at_marks() {
        let mut c = ChunkBytes::default();
        <Auto as Wire<Vec<u8>>>::encode_owned(vec![1u8; 3], &mut c).unwrap();
        let m = c.mark();
        <Auto as Wire<Vec<u8>>>::encode_owned(vec![2u8; BLOB_MIN], &mut c).unwrap();
        <Auto as Wire<u64>>::encode_owned(9, &mut c).unwrap();
        assert_eq!(c.blobs.len(), 1, "the large one moved in whole");
        let mut flat = Vec::new();
        for v in [vec![1u8; 3], vec![2u8; BLOB_MIN]] {
            <Serde as Wire<Vec<u8>>>::encode(&v, &mut flat).unwrap();
        }
        flat.extend_from_slice(&9u64.to_ne_bytes());
        let mut out = vec![0u8; c.len()];
        c.copy_to(&mut out);
        assert_eq!(out, flat);
        let tail = c.split_off(m);
        assert_eq!((c.len(), tail.len()), (11, flat.len() - 11));
        let mut again = ChunkBytes::default();
        again.append(tail);
        let mut out = vec![0u8; again.len()];
        again.copy_to(&mut out);
        assert_eq!(out, flat[11..]);
        let mut d = ChunkBytes::default();
        d.append(ChunkBytes::default());
        <Auto as Wire<Vec<u8>>>::encode_owned(vec![3u8; BLOB_MIN], &mut d).unwrap();
        d.truncate(Mark { inline: 0, blobs: 0, blob_len: 0 });
        assert_eq!((d.len(), d.blobs.len()), (0, 0));
    }

    #[test]
    fn headers_round_trip_through_unaligned_bytes_and_short_records_are_refused() {
        let h = ResultHeader { job: 3, first: 70, count: 9, exceptions: 0, ok_len: 0, seq: 1, busy_ns: 0 };
        let mut b = vec![0xAAu8];
        b.extend_from_slice(bytemuck::bytes_of(&h));
        let back: ResultHeader = read_header(&b[1..]).unwrap();
        assert_eq!((back.job, back.first, back.count), (3, 70, 9));
        assert!(read_header::<ResultHeader>(&b[1..RESULT_HDR]).is_none());
        let mut s = Vec::new();
        put_str(&mut s, "boom");
        assert_eq!(get_str(&mut &s[..]), "boom");
        assert_eq!(get_str(&mut &s[..10]), "(message truncated)");
    }
}

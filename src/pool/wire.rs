//! What crosses the rings: record headers, per-item tags, and the two codecs.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::shm::Plain as PlainData;

/// In-ring record kinds (parent → worker).
pub(crate) const TASK: u32 = 1;
pub(crate) const STOP: u32 = 2;
/// Out-ring record kind (worker → parent).
pub(crate) const RESULTS: u32 = 1;

/// Per-item tags in a results record.
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const TOO_LARGE: u8 = 2;
pub(crate) const UNDECODABLE: u8 = 3;

/// A chunk of tasks: items `start..end` of the `count` items encoded after the header, whose
/// item 0 is task `first` of job `job`. `tramp` runs them with the task function `func`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct TaskHeader {
    pub job: u64,
    pub first: u64,
    pub start: u32,
    pub end: u32,
    pub tramp: usize,
    pub func: usize,
}

/// Results of tasks `first..first+count` of job `job`, as tagged items.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct ResultHeader {
    pub job: u64,
    pub first: u64,
    pub count: u32,
    pub _pad: u32,
}

pub(crate) const TASK_HDR: usize = std::mem::size_of::<TaskHeader>();
pub(crate) const RESULT_HDR: usize = std::mem::size_of::<ResultHeader>();

/// Reads a `Copy` header from the front of `bytes` (which the caller checked is long enough).
pub(crate) fn read_header<H: Copy>(bytes: &[u8]) -> H {
    assert!(bytes.len() >= std::mem::size_of::<H>(), "record shorter than its header");
    // SAFETY: at least size_of::<H>() bytes; read_unaligned has no alignment requirement; the
    // headers are plain integers, valid for any bytes.
    unsafe { bytes.as_ptr().cast::<H>().read_unaligned() }
}

/// Writes a header's bytes.
pub(crate) fn header_bytes<H: Copy>(h: &H) -> &[u8] {
    // SAFETY: a `repr(C)` struct of integers without padding viewed as its bytes.
    unsafe { std::slice::from_raw_parts((h as *const H).cast::<u8>(), std::mem::size_of::<H>()) }
}

/// How values are turned into bytes and back.
pub(crate) trait Wire<T> {
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String>;
    fn decode(input: &mut &[u8]) -> Result<T, String>;
}

/// serde + postcard: any `Serialize + DeserializeOwned` type.
pub(crate) struct Postcard;

impl<T: Serialize + DeserializeOwned> Wire<T> for Postcard {
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let buf = std::mem::take(out);
        *out = postcard::to_extend(v, buf).map_err(|e| format!("cannot encode: {e}"))?;
        Ok(())
    }

    fn decode(input: &mut &[u8]) -> Result<T, String> {
        let (v, rest) = postcard::take_from_bytes(input).map_err(|e| format!("cannot decode: {e}"))?;
        *input = rest;
        Ok(v)
    }
}

/// The copy-free path: plain data (`Plain`) is copied as its bytes, no encoding.
pub(crate) struct Plain;

impl<T: PlainData> Wire<T> for Plain {
    fn encode(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(header_bytes(v));
        Ok(())
    }

    fn decode(input: &mut &[u8]) -> Result<T, String> {
        let n = std::mem::size_of::<T>();
        if input.len() < n {
            return Err("truncated plain value".into());
        }
        // SAFETY: n bytes are there; T is plain data (Plain: no pointers, any bytes written by
        // the same type in the same binary are a valid T), read without alignment assumptions.
        let v = unsafe { input.as_ptr().cast::<T>().read_unaligned() };
        *input = &input[n..];
        Ok(v)
    }
}

/// Encodes a panic/too-large message or size after its tag.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let _ = <Postcard as Wire<String>>::encode(&s.to_owned(), out);
}

pub(crate) fn get_str(input: &mut &[u8]) -> String {
    <Postcard as Wire<String>>::decode(input).unwrap_or_else(|e| e)
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn get_u64(input: &mut &[u8]) -> u64 {
    if input.len() < 8 {
        return 0;
    }
    let v = u64::from_le_bytes(input[..8].try_into().expect("8 bytes"));
    *input = &input[8..];
    v
}

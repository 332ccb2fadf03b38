//! What crosses the rings: record kinds and headers (plain data, read with bytemuck), per-item
//! tags, and the two codecs (serde/postcard, and plain bytes).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::task::TaskFn;

/// In-ring record kinds (parent → worker).
pub(crate) const TASK: u32 = 1;
pub(crate) const STOP: u32 = 2;
/// The per-call value of a job ([`crate::Pool::map_with`]): a [`JobHeader`] and its bytes.
pub(crate) const CALL_ARG: u32 = 3;
/// The job is over: the worker drops its per-call value. A [`JobHeader`].
pub(crate) const JOB_END: u32 = 4;
/// Out-ring record kind (worker → parent).
pub(crate) const RESULTS: u32 = 1;

/// Per-item tags in a results record.
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const TOO_LARGE: u8 = 2;
/// The argument could not be decoded in the worker (message follows).
pub(crate) const UNDECODABLE: u8 = 3;
/// The result could not be encoded in the worker (message follows).
pub(crate) const UNENCODABLE: u8 = 4;

/// A chunk of tasks: items `start..end` of the items encoded after the header, whose item 0 is
/// task `first` of job `job`, each run by `task`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct TaskHeader {
    pub job: u64,
    pub first: u64,
    pub start: u32,
    pub end: u32,
    pub task: TaskFn,
}

/// Results of tasks `first..first+count` of job `job`, as tagged items.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct ResultHeader {
    pub job: u64,
    pub first: u64,
    pub count: u32,
    /// Zero. Room for a chunk-level status (all items OK, so no per-item tags).
    pub reserved: u32,
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
    assert!(size_of::<TaskHeader>() == 8 + 8 + 4 + 4 + size_of::<TaskFn>());
    assert!(size_of::<ResultHeader>() == 8 + 8 + 4 + 4);
    assert!(size_of::<JobHeader>() == 8);
};

pub(crate) const TASK_HDR: usize = std::mem::size_of::<TaskHeader>();
pub(crate) const RESULT_HDR: usize = std::mem::size_of::<ResultHeader>();
pub(crate) const JOB_HDR: usize = std::mem::size_of::<JobHeader>();

/// Reads a header from the front of a record: `None` if the record is shorter than the header.
pub(crate) fn read_header<H: bytemuck::Pod>(bytes: &[u8]) -> Option<H> {
    bytes.get(..std::mem::size_of::<H>()).map(bytemuck::pod_read_unaligned)
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
        match postcard::to_extend(v, buf) {
            Ok(b) => {
                *out = b;
                Ok(())
            }
            // postcard drops the message of `S::Error::custom` ("Serde Serialization Error"):
            // run the value through the probe, which keeps it. Only on failure: no cost otherwise.
            Err(e) => Err(probe::message(v).unwrap_or_else(|| e.to_string())),
        }
    }

    fn decode(input: &mut &[u8]) -> Result<T, String> {
        let (v, rest) = postcard::take_from_bytes(input).map_err(|e| e.to_string())?;
        *input = rest;
        Ok(v)
    }
}

/// The copy-free path: plain data ([`crate::Plain`]: no padding, every bit pattern valid) is
/// copied as its bytes, no encoding.
pub(crate) struct Plain;

impl<T: crate::Plain> Wire<T> for Plain {
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
}

/// Encodes a panic or error message after its tag.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn get_str(input: &mut &[u8]) -> String {
    let n = get_u64(input) as usize;
    let s = input.get(..n).map_or_else(|| "(message truncated)".to_owned(), |b| String::from_utf8_lossy(b).into());
    *input = input.get(n..).unwrap_or(&[]);
    s
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

/// A serializer that writes nothing and keeps the message of the first error: what postcard
/// loses.
mod probe {
    use serde::ser::{self, Serialize};
    use std::fmt;

    #[derive(Debug)]
    pub(super) struct Msg(String);

    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Msg {}

    impl ser::Error for Msg {
        fn custom<T: fmt::Display>(msg: T) -> Self {
            Msg(msg.to_string())
        }
    }

    /// The message the value's `Serialize` fails with, if it fails.
    pub(super) fn message<T: Serialize + ?Sized>(v: &T) -> Option<String> {
        v.serialize(Probe).err().map(|m| m.0)
    }

    struct Probe;

    type R = Result<(), Msg>;

    macro_rules! scalars {
        ($($f:ident: $t:ty),* $(,)?) => { $( fn $f(self, _: $t) -> R { Ok(()) } )* };
    }

    impl ser::Serializer for Probe {
        type Ok = ();
        type Error = Msg;
        type SerializeSeq = Probe;
        type SerializeTuple = Probe;
        type SerializeTupleStruct = Probe;
        type SerializeTupleVariant = Probe;
        type SerializeMap = Probe;
        type SerializeStruct = Probe;
        type SerializeStructVariant = Probe;

        scalars!(
            serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
            serialize_f64: f64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
            serialize_unit_struct: &'static str,
        );

        fn serialize_none(self) -> R {
            Ok(())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R {
            v.serialize(self)
        }
        fn serialize_unit(self) -> R {
            Ok(())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> R {
            Ok(())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> R {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            v: &T,
        ) -> R {
            v.serialize(self)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_tuple(self, _: usize) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Probe, Msg> {
            Ok(self)
        }
        fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Probe, Msg> {
            Ok(self)
        }
    }

    macro_rules! compound {
        ($($tr:ident :: $f:ident ($($k:ty),*)),* $(,)?) => { $(
            impl ser::$tr for Probe {
                type Ok = ();
                type Error = Msg;
                fn $f<T: Serialize + ?Sized>(&mut self, $(_: $k,)* v: &T) -> R {
                    v.serialize(Probe)
                }
                fn end(self) -> R {
                    Ok(())
                }
            }
        )* };
    }

    compound!(
        SerializeSeq::serialize_element(),
        SerializeTuple::serialize_element(),
        SerializeTupleStruct::serialize_field(),
        SerializeTupleVariant::serialize_field(),
        SerializeStruct::serialize_field(&'static str),
        SerializeStructVariant::serialize_field(&'static str),
    );

    impl ser::SerializeMap for Probe {
        type Ok = ();
        type Error = Msg;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> R {
            k.serialize(Probe)
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
            v.serialize(Probe)
        }
        fn end(self) -> R {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoNan(f64);

    impl Serialize for NoNan {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0.is_nan() {
                return Err(serde::ser::Error::custom("no NaN allowed"));
            }
            s.serialize_f64(self.0)
        }
    }

    #[test]
    fn an_encode_failure_keeps_the_serializers_own_message() {
        let v = vec![(1u8, vec![NoNan(1.0), NoNan(f64::NAN)])];
        let mut out = Vec::new();
        assert!(postcard::to_extend(&v, Vec::new()).unwrap_err().to_string().contains("Serde"), "postcard loses it");
        // Wire needs DeserializeOwned; the probe itself does not.
        assert_eq!(probe::message(&v).as_deref(), Some("no NaN allowed"));
        assert_eq!(probe::message(&vec![(1u8, vec![NoNan(1.0)])]), None);
        <Postcard as Wire<String>>::encode(&"ok".to_owned(), &mut out).unwrap();
        assert_eq!(<Postcard as Wire<String>>::decode(&mut &out[..]).unwrap(), "ok");
    }

    #[test]
    fn headers_round_trip_through_unaligned_bytes_and_short_records_are_refused() {
        let h = ResultHeader { job: 3, first: 70, count: 9, reserved: 0 };
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

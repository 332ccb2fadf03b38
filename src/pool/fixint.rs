//! The Pool's serde format: fixed-width little-endian numbers, `u64` lengths, no varints, no
//! tags beyond what the data model needs (an `Option`'s byte, an enum's `u32` variant index).
//!
//! Why not postcard (which the Queue and Pipe use): the Pool's bytes never leave one build of one
//! program (the parent and its forks), so compactness buys nothing there, while a varint costs a
//! loop per number and postcard's per-value set-up and its output flavours cost more than the
//! value itself for small items — the parent's encode and decode were 120 of its ~250
//! instructions per `u64`-newtype item. Here a number is one bounds-checked store or load,
//! inlined into the caller. Not self-describing (`deserialize_any` is an error), like postcard
//! and bincode: the reader knows the type.
//!
//! Layout: `bool` one byte (0 or 1); integers and floats their little-endian bytes; `char` as
//! `u32`; strings and byte strings a `u64` length and the bytes; `Option` a byte (0: `None`,
//! 1: `Some`) then the value; unit and unit structs nothing; a newtype its inner value; sequences
//! and maps a `u64` count then their elements (the count is patched in afterwards when serde
//! does not know it up front); tuples and structs their fields in order; enum variants a `u32`
//! index then their content. A `Vec<u8>` is therefore its `u64` length and its bytes, which is
//! what [`crate::pool::wire::Auto`] copies in one piece.
//!
//! Like bincode's and postcard's, the format cannot carry what needs a self-describing one:
//! `#[serde(flatten)]`, untagged enums, `skip_serializing_if` (the reader does not know a field
//! was left out) and `deserialize_any`/`deserialize_identifier` are errors or misreads. A
//! sequence of zero-sized elements whose count was corrupted would be read for that many
//! elements: the Pool's own records are written by its own processes, never by another program.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// An encoding or decoding failure, with the message serde (or this format) gave.
#[derive(Debug)]
pub(crate) struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Appends `v`'s encoding to `out`. On failure `out` is as it was.
#[inline]
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<()> {
    let mut c = Cursor::new(out);
    encode_at(v, &mut c)?;
    c.keep();
    Ok(())
}

/// Appends `v`'s encoding at `c`. On failure `c` holds part of it (the caller truncates).
#[inline]
pub(crate) fn encode_at<T: Serialize + ?Sized>(v: &T, c: &mut Cursor<'_>) -> Result<()> {
    v.serialize(&mut Ser { out: c })
}

/// Bytes appended to a vector through its spare room: written at a length kept here (in a
/// register, in a loop over items), not the vector's, which is set once — to the bytes
/// [`Cursor::keep`] last kept — when the cursor is dropped, also by a panic. Appending through
/// the vector itself reloaded and stored its length, and checked its capacity, per value (a
/// store of a byte into the vector may, to the compiler, have changed its length).
pub(crate) struct Cursor<'v> {
    vec: &'v mut Vec<u8>,
    ptr: *mut u8,
    cap: usize,
    len: usize,
    kept: usize,
}

impl<'v> Cursor<'v> {
    pub(crate) fn new(vec: &'v mut Vec<u8>) -> Self {
        let (ptr, cap, len) = (vec.as_mut_ptr(), vec.capacity(), vec.len());
        Cursor { vec, ptr, cap, len, kept: len }
    }

    /// Bytes written (the vector's length once kept).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps every byte written so far: the vector's length when the cursor is dropped.
    #[inline]
    pub(crate) fn keep(&mut self) {
        self.kept = self.len;
    }

    /// Drops what was written after the first `len` bytes (`len` at least the bytes kept).
    #[inline]
    pub(crate) fn truncate(&mut self, len: usize) {
        debug_assert!(self.kept <= len && len <= self.len);
        self.len = len.clamp(self.kept, self.len);
    }

    /// The bytes written from `from` on (`from` at most [`Cursor::len`]).
    pub(crate) fn written_from(&self, from: usize) -> &[u8] {
        assert!(from <= self.len, "inside what was written");
        // SAFETY: the first `len` bytes of the allocation are initialised (each `put` wrote
        // them); `from..len` is within them.
        unsafe { std::slice::from_raw_parts(self.ptr.add(from), self.len - from) }
    }

    /// Appends `b`.
    #[inline]
    pub(crate) fn put(&mut self, b: &[u8]) {
        if self.cap - self.len < b.len() {
            // The cursor's own fields go by value (its address escaping into a call would keep
            // them in memory, not registers, for the whole loop).
            (self.ptr, self.cap) = grow(self.vec, self.len, b.len());
        }
        // SAFETY: `cap - len >= b.len()` (grown if not): the bytes fit in the allocation, after
        // those written; `b` is another object's memory.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(self.len), b.len()) };
        self.len += b.len();
    }

    /// Runs `f` on the vector itself, holding the bytes written so far (an encoder that appends
    /// to a vector); the cursor goes on after what `f` appended.
    pub(crate) fn with_vec<R>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        // SAFETY: the first `len` bytes are initialised (written by `put`), within capacity.
        unsafe { self.vec.set_len(self.len) };
        let r = f(self.vec);
        (self.ptr, self.cap, self.len) = (self.vec.as_mut_ptr(), self.vec.capacity(), self.vec.len());
        self.kept = self.kept.min(self.len);
        r
    }

    /// Overwrites bytes already written, at `at`.
    fn patch(&mut self, at: usize, b: &[u8]) {
        assert!(at + b.len() <= self.len, "a patch inside what was written");
        // SAFETY: `at..at + b.len()` lies inside the bytes written (asserted).
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(at), b.len()) };
    }
}

/// Room for `n` more bytes after the first `len` (written) of `vec`: its new address and
/// capacity.
#[cold]
#[inline(never)]
fn grow(vec: &mut Vec<u8>, len: usize, n: usize) -> (*mut u8, usize) {
    // SAFETY: the first `len` bytes are initialised (written by `Cursor::put`), within capacity.
    unsafe { vec.set_len(len) };
    vec.reserve(n);
    (vec.as_mut_ptr(), vec.capacity())
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        // SAFETY: `kept <= len`, and the first `len` bytes are initialised, within capacity.
        unsafe { self.vec.set_len(self.kept) };
    }
}

/// Decodes a `T` from the front of `input` and advances it past the bytes used.
#[inline]
pub(crate) fn decode<'de, T: de::Deserialize<'de>>(input: &mut &'de [u8]) -> Result<T> {
    let mut d = De { input };
    T::deserialize(&mut d)
}

struct Ser<'a, 'v> {
    out: &'a mut Cursor<'v>,
}

impl Ser<'_, '_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.out.put(b);
    }

    #[inline]
    fn len(&mut self, n: usize) {
        self.put(&(n as u64).to_le_bytes());
    }
}

/// Starts a sequence or map: its count, patched by [`Compound::end`] with the number of
/// elements really written (a `Serialize` that announces one length and writes another would
/// otherwise leave a count that misreads everything after it).
fn compound<'s, 'a, 'v>(ser: &'s mut Ser<'a, 'v>, len: Option<usize>) -> Compound<'s, 'a, 'v> {
    let at = ser.out.len();
    ser.len(len.unwrap_or(0));
    Compound { ser, patch: at, count: 0 }
}

macro_rules! le {
    ($($f:ident: $t:ty),* $(,)?) => { $(
        #[inline]
        fn $f(self, v: $t) -> Result<()> {
            self.put(&v.to_le_bytes());
            Ok(())
        }
    )* };
}

impl<'s, 'a, 'v> ser::Serializer for &'s mut Ser<'a, 'v> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a, 'v>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Compound<'s, 'a, 'v>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    le!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64,
    );

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.put(&[u8::from(v)]);
        Ok(())
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.put(&[v]);
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<()> {
        self.serialize_u32(u32::from(v))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.out.put(&(v.len() as u64).to_le_bytes());
        self.out.put(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.put(&[0]);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<()> {
        self.out.put(&[1]);
        v.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.serialize_u32(index)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<()> {
        v.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        v: &T,
    ) -> Result<()> {
        self.serialize_u32(index)?;
        v.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'s, 'a, 'v>> {
        Ok(compound(self, len))
    }

    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(self, _: &'static str, index: u32, _: &'static str, _: usize) -> Result<Self> {
        self.put(&index.to_le_bytes());
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'s, 'a, 'v>> {
        Ok(compound(self, len))
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(self, _: &'static str, index: u32, _: &'static str, _: usize) -> Result<Self> {
        self.put(&index.to_le_bytes());
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A sequence or map being written: its elements follow the count; `patch` is where the count
/// goes once known.
pub(crate) struct Compound<'s, 'a, 'v> {
    ser: &'s mut Ser<'a, 'v>,
    patch: usize,
    count: u64,
}

impl Compound<'_, '_, '_> {
    fn end(self) -> Result<()> {
        let at = self.patch;
        self.ser.out.patch(at, &self.count.to_le_bytes());
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.count += 1;
        v.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<()> {
        self.count += 1;
        k.serialize(&mut *self.ser)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        v.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

/// Tuples, structs and variants: fields in order, nothing else.
macro_rules! fields {
    ($($tr:ident :: $f:ident ($($k:ty),*)),* $(,)?) => { $(
        impl ser::$tr for &mut Ser<'_, '_> {
            type Ok = ();
            type Error = Error;

            #[inline]
            fn $f<T: Serialize + ?Sized>(&mut self, $(_: $k,)* v: &T) -> Result<()> {
                v.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )* };
}

fields!(
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(&'static str),
    SerializeStructVariant::serialize_field(&'static str),
);

struct De<'i, 'de> {
    input: &'i mut &'de [u8],
}

impl<'de> De<'_, 'de> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        let input: &'de [u8] = self.input;
        if n > input.len() {
            return Err(Error(format!("truncated: {n} bytes wanted, {} left", input.len())));
        }
        let (a, b) = input.split_at(n);
        *self.input = b;
        Ok(a)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    #[inline]
    fn len(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.array()?);
        // No bound from the input's size (a unit element takes no byte); readers bound what
        // they reserve (see `Counted::size_hint`).
        usize::try_from(n).map_err(|_| Error(format!("length {n} out of range")))
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    fn variant_index(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

macro_rules! de_le {
    ($($f:ident: $t:ty => $visit:ident),* $(,)?) => { $(
        #[inline]
        fn $f<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
            v.$visit(<$t>::from_le_bytes(self.array()?))
        }
    )* };
}

impl<'de> de::Deserializer<'de> for &mut De<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Error("the Pool's format is not self-describing: deserialize_any is not supported".into()))
    }

    de_le!(
        deserialize_i8: i8 => visit_i8, deserialize_i16: i16 => visit_i16, deserialize_i32: i32 => visit_i32,
        deserialize_i64: i64 => visit_i64, deserialize_i128: i128 => visit_i128,
        deserialize_u8: u8 => visit_u8, deserialize_u16: u16 => visit_u16, deserialize_u32: u32 => visit_u32,
        deserialize_u64: u64 => visit_u64, deserialize_u128: u128 => visit_u128,
        deserialize_f32: f32 => visit_f32, deserialize_f64: f64 => visit_f64,
    );

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            b => Err(Error(format!("invalid bool byte {b}"))),
        }
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let c = u32::from_le_bytes(self.array()?);
        v.visit_char(char::from_u32(c).ok_or_else(|| Error(format!("invalid char {c:#x}")))?)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.len()?;
        let b = self.take(n)?;
        v.visit_borrowed_str(std::str::from_utf8(b).map_err(|e| Error(format!("invalid UTF-8: {e}")))?)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_str(v)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.len()?;
        v.visit_borrowed_bytes(self.take(n)?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_bytes(v)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            b => Err(Error(format!("invalid option byte {b}"))),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value> {
        v.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.len()?;
        v.visit_seq(Counted { de: self, left: n })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, n: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Counted { de: self, left: n })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, n: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Counted { de: self, left: n })
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.len()?;
        v.visit_map(Counted { de: self, left: n })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(Counted { de: self, left: fields.len() })
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], v: V) -> Result<V::Value> {
        v.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        // Structs are read as sequences and variants by index: a derived impl never asks for an
        // identifier, and this format never writes one.
        Err(Error("the Pool's format has no field or variant names (identifiers)".into()))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Error("the Pool's format cannot skip a value of unknown type".into()))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple, struct or map, `left` of them still to read.
struct Counted<'a, 'i, 'de> {
    de: &'a mut De<'i, 'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Counted<'_, '_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Bounded by the bytes left (an element of any type but a zero-sized one takes one at
        // least), so a corrupt count cannot make a visitor that trusts the hint allocate without
        // bound; serde's own collections cap it as well ("cautious").
        Some(self.left.min(self.de.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Counted<'_, '_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut De<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = self.variant_index()?;
        let v = seed.deserialize(index.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut De<'_, 'de> {
    type Error = Error;

    #[inline]
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, n: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Counted { de: self, left: n })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], v: V) -> Result<V::Value> {
        v.visit_seq(Counted { de: self, left: fields.len() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(i8, char),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Everything {
        b: bool,
        small: (u8, i16, u32, i64, u128, i128),
        f: (f32, f64),
        s: String,
        bytes: Vec<u8>,
        opt: Option<Box<Everything>>,
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<u16>>,
        unit: (),
        tag: Option<()>,
    }

    fn sample(depth: u32) -> Everything {
        Everything {
            b: depth.is_multiple_of(2),
            small: (255, -3, 70_000, -1 << 40, u128::MAX, i128::MIN),
            f: (1.5, -0.25),
            s: format!("héllo {depth}"),
            bytes: vec![depth as u8; depth as usize * 3],
            opt: (depth > 0).then(|| Box::new(sample(depth - 1))),
            shapes: vec![Shape::Empty, Shape::Circle(2.0), Shape::Rect { w: 3, h: 4 }, Shape::Pair(-1, 'ß')],
            map: (0..depth).map(|i| (i.to_string(), vec![i as u16; i as usize])).collect(),
            unit: (),
            tag: Some(()),
        }
    }

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) {
        let mut out = vec![0xEE]; // bytes before are kept
        encode(v, &mut out).unwrap();
        out.push(0x77); // and the decoder stops at the value's end
        let mut input = &out[1..];
        let back: T = decode(&mut input).unwrap();
        assert_eq!(&back, v);
        assert_eq!(input, &[0x77]);
    }

    #[test]
    fn every_shape_of_the_data_model_round_trips() {
        round_trip(&sample(3));
        round_trip(&42u64);
        round_trip(&"a str".to_owned());
        round_trip(&vec![Some(1u8), None]);
        round_trip(&(1u8..9).collect::<HashSet<u8>>());
        let mut out = Vec::new();
        encode(&0x0102_0304_0506_0708u64, &mut out).unwrap();
        assert_eq!(out, 0x0102_0304_0506_0708u64.to_le_bytes(), "a number is its little-endian bytes");
        out.clear();
        encode(&vec![7u8; 3], &mut out).unwrap();
        assert_eq!(out, [3, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7], "a Vec<u8> is a u64 length and its bytes");
    }

    /// A sequence whose length serde does not know up front: the count is patched in.
    struct Unsized(Vec<u32>);

    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(None)?;
            for x in &self.0 {
                seq.serialize_element(x)?;
            }
            seq.end()
        }
    }

    #[test]
    fn a_sequence_of_unknown_length_gets_its_count_afterwards() {
        let mut out = Vec::new();
        encode(&Unsized(vec![5, 6, 7]), &mut out).unwrap();
        assert_eq!(decode::<Vec<u32>>(&mut &out[..]).unwrap(), [5, 6, 7]);
    }

    #[test]
    fn truncated_or_invalid_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        encode(&sample(2), &mut out).unwrap();
        for cut in 0..out.len() {
            assert!(decode::<Everything>(&mut &out[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode::<bool>(&mut &[2u8][..]).unwrap_err().0.contains("bool"));
        assert!(decode::<char>(&mut &0xD800u32.to_le_bytes()[..]).is_err());
        assert!(decode::<String>(&mut &[1, 0, 0, 0, 0, 0, 0, 0, 0xFF][..]).unwrap_err().0.contains("UTF-8"));
        // A huge count with nothing behind it: an error, not a huge allocation.
        assert!(decode::<Vec<u64>>(&mut &[0xFF; 8][..]).is_err());
        assert!(decode::<Shape>(&mut &9u32.to_le_bytes()[..]).is_err(), "unknown variant");
    }

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no NaN allowed"))
        }
    }

    #[test]
    fn an_encode_failure_keeps_the_serializers_own_message() {
        let mut out = Vec::new();
        assert_eq!(encode(&vec![Refuses], &mut out).unwrap_err().0, "no NaN allowed");
    }
}

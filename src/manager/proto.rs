//! The Manager's wire protocol over a Unix stream socket.
//!
//! Handshake: the client sends the 32-byte auth key; the server answers one byte, `1`, or closes
//! the connection. Then request/response pairs:
//! - request: `op: u8`, `name_len: u16 LE`, `value_len: u32 LE`, name bytes, value bytes;
//! - response: `status: u8`, `value_len: u32 LE`, value bytes.

use std::io::{self, Read, Write};

pub(crate) const KEY_LEN: usize = 32;

pub(crate) const GET: u8 = 1;
pub(crate) const SET: u8 = 2;
pub(crate) const INCR: u8 = 3;

pub(crate) const OK: u8 = 0;
pub(crate) const MISSING: u8 = 1;
pub(crate) const BAD: u8 = 2;

/// Largest name and value the server accepts.
pub(crate) const MAX_NAME: usize = 1024;
pub(crate) const MAX_VALUE: usize = 64 << 20;

pub(crate) fn write_request(w: &mut impl Write, op: u8, name: &str, value: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(7 + name.len() + value.len());
    buf.push(op);
    buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(value);
    w.write_all(&buf)
}

pub(crate) fn read_request(r: &mut impl Read) -> io::Result<(u8, String, Vec<u8>)> {
    let mut h = [0u8; 7];
    r.read_exact(&mut h)?;
    let nlen = u16::from_le_bytes([h[1], h[2]]) as usize;
    let vlen = u32::from_le_bytes([h[3], h[4], h[5], h[6]]) as usize;
    if nlen > MAX_NAME || vlen > MAX_VALUE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request too large"));
    }
    let mut name = vec![0u8; nlen];
    r.read_exact(&mut name)?;
    let mut value = vec![0u8; vlen];
    r.read_exact(&mut value)?;
    let name = String::from_utf8(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "name is not UTF-8"))?;
    Ok((h[0], name, value))
}

pub(crate) fn write_response(w: &mut impl Write, status: u8, value: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + value.len());
    buf.push(status);
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
    w.write_all(&buf)
}

pub(crate) fn read_response(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 5];
    r.read_exact(&mut h)?;
    let vlen = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if vlen > MAX_VALUE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "response too large"));
    }
    let mut value = vec![0u8; vlen];
    r.read_exact(&mut value)?;
    Ok((h[0], value))
}

/// Compares two keys in time independent of where they differ.
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

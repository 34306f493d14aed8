//! Field-level readers and writers shared by every message codec.
//!
//! All integers are big-endian. Fixed-width text fields are NUL-padded on
//! the right; readers stop at the first NUL, writers zero-fill.

use crate::error::DecodeError;

/// A cursor over a message body. Every read checks bounds and returns a
/// [`DecodeError`] instead of panicking.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::len(
                self.what,
                self.buf.len(),
                format!("at least {}", self.pos + n),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// An i64 field that must not be negative (sizes, offsets, lengths).
    pub fn len_field(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let v = self.i64()?;
        if v < 0 {
            return Err(DecodeError::field(field, format!("negative value {v}")));
        }
        Ok(v as u64)
    }

    /// A fixed-width text field, read up to its first NUL. Bytes after the
    /// NUL are ignored (upstream leaves garbage there in some messages).
    pub fn fixed_str(&mut self, field: &'static str, n: usize) -> Result<String, DecodeError> {
        let b = self.bytes(n)?;
        text_until_nul(field, b)
    }

    /// Like [`Reader::fixed_str`] but the bytes after the first NUL must be NUL too.
    pub fn fixed_str_strict(
        &mut self,
        field: &'static str,
        n: usize,
    ) -> Result<String, DecodeError> {
        let b = self.bytes(n)?;
        if let Some(p) = b.iter().position(|&c| c == 0) {
            if b[p..].iter().any(|&c| c != 0) {
                return Err(DecodeError::field(field, "bytes after the terminating NUL"));
            }
        }
        text_until_nul(field, b)
    }

    /// A text field of exactly `n` bytes with no padding (file names).
    pub fn text(&mut self, field: &'static str, n: usize) -> Result<String, DecodeError> {
        let b = self.bytes(n)?;
        plain_text(field, b)
    }

    pub fn text_rest(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.rest();
        plain_text(field, b)
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::len(self.what, self.buf.len(), self.pos));
        }
        Ok(())
    }
}

fn text_until_nul(field: &'static str, b: &[u8]) -> Result<String, DecodeError> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    plain_text(field, &b[..end])
}

fn plain_text(field: &'static str, b: &[u8]) -> Result<String, DecodeError> {
    match std::str::from_utf8(b) {
        Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
        Ok(_) => Err(DecodeError::field(field, "contains a NUL byte")),
        Err(_) => Err(DecodeError::field(field, "not valid UTF-8")),
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes `s` into a zero-filled field of `n` bytes, truncating if longer.
pub fn put_fixed(out: &mut Vec<u8>, s: &str, n: usize) {
    let b = s.as_bytes();
    let k = b.len().min(n);
    out.extend_from_slice(&b[..k]);
    out.resize(out.len() + (n - k), 0);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
}

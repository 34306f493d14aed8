//! The 10-byte packet header and frame splitting (PROTOCOL.md §1.1).

use crate::error::DecodeError;

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 10;

/// `pkg_len` (body length), command code and status byte.
///
/// In a response `cmd` is [`crate::cmd::RESP`] and `status` is 0 or an errno.
/// In a few requests the status byte carries data (query-file-info flags,
/// the sync "no content follows" marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub pkg_len: u64,
    pub cmd: u8,
    pub status: u8,
}

impl Header {
    pub fn new(cmd: u8, status: u8, pkg_len: u64) -> Self {
        Header {
            pkg_len,
            cmd,
            status,
        }
    }

    /// A response header: `cmd = 100`.
    pub fn response(status: u8, pkg_len: u64) -> Self {
        Header::new(crate::cmd::RESP, status, pkg_len)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&(self.pkg_len as i64).to_be_bytes());
        b[8] = self.cmd;
        b[9] = self.status;
        b
    }

    /// Decodes a header and checks its body length against `limit`.
    /// A negative length or one beyond the limit is an error: the peer
    /// should be disconnected without a reply.
    pub fn decode(b: &[u8; HEADER_LEN], limit: u64) -> Result<Header, DecodeError> {
        let mut l = [0u8; 8];
        l.copy_from_slice(&b[..8]);
        let len = i64::from_be_bytes(l);
        if len < 0 {
            return Err(DecodeError::NegativeLength(len));
        }
        let len = len as u64;
        if len > limit {
            return Err(DecodeError::TooLarge { len, limit });
        }
        Ok(Header {
            pkg_len: len,
            cmd: b[8],
            status: b[9],
        })
    }
}

/// A whole message: header and body borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits the first frame off `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, `Ok(Some((frame,
    /// consumed)))` when a whole frame is present, and an error for a
    /// negative or over-limit length. Never allocates.
    pub fn parse(buf: &'a [u8], limit: u64) -> Result<Option<(Frame<'a>, usize)>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        let header = Header::decode(&h, limit)?;
        let total = HEADER_LEN as u64 + header.pkg_len;
        if (buf.len() as u64) < total {
            return Ok(None);
        }
        let total = total as usize;
        Ok(Some((
            Frame {
                header,
                body: &buf[HEADER_LEN..total],
            },
            total,
        )))
    }
}

/// Encodes a whole frame: header followed by `body`.
pub fn encode_frame(cmd: u8, status: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&Header::new(cmd, status, body.len() as u64).encode());
    out.extend_from_slice(body);
    out
}

//! Storage-to-storage file sync (PROTOCOL.md §6.4).
//!
//! Group names in these requests are read leniently: upstream senders leave
//! garbage after the NUL (PROTOCOL.md §12.3). Timestamps are the source
//! operation's time, u32.

use crate::codec::{put_fixed, put_i64, put_u32, Reader};
use crate::common::*;
use crate::error::DecodeError;
use crate::file_id::{GroupName, LogicName};

/// REPORT_SERVER_ID (9): the sender's storage id, 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportServerId {
    pub id: String,
}

impl ReportServerId {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed(out, &self.id, ID_LEN);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != ID_LEN {
            return Err(DecodeError::len("report server id", b.len(), ID_LEN));
        }
        let id = Reader::new("report server id", b).fixed_str("id", ID_LEN)?;
        if id.is_empty() {
            return Err(DecodeError::field("id", "empty"));
        }
        check_id("id", &id)?;
        Ok(ReportServerId { id })
    }
}

/// Head of SYNC_CREATE_FILE (16) / SYNC_UPDATE_FILE (18): fixed 36 bytes,
/// then the filename, then `file_size` bytes of content unless the
/// header's status is EEXIST (announce only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFileHead {
    pub name_len: usize,
    pub file_size: u64,
    pub timestamp: u32,
    pub group: GroupName,
}

impl SyncFileHead {
    pub const LEN: usize = 8 + 8 + 4 + GROUP_LEN;

    /// `with_content`: false when the header status says no content follows.
    pub fn decode(head: &[u8], pkg_len: u64, with_content: bool) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("sync file head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("sync file head", head);
        let name_len = name_len(&mut r, 1)?;
        let file_size = r.len_field("file size")?;
        let timestamp = r.u32()?;
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let content = if with_content { file_size } else { 0 };
        let expected = (Self::LEN + name_len) as u64 + content;
        if pkg_len != expected {
            return Err(DecodeError::field(
                "sync file",
                format!("body length {pkg_len} disagrees with the announced sizes ({expected})"),
            ));
        }
        Ok(SyncFileHead {
            name_len,
            file_size,
            timestamp,
            group,
        })
    }

    /// Encodes head and filename; the content follows separately.
    pub fn encode(&self, filename: &LogicNameOrMeta, out: &mut Vec<u8>) {
        put_i64(out, filename.0.len() as i64);
        put_i64(out, self.file_size as i64);
        put_u32(out, self.timestamp);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(filename.0.as_bytes());
    }
}

/// A name in a sync request: a logic filename, possibly with the `-m`
/// metadata suffix. Validated by [`LogicName::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicNameOrMeta(pub String);

impl LogicNameOrMeta {
    pub fn parse(s: &str) -> Result<Self, DecodeError> {
        logic_name(s)?;
        Ok(LogicNameOrMeta(s.to_owned()))
    }

    pub fn logic(&self) -> LogicName {
        // Validated at construction.
        LogicName::parse(&self.0).expect("validated sync filename")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&LogicName> for LogicNameOrMeta {
    fn from(l: &LogicName) -> Self {
        LogicNameOrMeta(l.to_string())
    }
}

/// Reads the filename that follows a sync head.
pub fn decode_sync_name(b: &[u8]) -> Result<LogicNameOrMeta, DecodeError> {
    let s = Reader::new("sync filename", b).text_rest("filename")?;
    LogicNameOrMeta::parse(&s)
}

/// SYNC_DELETE_FILE (17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDelete {
    pub timestamp: u32,
    pub group: GroupName,
    pub filename: LogicNameOrMeta,
}

impl SyncDelete {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.timestamp);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.filename.0.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() <= 4 + GROUP_LEN || b.len() > 4 + GROUP_LEN + 127 {
            return Err(DecodeError::len("sync delete", b.len(), "21..147"));
        }
        let mut r = Reader::new("sync delete", b);
        let timestamp = r.u32()?;
        let group = read_group(&mut r, GROUP_LEN, false)?;
        Ok(SyncDelete {
            timestamp,
            group,
            filename: decode_sync_name(r.rest())?,
        })
    }
}

/// Head of SYNC_APPEND_FILE (25) / SYNC_MODIFY_FILE (35): fixed 44 bytes,
/// then the filename, then `length` bytes of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRangeHead {
    pub name_len: usize,
    pub offset: u64,
    pub length: u64,
    pub timestamp: u32,
    pub group: GroupName,
}

impl SyncRangeHead {
    pub const LEN: usize = 8 + 8 + 8 + 4 + GROUP_LEN;

    pub fn decode(head: &[u8], pkg_len: u64) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("sync range head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("sync range head", head);
        let name_len = name_len(&mut r, 1)?;
        let offset = r.len_field("offset")?;
        let length = r.len_field("length")?;
        let timestamp = r.u32()?;
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let expected = (Self::LEN + name_len) as u64 + length;
        if pkg_len != expected {
            return Err(DecodeError::field(
                "sync range",
                format!("body length {pkg_len} disagrees with the announced sizes ({expected})"),
            ));
        }
        Ok(SyncRangeHead {
            name_len,
            offset,
            length,
            timestamp,
            group,
        })
    }

    pub fn encode(&self, filename: &LogicNameOrMeta, out: &mut Vec<u8>) {
        put_i64(out, filename.0.len() as i64);
        put_i64(out, self.offset as i64);
        put_i64(out, self.length as i64);
        put_u32(out, self.timestamp);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(filename.0.as_bytes());
    }
}

/// SYNC_TRUNCATE_FILE (37).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTruncate {
    pub old_size: u64,
    pub new_size: u64,
    pub timestamp: u32,
    pub group: GroupName,
    pub filename: LogicNameOrMeta,
}

impl SyncTruncate {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_i64(out, self.filename.0.len() as i64);
        put_i64(out, self.old_size as i64);
        put_i64(out, self.new_size as i64);
        put_u32(out, self.timestamp);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.filename.0.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("sync truncate", b);
        let len = name_len(&mut r, 1)?;
        let old_size = r.len_field("old size")?;
        let new_size = r.len_field("new size")?;
        let timestamp = r.u32()?;
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let name = r.text("filename", len)?;
        r.finish()?;
        Ok(SyncTruncate {
            old_size,
            new_size,
            timestamp,
            group,
            filename: LogicNameOrMeta::parse(&name)?,
        })
    }
}

/// SYNC_CREATE_LINK (19) and SYNC_RENAME_FILE (40): two names.
/// For a link `first` is the link and `second` its target; for a rename
/// `first` is the new name and `second` the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTwoNames {
    pub timestamp: u32,
    pub group: GroupName,
    pub first: LogicNameOrMeta,
    pub second: LogicNameOrMeta,
}

impl SyncTwoNames {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_i64(out, self.first.0.len() as i64);
        put_i64(out, self.second.0.len() as i64);
        put_u32(out, self.timestamp);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.first.0.as_bytes());
        out.extend_from_slice(self.second.0.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("sync two names", b);
        let l1 = name_len(&mut r, 1)?;
        let l2 = name_len(&mut r, 1)?;
        let timestamp = r.u32()?;
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let first = r.text("first filename", l1)?;
        let second = r.text("second filename", l2)?;
        r.finish()?;
        Ok(SyncTwoNames {
            timestamp,
            group,
            first: LogicNameOrMeta::parse(&first)?,
            second: LogicNameOrMeta::parse(&second)?,
        })
    }
}

//! Storage commands used by clients (PROTOCOL.md §4).
//!
//! Commands that carry file content (upload, slave upload, append, modify)
//! are decoded in two steps so the content can be streamed: the fixed
//! *head* is decoded from the first bytes, and the head tells how many
//! content bytes follow. Each head checks its sizes against the header's
//! `pkg_len`.

use crate::codec::{put_fixed, put_i64, put_u8, Reader};
use crate::common::*;
use crate::error::DecodeError;
use crate::file_id::{
    validate_ext, validate_prefix, GroupName, LogicName, MAX_EXT_LEN, MAX_PREFIX_LEN,
};

/// Appender operations need a name at least this long (a normal name).
pub const MIN_APPENDER_NAME_LEN: usize = 44;

fn check_total(what: &'static str, pkg_len: u64, expected: u64) -> Result<(), DecodeError> {
    if pkg_len != expected {
        return Err(DecodeError::field(
            what,
            format!("body length {pkg_len} disagrees with the announced sizes ({expected})"),
        ));
    }
    Ok(())
}

/// Head of UPLOAD_FILE (11) and UPLOAD_APPENDER_FILE (23): 15 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadHead {
    /// Store path from the tracker, or -1: the storage chooses.
    pub store_path_index: i8,
    pub file_size: u64,
    pub ext: String,
}

impl UploadHead {
    pub const LEN: usize = 1 + 8 + MAX_EXT_LEN;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.store_path_index as u8);
        put_i64(out, self.file_size as i64);
        put_fixed(out, &self.ext, MAX_EXT_LEN);
    }

    /// `head` is the first [`UploadHead::LEN`] bytes of a body of `pkg_len`.
    pub fn decode(head: &[u8], pkg_len: u64) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("upload head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("upload head", head);
        let store_path_index = r.u8()? as i8;
        let file_size = r.len_field("file size")?;
        let ext = r.fixed_str("ext", MAX_EXT_LEN)?;
        validate_ext(&ext).map_err(|e| DecodeError::field("ext", e.to_string()))?;
        check_total("upload", pkg_len, Self::LEN as u64 + file_size)?;
        Ok(UploadHead {
            store_path_index,
            file_size,
            ext,
        })
    }
}

/// Reply to uploads and to regenerate: group and logic filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdResp {
    pub group: GroupName,
    pub filename: LogicName,
}

impl FileIdResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.filename.to_string().as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("file id reply", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let name = r.text_rest("filename")?;
        Ok(FileIdResp {
            group,
            filename: logic_name(&name)?,
        })
    }
}

/// Fixed head of UPLOAD_SLAVE_FILE (21): 38 bytes, then the master name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveUploadHead {
    pub master_len: usize,
    pub file_size: u64,
    pub prefix: String,
    pub ext: String,
}

impl SlaveUploadHead {
    pub const LEN: usize = 8 + 8 + MAX_PREFIX_LEN + MAX_EXT_LEN;

    pub fn decode(head: &[u8], pkg_len: u64) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("slave upload head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("slave upload head", head);
        let master_len = name_len(&mut r, MIN_APPENDER_NAME_LEN)?;
        let file_size = r.len_field("file size")?;
        let prefix = r.fixed_str("prefix", MAX_PREFIX_LEN)?;
        validate_prefix(&prefix).map_err(|e| DecodeError::field("prefix", e.to_string()))?;
        let ext = r.fixed_str("ext", MAX_EXT_LEN)?;
        validate_ext(&ext).map_err(|e| DecodeError::field("ext", e.to_string()))?;
        check_total(
            "slave upload",
            pkg_len,
            Self::LEN as u64 + master_len as u64 + file_size,
        )?;
        Ok(SlaveUploadHead {
            master_len,
            file_size,
            prefix,
            ext,
        })
    }
}

/// The whole non-content part of a slave upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveUpload {
    pub master: LogicName,
    pub file_size: u64,
    pub prefix: String,
    pub ext: String,
}

impl SlaveUpload {
    /// Bytes before the content.
    pub fn prefix_len(&self) -> usize {
        SlaveUploadHead::LEN + self.master.to_string().len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let master = self.master.to_string();
        put_i64(out, master.len() as i64);
        put_i64(out, self.file_size as i64);
        put_fixed(out, &self.prefix, MAX_PREFIX_LEN);
        put_fixed(out, &self.ext, MAX_EXT_LEN);
        out.extend_from_slice(master.as_bytes());
    }

    pub fn decode(head: SlaveUploadHead, master: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("slave master name", master);
        let name = r.text("master filename", head.master_len)?;
        Ok(SlaveUpload {
            master: logic_name(&name)?,
            file_size: head.file_size,
            prefix: head.prefix,
            ext: head.ext,
        })
    }
}

/// Fixed head of APPEND_FILE (24): name length and content size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendHead {
    pub name_len: usize,
    pub file_size: u64,
}

impl AppendHead {
    pub const LEN: usize = 16;

    pub fn decode(head: &[u8], pkg_len: u64) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("append head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("append head", head);
        let name_len = name_len(&mut r, MIN_APPENDER_NAME_LEN)?;
        let file_size = r.len_field("file size")?;
        check_total("append", pkg_len, (Self::LEN + name_len) as u64 + file_size)?;
        Ok(AppendHead {
            name_len,
            file_size,
        })
    }

    pub fn encode(name: &LogicName, file_size: u64, out: &mut Vec<u8>) {
        let n = name.to_string();
        put_i64(out, n.len() as i64);
        put_i64(out, file_size as i64);
        out.extend_from_slice(n.as_bytes());
    }
}

/// Fixed head of MODIFY_FILE (34): name length, offset, content size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyHead {
    pub name_len: usize,
    pub offset: u64,
    pub file_size: u64,
}

impl ModifyHead {
    pub const LEN: usize = 24;

    pub fn decode(head: &[u8], pkg_len: u64) -> Result<Self, DecodeError> {
        if head.len() != Self::LEN {
            return Err(DecodeError::len("modify head", head.len(), Self::LEN));
        }
        let mut r = Reader::new("modify head", head);
        let name_len = name_len(&mut r, MIN_APPENDER_NAME_LEN)?;
        let offset = r.len_field("offset")?;
        let file_size = r.len_field("file size")?;
        check_total("modify", pkg_len, (Self::LEN + name_len) as u64 + file_size)?;
        Ok(ModifyHead {
            name_len,
            offset,
            file_size,
        })
    }

    pub fn encode(name: &LogicName, offset: u64, file_size: u64, out: &mut Vec<u8>) {
        let n = name.to_string();
        put_i64(out, n.len() as i64);
        put_i64(out, offset as i64);
        put_i64(out, file_size as i64);
        out.extend_from_slice(n.as_bytes());
    }
}

/// Reads the appender filename that follows an append/modify head.
pub fn decode_appender_name(b: &[u8]) -> Result<LogicName, DecodeError> {
    let mut r = Reader::new("appender filename", b);
    let name = r.text_rest("filename")?;
    logic_name(&name)
}

/// TRUNCATE_FILE (36).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncateReq {
    pub filename: LogicName,
    pub new_size: u64,
}

impl TruncateReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.filename.to_string();
        put_i64(out, n.len() as i64);
        put_i64(out, self.new_size as i64);
        out.extend_from_slice(n.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("truncate request", b);
        let len = name_len(&mut r, MIN_APPENDER_NAME_LEN)?;
        let new_size = r.len_field("new size")?;
        let name = r.text("filename", len)?;
        r.finish()?;
        Ok(TruncateReq {
            filename: logic_name(&name)?,
            new_size,
        })
    }
}

/// REGENERATE_APPENDER_FILENAME (38): the bare appender filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegenerateReq {
    pub filename: LogicName,
}

impl RegenerateReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.filename.to_string().as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < MIN_APPENDER_NAME_LEN || b.len() >= 128 {
            return Err(DecodeError::len("regenerate request", b.len(), "44..127"));
        }
        let mut r = Reader::new("regenerate request", b);
        let name = r.text_rest("filename")?;
        Ok(RegenerateReq {
            filename: logic_name(&name)?,
        })
    }
}

/// DOWNLOAD_FILE (14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReq {
    pub offset: u64,
    /// 0 = to the end of the file.
    pub length: u64,
    pub group: GroupName,
    pub filename: LogicName,
}

impl DownloadReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_i64(out, self.offset as i64);
        put_i64(out, self.length as i64);
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.filename.to_string().as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() <= 16 + GROUP_LEN || b.len() > 16 + GROUP_LEN + 127 {
            return Err(DecodeError::len("download request", b.len(), "33..159"));
        }
        let mut r = Reader::new("download request", b);
        let offset = r.len_field("offset")?;
        let length = r.len_field("length")?;
        let group = read_group(&mut r, GROUP_LEN, true)?;
        let name = r.text_rest("filename")?;
        Ok(DownloadReq {
            offset,
            length,
            group,
            filename: logic_name(&name)?,
        })
    }
}

/// Set-metadata operation flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOp {
    /// `'O'`: replace the whole list.
    Overwrite,
    /// `'M'`: merge into the existing list.
    Merge,
}

/// SET_METADATA (13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMetadataReq {
    pub op: MetaOp,
    pub group: GroupName,
    pub filename: LogicName,
    /// Encoded metadata list (see [`crate::metadata`]).
    pub meta: Vec<u8>,
}

impl SetMetadataReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.filename.to_string();
        put_i64(out, n.len() as i64);
        put_i64(out, self.meta.len() as i64);
        put_u8(
            out,
            match self.op {
                MetaOp::Overwrite => b'O',
                MetaOp::Merge => b'M',
            },
        );
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(&self.meta);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("set metadata request", b);
        let len = name_len(&mut r, 1)?;
        let meta_len = r.len_field("metadata length")? as usize;
        let op = match r.u8()? {
            b'O' => MetaOp::Overwrite,
            b'M' => MetaOp::Merge,
            c => {
                return Err(DecodeError::field(
                    "op flag",
                    format!("{:?} is not O or M", c as char),
                ))
            }
        };
        let group = read_group(&mut r, GROUP_LEN, true)?;
        let name = r.text("filename", len)?;
        if r.remaining() != meta_len {
            return Err(DecodeError::len(
                "set metadata request",
                b.len(),
                33 + len + meta_len,
            ));
        }
        let meta = r.rest().to_vec();
        crate::metadata::decode(&meta)?;
        Ok(SetMetadataReq {
            op,
            group,
            filename: logic_name(&name)?,
            meta,
        })
    }
}

/// Reply to QUERY_FILE_INFO (22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfoResp {
    pub file_size: u64,
    pub create_timestamp: i64,
    pub crc32: u32,
    pub source_ip: String,
    pub ip_size: IpSize,
}

impl FileInfoResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_i64(out, self.file_size as i64);
        put_i64(out, self.create_timestamp);
        // Sign-extended, as upstream sends it.
        put_i64(out, self.crc32 as i32 as i64);
        put_fixed(out, &self.source_ip, self.ip_size.rip());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let ip_size = match b.len() {
            40 => IpSize::V4,
            70 => IpSize::V6,
            n => return Err(DecodeError::len("file info reply", n, "40 or 70")),
        };
        let mut r = Reader::new("file info reply", b);
        Ok(FileInfoResp {
            file_size: r.len_field("file size")?,
            create_timestamp: r.i64()?,
            crc32: r.i64()? as u32,
            source_ip: r.fixed_str("source ip", ip_size.rip())?,
            ip_size,
        })
    }
}

/// Query-file-info flags carried in the request header's status byte.
pub mod file_info_flags {
    /// Do not compute the CRC32 of appender and slave files.
    pub const NO_CRC: u8 = 1;
    /// Do not log "not found".
    pub const QUIET: u8 = 2;
}

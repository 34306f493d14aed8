//! Fields and helpers shared by tracker, storage and sync messages.

use crate::codec::{put_fixed, Reader};
use crate::error::DecodeError;
use crate::file_id::{GroupName, LogicName, MAX_GROUP_LEN, MAX_LOGIC_LEN};

/// Width of a group name field on the wire.
pub const GROUP_LEN: usize = MAX_GROUP_LEN;
/// Width of a storage ID field.
pub const ID_LEN: usize = 16;
/// IPv4 address field size.
pub const IPV4_SIZE: usize = 16;
/// IPv6 address field size (also `IP_ADDRESS_SIZE` since V6.11).
pub const IPV6_SIZE: usize = 46;
/// Width of a version text field.
pub const VERSION_LEN: usize = 8;
/// Width of an `ip:port` text field.
pub const IP_PORT_LEN: usize = 52;
/// The version we report on the wire.
pub const VERSION: &str = "6.16.1";

/// How wide IP fields are in tracker responses (PROTOCOL.md §1.4 "RIP").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpSize {
    /// 16: IP fields of 15 bytes in most responses. What old clients need.
    #[default]
    V4,
    /// 46: IP fields of 45 bytes.
    V6,
}

impl IpSize {
    /// The RIP value: 16 or 46.
    pub fn rip(self) -> usize {
        match self {
            IpSize::V4 => IPV4_SIZE,
            IpSize::V6 => IPV6_SIZE,
        }
    }
}

/// A storage server address as tracker responses carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub ip: String,
    pub port: u16,
}

/// Reads a group name field. `strict` refuses bytes after the NUL (client
/// requests); storage-to-storage messages are read leniently because
/// upstream leaves garbage there (golden capture, PROTOCOL.md §12.3).
pub fn read_group(
    r: &mut Reader<'_>,
    width: usize,
    strict: bool,
) -> Result<GroupName, DecodeError> {
    let s = if strict {
        r.fixed_str_strict("group name", width)?
    } else {
        r.fixed_str("group name", width)?
    };
    GroupName::new(&s).map_err(|e| DecodeError::field("group name", e.to_string()))
}

pub fn put_group(out: &mut Vec<u8>, g: &GroupName, width: usize) {
    put_fixed(out, g.as_str(), width);
}

/// Parses a logic filename field.
pub fn logic_name(s: &str) -> Result<LogicName, DecodeError> {
    LogicName::parse(s).map_err(|e| DecodeError::field("filename", e.to_string()))
}

/// Reads a length-prefixed filename length field and checks its range.
pub fn name_len(r: &mut Reader<'_>, min: usize) -> Result<usize, DecodeError> {
    let n = r.len_field("filename length")?;
    if (n as usize) < min || n as usize > MAX_LOGIC_LEN {
        return Err(DecodeError::field(
            "filename length",
            format!("{n} is outside {min}..={MAX_LOGIC_LEN}"),
        ));
    }
    Ok(n as usize)
}

/// Checks that a body is empty (commands that take no arguments).
pub fn expect_empty(what: &'static str, body: &[u8]) -> Result<(), DecodeError> {
    if !body.is_empty() {
        return Err(DecodeError::len(what, body.len(), 0));
    }
    Ok(())
}

/// A storage ID field: at most 15 characters, printable ASCII.
pub fn check_id(field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.len() >= ID_LEN || !s.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(DecodeError::field(field, format!("invalid id {s:?}")));
    }
    Ok(())
}

/// Port fields travel as i64 or u32; refuse values that are not ports.
pub fn port_from(field: &'static str, v: i64) -> Result<u16, DecodeError> {
    u16::try_from(v).map_err(|_| DecodeError::field(field, format!("{v} is not a port")))
}

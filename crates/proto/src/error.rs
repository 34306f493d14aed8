//! Decode errors: every way a byte sequence can fail to be a valid message.

use thiserror::Error;

/// Why a frame, a message body, a file ID or a record could not be decoded.
///
/// Each variant names the field that was wrong, so a server can log it and a
/// test can assert on it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("negative body length {0} in header")]
    NegativeLength(i64),
    #[error("body length {len} exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("{what}: body is {got} bytes, expected {expected}")]
    BadLength {
        what: &'static str,
        got: usize,
        expected: String,
    },
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("unknown command code {0}")]
    UnknownCommand(u8),
}

impl DecodeError {
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        DecodeError::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn len(what: &'static str, got: usize, expected: impl ToString) -> Self {
        DecodeError::BadLength {
            what,
            got,
            expected: expected.to_string(),
        }
    }
}

/// Why a file ID or a logic filename was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileIdError {
    #[error("file id is empty")]
    Empty,
    #[error("file id has no group part (expected `group/Mxx/HH/HH/name`)")]
    MissingGroup,
    #[error("invalid group name {0:?}: 1 to 16 characters of [A-Za-z0-9]")]
    BadGroup(String),
    #[error("filename {0:?} is too short")]
    TooShort(String),
    #[error("filename is {0} bytes, the maximum is 127")]
    TooLong(usize),
    #[error("store path {0:?} is not M00..MFF")]
    BadStorePath(String),
    #[error("subdirectory {0:?} is not two upper-case hex digits")]
    BadSubdir(String),
    #[error("subdirectory {value} is outside 0..{count}")]
    SubdirOutOfRange { value: u8, count: u32 },
    #[error("filename contains a forbidden character {0:?} (slash, backslash, NUL, dot-dot)")]
    ForbiddenChar(char),
    #[error("file name part {0:?} is not valid base64")]
    BadBase64(String),
    #[error("extension {0:?} is invalid: at most 6 characters of [A-Za-z0-9_.-]")]
    BadExt(String),
    #[error("slave prefix {0:?} is invalid: 1 to 16 characters of [A-Za-z0-9_.-]")]
    BadPrefix(String),
    #[error("a slave file needs a prefix or an extension that differs from the master's")]
    SlaveSameAsMaster,
    #[error("{0:?} is not a master (normal) file name")]
    NotMaster(String),
}

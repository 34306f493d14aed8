//! Store errors and their one mapping to FastDFS status bytes.

use fdfs_proto::errno;
use thiserror::Error;

/// Why a store operation failed. Every variant names the file or path.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no space: {0}")]
    NoSpace(String),
    /// `write_quorum` not reached in time.
    #[error("write quorum not reached: {0}")]
    Quorum(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Wraps an I/O error; ENOSPC and ENOENT from the OS keep their meaning.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                StoreError::NoSpace(format!("{what}: {source}"))
            }
            _ if source.kind() == std::io::ErrorKind::NotFound => StoreError::NotFound(what),
            _ => StoreError::Io { what, source },
        }
    }

    /// The status byte sent to the client.
    pub fn status(&self) -> u8 {
        match self {
            StoreError::NotFound(_) => errno::ENOENT,
            StoreError::Exists(_) => errno::EEXIST,
            StoreError::Invalid(_) => errno::EINVAL,
            StoreError::NoSpace(_) => errno::ENOSPC,
            StoreError::Quorum(_) => errno::ETIMEDOUT,
            StoreError::Io { .. } => errno::EIO,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

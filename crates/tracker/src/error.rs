//! Tracker errors and their one mapping to a FastDFS status byte.

use fdfs_proto::errno;
use thiserror::Error;

/// Why a tracker request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrackerError {
    #[error("group {0} not found")]
    NoGroup(String),
    #[error("storage {id} not found in group {group}")]
    NoStorage { group: String, id: String },
    #[error("no writable storage server{0}")]
    NoWritable(String),
    #[error("no readable storage server in group {0}")]
    NoReadable(String),
    #[error("no space left: {0}")]
    NoSpace(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage {0} is online, stop it before deleting it")]
    Busy(String),
    #[error("storage {0} is already deleted")]
    AlreadyDeleted(String),
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("storage id {0} is not in storage_ids.conf")]
    UnknownId(String),
    #[error("storage command before JOIN")]
    NotJoined,
    #[error("storage {0} is already the trunk server")]
    AlreadyTrunk(String),
    #[error("storage {0} is not ACTIVE")]
    NotActive(String),
    #[error("storage {0} does not take writes")]
    ReadOnly(String),
}

impl TrackerError {
    /// The status byte sent to the peer.
    pub fn errno(&self) -> u8 {
        match self {
            TrackerError::NoGroup(_)
            | TrackerError::NoStorage { .. }
            | TrackerError::NoWritable(_)
            | TrackerError::NoReadable(_)
            | TrackerError::UnknownId(_) => errno::ENOENT,
            TrackerError::NoSpace(_) => errno::ENOSPC,
            TrackerError::Invalid(_) => errno::EINVAL,
            TrackerError::Exists(_) => errno::EEXIST,
            TrackerError::Busy(_) => errno::EBUSY,
            TrackerError::AlreadyDeleted(_) | TrackerError::AlreadyTrunk(_) => errno::EALREADY,
            TrackerError::NotActive(_) => errno::ENONET,
            TrackerError::NotSupported(_) => errno::EOPNOTSUPP,
            TrackerError::NotJoined | TrackerError::ReadOnly(_) => errno::EACCES,
        }
    }
}

impl From<fdfs_proto::DecodeError> for TrackerError {
    fn from(e: fdfs_proto::DecodeError) -> Self {
        TrackerError::Invalid(e.to_string())
    }
}

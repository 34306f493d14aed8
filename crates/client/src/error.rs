//! Client errors. A server's refusal keeps its errno; everything else says
//! which server or local file was involved.

use std::net::SocketAddr;
use std::time::Duration;

use fdfs_proto::errno;
use fdfs_proto::{DecodeError, FileIdError};
use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The server answered with a non-zero status byte (a Linux errno).
    #[error("{op} refused by {server}: {} (errno {errno}): {}", errno::describe(*.errno).0, errno::describe(*.errno).1)]
    Status {
        /// The command, e.g. `DOWNLOAD_FILE`.
        op: &'static str,
        errno: u8,
        server: SocketAddr,
    },
    /// Could not open a TCP connection.
    #[error("{op}: cannot connect to {server}: {source}")]
    Connect {
        op: &'static str,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A socket read or write failed after connecting.
    #[error("{op} on {server}: network error: {source}")]
    Io {
        op: &'static str,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Connecting or a single read/write took longer than the configured timeout.
    #[error("{op} on {server}: timed out after {after:?}")]
    Timeout {
        op: &'static str,
        server: SocketAddr,
        after: Duration,
    },
    /// The server's reply could not be decoded.
    #[error("{op} on {server}: malformed reply: {source}")]
    Protocol {
        op: &'static str,
        server: SocketAddr,
        #[source]
        source: DecodeError,
    },
    /// A file id that is not `group/Mxx/HH/HH/name`; refused before any I/O.
    #[error("bad file id {id:?}: {source}")]
    BadFileId {
        id: String,
        #[source]
        source: FileIdError,
    },
    /// A local argument the protocol cannot carry (bad group, ext, prefix...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading or writing a local file or stream failed.
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration names no tracker, or none could be resolved.
    #[error("no tracker server: {0}")]
    NoTracker(String),
}

impl Error {
    /// The errno the server sent, if this is a status error.
    pub fn errno(&self) -> Option<u8> {
        match self {
            Error::Status { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The server involved, when there is one.
    pub fn server(&self) -> Option<SocketAddr> {
        match self {
            Error::Status { server, .. }
            | Error::Connect { server, .. }
            | Error::Io { server, .. }
            | Error::Timeout { server, .. }
            | Error::Protocol { server, .. } => Some(*server),
            _ => None,
        }
    }

    /// ENOENT (2): file, group or server not found.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(errno::ENOENT)
    }

    /// EEXIST (17), e.g. a slave file that already exists.
    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(errno::EEXIST)
    }

    /// ENOSPC (28): the reserved space is reached.
    pub fn is_no_space(&self) -> bool {
        self.errno() == Some(errno::ENOSPC)
    }

    /// EINVAL (22): the server refused the request as malformed.
    pub fn is_invalid_argument(&self) -> bool {
        self.errno() == Some(errno::EINVAL) || matches!(self, Error::InvalidArgument(_))
    }

    /// EBUSY (16), e.g. deleting a storage that is still online.
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(errno::EBUSY)
    }

    /// Connect failures, timeouts and broken connections: worth trying
    /// another tracker.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. }
        )
    }

    /// An errno-like number for process exit codes and messages: the
    /// server's status, or the OS error of a failed socket/file operation.
    pub fn code(&self) -> i32 {
        match self {
            Error::Status { errno, .. } => i32::from(*errno),
            Error::Connect { source, .. }
            | Error::Io { source, .. }
            | Error::Local { source, .. } => source.raw_os_error().unwrap_or(i32::from(errno::EIO)),
            Error::Timeout { .. } => i32::from(errno::ETIMEDOUT),
            Error::Protocol { .. } => i32::from(errno::EIO),
            Error::BadFileId { .. } | Error::InvalidArgument(_) => i32::from(errno::EINVAL),
            Error::NoTracker(_) => i32::from(errno::ENOENT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_display_names_op_server_and_errno() {
        let e = Error::Status {
            op: "DOWNLOAD_FILE",
            errno: 2,
            server: "127.0.0.1:23000".parse().unwrap(),
        };
        let s = e.to_string();
        assert!(s.contains("DOWNLOAD_FILE"), "{s}");
        assert!(s.contains("127.0.0.1:23000"), "{s}");
        assert!(s.contains("ENOENT (errno 2)"), "{s}");
        assert!(e.is_not_found());
        assert!(!e.is_busy());
        assert_eq!(e.code(), 2);
    }

    #[test]
    fn helpers_match_their_errno() {
        let mk = |errno| Error::Status {
            op: "X",
            errno,
            server: "127.0.0.1:1".parse().unwrap(),
        };
        assert!(mk(17).is_already_exists());
        assert!(mk(28).is_no_space());
        assert!(mk(22).is_invalid_argument());
        assert!(mk(16).is_busy());
        assert!(!mk(16).is_network());
    }
}

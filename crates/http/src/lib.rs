//! HTTP access to FastDFS files.
//!
//! * [`storage::StorageHttp`]: the server each storage host runs on its HTTP
//!   port, doing what nginx + fastdfs-nginx-module does (PROTOCOL.md §10):
//!   map `/{group}/M00/HH/HH/name` to the store path, serve it with ranges
//!   and conditional requests, check anti-steal tokens, and send clients
//!   to (or proxy from) the source server of a file not synced yet.
//! * [`gateway::Gateway`]: one HTTP entry for the whole cluster (what the
//!   deployment guide's tracker-side caching nginx does): learns each
//!   group's servers from the trackers, balances and fails over between
//!   them, and keeps a bounded disk cache with purge.
//! * [`observe`]: a daemon's `/metrics` and `/status` on its metrics port.
//! * [`access_log`]: the gateway's access log, in nginx's format.
//! * [`server`]: the accept loop both servers share; requests are read with
//!   our own HTTP/1.1 codec ([`h1`]) so that file ranges go out with
//!   `sendfile(2)`, and hyper takes the rare request that has a body.
//!
//! This crate never writes into store paths and never serves a byte from
//! outside them: every path goes through `fdfs_proto::LogicName::parse`.
//! It speaks the FastDFS protocol only to ask trackers for group members.

pub mod access_log;
pub mod body;
mod conn;
pub mod fileserve;
pub mod gateway;
pub mod h1;
pub mod mime;
pub mod observe;
pub mod query;
pub mod range;
pub mod server;
pub mod storage;
pub mod timeout_io;
pub mod token;

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("tracker: {0}")]
    Tracker(String),
}

pub use token::make_token;

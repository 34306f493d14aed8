//! The FastDFS wire protocol as pure codecs.
//!
//! This crate turns bytes into typed values and back: the 10-byte header
//! and frame splitting ([`header`]), command codes ([`cmd`]) and status
//! bytes ([`errno`]), every request and response of PROTOCOL.md §3, §4 and
//! §6 ([`tracker`], [`storage`], [`server`], [`sync`]), file IDs
//! ([`file_id`]), metadata lists ([`metadata`]), binlog records
//! ([`binlog`]) and the slot header of trunk files ([`trunk`]).
//!
//! It must not do I/O: no sockets, no files, no clocks, no randomness
//! (callers pass timestamps and random bits in). Decoders never panic on
//! any input and never allocate more than the body they are given; invalid
//! input is a [`DecodeError`] or [`FileIdError`] value naming the field.

pub mod binlog;
pub mod cmd;
pub mod codec;
pub mod common;
pub mod errno;
pub mod error;
pub mod file_id;
pub mod header;
pub mod metadata;
pub mod server;
pub mod storage;
pub mod sync;
pub mod tracker;
pub mod trunk;

pub use common::{IpSize, ServerAddr};
pub use error::{DecodeError, FileIdError};
pub use file_id::{FileId, FileKind, GroupName, LogicName, NameInfo, SourceServer};
pub use header::{encode_frame, Frame, Header, HEADER_LEN};

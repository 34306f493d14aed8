//! The FastDFS `.conf` dialect into typed, validated configuration.
//!
//! [`ini`] splits a file into located `key = value` entries (sections,
//! `#include`, repeated keys); [`value`] parses the value syntaxes; the typed
//! loaders ([`TrackerConf::load`], [`StorageConf::load`], [`ClientConf::load`],
//! [`HttpConf::load`], [`ModFastdfsConf::load`], [`StorageIds::load`]) apply
//! CONFIG.md's built-in defaults and report every bad value with its file,
//! line and key. Unknown keys are warnings, returned by the
//! `*_with_warnings` variants and logged with `tracing`.
//!
//! This crate must not act on the configuration: it opens no socket, creates
//! no directory and refuses nothing a daemon should decide (e.g. `disabled`
//! is only reported). Its only side effects are reading the files and
//! resolving `allow_hosts` names.

mod allow;
mod error;
pub mod ini;
mod load;
mod reader;
mod storage_ids;
mod types;
pub mod value;

pub use allow::{set_resolve_names, system_resolver, AllowHosts, Resolver};
pub use error::{ConfError, Warning};
pub use ini::{Entry, IniFile, Section};
pub use load::{MAX_TRACKERS, STORAGE_DEFAULT_PORT, TRACKER_DEFAULT_PORT};
pub use types::*;

//! The FastDFS tracker (`fdfs_trackerd`).
//!
//! [`cluster`] is the engine: groups, storage servers and their status
//! (PROTOCOL.md §7), reported space and counters, sync progress, and the
//! placement policies of §8. [`persist`] saves it under
//! `<base_path>/data/`. [`storage_ids`] answers from storage_ids.conf.
//! [`observe`] renders the metrics port's pages. [`service`] decodes
//! requests (fdfs-proto), calls the engine and encodes replies; [`server`]
//! wires the service to the listener and runs the background workers.
//!
//! It must not do its own socket or process plumbing (that is
//! `fdfs-runtime`), must not parse config files (`fdfs-conf`), and the
//! engine must not touch sockets, files or the clock: time is passed in.
//! There is no leader election between trackers: each tracker answers from
//! what its storages report (DESIGN.md "Trackers without a leader").

pub mod cluster;
pub mod error;
pub mod observe;
pub mod persist;
pub mod server;
pub mod service;
pub mod settings;
pub mod storage_ids;

pub use cluster::Cluster;
pub use error::TrackerError;
pub use server::{open, run, TrackerOpts};
pub use service::Tracker;
pub use settings::Settings;

//! The FastDFS `.conf` dialect into typed, validated configuration.
//!
//! (Being filled in: parser, loaders, allow_hosts.)

mod types;

pub use types::*;

/// `allow_hosts`: who may connect. Empty or `*` allows everyone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AllowHosts {
    pub allow_all: bool,
}

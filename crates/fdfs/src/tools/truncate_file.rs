//! `fdfs truncate-file`: set an appender file's size (growing fills with
//! zeros).

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs truncate-file <conf> <appender_file_id> [size]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// An id printed by fdfs_upload_appender
    pub appender_file_id: String,
    /// The new size in bytes
    #[arg(default_value_t = 0)]
    pub size: u64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    client
        .truncate(&a.appender_file_id, a.size)
        .await
        .with_context(|| format!("truncating {} to {} bytes", a.appender_file_id, a.size))
}

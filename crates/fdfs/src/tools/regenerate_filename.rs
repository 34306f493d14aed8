//! fdfs_regenerate_filename: turn an appender file into a normal file under
//! a new name (REGENERATE_APPENDER_FILENAME, FastDFS V6.02+), print the new
//! file id. The old id is gone afterwards.

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs_regenerate_filename <conf> <appender_file_id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// An id printed by fdfs_upload_appender
    pub appender_file_id: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let id = client
        .regenerate_appender_name(&a.appender_file_id)
        .await
        .with_context(|| format!("regenerating the name of {}", a.appender_file_id))?;
    super::emit(&format!("{id}\n"))
}

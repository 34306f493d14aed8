//! fdfs_delete_file: delete a file.

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs_delete_file <conf> <file_id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// group/Mxx/HH/HH/name
    pub file_id: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    client
        .delete(&a.file_id)
        .await
        .with_context(|| format!("deleting {}", a.file_id))
}

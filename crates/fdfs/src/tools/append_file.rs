//! fdfs_append_file: append a local file to an appender file.

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs_append_file <conf> <appender_file_id> <local_file>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// An id printed by fdfs_upload_appender
    pub appender_file_id: String,
    /// The file whose content is appended
    pub local_file: PathBuf,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let path = &a.local_file;
    let r = super::send_local(path, "appending", async |src, size| {
        client.append_reader(&a.appender_file_id, src, size).await
    })
    .await?;
    r.with_context(|| format!("appending {} to {}", path.display(), a.appender_file_id))
}

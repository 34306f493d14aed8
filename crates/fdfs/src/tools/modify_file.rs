//! `fdfs modify-file`: overwrite an appender file from an offset with a
//! local file's content (streamed; may extend the file).

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs modify-file <conf> <appender_file_id> <offset> <local_file>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// An id printed by fdfs_upload_appender
    pub appender_file_id: String,
    /// Where the new content starts (at most the file's current size)
    pub offset: u64,
    /// The file whose content is written
    pub local_file: PathBuf,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let path = &a.local_file;
    let r = super::send_local(path, "modifying", async |src, size| {
        client
            .modify_reader(&a.appender_file_id, a.offset, src, size)
            .await
    })
    .await?;
    r.with_context(|| {
        format!(
            "writing {} into {} at offset {}",
            path.display(),
            a.appender_file_id,
            a.offset
        )
    })
}

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
    let (f, meta) = super::open_local(path).await?;
    let size = meta.len();
    let (mut src, bar) = super::progress_reader(f, size, "modifying");
    let r = client
        .modify_reader(&a.appender_file_id, a.offset, &mut src, size)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    r.with_context(|| {
        format!(
            "writing {} into {} at offset {}",
            path.display(),
            a.appender_file_id,
            a.offset
        )
    })
}

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
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = f
        .metadata()
        .await
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let r = match super::progress(size, "appending") {
        Some(bar) => {
            let mut src = bar.wrap_async_read(f);
            let r = client
                .append_reader(&a.appender_file_id, &mut src, size)
                .await;
            bar.finish_and_clear();
            r
        }
        None => {
            client
                .append_reader(&a.appender_file_id, &mut f, size)
                .await
        }
    };
    r.with_context(|| format!("appending {} to {}", path.display(), a.appender_file_id))
}

//! fdfs_upload_appender: upload a local file as an appender file.

use std::path::PathBuf;

use fdfs_client::UploadOptions;

/// `fdfs_upload_appender <conf> <local_file>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// The file to upload
    pub local_file: PathBuf,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let id =
        super::upload_file::upload(&client, &a.local_file, UploadOptions::new().appender()).await?;
    super::emit(&format!("{id}\n"))
}

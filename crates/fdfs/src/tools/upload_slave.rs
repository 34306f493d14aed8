//! `fdfs upload-slave`: upload a local file as a slave of a master file
//! (its name is the master's plus a prefix, PROTOCOL.md §5.4), print its id.

use std::path::PathBuf;

use anyhow::Context;
use fdfs_client::ext_of_path;

/// `fdfs upload-slave <conf> <master_file_id> <prefix> <local_file> [ext]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// The master: a normal file's id
    pub master_file_id: String,
    /// Added to the master's name, e.g. _150x150
    pub prefix: String,
    /// The file to upload
    pub local_file: PathBuf,
    /// The slave's extension (default: the local file's, if valid; "" for none)
    pub ext: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let path = &a.local_file;
    let ext = a.ext.clone().unwrap_or_else(|| ext_of_path(path));
    let id = super::send_local(path, "uploading", async |src, size| {
        client
            .upload_slave_reader(&a.master_file_id, &a.prefix, &ext, src, size)
            .await
    })
    .await?;
    let id = id.with_context(|| {
        format!(
            "uploading {} as a slave of {}",
            path.display(),
            a.master_file_id
        )
    })?;
    super::emit(&format!("{id}\n"))
}

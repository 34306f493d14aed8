//! fdfs_upload_file: upload a local file, print its file id.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::Context;
use fdfs_client::{ext_of_path, Client, UploadOptions};

/// `fdfs_upload_file <conf> <local_file> [storage_ip:port] [store_path_index]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// The file to upload; its extension (if valid) becomes the id's extension
    pub local_file: PathBuf,
    /// Upload straight to this storage server instead of asking the tracker
    #[arg(value_name = "storage_ip:port")]
    pub storage: Option<String>,
    /// Store path index on that storage (default: the storage chooses)
    pub store_path_index: Option<u8>,
}

pub(crate) fn parse_storage(s: &str) -> anyhow::Result<SocketAddr> {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| super::invalid(format!("storage address {s:?} is not host:port")))
}

/// Uploads `path` (normal or appender) with a progress bar when large.
pub(crate) async fn upload(
    client: &Client,
    path: &Path,
    opts: UploadOptions,
) -> anyhow::Result<String> {
    let mut opts = opts;
    opts.ext = ext_of_path(path);
    let id = super::send_local(path, "uploading", async |src, size| {
        client.upload_reader(src, size, &opts).await
    })
    .await?;
    let id = id.with_context(|| format!("uploading {}", path.display()))?;
    Ok(id.to_string())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut opts = UploadOptions::new();
    if let Some(s) = &a.storage {
        opts = opts.storage(parse_storage(s)?, a.store_path_index);
    } else if a.store_path_index.is_some() {
        return Err(super::invalid(
            "a store path index needs a storage_ip:port before it",
        ));
    }
    let client = super::load_client(&a.conf)?;
    let id = upload(&client, &a.local_file, opts).await?;
    super::emit(&format!("{id}\n"))
}

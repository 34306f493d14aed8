//! fdfs_file_info: what the storage knows about a file (QUERY_FILE_INFO),
//! printed in upstream's layout.

use std::path::PathBuf;

use anyhow::Context;
use fdfs_client::proto::{FileId, FileKind, SourceServer};

/// `fdfs_file_info <conf> <file_id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// group/Mxx/HH/HH/name
    pub file_id: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let id = FileId::parse(&a.file_id).map_err(|source| fdfs_client::Error::BadFileId {
        id: a.file_id.clone(),
        source,
    })?;
    let client = super::load_client(&a.conf)?;
    let info = client
        .query_file_info(&a.file_id)
        .await
        .with_context(|| format!("querying {}", a.file_id))?;
    let kind = match id.logic.kind {
        FileKind::Appender => "appender",
        FileKind::Slave => "slave",
        FileKind::Normal | FileKind::Trunk(_) => "normal",
    };
    let (source_id, name_ip) = match id.logic.info.source {
        SourceServer::Id(n) => (n, None),
        SourceServer::Ip(ip) => (0, Some(ip.to_string())),
    };
    // The storage resolves server ids to addresses; fall back to the
    // address in the name when it could not.
    let source_ip = if info.source_ip.is_empty() {
        name_ip.unwrap_or_default()
    } else {
        info.source_ip.clone()
    };
    let ts = fdfs_runtime::clock::format_local(info.create_timestamp);
    super::emit(&format!(
        "GET FROM SERVER: true\n\nfile type: {kind}\nsource storage id: {source_id}\n\
         source ip address: {source_ip}\nfile create timestamp: {ts}\nfile size: {}\n\
         file crc32: {} (0x{:08X})\n",
        info.file_size, info.crc32, info.crc32
    ))
}

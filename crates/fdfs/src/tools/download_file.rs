//! fdfs_download_file: download a file, whole or a range, to a local file.
//!
//! The content goes to a temporary file next to the target, renamed into
//! place only when the download completed: a failure leaves no partial file
//! and does not clobber an existing one. Unlike upstream, failure exits
//! non-zero.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fdfs_client::proto::storage::file_info_flags;
use fdfs_client::proto::FileId;
use fdfs_client::Client;

/// `fdfs_download_file <conf> <file_id> [local_file] [offset length]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// group/Mxx/HH/HH/name
    pub file_id: String,
    /// Where to write (default: the file id's base name, in the current directory)
    pub local_file: Option<PathBuf>,
    /// First byte to download
    pub offset: Option<u64>,
    /// Number of bytes (0 = to the end of the file)
    pub length: Option<u64>,
}

/// How many bytes the download will bring, for the progress bar.
async fn expected_size(client: &Client, id: &FileId, offset: u64, length: u64) -> Option<u64> {
    let total = match id.logic.info.file_size() {
        Some(s) if !id.logic.is_slave() => s,
        // Appender and slave ids do not carry the current size: ask.
        _ => {
            client
                .query_file_info_flags(
                    &id.to_string(),
                    file_info_flags::NO_CRC | file_info_flags::QUIET,
                )
                .await
                .ok()?
                .file_size
        }
    };
    let rest = total.saturating_sub(offset);
    Some(if length == 0 { rest } else { rest.min(length) })
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    target.with_file_name(format!(".{name}.part-{}", std::process::id()))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let id = FileId::parse(&a.file_id).map_err(|source| fdfs_client::Error::BadFileId {
        id: a.file_id.clone(),
        source,
    })?;
    let (offset, length) = match (a.offset, a.length) {
        (None, None) => (0, 0),
        (Some(o), Some(l)) => (o, l),
        _ => {
            return Err(super::invalid(
                "give both an offset and a length, or neither",
            ))
        }
    };
    let target = a
        .local_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(&id.logic.name));
    let client = super::load_client(&a.conf)?;

    let tmp = temp_path(&target);
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let bar = if super::watching() {
        match expected_size(&client, &id, offset, length).await {
            Some(n) => super::progress(n, "downloading"),
            None => None,
        }
    } else {
        None
    };
    let r = match &bar {
        Some(bar) => {
            let mut w = bar.wrap_async_write(&mut f);
            client
                .download_to_writer(&a.file_id, offset, length, &mut w)
                .await
        }
        None => {
            client
                .download_to_writer(&a.file_id, offset, length, &mut f)
                .await
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let synced = match r {
        Ok(_) => f
            .sync_all()
            .await
            .context("cannot flush the downloaded file"),
        Err(e) => Err(anyhow::Error::new(e).context(format!("downloading {}", a.file_id))),
    };
    drop(f);
    if let Err(e) = synced {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    if let Err(e) = tokio::fs::rename(&tmp, &target).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e).with_context(|| format!("cannot write {}", target.display()));
    }
    Ok(())
}

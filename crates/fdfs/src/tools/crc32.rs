//! fdfs_crc32: the CRC32 of a local file.
//!
//! FastDFS records the standard CRC-32 (IEEE, zlib's) of a file's content in
//! its file id, and QUERY_FILE_INFO reports it. This prints that value as an
//! unsigned decimal number, the first number of fdfs_file_info's
//! `file crc32:` line, so the two can be compared directly.

use std::path::PathBuf;

use anyhow::Context;
use tokio::io::AsyncReadExt;

/// `fdfs_crc32 <local_file>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to checksum (read in chunks, any size)
    pub local_file: PathBuf,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let path = &a.local_file;
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    super::emit(&format!("{}\n", h.finalize()))
}

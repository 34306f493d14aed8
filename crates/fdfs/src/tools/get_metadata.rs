//! `fdfs get-metadata`: print a file's metadata, one `name=value` a line,
//! in the server's order (sorted by name).

use std::path::PathBuf;

use anyhow::Context;

/// `fdfs get-metadata <conf> <file_id>`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// group/Mxx/HH/HH/name
    pub file_id: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = super::load_client(&a.conf)?;
    let meta = client
        .get_metadata(&a.file_id)
        .await
        .with_context(|| format!("getting the metadata of {}", a.file_id))?;
    let mut out = String::new();
    for p in &meta {
        out.push_str(&String::from_utf8_lossy(&p.name));
        out.push('=');
        out.push_str(&String::from_utf8_lossy(&p.value));
        out.push('\n');
    }
    super::emit(&out)
}

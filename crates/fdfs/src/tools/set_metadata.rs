//! `fdfs set-metadata`: replace, merge into or clear a file's metadata.

use std::path::PathBuf;

use anyhow::Context;
use fdfs_client::{MetaOp, MetaPair};

/// `fdfs set-metadata <conf> <file_id> (<name=value>... [--merge] | --clear)`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// client.conf with the tracker_server lines
    pub conf: PathBuf,
    /// group/Mxx/HH/HH/name
    pub file_id: String,
    /// The entries, each `name=value` (the value may be empty or contain `=`)
    #[arg(required_unless_present = "clear", value_name = "name=value")]
    pub pairs: Vec<String>,
    /// Merge into the existing metadata (same names get the new values)
    /// instead of replacing it all
    #[arg(long, conflicts_with = "clear")]
    pub merge: bool,
    /// Remove all of the file's metadata (an overwrite with no entries)
    #[arg(long, conflicts_with = "pairs")]
    pub clear: bool,
}

/// `name=value`, split at the first `=`; the name may not be empty.
fn parse_pair(s: &str) -> anyhow::Result<MetaPair> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok(MetaPair::new(name, value)),
        _ => Err(super::invalid(format!(
            "metadata entry {s:?} is not name=value"
        ))),
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let pairs = a
        .pairs
        .iter()
        .map(|s| parse_pair(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (op, how) = if a.merge {
        (MetaOp::Merge, "merging")
    } else if a.clear {
        (MetaOp::Overwrite, "clearing")
    } else {
        (MetaOp::Overwrite, "setting")
    };
    let client = super::load_client(&a.conf)?;
    client
        .set_metadata(&a.file_id, &pairs, op)
        .await
        .with_context(|| format!("{how} the metadata of {}", a.file_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equal_sign() {
        assert_eq!(parse_pair("a=b=c").unwrap(), MetaPair::new("a", "b=c"));
        assert_eq!(parse_pair("a=").unwrap(), MetaPair::new("a", ""));
        assert!(parse_pair("ab").is_err());
        assert!(parse_pair("=b").is_err());
    }
}

//! `fdfs fsck <storage.conf>`: checks a storage's files against its
//! binlog and changes nothing (see fdfs_storage::fsck). Exit status 0 when
//! every file is sound, 1 when some is not, 2 when the check could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fdfs_storage::fsck::{self, Layout};

#[derive(clap::Args, Debug)]
pub struct FsckArgs {
    /// The storage's storage.conf (base_path, store paths).
    pub conf: PathBuf,
    /// Also read every file whose name records its CRC32 and compare.
    #[arg(long)]
    pub crc: bool,
    /// Also list the files in the store paths that the binlog does not name
    /// (never replicated to the group).
    #[arg(long)]
    pub orphans: bool,
    /// Print at most this many problems (all are counted).
    #[arg(long, default_value_t = 100)]
    pub max: usize,
}

pub fn main(args: FsckArgs) -> ExitCode {
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fdfs fsck: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(false)`: problems found (printed).
fn run(args: &FsckArgs) -> anyhow::Result<bool> {
    let conf = fdfs_conf::StorageConf::load(&args.conf)
        .with_context(|| format!("cannot load {}", args.conf.display()))?;
    let layout = Layout {
        base_path: conf.daemon.base_path.clone(),
        store_paths: conf.store_paths.clone(),
        subdir_count: conf.subdir_count_per_path,
    };
    let report = fsck::check(&layout, args.crc, args.orphans)
        .with_context(|| format!("cannot read the binlog in {}", layout.base_path.display()))?;
    let group = if conf.group_name.is_empty() {
        String::new()
    } else {
        format!("{}/", conf.group_name)
    };
    for (name, problem) in report.problems.iter().take(args.max) {
        println!("{group}{name}: {problem}");
    }
    if report.problems.len() > args.max {
        println!("... and {} more", report.problems.len() - args.max);
    }
    let on_disk = if args.orphans {
        format!(", {} on disk", report.on_disk)
    } else {
        String::new()
    };
    println!(
        "{} files checked ({} with their CRC32{on_disk}) in {} store paths: {}",
        report.checked,
        report.crc_checked,
        layout.store_paths.len(),
        match report.problems.len() {
            0 => "all sound".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        }
    );
    Ok(report.problems.is_empty())
}

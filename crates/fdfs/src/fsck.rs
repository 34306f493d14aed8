//! `fdfs fsck <storage.conf>`: checks a storage's files against its
//! binlog and changes nothing (see fdfs_storage::fsck); with `--repair`,
//! fetches the damaged ones from the group. Exit status 0 when every file
//! is sound (or was repaired), 1 when some is not, 2 when the check could
//! not run.

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
    /// Fetch missing and damaged files from the other servers of the group
    /// (asked from the trackers) and put them in place.
    #[arg(long)]
    pub repair: bool,
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
    if !args.repair || report.problems.is_empty() {
        return Ok(report.problems.is_empty());
    }
    let repaired = repair(&conf, &layout, &report)?;
    let mut left = report.problems.len();
    for (name, r) in &repaired {
        match r {
            Ok(()) => {
                left -= 1;
                println!("{group}{name}: repaired");
            }
            Err(why) => println!("{group}{name}: not repaired: {why}"),
        }
    }
    println!("{} repaired, {left} left", report.problems.len() - left);
    Ok(left == 0)
}

/// Fetches the damaged files of `report` from the group's ACTIVE servers.
fn repair(
    conf: &fdfs_conf::StorageConf,
    layout: &Layout,
    report: &fsck::Report,
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    use fdfs_proto::server::status;
    let group = fdfs_proto::GroupName::new(&conf.group_name)
        .context("--repair needs the group_name of storage.conf")?;
    let bind = conf.daemon.bind_addr.split(',').next().unwrap_or("").trim();
    let trackers = fdfs_storage::sync::link::Trackers {
        list: conf.tracker_servers.clone(),
        bind: bind.parse().ok(),
        connect_timeout: conf.daemon.connect_timeout,
        timeout: conf.daemon.network_timeout,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let servers = trackers
            .list_group(&group)
            .await
            .map_err(|e| anyhow::anyhow!("asking the trackers for {group}: {e}"))?;
        // This server too, if it is listed: its copies are checked against
        // their names like any other before they are used.
        let peers = servers
            .iter()
            .filter(|s| s.status == status::ACTIVE)
            .filter_map(|s| {
                let ip: std::net::IpAddr = s.ip_addr.parse().ok()?;
                Some(std::net::SocketAddr::new(
                    ip,
                    u16::try_from(s.storage_port).ok()?,
                ))
            })
            .collect();
        let source = fsck::Source {
            group,
            peers,
            connect_timeout: conf.daemon.connect_timeout,
            network_timeout: conf.daemon.network_timeout,
        };
        Ok(fsck::repair(layout, report, &source).await)
    })
}

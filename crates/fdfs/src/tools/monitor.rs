//! fdfs_monitor: list groups and storage servers as a tracker sees them,
//! delete a storage server from a group, or set a group's trunk server.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::Context;
use fdfs_client::proto::server::status;
use fdfs_client::proto::tracker::StatBuff;
use fdfs_client::{Client, GroupStat, StorageStat};

/// `fdfs_monitor <conf> [-h tracker_host:port] [list [group] | delete <group> <storage_id> |
/// set_trunk_server <group> [storage_id]]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print help
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Ask this tracker instead of those in the conf
    #[arg(short = 'h', value_name = "tracker_host:port")]
    pub tracker: Option<String>,
    /// client.conf, or storage.conf: any file with tracker_server lines
    pub conf: PathBuf,
    /// `list [group]` (the default), `delete <group> <storage_id>` or
    /// `set_trunk_server <group> [storage_id]`
    #[arg(value_name = "ACTION")]
    pub action: Vec<String>,
}

enum Action {
    List(Option<String>),
    Delete(String, String),
    SetTrunkServer(String, Option<String>),
}

fn parse_action(v: &[String]) -> anyhow::Result<Action> {
    match v.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["list"] => Ok(Action::List(None)),
        ["list", g] => Ok(Action::List(Some(g.to_owned()))),
        ["delete", g, id] => Ok(Action::Delete(g.to_owned(), id.to_owned())),
        ["set_trunk_server", g] => Ok(Action::SetTrunkServer(g.to_owned(), None)),
        ["set_trunk_server", g, id] => {
            Ok(Action::SetTrunkServer(g.to_owned(), Some(id.to_owned())))
        }
        _ => Err(super::invalid(format!(
            "unknown action {:?}: expected `list [group]`, `delete <group> <storage_id>` \
             or `set_trunk_server <group> [storage_id]`",
            v.join(" ")
        ))),
    }
}

fn parse_tracker(s: &str) -> anyhow::Result<SocketAddr> {
    let with_port = if s
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        s.to_owned()
    } else {
        format!("{s}:22122")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| super::invalid(format!("tracker address {s:?} is not host:port")))
}

/// `writeln!` into a String (cannot fail).
macro_rules! out {
    ($o:expr, $($arg:tt)*) => {
        let _ = writeln!($o, $($arg)*);
    };
}

/// `1234567` → `1,234,567`, as upstream prints sizes.
fn commas(v: i64) -> String {
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn time(ts: i64) -> String {
    if ts <= 0 {
        String::new()
    } else {
        fdfs_runtime::clock::format_local(ts)
    }
}

fn rw_mode(m: u8) -> &'static str {
    match m {
        6 => "read-write",
        4 => "read-only",
        2 => "write-only",
        0 => "none",
        _ => "unknown",
    }
}

fn print_group(o: &mut String, i: usize, g: &GroupStat) {
    o.push('\n');
    out!(o, "Group {}:", i + 1);
    out!(o, "group name = {}", g.group_name);
    out!(o, "disk total space = {} MB", commas(g.total_mb));
    out!(o, "disk free space = {} MB", commas(g.free_mb));
    out!(o, "disk reserved space = {} MB", commas(g.reserved_mb));
    out!(o, "trunk free space = {} MB", commas(g.trunk_free_mb));
    out!(o, "storage server count = {}", g.storage_count);
    out!(o, "storage server port = {}", g.storage_port);
    out!(o, "readable server count = {}", g.readable_server_count);
    out!(o, "writable server count = {}", g.writable_server_count);
    out!(o, "store path count = {}", g.store_path_count);
    out!(o, "subdir count per path = {}", g.subdir_count_per_path);
    out!(o, "current write server index = {}", g.current_write_server);
    out!(o, "current trunk file id = {}", g.current_trunk_file_id);
}

fn print_storage(o: &mut String, i: usize, s: &StorageStat) {
    o.push('\n');
    out!(o, "\tStorage {}:", i + 1);
    out!(o, "\t\tid = {}", s.id);
    out!(o, "\t\tip_addr = {}  {}", s.ip_addr, status::name(s.status));
    out!(o, "\t\tversion = {}", s.version);
    out!(o, "\t\trw mode = {}", rw_mode(s.rw_mode));
    out!(o, "\t\tjoin time = {}", time(s.join_time));
    out!(o, "\t\tup time = {}", time(s.up_time));
    out!(o, "\t\ttotal storage = {} MB", commas(s.total_mb));
    out!(o, "\t\tfree storage = {} MB", commas(s.free_mb));
    out!(o, "\t\treserved storage = {} MB", commas(s.reserved_mb));
    out!(o, "\t\tupload priority = {}", s.upload_priority);
    out!(o, "\t\tstore_path_count = {}", s.store_path_count);
    out!(o, "\t\tsubdir_count_per_path = {}", s.subdir_count_per_path);
    out!(o, "\t\tstorage_port = {}", s.storage_port);
    out!(o, "\t\tcurrent_write_path = {}", s.current_write_path);
    out!(o, "\t\tsource storage id = {}", s.src_id);
    out!(o, "\t\tif_trunk_server = {}", u8::from(s.if_trunk_server));
    out!(
        o,
        "\t\tconnection.alloc_count = {}",
        s.stat.connection_alloc_count
    );
    out!(
        o,
        "\t\tconnection.current_count = {}",
        s.stat.connection_current_count
    );
    out!(
        o,
        "\t\tconnection.max_count = {}",
        s.stat.connection_max_count
    );
    for (name, v) in StatBuff::NAMES.iter().zip(s.stat.counters) {
        if name.starts_with("last_") {
            out!(o, "\t\t{name} = {}", time(v));
        } else {
            out!(o, "\t\t{name} = {v}");
        }
    }
}

/// How far `s` has received each peer's changes. The tracker knows, for
/// each server, the source time up to which it has received its peers'
/// changes (the §8.4 aggregate, a lower bound for every peer) and, from
/// each peer's beat, when that peer last changed a file itself: a peer whose
/// last change is older than what `s` has received is caught up.
fn print_sync_progress(o: &mut String, s: &StorageStat, group: &[StorageStat]) {
    let synced = s.stat.get("last_synced_timestamp");
    for peer in group.iter().filter(|p| p.id != s.id) {
        let changed = peer.stat.get("last_source_update");
        let state = if changed <= 0 || synced >= changed {
            "caught up".to_owned()
        } else if synced <= 0 {
            format!("nothing received yet; last change there {}", time(changed))
        } else {
            format!(
                "{} s behind; last change there {}",
                changed - synced,
                time(changed)
            )
        };
        out!(o, "\t\tsync from {} ({}) = {state}", peer.id, peer.ip_addr);
    }
}

async fn list(o: &mut String, client: &Client, group: Option<&str>) -> anyhow::Result<()> {
    let groups = match group {
        Some(g) => vec![client
            .list_group(g)
            .await
            .with_context(|| format!("listing group {g}"))?],
        None => client.list_groups().await.context("listing groups")?,
    };
    out!(o, "group count: {}", groups.len());
    for (i, g) in groups.iter().enumerate() {
        print_group(o, i, g);
        let storages = client
            .list_storages(&g.group_name, None)
            .await
            .with_context(|| format!("listing the storage servers of {}", g.group_name))?;
        for (j, s) in storages.iter().enumerate() {
            print_storage(o, j, s);
            print_sync_progress(o, s, &storages);
        }
    }
    Ok(())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let action = parse_action(&a.action)?;
    let (hosts, opts) = super::conf_trackers(&a.conf)?;
    let trackers = match &a.tracker {
        Some(t) => vec![parse_tracker(t)?],
        None => Client::from_host_ports(&hosts, opts.clone())?
            .trackers()
            .to_vec(),
    };
    match action {
        Action::Delete(g, id) => {
            // Upstream deletes on every tracker of the conf.
            let client = Client::new(trackers, opts)?;
            client
                .delete_storage(&g, &id)
                .await
                .with_context(|| format!("deleting storage server {g}::{id}"))?;
            super::emit(&format!("delete storage server {g}::{id} success\n"))
        }
        Action::SetTrunkServer(g, id) => {
            let client = Client::new(trackers, opts)?;
            let now = client
                .set_trunk_server(&g, id.as_deref())
                .await
                .with_context(|| format!("setting the trunk server of {g}"))?;
            super::emit(&format!("set trunk server {g}::{now} success\n"))
        }
        Action::List(group) => {
            // The first tracker that answers is the one reported on.
            let n = trackers.len();
            let mut last = None;
            for (i, t) in trackers.iter().enumerate() {
                let client = Client::new(vec![*t], opts.clone())?;
                match client.active_test(*t).await {
                    Ok(()) => {
                        let mut o = String::new();
                        out!(o, "server_count={n}, server_index={i}");
                        o.push('\n');
                        out!(o, "tracker server is {t}");
                        o.push('\n');
                        list(&mut o, &client, group.as_deref()).await?;
                        return super::emit(&o);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .map(anyhow::Error::new)
                .unwrap_or_else(|| super::invalid("no tracker")))
            .context("no tracker server answered")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_group_thousands() {
        assert_eq!(commas(0), "0");
        assert_eq!(commas(999), "999");
        assert_eq!(commas(1000), "1,000");
        assert_eq!(commas(1234567), "1,234,567");
        assert_eq!(commas(-1234), "-1,234");
    }

    #[test]
    fn actions_parse_like_upstream() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(matches!(parse_action(&v("")).unwrap(), Action::List(None)));
        assert!(
            matches!(parse_action(&v("list group1")).unwrap(), Action::List(Some(g)) if g == "group1")
        );
        assert!(
            matches!(parse_action(&v("delete group1 s1")).unwrap(), Action::Delete(g, s) if g == "group1" && s == "s1")
        );
        assert!(parse_action(&v("delete group1")).is_err());
        assert!(
            matches!(parse_action(&v("set_trunk_server group1")).unwrap(), Action::SetTrunkServer(g, None) if g == "group1")
        );
        assert!(
            matches!(parse_action(&v("set_trunk_server group1 s2")).unwrap(), Action::SetTrunkServer(g, Some(s)) if s == "s2" && g == "group1")
        );
        assert!(parse_action(&v("set_trunk_server")).is_err());
        assert_eq!(parse_tracker("127.0.0.1").unwrap().port(), 22122);
        assert_eq!(parse_tracker("127.0.0.1:9").unwrap().port(), 9);
    }

    #[test]
    fn sync_progress_compares_received_with_each_peers_last_change() {
        let server = |id: &str, synced: i64, changed: i64| {
            let mut s = StorageStat {
                id: id.into(),
                ip_addr: id.into(),
                ..Default::default()
            };
            s.stat.counters[StatBuff::index("last_synced_timestamp").unwrap()] = synced;
            s.stat.counters[StatBuff::index("last_source_update").unwrap()] = changed;
            s
        };
        let group = [
            server("127.0.0.11", 1_700_000_100, 1_700_000_050),
            server("127.0.0.12", 1_700_000_000, 1_700_000_000),
            server("127.0.0.13", 0, 0),
        ];
        let mut o = String::new();
        print_sync_progress(&mut o, &group[1], &group);
        assert!(
            o.contains("sync from 127.0.0.11 (127.0.0.11) = 50 s behind"),
            "{o}"
        );
        assert!(
            o.contains("sync from 127.0.0.13 (127.0.0.13) = caught up"),
            "{o}"
        );
        let mut o = String::new();
        print_sync_progress(&mut o, &group[0], &group);
        assert!(
            o.contains("sync from 127.0.0.12 (127.0.0.12) = caught up"),
            "{o}"
        );
        let mut o = String::new();
        print_sync_progress(&mut o, &group[2], &group);
        assert!(
            o.contains("sync from 127.0.0.11 (127.0.0.11) = nothing received yet"),
            "{o}"
        );
    }
}

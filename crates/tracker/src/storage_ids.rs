//! The tracker's answers from storage_ids.conf (`use_storage_id = true`):
//! FETCH_STORAGE_IDS (69), GET_SERVER_ID (70), GET_MY_IP (60) and
//! GET_GROUP_NAME (109) of PROTOCOL.md §3 and §6.2. Who may JOIN under which
//! id is decided in [`Cluster::join`](crate::Cluster::join).

use std::net::IpAddr;

use fdfs_conf::{RwMode, StorageIdEntry, StorageIds};
use fdfs_proto::server::StorageBrief;
use fdfs_proto::tracker::FetchStorageIdsResp;
use fdfs_proto::ServerAddr;

use crate::cluster::split_host_port;
use crate::error::TrackerError;
use crate::Cluster;

/// Addresses in replies, for the requester: a server with two addresses in
/// storage_ids.conf is given by the one that suits the requester
/// ([`address_for`]). Nothing changes without storage ids or with one
/// address per server.
impl Cluster {
    fn ip_for_peer(&self, id: &str, peer: IpAddr) -> Option<String> {
        if !self.settings.use_storage_id {
            return None;
        }
        let e = self.settings.storage_ids.by_id(id)?;
        if e.addrs.len() < 2 {
            return None;
        }
        address_for(&e.addrs, peer).map(|a| a.to_string())
    }

    /// Store and fetch answers (101–107).
    pub fn localize_addrs(&self, group: &str, servers: &mut [ServerAddr], peer: IpAddr) {
        if !self.settings.use_storage_id {
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        for a in servers {
            let id = g
                .storages
                .values()
                .find(|s| s.ip == a.ip && s.port == a.port)
                .map(|s| s.id.as_str());
            if let Some(ip) = id.and_then(|id| self.ip_for_peer(id, peer)) {
                a.ip = ip;
            }
        }
    }

    /// A group list or listing record: `id` with its address `ip`.
    pub fn localize_ip(&self, id: &str, ip: &mut String, peer: IpAddr) {
        if let Some(chosen) = self.ip_for_peer(id, peer) {
            *ip = chosen;
        }
    }

    /// The group list sent to a storage in change flags.
    pub fn localize_briefs(&self, list: &mut [StorageBrief], peer: IpAddr) {
        for b in list {
            self.localize_ip(&b.id, &mut b.ip, peer);
        }
    }
}

/// Lines per FETCH_STORAGE_IDS reply; clients page until they have all.
pub const IDS_PER_PAGE: usize = 1024;

/// The reply to FETCH_STORAGE_IDS from `start`: the total and up to
/// [`IDS_PER_PAGE`] lines. A start past the end returns no lines.
pub fn fetch_page(ids: &StorageIds, start: u32) -> FetchStorageIdsResp {
    let total = ids.entries.len();
    let lines = ids
        .entries
        .iter()
        .skip(start as usize)
        .take(IDS_PER_PAGE)
        .map(entry_line)
        .collect();
    FetchStorageIdsResp {
        total_count: u32::try_from(total).unwrap_or(u32::MAX),
        lines,
    }
}

/// `<id> <group> <host>[,<host>][:port][ rw=mode]`, IPv6 in brackets.
pub fn entry_line(e: &StorageIdEntry) -> String {
    let v6 = e.hosts.iter().any(|h| h.contains(':'));
    let hosts = e.hosts.join(",");
    let mut line = format!("{} {} ", e.id, e.group_name);
    if v6 {
        line.push('[');
        line.push_str(&hosts);
        line.push(']');
    } else {
        line.push_str(&hosts);
    }
    if let Some(p) = e.port {
        line.push_str(&format!(":{p}"));
    }
    match e.rw {
        RwMode::Both => {}
        RwMode::Read => line.push_str(" rw=read"),
        RwMode::Write => line.push_str(" rw=write"),
        RwMode::None => line.push_str(" rw=none"),
    }
    line
}

/// GET_SERVER_ID: the id of the server of `group` at `addr` (`ip:port`,
/// `[v6]:port` or a bare IP, which matches any port).
pub fn server_id(ids: &StorageIds, group: &str, addr: &str) -> Result<String, TrackerError> {
    let (host, port) = split_host_port(addr.trim_end_matches('\0'));
    let ip: IpAddr = host
        .parse()
        .map_err(|_| TrackerError::Invalid(format!("{addr:?} is not an IP address and port")))?;
    ids.by_addr(group, ip, port)
        .map(|e| e.id.clone())
        .ok_or_else(|| TrackerError::UnknownId(format!("(none for {addr} in group {group})")))
}

/// GET_MY_IP: the addresses storage_ids.conf gives the server of `group` on
/// `port` that connected from `peer`, comma-separated; `None` when it names
/// none (the caller answers with the peer address).
pub fn my_ips(ids: &StorageIds, group: &str, port: u16, peer: IpAddr) -> Option<String> {
    ids.by_addr(group, peer, Some(port)).map(|e| {
        e.addrs
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// GET_GROUP_NAME: the group of the server at `ip` and `port`.
pub fn group_of(ids: &StorageIds, ip: IpAddr, port: u16) -> Result<&str, TrackerError> {
    ids.entries
        .iter()
        .find(|e| e.has_ip(ip) && e.port_or_default() == port)
        .map(|e| e.group_name.as_str())
        .ok_or_else(|| TrackerError::UnknownId(format!("(none for {ip}:{port})")))
}

/// Of a server's addresses (a storage_ids.conf line may list two: inner
/// and outer, or two inner networks), the one a requester at `peer` should
/// use ("chosen to match the requester's network", PROTOCOL.md §3). Our rule,
/// as the reference gives none: same family first, then same scope (private,
/// loopback or link-local against public), then the most leading octets
/// (IPv6: 16-bit groups) in common with the requester; the first listed wins
/// ties. `None` for an empty list.
pub fn address_for(addrs: &[IpAddr], peer: IpAddr) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    addrs
        .iter()
        .enumerate()
        .max_by_key(|(i, a)| {
            let ip = a.to_canonical();
            (
                ip.is_ipv4() == peer.is_ipv4(),
                is_inner(ip) == is_inner(peer),
                common_prefix_groups(ip, peer),
                std::cmp::Reverse(*i),
            )
        })
        .map(|(_, a)| *a)
}

/// Private, loopback, link-local or unique-local: not reachable from outside.
fn is_inner(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_private() || v.is_loopback() || v.is_link_local(),
        IpAddr::V6(v) => {
            v.is_loopback()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn common_prefix_groups(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros() / 8,
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros() / 16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ids(text: &str) -> StorageIds {
        StorageIds::from_str(text, Path::new("storage_ids.conf")).expect("valid")
    }

    const TABLE: &str = "\
100001 group1 127.0.0.11
100002 group1 127.0.0.12,10.0.0.5:23001 rw=read
100003 group2 [::1]:23002 rw=none
";

    #[test]
    fn lines_say_what_the_file_says() {
        let t = ids(TABLE);
        let page = fetch_page(&t, 0);
        assert_eq!(page.total_count, 3);
        assert_eq!(
            page.lines,
            [
                "100001 group1 127.0.0.11",
                "100002 group1 127.0.0.12,10.0.0.5:23001 rw=read",
                "100003 group2 [::1]:23002 rw=none",
            ]
        );
        // Each line parses back to the same entry.
        let again = ids(&(page.lines.join("\n") + "\n"));
        assert_eq!(again, t);
    }

    #[test]
    fn pages_cover_a_long_table_once() {
        let text: String = (1..=2500)
            .map(|i| format!("{i} group1 127.0.{}.{}\n", i / 250, i % 250 + 1))
            .collect();
        let t = ids(&text);
        let mut seen = Vec::new();
        let mut start = 0u32;
        loop {
            let page = fetch_page(&t, start);
            assert_eq!(page.total_count, 2500);
            assert!(page.lines.len() <= IDS_PER_PAGE);
            start += page.lines.len() as u32;
            seen.extend(page.lines);
            if start == page.total_count {
                break;
            }
        }
        assert_eq!(seen.len(), 2500);
        assert_eq!(seen[2499], "2500 group1 127.0.10.1");
        assert!(fetch_page(&t, 9999).lines.is_empty());
    }

    #[test]
    fn server_id_by_address_and_port() {
        let t = ids(TABLE);
        assert_eq!(
            server_id(&t, "group1", "127.0.0.11:23000").unwrap(),
            "100001"
        );
        assert_eq!(server_id(&t, "group1", "127.0.0.11").unwrap(), "100001");
        assert_eq!(server_id(&t, "group1", "10.0.0.5:23001").unwrap(), "100002");
        assert_eq!(server_id(&t, "group2", "[::1]:23002").unwrap(), "100003");
        // Wrong port, wrong group, unknown address: ENOENT.
        for (g, a) in [
            ("group1", "127.0.0.11:23001"),
            ("group2", "127.0.0.11:23000"),
            ("group1", "127.0.0.99:23000"),
        ] {
            let e = server_id(&t, g, a).unwrap_err();
            assert_eq!(e.errno(), fdfs_proto::errno::ENOENT, "{g} {a}");
        }
        assert_eq!(
            server_id(&t, "group1", "not-an-ip:1").unwrap_err().errno(),
            fdfs_proto::errno::EINVAL
        );
    }

    #[test]
    fn the_address_that_suits_the_requester() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addrs = |v: &[&str]| v.iter().map(|s| ip(s)).collect::<Vec<_>>();
        let pick = |list: &[IpAddr], peer: &str| address_for(list, ip(peer)).map(|a| a.to_string());
        // Inner and outer: inner requesters get the inner one, others the outer.
        let io = addrs(&["10.0.0.5", "203.0.113.7"]);
        assert_eq!(pick(&io, "10.1.2.3").as_deref(), Some("10.0.0.5"));
        assert_eq!(pick(&io, "192.168.1.9").as_deref(), Some("10.0.0.5"));
        assert_eq!(pick(&io, "198.51.100.1").as_deref(), Some("203.0.113.7"));
        assert_eq!(
            pick(&io, "::ffff:198.51.100.1").as_deref(),
            Some("203.0.113.7")
        );
        // Two inner networks: the one the requester is on.
        let two = addrs(&["10.0.0.5", "192.168.1.5"]);
        assert_eq!(pick(&two, "192.168.1.77").as_deref(), Some("192.168.1.5"));
        assert_eq!(pick(&two, "10.9.9.9").as_deref(), Some("10.0.0.5"));
        // Nothing better: the first listed.
        assert_eq!(pick(&two, "172.16.0.1").as_deref(), Some("10.0.0.5"));
        // Family first.
        let mixed = addrs(&["10.0.0.5", "fd00::5"]);
        assert_eq!(pick(&mixed, "fd00::9").as_deref(), Some("fd00::5"));
        assert_eq!(pick(&mixed, "10.0.0.9").as_deref(), Some("10.0.0.5"));
        assert_eq!(pick(&[], "10.0.0.1"), None);
    }

    /// A tracker whose one server has an inner and an outer address; the
    /// server joins from the inner one and turns ACTIVE.
    fn dual_ip_tracker() -> (crate::Tracker, std::net::SocketAddr) {
        use fdfs_proto::server::{DiskUsage, JoinReq};
        use fdfs_proto::GroupName;
        let settings = crate::Settings {
            use_storage_id: true,
            reserved: fdfs_conf::ReservedSpace::Bytes(0),
            ..crate::Settings::default()
        }
        .with_storage_ids(ids("7 group1 127.0.0.11,203.0.113.11\n"));
        let t = crate::Tracker::new(Cluster::new(settings), std::env::temp_dir(), 22122, 16);
        let storage: std::net::SocketAddr = "127.0.0.11:40000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:22122".parse().unwrap();
        let mut session = crate::service::Session::default();
        let mut join = Vec::new();
        JoinReq {
            group: GroupName::new("group1").unwrap(),
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            upload_priority: 10,
            join_time: 0,
            up_time: 1,
            version: "6.16.1".into(),
            init_flag: false,
            status: 0,
            storage_id: "7".into(),
            current_tracker_ip: "127.0.0.1".into(),
            trackers: vec!["127.0.0.1:22122".into()],
        }
        .encode(&mut join);
        let mut usage = Vec::new();
        DiskUsage {
            paths: vec![(1000, 900)],
        }
        .encode(&mut usage);
        for (code, body) in [
            (fdfs_proto::cmd::tracker::STORAGE_JOIN, join),
            (fdfs_proto::cmd::tracker::STORAGE_REPORT_DISK_USAGE, usage),
        ] {
            let r = t.handle(&mut session, code, &body, storage, local, 1_800_000_000);
            assert!(matches!(r, crate::service::Reply::Ok(_)), "{code}: {r:?}");
        }
        (t, local)
    }

    #[test]
    fn replies_give_each_requester_the_address_on_its_network() {
        use fdfs_proto::cmd::tracker as tc;
        use fdfs_proto::tracker::{StorageStat, StoreResp};
        let (t, local) = dual_ip_tracker();
        for (requester, want) in [
            ("127.0.0.5:5000", "127.0.0.11"),
            ("198.51.100.1:5000", "203.0.113.11"),
        ] {
            let peer = requester.parse().unwrap();
            let mut s = crate::service::Session::default();
            let ask = |s: &mut crate::service::Session, code: u8, body: &[u8]| match t.handle(
                s,
                code,
                body,
                peer,
                local,
                1_800_000_000,
            ) {
                crate::service::Reply::Ok(b) => b,
                other => panic!("{code} from {requester}: {other:?}"),
            };
            let store =
                StoreResp::decode(&ask(&mut s, tc::QUERY_STORE_WITHOUT_GROUP_ONE, &[])).unwrap();
            assert_eq!(store.server.ip, want, "upload target for {requester}");
            let mut g = b"group1".to_vec();
            g.resize(16, 0);
            let listed =
                StorageStat::decode_list(&ask(&mut s, tc::SERVER_LIST_STORAGE, &g)).unwrap();
            assert_eq!(listed[0].ip_addr, want, "listing for {requester}");
        }
    }

    #[test]
    fn my_ips_and_group_names() {
        let t = ids(TABLE);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            my_ips(&t, "group1", 23001, ip("10.0.0.5")).as_deref(),
            Some("127.0.0.12,10.0.0.5")
        );
        assert_eq!(my_ips(&t, "group1", 23000, ip("10.0.0.5")), None);
        assert_eq!(group_of(&t, ip("127.0.0.11"), 23000).unwrap(), "group1");
        assert_eq!(group_of(&t, ip("::1"), 23002).unwrap(), "group2");
        assert!(group_of(&t, ip("127.0.0.11"), 23002).is_err());
    }
}

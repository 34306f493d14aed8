//! The tracker's answers from storage_ids.conf (`use_storage_id = true`):
//! FETCH_STORAGE_IDS (69), GET_SERVER_ID (70), GET_MY_IP (60) and
//! GET_GROUP_NAME (109) of PROTOCOL.md §3 and §6.2. Who may JOIN under which
//! id is decided in [`Cluster::join`](crate::Cluster::join).

use std::net::IpAddr;

use fdfs_conf::{RwMode, StorageIdEntry, StorageIds};
use fdfs_proto::tracker::FetchStorageIdsResp;

use crate::error::TrackerError;

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
    let (host, port) = split_addr(addr);
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
    ids.by_addr(group, peer, Some(port))
        .map(|e| e.hosts.join(","))
}

/// GET_GROUP_NAME: the group of the server at `ip` and `port`.
pub fn group_of(ids: &StorageIds, ip: IpAddr, port: u16) -> Result<&str, TrackerError> {
    ids.entries
        .iter()
        .find(|e| e.has_ip(ip) && e.port_or_default() == port)
        .map(|e| e.group_name.as_str())
        .ok_or_else(|| TrackerError::UnknownId(format!("(none for {ip}:{port})")))
}

fn split_addr(addr: &str) -> (&str, Option<u16>) {
    let addr = addr.trim_end_matches('\0');
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (addr, None),
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

//! storage_ids.conf parsing.

use std::net::IpAddr;
use std::path::Path;

use fdfs_conf::*;

fn parse(text: &str) -> Result<StorageIds, ConfError> {
    StorageIds::from_str(text, Path::new("storage_ids.conf"))
}

#[test]
fn config_md_example() {
    let ids = parse(
        "# <id> <group_name> <ip_or_hostname[:port]>\n\
         100001   group1  192.168.0.196\n\
         \n\
         100002   group1  192.168.0.197,10.0.0.5\n\
         100003\tgroup1  [2409:8a20::1]:23001  rw=none\n\
         100004   group2  storage4.lan:23002 rw=Read # trailing comment\n\
         100005   group2  [fd00::1,fd00::2]  rw=write\n",
    )
    .unwrap();
    let e = &ids.entries;
    assert_eq!(e.len(), 5);
    assert_eq!(
        e[0],
        StorageIdEntry {
            id: "100001".into(),
            group_name: "group1".into(),
            hosts: vec!["192.168.0.196".into()],
            addrs: vec!["192.168.0.196".parse::<IpAddr>().unwrap()],
            port: None,
            rw: RwMode::Both,
        }
    );
    assert_eq!(e[1].hosts, ["192.168.0.197", "10.0.0.5"]);
    assert_eq!(
        (e[2].hosts[0].as_str(), e[2].port, e[2].rw),
        ("2409:8a20::1", Some(23001), RwMode::None)
    );
    assert_eq!(
        (e[3].hosts[0].as_str(), e[3].port, e[3].rw),
        ("storage4.lan", Some(23002), RwMode::Read)
    );
    assert_eq!(
        (e[4].hosts.len(), e[4].port, e[4].rw),
        (2, None, RwMode::Write)
    );
    assert_eq!(e[0].port_or_default(), 23000);
    assert!(ids.has_ipv6());
    assert_eq!(ids.by_id("100003").unwrap().group_name, "group1");
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    assert_eq!(ids.by_addr("group1", ip, Some(23000)).unwrap().id, "100002");
    assert!(ids.by_addr("group1", ip, Some(23001)).is_none());
    assert!(ids.by_addr("group2", ip, None).is_none());
    assert_eq!(
        ids.by_addr("group1", "2409:8a20::1".parse().unwrap(), None)
            .unwrap()
            .id,
        "100003"
    );
    ids.check_numeric_ids().unwrap();
    assert_eq!(e[2].numeric_id(), Some(100003));
}

#[test]
fn host_names_are_resolved_only_when_asked() {
    let mut ids = parse("1 group1 storage1.lan\n2 group1 10.0.0.2,ghost.lan:23001\n").unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Parsing never resolves: a name matches nothing yet.
    assert!(ids.entries[0].addrs.is_empty());
    assert!(ids.by_addr("group1", ip("10.1.1.1"), None).is_none());
    let resolver = |name: &str| -> std::io::Result<Vec<IpAddr>> {
        match name {
            "storage1.lan" => Ok(vec!["10.1.1.1".parse().unwrap()]),
            _ => Err(std::io::Error::other("no such host")),
        }
    };
    let warnings = ids.resolve_names(&resolver, Path::new("storage_ids.conf"));
    assert_eq!(ids.by_addr("group1", ip("10.1.1.1"), None).unwrap().id, "1");
    // The other line keeps its literal address and says why not the name.
    assert_eq!(ids.entries[1].addrs, [ip("10.0.0.2")]);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].to_string().contains("cannot resolve ghost.lan"),
        "{}",
        warnings[0]
    );
    // The lines as written are kept (FETCH_STORAGE_IDS sends them).
    assert_eq!(ids.entries[0].hosts, ["storage1.lan"]);
}

#[test]
fn numeric_id_check() {
    let ids = parse("s1 group1 10.0.0.1\n16777215 group1 10.0.0.2\n").unwrap();
    assert_eq!(ids.entries[0].numeric_id(), None);
    assert_eq!(ids.entries[1].numeric_id(), Some(16_777_215));
    let e = ids.check_numeric_ids().unwrap_err();
    assert!(e.contains("\"s1\""), "{e}");
    let ids = parse("16777216 group1 10.0.0.1\n0 group1 10.0.0.2\n").unwrap();
    assert!(ids.entries.iter().all(|e| e.numeric_id().is_none()));
    assert!(!ids.has_ipv6());
}

#[test]
fn errors_name_file_and_line() {
    let cases = [
        ("100001 group1\n", 1),
        ("# ok\n1234567890123456 group1 10.0.0.1\n", 2),
        ("1 group-1 10.0.0.1\n", 1),
        ("1 g 10.0.0.1\n1 g 10.0.0.2\n", 2),
        ("1 g 10.0.0.1:abc\n", 1),
        ("1 g [::1\n", 1),
        ("1 g 10.0.0.1 rw=all\n", 1),
        ("1 g 10.0.0.1 extra\n", 1),
        ("1 g a,b,c\n", 1),
    ];
    for (text, line) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("storage_ids.conf:{line}: ")),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn same_address_twice_warns() {
    let (ids, w) = StorageIds::from_str_with_warnings(
        "1 g 10.0.0.1\n2 g 10.0.0.1:23001\n3 g 10.0.0.1:23000\n",
        Path::new("ids"),
    )
    .unwrap();
    assert_eq!(ids.entries.len(), 3);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, Some(3));
}

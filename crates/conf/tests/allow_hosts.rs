//! allow_hosts through the public API and through tracker.conf.

use std::net::IpAddr;
use std::path::Path;

use fdfs_conf::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn public_api() {
    assert!(AllowHosts::allow_all().allows(ip("198.51.100.1")));
    assert!(AllowHosts::parse(&[]).unwrap().allows(ip("198.51.100.1")));
    assert!(!AllowHosts::deny_all().allows(ip("127.0.0.1")));
    let a = AllowHosts::parse(&strings(&["10.0.1.[1-15,20]", "192.168.0.0/16", "::1"])).unwrap();
    assert!(a.allows(ip("10.0.1.1")) && a.allows(ip("10.0.1.20")) && a.allows(ip("192.168.200.3")));
    assert!(a.allows(ip("::1")));
    assert!(!a.allows(ip("10.0.1.16")) && !a.allows(ip("127.0.0.1")) && !a.allows(ip("::2")));
    assert!(AllowHosts::parse(&strings(&["10.0.1.[1-15"])).is_err());
    assert!(AllowHosts::parse(&strings(&["*"]))
        .unwrap()
        .allows(ip("8.8.4.4")));
}

#[test]
fn hostname_resolved_at_load() {
    // localhost comes from /etc/hosts: no DNS traffic.
    let a = AllowHosts::parse(&strings(&["localhost"])).unwrap();
    assert!(a.allows(ip("127.0.0.1")));
    assert!(!a.allows(ip("10.9.9.9")));
}

#[test]
fn custom_resolver_and_name_ranges() {
    let resolve = |name: &str| -> std::io::Result<Vec<IpAddr>> {
        match name
            .strip_prefix("host")
            .and_then(|r| r.strip_suffix(".domain"))
        {
            Some(n) if n.len() == 2 => Ok(vec![format!("10.1.0.{}", n.parse::<u8>().unwrap())
                .parse()
                .unwrap()]),
            _ => Err(std::io::Error::other("no such host")),
        }
    };
    let (a, w) = AllowHosts::parse_with(
        &strings(&["host[01-08,20-25].domain", "gone.example"]),
        &resolve,
    )
    .unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("gone.example"));
    for n in [1, 8, 20, 25] {
        assert!(a.allows(ip(&format!("10.1.0.{n}"))), "{n}");
    }
    for n in [0, 9, 19, 26] {
        assert!(!a.allows(ip(&format!("10.1.0.{n}"))), "{n}");
    }
}

#[test]
fn lines_add_up_in_tracker_conf() {
    let text =
        "base_path=/t\nallow_hosts=127.0.0.1\nallow_hosts=10.0.0.0/8\nallow_hosts=fd00::/8\n";
    let t = TrackerConf::from_str(text, Path::new("tracker.conf")).unwrap();
    let a = &t.daemon.allow_hosts;
    assert!(!a.is_allow_all());
    assert!(a.allows(ip("127.0.0.1")) && a.allows(ip("10.200.0.1")) && a.allows(ip("fd12::1")));
    assert!(
        a.allows(ip("::ffff:10.0.0.1")),
        "IPv4-mapped IPv6 peers match IPv4 rules"
    );
    assert!(!a.allows(ip("127.0.0.2")) && !a.allows(ip("fe80::1")));

    let t = TrackerConf::from_str(
        "base_path=/t\nallow_hosts=127.0.0.1\nallow_hosts=*\n",
        Path::new("tracker.conf"),
    )
    .unwrap();
    assert!(t.daemon.allow_hosts.allows(ip("203.0.113.1")));

    let e = TrackerConf::from_str(
        "base_path=/t\nallow_hosts=10.0.1.[1-300]\n",
        Path::new("tracker.conf"),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("tracker.conf:2: allow_hosts:"),
        "{e}"
    );
}

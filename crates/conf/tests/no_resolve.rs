//! `set_resolve_names(false)`: host names in allow_hosts are skipped.

use std::net::IpAddr;
use std::path::Path;

use fdfs_conf::*;

#[test]
fn resolution_can_be_turned_off() {
    // A process-wide switch: this file is its own test binary, so no other
    // test sees it.
    set_resolve_names(false);
    let r = TrackerConf::from_str_with_warnings(
        "base_path=/t\nallow_hosts=localhost\n",
        Path::new("t.conf"),
    );
    let (t, w) = r.unwrap();
    assert!(!t
        .daemon
        .allow_hosts
        .allows("127.0.0.1".parse::<IpAddr>().unwrap()));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].to_string()
            .starts_with("t.conf:2: allow_hosts: cannot resolve localhost"),
        "{}",
        w[0]
    );
}

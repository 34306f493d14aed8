//! `stat_layout = 6.10` (our tracker.conf key): a real tracker answers the
//! listings (90/91/92) with the 105-byte group and 612-byte storage records
//! old clients parse, fields at their V6.10 offsets, and our own
//! `fdfs monitor` still lists the cluster from them. A bad value stops the
//! tracker with an error naming the key.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::errno;
use fdfs_proto::server::status;
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{random_loopback, wait_until, write_file, TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

fn group16(name: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.resize(16, 0);
    b
}

fn be(b: &[u8], off: usize) -> i64 {
    i64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// A NUL-padded text field.
fn text(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).unwrap()
}

#[test]
fn old_layouts_on_the_wire_and_through_the_monitor() {
    let dir = TestDir::new("tr-old-layouts");
    let ip = random_loopback();
    let tracker = TrackerProc::start(BIN, dir.path(), ip, &["stat_layout = 6.10"]);
    let storage = StorageProc::start(BIN, dir.path(), ip, "group1", &[tracker.addr], &[]);
    let port = i64::from(storage.addr.port());
    // Wait until the storage is ACTIVE, read through the old layout itself.
    let mut rec = Vec::new();
    let active = wait_until(Duration::from_secs(30), || {
        match Wire::connect(tracker.addr)
            .and_then(|mut w| w.call(tc::SERVER_LIST_STORAGE, &group16("group1")))
        {
            Ok((0, b)) => {
                let up = b.len() == 612 && b[0] == status::ACTIVE;
                rec = b;
                up
            }
            _ => false,
        }
    });
    assert!(
        active,
        "storage never ACTIVE (last 92 reply {} bytes); tracker log:\n{}",
        rec.len(),
        tracker.proc.log_text()
    );

    // 92: one 612-byte record, V5.x–V6.10 offsets.
    let ip_s = ip.to_string();
    assert_eq!(rec[0], status::ACTIVE, "status at 0");
    assert_eq!(
        text(&rec[1..17]),
        ip_s,
        "id at 1 (the IP without storage ids)"
    );
    assert_eq!(text(&rec[17..33]), ip_s, "ip at 17");
    assert_eq!(text(&rec[33..161]), "", "domain name at 33");
    assert_eq!(text(&rec[161..177]), "", "no sync source");
    assert_eq!(&rec[177..183], b"6.16.1", "version at 177");
    assert!(be(&rec, 183) > 1_600_000_000, "join_time at 183");
    assert_eq!(be(&rec, 223), 1, "store_path_count at 223");
    assert_eq!(be(&rec, 231), 8, "subdir_count_per_path at 231");
    assert_eq!(be(&rec, 247), port, "storage_port at 247");
    assert_eq!(be(&rec, 255), 0, "storage_http_port at 255 (unknown)");
    assert_eq!(rec[611], 0, "if_trunk_server");
    // The same storage asked by id; an unknown id is ENOENT.
    let mut w = Wire::connect(tracker.addr).unwrap();
    let mut body = group16("group1");
    body.extend_from_slice(ip_s.as_bytes());
    let (st, one) = w.call(tc::SERVER_LIST_STORAGE, &body).unwrap();
    assert_eq!(
        (st, one.len(), &one[17..17 + ip_s.len()]),
        (0, 612, ip_s.as_bytes())
    );
    let mut body = group16("group1");
    body.extend_from_slice(b"127.9.9.9");
    let (st, none) = w.call(tc::SERVER_LIST_STORAGE, &body).unwrap();
    assert_eq!((st, none.len()), (errno::ENOENT, 0));

    // 91: N × 105 bytes; 90: one record, the same bytes.
    let (st, all) = w.call(tc::SERVER_LIST_ALL_GROUPS, &[]).unwrap();
    assert_eq!((st, all.len()), (0, 105), "1 x 105-byte GroupStat");
    assert_eq!(&all[..7], b"group1\0", "group name at 0");
    assert_eq!(be(&all, 41), 1, "storage count at 41");
    assert_eq!(be(&all, 49), port, "storage port at 49");
    assert_eq!(be(&all, 57), 0, "storage http port at 57 (unknown)");
    assert_eq!(be(&all, 65), 1, "active count at 65");
    assert_eq!(be(&all, 81), 1, "store path count at 81");
    assert_eq!(be(&all, 89), 8, "subdir count per path at 89");
    assert_eq!(be(&all, 97), -1, "no trunk file at 97");
    assert!(be(&all, 17) >= be(&all, 25), "total_mb ≥ free_mb");
    let (st, one) = w
        .call(tc::SERVER_LIST_ONE_GROUP, &group16("group1"))
        .unwrap();
    assert_eq!(st, 0);
    // The same record, but for the space figures (17..33): a storage report
    // between the two calls may change them.
    let without_space = |r: &[u8]| [&r[..17], &r[33..]].concat();
    assert_eq!(one.len(), all.len());
    assert_eq!(without_space(&one), without_space(&all));
    let (st, _) = w
        .call(tc::SERVER_LIST_ONE_GROUP, &group16("nogroup"))
        .unwrap();
    assert_eq!(st, errno::ENOENT);

    // Our monitor reads the old records (by their length).
    let conf = dir.join("client.conf");
    write_file(
        &conf,
        &format!(
            "connect_timeout = 5\nnetwork_timeout = 30\nbase_path = {}\ntracker_server = {}\n",
            dir.path().display(),
            tracker.addr
        ),
    );
    for args in [vec!["monitor"], vec!["monitor", "list", "group1"]] {
        let mut argv = args.clone();
        argv.insert(1, conf.to_str().unwrap());
        let out = Command::new(BIN).args(&argv).output().unwrap();
        let m = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{argv:?}: {:?}\n{m}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "group count: 1".to_owned(),
            "group name = group1".to_owned(),
            "storage server count = 1".to_owned(),
            "writable server count = 1".to_owned(),
            format!("storage server port = {port}"),
            format!("ip_addr = {ip_s}  ACTIVE"),
            "version = 6.16.1".to_owned(),
            format!("storage_port = {port}"),
        ] {
            assert!(m.contains(&want), "{argv:?}: no {want:?} in\n{m}");
        }
    }
}

#[test]
fn a_bad_stat_layout_stops_the_tracker_naming_the_key() {
    let dir = TestDir::new("tr-old-layouts-bad");
    let ip = Ipv4Addr::LOCALHOST;
    let port = fdfs_testkit::free_port(ip);
    let base = dir.join("tracker");
    std::fs::create_dir_all(&base).unwrap();
    let conf = base.join("tracker.conf");
    write_file(
        &conf,
        &TrackerProc::conf_text(ip, port, &base, &["stat_layout = 6.12"]),
    );
    let mut t = TrackerProc::start_with_conf(BIN, &conf, (ip, port).into(), &base);
    let code = t.proc.wait_exit(Duration::from_secs(10));
    let log = t.proc.log_text();
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}; log:\n{log}"
    );
    assert!(
        log.contains("stat_layout") && log.contains("6.12"),
        "the error names the key and value:\n{log}"
    );
}

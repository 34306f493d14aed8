//! Interoperability with third-party clients from PyPI: tests/interop/
//! python_client.py drives py3Fdfs 2.2.0 (module `fdfs_client`, 15-byte IP
//! fields) and fastdfs-client 1.3.0 (module `fastdfs_client`, 45-byte IP
//! fields) against a real cluster of ours (one tracker, two storages of
//! group1): upload, whole and ranged downloads, metadata, appender files,
//! delete, every byte checked. With `stat_layout = 6.10` (our tracker.conf
//! key) both also list the groups and storages: they parse only the V6.10
//! records (105/612 bytes; fastdfs-client too, despite its 46-byte IPs
//! elsewhere).
//!
//! The libraries must be installed (`.ci/run` does it with pinned
//! versions); when one is missing its test fails with the install command
//! rather than skipping, so CI cannot silently stop checking interop.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::server::status;
use fdfs_proto::tracker::StorageStat;
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{free_port, random_loopback, wait_until, TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/python_client.py")
}

fn require_python_module(module: &str, pip: &str) {
    let out = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Python FastDFS client {module} is not installed ({}); run: python3 -m pip install {pip}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 cannot be run ({e}); install Python 3 and {pip}"),
    }
}

/// Two storages of group1 on two loopback addresses and one port: the
/// members of a group must share a port (the tracker refuses a join with
/// another one).
fn start_storages(dir: &TestDir, tracker: &TrackerProc) -> Vec<StorageProc> {
    let a = random_loopback();
    let [_, _, c, d] = a.octets();
    let b = Ipv4Addr::new(127, 0, c, if d >= 250 { 2 } else { d + 1 });
    let free_on_both = || loop {
        let p = free_port(a);
        if std::net::TcpListener::bind((b, p)).is_ok() {
            break p;
        }
    };
    let port = free_on_both();
    // Their built-in HTTP too (one port as well), for the script's --http.
    let http_port = loop {
        let p = free_on_both();
        if p != port {
            break p;
        }
    };
    let http = format!("http.server_port = {http_port}");
    [a, b]
        .into_iter()
        .map(|ip| {
            StorageProc::start_at(
                BIN,
                dir.path(),
                ip,
                port,
                "group1",
                &[tracker.addr],
                &[&http],
                &[],
            )
        })
        .collect()
}

/// Where the storages of [`start_storages`] serve HTTP (from their conf).
fn http_addrs(storages: &[StorageProc]) -> String {
    storages
        .iter()
        .map(|s| {
            let conf = std::fs::read_to_string(&s.conf).unwrap();
            let port = conf
                .lines()
                .find_map(|l| l.trim().strip_prefix("http.server_port"))
                .and_then(|v| v.trim().trim_start_matches('=').trim().parse::<u16>().ok())
                .expect("http.server_port in storage.conf");
            format!("{}:{port}", s.addr.ip())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts a cluster whose tracker gets `tracker_extra` lines, runs the
/// script with `--library library` (and, with `listing`, `--list` naming the
/// group and its storages) and asserts it passed.
fn run_against_cluster(library: &str, tracker_extra: &[&str], listing: bool) {
    let dir = TestDir::new("interop-python");
    let tracker = TrackerProc::start(BIN, dir.path(), random_loopback(), tracker_extra);
    let storages = start_storages(&dir, &tracker);
    // Both ACTIVE (read in whichever layout the tracker sends).
    let mut seen = Vec::new();
    let active = wait_until(Duration::from_secs(30), || {
        let mut body = b"group1".to_vec();
        body.resize(16, 0);
        seen = Wire::connect(tracker.addr)
            .and_then(|mut w| w.call(tc::SERVER_LIST_STORAGE, &body))
            .ok()
            .filter(|(st, _)| *st == 0)
            .and_then(|(_, b)| StorageStat::decode_list_any(&b).ok())
            .map(|l| l.iter().map(|s| (s.ip_addr.clone(), s.status)).collect())
            .unwrap_or_default();
        seen.len() == 2 && seen.iter().all(|(_, st)| *st == status::ACTIVE)
    });
    assert!(
        active,
        "the storages did not both become ACTIVE ({seen:?}); tracker log:\n{}\nstorage logs:\n{}\n{}",
        tracker.proc.log_text(),
        storages[0].proc.log_text(),
        storages[1].proc.log_text(),
    );

    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args(["--library", library])
        .args(["--tracker", &tracker.addr.to_string()])
        .args(["--http", &http_addrs(&storages)]);
    if listing {
        let addrs: Vec<String> = storages.iter().map(|s| s.addr.to_string()).collect();
        cmd.args(["--list", &format!("group1={}", addrs.join(","))]);
    }
    let out = cmd.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python_client.py --library {library} failed ({}):\n{stdout}\n{stderr}\n\
         tracker log:\n{}\nstorage logs:\n{}\n{}",
        out.status,
        tracker.proc.log_text(),
        storages[0].proc.log_text(),
        storages[1].proc.log_text(),
    );
    assert!(
        stdout.contains("checks passed"),
        "unexpected output:\n{stdout}\n{stderr}"
    );
}

/// py3Fdfs expects the classic 40-byte store reply (15-byte IP fields):
/// what the tracker sends by default (`response_ip_addr_size = auto`).
#[test]
fn py3fdfs_uploads_ranges_metadata_appends_and_deletes() {
    require_python_module("fdfs_client.client", "py3Fdfs==2.2.0");
    run_against_cluster("py3fdfs", &[], false);
}

/// py3Fdfs's listing calls (list_all_groups, list_one_group, list_servers)
/// parse the 105-byte group and 612-byte storage records: they see our
/// group and both storages once the tracker sends the old layouts.
#[test]
fn py3fdfs_lists_groups_and_storages_with_stat_layout_6_10() {
    require_python_module("fdfs_client.client", "py3Fdfs==2.2.0");
    run_against_cluster("py3fdfs", &["stat_layout = 6.10"], true);
}

/// fastdfs-client hard-codes 46-byte IP sizes (the V6.11–V6.13 layout, a
/// 70-byte store reply): it works once the tracker is told to answer with
/// IPv6-sized fields.
#[test]
fn fastdfs_client_works_with_ipv6_sized_responses() {
    require_python_module("fastdfs_client", "fastdfs-client==1.3.0");
    run_against_cluster("fastdfs-client", &["response_ip_addr_size = IPv6"], false);
}

/// fastdfs-client's listing calls parse the same V6.10 records as py3Fdfs
/// (16-byte IPs there, while its store and fetch replies need 46-byte
/// ones): both keys together give it every command.
#[test]
fn fastdfs_client_lists_groups_and_storages_with_stat_layout_6_10() {
    require_python_module("fastdfs_client", "fastdfs-client==1.3.0");
    run_against_cluster(
        "fastdfs-client",
        &["response_ip_addr_size = IPv6", "stat_layout = 6.10"],
        true,
    );
}

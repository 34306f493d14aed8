//! Interoperability with third-party clients from PyPI: tests/interop/
//! python_client.py drives py3Fdfs 2.2.0 (module `fdfs_client`, 15-byte IP
//! fields) and fastdfs-client 1.3.0 (module `fastdfs_client`, 45-byte IP
//! fields) against a real cluster of ours (one tracker, two storages of
//! group1): upload, whole and ranged downloads, metadata, appender files,
//! delete, every byte checked.
//!
//! The libraries must be installed (`.ci/run` does it with pinned
//! versions); when one is missing its test fails with the install command
//! rather than skipping, so CI cannot silently stop checking interop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fdfs_proto::cmd::tracker as tc;
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{random_loopback, wait_until, TestDir, TrackerProc, Wire};

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

/// Starts a cluster whose tracker gets `tracker_extra` lines, runs the
/// script with `--library library` and asserts it passed.
fn run_against_cluster(library: &str, tracker_extra: &[&str]) {
    let dir = TestDir::new("interop-python");
    let tracker = TrackerProc::start(BIN, dir.path(), random_loopback(), tracker_extra);
    let storages: Vec<StorageProc> = (0..2)
        .map(|_| {
            StorageProc::start(
                BIN,
                dir.path(),
                random_loopback(),
                "group1",
                &[tracker.addr],
                &[],
            )
        })
        .collect();
    let writable = wait_until(Duration::from_secs(30), || {
        Wire::connect(tracker.addr)
            .and_then(|mut w| w.call(tc::QUERY_STORE_WITHOUT_GROUP_ONE, &[]))
            .is_ok_and(|(st, _)| st == 0)
    });
    assert!(
        writable,
        "no storage became writable; log:\n{}",
        storages[0].proc.log_text()
    );

    let out = Command::new("python3")
        .arg(script())
        .args(["--library", library])
        .args(["--tracker", &tracker.addr.to_string()])
        .output()
        .expect("run python3");
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
    run_against_cluster("py3fdfs", &[]);
}

/// fastdfs-client hard-codes 46-byte IP sizes (the V6.11–V6.13 layout, a
/// 70-byte store reply): it works once the tracker is told to answer with
/// IPv6-sized fields.
#[test]
fn fastdfs_client_works_with_ipv6_sized_responses() {
    require_python_module("fastdfs_client", "fastdfs-client==1.3.0");
    run_against_cluster("fastdfs-client", &["response_ip_addr_size = IPv6"]);
}

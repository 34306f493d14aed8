//! The command-line tools against a real cluster: one `fdfs tracker` and
//! one `fdfs storage` process on loopback, driven through the tools exactly
//! as the deployment guide runs them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::{FileId, FileKind};
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{wait_until, TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

struct Cluster {
    dir: TestDir,
    _tracker: TrackerProc,
    storage: StorageProc,
    conf: PathBuf,
}

fn cluster() -> Cluster {
    let dir = TestDir::new("tools-cli");
    let tracker = TrackerProc::start(BIN, dir.path(), Ipv4Addr::LOCALHOST, &[]);
    let storage = StorageProc::start(
        BIN,
        dir.path(),
        Ipv4Addr::LOCALHOST,
        "group1",
        &[tracker.addr],
        &[],
    );
    // Uploads work once the storage is ACTIVE at the tracker.
    let ready = wait_until(Duration::from_secs(30), || {
        Wire::connect(tracker.addr)
            .and_then(|mut w| w.call(tc::QUERY_STORE_WITHOUT_GROUP_ONE, &[]))
            .is_ok_and(|(st, _)| st == 0)
    });
    assert!(
        ready,
        "storage never became writable; log:\n{}",
        storage.proc.log_text()
    );
    let conf = dir.join("client.conf");
    std::fs::write(
        &conf,
        format!(
            "connect_timeout = 5\nnetwork_timeout = 30\nbase_path = {}\ntracker_server = {}\n",
            dir.path().display(),
            tracker.addr
        ),
    )
    .unwrap();
    Cluster {
        dir,
        _tracker: tracker,
        storage,
        conf,
    }
}

fn run_in(cwd: &Path, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(info: &'a str, key: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} in\n{info}"))
}

fn content(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

#[test]
fn tools_against_a_real_cluster() {
    let c = cluster();
    let work = c.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = c.conf.to_str().unwrap();
    let data = content(300_000, 7);
    std::fs::write(work.join("ll.bin"), &data).unwrap();

    // Upload (the guide's `fdfs_upload_file /etc/fdfs/client.conf ll.zip`),
    // through an installed argv[0] link.
    let bin = c.dir.join("bin");
    ok(&run_in(&work, BIN, &["install", bin.to_str().unwrap()]));
    let id = ok(&run_in(
        &work,
        bin.join("fdfs_upload_file"),
        &[conf, "ll.bin"],
    ))
    .trim()
    .to_owned();
    let fid = FileId::parse(&id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
    assert_eq!(fid.group.as_str(), "group1");
    assert_eq!(fid.logic.ext(), "bin");
    assert_eq!(fid.logic.info.file_size(), Some(data.len() as u64));
    assert_eq!(fid.logic.info.crc32, crc32fast::hash(&data));

    // Download whole (default name = the id's base name) and a range.
    ok(&run_in(&work, BIN, &["download-file", conf, &id]));
    assert!(std::fs::read(work.join(&fid.logic.name)).unwrap() == data);
    ok(&run_in(
        &work,
        BIN,
        &["download_file", conf, &id, "part.bin", "1000", "5000"],
    ));
    assert_eq!(
        std::fs::read(work.join("part.bin")).unwrap(),
        data[1000..6000]
    );

    // File info agrees with the local file and fdfs_crc32.
    let info = ok(&run_in(&work, BIN, &["file-info", conf, &id]));
    assert_eq!(field(&info, "file type: "), "normal");
    assert_eq!(field(&info, "file size: "), data.len().to_string());
    assert_eq!(field(&info, "source ip address: "), "127.0.0.1");
    let crc = crc32fast::hash(&data);
    assert_eq!(field(&info, "file crc32: "), format!("{crc} (0x{crc:08X})"));
    let local = ok(&run_in(&work, BIN, &["crc32", "ll.bin"]));
    assert_eq!(local.trim(), crc.to_string());

    // Appender: upload, append, download the concatenation.
    let more = content(70_000, 9);
    std::fs::write(work.join("more.log"), &more).unwrap();
    let aid = ok(&run_in(&work, BIN, &["upload-appender", conf, "ll.bin"]))
        .trim()
        .to_owned();
    assert_eq!(FileId::parse(&aid).unwrap().logic.kind, FileKind::Appender);
    ok(&run_in(
        &work,
        BIN,
        &["append-file", conf, &aid, "more.log"],
    ));
    ok(&run_in(
        &work,
        BIN,
        &["download-file", conf, &aid, "joined.bin"],
    ));
    let mut joined = data.clone();
    joined.extend_from_slice(&more);
    assert!(std::fs::read(work.join("joined.bin")).unwrap() == joined);
    let info = ok(&run_in(&work, BIN, &["file-info", conf, &aid]));
    assert_eq!(field(&info, "file type: "), "appender");
    assert_eq!(field(&info, "file size: "), joined.len().to_string());
    // Appending to a normal file is refused before any I/O.
    let out = run_in(&work, BIN, &["append-file", conf, &id, "more.log"]);
    assert_eq!(out.status.code(), Some(22));

    // Monitor, with client.conf and with the storage's own storage.conf.
    for cf in [conf, c.storage.conf.to_str().unwrap()] {
        let m = ok(&run_in(&work, BIN, &["monitor", cf]));
        assert!(m.contains("group count: 1"), "{m}");
        assert!(m.contains("group name = group1"), "{m}");
        assert!(m.contains("ip_addr = 127.0.0.1  ACTIVE"), "{m}");
        assert!(
            m.contains(&format!("storage_port = {}", c.storage.addr.port())),
            "{m}"
        );
    }

    // Delete; the download then fails with ENOENT and a non-zero exit.
    ok(&run_in(&work, BIN, &["delete-file", conf, &id]));
    let out = run_in(&work, BIN, &["download-file", conf, &id, "gone.bin"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ENOENT") && err.contains("errno 2"), "{err}");
    assert!(!work.join("gone.bin").exists());
    let out = run_in(&work, BIN, &["delete-file", conf, &id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The command-line tools against a real cluster: one `fdfs tracker` and
//! one `fdfs storage` process on loopback, driven through the tools exactly
//! as the deployment guide runs them.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::{FileId, FileKind};
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{wait_until, TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

struct Cluster {
    _tracker: TrackerProc,
    storage: StorageProc,
    conf: PathBuf,
    /// Last: fields drop in order, and the folder must go after the
    /// processes writing into it.
    dir: TestDir,
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

/// Runs a tool to its end; kills it and fails the test when it is still
/// running after a minute.
fn run_in(cwd: &Path, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let prog = prog.as_ref();
    let mut child = Command::new(prog)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = None;
    if !wait_until(Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{prog:?} {args:?} still running after 60 s");
    }
    Output {
        status: status.unwrap(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A run that failed with exit code `code` and `ename` in its message.
fn fails(out: &Output, code: i32, ename: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(ename) && err.contains(&format!("errno {code}")),
        "{err}"
    );
    err
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

#[test]
fn appender_metadata_and_slave_tools() {
    let c = cluster();
    let work = c.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = c.conf.to_str().unwrap();
    let base = content(100_000, 11);
    let tail = content(20_000, 12);
    let patch = content(5_000, 13);
    std::fs::write(work.join("base.bin"), &base).unwrap();
    std::fs::write(work.join("tail.bin"), &tail).unwrap();
    std::fs::write(work.join("patch.bin"), &patch).unwrap();
    let download = |id: &str| {
        ok(&run_in(&work, BIN, &["download-file", conf, id, "got.bin"]));
        std::fs::read(work.join("got.bin")).unwrap()
    };
    let size_of = |id: &str| {
        let info = ok(&run_in(&work, BIN, &["file-info", conf, id]));
        field(&info, "file size: ").parse::<usize>().unwrap()
    };

    // Appender: upload, append, overwrite in the middle and across the
    // end, truncate.
    let aid = ok(&run_in(&work, BIN, &["upload-appender", conf, "base.bin"]))
        .trim()
        .to_owned();
    ok(&run_in(
        &work,
        BIN,
        &["append-file", conf, &aid, "tail.bin"],
    ));
    let mut want = [&base[..], &tail[..]].concat();
    ok(&run_in(
        &work,
        BIN,
        &["modify-file", conf, &aid, "90000", "patch.bin"],
    ));
    want[90_000..95_000].copy_from_slice(&patch);
    ok(&run_in(
        &work,
        BIN,
        &["modify-file", conf, &aid, "118000", "patch.bin"],
    ));
    want.truncate(118_000);
    want.extend_from_slice(&patch);
    assert_eq!(size_of(&aid), 123_000);
    ok(&run_in(
        &work,
        BIN,
        &["truncate-file", conf, &aid, "110000"],
    ));
    want.truncate(110_000);
    assert!(download(&aid) == want);

    // Regenerate: a normal file with a new name; the old one is gone.
    let nid = ok(&run_in(&work, BIN, &["regenerate-filename", conf, &aid]))
        .trim()
        .to_owned();
    assert_ne!(nid, aid);
    let fid = FileId::parse(&nid).unwrap_or_else(|e| panic!("{nid:?}: {e}"));
    assert_eq!(fid.logic.kind, FileKind::Normal);
    assert_eq!(fid.logic.info.file_size(), Some(want.len() as u64));
    assert_eq!(fid.logic.info.crc32, crc32fast::hash(&want));
    assert!(download(&nid) == want);
    let out = run_in(&work, BIN, &["download-file", conf, &aid, "old.bin"]);
    fails(&out, 2, "ENOENT");
    assert!(!work.join("old.bin").exists());
    fails(
        &run_in(&work, BIN, &["regenerate_filename", conf, &aid]),
        2,
        "ENOENT",
    );
    fails(
        &run_in(&work, BIN, &["modify-file", conf, &aid, "0", "patch.bin"]),
        2,
        "ENOENT",
    );
    // A normal file has no name to regenerate; refused before any I/O.
    let err = fails(
        &run_in(&work, BIN, &["regenerate-filename", conf, &nid]),
        22,
        "EINVAL",
    );
    assert!(err.contains("not an appender"), "{err}");

    // Truncate to the default size 0, append, regenerate through the
    // installed fdfs_regenerate_filename link.
    let bin = c.dir.join("bin");
    ok(&run_in(&work, BIN, &["install", bin.to_str().unwrap()]));
    let link = bin.join("fdfs_regenerate_filename");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::fs::canonicalize(BIN).unwrap()
    );
    let aid2 = ok(&run_in(&work, BIN, &["upload-appender", conf, "tail.bin"]))
        .trim()
        .to_owned();
    ok(&run_in(&work, BIN, &["truncate-file", conf, &aid2]));
    assert_eq!(size_of(&aid2), 0);
    ok(&run_in(
        &work,
        BIN,
        &["append-file", conf, &aid2, "patch.bin"],
    ));
    let nid2 = ok(&run_in(&work, &link, &[conf, &aid2])).trim().to_owned();
    assert_eq!(
        FileId::parse(&nid2).unwrap().logic.kind,
        FileKind::Normal,
        "{nid2}"
    );
    assert!(download(&nid2) == patch);

    // Metadata: overwrite (the default), merge, overwrite again; the
    // server returns it sorted by name.
    let get = |id: &str| ok(&run_in(&work, BIN, &["get-metadata", conf, id]));
    ok(&run_in(
        &work,
        BIN,
        &["set-metadata", conf, &nid, "width=100", "author=bob"],
    ));
    assert_eq!(get(&nid), "author=bob\nwidth=100\n");
    ok(&run_in(
        &work,
        BIN,
        &[
            "set-metadata",
            conf,
            &nid,
            "width=200",
            "color=a=b",
            "--merge",
        ],
    ));
    assert_eq!(get(&nid), "author=bob\ncolor=a=b\nwidth=200\n");
    ok(&run_in(&work, BIN, &["set-metadata", conf, &nid, "only="]));
    assert_eq!(get(&nid), "only=\n");
    // A pair without '=' is a usage error, and nothing is changed.
    let err = fails(
        &run_in(
            &work,
            BIN,
            &["set-metadata", conf, &nid, "x=1", "novalue", "--merge"],
        ),
        22,
        "EINVAL",
    );
    assert!(err.contains("\"novalue\" is not name=value"), "{err}");
    assert_eq!(get(&nid), "only=\n");
    // Clearing leaves none: get-metadata then answers ENOENT, as the
    // server does for a file without metadata.
    ok(&run_in(
        &work,
        BIN,
        &["set-metadata", conf, &nid, "--clear"],
    ));
    fails(
        &run_in(&work, BIN, &["get-metadata", conf, &nid]),
        2,
        "ENOENT",
    );
    let usage = run_in(&work, BIN, &["set-metadata", conf, &nid, "a=b", "--clear"]);
    assert!(!usage.status.success(), "pairs and --clear together");
    ok(&run_in(&work, BIN, &["set-metadata", conf, &nid, "only="]));
    // A missing file.
    fails(
        &run_in(&work, BIN, &["set-metadata", conf, &aid, "a=b"]),
        2,
        "ENOENT",
    );
    fails(
        &run_in(&work, BIN, &["get-metadata", conf, &aid]),
        2,
        "ENOENT",
    );

    // Slaves of a normal file: the local file's extension, or the one given.
    std::fs::write(work.join("thumb.png"), &patch).unwrap();
    let stem = nid.rsplit_once('.').map_or(nid.as_str(), |(s, _)| s);
    let sid = ok(&run_in(
        &work,
        BIN,
        &["upload-slave", conf, &nid, "_150x150", "thumb.png"],
    ))
    .trim()
    .to_owned();
    assert_eq!(sid, format!("{stem}_150x150.png"));
    assert!(download(&sid) == patch);
    let sid = ok(&run_in(
        &work,
        BIN,
        &["upload-slave", conf, &nid, "_s", "base.bin", "jpg"],
    ))
    .trim()
    .to_owned();
    assert_eq!(sid, format!("{stem}_s.jpg"));
    assert!(download(&sid) == base);
    fails(
        &run_in(
            &work,
            BIN,
            &["upload-slave", conf, &aid, "_150x150", "thumb.png"],
        ),
        2,
        "ENOENT",
    );
}

//! The command-line tools against in-process fake servers (std TCP
//! listeners on 127.0.0.1:0 answering frames built with fdfs_proto): exit
//! codes, messages, outputs and local files, without a real cluster.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fdfs_proto::common::ServerAddr;
use fdfs_proto::file_id::{ext_part, LogicName, NameInfo, SourceServer};
use fdfs_proto::storage::{FileIdResp, FileInfoResp, UploadHead};
use fdfs_proto::tracker::{FetchResp, GroupStat, StorageStat, StoreResp};
use fdfs_proto::{cmd, GroupName, Header, IpSize, HEADER_LEN};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

type Handler = dyn Fn(u8, u8, &[u8]) -> (u8, Vec<u8>) + Send + Sync;

struct Fake {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

/// A server answering each request with `handler(cmd, status, body)`.
fn fake(handler: impl Fn(u8, u8, &[u8]) -> (u8, Vec<u8>) + Send + Sync + 'static) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    let h: Arc<Handler> = Arc::new(handler);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            std::thread::spawn(move || loop {
                let mut hb = [0u8; HEADER_LEN];
                if s.read_exact(&mut hb).is_err() {
                    return;
                }
                let hd = Header::decode(&hb, 1 << 30).unwrap();
                let mut body = vec![0u8; hd.pkg_len as usize];
                if s.read_exact(&mut body).is_err() {
                    return;
                }
                let (st, b) = h(hd.cmd, hd.status, &body);
                let mut out = Header::response(st, b.len() as u64).encode().to_vec();
                out.extend_from_slice(&b);
                if s.write_all(&out).is_err() {
                    return;
                }
            });
        }
    });
    Fake { addr, accepts }
}

fn group() -> GroupName {
    GroupName::new("group1").unwrap()
}

fn server(a: SocketAddr) -> ServerAddr {
    ServerAddr {
        ip: a.ip().to_string(),
        port: a.port(),
    }
}

/// A tracker sending every query to `storage`, and listing one group with
/// one ACTIVE storage.
fn tracker_for(storage: SocketAddr) -> Fake {
    fake(move |c, _, _| {
        let mut b = Vec::new();
        match c {
            101 | 104 => StoreResp {
                group: group(),
                server: server(storage),
                store_path_index: 0,
                ip_size: IpSize::V4,
            }
            .encode(&mut b),
            102 | 103 => FetchResp {
                group: group(),
                servers: vec![server(storage)],
                ip_size: IpSize::V4,
            }
            .encode(&mut b),
            91 | 90 => GroupStat {
                group_name: "group1".into(),
                total_mb: 1_234_567,
                free_mb: 1000,
                storage_count: 1,
                storage_port: storage.port() as i64,
                readable_server_count: 1,
                writable_server_count: 1,
                store_path_count: 1,
                subdir_count_per_path: 256,
                ..GroupStat::default()
            }
            .encode(&mut b),
            92 => StorageStat {
                status: 7,
                rw_mode: 6,
                id: "127.0.0.1".into(),
                ip_addr: "127.0.0.1".into(),
                version: "6.16.1".into(),
                join_time: 1_700_000_000,
                total_mb: 2048,
                free_mb: 1024,
                storage_port: storage.port() as i64,
                ..StorageStat::default()
            }
            .encode(&mut b),
            cmd::ACTIVE_TEST => {}
            _ => return (22, Vec::new()),
        }
        (0, b)
    })
}

fn name(size: u64, crc: u32, ext: &str) -> LogicName {
    let info = NameInfo {
        source: SourceServer::Ip("127.0.0.1".parse().unwrap()),
        timestamp: 1_700_000_000,
        size_field: NameInfo::size_field_for(size, false, 99),
        crc32: crc,
    };
    LogicName::build(0, 0, 0, info, None, &ext_part(ext, 123).unwrap())
}

fn client_conf(dir: &Path, tracker: SocketAddr) -> PathBuf {
    let p = dir.join("client.conf");
    std::fs::write(
        &p,
        format!(
            "connect_timeout = 2\nnetwork_timeout = 5\nbase_path = {}\ntracker_server = {tracker}\n",
            dir.display()
        ),
    )
    .unwrap();
    p
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn crc32_prints_the_ieee_crc_in_decimal() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("data.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    let out = run(dir.path(), &["crc32", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), crc32fast::hash(&data).to_string());

    let out = run(dir.path(), &["crc32", "missing.bin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ENOENT, errno 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn install_links_every_name_and_the_links_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let out = run(dir.path(), &["install", bin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exe = std::fs::canonicalize(BIN).unwrap();
    for n in [
        "fdfs_trackerd",
        "fdfs_storaged",
        "fdfs_upload_file",
        "fdfs_download_file",
        "fdfs_delete_file",
        "fdfs_file_info",
        "fdfs_upload_appender",
        "fdfs_append_file",
        "fdfs_regenerate_filename",
        "fdfs_crc32",
        "fdfs_monitor",
    ] {
        assert_eq!(std::fs::read_link(bin.join(n)).unwrap(), exe, "{n}");
    }
    // Installing again replaces the links.
    assert!(run(dir.path(), &["install", bin.to_str().unwrap()])
        .status
        .success());

    std::fs::write(dir.path().join("x"), b"abc").unwrap();
    let out = Command::new(bin.join("fdfs_crc32"))
        .arg("x")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        crc32fast::hash(b"abc").to_string()
    );
    // A usage error of an installed name exits EINVAL (22), not 2, which
    // is ENOENT for our tools.
    let out = Command::new(bin.join("fdfs_crc32"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(22), "{}", text(&out.stderr));

    // A regular file in the way is not replaced without --force.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("fdfs_crc32"), b"keep").unwrap();
    let out = run(dir.path(), &["install", other.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(other.join("fdfs_crc32")).unwrap(), b"keep");
    assert!(
        run(dir.path(), &["install", "--force", other.to_str().unwrap()])
            .status
            .success()
    );
    assert!(std::fs::symlink_metadata(other.join("fdfs_crc32"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn upload_prints_the_id_and_sends_the_extension() {
    let storage = fake(|c, _, body| {
        assert!(c == 11 || c == 23);
        let head = UploadHead::decode(&body[..UploadHead::LEN], body.len() as u64).unwrap();
        assert_eq!(head.ext, "zip");
        let content = &body[UploadHead::LEN..];
        assert_eq!(content, b"zip bytes");
        let mut b = Vec::new();
        FileIdResp {
            group: group(),
            filename: name(content.len() as u64, crc32fast::hash(content), &head.ext),
        }
        .encode(&mut b);
        (0, b)
    });
    let tracker = tracker_for(storage.addr);
    let dir = tempfile::tempdir().unwrap();
    let conf = client_conf(dir.path(), tracker.addr);
    std::fs::write(dir.path().join("ll.zip"), b"zip bytes").unwrap();
    let expect = format!("group1/{}", name(9, crc32fast::hash(b"zip bytes"), "zip"));
    for tool in ["upload_file", "upload-appender"] {
        let out = run(dir.path(), &[tool, conf.to_str().unwrap(), "ll.zip"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), expect);
    }
    // Straight to the storage: the tracker is not asked.
    let before = tracker.accepts.load(Ordering::SeqCst);
    let s = storage.addr.to_string();
    let out = run(
        dir.path(),
        &["upload-file", conf.to_str().unwrap(), "ll.zip", &s, "0"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tracker.accepts.load(Ordering::SeqCst), before);
}

#[test]
fn failed_download_exits_with_the_errno_and_leaves_no_file() {
    let storage = fake(|_, _, _| (2, Vec::new()));
    let tracker = tracker_for(storage.addr);
    let dir = tempfile::tempdir().unwrap();
    let conf = client_conf(dir.path(), tracker.addr);
    let id = format!("group1/{}", name(5, 1, "txt"));
    let out = run(dir.path(), &["download-file", conf.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ENOENT (errno 2)") && err.contains(&storage.addr.to_string()),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("client.conf")]);

    // A bad id fails with EINVAL before any connection.
    let out = run(
        dir.path(),
        &["download_file", conf.to_str().unwrap(), "group1/nope"],
    );
    assert_eq!(out.status.code(), Some(22));
    assert!(
        text(&out.stderr).contains("bad file id"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        dir.path(),
        &["delete-file", conf.to_str().unwrap(), "nogroup"],
    );
    assert_eq!(out.status.code(), Some(22));
    assert_eq!(tracker.accepts.load(Ordering::SeqCst), 1);
}

#[test]
fn file_info_prints_the_upstream_layout() {
    let storage = fake(|c, _, _| {
        assert_eq!(c, 22);
        let mut b = Vec::new();
        FileInfoResp {
            file_size: 170,
            create_timestamp: 1_589_774_253,
            crc32: 0x8655_F614,
            source_ip: "192.168.11.83".into(),
            ip_size: IpSize::V4,
        }
        .encode(&mut b);
        (0, b)
    });
    let tracker = tracker_for(storage.addr);
    let dir = tempfile::tempdir().unwrap();
    let conf = client_conf(dir.path(), tracker.addr);
    let out = run(
        dir.path(),
        &[
            "file-info",
            conf.to_str().unwrap(),
            "group2/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "GET FROM SERVER: true");
    assert_eq!(lines[2], "file type: normal");
    assert_eq!(lines[3], "source storage id: 0");
    assert_eq!(lines[4], "source ip address: 192.168.11.83");
    assert!(
        lines[5].starts_with("file create timestamp: 2020-05-1"),
        "{s}"
    );
    assert_eq!(lines[6], "file size: 170");
    assert_eq!(lines[7], "file crc32: 2253780500 (0x8655F614)");
}

#[test]
fn monitor_lists_groups_and_servers_from_a_storage_conf() {
    let tracker = tracker_for("127.0.0.1:23000".parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "group_name = group1\nport = 23000\nbase_path = {0}\nstore_path0 = {1}\ntracker_server = {2}\n",
            dir.path().display(),
            store.display(),
            tracker.addr
        ),
    )
    .unwrap();
    let out = run(dir.path(), &["monitor", conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for want in [
        &format!("tracker server is {}", tracker.addr),
        "group count: 1",
        "group name = group1",
        "disk total space = 1,234,567 MB",
        "ip_addr = 127.0.0.1  ACTIVE",
        "version = 6.16.1",
        "total_upload_count = 0",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // -h picks the tracker; an unreachable one is an error with its errno.
    let out = run(
        dir.path(),
        &[
            "monitor",
            conf.to_str().unwrap(),
            "-h",
            "127.0.0.1:1",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(111));
    assert!(
        text(&out.stderr).contains("ECONNREFUSED"),
        "{}",
        text(&out.stderr)
    );
    let out = run(dir.path(), &["monitor", conf.to_str().unwrap(), "bogus"]);
    assert_eq!(out.status.code(), Some(22));
}

#[test]
fn tools_that_send_a_local_file_refuse_what_is_not_a_regular_file() {
    // No tracker is needed: the refusal comes before any connection.
    let d = tempfile::tempdir().unwrap();
    let conf = client_conf(d.path(), "127.0.0.1:9".parse().unwrap());
    let conf = conf.to_str().unwrap();
    let dir = d.path().to_str().unwrap();
    let id = "group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";
    for args in [
        vec!["upload-file", conf, dir],
        vec!["upload-slave", conf, id, "_s", dir],
        vec!["append-file", conf, id, dir],
        vec!["modify-file", conf, id, "0", dir],
    ] {
        let out = run(d.path(), &args);
        assert_eq!(out.status.code(), Some(22), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).contains("is not a regular file"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn usage_errors_exit_einval_and_help_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["download-file"][..],
        &["upload-file", "--no-such-flag", "c", "f"],
        &["no-such-command"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(22),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty());
    }
    for args in [
        &["--help"][..],
        &["download-file", "--help"],
        &["--version"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!text(&out.stdout).is_empty());
    }
}

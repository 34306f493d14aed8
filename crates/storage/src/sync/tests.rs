//! In-process replication tests: two stores in temporary folders, the
//! receiver served on a loopback port, the sender workers of one store
//! pushing to it. No tracker: the peer list is set directly and marks are
//! written beforehand (the tracker side is covered by the process tests in
//! crates/fdfs/tests/replication_*.rs).

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fdfs_conf::{ReservedSpace, TimeOfDay};
use fdfs_proto::metadata::{self, MetaPair};
use fdfs_proto::server::{status, StorageBrief};
use fdfs_proto::storage::MetaOp;
use fdfs_proto::{cmd, errno, GroupName, LogicName, SourceServer};
use fdfs_runtime::net::{Conn, ServeOpts};
use fdfs_runtime::Shutdown;

use super::apply::{self, Outcome};
use super::mark::Mark;
use super::*;
use crate::reporter::ReporterState;
use crate::store::disk::RealDisk;
use crate::store::{binlog, Store, StoreConfig, UploadKind};

fn store(dir: &Path, ip: [u8; 4]) -> Arc<Store> {
    store_with(dir, ip, false)
}

fn store_with(dir: &Path, ip: [u8; 4], durable: bool) -> Arc<Store> {
    let cfg = StoreConfig {
        base_path: dir.to_owned(),
        store_paths: vec![dir.join("p0")],
        readonly: vec![false],
        subdir_count: 4,
        distribute_mode: 0,
        rotate_count: 2,
        durable,
        durable_sync: fdfs_conf::DurableSync::Fsync,
        group: GroupName::new("group1").unwrap(),
        reserved: ReservedSpace::Bytes(0),
        binlog_max_size: binlog::DEFAULT_MAX_SIZE,
        journal_file_size: 1 << 20,
    };
    let s = Store::open(cfg, Arc::new(RealDisk)).unwrap();
    s.set_source(SourceServer::Ip(Ipv4Addr::from(ip)));
    Arc::new(s)
}

fn upload(s: &Store, data: &[u8], ext: &str, kind: UploadKind) -> LogicName {
    let mut u = s.begin_upload(-1, data.len() as u64, ext, kind).unwrap();
    u.write(data).unwrap();
    s.finish_upload(u).unwrap()
}

fn update(s: &Store, n: &LogicName, offset: Option<u64>, data: &[u8]) {
    let mut u = s.begin_update(n, offset, data.len() as u64).unwrap();
    u.write(data).unwrap();
    s.finish_update(u).unwrap();
}

fn meta(pairs: &[(&str, &str)]) -> Vec<u8> {
    metadata::encode(
        &pairs
            .iter()
            .map(|(k, v)| MetaPair {
                name: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            })
            .collect::<Vec<_>>(),
    )
}

fn binlog_lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("data/sync/binlog.000"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file under the store path: relative path → content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    let root = dir.join("p0/data");
    walk(&root, &root, &mut out);
    out
}

/// Serves the receiver (plus ACTIVE_TEST and QUIT) like the storage
/// service does.
fn serve_receiver(rx: Arc<Receiver>, sd: Shutdown, listener: std::net::TcpListener) {
    listener.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = l.accept() => match r { Ok((s, _)) => s, Err(_) => return },
                _ = sd.wait() => return,
            };
            let rx = rx.clone();
            let sd = sd.clone();
            tokio::spawn(async move {
                let opts = ServeOpts {
                    network_timeout: Duration::from_secs(5),
                    ..ServeOpts::default()
                };
                let mut conn = Conn::new(stream, &opts, sd).unwrap();
                conn.set_max_pkg_len(i64::MAX as u64);
                let mut tag = PeerTag::default();
                while let Ok(h) = conn.read_header().await {
                    if is_sync_cmd(h.cmd) {
                        match rx.handle(&mut conn, h, &mut tag).await {
                            Ok(true) => continue,
                            _ => return,
                        }
                    } else if h.cmd == cmd::ACTIVE_TEST {
                        if rx.flush(&mut conn, &mut tag).await.is_err()
                            || conn.send_status(0).await.is_err()
                        {
                            return;
                        }
                    } else {
                        return;
                    }
                }
            });
        }
    });
}

struct Pair {
    _da: tempfile::TempDir,
    _db: tempfile::TempDir,
    a_dir: PathBuf,
    b_dir: PathBuf,
    a: Arc<Store>,
    b: Arc<Store>,
    b_addr: SocketAddr,
    sd: Shutdown,
    progress_b: Arc<Progress>,
}

fn pair() -> Pair {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store(da.path(), [127, 0, 0, 1]);
    let b = store(db.path(), [127, 0, 0, 1]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = listener.local_addr().unwrap();
    let sd = Shutdown::new();
    let progress_b = Arc::new(Progress::default());
    serve_receiver(
        Arc::new(Receiver {
            store: b.clone(),
            progress: progress_b.clone(),
            group_commits: Default::default(),
        }),
        sd.clone(),
        listener,
    );
    Pair {
        a_dir: da.path().to_owned(),
        b_dir: db.path().to_owned(),
        _da: da,
        _db: db,
        a,
        b,
        b_addr,
        sd,
        progress_b,
    }
}

/// A whole SYNC_CREATE_FILE request (header, head, content) for `name`.
fn create_request(name: &str, body: &[u8], ts: u32) -> Vec<u8> {
    use fdfs_proto::sync::{LogicNameOrMeta, SyncFileHead};
    let mut head = Vec::new();
    SyncFileHead {
        name_len: name.len(),
        file_size: body.len() as u64,
        timestamp: ts,
        group: GroupName::new("group1").unwrap(),
    }
    .encode(&LogicNameOrMeta(name.to_owned()), &mut head);
    let h = fdfs_proto::Header::new(
        cmd::storage::SYNC_CREATE_FILE,
        0,
        (head.len() + body.len()) as u64,
    );
    [&h.encode()[..], &head, body].concat()
}

/// Stores `a` and `b` in fresh folders with `b_addr` as b's address, and
/// nothing serving there: the test puts its own peer on it.
fn pair_with_peer_at(b_addr: SocketAddr) -> Pair {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Pair {
        a_dir: da.path().to_owned(),
        b_dir: db.path().to_owned(),
        a: store(da.path(), [127, 0, 0, 1]),
        b: store(db.path(), [127, 0, 0, 1]),
        _da: da,
        _db: db,
        b_addr,
        sd: Shutdown::new(),
        progress_b: Arc::new(Progress::default()),
    }
}

fn brief(id: &str, addr: SocketAddr, st: u8) -> StorageBrief {
    StorageBrief {
        status: st,
        port: u32::from(addr.port()),
        id: id.into(),
        ip: addr.ip().to_string(),
    }
}

/// A sync service for store `a` whose only peer "b" is at `b_addr`.
fn service(p: &Pair, wake: tokio::sync::watch::Receiver<u64>) -> Arc<SyncService> {
    let conf = SyncConf {
        port: 1,
        bind_ip: None,
        trackers: vec![],
        connect_timeout: Duration::from_secs(2),
        network_timeout: Duration::from_secs(5),
        sync_wait: Duration::from_millis(20),
        sync_interval: Duration::ZERO,
        window: window::Window {
            start: TimeOfDay { hour: 0, minute: 0 },
            end: TimeOfDay {
                hour: 23,
                minute: 59,
            },
        },
        write_mark_freq: 3,
        base_path: p.a_dir.clone(),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    let state = Arc::new(ReporterState::new(Default::default(), "a"));
    *state.group_servers.write().unwrap() = vec![
        StorageBrief {
            status: status::ACTIVE,
            port: 1,
            id: "a".into(),
            ip: "127.0.0.1".into(),
        },
        brief("b", p.b_addr, status::ACTIVE),
    ];
    Arc::new(SyncService::new(
        conf,
        p.a.clone(),
        state,
        Arc::new(Progress::default()),
        wake,
    ))
}

fn mark_file(p: &Pair) -> PathBuf {
    p.a_dir.join("data/sync/b.mark")
}

/// Polls `f` until it holds. `secs` is what a quiet machine needs; the
/// deadline is three times that, as the disk may be busy with other work
/// (a passing test never waits longer for it).
async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs * 3);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The replica's binlog is the source's with lower-case ops.
fn lowered(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let mut parts: Vec<String> = l.split(' ').map(str::to_owned).collect();
            parts[1] = parts[1].to_ascii_lowercase();
            parts.join(" ")
        })
        .collect()
}

/// Runs every kind of source operation on `a` (the storage_sync golden
/// scenario); `step` runs after each one.
async fn all_operations<F, Fut>(a: &Store, mut step: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let master = upload(a, b"master file content", "dat", UploadKind::Normal);
    step().await;
    a.set_metadata(&master, MetaOp::Overwrite, &meta(&[("w", "1")]))
        .unwrap();
    step().await;
    a.set_metadata(&master, MetaOp::Merge, &meta(&[("h", "2")]))
        .unwrap();
    step().await;
    let app = upload(a, b"appender-0123456789", "txt", UploadKind::Appender);
    step().await;
    update(a, &app, None, b"+appended");
    step().await;
    update(a, &app, Some(2), b"MODIFIED");
    step().await;
    a.truncate(&app, 12).unwrap();
    step().await;
    upload(
        a,
        b"slave",
        "jpg",
        UploadKind::Slave {
            master: master.clone(),
            prefix: "_small".into(),
        },
    );
    step().await;
    let app2 = upload(a, b"to be renamed", "txt", UploadKind::Appender);
    step().await;
    update(a, &app2, None, b" and appended");
    step().await;
    a.regenerate(&app2).unwrap();
    step().await;
    let doomed = upload(a, b"short-lived", "bin", UploadKind::Normal);
    step().await;
    a.set_metadata(&doomed, MetaOp::Overwrite, &meta(&[("x", "y")]))
        .unwrap();
    step().await;
    a.delete(&doomed).unwrap();
    step().await;
    // create, -m create, -m update, appender, append, modify, truncate,
    // slave, appender, append, rename, create, -m create, -m delete, delete
    15
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_reaches_the_peer_as_a_replica_record() {
    let p = pair();
    Mark::default().save(&mark_file(&p)).unwrap();
    let (tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    let mut seq = 0u64;
    let n = all_operations(&p.a, || {
        seq += 1;
        tx.send_replace(seq);
        let (a_dir, b_dir) = (p.a_dir.clone(), p.b_dir.clone());
        async move {
            let want = binlog_lines(&a_dir).len();
            wait_for("the replica record", 10, || {
                binlog_lines(&b_dir).len() >= want
            })
            .await;
        }
    })
    .await;
    let a_lines = binlog_lines(&p.a_dir);
    assert_eq!(a_lines.len(), n, "{a_lines:#?}");
    wait_for("the worker to go idle", 10, || {
        svc.status.get("b").is_some_and(|s| s.state == "idle")
    })
    .await;
    // Same records, same timestamps, lower case: nothing bounces back.
    assert_eq!(binlog_lines(&p.b_dir), lowered(&a_lines));
    assert_eq!(tree(&p.b_dir), tree(&p.a_dir));
    let st = svc.status.get("b").unwrap();
    assert_eq!(st.records_sent, n as u64);
    assert_eq!(st.records_skipped, 0);
    assert_eq!(st.lag_secs, 0);
    assert_eq!(st.peer_addr, p.b_addr.to_string());
    // The receiver credits the sender's reported id.
    let last_ts: u32 = a_lines
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(p.progress_b.last("a"), Some(last_ts));
    let m = Mark::load(&mark_file(&p)).unwrap().unwrap();
    let end = fs::metadata(p.a_dir.join("data/sync/binlog.000"))
        .unwrap()
        .len();
    assert_eq!((m.binlog_index, m.binlog_offset), (0, end));
    assert_eq!(m.sync_row_count, n as u64);
    p.sd.trigger();
    h.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replay_converges_and_a_second_replay_applies_nothing() {
    let p = pair();
    all_operations(&p.a, || async {}).await;
    Mark::default().save(&mark_file(&p)).unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the replay", 10, || {
        svc.status.get("b").is_some_and(|s| s.state == "idle")
    })
    .await;
    // The files whose records were read after they had changed or gone
    // arrive in their final state.
    assert_eq!(tree(&p.b_dir), tree(&p.a_dir));
    let st = svc.status.get("b").unwrap();
    assert!(st.records_skipped > 0, "vanished files are skipped: {st:?}");

    // A new record is picked up by the fallback poll.
    let late = upload(&p.a, b"late", "txt", UploadKind::Normal);
    wait_for("the late file", 5, || p.b.resolve(&late).unwrap().exists()).await;
    p.sd.trigger();
    h.await.unwrap();

    // A replay from the start (lost mark): nothing is applied twice.
    let before = binlog_lines(&p.b_dir);
    Mark::default().save(&mark_file(&p)).unwrap();
    let sd2 = Shutdown::new();
    let p2 = Pair {
        sd: sd2.clone(),
        ..p
    };
    serve_again(&p2);
    let (_tx2, wake2) = tokio::sync::watch::channel(0u64);
    let svc2 = service(&p2, wake2);
    let h2 = svc2.clone().spawn(sd2.clone());
    wait_for("the second replay", 10, || {
        svc2.status
            .get("b")
            .is_some_and(|s| s.state == "idle" && s.records_sent > 0)
    })
    .await;
    assert_eq!(
        binlog_lines(&p2.b_dir),
        before,
        "a replay must not re-apply"
    );
    assert_eq!(tree(&p2.b_dir), tree(&p2.a_dir));
    sd2.trigger();
    h2.await.unwrap();
}

/// Restarts the receiver of `p.b` on the same port.
fn serve_again(p: &Pair) {
    // The receiver stopped before may not have closed its listener yet.
    let end = Instant::now() + Duration::from_secs(10);
    let l = loop {
        match std::net::TcpListener::bind(p.b_addr) {
            Ok(l) => break l,
            Err(e) if Instant::now() < end => {
                eprintln!("binding {} again: {e}", p.b_addr);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("binding {} again: {e}", p.b_addr),
        }
    };
    serve_receiver(
        Arc::new(Receiver {
            store: p.b.clone(),
            progress: p.progress_b.clone(),
            group_commits: Default::default(),
        }),
        p.sd.clone(),
        l,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_the_worker_at_once() {
    let p = pair();
    Mark::default().save(&mark_file(&p)).unwrap();
    let (tx, wake) = tokio::sync::watch::channel(0u64);
    let mut svc = service(&p, wake);
    // Make the fallback poll useless: only the notification can be fast.
    Arc::get_mut(&mut svc).unwrap().conf.sync_wait = Duration::from_secs(30);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("idle", 10, || {
        svc.status.get("b").is_some_and(|s| s.state == "idle")
    })
    .await;
    let n = upload(&p.a, b"fast", "txt", UploadKind::Normal);
    let t0 = Instant::now();
    tx.send_replace(1);
    wait_for("the file on the peer", 5, || {
        p.b.resolve(&n).unwrap().exists()
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "took {:?}",
        t0.elapsed()
    );
    p.sd.trigger();
    h.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_is_retried_with_backoff_then_caught_up() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store(da.path(), [127, 0, 0, 1]);
    let b = store(db.path(), [127, 0, 0, 1]);
    // Reserve a port, then free it: the peer is "down". On an address of
    // its own, so no other test's listener takes the port meanwhile.
    let own_ip = std::net::Ipv4Addr::new(127, 77, rand::random(), rand::random::<u8>().max(1));
    let b_addr = std::net::TcpListener::bind((own_ip, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let p = Pair {
        a_dir: da.path().to_owned(),
        b_dir: db.path().to_owned(),
        _da: da,
        _db: db,
        a,
        b,
        b_addr,
        sd: Shutdown::new(),
        progress_b: Arc::new(Progress::default()),
    };
    let names: Vec<LogicName> = (0..5)
        .map(|i| {
            upload(
                &p.a,
                format!("file {i}").as_bytes(),
                "txt",
                UploadKind::Normal,
            )
        })
        .collect();
    Mark::default().save(&mark_file(&p)).unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("a failed attempt", 5, || {
        svc.status.get("b").is_some_and(|s| s.state == "backoff")
    })
    .await;
    let st = svc.status.get("b").unwrap();
    assert!(st.last_error.is_some());
    assert_eq!(st.records_sent, 0);
    serve_again(&p);
    wait_for("catch-up", 10, || {
        names.iter().all(|n| p.b.resolve(n).unwrap().exists())
    })
    .await;
    wait_for("idle", 10, || {
        svc.status
            .get("b")
            .is_some_and(|s| s.state == "idle" && s.last_error.is_none())
    })
    .await;
    p.sd.trigger();
    h.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_missing_the_base_gets_the_whole_file() {
    let p = pair();
    let app = upload(&p.a, b"0123456789", "log", UploadKind::Appender);
    update(&p.a, &app, None, b"abcdef");
    // Start after the create: the peer never got the appender.
    let first = binlog_lines(&p.a_dir)[0].len() as u64 + 1;
    Mark {
        binlog_offset: first,
        ..Mark::default()
    }
    .save(&mark_file(&p))
    .unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the whole file", 10, || {
        fs::read(p.b.resolve(&app).unwrap()).is_ok_and(|c| c == b"0123456789abcdef")
    })
    .await;
    // Recorded here as a new file (it was created by the update).
    let lines = binlog_lines(&p.b_dir);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains(&format!(" c {app}")), "{lines:?}");
    p.sd.trigger();
    h.await.unwrap();
}

/// Content of a file as the store serves it.
fn served(s: &Store, n: &LogicName) -> Option<Vec<u8>> {
    use std::io::Read;
    let (mut f, _, count) = s.open_read(n, 0, 0).ok()?;
    let mut v = vec![0; count as usize];
    f.read_exact(&mut v).ok()?;
    Some(v)
}

/// Upstream's trunk files (a FastDFS that moved to us): each file goes
/// into the same slot of the peer's trunk file, a delete frees it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_files_replicate_into_the_peers_slots() {
    use crate::store::trunk::planted::plant;
    let p = pair();
    let small = plant(&p.a, 1, 0, 256, b"packed by upstream");
    let big = vec![0x5au8; 300_000];
    let large = plant(&p.a, 1, 1 << 20, 400_000, &big);
    let sidecar = upload(&p.a, b"whole", "txt", UploadKind::Normal);
    p.a.set_metadata(&small, MetaOp::Overwrite, &meta(&[("w", "1")]))
        .unwrap();
    Mark::default().save(&mark_file(&p)).unwrap();
    let (tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the trunk files", 10, || {
        served(&p.b, &large).is_some_and(|c| c == big) && p.b.get_metadata(&small).is_ok()
    })
    .await;
    assert_eq!(served(&p.b, &small).unwrap(), b"packed by upstream");
    assert_eq!(served(&p.b, &sidecar).unwrap(), b"whole");
    // The peer's trunk file has the slots where the names say.
    let trunk = fs::read(p.b_dir.join("p0/data/00/00/000001")).unwrap();
    assert_eq!(trunk[0], b'F');
    assert_eq!(&trunk[24..24 + 18], b"packed by upstream");
    assert_eq!(trunk[1 << 20], b'F');
    // A delete frees the peer's slot, and a resend finds nothing to do.
    p.a.delete(&small).unwrap();
    tx.send_replace(1);
    wait_for("the freed slot", 10, || served(&p.b, &small).is_none()).await;
    let trunk = fs::read(p.b_dir.join("p0/data/00/00/000001")).unwrap();
    assert_eq!(trunk[..24], [0u8; 24]);
    assert_eq!(served(&p.b, &large).unwrap(), big);
    assert_eq!(
        apply::delete(&p.b, &small.to_string(), 1).unwrap(),
        Outcome::Missing
    );
    let lines = binlog_lines(&p.b_dir);
    assert!(
        lines.contains(&format!("1589774253 c {large}")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(&format!(" d {small}"))),
        "{lines:#?}"
    );
    p.sd.trigger();
    h.await.unwrap();
}

/// A file deleted and its slot given out again before its create reached
/// this server: the stale create must not overwrite the newer file.
#[test]
fn a_stale_create_never_overwrites_a_newer_file_in_its_slot() {
    use crate::store::trunk::planted::plant;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        store(da.path(), [127, 0, 0, 2]),
        store(db.path(), [127, 0, 0, 3]),
    );
    // The old file (made in 2020) as its source has it.
    let old = plant(&a, 1, 0, 256, b"old, deleted since");
    // The newer file in the same slot, here.
    let mut up = b.begin_slot_upload(0, 5, "txt").unwrap();
    up.write(b"newer").unwrap();
    let info = fdfs_proto::trunk::TrunkInfo::of_name(&old).unwrap();
    let newer = b.finish_upload_in_slot(&mut up, info).unwrap().name;
    drop(up);
    let mut f = apply::begin_file(&b, &old.to_string(), 18, false).unwrap();
    f.write(b"old, deleted since").unwrap();
    assert_eq!(f.finish(&b, 1_589_774_253).unwrap(), Outcome::AlreadyThere);
    assert_eq!(served(&b, &newer).unwrap(), b"newer");
    assert!(served(&b, &old).is_none());
    // In an empty slot the same create applies.
    let mut f = apply::begin_file(&a, &old.to_string(), 18, false).unwrap();
    f.write(b"old, deleted since").unwrap();
    assert_eq!(f.finish(&a, 1_589_774_253).unwrap(), Outcome::AlreadyThere);
    a.delete(&old).unwrap();
    let mut f = apply::begin_file(&a, &old.to_string(), 18, false).unwrap();
    f.write(b"old, deleted since").unwrap();
    assert_eq!(f.finish(&a, 1_589_774_253).unwrap(), Outcome::Applied);
}

#[test]
fn apply_tolerates_reordering_and_resends() {
    let d = tempfile::tempdir().unwrap();
    let s = store(d.path(), [127, 0, 0, 2]);
    let name = "M00/00/00/fwAADGsHvp2Ea4IPAAAAAOA9MXE070.txt";
    // An append before its create.
    assert!(matches!(
        apply::begin_range(&s, name, 0, 3, true).unwrap(),
        Err(Outcome::Missing)
    ));
    assert_eq!(apply::delete(&s, name, 7).unwrap(), Outcome::Missing);
    let mut f = apply::begin_file(&s, name, 5, false).unwrap();
    f.write(b"hello").unwrap();
    assert_eq!(f.finish(&s, 100).unwrap(), Outcome::Applied);
    let mut f = apply::begin_file(&s, name, 5, false).unwrap();
    f.write(b"HELLO").unwrap();
    assert_eq!(f.finish(&s, 100).unwrap(), Outcome::AlreadyThere);
    let path = apply::path_of(&s, name).unwrap().1;
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    // A gap before the offset; an append already applied.
    assert!(matches!(
        apply::begin_range(&s, name, 9, 1, true).unwrap(),
        Err(Outcome::Mismatch)
    ));
    assert!(matches!(
        apply::begin_range(&s, name, 2, 3, true).unwrap(),
        Err(Outcome::AlreadyThere)
    ));
    let mut r = apply::begin_range(&s, name, 5, 2, true).unwrap().unwrap();
    r.write(b"!!").unwrap();
    assert_eq!(r.finish(&s, 101).unwrap(), Outcome::Applied);
    assert_eq!(
        apply::truncate(&s, name, 9, 3, 102).unwrap(),
        Outcome::Mismatch
    );
    assert_eq!(
        apply::truncate(&s, name, 7, 3, 102).unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        apply::truncate(&s, name, 7, 3, 102).unwrap(),
        Outcome::AlreadyThere
    );
    assert_eq!(fs::read(&path).unwrap(), b"hel");
    // Names that could escape the store are refused.
    assert!(apply::begin_file(&s, "M00/00/00/../../../etc/passwd", 1, false).is_err());
    assert!(apply::delete(&s, "M05/00/00/fwAADGsHvp2Ea4IPAAAAAOA9MXE070.txt", 1).is_err());
    assert_eq!(apply::delete(&s, name, 103).unwrap(), Outcome::Applied);
    assert_eq!(
        binlog_lines(d.path()),
        vec![
            format!("100 c {name}"),
            format!("101 a {name} 5 2"),
            format!("102 t {name} 7 3"),
            format!("103 d {name}"),
        ]
    );
    // Nothing left behind in the temporary folder.
    assert_eq!(
        fs::read_dir(d.path().join("p0/data/.tmp")).unwrap().count(),
        0
    );
}

/// A string or number field of one golden jsonl record.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return Some(&s[..s.find('"')?]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A store whose sub-directories include the golden files' `07/A7`,
/// without creating all 65,536 of them (the engine skips creation when
/// the last one exists).
fn golden_store(dir: &Path, ip: [u8; 4]) -> Arc<Store> {
    for d in ["p0/data/07/A7", "p0/data/FF/FF"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let cfg = StoreConfig {
        subdir_count: 256,
        ..store(dir, ip).config().clone()
    };
    let s = Store::open(cfg, Arc::new(RealDisk)).unwrap();
    s.set_source(SourceServer::Ip(Ipv4Addr::from(ip)));
    Arc::new(s)
}

/// Replays the upstream storage_sync capture (both directions between
/// 127.0.0.11 and 127.0.0.12) against two receivers: every reply status
/// matches upstream's (our replies carry no body, also for the rename),
/// and each side's replica records equal the golden binlog lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_storage_sync_capture_replays_with_upstream_statuses_and_binlogs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let capture = include_str!("../../../../testdata/golden/wire/storage_sync.jsonl");
    let binlogs =
        include_str!("../../../../testdata/golden/disk/storage_binlog_ops_sync_scenario.txt");
    let (d11, d12) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s11 = golden_store(d11.path(), [127, 0, 0, 11]);
    let s12 = golden_store(d12.path(), [127, 0, 0, 12]);
    // Every file of the scenario reaches the other side within the
    // capture, so both sides start empty.
    let sd = Shutdown::new();
    let mut addr = BTreeMap::new();
    for (ip, s) in [("127.0.0.11", &s11), ("127.0.0.12", &s12)] {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addr.insert(ip, l.local_addr().unwrap());
        serve_receiver(
            Arc::new(Receiver {
                store: s.clone(),
                progress: Arc::new(Progress::default()),
                group_commits: Default::default(),
            }),
            sd.clone(),
            l,
        );
    }
    let lines: Vec<&str> = capture.lines().filter(|l| l.contains("\"cmd\"")).collect();
    let mut conns: BTreeMap<String, tokio::net::TcpStream> = BTreeMap::new();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let code: u8 = field(line, "cmd").unwrap().parse().unwrap();
        if code == cmd::RESP {
            continue;
        }
        let conn = field(line, "conn").unwrap().to_owned();
        let to_ip = conn.split("->").nth(1).unwrap().split(':').next().unwrap();
        // Upstream's answer: the next record of this connection.
        let answer = lines[i + 1..]
            .iter()
            .find(|l| field(l, "conn") == Some(conn.as_str()))
            .unwrap();
        assert_eq!(field(answer, "cmd"), Some("100"), "{answer}");
        let want: u8 = field(answer, "status").unwrap().parse().unwrap();
        if !conns.contains_key(&conn) {
            let s = tokio::net::TcpStream::connect(addr[to_ip]).await.unwrap();
            conns.insert(conn.clone(), s);
        }
        let s = conns.get_mut(&conn).unwrap();
        let mut req = unhex(field(line, "header_hex").unwrap());
        req.extend(unhex(field(line, "body_hex").unwrap()));
        s.write_all(&req).await.unwrap();
        let mut h = [0u8; 10];
        s.read_exact(&mut h).await.unwrap();
        let h = fdfs_proto::Header::decode(&h, 1 << 20).unwrap();
        assert_eq!(h.cmd, cmd::RESP);
        assert_eq!(
            h.status,
            want,
            "reply to {} on {conn}",
            field(line, "note").unwrap_or("")
        );
        assert_eq!(h.pkg_len, 0, "replies carry no body");
        checked += 1;
    }
    assert!(checked > 30, "{checked} requests replayed");
    // The golden binlogs: replica (lower-case) records of each side.
    let section = |name: &str| -> Vec<String> {
        let start = binlogs.find(&format!("## {name}:")).unwrap();
        binlogs[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split(' ')
                    .nth(1)
                    .is_some_and(|op| op.chars().all(|c| c.is_ascii_lowercase()))
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(binlog_lines(d12.path()), section("g1b"));
    assert_eq!(binlog_lines(d11.path()), section("g1a"));
    // The appender modified on 11 by 12's records: created (21 bytes),
    // appended 11, modified, truncated to 12.
    let app = "M00/07/A7/fwAADGsHvp2Ea4IPAAAAAOA9MXE070.txt";
    let p = apply::path_of(&s11, app).unwrap().1;
    assert_eq!(fs::metadata(p).unwrap().len(), 12);
    sd.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_even_if_the_peer_stalls() {
    // A "peer" that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = l.local_addr().unwrap();
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = l.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(10));
        drop(conns);
    });
    let p = pair_with_peer_at(b_addr);
    upload(&p.a, b"x", "txt", UploadKind::Normal);
    Mark::default().save(&mark_file(&p)).unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the worker to connect", 5, || {
        svc.status.get("b").is_some_and(|s| s.state == "connecting")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    p.sd.trigger();
    tokio::time::timeout(Duration::from_secs(2), h)
        .await
        .expect("the manager stops within 2 s (network_timeout is 5 s)")
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(svc.status.get("b").unwrap().state, "stopped");
    // Nothing was confirmed: the mark still points at the start.
    let m = Mark::load(&mark_file(&p)).unwrap().unwrap();
    assert_eq!(m.binlog_offset, 0);
}

/// A peer that refuses one file (a full disk, say) until the worker skips
/// it: the write quorum must not count that peer for that file, only for
/// the next one, which it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_peer_refused_is_not_counted_for_the_write_quorum() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || loop {
                let mut h = [0u8; 10];
                if c.read_exact(&mut h).is_err() {
                    return;
                }
                let len = u64::from_be_bytes(h[..8].try_into().unwrap()) as usize;
                let mut b = vec![0u8; len];
                if c.read_exact(&mut b).is_err() {
                    return;
                }
                let refuse = h[8] == cmd::storage::SYNC_CREATE_FILE && b.ends_with(b"REFUSE");
                let st = if refuse { errno::ENOSPC } else { 0 };
                if c.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, cmd::RESP, st])
                    .is_err()
                {
                    return;
                }
            });
        }
    });
    let p = pair_with_peer_at(b_addr);
    upload(&p.a, b"REFUSE", "bin", UploadKind::Normal);
    upload(&p.a, b"taken", "bin", UploadKind::Normal);
    let lines = fs::read_to_string(p.a_dir.join("data/sync/binlog.000")).unwrap();
    let first_end = (0, lines.find('\n').unwrap() as u64 + 1);
    let second_end = (0, lines.len() as u64);
    Mark::default().save(&mark_file(&p)).unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the refused record to be skipped", 10, || {
        svc.status
            .get("b")
            .is_some_and(|s| s.records_skipped == 1 && s.records_sent == 1)
    })
    .await;
    assert_eq!(
        svc.acks.count_past(first_end),
        0,
        "b never took the first file"
    );
    assert_eq!(svc.acks.count_past(second_end), 1);
    p.sd.trigger();
    h.await.unwrap();
}

/// A peer that answers nothing until it holds three whole requests: a
/// sender waiting for each reply before the next request would stall
/// until network_timeout and never get a file through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_are_pipelined_and_the_mark_follows_the_replies_in_order() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = l.local_addr().unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<Vec<(u8, usize)>>();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let read_req = |c: &mut std::net::TcpStream| {
            let mut h = [0u8; 10];
            c.read_exact(&mut h).unwrap();
            let len = u64::from_be_bytes(h[..8].try_into().unwrap()) as usize;
            let mut b = vec![0u8; len];
            c.read_exact(&mut b).unwrap();
            (h[8], len)
        };
        let ok = [0u8, 0, 0, 0, 0, 0, 0, 0, cmd::RESP, 0];
        assert_eq!(read_req(&mut c).0, cmd::storage::REPORT_SERVER_ID);
        c.write_all(&ok).unwrap();
        let held: Vec<_> = (0..3).map(|_| read_req(&mut c)).collect();
        seen_tx.send(held).unwrap();
        for _ in 0..3 {
            c.write_all(&ok).unwrap();
        }
        // Anything after (ACTIVE_TEST while idle) is answered at once.
        let mut h = [0u8; 10];
        while c.read_exact(&mut h).is_ok() {
            c.write_all(&ok).unwrap();
        }
    });
    let p = pair_with_peer_at(b_addr);
    let sizes = [5usize, 300_000, 7];
    for n in sizes {
        upload(&p.a, &vec![b'z'; n], "bin", UploadKind::Normal);
    }
    Mark::default().save(&mark_file(&p)).unwrap();
    let (_tx, wake) = tokio::sync::watch::channel(0u64);
    let svc = service(&p, wake);
    let h = svc.clone().spawn(p.sd.clone());
    wait_for("the three creates to be confirmed", 4, || {
        svc.status.get("b").is_some_and(|s| s.records_sent == 3)
    })
    .await;
    let held = seen_rx.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(held
        .iter()
        .all(|(c, _)| *c == cmd::storage::SYNC_CREATE_FILE));
    // Each request carries its file whole, the big one streamed behind
    // its head, the small ones in the same write as theirs.
    let bodies: Vec<usize> = held.iter().map(|(_, len)| *len).collect();
    for (len, n) in bodies.iter().zip(sizes) {
        assert!(*len > n && *len < n + 200, "body {len} for a file of {n}");
    }
    p.sd.trigger();
    h.await.unwrap();
    // The mark passed all three records.
    let m = Mark::load(&mark_file(&p)).unwrap().unwrap();
    let binlog_len: u64 = fs::read_dir(p.a_dir.join("data/sync"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("binlog.0"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(m.binlog_offset, binlog_len);
    assert_eq!(m.sync_row_count, 3);
}

/// Durable mode: files a peer pipelined are made durable together (one
/// flush of their directories and the binlog), and the replies come after
/// it, in order, before the reply to anything that follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_files_share_one_durable_commit_and_replies_keep_their_order() {
    pipelined_files_commit_together(fdfs_conf::DurableSync::Fsync).await;
}

/// The same with `durable_sync = syncfs`: one syncfs instead of fsyncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_files_share_one_syncfs_and_replies_keep_their_order() {
    pipelined_files_commit_together(fdfs_conf::DurableSync::Syncfs).await;
}

/// The same with `durable_sync = journal`: one journal commit, and the
/// small files' contents are in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_files_share_one_journal_commit_and_replies_keep_their_order() {
    pipelined_files_commit_together(fdfs_conf::DurableSync::Journal).await;
}

async fn pipelined_files_commit_together(durable_sync: fdfs_conf::DurableSync) {
    use fdfs_proto::sync::LogicNameOrMeta;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store(da.path(), [127, 0, 0, 1]);
    let cfg = StoreConfig {
        durable_sync,
        ..store_with(db.path(), [127, 0, 0, 2], true).config().clone()
    };
    let b = Arc::new(Store::open(cfg, Arc::new(RealDisk)).unwrap());
    b.set_source(SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 2)));
    let rx = Arc::new(Receiver {
        store: b.clone(),
        progress: Arc::new(Progress::default()),
        group_commits: Default::default(),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sd = Shutdown::new();
    serve_receiver(rx.clone(), sd.clone(), listener);

    let mut req = Vec::new();
    let mut names = Vec::new();
    for (i, body) in [&b"first"[..], b"second!", b""].into_iter().enumerate() {
        let n = upload(&a, body, "txt", UploadKind::Normal).to_string();
        req.extend_from_slice(&create_request(&n, body, 1_700_000_000 + i as u32));
        names.push((n, body.to_vec()));
    }
    req.extend_from_slice(&fdfs_proto::Header::new(cmd::ACTIVE_TEST, 0, 0).encode());
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(&req).await.unwrap();
    let mut replies = [0u8; 40];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut replies))
        .await
        .expect("four replies")
        .unwrap();
    for r in replies.chunks(10) {
        assert_eq!(&r[..8], &[0u8; 8], "no body");
        assert_eq!((r[8], r[9]), (cmd::RESP, errno::OK));
    }
    assert_eq!(
        rx.group_commits.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "three pipelined files, one commit"
    );
    for (n, body) in &names {
        let p = apply::path_of(&b, n).unwrap().1;
        assert_eq!(&fs::read(p).unwrap(), body, "{n}");
    }
    let lines = binlog_lines(db.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    for ((n, _), l) in names.iter().zip(&lines) {
        assert!(l.ends_with(&format!(" c {n}")), "{l}");
    }
    if durable_sync == fdfs_conf::DurableSync::Journal {
        let journal = fs::read(db.path().join("data/journal.0")).unwrap();
        let has = |b: &[u8]| journal.windows(b.len()).any(|w| w == b);
        assert!(has(b"second!") && has(names[1].0.as_bytes()));
    }
    // A lone request (nothing pipelined behind it) is answered at once.
    let n = upload(&a, b"alone", "txt", UploadKind::Normal).to_string();
    c.write_all(&create_request(&n, b"alone", 1_700_000_100))
        .await
        .unwrap();
    let mut one = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut one))
        .await
        .expect("a reply without anything behind the request")
        .unwrap();
    assert_eq!(one[9], errno::OK);
    assert_eq!(
        rx.group_commits.load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // A create and, pipelined behind it, the delete of the same file: the
    // staged create is named before the delete is applied.
    let n = upload(&a, b"short-lived", "txt", UploadKind::Normal).to_string();
    let mut del = Vec::new();
    fdfs_proto::sync::SyncDelete {
        timestamp: 1_700_000_201,
        group: GroupName::new("group1").unwrap(),
        filename: LogicNameOrMeta(n.clone()),
    }
    .encode(&mut del);
    let batch = [
        &create_request(&n, b"short-lived", 1_700_000_200)[..],
        &fdfs_proto::Header::new(cmd::storage::SYNC_DELETE_FILE, 0, del.len() as u64).encode(),
        &del,
    ]
    .concat();
    c.write_all(&batch).await.unwrap();
    let mut two = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut two))
        .await
        .expect("two replies")
        .unwrap();
    assert_eq!((two[9], two[19]), (errno::OK, errno::OK));
    assert!(!apply::path_of(&b, &n).unwrap().1.exists());
    let lines = binlog_lines(db.path());
    assert!(
        lines[lines.len() - 2].ends_with(&format!(" c {n}")),
        "{lines:?}"
    );
    assert!(
        lines[lines.len() - 1].ends_with(&format!(" d {n}")),
        "{lines:?}"
    );
    sd.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sync_requests_get_einval_and_a_closed_connection() {
    use fdfs_proto::sync::{LogicNameOrMeta, SyncDelete};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pair();
    let name = "M00/00/00/fwAADGsHvp2Ea4IPAAAAAOA9MXE070.txt";
    let delete = |group: &str, name: &str| {
        let mut b = Vec::new();
        SyncDelete {
            timestamp: 5,
            group: GroupName::new(group).unwrap(),
            filename: LogicNameOrMeta(name.to_owned()),
        }
        .encode(&mut b);
        b
    };
    // (request, expected status or None for "closed without a reply")
    let mut bad_name = delete("group1", name);
    let n = bad_name.len();
    bad_name[n - 3..].copy_from_slice(b"/..");
    let cases: Vec<(Vec<u8>, Option<u8>)> = vec![
        // Empty server id.
        (
            fdfs_proto::encode_frame(cmd::storage::REPORT_SERVER_ID, 0, &[0u8; 16]),
            Some(errno::EINVAL),
        ),
        // Another group.
        (
            fdfs_proto::encode_frame(cmd::storage::SYNC_DELETE_FILE, 0, &delete("group2", name)),
            Some(errno::EINVAL),
        ),
        // A name that is not a file id.
        (
            fdfs_proto::encode_frame(cmd::storage::SYNC_DELETE_FILE, 0, &bad_name),
            Some(errno::EINVAL),
        ),
        // A create whose sizes disagree with the body length.
        (
            fdfs_proto::encode_frame(cmd::storage::SYNC_CREATE_FILE, 0, &[0u8; 40]),
            Some(errno::EINVAL),
        ),
        // A file of a trunk slot (170 bytes in a 256-byte slot, §5.3's
        // example) sent with other content than its name says: nothing is
        // written.
        (
            create_request(
                "M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000.jpg",
                b"short",
                5,
            ),
            Some(errno::EINVAL),
        ),
        // A small command announcing a huge body.
        (
            fdfs_proto::Header::new(cmd::storage::SYNC_TRUNCATE_FILE, 0, 1 << 30)
                .encode()
                .to_vec(),
            None,
        ),
    ];
    for (req, want) in cases {
        let mut s = tokio::net::TcpStream::connect(p.b_addr).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut h = [0u8; 10];
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut h))
            .await
            .expect("an answer or a close, not a hang");
        match want {
            Some(st) => {
                r.unwrap();
                assert_eq!(h[9], st, "{req:02x?}");
                let mut one = [0u8; 1];
                let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut one))
                    .await
                    .unwrap()
                    .unwrap_or(0);
                assert_eq!(n, 0, "connection closed after EINVAL");
            }
            None => assert!(r.is_err(), "closed without a reply"),
        }
    }
    assert!(
        !p.b_dir.join("p0/data/00/00/000001").exists(),
        "no trunk file made for a refused slot"
    );
    // A valid delete of a missing file: ENOENT, connection kept.
    let mut s = tokio::net::TcpStream::connect(p.b_addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(&fdfs_proto::encode_frame(
            cmd::storage::SYNC_DELETE_FILE,
            0,
            &delete("group1", name),
        ))
        .await
        .unwrap();
        let mut h = [0u8; 10];
        s.read_exact(&mut h).await.unwrap();
        assert_eq!(h[9], errno::ENOENT);
    }
    assert!(binlog_lines(&p.b_dir).is_empty());
    p.sd.trigger();
}

//! Replication inside a group, with real processes: one tracker and two
//! or three storages of group1 on their own loopback addresses
//! (127.0.N.11/12/13, one shared port, as a group requires).
//!
//! Covers: every kind of change reaching the peer; files written while a
//! peer is down arriving after it returns, with kill -9 of the source in
//! the middle of that catch-up; a third server joining a group that holds
//! files, catching up from its source and turning ACTIVE; the daily sync
//! window holding changes back; a deleted peer losing its mark file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fdfs_proto::cmd::{storage as sc, tracker as tc};
use fdfs_proto::metadata::{self, MetaPair};
use fdfs_proto::server::status;
use fdfs_proto::storage::{
    AppendHead, DownloadReq, MetaOp, ModifyHead, SetMetadataReq, TruncateReq, UploadHead,
};
use fdfs_proto::tracker::{ListStorageReq, StorageStat};
use fdfs_proto::{errno, GroupName, LogicName};
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{TestDir, TrackerProc, Wire};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

/// Files written while a peer is down (the issue asks for 1,000; the
/// count is a constant so a longer run can raise it).
const FILES_WHILE_DOWN: usize = 1000;
/// Files a group holds when a new server joins it.
const FILES_BEFORE_NEW_SERVER: usize = 1000;

/// Storage settings for these tests: fast beats, quick retries.
const STORAGE_EXTRA: &[&str] = &["sync_wait_msec = 50", "write_mark_file_freq = 10"];

struct Cluster {
    tracker: TrackerProc,
    net: u8,
    port: u16,
    /// Last: fields drop in order, and the folder must go after the
    /// processes writing into it.
    dir: TestDir,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let dir = TestDir::new(name);
        let tracker = TrackerProc::start(BIN, dir.path(), Ipv4Addr::LOCALHOST, &[]);
        // A /24 of our own, and a port free on each of its addresses.
        let (net, port) = fdfs_testkit::group_net_and_port(100, 150, &[11, 12, 13]);
        Cluster {
            dir,
            tracker,
            net,
            port,
        }
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.net, host)
    }

    /// Starts storage `127.0.N.<host>` of group1 (same port as the others).
    fn storage(&self, host: u8, extra: &[&str]) -> StorageProc {
        let ip = self.ip(host);
        let mut all: Vec<&str> = STORAGE_EXTRA.to_vec();
        all.extend_from_slice(extra);
        StorageProc::start_at(
            BIN,
            self.dir.path(),
            ip,
            self.port,
            "group1",
            &[self.tracker.addr],
            &all,
            &[],
        )
    }

    /// The folder standing for storage `host`'s second disk (store path 1).
    fn disk1(&self, host: u8) -> std::path::PathBuf {
        self.dir.join(format!("disk1-{host}"))
    }

    /// Starts storage `host` with a second store path on [`Self::disk1`].
    /// Files are fsynced one by one: the journal's redo would bring recent
    /// small files back by itself, and these tests refill a disk otherwise.
    fn storage_with_disk1(&self, host: u8, extra: &[&str]) -> StorageProc {
        let path1 = format!("store_path1 = {}", self.disk1(host).display());
        let mut all = vec!["store_path_count = 2", &path1, "durable_sync = fsync"];
        all.extend_from_slice(extra);
        self.storage(host, &all)
    }

    /// The tracker's status of a storage.
    fn status_of(&self, s: &StorageProc) -> Option<u8> {
        let mut w = Wire::connect(self.tracker.addr).ok()?;
        let mut body = Vec::new();
        ListStorageReq {
            group: GroupName::new("group1").unwrap(),
            storage_id: None,
        }
        .encode(&mut body);
        let (st, b) = w.call(tc::SERVER_LIST_STORAGE, &body).ok()?;
        if st != 0 {
            return None;
        }
        let ip = s.addr.ip().to_string();
        StorageStat::decode_list(&b)
            .ok()?
            .into_iter()
            .find(|x| x.id == ip || x.ip_addr == ip)
            .map(|x| x.status)
    }

    fn wait_status(&self, s: &StorageProc, want: u8, secs: u64) {
        wait(
            &format!("{} to be {}", s.addr, status::name(want)),
            secs,
            || self.status_of(s) == Some(want),
            || log_of(s),
        );
    }
}

fn log_of(s: &StorageProc) -> String {
    let mut t = s.proc.log_text();
    t.push_str(&std::fs::read_to_string(s.log_file()).unwrap_or_default());
    let n = t.len();
    t[n.saturating_sub(6000)..].to_owned()
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}; log:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn group16() -> Vec<u8> {
    let mut v = b"group1".to_vec();
    v.resize(16, 0);
    v
}

fn call(s: &StorageProc, code: u8, body: &[u8]) -> (u8, Vec<u8>) {
    Wire::connect(s.addr)
        .and_then(|mut w| w.call(code, body))
        .unwrap_or((255, vec![]))
}

fn upload_as(s: &StorageProc, code: u8, data: &[u8], ext: &str) -> LogicName {
    let mut b = Vec::new();
    UploadHead {
        store_path_index: -1,
        file_size: data.len() as u64,
        ext: ext.into(),
    }
    .encode(&mut b);
    b.extend_from_slice(data);
    let (st, r) = call(s, code, &b);
    assert_eq!(st, 0, "upload to {} failed", s.addr);
    LogicName::parse(std::str::from_utf8(&r[16..]).unwrap()).unwrap()
}

fn upload(s: &StorageProc, data: &[u8], ext: &str) -> LogicName {
    upload_as(s, sc::UPLOAD_FILE, data, ext)
}

fn download(s: &StorageProc, n: &LogicName) -> Result<Vec<u8>, u8> {
    let mut b = Vec::new();
    DownloadReq {
        offset: 0,
        length: 0,
        group: GroupName::new("group1").unwrap(),
        filename: n.clone(),
    }
    .encode(&mut b);
    match call(s, sc::DOWNLOAD_FILE, &b) {
        (0, body) => Ok(body),
        (st, _) => Err(st),
    }
}

fn get_metadata(s: &StorageProc, n: &LogicName) -> Result<Vec<u8>, u8> {
    let mut b = group16();
    b.extend_from_slice(n.to_string().as_bytes());
    match call(s, sc::GET_METADATA, &b) {
        (0, body) => Ok(body),
        (st, _) => Err(st),
    }
}

/// `fdfs fsck <s's storage.conf> <args>`: its exit status and output.
fn fsck(s: &StorageProc, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .arg("fsck")
        .arg(&s.conf)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sets the metadata `width=640` on `n` through `s`.
fn set_width_640(s: &StorageProc, n: &LogicName) {
    let mut body = Vec::new();
    SetMetadataReq {
        op: MetaOp::Overwrite,
        group: GroupName::new("group1").unwrap(),
        filename: n.clone(),
        meta: metadata::encode(&[MetaPair {
            name: b"width".to_vec(),
            value: b"640".to_vec(),
        }]),
    }
    .encode(&mut body);
    assert_eq!(call(s, sc::SET_METADATA, &body).0, 0);
}

/// Polls `s` until `n` downloads as `want` (None: until it is gone).
fn wait_content(s: &StorageProc, n: &LogicName, want: Option<&[u8]>, secs: u64) {
    wait(
        &format!("{n} on {} to be {:?}", s.addr, want.map(|w| w.len())),
        secs,
        || match (download(s, n), want) {
            (Ok(got), Some(w)) => got == w,
            (Err(st), None) => st == errno::ENOENT,
            _ => false,
        },
        || log_of(s),
    );
}

fn binlog(s: &StorageProc) -> Vec<String> {
    std::fs::read_to_string(s.base.join("data/sync/binlog.000"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn content(i: usize) -> Vec<u8> {
    let len = 100 + (i * 7919) % 3000;
    (0..len).map(|k| ((k * 31 + i * 17) % 251) as u8).collect()
}

#[test]
fn every_kind_of_change_reaches_the_peer() {
    let c = Cluster::new("repl-ops");
    let a = c.storage(11, &[]);
    let b = c.storage(12, &[]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);

    // Upload to A, readable on B.
    let t0 = Instant::now();
    let n = upload(&a, b"hello replication", "txt");
    wait_content(&b, &n, Some(b"hello replication"), 15);
    eprintln!("first file readable on the peer after {:?}", t0.elapsed());

    // B reports what it received (SYNC_REPORT): once it got a record
    // stamped after the file, the tracker routes downloads of it to B too.
    std::thread::sleep(Duration::from_millis(1100));
    let later = upload(&a, b"a later record", "txt");
    wait_content(&b, &later, Some(b"a later record"), 15);
    let b_ip = b.addr.ip().to_string();
    wait(
        "the tracker to route downloads of the file to B",
        15,
        || {
            let mut body = group16();
            body.extend_from_slice(n.to_string().as_bytes());
            Wire::connect(c.tracker.addr)
                .and_then(|mut w| w.call(tc::QUERY_FETCH_ALL, &body))
                .is_ok_and(|(st, r)| st == 0 && String::from_utf8_lossy(&r).contains(&b_ip))
        },
        || log_of(&b),
    );

    // Metadata: create then merge.
    let pairs = |kv: &[(&str, &str)]| {
        metadata::encode(
            &kv.iter()
                .map(|(k, v)| MetaPair {
                    name: k.as_bytes().to_vec(),
                    value: v.as_bytes().to_vec(),
                })
                .collect::<Vec<_>>(),
        )
    };
    for (op, kv) in [
        (MetaOp::Overwrite, vec![("width", "100")]),
        (MetaOp::Merge, vec![("height", "50")]),
    ] {
        let mut body = Vec::new();
        SetMetadataReq {
            op,
            group: GroupName::new("group1").unwrap(),
            filename: n.clone(),
            meta: pairs(&kv),
        }
        .encode(&mut body);
        assert_eq!(call(&a, sc::SET_METADATA, &body).0, 0);
    }
    let want_meta = get_metadata(&a, &n).unwrap();
    wait(
        "metadata on the peer",
        10,
        || get_metadata(&b, &n).ok() == Some(want_meta.clone()),
        || log_of(&b),
    );

    // Appender: append, modify, truncate.
    let app = upload_as(&a, sc::UPLOAD_APPENDER_FILE, b"0123456789", "log");
    let mut body = Vec::new();
    AppendHead::encode(&app, 6, &mut body);
    body.extend_from_slice(b"abcdef");
    assert_eq!(call(&a, sc::APPEND_FILE, &body).0, 0);
    let mut body = Vec::new();
    ModifyHead::encode(&app, 2, 3, &mut body);
    body.extend_from_slice(b"XYZ");
    assert_eq!(call(&a, sc::MODIFY_FILE, &body).0, 0);
    wait_content(&b, &app, Some(b"01XYZ56789abcdef"), 10);
    let mut body = Vec::new();
    TruncateReq {
        filename: app.clone(),
        new_size: 7,
    }
    .encode(&mut body);
    assert_eq!(call(&a, sc::TRUNCATE_FILE, &body).0, 0);
    wait_content(&b, &app, Some(b"01XYZ56"), 10);

    // An upload on B flows the other way.
    let nb = upload(&b, b"from b", "txt");
    wait_content(&a, &nb, Some(b"from b"), 10);

    // Delete on A: gone on B, with its metadata.
    let mut body = group16();
    body.extend_from_slice(n.to_string().as_bytes());
    assert_eq!(call(&a, sc::DELETE_FILE, &body).0, 0);
    wait_content(&b, &n, None, 10);
    assert_eq!(get_metadata(&b, &n), Err(errno::ENOENT));

    // B recorded A's create and deletes as replica records with A's
    // timestamps. (Changes that came faster than the sync may be folded:
    // a create read after an append already carries it, so the append is
    // "already there" and writes no record.)
    // The `-m` sidecar's delete is a record of its own, after the one the
    // wait above saw applied: wait for B's binlog to hold them all.
    let la = binlog(&a);
    let wanted: Vec<String> = la
        .iter()
        .filter(|l| {
            l.ends_with(&format!(" C {n}"))
                || l.ends_with(&format!(" D {n}"))
                || l.ends_with(&format!(" D {n}-m"))
        })
        .map(|l| l.replace(" C ", " c ").replace(" D ", " d "))
        .collect();
    wait(
        "A's create and deletes as replica records on B",
        10,
        || {
            let lb = binlog(&b);
            wanted.iter().all(|w| lb.contains(w))
        },
        || {
            format!(
                "wanted {wanted:#?}\nB's binlog {:#?}\n{}",
                binlog(&b),
                log_of(&b)
            )
        },
    );
    let lb = binlog(&b);
    assert!(
        lb.iter()
            .all(|l| l.contains(" C ") || !l.contains(&nb.to_string())),
        "B's own upload is its only source record there"
    );
    assert_eq!(
        la.iter().filter(|l| l.contains(" c ")).count(),
        1,
        "A holds one replica record (B's upload): {la:#?}"
    );
    let dups: BTreeMap<&String, usize> = lb.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l).or_default() += 1;
        m
    });
    assert!(
        dups.values().all(|&k| k == 1),
        "B applied something twice: {lb:#?}"
    );
}

#[test]
fn a_peer_that_was_down_gets_every_file_even_if_the_source_crashes_meanwhile() {
    let c = Cluster::new("repl-down");
    // A pauses 5 ms after each file so the catch-up lasts long enough to
    // kill it in the middle.
    // Without per-file fsyncs (a kill -9 loses no acknowledged write
    // either way; only a power loss would) the test stays quick.
    let mut a = c.storage(11, &["sync_interval = 5", "durable = false"]);
    let mut b = c.storage(12, &["durable = false"]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    let first = upload(&a, b"before", "txt");
    wait_content(&b, &first, Some(b"before"), 15);

    b.stop();
    c.wait_status(&b, status::OFFLINE, 10);
    let mut files = Vec::new();
    for i in 0..FILES_WHILE_DOWN {
        let data = content(i);
        let n = upload(&a, &data, "bin");
        files.push((n, crc32fast::hash(&data)));
    }
    b.restart();
    // Kill the source once part of the backlog has arrived.
    wait(
        "part of the backlog on B",
        30,
        || binlog(&b).len() > 1 + FILES_WHILE_DOWN / 4,
        || log_of(&a),
    );
    a.kill9();
    let got = binlog(&b).len();
    assert!(
        got < 1 + FILES_WHILE_DOWN,
        "the catch-up was already over ({got} records)"
    );
    a.restart();
    for (n, crc) in &files {
        wait(
            "every file on B",
            60,
            || download(&b, n).is_ok_and(|d| crc32fast::hash(&d) == *crc),
            || log_of(&a),
        );
    }
    // Exactly one replica record per file: resent records after the crash
    // were recognised, not applied twice.
    let lb = binlog(&b);
    for (n, _) in &files {
        let k = lb
            .iter()
            .filter(|l| l.ends_with(&format!(" c {n}")))
            .count();
        assert_eq!(k, 1, "{n} recorded {k} times on B");
    }
}

#[test]
fn a_new_server_catches_up_from_its_source_and_turns_active() {
    let c = Cluster::new("repl-new");
    let a = c.storage(11, &[]);
    let b = c.storage(12, &[]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    let mut files = Vec::new();
    for i in 0..FILES_BEFORE_NEW_SERVER {
        let s = if i % 2 == 0 { &a } else { &b };
        let data = content(i);
        files.push((upload(s, &data, "dat"), data));
    }
    let gone = upload(&a, b"deleted before the new server came", "txt");
    let mut body = group16();
    body.extend_from_slice(gone.to_string().as_bytes());
    assert_eq!(call(&a, sc::DELETE_FILE, &body).0, 0);
    for (n, d) in &files {
        wait_content(&a, n, Some(d), 15);
        wait_content(&b, n, Some(d), 15);
    }

    let cc = c.storage(13, &[]);
    c.wait_status(&cc, status::ACTIVE, 40);
    for (n, d) in &files {
        wait_content(&cc, n, Some(d), 20);
    }
    assert_eq!(download(&cc, &gone), Err(errno::ENOENT));
    // The new server only holds replica records; its init flag says done.
    let lc = binlog(&cc);
    assert!(
        lc.iter().all(|l| l
            .split(' ')
            .nth(1)
            .is_some_and(|op| op.chars().all(|c| c.is_ascii_lowercase()))),
        "{lc:#?}"
    );
    // It learns it is ACTIVE from its next beat's reply.
    let flag_path = cc.base.join("data/.data_init_flag");
    let read_flag = || std::fs::read_to_string(&flag_path).unwrap_or_default();
    wait(
        "the new server to persist sync_old_done",
        10,
        || read_flag().contains("sync_old_done=1"),
        read_flag,
    );
    let flag = read_flag();
    let src = flag
        .lines()
        .find_map(|l| l.strip_prefix("sync_src_server="))
        .unwrap()
        .to_owned();
    assert!(
        src == a.addr.ip().to_string() || src == b.addr.ip().to_string(),
        "{flag}"
    );
    // The source's mark for the new server records the finished full sync.
    let source = if src == a.addr.ip().to_string() {
        &a
    } else {
        &b
    };
    let mark = std::fs::read_to_string(source.base.join(format!(
        "data/sync/{}_{}.mark",
        cc.addr.ip(),
        c.port
    )))
    .unwrap();
    assert!(
        mark.contains("need_sync_old=1") && mark.contains("sync_old_done=1"),
        "{mark}"
    );
    // New uploads reach it like any peer.
    let late = upload(&a, b"after the catch-up", "txt");
    wait_content(&cc, &late, Some(b"after the catch-up"), 10);
}

#[test]
fn the_sync_window_holds_changes_back_until_it_opens() {
    let c = Cluster::new("repl-window");
    // A window two hours from now: closed for the whole test.
    let now_min = fdfs_storage::sync::window::local_secs_of_day() / 60;
    let start = (now_min + 120) % (24 * 60);
    let end = (start + 1) % (24 * 60);
    let s_line = format!("sync_start_time = {:02}:{:02}", start / 60, start % 60);
    let e_line = format!("sync_end_time = {:02}:{:02}", end / 60, end % 60);
    // B first: A then joins as a new server whose full sync B serves (a
    // source with a closed window would keep A out of the group).
    let b = c.storage(12, &[]);
    c.wait_status(&b, status::ACTIVE, 20);
    let mut a = c.storage(11, &[&s_line, &e_line]);
    c.wait_status(&a, status::ACTIVE, 20);
    let n = upload(&a, b"held back", "txt");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        download(&b, &n),
        Err(errno::ENOENT),
        "sent outside the window"
    );

    // Open the window (config change + restart): the change flows.
    let text = std::fs::read_to_string(&a.conf)
        .unwrap()
        .replace(&s_line, "sync_start_time = 00:00")
        .replace(&e_line, "sync_end_time = 23:59");
    std::fs::write(&a.conf, text).unwrap();
    a.restart();
    wait_content(&b, &n, Some(b"held back"), 20);
}

#[test]
fn a_deleted_peer_stops_receiving_and_its_mark_is_removed() {
    let c = Cluster::new("repl-delete");
    let a = c.storage(11, &[]);
    let mut b = c.storage(12, &[]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    let n = upload(&a, b"one", "txt");
    wait_content(&b, &n, Some(b"one"), 15);
    let mark = a
        .base
        .join(format!("data/sync/{}_{}.mark", b.addr.ip(), c.port));
    wait("A's mark for B", 10, || mark.exists(), || log_of(&a));

    b.stop();
    c.wait_status(&b, status::OFFLINE, 10);
    let mut body = group16();
    body.extend_from_slice(b.addr.ip().to_string().as_bytes());
    let (st, _) = Wire::connect(c.tracker.addr)
        .unwrap()
        .call(tc::SERVER_DELETE_STORAGE, &body)
        .unwrap();
    assert_eq!(st, 0);
    wait("A to forget B's mark", 15, || !mark.exists(), || log_of(&a));
    assert!(
        log_of(&a).contains("peer deleted from the group: stopping its sync"),
        "{}",
        log_of(&a)
    );
    // The stopped worker does not bring the mark back, and new files are
    // not queued for B any more.
    upload(&a, b"after the delete", "txt");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!mark.exists());
}

/// The `binlog_offset` of a mark file (0 when absent).
fn mark_offset(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("binlog_offset="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_server_whose_ip_changed_keeps_its_place_in_the_group() {
    let c = Cluster::new("repl-move");
    let a = c.storage(11, &[]);
    let mut b = c.storage(12, &[]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    let before: Vec<LogicName> = (0..20).map(|i| upload(&a, &content(i), "bin")).collect();
    for (i, n) in before.iter().enumerate() {
        wait_content(&b, n, Some(&content(i)), 15);
    }
    let old_mark = a
        .base
        .join(format!("data/sync/{}_{}.mark", b.addr.ip(), c.port));
    wait(
        "A's mark for B to cover the 20 files",
        10,
        || mark_offset(&old_mark) >= binlog(&a).join("\n").len() as u64,
        || log_of(&a),
    );
    let offset = mark_offset(&old_mark);

    // B comes back on another address with the same data.
    b.stop();
    c.wait_status(&b, status::OFFLINE, 10);
    let new_ip = c.ip(13);
    std::fs::rename(&b.base, c.dir.join(format!("storage-{new_ip}-{}", c.port))).unwrap();
    let new_mark = a.base.join(format!("data/sync/{new_ip}_{}.mark", c.port));
    let b2 = c.storage(13, &[]);
    // Watch A's mark for the new address from the moment it appears: moved
    // over, it never shows less than the old one had (a mark started over
    // would show 0 first).
    let mut lowest = None;
    let end = Instant::now() + Duration::from_secs(20);
    let mut seen_until = None;
    while Instant::now() < end && seen_until.is_none_or(|t| Instant::now() < t) {
        if new_mark.exists() {
            let o = mark_offset(&new_mark);
            lowest = Some(lowest.map_or(o, |l: u64| l.min(o)));
            seen_until.get_or_insert(Instant::now() + Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let lowest = lowest.unwrap_or_else(|| panic!("no mark for B's new IP; log:\n{}", log_of(&a)));
    assert!(
        lowest >= offset,
        "A's mark for B went back from {offset} to {lowest}"
    );
    c.wait_status(&b2, status::ACTIVE, 20);
    assert_eq!(c.status_of(&b), Some(status::IP_CHANGED));
    wait(
        "B to say the tracker moved its record",
        10,
        || log_of(&b2).contains("the tracker moved our record to the new IP"),
        || log_of(&b2),
    );

    // A carried its mark over: replication to B goes on where it stood.
    assert!(!old_mark.exists());
    assert!(
        log_of(&a).contains("its replication mark follows it"),
        "{}",
        log_of(&a)
    );
    let after = upload(&a, b"after the move", "txt");
    wait_content(&b2, &after, Some(b"after the move"), 15);
    let from_b = upload(&b2, b"from the new address", "txt");
    assert_eq!(from_b.info.source, fdfs_proto::SourceServer::Ip(new_ip));
    wait_content(&a, &from_b, Some(b"from the new address"), 15);
    // The files from before are still served from the moved server.
    assert_eq!(download(&b2, &before[3]).unwrap(), content(3));
}

#[test]
fn a_replaced_disk_is_filled_again_from_the_group_before_serving() {
    let c = Cluster::new("repl-disk");
    let disk1 = |host: u8| c.disk1(host);
    let start = |host: u8| c.storage_with_disk1(host, &["disk_recovery_threads = 4"]);
    // Uploads to store path 1 (M01), the disk that will be replaced.
    let upload_m01 = |s: &StorageProc, data: &[u8]| {
        let mut b = Vec::new();
        UploadHead {
            store_path_index: 1,
            file_size: data.len() as u64,
            ext: "bin".into(),
        }
        .encode(&mut b);
        b.extend_from_slice(data);
        let (st, r) = call(s, sc::UPLOAD_FILE, &b);
        assert_eq!(st, 0, "upload to {}", s.addr);
        let n = LogicName::parse(std::str::from_utf8(&r[16..]).unwrap()).unwrap();
        assert_eq!(n.store_path, 1);
        n
    };
    let mut a = start(11);
    let mut b = start(12);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);

    let mut files: Vec<(LogicName, Vec<u8>)> = (0..30)
        .map(|i| (upload_m01(&a, &content(i)), content(i)))
        .chain((30..35).map(|i| (upload_m01(&b, &content(i)), content(i))))
        .collect();
    // One with metadata, one deleted.
    set_width_640(&a, &files[0].0);
    let (deleted, _) = files.remove(5);
    let mut body = group16();
    body.extend_from_slice(deleted.to_string().as_bytes());
    assert_eq!(call(&a, sc::DELETE_FILE, &body).0, 0);
    for (n, data) in &files {
        wait_content(&b, n, Some(data), 15);
    }
    wait_content(&b, &deleted, None, 15);
    let meta = get_metadata(&a, &files[0].0).unwrap();
    wait(
        "the metadata on B",
        10,
        || get_metadata(&b, &files[0].0).as_ref() == Ok(&meta),
        || log_of(&b),
    );

    // B's second disk dies and is replaced by an empty one.
    b.stop();
    c.wait_status(&b, status::OFFLINE, 10);
    std::fs::remove_dir_all(disk1(12)).unwrap();
    std::fs::create_dir_all(disk1(12)).unwrap();
    // Meanwhile A takes more files; they reach B by replication.
    let later: Vec<(LogicName, Vec<u8>)> = (40..43)
        .map(|i| (upload_m01(&a, &content(i)), content(i)))
        .collect();

    let mut b = start(12);
    c.wait_status(&b, status::ACTIVE, 30);
    // Everything its binlog lists is back, byte for byte, before it served.
    for (n, data) in files.iter().chain(&later) {
        wait_content(&b, n, Some(data), 15);
    }
    assert_eq!(get_metadata(&b, &files[0].0), Ok(meta));
    assert_eq!(download(&b, &deleted), Err(errno::ENOENT));
    // The log of this start (the file keeps the first one's too).
    let whole = std::fs::read_to_string(b.log_file()).unwrap();
    let log = &whole[whole.rfind("INFO started").unwrap()..];
    assert!(log.contains("disk recovery: store path 1 is new"), "{log}");
    let done = log
        .lines()
        .find(|l| l.contains("disk recovery done"))
        .unwrap_or_else(|| panic!("no 'disk recovery done' line:\n{log}"));
    // 34 files and one metadata file; the deleted one is not fetched.
    assert!(done.contains("restored=35"), "{done}");
    let recovered_before_join =
        log.find("disk recovery done").unwrap() < log.find("joined").unwrap_or(usize::MAX);
    assert!(recovered_before_join, "{log}");
    assert!(!disk1(12).join("data/.fdfs_recovery").exists());

    // A store path that only lacks its mark (as one written by another
    // FastDFS might) is checked without the network: with no other server
    // up, B still starts, finding every file in place.
    b.stop();
    a.stop();
    std::fs::remove_file(disk1(12).join("data/.fastdfs_vars")).unwrap();
    let b = start(12);
    c.wait_status(&b, status::ACTIVE, 20);
    let whole = std::fs::read_to_string(b.log_file()).unwrap();
    let log = &whole[whole.rfind("INFO started").unwrap()..];
    assert!(log.contains("restored=0 present=38 gone=0"), "{log}");
}

#[test]
fn write_quorum_acknowledges_only_files_the_peer_holds() {
    let c = Cluster::new("repl-quorum");
    let quorum = ["write_quorum = 2", "write_quorum_timeout = 2"];
    let a = c.storage(11, &quorum);
    let mut b = c.storage(12, &quorum);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    // Every acknowledged upload is already on the peer: no waiting.
    for i in 0..20 {
        let n = upload(&a, &content(i), "bin");
        assert_eq!(
            download(&b, &n),
            Ok(content(i)),
            "file {i} not on the peer at the ack"
        );
    }
    let n = upload(&b, b"the other way", "txt");
    assert_eq!(download(&a, &n), Ok(b"the other way".to_vec()));

    // The peer is down: the upload fails after the timeout, with
    // ETIMEDOUT, and the file is gone again.
    b.stop();
    let mut body = Vec::new();
    UploadHead {
        store_path_index: -1,
        file_size: 5,
        ext: "txt".into(),
    }
    .encode(&mut body);
    body.extend_from_slice(b"alone");
    let started = Instant::now();
    let (st, _) = call(&a, sc::UPLOAD_FILE, &body);
    assert_eq!(st, errno::ETIMEDOUT);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let lines = binlog(&a);
    let (create, delete) = (&lines[lines.len() - 2], &lines[lines.len() - 1]);
    let name = create.split(' ').nth(2).unwrap().to_owned();
    assert!(
        create.contains(" C ") && delete.ends_with(&format!(" D {name}")),
        "{lines:?}"
    );
    let failed = LogicName::parse(&name).unwrap();
    assert_eq!(download(&a, &failed), Err(errno::ENOENT));
    assert!(log_of(&a).contains("write quorum not reached"));

    // Back: uploads are acknowledged again, and the failed file never
    // shows up on the peer.
    let b = c.storage(12, &quorum);
    c.wait_status(&b, status::ACTIVE, 20);
    let n = upload(&a, b"after", "txt");
    assert_eq!(download(&b, &n), Ok(b"after".to_vec()));
    assert_eq!(download(&b, &failed), Err(errno::ENOENT));
}

/// Asserts a download gave `want`, without printing kilobytes of bytes.
fn same_bytes(what: &str, got: Result<Vec<u8>, u8>, want: &[u8]) {
    match got {
        Ok(g) => assert!(
            g == want,
            "{what}: {} bytes, not the {} expected (first difference at {:?})",
            g.len(),
            want.len(),
            g.iter().zip(want).position(|(x, y)| x != y)
        ),
        Err(st) => panic!("{what}: status {st}"),
    }
}

/// Writes `files` into slots of trunk file `000001` in `data/00/00/` of
/// `store` (a store path of a FastDFS that packed small files,
/// `use_trunk_file = true`) and appends their creates to the binlog in
/// `base`, as upstream's uploads would have. Header bytes per PROTOCOL.md
/// §5.5, written here by hand. Returns the names, in order.
fn plant_trunk_files(
    store: &std::path::Path,
    base: &std::path::Path,
    store_path: u8,
    source: Ipv4Addr,
    files: &[(u32, u32, Vec<u8>)],
) -> Vec<LogicName> {
    use fdfs_proto::file_id::{ext_part, NameInfo, SourceServer, TrunkSlot};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let dir = store.join("data/00/00");
    let trunk = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("000001"))
        .unwrap();
    // Upstream makes whole trunk files up front (64 MiB by default).
    trunk.set_len(1 << 22).unwrap();
    let mut binlog = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(base.join("data/sync/binlog.000"))
        .unwrap();
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600) as u32;
    let mut names = Vec::new();
    for (i, (offset, alloc, data)) in files.iter().enumerate() {
        let info = NameInfo {
            source: SourceServer::Ip(source),
            timestamp: ts,
            // bit 63: the random form; bit 59: a trunk file.
            size_field: (1 << 63) | (1 << 59) | ((0x1234 + i as u64) << 32) | data.len() as u64,
            crc32: crc32fast::hash(data),
        };
        let slot = TrunkSlot {
            trunk_id: 1,
            offset: *offset,
            alloc_size: *alloc,
        };
        let ext = ext_part("jpg", i as u32).unwrap();
        let name = LogicName::build(store_path, 0, 0, info, Some(slot), &ext);
        let mut h = vec![b'F'];
        for v in [*alloc, data.len() as u32, info.crc32, ts] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h.extend_from_slice(ext.as_bytes());
        trunk.write_all_at(&h, u64::from(*offset)).unwrap();
        trunk.write_all_at(data, u64::from(*offset) + 24).unwrap();
        writeln!(binlog, "{ts} C {name}").unwrap();
        names.push(name);
    }
    names
}

/// A FastDFS group that packed small files into trunk files moves to us:
/// those files are served from their slots (whole, in ranges, with file
/// info and metadata), a new server gets them into the same slots, a
/// replaced disk is filled again slot by slot, and a delete frees the slot
/// on every server.
#[test]
fn files_in_upstream_trunk_files_are_served_replicated_recovered_and_deleted() {
    let c = Cluster::new("repl-trunk");
    let disk1 = |host: u8| c.disk1(host);
    let start = |host: u8| c.storage_with_disk1(host, &[]);
    // A's folders as FastDFS left them: made once, then the trunk file and
    // its binlog records are put in while A is down.
    let mut a = start(11);
    c.wait_status(&a, status::ACTIVE, 20);
    a.stop();
    let big: Vec<u8> = (0..200_000).map(|k| (k % 253) as u8).collect();
    let files = [
        (0, 256, b"a small image, packed".to_vec()),
        (256, 512, content(1)[..300].to_vec()),
        // Big enough for sendfile.
        (1 << 20, 262_144, big.clone()),
    ];
    let names = plant_trunk_files(&disk1(11), &a.base, 1, c.ip(11), &files);
    let mut a = start(11);
    c.wait_status(&a, status::ACTIVE, 20);
    for (n, (_, _, data)) in names.iter().zip(&files) {
        same_bytes(&format!("{n} on A"), download(&a, n), data);
    }
    // A range of the big one, from inside its slot.
    let mut body = Vec::new();
    DownloadReq {
        offset: 70_000,
        length: 50_000,
        group: GroupName::new("group1").unwrap(),
        filename: names[2].clone(),
    }
    .encode(&mut body);
    let (st, got) = call(&a, sc::DOWNLOAD_FILE, &body);
    assert_eq!(st, 0);
    same_bytes("a range of the big one", Ok(got), &big[70_000..120_000]);
    // FILE_INFO: size and CRC32 (sign-extended, as upstream) of the
    // slot's file.
    let mut body = group16();
    body.extend_from_slice(names[0].to_string().as_bytes());
    let (st, info) = call(&a, sc::QUERY_FILE_INFO, &body);
    assert_eq!(st, 0);
    assert_eq!(info[..8], (files[0].2.len() as u64).to_be_bytes());
    let crc = crc32fast::hash(&files[0].2) as i32;
    assert_eq!(info[16..24], i64::from(crc).to_be_bytes());
    // Metadata, set now on a trunk file.
    set_width_640(&a, &names[1]);
    // The tracker routes a trunk file ID like any other.
    let mut body = group16();
    body.extend_from_slice(names[0].to_string().as_bytes());
    let (st, _) = Wire::connect(c.tracker.addr)
        .and_then(|mut w| w.call(tc::QUERY_FETCH_ONE, &body))
        .unwrap();
    assert_eq!(st, 0);

    // A new server catches up: the files land in the same slots.
    let mut b = start(12);
    c.wait_status(&b, status::ACTIVE, 30);
    for (n, (_, _, data)) in names.iter().zip(&files) {
        wait_content(&b, n, Some(data), 15);
    }
    wait(
        "the metadata on B",
        10,
        || get_metadata(&b, &names[1]).is_ok(),
        || log_of(&b),
    );
    let trunk_b = std::fs::read(disk1(12).join("data/00/00/000001")).unwrap();
    assert!(trunk_b[24..24 + files[0].2.len()] == files[0].2[..]);
    assert!(trunk_b[(1 << 20) + 24..(1 << 20) + 24 + big.len()] == big[..]);

    // B's disk 1 is replaced: the recovery refills the slots before B
    // serves again.
    b.stop();
    c.wait_status(&b, status::OFFLINE, 10);
    std::fs::remove_dir_all(disk1(12)).unwrap();
    std::fs::create_dir_all(disk1(12)).unwrap();
    let mut b = start(12);
    c.wait_status(&b, status::ACTIVE, 30);
    for (n, (_, _, data)) in names.iter().zip(&files) {
        same_bytes(&format!("{n} on B"), download(&b, n), data);
    }
    assert!(get_metadata(&b, &names[1]).is_ok());
    let whole = std::fs::read_to_string(b.log_file()).unwrap();
    let log = &whole[whole.rfind("INFO started").unwrap()..];
    assert!(log.contains("restored=4"), "{log}");

    // A byte of a slot flipped on B: fsck --crc names it, --repair fills
    // the slot again from A.
    let trunk_b = disk1(12).join("data/00/00/000001");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&trunk_b)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"X", 256 + 24 + 5).unwrap();
    drop(f);
    let fsck = |args: &[&str]| fsck(&b, args);
    let (code, text) = fsck(&["--crc"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("group1/{}: CRC32", names[1])),
        "{text}"
    );
    let (code, text) = fsck(&["--crc", "--repair"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 repaired, 0 left"), "{text}");
    same_bytes("the repaired slot", download(&b, &names[1]), &files[1].2);
    assert_eq!(fsck(&["--crc", "--orphans"]).0, Some(0));

    // A delete frees the slot on both servers; the neighbours stay.
    let mut body = group16();
    body.extend_from_slice(names[0].to_string().as_bytes());
    assert_eq!(call(&a, sc::DELETE_FILE, &body).0, 0);
    wait_content(&b, &names[0], None, 15);
    assert_eq!(download(&a, &names[0]), Err(errno::ENOENT));
    for s in [&a, &b] {
        same_bytes("the big one", download(s, &names[2]), &big);
    }
    for host in [11, 12] {
        let t = std::fs::read(disk1(host).join("data/00/00/000001")).unwrap();
        assert_eq!(t[..24], [0u8; 24], "host {host}");
    }
    b.stop();
    a.stop();
}

/// `fdfs fsck --crc --repair` on a server whose copies were damaged by
/// hand: each is fetched again from the group, checked and put back.
#[test]
fn fsck_repairs_damaged_copies_from_the_group() {
    let c = Cluster::new("repl-fsck");
    let a = c.storage(11, &[]);
    let b = c.storage(12, &[]);
    c.wait_status(&a, status::ACTIVE, 20);
    c.wait_status(&b, status::ACTIVE, 20);
    let files: Vec<(LogicName, Vec<u8>)> = (0..6)
        .map(|i| (upload(&a, &content(i), "bin"), content(i)))
        .collect();
    set_width_640(&a, &files[0].0);
    for (n, data) in &files {
        wait_content(&b, n, Some(data), 15);
    }
    wait(
        "the metadata on B",
        10,
        || get_metadata(&b, &files[0].0).is_ok(),
        || log_of(&b),
    );
    let on_b = |n: &LogicName| b.base.join("data").join(n.relative_path());
    std::fs::remove_file(on_b(&files[1].0)).unwrap();
    std::fs::write(on_b(&files[2].0), b"cut").unwrap();
    let mut flipped = files[3].1.clone();
    flipped[7] ^= 0xff;
    std::fs::write(on_b(&files[3].0), &flipped).unwrap();
    let sidecar = on_b(&files[0].0).with_file_name(format!("{}-m", files[0].0.name));
    std::fs::remove_file(&sidecar).unwrap();

    let fsck = |args: &[&str]| fsck(&b, args);
    let (code, text) = fsck(&["--crc", "--repair"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("4 repaired, 0 left"), "{text}");
    for n in [&files[1].0, &files[2].0, &files[3].0] {
        assert!(text.contains(&format!("group1/{n}: repaired")), "{text}");
    }
    let (code, text) = fsck(&["--crc", "--orphans"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("all sound"), "{text}");
    for (n, data) in &files {
        same_bytes(&format!("{n} on B"), download(&b, n), data);
    }
    assert!(get_metadata(&b, &files[0].0).is_ok());
}

//! Storage ids (`use_storage_id = true`, storage_ids.conf), with real
//! processes: a tracker that knows its servers by id, two storages of group1
//! on their own addresses and ports (one names its id in storage.conf, the
//! other asks the tracker), and one that is not in the file.
//!
//! Covers: JOIN by id and by address; GET_SERVER_ID and GET_GROUP_NAME
//! asked by a storage.conf without them; an unknown server refused; file
//! IDs that carry the numeric id; replication between servers known by id
//! (mark files named by id); downloads routed to the source by its id;
//! FILE_INFO naming the source's address; FETCH_STORAGE_IDS; a tracker
//! that refuses to start with a bad storage_ids.conf.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fdfs_proto::cmd::{storage as sc, tracker as tc};
use fdfs_proto::server::status;
use fdfs_proto::storage::FileInfoResp;
use fdfs_proto::tracker::{
    FetchResp, FetchStorageIdsReq, FetchStorageIdsResp, FileReq, ListStorageReq, StorageStat,
};
use fdfs_proto::{errno, GroupName, LogicName, SourceServer};
use fdfs_testkit::{free_port, write_file, TestDir, Wire};

mod storage_support;
use storage_support::{Client, StorageProc, TrackerProc, BIN};

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}; log:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(s: &StorageProc) -> String {
    let mut t = s.proc.log_text();
    t.push_str(&std::fs::read_to_string(s.log_file()).unwrap_or_default());
    let n = t.len();
    t[n.saturating_sub(6000)..].to_owned()
}

/// A /24 of our own on loopback.
fn own_net() -> u8 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    100 + (seed % 150) as u8
}

fn list_storages(tracker: &TrackerProc) -> Vec<StorageStat> {
    let mut body = Vec::new();
    ListStorageReq {
        group: GroupName::new("group1").unwrap(),
        storage_id: None,
    }
    .encode(&mut body);
    match Wire::connect(tracker.addr).and_then(|mut w| w.call(tc::SERVER_LIST_STORAGE, &body)) {
        Ok((0, b)) => StorageStat::decode_list(&b).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn status_of(tracker: &TrackerProc, id: &str) -> Option<u8> {
    list_storages(tracker)
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| s.status)
}

/// Uploads to `s` through the storage tests' client; the logic name.
fn upload(s: &StorageProc, data: &[u8]) -> LogicName {
    let name = storage_support::upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, data, "bin")
        .unwrap_or_else(|st| panic!("upload to {} failed ({st}); log:\n{}", s.addr, log_of(s)));
    LogicName::parse(&name).unwrap()
}

fn download(s: &StorageProc, n: &LogicName) -> Result<Vec<u8>, u8> {
    storage_support::download(&mut Client::connect(s.addr), &n.to_string(), 0, 0)
}

fn fetch_all_ids(tracker: &TrackerProc) -> (u32, Vec<String>) {
    let mut w = Wire::connect(tracker.addr).unwrap();
    let mut lines = Vec::new();
    loop {
        let mut body = Vec::new();
        FetchStorageIdsReq {
            start_index: lines.len() as u32,
            allow_empty: false,
        }
        .encode(&mut body);
        let (st, b) = w.call(tc::STORAGE_FETCH_STORAGE_IDS, &body).unwrap();
        assert_eq!(st, 0);
        let page = FetchStorageIdsResp::decode(&b).unwrap();
        lines.extend(page.lines);
        if lines.len() as u32 >= page.total_count {
            return (page.total_count, lines);
        }
    }
}

#[test]
fn servers_known_by_storage_id() {
    let dir = TestDir::new("storage-ids");
    let net = own_net();
    let ip = |h: u8| Ipv4Addr::new(127, 0, net, h);
    // Two servers of group1 on their own ports: allowed with storage ids.
    let (port_a, port_b, port_x) = (free_port(ip(11)), free_port(ip(12)), free_port(ip(13)));
    let ids_path = dir.join("storage_ids.conf");
    write_file(
        &ids_path,
        &format!(
            "# id group address\n\
             100001 group1 {}:{port_a}\n\
             100002 group1 {}:{port_b}\n\
             100003 group2 10.255.0.1 rw=none\n",
            ip(11),
            ip(12)
        ),
    );
    let ids_key = format!("storage_ids_filename = {}", ids_path.display());
    let tracker = TrackerProc::start(
        BIN,
        dir.path(),
        Ipv4Addr::LOCALHOST,
        &[
            "use_storage_id = true",
            "id_type_in_filename = id",
            &ids_key,
        ],
    );
    let extra = ["sync_wait_msec = 50", "write_mark_file_freq = 1"];
    let mut with_id = extra.to_vec();
    with_id.push("server_id = 100001");
    let a = StorageProc::start_at(
        BIN,
        dir.path(),
        ip(11),
        port_a,
        "group1",
        &[tracker.addr],
        &with_id,
        &[],
    );
    // b names neither its group nor its id: the tracker gives both
    // (GET_GROUP_NAME, GET_SERVER_ID).
    let mut anonymous = extra.to_vec();
    anonymous.push("group_name =");
    let b = StorageProc::start_at(
        BIN,
        dir.path(),
        ip(12),
        port_b,
        "group1",
        &[tracker.addr],
        &anonymous,
        &[],
    );
    // x is in no line of storage_ids.conf.
    let x = StorageProc::start_at(
        BIN,
        dir.path(),
        ip(13),
        port_x,
        "group1",
        &[tracker.addr],
        &extra,
        &[],
    );
    for (id, s) in [("100001", &a), ("100002", &b)] {
        wait(
            &format!("{id} to be ACTIVE"),
            30,
            || status_of(&tracker, id) == Some(status::ACTIVE),
            || log_of(s),
        );
    }
    // The ids are the tracker's names for them, with their own ports.
    let listed = list_storages(&tracker);
    let mut seen: Vec<(String, String, i64)> = listed
        .iter()
        .map(|s| (s.id.clone(), s.ip_addr.clone(), s.storage_port))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("100001".into(), ip(11).to_string(), i64::from(port_a)),
            ("100002".into(), ip(12).to_string(), i64::from(port_b)),
        ],
        "the unknown server must not be listed"
    );
    for said in [
        "group_name given by the tracker",
        "storage id given by the tracker",
    ] {
        wait(
            &format!("b to log {said:?}"),
            10,
            || log_of(&b).contains(said),
            || log_of(&b),
        );
    }
    // x is refused and says why (its group_name is set, so it gets as far
    // as asking for its id).
    wait(
        "x to report that the tracker has no id for it",
        10,
        || log_of(&x).contains("no storage id for this server"),
        || log_of(&x),
    );

    // File IDs carry the numeric id of the server that took them, and
    // replication between servers known by id works both ways.
    let data_a: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let data_b: Vec<u8> = (0..7000u32).map(|i| (i % 241) as u8).collect();
    let from_a = upload(&a, &data_a);
    let from_b = upload(&b, &data_b);
    assert_eq!(from_a.info.source, SourceServer::Id(100001), "{from_a}");
    assert_eq!(from_b.info.source, SourceServer::Id(100002), "{from_b}");
    for (s, n, want) in [(&b, &from_a, &data_a), (&a, &from_b, &data_b)] {
        wait(
            &format!("{n} to reach {}", s.addr),
            30,
            || download(s, n).as_ref() == Ok(want),
            || log_of(s),
        );
    }
    // Mark files are named by the peer's id.
    for (s, peer) in [(&a, "100002"), (&b, "100001")] {
        let mark = s.base.join(format!("data/sync/{peer}.mark"));
        wait(
            &format!("{}", mark.display()),
            10,
            || mark.exists(),
            || log_of(s),
        );
    }

    // FILE_INFO on either server gives the source's address, looked up by
    // the id in the name.
    for s in [&a, &b] {
        let mut body = b"group1".to_vec();
        body.resize(16, 0);
        body.extend_from_slice(from_b.to_string().as_bytes());
        let (st, r) = Wire::connect(s.addr)
            .and_then(|mut w| w.call(sc::QUERY_FILE_INFO, &body))
            .unwrap();
        assert_eq!(st, 0);
        let info = FileInfoResp::decode(&r).unwrap();
        assert_eq!(info.source_ip, ip(12).to_string(), "asked {}", s.addr);
        assert_eq!(info.file_size, data_b.len() as u64);
    }

    // The tracker routes a download of a fresh file to its source, found by
    // the id in the name.
    let mut body = Vec::new();
    FileReq {
        group: GroupName::new("group1").unwrap(),
        filename: from_b.clone(),
    }
    .encode(&mut body);
    let (st, r) = Wire::connect(tracker.addr)
        .and_then(|mut w| w.call(tc::QUERY_FETCH_ONE, &body))
        .unwrap();
    assert_eq!(st, 0);
    let to = FetchResp::decode(&r).unwrap();
    assert_eq!(
        (to.servers[0].ip.as_str(), to.servers[0].port),
        (ip(12).to_string().as_str(), port_b)
    );

    // FETCH_STORAGE_IDS gives the table back.
    let (total, lines) = fetch_all_ids(&tracker);
    assert_eq!(total, 3);
    assert_eq!(
        lines,
        [
            format!("100001 group1 {}:{port_a}", ip(11)),
            format!("100002 group1 {}:{port_b}", ip(12)),
            "100003 group2 10.255.0.1 rw=none".to_owned(),
        ]
    );
    // GET_SERVER_ID: by address and port; unknown ones are ENOENT.
    for (addr, want) in [
        (format!("{}:{port_b}", ip(12)), Ok("100002".to_owned())),
        (format!("{}:{port_x}", ip(13)), Err(errno::ENOENT)),
    ] {
        let mut body = b"group1".to_vec();
        body.resize(16, 0);
        body.extend_from_slice(addr.as_bytes());
        let (st, r) = Wire::connect(tracker.addr)
            .and_then(|mut w| w.call(tc::STORAGE_GET_SERVER_ID, &body))
            .unwrap();
        let got = if st == 0 {
            Ok(String::from_utf8(r).unwrap())
        } else {
            Err(st)
        };
        assert_eq!(got, want, "{addr}");
    }
    assert!(
        std::fs::read_to_string(tracker.log_file())
            .unwrap_or_default()
            .contains("is not in storage_ids.conf"),
        "the tracker logs the refused join"
    );
}

#[test]
fn tracker_refuses_a_bad_storage_ids_file() {
    let dir = TestDir::new("storage-ids-bad");
    for (name, text, says) in [
        ("missing.conf", None, "cannot load"),
        (
            "named.conf",
            Some("s1 group1 127.0.0.1\n"),
            "must be a number",
        ),
        ("empty.conf", Some("# nobody\n"), "lists no storage server"),
    ] {
        let path = dir.join(name);
        if let Some(t) = text {
            write_file(&path, t);
        }
        let port = free_port(Ipv4Addr::LOCALHOST);
        let base = dir.join(format!("tracker-{name}"));
        std::fs::create_dir_all(&base).unwrap();
        let conf = base.join("tracker.conf");
        let ids_key = format!("storage_ids_filename = {}", path.display());
        write_file(
            &conf,
            &TrackerProc::conf_text(
                Ipv4Addr::LOCALHOST,
                port,
                &base,
                &[
                    "use_storage_id = true",
                    "id_type_in_filename = id",
                    &ids_key,
                ],
            ),
        );
        let mut t = TrackerProc::start_with_conf(
            BIN,
            &conf,
            std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            &base,
        );
        let code = t.proc.wait_exit(Duration::from_secs(10));
        let out = t.proc.log_text();
        assert!(
            matches!(code, Some(c) if c != 0),
            "{name}: exit {code:?}\n{out}"
        );
        assert!(out.contains(says), "{name}: {out}");
    }
}

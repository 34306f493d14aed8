//! The storage ↔ tracker session: the exact message sequence against a
//! scripted tracker (compared with the golden storage_join_and_heartbeat
//! capture), and rejoining a real tracker after it restarts.

mod storage_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::server::{ChangeFlags, DiskUsage, JoinReq, JoinResp, StorageBrief, SyncInfo};
use fdfs_proto::tracker::{StatBuff, StoreResp};
use fdfs_proto::{cmd, Header, LogicName};
use storage_support::*;

/// Reads one request; `None` when the peer closed.
fn read_req(s: &mut TcpStream) -> Option<(Header, Vec<u8>)> {
    let mut h = [0u8; 10];
    s.read_exact(&mut h).ok()?;
    let h = Header::decode(&h, 1 << 20).unwrap();
    let mut b = vec![0u8; h.pkg_len as usize];
    s.read_exact(&mut b).ok()?;
    Some((h, b))
}

fn reply(s: &mut TcpStream, body: &[u8]) {
    s.write_all(&fdfs_proto::encode_frame(cmd::RESP, 0, body))
        .unwrap();
}

/// The tracker at `tracker` sends uploads to the storage on `port`: it
/// joined and is ACTIVE there.
fn stores_on(tracker: SocketAddr, port: u16) -> bool {
    let mut c = Client::connect(tracker);
    let (st, b) = c.call(tc::QUERY_STORE_WITHOUT_GROUP_ONE, &[]);
    st == 0 && StoreResp::decode(&b).unwrap().server.port == port
}

/// Plays a tracker for one session; returns the requests seen (and the
/// decoded JOIN) after `beats` beats.
fn scripted_session(l: &TcpListener, beats: usize, port: u16) -> (Vec<(u8, usize)>, JoinReq, bool) {
    let (mut s, peer) = l.accept().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "127.0.0.19",
        "client_bind: connects from bind_addr"
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = vec![];
    let mut join = None;
    let mut first_beat_full = false;
    let mut n_beats = 0;
    while n_beats < beats {
        let (h, b) = read_req(&mut s).expect("storage kept the session");
        seen.push((h.cmd, b.len()));
        match h.cmd {
            tc::STORAGE_GET_MY_IP => reply(&mut s, b"127.0.0.19"),
            tc::STORAGE_PARAMETER_REQ => reply(
                &mut s,
                b"use_storage_id=0\nid_type_in_filename=ip\nreserved_storage_space=1%\n",
            ),
            tc::STORAGE_JOIN => {
                join = Some(JoinReq::decode(&b).unwrap());
                let mut out = Vec::new();
                JoinResp {
                    status: 6,
                    src_id: String::new(),
                }
                .encode(&mut out);
                reply(&mut s, &out);
            }
            tc::STORAGE_SYNC_DEST_REQ | tc::STORAGE_SYNC_NOTIFY => reply(&mut s, b""),
            tc::STORAGE_BEAT => {
                if n_beats == 0 {
                    first_beat_full = b.len() == StatBuff::LEN;
                    StatBuff::decode(&b).unwrap();
                } else {
                    assert!(b.is_empty() || b.len() == StatBuff::LEN);
                }
                n_beats += 1;
                let mut out = Vec::new();
                ChangeFlags {
                    group_servers: Some(vec![StorageBrief {
                        status: 7,
                        port: port as u32,
                        id: "127.0.0.19".into(),
                        ip: "127.0.0.19".into(),
                    }]),
                    ..ChangeFlags::default()
                }
                .encode(&mut out);
                reply(&mut s, &out);
            }
            tc::STORAGE_REPORT_DISK_USAGE => {
                let d = DiskUsage::decode(&b).unwrap();
                assert_eq!(d.paths.len(), 1);
                assert!(d.paths[0].0 > 0 && d.paths[0].1 > 0, "{d:?}");
                reply(&mut s, &[0]);
            }
            other => panic!("unexpected command {other}"),
        }
    }
    // Dropping the socket ends the session: the storage must come back.
    (seen, join.expect("JOIN was sent"), first_beat_full)
}

#[test]
fn storage_session_with_a_scripted_tracker() {
    let dir = fdfs_testkit::TestDir::new("storage-session");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let taddr = l.local_addr().unwrap();
    let storage = StorageProc::start(
        BIN,
        dir.path(),
        Ipv4Addr::new(127, 0, 0, 19),
        "group1",
        &[taddr],
        &["network_timeout = 2", "upload_priority = 7"],
    );
    let (seen, join, full) = scripted_session(&l, 2, storage.addr.port());
    let cmds: Vec<u8> = seen.iter().map(|x| x.0).collect();
    assert_eq!(
        &cmds[..6],
        &[
            tc::STORAGE_GET_MY_IP,
            tc::STORAGE_PARAMETER_REQ,
            tc::STORAGE_JOIN,
            tc::STORAGE_SYNC_DEST_REQ,
            tc::STORAGE_SYNC_NOTIFY,
            tc::STORAGE_BEAT,
        ],
        "{seen:?}"
    );
    assert!(cmds.contains(&tc::STORAGE_REPORT_DISK_USAGE));
    assert_eq!(seen[0].1, 21, "GET_MY_IP body: group17 + port");
    assert_eq!(seen[4].1, SyncInfo::LEN);
    assert!(full, "the first beat carries the counters");
    // The JOIN as upstream lays it out (145 bytes + one tracker line).
    assert_eq!(seen[2].1, JoinReq::FIXED_LEN + format!("{taddr}\n").len());
    assert_eq!(join.group.as_str(), "group1");
    assert_eq!(join.storage_port, storage.addr.port());
    assert_eq!((join.store_path_count, join.subdir_count_per_path), (1, 8));
    assert_eq!(join.upload_priority, 7);
    assert_eq!(join.version, "6.16.1");
    assert!(join.init_flag, "first start: initial sync not done");
    assert_eq!(join.trackers, vec![taddr.to_string()]);
    assert_eq!(join.current_tracker_ip, "127.0.0.1");
    let join_time = join.join_time;
    assert!(join_time > 0);

    // The session dropped: the storage reconnects (backoff 1 s) and joins
    // again, now with init done and the same persisted join time.
    let t = Instant::now();
    let (seen2, join2, _) = scripted_session(&l, 1, storage.addr.port());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!join2.init_flag);
    assert_eq!(join2.join_time, join_time);
    assert_eq!(
        join2.status, 7,
        "remembers the status the group list gave it"
    );
    assert!(!seen2.iter().any(|x| x.0 == tc::STORAGE_SYNC_DEST_REQ));
    let init = std::fs::read_to_string(storage.base.join("data/.data_init_flag")).unwrap();
    assert!(
        init.contains(&format!("storage_join_time={join_time}\n")),
        "{init}"
    );
    assert!(init.contains("sync_old_done=1\n"));
    assert!(init.contains("last_ip_addr=127.0.0.19\n"));
}

#[test]
fn storage_keeps_serving_and_rejoins_a_restarted_tracker() {
    let dir = fdfs_testkit::TestDir::new("storage-rejoin");
    let mut tracker = start_tracker(dir.path(), &[]);
    let storage = start_storage(dir.path(), &tracker, StorageOpts::on([127, 0, 0, 20]));
    let port = storage.addr.port();
    wait_until("storage active", Duration::from_secs(15), || {
        stores_on(tracker.addr, port)
    });
    tracker.stop();
    // Tracker down: clients are still served; file ids keep our address.
    let mut c = Client::connect(storage.addr);
    let name = upload(
        &mut c,
        fdfs_proto::cmd::storage::UPLOAD_FILE,
        b"while down",
        "txt",
    )
    .unwrap();
    assert_eq!(
        LogicName::parse(&name).unwrap().info.source.to_string(),
        "127.0.0.20"
    );
    assert_eq!(download(&mut c, &name, 0, 0).unwrap(), b"while down");
    std::thread::sleep(Duration::from_millis(1500));
    tracker.restart();
    wait_until("storage rejoined", Duration::from_secs(20), || {
        stores_on(tracker.addr, port)
    });
}

#[test]
fn storage_joins_every_tracker() {
    let dir = fdfs_testkit::TestDir::new("storage-two-trackers");
    let t1 = TrackerProc::start(BIN, dir.path(), Ipv4Addr::new(127, 0, 0, 1), &[]);
    let t2 = TrackerProc::start(BIN, dir.path(), Ipv4Addr::new(127, 0, 0, 2), &[]);
    let storage = StorageProc::start(
        BIN,
        dir.path(),
        Ipv4Addr::new(127, 0, 0, 22),
        "group1",
        &[t1.addr, t2.addr],
        &[],
    );
    for t in [&t1, &t2] {
        wait_until(
            &format!("storage active on {}", t.addr),
            Duration::from_secs(15),
            || stores_on(t.addr, storage.addr.port()),
        );
    }
}

//! The tracker process with simulated storage servers: placement
//! policies, download routing, heartbeats, restart, two trackers.

mod tracker_common;

use std::time::Duration;

use fdfs_proto::cmd::tracker as t;
use fdfs_proto::errno;
use fdfs_testkit::{wait_until, TestDir};
use tracker_common::*;

const G1A: [u8; 4] = [127, 0, 0, 11];
const G1B: [u8; 4] = [127, 0, 0, 12];
const G2A: [u8; 4] = [127, 0, 0, 21];

#[test]
fn store_lookup_round_robin_and_store_replies() {
    let dir = TestDir::new("tr-rr");
    let tr = tracker(&dir, &["store_lookup = 0", "store_server = 0"]);
    // No storage yet: ENOENT.
    assert_eq!(store_one(tr.addr, None).unwrap_err(), errno::ENOENT);
    let _a = SimStorage::active(tr.addr, G1A, "group1", &[5000]);
    let _b = SimStorage::active(tr.addr, G1B, "group1", &[5000]);
    let _c = SimStorage::active(tr.addr, G2A, "group2", &[5000]);
    let groups: Vec<String> = (0..4)
        .map(|_| store_one(tr.addr, None).unwrap().group.to_string())
        .collect();
    assert_eq!(groups, ["group1", "group2", "group1", "group2"]);
    // Round robin over the servers of group1.
    let ips: Vec<String> = (0..4)
        .map(|_| store_one(tr.addr, Some("group1")).unwrap().server.ip)
        .collect();
    assert_eq!(
        ips,
        ["127.0.0.11", "127.0.0.12", "127.0.0.11", "127.0.0.12"]
    );
    let r = store_one(tr.addr, Some("group2")).unwrap();
    assert_eq!(
        (r.server.ip.as_str(), r.server.port, r.store_path_index),
        ("127.0.0.21", 23000, 0)
    );
    // 107: all writable servers of the group (16 + 2*23 + 1 bytes).
    let all = store_all(tr.addr, Some("group1")).unwrap();
    let ips: Vec<&str> = all.servers.iter().map(|s| s.ip.as_str()).collect();
    assert_eq!(ips, ["127.0.0.11", "127.0.0.12"]);
    // 106: the round robin is back at group1 (63 bytes as in the golden capture).
    let (st, b) = client(tr.addr)
        .call(t::QUERY_STORE_WITHOUT_GROUP_ALL, &[])
        .unwrap();
    assert_eq!((st, b.len()), (0, 63));
    assert_eq!(&b[..6], b"group1");
    assert_eq!(
        store_one(tr.addr, Some("group9")).unwrap_err(),
        errno::ENOENT
    );
}

#[test]
fn store_lookup_fixed_group_and_load_balance() {
    let dir = TestDir::new("tr-lookup");
    let fixed = tracker(
        &dir,
        &[
            "store_lookup = 1",
            "store_group = group2",
            "reserved_storage_space = 10%",
        ],
    );
    let lb = tracker(&dir, &["store_lookup = 2"]);
    let mut sims = Vec::new();
    for tr in [&fixed, &lb] {
        sims.push(SimStorage::active(tr.addr, G1A, "group1", &[9000]));
        sims.push(SimStorage::active(tr.addr, G2A, "group2", &[3000]));
    }
    for _ in 0..3 {
        assert_eq!(
            store_one(fixed.addr, None).unwrap().group.as_str(),
            "group2"
        );
        assert_eq!(store_one(lb.addr, None).unwrap().group.as_str(), "group1");
    }
    // group2 now has the most free space on the load-balancing tracker.
    sims[3].disk(&[(10000, 9500)]);
    assert_eq!(store_one(lb.addr, None).unwrap().group.as_str(), "group2");
    // The fixed group full: ENOSPC, even though group1 has room.
    sims[1].disk(&[(10000, 500)]);
    assert_eq!(store_one(fixed.addr, None).unwrap_err(), errno::ENOSPC);
}

#[test]
fn store_server_priority_and_store_path_load_balance() {
    let dir = TestDir::new("tr-server");
    let tr = tracker(&dir, &["store_server = 2", "store_path = 2"]);
    let (mut a, _) = SimStorage::join_with(tr.addr, G1A, "group1", 23000, 3, false, 20).unwrap();
    let (mut b, _) = SimStorage::join_with(tr.addr, G1B, "group1", 23000, 3, false, 5).unwrap();
    a.disk(&[(10000, 5000), (10000, 8000), (10000, 6000)]);
    b.disk(&[(10000, 7000), (10000, 6000), (10000, 9000)]);
    a.beat();
    b.beat();
    for _ in 0..3 {
        let r = store_one(tr.addr, Some("group1")).unwrap();
        assert_eq!(
            (r.server.ip.as_str(), r.store_path_index),
            ("127.0.0.12", 2)
        );
    }
    b.disk(&[(10000, 9900), (10000, 6000), (10000, 9000)]);
    assert_eq!(
        store_one(tr.addr, Some("group1")).unwrap().store_path_index,
        0
    );
    // store_server = 1: always the first by id.
    let dir2 = TestDir::new("tr-server1");
    let tr1 = tracker(&dir2, &["store_server = 1", "store_path = 0"]);
    let _x = SimStorage::active(tr1.addr, G1B, "group1", &[5000, 5000]);
    let _y = SimStorage::active(tr1.addr, G1A, "group1", &[5000, 5000]);
    let r: Vec<(String, u8)> = (0..4)
        .map(|_| {
            let r = store_one(tr1.addr, Some("group1")).unwrap();
            (r.server.ip, r.store_path_index)
        })
        .collect();
    assert!(r.iter().all(|(ip, _)| ip == "127.0.0.11"), "{r:?}");
    // store_path = 0: the paths in turn.
    let paths: Vec<u8> = r.iter().map(|x| x.1).collect();
    assert_eq!(paths, [0, 1, 0, 1]);
}

#[test]
fn reserved_space_as_size_and_ratio() {
    let dir = TestDir::new("tr-reserved");
    let by_size = tracker(&dir, &["reserved_storage_space = 2GB"]);
    let by_ratio = tracker(&dir, &["reserved_storage_space = 25%"]);
    let mut s1 = SimStorage::active(by_size.addr, G1A, "group1", &[2049]);
    let mut s2 = SimStorage::active(by_ratio.addr, G1A, "group1", &[2600]);
    assert_eq!(
        store_one(by_size.addr, None).unwrap().group.as_str(),
        "group1"
    );
    assert_eq!(
        store_one(by_ratio.addr, None).unwrap().group.as_str(),
        "group1"
    );
    s1.disk(&[(10000, 2048)]);
    s2.disk(&[(10000, 2500)]);
    assert_eq!(store_one(by_size.addr, None).unwrap_err(), errno::ENOSPC);
    assert_eq!(
        store_one(by_ratio.addr, Some("group1")).unwrap_err(),
        errno::ENOSPC
    );
    let g = &list_groups(by_ratio.addr)[0];
    assert_eq!((g.total_mb, g.free_mb, g.reserved_mb), (10000, 2500, 2500));
    let g = &list_groups(by_size.addr)[0];
    assert_eq!(g.reserved_mb, 2048);
}

#[test]
fn download_routing_round_robin_and_source_first() {
    let dir = TestDir::new("tr-download");
    let rr = tracker(&dir, &["download_server = 0"]);
    let sf = tracker(&dir, &["download_server = 1"]);
    let mut sims = Vec::new();
    for tr in [&rr, &sf] {
        let a = SimStorage::active(tr.addr, G1A, "group1", &[5000]);
        let b = SimStorage::active(tr.addr, G1B, "group1", &[5000]);
        sims.push((a, b));
    }
    let ts = now() - 5;
    let fresh = file_name(G1A, ts, false);
    // Not synced to 12 yet: only the source, however often we ask.
    for _ in 0..3 {
        assert_eq!(
            fetch(rr.addr, t::QUERY_FETCH_ONE, "group1", &fresh).unwrap(),
            ["127.0.0.11"]
        );
    }
    assert_eq!(
        fetch(rr.addr, t::QUERY_FETCH_ALL, "group1", &fresh).unwrap(),
        ["127.0.0.11"]
    );
    // 12 reports it has 11's records up to after the file: both serve.
    for (_, b) in sims.iter_mut() {
        b.sync_report(&[("127.0.0.12", 0), ("127.0.0.11", ts + 1)]);
    }
    let mut seen: Vec<String> = (0..4)
        .map(|_| fetch(rr.addr, t::QUERY_FETCH_ONE, "group1", &fresh).unwrap()[0].clone())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["127.0.0.11", "127.0.0.12"], "round robin over both");
    assert_eq!(
        fetch(rr.addr, t::QUERY_FETCH_ALL, "group1", &fresh).unwrap(),
        ["127.0.0.11", "127.0.0.12"]
    );
    // Source first: always the source while it is active.
    for _ in 0..3 {
        assert_eq!(
            fetch(sf.addr, t::QUERY_FETCH_ONE, "group1", &fresh).unwrap(),
            ["127.0.0.11"]
        );
    }
    // Appender files only from their source; updates go to the source.
    let app = file_name(G1B, ts - 100_000, true);
    assert_eq!(
        fetch(rr.addr, t::QUERY_FETCH_ALL, "group1", &app).unwrap(),
        ["127.0.0.12"]
    );
    assert_eq!(
        fetch(rr.addr, t::QUERY_UPDATE, "group1", &fresh).unwrap(),
        ["127.0.0.11"]
    );
    // Source gone: the update goes to another writable server.
    let (a, _keep_b) = sims.remove(0);
    a.quit();
    assert_eq!(
        fetch(rr.addr, t::QUERY_UPDATE, "group1", &fresh).unwrap(),
        ["127.0.0.12"]
    );
    assert_eq!(
        fetch(rr.addr, t::QUERY_FETCH_ONE, "group9", &fresh).unwrap_err(),
        errno::ENOENT
    );
}

#[test]
fn missed_heartbeats_and_closed_connections_make_servers_offline() {
    let dir = TestDir::new("tr-offline");
    let tr = tracker(&dir, &["check_active_interval = 2"]);
    let mut alive = SimStorage::active(tr.addr, G1A, "group1", &[5000]);
    let _silent = SimStorage::active(tr.addr, G1B, "group1", &[5000]);
    let closing = SimStorage::active(tr.addr, G2A, "group2", &[5000]);
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.21"), Some(7));
    // Plain close (no QUIT), as upstream tools do: OFFLINE at once.
    drop(closing);
    assert!(wait_until(Duration::from_secs(3), || status_of(
        tr.addr,
        "group2",
        "127.0.0.21"
    ) == Some(5)));
    // The silent one goes OFFLINE after check_active_interval; the one that
    // keeps beating stays ACTIVE.
    let mut last_list = None;
    let went = wait_until(Duration::from_secs(8), || {
        if let Some(l) = alive.beat().group_servers {
            last_list = Some(l);
        }
        status_of(tr.addr, "group1", "127.0.0.12") == Some(5)
    });
    assert!(
        went,
        "silent server still {:?}",
        status_of(tr.addr, "group1", "127.0.0.12")
    );
    assert_eq!(status_of(tr.addr, "group1", "127.0.0.11"), Some(7));
    // The living server hears about it in a beat reply (flag 4).
    let list = alive
        .beat()
        .group_servers
        .or(last_list)
        .expect("group list after a status change");
    let st: Vec<(String, u8)> = list.iter().map(|b| (b.id.clone(), b.status)).collect();
    assert_eq!(
        st,
        [("127.0.0.11".to_string(), 7), ("127.0.0.12".to_string(), 5)]
    );
    // Uploads now go only to the living one.
    for _ in 0..3 {
        assert_eq!(
            store_one(tr.addr, Some("group1")).unwrap().server.ip,
            "127.0.0.11"
        );
    }
}

#[test]
fn restart_keeps_groups_and_servers() {
    let dir = TestDir::new("tr-restart");
    let mut tr = tracker(&dir, &[]);
    let mut a = SimStorage::active(tr.addr, G1A, "group1", &[5000]);
    let (mut n, r) = SimStorage::join(tr.addr, G1B, "group1", 1, true);
    assert_eq!(r.status, 0, "INIT");
    let (st, b) = n.call(t::STORAGE_SYNC_DEST_REQ, &[]);
    assert_eq!(st, 0);
    assert_eq!(b.len(), 24, "source assigned");
    a.sync_report(&[("127.0.0.11", 0)]);
    drop((a, n));
    tr.restart();
    let groups = list_groups(tr.addr);
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].group_name.as_str(), groups[0].storage_count),
        ("group1", 2)
    );
    let list = list_storages(tr.addr, "group1").unwrap();
    assert_eq!(list[0].status, 5, "OFFLINE until it joins again");
    assert_eq!(list[0].join_time, 1_795_000_000);
    assert_eq!(list[0].total_mb, 10000);
    assert_eq!(
        (list[1].status, list[1].src_id.as_str()),
        (1, "127.0.0.11"),
        "WAIT_SYNC and its source kept"
    );
    // Nothing is writable until a storage comes back.
    assert_eq!(store_one(tr.addr, None).unwrap_err(), errno::ENOENT);
    let (mut a, r) = SimStorage::join(tr.addr, G1A, "group1", 1, false);
    assert_eq!(r.status, 6);
    a.beat();
    assert_eq!(store_one(tr.addr, None).unwrap().server.ip, "127.0.0.11");
    // The state file is there, in the documented text format.
    let text = std::fs::read_to_string(tr.base.join("data/tracker_state.dat")).unwrap();
    assert!(
        text.contains("[storage]\ngroup=group1\nid=127.0.0.12\n"),
        "{text}"
    );
}

#[test]
fn two_trackers_give_the_same_answers() {
    let dir = TestDir::new("tr-two");
    let t1 = tracker(&dir, &["store_lookup = 0"]);
    let t2 = tracker(&dir, &["store_lookup = 0"]);
    let mut sims = Vec::new();
    for (ip, g, free) in [
        (G1A, "group1", 6000),
        (G1B, "group1", 7000),
        (G2A, "group2", 8000),
    ] {
        for tr in [&t1, &t2] {
            sims.push(SimStorage::active(tr.addr, ip, g, &[free]));
        }
    }
    for s in sims.iter_mut().filter(|s| s.ip.octets() == G1B) {
        s.sync_report(&[("127.0.0.11", now() - 3)]);
    }
    let strip = |v: Vec<fdfs_proto::tracker::StorageStat>| {
        v.into_iter()
            .map(|s| {
                (
                    s.id,
                    s.status,
                    s.total_mb,
                    s.free_mb,
                    s.reserved_mb,
                    s.join_time,
                    s.src_id,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(list_groups(t1.addr), list_groups(t2.addr));
    assert_eq!(
        strip(list_storages(t1.addr, "group1").unwrap()),
        strip(list_storages(t2.addr, "group1").unwrap())
    );
    for _ in 0..4 {
        let a = store_one(t1.addr, None).unwrap();
        let b = store_one(t2.addr, None).unwrap();
        assert_eq!(a, b);
    }
    let f = file_name(G1A, now() - 10, false);
    for c in [t::QUERY_FETCH_ALL, t::QUERY_UPDATE, t::QUERY_FETCH_ONE] {
        assert_eq!(
            fetch(t1.addr, c, "group1", &f),
            fetch(t2.addr, c, "group1", &f)
        );
    }
}

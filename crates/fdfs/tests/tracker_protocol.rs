//! Tracker commands and reply layouts against a real tracker: listings,
//! admin, monitor, parameters, the storage session and a full sync
//! hand-over, compared with the golden captures where they apply.

mod tracker_common;

use fdfs_proto::cmd::tracker as t;
use fdfs_proto::errno;
use fdfs_proto::server::{JoinResp, StorageBrief, SyncInfo};
use fdfs_proto::tracker::{StatBuff, StorageClusterStat, TrackerInfo, VolumeStat};
use fdfs_testkit::{golden_body, TestDir};
use tracker_common::*;

#[test]
fn listings_have_upstream_sizes_and_contents() {
    let dir = TestDir::new("tr-list");
    let tr = tracker(&dir, &["reserved_storage_space = 20%"]);
    let mut a = SimStorage::active(tr.addr, [127, 0, 0, 11], "group1", &[78128]);
    let _b = SimStorage::active(tr.addr, [127, 0, 0, 12], "group1", &[80000]);
    let _c = SimStorage::active(tr.addr, [127, 0, 0, 21], "group2", &[90000]);
    let mut stat = StatBuff::default();
    stat.counters[0] = 5;
    stat.counters[1] = 4;
    stat.connection_max_count = 66;
    a.beat_stat(&stat);
    a.disk(&[(258019, 78128)]);
    let (st, b) = client(tr.addr)
        .call(t::SERVER_LIST_ALL_GROUPS, &[])
        .unwrap();
    assert_eq!((st, b.len()), (0, 226), "2 x 113-byte GroupStat");
    let g = &list_groups(tr.addr)[0];
    assert_eq!(g.group_name, "group1");
    assert_eq!(
        (g.total_mb, g.free_mb, g.reserved_mb),
        (258019, 78128, 51603)
    );
    assert_eq!(
        (
            g.storage_count,
            g.readable_server_count,
            g.writable_server_count
        ),
        (2, 2, 2)
    );
    assert_eq!(
        (g.storage_port, g.store_path_count, g.subdir_count_per_path),
        (23000, 1, 256)
    );
    let (st, b) = client(tr.addr)
        .call(t::SERVER_LIST_STORAGE, &group16("group1"))
        .unwrap();
    assert_eq!((st, b.len()), (0, 974), "2 x 487-byte StorageStat");
    let l = list_storages(tr.addr, "group1").unwrap();
    assert_eq!(
        (
            l[0].id.as_str(),
            l[0].ip_addr.as_str(),
            l[0].status,
            l[0].rw_mode
        ),
        ("127.0.0.11", "127.0.0.11", 7, 6)
    );
    assert_eq!(
        (l[0].version.as_str(), l[0].join_time, l[0].up_time),
        ("6.16.1", 1_795_000_000, 1_795_000_100)
    );
    assert_eq!(
        (
            l[0].stat.counters[0],
            l[0].stat.counters[1],
            l[0].stat.connection_max_count
        ),
        (5, 4, 66)
    );
    assert!(
        l[0].stat.counters[41] >= i64::from(now()) - 5,
        "last_heart_beat_time"
    );
    // One storage by id; unknown id / group → ENOENT.
    let body = group_and("group1", b"127.0.0.12");
    let (st, b) = client(tr.addr).call(t::SERVER_LIST_STORAGE, &body).unwrap();
    assert_eq!((st, b.len()), (0, 487));
    let body = group_and("group1", b"127.0.0.99");
    assert_eq!(
        status(tr.addr, t::SERVER_LIST_STORAGE, &body),
        errno::ENOENT
    );
    assert_eq!(list_storages(tr.addr, "group9").unwrap_err(), errno::ENOENT);
    let (st, b) = client(tr.addr)
        .call(t::SERVER_LIST_ONE_GROUP, &group16("group2"))
        .unwrap();
    assert_eq!((st, b.len()), (0, 113));
}

#[test]
fn monitor_and_leader_commands() {
    let dir = TestDir::new("tr-monitor");
    let tr = tracker(&dir, &["reserved_storage_space = 20%"]);
    let _a = SimStorage::active(tr.addr, [127, 0, 0, 11], "group1", &[5000]);
    let (_b, _) = SimStorage::join(tr.addr, [127, 0, 0, 12], "group1", 1, true);
    // No leader election: the tracker names itself (ip:port, no NUL).
    let (st, b) = client(tr.addr).call(t::SERVER_GET_LEADER, &[]).unwrap();
    assert_eq!(st, 0);
    assert_eq!(String::from_utf8(b).unwrap(), tr.addr.to_string());
    let (st, b) = client(tr.addr)
        .call(t::SERVER_TRACKER_CLUSTER_STAT, &[0, 0, 0])
        .unwrap();
    assert_eq!((st, b.len()), (0, 91));
    let list = TrackerInfo::decode_list(&b).unwrap();
    assert_eq!(list[0].host, tr.addr.to_string());
    assert!(list[0].is_leader && list[0].is_active);
    assert_eq!(list[0].version, "6.16.1");
    // Filter "not leader": nobody.
    let (_, b) = client(tr.addr)
        .call(t::SERVER_TRACKER_CLUSTER_STAT, &[2, 0, 0])
        .unwrap();
    assert_eq!(b, [0]);
    let (st, b) = client(tr.addr)
        .call(t::SERVER_STORAGE_CLUSTER_STAT, &[0, 0, 0, 0])
        .unwrap();
    assert_eq!((st, b.len()), (0, 6 + 2 * 106));
    let s = StorageClusterStat::decode(&b).unwrap();
    assert_eq!(s.storages[0].host, "127.0.0.11:23000");
    let (_, b) = client(tr.addr)
        .call(t::SERVER_STORAGE_CLUSTER_STAT, &[2, b'=', 0, 0])
        .unwrap();
    let s = StorageClusterStat::decode(&b).unwrap();
    assert_eq!(s.storages.len(), 1, "only the INIT one");
    assert_eq!(s.storages[0].id, "127.0.0.12");
    let (st, b) = client(tr.addr)
        .call(t::SERVER_STORAGE_VOLUMN_STAT, &[0, 0, 0, 0])
        .unwrap();
    assert_eq!((st, b.len()), (0, 5 + 59));
    let v = VolumeStat::decode(&b).unwrap();
    assert_eq!(
        (
            v.volumes[0].total_mb,
            v.volumes[0].free_mb,
            v.volumes[0].reserved_mb
        ),
        (10000, 5000, 2000)
    );
    assert_eq!(v.volumes[0].avail_mb, 3000);
    assert!(v.volumes[0].is_disk_available);
}

#[test]
fn parameters_have_the_golden_keys_in_order() {
    let dir = TestDir::new("tr-params");
    let tr = tracker(&dir, &["reserved_storage_space = 20%"]);
    let (st, b) = client(tr.addr).call(t::STORAGE_PARAMETER_REQ, &[]).unwrap();
    assert_eq!(st, 0);
    let ours = fdfs_proto::tracker::decode_params(&b).unwrap();
    let bytes = golden_body(
        "storage_join_and_heartbeat.jsonl",
        "RESP(STORAGE_PARAMETER_REQ)",
    );
    let theirs = fdfs_proto::tracker::decode_params(&bytes).unwrap();
    let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&theirs));
    assert_eq!(ours.len(), 26);
    let get = |k: &str| ours.iter().find(|(kk, _)| kk == k).unwrap().1.clone();
    assert_eq!(get("reserved_storage_space"), "20.00%");
    assert_eq!(get("use_storage_id"), "0");
    assert_eq!(get("response_ip_addr_size"), "16");
    // Also: 69 without storage ids, 60 (my ip), 70 and 71.
    let (st, b) = client(tr.addr)
        .call(t::STORAGE_FETCH_STORAGE_IDS, &[0, 0, 0, 0, 1])
        .unwrap();
    assert_eq!((st, b), (0, vec![0; 8]));
    assert_eq!(
        status(tr.addr, t::STORAGE_FETCH_STORAGE_IDS, &[0, 0, 0, 0, 0]),
        errno::EOPNOTSUPP
    );
    let mut w = fdfs_testkit::Wire::connect_from([127, 0, 0, 22].into(), tr.addr).unwrap();
    let mut body = group16("group2");
    body.push(0);
    body.extend_from_slice(&23000u32.to_be_bytes());
    assert_eq!(
        w.call(t::STORAGE_GET_MY_IP, &body).unwrap(),
        (0, b"127.0.0.22".to_vec())
    );
    let _s = SimStorage::active(tr.addr, [127, 0, 0, 22], "group2", &[5000]);
    let body = group_and("group2", b"127.0.0.22:23000");
    assert_eq!(
        w.call(t::STORAGE_GET_SERVER_ID, &body).unwrap(),
        (0, b"127.0.0.22".to_vec())
    );
    let (st, b) = w.call(t::STORAGE_GET_STATUS, &body).unwrap();
    assert_eq!((st, b.len()), (0, 67));
    let brief = StorageBrief::decode(&b).unwrap();
    assert_eq!(
        (brief.status, brief.port, brief.id.as_str()),
        (7, 23000, "127.0.0.22")
    );
}

#[test]
fn delete_storage_and_the_changelog() {
    let dir = TestDir::new("tr-delete");
    let tr = tracker(&dir, &[]);
    let mut a = SimStorage::active(tr.addr, [127, 0, 0, 21], "group2", &[5000]);
    let b = SimStorage::active(tr.addr, [127, 0, 0, 22], "group2", &[5000]);
    let del = group_and("group2", b"127.0.0.22");
    assert_eq!(
        status(tr.addr, t::SERVER_DELETE_STORAGE, &del),
        errno::EBUSY
    );
    b.quit();
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.22"), Some(5));
    assert_eq!(
        client(tr.addr)
            .call(t::SERVER_DELETE_STORAGE, &del)
            .unwrap(),
        (0, vec![])
    );
    let l = list_storages(tr.addr, "group2").unwrap();
    assert_eq!(
        (l[1].status, l[1].total_mb, l[1].src_id.as_str()),
        (4, 0, "")
    );
    assert_eq!(
        status(tr.addr, t::SERVER_DELETE_STORAGE, &del),
        errno::EALREADY
    );
    let unknown = group_and("group2", b"127.0.0.99");
    assert_eq!(
        status(tr.addr, t::SERVER_DELETE_STORAGE, &unknown),
        errno::ENOENT
    );
    // The other storage learns it through the change flags and the changelog.
    let list = a.beat().group_servers.expect("membership changed");
    assert_eq!(
        list.iter().find(|x| x.id == "127.0.0.22").unwrap().status,
        4
    );
    let (st, log) = a.call(t::STORAGE_CHANGELOG_REQ, &[]);
    assert_eq!(st, 0);
    let text = String::from_utf8(log).unwrap();
    assert!(text.ends_with(" group2 127.0.0.22 4 \n"), "{text:?}");
    assert_eq!(
        a.call(t::STORAGE_CHANGELOG_REQ, &[]),
        (0, vec![]),
        "nothing new"
    );
    // The pre-JOIN form (group + id) on a plain connection.
    let q = group_and("group2", &group16("127.0.0.21"));
    assert_eq!(
        client(tr.addr).call(t::STORAGE_CHANGELOG_REQ, &q).unwrap(),
        (0, vec![])
    );
    let q = group_and("group7", &group16("127.0.0.21"));
    assert_eq!(
        client(tr.addr).call(t::STORAGE_CHANGELOG_REQ, &q).unwrap(),
        (0, vec![]),
        "unknown: nothing"
    );
    assert_eq!(
        status(tr.addr, t::STORAGE_CHANGELOG_REQ, &[]),
        errno::EACCES
    );
    assert!(
        std::fs::read_to_string(tr.base.join("data/storage_changelog.dat"))
            .unwrap()
            .contains("group2 127.0.0.22 4")
    );
    // A group with live members cannot be deleted.
    assert_eq!(
        status(tr.addr, t::SERVER_DELETE_GROUP, &group16("group2")),
        errno::EBUSY
    );
}

#[test]
fn storage_session_and_full_sync_hand_over() {
    let dir = TestDir::new("tr-session");
    let tr = tracker(&dir, &[]);
    let mut src = SimStorage::active(tr.addr, [127, 0, 0, 21], "group2", &[5000]);
    // A new server (init not done) joins: INIT, no source yet.
    let (mut new, r) = SimStorage::join(tr.addr, [127, 0, 0, 22], "group2", 1, true);
    assert_eq!(
        r,
        JoinResp {
            status: 0,
            src_id: String::new()
        }
    );
    // Its first beat carries the group list, sorted by id, itself included.
    let list = new.beat().group_servers.expect("first beat gets the list");
    let ids: Vec<(&str, u8)> = list.iter().map(|b| (b.id.as_str(), b.status)).collect();
    assert_eq!(ids, [("127.0.0.21", 7), ("127.0.0.22", 0)]);
    assert_eq!(new.beat().flags(), 0);
    // It asks for a source: the ACTIVE peer, until = now.
    let (st, b) = new.call(t::STORAGE_SYNC_DEST_REQ, &[]);
    assert_eq!(st, 0);
    let info = SyncInfo::decode(&b).unwrap();
    assert_eq!(info.src_id, "127.0.0.21");
    assert!((i64::from(now()) - info.until_timestamp).abs() <= 2);
    let mut nb = Vec::new();
    info.encode(&mut nb);
    assert_eq!(new.call(t::STORAGE_SYNC_NOTIFY, &nb), (0, vec![]));
    assert_eq!(new.call(t::STORAGE_SYNC_DEST_QUERY, &[]), (0, b.clone()));
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.22"), Some(1));
    // The source asks who its new peer syncs from, reports progress.
    let q = group_and("group2", &group16("127.0.0.22"));
    assert_eq!(src.call(t::STORAGE_SYNC_SRC_REQ, &q), (0, b.clone()));
    let report = |st: u8| {
        let mut body = group16("group2");
        StorageBrief {
            status: st,
            port: 0,
            id: "127.0.0.22".into(),
            ip: "127.0.0.22".into(),
        }
        .encode(&mut body);
        body
    };
    assert_eq!(src.call(t::STORAGE_REPORT_STATUS, &report(2)).0, 0);
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.22"), Some(2));
    new.beat();
    assert_eq!(
        status_of(tr.addr, "group2", "127.0.0.22"),
        Some(2),
        "no ACTIVE while syncing"
    );
    assert_eq!(src.call(t::STORAGE_REPORT_STATUS, &report(5)).0, 0);
    // Next beat (no re-join, as upstream): ACTIVE, and the list says so.
    let list = new.beat().group_servers.expect("status changed");
    assert_eq!(list[1].status, 7);
    let list = src.beat().group_servers.expect("the source hears too");
    assert_eq!(list[1].status, 7);
    // SYNC_REPORT with an entry for itself (ts 0) is accepted.
    assert_eq!(
        new.sync_report(&[("127.0.0.22", 0), ("127.0.0.21", now())])
            .flags(),
        0
    );
    // REPLICA_CHG is accepted and ignored; CHANGE_STATUS is applied.
    let mut briefs = Vec::new();
    StorageBrief {
        status: 7,
        port: 23000,
        id: "x".into(),
        ip: "x".into(),
    }
    .encode(&mut briefs);
    assert_eq!(new.call(t::STORAGE_REPLICA_CHG, &briefs), (0, vec![]));
    assert_eq!(new.call(t::STORAGE_CHANGE_STATUS, &[9]), (0, vec![]));
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.22"), Some(9));
    // QUIT of a joined storage: OFFLINE (RECOVERY is kept, so use the source).
    src.quit();
    assert_eq!(status_of(tr.addr, "group2", "127.0.0.21"), Some(5));
}

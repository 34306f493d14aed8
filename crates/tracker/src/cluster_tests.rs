//! Engine tests: time is passed by hand (`now`), no sockets.

use super::*;
use crate::settings::Settings;
use fdfs_proto::file_id::{ext_part, NameInfo};
use fdfs_proto::GroupName;
use std::net::Ipv4Addr;
use std::time::Duration;

const T0: i64 = 1_795_000_000;

fn join_req(group: &str, port: u16, paths: u32, init: bool) -> JoinReq {
    JoinReq {
        group: GroupName::new(group).unwrap(),
        storage_port: port,
        store_path_count: paths,
        subdir_count_per_path: 256,
        upload_priority: 10,
        join_time: 0,
        up_time: T0 - 100,
        version: "6.16.1".into(),
        init_flag: init,
        status: 0,
        storage_id: String::new(),
        current_tracker_ip: "127.0.0.1".into(),
        trackers: vec!["127.0.0.1:22122".into()],
    }
}

fn cluster(f: impl FnOnce(&mut Settings)) -> Cluster {
    let mut s = Settings {
        reserved: ReservedSpace::Ratio(0.10),
        check_active_interval: Duration::from_secs(2),
        ..Settings::default()
    };
    f(&mut s);
    Cluster::new(s)
}

/// Joins an already-synced server, beats and reports `free` MB per path of
/// 1000 MB: it ends ACTIVE.
fn active(c: &mut Cluster, group: &str, ip: &str, free: &[i64]) {
    let (id, resp) = c
        .join(ip, &join_req(group, 23000, free.len() as u32, false), T0)
        .unwrap();
    assert_eq!(id, ip);
    assert_eq!(resp.status, status::ONLINE);
    let usage = DiskUsage {
        paths: free.iter().map(|f| (1000, *f)).collect(),
    };
    c.disk_usage(group, ip, &usage, T0).unwrap();
    assert_eq!(c.storage(group, ip).unwrap().status, status::ACTIVE);
}

fn name_from(src: &str, ts: u32, appender: bool) -> LogicName {
    let ip: Ipv4Addr = src.parse().unwrap();
    let info = NameInfo {
        source: SourceServer::Ip(ip),
        timestamp: ts,
        size_field: NameInfo::size_field_for(21, appender, 12345),
        crc32: 0xe03d3171,
    };
    LogicName::build(0, 7, 0xA7, info, None, &ext_part("txt", 119).unwrap())
}

fn ips(v: &[ServerAddr]) -> Vec<&str> {
    v.iter().map(|a| a.ip.as_str()).collect()
}

#[test]
fn join_statuses_by_init_flag_and_history() {
    let mut c = cluster(|_| {});
    let (_, r) = c
        .join("127.0.0.11", &join_req("g1", 23000, 1, true), T0)
        .unwrap();
    assert_eq!(r.status, status::INIT);
    // INIT is not made ACTIVE by a beat.
    c.beat("g1", "127.0.0.11", None, T0).unwrap();
    assert_eq!(c.storage("g1", "127.0.0.11").unwrap().status, status::INIT);
    let (_, r) = c
        .join("127.0.0.12", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    assert_eq!(r.status, status::ONLINE);
    c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::ACTIVE
    );
    // Disconnect → OFFLINE; rejoin → ONLINE; beat → ACTIVE.
    c.disconnect("g1", "127.0.0.12");
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::OFFLINE
    );
    let (_, r) = c
        .join("127.0.0.12", &join_req("g1", 23000, 1, false), T0 + 1)
        .unwrap();
    assert_eq!(r.status, status::ONLINE);
    c.beat("g1", "127.0.0.12", None, T0 + 1).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::ACTIVE
    );
    // join_time: now when the server sent 0, kept afterwards.
    assert_eq!(c.storage("g1", "127.0.0.12").unwrap().join_time, T0);
}

#[test]
fn join_refuses_port_or_path_count_mismatch() {
    let mut c = cluster(|_| {});
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    let e = c
        .join("127.0.0.12", &join_req("g1", 23001, 1, false), T0)
        .unwrap_err();
    assert_eq!(e.errno(), fdfs_proto::errno::EINVAL);
    let e = c
        .join("127.0.0.12", &join_req("g1", 23000, 2, false), T0)
        .unwrap_err();
    assert_eq!(e.errno(), fdfs_proto::errno::EINVAL);
    // The only member may change its own settings.
    c.join("127.0.0.11", &join_req("g1", 23001, 2, false), T0)
        .unwrap();
    assert_eq!(c.groups["g1"].port, 23001);
}

#[test]
fn change_flags_send_the_group_list_once_per_change() {
    let mut c = cluster(|_| {});
    c.join("127.0.0.12", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    let f = c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(f.flags(), 4);
    let list = f.group_servers.unwrap();
    let ids: Vec<&str> = list.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        ["127.0.0.11", "127.0.0.12"],
        "sorted by id, requester included"
    );
    assert_eq!(list[1].status, status::ACTIVE);
    assert_eq!(list[1].port, 23000);
    // Nothing changed since: flags 0, encoded as one byte.
    let f = c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(f.flags(), 0);
    let mut b = Vec::new();
    f.encode(&mut b);
    assert_eq!(b, [0]);
    // 11 became ACTIVE on its beat: 12 hears about it.
    c.beat("g1", "127.0.0.11", None, T0).unwrap();
    let f = c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(f.flags(), 4);
    assert!(f
        .group_servers
        .unwrap()
        .iter()
        .all(|b| b.status == status::ACTIVE));
    // Other reports carry the flags too; other groups are not affected.
    c.join("127.0.0.21", &join_req("g2", 23000, 1, false), T0)
        .unwrap();
    let f = c
        .sync_report("g1", "127.0.0.12", &SyncReport { entries: vec![] })
        .unwrap();
    assert_eq!(f.flags(), 0);
}

#[test]
fn missed_heartbeats_make_a_server_offline() {
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    c.beat("g1", "127.0.0.12", None, T0 + 2).unwrap();
    assert!(c.check_active(T0 + 2).is_empty());
    let gone = c.check_active(T0 + 3);
    assert_eq!(gone, vec![("g1".to_string(), "127.0.0.11".to_string())]);
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::OFFLINE
    );
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::ACTIVE
    );
    // A late beat brings it back.
    c.beat("g1", "127.0.0.11", None, T0 + 4).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::ACTIVE
    );
}

#[test]
fn full_sync_of_a_new_server() {
    let mut c = cluster(|_| {});
    // Alone in its group: no source, straight ONLINE.
    c.join("127.0.0.11", &join_req("g1", 23000, 1, true), T0)
        .unwrap();
    assert_eq!(c.sync_dest_req("g1", "127.0.0.11", T0).unwrap(), None);
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::ONLINE
    );
    c.beat("g1", "127.0.0.11", None, T0).unwrap();
    active(&mut c, "g1", "127.0.0.10", &[500]);
    // A new one gets the first ACTIVE peer by id (127.0.0.10) as source.
    c.join("127.0.0.12", &join_req("g1", 23000, 1, true), T0 + 5)
        .unwrap();
    let info = c
        .sync_dest_req("g1", "127.0.0.12", T0 + 5)
        .unwrap()
        .unwrap();
    assert_eq!(info.src_id, "127.0.0.10");
    assert_eq!(info.until_timestamp, T0 + 5);
    let s = c.storage("g1", "127.0.0.12").unwrap();
    assert_eq!(
        (s.status, s.sync_src_id.as_str()),
        (status::WAIT_SYNC, "127.0.0.10")
    );
    // Peers ask who syncs to it.
    assert_eq!(
        c.sync_src_req("g1", "127.0.0.12").unwrap(),
        Some(info.clone())
    );
    assert_eq!(
        c.sync_dest_query("g1", "127.0.0.12").unwrap(),
        Some(info.clone())
    );
    assert_eq!(c.sync_src_req("g1", "127.0.0.10").unwrap(), None);
    // Notify with the same source keeps it; the source reports progress.
    c.sync_notify("g1", "127.0.0.12", &info).unwrap();
    let brief = |st| StorageBrief {
        status: st,
        port: 0,
        id: "127.0.0.12".into(),
        ip: "127.0.0.12".into(),
    };
    c.report_status("g1", &brief(status::SYNCING)).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::SYNCING
    );
    // Beats while syncing do not make it ACTIVE.
    c.beat("g1", "127.0.0.12", None, T0 + 6).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::SYNCING
    );
    c.report_status("g1", &brief(status::OFFLINE)).unwrap();
    c.beat("g1", "127.0.0.12", None, T0 + 7).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::ACTIVE
    );
    // A late OFFLINE report does not knock a serving server out.
    c.report_status("g1", &brief(status::OFFLINE)).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.12").unwrap().status,
        status::ACTIVE
    );
    // Unknown source in a notify: ENOENT.
    c.join("127.0.0.13", &join_req("g1", 23000, 1, true), T0)
        .unwrap();
    let bad = SyncInfo {
        src_id: "127.0.0.99".into(),
        until_timestamp: 1,
    };
    assert_eq!(
        c.sync_notify("g1", "127.0.0.13", &bad).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
    // Empty source: INIT → ONLINE.
    c.sync_notify("g1", "127.0.0.13", &SyncInfo::default())
        .unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.13").unwrap().status,
        status::ONLINE
    );
}

#[test]
fn change_status_stores_online_as_offline() {
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[500]);
    c.change_status("g1", "127.0.0.11", status::ONLINE).unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::OFFLINE
    );
    c.change_status("g1", "127.0.0.11", status::RECOVERY)
        .unwrap();
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::RECOVERY
    );
    assert!(c.change_status("g1", "127.0.0.11", 42).is_err());
}

#[test]
fn delete_storage_rules_and_changelog() {
    use fdfs_proto::errno::*;
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    assert_eq!(
        c.delete_storage("g1", "127.0.0.12", T0)
            .unwrap_err()
            .errno(),
        EBUSY
    );
    assert_eq!(
        c.delete_storage("g1", "127.0.0.99", T0)
            .unwrap_err()
            .errno(),
        ENOENT
    );
    assert_eq!(
        c.delete_storage("g9", "127.0.0.12", T0)
            .unwrap_err()
            .errno(),
        ENOENT
    );
    c.disconnect("g1", "127.0.0.12");
    c.delete_storage("g1", "127.0.0.12", T0 + 9).unwrap();
    let s = c.storage("g1", "127.0.0.12").unwrap();
    assert_eq!(
        (s.status, s.total_mb(), s.free_mb()),
        (status::DELETED, 0, 0)
    );
    assert_eq!(
        c.delete_storage("g1", "127.0.0.12", T0)
            .unwrap_err()
            .errno(),
        EALREADY
    );
    let line = format!("{} g1 127.0.0.12 4 \n", T0 + 9);
    assert_eq!(c.changelog, line.as_bytes());
    assert_eq!(
        c.changelog_since("g1", "127.0.0.11").unwrap(),
        line.as_bytes()
    );
    assert!(c.changelog_since("g1", "127.0.0.11").unwrap().is_empty());
    // A deleted server that joins again starts over as INIT.
    let (_, r) = c
        .join("127.0.0.12", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    assert_eq!(r.status, status::INIT);
    // Deleting a group needs every member deleted.
    assert_eq!(c.delete_group("g1").unwrap_err().errno(), EBUSY);
    assert_eq!(c.delete_group("g9").unwrap_err().errno(), ENOENT);
}

#[test]
fn store_lookup_round_robin_over_groups() {
    let mut c = cluster(|s| s.store_lookup = 0);
    assert_eq!(
        c.query_store(None, false).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g2", "127.0.0.21", &[500]);
    active(&mut c, "g3", "127.0.0.31", &[500]);
    let picks: Vec<String> = (0..6)
        .map(|_| c.query_store(None, false).unwrap().group)
        .collect();
    assert_eq!(picks, ["g1", "g2", "g3", "g1", "g2", "g3"]);
    // A group without a writable server is skipped.
    c.disconnect("g2", "127.0.0.21");
    let picks: Vec<String> = (0..4)
        .map(|_| c.query_store(None, false).unwrap().group)
        .collect();
    assert_eq!(picks, ["g1", "g3", "g1", "g3"]);
}

#[test]
fn store_lookup_fixed_group() {
    let mut c = cluster(|s| {
        s.store_lookup = 1;
        s.store_group = "g2".into();
    });
    active(&mut c, "g1", "127.0.0.11", &[900]);
    assert_eq!(
        c.query_store(None, false).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
    active(&mut c, "g2", "127.0.0.21", &[500]);
    for _ in 0..3 {
        assert_eq!(c.query_store(None, false).unwrap().group, "g2");
    }
    // Full: ENOSPC even though g1 has room.
    c.disk_usage(
        "g2",
        "127.0.0.21",
        &DiskUsage {
            paths: vec![(1000, 50)],
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        c.query_store(None, false).unwrap_err().errno(),
        fdfs_proto::errno::ENOSPC
    );
}

#[test]
fn store_lookup_load_balance_follows_free_space() {
    let mut c = cluster(|s| s.store_lookup = 2);
    active(&mut c, "g1", "127.0.0.11", &[300]);
    active(&mut c, "g2", "127.0.0.21", &[700]);
    for _ in 0..3 {
        assert_eq!(c.query_store(None, false).unwrap().group, "g2");
    }
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(1000, 900)],
        },
        T0,
    )
    .unwrap();
    assert_eq!(c.query_store(None, false).unwrap().group, "g1");
    // Group free space is that of its fullest member.
    active(&mut c, "g1", "127.0.0.12", &[200]);
    assert_eq!(c.query_store(None, false).unwrap().group, "g2");
}

#[test]
fn store_server_policies() {
    let mut c = cluster(|s| s.store_server = 0);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    active(&mut c, "g1", "127.0.0.11", &[500]);
    let picks: Vec<String> = (0..4)
        .map(|_| {
            c.query_store(Some("g1"), false).unwrap().servers[0]
                .ip
                .clone()
        })
        .collect();
    assert_eq!(
        picks,
        ["127.0.0.11", "127.0.0.12", "127.0.0.11", "127.0.0.12"]
    );
    // 107: every writable server, sorted by id.
    let all = c.query_store(Some("g1"), true).unwrap();
    assert_eq!(ips(&all.servers), ["127.0.0.11", "127.0.0.12"]);

    c.settings.store_server = 1;
    for _ in 0..3 {
        assert_eq!(
            c.query_store(Some("g1"), false).unwrap().servers[0].ip,
            "127.0.0.11"
        );
    }
    c.settings.store_server = 2;
    let mut req = join_req("g1", 23000, 1, false);
    req.upload_priority = 1;
    c.join("127.0.0.12", &req, T0).unwrap();
    c.beat("g1", "127.0.0.12", None, T0).unwrap();
    for _ in 0..3 {
        assert_eq!(
            c.query_store(Some("g1"), false).unwrap().servers[0].ip,
            "127.0.0.12"
        );
    }
    // Unknown group: ENOENT.
    assert_eq!(
        c.query_store(Some("g9"), false).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
}

#[test]
fn store_path_round_robin_and_load_balance() {
    let mut c = cluster(|s| s.store_path = 0);
    active(&mut c, "g1", "127.0.0.11", &[500, 600, 700]);
    let paths: Vec<u8> = (0..4)
        .map(|_| c.query_store(Some("g1"), false).unwrap().store_path_index)
        .collect();
    assert_eq!(paths, [0, 1, 2, 0]);
    // A path over its reserved space is skipped.
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(1000, 500), (1000, 50), (1000, 700)],
        },
        T0,
    )
    .unwrap();
    let paths: Vec<u8> = (0..4)
        .map(|_| c.query_store(Some("g1"), false).unwrap().store_path_index)
        .collect();
    assert!(!paths.contains(&1), "{paths:?}");

    let mut c = cluster(|s| s.store_path = 2);
    active(&mut c, "g1", "127.0.0.11", &[500, 800, 700]);
    for _ in 0..3 {
        assert_eq!(
            c.query_store(Some("g1"), false).unwrap().store_path_index,
            1
        );
    }
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(1000, 900), (1000, 800), (1000, 700)],
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        c.query_store(Some("g1"), false).unwrap().store_path_index,
        0
    );
    // Wrong path count in a report: EINVAL.
    let e = c
        .disk_usage(
            "g1",
            "127.0.0.11",
            &DiskUsage {
                paths: vec![(1, 1)],
            },
            T0,
        )
        .unwrap_err();
    assert_eq!(e.errno(), fdfs_proto::errno::EINVAL);
}

#[test]
fn reserved_space_as_size_and_ratio() {
    use fdfs_proto::errno::ENOSPC;
    // Ratio 10%: 100 of 1000 MB free is not enough (must be more).
    let mut c = cluster(|s| s.reserved = ReservedSpace::Ratio(0.10));
    active(&mut c, "g1", "127.0.0.11", &[100]);
    assert_eq!(c.query_store(None, false).unwrap_err().errno(), ENOSPC);
    assert_eq!(
        c.query_store(Some("g1"), false).unwrap_err().errno(),
        ENOSPC
    );
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(1000, 101)],
        },
        T0,
    )
    .unwrap();
    assert_eq!(c.query_store(None, false).unwrap().group, "g1");
    // Absolute 200 MB: group needs > 200 free; each of 2 paths > 100.
    let mut c = cluster(|s| s.reserved = ReservedSpace::Bytes(200 * MB));
    active(&mut c, "g1", "127.0.0.11", &[150, 150]);
    assert_eq!(c.query_store(None, false).unwrap().group, "g1");
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(1000, 100), (1000, 90)],
        },
        T0,
    )
    .unwrap();
    assert_eq!(c.query_store(None, false).unwrap_err().errno(), ENOSPC);
    // Group full everywhere but another group has room: that one is used.
    active(&mut c, "g2", "127.0.0.21", &[900, 900]);
    for _ in 0..3 {
        assert_eq!(c.query_store(None, false).unwrap().group, "g2");
    }
    // The listing reports the reserved MB the same way upstream does.
    let mut c = cluster(|s| s.reserved = ReservedSpace::Ratio(0.20));
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    c.disk_usage(
        "g1",
        "127.0.0.11",
        &DiskUsage {
            paths: vec![(258019, 78128)],
        },
        T0,
    )
    .unwrap();
    let g = &c.group_stats(Some("g1")).unwrap()[0];
    assert_eq!(
        (g.total_mb, g.free_mb, g.reserved_mb),
        (258019, 78128, 51603)
    );
    let v = &c.volume_stat([0; 4]).volumes[0];
    assert_eq!(v.avail_mb, 78128 - 51603);
}

#[test]
fn download_routing_follows_sync_progress() {
    let mut c = cluster(|s| {
        s.download_server = 0;
        s.storage_sync_file_max_time = Duration::from_secs(300);
        s.storage_sync_file_max_delay = Duration::from_secs(86400);
    });
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    let now = T0 + 10;
    let file = name_from("127.0.0.11", (T0 + 5) as u32, false);
    // 12 has not synced anything from 11: only the source may serve it.
    for _ in 0..4 {
        let r = c.query_fetch("g1", &file, false, now).unwrap();
        assert_eq!(ips(&r), ["127.0.0.11"]);
    }
    assert_eq!(
        ips(&c.query_fetch("g1", &file, true, now).unwrap()),
        ["127.0.0.11"]
    );
    // 12 reports it received 11's records up to T0+6: both serve, in turn.
    let report = SyncReport {
        entries: vec![
            ("127.0.0.12".into(), 0),
            ("127.0.0.11".into(), (T0 + 6) as u32),
        ],
    };
    c.sync_report("g1", "127.0.0.12", &report).unwrap();
    // The listing shows what 12 received (its own 0 entry does not count).
    let listed = c.storage_stats("g1", Some("127.0.0.12")).unwrap();
    assert_eq!(listed[0].stat.get("last_synced_timestamp"), T0 + 6);
    let mut seen: Vec<String> = (0..4)
        .map(|_| {
            c.query_fetch("g1", &file, false, now).unwrap()[0]
                .ip
                .clone()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["127.0.0.11", "127.0.0.12"]);
    assert_eq!(
        ips(&c.query_fetch("g1", &file, true, now).unwrap()),
        ["127.0.0.11", "127.0.0.12"]
    );
    // A newer file is not on 12 yet...
    let newer = name_from("127.0.0.11", (T0 + 8) as u32, false);
    assert_eq!(
        ips(&c.query_fetch("g1", &newer, true, now).unwrap()),
        ["127.0.0.11"]
    );
    // ...but synced+1 >= ts and older than max_time counts as synced.
    let close = name_from("127.0.0.11", (T0 + 7) as u32, false);
    assert_eq!(
        ips(&c.query_fetch("g1", &close, true, now).unwrap()),
        ["127.0.0.11"]
    );
    assert_eq!(
        ips(&c.query_fetch("g1", &close, true, T0 + 7 + 301).unwrap()),
        ["127.0.0.11", "127.0.0.12"]
    );
    // Older than max_delay: everyone is assumed to have it.
    let old = name_from("127.0.0.11", (T0 - 90_000) as u32, false);
    c.sync_report("g1", "127.0.0.12", &SyncReport { entries: vec![] })
        .unwrap();
    assert_eq!(ips(&c.query_fetch("g1", &old, true, now).unwrap()).len(), 2);
    // Appender files only from their source.
    let app = name_from("127.0.0.12", (T0 - 90_000) as u32, true);
    for _ in 0..3 {
        assert_eq!(
            ips(&c.query_fetch("g1", &app, false, now).unwrap()),
            ["127.0.0.12"]
        );
    }
    assert_eq!(
        ips(&c.query_fetch("g1", &app, true, now).unwrap()),
        ["127.0.0.12"]
    );
    // Unknown group → ENOENT.
    assert_eq!(
        c.query_fetch("g9", &file, false, now).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
}

#[test]
fn download_source_first_and_fallbacks() {
    let mut c = cluster(|s| s.download_server = 1);
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    let old = name_from("127.0.0.12", (T0 - 90_000) as u32, false);
    for _ in 0..3 {
        assert_eq!(
            ips(&c.query_fetch("g1", &old, false, T0).unwrap()),
            ["127.0.0.12"]
        );
    }
    // Source offline: any server that may hold it.
    c.disconnect("g1", "127.0.0.12");
    assert_eq!(
        ips(&c.query_fetch("g1", &old, false, T0).unwrap()),
        ["127.0.0.11"]
    );
    // A fresh file whose source is gone: the fallback (first writable).
    let fresh = name_from("127.0.0.12", T0 as u32, false);
    assert_eq!(
        ips(&c.query_fetch("g1", &fresh, false, T0).unwrap()),
        ["127.0.0.11"]
    );
    // Nobody readable: ENOENT.
    c.disconnect("g1", "127.0.0.11");
    assert_eq!(
        c.query_fetch("g1", &fresh, false, T0).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
}

#[test]
fn update_goes_to_the_source_when_it_is_active() {
    let mut c = cluster(|s| s.store_server = 1);
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    let f = name_from("127.0.0.12", T0 as u32, false);
    assert_eq!(c.query_update("g1", &f).unwrap().ip, "127.0.0.12");
    c.disconnect("g1", "127.0.0.12");
    assert_eq!(c.query_update("g1", &f).unwrap().ip, "127.0.0.11");
    c.disconnect("g1", "127.0.0.11");
    assert_eq!(
        c.query_update("g1", &f).unwrap_err().errno(),
        fdfs_proto::errno::ENOENT
    );
}

#[test]
fn listings_describe_groups_and_servers() {
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.12", &[500]);
    active(&mut c, "g1", "127.0.0.11", &[400]);
    c.join("127.0.0.13", &join_req("g1", 23000, 1, true), T0)
        .unwrap();
    let g = &c.group_stats(None).unwrap()[0];
    assert_eq!(
        (
            g.storage_count,
            g.readable_server_count,
            g.writable_server_count
        ),
        (3, 2, 2)
    );
    assert_eq!((g.total_mb, g.free_mb), (1000, 400));
    assert_eq!(
        (g.store_path_count, g.subdir_count_per_path, g.storage_port),
        (1, 256, 23000)
    );
    let list = c.storage_stats("g1", None).unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    assert_eq!(list[2].status, status::INIT);
    assert_eq!(c.storage_stats("g1", Some("127.0.0.12")).unwrap().len(), 1);
    assert!(c.storage_stats("g1", Some("127.0.0.99")).is_err());
    let b = c.brief("g1", "127.0.0.12:23000").unwrap();
    assert_eq!((b.status, b.port), (status::ACTIVE, 23000));
    assert!(c.brief("g1", "127.0.0.12:23001").is_err());
    // 97 filters by status.
    let st = c.storage_cluster_stat([2, b'=', status::ACTIVE, 0]);
    assert_eq!(st.storages.len(), 2);
    let st = c.storage_cluster_stat([2, b'!', status::ACTIVE, 0]);
    assert_eq!(st.storages.len(), 1);
    assert_eq!(st.storages[0].host, "127.0.0.13:23000");
}

#[test]
fn persisted_state_round_trips_and_loads_offline() {
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[500, 600]);
    active(&mut c, "g1", "127.0.0.12", &[500, 600]);
    c.join("127.0.0.13", &join_req("g1", 23000, 2, true), T0)
        .unwrap();
    c.sync_dest_req("g1", "127.0.0.13", T0 + 3).unwrap();
    let mut stat = StatBuff::default();
    stat.counters[0] = 77;
    stat.connection_max_count = 9;
    c.beat("g1", "127.0.0.11", Some(stat.clone()), T0 + 1)
        .unwrap();
    c.sync_report(
        "g1",
        "127.0.0.12",
        &SyncReport {
            entries: vec![("127.0.0.11".into(), 1234)],
        },
    )
    .unwrap();
    active(&mut c, "g2", "127.0.0.21", &[10, 20]);
    c.disconnect("g2", "127.0.0.21");
    c.delete_storage("g2", "127.0.0.21", T0).unwrap();
    let text = crate::persist::render(&c);
    let back = crate::persist::parse(&text, c.settings.clone(), std::path::Path::new("x")).unwrap();
    // Everything but the "needs the group list" bits (not saved: after a
    // load every server gets the list again).
    let mut expect = c.groups.clone();
    for s in expect.values_mut().flat_map(|g| g.storages.values_mut()) {
        s.needs_group_list = true;
    }
    assert_eq!(back.groups, expect);
    assert_eq!(crate::persist::render(&back), text);

    let dir = tempfile::tempdir().unwrap();
    crate::persist::save(dir.path(), &c).unwrap();
    let mut loaded = crate::persist::load(dir.path(), c.settings.clone())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.changelog, c.changelog);
    let s = |c: &Cluster, g: &str, id: &str| c.storage(g, id).unwrap().clone();
    assert_eq!(s(&loaded, "g1", "127.0.0.11").status, status::OFFLINE);
    assert_eq!(s(&loaded, "g1", "127.0.0.11").stat, stat);
    assert_eq!(s(&loaded, "g1", "127.0.0.11").join_time, T0);
    assert_eq!(s(&loaded, "g1", "127.0.0.13").status, status::WAIT_SYNC);
    assert_eq!(s(&loaded, "g1", "127.0.0.13").sync_src_id, "127.0.0.11");
    assert_eq!(s(&loaded, "g2", "127.0.0.21").status, status::DELETED);
    assert_eq!(s(&loaded, "g1", "127.0.0.12").synced["127.0.0.11"], 1234);
    // Nobody is writable until it beats again.
    assert!(loaded.query_store(None, false).is_err());
    loaded.beat("g1", "127.0.0.11", None, T0 + 5).unwrap();
    assert_eq!(loaded.query_store(None, false).unwrap().group, "g1");
    // No state yet: None.
    let empty = tempfile::tempdir().unwrap();
    assert!(crate::persist::load(empty.path(), Settings::default())
        .unwrap()
        .is_none());
    // Corrupt state: an error naming the line.
    std::fs::write(
        dir.path().join(crate::persist::STATE_FILE),
        "[storage]\ngroup=zz\nid=a\n",
    )
    .unwrap();
    let e = crate::persist::load(dir.path(), Settings::default()).unwrap_err();
    assert!(e.to_string().contains("unknown group"), "{e}");
}

#[test]
fn listings_reproduce_the_golden_bytes() {
    let groups =
        fdfs_testkit::golden_body("list_groups_storages.jsonl", "RESP(SERVER_LIST_ALL_GROUPS)");
    let storages = fdfs_testkit::golden_body(
        "list_groups_storages.jsonl",
        "RESP(SERVER_LIST_STORAGE): 1 x",
    );
    let want = StorageStat::decode_list(&storages).unwrap().remove(0);
    // Feed the engine what upstream's tracker had been told.
    let mut c = cluster(|s| s.reserved = ReservedSpace::Ratio(0.20));
    for (g, ip) in [
        ("group1", "127.0.0.11"),
        ("group1", "127.0.0.12"),
        ("group2", "127.0.0.21"),
    ] {
        let mut req = join_req(g, 23000, 1, false);
        req.join_time = want.join_time;
        req.up_time = want.up_time;
        c.join(ip, &req, want.stat.counters[41]).unwrap();
        c.beat(g, ip, Some(want.stat.clone()), want.stat.counters[41])
            .unwrap();
        c.disk_usage(
            g,
            ip,
            &DiskUsage {
                paths: vec![(want.total_mb, want.free_mb)],
            },
            want.stat.counters[41],
        )
        .unwrap();
    }
    // One upload to group1 moved its write cursor to 1, as in the capture.
    c.query_store(Some("group1"), false).unwrap();
    let mut out = Vec::new();
    for g in c.group_stats(None).unwrap() {
        g.encode(&mut out);
    }
    assert_eq!(out.len(), 226);
    assert_eq!(out[..113], groups[..113], "group1 GroupStat");
    let mut out = Vec::new();
    c.storage_stats("group2", None).unwrap()[0].encode(&mut out);
    assert_eq!(out.len(), 487);
    assert_eq!(out, storages, "group2 StorageStat");
}

#[test]
fn old_layout_listings_carry_the_same_figures() {
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[400]);
    active(&mut c, "g1", "127.0.0.12", &[300]);
    active(&mut c, "g1", "127.0.0.13", &[900]);
    active(&mut c, "g2", "127.0.0.21", &[100]);
    c.disconnect("g1", "127.0.0.13");

    let new = c.group_stats(None).unwrap();
    let old = c.group_stats_v610(None).unwrap();
    assert_eq!(old.len(), 2);
    for (o, n) in old.iter().zip(&new) {
        // active_count is the ACTIVE servers, not all of them.
        let active = if n.group_name == "g1" { 2 } else { 1 };
        assert_eq!(*o, GroupStatV610::from_current(n, 0, active));
    }
    assert_eq!((old[0].storage_count, old[0].active_count), (3, 2));
    let one = c.group_stats_v610(Some("g2")).unwrap();
    assert_eq!(one, vec![old[1].clone()]);
    assert!(c.group_stats_v610(Some("g9")).is_err());

    let new = c.storage_stats("g1", None).unwrap();
    let old = c.storage_stats_v610("g1", None).unwrap();
    assert_eq!(old.len(), 3);
    for (o, n) in old.iter().zip(&new) {
        assert_eq!(*o, StorageStatV610::from_current(n, 0));
        assert_eq!((o.domain_name.as_str(), o.storage_http_port), ("", 0));
    }
    assert_eq!(
        old.iter().map(|s| s.status).collect::<Vec<_>>(),
        [status::ACTIVE, status::ACTIVE, status::OFFLINE]
    );
    let one = c.storage_stats_v610("g1", Some("127.0.0.12")).unwrap();
    assert_eq!(one, vec![old[1].clone()]);
    assert!(c.storage_stats_v610("g1", Some("127.0.0.99")).is_err());
}

fn with_ids(text: &str, trust: bool) -> Cluster {
    let ids = fdfs_conf::StorageIds::from_str(text, std::path::Path::new("storage_ids.conf"))
        .expect("valid storage_ids.conf");
    cluster(|s| {
        s.use_storage_id = true;
        s.trust_storage_server_id = trust;
        *s = s.clone().with_storage_ids(ids);
    })
}

fn join_with_id(
    c: &mut Cluster,
    peer: &str,
    port: u16,
    id: &str,
) -> Result<(String, JoinResp), TrackerError> {
    let mut req = join_req("g1", port, 1, false);
    req.storage_id = id.into();
    c.join(peer, &req, T0)
}

const IDS: &str = "\
100001 g1 127.0.0.11
100002 g1 127.0.0.12:23001
100003 g1 10.9.9.9
100004 g2 127.0.0.14
";

#[test]
fn storage_ids_name_the_servers_that_join() {
    let mut c = with_ids(IDS, true);
    // The id it sends, when trusted.
    let (id, _) = join_with_id(&mut c, "127.0.0.11", 23000, "100001").unwrap();
    assert_eq!(id, "100001");
    assert_eq!(c.storage("g1", "100001").unwrap().ip, "127.0.0.11");
    // No id sent: found by address and port; two servers of a group on
    // different ports are allowed with ids.
    let (id, _) = join_with_id(&mut c, "127.0.0.12", 23001, "").unwrap();
    assert_eq!(id, "100002");
    assert_eq!(c.storage("g1", "100002").unwrap().port, 23001);
    // Behind NAT: it connects from elsewhere and clients are sent to the
    // address storage_ids.conf gives.
    let (id, _) = join_with_id(&mut c, "127.0.0.99", 23000, "100003").unwrap();
    assert_eq!(id, "100003");
    assert_eq!(c.storage("g1", "100003").unwrap().ip, "10.9.9.9");

    let status = |r: Result<(String, JoinResp), TrackerError>| r.unwrap_err().errno();
    // An id that is not in the file, an address that is in no entry, the
    // wrong port: ENOENT, and nothing is recorded.
    assert_eq!(
        status(join_with_id(&mut c, "127.0.0.11", 23000, "999")),
        fdfs_proto::errno::ENOENT
    );
    assert_eq!(
        status(join_with_id(&mut c, "127.0.0.50", 23000, "")),
        fdfs_proto::errno::ENOENT
    );
    assert_eq!(
        status(join_with_id(&mut c, "127.0.0.12", 23000, "")),
        fdfs_proto::errno::ENOENT
    );
    // Another group's id: EINVAL.
    assert_eq!(
        status(join_with_id(&mut c, "127.0.0.14", 23000, "100004")),
        fdfs_proto::errno::EINVAL
    );
    let g = c.groups.get("g1").unwrap();
    assert_eq!(
        g.storages.keys().collect::<Vec<_>>(),
        ["100001", "100002", "100003"]
    );
    assert!(!c.groups.contains_key("g2"));
}

#[test]
fn untrusted_ids_are_looked_up_by_address() {
    let mut c = with_ids(IDS, false);
    // The id it sends is ignored: its address says who it is.
    let (id, _) = join_with_id(&mut c, "127.0.0.11", 23000, "100003").unwrap();
    assert_eq!(id, "100001");
    assert_eq!(
        join_with_id(&mut c, "127.0.0.99", 23000, "100003")
            .unwrap_err()
            .errno(),
        fdfs_proto::errno::ENOENT
    );
}

#[test]
fn rw_modes_of_storage_ids_steer_uploads_and_downloads() {
    let mut c = with_ids(
        "\
1 g1 127.0.0.11 rw=read
2 g1 127.0.0.12 rw=write
3 g1 127.0.0.13 rw=none
4 g1 127.0.0.14
",
        true,
    );
    for (id, ip) in [
        ("1", "127.0.0.11"),
        ("2", "127.0.0.12"),
        ("3", "127.0.0.13"),
        ("4", "127.0.0.14"),
    ] {
        join_with_id(&mut c, ip, 23000, id).unwrap();
        c.disk_usage(
            "g1",
            id,
            &DiskUsage {
                paths: vec![(1000, 500)],
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.storage("g1", id).unwrap().status, status::ACTIVE);
    }
    // Uploads: the write and both servers, in turn.
    let mut up: Vec<String> = (0..4)
        .map(|_| {
            c.query_store(Some("g1"), false).unwrap().servers[0]
                .ip
                .clone()
        })
        .collect();
    up.sort();
    assert_eq!(up, ["127.0.0.12", "127.0.0.12", "127.0.0.14", "127.0.0.14"]);
    assert_eq!(
        ips(&c.query_store(Some("g1"), true).unwrap().servers),
        ["127.0.0.12", "127.0.0.14"]
    );
    // Downloads of an old file (every copy is there): the read and both
    // servers, never the write-only or the rw=none one.
    let old = name_from("127.0.0.14", (T0 - 90_000) as u32, false);
    assert_eq!(
        ips(&c.query_fetch("g1", &old, true, T0).unwrap()),
        ["127.0.0.11", "127.0.0.14"]
    );
    // The group list sent to the servers keeps all four, so rw=none ones
    // stay in sync.
    assert_eq!(c.groups["g1"].storages.len(), 4);
    assert_eq!(c.storage("g1", "3").unwrap().rw_mode, 0);
}

#[test]
fn an_ip_change_moves_the_record_and_tells_the_group() {
    use fdfs_proto::errno::*;
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[400]);
    c.sync_report(
        "g1",
        "127.0.0.11",
        &SyncReport {
            entries: vec![("127.0.0.12".into(), 1234), ("127.0.0.11".into(), 0)],
        },
    )
    .unwrap();
    c.disconnect("g1", "127.0.0.12");
    let join_time = c.storage("g1", "127.0.0.12").unwrap().join_time;

    // Refused: the new IP is not the reporter's; a server nobody knows; a
    // new IP that a live server has.
    let err = |c: &mut Cluster, old: &str, new: &str, peer: &str| {
        c.ip_changed("g1", old, new, peer, T0).unwrap_err().errno()
    };
    assert_eq!(
        err(&mut c, "127.0.0.12", "127.0.0.13", "127.0.0.14"),
        EINVAL
    );
    assert_eq!(
        err(&mut c, "127.0.0.99", "127.0.0.13", "127.0.0.13"),
        ENOENT
    );
    assert_eq!(
        err(&mut c, "127.0.0.12", "127.0.0.11", "127.0.0.11"),
        EEXIST
    );
    assert!(c.changelog.is_empty());

    c.ip_changed("g1", "127.0.0.12", "127.0.0.13", "127.0.0.13", T0 + 5)
        .unwrap();
    let old = c.storage("g1", "127.0.0.12").unwrap();
    assert_eq!((old.status, old.free_mb()), (status::IP_CHANGED, 0));
    let moved = c.storage("g1", "127.0.0.13").unwrap();
    assert_eq!(moved.ip, "127.0.0.13");
    assert_eq!(moved.status, status::OFFLINE);
    assert_eq!(moved.free_mb(), 400);
    assert_eq!(moved.join_time, join_time);
    // Others' progress from it follows it to the new id.
    let peer = c.storage("g1", "127.0.0.11").unwrap();
    assert_eq!(peer.synced.get("127.0.0.13"), Some(&1234));
    assert!(!peer.synced.contains_key("127.0.0.12"));
    assert_eq!(
        c.changelog_since("g1", "127.0.0.11").unwrap(),
        format!("{} g1 127.0.0.12 3 127.0.0.13\n", T0 + 5).as_bytes()
    );
    // Files named with the old IP are routed to the moved server once it
    // serves (source first), and the link survives a save and load.
    // (It joins as what it was: ONLINE, not a new INIT.)
    c.settings.download_server = 1;
    let (id, r) = c
        .join("127.0.0.13", &join_req("g1", 23000, 1, false), T0 + 6)
        .unwrap();
    assert_eq!((id.as_str(), r.status), ("127.0.0.13", status::ONLINE));
    c.disk_usage(
        "g1",
        "127.0.0.13",
        &DiskUsage {
            paths: vec![(1000, 400)],
        },
        T0 + 6,
    )
    .unwrap();
    let old_name = name_from("127.0.0.12", T0 as u32, false);
    assert_eq!(
        ips(&c.query_fetch("g1", &old_name, false, T0 + 7).unwrap()),
        ["127.0.0.13"]
    );
    let reloaded = saved_and_loaded(&c);
    assert_eq!(
        reloaded.storage("g1", "127.0.0.12").unwrap().moved_to,
        "127.0.0.13"
    );
    // Reported twice (a second tracker session): the old one is gone.
    assert_eq!(
        err(&mut c, "127.0.0.12", "127.0.0.13", "127.0.0.13"),
        ENOENT
    );
    // With storage ids there are no IP changes to report.
    let mut c = with_ids(IDS, true);
    assert_eq!(
        c.ip_changed("g1", "127.0.0.11", "127.0.0.13", "127.0.0.13", T0)
            .unwrap_err()
            .errno(),
        EOPNOTSUPP
    );
}

// ----- trunk server (use_trunk_file) -----

fn trunk_cluster() -> Cluster {
    cluster(|s| s.use_trunk_file = true)
}

fn trunk_of(c: &Cluster, g: &str) -> String {
    c.groups[g].trunk_server.clone()
}

/// Flag 2 of a beat reply: the trunk server's id ("" = the all-zero brief
/// of "none"), or None when flag 2 is not set.
fn beat_trunk(c: &mut Cluster, g: &str, id: &str, now: i64) -> Option<String> {
    let f = c.beat(g, id, None, now).unwrap();
    f.trunk_server.map(|b| {
        if b.id.is_empty() {
            assert_eq!(b, StorageBrief::default(), "none is an all-zero brief");
        }
        b.id
    })
}

#[test]
fn trunk_server_is_elected_moved_and_announced_once() {
    let mut c = trunk_cluster();
    c.join("127.0.0.12", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    assert_eq!(trunk_of(&c, "g1"), "", "nobody ACTIVE yet");
    // 12 is the first ACTIVE server: it is elected, and its beat reply
    // says so with its brief.
    let f = c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(f.flags(), 2 | 4);
    let b = f.trunk_server.unwrap();
    assert_eq!(
        (b.id.as_str(), b.ip.as_str(), b.port, b.status),
        ("127.0.0.12", "127.0.0.12", 23000, status::ACTIVE)
    );
    assert_eq!(beat_trunk(&mut c, "g1", "127.0.0.12", T0), None, "once");
    // 11 comes first by id but the role stays; 11 learns it once (it
    // joined since the last announcement).
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.11", T0).as_deref(),
        Some("127.0.0.12")
    );
    assert_eq!(beat_trunk(&mut c, "g1", "127.0.0.11", T0), None);
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.12");
    // The listings name it.
    let l = c.storage_stats("g1", None).unwrap();
    assert_eq!(
        l.iter().map(|s| s.if_trunk_server).collect::<Vec<_>>(),
        [false, true]
    );
    let st = c.storage_cluster_stat([1, 0, 0, 1]);
    assert_eq!(st.storages.len(), 1);
    assert_eq!(st.storages[0].id, "127.0.0.12");
    assert!(st.storages[0].is_trunk_server);
    let st = c.storage_cluster_stat([1, 0, 0, 0]);
    assert_eq!(st.storages.len(), 1);
    assert_eq!(st.storages[0].id, "127.0.0.11");
    // Its session closes: 11 takes over and hears it once.
    c.disconnect("g1", "127.0.0.12");
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.11");
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.11", T0).as_deref(),
        Some("127.0.0.11")
    );
    assert_eq!(beat_trunk(&mut c, "g1", "127.0.0.11", T0), None);
    // 12 back: told about 11 after its JOIN.
    c.join("127.0.0.12", &join_req("g1", 23000, 1, false), T0 + 1)
        .unwrap();
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.12", T0 + 1).as_deref(),
        Some("127.0.0.11")
    );
    // Missed heartbeats count as gone too.
    c.beat("g1", "127.0.0.12", None, T0 + 4).unwrap();
    c.check_active(T0 + 4);
    assert_eq!(
        c.storage("g1", "127.0.0.11").unwrap().status,
        status::OFFLINE
    );
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.12");
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.12", T0 + 4).as_deref(),
        Some("127.0.0.12")
    );
    // Nobody left: the role is empty, last_trunk_server remembers.
    c.disconnect("g1", "127.0.0.12");
    assert_eq!(trunk_of(&c, "g1"), "");
    assert_eq!(c.groups["g1"].last_trunk_server, "127.0.0.12");
    // 11 comes back first: the group waits TRUNK_HOLD_SECS for 12 (its
    // JOIN still brings flag 2, naming nobody)...
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0 + 10)
        .unwrap();
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.11", T0 + 10).as_deref(),
        Some("")
    );
    c.check_active(T0 + 10);
    c.beat("g1", "127.0.0.11", None, T0 + 10 + TRUNK_HOLD_SECS - 1)
        .unwrap();
    c.check_active(T0 + 10 + TRUNK_HOLD_SECS - 1);
    assert_eq!(trunk_of(&c, "g1"), "");
    // ...then elects another.
    c.beat("g1", "127.0.0.11", None, T0 + 10 + TRUNK_HOLD_SECS)
        .unwrap();
    c.check_active(T0 + 10 + TRUNK_HOLD_SECS);
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.11");
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.11", T0 + 10 + TRUNK_HOLD_SECS).as_deref(),
        Some("127.0.0.11")
    );
}

#[test]
fn trunk_state_persists_and_the_last_trunk_server_is_preferred() {
    let mut c = trunk_cluster();
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.12", &[500]);
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.11");
    // Move the role to 12 (11 restarts).
    c.disconnect("g1", "127.0.0.11");
    active(&mut c, "g1", "127.0.0.11", &[500]);
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.12");
    // 73 only grows; 74 is the trunk server's free space.
    c.report_trunk_file_id("g1", "127.0.0.12", 7).unwrap();
    c.report_trunk_file_id("g1", "127.0.0.12", 5).unwrap();
    assert_eq!(c.trunk_file_id("g1").unwrap(), 7);
    c.report_trunk_free("g1", "127.0.0.12", 300).unwrap();
    c.report_trunk_free("g1", "127.0.0.11", 99).unwrap();
    assert_eq!(
        c.report_trunk_free("g1", "127.0.0.12", -1)
            .unwrap_err()
            .errno(),
        fdfs_proto::errno::EINVAL
    );
    assert_eq!(
        c.report_trunk_file_id("g1", "127.0.0.99", 9)
            .unwrap_err()
            .errno(),
        fdfs_proto::errno::ENOENT
    );
    let g = &c.group_stats(Some("g1")).unwrap()[0];
    assert_eq!((g.trunk_free_mb, g.current_trunk_file_id), (300, 7));
    let v = &c.volume_stat([2, 0, 1, 0]).volumes;
    assert_eq!(v.len(), 1, "filtered by trunk available");
    assert_eq!(v[0].trunk_free_mb, 300);
    assert!(c.volume_stat([0; 4]).use_trunk_file);

    // The file keeps the three group keys.
    let text = crate::persist::render(&c);
    assert!(text.contains(
        "trunk_server=127.0.0.12\nlast_trunk_server=127.0.0.12\ncurrent_trunk_file_id=7\n"
    ));
    let back = crate::persist::parse(&text, c.settings.clone(), std::path::Path::new("x")).unwrap();
    let bg = &back.groups["g1"];
    assert_eq!(
        (
            bg.trunk_server.as_str(),
            bg.last_trunk_server.as_str(),
            bg.current_trunk_file_id
        ),
        ("127.0.0.12", "127.0.0.12", 7)
    );
    assert_eq!(crate::persist::render(&back), text);

    // Loaded: nobody is connected, so nobody is trunk server yet; 11
    // comes back first but the group waits for 12, the last holder.
    let mut loaded = saved_and_loaded(&c);
    assert_eq!(trunk_of(&loaded, "g1"), "");
    assert_eq!(loaded.groups["g1"].last_trunk_server, "127.0.0.12");
    assert_eq!(loaded.trunk_file_id("g1").unwrap(), 7);
    let mut c2 = loaded.clone();
    active(&mut loaded, "g1", "127.0.0.11", &[500]);
    assert_eq!(trunk_of(&loaded, "g1"), "");
    assert_eq!(loaded.group_stats(None).unwrap()[0].trunk_free_mb, 0);
    active(&mut loaded, "g1", "127.0.0.12", &[500]);
    assert_eq!(trunk_of(&loaded, "g1"), "127.0.0.12");
    // When 12 is deleted meanwhile there is nobody to wait for.
    c2.delete_storage("g1", "127.0.0.12", T0).unwrap();
    active(&mut c2, "g1", "127.0.0.11", &[500]);
    assert_eq!(trunk_of(&c2, "g1"), "127.0.0.11");
}

#[test]
fn set_trunk_server_answers_per_spec() {
    use fdfs_proto::errno::*;
    let code = |r: Result<String, TrackerError>| r.unwrap_err().errno();
    let mut c = trunk_cluster();
    assert_eq!(code(c.set_trunk_server("g1", None)), ENOENT, "no group");
    active(&mut c, "g1", "127.0.0.11", &[500]);
    active(&mut c, "g1", "127.0.0.13", &[500]);
    c.join("127.0.0.12", &join_req("g1", 23000, 1, true), T0)
        .unwrap();
    assert_eq!(c.set_trunk_server("g1", None).unwrap(), "127.0.0.11");
    assert_eq!(code(c.set_trunk_server("g1", Some("127.0.0.99"))), ENOENT);
    assert_eq!(code(c.set_trunk_server("g1", Some("127.0.0.11"))), EALREADY);
    assert_eq!(code(c.set_trunk_server("g1", Some("127.0.0.13"))), EEXIST);
    // 13 turns read-only; 11 goes: nobody may take the role.
    c.groups
        .get_mut("g1")
        .unwrap()
        .storages
        .get_mut("127.0.0.13")
        .unwrap()
        .rw_mode = RW_READ;
    c.disconnect("g1", "127.0.0.11");
    assert_eq!(trunk_of(&c, "g1"), "");
    assert_eq!(code(c.set_trunk_server("g1", None)), ENOENT);
    assert_eq!(
        code(c.set_trunk_server("g1", Some("127.0.0.12"))),
        ENONET,
        "INIT"
    );
    assert_eq!(code(c.set_trunk_server("g1", Some("127.0.0.13"))), EACCES);
    // The admin may name a server while the group waits for 11.
    c.sync_notify("g1", "127.0.0.12", &SyncInfo::default())
        .unwrap();
    c.beat("g1", "127.0.0.12", None, T0).unwrap();
    assert_eq!(trunk_of(&c, "g1"), "", "held for 11");
    assert_eq!(
        c.set_trunk_server("g1", Some("127.0.0.12")).unwrap(),
        "127.0.0.12"
    );
    assert!(!c.groups["g1"].trunk_hold);
    assert_eq!(
        beat_trunk(&mut c, "g1", "127.0.0.13", T0).as_deref(),
        Some("127.0.0.12")
    );
}

#[test]
fn trunk_off_keeps_the_old_answers() {
    use fdfs_proto::errno::*;
    let mut c = cluster(|_| {});
    c.join("127.0.0.11", &join_req("g1", 23000, 1, false), T0)
        .unwrap();
    let f = c.beat("g1", "127.0.0.11", None, T0).unwrap();
    assert_eq!(f.flags(), 4, "no flag 2");
    assert_eq!(trunk_of(&c, "g1"), "");
    assert_eq!(
        c.set_trunk_server("g1", None).unwrap_err().errno(),
        EOPNOTSUPP
    );
    assert_eq!(c.trunk_file_id("g1").unwrap_err().errno(), EOPNOTSUPP);
    assert_eq!(
        c.report_trunk_file_id("g1", "127.0.0.11", 3)
            .unwrap_err()
            .errno(),
        EOPNOTSUPP
    );
    assert_eq!(
        c.report_trunk_free("g1", "127.0.0.11", 3)
            .unwrap_err()
            .errno(),
        EOPNOTSUPP
    );
    let g = &c.group_stats(None).unwrap()[0];
    assert_eq!((g.trunk_free_mb, g.current_trunk_file_id), (0, -1));
    assert!(!c.storage_stats("g1", None).unwrap()[0].if_trunk_server);
    let v = &c.volume_stat([0; 4]).volumes[0];
    assert_eq!((v.trunk_free_mb, v.is_trunk_available), (0, false));
    // Filter "trunk server = 0": everybody; "= 1": nobody.
    assert_eq!(c.storage_cluster_stat([1, 0, 0, 0]).storages.len(), 1);
    assert!(c.storage_cluster_stat([1, 0, 0, 1]).storages.is_empty());
}

#[test]
fn an_ip_change_carries_the_trunk_role_over() {
    let mut c = trunk_cluster();
    active(&mut c, "g1", "127.0.0.11", &[500]);
    c.ip_changed("g1", "127.0.0.11", "127.0.0.14", "127.0.0.14", T0)
        .unwrap();
    // Still ACTIVE on its old session: it keeps the role under its new key.
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.14");
    assert_eq!(c.groups["g1"].last_trunk_server, "127.0.0.14");
    assert!(c.storage("g1", "127.0.0.14").unwrap().needs_trunk_server);
}

/// `c` written to a state file and read back, as after a restart.
fn saved_and_loaded(c: &Cluster) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    crate::persist::save(dir.path(), c).unwrap();
    crate::persist::load(dir.path(), c.settings.clone())
        .unwrap()
        .unwrap()
}

#[test]
fn free_trunk_space_counts_when_the_disks_are_over_their_reserve() {
    use fdfs_proto::errno::ENOSPC;
    let disk = |c: &mut Cluster, g: &str, ip: &str, free: i64| {
        let usage = DiskUsage {
            paths: vec![(1000, free)],
        };
        c.disk_usage(g, ip, &usage, T0).unwrap();
    };
    // Reserve 10%: 50 MB free on the disk is not enough by itself.
    let mut c = trunk_cluster();
    active(&mut c, "g1", "127.0.0.11", &[50]);
    assert_eq!(trunk_of(&c, "g1"), "127.0.0.11");
    assert_eq!(c.query_store(None, false).unwrap_err().errno(), ENOSPC);
    // 60 MB free inside trunk files: 110 of 1000 passes the check.
    c.report_trunk_free("g1", "127.0.0.11", 60).unwrap();
    let choice = c.query_store(None, false).unwrap();
    assert_eq!((choice.group.as_str(), choice.store_path_index), ("g1", 0));
    assert_eq!(c.query_store(Some("g1"), false).unwrap().group, "g1");
    // Not enough together: still full.
    c.report_trunk_free("g1", "127.0.0.11", 40).unwrap();
    assert_eq!(
        c.query_store(Some("g1"), false).unwrap_err().errno(),
        ENOSPC
    );

    // A group with room on its disks comes first; the trunk-aware check
    // is only the second pass.
    c.report_trunk_free("g1", "127.0.0.11", 600).unwrap();
    active(&mut c, "g2", "127.0.0.21", &[500]);
    for _ in 0..4 {
        assert_eq!(c.query_store(None, false).unwrap().group, "g2");
    }
    disk(&mut c, "g2", "127.0.0.21", 20);
    assert_eq!(c.query_store(None, false).unwrap().group, "g1");

    // Load balance: the group with the most free disk, or when that one
    // is over its reserve, the one with the most free trunk space.
    let mut c = cluster(|s| {
        s.use_trunk_file = true;
        s.store_lookup = 2;
    });
    active(&mut c, "g1", "127.0.0.11", &[50]);
    active(&mut c, "g2", "127.0.0.21", &[60]);
    c.report_trunk_free("g1", "127.0.0.11", 300).unwrap();
    c.report_trunk_free("g2", "127.0.0.21", 100).unwrap();
    disk(&mut c, "g2", "127.0.0.21", 60);
    for _ in 0..2 {
        assert_eq!(c.query_store(None, false).unwrap().group, "g1");
    }
    disk(&mut c, "g2", "127.0.0.21", 500);
    assert_eq!(c.query_store(None, false).unwrap().group, "g2");

    // Without trunk files the trunk space never counts.
    let mut c = cluster(|_| {});
    active(&mut c, "g1", "127.0.0.11", &[50]);
    assert!(c.report_trunk_free("g1", "127.0.0.11", 600).is_err());
    assert_eq!(c.query_store(None, false).unwrap_err().errno(), ENOSPC);
}

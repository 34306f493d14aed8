//! The tracker side of trunk files (`use_trunk_file = true`) against a real
//! tracker: two simulated storages join and beat over TCP from their own
//! loopback addresses; the trunk server is elected, announced with change
//! flag 2, re-elected when its session closes and remembered across a
//! restart; 72/73/74 and 94 answer per PROTOCOL.md. With trunk files off
//! the old answers stay. Every read has the testkit's 5 s timeout.

mod tracker_common;

use fdfs_proto::cmd::tracker as t;
use fdfs_proto::errno;
use fdfs_proto::server::{ChangeFlags, StorageBrief};
use fdfs_proto::tracker::{StorageClusterStat, VolumeStat};
use fdfs_testkit::TestDir;
use tracker_common::*;

/// Trunk files on; a long check_active_interval so that a slow machine
/// does not turn a storage OFFLINE (and move the role) between beats.
const TRUNK_ON: &[&str] = &["use_trunk_file = true", "check_active_interval = 60"];

/// The brief of flag 2, which must be set.
fn trunk_brief(f: &ChangeFlags) -> &StorageBrief {
    f.trunk_server.as_ref().expect("change flag 2")
}

fn fetch_fid(s: &mut SimStorage) -> u32 {
    let (st, b) = s.call(t::STORAGE_FETCH_TRUNK_FID, &[]);
    assert_eq!((st, b.len()), (0, 4));
    u32::from_be_bytes(b.try_into().unwrap())
}

/// 94 on a new connection: the reply body or the status.
fn set_trunk(tr: std::net::SocketAddr, group: &str, id: &str) -> Result<Vec<u8>, u8> {
    call_ok(
        tr,
        t::SERVER_SET_TRUNK_SERVER,
        &group_and(group, id.as_bytes()),
    )
}

fn trunk_ids(tr: std::net::SocketAddr) -> Vec<String> {
    let (st, b) = client(tr)
        .call(t::SERVER_STORAGE_CLUSTER_STAT, &[1, 0, 0, 1])
        .unwrap();
    assert_eq!(st, 0);
    let s = StorageClusterStat::decode(&b).unwrap();
    assert!(s.use_trunk_file);
    s.storages.into_iter().map(|s| s.id).collect()
}

#[test]
fn trunk_server_is_elected_announced_and_moved() {
    let dir = TestDir::new("tr-trunk");
    let mut tr = tracker(&dir, TRUNK_ON);
    let (mut a, r) = SimStorage::join(tr.addr, [127, 0, 0, 11], "group1", 1, false);
    assert_eq!(r.status, 6);
    let (mut b, _) = SimStorage::join(tr.addr, [127, 0, 0, 12], "group1", 1, false);

    // 11 is the first ACTIVE server: its own report reply names it.
    let f = a.disk(&[(10000, 5000)]);
    let brief = trunk_brief(&f);
    assert_eq!(
        (
            brief.id.as_str(),
            brief.ip.as_str(),
            brief.port,
            brief.status
        ),
        ("127.0.0.11", "127.0.0.11", 23000, 7)
    );
    assert!(a.beat().trunk_server.is_none(), "flag 2 once per change");
    // 12 learns it once after its JOIN.
    assert_eq!(trunk_brief(&b.beat()).id, "127.0.0.11");
    assert!(b.beat().trunk_server.is_none());
    assert_eq!(trunk_ids(tr.addr), ["127.0.0.11"]);
    let l = list_storages(tr.addr, "group1").unwrap();
    assert_eq!(
        l.iter()
            .map(|s| (s.id.as_str(), s.if_trunk_server))
            .collect::<Vec<_>>(),
        [("127.0.0.11", true), ("127.0.0.12", false)]
    );

    // 72/73/74 on the trunk server's session.
    assert_eq!(fetch_fid(&mut a), 0);
    assert_eq!(
        a.call(t::STORAGE_REPORT_TRUNK_FID, &5u32.to_be_bytes()),
        (0, vec![])
    );
    assert_eq!(fetch_fid(&mut a), 5);
    a.call(t::STORAGE_REPORT_TRUNK_FID, &3u32.to_be_bytes());
    assert_eq!(fetch_fid(&mut b), 5, "the id only grows");
    assert_eq!(
        a.call(t::STORAGE_REPORT_TRUNK_FREE, &1234i64.to_be_bytes()),
        (0, vec![])
    );
    assert_eq!(
        a.call(t::STORAGE_REPORT_TRUNK_FID, &[0; 3]).0,
        errno::EINVAL
    );
    assert_eq!(
        a.call(t::STORAGE_REPORT_TRUNK_FREE, &[0; 4]).0,
        errno::EINVAL
    );
    assert_eq!(a.call(t::STORAGE_FETCH_TRUNK_FID, &[0]).0, errno::EINVAL);
    // Before JOIN: refused like the other storage commands.
    let mut w = fdfs_testkit::Wire::connect_from([127, 0, 0, 13].into(), tr.addr).unwrap();
    assert_eq!(
        w.call(t::STORAGE_FETCH_TRUNK_FID, &[]).unwrap().0,
        errno::EACCES
    );
    let g = &list_groups(tr.addr)[0];
    assert_eq!((g.trunk_free_mb, g.current_trunk_file_id), (1234, 5));
    let (_, body) = client(tr.addr)
        .call(t::SERVER_STORAGE_VOLUMN_STAT, &[2, 0, 1, 0])
        .unwrap();
    let v = VolumeStat::decode(&body).unwrap();
    assert_eq!(v.volumes.len(), 1, "filtered: trunk available");
    assert_eq!(v.volumes[0].trunk_free_mb, 1234);

    // 94: the id with its NUL; the refusals.
    assert_eq!(
        set_trunk(tr.addr, "group1", ""),
        Ok(b"127.0.0.11\0".to_vec())
    );
    assert_eq!(
        set_trunk(tr.addr, "group1", "127.0.0.11"),
        Err(errno::EALREADY)
    );
    assert_eq!(
        set_trunk(tr.addr, "group1", "127.0.0.12"),
        Err(errno::EEXIST)
    );
    assert_eq!(
        set_trunk(tr.addr, "group1", "127.0.0.99"),
        Err(errno::ENOENT)
    );
    assert_eq!(set_trunk(tr.addr, "group9", ""), Err(errno::ENOENT));

    // The trunk server's session closes: 12 takes over and is told.
    a.quit();
    let f = b.beat();
    let brief = trunk_brief(&f);
    assert_eq!((brief.id.as_str(), brief.status), ("127.0.0.12", 7));
    assert_eq!(trunk_ids(tr.addr), ["127.0.0.12"]);
    assert_eq!(
        set_trunk(tr.addr, "group1", ""),
        Ok(b"127.0.0.12\0".to_vec())
    );
    assert_eq!(list_groups(tr.addr)[0].trunk_free_mb, 0, "12 reported none");

    // Restart: the saved last trunk server (12) is waited for although 11
    // is back first; the trunk file id is kept.
    drop(b);
    tr.restart();
    let (mut a, _) = SimStorage::join(tr.addr, [127, 0, 0, 11], "group1", 1, false);
    let f = a.disk(&[(10000, 5000)]);
    assert_eq!(*trunk_brief(&f), StorageBrief::default(), "none yet");
    assert!(trunk_ids(tr.addr).is_empty());
    assert_eq!(fetch_fid(&mut a), 5);
    let (mut b, _) = SimStorage::join(tr.addr, [127, 0, 0, 12], "group1", 1, false);
    assert_eq!(trunk_brief(&b.disk(&[(10000, 5000)])).id, "127.0.0.12");
    assert_eq!(trunk_brief(&a.beat()).id, "127.0.0.12");
    let state = std::fs::read_to_string(tr.base.join("data/tracker_state.dat")).unwrap();
    assert!(
        state.contains("trunk_server=127.0.0.12\n") && state.contains("current_trunk_file_id=5\n"),
        "{state}"
    );
}

#[test]
fn trunk_off_keeps_the_old_answers() {
    let dir = TestDir::new("tr-trunk-off");
    let tr = tracker(&dir, &[]);
    let mut a = SimStorage::active(tr.addr, [127, 0, 0, 11], "group1", &[5000]);
    let (mut b, _) = SimStorage::join(tr.addr, [127, 0, 0, 12], "group1", 1, false);
    let f = b.beat();
    assert_eq!(f.flags() & 2, 0, "no flag 2");
    assert!(a.beat().trunk_server.is_none());
    for (cmd, body) in [
        (t::STORAGE_FETCH_TRUNK_FID, vec![]),
        (t::STORAGE_REPORT_TRUNK_FID, vec![0; 4]),
        (t::STORAGE_REPORT_TRUNK_FREE, vec![0; 8]),
    ] {
        assert_eq!(a.call(cmd, &body).0, errno::EOPNOTSUPP, "cmd {cmd}");
    }
    assert_eq!(set_trunk(tr.addr, "group1", ""), Err(errno::EOPNOTSUPP));
    let g = &list_groups(tr.addr)[0];
    assert_eq!((g.trunk_free_mb, g.current_trunk_file_id), (0, -1));
    assert!(list_storages(tr.addr, "group1")
        .unwrap()
        .iter()
        .all(|s| !s.if_trunk_server));
}

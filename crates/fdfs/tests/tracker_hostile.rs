//! Hostile and malformed input against a real tracker (PROTOCOL.md §12.10,
//! golden bad_requests): each case checks the status byte or that the
//! connection was closed, then that a normal request on a new connection
//! still works.

mod tracker_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fdfs_proto::cmd::{self, tracker as t};
use fdfs_proto::{errno, Header};
use fdfs_testkit::{TestDir, Wire};
use tracker_common::*;

/// The tracker still answers a normal request on a fresh connection.
fn still_serves(addr: SocketAddr) {
    list_groups(addr);
}

/// The connection stays usable: an ACTIVE_TEST is answered.
fn still_open(w: &mut Wire) {
    assert_eq!(w.call(cmd::ACTIVE_TEST, &[]).unwrap(), (0, vec![]));
}

fn setup() -> (TestDir, fdfs_testkit::TrackerProc, SimStorage) {
    let dir = TestDir::new("tr-hostile");
    let tr = tracker(&dir, &["network_timeout = 2"]);
    let s = SimStorage::active(tr.addr, [127, 0, 0, 11], "group1", &[5000]);
    (dir, tr, s)
}

#[test]
fn bad_bodies_get_einval_and_the_connection_stays_open() {
    let (_d, tr, _s) = setup();
    let mut w = client(tr.addr);
    // Unknown command.
    assert_eq!(w.call(200, &[]).unwrap(), (errno::EINVAL, vec![]));
    still_open(&mut w);
    // Unknown command with a body: the body is consumed, not parsed as a header.
    assert_eq!(w.call(201, b"0123456789abcdef").unwrap().0, errno::EINVAL);
    still_open(&mut w);
    // 101 must have an empty body.
    assert_eq!(
        w.call(t::QUERY_STORE_WITHOUT_GROUP_ONE, b"abcde")
            .unwrap()
            .0,
        errno::EINVAL
    );
    // 104 needs exactly 16 bytes.
    assert_eq!(
        w.call(t::QUERY_STORE_WITH_GROUP_ONE, b"grp").unwrap().0,
        errno::EINVAL
    );
    let mut g17 = group16("group1");
    g17.push(0);
    assert_eq!(
        w.call(t::QUERY_STORE_WITH_GROUP_ONE, &g17).unwrap().0,
        errno::EINVAL
    );
    // Bytes after the NUL of a group name, and invalid characters.
    let mut junk = group16("group1");
    junk[10] = b'x';
    assert_eq!(
        w.call(t::QUERY_STORE_WITH_GROUP_ONE, &junk).unwrap().0,
        errno::EINVAL
    );
    assert_eq!(
        w.call(t::SERVER_LIST_ONE_GROUP, &group16("gr-p"))
            .unwrap()
            .0,
        errno::EINVAL
    );
    // Unknown group.
    assert_eq!(
        w.call(t::QUERY_STORE_WITH_GROUP_ONE, &group16("nogroup"))
            .unwrap()
            .0,
        errno::ENOENT
    );
    assert_eq!(
        w.call(t::SERVER_LIST_ONE_GROUP, &group16("group9"))
            .unwrap()
            .0,
        errno::ENOENT
    );
    // Malformed file name; a well-formed unknown one gets a normal answer.
    let bad = group_and("group1", b"M00/00/00/bad");
    assert_eq!(w.call(t::QUERY_FETCH_ONE, &bad).unwrap().0, errno::EINVAL);
    let f = file_name([127, 0, 0, 11], now() - 100_000, false);
    let ok = group_and("group1", f.to_string().as_bytes());
    let (st, b) = w.call(t::QUERY_FETCH_ONE, &ok).unwrap();
    assert_eq!((st, b.len()), (0, 39));
    // ACTIVE_TEST with a body.
    assert_eq!(w.call(cmd::ACTIVE_TEST, b"x").unwrap().0, errno::EINVAL);
    // Wrong lengths on the admin/monitor commands.
    assert_eq!(
        w.call(t::SERVER_LIST_ALL_GROUPS, b"x").unwrap().0,
        errno::EINVAL
    );
    assert_eq!(
        w.call(t::SERVER_TRACKER_CLUSTER_STAT, b"xx").unwrap().0,
        errno::EINVAL
    );
    assert_eq!(
        w.call(t::SERVER_STORAGE_CLUSTER_STAT, b"x").unwrap().0,
        errno::EINVAL
    );
    assert_eq!(
        w.call(t::SERVER_DELETE_STORAGE, &group16("group1"))
            .unwrap()
            .0,
        errno::EINVAL
    );
    // A storage command before JOIN.
    assert_eq!(w.call(t::STORAGE_BEAT, &[]).unwrap().0, errno::EACCES);
    assert_eq!(
        w.call(t::STORAGE_REPORT_DISK_USAGE, &[0; 16]).unwrap().0,
        errno::EACCES
    );
    still_open(&mut w);
    // Two requests in one write: both answered, in order.
    let mut two = fdfs_proto::encode_frame(cmd::ACTIVE_TEST, 0, &[]);
    two.extend_from_slice(&fdfs_proto::encode_frame(
        t::SERVER_LIST_ONE_GROUP,
        0,
        &group16("group1"),
    ));
    w.send_raw(&two).unwrap();
    let (h1, b1) = w.read_reply().unwrap();
    let (h2, b2) = w.read_reply().unwrap();
    assert_eq!((h1.status, b1.len()), (0, 0));
    assert_eq!((h2.status, b2.len()), (0, 113));
    still_serves(tr.addr);
}

#[test]
fn bad_storage_session_input() {
    let (_d, tr, mut s) = setup();
    // Beat with a body that is neither empty nor a StatBuff.
    assert_eq!(s.call(t::STORAGE_BEAT, &[0; 100]).0, errno::EINVAL);
    // Disk usage for a different number of paths than joined with.
    assert_eq!(
        s.call(t::STORAGE_REPORT_DISK_USAGE, &[0; 32]).0,
        errno::EINVAL
    );
    assert_eq!(
        s.call(t::STORAGE_REPORT_DISK_USAGE, &[0; 15]).0,
        errno::EINVAL
    );
    assert_eq!(s.call(t::STORAGE_SYNC_REPORT, &[0; 19]).0, errno::EINVAL);
    assert_eq!(s.call(t::STORAGE_CHANGE_STATUS, &[42]).0, errno::EINVAL);
    // IP change reports: wrong length; a new IP that is not the sender's;
    // the same IP twice; a server nobody knows. The sender stays joined.
    let ip_change = |old: &str, new: &str| {
        let mut b = group16("group1");
        for ip in [old, new] {
            let mut f = ip.as_bytes().to_vec();
            f.resize(46, 0);
            b.extend_from_slice(&f);
        }
        b
    };
    assert_eq!(
        s.call(t::STORAGE_REPORT_IP_CHANGED, &[0; 50]).0,
        errno::EINVAL
    );
    assert_eq!(
        s.call(
            t::STORAGE_REPORT_IP_CHANGED,
            &ip_change("127.0.0.11", "10.0.0.1")
        )
        .0,
        errno::EINVAL
    );
    assert_eq!(
        s.call(
            t::STORAGE_REPORT_IP_CHANGED,
            &ip_change("127.0.0.11", "127.0.0.11")
        )
        .0,
        errno::EINVAL
    );
    // Storage ids are off: no table, and the paging request must be whole.
    assert_eq!(
        s.call(t::STORAGE_FETCH_STORAGE_IDS, &[0, 0, 0, 0, 0]).0,
        errno::EOPNOTSUPP
    );
    assert_eq!(
        s.call(t::STORAGE_FETCH_STORAGE_IDS, &[0, 0, 0]).0,
        errno::EINVAL
    );
    // GET_GROUP_NAME: too short, too long, not text, nobody there.
    assert_eq!(s.call(t::STORAGE_GET_GROUP_NAME, &[0; 3]).0, errno::EINVAL);
    assert_eq!(
        s.call(t::STORAGE_GET_GROUP_NAME, &[b'1'; 60]).0,
        errno::EINVAL
    );
    assert_eq!(
        s.call(t::STORAGE_GET_GROUP_NAME, &[0xff, 0xfe, 0, 0, 0x59, 0xd8])
            .0,
        errno::EINVAL
    );
    let mut nobody = b"127.0.0.99".to_vec();
    nobody.extend_from_slice(&23000u32.to_be_bytes());
    assert_eq!(s.call(t::STORAGE_GET_GROUP_NAME, &nobody).0, errno::ENOENT);
    // The session still works.
    assert_eq!(s.beat().flags() & !4, 0);
    // A join with a port that differs from the group's.
    let e = SimStorage::join_with(tr.addr, [127, 0, 0, 12], "group1", 23001, 1, false, 1).err();
    assert_eq!(e, Some(errno::EINVAL));
    still_serves(tr.addr);
}

#[test]
fn bad_lengths_and_stalls_close_the_connection() {
    let (_d, tr, _s) = setup();
    // pkg_len -1: closed at once, no reply.
    let mut w = client(tr.addr);
    let mut h = (-1i64).to_be_bytes().to_vec();
    h.extend_from_slice(&[t::QUERY_STORE_WITHOUT_GROUP_ONE, 0]);
    w.send_raw(&h).unwrap();
    let t0 = Instant::now();
    assert!(w.closed_by_peer(Duration::from_secs(1)));
    assert!(t0.elapsed() < Duration::from_millis(900));
    // pkg_len 1 GiB: closed at once, no reply.
    let mut w = client(tr.addr);
    w.send_raw(&Header::new(t::SERVER_LIST_ALL_GROUPS, 0, 1 << 30).encode())
        .unwrap();
    assert!(w.closed_by_peer(Duration::from_secs(1)));
    // Half a header, then silence: closed after network_timeout (2 s).
    let mut w = client(tr.addr);
    w.send_raw(&[0, 0, 0, 0, 0]).unwrap();
    let t0 = Instant::now();
    assert!(
        !w.closed_by_peer(Duration::from_millis(800)),
        "not before the timeout"
    );
    assert!(w.closed_by_peer(Duration::from_secs(4)));
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    // A body announced as 16 bytes, 5 sent, then half-close: closed, no reply.
    let mut w = client(tr.addr);
    w.send_raw(&Header::new(t::QUERY_STORE_WITH_GROUP_ONE, 0, 16).encode())
        .unwrap();
    w.send_raw(b"group").unwrap();
    w.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(w.closed_by_peer(Duration::from_secs(4)));
    // QUIT: closed, no reply.
    let mut w = client(tr.addr);
    w.send(cmd::QUIT, &[]).unwrap();
    assert!(w.closed_by_peer(Duration::from_secs(2)));
    still_serves(tr.addr);
    // Each refusal left a line in the tracker's log.
    let logged = fdfs_testkit::wait_until(Duration::from_secs(3), || {
        let log = std::fs::read_to_string(tr.log_file()).unwrap_or_default();
        log.contains("negative body length")
            && log.contains("exceeds the limit")
            && log.contains("no data for")
    });
    assert!(
        logged,
        "log:\n{}",
        std::fs::read_to_string(tr.log_file()).unwrap_or_default()
    );
}

#[test]
fn random_bytes_get_an_error_or_a_close() {
    let (_d, tr, _s) = setup();
    // Deterministic pseudo-random junk (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..20 {
        let mut junk = Vec::new();
        for _ in 0..(10 + round * 7) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk.push(x as u8);
        }
        let mut w = client(tr.addr);
        w.send_raw(&junk).unwrap();
        let _ = w.stream.shutdown(std::net::Shutdown::Write);
        // Either an error reply (status != 0 or a reply to something that
        // happened to parse) followed by a close, or a close at once.
        let mut buf = Vec::new();
        use std::io::Read;
        w.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = w.stream.read_to_end(&mut buf);
        assert!(
            r.is_ok()
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
        );
        if buf.len() >= 10 {
            assert_eq!(buf[8], cmd::RESP, "anything sent back is a response header");
        }
    }
    still_serves(tr.addr);
    // The joined storage's session is unaffected.
    assert_eq!(status_of(tr.addr, "group1", "127.0.0.11"), Some(7));
}

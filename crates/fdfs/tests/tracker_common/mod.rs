//! Shared by the tracker_*.rs integration tests: simulated storage servers
//! that speak the tracker protocol with fdfs-proto, and small client calls.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use fdfs_proto::cmd::tracker as t;
use fdfs_proto::file_id::{ext_part, NameInfo};
use fdfs_proto::server::{ChangeFlags, DiskUsage, JoinReq, JoinResp, SyncReport};
use fdfs_proto::tracker::{FetchResp, GroupStat, StatBuff, StorageStat, StoreAllResp, StoreResp};
use fdfs_proto::{GroupName, LogicName, SourceServer};
use fdfs_testkit::{TestDir, TrackerProc, Wire};

pub const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

pub fn tracker(dir: &TestDir, extra: &[&str]) -> TrackerProc {
    TrackerProc::start(BIN, dir.path(), Ipv4Addr::new(127, 0, 0, 1), extra)
}

pub fn group16(g: &str) -> Vec<u8> {
    let mut b = g.as_bytes().to_vec();
    b.resize(16, 0);
    b
}

/// A group name (16 bytes) followed by `rest` (an id, a file name...).
pub fn group_and(g: &str, rest: &[u8]) -> Vec<u8> {
    let mut b = group16(g);
    b.extend_from_slice(rest);
    b
}

/// A storage server as the tracker sees it: one long-lived connection
/// from its own loopback address.
pub struct SimStorage {
    pub ip: Ipv4Addr,
    pub wire: Wire,
}

impl SimStorage {
    /// Connects from `ip` and sends JOIN.
    pub fn join(
        tracker: SocketAddr,
        ip: [u8; 4],
        group: &str,
        paths: u32,
        init_flag: bool,
    ) -> (SimStorage, JoinResp) {
        Self::join_with(tracker, ip, group, 23000, paths, init_flag, 10).unwrap()
    }

    pub fn join_with(
        tracker: SocketAddr,
        ip: [u8; 4],
        group: &str,
        port: u16,
        paths: u32,
        init_flag: bool,
        priority: i64,
    ) -> Result<(SimStorage, JoinResp), u8> {
        let ip = Ipv4Addr::from(ip);
        let wire = Wire::connect_from(ip, tracker).expect("connect to the tracker");
        let mut s = SimStorage { ip, wire };
        let req = JoinReq {
            group: GroupName::new(group).unwrap(),
            storage_port: port,
            store_path_count: paths,
            subdir_count_per_path: 256,
            upload_priority: priority,
            join_time: 1_795_000_000,
            up_time: 1_795_000_100,
            version: "6.16.1".into(),
            init_flag,
            status: 0,
            storage_id: String::new(),
            current_tracker_ip: tracker.ip().to_string(),
            trackers: vec![tracker.to_string()],
        };
        let mut body = Vec::new();
        req.encode(&mut body);
        let (st, b) = s.wire.call(t::STORAGE_JOIN, &body).unwrap();
        if st != 0 {
            return Err(st);
        }
        Ok((s, JoinResp::decode(&b).unwrap()))
    }

    pub fn call(&mut self, cmd: u8, body: &[u8]) -> (u8, Vec<u8>) {
        self.wire.call(cmd, body).unwrap()
    }

    fn flags(&mut self, cmd: u8, body: &[u8]) -> ChangeFlags {
        let (st, b) = self.call(cmd, body);
        assert_eq!(st, 0, "cmd {cmd} refused");
        assert!(
            !b.is_empty(),
            "change flags reply always has the flags byte"
        );
        ChangeFlags::decode(&b).unwrap()
    }

    pub fn beat(&mut self) -> ChangeFlags {
        self.flags(t::STORAGE_BEAT, &[])
    }

    pub fn beat_stat(&mut self, stat: &StatBuff) -> ChangeFlags {
        let mut b = Vec::new();
        stat.encode(&mut b);
        self.flags(t::STORAGE_BEAT, &b)
    }

    /// REPORT_DISK_USAGE: (total, free) MB per path.
    pub fn disk(&mut self, paths: &[(i64, i64)]) -> ChangeFlags {
        let mut b = Vec::new();
        DiskUsage {
            paths: paths.to_vec(),
        }
        .encode(&mut b);
        self.flags(t::STORAGE_REPORT_DISK_USAGE, &b)
    }

    /// SYNC_REPORT: (peer id, last synced timestamp).
    pub fn sync_report(&mut self, entries: &[(&str, u32)]) -> ChangeFlags {
        let mut b = Vec::new();
        SyncReport {
            entries: entries.iter().map(|(p, t)| (p.to_string(), *t)).collect(),
        }
        .encode(&mut b);
        self.flags(t::STORAGE_SYNC_REPORT, &b)
    }

    /// Joins (init done), reports `free` MB of 10000 per path, beats: ACTIVE.
    pub fn active(tracker: SocketAddr, ip: [u8; 4], group: &str, free: &[i64]) -> SimStorage {
        let (mut s, r) = Self::join(tracker, ip, group, free.len() as u32, false);
        assert_eq!(r.status, 6, "joined ONLINE");
        let paths: Vec<(i64, i64)> = free.iter().map(|f| (10000, *f)).collect();
        s.disk(&paths);
        s.beat();
        s
    }

    pub fn quit(mut self) {
        let _ = self.wire.send(fdfs_proto::cmd::QUIT, &[]);
        assert!(self.wire.closed_by_peer(Duration::from_secs(3)));
    }
}

/// A client connection.
pub fn client(addr: SocketAddr) -> Wire {
    Wire::connect(addr).expect("connect to the tracker")
}

/// One request on a new connection: the reply body, or the status.
pub fn call_ok(addr: SocketAddr, cmd: u8, body: &[u8]) -> Result<Vec<u8>, u8> {
    match client(addr).call(cmd, body).unwrap() {
        (0, b) => Ok(b),
        (st, _) => Err(st),
    }
}

/// The status of one request on a new connection.
pub fn status(addr: SocketAddr, cmd: u8, body: &[u8]) -> u8 {
    client(addr).call(cmd, body).unwrap().0
}

/// 101 / 104 (`group`): where to upload one file.
pub fn store_one(addr: SocketAddr, group: Option<&str>) -> Result<StoreResp, u8> {
    let b = match group {
        Some(g) => call_ok(addr, t::QUERY_STORE_WITH_GROUP_ONE, &group16(g))?,
        None => call_ok(addr, t::QUERY_STORE_WITHOUT_GROUP_ONE, &[])?,
    };
    assert_eq!(b.len(), 40, "store reply with 15-byte IP");
    Ok(StoreResp::decode(&b).unwrap())
}

/// 106 / 107 (`group`): every writable server.
pub fn store_all(addr: SocketAddr, group: Option<&str>) -> Result<StoreAllResp, u8> {
    let b = match group {
        Some(g) => call_ok(addr, t::QUERY_STORE_WITH_GROUP_ALL, &group16(g))?,
        None => call_ok(addr, t::QUERY_STORE_WITHOUT_GROUP_ALL, &[])?,
    };
    Ok(StoreAllResp::decode(&b).unwrap())
}

/// A logic file name created by `src` at `ts`.
pub fn file_name(src: [u8; 4], ts: u32, appender: bool) -> LogicName {
    let info = NameInfo {
        source: SourceServer::Ip(Ipv4Addr::from(src)),
        timestamp: ts,
        size_field: NameInfo::size_field_for(21, appender, 4242),
        crc32: 0xe03d3171,
    };
    LogicName::build(0, 7, 0xA7, info, None, &ext_part("txt", 119).unwrap())
}

/// 102 / 103 / 105 for `name` in `group`: the server IPs, or the status.
pub fn fetch(addr: SocketAddr, cmd: u8, group: &str, name: &LogicName) -> Result<Vec<String>, u8> {
    let b = call_ok(addr, cmd, &group_and(group, name.to_string().as_bytes()))?;
    let r = FetchResp::decode(&b).unwrap();
    assert_eq!(r.group.as_str(), group);
    Ok(r.servers.into_iter().map(|s| s.ip).collect())
}

pub fn list_groups(addr: SocketAddr) -> Vec<GroupStat> {
    let (st, b) = client(addr).call(t::SERVER_LIST_ALL_GROUPS, &[]).unwrap();
    assert_eq!(st, 0);
    assert_eq!(b.len() % 113, 0);
    GroupStat::decode_list(&b).unwrap()
}

pub fn list_storages(addr: SocketAddr, group: &str) -> Result<Vec<StorageStat>, u8> {
    let b = call_ok(addr, t::SERVER_LIST_STORAGE, &group16(group))?;
    assert_eq!(b.len() % 487, 0);
    Ok(StorageStat::decode_list(&b).unwrap())
}

pub fn status_of(addr: SocketAddr, group: &str, id: &str) -> Option<u8> {
    list_storages(addr, group)
        .ok()?
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| s.status)
}

pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

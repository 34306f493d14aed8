//! Storage-to-tracker and tracker-to-tracker messages (PROTOCOL.md §6.1–6.3).

use crate::codec::{put_fixed, put_i64, put_u32, put_u8, Reader};
use crate::common::*;
use crate::error::DecodeError;
use crate::file_id::GroupName;

/// Storage status values (PROTOCOL.md §7).
pub mod status {
    pub const INIT: u8 = 0;
    pub const WAIT_SYNC: u8 = 1;
    pub const SYNCING: u8 = 2;
    pub const IP_CHANGED: u8 = 3;
    pub const DELETED: u8 = 4;
    pub const OFFLINE: u8 = 5;
    pub const ONLINE: u8 = 6;
    pub const ACTIVE: u8 = 7;
    pub const RECOVERY: u8 = 9;
    pub const NONE: u8 = 99;

    pub fn name(s: u8) -> &'static str {
        match s {
            INIT => "INIT",
            WAIT_SYNC => "WAIT_SYNC",
            SYNCING => "SYNCING",
            IP_CHANGED => "IP_CHANGED",
            DELETED => "DELETED",
            OFFLINE => "OFFLINE",
            ONLINE => "ONLINE",
            ACTIVE => "ACTIVE",
            RECOVERY => "RECOVERY",
            NONE => "NONE",
            _ => "UNKNOWN",
        }
    }
}

/// StorageBrief (67 bytes): status, port, id, ip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageBrief {
    pub status: u8,
    pub port: u32,
    pub id: String,
    pub ip: String,
}

impl StorageBrief {
    pub const LEN: usize = 1 + 4 + ID_LEN + IPV6_SIZE;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.status);
        put_u32(out, self.port);
        put_fixed(out, &self.id, ID_LEN);
        put_fixed(out, &self.ip, IPV6_SIZE);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StorageBrief {
            status: r.u8()?,
            port: r.u32()?,
            id: r.fixed_str("id", ID_LEN)?,
            ip: r.fixed_str("ip", IPV6_SIZE)?,
        })
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("storage brief", b.len(), Self::LEN));
        }
        Self::read(&mut Reader::new("storage brief", b))
    }

    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if b.len() % Self::LEN != 0 {
            return Err(DecodeError::len(
                "storage briefs",
                b.len(),
                "a multiple of 67",
            ));
        }
        let mut r = Reader::new("storage briefs", b);
        (0..b.len() / Self::LEN)
            .map(|_| Self::read(&mut r))
            .collect()
    }
}

/// Sync source assignment (24 bytes): source id and until-timestamp.
/// Body of SYNC_DEST_REQ replies, SYNC_NOTIFY, SYNC_SRC_REQ replies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncInfo {
    pub src_id: String,
    pub until_timestamp: i64,
}

impl SyncInfo {
    pub const LEN: usize = ID_LEN + 8;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed(out, &self.src_id, ID_LEN);
        put_i64(out, self.until_timestamp);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("sync info", b.len(), Self::LEN));
        }
        let mut r = Reader::new("sync info", b);
        Ok(SyncInfo {
            src_id: r.fixed_str("src id", ID_LEN)?,
            until_timestamp: r.i64()?,
        })
    }

    /// An empty body means "no source"; otherwise 24 bytes.
    pub fn decode_optional(b: &[u8]) -> Result<Option<Self>, DecodeError> {
        if b.is_empty() {
            return Ok(None);
        }
        Self::decode(b).map(Some)
    }
}

/// Change-flag bits of beat/report replies.
pub mod change_flag {
    pub const LEADER: u8 = 1;
    pub const TRUNK_SERVER: u8 = 2;
    pub const GROUP_SERVERS: u8 = 4;
}

/// Reply to BEAT, REPORT_DISK_USAGE and SYNC_REPORT: flags and the briefs
/// they announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeFlags {
    pub leader: Option<StorageBrief>,
    pub trunk_server: Option<StorageBrief>,
    /// Every server of the group, the requester included.
    pub group_servers: Option<Vec<StorageBrief>>,
}

impl ChangeFlags {
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if self.leader.is_some() {
            f |= change_flag::LEADER;
        }
        if self.trunk_server.is_some() {
            f |= change_flag::TRUNK_SERVER;
        }
        if self.group_servers.is_some() {
            f |= change_flag::GROUP_SERVERS;
        }
        f
    }

    /// Always at least the flags byte (golden capture: never empty).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.flags());
        for b in self.leader.iter().chain(self.trunk_server.iter()) {
            b.encode(out);
        }
        for b in self.group_servers.iter().flatten() {
            b.encode(out);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.is_empty() {
            return Ok(ChangeFlags::default());
        }
        let mut r = Reader::new("change flags", b);
        let flags = r.u8()?;
        if flags & !(change_flag::LEADER | change_flag::TRUNK_SERVER | change_flag::GROUP_SERVERS)
            != 0
        {
            return Err(DecodeError::field(
                "change flags",
                format!("unknown bits {flags:#x}"),
            ));
        }
        let mut out = ChangeFlags::default();
        if flags & change_flag::LEADER != 0 {
            out.leader = Some(StorageBrief::read(&mut r)?);
        }
        if flags & change_flag::TRUNK_SERVER != 0 {
            out.trunk_server = Some(StorageBrief::read(&mut r)?);
        }
        if flags & change_flag::GROUP_SERVERS != 0 {
            out.group_servers = Some(StorageBrief::decode_list(r.rest())?);
        }
        r.finish()?;
        Ok(out)
    }
}

/// STORAGE_JOIN (81): 145 fixed bytes and one `host:port\n` line per tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    pub group: GroupName,
    pub storage_port: u16,
    pub store_path_count: u32,
    pub subdir_count_per_path: u32,
    pub upload_priority: i64,
    pub join_time: i64,
    pub up_time: i64,
    pub version: String,
    /// True while the initial full sync is not done.
    pub init_flag: bool,
    /// Last status this storage saw for itself (signed; -1 = trackers disagree).
    pub status: i8,
    pub storage_id: String,
    pub current_tracker_ip: String,
    pub trackers: Vec<String>,
}

impl JoinReq {
    pub const FIXED_LEN: usize = 145;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN + 1);
        put_i64(out, self.storage_port as i64);
        put_i64(out, self.store_path_count as i64);
        put_i64(out, self.subdir_count_per_path as i64);
        put_i64(out, self.upload_priority);
        put_i64(out, self.join_time);
        put_i64(out, self.up_time);
        put_fixed(out, &self.version, VERSION_LEN);
        put_u8(out, self.init_flag as u8);
        put_u8(out, self.status as u8);
        put_fixed(out, &self.storage_id, ID_LEN);
        put_fixed(out, &self.current_tracker_ip, IPV6_SIZE);
        put_i64(out, self.trackers.len() as i64);
        for t in &self.trackers {
            out.extend_from_slice(t.as_bytes());
            out.push(b'\n');
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < Self::FIXED_LEN {
            return Err(DecodeError::len("join request", b.len(), "at least 145"));
        }
        let mut r = Reader::new("join request", b);
        let group = read_group(&mut r, GROUP_LEN + 1, false)?;
        let storage_port = port_from("storage port", r.i64()?)?;
        let range = |field: &'static str, v: i64| -> Result<u32, DecodeError> {
            if !(1..=256).contains(&v) {
                return Err(DecodeError::field(field, format!("{v} is outside 1..256")));
            }
            Ok(v as u32)
        };
        let store_path_count = range("store path count", r.i64()?)?;
        let subdir_count_per_path = range("subdir count", r.i64()?)?;
        let upload_priority = r.i64()?;
        let join_time = r.i64()?;
        let up_time = r.i64()?;
        let version = r.fixed_str("version", VERSION_LEN)?;
        let init_flag = r.u8()? != 0;
        let status = r.u8()? as i8;
        let storage_id = r.fixed_str("storage id", ID_LEN)?;
        let current_tracker_ip = r.fixed_str("tracker ip", IPV6_SIZE)?;
        let count = r.i64()?;
        if !(0..=16).contains(&count) {
            return Err(DecodeError::field(
                "tracker count",
                format!("{count} is outside 0..16"),
            ));
        }
        let text = r.text_rest("tracker list")?;
        let trackers: Vec<String> = text.lines().map(str::to_owned).collect();
        if trackers.len() != count as usize {
            return Err(DecodeError::field(
                "tracker list",
                format!("{} lines, count says {count}", trackers.len()),
            ));
        }
        Ok(JoinReq {
            group,
            storage_port,
            store_path_count,
            subdir_count_per_path,
            upload_priority,
            join_time,
            up_time,
            version,
            init_flag,
            status,
            storage_id,
            current_tracker_ip,
            trackers,
        })
    }
}

/// Reply to JOIN (17 bytes): the storage's status and its sync source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResp {
    pub status: u8,
    pub src_id: String,
}

impl JoinResp {
    pub const LEN: usize = 1 + ID_LEN;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.status);
        put_fixed(out, &self.src_id, ID_LEN);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("join reply", b.len(), Self::LEN));
        }
        let mut r = Reader::new("join reply", b);
        Ok(JoinResp {
            status: r.u8()?,
            src_id: r.fixed_str("src id", ID_LEN)?,
        })
    }
}

/// REPORT_DISK_USAGE (84): total and free MB of each store path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskUsage {
    pub paths: Vec<(i64, i64)>,
}

impl DiskUsage {
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (t, f) in &self.paths {
            put_i64(out, *t);
            put_i64(out, *f);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.is_empty() || b.len() % 16 != 0 || b.len() > 16 * 256 {
            return Err(DecodeError::len("disk usage", b.len(), "N*16, N in 1..256"));
        }
        let mut r = Reader::new("disk usage", b);
        let paths = (0..b.len() / 16)
            .map(|_| {
                let t = r.i64()?;
                let f = r.i64()?;
                if t < 0 || f < 0 {
                    return Err(DecodeError::field("disk usage", "negative size"));
                }
                Ok((t, f))
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(DiskUsage { paths })
    }
}

/// SYNC_REPORT (89): for each peer, the source timestamp of the last record
/// received from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    pub entries: Vec<(String, u32)>,
}

impl SyncReport {
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (id, ts) in &self.entries {
            put_fixed(out, id, ID_LEN);
            put_u32(out, *ts);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() % 20 != 0 {
            return Err(DecodeError::len("sync report", b.len(), "a multiple of 20"));
        }
        let mut r = Reader::new("sync report", b);
        let entries = (0..b.len() / 20)
            .map(|_| Ok((r.fixed_str("peer id", ID_LEN)?, r.u32()?)))
            .collect::<Result<_, DecodeError>>()?;
        Ok(SyncReport { entries })
    }
}

/// REPORT_STATUS (76): "peer X now has status S".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportStatusReq {
    pub group: GroupName,
    pub brief: StorageBrief,
}

impl ReportStatusReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        self.brief.encode(out);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != GROUP_LEN + StorageBrief::LEN {
            return Err(DecodeError::len(
                "report status",
                b.len(),
                GROUP_LEN + StorageBrief::LEN,
            ));
        }
        let mut r = Reader::new("report status", b);
        Ok(ReportStatusReq {
            group: read_group(&mut r, GROUP_LEN, false)?,
            brief: StorageBrief::read(&mut r)?,
        })
    }
}

/// REPORT_IP_CHANGED (78): a storage tells a tracker, before it joins, that
/// its address moved: group (16), old IP, new IP (46 bytes each; 16 each
/// from V5-era storages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpChangedReq {
    pub group: GroupName,
    pub old_ip: String,
    pub new_ip: String,
}

impl IpChangedReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        put_fixed(out, &self.old_ip, IPV6_SIZE);
        put_fixed(out, &self.new_ip, IPV6_SIZE);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let ip_len = match b.len() {
            n if n == GROUP_LEN + 2 * IPV6_SIZE => IPV6_SIZE,
            n if n == GROUP_LEN + 2 * IPV4_SIZE => IPV4_SIZE,
            n => return Err(DecodeError::len("ip changed request", n, "48 or 108")),
        };
        let mut r = Reader::new("ip changed request", b);
        Ok(IpChangedReq {
            group: read_group(&mut r, GROUP_LEN, true)?,
            old_ip: r.fixed_str("old ip", ip_len)?,
            new_ip: r.fixed_str("new ip", ip_len)?,
        })
    }
}

/// GET_MY_IP (60): group (17) and port (u32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetMyIpReq {
    pub group: GroupName,
    pub port: u32,
}

impl GetMyIpReq {
    pub const LEN: usize = GROUP_LEN + 1 + 4;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN + 1);
        put_u32(out, self.port);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("get my ip", b.len(), Self::LEN));
        }
        let mut r = Reader::new("get my ip", b);
        Ok(GetMyIpReq {
            group: read_group(&mut r, GROUP_LEN + 1, false)?,
            port: r.u32()?,
        })
    }
}

/// SYNC_SRC_REQ (86) and CHANGELOG_REQ (77, when not joined): group and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIdReq {
    pub group: GroupName,
    pub storage_id: String,
}

impl GroupIdReq {
    pub const LEN: usize = GROUP_LEN + ID_LEN;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        put_fixed(out, &self.storage_id, ID_LEN);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("group/id request", b.len(), Self::LEN));
        }
        let mut r = Reader::new("group/id request", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let storage_id = r.fixed_str("storage id", ID_LEN)?;
        check_id("storage id", &storage_id)?;
        Ok(GroupIdReq { group, storage_id })
    }
}

/// Reply to tracker GET_STATUS (64): 17 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStatus {
    pub if_leader: bool,
    pub running_time: i64,
    pub restart_interval: i64,
}

impl TrackerStatus {
    pub const LEN: usize = 17;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.if_leader as u8);
        put_i64(out, self.running_time);
        put_i64(out, self.restart_interval);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("tracker status", b.len(), Self::LEN));
        }
        let mut r = Reader::new("tracker status", b);
        Ok(TrackerStatus {
            if_leader: r.u8()? != 0,
            running_time: r.i64()?,
            restart_interval: r.i64()?,
        })
    }
}

/// TRACKER_JOIN_LEADER (58): 24 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinLeaderReq {
    pub up_time: i64,
    pub version: String,
    pub server_port: i64,
}

impl JoinLeaderReq {
    pub const LEN: usize = 24;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_i64(out, self.up_time);
        put_fixed(out, &self.version, VERSION_LEN);
        put_i64(out, self.server_port);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("join leader", b.len(), Self::LEN));
        }
        let mut r = Reader::new("join leader", b);
        Ok(JoinLeaderReq {
            up_time: r.i64()?,
            version: r.fixed_str("version", VERSION_LEN)?,
            server_port: r.i64()?,
        })
    }
}

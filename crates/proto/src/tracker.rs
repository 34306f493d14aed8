//! Tracker commands used by clients (PROTOCOL.md §3).

use crate::codec::{put_fixed, put_i64, put_u32, put_u8, Reader};
use crate::common::*;
use crate::error::DecodeError;
use crate::file_id::{GroupName, LogicName};

/// A body of exactly one 16-byte group name: query store with group
/// (104/107), list one group (90), delete group (108).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReq {
    pub group: GroupName,
}

impl GroupReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != GROUP_LEN {
            return Err(DecodeError::len("group request", b.len(), GROUP_LEN));
        }
        let mut r = Reader::new("group request", b);
        Ok(GroupReq {
            group: read_group(&mut r, GROUP_LEN, true)?,
        })
    }
}

/// Reply to 101/104: where to upload one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreResp {
    pub group: GroupName,
    pub server: ServerAddr,
    pub store_path_index: u8,
    pub ip_size: IpSize,
}

impl StoreResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        put_fixed(out, &self.server.ip, self.ip_size.rip() - 1);
        put_i64(out, self.server.port as i64);
        put_u8(out, self.store_path_index);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let ip_size = match b.len() {
            40 => IpSize::V4,
            70 => IpSize::V6,
            n => return Err(DecodeError::len("store reply", n, "40 or 70")),
        };
        let mut r = Reader::new("store reply", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let ip = r.fixed_str("ip", ip_size.rip() - 1)?;
        let port = port_from("port", r.i64()?)?;
        Ok(StoreResp {
            group,
            server: ServerAddr { ip, port },
            store_path_index: r.u8()?,
            ip_size,
        })
    }
}

/// Reply to 106/107: every writable server of the chosen group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAllResp {
    pub group: GroupName,
    pub servers: Vec<ServerAddr>,
    pub store_path_index: u8,
    pub ip_size: IpSize,
}

impl StoreAllResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        for s in &self.servers {
            put_fixed(out, &s.ip, self.ip_size.rip() - 1);
            put_i64(out, s.port as i64);
        }
        put_u8(out, self.store_path_index);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let n = b.len().saturating_sub(GROUP_LEN + 1);
        let ip_size = if b.len() > GROUP_LEN && n % (IPV4_SIZE - 1 + 8) == 0 {
            IpSize::V4
        } else if b.len() > GROUP_LEN && n % (IPV6_SIZE - 1 + 8) == 0 {
            IpSize::V6
        } else {
            return Err(DecodeError::len(
                "store-all reply",
                b.len(),
                "16 + N*23 + 1",
            ));
        };
        let per = ip_size.rip() - 1 + 8;
        let mut r = Reader::new("store-all reply", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let mut servers = Vec::with_capacity(n / per);
        for _ in 0..n / per {
            let ip = r.fixed_str("ip", ip_size.rip() - 1)?;
            let port = port_from("port", r.i64()?)?;
            servers.push(ServerAddr { ip, port });
        }
        Ok(StoreAllResp {
            group,
            servers,
            store_path_index: r.u8()?,
            ip_size,
        })
    }
}

/// Request of 102/103/105 and of several storage commands: group and
/// logic filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReq {
    pub group: GroupName,
    pub filename: LogicName,
}

impl FileReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.filename.to_string().as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < GROUP_LEN + 22 || b.len() >= GROUP_LEN + 128 {
            return Err(DecodeError::len("file request", b.len(), "38..143"));
        }
        let mut r = Reader::new("file request", b);
        let group = read_group(&mut r, GROUP_LEN, true)?;
        let name = r.text_rest("filename")?;
        Ok(FileReq {
            group,
            filename: logic_name(&name)?,
        })
    }
}

/// Reply to 102/103 (one server) and 105 (all that hold the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResp {
    pub group: GroupName,
    pub servers: Vec<ServerAddr>,
    pub ip_size: IpSize,
}

impl FetchResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Every server is `ip + port` (23 bytes with IPv4), as V6.16 sends.
        put_group(out, &self.group, GROUP_LEN);
        for s in &self.servers {
            put_fixed(out, &s.ip, self.ip_size.rip() - 1);
            put_i64(out, s.port as i64);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let n = b.len().saturating_sub(GROUP_LEN);
        let ip_size = if b.len() > GROUP_LEN && n % (IPV4_SIZE - 1 + 8) == 0 {
            IpSize::V4
        } else if b.len() > GROUP_LEN && n % (IPV6_SIZE - 1 + 8) == 0 {
            IpSize::V6
        } else {
            return Err(DecodeError::len("fetch reply", b.len(), "16 + N*23"));
        };
        let w = ip_size.rip() - 1;
        let mut r = Reader::new("fetch reply", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let mut servers = Vec::with_capacity(n / (w + 8));
        while r.remaining() > 0 {
            let ip = r.fixed_str("ip", w)?;
            let port = port_from("port", r.i64()?)?;
            servers.push(ServerAddr { ip, port });
        }
        Ok(FetchResp {
            group,
            servers,
            ip_size,
        })
    }
}

/// One group in the list-groups reply (V6.13.1+ layout, 113 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStat {
    pub group_name: String,
    pub total_mb: i64,
    pub free_mb: i64,
    pub reserved_mb: i64,
    pub trunk_free_mb: i64,
    pub storage_count: i64,
    pub storage_port: i64,
    pub readable_server_count: i64,
    pub writable_server_count: i64,
    pub current_write_server: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_trunk_file_id: i64,
}

impl GroupStat {
    pub const LEN: usize = 113;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed(out, &self.group_name, GROUP_LEN + 1);
        for v in [
            self.total_mb,
            self.free_mb,
            self.reserved_mb,
            self.trunk_free_mb,
            self.storage_count,
            self.storage_port,
            self.readable_server_count,
            self.writable_server_count,
            self.current_write_server,
            self.store_path_count,
            self.subdir_count_per_path,
            self.current_trunk_file_id,
        ] {
            put_i64(out, v);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let group_name = r.fixed_str("group name", GROUP_LEN + 1)?;
        let mut v = [0i64; 12];
        for x in v.iter_mut() {
            *x = r.i64()?;
        }
        Ok(GroupStat {
            group_name,
            total_mb: v[0],
            free_mb: v[1],
            reserved_mb: v[2],
            trunk_free_mb: v[3],
            storage_count: v[4],
            storage_port: v[5],
            readable_server_count: v[6],
            writable_server_count: v[7],
            current_write_server: v[8],
            store_path_count: v[9],
            subdir_count_per_path: v[10],
            current_trunk_file_id: v[11],
        })
    }

    /// Decodes the reply of 91 (N records) or 90 (one).
    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if b.len() % Self::LEN != 0 {
            return Err(DecodeError::len(
                "group stats",
                b.len(),
                "a multiple of 113",
            ));
        }
        let mut r = Reader::new("group stats", b);
        (0..b.len() / Self::LEN)
            .map(|_| Self::read(&mut r))
            .collect()
    }
}

/// Request of 92: a group and optionally one storage ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStorageReq {
    pub group: GroupName,
    pub storage_id: Option<String>,
}

impl ListStorageReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        if let Some(id) = &self.storage_id {
            out.extend_from_slice(id.as_bytes());
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < GROUP_LEN || b.len() >= GROUP_LEN + ID_LEN {
            return Err(DecodeError::len("list storage request", b.len(), "16..31"));
        }
        let mut r = Reader::new("list storage request", b);
        let group = read_group(&mut r, GROUP_LEN, true)?;
        let id = r.text_rest("storage id")?;
        let storage_id = if id.is_empty() {
            None
        } else {
            check_id("storage id", &id)?;
            Some(id)
        };
        Ok(ListStorageReq { group, storage_id })
    }
}

/// Request of 93 (delete storage): a group and a storage ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteStorageReq {
    pub group: GroupName,
    pub storage_id: String,
}

impl DeleteStorageReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.storage_id.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let req = ListStorageReq::decode(b)?;
        let storage_id = req
            .storage_id
            .ok_or_else(|| DecodeError::field("storage id", "missing"))?;
        Ok(DeleteStorageReq {
            group: req.group,
            storage_id,
        })
    }
}

/// Counters a storage reports in its beat and the tracker lists (348 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatBuff {
    pub connection_alloc_count: u32,
    pub connection_current_count: u32,
    pub connection_max_count: u32,
    /// The 42 i64 counters in wire order; see [`StatBuff::NAMES`].
    pub counters: [i64; 42],
}

impl Default for StatBuff {
    fn default() -> Self {
        StatBuff {
            connection_alloc_count: 0,
            connection_current_count: 0,
            connection_max_count: 0,
            counters: [0; 42],
        }
    }
}

impl StatBuff {
    pub const LEN: usize = 348;

    /// Names of the 42 counters, in wire order.
    pub const NAMES: [&'static str; 42] = [
        "total_upload_count",
        "success_upload_count",
        "total_append_count",
        "success_append_count",
        "total_modify_count",
        "success_modify_count",
        "total_truncate_count",
        "success_truncate_count",
        "total_set_meta_count",
        "success_set_meta_count",
        "total_delete_count",
        "success_delete_count",
        "total_download_count",
        "success_download_count",
        "total_get_meta_count",
        "success_get_meta_count",
        "total_create_link_count",
        "success_create_link_count",
        "total_delete_link_count",
        "success_delete_link_count",
        "total_upload_bytes",
        "success_upload_bytes",
        "total_append_bytes",
        "success_append_bytes",
        "total_modify_bytes",
        "success_modify_bytes",
        "total_download_bytes",
        "success_download_bytes",
        "total_sync_in_bytes",
        "success_sync_in_bytes",
        "total_sync_out_bytes",
        "success_sync_out_bytes",
        "total_file_open_count",
        "success_file_open_count",
        "total_file_read_count",
        "success_file_read_count",
        "total_file_write_count",
        "success_file_write_count",
        "last_source_update",
        "last_sync_update",
        "last_synced_timestamp",
        "last_heart_beat_time",
    ];

    /// Index of a counter by name.
    pub fn index(name: &str) -> Option<usize> {
        Self::NAMES.iter().position(|n| *n == name)
    }

    pub fn get(&self, name: &str) -> i64 {
        Self::index(name).map(|i| self.counters[i]).unwrap_or(0)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.connection_alloc_count);
        put_u32(out, self.connection_current_count);
        put_u32(out, self.connection_max_count);
        for c in self.counters {
            put_i64(out, c);
        }
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut s = StatBuff {
            connection_alloc_count: r.u32()?,
            connection_current_count: r.u32()?,
            connection_max_count: r.u32()?,
            counters: [0; 42],
        };
        for c in s.counters.iter_mut() {
            *c = r.i64()?;
        }
        Ok(s)
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != Self::LEN {
            return Err(DecodeError::len("stat buffer", b.len(), Self::LEN));
        }
        Self::read(&mut Reader::new("stat buffer", b))
    }
}

/// One storage in the list-storages reply (V6.13.1+: 487 bytes, 517 with
/// 46-byte IPs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStat {
    pub status: u8,
    pub rw_mode: u8,
    pub id: String,
    pub ip_addr: String,
    pub src_id: String,
    pub version: String,
    pub join_time: i64,
    pub up_time: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    pub reserved_mb: i64,
    pub upload_priority: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_write_path: i64,
    pub storage_port: i64,
    pub stat: StatBuff,
    pub if_trunk_server: bool,
    pub ip_size: IpSize,
}

impl StorageStat {
    pub fn len(ip_size: IpSize) -> usize {
        2 + ID_LEN + ip_size.rip() + ID_LEN + VERSION_LEN + 80 + StatBuff::LEN + 1
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.status);
        put_u8(out, self.rw_mode);
        put_fixed(out, &self.id, ID_LEN);
        put_fixed(out, &self.ip_addr, self.ip_size.rip());
        put_fixed(out, &self.src_id, ID_LEN);
        put_fixed(out, &self.version, VERSION_LEN);
        for v in [
            self.join_time,
            self.up_time,
            self.total_mb,
            self.free_mb,
            self.reserved_mb,
            self.upload_priority,
            self.store_path_count,
            self.subdir_count_per_path,
            self.current_write_path,
            self.storage_port,
        ] {
            put_i64(out, v);
        }
        self.stat.encode(out);
        put_u8(out, self.if_trunk_server as u8);
    }

    fn read(r: &mut Reader<'_>, ip_size: IpSize) -> Result<Self, DecodeError> {
        let status = r.u8()?;
        let rw_mode = r.u8()?;
        let id = r.fixed_str("id", ID_LEN)?;
        let ip_addr = r.fixed_str("ip", ip_size.rip())?;
        let src_id = r.fixed_str("src id", ID_LEN)?;
        let version = r.fixed_str("version", VERSION_LEN)?;
        let mut v = [0i64; 10];
        for x in v.iter_mut() {
            *x = r.i64()?;
        }
        let stat = StatBuff::read(r)?;
        let if_trunk_server = r.u8()? != 0;
        Ok(StorageStat {
            status,
            rw_mode,
            id,
            ip_addr,
            src_id,
            version,
            join_time: v[0],
            up_time: v[1],
            total_mb: v[2],
            free_mb: v[3],
            reserved_mb: v[4],
            upload_priority: v[5],
            store_path_count: v[6],
            subdir_count_per_path: v[7],
            current_write_path: v[8],
            storage_port: v[9],
            stat,
            if_trunk_server,
            ip_size,
        })
    }

    /// Decodes the reply of 92: N records of 487 (or 517) bytes.
    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        let ip_size = if b.len() % Self::len(IpSize::V4) == 0 {
            IpSize::V4
        } else if b.len() % Self::len(IpSize::V6) == 0 {
            IpSize::V6
        } else {
            return Err(DecodeError::len(
                "storage stats",
                b.len(),
                "a multiple of 487",
            ));
        };
        let mut r = Reader::new("storage stats", b);
        (0..b.len() / Self::len(ip_size))
            .map(|_| Self::read(&mut r, ip_size))
            .collect()
    }
}

/// Request of 71 (get status) and 70 (get server id): group and `ip:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAddrReq {
    pub group: GroupName,
    pub addr: String,
}

impl GroupAddrReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        out.extend_from_slice(self.addr.as_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() <= GROUP_LEN || b.len() > GROUP_LEN + IP_PORT_LEN {
            return Err(DecodeError::len("group/address request", b.len(), "17..68"));
        }
        let mut r = Reader::new("group/address request", b);
        Ok(GroupAddrReq {
            group: read_group(&mut r, GROUP_LEN, true)?,
            addr: r.text_rest("address")?,
        })
    }
}

/// An ini-style `key=value\n` text body (PARAMETER_REQ reply).
pub fn encode_params(params: &[(String, String)]) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in params {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    }
    s.into_bytes()
}

pub fn decode_params(b: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let s = std::str::from_utf8(b).map_err(|_| DecodeError::field("parameters", "not UTF-8"))?;
    Ok(s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// Request of 96 (tracker cluster stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerClusterStatReq {
    pub filter_by: u8,
    pub is_active: u8,
    pub is_leader: u8,
}

impl TrackerClusterStatReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.filter_by, self.is_active, self.is_leader]);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != 3 {
            return Err(DecodeError::len("tracker cluster stat request", b.len(), 3));
        }
        Ok(TrackerClusterStatReq {
            filter_by: b[0],
            is_active: b[1],
            is_leader: b[2],
        })
    }
}

/// One tracker in the 96 reply (90 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerInfo {
    pub host: String,
    pub is_leader: bool,
    pub is_active: bool,
    pub connections: [u32; 3],
    pub version: String,
    pub up_time: i64,
    pub last_heartbeat: i64,
}

impl TrackerInfo {
    pub const LEN: usize = 90;

    pub fn encode_list(list: &[TrackerInfo], out: &mut Vec<u8>) {
        put_u8(out, list.len().min(255) as u8);
        for t in list.iter().take(255) {
            put_fixed(out, &t.host, IP_PORT_LEN);
            put_u8(out, t.is_leader as u8);
            put_u8(out, t.is_active as u8);
            for c in t.connections {
                put_u32(out, c);
            }
            put_fixed(out, &t.version, VERSION_LEN);
            put_i64(out, t.up_time);
            put_i64(out, t.last_heartbeat);
        }
    }

    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        let mut r = Reader::new("tracker cluster stat", b);
        let n = r.u8()? as usize;
        if r.remaining() != n * Self::LEN {
            return Err(DecodeError::len(
                "tracker cluster stat",
                b.len(),
                1 + n * Self::LEN,
            ));
        }
        (0..n)
            .map(|_| {
                Ok(TrackerInfo {
                    host: r.fixed_str("host", IP_PORT_LEN)?,
                    is_leader: r.u8()? != 0,
                    is_active: r.u8()? != 0,
                    connections: [r.u32()?, r.u32()?, r.u32()?],
                    version: r.fixed_str("version", VERSION_LEN)?,
                    up_time: r.i64()?,
                    last_heartbeat: r.i64()?,
                })
            })
            .collect()
    }
}

/// Request of 97 (storage cluster stat) and 98 (volume stat): 4 filter bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterReq4(pub [u8; 4]);

impl FilterReq4 {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let a: [u8; 4] = b
            .try_into()
            .map_err(|_| DecodeError::len("stat filter request", b.len(), 4))?;
        Ok(FilterReq4(a))
    }
}

/// One storage in the 97 reply (106 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClusterInfo {
    pub id: String,
    pub host: String,
    pub is_trunk_server: bool,
    pub status: u8,
    pub connections: [u32; 3],
    pub version: String,
    pub up_time: i64,
    pub last_heartbeat: i64,
}

/// The 97 reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageClusterStat {
    pub use_storage_id: bool,
    pub use_trunk_file: bool,
    pub storages: Vec<StorageClusterInfo>,
}

impl StorageClusterStat {
    pub const RECORD_LEN: usize = 106;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.use_storage_id as u8);
        put_u8(out, self.use_trunk_file as u8);
        put_u32(out, self.storages.len() as u32);
        for s in &self.storages {
            put_fixed(out, &s.id, ID_LEN);
            put_fixed(out, &s.host, IP_PORT_LEN);
            put_u8(out, s.is_trunk_server as u8);
            put_u8(out, s.status);
            for c in s.connections {
                put_u32(out, c);
            }
            put_fixed(out, &s.version, VERSION_LEN);
            put_i64(out, s.up_time);
            put_i64(out, s.last_heartbeat);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("storage cluster stat", b);
        let use_storage_id = r.u8()? != 0;
        let use_trunk_file = r.u8()? != 0;
        let n = r.u32()? as usize;
        if r.remaining() != n.saturating_mul(Self::RECORD_LEN) {
            return Err(DecodeError::len(
                "storage cluster stat",
                b.len(),
                "6 + N*106",
            ));
        }
        let storages = (0..n)
            .map(|_| {
                Ok(StorageClusterInfo {
                    id: r.fixed_str("id", ID_LEN)?,
                    host: r.fixed_str("host", IP_PORT_LEN)?,
                    is_trunk_server: r.u8()? != 0,
                    status: r.u8()?,
                    connections: [r.u32()?, r.u32()?, r.u32()?],
                    version: r.fixed_str("version", VERSION_LEN)?,
                    up_time: r.i64()?,
                    last_heartbeat: r.i64()?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(StorageClusterStat {
            use_storage_id,
            use_trunk_file,
            storages,
        })
    }
}

/// One group in the 98 reply (59 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeInfo {
    pub group_name: String,
    pub total_mb: i64,
    pub free_mb: i64,
    pub reserved_mb: i64,
    pub avail_mb: i64,
    pub trunk_free_mb: i64,
    pub is_disk_available: bool,
    pub is_trunk_available: bool,
}

/// The 98 reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeStat {
    pub use_trunk_file: bool,
    pub volumes: Vec<VolumeInfo>,
}

impl VolumeStat {
    pub const RECORD_LEN: usize = 59;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.use_trunk_file as u8);
        put_u32(out, self.volumes.len() as u32);
        for v in &self.volumes {
            put_fixed(out, &v.group_name, GROUP_LEN + 1);
            for x in [
                v.total_mb,
                v.free_mb,
                v.reserved_mb,
                v.avail_mb,
                v.trunk_free_mb,
            ] {
                put_i64(out, x);
            }
            put_u8(out, v.is_disk_available as u8);
            put_u8(out, v.is_trunk_available as u8);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("volume stat", b);
        let use_trunk_file = r.u8()? != 0;
        let n = r.u32()? as usize;
        if r.remaining() != n.saturating_mul(Self::RECORD_LEN) {
            return Err(DecodeError::len("volume stat", b.len(), "5 + N*59"));
        }
        let volumes = (0..n)
            .map(|_| {
                Ok(VolumeInfo {
                    group_name: r.fixed_str("group name", GROUP_LEN + 1)?,
                    total_mb: r.i64()?,
                    free_mb: r.i64()?,
                    reserved_mb: r.i64()?,
                    avail_mb: r.i64()?,
                    trunk_free_mb: r.i64()?,
                    is_disk_available: r.u8()? != 0,
                    is_trunk_available: r.u8()? != 0,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(VolumeStat {
            use_trunk_file,
            volumes,
        })
    }
}

/// Request of 69 (fetch storage ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStorageIdsReq {
    pub start_index: u32,
    pub allow_empty: bool,
}

impl FetchStorageIdsReq {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.start_index);
        put_u8(out, self.allow_empty as u8);
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() != 5 {
            return Err(DecodeError::len("fetch storage ids request", b.len(), 5));
        }
        let mut r = Reader::new("fetch storage ids request", b);
        Ok(FetchStorageIdsReq {
            start_index: r.u32()?,
            allow_empty: r.u8()? != 0,
        })
    }
}

/// Reply of 69: counts and `<id> <group> <ip>[:port]` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchStorageIdsResp {
    pub total_count: u32,
    pub lines: Vec<String>,
}

impl FetchStorageIdsResp {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.total_count);
        put_u32(out, self.lines.len() as u32);
        for l in &self.lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("fetch storage ids reply", b);
        let total_count = r.u32()?;
        let returned = r.u32()? as usize;
        let text = r.text_rest("storage id lines")?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() != returned {
            return Err(DecodeError::field(
                "storage id lines",
                format!("{} lines, header says {returned}", lines.len()),
            ));
        }
        Ok(FetchStorageIdsResp { total_count, lines })
    }
}

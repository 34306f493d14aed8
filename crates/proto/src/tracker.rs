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
        records("group stats", b, Self::LEN, Self::read)
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
        records("storage stats", b, Self::len(ip_size), |r| {
            Self::read(r, ip_size)
        })
    }
}

/// The layouts of 91/92 a V6.10 tracker sends, for clients that parse only
/// those (fastdfs-client-java ≤ 1.30, fdfs_client-py and its Python 3
/// forks, V5 C tools). Nothing on the wire says which layout a reply has:
/// a tracker picks one by configuration, a reader by the body length
/// ([`GroupStat::decode_list_any`], [`StorageStat::decode_list_any`]).
///
/// One group, V4.x–V6.12 layout (105 bytes):
///
/// | off | size | field |
/// |---:|---:|---|
/// | 0 | 17 | group name |
/// | 17 | 8 | total_mb |
/// | 25 | 8 | free_mb |
/// | 33 | 8 | trunk_free_mb |
/// | 41 | 8 | storage_count |
/// | 49 | 8 | storage_port |
/// | 57 | 8 | storage_http_port |
/// | 65 | 8 | active_count |
/// | 73 | 8 | current_write_server |
/// | 81 | 8 | store_path_count |
/// | 89 | 8 | subdir_count_per_path |
/// | 97 | 8 | current_trunk_file_id |
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStatV610 {
    pub group_name: String,
    pub total_mb: i64,
    pub free_mb: i64,
    pub trunk_free_mb: i64,
    pub storage_count: i64,
    pub storage_port: i64,
    pub storage_http_port: i64,
    pub active_count: i64,
    pub current_write_server: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_trunk_file_id: i64,
}

impl GroupStatV610 {
    pub const LEN: usize = 105;

    /// The old record of a group: `storage_http_port` is 0 when unknown,
    /// `active_count` the number of ACTIVE servers (the current layout
    /// splits it into readable and writable counts, so the caller says).
    pub fn from_current(g: &GroupStat, storage_http_port: i64, active_count: i64) -> Self {
        GroupStatV610 {
            group_name: g.group_name.clone(),
            total_mb: g.total_mb,
            free_mb: g.free_mb,
            trunk_free_mb: g.trunk_free_mb,
            storage_count: g.storage_count,
            storage_port: g.storage_port,
            storage_http_port,
            active_count,
            current_write_server: g.current_write_server,
            store_path_count: g.store_path_count,
            subdir_count_per_path: g.subdir_count_per_path,
            current_trunk_file_id: g.current_trunk_file_id,
        }
    }

    /// The current record for an old one. An old tracker has no reserved
    /// figure (0) and no read/write split: its ACTIVE servers take both.
    pub fn to_current(&self) -> GroupStat {
        GroupStat {
            group_name: self.group_name.clone(),
            total_mb: self.total_mb,
            free_mb: self.free_mb,
            reserved_mb: 0,
            trunk_free_mb: self.trunk_free_mb,
            storage_count: self.storage_count,
            storage_port: self.storage_port,
            readable_server_count: self.active_count,
            writable_server_count: self.active_count,
            current_write_server: self.current_write_server,
            store_path_count: self.store_path_count,
            subdir_count_per_path: self.subdir_count_per_path,
            current_trunk_file_id: self.current_trunk_file_id,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed(out, &self.group_name, GROUP_LEN + 1);
        for v in [
            self.total_mb,
            self.free_mb,
            self.trunk_free_mb,
            self.storage_count,
            self.storage_port,
            self.storage_http_port,
            self.active_count,
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
        let mut v = [0i64; 11];
        for x in v.iter_mut() {
            *x = r.i64()?;
        }
        Ok(GroupStatV610 {
            group_name,
            total_mb: v[0],
            free_mb: v[1],
            trunk_free_mb: v[2],
            storage_count: v[3],
            storage_port: v[4],
            storage_http_port: v[5],
            active_count: v[6],
            current_write_server: v[7],
            store_path_count: v[8],
            subdir_count_per_path: v[9],
            current_trunk_file_id: v[10],
        })
    }

    /// Decodes an old reply of 91 (N records) or 90 (one).
    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        records("group stats (6.10 layout)", b, Self::LEN, Self::read)
    }
}

impl GroupStat {
    /// Decodes a reply of 91/90 in either layout, told apart by length: a
    /// multiple of 113 bytes is the current layout, else a multiple of 105
    /// the V6.10 one (converted by [`GroupStatV610::to_current`]).
    pub fn decode_list_any(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if b.len() % Self::LEN == 0 {
            Self::decode_list(b)
        } else if b.len() % GroupStatV610::LEN == 0 {
            Ok(GroupStatV610::decode_list(b)?
                .iter()
                .map(GroupStatV610::to_current)
                .collect())
        } else {
            Err(DecodeError::len(
                "group stats",
                b.len(),
                "a multiple of 113 or of 105",
            ))
        }
    }
}

/// Width of the domain name field of the V6.10 storage record.
const DOMAIN_NAME_LEN: usize = 128;
/// Width of the version field of the V6.10 storage record (no NUL when
/// full: "6.16.1" takes all of it).
const OLD_VERSION_LEN: usize = 6;

/// One storage in the list-storages reply, V5.x–V6.10 layout (612 bytes,
/// always 16-byte IP fields). See [`GroupStatV610`] for when it is used.
///
/// | off | size | field |
/// |---:|---:|---|
/// | 0 | 1 | status |
/// | 1 | 16 | id |
/// | 17 | 16 | ip_addr |
/// | 33 | 128 | domain_name |
/// | 161 | 16 | src_id |
/// | 177 | 6 | version |
/// | 183 | 80 | join_time, up_time, total_mb, free_mb, upload_priority, store_path_count, subdir_count_per_path, current_write_path, storage_port, storage_http_port (i64 each) |
/// | 263 | 348 | StatBuff |
/// | 611 | 1 | if_trunk_server |
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageStatV610 {
    pub status: u8,
    pub id: String,
    pub ip_addr: String,
    pub domain_name: String,
    pub src_id: String,
    pub version: String,
    pub join_time: i64,
    pub up_time: i64,
    pub total_mb: i64,
    pub free_mb: i64,
    pub upload_priority: i64,
    pub store_path_count: i64,
    pub subdir_count_per_path: i64,
    pub current_write_path: i64,
    pub storage_port: i64,
    pub storage_http_port: i64,
    pub stat: StatBuff,
    pub if_trunk_server: bool,
}

impl StorageStatV610 {
    pub const LEN: usize = 1
        + ID_LEN
        + IPV4_SIZE
        + DOMAIN_NAME_LEN
        + ID_LEN
        + OLD_VERSION_LEN
        + 80
        + StatBuff::LEN
        + 1;

    /// The old record of a server: no domain name, the HTTP port 0 when
    /// unknown. On the wire the IP is cut to 15 bytes (plus its NUL) and
    /// the version to 6 (the old fields' widths): an IPv6 address does not
    /// fit.
    pub fn from_current(s: &StorageStat, storage_http_port: i64) -> Self {
        StorageStatV610 {
            status: s.status,
            id: s.id.clone(),
            ip_addr: s.ip_addr.clone(),
            domain_name: String::new(),
            src_id: s.src_id.clone(),
            version: s.version.clone(),
            join_time: s.join_time,
            up_time: s.up_time,
            total_mb: s.total_mb,
            free_mb: s.free_mb,
            upload_priority: s.upload_priority,
            store_path_count: s.store_path_count,
            subdir_count_per_path: s.subdir_count_per_path,
            current_write_path: s.current_write_path,
            storage_port: s.storage_port,
            storage_http_port,
            stat: s.stat.clone(),
            if_trunk_server: s.if_trunk_server,
        }
    }

    /// The current record for an old one. Old trackers have no per-server
    /// read/write mode (every server could do both: rw_mode 6) and no
    /// reserved figure (0).
    pub fn to_current(&self) -> StorageStat {
        StorageStat {
            status: self.status,
            rw_mode: 6,
            id: self.id.clone(),
            ip_addr: self.ip_addr.clone(),
            src_id: self.src_id.clone(),
            version: self.version.clone(),
            join_time: self.join_time,
            up_time: self.up_time,
            total_mb: self.total_mb,
            free_mb: self.free_mb,
            reserved_mb: 0,
            upload_priority: self.upload_priority,
            store_path_count: self.store_path_count,
            subdir_count_per_path: self.subdir_count_per_path,
            current_write_path: self.current_write_path,
            storage_port: self.storage_port,
            stat: self.stat.clone(),
            if_trunk_server: self.if_trunk_server,
            ip_size: IpSize::V4,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.status);
        put_fixed(out, &self.id, ID_LEN);
        // Keep the NUL: C readers treat the field as a string.
        put_fixed(out, cut(&self.ip_addr, IPV4_SIZE - 1), IPV4_SIZE);
        put_fixed(out, &self.domain_name, DOMAIN_NAME_LEN);
        put_fixed(out, &self.src_id, ID_LEN);
        put_fixed(out, &self.version, OLD_VERSION_LEN);
        for v in [
            self.join_time,
            self.up_time,
            self.total_mb,
            self.free_mb,
            self.upload_priority,
            self.store_path_count,
            self.subdir_count_per_path,
            self.current_write_path,
            self.storage_port,
            self.storage_http_port,
        ] {
            put_i64(out, v);
        }
        self.stat.encode(out);
        put_u8(out, self.if_trunk_server as u8);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let status = r.u8()?;
        let id = r.fixed_str("id", ID_LEN)?;
        let ip_addr = r.fixed_str("ip", IPV4_SIZE)?;
        let domain_name = r.fixed_str("domain name", DOMAIN_NAME_LEN)?;
        let src_id = r.fixed_str("src id", ID_LEN)?;
        let version = r.fixed_str("version", OLD_VERSION_LEN)?;
        let mut v = [0i64; 10];
        for x in v.iter_mut() {
            *x = r.i64()?;
        }
        let stat = StatBuff::read(r)?;
        let if_trunk_server = r.u8()? != 0;
        Ok(StorageStatV610 {
            status,
            id,
            ip_addr,
            domain_name,
            src_id,
            version,
            join_time: v[0],
            up_time: v[1],
            total_mb: v[2],
            free_mb: v[3],
            upload_priority: v[4],
            store_path_count: v[5],
            subdir_count_per_path: v[6],
            current_write_path: v[7],
            storage_port: v[8],
            storage_http_port: v[9],
            stat,
            if_trunk_server,
        })
    }

    /// Decodes an old reply of 92: N records of 612 bytes.
    pub fn decode_list(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        records("storage stats (6.10 layout)", b, Self::LEN, Self::read)
    }
}

/// Decodes a reply made of whole `len`-byte records (the list replies).
fn records<T>(
    what: &'static str,
    b: &[u8],
    len: usize,
    mut read: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    if b.len() % len != 0 {
        return Err(DecodeError::len(
            what,
            b.len(),
            format!("a multiple of {len}"),
        ));
    }
    let mut r = Reader::new(what, b);
    (0..b.len() / len).map(|_| read(&mut r)).collect()
}

/// `s` cut to at most `n` bytes, at a character boundary.
fn cut(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl StorageStat {
    /// Decodes a reply of 92 in any layout, told apart by length: multiples
    /// of 487 or 517 bytes are the current layout (15- or 45-byte IPs),
    /// else multiples of 612 the V6.10 one (converted by
    /// [`StorageStatV610::to_current`]).
    pub fn decode_list_any(b: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if b.len() % Self::len(IpSize::V4) == 0 || b.len() % Self::len(IpSize::V6) == 0 {
            Self::decode_list(b)
        } else if b.len() % StorageStatV610::LEN == 0 {
            Ok(StorageStatV610::decode_list(b)?
                .iter()
                .map(StorageStatV610::to_current)
                .collect())
        } else {
            Err(DecodeError::len(
                "storage stats",
                b.len(),
                "a multiple of 487, 517 or 612",
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn be(b: &[u8], off: usize) -> i64 {
        i64::from_be_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn sample_group() -> GroupStat {
        GroupStat {
            group_name: "group1".into(),
            total_mb: 258019,
            free_mb: 78128,
            reserved_mb: 51603,
            trunk_free_mb: 7,
            storage_count: 3,
            storage_port: 23000,
            readable_server_count: 2,
            writable_server_count: 1,
            current_write_server: 1,
            store_path_count: 2,
            subdir_count_per_path: 256,
            current_trunk_file_id: -1,
        }
    }

    fn sample_storage() -> StorageStat {
        let mut stat = StatBuff {
            connection_alloc_count: 11,
            connection_current_count: 12,
            connection_max_count: 13,
            ..StatBuff::default()
        };
        stat.counters[0] = 5;
        stat.counters[41] = 1_795_000_200;
        StorageStat {
            status: 7,
            rw_mode: 4,
            id: "100001".into(),
            ip_addr: "192.168.11.80".into(),
            src_id: "100002".into(),
            version: "6.16.1".into(),
            join_time: 1_795_000_000,
            up_time: 1_795_000_100,
            total_mb: 1000,
            free_mb: 400,
            reserved_mb: 100,
            upload_priority: 10,
            store_path_count: 2,
            subdir_count_per_path: 256,
            current_write_path: 1,
            storage_port: 23000,
            stat,
            if_trunk_server: true,
            ip_size: IpSize::V4,
        }
    }

    #[test]
    fn old_group_fields_at_their_offsets() {
        let old = GroupStatV610::from_current(&sample_group(), 8888, 2);
        let mut b = Vec::new();
        old.encode(&mut b);
        assert_eq!(b.len(), 105);
        assert_eq!(&b[..7], b"group1\0");
        assert!(b[7..17].iter().all(|&c| c == 0));
        let want = [
            (17, 258019), // total_mb
            (25, 78128),  // free_mb
            (33, 7),      // trunk_free_mb (no reserved_mb before it)
            (41, 3),      // storage_count
            (49, 23000),  // storage_port
            (57, 8888),   // storage_http_port
            (65, 2),      // active_count
            (73, 1),      // current_write_server
            (81, 2),      // store_path_count
            (89, 256),    // subdir_count_per_path
            (97, -1),     // current_trunk_file_id
        ];
        for (off, v) in want {
            assert_eq!(be(&b, off), v, "i64 at offset {off}");
        }
        assert_eq!(GroupStatV610::decode_list(&b).unwrap(), vec![old]);
    }

    #[test]
    fn old_storage_fields_at_their_offsets() {
        let cur = sample_storage();
        let old = StorageStatV610::from_current(&cur, 8888);
        let mut b = Vec::new();
        old.encode(&mut b);
        assert_eq!(b.len(), 612);
        assert_eq!(StorageStatV610::LEN, 612);
        assert_eq!(b[0], 7, "status");
        assert_eq!(&b[1..8], b"100001\0", "id");
        assert_eq!(&b[17..31], b"192.168.11.80\0", "ip");
        assert!(b[33..161].iter().all(|&c| c == 0), "empty domain name");
        assert_eq!(&b[161..168], b"100002\0", "src id");
        assert_eq!(&b[177..183], b"6.16.1", "version fills its 6 bytes");
        let want = [
            (183, 1_795_000_000), // join_time
            (191, 1_795_000_100), // up_time
            (199, 1000),          // total_mb
            (207, 400),           // free_mb (no reserved_mb after it)
            (215, 10),            // upload_priority
            (223, 2),             // store_path_count
            (231, 256),           // subdir_count_per_path
            (239, 1),             // current_write_path
            (247, 23000),         // storage_port
            (255, 8888),          // storage_http_port
        ];
        for (off, v) in want {
            assert_eq!(be(&b, off), v, "i64 at offset {off}");
        }
        // StatBuff at 263: three u32 connection counters, then the i64s.
        assert_eq!(&b[263..275], &[0, 0, 0, 11, 0, 0, 0, 12, 0, 0, 0, 13]);
        assert_eq!(be(&b, 275), 5, "total_upload_count");
        assert_eq!(be(&b, 275 + 41 * 8), 1_795_000_200, "last_heart_beat_time");
        assert_eq!(b[611], 1, "if_trunk_server");
        assert_eq!(StorageStatV610::decode_list(&b).unwrap(), vec![old]);
    }

    #[test]
    fn long_version_and_ip_are_cut_to_the_old_widths() {
        let mut s = sample_storage();
        s.version = "6.16.10".into();
        s.ip_addr = "fe80::1234:5678:9abc".into();
        let mut b = Vec::new();
        StorageStatV610::from_current(&s, 0).encode(&mut b);
        assert_eq!(b.len(), 612, "the record keeps its size");
        let back = &StorageStatV610::decode_list(&b).unwrap()[0];
        assert_eq!(back.version, "6.16.1");
        assert_eq!(back.ip_addr, "fe80::1234:5678");
        assert_eq!(b[32], 0, "the IP keeps a NUL");
    }

    #[test]
    fn conversions_back_to_the_current_layout() {
        let g = GroupStatV610::from_current(&sample_group(), 0, 2).to_current();
        assert_eq!(
            g,
            GroupStat {
                reserved_mb: 0,
                readable_server_count: 2,
                writable_server_count: 2,
                ..sample_group()
            }
        );
        let s = StorageStatV610::from_current(&sample_storage(), 0).to_current();
        assert_eq!(
            s,
            StorageStat {
                rw_mode: 6,
                reserved_mb: 0,
                ..sample_storage()
            }
        );
    }

    #[test]
    fn any_layout_is_told_by_length() {
        let cur = sample_group();
        let old = GroupStatV610::from_current(&cur, 0, 1);
        let (mut new_b, mut old_b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            cur.encode(&mut new_b);
            old.encode(&mut old_b);
        }
        assert_eq!(GroupStat::decode_list_any(&new_b).unwrap(), vec![cur; 3]);
        assert_eq!(
            GroupStat::decode_list_any(&old_b).unwrap(),
            vec![old.to_current(); 3]
        );
        assert_eq!(GroupStat::decode_list_any(&[]).unwrap(), vec![]);
        for bad in [1, 104, 106, 112, 114, 218] {
            let e = GroupStat::decode_list_any(&vec![0; bad]).unwrap_err();
            assert!(matches!(e, DecodeError::BadLength { got, .. } if got == bad));
        }
        // The strict decoders still refuse the other layout.
        assert!(GroupStat::decode_list(&old_b[..105]).is_err());
        assert!(GroupStatV610::decode_list(&new_b[..113]).is_err());

        let s = sample_storage();
        let o = StorageStatV610::from_current(&s, 0);
        let six = StorageStat {
            ip_size: IpSize::V6,
            ..s.clone()
        };
        let (mut v4, mut v6, mut ob) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            s.encode(&mut v4);
            six.encode(&mut v6);
            o.encode(&mut ob);
        }
        assert_eq!((v4.len(), v6.len(), ob.len()), (974, 1034, 1224));
        assert_eq!(StorageStat::decode_list_any(&v4).unwrap(), vec![s; 2]);
        assert_eq!(StorageStat::decode_list_any(&v6).unwrap(), vec![six; 2]);
        assert_eq!(
            StorageStat::decode_list_any(&ob).unwrap(),
            vec![o.to_current(); 2]
        );
        for bad in [1, 486, 611, 613, 1000] {
            assert!(
                StorageStat::decode_list_any(&vec![0; bad]).is_err(),
                "{bad}"
            );
        }
        assert!(StorageStat::decode_list(&ob).is_err());
        assert!(StorageStatV610::decode_list(&v4[..487]).is_err());
    }

    #[test]
    fn old_records_refuse_bad_text() {
        let mut b = Vec::new();
        GroupStatV610::from_current(&sample_group(), 0, 0).encode(&mut b);
        b[0] = 0xFF;
        assert!(matches!(
            GroupStatV610::decode_list(&b),
            Err(DecodeError::InvalidField {
                field: "group name",
                ..
            })
        ));
        let mut b = Vec::new();
        StorageStatV610::from_current(&sample_storage(), 0).encode(&mut b);
        b[33] = 0xC3; // a lone UTF-8 lead byte in the domain name
        assert!(matches!(
            StorageStatV610::decode_list(&b),
            Err(DecodeError::InvalidField {
                field: "domain name",
                ..
            })
        ));
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[A-Za-z0-9.:_-]{{0,{max}}}")).unwrap()
    }

    fn stat_buff() -> impl Strategy<Value = StatBuff> {
        (
            any::<[u32; 3]>(),
            proptest::collection::vec(any::<i64>(), 42),
        )
            .prop_map(|(c, v)| {
                let mut s = StatBuff {
                    connection_alloc_count: c[0],
                    connection_current_count: c[1],
                    connection_max_count: c[2],
                    ..StatBuff::default()
                };
                s.counters.copy_from_slice(&v);
                s
            })
    }

    proptest! {
        #[test]
        fn old_group_round_trip(
            list in proptest::collection::vec((text(16), any::<[i64; 11]>()), 0..4),
        ) {
            let list: Vec<GroupStatV610> = list.into_iter().map(|(n, v)| GroupStatV610 {
                group_name: n, total_mb: v[0], free_mb: v[1], trunk_free_mb: v[2],
                storage_count: v[3], storage_port: v[4], storage_http_port: v[5],
                active_count: v[6], current_write_server: v[7], store_path_count: v[8],
                subdir_count_per_path: v[9], current_trunk_file_id: v[10],
            }).collect();
            let mut b = Vec::new();
            list.iter().for_each(|g| g.encode(&mut b));
            prop_assert_eq!(b.len(), 105 * list.len());
            prop_assert_eq!(&GroupStatV610::decode_list(&b).unwrap(), &list);
            let conv: Vec<GroupStat> = list.iter().map(GroupStatV610::to_current).collect();
            prop_assert_eq!(GroupStat::decode_list_any(&b).unwrap(), conv);
        }

        #[test]
        fn old_storage_round_trip(
            list in proptest::collection::vec((
                any::<u8>(), text(15), text(15), text(127), text(15), text(6),
                any::<[i64; 10]>(), stat_buff(), any::<bool>()), 0..3),
        ) {
            let list: Vec<StorageStatV610> = list.into_iter()
                .map(|(status, id, ip, dom, src, ver, v, stat, trunk)| StorageStatV610 {
                    status, id, ip_addr: ip, domain_name: dom, src_id: src, version: ver,
                    join_time: v[0], up_time: v[1], total_mb: v[2], free_mb: v[3],
                    upload_priority: v[4], store_path_count: v[5],
                    subdir_count_per_path: v[6], current_write_path: v[7],
                    storage_port: v[8], storage_http_port: v[9], stat,
                    if_trunk_server: trunk,
                }).collect();
            let mut b = Vec::new();
            list.iter().for_each(|s| s.encode(&mut b));
            prop_assert_eq!(b.len(), 612 * list.len());
            prop_assert_eq!(&StorageStatV610::decode_list(&b).unwrap(), &list);
        }

        #[test]
        fn any_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = GroupStat::decode_list_any(&b);
            let _ = StorageStat::decode_list_any(&b);
            let _ = GroupStatV610::decode_list(&b);
            let _ = StorageStatV610::decode_list(&b);
        }
    }
}

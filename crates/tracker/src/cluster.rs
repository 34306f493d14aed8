//! The tracker's cluster state and every decision made from it.
//!
//! Groups of storage servers, each server's status (PROTOCOL.md §7),
//! reported space, counters and sync progress, and the placement policies
//! of §8 (which group, server and store path an upload goes to; which
//! server a download or an update goes to). No sockets and no clock: every
//! method that depends on time takes `now` (unix seconds), so tests drive
//! time by hand.
//!
//! Two counters tell the service when to persist: `state_version` moves on
//! every membership or status change (saved at once), `stats_version` on
//! every beat or report (saved periodically).

use std::collections::BTreeMap;
use std::net::IpAddr;

use fdfs_conf::{ReservedSpace, RwMode};
use fdfs_proto::server::{
    status, ChangeFlags, DiskUsage, JoinReq, JoinResp, StorageBrief, SyncInfo, SyncReport,
};
use fdfs_proto::tracker::{
    GroupStat, GroupStatV610, StatBuff, StorageClusterInfo, StorageClusterStat, StorageStat,
    StorageStatV610, VolumeInfo, VolumeStat,
};
use fdfs_proto::{FileKind, IpSize, LogicName, ServerAddr, SourceServer};

use crate::error::TrackerError;
use crate::settings::{Settings, MB};

/// Index of `last_synced_timestamp` in [`StatBuff::counters`].
const STAT_LAST_SYNCED: usize = 40;
/// Index of `last_heart_beat_time` in [`StatBuff::counters`].
const STAT_LAST_HEART_BEAT: usize = 41;

/// One storage server as the tracker knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    /// The IP when `use_storage_id` is off.
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub status: u8,
    /// rw_mode of StorageStat: 6 = read and write.
    pub rw_mode: u8,
    pub join_time: i64,
    pub up_time: i64,
    pub version: String,
    pub store_path_count: u32,
    pub subdir_count: u32,
    pub upload_priority: i64,
    /// (total MB, free MB) per store path, from REPORT_DISK_USAGE.
    pub paths: Vec<(i64, i64)>,
    pub current_write_path: u32,
    pub last_heartbeat: i64,
    pub stat: StatBuff,
    /// Full-sync source assigned to this server ("" = none).
    pub sync_src_id: String,
    pub sync_until: i64,
    /// From this server's SYNC_REPORT: for each peer, the source timestamp
    /// of the last record this server received from it.
    pub synced: BTreeMap<String, u32>,
    /// How much of the changelog this server has been sent (CHANGELOG_REQ).
    pub changelog_offset: u64,
    /// Membership or a status in its group changed since this server last
    /// got the group list (change flag 4).
    pub needs_group_list: bool,
    /// An IP_CHANGED record: the id the server has now ("" otherwise).
    pub moved_to: String,
    /// Free trunk space in MB, as this server last reported it while it was
    /// its group's trunk server (REPORT_TRUNK_FREE); 0 otherwise.
    pub trunk_free_mb: i64,
    /// The group's trunk server changed (or this server joined) since it
    /// was last told who it is (change flag 2). Only with use_trunk_file.
    pub needs_trunk_server: bool,
}

impl Storage {
    /// A server as first seen (INIT, read-write, nothing reported yet).
    pub(crate) fn new(id: &str, ip: &str, port: u16) -> Storage {
        Storage {
            id: id.to_owned(),
            ip: ip.to_owned(),
            port,
            status: status::INIT,
            rw_mode: RW_BOTH,
            join_time: 0,
            up_time: 0,
            version: String::new(),
            store_path_count: 0,
            subdir_count: 0,
            upload_priority: 0,
            paths: Vec::new(),
            current_write_path: 0,
            last_heartbeat: 0,
            stat: StatBuff::default(),
            sync_src_id: String::new(),
            sync_until: 0,
            synced: BTreeMap::new(),
            changelog_offset: 0,
            needs_group_list: true,
            moved_to: String::new(),
            trunk_free_mb: 0,
            needs_trunk_server: false,
        }
    }

    pub fn total_mb(&self) -> i64 {
        self.paths.iter().map(|p| p.0).sum()
    }

    pub fn free_mb(&self) -> i64 {
        self.paths.iter().map(|p| p.1).sum()
    }

    pub fn is_active(&self) -> bool {
        self.status == status::ACTIVE
    }

    /// In the readable list: ACTIVE with read permission.
    pub fn readable(&self) -> bool {
        self.is_active() && self.rw_mode & RW_READ != 0
    }

    /// In the writable list: ACTIVE with write permission.
    pub fn writable(&self) -> bool {
        self.is_active() && self.rw_mode & RW_WRITE != 0
    }

    /// May keep the trunk role it holds: takes writes and is connected.
    /// ONLINE counts: a trunk server that JOINs again while its session is
    /// still open passes through ONLINE until its next beat, and handing
    /// the role to another server for that moment would make the group
    /// switch trunk binlogs twice.
    fn keeps_trunk_role(&self) -> bool {
        matches!(self.status, status::ONLINE | status::ACTIVE) && self.rw_mode & RW_WRITE != 0
    }

    fn addr(&self) -> ServerAddr {
        ServerAddr {
            ip: self.ip.clone(),
            port: self.port,
        }
    }

    fn brief(&self) -> StorageBrief {
        StorageBrief {
            status: self.status,
            port: self.port as u32,
            id: self.id.clone(),
            ip: self.ip.clone(),
        }
    }
}

/// A group: its servers sorted by id and its round-robin cursors.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub port: u16,
    pub store_path_count: u32,
    pub subdir_count: u32,
    pub storages: BTreeMap<String, Storage>,
    pub current_write_server: usize,
    pub current_read_server: usize,
    /// Key (id, or IP without storage ids) of the group's trunk server; ""
    /// when none. Only set with use_trunk_file; elected among writable
    /// (ACTIVE, rw_mode W) members and kept while ONLINE or ACTIVE with
    /// rw_mode W: see [`Cluster::check_trunk_server`].
    pub trunk_server: String,
    /// The server that held the trunk role most recently (kept when the
    /// role falls to none); preferred at the next election, since its
    /// trunk binlog is the most complete.
    pub last_trunk_server: String,
    /// The highest trunk file id the trunk server reported (72/73).
    pub current_trunk_file_id: u32,
    /// No election for now: the group lost its trunk server with nobody
    /// to take over (or this tracker just loaded its state), and
    /// `last_trunk_server` gets [`TRUNK_HOLD_SECS`] to come back. Not saved.
    pub trunk_hold: bool,
    /// When [`Cluster::check_active`] first saw the hold (None = not yet).
    pub trunk_hold_since: Option<i64>,
}

impl Group {
    pub(crate) fn new(name: &str) -> Group {
        Group {
            name: name.to_owned(),
            port: 0,
            store_path_count: 0,
            subdir_count: 0,
            storages: BTreeMap::new(),
            current_write_server: 0,
            current_read_server: 0,
            trunk_server: String::new(),
            last_trunk_server: String::new(),
            current_trunk_file_id: 0,
            trunk_hold: false,
            trunk_hold_since: None,
        }
    }

    fn writable(&self) -> Vec<&Storage> {
        self.storages.values().filter(|s| s.writable()).collect()
    }

    fn readable(&self) -> Vec<&Storage> {
        self.storages.values().filter(|s| s.readable()).collect()
    }

    /// Index into [`Group::writable`] (not empty) of the server an upload
    /// or update goes to by the store_server rule (§8.2): 1 the first by
    /// id, 2 the lowest upload_priority (the first on ties), else round
    /// robin.
    fn pick_writable(&mut self, store_server: u8) -> usize {
        let w = self.writable();
        match store_server {
            1 => 0,
            2 => {
                let best = w.iter().map(|s| s.upload_priority).min().unwrap_or(0);
                w.iter()
                    .position(|s| s.upload_priority == best)
                    .unwrap_or(0)
            }
            _ => {
                let n = w.len();
                let i = self.current_write_server % n;
                self.current_write_server = (i + 1) % n;
                i
            }
        }
    }

    /// Group total/free MB: those of the member with the least free space
    /// (§8.1), among ACTIVE members, else among all that reported.
    pub fn space(&self) -> (i64, i64) {
        let pick = |it: &mut dyn Iterator<Item = &Storage>| {
            it.min_by_key(|s| s.free_mb())
                .map(|s| (s.total_mb(), s.free_mb()))
        };
        pick(&mut self.storages.values().filter(|s| s.is_active()))
            .or_else(|| pick(&mut self.storages.values().filter(|s| !s.paths.is_empty())))
            .unwrap_or((0, 0))
    }

    /// Mark every member as needing the group list in its next reply.
    fn members_changed(&mut self) {
        for s in self.storages.values_mut() {
            s.needs_group_list = true;
        }
    }

    /// The storage that created a file, from the 4 bytes in its name.
    fn source_of(&self, src: SourceServer) -> Option<&Storage> {
        match src {
            SourceServer::Ip(ip) => {
                let ip = ip.to_string();
                let mut s = self.storages.values().find(|s| s.ip == ip)?;
                // Its IP changed since: the files are on the server it became
                // (a few hops at most; a loop of moves cannot hang this).
                for _ in 0..8 {
                    if s.status != status::IP_CHANGED {
                        break;
                    }
                    match self.storages.get(&s.moved_to) {
                        Some(next) => s = next,
                        None => break,
                    }
                }
                Some(s)
            }
            SourceServer::Id(n) => self.storages.get(&n.to_string()),
        }
    }
}

/// How long a group without a trunk server waits for the last one to come
/// back before electing another. Another server's trunk binlog may lack its
/// latest allocations (upstream compares binlog sizes; we cannot), so
/// waiting a little beats risking two owners of one slot. 30 s covers a
/// storage restart and the reconnections after a tracker restart.
pub const TRUNK_HOLD_SECS: i64 = 30;

/// `rw_mode` bits of StorageStat: may serve downloads / take uploads.
const RW_READ: u8 = 4;
const RW_WRITE: u8 = 2;
const RW_BOTH: u8 = RW_READ | RW_WRITE;

/// A joining storage's id, the address clients reach it at, its rw_mode.
struct Identity {
    id: String,
    ip: String,
    rw_mode: u8,
}

/// Where an upload goes (101/104/106/107).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    pub group: String,
    /// One server (101/104) or all writable ones (106/107).
    pub servers: Vec<ServerAddr>,
    pub store_path_index: u8,
}

/// The whole cluster as this tracker sees it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub settings: Settings,
    pub groups: BTreeMap<String, Group>,
    /// Index into the groups (sorted by name) for round robin / load balance.
    pub current_write_group: usize,
    /// The changelog (`<ts> <group> <id> <status> <extra>\n` lines).
    pub changelog: Vec<u8>,
    pub state_version: u64,
    pub stats_version: u64,
}

impl Cluster {
    pub fn new(settings: Settings) -> Cluster {
        Cluster {
            settings,
            groups: BTreeMap::new(),
            current_write_group: 0,
            changelog: Vec::new(),
            state_version: 0,
            stats_version: 0,
        }
    }

    fn group(&self, name: &str) -> Result<&Group, TrackerError> {
        self.groups
            .get(name)
            .ok_or_else(|| TrackerError::NoGroup(name.to_owned()))
    }

    fn group_mut(&mut self, name: &str) -> Result<&mut Group, TrackerError> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| TrackerError::NoGroup(name.to_owned()))
    }

    pub fn storage(&self, group: &str, id: &str) -> Result<&Storage, TrackerError> {
        self.group(group)?
            .storages
            .get(id)
            .ok_or_else(|| TrackerError::NoStorage {
                group: group.to_owned(),
                id: id.to_owned(),
            })
    }

    fn storage_mut(&mut self, group: &str, id: &str) -> Result<&mut Storage, TrackerError> {
        self.group_mut(group)?
            .storages
            .get_mut(id)
            .ok_or_else(|| TrackerError::NoStorage {
                group: group.to_owned(),
                id: id.to_owned(),
            })
    }

    /// Sets a status; a change marks the group's members for a new list
    /// and the state for saving. Returns whether it changed.
    fn set_status(&mut self, group: &str, id: &str, new: u8) -> Result<bool, TrackerError> {
        let s = self.storage_mut(group, id)?;
        if s.status == new {
            return Ok(false);
        }
        tracing::info!(
            group,
            id,
            from = status::name(s.status),
            to = status::name(new),
            "storage status changed"
        );
        s.status = new;
        self.group_mut(group)?.members_changed();
        self.state_version += 1;
        self.check_trunk_server(group);
        Ok(true)
    }

    // ----- the trunk server (use_trunk_file; PROTOCOL.md §5.5, §6.1) -----
    //
    // Upstream, only the leader tracker elects trunk servers. Trackers here
    // elect no leader (DESIGN.md "Trackers without a leader"), so each one
    // acts as its own leader, as it does for GET_LEADER: the rule below is
    // a deterministic function of the storages' reports, so trackers fed
    // the same reports name the same server.

    fn trunk_enabled(&self) -> Result<(), TrackerError> {
        if self.settings.use_trunk_file {
            Ok(())
        } else {
            Err(TrackerError::NotSupported(
                "trunk files are off (use_trunk_file = false)".into(),
            ))
        }
    }

    /// Elects `group`'s trunk server when it has none or the one it has
    /// may no longer keep the role (gone OFFLINE, deleted, read-only):
    /// `last_trunk_server` if it is writable, else (unless the group is
    /// holding the role for it, see [`Group::trunk_hold`]) the first
    /// writable server in key order, else none. Called on every status
    /// change and JOIN. Upstream asks each candidate for the size of its
    /// trunk binlog (TRUNK_GET_BINLOG_SIZE) and prefers the largest; we do
    /// not: the last holder of the role is the one whose binlog is complete.
    pub fn check_trunk_server(&mut self, group: &str) {
        if !self.settings.use_trunk_file {
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        if g.storages
            .get(&g.trunk_server)
            .is_some_and(Storage::keeps_trunk_role)
        {
            return;
        }
        let last = g.storages.get(&g.last_trunk_server);
        let pick = match last.filter(|s| s.writable()) {
            Some(l) => Some(l),
            // A removed server will not come back: no point waiting.
            None if g.trunk_hold
                && last
                    .is_some_and(|l| !matches!(l.status, status::DELETED | status::IP_CHANGED)) =>
            {
                None
            }
            None => g.storages.values().find(|s| s.writable()),
        };
        let pick = pick.map(|s| s.id.clone()).unwrap_or_default();
        self.set_trunk(group, pick);
    }

    /// Ends the holds of [`Group::trunk_hold`] older than
    /// [`TRUNK_HOLD_SECS`] and elects. Run from [`Cluster::check_active`]
    /// (every second): a hold starts counting at its first tick.
    fn expire_trunk_holds(&mut self, now: i64) {
        let mut expired = Vec::new();
        for g in self.groups.values_mut().filter(|g| g.trunk_hold) {
            match g.trunk_hold_since {
                None => g.trunk_hold_since = Some(now),
                Some(t) if now - t >= TRUNK_HOLD_SECS => {
                    g.trunk_hold = false;
                    g.trunk_hold_since = None;
                    expired.push(g.name.clone());
                }
                Some(_) => {}
            }
        }
        for name in expired {
            tracing::info!(group = %name, "the last trunk server did not come back, electing another");
            self.check_trunk_server(&name);
        }
    }

    /// Makes `id` ("" = none) the trunk server of `group`; on a change,
    /// every member is told in its next change-flags reply (flag 2).
    fn set_trunk(&mut self, group: &str, id: String) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if g.trunk_server == id {
            return;
        }
        let old = std::mem::replace(&mut g.trunk_server, id.clone());
        // Free trunk space is the trunk server's allocator state: a value
        // from another stint in the role would be stale.
        for k in [&old, &id] {
            if let Some(s) = g.storages.get_mut(k) {
                s.trunk_free_mb = 0;
            }
        }
        if !id.is_empty() {
            g.last_trunk_server = id.clone();
            g.trunk_hold = false;
            g.trunk_hold_since = None;
        } else if !g.last_trunk_server.is_empty() {
            g.trunk_hold = true;
            g.trunk_hold_since = None;
        }
        for s in g.storages.values_mut() {
            s.needs_trunk_server = true;
        }
        self.state_version += 1;
        if id.is_empty() {
            tracing::warn!(group, old = %old, "group has no trunk server now");
        } else {
            tracing::info!(group, old = %old, new = %id, "trunk server elected");
        }
    }

    /// SERVER_SET_TRUNK_SERVER (94): `id` = None keeps the current trunk
    /// server or elects one; Some names the new one, refused while another
    /// holds the role. Returns the trunk server's id.
    pub fn set_trunk_server(
        &mut self,
        group: &str,
        id: Option<&str>,
    ) -> Result<String, TrackerError> {
        self.trunk_enabled()?;
        let Some(id) = id else {
            self.check_trunk_server(group);
            let g = self.group(group)?;
            if g.trunk_server.is_empty() {
                return Err(TrackerError::NoWritable(format!(
                    " in group {group} to become its trunk server"
                )));
            }
            return Ok(g.trunk_server.clone());
        };
        let g = self.group(group)?;
        // By key; without storage ids the key is the IP anyway.
        let target = g.storages.get(id).ok_or_else(|| TrackerError::NoStorage {
            group: group.to_owned(),
            id: id.to_owned(),
        })?;
        if g.trunk_server == target.id {
            return Err(TrackerError::AlreadyTrunk(target.id.clone()));
        }
        if let Some(cur) = g
            .storages
            .get(&g.trunk_server)
            .filter(|s| s.keeps_trunk_role())
        {
            return Err(TrackerError::Exists(format!(
                "group {group} already has trunk server {}",
                cur.id
            )));
        }
        if !target.is_active() {
            return Err(TrackerError::NotActive(target.id.clone()));
        }
        if !target.writable() {
            return Err(TrackerError::ReadOnly(target.id.clone()));
        }
        let id = target.id.clone();
        self.set_trunk(group, id.clone());
        Ok(id)
    }

    /// STORAGE_FETCH_TRUNK_FID (72): the group's current trunk file id.
    pub fn trunk_file_id(&self, group: &str) -> Result<u32, TrackerError> {
        self.trunk_enabled()?;
        Ok(self.group(group)?.current_trunk_file_id)
    }

    /// STORAGE_REPORT_TRUNK_FID (73): the trunk server made trunk file
    /// `fid`. The id only grows: a late report from a former trunk server
    /// must not make the next one reuse a file number.
    pub fn report_trunk_file_id(
        &mut self,
        group: &str,
        id: &str,
        fid: u32,
    ) -> Result<(), TrackerError> {
        self.trunk_enabled()?;
        self.storage(group, id)?;
        let g = self.group_mut(group)?;
        if fid > g.current_trunk_file_id {
            g.current_trunk_file_id = fid;
            self.state_version += 1;
        }
        Ok(())
    }

    /// STORAGE_REPORT_TRUNK_FREE (74): free trunk space of `id`, in MB.
    pub fn report_trunk_free(
        &mut self,
        group: &str,
        id: &str,
        mb: i64,
    ) -> Result<(), TrackerError> {
        self.trunk_enabled()?;
        if mb < 0 {
            return Err(TrackerError::Invalid(format!("trunk free space {mb} MB")));
        }
        self.storage_mut(group, id)?.trunk_free_mb = mb;
        self.stats_version += 1;
        Ok(())
    }

    /// Free trunk space of the group's trunk server (0 without one).
    fn trunk_free_mb(&self, g: &Group) -> i64 {
        if !self.settings.use_trunk_file {
            return 0;
        }
        g.storages
            .get(&g.trunk_server)
            .map_or(0, |s| s.trunk_free_mb)
    }

    fn is_trunk_server(&self, g: &Group, s: &Storage) -> bool {
        self.settings.use_trunk_file && !g.trunk_server.is_empty() && g.trunk_server == s.id
    }

    // ----- storage sessions (§6.2) -----

    /// JOIN (81) from `peer_ip`. Returns the storage id and the reply.
    pub fn join(
        &mut self,
        peer_ip: &str,
        req: &JoinReq,
        now: i64,
    ) -> Result<(String, JoinResp), TrackerError> {
        let gname = req.group.as_str().to_owned();
        if req.storage_port == 0 {
            return Err(TrackerError::Invalid("storage port 0".into()));
        }
        let Identity {
            id,
            ip: storage_ip,
            rw_mode,
        } = self.identify(peer_ip, req)?;
        let peer_ip = storage_ip.as_str();
        if let Some(g) = self.groups.get(&gname) {
            if g.storages.keys().any(|k| *k != id) {
                // With storage ids one host may run several servers of a
                // group, each on its own port (CONFIG.md §6).
                if g.port != req.storage_port && !self.settings.use_storage_id {
                    return Err(TrackerError::Invalid(format!(
                        "storage port {} differs from group {gname}'s port {}",
                        req.storage_port, g.port
                    )));
                }
                if g.store_path_count != req.store_path_count {
                    return Err(TrackerError::Invalid(format!(
                        "store path count {} differs from group {gname}'s {}",
                        req.store_path_count, g.store_path_count
                    )));
                }
            }
        }
        let changelog_end = self.changelog.len() as u64;
        let use_trunk = self.settings.use_trunk_file;
        let g = self
            .groups
            .entry(gname.clone())
            .or_insert_with(|| Group::new(&gname));
        g.port = req.storage_port;
        g.store_path_count = req.store_path_count;
        g.subdir_count = req.subdir_count_per_path;
        let is_new = !g.storages.contains_key(&id);
        let s = g
            .storages
            .entry(id.clone())
            .or_insert_with(|| Storage::new(&id, peer_ip, req.storage_port));
        let old = s.status;
        let new_status = if is_new {
            s.changelog_offset = changelog_end;
            // A server that says its initial sync is done (e.g. this tracker
            // lost its data, or was added later) is not sent through a full
            // sync again.
            if req.init_flag {
                status::INIT
            } else {
                status::ONLINE
            }
        } else {
            match old {
                status::DELETED | status::IP_CHANGED => {
                    // Another server now (or the same one starting over).
                    s.moved_to.clear();
                    s.changelog_offset = changelog_end;
                    s.sync_src_id.clear();
                    s.sync_until = 0;
                    status::INIT
                }
                status::OFFLINE | status::RECOVERY | status::ONLINE | status::ACTIVE => {
                    status::ONLINE
                }
                other => other,
            }
        };
        let addr_changed = s.ip != peer_ip || s.port != req.storage_port || s.rw_mode != rw_mode;
        s.ip = peer_ip.to_owned();
        s.port = req.storage_port;
        s.rw_mode = rw_mode;
        s.store_path_count = req.store_path_count;
        s.subdir_count = req.subdir_count_per_path;
        s.upload_priority = req.upload_priority;
        s.join_time = if req.join_time > 0 {
            req.join_time
        } else if s.join_time > 0 {
            s.join_time
        } else {
            now
        };
        s.up_time = req.up_time;
        s.version = req.version.clone();
        s.last_heartbeat = now;
        s.needs_group_list = true;
        // A new session starts knowing no trunk server (flag 2).
        s.needs_trunk_server = use_trunk;
        if s.paths.len() != req.store_path_count as usize {
            s.paths = vec![(0, 0); req.store_path_count as usize];
        }
        s.current_write_path %= req.store_path_count.max(1);
        let src_id = s.sync_src_id.clone();
        if is_new || addr_changed {
            g.members_changed();
            self.state_version += 1;
        }
        self.set_status(&gname, &id, new_status)?;
        // Without a status change: its rw mode may have changed.
        self.check_trunk_server(&gname);
        self.stats_version += 1;
        tracing::info!(group = %gname, id = %id, ip = peer_ip, new = is_new, status = status::name(new_status), "storage joined");
        Ok((
            id,
            JoinResp {
                status: new_status,
                src_id,
            },
        ))
    }

    /// Who a joining storage is. Without `use_storage_id`: its IP. With it:
    /// its storage_ids.conf entry, found by the id it sends (when
    /// `trust_storage_server_id`) or else by its address and port; the
    /// entry also gives its address and its `rw=` mode.
    fn identify(&self, peer_ip: &str, req: &JoinReq) -> Result<Identity, TrackerError> {
        if !self.settings.use_storage_id {
            return Ok(Identity {
                id: peer_ip.to_owned(),
                ip: peer_ip.to_owned(),
                rw_mode: RW_BOTH,
            });
        }
        let ids = &self.settings.storage_ids;
        let group = req.group.as_str();
        let peer: Option<IpAddr> = peer_ip.parse().ok();
        let entry = if self.settings.trust_storage_server_id && !req.storage_id.is_empty() {
            ids.by_id(&req.storage_id)
                .ok_or_else(|| TrackerError::UnknownId(req.storage_id.clone()))?
        } else {
            peer.and_then(|ip| ids.by_addr(group, ip, Some(req.storage_port)))
                .ok_or_else(|| {
                    TrackerError::UnknownId(format!(
                        "(none for {peer_ip}:{} in group {group})",
                        req.storage_port
                    ))
                })?
        };
        if entry.group_name != group {
            return Err(TrackerError::Invalid(format!(
                "storage id {} belongs to group {} in storage_ids.conf, not {group}",
                entry.id, entry.group_name
            )));
        }
        // The address clients are sent to: the one it connected from when
        // the entry lists it, else the entry's first (a NATed server).
        let ip = if peer.is_some_and(|ip| entry.has_ip(ip)) {
            peer_ip.to_owned()
        } else {
            entry
                .addrs
                .first()
                .map_or_else(|| peer_ip.to_owned(), IpAddr::to_string)
        };
        let rw_mode = match entry.rw {
            RwMode::Both => RW_BOTH,
            RwMode::Read => RW_READ,
            RwMode::Write => RW_WRITE,
            RwMode::None => 0,
        };
        Ok(Identity {
            id: entry.id.clone(),
            ip,
            rw_mode,
        })
    }

    /// The change-flags reply for `id`: the group's trunk server (flag 2,
    /// all zero = none) when it changed or `id` joined since it was last
    /// told, and the group list (flag 4) when something in the group
    /// changed since it last got one. Flag 1 is never set (DESIGN.md
    /// "Trackers without a leader").
    fn change_flags(&mut self, group: &str, id: &str) -> ChangeFlags {
        let use_trunk = self.settings.use_trunk_file;
        let Some(g) = self.groups.get_mut(group) else {
            return ChangeFlags::default();
        };
        let Some(me) = g.storages.get_mut(id) else {
            return ChangeFlags::default();
        };
        let needs_list = std::mem::take(&mut me.needs_group_list);
        let needs_trunk = std::mem::take(&mut me.needs_trunk_server) && use_trunk;
        ChangeFlags {
            leader: None,
            trunk_server: needs_trunk.then(|| {
                g.storages
                    .get(&g.trunk_server)
                    .map(Storage::brief)
                    .unwrap_or_default()
            }),
            group_servers: needs_list.then(|| g.storages.values().map(Storage::brief).collect()),
        }
    }

    /// Beat or disk report: the server is alive; it becomes ACTIVE unless it
    /// is still being initialised or was removed.
    fn alive(&mut self, group: &str, id: &str, now: i64) -> Result<(), TrackerError> {
        let s = self.storage_mut(group, id)?;
        s.last_heartbeat = now;
        let st = s.status;
        if !matches!(
            st,
            status::INIT
                | status::WAIT_SYNC
                | status::SYNCING
                | status::IP_CHANGED
                | status::DELETED
                | status::RECOVERY
        ) {
            self.set_status(group, id, status::ACTIVE)?;
        }
        Ok(())
    }

    /// BEAT (83), with or without the 348-byte counters.
    pub fn beat(
        &mut self,
        group: &str,
        id: &str,
        stat: Option<StatBuff>,
        now: i64,
    ) -> Result<ChangeFlags, TrackerError> {
        if let Some(st) = stat {
            self.storage_mut(group, id)?.stat = st;
        }
        self.alive(group, id, now)?;
        self.stats_version += 1;
        Ok(self.change_flags(group, id))
    }

    /// REPORT_DISK_USAGE (84).
    pub fn disk_usage(
        &mut self,
        group: &str,
        id: &str,
        usage: &DiskUsage,
        now: i64,
    ) -> Result<ChangeFlags, TrackerError> {
        let lb_path = self.settings.store_path == 2;
        let s = self.storage_mut(group, id)?;
        if usage.paths.len() != s.store_path_count as usize {
            return Err(TrackerError::Invalid(format!(
                "disk usage for {} paths, the server has {}",
                usage.paths.len(),
                s.store_path_count
            )));
        }
        s.paths = usage.paths.clone();
        if lb_path {
            // Load balance: the path with the most free space takes the
            // next uploads (first one on ties).
            let mut best = 0;
            for (i, p) in s.paths.iter().enumerate() {
                if p.1 > s.paths[best].1 {
                    best = i;
                }
            }
            s.current_write_path = best as u32;
        }
        self.alive(group, id, now)?;
        if self.settings.store_lookup == 2 {
            self.rebalance_write_group();
        }
        self.stats_version += 1;
        Ok(self.change_flags(group, id))
    }

    /// Load balance (§8.1): the group with the most free space (that has a
    /// writable server) becomes the current write group; with trunk files,
    /// when even that one is over its reserved space, the one with the most
    /// free trunk space.
    fn rebalance_write_group(&mut self) {
        let best_by = |key: &dyn Fn(&Group) -> i64| {
            let mut best: Option<(usize, i64)> = None;
            for (i, g) in self.groups.values().enumerate() {
                if g.writable().is_empty() {
                    continue;
                }
                let v = key(g);
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            best.map(|(i, _)| i)
        };
        let Some(mut i) = best_by(&|g| g.space().1) else {
            return;
        };
        let full = self
            .groups
            .values()
            .nth(i)
            .is_some_and(|g| !self.group_has_space(g));
        if full && self.settings.use_trunk_file {
            i = best_by(&|g| self.trunk_free_mb(g)).unwrap_or(i);
        }
        self.current_write_group = i;
    }

    /// SYNC_REPORT (89): progress of this server's incoming sync.
    pub fn sync_report(
        &mut self,
        group: &str,
        id: &str,
        report: &SyncReport,
    ) -> Result<ChangeFlags, TrackerError> {
        let s = self.storage_mut(group, id)?;
        for (peer, ts) in &report.entries {
            // The report carries an entry for the reporter itself (ts 0).
            if peer != id && !peer.is_empty() {
                s.synced.insert(peer.clone(), *ts);
            }
        }
        self.stats_version += 1;
        Ok(self.change_flags(group, id))
    }

    /// SYNC_DEST_REQ (87): a new server asks for its full-sync source.
    pub fn sync_dest_req(
        &mut self,
        group: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<SyncInfo>, TrackerError> {
        let src = self
            .group(group)?
            .storages
            .values()
            .find(|s| s.id != id && s.is_active())
            .map(|s| s.id.clone());
        match src {
            Some(src) => {
                let s = self.storage_mut(group, id)?;
                s.sync_src_id = src.clone();
                s.sync_until = now;
                self.state_version += 1;
                self.set_status(group, id, status::WAIT_SYNC)?;
                Ok(Some(SyncInfo {
                    src_id: src,
                    until_timestamp: now,
                }))
            }
            None => {
                self.set_status(group, id, status::ONLINE)?;
                Ok(None)
            }
        }
    }

    /// SYNC_NOTIFY (88): the server tells which source it syncs from.
    pub fn sync_notify(
        &mut self,
        group: &str,
        id: &str,
        info: &SyncInfo,
    ) -> Result<(), TrackerError> {
        let st = self.storage(group, id)?.status;
        if info.src_id.is_empty() {
            if matches!(st, status::INIT | status::WAIT_SYNC | status::SYNCING) {
                self.set_status(group, id, status::ONLINE)?;
            }
            return Ok(());
        }
        match self.group(group)?.storages.get(&info.src_id) {
            Some(src) if src.status != status::DELETED && src.status != status::IP_CHANGED => {}
            _ => {
                return Err(TrackerError::NoStorage {
                    group: group.to_owned(),
                    id: info.src_id.clone(),
                })
            }
        }
        let s = self.storage_mut(group, id)?;
        if s.sync_src_id.is_empty() {
            s.sync_src_id = info.src_id.clone();
            s.sync_until = info.until_timestamp;
            self.state_version += 1;
        }
        if st == status::INIT {
            self.set_status(group, id, status::WAIT_SYNC)?;
        }
        Ok(())
    }

    /// SYNC_SRC_REQ (86): a peer asks which source `dest` syncs from.
    pub fn sync_src_req(&self, group: &str, dest: &str) -> Result<Option<SyncInfo>, TrackerError> {
        let s = self.storage(group, dest)?;
        Ok(sync_info(s))
    }

    /// SYNC_DEST_QUERY (79): a server asks for its own source.
    pub fn sync_dest_query(&self, group: &str, id: &str) -> Result<Option<SyncInfo>, TrackerError> {
        Ok(sync_info(self.storage(group, id)?))
    }

    /// REPORT_STATUS (76): "peer X now has status S" from its sync source.
    pub fn report_status(&mut self, group: &str, brief: &StorageBrief) -> Result<(), TrackerError> {
        let id = if brief.id.is_empty() {
            &brief.ip
        } else {
            &brief.id
        };
        check_status_value(brief.status)?;
        let cur = self.storage(group, id)?.status;
        if matches!(cur, status::DELETED | status::IP_CHANGED) {
            return Ok(());
        }
        // A report that the full sync ended (OFFLINE) must not knock an
        // already serving server offline.
        if brief.status == status::OFFLINE && matches!(cur, status::ONLINE | status::ACTIVE) {
            return Ok(());
        }
        self.set_status(group, &id.clone(), brief.status)?;
        Ok(())
    }

    /// CHANGE_STATUS (59): the server sets its own status; ONLINE/ACTIVE
    /// requests are stored as OFFLINE (the next beat makes it ACTIVE).
    pub fn change_status(&mut self, group: &str, id: &str, new: u8) -> Result<(), TrackerError> {
        check_status_value(new)?;
        let new = if matches!(new, status::ONLINE | status::ACTIVE) {
            status::OFFLINE
        } else {
            new
        };
        self.set_status(group, id, new)?;
        Ok(())
    }

    /// The storage's tracker connection closed (or QUIT).
    pub fn disconnect(&mut self, group: &str, id: &str) {
        if let Ok(s) = self.storage(group, id) {
            if matches!(s.status, status::ACTIVE | status::ONLINE) {
                let _ = self.set_status(group, id, status::OFFLINE);
            }
        }
    }

    /// ACTIVE servers with no beat within check_active_interval go OFFLINE.
    /// Returns those that did.
    pub fn check_active(&mut self, now: i64) -> Vec<(String, String)> {
        let limit = self.settings.check_active_interval.as_secs() as i64;
        let stale: Vec<(String, String)> = self
            .groups
            .values()
            .flat_map(|g| {
                g.storages
                    .values()
                    .filter(|s| s.is_active() && now - s.last_heartbeat > limit)
                    .map(|s| (g.name.clone(), s.id.clone()))
            })
            .collect();
        for (g, id) in &stale {
            tracing::warn!(group = %g, id = %id, "no heartbeat within check_active_interval, storage is now OFFLINE");
            let _ = self.set_status(g, id, status::OFFLINE);
        }
        self.expire_trunk_holds(now);
        stale
    }

    /// CHANGELOG_REQ (77): changelog bytes this server has not seen yet.
    pub fn changelog_since(&mut self, group: &str, id: &str) -> Result<Vec<u8>, TrackerError> {
        let len = self.changelog.len() as u64;
        let from = self.storage(group, id)?.changelog_offset.min(len);
        let out = self.changelog[from as usize..].to_vec();
        if !out.is_empty() {
            self.storage_mut(group, id)?.changelog_offset = len;
            self.stats_version += 1;
        }
        Ok(out)
    }

    /// REPORT_IP_CHANGED (78), sent by a storage from `peer_ip` before it
    /// joins: the server known as `old_ip` is now `new_ip`. Its record moves
    /// to the new id with everything it had (space, counters, sync
    /// progress, join time); the old id stays as IP_CHANGED, and a changelog
    /// line `<ts> <group> <old> 3 <new>` tells the group's other servers to
    /// carry their replication marks over (CHANGELOG_REQ).
    pub fn ip_changed(
        &mut self,
        group: &str,
        old_ip: &str,
        new_ip: &str,
        peer_ip: &str,
        now: i64,
    ) -> Result<(), TrackerError> {
        if self.settings.use_storage_id {
            return Err(TrackerError::NotSupported(
                "IP change reports: storages are known by id here".into(),
            ));
        }
        if new_ip != peer_ip {
            return Err(TrackerError::Invalid(format!(
                "reported new IP {new_ip} is not the connection's {peer_ip}"
            )));
        }
        if old_ip.is_empty() || old_ip == new_ip {
            return Err(TrackerError::Invalid(format!(
                "IP change from {old_ip:?} to {new_ip:?}"
            )));
        }
        let g = self.group_mut(group)?;
        let unknown = || TrackerError::NoStorage {
            group: group.to_owned(),
            id: old_ip.to_owned(),
        };
        // A repeated report (another tracker session) finds the old record
        // already moved: "unknown", not "taken".
        if g.storages
            .get(old_ip)
            .is_none_or(|o| matches!(o.status, status::DELETED | status::IP_CHANGED))
        {
            return Err(unknown());
        }
        if let Some(taken) = g.storages.get(new_ip) {
            if !matches!(taken.status, status::DELETED | status::IP_CHANGED) {
                return Err(TrackerError::Exists(format!(
                    "storage {new_ip} of group {group} is {}",
                    status::name(taken.status)
                )));
            }
        }
        let old = g.storages.get_mut(old_ip).ok_or_else(unknown)?;
        let mut moved = old.clone();
        moved.id = new_ip.to_owned();
        moved.ip = new_ip.to_owned();
        moved.needs_group_list = true;
        moved.moved_to.clear();
        if let Some(v) = moved.synced.remove(old_ip) {
            moved.synced.insert(new_ip.to_owned(), v);
        }
        old.status = status::IP_CHANGED;
        old.moved_to = new_ip.to_owned();
        old.paths.iter_mut().for_each(|p| *p = (0, 0));
        old.sync_src_id.clear();
        old.sync_until = 0;
        old.synced.clear();
        g.storages.insert(new_ip.to_owned(), moved);
        // Same machine, new key: it keeps its place in trunk elections.
        if g.last_trunk_server == old_ip {
            g.last_trunk_server = new_ip.to_owned();
        }
        let was_trunk = g.trunk_server == old_ip;
        if was_trunk {
            g.trunk_server = new_ip.to_owned();
        }
        for other in g.storages.values_mut() {
            other.needs_trunk_server |= was_trunk;
            if let Some(v) = other.synced.remove(old_ip) {
                other.synced.insert(new_ip.to_owned(), v);
            }
            if other.sync_src_id == old_ip {
                other.sync_src_id = new_ip.to_owned();
            }
        }
        g.members_changed();
        self.changelog.extend_from_slice(
            format!("{now} {group} {old_ip} {} {new_ip}\n", status::IP_CHANGED).as_bytes(),
        );
        self.state_version += 1;
        self.check_trunk_server(group);
        tracing::info!(group, old = old_ip, new = new_ip, "storage IP changed");
        Ok(())
    }

    // ----- admin (§3.3) -----

    /// DELETE_STORAGE (93).
    pub fn delete_storage(&mut self, group: &str, id: &str, now: i64) -> Result<(), TrackerError> {
        let s = self.storage(group, id)?;
        match s.status {
            status::DELETED => return Err(TrackerError::AlreadyDeleted(id.to_owned())),
            status::ONLINE | status::ACTIVE | status::RECOVERY => {
                return Err(TrackerError::Busy(id.to_owned()))
            }
            _ => {}
        }
        let s = self.storage_mut(group, id)?;
        // What upstream shows after a delete (golden delete_storage): no
        // space, no source.
        s.paths.iter_mut().for_each(|p| *p = (0, 0));
        s.sync_src_id.clear();
        s.sync_until = 0;
        s.synced.clear();
        self.set_status(group, id, status::DELETED)?;
        self.changelog
            .extend_from_slice(format!("{now} {group} {id} {} \n", status::DELETED).as_bytes());
        // Others stop counting on it as a sync source.
        for other in self.group_mut(group)?.storages.values_mut() {
            other.synced.remove(id);
        }
        tracing::info!(group, id, "storage deleted");
        Ok(())
    }

    /// DELETE_GROUP (108): only a group whose servers are all deleted.
    pub fn delete_group(&mut self, group: &str) -> Result<(), TrackerError> {
        let g = self.group(group)?;
        if let Some(s) = g.storages.values().find(|s| s.status != status::DELETED) {
            return Err(TrackerError::Busy(format!(
                "group {group} still has storage {}",
                s.id
            )));
        }
        self.groups.remove(group);
        self.current_write_group = 0;
        self.state_version += 1;
        tracing::info!(group, "group deleted");
        Ok(())
    }

    // ----- placement (§8) -----

    /// reserved_storage_space in MB for a group or a server of `total_mb`.
    pub fn reserved_mb(&self, total_mb: i64) -> i64 {
        match self.settings.reserved {
            ReservedSpace::Bytes(b) => (b / MB) as i64,
            ReservedSpace::Ratio(r) => (total_mb as f64 * r) as i64,
        }
    }

    /// §8.5: more than the reserved space is free. A reservation in bytes
    /// is split into `shares` (one per store path for a path check).
    fn has_space(&self, total: i64, free: i64, shares: i64) -> bool {
        match self.settings.reserved {
            ReservedSpace::Bytes(b) => free > (b / MB) as i64 / shares,
            ReservedSpace::Ratio(r) => total > 0 && (free as f64 / total as f64) > r,
        }
    }

    /// §8.5 group check.
    fn group_has_space(&self, g: &Group) -> bool {
        let (total, free) = g.space();
        self.has_space(total, free, 1)
    }

    /// §8.5 trunk-aware group check: free space inside trunk files counts
    /// too (small files still fit there when the disks are full).
    fn group_has_trunk_space(&self, g: &Group) -> bool {
        let (total, free) = g.space();
        self.settings.use_trunk_file && self.has_space(total, free + self.trunk_free_mb(g), 1)
    }

    /// §8.5 path check, counting `extra_mb` as free too.
    fn path_has_space(&self, s: &Storage, path: usize, extra_mb: i64) -> bool {
        let Some(&(total, free)) = s.paths.get(path) else {
            return false;
        };
        self.has_space(total, free + extra_mb, i64::from(s.store_path_count.max(1)))
    }

    /// Picks the group for an upload without a group name (§8.1).
    fn pick_group(&mut self) -> Result<String, TrackerError> {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        if self.settings.store_lookup == 1 {
            let g = self.group(&self.settings.store_group)?;
            if g.writable().is_empty() {
                return Err(TrackerError::NoWritable(format!(" in group {}", g.name)));
            }
            if !self.group_has_space(g) && !self.group_has_trunk_space(g) {
                return Err(TrackerError::NoSpace(format!("group {}", g.name)));
            }
            return Ok(g.name.clone());
        }
        if names.is_empty() {
            return Err(TrackerError::NoWritable(": no groups".into()));
        }
        let n = names.len();
        let start = self.current_write_group % n;
        let mut any_writable = false;
        // The plain check first, then (with trunk files) the trunk-aware one.
        for trunk_aware in [false, true] {
            for k in 0..n {
                let i = (start + k) % n;
                let g = &self.groups[&names[i]];
                if g.writable().is_empty() {
                    continue;
                }
                any_writable = true;
                let fits = if trunk_aware {
                    self.group_has_trunk_space(g)
                } else {
                    self.group_has_space(g)
                };
                if fits {
                    self.current_write_group = if self.settings.store_lookup == 0 {
                        (i + 1) % n
                    } else {
                        i
                    };
                    return Ok(names[i].clone());
                }
            }
            if !any_writable || !self.settings.use_trunk_file {
                break;
            }
        }
        if any_writable {
            Err(TrackerError::NoSpace(
                "every group is over its reserved space".into(),
            ))
        } else {
            Err(TrackerError::NoWritable(" in any group".into()))
        }
    }

    /// Where to upload (101/104/106/107). `group` = None lets the tracker
    /// choose; `all` returns every writable server of the group.
    pub fn query_store(
        &mut self,
        group: Option<&str>,
        all: bool,
    ) -> Result<StoreChoice, TrackerError> {
        let gname = match group {
            Some(name) => {
                let g = self.group(name)?;
                if g.writable().is_empty() {
                    return Err(TrackerError::NoWritable(format!(" in group {name}")));
                }
                if !self.group_has_space(g) && !self.group_has_trunk_space(g) {
                    return Err(TrackerError::NoSpace(format!("group {name}")));
                }
                name.to_owned()
            }
            None => self.pick_group()?,
        };
        let store_server = self.settings.store_server;
        let g = self.groups.get_mut(&gname).expect("group picked above");
        let writable: Vec<String> = g.writable().iter().map(|s| s.id.clone()).collect();
        let chosen = writable[g.pick_writable(store_server)].clone();
        // 106/107 compute the path against the first server of the list.
        let path_server = if all {
            writable[0].clone()
        } else {
            chosen.clone()
        };
        let path = self.pick_path(&gname, &path_server)?;
        let g = &self.groups[&gname];
        let servers = if all {
            g.writable().iter().map(|s| s.addr()).collect()
        } else {
            vec![g.storages[&chosen].addr()]
        };
        Ok(StoreChoice {
            group: gname,
            servers,
            store_path_index: path,
        })
    }

    /// §8.3: the store path on `id` for the next upload (then, with trunk
    /// files, the first whose free space and the group's free trunk space
    /// pass together).
    fn pick_path(&mut self, group: &str, id: &str) -> Result<u8, TrackerError> {
        let s = self.storage(group, id)?;
        let n = s.store_path_count.max(1) as usize;
        let start = s.current_write_path as usize % n;
        let trunk_free = self.trunk_free_mb(&self.groups[group]);
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&p| self.path_has_space(s, p, 0))
            .or_else(|| {
                (trunk_free > 0)
                    .then(|| {
                        (0..n)
                            .map(|k| (start + k) % n)
                            .find(|&p| self.path_has_space(s, p, trunk_free))
                    })
                    .flatten()
            });
        let Some(p) = found else {
            return Err(TrackerError::NoSpace(format!(
                "every store path of {id} is over its reserved space"
            )));
        };
        if self.settings.store_path == 0 {
            self.storage_mut(group, id)?.current_write_path = ((p + 1) % n) as u32;
        }
        Ok(p as u8)
    }

    /// The sync progress of `s` relevant to a file from `source`: what `s`
    /// received from that source when it reported it, else the aggregate of
    /// §8.4 (minimum over ACTIVE peers with store_server 0, else maximum).
    fn synced_timestamp(&self, g: &Group, s: &Storage, source: Option<&Storage>) -> i64 {
        if let Some(src) = source {
            if let Some(ts) = s.synced.get(&src.id) {
                return i64::from(*ts);
            }
        }
        let vals = s
            .synced
            .iter()
            // A report also names the reporter itself, with 0 (golden §12.7).
            .filter(|(peer, _)| **peer != s.id)
            .filter(|(peer, _)| g.storages.get(*peer).is_some_and(|p| p.is_active()))
            .map(|(_, ts)| i64::from(*ts));
        let v = if self.settings.store_server == 0 {
            vals.min()
        } else {
            vals.max()
        };
        v.unwrap_or(0)
    }

    /// §8.4: may `s` serve a normal file created at `ts` by `source`?
    fn may_serve(
        &self,
        g: &Group,
        s: &Storage,
        source: Option<&Storage>,
        ts: i64,
        now: i64,
    ) -> bool {
        if source.is_some_and(|src| src.id == s.id) {
            return true;
        }
        let max_delay = self.settings.storage_sync_file_max_delay.as_secs() as i64;
        let max_time = self.settings.storage_sync_file_max_time.as_secs() as i64;
        if ts < now - max_delay {
            return true;
        }
        let synced = self.synced_timestamp(g, s, source);
        synced > ts || (synced + 1 >= ts && now - ts > max_time)
    }

    /// Where to download from (102: one server, 105: all that may hold it).
    pub fn query_fetch(
        &mut self,
        group: &str,
        name: &LogicName,
        all: bool,
        now: i64,
    ) -> Result<Vec<ServerAddr>, TrackerError> {
        let g = self.group(group)?;
        let source = g.source_of(name.info.source);
        let source_only = matches!(name.kind, FileKind::Slave | FileKind::Appender)
            || self.settings.download_server == 1;
        if source_only {
            if let Some(src) = source.filter(|s| s.readable()) {
                return Ok(vec![src.addr()]);
            }
            // Source gone: fall back to the servers that may hold a copy.
        }
        let ts = i64::from(name.info.timestamp);
        let readable = g.readable();
        if readable.is_empty() {
            return Err(TrackerError::NoReadable(group.to_owned()));
        }
        if all {
            let list: Vec<ServerAddr> = readable
                .iter()
                .filter(|s| self.may_serve(g, s, source, ts, now))
                .map(|s| s.addr())
                .collect();
            if !list.is_empty() {
                return Ok(list);
            }
            return self.fetch_fallback(group).map(|a| vec![a]);
        }
        let n = readable.len();
        let start = g.current_read_server % n;
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.may_serve(g, readable[i], source, ts, now));
        match found {
            Some(i) => {
                let addr = readable[i].addr();
                if self.settings.download_server == 0 {
                    let g = self.group_mut(group)?;
                    g.current_read_server = (start + 1) % n;
                }
                Ok(vec![addr])
            }
            None => self.fetch_fallback(group).map(|a| vec![a]),
        }
    }

    /// §8.4 fallback: the group's first writable server if it is readable.
    fn fetch_fallback(&self, group: &str) -> Result<ServerAddr, TrackerError> {
        let g = self.group(group)?;
        g.writable()
            .into_iter()
            .find(|s| s.readable())
            .map(|s| s.addr())
            .ok_or_else(|| TrackerError::NoReadable(group.to_owned()))
    }

    /// Where to send an update (103): the source if writable, else a
    /// writable server by the store_server rule.
    pub fn query_update(
        &mut self,
        group: &str,
        name: &LogicName,
    ) -> Result<ServerAddr, TrackerError> {
        let g = self.group(group)?;
        if let Some(src) = g.source_of(name.info.source).filter(|s| s.writable()) {
            return Ok(src.addr());
        }
        if g.writable().is_empty() {
            return Err(TrackerError::NoWritable(format!(" in group {group}")));
        }
        let store_server = self.settings.store_server;
        let g = self.group_mut(group)?;
        let i = g.pick_writable(store_server);
        Ok(g.writable()[i].addr())
    }

    // ----- listings (§3.3) -----

    fn group_stat(&self, g: &Group) -> GroupStat {
        let (total, free) = g.space();
        GroupStat {
            group_name: g.name.clone(),
            total_mb: total,
            free_mb: free,
            reserved_mb: self.reserved_mb(total),
            trunk_free_mb: self.trunk_free_mb(g),
            storage_count: g.storages.len() as i64,
            storage_port: i64::from(g.port),
            readable_server_count: g.readable().len() as i64,
            writable_server_count: g.writable().len() as i64,
            current_write_server: g.current_write_server as i64,
            store_path_count: i64::from(g.store_path_count),
            subdir_count_per_path: i64::from(g.subdir_count),
            // -1: trunk files off (golden list_groups_storages).
            current_trunk_file_id: if self.settings.use_trunk_file {
                i64::from(g.current_trunk_file_id)
            } else {
                -1
            },
        }
    }

    /// 91 (all groups) or 90 (one).
    pub fn group_stats(&self, group: Option<&str>) -> Result<Vec<GroupStat>, TrackerError> {
        match group {
            Some(name) => Ok(vec![self.group_stat(self.group(name)?)]),
            None => Ok(self.groups.values().map(|g| self.group_stat(g)).collect()),
        }
    }

    /// 91/90 in the V6.10 layout (`stat_layout = 6.10`). The tracker does
    /// not learn the storages' HTTP ports: 0, as an old tracker sent when
    /// none was configured.
    pub fn group_stats_v610(
        &self,
        group: Option<&str>,
    ) -> Result<Vec<GroupStatV610>, TrackerError> {
        let old = |g: &Group| {
            let active = g.storages.values().filter(|s| s.is_active()).count();
            GroupStatV610::from_current(&self.group_stat(g), 0, active as i64)
        };
        match group {
            Some(name) => Ok(vec![old(self.group(name)?)]),
            None => Ok(self.groups.values().map(old).collect()),
        }
    }

    /// 92 in the V6.10 layout (HTTP port 0, as for the groups).
    pub fn storage_stats_v610(
        &self,
        group: &str,
        id: Option<&str>,
    ) -> Result<Vec<StorageStatV610>, TrackerError> {
        Ok(self
            .storage_stats(group, id)?
            .iter()
            .map(|s| StorageStatV610::from_current(s, 0))
            .collect())
    }

    /// 92: the servers of a group (sorted by id), or one of them.
    pub fn storage_stats(
        &self,
        group: &str,
        id: Option<&str>,
    ) -> Result<Vec<StorageStat>, TrackerError> {
        let g = self.group(group)?;
        let one = |s: &Storage| {
            let mut stat = s.stat.clone();
            stat.counters[STAT_LAST_HEART_BEAT] = s.last_heartbeat;
            // What the server reported receiving from its peers, at the
            // least (offline peers included), as upstream's monitor shows it.
            if let Some(ts) = s
                .synced
                .iter()
                .filter(|(peer, _)| **peer != s.id)
                .filter(|(peer, _)| {
                    g.storages
                        .get(*peer)
                        .is_some_and(|p| p.status != status::DELETED)
                })
                .map(|(_, ts)| i64::from(*ts))
                .min()
            {
                stat.counters[STAT_LAST_SYNCED] = ts;
            }
            StorageStat {
                status: s.status,
                rw_mode: s.rw_mode,
                id: s.id.clone(),
                ip_addr: s.ip.clone(),
                src_id: s.sync_src_id.clone(),
                version: s.version.clone(),
                join_time: s.join_time,
                up_time: s.up_time,
                total_mb: s.total_mb(),
                free_mb: s.free_mb(),
                reserved_mb: self.reserved_mb(s.total_mb()),
                upload_priority: s.upload_priority,
                store_path_count: i64::from(s.store_path_count),
                subdir_count_per_path: i64::from(s.subdir_count),
                current_write_path: i64::from(s.current_write_path),
                storage_port: i64::from(s.port),
                stat,
                if_trunk_server: self.is_trunk_server(g, s),
                ip_size: self.settings.ip_size,
            }
        };
        match id {
            Some(id) => Ok(vec![one(self.storage(group, id)?)]),
            None => Ok(g.storages.values().map(one).collect()),
        }
    }

    /// 71: the brief of the server at `ip:port` in `group`.
    pub fn find_by_addr(&self, group: &str, addr: &str) -> Result<&Storage, TrackerError> {
        let g = self.group(group)?;
        let (ip, port) = split_host_port(addr);
        g.storages
            .values()
            .find(|s| (s.ip == ip || s.id == ip) && port.is_none_or(|p| p == s.port))
            .ok_or_else(|| TrackerError::NoStorage {
                group: group.to_owned(),
                id: addr.to_owned(),
            })
    }

    pub fn brief(&self, group: &str, addr: &str) -> Result<StorageBrief, TrackerError> {
        self.find_by_addr(group, addr).map(Storage::brief)
    }

    /// 97: every server, filtered (filter_by 1 = trunk flag, 2 = status
    /// with op `=` or `!`).
    pub fn storage_cluster_stat(&self, filter: [u8; 4]) -> StorageClusterStat {
        let [by, op, st, trunk] = filter;
        let storages = self
            .groups
            .values()
            .flat_map(|g| g.storages.values().map(move |s| (g, s)))
            .filter(|(g, s)| by & 1 == 0 || self.is_trunk_server(g, s) == (trunk != 0))
            .map(|(g, s)| (self.is_trunk_server(g, s), s))
            .filter(|(_, s)| {
                by & 2 == 0
                    || match op {
                        b'!' => s.status != st,
                        _ => s.status == st,
                    }
            })
            .map(|(is_trunk_server, s)| StorageClusterInfo {
                id: s.id.clone(),
                host: format!("{}:{}", s.ip, s.port),
                is_trunk_server,
                status: s.status,
                connections: [
                    s.stat.connection_alloc_count,
                    s.stat.connection_current_count,
                    s.stat.connection_max_count,
                ],
                version: s.version.clone(),
                up_time: s.up_time,
                last_heartbeat: s.last_heartbeat,
            })
            .collect();
        StorageClusterStat {
            use_storage_id: self.settings.use_storage_id,
            use_trunk_file: self.settings.use_trunk_file,
            storages,
        }
    }

    /// 98: space per group, filtered (1 disk, 2 trunk, 4 any space).
    pub fn volume_stat(&self, filter: [u8; 4]) -> VolumeStat {
        let [by, disk, trunk, space] = filter;
        let volumes = self
            .groups
            .values()
            .map(|g| {
                let (total, free) = g.space();
                let reserved = self.reserved_mb(total);
                let is_disk_available = self.group_has_space(g);
                let trunk_free_mb = self.trunk_free_mb(g);
                // Small files can be packed when the group has a trunk
                // server and it has free slots, or disk room to create the
                // next trunk file (it makes one when its slots run out).
                let is_trunk_available = self.settings.use_trunk_file
                    && !g.trunk_server.is_empty()
                    && (trunk_free_mb > 0 || is_disk_available);
                VolumeInfo {
                    group_name: g.name.clone(),
                    total_mb: total,
                    free_mb: free,
                    reserved_mb: reserved,
                    avail_mb: (free - reserved).max(0),
                    trunk_free_mb,
                    is_disk_available,
                    is_trunk_available,
                }
            })
            .filter(|v| by & 1 == 0 || v.is_disk_available == (disk != 0))
            .filter(|v| by & 2 == 0 || v.is_trunk_available == (trunk != 0))
            .filter(|v| {
                by & 4 == 0 || (v.is_disk_available || v.is_trunk_available) == (space != 0)
            })
            .collect();
        VolumeStat {
            use_trunk_file: self.settings.use_trunk_file,
            volumes,
        }
    }

    /// The response IP size in force.
    pub fn ip_size(&self) -> IpSize {
        self.settings.ip_size
    }

    /// After loading saved state: nobody is connected yet, so no server
    /// holds the trunk role; the saved one is preferred when it is back.
    pub fn mark_all_offline(&mut self) {
        for g in self.groups.values_mut() {
            if !g.trunk_server.is_empty() {
                g.last_trunk_server = std::mem::take(&mut g.trunk_server);
            }
            g.trunk_hold = self.settings.use_trunk_file && !g.last_trunk_server.is_empty();
            g.trunk_hold_since = None;
            for s in g.storages.values_mut() {
                if matches!(s.status, status::ACTIVE | status::ONLINE) {
                    s.status = status::OFFLINE;
                }
                s.needs_group_list = true;
            }
        }
    }
}

fn sync_info(s: &Storage) -> Option<SyncInfo> {
    (!s.sync_src_id.is_empty()).then(|| SyncInfo {
        src_id: s.sync_src_id.clone(),
        until_timestamp: s.sync_until,
    })
}

fn check_status_value(v: u8) -> Result<(), TrackerError> {
    match v {
        status::INIT..=status::ACTIVE | status::RECOVERY => Ok(()),
        _ => Err(TrackerError::Invalid(format!(
            "status {v} is not a storage status"
        ))),
    }
}

/// `ip:port`, `[v6]:port` or a bare host.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (rest.trim_end_matches(']'), None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (s, None),
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

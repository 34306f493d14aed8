//! The tracker's request handlers: decode (fdfs-proto), ask the
//! [`Cluster`], encode the reply. One function per command family; the
//! connection loop is [`Tracker::serve_conn`].
//!
//! Hostile input (PROTOCOL.md §12.10, golden bad_requests): an unknown
//! command or a body of the wrong length gets EINVAL and the connection
//! stays open; a negative or over-limit `pkg_len` closes at once without a
//! reply (runtime's `Conn::read_header`); every refusal is logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fdfs_conf::StatLayout;
use fdfs_proto::cmd::{self, tracker as t};
use fdfs_proto::errno;
use fdfs_proto::server::{
    ChangeFlags, DiskUsage, GetMyIpReq, GroupIdReq, IpChangedReq, JoinReq, ReportStatusReq,
    StorageBrief, SyncInfo, SyncReport,
};
use fdfs_proto::tracker::{
    encode_params, DeleteStorageReq, FetchResp, FetchStorageIdsReq, FileReq, FilterReq4,
    GroupAddrReq, GroupReq, ListStorageReq, StatBuff, StoreAllResp, StoreResp,
    TrackerClusterStatReq, TrackerInfo,
};
use fdfs_proto::{GroupName, ServerAddr};
use fdfs_runtime::net::{Conn, ConnError};
use tracing::{debug, info, warn};

use crate::cluster::Cluster;
use crate::error::TrackerError;
use crate::persist;
use crate::storage_ids;

/// What to do after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Status 0 with this body.
    Ok(Vec<u8>),
    /// A bare error status; the connection stays open.
    Err(u8),
    /// Close without replying (QUIT).
    Close,
}

/// Per-connection state: which storage joined on it.
#[derive(Debug, Default)]
pub struct Session {
    pub joined: Option<Joined>,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub group: String,
    pub id: String,
    /// Tells this connection apart from a newer one of the same storage.
    serial: u64,
}

/// The tracker service: the cluster behind a lock plus what the listings
/// report about this process.
pub struct Tracker {
    cluster: Mutex<Cluster>,
    data_dir: PathBuf,
    /// Our configured port (for GET_LEADER and cluster stat).
    pub(crate) port: u16,
    pub(crate) started: i64,
    max_connections: u32,
    pub(crate) current_conns: AtomicU32,
    max_conns_seen: AtomicU32,
    /// Newest session per storage: only its close marks the storage OFFLINE.
    sessions: Mutex<HashMap<(String, String), u64>>,
    next_serial: AtomicU64,
    /// Serialises saves; holds the state version last written.
    saved: tokio::sync::Mutex<(u64, u64)>,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Tracker {
    pub fn new(cluster: Cluster, data_dir: PathBuf, port: u16, max_connections: u32) -> Tracker {
        let versions = (cluster.state_version, cluster.stats_version);
        Tracker {
            cluster: Mutex::new(cluster),
            data_dir,
            port,
            started: now(),
            max_connections,
            current_conns: AtomicU32::new(0),
            max_conns_seen: AtomicU32::new(0),
            sessions: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
            saved: tokio::sync::Mutex::new(versions),
        }
    }

    /// The cluster, for tests and the background worker. A poisoned lock
    /// (a panic in another handler) still holds consistent data: every
    /// mutation is a few field writes.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves when the membership/status changed (`stats` = also when only
    /// counters changed). Errors are logged: the tracker keeps serving.
    pub async fn persist(&self, stats: bool) {
        let mut saved = self.saved.lock().await;
        let (state, snapshot) = {
            let c = self.cluster();
            let v = (c.state_version, c.stats_version);
            let due = v.0 != saved.0 || (stats && v.1 != saved.1);
            if !due {
                return;
            }
            (v, (persist::render(&c), c.changelog.clone()))
        };
        let dir = self.data_dir.clone();
        let r = tokio::task::spawn_blocking(move || {
            persist::save_parts(&dir, &snapshot.0, &snapshot.1)
        })
        .await;
        match r {
            Ok(Ok(())) => *saved = state,
            Ok(Err(e)) => warn!(error = %e, "cannot save tracker state"),
            Err(e) => warn!(error = %e, "state saver failed"),
        }
    }

    fn conn_counters(&self) -> [u32; 3] {
        [
            self.max_connections,
            self.current_conns.load(Ordering::Relaxed),
            self.max_conns_seen.load(Ordering::Relaxed),
        ]
    }

    /// Runs one connection until it closes.
    pub async fn serve_conn(self: Arc<Self>, mut conn: Conn) {
        let cur = self.current_conns.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_conns_seen.fetch_max(cur, Ordering::Relaxed);
        let peer = conn.peer();
        debug!(%peer, "connection opened");
        let mut session = Session::default();
        loop {
            let h = match conn.read_header().await {
                Ok(h) => h,
                Err(e) => {
                    log_close(peer, &e, "waiting for a request");
                    break;
                }
            };
            let body = match conn.read_body(h.pkg_len).await {
                Ok(b) => b,
                Err(e) => {
                    log_close(peer, &e, "reading a request body");
                    break;
                }
            };
            let reply = self.handle(&mut session, h.cmd, &body, peer, conn.local(), now());
            let sent = match &reply {
                Reply::Close => {
                    debug!(%peer, "QUIT");
                    break;
                }
                Reply::Ok(b) => conn.send(errno::OK, b).await,
                Reply::Err(st) => conn.send_status(*st).await,
            };
            self.persist(false).await;
            if let Err(e) = sent {
                log_close(peer, &e, "sending a reply");
                break;
            }
        }
        if let Some(j) = session.joined.take() {
            let newest = {
                let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                sessions.get(&(j.group.clone(), j.id.clone())) == Some(&j.serial)
            };
            if newest {
                info!(group = %j.group, id = %j.id, %peer, "storage connection closed");
                self.cluster().disconnect(&j.group, &j.id);
                self.persist(false).await;
            }
        }
        self.current_conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Handles one request. Public so tests can drive it without sockets.
    pub fn handle(
        &self,
        session: &mut Session,
        cmd_code: u8,
        body: &[u8],
        peer: SocketAddr,
        local: SocketAddr,
        now: i64,
    ) -> Reply {
        let r = self.dispatch(session, cmd_code, body, peer, local, now);
        match r {
            Ok(Some(b)) => Reply::Ok(b),
            Ok(None) => Reply::Close,
            Err(e) => {
                let st = e.errno();
                let name = cmd::name(cmd_code);
                match st {
                    errno::EINVAL | errno::EACCES => {
                        warn!(%peer, cmd = cmd_code, name, error = %e, "request refused")
                    }
                    _ => info!(%peer, cmd = cmd_code, name, error = %e, "request failed"),
                }
                Reply::Err(st)
            }
        }
    }

    fn dispatch(
        &self,
        session: &mut Session,
        c: u8,
        body: &[u8],
        peer: SocketAddr,
        local: SocketAddr,
        now: i64,
    ) -> Result<Option<Vec<u8>>, TrackerError> {
        let ok = |v: Vec<u8>| Ok(Some(v));
        match c {
            cmd::QUIT => Ok(None),
            cmd::ACTIVE_TEST => {
                empty(body)?;
                ok(Vec::new())
            }
            t::QUERY_STORE_WITHOUT_GROUP_ONE
            | t::QUERY_STORE_WITH_GROUP_ONE
            | t::QUERY_STORE_WITHOUT_GROUP_ALL
            | t::QUERY_STORE_WITH_GROUP_ALL => ok(self.query_store(c, body, peer.ip())?),
            t::QUERY_FETCH_ONE | t::QUERY_FETCH_ALL | t::QUERY_UPDATE => {
                ok(self.query_fetch(c, body, peer.ip(), now)?)
            }
            t::SERVER_LIST_ALL_GROUPS => {
                empty(body)?;
                ok(self.list_groups(None)?)
            }
            t::SERVER_LIST_ONE_GROUP => {
                let req = GroupReq::decode(body)?;
                ok(self.list_groups(Some(req.group.as_str()))?)
            }
            t::SERVER_LIST_STORAGE => {
                let req = ListStorageReq::decode(body)?;
                ok(self.list_storages(req.group.as_str(), req.storage_id.as_deref(), peer.ip())?)
            }
            t::SERVER_DELETE_STORAGE => {
                let req = DeleteStorageReq::decode(body)?;
                self.cluster()
                    .delete_storage(req.group.as_str(), &req.storage_id, now)?;
                ok(Vec::new())
            }
            t::SERVER_DELETE_GROUP => {
                let req = GroupReq::decode(body)?;
                self.cluster().delete_group(req.group.as_str())?;
                ok(Vec::new())
            }
            t::SERVER_GET_LEADER => {
                empty(body)?;
                // No leader election (DESIGN.md "Trackers without a leader"):
                // every tracker names itself.
                ok(self.own_addr(local).into_bytes())
            }
            t::SERVER_TRACKER_CLUSTER_STAT => {
                let req = TrackerClusterStatReq::decode(body)?;
                let me = TrackerInfo {
                    host: self.own_addr(local),
                    is_leader: true,
                    is_active: true,
                    connections: self.conn_counters(),
                    version: fdfs_proto::common::VERSION.to_owned(),
                    up_time: self.started,
                    last_heartbeat: 0,
                };
                let keep = (req.filter_by & 1 == 0 || me.is_active == (req.is_active != 0))
                    && (req.filter_by & 2 == 0 || me.is_leader == (req.is_leader != 0));
                let list = if keep { vec![me] } else { Vec::new() };
                let mut out = Vec::new();
                TrackerInfo::encode_list(&list, &mut out);
                ok(out)
            }
            t::SERVER_STORAGE_CLUSTER_STAT => {
                let req = FilterReq4::decode(body)?;
                let mut out = Vec::new();
                self.cluster().storage_cluster_stat(req.0).encode(&mut out);
                ok(out)
            }
            t::SERVER_STORAGE_VOLUMN_STAT => {
                let req = FilterReq4::decode(body)?;
                let mut out = Vec::new();
                self.cluster().volume_stat(req.0).encode(&mut out);
                ok(out)
            }
            t::STORAGE_PARAMETER_REQ => {
                empty(body)?;
                ok(encode_params(&self.cluster().settings.parameters()))
            }
            t::STORAGE_FETCH_STORAGE_IDS => {
                let req = FetchStorageIdsReq::decode(body)?;
                let c = self.cluster();
                if c.settings.use_storage_id {
                    let mut out = Vec::new();
                    storage_ids::fetch_page(&c.settings.storage_ids, req.start_index)
                        .encode(&mut out);
                    return ok(out);
                }
                if !req.allow_empty {
                    return Err(TrackerError::NotSupported(
                        "use_storage_id is off: no storage ids".into(),
                    ));
                }
                ok(vec![0; 8])
            }
            t::STORAGE_GET_SERVER_ID => {
                let req = GroupAddrReq::decode(body)?;
                let c = self.cluster();
                if c.settings.use_storage_id {
                    let id = storage_ids::server_id(
                        &c.settings.storage_ids,
                        req.group.as_str(),
                        &req.addr,
                    )?;
                    ok(id.into_bytes())
                } else {
                    // The id is the IP itself.
                    let ip = req.addr.rsplit_once(':').map_or(req.addr.as_str(), |p| p.0);
                    ok(ip
                        .trim_matches(|c| c == '[' || c == ']')
                        .as_bytes()
                        .to_vec())
                }
            }
            t::STORAGE_GET_STATUS => {
                let req = GroupAddrReq::decode(body)?;
                let b = self.cluster().brief(req.group.as_str(), &req.addr)?;
                let mut out = Vec::new();
                b.encode(&mut out);
                ok(out)
            }
            t::STORAGE_GET_MY_IP => {
                let req = GetMyIpReq::decode(body)?;
                let c = self.cluster();
                let from_ids = c.settings.use_storage_id.then(|| {
                    let port = u16::try_from(req.port).unwrap_or(0);
                    storage_ids::my_ips(
                        &c.settings.storage_ids,
                        req.group.as_str(),
                        port,
                        peer.ip(),
                    )
                });
                ok(from_ids
                    .flatten()
                    .unwrap_or_else(|| peer.ip().to_string())
                    .into_bytes())
            }
            t::STORAGE_GET_GROUP_NAME => ok(self.group_name_of(body, peer)?),
            t::STORAGE_JOIN => {
                let req = JoinReq::decode(body)?;
                let ip = peer.ip().to_string();
                let (id, resp) = self.cluster().join(&ip, &req, now)?;
                let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
                let group = req.group.as_str().to_owned();
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((group.clone(), id.clone()), serial);
                session.joined = Some(Joined { group, id, serial });
                let mut out = Vec::new();
                resp.encode(&mut out);
                ok(out)
            }
            t::STORAGE_SYNC_SRC_REQ => {
                let req = GroupIdReq::decode(body)?;
                let info = self
                    .cluster()
                    .sync_src_req(req.group.as_str(), &req.storage_id)?;
                ok(encode_sync(info))
            }
            t::STORAGE_REPORT_STATUS => {
                let req = ReportStatusReq::decode(body)?;
                self.cluster()
                    .report_status(req.group.as_str(), &req.brief)?;
                ok(Vec::new())
            }
            t::STORAGE_CHANGELOG_REQ => {
                if body.is_empty() {
                    let j = joined(session)?;
                    return ok(self.cluster().changelog_since(&j.group, &j.id)?);
                }
                let req = GroupIdReq::decode(body)?;
                match self
                    .cluster()
                    .changelog_since(req.group.as_str(), &req.storage_id)
                {
                    Ok(b) => ok(b),
                    // A storage asks before its very first JOIN: nothing
                    // concerns it yet.
                    Err(TrackerError::NoGroup(_) | TrackerError::NoStorage { .. }) => {
                        ok(Vec::new())
                    }
                    Err(e) => Err(e),
                }
            }
            t::STORAGE_BEAT
            | t::STORAGE_REPORT_DISK_USAGE
            | t::STORAGE_SYNC_REPORT
            | t::STORAGE_SYNC_DEST_REQ
            | t::STORAGE_SYNC_NOTIFY
            | t::STORAGE_SYNC_DEST_QUERY
            | t::STORAGE_CHANGE_STATUS
            | t::STORAGE_REPLICA_CHG => {
                let j = joined(session)?.clone();
                ok(self.storage_cmd(&j, c, body, peer.ip(), now)?)
            }
            t::TRACKER_NOTIFY_RESELECT_LEADER => {
                empty(body)?;
                ok(Vec::new())
            }
            t::SERVER_SET_TRUNK_SERVER => {
                // group16 + optional id (0..15 bytes): the 92 request shape.
                let req = ListStorageReq::decode(body);
                let mut c = self.cluster();
                // Trunk off answers EOPNOTSUPP whatever the body.
                if !c.settings.use_trunk_file {
                    return Err(TrackerError::NotSupported(
                        "trunk files are off (use_trunk_file = false)".into(),
                    ));
                }
                let req = req?;
                let id = c.set_trunk_server(req.group.as_str(), req.storage_id.as_deref())?;
                // The id with its trailing NUL (PROTOCOL.md §3.3).
                let mut out = id.into_bytes();
                out.push(0);
                ok(out)
            }
            t::STORAGE_FETCH_TRUNK_FID
            | t::STORAGE_REPORT_TRUNK_FID
            | t::STORAGE_REPORT_TRUNK_FREE => ok(self.trunk_cmd(session, c, body)?),
            t::STORAGE_REPORT_IP_CHANGED => {
                let req = IpChangedReq::decode(body)?;
                self.cluster().ip_changed(
                    req.group.as_str(),
                    &req.old_ip,
                    &req.new_ip,
                    &peer.ip().to_string(),
                    now,
                )?;
                ok(Vec::new())
            }
            t::TRACKER_JOIN_LEADER
            | t::TRACKER_GET_SYS_FILES_START
            | t::TRACKER_GET_SYS_FILES_END
            | t::TRACKER_GET_ONE_SYS_FILE
            | t::TRACKER_GET_STATUS
            | t::TRACKER_PING_LEADER
            | t::TRACKER_NOTIFY_NEXT_LEADER
            | t::TRACKER_COMMIT_NEXT_LEADER => Err(TrackerError::NotSupported(
                "tracker-to-tracker commands: this tracker does not elect a leader".into(),
            )),
            other => Err(TrackerError::Invalid(format!("unknown command {other}"))),
        }
    }

    /// 72/73/74, from the trunk server's session (after JOIN).
    fn trunk_cmd(&self, session: &Session, c: u8, body: &[u8]) -> Result<Vec<u8>, TrackerError> {
        let mut cl = self.cluster();
        if !cl.settings.use_trunk_file {
            return Err(TrackerError::NotSupported(
                "trunk files are off (use_trunk_file = false)".into(),
            ));
        }
        let j = joined(session)?;
        let (g, id) = (j.group.as_str(), j.id.as_str());
        let want = match c {
            t::STORAGE_FETCH_TRUNK_FID => 0,
            t::STORAGE_REPORT_TRUNK_FID => 4,
            _ => 8,
        };
        if body.len() != want {
            return Err(TrackerError::Invalid(format!(
                "{} body of {} bytes, expected {want}",
                cmd::name(c),
                body.len()
            )));
        }
        match c {
            t::STORAGE_FETCH_TRUNK_FID => Ok(cl.trunk_file_id(g)?.to_be_bytes().to_vec()),
            t::STORAGE_REPORT_TRUNK_FID => {
                let fid = u32::from_be_bytes(body.try_into().expect("length checked"));
                cl.report_trunk_file_id(g, id, fid)?;
                Ok(Vec::new())
            }
            _ => {
                let mb = i64::from_be_bytes(body.try_into().expect("length checked"));
                cl.report_trunk_free(g, id, mb)?;
                Ok(Vec::new())
            }
        }
    }

    /// Commands of a joined storage's session.
    fn storage_cmd(
        &self,
        j: &Joined,
        c: u8,
        body: &[u8],
        peer: IpAddr,
        now: i64,
    ) -> Result<Vec<u8>, TrackerError> {
        let (g, id) = (j.group.as_str(), j.id.as_str());
        let mut out = Vec::new();
        // Change flags carry the trunk server and the group list, their
        // addresses chosen for `peer`.
        let flags = |mut f: ChangeFlags, cl: &Cluster, out: &mut Vec<u8>| {
            if let Some(list) = f.group_servers.as_mut() {
                cl.localize_briefs(list, peer);
            }
            if let Some(trunk) = f.trunk_server.as_mut() {
                cl.localize_briefs(std::slice::from_mut(trunk), peer);
            }
            f.encode(out);
        };
        match c {
            t::STORAGE_BEAT => {
                let stat = match body.len() {
                    0 => None,
                    StatBuff::LEN => Some(StatBuff::decode(body)?),
                    n => {
                        return Err(TrackerError::Invalid(format!(
                            "beat body of {n} bytes, expected 0 or 348"
                        )))
                    }
                };
                let mut cl = self.cluster();
                let f = cl.beat(g, id, stat, now)?;
                flags(f, &cl, &mut out);
            }
            t::STORAGE_REPORT_DISK_USAGE => {
                let usage = DiskUsage::decode(body)?;
                let mut cl = self.cluster();
                let f = cl.disk_usage(g, id, &usage, now)?;
                flags(f, &cl, &mut out);
            }
            t::STORAGE_SYNC_REPORT => {
                let report = SyncReport::decode(body)?;
                let mut cl = self.cluster();
                let f = cl.sync_report(g, id, &report)?;
                flags(f, &cl, &mut out);
            }
            t::STORAGE_SYNC_DEST_REQ => {
                empty(body)?;
                out = encode_sync(self.cluster().sync_dest_req(g, id, now)?);
            }
            t::STORAGE_SYNC_NOTIFY => {
                let info = SyncInfo::decode(body)?;
                self.cluster().sync_notify(g, id, &info)?;
            }
            t::STORAGE_SYNC_DEST_QUERY => {
                empty(body)?;
                out = encode_sync(self.cluster().sync_dest_query(g, id)?);
            }
            t::STORAGE_CHANGE_STATUS => {
                if body.len() != 1 {
                    return Err(TrackerError::Invalid(format!(
                        "change status body of {} bytes, expected 1",
                        body.len()
                    )));
                }
                self.cluster().change_status(g, id, body[0])?;
            }
            t::STORAGE_REPLICA_CHG => {
                // Only meaningful for leader/follower trackers; accepted and
                // ignored (the list is still checked for shape).
                StorageBrief::decode_list(body)?;
            }
            _ => unreachable!("storage_cmd called for {c}"),
        }
        Ok(out)
    }

    /// 91 (all groups) or 90 (one), in the configured `stat_layout`.
    fn list_groups(&self, group: Option<&str>) -> Result<Vec<u8>, TrackerError> {
        let c = self.cluster();
        let mut out = Vec::new();
        match c.settings.stat_layout {
            StatLayout::V6_16 => c
                .group_stats(group)?
                .iter()
                .for_each(|g| g.encode(&mut out)),
            StatLayout::V6_10 => c
                .group_stats_v610(group)?
                .iter()
                .for_each(|g| g.encode(&mut out)),
        }
        Ok(out)
    }

    /// 92, in the configured `stat_layout`.
    fn list_storages(
        &self,
        group: &str,
        id: Option<&str>,
        peer: IpAddr,
    ) -> Result<Vec<u8>, TrackerError> {
        let c = self.cluster();
        let mut out = Vec::new();
        match c.settings.stat_layout {
            StatLayout::V6_16 => {
                for mut s in c.storage_stats(group, id)? {
                    c.localize_ip(&s.id, &mut s.ip_addr, peer);
                    s.encode(&mut out);
                }
            }
            StatLayout::V6_10 => {
                for mut s in c.storage_stats_v610(group, id)? {
                    c.localize_ip(&s.id, &mut s.ip_addr, peer);
                    s.encode(&mut out);
                }
            }
        }
        Ok(out)
    }

    fn query_store(&self, c: u8, body: &[u8], peer: IpAddr) -> Result<Vec<u8>, TrackerError> {
        let group = match c {
            t::QUERY_STORE_WITH_GROUP_ONE | t::QUERY_STORE_WITH_GROUP_ALL => {
                Some(GroupReq::decode(body)?.group)
            }
            _ => {
                empty(body)?;
                None
            }
        };
        let all = matches!(
            c,
            t::QUERY_STORE_WITHOUT_GROUP_ALL | t::QUERY_STORE_WITH_GROUP_ALL
        );
        let mut cl = self.cluster();
        let ip_size = cl.ip_size();
        let mut choice = cl.query_store(group.as_ref().map(GroupName::as_str), all)?;
        cl.localize_addrs(&choice.group, &mut choice.servers, peer);
        let group = group_name(&choice.group)?;
        let mut out = Vec::new();
        if all {
            StoreAllResp {
                group,
                servers: choice.servers,
                store_path_index: choice.store_path_index,
                ip_size,
            }
            .encode(&mut out);
        } else {
            StoreResp {
                group,
                server: choice.servers[0].clone(),
                store_path_index: choice.store_path_index,
                ip_size,
            }
            .encode(&mut out);
        }
        Ok(out)
    }

    fn query_fetch(
        &self,
        c: u8,
        body: &[u8],
        peer: IpAddr,
        now: i64,
    ) -> Result<Vec<u8>, TrackerError> {
        let req = FileReq::decode(body)?;
        let mut cl = self.cluster();
        let ip_size = cl.ip_size();
        let g = req.group.as_str();
        let mut servers: Vec<ServerAddr> = match c {
            t::QUERY_UPDATE => vec![cl.query_update(g, &req.filename)?],
            t::QUERY_FETCH_ALL => cl.query_fetch(g, &req.filename, true, now)?,
            _ => cl.query_fetch(g, &req.filename, false, now)?,
        };
        cl.localize_addrs(g, &mut servers, peer);
        let mut out = Vec::new();
        FetchResp {
            group: req.group,
            servers,
            ip_size,
        }
        .encode(&mut out);
        Ok(out)
    }

    /// GET_GROUP_NAME (109): port u32, or ip text + port u32.
    fn group_name_of(&self, body: &[u8], peer: SocketAddr) -> Result<Vec<u8>, TrackerError> {
        if body.len() < 4 || body.len() > 4 + 46 {
            return Err(TrackerError::Invalid(format!(
                "get group name body of {} bytes",
                body.len()
            )));
        }
        let (ip_part, port) = body.split_at(body.len() - 4);
        let port = u32::from_be_bytes([port[0], port[1], port[2], port[3]]);
        let ip = if ip_part.is_empty() {
            peer.ip().to_string()
        } else {
            std::str::from_utf8(ip_part)
                .map_err(|_| TrackerError::Invalid("ip is not text".into()))?
                .trim_end_matches('\0')
                .to_owned()
        };
        let c = self.cluster();
        let name = if c.settings.use_storage_id {
            let addr: IpAddr = ip
                .parse()
                .map_err(|_| TrackerError::Invalid(format!("{ip:?} is not an IP address")))?;
            let port =
                u16::try_from(port).map_err(|_| TrackerError::Invalid(format!("port {port}")))?;
            storage_ids::group_of(&c.settings.storage_ids, addr, port)?.to_owned()
        } else {
            // Ours, without storage ids: the group of a server that joined.
            c.groups
                .values()
                .find(|g| {
                    g.storages
                        .values()
                        .any(|s| s.ip == ip && u32::from(s.port) == port)
                })
                .map(|g| g.name.clone())
                .ok_or_else(|| TrackerError::NoStorage {
                    group: "*".into(),
                    id: format!("{ip}:{port}"),
                })?
        };
        let mut out = Vec::new();
        GroupReq {
            group: group_name(&name)?,
        }
        .encode(&mut out);
        Ok(out)
    }

    /// `ip:port` of this tracker as the peer reached it.
    fn own_addr(&self, local: SocketAddr) -> String {
        match local.ip() {
            std::net::IpAddr::V6(ip) if ip.to_ipv4_mapped().is_none() => {
                format!("[{ip}]:{}", self.port)
            }
            std::net::IpAddr::V6(ip) => format!("{}:{}", ip.to_ipv4_mapped().unwrap(), self.port),
            ip => format!("{ip}:{}", self.port),
        }
    }
}

fn log_close(peer: SocketAddr, e: &ConnError, what: &str) {
    match e {
        ConnError::Closed | ConnError::Shutdown => debug!(%peer, "connection closed ({e})"),
        ConnError::Timeout(_) | ConnError::Io(_) => {
            info!(%peer, "closing connection: {e} while {what}")
        }
        ConnError::Decode(_) => warn!(%peer, "closing connection without reply: {e}"),
    }
}

fn joined(session: &Session) -> Result<&Joined, TrackerError> {
    session.joined.as_ref().ok_or(TrackerError::NotJoined)
}

fn empty(body: &[u8]) -> Result<(), TrackerError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(TrackerError::Invalid(format!(
            "body of {} bytes, expected none",
            body.len()
        )))
    }
}

fn group_name(s: &str) -> Result<GroupName, TrackerError> {
    GroupName::new(s).map_err(|e| TrackerError::Invalid(e.to_string()))
}

fn encode_sync(info: Option<SyncInfo>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(i) = info {
        i.encode(&mut out);
    }
    out
}

//! The tracker reporter: one named worker per `tracker_server` entry keeps
//! a session with that tracker (PROTOCOL.md §6.2):
//!
//! GET_MY_IP and PARAMETER_REQ at the start of each session (our address
//! for new file IDs unless `bind_addr` fixes it; `reserved_storage_space`),
//! JOIN, the first-start SYNC_DEST_REQ/SYNC_NOTIFY, then BEAT every
//! `heart_beat_interval` (counters when they changed) and
//! REPORT_DISK_USAGE every `stat_report_interval`. Each reply's change
//! flags update the group's server list, kept for the replication workers.
//!
//! A tracker that is down or drops the session is retried with capped
//! exponential backoff (1 s doubling to 30 s); clients keep being served
//! meanwhile. QUIT is sent on shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fdfs_conf::HostPort;
use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::server::{
    status, ChangeFlags, DiskUsage, GetMyIpReq, IpChangedReq, JoinReq, JoinResp, StorageBrief,
    SyncInfo,
};
use fdfs_proto::tracker::{decode_params, GroupAddrReq};
use fdfs_proto::{cmd, errno, GroupName, Header, SourceServer, HEADER_LEN};
use fdfs_runtime::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::state::InitFlag;
use crate::store::{now, stats::idx, Store};

/// Longest reply body we accept from a tracker.
const MAX_REPLY: u64 = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the reporter needs to know about this storage.
#[derive(Debug, Clone)]
pub struct ReporterConf {
    pub group: GroupName,
    pub port: u16,
    /// Source address of outgoing connections (`client_bind` + `bind_addr`).
    pub bind_ip: Option<IpAddr>,
    /// `bind_addr` fixes the address in new file IDs.
    pub fixed_source: bool,
    /// `server_id` of storage.conf ("" = asked of the trackers when they use
    /// storage ids, else our IP is our id).
    pub server_id: String,
    pub trackers: Vec<HostPort>,
    pub heart_beat_interval: Duration,
    pub stat_report_interval: Duration,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub store_path_count: u32,
    pub subdir_count: u32,
    pub upload_priority: i64,
    pub up_time: i64,
    pub base_path: std::path::PathBuf,
}

/// State shared by the tracker workers (and later the sync workers).
#[derive(Debug, Default)]
pub struct ReporterState {
    pub init: tokio::sync::Mutex<InitFlag>,
    /// Last status a tracker told us we have.
    pub my_status: AtomicU8,
    /// Every server of our group, from the last flag-4 reply.
    pub group_servers: RwLock<Vec<StorageBrief>>,
    /// The leader tracker, from the last flag-1 reply.
    pub leader: RwLock<Option<StorageBrief>>,
    /// Incoming replication progress, sent with SYNC_REPORT.
    pub sync_progress: Arc<crate::sync::Progress>,
    /// Our storage id: `server_id` of storage.conf, or the one a tracker
    /// gave (GET_SERVER_ID); empty while our IP is our id.
    pub server_id: RwLock<String>,
    /// Our IP at the last run, when it differs from this run's: trackers
    /// are told before we join (REPORT_IP_CHANGED).
    pub moved_from: RwLock<Option<String>>,
    /// Trackers told of the move, by address.
    pub told_of_move: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The trackers' `storage_ip_changed_auto_adjust`: follow their
    /// changelog (CHANGELOG_REQ) to carry marks over peers' IP changes.
    pub follow_changelog: std::sync::atomic::AtomicBool,
    /// The trunk server and the trunk settings (`use_trunk_file`).
    pub trunk: crate::trunk::TrunkState,
    /// The trackers' `storage_sync_file_max_delay` in seconds (0 until one
    /// said): how long a new file may take to reach every server of the
    /// group.
    pub sync_file_max_delay: std::sync::atomic::AtomicU64,
}

impl ReporterState {
    /// State of a storage whose storage.conf says `server_id`.
    pub fn new(init: InitFlag, server_id: &str) -> ReporterState {
        ReporterState {
            init: tokio::sync::Mutex::new(init),
            server_id: RwLock::new(server_id.to_owned()),
            ..ReporterState::default()
        }
    }

    /// Our storage id, if we have one (see [`ReporterState::my_id`]).
    pub fn server_id(&self) -> String {
        self.server_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The address of the server of our group with storage id `id`.
    pub fn address_of(&self, id: &str) -> Option<String> {
        self.group_servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.ip.clone())
    }

    /// Our id as the trackers and our peers know it: the storage id, else
    /// the source address in our file IDs.
    pub fn my_id(&self, store: &Store) -> String {
        let id = self.server_id();
        if !id.is_empty() {
            return id;
        }
        match store.source() {
            SourceServer::Ip(ip) => ip.to_string(),
            SourceServer::Id(n) => n.to_string(),
        }
    }
}

/// The reporter: spawn [`Reporter::spawn`] once.
pub struct Reporter {
    pub conf: ReporterConf,
    pub store: Arc<Store>,
    pub state: Arc<ReporterState>,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} refused with status {status} ({name})")]
    Refused {
        what: &'static str,
        status: u8,
        name: &'static str,
    },
    #[error("bad reply to {what}: {why}")]
    BadReply { what: &'static str, why: String },
}

fn refused(what: &'static str, status: u8) -> SessionError {
    SessionError::Refused {
        what,
        status,
        name: errno::describe(status).0,
    }
}

/// A connection to one tracker.
struct TrackerConn {
    s: TcpStream,
    timeout: Duration,
}

impl TrackerConn {
    async fn request(
        &mut self,
        what: &'static str,
        code: u8,
        body: &[u8],
    ) -> Result<(u8, Vec<u8>), SessionError> {
        let frame = fdfs_proto::encode_frame(code, 0, body);
        let t = self.timeout;
        let io = async {
            self.s.write_all(&frame).await?;
            let mut h = [0u8; HEADER_LEN];
            self.s.read_exact(&mut h).await?;
            let h =
                Header::decode(&h, MAX_REPLY).map_err(|e| std::io::Error::other(e.to_string()))?;
            if h.cmd != cmd::RESP {
                return Err(std::io::Error::other(format!(
                    "reply cmd {} is not RESP",
                    h.cmd
                )));
            }
            let mut b = vec![0u8; h.pkg_len as usize];
            self.s.read_exact(&mut b).await?;
            Ok::<_, std::io::Error>((h.status, b))
        };
        match tokio::time::timeout(t, io).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SessionError::BadReply {
                what,
                why: format!("no reply within {t:?}"),
            }),
        }
    }

    async fn quit(&mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.s
                .write_all(&fdfs_proto::encode_frame(cmd::QUIT, 0, &[])),
        )
        .await;
    }
}

impl Reporter {
    /// Starts one worker per tracker; they stop on `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        self.conf
            .trackers
            .iter()
            .cloned()
            .map(|t| {
                let me = self.clone();
                let sd = shutdown.clone();
                tokio::spawn(async move { me.run_tracker(t, sd).await })
            })
            .collect()
    }

    async fn run_tracker(&self, t: HostPort, shutdown: Shutdown) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if shutdown.is_triggered() {
                return;
            }
            let mut joined = false;
            let r = self.session(&t, &shutdown, &mut joined).await;
            self.state.trunk.told.session_ended(&t.to_string());
            match r {
                Ok(()) => return,
                Err(e) => {
                    if joined {
                        backoff = BACKOFF_MIN;
                    }
                    warn!(worker = "tracker-reporter", tracker = %t, retry_in = ?backoff, "tracker session ended: {e}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self, t: &HostPort) -> Result<TrackerConn, SessionError> {
        let addr: SocketAddr = {
            let t = t.clone();
            tokio::task::spawn_blocking(move || t.to_socket_addr())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??
        };
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.conf.bind_ip {
            if ip.is_ipv4() == addr.is_ipv4() {
                sock.bind(SocketAddr::new(ip, 0))?;
            }
        }
        let s = match tokio::time::timeout(self.conf.connect_timeout, sock.connect(addr)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(SessionError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )))
            }
        };
        let _ = s.set_nodelay(true);
        Ok(TrackerConn {
            s,
            timeout: self.conf.network_timeout,
        })
    }

    async fn session(
        &self,
        t: &HostPort,
        shutdown: &Shutdown,
        joined: &mut bool,
    ) -> Result<(), SessionError> {
        let mut c = self.connect(t).await?;
        self.get_my_ip(&mut c).await?;
        self.parameters(&mut c).await?;
        self.report_move(&mut c, t).await?;
        let (resp, init_flag) = self.join(&mut c, t).await?;
        *joined = true;
        info!(worker = "tracker-reporter", tracker = %t, status = status::name(resp.status), "joined");
        self.after_join(&mut c, &resp, init_flag).await?;

        let hb = self
            .conf
            .heart_beat_interval
            .max(Duration::from_millis(100));
        let sr = self
            .conf
            .stat_report_interval
            .max(Duration::from_millis(100));
        let mut next_beat = Instant::now();
        let mut next_disk = Instant::now();
        // Replication progress is checked every second (§6.2 step 4).
        let sync_every = Duration::from_secs(1).min(hb);
        let mut next_sync = Instant::now() + sync_every;
        let mut first_beat = true;
        let mut trunk_told = (0u32, -1i64);
        let tracker = t.to_string();
        let mut trunk_wanted = self.state.trunk.told.wanted.subscribe();
        self.state.trunk.told.session_started(&tracker);
        self.report_trunk(&mut c, &tracker, &mut trunk_told).await?;
        loop {
            let wake = next_beat.min(next_disk).min(next_sync);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                // A new trunk file waits for the trackers to know of it.
                Ok(()) = trunk_wanted.changed() => {
                    self.report_trunk(&mut c, &tracker, &mut trunk_told).await?;
                    continue;
                }
                _ = shutdown.wait() => {
                    c.quit().await;
                    return Ok(());
                }
            }
            let n = Instant::now();
            if n >= next_beat {
                self.beat(&mut c, first_beat).await?;
                first_beat = false;
                next_beat = n + hb;
            }
            if n >= next_disk {
                self.report_disk(&mut c).await?;
                next_disk = n + sr;
            }
            if n >= next_sync {
                self.sync_report(&mut c).await?;
                self.report_trunk(&mut c, &tracker, &mut trunk_told).await?;
                next_sync = n + sync_every;
            }
        }
    }

    async fn get_my_ip(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let mut body = Vec::new();
        GetMyIpReq {
            group: self.conf.group.clone(),
            port: self.conf.port as u32,
        }
        .encode(&mut body);
        let (st, b) = c.request("GET_MY_IP", tc::STORAGE_GET_MY_IP, &body).await?;
        if st != 0 {
            debug!("GET_MY_IP answered status {st}");
            return Ok(());
        }
        let text = String::from_utf8_lossy(&b);
        let first = text
            .split(',')
            .next()
            .unwrap_or("")
            .trim_matches(char::from(0))
            .trim();
        if let Ok(ip) = first.parse::<Ipv4Addr>() {
            if !self.conf.fixed_source && !self.uses_server_id() {
                self.store.set_source(SourceServer::Ip(ip));
            }
            let mut init = self.state.init.lock().await;
            if init.last_ip_addr != first {
                if !init.last_ip_addr.is_empty() && self.state.server_id().is_empty() {
                    info!(old = %init.last_ip_addr, new = first, "our IP changed since the last run");
                    *self
                        .state
                        .moved_from
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Some(init.last_ip_addr.clone());
                }
                init.last_ip_addr = first.to_owned();
                init.last_server_port = self.conf.port;
                let _ = init.save(&self.conf.base_path);
            }
        }
        Ok(())
    }

    fn uses_server_id(&self) -> bool {
        matches!(self.store.source(), SourceServer::Id(_))
    }

    async fn parameters(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let (st, b) = c
            .request("PARAMETER_REQ", tc::STORAGE_PARAMETER_REQ, &[])
            .await?;
        if st != 0 {
            warn!("PARAMETER_REQ answered status {st}; keeping current parameters");
            return Ok(());
        }
        let params = decode_params(&b).map_err(|e| SessionError::BadReply {
            what: "PARAMETER_REQ",
            why: e.to_string(),
        })?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(secs) =
            get("storage_sync_file_max_delay").and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.state
                .sync_file_max_delay
                .store(secs, Ordering::Relaxed);
        }
        let trunk = crate::trunk::TrunkParams::from_params(|k| get(k).map(str::to_owned));
        if trunk.enabled {
            self.store.set_trunk_file_size(u64::from(trunk.file_size));
        }
        let was = std::mem::replace(
            &mut *self
                .state
                .trunk
                .params
                .write()
                .unwrap_or_else(|e| e.into_inner()),
            trunk,
        );
        if trunk.enabled && !was.enabled {
            info!(
                slot_min_size = trunk.slot_min_size,
                slot_max_size = trunk.slot_max_size,
                trunk_file_size = trunk.file_size,
                "trackers use trunk files: small files are packed"
            );
        }
        let ahead = trunk.advance;
        if trunk.enabled && ahead.enabled && (ahead != was.advance || !was.enabled) {
            info!(
                time_base = %format_args!("{:02}:{:02}", ahead.time_base.hour, ahead.time_base.minute),
                interval_secs = ahead.interval,
                threshold_mb = ahead.threshold / (1024 * 1024),
                "trackers want trunk files made ahead of demand (by the trunk server)"
            );
        }
        if let Some(v) = get("reserved_storage_space") {
            match fdfs_conf::value::parse_reserved(v) {
                Ok(r) => self.store.set_reserved(r),
                Err(e) => warn!("tracker sent reserved_storage_space={v:?}: {e}"),
            }
        }
        let use_id = get("use_storage_id").is_some_and(|v| v == "1" || v == "true");
        let adjust = get("storage_ip_changed_auto_adjust").is_some_and(|v| v == "1" || v == "true");
        self.state
            .follow_changelog
            .store(adjust && !use_id, Ordering::Relaxed);
        let id_in_name = get("id_type_in_filename").is_some_and(|v| v == "id");
        if use_id && self.state.server_id().is_empty() {
            self.fetch_server_id(c).await?;
        }
        if use_id && id_in_name {
            let id = self.state.server_id();
            match id.parse::<u32>() {
                Ok(n) if n > 0 && n <= 0xFF_FFFF => self.store.set_source(SourceServer::Id(n)),
                _ => warn!(
                    server_id = %id,
                    "trackers use server ids in file names but server_id is not a number up to 16777215"
                ),
            }
        }
        Ok(())
    }

    /// REPORT_IP_CHANGED (78), once per tracker, when our IP is not the one
    /// of the last run: the tracker moves our record (status, space, sync
    /// progress) to the new IP instead of taking us for a new server that
    /// needs a full sync. A refusal is logged and we join all the same.
    async fn report_move(&self, c: &mut TrackerConn, t: &HostPort) -> Result<(), SessionError> {
        let Some(old) = self
            .state
            .moved_from
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(());
        };
        if !self.state.server_id().is_empty() {
            return Ok(());
        }
        let key = t.to_string();
        if self
            .state
            .told_of_move
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let new = match self.store.source() {
            SourceServer::Ip(ip) => ip.to_string(),
            SourceServer::Id(_) => return Ok(()),
        };
        let mut body = Vec::new();
        IpChangedReq {
            group: self.conf.group.clone(),
            old_ip: old.clone(),
            new_ip: new.clone(),
        }
        .encode(&mut body);
        let (st, _) = c
            .request("REPORT_IP_CHANGED", tc::STORAGE_REPORT_IP_CHANGED, &body)
            .await?;
        match st {
            0 => {
                info!(tracker = %t, old = %old, new = %new, "the tracker moved our record to the new IP")
            }
            errno::ENOENT => {
                info!(tracker = %t, old = %old, "the tracker has no record of our old IP")
            }
            _ => {
                warn!(tracker = %t, old = %old, new = %new, status = st, "the tracker refused our IP change ({})", errno::describe(st).0)
            }
        }
        self.state
            .told_of_move
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    /// CHANGELOG_REQ (77): what changed in the cluster since we last asked.
    /// A peer of our group whose IP changed (`<ts> <group> <old> 3 <new>`)
    /// keeps its replication mark and received progress under the new IP.
    async fn follow_changelog(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let (st, b) = c
            .request("CHANGELOG_REQ", tc::STORAGE_CHANGELOG_REQ, &[])
            .await?;
        if st != 0 {
            return Err(refused("CHANGELOG_REQ", st));
        }
        let text = String::from_utf8_lossy(&b);
        let sync_dir = self.conf.base_path.join("data").join("sync");
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_ts, group, old, st, new] = f.as_slice() else {
                continue;
            };
            if *group != self.conf.group.as_str() || st.parse::<u8>() != Ok(status::IP_CHANGED) {
                continue;
            }
            self.state.sync_progress.rename(old, new);
            match crate::sync::mark::move_mark(&sync_dir, old, new, u32::from(self.conf.port)) {
                Ok(true) => {
                    info!(old = %old, new = %new, "peer's IP changed: its replication mark follows it")
                }
                Ok(false) => debug!(old = %old, new = %new, "peer's IP changed; no mark to move"),
                Err(e) => {
                    warn!(old = %old, new = %new, "moving the mark of a peer whose IP changed: {e}")
                }
            }
        }
        Ok(())
    }

    /// GET_SERVER_ID (70): our id in the trackers' storage_ids.conf, by the
    /// address we reach them from and our port. Behind NAT that address is
    /// not the listed one: `server_id` in storage.conf is the way there.
    async fn fetch_server_id(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let ip = c.s.local_addr()?.ip();
        let addr = SocketAddr::new(ip, self.conf.port).to_string();
        let mut body = Vec::new();
        GroupAddrReq {
            group: self.conf.group.clone(),
            addr: addr.clone(),
        }
        .encode(&mut body);
        let (st, b) = c
            .request("GET_SERVER_ID", tc::STORAGE_GET_SERVER_ID, &body)
            .await?;
        if st != 0 {
            warn!(
                address = %addr,
                group = %self.conf.group,
                "the tracker has no storage id for this server in its storage_ids.conf; add it there or set server_id in storage.conf"
            );
            return Err(refused("GET_SERVER_ID", st));
        }
        let id = String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        if id.is_empty() || id.len() > 15 {
            return Err(SessionError::BadReply {
                what: "GET_SERVER_ID",
                why: format!("id {id:?}"),
            });
        }
        info!(server_id = %id, "storage id given by the tracker");
        *self
            .state
            .server_id
            .write()
            .unwrap_or_else(|e| e.into_inner()) = id;
        Ok(())
    }

    /// JOIN; returns the reply and whether we announced init_flag = 1.
    async fn join(
        &self,
        c: &mut TrackerConn,
        t: &HostPort,
    ) -> Result<(JoinResp, bool), SessionError> {
        let init = {
            let mut init = self.state.init.lock().await;
            if init.storage_join_time == 0 {
                init.storage_join_time = now() as i64;
                init.last_server_port = self.conf.port;
                init.save(&self.conf.base_path)?;
            }
            init.clone()
        };
        let req = JoinReq {
            group: self.conf.group.clone(),
            storage_port: self.conf.port,
            store_path_count: self.conf.store_path_count,
            subdir_count_per_path: self.conf.subdir_count,
            upload_priority: self.conf.upload_priority,
            join_time: init.storage_join_time,
            up_time: self.conf.up_time,
            version: fdfs_proto::common::VERSION.to_owned(),
            init_flag: !init.sync_old_done,
            status: self.state.my_status.load(Ordering::Relaxed) as i8,
            storage_id: self.state.server_id(),
            current_tracker_ip: t.host.clone(),
            trackers: self.conf.trackers.iter().map(|h| h.to_string()).collect(),
        };
        let mut body = Vec::new();
        req.encode(&mut body);
        let (st, b) = c.request("JOIN", tc::STORAGE_JOIN, &body).await?;
        if st != 0 {
            return Err(refused("JOIN", st));
        }
        let resp = JoinResp::decode(&b).map_err(|e| SessionError::BadReply {
            what: "JOIN",
            why: e.to_string(),
        })?;
        self.state.my_status.store(resp.status, Ordering::Relaxed);
        Ok((resp, req.init_flag))
    }

    /// First start: ask for a sync source once (whichever tracker session
    /// gets here first), persist it, and notify every tracker we joined
    /// with init_flag = 1. Later joins whose reply names a source notify
    /// again (§12.5).
    async fn after_join(
        &self,
        c: &mut TrackerConn,
        resp: &JoinResp,
        joined_with_init: bool,
    ) -> Result<(), SessionError> {
        let mut init = self.state.init.lock().await;
        if !init.sync_old_done && init.sync_src_server.is_empty() {
            let (st, b) = c
                .request("SYNC_DEST_REQ", tc::STORAGE_SYNC_DEST_REQ, &[])
                .await?;
            if st != 0 {
                return Err(refused("SYNC_DEST_REQ", st));
            }
            let info = SyncInfo::decode_optional(&b).map_err(|e| SessionError::BadReply {
                what: "SYNC_DEST_REQ",
                why: e.to_string(),
            })?;
            match info {
                Some(i) if !i.src_id.is_empty() => {
                    info!(src = %i.src_id, until = i.until_timestamp, "initial sync source assigned");
                    init.sync_src_server = i.src_id;
                    init.sync_until_timestamp = i.until_timestamp;
                }
                // No other server holds data: nothing to catch up on.
                _ => init.sync_old_done = true,
            }
            init.save(&self.conf.base_path)?;
        } else if !joined_with_init && resp.src_id.is_empty() {
            return Ok(());
        }
        let src = if init.sync_src_server.is_empty() {
            resp.src_id.clone()
        } else {
            init.sync_src_server.clone()
        };
        let mut body = Vec::new();
        SyncInfo {
            src_id: src,
            until_timestamp: init.sync_until_timestamp,
        }
        .encode(&mut body);
        drop(init);
        let (st, _) = c
            .request("SYNC_NOTIFY", tc::STORAGE_SYNC_NOTIFY, &body)
            .await?;
        if st != 0 {
            warn!(
                "SYNC_NOTIFY answered status {st} ({})",
                errno::describe(st).0
            );
        }
        Ok(())
    }

    async fn beat(&self, c: &mut TrackerConn, first: bool) -> Result<(), SessionError> {
        let stats = self.store.stats();
        let changed = stats.take_changed();
        let mut body = Vec::new();
        if first || changed {
            let mut sb = stats.snapshot();
            sb.counters[idx::LAST_HEART_BEAT_TIME] = now() as i64;
            sb.encode(&mut body);
        }
        let (st, b) = c.request("BEAT", tc::STORAGE_BEAT, &body).await?;
        if st != 0 {
            return Err(refused("BEAT", st));
        }
        self.take_flags(c, "BEAT", &b, true).await
    }

    async fn report_disk(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let mut body = Vec::new();
        DiskUsage {
            paths: self.store.disk_usage(),
        }
        .encode(&mut body);
        let (st, b) = c
            .request("REPORT_DISK_USAGE", tc::STORAGE_REPORT_DISK_USAGE, &body)
            .await?;
        if st != 0 {
            return Err(refused("REPORT_DISK_USAGE", st));
        }
        self.take_flags(c, "REPORT_DISK_USAGE", &b, false).await
    }

    /// SYNC_REPORT (89) when replication progress changed: the source
    /// timestamp of the last record received from each peer, plus our own
    /// entry with 0 (§12.7).
    async fn sync_report(&self, c: &mut TrackerConn) -> Result<(), SessionError> {
        let me = self.state.my_id(&self.store);
        let progress = &self.state.sync_progress;
        let Some(report) = progress.take_report(&me) else {
            return Ok(());
        };
        let mut body = Vec::new();
        report.encode(&mut body);
        let r = c
            .request("SYNC_REPORT", tc::STORAGE_SYNC_REPORT, &body)
            .await;
        let (st, b) = match r {
            Ok(x) => x,
            Err(e) => {
                progress.mark_changed();
                return Err(e);
            }
        };
        if st != 0 {
            progress.mark_changed();
            return Err(refused("SYNC_REPORT", st));
        }
        self.take_flags(c, "SYNC_REPORT", &b, false).await
    }

    /// Applies a reply's change flags. The changelog is read first after
    /// every beat and before any new group list: a peer whose IP changed
    /// must have its mark renamed before the sync workers see it under the
    /// new IP (they would start it over, and drop the old mark).
    async fn take_flags(
        &self,
        c: &mut TrackerConn,
        what: &'static str,
        b: &[u8],
        after_beat: bool,
    ) -> Result<(), SessionError> {
        let f = ChangeFlags::decode(b).map_err(|e| SessionError::BadReply {
            what,
            why: e.to_string(),
        })?;
        if self.state.follow_changelog.load(Ordering::Relaxed)
            && (after_beat || f.group_servers.is_some())
        {
            self.follow_changelog(c).await?;
        }
        if let Some(t) = &f.trunk_server {
            self.take_trunk_server(c, t).await;
        }
        self.apply_flags(f);
        Ok(())
    }

    /// Flag 2: the group's trunk server changed (all zero: none). When it
    /// is us, the tracker's trunk file id is where our new ids start.
    async fn take_trunk_server(&self, c: &mut TrackerConn, t: &StorageBrief) {
        let brief = (!t.ip.is_empty() && t.port != 0).then(|| t.clone());
        let me = brief
            .as_ref()
            .is_some_and(|b| b.port == self.conf.port as u32 && self.is_me(b));
        info!(
            trunk_server = brief
                .as_ref()
                .map_or("none".to_owned(), |b| format!("{}:{}", b.ip, b.port)),
            us = me,
            "the group's trunk server"
        );
        if me {
            // Before the first slot: every id a tracker knows may exist
            // (each tracker that names us is asked; the highest wins).
            match c
                .request("FETCH_TRUNK_FID", tc::STORAGE_FETCH_TRUNK_FID, &[])
                .await
            {
                Ok((0, b)) if b.len() == 4 => {
                    let id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    self.state.trunk.id_floor.fetch_max(id, Ordering::SeqCst);
                }
                Ok((st, _)) => debug!("FETCH_TRUNK_FID answered status {st}"),
                Err(e) => warn!("FETCH_TRUNK_FID: {e}"),
            }
        }
        self.state.trunk.set_server(brief, me);
    }

    /// While we are trunk server: our newest trunk file id and free trunk
    /// space, to each tracker when they change.
    async fn report_trunk(
        &self,
        c: &mut TrackerConn,
        tracker: &str,
        told: &mut (u32, i64),
    ) -> Result<(), SessionError> {
        let t = &self.state.trunk;
        if !t.serving.load(Ordering::Relaxed) {
            return Ok(());
        }
        // A tracker that refuses (an older one) is not asked again.
        async fn tell(
            c: &mut TrackerConn,
            what: &'static str,
            code: u8,
            body: &[u8],
        ) -> Result<(), SessionError> {
            let (st, _) = c.request(what, code, body).await?;
            if st != 0 {
                debug!("{what} answered status {st}");
            }
            Ok(())
        }
        let id = t.last_id.load(Ordering::SeqCst);
        if id > told.0 {
            let body = id.to_be_bytes();
            tell(c, "REPORT_TRUNK_FID", tc::STORAGE_REPORT_TRUNK_FID, &body).await?;
            told.0 = id;
        }
        // Any answer will do: a tracker that refuses keeps no trunk ids.
        t.told.acknowledged(tracker, told.0);
        let free = t.free_mb.load(Ordering::Relaxed);
        if free >= 0 && free != told.1 {
            let body = free.to_be_bytes();
            tell(c, "REPORT_TRUNK_FREE", tc::STORAGE_REPORT_TRUNK_FREE, &body).await?;
            told.1 = free;
        }
        Ok(())
    }

    fn apply_flags(&self, f: ChangeFlags) {
        if let Some(l) = f.leader {
            *self.state.leader.write().unwrap_or_else(|e| e.into_inner()) = Some(l);
        }
        if let Some(list) = f.group_servers {
            if let Some(me) = list
                .iter()
                .find(|s| s.port == self.conf.port as u32 && self.is_me(s))
            {
                self.state.my_status.store(me.status, Ordering::Relaxed);
            }
            debug!(servers = list.len(), "group membership updated");
            *self
                .state
                .group_servers
                .write()
                .unwrap_or_else(|e| e.into_inner()) = list;
        }
    }

    fn is_me(&self, s: &StorageBrief) -> bool {
        let id = self.state.server_id();
        if !id.is_empty() {
            return s.id == id;
        }
        match self.store.source() {
            SourceServer::Ip(ip) => s.ip == ip.to_string(),
            SourceServer::Id(_) => false,
        }
    }
}

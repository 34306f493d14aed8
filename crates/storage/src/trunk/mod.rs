//! Small files packed into trunk files (`use_trunk_file`, PROTOCOL.md §5.5
//! and §6.6), the way upstream FastDFS does it, so that a group can mix
//! its servers with ours.
//!
//! The leader tracker elects one storage of the group as its trunk server
//! (change flag 2). Every upload small enough asks it for a slot
//! (TRUNK_ALLOC_SPACE), writes the file into its own copy of the trunk
//! file (content first, header last) and confirms (TRUNK_ALLOC_CONFIRM);
//! the name carries the slot, and replication writes the same slot on the
//! peers. A delete frees the slot on the trunk server (TRUNK_FREE_SPACE).
//!
//! The trunk server keeps its map of free space in memory and every change
//! in `<base_path>/data/trunk/binlog`. When it takes the role it rebuilds
//! the map from that binlog and from every trunk file our own binlog says
//! is alive (what another trunk server gave out before reaches us there),
//! and before it gives out a slot it reads the slot's header on its disk:
//! a slot that holds a file is never given out, whatever the map says. The
//! writer checks its own copy too before it writes.
//!
//! When no trunk server is known or it does not answer, the file is stored
//! whole: an upload never fails for want of a slot.

pub mod space;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::server::StorageBrief;
use fdfs_proto::trunk::{
    AllocReq, SlotHeader, SlotReq, SpaceOp, SpaceRecord, TrunkInfo, HEADER_LEN,
};
use fdfs_proto::{errno, FileKind, LogicName};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::recovery::LiveNames;
use crate::store::Store;
use crate::sync::link::Link;
use space::{SpaceMap, TrunkFile};

/// The trackers' trunk settings (PARAMETER_REQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkParams {
    pub enabled: bool,
    pub slot_min_size: u32,
    pub slot_max_size: u32,
    /// 0: no alignment.
    pub alignment: u32,
    pub file_size: u32,
}

impl Default for TrunkParams {
    fn default() -> Self {
        TrunkParams {
            enabled: false,
            slot_min_size: 256,
            slot_max_size: 8 * 1024 * 1024,
            alignment: 0,
            file_size: 64 * 1024 * 1024,
        }
    }
}

impl TrunkParams {
    /// From PARAMETER_REQ's `key=value` pairs; missing or bad values keep
    /// the defaults, and the limits of CONFIG.md §3 apply.
    pub fn from_params(get: impl Fn(&str) -> Option<String>) -> TrunkParams {
        let d = TrunkParams::default();
        let num = |k: &str, dflt: u32| {
            get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(dflt, |v| v.min(u64::from(u32::MAX)) as u32)
        };
        let enabled = get("use_trunk_file").is_some_and(|v| v == "1" || v == "true");
        let file_size = num("trunk_file_size", d.file_size).max(4 * 1024 * 1024);
        let alignment = num("trunk_alloc_alignment_size", 0);
        let slot_min_size = num("slot_min_size", d.slot_min_size)
            .min(64 * 1024)
            .max(alignment)
            .max(HEADER_LEN as u32 + 1);
        let slot_max_size = num("slot_max_size", file_size / 8)
            .min(file_size / 2)
            .max(slot_min_size + 1);
        TrunkParams {
            enabled,
            slot_min_size,
            slot_max_size,
            alignment,
            file_size,
        }
    }

    /// The slot a new file of `size` bytes takes (header included, at
    /// least the smallest slot, aligned); `None` when it is stored whole.
    pub fn slot_size(&self, size: u64) -> Option<u32> {
        let need = size.checked_add(HEADER_LEN as u64)?;
        if !self.enabled || need > u64::from(self.slot_max_size) {
            return None;
        }
        let mut n = need.max(u64::from(self.slot_min_size));
        if self.alignment > 1 {
            n = n.div_ceil(u64::from(self.alignment)) * u64::from(self.alignment);
        }
        u32::try_from(n).ok().filter(|&n| n <= self.file_size)
    }
}

/// What the trackers told us of trunk files, shared with the reporter.
#[derive(Debug, Default)]
pub struct TrunkState {
    pub params: RwLock<TrunkParams>,
    /// The group's trunk server, from the last flag-2 reply.
    pub server: RwLock<Option<StorageBrief>>,
    /// We are it.
    pub serving: AtomicBool,
    /// The tracker's current trunk file id when we became trunk server
    /// (FETCH_TRUNK_FID): ids at or below it may exist.
    pub id_floor: AtomicU32,
    /// The last trunk file id we created, for REPORT_TRUNK_FID.
    pub last_id: AtomicU32,
    /// Free trunk space in MB while we serve, for REPORT_TRUNK_FREE; -1
    /// otherwise.
    pub free_mb: AtomicI64,
}

impl TrunkState {
    pub fn params(&self) -> TrunkParams {
        *self.params.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A new trunk server (or none). Returns true when we just became it.
    pub fn set_server(&self, brief: Option<StorageBrief>, is_me: bool) -> bool {
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = brief;
        let was = self.serving.swap(is_me, Ordering::SeqCst);
        if !is_me {
            self.free_mb.store(-1, Ordering::Relaxed);
        }
        is_me && !was
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        let b = self.server.read().unwrap_or_else(|e| e.into_inner());
        let b = b.as_ref()?;
        let ip: IpAddr = b.ip.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(b.port).ok()?))
    }
}

/// Why the trunk server refused.
#[derive(Debug, Error)]
pub enum TrunkError {
    #[error("this storage is not the group's trunk server")]
    NotServer,
    #[error("{0}")]
    Invalid(String),
    #[error("no trunk space: {0}")]
    NoSpace(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl TrunkError {
    pub fn status(&self) -> u8 {
        match self {
            TrunkError::NotServer | TrunkError::Invalid(_) => errno::EINVAL,
            TrunkError::NoSpace(_) => errno::ENOSPC,
            TrunkError::Io { .. } => errno::EIO,
        }
    }

    fn io(what: impl Into<String>, source: io::Error) -> TrunkError {
        TrunkError::Io {
            what: what.into(),
            source,
        }
    }
}

/// How this storage reaches other storages.
#[derive(Debug, Clone)]
pub struct TrunkConf {
    pub bind_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    pub base_path: PathBuf,
}

/// The trunk server's state while we serve.
struct Served {
    map: SpaceMap,
    binlog: Arc<File>,
    /// The last trunk file id used; the next file gets the one after.
    last_id: u32,
    /// Slots freed by a peer whose delete has not reached our copy yet.
    pending: std::collections::BTreeSet<TrunkInfo>,
    checked: std::time::Instant,
}

/// Both roles: asking the trunk server for slots, and being it.
pub struct Trunk {
    store: Arc<Store>,
    reporter: Arc<crate::reporter::ReporterState>,
    conf: TrunkConf,
    served: tokio::sync::Mutex<Option<Served>>,
    /// Idle kept-alive connections to the trunk server.
    remote: std::sync::Mutex<Vec<(SocketAddr, Link)>>,
    /// How much of the trunk binlog is written, and how much of that is
    /// on disk: concurrent requests share one fdatasync.
    binlog_written: std::sync::atomic::AtomicU64,
    binlog_synced: std::sync::Mutex<u64>,
}

/// Most slots the allocator skips (found holding a file on disk) in one
/// request before it gives up.
const MAX_SKIPS: usize = 64;

/// How often the trunk server sends new trunk binlog lines to its peers.
const PUSH_EVERY: Duration = Duration::from_millis(500);
/// Most trunk binlog bytes in one TRUNK_SYNC_BINLOG.
const PUSH_CHUNK: usize = 64 * 1024;

/// Most idle connections kept to the trunk server.
const MAX_IDLE_LINKS: usize = 16;

/// Most freed slots that wait for their delete to reach the trunk server
/// (each is looked at once a second while it waits).
const MAX_PENDING: usize = 1 << 16;

impl Trunk {
    pub fn new(
        store: Arc<Store>,
        reporter: Arc<crate::reporter::ReporterState>,
        conf: TrunkConf,
    ) -> Trunk {
        Trunk {
            store,
            reporter,
            conf,
            served: tokio::sync::Mutex::new(None),
            remote: std::sync::Mutex::new(Vec::new()),
            binlog_written: std::sync::atomic::AtomicU64::new(0),
            binlog_synced: std::sync::Mutex::new(0),
        }
    }

    fn state(&self) -> &TrunkState {
        &self.reporter.trunk
    }

    fn binlog_path(&self) -> PathBuf {
        self.conf
            .base_path
            .join("data")
            .join("trunk")
            .join("binlog")
    }

    /// The slot size a new normal file of `size` bytes takes, when small
    /// files are packed and a trunk server is known.
    pub fn slot_for(&self, size: u64) -> Option<u32> {
        let st = self.state();
        let need = st.params().slot_size(size)?;
        (st.serving.load(Ordering::Relaxed) || st.server_addr().is_some()).then_some(need)
    }

    // ---- the requester's side ----

    /// A slot of `need` bytes in store path `store_path`, from the trunk
    /// server (ourselves or a peer). `None`: store the file whole.
    pub async fn alloc(&self, store_path: u8, need: u32) -> Option<TrunkInfo> {
        if self.state().serving.load(Ordering::Relaxed) {
            return match self.serve_alloc(store_path, need).await {
                Ok(i) => Some(i),
                Err(e) => {
                    warn!("trunk: no slot of {need} bytes: {e}; the file is stored whole");
                    None
                }
            };
        }
        let addr = self.state().server_addr()?;
        let mut body = Vec::with_capacity(AllocReq::LEN);
        AllocReq {
            group: self.store.group().clone(),
            size: need,
            store_path,
        }
        .encode(&mut body);
        match self.call(addr, sc::TRUNK_ALLOC_SPACE, 0, &body).await {
            Ok((0, b)) => match TrunkInfo::decode(&b) {
                Ok(i) if i.store_path == store_path && i.slot.alloc_size >= need => Some(i),
                Ok(i) => {
                    warn!(trunk_server = %addr, "trunk: the trunk server gave {i:?} for {need} bytes in path {store_path}; the file is stored whole");
                    None
                }
                Err(e) => {
                    warn!(trunk_server = %addr, "trunk: bad TRUNK_ALLOC_SPACE reply: {e}");
                    None
                }
            },
            Ok((st, _)) => {
                warn!(trunk_server = %addr, status = errno::describe(st).0, "trunk: no slot of {need} bytes; the file is stored whole");
                None
            }
            Err(e) => {
                warn!(trunk_server = %addr, "trunk: TRUNK_ALLOC_SPACE failed: {e}; the file is stored whole");
                None
            }
        }
    }

    /// Small files are packed (the trackers say so).
    pub fn packing(&self) -> bool {
        self.state().params().enabled
    }

    /// Tells the trunk server how the upload into the slot ended: 0 used;
    /// EEXIST not used because it holds a file here (it stays taken);
    /// anything else not used (it is free again).
    pub async fn confirm(&self, info: TrunkInfo, status: u8) {
        self.slot_call(sc::TRUNK_ALLOC_CONFIRM, status, info).await;
    }

    /// After a delete on this server: the slot is free again.
    pub async fn free(&self, info: TrunkInfo) {
        self.slot_call(sc::TRUNK_FREE_SPACE, 0, info).await;
    }

    async fn slot_call(&self, code: u8, status: u8, info: TrunkInfo) {
        if self.state().serving.load(Ordering::Relaxed) {
            let r = if code == sc::TRUNK_FREE_SPACE {
                self.serve_free(info).await
            } else {
                self.serve_confirm(info, status == 0 || status == errno::EEXIST)
                    .await
            };
            if let Err(e) = r {
                warn!("trunk: {} of {info:?}: {e}", fdfs_proto::cmd::name(code));
            }
            return;
        }
        let Some(addr) = self.state().server_addr() else {
            warn!(
                "trunk: no trunk server to tell of {info:?} ({}); its space stays taken",
                fdfs_proto::cmd::name(code)
            );
            return;
        };
        let mut body = Vec::with_capacity(SlotReq::LEN);
        SlotReq {
            group: self.store.group().clone(),
            info,
        }
        .encode(&mut body);
        match self.call(addr, code, status, &body).await {
            Ok((0, _)) => {}
            Ok((st, _)) => {
                warn!(trunk_server = %addr, status = errno::describe(st).0, "trunk: {} of {info:?} refused", fdfs_proto::cmd::name(code))
            }
            Err(e) => {
                warn!(trunk_server = %addr, "trunk: {} of {info:?}: {e}", fdfs_proto::cmd::name(code))
            }
        }
    }

    /// One request on a kept-alive connection to the trunk server (one per
    /// concurrent request, up to [`MAX_IDLE_LINKS`] kept); a new connection
    /// when the server changed or a kept one failed.
    async fn call(
        &self,
        addr: SocketAddr,
        code: u8,
        status: u8,
        body: &[u8],
    ) -> io::Result<(u8, Vec<u8>)> {
        for attempt in 0..2 {
            let kept = {
                let mut idle = self.remote.lock().unwrap_or_else(|e| e.into_inner());
                idle.retain(|(a, _)| *a == addr);
                idle.pop()
            };
            let fresh = kept.is_none();
            let mut link = match kept {
                Some((_, l)) => l,
                None => {
                    Link::connect(
                        addr,
                        self.conf.bind_ip,
                        self.conf.connect_timeout,
                        self.conf.network_timeout,
                    )
                    .await?
                }
            };
            let r = async {
                link.start(code, status, body.len() as u64, &[body]).await?;
                link.reply().await
            }
            .await;
            match r {
                Ok((st, b)) => {
                    // EINVAL closes the connection (§1.2).
                    if st != errno::EINVAL {
                        let mut idle = self.remote.lock().unwrap_or_else(|e| e.into_inner());
                        if idle.len() < MAX_IDLE_LINKS {
                            idle.push((addr, link));
                        }
                    }
                    return Ok((st, b));
                }
                // A kept connection the server closed meanwhile: once more.
                Err(e) if attempt == 0 && !fresh => {
                    debug!("trunk: connection to {addr}: {e}; again")
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("a fresh connection's error returns")
    }

    // ---- the trunk server's side ----

    /// Runs `f` on the trunk server's state, loading it first when we just
    /// became trunk server.
    async fn with_served<T>(
        &self,
        f: impl FnOnce(&Trunk, &mut Served) -> Result<T, TrunkError>,
    ) -> Result<T, TrunkError> {
        let mut guard = self.served.lock().await;
        if !self.state().serving.load(Ordering::SeqCst) {
            // Another server took over: what we knew is stale.
            *guard = None;
            return Err(TrunkError::NotServer);
        }
        if guard.is_none() {
            let persisted = {
                let init = self.reporter.init.lock().await;
                init.other
                    .iter()
                    .find(|(k, _)| k == "current_trunk_file_id")
                    .and_then(|(_, v)| v.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            let served = crate::service::blocking(|| self.load(persisted))?;
            *guard = Some(served);
        }
        let served = guard.as_mut().expect("loaded above");
        let before = served.last_id;
        let r = crate::service::blocking(|| {
            self.settle_pending(served);
            f(self, served)
        });
        let free = served.map.free_bytes() / (1024 * 1024);
        self.state().free_mb.store(free as i64, Ordering::Relaxed);
        let new_id = (served.last_id != before).then_some(served.last_id);
        let binlog = served.binlog.clone();
        drop(guard);
        if let Some(id) = new_id {
            self.state().last_id.fetch_max(id, Ordering::SeqCst);
            let mut init = self.reporter.init.lock().await;
            init.other.retain(|(k, _)| k != "current_trunk_file_id");
            init.other
                .push(("current_trunk_file_id".into(), id.to_string()));
            if let Err(e) = init.save(&self.conf.base_path) {
                warn!("trunk: saving current_trunk_file_id: {e}");
            }
        }
        // Durable mode: what the reply tells of is on disk first (a slot
        // given out is never given again after a crash). Requests that
        // wrote meanwhile share one fdatasync.
        if self.store.config().durable {
            let upto = self.binlog_written.load(Ordering::SeqCst);
            crate::service::blocking(|| {
                let mut synced = self.binlog_synced.lock().unwrap_or_else(|e| e.into_inner());
                if *synced < upto {
                    let now = self.binlog_written.load(Ordering::SeqCst);
                    binlog
                        .sync_data()
                        .map_err(|e| TrunkError::io("fdatasync of the trunk binlog", e))?;
                    *synced = now;
                }
                Ok::<(), TrunkError>(())
            })?;
        }
        r
    }

    /// TRUNK_ALLOC_SPACE: a slot of `need` bytes in store path `store_path`.
    pub async fn serve_alloc(&self, store_path: u8, need: u32) -> Result<TrunkInfo, TrunkError> {
        let params = self.state().params();
        if usize::from(store_path) >= self.store.path_count() {
            return Err(TrunkError::Invalid(format!(
                "store path {store_path} (this server has {})",
                self.store.path_count()
            )));
        }
        let mut need = need.max(params.slot_min_size);
        if params.alignment > 1 {
            need = need.div_ceil(params.alignment) * params.alignment;
        }
        if need > params.file_size || need <= HEADER_LEN as u32 {
            return Err(TrunkError::Invalid(format!(
                "a slot of {need} bytes (trunk files have {})",
                params.file_size
            )));
        }
        self.with_served(|t, s| t.alloc_in(s, store_path, need, &params))
            .await
    }

    fn alloc_in(
        &self,
        s: &mut Served,
        store_path: u8,
        need: u32,
        params: &TrunkParams,
    ) -> Result<TrunkInfo, TrunkError> {
        for _ in 0..MAX_SKIPS {
            let info = match s.map.alloc(store_path, need, params.slot_min_size) {
                Some(i) => i,
                None => {
                    self.new_trunk_file(s, store_path, params)?;
                    continue;
                }
            };
            if let Some(held) = self.occupied(&info) {
                // The map did not know this slot: learn it, try the next.
                warn!("trunk: {info:?} holds a file on disk; the free space map missed it");
                s.map.take(&held, params.file_size);
                s.map.give(&TrunkInfo {
                    slot: TrunkSlot {
                        offset: held.slot.offset.saturating_add(held.slot.alloc_size),
                        alloc_size: info.end().saturating_sub(held.end()) as u32,
                        ..info.slot
                    },
                    ..info
                });
                continue;
            }
            self.record(s, SpaceOp::Allocated, info)?;
            return Ok(info);
        }
        Err(TrunkError::NoSpace(format!(
            "{MAX_SKIPS} slots in a row were found holding files"
        )))
    }

    /// TRUNK_ALLOC_CONFIRM: a failed upload gives its slot back.
    pub async fn serve_confirm(&self, info: TrunkInfo, ok: bool) -> Result<(), TrunkError> {
        if ok {
            return self.with_served(|_, _| Ok(())).await;
        }
        self.serve_free(info).await
    }

    /// TRUNK_FREE_SPACE, and a failed upload's confirm.
    pub async fn serve_free(&self, info: TrunkInfo) -> Result<(), TrunkError> {
        self.with_served(|t, s| {
            if s.map.file(info.store_path, info.slot.trunk_id).is_none() {
                return Err(TrunkError::Invalid(format!("{info:?}: no such trunk file")));
            }
            if t.occupied(&info).is_some() {
                // Our copy still holds the file: the delete has not reached
                // us yet. The slot is given out again only once it has, so
                // that no replica still holding the old file gets a new
                // one's content in its place.
                if s.pending.len() < MAX_PENDING {
                    s.pending.insert(info);
                } else {
                    warn!("trunk: {MAX_PENDING} slots wait for their delete; {info:?} stays taken");
                }
                return Ok(());
            }
            s.map.give(&info);
            t.record(s, SpaceOp::Freed, info)
        })
        .await
    }

    /// Frees the slots whose delete has reached our disk since they were
    /// freed (at most once a second).
    fn settle_pending(&self, s: &mut Served) {
        if s.pending.is_empty() || s.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        s.checked = std::time::Instant::now();
        let pending = std::mem::take(&mut s.pending);
        for info in pending {
            if self.occupied(&info).is_some() {
                s.pending.insert(info);
                continue;
            }
            s.map.give(&info);
            if let Err(e) = self.record(s, SpaceOp::Freed, info) {
                warn!("trunk: {e}");
            }
        }
    }

    /// The slot (from its header) when `info`'s first bytes hold a file on
    /// our disk.
    fn occupied(&self, info: &TrunkInfo) -> Option<TrunkInfo> {
        let path = self.trunk_path(info).ok()?;
        let f = File::open(path).ok()?;
        let room = f
            .metadata()
            .ok()?
            .len()
            .checked_sub(u64::from(info.slot.offset))?;
        let mut h = [0u8; HEADER_LEN];
        f.read_exact_at(&mut h, u64::from(info.slot.offset)).ok()?;
        let h = SlotHeader::decode(&h);
        h.is_used(room).then_some(TrunkInfo {
            slot: TrunkSlot {
                alloc_size: h.alloc_size,
                ..info.slot
            },
            ..*info
        })
    }

    fn trunk_path(&self, info: &TrunkInfo) -> Result<PathBuf, TrunkError> {
        let idx = usize::from(info.store_path);
        if idx >= self.store.path_count() {
            return Err(TrunkError::Invalid(format!("{info:?}: no such store path")));
        }
        let data = self.store.data_dir(idx);
        Ok(data
            .join(format!("{:02X}", info.sub_high))
            .join(format!("{:02X}", info.sub_low))
            .join(fdfs_proto::trunk::file_name(&info.slot)))
    }

    /// Creates the next trunk file in store path `store_path`.
    fn new_trunk_file(
        &self,
        s: &mut Served,
        store_path: u8,
        params: &TrunkParams,
    ) -> Result<(), TrunkError> {
        let sc = self.store.config().subdir_count.max(1);
        for _ in 0..1024 {
            let id = s
                .last_id
                .checked_add(1)
                .ok_or_else(|| TrunkError::NoSpace("trunk file ids exhausted".into()))?;
            s.last_id = id;
            // Spread over the sub-directories, deterministically.
            let info = TrunkInfo {
                store_path,
                sub_high: ((id / sc) % sc) as u8,
                sub_low: (id % sc) as u8,
                slot: TrunkSlot {
                    trunk_id: id,
                    offset: 0,
                    alloc_size: params.file_size,
                },
            };
            let path = self.trunk_path(&info)?;
            if let Some(d) = path.parent() {
                fs::create_dir_all(d)
                    .map_err(|e| TrunkError::io(format!("creating {}", d.display()), e))?;
            }
            let f = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => f,
                // An id a former trunk server used: the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(TrunkError::io(format!("creating {}", path.display()), e)),
            };
            f.set_len(u64::from(params.file_size))
                .map_err(|e| TrunkError::io(format!("sizing {}", path.display()), e))?;
            if self.store.config().durable {
                self.store
                    .sync_dir(&path)
                    .map_err(|e| TrunkError::io("fsync of the directory", e))?;
            }
            s.map.add_file(
                store_path,
                id,
                TrunkFile {
                    sub_high: info.sub_high,
                    sub_low: info.sub_low,
                    len: params.file_size,
                },
            );
            info!(trunk_file = %path.display(), "trunk: new trunk file");
            return Ok(());
        }
        Err(TrunkError::NoSpace(
            "1024 trunk file ids in a row already exist".into(),
        ))
    }

    /// Appends a change to the trunk binlog; [`Trunk::with_served`] syncs
    /// it before the reply.
    fn record(&self, s: &mut Served, op: SpaceOp, info: TrunkInfo) -> Result<(), TrunkError> {
        let line = SpaceRecord {
            timestamp: crate::store::now(),
            op,
            info,
        }
        .line();
        (&*s.binlog)
            .write_all(line.as_bytes())
            .map_err(|e| TrunkError::io("writing the trunk binlog", e))?;
        self.binlog_written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The trunk server's state, rebuilt from the trunk binlog and the
    /// trunk files our binlog says are alive.
    fn load(&self, persisted_id: u32) -> Result<Served, TrunkError> {
        let params = self.state().params();
        let mut map = SpaceMap::new();
        let path = self.binlog_path();
        // Trunk files are made whole (`trunk_file_size`); a copy made by
        // replication may be shorter, one made under a bigger setting longer.
        let len_of = |t: &Trunk, i: &TrunkInfo| {
            t.trunk_path(i)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .map_or(params.file_size, |m| {
                    (m.len().min(u64::from(u32::MAX)) as u32).max(params.file_size)
                })
        };
        let mut records = 0u64;
        match File::open(&path) {
            Ok(f) => {
                for line in io::BufReader::new(f).lines() {
                    let line = line.map_err(|e| TrunkError::io("reading the trunk binlog", e))?;
                    let Some(r) = SpaceRecord::parse(&line) else {
                        continue;
                    };
                    records += 1;
                    match r.op {
                        SpaceOp::Allocated => map.take(&r.info, len_of(self, &r.info)),
                        SpaceOp::Freed => map.give(&r.info),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrunkError::io("opening the trunk binlog", e)),
        }
        let mut live = 0u64;
        let work = self.conf.base_path.join("data").join(".trunk-load");
        for idx in 0..self.store.path_count() {
            let names = LiveNames::split(self.store.binlog().dir(), idx, &work, 0)
                .map_err(|e| TrunkError::io("reading the binlog", e))?;
            for k in 0..names.parts() {
                let part = names
                    .part(k)
                    .map_err(|e| TrunkError::io("reading the binlog", e))?;
                for name in part {
                    let Ok(n) = LogicName::parse(&name) else {
                        continue;
                    };
                    if let (FileKind::Trunk(_), Some(info)) = (n.kind, TrunkInfo::of_name(&n)) {
                        map.take(&info, len_of(self, &info));
                        live += 1;
                    }
                }
            }
            names.remove();
        }
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)
                .map_err(|e| TrunkError::io(format!("creating {}", d.display()), e))?;
        }
        let binlog = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrunkError::io(format!("opening {}", path.display()), e))?;
        let st = self.state();
        let last_id = map
            .max_id()
            .max(persisted_id)
            .max(st.id_floor.load(Ordering::SeqCst))
            .max(st.last_id.load(Ordering::SeqCst));
        info!(
            binlog_records = records,
            live_packed_files = live,
            free_mb = map.free_bytes() / (1024 * 1024),
            last_trunk_id = last_id,
            "trunk: this storage is the group's trunk server"
        );
        Ok(Served {
            map,
            binlog: Arc::new(binlog),
            last_id,
            pending: std::collections::BTreeSet::new(),
            checked: std::time::Instant::now(),
        })
    }

    // ---- the trunk binlog of other storages (TRUNK_SYNC_BINLOG & co) ----

    /// While we are trunk server: keeps every ONLINE or ACTIVE peer's copy
    /// of the trunk binlog equal to ours (truncated, then sent from the
    /// start, when we take the role or lose track of a peer), so that the
    /// next trunk server knows which slots were given out even before the
    /// files reach it.
    pub async fn push_binlog(self: Arc<Self>, shutdown: fdfs_runtime::Shutdown) {
        use std::collections::HashMap;
        let mut sent: HashMap<SocketAddr, u64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PUSH_EVERY) => {}
                _ = shutdown.wait() => return,
            }
            let st = self.state();
            if !st.serving.load(Ordering::Relaxed) {
                sent.clear();
                continue;
            }
            let me = st.server_addr();
            let peers: Vec<SocketAddr> = self
                .reporter
                .group_servers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|b| {
                    matches!(
                        b.status,
                        fdfs_proto::server::status::ACTIVE | fdfs_proto::server::status::ONLINE
                    )
                })
                .filter_map(|b| {
                    let ip: IpAddr = b.ip.parse().ok()?;
                    Some(SocketAddr::new(ip, u16::try_from(b.port).ok()?))
                })
                .filter(|a| Some(*a) != me)
                .collect();
            sent.retain(|a, _| peers.contains(a));
            let size = self.binlog_size();
            for peer in peers {
                let from = sent.get(&peer).copied();
                if from == Some(size) {
                    continue;
                }
                match self.push_to(peer, from, size).await {
                    Ok(upto) => {
                        sent.insert(peer, upto);
                    }
                    Err(e) => {
                        // Started over (truncate first) next time.
                        debug!(%peer, "trunk: sending the trunk binlog: {e}");
                        sent.remove(&peer);
                    }
                }
            }
        }
    }

    /// Sends our trunk binlog from `from` (`None`: truncate the peer's
    /// first, then from the start) up to `size`, in whole lines.
    async fn push_to(&self, peer: SocketAddr, from: Option<u64>, size: u64) -> io::Result<u64> {
        let mut link = Link::connect(
            peer,
            self.conf.bind_ip,
            self.conf.connect_timeout,
            self.conf.network_timeout,
        )
        .await?;
        let refused = |what: &str, st: u8| {
            io::Error::other(format!("{what} answered {}", errno::describe(st).0))
        };
        let mut at = match from {
            Some(o) => o,
            None => {
                let (st, _) = link.call(sc::TRUNK_TRUNCATE_BINLOG_FILE, &[]).await?;
                if st != 0 {
                    return Err(refused("TRUNK_TRUNCATE_BINLOG_FILE", st));
                }
                0
            }
        };
        let file = File::open(self.binlog_path())?;
        let mut buf = vec![0u8; PUSH_CHUNK];
        while at < size {
            let want = ((size - at) as usize).min(PUSH_CHUNK);
            file.read_exact_at(&mut buf[..want], at)?;
            // Whole lines only: the rest goes with the next chunk.
            let Some(end) = buf[..want].iter().rposition(|&b| b == b'\n') else {
                break;
            };
            let (st, _) = link.call(sc::TRUNK_SYNC_BINLOG, &buf[..=end]).await?;
            if st != 0 {
                return Err(refused("TRUNK_SYNC_BINLOG", st));
            }
            at += end as u64 + 1;
        }
        link.quit().await;
        Ok(at)
    }

    /// TRUNK_SYNC_BINLOG: lines the trunk server sends; kept for the day we
    /// take its role.
    pub fn append_binlog(&self, lines: &[u8]) -> Result<(), TrunkError> {
        if self.state().serving.load(Ordering::Relaxed) {
            return Err(TrunkError::Invalid(
                "TRUNK_SYNC_BINLOG to the trunk server itself".into(),
            ));
        }
        let path = self.binlog_path();
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)
                .map_err(|e| TrunkError::io(format!("creating {}", d.display()), e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrunkError::io(format!("opening {}", path.display()), e))?;
        f.write_all(lines)
            .map_err(|e| TrunkError::io("writing the trunk binlog", e))
    }

    /// TRUNK_GET_BINLOG_SIZE.
    pub fn binlog_size(&self) -> u64 {
        fs::metadata(self.binlog_path()).map_or(0, |m| m.len())
    }

    /// TRUNK_TRUNCATE_BINLOG_FILE: a new trunk server sends its binlog
    /// from the start.
    pub fn truncate_binlog(&self) -> Result<(), TrunkError> {
        if self.state().serving.load(Ordering::Relaxed) {
            return Err(TrunkError::Invalid(
                "the trunk server keeps its own binlog".into(),
            ));
        }
        match fs::write(self.binlog_path(), b"") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(TrunkError::io("truncating the trunk binlog", e))
            }
            _ => Ok(()),
        }
    }
}

//! Disk recovery: a store path that comes up empty on a storage that has
//! been in its group (a replaced disk) is filled again from the group's
//! other servers before this server joins its trackers, so no client is
//! sent here for a file the disk lost.
//!
//! - Which paths: [`Store::open`] marks a store path it finds without its
//!   `.fastdfs_vars` (a new disk) with [`RECOVERY_MARK`]. The mark stays
//!   until the path is whole again: a stop or crash half-way resumes at the
//!   next start. A new server's paths are new too; its binlog is empty, so
//!   there is nothing to fetch.
//! - Which files: those our own binlog (in `base_path`, on another disk)
//!   says are on that path, net of deletes and renames ([`LiveNames`]: in
//!   parts on disk, so memory stays bounded however many files).
//! - From where: any ACTIVE server of the group (the trackers' list), with
//!   the client commands DOWNLOAD_FILE and GET_METADATA, by
//!   `disk_recovery_threads` workers on kept-alive connections. A file no
//!   server has any more was deleted since and is skipped. Files already
//!   here are kept.
//! - Written like a replica, without a binlog record (ours already has it):
//!   a temporary file, fsynced, renamed; directories fsynced at the end.
//!
//! PROTOCOL.md's FETCH_ONE_PATH_BINLOG (26) is for a storage that lost its
//! binlog with the disk; ours keeps it in `base_path`, and a storage that
//! lost `base_path` is a new server that catches up by itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdfs_proto::binlog::BinlogOp;
use fdfs_proto::cmd::storage as sc;
use fdfs_proto::common::{put_group, GROUP_LEN};
use fdfs_proto::server::status;
use fdfs_proto::storage::DownloadReq;
use fdfs_proto::tracker::StorageStat;
use fdfs_proto::{cmd, errno, FileKind, GroupName, Header, LogicName, SourceServer, HEADER_LEN};
use fdfs_runtime::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

use crate::store::binlog::BinlogReader;
use crate::store::{Store, RECOVERY_MARK};

/// How to reach the trackers and the group's servers.
#[derive(Debug, Clone)]
pub struct RecoveryConf {
    pub trackers: crate::sync::link::Trackers,
    pub bind_ip: Option<IpAddr>,
    pub port: u16,
    /// Our storage id (`server_id`), if any: we are not our own source.
    pub server_id: String,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    /// Files fetched at once (`disk_recovery_threads`).
    pub threads: usize,
    /// Shown on the metrics port while a path is being refilled.
    pub progress: Arc<Progress>,
}

/// How far each store path under recovery is: (files missing at the start
/// of the attempt, files dealt with since). A path leaves when it is whole.
#[derive(Debug, Default)]
pub struct Progress {
    paths: std::sync::Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
}

impl Progress {
    /// Each path under recovery: (index, missing, done).
    pub fn snapshot(&self) -> Vec<(usize, u64, u64)> {
        self.lock().iter().map(|(i, (m, d))| (*i, *m, *d)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<usize, (u64, u64)>> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, idx: usize, missing: usize) {
        self.lock().insert(idx, (missing as u64, 0));
    }

    /// One more file dealt with: (missing, done) after it.
    fn advance(&self, idx: usize) -> (u64, u64) {
        match self.lock().get_mut(&idx) {
            Some(p) => {
                p.1 += 1;
                *p
            }
            None => (0, 0),
        }
    }

    fn done(&self, idx: usize) {
        self.lock().remove(&idx);
    }
}

/// What one store path's recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Fetched from a peer.
    pub restored: u64,
    /// Already here.
    pub present: u64,
    /// No server has it any more (deleted since).
    pub gone: u64,
}

/// Recovers every marked store path; returns when they are whole, when the
/// group has no other server to ask (logged: those files are lost here),
/// or on `shutdown`. A failed attempt (tracker or peers unreachable, no
/// peer ACTIVE yet) is retried with backoff.
pub async fn recover_marked_paths(store: &Arc<Store>, conf: &RecoveryConf, shutdown: &Shutdown) {
    for idx in 0..store.path_count() {
        let mark = store.data_dir(idx).join(RECOVERY_MARK);
        if !mark.exists() {
            continue;
        }
        let work = store
            .binlog()
            .dir()
            .with_file_name(format!(".recovery.{idx:02X}"));
        let names = match LiveNames::split(store.binlog().dir(), idx, &work, 0) {
            Ok(n) => n,
            Err(e) => {
                error!(
                    store_path = idx,
                    "disk recovery: reading the binlog into {}: {e}; the path is not recovered",
                    work.display()
                );
                continue;
            }
        };
        if names.total == 0 {
            // A new disk of a new server (or one with nothing on it).
            names.remove();
            let _ = fs::remove_file(&mark);
            continue;
        }
        warn!(
            store_path = idx,
            files = names.total,
            "disk recovery: store path {idx} is new but the binlog lists files on it; fetching the missing ones from the group before serving"
        );
        let mut backoff = Duration::from_secs(1);
        loop {
            if shutdown.is_triggered() {
                return;
            }
            match recover_path(store, conf, idx, &names, shutdown).await {
                Ok(Some(r)) => {
                    conf.progress.done(idx);
                    if let Err(e) = finish(store, idx, &mark) {
                        warn!(store_path = idx, "disk recovery: {e}");
                    }
                    info!(
                        store_path = idx,
                        restored = r.restored,
                        present = r.present,
                        gone = r.gone,
                        "disk recovery done"
                    );
                    names.remove();
                    break;
                }
                Ok(None) => return,
                Err(Attempt::NoPeer) => {
                    error!(
                        store_path = idx,
                        files = names.total,
                        "disk recovery: no other server in the group holds these files; they are lost on this server (the mark stays: the next start tries again)"
                    );
                    names.remove();
                    break;
                }
                Err(Attempt::Retry(why)) => {
                    warn!(store_path = idx, retry_in = ?backoff, "disk recovery: {why}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Why an attempt ended early.
enum Attempt {
    /// The group has no server but us.
    NoPeer,
    /// Worth another try later.
    Retry(String),
}

/// Binlog bytes per part of [`LiveNames`]: about 200,000 names, a few tens
/// of MiB in memory at a time.
const PART_BINLOG_BYTES: u64 = 16 << 20;
/// At most this many parts, each an open file while the binlog is split
/// (binlogs beyond 4 GiB make bigger parts).
const MAX_PARTS: usize = 256;

/// The files (and `-m` sidecars) our binlog says store path `idx` holds, net
/// of deletes and renames. A path may hold tens of millions of files, so
/// the names are split by a hash into parts written to a work folder, and
/// only one part is in memory at a time: a name's fate depends only on its
/// own records, which all land in its part, in binlog order.
pub struct LiveNames {
    dir: PathBuf,
    parts: usize,
    /// Live names over all parts.
    pub total: u64,
}

impl LiveNames {
    /// Reads the binlog in `binlog_dir` into `parts` parts in `dir` (made
    /// afresh; `parts = 0`: one per [`PART_BINLOG_BYTES`] of binlog).
    pub fn split(
        binlog_dir: &Path,
        idx: usize,
        dir: &Path,
        parts: usize,
    ) -> std::io::Result<LiveNames> {
        let prefix = format!("M{idx:02X}/");
        Self::split_matching(binlog_dir, dir, parts, |name| name.starts_with(&prefix))
    }

    /// [`LiveNames::split`] of the names `keep` accepts, of any store path,
    /// in one pass over the binlog.
    pub fn split_matching(
        binlog_dir: &Path,
        dir: &Path,
        parts: usize,
        keep: impl Fn(&str) -> bool,
    ) -> std::io::Result<LiveNames> {
        use std::io::BufWriter;
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(dir)?;
        let parts = if parts > 0 {
            parts
        } else {
            let mut bytes = 0;
            for e in fs::read_dir(binlog_dir)? {
                let e = e?;
                if e.file_name().to_string_lossy().starts_with("binlog.") {
                    bytes += e.metadata()?.len();
                }
            }
            (bytes.div_ceil(PART_BINLOG_BYTES) as usize).clamp(1, MAX_PARTS)
        };
        let mut out: Vec<Option<BufWriter<fs::File>>> = (0..parts).map(|_| None).collect();
        let mut put = |sign: char, name: &str| -> std::io::Result<()> {
            let k = part_of(name, parts);
            let w = match &mut out[k] {
                Some(w) => w,
                slot => slot.insert(BufWriter::new(fs::File::create(dir.join(k.to_string()))?)),
            };
            writeln!(w, "{sign}{name}")
        };
        let mut r = BinlogReader::new(binlog_dir, 0, 0);
        while let Some(item) = r.next_item()? {
            let Ok(rec) = item.record else {
                continue;
            };
            // By the record's name: a rename's old name is in the same
            // store path, and packed files are never renamed.
            if !keep(&rec.filename) {
                continue;
            }
            match rec.op {
                BinlogOp::Delete => put('-', &rec.filename)?,
                BinlogOp::Rename { old } => {
                    put('-', &old)?;
                    put('+', &rec.filename)?;
                }
                BinlogOp::Create
                | BinlogOp::Update
                | BinlogOp::Append { .. }
                | BinlogOp::Modify { .. }
                | BinlogOp::Truncate { .. }
                | BinlogOp::Link { .. } => put('+', &rec.filename)?,
            }
        }
        for w in out.into_iter().flatten() {
            w.into_inner().map_err(|e| e.into_error())?;
        }
        let mut live = LiveNames {
            dir: dir.to_owned(),
            parts,
            total: 0,
        };
        for k in 0..parts {
            live.total += live.part(k)?.len() as u64;
        }
        Ok(live)
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The part `name` belongs to.
    pub fn part_of(&self, name: &str) -> usize {
        part_of(name, self.parts)
    }

    /// The live names of part `k`, sorted.
    pub fn part(&self, k: usize) -> std::io::Result<BTreeSet<String>> {
        use std::io::BufRead;
        let mut live = BTreeSet::new();
        let f = match fs::File::open(self.dir.join(k.to_string())) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            match line.split_at_checked(1) {
                Some(("+", name)) => {
                    live.insert(name.to_owned());
                }
                Some(("-", name)) => {
                    live.remove(name);
                }
                _ => {}
            }
        }
        Ok(live)
    }

    /// Removes the work folder.
    pub fn remove(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The part a name goes to.
fn part_of(name: &str, parts: usize) -> usize {
    crc32fast::hash(name.as_bytes()) as usize % parts
}

/// One attempt over `names`; `Ok(None)` on shutdown.
async fn recover_path(
    store: &Arc<Store>,
    conf: &RecoveryConf,
    idx: usize,
    names: &LiveNames,
    shutdown: &Shutdown,
) -> Result<Option<Recovered>, Attempt> {
    // What is missing is known without the network: a path that only
    // lacked its mark (a store path of a FastDFS we replaced, say) needs no
    // peer, and so never waits for one. Counted over every part first, for
    // the progress; each part's list is made again when its turn comes.
    let mut missing_total = 0;
    for k in 0..names.parts() {
        missing_total += missing_in(store, names, k)?.1.len();
    }
    let mut done = Recovered::default();
    if missing_total == 0 {
        done.present = names.total;
        return Ok(Some(done));
    }
    conf.progress.start(idx, missing_total);
    let peers = Arc::new(peers(store, conf).await?);
    for k in 0..names.parts() {
        let (present, missing) = missing_in(store, names, k)?;
        done.present += present;
        if missing.is_empty() {
            continue;
        }
        let Some(r) = fetch_missing(store, conf, idx, &peers, missing, shutdown).await? else {
            return Ok(None);
        };
        done.restored += r.restored;
        done.gone += r.gone;
    }
    Ok(Some(done))
}

/// Part `k` of `names`: how many are here, and the missing ones.
fn missing_in(
    store: &Store,
    names: &LiveNames,
    k: usize,
) -> Result<(u64, Vec<(LogicName, PathBuf)>), Attempt> {
    let part = names
        .part(k)
        .map_err(|e| Attempt::Retry(format!("reading part {k} of the file list: {e}")))?;
    let mut present = 0;
    let mut missing = Vec::new();
    for name in &part {
        let (logic, path) = path_of(store, name).map_err(Attempt::Retry)?;
        let here = store
            .holds(&logic)
            .map_err(|e| Attempt::Retry(format!("{name}: {e}")))?;
        if here {
            present += 1;
        } else {
            missing.push((logic, path));
        }
    }
    Ok((present, missing))
}

/// Fetches `missing` from `peers`; `Ok(None)` on shutdown.
async fn fetch_missing(
    store: &Arc<Store>,
    conf: &RecoveryConf,
    idx: usize,
    peers: &Arc<Vec<SocketAddr>>,
    missing: Vec<(LogicName, PathBuf)>,
    shutdown: &Shutdown,
) -> Result<Option<Recovered>, Attempt> {
    // `disk_recovery_threads` workers take the missing files in turn, each
    // with its own kept-alive connection per peer.
    let job = Arc::new(Job {
        missing,
        next: AtomicUsize::new(0),
        restored: AtomicU64::new(0),
        gone: AtomicU64::new(0),
        failed: std::sync::Mutex::new(None),
        dirs: std::sync::Mutex::new(HashSet::new()),
    });
    let workers: Vec<_> = (0..conf.threads.max(1))
        .map(|_| {
            let (store, conf, peers, job, sd) = (
                store.clone(),
                conf.clone(),
                peers.clone(),
                job.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move { job.work(&store, &conf, idx, &peers, &sd).await })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    if shutdown.is_triggered() {
        return Ok(None);
    }
    if let Some(e) = job.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(Attempt::Retry(e));
    }
    let dirs = std::mem::take(&mut *job.dirs.lock().unwrap_or_else(|e| e.into_inner()));
    for d in dirs {
        if let Err(e) = fs::File::open(&d).and_then(|f| f.sync_all()) {
            return Err(Attempt::Retry(format!("fsync of {}: {e}", d.display())));
        }
    }
    Ok(Some(Recovered {
        restored: job.restored.load(Ordering::Relaxed),
        present: 0,
        gone: job.gone.load(Ordering::Relaxed),
    }))
}

/// The missing files of one attempt, shared by its workers.
struct Job {
    missing: Vec<(LogicName, PathBuf)>,
    next: AtomicUsize,
    restored: AtomicU64,
    gone: AtomicU64,
    /// The first file some server could not answer for: the attempt fails
    /// (that file is not counted as gone) and the workers stop.
    failed: std::sync::Mutex<Option<String>>,
    /// Directories that got files: fsynced once at the end.
    dirs: std::sync::Mutex<HashSet<PathBuf>>,
}

impl Job {
    async fn work(
        &self,
        store: &Store,
        conf: &RecoveryConf,
        idx: usize,
        peers: &[SocketAddr],
        shutdown: &Shutdown,
    ) {
        let mut fetcher = Fetcher::new(conf);
        loop {
            if shutdown.is_triggered() || self.has_failed() {
                break;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let Some((logic, path)) = self.missing.get(n) else {
                break;
            };
            let name = &logic.to_string();
            let mut had_error = None;
            let mut fetched = false;
            for peer in peers {
                match fetcher.fetch_into(store, idx, *peer, logic, path).await {
                    Ok(true) => {
                        fetched = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => had_error = Some(format!("{name} from {peer}: {e}")),
                }
            }
            let (missing, done) = if fetched {
                self.restored.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = path.parent() {
                    self.dirs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(d.to_owned());
                }
                conf.progress.advance(idx)
            } else if let Some(e) = had_error {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                break;
            } else {
                self.gone.fetch_add(1, Ordering::Relaxed);
                conf.progress.advance(idx)
            };
            if done > 0 && done % 1000 == 0 {
                info!(store_path = idx, done, missing, "disk recovery progress");
            }
        }
        fetcher.close().await;
    }

    fn has_failed(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// The ACTIVE servers of our group other than us.
async fn peers(store: &Store, conf: &RecoveryConf) -> Result<Vec<SocketAddr>, Attempt> {
    let list = conf
        .trackers
        .list_group(store.group())
        .await
        .map_err(|e| Attempt::Retry(format!("asking the trackers for the group: {e}")))?;
    let my_ip = match (conf.bind_ip, store.source()) {
        (Some(ip), _) => Some(ip.to_string()),
        (None, SourceServer::Ip(ip)) => Some(ip.to_string()),
        (None, SourceServer::Id(_)) => None,
    };
    let is_me = |s: &StorageStat| {
        (!conf.server_id.is_empty() && s.id == conf.server_id)
            || (my_ip.as_deref() == Some(s.ip_addr.as_str())
                && s.storage_port == i64::from(conf.port))
    };
    let others: Vec<&StorageStat> = list
        .iter()
        .filter(|s| !is_me(s) && !matches!(s.status, status::DELETED | status::IP_CHANGED))
        .collect();
    if others.is_empty() {
        return Err(Attempt::NoPeer);
    }
    let active: Vec<SocketAddr> = others
        .iter()
        .filter(|s| s.status == status::ACTIVE)
        .filter_map(|s| {
            let ip: IpAddr = s.ip_addr.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(s.storage_port).ok()?))
        })
        .collect();
    if active.is_empty() {
        return Err(Attempt::Retry(format!(
            "none of the group's {} other servers is ACTIVE yet",
            others.len()
        )));
    }
    Ok(active)
}

fn path_of(store: &Store, name: &str) -> Result<(LogicName, PathBuf), String> {
    crate::sync::apply::path_of(store, name).map_err(|e| format!("{name}: {e}"))
}

/// One worker's connections to the peers, kept alive between files (also
/// `fdfs fsck --repair`'s).
pub(crate) struct Fetcher {
    conns: HashMap<SocketAddr, TcpStream>,
    connect_timeout: Duration,
    /// A whole file must come within this (a stalled peer must not hang
    /// the start): the next peer, or the next attempt, follows.
    per_file: Duration,
}

impl Fetcher {
    fn new(conf: &RecoveryConf) -> Fetcher {
        Fetcher::with_timeouts(conf.connect_timeout, conf.network_timeout)
    }

    pub(crate) fn with_timeouts(connect: Duration, network: Duration) -> Fetcher {
        Fetcher {
            conns: HashMap::new(),
            connect_timeout: connect,
            per_file: network.max(Duration::from_secs(1)) * 4,
        }
    }

    /// Fetches `name` from `peer` into `path` (temporary file, fsync,
    /// rename), or into its slot for a file of upstream's trunk files.
    /// `Ok(false)`: the peer does not have it.
    async fn fetch_into(
        &mut self,
        store: &Store,
        idx: usize,
        peer: SocketAddr,
        name: &LogicName,
        path: &Path,
    ) -> Result<bool, String> {
        let (tmp, mut file) = store
            .new_named_tmp(idx, "recover.")
            .map_err(|e| e.to_string())?;
        let res = self
            .fetch(peer, store.group(), &name.to_string(), &mut file)
            .await;
        let res = res.and_then(|found| {
            if !found {
                return Ok(false);
            }
            if let FileKind::Trunk(slot) = name.kind {
                let src = fs::File::open(&tmp).map_err(|e| format!("reopening {name}: {e}"))?;
                let size = src
                    .metadata()
                    .map_err(|e| format!("stat {name}: {e}"))?
                    .len();
                store
                    .write_slot(name, &slot, &src, size)
                    .map_err(|e| e.to_string())?;
                // The slot has it: the temporary file goes below.
                return Ok(true);
            }
            file.sync_all()
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| format!("saving {}: {e}", path.display()))?;
            Ok(true)
        });
        if !matches!(res, Ok(true)) || matches!(name.kind, FileKind::Trunk(_)) {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Streams a file (DOWNLOAD_FILE) or, for a `-m` name, its metadata
    /// (GET_METADATA) from `peer` into `out`. A connection that failed is
    /// dropped; one that answered (even "not found") is kept.
    pub(crate) async fn fetch(
        &mut self,
        peer: SocketAddr,
        group: &GroupName,
        name: &str,
        out: &mut fs::File,
    ) -> Result<bool, String> {
        let (code, body) = request_for(group, name)?;
        let mut s = match self.conns.remove(&peer) {
            Some(s) => s,
            None => {
                let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(peer))
                    .await
                    .map_err(|_| "connect timed out".to_owned())?
                    .map_err(|e| format!("connect: {e}"))?;
                let _ = s.set_nodelay(true);
                s
            }
        };
        let limit = self.per_file;
        match tokio::time::timeout(limit, exchange(&mut s, code, &body, out)).await {
            Ok(Ok(found)) => {
                self.conns.insert(peer, s);
                Ok(found)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no whole answer within {limit:?}")),
        }
    }

    pub(crate) async fn close(self) {
        for (_, mut s) in self.conns {
            let _ = s
                .write_all(&fdfs_proto::encode_frame(cmd::QUIT, 0, &[]))
                .await;
        }
    }
}

/// The request that fetches `name`: DOWNLOAD_FILE, or GET_METADATA of the
/// master for a `-m` sidecar.
fn request_for(group: &GroupName, name: &str) -> Result<(u8, Vec<u8>), String> {
    let mut body = Vec::new();
    match name.strip_suffix("-m") {
        Some(master) => {
            put_group(&mut body, group, GROUP_LEN);
            body.extend_from_slice(master.as_bytes());
            Ok((sc::GET_METADATA, body))
        }
        None => {
            let filename = LogicName::parse(name).map_err(|e| format!("{name}: {e}"))?;
            DownloadReq {
                offset: 0,
                length: 0,
                group: group.clone(),
                filename,
            }
            .encode(&mut body);
            Ok((sc::DOWNLOAD_FILE, body))
        }
    }
}

/// One request and its reply on `s`; the body goes to `out`. `Ok(false)`
/// for ENOENT.
async fn exchange(
    s: &mut TcpStream,
    code: u8,
    body: &[u8],
    out: &mut fs::File,
) -> Result<bool, String> {
    s.write_all(&fdfs_proto::encode_frame(code, 0, body))
        .await
        .map_err(|e| e.to_string())?;
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).await.map_err(|e| e.to_string())?;
    let h = Header::decode(&h, u64::MAX).map_err(|e| e.to_string())?;
    if h.cmd != cmd::RESP {
        return Err(format!("reply command {}", h.cmd));
    }
    if h.status != 0 {
        if h.pkg_len > 0 {
            // Error replies carry no body; one that does is not trusted.
            return Err(format!(
                "status {} with a {}-byte body",
                h.status, h.pkg_len
            ));
        }
        return if h.status == errno::ENOENT {
            Ok(false)
        } else {
            Err(format!(
                "status {} ({})",
                h.status,
                errno::describe(h.status).0
            ))
        };
    }
    let mut left = h.pkg_len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = s.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed with {left} bytes to come"));
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("writing: {e}"))?;
        left -= n as u64;
    }
    Ok(true)
}

/// The path is whole: its directory entries are durable, the mark goes.
fn finish(store: &Store, idx: usize, mark: &Path) -> Result<(), String> {
    fs::remove_file(mark).map_err(|e| format!("removing {}: {e}", mark.display()))?;
    fs::File::open(store.data_dir(idx))
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("fsync of {}: {e}", store.data_dir(idx).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdfs_proto::binlog::BinlogRecord;

    /// A file name on store path `path`, told apart by `n`.
    fn name(path: u8, n: u32, appender: bool) -> String {
        let info = fdfs_proto::file_id::NameInfo {
            source: SourceServer::Ip("127.0.0.11".parse().unwrap()),
            timestamp: 1_800_000_000 + n,
            size_field: fdfs_proto::file_id::NameInfo::size_field_for(10, appender, n),
            crc32: n,
        };
        let ext = fdfs_proto::file_id::ext_part("txt", n).unwrap();
        LogicName::build(path, 0, 0, info, None, &ext).to_string()
    }

    #[test]
    fn live_names_follow_the_binlog_in_any_number_of_parts() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |name: &str, op: BinlogOp| BinlogRecord {
            timestamp: 1_800_000_000,
            is_source: true,
            filename: name.into(),
            op,
        };
        let (a, b, app, renamed, other) = (
            name(1, 1, false),
            name(1, 2, false),
            name(1, 3, true),
            name(1, 4, false),
            name(0, 5, false),
        );
        let a_meta = format!("{a}-m");
        let slave = LogicName::parse(&a)
            .unwrap()
            .slave("_s", "txt")
            .unwrap()
            .to_string();
        let lines = [
            rec(&a, BinlogOp::Create),
            rec(&a_meta, BinlogOp::Create),
            rec(&other, BinlogOp::Create),
            rec(&b, BinlogOp::Create),
            rec(&b, BinlogOp::Delete),
            rec(&app, BinlogOp::Create),
            rec(
                &app,
                BinlogOp::Append {
                    offset: 0,
                    length: 3,
                },
            ),
            rec(&renamed, BinlogOp::Rename { old: app.clone() }),
            rec(&slave, BinlogOp::Link { target: a.clone() }),
        ];
        let text: String = lines.iter().map(|r| r.encode()).collect();
        fs::write(dir.path().join("binlog.000"), text + "garbage line\n").unwrap();
        let work = dir.path().join("work");
        // All in one part, or spread over several: the same names.
        for parts in [1, 2, 7, 0] {
            let live = LiveNames::split(dir.path(), 1, &work, parts).unwrap();
            let mut got = Vec::new();
            for k in 0..live.parts() {
                let part = live.part(k).unwrap();
                assert!(part.iter().all(|n| part_of(n, live.parts()) == k));
                got.extend(part);
            }
            got.sort();
            let mut want = vec![a.clone(), a_meta.clone(), renamed.clone(), slave.clone()];
            want.sort();
            assert_eq!(got, want, "{parts} parts");
            assert_eq!(live.total, 4);
        }
        // A split starts afresh, whatever a crashed attempt left.
        fs::write(work.join("5"), format!("+{}\n", name(0, 9, false))).unwrap();
        let live = LiveNames::split(dir.path(), 0, &work, 1).unwrap();
        assert_eq!(
            live.part(0).unwrap().into_iter().collect::<Vec<_>>(),
            [other]
        );
        assert_eq!(live.total, 1);
        assert!(!work.join("5").exists());
        live.remove();
        assert!(!work.exists());
        let none = LiveNames::split(dir.path(), 2, &work, 0).unwrap();
        assert_eq!((none.parts(), none.total), (1, 0));
    }
}

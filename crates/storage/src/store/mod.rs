//! The store engine: store paths, sub-directories, file-ID allocation,
//! atomic writes, metadata sidecars, appender and slave files, and the
//! binlog. No sockets: the service turns requests into calls here.
//!
//! # Writes and crash safety
//! New content (uploads, slave uploads) is streamed into a file without a
//! name (`O_TMPFILE` in `<store_path>/data/.tmp`) while its CRC32 is
//! computed; only when every byte is there does the file get its final name
//! (a link that refuses to replace an existing name). The binlog record is
//! appended after that, so the binlog never names a file that is not on
//! disk. A crash, a `kill -9` or a client that goes away mid-upload leaves
//! nothing. Where content is fsynced before it is named (`durable_sync =
//! fsync`, files not journaled), or the file system has no `O_TMPFILE`, it
//! is a temporary file `.tmp/<unique>` instead, renamed into place, and
//! `.tmp` is emptied on start.
//! Metadata sidecars are rewritten the same way (temporary file + rename).
//!
//! # Durability modes (`durable` in storage.conf)
//! * `durable = true` (default): an acknowledged upload survives a power
//!   loss. How, `durable_sync` says:
//!
//!   With `durable_sync = journal` (default) the record and the whole
//!   content of a small new file go to a write-ahead journal ([`journal`]),
//!   and one `fdatasync` of it covers every upload that finished meanwhile;
//!   a restart after a crash redoes what the journal holds before serving.
//!   Larger files are fsynced as with `fsync`.
//!
//!   With `durable_sync = fsync` the file is fsynced before it is named,
//!   then the binlog record and the file's directory are fsynced (in that
//!   order: see [`Store::commit_names`]). Binlog fsyncs are group commits
//!   ([`binlog::Binlog::sync`]): one fsync covers every record appended by
//!   concurrent uploads since the last one.
//!
//!   With `durable_sync = syncfs` an upload is instead named unsynced and
//!   one `syncfs(2)` per file system (store path, then base path for the
//!   binlog) covers every upload that finished meanwhile: one disk flush
//!   per batch instead of one per file.
//! * `durable = false`: acknowledge right after the rename, like FastDFS
//!   (the OS writes the data back later). A process crash loses nothing
//!   acknowledged; a power loss may.
//!
//! Appender operations (append, modify, truncate, regenerate) and metadata
//! changes on one file are serialised by the caller with
//! [`Store::lock_file`].

pub mod binlog;
pub mod disk;
pub mod error;
pub mod journal;
pub mod stats;
pub mod trunk;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fdfs_conf::{DurableSync, ReservedSpace};
use fdfs_proto::binlog::{BinlogOp, BinlogRecord};
use fdfs_proto::file_id::{ext_part, validate_ext, EXT_PART_LEN};
use fdfs_proto::storage::MetaOp;
use fdfs_proto::trunk::TrunkInfo;
use fdfs_proto::{metadata, FileKind, GroupName, LogicName, NameInfo, SourceServer};

use binlog::Binlog;
use disk::Disk;
pub use error::{Result, StoreError};
use stats::Stats;

/// Everything the engine needs from storage.conf (and the tracker).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub base_path: PathBuf,
    pub store_paths: Vec<PathBuf>,
    pub readonly: Vec<bool>,
    pub subdir_count: u32,
    /// 0 round robin, 1 hash.
    pub distribute_mode: u8,
    pub rotate_count: u32,
    pub durable: bool,
    pub durable_sync: DurableSync,
    pub group: GroupName,
    pub reserved: ReservedSpace,
    pub binlog_max_size: u64,
    /// Size of each of the two journal files (`durable_sync = journal`).
    pub journal_file_size: u64,
}

impl StoreConfig {
    pub fn from_conf(conf: &fdfs_conf::StorageConf, group: GroupName) -> StoreConfig {
        let mut store_paths = conf.store_paths.clone();
        if store_paths.is_empty() {
            store_paths.push(conf.daemon.base_path.clone());
        }
        StoreConfig {
            base_path: conf.daemon.base_path.clone(),
            readonly: (0..store_paths.len())
                .map(|i| conf.store_paths_readonly.get(i).copied().unwrap_or(false))
                .collect(),
            store_paths,
            subdir_count: conf.subdir_count_per_path.clamp(1, 256),
            distribute_mode: conf.file_distribute_path_mode,
            rotate_count: conf.file_distribute_rotate_count.max(1),
            durable: conf.durable,
            durable_sync: conf.durable_sync,
            group,
            reserved: ReservedSpace::default(),
            binlog_max_size: binlog::DEFAULT_MAX_SIZE,
            journal_file_size: conf.journal_file_size,
        }
    }
}

/// What an upload creates.
#[derive(Debug, Clone)]
pub enum UploadKind {
    Normal,
    Appender,
    /// A slave of `master` named with `prefix` (and the upload's ext).
    Slave {
        master: LogicName,
        prefix: String,
    },
}

/// Result of [`Store::file_info`] (QUERY_FILE_INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub mtime: i64,
    pub crc32: u32,
    pub source_ip: String,
}

struct StorePath {
    data: PathBuf,
    tmp: PathBuf,
    readonly: bool,
    /// New content can be staged in unnamed files ([`disk::create_unnamed`]).
    unnamed: bool,
}

/// Round-robin sub-directory state (persisted in storage_stat.dat).
#[derive(Debug, Default, Clone, Copy)]
struct Dist {
    high: u32,
    low: u32,
    count: u32,
}

const LOCK_STRIPES: usize = 64;

/// Group commit of one kind of fsync: callers that arrive while a sync is
/// running are covered by the next one, which serves them all.
#[derive(Debug, Default)]
struct GroupSync {
    requested: AtomicU64,
    synced: Mutex<u64>,
}

impl GroupSync {
    /// Call after the change to make durable; runs `sync` unless a sync
    /// that started after this call already covered it.
    fn sync(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let me = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= me {
            return Ok(());
        }
        let upto = self.requested.load(Ordering::SeqCst);
        sync()?;
        *synced = upto;
        Ok(())
    }
}

/// The engine. Shared by every connection (`Arc<Store>`).
pub struct Store {
    cfg: StoreConfig,
    paths: Vec<StorePath>,
    binlog: Binlog,
    stats: Arc<Stats>,
    disk: Arc<dyn Disk>,
    source: RwLock<SourceServer>,
    reserved: RwLock<ReservedSpace>,
    /// `trunk_file_size` as delivered by the trackers (0: not known): a
    /// trunk file this server makes gets its blocks at once.
    trunk_file_size: std::sync::atomic::AtomicU64,
    dist: Mutex<Dist>,
    next_path: AtomicUsize,
    tmp_seq: AtomicU64,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Per-directory group commit of directory fsyncs (durable mode).
    dir_syncs: Mutex<std::collections::HashMap<PathBuf, Arc<GroupSync>>>,
    /// The file systems of the store paths and of the binlog, each once,
    /// with the group commit of their syncfs (`durable_sync = syncfs`).
    filesystems: Vec<FileSystem>,
    /// Index in `filesystems` of each store path, then of the binlog.
    path_fs: Vec<usize>,
    binlog_fs: usize,
    /// `durable_sync = journal` in durable mode.
    journal: Option<Arc<journal::Journal>>,
}

/// One file system a store writes to, for `syncfs`.
struct FileSystem {
    dev: u64,
    /// A directory on it, open for the `syncfs` call.
    dir: File,
    sync: GroupSync,
}

/// The index in `list` of the file system holding `dir`, added if new.
fn filesystem_of(list: &mut Vec<FileSystem>, dir: &Path) -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let f = File::open(dir)?;
    let dev = f.metadata()?.dev();
    if let Some(i) = list.iter().position(|fs| fs.dev == dev) {
        return Ok(i);
    }
    list.push(FileSystem {
        dev,
        dir: f,
        sync: GroupSync::default(),
    });
    Ok(list.len() - 1)
}

/// Unix time now, seconds.
pub fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

fn hash_str(s: &str) -> u32 {
    crc32fast::hash(s.as_bytes())
}

impl Store {
    /// Prepares every store path (sub-directories on first start, empty
    /// `.tmp`), opens the binlog and loads the counters.
    pub fn open(cfg: StoreConfig, disk: Arc<dyn Disk>) -> Result<Store> {
        if cfg.store_paths.is_empty() || cfg.store_paths.len() > 256 {
            return Err(StoreError::Invalid(format!(
                "store_path_count {} is outside 1..256",
                cfg.store_paths.len()
            )));
        }
        let mut paths = Vec::new();
        for (i, root) in cfg.store_paths.iter().enumerate() {
            let data = root.join("data");
            fs::create_dir_all(&data)
                .map_err(|e| StoreError::io(format!("creating {}", data.display()), e))?;
            create_subdirs(&data, cfg.subdir_count).map_err(|e| {
                StoreError::io(format!("creating sub-directories of {}", data.display()), e)
            })?;
            let tmp = data.join(".tmp");
            clean_tmp(&tmp)
                .map_err(|e| StoreError::io(format!("cleaning {}", tmp.display()), e))?;
            let vars = data.join(".fastdfs_vars");
            if !vars.exists() {
                // A store path without its mark is a new disk: the recovery
                // at start compares it with the binlog. The recovery mark
                // goes first, so a crash in between cannot skip that.
                let mark = data.join(RECOVERY_MARK);
                fs::write(&mark, b"")
                    .map_err(|e| StoreError::io(format!("creating {}", mark.display()), e))?;
                let _ = fs::write(&vars, format!("store_path_mark=fdfs-rs-{}-{}\n", i, now()));
            }
            let unnamed = disk::unnamed_files_work(&tmp);
            if !unnamed {
                tracing::info!(dir = %tmp.display(), "no O_TMPFILE here: uploads are staged in named temporary files");
            }
            paths.push(StorePath {
                data,
                tmp,
                readonly: cfg.readonly.get(i).copied().unwrap_or(false),
                unnamed,
            });
        }
        let sync_dir = cfg.base_path.join("data").join("sync");
        let binlog = Binlog::open(&sync_dir, cfg.binlog_max_size)
            .map_err(|e| StoreError::io(format!("opening binlog in {}", sync_dir.display()), e))?;
        let mut filesystems = Vec::new();
        let mut path_fs = Vec::new();
        for p in &paths {
            let i = filesystem_of(&mut filesystems, &p.data)
                .map_err(|e| StoreError::io(format!("opening {}", p.data.display()), e))?;
            path_fs.push(i);
        }
        let binlog_fs = filesystem_of(&mut filesystems, &sync_dir)
            .map_err(|e| StoreError::io(format!("opening {}", sync_dir.display()), e))?;
        let journal_dir = cfg.base_path.join("data");
        let use_journal = cfg.durable && cfg.durable_sync == DurableSync::Journal;
        let journal = if use_journal || journal::journal_path(&journal_dir, 0).exists() {
            let mut dirs = Vec::new();
            for fs in &filesystems {
                dirs.push(
                    fs.dir
                        .try_clone()
                        .map_err(|e| StoreError::io("opening the store for syncfs", e))?,
                );
            }
            let disk2 = disk.clone();
            let sync_all: journal::SyncAll =
                Box::new(move || dirs.iter().try_for_each(|d| disk2.sync_fs(d)));
            let (j, pending) =
                journal::Journal::open(&journal_dir, cfg.journal_file_size, disk.clone(), sync_all)
                    .map_err(|e| StoreError::io("opening the journal", e))?;
            Some((j, pending))
        } else {
            None
        };
        let stats = Arc::new(Stats::default());
        let rest = stats
            .load(&cfg.base_path.join("data").join("storage_stat.dat"))
            .map_err(|e| StoreError::io("loading storage_stat.dat", e))?;
        let mut dist = Dist::default();
        for (k, v) in rest {
            let v = v.max(0) as u32;
            match k.as_str() {
                "dist_path_index_high" => dist.high = v % cfg.subdir_count,
                "dist_path_index_low" => dist.low = v % cfg.subdir_count,
                "dist_write_file_count" => dist.count = v,
                _ => {}
            }
        }
        Store {
            reserved: RwLock::new(cfg.reserved),
            trunk_file_size: std::sync::atomic::AtomicU64::new(0),
            cfg,
            paths,
            binlog,
            stats,
            disk,
            source: RwLock::new(SourceServer::Ip(Ipv4Addr::LOCALHOST)),
            dist: Mutex::new(dist),
            next_path: AtomicUsize::new(0),
            tmp_seq: AtomicU64::new(0),
            dir_syncs: Mutex::default(),
            filesystems,
            path_fs,
            binlog_fs,
            journal: None,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
        .with_journal(journal, use_journal)
    }

    /// Redoes what an open journal holds, makes it durable, and then
    /// journals from now on (`use_journal`) or removes the journal files
    /// (another mode now).
    fn with_journal(
        mut self,
        journal: Option<(Arc<journal::Journal>, journal::Pending)>,
        use_journal: bool,
    ) -> Result<Store> {
        let Some((j, pending)) = journal else {
            return Ok(self);
        };
        if !pending.is_empty() {
            tracing::warn!(
                entries = pending.len(),
                "journal: redoing the changes of an unclean stop"
            );
            self.redo(&pending)?;
            j.sync_store()
                .map_err(|e| StoreError::io("syncfs after the journal redo", e))?;
        }
        let dir = self.cfg.base_path.join("data");
        if use_journal {
            match j
                .start()
                .map_err(|e| StoreError::io("starting the journal", e))
            {
                Ok(()) => {
                    // The journal files' own names.
                    self.sync_directory(&dir)
                        .map_err(|e| StoreError::io(format!("fsync of {}", dir.display()), e))?;
                    self.binlog.attach_journal(j.clone());
                    self.journal = Some(j);
                    return Ok(self);
                }
                // A full disk must not keep a storage that has run with
                // `fsync` (the default before `journal`) from starting: it
                // stays as durable, only slower, and tries again next time.
                Err(e @ StoreError::NoSpace(_)) => {
                    tracing::error!(
                        dir = %dir.display(),
                        bytes = 2 * self.cfg.journal_file_size,
                        error = %e,
                        "journal: no room for its two files; this run makes uploads durable \
                         with durable_sync = fsync instead (free the space, or set \
                         journal_file_size lower or durable_sync = fsync)"
                    );
                    self.cfg.durable_sync = DurableSync::Fsync;
                }
                Err(e) => return Err(e),
            }
        }
        drop(j);
        for i in 0..2 {
            let p = journal::journal_path(&dir, i);
            fs::remove_file(&p)
                .map_err(|e| StoreError::io(format!("removing {}", p.display()), e))?;
        }
        Ok(self)
    }

    /// Crash recovery: puts every journaled record back in the binlog, and
    /// for each file the last record names, rewrites its journaled content
    /// (if that record carries it) or removes it (a delete).
    fn redo(&self, pending: &journal::Pending) -> Result<()> {
        use std::collections::HashMap;
        let mut last: HashMap<String, (BinlogOp, Option<&[u8]>)> = HashMap::new();
        for e in pending {
            self.binlog
                .restore(e.binlog_index, e.binlog_offset, &e.line)
                .map_err(|err| StoreError::io("restoring the binlog from the journal", err))?;
            let rec = std::str::from_utf8(&e.line)
                .ok()
                .and_then(|l| BinlogRecord::decode(l.trim_end()).ok());
            let Some(rec) = rec else {
                tracing::warn!(line = %String::from_utf8_lossy(&e.line), "journal: not a binlog record");
                continue;
            };
            if let BinlogOp::Rename { old } = &rec.op {
                last.insert(old.clone(), (BinlogOp::Delete, None));
            }
            last.insert(rec.filename, (rec.op, e.image.as_deref()));
        }
        for (name, (op, image)) in last {
            let logic = LogicName::parse(&name).map_err(|e| e.to_string());
            if let Ok(
                l @ LogicName {
                    kind: FileKind::Trunk(slot),
                    ..
                },
            ) = &logic
            {
                // A packed upload's content is journaled (the slot was not
                // synced); a delete only zeroes the header if the slot
                // still holds that file (it may hold a newer one).
                match (op, image) {
                    (_, Some(content)) => self.restore_slot(l, content)?,
                    (BinlogOp::Delete, None) => {
                        self.free_slot(l, slot)?;
                    }
                    _ => {}
                }
                continue;
            }
            let path = match logic.and_then(|l| self.resolve(&l).map_err(|e| e.to_string())) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(name, error = %e, "journal: skipping a record");
                    continue;
                }
            };
            match (op, image) {
                (_, Some(content)) => restore_file(&path, content)
                    .map_err(|e| StoreError::io(format!("restoring {name}"), e))?,
                (BinlogOp::Delete, None) => match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::io(format!("removing {name}"), e))
                    }
                    _ => {}
                },
                // Synced when it was made: nothing to redo.
                _ => {}
            }
        }
        Ok(())
    }

    /// A buffer for the content of a new file of `size` bytes when it is
    /// to be journaled whole (no fsync of its own): `durable_sync =
    /// journal`, not an appender, small. `None` otherwise.
    pub(crate) fn journal_image_buffer(&self, kind: FileKind, size: u64) -> Option<Vec<u8>> {
        // A journaled trunk slot is written unsynced; the redo refills it.
        let journaled = self.journal.is_some()
            && matches!(
                kind,
                FileKind::Normal | FileKind::Slave | FileKind::Trunk(_)
            )
            && size <= journal::IMAGE_MAX;
        journaled.then(|| Vec::with_capacity(size as usize))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn group(&self) -> &GroupName {
        &self.cfg.group
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn binlog(&self) -> &Binlog {
        &self.binlog
    }

    /// `<store_path>/data` of store path `idx`.
    pub fn data_dir(&self, idx: usize) -> &Path {
        &self.paths[idx].data
    }

    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    /// What new file IDs name as their source (our IPv4 or server id).
    pub fn set_source(&self, s: SourceServer) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    pub fn source(&self) -> SourceServer {
        *self.source.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `reserved_storage_space` as delivered by the tracker.
    pub fn set_reserved(&self, r: ReservedSpace) {
        *self.reserved.write().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// `trunk_file_size` as delivered by the trackers.
    pub fn set_trunk_file_size(&self, len: u64) {
        self.trunk_file_size.store(len, Ordering::Relaxed);
    }

    pub(crate) fn trunk_file_size(&self) -> u64 {
        self.trunk_file_size.load(Ordering::Relaxed)
    }

    /// Serialises changes to one file (appender ops, metadata, delete).
    pub async fn lock_file(&self, name: &LogicName) -> tokio::sync::MutexGuard<'_, ()> {
        let i =
            (hash_str(&name.relative_path()) as usize + name.store_path as usize) % LOCK_STRIPES;
        self.locks[i].lock().await
    }

    /// Saves the counters and the sub-directory rotation state.
    pub fn save_stats(&self) -> io::Result<()> {
        let d = *self.dist.lock().unwrap_or_else(|e| e.into_inner());
        self.stats.save(
            &self.cfg.base_path.join("data").join("storage_stat.dat"),
            &[
                ("dist_path_index_high", d.high as i64),
                ("dist_path_index_low", d.low as i64),
                ("dist_write_file_count", d.count as i64),
            ],
        )
    }

    /// (total MB, free MB) of each store path, for REPORT_DISK_USAGE.
    pub fn disk_usage(&self) -> Vec<(i64, i64)> {
        self.cfg
            .store_paths
            .iter()
            .map(|p| {
                let (t, f) = space(p).unwrap_or((0, 0));
                ((t >> 20) as i64, (f >> 20) as i64)
            })
            .collect()
    }

    /// The on-disk path of a logic filename. Names of unknown store paths or
    /// sub-directories are "not found".
    pub fn resolve(&self, name: &LogicName) -> Result<PathBuf> {
        let p = self.paths.get(name.store_path as usize).ok_or_else(|| {
            StoreError::NotFound(format!("{name}: no store path M{:02X}", name.store_path))
        })?;
        name.check_subdirs(self.cfg.subdir_count)
            .map_err(|e| StoreError::NotFound(format!("{name}: {e}")))?;
        Ok(p.data.join(name.relative_path()))
    }

    /// True when the file `name` is here: a regular file, or for a name of
    /// upstream's trunk files, its slot holding it.
    pub fn holds(&self, name: &LogicName) -> Result<bool> {
        match name.kind {
            FileKind::Trunk(slot) => self.slot_holds(name, &slot),
            _ => Ok(self.resolve(name)?.is_file()),
        }
    }

    fn has_space(&self, idx: usize, size: u64) -> bool {
        let Ok((total, free)) = space(&self.cfg.store_paths[idx]) else {
            return false;
        };
        let free = free.saturating_sub(size);
        match *self.reserved.read().unwrap_or_else(|e| e.into_inner()) {
            ReservedSpace::Bytes(b) => free > b / self.paths.len() as u64,
            ReservedSpace::Ratio(r) => total > 0 && (free as f64 / total as f64) > r,
        }
    }

    /// Store path for a new upload: the requested one if writable and not
    /// over the reserved space, else the next one that is.
    fn choose_path(&self, requested: i8, size: u64) -> Result<usize> {
        let n = self.paths.len();
        if requested >= 0 {
            let i = requested as usize;
            if i >= n {
                return Err(StoreError::Invalid(format!(
                    "store path index {i} (this server has {n})"
                )));
            }
            if !self.paths[i].readonly && self.has_space(i, size) {
                return Ok(i);
            }
        }
        let start = self.next_path.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if !self.paths[i].readonly && self.has_space(i, size) {
                return Ok(i);
            }
        }
        Err(StoreError::NoSpace(format!(
            "no writable store path has room for {size} bytes above the reserved space"
        )))
    }

    /// A writable path with room for `size` bytes, reserved space or not
    /// (the requested one first).
    fn choose_path_beyond_reserve(&self, requested: i8, size: u64) -> Result<usize> {
        let n = self.paths.len();
        let room = |i: usize| {
            !self.paths[i].readonly
                && space(&self.cfg.store_paths[i]).is_ok_and(|(_, free)| free > size)
        };
        let first = usize::try_from(requested).ok().filter(|&i| i < n);
        first
            .into_iter()
            .chain(0..n)
            .find(|&i| room(i))
            .ok_or_else(|| {
                StoreError::NoSpace(format!("no writable store path has {size} bytes free"))
            })
    }

    /// True when store path `idx` has room for `size` more bytes above
    /// its reserved space.
    pub fn path_has_room(&self, idx: usize, size: u64) -> bool {
        idx < self.paths.len() && self.has_space(idx, size)
    }

    /// The writable store path with the most free disk among those with
    /// room for `size` more bytes above their reserved space.
    pub fn roomiest_path(&self, size: u64) -> Option<usize> {
        (0..self.paths.len())
            .filter(|&i| !self.paths[i].readonly && self.has_space(i, size))
            .filter_map(|i| Some((space(&self.cfg.store_paths[i]).ok()?.1, i)))
            .max_by_key(|&(free, i)| (free, std::cmp::Reverse(i)))
            .map(|(_, i)| i)
    }

    fn next_subdir(&self, b64: &str) -> (u8, u8) {
        let sc = self.cfg.subdir_count;
        if self.cfg.distribute_mode == 1 {
            let h = hash_str(b64);
            return (((h >> 16) % sc) as u8, ((h & 0xFFFF) % sc) as u8);
        }
        let mut d = self.dist.lock().unwrap_or_else(|e| e.into_inner());
        let r = (d.high as u8, d.low as u8);
        d.count += 1;
        if d.count >= self.cfg.rotate_count {
            d.count = 0;
            d.low += 1;
            if d.low >= sc {
                d.low = 0;
                d.high = (d.high + 1) % sc;
            }
        }
        r
    }

    fn new_tmp(&self, idx: usize) -> Result<(PathBuf, File)> {
        self.new_named_tmp(idx, "")
    }

    /// A temporary file in store path `idx`'s `.tmp`, its name starting
    /// with `prefix`.
    pub(crate) fn new_named_tmp(&self, idx: usize, prefix: &str) -> Result<(PathBuf, File)> {
        let p = &self.paths[idx];
        let name = format!(
            "{prefix}{}.{}.{:08x}",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let path = p.tmp.join(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        Ok((path, f))
    }

    /// Where the content of a new file goes until it is named: an unnamed
    /// file (`None` for its path) when store path `idx` supports it and the
    /// content is not fsynced before the name is given (`journaled`: it goes
    /// to the journal instead, see [`Store::sync_new_content`]), else a
    /// temporary file in `.tmp` whose name starts with `prefix`. Why not
    /// always: a file fsynced while unnamed has its link count still at 0
    /// on disk after the link, and only a temporary file keeps the promise
    /// that an fsynced name never points at partial content.
    pub(crate) fn new_staging(
        &self,
        idx: usize,
        journaled: bool,
        prefix: &str,
    ) -> Result<(Option<PathBuf>, File)> {
        let p = &self.paths[idx];
        if p.unnamed && (journaled || !self.syncs_new_content()) {
            let f = disk::create_unnamed(&p.tmp).map_err(|e| {
                StoreError::io(
                    format!("creating an unnamed file in {}", p.tmp.display()),
                    e,
                )
            })?;
            return Ok((None, f));
        }
        let (path, f) = self.new_named_tmp(idx, prefix)?;
        Ok((Some(path), f))
    }

    /// Starts an upload of `size` bytes. Fails early (nothing on disk) for
    /// a bad extension, a missing master, an existing slave or no space.
    pub fn begin_upload(
        &self,
        requested_path: i8,
        size: u64,
        ext: &str,
        kind: UploadKind,
    ) -> Result<Upload> {
        self.begin_upload_in(requested_path, size, ext, kind, false)
    }

    /// [`Store::begin_upload`]; with `slot_may_fit`, a path over its
    /// reserved space is taken too (free space inside trunk files is not
    /// reserved), for a file that then only a trunk slot may take.
    fn begin_upload_in(
        &self,
        requested_path: i8,
        size: u64,
        ext: &str,
        kind: UploadKind,
        slot_may_fit: bool,
    ) -> Result<Upload> {
        validate_ext(ext).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut beyond_reserve = false;
        let idx = match &kind {
            UploadKind::Slave { master, prefix } => {
                let slave = master
                    .slave(prefix, ext)
                    .map_err(|e| StoreError::Invalid(format!("slave of {master}: {e}")))?;
                if !self.holds(master)? {
                    return Err(StoreError::NotFound(format!("master file {master}")));
                }
                if self.resolve(&slave)?.symlink_metadata().is_ok() {
                    return Err(StoreError::Exists(format!("slave file {slave}")));
                }
                let i = master.store_path as usize;
                if !self.has_space(i, size) {
                    return Err(StoreError::NoSpace(format!(
                        "store path M{i:02X} is over the reserved space"
                    )));
                }
                i
            }
            _ => match self.choose_path(requested_path, size) {
                Err(StoreError::NoSpace(_)) if slot_may_fit => {
                    beyond_reserve = true;
                    self.choose_path_beyond_reserve(requested_path, size)?
                }
                r => r?,
            },
        };
        let kind_of_file = match kind {
            UploadKind::Appender => FileKind::Appender,
            _ => FileKind::Normal,
        };
        let mut image = self.journal_image_buffer(kind_of_file, size);
        let journaled = image.is_some();
        // A file that may go into a trunk slot is kept in memory when it is
        // small: it gets a staging file (an inode) only if no slot takes it.
        if slot_may_fit && size <= journal::IMAGE_MAX {
            image.get_or_insert_with(|| Vec::with_capacity(size as usize));
        }
        let (tmp, file) = match image {
            Some(_) if slot_may_fit => (None, None),
            _ => {
                let (tmp, file) = self.new_staging(idx, journaled, "")?;
                (tmp, Some(file))
            }
        };
        Ok(Upload {
            image,
            journaled,
            tmp,
            file,
            crc: crc32fast::Hasher::new(),
            written: 0,
            size,
            path_idx: idx,
            kind,
            ext: ext.to_owned(),
            disk: self.disk.clone(),
            done: false,
            beyond_reserve,
        })
    }

    /// [`Store::begin_upload`] of a file that may go into a trunk slot:
    /// its content is staged as usual, to be named whole when no slot
    /// comes; when it is not journaled (kept in memory), in a named
    /// temporary file, to be copied into the slot.
    pub fn begin_slot_upload(&self, requested_path: i8, size: u64, ext: &str) -> Result<Upload> {
        let mut up = self.begin_upload_in(requested_path, size, ext, UploadKind::Normal, true)?;
        // One held in memory is written into its slot from there.
        if up.tmp.is_none() && up.image.is_none() {
            // The unnamed staging file goes with its descriptor.
            let (tmp, file) = self.new_named_tmp(up.path_idx, "")?;
            up.tmp = Some(tmp);
            up.file = Some(file);
        }
        Ok(up)
    }

    /// Gives a complete upload from [`Store::begin_slot_upload`] its name
    /// in the trunk slot `info` and records it. [`StoreError::Exists`]
    /// when the slot holds a file on our disk: `up` is left as it was, to
    /// be stored whole.
    pub fn finish_upload_in_slot(&self, up: &mut Upload, info: TrunkInfo) -> Result<Finished> {
        if up.written != up.size {
            return Err(StoreError::Invalid(format!(
                "upload ended after {} of {} bytes",
                up.written, up.size
            )));
        }
        let size = u32::try_from(up.size)
            .map_err(|_| StoreError::Invalid(format!("{} bytes for a trunk slot", up.size)))?;
        if usize::from(info.store_path) != up.path_idx {
            return Err(StoreError::Invalid(format!(
                "trunk slot {info:?} is not in store path {}",
                up.path_idx
            )));
        }
        if self.slot_in_use(&info)? {
            return Err(StoreError::Exists(format!(
                "trunk slot {info:?} holds a file"
            )));
        }
        let ni = NameInfo {
            source: self.source(),
            timestamp: now(),
            size_field: NameInfo::size_field_for_trunk(size, rand::random()),
            crc32: up.crc.clone().finalize(),
        };
        let ext =
            ext_part(&up.ext, rand::random()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let name = LogicName::build(
            info.store_path,
            info.sub_high,
            info.sub_low,
            ni,
            Some(info.slot),
            &ext,
        );
        match &up.image {
            // Journaled: the slot is written unsynced, the journal brings
            // it back after a crash.
            Some(content) => {
                let sync = !up.journaled && self.config().durable;
                self.put_slot(&name, content, sync)?
            }
            None => {
                let tmp = up.tmp.clone().ok_or_else(|| {
                    StoreError::Invalid("a slot upload is staged in a named file".into())
                })?;
                let src =
                    File::open(&tmp).map_err(|e| StoreError::io("reopening the upload", e))?;
                self.write_slot(&name, &info.slot, &src, up.size)?;
            }
        }
        // The staged copy goes when `up` is dropped.
        let (seq, binlog_end) =
            self.append_record_with_image(BinlogOp::Create, &name.to_string(), up.journal_image())?;
        if let Some(j) = &self.journal {
            return Ok(Finished {
                name,
                wait: Some(JournalWait(j.ticket())),
                binlog_end,
            });
        }
        self.commit_names(Some(seq), &[])?;
        Ok(Finished {
            name,
            wait: None,
            binlog_end,
        })
    }

    /// A staging file for an upload held in memory, which no trunk slot
    /// took: it is stored whole after all.
    fn stage_held(&self, up: &mut Upload) -> Result<File> {
        let content = up.image.as_deref().unwrap_or_default();
        let (tmp, mut file) = self.new_staging(up.path_idx, up.journaled, "")?;
        up.tmp = tmp;
        self.disk
            .write(&mut file, content)
            .map_err(|e| StoreError::io("writing uploaded content", e))?;
        Ok(file)
    }

    /// The store path a started upload goes to.
    pub fn upload_path(up: &Upload) -> usize {
        up.path_idx
    }

    /// Gives a complete upload its name, records it and returns the name.
    pub fn finish_upload(&self, up: Upload) -> Result<LogicName> {
        let Finished { name, wait, .. } = self.finish_upload_deferred(up)?;
        if let Some(JournalWait(ticket)) = wait {
            if let Some(j) = &self.journal {
                j.commit_upto(ticket)
                    .map_err(|e| StoreError::io("fdatasync of the journal", e))?;
            }
        }
        Ok(name)
    }

    /// [`Store::finish_upload`] that leaves the wait for the journal's
    /// commit, if that is all that is left, to the caller
    /// ([`Store::journaled`]), so that it needs no thread while it waits.
    pub fn finish_upload_deferred(&self, mut up: Upload) -> Result<Finished> {
        if up.beyond_reserve {
            return Err(StoreError::NoSpace(format!(
                "store path M{:02X} is over the reserved space and no trunk slot took the file",
                up.path_idx
            )));
        }
        if up.written != up.size {
            return Err(StoreError::Invalid(format!(
                "upload ended after {} of {} bytes",
                up.written, up.size
            )));
        }
        // Kept open until named: an unnamed file is named through it.
        let file = match up.file.take() {
            Some(f) => f,
            None => self.stage_held(&mut up)?,
        };
        if !up.journaled {
            self.sync_new_content(&file)
                .map_err(|e| StoreError::io("fsync of the uploaded file", e))?;
        }
        let crc = up.crc.clone().finalize();
        let mut tries = 0;
        let (name, path) = loop {
            let name = match &up.kind {
                UploadKind::Slave { master, prefix } => master
                    .slave(prefix, &up.ext)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?,
                k => {
                    let appender = matches!(k, UploadKind::Appender);
                    let info = NameInfo {
                        source: self.source(),
                        timestamp: now(),
                        size_field: NameInfo::size_field_for(up.size, appender, rand::random()),
                        crc32: crc,
                    };
                    let ext = ext_part(&up.ext, rand::random())
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    let probe = LogicName::build(up.path_idx as u8, 0, 0, info, None, &ext);
                    let (h, l) = self.next_subdir(&probe.name);
                    LogicName::build(up.path_idx as u8, h, l, info, None, &ext)
                }
            };
            let path = self.resolve(&name)?;
            let mut linked = name_staged(up.tmp.as_deref(), &file, &path);
            if matches!(&linked, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                // A sub-directory went missing (deleted by hand): recreate it.
                if let Some(d) = path.parent() {
                    let _ = fs::create_dir_all(d);
                }
                linked = name_staged(up.tmp.as_deref(), &file, &path);
            }
            match linked {
                Ok(()) => break (name, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if matches!(up.kind, UploadKind::Slave { .. }) {
                        return Err(StoreError::Exists(format!("slave file {name}")));
                    }
                    tries += 1;
                    if tries > 16 {
                        return Err(StoreError::io(format!("naming {name}"), e));
                    }
                }
                Err(e) => return Err(StoreError::io(format!("linking {}", path.display()), e)),
            }
        };
        up.done = true;
        drop(file);
        let (seq, binlog_end) =
            self.append_record_with_image(BinlogOp::Create, &name.to_string(), up.journal_image())?;
        // A journaled image brings its name back after a crash: no
        // directory fsync.
        let dirs: Vec<PathBuf> = if up.journaled {
            Vec::new()
        } else {
            path.parent().map(Path::to_owned).into_iter().collect()
        };
        // Only durable mode has a journal.
        if let Some(j) = &self.journal {
            self.sync_directories(&dirs)?;
            return Ok(Finished {
                name,
                wait: Some(JournalWait(j.ticket())),
                binlog_end,
            });
        }
        self.commit_names(Some(seq), &dirs)?;
        Ok(Finished {
            name,
            wait: None,
            binlog_end,
        })
    }

    /// Whether finishing a journaled upload may block for a while (see
    /// [`journal::Journal::may_wait`]).
    pub fn journal_may_wait(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.may_wait())
    }

    /// Waits until the journal holds what `wait` stands for on disk.
    pub async fn journaled(&self, wait: JournalWait) -> Result<()> {
        match &self.journal {
            Some(j) => j
                .durable(wait.0)
                .await
                .map_err(|e| StoreError::io("fdatasync of the journal", e)),
            None => Ok(()),
        }
    }

    /// Makes a new or renamed directory entry durable; concurrent callers
    /// in the same directory share one fsync.
    pub(crate) fn sync_dir(&self, file_in_dir: &Path) -> io::Result<()> {
        match file_in_dir.parent() {
            Some(dir) => self.sync_directory(dir),
            None => Ok(()),
        }
    }

    /// fsync of `dir`, shared by concurrent callers.
    fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        let gs = self
            .dir_syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(dir.to_owned())
            .or_default()
            .clone();
        gs.sync(|| File::open(dir)?.sync_all())
    }

    /// Makes the content of a new file durable before it is named: an
    /// fsync in durable mode with `durable_sync = fsync` or `journal` (for
    /// a file whose content is not journaled). With `syncfs`,
    /// [`Store::commit_names`] covers the content too; without `durable`
    /// nothing is synced.
    pub(crate) fn sync_new_content(&self, file: &File) -> io::Result<()> {
        if self.syncs_new_content() {
            self.disk.sync(file)
        } else {
            Ok(())
        }
    }

    /// Whether [`Store::sync_new_content`] fsyncs (content not journaled).
    fn syncs_new_content(&self) -> bool {
        self.cfg.durable && self.cfg.durable_sync != DurableSync::Syncfs
    }

    /// Makes the names of new files in `dirs` and the binlog records up to
    /// `binlog_seq` durable (durable mode; nothing otherwise).
    /// * `fsync`: the binlog first, a group commit shared by concurrent
    ///   callers, which on a journaling file system (ext4 with a journal,
    ///   xfs) also carries the names, so each directory's fsync after it
    ///   has little left to do. A record whose file did not survive a crash
    ///   names something never acknowledged, and replication skips a
    ///   missing file.
    /// * `syncfs`: one syncfs of each file system involved, shared by
    ///   concurrent callers, covering contents, names and records at once.
    /// * `journal`: the directories (of files whose content is not
    ///   journaled), then one journal commit for the records and images.
    pub(crate) fn commit_names(&self, binlog_seq: Option<u64>, dirs: &[PathBuf]) -> Result<()> {
        if !self.cfg.durable {
            return Ok(());
        }
        if self.journal.is_some() {
            self.sync_directories(dirs)?;
            return binlog_seq.map_or(Ok(()), |seq| self.sync_records(seq));
        }
        if self.cfg.durable_sync == DurableSync::Syncfs {
            let mut which: Vec<usize> = Vec::new();
            for d in dirs {
                match self.paths.iter().position(|p| d.starts_with(&p.data)) {
                    Some(i) => which.push(self.path_fs[i]),
                    // Not under a store path (never expected): all of them.
                    None => which.extend(0..self.filesystems.len()),
                }
            }
            if binlog_seq.is_some() {
                which.push(self.binlog_fs);
            }
            which.sort_unstable();
            which.dedup();
            for i in which {
                let fs = &self.filesystems[i];
                fs.sync
                    .sync(|| self.disk.sync_fs(&fs.dir))
                    .map_err(|e| StoreError::io("syncfs of the store", e))?;
            }
            return Ok(());
        }
        if let Some(seq) = binlog_seq {
            self.sync_records(seq)?;
        }
        self.sync_directories(dirs)
    }

    /// fsync of each of `dirs`, shared by concurrent callers.
    fn sync_directories(&self, dirs: &[PathBuf]) -> Result<()> {
        for d in dirs {
            self.sync_directory(d)
                .map_err(|e| StoreError::io("fsync of the directory", e))?;
        }
        Ok(())
    }

    /// Appends a source record (and, in durable mode, waits for its fsync).
    fn record(&self, op: BinlogOp, filename: &str) -> Result<()> {
        let (seq, _) = self.append_record_with_image(op, filename, None)?;
        if self.cfg.durable {
            self.sync_records(seq)?;
        }
        Ok(())
    }

    /// Makes the binlog records up to `seq` durable: a binlog fsync, or a
    /// journal commit with `durable_sync = journal` (both group commits).
    fn sync_records(&self, seq: u64) -> Result<()> {
        match &self.journal {
            Some(j) => j
                .commit()
                .map_err(|e| StoreError::io("fdatasync of the journal", e)),
            None => self
                .binlog
                .sync(seq)
                .map_err(|e| StoreError::io("fsync of the binlog", e)),
        }
    }

    /// Appends a source record without waiting for the disk, journaling
    /// `image` with it (`durable_sync = journal`); its sequence number.
    fn append_record_with_image(
        &self,
        op: BinlogOp,
        filename: &str,
        image: Option<&[u8]>,
    ) -> Result<(u64, (u32, u64))> {
        let ts = now();
        let appended = self
            .binlog
            .append_at(
                &BinlogRecord {
                    timestamp: ts,
                    is_source: true,
                    filename: filename.to_owned(),
                    op,
                },
                image,
            )
            .map_err(|e| StoreError::io("writing the binlog", e))?;
        self.stats.set(stats::idx::LAST_SOURCE_UPDATE, ts as i64);
        Ok(appended)
    }

    fn appender_path(&self, name: &LogicName) -> Result<PathBuf> {
        if name.kind != FileKind::Appender {
            return Err(StoreError::Invalid(format!(
                "{name} is not an appender file"
            )));
        }
        self.resolve(name)
    }

    /// Opens an appender file to append (`offset = None`) or to modify at
    /// `offset` (which must be at most the current size).
    pub fn begin_update(&self, name: &LogicName, offset: Option<u64>, len: u64) -> Result<Update> {
        let path = self.appender_path(name)?;
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {name}"), e))?;
        let size = file
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {name}"), e))?
            .len();
        let start = match offset {
            None => size,
            Some(o) if o <= size => o,
            Some(o) => {
                return Err(StoreError::Invalid(format!(
                    "{name}: modify offset {o} is past the end ({size})"
                )))
            }
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| StoreError::io(format!("seek in {name}"), e))?;
        Ok(Update {
            name: name.clone(),
            file,
            append: offset.is_none(),
            start,
            old_size: size,
            len,
            written: 0,
            disk: self.disk.clone(),
            done: false,
        })
    }

    /// Completes an append or modify: fsync (durable mode) and binlog A/M.
    pub fn finish_update(&self, mut up: Update) -> Result<()> {
        if up.written != up.len {
            return Err(StoreError::Invalid(format!(
                "{}: update ended after {} of {} bytes",
                up.name, up.written, up.len
            )));
        }
        if self.cfg.durable {
            self.disk
                .sync(&up.file)
                .map_err(|e| StoreError::io(format!("fsync of {}", up.name), e))?;
        }
        up.done = true;
        let (offset, length) = (up.start, up.len);
        let op = if up.append {
            BinlogOp::Append { offset, length }
        } else {
            BinlogOp::Modify { offset, length }
        };
        self.record(op, &up.name.to_string())
    }

    /// Sets an appender file's size (growing fills with zeros).
    pub fn truncate(&self, name: &LogicName, new_size: u64) -> Result<()> {
        let path = self.appender_path(name)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {name}"), e))?;
        let old = file
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {name}"), e))?
            .len();
        if old == new_size {
            return Ok(());
        }
        file.set_len(new_size)
            .map_err(|e| StoreError::io(format!("truncating {name}"), e))?;
        if self.cfg.durable {
            self.disk
                .sync(&file)
                .map_err(|e| StoreError::io(format!("fsync of {name}"), e))?;
        }
        self.record(
            BinlogOp::Truncate {
                old_size: old,
                new_size,
            },
            &name.to_string(),
        )
    }

    /// Turns an appender file into a normal one: new name carrying the real
    /// size and CRC32, same store path, sub-directories and ext part.
    /// (Like upstream, the `-m` sidecar keeps the old name.)
    pub fn regenerate(&self, name: &LogicName) -> Result<LogicName> {
        let path = self.appender_path(name)?;
        let (size, crc) =
            crc_of(&path).map_err(|e| StoreError::io(format!("reading {name}"), e))?;
        let ext7 = &name.name[name.name.len() - EXT_PART_LEN..];
        let mut tries = 0;
        loop {
            let info = NameInfo {
                source: self.source(),
                timestamp: now(),
                size_field: NameInfo::size_field_for(size, false, rand::random()),
                crc32: crc,
            };
            let new = LogicName::build(
                name.store_path,
                name.sub_high,
                name.sub_low,
                info,
                None,
                ext7,
            );
            let new_path = self.resolve(&new)?;
            match fs::hard_link(&path, &new_path) {
                Ok(()) => {
                    fs::remove_file(&path)
                        .map_err(|e| StoreError::io(format!("removing {name}"), e))?;
                    if self.cfg.durable {
                        self.sync_dir(&new_path)
                            .map_err(|e| StoreError::io("fsync of the directory", e))?;
                    }
                    self.record(
                        BinlogOp::Rename {
                            old: name.to_string(),
                        },
                        &new.to_string(),
                    )?;
                    return Ok(new);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(StoreError::io(format!("renaming {name}"), e)),
            }
        }
    }

    /// Opens a file for download: returns the file positioned where the
    /// bytes to send start, that position (past a trunk slot's header for a
    /// trunk name) and the number of bytes to send. `length = 0` means to
    /// the end. An offset at or past the end is invalid, except offset 0 of
    /// an empty file, which sends 0 bytes (upstream 6.15.4+ answers EINVAL
    /// there).
    pub fn open_read(
        &self,
        name: &LogicName,
        offset: u64,
        length: u64,
    ) -> Result<(File, u64, u64)> {
        let (mut file, base, size) = match name.kind {
            FileKind::Trunk(slot) => {
                let s = self.open_slot(name, &slot)?;
                (s.file, s.start, s.size)
            }
            _ => {
                let path = self.resolve(name)?;
                let file =
                    File::open(&path).map_err(|e| StoreError::io(format!("opening {name}"), e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| StoreError::io(format!("stat {name}"), e))?;
                if !meta.is_file() {
                    return Err(StoreError::NotFound(name.to_string()));
                }
                (file, 0, meta.len())
            }
        };
        if offset >= size && !(offset == 0 && size == 0) {
            return Err(StoreError::Invalid(format!(
                "{name}: offset {offset} is not below the size {size}"
            )));
        }
        let rest = size - offset;
        let count = if length == 0 { rest } else { length.min(rest) };
        let start = base + offset;
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .map_err(|e| StoreError::io(format!("seek in {name}"), e))?;
        }
        Ok((file, start, count))
    }

    /// Deletes a file (frees its trunk slot) and its metadata sidecar.
    pub fn delete(&self, name: &LogicName) -> Result<()> {
        let path = self.resolve(name)?;
        if let FileKind::Trunk(slot) = name.kind {
            if !self.free_slot(name, &slot)? {
                return Err(StoreError::NotFound(format!(
                    "{name}: not in its trunk slot"
                )));
            }
        } else {
            let meta = path
                .symlink_metadata()
                .map_err(|e| StoreError::io(format!("stat {name}"), e))?;
            if meta.is_dir() {
                return Err(StoreError::NotFound(name.to_string()));
            }
            fs::remove_file(&path).map_err(|e| StoreError::io(format!("deleting {name}"), e))?;
        }
        let m = meta_path(&path);
        if fs::remove_file(&m).is_ok() {
            self.record(BinlogOp::Delete, &format!("{name}-m"))?;
        }
        self.record(BinlogOp::Delete, &name.to_string())
    }

    /// SET_METADATA (§4.7): `O` replaces (empty = remove), `M` merges.
    pub fn set_metadata(&self, name: &LogicName, op: MetaOp, meta: &[u8]) -> Result<()> {
        let path = self.resolve(name)?;
        if !self.holds(name)? {
            return Err(StoreError::NotFound(name.to_string()));
        }
        let new =
            metadata::decode(meta).map_err(|e| StoreError::Invalid(format!("{name}: {e}")))?;
        let mpath = meta_path(&path);
        let mname = format!("{name}-m");
        let existing = match fs::read(&mpath) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(format!("reading {mname}"), e)),
        };
        let list = match op {
            MetaOp::Overwrite if new.is_empty() => {
                if existing.is_some() {
                    fs::remove_file(&mpath)
                        .map_err(|e| StoreError::io(format!("removing {mname}"), e))?;
                    self.record(BinlogOp::Delete, &mname)?;
                }
                return Ok(());
            }
            MetaOp::Overwrite => metadata::normalize(new),
            MetaOp::Merge if new.is_empty() => return Ok(()),
            MetaOp::Merge => {
                let old = existing
                    .as_deref()
                    .map(metadata::decode)
                    .transpose()
                    .unwrap_or_default()
                    .unwrap_or_default();
                metadata::merge(old, new)
            }
        };
        let bytes = metadata::encode(&list);
        let (tmp, mut f) = self.new_tmp(name.store_path as usize)?;
        let res = (|| -> Result<()> {
            self.disk
                .write(&mut f, &bytes)
                .map_err(|e| StoreError::io(format!("writing {mname}"), e))?;
            if self.cfg.durable {
                self.disk
                    .sync(&f)
                    .map_err(|e| StoreError::io(format!("fsync of {mname}"), e))?;
            }
            fs::rename(&tmp, &mpath).map_err(|e| StoreError::io(format!("renaming {mname}"), e))
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if self.cfg.durable {
            self.sync_dir(&mpath)
                .map_err(|e| StoreError::io("fsync of the directory", e))?;
        }
        let op = if existing.is_some() {
            BinlogOp::Update
        } else {
            BinlogOp::Create
        };
        self.record(op, &mname)
    }

    /// The raw `-m` sidecar. Not found if the file or the sidecar is missing.
    pub fn get_metadata(&self, name: &LogicName) -> Result<Vec<u8>> {
        let path = self.resolve(name)?;
        if !self.holds(name)? {
            return Err(StoreError::NotFound(name.to_string()));
        }
        fs::read(meta_path(&path)).map_err(|e| StoreError::io(format!("reading {name}-m"), e))
    }

    /// QUERY_FILE_INFO (§4.9).
    pub fn file_info(&self, name: &LogicName, no_crc: bool) -> Result<FileInfo> {
        let path = self.resolve(name)?;
        if let FileKind::Trunk(slot) = name.kind {
            // The slot's header matched the name's size, CRC32 and time.
            let s = self.open_slot(name, &slot)?;
            return Ok(FileInfo {
                size: s.size,
                mtime: i64::from(name.info.timestamp),
                crc32: name.info.crc32,
                source_ip: match name.info.source {
                    SourceServer::Ip(ip) => ip.to_string(),
                    SourceServer::Id(_) => String::new(),
                },
            });
        }
        let meta = path
            .symlink_metadata()
            .map_err(|e| StoreError::io(format!("stat {name}"), e))?;
        if meta.is_dir() {
            return Err(StoreError::NotFound(name.to_string()));
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let crc32 = match name.kind {
            FileKind::Normal => name.info.crc32,
            _ if no_crc => 0,
            _ => {
                crc_of(&path)
                    .map_err(|e| StoreError::io(format!("reading {name}"), e))?
                    .1
            }
        };
        let source_ip = match name.info.source {
            SourceServer::Ip(ip) => ip.to_string(),
            SourceServer::Id(_) => String::new(),
        };
        Ok(FileInfo {
            size: fs::metadata(&path).map(|m| m.len()).unwrap_or(meta.len()),
            mtime,
            crc32,
            source_ip,
        })
    }
}

/// What a finished upload waits for: the journal's commit of its entry.
#[derive(Debug, Clone, Copy)]
pub struct JournalWait(u64);

/// An upload in progress. Dropping it before [`Store::finish_upload`]
/// removes the temporary file.
pub struct Upload {
    /// The content, kept when it is to be journaled.
    image: Option<Vec<u8>>,
    /// `image` goes to the journal (else it only spares a staging file).
    journaled: bool,
    /// The temporary file's path; `None` for an unnamed file.
    tmp: Option<PathBuf>,
    file: Option<File>,
    crc: crc32fast::Hasher,
    written: u64,
    size: u64,
    path_idx: usize,
    kind: UploadKind,
    ext: String,
    disk: Arc<dyn Disk>,
    done: bool,
    /// The path is over its reserved space: only a trunk slot may take
    /// the file.
    beyond_reserve: bool,
}

impl Upload {
    /// Writes the next chunk of content.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.written + buf.len() as u64 > self.size {
            return Err(StoreError::Invalid("more content than announced".into()));
        }
        if let Some(f) = self.file.as_mut() {
            self.disk
                .write(f, buf)
                .map_err(|e| StoreError::io("writing uploaded content", e))?;
        }
        self.crc.update(buf);
        if let Some(image) = &mut self.image {
            image.extend_from_slice(buf);
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    pub fn remaining(&self) -> u64 {
        self.size - self.written
    }

    /// Whether its content goes to the journal (no fsync of its own).
    pub fn journaled(&self) -> bool {
        self.journaled
    }

    fn journal_image(&self) -> Option<&[u8]> {
        self.image.as_deref().filter(|_| self.journaled)
    }

    /// The temporary file, if it has a name (tests).
    pub fn tmp_path(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            // An unnamed file vanishes with its descriptor.
            self.file = None;
            if let Some(tmp) = &self.tmp {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// Gives staged new content (see [`Store::new_staging`]) its name `to`,
/// never replacing a file there (`AlreadyExists`).
pub(crate) fn name_staged(tmp: Option<&Path>, file: &File, to: &Path) -> io::Result<()> {
    match tmp {
        Some(tmp) => disk::rename_noreplace(tmp, to),
        None => disk::link_unnamed(file, to),
    }
}

/// An append or modify in progress. An unfinished append is cut back to
/// the old size when dropped.
pub struct Update {
    name: LogicName,
    file: File,
    append: bool,
    start: u64,
    old_size: u64,
    len: u64,
    written: u64,
    disk: Arc<dyn Disk>,
    done: bool,
}

impl Update {
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.written + buf.len() as u64 > self.len {
            return Err(StoreError::Invalid("more content than announced".into()));
        }
        self.disk
            .write(&mut self.file, buf)
            .map_err(|e| StoreError::io(format!("writing {}", self.name), e))?;
        self.written += buf.len() as u64;
        Ok(())
    }

    pub fn remaining(&self) -> u64 {
        self.len - self.written
    }
}

impl Drop for Update {
    fn drop(&mut self) {
        if !self.done && self.append {
            let _ = self.file.set_len(self.old_size);
        }
    }
}

/// Crash recovery: makes `path` hold `content` (written beside it, synced
/// and renamed over it unless it already does).
fn restore_file(path: &Path, content: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|there| there == content) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".journal-redo");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    std::io::Write::write_all(&mut f, content)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    tracing::info!(path = %path.display(), "journal: restored a file");
    Ok(())
}

/// A new file named and recorded ([`Store::finish_upload_deferred`]).
#[derive(Debug)]
pub struct Finished {
    pub name: LogicName,
    /// The journal commit still to wait for ([`Store::journaled`]).
    pub wait: Option<JournalWait>,
    /// Where its binlog record ends: a peer synced past it holds the file.
    pub binlog_end: (u32, u64),
}

/// In a store path's `data`: the path must be checked against the binlog
/// and filled from the group (see `crate::recovery`) before serving.
pub const RECOVERY_MARK: &str = ".fdfs_recovery";

fn meta_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-m");
    PathBuf::from(s)
}

/// Size and CRC32 of a whole file.
fn crc_of(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize()))
}

/// (total bytes, bytes available to us) of the filesystem holding `path`.
pub fn space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// Creates `HH/HH` under `data` unless the last one already exists (then a
/// previous start made them all). Runs on a few threads: 65,536 mkdirs.
fn create_subdirs(data: &Path, count: u32) -> io::Result<()> {
    // `.fastdfs_vars` is written only after a complete pass, so a start
    // killed half-way redoes the (idempotent) pass.
    let last = data.join(format!("{:02X}/{:02X}", count - 1, count - 1));
    if last.is_dir() && data.join(".fastdfs_vars").exists() {
        return Ok(());
    }
    let threads = 4u32;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> io::Result<()> {
                    let mut high = t;
                    while high < count {
                        let h = data.join(format!("{high:02X}"));
                        mkdir(&h)?;
                        for low in 0..count {
                            mkdir(&h.join(format!("{low:02X}")))?;
                        }
                        high += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| io::Error::other("mkdir thread panicked"))??;
        }
        Ok(())
    })
}

fn mkdir(p: &Path) -> io::Result<()> {
    match fs::create_dir(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn clean_tmp(tmp: &Path) -> io::Result<()> {
    match fs::read_dir(tmp) {
        Ok(rd) => {
            let mut n = 0;
            for e in rd.flatten() {
                if fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
            if n > 0 {
                tracing::info!(dir = %tmp.display(), removed = n, "removed unfinished uploads");
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(tmp),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;

//! The trunk server's side: the free-space map, the trunk binlog, new
//! trunk files, and the rebuild when the role arrives.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::trunk::{SpaceOp, SpaceRecord, TrunkInfo, HEADER_LEN};
use fdfs_proto::{FileKind, LogicName};
use tracing::{info, warn};

use super::space::{SpaceMap, TrunkFile};
use super::{Trunk, TrunkError, TrunkParams};
use crate::recovery::LiveNames;

/// Most slots the allocator skips (found holding a file on disk) in one
/// request before it gives up.
const MAX_SKIPS: usize = 64;

/// Most bytes the trunk server sets aside at once for slots it hands out
/// without a binlog write each.
const RESERVE: u32 = 1024 * 1024;

/// Most freed slots that wait for their delete to reach the trunk server
/// (each is looked at once a second while it waits).
const MAX_PENDING: usize = 1 << 16;

/// The trunk binlog is rewritten as a snapshot of the map once it has at
/// least this many lines and four times as many as the snapshot would.
const COMPACT_FROM_LINES: u64 = 4096;

/// The trunk server's state while we serve.
pub(super) struct Served {
    map: SpaceMap,
    /// Ranges recorded as given out and not handed out yet.
    pool: SpaceMap,
    binlog: Arc<File>,
    /// Lines in the trunk binlog.
    lines: u64,
    /// The last trunk file id used; the next file gets the one after.
    last_id: u32,
    /// Slots freed by a peer whose delete has not reached our copy yet.
    pending: std::collections::BTreeSet<TrunkInfo>,
    checked: std::time::Instant,
}

impl Served {
    /// Free trunk space: the map's, and the set-aside ranges not handed
    /// out yet (what REPORT_TRUNK_FREE tells).
    fn free_bytes(&self) -> u64 {
        self.map.free_bytes() + self.pool.free_bytes()
    }
}

impl Trunk {
    /// Runs `f` on the trunk server's state, loading it first when we just
    /// became trunk server. `f` runs inline when `cheap` says it only
    /// touches memory and the page cache (a slot from a set-aside range, a
    /// free) and no upkeep is due, else in a blocking section.
    async fn with_served<T>(
        &self,
        cheap: impl FnOnce(&Served) -> bool,
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
        let inline = !Self::upkeep_due(served) && cheap(served);
        let work = |served: &mut Served| {
            self.settle_pending(served);
            let r = f(self, served);
            // Inline, a compaction due now waits for the next call, which
            // then runs in a blocking section.
            if !inline {
                if let Err(e) = self.compact_if_due(served) {
                    warn!("trunk: compacting the trunk binlog: {e}");
                }
            }
            r
        };
        let r = if inline {
            work(served)
        } else {
            crate::service::blocking(|| work(served))
        };
        let free = served.free_bytes() / (1024 * 1024);
        self.state().free_mb.store(free as i64, Ordering::Relaxed);
        self.state()
            .binlog_lines
            .store(served.lines, Ordering::Relaxed);
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
        // wrote meanwhile share one fdatasync; none is needed when nothing
        // was written since the last.
        let upto = self.binlog_written.load(Ordering::SeqCst);
        let synced = || *self.binlog_synced.lock().unwrap_or_else(|e| e.into_inner());
        if self.store.config().durable && synced() < upto {
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

    /// Pending frees to look at, or a compaction to make: disk work.
    fn upkeep_due(s: &Served) -> bool {
        (!s.pending.is_empty() && s.checked.elapsed() >= Duration::from_secs(1))
            || Self::compaction_due(s)
    }

    fn compaction_due(s: &Served) -> bool {
        s.lines >= COMPACT_FROM_LINES && s.lines > 4 * s.map.snapshot_len() as u64
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
        // In u64: a hostile size must not overflow the alignment.
        let mut wanted = u64::from(need.max(params.slot_min_size));
        if params.alignment > 1 {
            let a = u64::from(params.alignment);
            wanted = wanted.div_ceil(a) * a;
        }
        let need = u32::try_from(wanted).unwrap_or(u32::MAX);
        if wanted > u64::from(params.file_size) || need <= HEADER_LEN as u32 {
            return Err(TrunkError::Invalid(format!(
                "a slot of {need} bytes (trunk files have {})",
                params.file_size
            )));
        }
        let info = self
            .with_served(
                |s| s.pool.has_fit(store_path, need),
                |t, s| t.alloc_in(s, store_path, need, &params),
            )
            .await?;
        // A trunk file the trackers do not know of could be created again
        // by the next trunk server, should we crash: its slots wait until
        // they know (one report per new trunk file).
        let id = info.slot.trunk_id;
        let within = self.conf.network_timeout.min(Duration::from_secs(5));
        if !self.state().told.wait_known(id, within).await {
            self.with_served(
                |_| true,
                |_, s| {
                    s.pool.give(&info);
                    Ok(())
                },
            )
            .await?;
            return Err(TrunkError::Unannounced(id));
        }
        Ok(info)
    }

    fn alloc_in(
        &self,
        s: &mut Served,
        store_path: u8,
        need: u32,
        params: &TrunkParams,
    ) -> Result<TrunkInfo, TrunkError> {
        for _ in 0..MAX_SKIPS {
            let info = match s.pool.alloc(store_path, need, params.slot_min_size) {
                Some(i) => i,
                None => {
                    self.reserve(s, store_path, need, params)?;
                    continue;
                }
            };
            if let Some(held) = self.occupied(&info) {
                // The map did not know this slot: learn it, try the next.
                warn!("trunk: {info:?} holds a file on disk; the free space map missed it");
                s.map.take(&held, params.file_size);
                s.pool.take(&held, params.file_size);
                s.pool.give(&TrunkInfo {
                    slot: TrunkSlot {
                        offset: held.slot.offset.saturating_add(held.slot.alloc_size),
                        alloc_size: info.end().saturating_sub(held.end()) as u32,
                        ..info.slot
                    },
                    ..info
                });
                continue;
            }
            return Ok(info);
        }
        Err(TrunkError::NoSpace(format!(
            "{MAX_SKIPS} slots in a row were found holding files"
        )))
    }

    /// Moves a range of at least `need` bytes (up to [`RESERVE`], the best
    /// fit first, so freed space is used again before the rest) from the
    /// map to the pool, recorded as given out: slots of the pool are then
    /// handed out with no binlog write of their own. A crash loses at most
    /// what is left of the pool (it stays taken), never a slot given twice.
    fn reserve(
        &self,
        s: &mut Served,
        store_path: u8,
        need: u32,
        params: &TrunkParams,
    ) -> Result<(), TrunkError> {
        let most = RESERVE.min(params.file_size / 8).max(need);
        let Some(range) = s
            .map
            .alloc_upto(store_path, need, most, params.slot_min_size)
        else {
            return self.new_trunk_file(s, store_path, params).map(drop);
        };
        self.record(s, SpaceOp::Allocated, range)?;
        let len = s
            .map
            .file(store_path, range.slot.trunk_id)
            .map_or(params.file_size, |f| f.len);
        s.pool.add_free(&range, len);
        Ok(())
    }

    /// The ranges set aside and not handed out are free again (a stop).
    pub(super) async fn release_set_aside(&self) -> Result<(), TrunkError> {
        self.with_served(
            |_| false,
            |t, s| {
                let ranges = s.pool.drain_free();
                let bytes: u64 = ranges.iter().map(|r| u64::from(r.slot.alloc_size)).sum();
                for r in ranges {
                    s.map.give(&r);
                    t.record(s, SpaceOp::Freed, r)?;
                }
                if bytes > 0 {
                    info!(bytes, "trunk: the set-aside ranges are free again");
                }
                Ok(())
            },
        )
        .await
    }

    /// TRUNK_ALLOC_CONFIRM: a failed upload gives its slot back; a used
    /// slot was recorded when it was given out, so there is nothing to do.
    pub async fn serve_confirm(&self, info: TrunkInfo, ok: bool) -> Result<(), TrunkError> {
        if !ok {
            return self.serve_free(info).await;
        }
        if !self.state().serving.load(Ordering::SeqCst) {
            return Err(TrunkError::NotServer);
        }
        Ok(())
    }

    /// TRUNK_FREE_SPACE, and a failed upload's confirm.
    pub async fn serve_free(&self, info: TrunkInfo) -> Result<(), TrunkError> {
        self.with_served(|_| true, |t, s| {
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
        let h = self.store.used_slot_header(info).ok()??;
        Some(TrunkInfo {
            slot: TrunkSlot {
                alloc_size: h.alloc_size,
                ..info.slot
            },
            ..*info
        })
    }

    fn trunk_path(&self, info: &TrunkInfo) -> Result<PathBuf, TrunkError> {
        self.store
            .trunk_file_path(info)
            .map_err(|e| TrunkError::Invalid(e.to_string()))
    }

    /// Made ahead of demand: one new trunk file, in the writable store
    /// path with the most free disk, when the free trunk space is under
    /// `threshold`. `None` when there is enough. The lock is held for one
    /// file, so uploads go on between files.
    pub(super) async fn make_ahead(&self, threshold: u64) -> Result<Option<TrunkInfo>, TrunkError> {
        let params = self.state().params();
        // Enough free space is only a look at memory: inline.
        self.with_served(
            |s| s.free_bytes() >= threshold,
            |t, s| {
                if s.free_bytes() >= threshold {
                    return Ok(None);
                }
                let path = t
                    .store
                    .roomiest_path(u64::from(params.file_size))
                    .and_then(|i| u8::try_from(i).ok())
                    .ok_or_else(|| {
                        TrunkError::NoSpace(
                            "no writable store path has room for a new trunk file above its reserved space"
                                .into(),
                        )
                    })?;
                t.new_trunk_file(s, path, &params).map(Some)
            },
        )
        .await
    }

    /// Creates the next trunk file in store path `store_path`, all free,
    /// and records it in the trunk binlog at once (taken whole, then
    /// freed, as a snapshot does): a file made ahead of demand has no
    /// slot given out that would record it, and must not be forgotten by
    /// a restart or the next trunk server.
    fn new_trunk_file(
        &self,
        s: &mut Served,
        store_path: u8,
        params: &TrunkParams,
    ) -> Result<TrunkInfo, TrunkError> {
        // Free space inside trunk files may be used beyond the reserve, a
        // new trunk file may not.
        if !self
            .store
            .path_has_room(usize::from(store_path), u64::from(params.file_size))
        {
            return Err(TrunkError::NoSpace(format!(
                "store path M{store_path:02X} has no room for a new trunk file above its reserved space"
            )));
        }
        let sc = self.store.config().subdir_count.max(1);
        for _ in 0..1024 {
            // Ids a tracker knows of (an earlier trunk server's) are skipped.
            let floor = self.state().id_floor.load(Ordering::SeqCst);
            let id = s
                .last_id
                .max(floor)
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
            // Its blocks at once: its free space is then space on disk, and
            // a slot write into it cannot fail for want of any.
            if let Err(e) = crate::store::disk::preallocate(&f, u64::from(params.file_size)) {
                drop(f);
                let _ = fs::remove_file(&path);
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    return Err(TrunkError::NoSpace(format!(
                        "no room on disk for a new trunk file of {} bytes",
                        params.file_size
                    )));
                }
                return Err(TrunkError::io(
                    format!("preallocating {}", path.display()),
                    e,
                ));
            }
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
            self.record(s, SpaceOp::Allocated, info)?;
            self.record(s, SpaceOp::Freed, info)?;
            info!(trunk_file = %path.display(), "trunk: new trunk file");
            return Ok(info);
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
        s.lines += 1;
        if op == SpaceOp::Allocated {
            self.allocated.notify_one();
        }
        Ok(())
    }

    /// Rewrites the trunk binlog as a snapshot of the map when it has
    /// grown well past one (mostly D lines of freed slots), so that taking
    /// the role, and sending the binlog to the peers, stay quick.
    fn compact_if_due(&self, s: &mut Served) -> Result<(), TrunkError> {
        if !Self::compaction_due(s) {
            return Ok(());
        }
        let snapshot = s.map.snapshot_len() as u64;
        let path = self.binlog_path();
        let tmp = path.with_extension("compact");
        let ts = crate::store::now();
        let write = || -> io::Result<()> {
            let mut out = io::BufWriter::new(File::create(&tmp)?);
            for (op, info) in s.map.snapshot() {
                let line = SpaceRecord {
                    timestamp: ts,
                    op,
                    info,
                }
                .line();
                out.write_all(line.as_bytes())?;
            }
            // Synced whatever the mode: the rename must never leave a
            // shorter binlog than the one it replaces.
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            TrunkError::io(format!("writing {}", tmp.display()), e)
        })?;
        let backups = self.state().params().binlog_max_backups;
        if backups > 0 {
            back_up_binlog(&path, ts, backups);
        }
        // Odd while the file changes: a push that saw it odd, or another
        // value than before it opened the file, starts over.
        self.binlog_generation.fetch_add(1, Ordering::SeqCst);
        let renamed = fs::rename(&tmp, &path)
            .and_then(|()| self.store.sync_dir(&path))
            .and_then(|()| OpenOptions::new().append(true).open(&path));
        self.binlog_generation.fetch_add(1, Ordering::SeqCst);
        let file =
            renamed.map_err(|e| TrunkError::io(format!("replacing {}", path.display()), e))?;
        info!(
            lines_before = s.lines,
            lines_after = snapshot,
            "trunk: the trunk binlog is compacted"
        );
        s.binlog = Arc::new(file);
        s.lines = snapshot;
        self.state().compactions.fetch_add(1, Ordering::Relaxed);
        // Everything written so far is in the synced snapshot.
        let written = self.binlog_written.load(Ordering::SeqCst);
        let mut synced = self.binlog_synced.lock().unwrap_or_else(|e| e.into_inner());
        *synced = (*synced).max(written);
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
        // Every packed file our binlog says is alive, all store paths in
        // one pass.
        let mut live = 0u64;
        let work = self.conf.base_path.join("data").join(".trunk-load");
        let packed =
            |name: &str| LogicName::parse(name).is_ok_and(|n| matches!(n.kind, FileKind::Trunk(_)));
        let names = LiveNames::split_matching(self.store.binlog().dir(), &work, 0, packed)
            .map_err(|e| TrunkError::io("reading the binlog", e))?;
        for k in 0..names.parts() {
            let part = names
                .part(k)
                .map_err(|e| TrunkError::io("reading the binlog", e))?;
            for name in part {
                let Ok(n) = LogicName::parse(&name) else {
                    continue;
                };
                if let Some(info) = TrunkInfo::of_name(&n) {
                    map.take(&info, len_of(self, &info));
                    live += 1;
                }
            }
        }
        names.remove();
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
        // The trackers are told of it (the reporter reads it there).
        st.last_id.fetch_max(last_id, Ordering::SeqCst);
        info!(
            binlog_records = records,
            live_packed_files = live,
            free_mb = map.free_bytes() / (1024 * 1024),
            last_trunk_id = last_id,
            "trunk: this storage is the group's trunk server"
        );
        let mut served = Served {
            map,
            pool: SpaceMap::new(),
            binlog: Arc::new(binlog),
            lines: records,
            last_id,
            pending: std::collections::BTreeSet::new(),
            checked: std::time::Instant::now(),
        };
        self.compact_if_due(&mut served)?;
        Ok(served)
    }
}

/// Keeps the trunk binlog about to be compacted as
/// `binlog.YYYYMMDDHHMMSS` (a hard link: no copy), and the newest `keep`
/// of those. A backup that fails is logged and the compaction goes on.
fn back_up_binlog(path: &Path, ts: u32, keep: u32) {
    let stamp = fdfs_runtime::clock::LocalTime::at(i64::from(ts)).map_or_else(
        || ts.to_string(),
        |t| {
            format!(
                "{}{:02}{:02}{:02}",
                t.date_compact(),
                t.hour,
                t.minute,
                t.second
            )
        },
    );
    let name = |n: u32| {
        let base = format!("{}.{stamp}", path.display());
        PathBuf::from(if n == 0 { base } else { format!("{base}_{n}") })
    };
    // Several compactions in one second get _1, _2...
    let backup = (0..100).map(name).find(|p| !p.exists());
    let linked = backup
        .ok_or_else(|| io::Error::other("100 backups in one second"))
        .and_then(|b| {
            fs::hard_link(path, &b)?;
            Ok(b)
        });
    match linked {
        Ok(b) => {
            info!(backup = %b.display(), "trunk: the trunk binlog is kept before its compaction")
        }
        Err(e) => warn!(error = %e, "trunk: cannot keep a backup of the trunk binlog"),
    }
    let Some(dir) = path.parent() else { return };
    let prefix = format!(
        "{}.",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let mut olds: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(&prefix))
                    .is_some_and(|rest| {
                        rest.len() >= 14 && rest[..14].bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .collect(),
        Err(_) => return,
    };
    // Oldest first (the names sort by time; _N after the plain one).
    olds.sort();
    let extra = olds.len().saturating_sub(keep as usize);
    for old in &olds[..extra] {
        if let Err(e) = fs::remove_file(old) {
            warn!(file = %old.display(), error = %e, "trunk: cannot delete an old trunk binlog backup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::back_up_binlog;

    #[test]
    fn backups_keep_the_binlog_as_it_was_and_only_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let binlog = d.path().join("binlog");
        let backups = || {
            let mut v: Vec<(String, String)> = std::fs::read_dir(d.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p != &binlog)
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read_to_string(&p).unwrap())
                })
                .collect();
            v.sort();
            v
        };
        let t0 = 1_800_000_000u32;
        for (i, ts) in [t0, t0 + 60, t0 + 60, t0 + 120].into_iter().enumerate() {
            std::fs::write(&binlog, format!("version {i}\n")).unwrap();
            back_up_binlog(&binlog, ts, 3);
            // Then the compaction replaces the binlog (a new inode): the
            // backup must keep the old content.
            let tmp = d.path().join("binlog.compact");
            std::fs::write(&tmp, "compacted\n").unwrap();
            std::fs::rename(&tmp, &binlog).unwrap();
        }
        let b = backups();
        assert_eq!(b.len(), 3, "{b:?}");
        // The oldest went; two in one second got _1.
        assert_eq!(
            b.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>(),
            ["version 1\n", "version 2\n", "version 3\n"]
        );
        assert!(b[1].0.ends_with("_1"), "{b:?}");
        assert!(b.iter().all(|(n, _)| n.len() >= "binlog.".len() + 14));
        // Unrelated files beside it are left alone.
        std::fs::write(d.path().join("binlog.compact.old"), "x").unwrap();
        back_up_binlog(&binlog, t0 + 180, 1);
        let b = backups();
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b[0].1, "compacted\n");
        assert_eq!(b[1].0, "binlog.compact.old");
    }
}

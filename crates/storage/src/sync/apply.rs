//! The receiving side's file operations: applies one change a peer sent,
//! with the peer's timestamp, and appends the matching lower-case (replica)
//! binlog record, so the change is recorded here but never forwarded again.
//!
//! Every operation is idempotent towards a resend: a change that is
//! already there answers [`Outcome::AlreadyThere`] and writes no record,
//! so a sender that restarts from an older mark never duplicates anything.
//! Changes whose base is missing (an append before its create arrived, a
//! truncate of a file of another size) answer [`Outcome::Missing`] or
//! [`Outcome::Mismatch`]; the sender then sends the whole file.
//!
//! Blocking file I/O: call from a blocking context.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fdfs_proto::binlog::{BinlogOp, BinlogRecord};
use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::{errno, trunk, FileKind, LogicName};

use crate::store::stats::idx;
use crate::store::{now, Store, StoreError};

/// What applying a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Nothing to do: the change (or a later state) is already here.
    AlreadyThere,
    /// The file the change applies to is not here.
    Missing,
    /// The file is here but not in the state the change starts from.
    Mismatch,
}

impl Outcome {
    /// The reply status for this outcome.
    pub fn status(self) -> u8 {
        match self {
            Outcome::Applied => errno::OK,
            Outcome::AlreadyThere => errno::EEXIST,
            Outcome::Missing => errno::ENOENT,
            Outcome::Mismatch => errno::EAGAIN,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Parses a sync filename (logic name, maybe with `-m`) and finds its path.
pub fn path_of(store: &Store, name: &str) -> Result<(LogicName, PathBuf)> {
    let logic = LogicName::parse(name)
        .map_err(|e| StoreError::Invalid(format!("sync filename {name:?}: {e}")))?;
    let path = store.resolve(&logic)?;
    Ok((logic, path))
}

fn record(store: &Store, op: BinlogOp, name: &str, ts: u32) -> Result<()> {
    let mut unsynced = Unsynced::default();
    record_unsynced(store, op, name, ts, None, &mut unsynced)?;
    unsynced.commit(store)
}

/// Appends a replica record (journaling `image`, the content of the file
/// it creates, with `durable_sync = journal`); in durable mode its fsync
/// is left to `unsynced`.
fn record_unsynced(
    store: &Store,
    op: BinlogOp,
    name: &str,
    ts: u32,
    image: Option<&[u8]>,
    unsynced: &mut Unsynced,
) -> Result<()> {
    let seq = store
        .binlog()
        .append_with_image(
            &BinlogRecord {
                timestamp: ts,
                is_source: false,
                filename: name.to_owned(),
                op,
            },
            image,
        )
        .map_err(|e| StoreError::io("writing the binlog", e))?;
    if store.config().durable {
        unsynced.binlog_seq = unsynced.binlog_seq.max(Some(seq));
    }
    store.stats().set(idx::LAST_SYNC_UPDATE, now() as i64);
    Ok(())
}

/// Directory entries and binlog records of applied files whose fsyncs
/// (durable mode) are still to come. A receiver gathers those of the
/// requests a peer pipelined and makes them durable with one fsync per
/// directory and one of the binlog, before any of their replies.
///
/// Creates may also be *staged*: content received, not yet synced nor
/// named. At the commit their writeback starts together, then (with
/// `durable_sync = fsync`) their contents are fsynced one by one before any
/// of them is named; with `syncfs` the commit's syncfs covers them.
#[derive(Default)]
pub struct Unsynced {
    dirs: Vec<PathBuf>,
    binlog_seq: Option<u64>,
    staged: Vec<(Incoming, u32)>,
}

impl std::fmt::Debug for Unsynced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsynced")
            .field("dirs", &self.dirs.len())
            .field("binlog_seq", &self.binlog_seq)
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl Unsynced {
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.binlog_seq.is_none() && self.staged.is_empty()
    }

    /// Creates staged and not committed yet.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Syncs and names the staged creates in the order they came, then
    /// runs the directory and binlog fsyncs. Returns each staged create's
    /// (name, timestamp, outcome); empty afterwards. `Err`: an fsync of a
    /// directory or of the binlog failed, nothing may be confirmed.
    pub fn commit_staged(&mut self, store: &Store) -> Result<Vec<(String, u32, Result<Outcome>)>> {
        let staged = std::mem::take(&mut self.staged);
        // Writeback of the whole batch first: the per-file syncs that
        // follow (if any) then find little left to write.
        for (inc, _) in &staged {
            inc.start_writeback();
        }
        let mut synced = Vec::with_capacity(staged.len());
        for (inc, ts) in staged {
            let r = inc.sync_content(store);
            synced.push((inc, ts, r));
        }
        let mut out = Vec::with_capacity(synced.len());
        for (inc, ts, r) in synced {
            let name = inc.name.clone();
            let r = r.and_then(|()| inc.name_it(store, ts, self));
            out.push((name, ts, r));
        }
        self.commit(store)?;
        Ok(out)
    }

    /// Runs the fsyncs; empty afterwards, also on error. Staged creates
    /// must have been committed with [`Self::commit_staged`].
    pub fn commit(&mut self, store: &Store) -> Result<()> {
        debug_assert!(self.staged.is_empty());
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_unstable();
        dirs.dedup();
        store.commit_names(self.binlog_seq.take(), &dirs)
    }
}

/// Incoming whole-file content (SYNC_CREATE_FILE / SYNC_UPDATE_FILE),
/// staged like an upload's (`Store::new_staging`: an unnamed file, or a
/// temporary file in the store path's `.tmp`) and named only when
/// complete. Dropped unfinished: nothing is left.
pub struct Incoming {
    name: String,
    path: PathBuf,
    /// The temporary file's path; `None` for an unnamed file (creates
    /// only: an update replaces a file, which a link cannot).
    tmp: Option<PathBuf>,
    file: Option<File>,
    update: bool,
    size: u64,
    written: u64,
    /// Renamed into place: no temporary file left to remove.
    named: bool,
    /// The content, kept when it is to be journaled.
    image: Option<Vec<u8>>,
    /// For a file of upstream's trunk files: its name and slot. The content
    /// goes to a named temporary file, then into the slot.
    trunk: Option<(LogicName, TrunkSlot)>,
}

/// Starts receiving the content of `name` (`update`: replace if present).
pub fn begin_file(store: &Store, name: &str, size: u64, update: bool) -> Result<Incoming> {
    let (logic, path) = path_of(store, name)?;
    let idx = logic.store_path as usize;
    let slot = match logic.kind {
        FileKind::Trunk(slot) => {
            // Refused before any content arrives.
            if Some(size) != logic.info.file_size() || !trunk::fits(&slot, size) {
                return Err(StoreError::Invalid(format!(
                    "{name}: {size} bytes do not fit its trunk slot of {} bytes",
                    slot.alloc_size
                )));
            }
            Some(slot)
        }
        _ => None,
    };
    let image = store.journal_image_buffer(logic.kind, size);
    // An update is compared with the file it replaces, and a packed file
    // not journaled is copied into its slot: both from a named file. A
    // journaled packed create goes into its slot from memory, with no
    // staging file at all.
    let (tmp, file) = if update || (slot.is_some() && image.is_none()) {
        let (tmp, file) = store.new_named_tmp(idx, "sync.")?;
        (Some(tmp), Some(file))
    } else if slot.is_some() {
        (None, None)
    } else {
        let (tmp, file) = store.new_staging(idx, image.is_some(), "sync.")?;
        (tmp, Some(file))
    };
    Ok(Incoming {
        image,
        name: name.to_owned(),
        path,
        tmp,
        file,
        update,
        size,
        written: 0,
        named: false,
        trunk: slot.map(|s| (logic, s)),
    })
}

impl Incoming {
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.written + buf.len() as u64 > self.size {
            return Err(StoreError::Invalid("more content than announced".into()));
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(buf)
                .map_err(|e| StoreError::io(format!("writing {}", self.name), e))?;
        }
        if let Some(image) = &mut self.image {
            image.extend_from_slice(buf);
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Names the file and records `c` (or `u`). A create of a file that is
    /// already here keeps the existing one ([`Outcome::AlreadyThere`]).
    pub fn finish(self, store: &Store, ts: u32) -> Result<Outcome> {
        let mut unsynced = Unsynced::default();
        let o = self.finish_unsynced(store, ts, &mut unsynced)?;
        unsynced.commit(store)?;
        Ok(o)
    }

    /// [`Self::finish`] that leaves the directory and binlog fsyncs of the
    /// durable mode to `unsynced` (with `durable_sync = fsync` the content
    /// itself is synced before the file is named, so a named file is never
    /// a partial one).
    pub fn finish_unsynced(
        self,
        store: &Store,
        ts: u32,
        unsynced: &mut Unsynced,
    ) -> Result<Outcome> {
        self.check_complete()?;
        self.sync_content(store)?;
        self.name_it(store, ts, unsynced)
    }

    /// Durable mode, a create: keeps the received file for
    /// [`Unsynced::commit_staged`] instead of syncing and naming it now.
    pub fn stage(self, ts: u32, unsynced: &mut Unsynced) -> Result<()> {
        self.check_complete()?;
        unsynced.staged.push((self, ts));
        Ok(())
    }

    fn check_complete(&self) -> Result<()> {
        if self.written != self.size {
            return Err(StoreError::Invalid(format!(
                "{}: content ended after {} of {} bytes",
                self.name, self.written, self.size
            )));
        }
        Ok(())
    }

    fn start_writeback(&self) {
        if self.trunk.is_some() {
            return;
        }
        if let (Some(f), None) = (&self.file, &self.image) {
            crate::store::disk::start_writeback(f);
        }
    }

    fn sync_content(&self, store: &Store) -> Result<()> {
        // A trunk slot is synced when it is written (`Store::write_slot`).
        if self.image.is_some() || self.trunk.is_some() {
            return Ok(());
        }
        let file = self.file.as_ref().expect("open until named");
        store
            .sync_new_content(file)
            .map_err(|e| StoreError::io(format!("fsync of {}", self.name), e))
    }

    /// Gives the complete (and, in durable mode, synced) content its name.
    fn name_it(mut self, store: &Store, ts: u32, unsynced: &mut Unsynced) -> Result<Outcome> {
        if let Some((logic, slot)) = &self.trunk {
            self.file = None;
            let existed = store.slot_holds(logic, slot)?;
            // Like a whole file, a create keeps the copy already here.
            if existed && !self.update {
                return Ok(Outcome::AlreadyThere);
            }
            // Never over a newer file: this one was deleted and its slot
            // given out again before its create reached us.
            if !existed && store.slot_holds_newer(logic)? {
                tracing::info!(file = %self.name, "trunk: its slot holds a newer file; the stale create is skipped");
                return Ok(Outcome::AlreadyThere);
            }
            match (&self.image, &self.tmp) {
                // Journaled: written unsynced, the journal's redo refills it.
                (Some(content), None) => store.put_slot(logic, content, false)?,
                (image, Some(tmp)) => {
                    let src = File::open(tmp)
                        .map_err(|e| StoreError::io(format!("reopening {}", self.name), e))?;
                    let sync = store.config().durable && image.is_none();
                    if !store.write_slot_synced(logic, slot, &src, self.size, sync)? {
                        return Ok(Outcome::AlreadyThere);
                    }
                }
                (None, None) => {
                    return Err(StoreError::Invalid(format!(
                        "{}: content neither in memory nor in a named file",
                        self.name
                    )))
                }
            }
            let op = if existed {
                BinlogOp::Update
            } else {
                BinlogOp::Create
            };
            // The temporary file goes when `self` is dropped.
            record_unsynced(store, op, &self.name, ts, self.image.as_deref(), unsynced)?;
            return Ok(Outcome::Applied);
        }
        // Kept open until named: an unnamed file is named through it.
        let file = self.file.take().expect("open until named");
        let durable = store.config().durable;
        // A create needs no look first: its naming refuses an existing file.
        let existed = self.update && self.path.symlink_metadata().is_ok();
        let r = match &self.tmp {
            Some(tmp) if self.update => {
                if existed
                    && same_content(tmp, &self.path)
                        .map_err(|e| StoreError::io(format!("comparing {}", self.name), e))?
                {
                    // A resent update: already applied.
                    return Ok(Outcome::AlreadyThere);
                }
                fs::rename(tmp, &self.path)
            }
            // Never replaces a file that appeared meanwhile.
            tmp => crate::store::name_staged(tmp.as_deref(), &file, &self.path),
        };
        drop(file);
        match r {
            Ok(()) => self.named = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Outcome::AlreadyThere),
            Err(e) => return Err(StoreError::io(format!("naming {}", self.name), e)),
        }
        // A journaled image brings its name back after a crash.
        if durable && self.image.is_none() {
            if let Some(d) = self.path.parent() {
                unsynced.dirs.push(d.to_owned());
            }
        }
        // An update of a file we never had creates it here: record `c`.
        let op = if self.update && existed {
            BinlogOp::Update
        } else {
            BinlogOp::Create
        };
        record_unsynced(store, op, &self.name, ts, self.image.as_deref(), unsynced)?;
        Ok(Outcome::Applied)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.file = None;
        if let (false, Some(tmp)) = (self.named, &self.tmp) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// SYNC_DELETE_FILE: removes the named file only (the source sends the
/// `-m` sidecar's delete as its own record).
pub fn delete(store: &Store, name: &str, ts: u32) -> Result<Outcome> {
    let (logic, path) = path_of(store, name)?;
    if let FileKind::Trunk(slot) = logic.kind {
        if !store.free_slot(&logic, &slot)? {
            return Ok(Outcome::Missing);
        }
        record(store, BinlogOp::Delete, name, ts)?;
        return Ok(Outcome::Applied);
    }
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => return Ok(Outcome::Missing),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(StoreError::io(format!("stat {name}"), e)),
    }
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(StoreError::io(format!("deleting {name}"), e)),
    }
    record(store, BinlogOp::Delete, name, ts)?;
    Ok(Outcome::Applied)
}

/// An incoming append or modify: `len` bytes at `offset`. Bytes equal to
/// what is already there are not rewritten, and a change that alters
/// nothing writes no record (a resend).
pub struct RangeIn {
    name: String,
    file: File,
    append: bool,
    offset: u64,
    len: u64,
    written: u64,
    old_size: u64,
    changed: bool,
    scratch: Vec<u8>,
}

/// Checks the file can take `len` bytes at `offset` and opens it. An
/// append whose bytes are all here already is [`Outcome::AlreadyThere`];
/// a gap before `offset` is [`Outcome::Mismatch`].
pub fn begin_range(
    store: &Store,
    name: &str,
    offset: u64,
    len: u64,
    append: bool,
) -> Result<std::result::Result<RangeIn, Outcome>> {
    let (_, path) = path_of(store, name)?;
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(Outcome::Missing)),
        Err(e) => return Err(StoreError::io(format!("opening {name}"), e)),
    };
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(format!("stat {name}"), e))?
        .len();
    if size < offset {
        return Ok(Err(Outcome::Mismatch));
    }
    if append && size >= offset + len {
        return Ok(Err(Outcome::AlreadyThere));
    }
    Ok(Ok(RangeIn {
        name: name.to_owned(),
        file,
        append,
        offset,
        len,
        written: 0,
        old_size: size,
        changed: false,
        scratch: Vec::new(),
    }))
}

impl RangeIn {
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if self.written + buf.len() as u64 > self.len {
            return Err(StoreError::Invalid("more content than announced".into()));
        }
        let pos = self.offset + self.written;
        // Compare with what is there (within the old size) first.
        let overlap = self.old_size.saturating_sub(pos).min(buf.len() as u64) as usize;
        let same = overlap == buf.len() && {
            self.scratch.resize(overlap, 0);
            self.file
                .read_exact_at(&mut self.scratch, pos)
                .map_err(|e| StoreError::io(format!("reading {}", self.name), e))?;
            self.scratch[..] == buf[..]
        };
        if !same {
            self.file
                .write_all_at(buf, pos)
                .map_err(|e| StoreError::io(format!("writing {}", self.name), e))?;
            self.changed = true;
        }
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Records `a` (or `m`) with the peer's offset and length.
    pub fn finish(self, store: &Store, ts: u32) -> Result<Outcome> {
        if self.written != self.len {
            return Err(StoreError::Invalid(format!(
                "{}: data ended after {} of {} bytes",
                self.name, self.written, self.len
            )));
        }
        if !self.changed {
            return Ok(Outcome::AlreadyThere);
        }
        if store.config().durable {
            self.file
                .sync_data()
                .map_err(|e| StoreError::io(format!("fsync of {}", self.name), e))?;
        }
        let (offset, length) = (self.offset, self.len);
        let op = if self.append {
            BinlogOp::Append { offset, length }
        } else {
            BinlogOp::Modify { offset, length }
        };
        record(store, op, &self.name, ts)?;
        Ok(Outcome::Applied)
    }
}

/// True if two files have the same bytes.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// SYNC_TRUNCATE_FILE: applies only from `old_size`; a file already at
/// `new_size` is [`Outcome::AlreadyThere`], any other size a mismatch.
pub fn truncate(store: &Store, name: &str, old: u64, new: u64, ts: u32) -> Result<Outcome> {
    let (_, path) = path_of(store, name)?;
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(StoreError::io(format!("opening {name}"), e)),
    };
    let size = file
        .metadata()
        .map_err(|e| StoreError::io(format!("stat {name}"), e))?
        .len();
    if size == new {
        return Ok(Outcome::AlreadyThere);
    }
    if size != old {
        return Ok(Outcome::Mismatch);
    }
    file.set_len(new)
        .map_err(|e| StoreError::io(format!("truncating {name}"), e))?;
    if store.config().durable {
        file.sync_all()
            .map_err(|e| StoreError::io(format!("fsync of {name}"), e))?;
    }
    record(
        store,
        BinlogOp::Truncate {
            old_size: old,
            new_size: new,
        },
        name,
        ts,
    )?;
    Ok(Outcome::Applied)
}

/// SYNC_CREATE_LINK: `link` becomes a symlink to our copy of `target`.
pub fn link(store: &Store, link: &str, target: &str, ts: u32) -> Result<Outcome> {
    let (_, lpath) = path_of(store, link)?;
    let (_, tpath) = path_of(store, target)?;
    if lpath.symlink_metadata().is_ok() {
        return Ok(Outcome::AlreadyThere);
    }
    if !tpath.exists() {
        return Ok(Outcome::Missing);
    }
    match std::os::unix::fs::symlink(&tpath, &lpath) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Outcome::AlreadyThere),
        Err(e) => return Err(StoreError::io(format!("linking {link}"), e)),
    }
    record(
        store,
        BinlogOp::Link {
            target: target.to_owned(),
        },
        link,
        ts,
    )?;
    Ok(Outcome::Applied)
}

/// SYNC_RENAME_FILE: the appender `old` becomes the normal file `new`.
pub fn rename(store: &Store, new: &str, old: &str, ts: u32) -> Result<Outcome> {
    let (_, npath) = path_of(store, new)?;
    let (_, opath) = path_of(store, old)?;
    if npath.symlink_metadata().is_ok() {
        return Ok(Outcome::AlreadyThere);
    }
    // Link then unlink: never replaces a file that appeared meanwhile.
    match fs::hard_link(&opath, &npath) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Outcome::AlreadyThere),
        Err(e) => return Err(StoreError::io(format!("renaming {old}"), e)),
    }
    let _ = fs::remove_file(&opath);
    if store.config().durable {
        store
            .sync_dir(&npath)
            .map_err(|e| StoreError::io("fsync of the directory", e))?;
    }
    record(
        store,
        BinlogOp::Rename {
            old: old.to_owned(),
        },
        new,
        ts,
    )?;
    Ok(Outcome::Applied)
}

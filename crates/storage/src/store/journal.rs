//! The write-ahead journal of `durable_sync = journal`.
//!
//! Every binlog record is also appended here, with the whole content of
//! the file it creates when that is a small normal or slave file (an
//! *image*). One `fdatasync` of the journal, shared by every upload that
//! finished meanwhile, then makes those uploads durable: their files reach
//! the disk later through normal writeback. So a batch costs one
//! sequential write and one disk flush, where `fsync` costs a flush per
//! file, directory and binlog.
//!
//! A committer thread runs the `fdatasync`s: whoever needs entries durable
//! asks for them and waits, blocking ([`Journal::commit`]) or async
//! ([`Journal::durable`]); an upload then needs no thread of its own while
//! it waits. It commits in groups: when its last commit served several
//! waiters, it lets as many gather again (at most [`GATHER_MAX`]) before
//! the next `fdatasync`, since a quick disk would otherwise sync each
//! upload alone (see [`committer`]).
//!
//! Two files, `journal.0` and `journal.1` in `<base_path>/data`, take
//! turns. Appends go to the active one; when it is full the other becomes
//! active, and a background thread checkpoints the full one: one `syncfs`
//! of every file system of the store makes what it describes durable, then
//! its header is marked retired so that it is never replayed again. Both
//! files are written out to their full size when it starts, so commits
//! overwrite blocks that exist instead of growing a file.
//!
//! Only changes already made on the file system are appended (the upload
//! is named before its image is journaled), so a checkpoint's `syncfs`
//! covers everything in the file it retires.
//!
//! After a crash, [`Journal::open`] returns the entries of the files not
//! checkpointed, oldest first, and the store redoes them before it serves.
//!
//! # Layout
//! A file starts with a 16-byte header: `FDFSJNL1` (`FDFSJNL0` once
//! retired), then its generation (u64 LE, one more at every turn, never
//! reused). Entries follow:
//! payload length (u32 LE), CRC32 of the generation and the payload (u32
//! LE), payload. The payload is the record's binlog file index (u32 LE)
//! and offset (u64 LE), the record line's length (u32 LE), 1 if an image
//! follows (u8), the line, and the image (the rest). Replay stops at the
//! first entry whose CRC fails: a torn last write, the zeros after the
//! last entry, or older entries of an earlier generation.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::disk::Disk;

const MAGIC: &[u8; 8] = b"FDFSJNL1";
/// A retired file keeps its generation, so that the next is always higher
/// and stale entries further in a reused file never pass as new ones.
const RETIRED: &[u8; 8] = b"FDFSJNL0";
const HEADER_LEN: u64 = 16;
const ENTRY_HEAD_LEN: usize = 8;
const PAYLOAD_FIXED_LEN: usize = 4 + 8 + 4 + 1;

/// Files up to this size are journaled whole; larger ones are fsynced.
/// Journaling writes the content twice (journal, then the file): 64 KiB
/// uploads gained a little from it (1.06x), larger ones would gain less
/// and hold more memory while in progress (docs/benchmarks.md).
pub const IMAGE_MAX: u64 = 64 << 10;

/// One journaled binlog record, with the image of the file it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub binlog_index: u32,
    pub binlog_offset: u64,
    pub line: Vec<u8>,
    pub image: Option<Vec<u8>>,
}

/// The bytes of one entry of generation `generation`, image included: one
/// `pwrite` per entry (copying an image of at most [`IMAGE_MAX`] costs
/// less than a second system call).
pub fn encode_entry(
    generation: u64,
    binlog_index: u32,
    binlog_offset: u64,
    line: &[u8],
    image: Option<&[u8]>,
) -> Vec<u8> {
    let has_image = image.is_some();
    let image = image.unwrap_or_default();
    let payload_len = PAYLOAD_FIXED_LEN + line.len() + image.len();
    let mut out = Vec::with_capacity(ENTRY_HEAD_LEN + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&binlog_index.to_le_bytes());
    out.extend_from_slice(&binlog_offset.to_le_bytes());
    out.extend_from_slice(&(line.len() as u32).to_le_bytes());
    out.push(has_image as u8);
    out.extend_from_slice(line);
    out.extend_from_slice(image);
    let crc = entry_crc(generation, &out[ENTRY_HEAD_LEN..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn entry_crc(generation: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Fills `buf` from `pos` of `f`; `Ok(false)` if the end comes first.
fn read_full_at(f: &File, buf: &mut [u8], pos: u64) -> io::Result<bool> {
    match f.read_exact_at(buf, pos) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// No entry is larger (a garbage length never makes a huge allocation).
const PAYLOAD_MAX: usize = 16 << 20;

/// The entries of a journal file whose header is `header`, up to the
/// first that is torn or of another generation; `None` if the header is
/// not a live one. Reads the entries one by one.
fn decode(f: &File, header: &[u8]) -> io::Result<Option<(u64, Vec<Entry>)>> {
    let Some(generation) = live_generation(header) else {
        return Ok(None);
    };
    let mut entries = Vec::new();
    let mut pos = HEADER_LEN;
    let mut head = [0u8; ENTRY_HEAD_LEN];
    while read_full_at(f, &mut head, pos)? {
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if !(PAYLOAD_FIXED_LEN..=PAYLOAD_MAX).contains(&len) {
            break;
        }
        let mut payload = vec![0u8; len];
        if !read_full_at(f, &mut payload, pos + ENTRY_HEAD_LEN as u64)?
            || entry_crc(generation, &payload) != crc
        {
            break;
        }
        let line_len = u32::from_le_bytes(payload[12..16].try_into().unwrap()) as usize;
        let Some(line) = payload.get(PAYLOAD_FIXED_LEN..PAYLOAD_FIXED_LEN + line_len) else {
            break;
        };
        let image = &payload[PAYLOAD_FIXED_LEN + line_len..];
        let has_image = payload[16] == 1;
        entries.push(Entry {
            binlog_index: u32::from_le_bytes(payload[..4].try_into().unwrap()),
            binlog_offset: u64::from_le_bytes(payload[4..12].try_into().unwrap()),
            line: line.to_vec(),
            image: has_image.then(|| image.to_vec()),
        });
        pos += (ENTRY_HEAD_LEN + len) as u64;
    }
    Ok(Some((generation, entries)))
}

/// The generation of a live file.
fn live_generation(bytes: &[u8]) -> Option<u64> {
    (bytes.get(..8)? == MAGIC).then(|| generation_of(bytes))
}

/// The generation in a header, live or retired (0 for no header).
fn generation_of(bytes: &[u8]) -> u64 {
    match bytes.get(..HEADER_LEN as usize) {
        Some(h) if &h[..8] == MAGIC || &h[..8] == RETIRED => {
            u64::from_le_bytes(h[8..].try_into().unwrap())
        }
        _ => 0,
    }
}

fn header(magic: &[u8; 8], generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&generation.to_le_bytes());
    h
}

/// Path of journal file `i` (0 or 1) in `dir`.
pub fn journal_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("journal.{i}"))
}

struct State {
    active: usize,
    generation: u64,
    /// Where the next entry goes in the active file.
    offset: u64,
    /// The file being checkpointed, if any.
    retiring: Option<usize>,
    /// Files written since their last fdatasync.
    unsynced: [bool; 2],
    /// Entries appended so far.
    appended: u64,
}

/// Where the commits stand; shared with the committer thread.
struct Commits {
    state: Mutex<CommitState>,
    /// Wakes the committer: a request, or the journal closed.
    work: Condvar,
    /// Wakes blocking waiters: progress.
    changed: Condvar,
    /// The same progress for async waiters (only the committer and the
    /// closing journal publish: a request changes nothing they wait for).
    durable: tokio::sync::watch::Sender<CommitState>,
    /// [`GATHER_MAX`], longer in tests.
    gather_max: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
struct CommitState {
    /// Entries someone waits for.
    requested: u64,
    /// Entries known durable.
    synced: u64,
    /// Waiters come since the committer took the last group.
    gathered: u64,
    /// The group the committer waits for before its next commit: the
    /// last one's size, or one less than before if that is more.
    last_group: u64,
    /// An fdatasync failed: nothing is confirmed any more (the kernel may
    /// have dropped the pages it could not write).
    failed: bool,
    /// The journal is gone: the committer stops.
    closed: bool,
    /// What the committer is blocked on.
    committer: Committer,
}

/// What the committer thread is doing, so that a request wakes it only
/// when that changes something for it: a wake-up that finds the group
/// still short costs a futex call and a context switch for nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Committer {
    /// Syncing, or about to look at the state again.
    #[default]
    Busy,
    /// Waiting for a request.
    Idle,
    /// Waiting for the group to reach `last_group`.
    Gathering,
}

impl CommitState {
    /// Whether waiting for `ticket` is over: `Ok` durable, `Err` never.
    fn outcome(&self, ticket: u64) -> Option<io::Result<()>> {
        if self.failed {
            Some(Err(io::Error::other(
                "an earlier fdatasync of the journal failed",
            )))
        } else if self.synced >= ticket {
            Some(Ok(()))
        } else {
            None
        }
    }
}

/// The journal of one storage server.
pub struct Journal {
    files: [File; 2],
    file_size: u64,
    disk: Arc<dyn Disk>,
    state: Mutex<State>,
    /// Signalled when a checkpoint ends.
    retired: Condvar,
    commits: Arc<Commits>,
    checkpoints: Mutex<mpsc::Sender<usize>>,
    sync_all: SyncAll,
}

/// Makes every file system of the store durable (`syncfs` of each).
pub type SyncAll = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

impl Drop for Journal {
    fn drop(&mut self) {
        self.commits.update(|c| c.closed = true);
        // The committer waits on its own condvar.
        self.commits.work.notify_one();
    }
}

impl Commits {
    fn update(&self, f: impl FnOnce(&mut CommitState)) {
        let mut c = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c);
        // Published under the lock, so the channel takes the states in
        // their order: sent after it, a request's older copy could overtake
        // the committer's newer one (a thread preempted between the two),
        // and async waiters would sleep on a stale state, never woken again.
        self.durable.send_replace(*c);
        drop(c);
        self.changed.notify_all();
    }
}

/// Entries to redo after a crash, oldest first.
pub type Pending = Vec<Entry>;

impl Journal {
    /// Opens (creating) the two files in `dir`. Returns the journal, with
    /// both files still live, and the entries they hold: redo them, then
    /// call [`Journal::start`]. `sync_all` is what a checkpoint does.
    pub fn open(
        dir: &Path,
        file_size: u64,
        disk: Arc<dyn Disk>,
        sync_all: SyncAll,
    ) -> io::Result<(Arc<Journal>, Pending)> {
        Self::open_gathering(dir, file_size, disk, sync_all, GATHER_MAX)
    }

    /// [`Journal::open`] with another longest wait for a group.
    fn open_gathering(
        dir: &Path,
        file_size: u64,
        disk: Arc<dyn Disk>,
        sync_all: SyncAll,
        gather_max: Duration,
    ) -> io::Result<(Arc<Journal>, Pending)> {
        let mut found = Vec::new();
        let mut files = Vec::new();
        let mut generation = 0;
        for i in 0..2 {
            let path = journal_path(dir, i);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let header = read_header(&f)?;
            generation = generation.max(generation_of(&header));
            if let Some((g, entries)) = decode(&f, &header)? {
                found.push((g, entries));
            }
            files.push(f);
        }
        found.sort_by_key(|(g, _)| *g);
        let pending: Pending = found.into_iter().flat_map(|(_, e)| e).collect();
        let files: [File; 2] = files
            .try_into()
            .map_err(|_| io::Error::other("two files"))?;
        let (tx, rx) = mpsc::channel();
        let journal = Arc::new(Journal {
            files,
            file_size: file_size.max(HEADER_LEN * 2),
            disk,
            state: Mutex::new(State {
                active: 0,
                generation,
                offset: HEADER_LEN,
                retiring: None,
                unsynced: [false; 2],
                appended: 0,
            }),
            retired: Condvar::new(),
            commits: Arc::new(Commits {
                state: Mutex::default(),
                work: Condvar::new(),
                changed: Condvar::new(),
                durable: Default::default(),
                gather_max,
            }),
            checkpoints: Mutex::new(tx),
            sync_all,
        });
        let weak = Arc::downgrade(&journal);
        std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || checkpointer(weak, rx))?;
        let (weak, commits) = (Arc::downgrade(&journal), journal.commits.clone());
        std::thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || committer(weak, commits))?;
        Ok((journal, pending))
    }

    /// After the redo (made durable by the caller): writes both files out
    /// to their full size, retires them and starts a new generation in
    /// `journal.0`.
    pub fn start(&self) -> io::Result<()> {
        let mut st = self.lock();
        for (i, f) in self.files.iter().enumerate() {
            fit(&*self.disk, f, self.file_size)?;
            let g = generation_of(&read_header(f)?);
            f.write_all_at(&header(RETIRED, g), 0)?;
            self.disk.sync_data(f)?;
            st.unsynced[i] = false;
        }
        st.generation += 1;
        st.active = 0;
        st.offset = HEADER_LEN;
        self.files[0].write_all_at(&header(MAGIC, st.generation), 0)?;
        st.unsynced[0] = true;
        Ok(())
    }

    /// Makes every file system of the store durable, as a checkpoint
    /// does: after a redo, before the journal starts anew.
    pub fn sync_store(&self) -> io::Result<()> {
        (self.sync_all)()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the entry of a binlog record (already written to the binlog,
    /// its file already named). Durable after [`Journal::commit`].
    pub fn append(
        &self,
        binlog_index: u32,
        binlog_offset: u64,
        line: &[u8],
        image: Option<&[u8]>,
    ) -> io::Result<()> {
        let mut st = self.lock();
        let entry = |generation| encode_entry(generation, binlog_index, binlog_offset, line, image);
        let mut bytes = entry(st.generation);
        let len = bytes.len() as u64;
        if st.offset + len > self.file_size && st.offset > HEADER_LEN {
            st = self.turn(st)?;
            bytes = entry(st.generation);
        }
        self.files[st.active].write_all_at(&bytes, st.offset)?;
        st.offset += len;
        let a = st.active;
        st.unsynced[a] = true;
        st.appended += 1;
        Ok(())
    }

    /// Whether an append may have to wait: a checkpoint is running, and
    /// the active file may fill before it ends. Async callers then append
    /// from a blocking context.
    pub fn may_wait(&self) -> bool {
        self.lock().retiring.is_some()
    }

    /// The ticket that covers every entry appended so far: pass it to
    /// [`Journal::durable`].
    pub fn ticket(&self) -> u64 {
        self.lock().appended
    }

    /// Makes the other file active (waiting for its checkpoint to end) and
    /// hands the full one to the checkpoint thread.
    fn turn<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, State>,
    ) -> io::Result<std::sync::MutexGuard<'a, State>> {
        while st.retiring.is_some() {
            st = self.retired.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let full = st.active;
        let next = 1 - full;
        st.generation += 1;
        self.files[next].write_all_at(&header(MAGIC, st.generation), 0)?;
        st.active = next;
        st.offset = HEADER_LEN;
        st.unsynced[next] = true;
        st.retiring = Some(full);
        let sent = self
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(full);
        if sent.is_err() {
            return Err(io::Error::other("the journal checkpoint thread is gone"));
        }
        Ok(st)
    }

    /// Makes every entry appended before this call durable, waiting for
    /// the committer. Concurrent callers share one `fdatasync`.
    pub fn commit(&self) -> io::Result<()> {
        self.commit_upto(self.ticket())
    }

    /// [`Journal::commit`] of the entries up to `ticket`.
    pub fn commit_upto(&self, ticket: u64) -> io::Result<()> {
        self.request(ticket);
        let mut c = self.commits.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = c.outcome(ticket) {
                return r;
            }
            c = self
                .commits
                .changed
                .wait(c)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`Journal::commit`] for a `ticket` taken after one's appends, as an
    /// async wait.
    pub async fn durable(&self, ticket: u64) -> io::Result<()> {
        let mut rx = self.commits.durable.subscribe();
        self.request(ticket);
        let c = rx
            .wait_for(|c| c.outcome(ticket).is_some())
            .await
            .map_err(|_| io::Error::other("the journal is closed"))?;
        c.outcome(ticket).unwrap_or(Ok(()))
    }

    fn request(&self, ticket: u64) {
        let mut c = self.commits.state.lock().unwrap_or_else(|e| e.into_inner());
        if c.synced >= ticket {
            return;
        }
        c.gathered += 1;
        c.requested = c.requested.max(ticket);
        let wake = match c.committer {
            Committer::Busy => false,
            Committer::Idle => true,
            Committer::Gathering => c.gathered >= c.last_group,
        };
        drop(c);
        if wake {
            self.commits.work.notify_one();
        }
    }

    /// One commit: fdatasync of each file written since its last one.
    /// Returns how many entries are now durable.
    fn sync_unsynced(&self) -> io::Result<u64> {
        let (unsynced, upto) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.unsynced), st.appended)
        };
        for (i, dirty) in unsynced.into_iter().enumerate() {
            if dirty {
                if let Err(e) = self.disk.sync_data(&self.files[i]) {
                    self.lock().unsynced[i] = true;
                    return Err(e);
                }
            }
        }
        Ok(upto)
    }

    /// Ends the checkpoint of file `i`: it holds nothing left to redo.
    fn retire(&self, i: usize) -> io::Result<()> {
        let g = generation_of(&read_header(&self.files[i])?);
        self.files[i].write_all_at(&header(RETIRED, g), 0)?;
        self.disk.sync_data(&self.files[i])?;
        let mut st = self.lock();
        st.retiring = None;
        st.unsynced[i] = false;
        self.retired.notify_all();
        Ok(())
    }
}

/// Fills `f` with zeros from its end up to `size`, so that appends overwrite
/// written blocks: an `fdatasync` then writes the entries and flushes,
/// without the block allocation and size change of a growing file (0.16
/// against 0.29 ms per 16 KiB commit, probed on this project's VM). Cuts it
/// to `size` instead when `journal_file_size` was lowered since.
fn fit(disk: &dyn Disk, f: &File, size: u64) -> io::Result<()> {
    // Static, not on the heap: a large buffer freed raises glibc's mmap
    // threshold, and the storage's RSS with it for good.
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut len = f.metadata()?.len();
    if len > size {
        return f.set_len(size);
    }
    while len < size {
        let n = (size - len).min(ZEROS.len() as u64) as usize;
        disk.write_at(f, &ZEROS[..n], len)?;
        len += n as u64;
    }
    Ok(())
}

fn read_header(f: &File) -> io::Result<[u8; HEADER_LEN as usize]> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n = f.read_at(&mut h, 0)?;
    if n < h.len() {
        h = [0; HEADER_LEN as usize];
    }
    Ok(h)
}

/// The longest a commit waits for its group to gather. On this project's
/// VM a 4 KiB upload bench with 16 clients did best with a fixed wait of
/// 1 ms (1.15–1.3x against none; 2 ms: 1.05x; 4 ms: 0.6x), as each
/// `fdatasync` then served several uploads instead of one
/// (docs/benchmarks.md).
pub const GATHER_MAX: Duration = Duration::from_millis(1);

/// The committer thread: while someone waits for entries not yet durable,
/// syncs everything appended so far and tells the waiters.
///
/// Group commit: a quick disk syncs faster than the next upload arrives,
/// so syncing at once would cost an `fdatasync` (a disk flush, and on a
/// VM exits to the host) per upload. So a commit waits until as many
/// waiters have come as the groups of late, or [`GATHER_MAX`] passed: the
/// size expected is the last group's, or one less than expected before
/// if that is more. Falling one at a time keeps it from collapsing to
/// one after a single short group (a 16-client bench then synced almost
/// per upload again: 0.48 `fdatasync`s per upload, 0.35 with the slow
/// fall, 0.89 without waits); a lone client's groups are of one, so its
/// commits soon go out at once.
fn committer(journal: Weak<Journal>, commits: Arc<Commits>) {
    loop {
        {
            let mut c = commits.state.lock().unwrap_or_else(|e| e.into_inner());
            while !c.closed && (c.failed || c.requested <= c.synced) {
                if c.requested <= c.synced {
                    // Every waiter counted is served.
                    c.gathered = 0;
                }
                c.committer = Committer::Idle;
                c = commits.work.wait(c).unwrap_or_else(|e| e.into_inner());
                c.committer = Committer::Busy;
            }
            let deadline = Instant::now() + commits.gather_max;
            while !c.closed && c.gathered < c.last_group {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                c.committer = Committer::Gathering;
                c = commits
                    .work
                    .wait_timeout(c, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                c.committer = Committer::Busy;
            }
            if c.closed {
                return;
            }
            let group = std::mem::take(&mut c.gathered);
            c.last_group = group.max(c.last_group.saturating_sub(1));
        }
        let Some(j) = journal.upgrade() else { return };
        let started = Instant::now();
        let r = j.sync_unsynced();
        drop(j);
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            // Every durable change waits for it: a disk this slow shows as
            // stalled uploads, and this line says why.
            tracing::warn!(ms = took.as_millis() as u64, "journal fdatasync was slow");
        }
        match r {
            Ok(upto) => commits.update(|c| c.synced = c.synced.max(upto)),
            Err(e) => {
                tracing::error!(error = %e, "fdatasync of the journal failed: durable changes are refused from now on");
                commits.update(|c| c.failed = true);
            }
        }
    }
}

/// A commit at least this long is logged.
const SLOW_COMMIT: Duration = Duration::from_secs(1);

/// The checkpoint thread: for each full file, [`Journal::sync_store`] then
/// retire it.
/// Failures are retried; appenders wait meanwhile once the active file is
/// full too (back-pressure, never a lost entry).
fn checkpointer(journal: Weak<Journal>, full: mpsc::Receiver<usize>) {
    while let Ok(i) = full.recv() {
        loop {
            let Some(j) = journal.upgrade() else { return };
            let started = Instant::now();
            match j.sync_store().and_then(|()| j.retire(i)) {
                Ok(()) => {
                    tracing::info!(
                        file = i,
                        ms = started.elapsed().as_millis() as u64,
                        "journal checkpoint done"
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal checkpoint failed; retrying in 1 s");
                    drop(j);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::RealDisk;

    /// [`decode`] of `bytes` written to a file.
    fn decode_bytes(bytes: &[u8]) -> Option<(u64, Vec<Entry>)> {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        decode(&f, &read_header(&f).unwrap()).unwrap()
    }

    #[test]
    fn appends_may_wait_while_a_checkpoint_runs() {
        let d = tempfile::tempdir().unwrap();
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let slow_sync = Box::new(move || {
            let _ = gate.lock().unwrap().recv();
            Ok(())
        });
        let (j, _) = Journal::open(d.path(), 256, Arc::new(RealDisk), slow_sync).unwrap();
        j.start().unwrap();
        assert!(!j.may_wait());
        // 48-byte entries: five fill the first 256-byte file, the sixth turns.
        for i in 0..7 {
            j.append(0, i, b"1 C M00/00/00/abcdefgh\n", None).unwrap();
        }
        assert!(j.may_wait(), "the checkpoint is held");
        go.send(()).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while j.may_wait() {
            assert!(
                std::time::Instant::now() < end,
                "the checkpoint never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        j.commit().unwrap();
    }

    /// Counts `fdatasync`s; holds the first until `release` is sent.
    struct HeldDisk {
        syncs: std::sync::atomic::AtomicU64,
        gate: Mutex<Option<mpsc::Receiver<()>>>,
    }

    impl Disk for HeldDisk {
        fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
            std::io::Write::write_all(file, buf)
        }
        fn sync(&self, file: &File) -> io::Result<()> {
            file.sync_all()
        }
        fn sync_data(&self, file: &File) -> io::Result<()> {
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            file.sync_data()
        }
    }

    fn gathered(j: &Journal) -> u64 {
        j.commits.state.lock().unwrap().gathered
    }

    fn upload(j: &Arc<Journal>, i: u64) -> std::thread::JoinHandle<()> {
        let j = j.clone();
        std::thread::spawn(move || {
            j.append(0, i, b"1 C M00/00/00/w\n", None).unwrap();
            j.commit().unwrap();
        })
    }

    fn wait_gathered(j: &Journal, n: u64) {
        let end = Instant::now() + Duration::from_secs(10);
        while gathered(j) < n {
            assert!(Instant::now() < end, "{n} waiters never came");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A journal whose last commit served a group of four (its first, of
    /// one, was held on the disk while they came), with its disk and the
    /// `fdatasync`s done before that first commit.
    fn after_a_group_of_four(d: &Path, gather_max: Duration) -> (Arc<Journal>, Arc<HeldDisk>, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let (release, gate) = mpsc::channel();
        let disk = Arc::new(HeldDisk {
            syncs: Default::default(),
            gate: Mutex::new(None),
        });
        let (j, _) =
            Journal::open_gathering(d, 1 << 20, disk.clone(), Box::new(|| Ok(())), gather_max)
                .unwrap();
        j.start().unwrap();
        let base = disk.syncs.load(SeqCst);
        *disk.gate.lock().unwrap() = Some(gate);
        let first = upload(&j, 0);
        while disk.gate.lock().unwrap().is_some() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let four: Vec<_> = (1..5).map(|i| upload(&j, i)).collect();
        wait_gathered(&j, 4);
        release.send(()).unwrap();
        first.join().unwrap();
        for t in four {
            t.join().unwrap();
        }
        assert_eq!(disk.syncs.load(SeqCst) - base, 2);
        assert_eq!(j.commits.state.lock().unwrap().last_group, 4);
        (j, disk, base)
    }

    /// Group commit: after a commit that served four waiters, the next one
    /// waits for four again (here for up to a minute), then one `fdatasync`
    /// serves them all.
    #[test]
    fn a_commit_waits_for_as_many_waiters_as_the_last_one_served() {
        use std::sync::atomic::Ordering::SeqCst;
        let d = tempfile::tempdir().unwrap();
        let (j, disk, base) = after_a_group_of_four(d.path(), Duration::from_secs(60));
        // Three waiters are not enough for the next commit...
        let three: Vec<_> = (5..8).map(|i| upload(&j, i)).collect();
        wait_gathered(&j, 3);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(disk.syncs.load(SeqCst) - base, 2, "committed a short group");
        assert!(three.iter().all(|t| !t.is_finished()));
        // ...the fourth is (it wakes the committer: no waiting out the
        // 60 s), and one fdatasync serves all four.
        let started = Instant::now();
        let fourth = upload(&j, 8);
        for t in three.into_iter().chain([fourth]) {
            t.join().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(disk.syncs.load(SeqCst) - base, 3);
    }

    /// When fewer come, the size waited for falls by one per commit (each
    /// waits out the gathering time), down to a lone waiter's one.
    #[test]
    fn the_group_waited_for_shrinks_one_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let (j, _, _) = after_a_group_of_four(d.path(), Duration::from_millis(20));
        let mut sizes = Vec::new();
        for i in 5..10 {
            upload(&j, i).join().unwrap();
            sizes.push(j.commits.state.lock().unwrap().last_group);
        }
        assert_eq!(sizes, [3, 2, 1, 1, 1]);
    }

    /// A lone client's commits never wait for a group.
    #[test]
    fn a_lone_waiter_is_served_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open_gathering(
            d.path(),
            1 << 20,
            Arc::new(RealDisk),
            Box::new(|| Ok(())),
            Duration::from_secs(60),
        )
        .unwrap();
        j.start().unwrap();
        let started = Instant::now();
        for i in 0..20 {
            j.append(0, i, b"1 C M00/00/00/w\n", None).unwrap();
            j.commit().unwrap();
        }
        // A wait for a group would take a minute each.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// Many uploads appending and waiting for their commit at once, on a
    /// busy machine: every wait must end. (Async waiters once hung at the
    /// end of a burst: a request's copy of the commit state, sent late,
    /// overtook the committer's newer one.)
    #[test]
    fn every_async_wait_for_a_commit_ends() {
        let d = tempfile::tempdir().unwrap();
        let (j, _) =
            Journal::open(d.path(), 8 << 20, Arc::new(RealDisk), Box::new(|| Ok(()))).unwrap();
        j.start().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Busy threads: the waiters get preempted at any point, as on a
        // loaded server (the hang above needed that).
        let _busy = Spinners::start(4);
        rt.block_on(async {
            // Bursts: a hang shows at the end of one, when no later commit
            // comes to wake a forgotten waiter.
            for burst in 0..1000u64 {
                let tasks: Vec<_> = (0..6u64)
                    .map(|t| {
                        let j = j.clone();
                        tokio::spawn(async move {
                            j.append(0, burst * 10 + t, b"1 C M00/00/00/w\n", None)
                                .unwrap();
                            let ticket = j.ticket();
                            tokio::time::timeout(Duration::from_secs(5), j.durable(ticket))
                                .await
                                .unwrap_or_else(|_| {
                                    panic!("burst {burst}: the wait for {ticket} never ended")
                                })
                                .unwrap();
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
        });
    }

    /// Threads that burn CPU until dropped (also when a test panics).
    struct Spinners {
        stop: Arc<std::sync::atomic::AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Spinners {
        fn start(n: usize) -> Spinners {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let threads = (0..n)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            Spinners { stop, threads }
        }
    }

    impl Drop for Spinners {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn a_reused_file_never_replays_the_entries_of_an_earlier_life() {
        let d = tempfile::tempdir().unwrap();
        // journal.0 retired with three entries of generation 1 in it, of
        // the size of the new entry below (so they would line up after it).
        let mut old = header(RETIRED, 1).to_vec();
        for i in 0..3u64 {
            old.extend_from_slice(&encode_entry(1, 0, i, b"1 C M00/00/00/x\n", Some(b"x")));
        }
        std::fs::write(journal_path(d.path(), 0), &old).unwrap();
        let (j, pending) =
            Journal::open(d.path(), 1 << 20, Arc::new(RealDisk), Box::new(|| Ok(()))).unwrap();
        assert!(pending.is_empty());
        j.start().unwrap();
        // Both files are written out to their full size when it starts.
        for i in 0..2 {
            let len = std::fs::metadata(journal_path(d.path(), i)).unwrap().len();
            assert_eq!(len, 1 << 20);
        }
        j.append(0, 0, b"2 C M00/00/00/y\n", Some(b"y")).unwrap();
        j.commit().unwrap();
        drop(j);
        let bytes = std::fs::read(journal_path(d.path(), 0)).unwrap();
        let (g, entries) = decode_bytes(&bytes).unwrap();
        assert_eq!(g, 2);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].image.as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn a_new_file_size_applies_after_the_redo_of_the_old_files() {
        let d = tempfile::tempdir().unwrap();
        let open =
            |size| Journal::open(d.path(), size, Arc::new(RealDisk), Box::new(|| Ok(()))).unwrap();
        let (j, _) = open(2 << 20);
        j.start().unwrap();
        j.append(0, 0, b"1 C M00/00/00/z\n", Some(b"zz")).unwrap();
        j.commit().unwrap();
        drop(j);
        for (size, pending) in [(1 << 20, 1), (3 << 20, 0)] {
            let (j, redo) = open(size);
            assert_eq!(
                redo.len(),
                pending,
                "entries found before resizing to {size}"
            );
            j.start().unwrap();
            for i in 0..2 {
                let len = std::fs::metadata(journal_path(d.path(), i)).unwrap().len();
                assert_eq!(len, size, "journal.{i}");
            }
        }
    }

    #[test]
    fn entries_round_trip_and_replay_stops_at_a_torn_or_stale_one() {
        let mut file = header(MAGIC, 7).to_vec();
        let a = encode_entry(7, 0, 0, b"1 C M00/00/00/a\n", Some(b"hello"));
        let b = encode_entry(7, 0, 17, b"2 D M00/00/00/a\n", None);
        file.extend_from_slice(&a);
        file.extend_from_slice(&b);
        let (g, entries) = decode_bytes(&file).unwrap();
        assert_eq!(g, 7);
        assert_eq!(
            entries,
            [
                Entry {
                    binlog_index: 0,
                    binlog_offset: 0,
                    line: b"1 C M00/00/00/a\n".to_vec(),
                    image: Some(b"hello".to_vec()),
                },
                Entry {
                    binlog_index: 0,
                    binlog_offset: 17,
                    line: b"2 D M00/00/00/a\n".to_vec(),
                    image: None,
                },
            ]
        );
        // An entry of generation 6 left after them is not replayed.
        let mut stale = file.clone();
        stale.extend_from_slice(&encode_entry(6, 0, 34, b"3 D x\n", None));
        assert_eq!(decode_bytes(&stale).unwrap().1.len(), 2);
        // Nor a torn one.
        let mut torn = file.clone();
        let c = encode_entry(7, 0, 34, b"3 D x\n", None);
        torn.extend_from_slice(&c[..c.len() - 1]);
        assert_eq!(decode_bytes(&torn).unwrap().1.len(), 2);
        // Nor one whose length is garbage (nothing of that size is read).
        let mut huge = file.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(decode_bytes(&huge).unwrap().1.len(), 2);
        // A retired file holds nothing, and keeps its generation.
        let mut retired = file;
        retired[..16].copy_from_slice(&header(RETIRED, 7));
        assert!(decode_bytes(&retired).is_none());
        assert_eq!(generation_of(&retired), 7);
    }
}

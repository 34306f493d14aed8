//! The sender worker towards one peer: replays this server's binlog from
//! the peer's mark and pushes each selected record with the §6.4 command.
//!
//! Life of a worker:
//! 1. Wait until the peer can receive: ACTIVE, or — when this server is
//!    its full-sync source — WAIT_SYNC/SYNCING. A new peer (no mark file
//!    yet) waits while INIT/OFFLINE/ONLINE, then asks the trackers who its
//!    source is (SYNC_SRC_REQ): the source replays from the start (and
//!    reports the peer SYNCING, then OFFLINE at the end), the others skip
//!    to the cut-off.
//! 2. Connect, send REPORT_SERVER_ID, then one command per record. The
//!    content sent is always the file's *current* content, so a replay
//!    converges on the source's state; when the peer lacks the base of a
//!    change (ENOENT, or EAGAIN for a size mismatch) the whole file is sent
//!    with SYNC_UPDATE_FILE.
//! 3. At the end of the binlog wait for the appender's notification (or
//!    `sync_wait_msec`), keeping the connection alive with ACTIVE_TEST.
//!
//! Connection failures are retried with capped exponential backoff from
//! the in-memory position; a record the peer keeps refusing is skipped
//! after a few tries and counted. The mark file is rewritten every
//! `write_mark_file_freq` records, at binlog rotation and when idle.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use fdfs_proto::binlog::{BinlogOp, BinlogRecord};
use fdfs_proto::server::{status, StorageBrief};
use fdfs_proto::sync::{
    LogicNameOrMeta, ReportServerId, SyncDelete, SyncFileHead, SyncRangeHead, SyncTruncate,
    SyncTwoNames,
};
use fdfs_proto::{cmd, errno, FileKind};
use fdfs_runtime::Shutdown;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::filter::Rules;
use super::link::Link;
use super::mark::Mark;
use super::{apply, blocking, maybe_blocking, SyncService, SMALL};
use crate::store::binlog::{BinlogReader, ReadItem};
use crate::store::{now, StoreError};

/// Chunk size for outgoing content.
const CHUNK: usize = 256 * 1024;
/// How often to re-check the peer's status while waiting for it.
const STATUS_POLL: Duration = Duration::from_millis(100);
/// While caught up, the mark file is rewritten at most this often.
const MARK_IDLE_SAVE: Duration = Duration::from_millis(500);
/// A record refused this many times in a row is skipped.
const MAX_REFUSALS: u32 = 3;

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("peer refused {what} with status {status} ({name})")]
    Refused {
        what: &'static str,
        status: u8,
        name: &'static str,
    },
    #[error("{0}")]
    Other(String),
    /// The peer left the states we may sync in (e.g. OFFLINE right after
    /// its full sync, or stopped): not a failure, wait for it again.
    #[error("peer is {} now", status::name(*.0))]
    PeerNotReady(u8),
    #[error("stopped")]
    Stopped,
}

fn refused(what: &'static str, status: u8) -> SyncError {
    SyncError::Refused {
        what,
        status,
        name: errno::describe(status).0,
    }
}

/// Creates sent ahead of their replies, at most.
const PIPELINE_DEPTH: usize = 64;

/// A record read from the binlog and not yet settled.
struct InFlight {
    index: u32,
    next_offset: u64,
    pending: Pending,
}

/// What a record still waits for before the mark may pass it.
enum Pending {
    /// The reply to a request already sent.
    Reply { what: &'static str, name: String },
    /// Sent and answered.
    Sent,
    /// Nothing was sent: unreadable, gone here, or refused too often.
    Skipped,
    /// Not for this peer.
    Passed,
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Sent,
    /// Nothing to send (the file is gone here; a later record covers it).
    Gone,
}

/// The worker for one peer.
pub struct Worker {
    svc: Arc<SyncService>,
    peer_id: String,
    shutdown: Shutdown,
    stop: Shutdown,
    /// Position and full-sync state (the mark file's content).
    mark: Option<Mark>,
    /// Records since the mark file was last written.
    unsaved: u32,
    /// When the mark file was last written.
    saved_at: Instant,
    /// Consecutive refusals of the record at the current position.
    refusals: u32,
    /// Appender files whose appends were skipped because they vanished
    /// here (renamed): after their rename the whole file is re-sent.
    stale: HashSet<String>,
    /// When the end of this peer's full sync was last reported.
    offline_reported: Option<Instant>,
}

impl Worker {
    pub fn new(
        svc: Arc<SyncService>,
        peer_id: String,
        shutdown: Shutdown,
        stop: Shutdown,
    ) -> Worker {
        Worker {
            svc,
            peer_id,
            shutdown,
            stop,
            mark: None,
            unsaved: 0,
            saved_at: Instant::now(),
            refusals: 0,
            stale: HashSet::new(),
            offline_reported: None,
        }
    }

    fn stopped(&self) -> bool {
        self.shutdown.is_triggered() || self.stop.is_triggered()
    }

    /// Sleeps `d`; `Err(Stopped)` if asked to stop meanwhile.
    async fn sleep(&self, d: Duration) -> Result<(), SyncError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.shutdown.wait() => Err(SyncError::Stopped),
            _ = self.stop.wait() => Err(SyncError::Stopped),
        }
    }

    fn set_state(&self, state: &'static str) {
        self.svc.status.update(&self.peer_id, |s| s.state = state);
    }

    fn peer(&self) -> Option<StorageBrief> {
        self.svc.peer(&self.peer_id)
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(self.svc.conf.backoff_min, self.svc.conf.backoff_max);
        loop {
            if self.stopped() {
                break;
            }
            let mut progressed = false;
            // Stopping abandons a request in flight (the peer may be
            // stalled): the position in memory is still the last record
            // the peer confirmed.
            let (sd, stop) = (self.shutdown.clone(), self.stop.clone());
            let r = tokio::select! {
                r = self.session(&mut progressed) => r,
                _ = sd.wait() => Err(SyncError::Stopped),
                _ = stop.wait() => Err(SyncError::Stopped),
            };
            match r {
                Err(SyncError::Stopped) => break,
                // Reconnect at once (the sync window reopened).
                Ok(()) => backoff.reset(),
                Err(SyncError::PeerNotReady(st)) => {
                    debug!(worker = "sync", peer = %self.peer_id, status = status::name(st), "peer not ready; waiting for it");
                    backoff.reset();
                }
                Err(e) => {
                    if progressed {
                        backoff.reset();
                    }
                    let d = backoff.fail();
                    let msg = e.to_string();
                    let lag = self.backlog_lag();
                    self.svc.status.update(&self.peer_id, |s| {
                        s.last_error = Some(msg.clone());
                        s.state = "backoff";
                        s.lag_secs = lag;
                    });
                    if backoff.failures() <= 3 || backoff.failures() % 20 == 0 {
                        warn!(worker = "sync", peer = %self.peer_id, retry_in = ?d, "sync session ended: {msg}");
                    } else {
                        debug!(worker = "sync", peer = %self.peer_id, retry_in = ?d, "sync session ended: {msg}");
                    }
                    if self.sleep(d).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.save_mark();
        self.set_state("stopped");
    }

    fn save_mark(&mut self) {
        let (Some(m), Some(p)) = (self.mark.as_ref(), self.peer()) else {
            return;
        };
        if matches!(p.status, status::DELETED | status::IP_CHANGED) {
            // The manager removes this peer's mark; do not bring it back.
            return;
        }
        let path = self.svc.mark_path(&p);
        if let Err(e) = m.save(&path) {
            warn!(worker = "sync", peer = %self.peer_id, "writing {}: {e}", path.display());
        }
        self.unsaved = 0;
        self.saved_at = Instant::now();
    }

    /// Age of the next record not yet read for this peer (0 if none): the
    /// lag shown while the peer cannot be reached.
    fn backlog_lag(&self) -> u64 {
        let Some(m) = &self.mark else { return 0 };
        let mut r = BinlogReader::new(
            self.svc.store.binlog().dir(),
            m.binlog_index,
            m.binlog_offset,
        );
        match blocking(|| r.next_item()) {
            Ok(Some(ReadItem {
                record: Ok(rec), ..
            })) => u64::from(now().saturating_sub(rec.timestamp)),
            _ => 0,
        }
    }

    /// Waits until the peer's status is in `ok`. A deleted or vanished
    /// peer stops the worker (the manager forgets it).
    async fn wait_status(&self, ok: impl Fn(u8) -> bool) -> Result<StorageBrief, SyncError> {
        let lag = self.backlog_lag();
        self.svc.status.update(&self.peer_id, |s| {
            s.state = "waiting";
            s.lag_secs = lag;
        });
        loop {
            match self.peer() {
                Some(p) if ok(p.status) => return Ok(p),
                Some(p) if matches!(p.status, status::DELETED | status::IP_CHANGED) => {
                    return Err(SyncError::Stopped)
                }
                None => return Err(SyncError::Stopped),
                _ => {}
            }
            self.sleep(STATUS_POLL).await?;
        }
    }

    /// The mark: from memory, from the file, or — first contact with this
    /// peer — worked out with the trackers.
    async fn ensure_mark(&mut self) -> Result<Mark, SyncError> {
        if let Some(m) = &self.mark {
            return Ok(m.clone());
        }
        let peer = self.peer().ok_or(SyncError::Stopped)?;
        let path = self.svc.mark_path(&peer);
        if let Some(m) = Mark::load(&path)? {
            info!(worker = "sync", peer = %self.peer_id, index = m.binlog_index, offset = m.binlog_offset, "resuming from the mark file");
            self.mark = Some(m.clone());
            return Ok(m);
        }
        // A peer we never synced to: wait until it is past INIT/OFFLINE/
        // ONLINE (a new server waits for its source assignment).
        let peer = self
            .wait_status(|s| !matches!(s, status::INIT | status::OFFLINE | status::ONLINE))
            .await?;
        let me = self.svc.my_id();
        let info = self
            .svc
            .trackers()
            .sync_src(self.svc.store.group(), &peer.id)
            .await
            .map_err(SyncError::Other)?;
        let m = match info {
            Some(i) if i.src_id == me => {
                info!(worker = "sync", peer = %peer.id, until = i.until_timestamp, "this server is the full-sync source");
                Mark {
                    need_sync_old: true,
                    until_timestamp: i.until_timestamp,
                    ..Mark::default()
                }
            }
            Some(i) => {
                info!(worker = "sync", peer = %peer.id, src = %i.src_id, until = i.until_timestamp, "another server is the full-sync source; skipping to the cut-off");
                Mark {
                    until_timestamp: i.until_timestamp,
                    ..Mark::default()
                }
            }
            None => Mark::default(),
        };
        m.save(&path)?;
        self.mark = Some(m.clone());
        Ok(m)
    }

    async fn session(&mut self, progressed: &mut bool) -> Result<(), SyncError> {
        let mark = self.ensure_mark().await?;
        let mut rules = Rules::from_mark(&mark);
        // The source of a new server serves it while it waits for / goes
        // through the full sync; everybody else waits for ACTIVE.
        let peer = if rules.is_source {
            self.wait_status(|s| matches!(s, status::WAIT_SYNC | status::SYNCING | status::ACTIVE))
                .await?
        } else {
            self.wait_status(|s| s == status::ACTIVE).await?
        };
        self.wait_window().await?;

        let addr: SocketAddr = format!("{}:{}", peer.ip, peer.port).parse().map_err(|_| {
            SyncError::Other(format!(
                "peer address {}:{} is not an IP",
                peer.ip, peer.port
            ))
        })?;
        self.svc.status.update(&self.peer_id, |s| {
            s.peer_addr = addr.to_string();
            s.state = "connecting";
        });
        let conf = &self.svc.conf;
        let mut link = Link::connect(
            addr,
            conf.bind_ip,
            conf.connect_timeout,
            conf.network_timeout,
        )
        .await?;
        let mut body = Vec::new();
        ReportServerId {
            id: self.svc.my_id(),
        }
        .encode(&mut body);
        let (st, _) = link.call(cmd::storage::REPORT_SERVER_ID, &body).await?;
        if st != 0 {
            return Err(refused("REPORT_SERVER_ID", st));
        }
        if rules.full_sync && peer.status == status::WAIT_SYNC {
            self.svc
                .trackers()
                .report_status(self.svc.store.group(), &peer, status::SYNCING)
                .await;
        }
        self.svc.status.update(&self.peer_id, |s| {
            s.last_error = None;
        });

        let mut reader = BinlogReader::new(
            self.svc.store.binlog().dir(),
            mark.binlog_index,
            mark.binlog_offset,
        );
        let mut wake = self.svc.wake.clone();
        let mut last_io = Instant::now();
        // Records read but not yet settled, in binlog order: creates sent
        // without waiting for their replies, and the records behind them.
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        // Pipelining keeps `sync_interval`'s pacing out of the picture.
        let depth = if self.svc.conf.sync_interval.is_zero() {
            PIPELINE_DEPTH
        } else {
            0
        };
        loop {
            if self.stopped() {
                return Err(SyncError::Stopped);
            }
            if !self
                .svc
                .conf
                .window
                .contains(super::window::local_secs_of_day())
            {
                // Hold changes back: drop the connection until it opens.
                self.settle(&mut link, &mut inflight, 0, progressed).await?;
                self.save_mark();
                link.quit().await;
                self.wait_window().await?;
                return Ok(());
            }
            // Mark the current position as seen before reading, so a wake
            // that arrives while we read is not lost.
            wake.borrow_and_update();
            // A record is a line of the page-cached binlog: read inline.
            let item = reader.next_item()?;
            let Some(item) = item else {
                // Caught up.
                self.settle(&mut link, &mut inflight, 0, progressed).await?;
                if rules.full_sync {
                    self.finish_full_sync(&peer);
                    rules = Rules::from_mark(self.mark.as_ref().expect("mark set"));
                }
                if rules.is_source {
                    self.report_done().await;
                }
                // A peer that keeps up reaches the end after every file:
                // write the mark at most every MARK_IDLE_SAVE then (the
                // fallback poll brings us back here), not once per file. A
                // crash resends at most that much, which the peer absorbs.
                if self.unsaved > 0 && self.saved_at.elapsed() >= MARK_IDLE_SAVE {
                    self.save_mark();
                }
                self.svc.status.update(&self.peer_id, |s| {
                    s.state = "idle";
                    s.lag_secs = 0;
                });
                self.idle(&mut link, &mut wake, &mut last_io).await?;
                continue;
            };
            let mut pending = Pending::Passed;
            match &item.record {
                Err((line, e)) => {
                    warn!(worker = "sync", peer = %self.peer_id, index = item.index, offset = item.offset, "skipping an unreadable binlog record {line:?}: {e}");
                    pending = Pending::Skipped;
                }
                Ok(rec) if rules.wants(rec) => {
                    let lag = u64::from(now().saturating_sub(rec.timestamp));
                    self.svc.status.update(&self.peer_id, |s| {
                        s.state = if rules.full_sync {
                            "full-sync"
                        } else {
                            "syncing"
                        };
                        s.lag_secs = lag;
                    });
                    if depth > 0 && rec.op == BinlogOp::Create {
                        // Creates, most of any binlog, are pipelined: the
                        // peer answers them in order, and a resent create
                        // is answered EEXIST, so a broken session simply
                        // resumes from the last one answered.
                        let name = rec.filename.as_str();
                        pending = match self
                            .request_file(&mut link, name, rec.timestamp, false)
                            .await?
                        {
                            Sent::Sent => Pending::Reply {
                                what: "SYNC_CREATE_FILE",
                                name: name.to_owned(),
                            },
                            Sent::Gone => {
                                debug!(worker = "sync", peer = %self.peer_id, record = %rec, "file gone here; record skipped");
                                Pending::Skipped
                            }
                        };
                    } else {
                        self.settle(&mut link, &mut inflight, 0, progressed).await?;
                        pending = match self.send_record(&mut link, rec).await {
                            Ok(Sent::Sent) => Pending::Sent,
                            Ok(Sent::Gone) => {
                                debug!(worker = "sync", peer = %self.peer_id, record = %rec, "file gone here; record skipped");
                                Pending::Skipped
                            }
                            Err(SyncError::Refused { what, status, .. }) => {
                                self.count_refusal(what, status, &rec.to_string())?
                            }
                            Err(e) => return Err(e),
                        };
                    }
                    last_io = Instant::now();
                }
                Ok(_) => {}
            }
            let paced = depth == 0 && matches!(pending, Pending::Sent);
            inflight.push_back(InFlight {
                index: item.index,
                next_offset: item.next_offset,
                pending,
            });
            self.settle(&mut link, &mut inflight, depth, progressed)
                .await?;
            if paced {
                self.sleep(self.svc.conf.sync_interval).await?;
            }
        }
    }

    /// Counts a refusal of the record at the current position: an error
    /// (the session restarts and retries it) until it was refused
    /// [`MAX_REFUSALS`] times in a row, then the record is skipped.
    fn count_refusal(
        &mut self,
        what: &'static str,
        status: u8,
        record: &str,
    ) -> Result<Pending, SyncError> {
        self.refusals += 1;
        let name = errno::describe(status).0;
        if self.refusals < MAX_REFUSALS {
            return Err(SyncError::Refused { what, status, name });
        }
        warn!(worker = "sync", peer = %self.peer_id, record, "peer refused {what} {} times (status {status} {name}); skipping the record", self.refusals);
        Ok(Pending::Skipped)
    }

    /// Settles records from the front of `inflight` until at most `keep`
    /// remain, reading the replies of pipelined requests in order, and
    /// moves the mark past each settled record. Records that await no
    /// reply are settled as soon as everything before them is.
    async fn settle(
        &mut self,
        link: &mut Link,
        inflight: &mut VecDeque<InFlight>,
        keep: usize,
        progressed: &mut bool,
    ) -> Result<(), SyncError> {
        while let Some(front) = inflight.front() {
            let waits = matches!(front.pending, Pending::Reply { .. });
            if waits && inflight.len() <= keep {
                return Ok(());
            }
            let f = inflight.pop_front().expect("front exists");
            let (sent, skipped) = match f.pending {
                Pending::Reply { what, name } => {
                    let (st, _) = link.reply().await?;
                    match st {
                        errno::OK | errno::EEXIST => (true, false),
                        st => {
                            self.count_refusal(what, st, &name)?;
                            (false, true)
                        }
                    }
                }
                Pending::Sent => (true, false),
                Pending::Skipped => (false, true),
                Pending::Passed => (false, false),
            };
            self.advance(f.index, f.next_offset, sent, skipped);
            *progressed = true;
        }
        Ok(())
    }

    /// The peer has (or needs nothing of) every record before
    /// `index`/`next_offset`: move the mark there.
    fn advance(&mut self, index: u32, next_offset: u64, sent: bool, skipped: bool) {
        self.refusals = 0;
        let m = self.mark.as_mut().expect("mark set");
        let rotated = index != m.binlog_index;
        m.scan_row_count += 1;
        m.binlog_index = index;
        m.binlog_offset = next_offset;
        if sent {
            m.sync_row_count += 1;
        }
        let (index, offset) = (m.binlog_index, m.binlog_offset);
        if skipped {
            self.svc.acks.skipped(&self.peer_id, (index, offset));
        } else {
            self.svc.acks.update(&self.peer_id, (index, offset));
        }
        self.svc.status.update(&self.peer_id, |s| {
            s.binlog_index = index;
            s.binlog_offset = offset;
            if sent {
                s.records_sent += 1;
            }
            if skipped {
                s.records_skipped += 1;
            }
        });
        self.unsaved += 1;
        if rotated || self.unsaved >= self.svc.conf.write_mark_freq {
            self.save_mark();
        }
    }

    /// Waits for the window to open (not a failure).
    async fn wait_window(&self) -> Result<(), SyncError> {
        loop {
            let d = self.svc.conf.window.wait_now();
            if d.is_zero() {
                return Ok(());
            }
            self.set_state("window-closed");
            debug!(worker = "sync", peer = %self.peer_id, wait = ?d, "outside the sync window");
            // Re-check at least every minute (clock changes, restarts).
            self.sleep(d.min(Duration::from_secs(60))).await?;
        }
    }

    /// End of the full sync: persist it.
    fn finish_full_sync(&mut self, peer: &StorageBrief) {
        let m = self.mark.as_mut().expect("mark set");
        m.sync_old_done = true;
        info!(worker = "sync", peer = %peer.id, records = m.sync_row_count, "full sync done");
        self.save_mark();
    }

    /// Tells the trackers the peer's full sync is over (OFFLINE; its next
    /// beat makes it ACTIVE) while they still list it WAIT_SYNC/SYNCING:
    /// repeated every few seconds if a report got lost.
    async fn report_done(&mut self) {
        let Some(peer) = self.peer() else { return };
        if !matches!(peer.status, status::WAIT_SYNC | status::SYNCING) {
            return;
        }
        if self
            .offline_reported
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.offline_reported = Some(Instant::now());
        self.svc
            .trackers()
            .report_status(self.svc.store.group(), &peer, status::OFFLINE)
            .await;
    }

    /// Caught up: wait for the binlog to grow (or the fallback poll),
    /// keeping the connection alive; returns to re-read the binlog. Also
    /// returns an error if the peer left the states we may sync in.
    async fn idle(
        &self,
        link: &mut Link,
        wake: &mut tokio::sync::watch::Receiver<u64>,
        last_io: &mut Instant,
    ) -> Result<(), SyncError> {
        let keepalive = (self.svc.conf.network_timeout / 3).max(Duration::from_millis(200));
        let wait = self.svc.conf.sync_wait.max(Duration::from_millis(1));
        tokio::select! {
            r = wake.changed() => {
                if r.is_err() {
                    // The binlog is gone (shutdown): fall back to polling.
                    self.sleep(wait).await?;
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::time::sleep_until(*last_io + keepalive) => {
                let (st, _) = link.call(cmd::ACTIVE_TEST, &[]).await?;
                if st != 0 {
                    return Err(refused("ACTIVE_TEST", st));
                }
                *last_io = Instant::now();
            }
            _ = self.shutdown.wait() => return Err(SyncError::Stopped),
            _ = self.stop.wait() => return Err(SyncError::Stopped),
        }
        match self.peer() {
            Some(p)
                if matches!(
                    p.status,
                    status::ACTIVE | status::WAIT_SYNC | status::SYNCING
                ) =>
            {
                Ok(())
            }
            Some(p) => Err(SyncError::PeerNotReady(p.status)),
            None => Err(SyncError::Stopped),
        }
    }

    /// Sends one record; see the module docs for the fallbacks.
    async fn send_record(
        &mut self,
        link: &mut Link,
        rec: &BinlogRecord,
    ) -> Result<Sent, SyncError> {
        let name = rec.filename.as_str();
        let ts = rec.timestamp;
        match &rec.op {
            BinlogOp::Create => self.send_file(link, name, ts, false).await,
            BinlogOp::Update => self.send_file(link, name, ts, true).await,
            BinlogOp::Delete => {
                let mut b = Vec::new();
                SyncDelete {
                    timestamp: ts,
                    group: self.svc.store.group().clone(),
                    filename: LogicNameOrMeta(name.to_owned()),
                }
                .encode(&mut b);
                let (st, _) = link.call(cmd::storage::SYNC_DELETE_FILE, &b).await?;
                match st {
                    errno::OK | errno::ENOENT => Ok(Sent::Sent),
                    st => Err(refused("SYNC_DELETE_FILE", st)),
                }
            }
            BinlogOp::Append { offset, length } => {
                self.send_range(link, name, ts, *offset, *length, true)
                    .await
            }
            BinlogOp::Modify { offset, length } => {
                self.send_range(link, name, ts, *offset, *length, false)
                    .await
            }
            BinlogOp::Truncate { old_size, new_size } => {
                if !self.local_exists(name) {
                    self.vanished(name);
                    return Ok(Sent::Gone);
                }
                let mut b = Vec::new();
                SyncTruncate {
                    old_size: *old_size,
                    new_size: *new_size,
                    timestamp: ts,
                    group: self.svc.store.group().clone(),
                    filename: LogicNameOrMeta(name.to_owned()),
                }
                .encode(&mut b);
                let (st, _) = link.call(cmd::storage::SYNC_TRUNCATE_FILE, &b).await?;
                match st {
                    errno::OK | errno::EEXIST => Ok(Sent::Sent),
                    errno::ENOENT | errno::EAGAIN => self.send_file(link, name, ts, true).await,
                    st => Err(refused("SYNC_TRUNCATE_FILE", st)),
                }
            }
            BinlogOp::Link { target } => {
                let b = self.two_names(ts, name, target);
                let (st, _) = link.call(cmd::storage::SYNC_CREATE_LINK, &b).await?;
                match st {
                    errno::OK | errno::EEXIST | errno::ENOENT => Ok(Sent::Sent),
                    st => Err(refused("SYNC_CREATE_LINK", st)),
                }
            }
            BinlogOp::Rename { old } => {
                let b = self.two_names(ts, name, old);
                // Upstream answers success with an echo of the request
                // body (§12.2): any body is accepted.
                let (st, _) = link.call(cmd::storage::SYNC_RENAME_FILE, &b).await?;
                match st {
                    errno::OK | errno::EEXIST => {
                        if self.stale.remove(old.as_str()) {
                            // Changes to the appender were skipped here
                            // after it was renamed: send the final file.
                            return self.send_file(link, name, ts, true).await;
                        }
                        Ok(Sent::Sent)
                    }
                    errno::ENOENT => self.send_file(link, name, ts, false).await,
                    st => Err(refused("SYNC_RENAME_FILE", st)),
                }
            }
        }
    }

    /// The body of SYNC_CREATE_LINK (`name` the link, `other` its target)
    /// and of SYNC_RENAME_FILE (`name` the new name, `other` the old one).
    fn two_names(&self, ts: u32, name: &str, other: &str) -> Vec<u8> {
        let mut b = Vec::new();
        SyncTwoNames {
            timestamp: ts,
            group: self.svc.store.group().clone(),
            first: LogicNameOrMeta(name.to_owned()),
            second: LogicNameOrMeta(other.to_owned()),
        }
        .encode(&mut b);
        b
    }

    /// Remembers a file that vanished here (bounded: it only matters for
    /// appenders renamed while their changes were in flight).
    fn vanished(&mut self, name: &str) {
        if self.stale.len() >= 100_000 {
            self.stale.clear();
        }
        self.stale.insert(name.to_owned());
    }

    fn local_exists(&self, name: &str) -> bool {
        apply::path_of(&self.svc.store, name)
            .and_then(|(l, _)| self.svc.store.holds(&l))
            .unwrap_or(false)
    }

    /// The file's content here: (file, where it starts, size). It starts
    /// past the header for a file in a trunk slot.
    fn open_local(&self, name: &str) -> Result<Option<(File, u64, u64)>, SyncError> {
        let (logic, path) = match apply::path_of(&self.svc.store, name) {
            Ok(x) => x,
            // A name this server cannot hold (other subdir count...): the
            // record can never be sent.
            Err(e) => {
                warn!(worker = "sync", peer = %self.peer_id, "binlog names {name:?}: {e}");
                return Ok(None);
            }
        };
        if let FileKind::Trunk(slot) = logic.kind {
            return match self.svc.store.open_slot(&logic, &slot) {
                Ok(s) => Ok(Some((s.file, s.start, s.size))),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(SyncError::Other(e.to_string())),
            };
        }
        match File::open(&path) {
            Ok(f) => {
                let m = f.metadata()?;
                if !m.is_file() {
                    return Ok(None);
                }
                Ok(Some((f, 0, m.len())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// SYNC_CREATE_FILE / SYNC_UPDATE_FILE with the file's current content.
    async fn send_file(
        &mut self,
        link: &mut Link,
        name: &str,
        ts: u32,
        update: bool,
    ) -> Result<Sent, SyncError> {
        if self.request_file(link, name, ts, update).await? == Sent::Gone {
            return Ok(Sent::Gone);
        }
        let (st, _) = link.reply().await?;
        match st {
            errno::OK | errno::EEXIST => Ok(Sent::Sent),
            st => Err(refused(
                if update {
                    "SYNC_UPDATE_FILE"
                } else {
                    "SYNC_CREATE_FILE"
                },
                st,
            )),
        }
    }

    /// Sends the request of [`Self::send_file`] without reading its reply.
    async fn request_file(
        &mut self,
        link: &mut Link,
        name: &str,
        ts: u32,
        update: bool,
    ) -> Result<Sent, SyncError> {
        let Some((mut file, start, size)) = self.open_local(name)? else {
            self.vanished(name);
            return Ok(Sent::Gone);
        };
        let fname = LogicNameOrMeta(name.to_owned());
        let small = size <= CHUNK as u64;
        let mut head = Vec::with_capacity(
            SyncFileHead::LEN + name.len() + if small { size as usize } else { 0 },
        );
        SyncFileHead {
            name_len: name.len(),
            file_size: size,
            timestamp: ts,
            group: self.svc.store.group().clone(),
        }
        .encode(&fname, &mut head);
        let code = if update {
            cmd::storage::SYNC_UPDATE_FILE
        } else {
            cmd::storage::SYNC_CREATE_FILE
        };
        if small {
            // Head and content in one write: one segment for a small file.
            let at = head.len();
            head.resize(at + size as usize, 0);
            if let Err(e) = file.read_exact_at(&mut head[at..], start) {
                return Err(SyncError::Io(if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(e.kind(), "file shrank while being sent")
                } else {
                    e
                }));
            }
            link.start(code, 0, head.len() as u64, &[&head]).await?;
        } else {
            link.start(code, 0, head.len() as u64 + size, &[&head])
                .await?;
            stream_file(link, &mut file, start, size).await?;
        }
        Ok(Sent::Sent)
    }

    /// SYNC_APPEND_FILE / SYNC_MODIFY_FILE with the range's current bytes.
    async fn send_range(
        &mut self,
        link: &mut Link,
        name: &str,
        ts: u32,
        offset: u64,
        length: u64,
        append: bool,
    ) -> Result<Sent, SyncError> {
        let opened = self.open_local(name)?;
        // Appenders only: never in a trunk slot, their content starts at 0.
        let Some((mut file, _, size)) = opened else {
            self.vanished(name);
            return Ok(Sent::Gone);
        };
        if size < offset + length {
            // Truncated since: the whole current file says it all.
            drop(file);
            return self.send_file(link, name, ts, true).await;
        }
        let fname = LogicNameOrMeta(name.to_owned());
        let mut head = Vec::with_capacity(SyncRangeHead::LEN + name.len());
        SyncRangeHead {
            name_len: name.len(),
            offset,
            length,
            timestamp: ts,
            group: self.svc.store.group().clone(),
        }
        .encode(&fname, &mut head);
        let code = if append {
            cmd::storage::SYNC_APPEND_FILE
        } else {
            cmd::storage::SYNC_MODIFY_FILE
        };
        link.start(code, 0, head.len() as u64 + length, &[&head])
            .await?;
        stream_file(link, &mut file, offset, length).await?;
        let (st, _) = link.reply().await?;
        match st {
            errno::OK | errno::EEXIST => Ok(Sent::Sent),
            errno::ENOENT | errno::EAGAIN => self.send_file(link, name, ts, true).await,
            st => Err(refused(
                if append {
                    "SYNC_APPEND_FILE"
                } else {
                    "SYNC_MODIFY_FILE"
                },
                st,
            )),
        }
    }
}

/// Sends exactly `len` bytes of `file` from `offset`. A file that shrinks
/// meanwhile cannot fill the announced body: the connection is abandoned
/// (error) and the record is retried with fresh sizes.
async fn stream_file(
    link: &mut Link,
    file: &mut File,
    offset: u64,
    len: u64,
) -> Result<(), SyncError> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; (len.min(CHUNK as u64) as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = maybe_blocking(len <= SMALL, || file.read(&mut buf[..want]))?;
        if n == 0 {
            return Err(SyncError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            )));
        }
        link.write(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

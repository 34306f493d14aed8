//! Replication inside a group (PROTOCOL.md §6.4, §6.5, §9.2).
//!
//! * [`SyncService::spawn`] runs a manager that follows the group's server
//!   list (kept by the tracker reporter from the trackers' change-flag
//!   replies) and runs one sender worker per peer ([`sender`]). A worker
//!   replays this server's binlog from the peer's mark file ([`mark`]),
//!   forwarding the records [`filter`] selects, and wakes as soon as the
//!   binlog grows (a `watch` channel fed by the binlog appender), with
//!   `sync_wait_msec` as the fallback poll. Creates, the bulk of any
//!   binlog, are pipelined: up to 64 go out before their replies are read
//!   (the peer answers in order), so one connection per peer keeps up with
//!   many uploading clients; the mark moves only past answered records.
//!   Upstream storages serve a connection one request at a time and read
//!   the next from the socket buffer, so pipelining needs nothing of them.
//! * [`receiver`] serves the SYNC_* commands on the storage port and
//!   applies them through [`apply`], recording lower-case binlog records
//!   with the source's timestamps; [`progress`] turns what arrived into
//!   SYNC_REPORT for the trackers. In durable mode it makes the creates a
//!   peer pipelined durable together (their content fsyncs back to back,
//!   then one fsync per directory and one of the binlog) and holds their
//!   replies until then.
//! * A new server catching up (§6.5): the designated source replays its
//!   whole binlog, reports the server SYNCING then OFFLINE to the trackers
//!   ([`link::Trackers`]); the other peers skip to the cut-off.
//!
//! This module must not serve clients or talk to the trackers beyond
//! SYNC_SRC_REQ and REPORT_STATUS; the reporter owns the tracker session.

pub mod apply;
pub mod backoff;
pub mod filter;
pub mod link;
pub mod mark;
pub mod progress;
pub mod quorum;
pub mod receiver;
pub mod sender;
pub mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdfs_conf::{HostPort, StorageConf};
use fdfs_proto::server::{status, StorageBrief};
use fdfs_runtime::Shutdown;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::reporter::ReporterState;
use crate::store::Store;

pub use progress::Progress;
pub use receiver::{is_sync_cmd, PeerTag, Receiver};

pub(crate) use crate::service::{blocking, maybe_blocking, SMALL};

/// The settings of the sync workers (storage.conf).
#[derive(Debug, Clone)]
pub struct SyncConf {
    /// Our storage port (the group's port).
    pub port: u16,
    /// Source address of outgoing connections (`client_bind`).
    pub bind_ip: Option<IpAddr>,
    pub trackers: Vec<HostPort>,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
    /// Fallback poll when no binlog notification comes.
    pub sync_wait: Duration,
    /// Pause after each file sent.
    pub sync_interval: Duration,
    pub window: window::Window,
    /// Rewrite a mark file every this many records.
    pub write_mark_freq: u32,
    pub base_path: PathBuf,
    /// Backoff bounds for an unreachable peer or tracker.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl SyncConf {
    pub fn from_conf(conf: &StorageConf, port: u16, bind_ip: Option<IpAddr>) -> SyncConf {
        SyncConf {
            port,
            bind_ip,
            trackers: conf.tracker_servers.clone(),
            connect_timeout: conf.daemon.connect_timeout,
            network_timeout: conf.daemon.network_timeout,
            sync_wait: conf.sync_wait_msec,
            sync_interval: conf.sync_interval,
            window: window::Window {
                start: conf.sync_start_time,
                end: conf.sync_end_time,
            },
            write_mark_freq: conf.write_mark_file_freq.max(1),
            base_path: conf.daemon.base_path.clone(),
            backoff_min: backoff::Backoff::MIN,
            backoff_max: backoff::Backoff::MAX,
        }
    }

    pub fn sync_dir(&self) -> PathBuf {
        self.base_path.join("data").join("sync")
    }
}

/// One worker's progress, for `fdfs monitor` and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    pub peer_id: String,
    pub peer_addr: String,
    /// What the worker is doing: waiting, connecting, full-sync, syncing,
    /// idle, window-closed, backoff, stopped.
    pub state: &'static str,
    pub binlog_index: u32,
    pub binlog_offset: u64,
    pub records_sent: u64,
    /// Records skipped for good (file gone at the source, undecodable line,
    /// refused repeatedly).
    pub records_skipped: u64,
    /// Seconds between now and the timestamp of the oldest record not yet
    /// sent (0 when caught up).
    pub lag_secs: u64,
    pub last_error: Option<String>,
}

/// Every worker's status, by peer id.
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: Mutex<BTreeMap<String, WorkerStatus>>,
}

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, peer: &str) -> Option<WorkerStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .cloned()
    }

    pub(crate) fn update(&self, peer: &str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Several times per record: no key allocation once the peer is in.
        if let Some(e) = g.get_mut(peer) {
            return f(e);
        }
        let e = g.entry(peer.to_owned()).or_default();
        e.peer_id = peer.to_owned();
        f(e);
    }

    fn remove(&self, peer: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(peer);
    }
}

/// Replication of one storage server: the sender workers and the shared
/// state the receiver and the reporter use.
pub struct SyncService {
    pub conf: SyncConf,
    pub store: Arc<Store>,
    pub state: Arc<ReporterState>,
    pub progress: Arc<Progress>,
    pub status: Arc<StatusBoard>,
    /// Ticks whenever the binlog grows.
    pub wake: watch::Receiver<u64>,
    /// How far each peer has acknowledged our binlog (write quorum).
    pub acks: Arc<quorum::Acks>,
}

/// How often the manager re-reads the group list.
const MANAGER_TICK: Duration = Duration::from_millis(100);

struct Running {
    stop: Shutdown,
    handle: tokio::task::JoinHandle<()>,
}

impl SyncService {
    pub fn new(
        conf: SyncConf,
        store: Arc<Store>,
        state: Arc<ReporterState>,
        progress: Arc<Progress>,
        wake: watch::Receiver<u64>,
    ) -> SyncService {
        SyncService {
            conf,
            store,
            state,
            progress,
            status: Arc::new(StatusBoard::default()),
            wake,
            acks: Arc::default(),
        }
    }

    /// The receiving side, for the storage service.
    pub fn receiver(&self) -> Receiver {
        Receiver {
            store: self.store.clone(),
            progress: self.progress.clone(),
            #[cfg(test)]
            group_commits: Default::default(),
        }
    }

    /// Our id as the trackers know it: the storage id, else our IP.
    pub fn my_id(&self) -> String {
        self.state.my_id(&self.store)
    }

    /// The group's current list (empty until a tracker sent one).
    pub fn group_servers(&self) -> Vec<StorageBrief> {
        self.state
            .group_servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A peer's current entry in the group list.
    pub fn peer(&self, id: &str) -> Option<StorageBrief> {
        self.state
            .group_servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    fn is_me(&self, s: &StorageBrief, me: &str) -> bool {
        s.id == me && (s.port == 0 || s.port == u32::from(self.conf.port))
    }

    /// Short sessions with the trackers (SYNC_SRC_REQ, REPORT_STATUS).
    pub fn trackers(&self) -> link::Trackers {
        link::Trackers {
            list: self.conf.trackers.clone(),
            bind: self.conf.bind_ip,
            connect_timeout: self.conf.connect_timeout,
            timeout: self.conf.network_timeout,
        }
    }

    pub fn mark_path(&self, peer: &StorageBrief) -> PathBuf {
        mark::mark_path(&self.conf.sync_dir(), &peer.id, &peer.ip, peer.port)
    }

    /// The SYNC_REPORT to send to the trackers, if progress changed.
    pub fn take_report(&self) -> Option<fdfs_proto::server::SyncReport> {
        self.progress.take_report(&self.my_id())
    }

    /// Starts the manager; it stops the workers and returns on `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.manage(shutdown).await })
    }

    async fn manage(self: Arc<Self>, shutdown: Shutdown) {
        let mut workers: HashMap<String, Running> = HashMap::new();
        loop {
            self.reconcile(&mut workers, &shutdown);
            self.finish_own_initial_sync().await;
            tokio::select! {
                _ = tokio::time::sleep(MANAGER_TICK) => {}
                _ = shutdown.wait() => break,
            }
        }
        for (_, w) in workers.drain() {
            w.stop.trigger();
            let _ = w.handle.await;
        }
    }

    /// Starts workers for new peers, stops those of peers that left or were
    /// deleted (and forgets their marks).
    fn reconcile(self: &Arc<Self>, workers: &mut HashMap<String, Running>, shutdown: &Shutdown) {
        // Once shutting down, workers finish on their own: reconciling now
        // would take a finished worker for a dead one and drop its status.
        if shutdown.is_triggered() {
            return;
        }
        let list = self.group_servers();
        if list.is_empty() {
            return;
        }
        let me = self.my_id();
        let mut wanted = Vec::new();
        for s in list
            .iter()
            .filter(|s| !self.is_me(s, &me) && !s.id.is_empty())
        {
            if matches!(s.status, status::DELETED | status::IP_CHANGED) {
                if let Some(w) = workers.remove(&s.id) {
                    info!(worker = "sync", peer = %s.id, "peer deleted from the group: stopping its sync");
                    w.stop.trigger();
                }
                self.forget_peer(s);
                continue;
            }
            wanted.push(s.id.clone());
            workers.entry(s.id.clone()).or_insert_with(|| {
                info!(worker = "sync", peer = %s.id, addr = %format!("{}:{}", s.ip, s.port), "starting sync worker");
                let stop = Shutdown::new();
                let w = sender::Worker::new(self.clone(), s.id.clone(), shutdown.clone(), stop.clone());
                Running {
                    stop,
                    handle: tokio::spawn(w.run()),
                }
            });
        }
        workers.retain(|id, w| {
            let still_wanted = wanted.contains(id);
            let keep = still_wanted && !w.handle.is_finished();
            if !keep {
                w.stop.trigger();
                // A finished worker of a wanted peer is restarted on the
                // next tick; its status stays visible until then.
                if !still_wanted {
                    self.status.remove(id);
                }
            }
            keep
        });
    }

    fn forget_peer(&self, s: &StorageBrief) {
        let p = self.mark_path(s);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                info!(worker = "sync", peer = %s.id, mark = %p.display(), "removed the mark file of a deleted peer")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(worker = "sync", peer = %s.id, "removing {}: {e}", p.display()),
        }
        self.status.remove(&s.id);
    }

    /// A new server's initial full sync is over once the trackers list it
    /// ACTIVE: persist `sync_old_done` so later joins say init_flag 0.
    async fn finish_own_initial_sync(&self) {
        if self.state.my_status.load(Ordering::Relaxed) != status::ACTIVE {
            return;
        }
        let mut init = self.state.init.lock().await;
        if init.sync_old_done {
            return;
        }
        init.sync_old_done = true;
        match init.save(&self.conf.base_path) {
            Ok(()) => info!(worker = "sync", src = %init.sync_src_server, "initial full sync done"),
            Err(e) => warn!(worker = "sync", "saving the init flag: {e}"),
        }
    }
}

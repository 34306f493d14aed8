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

mod advance;
mod binlog;
mod requester;
mod server;
pub mod space;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fdfs_conf::TimeOfDay;
use fdfs_proto::errno;
use fdfs_proto::server::StorageBrief;
use fdfs_proto::trunk::HEADER_LEN;
use thiserror::Error;

use crate::store::Store;
use crate::sync::link::Link;
use server::Served;

/// The trackers' trunk settings (PARAMETER_REQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkParams {
    pub enabled: bool,
    pub slot_min_size: u32,
    pub slot_max_size: u32,
    /// 0: no alignment.
    pub alignment: u32,
    pub file_size: u32,
    /// `trunk_create_file_*`: trunk files made ahead of demand.
    pub advance: AdvanceParams,
    /// `trunk_binlog_max_backups`: the trunk binlog as it was before each
    /// compaction, this many of the newest kept beside it (0: none).
    pub binlog_max_backups: u32,
}

impl Default for TrunkParams {
    fn default() -> Self {
        TrunkParams {
            enabled: false,
            slot_min_size: 256,
            slot_max_size: 8 * 1024 * 1024,
            alignment: 0,
            file_size: 64 * 1024 * 1024,
            advance: AdvanceParams::default(),
            binlog_max_backups: 0,
        }
    }
}

/// When the trunk server makes trunk files before uploads need them
/// (`trunk_create_file_advance` and its time base, interval and
/// threshold, CONFIG.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvanceParams {
    pub enabled: bool,
    /// The first run of the local day...
    pub time_base: TimeOfDay,
    /// ...then one every this many seconds (never 0).
    pub interval: u32,
    /// Trunk files are made until the free trunk space (all store paths)
    /// reaches this many bytes; 0: none are.
    pub threshold: u64,
}

impl Default for AdvanceParams {
    fn default() -> Self {
        AdvanceParams {
            enabled: false,
            time_base: TimeOfDay { hour: 2, minute: 0 },
            interval: 86400,
            threshold: 0,
        }
    }
}

impl AdvanceParams {
    /// From PARAMETER_REQ's pairs; missing or bad values keep the defaults.
    fn from_params(get: &impl Fn(&str) -> Option<String>) -> AdvanceParams {
        let d = AdvanceParams::default();
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        AdvanceParams {
            enabled: get("trunk_create_file_advance").is_some_and(|v| is_true(&v)),
            time_base: get("trunk_create_file_time_base")
                .and_then(|v| fdfs_conf::value::parse_time(&v).ok())
                .unwrap_or(d.time_base),
            interval: num("trunk_create_file_interval")
                .filter(|&v| v > 0)
                .map_or(d.interval, |v| v.min(u64::from(u32::MAX)) as u32),
            threshold: num("trunk_create_file_space_threshold").unwrap_or(d.threshold),
        }
    }

    /// The unix time of the first run after `now` (local time of day).
    pub fn next_run(&self, now: i64) -> i64 {
        let base = u32::from(self.time_base.hour) * 3600 + u32::from(self.time_base.minute) * 60;
        fdfs_runtime::clock::next_local_time_every(now, base, self.interval)
    }
}

/// A boolean of PARAMETER_REQ (`1`, or `true`).
fn is_true(v: &str) -> bool {
    v == "1" || v == "true"
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
        let enabled = get("use_trunk_file").is_some_and(|v| is_true(&v));
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
            advance: AdvanceParams::from_params(&get),
            binlog_max_backups: num("trunk_binlog_max_backups", 0).min(10_000),
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
    /// The trackers we are in session with, each with the newest trunk
    /// file id it has acknowledged (REPORT_TRUNK_FID).
    pub told: Told,
    /// Lines in our trunk binlog while we serve.
    pub binlog_lines: AtomicU64,
    /// Times we rewrote the trunk binlog as a snapshot.
    pub compactions: AtomicU64,
    /// Uploads small enough for a slot that were stored whole (no trunk
    /// server, no answer, no room, or a slot found holding a file).
    pub stored_whole: AtomicU64,
}

impl TrunkState {
    pub fn params(&self) -> TrunkParams {
        *self.params.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The group's trunk server (or none), `is_me` when it is us.
    pub fn set_server(&self, brief: Option<StorageBrief>, is_me: bool) {
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = brief;
        self.serving.store(is_me, Ordering::SeqCst);
        if !is_me {
            self.free_mb.store(-1, Ordering::Relaxed);
        }
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        let b = self.server.read().unwrap_or_else(|e| e.into_inner());
        let b = b.as_ref()?;
        let ip: IpAddr = b.ip.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(b.port).ok()?))
    }
}

/// Which trackers know of which trunk file: a slot of a new trunk file is
/// handed out only once every tracker in session knows the file exists,
/// so that a trunk server elected after we crash never creates it again.
#[derive(Debug)]
pub struct Told {
    trackers: tokio::sync::watch::Sender<Known>,
    /// The newest trunk file id the reporters should tell.
    pub wanted: tokio::sync::watch::Sender<u32>,
}

#[derive(Debug, Default)]
struct Known {
    /// Per tracker in session, the newest id it acknowledged.
    by_tracker: std::collections::HashMap<String, u32>,
    /// The newest id any tracker acknowledged: a tracker keeps it (in
    /// tracker_state.dat) after our session with it ends.
    any: u32,
}

impl Known {
    fn know(&self, id: u32) -> bool {
        id <= self.any && self.by_tracker.values().all(|&v| v >= id)
    }
}

impl Default for Told {
    fn default() -> Self {
        Told {
            trackers: tokio::sync::watch::Sender::new(Known::default()),
            wanted: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Told {
    /// A session with `tracker` began; it is told the file id next.
    pub fn session_started(&self, tracker: &str) {
        self.trackers.send_modify(|k| {
            k.by_tracker.insert(tracker.to_owned(), 0);
        });
    }

    /// The session with `tracker` ended: it no longer holds anything up.
    pub fn session_ended(&self, tracker: &str) {
        self.trackers.send_modify(|k| {
            k.by_tracker.remove(tracker);
        });
    }

    /// `tracker` answered REPORT_TRUNK_FID for `id`.
    pub fn acknowledged(&self, tracker: &str, id: u32) {
        self.trackers.send_modify(|k| {
            if let Some(v) = k.by_tracker.get_mut(tracker) {
                *v = (*v).max(id);
                k.any = k.any.max(id);
            }
        });
    }

    /// Waits until the trackers know of trunk file `id`: the trackers in
    /// session, and at least one of them once. False at once when no
    /// tracker is in session, else after `within`.
    pub async fn wait_known(&self, id: u32, within: Duration) -> bool {
        {
            let k = self.trackers.borrow();
            if k.know(id) {
                return true;
            }
            if k.by_tracker.is_empty() {
                return false;
            }
        }
        self.wanted.send_if_modified(|w| {
            let newer = id > *w;
            *w = (*w).max(id);
            newer
        });
        let mut rx = self.trackers.subscribe();
        let known =
            tokio::time::timeout(within, async { rx.wait_for(|k| k.know(id)).await.is_ok() });
        known.await.unwrap_or(false)
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
    #[error("no tracker has acknowledged trunk file {0} yet")]
    Unannounced(u32),
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
            TrunkError::Unannounced(_) => errno::EAGAIN,
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

/// Both roles: asking the trunk server for slots, and being it.
pub struct Trunk {
    store: Arc<Store>,
    reporter: Arc<crate::reporter::ReporterState>,
    conf: TrunkConf,
    served: tokio::sync::Mutex<Option<Served>>,
    /// Idle kept-alive connections to the trunk server.
    remote: std::sync::Mutex<Vec<(SocketAddr, Link)>>,
    /// Runs of slots asked of a peer trunk server at once, a few per store
    /// path, handed out here.
    batches: std::sync::Mutex<Vec<requester::Batch>>,
    /// How much of the trunk binlog is written, and how much of that is
    /// on disk: concurrent requests share one fdatasync.
    binlog_written: std::sync::atomic::AtomicU64,
    binlog_synced: std::sync::Mutex<u64>,
    /// Counts the trunk binlog's replacements by a snapshot, twice each
    /// (odd while one is under way): pushes to the peers start over.
    binlog_generation: std::sync::atomic::AtomicU64,
    /// Wakes the binlog push at once after an `A` record: the peers learn
    /// of space given out within a round trip, not half a second.
    allocated: tokio::sync::Notify,
}

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
            batches: std::sync::Mutex::new(Vec::new()),
            binlog_written: std::sync::atomic::AtomicU64::new(0),
            binlog_synced: std::sync::Mutex::new(0),
            binlog_generation: std::sync::atomic::AtomicU64::new(0),
            allocated: tokio::sync::Notify::new(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> TrunkParams {
        TrunkParams::from_params(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_trackers_make_ahead_settings_are_read() {
        assert_eq!(params(&[]).advance, AdvanceParams::default());
        let a = params(&[
            ("use_trunk_file", "1"),
            ("trunk_create_file_advance", "1"),
            ("trunk_create_file_time_base", "00:30"),
            ("trunk_create_file_interval", "3600"),
            ("trunk_create_file_space_threshold", "21474836480"),
        ])
        .advance;
        assert_eq!(
            a,
            AdvanceParams {
                enabled: true,
                time_base: TimeOfDay {
                    hour: 0,
                    minute: 30
                },
                interval: 3600,
                threshold: 20 << 30,
            }
        );
        // Bad values keep the defaults; an interval of 0 would never wait.
        let a = params(&[
            ("trunk_create_file_advance", "0"),
            ("trunk_create_file_time_base", "25:00"),
            ("trunk_create_file_interval", "0"),
            ("trunk_create_file_space_threshold", "20G"),
        ])
        .advance;
        assert_eq!(a, AdvanceParams::default());
    }

    #[tokio::test]
    async fn a_trunk_file_is_known_once_every_tracker_in_session_acknowledged_it() {
        let t = Told::default();
        let short = Duration::from_millis(20);
        // No tracker in session: not known, and no wait.
        let started = std::time::Instant::now();
        assert!(!t.wait_known(1, Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1));

        t.session_started("a");
        t.session_started("b");
        t.acknowledged("a", 3);
        assert!(!t.wait_known(3, short).await, "b has not answered");
        assert_eq!(*t.wanted.borrow(), 3, "the reporters are asked to tell 3");
        t.acknowledged("b", 3);
        assert!(t.wait_known(2, short).await && t.wait_known(3, short).await);
        assert!(!t.wait_known(4, short).await);

        // A tracker that answers while we wait releases the waiter.
        let t = Arc::new(t);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_known(4, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(short).await;
        t.acknowledged("a", 4);
        t.session_ended("b");
        assert!(waiter.await.unwrap());

        // Sessions ended: what a tracker once acknowledged stays known
        // (trackers keep it); anything newer is not.
        t.session_ended("a");
        assert!(t.wait_known(4, short).await);
        assert!(!t.wait_known(5, short).await);
        // A tracker in a new session holds up every id until it has been
        // told.
        t.session_started("c");
        assert!(!t.wait_known(4, short).await);
        t.acknowledged("c", 4);
        assert!(t.wait_known(4, short).await);
        // An acknowledgement from a tracker not in session counts for nothing.
        t.acknowledged("z", 9);
        assert!(!t.wait_known(9, short).await);
    }
}

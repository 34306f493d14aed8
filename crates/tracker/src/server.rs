//! Wiring: load saved state, serve connections, run the background
//! workers (heartbeat checker, periodic stats save), save on shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fdfs_runtime::net::{self, ServeOpts};
use fdfs_runtime::Shutdown;
use tokio::net::TcpListener;
use tracing::info;

use crate::cluster::Cluster;
use crate::persist::{self, PersistError};
use crate::service::{now, Tracker};
use crate::settings::Settings;

/// How often counters (beats, disk reports, sync progress) are saved when
/// they changed; membership and status changes are saved at once.
pub const STATS_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Everything the tracker needs to run.
#[derive(Debug, Clone)]
pub struct TrackerOpts {
    pub settings: Settings,
    pub base_path: PathBuf,
    /// The configured port, reported by GET_LEADER and cluster stat.
    pub port: u16,
    pub serve: ServeOpts,
}

/// Opens the tracker: loads `<base_path>/data` state if there is some.
/// Synchronous so it can run before the daemon forks (errors reach the
/// terminal).
pub fn open(opts: &TrackerOpts) -> Result<Arc<Tracker>, PersistError> {
    let data = opts.base_path.join("data");
    std::fs::create_dir_all(&data).map_err(|source| PersistError::Io {
        path: data.clone(),
        source,
    })?;
    let cluster = match persist::load(&data, opts.settings.clone())? {
        Some(c) => c,
        None => Cluster::new(opts.settings.clone()),
    };
    Ok(Arc::new(Tracker::new(
        cluster,
        data,
        opts.port,
        opts.serve.max_connections as u32,
    )))
}

/// Serves until `shutdown`, then saves the state.
pub async fn run(
    tracker: Arc<Tracker>,
    listener: TcpListener,
    opts: ServeOpts,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    {
        // Logged here, not in `open`: logging starts after the fork.
        let c = tracker.cluster();
        let n: usize = c.groups.values().map(|g| g.storages.len()).sum();
        info!(
            groups = c.groups.len(),
            storages = n,
            "cluster state loaded; every storage is OFFLINE until it joins again"
        );
        if c.settings.use_storage_id {
            info!(
                ids = c.settings.storage_ids.entries.len(),
                id_in_file_names = c.settings.id_type_in_filename_is_id,
                trust_sent_ids = c.settings.trust_storage_server_id,
                "storages are known by their ids in storage_ids.conf"
            );
        }
    }
    let worker = tokio::spawn(background(tracker.clone(), shutdown.clone()));
    let t = tracker.clone();
    let r = net::serve(listener, opts, shutdown.clone(), move |conn| {
        t.clone().serve_conn(conn)
    })
    .await;
    shutdown.trigger();
    let _ = worker.await;
    tracker.persist(true).await;
    r
}

/// Checks heartbeats (and trunk election holds) every second and saves
/// counters periodically.
async fn background(tracker: Arc<Tracker>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats_save = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        // Also ends trunk election holds; persist(false) saves only when
        // the membership, a status or the trunk server changed.
        tracker.cluster().check_active(now());
        tracker.persist(false).await;
        if last_stats_save.elapsed() >= STATS_SAVE_INTERVAL {
            last_stats_save = tokio::time::Instant::now();
            tracker.persist(true).await;
        }
    }
}

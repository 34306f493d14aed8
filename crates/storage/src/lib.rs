//! The FastDFS storage server (`fdfs_storaged`).
//!
//! [`store`] is the engine: store paths, file IDs, atomic writes, metadata,
//! appender and slave files, the binlog and counters; it knows nothing of
//! sockets. [`service`] serves the client commands of PROTOCOL.md §4 on top
//! of it, and [`reporter`] keeps the sessions with the trackers. [`sync`]
//! replicates every change to the other servers of the group and applies
//! theirs; [`recovery`] refills a replaced disk from the group at start.
//! [`prepare`] and [`serve`] wire them together for the binary.
//!
//! This crate must not contain tracker logic or client-library code, and
//! the engine must not touch the network.

pub mod access_log;
pub mod fsck;
pub mod observe;
pub mod recovery;
pub mod reporter;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;
pub mod trunk;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fdfs_conf::StorageConf;
use fdfs_proto::{GroupName, SourceServer};
use fdfs_runtime::net::{serve as serve_conns, Allow, ServeOpts};
use fdfs_runtime::Shutdown;
use thiserror::Error;
use tracing::{info, warn};

use reporter::{Reporter, ReporterConf, ReporterState};
use service::Service;
use state::InitFlag;
use store::disk::{Disk, FailingDisk, RealDisk};
use store::{Store, StoreConfig, StoreError};

/// Environment variable for fault injection in tests: after this many bytes
/// of content written, every data write fails with ENOSPC ("disk full").
pub const FAULT_DISK_FULL_ENV: &str = "FDFS_FAULT_DISK_FULL_AFTER";

/// Why the storage server could not start or stopped.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A storage server ready to run: listener bound, store opened.
pub struct Prepared {
    conf: StorageConf,
    listener: std::net::TcpListener,
    store: Arc<Store>,
    init: InitFlag,
    /// group_name came from a tracker (logged once logging runs).
    group_from_tracker: bool,
    access_log: Option<access_log::AccessLog>,
}

impl Prepared {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// Checks the configuration, opens the store (creating sub-directories on
/// first start) and binds the port. Runs before daemonizing, so errors
/// reach the terminal.
pub fn prepare(mut conf: StorageConf) -> Result<Prepared, StorageError> {
    if conf.tracker_servers.is_empty() {
        return Err(StorageError::Config("no tracker_server configured".into()));
    }
    // bind_addr may list several addresses: the first one is ours.
    let first = conf.daemon.bind_addr.split(',').next().unwrap_or("").trim();
    let first = first.trim_matches(|c| c == '[' || c == ']');
    let bind_ip: Option<IpAddr> = if first.is_empty() {
        None
    } else {
        Some(first.parse().map_err(|_| {
            StorageError::Config(format!("bind_addr {first:?} is not an IP address"))
        })?)
    };
    let group_from_tracker = conf.group_name.is_empty();
    let group = if group_from_tracker {
        // Before the server's runtime exists: a small one for this question.
        let trackers = sync::link::Trackers {
            list: conf.tracker_servers.clone(),
            bind: bind_ip,
            connect_timeout: conf.daemon.connect_timeout,
            timeout: conf.daemon.network_timeout,
        };
        let g = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(trackers.group_name(bind_ip, conf.daemon.port)))
            .map_err(|why| {
                StorageError::Config(format!(
                    "group_name is not set and no tracker could name our group \
                 (they answer from storage_ids.conf when use_storage_id = true): {why}"
                ))
            })?;
        conf.group_name = g.as_str().to_owned();
        g
    } else {
        GroupName::new(&conf.group_name)
            .map_err(|e| StorageError::Config(format!("group_name: {e}")))?
    };
    let disk: Arc<dyn Disk> = match std::env::var(FAULT_DISK_FULL_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => {
            warn!("fault injection: the disk reports full after {n} bytes ({FAULT_DISK_FULL_ENV})");
            Arc::new(FailingDisk::full_after(n))
        }
        None => Arc::new(RealDisk),
    };
    let scfg = StoreConfig::from_conf(&conf, group);
    let base = conf.daemon.base_path.clone();
    let store = Store::open(scfg, disk)?;
    let init = InitFlag::load(&base).map_err(|e| StorageError::Io {
        what: format!("reading {}", InitFlag::path(&base).display()),
        source: e,
    })?;
    // Our address in new file IDs: bind_addr, else the last one a tracker
    // told us, until a tracker answers GET_MY_IP.
    match bind_ip {
        Some(IpAddr::V4(ip)) => store.set_source(SourceServer::Ip(ip)),
        _ => {
            if let Ok(ip) = init.last_ip_addr.parse() {
                store.set_source(SourceServer::Ip(ip));
            }
        }
    }
    let addr = SocketAddr::new(
        bind_ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        conf.daemon.port,
    );
    let listener = std::net::TcpListener::bind(addr).map_err(|e| StorageError::Io {
        what: format!("binding {addr}"),
        source: e,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StorageError::Io {
            what: "listener".into(),
            source: e,
        })?;
    let access_log = match conf.access_log {
        Some(a) => {
            let path = base.join("logs").join("storage_access.log");
            let log = std::fs::create_dir_all(base.join("logs"))
                .and_then(|()| access_log::AccessLog::open(&path, rotation(a.rotation), a.micros))
                .map_err(|e| StorageError::Io {
                    what: format!("opening {}", path.display()),
                    source: e,
                })?;
            Some(log)
        }
        None => None,
    };
    Ok(Prepared {
        conf,
        listener,
        store: Arc::new(store),
        init,
        group_from_tracker,
        access_log,
    })
}

/// The runtime's rotation for a log section of a .conf (the storage's
/// access log here; the daemons' own logs, the tracker's too, in the
/// binary's wiring).
pub fn rotation(r: fdfs_conf::LogRotation) -> fdfs_runtime::logfile::Rotation {
    fdfs_runtime::logfile::Rotation {
        everyday: r.everyday,
        at: u32::from(r.time.hour) * 3600 + u32::from(r.time.minute) * 60,
        on_size: r.on_size,
        keep_days: r.keep_days,
        compress_old: r.compress_old,
        compress_days_before: r.compress_days_before,
        delete_at: u32::from(r.delete_old_time.hour) * 3600
            + u32::from(r.delete_old_time.minute) * 60,
    }
}

/// Serves clients, reports to the trackers and persists counters until
/// `shutdown`.
pub async fn serve(p: Prepared, shutdown: Shutdown) -> Result<(), StorageError> {
    serve_observed(p, shutdown, |_| {}).await
}

/// [`serve`], handing `publish` what the metrics port shows as soon as it
/// exists (before a disk recovery, whose progress it then shows).
pub async fn serve_observed(
    p: Prepared,
    shutdown: Shutdown,
    publish: impl FnOnce(Arc<observe::Observer>),
) -> Result<(), StorageError> {
    let Prepared {
        conf,
        listener,
        store,
        init,
        group_from_tracker,
        access_log,
    } = p;
    if group_from_tracker {
        info!(group = %store.group(), "group_name given by the tracker (storage_ids.conf)");
    }
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| StorageError::Io {
        what: "listener".into(),
        source: e,
    })?;
    let local = listener.local_addr().ok();
    let rconf = ReporterConf {
        group: store.group().clone(),
        port: local.map_or(conf.daemon.port, |a| a.port()),
        bind_ip: if conf.client_bind {
            local.map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
        } else {
            None
        },
        fixed_source: local.is_some_and(|a| !a.ip().is_unspecified()),
        server_id: conf.server_id.clone(),
        trackers: conf.tracker_servers.clone(),
        heart_beat_interval: conf.heart_beat_interval,
        stat_report_interval: conf.stat_report_interval,
        connect_timeout: conf.daemon.connect_timeout,
        network_timeout: conf.daemon.network_timeout,
        store_path_count: store.path_count() as u32,
        subdir_count: store.config().subdir_count,
        upload_priority: conf.upload_priority,
        up_time: store::now() as i64,
        base_path: conf.daemon.base_path.clone(),
    };
    let reporter = Arc::new(Reporter {
        conf: rconf,
        store: store.clone(),
        state: Arc::new(ReporterState::new(init, &conf.server_id)),
    });
    let replication = Arc::new(sync::SyncService::new(
        sync::SyncConf::from_conf(&conf, reporter.conf.port, reporter.conf.bind_ip),
        store.clone(),
        reporter.state.clone(),
        reporter.state.sync_progress.clone(),
        store.binlog().subscribe(),
    ));
    let recovery_progress = Arc::new(recovery::Progress::default());
    publish(Arc::new(observe::Observer {
        store: store.clone(),
        state: reporter.state.clone(),
        sync: replication.clone(),
        recovery: recovery_progress.clone(),
        started: u64::from(store::now()),
        port: reporter.conf.port,
    }));
    let rconf = &reporter.conf;
    // A replaced disk is filled from the group before we join: until then
    // the trackers send nobody here.
    recovery::recover_marked_paths(
        &store,
        &recovery::RecoveryConf {
            trackers: replication.trackers(),
            bind_ip: rconf.bind_ip,
            port: rconf.port,
            server_id: rconf.server_id.clone(),
            connect_timeout: rconf.connect_timeout,
            network_timeout: rconf.network_timeout,
            threads: conf.disk_recovery_threads as usize,
            progress: recovery_progress,
        },
        &shutdown,
    )
    .await;
    if shutdown.is_triggered() {
        return Ok(());
    }
    let workers = reporter.clone().spawn(shutdown.clone());
    let sync_manager = replication.clone().spawn(shutdown.clone());

    // Counters are flushed every sync_stat_file_interval and at the end.
    let stat_worker = {
        let store = store.clone();
        let sd = shutdown.clone();
        let every = conf.sync_stat_file_interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sd.wait() => return,
                }
                if let Err(e) = service::blocking(|| store.save_stats()) {
                    warn!(worker = "stat-file", "saving storage_stat.dat: {e}");
                }
            }
        })
    };

    let allow = conf.daemon.allow_hosts.clone();
    let opts = ServeOpts {
        allow_hosts: Allow::from_fn(move |ip| allow.allows(ip)),
        max_connections: conf.daemon.max_connections.max(1) as usize,
        network_timeout: conf.daemon.network_timeout,
        max_body: conf.daemon.buff_size.max(4096),
    };
    let quorum = (conf.write_quorum > 1).then(|| sync::quorum::Quorum {
        acks: replication.acks.clone(),
        servers: conf.write_quorum as usize,
        timeout: conf.write_quorum_timeout.max(Duration::from_millis(100)),
    });
    let trunk = Arc::new(trunk::Trunk::new(
        store.clone(),
        reporter.state.clone(),
        trunk::TrunkConf {
            bind_ip: reporter.conf.bind_ip,
            connect_timeout: conf.daemon.connect_timeout,
            network_timeout: conf.daemon.network_timeout,
            base_path: conf.daemon.base_path.clone(),
        },
    ));
    let trunk_pusher = tokio::spawn(trunk.clone().push_binlog(shutdown.clone()));
    let trunk_ahead = tokio::spawn(trunk.clone().make_ahead_on_schedule(shutdown.clone()));
    let svc = Arc::new(Service {
        trunk: trunk.clone(),
        quorum,
        store: store.clone(),
        sync: Arc::new(replication.receiver()),
        max_body: opts.max_body,
        reporter: reporter.state.clone(),
        access_log,
    });
    info!(
        group = %store.group(),
        addr = ?local,
        store_paths = store.path_count(),
        durable = store.config().durable,
        "storage server started"
    );
    let r = serve_conns(listener, opts, shutdown.clone(), move |conn| {
        svc.clone().handle(conn)
    })
    .await;
    shutdown.trigger();
    // No trunk file is made once the set-aside space is given back.
    let _ = trunk_ahead.await;
    trunk.release().await;
    for w in workers {
        let _ = w.await;
    }
    let _ = sync_manager.await;
    let _ = trunk_pusher.await;
    let _ = stat_worker.await;
    if let Err(e) = store.save_stats() {
        warn!("saving storage_stat.dat: {e}");
    }
    info!("storage server stopped");
    r.map_err(|e| StorageError::Io {
        what: "accept loop".into(),
        source: e,
    })
}

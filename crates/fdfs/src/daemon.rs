//! Wiring of the daemons: config file → runtime options → the role's
//! crate. No tracker or storage logic here.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::Parser;
use fdfs_conf::{DaemonConf, LogLevel, TrackerConf};
use fdfs_runtime::daemon::{self as rt, Action, DaemonOpts};
use fdfs_runtime::net::{Allow, ServeOpts};
use tracing_subscriber::filter::LevelFilter;

/// `<conf> [start|stop|restart] [--foreground]`.
#[derive(Parser, Debug, Clone)]
pub struct DaemonArgs {
    /// The daemon's .conf file (tracker.conf / storage.conf).
    pub conf: PathBuf,
    /// start (default), stop or restart.
    #[arg(default_value = "start")]
    pub action: Action,
    /// Stay in the foreground (systemd, containers, tests); logs also go to stderr.
    #[arg(short, long)]
    pub foreground: bool,
}

/// `fdfs_trackerd <conf> [start|stop|restart]`.
pub fn trackerd_main(args: Vec<OsString>) -> ExitCode {
    let args = DaemonArgs::parse_from(args);
    tracker(args, "fdfs_trackerd")
}

/// Runs the tracker daemon action.
pub fn tracker(args: DaemonArgs, prog: &str) -> ExitCode {
    match run_tracker(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(prog, e),
    }
}

/// `fdfs_storaged <conf> [start|stop|restart]`.
pub fn storaged_main(args: Vec<OsString>) -> ExitCode {
    let args = DaemonArgs::parse_from(args);
    storage(args, "fdfs_storaged")
}

/// Runs the storage daemon action.
pub fn storage(args: DaemonArgs, prog: &str) -> ExitCode {
    match run_storage(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(prog, e),
    }
}

fn run_storage(args: &DaemonArgs) -> anyhow::Result<()> {
    let conf = fdfs_conf::StorageConf::load(&args.conf)
        .with_context(|| format!("cannot load {}", args.conf.display()))?;
    let conf_path = args.conf.clone();
    rt::run_prepared(
        daemon_opts("storaged", &conf.daemon, args.foreground),
        args.action,
        move || -> anyhow::Result<_> {
            // Bound before the fork, so a port in use is reported to the terminal.
            let http = storage_http(&conf, &conf_path)?;
            let metrics = metrics_listener(&conf.daemon)?;
            let prepared = fdfs_storage::prepare(conf)?;
            Ok((prepared, http, metrics))
        },
        |(prepared, http, metrics), shutdown| async move {
            // Filled once the storage runs: what its HTTP server asks of it.
            let observed: Observed = Arc::default();
            let http_stats = match http {
                Some(parts) => Some(spawn_storage_http(parts, observed.clone(), &shutdown)?),
                None => None,
            };
            let stop = shutdown.clone();
            fdfs_storage::serve_observed(prepared, shutdown, move |observer| {
                let _ = observed.set(observer.clone());
                if let Some(l) = metrics {
                    spawn_metrics(l, StoragePages(observer, http_stats), stop);
                }
            })
            .await?;
            Ok(())
        },
    )?;
    Ok(())
}

/// The running storage, once it runs.
type Observed = Arc<OnceLock<Arc<fdfs_storage::observe::Observer>>>;

/// Starts the storage's built-in HTTP server. What it needs of the storage
/// itself (the group's members, the trackers' `storage_sync_file_max_delay`)
/// it reads from `observed`; its counters go to the storage's `/metrics`.
fn spawn_storage_http(
    (mut cfg, listener, access_log): StorageHttpParts,
    observed: Observed,
    shutdown: &fdfs_runtime::Shutdown,
) -> anyhow::Result<Arc<fdfs_http::storage::HttpStats>> {
    if cfg.peers.is_none() {
        cfg.peers = Some(group_members_of(observed.clone()));
    }
    if cfg.params_from_tracker {
        cfg.max_delay_source = Some(Arc::new(move || {
            observed.get().and_then(|o| o.sync_file_max_delay())
        }));
    }
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut server = fdfs_http::storage::StorageHttp::new(cfg);
    if let Some(log) = access_log {
        server = server.with_access_log(log);
    }
    let stats = server.stats();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = server
            .serve(listener, async move { stop.wait().await })
            .await
        {
            tracing::error!(error = %e, "storage HTTP stopped");
        }
    });
    Ok(stats)
}

/// The storage HTTP's view of the group (for "is the source server one of
/// ours" before it proxies or redirects): the members the storage's
/// trackers list, none until it runs.
fn group_members_of(observed: Observed) -> fdfs_http::storage::PeerSource {
    Arc::new(move || {
        observed.get().map_or_else(Vec::new, |o| {
            o.group_members()
                .into_iter()
                .filter_map(|(id, ip)| {
                    Some(fdfs_http::storage::PeerAddr {
                        id,
                        ip: ip.parse().ok()?,
                    })
                })
                .collect()
        })
    })
}

/// What the storage's built-in HTTP needs before the fork.
type StorageHttpParts = (
    fdfs_http::storage::StorageHttpConfig,
    std::net::TcpListener,
    Option<fdfs_http::access_log::AccessLog>,
);

/// The storage's built-in HTTP (what nginx + fastdfs-nginx-module did) on
/// `http.server_port` of storage.conf; 0 = off. A `mod_fastdfs.conf` beside
/// storage.conf (the FastDFS layout of /etc/fdfs) sets the response mode,
/// tokens and MIME types. With `use_access_log`, its requests go to
/// `logs/http_access.log` (nginx's format) beside `storage_access.log`.
fn storage_http(
    conf: &fdfs_conf::StorageConf,
    conf_path: &std::path::Path,
) -> anyhow::Result<Option<StorageHttpParts>> {
    if conf.http_server_port == 0 {
        return Ok(None);
    }
    let module_path = conf_path.with_file_name("mod_fastdfs.conf");
    let module = if module_path.exists() {
        Some(
            fdfs_conf::ModFastdfsConf::load(&module_path)
                .with_context(|| format!("cannot load {}", module_path.display()))?,
        )
    } else {
        None
    };
    let cfg = fdfs_http::storage::StorageHttpConfig::from_confs(conf, module.as_ref())?;
    let ip = listen_addr(&conf.daemon)?.ip();
    let addr = SocketAddr::new(ip, conf.http_server_port);
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
    listener.set_nonblocking(true)?;
    let access_log = match &conf.access_log {
        Some(a) => {
            let logs = conf.daemon.base_path.join("logs");
            let path = logs.join("http_access.log");
            std::fs::create_dir_all(&logs)
                .and_then(|()| fdfs_http::access_log::AccessLog::open(&path, a.rotation.keep_days))
                .map(Some)
                .with_context(|| format!("cannot open {}", path.display()))?
        }
        None => None,
    };
    Ok(Some((cfg, listener, access_log)))
}

fn report(prog: &str, e: anyhow::Error) -> ExitCode {
    eprintln!("{prog}: {e:#}");
    let code = e
        .downcast_ref::<rt::DaemonError>()
        .map(rt::DaemonError::exit_code)
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))
}

fn run_tracker(args: &DaemonArgs) -> anyhow::Result<()> {
    let conf = TrackerConf::load(&args.conf)
        .with_context(|| format!("cannot load {}", args.conf.display()))?;
    let d = &conf.daemon;
    let serve = serve_opts(d);
    let mut settings = fdfs_tracker::Settings::from_conf(&conf);
    if conf.use_storage_id {
        settings = settings.with_storage_ids(load_storage_ids(&conf)?);
    }
    let opts = fdfs_tracker::TrackerOpts {
        settings,
        base_path: d.base_path.clone(),
        port: d.port,
        serve: serve.clone(),
    };
    let bind = listen_addr(d)?;
    rt::run_prepared(
        daemon_opts("trackerd", d, args.foreground),
        args.action,
        || -> anyhow::Result<_> {
            let listener = std::net::TcpListener::bind(bind)
                .with_context(|| format!("cannot listen on {bind}"))?;
            listener.set_nonblocking(true)?;
            let metrics = metrics_listener(&conf.daemon)?;
            let tracker = fdfs_tracker::open(&opts)?;
            Ok((listener, tracker, metrics))
        },
        move |(listener, tracker, metrics), shutdown| async move {
            if let Some(l) = metrics {
                spawn_metrics(l, TrackerPages(tracker.clone()), shutdown.clone());
            }
            let listener = tokio::net::TcpListener::from_std(listener)?;
            fdfs_tracker::run(tracker, listener, serve, shutdown).await?;
            Ok(())
        },
    )?;
    Ok(())
}

/// The `metrics_port` listener on the daemon's address, bound before the
/// fork; `None` when the port is 0.
fn metrics_listener(d: &DaemonConf) -> anyhow::Result<Option<std::net::TcpListener>> {
    if d.metrics_port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(listen_addr(d)?.ip(), d.metrics_port);
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(Some(l))
}

/// Serves `/metrics` and `/status` of `pages` until `shutdown`.
fn spawn_metrics(
    listener: std::net::TcpListener,
    pages: impl fdfs_http::observe::Observed,
    shutdown: fdfs_runtime::Shutdown,
) {
    tokio::spawn(async move {
        let r = async {
            let l = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!(addr = ?l.local_addr().ok(), "metrics at /metrics and /status");
            fdfs_http::observe::serve(l, async move { shutdown.wait().await }, Arc::new(pages))
                .await
        };
        if let Err(e) = r.await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
}

struct TrackerPages(Arc<fdfs_tracker::Tracker>);

impl fdfs_http::observe::Observed for TrackerPages {
    fn metrics(&self) -> String {
        self.0.metrics()
    }
    fn status(&self) -> String {
        self.0.status()
    }
}

/// A storage's pages: its own state, and what its built-in HTTP answered
/// when it runs one.
struct StoragePages(
    Arc<fdfs_storage::observe::Observer>,
    Option<Arc<fdfs_http::storage::HttpStats>>,
);

impl fdfs_http::observe::Observed for StoragePages {
    fn metrics(&self) -> String {
        let mut page = self.0.metrics();
        if let Some(http) = &self.1 {
            let mut e = fdfs_runtime::metrics::Exposition::new();
            http.write(&mut e);
            page.push_str(&e.finish());
        }
        page
    }
    fn status(&self) -> String {
        self.0.status()
    }
}

/// storage_ids.conf of a tracker with `use_storage_id`: a file that is
/// missing or wrong stops the start (CONFIG.md §6), as do ids that cannot go
/// into file names with `id_type_in_filename = id`.
fn load_storage_ids(conf: &TrackerConf) -> anyhow::Result<fdfs_conf::StorageIds> {
    let path = &conf.storage_ids_filename;
    let mut ids = fdfs_conf::StorageIds::load(path)
        .with_context(|| format!("use_storage_id = true: cannot load {}", path.display()))?;
    // Before the fork: the terminal sees what did not resolve.
    for w in ids.resolve_names(&fdfs_conf::system_resolver, path) {
        eprintln!("warning: {w}");
    }
    if ids.entries.is_empty() {
        anyhow::bail!(
            "use_storage_id = true but {} lists no storage server",
            path.display()
        );
    }
    if conf.id_type_in_filename_is_id {
        ids.check_numeric_ids()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(ids)
}

/// Runtime options shared by every daemon.
pub fn daemon_opts(name: &str, d: &DaemonConf, foreground: bool) -> DaemonOpts {
    DaemonOpts {
        name: name.to_owned(),
        base_path: d.base_path.clone(),
        foreground,
        log_level: level(d.log_level),
        log_rotation: fdfs_storage::rotation(d.log_rotation),
        disabled: d.disabled,
        work_threads: d.work_threads as usize,
        run_by_group: d.run_by_group.clone(),
        run_by_user: d.run_by_user.clone(),
    }
}

/// Listener limits from the common daemon keys.
pub fn serve_opts(d: &DaemonConf) -> ServeOpts {
    let hosts = d.allow_hosts.clone();
    ServeOpts {
        allow_hosts: Allow::from_fn(move |ip| hosts.allows(ip)),
        max_connections: d.max_connections.max(1) as usize,
        network_timeout: d.network_timeout,
        max_body: d.buff_size,
    }
}

/// `bind_addr` (first of a comma list; empty = all IPv4 addresses) and `port`.
pub fn listen_addr(d: &DaemonConf) -> anyhow::Result<SocketAddr> {
    let first = d.bind_addr.split(',').next().unwrap_or("").trim();
    let ip: IpAddr = if first.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        first
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .with_context(|| format!("bind_addr {first:?} is not an IP address"))?
    };
    Ok(SocketAddr::new(ip, d.port))
}

fn level(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Emerg | LogLevel::Alert | LogLevel::Crit | LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Notice | LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    }
}

//! Start, stop and restart a server the way `fdfs_trackerd conf start`
//! does: refuse when `disabled`, one instance per base_path (an exclusive
//! `flock` on `<base_path>/data/fdfs_<name>.pid`), fork into the background
//! unless `foreground`, log to `<base_path>/logs/<name>.log`, build the
//! tokio runtime only after the fork (a runtime's threads do not survive
//! `fork`), run until SIGTERM/SIGINT, remove the pid file.
//!
//! The lock is taken before forking: the child inherits the locked open
//! file description, so the lock stays held after the parent exits and a
//! second `start` fails with a message naming the running pid. `stop`
//! decides "still running" by the lock, not by the pid alone, so a stale pid
//! file left by a crash (or a recycled pid) is harmless.

use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{error, info};
use tracing_subscriber::filter::LevelFilter;

use crate::logfile::LogFile;
use crate::Shutdown;

/// How long `stop` waits for the process to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Start,
    Stop,
    Restart,
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            _ => Err(format!(
                "unknown action {s:?}: expected start, stop or restart"
            )),
        }
    }
}

/// Who the daemon is and where it keeps its files.
#[derive(Debug, Clone)]
pub struct DaemonOpts {
    /// `trackerd` or `storaged`: names the pid file and the log file.
    pub name: String,
    pub base_path: PathBuf,
    /// Stay attached to the terminal (systemd, tests); logs also go to stderr.
    pub foreground: bool,
    pub log_level: LevelFilter,
    /// When the log file is rotated (`log_file_rotate_*`, `log_file_keep_days`).
    pub log_rotation: crate::logfile::Rotation,
    /// `disabled = true` in the .conf: refuse to start.
    pub disabled: bool,
    /// `work_threads`: async worker threads, at most one per core.
    pub work_threads: usize,
    /// `run_by_group` / `run_by_user`: who to become at start (empty: stay).
    pub run_by_group: String,
    pub run_by_user: String,
}

impl DaemonOpts {
    pub fn pid_path(&self) -> PathBuf {
        self.base_path
            .join("data")
            .join(format!("fdfs_{}.pid", self.name))
    }

    pub fn log_path(&self) -> PathBuf {
        self.base_path
            .join("logs")
            .join(format!("{}.log", self.name))
    }
}

/// Why a start, stop or restart failed.
#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("{name} is disabled in its config file (disabled = true), not starting")]
    Disabled { name: String },
    #[error("{name} is already running with pid {pid} (lock held on {path})")]
    AlreadyRunning {
        name: String,
        pid: String,
        path: PathBuf,
    },
    #[error("{name} is not running (no live process holds {path})")]
    NotRunning { name: String, path: PathBuf },
    #[error("{name} (pid {pid}) did not exit within {secs} s after SIGTERM")]
    StopTimeout { name: String, pid: i32, secs: u64 },
    #[error("base_path {0} does not exist or is not a directory")]
    NoBasePath(PathBuf),
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Serve(Box<dyn StdError + Send + Sync>),
}

impl DaemonError {
    /// Process exit code for this error (FastDFS uses errno values).
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Disabled { .. } => libc::ECANCELED,
            DaemonError::AlreadyRunning { .. } => libc::EEXIST,
            DaemonError::NotRunning { .. } => libc::ENOENT,
            DaemonError::StopTimeout { .. } => libc::ETIMEDOUT,
            DaemonError::NoBasePath(_) => libc::ENOENT,
            DaemonError::Privileges(_) => libc::EPERM,
            DaemonError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            DaemonError::Serve(_) => 1,
        }
    }
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// An exclusively locked pid file. The lock lives as long as the open file
/// description (also across `fork`).
#[derive(Debug)]
pub struct PidLock {
    file: File,
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock or reports who holds it.
    pub fn acquire(path: &Path, name: &str) -> Result<PidLock, DaemonError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("cannot open pid file", path))?;
        if try_flock(&file).map_err(io_err("cannot lock pid file", path))? {
            return Ok(PidLock {
                file,
                path: path.to_owned(),
            });
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        Err(DaemonError::AlreadyRunning {
            name: name.to_owned(),
            pid: if pid.is_empty() {
                "unknown".into()
            } else {
                pid.to_owned()
            },
            path: path.to_owned(),
        })
    }

    /// Writes our pid (after the fork: the child's pid).
    pub fn write_pid(&mut self, pid: u32) -> Result<(), DaemonError> {
        let path = self.path.clone();
        let f = &mut self.file;
        (|| {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            writeln!(f, "{pid}")?;
            f.sync_data()
        })()
        .map_err(io_err("cannot write pid file", &path))
    }

    /// Removes the file; the lock goes with the descriptor.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when someone else holds it.
fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a valid, owned descriptor has no memory effects.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Runs `action`. `serve` runs until its [`Shutdown`] fires (SIGTERM or
/// SIGINT) and should return soon after.
pub fn run<F, Fut, E>(opts: DaemonOpts, action: Action, serve: F) -> Result<(), DaemonError>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    run_prepared(
        opts,
        action,
        || Ok::<(), E>(()),
        move |(), shutdown| serve(shutdown),
    )
}

/// Like [`run`], with a synchronous `prepare` step that runs after the pid
/// lock is taken and before the fork, so errors such as "port in use" reach
/// the terminal. Its result is handed to `serve` (e.g. a bound std listener).
pub fn run_prepared<P, T, F, Fut, E>(
    opts: DaemonOpts,
    action: Action,
    prepare: P,
    serve: F,
) -> Result<(), DaemonError>
where
    P: FnOnce() -> Result<T, E>,
    F: FnOnce(T, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    match action {
        Action::Stop => stop(&opts),
        Action::Restart => {
            match stop(&opts) {
                Ok(()) | Err(DaemonError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
            start(opts, prepare, serve)
        }
        Action::Start => start(opts, prepare, serve),
    }
}

fn start<P, T, F, Fut, E>(opts: DaemonOpts, prepare: P, serve: F) -> Result<(), DaemonError>
where
    P: FnOnce() -> Result<T, E>,
    F: FnOnce(T, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    if opts.disabled {
        return Err(DaemonError::Disabled { name: opts.name });
    }
    if !opts.base_path.is_dir() {
        return Err(DaemonError::NoBasePath(opts.base_path));
    }
    // Before anything is created: every file is then the user's.
    crate::privileges::run_as(&opts.run_by_group, &opts.run_by_user)?;
    for dir in ["data", "logs"] {
        let d = opts.base_path.join(dir);
        std::fs::create_dir_all(&d).map_err(io_err("cannot create directory", &d))?;
    }
    let pid_path = opts.pid_path();
    let mut lock = PidLock::acquire(&pid_path, &opts.name)?;
    let state = prepare().map_err(|e| DaemonError::Serve(e.into()))?;
    let log_path = opts.log_path();
    let log = Arc::new(
        LogFile::open(&log_path, opts.log_rotation)
            .map_err(io_err("cannot open log file", &log_path))?,
    );
    let ready = if opts.foreground {
        None
    } else {
        Some(daemonize().map_err(io_err("cannot daemonize", &opts.base_path))?)
    };
    lock.write_pid(std::process::id())?;
    init_logging(log.clone(), opts.foreground, opts.log_level);

    limit_malloc_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads(opts.work_threads))
        .enable_all()
        .thread_name(format!("fdfs-{}", opts.name))
        .build()
        .map_err(io_err(
            "cannot start the async runtime for",
            &opts.base_path,
        ))?;
    // Handlers go in before the launcher is released: a `stop` right after
    // `start` must shut down cleanly, not die of SIGTERM's default action
    // and leave the pid file behind.
    let signals = rt.block_on(async { Signals::install() }).map_err(io_err(
        "cannot install signal handlers for",
        &opts.base_path,
    ))?;
    if let Some(r) = ready {
        // The pid file is complete: the parent may exit now.
        r.notify();
    }
    info!(name = %opts.name, pid = std::process::id(), base_path = %opts.base_path.display(), "started");
    let result = rt.block_on(async {
        let shutdown = Shutdown::new();
        let watcher = tokio::spawn(watch_signals(signals, log, shutdown.clone()));
        let r = serve(state, shutdown.clone()).await;
        shutdown.trigger();
        watcher.abort();
        r
    });
    // Stray tasks must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    lock.remove();
    match result {
        Ok(()) => {
            info!(name = %opts.name, "stopped");
            Ok(())
        }
        Err(e) => {
            let e = e.into();
            error!(name = %opts.name, error = %e, "stopped with an error");
            Err(DaemonError::Serve(e))
        }
    }
}

/// SIGTERM and SIGINT (shut down) and SIGHUP (reopen the log file),
/// registered with the runtime.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// `_log` is the daemon's log, held open while signals are watched;
/// SIGHUP reaches it, and every other log file, through
/// [`crate::logfile::reopen_all`].
async fn watch_signals(mut signals: Signals, _log: Arc<LogFile>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = signals.term.recv() => info!("SIGTERM received, shutting down"),
            _ = signals.int.recv() => info!("SIGINT received, shutting down"),
            _ = signals.hup.recv() => {
                // The daemon's log and the others (access logs) alike.
                for (path, r) in crate::logfile::reopen_all() {
                    match r {
                        Ok(()) => info!(path = %path.display(), "SIGHUP received, log file reopened"),
                        Err(e) => error!(path = %path.display(), "SIGHUP received, cannot reopen the log file: {e}"),
                    }
                }
                continue;
            }
            _ = shutdown.wait() => return,
        }
        shutdown.trigger();
        return;
    }
}

/// Tells the waiting parent that the child is up (pid file written).
struct Ready(std::os::fd::OwnedFd);

impl Ready {
    fn notify(self) {
        let mut f = File::from(self.0);
        let _ = f.write_all(b"1");
    }
}

/// fork + setsid, stdio to /dev/null. The parent waits until the child
/// has written its pid file (so `start; cat pid` works), then exits 0, or
/// 1 if the child died first. Must be called while the process has a single
/// thread.
fn daemonize() -> std::io::Result<Ready> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (rd, wr) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: called before any thread is spawned (no tokio runtime yet).
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        _ => {
            drop(wr);
            let mut f = File::from(rd);
            let mut b = [0u8; 1];
            let ok = matches!(f.read(&mut b), Ok(1));
            if !ok {
                eprintln!("the daemon exited during start-up; see its log file");
            }
            // SAFETY: leave without running the child's share of destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
    }
    drop(rd);
    // SAFETY: setsid has no memory effects.
    if unsafe { libc::setsid() } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors of our own process.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Ready(wr))
}

fn init_logging(log: Arc<LogFile>, foreground: bool, level: LevelFilter) {
    use tracing_subscriber::prelude::*;
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(log);
    let stderr_layer = foreground.then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
    });
    // A subscriber may already be set (tests running several daemons in one
    // process); keep the first one then.
    let _ = tracing_subscriber::registry()
        .with(level)
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
}

/// Worker threads for `work_threads`: never more than the cores, since a
/// worker beyond them only adds switches (FastDFS's default of 4 means 2 on
/// a 2-core machine). `block_in_place` still works with a single worker:
/// it hands the worker's queue to another thread.
fn worker_threads(work_threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    work_threads.clamp(1, cores)
}

/// glibc gives each thread that allocates its own arena (up to 8 per
/// core), and each keeps the pages it once used. Our servers' threads are
/// mostly tokio's blocking pool, briefly busy: two arenas serve them, and
/// the storages' resident size fell by 10–25% at the same throughput
/// (docs/benchmarks.md, run L).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter that glibc reads when it
    // creates an arena; the runtime's threads do not exist yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Sends SIGTERM to the process holding the pid lock and waits until the
/// lock is released (the process is gone).
pub fn stop(opts: &DaemonOpts) -> Result<(), DaemonError> {
    let path = opts.pid_path();
    let not_running = || DaemonError::NotRunning {
        name: opts.name.clone(),
        path: path.clone(),
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_running()),
        Err(e) => return Err(io_err("cannot open pid file", &path)(e)),
    };
    if try_flock(&file).map_err(io_err("cannot lock pid file", &path))? {
        // Nobody holds it: a stale file from a crash.
        let _ = std::fs::remove_file(&path);
        return Err(not_running());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(io_err("cannot read pid file", &path))?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| DaemonError::Io {
            what: "no valid pid in",
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, text.trim().to_owned()),
        })?;
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(io_err("cannot signal the process of", &path)(e));
        }
    }
    let end = Instant::now() + STOP_TIMEOUT;
    loop {
        if try_flock(&file).map_err(io_err("cannot lock pid file", &path))? {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(DaemonError::StopTimeout {
                name: opts.name.clone(),
                pid,
                secs: STOP_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> DaemonOpts {
        DaemonOpts {
            name: "testd".into(),
            base_path: dir.to_owned(),
            foreground: true,
            log_level: LevelFilter::INFO,
            log_rotation: Default::default(),
            disabled: false,
            work_threads: 4,
            run_by_group: String::new(),
            run_by_user: String::new(),
        }
    }

    #[test]
    fn pid_lock_is_exclusive_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut a = PidLock::acquire(&o.pid_path(), "testd").unwrap();
        a.write_pid(4242).unwrap();
        let e = PidLock::acquire(&o.pid_path(), "testd").unwrap_err();
        match &e {
            DaemonError::AlreadyRunning { pid, .. } => assert_eq!(pid, "4242"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("4242"), "{e}");
        assert_eq!(
            std::fs::read_to_string(o.pid_path()).unwrap().trim(),
            "4242"
        );
        a.remove();
        assert!(!o.pid_path().exists());
        // Free again.
        let b = PidLock::acquire(&o.pid_path(), "testd").unwrap();
        drop(b);
        // Dropping without remove also frees the lock (process death).
        PidLock::acquire(&o.pid_path(), "testd").unwrap();
    }

    #[test]
    fn stop_without_a_running_instance() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        assert!(matches!(stop(&o), Err(DaemonError::NotRunning { .. })));
        // A stale pid file (nobody holds the lock) is cleaned up.
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(o.pid_path(), "999999\n").unwrap();
        assert!(matches!(stop(&o), Err(DaemonError::NotRunning { .. })));
        assert!(!o.pid_path().exists());
    }

    #[test]
    fn disabled_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.disabled = true;
        let e = run(o, Action::Start, |_s| async {
            Ok::<(), std::io::Error>(())
        })
        .unwrap_err();
        assert!(matches!(e, DaemonError::Disabled { .. }));
        assert_eq!(e.exit_code(), libc::ECANCELED);
        assert!(e.to_string().contains("disabled"));
    }

    #[test]
    fn missing_base_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(&dir.path().join("nope"));
        let e = run(o, Action::Start, |_s| async {
            Ok::<(), std::io::Error>(())
        })
        .unwrap_err();
        assert!(matches!(e, DaemonError::NoBasePath(_)));
    }

    #[test]
    fn foreground_start_runs_serve_and_removes_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        let pid_path = o.pid_path();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen2 = seen.clone();
        run(o, Action::Start, move |shutdown| async move {
            *seen2.lock().unwrap() = std::fs::read_to_string(&pid_path).unwrap();
            // Serve until shut down; trigger it ourselves like a signal would.
            shutdown.trigger();
            shutdown.wait().await;
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
        assert_eq!(seen.lock().unwrap().trim(), std::process::id().to_string());
        assert!(!opts(dir.path()).pid_path().exists());
        assert!(dir.path().join("logs/testd.log").exists());
    }

    #[test]
    fn work_threads_sets_the_workers_up_to_the_cores() {
        let cores = std::thread::available_parallelism().unwrap().get();
        for (wanted, expected) in [(1, 1), (4, cores.min(4)), (1024, cores)] {
            let dir = tempfile::tempdir().unwrap();
            let mut o = opts(dir.path());
            o.work_threads = wanted;
            let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let seen2 = seen.clone();
            run(o, Action::Start, move |_shutdown| async move {
                let n = tokio::runtime::Handle::current().metrics().num_workers();
                seen2.store(n, std::sync::atomic::Ordering::Relaxed);
                Ok::<(), std::io::Error>(())
            })
            .unwrap();
            assert_eq!(
                seen.load(std::sync::atomic::Ordering::Relaxed),
                expected,
                "work_threads = {wanted}"
            );
        }
    }

    #[test]
    fn action_parses() {
        assert_eq!("start".parse::<Action>().unwrap(), Action::Start);
        assert_eq!("stop".parse::<Action>().unwrap(), Action::Stop);
        assert_eq!("restart".parse::<Action>().unwrap(), Action::Restart);
        assert!("reload".parse::<Action>().is_err());
    }
}

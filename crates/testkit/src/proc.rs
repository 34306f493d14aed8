//! Server processes under test.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for_port, wait_until, write_file};

/// A child process whose stdout and stderr go to a log file.
pub struct Proc {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `bin args...` with extra environment, logging to `log`.
    pub fn spawn(
        name: &str,
        bin: impl AsRef<Path>,
        args: &[&str],
        env: &[(&str, &str)],
        log: impl AsRef<Path>,
    ) -> Proc {
        let mut p = Proc {
            name: name.to_owned(),
            bin: bin.as_ref().to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: log.as_ref().to_owned(),
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", self.log.display()));
        let err = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then wait (SIGKILL after 15 s). Returns the exit code.
    pub fn kill(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let mut code = None;
        let exited = wait_until(Duration::from_secs(15), || match c.try_wait() {
            Ok(Some(s)) => {
                code = s.code();
                true
            }
            _ => false,
        });
        if !exited {
            let _ = c.kill();
            let _ = c.wait();
        }
        code
    }

    /// SIGKILL (a crash): no cleanup runs in the child.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops (SIGTERM) and starts again with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let mut code = None;
        if wait_until(timeout, || match c.try_wait() {
            Ok(Some(s)) => {
                code = Some(s.code().unwrap_or(-1));
                true
            }
            _ => false,
        }) {
            self.child = None;
        }
        code
    }

    /// The log so far (for assertions and failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tracker started as `fdfs tracker <conf> start --foreground`.
pub struct TrackerProc {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub base: PathBuf,
    pub conf: PathBuf,
}

impl TrackerProc {
    /// Defaults suited to tests; `extra` lines (`key = value`) replace a
    /// default with the same key or are appended.
    pub const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("disabled", "false"),
        ("network_timeout", "5"),
        ("max_connections", "64"),
        ("check_active_interval", "2"),
        ("log_level", "debug"),
        ("store_lookup", "0"),
        ("store_server", "0"),
        ("store_path", "0"),
        ("download_server", "0"),
        // A size, not a ratio: tests must not start failing with ENOSPC
        // because the shared disk they run on is 90% full.
        ("reserved_storage_space", "64MB"),
        ("allow_hosts", "*"),
    ];

    /// Writes `<dir>/tracker-<ip>-<port>/tracker.conf` and starts the
    /// tracker on `ip` and a free port; waits until it accepts connections.
    pub fn start(bin: impl AsRef<Path>, dir: &Path, ip: Ipv4Addr, extra: &[&str]) -> TrackerProc {
        let bin = bin.as_ref();
        // The free port may be taken by someone else before the tracker
        // binds it: then the tracker exits at once and we try another.
        for _ in 0..3 {
            let port = free_port(ip);
            let base = dir.join(format!("tracker-{ip}-{port}"));
            std::fs::create_dir_all(&base).expect("create tracker base_path");
            let conf = base.join("tracker.conf");
            write_file(&conf, &Self::conf_text(ip, port, &base, extra));
            let mut t = Self::start_with_conf(bin, &conf, SocketAddr::from((ip, port)), &base);
            let up = wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&t.addr, Duration::from_millis(200)).is_ok()
                    || !t.proc.is_running()
            });
            if up && t.proc.is_running() {
                return t;
            }
            if !t.proc.log_text().contains("cannot listen") {
                panic!(
                    "tracker did not listen on {}; log:\n{}",
                    t.addr,
                    t.proc.log_text()
                );
            }
        }
        panic!("tracker could not get a free port on {ip}");
    }

    /// The tracker.conf text [`TrackerProc::start`] writes.
    pub fn conf_text(ip: Ipv4Addr, port: u16, base: &Path, extra: &[&str]) -> String {
        let fixed = [
            ("bind_addr", ip.to_string()),
            ("port", port.to_string()),
            ("base_path", base.display().to_string()),
        ];
        crate::conf_text(&fixed, Self::DEFAULTS, extra, &[])
    }

    /// Starts a tracker with an existing conf (no waiting).
    pub fn start_with_conf(
        bin: impl AsRef<Path>,
        conf: &Path,
        addr: SocketAddr,
        base: &Path,
    ) -> TrackerProc {
        let conf_s = conf.display().to_string();
        let proc = Proc::spawn(
            &format!("tracker {addr}"),
            bin,
            &["tracker", &conf_s, "start", "--foreground"],
            &[],
            base.join("stdout.log"),
        );
        TrackerProc {
            proc,
            addr,
            base: base.to_owned(),
            conf: conf.to_owned(),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Option<i32> {
        self.proc.kill()
    }

    /// Stops and starts again on the same address and base_path.
    pub fn restart(&mut self) {
        self.proc.restart();
        assert!(
            wait_for_port(self.addr, Duration::from_secs(10)),
            "tracker did not come back on {}; log:\n{}",
            self.addr,
            self.proc.log_text()
        );
    }

    pub fn pid_file(&self) -> PathBuf {
        self.base.join("data/fdfs_trackerd.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.base.join("logs/trackerd.log")
    }
}

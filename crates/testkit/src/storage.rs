//! A storage server under test: `fdfs storage <conf> start --foreground`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{free_port, wait_for_port, write_file, Proc};

/// A storage process with its own base_path (also its store_path0).
pub struct StorageProc {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub base: PathBuf,
    pub conf: PathBuf,
    pub group: String,
}

impl StorageProc {
    /// Defaults suited to tests (short intervals, few sub-directories);
    /// `extra` lines (`key = value`) replace a default or are appended.
    pub const DEFAULTS: &'static [(&'static str, &'static str)] = &[
        ("disabled", "false"),
        ("network_timeout", "5"),
        ("max_connections", "256"),
        ("heart_beat_interval", "1"),
        ("stat_report_interval", "1"),
        ("sync_stat_file_interval", "1"),
        ("subdir_count_per_path", "8"),
        ("log_level", "debug"),
        ("allow_hosts", "*"),
        // The default journal (2 × 64MB, written out on the first start)
        // would cost every test storage 128 MiB of writes.
        ("journal_file_size", "1MB"),
    ];

    /// Writes `<dir>/storage-<ip>-<port>/storage.conf` and starts a storage
    /// of `group` on `ip` reporting to `trackers`; waits for its port.
    pub fn start(
        bin: impl AsRef<Path>,
        dir: &Path,
        ip: Ipv4Addr,
        group: &str,
        trackers: &[SocketAddr],
        extra: &[&str],
    ) -> StorageProc {
        Self::start_env(bin, dir, ip, group, trackers, extra, &[])
    }

    /// Like [`StorageProc::start`] with extra environment variables (e.g.
    /// fault injection: `FDFS_FAULT_DISK_FULL_AFTER`).
    pub fn start_env(
        bin: impl AsRef<Path>,
        dir: &Path,
        ip: Ipv4Addr,
        group: &str,
        trackers: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> StorageProc {
        Self::start_at(bin, dir, ip, free_port(ip), group, trackers, extra, env)
    }

    /// Like [`StorageProc::start_env`] on a given port: the servers of a
    /// group share one (the tracker refuses a join with another). The same
    /// `dir`, `ip` and `port` give the same base path, so a restart keeps
    /// the data.
    #[allow(clippy::too_many_arguments)]
    pub fn start_at(
        bin: impl AsRef<Path>,
        dir: &Path,
        ip: Ipv4Addr,
        port: u16,
        group: &str,
        trackers: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> StorageProc {
        let base = dir.join(format!("storage-{ip}-{port}"));
        std::fs::create_dir_all(&base).expect("create storage base_path");
        let conf = base.join("storage.conf");
        write_file(
            &conf,
            &Self::conf_text(ip, port, &base, group, trackers, extra),
        );
        let addr = SocketAddr::from((ip, port));
        let conf_s = conf.display().to_string();
        let proc = Proc::spawn(
            &format!("storage {addr}"),
            bin,
            &["storage", &conf_s, "start", "--foreground"],
            env,
            base.join("stdout.log"),
        );
        let s = StorageProc {
            proc,
            addr,
            base,
            conf,
            group: group.to_owned(),
        };
        s.wait_ready();
        s
    }

    /// The storage.conf text [`StorageProc::start`] writes.
    pub fn conf_text(
        ip: Ipv4Addr,
        port: u16,
        base: &Path,
        group: &str,
        trackers: &[SocketAddr],
        extra: &[&str],
    ) -> String {
        let fixed = [
            ("group_name", group.to_owned()),
            ("bind_addr", ip.to_string()),
            ("port", port.to_string()),
            ("base_path", base.display().to_string()),
            ("store_path0", base.display().to_string()),
        ];
        // tracker_server is a repeated key: one line per tracker.
        let trackers: Vec<_> = trackers
            .iter()
            .map(|t| ("tracker_server", t.to_string()))
            .collect();
        crate::conf_text(&fixed, Self::DEFAULTS, extra, &trackers)
    }

    fn wait_ready(&self) {
        assert!(
            wait_for_port(self.addr, Duration::from_secs(20)),
            "storage did not listen on {}; log:\n{}",
            self.addr,
            self.proc.log_text()
        );
    }

    /// SIGTERM and wait; the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.proc.kill()
    }

    /// SIGKILL (a crash).
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts again (after `stop` or `kill9`) on the same address and data.
    pub fn restart(&mut self) {
        self.proc.restart();
        self.wait_ready();
    }

    /// `<store_path0>/data`: where `Mxx/HH/HH/name` files live.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.base.join("data/fdfs_storaged.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.base.join("logs/storaged.log")
    }
}

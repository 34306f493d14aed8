//! The harness integration tests use: temporary data folders, real server
//! processes (the `fdfs` binary) on loopback addresses, waiting helpers,
//! and a blocking wire-protocol client for precise byte-level checks.
//!
//! It must not contain server logic or fake a server: tests talk to the
//! real binaries. Everything is blocking (std), so tests need no runtime.
//! Roles add their own `XxxProc` next to [`TrackerProc`].

mod proc;
pub mod storage;
mod wire;

pub use proc::{Proc, TrackerProc};
pub use wire::Wire;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A temporary folder, removed on drop unless `FDFS_KEEP=1` or the test is
/// panicking (then its path is printed so logs can be read).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("fdfs-{prefix}-"))
            .tempdir()
            .expect("create a temporary directory");
        let path = dir.path().to_owned();
        TestDir {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::env::var("FDFS_KEEP").is_ok_and(|v| v == "1") || std::thread::panicking();
        if let Some(d) = self.dir.take() {
            if keep {
                let p = d.keep();
                eprintln!("fdfs-testkit: kept test directory {}", p.display());
            }
        }
    }
}

/// A port that was free on `ip` a moment ago (bind port 0, then release).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A loopback address 127.0.x.y not likely used by a parallel test.
pub fn random_loopback() -> Ipv4Addr {
    let n = std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0));
    Ipv4Addr::new(127, 0, 100 + (n % 100) as u8, 2 + ((n >> 8) % 250) as u8)
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `text` to `path`, creating parent folders.
pub fn write_file(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create parent directory");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

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

/// A /24 `127.0.N.0` with N in `first..first + span`, not likely used by
/// a parallel test, and a port free on each `127.0.N.<host>`: the servers
/// of a group share one port, each on its own address.
pub fn group_net_and_port(first: u8, span: u8, hosts: &[u8]) -> (u8, u16) {
    let seed = u64::from(std::process::id())
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    let net = first + (seed % u64::from(span.max(1))) as u8;
    let ip = |h: u8| Ipv4Addr::new(127, 0, net, h);
    loop {
        let p = free_port(ip(hosts[0]));
        if hosts[1..]
            .iter()
            .all(|&h| TcpListener::bind((ip(h), p)).is_ok())
        {
            return (net, p);
        }
    }
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

/// The body of the first message in the golden capture
/// `testdata/golden/wire/<file>` whose note starts with `note`.
pub fn golden_body(file: &str, note: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/golden/wire")
        .join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let line = text
        .lines()
        .find(|l| l.contains(&format!("\"note\": \"{note}")))
        .unwrap_or_else(|| panic!("{note} not in {file}"));
    let hex = line
        .split("\"body_hex\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A conf file's `key = value` lines: `fixed`, then `defaults`, where an
/// `extra` line (`key = value`) replaces the value of the same key or is
/// appended; then `repeated` (keys that may occur more than once).
fn conf_text(
    fixed: &[(&str, String)],
    defaults: &[(&str, &str)],
    extra: &[&str],
    repeated: &[(&str, String)],
) -> String {
    let mut kv: Vec<(String, String)> = fixed
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain(defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    for line in extra {
        if let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            match kv.iter_mut().find(|(kk, _)| *kk == k) {
                Some(e) => e.1 = v,
                None => kv.push((k, v)),
            }
        }
    }
    kv.extend(repeated.iter().map(|(k, v)| (k.to_string(), v.clone())));
    kv.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// Writes `text` to `path`, creating parent folders.
pub fn write_file(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create parent directory");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

//! Test harness for the storage integration tests: real `fdfs tracker` and
//! `fdfs storage` processes on loopback, each in its own temporary folder,
//! and a tiny blocking client over `fdfs-proto`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_proto::{cmd, Header, HEADER_LEN};

pub const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

/// Polls `f` (testkit's [`fdfs_testkit::wait_until`]); panics when it is
/// not true within `timeout`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        fdfs_testkit::wait_until(timeout, f),
        "timed out waiting for {what}"
    );
}

pub use fdfs_testkit::storage::StorageProc;
pub use fdfs_testkit::TrackerProc;

/// A tracker on 127.0.0.1 with testkit's defaults plus `extra` lines.
pub fn start_tracker(dir: &Path, extra: &[&str]) -> TrackerProc {
    TrackerProc::start(BIN, dir, Ipv4Addr::LOCALHOST, extra)
}

pub struct StorageOpts<'a> {
    pub ip: Ipv4Addr,
    pub extra: Vec<&'a str>,
    pub env: Vec<(&'a str, &'a str)>,
}

impl Default for StorageOpts<'_> {
    fn default() -> Self {
        StorageOpts::on(Ipv4Addr::LOCALHOST)
    }
}

impl StorageOpts<'_> {
    /// A storage on `ip` with no extra conf lines or environment.
    pub fn on(ip: impl Into<Ipv4Addr>) -> Self {
        StorageOpts {
            ip: ip.into(),
            extra: vec![],
            env: vec![],
        }
    }
}

/// A group1 storage reporting to `tracker`; network_timeout is 2 s so
/// stall tests are quick.
pub fn start_storage(dir: &Path, tracker: &TrackerProc, o: StorageOpts<'_>) -> StorageProc {
    let mut extra = vec!["network_timeout = 2"];
    extra.extend(o.extra);
    StorageProc::start_env(BIN, dir, o.ip, "group1", &[tracker.addr], &extra, &o.env)
}

/// A fresh temporary folder with a tracker (testkit's defaults plus
/// `tracker_extra`) and a storage reporting to it. Keep the folder bound
/// (`let (_dir, ..)`) for as long as the processes run.
pub fn start_cluster(
    tracker_extra: &[&str],
    o: StorageOpts<'_>,
) -> (tempfile::TempDir, TrackerProc, StorageProc) {
    let dir = tempfile::tempdir().unwrap();
    let tracker = start_tracker(dir.path(), tracker_extra);
    let storage = start_storage(dir.path(), &tracker, o);
    (dir, tracker, storage)
}

/// Everything the storage logged so far.
pub fn storage_log(s: &StorageProc) -> String {
    let mut t = s.proc.log_text();
    t.push_str(&std::fs::read_to_string(s.log_file()).unwrap_or_default());
    t
}

/// A tiny blocking FastDFS client for tests.
pub struct Client {
    pub s: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s }
    }

    pub fn send(&mut self, code: u8, status: u8, body: &[u8]) {
        self.s
            .write_all(&fdfs_proto::encode_frame(code, status, body))
            .unwrap();
    }

    pub fn read_reply(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; HEADER_LEN];
        self.s.read_exact(&mut h)?;
        let h = Header::decode(&h, 1 << 40).unwrap();
        assert_eq!(h.cmd, cmd::RESP);
        let mut b = vec![0u8; h.pkg_len as usize];
        self.s.read_exact(&mut b)?;
        Ok((h.status, b))
    }

    pub fn call(&mut self, code: u8, body: &[u8]) -> (u8, Vec<u8>) {
        self.send(code, 0, body);
        self.read_reply().unwrap()
    }

    /// True if the server closed the connection (within 5 s).
    pub fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }

    /// True if the connection is still served: ACTIVE_TEST answers 0.
    pub fn alive(&mut self) -> bool {
        self.send(cmd::ACTIVE_TEST, 0, &[]);
        matches!(self.read_reply(), Ok((0, b)) if b.is_empty())
    }
}

pub fn group16(g: &str) -> Vec<u8> {
    let mut v = g.as_bytes().to_vec();
    v.resize(16, 0);
    v
}

/// The fixed head of an upload body announcing `size` bytes of content.
pub fn upload_head(path: i8, size: u64, ext: &str) -> Vec<u8> {
    let mut b = Vec::new();
    fdfs_proto::storage::UploadHead {
        store_path_index: path,
        file_size: size,
        ext: ext.into(),
    }
    .encode(&mut b);
    b
}

pub fn upload_body(path: i8, data: &[u8], ext: &str) -> Vec<u8> {
    let mut b = upload_head(path, data.len() as u64, ext);
    b.extend_from_slice(data);
    b
}

/// The logic filename in a file id reply (group16 + name).
pub fn reply_name(reply: &[u8]) -> String {
    String::from_utf8(reply[16..].to_vec()).unwrap()
}

/// Uploads; returns the logic filename (without group) or the status.
pub fn upload(c: &mut Client, code: u8, data: &[u8], ext: &str) -> Result<String, u8> {
    let (st, b) = c.call(code, &upload_body(-1, data, ext));
    if st != 0 {
        return Err(st);
    }
    assert_eq!(&b[..16], &group16("group1")[..]);
    Ok(reply_name(&b))
}

pub fn name_body(name: &str) -> Vec<u8> {
    let mut b = group16("group1");
    b.extend_from_slice(name.as_bytes());
    b
}

pub fn download(c: &mut Client, name: &str, off: u64, len: u64) -> Result<Vec<u8>, u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(off as i64).to_be_bytes());
    b.extend_from_slice(&(len as i64).to_be_bytes());
    b.extend_from_slice(&name_body(name));
    let (st, body) = c.call(cmd::storage::DOWNLOAD_FILE, &b);
    if st != 0 {
        return Err(st);
    }
    Ok(body)
}

/// Every regular file under `dir` (recursively), for "nothing left behind" checks.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The storage's binlog so far (`data/sync/binlog.000`).
pub fn binlog(s: &StorageProc) -> String {
    std::fs::read_to_string(s.base.join("data/sync/binlog.000")).unwrap()
}

/// True when no temporary (partial) file is left in `data/.tmp`.
pub fn no_temp_files(s: &StorageProc) -> bool {
    files_under(&s.base.join("data/.tmp")).is_empty()
}

/// Data files in the store (under data/HH/HH), excluding metadata sidecars.
pub fn stored_files(base: &Path) -> Vec<PathBuf> {
    files_under(&base.join("data"))
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(base.join("data")).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .to_string();
            first.len() == 2 && first.chars().all(|c| c.is_ascii_hexdigit())
        })
        .collect()
}

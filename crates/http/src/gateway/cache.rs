//! The gateway's disk cache (what nginx `proxy_cache` does in the guide):
//! one file per cached response (a small text header, then the body),
//! bounded in total size, entries valid for `valid` and dropped after
//! `inactive` without a hit; least recently used entries go first when the
//! cache is over its size.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use crate::body::{Content, SMALL_FILE};

const MAGIC: &str = "FDFSGW1";
/// A cache file's header is at most this long (the key is ≤ 8 KiB).
const MAX_HEADER: usize = 16 * 1024;

/// What a cached response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedMeta {
    pub key: String,
    /// Unix seconds when it was stored.
    pub created: u64,
    pub content_type: String,
    /// Unix seconds (from the upstream's Last-Modified).
    pub last_modified: u64,
    pub body_len: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    created: u64,
    /// Unix milliseconds of the last hit (or the store).
    last_access: u64,
    file_size: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    total: u64,
}

/// A bounded on-disk response cache.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    max_size: u64,
    inactive: Duration,
    valid: Duration,
    state: Mutex<State>,
    seq: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hash(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in Md5::digest(key.as_bytes()) {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

impl Cache {
    /// Opens (creating) the cache directory and indexes what is there.
    pub fn open(
        dir: &Path,
        max_size: u64,
        inactive: Duration,
        valid: Duration,
    ) -> io::Result<Cache> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Leftovers of interrupted stores.
        for e in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(e?.path());
        }
        let cache = Cache {
            dir: dir.to_path_buf(),
            max_size,
            inactive,
            valid,
            state: Mutex::new(State::default()),
            seq: AtomicU64::new(0),
        };
        cache.load_index()?;
        cache.sweep();
        Ok(cache)
    }

    fn load_index(&self) -> io::Result<()> {
        let mut st = self.state.lock().expect("cache lock");
        for l1 in std::fs::read_dir(&self.dir)? {
            let l1 = l1?.path();
            if !l1.is_dir() || l1.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            for l2 in std::fs::read_dir(&l1)? {
                let l2 = l2?.path();
                if !l2.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(&l2)? {
                    let p = f?.path();
                    let name = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("")
                        .to_owned();
                    match std::fs::File::open(&p).and_then(read_meta) {
                        Ok((meta, ..)) if hash(&meta.key) == name => {
                            let file_size = std::fs::metadata(&p)?.len();
                            let atime = std::fs::metadata(&p)?
                                .modified()
                                .ok()
                                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                                .map(|d| d.as_millis() as u64)
                                .unwrap_or(0);
                            st.total += file_size;
                            st.entries.insert(
                                name,
                                Entry {
                                    created: meta.created,
                                    last_access: atime,
                                    file_size,
                                },
                            );
                        }
                        _ => {
                            tracing::warn!(file = %p.display(), "removing unreadable cache file");
                            let _ = std::fs::remove_file(&p);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn path_of(&self, h: &str) -> PathBuf {
        let mut p = PathBuf::with_capacity(self.dir.as_os_str().len() + 8 + h.len());
        p.push(&self.dir);
        p.push(&h[31..]);
        p.push(&h[29..31]);
        p.push(h);
        p
    }

    /// A fresh entry for `key`: its meta, the open file and where the body
    /// starts. Counts as a use for LRU.
    pub fn lookup(&self, key: &str) -> Option<(CachedMeta, std::fs::File, u64)> {
        self.lookup_inner(key)
            .map(|(meta, file, offset, _)| (meta, file, offset))
    }

    /// Like [`Cache::lookup`], with the body itself when `preload` and it
    /// is at most [`SMALL_FILE`] (the header read usually holds it already).
    pub fn lookup_content(&self, key: &str, preload: bool) -> Option<(CachedMeta, Content)> {
        let (meta, file, offset, head) = self.lookup_inner(key)?;
        if !preload || meta.body_len > SMALL_FILE {
            return Some((meta, Content::File { file, base: offset }));
        }
        let (start, len) = (offset as usize, meta.body_len as usize);
        let body = if head.len() >= start + len {
            Bytes::from(head).slice(start..start + len)
        } else {
            let mut buf = vec![0u8; len];
            if let Err(e) = file.read_exact_at(&mut buf, offset) {
                tracing::warn!(key = %key, error = %e, "cannot read cache file");
                return None;
            }
            Bytes::from(buf)
        };
        Some((meta, Content::Memory(body)))
    }

    /// (meta, file, body offset, the first bytes of the file as read).
    fn lookup_inner(&self, key: &str) -> Option<(CachedMeta, std::fs::File, u64, Vec<u8>)> {
        let h = hash(key);
        {
            let st = self.state.lock().expect("cache lock");
            let e = st.entries.get(&h)?;
            let age = (now_ms() / 1000).saturating_sub(e.created);
            if age >= self.valid.as_secs() {
                return None;
            }
        }
        let path = self.path_of(&h);
        let (meta, offset, file, head) = match std::fs::File::open(&path).and_then(read_meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "bad cache file");
                self.remove(&h);
                return None;
            }
        };
        if meta.key != key {
            return None;
        }
        let mut st = self.state.lock().expect("cache lock");
        if let Some(e) = st.entries.get_mut(&h) {
            e.last_access = now_ms();
        }
        Some((meta, file, offset, head))
    }

    /// Starts storing a response; nothing is visible until
    /// [`Cache::commit`]. `None` when the body could never fit.
    pub async fn begin(
        &self,
        key: &str,
        content_type: &str,
        last_modified: u64,
        body_len: u64,
    ) -> io::Result<Option<CacheWriter>> {
        if body_len > self.max_size || key.contains('\n') || content_type.contains('\n') {
            return Ok(None);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}-{seq}", std::process::id()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        let header = format!(
            "{MAGIC}\nkey: {key}\ncreated: {}\ncontent-type: {content_type}\nlast-modified: {last_modified}\nbody-length: {body_len}\n\n",
            now_ms() / 1000
        );
        file.write_all(header.as_bytes()).await?;
        Ok(Some(CacheWriter {
            tmp: Some(tmp),
            file,
            key: key.to_owned(),
            expected: body_len,
            written: 0,
        }))
    }

    /// Publishes a complete entry (replacing any older one), then evicts
    /// down to the size bound.
    pub async fn commit(&self, mut w: CacheWriter) -> io::Result<bool> {
        if w.written != w.expected {
            return Ok(false);
        }
        w.file.flush().await?;
        let tmp = w.tmp.take().expect("uncommitted writer");
        let h = hash(&w.key);
        let dest = self.path_of(&h);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file_size = tokio::fs::metadata(&tmp).await?.len();
        if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        {
            let mut st = self.state.lock().expect("cache lock");
            let old = st.entries.insert(
                h,
                Entry {
                    created: now_ms() / 1000,
                    last_access: now_ms(),
                    file_size,
                },
            );
            st.total += file_size;
            if let Some(o) = old {
                st.total -= o.file_size;
            }
        }
        self.evict_to_bound();
        Ok(true)
    }

    /// Removes `key`'s entry; true if there was one.
    pub fn purge(&self, key: &str) -> bool {
        self.remove(&hash(key))
    }

    fn remove(&self, h: &str) -> bool {
        let mut st = self.state.lock().expect("cache lock");
        match st.entries.remove(h) {
            Some(e) => {
                st.total -= e.file_size;
                let _ = std::fs::remove_file(self.path_of(h));
                true
            }
            None => false,
        }
    }

    /// The background worker's pass: drops entries idle for `inactive`,
    /// then the least recently used ones while over `max_size`.
    pub fn sweep(&self) {
        let cutoff = now_ms().saturating_sub(self.inactive.as_millis() as u64);
        let idle: Vec<String> = {
            let st = self.state.lock().expect("cache lock");
            st.entries
                .iter()
                .filter(|(_, e)| e.last_access < cutoff)
                .map(|(h, _)| h.clone())
                .collect()
        };
        for h in idle {
            tracing::debug!(entry = %h, "cache entry inactive, removed");
            self.remove(&h);
        }
        self.evict_to_bound();
    }

    fn evict_to_bound(&self) {
        loop {
            let victim = {
                let st = self.state.lock().expect("cache lock");
                if st.total <= self.max_size {
                    return;
                }
                st.entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_access)
                    .map(|(h, _)| h.clone())
            };
            match victim {
                Some(h) => {
                    tracing::debug!(entry = %h, "cache over size, evicting");
                    self.remove(&h);
                }
                None => return,
            }
        }
    }

    /// Bytes on disk and number of entries.
    pub fn usage(&self) -> (u64, usize) {
        let st = self.state.lock().expect("cache lock");
        (st.total, st.entries.len())
    }
}

/// A response being stored. Dropped without commit: the partial file goes.
#[derive(Debug)]
pub struct CacheWriter {
    tmp: Option<PathBuf>,
    file: tokio::fs::File,
    key: String,
    expected: u64,
    written: u64,
}

impl CacheWriter {
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.written += data.len() as u64;
        if self.written > self.expected {
            return Err(io::Error::other("upstream sent more than Content-Length"));
        }
        self.file.write_all(data).await
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Reads a cache file's header: (meta, body offset, the file, the bytes
/// read: the header and the start of the body).
fn read_meta(f: std::fs::File) -> io::Result<(CachedMeta, u64, std::fs::File, Vec<u8>)> {
    // The size first: a small entry is then read whole in one call, into a
    // buffer of its size (not 16 KiB zeroed for a 4 KiB file, not a second
    // read to see the end).
    let file_len = f.metadata()?.len();
    let want = usize::try_from(file_len).map_or(MAX_HEADER, |l| l.min(MAX_HEADER));
    let mut buf = vec![0u8; want];
    let mut n = 0;
    while n < buf.len() {
        let r = f.read_at(&mut buf[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    buf.truncate(n);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a cache file");
    let end = buf.windows(2).position(|w| w == b"\n\n").ok_or_else(bad)?;
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad())?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad());
    }
    let (mut key, mut created, mut content_type, mut last_modified, mut body_len) =
        (None, None, None, None, None);
    for l in lines {
        let (k, v) = l.split_once(": ").ok_or_else(bad)?;
        let num = || v.parse::<u64>().map_err(|_| bad());
        // A repeated field: the last one counts.
        match k {
            "key" => key = Some(v),
            "created" => created = Some(num()?),
            "content-type" => content_type = Some(v),
            "last-modified" => last_modified = Some(num()?),
            "body-length" => body_len = Some(num()?),
            _ => {}
        }
    }
    let meta = CachedMeta {
        key: key.ok_or_else(bad)?.to_owned(),
        created: created.ok_or_else(bad)?,
        content_type: content_type.ok_or_else(bad)?.to_owned(),
        last_modified: last_modified.ok_or_else(bad)?,
        body_len: body_len.ok_or_else(bad)?,
    };
    let offset = end as u64 + 2;
    if file_len != offset + meta.body_len {
        return Err(bad());
    }
    Ok((meta, offset, f, buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn hash_is_lower_hex_md5() {
        // md5("") and md5("abc") from RFC 1321.
        assert_eq!(hash(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hash("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    async fn store(c: &Cache, key: &str, body: &[u8]) {
        let mut w = c
            .begin(key, "image/png", 1_600_000_000, body.len() as u64)
            .await
            .unwrap()
            .unwrap();
        w.write(body).await.unwrap();
        assert!(c.commit(w).await.unwrap());
    }

    #[tokio::test]
    async fn lookup_content_reads_small_bodies_whole() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(
            d.path(),
            1 << 24,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap();
        // In the header read, past it, and above SMALL_FILE.
        let sizes = [5usize, 40_000, SMALL_FILE as usize + 1];
        for (i, n) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..*n).map(|j| (j * 7 + i) as u8).collect();
            let key = format!("/g/{i}");
            store(&c, &key, &body).await;
            match c.lookup_content(&key, true).unwrap() {
                (m, Content::Memory(b)) => {
                    assert!(*n as u64 <= SMALL_FILE);
                    assert_eq!(m.body_len, *n as u64);
                    assert!(b[..] == body[..]);
                }
                (_, Content::File { file, base }) => {
                    assert!(*n as u64 > SMALL_FILE);
                    let mut got = vec![0u8; *n];
                    file.read_exact_at(&mut got, base).unwrap();
                    assert!(got == body);
                }
            }
            // HEAD: no body read.
            assert!(matches!(
                c.lookup_content(&key, false),
                Some((_, Content::File { .. }))
            ));
        }
        assert!(c.lookup_content("/g/none", true).is_none());
    }

    #[tokio::test]
    async fn store_lookup_purge_reload() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(
            d.path(),
            1 << 20,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap();
        store(&c, "/g/a", b"hello").await;
        let (m, mut f, off) = c.lookup("/g/a").unwrap();
        assert_eq!(m.body_len, 5);
        assert_eq!(m.content_type, "image/png");
        let mut s = String::new();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(off)).unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(c.lookup("/g/b").is_none());
        drop(c);
        let c = Cache::open(
            d.path(),
            1 << 20,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(c.usage().1, 1, "index rebuilt from disk");
        assert!(c.purge("/g/a"));
        assert!(!c.purge("/g/a"));
        assert!(c.lookup("/g/a").is_none());
        assert_eq!(c.usage(), (0, 0));
    }

    #[tokio::test]
    async fn incomplete_store_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(
            d.path(),
            1 << 20,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap();
        let mut w = c.begin("/k", "x/y", 0, 10).await.unwrap().unwrap();
        w.write(b"12345").await.unwrap();
        assert!(!c.commit(w).await.unwrap());
        assert!(c.lookup("/k").is_none());
        assert_eq!(std::fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
        assert!(c.begin("/big", "x/y", 0, 2 << 20).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lru_eviction_and_inactivity() {
        let d = tempfile::tempdir().unwrap();
        // Room for about two 1000-byte entries with their headers.
        let c = Cache::open(
            d.path(),
            2300,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap();
        let body = vec![7u8; 1000];
        store(&c, "/a", &body).await;
        std::thread::sleep(Duration::from_millis(5));
        store(&c, "/b", &body).await;
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.lookup("/a").is_some()); // a is now more recent than b
        std::thread::sleep(Duration::from_millis(5));
        store(&c, "/c", &body).await;
        assert!(c.lookup("/b").is_none(), "least recently used went first");
        assert!(c.lookup("/a").is_some());
        assert!(c.lookup("/c").is_some());
        assert!(c.usage().0 <= 2300);

        let d2 = tempfile::tempdir().unwrap();
        let c2 = Cache::open(
            d2.path(),
            1 << 20,
            Duration::from_millis(30),
            Duration::from_secs(3600),
        )
        .unwrap();
        store(&c2, "/old", b"1").await;
        std::thread::sleep(Duration::from_millis(60));
        c2.sweep();
        assert_eq!(c2.usage(), (0, 0));
    }
}

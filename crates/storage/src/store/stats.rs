//! Operation counters (the StatBuff of PROTOCOL.md §6.2), kept in atomics
//! and persisted to `<base>/data/storage_stat.dat` as `key=value` lines.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use fdfs_proto::tracker::StatBuff;

/// Indices into [`StatBuff::NAMES`].
pub mod idx {
    pub const TOTAL_UPLOAD: usize = 0;
    pub const TOTAL_APPEND: usize = 2;
    pub const TOTAL_MODIFY: usize = 4;
    pub const TOTAL_TRUNCATE: usize = 6;
    pub const TOTAL_SET_META: usize = 8;
    pub const TOTAL_DELETE: usize = 10;
    pub const TOTAL_DOWNLOAD: usize = 12;
    pub const TOTAL_GET_META: usize = 14;
    pub const TOTAL_UPLOAD_BYTES: usize = 20;
    pub const TOTAL_APPEND_BYTES: usize = 22;
    pub const TOTAL_MODIFY_BYTES: usize = 24;
    pub const TOTAL_DOWNLOAD_BYTES: usize = 26;
    pub const TOTAL_FILE_OPEN: usize = 32;
    pub const TOTAL_FILE_READ: usize = 34;
    pub const TOTAL_FILE_WRITE: usize = 36;
    pub const LAST_SOURCE_UPDATE: usize = 38;
    pub const LAST_SYNC_UPDATE: usize = 39;
    pub const LAST_SYNCED_TIMESTAMP: usize = 40;
    pub const LAST_HEART_BEAT_TIME: usize = 41;
}

/// The counters. `total_*` at even indices, `success_*` right after.
#[derive(Debug)]
pub struct Stats {
    counters: [AtomicI64; 42],
    pub connection_alloc: AtomicU32,
    pub connection_current: AtomicU32,
    pub connection_max: AtomicU32,
    changed: AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counters: std::array::from_fn(|_| AtomicI64::new(0)),
            connection_alloc: AtomicU32::new(0),
            connection_current: AtomicU32::new(0),
            connection_max: AtomicU32::new(0),
            changed: AtomicBool::new(true),
        }
    }
}

impl Stats {
    pub fn add(&self, i: usize, v: i64) {
        self.counters[i].fetch_add(v, Ordering::Relaxed);
        self.changed.store(true, Ordering::Relaxed);
    }

    pub fn set(&self, i: usize, v: i64) {
        self.counters[i].store(v, Ordering::Relaxed);
        self.changed.store(true, Ordering::Relaxed);
    }

    pub fn get(&self, i: usize) -> i64 {
        self.counters[i].load(Ordering::Relaxed)
    }

    /// Counts one operation `total` (an even index) and, if it succeeded,
    /// its `success` twin; `bytes` likewise at `bytes_idx` when given.
    pub fn op(&self, total: usize, ok: bool, bytes: Option<(usize, u64)>) {
        self.add(total, 1);
        if ok {
            self.add(total + 1, 1);
        }
        if let Some((b, n)) = bytes {
            self.add(b, n as i64);
            if ok {
                self.add(b + 1, n as i64);
            }
        }
    }

    /// True (once) when something changed since the last call: the beat
    /// then carries the counters.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StatBuff {
        StatBuff {
            connection_alloc_count: self.connection_alloc.load(Ordering::Relaxed),
            connection_current_count: self.connection_current.load(Ordering::Relaxed),
            connection_max_count: self.connection_max.load(Ordering::Relaxed),
            counters: std::array::from_fn(|i| self.get(i)),
        }
    }

    /// Writes `key=value` lines (plus `extra` lines) atomically.
    pub fn save(&self, path: &Path, extra: &[(&str, i64)]) -> io::Result<()> {
        let mut s = String::new();
        for (i, name) in StatBuff::NAMES.iter().enumerate() {
            if i == idx::LAST_SYNCED_TIMESTAMP || i == idx::LAST_HEART_BEAT_TIME {
                continue;
            }
            s.push_str(&format!("{name}={}\n", self.get(i)));
        }
        for (k, v) in extra {
            s.push_str(&format!("{k}={v}\n"));
        }
        let tmp = path.with_extension("dat.tmp");
        fs::write(&tmp, s)?;
        fs::rename(&tmp, path)
    }

    /// Loads counters saved by [`Stats::save`] (or upstream); returns the
    /// lines that are not counters.
    pub fn load(&self, path: &Path) -> io::Result<Vec<(String, i64)>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut rest = vec![];
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            let Ok(v) = v.trim().parse::<i64>() else {
                continue;
            };
            match StatBuff::index(k.trim()) {
                Some(i) => self.set(i, v),
                None => rest.push((k.trim().to_owned(), v)),
            }
        }
        Ok(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_reads_upstream_file() {
        let d = tempfile::tempdir().unwrap();
        let golden = d.path().join("golden.dat");
        fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/golden/disk/storage_g1a_storage_stat.dat"
            ),
            &golden,
        )
        .unwrap();
        let s = Stats::default();
        let rest = s.load(&golden).unwrap();
        assert_eq!(s.get(idx::TOTAL_UPLOAD), 195964);
        assert_eq!(s.get(idx::TOTAL_DOWNLOAD_BYTES), 9494691601);
        assert!(rest.contains(&("dist_path_index_low".to_owned(), 167)));
        s.op(idx::TOTAL_UPLOAD, true, Some((idx::TOTAL_UPLOAD_BYTES, 10)));
        let p = d.path().join("storage_stat.dat");
        s.save(&p, &[("dist_write_file_count", 3)]).unwrap();
        let t = Stats::default();
        let rest = t.load(&p).unwrap();
        assert_eq!(t.get(idx::TOTAL_UPLOAD), 195965);
        assert_eq!(t.get(idx::TOTAL_UPLOAD + 1), 195965);
        assert_eq!(t.get(idx::TOTAL_UPLOAD_BYTES), 9483244864);
        assert_eq!(rest, vec![("dist_write_file_count".to_owned(), 3)]);
        assert_eq!(t.snapshot().counters[idx::TOTAL_UPLOAD], 195965);
    }
}

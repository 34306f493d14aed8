//! Per-peer sync position files (PROTOCOL.md §9.2):
//! `<base>/data/sync/<peer>.mark`, where `<peer>` is the peer's id when
//! `use_storage_id`, else `<peer_ip>_<port>`. Ini text, one key per line.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where replication to one peer stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub binlog_index: u32,
    /// Byte offset of the next record to send.
    pub binlog_offset: u64,
    /// This server is the full-sync source for the peer.
    pub need_sync_old: bool,
    pub sync_old_done: bool,
    pub until_timestamp: i64,
    pub scan_row_count: u64,
    pub sync_row_count: u64,
}

impl Mark {
    /// `<sync_dir>/<ip>_<port>.mark` (or `<id>.mark` with storage ids).
    pub fn path(sync_dir: &Path, peer_ip_or_id: &str, port: Option<u16>) -> PathBuf {
        match port {
            Some(p) => sync_dir.join(format!("{peer_ip_or_id}_{p}.mark")),
            None => sync_dir.join(format!("{peer_ip_or_id}.mark")),
        }
    }

    /// Parses a mark file's text; unknown keys are ignored.
    pub fn parse(text: &str) -> Mark {
        let mut m = Mark::default();
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            let v = v.trim();
            match k.trim() {
                "binlog_index" => m.binlog_index = v.parse().unwrap_or(0),
                "binlog_offset" => m.binlog_offset = v.parse().unwrap_or(0),
                "need_sync_old" => m.need_sync_old = v == "1",
                "sync_old_done" => m.sync_old_done = v == "1",
                "until_timestamp" => m.until_timestamp = v.parse().unwrap_or(0),
                "scan_row_count" => m.scan_row_count = v.parse().unwrap_or(0),
                "sync_row_count" => m.sync_row_count = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        m
    }

    /// The file text, in upstream's key order.
    pub fn to_text(&self) -> String {
        format!(
            "binlog_index={}\nbinlog_offset={}\nneed_sync_old={}\nsync_old_done={}\nuntil_timestamp={}\nscan_row_count={}\nsync_row_count={}\n",
            self.binlog_index,
            self.binlog_offset,
            self.need_sync_old as u8,
            self.sync_old_done as u8,
            self.until_timestamp,
            self.scan_row_count,
            self.sync_row_count
        )
    }

    /// Loads a mark file; `None` when it does not exist (a new peer).
    pub fn load(path: &Path) -> io::Result<Option<Mark>> {
        match fs::read_to_string(path) {
            Ok(t) => Ok(Some(Mark::parse(&t))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("mark.tmp");
        fs::write(&tmp, self.to_text())?;
        fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_mark_round_trips() {
        let golden =
            include_str!("../../../../testdata/golden/disk/storage_g1a__127.0.0.12_23000.mark");
        let m = Mark::parse(golden);
        assert_eq!(m.binlog_offset, 44951591);
        assert_eq!(m.scan_row_count, 774992);
        assert_eq!(m.to_text(), golden);
        let d = tempfile::tempdir().unwrap();
        let p = Mark::path(d.path(), "127.0.0.12", Some(23000));
        assert!(p.ends_with("127.0.0.12_23000.mark"));
        assert_eq!(Mark::load(&p).unwrap(), None);
        m.save(&p).unwrap();
        assert_eq!(Mark::load(&p).unwrap(), Some(m));
    }
}

//! Per-peer mark files (PROTOCOL.md §9.2): where this server's sync worker
//! towards one peer stands in the binlog, and whether it owes that peer a
//! full sync. `<base>/data/sync/<peer_ip>_<port>.mark`, or
//! `<peer_id>.mark` when storages are named by id. Ini text in upstream's
//! key order, rewritten atomically (temporary file + rename).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The contents of one mark file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub binlog_index: u32,
    /// Byte offset of the next record to send.
    pub binlog_offset: u64,
    /// I am this peer's full-sync source.
    pub need_sync_old: bool,
    pub sync_old_done: bool,
    /// The peer's full-sync cut-off (0: none).
    pub until_timestamp: i64,
    pub scan_row_count: u64,
    pub sync_row_count: u64,
}

/// The mark file name for a peer. Without storage ids a server's id is its
/// IP, and upstream names the file `<ip>_<port>.mark`.
pub fn mark_path(sync_dir: &Path, peer_id: &str, peer_ip: &str, port: u32) -> PathBuf {
    if peer_id.is_empty() || peer_id == peer_ip {
        sync_dir.join(format!("{peer_ip}_{port}.mark"))
    } else {
        sync_dir.join(format!("{peer_id}.mark"))
    }
}

/// After a peer's IP changed (`old` → `new`, no storage ids): its mark file
/// takes the new name, so replication to it goes on where it stood instead
/// of starting over. False when there was nothing to move or the new name
/// is already taken (then both stay as they are).
pub fn move_mark(sync_dir: &Path, old: &str, new: &str, port: u32) -> io::Result<bool> {
    let from = mark_path(sync_dir, old, old, port);
    let to = mark_path(sync_dir, new, new, port);
    if !from.exists() || to.exists() {
        return Ok(false);
    }
    fs::rename(&from, &to)?;
    Ok(true)
}

impl Mark {
    /// Reads a mark file; `Ok(None)` when there is none (first contact with
    /// this peer). Unknown keys are ignored; a malformed value is an error
    /// rather than a silent restart from zero.
    pub fn load(path: &Path) -> io::Result<Option<Mark>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut m = Mark::default();
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            let (k, v) = (k.trim(), v.trim());
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: bad value {v:?} for {k}", path.display()),
                )
            };
            match k {
                "binlog_index" => m.binlog_index = v.parse().map_err(|_| bad())?,
                "binlog_offset" => m.binlog_offset = v.parse().map_err(|_| bad())?,
                "need_sync_old" => m.need_sync_old = parse_flag(v).ok_or_else(bad)?,
                "sync_old_done" => m.sync_old_done = parse_flag(v).ok_or_else(bad)?,
                "until_timestamp" => m.until_timestamp = v.parse().map_err(|_| bad())?,
                "scan_row_count" => m.scan_row_count = v.parse().map_err(|_| bad())?,
                "sync_row_count" => m.sync_row_count = v.parse().map_err(|_| bad())?,
                _ => {}
            }
        }
        Ok(Some(m))
    }

    /// The file text, keys in upstream's order.
    pub fn encode(&self) -> String {
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

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        fs::write(&tmp, self.encode())?;
        fs::rename(&tmp, path)
    }
}

fn parse_flag(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str =
        include_str!("../../../../testdata/golden/disk/storage_g1b__127.0.0.11_23000.mark");
    const GOLDEN_PEER: &str =
        include_str!("../../../../testdata/golden/disk/storage_g1a__127.0.0.12_23000.mark");
    const NEW_SERVER: &str = include_str!(
        "../../../../testdata/golden/disk/storage_g2b__127.0.0.21_23000.mark.new_server"
    );
    const SOURCE: &str = include_str!(
        "../../../../testdata/golden/disk/storage_g2__127.0.0.22_23000.mark.fullsync_source"
    );

    #[test]
    fn reads_and_rewrites_upstream_marks_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        for golden in [GOLDEN, GOLDEN_PEER, NEW_SERVER, SOURCE] {
            let p = d.path().join("x.mark");
            fs::write(&p, golden).unwrap();
            let m = Mark::load(&p).unwrap().unwrap();
            assert_eq!(m.encode(), golden);
        }
        fs::write(d.path().join("s.mark"), SOURCE).unwrap();
        let m = Mark::load(&d.path().join("s.mark")).unwrap().unwrap();
        assert_eq!(
            m,
            Mark {
                binlog_index: 0,
                binlog_offset: 44964222,
                need_sync_old: true,
                sync_old_done: true,
                until_timestamp: 1795669754,
                scan_row_count: 775203,
                sync_row_count: 775203,
            }
        );
    }

    #[test]
    fn missing_is_none_and_save_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = mark_path(
            &d.path().join("data/sync"),
            "127.0.0.12",
            "127.0.0.12",
            23000,
        );
        assert!(p.ends_with("data/sync/127.0.0.12_23000.mark"));
        assert_eq!(Mark::load(&p).unwrap(), None);
        let m = Mark {
            binlog_index: 2,
            binlog_offset: 77,
            until_timestamp: 5,
            ..Mark::default()
        };
        m.save(&p).unwrap();
        assert_eq!(Mark::load(&p).unwrap(), Some(m));
        assert!(!p.with_extension("mark.tmp").exists());
    }

    #[test]
    fn id_named_peers_and_bad_values() {
        let d = tempfile::tempdir().unwrap();
        assert!(mark_path(d.path(), "100001", "10.0.0.1", 23000).ends_with("100001.mark"));
        let p = d.path().join("bad.mark");
        fs::write(&p, "binlog_index=0\nbinlog_offset=-4\n").unwrap();
        assert!(Mark::load(&p).is_err());
        fs::write(&p, "need_sync_old=2\n").unwrap();
        assert!(Mark::load(&p).is_err());
    }
}

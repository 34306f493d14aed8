//! `<base>/data/.data_init_flag` (PROTOCOL.md §9.2): when this storage
//! first joined and where its initial full sync stands. Ini text.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The persisted join/sync state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitFlag {
    pub storage_join_time: i64,
    /// The initial full sync is done (or was not needed).
    pub sync_old_done: bool,
    pub sync_src_server: String,
    pub sync_until_timestamp: i64,
    pub last_ip_addr: String,
    pub last_server_port: u16,
    /// Keys we do not use, kept as they were (trunk state, path marks).
    pub other: Vec<(String, String)>,
}

impl InitFlag {
    pub fn path(base: &Path) -> PathBuf {
        base.join("data").join(".data_init_flag")
    }

    /// Loads the file; a missing file is a first start (all defaults).
    pub fn load(base: &Path) -> io::Result<InitFlag> {
        let text = match fs::read_to_string(Self::path(base)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(InitFlag::default()),
            Err(e) => return Err(e),
        };
        let mut f = InitFlag::default();
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            let (k, v) = (k.trim(), v.trim());
            match k {
                "storage_join_time" => f.storage_join_time = v.parse().unwrap_or(0),
                "sync_old_done" => f.sync_old_done = v == "1",
                "sync_src_server" => f.sync_src_server = v.to_owned(),
                "sync_until_timestamp" => f.sync_until_timestamp = v.parse().unwrap_or(0),
                "last_ip_addr" => f.last_ip_addr = v.to_owned(),
                "last_server_port" => f.last_server_port = v.parse().unwrap_or(0),
                _ => f.other.push((k.to_owned(), v.to_owned())),
            }
        }
        Ok(f)
    }

    /// Writes the file atomically, in upstream's key order.
    pub fn save(&self, base: &Path) -> io::Result<()> {
        let mut s = format!(
            "storage_join_time={}\nsync_old_done={}\nsync_src_server={}\nsync_until_timestamp={}\nlast_ip_addr={}\nlast_server_port={}\n",
            self.storage_join_time,
            self.sync_old_done as u8,
            self.sync_src_server,
            self.sync_until_timestamp,
            self.last_ip_addr,
            self.last_server_port
        );
        let mut other = self.other.clone();
        for k in [
            "current_trunk_file_id",
            "trunk_last_compress_time",
            "trunk_binlog_compress_stage",
        ] {
            if !other.iter().any(|(o, _)| o == k) {
                other.push((k.to_owned(), "0".to_owned()));
            }
        }
        for (k, v) in &other {
            s.push_str(&format!("{k}={v}\n"));
        }
        let p = Self::path(base);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d)?;
        }
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, s)?;
        fs::rename(&tmp, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upstream_file_and_round_trips() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("data")).unwrap();
        let golden = include_str!("../../../testdata/golden/disk/storage_g1a.data_init_flag");
        fs::write(InitFlag::path(d.path()), golden).unwrap();
        let f = InitFlag::load(d.path()).unwrap();
        assert_eq!(f.storage_join_time, 1795666562);
        assert!(f.sync_old_done);
        assert_eq!(f.sync_src_server, "127.0.0.12");
        assert_eq!(f.last_server_port, 23000);
        f.save(d.path()).unwrap();
        assert_eq!(
            fs::read_to_string(InitFlag::path(d.path())).unwrap(),
            golden
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(InitFlag::load(empty.path()).unwrap(), InitFlag::default());
    }
}

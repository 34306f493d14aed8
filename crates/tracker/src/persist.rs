//! The tracker's state on disk, in `<base_path>/data/`.
//!
//! Two files, both replaced atomically (written to `<name>.tmp`, fsynced,
//! renamed over the old one, directory fsynced), so a crash leaves either
//! the old or the new version, never a mix:
//!
//! * `tracker_state.dat` — groups and storages. Plain text, one `key=value`
//!   per line; `#` lines are comments; a line `[group]` or `[storage]`
//!   starts a record. Keys:
//!
//!   ```text
//!   # fdfs-tracker state
//!   format=1
//!   current_write_group=0
//!
//!   [group]
//!   name=group1
//!   port=23000
//!   store_path_count=1
//!   subdir_count=256
//!   current_write_server=0
//!   current_read_server=0
//!   trunk_server=127.0.0.11      # key of the trunk server; empty = none
//!   last_trunk_server=127.0.0.11 # the last holder of the role
//!   current_trunk_file_id=3      # the three keys upstream's storage_groups_new.dat has
//!
//!   [storage]
//!   group=group1            # must name a [group] that came before
//!   id=127.0.0.11
//!   ip=127.0.0.11
//!   port=23000
//!   status=7                # PROTOCOL.md §7 value
//!   rw_mode=6
//!   join_time=1795666562
//!   up_time=1795667628
//!   version=6.16.1
//!   store_path_count=1
//!   subdir_count=256
//!   upload_priority=10
//!   paths=258019:78128      # total_mb:free_mb per store path, comma-separated
//!   current_write_path=0
//!   last_heartbeat=1795669642
//!   sync_src_id=127.0.0.12  # empty = none
//!   sync_until=0
//!   synced=127.0.0.12:1795669600   # peer:timestamp from SYNC_REPORT, comma-separated
//!   changelog_offset=0
//!   stat=0,0,0,...          # the 3 connection counters then the 42 StatBuff counters
//!   ```
//!
//!   Unknown keys are ignored (a newer tracker may add some); a missing key
//!   keeps its default. (Upstream's `storage_*_new.dat` layouts are not
//!   reproduced: PROTOCOL.md §9.3 leaves them OPEN.)
//! * `storage_changelog.dat` — upstream's changelog lines
//!   `<ts> <group> <storage_id> <status> <extra>\n`, served raw by
//!   CHANGELOG_REQ.
//!
//! Loading marks every ONLINE/ACTIVE storage OFFLINE (nobody is connected
//! to a tracker that just started) and so demotes each group's trunk server
//! to `last_trunk_server`; groups, join times, sync sources and trunk file
//! ids are kept.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::cluster::{Cluster, Group, Storage};
use crate::settings::Settings;

pub const STATE_FILE: &str = "tracker_state.dat";
pub const CHANGELOG_FILE: &str = "storage_changelog.dat";

/// Why saved state could not be read or written.
#[derive(Debug, Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Renders the state file text.
pub fn render(c: &Cluster) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# fdfs-tracker state (see fdfs_tracker::persist)");
    let _ = writeln!(o, "format=1");
    let _ = writeln!(o, "current_write_group={}", c.current_write_group);
    for g in c.groups.values() {
        let _ = writeln!(o, "\n[group]");
        let _ = writeln!(o, "name={}", g.name);
        let _ = writeln!(o, "port={}", g.port);
        let _ = writeln!(o, "store_path_count={}", g.store_path_count);
        let _ = writeln!(o, "subdir_count={}", g.subdir_count);
        let _ = writeln!(o, "current_write_server={}", g.current_write_server);
        let _ = writeln!(o, "current_read_server={}", g.current_read_server);
        let _ = writeln!(o, "trunk_server={}", g.trunk_server);
        let _ = writeln!(o, "last_trunk_server={}", g.last_trunk_server);
        let _ = writeln!(o, "current_trunk_file_id={}", g.current_trunk_file_id);
        for s in g.storages.values() {
            let _ = writeln!(o, "\n[storage]");
            let _ = writeln!(o, "group={}", g.name);
            let _ = writeln!(o, "id={}", s.id);
            let _ = writeln!(o, "ip={}", s.ip);
            let _ = writeln!(o, "port={}", s.port);
            let _ = writeln!(o, "status={}", s.status);
            let _ = writeln!(o, "rw_mode={}", s.rw_mode);
            let _ = writeln!(o, "join_time={}", s.join_time);
            let _ = writeln!(o, "up_time={}", s.up_time);
            let _ = writeln!(o, "version={}", s.version);
            let _ = writeln!(o, "store_path_count={}", s.store_path_count);
            let _ = writeln!(o, "subdir_count={}", s.subdir_count);
            let _ = writeln!(o, "upload_priority={}", s.upload_priority);
            if !s.moved_to.is_empty() {
                let _ = writeln!(o, "moved_to={}", s.moved_to);
            }
            let paths: Vec<String> = s.paths.iter().map(|(t, f)| format!("{t}:{f}")).collect();
            let _ = writeln!(o, "paths={}", paths.join(","));
            let _ = writeln!(o, "current_write_path={}", s.current_write_path);
            let _ = writeln!(o, "last_heartbeat={}", s.last_heartbeat);
            let _ = writeln!(o, "sync_src_id={}", s.sync_src_id);
            let _ = writeln!(o, "sync_until={}", s.sync_until);
            let synced: Vec<String> = s.synced.iter().map(|(p, t)| format!("{p}:{t}")).collect();
            let _ = writeln!(o, "synced={}", synced.join(","));
            let _ = writeln!(o, "changelog_offset={}", s.changelog_offset);
            let mut stat = vec![
                i64::from(s.stat.connection_alloc_count),
                i64::from(s.stat.connection_current_count),
                i64::from(s.stat.connection_max_count),
            ];
            stat.extend_from_slice(&s.stat.counters);
            let stat: Vec<String> = stat.iter().map(i64::to_string).collect();
            let _ = writeln!(o, "stat={}", stat.join(","));
        }
    }
    o
}

enum Rec {
    Top,
    Group(Group),
    Storage(String, Box<Storage>),
}

/// Parses a state file into a cluster with `settings`.
pub fn parse(text: &str, settings: Settings, path: &Path) -> Result<Cluster, PersistError> {
    let mut c = Cluster::new(settings);
    let mut cur = Rec::Top;
    let err = |line: usize, reason: String| PersistError::Parse {
        path: path.to_owned(),
        line,
        reason,
    };
    let finish = |c: &mut Cluster, rec: Rec, line: usize| -> Result<(), PersistError> {
        match rec {
            Rec::Top => Ok(()),
            Rec::Group(g) => {
                if fdfs_proto::GroupName::new(&g.name).is_err() {
                    return Err(err(line, format!("invalid group name {:?}", g.name)));
                }
                c.groups.insert(g.name.clone(), g);
                Ok(())
            }
            Rec::Storage(group, s) => {
                if s.id.is_empty() {
                    return Err(err(line, "storage without id".into()));
                }
                let g = c.groups.get_mut(&group).ok_or_else(|| {
                    err(
                        line,
                        format!("storage {} names unknown group {group:?}", s.id),
                    )
                })?;
                g.storages.insert(s.id.clone(), *s);
                Ok(())
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "[group]" || line == "[storage]" {
            let prev = std::mem::replace(
                &mut cur,
                if line == "[group]" {
                    Rec::Group(Group::new(""))
                } else {
                    Rec::Storage(
                        String::new(),
                        // A record without `status` is a server nobody is
                        // connected to.
                        Box::new(Storage {
                            status: fdfs_proto::server::status::OFFLINE,
                            ..Storage::new("", "", 0)
                        }),
                    )
                },
            );
            finish(&mut c, prev, n)?;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(err(n, format!("expected key=value, got {line:?}")));
        };
        let (k, v) = (k.trim(), v.trim());
        let num = |v: &str| -> Result<i64, PersistError> {
            v.parse::<i64>()
                .map_err(|_| err(n, format!("{k}: {v:?} is not a number")))
        };
        match &mut cur {
            Rec::Top => {
                if k == "current_write_group" {
                    c.current_write_group = num(v)?.max(0) as usize;
                }
            }
            Rec::Group(g) => match k {
                "name" => g.name = v.to_owned(),
                "port" => g.port = num(v)? as u16,
                "store_path_count" => g.store_path_count = num(v)? as u32,
                "subdir_count" => g.subdir_count = num(v)? as u32,
                "current_write_server" => g.current_write_server = num(v)?.max(0) as usize,
                "current_read_server" => g.current_read_server = num(v)?.max(0) as usize,
                "trunk_server" => g.trunk_server = v.to_owned(),
                "last_trunk_server" => g.last_trunk_server = v.to_owned(),
                "current_trunk_file_id" => {
                    g.current_trunk_file_id = u32::try_from(num(v)?).map_err(|_| {
                        err(n, format!("current_trunk_file_id: {v:?} is out of range"))
                    })?
                }
                _ => {}
            },
            Rec::Storage(group, s) => match k {
                "group" => *group = v.to_owned(),
                "id" => s.id = v.to_owned(),
                "ip" => s.ip = v.to_owned(),
                "port" => s.port = num(v)? as u16,
                "status" => s.status = num(v)? as u8,
                "rw_mode" => s.rw_mode = num(v)? as u8,
                "join_time" => s.join_time = num(v)?,
                "up_time" => s.up_time = num(v)?,
                "version" => s.version = v.to_owned(),
                "store_path_count" => s.store_path_count = num(v)? as u32,
                "subdir_count" => s.subdir_count = num(v)? as u32,
                "upload_priority" => s.upload_priority = num(v)?,
                "moved_to" => s.moved_to = v.to_owned(),
                "paths" => {
                    s.paths = split_list(v)
                        .map(|p| {
                            let (t, f) = p
                                .split_once(':')
                                .ok_or_else(|| err(n, format!("paths: {p:?} is not total:free")))?;
                            Ok((num(t)?, num(f)?))
                        })
                        .collect::<Result<_, PersistError>>()?
                }
                "current_write_path" => s.current_write_path = num(v)? as u32,
                "last_heartbeat" => s.last_heartbeat = num(v)?,
                "sync_src_id" => s.sync_src_id = v.to_owned(),
                "sync_until" => s.sync_until = num(v)?,
                "synced" => {
                    for p in split_list(v) {
                        let (peer, ts) = p
                            .rsplit_once(':')
                            .ok_or_else(|| err(n, format!("synced: {p:?} is not peer:ts")))?;
                        s.synced.insert(peer.to_owned(), num(ts)? as u32);
                    }
                }
                "changelog_offset" => s.changelog_offset = num(v)?.max(0) as u64,
                "stat" => {
                    let vals: Vec<i64> = split_list(v).map(num).collect::<Result<_, _>>()?;
                    if vals.len() != 45 {
                        return Err(err(n, format!("stat: {} values, expected 45", vals.len())));
                    }
                    s.stat.connection_alloc_count = vals[0] as u32;
                    s.stat.connection_current_count = vals[1] as u32;
                    s.stat.connection_max_count = vals[2] as u32;
                    s.stat.counters.copy_from_slice(&vals[3..]);
                }
                _ => {}
            },
        }
    }
    let last = text.lines().count();
    finish(&mut c, cur, last)?;
    Ok(c)
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // The rename itself must reach the disk too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Saves the state and the changelog into `data_dir`.
pub fn save(data_dir: &Path, c: &Cluster) -> Result<(), PersistError> {
    save_parts(data_dir, &render(c), &c.changelog)
}

/// Saves pre-rendered parts (rendered under the lock, written outside it).
pub fn save_parts(data_dir: &Path, state: &str, changelog: &[u8]) -> Result<(), PersistError> {
    write_atomic(&data_dir.join(STATE_FILE), state.as_bytes())?;
    write_atomic(&data_dir.join(CHANGELOG_FILE), changelog)
}

/// Loads saved state from `data_dir`; `None` when there is none yet.
pub fn load(data_dir: &Path, settings: Settings) -> Result<Option<Cluster>, PersistError> {
    let path = data_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    let mut c = parse(&text, settings, &path)?;
    let cl = data_dir.join(CHANGELOG_FILE);
    c.changelog = match std::fs::read(&cl) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(PersistError::Io { path: cl, source }),
    };
    c.mark_all_offline();
    Ok(Some(c))
}

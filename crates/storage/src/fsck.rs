//! `fdfs fsck`: checks the files a storage's own binlog says it holds
//! against its store paths, changing nothing. Each live file must be there
//! with the size its name records (and, with `crc`, the CRC32), each file
//! of a trunk slot in its slot, each `-m` sidecar present.
//!
//! With `orphans`, the other way round too: files in the store paths that
//! the binlog does not list, which replication never sent to the group.
//! [`repair`] (`--repair`) fetches missing and damaged files from the group
//! again.
//!
//! It only reads, so it may run beside the storage: a file written or
//! deleted meanwhile may show up, and the next run settles it. The file
//! lists are built like the disk recovery's ([`LiveNames`]), one part in
//! memory at a time, in a scratch folder that is removed at the end.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::net::SocketAddr;
use std::time::Duration;

use fdfs_proto::trunk::{self, SlotHeader, HEADER_LEN};
use fdfs_proto::{FileKind, GroupName, LogicName};

use crate::recovery::{Fetcher, LiveNames};

/// Where a storage keeps its binlog and files.
#[derive(Debug, Clone)]
pub struct Layout {
    pub base_path: PathBuf,
    pub store_paths: Vec<PathBuf>,
    pub subdir_count: u32,
}

/// What is wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// A trunk file without this file in its slot.
    NotInSlot,
    Size {
        recorded: u64,
        found: u64,
    },
    Crc {
        recorded: u32,
        found: u32,
    },
    /// A name no storage could hold (corrupt binlog line, subdirectory out
    /// of range).
    BadName(String),
    /// On disk, not in the binlog: never replicated.
    NotInBinlog,
    Unreadable(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "missing"),
            Problem::NotInSlot => write!(f, "not in its trunk slot"),
            Problem::Size { recorded, found } => {
                write!(f, "{found} bytes, the name records {recorded}")
            }
            Problem::Crc { recorded, found } => {
                write!(f, "CRC32 {found:08X}, the name records {recorded:08X}")
            }
            Problem::BadName(why) => write!(f, "bad name: {why}"),
            Problem::NotInBinlog => write!(f, "on disk but not in the binlog"),
            Problem::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct Report {
    /// Live names looked at.
    pub checked: u64,
    /// The CRC32 was compared too.
    pub crc_checked: u64,
    /// Files found on disk (with `orphans`).
    pub on_disk: u64,
    /// Every problem found, by logic name.
    pub problems: Vec<(String, Problem)>,
}

/// Checks every store path of `layout`; `crc`: also read each file whose
/// name records its CRC32 (normal and trunk files) and compare;
/// `orphans`: also list the files on disk the binlog does not name.
pub fn check(layout: &Layout, crc: bool, orphans: bool) -> io::Result<Report> {
    let binlog = layout.base_path.join("data").join("sync");
    let scratch = std::env::temp_dir().join(format!(
        "fdfs-fsck.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut report = Report::default();
    let result = (|| {
        for (idx, store) in layout.store_paths.iter().enumerate() {
            let names = LiveNames::split(&binlog, idx, &scratch.join("binlog"), 0)?;
            let disk = if orphans {
                Some(DiskNames::list(store, idx, &names, &scratch.join("disk"))?)
            } else {
                None
            };
            for k in 0..names.parts() {
                let live = names.part(k)?;
                if let Some(disk) = &disk {
                    for name in disk.part(k)? {
                        report.on_disk += 1;
                        if !live.contains(&name) {
                            report.problems.push((name, Problem::NotInBinlog));
                        }
                    }
                }
                for name in live {
                    report.checked += 1;
                    match check_one(store, layout.subdir_count, &name, crc) {
                        Ok(true) => report.crc_checked += 1,
                        Ok(false) => {}
                        Err(p) => report.problems.push((name, p)),
                    }
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| {
        report.problems.sort_by(|a, b| a.0.cmp(&b.0));
        report
    })
}

/// Where [`repair`] fetches files from.
#[derive(Debug, Clone)]
pub struct Source {
    pub group: GroupName,
    /// Servers of the group to ask, in turn.
    pub peers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub network_timeout: Duration,
}

/// Fetches every file `report` found missing, of another size or with
/// another CRC32 from the first of `source.peers` that has a sound copy
/// (checked against its name where the name records size and CRC32) and
/// puts it in place: a temporary file in the store path's `data/.tmp`,
/// fsynced, renamed; or for a file of a trunk slot, its slot filled again.
/// Orphans and bad names are left.
/// Returns, per damaged file, what became of it.
pub async fn repair(
    layout: &Layout,
    report: &Report,
    source: &Source,
) -> Vec<(String, Result<(), String>)> {
    let mut fetcher = Fetcher::with_timeouts(source.connect_timeout, source.network_timeout);
    let mut out = Vec::new();
    for (n, (name, problem)) in report.problems.iter().enumerate() {
        if !matches!(
            problem,
            Problem::Missing | Problem::Size { .. } | Problem::Crc { .. } | Problem::NotInSlot
        ) {
            continue;
        }
        let r = repair_one(layout, source, &mut fetcher, name, n).await;
        out.push((name.clone(), r));
    }
    fetcher.close().await;
    out
}

async fn repair_one(
    layout: &Layout,
    source: &Source,
    fetcher: &mut Fetcher,
    name: &str,
    n: usize,
) -> Result<(), String> {
    let logic = LogicName::parse(name).map_err(|e| e.to_string())?;
    let store = layout
        .store_paths
        .get(usize::from(logic.store_path))
        .ok_or("no such store path")?;
    let path = store.join("data").join(logic.relative_path());
    let tmp = store
        .join("data")
        .join(".tmp")
        .join(format!("fsck.{}.{n}", std::process::id()));
    let mut why = "no server of the group has it".to_owned();
    for peer in &source.peers {
        let mut f = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        match fetcher.fetch(*peer, &source.group, name, &mut f).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                why = format!("{peer}: {e}");
                continue;
            }
        }
        if matches!(logic.kind, FileKind::Normal | FileKind::Trunk(_)) {
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            let recorded = logic.info.file_size().unwrap_or(0);
            let crc = crc_of(&mut File::open(&tmp).map_err(|e| e.to_string())?, len)
                .map_err(|e| e.to_string())?;
            if len != recorded || crc != logic.info.crc32 {
                why = format!("{peer}: its copy is damaged too ({len} bytes, CRC32 {crc:08X})");
                continue;
            }
        }
        if let FileKind::Trunk(slot) = logic.kind {
            // Into its slot; the slot header is written last.
            let header = SlotHeader::for_name(&logic).ok_or("not a trunk name")?;
            let trunk_file = path.with_file_name(trunk::file_name(&slot));
            if let Some(there) = newer_in_slot(&trunk_file, &logic, &slot) {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!(
                    "its slot holds a newer file (made at {}): {name} was deleted and its \
                     slot given out again; left as it is",
                    there.mtime
                ));
            }
            let src = File::open(&tmp).map_err(|e| e.to_string())?;
            let size = src.metadata().map_err(|e| e.to_string())?.len();
            let r =
                crate::store::trunk::fill_slot(&trunk_file, &header, &slot, &src, size, true, 0);
            let _ = std::fs::remove_file(&tmp);
            return r
                .map(|_| ())
                .map_err(|e| format!("writing {}: {e}", trunk_file.display()));
        }
        f.sync_all()
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("saving {}: {e}", path.display()))?;
        return Ok(());
    }
    let _ = std::fs::remove_file(&tmp);
    Err(why)
}

/// The header in `name`'s slot of `trunk_file` when it is another file's,
/// made after `name` (the slot was freed and given out again).
fn newer_in_slot(
    trunk_file: &std::path::Path,
    name: &LogicName,
    slot: &fdfs_proto::file_id::TrunkSlot,
) -> Option<SlotHeader> {
    use std::os::unix::fs::FileExt;
    let f = File::open(trunk_file).ok()?;
    let room = f
        .metadata()
        .ok()?
        .len()
        .checked_sub(u64::from(slot.offset))?;
    let mut h = [0u8; HEADER_LEN];
    f.read_exact_at(&mut h, u64::from(slot.offset)).ok()?;
    let h = SlotHeader::decode(&h);
    h.holds_newer_than(name, room).then_some(h)
}

/// The names of the files in a store path's `data/HH/HH/` folders, split
/// into the parts of a [`LiveNames`] (one name per line in each part file).
struct DiskNames {
    dir: PathBuf,
}

impl DiskNames {
    fn list(store: &Path, idx: usize, by: &LiveNames, dir: &Path) -> io::Result<DiskNames> {
        use std::io::{BufWriter, Write};
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let mut out: Vec<Option<BufWriter<File>>> = (0..by.parts()).map(|_| None).collect();
        let data = store.join("data");
        for high in hex_dirs(&data)? {
            for low in hex_dirs(&data.join(&high))? {
                for e in std::fs::read_dir(data.join(&high).join(&low))? {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    // Trunk files hold slots, which the binlog lists.
                    if name.bytes().all(|b| b.is_ascii_digit()) || e.file_type()?.is_dir() {
                        continue;
                    }
                    let logic = format!("M{idx:02X}/{high}/{low}/{name}");
                    let k = by.part_of(&logic);
                    let w = match &mut out[k] {
                        Some(w) => w,
                        slot => slot.insert(BufWriter::new(File::create(dir.join(k.to_string()))?)),
                    };
                    writeln!(w, "{logic}")?;
                }
            }
        }
        for w in out.into_iter().flatten() {
            w.into_inner().map_err(|e| e.into_error())?;
        }
        Ok(DiskNames {
            dir: dir.to_owned(),
        })
    }

    fn part(&self, k: usize) -> io::Result<Vec<String>> {
        match std::fs::read_to_string(self.dir.join(k.to_string())) {
            Ok(t) => Ok(t.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// The two-hex-digit folders of `dir` (the sub-directories of a store path).
fn hex_dirs(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()) && e.file_type()?.is_dir() {
            v.push(n);
        }
    }
    Ok(v)
}

/// `Ok(true)`: fine, CRC32 compared; `Ok(false)`: fine.
fn check_one(store: &Path, subdir_count: u32, name: &str, crc: bool) -> Result<bool, Problem> {
    let logic = LogicName::parse(name).map_err(|e| Problem::BadName(e.to_string()))?;
    logic
        .check_subdirs(subdir_count)
        .map_err(|e| Problem::BadName(e.to_string()))?;
    let path = store.join("data").join(logic.relative_path());
    let unreadable = |e: io::Error| Problem::Unreadable(e.to_string());
    if let FileKind::Trunk(slot) = logic.kind {
        let f = match File::open(path.with_file_name(trunk::file_name(&slot))) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Missing),
            Err(e) => return Err(unreadable(e)),
        };
        let len = f.metadata().map_err(unreadable)?.len();
        // The header must be inside the file before it is read.
        if trunk::content_offset(&slot) > len {
            return Err(Problem::NotInSlot);
        }
        let mut h = [0u8; HEADER_LEN];
        f.read_exact_at(&mut h, u64::from(slot.offset))
            .map_err(unreadable)?;
        let header = SlotHeader::decode(&h);
        let Some((start, size)) = trunk::content_of(&header, &logic, len) else {
            return Err(Problem::NotInSlot);
        };
        if !crc {
            return Ok(false);
        }
        let found = crc_of(&mut ReadAt::new(&f, start), size).map_err(unreadable)?;
        return compare_crc(logic.info.crc32, found).map(|()| true);
    }
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(Problem::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    // Appenders change size; slaves and `-m` sidecars carry their master's
    // fields: only normal files are held to their name.
    if logic.kind != FileKind::Normal {
        return Ok(false);
    }
    let recorded = logic.info.file_size().unwrap_or(0);
    if meta.len() != recorded {
        return Err(Problem::Size {
            recorded,
            found: meta.len(),
        });
    }
    if !crc {
        return Ok(false);
    }
    let mut f = File::open(&path).map_err(unreadable)?;
    let found = crc_of(&mut f, recorded).map_err(unreadable)?;
    compare_crc(logic.info.crc32, found).map(|()| true)
}

fn compare_crc(recorded: u32, found: u32) -> Result<(), Problem> {
    if recorded == found {
        Ok(())
    } else {
        Err(Problem::Crc { recorded, found })
    }
}

/// CRC32 of the next `len` bytes of `r`.
fn crc_of(r: &mut impl Read, len: u64) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

/// Reads a file from a position without moving its cursor.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File, pos: u64) -> Self {
        ReadAt { file, pos }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::RealDisk;
    use crate::store::trunk::planted::plant;
    use crate::store::{binlog, Store, StoreConfig, UploadKind};
    use fdfs_conf::{DurableSync, ReservedSpace};
    use fdfs_proto::storage::MetaOp;
    use fdfs_proto::{GroupName, SourceServer};
    use std::sync::Arc;

    fn store(dir: &Path) -> Store {
        let cfg = StoreConfig {
            base_path: dir.to_owned(),
            store_paths: vec![dir.join("p0"), dir.join("p1")],
            readonly: vec![false; 2],
            subdir_count: 4,
            distribute_mode: 0,
            rotate_count: 2,
            durable: false,
            durable_sync: DurableSync::Fsync,
            group: GroupName::new("group1").unwrap(),
            reserved: ReservedSpace::Bytes(0),
            binlog_max_size: binlog::DEFAULT_MAX_SIZE,
            journal_file_size: 1 << 20,
        };
        let s = Store::open(cfg, Arc::new(RealDisk)).unwrap();
        s.set_source(SourceServer::Ip("127.0.0.1".parse().unwrap()));
        s
    }

    fn upload(s: &Store, data: &[u8], kind: UploadKind) -> LogicName {
        let mut u = s.begin_upload(0, data.len() as u64, "txt", kind).unwrap();
        u.write(data).unwrap();
        s.finish_upload(u).unwrap()
    }

    /// A repair never puts a deleted file back over the newer file its
    /// slot was given to.
    #[test]
    fn a_slot_given_to_a_newer_file_is_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let old = plant(&s, 1, 0, 256, b"deleted since");
        let FileKind::Trunk(slot) = old.kind else {
            panic!("{old} is not packed");
        };
        let trunk_file = s.resolve(&old).unwrap().with_file_name("000001");
        assert!(newer_in_slot(&trunk_file, &old, &slot).is_none(), "its own");
        // The slot, freed and given to a file made later.
        let mut newer = SlotHeader::for_name(&old).unwrap();
        newer.mtime += 60;
        newer.crc32 ^= 1;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&trunk_file)
            .unwrap()
            .write_all_at(&newer.encode(), 0)
            .unwrap();
        assert_eq!(newer_in_slot(&trunk_file, &old, &slot), Some(newer));
    }

    #[test]
    fn every_kind_of_damage_is_named_and_nothing_is_changed() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let layout = Layout {
            base_path: d.path().to_owned(),
            store_paths: vec![d.path().join("p0"), d.path().join("p1")],
            subdir_count: 4,
        };
        let fine = upload(&s, b"fine", UploadKind::Normal);
        let gone = upload(&s, b"deleted by hand", UploadKind::Normal);
        let cut = upload(&s, b"truncated by hand", UploadKind::Normal);
        let flipped = upload(&s, b"one byte flipped", UploadKind::Normal);
        let app = upload(&s, b"appender", UploadKind::Appender);
        let deleted = upload(&s, b"deleted properly", UploadKind::Normal);
        s.delete(&deleted).unwrap();
        s.set_metadata(&fine, MetaOp::Overwrite, b"k\x02v").unwrap();
        let packed = plant(&s, 1, 0, 256, b"in a slot");
        let freed = plant(&s, 1, 256, 256, b"its slot reused");
        let path = |n: &LogicName| s.resolve(n).unwrap();
        std::fs::remove_file(path(&gone)).unwrap();
        std::fs::write(path(&cut), b"truncated").unwrap();
        std::fs::write(path(&flipped), b"one byte fliPped").unwrap();
        std::fs::write(path(&app), b"appender, appended").unwrap();
        // Another file's header in `freed`'s slot.
        let trunk = path(&packed).with_file_name("000001");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&trunk)
            .unwrap();
        f.write_all_at(&[0u8; 4], 256 + 9).unwrap();

        let before = std::fs::read(&trunk).unwrap();
        let r = check(&layout, false, false).unwrap();
        // fine, its -m, gone, cut, flipped, app, packed, freed.
        assert_eq!(r.checked, 8, "{r:?}");
        let mut want = vec![
            (gone.to_string(), Problem::Missing),
            (
                cut.to_string(),
                Problem::Size {
                    recorded: 17,
                    found: 9,
                },
            ),
            (freed.to_string(), Problem::NotInSlot),
        ];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(r.problems, want);
        assert_eq!(r.crc_checked, 0);

        let r = check(&layout, true, false).unwrap();
        let flip = r
            .problems
            .iter()
            .find(|(n, _)| *n == flipped.to_string())
            .expect("the flipped byte is found with --crc");
        assert_eq!(
            flip.1,
            Problem::Crc {
                recorded: crc32fast::hash(b"one byte flipped"),
                found: crc32fast::hash(b"one byte fliPped"),
            }
        );
        assert_eq!(r.problems.len(), 4);
        // fine and packed.
        assert_eq!(r.crc_checked, 2);
        assert_eq!(std::fs::read(&trunk).unwrap(), before, "read only");
        // A file put in a store path by hand is in no binlog.
        let stray = path(&fine).with_file_name("stray.jpg");
        std::fs::write(&stray, b"never replicated").unwrap();
        let r = check(&layout, false, true).unwrap();
        let orphan = format!(
            "M00/{}",
            stray
                .strip_prefix(d.path().join("p0/data"))
                .unwrap()
                .display()
        );
        assert!(
            r.problems.contains(&(orphan, Problem::NotInBinlog)),
            "{:?}",
            r.problems
        );
        // fine, its -m, cut, flipped, app and the stray one; not the trunk
        // file itself, whose slots the binlog lists.
        assert_eq!(r.on_disk, 6);
        assert_eq!(r.problems.len(), 4, "{:?}", r.problems);
        assert!(std::fs::read_dir(std::env::temp_dir()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("fdfs-fsck.{}.", std::process::id()))));
    }
}

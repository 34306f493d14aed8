//! Engine unit tests: real files in a temporary directory, no sockets.

use super::*;
use crate::store::disk::{Disk, FailingDisk, RealDisk};
use std::io::Write;

fn cfg(dir: &Path, paths: usize) -> StoreConfig {
    StoreConfig {
        base_path: dir.to_owned(),
        store_paths: (0..paths).map(|i| dir.join(format!("p{i}"))).collect(),
        readonly: vec![false; paths],
        subdir_count: 4,
        distribute_mode: 0,
        rotate_count: 2,
        durable: true,
        durable_sync: DurableSync::Fsync,
        group: GroupName::new("group1").unwrap(),
        reserved: ReservedSpace::Bytes(0),
        binlog_max_size: binlog::DEFAULT_MAX_SIZE,
        journal_file_size: 1 << 20,
    }
}

fn open(dir: &Path) -> Store {
    Store::open(cfg(dir, 1), Arc::new(RealDisk)).unwrap()
}

fn upload(s: &Store, data: &[u8], ext: &str, kind: UploadKind) -> Result<LogicName> {
    let mut u = s.begin_upload(-1, data.len() as u64, ext, kind)?;
    for c in data.chunks(7) {
        u.write(c)?;
    }
    s.finish_upload(u)
}

fn read_all(s: &Store, n: &LogicName, off: u64, len: u64) -> Result<Vec<u8>> {
    let (mut f, _, count) = s.open_read(n, off, len)?;
    let mut v = vec![0; count as usize];
    f.read_exact(&mut v).unwrap();
    Ok(v)
}

fn binlog_lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("data/sync/binlog.000"))
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect()
}

fn tmp_entries(dir: &Path) -> usize {
    fs::read_dir(dir.join("p0/data/.tmp")).unwrap().count()
}

#[test]
fn upload_names_the_file_and_records_it() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    s.set_source(SourceServer::Ip(Ipv4Addr::new(192, 168, 11, 83)));
    assert!(d.path().join("p0/data/03/03").is_dir());
    let data = b"hello fastdfs world!\n";
    let n = upload(&s, data, "txt", UploadKind::Normal).unwrap();
    assert_eq!(n.kind, FileKind::Normal);
    assert_eq!(n.info.file_size(), Some(data.len() as u64));
    assert_eq!(n.info.crc32, crc32fast::hash(data));
    assert_eq!(
        n.info.source,
        SourceServer::Ip(Ipv4Addr::new(192, 168, 11, 83))
    );
    assert_eq!(n.ext(), "txt");
    let parsed = LogicName::parse(&n.to_string()).unwrap();
    assert_eq!(parsed, n);
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), data);
    assert_eq!(read_all(&s, &n, 6, 7).unwrap(), b"fastdfs");
    assert_eq!(
        read_all(&s, &n, 15, 100).unwrap(),
        b"orld!\n",
        "length clamped"
    );
    assert_eq!(s.open_read(&n, 21, 0).unwrap_err().status(), 22);
    assert_eq!(binlog_lines(d.path()), vec![format!("C {n}")]);
    assert_eq!(tmp_entries(d.path()), 0);
    let info = s.file_info(&n, false).unwrap();
    assert_eq!(info.size, 21);
    assert_eq!(info.crc32, crc32fast::hash(data));
    assert_eq!(info.source_ip, "192.168.11.83");
}

#[test]
fn empty_file_and_round_robin_subdirs() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let mut dirs = vec![];
    for _ in 0..5 {
        let n = upload(&s, b"", "", UploadKind::Normal).unwrap();
        assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"");
        assert_eq!(n.ext(), "");
        dirs.push((n.sub_high, n.sub_low));
    }
    // rotate_count = 2: two files per sub-directory, then the next one.
    assert_eq!(dirs, vec![(0, 0), (0, 0), (0, 1), (0, 1), (0, 2)]);
    s.save_stats().unwrap();
    drop(s);
    let s = open(d.path());
    let n = upload(&s, b"x", "", UploadKind::Normal).unwrap();
    assert_eq!(
        (n.sub_high, n.sub_low),
        (0, 2),
        "rotation state survives restart"
    );
}

#[test]
fn hash_mode_spreads_over_subdirs() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path(), 1);
    c.distribute_mode = 1;
    let s = Store::open(c, Arc::new(RealDisk)).unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..40u32 {
        let n = upload(&s, &i.to_be_bytes(), "bin", UploadKind::Normal).unwrap();
        seen.insert((n.sub_high, n.sub_low));
    }
    assert!(seen.len() > 4, "{seen:?}");
}

#[test]
fn abandoned_and_short_uploads_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let mut u = s.begin_upload(-1, 10, "txt", UploadKind::Normal).unwrap();
    u.write(b"abc").unwrap();
    assert!(u.tmp_path().unwrap().exists());
    assert_eq!(tmp_entries(d.path()), 1);
    drop(u);
    assert_eq!(tmp_entries(d.path()), 0);
    let mut u = s.begin_upload(-1, 3, "txt", UploadKind::Normal).unwrap();
    assert_eq!(u.write(b"abcd").unwrap_err().status(), 22);
    u.write(b"ab").unwrap();
    assert_eq!(s.finish_upload(u).unwrap_err().status(), 22);
    assert_eq!(tmp_entries(d.path()), 0);
    assert!(fs::read_to_string(d.path().join("data/sync/binlog.000"))
        .unwrap()
        .is_empty());
    // A crash leaves a temporary file behind: removed on the next start.
    fs::write(d.path().join("p0/data/.tmp/123.4.deadbeef"), b"partial").unwrap();
    drop(s);
    let _s = open(d.path());
    assert_eq!(tmp_entries(d.path()), 0);
}

/// Content not fsynced before it is named (no `durable`, or journaled)
/// is staged in an unnamed file: no entry in `.tmp` at any time, and an
/// abandoned upload leaves nothing. Content fsynced first (`fsync` above)
/// keeps a named temporary file.
#[test]
fn uploads_not_synced_before_naming_are_staged_unnamed() {
    for (durable, mode) in [(false, DurableSync::Fsync), (true, DurableSync::Journal)] {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), 1);
        c.durable = durable;
        c.durable_sync = mode;
        let s = Store::open(c, Arc::new(RealDisk)).unwrap();
        let mut u = s.begin_upload(-1, 10, "txt", UploadKind::Normal).unwrap();
        u.write(b"abcde").unwrap();
        assert!(u.tmp_path().is_none(), "{mode:?}");
        assert_eq!(tmp_entries(d.path()), 0);
        drop(u);
        assert_eq!(tmp_entries(d.path()), 0);
        let n = upload(&s, b"0123456789", "txt", UploadKind::Normal).unwrap();
        assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"0123456789");
        assert_eq!(tmp_entries(d.path()), 0);
        let meta = fs::metadata(s.resolve(&n).unwrap()).unwrap();
        assert_eq!(meta.len(), 10);
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1);
    }
}

/// The probe that picks unnamed staging per store path: yes on a normal
/// folder, no where `O_TMPFILE` is refused (procfs) or the folder is gone.
#[test]
fn the_unnamed_file_probe_tells_where_it_works() {
    let d = tempfile::tempdir().unwrap();
    assert!(disk::unnamed_files_work(d.path()));
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        0,
        "the probe cleans up"
    );
    assert!(!disk::unnamed_files_work(Path::new("/proc")));
    assert!(!disk::unnamed_files_work(&d.path().join("missing")));
}

#[test]
fn an_unnamed_file_never_replaces_an_existing_name() {
    let d = tempfile::tempdir().unwrap();
    let to = d.path().join("taken");
    fs::write(&to, b"stored").unwrap();
    let mut f = disk::create_unnamed(d.path()).unwrap();
    f.write_all(b"newcomer").unwrap();
    let e = disk::link_unnamed(&f, &to).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&to).unwrap(), b"stored");
    let free = d.path().join("free");
    disk::link_unnamed(&f, &free).unwrap();
    drop(f);
    assert_eq!(fs::read(&free).unwrap(), b"newcomer");
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
}

/// No room for the journal's two files (the default mode since it replaced
/// `fsync`): the store starts with `fsync` instead of refusing to, leaves
/// no journal file behind, and takes durable uploads. Other errors still
/// stop the start.
#[test]
fn a_journal_without_room_falls_back_to_fsync() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path(), 1);
    c.durable_sync = DurableSync::Journal;
    assert_eq!(c.journal_file_size, 1 << 20);
    // Room for the first file and 32 KiB: the second one fails.
    let disk = Arc::new(FailingDisk::full_after((1 << 20) + (32 << 10)));
    let s = Store::open(c.clone(), disk).unwrap();
    assert_eq!(s.config().durable_sync, DurableSync::Fsync);
    assert!(s.journal.is_none());
    for i in 0..2 {
        assert!(!journal::journal_path(&d.path().join("data"), i).exists());
    }
    let n = upload(&s, b"still durable", "txt", UploadKind::Normal).unwrap();
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"still durable");
    drop(s);
    // With room, the next start has its journal.
    let s = Store::open(c.clone(), Arc::new(RealDisk)).unwrap();
    assert!(s.journal.is_some());
    assert_eq!(s.config().durable_sync, DurableSync::Journal);
    drop(s);
    let d = tempfile::tempdir().unwrap();
    let c = StoreConfig {
        durable_sync: DurableSync::Journal,
        ..cfg(d.path(), 1)
    };
    let e = Store::open(c, Arc::new(FailingDisk::new(0, libc::EIO))).err();
    assert_eq!(e.map(|e| e.status()), Some(5));
}

#[test]
fn disk_full_gives_enospc_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(cfg(d.path(), 1), Arc::new(FailingDisk::full_after(10))).unwrap();
    let mut u = s.begin_upload(-1, 20, "txt", UploadKind::Normal).unwrap();
    u.write(&[1; 7]).unwrap();
    let e = u.write(&[1; 7]).unwrap_err();
    assert_eq!(e.status(), 28, "{e}");
    drop(u);
    assert_eq!(tmp_entries(d.path()), 0);
    // An I/O error is EIO.
    let s = Store::open(cfg(d.path(), 1), Arc::new(FailingDisk::new(0, libc::EIO))).unwrap();
    let mut u = s.begin_upload(-1, 1, "txt", UploadKind::Normal).unwrap();
    assert_eq!(u.write(b"x").unwrap_err().status(), 5);
}

#[test]
fn reserved_space_and_store_path_choice() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path(), 2);
    c.readonly = vec![true, false];
    let s = Store::open(c, Arc::new(RealDisk)).unwrap();
    // Path 0 is read-only: the storage picks path 1 even when asked for 0.
    let u = s.begin_upload(0, 1, "", UploadKind::Normal).unwrap();
    assert!(u.tmp_path().unwrap().starts_with(d.path().join("p1")));
    drop(u);
    assert_eq!(
        s.begin_upload(5, 1, "", UploadKind::Normal)
            .err()
            .unwrap()
            .status(),
        22
    );
    let (total, free) = space(d.path()).unwrap();
    assert!(total > 0 && free > 0);
    // A file that would cross the reserved space is refused up front (one
    // larger than the whole disk: free space moves while other processes
    // write and delete).
    s.set_reserved(ReservedSpace::Bytes(0));
    assert_eq!(
        s.begin_upload(-1, total + 1, "", UploadKind::Normal)
            .err()
            .unwrap()
            .status(),
        28
    );
    s.set_reserved(ReservedSpace::Ratio(0.9999));
    assert_eq!(
        s.begin_upload(-1, 1, "", UploadKind::Normal)
            .err()
            .unwrap()
            .status(),
        28
    );
    assert_eq!(s.disk_usage().len(), 2);
    assert_eq!(
        fs::read_dir(d.path().join("p1/data/.tmp")).unwrap().count(),
        0
    );
}

#[test]
fn slave_files() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let m = upload(&s, b"master", "jpg", UploadKind::Normal).unwrap();
    let k = UploadKind::Slave {
        master: m.clone(),
        prefix: "_150x150".into(),
    };
    let sl = upload(&s, b"small", "png", k.clone()).unwrap();
    assert_eq!(sl, m.slave("_150x150", "png").unwrap());
    assert_eq!(read_all(&s, &sl, 0, 0).unwrap(), b"small");
    assert_eq!(upload(&s, b"again", "png", k).unwrap_err().status(), 17);
    let info = s.file_info(&sl, false).unwrap();
    assert_eq!(info.crc32, crc32fast::hash(b"small"));
    assert_eq!(s.file_info(&sl, true).unwrap().crc32, 0);
    // Missing master.
    s.delete(&m).unwrap();
    let k = UploadKind::Slave {
        master: m.clone(),
        prefix: "_small".into(),
    };
    assert_eq!(upload(&s, b"x", "", k).unwrap_err().status(), 2);
    let k = UploadKind::Slave {
        master: m.clone(),
        prefix: "a/b".into(),
    };
    assert_eq!(upload(&s, b"x", "", k).unwrap_err().status(), 22);
}

#[tokio::test]
async fn appender_append_modify_truncate_regenerate() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let a = upload(&s, b"hello", "log", UploadKind::Appender).unwrap();
    assert_eq!(a.kind, FileKind::Appender);
    assert_eq!(a.info.crc32, crc32fast::hash(b"hello"));
    let _g = s.lock_file(&a).await;
    let mut u = s.begin_update(&a, None, 6).unwrap();
    u.write(b" world").unwrap();
    s.finish_update(u).unwrap();
    let mut u = s.begin_update(&a, Some(0), 1).unwrap();
    u.write(b"J").unwrap();
    s.finish_update(u).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"Jello world");
    // Modify may extend from the end, not start past it.
    assert_eq!(s.begin_update(&a, Some(12), 1).err().unwrap().status(), 22);
    let mut u = s.begin_update(&a, Some(11), 1).unwrap();
    u.write(b"!").unwrap();
    s.finish_update(u).unwrap();
    // An abandoned append is cut back.
    let mut u = s.begin_update(&a, None, 10).unwrap();
    u.write(b"xx").unwrap();
    drop(u);
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"Jello world!");
    s.truncate(&a, 5).unwrap();
    s.truncate(&a, 5).unwrap();
    s.truncate(&a, 7).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"Jello\0\0");
    assert_eq!(
        s.file_info(&a, false).unwrap().crc32,
        crc32fast::hash(b"Jello\0\0")
    );
    let n = s.regenerate(&a).unwrap();
    assert_eq!(n.kind, FileKind::Normal);
    assert_eq!(n.info.file_size(), Some(7));
    assert_eq!(n.info.crc32, crc32fast::hash(b"Jello\0\0"));
    assert_eq!(&n.name[27..], &a.name[27..]);
    assert_eq!((n.sub_high, n.sub_low), (a.sub_high, a.sub_low));
    assert_eq!(s.open_read(&a, 0, 0).unwrap_err().status(), 2);
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"Jello\0\0");
    // Appender operations on a normal file are invalid.
    assert_eq!(s.begin_update(&n, None, 1).err().unwrap().status(), 22);
    assert_eq!(s.truncate(&n, 1).unwrap_err().status(), 22);
    assert_eq!(s.regenerate(&n).unwrap_err().status(), 22);
    assert_eq!(
        binlog_lines(d.path()),
        vec![
            format!("C {a}"),
            format!("A {a} 5 6"),
            format!("M {a} 0 1"),
            format!("M {a} 11 1"),
            format!("T {a} 12 5"),
            format!("T {a} 5 7"),
            format!("R {n} {a}"),
        ]
    );
}

#[test]
fn metadata_overwrite_merge_and_delete() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let n = upload(&s, b"data", "txt", UploadKind::Normal).unwrap();
    assert_eq!(s.get_metadata(&n).unwrap_err().status(), 2);
    s.set_metadata(
        &n,
        MetaOp::Overwrite,
        b"width\x021024\x01height\x02768\x01author\x02bob",
    )
    .unwrap();
    s.set_metadata(&n, MetaOp::Merge, b"author\x02alice\x01color\x02red")
        .unwrap();
    let golden = b"author\x02alice\x01color\x02red\x01height\x02768\x01width\x021024";
    assert_eq!(s.get_metadata(&n).unwrap(), golden);
    s.set_metadata(&n, MetaOp::Merge, b"").unwrap();
    assert_eq!(s.get_metadata(&n).unwrap(), golden);
    s.set_metadata(&n, MetaOp::Overwrite, b"").unwrap();
    assert_eq!(s.get_metadata(&n).unwrap_err().status(), 2);
    s.set_metadata(&n, MetaOp::Merge, b"a\x021").unwrap();
    s.delete(&n).unwrap();
    assert_eq!(s.delete(&n).unwrap_err().status(), 2);
    assert_eq!(
        s.set_metadata(&n, MetaOp::Merge, b"a\x021")
            .unwrap_err()
            .status(),
        2
    );
    let m = format!("{n}-m");
    assert_eq!(
        binlog_lines(d.path()),
        vec![
            format!("C {n}"),
            format!("C {m}"),
            format!("U {m}"),
            format!("D {m}"),
            format!("C {m}"),
            format!("D {m}"),
            format!("D {n}"),
        ]
    );
}

#[test]
fn names_outside_the_store_are_not_found() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    // Store path M01 does not exist; sub-directory 0A is beyond 4.
    for n in [
        "M01/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "M00/0A/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
        "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip",
    ] {
        let l = LogicName::parse(n).unwrap();
        assert_eq!(s.open_read(&l, 0, 0).unwrap_err().status(), 2, "{n}");
        assert_eq!(s.file_info(&l, false).unwrap_err().status(), 2, "{n}");
        assert_eq!(s.delete(&l).unwrap_err().status(), 2, "{n}");
    }
}

#[test]
fn large_size_field_logic() {
    // > 4 GiB files carry the raw size; the name round-trips.
    let info = NameInfo {
        source: SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 1)),
        timestamp: now(),
        size_field: NameInfo::size_field_for(5 << 30, false, 7),
        crc32: 1,
    };
    let n = LogicName::build(0, 1, 2, info, None, "000.bin");
    let p = LogicName::parse(&n.to_string()).unwrap();
    assert_eq!(p.info.file_size(), Some(5 << 30));
    assert_eq!(p.kind, FileKind::Normal);
}

#[test]
fn concurrent_uploads_share_binlog_fsyncs() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(open(d.path()));
    let names: Vec<LogicName> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8u32)
            .map(|i| {
                let s = s.clone();
                sc.spawn(move || {
                    (0..10u32)
                        .map(|j| {
                            upload(&s, format!("{i}-{j}").as_bytes(), "t", UploadKind::Normal)
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let set: std::collections::HashSet<_> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(set.len(), 80);
    let lines = binlog_lines(d.path());
    assert_eq!(lines.len(), 80);
    for n in &names {
        assert!(lines.contains(&format!("C {n}")));
    }
}

#[test]
fn missing_subdirectory_is_recreated() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    fs::remove_dir(d.path().join("p0/data/00/00")).unwrap();
    let n = upload(&s, b"abc", "txt", UploadKind::Normal).unwrap();
    assert_eq!((n.sub_high, n.sub_low), (0, 0));
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"abc");
    // A half-done first start (no .fastdfs_vars) is completed next time.
    fs::remove_file(d.path().join("p0/data/.fastdfs_vars")).unwrap();
    fs::remove_dir(d.path().join("p0/data/02/01")).unwrap();
    drop(s);
    let _s = open(d.path());
    assert!(d.path().join("p0/data/02/01").is_dir());
}

#[test]
fn rename_noreplace_names_once_and_never_replaces() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    fs::write(&a, b"first").unwrap();
    fs::write(&c, b"second").unwrap();
    super::disk::rename_noreplace(&a, &b).unwrap();
    assert!(!a.exists());
    assert_eq!(fs::read(&b).unwrap(), b"first");
    let e = super::disk::rename_noreplace(&c, &b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&b).unwrap(), b"first", "the named file is kept");
    assert_eq!(fs::read(&c).unwrap(), b"second", "the source stays");
}

/// Counts the fsyncs and syncfs calls; `fail_syncfs` makes syncfs fail.
#[derive(Default)]
struct CountingDisk {
    syncs: AtomicU64,
    syncfs: AtomicU64,
    datasyncs: AtomicU64,
    fail_syncfs: bool,
    fail_datasync: std::sync::atomic::AtomicBool,
}

impl Disk for CountingDisk {
    fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        RealDisk.write(file, buf)
    }
    fn sync(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        RealDisk.sync(file)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.datasyncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_datasync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealDisk.sync_data(file)
    }
    fn sync_fs(&self, on: &File) -> io::Result<()> {
        self.syncfs.fetch_add(1, Ordering::SeqCst);
        if self.fail_syncfs {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        RealDisk.sync_fs(on)
    }
}

#[test]
fn durable_sync_chooses_fsync_per_file_or_syncfs() {
    // fsync (default): the file itself is fsynced, no syncfs.
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk::default());
    let s = Store::open(cfg(d.path(), 1), disk.clone()).unwrap();
    let n = upload(&s, b"per file", "txt", UploadKind::Normal).unwrap();
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"per file");
    assert_eq!(disk.syncs.load(Ordering::SeqCst), 1);
    assert_eq!(disk.syncfs.load(Ordering::SeqCst), 0);

    // syncfs: no fsync of the file; one syncfs per upload here (store path
    // and binlog share a file system, and nothing runs concurrently).
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk::default());
    let c = StoreConfig {
        durable_sync: DurableSync::Syncfs,
        ..cfg(d.path(), 1)
    };
    let s = Store::open(c.clone(), disk.clone()).unwrap();
    let a = upload(&s, b"one", "txt", UploadKind::Normal).unwrap();
    let b = upload(&s, b"two", "bin", UploadKind::Appender).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"one");
    assert_eq!(read_all(&s, &b, 0, 0).unwrap(), b"two");
    assert_eq!(disk.syncs.load(Ordering::SeqCst), 0);
    assert_eq!(disk.syncfs.load(Ordering::SeqCst), 2);
    let lines = binlog_lines(d.path());
    assert_eq!(lines, [format!("C {a}"), format!("C {b}")]);

    // A failing syncfs fails the upload with EIO: the client is not told
    // the file is safe.
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk {
        fail_syncfs: true,
        ..CountingDisk::default()
    });
    let c = StoreConfig {
        durable_sync: DurableSync::Syncfs,
        ..cfg(d.path(), 1)
    };
    let s = Store::open(c, disk).unwrap();
    let e = upload(&s, b"lost?", "txt", UploadKind::Normal).unwrap_err();
    assert_eq!(e.status(), 5, "{e}");
}

fn journal_cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        durable_sync: DurableSync::Journal,
        ..cfg(dir, 1)
    }
}

#[test]
fn journal_mode_syncs_the_journal_instead_of_small_files() {
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk::default());
    let s = Store::open(journal_cfg(d.path()), disk.clone()).unwrap();
    let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
    let (syncs, datasyncs) = (count(&disk.syncs), count(&disk.datasyncs));
    // A small normal file: one fdatasync of the journal, no fsync.
    let a = upload(&s, b"small", "txt", UploadKind::Normal).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"small");
    assert_eq!(count(&disk.syncs), syncs);
    assert_eq!(count(&disk.datasyncs), datasyncs + 1);
    // An appender file (changed in place later) and a large file are
    // fsynced as with `fsync`; their records still go through the journal.
    upload(&s, b"appender", "txt", UploadKind::Appender).unwrap();
    let big = vec![7u8; journal::IMAGE_MAX as usize + 1];
    upload(&s, &big, "bin", UploadKind::Normal).unwrap();
    assert_eq!(count(&disk.syncs), syncs + 2);
    assert_eq!(count(&disk.datasyncs), datasyncs + 3);
    assert_eq!(count(&disk.syncfs), 0);
}

#[test]
fn journal_redo_brings_back_what_a_crash_lost() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(journal_cfg(d.path()), Arc::new(RealDisk)).unwrap();
    let a = upload(&s, b"kept by the journal", "txt", UploadKind::Normal).unwrap();
    let b = upload(&s, b"deleted", "txt", UploadKind::Normal).unwrap();
    s.delete(&b).unwrap();
    let (pa, pb) = (s.resolve(&a).unwrap(), s.resolve(&b).unwrap());
    let binlog = d.path().join("data/sync/binlog.000");
    let records = fs::read(&binlog).unwrap();
    // Dropped without a checkpoint, as by kill -9; then what a power loss
    // may do to what was never fsynced: the upload gone, the delete undone,
    // the binlog torn.
    drop(s);
    fs::remove_file(&pa).unwrap();
    fs::write(&pb, b"deleted").unwrap();
    fs::write(&binlog, &records[..records.len() / 2]).unwrap();

    let s = Store::open(journal_cfg(d.path()), Arc::new(RealDisk)).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"kept by the journal");
    assert!(!pb.exists());
    assert_eq!(fs::read(&binlog).unwrap(), records);
    assert!(fs::read_dir(pa.parent().unwrap()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with("redo")));

    // The redo is done once: the journal started afresh.
    drop(s);
    fs::remove_file(&pa).unwrap();
    let s = Store::open(journal_cfg(d.path()), Arc::new(RealDisk)).unwrap();
    assert!(!pa.exists());
    assert_eq!(fs::read(&binlog).unwrap(), records);

    // Back to `fsync`: a last redo, then the journal files are removed.
    let c = upload(&s, b"last", "txt", UploadKind::Normal).unwrap();
    drop(s);
    let pc = d.path().join("p0/data").join(c.relative_path());
    fs::remove_file(&pc).unwrap();
    let s = Store::open(cfg(d.path(), 1), Arc::new(RealDisk)).unwrap();
    assert_eq!(read_all(&s, &c, 0, 0).unwrap(), b"last");
    assert!(!d.path().join("data/journal.0").exists());
    assert!(!d.path().join("data/journal.1").exists());
}

/// Uploads `data` into trunk slot `slot` of trunk file 1 in `00/00`.
fn upload_packed(s: &Store, data: &[u8], offset: u32) -> Result<LogicName> {
    let mut up = s.begin_slot_upload(0, data.len() as u64, "txt")?;
    up.write(data)?;
    let info = fdfs_proto::trunk::TrunkInfo {
        store_path: 0,
        sub_high: 0,
        sub_low: 0,
        slot: fdfs_proto::file_id::TrunkSlot {
            trunk_id: 1,
            offset,
            alloc_size: 256,
        },
    };
    let done = s.finish_upload_in_slot(&mut up, info)?;
    if let Some(JournalWait(t)) = done.wait {
        s.journal.as_ref().unwrap().commit_upto(t).unwrap();
    }
    Ok(done.name)
}

#[test]
fn packed_uploads_are_journaled_and_come_back_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(journal_cfg(d.path()), Arc::new(RealDisk)).unwrap();
    let a = upload_packed(&s, b"packed and journaled", 0).unwrap();
    let b = upload_packed(&s, b"packed, then deleted", 256).unwrap();
    assert!(a.info.is_trunk() && a.name.len() == 50, "{a}");
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"packed and journaled");
    // A slot holding a file is never written over.
    let e = upload_packed(&s, b"over it?", 0).unwrap_err();
    assert!(matches!(e, StoreError::Exists(_)), "{e}");
    s.delete(&b).unwrap();
    let trunk = d.path().join("p0/data/00/00/000001");
    let bytes = fs::read(&trunk).unwrap();
    // Killed before a checkpoint, and the unsynced trunk file lost.
    drop(s);
    fs::write(&trunk, vec![0u8; bytes.len()]).unwrap();
    let s = Store::open(journal_cfg(d.path()), Arc::new(RealDisk)).unwrap();
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"packed and journaled");
    assert!(!s.holds(&b).unwrap());
    assert_eq!(&fs::read(&trunk).unwrap()[..24], &bytes[..24]);
}

#[test]
fn journal_turns_over_and_checkpoints_with_syncfs() {
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk::default());
    let c = StoreConfig {
        journal_file_size: 4096,
        ..journal_cfg(d.path())
    };
    let s = Store::open(c.clone(), disk.clone()).unwrap();
    let body = vec![b'x'; 500];
    let names: Vec<LogicName> = (0..50)
        .map(|_| upload(&s, &body, "txt", UploadKind::Normal).unwrap())
        .collect();
    // About 7 entries fit a file: a turn every 7 uploads, each after the
    // checkpoint of the file before.
    assert!(disk.syncfs.load(Ordering::SeqCst) >= 5);
    drop(s);
    for n in &names {
        fs::remove_file(d.path().join("p0/data").join(n.relative_path())).unwrap();
    }
    let s = Store::open(c, disk).unwrap();
    // The last uploads were in a file not checkpointed yet: redone.
    assert_eq!(read_all(&s, names.last().unwrap(), 0, 0).unwrap(), body);
    assert_eq!(binlog_lines(d.path()).len(), 50);
}

#[test]
fn a_failed_journal_fdatasync_refuses_every_durable_change_after_it() {
    let d = tempfile::tempdir().unwrap();
    let disk = Arc::new(CountingDisk::default());
    let s = Store::open(journal_cfg(d.path()), disk.clone()).unwrap();
    upload(&s, b"fine", "txt", UploadKind::Normal).unwrap();
    disk.fail_datasync.store(true, Ordering::SeqCst);
    let e = upload(&s, b"lost?", "txt", UploadKind::Normal).unwrap_err();
    assert_eq!(e.status(), 5, "{e}");
    // The kernel may have dropped the pages it could not write: a later
    // success would not cover them, so nothing is confirmed any more.
    disk.fail_datasync.store(false, Ordering::SeqCst);
    let e = upload(&s, b"after", "txt", UploadKind::Normal).unwrap_err();
    assert_eq!(e.status(), 5, "{e}");
}

// ---- files of upstream's trunk files (PROTOCOL.md §5.5) ----

use super::trunk::planted::plant;
use fdfs_proto::file_id::TrunkSlot;

/// The 24 header bytes of a slot on disk.
fn slot_header(s: &Store, n: &LogicName) -> [u8; 24] {
    let FileKind::Trunk(slot) = n.kind else {
        panic!("{n} is not a trunk name");
    };
    let f = File::open(s.data_dir(0).join(format!("00/00/{:06}", slot.trunk_id))).unwrap();
    let mut h = [0u8; 24];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut h, u64::from(slot.offset)).unwrap();
    h
}

#[test]
fn trunk_files_are_read_from_their_slots() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let a = plant(&s, 1, 0, 256, b"first small file");
    let b = plant(&s, 1, 256, 512, b"second, in the same trunk file");
    assert!(matches!(a.kind, FileKind::Trunk(_)));
    assert_eq!(a.to_string().len(), 60);
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"first small file");
    assert_eq!(
        read_all(&s, &b, 0, 0).unwrap(),
        b"second, in the same trunk file"
    );
    assert_eq!(read_all(&s, &b, 8, 6).unwrap(), b"in the");
    assert_eq!(read_all(&s, &a, 6, 100).unwrap(), b"small file", "clamped");
    // The position handed to sendfile is the content's in the trunk file.
    let (_, start, count) = s.open_read(&b, 8, 0).unwrap();
    assert_eq!((start, count), (256 + 24 + 8, 22));
    assert_eq!(s.open_read(&a, 16, 0).unwrap_err().status(), 22);
    let info = s.file_info(&a, false).unwrap();
    assert_eq!(info.size, 16);
    assert_eq!(info.crc32, crc32fast::hash(b"first small file"));
    assert_eq!(info.mtime, 1_589_774_253);
    assert!(s.holds(&a).unwrap() && s.holds(&b).unwrap());
    // Metadata of a trunk file is a `-m` file beside the trunk file.
    s.set_metadata(&a, MetaOp::Overwrite, b"width\x02640")
        .unwrap();
    assert_eq!(s.get_metadata(&a).unwrap(), b"width\x02640");
    // A slave of a trunk master is a whole file.
    let slave = upload(
        &s,
        b"thumbnail",
        "jpg",
        UploadKind::Slave {
            master: a.clone(),
            prefix: "_150x150".into(),
        },
    )
    .unwrap();
    assert!(slave.to_string().starts_with(&a.to_string()[..56]));
    assert_eq!(read_all(&s, &slave, 0, 0).unwrap(), b"thumbnail");
}

#[test]
fn a_slot_that_does_not_hold_the_name_is_not_found() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let a = plant(&s, 1, 0, 256, b"the real one");
    let FileKind::Trunk(slot) = a.kind else {
        unreachable!()
    };
    let renamed = |slot: TrunkSlot, info: NameInfo| {
        LogicName::build(0, 0, 0, info, Some(slot), &a.name[a.name.len() - 7..])
    };
    let hostile = [
        // Another CRC32 or time: the slot was reused by another file.
        renamed(slot, NameInfo { crc32: 7, ..a.info }),
        renamed(
            slot,
            NameInfo {
                timestamp: 7,
                ..a.info
            },
        ),
        // Another slot of the same trunk file, past its end, another trunk.
        renamed(
            TrunkSlot {
                offset: 128,
                ..slot
            },
            a.info,
        ),
        renamed(
            TrunkSlot {
                offset: u32::MAX - 8,
                ..slot
            },
            a.info,
        ),
        renamed(
            TrunkSlot {
                trunk_id: 2,
                ..slot
            },
            a.info,
        ),
        // A slot too small for the size the name claims.
        renamed(
            TrunkSlot {
                alloc_size: 20,
                ..slot
            },
            a.info,
        ),
    ];
    for n in &hostile {
        assert_eq!(s.open_read(n, 0, 0).unwrap_err().status(), 2, "{n}");
        assert_eq!(s.file_info(n, false).unwrap_err().status(), 2, "{n}");
        assert_eq!(s.get_metadata(n).unwrap_err().status(), 2, "{n}");
        assert_eq!(s.delete(n).unwrap_err().status(), 2, "{n}");
        assert!(!s.holds(n).unwrap(), "{n}");
    }
    assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"the real one");
}

#[test]
fn deleting_a_trunk_file_frees_its_slot_only() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let a = plant(&s, 3, 1024, 256, b"to be deleted");
    let b = plant(&s, 3, 1280, 256, b"its neighbour");
    s.set_metadata(&a, MetaOp::Overwrite, b"k\x02v").unwrap();
    assert_eq!(slot_header(&s, &a)[0], b'F');
    s.delete(&a).unwrap();
    assert_eq!(slot_header(&s, &a), [0u8; 24]);
    assert_eq!(s.open_read(&a, 0, 0).unwrap_err().status(), 2);
    assert_eq!(s.delete(&a).unwrap_err().status(), 2);
    assert_eq!(read_all(&s, &b, 0, 0).unwrap(), b"its neighbour");
    let lines = binlog_lines(d.path());
    assert_eq!(
        lines[lines.len() - 2..],
        [format!("D {a}-m"), format!("D {a}")],
        "{lines:#?}"
    );
    assert!(!s
        .resolve(&a)
        .unwrap()
        .with_file_name(format!("{}-m", a.name))
        .exists());
}

#[test]
fn write_slot_fills_the_content_then_the_header() {
    let d = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let s = open(d.path());
    // The name comes from another server's trunk file.
    let other = open(src_dir.path());
    let n = plant(&other, 9, 4096, 512, b"replicated into a slot");
    let FileKind::Trunk(slot) = n.kind else {
        unreachable!()
    };
    let content = src_dir.path().join("content");
    fs::write(&content, b"replicated into a slot").unwrap();
    let src = File::open(&content).unwrap();
    assert!(!s.holds(&n).unwrap());
    // The trunk file does not exist here yet: it is made.
    assert!(s.write_slot(&n, &slot, &src, 22).unwrap());
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"replicated into a slot");
    assert_eq!(slot_header(&s, &n), slot_header(&other, &n));
    // The same bytes again change nothing; other bytes replace them.
    assert!(!s.write_slot(&n, &slot, &src, 22).unwrap());
    fs::write(&content, b"REPLICATED into a slot").unwrap();
    assert!(s
        .write_slot(&n, &slot, &File::open(&content).unwrap(), 22)
        .unwrap());
    assert_eq!(read_all(&s, &n, 0, 0).unwrap(), b"REPLICATED into a slot");
    // A size other than the name's, or one the slot cannot take.
    assert_eq!(s.write_slot(&n, &slot, &src, 21).unwrap_err().status(), 22);
    let small = TrunkSlot {
        alloc_size: 40,
        ..slot
    };
    assert_eq!(s.write_slot(&n, &small, &src, 22).unwrap_err().status(), 22);
}

#[test]
fn small_slot_uploads_held_in_memory_land_in_a_slot_or_whole_in_every_mode() {
    for (durable, sync) in [
        (true, DurableSync::Journal),
        (true, DurableSync::Fsync),
        (false, DurableSync::Fsync),
    ] {
        let d = tempfile::tempdir().unwrap();
        let c = StoreConfig {
            durable,
            durable_sync: sync,
            ..journal_cfg(d.path())
        };
        let s = Store::open(c.clone(), Arc::new(RealDisk)).unwrap();
        let mode = format!("durable {durable}, {sync:?}");
        // Into a slot.
        let a = upload_packed(&s, b"into its slot", 0).unwrap();
        assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"into its slot", "{mode}");
        // No slot came: stored whole after all.
        let mut up = s.begin_slot_upload(0, 12, "txt").unwrap();
        assert!(
            up.tmp_path().is_none(),
            "{mode}: no staging file while held"
        );
        up.write(b"stored ").unwrap();
        up.write(b"whole").unwrap();
        let done = s.finish_upload_deferred(up).unwrap();
        if let Some(JournalWait(t)) = done.wait {
            s.journal.as_ref().unwrap().commit_upto(t).unwrap();
        }
        let b = done.name;
        assert!(!b.info.is_trunk(), "{mode}: {b}");
        assert_eq!(read_all(&s, &b, 0, 0).unwrap(), b"stored whole", "{mode}");
        // Abandoned: nothing left behind.
        let mut up = s.begin_slot_upload(0, 10, "txt").unwrap();
        up.write(b"dropped").unwrap();
        drop(up);
        assert_eq!(tmp_entries(d.path()), 0, "{mode}");
        let lines = binlog_lines(d.path());
        assert_eq!(lines.len(), 2, "{mode}: {lines:?}");
        // Both are there after a restart.
        drop(s);
        let s = Store::open(c, Arc::new(RealDisk)).unwrap();
        assert_eq!(read_all(&s, &a, 0, 0).unwrap(), b"into its slot", "{mode}");
        assert_eq!(read_all(&s, &b, 0, 0).unwrap(), b"stored whole", "{mode}");
    }
}

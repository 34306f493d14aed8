//! Every client command of a storage server, success and failure, against
//! real `fdfs tracker` and `fdfs storage` processes.

mod storage_support;

use std::time::Duration;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::storage::{FileInfoResp, SlaveUpload};
use fdfs_proto::tracker::StoreResp;
use fdfs_proto::{errno, LogicName};
use storage_support::*;

const A: u8 = sc::UPLOAD_APPENDER_FILE;
const U: u8 = sc::UPLOAD_FILE;

fn file_info(c: &mut Client, name: &str, flags: u8) -> Result<FileInfoResp, u8> {
    c.send(sc::QUERY_FILE_INFO, flags, &name_body(name));
    let (st, b) = c.read_reply().unwrap();
    if st != 0 {
        return Err(st);
    }
    Ok(FileInfoResp::decode(&b).unwrap())
}

fn set_meta(c: &mut Client, name: &str, op: u8, meta: &[u8]) -> u8 {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as i64).to_be_bytes());
    b.extend_from_slice(&(meta.len() as i64).to_be_bytes());
    b.push(op);
    b.extend_from_slice(&group16("group1"));
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(meta);
    c.call(sc::SET_METADATA, &b).0
}

fn get_meta(c: &mut Client, name: &str) -> Result<Vec<u8>, u8> {
    match c.call(sc::GET_METADATA, &name_body(name)) {
        (0, b) => Ok(b),
        (st, _) => Err(st),
    }
}

fn append(c: &mut Client, name: &str, data: &[u8]) -> u8 {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as i64).to_be_bytes());
    b.extend_from_slice(&(data.len() as i64).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    c.call(sc::APPEND_FILE, &b).0
}

fn modify(c: &mut Client, name: &str, off: u64, data: &[u8]) -> u8 {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as i64).to_be_bytes());
    b.extend_from_slice(&(off as i64).to_be_bytes());
    b.extend_from_slice(&(data.len() as i64).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(data);
    c.call(sc::MODIFY_FILE, &b).0
}

fn truncate(c: &mut Client, name: &str, size: u64) -> u8 {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as i64).to_be_bytes());
    b.extend_from_slice(&(size as i64).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    c.call(sc::TRUNCATE_FILE, &b).0
}

fn delete(c: &mut Client, name: &str) -> u8 {
    c.call(sc::DELETE_FILE, &name_body(name)).0
}

fn slave(c: &mut Client, master: &str, prefix: &str, ext: &str, data: &[u8]) -> Result<String, u8> {
    let mut b = Vec::new();
    SlaveUpload {
        master: LogicName::parse(master).unwrap(),
        file_size: data.len() as u64,
        prefix: prefix.into(),
        ext: ext.into(),
    }
    .encode(&mut b);
    b.extend_from_slice(data);
    match c.call(sc::UPLOAD_SLAVE_FILE, &b) {
        (0, b) => Ok(reply_name(&b)),
        (st, _) => Err(st),
    }
}

#[test]
fn storage_commands_end_to_end() {
    commands_end_to_end("fsync");
}

/// Every command again with `durable_sync = journal`: small files take the
/// journal, appender files and metadata the fsync path.
#[test]
fn storage_commands_end_to_end_with_the_journal() {
    commands_end_to_end("journal");
}

fn commands_end_to_end(durable_sync: &str) {
    let line = format!("durable_sync = {durable_sync}");
    let mut opts = StorageOpts::default();
    opts.extra.push(&line);
    opts.extra.push("journal_file_size = 2MB");
    let (_dir, tracker, storage) = start_cluster(&[], opts);
    let mut c = Client::connect(storage.addr);

    // The storage joined and became ACTIVE: the tracker sends uploads to it.
    wait_until(
        "storage ACTIVE on the tracker",
        Duration::from_secs(15),
        || {
            let mut t = Client::connect(tracker.addr);
            let (st, b) = t.call(tc::QUERY_STORE_WITHOUT_GROUP_ONE, &[]);
            st == 0 && {
                let r = StoreResp::decode(&b).unwrap();
                r.server.ip == "127.0.0.1"
                    && r.server.port == storage.addr.port()
                    && r.group.as_str() == "group1"
            }
        },
    );

    // ---- upload / download: 0, 1 and more bytes, ranges ----
    let empty = upload(&mut c, U, b"", "").unwrap();
    assert_eq!(download(&mut c, &empty, 0, 0).unwrap(), b"");
    let one = upload(&mut c, U, b"x", "txt").unwrap();
    assert_eq!(download(&mut c, &one, 0, 0).unwrap(), b"x");
    let text = b"hello, fastdfs-rs storage\n";
    let name = upload(&mut c, U, text, "txt").unwrap();
    let l = LogicName::parse(&name).unwrap();
    assert_eq!(l.info.file_size(), Some(text.len() as u64));
    assert_eq!(l.info.crc32, crc32fast::hash(text));
    assert_eq!(l.info.source.to_string(), "127.0.0.1");
    assert!(storage.base.join("data").join(l.relative_path()).is_file());
    assert_eq!(download(&mut c, &name, 0, 0).unwrap(), text);
    assert_eq!(download(&mut c, &name, 7, 7).unwrap(), b"fastdfs");
    assert_eq!(
        download(&mut c, &name, 20, 1000).unwrap(),
        b"orage\n",
        "length is clamped"
    );
    // Big enough for sendfile: whole, ranges at odd offsets, to the end;
    // the connection stays usable after each.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let bname = upload(&mut c, U, &big, "bin").unwrap();
    assert_eq!(download(&mut c, &bname, 0, 0).unwrap(), big);
    assert_eq!(
        download(&mut c, &bname, 1_001, 100_000).unwrap(),
        &big[1_001..101_001]
    );
    assert_eq!(
        download(&mut c, &bname, 262_141, 0).unwrap(),
        &big[262_141..]
    );
    assert_eq!(download(&mut c, &name, 7, 7).unwrap(), b"fastdfs");
    // Offset at the end: EINVAL, which closes the connection.
    assert_eq!(
        download(&mut c, &name, text.len() as u64, 0),
        Err(errno::EINVAL)
    );
    assert!(c.closed());
    let mut c = Client::connect(storage.addr);

    // ---- query file info ----
    let fi = file_info(&mut c, &name, 0).unwrap();
    assert_eq!(fi.file_size, text.len() as u64);
    assert_eq!(fi.crc32, crc32fast::hash(text));
    assert_eq!(fi.source_ip, "127.0.0.1");
    assert!((fi.create_timestamp - l.info.timestamp as i64).abs() <= 2);

    // ---- metadata: overwrite, merge, empty overwrite removes ----
    assert_eq!(get_meta(&mut c, &name), Err(errno::ENOENT));
    assert_eq!(
        set_meta(
            &mut c,
            &name,
            b'O',
            b"width\x021024\x01height\x02768\x01author\x02bob"
        ),
        0
    );
    assert_eq!(
        set_meta(&mut c, &name, b'M', b"author\x02alice\x01color\x02red"),
        0
    );
    // Byte-identical to upstream's sidecar after the same two calls.
    assert_eq!(
        get_meta(&mut c, &name).unwrap(),
        b"author\x02alice\x01color\x02red\x01height\x02768\x01width\x021024"
    );
    assert_eq!(set_meta(&mut c, &name, b'O', b"k\x02v"), 0);
    assert_eq!(get_meta(&mut c, &name).unwrap(), b"k\x02v");
    assert_eq!(set_meta(&mut c, &name, b'O', b""), 0);
    assert_eq!(get_meta(&mut c, &name), Err(errno::ENOENT));
    assert!(c.alive());

    // ---- slave files ----
    let s1 = slave(&mut c, &name, "_150x150", "jpg", b"thumbnail").unwrap();
    assert_eq!(
        s1,
        LogicName::parse(&name)
            .unwrap()
            .slave("_150x150", "jpg")
            .unwrap()
            .to_string()
    );
    assert_eq!(download(&mut c, &s1, 0, 0).unwrap(), b"thumbnail");
    assert_eq!(
        file_info(&mut c, &s1, 0).unwrap().crc32,
        crc32fast::hash(b"thumbnail")
    );
    assert_eq!(
        file_info(&mut c, &s1, 1).unwrap().crc32,
        0,
        "flag 1 skips the CRC"
    );
    assert_eq!(
        slave(&mut c, &name, "_150x150", "jpg", b"again"),
        Err(errno::EEXIST)
    );
    assert!(c.alive());
    let noext = slave(&mut c, &name, "_noext", "", b"n").unwrap();
    assert!(noext.ends_with("_noext"));

    // ---- appender: append, modify, truncate, regenerate ----
    let app = upload(&mut c, A, b"abc", "log").unwrap();
    assert!(LogicName::parse(&app).unwrap().info.is_appender());
    let mut model = b"abc".to_vec();
    for i in 0..20u8 {
        assert_eq!(append(&mut c, &app, &[b'a' + i]), 0);
        model.push(b'a' + i);
    }
    assert_eq!(append(&mut c, &app, b""), 0, "empty append is a no-op");
    for (i, byte) in model.iter_mut().enumerate() {
        let v = [b'0' + (i % 10) as u8];
        assert_eq!(modify(&mut c, &app, i as u64, &v), 0);
        *byte = v[0];
    }
    assert_eq!(
        modify(&mut c, &app, model.len() as u64, b"END"),
        0,
        "modify may extend"
    );
    model.extend_from_slice(b"END");
    assert_eq!(download(&mut c, &app, 0, 0).unwrap(), model);
    for size in (0..model.len()).rev().step_by(5) {
        assert_eq!(truncate(&mut c, &app, size as u64), 0);
        model.truncate(size);
        assert_eq!(download(&mut c, &app, 0, 0).ok().unwrap_or_default(), model);
    }
    assert_eq!(truncate(&mut c, &app, 4), 0, "growing fills with zeros");
    model.resize(4, 0);
    assert_eq!(download(&mut c, &app, 0, 0).unwrap(), model);
    assert_eq!(
        modify(&mut c, &app, 99, b"x"),
        errno::EINVAL,
        "offset past the end"
    );
    assert!(c.closed());
    let mut c = Client::connect(storage.addr);
    let fi = file_info(&mut c, &app, 0).unwrap();
    assert_eq!((fi.file_size, fi.crc32), (4, crc32fast::hash(&model)));
    let (st, b) = c.call(sc::REGENERATE_APPENDER_FILENAME, app.as_bytes());
    assert_eq!(st, 0);
    let regen = reply_name(&b);
    let rl = LogicName::parse(&regen).unwrap();
    assert!(!rl.info.is_appender());
    assert_eq!(rl.info.file_size(), Some(4));
    assert_eq!(rl.info.crc32, crc32fast::hash(&model));
    assert_eq!(&regen[regen.len() - 7..], &app[app.len() - 7..]);
    assert_eq!(download(&mut c, &regen, 0, 0).unwrap(), model);
    assert_eq!(download(&mut c, &app, 0, 0), Err(errno::ENOENT));
    assert!(c.alive());
    // Appender operations on normal files: EINVAL.
    assert_eq!(append(&mut c, &name, b"x"), errno::EINVAL);
    let mut c = Client::connect(storage.addr);
    assert_eq!(truncate(&mut c, &name, 1), errno::EINVAL);
    let mut c = Client::connect(storage.addr);
    // Missing appender: ENOENT, connection kept.
    assert_eq!(append(&mut c, &app, b"x"), errno::ENOENT);
    assert!(c.alive());

    // ---- delete ----
    assert_eq!(set_meta(&mut c, &name, b'M', b"a\x021"), 0);
    let meta_file = storage.base.join("data").join(format!(
        "{}-m",
        LogicName::parse(&name).unwrap().relative_path()
    ));
    assert!(meta_file.is_file());
    assert_eq!(delete(&mut c, &name), 0);
    assert!(!meta_file.exists(), "the -m sidecar goes with the file");
    assert_eq!(delete(&mut c, &name), errno::ENOENT);
    assert_eq!(download(&mut c, &name, 0, 0), Err(errno::ENOENT));
    assert_eq!(get_meta(&mut c, &name), Err(errno::ENOENT));
    assert_eq!(file_info(&mut c, &name, 0).err(), Some(errno::ENOENT));
    assert_eq!(set_meta(&mut c, &name, b'M', b"a\x021"), errno::ENOENT);
    // A slave whose master is gone cannot be created.
    assert_eq!(
        slave(&mut c, &name, "_x1234", "jpg", b"x"),
        Err(errno::ENOENT)
    );
    assert!(c.alive());

    // ---- the binlog names every change, in order, as upstream writes it ----
    let ops: Vec<(String, String)> = binlog(&storage)
        .lines()
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            p.next().unwrap();
            (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(ops[0], ("C".into(), empty.clone()));
    assert!(ops.contains(&("C".into(), format!("{name}-m"))));
    assert!(ops.contains(&("U".into(), format!("{name}-m"))));
    assert!(ops.contains(&("A".into(), format!("{app} 3 1"))));
    assert!(ops.contains(&("M".into(), format!("{app} 0 1"))));
    assert!(ops.contains(&("R".into(), format!("{regen} {app}"))));
    assert_eq!(ops.last().unwrap(), &("D".into(), name.clone()));
    for (_, rest) in &ops {
        let file = rest.split(' ').next().unwrap();
        LogicName::parse(file).unwrap();
    }
    let idx = std::fs::read_to_string(storage.base.join("data/sync/binlog_index.dat")).unwrap();
    assert_eq!(idx, "current_write=0\ncurrent_compress=0\n");

    // ---- state files: join time persisted, counters flushed on stop ----
    let init = std::fs::read_to_string(storage.base.join("data/.data_init_flag")).unwrap();
    assert!(init.contains("sync_old_done=1"), "{init}");
    assert!(init
        .lines()
        .any(|l| l.starts_with("storage_join_time=") && l != "storage_join_time=0"));
    let mut storage = storage;
    storage.stop();
    let stat = std::fs::read_to_string(storage.base.join("data/storage_stat.dat")).unwrap();
    assert!(stat.contains("success_upload_count=7\n"), "{stat}");
    assert!(stat.contains("total_append_count=23\n"), "{stat}");
    assert!(stat.contains("success_delete_count=1\n"), "{stat}");
    let journal = storage.base.join("data/journal.0");
    assert_eq!(journal.exists(), durable_sync == "journal");
    if durable_sync == "journal" {
        // Written out to `journal_file_size` at start.
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), 2 << 20);
    }
}

/// `use_access_log = true` (or `[access-log] enabled = true`): a line per
/// client request in logs/storage_access.log, none for keep-alives.
#[test]
fn the_access_log_has_a_line_per_client_request() {
    let mut opts = StorageOpts::default();
    opts.extra.push("use_access_log = true");
    let (_dir, _tracker, storage) = start_cluster(&[], opts);
    let mut c = Client::connect(storage.addr);
    let text = b"logged content";
    let name = upload(&mut c, U, text, "txt").unwrap();
    assert_eq!(download(&mut c, &name, 0, 0).unwrap(), text);
    assert!(c.alive());
    let missing = name.replace(".txt", ".bin");
    assert_eq!(download(&mut c, &missing, 0, 0), Err(errno::ENOENT));
    // A name with a line break stays on its line.
    assert_eq!(get_meta(&mut c, "M00/00/00/x\ny"), Err(errno::ENOENT));
    let path = storage.base.join("logs/storage_access.log");
    let mut lines = Vec::new();
    wait_until("four access log lines", Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.len() >= 4
    });
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    for f in &fields {
        // date, time.ms, client, command, status, bytes, took, file
        assert_eq!(f.len(), 8, "{lines:#?}");
        assert_eq!(f[1].split_once('.').unwrap().1.len(), 3, "{lines:#?}");
        assert_eq!(f[2], "127.0.0.1");
        assert!(f[6].ends_with("ms"), "{lines:#?}");
    }
    let id = format!("group1/{name}");
    assert_eq!(&fields[0][3..6], ["UPLOAD_FILE", "0", "14"]);
    assert_eq!(fields[0][7], id);
    assert_eq!(&fields[1][3..6], ["DOWNLOAD_FILE", "0", "14"]);
    assert_eq!(fields[1][7], id);
    assert_eq!(&fields[2][3..5], ["DOWNLOAD_FILE", "2"]);
    assert_eq!(fields[2][7], format!("group1/{missing}"));
    assert_eq!(&fields[3][3..5], ["GET_METADATA", "2"]);
    assert_eq!(fields[3][7], "group1/M00/00/00/x?y");
}

/// `fdfs fsck <storage.conf>` beside a running storage: sound files pass,
/// a file removed by hand and one cut short are named, exit status 1.
#[test]
fn fsck_names_the_damaged_files() {
    let (_dir, _tracker, storage) = start_cluster(&[], StorageOpts::default());
    let mut c = Client::connect(storage.addr);
    let names: Vec<String> = (0..5)
        .map(|i| upload(&mut c, U, format!("file {i}").as_bytes(), "txt").unwrap())
        .collect();
    let fsck = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .arg("fsck")
            .arg(&storage.conf)
            .args(extra)
            .output()
            .unwrap()
    };
    // No file without its binlog record either (what replication sends).
    let out = fsck(&["--crc", "--orphans"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "5 files checked (5 with their CRC32, 5 on disk) in 1 store paths: all sound"
        ),
        "{text}"
    );
    let path = |n: &str| {
        storage
            .base
            .join("data")
            .join(LogicName::parse(n).unwrap().relative_path())
    };
    std::fs::remove_file(path(&names[1])).unwrap();
    std::fs::write(path(&names[3]), b"cut").unwrap();
    let out = fsck(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("group1/{}: missing", names[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("group1/{}: 3 bytes, the name records 6", names[3])),
        "{text}"
    );
    assert!(text.contains(": 2 problems"), "{text}");
    // A conf that cannot be read: status 2, the reason on stderr.
    let out = std::process::Command::new(BIN)
        .args(["fsck", "/nonexistent/storage.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load"));
}

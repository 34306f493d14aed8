//! Load and crash behaviour of a real storage process: a 200 MiB file with
//! flat memory, 16 concurrent clients, and `kill -9` in the middle of a
//! stream of uploads.

mod storage_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::{Header, LogicName};
use storage_support::*;

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends the header and upload head of an UPLOAD_FILE of `size` bytes;
/// the content is the caller's to stream (or withhold).
fn begin_upload(c: &mut Client, size: u64, ext: &str) {
    let head = upload_head(-1, size, ext);
    c.s.write_all(&Header::new(sc::UPLOAD_FILE, 0, head.len() as u64 + size).encode())
        .unwrap();
    c.s.write_all(&head).unwrap();
}

#[test]
fn storage_big_file_streams_with_flat_memory() {
    let (_dir, _tracker, storage) = start_cluster(
        &[],
        StorageOpts {
            extra: vec!["durable=false"],
            ..StorageOpts::on([127, 0, 0, 16])
        },
    );
    let pid = storage.proc.pid().unwrap();
    const SIZE: u64 = 200 << 20;
    let chunk = pattern(1 << 20, 42);
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..200 {
        crc.update(&chunk);
    }
    let crc = crc.finalize();

    let mut c = Client::connect(storage.addr);
    c.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    begin_upload(&mut c, SIZE, "bin");
    for _ in 0..200 {
        c.s.write_all(&chunk).unwrap();
    }
    let (st, b) = c.read_reply().unwrap();
    assert_eq!(st, 0);
    let name = reply_name(&b);
    let l = LogicName::parse(&name).unwrap();
    assert_eq!(l.info.file_size(), Some(SIZE));
    assert_eq!(l.info.crc32, crc);

    // Download it back, checking the content as it streams.
    let mut body = Vec::new();
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&name_body(&name));
    c.send(sc::DOWNLOAD_FILE, 0, &body);
    let mut h = [0u8; 10];
    c.s.read_exact(&mut h).unwrap();
    let h = Header::decode(&h, u64::MAX >> 1).unwrap();
    assert_eq!((h.status, h.pkg_len), (0, SIZE));
    let mut got = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..200 {
        c.s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, chunk);
        got.update(&buf);
    }
    assert_eq!(got.finalize(), crc);
    assert!(c.alive());

    // Memory stayed flat: far below the file size.
    let hwm = vm_hwm_kib(pid);
    assert!(
        hwm < 48 * 1024,
        "storage peak RSS {hwm} KiB for a 200 MiB file"
    );

    // A > 4 GiB upload is accepted by size and streamed (not buffered):
    // disconnecting after a few MiB leaves nothing behind.
    let mut c = Client::connect(storage.addr);
    begin_upload(&mut c, 5 << 30, "iso");
    for _ in 0..4 {
        c.s.write_all(&chunk).unwrap();
    }
    drop(c);
    wait_until("temporary file removed", Duration::from_secs(5), || {
        no_temp_files(&storage)
    });
    assert_eq!(stored_files(&storage.base).len(), 1);
    assert!(vm_hwm_kib(pid) < 48 * 1024);
}

/// 16 clients, each uploading `per_client` files of `len(client, i)` bytes
/// then reading every one back; the names, all distinct.
fn sixteen_clients_upload_and_read_back(
    addr: std::net::SocketAddr,
    per_client: u32,
    len: fn(u32, u32) -> usize,
) -> std::collections::HashSet<String> {
    let handles: Vec<_> = (0..16u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut mine = vec![];
                for i in 0..per_client {
                    let data = pattern(len(t, i), t * 1000 + i);
                    let name = upload(&mut c, sc::UPLOAD_FILE, &data, "dat")
                        .unwrap_or_else(|e| panic!("client {t}, upload {i}: status {e}"));
                    mine.push((name, data));
                }
                for (name, data) in &mine {
                    assert_eq!(&download(&mut c, name, 0, 0).unwrap(), data);
                }
                mine.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = std::collections::HashSet::new();
    for h in handles {
        for n in h.join().unwrap() {
            assert!(all.insert(n), "duplicate file id");
        }
    }
    all
}

#[test]
fn storage_serves_16_concurrent_clients() {
    let (_dir, _tracker, storage) = start_cluster(&[], StorageOpts::on([127, 0, 0, 17]));
    let all = sixteen_clients_upload_and_read_back(storage.addr, 20, |t, i| {
        (t * 997 + i * 131) as usize % 70_000
    });
    assert_eq!(all.len(), 320);
    assert_eq!(binlog(&storage).lines().count(), 320);
}

/// The journal turning over every ~100 uploads, so checkpoints run all
/// the time, on a storage with one worker thread: every upload must be
/// answered (the client gives up after 10 s) and readable afterwards.
/// Files over 64 KiB take the fsync path on blocking threads meanwhile.
#[test]
fn storage_journal_with_one_worker_answers_every_upload_across_checkpoints() {
    let mut opts = StorageOpts::on([127, 0, 0, 23]);
    opts.extra.extend([
        "durable_sync = journal",
        "journal_file_size = 1MB",
        "work_threads = 1",
    ]);
    let (_dir, _tracker, storage) = start_cluster(&[], opts);
    let all = sixteen_clients_upload_and_read_back(storage.addr, 60, |t, i| {
        if i % 20 == 19 {
            100_000
        } else {
            (t * 997 + i * 4_099) as usize % 16_384
        }
    });
    assert_eq!(all.len(), 960);
    assert_eq!(binlog(&storage).lines().count(), 960);
    let log = std::fs::read_to_string(storage.base.join("logs/storaged.log")).unwrap();
    assert!(
        log.matches("journal checkpoint done").count() >= 3,
        "the journal should have turned over several times:\n{log}"
    );
}

#[test]
fn storage_kill9_during_uploads_keeps_every_acknowledged_file() {
    kill9_during_uploads([127, 0, 0, 18], "fsync", false);
}

/// `durable_sync = journal`, and after the kill what a power loss could
/// also do to what was never fsynced: the files and the binlog gone. The
/// restart redoes them from the journal.
#[test]
fn storage_journal_redoes_acknowledged_uploads_after_a_crash() {
    kill9_during_uploads([127, 0, 0, 19], "journal", true);
}

fn kill9_during_uploads(ip: [u8; 4], durable_sync: &str, lose_unsynced: bool) {
    let line = format!("durable_sync = {durable_sync}");
    let mut opts = StorageOpts::on(ip);
    opts.extra.push(&line);
    let (_dir, _tracker, mut storage) = start_cluster(&[], opts);
    let addr = storage.addr;
    let acked: Arc<Mutex<Vec<(String, u32, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u32)
        .map(|t| {
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let data = pattern(((t + 1) * i * 7919) as usize % 300_000, t * 100_000 + i);
                    let body = upload_body(-1, &data, "bin");
                    // Send in two parts so some uploads are mid-body at the kill.
                    let hdr = Header::new(sc::UPLOAD_FILE, 0, body.len() as u64).encode();
                    if c.s.write_all(&hdr).is_err()
                        || c.s.write_all(&body[..body.len() / 2]).is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    if c.s.write_all(&body[body.len() / 2..]).is_err() {
                        return;
                    }
                    match c.read_reply() {
                        Ok((0, b)) => {
                            acked.lock().unwrap().push((
                                reply_name(&b),
                                crc32fast::hash(&data),
                                data.len(),
                            ));
                        }
                        Ok((st, _)) => panic!("upload failed with {st}"),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    wait_until("some uploads acknowledged", Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= 40
    });
    storage.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    if lose_unsynced {
        // Files up to 64 KiB are in the journal; larger ones were fsynced.
        let mut removed = 0;
        for p in stored_files(&storage.base) {
            if std::fs::metadata(&p).unwrap().len() <= 64 << 10 {
                std::fs::remove_file(p).unwrap();
                removed += 1;
            }
        }
        assert!(removed >= 4, "{removed}");
        std::fs::write(storage.base.join("data/sync/binlog.000"), b"").unwrap();
    }
    storage.restart();

    let acked = acked.lock().unwrap().clone();
    let mut c = Client::connect(storage.addr);
    for (name, crc, len) in &acked {
        let data = download(&mut c, name, 0, 0).unwrap_or_else(|st| panic!("{name}: status {st}"));
        assert_eq!((data.len(), crc32fast::hash(&data)), (*len, *crc), "{name}");
    }
    // No partial file anywhere: every stored file matches the size and CRC
    // its name records, and the temporary folder was emptied on start.
    assert!(no_temp_files(&storage));
    let stored = stored_files(&storage.base);
    assert!(stored.len() >= acked.len());
    for p in &stored {
        let rel = p
            .strip_prefix(storage.base.join("data"))
            .unwrap()
            .to_string_lossy()
            .to_string();
        let l = LogicName::parse(&format!("M00/{rel}")).unwrap();
        let data = std::fs::read(p).unwrap();
        assert_eq!(l.info.file_size(), Some(data.len() as u64), "{rel}");
        assert_eq!(l.info.crc32, crc32fast::hash(&data), "{rel}");
    }
    // The binlog names only files that exist, and every acknowledged one.
    let binlog = binlog(&storage);
    let names: Vec<&str> = binlog
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    for n in &names {
        let l = LogicName::parse(n).unwrap();
        assert!(
            storage.base.join("data").join(l.relative_path()).is_file(),
            "{n}"
        );
    }
    for (name, _, _) in &acked {
        assert!(
            names.contains(&name.as_str()),
            "{name} acknowledged but not in the binlog"
        );
    }
    assert!(c.alive());
    assert_eq!(
        upload(&mut c, sc::UPLOAD_FILE, b"after restart", "txt").map(|_| ()),
        Ok(())
    );
}

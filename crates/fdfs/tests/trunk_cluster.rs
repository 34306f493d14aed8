//! Small files packed into trunk files (`use_trunk_file = true`), with
//! real processes: a tracker that elects the group's trunk server and two
//! storages of group1 on their own loopback addresses.
//!
//! Covers: small uploads on either server get slots from the trunk server
//! and never overlapping ones; the files replicate into the same slots; a
//! big file is stored whole; deletes free slots that later uploads reuse;
//! a restarted trunk server rebuilds its map and still never hands out a
//! slot of a live file.

mod storage_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::trunk::TrunkInfo;
use fdfs_proto::{errno, LogicName};
use storage_support::*;

fn start(dir: &std::path::Path, tracker: &TrackerProc, ip: Ipv4Addr, port: u16) -> StorageProc {
    StorageProc::start_at(
        BIN,
        dir,
        ip,
        port,
        "group1",
        &[tracker.addr],
        &["sync_wait_msec = 50", "write_mark_file_freq = 10"],
        &[],
    )
}

/// A tracker that packs files of up to 16 KiB into 4 MiB trunk files.
fn start_trunk_tracker(dir: &std::path::Path) -> TrackerProc {
    start_tracker(
        dir,
        &[
            "use_trunk_file = true",
            "slot_min_size = 256",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
        ],
    )
}

/// GET `path` of a metrics port.
fn http_get(addr: (Ipv4Addr, u16), path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

/// The value of an unlabelled sample in a /metrics page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

/// Deterministic content of `len` bytes for file `k`.
fn content(k: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + k * 7 + 3) as u8).collect()
}

fn slot_of(name: &str) -> TrunkInfo {
    TrunkInfo::of_name(&LogicName::parse(name).unwrap())
        .unwrap_or_else(|| panic!("{name} is not in a trunk slot"))
}

/// No two live files share bytes of a trunk file.
fn assert_disjoint(live: &BTreeMap<String, Vec<u8>>) {
    // (store path, trunk id) → (start, end, name) of each slot.
    type Slots<'a> = BTreeMap<(u8, u32), Vec<(u64, u64, &'a str)>>;
    let mut by_file: Slots = BTreeMap::new();
    for name in live.keys() {
        let i = slot_of(name);
        by_file
            .entry((i.store_path, i.slot.trunk_id))
            .or_default()
            .push((u64::from(i.slot.offset), i.end(), name));
    }
    for slots in by_file.values_mut() {
        slots.sort();
        for w in slots.windows(2) {
            assert!(w[0].1 <= w[1].0, "{} and {} overlap", w[0].2, w[1].2);
        }
    }
}

/// Every live file reads back, byte for byte, from both servers.
fn assert_everywhere(servers: &[&StorageProc], live: &BTreeMap<String, Vec<u8>>) {
    for s in servers {
        wait_until(
            &format!("every file readable on {}", s.addr),
            Duration::from_secs(30),
            || {
                let mut c = Client::connect(s.addr);
                live.iter()
                    .all(|(n, data)| download(&mut c, n, 0, 0).is_ok_and(|got| got == *data))
            },
        );
    }
}

/// Uploads a small file to each server until it comes back packed (the
/// server has learnt the trunk server from a tracker); the packed ones
/// join `live`.
fn wait_for_packing(servers: &[&StorageProc], live: &mut BTreeMap<String, Vec<u8>>, k: &mut usize) {
    for s in servers {
        wait_until(
            &format!("a packed upload on {}", s.addr),
            Duration::from_secs(30),
            || {
                *k += 1;
                let data = content(*k, 100);
                let mut c = Client::connect(s.addr);
                let name = upload(&mut c, sc::UPLOAD_FILE, &data, "txt").unwrap();
                let packed = LogicName::parse(&name).unwrap().info.is_trunk();
                if packed {
                    live.insert(name, data);
                } else {
                    // Stored whole until the trunk server is known.
                    assert_eq!(name.len(), 44, "{name}");
                    let (st, _) = c.call(sc::DELETE_FILE, &name_body(&name));
                    assert_eq!(st, errno::OK);
                    std::thread::sleep(Duration::from_millis(200));
                }
                packed
            },
        );
    }
}

#[test]
fn small_files_are_packed_replicated_freed_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = start_trunk_tracker(dir.path());
    let (net, port) = fdfs_testkit::group_net_and_port(20, 60, &[11, 12]);
    let mut a = start(dir.path(), &tracker, Ipv4Addr::new(127, 0, net, 11), port);
    let mut b = start(dir.path(), &tracker, Ipv4Addr::new(127, 0, net, 12), port);

    // Both servers know the trunk server once an upload on each is packed.
    let mut live: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&a, &b], &mut live, &mut k);

    // Small files of many sizes on both servers; one too big for a slot.
    for round in 0..40 {
        let s = if round % 2 == 0 { &a } else { &b };
        k += 1;
        let data = content(k, 1 + (round * 397) % 16000);
        let mut c = Client::connect(s.addr);
        let name = upload(&mut c, sc::UPLOAD_FILE, &data, "bin").unwrap();
        assert_eq!(name.len(), 60, "{name} (of {} bytes) is packed", data.len());
        live.insert(name, data);
    }
    // The other server asks for several slots at once and hands them out
    // itself: its uploads sit side by side, though the trunk server's own
    // come in between.
    let a_serves = storage_log(&a).contains("this storage is the group's trunk server");
    let (server, requester) = if a_serves { (&a, &b) } else { (&b, &a) };
    let mut theirs = Vec::new();
    for _ in 0..20 {
        for s in [server, requester] {
            k += 1;
            let data = content(k, 200);
            let name = upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &data, "x").unwrap();
            if std::ptr::eq(s, requester) {
                theirs.push(slot_of(&name));
            }
            live.insert(name, data);
        }
    }
    let adjacent = theirs
        .windows(2)
        .filter(|w| {
            w[0].slot.trunk_id == w[1].slot.trunk_id && w[0].end() == u64::from(w[1].slot.offset)
        })
        .count();
    assert!(
        adjacent >= 15,
        "only {adjacent} of 19 requester slots follow each other"
    );

    // Many at once on both servers: the requester's runs, several at a
    // time, never overlap each other or the trunk server's slots.
    let together: Vec<(String, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let s = if t % 2 == 0 { server } else { requester };
                scope.spawn(move || {
                    let mut c = Client::connect(s.addr);
                    (0..20)
                        .map(|i| {
                            let data = content(10_000 + t * 100 + i, 100 + 37 * i);
                            let name = upload(&mut c, sc::UPLOAD_FILE, &data, "t").unwrap();
                            assert_eq!(name.len(), 60, "{name} is packed");
                            (name, data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    live.extend(together);
    assert_disjoint(&live);

    let big = content(0, 16384);
    let big_name = upload(&mut Client::connect(a.addr), sc::UPLOAD_FILE, &big, "big").unwrap();
    assert!(!LogicName::parse(&big_name).unwrap().info.is_trunk());
    assert_disjoint(&live);
    assert_everywhere(&[&a, &b], &live);
    assert_eq!(
        download(&mut Client::connect(b.addr), &big_name, 0, 0),
        Ok(big)
    );
    // On disk: trunk files, not one file per upload, each with its blocks
    // on every server (its free space is space on disk).
    for s in [&a, &b] {
        for name in live.keys() {
            let i = slot_of(name);
            let trunk = s.base.join(i.relative_path());
            assert!(trunk.is_file(), "{name}");
            assert!(!s.base.join("data").join(&name[4..]).exists(), "{name}");
            use std::os::unix::fs::MetadataExt;
            let blocks = std::fs::metadata(&trunk).unwrap().blocks();
            assert!(
                blocks * 512 >= 4194304,
                "{}: {blocks} blocks",
                trunk.display()
            );
        }
    }
    // A range inside a packed file.
    let (n0, d0) = live.iter().find(|(_, d)| d.len() > 100).unwrap();
    assert_eq!(
        download(&mut Client::connect(a.addr), n0, 10, 50),
        Ok(d0[10..60].to_vec())
    );

    // Deletes on both servers free their slots everywhere.
    let doomed: Vec<String> = live.keys().step_by(2).cloned().collect();
    for (i, name) in doomed.iter().enumerate() {
        let s = if i % 2 == 0 { &a } else { &b };
        let (st, _) = Client::connect(s.addr).call(sc::DELETE_FILE, &name_body(name));
        assert_eq!(st, errno::OK, "delete {name}");
        live.remove(name);
    }
    for s in [&a, &b] {
        wait_until("deletes replicated", Duration::from_secs(30), || {
            let mut c = Client::connect(s.addr);
            doomed
                .iter()
                .all(|n| download(&mut c, n, 0, 0) == Err(errno::ENOENT))
        });
    }
    // Freed slots wait until the delete reached the trunk server's copy
    // (checked at most once a second).
    std::thread::sleep(Duration::from_millis(1500));
    let freed: Vec<(u8, u32, u32)> = doomed
        .iter()
        .map(|n| {
            let i = slot_of(n);
            (i.store_path, i.slot.trunk_id, i.slot.offset)
        })
        .collect();
    // Enough to use up the range the trunk server set aside before the
    // deletes (at most an eighth of a trunk file), then freed space is
    // given out again.
    let mut reused = 0;
    for round in 0..70 {
        let s = if round % 2 == 0 { &a } else { &b };
        k += 1;
        let data = content(k, 4000 + (round * 1193) % 9000);
        let name = upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &data, "new").unwrap();
        let i = slot_of(&name);
        if freed.contains(&(i.store_path, i.slot.trunk_id, i.slot.offset)) {
            reused += 1;
        }
        live.insert(name, data);
    }
    assert!(reused > 0, "no freed slot was given out again");
    assert_disjoint(&live);
    assert_everywhere(&[&a, &b], &live);

    // Both restart (one of them is the trunk server): the map comes back
    // from the trunk binlog and the live files; no live slot is reused.
    a.restart();
    b.restart();
    wait_for_packing(&[&a, &b], &mut live, &mut k);
    let before = live.len();
    for round in 0..40 {
        let s = if round % 2 == 0 { &a } else { &b };
        k += 1;
        let data = content(k, 300 + round * 5);
        let mut c = Client::connect(s.addr);
        let name = upload(&mut c, sc::UPLOAD_FILE, &data, "re").unwrap();
        assert_eq!(name.len(), 60, "{name} is packed");
        live.insert(name, data);
    }
    assert_eq!(live.len(), before + 40);
    assert_disjoint(&live);
    assert_everywhere(&[&a, &b], &live);
    // The rebuilt map knows the trunk files: their free space is used
    // again rather than a new file started.
    let ids = |live: &BTreeMap<String, Vec<u8>>| {
        live.keys()
            .map(|n| slot_of(n).slot.trunk_id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(ids(&live).len(), 1, "one trunk file holds them all");

    // The trunk server goes away: the tracker elects the other, which
    // rebuilds the map from the files its binlog lists (its own trunk
    // binlog is empty) and packs around every live file.
    let (mut server, other) =
        if storage_log(&a).contains("this storage is the group's trunk server") {
            (a, b)
        } else {
            (b, a)
        };
    // The trunk server keeps the other's copy of its trunk binlog whole.
    let trunk_binlog =
        |s: &StorageProc| std::fs::read(s.base.join("data/trunk/binlog")).unwrap_or_default();
    wait_until("the trunk binlog copied", Duration::from_secs(20), || {
        let theirs = trunk_binlog(&server);
        !theirs.is_empty() && trunk_binlog(&other) == theirs
    });
    server.stop();
    // (Uploads on the other may still use slots it was given before.)
    wait_until(
        "the other named trunk server",
        Duration::from_secs(30),
        || storage_log(&other).contains("us=true"),
    );
    wait_for_packing(&[&other], &mut live, &mut k);
    for round in 0..30 {
        k += 1;
        let data = content(k, 200 + round * 37);
        let name = upload(
            &mut Client::connect(other.addr),
            sc::UPLOAD_FILE,
            &data,
            "f",
        )
        .unwrap();
        assert_eq!(name.len(), 60, "{name} is packed");
        live.insert(name, data);
    }
    assert_disjoint(&live);
    assert_eq!(
        ids(&live).len(),
        1,
        "the new trunk server reuses the trunk file"
    );
    assert!(storage_log(&other).contains("this storage is the group's trunk server"));
    server.restart();
    assert_everywhere(&[&server, &other], &live);

    // fdfs_monitor shows the trunk server and keeps it when asked to
    // (re)elect one while it is ACTIVE.
    let monitor = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("monitor")
            .arg(&other.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let other_ip = other.addr.ip().to_string();
    let set = monitor(&["set_trunk_server", "group1"]);
    assert_eq!(
        set,
        format!("set trunk server group1::{other_ip} success\n")
    );
    let list = monitor(&["list", "group1"]);
    let flagged: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("if_trunk_server = 1"))
        .collect();
    assert_eq!(flagged.len(), 1, "{list}");
}

/// The trunk commands refuse what is malformed or out of place, and a
/// peer that frees a slot still holding a file does not get it reused.
#[test]
fn trunk_commands_refuse_hostile_requests() {
    use fdfs_proto::trunk::{AllocReq, SlotReq};
    let ip = Ipv4Addr::new(127, 0, 0, 14);
    let metrics_port = fdfs_testkit::free_port(ip);
    let metrics_line = format!("metrics_port = {metrics_port}");
    let (_dir, _tracker, s) = start_cluster(
        &[
            "use_trunk_file = true",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
            "trunk_alloc_alignment_size = 256",
        ],
        StorageOpts {
            extra: vec![&metrics_line],
            ..StorageOpts::on(ip)
        },
    );
    let mut live = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&s], &mut live, &mut k);
    // The metrics port says who serves the trunk files.
    let page = |path: &str| http_get((ip, metrics_port), path);
    assert!(page("/metrics").contains("\nfdfs_storage_trunk_server 1\n"));
    let status = page("/status");
    assert!(status.contains("\"serving\":true"), "{status}");
    let group = fdfs_proto::GroupName::new("group1").unwrap();
    let alloc = |size: u32, store_path: u8, group: &str| {
        let mut b = Vec::new();
        AllocReq {
            group: fdfs_proto::GroupName::new(group).unwrap(),
            size,
            store_path,
        }
        .encode(&mut b);
        b
    };
    let refused = |code: u8, body: &[u8], what: &str| {
        let mut c = Client::connect(s.addr);
        assert_eq!(c.call(code, body).0, errno::EINVAL, "{what}");
        assert!(c.closed(), "{what}: connection kept");
    };
    refused(
        sc::TRUNK_ALLOC_SPACE,
        &alloc(300, 0, "group2"),
        "another group",
    );
    refused(
        sc::TRUNK_ALLOC_SPACE,
        &alloc(300, 0, "group1")[..20],
        "short",
    );
    refused(
        sc::TRUNK_ALLOC_SPACE,
        &alloc(300, 7, "group1"),
        "no such path",
    );
    refused(
        sc::TRUNK_ALLOC_SPACE,
        &alloc(u32::MAX, 0, "group1"),
        "too big",
    );
    let (name, data) = live
        .iter()
        .next()
        .map(|(n, d)| (n.clone(), d.clone()))
        .unwrap();
    let mut bogus = slot_of(&name);
    bogus.slot.trunk_id = 999;
    let free = |info| {
        let mut b = Vec::new();
        SlotReq {
            group: group.clone(),
            info,
        }
        .encode(&mut b);
        b
    };
    refused(sc::TRUNK_FREE_SPACE, &free(bogus), "no such trunk file");
    refused(
        sc::TRUNK_SYNC_BINLOG,
        b"1 A 0 0 0 1 0 256\n",
        "binlog lines to the trunk server",
    );
    refused(sc::TRUNK_GET_BINLOG_SIZE, b"x", "a body");
    let mut c = Client::connect(s.addr);
    let (st, size) = c.call(sc::TRUNK_GET_BINLOG_SIZE, &[]);
    assert_eq!(st, 0);
    let on_disk = std::fs::metadata(s.base.join("data/trunk/binlog"))
        .unwrap()
        .len();
    assert_eq!(size, (on_disk as i64).to_be_bytes());
    // A real allocation, given back by a failed confirm.
    let (st, got) = c.call(sc::TRUNK_ALLOC_SPACE, &alloc(300, 0, "group1"));
    assert_eq!(st, 0);
    let info = fdfs_proto::trunk::TrunkInfo::decode(&got).unwrap();
    assert!(
        info.slot.alloc_size >= 300 && info.slot.alloc_size % 256 == 0,
        "{info:?}"
    );
    c.send(sc::TRUNK_ALLOC_CONFIRM, errno::EIO, &free(info));
    assert_eq!(c.read_reply().unwrap().0, 0);
    // Freeing the slot of a live file: answered, but the slot stays taken.
    let (st, _) = c.call(sc::TRUNK_FREE_SPACE, &free(slot_of(&name)));
    assert_eq!(st, 0);
    for round in 0..30 {
        k += 1;
        let d = content(k, 100 + round * 50);
        let n = upload(&mut c, sc::UPLOAD_FILE, &d, "x").unwrap();
        live.insert(n, d);
    }
    assert_disjoint(&live);
    assert_eq!(download(&mut c, &name, 0, 0), Ok(data));
    assert!(c.alive());
}

/// A slot of a new trunk file is handed out only once the trackers know
/// the file exists (REPORT_TRUNK_FID), so that a trunk server elected
/// after a crash never creates the same trunk file again. With the
/// tracker away, uploads fill the trunk file it knows, then are stored
/// whole; with it back, they go into the next trunk file, which it knows.
#[test]
fn a_new_trunk_file_waits_until_the_trackers_know_it() {
    let ip = Ipv4Addr::new(127, 0, 0, 15);
    let metrics_port = fdfs_testkit::free_port(ip);
    let metrics_line = format!("metrics_port = {metrics_port}");
    let (dir, mut tracker, mut s) = start_cluster(
        &[
            "use_trunk_file = true",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
        ],
        StorageOpts {
            extra: vec![&metrics_line],
            ..StorageOpts::on(ip)
        },
    );
    let whole_so_far = || {
        metric(
            &http_get((ip, metrics_port), "/metrics"),
            "fdfs_storage_trunk_stored_whole",
        )
    };
    let _dir = dir;
    let mut live = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&s], &mut live, &mut k);
    // A graceful restart gives back the range set aside and not handed
    // out: the next slot follows the first one, nothing leaks.
    let a = slot_of(live.keys().next().unwrap());
    s.restart();
    wait_for_packing(&[&s], &mut live, &mut k);
    let b = live.keys().map(|n| slot_of(n)).find(|i| *i != a).unwrap();
    assert_eq!(
        (b.slot.trunk_id, u64::from(b.slot.offset)),
        (a.slot.trunk_id, a.end()),
        "the slot after a restart"
    );
    assert!(storage_log(&s).contains("the set-aside ranges are free again"));
    let first = a.slot.trunk_id;
    let whole_before = whole_so_far();

    tracker.stop();
    wait_until(
        "the storage lost the tracker",
        Duration::from_secs(30),
        || storage_log(&s).contains("tracker session ended"),
    );
    // 16,000-byte files: about 260 fill a 4 MiB trunk file.
    let (mut packed, mut whole) = (0, 0);
    for _ in 0..400 {
        k += 1;
        let data = content(k, 16000);
        let name = upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &data, "w").unwrap();
        if LogicName::parse(&name).unwrap().info.is_trunk() {
            assert_eq!(slot_of(&name).slot.trunk_id, first, "{name}");
            packed += 1;
        } else {
            assert_eq!(name.len(), 44, "{name}");
            whole += 1;
            if whole == 3 {
                live.insert(name, data);
                break;
            }
        }
        live.insert(name, data);
    }
    assert!(
        packed > 100,
        "only {packed} uploads packed into the known file"
    );
    assert_eq!(whole, 3, "the trunk file filled up and the next was used");
    assert_eq!(whole_so_far() - whole_before, 3.0, "counted in the metrics");
    assert!(storage_log(&s).contains("no tracker has acknowledged trunk file"));

    tracker.restart();
    let mut next = 0;
    wait_until(
        "a packed upload in the next trunk file",
        Duration::from_secs(30),
        || {
            k += 1;
            let data = content(k, 16000);
            let name = upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &data, "n").unwrap();
            let packed = LogicName::parse(&name).unwrap().info.is_trunk();
            if packed {
                next = slot_of(&name).slot.trunk_id;
            }
            live.insert(name, data);
            packed
        },
    );
    assert!(next > first, "trunk file {next} after {first}");
    // The tracker knew of it before its first slot was given out.
    let out = std::process::Command::new(BIN)
        .args(["monitor"])
        .arg(&s.conf)
        .args(["list", "group1"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains(&format!("current trunk file id = {next}")),
        "{list}"
    );
    assert_everywhere(&[&s], &live);
}

/// A disk over its reserved space still takes small files into the free
/// space of its trunk files (the tracker counts that space too, §8.5);
/// big files, and a new trunk file, are refused with ENOSPC.
#[test]
fn free_trunk_space_is_used_beyond_the_reserve() {
    let ip = Ipv4Addr::new(127, 0, 0, 16);
    let (dir, mut tracker, s) = start_cluster(
        &[
            "use_trunk_file = true",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
        ],
        StorageOpts::on(ip),
    );
    let _dir = dir;
    let mut live = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&s], &mut live, &mut k);
    let first = slot_of(live.keys().next().unwrap()).slot.trunk_id;

    // Every disk is now over the reserve.
    let conf = std::fs::read_to_string(&tracker.conf).unwrap();
    let conf: String = conf
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("reserved_storage_space") {
                "reserved_storage_space = 99.99%".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&tracker.conf, conf).unwrap();
    tracker.restart();
    let big = content(0, 20000);
    wait_until(
        "the storage learnt the new reserve",
        Duration::from_secs(30),
        || upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &big, "big") == Err(errno::ENOSPC),
    );

    // Small files fill the trunk file; then ENOSPC, not a new trunk file
    // and not a whole file.
    let mut packed = 0;
    let mut refused = false;
    for _ in 0..400 {
        k += 1;
        let data = content(k, 16000);
        match upload(&mut Client::connect(s.addr), sc::UPLOAD_FILE, &data, "r") {
            Ok(name) => {
                assert_eq!(slot_of(&name).slot.trunk_id, first, "{name}");
                live.insert(name, data);
                packed += 1;
            }
            Err(st) => {
                assert_eq!(st, errno::ENOSPC);
                refused = true;
                break;
            }
        }
    }
    assert!(
        packed > 100,
        "only {packed} small files packed beyond the reserve"
    );
    assert!(refused, "the trunk file never filled up");
    assert!(storage_log(&s).contains("no room for a new trunk file"));
    // Deletes make room again.
    let doomed = live.keys().nth(3).unwrap().clone();
    let (st, _) = Client::connect(s.addr).call(sc::DELETE_FILE, &name_body(&doomed));
    assert_eq!(st, errno::OK);
    live.remove(&doomed);
    wait_until(
        "a freed slot taken beyond the reserve",
        Duration::from_secs(30),
        || {
            k += 1;
            let data = content(k, 1000);
            match upload(
                &mut Client::connect(s.addr),
                sc::UPLOAD_FILE,
                &data,
                "again",
            ) {
                Ok(name) => {
                    live.insert(name, data);
                    true
                }
                Err(st) => {
                    assert_eq!(st, errno::ENOSPC);
                    false
                }
            }
        },
    );
    assert_disjoint(&live);
    assert_everywhere(&[&s], &live);
}

/// Thousands of deletes make thousands of trunk binlog lines; the trunk
/// server then rewrites its binlog as a snapshot of its map, sends that to
/// its peer in place of the old copy, and still never hands out a live
/// slot, also after a restart that loads the snapshot.
#[test]
fn the_trunk_binlog_is_compacted_after_many_frees() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = start_tracker(
        dir.path(),
        &[
            "use_trunk_file = true",
            "slot_min_size = 256",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
            "trunk_binlog_max_backups = 1",
        ],
    );
    let (net, port) = fdfs_testkit::group_net_and_port(20, 60, &[11, 12]);
    let ips = [
        Ipv4Addr::new(127, 0, net, 11),
        Ipv4Addr::new(127, 0, net, 12),
    ];
    let metrics_ports = ips.map(fdfs_testkit::free_port);
    let with_metrics = |i: usize| {
        let line = format!("metrics_port = {}", metrics_ports[i]);
        StorageProc::start_at(
            BIN,
            dir.path(),
            ips[i],
            port,
            "group1",
            &[tracker.addr],
            &["sync_wait_msec = 50", "write_mark_file_freq = 10", &line],
            &[],
        )
    };
    let a = with_metrics(0);
    let b = with_metrics(1);
    let mut live = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&a, &b], &mut live, &mut k);
    let metrics_of = |s: &StorageProc| {
        let i = ips.iter().position(|ip| s.addr.ip() == *ip).unwrap();
        http_get((ips[i], metrics_ports[i]), "/metrics")
    };
    let (mut server, mut other) =
        if storage_log(&a).contains("this storage is the group's trunk server") {
            (a, b)
        } else {
            (b, a)
        };
    let lines = |s: &StorageProc| {
        std::fs::read_to_string(s.base.join("data/trunk/binlog"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    // 4,400 small files, then all but every 100th deleted (one D line each).
    let mut c = Client::connect(server.addr);
    let mut names = Vec::new();
    for _ in 0..4400 {
        k += 1;
        let data = content(k, 100);
        let name = upload(&mut c, sc::UPLOAD_FILE, &data, "c").unwrap();
        assert_eq!(name.len(), 60, "{name} is packed");
        names.push((name, data));
    }
    for (i, (name, data)) in names.into_iter().enumerate() {
        if i % 100 == 0 {
            live.insert(name, data);
            continue;
        }
        let (st, _) = c.call(sc::DELETE_FILE, &name_body(&name));
        assert_eq!(st, errno::OK, "delete {name}");
    }
    drop(c);
    assert!(storage_log(&server).contains("the trunk binlog is compacted"));
    let n = lines(&server);
    assert!(n < 1000, "{n} lines in the trunk binlog after compaction");
    // trunk_binlog_max_backups = 1: the binlog from before the last
    // compaction is kept beside it, and only that one.
    let backups: Vec<_> = std::fs::read_dir(server.base.join("data/trunk"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("binlog."))
                .is_some_and(|r| r.len() >= 14 && r[..14].bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let kept = std::fs::read_to_string(&backups[0])
        .unwrap()
        .lines()
        .count();
    assert!(
        kept >= 4096,
        "the backup holds the long binlog: {kept} lines"
    );
    let m = metrics_of(&server);
    assert!(
        metric(&m, "fdfs_storage_trunk_binlog_compactions") >= 1.0,
        "{m}"
    );
    // (The last frees may still be on their way.)
    wait_until("the lines gauge", Duration::from_secs(10), || {
        metric(&metrics_of(&server), "fdfs_storage_trunk_binlog_lines") == lines(&server) as f64
    });
    let theirs =
        |s: &StorageProc| std::fs::read(s.base.join("data/trunk/binlog")).unwrap_or_default();
    wait_until(
        "the peer holds the compacted binlog",
        Duration::from_secs(30),
        || theirs(&other) == theirs(&server),
    );

    // New files go around the survivors, before and after a restart that
    // loads the compacted binlog.
    for round in 0..2 {
        for _ in 0..200 {
            k += 1;
            let data = content(k, 1000);
            let name = upload(
                &mut Client::connect(server.addr),
                sc::UPLOAD_FILE,
                &data,
                "n",
            )
            .unwrap();
            assert_eq!(name.len(), 60, "{name} is packed");
            live.insert(name, data);
        }
        assert_disjoint(&live);
        if round == 0 {
            server.restart();
            wait_for_packing(&[&server], &mut live, &mut k);
        }
    }
    // A graceful stop of the storage that is not the trunk server (the
    // restart above may have moved the role) gives back what is left of
    // its run of slots: the trunk server records it free.
    let serving = |s: &StorageProc| metric(&metrics_of(s), "fdfs_storage_trunk_server") == 1.0;
    wait_until("one trunk server", Duration::from_secs(30), || {
        serving(&server) != serving(&other)
    });
    let (trunk_server, requester) = if serving(&server) {
        (&mut server, &mut other)
    } else {
        (&mut other, &mut server)
    };
    // A fresh start (any runs it held go back), then one run: parts 0-2.
    requester.restart();
    let before: std::collections::BTreeSet<String> = live.keys().cloned().collect();
    wait_for_packing(&[&*requester], &mut live, &mut k);
    let first_part = live
        .keys()
        .find(|n| !before.contains(*n))
        .map(|n| slot_of(n));
    let mut last = first_part;
    for _ in 0..2 {
        k += 1;
        let data = content(k, 100);
        let name = upload(
            &mut Client::connect(requester.addr),
            sc::UPLOAD_FILE,
            &data,
            "r",
        )
        .unwrap();
        last = Some(slot_of(&name));
        live.insert(name, data);
    }
    let last = last.unwrap();
    requester.restart();
    let freed = format!(
        " D {} {} {} {} {} ",
        last.store_path,
        last.sub_high,
        last.sub_low,
        last.slot.trunk_id,
        last.end()
    );
    wait_until("the rest of the run freed", Duration::from_secs(20), || {
        std::fs::read_to_string(trunk_server.base.join("data/trunk/binlog"))
            .unwrap_or_default()
            .contains(&freed)
    });
    assert_everywhere(&[&server, &other], &live);
}

/// Trunk files on a storage's disk (`data/HH/HH/NNNNNN`), by trunk id.
fn trunk_files_on_disk(s: &StorageProc) -> BTreeMap<u32, std::path::PathBuf> {
    let data = s.base.join("data");
    files_under(&data)
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&data).ok()?.to_str()?.to_owned();
            let parts: Vec<&str> = rel.split('/').collect();
            let hex = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_hexdigit());
            let [hi, lo, name] = parts[..] else {
                return None;
            };
            let digits = name.len() == 6 && name.bytes().all(|b| b.is_ascii_digit());
            (hex(hi) && hex(lo) && digits).then(|| (name.parse().unwrap(), p))
        })
        .collect()
}

/// With `trunk_create_file_advance`, the trunk server makes trunk files
/// at the time base and every interval after it, with no upload asking,
/// until its free trunk space reaches the threshold (12 MB: three 4 MB
/// files), then no more. The tracker knows of them, a restart keeps them
/// (trunk binlog) without making more, and an upload lands in one.
#[test]
fn trunk_files_are_made_ahead_up_to_the_threshold() {
    let ip = Ipv4Addr::new(127, 0, 0, 17);
    let (dir, _tracker, mut s) = start_cluster(
        &[
            "use_trunk_file = true",
            "slot_max_size = 16384",
            "trunk_file_size = 4194304",
            "trunk_create_file_advance = true",
            "trunk_create_file_time_base = 00:00",
            "trunk_create_file_interval = 1",
            "trunk_create_file_space_threshold = 12MB",
        ],
        StorageOpts::on(ip),
    );
    let _dir = dir;
    wait_until("trunk files made ahead", Duration::from_secs(20), || {
        trunk_files_on_disk(&s).len() >= 3
    });
    // Runs every second: a few more find enough free trunk space.
    std::thread::sleep(Duration::from_secs(3));
    let made = trunk_files_on_disk(&s);
    assert_eq!(made.len(), 3, "stops at the threshold: {made:?}");
    for path in made.values() {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).unwrap();
        assert_eq!(m.len(), 4194304, "{}", path.display());
        assert!(
            m.blocks() * 512 >= 4194304,
            "{} preallocated",
            path.display()
        );
    }
    let log = storage_log(&s);
    assert!(log.contains("trunk files made ahead of demand"), "{log}");
    // In the trunk binlog (a restart must know them), and known to the
    // tracker, which shows the free trunk space.
    let trunk_binlog = std::fs::read_to_string(s.base.join("data/trunk/binlog")).unwrap();
    for id in made.keys() {
        let whole = format!(" {id} 0 4194304");
        let ops: Vec<&str> = trunk_binlog
            .lines()
            .filter(|l| l.ends_with(&whole))
            .filter_map(|l| l.split(' ').nth(1))
            .collect();
        assert_eq!(
            ops,
            ["A", "D"],
            "{id}: taken, then freed, in\n{trunk_binlog}"
        );
    }
    let newest = *made.keys().last().unwrap();
    let monitor = || {
        let out = std::process::Command::new(BIN)
            .arg("monitor")
            .arg(&s.conf)
            .args(["list", "group1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the tracker knows", Duration::from_secs(10), || {
        let list = monitor();
        list.contains(&format!("current trunk file id = {newest}"))
            && list.contains("trunk free space = 12 MB")
    });

    // A restart rebuilds the map from the trunk binlog: still enough.
    s.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(trunk_files_on_disk(&s), made, "none more after a restart");

    // An upload lands in a file made ahead.
    let mut live = BTreeMap::new();
    let mut k = 0;
    wait_for_packing(&[&s], &mut live, &mut k);
    for name in live.keys() {
        let id = slot_of(name).slot.trunk_id;
        assert!(made.contains_key(&id), "{name} in trunk file {id}");
    }
    assert_everywhere(&[&s], &live);
}

//! Property tests: every message type round-trips encode → decode over
//! random valid fields; file IDs round-trip through build/parse/Display;
//! metadata lists and binlog records round-trip; and no decoder panics on
//! random bytes.

use std::net::Ipv4Addr;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use fdfs_proto::binlog::{BinlogOp, BinlogRecord};
use fdfs_proto::common::IpSize;
use fdfs_proto::file_id::{ext_part, FileKind, NameInfo, TrunkSlot};
use fdfs_proto::metadata::{self, MetaPair};
use fdfs_proto::server::*;
use fdfs_proto::storage::*;
use fdfs_proto::sync::*;
use fdfs_proto::tracker::*;
use fdfs_proto::{FileId, Frame, GroupName, Header, LogicName, ServerAddr, SourceServer};

const TRUNK_BIT: u64 = 1 << 59;

// ------------------------------------------------------------ strategies

fn group() -> impl Strategy<Value = GroupName> {
    "[A-Za-z0-9]{1,16}".prop_map(|s| GroupName::new(&s).unwrap())
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string())
}

fn ip_for(size: IpSize) -> BoxedStrategy<String> {
    match size {
        IpSize::V4 => ipv4().boxed(),
        IpSize::V6 => prop_oneof![
            ipv4(),
            any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string())
        ]
        .boxed(),
    }
}

fn ip_size() -> impl Strategy<Value = IpSize> {
    prop_oneof![Just(IpSize::V4), Just(IpSize::V6)]
}

/// Text that fits a NUL-padded field of `max` bytes.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9._:-]{{0,{max}}}")).unwrap()
}

/// A storage id: 1 to 15 printable characters.
fn id() -> impl Strategy<Value = String> {
    "[!-~]{1,15}"
}

fn ext() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,6}"
}

/// Any extension `validate_ext` accepts, dots included.
fn any_ext() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{0,6}".prop_filter("valid ext", |e| {
        fdfs_proto::file_id::validate_ext(e).is_ok()
    })
}

fn server_addr(size: IpSize) -> impl Strategy<Value = ServerAddr> {
    (ip_for(size), any::<u16>()).prop_map(|(ip, port)| ServerAddr { ip, port })
}

fn source() -> impl Strategy<Value = SourceServer> {
    prop_oneof![
        // An IP whose last octet is 0 reads back as a server id: a
        // documented upstream quirk (PROTOCOL.md §5.2), tested below.
        (any::<[u8; 3]>(), 1u8..=255)
            .prop_map(|(a, d)| SourceServer::Ip(Ipv4Addr::new(a[0], a[1], a[2], d))),
        (1u32..=0xFF_FFFF).prop_map(SourceServer::Id),
    ]
}

fn file_size() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..(1 << 32), (1u64 << 32)..(1u64 << 50)]
}

/// What a generated name should decode to.
#[derive(Debug, Clone)]
struct NameSpec {
    logic: LogicName,
    size: Option<u64>,
    ext: String,
}

fn logic_spec() -> impl Strategy<Value = NameSpec> {
    (
        (any::<u8>(), any::<u8>(), any::<u8>()),
        source(),
        any::<u32>(),
        file_size(),
        0u8..3, // 0 normal, 1 appender, 2 trunk
        any::<u32>(),
        any::<u32>(),
        any_ext(),
        any::<u32>(),
        any::<(u32, u32, u32)>(),
    )
        .prop_map(
            |((sp, hi, lo), source, ts, size, kind, random, crc32, ext, digits, slot)| {
                let (size_field, trunk, want) = match kind {
                    0 => (
                        NameInfo::size_field_for(size, false, random),
                        None,
                        Some(size),
                    ),
                    1 => (NameInfo::size_field_for(size, true, random), None, None),
                    _ => {
                        let small = size & 0xFFFF_FFFF;
                        let slot = TrunkSlot {
                            trunk_id: slot.0,
                            offset: slot.1,
                            alloc_size: slot.2,
                        };
                        (
                            NameInfo::size_field_for(small, false, random) | TRUNK_BIT,
                            Some(slot),
                            Some(small),
                        )
                    }
                };
                let info = NameInfo {
                    source,
                    timestamp: ts,
                    size_field,
                    crc32,
                };
                let part = ext_part(&ext, digits).unwrap();
                NameSpec {
                    logic: LogicName::build(sp, hi, lo, info, trunk, &part),
                    size: want,
                    ext,
                }
            },
        )
}

fn logic() -> impl Strategy<Value = LogicName> {
    logic_spec().prop_map(|s| s.logic)
}

/// A master (normal or appender) name and a valid slave prefix/ext.
fn master_and_slave() -> impl Strategy<Value = (LogicName, String, String)> {
    (logic(), "[A-Za-z0-9_-]{1,16}", ext())
        .prop_filter("master files only", |(l, _, _)| {
            matches!(l.kind, FileKind::Normal | FileKind::Appender)
        })
        .prop_filter("`-m` without ext is the metadata name", |(_, p, e)| {
            !(p == "-m" && e.is_empty())
        })
}

/// A name as sync requests carry it: a logic name, maybe with `-m`.
fn sync_name() -> impl Strategy<Value = LogicNameOrMeta> {
    (logic(), any::<bool>()).prop_map(|(l, meta)| {
        let s = if meta {
            format!("{l}-m")
        } else {
            l.to_string()
        };
        LogicNameOrMeta::parse(&s).unwrap()
    })
}

fn brief() -> impl Strategy<Value = StorageBrief> {
    (any::<u8>(), any::<u32>(), text(15), ip_for(IpSize::V6)).prop_map(|(status, port, id, ip)| {
        StorageBrief {
            status,
            port,
            id,
            ip,
        }
    })
}

fn stat_buff() -> impl Strategy<Value = StatBuff> {
    (any::<[u32; 3]>(), vec(any::<i64>(), 42)).prop_map(|(c, v)| StatBuff {
        connection_alloc_count: c[0],
        connection_current_count: c[1],
        connection_max_count: c[2],
        counters: v.try_into().unwrap(),
    })
}

fn meta_pairs() -> impl Strategy<Value = Vec<MetaPair>> {
    let byte = prop_oneof![0u8..=0, 3u8..=255];
    vec(
        (vec(byte.clone(), 1..=64), vec(byte, 0..=256)).prop_map(|(n, v)| MetaPair::new(n, v)),
        0..6,
    )
}

fn len(n: usize) -> u64 {
    n as u64
}

// ------------------------------------------------------------- file ids

proptest! {
    #[test]
    fn file_ids_round_trip(spec in logic_spec(), g in group()) {
        let l = &spec.logic;
        let s = l.to_string();
        let parsed = LogicName::parse(&s).unwrap();
        prop_assert_eq!(&parsed, l);
        prop_assert_eq!(parsed.info.file_size(), spec.size);
        if !spec.ext.contains('.') {
            prop_assert_eq!(parsed.ext(), spec.ext.as_str());
        }
        prop_assert_eq!(parsed.info.is_appender(), spec.size.is_none());
        prop_assert_eq!(
            parsed.relative_path(),
            format!("{:02X}/{:02X}/{}", l.sub_high, l.sub_low, l.name)
        );
        prop_assert_eq!(s.len(), if matches!(l.kind, FileKind::Trunk(_)) { 60 } else { 44 });
        prop_assert_eq!(NameInfo::decode_b64(&l.name[..27]).unwrap(), l.info);
        let id = FileId { group: g, logic: parsed };
        let text = id.to_string();
        prop_assert_eq!(FileId::parse(&text).unwrap(), id);
    }

    #[test]
    fn slave_names_round_trip((master, prefix, ext) in master_and_slave(), g in group()) {
        let tail = master.name.len() - 7;
        let stem = tail + master.name[tail..].find('.').unwrap_or(7);
        let dot_ext = if ext.is_empty() { 0 } else { ext.len() + 1 };
        let logic_len = 10 + stem + prefix.len() + dot_ext;
        let slave = master.slave(&prefix, &ext);
        if logic_len <= 44 {
            // Would read back as a normal file name: refused.
            prop_assert!(slave.is_err(), "{:?}", slave);
            return Ok(());
        }
        let slave = slave.unwrap();
        prop_assert_eq!(slave.kind, FileKind::Slave);
        prop_assert_eq!(slave.info, master.info);
        prop_assert_eq!(slave.ext(), ext.as_str());
        let s = slave.to_string();
        prop_assert!(s.contains(&prefix));
        prop_assert_eq!(&LogicName::parse(&s).unwrap(), &slave);
        let id = FileId { group: g, logic: slave };
        prop_assert_eq!(&FileId::parse(&id.to_string()).unwrap(), &id);
        // Slaves of slaves are refused.
        prop_assert!(id.logic.slave("_x", "jpg").is_err());
    }

    #[test]
    fn zero_last_octet_reads_as_server_id(a in any::<[u8; 3]>()) {
        prop_assume!(a != [0, 0, 0]);
        let info = NameInfo {
            source: SourceServer::Ip(Ipv4Addr::new(a[0], a[1], a[2], 0)),
            timestamp: 1,
            size_field: NameInfo::size_field_for(1, false, 0),
            crc32: 0,
        };
        let back = NameInfo::from_bytes(&info.to_bytes());
        let want = u32::from_le_bytes([a[0], a[1], a[2], 0]);
        prop_assert_eq!(back.source, SourceServer::Id(want));
    }
}

// ------------------------------------------------- metadata and binlog

fn binlog_op() -> impl Strategy<Value = BinlogOp> {
    prop_oneof![
        Just(BinlogOp::Create),
        Just(BinlogOp::Delete),
        Just(BinlogOp::Update),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, length)| BinlogOp::Append { offset, length }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, length)| BinlogOp::Modify { offset, length }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(old_size, new_size)| BinlogOp::Truncate { old_size, new_size }),
        sync_name().prop_map(|n| BinlogOp::Link { target: n.0 }),
        sync_name().prop_map(|n| BinlogOp::Rename { old: n.0 }),
    ]
}

proptest! {
    #[test]
    fn metadata_round_trips(pairs in meta_pairs()) {
        let b = metadata::encode(&pairs);
        prop_assert_eq!(&metadata::decode(&b).unwrap(), &pairs);
        let sorted = metadata::normalize(pairs.clone());
        prop_assert!(sorted.windows(2).all(|w| w[0].name < w[1].name));
        prop_assert_eq!(metadata::decode(&metadata::encode(&sorted)).unwrap(), sorted);
    }

    #[test]
    fn binlog_records_round_trip(
        timestamp in any::<u32>(),
        is_source in any::<bool>(),
        name in sync_name(),
        op in binlog_op(),
    ) {
        let r = BinlogRecord { timestamp, is_source, filename: name.0, op };
        let line = r.encode();
        prop_assert!(line.ends_with('\n') && line.len() <= 256);
        prop_assert_eq!(BinlogRecord::decode(&line).unwrap(), r.clone());
        prop_assert_eq!(BinlogRecord::decode(line.trim_end()).unwrap(), r);
    }
}

// -------------------------------------------------------- tracker.rs

fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

proptest! {
    #[test]
    fn tracker_group_and_file_requests(g in group(), l in logic(), id in option::of(id())) {
        let m = GroupReq { group: g.clone() };
        prop_assert_eq!(GroupReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FileReq { group: g.clone(), filename: l };
        prop_assert_eq!(FileReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = ListStorageReq { group: g.clone(), storage_id: id.clone() };
        prop_assert_eq!(ListStorageReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        if let Some(id) = id {
            let m = DeleteStorageReq { group: g, storage_id: id };
            prop_assert_eq!(DeleteStorageReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        }
    }

    #[test]
    fn tracker_store_and_fetch_replies(
        g in group(),
        spi in any::<u8>(),
        servers in ip_size().prop_flat_map(|s| (Just(s), vec(server_addr(s), 1..5))),
    ) {
        let (ssize, servers) = servers;
        let m = StoreResp { group: g.clone(), server: servers[0].clone(), store_path_index: spi, ip_size: ssize };
        prop_assert_eq!(StoreResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = StoreAllResp { group: g.clone(), servers: servers.clone(), store_path_index: spi, ip_size: ssize };
        prop_assert_eq!(StoreAllResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FetchResp { group: g, servers, ip_size: ssize };
        prop_assert_eq!(FetchResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }

    #[test]
    fn tracker_group_and_storage_stats(
        groups in vec((text(16), vec(any::<i64>(), 12)), 0..4),
        storages in ip_size().prop_flat_map(|s| (Just(s), vec((
            any::<[u8; 2]>(), text(15), ip_for(s), text(15), text(8), vec(any::<i64>(), 10),
            stat_buff(), any::<bool>()), 0..4))),
    ) {
        let groups: Vec<GroupStat> = groups.into_iter().map(|(n, v)| GroupStat {
            group_name: n, total_mb: v[0], free_mb: v[1], reserved_mb: v[2], trunk_free_mb: v[3],
            storage_count: v[4], storage_port: v[5], readable_server_count: v[6],
            writable_server_count: v[7], current_write_server: v[8], store_path_count: v[9],
            subdir_count_per_path: v[10], current_trunk_file_id: v[11],
        }).collect();
        let b = enc(|o| groups.iter().for_each(|g| g.encode(o)));
        prop_assert_eq!(b.len(), GroupStat::LEN * groups.len());
        prop_assert_eq!(GroupStat::decode_list(&b).unwrap(), groups);

        let (size, storages) = storages;
        let list: Vec<StorageStat> = storages.into_iter().map(|(s, id, ip, src, ver, v, stat, trunk)| StorageStat {
            status: s[0], rw_mode: s[1], id, ip_addr: ip, src_id: src, version: ver,
            join_time: v[0], up_time: v[1], total_mb: v[2], free_mb: v[3], reserved_mb: v[4],
            upload_priority: v[5], store_path_count: v[6], subdir_count_per_path: v[7],
            current_write_path: v[8], storage_port: v[9], stat, if_trunk_server: trunk,
            ip_size: size,
        }).collect();
        let b = enc(|o| list.iter().for_each(|s| s.encode(o)));
        prop_assert_eq!(b.len(), StorageStat::len(size) * list.len());
        let back = StorageStat::decode_list(&b).unwrap();
        prop_assert_eq!(back, list);
    }

    #[test]
    fn tracker_small_messages(
        stat in stat_buff(),
        g in group(),
        addr in "[0-9.:]{1,52}",
        params in vec(("[a-z_]{1,20}", "[A-Za-z0-9.%:=_-]{0,20}"), 0..30),
        cs in any::<[u8; 3]>(),
        f4 in any::<[u8; 4]>(),
        ids in (any::<u32>(), any::<bool>(), any::<u32>(), vec("[A-Za-z0-9 .:]{0,30}", 0..6)),
    ) {
        prop_assert_eq!(StatBuff::decode(&enc(|o| stat.encode(o))).unwrap(), stat);
        let m = GroupAddrReq { group: g, addr };
        prop_assert_eq!(GroupAddrReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let params: Vec<(String, String)> = params;
        prop_assert_eq!(decode_params(&encode_params(&params)).unwrap(), params);
        let m = TrackerClusterStatReq { filter_by: cs[0], is_active: cs[1], is_leader: cs[2] };
        prop_assert_eq!(TrackerClusterStatReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FilterReq4(f4);
        prop_assert_eq!(FilterReq4::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FetchStorageIdsReq { start_index: ids.0, allow_empty: ids.1 };
        prop_assert_eq!(FetchStorageIdsReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FetchStorageIdsResp { total_count: ids.2, lines: ids.3 };
        prop_assert_eq!(FetchStorageIdsResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }

    #[test]
    fn tracker_cluster_stats(
        trackers in vec((text(52), any::<[bool; 2]>(), any::<[u32; 3]>(), text(8), any::<[i64; 2]>()), 0..5),
        flags in any::<[bool; 3]>(),
        storages in vec((text(16), text(52), any::<bool>(), any::<u8>(), any::<[u32; 3]>(), text(8), any::<[i64; 2]>()), 0..5),
        volumes in vec((text(16), any::<[i64; 5]>(), any::<[bool; 2]>()), 0..5),
    ) {
        let list: Vec<TrackerInfo> = trackers.into_iter().map(|(host, b, c, version, t)| TrackerInfo {
            host, is_leader: b[0], is_active: b[1], connections: c, version, up_time: t[0], last_heartbeat: t[1],
        }).collect();
        let b = enc(|o| TrackerInfo::encode_list(&list, o));
        prop_assert_eq!(b.len(), 1 + TrackerInfo::LEN * list.len());
        prop_assert_eq!(TrackerInfo::decode_list(&b).unwrap(), list);

        let m = StorageClusterStat {
            use_storage_id: flags[0],
            use_trunk_file: flags[1],
            storages: storages.into_iter().map(|(id, host, tr, status, c, version, t)| StorageClusterInfo {
                id, host, is_trunk_server: tr, status, connections: c, version, up_time: t[0], last_heartbeat: t[1],
            }).collect(),
        };
        prop_assert_eq!(StorageClusterStat::decode(&enc(|o| m.encode(o))).unwrap(), m);

        let m = VolumeStat {
            use_trunk_file: flags[2],
            volumes: volumes.into_iter().map(|(g, v, b)| VolumeInfo {
                group_name: g, total_mb: v[0], free_mb: v[1], reserved_mb: v[2], avail_mb: v[3],
                trunk_free_mb: v[4], is_disk_available: b[0], is_trunk_available: b[1],
            }).collect(),
        };
        prop_assert_eq!(VolumeStat::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }
}

// -------------------------------------------------------- storage.rs

proptest! {
    #[test]
    fn storage_upload_heads(
        spi in any::<i8>(),
        size in 0u64..(1 << 62),
        ext in any_ext(),
        g in group(),
        l in logic(),
    ) {
        let h = UploadHead { store_path_index: spi, file_size: size, ext };
        let b = enc(|o| h.encode(o));
        prop_assert_eq!(b.len(), UploadHead::LEN);
        prop_assert_eq!(UploadHead::decode(&b, len(UploadHead::LEN) + size).unwrap(), h.clone());
        prop_assert!(UploadHead::decode(&b, len(UploadHead::LEN) + size + 1).is_err());
        let m = FileIdResp { group: g, filename: l };
        prop_assert_eq!(FileIdResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }

    #[test]
    fn storage_slave_upload((master, prefix, ext) in master_and_slave(), size in 0u64..(1 << 62)) {
        let m = SlaveUpload { master, file_size: size, prefix, ext };
        let b = enc(|o| m.encode(o));
        prop_assert_eq!(b.len(), m.prefix_len());
        let pkg_len = len(b.len()) + size;
        let head = SlaveUploadHead::decode(&b[..SlaveUploadHead::LEN], pkg_len).unwrap();
        prop_assert_eq!(SlaveUpload::decode(head, &b[SlaveUploadHead::LEN..]).unwrap(), m);
    }

    #[test]
    fn storage_appender_ops(l in logic(), size in 0u64..(1 << 61), offset in 0u64..(1 << 61)) {
        let n = l.to_string().len();
        let b = enc(|o| AppendHead::encode(&l, size, o));
        let h = AppendHead::decode(&b[..AppendHead::LEN], len(b.len()) + size).unwrap();
        prop_assert_eq!((h.name_len, h.file_size), (n, size));
        prop_assert_eq!(&decode_appender_name(&b[AppendHead::LEN..]).unwrap(), &l);

        let b = enc(|o| ModifyHead::encode(&l, offset, size, o));
        let h = ModifyHead::decode(&b[..ModifyHead::LEN], len(b.len()) + size).unwrap();
        prop_assert_eq!((h.name_len, h.offset, h.file_size), (n, offset, size));
        prop_assert_eq!(&decode_appender_name(&b[ModifyHead::LEN..]).unwrap(), &l);

        let m = TruncateReq { filename: l.clone(), new_size: size };
        prop_assert_eq!(TruncateReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = RegenerateReq { filename: l };
        prop_assert_eq!(RegenerateReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }

    #[test]
    fn storage_download_metadata_info(
        g in group(),
        l in logic(),
        range in (0u64..(1 << 62), 0u64..(1 << 62)),
        merge in any::<bool>(),
        pairs in meta_pairs(),
        info in (0u64..(1 << 62), any::<i64>(), any::<u32>()),
        size in ip_size(),
        ip in ipv4(),
    ) {
        let m = DownloadReq { offset: range.0, length: range.1, group: g.clone(), filename: l.clone() };
        prop_assert_eq!(DownloadReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = SetMetadataReq {
            op: if merge { MetaOp::Merge } else { MetaOp::Overwrite },
            group: g,
            filename: l,
            meta: metadata::encode(&pairs),
        };
        prop_assert_eq!(SetMetadataReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = FileInfoResp { file_size: info.0, create_timestamp: info.1, crc32: info.2, source_ip: ip, ip_size: size };
        let b = enc(|o| m.encode(o));
        // The CRC travels sign-extended.
        prop_assert_eq!(i64::from_be_bytes(b[16..24].try_into().unwrap()), info.2 as i32 as i64);
        prop_assert_eq!(FileInfoResp::decode(&b).unwrap(), m);
    }
}

// --------------------------------------------------------- server.rs

proptest! {
    #[test]
    fn server_briefs_and_flags(
        b in brief(),
        leader in option::of(brief()),
        trunk in option::of(brief()),
        servers in option::of(vec(brief(), 0..4)),
        src in text(15),
        until in any::<i64>(),
    ) {
        prop_assert_eq!(StorageBrief::decode(&enc(|o| b.encode(o))).unwrap(), b.clone());
        let m = ChangeFlags { leader, trunk_server: trunk, group_servers: servers };
        let bytes = enc(|o| m.encode(o));
        prop_assert_eq!(bytes[0], m.flags());
        prop_assert_eq!(ChangeFlags::decode(&bytes).unwrap(), m);
        let m = SyncInfo { src_id: src, until_timestamp: until };
        let bytes = enc(|o| m.encode(o));
        prop_assert_eq!(SyncInfo::decode(&bytes).unwrap(), m.clone());
        prop_assert_eq!(SyncInfo::decode_optional(&bytes).unwrap(), Some(m));
        prop_assert_eq!(SyncInfo::decode_optional(&[]).unwrap(), None);
    }

    #[test]
    fn server_join(
        g in group(),
        port in any::<u16>(),
        counts in (1u32..=256, 1u32..=256),
        times in any::<[i64; 3]>(),
        version in text(8),
        init in any::<bool>(),
        status in any::<i8>(),
        sid in text(15),
        tip in ip_for(IpSize::V6),
        trackers in vec("[0-9.:]{1,21}", 0..=16),
        resp in (any::<u8>(), text(15)),
    ) {
        let m = JoinReq {
            group: g, storage_port: port, store_path_count: counts.0, subdir_count_per_path: counts.1,
            upload_priority: times[0], join_time: times[1], up_time: times[2], version,
            init_flag: init, status, storage_id: sid, current_tracker_ip: tip, trackers,
        };
        let b = enc(|o| m.encode(o));
        prop_assert!(b.len() >= JoinReq::FIXED_LEN);
        prop_assert_eq!(JoinReq::decode(&b).unwrap(), m);
        let m = JoinResp { status: resp.0, src_id: resp.1 };
        prop_assert_eq!(JoinResp::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }

    #[test]
    fn server_reports(
        paths in vec((0i64..=i64::MAX, 0i64..=i64::MAX), 1..=256),
        entries in vec((text(15), any::<u32>()), 0..6),
        g in group(),
        b in brief(),
        port in any::<u32>(),
        sid in "[!-~]{0,15}",
        status in (any::<bool>(), any::<i64>(), any::<i64>()),
        leader in (any::<i64>(), text(8), any::<i64>()),
    ) {
        let m = DiskUsage { paths };
        prop_assert_eq!(DiskUsage::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = SyncReport { entries };
        prop_assert_eq!(SyncReport::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = ReportStatusReq { group: g.clone(), brief: b.clone() };
        prop_assert_eq!(ReportStatusReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = GetMyIpReq { group: g.clone(), port };
        prop_assert_eq!(GetMyIpReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = IpChangedReq { group: g.clone(), old_ip: b.ip.clone(), new_ip: sid.clone() };
        prop_assert_eq!(IpChangedReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = GroupIdReq { group: g, storage_id: sid };
        prop_assert_eq!(GroupIdReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = TrackerStatus { if_leader: status.0, running_time: status.1, restart_interval: status.2 };
        prop_assert_eq!(TrackerStatus::decode(&enc(|o| m.encode(o))).unwrap(), m);
        let m = JoinLeaderReq { up_time: leader.0, version: leader.1, server_port: leader.2 };
        prop_assert_eq!(JoinLeaderReq::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }
}

// ----------------------------------------------------------- sync.rs

proptest! {
    #[test]
    fn sync_messages(
        sid in id(),
        g in group(),
        name in sync_name(),
        other in sync_name(),
        ts in any::<u32>(),
        sizes in (0u64..(1 << 61), 0u64..(1 << 61)),
        with_content in any::<bool>(),
    ) {
        let m = ReportServerId { id: sid };
        prop_assert_eq!(ReportServerId::decode(&enc(|o| m.encode(o))).unwrap(), m);

        let h = SyncFileHead { name_len: name.0.len(), file_size: sizes.0, timestamp: ts, group: g.clone() };
        let b = enc(|o| h.encode(&name, o));
        let content = if with_content { sizes.0 } else { 0 };
        let back = SyncFileHead::decode(&b[..SyncFileHead::LEN], len(b.len()) + content, with_content).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(&decode_sync_name(&b[SyncFileHead::LEN..]).unwrap(), &name);

        let m = SyncDelete { timestamp: ts, group: g.clone(), filename: name.clone() };
        prop_assert_eq!(SyncDelete::decode(&enc(|o| m.encode(o))).unwrap(), m);

        let h = SyncRangeHead { name_len: name.0.len(), offset: sizes.0, length: sizes.1, timestamp: ts, group: g.clone() };
        let b = enc(|o| h.encode(&name, o));
        let back = SyncRangeHead::decode(&b[..SyncRangeHead::LEN], len(b.len()) + sizes.1).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(&decode_sync_name(&b[SyncRangeHead::LEN..]).unwrap(), &name);

        let m = SyncTruncate { old_size: sizes.0, new_size: sizes.1, timestamp: ts, group: g.clone(), filename: name.clone() };
        prop_assert_eq!(SyncTruncate::decode(&enc(|o| m.encode(o))).unwrap(), m);

        let m = SyncTwoNames { timestamp: ts, group: g, first: name, second: other };
        prop_assert_eq!(SyncTwoNames::decode(&enc(|o| m.encode(o))).unwrap(), m);
    }
}

// ------------------------------------------------- decoders never panic

/// Feeds `b` to every decoder; results are ignored, panics are failures.
fn decode_everything(b: &[u8], pkg_len: u64, flag: bool) {
    let _ = GroupReq::decode(b);
    let _ = StoreResp::decode(b);
    let _ = StoreAllResp::decode(b);
    let _ = FileReq::decode(b);
    let _ = FetchResp::decode(b);
    let _ = GroupStat::decode_list(b);
    let _ = ListStorageReq::decode(b);
    let _ = DeleteStorageReq::decode(b);
    let _ = StatBuff::decode(b);
    let _ = StorageStat::decode_list(b);
    let _ = GroupAddrReq::decode(b);
    let _ = decode_params(b);
    let _ = TrackerClusterStatReq::decode(b);
    let _ = TrackerInfo::decode_list(b);
    let _ = FilterReq4::decode(b);
    let _ = StorageClusterStat::decode(b);
    let _ = VolumeStat::decode(b);
    let _ = FetchStorageIdsReq::decode(b);
    let _ = FetchStorageIdsResp::decode(b);
    let _ = UploadHead::decode(b, pkg_len);
    let _ = FileIdResp::decode(b);
    if let Ok(h) = SlaveUploadHead::decode(b.get(..SlaveUploadHead::LEN).unwrap_or(b), pkg_len) {
        let _ = SlaveUpload::decode(h, b.get(SlaveUploadHead::LEN..).unwrap_or(&[]));
    }
    let _ = AppendHead::decode(b, pkg_len);
    let _ = ModifyHead::decode(b, pkg_len);
    let _ = decode_appender_name(b);
    let _ = TruncateReq::decode(b);
    let _ = RegenerateReq::decode(b);
    let _ = DownloadReq::decode(b);
    let _ = SetMetadataReq::decode(b);
    let _ = FileInfoResp::decode(b);
    let _ = StorageBrief::decode(b);
    let _ = StorageBrief::decode_list(b);
    let _ = SyncInfo::decode_optional(b);
    let _ = ChangeFlags::decode(b);
    let _ = JoinReq::decode(b);
    let _ = JoinResp::decode(b);
    let _ = DiskUsage::decode(b);
    let _ = SyncReport::decode(b);
    let _ = ReportStatusReq::decode(b);
    let _ = GetMyIpReq::decode(b);
    let _ = IpChangedReq::decode(b);
    let _ = GroupIdReq::decode(b);
    let _ = TrackerStatus::decode(b);
    let _ = JoinLeaderReq::decode(b);
    let _ = ReportServerId::decode(b);
    let _ = SyncFileHead::decode(b, pkg_len, flag);
    let _ = decode_sync_name(b);
    let _ = SyncDelete::decode(b);
    let _ = SyncRangeHead::decode(b, pkg_len);
    let _ = SyncTruncate::decode(b);
    let _ = SyncTwoNames::decode(b);
    let _ = metadata::decode(b);
    let text = String::from_utf8_lossy(b);
    let _ = LogicName::parse(&text);
    let _ = FileId::parse(&text);
    let _ = BinlogRecord::decode(&text);
    let _ = LogicNameOrMeta::parse(&text);
}

/// Bytes that look like protocol fields often enough to reach deep paths:
/// small lengths, group names, logic-name fragments.
fn protocol_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        vec(any::<u8>(), 0..20),
        (0i64..200).prop_map(|n| n.to_be_bytes().to_vec()),
        Just(b"group1\0\0\0\0\0\0\0\0\0\0".to_vec()),
        Just(b"M00/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MXE119.txt".to_vec()),
        Just(b"M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000.jpg".to_vec()),
        Just(b"1795669673 R ".to_vec()),
        Just(b"\x01a\x02".to_vec()),
    ];
    vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(b in vec(any::<u8>(), 0..600), pkg_len in any::<u64>(), flag in any::<bool>()) {
        decode_everything(&b, pkg_len, flag);
        decode_everything(&b, b.len() as u64, flag);
    }

    #[test]
    fn decoders_never_panic_on_structured_bytes(b in protocol_bytes(), flag in any::<bool>()) {
        decode_everything(&b, b.len() as u64, flag);
        for cut in [10usize, 15, 16, 24, 36, 38, 44] {
            if let Some(h) = b.get(..cut) {
                decode_everything(h, b.len() as u64, flag);
            }
        }
    }

    #[test]
    fn frame_parse_never_panics(b in vec(any::<u8>(), 0..64), limit in any::<u64>()) {
        match Frame::parse(&b, limit) {
            Ok(Some((f, used))) => {
                prop_assert!(used <= b.len());
                prop_assert_eq!(used, 10 + f.body.len());
                prop_assert!(f.header.pkg_len <= limit);
            }
            Ok(None) => {
                let waiting = b.len() < 10 || {
                    let h = Header::decode(b[..10].try_into().unwrap(), limit).unwrap();
                    (b.len() as u64) < 10 + h.pkg_len
                };
                prop_assert!(waiting);
            }
            Err(_) => prop_assert!(b.len() >= 10),
        }
    }

    #[test]
    fn text_parsers_never_panic(s in "\\PC{0,140}") {
        let _ = LogicName::parse(&s);
        let _ = FileId::parse(&s);
        let _ = BinlogRecord::decode(&s);
        let _ = metadata::decode(s.as_bytes());
    }
}

//! Golden tests: every message captured from upstream FastDFS V6.16.1
//! (testdata/golden/wire/*.jsonl) is split with `Frame::parse`, decoded with
//! the typed message for its command and direction, re-encoded and compared
//! byte for byte; decoded values are checked against the capture's `note`.
//! The on-disk samples (binlog lines, a `-m` metadata sidecar) must decode
//! and re-encode identically.
//!
//! Exceptions, as testdata/golden/README.md allows: the group field of
//! storage-to-storage sync requests carries garbage after its NUL, so those
//! bytes are zeroed before comparing; bodies over 4 KiB were captured as
//! their first 256 bytes, so only the heads of streamed commands are decoded.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use fdfs_proto::binlog::BinlogRecord;
use fdfs_proto::cmd::{self, storage as s, tracker as t};
use fdfs_proto::errno;
use fdfs_proto::file_id::{FileKind, LogicName, SourceServer};
use fdfs_proto::metadata;
use fdfs_proto::server::{
    ChangeFlags, DiskUsage, GetMyIpReq, GroupIdReq, JoinReq, JoinResp, ReportStatusReq,
    StorageBrief, SyncInfo, SyncReport,
};
use fdfs_proto::storage::{
    decode_appender_name, file_info_flags, AppendHead, DownloadReq, FileIdResp, FileInfoResp,
    MetaOp, ModifyHead, RegenerateReq, SetMetadataReq, SlaveUpload, SlaveUploadHead, TruncateReq,
    UploadHead,
};
use fdfs_proto::sync::{
    decode_sync_name, ReportServerId, SyncDelete, SyncFileHead, SyncRangeHead, SyncTruncate,
    SyncTwoNames,
};
use fdfs_proto::tracker::{
    decode_params, encode_params, DeleteStorageReq, FetchResp, FileReq, FilterReq4, GroupReq,
    GroupStat, ListStorageReq, StatBuff, StorageClusterStat, StorageStat, StoreAllResp, StoreResp,
    TrackerClusterStatReq, TrackerInfo, VolumeStat,
};
use fdfs_proto::{encode_frame, DecodeError, Frame, Header, HEADER_LEN};
use serde_json::Value;

const WIRE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/golden/wire");
const DISK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/golden/disk");

/// Body limit used for every captured frame: far above any real message
/// here, far below the 1 GiB bodies that bad_requests announces.
const LIMIT: u64 = 64 << 20;

/// Every command the captures contain, requests and the replies to them.
const REQUIRED: [u8; 47] = [
    101, 104, 106, 107, 102, 103, 105, 11, 21, 23, 24, 34, 36, 38, 12, 13, 14, 15, 22, 90, 91, 92,
    93, 95, 96, 97, 98, 111, 60, 75, 77, 81, 83, 84, 86, 87, 88, 89, 76, 9, 16, 17, 18, 25, 35, 37,
    40,
];

/// One captured message.
#[derive(Debug)]
struct Rec {
    file: String,
    seq: u64,
    cmd: u8,
    status: u8,
    pkg_len: i64,
    header: [u8; HEADER_LEN],
    /// The body, or only its first 256 bytes when `truncated`.
    body: Vec<u8>,
    /// Captured as a 256-byte prefix of a body over 4 KiB.
    truncated: bool,
    /// The peer never finished sending it (bad_requests).
    incomplete: bool,
    note: String,
    conn: String,
    from: String,
    /// Sender and receiver IPs.
    src: String,
    dst: String,
}

impl Rec {
    fn at(&self) -> String {
        format!("{}#{} (cmd {})", self.file, self.seq, self.cmd)
    }

    /// The bad_requests case label (`T2`, `S10`...), if any.
    fn label(&self) -> Option<&str> {
        let rest = self.note.strip_prefix('[')?;
        rest.split_whitespace().next()
    }

    fn note_has(&self, want: &str) {
        assert!(
            self.note.contains(want),
            "{}: note does not contain {want:?}\nnote: {}",
            self.at(),
            self.note
        );
    }

    fn expect_full(&self) {
        assert!(
            !self.truncated && !self.incomplete,
            "{}: body not fully captured",
            self.at()
        );
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

/// Every message record of every capture, each file sorted by `seq`.
fn load() -> BTreeMap<String, Vec<Rec>> {
    let mut out = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(WIRE)
        .expect("golden wire dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 23, "expected the 23 golden captures");
    for p in paths {
        let file = p.file_stem().unwrap().to_string_lossy().into_owned();
        let mut recs = Vec::new();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).expect("json line");
            let Some(c) = v.get("cmd") else {
                // FIN/RST markers are not messages.
                assert!(
                    v.get("event").is_some(),
                    "{file}: record without cmd or event"
                );
                continue;
            };
            let header: [u8; HEADER_LEN] = unhex(v["header_hex"].as_str().unwrap())
                .try_into()
                .expect("10-byte header");
            let body = unhex(v["body_hex"].as_str().unwrap());
            let truncated = v.get("body_len").is_some();
            if truncated {
                assert_eq!(v["body_len"].as_i64(), v["pkg_len"].as_i64());
                assert!(v["body_len"].as_u64().unwrap() > 4096);
                assert_eq!(body.len(), 256);
            }
            recs.push(Rec {
                file: file.clone(),
                seq: v["seq"].as_u64().unwrap(),
                cmd: u8::try_from(c.as_u64().unwrap()).unwrap(),
                status: u8::try_from(v["status"].as_u64().unwrap()).unwrap(),
                pkg_len: v["pkg_len"].as_i64().unwrap(),
                header,
                body,
                truncated,
                incomplete: v
                    .get("incomplete")
                    .is_some_and(|x| x.as_bool() == Some(true)),
                note: v["note"].as_str().unwrap().to_owned(),
                conn: v["conn"].as_str().unwrap().to_owned(),
                from: v["from"].as_str().unwrap().to_owned(),
                src: v["src"].as_str().unwrap().to_owned(),
                dst: v["dst"].as_str().unwrap().to_owned(),
            });
        }
        recs.sort_by_key(|r| r.seq);
        out.insert(file, recs);
    }
    out
}

/// Zeroes the bytes after the first NUL of the group field at `at`
/// (upstream leaves buffer garbage there in sync requests).
fn zero_group_padding(b: &mut [u8], at: usize) {
    zero_after_nul(b, at, 16);
}

/// Zeroes the bytes after the first NUL of the text field `b[at..at+len]`.
fn zero_after_nul(b: &mut [u8], at: usize, len: usize) {
    let f = &mut b[at..at + len];
    if let Some(p) = f.iter().position(|&c| c == 0) {
        f[p..].fill(0);
    }
}

fn short(what: &'static str, got: usize, want: usize) -> DecodeError {
    DecodeError::BadLength {
        what,
        got,
        expected: format!("at least {want}"),
    }
}

fn prefix<'a>(b: &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
    b.get(..n).ok_or_else(|| short(what, b.len(), n))
}

/// Formats the `id[...]` summary the annotator writes for a file id.
fn id_summary(l: &LogicName) -> String {
    let i = l.info;
    let kind = match l.kind {
        FileKind::Normal => "normal",
        FileKind::Appender => "appender",
        FileKind::Slave => "slave",
        FileKind::Trunk(_) => "trunk",
    };
    format!(
        "id[src={} ts={} size={} crc={:08x} {kind}]",
        i.source,
        i.timestamp,
        i.file_size().unwrap_or(0),
        i.crc32
    )
}

/// When the note decodes the file id, our decoding must agree.
fn check_id_note(r: &Rec, l: &LogicName) {
    if r.note.contains(" id[") {
        r.note_has(&format!("file={l} {}", id_summary(l)));
    } else {
        r.note_has(&format!("{l}"));
    }
}

fn brief_summary(b: &StorageBrief) -> String {
    format!(
        "{{status={} port={} id={} ip={}}}",
        b.status, b.port, b.id, b.ip
    )
}

fn meta_summary(pairs: &[metadata::MetaPair]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                String::from_utf8_lossy(&p.name),
                String::from_utf8_lossy(&p.value)
            )
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

fn servers_summary(list: &[fdfs_proto::ServerAddr]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| format!("'{}:{}'", s.ip, s.port))
        .collect();
    format!("servers=[{}]", items.join(", "))
}

type ReqDecoder = fn(&Rec) -> Result<(), DecodeError>;
type RespDecoder = fn(&Rec, &Rec) -> Result<(), DecodeError>;

// ---------------------------------------------------------------- requests

fn req_empty(r: &Rec) -> Result<(), DecodeError> {
    r.expect_full();
    fdfs_proto::common::expect_empty(cmd::name(r.cmd), &r.body)
}

fn req_beat(r: &Rec) -> Result<(), DecodeError> {
    r.expect_full();
    if r.body.is_empty() {
        r.note_has("empty beat");
        return Ok(());
    }
    let sb = StatBuff::decode(&r.body)?;
    let mut out = Vec::new();
    sb.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "StatBuff 348 bytes: conn alloc/cur/max=({}, {}, {}) upload total/ok={}/{} last_source_update={} last_sync_update={} last_synced_timestamp={} last_heart_beat_time={}",
        sb.connection_alloc_count,
        sb.connection_current_count,
        sb.connection_max_count,
        sb.get("total_upload_count"),
        sb.get("success_upload_count"),
        sb.get("last_source_update"),
        sb.get("last_sync_update"),
        sb.get("last_synced_timestamp"),
        sb.get("last_heart_beat_time"),
    ));
    Ok(())
}

fn req_changelog(r: &Rec) -> Result<(), DecodeError> {
    r.expect_full();
    if r.body.is_empty() {
        r.note_has("empty (joined)");
        return Ok(());
    }
    let m = GroupIdReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group='{}' id='{}'", m.group, m.storage_id));
    Ok(())
}

fn req_group(r: &Rec) -> Result<(), DecodeError> {
    let m = GroupReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group='{}'", m.group));
    Ok(())
}

fn req_file(r: &Rec) -> Result<(), DecodeError> {
    let m = FileReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group='{}' file={}", m.group, m.filename));
    check_id_note(r, &m.filename);
    Ok(())
}

fn req_file_info(r: &Rec) -> Result<(), DecodeError> {
    req_file(r)?;
    r.note_has(&format!("flags(header status)={}", r.status));
    Ok(())
}

fn req_upload(r: &Rec) -> Result<(), DecodeError> {
    let h = UploadHead::decode(
        prefix(&r.body, UploadHead::LEN, "upload")?,
        r.pkg_len as u64,
    )?;
    let mut out = Vec::new();
    h.encode(&mut out);
    assert_eq!(out, r.body[..UploadHead::LEN], "{}", r.at());
    r.expect_full();
    assert_eq!(r.body.len() - UploadHead::LEN, h.file_size as usize);
    r.note_has(&format!(
        "store_path_index={} file_size={} ext='{}' content={} bytes",
        h.store_path_index, h.file_size, h.ext, h.file_size
    ));
    Ok(())
}

fn decode_slave(r: &Rec) -> Result<SlaveUpload, DecodeError> {
    let head = SlaveUploadHead::decode(
        prefix(&r.body, SlaveUploadHead::LEN, "slave upload")?,
        r.pkg_len as u64,
    )?;
    let end = SlaveUploadHead::LEN + head.master_len;
    let master = r
        .body
        .get(SlaveUploadHead::LEN..end)
        .ok_or_else(|| short("slave upload", r.body.len(), end))?;
    SlaveUpload::decode(head, master)
}

fn req_slave(r: &Rec) -> Result<(), DecodeError> {
    let m = decode_slave(r)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), m.prefix_len());
    assert_eq!(out, r.body[..m.prefix_len()], "{}", r.at());
    assert_eq!(r.body.len() - m.prefix_len(), m.file_size as usize);
    r.note_has(&format!(
        "master_len={} file_size={} prefix='{}' ext='{}' master={} content={} bytes",
        m.master.to_string().len(),
        m.file_size,
        m.prefix,
        m.ext,
        m.master,
        m.file_size
    ));
    Ok(())
}

fn req_append(r: &Rec) -> Result<(), DecodeError> {
    let h = AppendHead::decode(
        prefix(&r.body, AppendHead::LEN, "append")?,
        r.pkg_len as u64,
    )?;
    let end = AppendHead::LEN + h.name_len;
    let name = decode_appender_name(
        prefix(&r.body, end, "append")?
            .get(AppendHead::LEN..)
            .unwrap(),
    )?;
    r.expect_full();
    let mut out = Vec::new();
    AppendHead::encode(&name, h.file_size, &mut out);
    assert_eq!(out, r.body[..end], "{}", r.at());
    r.note_has(&format!(
        "name_len={} append_size={} file={name}",
        h.name_len, h.file_size
    ));
    Ok(())
}

fn req_modify(r: &Rec) -> Result<(), DecodeError> {
    let h = ModifyHead::decode(
        prefix(&r.body, ModifyHead::LEN, "modify")?,
        r.pkg_len as u64,
    )?;
    let end = ModifyHead::LEN + h.name_len;
    let name = decode_appender_name(
        prefix(&r.body, end, "modify")?
            .get(ModifyHead::LEN..)
            .unwrap(),
    )?;
    r.expect_full();
    let mut out = Vec::new();
    ModifyHead::encode(&name, h.offset, h.file_size, &mut out);
    assert_eq!(out, r.body[..end], "{}", r.at());
    r.note_has(&format!(
        "name_len={} offset={} size={} file={name}",
        h.name_len, h.offset, h.file_size
    ));
    Ok(())
}

fn req_truncate(r: &Rec) -> Result<(), DecodeError> {
    let m = TruncateReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "name_len=44 new_size={} file={}",
        m.new_size, m.filename
    ));
    assert_eq!(m.filename.kind, FileKind::Appender);
    Ok(())
}

fn req_regenerate(r: &Rec) -> Result<(), DecodeError> {
    let m = RegenerateReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("appender file={}", m.filename));
    assert_eq!(m.filename.kind, FileKind::Appender);
    Ok(())
}

fn req_set_meta(r: &Rec) -> Result<(), DecodeError> {
    let m = SetMetadataReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    let op = match m.op {
        MetaOp::Overwrite => 'O',
        MetaOp::Merge => 'M',
    };
    let pairs = metadata::decode(&m.meta)?;
    assert_eq!(metadata::encode(&pairs), m.meta);
    r.note_has(&format!(
        "name_len={} meta_len={} op='{op}' group='{}' file={} meta={}",
        m.filename.to_string().len(),
        m.meta.len(),
        m.group,
        m.filename,
        meta_summary(&pairs)
    ));
    Ok(())
}

fn req_download(r: &Rec) -> Result<(), DecodeError> {
    let m = DownloadReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "offset={} bytes={} group='{}' file={}",
        m.offset, m.length, m.group, m.filename
    ));
    Ok(())
}

fn req_list_storage(r: &Rec) -> Result<(), DecodeError> {
    let m = ListStorageReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    match &m.storage_id {
        Some(id) => r.note_has(&format!("group='{}' storage_id='{id}'", m.group)),
        None => r.note_has(&format!("group='{}'", m.group)),
    }
    Ok(())
}

fn req_delete_storage(r: &Rec) -> Result<(), DecodeError> {
    let m = DeleteStorageReq::decode(&r.body)?;
    r.expect_full();
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "group='{}' storage_id='{}'",
        m.group, m.storage_id
    ));
    Ok(())
}

fn req_tracker_cluster(r: &Rec) -> Result<(), DecodeError> {
    let m = TrackerClusterStatReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "filter_by={} is_active={} is_leader={}",
        m.filter_by, m.is_active, m.is_leader
    ));
    Ok(())
}

fn req_filter4(r: &Rec) -> Result<(), DecodeError> {
    let m = FilterReq4::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("filter_by={}", m.0[0]));
    Ok(())
}

fn req_get_my_ip(r: &Rec) -> Result<(), DecodeError> {
    let m = GetMyIpReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group17='{}' port_u32={}", m.group, m.port));
    Ok(())
}

fn req_join(r: &Rec) -> Result<(), DecodeError> {
    let m = JoinReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    assert_eq!(r.body.len(), 161, "JOIN = 145 fixed + one tracker line");
    r.note_has(&format!(
        "{{\"group\": \"{}\", \"port\": {}, \"store_path_count\": {}, \"subdir_count\": {}, \"upload_priority\": {}, \"join_time\": {}, \"up_time\": {}, \"version\": \"{}\", \"init_flag\": {}, \"status\": {}, \"storage_id\": \"{}\", \"current_tracker_ip\": \"{}\", \"tracker_count\": {}",
        m.group,
        m.storage_port,
        m.store_path_count,
        m.subdir_count_per_path,
        m.upload_priority,
        m.join_time,
        m.up_time,
        m.version,
        m.init_flag as u8,
        m.status,
        m.storage_id,
        m.current_tracker_ip,
        m.trackers.len()
    ));
    assert_eq!(m.trackers, ["127.0.0.2:22122"]);
    assert_eq!(m.version, "6.16.1");
    Ok(())
}

fn req_disk_usage(r: &Rec) -> Result<(), DecodeError> {
    let m = DiskUsage::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    for (i, (total, free)) in m.paths.iter().enumerate() {
        r.note_has(&format!("path{i} total_mb={total} free_mb={free}"));
    }
    Ok(())
}

fn req_sync_src(r: &Rec) -> Result<(), DecodeError> {
    let m = GroupIdReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group='{}' dest_id='{}'", m.group, m.storage_id));
    Ok(())
}

fn req_sync_notify(r: &Rec) -> Result<(), DecodeError> {
    let m = SyncInfo::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "src_id='{}' until_timestamp={}",
        m.src_id, m.until_timestamp
    ));
    Ok(())
}

fn req_sync_report(r: &Rec) -> Result<(), DecodeError> {
    let m = SyncReport::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    let items: Vec<String> = m
        .entries
        .iter()
        .map(|(id, ts)| format!("{id} last_synced_ts={ts}"))
        .collect();
    r.note_has(&format!("sync report: {}", items.join(", ")));
    Ok(())
}

fn req_report_status(r: &Rec) -> Result<(), DecodeError> {
    let m = ReportStatusReq::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "group='{}' brief{}",
        m.group,
        brief_summary(&m.brief)
    ));
    Ok(())
}

fn req_report_server_id(r: &Rec) -> Result<(), DecodeError> {
    let m = ReportServerId::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("server_id='{}'", m.id));
    Ok(())
}

/// Compares a re-encoded sync request with the captured bytes, ignoring the
/// garbage upstream leaves after the group's NUL (README disagreement 3).
fn assert_sync_bytes(r: &Rec, ours: &[u8], group_at: usize) {
    let n = ours.len();
    let mut theirs = r.body[..n].to_vec();
    zero_group_padding(&mut theirs, group_at);
    assert_eq!(ours, &theirs[..], "{}", r.at());
}

fn req_sync_file(r: &Rec) -> Result<(), DecodeError> {
    let with_content = r.status != errno::EEXIST;
    let h = SyncFileHead::decode(
        prefix(&r.body, SyncFileHead::LEN, "sync file")?,
        r.pkg_len as u64,
        with_content,
    )?;
    let end = SyncFileHead::LEN + h.name_len;
    let name = decode_sync_name(&prefix(&r.body, end, "sync file")?[SyncFileHead::LEN..])?;
    let mut out = Vec::new();
    h.encode(&name, &mut out);
    assert_sync_bytes(r, &out, 20);
    if !r.truncated {
        assert_eq!(r.body.len() - end, h.file_size as usize, "{}", r.at());
    }
    r.note_has(&format!(
        "name_len={} file_size={} timestamp={} group16={} ('{}'",
        h.name_len,
        h.file_size,
        h.timestamp,
        hex(&r.body[20..36]),
        h.group
    ));
    r.note_has(&format!("file={}", name.as_str()));
    Ok(())
}

fn req_sync_delete(r: &Rec) -> Result<(), DecodeError> {
    let m = SyncDelete::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_sync_bytes(r, &out, 4);
    assert_eq!(out.len(), r.body.len());
    r.note_has(&format!(
        "timestamp={} group='{}' file={}",
        m.timestamp,
        m.group,
        m.filename.as_str()
    ));
    Ok(())
}

fn req_sync_range(r: &Rec) -> Result<(), DecodeError> {
    let h = SyncRangeHead::decode(
        prefix(&r.body, SyncRangeHead::LEN, "sync range")?,
        r.pkg_len as u64,
    )?;
    let end = SyncRangeHead::LEN + h.name_len;
    let name = decode_sync_name(&prefix(&r.body, end, "sync range")?[SyncRangeHead::LEN..])?;
    r.expect_full();
    let mut out = Vec::new();
    h.encode(&name, &mut out);
    assert_sync_bytes(r, &out, 28);
    assert_eq!(r.body.len() - end, h.length as usize);
    r.note_has(&format!(
        "name_len={} start_offset={} length={} timestamp={} group16={} ('{}')",
        h.name_len,
        h.offset,
        h.length,
        h.timestamp,
        hex(&r.body[28..44]),
        h.group
    ));
    r.note_has(&format!("file={} data={} bytes", name.as_str(), h.length));
    Ok(())
}

fn req_sync_truncate(r: &Rec) -> Result<(), DecodeError> {
    let m = SyncTruncate::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), r.body.len());
    assert_sync_bytes(r, &out, 28);
    r.note_has(&format!(
        "name_len={} old_size={} new_size={} timestamp={} group16={} ('{}') file={}",
        m.filename.as_str().len(),
        m.old_size,
        m.new_size,
        m.timestamp,
        hex(&r.body[28..44]),
        m.group,
        m.filename.as_str()
    ));
    Ok(())
}

fn req_sync_rename(r: &Rec) -> Result<(), DecodeError> {
    let m = SyncTwoNames::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), r.body.len());
    assert_sync_bytes(r, &out, 20);
    r.note_has(&format!(
        "new_len={} old_len={} timestamp={} group='{}' new={} old={}",
        m.first.as_str().len(),
        m.second.as_str().len(),
        m.timestamp,
        m.group,
        m.first.as_str(),
        m.second.as_str()
    ));
    // An appender becomes a normal file with the same content.
    assert_eq!(m.first.logic().kind, FileKind::Normal);
    assert_eq!(m.second.logic().kind, FileKind::Appender);
    Ok(())
}

/// Request decoders by command code.
const REQUESTS: &[(u8, ReqDecoder)] = &[
    (t::QUERY_STORE_WITHOUT_GROUP_ONE, req_empty),
    (t::QUERY_STORE_WITHOUT_GROUP_ALL, req_empty),
    (t::QUERY_STORE_WITH_GROUP_ONE, req_group),
    (t::QUERY_STORE_WITH_GROUP_ALL, req_group),
    (t::QUERY_FETCH_ONE, req_file),
    (t::QUERY_UPDATE, req_file),
    (t::QUERY_FETCH_ALL, req_file),
    (t::SERVER_LIST_ONE_GROUP, req_group),
    (t::SERVER_LIST_ALL_GROUPS, req_empty),
    (t::SERVER_LIST_STORAGE, req_list_storage),
    (t::SERVER_DELETE_STORAGE, req_delete_storage),
    (t::SERVER_GET_LEADER, req_empty),
    (t::SERVER_TRACKER_CLUSTER_STAT, req_tracker_cluster),
    (t::SERVER_STORAGE_CLUSTER_STAT, req_filter4),
    (t::SERVER_STORAGE_VOLUMN_STAT, req_filter4),
    (t::STORAGE_GET_MY_IP, req_get_my_ip),
    (t::STORAGE_PARAMETER_REQ, req_empty),
    (t::STORAGE_CHANGELOG_REQ, req_changelog),
    (t::STORAGE_JOIN, req_join),
    (t::STORAGE_BEAT, req_beat),
    (t::STORAGE_REPORT_DISK_USAGE, req_disk_usage),
    (t::STORAGE_SYNC_SRC_REQ, req_sync_src),
    (t::STORAGE_SYNC_DEST_REQ, req_empty),
    (t::STORAGE_SYNC_NOTIFY, req_sync_notify),
    (t::STORAGE_SYNC_REPORT, req_sync_report),
    (t::STORAGE_REPORT_STATUS, req_report_status),
    (cmd::ACTIVE_TEST, req_empty),
    (cmd::QUIT, req_empty),
    (s::UPLOAD_FILE, req_upload),
    (s::UPLOAD_APPENDER_FILE, req_upload),
    (s::UPLOAD_SLAVE_FILE, req_slave),
    (s::APPEND_FILE, req_append),
    (s::MODIFY_FILE, req_modify),
    (s::TRUNCATE_FILE, req_truncate),
    (s::REGENERATE_APPENDER_FILENAME, req_regenerate),
    (s::DELETE_FILE, req_file),
    (s::SET_METADATA, req_set_meta),
    (s::DOWNLOAD_FILE, req_download),
    (s::GET_METADATA, req_file),
    (s::QUERY_FILE_INFO, req_file_info),
    (s::REPORT_SERVER_ID, req_report_server_id),
    (s::SYNC_CREATE_FILE, req_sync_file),
    (s::SYNC_UPDATE_FILE, req_sync_file),
    (s::SYNC_DELETE_FILE, req_sync_delete),
    (s::SYNC_APPEND_FILE, req_sync_range),
    (s::SYNC_MODIFY_FILE, req_sync_range),
    (s::SYNC_TRUNCATE_FILE, req_sync_truncate),
    (s::SYNC_RENAME_FILE, req_sync_rename),
];

// --------------------------------------------------------------- responses

fn resp_empty(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    fdfs_proto::common::expect_empty("reply", &r.body)?;
    r.note_has("ok, empty body");
    Ok(())
}

fn resp_store(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = StoreResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "group='{}' ip='{}' port={} store_path_index={} (40 bytes)",
        m.group, m.server.ip, m.server.port, m.store_path_index
    ));
    Ok(())
}

fn resp_store_all(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = StoreAllResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "group='{}' {} store_path_index={}",
        m.group,
        servers_summary(&m.servers),
        m.store_path_index
    ));
    Ok(())
}

fn resp_fetch(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    let m = FetchResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "group='{}' {}",
        m.group,
        servers_summary(&m.servers)
    ));
    let q = FileReq::decode(&req.body).expect("request decoded before");
    assert_eq!(m.group, q.group, "{}", r.at());
    if req.cmd == t::QUERY_FETCH_ALL && q.filename.kind == FileKind::Appender {
        // An appender file is only on its source server.
        assert_eq!(m.servers.len(), 1);
    }
    Ok(())
}

fn resp_file_id(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    let m = FileIdResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("group='{}' file={}", m.group, m.filename));
    check_id_note(r, &m.filename);
    let name = &m.filename;
    match req.cmd {
        s::UPLOAD_FILE => {
            let h = UploadHead::decode(&req.body[..UploadHead::LEN], req.pkg_len as u64)?;
            assert_eq!(name.kind, FileKind::Normal);
            assert_eq!(name.info.file_size(), Some(h.file_size));
            assert_eq!(name.ext(), h.ext);
            let crc = crc32fast::hash(&req.body[UploadHead::LEN..]);
            assert_eq!(name.info.crc32, crc, "{}: crc of the content", r.at());
            if r.file == "upload_file" {
                assert_eq!(
                    name.info.source,
                    SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 11))
                );
                assert_eq!(name.info.file_size(), Some(21));
                assert_eq!(name.info.crc32, 0xe03d3171);
            }
        }
        s::UPLOAD_APPENDER_FILE => {
            assert_eq!(name.kind, FileKind::Appender);
            assert!(name.info.is_appender());
            assert_eq!(name.info.file_size(), None);
        }
        s::UPLOAD_SLAVE_FILE => {
            let q = decode_slave(req)?;
            let want = q.master.slave(&q.prefix, &q.ext).expect("slave name");
            assert_eq!(
                name,
                &want,
                "{}: slave name derived from the master",
                r.at()
            );
            assert_eq!(name.kind, FileKind::Slave);
        }
        s::REGENERATE_APPENDER_FILENAME => {
            let q = RegenerateReq::decode(&req.body)?;
            assert_eq!(name.kind, FileKind::Normal);
            assert_eq!(name.info.source, q.filename.info.source);
            assert_eq!(name.info.crc32, q.filename.info.crc32);
            assert_eq!(name.ext(), q.filename.ext());
            assert_eq!(
                name.name[name.name.len() - 7..],
                q.filename.name[q.filename.name.len() - 7..]
            );
        }
        c => panic!("{}: file id reply to cmd {c}", r.at()),
    }
    Ok(())
}

fn resp_rename(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    if r.body.is_empty() {
        return Ok(());
    }
    // README disagreement 2: upstream echoes the request body.
    r.note_has("echoes the 124-byte request body");
    assert_eq!(r.body, req.body, "{}", r.at());
    assert_eq!(
        SyncTwoNames::decode(&r.body)?,
        SyncTwoNames::decode(&req.body)?
    );
    Ok(())
}

fn resp_download(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    let q = DownloadReq::decode(&req.body)?;
    r.note_has(&format!("file content, {} bytes", r.pkg_len));
    if q.filename.kind == FileKind::Normal {
        let size = q.filename.info.file_size().unwrap();
        let left = size - q.offset;
        let want = if q.length == 0 {
            left
        } else {
            q.length.min(left)
        };
        assert_eq!(r.pkg_len as u64, want, "{}: download range", r.at());
    }
    if !r.truncated && r.file.starts_with("download") && q.offset == 0 {
        assert_eq!(crc32fast::hash(&r.body), q.filename.info.crc32);
    }
    Ok(())
}

fn resp_metadata(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let pairs = metadata::decode(&r.body)?;
    assert_eq!(metadata::encode(&pairs), r.body, "{}", r.at());
    assert_eq!(metadata::normalize(pairs.clone()), pairs, "sorted by name");
    r.note_has(&format!("metadata {}", meta_summary(&pairs)));
    Ok(())
}

fn resp_file_info(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    let m = FileInfoResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "file_size={} create_ts={} crc32(sign-extended i64)={} -> {:08x} source_ip='{}' (40 bytes)",
        m.file_size,
        m.create_timestamp,
        hex(&r.body[16..24]),
        m.crc32,
        m.source_ip
    ));
    // Sign extension: the high half is all ones exactly when bit 31 is set.
    let high = &r.body[16..20];
    if m.crc32 & 0x8000_0000 != 0 {
        assert_eq!(high, [0xff; 4]);
    } else {
        assert_eq!(high, [0; 4]);
    }
    let q = FileReq::decode(&req.body)?;
    if req.status & file_info_flags::NO_CRC != 0 && q.filename.kind == FileKind::Appender {
        assert_eq!(m.crc32, 0, "{}: no CRC asked", r.at());
    }
    Ok(())
}

fn resp_my_ip(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let text = std::str::from_utf8(&r.body).expect("ip text");
    let ip: Ipv4Addr = text.parse().expect("an IPv4 address");
    assert_eq!(ip.to_string().as_bytes(), r.body);
    r.note_has(&format!("text '{ip}'"));
    Ok(())
}

fn resp_params(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let params = decode_params(&r.body)?;
    assert_eq!(params.len(), 26, "{}: 26 parameters", r.at());
    assert_eq!(encode_params(&params), r.body, "{}", r.at());
    let items: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}; ")).collect();
    r.note_has(&format!(
        "ini text, {} bytes: {}",
        r.body.len(),
        items.concat()
    ));
    assert!(params.contains(&("use_storage_id".into(), "0".into())));
    Ok(())
}

fn resp_raw(_r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    // CHANGELOG_REQ: the changelog bytes, not parsed by the storage.
    Ok(())
}

fn resp_join(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = JoinResp::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!(
        "my_status={} src_id='{}' (17 bytes)",
        m.status, m.src_id
    ));
    Ok(())
}

fn resp_change_flags(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = ChangeFlags::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("flags={:#04x}", m.flags()));
    let briefs: Vec<&StorageBrief> = m
        .leader
        .iter()
        .chain(m.trunk_server.iter())
        .chain(m.group_servers.iter().flatten())
        .collect();
    for (i, b) in briefs.iter().enumerate() {
        r.note_has(&format!("brief[{i}]{}", brief_summary(b)));
    }
    if r.file == "storage_join_and_heartbeat" && r.body.len() > 1 {
        assert_eq!(m.flags(), 0x05);
        assert_eq!(r.body.len(), 202);
        assert_eq!(briefs.len(), 3);
    }
    Ok(())
}

fn resp_sync_src(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    match SyncInfo::decode_optional(&r.body)? {
        None => r.note_has("no source (empty)"),
        Some(m) => {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(out, r.body, "{}", r.at());
            r.note_has(&format!(
                "src_id='{}' until_timestamp={} (24 bytes)",
                m.src_id, m.until_timestamp
            ));
        }
    }
    Ok(())
}

fn resp_sync_dest(r: &Rec, req: &Rec) -> Result<(), DecodeError> {
    if r.body.is_empty() {
        return resp_sync_src(r, req);
    }
    let m = SyncInfo::decode(&r.body)?;
    resp_sync_src(r, req)?;
    assert!(!m.src_id.is_empty());
    Ok(())
}

fn resp_groups(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let list = GroupStat::decode_list(&r.body)?;
    assert!(!list.is_empty());
    assert_eq!(r.body.len(), 113 * list.len());
    let mut out = Vec::new();
    for g in &list {
        g.encode(&mut out);
        r.note_has(&format!(
            "{}[total_mb={} free_mb={} reserved_mb={} trunk_free_mb={} count={} port={} readable={} writable={} cur_write={} paths={} subdirs={} trunk_fid={}]",
            g.group_name, g.total_mb, g.free_mb, g.reserved_mb, g.trunk_free_mb, g.storage_count,
            g.storage_port, g.readable_server_count, g.writable_server_count,
            g.current_write_server, g.store_path_count, g.subdir_count_per_path,
            g.current_trunk_file_id
        ));
    }
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("{} x GroupStat(113)", list.len()));
    Ok(())
}

fn resp_storages(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let list = StorageStat::decode_list(&r.body)?;
    assert!(!list.is_empty());
    assert_eq!(r.body.len(), 487 * list.len());
    let mut out = Vec::new();
    for m in &list {
        m.encode(&mut out);
        r.note_has(&format!(
            "{{status={} rw_mode={} id='{}' ip='{}' src_id='{}' version='{}' join_time={} up_time={} total_mb={} free_mb={} reserved_mb={} upload_priority={} store_path_count={} subdir_count={} current_write_path={} storage_port={} if_trunk={}}}",
            m.status, m.rw_mode, m.id, m.ip_addr, m.src_id, m.version, m.join_time, m.up_time,
            m.total_mb, m.free_mb, m.reserved_mb, m.upload_priority, m.store_path_count,
            m.subdir_count_per_path, m.current_write_path, m.storage_port,
            m.if_trunk_server as u8
        ));
    }
    assert_eq!(out, r.body, "{}", r.at());
    r.note_has(&format!("{} x StorageStat(487)", list.len()));
    Ok(())
}

fn resp_leader(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let text = std::str::from_utf8(&r.body).expect("leader text");
    let addr: SocketAddrV4 = text.parse().expect("ip:port");
    assert_eq!(addr.to_string().as_bytes(), r.body);
    r.note_has(&format!("leader='{addr}'"));
    Ok(())
}

fn resp_tracker_cluster(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let list = TrackerInfo::decode_list(&r.body)?;
    let mut out = Vec::new();
    TrackerInfo::encode_list(&list, &mut out);
    // Upstream leaves buffer garbage after the host's NUL (not in the
    // README's list, seen in cluster_stat#3); we zero-fill.
    let mut theirs = r.body.clone();
    for i in 0..list.len() {
        zero_after_nul(&mut theirs, 1 + i * TrackerInfo::LEN, 52);
    }
    assert_eq!(out, theirs, "{}", r.at());
    for m in &list {
        r.note_has(&format!(
            "{} leader={} active={} conns=({}, {}, {}) version='{}' up_time={} last_hb={}",
            m.host,
            m.is_leader as u8,
            m.is_active as u8,
            m.connections[0],
            m.connections[1],
            m.connections[2],
            m.version,
            m.up_time,
            m.last_heartbeat
        ));
    }
    r.note_has(&format!("count={} record=90 bytes", list.len()));
    Ok(())
}

fn resp_storage_cluster(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = StorageClusterStat::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    // Garbage after the NUL of id and host, as in the 96 reply.
    let mut theirs = r.body.clone();
    for i in 0..m.storages.len() {
        let at = 6 + i * StorageClusterStat::RECORD_LEN;
        zero_after_nul(&mut theirs, at, 16);
        zero_after_nul(&mut theirs, at + 16, 52);
    }
    assert_eq!(out, theirs, "{}", r.at());
    r.note_has(&format!(
        "use_storage_id={} use_trunk={} count={} record=106 bytes",
        m.use_storage_id as u8,
        m.use_trunk_file as u8,
        m.storages.len()
    ));
    for x in &m.storages {
        r.note_has(&format!(
            "{} {} trunk={} status={} conns=({}, {}, {}) version='{}' up={} hb={}",
            x.id,
            x.host,
            x.is_trunk_server as u8,
            x.status,
            x.connections[0],
            x.connections[1],
            x.connections[2],
            x.version,
            x.up_time,
            x.last_heartbeat
        ));
    }
    Ok(())
}

fn resp_volume(r: &Rec, _req: &Rec) -> Result<(), DecodeError> {
    let m = VolumeStat::decode(&r.body)?;
    let mut out = Vec::new();
    m.encode(&mut out);
    // Garbage after the group name's NUL, as in the 96/97 replies.
    let mut theirs = r.body.clone();
    for i in 0..m.volumes.len() {
        zero_after_nul(&mut theirs, 5 + i * VolumeStat::RECORD_LEN, 17);
    }
    assert_eq!(out, theirs, "{}", r.at());
    r.note_has(&format!(
        "use_trunk={} count={} record=59 bytes",
        m.use_trunk_file as u8,
        m.volumes.len()
    ));
    for v in &m.volumes {
        r.note_has(&format!(
            "{} total={} free={} reserved={} avail={} trunk_free={} disk_ok={} trunk_ok={}",
            v.group_name,
            v.total_mb,
            v.free_mb,
            v.reserved_mb,
            v.avail_mb,
            v.trunk_free_mb,
            v.is_disk_available as u8,
            v.is_trunk_available as u8
        ));
    }
    Ok(())
}

/// Success-reply decoders by the command of the request they answer.
const RESPONSES: &[(u8, RespDecoder)] = &[
    (t::QUERY_STORE_WITHOUT_GROUP_ONE, resp_store),
    (t::QUERY_STORE_WITH_GROUP_ONE, resp_store),
    (t::QUERY_STORE_WITHOUT_GROUP_ALL, resp_store_all),
    (t::QUERY_STORE_WITH_GROUP_ALL, resp_store_all),
    (t::QUERY_FETCH_ONE, resp_fetch),
    (t::QUERY_UPDATE, resp_fetch),
    (t::QUERY_FETCH_ALL, resp_fetch),
    (t::SERVER_LIST_ONE_GROUP, resp_groups),
    (t::SERVER_LIST_ALL_GROUPS, resp_groups),
    (t::SERVER_LIST_STORAGE, resp_storages),
    (t::SERVER_DELETE_STORAGE, resp_empty),
    (t::SERVER_GET_LEADER, resp_leader),
    (t::SERVER_TRACKER_CLUSTER_STAT, resp_tracker_cluster),
    (t::SERVER_STORAGE_CLUSTER_STAT, resp_storage_cluster),
    (t::SERVER_STORAGE_VOLUMN_STAT, resp_volume),
    (t::STORAGE_GET_MY_IP, resp_my_ip),
    (t::STORAGE_PARAMETER_REQ, resp_params),
    (t::STORAGE_CHANGELOG_REQ, resp_raw),
    (t::STORAGE_JOIN, resp_join),
    (t::STORAGE_BEAT, resp_change_flags),
    (t::STORAGE_REPORT_DISK_USAGE, resp_change_flags),
    (t::STORAGE_SYNC_REPORT, resp_change_flags),
    (t::STORAGE_SYNC_SRC_REQ, resp_sync_src),
    (t::STORAGE_SYNC_DEST_REQ, resp_sync_dest),
    (t::STORAGE_SYNC_NOTIFY, resp_empty),
    (t::STORAGE_REPORT_STATUS, resp_empty),
    (cmd::ACTIVE_TEST, resp_empty),
    (s::UPLOAD_FILE, resp_file_id),
    (s::UPLOAD_APPENDER_FILE, resp_file_id),
    (s::UPLOAD_SLAVE_FILE, resp_file_id),
    (s::REGENERATE_APPENDER_FILENAME, resp_file_id),
    (s::APPEND_FILE, resp_empty),
    (s::MODIFY_FILE, resp_empty),
    (s::TRUNCATE_FILE, resp_empty),
    (s::DELETE_FILE, resp_empty),
    (s::SET_METADATA, resp_empty),
    (s::DOWNLOAD_FILE, resp_download),
    (s::GET_METADATA, resp_metadata),
    (s::QUERY_FILE_INFO, resp_file_info),
    (s::REPORT_SERVER_ID, resp_empty),
    (s::SYNC_CREATE_FILE, resp_empty),
    (s::SYNC_UPDATE_FILE, resp_empty),
    (s::SYNC_DELETE_FILE, resp_empty),
    (s::SYNC_APPEND_FILE, resp_empty),
    (s::SYNC_MODIFY_FILE, resp_empty),
    (s::SYNC_TRUNCATE_FILE, resp_empty),
    (s::SYNC_RENAME_FILE, resp_rename),
];

fn find<T: Copy>(table: &[(u8, T)], c: u8) -> Option<T> {
    table.iter().find(|(k, _)| *k == c).map(|(_, f)| *f)
}

// ------------------------------------------------------- bad_requests cases

/// What our codec must say about each bad_requests case.
#[derive(Clone, Copy)]
enum Expect {
    /// Decodes (upstream answered normally or with a lookup error).
    Ok,
    /// The body decoder refuses it.
    Err(fn(&DecodeError) -> bool),
    /// The header is refused by `Header::decode` with the limit.
    HeaderErr(fn(&DecodeError) -> bool),
    /// The capture holds only part of the announced body.
    Incomplete,
    /// A command code no decoder handles.
    Unknown,
}

fn bad_expectation(label: &str) -> Expect {
    use Expect::*;
    let bad_len: fn(&DecodeError) -> bool = |e| matches!(e, DecodeError::BadLength { .. });
    match label {
        "T1" | "S1" => Unknown,
        "T2" | "T3" | "T8" | "T11" | "S9" | "S11" => Err(bad_len),
        "S2" => Err(|e| {
            matches!(
                e,
                DecodeError::BadLength { .. }
                    | DecodeError::InvalidField {
                        field: "filename",
                        ..
                    }
            )
        }),
        "S5" => Err(|e| {
            matches!(
                e,
                DecodeError::InvalidField {
                    field: "upload",
                    ..
                }
            )
        }),
        "S10" => Err(|e| {
            matches!(
                e,
                DecodeError::InvalidField {
                    field: "op flag",
                    ..
                }
            )
        }),
        "T5" | "S7" => HeaderErr(|e| *e == DecodeError::NegativeLength(-1)),
        "T6" | "S13" => HeaderErr(|e| {
            *e == DecodeError::TooLarge {
                len: 1 << 30,
                limit: LIMIT,
            }
        }),
        "T7" | "S6" => Incomplete,
        "T4" | "T9" | "T10" | "T12" | "T13" | "T14" | "T15" | "S3" | "S4" | "S8" | "S12"
        | "S14" => Ok,
        other => panic!("unknown bad_requests case {other}"),
    }
}

// ------------------------------------------------------------------- tests

/// Frame-level checks for one record; returns false when the body is not
/// available in full (so only heads can be decoded).
fn check_frame(r: &Rec) {
    let header = Header::decode(&r.header, LIMIT);
    if r.pkg_len < 0 || r.pkg_len as u64 > LIMIT {
        assert!(header.is_err(), "{}: header accepted", r.at());
        return;
    }
    let h = header.unwrap_or_else(|e| panic!("{}: {e}", r.at()));
    assert_eq!(
        (h.pkg_len as i64, h.cmd, h.status),
        (r.pkg_len, r.cmd, r.status)
    );
    assert_eq!(h.encode(), r.header, "{}: header re-encode", r.at());
    let mut buf = r.header.to_vec();
    buf.extend_from_slice(&r.body);
    if r.truncated || r.incomplete {
        assert_eq!(
            Frame::parse(&buf, LIMIT),
            Ok(None),
            "{}: partial body",
            r.at()
        );
        return;
    }
    assert_eq!(r.body.len() as i64, r.pkg_len);
    let (f, used) = Frame::parse(&buf, LIMIT)
        .unwrap_or_else(|e| panic!("{}: {e}", r.at()))
        .expect("whole frame");
    assert_eq!((f.header, f.body, used), (h, &r.body[..], buf.len()));
    if !buf.is_empty() {
        assert_eq!(Frame::parse(&buf[..buf.len() - 1], LIMIT), Ok(None));
    }
    assert_eq!(encode_frame(r.cmd, r.status, &r.body), buf);
}

#[test]
fn every_captured_message_decodes_and_reencodes() {
    let all = load();
    let mut seen_req: BTreeSet<u8> = BTreeSet::new();
    let mut seen_resp: BTreeSet<u8> = BTreeSet::new();
    let mut bad_cases: BTreeSet<String> = BTreeSet::new();
    let mut count = 0usize;
    for (file, recs) in &all {
        let mut pending: HashMap<&str, VecDeque<&Rec>> = HashMap::new();
        for r in recs {
            count += 1;
            check_frame(r);
            if r.cmd != cmd::RESP {
                // Follow-up ACTIVE_TESTs of a bad_requests case are valid.
                let follow_up = r.cmd == cmd::ACTIVE_TEST && r.body.is_empty() && !r.incomplete;
                let expect = if file == "bad_requests" {
                    let label = r.label().expect("bad_requests label").to_owned();
                    bad_cases.insert(label.clone());
                    if follow_up {
                        Expect::Ok
                    } else {
                        bad_expectation(&label)
                    }
                } else {
                    Expect::Ok
                };
                let decoder = find(REQUESTS, r.cmd);
                match expect {
                    Expect::Unknown => {
                        assert!(decoder.is_none(), "{}", r.at());
                        assert_eq!(cmd::name(r.cmd), "UNKNOWN");
                        pending.entry(&r.conn).or_default().push_back(r);
                        continue;
                    }
                    Expect::HeaderErr(ok) => {
                        let e = Header::decode(&r.header, LIMIT).unwrap_err();
                        assert!(ok(&e), "{}: wrong header error {e:?}", r.at());
                        continue;
                    }
                    Expect::Incomplete => {
                        // Whatever arrived is not a valid body either.
                        let f = decoder.expect("decoder");
                        assert!(f(r).is_err(), "{}: partial body decoded", r.at());
                        continue;
                    }
                    _ => {}
                }
                let f = decoder
                    .unwrap_or_else(|| panic!("{}: no request decoder for cmd {}", r.at(), r.cmd));
                match (f(r), expect) {
                    (Ok(()), Expect::Ok) => {
                        seen_req.insert(r.cmd);
                    }
                    (Err(e), Expect::Err(ok)) => {
                        assert!(ok(&e), "{}: wrong error {e:?}", r.at());
                    }
                    (Ok(()), _) => panic!("{}: invalid request decoded", r.at()),
                    (Err(e), _) => panic!("{}: {e}\nnote: {}", r.at(), r.note),
                }
                if r.cmd != cmd::QUIT {
                    pending.entry(&r.conn).or_default().push_back(r);
                }
                continue;
            }
            // A response answers the oldest unanswered request on its
            // connection (requests may be pipelined).
            let req = pending
                .get_mut(r.conn.as_str())
                .and_then(|q| q.pop_front())
                .unwrap_or_else(|| panic!("{}: response without request", r.at()));
            assert_eq!((&req.src, &req.dst), (&r.dst, &r.src), "{}", r.at());
            let name = cmd::name(req.cmd);
            let name = if name == "UNKNOWN" {
                format!("UNKNOWN_{}", req.cmd)
            } else {
                name.to_owned()
            };
            r.note_has(&format!("RESP({name})"));
            if r.status != 0 {
                assert_eq!(r.pkg_len, 0, "{}: error replies are header only", r.at());
                let (ename, _) = errno::describe(r.status);
                r.note_has(&format!("error status {} ({ename})", r.status));
                continue;
            }
            let f = find(RESPONSES, req.cmd).unwrap_or_else(|| {
                panic!(
                    "{}: no response decoder for request cmd {}",
                    r.at(),
                    req.cmd
                )
            });
            if r.truncated {
                // Only DOWNLOAD replies are that large; their body is raw.
                assert_eq!(req.cmd, s::DOWNLOAD_FILE, "{}", r.at());
            }
            f(r, req).unwrap_or_else(|e| panic!("{}: {e}\nnote: {}", r.at(), r.note));
            seen_resp.insert(req.cmd);
        }
    }
    assert!(count > 950, "only {count} records");
    for c in REQUIRED {
        assert!(seen_req.contains(&c), "no request {c} decoded");
        assert!(seen_resp.contains(&c), "no success reply to {c} decoded");
    }
    let want: BTreeSet<String> = (1..=15)
        .map(|i| format!("T{i}"))
        .chain((1..=14).map(|i| format!("S{i}")))
        .collect();
    assert_eq!(bad_cases, want, "bad_requests cases");
}

/// Several frames in one buffer (as a pipelining peer sends them) split
/// back into the same frames.
#[test]
fn frame_parse_splits_concatenated_streams() {
    let all = load();
    let mut streams: BTreeMap<(String, String, String), Vec<&Rec>> = BTreeMap::new();
    for (file, recs) in &all {
        for r in recs.iter().filter(|r| !r.truncated && !r.incomplete) {
            streams
                .entry((file.clone(), r.conn.clone(), r.from.clone()))
                .or_default()
                .push(r);
        }
    }
    let mut frames = 0;
    for recs in streams.values() {
        let mut buf = Vec::new();
        for r in recs {
            buf.extend_from_slice(&r.header);
            buf.extend_from_slice(&r.body);
        }
        let mut at = 0;
        for r in recs {
            let (f, used) = Frame::parse(&buf[at..], LIMIT).unwrap().expect("frame");
            assert_eq!((f.header.cmd, f.body), (r.cmd, &r.body[..]), "{}", r.at());
            at += used;
            frames += 1;
        }
        assert_eq!(at, buf.len());
    }
    assert!(frames > 900, "{frames} frames");
}

// -------------------------------------------------------------------- disk

fn binlog_lines(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{DISK}/{name}")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        // The new-server sample ends with op counts, not binlog lines.
        if line.starts_with("## op counts") {
            break;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        out.push(line.to_owned());
    }
    out
}

#[test]
fn golden_binlog_lines_decode_and_reencode() {
    let mut ops: BTreeMap<char, usize> = BTreeMap::new();
    for (file, min) in [
        ("storage_g1a_binlog.000.first50.txt", 50),
        ("storage_binlog_ops_sync_scenario.txt", 26),
        ("storage_new_server_binlog_after_full_sync.txt", 40),
    ] {
        let lines = binlog_lines(file);
        assert!(lines.len() >= min, "{file}: {} lines", lines.len());
        for line in lines {
            let r = BinlogRecord::decode(&line).unwrap_or_else(|e| panic!("{file}: {line}: {e}"));
            assert_eq!(r.encode(), format!("{line}\n"), "{file}");
            assert_eq!(BinlogRecord::decode(&r.encode()).unwrap(), r);
            let letter = line.split(' ').nth(1).unwrap().chars().next().unwrap();
            assert_eq!(r.is_source, letter.is_ascii_uppercase());
            *ops.entry(letter).or_default() += 1;
        }
    }
    // Every op form of the sync scenario, source and replica.
    for c in "CUADMTRcuadmtr".chars() {
        assert!(ops.contains_key(&c), "no binlog op {c}");
    }
}

#[test]
fn golden_metadata_sidecar_decodes_sorted_and_reencodes() {
    let path = format!("{DISK}/metadata_file_example.txt-m");
    let bytes = std::fs::read(path).unwrap();
    let pairs = metadata::decode(&bytes).unwrap();
    let names: Vec<&[u8]> = pairs.iter().map(|p| &p.name[..]).collect();
    assert_eq!(
        names,
        [&b"author"[..], b"color", b"height", b"width"],
        "sorted by name"
    );
    assert_eq!(pairs[0].value, b"alice");
    assert_eq!(pairs[3].value, b"1024");
    assert_eq!(metadata::normalize(pairs.clone()), pairs);
    assert_eq!(metadata::encode(&pairs), bytes);
    // The sidecar is what GET_METADATA returned on the wire.
    let all = load();
    let got = all["get_metadata"]
        .iter()
        .find(|r| r.cmd == cmd::RESP && r.pkg_len > 0 && r.note.contains("RESP(GET_METADATA)"))
        .unwrap();
    assert_eq!(got.body, bytes);
}

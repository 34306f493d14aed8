//! Wire input: `Frame::parse` with a limit, then every decoder that can
//! see a body of the frame's command, plus the text parsers (file ids,
//! binlog lines, metadata) on the raw bytes. Any panic is a bug.

#![no_main]

use fdfs_proto::binlog::BinlogRecord;
use fdfs_proto::cmd::{self, storage as s, tracker as t};
use fdfs_proto::server::*;
use fdfs_proto::storage::*;
use fdfs_proto::sync::*;
use fdfs_proto::tracker::*;
use fdfs_proto::{errno, metadata, FileId, Frame, LogicName, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// Limits a server might use: tiny, the storage default, unlimited.
const LIMITS: [u64; 3] = [64, 1 << 20, u64::MAX];

fn head(b: &[u8], n: usize) -> &[u8] {
    b.get(..n).unwrap_or(b)
}

fn tail(b: &[u8], n: usize) -> &[u8] {
    b.get(n..).unwrap_or(&[])
}

/// A request body of command `c` (status byte `status`, announced length
/// `pkg_len`), decoded the way a server would.
fn request(c: u8, status: u8, b: &[u8], pkg_len: u64) {
    match c {
        t::QUERY_STORE_WITH_GROUP_ONE
        | t::QUERY_STORE_WITH_GROUP_ALL
        | t::SERVER_LIST_ONE_GROUP
        | t::SERVER_DELETE_GROUP => {
            let _ = GroupReq::decode(b);
        }
        t::QUERY_FETCH_ONE | t::QUERY_UPDATE | t::QUERY_FETCH_ALL => {
            let _ = FileReq::decode(b);
        }
        s::DELETE_FILE | s::GET_METADATA | s::QUERY_FILE_INFO => {
            let _ = FileReq::decode(b);
        }
        t::SERVER_LIST_STORAGE => {
            let _ = ListStorageReq::decode(b);
        }
        t::SERVER_DELETE_STORAGE => {
            let _ = DeleteStorageReq::decode(b);
        }
        t::STORAGE_GET_STATUS | t::STORAGE_GET_SERVER_ID => {
            let _ = GroupAddrReq::decode(b);
        }
        t::SERVER_TRACKER_CLUSTER_STAT => {
            let _ = TrackerClusterStatReq::decode(b);
        }
        t::SERVER_STORAGE_CLUSTER_STAT | t::SERVER_STORAGE_VOLUMN_STAT => {
            let _ = FilterReq4::decode(b);
        }
        t::STORAGE_FETCH_STORAGE_IDS => {
            let _ = FetchStorageIdsReq::decode(b);
        }
        t::STORAGE_BEAT => {
            let _ = StatBuff::decode(b);
        }
        t::STORAGE_GET_MY_IP => {
            let _ = GetMyIpReq::decode(b);
        }
        t::STORAGE_JOIN => {
            let _ = JoinReq::decode(b);
        }
        t::STORAGE_REPORT_DISK_USAGE => {
            let _ = DiskUsage::decode(b);
        }
        t::STORAGE_SYNC_REPORT => {
            let _ = SyncReport::decode(b);
        }
        t::STORAGE_REPORT_STATUS => {
            let _ = ReportStatusReq::decode(b);
        }
        t::STORAGE_SYNC_SRC_REQ | t::STORAGE_CHANGELOG_REQ => {
            let _ = GroupIdReq::decode(b);
        }
        t::STORAGE_SYNC_NOTIFY => {
            let _ = SyncInfo::decode(b);
        }
        t::TRACKER_JOIN_LEADER => {
            let _ = JoinLeaderReq::decode(b);
        }
        s::UPLOAD_FILE | s::UPLOAD_APPENDER_FILE => {
            let _ = UploadHead::decode(head(b, UploadHead::LEN), pkg_len);
        }
        s::UPLOAD_SLAVE_FILE => {
            if let Ok(h) = SlaveUploadHead::decode(head(b, SlaveUploadHead::LEN), pkg_len) {
                let rest = tail(b, SlaveUploadHead::LEN);
                let _ = SlaveUpload::decode(h.clone(), head(rest, h.master_len));
            }
        }
        s::APPEND_FILE => {
            if let Ok(h) = AppendHead::decode(head(b, AppendHead::LEN), pkg_len) {
                let _ = decode_appender_name(head(tail(b, AppendHead::LEN), h.name_len));
            }
        }
        s::MODIFY_FILE => {
            if let Ok(h) = ModifyHead::decode(head(b, ModifyHead::LEN), pkg_len) {
                let _ = decode_appender_name(head(tail(b, ModifyHead::LEN), h.name_len));
            }
        }
        s::TRUNCATE_FILE => {
            let _ = TruncateReq::decode(b);
        }
        s::REGENERATE_APPENDER_FILENAME => {
            let _ = RegenerateReq::decode(b);
        }
        s::DOWNLOAD_FILE => {
            let _ = DownloadReq::decode(b);
        }
        s::SET_METADATA => {
            if let Ok(m) = SetMetadataReq::decode(b) {
                let _ = metadata::decode(&m.meta);
            }
        }
        s::REPORT_SERVER_ID => {
            let _ = ReportServerId::decode(b);
        }
        s::SYNC_CREATE_FILE | s::SYNC_UPDATE_FILE => {
            let with_content = status != errno::EEXIST;
            if let Ok(h) = SyncFileHead::decode(head(b, SyncFileHead::LEN), pkg_len, with_content) {
                let _ = decode_sync_name(head(tail(b, SyncFileHead::LEN), h.name_len));
            }
        }
        s::SYNC_DELETE_FILE => {
            let _ = SyncDelete::decode(b);
        }
        s::SYNC_APPEND_FILE | s::SYNC_MODIFY_FILE => {
            if let Ok(h) = SyncRangeHead::decode(head(b, SyncRangeHead::LEN), pkg_len) {
                let _ = decode_sync_name(head(tail(b, SyncRangeHead::LEN), h.name_len));
            }
        }
        s::SYNC_TRUNCATE_FILE => {
            let _ = SyncTruncate::decode(b);
        }
        s::SYNC_CREATE_LINK | s::SYNC_RENAME_FILE => {
            let _ = SyncTwoNames::decode(b);
        }
        cmd::RESP => response(b),
        _ => {
            let _ = fdfs_proto::common::expect_empty("request", b);
        }
    }
}

/// A reply body: the command it answers is not in the frame, so try
/// every reply decoder.
fn response(b: &[u8]) {
    let _ = StoreResp::decode(b);
    let _ = StoreAllResp::decode(b);
    let _ = FetchResp::decode(b);
    let _ = GroupStat::decode_list(b);
    let _ = StorageStat::decode_list(b);
    let _ = decode_params(b);
    let _ = TrackerInfo::decode_list(b);
    let _ = StorageClusterStat::decode(b);
    let _ = VolumeStat::decode(b);
    let _ = FetchStorageIdsResp::decode(b);
    let _ = FileIdResp::decode(b);
    let _ = FileInfoResp::decode(b);
    let _ = StorageBrief::decode_list(b);
    let _ = SyncInfo::decode_optional(b);
    let _ = ChangeFlags::decode(b);
    let _ = JoinResp::decode(b);
    let _ = TrackerStatus::decode(b);
    let _ = metadata::decode(b);
}

fuzz_target!(|data: &[u8]| {
    for limit in LIMITS {
        match Frame::parse(data, limit) {
            Ok(Some((f, used))) => {
                assert_eq!(used, HEADER_LEN + f.body.len());
                assert!(f.header.pkg_len <= limit);
                request(f.header.cmd, f.header.status, f.body, f.header.pkg_len);
            }
            Ok(None) | Err(_) => {}
        }
    }
    // The rest of the input as a body of the header's command, whatever
    // length the header announced (reaches the decoders without the fuzzer
    // having to find a matching length first).
    if data.len() >= HEADER_LEN {
        let body = &data[HEADER_LEN..];
        request(data[8], data[9], body, body.len() as u64);
    }
    let text = String::from_utf8_lossy(data);
    let _ = LogicName::parse(&text);
    let _ = FileId::parse(&text);
    let _ = BinlogRecord::decode(&text);
    let _ = metadata::decode(data);
});

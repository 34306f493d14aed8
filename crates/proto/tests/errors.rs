//! Error values: each way a frame or body can be wrong yields the variant
//! (and field name) a server logs and answers with, never a panic.

use fdfs_proto::server::{DiskUsage, JoinReq, JoinResp};
use fdfs_proto::storage::{
    AppendHead, DownloadReq, FileInfoResp, ModifyHead, SetMetadataReq, SlaveUploadHead,
    TruncateReq, UploadHead,
};
use fdfs_proto::sync::{SyncDelete, SyncTruncate};
use fdfs_proto::tracker::{FileReq, GroupReq, ListStorageReq, StoreResp};
use fdfs_proto::{encode_frame, DecodeError, Frame, Header};

const NAME: &str = "M00/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MXE119.txt";

fn group16(s: &[u8]) -> Vec<u8> {
    let mut g = s.to_vec();
    g.resize(16, 0);
    g
}

fn field(e: Result<impl std::fmt::Debug, DecodeError>) -> &'static str {
    match e {
        Err(DecodeError::InvalidField { field, .. }) => field,
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

fn bad_len<T: std::fmt::Debug>(e: Result<T, DecodeError>, what: &str, got: usize) {
    match e {
        Err(DecodeError::BadLength {
            what: w, got: g, ..
        }) => {
            assert_eq!((w, g), (what, got));
        }
        other => panic!("expected BadLength for {what}, got {other:?}"),
    }
}

#[test]
fn frame_longer_than_the_limit_is_too_large() {
    let limit = 1024;
    let over = Header::new(11, 0, limit + 1).encode();
    assert_eq!(
        Frame::parse(&over, limit),
        Err(DecodeError::TooLarge {
            len: limit + 1,
            limit
        })
    );
    // The limit is checked on the header alone: no body bytes needed.
    let at = Header::new(11, 0, limit).encode();
    assert_eq!(Frame::parse(&at, limit), Ok(None));
    let mut whole = at.to_vec();
    whole.resize(10 + limit as usize, 7);
    let (f, used) = Frame::parse(&whole, limit).unwrap().unwrap();
    assert_eq!((f.body.len(), used), (limit as usize, whole.len()));
    // 1 GiB announced, as in bad_requests T6/S13.
    let huge = Header::new(91, 0, 1 << 30).encode();
    assert!(matches!(
        Frame::parse(&huge, 64 << 20),
        Err(DecodeError::TooLarge { len, .. }) if len == 1 << 30
    ));
}

#[test]
fn negative_length_is_refused() {
    let mut h = [0xffu8; 10];
    h[8] = 101;
    h[9] = 0;
    assert_eq!(
        Frame::parse(&h, u64::MAX),
        Err(DecodeError::NegativeLength(-1))
    );
    assert_eq!(
        Header::decode(&h, u64::MAX),
        Err(DecodeError::NegativeLength(-1))
    );
    let mut min = [0u8; 10];
    min[0] = 0x80;
    assert_eq!(
        Header::decode(&min, u64::MAX),
        Err(DecodeError::NegativeLength(i64::MIN))
    );
}

#[test]
fn short_header_and_body_wait_for_more() {
    let f = encode_frame(104, 0, &group16(b"group1"));
    for n in 0..f.len() {
        assert_eq!(Frame::parse(&f[..n], 1 << 20), Ok(None), "{n} bytes");
    }
}

#[test]
fn short_bodies_are_bad_length() {
    bad_len(GroupReq::decode(b"grp"), "group request", 3);
    bad_len(StoreResp::decode(&[0; 39]), "store reply", 39);
    bad_len(FileInfoResp::decode(&[0; 24]), "file info reply", 24);
    bad_len(JoinResp::decode(&[0; 16]), "join reply", 16);
    bad_len(JoinReq::decode(&[0; 144]), "join request", 144);
    bad_len(UploadHead::decode(&[0; 14], 14), "upload head", 14);
    bad_len(AppendHead::decode(&[0; 15], 100), "append head", 15);
    bad_len(ModifyHead::decode(&[0; 23], 100), "modify head", 23);
    bad_len(
        SlaveUploadHead::decode(&[0; 37], 100),
        "slave upload head",
        37,
    );
    let mut file = group16(b"group1");
    file.extend_from_slice(b"M00/00/00/bad");
    bad_len(FileReq::decode(&file), "file request", 29);
    bad_len(DiskUsage::decode(&[0; 15]), "disk usage", 15);
    // A truncate request whose name is shorter than its length field says.
    let mut t = Vec::new();
    t.extend_from_slice(&44i64.to_be_bytes());
    t.extend_from_slice(&10i64.to_be_bytes());
    t.extend_from_slice(&NAME.as_bytes()[..40]);
    bad_len(TruncateReq::decode(&t), "truncate request", 56);
}

#[test]
fn group_padding_garbage_is_refused_in_client_requests() {
    let mut g = group16(b"group1");
    g[10] = b'x';
    assert_eq!(field(GroupReq::decode(&g)), "group name");
    let mut f = g.clone();
    f.extend_from_slice(NAME.as_bytes());
    assert_eq!(field(FileReq::decode(&f)), "group name");
    assert_eq!(field(ListStorageReq::decode(&g)), "group name");
    let mut d = Vec::new();
    d.extend_from_slice(&0i64.to_be_bytes());
    d.extend_from_slice(&0i64.to_be_bytes());
    d.extend_from_slice(&g);
    d.extend_from_slice(NAME.as_bytes());
    assert_eq!(field(DownloadReq::decode(&d)), "group name");
    // Storage-to-storage sync requests carry such garbage from upstream
    // (golden README disagreement 3) and are read up to the NUL.
    let mut s = 1795669675u32.to_be_bytes().to_vec();
    s.extend_from_slice(&g);
    s.extend_from_slice(NAME.as_bytes());
    let m = SyncDelete::decode(&s).unwrap();
    assert_eq!(m.group.as_str(), "group1");
    // A group with forbidden characters is refused everywhere.
    assert_eq!(field(GroupReq::decode(&group16(b"group-1"))), "group name");
    assert_eq!(field(GroupReq::decode(&group16(b""))), "group name");
}

#[test]
fn bad_file_names_are_invalid_filename() {
    let bad = [
        "X00/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MXE119.txt", // store path letter
        "M0G/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MXE119.txt", // store path hex
        "M00/07/a7/fwAAC2sHvluAOE1sAAAAFeA9MXE119.txt", // lower-case subdir
        "M00/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MX!119.txt", // not base64
        "M00/07/A7/../../../../../etc/passwd_xxxxxxxx", // traversal
        "M00/07/A7/fwAAC2sHvluAOE1sAAAAFeA9MXE11x.txt", // ext part digits
    ];
    for name in bad {
        assert_eq!(name.len(), 44, "{name}");
        let mut f = group16(b"group1");
        f.extend_from_slice(name.as_bytes());
        assert_eq!(field(FileReq::decode(&f)), "filename", "{name}");
        let mut d = Vec::new();
        d.extend_from_slice(&0i64.to_be_bytes());
        d.extend_from_slice(&0i64.to_be_bytes());
        d.extend_from_slice(&f);
        assert_eq!(field(DownloadReq::decode(&d)), "filename", "{name}");
        let mut m = Vec::new();
        m.extend_from_slice(&44i64.to_be_bytes());
        m.extend_from_slice(&0i64.to_be_bytes());
        m.push(b'O');
        m.extend_from_slice(&f);
        assert_eq!(field(SetMetadataReq::decode(&m)), "filename", "{name}");
    }
}

#[test]
fn negative_sizes_are_invalid_fields() {
    let mut up = vec![0u8];
    up.extend_from_slice(&(-1i64).to_be_bytes());
    up.extend_from_slice(b"txt\0\0\0");
    assert_eq!(field(UploadHead::decode(&up, 15)), "file size");

    let mut d = Vec::new();
    d.extend_from_slice(&(-6i64).to_be_bytes());
    d.extend_from_slice(&0i64.to_be_bytes());
    d.extend_from_slice(&group16(b"group1"));
    d.extend_from_slice(NAME.as_bytes());
    assert_eq!(field(DownloadReq::decode(&d)), "offset");
    d[..8].copy_from_slice(&0i64.to_be_bytes());
    d[8..16].copy_from_slice(&(-1i64).to_be_bytes());
    assert_eq!(field(DownloadReq::decode(&d)), "length");

    let mut a = (-44i64).to_be_bytes().to_vec();
    a.extend_from_slice(&0i64.to_be_bytes());
    assert_eq!(field(AppendHead::decode(&a, 60)), "filename length");

    let mut m = 44i64.to_be_bytes().to_vec();
    m.extend_from_slice(&(-1i64).to_be_bytes());
    m.extend_from_slice(&0i64.to_be_bytes());
    assert_eq!(field(ModifyHead::decode(&m, 68)), "offset");

    let mut t = 44i64.to_be_bytes().to_vec();
    t.extend_from_slice(&(-1i64).to_be_bytes());
    t.extend_from_slice(NAME.as_bytes());
    assert_eq!(field(TruncateReq::decode(&t)), "new size");

    let mut st = 44i64.to_be_bytes().to_vec();
    st.extend_from_slice(&(-1i64).to_be_bytes());
    st.extend_from_slice(&0i64.to_be_bytes());
    st.extend_from_slice(&0u32.to_be_bytes());
    st.extend_from_slice(&group16(b"group1"));
    st.extend_from_slice(NAME.as_bytes());
    assert_eq!(field(SyncTruncate::decode(&st)), "old size");

    let mut du = (-1i64).to_be_bytes().to_vec();
    du.extend_from_slice(&0i64.to_be_bytes());
    assert_eq!(field(DiskUsage::decode(&du)), "disk usage");

    let mut fi = (-1i64).to_be_bytes().to_vec();
    fi.resize(40, 0);
    assert_eq!(field(FileInfoResp::decode(&fi)), "file size");
}

#[test]
fn sizes_that_disagree_with_pkg_len_are_refused() {
    // bad_requests S5: file_size 100 but a 25-byte body.
    let mut up = vec![0xffu8];
    up.extend_from_slice(&100i64.to_be_bytes());
    up.extend_from_slice(b"txt\0\0\0");
    assert_eq!(field(UploadHead::decode(&up, 25)), "upload");
    assert_eq!(UploadHead::decode(&up, 115).unwrap().store_path_index, -1);
    let mut a = 44i64.to_be_bytes().to_vec();
    a.extend_from_slice(&21i64.to_be_bytes());
    assert_eq!(field(AppendHead::decode(&a, 80)), "append");
    assert!(AppendHead::decode(&a, 81).is_ok());
}

#[test]
fn bad_metadata_op_and_unknown_ext_are_invalid() {
    let mut m = 44i64.to_be_bytes().to_vec();
    m.extend_from_slice(&7i64.to_be_bytes());
    m.push(b'X');
    m.extend_from_slice(&group16(b"group1"));
    m.extend_from_slice(NAME.as_bytes());
    m.extend_from_slice(b"a\x02b\x01c\x02d");
    assert_eq!(field(SetMetadataReq::decode(&m)), "op flag");
    m[16] = b'M';
    assert!(SetMetadataReq::decode(&m).is_ok());

    let mut up = vec![0u8];
    up.extend_from_slice(&0i64.to_be_bytes());
    up.extend_from_slice(b"t/x\0\0\0");
    assert_eq!(field(UploadHead::decode(&up, 15)), "ext");
}

//! Hot paths of the codec: header and frame parsing, file-ID parsing and
//! building, and the store reply a tracker sends for every upload.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use fdfs_proto::file_id::{ext_part, LogicName, NameInfo, SourceServer};
use fdfs_proto::tracker::StoreResp;
use fdfs_proto::{FileId, Frame, GroupName, Header, IpSize, ServerAddr};

fn benches(c: &mut Criterion) {
    let frame = fdfs_proto::encode_frame(101, 0, &[]);
    c.bench_function("frame_parse", |b| {
        b.iter(|| Frame::parse(black_box(&frame), 1 << 20).unwrap())
    });
    let h = Header::new(11, 0, 4096).encode();
    c.bench_function("header_decode", |b| {
        b.iter(|| Header::decode(black_box(&h), 1 << 30).unwrap())
    });
    let id = "group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";
    c.bench_function("file_id_parse", |b| {
        b.iter(|| FileId::parse(black_box(id)).unwrap())
    });
    c.bench_function("file_id_build", |b| {
        b.iter(|| {
            let info = NameInfo {
                source: SourceServer::Ip([192, 168, 11, 83].into()),
                timestamp: black_box(1589774253),
                size_field: NameInfo::size_field_for(170, false, 0x0f2f87),
                crc32: 0x8655F614,
            };
            let ext = ext_part("zip", 128).unwrap();
            LogicName::build(0, 0, 0, info, None, &ext).to_string()
        })
    });
    let resp = StoreResp {
        group: GroupName::new("group1").unwrap(),
        server: ServerAddr {
            ip: "127.0.0.11".into(),
            port: 23000,
        },
        store_path_index: 0,
        ip_size: IpSize::V4,
    };
    c.bench_function("store_resp_encode", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64);
            black_box(&resp).encode(&mut out);
            out
        })
    });
}

criterion_group!(codec, benches);
criterion_main!(codec);

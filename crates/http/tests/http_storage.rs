//! The storage HTTP server against a real HTTP client: files named by real
//! file IDs in a temporary store path.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use fdfs_conf::ResponseMode;
use fdfs_http::make_token;
use fdfs_http::storage::{StorageHttpConfig, TokenConf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GROUP: &str = "group1";

fn cfg(store: &std::path::Path) -> StorageHttpConfig {
    let mut c = StorageHttpConfig::new(GROUP, vec![store.to_path_buf()]);
    c.network_timeout = Duration::from_secs(2);
    c.header_read_timeout = Duration::from_secs(1);
    c.connect_timeout = Duration::from_secs(2);
    c
}

/// A server on 127.0.0.1 with one 1000-byte .jpg file from another source.
async fn setup() -> (tempfile::TempDir, Running, String, Vec<u8>, u32) {
    let dir = tempfile::tempdir().unwrap();
    let content = pattern(1000);
    let ts = now() - 100;
    let logic = logic_name(Ipv4Addr::new(10, 9, 8, 7), ts, 1000, "jpg", (0, 0));
    place(dir.path(), &logic, &content);
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, cfg(dir.path()));
    (dir, srv, format!("/{GROUP}/{logic}"), content, ts)
}

#[tokio::test]
async fn full_get_head_and_headers() {
    let (_d, srv, url, content, ts) = setup().await;
    let r = get(srv.addr, &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content);
    assert_eq!(r.header("content-type"), "image/jpeg");
    assert_eq!(r.header("content-length"), "1000");
    assert_eq!(r.header("accept-ranges"), "bytes");
    let lm = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(ts.into()));
    assert_eq!(r.header("last-modified"), lm);
    let etag = r.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 4);

    let h = request_from(None, srv.addr, "HEAD", &url, &[]).await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), "1000");

    let p = request_from(None, srv.addr, "POST", &url, &[]).await;
    assert_eq!(p.status, 405);

    let r = get(srv.addr, &format!("{url}?filename=report%20final.jpg"), &[]).await;
    assert_eq!(
        r.header("content-disposition"),
        "attachment; filename=\"report final.jpg\""
    );
    srv.stop().await;
}

#[tokio::test]
async fn ranges() {
    let (_d, srv, url, content, _) = setup().await;
    let r = get(srv.addr, &url, &[("range", "bytes=2-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), "bytes 2-5/1000");
    assert_eq!(r.body, content[2..6]);
    let r = get(srv.addr, &url, &[("range", "bytes=-10")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content[990..]);
    let r = get(srv.addr, &url, &[("range", "bytes=995-5000")]).await;
    assert_eq!(r.header("content-range"), "bytes 995-999/1000");
    assert_eq!(r.body, content[995..]);
    for bad in ["bytes=1000-", "bytes=7-3", "bytes=x-1"] {
        let r = get(srv.addr, &url, &[("range", bad)]).await;
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(r.header("content-range"), "bytes */1000");
    }

    let r = get(srv.addr, &url, &[("range", "bytes=0-1,10-12")]).await;
    assert_eq!(r.status, 206);
    let ct = r.header("content-type").to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type")
        .to_owned();
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let body = r.body.to_vec();
    let mut expect = Vec::new();
    for (s, e) in [(0usize, 1usize), (10, 12)] {
        expect.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Range: bytes {s}-{e}/1000\r\n\r\n"
            )
            .as_bytes(),
        );
        expect.extend_from_slice(&content[s..=e]);
    }
    expect.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(body, expect);
    srv.stop().await;

    // Multi-range disabled: 416; single ranges still work.
    let dir = tempfile::tempdir().unwrap();
    let logic = logic_name(Ipv4Addr::new(10, 9, 8, 7), now(), 1000, "jpg", (1, 2));
    place(dir.path(), &logic, &content);
    let mut c = cfg(dir.path());
    c.multi_range_enabled = false;
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let url = format!("/{GROUP}/{logic}");
    let r = get(srv.addr, &url, &[("range", "bytes=0-1,10-12")]).await;
    assert_eq!(r.status, 416);
    let r = get(srv.addr, &url, &[("range", "bytes=0-1")]).await;
    assert_eq!(r.status, 206);
    srv.stop().await;
}

#[tokio::test]
async fn conditional_requests() {
    let (_d, srv, url, _content, ts) = setup().await;
    let r = get(srv.addr, &url, &[]).await;
    let etag = r.header("etag").to_owned();
    let lm = r.header("last-modified").to_owned();
    let r = get(srv.addr, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = get(srv.addr, &url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, 200);
    let r = get(srv.addr, &url, &[("if-modified-since", &lm)]).await;
    assert_eq!(r.status, 304);
    let earlier =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(u64::from(ts) - 3600));
    let r = get(srv.addr, &url, &[("if-modified-since", &earlier)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1000);
    srv.stop().await;
}

#[tokio::test]
async fn refuses_bad_paths_and_other_groups() {
    let (_d, srv, url, _, _) = setup().await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    for bad in [
        format!("/{GROUP}/M00/00/00/../../../../etc/passwd"),
        format!("/{GROUP}/M00/%2e%2e/00/{name}"),
        format!("/{GROUP}/M00/00/00%2f{name}"),
        format!("/{GROUP}/M01/00/00/{name}"), // only one store path
        format!("/{GROUP}/M00/00/0a/{name}"),
        format!("/{GROUP}/M00/00/00/{name}/x"),
        format!("/{GROUP}//etc/passwd"),
        format!("/{GROUP}/M00/00/00/short.jpg"),
    ] {
        let r = get(srv.addr, &bad, &[]).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = get(srv.addr, &format!("/group2/M00/00/00/{name}"), &[]).await;
    assert_eq!(r.status, 404);
    srv.stop().await;

    // Subdir beyond subdir_count_per_path.
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.subdir_count_per_path = 4;
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let r = get(srv.addr, &format!("/{GROUP}/M00/05/00/{name}"), &[]).await;
    assert_eq!(r.status, 400);
    srv.stop().await;
}

#[tokio::test]
async fn url_without_group() {
    let dir = tempfile::tempdir().unwrap();
    let logic = logic_name(Ipv4Addr::new(10, 9, 8, 7), now(), 5, "txt", (0xAB, 0x0F));
    place(dir.path(), &logic, b"hello");
    let mut c = cfg(dir.path());
    c.url_have_group_name = false;
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let r = get(srv.addr, &format!("/{logic}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.header("content-type"), "text/plain");
    let r = get(srv.addr, &format!("/{GROUP}/{logic}"), &[]).await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn missing_files_that_should_be_here_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_storage(bind([127, 0, 0, 61], 0).await, cfg(dir.path()));
    // Source is this very server.
    let mine = logic_name(Ipv4Addr::new(127, 0, 0, 61), now(), 10, "png", (0, 0));
    let r = get(srv.addr, &format!("/{GROUP}/{mine}"), &[]).await;
    assert_eq!(r.status, 404);
    // Another source but older than storage_sync_file_max_delay (1 day).
    let old = logic_name(
        Ipv4Addr::new(127, 0, 0, 62),
        now() - 2 * 86400,
        10,
        "png",
        (0, 0),
    );
    let r = get(srv.addr, &format!("/{GROUP}/{old}"), &[]).await;
    assert_eq!(r.status, 404);
    srv.stop().await;
}

/// Two storages of one group on the same port: `a` has the file (it is the
/// source), `b` has not received it yet.
async fn pair(
    mode: ResponseMode,
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    Running,
    Running,
    LogicName,
    Vec<u8>,
) {
    let (la, lb) = bind_pair([127, 0, 0, 71], [127, 0, 0, 72]).await;
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let content = pattern(300_000);
    let logic = logic_name(
        Ipv4Addr::new(127, 0, 0, 71),
        now(),
        300_000,
        "zip",
        (0x12, 0x34),
    );
    place(da.path(), &logic, &content);
    let mut ca = cfg(da.path());
    ca.response_mode = mode;
    let mut cb = cfg(db.path());
    cb.response_mode = mode;
    (
        da,
        db,
        start_storage(la, ca),
        start_storage(lb, cb),
        logic,
        content,
    )
}

use fdfs_proto::LogicName;

#[tokio::test]
async fn redirect_mode_sends_clients_to_the_source() {
    let (_da, _db, a, b, logic, content) = pair(ResponseMode::Redirect).await;
    let url = format!("/{GROUP}/{logic}");
    let r = get(b.addr, &format!("{url}?filename=x.zip"), &[]).await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").to_owned();
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.71:{}{url}?filename=x.zip&redirect=1",
            a.addr.port()
        )
    );
    let path = loc.split_once(&format!("{}", a.addr)).unwrap().1;
    let r = get(a.addr, path, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content);
    // A redirected request that misses is not redirected again.
    let r = get(b.addr, &format!("{url}?redirect=1"), &[]).await;
    assert_eq!(r.status, 400);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn proxy_mode_streams_from_the_source() {
    let (_da, _db, a, b, logic, content) = pair(ResponseMode::Proxy).await;
    let url = format!("/{GROUP}/{logic}");
    let r = get(b.addr, &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, content);
    assert_eq!(r.header("content-type"), "application/zip");
    assert_eq!(r.header("content-length"), "300000");
    let r = get(b.addr, &url, &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content[100..200]);
    assert_eq!(r.header("content-range"), "bytes 100-199/300000");
    // Source down: 502, not a hang.
    a.stop().await;
    let r = get(b.addr, &url, &[]).await;
    assert_eq!(r.status, 502);
    b.stop().await;
}

#[tokio::test]
async fn proxy_only_to_group_members_when_known() {
    let (la, lb) = bind_pair([127, 0, 0, 73], [127, 0, 0, 74]).await;
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let logic = logic_name(Ipv4Addr::new(127, 0, 0, 73), now(), 3, "txt", (0, 1));
    place(da.path(), &logic, b"abc");
    let a = start_storage(la, cfg(da.path()));
    let mut cb = cfg(db.path());
    // Membership known and the source is not in it.
    cb.peers = Some(std::sync::Arc::new(|| {
        vec![fdfs_http::storage::PeerAddr {
            id: "127.0.0.99".into(),
            ip: "127.0.0.99".parse().unwrap(),
        }]
    }));
    let b = start_storage(lb, cb);
    let r = get(b.addr, &format!("/{GROUP}/{logic}"), &[]).await;
    assert_eq!(r.status, 404);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn anti_steal_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let logic = logic_name(Ipv4Addr::new(10, 1, 1, 1), now(), 4, "jpg", (0, 0));
    place(dir.path(), &logic, b"data");
    let fail = dir.path().join("denied.png");
    std::fs::write(&fail, b"DENIED").unwrap();
    let mut c = cfg(dir.path());
    c.token = Some(TokenConf {
        secret_key: "FastDFS1234567890".into(),
        ttl: Duration::from_secs(600),
        check_fail_file: None,
    });
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c.clone());
    let url = format!("/{GROUP}/{logic}");
    let ts = u64::from(now());
    let tok = make_token(&logic.to_string(), "FastDFS1234567890", ts);
    let r = get(srv.addr, &format!("{url}?token={tok}&ts={ts}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"data");
    let old = ts - 601;
    let tok_old = make_token(&logic.to_string(), "FastDFS1234567890", old);
    let r = get(srv.addr, &format!("{url}?token={tok_old}&ts={old}"), &[]).await;
    assert_eq!(r.status, 403);
    let forged = make_token(&logic.to_string(), "wrong-secret", ts);
    let r = get(srv.addr, &format!("{url}?token={forged}&ts={ts}"), &[]).await;
    assert_eq!(r.status, 403);
    let r = get(srv.addr, &url, &[]).await;
    assert_eq!(r.status, 400);
    srv.stop().await;

    c.token.as_mut().unwrap().check_fail_file = Some(fail);
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let r = get(srv.addr, &format!("{url}?token={forged}&ts={ts}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"DENIED");
    assert_eq!(r.header("content-type"), "image/png");
    srv.stop().await;
}

#[tokio::test]
async fn trunk_slot_is_served() {
    use fdfs_proto::file_id::{ext_part, NameInfo, SourceServer, TrunkSlot};
    let dir = tempfile::tempdir().unwrap();
    let content = b"packed small file";
    let ts = now();
    let info = NameInfo {
        // The server itself is the source, so a bad slot is a plain 404.
        source: SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 1)),
        timestamp: ts,
        // bit 63 (random form) + bit 59 (trunk) + size
        size_field: (1u64 << 63) | (1u64 << 59) | content.len() as u64,
        crc32: 0x0102_0304,
    };
    let slot = TrunkSlot {
        trunk_id: 1,
        offset: 2048,
        alloc_size: 256,
    };
    let logic = LogicName::build(0, 0, 0, info, Some(slot), &ext_part("txt", 1).unwrap());
    let mut trunk = vec![0u8; 4096];
    let mut h = vec![b'F'];
    h.extend_from_slice(&256u32.to_be_bytes());
    h.extend_from_slice(&(content.len() as u32).to_be_bytes());
    h.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    h.extend_from_slice(&ts.to_be_bytes());
    h.extend_from_slice(b"txt\0\0\0\0");
    trunk[2048..2048 + 24].copy_from_slice(&h);
    trunk[2048 + 24..2048 + 24 + content.len()].copy_from_slice(content);
    let p = dir.path().join("data/00/00/000001");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &trunk).unwrap();
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, cfg(dir.path()));
    let r = get(srv.addr, &format!("/{GROUP}/{logic}"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], content);
    // A slot whose header does not match is not served.
    trunk[2048] = 0;
    std::fs::write(&p, &trunk).unwrap();
    let r = get(srv.addr, &format!("/{GROUP}/{logic}"), &[]).await;
    assert_eq!(r.status, 404);
    srv.stop().await;
}

/// A trunk slot above the in-memory size: streamed from the middle of the
/// trunk file, whole, one range and several.
#[tokio::test]
async fn big_trunk_slot_is_streamed_with_ranges() {
    use fdfs_proto::file_id::{ext_part, NameInfo, SourceServer, TrunkSlot};
    let dir = tempfile::tempdir().unwrap();
    let content = pattern(300_000);
    let ts = now();
    let info = NameInfo {
        source: SourceServer::Ip(Ipv4Addr::new(127, 0, 0, 1)),
        timestamp: ts,
        size_field: (1u64 << 63) | (1u64 << 59) | content.len() as u64,
        crc32: 7,
    };
    let (off, alloc) = (4096usize, 300_124usize);
    let slot = TrunkSlot {
        trunk_id: 2,
        offset: off as u32,
        alloc_size: alloc as u32,
    };
    let logic = LogicName::build(0, 0, 0, info, Some(slot), &ext_part("bin", 1).unwrap());
    let mut trunk = vec![0xAAu8; off + alloc + 4096];
    let mut h = vec![b'F'];
    h.extend_from_slice(&(alloc as u32).to_be_bytes());
    h.extend_from_slice(&(content.len() as u32).to_be_bytes());
    h.extend_from_slice(&7u32.to_be_bytes());
    h.extend_from_slice(&ts.to_be_bytes());
    h.extend_from_slice(b"bin\0\0\0\0");
    trunk[off..off + 24].copy_from_slice(&h);
    trunk[off + 24..off + 24 + content.len()].copy_from_slice(&content);
    let p = dir.path().join("data/00/00/000002");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &trunk).unwrap();
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, cfg(dir.path()));
    let url = format!("/{GROUP}/{logic}");
    let r = get(srv.addr, &url, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body == content);
    let r = get(srv.addr, &url, &[("range", "bytes=262140-262150")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, content[262_140..=262_150]);
    let r = get(srv.addr, &url, &[("range", "bytes=0-1,299990-")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), r.body.len().to_string());
    let body = r.body.to_vec();
    let after = |needle: &[u8]| {
        body.windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + needle.len())
    };
    let a = after(b"Content-Range: bytes 0-1/300000\r\n\r\n").expect("first part");
    assert_eq!(body[a..a + 2], content[..2]);
    let b = after(b"Content-Range: bytes 299990-299999/300000\r\n\r\n").expect("second part");
    assert_eq!(body[b..b + 10], content[299_990..]);
    assert!(body[b + 10..].starts_with(b"\r\n--"));
    assert!(body.ends_with(b"--\r\n"));
    srv.stop().await;
}

#[tokio::test]
async fn big_file_and_many_concurrent_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let big = pattern(5 << 20);
    let logic = logic_name(
        Ipv4Addr::new(10, 9, 8, 7),
        now(),
        big.len() as u64,
        "bin",
        (3, 4),
    );
    place(dir.path(), &logic, &big);
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, cfg(dir.path()));
    let url = format!("/{GROUP}/{logic}");
    let r = get(srv.addr, &url, &[]).await;
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big);
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let url = url.clone();
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let start = i * 50_000;
            let range = format!("bytes={start}-{}", start + 99_999);
            get(addr, &url, &[("range", &range)]).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        let start = i * 50_000;
        assert_eq!(r.status, 206);
        assert!(r.body == big[start..start + 100_000]);
    }
    srv.stop().await;
}

async fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn hostile_clients() {
    let (_d, srv, url, _, _) = setup().await;
    // Over-long request target.
    let long = format!(
        "GET {url}?pad={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let resp = raw(srv.addr, long.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 414"), "{resp:.80}");
    // Over-long headers.
    let big = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let resp = raw(srv.addr, big.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.80}");
    // Garbage.
    let resp = raw(srv.addr, b"\x16\x03\x01\x02\x00hello\r\n\r\n").await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp:.80}"
    );

    // A client that never finishes its request head is dropped
    // (header_read_timeout = 1 s).
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "slow header client must be disconnected");
    assert!(t0.elapsed() < Duration::from_secs(4));

    // Server still fine.
    assert_eq!(get(srv.addr, &url, &[]).await.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn client_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let big = pattern(24 << 20);
    let logic = logic_name(
        Ipv4Addr::new(10, 9, 8, 7),
        now(),
        big.len() as u64,
        "bin",
        (0, 0),
    );
    place(dir.path(), &logic, &big);
    let mut c = cfg(dir.path());
    c.network_timeout = Duration::from_millis(700);
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let mut s = s.connect(srv.addr).await.unwrap();
    s.write_all(format!("GET /{GROUP}/{logic} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Do not read for a while: the server's writes stall and time out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(done.is_ok(), "connection must be closed by the server");
    assert!(
        total < big.len(),
        "the stalled transfer was cut ({total} bytes)"
    );
    srv.stop().await;
}

#[tokio::test]
async fn numeric_source_ids_map_through_the_peer_list() {
    use fdfs_proto::file_id::{ext_part, NameInfo, SourceServer};
    let (la, lb) = bind_pair([127, 0, 0, 75], [127, 0, 0, 76]).await;
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let info = NameInfo {
        source: SourceServer::Id(100001),
        timestamp: now(),
        size_field: NameInfo::size_field_for(5, false, 7),
        crc32: 1,
    };
    let logic = LogicName::build(0, 0, 0, info, None, &ext_part("txt", 9).unwrap());
    place(da.path(), &logic, b"by id");
    let a = start_storage(la, cfg(da.path()));
    let url = format!("/{GROUP}/{logic}");
    // Unknown id: 500 (PROTOCOL.md §10.2 step 5).
    let b = start_storage(lb, cfg(db.path()));
    assert_eq!(get(b.addr, &url, &[]).await.status, 500);
    let port = b.addr.port();
    b.stop().await;
    let mut cb = cfg(db.path());
    cb.peers = Some(std::sync::Arc::new(|| {
        vec![
            fdfs_http::storage::PeerAddr {
                id: "100001".into(),
                ip: "127.0.0.75".parse().unwrap(),
            },
            fdfs_http::storage::PeerAddr {
                id: "100002".into(),
                ip: "127.0.0.76".parse().unwrap(),
            },
        ]
    }));
    let b = start_storage(bind([127, 0, 0, 76], port).await, cb);
    let r = get(b.addr, &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"by id");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn flv_seek_starts_mid_file_after_a_header() {
    const FLV_HEADER: &[u8] = b"FLV\x01\x01\0\0\0\x09\0\0\0\x09";
    let dir = tempfile::tempdir().unwrap();
    let ts = now() - 100;
    let src = Ipv4Addr::new(10, 9, 8, 7);
    // One read whole on open, one big enough to go out with sendfile.
    let small = pattern(3000);
    let big: Vec<u8> = pattern(300_000).iter().map(|b| b ^ 0x33).collect();
    let small_name = logic_name(src, ts, 3000, "flv", (0, 0));
    let big_name = logic_name(src, ts, 300_000, "FLV", (0, 1));
    let other = logic_name(src, ts, 3000, "mp4", (0, 2));
    place(dir.path(), &small_name, &small);
    place(dir.path(), &big_name, &big);
    place(dir.path(), &other, &small);
    let mut c = cfg(dir.path());
    c.flv_extension = Some("flv".into());
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    let with_header = |b: &[u8]| [FLV_HEADER, b].concat();

    for (name, content) in [(&small_name, &small), (&big_name, &big)] {
        let url = format!("/{GROUP}/{name}");
        let r = get(srv.addr, &format!("{url}?start=1000"), &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.body[..] == with_header(&content[1000..])[..], "{name}");
        assert_eq!(
            r.header("content-length"),
            (13 + content.len() - 1000).to_string()
        );
        assert_eq!(r.header("accept-ranges"), "");
        let r = get(srv.addr, &format!("{url}?start=1000&end=2500"), &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            r.body[..] == with_header(&content[1000..2500])[..],
            "{name}"
        );
        // A Range header does not apply to a seek.
        let r = get(
            srv.addr,
            &format!("{url}?start=10"),
            &[("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.body[..] == with_header(&content[10..])[..]);
        // start=0 is the whole file, which has its own header.
        let r = get(srv.addr, &format!("{url}?start=0"), &[]).await;
        assert!(r.body[..] == content[..]);
        // Past the end: nothing to send.
        let r = get(srv.addr, &format!("{url}?start={}", content.len()), &[]).await;
        assert_eq!(r.status, 416);
        let h = request_from(None, srv.addr, "HEAD", &format!("{url}?start=2000"), &[]).await;
        assert_eq!(h.status, 200);
        assert!(h.body.is_empty());
        assert_eq!(
            h.header("content-length"),
            (13 + content.len() - 2000).to_string()
        );
    }
    // Other extensions ignore start.
    let r = get(srv.addr, &format!("/{GROUP}/{other}?start=1000"), &[]).await;
    assert!(r.body[..] == small[..]);
    srv.stop().await;
}

#[tokio::test]
async fn an_alias_prefix_is_taken_off_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let content = pattern(1000);
    let logic = logic_name(Ipv4Addr::new(10, 9, 8, 7), now() - 100, 1000, "jpg", (0, 0));
    place(dir.path(), &logic, &content);
    let mut c = cfg(dir.path());
    c.alias_prefix = Some("/fastdfs".into());
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    for path in [
        format!("/fastdfs/{GROUP}/{logic}"),
        format!("/{GROUP}/{logic}"),
    ] {
        let r = get(srv.addr, &path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, content);
    }
    // Not the prefix: "fastdfsx" reads as another group.
    let r = get(srv.addr, &format!("/fastdfsx/{GROUP}/{logic}"), &[]).await;
    assert_eq!(r.status, 404);
    srv.stop().await;
}

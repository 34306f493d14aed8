//! Our HTTP/1.1 connection loop on the wire (raw bytes, no client library
//! to smooth things over): pipelining, HTTP/1.0, hand-over of a request
//! with a body to hyper, and what a client sees when a file sent with
//! `sendfile` shrinks under it.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use fdfs_http::storage::StorageHttpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GROUP: &str = "group1";

struct Files {
    _dir: tempfile::TempDir,
    srv: Running,
    small_url: String,
    small: Vec<u8>,
    big_url: String,
    big: Vec<u8>,
    big_path: std::path::PathBuf,
}

/// A storage HTTP server with a 1000-byte file (answered from memory) and
/// a `big_len` one (sent with sendfile).
async fn setup(big_len: usize) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ts = now() - 100;
    let small = pattern(1000);
    let small_logic = logic_name(Ipv4Addr::new(10, 9, 8, 7), ts, 1000, "txt", (0, 0));
    place(dir.path(), &small_logic, &small);
    let big: Vec<u8> = pattern(big_len).iter().map(|b| b ^ 0x5a).collect();
    let big_logic = logic_name(
        Ipv4Addr::new(10, 9, 8, 7),
        ts,
        big_len as u64,
        "bin",
        (1, 2),
    );
    place(dir.path(), &big_logic, &big);
    let big_path = dir.path().join("data").join(big_logic.relative_path());
    assert_eq!(std::fs::metadata(&big_path).unwrap().len(), big_len as u64);
    let mut c = StorageHttpConfig::new(GROUP, vec![dir.path().to_path_buf()]);
    c.network_timeout = Duration::from_secs(2);
    c.header_read_timeout = Duration::from_secs(1);
    let srv = start_storage(bind([127, 0, 0, 1], 0).await, c);
    Files {
        _dir: dir,
        srv,
        small_url: format!("/{GROUP}/{small_logic}"),
        small,
        big_url: format!("/{GROUP}/{big_logic}"),
        big,
        big_path,
    }
}

/// One response read off `bytes` from `*at`: status, head text, body
/// (by its Content-Length).
fn next_response(bytes: &[u8], at: &mut usize) -> (u16, String, Vec<u8>) {
    let rest = &bytes[*at..];
    let end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    let head = String::from_utf8(rest[..end].to_vec()).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let body = rest[end..end + len].to_vec();
    *at += end + len;
    (status, head, body)
}

async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    out
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let f = setup(3 << 20).await;
    let mut s = TcpStream::connect(f.srv.addr).await.unwrap();
    let reqs = format!(
        "GET {big} HTTP/1.1\r\nHost: x\r\n\r\nGET {small} HTTP/1.1\r\nHost: x\r\n\r\nGET {big} HTTP/1.1\r\nHost: x\r\nRange: bytes=100-199\r\nConnection: close\r\n\r\n",
        big = f.big_url,
        small = f.small_url
    );
    s.write_all(reqs.as_bytes()).await.unwrap();
    let all = read_all(&mut s).await;
    let mut at = 0;
    let (st, head, body) = next_response(&all, &mut at);
    assert_eq!(st, 200, "{head}");
    assert!(body == f.big, "the big file, whole");
    let (st, _, body) = next_response(&all, &mut at);
    assert_eq!(st, 200);
    assert_eq!(body, f.small);
    let (st, head, body) = next_response(&all, &mut at);
    assert_eq!(st, 206);
    assert!(
        head.contains("content-range: bytes 100-199/3145728\r\n"),
        "{head}"
    );
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert_eq!(body, f.big[100..200]);
    assert_eq!(at, all.len(), "nothing after the last response");
    f.srv.stop().await;
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_the_connection() {
    let f = setup(200_000).await;
    let mut s = TcpStream::connect(f.srv.addr).await.unwrap();
    s.write_all(format!("GET {} HTTP/1.0\r\n\r\n", f.big_url).as_bytes())
        .await
        .unwrap();
    let all = read_all(&mut s).await;
    let mut at = 0;
    let (st, head, body) = next_response(&all, &mut at);
    assert_eq!(st, 200);
    assert!(!head.contains("connection:"), "{head}");
    assert!(body == f.big);

    let mut s = TcpStream::connect(f.srv.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(
            format!(
                "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                f.small_url
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.ends_with(&f.small[f.small.len() - 8..]) {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("a response on the kept connection")
                .unwrap();
            assert!(n > 0, "closed although asked to keep it");
            got.extend_from_slice(&buf[..n]);
        }
        let mut at = 0;
        let (st, head, body) = next_response(&got, &mut at);
        assert_eq!(st, 200);
        assert!(head.contains("connection: keep-alive\r\n"), "{head}");
        assert_eq!(body, f.small);
    }
    f.srv.stop().await;
}

#[tokio::test]
async fn a_request_with_a_body_is_left_to_hyper_after_ours() {
    let f = setup(100_000).await;
    let mut s = TcpStream::connect(f.srv.addr).await.unwrap();
    let reqs = format!(
        "GET {small} HTTP/1.1\r\nHost: x\r\n\r\nPOST {small} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        small = f.small_url
    );
    s.write_all(reqs.as_bytes()).await.unwrap();
    let all = read_all(&mut s).await;
    let mut at = 0;
    let (st, _, body) = next_response(&all, &mut at);
    assert_eq!(st, 200);
    assert_eq!(body, f.small);
    let (st, head, _) = next_response(&all, &mut at);
    assert_eq!(st, 405, "{head}");
    assert!(head.contains("allow: GET, HEAD\r\n"), "{head}");
    f.srv.stop().await;
}

#[tokio::test]
async fn a_file_that_shrinks_under_a_download_cuts_the_transfer() {
    let len = 24 << 20;
    let f = setup(len).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(f.srv.addr).await.unwrap();
    // A second request waits behind the first: a server that took the cut
    // transfer for a complete one would answer it.
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\nGET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            f.big_url, f.small_url
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = vec![0u8; 4096];
    let n = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // The file loses most of its bytes while the server waits for room.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.big_path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let rest = read_all(&mut s).await;
    assert!(
        !rest.windows(12).any(|w| w == b"HTTP/1.1 200"),
        "no response after a cut one"
    );
    let total = n + rest.len();
    assert!(
        total < len,
        "the client must see a cut transfer, got {total} bytes of {len}"
    );
    // What arrived of the bytes still in the file is the file's content.
    // (Bytes past the new end that were already queued in the socket come
    // out as zeros: sendfile queues page references, not copies. The
    // transfer is cut either way.)
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let start = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let kept = (all.len() - start).min(1 << 20);
    assert!(all[start..start + kept] == f.big[..kept]);
    f.srv.stop().await;
}

#[tokio::test]
async fn the_server_still_serves_after_garbage_and_a_body_on_other_connections() {
    let f = setup(100_000).await;
    for junk in [
        &b"\x16\x03\x01\x02\x00hello\r\n\r\n"[..],
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(f.srv.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let out = read_all(&mut s).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{text:.80}"
        );
    }
    let r = get(f.srv.addr, &f.big_url, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body[..] == f.big[..]);
    f.srv.stop().await;
}

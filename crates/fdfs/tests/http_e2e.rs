//! End to end: a real tracker and a real storage server (processes), a file
//! uploaded with `fdfs upload-file`, the storage HTTP server over the
//! storage's store path, a second storage HTTP server over an empty store
//! (a group member that has not synced yet), and the gateway routing by
//! what the tracker says.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use fdfs_http::gateway::{Gateway, GatewayConf};
use fdfs_http::storage::{StorageHttp, StorageHttpConfig};
use fdfs_testkit::storage::StorageProc;
use fdfs_testkit::{random_loopback, TestDir, TrackerProc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_fdfs");

/// (status, lower-cased head, body) of an HTTP/1.0 GET.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, out[end + 4..].to_vec())
}

/// (ip, status) of group1's storages, as the tracker says.
async fn statuses(tracker: SocketAddr) -> Vec<(String, u8)> {
    use fdfs_http::gateway::tracker::TrackerConn;
    use fdfs_proto::tracker::{ListStorageReq, StorageStat};
    let mut c = TrackerConn::connect(tracker, Duration::from_secs(2), Duration::from_secs(5))
        .await
        .unwrap();
    let mut req = Vec::new();
    ListStorageReq {
        group: fdfs_proto::GroupName::new("group1").unwrap(),
        storage_id: None,
    }
    .encode(&mut req);
    let body = c
        .call(fdfs_proto::cmd::tracker::SERVER_LIST_STORAGE, &req)
        .await
        .unwrap();
    StorageStat::decode_list(&body)
        .unwrap()
        .into_iter()
        .map(|s| (s.ip_addr, s.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_through_storage_http_and_gateway() {
    let dir = TestDir::new("http-e2e");
    let ip_a = random_loopback();
    let o = ip_a.octets();
    let ip_b = Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1);
    let tracker = TrackerProc::start(BIN, dir.path(), ip_a, &[]);
    let taddr = tracker.addr;
    let sa = StorageProc::start(BIN, dir.path(), ip_a, "group1", &[taddr], &[]);
    let empty = dir.join("not-synced");
    std::fs::create_dir_all(&empty).unwrap();

    // Storage HTTP on both storage addresses, one port.
    let (la, lb) = loop {
        let la = TcpListener::bind((ip_a, 0)).await.unwrap();
        let port = la.local_addr().unwrap().port();
        if let Ok(lb) = TcpListener::bind((ip_b, port)).await {
            break (la, lb);
        }
    };
    let http_port = la.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (l, base) in [(la, sa.base.clone()), (lb, empty)] {
        let mut cfg = StorageHttpConfig::new("group1", vec![base]);
        cfg.subdir_count_per_path = 8;
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            StorageHttp::new(cfg)
                .serve(l, async move {
                    let _ = rx.changed().await;
                })
                .await
        }));
    }

    // The gateway, learning group1's members from the tracker.
    let gconf = GatewayConf::from_str(
        &format!(
            "tracker_server = {taddr}\nstorage_http_port = {http_port}\n\
             cache_path = {}\nconnect_timeout = 2s\nnetwork_timeout = 10s\n",
            dir.join("gwcache").display()
        ),
        std::path::Path::new("gateway.conf"),
    )
    .unwrap();
    let gw = Gateway::new(gconf).unwrap();
    let t0 = Instant::now();
    loop {
        if gw.refresh().await.is_ok() && gw.upstreams().plan("group1").len() == 1 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            panic!(
                "the storage never became ACTIVE: {:?}",
                statuses(taddr).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gl = TcpListener::bind((ip_a, 0)).await.unwrap();
    let gaddr = gl.local_addr().unwrap();
    let gw2 = gw.clone();
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        gw2.serve(gl, async move {
            let _ = rx.changed().await;
        })
        .await
    }));

    // Upload with the tool.
    let content: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    let local = dir.join("photo.jpg");
    std::fs::write(&local, &content).unwrap();
    let client_conf = dir.join("client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "base_path = {}\ntracker_server = {taddr}\nconnect_timeout = 5\nnetwork_timeout = 30\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("upload-file")
            .arg(&client_conf)
            .arg(&local)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(file_id.starts_with("group1/M00/"), "{file_id}");
    let url = format!("/{file_id}");

    // Straight from the storage, and from the peer without the file, which
    // proxies it from the source named in the file ID.
    for ip in [ip_a, ip_b] {
        let (status, head, body) = http_get(SocketAddr::from((ip, http_port)), &url).await;
        assert_eq!(status, 200, "{ip}: {head}");
        assert!(head.contains("content-type: image/jpeg"), "{head}");
        assert!(body == content, "{ip}: body differs");
    }
    // Through the gateway: a miss, then a hit.
    let (status, head, body) = http_get(gaddr, &url).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("x-cache: miss"), "{head}");
    assert!(body == content);
    let t0 = Instant::now();
    while gw.cache().unwrap().usage().1 == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never cached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, head, body) = http_get(gaddr, &url).await;
    assert_eq!(status, 200);
    assert!(head.contains("x-cache: hit"), "{head}");
    assert!(body == content);

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    drop((sa, tracker));
}

//! The gateway against a fake tracker (answering 91/92/111 with frames
//! built by fdfs_proto) and real in-process storage HTTP servers.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fdfs_http::gateway::{Gateway, GatewayConf};
use fdfs_http::storage::StorageHttpConfig;
use fdfs_proto::cmd;
use fdfs_proto::server::status;
use fdfs_proto::tracker::{GroupStat, ListStorageReq, StorageStat};
use fdfs_proto::{Header, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// group → [(ip, status)]
type Members = Arc<Mutex<HashMap<String, Vec<(String, u8)>>>>;

/// A tracker that answers list-groups, list-storages and active-test.
async fn fake_tracker(members: Members) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                _ = &mut rx => return Ok(()),
                a = listener.accept() => a.unwrap(),
            };
            let members = members.clone();
            tokio::spawn(async move {
                loop {
                    let mut h = [0u8; HEADER_LEN];
                    if s.read_exact(&mut h).await.is_err() {
                        return;
                    }
                    let h = Header::decode(&h, 1024).unwrap();
                    let mut body = vec![0u8; h.pkg_len as usize];
                    s.read_exact(&mut body).await.unwrap();
                    let mut out = Vec::new();
                    match h.cmd {
                        cmd::QUIT => return,
                        cmd::ACTIVE_TEST => {}
                        cmd::tracker::SERVER_LIST_ALL_GROUPS => {
                            let m = members.lock().unwrap();
                            let mut names: Vec<_> = m.keys().cloned().collect();
                            names.sort();
                            for g in names {
                                GroupStat {
                                    group_name: g.clone(),
                                    storage_count: m[&g].len() as i64,
                                    storage_port: 23000,
                                    current_trunk_file_id: -1,
                                    ..Default::default()
                                }
                                .encode(&mut out);
                            }
                        }
                        cmd::tracker::SERVER_LIST_STORAGE => {
                            let req = ListStorageReq::decode(&body).unwrap();
                            let m = members.lock().unwrap();
                            for (ip, st) in m.get(req.group.as_str()).cloned().unwrap_or_default() {
                                StorageStat {
                                    status: st,
                                    rw_mode: 6,
                                    id: ip.clone(),
                                    ip_addr: ip,
                                    version: "6.16.1".into(),
                                    storage_port: 23000,
                                    ..Default::default()
                                }
                                .encode(&mut out);
                            }
                        }
                        other => panic!("unexpected command {other}"),
                    }
                    let mut frame = Header::response(0, out.len() as u64).encode().to_vec();
                    frame.extend_from_slice(&out);
                    s.write_all(&frame).await.unwrap();
                }
            });
        }
    });
    running(addr, tx, task)
}

/// Reads a request head and answers `reply`, whatever was asked.
fn broken_server(listener: TcpListener, reply: &'static str) -> Running {
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                _ = &mut rx => return Ok(()),
                a = listener.accept() => a.unwrap(),
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    running(addr, tx, task)
}

struct Cluster {
    _store: tempfile::TempDir,
    _cache: tempfile::TempDir,
    tracker: Option<Running>,
    storages: Vec<Option<Running>>,
    gateway: Option<Running>,
    gw: Gateway,
    url: String,
    content: Vec<u8>,
}

impl Cluster {
    fn gw_addr(&self) -> SocketAddr {
        self.gateway.as_ref().unwrap().addr
    }

    async fn stop_storage(&mut self, i: usize) {
        if let Some(s) = self.storages[i].take() {
            s.stop().await;
        }
    }

    async fn shutdown(mut self) {
        for i in 0..self.storages.len() {
            self.stop_storage(i).await;
        }
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
        if let Some(t) = self.tracker.take() {
            t.stop().await;
        }
    }
}

/// Tracker, two storages of group1 (127.0.0.81/.82, one port, one shared
/// store dir), an OFFLINE third member, and the gateway on 127.0.0.1.
async fn cluster(extra_conf: &str) -> Cluster {
    cluster_with(extra_conf, None).await
}

/// Like [`cluster`], but the first storage (127.0.0.81) is replaced by a
/// server that answers every request with `bad_reply`.
async fn cluster_with(extra_conf: &str, bad_reply: Option<&'static str>) -> Cluster {
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let content = pattern(200_000);
    let logic = logic_name(
        Ipv4Addr::new(127, 0, 0, 81),
        now() - 10,
        200_000,
        "png",
        (0, 7),
    );
    place(store.path(), &logic, &content);
    let (la, lb) = bind_pair([127, 0, 0, 81], [127, 0, 0, 82]).await;
    let port = la.local_addr().unwrap().port();
    let mut storages = Vec::new();
    for (i, l) in [la, lb].into_iter().enumerate() {
        if let (0, Some(reply)) = (i, bad_reply) {
            storages.push(Some(broken_server(l, reply)));
            continue;
        }
        let mut c = StorageHttpConfig::new("group1", vec![store.path().to_path_buf()]);
        c.network_timeout = Duration::from_secs(2);
        storages.push(Some(start_storage(l, c)));
    }
    let members: Members = Arc::new(Mutex::new(HashMap::from([
        (
            "group1".to_owned(),
            vec![
                ("127.0.0.81".to_owned(), status::ACTIVE),
                ("127.0.0.82".to_owned(), status::ACTIVE),
                ("127.0.0.83".to_owned(), status::OFFLINE),
            ],
        ),
        ("group2".to_owned(), vec![]),
    ])));
    let tracker = fake_tracker(members).await;
    let text = format!(
        "bind_addr = 127.0.0.1\n\
         tracker_server = {}\n\
         storage_http_port = {port}\n\
         connect_timeout = 1s\nnetwork_timeout = 3s\n\
         max_fails = 1\nfail_timeout = 30s\n\
         cache_path = {}\n\
         purge_allow = 127.0.0.1\npurge_allow = 10.0.0.0/8\n{extra_conf}",
        tracker.addr,
        cache.path().display()
    );
    // The configured listen address is not used: the test binds its own.
    let conf = GatewayConf::from_str(&text, std::path::Path::new("gateway.conf")).unwrap();
    let gw = Gateway::new(conf).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let g2 = gw.clone();
    let task = tokio::spawn(async move {
        g2.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    let c = Cluster {
        _store: store,
        _cache: cache,
        tracker: Some(tracker),
        storages,
        gateway: Some(running(addr, tx, task)),
        gw,
        url: format!("/group1/{logic}"),
        content,
    };
    // serve() refreshes before accepting; wait until the view is in.
    for _ in 0..100 {
        if c.gw.upstreams().has_group("group1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c
}

async fn wait_cached(gw: &Gateway, entries: usize) {
    for _ in 0..200 {
        if gw.cache().unwrap().usage().1 >= entries {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("response never cached");
}

#[tokio::test]
async fn membership_comes_from_the_tracker() {
    let c = cluster("").await;
    let up = c.gw.upstreams();
    let mut plan = up.plan("group1");
    plan.sort();
    let ips: Vec<IpAddr> = plan.iter().map(|a| a.ip()).collect();
    assert_eq!(
        ips,
        vec![
            "127.0.0.81".parse::<IpAddr>().unwrap(),
            "127.0.0.82".parse().unwrap()
        ],
        "only ACTIVE servers"
    );
    assert!(up.has_group("group2"));
    let r = get(c.gw_addr(), &c.url.replace("group1", "group2"), &[]).await;
    assert_eq!(r.status, 502, "group without active servers");
    let r = get(c.gw_addr(), &c.url.replace("group1", "group9"), &[]).await;
    assert_eq!(r.status, 404);
    let r = get(c.gw_addr(), "/group1/M00/00/00/../../etc/passwd", &[]).await;
    assert_eq!(r.status, 400);
    c.shutdown().await;
}

#[tokio::test]
async fn proxies_caches_and_survives_losing_every_storage() {
    let mut c = cluster("").await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), "MISS");
    assert!(r.body == c.content);
    assert_eq!(r.header("content-type"), "image/png");
    assert_eq!(r.header("cache-control"), format!("max-age={}", 30 * 86400));
    wait_cached(&c.gw, 1).await;
    // Ranges are not forwarded on a cacheable path: served from the cache.
    let r = get(c.gw_addr(), &c.url, &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("x-cache"), "HIT");
    assert!(r.body == c.content[10..20]);

    c.stop_storage(0).await;
    c.stop_storage(1).await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), "HIT");
    assert!(r.body == c.content);
    // Not cached and nobody to ask.
    let r = get(c.gw_addr(), &format!("{}?v=2", c.url), &[]).await;
    assert_eq!(r.status, 502);
    c.shutdown().await;
}

#[tokio::test]
async fn fails_over_when_a_storage_is_shut_down() {
    let mut c = cluster("").await;
    c.stop_storage(0).await;
    let dead: SocketAddr = SocketAddr::new(
        "127.0.0.81".parse().unwrap(),
        c.gw.upstreams().plan("group1")[0].port(),
    );
    for i in 0..6 {
        // Distinct query strings: every request goes upstream.
        let r = get(c.gw_addr(), &format!("{}?i={i}", c.url), &[]).await;
        assert_eq!(r.status, 200, "request {i}");
        assert!(r.body == c.content);
        assert_eq!(r.header("x-cache"), "MISS");
    }
    assert!(
        c.gw.upstreams().is_down(dead),
        "dead server taken out of rotation"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn purge_allowed_and_denied() {
    let c = cluster("").await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.status, 200);
    wait_cached(&c.gw, 1).await;
    let purge = format!("/purge{}", c.url);
    let from2: IpAddr = "127.0.0.2".parse().unwrap();
    let r = request_from(Some(from2), c.gw_addr(), "GET", &purge, &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(c.gw.cache().unwrap().usage().1, 1);
    let r = get(c.gw_addr(), &purge, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(c.gw.cache().unwrap().usage().1, 0);
    let r = get(c.gw_addr(), &purge, &[]).await;
    assert_eq!(r.status, 404);
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.header("x-cache"), "MISS");
    // /metrics is for the same clients as /purge.
    let r = request_from(Some(from2), c.gw_addr(), "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 403);
    let r = get(c.gw_addr(), "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        page.contains("fdfs_gateway_responses{source=\"storage\"} 2\n"),
        "{page}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn healthz_follows_the_trackers() {
    let mut c = cluster("").await;
    let r = get(c.gw_addr(), "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"ok\n");
    c.tracker.take().unwrap().stop().await;
    let r = get(c.gw_addr(), "/healthz", &[]).await;
    assert_eq!(r.status, 503);
    // The last known membership keeps serving.
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.status, 200);
    c.shutdown().await;
}

#[tokio::test]
async fn cache_entries_expire() {
    // Long enough that a loaded machine (CI builds beside it) still asks
    // again within the validity; it expired 1 s after the 4 s.
    let c = cluster("cache_valid = 4s\n").await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.header("x-cache"), "MISS");
    wait_cached(&c.gw, 1).await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.header("x-cache"), "HIT");
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.header("x-cache"), "MISS", "stale entry refetched");
    c.shutdown().await;
}

#[tokio::test]
async fn retries_on_502_and_invalid_responses() {
    for reply in [
        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n",
        "SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ] {
        let c = cluster_with("", Some(reply)).await;
        let bad = c.storages[0].as_ref().unwrap().addr;
        for i in 0..4 {
            let r = get(c.gw_addr(), &format!("{}?i={i}", c.url), &[]).await;
            assert_eq!(r.status, 200, "{reply:?} request {i}");
            assert!(r.body == c.content);
        }
        assert!(c.gw.upstreams().is_down(bad), "{reply:?}");
        c.shutdown().await;
    }
}

#[tokio::test]
async fn a_404_is_not_retried_nor_cached() {
    let c = cluster("").await;
    let missing = logic_name(Ipv4Addr::new(127, 0, 0, 81), now() - 10, 10, "png", (0, 0));
    let url = format!("/group1/{missing}");
    let r = get(c.gw_addr(), &url, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(c.gw.cache().unwrap().usage().1, 0);
    assert!(!c
        .gw
        .upstreams()
        .is_down(c.storages[0].as_ref().unwrap().addr));
    assert!(!c
        .gw
        .upstreams()
        .is_down(c.storages[1].as_ref().unwrap().addr));
    c.shutdown().await;
}

#[tokio::test]
async fn concurrent_misses_and_the_size_bound() {
    // Room for one 200 kB body (plus its header), not two.
    let c = cluster("cache_max_size = 300k\n").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (addr, url) = (c.gw_addr(), c.url.clone());
        tasks.push(tokio::spawn(async move { get(addr, &url, &[]).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == c.content);
    }
    wait_cached(&c.gw, 1).await;
    let (bytes, entries) = c.gw.cache().unwrap().usage();
    assert_eq!(entries, 1, "one key, one entry");
    assert!(bytes > 200_000 && bytes < 201_000, "{bytes}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = get(c.gw_addr(), &format!("{}?v=2", c.url), &[]).await;
    assert_eq!(r.status, 200);
    // The second entry pushes the first (least recently used) out.
    for _ in 0..200 {
        let r = get(c.gw_addr(), &format!("{}?v=2", c.url), &[]).await;
        if r.header("x-cache") == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (bytes, entries) = c.gw.cache().unwrap().usage();
    assert_eq!(entries, 1);
    assert!(bytes <= 300 * 1024);
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.header("x-cache"), "MISS", "the older entry was evicted");
    c.shutdown().await;
}

#[tokio::test]
async fn the_access_log_has_a_line_per_request() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("gateway_access.log");
    let c = cluster(&format!("access_log = {}\n", path.display())).await;
    let r = get(c.gw_addr(), &c.url, &[]).await;
    assert_eq!(r.status, 200);
    let r = get(c.gw_addr(), &c.url.replace("group1", "group9"), &[]).await;
    assert_eq!(r.status, 404);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{text}");
    assert!(
        lines[0].contains(&format!("\"GET {} HTTP/1.1\" 200 200000 ", c.url)),
        "{text}"
    );
    assert!(lines[0].ends_with(" MISS"), "{text}");
    assert!(lines[1].contains("\" 404 "), "{text}");
    c.shutdown().await;
}

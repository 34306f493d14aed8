//! Helpers for the HTTP integration tests: files named by real file IDs,
//! in-process servers on 127.x addresses, and a small HTTP client.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use fdfs_http::storage::{StorageHttp, StorageHttpConfig};
use fdfs_proto::file_id::{ext_part, NameInfo, SourceServer};
use fdfs_proto::LogicName;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A logic name for `content` uploaded to `source` at `ts`.
pub fn logic_name(source: Ipv4Addr, ts: u32, size: u64, ext: &str, sub: (u8, u8)) -> LogicName {
    let info = NameInfo {
        source: SourceServer::Ip(source),
        timestamp: ts,
        size_field: NameInfo::size_field_for(size, false, 0x1234),
        crc32: 0xdead_beef,
    };
    LogicName::build(0, sub.0, sub.1, info, None, &ext_part(ext, 4321).unwrap())
}

/// Writes `content` where the storage keeps `logic` under `store`.
pub fn place(store: &Path, logic: &LogicName, content: &[u8]) {
    let p = store.join("data").join(logic.relative_path());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A running server and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

pub async fn bind(ip: [u8; 4], port: u16) -> TcpListener {
    TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .unwrap()
}

pub fn start_storage(listener: TcpListener, cfg: StorageHttpConfig) -> Running {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let srv = StorageHttp::new(cfg);
    let task = tokio::spawn(async move {
        srv.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

pub fn running(
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
) -> Running {
    Running {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Two listeners on the same port at two addresses (storages of one group
/// share their HTTP port).
pub async fn bind_pair(a: [u8; 4], b: [u8; 4]) -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let la = bind(a, 0).await;
        let port = la.local_addr().unwrap().port();
        if let Ok(lb) = TcpListener::bind(SocketAddr::from((b, port))).await {
            return (la, lb);
        }
    }
    panic!("no common free port");
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// One request on a fresh connection, optionally from a given source IP.
pub async fn request_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let stream = match from {
        Some(ip) => {
            let s = TcpSocket::new_v4().unwrap();
            s.bind(SocketAddr::new(ip, 0)).unwrap();
            s.connect(addr).await.unwrap()
        }
        None => TcpStream::connect(addr).await.unwrap(),
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        sender.send_request(b.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .expect("response in time")
    .expect("a response");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .expect("whole body")
        .to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_from(None, addr, "GET", path, headers).await
}

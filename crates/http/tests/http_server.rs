//! The shared accept loop (`fdfs_http::server::serve`): connections are
//! spread over the worker threads and each stays on its thread; a stop
//! refuses new connections, lets running responses finish, and drops what
//! outlives the drain timeout.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fdfs_http::body::{full, ChannelBody};
use fdfs_http::server::{self, Handler, Limits};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn limits(workers: usize, drain: Duration) -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        drain_timeout: drain,
        workers,
    }
}

/// Answers with the name of the thread serving the request; `/sleep/<ms>`
/// waits that long first; `/stream` answers "abcdef" in three pieces of a
/// body whose length is not known in advance.
fn handler() -> Handler {
    Arc::new(|req: Request<()>, _info| {
        Box::pin(async move {
            if req.uri().path() == "/stream" {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                for piece in ["ab", "cd", "ef"] {
                    tx.try_send(Ok(Bytes::from_static(piece.as_bytes())))
                        .unwrap();
                }
                return Response::new(ChannelBody::new(rx, None).boxed_unsync());
            }
            if let Some(ms) = req.uri().path().strip_prefix("/sleep/") {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            let mut r = Response::new(full(name));
            *r.status_mut() = StatusCode::OK;
            r
        })
    })
}

struct Server {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(workers: usize, drain: Duration) -> Server {
    let listener = common::bind([127, 0, 0, 1], 0).await;
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        async {
            let _ = rx.await;
        },
        limits(workers, drain),
        handler(),
    ));
    Server { addr, stop, task }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, path: &str) -> hyper::Result<(StatusCode, String)> {
    sender.ready().await?;
    let req = Request::get(path)
        .header("host", "x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test]
async fn connections_are_spread_over_workers_and_stay_on_theirs() {
    let srv = start(2, Duration::from_secs(5)).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(connect(srv.addr).await);
    }
    let mut per_thread: HashMap<String, usize> = HashMap::new();
    for s in senders.iter_mut() {
        let (status, first) = send(s, "/a").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(first.starts_with("fdfs-http-"), "served on {first}");
        for _ in 0..5 {
            let (_, again) = send(s, "/b").await.unwrap();
            assert_eq!(again, first, "a connection stays on its thread");
        }
        *per_thread.entry(first).or_default() += 1;
    }
    // Round robin: two connections on each of the two workers.
    assert_eq!(per_thread.len(), 2, "{per_thread:?}");
    assert!(per_thread.values().all(|&n| n == 2), "{per_thread:?}");
    let _ = srv.stop.send(());
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn stop_refuses_new_connections_and_drains_running_responses() {
    let srv = start(2, Duration::from_secs(10)).await;
    let addr = srv.addr;
    let mut slow = connect(addr).await;
    let running = tokio::spawn(async move { send(&mut slow, "/sleep/600").await });
    // Let the request arrive before stopping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let _ = srv.stop.send(());
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the running response finishes")
        .unwrap()
        .expect("and is complete");
    assert_eq!(status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("serve returns once drained")
        .unwrap()
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "did not wait for the drain timeout"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after a stop"
    );
}

#[tokio::test]
async fn stop_drops_responses_that_outlive_the_drain_timeout() {
    let srv = start(1, Duration::from_millis(300)).await;
    let mut slow = connect(srv.addr).await;
    let running = tokio::spawn(async move { send(&mut slow, "/sleep/30000").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let _ = srv.stop.send(());
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap()
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let r = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the client sees the connection end")
        .unwrap();
    assert!(r.is_err(), "the cut response is not complete: {r:?}");
}

/// The raw bytes the server sends for `req` until it closes.
async fn raw_exchange(addr: std::net::SocketAddr, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server closes")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_for_1_1_and_closed_for_1_0() {
    let srv = start(1, Duration::from_secs(5)).await;
    let mut s = connect(srv.addr).await;
    assert_eq!(
        send(&mut s, "/stream").await.unwrap(),
        (StatusCode::OK, "abcdef".to_owned())
    );
    let r = raw_exchange(
        srv.addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("\r\ntransfer-encoding: chunked\r\n"), "{r}");
    assert!(
        r.ends_with("\r\n\r\n2\r\nab\r\n2\r\ncd\r\n2\r\nef\r\n0\r\n\r\n"),
        "{r}"
    );
    let r = raw_exchange(srv.addr, b"GET /stream HTTP/1.0\r\n\r\n").await;
    assert!(!r.contains("content-length"), "{r}");
    assert!(!r.contains("transfer-encoding"), "{r}");
    assert!(r.ends_with("\r\n\r\nabcdef"), "{r}");
    let _ = srv.stop.send(());
    let _ = srv.task.await;
}

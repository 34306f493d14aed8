//! The accept loop shared by the storage HTTP server and the gateway:
//! HTTP/1.1 with bounded request heads, a header read timeout, an idle
//! read/write timeout, and a graceful stop.
//!
//! Connections are served thread-per-core: the caller's runtime only
//! accepts, and hands each connection, round robin, to one of a few worker
//! threads that each run a single-threaded tokio runtime and serve it there
//! until it closes. A connection's task then never moves between threads,
//! and an idle worker waits in `epoll_wait` rather than being woken through
//! a futex by a work-stealing scheduler, as nginx's single-threaded workers
//! do (docs/benchmarks.md has the measurements).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::body::Body;
use crate::fileserve::text;
use crate::timeout_io::TimeoutIo;

/// Longest request target accepted (longer → 414).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Size of hyper's read buffer: the whole request head must fit, else 431.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// Where a request came from and arrived at.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A request handler. Handlers never fail: errors are responses. It runs
/// on the worker thread of its connection: `tokio::spawn` and
/// `spawn_blocking` inside it use that worker's runtime.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>, ConnInfo) -> BoxFuture<Response<Body>> + Send + Sync>;

/// Timeouts and threads of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The request head must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection making no progress either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a stop waits for running responses before dropping them.
    pub drain_timeout: Duration,
    /// Worker threads serving connections; 0 = one per available core.
    pub workers: usize,
}

/// The number of worker threads `workers` (0 = one per core) means.
pub fn worker_count(workers: usize) -> usize {
    if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// A worker thread: where accepted connections go, and its end.
struct Worker {
    conns: mpsc::UnboundedSender<(std::net::TcpStream, ConnInfo)>,
    done: oneshot::Receiver<()>,
}

/// Starts a worker thread with its own single-threaded runtime. It serves
/// what arrives on its channel; once the channel closes it lets running
/// connections finish (they were told to stop through `stop`) for up to
/// `drain_timeout`, drops the rest and ends.
fn start_worker(
    index: usize,
    limits: Limits,
    handler: Handler,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Its blocking pool (large-file reads), named for profiles.
        .thread_name(format!("fdfs-http-{index}b"))
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, ConnInfo)>();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("fdfs-http-{index}"))
        .spawn(move || {
            rt.block_on(async move {
                let mut conns = JoinSet::new();
                loop {
                    tokio::select! {
                        c = rx.recv() => match c {
                            Some((stream, info)) => {
                                // Registers it with this thread's reactor.
                                match tokio::net::TcpStream::from_std(stream) {
                                    Ok(s) => {
                                        conns.spawn(serve_conn(s, info, limits, handler.clone(), stop.clone()));
                                    }
                                    Err(e) => {
                                        tracing::warn!(peer = %info.peer, error = %e, "cannot register connection");
                                    }
                                }
                            }
                            None => break,
                        },
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                }
                let drain = async { while conns.join_next().await.is_some() {} };
                if tokio::time::timeout(limits.drain_timeout, drain).await.is_err() {
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                }
            });
            // Blocking reads still running belong to dropped responses:
            // do not wait for them.
            rt.shutdown_background();
            let _ = done_tx.send(());
        })?;
    Ok(Worker {
        conns: tx,
        done: done_rx,
    })
}

/// Serves until `shutdown` completes, then stops accepting, lets running
/// responses finish (up to `drain_timeout`) and returns. Accepts on the
/// caller's runtime; connections are served on `limits.workers` threads
/// of their own (see the module doc).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    limits: Limits,
    handler: Handler,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for i in 0..worker_count(limits.workers) {
        workers.push(start_worker(i, limits, handler.clone(), stop_rx.clone())?);
    }
    drop(stop_rx);
    let mut next = 0usize;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                let _ = stream.set_nodelay(true);
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot hand the connection over");
                        continue;
                    }
                };
                let info = ConnInfo { peer, local };
                // Round robin: wrk-style clients open all their
                // connections at once, and each stays on its thread.
                let w = &workers[next % workers.len()];
                next = next.wrapping_add(1);
                if w.conns.send((stream, info)).is_err() {
                    tracing::error!(%peer, "HTTP worker thread gone; connection dropped");
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let mut done = Vec::with_capacity(workers.len());
    for w in workers {
        drop(w.conns);
        done.push(w.done);
    }
    // Each worker applies drain_timeout itself.
    for d in done {
        let _ = d.await;
    }
    Ok(())
}
/// Length of the request target as sent (`uri.to_string().len()` without
/// building the string on every request).
fn uri_len(u: &http::Uri) -> usize {
    let pq = u.path_and_query().map_or(0, |p| p.as_str().len());
    match (u.scheme_str(), u.authority()) {
        (Some(s), Some(a)) => s.len() + 3 + a.as_str().len() + pq,
        (None, Some(a)) => a.as_str().len() + pq,
        _ => pq,
    }
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    info: ConnInfo,
    limits: Limits,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) {
    let io = TimeoutIo::new(stream, limits.idle_timeout);
    let svc = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            if uri_len(req.uri()) > MAX_URI_LEN {
                tracing::info!(peer = %info.peer, "request target too long");
                return Ok::<_, std::convert::Infallible>(text(
                    StatusCode::URI_TOO_LONG,
                    "URI too long",
                ));
            }
            Ok(handler(req, info).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_LEN)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::uri_len;

    #[test]
    fn uri_len_is_the_length_of_the_target() {
        for t in [
            "/group1/M00/00/00/a.jpg",
            "/group1/M00/00/00/a.jpg?token=x&ts=1",
            "*",
            "http://example.com:8888/group1/M00/00/00/a.jpg?x=1",
            "http://example.com",
            "example.com:443",
        ] {
            let u: http::Uri = t.parse().unwrap();
            assert_eq!(uri_len(&u), u.to_string().len(), "{t}");
        }
    }
}

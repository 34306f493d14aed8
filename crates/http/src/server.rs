//! The accept loop shared by the storage HTTP server and the gateway:
//! HTTP/1.1 with bounded request heads, a header read timeout, an idle
//! read/write timeout, and a graceful stop (each connection is served by
//! [`crate::conn`]).
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

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::body::Body;

/// Longest request target accepted (longer → 414).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// The whole request head must fit in this, else 431.
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
/// Requests carry no body: no handler reads one (see [`crate::conn`]).
pub type Handler = Arc<dyn Fn(Request<()>, ConnInfo) -> BoxFuture<Response<Body>> + Send + Sync>;

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
                                        conns.spawn(crate::conn::serve_conn(s, info, limits, handler.clone(), stop.clone()));
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

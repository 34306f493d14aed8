//! The accept loop shared by the storage HTTP server and the gateway:
//! HTTP/1.1 with bounded request heads, a header read timeout, an idle
//! read/write timeout, and a graceful stop.

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
use tokio::sync::watch;
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

/// A request handler. Handlers never fail: errors are responses.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>, ConnInfo) -> BoxFuture<Response<Body>> + Send + Sync>;

/// Timeouts of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The request head must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection making no progress either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a stop waits for running responses before dropping them.
    pub drain_timeout: Duration,
}

/// Serves until `shutdown` completes, then stops accepting, lets running
/// responses finish (up to `drain_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    limits: Limits,
    handler: Handler,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
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
                let info = ConnInfo { peer, local };
                conns.spawn(serve_conn(stream, info, limits, handler.clone(), stop_rx.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drain)
        .await
        .is_err()
    {
        conns.abort_all();
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

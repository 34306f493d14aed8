//! A daemon's own state over HTTP, on its `metrics_port`: `/metrics` in the
//! Prometheus text format and `/status` as JSON. What they say comes from
//! an [`Observed`] the daemon hands in (the tracker's cluster, a storage's
//! counters and replication); this module only serves it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Response, StatusCode};
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::fileserve::text;
use crate::server::{self, Limits};

/// What a daemon exposes.
pub trait Observed: Send + Sync + 'static {
    /// The `/metrics` page (Prometheus text format 0.0.4).
    fn metrics(&self) -> String;
    /// The `/status` document (JSON).
    fn status(&self) -> String;
}

/// Serves `/metrics` and `/status` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    source: Arc<dyn Observed>,
) -> std::io::Result<()> {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(2),
        workers: 1,
    };
    let handler: server::Handler = Arc::new(move |req, _info| {
        let source = source.clone();
        Box::pin(async move {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            }
            let (page, kind) = match req.uri().path() {
                "/metrics" => (source.metrics(), "text/plain; version=0.0.4; charset=utf-8"),
                "/status" => (source.status(), "application/json"),
                _ => return text(StatusCode::NOT_FOUND, "/metrics or /status"),
            };
            let len = page.len();
            let b: Body = if req.method() == Method::HEAD {
                body::empty()
            } else {
                body::full(page)
            };
            Response::builder()
                .header(header::CONTENT_TYPE, kind)
                .header(header::CONTENT_LENGTH, len)
                .header(header::CACHE_CONTROL, "no-store")
                .body(b)
                .expect("static response")
        })
    });
    server::serve(listener, shutdown, limits, handler).await
}

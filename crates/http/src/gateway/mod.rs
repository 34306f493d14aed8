//! `fdfs gateway`: one HTTP entry for the whole cluster, doing what the
//! deployment guide's tracker-side nginx (port 8000) does:
//!
//! * learns each group's ACTIVE storages from the trackers (commands 91 and
//!   92), refreshed every `refresh_interval` — no static address lists;
//! * `/{group}/M..` goes to that group's servers in round robin; a failing
//!   server (connect error, timeout, 502/504, invalid response) is retried
//!   on the next one and taken out of rotation after `max_fails`;
//! * 200 responses are cached on disk (key = uri + args), served from there
//!   while valid, even when every storage is gone;
//! * `/purge/{path}` removes an entry (allow-listed clients only);
//! * `/healthz` answers 200 `ok` while a tracker answers (for keepalived);
//! * `/metrics` (Prometheus text; `purge_allow` clients only): requests by
//!   where the answer came from, upstream failures, cache size, servers up.

pub mod cache;
pub mod conf;
pub mod tracker;
pub mod upstream;

pub use cache::Cache;
pub use conf::GatewayConf;
pub use upstream::Upstreams;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdfs_runtime::metrics::{process, Exposition};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::access_log::AccessLog;
use crate::body::{Body, ChannelBody};
use crate::fileserve::{self, text, FileMeta, ServeOpts};
use crate::server::{self, ConnInfo, Limits};
use crate::storage::{fetch, parse_request_path};
use crate::HttpError;
use tracker::TrackerConn;

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    conf: GatewayConf,
    upstreams: Upstreams,
    cache: Option<Cache>,
    /// `Cache-Control: max-age=<expires>` for 200s, built once.
    cache_control: Option<HeaderValue>,
    counters: Counters,
    /// Unix seconds at start.
    started: u64,
    access_log: Option<AccessLog>,
}

/// What `/metrics` counts.
#[derive(Debug, Default)]
struct Counters {
    from_cache: AtomicU64,
    from_storage: AtomicU64,
    /// No storage answered, or the group has none ACTIVE.
    unanswered: AtomicU64,
    upstream_failures: AtomicU64,
}

const FORWARD_RESP: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_DISPOSITION,
    header::LAST_MODIFIED,
    header::ETAG,
    header::ACCEPT_RANGES,
    header::LOCATION,
];

const FORWARD_REQ: &[header::HeaderName] = &[
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];

impl Gateway {
    /// Opens the cache (if configured). Membership is empty until the
    /// first [`Gateway::refresh`] (done at the start of `serve`).
    pub fn new(conf: GatewayConf) -> Result<Gateway, HttpError> {
        let cache = match &conf.cache_path {
            Some(p) => Some(
                Cache::open(
                    p,
                    conf.cache_max_size,
                    conf.cache_inactive,
                    conf.cache_valid,
                )
                .map_err(|e| HttpError::Io {
                    path: p.clone(),
                    source: e,
                })?,
            ),
            None => None,
        };
        let access_log =
            match &conf.access_log {
                Some(p) => Some(AccessLog::open(p, conf.access_log_keep_days).map_err(|e| {
                    HttpError::Io {
                        path: p.clone(),
                        source: e,
                    }
                })?),
                None => None,
            };
        Ok(Gateway {
            inner: Arc::new(Inner {
                upstreams: Upstreams::new(conf.max_fails, conf.fail_timeout),
                cache_control: (conf.expires > Duration::ZERO)
                    .then(|| format!("max-age={}", conf.expires.as_secs()))
                    .and_then(|v| HeaderValue::from_str(&v).ok()),
                conf,
                cache,
                counters: Counters::default(),
                started: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                access_log,
            }),
        })
    }

    /// Reopens the access log (SIGHUP, after logrotate moved it); `Ok`
    /// without one.
    pub fn reopen_access_log(&self) -> std::io::Result<()> {
        match &self.inner.access_log {
            Some(log) => log.reopen(),
            None => Ok(()),
        }
    }

    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    pub fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    /// Asks the trackers (first that answers) for every group's ACTIVE
    /// storages and installs that view.
    pub async fn refresh(&self) -> Result<(), HttpError> {
        let c = &self.inner.conf;
        let mut last = HttpError::Tracker("no tracker_server configured".into());
        for t in &c.tracker_servers {
            let addr = match resolve(&t.host, t.port).await {
                Ok(a) => a,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let result = async {
                let mut conn =
                    TrackerConn::connect(addr, c.connect_timeout, c.network_timeout).await?;
                let groups = conn.groups().await?;
                conn.quit().await;
                Ok::<_, HttpError>(groups)
            }
            .await;
            match result {
                Ok(groups) => {
                    let mut view = HashMap::new();
                    for g in groups {
                        let addrs = g
                            .active_ips
                            .iter()
                            .filter_map(|ip| ip.parse::<IpAddr>().ok())
                            .map(|ip| SocketAddr::new(ip, c.storage_http_port))
                            .collect();
                        view.insert(g.group, addrs);
                    }
                    tracing::debug!(tracker = %addr, groups = view.len(), "membership refreshed");
                    self.inner.upstreams.set(view);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(tracker = %addr, error = %e, "tracker query failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Whether some tracker answers ACTIVE_TEST.
    pub async fn tracker_reachable(&self) -> bool {
        let c = &self.inner.conf;
        for t in &c.tracker_servers {
            let Ok(addr) = resolve(&t.host, t.port).await else {
                continue;
            };
            if let Ok(mut conn) =
                TrackerConn::connect(addr, c.connect_timeout, c.network_timeout).await
            {
                if conn.active_test().await.is_ok() {
                    conn.quit().await;
                    return true;
                }
            }
        }
        false
    }

    /// Serves until `shutdown` completes. Runs the membership refresher
    /// and the cache sweeper meanwhile.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "no tracker answered yet; will retry");
        }
        let refresher = {
            let gw = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(gw.inner.conf.refresh_interval).await;
                    if let Err(e) = gw.refresh().await {
                        tracing::warn!(error = %e, "membership refresh failed; keeping the old view");
                    }
                }
            })
        };
        let sweeper = {
            let gw = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(gw.inner.conf.cache_sweep_interval).await;
                    if gw.inner.cache.is_some() {
                        let gw2 = gw.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Some(c) = gw2.inner.cache.as_ref() {
                                c.sweep();
                            }
                        })
                        .await;
                    }
                }
            })
        };
        let limits = Limits {
            header_read_timeout: self.inner.conf.network_timeout,
            idle_timeout: self.inner.conf.network_timeout,
            drain_timeout: self.inner.conf.network_timeout,
            workers: self.inner.conf.workers,
        };
        let gw = self.clone();
        let handler: server::Handler = Arc::new(move |req, info| {
            let gw = gw.clone();
            Box::pin(async move {
                let Some(log) = &gw.inner.access_log else {
                    return gw.handle(req, info).await;
                };
                let started = AccessLog::start(&req, info.peer);
                let resp = gw.handle(req, info).await;
                log.write(started, &resp);
                resp
            })
        });
        let r = server::serve(listener, shutdown, limits, handler).await;
        refresher.abort();
        sweeper.abort();
        r
    }

    async fn handle(&self, req: Request<()>, info: ConnInfo) -> Response<Body> {
        let path = req.uri().path();
        if path == "/healthz" {
            return if self.tracker_reachable().await {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "no tracker reachable")
            };
        }
        if let Some(rest) = path.strip_prefix("/purge") {
            return self.purge(&req, rest, info);
        }
        if path == "/metrics" {
            if !self
                .inner
                .conf
                .purge_allow
                .allows(canonical(info.peer.ip()))
            {
                return text(StatusCode::FORBIDDEN, "forbidden");
            }
            return Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(crate::body::full(self.metrics()))
                .expect("static response");
        }
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"),
        };
        let group = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map_or("", |(g, _)| g);
        if let Err(e) = parse_request_path(path, group, true) {
            tracing::info!(peer = %info.peer, path = %path, error = %e, "bad request path");
            return text(StatusCode::BAD_REQUEST, "bad file path");
        }
        let key = cache_key(req.uri());
        if let Some(r) = self.serve_cached(&req, &key, head) {
            return r;
        }
        let plan = self.inner.upstreams.plan(group);
        if plan.is_empty() {
            self.inner
                .counters
                .unanswered
                .fetch_add(1, Ordering::Relaxed);
            return if self.inner.upstreams.has_group(group) {
                text(StatusCode::BAD_GATEWAY, "no active storage in the group")
            } else {
                text(StatusCode::NOT_FOUND, "unknown group")
            };
        }
        let cacheable =
            self.inner.cache.is_some() && !head && !req.headers().contains_key(header::RANGE);
        for addr in plan {
            match self.try_upstream(&req, addr, info, cacheable).await {
                Ok(resp) if matches!(resp.status().as_u16(), 502 | 504) => {
                    tracing::warn!(upstream = %addr, status = %resp.status(), "upstream error, trying the next");
                    self.inner
                        .counters
                        .upstream_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.inner.upstreams.report_failure(addr);
                }
                Ok(resp) => {
                    self.inner.upstreams.report_success(addr);
                    return self.finish(resp, &key, cacheable);
                }
                Err(e) => {
                    tracing::warn!(upstream = %addr, error = %e, "upstream failed, trying the next");
                    self.inner
                        .counters
                        .upstream_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.inner.upstreams.report_failure(addr);
                }
            }
        }
        self.inner
            .counters
            .unanswered
            .fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_GATEWAY, "no storage answered")
    }

    fn purge(&self, req: &Request<()>, rest: &str, info: ConnInfo) -> Response<Body> {
        let peer = canonical(info.peer.ip());
        if !self.inner.conf.purge_allow.allows(peer) {
            tracing::info!(peer = %peer, "purge refused");
            return text(StatusCode::FORBIDDEN, "forbidden");
        }
        if !rest.starts_with('/') {
            return text(StatusCode::NOT_FOUND, "not cached");
        }
        let key = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        match &self.inner.cache {
            Some(c) if c.purge(&key) => {
                tracing::info!(key = %key, peer = %peer, "purged");
                text(StatusCode::OK, "purged")
            }
            _ => text(StatusCode::NOT_FOUND, "not cached"),
        }
    }

    fn serve_cached(&self, req: &Request<()>, key: &str, head: bool) -> Option<Response<Body>> {
        // Inline, as before: a cache hit is the page cache, and a small
        // body comes with the header read (see `Cache::lookup_content`).
        let (meta, content) = self.inner.cache.as_ref()?.lookup_content(key, !head)?;
        let fm = FileMeta {
            size: meta.body_len,
            last_modified: meta.last_modified,
            content_type: HeaderValue::from_maybe_shared(bytes::Bytes::from(meta.content_type))
                .ok(),
        };
        let opts = ServeOpts {
            head,
            multi_range: true,
            download_name: None,
            // A seek answer from a storage is cached under its own URL.
            flv_seek: None,
        };
        let mut r = fileserve::respond(req.headers(), &fm, content, &opts);
        // Content-Disposition from a `filename` parameter is part of the key,
        // so re-derive it the way the storage did.
        if let Some(name) =
            crate::query::get(&crate::query::parse_query(req.uri().query()), "filename")
        {
            if !name.is_empty() {
                let safe: String = name
                    .chars()
                    .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
                    r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
                }
            }
        }
        self.decorate(&mut r, "HIT");
        self.inner
            .counters
            .from_cache
            .fetch_add(1, Ordering::Relaxed);
        Some(r)
    }

    async fn try_upstream(
        &self,
        req: &Request<()>,
        addr: SocketAddr,
        info: ConnInfo,
        cacheable: bool,
    ) -> Result<Response<Incoming>, HttpError> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut out = Request::builder().method(req.method().clone()).uri(pq);
        let host =
            req.headers().get(header::HOST).cloned().unwrap_or_else(|| {
                HeaderValue::from_str(&addr.to_string()).expect("ascii address")
            });
        out = out.header(header::HOST, host);
        out = out.header("X-Real-IP", info.peer.ip().to_string());
        let xff = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", info.peer.ip()),
            None => info.peer.ip().to_string(),
        };
        out = out.header("X-Forwarded-For", xff);
        if !cacheable {
            for h in FORWARD_REQ {
                if let Some(v) = req.headers().get(h) {
                    out = out.header(h, v);
                }
            }
        }
        let out = out
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| HttpError::Upstream(e.to_string()))?;
        let c = &self.inner.conf;
        fetch(addr, out, c.connect_timeout, c.network_timeout).await
    }

    fn finish(&self, resp: Response<Incoming>, key: &str, cacheable: bool) -> Response<Body> {
        let (parts, incoming) = resp.into_parts();
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = match (cacheable && parts.status == StatusCode::OK, len) {
            (true, Some(len)) => {
                let content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let last_modified = parts
                    .headers
                    .get(header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.tee(incoming, key.to_owned(), content_type, last_modified, len)
            }
            _ => incoming
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed_unsync(),
        };
        let mut r = Response::new(body);
        *r.status_mut() = parts.status;
        for h in FORWARD_RESP {
            if let Some(v) = parts.headers.get(h) {
                r.headers_mut().insert(h, v.clone());
            }
        }
        self.decorate(&mut r, "MISS");
        self.inner
            .counters
            .from_storage
            .fetch_add(1, Ordering::Relaxed);
        r
    }

    /// The `/metrics` page.
    fn metrics(&self) -> String {
        let mut e = Exposition::new();
        let c = &self.inner.counters;
        let help = "File requests answered, by where the answer came from.";
        for (source, n) in [
            ("cache", &c.from_cache),
            ("storage", &c.from_storage),
            ("none", &c.unanswered),
        ] {
            e.counter(
                "fdfs_gateway_responses",
                help,
                &[("source", source)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
        e.counter(
            "fdfs_gateway_upstream_failures",
            "Storage servers that failed a request (the next one was tried).",
            &[],
            c.upstream_failures.load(Ordering::Relaxed) as f64,
        );
        if let Some(cache) = &self.inner.cache {
            let (bytes, entries) = cache.usage();
            e.gauge(
                "fdfs_gateway_cache_bytes",
                "Bytes in the disk cache.",
                &[],
                bytes as f64,
            );
            e.gauge(
                "fdfs_gateway_cache_entries",
                "Responses in the disk cache.",
                &[],
                entries as f64,
            );
        }
        for (group, servers, down) in self.inner.upstreams.snapshot() {
            e.gauge(
                "fdfs_gateway_group_servers",
                "ACTIVE storage servers of a group, as the trackers list them.",
                &[("group", &group)],
                servers as f64,
            );
            e.gauge(
                "fdfs_gateway_group_servers_down",
                "Of those, the ones out of rotation after failures.",
                &[("group", &group)],
                down as f64,
            );
        }
        process(&mut e, self.inner.started);
        e.finish()
    }

    /// Streams the upstream body to the client while writing it to the
    /// cache; the entry is published only if the body arrived whole.
    fn tee(
        &self,
        mut incoming: Incoming,
        key: String,
        content_type: String,
        last_modified: u64,
        len: u64,
    ) -> Body {
        let (tx, rx) = mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let gw = self.clone();
        tokio::spawn(async move {
            let cache = gw.inner.cache.as_ref().expect("tee only with a cache");
            let mut writer = match cache.begin(&key, &content_type, last_modified, len).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write to the cache");
                    None
                }
            };
            loop {
                match incoming.frame().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if let Some(w) = writer.as_mut() {
                            if let Err(e) = w.write(&data).await {
                                tracing::warn!(error = %e, "cache write failed; not caching");
                                writer = None;
                            }
                        }
                        if tx.send(Ok(data)).await.is_err() {
                            // Client gone: drop the partial entry too.
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                    None => break,
                }
            }
            if let Some(w) = writer {
                match cache.commit(w).await {
                    Ok(true) => tracing::debug!(key = %key, "cached"),
                    Ok(false) => tracing::warn!(key = %key, "short upstream body, not cached"),
                    Err(e) => tracing::warn!(key = %key, error = %e, "cache commit failed"),
                }
            }
        });
        ChannelBody::new(rx, Some(len)).boxed_unsync()
    }

    fn decorate(&self, r: &mut Response<Body>, cache_status: &'static str) {
        let h = r.headers_mut();
        if self.inner.cache.is_some() {
            h.insert("X-Cache", HeaderValue::from_static(cache_status));
        }
        if let Some(v) = &self.inner.cache_control {
            if r.status() == StatusCode::OK {
                r.headers_mut().insert(header::CACHE_CONTROL, v.clone());
            }
        }
    }
}

/// nginx's `$uri$is_args$args`.
fn cache_key(uri: &http::Uri) -> String {
    match uri.query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_owned(),
    }
}

/// IPv4-mapped IPv6 peers (dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, HttpError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| HttpError::Tracker(format!("{host}: {e}")))?
        .next()
        .ok_or_else(|| HttpError::Tracker(format!("{host}: no address")))
}

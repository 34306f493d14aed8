//! The storage-side HTTP server: what nginx + fastdfs-nginx-module does on
//! each storage host (PROTOCOL.md §10).
//!
//! ```no_run
//! # async fn f(conf: fdfs_conf::StorageConf) -> Result<(), Box<dyn std::error::Error>> {
//! use fdfs_http::storage::{StorageHttp, StorageHttpConfig};
//! let cfg = StorageHttpConfig::from_confs(&conf, None)?;
//! let listener = tokio::net::TcpListener::bind(("0.0.0.0", conf.http_server_port)).await?;
//! let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! StorageHttp::new(cfg).serve(listener, async { let _ = stop_rx.await; }).await?;
//! # Ok(()) }
//! ```

mod config;
mod path;

pub use config::{
    peers_from_ids, MaxDelaySource, PeerAddr, PeerSource, StorageHttpConfig, TokenConf,
};
pub use path::{parse_request_path, PathError, RequestPath};

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fdfs_conf::ResponseMode;
use fdfs_proto::file_id::{FileKind, SourceServer};
use fdfs_proto::{trunk, LogicName};
use fdfs_runtime::metrics::Exposition;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::body::{self, Body, Content};
use crate::fileserve::{self, text, FileMeta, FlvSeek, ServeOpts};
use crate::query;
use crate::server::{self, ConnInfo, Limits};
use crate::timeout_io::TimeoutIo;
use crate::token::{check_token, TokenError};

/// The storage HTTP server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StorageHttp {
    inner: Arc<StorageHttpConfig>,
    stats: Arc<HttpStats>,
    access_log: Option<Arc<AccessLog>>,
}

/// Status codes counted on their own; the rest count as "other".
const COUNTED: [u16; 12] = [200, 206, 302, 304, 400, 403, 404, 405, 416, 500, 502, 503];

/// What the storage HTTP server answered, for the storage's `/metrics`.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// By status: [`COUNTED`], then other.
    responses: [AtomicU64; COUNTED.len() + 1],
    /// Content bytes of the 200 and 206 answers to GET.
    content_bytes: AtomicU64,
}

impl HttpStats {
    fn record(&self, method: &Method, resp: &Response<Body>) {
        let code = resp.status().as_u16();
        let i = COUNTED
            .iter()
            .position(|&c| c == code)
            .unwrap_or(COUNTED.len());
        self.responses[i].fetch_add(1, Ordering::Relaxed);
        if method == Method::GET && matches!(code, 200 | 206) {
            let len = resp
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            self.content_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }

    /// Adds the families `fdfs_storage_http_responses` (by code) and
    /// `fdfs_storage_http_content_bytes` to `e`.
    pub fn write(&self, e: &mut Exposition) {
        let help = "HTTP requests answered by the storage, by status code.";
        for (i, n) in self.responses.iter().enumerate() {
            let code = COUNTED
                .get(i)
                .map_or_else(|| "other".to_owned(), u16::to_string);
            e.counter(
                "fdfs_storage_http_responses",
                help,
                &[("code", &code)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
        e.counter(
            "fdfs_storage_http_content_bytes",
            "File bytes in the storage's HTTP answers to GET (200 and 206), as announced.",
            &[],
            self.content_bytes.load(Ordering::Relaxed) as f64,
        );
    }
}

impl StorageHttp {
    pub fn new(cfg: StorageHttpConfig) -> StorageHttp {
        StorageHttp {
            inner: Arc::new(cfg),
            stats: Arc::default(),
            access_log: None,
        }
    }

    /// Writes a line per request to `log` (nginx's combined format, as the
    /// nginx that served storages in the deployment guide wrote).
    pub fn with_access_log(mut self, log: AccessLog) -> StorageHttp {
        self.access_log = Some(Arc::new(log));
        self
    }

    /// Its counters (shared: they go on counting while it serves).
    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }

    /// Serves HTTP on `listener` until `shutdown` completes; then stops
    /// accepting and gives running downloads `network_timeout` to finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let cfg = self.inner.clone();
        let our_port = listener.local_addr()?.port();
        let limits = Limits {
            header_read_timeout: cfg.header_read_timeout,
            idle_timeout: cfg.network_timeout,
            drain_timeout: cfg.network_timeout,
            workers: cfg.workers,
        };
        let stats = self.stats.clone();
        let log = self.access_log.clone();
        let handler: server::Handler = Arc::new(move |req, info| {
            let (cfg, stats, log) = (cfg.clone(), stats.clone(), log.clone());
            Box::pin(async move {
                let method = req.method().clone();
                let started = log.as_ref().map(|_| AccessLog::start(&req, info.peer));
                let resp = handle(&cfg, req, info, our_port).await;
                stats.record(&method, &resp);
                if let (Some(log), Some(started)) = (&log, started) {
                    log.write(started, &resp);
                }
                resp
            })
        });
        server::serve(listener, shutdown, limits, handler).await
    }
}

async fn handle(
    cfg: &StorageHttpConfig,
    req: Request<()>,
    info: ConnInfo,
    our_port: u16,
) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    let path = cfg
        .alias_prefix
        .as_deref()
        .and_then(|p| req.uri().path().strip_prefix(p))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(req.uri().path());
    let rp = match parse_request_path(path, &cfg.group_name, cfg.url_have_group_name) {
        Ok(p) => p,
        Err(PathError::OtherGroup(g)) => {
            tracing::info!(peer = %info.peer, group = %g, "request for another group");
            return text(StatusCode::NOT_FOUND, "not this group");
        }
        Err(e) => {
            tracing::info!(peer = %info.peer, path = %req.uri().path(), error = %e, "bad request path");
            return text(StatusCode::BAD_REQUEST, "bad file path");
        }
    };
    let logic = &rp.logic;
    if usize::from(logic.store_path) >= cfg.store_paths.len()
        || logic.check_subdirs(cfg.subdir_count_per_path).is_err()
    {
        tracing::info!(peer = %info.peer, file = %logic, "store path or subdir out of range");
        return text(StatusCode::BAD_REQUEST, "bad file path");
    }
    let q = query::parse_query(req.uri().query());
    if let Some(tc) = &cfg.token {
        let now = unix_now();
        if let Err(e) = check_token(
            &logic.to_string(),
            &tc.secret_key,
            tc.ttl,
            query::get(&q, "token"),
            query::get(&q, "ts"),
            now,
        ) {
            tracing::info!(peer = %info.peer, file = %logic, reason = ?e, "token check failed");
            return token_failure(cfg, tc.check_fail_file.as_ref(), e, head).await;
        }
    }
    let opts = ServeOpts {
        head,
        multi_range: cfg.multi_range_enabled,
        download_name: query::get(&q, "filename")
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        flv_seek: cfg
            .flv_extension
            .as_deref()
            .filter(|ext| logic.ext().eq_ignore_ascii_case(ext))
            .and_then(|_| FlvSeek::from_params(query::get(&q, "start"), query::get(&q, "end"))),
    };
    let content_type = if cfg.need_find_content_type {
        cfg.mime.lookup_value(logic.ext())
    } else {
        cfg.mime.default_value()
    };
    // A file the name says is small is opened and read inline, like the
    // storage service does: it hits the page cache and costs less than
    // handing the work to another thread (the futex wake-ups of that were
    // most of a small request's cost). Others are opened in the blocking
    // pool and streamed from it.
    let store = &cfg.store_paths[usize::from(logic.store_path)];
    let opened = if logic
        .info
        .file_size()
        .is_some_and(|s| s <= body::SMALL_FILE)
    {
        open_local(store, logic, !head)
    } else {
        let (store, l) = (store.clone(), logic.clone());
        tokio::task::spawn_blocking(move || open_local(&store, &l, !head))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    match opened {
        Ok(Some((content, size, mtime))) => {
            let meta = FileMeta {
                size,
                last_modified: mtime,
                content_type,
            };
            return fileserve::respond(req.headers(), &meta, content, &opts);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(file = %logic, error = %e, "cannot read local file");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "read error");
        }
    }
    not_here(cfg, req, info, our_port, &rp, &q).await
}

/// Opens the file if it is here (blocking): (content, size, mtime for
/// Last-Modified). `None` when absent (or a trunk slot that does not match).
/// With `preload`, a file up to [`body::SMALL_FILE`] is read whole.
fn open_local(
    store: &Path,
    logic: &LogicName,
    preload: bool,
) -> std::io::Result<Option<(Content, u64, u64)>> {
    // `<store>/data/HH/HH/` built in one buffer (this runs per request).
    let mut dir =
        std::ffi::OsString::with_capacity(store.as_os_str().len() + 16 + logic.name.len());
    dir.push(store.as_os_str());
    dir.push("/data/");
    dir.push(hex2(logic.sub_high).as_str());
    dir.push("/");
    dir.push(hex2(logic.sub_low).as_str());
    dir.push("/");
    let mut dir = PathBuf::from(dir);
    if let FileKind::Trunk(slot) = logic.kind {
        let path = dir.join(trunk::file_name(&slot));
        let Some((f, md)) = open_regular(&path)? else {
            return Ok(None);
        };
        let mut h = [0u8; trunk::HEADER_LEN];
        if f.read_exact_at(&mut h, u64::from(slot.offset)).is_err() {
            return Ok(None);
        }
        let header = trunk::SlotHeader::decode(&h);
        let Some((base, size)) = trunk::content_of(&header, logic, md.len()) else {
            return Ok(None);
        };
        return Ok(Some((
            load(f, base, size, preload)?,
            size,
            u64::from(logic.info.timestamp),
        )));
    }
    dir.push(&logic.name);
    let Some((f, md)) = open_regular(&dir)? else {
        return Ok(None);
    };
    // The name's timestamp is the creation time of normal files; appenders
    // and slaves change or were made later, so their mtime is the truth.
    let mtime = match logic.kind {
        FileKind::Normal | FileKind::Trunk(_) => u64::from(logic.info.timestamp),
        _ => md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    Ok(Some((load(f, 0, md.len(), preload)?, md.len(), mtime)))
}

/// Two upper-case hex digits, as in store path directory names.
fn hex2(b: u8) -> Hex2 {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    Hex2([DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
}

struct Hex2([u8; 2]);

impl Hex2 {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// The content of `file` from `base`: read now when small and wanted.
fn load(file: std::fs::File, base: u64, size: u64, preload: bool) -> std::io::Result<Content> {
    if preload && size <= body::SMALL_FILE {
        let mut buf = vec![0u8; size as usize];
        file.read_exact_at(&mut buf, base)?;
        Ok(Content::Memory(buf.into()))
    } else {
        Ok(Content::File { file, base })
    }
}

fn open_regular(path: &Path) -> std::io::Result<Option<(std::fs::File, std::fs::Metadata)>> {
    match std::fs::File::open(path) {
        Ok(f) => {
            let md = f.metadata()?;
            if md.is_file() {
                Ok(Some((f, md)))
            } else {
                Ok(None)
            }
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(20 /* ENOTDIR */) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn token_failure(
    cfg: &StorageHttpConfig,
    fail_file: Option<&PathBuf>,
    e: TokenError,
    head: bool,
) -> Response<Body> {
    if let Some(p) = fail_file {
        match tokio::fs::read(p).await {
            Ok(content) => {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                let len = content.len();
                let mut r = Response::new(if head {
                    body::empty()
                } else {
                    body::full(content)
                });
                let h = r.headers_mut();
                if let Ok(v) = HeaderValue::from_str(cfg.mime.lookup(ext)) {
                    h.insert(header::CONTENT_TYPE, v);
                }
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                return r;
            }
            Err(err) => {
                tracing::warn!(file = %p.display(), error = %err, "cannot read token_check_fail file");
            }
        }
    }
    match e {
        TokenError::Missing => text(StatusCode::BAD_REQUEST, "token required"),
        TokenError::Expired => text(StatusCode::FORBIDDEN, "token expired"),
        TokenError::Invalid => text(StatusCode::FORBIDDEN, "invalid token"),
    }
}

/// §10.2 steps 3–6: the file is not here.
async fn not_here(
    cfg: &StorageHttpConfig,
    req: Request<()>,
    info: ConnInfo,
    our_port: u16,
    rp: &RequestPath,
    q: &[(String, String)],
) -> Response<Body> {
    let logic = &rp.logic;
    let peers = cfg.peers.as_ref().map(|p| p());
    let source_ip: Option<IpAddr> = match logic.info.source {
        SourceServer::Ip(ip) => Some(IpAddr::V4(ip)),
        SourceServer::Id(id) => peers.as_ref().and_then(|ps| {
            let id = id.to_string();
            ps.iter().find(|p| p.id == id).map(|p| p.ip)
        }),
    };
    let is_local = source_ip.is_some_and(|ip| is_local_ip(cfg, ip, info.local.ip()));
    let ts = u64::from(logic.info.timestamp);
    let max_delay = cfg
        .max_delay_source
        .as_ref()
        .and_then(|f| f())
        .unwrap_or(cfg.storage_sync_file_max_delay);
    let old = ts > 0 && unix_now().saturating_sub(ts) > max_delay.as_secs();
    if is_local || old {
        tracing::info!(file = %logic, is_local, old, "file not found");
        return text(StatusCode::NOT_FOUND, "file not found");
    }
    if query::get(q, "redirect").is_some() {
        tracing::info!(file = %logic, peer = %info.peer, "miss on a redirected request");
        return text(
            StatusCode::BAD_REQUEST,
            "file not found on the source either",
        );
    }
    let Some(source_ip) = source_ip else {
        tracing::warn!(file = %logic, source = %logic.info.source, "unknown source server id");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "unknown source server");
    };
    if let Some(ps) = &peers {
        // With a known membership, only ever send clients to our own group:
        // a forged file ID must not turn us into a proxy to anywhere.
        if !ps.is_empty() && !ps.iter().any(|p| p.ip == source_ip) {
            tracing::info!(file = %logic, source = %source_ip, "source is not a member of the group");
            return text(StatusCode::NOT_FOUND, "file not found");
        }
    }
    let port = cfg.peer_http_port.unwrap_or(our_port);
    let target = SocketAddr::new(source_ip, port);
    let pq = with_redirect_flag(req.uri());
    match cfg.response_mode {
        ResponseMode::Redirect => {
            let host = match source_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            let loc = if port == 80 {
                format!("http://{host}{pq}")
            } else {
                format!("http://{host}:{port}{pq}")
            };
            tracing::debug!(file = %logic, location = %loc, "redirecting to the source server");
            let mut r = text(StatusCode::FOUND, "found");
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        ResponseMode::Proxy => match proxy(cfg, &req, target, &pq).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(file = %logic, source = %target, error = %e, "proxy to source failed");
                text(StatusCode::BAD_GATEWAY, "source server unreachable")
            }
        },
    }
}

/// Whether `ip` is one of this host's addresses: the one the request came
/// in on, a configured one, or (not for loopback, where every 127.x is
/// local and tests run several servers) any address a socket can bind.
fn is_local_ip(cfg: &StorageHttpConfig, ip: IpAddr, arrived_on: IpAddr) -> bool {
    ip == arrived_on
        || cfg.local_ips.contains(&ip)
        || (!ip.is_loopback()
            && !ip.is_unspecified()
            && std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
}

/// The request's path and query with `redirect=1` added.
fn with_redirect_flag(uri: &http::Uri) -> String {
    match uri.query() {
        Some(q) if !q.is_empty() => format!("{}?{}&redirect=1", uri.path(), q),
        _ => format!("{}?redirect=1", uri.path()),
    }
}

/// Headers passed from the client to the source and back.
const FORWARD_REQ: &[header::HeaderName] = &[
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];
const FORWARD_RESP: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_DISPOSITION,
    header::LAST_MODIFIED,
    header::ETAG,
    header::ACCEPT_RANGES,
];

async fn proxy(
    cfg: &StorageHttpConfig,
    req: &Request<()>,
    target: SocketAddr,
    path_and_query: &str,
) -> Result<Response<Body>, crate::HttpError> {
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path_and_query)
        .header(header::HOST, target.to_string());
    for h in FORWARD_REQ {
        if let Some(v) = req.headers().get(h) {
            out = out.header(h, v);
        }
    }
    let out = out
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| crate::HttpError::Upstream(e.to_string()))?;
    let resp = fetch(target, out, cfg.connect_timeout, cfg.network_timeout).await?;
    let (parts, incoming) = resp.into_parts();
    let mut r = Response::new(
        incoming
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed_unsync(),
    );
    *r.status_mut() = parts.status;
    for h in FORWARD_RESP {
        if let Some(v) = parts.headers.get(h) {
            r.headers_mut().insert(h, v.clone());
        }
    }
    Ok(r)
}

/// One HTTP/1.1 request to `target` on a new connection, with a connect
/// timeout, a timeout for the response head and an idle timeout on the body.
pub(crate) async fn fetch(
    target: SocketAddr,
    req: Request<http_body_util::Empty<bytes::Bytes>>,
    connect_timeout: Duration,
    network_timeout: Duration,
) -> Result<Response<Incoming>, crate::HttpError> {
    let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| crate::HttpError::Upstream(format!("connect to {target} timed out")))?
        .map_err(|e| crate::HttpError::Upstream(format!("connect to {target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let io = TimeoutIo::new(stream, network_timeout);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| crate::HttpError::Upstream(format!("{target}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%target, error = %e, "upstream connection ended");
        }
    });
    tokio::time::timeout(network_timeout, sender.send_request(req))
        .await
        .map_err(|_| crate::HttpError::Upstream(format!("{target}: response timed out")))?
        .map_err(|e| crate::HttpError::Upstream(format!("{target}: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

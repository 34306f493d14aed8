//! An async FastDFS client (tokio): tracker queries, uploads, downloads,
//! metadata and appender-file operations, wire-compatible with FastDFS
//! V6.16.1 servers and with ours.
//!
//! The client asks a tracker where to store or fetch a file (PROTOCOL.md
//! §3), then talks to that storage server (§4). Trackers are used
//! round-robin; a tracker that cannot be reached or times out is skipped
//! for the next one. Connections are pooled per server address when the
//! pool is enabled: a connection idle for more than a few seconds is
//! checked with ACTIVE_TEST before reuse, and a connection that saw any
//! error is closed, never pooled. File contents are streamed in both
//! directions; a transfer never holds a whole file in memory unless the
//! caller asks for a `Vec<u8>`.
//!
//! Every message is encoded and decoded with [`fdfs_proto`]; this crate
//! only moves bytes. It must not re-implement wire layouts, and must not
//! touch the network for a file id that does not parse
//! ([`Error::BadFileId`]).
//!
//! ```no_run
//! use fdfs_client::{Client, ClientOptions, UploadOptions};
//!
//! # async fn demo() -> Result<(), fdfs_client::Error> {
//! let client = Client::new(vec!["127.0.0.1:22122".parse().unwrap()], ClientOptions::default())?;
//! let id = client.upload(b"hello", &UploadOptions::new().ext("txt")).await?;
//! println!("stored as {id}");
//! let back = client.download(&id.to_string()).await?;
//! assert_eq!(back, b"hello");
//! let part = client.download_range(&id.to_string(), 1, 3).await?;
//! assert_eq!(part, b"ell");
//! client.delete(&id.to_string()).await?;
//! match client.download(&id.to_string()).await {
//!     Err(e) if e.is_not_found() => println!("gone: {e}"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

mod conn;
mod error;
mod storage;
mod tracker;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fdfs_conf::ClientConf;
use fdfs_proto::common::ServerAddr;
use fdfs_proto::tracker::FileReq;
use fdfs_proto::{cmd, DecodeError, FileId, GroupName};

pub use error::{Error, Result};
pub use fdfs_proto as proto;
pub use fdfs_proto::metadata::MetaPair;
pub use fdfs_proto::storage::{FileInfoResp as FileInfo, MetaOp};
pub use fdfs_proto::tracker::{GroupStat, StorageStat};
pub use storage::{ext_of_path, UploadOptions};
pub use tracker::{StoreTarget, StoreTargets};

use conn::{Pool, PoolConf, PooledConn, Timeouts};

/// Connection settings. `Default` matches client.conf's built-in defaults,
/// except that pooling is on.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Limit for each single socket read or write.
    pub network_timeout: Duration,
    pub use_connection_pool: bool,
    /// Pooled connections idle longer than this are closed.
    pub pool_max_idle_time: Duration,
    /// Pooled connections idle longer than this are checked with
    /// ACTIVE_TEST before reuse.
    pub active_test_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            network_timeout: Duration::from_secs(60),
            use_connection_pool: true,
            pool_max_idle_time: Duration::from_secs(3600),
            active_test_after: Duration::from_secs(5),
        }
    }
}

/// A FastDFS client. Cheap to clone; clones share the tracker rotation and
/// the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    trackers: Vec<SocketAddr>,
    next_tracker: AtomicUsize,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("trackers", &self.inner.trackers)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the given trackers (at least one).
    pub fn new(trackers: Vec<SocketAddr>, opts: ClientOptions) -> Result<Client> {
        if trackers.is_empty() {
            return Err(Error::NoTracker("the tracker list is empty".into()));
        }
        let pool = Pool::new(
            PoolConf {
                enabled: opts.use_connection_pool,
                max_idle: opts.pool_max_idle_time,
                test_after: opts.active_test_after,
            },
            Timeouts {
                connect: opts.connect_timeout,
                network: opts.network_timeout,
            },
        );
        Ok(Client {
            inner: Arc::new(Inner {
                trackers,
                next_tracker: AtomicUsize::new(0),
                pool,
            }),
        })
    }

    /// A client configured by client.conf (timeouts, pool, trackers).
    pub fn from_conf(conf: &ClientConf) -> Result<Client> {
        let opts = ClientOptions {
            connect_timeout: conf.connect_timeout,
            network_timeout: conf.network_timeout,
            use_connection_pool: conf.use_connection_pool,
            pool_max_idle_time: conf.connection_pool_max_idle_time,
            ..ClientOptions::default()
        };
        Client::from_host_ports(&conf.tracker_servers, opts)
    }

    /// A client for `tracker_server` entries as any conf file lists them
    /// (client.conf, storage.conf). Host names are resolved now; a dual
    /// address `ip1,ip2` contributes both addresses as tracker candidates.
    pub fn from_host_ports(list: &[fdfs_conf::HostPort], opts: ClientOptions) -> Result<Client> {
        let mut trackers = Vec::new();
        let mut failures = Vec::new();
        for hp in list {
            for host in hp.host.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                let one = fdfs_conf::HostPort {
                    host: host.to_owned(),
                    port: hp.port,
                };
                match one.to_socket_addr() {
                    Ok(a) if !trackers.contains(&a) => trackers.push(a),
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{one}: {e}")),
                }
            }
        }
        if trackers.is_empty() {
            let why = if failures.is_empty() {
                "no tracker_server in the configuration".to_owned()
            } else {
                failures.join("; ")
            };
            return Err(Error::NoTracker(why));
        }
        Client::new(trackers, opts)
    }

    /// The tracker addresses in rotation order.
    pub fn trackers(&self) -> &[SocketAddr] {
        &self.inner.trackers
    }

    /// Sends ACTIVE_TEST (111) to any server and waits for its empty reply.
    pub async fn active_test(&self, server: SocketAddr) -> Result<()> {
        let mut c = self.conn(server, "ACTIVE_TEST").await?;
        c.active_test().await
    }

    async fn conn(&self, addr: SocketAddr, op: &'static str) -> Result<PooledConn> {
        self.inner.pool.get(addr, op).await
    }

    /// A connection for a streamed request, which cannot be repeated once
    /// the source has been read: a pooled connection reused without a test
    /// gets an ACTIVE_TEST first, and is replaced if it fails.
    async fn conn_checked(&self, addr: SocketAddr, op: &'static str) -> Result<PooledConn> {
        let mut c = self.conn(addr, op).await?;
        if c.untested_reuse {
            if let Err(e) = c.active_test().await {
                tracing::debug!(server = %addr, error = %e, "pooled connection was stale; reconnecting");
                drop(c);
                return self.inner.pool.connect(addr, op).await;
            }
        }
        Ok(c)
    }

    /// Sends a request with an in-memory body and reads the reply header.
    /// With `retry` (idempotent requests), a network error on a pooled
    /// connection that was reused without a test is retried once on a new
    /// connection: the old socket was most likely closed by the server while
    /// idle. Without it, such a connection is checked with ACTIVE_TEST
    /// first, so a request that changes something is never sent twice.
    async fn exchange(
        &self,
        addr: SocketAddr,
        req: Req<'_>,
        limit: u64,
        retry: bool,
    ) -> Result<(PooledConn, fdfs_proto::Header)> {
        let Req { code, status, body } = req;
        let op = cmd::name(code);
        let mut c = if retry {
            self.conn(addr, op).await?
        } else {
            self.conn_checked(addr, op).await?
        };
        let first = async {
            c.send_head(code, status, body.len() as u64, body).await?;
            c.recv_header(op, limit).await
        }
        .await;
        match first {
            Ok(h) => Ok((c, h)),
            Err(e) if retry && c.untested_reuse && e.is_network() => {
                drop(c);
                tracing::debug!(server = %addr, error = %e, "pooled connection was stale; retrying on a new one");
                let mut c = self.inner.pool.connect(addr, op).await?;
                c.send_head(code, status, body.len() as u64, body).await?;
                let h = c.recv_header(op, limit).await?;
                Ok((c, h))
            }
            Err(e) => Err(e),
        }
    }

    /// One request/response exchange with `addr`, body in memory. `retry`:
    /// see [`Client::exchange`]; only for requests that are safe to repeat.
    async fn call(
        &self,
        addr: SocketAddr,
        code: u8,
        status: u8,
        body: &[u8],
        retry: bool,
    ) -> Result<Vec<u8>> {
        let (mut c, h) = self
            .exchange(addr, Req { code, status, body }, conn::REPLY_LIMIT, retry)
            .await?;
        c.recv_body(cmd::name(code), h.pkg_len).await
    }

    /// Runs `code` against the trackers, starting with the next one in the
    /// rotation and moving on when one cannot be reached.
    async fn tracker_call(&self, code: u8, body: &[u8]) -> Result<(SocketAddr, Vec<u8>)> {
        let n = self.inner.trackers.len();
        let start = self.inner.next_tracker.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let addr = self.inner.trackers[(start + i) % n];
            match self.call(addr, code, 0, body, true).await {
                Ok(b) => return Ok((addr, b)),
                Err(e) if e.is_network() => {
                    if i + 1 < n {
                        tracing::warn!(tracker = %addr, error = %e, "tracker unreachable, trying the next one");
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one tracker was tried"))
    }
}

/// One request with an in-memory body (errors name it by its command).
struct Req<'a> {
    code: u8,
    status: u8,
    body: &'a [u8],
}

/// Parses a file id before any I/O.
fn parse_id(id: &str) -> Result<FileId> {
    FileId::parse(id).map_err(|source| Error::BadFileId {
        id: id.to_owned(),
        source,
    })
}

fn parse_group(g: &str) -> Result<GroupName> {
    GroupName::new(g).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// The body naming a file: group (16 bytes) and logic name, as the
/// tracker's fetch/update queries and the storage's file requests take it.
fn file_req_body(id: &FileId) -> Vec<u8> {
    let mut body = Vec::new();
    FileReq {
        group: id.group.clone(),
        filename: id.logic.clone(),
    }
    .encode(&mut body);
    body
}

/// A storage address from the reply of a tracker to `code`.
fn storage_addr(code: u8, tracker: SocketAddr, s: &ServerAddr) -> Result<SocketAddr> {
    let ip: IpAddr = s.ip.parse().map_err(|_| Error::Protocol {
        op: cmd::name(code),
        server: tracker,
        source: DecodeError::InvalidField {
            field: "storage ip",
            reason: format!("{:?} is not an IP address", s.ip),
        },
    })?;
    Ok(SocketAddr::new(ip, s.port))
}

/// A reply to `code` from `server` that does not decode.
fn decode_err(code: u8, server: SocketAddr) -> impl FnOnce(DecodeError) -> Error {
    move |source| Error::Protocol {
        op: cmd::name(code),
        server,
        source,
    }
}

#[cfg(test)]
mod tests;

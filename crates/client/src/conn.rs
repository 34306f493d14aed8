//! One TCP connection speaking request/response frames, and a per-address
//! pool of idle connections.
//!
//! Every socket operation runs under the network timeout (per read or
//! write, as upstream clients do, so a slow but moving transfer is not
//! cut). A connection goes back to the pool only when its last exchange
//! ended cleanly: any I/O error, timeout, malformed reply, or a status
//! after which the server closes (EINVAL) leaves it "dirty", and a dirty
//! connection is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fdfs_proto::{cmd, errno, Header, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Replies other than downloads are small; refuse absurd lengths instead of
/// allocating them.
pub(crate) const REPLY_LIMIT: u64 = 64 * 1024 * 1024;

/// Copy buffer for streamed bodies.
const CHUNK: usize = 256 * 1024;

/// Read buffer of a connection: a reply header and a small body arrive in
/// one `recv` instead of two. Bigger reads bypass it.
const READ_BUF: usize = 16 * 1024;

/// A body read into memory grows in steps of at most this much, so a
/// length announced by a broken server is not allocated up front.
const BODY_STEP: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub network: Duration,
}

pub(crate) struct Conn {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
    network_timeout: Duration,
    /// True when no exchange is half done and the server keeps the socket.
    clean: bool,
    last_used: Instant,
}

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr, t: Timeouts, op: &'static str) -> Result<Conn> {
        let stream = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(Error::Connect {
                    op,
                    server: addr,
                    source,
                })
            }
            Err(_) => {
                return Err(Error::Timeout {
                    op,
                    server: addr,
                    after: t.connect,
                })
            }
        };
        // Requests are small frames followed by bulk data; don't let Nagle
        // delay the head of a request.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::with_capacity(READ_BUF, stream),
            addr,
            network_timeout: t.network,
            clean: true,
            last_used: Instant::now(),
        })
    }

    pub(crate) async fn write_all(&mut self, op: &'static str, b: &[u8]) -> Result<()> {
        self.clean = false;
        let (addr, t) = (self.addr, self.network_timeout);
        timed(op, addr, t, self.stream.get_mut().write_all(b)).await
    }

    /// Sends a request header announcing `pkg_len` body bytes, then `body`
    /// (which may be only the first part of the body).
    pub(crate) async fn send_head(
        &mut self,
        code: u8,
        status: u8,
        pkg_len: u64,
        body: &[u8],
    ) -> Result<()> {
        let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
        buf.extend_from_slice(&Header::new(code, status, pkg_len).encode());
        buf.extend_from_slice(body);
        self.write_all(cmd::name(code), &buf).await
    }

    /// Copies exactly `size` bytes from `src` to the socket.
    pub(crate) async fn send_stream<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        op: &'static str,
        src: &mut R,
        size: u64,
    ) -> Result<()> {
        let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = src
                .read(&mut buf[..want])
                .await
                .map_err(|source| Error::Local {
                    what: format!("{op}: reading the content to send"),
                    source,
                })?;
            if n == 0 {
                return Err(Error::Local {
                    what: format!(
                        "{op}: the content ended {left} bytes before its announced size {size}"
                    ),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.write_all(op, &buf[..n]).await?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads a response header. A non-zero status becomes [`Error::Status`];
    /// the connection stays clean when the server keeps it open (no body,
    /// not EINVAL, PROTOCOL.md §1.2).
    pub(crate) async fn recv_header(&mut self, op: &'static str, limit: u64) -> Result<Header> {
        self.clean = false;
        let mut h = [0u8; HEADER_LEN];
        let (addr, t) = (self.addr, self.network_timeout);
        timed(op, addr, t, self.stream.read_exact(&mut h)).await?;
        let header = Header::decode(&h, limit).map_err(|source| Error::Protocol {
            op,
            server: self.addr,
            source,
        })?;
        if header.cmd != cmd::RESP {
            return Err(Error::Protocol {
                op,
                server: self.addr,
                source: fdfs_proto::DecodeError::InvalidField {
                    field: "response command",
                    reason: format!("{} is not RESP (100)", header.cmd),
                },
            });
        }
        if header.status != 0 {
            self.clean = header.pkg_len == 0 && header.status != errno::EINVAL;
            return Err(Error::Status {
                op,
                errno: header.status,
                server: self.addr,
            });
        }
        Ok(header)
    }

    /// Reads a whole body of `len` bytes. The network timeout applies to
    /// each read, so a slow but moving transfer is not cut.
    pub(crate) async fn recv_body(&mut self, op: &'static str, len: u64) -> Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| Error::Local {
            what: format!("{op}: a reply of {len} bytes does not fit in memory"),
            source: std::io::ErrorKind::OutOfMemory.into(),
        })?;
        let mut body = Vec::new();
        let mut done = 0;
        let (addr, t) = (self.addr, self.network_timeout);
        while done < len {
            if done == body.len() {
                let step = (len - done).min(BODY_STEP as usize);
                body.resize(done + step, 0);
            }
            let n = timed(op, addr, t, self.stream.read(&mut body[done..])).await?;
            if n == 0 {
                return Err(Error::Io {
                    op,
                    server: addr,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            done += n;
        }
        self.finish();
        Ok(body)
    }

    /// Copies a body of `len` bytes from the socket to `dst` in chunks.
    pub(crate) async fn recv_stream<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        op: &'static str,
        len: u64,
        dst: &mut W,
    ) -> Result<()> {
        let mut buf = vec![0u8; CHUNK.min(len.max(1) as usize)];
        let mut left = len;
        let (addr, t) = (self.addr, self.network_timeout);
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = timed(op, addr, t, self.stream.read(&mut buf[..want])).await?;
            if n == 0 {
                return Err(Error::Io {
                    op,
                    server: addr,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            dst.write_all(&buf[..n])
                .await
                .map_err(|source| Error::Local {
                    what: format!("{op}: writing the received content"),
                    source,
                })?;
            left -= n as u64;
        }
        dst.flush().await.map_err(|source| Error::Local {
            what: format!("{op}: writing the received content"),
            source,
        })?;
        self.finish();
        Ok(())
    }

    /// Marks the current exchange complete.
    pub(crate) fn finish(&mut self) {
        self.clean = true;
        self.last_used = Instant::now();
    }

    /// One whole request with an in-memory body and an in-memory reply.
    pub(crate) async fn request(&mut self, code: u8, status: u8, body: &[u8]) -> Result<Vec<u8>> {
        self.send_head(code, status, body.len() as u64, body)
            .await?;
        let op = cmd::name(code);
        let h = self.recv_header(op, REPLY_LIMIT).await?;
        self.recv_body(op, h.pkg_len).await
    }

    /// ACTIVE_TEST (111): an empty request that must get an empty reply.
    pub(crate) async fn active_test(&mut self) -> Result<()> {
        let body = self.request(cmd::ACTIVE_TEST, 0, &[]).await?;
        if !body.is_empty() {
            self.clean = false;
            return Err(Error::Protocol {
                op: "ACTIVE_TEST",
                server: self.addr,
                source: fdfs_proto::DecodeError::BadLength {
                    what: "active test reply",
                    got: body.len(),
                    expected: "0".into(),
                },
            });
        }
        Ok(())
    }
}

/// Runs one socket operation of `op` on `server` under the network
/// timeout `after`.
async fn timed<T>(
    op: &'static str,
    server: SocketAddr,
    after: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, io).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Io { op, server, source }),
        Err(_) => Err(Error::Timeout { op, server, after }),
    }
}

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConf {
    pub enabled: bool,
    pub max_idle: Duration,
    pub test_after: Duration,
}

/// Idle connections by server address.
pub(crate) struct Pool {
    conf: PoolConf,
    timeouts: Timeouts,
    idle: Mutex<HashMap<SocketAddr, Vec<Conn>>>,
}

impl Pool {
    pub(crate) fn new(conf: PoolConf, timeouts: Timeouts) -> Arc<Pool> {
        Arc::new(Pool {
            conf,
            timeouts,
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<Conn> {
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(&addr)?;
        let now = Instant::now();
        // Expired connections are dropped (closed) here.
        list.retain(|c| now.duration_since(c.last_used) <= self.conf.max_idle);
        list.pop()
    }

    /// A connection to `addr`: a pooled one that still answers, or a new one.
    pub(crate) async fn get(
        self: &Arc<Self>,
        addr: SocketAddr,
        op: &'static str,
    ) -> Result<PooledConn> {
        if self.conf.enabled {
            while let Some(mut c) = self.take_idle(addr) {
                if c.last_used.elapsed() <= self.conf.test_after {
                    let mut p = self.wrap(c);
                    p.untested_reuse = true;
                    return Ok(p);
                }
                match c.active_test().await {
                    Ok(()) => return Ok(self.wrap(c)),
                    Err(e) => {
                        tracing::debug!(server = %addr, error = %e, "dropping stale pooled connection")
                    }
                }
            }
        }
        self.connect(addr, op).await
    }

    /// A new connection, bypassing the idle ones.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        op: &'static str,
    ) -> Result<PooledConn> {
        let c = Conn::connect(addr, self.timeouts, op).await?;
        Ok(self.wrap(c))
    }

    fn wrap(self: &Arc<Self>, c: Conn) -> PooledConn {
        PooledConn {
            conn: Some(c),
            pool: Arc::clone(self),
            untested_reuse: false,
        }
    }

    fn put(&self, c: Conn) {
        // Bytes left unread after a complete exchange mean the server sent
        // more than it announced: such a connection cannot be trusted.
        if !self.conf.enabled || !c.clean || !c.stream.buffer().is_empty() {
            return;
        }
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(c.addr).or_default().push(c);
    }

    /// Number of idle pooled connections to `addr`.
    #[cfg(test)]
    pub(crate) fn idle_count(&self, addr: SocketAddr) -> usize {
        let map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&addr).map_or(0, Vec::len)
    }
}

/// A checked-out connection. Dropping it returns it to the pool if its last
/// exchange was clean; otherwise the socket is closed.
pub(crate) struct PooledConn {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// Taken from the pool without an ACTIVE_TEST: the server may have
    /// closed it meanwhile (e.g. restarted), so a network error on its
    /// first exchange says nothing about the server's health.
    pub(crate) untested_reuse: bool,
}

impl std::ops::Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.put(c);
        }
    }
}

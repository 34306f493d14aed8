//! The accept loop and framed connections shared by tracker and storage.
//!
//! [`serve`] accepts TCP connections, drops peers that `allow_hosts`
//! refuses and connections beyond `max_connections` (both logged), runs
//! the handler for each connection in its own task, and on shutdown stops
//! accepting and gives live connections a short drain.
//!
//! [`Conn`] reads the 10-byte header and bodies with the limits of
//! PROTOCOL.md §1.3 and §12.10: an idle peer or a header that stalls half
//! way is dropped after `network_timeout`; a negative or over-limit
//! `pkg_len` is an error the caller answers by closing at once, without a
//! reply. Timeouts on bodies are inactivity timeouts (no byte for
//! `network_timeout`), not totals, so large uploads are not cut off.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fdfs_proto::{DecodeError, Header, HEADER_LEN};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::Shutdown;

/// How long live connections may finish their request after shutdown.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Read buffer of each connection: a whole tracker request fits.
const READ_BUF: usize = 16 * 1024;

/// Who may connect (tracker/storage `allow_hosts`).
#[derive(Clone)]
pub struct Allow(Arc<dyn Fn(IpAddr) -> bool + Send + Sync>);

impl Allow {
    /// Everyone (`allow_hosts = *`).
    pub fn all() -> Self {
        Allow(Arc::new(|_| true))
    }

    /// A predicate, e.g. `move |ip| conf.allow_hosts.allows(ip)`.
    pub fn from_fn(f: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        Allow(Arc::new(f))
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        (self.0)(ip)
    }
}

impl std::fmt::Debug for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Allow(..)")
    }
}

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct ServeOpts {
    pub allow_hosts: Allow,
    pub max_connections: usize,
    /// Idle and stall timeout of every read and write.
    pub network_timeout: Duration,
    /// Largest body [`Conn::read_body`] accepts and largest `pkg_len`
    /// [`Conn::read_header`] lets through (streamed commands use a larger
    /// limit via [`Conn::set_max_pkg_len`]).
    pub max_body: u64,
}

impl Default for ServeOpts {
    fn default() -> Self {
        ServeOpts {
            allow_hosts: Allow::all(),
            max_connections: 256,
            network_timeout: Duration::from_secs(60),
            max_body: 256 * 1024,
        }
    }
}

/// Why a connection operation failed. Every variant means "close the
/// connection"; the caller logs it.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0:?}")]
    Timeout(Duration),
    #[error("connection closed by the peer")]
    Closed,
    #[error("server is shutting down")]
    Shutdown,
    #[error("bad request header: {0}")]
    Decode(#[from] DecodeError),
}

impl ConnError {
    /// True for the ordinary end of a connection (peer closed, idle
    /// timeout between requests, shutdown): worth a debug line, not a warning.
    pub fn is_normal_close(&self) -> bool {
        matches!(self, ConnError::Closed | ConnError::Shutdown)
    }
}

/// One accepted connection with its read buffer and limits.
pub struct Conn {
    stream: BufReader<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    timeout: Duration,
    max_body: u64,
    max_pkg_len: u64,
    shutdown: Shutdown,
    out: Vec<u8>,
}

impl Conn {
    /// Wraps a stream (the accept loop does this; tests may too).
    pub fn new(stream: TcpStream, opts: &ServeOpts, shutdown: Shutdown) -> std::io::Result<Conn> {
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::with_capacity(READ_BUF, stream),
            peer,
            local,
            timeout: opts.network_timeout,
            max_body: opts.max_body,
            max_pkg_len: opts.max_body,
            shutdown,
            out: Vec::with_capacity(256),
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True when more input has already arrived (in the read buffer or on
    /// the socket), without waiting: the peer has pipelined its next
    /// request. A false "no" only means less batching.
    pub fn input_ready(&mut self) -> bool {
        if !self.stream.buffer().is_empty() {
            return true;
        }
        let mut one = [0u8; 1];
        let mut rb = tokio::io::ReadBuf::new(&mut one);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        matches!(
            self.stream.get_mut().poll_peek(&mut cx, &mut rb),
            std::task::Poll::Ready(Ok(n)) if n > 0
        )
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn network_timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest `pkg_len` a header may announce. The storage raises it
    /// for streamed uploads; bodies read with [`Conn::read_body`] stay
    /// bounded by `max_body`.
    pub fn set_max_pkg_len(&mut self, limit: u64) {
        self.max_pkg_len = limit;
    }

    /// Waits for the next request header.
    ///
    /// Idle longer than `network_timeout`, a header that does not complete
    /// within `network_timeout`, the peer closing, or shutdown: an error
    /// (close). A negative or over-limit `pkg_len`: `Decode` (close at once,
    /// no reply).
    pub async fn read_header(&mut self) -> Result<Header, ConnError> {
        // Wait for the first byte; shutdown interrupts only this idle wait,
        // never a request in progress.
        let shutdown = self.shutdown.clone();
        let first = tokio::select! {
            r = tokio::time::timeout(self.timeout, self.stream.fill_buf()) => r,
            _ = shutdown.wait() => return Err(ConnError::Shutdown),
        };
        match first {
            Err(_) => return Err(ConnError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok([])) => return Err(ConnError::Closed),
            Ok(Ok(_)) => {}
        }
        let mut h = [0u8; HEADER_LEN];
        match tokio::time::timeout(self.timeout, self.stream.read_exact(&mut h)).await {
            Err(_) => return Err(ConnError::Timeout(self.timeout)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ConnError::Closed)
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(_)) => {}
        }
        Ok(Header::decode(&h, self.max_pkg_len)?)
    }

    /// Reads a whole body of `len` bytes (at most `max_body`).
    pub async fn read_body(&mut self, len: u64) -> Result<Vec<u8>, ConnError> {
        if len > self.max_body {
            return Err(DecodeError::TooLarge {
                len,
                limit: self.max_body,
            }
            .into());
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact_into(&mut buf).await?;
        Ok(buf)
    }

    /// Fills `buf` completely; no byte for `network_timeout` is an error.
    pub async fn read_exact_into(&mut self, buf: &mut [u8]) -> Result<(), ConnError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_some(&mut buf[done..]).await?;
            done += n;
        }
        Ok(())
    }

    /// Reads at least one byte into `buf` (unless it is empty).
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        if buf.is_empty() {
            return Ok(0);
        }
        match tokio::time::timeout(self.timeout, self.stream.read(buf)).await {
            Err(_) => Err(ConnError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Err(ConnError::Closed),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Copies the next `n` body bytes to `w` (streamed uploads). Returns
    /// after exactly `n` bytes; the writer is not flushed.
    pub async fn stream_body_to<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: u64,
        w: &mut W,
    ) -> Result<(), ConnError> {
        while n > 0 {
            let chunk = {
                let fill = tokio::time::timeout(self.timeout, self.stream.fill_buf());
                match fill.await {
                    Err(_) => return Err(ConnError::Timeout(self.timeout)),
                    Ok(Err(e)) => return Err(e.into()),
                    Ok(Ok([])) => return Err(ConnError::Closed),
                    Ok(Ok(b)) => b,
                }
            };
            let k = chunk.len().min(n as usize);
            match tokio::time::timeout(self.timeout, w.write_all(&chunk[..k])).await {
                Err(_) => return Err(ConnError::Timeout(self.timeout)),
                Ok(r) => r?,
            }
            self.stream.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads and drops `n` body bytes (a request refused before its body).
    pub async fn discard(&mut self, n: u64) -> Result<(), ConnError> {
        self.stream_body_to(n, &mut tokio::io::sink()).await
    }

    /// Sends a whole response: header (`cmd = 100`) and body, one write.
    pub async fn send(&mut self, status: u8, body: &[u8]) -> Result<(), ConnError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.extend_from_slice(&Header::response(status, body.len() as u64).encode());
        out.extend_from_slice(body);
        let r = self.write_all(&out).await;
        self.out = out;
        r
    }

    /// Sends a bare error response (no body).
    pub async fn send_status(&mut self, status: u8) -> Result<(), ConnError> {
        self.send(status, &[]).await
    }

    /// Sends only a header; the body follows with [`Conn::write_all`]
    /// (streamed downloads).
    pub async fn send_header(&mut self, header: Header) -> Result<(), ConnError> {
        self.write_all(&header.encode()).await
    }

    /// Writes raw bytes; stalling longer than `network_timeout` is an error.
    pub async fn write_all(&mut self, b: &[u8]) -> Result<(), ConnError> {
        match tokio::time::timeout(self.timeout, self.stream.get_mut().write_all(b)).await {
            Err(_) => Err(ConnError::Timeout(self.timeout)),
            Ok(r) => Ok(r?),
        }
    }

    pub async fn flush(&mut self) -> Result<(), ConnError> {
        match tokio::time::timeout(self.timeout, self.stream.get_mut().flush()).await {
            Err(_) => Err(ConnError::Timeout(self.timeout)),
            Ok(r) => Ok(r?),
        }
    }

    /// Writes `b` with MSG_MORE: it waits in the socket for what follows
    /// (a reply header before [`Conn::try_sendfile`] content), so both leave
    /// in the same segments.
    pub async fn write_more(&mut self, mut b: &[u8]) -> Result<(), ConnError> {
        while !b.is_empty() {
            match try_send_more(self.stream.get_ref(), b) {
                Ok(n) => b = &b[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One `sendfile(2)` of up to `want` bytes of `file` from `*offset`
    /// (advanced by what was sent), without waiting: `WouldBlock` when the
    /// socket is full (then [`Conn::writable`]), `Ok(0)` at the end of the
    /// file. The content goes from the page cache to the socket without
    /// passing through this process. Reading the file may wait for the
    /// disk: callers run big calls off the async workers.
    pub fn try_sendfile(
        &self,
        file: &std::fs::File,
        offset: &mut u64,
        want: usize,
    ) -> std::io::Result<usize> {
        try_sendfile(self.stream.get_ref(), file, offset, want)
    }

    /// Waits until the socket takes more bytes; none for `network_timeout`
    /// is a timeout.
    pub async fn writable(&self) -> Result<(), ConnError> {
        match tokio::time::timeout(self.timeout, self.stream.get_ref().writable()).await {
            Err(_) => Err(ConnError::Timeout(self.timeout)),
            Ok(r) => Ok(r?),
        }
    }

    /// Closes the write side so the peer sees FIN at once.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.get_mut().shutdown().await;
    }
}

/// One `send(2)` of `b` with MSG_MORE, without waiting (`WouldBlock` when
/// the socket is full): the bytes wait in the socket for what follows (a
/// header before [`try_sendfile`] content), so both leave in the same
/// segments.
pub fn try_send_more(stream: &TcpStream, b: &[u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let sock = stream.as_raw_fd();
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        // SAFETY: a valid socket and a live buffer of that length.
        let n = unsafe { libc::send(sock, b.as_ptr().cast(), b.len(), libc::MSG_MORE) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    })
}

/// One `sendfile(2)` of up to `want` bytes of `file` from `*offset`
/// (advanced by what was sent), without waiting: `WouldBlock` when the
/// socket is full (then wait for `writable`), `Ok(0)` at the end of the
/// file. Reading the file may wait for the disk.
pub fn try_sendfile(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: &mut u64,
    want: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsFd;
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        sendfile_nowait(stream.as_fd(), file, offset, want)
    })
}

/// `sendfile(2)` on a non-blocking socket outside the reactor (a blocking
/// pool thread holding its own handle of the socket): sends up to `want`
/// bytes of `file` from `*offset`, advancing it, and returns what was
/// sent; `WouldBlock` only when nothing could be. The reactor's readiness
/// of the socket is not touched: the caller must check it again itself.
pub fn sendfile_nowait(
    sock: std::os::fd::BorrowedFd<'_>,
    file: &std::fs::File,
    offset: &mut u64,
    want: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: valid descriptors; `off` is a live off_t.
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    *offset += n as u64;
    Ok(n)
}

/// Accepts connections until `shutdown`, running `handler` for each in its
/// own task. Returns after the drain.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    opts: ServeOpts,
    shutdown: Shutdown,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let handler = Arc::new(handler);
    let mut tasks = JoinSet::new();
    let local = listener.local_addr()?;
    info!(%local, max_connections = opts.max_connections, "accepting connections");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait() => break,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !opts.allow_hosts.allows(peer.ip()) {
            warn!(%peer, "peer not in allow_hosts, connection closed");
            drop(stream);
            continue;
        }
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                warn!(%peer, max = opts.max_connections, "too many connections, connection refused");
                drop(stream);
                continue;
            }
        };
        let conn = match Conn::new(stream, &opts, shutdown.clone()) {
            Ok(c) => c,
            Err(e) => {
                debug!(%peer, error = %e, "connection lost before setup");
                continue;
            }
        };
        let h = handler.clone();
        tasks.spawn(async move {
            h(conn).await;
            drop(permit);
        });
    }
    drop(listener);
    info!(%local, live = tasks.len(), "stopped accepting; draining connections");
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drain).await.is_err() {
        warn!(
            live = tasks.len(),
            "connections still busy after the drain, aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// An echo-ish handler: answers every request with its cmd as body.
    async fn handler(mut c: Conn) {
        loop {
            let h = match c.read_header().await {
                Ok(h) => h,
                Err(_) => return,
            };
            let body = match c.read_body(h.pkg_len).await {
                Ok(b) => b,
                Err(_) => return,
            };
            let mut reply = vec![h.cmd];
            reply.extend_from_slice(&body);
            if c.send(0, &reply).await.is_err() {
                return;
            }
        }
    }

    async fn start(opts: ServeOpts) -> (SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let s = Shutdown::new();
        let s2 = s.clone();
        let h = tokio::spawn(async move {
            serve(l, opts, s2, handler).await.unwrap();
        });
        (addr, s, h)
    }

    fn request(s: &mut std::net::TcpStream, cmd: u8, body: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(&fdfs_proto::encode_frame(cmd, 0, body))?;
        let mut h = [0u8; 10];
        s.read_exact(&mut h)?;
        let h = Header::decode(&h, 1 << 20).unwrap();
        let mut b = vec![0u8; h.pkg_len as usize];
        s.read_exact(&mut b)?;
        Ok(b)
    }

    /// True when the server closed the connection (EOF or reset) within 3 s.
    fn closed_by_server(s: &mut std::net::TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
        }
    }

    fn connect(addr: SocketAddr) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_requests_and_stops_on_shutdown() {
        let (addr, sd, h) = start(ServeOpts::default()).await;
        let r = tokio::task::spawn_blocking(move || {
            let mut s = connect(addr);
            let a = request(&mut s, 7, b"abc").unwrap();
            let b = request(&mut s, 8, b"").unwrap();
            (a, b, s)
        })
        .await
        .unwrap();
        assert_eq!(r.0, b"\x07abc");
        assert_eq!(r.1, b"\x08");
        let mut idle = r.2;
        sd.trigger();
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .unwrap()
            .unwrap();
        // The idle connection was closed by the shutdown.
        assert!(
            tokio::task::spawn_blocking(move || closed_by_server(&mut idle))
                .await
                .unwrap()
        );
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_peers_not_allowed() {
        let opts = ServeOpts {
            allow_hosts: Allow::from_fn(|ip| ip != IpAddr::from([127, 0, 0, 1])),
            ..ServeOpts::default()
        };
        let (addr, sd, _h) = start(opts).await;
        // From 127.0.0.2 (allowed): served.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let s = sock.connect(addr).await.unwrap().into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        let ok = tokio::task::spawn_blocking(move || {
            let mut s = s;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let served = request(&mut s, 9, b"x").unwrap() == b"\x09x";
            // From 127.0.0.1 (refused): closed at once, no reply.
            let mut r = connect(addr);
            let _ = r.write_all(&fdfs_proto::encode_frame(1, 0, b""));
            served && closed_by_server(&mut r)
        })
        .await
        .unwrap();
        assert!(ok);
        sd.trigger();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_connections_beyond_the_limit() {
        let opts = ServeOpts {
            max_connections: 2,
            ..ServeOpts::default()
        };
        let (addr, sd, _h) = start(opts).await;
        let ok = tokio::task::spawn_blocking(move || {
            let mut a = connect(addr);
            let mut b = connect(addr);
            // Make sure both are accepted and served before the third.
            request(&mut a, 1, b"").unwrap();
            request(&mut b, 1, b"").unwrap();
            let mut c = connect(addr);
            let _ = c.write_all(&fdfs_proto::encode_frame(1, 0, b""));
            let third_closed = closed_by_server(&mut c);
            drop(a);
            // Once one slot frees up, new connections work again.
            let ok_again = crate::net::tests::retry(|| {
                let mut d = connect(addr);
                request(&mut d, 2, b"").ok()
            });
            third_closed && ok_again == Some(b"\x02".to_vec())
        })
        .await
        .unwrap();
        assert!(ok);
        sd.trigger();
    }

    fn retry<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Some(v) = f() {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closes_bad_and_stalled_headers() {
        let opts = ServeOpts {
            network_timeout: Duration::from_millis(300),
            max_body: 1024,
            ..ServeOpts::default()
        };
        let (addr, sd, _h) = start(opts).await;
        tokio::task::spawn_blocking(move || {
            // Negative pkg_len: closed, no reply.
            let mut s = connect(addr);
            s.write_all(&[0xff; 8]).unwrap();
            s.write_all(&[101, 0]).unwrap();
            assert!(closed_by_server(&mut s));
            // Over the limit: closed, no reply.
            let mut s = connect(addr);
            s.write_all(&Header::new(91, 0, 1 << 30).encode()).unwrap();
            assert!(closed_by_server(&mut s));
            // Half a header then silence: closed after the timeout.
            let mut s = connect(addr);
            s.write_all(&[0, 0, 0]).unwrap();
            let t = Instant::now();
            assert!(closed_by_server(&mut s));
            assert!(t.elapsed() >= Duration::from_millis(250));
            // Body announced but never sent: closed after the timeout.
            let mut s = connect(addr);
            s.write_all(&Header::new(104, 0, 16).encode()).unwrap();
            s.write_all(b"group").unwrap();
            assert!(closed_by_server(&mut s));
            // Idle connection: closed after the timeout.
            let mut s = connect(addr);
            assert!(closed_by_server(&mut s));
            // The server still serves.
            let mut s = connect(addr);
            assert_eq!(request(&mut s, 5, b"ok").unwrap(), b"\x05ok");
        })
        .await
        .unwrap();
        sd.trigger();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_a_body_to_a_writer() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let client = tokio::task::spawn_blocking(move || {
            let mut s = connect(addr);
            s.write_all(&Header::new(11, 0, d2.len() as u64 + 3).encode())
                .unwrap();
            s.write_all(b"abc").unwrap();
            s.write_all(&d2).unwrap();
            let mut h = [0u8; 10];
            s.read_exact(&mut h).unwrap();
            h
        });
        let (stream, _) = l.accept().await.unwrap();
        let mut c = Conn::new(stream, &ServeOpts::default(), Shutdown::new()).unwrap();
        c.set_max_pkg_len(1 << 30);
        let h = c.read_header().await.unwrap();
        assert_eq!(h.pkg_len, data.len() as u64 + 3);
        let mut head = [0u8; 3];
        c.read_exact_into(&mut head).await.unwrap();
        assert_eq!(&head, b"abc");
        let mut sink = Vec::new();
        c.stream_body_to(h.pkg_len - 3, &mut sink).await.unwrap();
        assert_eq!(sink, data);
        c.send_status(0).await.unwrap();
        let h = client.await.unwrap();
        assert_eq!(Header::decode(&h, 0).unwrap(), Header::response(0, 0));
    }

    /// A header with MSG_MORE, then a file range with sendfile until the
    /// file's end: the peer gets exactly the header and the range.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_more_then_sendfile_sends_header_and_range() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let len = data.len() - 1000;
        let client = std::thread::spawn(move || {
            let mut s = connect(addr);
            let mut got = vec![0u8; 10 + len];
            s.read_exact(&mut got).unwrap();
            got
        });
        let (stream, _) = l.accept().await.unwrap();
        let mut c = Conn::new(stream, &ServeOpts::default(), Shutdown::new()).unwrap();
        let header = Header::response(0, len as u64).encode();
        c.write_more(&header).await.unwrap();
        let mut off = 1000u64;
        loop {
            match c.try_sendfile(&f, &mut off, 1 << 20) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => c.writable().await.unwrap(),
                Err(e) => panic!("sendfile: {e}"),
            }
        }
        assert_eq!(off, data.len() as u64);
        let got = client.join().unwrap();
        assert_eq!(&got[..10], &header);
        assert!(got[10..] == data[1000..], "content differs");
    }
}

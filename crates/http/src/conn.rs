//! One HTTP connection: our own HTTP/1.1 loop for requests without a body
//! (what file serving is), so that a response that is a range of a file
//! goes out with `sendfile(2)`: hyper can only write bodies it was given as
//! bytes, which cost a read into our buffer and a copy out of it (most of
//! the CPU of a large download, docs/benchmarks.md). A request the codec
//! does not take ([`h1::Parsed::Other`]: bodies, upgrades, garbage) hands
//! the connection, with what was read, to hyper for the rest of its life.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Body, FileRange};
use crate::fileserve::text;
use crate::h1::{self, Framing, Parsed};
use crate::server::{ConnInfo, Handler, Limits, MAX_HEAD_LEN, MAX_URI_LEN};
use crate::timeout_io::TimeoutIo;

/// A body frame at most this big goes out in the same write as the head.
const COALESCE: usize = 16 * 1024;
/// A file range up to this size is sent on the connection's thread...
const INLINE_SENDFILE: u64 = 64 * 1024;
/// ...a bigger one in calls of up to this much on the blocking pool (1 MiB
/// calls tripled the p99 of small-file requests served beside cold large
/// downloads, bench/http_cold_tail.sh; 256 KiB calls did not).
const POOL_SENDFILE: u64 = 256 * 1024;
/// How often a send waiting for room in the socket tries again anyway.
const RECHECK: Duration = Duration::from_millis(50);

/// Serves one connection until it closes, the client goes quiet, or the
/// server stops (`stop` turns true: the response under way is finished,
/// then the connection is closed).
pub(crate) async fn serve_conn(
    stream: TcpStream,
    info: ConnInfo,
    limits: Limits,
    handler: Handler,
    stop: watch::Receiver<bool>,
) {
    let mut c = Conn {
        stream,
        buf: BytesMut::with_capacity(4096),
        info,
        limits,
        handler,
        stop,
    };
    let mut first = true;
    loop {
        let (req, keep_alive) = match c.read_head(first).await {
            Head::Request(req, keep_alive) => (req, keep_alive),
            Head::Closed => return,
            Head::TooLarge => {
                tracing::info!(peer = %c.info.peer, "request head too large");
                let resp = text(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                );
                let _ = c.respond(resp, &Method::GET, Version::HTTP_11, false).await;
                c.close().await;
                return;
            }
            Head::Other => return c.into_hyper().await,
        };
        first = false;
        let (method, version) = (req.method().clone(), req.version());
        let resp = if uri_len(req.uri()) > MAX_URI_LEN {
            tracing::info!(peer = %c.info.peer, "request target too long");
            text(StatusCode::URI_TOO_LONG, "URI too long")
        } else {
            (c.handler)(req, c.info).await
        };
        let keep_alive = keep_alive && !*c.stop.borrow();
        match c.respond(resp, &method, version, keep_alive).await {
            Ok(true) => {}
            Ok(false) => return c.close().await,
            Err(e) => {
                tracing::debug!(peer = %c.info.peer, error = %e, "connection ended");
                return;
            }
        }
    }
}

/// What [`Conn::read_head`] found.
// One per request, moved once: boxing the request would only add an
// allocation on the hot path.
#[allow(clippy::large_enum_variant)]
enum Head {
    Request(Request<()>, bool),
    /// The client closed, went quiet, or the server stops.
    Closed,
    TooLarge,
    /// For hyper (see [`Parsed::Other`]).
    Other,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet used: the start of the next request.
    buf: BytesMut,
    info: ConnInfo,
    limits: Limits,
    handler: Handler,
    stop: watch::Receiver<bool>,
}

impl Conn {
    /// Reads until a whole request head is in the buffer. The first head of
    /// a connection, and any head once its first byte came, must arrive
    /// within `header_read_timeout`; between requests the connection may
    /// idle for `idle_timeout`, and a stop closes it there.
    async fn read_head(&mut self, first: bool) -> Head {
        let start = Instant::now();
        let mut deadline = first.then(|| start + self.limits.header_read_timeout);
        loop {
            if !self.buf.is_empty() {
                match h1::parse_request(&self.buf) {
                    Parsed::Request {
                        req,
                        head_len,
                        keep_alive,
                    } => {
                        self.buf.advance(head_len);
                        return Head::Request(req, keep_alive);
                    }
                    Parsed::Other => return Head::Other,
                    Parsed::Partial if self.buf.len() >= MAX_HEAD_LEN => return Head::TooLarge,
                    Parsed::Partial => {}
                }
                deadline.get_or_insert_with(|| Instant::now() + self.limits.header_read_timeout);
            } else if *self.stop.borrow() {
                return Head::Closed;
            }
            let wait = deadline.unwrap_or_else(|| Instant::now() + self.limits.idle_timeout);
            self.buf.reserve(4096);
            let idle = self.buf.is_empty();
            tokio::select! {
                r = tokio::time::timeout_at(wait, self.stream.read_buf(&mut self.buf)) => match r {
                    Ok(Ok(0)) => return Head::Closed,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.info.peer, error = %e, "connection ended");
                        return Head::Closed;
                    }
                    Err(_) => {
                        if !idle || first {
                            tracing::info!(peer = %self.info.peer, "request head not received in time");
                        }
                        return Head::Closed;
                    }
                },
                _ = self.stop.changed(), if idle => return Head::Closed,
            }
        }
    }

    /// Writes `resp` to a `method` request of `version`; `Ok(true)` when
    /// the connection can take another request.
    async fn respond(
        &mut self,
        resp: Response<Body>,
        method: &Method,
        version: Version,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let (parts, mut body) = resp.into_parts();
        let has_body = h1::may_have_body(method, parts.status);
        let framing = h1::framing(&parts.headers, body.size_hint().exact(), has_body, version);
        let keep_alive = keep_alive && framing != Framing::UntilClose;
        let mut head = Vec::with_capacity(512);
        with_date(|date| {
            h1::encode_head(
                &mut head,
                parts.status,
                &parts.headers,
                framing,
                version,
                keep_alive,
                date,
            )
        });
        match framing {
            Framing::None => self.write_all(&head).await?,
            Framing::Length(len) => match parts.extensions.get::<FileRange>() {
                Some(range) if range.prefix.len() as u64 + range.len == len && range.len > 0 => {
                    drop(body);
                    head.extend_from_slice(&range.prefix);
                    self.send_more(&head).await?;
                    self.send_file(range).await?;
                }
                _ => self.write_body(head, &mut body, Some(len)).await?,
            },
            Framing::UntilClose => self.write_body(head, &mut body, None).await?,
            Framing::Chunked => self.write_chunked(head, &mut body).await?,
        }
        Ok(keep_alive)
    }

    /// The next data of `body` (trailers are dropped); a body that stalls
    /// for `idle_timeout` fails.
    async fn next_data(&mut self, body: &mut Body) -> io::Result<Option<Bytes>> {
        loop {
            let frame = tokio::time::timeout(self.limits.idle_timeout, body.frame())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response body stalled"))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }

    /// The head, then the body as it is; with `len`, exactly that many
    /// bytes or an error (the client must see a cut transfer, not a short
    /// complete one).
    async fn write_body(
        &mut self,
        mut head: Vec<u8>,
        body: &mut Body,
        len: Option<u64>,
    ) -> io::Result<()> {
        let mut sent = 0u64;
        let mut head = Some(&mut head);
        while let Some(data) = self.next_data(body).await? {
            sent += data.len() as u64;
            if len.is_some_and(|n| sent > n) {
                return Err(io::Error::other("response body longer than its length"));
            }
            match head.take() {
                Some(h) if data.len() <= COALESCE => {
                    h.extend_from_slice(&data);
                    self.write_all(h).await?;
                }
                Some(h) => self.write_two(h, &data).await?,
                None => self.write_all(&data).await?,
            }
        }
        if let Some(h) = head {
            self.write_all(h).await?;
        }
        if len.is_some_and(|n| sent != n) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "response body shorter than its length",
            ));
        }
        Ok(())
    }

    async fn write_chunked(&mut self, head: Vec<u8>, body: &mut Body) -> io::Result<()> {
        self.write_all(&head).await?;
        while let Some(data) = self.next_data(body).await? {
            self.write_two(&h1::chunk_head(data.len()), &data).await?;
            self.write_all(b"\r\n").await?;
        }
        self.write_all(h1::LAST_CHUNK).await
    }

    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        let idle = self.limits.idle_timeout;
        tokio::time::timeout(idle, self.stream.write_all(b))
            .await
            .map_err(|_| timed_out(idle))?
    }

    /// `a` then `b` with as few writes as the socket allows.
    async fn write_two(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        let idle = self.limits.idle_timeout;
        let (mut a, mut b) = (a, b);
        while !a.is_empty() {
            let n = tokio::time::timeout(
                idle,
                self.stream
                    .write_vectored(&[IoSlice::new(a), IoSlice::new(b)]),
            )
            .await
            .map_err(|_| timed_out(idle))??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if n < a.len() {
                a = &a[n..];
            } else {
                b = &b[n - a.len()..];
                a = &[];
            }
        }
        self.write_all(b).await
    }

    /// Writes `b` so that it leaves with the bytes that follow (MSG_MORE).
    async fn send_more(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            match fdfs_runtime::net::try_send_more(&self.stream, b) {
                Ok(n) => b = &b[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn writable(&self) -> io::Result<()> {
        let idle = self.limits.idle_timeout;
        tokio::time::timeout(idle, self.stream.writable())
            .await
            .map_err(|_| timed_out(idle))?
    }

    /// Sends `range` of its file with `sendfile(2)`. A small range goes on
    /// this thread; a bigger one in calls on the blocking pool, so that a
    /// file not in the page cache never stalls the other connections of
    /// this worker while the disk reads it (a disk seek each time the
    /// socket drains, on a spinning disk).
    async fn send_file(&mut self, range: &FileRange) -> io::Result<()> {
        let end = range.offset + range.len;
        let mut off = range.offset;
        if range.len <= INLINE_SENDFILE {
            while off < end {
                let want = (end - off) as usize;
                match fdfs_runtime::net::try_sendfile(&self.stream, &range.file, &mut off, want) {
                    Ok(0) => return Err(file_shrank()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        // Its own handle of the socket: a connection dropped meanwhile cannot
        // let the number be reused under a running call.
        let sock = Arc::new(self.stream.as_fd().try_clone_to_owned()?);
        let idle = self.limits.idle_timeout;
        let mut progress = Instant::now();
        while off < end {
            let (file, sock2) = (range.file.clone(), sock.clone());
            let want = (end - off).min(POOL_SENDFILE) as usize;
            let at = off;
            let (at, r) = tokio::task::spawn_blocking(move || {
                let mut at = at;
                let r = fdfs_runtime::net::sendfile_nowait(sock2.as_fd(), &file, &mut at, want);
                (at, r)
            })
            .await
            .map_err(io::Error::other)?;
            off = at;
            match r {
                Ok(0) => return Err(file_shrank()),
                Ok(_) => progress = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The reactor did not see that call fill the socket:
                    // drop the readiness it still holds, then wait for room.
                    // Room that came in between is noticed by the recheck.
                    let _ = self.stream.try_io(Interest::WRITABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                    if let Ok(r) = tokio::time::timeout(RECHECK, self.stream.writable()).await {
                        r?;
                    } else if progress.elapsed() >= idle {
                        return Err(timed_out(idle));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes after a response that ends the connection: FIN first, so the
    /// client reads the whole response.
    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// Lets hyper serve the rest of the connection, starting with the bytes
    /// already read.
    async fn into_hyper(self) {
        let Conn {
            stream,
            buf,
            info,
            limits,
            handler,
            mut stop,
        } = self;
        let io = TimeoutIo::new(
            Rewind {
                prefix: buf.freeze(),
                stream,
            },
            limits.idle_timeout,
        );
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
                // No handler reads a request body: dropping it makes hyper
                // close the connection after the response.
                Ok(handler(req.map(|_| ()), info).await)
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
        let mut stopping = *stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
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
}

fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no progress for {after:?}"),
    )
}

fn file_shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than announced")
}

/// Calls `f` with the `Date` header value of this second (made once a
/// second per thread).
fn with_date<T>(f: impl FnOnce(&str) -> T) -> T {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        f(&d.1)
    })
}

/// Length of the request target as sent (`uri.to_string().len()` without
/// building the string on every request).
pub(crate) fn uri_len(u: &http::Uri) -> usize {
    let pq = u.path_and_query().map_or(0, |p| p.as_str().len());
    match (u.scheme_str(), u.authority()) {
        (Some(s), Some(a)) => s.len() + 3 + a.as_str().len() + pq,
        (None, Some(a)) => a.as_str().len() + pq,
        _ => pq,
    }
}

/// A stream whose reads first return `prefix` (bytes read before hyper
/// took the connection).
struct Rewind {
    prefix: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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

//! An I/O wrapper that fails a read or write that makes no progress for a
//! while, so a client that stops reading (or sending) cannot hold a
//! connection and its file open forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

/// Wraps a tokio stream for hyper. When neither reads nor writes have made
/// progress for `timeout` while one of them is waiting, the waiting call
/// returns `TimedOut` and hyper drops the connection. One shared deadline:
/// hyper keeps a read pending while it writes a long body, and a download
/// that progresses must not be cut.
pub struct TimeoutIo<T> {
    inner: TokioIo<T>,
    timeout: Duration,
    last_progress: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl<T> TimeoutIo<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        let now = Instant::now();
        TimeoutIo {
            inner: TokioIo::new(io),
            timeout,
            last_progress: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// The result of a poll of the inner stream: a finished call that moved
    /// bytes (`moves_bytes`) resets the deadline; a pending one fails once
    /// the deadline has passed.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        moves_bytes: bool,
        p: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match p {
            Poll::Ready(r) => {
                if moves_bytes {
                    self.last_progress = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.last_progress + self.timeout;
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "no progress on the connection",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Read for TimeoutIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(cx, true, p)
    }
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Write for TimeoutIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, true, p)
    }

    /// Forwarded so hyper queues body chunks and sends them with the head
    /// in one `writev` instead of copying every chunk into its own buffer.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, true, p)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, false, p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

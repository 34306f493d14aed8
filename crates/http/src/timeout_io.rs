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

    /// Lazily re-armed: the sleep keeps the deadline it was armed with
    /// and, when that passes, is moved to the real one (last progress +
    /// timeout) if there was progress since. Moving it on every poll would
    /// touch the timer wheel once or twice per request.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let deadline = self.last_progress + self.timeout;
                    if deadline <= Instant::now() {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no progress on the connection",
                        ));
                    }
                    // Progress since it was armed: wait for the rest.
                    self.sleep.as_mut().reset(deadline);
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn write_all(
        io: &mut TimeoutIo<tokio::io::DuplexStream>,
        mut buf: &[u8],
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, buf)).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// A slow reader that keeps reading: writes stall again and again, for
    /// much longer than the timeout in total, and are never cut; once the
    /// reader stops, the next stalled write fails after about the timeout.
    #[tokio::test]
    async fn progress_keeps_the_connection_stalling_cuts_it() {
        let timeout = Duration::from_millis(300);
        let (a, mut b) = tokio::io::duplex(1024);
        let mut io = TimeoutIo::new(a, timeout);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                b.read_exact(&mut buf).await.unwrap();
            }
            b // kept open, no longer read
        });
        let t0 = std::time::Instant::now();
        write_all(&mut io, &[7u8; 10 * 1024])
            .await
            .expect("progressing writes are not cut");
        assert!(
            t0.elapsed() >= timeout * 2,
            "the writes really stalled: {:?}",
            t0.elapsed()
        );
        let _b = reader.await.unwrap();
        let t1 = std::time::Instant::now();
        let err = write_all(&mut io, &[7u8; 4096])
            .await
            .expect_err("a stalled write times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = t1.elapsed();
        assert!(waited >= timeout / 2 && waited < timeout * 4, "{waited:?}");
    }
}

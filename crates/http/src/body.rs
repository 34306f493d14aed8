//! Response bodies: small in-memory ones and file contents streamed in
//! chunks by a background task (memory stays flat whatever the file size).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// Every response body of this crate.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size for file bodies.
pub const CHUNK: usize = 64 * 1024;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A piece of a streamed body.
#[derive(Debug, Clone)]
pub enum Segment {
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File {
        offset: u64,
        len: u64,
    },
}

/// A body fed through a bounded channel: the producer waits while the
/// client is slow, and stops when the client goes away.
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: Option<u64>,
}

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>, len: Option<u64>) -> Self {
        ChannelBody { rx, remaining: len }
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                if let Some(r) = self.remaining.as_mut() {
                    *r = r.saturating_sub(b.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Streams `segments` (literal bytes and ranges of `file`) as a body.
pub fn file_body(file: tokio::fs::File, segments: Vec<Segment>) -> Body {
    let total: u64 = segments
        .iter()
        .map(|s| match s {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        })
        .sum();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(produce(file, segments, tx));
    ChannelBody::new(rx, Some(total)).boxed_unsync()
}

async fn produce(
    mut file: tokio::fs::File,
    segments: Vec<Segment>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    for seg in segments {
        match seg {
            Segment::Bytes(b) => {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            Segment::File { offset, len } => {
                if let Err(e) = file.seek(io::SeekFrom::Start(offset)).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                let mut left = len;
                while left > 0 {
                    let want = left.min(CHUNK as u64) as usize;
                    let mut buf = vec![0u8; want];
                    let n = match file.read(&mut buf).await {
                        Ok(0) => {
                            // The file shrank under us: end the body with an
                            // error so the client sees a cut transfer, not a
                            // short "complete" one.
                            let _ = tx
                                .send(Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "file shorter than announced",
                                )))
                                .await;
                            return;
                        }
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

//! Response bodies: small in-memory ones and file contents streamed in
//! chunks by a background task (memory stays flat whatever the file size).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Every response body of this crate.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size for file bodies (one trip to the blocking pool each).
pub const CHUNK: usize = 256 * 1024;

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

/// Where a response's bytes come from.
#[derive(Debug)]
pub enum Content {
    /// An open file whose content starts at `base` (non-zero inside trunk
    /// files and cache entries).
    File { file: std::fs::File, base: u64 },
    /// The whole content, read right when the file was opened (see
    /// [`SMALL_FILE`]).
    Memory(Bytes),
}

/// Files up to this size are read whole when opened and answered from
/// memory: no producer task, no channel, no trip to the blocking pool per
/// read (those hand-offs were most of a small request's cost).
pub const SMALL_FILE: u64 = 64 * 1024;

/// Set on a response whose whole body is one range of an open file (after
/// a few bytes of its own, at most), so that the connection can send it
/// with `sendfile(2)` (page cache to socket, no copy through us) instead of
/// polling the body; the body then never starts reading.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// Bytes sent before the range (an FLV header), often none.
    pub prefix: Bytes,
    pub file: Arc<std::fs::File>,
    /// Absolute offset in the file.
    pub offset: u64,
    pub len: u64,
}

/// Streams `segments` (literal bytes and ranges of the content, offsets
/// relative to its start) as a body; with the [`FileRange`] it amounts to
/// when it is one range of an open file.
pub fn content_body(content: Content, segments: Vec<Segment>) -> (Body, Option<FileRange>) {
    match content {
        Content::File { file, base } => {
            let file = Arc::new(file);
            let range = match segments.as_slice() {
                [Segment::File { offset, len }] => Some((Bytes::new(), *offset, *len)),
                [Segment::Bytes(prefix), Segment::File { offset, len }] => {
                    Some((prefix.clone(), *offset, *len))
                }
                _ => None,
            }
            .map(|(prefix, offset, len)| FileRange {
                prefix,
                file: file.clone(),
                offset: base + offset,
                len,
            });
            (file_body(file, base, segments), range)
        }
        Content::Memory(all) => {
            let mut parts = segments.into_iter().map(|s| match s {
                Segment::Bytes(b) => b,
                Segment::File { offset, len } => {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
                    let end = usize::try_from(offset.saturating_add(len))
                        .unwrap_or(usize::MAX)
                        .min(all.len());
                    all.slice(start..end)
                }
            });
            let body = match (parts.next(), parts.next()) {
                (None, _) => empty(),
                (Some(one), None) => full(one),
                (Some(a), Some(b)) => {
                    // multipart/byteranges of a small file: one buffer.
                    let mut v = Vec::with_capacity(a.len() + b.len());
                    v.extend_from_slice(&a);
                    v.extend_from_slice(&b);
                    parts.for_each(|p| v.extend_from_slice(&p));
                    full(v)
                }
            };
            (body, None)
        }
    }
}

/// Streams `segments` (literal bytes and ranges of `file` from `base`) as a
/// body, reading [`CHUNK`] bytes per trip to the blocking pool (positioned
/// reads: no shared cursor) into buffers reused within the download. The
/// reading starts at the first poll: a body sent by `sendfile` instead is
/// never polled and reads nothing.
pub fn file_body(file: Arc<std::fs::File>, base: u64, segments: Vec<Segment>) -> Body {
    let total: u64 = segments
        .iter()
        .map(|s| match s {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } => *len,
        })
        .sum();
    FileBody {
        start: Some((file, base, segments)),
        chunks: None,
        total,
    }
    .boxed_unsync()
}

/// See [`file_body`].
struct FileBody {
    start: Option<(Arc<std::fs::File>, u64, Vec<Segment>)>,
    chunks: Option<ChannelBody>,
    total: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some((file, base, segments)) = self.start.take() {
            // Two chunks read ahead while the connection writes: the
            // socket stays busy.
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(produce(file, base, segments, tx));
            self.chunks = Some(ChannelBody::new(rx, Some(self.total)));
        }
        match self.chunks.as_mut() {
            Some(c) => Pin::new(c).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.chunks {
            Some(c) => c.size_hint(),
            None => SizeHint::with_exact(self.total),
        }
    }
}

/// Chunk buffers of one download, reused once hyper has written them:
/// fresh memory for every chunk cost page faults and `madvise` calls that
/// together took more CPU than copying the data.
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// Buffers a pool keeps (about what is in flight: read ahead + writing).
const POOL_MAX: usize = 4;

/// A chunk handed to hyper; its buffer goes back to the pool on drop.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < POOL_MAX {
                p.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// Fills `buf` from `pos`; `UnexpectedEof` if the file is shorter (it
/// shrank under us: the client must see a cut transfer, not a short
/// "complete" one).
fn read_chunk(file: &std::fs::File, pos: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, pos).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than announced")
        } else {
            e
        }
    })
}

async fn produce(
    file: Arc<std::fs::File>,
    base: u64,
    segments: Vec<Segment>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let pool = Pool::default();
    for seg in segments {
        match seg {
            Segment::Bytes(b) => {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            Segment::File { offset, len } => {
                let mut pos = base + offset;
                let end = pos + len;
                while pos < end {
                    let want = (end - pos).min(CHUNK as u64) as usize;
                    let recycled = pool.lock().ok().and_then(|mut p| p.pop());
                    let mut buf = recycled.unwrap_or_default();
                    if buf.len() < want {
                        buf.resize(want, 0);
                    }
                    let f = file.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        read_chunk(&f, pos, &mut buf[..want]).map(|()| buf)
                    })
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
                    let chunk = read.map(|buf| {
                        Bytes::from_owner(Pooled {
                            buf,
                            len: want,
                            pool: pool.clone(),
                        })
                    });
                    let failed = chunk.is_err();
                    pos += want as u64;
                    if tx.send(chunk).await.is_err() || failed {
                        return;
                    }
                }
            }
        }
    }
}

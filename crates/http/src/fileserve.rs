//! Answers a GET/HEAD for one file's bytes: conditional requests, ranges,
//! multipart/byteranges and the usual headers (PROTOCOL.md §10.4). Shared by
//! the storage server and the gateway's cache.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body, Content, Segment};
use crate::range::{parse_range, RangeRequest};

/// What the response says about the file.
#[derive(Debug, Clone)]
pub struct FileMeta {
    pub size: u64,
    /// Unix seconds.
    pub last_modified: u64,
    /// None: no Content-Type header (a configured type that is not a valid
    /// header value).
    pub content_type: Option<HeaderValue>,
}

impl FileMeta {
    pub fn etag(&self) -> String {
        format!("\"{:x}-{:x}\"", self.last_modified, self.size)
    }

    pub fn last_modified_http(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.last_modified))
    }
}

/// Per-request serving options.
#[derive(Debug, Clone, Default)]
pub struct ServeOpts {
    pub head: bool,
    pub multi_range: bool,
    /// `filename` query parameter: Content-Disposition attachment.
    pub download_name: Option<String>,
    /// FLV pseudo-streaming (`flv_support`, `?start=&end=`).
    pub flv_seek: Option<FlvSeek>,
}

/// An FLV seek: the file from byte `start` (to `end`, exclusive, when
/// given) after a fresh FLV header, so a player can start mid-file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvSeek {
    pub start: u64,
    pub end: Option<u64>,
}

/// The 13 bytes an FLV seek answer starts with (PROTOCOL.md §10.4): the
/// FLV file header and a zero "previous tag size".
pub const FLV_HEADER: &[u8; 13] = b"FLV\x01\x01\0\0\0\x09\0\0\0\x09";

impl FlvSeek {
    /// From the `start` and `end` query parameters: a seek when `start` is
    /// a byte offset above 0 (0 is the whole file, which has its own
    /// header); `None` otherwise.
    pub fn from_params(start: Option<&str>, end: Option<&str>) -> Option<FlvSeek> {
        let start = start?.trim().parse::<u64>().ok().filter(|&s| s > 0)?;
        let end = end
            .and_then(|e| e.trim().parse::<u64>().ok())
            .filter(|&e| e > 0);
        Some(FlvSeek { start, end })
    }
}

/// Builds the response for `content` (an open file or the bytes already
/// read, see [`body::Content`]).
pub fn respond(
    req: &HeaderMap,
    meta: &FileMeta,
    content: Content,
    opts: &ServeOpts,
) -> Response<Body> {
    if let Some(seek) = opts.flv_seek {
        return flv_seek(meta, content, seek, opts.head);
    }
    let etag = meta.etag();
    let lm = meta.last_modified_http();
    if not_modified(req, &etag, &lm, meta.last_modified) {
        let mut r = Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(body::empty())
            .expect("static response");
        set_owned(r.headers_mut(), header::ETAG, etag);
        set_owned(r.headers_mut(), header::LAST_MODIFIED, lm);
        return r;
    }
    let range_hdr = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range: a range applies only to the representation the client has.
    let range_hdr = match req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(ir) if ir != etag && ir != lm => None,
        _ => range_hdr,
    };
    let mut builder = Response::builder();
    let mut segments = Vec::new();
    let mut len;
    let mut content_type = meta.content_type.clone();
    let type_text = || {
        meta.content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    match parse_range(range_hdr, meta.size) {
        RangeRequest::Full => {
            builder = builder.status(StatusCode::OK);
            len = meta.size;
            segments.push(Segment::File { offset: 0, len });
        }
        RangeRequest::Unsatisfiable => return unsatisfiable(meta.size),
        RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end, meta.size),
            );
            len = r.len();
            segments.push(Segment::File {
                offset: r.start,
                len,
            });
        }
        RangeRequest::Ranges(ranges) => {
            if !opts.multi_range {
                return unsatisfiable(meta.size);
            }
            let boundary = format!(
                "{:020}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros()
            );
            len = 0;
            for r in &ranges {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                    type_text(),
                    r.start,
                    r.end,
                    meta.size
                );
                len += head.len() as u64 + r.len();
                segments.push(Segment::Bytes(Bytes::from(head)));
                segments.push(Segment::File {
                    offset: r.start,
                    len: r.len(),
                });
            }
            let tail = format!("\r\n--{boundary}--\r\n");
            len += tail.len() as u64;
            segments.push(Segment::Bytes(Bytes::from(tail)));
            content_type =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")).ok();
            builder = builder.status(StatusCode::PARTIAL_CONTENT);
        }
    }
    let mut r = with_content(builder, opts.head, content, segments);
    let h = r.headers_mut();
    if let Some(t) = content_type {
        h.insert(header::CONTENT_TYPE, t);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    set_owned(h, header::LAST_MODIFIED, lm);
    set_owned(h, header::ETAG, etag);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(name) = &opts.download_name {
        let safe: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .collect();
        set(
            h,
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename=\"{safe}\""),
        );
    }
    r
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Like [`set`] for a value built for this response: its buffer becomes
/// the header's, no copy.
fn set_owned(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        h.insert(name, v);
    }
}

fn not_modified(req: &HeaderMap, etag: &str, lm: &str, mtime: u64) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    if let Some(ims) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
    {
        if ims == lm {
            return true;
        }
        if let Ok(t) = httpdate::parse_http_date(ims) {
            let since = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return mtime <= since;
        }
    }
    false
}

/// An FLV seek answer: 200, the FLV header, then bytes `start..end` of the
/// file; 416 when that is empty. Ranges and conditional requests do not
/// apply: the answer is not the file.
fn flv_seek(meta: &FileMeta, content: Content, seek: FlvSeek, head: bool) -> Response<Body> {
    let end = seek.end.map_or(meta.size, |e| e.min(meta.size));
    if seek.start >= end {
        return unsatisfiable(meta.size);
    }
    let len = end - seek.start;
    let segments = vec![
        Segment::Bytes(Bytes::from_static(FLV_HEADER)),
        Segment::File {
            offset: seek.start,
            len,
        },
    ];
    let mut r = with_content(Response::builder(), head, content, segments);
    let h = r.headers_mut();
    if let Some(t) = &meta.content_type {
        h.insert(header::CONTENT_TYPE, t.clone());
    }
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(FLV_HEADER.len() as u64 + len),
    );
    set_owned(h, header::LAST_MODIFIED, meta.last_modified_http());
    r
}

/// The response of `builder` with `segments` of `content` as its body
/// (none for HEAD), and the [`body::FileRange`] a connection can send with
/// `sendfile` when there is one.
fn with_content(
    builder: http::response::Builder,
    head: bool,
    content: Content,
    segments: Vec<Segment>,
) -> Response<Body> {
    let (body, file_range) = if head {
        (body::empty(), None)
    } else {
        body::content_body(content, segments)
    };
    let mut r = builder.body(body).expect("valid response parts");
    if let Some(range) = file_range {
        r.extensions_mut().insert(range);
    }
    r
}

/// 416 with `Content-Range: bytes */size`.
pub fn unsatisfiable(size: u64) -> Response<Body> {
    Response::builder()
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
        .body(body::empty())
        .expect("static response")
}

/// A small plain-text response.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body::full(format!("{msg}\n")))
        .expect("static response")
}

//! The HTTP/1.1 message codec of our own connection loop ([`crate::conn`]):
//! pure functions from bytes to a request head and from a response head
//! to bytes, no I/O. It covers what file serving needs (requests without a
//! body); anything else is left to hyper (see [`Parsed::Other`]).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

/// Most header lines a request head may have here (hyper's limit is 100;
/// a head with more goes to hyper, which answers 431).
const MAX_HEADERS: usize = 64;

/// What the start of a connection's read buffer holds.
// One per request, moved once: boxing the request would only add an
// allocation on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A request without a body whose head took `head_len` bytes.
    Request {
        req: Request<()>,
        head_len: usize,
        keep_alive: bool,
    },
    /// A request this codec does not take (a body, `Expect`, `Upgrade`,
    /// CONNECT, a head it cannot parse): hyper serves the connection from
    /// here on, with the same bytes.
    Other,
}

/// Parses the request head at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut headers);
    let head_len = match raw.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(minor)) = (raw.method, raw.path, raw.version) else {
        return Parsed::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if method == Method::CONNECT {
        return Parsed::Other;
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return Parsed::Other;
    };
    let mut map = HeaderMap::with_capacity(raw.headers.len());
    for h in raw.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parsed::Other;
        };
        map.append(name, value);
    }
    if has_body_or_upgrade(&map) {
        return Parsed::Other;
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let keep_alive = wants_keep_alive(version, &map);
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = map;
    Parsed::Request {
        req,
        head_len,
        keep_alive,
    }
}

/// A body follows the head (its framing is hyper's job), or the client
/// wants more than a plain exchange.
fn has_body_or_upgrade(h: &HeaderMap) -> bool {
    if h.contains_key(header::TRANSFER_ENCODING)
        || h.contains_key(header::EXPECT)
        || h.contains_key(header::UPGRADE)
    {
        return true;
    }
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => false,
        (Some(v), None) => v.as_bytes() != b"0",
        // Several: hyper decides whether they agree.
        (Some(_), Some(_)) => true,
    }
}

/// Whether `token` is one of the comma-separated tokens of the
/// `Connection` headers.
fn connection_has(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// HTTP/1.1 keeps the connection unless told to close; 1.0 closes unless
/// asked to keep it.
fn wants_keep_alive(version: Version, h: &HeaderMap) -> bool {
    if version == Version::HTTP_10 {
        connection_has(h, "keep-alive")
    } else {
        !connection_has(h, "close")
    }
}

/// How a response's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding (HTTP/1.1, length unknown).
    Chunked,
    /// Until the connection closes (HTTP/1.0, length unknown).
    UntilClose,
}

/// Whether a response with `status` to a `method` request can have a body.
pub fn may_have_body(method: &Method, status: StatusCode) -> bool {
    !(method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// The framing of a response: its own `Content-Length` if it has one, else
/// the body's exact size, else chunked (1.1) or until close (1.0).
pub fn framing(
    headers: &HeaderMap,
    body_len: Option<u64>,
    has_body: bool,
    version: Version,
) -> Framing {
    if !has_body {
        return Framing::None;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared.or(body_len) {
        Some(n) => Framing::Length(n),
        None if version == Version::HTTP_10 => Framing::UntilClose,
        None => Framing::Chunked,
    }
}

/// Appends the status line and headers of a response to `out`: its own
/// headers (a `Transfer-Encoding` or `Content-Length` that contradicts
/// `framing` is replaced), then `Date`, the framing header and the
/// `Connection` header the exchange needs.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    request_version: Version,
    keep_alive: bool,
    date: &str,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && matches!(framing, Framing::Length(_)))
        {
            continue;
        }
        line(out, name.as_str(), value.as_bytes());
    }
    if !headers.contains_key(header::DATE) {
        line(out, "date", date.as_bytes());
    }
    match framing {
        Framing::Length(n) => line(out, "content-length", n.to_string().as_bytes()),
        Framing::Chunked => line(out, "transfer-encoding", b"chunked"),
        Framing::None | Framing::UntilClose => {}
    }
    if !keep_alive && request_version == Version::HTTP_11 {
        line(out, "connection", b"close");
    } else if keep_alive && request_version == Version::HTTP_10 {
        line(out, "connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The size line of a chunk of `len` bytes.
pub fn chunk_head(len: usize) -> Vec<u8> {
    format!("{len:X}\r\n").into_bytes()
}

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> (Request<()>, usize, bool) {
        match parse_request(bytes) {
            Parsed::Request {
                req,
                head_len,
                keep_alive,
            } => (req, head_len, keep_alive),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn a_get_is_parsed_and_the_next_request_stays_in_the_buffer() {
        let raw = b"GET /group1/M00/00/00/a.jpg?token=t HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\nGET /next";
        let (req, n, keep) = request(raw);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/group1/M00/00/00/a.jpg");
        assert_eq!(req.uri().query(), Some("token=t"));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["range"], "bytes=0-9");
        assert!(keep);
        assert_eq!(&raw[n..], b"GET /next");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let (_, _, k) = request(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n");
        assert!(!k);
        let (_, _, k) = request(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
        assert!(!k);
        let (r, _, k) = request(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!k);
        assert_eq!(r.version(), Version::HTTP_10);
        let (_, _, k) = request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(k);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(parse_request(b""), Parsed::Partial));
    }

    #[test]
    fn bodies_upgrades_and_garbage_go_to_hyper() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00hello\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(raw), Parsed::Other),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // An empty body declared as such is ours.
        let (req, _, _) = request(b"PURGE /purge/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(req.method().as_str(), "PURGE");
    }

    #[test]
    fn too_many_headers_go_to_hyper() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&raw), Parsed::Other));
    }

    fn head(status: StatusCode, h: &HeaderMap, f: Framing, v: Version, keep: bool) -> String {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            status,
            h,
            f,
            v,
            keep,
            "Thu, 26 Nov 2026 10:00:00 GMT",
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_carry_framing_date_and_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(
            head(StatusCode::OK, &h, Framing::Length(12), Version::HTTP_11, true),
            "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\ncontent-length: 12\r\n\r\n"
        );
        let h = HeaderMap::new();
        assert_eq!(
            head(StatusCode::NOT_FOUND, &h, Framing::Chunked, Version::HTTP_11, false),
            "HTTP/1.1 404 Not Found\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            head(StatusCode::OK, &h, Framing::Length(0), Version::HTTP_10, true),
            "HTTP/1.1 200 OK\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn a_head_response_keeps_its_content_length() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
        let s = head(StatusCode::OK, &h, Framing::None, Version::HTTP_11, true);
        assert!(s.contains("content-length: 4096\r\n"), "{s}");
        assert!(!s.contains("transfer-encoding"), "{s}");
    }

    #[test]
    fn framing_prefers_the_declared_length() {
        let mut h = HeaderMap::new();
        assert_eq!(
            framing(&h, Some(3), true, Version::HTTP_11),
            Framing::Length(3)
        );
        assert_eq!(framing(&h, None, true, Version::HTTP_11), Framing::Chunked);
        assert_eq!(
            framing(&h, None, true, Version::HTTP_10),
            Framing::UntilClose
        );
        assert_eq!(framing(&h, Some(3), false, Version::HTTP_11), Framing::None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        assert_eq!(
            framing(&h, None, true, Version::HTTP_11),
            Framing::Length(7)
        );
        assert!(!may_have_body(&Method::HEAD, StatusCode::OK));
        assert!(!may_have_body(&Method::GET, StatusCode::NOT_MODIFIED));
        assert!(may_have_body(&Method::GET, StatusCode::PARTIAL_CONTENT));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever a client sends, the parser answers without panicking,
            /// and a head it takes ends inside what was sent.
            #[test]
            fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Parsed::Request { head_len, .. } = parse_request(&bytes) {
                    prop_assert!(head_len <= bytes.len());
                }
            }

            /// A request built from parts comes back as those parts, with
            /// whatever follows it left in the buffer.
            #[test]
            fn built_requests_come_back(
                method in prop::sample::select(vec!["GET", "HEAD", "PURGE", "DELETE"]),
                path in "/[a-zA-Z0-9/._-]{0,60}",
                query in proptest::option::of("[a-z0-9=&]{1,30}"),
                headers in proptest::collection::vec(("x-[a-z]{1,10}", "[ -~&&[^ ]][ -~]{0,20}[!-~]"), 0..8),
                minor in 0u8..2,
                tail in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
                let mut raw = format!("{method} {target} HTTP/1.{minor}\r\n");
                for (k, v) in &headers {
                    raw.push_str(&format!("{k}: {v}\r\n"));
                }
                raw.push_str("\r\n");
                let head_end = raw.len();
                let mut bytes = raw.into_bytes();
                bytes.extend_from_slice(&tail);
                let Parsed::Request { req, head_len, .. } = parse_request(&bytes) else {
                    return Err(TestCaseError::fail("not parsed"));
                };
                prop_assert_eq!(head_len, head_end);
                prop_assert_eq!(req.method().as_str(), method);
                prop_assert_eq!(req.uri().path(), path.as_str());
                prop_assert_eq!(req.uri().query(), query.as_deref());
                prop_assert_eq!(req.version(), if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 });
                for (k, v) in &headers {
                    prop_assert!(req.headers().get_all(k.as_str()).iter().any(|x| x.as_bytes() == v.as_bytes()));
                }
            }
        }
    }
}

//! An access log in nginx's `combined` format, plus the request time and
//! the cache status, so the log tools that read the nginx in front of
//! FastDFS read ours:
//!
//! ```text
//! 10.0.0.9 - - [26/Nov/2026:23:40:01 +0800] "GET /group1/M00/00/00/x.jpg HTTP/1.1" 200 4096 "-" "curl/8.5.0" 0.002 HIT
//! ```
//!
//! The byte count is the response's Content-Length (`-` when it has none):
//! the line is written when the response starts, not when its body ends.
//! The file rotates daily at midnight, through [`fdfs_runtime::logfile`];
//! the gateway reopens it on SIGHUP.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fdfs_runtime::clock::{unix_now, LocalTime};
use fdfs_runtime::logfile::{LogFile, Rotation};
use http::{header, Request, Response};

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    file: LogFile,
}

/// What is known of a request before it is handled.
#[derive(Debug)]
pub struct Started {
    peer: SocketAddr,
    request_line: String,
    referer: String,
    user_agent: String,
    at: Instant,
}

impl AccessLog {
    /// Opens (appends to) `path`, rotated daily and kept `keep_days` days
    /// (0 = kept).
    pub fn open(path: &Path, keep_days: u32) -> std::io::Result<AccessLog> {
        let rotation = Rotation {
            keep_days,
            ..Rotation::default()
        };
        Ok(AccessLog {
            file: LogFile::open(path, rotation)?,
        })
    }

    /// Opens the file at its path again (after an outside logrotate moved
    /// it).
    pub fn reopen(&self) -> std::io::Result<()> {
        self.file.reopen()
    }

    /// Notes a request as it arrives.
    pub fn start<B>(req: &Request<B>, peer: SocketAddr) -> Started {
        let h = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .map_or_else(|| "-".to_owned(), |v| escape(v.as_bytes()))
        };
        Started {
            peer,
            request_line: format!(
                "{} {} {:?}",
                req.method(),
                escape(req.uri().to_string().as_bytes()),
                req.version()
            ),
            referer: h(header::REFERER),
            user_agent: h(header::USER_AGENT),
            at: Instant::now(),
        }
    }

    /// Writes the line of a request answered with `resp`. A failed write
    /// is dropped: serving never waits on the log.
    pub fn write<B>(&self, started: Started, resp: &Response<B>) {
        let line = started.line(resp, started.at.elapsed(), unix_now());
        let _ = (&self.file).write_all(line.as_bytes());
    }
}

impl Started {
    fn line<B>(&self, resp: &Response<B>, took: Duration, now: i64) -> String {
        let hv = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let mut s = String::with_capacity(160 + self.request_line.len());
        let _ = write!(
            s,
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {}.{:03} {}",
            self.peer.ip(),
            time_local(now),
            self.request_line,
            resp.status().as_u16(),
            hv("content-length"),
            self.referer,
            self.user_agent,
            took.as_secs(),
            took.subsec_millis(),
            hv("x-cache"),
        );
        s.push('\n');
        s
    }
}

/// nginx's `$time_local`: `26/Nov/2026:23:40:01 +0800`.
fn time_local(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Some(t) = LocalTime::at(unix) else {
        return unix.to_string();
    };
    let off = t.offset_secs;
    let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        t.day,
        MONTHS[(t.month as usize).clamp(1, 12) - 1],
        t.year,
        t.hour,
        t.minute,
        t.second,
        off / 3600,
        off % 3600 / 60
    )
}

/// Printable ASCII as is, except `"` and `\`; anything else as `\xHH`, as
/// nginx escapes its log variables, so a line stays one parseable line.
fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            s.push(c as char);
        } else {
            let _ = write!(s, "\\x{c:02X}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_combined_fields_then_time_and_cache() {
        let req = Request::get("/group1/M00/00/00/a.jpg?x=1")
            .header(
                header::USER_AGENT,
                header::HeaderValue::from_bytes(b"curl/8 \"quoted\"\xff").unwrap(),
            )
            .body(())
            .unwrap();
        let started = AccessLog::start(&req, "10.0.0.9:5000".parse().unwrap());
        let resp = Response::builder()
            .status(200)
            .header(header::CONTENT_LENGTH, "4096")
            .header("X-Cache", "HIT")
            .body(())
            .unwrap();
        let line = started.line(&resp, Duration::from_millis(1234), 1_589_774_253);
        let stamp = time_local(1_589_774_253);
        assert_eq!(
            line,
            format!(
                "10.0.0.9 - - [{stamp}] \"GET /group1/M00/00/00/a.jpg?x=1 HTTP/1.1\" 200 4096 \
                 \"-\" \"curl/8 \\x22quoted\\x22\\xFF\" 1.234 HIT\n"
            )
        );
        // 18/May/2020:..., whatever the zone.
        assert!(stamp.contains("/May/2020:"), "{stamp}");
        assert_eq!(stamp.len(), 26, "{stamp}");
        // No length, no cache: dashes.
        let resp = Response::builder().status(404).body(()).unwrap();
        let line = started.line(&resp, Duration::ZERO, 0);
        assert!(
            line.ends_with("\" 404 - \"-\" \"curl/8 \\x22quoted\\x22\\xFF\" 0.000 -\n"),
            "{line}"
        );
    }

    #[test]
    fn lines_go_to_the_file() {
        let d = tempfile::tempdir().unwrap();
        let log = AccessLog::open(&d.path().join("access.log"), 15).unwrap();
        let req = Request::head("/healthz").body(()).unwrap();
        let resp = Response::builder().status(200).body(()).unwrap();
        log.write(
            AccessLog::start(&req, "127.0.0.1:1".parse().unwrap()),
            &resp,
        );
        log.write(
            AccessLog::start(&req, "127.0.0.2:1".parse().unwrap()),
            &resp,
        );
        let text = std::fs::read_to_string(d.path().join("access.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[1].starts_with("127.0.0.2 - - ["), "{text}");
        assert!(
            lines[0].contains("\"HEAD /healthz HTTP/1.1\" 200 -"),
            "{text}"
        );
    }
}

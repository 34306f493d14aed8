//! `logs/storage_access.log` (`[access-log] enabled = true`, or
//! `use_access_log` in older files): one line per client request.
//!
//! ```text
//! 2026-11-27 00:10:01.123 192.168.1.20 DOWNLOAD_FILE 0 4096 1ms group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip
//! ```
//!
//! Fields: local time (milliseconds, or microseconds with
//! `time_precision = us`), client address, command, status (errno, 0 = OK,
//! `-` when the connection broke), content bytes (of an upload, download,
//! append or modify), time taken in the same unit, file ID (`-` when the
//! request named none). Upstream does not document its own format; this one
//! is ours and stable. Sync commands between storages are not logged.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fdfs_runtime::clock::LocalTime;
use fdfs_runtime::logfile::{LogFile, Rotation};

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    file: LogFile,
    micros: bool,
}

/// What a request did, noted by its handler.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Note {
    pub status: u8,
    pub bytes: u64,
    pub file: Option<String>,
}

impl AccessLog {
    pub fn open(path: &Path, rotation: Rotation, micros: bool) -> std::io::Result<AccessLog> {
        Ok(AccessLog {
            file: LogFile::open(path, rotation)?,
            micros,
        })
    }

    /// Writes one request's line; `note` is `None` when the connection
    /// broke before a reply. A failed write is dropped: serving never
    /// waits on the log.
    pub fn write(&self, peer: IpAddr, command: &str, note: Option<&Note>, took: Duration) {
        let line = self.line(SystemTime::now(), peer, command, note, took);
        let _ = (&self.file).write_all(line.as_bytes());
    }

    fn line(
        &self,
        at: SystemTime,
        peer: IpAddr,
        command: &str,
        note: Option<&Note>,
        took: Duration,
    ) -> String {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let stamp = match LocalTime::at(secs) {
            Some(t) => format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            ),
            None => secs.to_string(),
        };
        let (frac, took) = if self.micros {
            (
                format!("{:06}", since.subsec_micros()),
                format!("{}us", took.as_micros()),
            )
        } else {
            (
                format!("{:03}", since.subsec_millis()),
                format!("{}ms", took.as_millis()),
            )
        };
        let (status, bytes, file) = match note {
            Some(n) => (
                n.status.to_string(),
                n.bytes,
                n.file.as_deref().unwrap_or("-"),
            ),
            None => ("-".to_owned(), 0, "-"),
        };
        format!("{stamp}.{frac} {peer} {command} {status} {bytes} {took} {file}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_in_the_chosen_precision() {
        let d = tempfile::tempdir().unwrap();
        let ms = AccessLog::open(&d.path().join("a.log"), Rotation::default(), false).unwrap();
        let us = AccessLog::open(&d.path().join("b.log"), Rotation::default(), true).unwrap();
        let at = UNIX_EPOCH + Duration::from_micros(1_589_774_253_123_456);
        let note = Note {
            status: 0,
            bytes: 170,
            file: Some("group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip".into()),
        };
        let peer: IpAddr = "192.168.1.20".parse().unwrap();
        let day = LocalTime::at(1_589_774_253).unwrap();
        let stamp = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            day.year, day.month, day.day, day.hour, day.minute, day.second
        );
        assert_eq!(
            ms.line(
                at,
                peer,
                "DOWNLOAD_FILE",
                Some(&note),
                Duration::from_micros(1500)
            ),
            format!(
                "{stamp}.123 192.168.1.20 DOWNLOAD_FILE 0 170 1ms \
                 group1/M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip\n"
            )
        );
        assert_eq!(
            us.line(
                at,
                peer,
                "DELETE_FILE",
                Some(&Note {
                    status: 2,
                    ..Note::default()
                }),
                Duration::from_micros(1500)
            ),
            format!("{stamp}.123456 192.168.1.20 DELETE_FILE 2 0 1500us -\n")
        );
        assert_eq!(
            ms.line(at, peer, "UPLOAD_FILE", None, Duration::ZERO),
            format!("{stamp}.123 192.168.1.20 UPLOAD_FILE - 0 0ms -\n")
        );
        ms.write(peer, "ACTIVE_TEST", Some(&Note::default()), Duration::ZERO);
        let text = std::fs::read_to_string(d.path().join("a.log")).unwrap();
        assert!(
            text.ends_with(" 192.168.1.20 ACTIVE_TEST 0 0 0ms -\n"),
            "{text}"
        );
    }
}

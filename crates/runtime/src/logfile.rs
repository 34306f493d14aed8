//! The daemon's log file, rotated as FastDFS rotates its logs (CONFIG.md
//! §2): every day at `log_file_rotate_time` with `log_file_rotate_everyday`,
//! and before it would pass `log_file_rotate_on_size`. Each rotation deletes
//! rotated files older than `log_file_keep_days`. SIGHUP reopens the file,
//! for an outside logrotate that moved it.
//!
//! Rotation happens on the first line written once it is due, so a quiet
//! log is rotated at its next line rather than by a timer.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::clock::{next_local_time_of_day, unix_now, LocalTime};

/// When the log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub everyday: bool,
    /// Local time of the daily rotation, in seconds since midnight.
    pub at: u32,
    /// Rotate before the file would pass this many bytes (0: never).
    pub on_size: u64,
    /// Delete rotated files older than this many days (0: keep them).
    pub keep_days: u32,
}

impl Default for Rotation {
    /// FastDFS's defaults: daily at midnight, kept 15 days.
    fn default() -> Self {
        Rotation {
            everyday: true,
            at: 0,
            on_size: 0,
            keep_days: 15,
        }
    }
}

/// A log file that rotates itself; write to `&LogFile`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    size: u64,
    /// Unix time of the next daily rotation.
    next_daily: i64,
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl LogFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogFile> {
        let (file, size) = open_append(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            rotation,
            state: Mutex::new(State {
                file,
                size,
                next_daily: next_local_time_of_day(unix_now(), rotation.at),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file at the path again (after logrotate moved it).
    pub fn reopen(&self) -> io::Result<()> {
        let (file, size) = open_append(&self.path)?;
        let mut st = self.lock();
        st.file = file;
        st.size = size;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `buf` as of `now` (unix seconds), rotating first if due.
    fn write_at(&self, now: i64, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.lock();
        let r = self.rotation;
        if r.everyday && now >= st.next_daily {
            // Named after the last day the file covers.
            let suffix = LocalTime::at(st.next_daily - 1)
                .map_or_else(|| (st.next_daily - 1).to_string(), |t| t.date_compact());
            st.next_daily = next_local_time_of_day(now, r.at);
            self.rotate(&mut st, &suffix, now);
        } else if r.on_size > 0 && st.size > 0 && st.size + buf.len() as u64 > r.on_size {
            let suffix = LocalTime::at(now).map_or_else(
                || now.to_string(),
                |t| {
                    format!(
                        "{}_{:02}{:02}{:02}",
                        t.date_compact(),
                        t.hour,
                        t.minute,
                        t.second
                    )
                },
            );
            self.rotate(&mut st, &suffix, now);
        }
        st.file.write_all(buf)?;
        st.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// Moves the file to `<path>.<suffix>` (`.1`, `.2`... after it if taken)
    /// and starts a new one. A failure is written into the log, which then
    /// goes on in the old file: logging never stops over it.
    fn rotate(&self, st: &mut State, suffix: &str, now: i64) {
        if st.size == 0 {
            return;
        }
        let base = format!("{}.{suffix}", self.path.display());
        let mut to = PathBuf::from(&base);
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{base}.{n}"));
            n += 1;
        }
        let moved = std::fs::rename(&self.path, &to).and_then(|()| open_append(&self.path));
        match moved {
            Ok((file, size)) => {
                st.file = file;
                st.size = size;
            }
            Err(e) => {
                let _ = writeln!(
                    st.file,
                    "log rotation to {} failed: {e}; going on in this file",
                    to.display()
                );
            }
        }
        if self.rotation.keep_days > 0 {
            let keep = Duration::from_secs(u64::from(self.rotation.keep_days) * 86400);
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
            self.delete_older_than(now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH));
        }
    }

    /// Deletes the rotated files (`<file name>.*` beside it) last written
    /// before `limit`.
    fn delete_older_than(&self, limit: SystemTime) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < limit);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at(unix_now(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotated(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("trackerd.log."))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_about_to_pass_its_size_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        let log = LogFile::open(
            &path,
            Rotation {
                everyday: false,
                on_size: 100,
                keep_days: 0,
                ..Rotation::default()
            },
        )
        .unwrap();
        let now = unix_now();
        let line = [b'a'; 40];
        for _ in 0..2 {
            log.write_at(now, &line).unwrap();
        }
        assert!(rotated(d.path()).is_empty(), "80 bytes fit");
        // The third line would make 120: the first two move aside.
        log.write_at(now, &[b'b'; 40]).unwrap();
        log.write_at(now, &[b'c'; 40]).unwrap();
        let old = rotated(d.path());
        assert_eq!(old.len(), 1, "{old:?}");
        let t = LocalTime::at(now).unwrap();
        assert!(old[0].starts_with(&format!("trackerd.log.{}_", t.date_compact())));
        assert_eq!(std::fs::read(d.path().join(&old[0])).unwrap(), [b'a'; 80]);
        let mut cur = vec![b'b'; 40];
        cur.extend([b'c'; 40]);
        assert_eq!(std::fs::read(&path).unwrap(), cur);
        // A second rotation within the same second gets its own name.
        log.write_at(now, &[b'd'; 40]).unwrap();
        assert_eq!(rotated(d.path()).len(), 2);
        // A line bigger than the limit still goes in, alone.
        log.write_at(now, &[b'e'; 300]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [b'e'; 300]);
    }

    #[test]
    fn the_daily_rotation_names_the_day_and_deletes_what_is_too_old() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        // Rotated files of earlier runs: one 20 days old, one of yesterday.
        let day = Duration::from_secs(86400);
        for (name, age) in [("trackerd.log.old", 20), ("trackerd.log.recent", 1)] {
            let f = File::create(d.path().join(name)).unwrap();
            f.set_modified(SystemTime::now() - day * age).unwrap();
        }
        let log = LogFile::open(
            &path,
            Rotation {
                keep_days: 15,
                ..Rotation::default()
            },
        )
        .unwrap();
        let due = log.lock().next_daily;
        log.write_at(due - 10, b"before midnight\n").unwrap();
        assert_eq!(rotated(d.path()).len(), 2);
        log.write_at(due + 5, b"after midnight\n").unwrap();
        let day_before = LocalTime::at(due - 1).unwrap().date_compact();
        assert_eq!(
            rotated(d.path()),
            [
                format!("trackerd.log.{day_before}"),
                "trackerd.log.recent".to_owned()
            ]
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join(format!("trackerd.log.{day_before}"))).unwrap(),
            "before midnight\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after midnight\n");
        // The next one is a day later.
        assert_eq!(log.lock().next_daily, next_local_time_of_day(due + 5, 0));
        log.write_at(due + 60, b"same day\n").unwrap();
        assert_eq!(rotated(d.path()).len(), 2);
    }

    #[test]
    fn reopen_follows_a_file_moved_away() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        let log = LogFile::open(&path, Rotation::default()).unwrap();
        (&log).write_all(b"first\n").unwrap();
        std::fs::rename(&path, d.path().join("moved")).unwrap();
        (&log).write_all(b"still in the moved file\n").unwrap();
        log.reopen().unwrap();
        (&log).write_all(b"new file\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("moved")).unwrap(),
            "first\nstill in the moved file\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new file\n");
    }
}

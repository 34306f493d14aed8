//! The daemon's log file, rotated as FastDFS rotates its logs (CONFIG.md
//! §2): every day at `log_file_rotate_time` with `log_file_rotate_everyday`
//! (to `<log>.YYYYMMDD`), and before it would pass `log_file_rotate_on_size`
//! (to `<log>.YYYYMMDD_HHMMSS`; `.1`, `.2`... after a taken name). SIGHUP
//! reopens the file, for an outside logrotate that moved it.
//!
//! Rotation happens on the first line written once it is due, so a quiet
//! log is rotated at its next line rather than by a timer.
//!
//! Rotated files are then looked after by a housekeeping pass, run after
//! each rotation and every day at `log_file_delete_old_time` (local), so a
//! quiet log is still cleaned up:
//!
//! - rotated files (`<log>.*`, `.gz` included) last written more than
//!   `log_file_keep_days` days ago are deleted (0: kept);
//! - with `log_file_compress_old`, a rotated file of ours (`<log>.YYYYMMDD`,
//!   `<log>.YYYYMMDD_HHMMSS`, with or without `.N`) last written before
//!   today minus `log_file_compress_days_before - 1` days (1: before
//!   today; 0: at once) is gzipped to `<name>.gz`, which keeps its mtime.
//!   The gzip goes to `<name>.gz.tmp`, is synced, renamed to `<name>.gz`
//!   and only then is the plain file deleted: a crash leaves the plain file,
//!   and the next pass deletes the `.tmp` and compresses it again. A failure
//!   is logged (through `tracing`, with no lock of the log held) and leaves
//!   the plain file.
//!
//! The pass runs on a thread of its own, so a write never waits for it. The
//! thread starts with the first line written (not at `open`: a daemon opens
//! its log before it forks, and a thread would not survive the fork) and
//! ends when the `LogFile` is dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::clock::{next_local_time_of_day, unix_now, LocalTime};

/// When the log file is rotated, and what becomes of rotated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub everyday: bool,
    /// Local time of the daily rotation, in seconds since midnight.
    pub at: u32,
    /// Rotate before the file would pass this many bytes (0: never).
    pub on_size: u64,
    /// Delete rotated files older than this many days (0: keep them).
    pub keep_days: u32,
    /// Gzip rotated files to `<name>.gz`.
    pub compress_old: bool,
    /// Compress a rotated file last written before today minus this many
    /// days plus one (1: before today; 0: right at rotation).
    pub compress_days_before: u32,
    /// Local time of the daily deletion (and compression) pass, in seconds
    /// since midnight.
    pub delete_at: u32,
}

impl Default for Rotation {
    /// FastDFS's defaults: daily at midnight, kept 15 days, not compressed,
    /// old files deleted at 01:30.
    fn default() -> Self {
        Rotation {
            everyday: true,
            at: 0,
            on_size: 0,
            keep_days: 15,
            compress_old: false,
            compress_days_before: 1,
            delete_at: 5400,
        }
    }
}

impl Rotation {
    /// Whether rotated files need a housekeeping pass at all.
    fn has_housekeeping(&self) -> bool {
        self.keep_days > 0 || self.compress_old
    }
}

/// A log file that rotates itself; write to `&LogFile`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    /// Shared with [`OPEN`], for [`reopen_all`].
    state: Arc<Mutex<State>>,
    keeper: Arc<Keeper>,
}

/// Every log file of the process, so that one SIGHUP reopens them all (an
/// outside logrotate moves each of them).
static OPEN: Mutex<Vec<(PathBuf, std::sync::Weak<Mutex<State>>)>> = Mutex::new(Vec::new());

/// Opens every log file of the process at its path again; what each gave.
pub fn reopen_all() -> Vec<(PathBuf, io::Result<()>)> {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|(_, w)| w.strong_count() > 0);
    open.iter()
        .filter_map(|(path, w)| Some((path, w.upgrade()?)))
        .map(|(path, state)| (path.clone(), reopen_state(path, &state)))
        .collect()
}

fn reopen_state(path: &Path, state: &Mutex<State>) -> io::Result<()> {
    let (file, size) = open_append(path)?;
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.file = file;
    st.size = size;
    Ok(())
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

/// `<path><ext>`.
fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

impl LogFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogFile> {
        let (file, size) = open_append(path)?;
        let state = Arc::new(Mutex::new(State {
            file,
            size,
            next_daily: next_local_time_of_day(unix_now(), rotation.at),
        }));
        OPEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_owned(), Arc::downgrade(&state)));
        Ok(LogFile {
            path: path.to_owned(),
            rotation,
            state,
            keeper: Arc::new(Keeper {
                path: path.to_owned(),
                rotation,
                started: AtomicBool::new(false),
                sched: Mutex::new(Sched::default()),
                wake: Condvar::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file at the path again (after logrotate moved it).
    pub fn reopen(&self) -> io::Result<()> {
        reopen_state(&self.path, &self.state)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `buf` as of `now` (unix seconds), rotating first if due.
    fn write_at(&self, now: i64, buf: &[u8]) -> io::Result<usize> {
        self.keeper.start();
        let mut st = self.lock();
        let r = self.rotation;
        if r.everyday && now >= st.next_daily {
            // Named after the last day the file covers.
            let suffix = LocalTime::at(st.next_daily - 1)
                .map_or_else(|| (st.next_daily - 1).to_string(), |t| t.date_compact());
            st.next_daily = next_local_time_of_day(now, r.at);
            self.rotate(&mut st, &suffix);
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
            self.rotate(&mut st, &suffix);
        }
        st.file.write_all(buf)?;
        st.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// Moves the file to `<path>.<suffix>` (`.1`, `.2`... after it if taken,
    /// plain or gzipped) and starts a new one, then asks for a housekeeping
    /// pass. A failure is written into the log, which then goes on in the
    /// old file: logging never stops over it.
    fn rotate(&self, st: &mut State, suffix: &str) {
        if st.size == 0 {
            return;
        }
        let base = format!("{}.{suffix}", self.path.display());
        let mut to = PathBuf::from(&base);
        let mut n = 1;
        while to.exists() || with_ext(&to, ".gz").exists() {
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
        self.keeper.request();
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.keeper.stop();
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

/// The housekeeping of rotated files: deletion of old ones, compression.
/// Its thread holds no lock of the log while it works, so what it logs
/// (through `tracing`, possibly into this very file) cannot deadlock.
#[derive(Debug)]
struct Keeper {
    path: PathBuf,
    rotation: Rotation,
    /// The thread was spawned (checked without the lock on every write).
    started: AtomicBool,
    sched: Mutex<Sched>,
    /// Wakes the thread (a request, the stop) and those waiting for a pass.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Sched {
    /// A pass was asked for (a rotation).
    requested: bool,
    /// A pass is under way.
    running: bool,
    /// The `LogFile` is gone: the thread ends.
    stop: bool,
    /// Unix time of the next daily pass (0 until the thread starts).
    next_daily: i64,
    /// Passes done.
    passes: u64,
}

impl Keeper {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns the thread if there is housekeeping to do and it does not run
    /// yet. A failure to spawn is tried again with the next line.
    fn start(self: &Arc<Self>) {
        if !self.rotation.has_housekeeping() || self.started.load(Ordering::Acquire) {
            return;
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("fdfs-logfile".into())
            .spawn(move || me.run());
        if spawned.is_err() {
            self.started.store(false, Ordering::Release);
        }
    }

    /// Asks for a pass (after a rotation); the thread does it soon.
    fn request(&self) {
        if !self.rotation.has_housekeeping() {
            return;
        }
        self.lock().requested = true;
        self.wake.notify_all();
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// The thread: a pass as it starts (a daemon that was down at
    /// `delete_at` still gets one that day), when asked, and every day at
    /// `delete_at`, until stopped. It wakes at least every minute to follow
    /// the wall clock.
    fn run(&self) {
        let mut s = self.lock();
        s.next_daily = next_local_time_of_day(unix_now(), self.rotation.delete_at);
        s.requested = true;
        loop {
            if s.stop {
                return;
            }
            let now = unix_now();
            if now >= s.next_daily {
                s.next_daily = next_local_time_of_day(now, self.rotation.delete_at);
                s.requested = true;
            }
            if s.requested {
                s.requested = false;
                s.running = true;
                drop(s);
                self.pass(unix_now());
                s = self.lock();
                s.running = false;
                s.passes += 1;
                self.wake.notify_all();
                continue;
            }
            let wait = (s.next_daily - now).clamp(1, 60) as u64;
            s = self
                .wake
                .wait_timeout(s, Duration::from_secs(wait))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Deletes what is too old, then compresses what is old enough, among
    /// the rotated files beside the log, as of `now` (unix seconds).
    fn pass(&self, now: i64) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut rotated = Vec::new();
        for e in entries.flatten() {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let Some(suffix) = file_name.strip_prefix(&prefix) else {
                continue;
            };
            let path = e.path();
            if suffix.ends_with(".gz.tmp") {
                // Left by a compression that did not finish; redone below.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            rotated.push((path, our_rotated_name(suffix), mtime));
        }
        let at = |secs: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        let r = self.rotation;
        if r.keep_days > 0 {
            let limit = at(now - i64::from(r.keep_days) * 86400);
            rotated.retain(|(path, _, mtime)| {
                if *mtime < limit {
                    let _ = std::fs::remove_file(path);
                    return false;
                }
                true
            });
        }
        if !r.compress_old {
            return;
        }
        let limit = match r.compress_days_before {
            0 => None,
            d => {
                let today = LocalTime::at(now)
                    .map_or(now.rem_euclid(86400), |t| i64::from(t.secs_of_day()));
                Some(at(now - today - i64::from(d - 1) * 86400))
            }
        };
        for (path, ours, mtime) in rotated {
            if !ours || limit.is_some_and(|l| mtime >= l) {
                continue;
            }
            if let Err(e) = gzip(&path) {
                tracing::warn!(
                    path = %path.display(),
                    "cannot compress the rotated log file, left as it is: {e}"
                );
            }
        }
    }
}

/// Whether `suffix` (after `<log>.`) is a plain rotated file of ours:
/// `YYYYMMDD` or `YYYYMMDD_HHMMSS`, then `.N` or nothing.
fn our_rotated_name(suffix: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (stamp, n) = match suffix.split_once('.') {
        Some((stamp, n)) => (stamp, Some(n)),
        None => (suffix, None),
    };
    let stamp_ok = match stamp.split_once('_') {
        Some((day, time)) => digits(day, 8) && digits(time, 6),
        None => digits(stamp, 8),
    };
    stamp_ok && n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Compresses `plain` to `<plain>.gz` (by way of `<plain>.gz.tmp`, synced
/// before the rename) with its mtime, then deletes `plain`. On a failure
/// the plain file stays, and no `.tmp`.
fn gzip(plain: &Path) -> io::Result<()> {
    use flate2::{Compression, GzBuilder};
    let gz = with_ext(plain, ".gz");
    let tmp = with_ext(plain, ".gz.tmp");
    let mut src = File::open(plain)?;
    let mtime = src.metadata()?.modified()?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let done = (|| {
        let secs = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(0));
        let mut enc = GzBuilder::new();
        if let Some(name) = plain.file_name() {
            enc = enc.filename(name.as_encoded_bytes());
        }
        let mut enc = enc.mtime(secs).write(out, Compression::default());
        io::copy(&mut src, &mut enc)?;
        let out = enc.finish()?;
        out.set_modified(mtime)?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &gz)?;
        // The rename is on disk before the only other copy goes.
        if let Some(dir) = plain.parent() {
            File::open(dir)?.sync_all()?;
        }
        std::fs::remove_file(plain)
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
impl Keeper {
    /// Waits, holding `s` between looks, while `busy` holds; fails the test
    /// with `what` past `deadline`. Looks at least every 10 ms (the thread
    /// does not signal every change).
    fn wait_while<'a>(
        &'a self,
        mut s: MutexGuard<'a, Sched>,
        deadline: std::time::Instant,
        what: &str,
        busy: impl Fn(&Sched) -> bool,
    ) -> MutexGuard<'a, Sched> {
        while busy(&s) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "{what}");
            s = self
                .wake
                .wait_timeout(s, left.min(Duration::from_millis(10)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s
    }

    fn deadline() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(20)
    }

    /// Waits until no pass is asked for or under way.
    fn settle(&self) {
        drop(self.wait_while(
            self.lock(),
            Self::deadline(),
            "the housekeeping pass did not end",
            |s| s.requested || s.running,
        ));
    }

    /// Waits until the thread has made its first pass.
    fn first_pass(&self) {
        drop(
            self.wait_while(self.lock(), Self::deadline(), "no pass at the start", |s| {
                s.passes == 0
            }),
        );
    }

    /// Makes the daily pass due now, as if the clock reached `delete_at`,
    /// and waits until the thread has done it.
    fn daily_pass_now(&self) {
        let deadline = Self::deadline();
        // The thread sets its first due time as it starts.
        let mut s = self.wait_while(self.lock(), deadline, "no thread", |s| s.next_daily == 0);
        let before = s.passes;
        s.next_daily = 1;
        self.wake.notify_all();
        drop(self.wait_while(s, deadline, "no daily pass", |s| s.passes == before));
        self.settle();
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
        for (name, age) in [
            ("trackerd.log.old", 20),
            ("trackerd.log.20000101.gz", 20),
            ("trackerd.log.recent", 1),
        ] {
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
        assert_eq!(rotated(d.path()).len(), 3);
        log.write_at(due + 5, b"after midnight\n").unwrap();
        log.keeper.settle();
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

    fn gunzip(path: &Path) -> (String, Option<Vec<u8>>) {
        use std::io::Read;
        let mut dec = flate2::read::GzDecoder::new(File::open(path).unwrap());
        let mut text = String::new();
        dec.read_to_string(&mut text).unwrap();
        let name = dec.header().and_then(|h| h.filename()).map(<[u8]>::to_vec);
        (text, name)
    }

    fn mtime(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
    }

    /// A log rotated past 100 bytes whose rotated files are gzipped once
    /// `days_before` old, and never deleted.
    fn compressing(path: &Path, days_before: u32) -> LogFile {
        let rotation = Rotation {
            everyday: false,
            on_size: 100,
            keep_days: 0,
            compress_old: true,
            compress_days_before: days_before,
            ..Rotation::default()
        };
        LogFile::open(path, rotation).unwrap()
    }

    #[test]
    fn with_days_before_0_a_rotated_file_is_gzipped_at_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        let log = compressing(&path, 0);
        let now = unix_now();
        log.write_at(now, b"first line\n").unwrap();
        log.write_at(now, b"second line\n").unwrap();
        log.write_at(now, &[b'x'; 90]).unwrap();
        log.keeper.settle();
        let old = rotated(d.path());
        assert_eq!(old.len(), 1, "{old:?}");
        let gz = d.path().join(&old[0]);
        let plain = old[0].strip_suffix(".gz").expect("gzipped");
        let (text, name) = gunzip(&gz);
        assert_eq!(text, "first line\nsecond line\n");
        assert_eq!(name.as_deref(), Some(plain.as_bytes()));
        assert_eq!(std::fs::read(&path).unwrap(), [b'x'; 90]);
        // Within the same second: the next rotation must not take the
        // name whose plain file is gone, or its .gz would be overwritten.
        log.write_at(now, &[b'y'; 90]).unwrap();
        log.keeper.settle();
        let old = rotated(d.path());
        assert_eq!(old, [format!("{plain}.1.gz"), format!("{plain}.gz")]);
        assert_eq!(gunzip(&gz).0, "first line\nsecond line\n");
        let (text, _) = gunzip(&d.path().join(&old[0]));
        assert_eq!(text.as_bytes(), [b'x'; 90]);
    }

    #[test]
    fn with_days_before_1_only_files_of_earlier_days_are_gzipped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86400);
        for name in [
            "trackerd.log.20000101",
            "trackerd.log.20000102_030405.1",
            // Not a name of ours (an outside logrotate's, a copy): left.
            "trackerd.log.bak",
        ] {
            let mut f = File::create(d.path().join(name)).unwrap();
            writeln!(f, "in {name}").unwrap();
            f.set_modified(two_days_ago).unwrap();
        }
        let log = compressing(&path, 1);
        let now = unix_now();
        log.write_at(now, &[b'a'; 60]).unwrap();
        log.write_at(now, &[b'b'; 60]).unwrap();
        log.keeper.settle();
        let just = rotated(d.path())
            .into_iter()
            .find(|n| !n.starts_with("trackerd.log.2000") && n != "trackerd.log.bak")
            .expect("the file just rotated");
        assert_eq!(
            rotated(d.path()),
            [
                "trackerd.log.20000101.gz".to_owned(),
                "trackerd.log.20000102_030405.1.gz".to_owned(),
                just.clone(),
                "trackerd.log.bak".to_owned(),
            ]
        );
        // Written today: stays plain.
        assert_eq!(std::fs::read(d.path().join(&just)).unwrap(), [b'a'; 60]);
        let gz = d.path().join("trackerd.log.20000101.gz");
        assert_eq!(gunzip(&gz).0, "in trackerd.log.20000101\n");
        // The .gz keeps the time of the plain file, for log_file_keep_days.
        assert_eq!(secs(mtime(&gz)), secs(two_days_ago));
        assert_eq!(
            std::fs::read_to_string(d.path().join("trackerd.log.bak")).unwrap(),
            "in trackerd.log.bak\n"
        );
    }

    /// Files `(name, age in days)` in `dir`, each holding "in <name>".
    fn aged_files(dir: &Path, files: &[(&str, u32)]) {
        let now = SystemTime::now();
        for (name, age) in files {
            let mut f = File::create(dir.join(name)).unwrap();
            writeln!(f, "in {name}").unwrap();
            f.set_modified(now - Duration::from_secs(86400) * *age)
                .unwrap();
        }
    }

    fn open_keeping_15_days_compressed(path: &Path) -> LogFile {
        LogFile::open(
            path,
            Rotation {
                keep_days: 15,
                compress_old: true,
                ..Rotation::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn reopen_all_reopens_every_open_log_at_its_path() {
        let d = tempfile::tempdir().unwrap();
        let paths = [d.path().join("a.log"), d.path().join("b.log")];
        let logs: Vec<LogFile> = paths
            .iter()
            .map(|p| LogFile::open(p, Rotation::default()).unwrap())
            .collect();
        let gone = LogFile::open(&d.path().join("gone.log"), Rotation::default()).unwrap();
        drop(gone);
        // An outside logrotate moves them away; then SIGHUP.
        for p in &paths {
            std::fs::rename(p, p.with_extension("log.1")).unwrap();
        }
        let done = reopen_all();
        for p in &paths {
            assert!(
                done.iter().any(|(q, r)| q == p && r.is_ok()),
                "{p:?} in {done:?}"
            );
        }
        assert!(
            !done.iter().any(|(q, _)| q.ends_with("gone.log")),
            "a closed log is not reopened: {done:?}"
        );
        for (log, p) in logs.iter().zip(&paths) {
            (&*log).write_all(b"after\n").unwrap();
            assert_eq!(std::fs::read_to_string(p).unwrap(), "after\n");
        }
    }

    #[test]
    fn a_pass_runs_as_the_log_starts() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        aged_files(
            d.path(),
            &[
                ("trackerd.log.20000101.gz", 20),
                ("trackerd.log.20000102", 3),
            ],
        );
        let log = open_keeping_15_days_compressed(&path);
        (&log).write_all(b"started\n").unwrap();
        // No daily pass is due (delete_at is hours away or just passed):
        // this is the one the thread makes as it starts.
        log.keeper.first_pass();
        assert_eq!(rotated(d.path()), ["trackerd.log.20000102.gz"]);
    }

    #[test]
    fn the_daily_pass_deletes_old_gz_files_and_redoes_an_unfinished_compression() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trackerd.log");
        aged_files(
            d.path(),
            &[
                ("trackerd.log.20000101.gz", 20),
                ("trackerd.log.20000102.gz", 3),
                ("trackerd.log.20000103", 3),
                // A crash in the middle of compressing 20000103.
                ("trackerd.log.20000103.gz.tmp", 3),
                // One whose plain file is gone.
                ("trackerd.log.20000104.gz.tmp", 3),
                ("trackerd.log.20000105", 3),
            ],
        );
        // Compressing this one fails: its .tmp name is taken by a directory.
        std::fs::create_dir(d.path().join("trackerd.log.20000105.gz.tmp")).unwrap();
        let log = open_keeping_15_days_compressed(&path);
        // A quiet log: one line, no rotation.
        (&log).write_all(b"started\n").unwrap();
        log.keeper.daily_pass_now();
        assert_eq!(
            rotated(d.path()),
            [
                "trackerd.log.20000102.gz",
                "trackerd.log.20000103.gz",
                "trackerd.log.20000105",
                "trackerd.log.20000105.gz.tmp",
            ]
        );
        let (text, _) = gunzip(&d.path().join("trackerd.log.20000103.gz"));
        assert_eq!(text, "in trackerd.log.20000103\n");
        assert_eq!(
            std::fs::read_to_string(d.path().join("trackerd.log.20000105")).unwrap(),
            "in trackerd.log.20000105\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "started\n");
        // The next daily pass is at the next 01:30.
        let next = log.keeper.lock().next_daily;
        let t = unix_now();
        assert!(next > t - 5 && next <= t + 86400 + 3600, "{next} vs {t}");
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

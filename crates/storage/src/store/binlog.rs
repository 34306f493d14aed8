//! The storage binlog (PROTOCOL.md §9.1): `<base>/data/sync/binlog.NNN`,
//! one text record per change, with the current file index in
//! `binlog_index.dat`.
//!
//! Writes go straight to the file (one `write` per record, so a record is
//! never split between processes' views). [`Binlog::sync`] is a group
//! commit: the first caller fsyncs for every record appended so far, and
//! callers whose record is already covered return at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fdfs_proto::binlog::BinlogRecord;

use super::journal::Journal;

/// Rotate to a new file once the current one reaches this size.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

const INDEX_FILE: &str = "binlog_index.dat";

/// Path of binlog file number `index` in `dir`.
pub fn binlog_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("binlog.{index:03}"))
}

struct Current {
    file: Arc<File>,
    index: u32,
    size: u64,
    /// Number of records appended since start (group-commit sequence).
    seq: u64,
}

impl Current {
    /// Continues in binlog file `index` (created if new) and records it in
    /// the index file.
    fn move_to(&mut self, dir: &Path, index: u32) -> io::Result<()> {
        let file = open_for_append(&binlog_path(dir, index))?;
        write_index(dir, index)?;
        self.size = file.metadata()?.len();
        self.file = Arc::new(file);
        self.index = index;
        Ok(())
    }
}

/// A binlog file opened to append (and to read back, for the recovery).
fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .open(path)
}

/// The append side of the binlog.
pub struct Binlog {
    dir: PathBuf,
    max_size: u64,
    cur: Mutex<Current>,
    /// Highest sequence number known to be on disk.
    synced: Mutex<u64>,
    /// Ticks on every append: wakes the replication workers at once.
    appended: tokio::sync::watch::Sender<u64>,
    /// `durable_sync = journal`: every record is journaled too, in the
    /// binlog's order.
    journal: OnceLock<Arc<Journal>>,
}

impl Binlog {
    /// Opens (or creates) the binlog in `dir` (`<base>/data/sync`).
    pub fn open(dir: &Path, max_size: u64) -> io::Result<Binlog> {
        fs::create_dir_all(dir)?;
        let index = read_index(dir)?.unwrap_or(0);
        let path = binlog_path(dir, index);
        let file = open_for_append(&path)?;
        let mut size = file.metadata()?.len();
        // A crash can leave a torn last record: cut it so the next record
        // starts on a line of its own.
        if size > 0 {
            let mut f = File::open(&path)?;
            f.seek(SeekFrom::Start(size - 1))?;
            let mut last = [0u8; 1];
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                let content = fs::read(&path)?;
                let keep = content
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                file.set_len(keep as u64)?;
                size = keep as u64;
                tracing::warn!(path = %path.display(), cut = content.len() - keep, "binlog: removed a torn last record");
            }
        }
        write_index(dir, index)?;
        Ok(Binlog {
            dir: dir.to_owned(),
            max_size,
            cur: Mutex::new(Current {
                file: Arc::new(file),
                index,
                size,
                seq: 0,
            }),
            synced: Mutex::new(0),
            appended: tokio::sync::watch::Sender::new(0),
            journal: OnceLock::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// From now on, journal every record appended.
    pub fn attach_journal(&self, journal: Arc<Journal>) {
        let _ = self.journal.set(journal);
    }

    /// Appends one record; returns its sequence number for [`Binlog::sync`].
    pub fn append(&self, rec: &BinlogRecord) -> io::Result<u64> {
        self.append_with_image(rec, None)
    }

    /// [`Binlog::append`] that journals `image`, the whole content of the
    /// file the record creates, with the record (when a journal is attached).
    pub fn append_with_image(&self, rec: &BinlogRecord, image: Option<&[u8]>) -> io::Result<u64> {
        self.append_at(rec, image).map(|(seq, _)| seq)
    }

    /// [`Binlog::append_with_image`], also returning where the record ends
    /// (file index, offset just past it): a peer whose sync position reaches
    /// it has the change.
    pub fn append_at(
        &self,
        rec: &BinlogRecord,
        image: Option<&[u8]>,
    ) -> io::Result<(u64, (u32, u64))> {
        let line = rec.encode();
        let mut cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        if cur.size > 0 && cur.size + line.len() as u64 > self.max_size {
            // The old file is complete: make it durable before moving on.
            cur.file.sync_all()?;
            let next = cur.index + 1;
            cur.move_to(&self.dir, next)?;
        }
        (&*cur.file).write_all(line.as_bytes())?;
        if let Some(j) = self.journal.get() {
            j.append(cur.index, cur.size, line.as_bytes(), image)?;
        }
        cur.size += line.len() as u64;
        cur.seq += 1;
        self.appended.send_replace(cur.seq);
        Ok((cur.seq, (cur.index, cur.size)))
    }

    /// Makes every record up to `seq` durable. Concurrent callers share
    /// one fsync.
    pub fn sync(&self, seq: u64) -> io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= seq {
            return Ok(());
        }
        let (file, upto) = {
            let cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
            (cur.file.clone(), cur.seq)
        };
        file.sync_data()?;
        *synced = upto;
        Ok(())
    }

    /// Crash recovery: makes sure the journaled record `line` is at
    /// `offset` of binlog file `index`, rewriting the end of the file from
    /// there if it is missing or differs. Records of earlier files are
    /// there (a file is fsynced before the binlog moves to the next).
    pub fn restore(&self, index: u32, offset: u64, line: &[u8]) -> io::Result<()> {
        let mut cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        if index < cur.index {
            return Ok(());
        }
        if index > cur.index {
            // The move to the next file had not reached the disk.
            cur.move_to(&self.dir, index)?;
        }
        if cur.size >= offset + line.len() as u64 {
            let mut there = vec![0u8; line.len()];
            std::os::unix::fs::FileExt::read_exact_at(&*cur.file, &mut there, offset)?;
            if there == line {
                return Ok(());
            }
        }
        if cur.size < offset {
            tracing::warn!(
                index,
                offset,
                size = cur.size,
                "binlog: a journaled record's place is past the end; appending it there"
            );
        } else {
            cur.file.set_len(offset)?;
            cur.size = offset;
        }
        (&*cur.file).write_all(line)?;
        cur.size += line.len() as u64;
        tracing::info!(
            index,
            offset,
            record = %String::from_utf8_lossy(line).trim_end(),
            "binlog: restored a record from the journal"
        );
        Ok(())
    }

    /// A receiver that sees every append (replication workers).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Where the next record will be written: (file index, byte offset).
    pub fn position(&self) -> (u32, u64) {
        let cur = self.cur.lock().unwrap_or_else(|e| e.into_inner());
        (cur.index, cur.size)
    }
}

fn read_index(dir: &Path) -> io::Result<Option<u32>> {
    let text = match fs::read_to_string(dir.join(INDEX_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Older versions: `binlog.index` holding just the number.
            return match fs::read_to_string(dir.join("binlog.index")) {
                Ok(t) => Ok(t.trim().parse().ok()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "current_write")
        .and_then(|(_, v)| v.trim().parse().ok()))
}

fn write_index(dir: &Path, index: u32) -> io::Result<()> {
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    fs::write(&tmp, format!("current_write={index}\ncurrent_compress=0\n"))?;
    fs::rename(&tmp, dir.join(INDEX_FILE))
}

/// One item read from the binlog.
#[derive(Debug)]
pub struct ReadItem {
    /// The record, or the undecodable line with its error.
    pub record: Result<BinlogRecord, (String, fdfs_proto::DecodeError)>,
    /// File index and offset of this record.
    pub index: u32,
    pub offset: u64,
    /// Offset just past this record (where to resume).
    pub next_offset: u64,
}

/// Reads records in order from a position, following rotation. Used by the
/// replication workers; reading never blocks the writer.
pub struct BinlogReader {
    dir: PathBuf,
    index: u32,
    offset: u64,
    reader: Option<BufReader<File>>,
}

impl BinlogReader {
    pub fn new(dir: &Path, index: u32, offset: u64) -> BinlogReader {
        BinlogReader {
            dir: dir.to_owned(),
            index,
            offset,
            reader: None,
        }
    }

    /// Current resume position.
    pub fn position(&self) -> (u32, u64) {
        (self.index, self.offset)
    }

    /// The next complete record, or `None` at the end of what has been
    /// written so far (call again later for more).
    pub fn next_item(&mut self) -> io::Result<Option<ReadItem>> {
        loop {
            if self.reader.is_none() {
                match File::open(binlog_path(&self.dir, self.index)) {
                    Ok(mut f) => {
                        f.seek(SeekFrom::Start(self.offset))?;
                        self.reader = Some(BufReader::with_capacity(64 * 1024, f));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if binlog_path(&self.dir, self.index + 1).exists() {
                            self.index += 1;
                            self.offset = 0;
                            continue;
                        }
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
            let r = self.reader.as_mut().expect("opened above");
            let mut line = Vec::new();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                // End of file, or a record still being written: come back
                // to the same offset later.
                self.reader = None;
                if n == 0 && binlog_path(&self.dir, self.index + 1).exists() {
                    self.index += 1;
                    self.offset = 0;
                    continue;
                }
                return Ok(None);
            }
            let offset = self.offset;
            self.offset += n as u64;
            let text = String::from_utf8_lossy(&line).into_owned();
            let record = BinlogRecord::decode(&text).map_err(|e| (text.trim_end().to_owned(), e));
            return Ok(Some(ReadItem {
                record,
                index: self.index,
                offset,
                next_offset: self.offset,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdfs_proto::binlog::BinlogOp;

    fn rec(ts: u32, name: &str) -> BinlogRecord {
        BinlogRecord {
            timestamp: ts,
            is_source: true,
            filename: name.to_owned(),
            op: BinlogOp::Create,
        }
    }

    const N: &str = "M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip";

    #[test]
    fn append_read_rotate_and_resume() {
        let d = tempfile::tempdir().unwrap();
        let line_len = rec(1589774253, N).encode().len() as u64;
        let b = Binlog::open(d.path(), line_len * 3).unwrap();
        for i in 0..7 {
            let s = b.append(&rec(1589774253 + i, N)).unwrap();
            b.sync(s).unwrap();
        }
        assert_eq!(b.position(), (2, line_len));
        assert!(binlog_path(d.path(), 2).exists());
        let idx = fs::read_to_string(d.path().join(INDEX_FILE)).unwrap();
        assert_eq!(idx, "current_write=2\ncurrent_compress=0\n");
        let text = fs::read_to_string(binlog_path(d.path(), 0)).unwrap();
        assert_eq!(text.lines().next().unwrap(), format!("1589774253 C {N}"));

        let mut r = BinlogReader::new(d.path(), 0, 0);
        let mut seen = vec![];
        while let Some(item) = r.next_item().unwrap() {
            seen.push(item.record.unwrap().timestamp);
        }
        assert_eq!(seen, (0..7).map(|i| 1589774253 + i).collect::<Vec<_>>());
        assert_eq!(r.position(), (2, line_len));
        // More records later: the reader picks them up from where it was.
        b.append(&rec(1589774300, N)).unwrap();
        let item = r.next_item().unwrap().unwrap();
        assert_eq!(item.record.unwrap().timestamp, 1589774300);
        assert_eq!((item.index, item.offset), (2, line_len));
        assert!(r.next_item().unwrap().is_none());
        drop(b);
        // Reopen continues in the current file.
        let b = Binlog::open(d.path(), line_len * 3).unwrap();
        assert_eq!(b.position(), (2, 2 * line_len));
    }

    #[test]
    fn torn_record_is_cut_on_open_and_not_read() {
        let d = tempfile::tempdir().unwrap();
        let good = rec(7, N).encode();
        fs::write(binlog_path(d.path(), 0), format!("{good}8 C M00/00")).unwrap();
        let mut r = BinlogReader::new(d.path(), 0, 0);
        assert!(r.next_item().unwrap().is_some());
        assert!(
            r.next_item().unwrap().is_none(),
            "partial line is not a record"
        );
        let b = Binlog::open(d.path(), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(b.position(), (0, good.len() as u64));
        b.append(&rec(9, N)).unwrap();
        let text = fs::read_to_string(binlog_path(d.path(), 0)).unwrap();
        assert_eq!(text, format!("{good}{}", rec(9, N).encode()));
    }
}

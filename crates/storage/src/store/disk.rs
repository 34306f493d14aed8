//! The seam between the store and the disk for data writes and fsyncs, so
//! tests can make them fail (a full disk, an I/O error) without a real
//! full disk.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Names a complete temporary file `to`, never replacing a file already
/// there (`AlreadyExists` then, and `from` stays): one `renameat2` with
/// RENAME_NOREPLACE, or a hard link and an unlink on file systems without
/// it.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (f, t) = (
        std::ffi::CString::new(from.as_os_str().as_bytes())?,
        std::ffi::CString::new(to.as_os_str().as_bytes())?,
    );
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            std::fs::hard_link(from, to)?;
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        _ => Err(e),
    }
}

/// Gives `f` disk blocks for its first `len` bytes (`fallocate`), so that
/// writes into it later cannot fail for want of space. File systems
/// without it leave the file as it is (Ok).
pub fn preallocate(f: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a valid descriptor for the call's duration.
    if unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(e),
    }
}

/// A new file in `dir` that has no name yet (`O_TMPFILE`): it shows in no
/// listing and vanishes with its last descriptor, so a crash or a dropped
/// upload leaves nothing to clean, and naming it ([`link_unnamed`]) adds
/// one directory entry where a temporary file costs two more (its own,
/// then the rename's removal of it).
pub fn create_unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

/// Names a file of [`create_unnamed`] `to`, never replacing a file already
/// there (`AlreadyExists`). Goes through `/proc/self/fd`: linking the
/// descriptor itself (`AT_EMPTY_PATH`) needs `CAP_DAC_READ_SEARCH`.
pub fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether unnamed files can be made and named in `dir`: the file system
/// must support `O_TMPFILE` (ext4, xfs, btrfs, tmpfs do) and `/proc` must
/// be mounted. Probed once per store path when the store opens.
pub fn unnamed_files_work(dir: &Path) -> bool {
    let Ok(f) = create_unnamed(dir) else {
        return false;
    };
    let probe = dir.join(format!(
        "unnamed-probe.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let named = link_unnamed(&f, &probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    named
}

/// Starts writing `file`'s dirty pages back without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Calling it on each of a
/// batch of files before fsyncing them one by one lets the first fsync's
/// journal commit carry the block allocations of the whole batch, so the
/// later fsyncs find little left to do. Only a hint: errors surface in the
/// fsync that must follow.
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Writes and syncs file content. The real implementation is [`RealDisk`].
pub trait Disk: Send + Sync + 'static {
    fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()>;
    /// `pwrite` of all of `buf` at `pos` (the journal's files).
    fn write_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, buf, pos)
    }
    fn sync(&self, file: &File) -> io::Result<()>;
    /// `fdatasync`: the content and the size, not the timestamps.
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    /// `syncfs(2)` of the file system holding `on`: every dirty page and
    /// inode of it written and flushed (writeback errors are reported since
    /// Linux 5.8).
    fn sync_fs(&self, on: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor.
        if unsafe { libc::syncfs(on.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Plain `write_all` and `fdatasync`/`fsync`.
#[derive(Debug, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        file.write_all(buf)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }
}

/// Fault injection: behaves like [`RealDisk`] until `budget` bytes have been
/// written in total, then every write fails with `errno` (ENOSPC by default).
#[derive(Debug)]
pub struct FailingDisk {
    budget: AtomicU64,
    errno: i32,
}

impl FailingDisk {
    pub fn new(budget: u64, errno: i32) -> Self {
        FailingDisk {
            budget: AtomicU64::new(budget),
            errno,
        }
    }

    /// A disk that is full after `budget` bytes.
    pub fn full_after(budget: u64) -> Self {
        Self::new(budget, libc::ENOSPC)
    }

    /// Takes `n` bytes from the budget, or fails if fewer are left (the
    /// budget then stays as it was).
    fn spend(&self, n: usize) -> io::Result<()> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                b.checked_sub(n as u64)
            })
            .map(|_| ())
            .map_err(|_| io::Error::from_raw_os_error(self.errno))
    }
}

impl Disk for FailingDisk {
    fn write(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        self.spend(buf.len())?;
        file.write_all(buf)
    }

    fn write_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        self.spend(buf.len())?;
        std::os::unix::fs::FileExt::write_all_at(file, buf, pos)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }
}

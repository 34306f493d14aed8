//! Files packed into trunk files (`use_trunk_file`, PROTOCOL.md §5.5), by
//! us or by upstream FastDFS before a move: reading, filling, checking and
//! freeing the slots of this server's copies. Which slot a new file gets is
//! the trunk server's business (`crate::trunk`).
//!
//! Blocking file I/O: call from a blocking context.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::trunk::{self, SlotHeader, TrunkInfo, HEADER_LEN};
use fdfs_proto::{FileKind, LogicName};

use super::{Result, Store, StoreError};

/// The content of a file in its slot.
pub struct SlotFile {
    pub file: File,
    /// Where the content starts in the trunk file.
    pub start: u64,
    pub size: u64,
}

impl Store {
    /// The trunk file that holds `name`'s slot.
    fn trunk_path(&self, name: &LogicName, slot: &TrunkSlot) -> Result<PathBuf> {
        Ok(self.resolve(name)?.with_file_name(trunk::file_name(slot)))
    }

    /// Opens the slot of `name`. Not found when the trunk file is missing or
    /// the slot holds no such file (freed, reused, or never written).
    pub fn open_slot(&self, name: &LogicName, slot: &TrunkSlot) -> Result<SlotFile> {
        let path = self.trunk_path(name, slot)?;
        let file = File::open(&path).map_err(|e| StoreError::io(format!("opening {name}"), e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {name}"), e))?
            .len();
        let Some(header) = read_header(&file, slot, len, name)? else {
            return Err(StoreError::NotFound(format!(
                "{name}: not in its trunk slot"
            )));
        };
        let Some((start, size)) = trunk::content_of(&header, name, len) else {
            return Err(StoreError::NotFound(format!(
                "{name}: not in its trunk slot"
            )));
        };
        Ok(SlotFile { file, start, size })
    }

    /// True when the slot of `name` holds it.
    pub fn slot_holds(&self, name: &LogicName, slot: &TrunkSlot) -> Result<bool> {
        match self.open_slot(name, slot) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fills the slot of `name` with the `size` bytes of `src` (read from
    /// offset 0), the header last: until then the slot reads as empty.
    /// `Ok(false)`: the slot already held this file with these bytes.
    pub fn write_slot(
        &self,
        name: &LogicName,
        slot: &TrunkSlot,
        src: &File,
        size: u64,
    ) -> Result<bool> {
        self.write_slot_synced(name, slot, src, size, self.config().durable)
    }

    /// [`Store::write_slot`], fdatasynced or not (`sync = false` in
    /// durable mode: the content is in the journal, which brings it back).
    pub(crate) fn write_slot_synced(
        &self,
        name: &LogicName,
        slot: &TrunkSlot,
        src: &File,
        size: u64,
        durable: bool,
    ) -> Result<bool> {
        let header = header_for(name, slot, size)?;
        if let Ok(there) = self.open_slot(name, slot) {
            if same_bytes(&there.file, there.start, src, size)
                .map_err(|e| StoreError::io(format!("comparing {name}"), e))?
            {
                return Ok(false);
            }
        }
        let path = self.trunk_path(name, slot)?;
        let created = fill_slot(
            &path,
            &header,
            slot,
            src,
            size,
            durable,
            self.trunk_file_size(),
        )
        .map_err(|e| StoreError::io(format!("writing {name} in its trunk file"), e))?;
        if durable && created {
            self.sync_dir(&path)
                .map_err(|e| StoreError::io("fsync of the directory", e))?;
        }
        Ok(true)
    }

    /// The trunk file of `info`: `<store path>/data/HH/HH/<trunk id>`.
    pub fn trunk_file_path(&self, info: &TrunkInfo) -> Result<PathBuf> {
        let idx = usize::from(info.store_path);
        if idx >= self.path_count() {
            return Err(StoreError::Invalid(format!("{info:?}: no such store path")));
        }
        Ok(self
            .data_dir(idx)
            .join(&info.relative_path()["data/".len()..]))
    }

    /// The header at the start of slot `info` in our copy of its trunk
    /// file, when it is a file's (or a link's) whose content is there.
    pub fn used_slot_header(&self, info: &TrunkInfo) -> Result<Option<SlotHeader>> {
        let path = self.trunk_file_path(info)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {}", path.display()), e))?
            .len();
        let Some(room) = len.checked_sub(u64::from(info.slot.offset)) else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER_LEN];
        match file.read_exact_at(&mut h, u64::from(info.slot.offset)) {
            Ok(()) => Ok(Some(SlotHeader::decode(&h)).filter(|h| h.is_used(room))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// True when the slot `info` holds a file (or a link) in our copy.
    pub fn slot_in_use(&self, info: &TrunkInfo) -> Result<bool> {
        Ok(self.used_slot_header(info)?.is_some())
    }

    /// True when the slot of `name` holds another file, created after
    /// `name` was: `name` was deleted and its slot given out again before
    /// its own create reached us, so that create is stale.
    pub fn slot_holds_newer(&self, name: &LogicName) -> Result<bool> {
        let Some(info) = TrunkInfo::of_name(name) else {
            return Ok(false);
        };
        // `used_slot_header` checked the room already.
        Ok(self
            .used_slot_header(&info)?
            .is_some_and(|h| h.holds_newer_than(name, u64::MAX)))
    }

    /// Crash recovery: puts the journaled `content` of `name` back in its
    /// slot (content, then header), synced.
    pub(crate) fn restore_slot(&self, name: &LogicName, content: &[u8]) -> Result<()> {
        self.put_slot(name, content, true)
    }

    /// Writes `content` into the slot of `name`: content, then header
    /// (each fdatasynced first with `sync`, and the directory of a trunk
    /// file it made).
    pub(crate) fn put_slot(&self, name: &LogicName, content: &[u8], sync: bool) -> Result<()> {
        let FileKind::Trunk(slot) = name.kind else {
            return Err(StoreError::Invalid(format!("{name} is not a trunk name")));
        };
        let header = header_for(name, &slot, content.len() as u64)?;
        let path = self.trunk_path(name, &slot)?;
        let created = fill_slot_with(
            &path,
            &header,
            &slot,
            sync,
            self.trunk_file_size(),
            |trunk, at| trunk.write_all_at(content, at),
        )
        .map_err(|e| StoreError::io(format!("writing {name} in its trunk file"), e))?;
        if sync && created {
            self.sync_dir(&path)
                .map_err(|e| StoreError::io("fsync of the directory", e))?;
        }
        Ok(())
    }

    /// Frees the slot of `name` (its header zeroed). `Ok(false)`: the slot
    /// did not hold it.
    pub fn free_slot(&self, name: &LogicName, slot: &TrunkSlot) -> Result<bool> {
        let path = self.trunk_path(name, slot)?;
        let trunk = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(StoreError::io(
                    format!("opening the trunk file of {name}"),
                    e,
                ))
            }
        };
        let len = trunk
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {name}"), e))?
            .len();
        match read_header(&trunk, slot, len, name)? {
            Some(h) if trunk::content_of(&h, name, len).is_some() => {}
            _ => return Ok(false),
        }
        trunk
            .write_all_at(&[0u8; HEADER_LEN], u64::from(slot.offset))
            .map_err(|e| StoreError::io(format!("freeing {name} in its trunk file"), e))?;
        // With a journal, the delete's record is journaled before it is
        // acknowledged and its redo zeroes the header again.
        if self.config().durable && self.journal.is_none() {
            trunk
                .sync_data()
                .map_err(|e| StoreError::io(format!("fsync of the trunk file of {name}"), e))?;
        }
        Ok(true)
    }
}

/// The header `name` gets in `slot`, once its `size` bytes are known to
/// be the name's and to fit the slot.
fn header_for(name: &LogicName, slot: &TrunkSlot, size: u64) -> Result<SlotHeader> {
    let header = SlotHeader::for_name(name)
        .ok_or_else(|| StoreError::Invalid(format!("{name} is not a trunk name")))?;
    if Some(size) != name.info.file_size() || !trunk::fits(slot, size) {
        return Err(StoreError::Invalid(format!(
            "{name}: {size} bytes do not fit its trunk slot of {} bytes",
            slot.alloc_size
        )));
    }
    Ok(header)
}

/// Writes `size` bytes of `src` (from offset 0) into `slot` of the trunk
/// file at `path` (made if missing), the content first and `header` last:
/// until then the slot reads as empty. `sync`: each is fdatasynced before
/// the next step. A trunk file it makes gets disk blocks for `trunk_len`
/// bytes (0: none), as the trunk server's copy has: free trunk space is
/// then really free on every server. Returns whether the trunk file was
/// made.
pub fn fill_slot(
    path: &Path,
    header: &SlotHeader,
    slot: &TrunkSlot,
    src: &File,
    size: u64,
    sync: bool,
    trunk_len: u64,
) -> std::io::Result<bool> {
    fill_slot_with(path, header, slot, sync, trunk_len, |trunk, at| {
        copy_range(src, size, trunk, at)
    })
}

/// [`fill_slot`] with the content written by `content(trunk file, where
/// the content starts)`.
fn fill_slot_with(
    path: &Path,
    header: &SlotHeader,
    slot: &TrunkSlot,
    sync: bool,
    trunk_len: u64,
    content: impl FnOnce(&File, u64) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    let created = !path.exists();
    let trunk = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if created && trunk_len > 0 {
        // Best effort: without the blocks the slot is still written.
        if let Err(e) = super::disk::preallocate(&trunk, trunk_len) {
            tracing::warn!(trunk_file = %path.display(), "preallocating {trunk_len} bytes: {e}");
        }
    }
    content(&trunk, trunk::content_offset(slot))?;
    if sync {
        trunk.sync_data()?;
    }
    trunk.write_all_at(&header.encode(), u64::from(slot.offset))?;
    if sync {
        trunk.sync_data()?;
    }
    Ok(created)
}

/// The header of `slot`, `None` when the trunk file ends before it.
fn read_header(
    file: &File,
    slot: &TrunkSlot,
    len: u64,
    name: &LogicName,
) -> Result<Option<SlotHeader>> {
    if u64::from(slot.offset) + HEADER_LEN as u64 > len {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN];
    file.read_exact_at(&mut h, u64::from(slot.offset))
        .map_err(|e| StoreError::io(format!("reading the trunk header of {name}"), e))?;
    Ok(Some(SlotHeader::decode(&h)))
}

/// Copies `size` bytes of `src` (from 0) to `dst` at `at`.
fn copy_range(src: &File, size: u64, dst: &File, at: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; size.clamp(1, 256 * 1024) as usize];
    let mut done = 0;
    while done < size {
        let n = buf.len().min((size - done) as usize);
        src.read_exact_at(&mut buf[..n], done)?;
        dst.write_all_at(&buf[..n], at + done)?;
        done += n as u64;
    }
    Ok(())
}

/// True when `size` bytes of `a` from `a_at` equal those of `b` from 0.
fn same_bytes(a: &File, a_at: u64, b: &File, size: u64) -> std::io::Result<bool> {
    let step = size.clamp(1, 64 * 1024) as usize;
    let (mut x, mut y) = (vec![0u8; step], vec![0u8; step]);
    let mut done = 0;
    while done < size {
        let n = step.min((size - done) as usize);
        a.read_exact_at(&mut x[..n], a_at + done)?;
        b.read_exact_at(&mut y[..n], done)?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
        done += n as u64;
    }
    Ok(true)
}

/// Test support: trunk files as upstream FastDFS leaves them.
#[cfg(test)]
pub(crate) mod planted {
    use super::*;
    use fdfs_proto::binlog::{BinlogOp, BinlogRecord};
    use fdfs_proto::file_id::{ext_part, NameInfo};

    /// Writes `content` into a slot of trunk `trunk_id` in `00/00` of store
    /// path 0 (header then content, directly, not through the code under
    /// test) and records its create in the binlog, as an upload of upstream
    /// would have; returns the file's name.
    pub(crate) fn plant(
        store: &Store,
        trunk_id: u32,
        offset: u32,
        alloc_size: u32,
        content: &[u8],
    ) -> LogicName {
        let info = NameInfo {
            source: store.source(),
            timestamp: 1_589_774_253,
            // bit 63: the random form; bit 59: a trunk file.
            size_field: (1 << 63) | (1 << 59) | (0x0f2f87 << 32) | content.len() as u64,
            crc32: crc32fast::hash(content),
        };
        let slot = TrunkSlot {
            trunk_id,
            offset,
            alloc_size,
        };
        let name = LogicName::build(0, 0, 0, info, Some(slot), &ext_part("jpg", offset).unwrap());
        let path = store.data_dir(0).join(format!("00/00/{trunk_id:06}"));
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        // Upstream makes whole trunk files up front.
        let end = u64::from(offset) + u64::from(alloc_size);
        if f.metadata().unwrap().len() < end {
            f.set_len(end).unwrap();
        }
        let mut h = vec![b'F'];
        for v in [alloc_size, content.len() as u32, info.crc32, info.timestamp] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h.extend_from_slice(&name.name.as_bytes()[name.name.len() - 7..]);
        f.write_all_at(&h, u64::from(offset)).unwrap();
        f.write_all_at(content, u64::from(offset) + 24).unwrap();
        store
            .binlog()
            .append(&BinlogRecord {
                timestamp: info.timestamp,
                is_source: true,
                filename: name.to_string(),
                op: BinlogOp::Create,
            })
            .unwrap();
        name
    }
}

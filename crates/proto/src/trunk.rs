//! The slot header of a trunk file (PROTOCOL.md §5.5): upstream FastDFS with
//! `use_trunk_file = true` packs small files into big trunk files
//! `<store_path>/data/HH/HH/<trunk_id:06>`, each file in a slot that starts
//! with this 24-byte header.
//!
//! ```text
//! file_type u8 ('F' file, 'L' link, 0 free) | alloc_size u32be | file_size u32be
//! | crc32 u32be | mtime u32be | formatted ext char[7]
//! ```

use crate::codec::{put_u32, put_u8, Reader};
use crate::common::{put_group, read_group, GROUP_LEN};
use crate::error::DecodeError;
use crate::file_id::{FileKind, GroupName, LogicName, TrunkSlot};

/// Bytes of a slot header; the content follows it.
pub const HEADER_LEN: usize = 24;

/// `file_type` of a slot holding a file.
pub const TYPE_FILE: u8 = b'F';
/// `file_type` of a slot holding a link (its content names the target).
pub const TYPE_LINK: u8 = b'L';
/// `file_type` of a free slot.
pub const TYPE_FREE: u8 = 0;

/// A decoded slot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHeader {
    pub file_type: u8,
    pub alloc_size: u32,
    pub file_size: u32,
    pub crc32: u32,
    pub mtime: u32,
    /// The name's 7-character extension part (`000.jpg`).
    pub ext: [u8; 7],
}

impl SlotHeader {
    pub fn decode(b: &[u8; HEADER_LEN]) -> SlotHeader {
        let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut ext = [0u8; 7];
        ext.copy_from_slice(&b[17..24]);
        SlotHeader {
            file_type: b[0],
            alloc_size: be(1),
            file_size: be(5),
            crc32: be(9),
            mtime: be(13),
            ext,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.file_type;
        b[1..5].copy_from_slice(&self.alloc_size.to_be_bytes());
        b[5..9].copy_from_slice(&self.file_size.to_be_bytes());
        b[9..13].copy_from_slice(&self.crc32.to_be_bytes());
        b[13..17].copy_from_slice(&self.mtime.to_be_bytes());
        b[17..24].copy_from_slice(&self.ext);
        b
    }

    /// The header of the file `name` in its slot; `None` when `name` is not
    /// a trunk name.
    pub fn for_name(name: &LogicName) -> Option<SlotHeader> {
        let FileKind::Trunk(slot) = name.kind else {
            return None;
        };
        let mut ext = [0u8; 7];
        let tail = name.name.as_bytes();
        ext.copy_from_slice(&tail[tail.len() - 7..]);
        Some(SlotHeader {
            file_type: TYPE_FILE,
            alloc_size: slot.alloc_size,
            file_size: name.info.file_size().unwrap_or(0) as u32,
            crc32: name.info.crc32,
            mtime: name.info.timestamp,
            ext,
        })
    }

    /// True when this slot holds the file `name`: a file slot with the
    /// name's size, CRC32 and time. The extension is not compared: the
    /// other fields already tell a reused slot apart, and a reader must not
    /// refuse a file over how a writer padded its extension.
    pub fn holds(&self, name: &LogicName) -> bool {
        SlotHeader::for_name(name).is_some_and(|want| {
            self.file_type == TYPE_FILE
                && self.file_size == want.file_size
                && self.crc32 == want.crc32
                && self.mtime == want.mtime
        })
    }
}

impl SlotHeader {
    /// True when these bytes, read at the start of a slot with `room`
    /// bytes left in its trunk file, are the header of a file or a link
    /// whose content is there (a copy made by replication may end with the
    /// last content, before the slot does). Bytes of an old file's
    /// content, where a free extent was split, are all but never such a
    /// header.
    pub fn is_used(&self, room: u64) -> bool {
        let end = u64::from(self.file_size) + HEADER_LEN as u64;
        matches!(self.file_type, TYPE_FILE | TYPE_LINK)
            && end <= room
            && end <= u64::from(self.alloc_size)
    }
}

impl SlotHeader {
    /// True when this used slot (see [`SlotHeader::is_used`]) holds another
    /// file than `name`, made after it: `name` was deleted and its slot
    /// given out again, so a copy of `name` must not go back in.
    pub fn holds_newer_than(&self, name: &LogicName, room: u64) -> bool {
        self.is_used(room) && !self.holds(name) && self.mtime > name.info.timestamp
    }
}

/// The file name of trunk `trunk_id` inside its `HH/HH` directory.
pub fn file_name(slot: &TrunkSlot) -> String {
    format!("{:06}", slot.trunk_id)
}

/// Where the content of a slot starts in its trunk file.
pub fn content_offset(slot: &TrunkSlot) -> u64 {
    u64::from(slot.offset) + HEADER_LEN as u64
}

/// Where `name`'s content is in a trunk file of `file_len` bytes whose slot
/// (the name's) starts with `header`: (start, size). `None` when the slot
/// does not hold the file, or the trunk file ends before the content does.
pub fn content_of(header: &SlotHeader, name: &LogicName, file_len: u64) -> Option<(u64, u64)> {
    let FileKind::Trunk(slot) = name.kind else {
        return None;
    };
    let size = u64::from(header.file_size);
    let start = content_offset(&slot);
    (header.holds(name) && fits(&slot, size) && start + size <= file_len).then_some((start, size))
}

/// True when a file of `file_size` bytes fits the slot (header included).
pub fn fits(slot: &TrunkSlot, file_size: u64) -> bool {
    file_size + HEADER_LEN as u64 <= u64::from(slot.alloc_size)
}

/// Where a trunk server put a slot (TRUNK_ALLOC_SPACE's reply, 15 bytes):
/// the trunk file's store path and `HH/HH` directory, then the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkInfo {
    pub store_path: u8,
    pub sub_high: u8,
    pub sub_low: u8,
    pub slot: TrunkSlot,
}

impl TrunkInfo {
    pub const LEN: usize = 15;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.store_path);
        put_u8(out, self.sub_high);
        put_u8(out, self.sub_low);
        put_u32(out, self.slot.trunk_id);
        put_u32(out, self.slot.offset);
        put_u32(out, self.slot.alloc_size);
    }

    fn read(r: &mut Reader<'_>) -> Result<TrunkInfo, DecodeError> {
        Ok(TrunkInfo {
            store_path: r.u8()?,
            sub_high: r.u8()?,
            sub_low: r.u8()?,
            slot: TrunkSlot {
                trunk_id: r.u32()?,
                offset: r.u32()?,
                alloc_size: r.u32()?,
            },
        })
    }

    pub fn decode(b: &[u8]) -> Result<TrunkInfo, DecodeError> {
        let mut r = Reader::new("trunk info", b);
        let info = TrunkInfo::read(&mut r)?;
        r.finish()?;
        Ok(info)
    }

    /// The slot of the trunk name `name`, where it lives.
    pub fn of_name(name: &LogicName) -> Option<TrunkInfo> {
        match name.kind {
            FileKind::Trunk(slot) => Some(TrunkInfo {
                store_path: name.store_path,
                sub_high: name.sub_high,
                sub_low: name.sub_low,
                slot,
            }),
            _ => None,
        }
    }

    /// The trunk file, relative to its store path: `data/HH/HH/<id:06>`.
    pub fn relative_path(&self) -> String {
        format!(
            "data/{:02X}/{:02X}/{}",
            self.sub_high,
            self.sub_low,
            file_name(&self.slot)
        )
    }

    /// First byte after the slot.
    pub fn end(&self) -> u64 {
        u64::from(self.slot.offset) + u64::from(self.slot.alloc_size)
    }
}

/// TRUNK_ALLOC_SPACE (27): a slot of `size` bytes (header included, already
/// aligned) in store path `store_path`. 21 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocReq {
    pub group: GroupName,
    pub size: u32,
    pub store_path: u8,
}

impl AllocReq {
    pub const LEN: usize = GROUP_LEN + 5;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        put_u32(out, self.size);
        put_u8(out, self.store_path);
    }

    pub fn decode(b: &[u8]) -> Result<AllocReq, DecodeError> {
        let mut r = Reader::new("TRUNK_ALLOC_SPACE", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let size = r.u32()?;
        let store_path = r.u8()?;
        r.finish()?;
        Ok(AllocReq {
            group,
            size,
            store_path,
        })
    }
}

/// TRUNK_ALLOC_CONFIRM (28) and TRUNK_FREE_SPACE (29): the group and a
/// slot. 31 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReq {
    pub group: GroupName,
    pub info: TrunkInfo,
}

impl SlotReq {
    pub const LEN: usize = GROUP_LEN + TrunkInfo::LEN;

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_group(out, &self.group, GROUP_LEN);
        self.info.encode(out);
    }

    pub fn decode(b: &[u8]) -> Result<SlotReq, DecodeError> {
        let mut r = Reader::new("trunk slot request", b);
        let group = read_group(&mut r, GROUP_LEN, false)?;
        let info = TrunkInfo::read(&mut r)?;
        r.finish()?;
        Ok(SlotReq { group, info })
    }
}

/// What a trunk binlog line records (§6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceOp {
    /// `A`: the slot was given out.
    Allocated,
    /// `D`: the slot is free again.
    Freed,
}

/// A line of `<base_path>/data/trunk/binlog`:
/// `<ts> <A|D> <store_path_index> <sub_high> <sub_low> <trunk_id> <offset> <size>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceRecord {
    pub timestamp: u32,
    pub op: SpaceOp,
    pub info: TrunkInfo,
}

impl SpaceRecord {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let i = &self.info;
        format!(
            "{} {} {} {} {} {} {} {}\n",
            self.timestamp,
            match self.op {
                SpaceOp::Allocated => 'A',
                SpaceOp::Freed => 'D',
            },
            i.store_path,
            i.sub_high,
            i.sub_low,
            i.slot.trunk_id,
            i.slot.offset,
            i.slot.alloc_size
        )
    }

    /// Parses a line (without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<SpaceRecord> {
        let mut f = line.split_ascii_whitespace();
        let timestamp = f.next()?.parse().ok()?;
        let op = match f.next()? {
            "A" => SpaceOp::Allocated,
            "D" => SpaceOp::Freed,
            _ => return None,
        };
        let mut n = || f.next().and_then(|v| v.parse::<u32>().ok());
        let store_path = u8::try_from(n()?).ok()?;
        let sub_high = u8::try_from(n()?).ok()?;
        let sub_low = u8::try_from(n()?).ok()?;
        let slot = TrunkSlot {
            trunk_id: n()?,
            offset: n()?,
            alloc_size: n()?,
        };
        if f.next().is_some() || slot.alloc_size == 0 {
            return None;
        }
        Some(SpaceRecord {
            timestamp,
            op,
            info: TrunkInfo {
                store_path,
                sub_high,
                sub_low,
                slot,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL.md §5.3's trunk example: id 1, offset 2048, slot 256.
    const EXAMPLE: &str = "M00/00/00/wKgLU17CB62IDy-HAAAAqoZV9hQAAAAAQAACAAAAAEA000.jpg";

    #[test]
    fn the_example_name_gives_its_header() {
        let name = LogicName::parse(EXAMPLE).unwrap();
        let FileKind::Trunk(slot) = name.kind else {
            panic!("not a trunk name: {:?}", name.kind);
        };
        assert_eq!(
            (slot.trunk_id, slot.offset, slot.alloc_size),
            (1, 2048, 256)
        );
        assert_eq!(file_name(&slot), "000001");
        assert_eq!(content_offset(&slot), 2048 + 24);
        let h = SlotHeader::for_name(&name).unwrap();
        assert_eq!(h.file_size, 170);
        assert_eq!(h.crc32, 0x8655_F614);
        assert_eq!(h.mtime, 1_589_774_253);
        assert_eq!(&h.ext, b"000.jpg");
        let bytes = h.encode();
        assert_eq!(bytes[0], b'F');
        assert_eq!(&bytes[1..5], &256u32.to_be_bytes());
        assert_eq!(&bytes[5..9], &170u32.to_be_bytes());
        assert_eq!(SlotHeader::decode(&bytes), h);
        assert!(h.holds(&name));
        assert!(fits(&slot, 170));
        assert!(!fits(&slot, 233));
        assert_eq!(content_of(&h, &name, 4096), Some((2072, 170)));
        assert_eq!(content_of(&h, &name, 2072 + 169), None, "file ends early");
        let too_big = SlotHeader {
            file_size: 233,
            ..h
        };
        assert_eq!(content_of(&too_big, &name, 4096), None);
    }

    #[test]
    fn a_slot_of_another_file_or_a_free_one_does_not_hold_the_name() {
        let name = LogicName::parse(EXAMPLE).unwrap();
        let h = SlotHeader::for_name(&name).unwrap();
        for other in [
            SlotHeader {
                file_type: TYPE_FREE,
                ..h
            },
            SlotHeader {
                file_type: TYPE_LINK,
                ..h
            },
            SlotHeader { crc32: 1, ..h },
            SlotHeader { mtime: 1, ..h },
            SlotHeader {
                file_size: 171,
                ..h
            },
        ] {
            assert!(!other.holds(&name), "{other:?}");
        }
        // The padding of the extension is not the writer's promise.
        assert!(SlotHeader {
            ext: *b".jpg\0\0\0",
            ..h
        }
        .holds(&name));
        let normal = LogicName::parse("M00/00/00/wKgLU17CB62ADy-HAAAAqoZV9hQ128.zip").unwrap();
        assert!(SlotHeader::for_name(&normal).is_none());
        assert!(!h.holds(&normal));
    }

    #[test]
    fn trunk_commands_round_trip_to_their_sizes() {
        let group = GroupName::new("group1").unwrap();
        let info = TrunkInfo {
            store_path: 1,
            sub_high: 0x0A,
            sub_low: 0xFF,
            slot: TrunkSlot {
                trunk_id: 7,
                offset: 4096,
                alloc_size: 512,
            },
        };
        let mut b = Vec::new();
        info.encode(&mut b);
        assert_eq!(
            b,
            [1, 0x0A, 0xFF, 0, 0, 0, 7, 0, 0, 0x10, 0, 0, 0, 2, 0],
            "store path, HH, HH, id, offset, size"
        );
        assert_eq!(TrunkInfo::decode(&b).unwrap(), info);
        assert!(TrunkInfo::decode(&b[..14]).is_err());
        assert_eq!(info.relative_path(), "data/0A/FF/000007");
        assert_eq!(info.end(), 4608);

        let alloc = AllocReq {
            group: group.clone(),
            size: 300,
            store_path: 0,
        };
        let mut b = Vec::new();
        alloc.encode(&mut b);
        assert_eq!(b.len(), AllocReq::LEN);
        assert_eq!(&b[..7], b"group1\0");
        assert_eq!(&b[16..], &[0, 0, 1, 44, 0]);
        assert_eq!(AllocReq::decode(&b).unwrap(), alloc);
        assert!(AllocReq::decode(&b[..20]).is_err());

        let slot = SlotReq { group, info };
        let mut b = Vec::new();
        slot.encode(&mut b);
        assert_eq!(b.len(), 31);
        assert_eq!(SlotReq::decode(&b).unwrap(), slot);
        b.push(0);
        assert!(SlotReq::decode(&b).is_err());

        let name = LogicName::parse(EXAMPLE).unwrap();
        let of = TrunkInfo::of_name(&name).unwrap();
        assert_eq!((of.store_path, of.sub_high, of.sub_low), (0, 0, 0));
        assert_eq!(of.slot.offset, 2048);
    }

    #[test]
    fn space_records_are_the_documented_lines() {
        let rec = SpaceRecord {
            timestamp: 1_700_000_000,
            op: SpaceOp::Allocated,
            info: TrunkInfo {
                store_path: 0,
                sub_high: 3,
                sub_low: 4,
                slot: TrunkSlot {
                    trunk_id: 12,
                    offset: 256,
                    alloc_size: 1024,
                },
            },
        };
        assert_eq!(rec.line(), "1700000000 A 0 3 4 12 256 1024\n");
        assert_eq!(SpaceRecord::parse(rec.line().trim_end()), Some(rec));
        let freed = SpaceRecord::parse("1700000001 D 0 3 4 12 256 1024").unwrap();
        assert_eq!(freed.op, SpaceOp::Freed);
        for bad in [
            "",
            "1700000001 X 0 3 4 12 256 1024",
            "1700000001 D 0 3 4 12 256",
            "1700000001 D 0 3 4 12 256 1024 9",
            "1700000001 D 256 3 4 12 256 1024",
            "1700000001 D 0 3 4 12 256 0",
        ] {
            assert_eq!(SpaceRecord::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_used_slot_header_is_consistent() {
        let name = LogicName::parse(EXAMPLE).unwrap();
        let h = SlotHeader::for_name(&name).unwrap();
        assert!(h.is_used(256));
        assert!(SlotHeader {
            file_type: TYPE_LINK,
            ..h
        }
        .is_used(256));
        assert!(h.is_used(170 + 24), "a copy may end with the content");
        assert!(
            !h.is_used(170 + 23),
            "the content would pass the end of the file"
        );
        assert!(!SlotHeader {
            file_type: TYPE_FREE,
            ..h
        }
        .is_used(256));
        assert!(!SlotHeader {
            file_type: b'x',
            ..h
        }
        .is_used(256));
        assert!(!SlotHeader {
            file_size: 233,
            ..h
        }
        .is_used(256));
    }

    #[test]
    fn a_newer_file_in_the_slot_is_told_apart() {
        let name = LogicName::parse(EXAMPLE).unwrap();
        let h = SlotHeader::for_name(&name).unwrap();
        assert!(!h.holds_newer_than(&name, 256), "its own file");
        let newer = SlotHeader {
            mtime: h.mtime + 1,
            crc32: 7,
            ..h
        };
        assert!(newer.holds_newer_than(&name, 256));
        let older = SlotHeader {
            mtime: h.mtime - 1,
            crc32: 7,
            ..h
        };
        assert!(!older.holds_newer_than(&name, 256));
        assert!(!SlotHeader {
            file_type: TYPE_FREE,
            ..newer
        }
        .holds_newer_than(&name, 256));
    }

    #[test]
    fn trunk_size_field_reads_back_as_a_trunk_file() {
        let f = crate::file_id::NameInfo::size_field_for_trunk(170, 0x0f2f87);
        assert_eq!(f, 0x880f2f87000000aa, "PROTOCOL.md §5.3's example field");
    }
}

//! The slot header of a trunk file (PROTOCOL.md §5.5): upstream FastDFS with
//! `use_trunk_file = true` packs small files into big trunk files
//! `<store_path>/data/HH/HH/<trunk_id:06>`, each file in a slot that starts
//! with this 24-byte header.
//!
//! ```text
//! file_type u8 ('F' file, 'L' link, 0 free) | alloc_size u32be | file_size u32be
//! | crc32 u32be | mtime u32be | formatted ext char[7]
//! ```

use crate::file_id::{FileKind, LogicName, TrunkSlot};

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
}

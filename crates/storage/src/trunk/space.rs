//! The trunk server's map of its group's trunk files: which byte ranges
//! hold slots and which are free. Pure bookkeeping; the caller persists
//! every change in the trunk binlog and creates the files.

use std::collections::{BTreeMap, BTreeSet};

use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::trunk::{SpaceOp, TrunkInfo};

/// A trunk file: where it is and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkFile {
    pub sub_high: u8,
    pub sub_low: u8,
    pub len: u32,
}

impl TrunkFile {
    /// The range `[offset, offset + size)` of this file, trunk id `id` in
    /// store path `store_path`.
    fn slot(&self, store_path: u8, id: u32, offset: u32, size: u32) -> TrunkInfo {
        TrunkInfo {
            store_path,
            sub_high: self.sub_high,
            sub_low: self.sub_low,
            slot: TrunkSlot {
                trunk_id: id,
                offset,
                alloc_size: size,
            },
        }
    }
}

/// Free extents of every trunk file, found best-fit.
#[derive(Debug, Default)]
pub struct SpaceMap {
    /// (store path, trunk id) → the file.
    files: BTreeMap<(u8, u32), TrunkFile>,
    /// (store path, size, trunk id, offset): smallest fitting extent first.
    by_size: BTreeSet<(u8, u32, u32, u32)>,
    /// (store path, trunk id, offset) → size: neighbours, for merging.
    by_place: BTreeMap<(u8, u32, u32), u32>,
    /// The sum of the free extents.
    free: u64,
}

impl SpaceMap {
    pub fn new() -> SpaceMap {
        SpaceMap::default()
    }

    /// Knows a trunk file; all of it is free. A file already known is kept.
    pub fn add_file(&mut self, store_path: u8, trunk_id: u32, file: TrunkFile) {
        if self.files.contains_key(&(store_path, trunk_id)) {
            return;
        }
        self.files.insert((store_path, trunk_id), file);
        if file.len > 0 {
            self.insert_free(store_path, trunk_id, 0, file.len);
        }
    }

    /// Knows the range of `info` as free; its file, if unknown, is added
    /// `len` long with nothing else free.
    pub fn add_free(&mut self, info: &TrunkInfo, len: u32) {
        self.files
            .entry((info.store_path, info.slot.trunk_id))
            .or_insert(TrunkFile {
                sub_high: info.sub_high,
                sub_low: info.sub_low,
                len,
            });
        self.give(info);
    }

    pub fn file(&self, store_path: u8, trunk_id: u32) -> Option<TrunkFile> {
        self.files.get(&(store_path, trunk_id)).copied()
    }

    /// The highest trunk id known.
    pub fn max_id(&self) -> u32 {
        self.files.keys().map(|&(_, id)| id).max().unwrap_or(0)
    }

    /// Free bytes over all files.
    pub fn free_bytes(&self) -> u64 {
        self.free
    }

    /// True when a free extent of `store_path` holds `size` bytes.
    pub fn has_fit(&self, store_path: u8, size: u32) -> bool {
        self.by_size
            .range((store_path, size, 0, 0)..)
            .next()
            .is_some_and(|k| k.0 == store_path)
    }

    /// Gives out the smallest free extent of `store_path` that holds `size`
    /// bytes: its start, `size` long, or all of it when what would be left
    /// is under `min_slot` (a remainder no file could use).
    pub fn alloc(&mut self, store_path: u8, size: u32, min_slot: u32) -> Option<TrunkInfo> {
        self.alloc_upto(store_path, size, size, min_slot)
    }

    /// Like [`SpaceMap::alloc`], the smallest free extent that holds `size`
    /// bytes, but takes up to `most` of it.
    pub fn alloc_upto(
        &mut self,
        store_path: u8,
        size: u32,
        most: u32,
        min_slot: u32,
    ) -> Option<TrunkInfo> {
        let &(p, ext_size, id, offset) = self
            .by_size
            .range((store_path, size, 0, 0)..)
            .next()
            .filter(|k| k.0 == store_path)?;
        self.remove_free(p, ext_size, id, offset);
        let want = most.max(size).min(ext_size);
        let take = if ext_size - want < min_slot.max(1) {
            ext_size
        } else {
            self.insert_free(p, id, offset + want, ext_size - want);
            want
        };
        Some(self.files[&(p, id)].slot(p, id, offset, take))
    }

    /// Marks the range of `info` as holding a slot, whatever was free in it
    /// (a slot learned from a record, a binlog or the disk). The file is
    /// added first if unknown, `default_len` long (or up to the slot's end).
    pub fn take(&mut self, info: &TrunkInfo, default_len: u32) {
        let (p, id) = (info.store_path, info.slot.trunk_id);
        let Some(end) = slot_end(&info.slot) else {
            return;
        };
        if !self.files.contains_key(&(p, id)) {
            self.add_file(
                p,
                id,
                TrunkFile {
                    sub_high: info.sub_high,
                    sub_low: info.sub_low,
                    len: default_len.max(end),
                },
            );
        }
        let start = info.slot.offset;
        for (o, s) in self.overlapping(p, id, start, end, false) {
            self.remove_free(p, s, id, o);
            if o < start {
                self.insert_free(p, id, o, start - o);
            }
            if o + s > end {
                self.insert_free(p, id, end, o + s - end);
            }
        }
    }

    /// Frees the range of `info` and merges it with free neighbours. Only
    /// ranges inside a known file are freed.
    pub fn give(&mut self, info: &TrunkInfo) {
        let (p, id) = (info.store_path, info.slot.trunk_id);
        let Some(file) = self.files.get(&(p, id)).copied() else {
            return;
        };
        let Some(end) = slot_end(&info.slot) else {
            return;
        };
        let (mut start, mut end) = (info.slot.offset, end.min(file.len));
        if start >= end {
            return;
        }
        // Free extents that touch the range merge into one.
        for (o, s) in self.overlapping(p, id, start, end, true) {
            self.remove_free(p, s, id, o);
            start = start.min(o);
            end = end.max(o + s);
        }
        self.insert_free(p, id, start, end - start);
    }

    /// True when some of the range of `info` is free.
    pub fn is_free_in(&self, info: &TrunkInfo) -> bool {
        slot_end(&info.slot).is_some_and(|end| {
            !self
                .overlapping(
                    info.store_path,
                    info.slot.trunk_id,
                    info.slot.offset,
                    end,
                    false,
                )
                .is_empty()
        })
    }

    /// Every free extent, which are then taken (the map keeps its files).
    pub fn drain_free(&mut self) -> Vec<TrunkInfo> {
        let out = self
            .by_place
            .iter()
            .map(|(&(p, id, offset), &size)| self.files[&(p, id)].slot(p, id, offset, size))
            .collect();
        self.by_place.clear();
        self.by_size.clear();
        self.free = 0;
        out
    }

    /// How many records [`SpaceMap::snapshot`] makes.
    pub fn snapshot_len(&self) -> usize {
        self.files.len() + self.by_place.len()
    }

    /// The map as trunk binlog records (§6.6) that rebuild it when replayed
    /// from nothing: each file all taken, then its free extents freed.
    pub fn snapshot(&self) -> Vec<(SpaceOp, TrunkInfo)> {
        let mut out = Vec::with_capacity(self.snapshot_len());
        for (&(p, id), f) in &self.files {
            out.push((SpaceOp::Allocated, f.slot(p, id, 0, f.len)));
            for (&(_, _, o), &size) in self.by_place.range((p, id, 0)..=(p, id, u32::MAX)) {
                out.push((SpaceOp::Freed, f.slot(p, id, o, size)));
            }
        }
        out
    }

    /// Free extents of a file that overlap `[start, end)` (or touch it,
    /// with `touching`).
    fn overlapping(&self, p: u8, id: u32, start: u32, end: u32, touching: bool) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        // The extent starting before `start` may reach into the range.
        if let Some((&(_, _, o), &s)) = self.by_place.range((p, id, 0)..(p, id, start)).next_back()
        {
            if o + s > start || (touching && o + s == start) {
                out.push((o, s));
            }
        }
        let upto = if touching {
            self.by_place.range((p, id, start)..=(p, id, end))
        } else {
            self.by_place.range((p, id, start)..(p, id, end))
        };
        out.extend(upto.map(|(&(_, _, o), &s)| (o, s)));
        out
    }

    fn insert_free(&mut self, p: u8, id: u32, offset: u32, size: u32) {
        self.by_size.insert((p, size, id, offset));
        if let Some(old) = self.by_place.insert((p, id, offset), size) {
            self.free -= u64::from(old);
        }
        self.free += u64::from(size);
    }

    fn remove_free(&mut self, p: u8, size: u32, id: u32, offset: u32) {
        self.by_size.remove(&(p, size, id, offset));
        if let Some(old) = self.by_place.remove(&(p, id, offset)) {
            self.free -= u64::from(old);
        }
    }
}

fn slot_end(slot: &TrunkSlot) -> Option<u32> {
    slot.offset
        .checked_add(slot.alloc_size)
        .filter(|_| slot.alloc_size > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: TrunkFile = TrunkFile {
        sub_high: 1,
        sub_low: 2,
        len: 4096,
    };

    fn info(id: u32, offset: u32, size: u32) -> TrunkInfo {
        TrunkInfo {
            store_path: 0,
            sub_high: 1,
            sub_low: 2,
            slot: TrunkSlot {
                trunk_id: id,
                offset,
                alloc_size: size,
            },
        }
    }

    #[test]
    fn allocates_in_order_then_runs_out() {
        let mut m = SpaceMap::new();
        assert_eq!(m.alloc(0, 256, 256), None, "no trunk file yet");
        m.add_file(0, 1, FILE);
        assert_eq!(m.alloc(0, 1024, 256), Some(info(1, 0, 1024)));
        assert_eq!(m.alloc(0, 1024, 256), Some(info(1, 1024, 1024)));
        assert_eq!(m.free_bytes(), 2048);
        assert_eq!(m.alloc(1, 256, 256), None, "another store path");
        // 2048 left: a 1900-byte request takes all of it (148 would be
        // under the smallest slot).
        assert_eq!(m.alloc(0, 1900, 256), Some(info(1, 2048, 2048)));
        assert_eq!(m.alloc(0, 256, 256), None);
        assert_eq!(m.free_bytes(), 0);
    }

    #[test]
    fn best_fit_and_merging_on_free() {
        let mut m = SpaceMap::new();
        m.add_file(0, 1, FILE);
        let a = m.alloc(0, 512, 256).unwrap();
        let b = m.alloc(0, 512, 256).unwrap();
        let c = m.alloc(0, 512, 256).unwrap();
        m.give(&a);
        m.give(&c); // merges with the tail: [1024, 4096)
                    // Best fit: the 512-byte hole, not the big tail.
        assert_eq!(m.alloc(0, 300, 256), Some(info(1, 0, 512)));
        m.give(&info(1, 0, 512));
        m.give(&b); // a + b + tail: the whole file again
        assert_eq!(m.free_bytes(), 4096);
        assert_eq!(m.alloc(0, 4096, 256), Some(info(1, 0, 4096)));
    }

    #[test]
    fn taken_ranges_are_never_given_out() {
        let mut m = SpaceMap::new();
        // A slot learned from a record makes its file known.
        m.take(&info(3, 1024, 512), 4096);
        assert_eq!(m.file(0, 3).map(|f| f.len), Some(4096));
        assert_eq!(m.free_bytes(), 4096 - 512);
        assert!(!m.is_free_in(&info(3, 1024, 512)));
        assert!(m.is_free_in(&info(3, 1000, 100)));
        let mut got = Vec::new();
        while let Some(i) = m.alloc(0, 256, 256) {
            assert!(
                i.end() <= 1024 || i.slot.offset >= 1536,
                "{i:?} overlaps the taken slot"
            );
            got.push(i);
        }
        assert_eq!(got.len(), (4096 - 512) / 256);
        // Taking twice, or a range that is partly free, is harmless.
        m.give(&got[0]);
        m.take(&info(3, 0, 1024), 4096);
        m.take(&info(3, 0, 1024), 4096);
        assert_eq!(m.free_bytes(), 0);
        // Freeing outside a known file or past its end frees nothing more.
        m.give(&info(9, 0, 256));
        m.give(&info(3, 4000, 1000));
        assert_eq!(m.free_bytes(), 96);
        assert_eq!(m.max_id(), 3);
    }

    #[test]
    fn a_reservation_takes_up_to_its_most_from_the_best_fit() {
        let mut m = SpaceMap::new();
        m.add_file(0, 1, FILE);
        let a = m.alloc(0, 512, 256).unwrap();
        m.alloc(0, 512, 256).unwrap();
        m.give(&a);
        // The 512-byte hole fits best: all of it, though up to 2048 was asked.
        assert_eq!(m.alloc_upto(0, 300, 2048, 256), Some(info(1, 0, 512)));
        // Then the tail: 2048 of its 3072.
        assert_eq!(m.alloc_upto(0, 300, 2048, 256), Some(info(1, 1024, 2048)));
        // A pool made of reserved ranges hands them out without the rest.
        let mut pool = SpaceMap::new();
        pool.add_free(&info(1, 1024, 2048), 4096);
        assert_eq!(pool.free_bytes(), 2048);
        assert_eq!(pool.alloc(0, 256, 256), Some(info(1, 1024, 256)));
    }

    #[test]
    fn a_snapshot_replayed_rebuilds_the_same_map() {
        let mut m = SpaceMap::new();
        m.add_file(0, 1, FILE);
        m.add_file(0, 2, FILE); // all free
        m.take(&info(5, 0, 4096), 4096); // all taken
        let slots: Vec<TrunkInfo> = (0..8).map(|_| m.alloc(0, 512, 256).unwrap()).collect();
        m.give(&slots[1]);
        m.give(&slots[2]);
        m.give(&slots[6]);
        let replay = |records: &[(SpaceOp, TrunkInfo)]| {
            let mut r = SpaceMap::new();
            for (op, i) in records {
                match op {
                    SpaceOp::Allocated => r.take(i, 1),
                    SpaceOp::Freed => r.give(i),
                }
            }
            r
        };
        let sum: u64 = m.by_place.values().map(|&s| u64::from(s)).sum();
        assert_eq!(m.free_bytes(), sum);
        assert!(m.has_fit(0, 4096) && !m.has_fit(0, 4097) && !m.has_fit(1, 1));
        let snap = m.snapshot();
        assert_eq!(snap.len(), m.snapshot_len());
        let mut r = replay(&snap);
        assert_eq!(r.files, m.files);
        assert_eq!(r.by_place, m.by_place);
        assert_eq!(r.by_size, m.by_size);
        // Both hand out the same slots from here on.
        for _ in 0..20 {
            assert_eq!(r.alloc(0, 300, 256), m.alloc(0, 300, 256));
        }
    }

    #[test]
    fn draining_gives_every_free_extent_once() {
        let mut m = SpaceMap::new();
        m.add_file(0, 1, FILE);
        let a = m.alloc(0, 1024, 256).unwrap();
        m.alloc(0, 1024, 256).unwrap();
        m.give(&a);
        let free = m.drain_free();
        assert_eq!(free, vec![info(1, 0, 1024), info(1, 2048, 2048)]);
        assert_eq!((m.free_bytes(), m.alloc(0, 256, 256)), (0, None));
        assert!(m.drain_free().is_empty());
    }

    #[test]
    fn double_free_does_not_grow_space() {
        let mut m = SpaceMap::new();
        m.add_file(0, 1, FILE);
        let a = m.alloc(0, 1024, 256).unwrap();
        m.give(&a);
        m.give(&a);
        assert_eq!(m.free_bytes(), 4096);
        assert_eq!(m.alloc(0, 4096, 256), Some(info(1, 0, 4096)));
    }
}

//! The requester's side: slots asked of the group's trunk server (or of
//! ourselves when we are it), confirmed and given back.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::errno;
use fdfs_proto::file_id::TrunkSlot;
use fdfs_proto::trunk::{AllocReq, SlotReq, TrunkInfo};
use tracing::{debug, warn};

use super::Trunk;
use crate::sync::link::Link;

/// Most idle connections kept to the trunk server.
const MAX_IDLE_LINKS: usize = 16;

/// Most slots asked of a peer trunk server in one TRUNK_ALLOC_SPACE.
const BATCH_SLOTS: u32 = 16;
/// Most bytes asked at once.
const BATCH_BYTES: u32 = 256 * 1024;
/// Most runs kept per store path.
const BATCHES_PER_PATH: usize = 4;

/// A slot asked of a peer trunk server for several uploads: each takes
/// the next part of it, with a header of its own. Confirmed once when it
/// comes; what is left when it is replaced is given back. A crash loses
/// what was left (it stays taken), never gives a part out twice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batch {
    server: SocketAddr,
    slot: TrunkInfo,
    /// Bytes handed out from its start.
    used: u32,
}

impl Batch {
    /// The part not handed out, if any.
    fn rest(&self) -> Option<TrunkInfo> {
        let left = self.slot.slot.alloc_size - self.used;
        (left > 0).then(|| TrunkInfo {
            slot: TrunkSlot {
                offset: self.slot.slot.offset + self.used,
                alloc_size: left,
                ..self.slot.slot
            },
            ..self.slot
        })
    }
}

impl Trunk {
    /// A slot of `need` bytes in store path `store_path`, from the trunk
    /// server (ourselves or a peer). `None`: store the file whole.
    pub async fn alloc(self: &Arc<Self>, store_path: u8, need: u32) -> Option<TrunkInfo> {
        if self.state().serving.load(Ordering::Relaxed) {
            self.give_back_batches(None);
            return match self.serve_alloc(store_path, need).await {
                Ok(i) => Some(i),
                Err(e) => {
                    warn!("trunk: no slot of {need} bytes: {e}; the file is stored whole");
                    None
                }
            };
        }
        let addr = self.state().server_addr()?;
        self.give_back_batches(Some(addr));
        let params = self.state().params();
        if let Some(part) = self.take_part(store_path, need, params.slot_min_size) {
            return Some(part);
        }
        // `need` is aligned already: so is any multiple of it.
        let k = BATCH_SLOTS
            .min(BATCH_BYTES / need)
            .min(params.slot_max_size / need)
            .max(1);
        let slot = self.ask_slot(addr, store_path, need * k, need).await?;
        // Confirmed at once: its parts are handed out here.
        let trunk = self.clone();
        tokio::spawn(async move {
            trunk
                .slot_call(sc::TRUNK_ALLOC_CONFIRM, errno::OK, slot)
                .await
        });
        // Uploads that missed together each asked: their runs are all
        // kept, up to a few per path; the one with the least left goes.
        let displaced = {
            let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
            batches.push(Batch {
                server: addr,
                slot,
                used: 0,
            });
            let mut displaced = Vec::new();
            while batches
                .iter()
                .filter(|b| b.slot.store_path == store_path)
                .count()
                > BATCHES_PER_PATH
            {
                let least = (0..batches.len())
                    .filter(|&i| batches[i].slot.store_path == store_path)
                    .min_by_key(|&i| batches[i].slot.slot.alloc_size - batches[i].used)
                    .expect("more than one");
                displaced.push(batches.swap_remove(least));
            }
            displaced
        };
        for rest in displaced.iter().filter_map(Batch::rest) {
            self.give_back(rest);
        }
        self.take_part(store_path, need, params.slot_min_size)
    }

    /// The next `need` bytes of a batch for `store_path` that has them
    /// (all that is left when the rest would be under `min_slot`).
    fn take_part(&self, store_path: u8, need: u32, min_slot: u32) -> Option<TrunkInfo> {
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let i = batches.iter().position(|b| {
            b.slot.store_path == store_path && b.slot.slot.alloc_size - b.used >= need
        })?;
        let b = &mut batches[i];
        let left = b.slot.slot.alloc_size - b.used;
        let size = if left - need < min_slot.max(1) {
            left
        } else {
            need
        };
        let part = TrunkInfo {
            slot: TrunkSlot {
                offset: b.slot.slot.offset + b.used,
                alloc_size: size,
                ..b.slot.slot
            },
            ..b.slot
        };
        b.used += size;
        if b.used == b.slot.slot.alloc_size {
            batches.swap_remove(i);
        }
        Some(part)
    }

    /// Gives back what is left of the batches of any other trunk server
    /// than `current` (all of them with `None`: we serve now).
    fn give_back_batches(self: &Arc<Self>, current: Option<SocketAddr>) {
        let stale: Vec<Batch> = {
            let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
            if batches.iter().all(|b| Some(b.server) == current) {
                return;
            }
            let (keep, stale) = batches.drain(..).partition(|b| Some(b.server) == current);
            *batches = keep;
            stale
        };
        for rest in stale.iter().filter_map(Batch::rest) {
            self.give_back(rest);
        }
    }

    /// At a graceful stop: gives back what was set aside and not handed
    /// out (our runs of a peer's slots, or the trunk server's set-aside
    /// ranges), so that a restart leaks no trunk space. Parts already
    /// handed out, even to uploads still under way, are not touched.
    pub async fn release(&self) {
        let runs: Vec<Batch> =
            std::mem::take(&mut *self.batches.lock().unwrap_or_else(|e| e.into_inner()));
        for rest in runs.iter().filter_map(Batch::rest) {
            let freed = tokio::time::timeout(self.conf.connect_timeout, self.free(rest)).await;
            if freed.is_err() {
                warn!("trunk: giving back {rest:?} timed out; it stays taken");
            }
        }
        if self.state().serving.load(Ordering::Relaxed) {
            if let Err(e) = self.release_set_aside().await {
                warn!("trunk: giving back the set-aside ranges: {e}");
            }
        }
    }

    /// Frees `rest`, never handed out, on the trunk server (in the
    /// background).
    fn give_back(self: &Arc<Self>, rest: TrunkInfo) {
        let trunk = self.clone();
        tokio::spawn(async move { trunk.free(rest).await });
    }

    /// TRUNK_ALLOC_SPACE of `size` bytes (at least `need` back) to `addr`.
    async fn ask_slot(
        &self,
        addr: SocketAddr,
        store_path: u8,
        size: u32,
        need: u32,
    ) -> Option<TrunkInfo> {
        let mut body = Vec::with_capacity(AllocReq::LEN);
        AllocReq {
            group: self.store.group().clone(),
            size,
            store_path,
        }
        .encode(&mut body);
        match self.call(addr, sc::TRUNK_ALLOC_SPACE, 0, &body).await {
            Ok((0, b)) => match TrunkInfo::decode(&b) {
                Ok(i) if i.store_path == store_path && i.slot.alloc_size >= need => Some(i),
                Ok(i) => {
                    warn!(trunk_server = %addr, "trunk: the trunk server gave {i:?} for {size} bytes in path {store_path}; the file is stored whole");
                    None
                }
                Err(e) => {
                    warn!(trunk_server = %addr, "trunk: bad TRUNK_ALLOC_SPACE reply: {e}");
                    None
                }
            },
            Ok((st, _)) => {
                warn!(trunk_server = %addr, status = errno::describe(st).0, "trunk: no slot of {size} bytes; the file is stored whole");
                None
            }
            Err(e) => {
                warn!(trunk_server = %addr, "trunk: TRUNK_ALLOC_SPACE failed: {e}; the file is stored whole");
                None
            }
        }
    }

    /// Counts an upload small enough for a slot that got none.
    pub fn stored_whole(&self) {
        self.state().stored_whole.fetch_add(1, Ordering::Relaxed);
    }

    /// Small files are packed (the trackers say so).
    pub fn packing(&self) -> bool {
        self.state().params().enabled
    }

    /// How the upload into the slot ended: 0 used, or EEXIST not used
    /// because it holds a file here: either way it stays taken (a peer's
    /// slot was confirmed when it came). Anything else: not used, it is
    /// freed (TRUNK_FREE_SPACE, which any trunk server takes for a part of
    /// a slot it gave).
    pub async fn confirm(&self, info: TrunkInfo, status: u8) {
        if status != errno::OK && status != errno::EEXIST {
            self.free(info).await;
        }
    }

    /// After a delete on this server: the slot is free again.
    pub async fn free(&self, info: TrunkInfo) {
        self.slot_call(sc::TRUNK_FREE_SPACE, 0, info).await;
    }

    async fn slot_call(&self, code: u8, status: u8, info: TrunkInfo) {
        if self.state().serving.load(Ordering::Relaxed) {
            let r = if code == sc::TRUNK_FREE_SPACE {
                self.serve_free(info).await
            } else {
                self.serve_confirm(info, status == 0 || status == errno::EEXIST)
                    .await
            };
            if let Err(e) = r {
                warn!("trunk: {} of {info:?}: {e}", fdfs_proto::cmd::name(code));
            }
            return;
        }
        let Some(addr) = self.state().server_addr() else {
            warn!(
                "trunk: no trunk server to tell of {info:?} ({}); its space stays taken",
                fdfs_proto::cmd::name(code)
            );
            return;
        };
        let mut body = Vec::with_capacity(SlotReq::LEN);
        SlotReq {
            group: self.store.group().clone(),
            info,
        }
        .encode(&mut body);
        match self.call(addr, code, status, &body).await {
            Ok((0, _)) => {}
            Ok((st, _)) => {
                warn!(trunk_server = %addr, status = errno::describe(st).0, "trunk: {} of {info:?} refused", fdfs_proto::cmd::name(code))
            }
            Err(e) => {
                warn!(trunk_server = %addr, "trunk: {} of {info:?}: {e}", fdfs_proto::cmd::name(code))
            }
        }
    }

    /// One request on a kept-alive connection to the trunk server (one per
    /// concurrent request, up to [`MAX_IDLE_LINKS`] kept); a new connection
    /// when the server changed or a kept one failed.
    async fn call(
        &self,
        addr: SocketAddr,
        code: u8,
        status: u8,
        body: &[u8],
    ) -> io::Result<(u8, Vec<u8>)> {
        let kept = {
            let mut idle = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|(a, _)| *a == addr);
            idle.pop()
        };
        if let Some((_, link)) = kept {
            match self.exchange(addr, link, code, status, body).await {
                Ok(r) => return Ok(r),
                // The server closed it meanwhile: a new one.
                Err(e) => debug!("trunk: connection to {addr}: {e}; again"),
            }
        }
        let link = Link::connect(
            addr,
            self.conf.bind_ip,
            self.conf.connect_timeout,
            self.conf.network_timeout,
        )
        .await?;
        self.exchange(addr, link, code, status, body).await
    }

    /// One request and its reply on `link`, which is kept for the next
    /// one unless the reply was EINVAL (the server closes, §1.2).
    async fn exchange(
        &self,
        addr: SocketAddr,
        mut link: Link,
        code: u8,
        status: u8,
        body: &[u8],
    ) -> io::Result<(u8, Vec<u8>)> {
        link.start(code, status, body.len() as u64, &[body]).await?;
        let (st, b) = link.reply().await?;
        if st != errno::EINVAL {
            let mut idle = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_LINKS {
                idle.push((addr, link));
            }
        }
        Ok((st, b))
    }
}

//! The requester's side: slots asked of the group's trunk server (or of
//! ourselves when we are it), confirmed and given back.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::errno;
use fdfs_proto::trunk::{AllocReq, SlotReq, TrunkInfo};
use tracing::{debug, warn};

use super::Trunk;
use crate::sync::link::Link;

/// Most idle connections kept to the trunk server.
const MAX_IDLE_LINKS: usize = 16;

impl Trunk {
    /// A slot of `need` bytes in store path `store_path`, from the trunk
    /// server (ourselves or a peer). `None`: store the file whole.
    pub async fn alloc(&self, store_path: u8, need: u32) -> Option<TrunkInfo> {
        if self.state().serving.load(Ordering::Relaxed) {
            return match self.serve_alloc(store_path, need).await {
                Ok(i) => Some(i),
                Err(e) => {
                    warn!("trunk: no slot of {need} bytes: {e}; the file is stored whole");
                    None
                }
            };
        }
        let addr = self.state().server_addr()?;
        let mut body = Vec::with_capacity(AllocReq::LEN);
        AllocReq {
            group: self.store.group().clone(),
            size: need,
            store_path,
        }
        .encode(&mut body);
        match self.call(addr, sc::TRUNK_ALLOC_SPACE, 0, &body).await {
            Ok((0, b)) => match TrunkInfo::decode(&b) {
                Ok(i) if i.store_path == store_path && i.slot.alloc_size >= need => Some(i),
                Ok(i) => {
                    warn!(trunk_server = %addr, "trunk: the trunk server gave {i:?} for {need} bytes in path {store_path}; the file is stored whole");
                    None
                }
                Err(e) => {
                    warn!(trunk_server = %addr, "trunk: bad TRUNK_ALLOC_SPACE reply: {e}");
                    None
                }
            },
            Ok((st, _)) => {
                warn!(trunk_server = %addr, status = errno::describe(st).0, "trunk: no slot of {need} bytes; the file is stored whole");
                None
            }
            Err(e) => {
                warn!(trunk_server = %addr, "trunk: TRUNK_ALLOC_SPACE failed: {e}; the file is stored whole");
                None
            }
        }
    }

    /// Small files are packed (the trackers say so).
    pub fn packing(&self) -> bool {
        self.state().params().enabled
    }

    /// Tells the trunk server how the upload into the slot ended: 0 used;
    /// EEXIST not used because it holds a file here (it stays taken);
    /// anything else not used (it is free again).
    pub async fn confirm(&self, info: TrunkInfo, status: u8) {
        self.slot_call(sc::TRUNK_ALLOC_CONFIRM, status, info).await;
    }

    /// [`Trunk::confirm`] of a used slot, in the background: the upload's
    /// reply does not wait for it. Nothing to send when we are the trunk
    /// server (the slot was recorded when it was given out).
    pub fn confirm_used(self: &Arc<Self>, info: TrunkInfo) {
        if self.state().serving.load(Ordering::Relaxed) {
            return;
        }
        let trunk = self.clone();
        tokio::spawn(async move { trunk.confirm(info, errno::OK).await });
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

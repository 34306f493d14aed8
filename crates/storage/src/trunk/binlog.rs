//! The trunk binlog of the other storages: the trunk server keeps it
//! equal to its own (TRUNK_SYNC_BINLOG and the truncate before a resend).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fdfs_proto::cmd::storage as sc;
use fdfs_proto::errno;
use tracing::debug;

use super::{Trunk, TrunkError};
use crate::sync::link::Link;

/// How often the trunk server sends new trunk binlog lines to its peers
/// (and at once after space is given out).
const PUSH_EVERY: Duration = Duration::from_millis(500);
/// Most trunk binlog bytes in one TRUNK_SYNC_BINLOG.
const PUSH_CHUNK: usize = 64 * 1024;

impl Trunk {
    /// While we are trunk server: keeps every ONLINE or ACTIVE peer's copy
    /// of the trunk binlog equal to ours (truncated, then sent from the
    /// start, when we take the role or lose track of a peer), so that the
    /// next trunk server knows which slots were given out even before the
    /// files reach it.
    pub async fn push_binlog(self: Arc<Self>, shutdown: fdfs_runtime::Shutdown) {
        use std::collections::HashMap;
        // Per peer: how much of which generation of our binlog it holds.
        let mut sent: HashMap<SocketAddr, (u64, u64)> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PUSH_EVERY) => {}
                _ = self.allocated.notified() => {}
                _ = shutdown.wait() => return,
            }
            let st = self.state();
            if !st.serving.load(Ordering::Relaxed) {
                sent.clear();
                continue;
            }
            let me = st.server_addr();
            let peers: Vec<SocketAddr> = self
                .reporter
                .group_servers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|b| {
                    matches!(
                        b.status,
                        fdfs_proto::server::status::ACTIVE | fdfs_proto::server::status::ONLINE
                    )
                })
                .filter_map(|b| {
                    let ip: IpAddr = b.ip.parse().ok()?;
                    Some(SocketAddr::new(ip, u16::try_from(b.port).ok()?))
                })
                .filter(|a| Some(*a) != me)
                .collect();
            sent.retain(|a, _| peers.contains(a));
            let generation = self.binlog_generation.load(Ordering::SeqCst);
            if generation % 2 == 1 {
                continue; // being replaced
            }
            let size = self.binlog_size();
            for peer in peers {
                // A compacted binlog is sent again from the start.
                let from = sent
                    .get(&peer)
                    .filter(|(g, _)| *g == generation)
                    .map(|&(_, at)| at);
                if from == Some(size) {
                    continue;
                }
                match self.push_to(peer, from, size, generation).await {
                    Ok(upto) => {
                        sent.insert(peer, (generation, upto));
                    }
                    Err(e) => {
                        // Started over (truncate first) next time.
                        debug!(%peer, "trunk: sending the trunk binlog: {e}");
                        sent.remove(&peer);
                    }
                }
            }
        }
    }

    /// Sends our trunk binlog from `from` (`None`: truncate the peer's
    /// first, then from the start) up to `size`, in whole lines, if it is
    /// still generation `generation`.
    async fn push_to(
        &self,
        peer: SocketAddr,
        from: Option<u64>,
        size: u64,
        generation: u64,
    ) -> io::Result<u64> {
        let file = File::open(self.binlog_path())?;
        if self.binlog_generation.load(Ordering::SeqCst) != generation {
            return Err(io::Error::other("the trunk binlog was compacted meanwhile"));
        }
        let mut link = Link::connect(
            peer,
            self.conf.bind_ip,
            self.conf.connect_timeout,
            self.conf.network_timeout,
        )
        .await?;
        let refused = |what: &str, st: u8| {
            io::Error::other(format!("{what} answered {}", errno::describe(st).0))
        };
        let mut at = match from {
            Some(o) => o,
            None => {
                let (st, _) = link.call(sc::TRUNK_TRUNCATE_BINLOG_FILE, &[]).await?;
                if st != 0 {
                    return Err(refused("TRUNK_TRUNCATE_BINLOG_FILE", st));
                }
                0
            }
        };
        let mut buf = vec![0u8; PUSH_CHUNK];
        while at < size {
            let want = ((size - at) as usize).min(PUSH_CHUNK);
            file.read_exact_at(&mut buf[..want], at)?;
            // Whole lines only: the rest goes with the next chunk.
            let Some(end) = buf[..want].iter().rposition(|&b| b == b'\n') else {
                break;
            };
            let (st, _) = link.call(sc::TRUNK_SYNC_BINLOG, &buf[..=end]).await?;
            if st != 0 {
                return Err(refused("TRUNK_SYNC_BINLOG", st));
            }
            at += end as u64 + 1;
        }
        link.quit().await;
        Ok(at)
    }

    /// TRUNK_SYNC_BINLOG: lines the trunk server sends; kept for the day we
    /// take its role.
    pub fn append_binlog(&self, lines: &[u8]) -> Result<(), TrunkError> {
        if self.state().serving.load(Ordering::Relaxed) {
            return Err(TrunkError::Invalid(
                "TRUNK_SYNC_BINLOG to the trunk server itself".into(),
            ));
        }
        let path = self.binlog_path();
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)
                .map_err(|e| TrunkError::io(format!("creating {}", d.display()), e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrunkError::io(format!("opening {}", path.display()), e))?;
        f.write_all(lines)
            .map_err(|e| TrunkError::io("writing the trunk binlog", e))
    }

    /// TRUNK_GET_BINLOG_SIZE.
    pub fn binlog_size(&self) -> u64 {
        fs::metadata(self.binlog_path()).map_or(0, |m| m.len())
    }

    /// TRUNK_TRUNCATE_BINLOG_FILE: a new trunk server sends its binlog
    /// from the start.
    pub fn truncate_binlog(&self) -> Result<(), TrunkError> {
        if self.state().serving.load(Ordering::Relaxed) {
            return Err(TrunkError::Invalid(
                "the trunk server keeps its own binlog".into(),
            ));
        }
        match fs::write(self.binlog_path(), b"") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(TrunkError::io("truncating the trunk binlog", e))
            }
            _ => Ok(()),
        }
    }
}

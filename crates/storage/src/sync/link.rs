//! Outgoing connections of the sync workers: to a peer's storage port and
//! short request/response sessions with the trackers (SYNC_SRC_REQ,
//! REPORT_STATUS; the group list and group name for disk recovery and
//! start-up). Every read and write is bounded by `network_timeout`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fdfs_conf::HostPort;
use fdfs_proto::cmd::tracker as tc;
use fdfs_proto::server::{GroupIdReq, ReportStatusReq, StorageBrief, SyncInfo};
use fdfs_proto::tracker::{ListStorageReq, StorageStat};
use fdfs_proto::{cmd, GroupName, Header, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest reply body accepted (the SYNC_RENAME echo of upstream is 124
/// bytes; tracker replies here are at most 24).
pub const MAX_REPLY: u64 = 64 * 1024;

/// One framed connection.
pub struct Link {
    s: TcpStream,
    timeout: Duration,
}

fn timed_out(what: &str, t: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no progress within {t:?}"),
    )
}

impl Link {
    /// Connects from `bind` (if set and of the same family) to `addr`.
    pub async fn connect(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> io::Result<Link> {
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = bind {
            if ip.is_ipv4() == addr.is_ipv4() && !ip.is_unspecified() {
                sock.bind(SocketAddr::new(ip, 0))?;
            }
        }
        let s = tokio::time::timeout(connect_timeout, sock.connect(addr))
            .await
            .map_err(|_| timed_out(&format!("connect to {addr}"), connect_timeout))??;
        let _ = s.set_nodelay(true);
        Ok(Link { s, timeout })
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        tokio::time::timeout(self.timeout, self.s.write_all(b))
            .await
            .map_err(|_| timed_out("send", self.timeout))?
    }

    /// Sends a header announcing `pkg_len` and the first body parts in
    /// one write; the rest of the body (content) may follow with
    /// [`Link::write`].
    pub async fn start(
        &mut self,
        code: u8,
        status: u8,
        pkg_len: u64,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>());
        out.extend_from_slice(&Header::new(code, status, pkg_len).encode());
        for p in parts {
            out.extend_from_slice(p);
        }
        self.write(&out).await
    }

    /// Reads one reply: (status, body).
    pub async fn reply(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let t = self.timeout;
        let io = async {
            let mut h = [0u8; HEADER_LEN];
            self.s.read_exact(&mut h).await?;
            let h = Header::decode(&h, MAX_REPLY).map_err(|e| io::Error::other(e.to_string()))?;
            if h.cmd != cmd::RESP {
                return Err(io::Error::other(format!("reply cmd {} is not RESP", h.cmd)));
            }
            let mut b = vec![0u8; h.pkg_len as usize];
            self.s.read_exact(&mut b).await?;
            Ok((h.status, b))
        };
        tokio::time::timeout(t, io)
            .await
            .map_err(|_| timed_out("reply", t))?
    }

    /// A whole request with a small body, and its reply.
    pub async fn call(&mut self, code: u8, body: &[u8]) -> io::Result<(u8, Vec<u8>)> {
        self.start(code, 0, body.len() as u64, &[body]).await?;
        self.reply().await
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.s
                .write_all(&fdfs_proto::encode_frame(cmd::QUIT, 0, &[])),
        )
        .await;
    }
}

/// Short sessions with the trackers.
#[derive(Debug, Clone)]
pub struct Trackers {
    pub list: Vec<HostPort>,
    pub bind: Option<IpAddr>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Trackers {
    async fn call_one(&self, t: &HostPort, code: u8, body: &[u8]) -> io::Result<(u8, Vec<u8>)> {
        let addr = {
            let t = t.clone();
            tokio::task::spawn_blocking(move || t.to_socket_addr())
                .await
                .map_err(|e| io::Error::other(e.to_string()))??
        };
        let mut l = Link::connect(addr, self.bind, self.connect_timeout, self.timeout).await?;
        let r = l.call(code, body).await;
        l.quit().await;
        r
    }

    /// One request to the trackers in turn: the first status-0 reply,
    /// turned into the answer by `decode`. The error names every tracker's
    /// reason.
    async fn first_answer<T>(
        &self,
        what: &str,
        code: u8,
        body: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut errs = Vec::new();
        for t in &self.list {
            match self.call_one(t, code, body).await {
                Ok((0, b)) => {
                    return decode(&b).map_err(|e| format!("tracker {t}: bad {what} reply: {e}"))
                }
                Ok((st, _)) => errs.push(format!(
                    "tracker {t}: status {st} ({})",
                    fdfs_proto::errno::describe(st).0
                )),
                Err(e) => errs.push(format!("tracker {t}: {e}")),
            }
        }
        Err(format!("{what} failed: {}", errs.join("; ")))
    }

    /// SYNC_SRC_REQ (86): the full-sync source and cut-off of `dest`, from
    /// the first tracker that answers; `Ok(None)` when it has none.
    pub async fn sync_src(
        &self,
        group: &GroupName,
        dest: &str,
    ) -> Result<Option<SyncInfo>, String> {
        let mut body = Vec::new();
        GroupIdReq {
            group: group.clone(),
            storage_id: dest.to_owned(),
        }
        .encode(&mut body);
        self.first_answer(
            &format!("SYNC_SRC_REQ for {dest}"),
            tc::STORAGE_SYNC_SRC_REQ,
            &body,
            |b| {
                SyncInfo::decode_optional(b)
                    .map(|o| o.filter(|i| !i.src_id.is_empty()))
                    .map_err(|e| e.to_string())
            },
        )
        .await
    }

    /// SERVER_LIST_STORAGE (92): the servers of `group` (either record
    /// layout).
    pub async fn list_group(&self, group: &GroupName) -> Result<Vec<StorageStat>, String> {
        let mut body = Vec::new();
        ListStorageReq {
            group: group.clone(),
            storage_id: None,
        }
        .encode(&mut body);
        self.first_answer("LIST_STORAGE", tc::SERVER_LIST_STORAGE, &body, |b| {
            StorageStat::decode_list_any(b).map_err(|e| e.to_string())
        })
        .await
    }

    /// GET_GROUP_NAME (109): the group of the server at `ip` (our
    /// `bind_addr`; `None`: the address we connect from) and `port`,
    /// answered from the trackers' storage_ids.conf.
    pub async fn group_name(&self, ip: Option<IpAddr>, port: u16) -> Result<GroupName, String> {
        let mut body = ip.map(|ip| ip.to_string().into_bytes()).unwrap_or_default();
        body.extend_from_slice(&u32::from(port).to_be_bytes());
        self.first_answer("GET_GROUP_NAME", tc::STORAGE_GET_GROUP_NAME, &body, |b| {
            let name = String::from_utf8_lossy(b).trim_end_matches('\0').to_owned();
            GroupName::new(&name).map_err(|e| e.to_string())
        })
        .await
    }

    /// REPORT_STATUS (76) to every tracker: `peer` now has `status`. True
    /// if at least one tracker accepted it.
    pub async fn report_status(&self, group: &GroupName, peer: &StorageBrief, status: u8) -> bool {
        let mut body = Vec::new();
        ReportStatusReq {
            group: group.clone(),
            brief: StorageBrief {
                status,
                // Upstream sends port 0 here (PROTOCOL.md §12.8).
                port: 0,
                id: peer.id.clone(),
                ip: peer.ip.clone(),
            },
        }
        .encode(&mut body);
        let mut ok = false;
        for t in &self.list {
            match self.call_one(t, tc::STORAGE_REPORT_STATUS, &body).await {
                Ok((0, _)) => ok = true,
                Ok((st, _)) => tracing::warn!(
                    worker = "sync",
                    tracker = %t,
                    peer = %peer.id,
                    "REPORT_STATUS refused with status {st}"
                ),
                Err(e) => {
                    tracing::warn!(worker = "sync", tracker = %t, peer = %peer.id, "REPORT_STATUS failed: {e}")
                }
            }
        }
        ok
    }
}

//! The two tracker queries the gateway needs, over plain TCP with the
//! fdfs_proto codecs: list groups (91), list a group's storages (92), plus
//! ACTIVE_TEST (111) for the health check.

use std::net::SocketAddr;
use std::time::Duration;

use fdfs_proto::cmd;
use fdfs_proto::server::status;
use fdfs_proto::tracker::{GroupStat, ListStorageReq, StorageStat};
use fdfs_proto::{GroupName, Header, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::HttpError;

/// Largest tracker reply accepted: 512 groups × 32 servers of 517 bytes fit.
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// One group and the addresses of its ACTIVE storages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembers {
    pub group: String,
    pub active_ips: Vec<String>,
}

/// A tracker connection with per-call timeouts.
pub struct TrackerConn {
    stream: TcpStream,
    timeout: Duration,
}

impl TrackerConn {
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        network_timeout: Duration,
    ) -> Result<TrackerConn, HttpError> {
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::Tracker(format!("connect to {addr} timed out")))?
            .map_err(|e| HttpError::Tracker(format!("connect to {addr}: {e}")))?;
        Ok(TrackerConn {
            stream,
            timeout: network_timeout,
        })
    }

    /// Sends one request and returns the reply body (status 0 only).
    pub async fn call(&mut self, command: u8, body: &[u8]) -> Result<Vec<u8>, HttpError> {
        let t = self.timeout;
        tokio::time::timeout(t, self.call_inner(command, body))
            .await
            .map_err(|_| HttpError::Tracker(format!("{}: timed out", cmd::name(command))))?
    }

    async fn call_inner(&mut self, command: u8, body: &[u8]) -> Result<Vec<u8>, HttpError> {
        let io = |e: std::io::Error| HttpError::Tracker(e.to_string());
        let mut frame = Header::new(command, 0, body.len() as u64).encode().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).await.map_err(io)?;
        let mut h = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut h).await.map_err(io)?;
        let header =
            Header::decode(&h, MAX_REPLY).map_err(|e| HttpError::Tracker(e.to_string()))?;
        if header.cmd != cmd::RESP {
            return Err(HttpError::Tracker(format!(
                "unexpected reply command {}",
                header.cmd
            )));
        }
        if header.status != 0 {
            return Err(HttpError::Tracker(format!(
                "{} failed: status {}",
                cmd::name(command),
                header.status
            )));
        }
        let mut b = vec![0u8; header.pkg_len as usize];
        self.stream.read_exact(&mut b).await.map_err(io)?;
        Ok(b)
    }

    /// Every group with its ACTIVE storages' IPs.
    pub async fn groups(&mut self) -> Result<Vec<GroupMembers>, HttpError> {
        let body = self.call(cmd::tracker::SERVER_LIST_ALL_GROUPS, &[]).await?;
        let groups =
            GroupStat::decode_list_any(&body).map_err(|e| HttpError::Tracker(e.to_string()))?;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let name =
                GroupName::new(&g.group_name).map_err(|e| HttpError::Tracker(e.to_string()))?;
            let mut req = Vec::new();
            ListStorageReq {
                group: name,
                storage_id: None,
            }
            .encode(&mut req);
            let body = self.call(cmd::tracker::SERVER_LIST_STORAGE, &req).await?;
            let servers = StorageStat::decode_list_any(&body)
                .map_err(|e| HttpError::Tracker(e.to_string()))?;
            out.push(GroupMembers {
                group: g.group_name,
                active_ips: servers
                    .into_iter()
                    .filter(|s| s.status == status::ACTIVE)
                    .map(|s| s.ip_addr)
                    .collect(),
            });
        }
        Ok(out)
    }

    /// ACTIVE_TEST: is the tracker answering?
    pub async fn active_test(&mut self) -> Result<(), HttpError> {
        self.call(cmd::ACTIVE_TEST, &[]).await.map(|_| ())
    }

    /// Says goodbye (QUIT gets no reply).
    pub async fn quit(mut self) {
        let frame = Header::new(cmd::QUIT, 0, 0).encode();
        let _ = self.stream.write_all(&frame).await;
    }
}

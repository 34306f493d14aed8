//! Serving the storage-to-storage sync commands (PROTOCOL.md §6.4) on the
//! ordinary storage port: REPORT_SERVER_ID (9) and SYNC_* (16, 17, 18, 19,
//! 25, 35, 37, 40). Replies carry no body.
//!
//! Sync commands are accepted on any connection, also one that never sent
//! REPORT_SERVER_ID (upstream's second sync connection, §12.1); the
//! progress of such a connection is credited to its peer IP, which is the
//! peer's id unless storages are named by id.
//!
//! A malformed request (bad head, bad name, other group) is answered
//! EINVAL and the connection is closed, like every storage command; a
//! request that cannot be applied gets its status and the connection stays.

use std::sync::Arc;

use fdfs_proto::sync::{
    decode_sync_name, ReportServerId, SyncDelete, SyncFileHead, SyncRangeHead, SyncTruncate,
    SyncTwoNames,
};
use fdfs_proto::{cmd, errno, DecodeError, GroupName, Header, LogicName, HEADER_LEN};
use fdfs_runtime::net::{Conn, ConnError};
use tracing::{debug, warn};

use super::apply::{self, Outcome};
use super::progress::Progress;
use super::{blocking, maybe_blocking, SMALL};
use crate::store::{Store, StoreError};

/// Chunk size for incoming content.
const CHUNK: usize = 256 * 1024;

/// Longest body of a sync command without content.
const MAX_SMALL: u64 = 4096;

/// Replies held back at most, waiting for one group fsync.
const MAX_DEFERRED: usize = 64;

/// Who is sending on one connection, and what it has not been answered yet.
#[derive(Debug, Default)]
pub struct PeerTag {
    /// From REPORT_SERVER_ID, if the peer sent it.
    pub id: Option<String>,
    /// Statuses of requests served but not answered yet, in order: while
    /// the peer pipelines files in durable mode, the replies wait for one
    /// shared fsync of their directories and of the binlog.
    replies: Vec<Reply>,
    unsynced: apply::Unsynced,
}

/// A reply held back.
#[derive(Debug)]
enum Reply {
    Status(u8),
    /// That of the next staged create, known once it is committed.
    Staged,
}

impl PeerTag {
    /// Replies are waiting: send them (see [`Receiver::flush`]) before
    /// answering anything else on this connection.
    pub fn has_deferred(&self) -> bool {
        !self.replies.is_empty()
    }
}

/// Shared by every connection.
pub struct Receiver {
    pub store: Arc<Store>,
    pub progress: Arc<Progress>,
    /// Durable-mode flushes that made held-back applies durable (each one
    /// fsync per directory and one of the binlog, for all of them): tests
    /// check that pipelined files share one.
    #[cfg(test)]
    pub group_commits: std::sync::atomic::AtomicU64,
}

/// True for the commands [`Receiver::handle`] serves.
pub fn is_sync_cmd(code: u8) -> bool {
    use cmd::storage as s;
    matches!(
        code,
        s::REPORT_SERVER_ID
            | s::SYNC_CREATE_FILE
            | s::SYNC_DELETE_FILE
            | s::SYNC_UPDATE_FILE
            | s::SYNC_CREATE_LINK
            | s::SYNC_APPEND_FILE
            | s::SYNC_MODIFY_FILE
            | s::SYNC_TRUNCATE_FILE
            | s::SYNC_RENAME_FILE
    )
}

/// What a request turned into.
enum Done {
    /// Reply with this status, keep the connection.
    Reply(u8),
    /// A create staged for the next group commit (durable mode); its
    /// status comes from the commit.
    Staged,
    /// Reply EINVAL and close.
    Refuse(String),
    /// Close without a reply (body over the limit).
    Close,
}

impl Receiver {
    /// Serves one sync command whose header was read. `Ok(false)`: close
    /// the connection.
    pub async fn handle(
        &self,
        conn: &mut Conn,
        h: Header,
        tag: &mut PeerTag,
    ) -> Result<bool, ConnError> {
        if tag.unsynced.staged() > 0 && h.cmd != cmd::storage::SYNC_CREATE_FILE {
            // Anything else may touch a staged file: name those first.
            self.flush(conn, tag).await?;
        }
        let reply = match self.dispatch(conn, h, tag).await? {
            Done::Reply(errno::EINVAL) => {
                // A request that cannot apply (a bad name, content that does
                // not fit its trunk slot): answered, then closed, as a
                // storage does after EINVAL (PROTOCOL.md §1.2).
                tag.replies.push(Reply::Status(errno::EINVAL));
                self.flush(conn, tag).await?;
                return Ok(false);
            }
            Done::Reply(st) => Reply::Status(st),
            Done::Staged => Reply::Staged,
            Done::Refuse(why) => {
                warn!(
                    worker = "sync-receiver",
                    peer = %conn.peer(),
                    cmd = cmd::name(h.cmd),
                    "refused: {why}"
                );
                self.flush(conn, tag).await?;
                conn.send_status(errno::EINVAL).await?;
                return Ok(false);
            }
            Done::Close => {
                self.flush(conn, tag).await?;
                warn!(
                    worker = "sync-receiver",
                    peer = %conn.peer(),
                    cmd = cmd::name(h.cmd),
                    len = h.pkg_len,
                    "body length over the limit, closing"
                );
                return Ok(false);
            }
        };
        tag.replies.push(reply);
        // Hold the reply back only while it waits for fsyncs that the next,
        // already arrived, request can share.
        if tag.unsynced.is_empty() || tag.replies.len() >= MAX_DEFERRED || !conn.input_ready() {
            self.flush(conn, tag).await?;
        }
        Ok(true)
    }

    /// Makes the held-back applies durable, then sends their replies in
    /// order in one write. A failed fsync closes the connection with none
    /// of them confirmed: the peer resends.
    pub async fn flush(&self, conn: &mut Conn, tag: &mut PeerTag) -> Result<(), ConnError> {
        let mut staged = Vec::new().into_iter();
        if !tag.unsynced.is_empty() {
            let store = &*self.store;
            let unsynced = &mut tag.unsynced;
            #[cfg(test)]
            self.group_commits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match blocking(|| unsynced.commit_staged(store)) {
                Ok(r) => staged = r.into_iter(),
                Err(e) => {
                    warn!(worker = "sync-receiver", peer = %conn.peer(), "{e}; closing without confirming {} requests", tag.replies.len());
                    tag.replies.clear();
                    return Err(ConnError::Io(std::io::Error::other(e.to_string())));
                }
            }
        }
        if tag.replies.is_empty() {
            return Ok(());
        }
        let mut out = Vec::with_capacity(tag.replies.len() * HEADER_LEN);
        for reply in std::mem::take(&mut tag.replies) {
            let st = match reply {
                Reply::Status(st) => st,
                Reply::Staged => match staged.next() {
                    Some((name, ts, r)) => {
                        match self.outcome(conn, tag, cmd::storage::SYNC_CREATE_FILE, &name, ts, r)
                        {
                            Done::Reply(st) => st,
                            _ => errno::EIO,
                        }
                    }
                    None => errno::EIO,
                },
            };
            out.extend_from_slice(&Header::response(st, 0).encode());
        }
        conn.write_all(&out).await
    }

    fn peer_key(&self, conn: &Conn, tag: &PeerTag) -> String {
        tag.id
            .clone()
            .unwrap_or_else(|| conn.peer().ip().to_string())
    }

    fn outcome(
        &self,
        conn: &Conn,
        tag: &PeerTag,
        code: u8,
        name: &str,
        ts: u32,
        r: Result<Outcome, StoreError>,
    ) -> Done {
        match r {
            Ok(o) => {
                self.progress.received(&self.peer_key(conn, tag), ts);
                debug!(
                    worker = "sync-receiver",
                    peer = %conn.peer(),
                    cmd = cmd::name(code),
                    file = name,
                    outcome = ?o,
                    "sync applied"
                );
                Done::Reply(o.status())
            }
            Err(e) => {
                warn!(
                    worker = "sync-receiver",
                    peer = %conn.peer(),
                    cmd = cmd::name(code),
                    file = name,
                    "sync failed: {e}"
                );
                Done::Reply(e.status())
            }
        }
    }

    /// Reads and decodes the body of a command without content. `Err`:
    /// the answer instead, close for a body over the limit, refuse for one
    /// that does not decode or whose `group` (if it names one) is not ours.
    async fn small<T>(
        &self,
        conn: &mut Conn,
        h: Header,
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
        group: impl FnOnce(&T) -> Option<&GroupName>,
    ) -> Result<Result<T, Done>, ConnError> {
        if h.pkg_len > MAX_SMALL {
            return Ok(Err(Done::Close));
        }
        let mut b = vec![0u8; h.pkg_len as usize];
        conn.read_exact_into(&mut b).await?;
        let r = match decode(&b) {
            Ok(r) => r,
            Err(e) => return Ok(Err(Done::Refuse(e.to_string()))),
        };
        if let Some(g) = group(&r) {
            if g != self.store.group() {
                return Ok(Err(Done::Refuse(format!("group {g} is not ours"))));
            }
        }
        Ok(Ok(r))
    }

    async fn dispatch(
        &self,
        conn: &mut Conn,
        h: Header,
        tag: &mut PeerTag,
    ) -> Result<Done, ConnError> {
        use cmd::storage as s;
        let store = &*self.store;
        match h.cmd {
            s::REPORT_SERVER_ID => {
                let r = match self
                    .small(conn, h, ReportServerId::decode, |_| None)
                    .await?
                {
                    Ok(r) => r,
                    Err(done) => return Ok(done),
                };
                debug!(worker = "sync-receiver", peer = %conn.peer(), id = %r.id, "sync peer identified");
                tag.id = Some(r.id);
                Ok(Done::Reply(errno::OK))
            }
            s::SYNC_CREATE_FILE | s::SYNC_UPDATE_FILE => self.file(conn, h, tag).await,
            s::SYNC_APPEND_FILE | s::SYNC_MODIFY_FILE => self.range(conn, h, tag).await,
            s::SYNC_DELETE_FILE => {
                let r = match self
                    .small(conn, h, SyncDelete::decode, |r| Some(&r.group))
                    .await?
                {
                    Ok(r) => r,
                    Err(done) => return Ok(done),
                };
                let name = r.filename.as_str();
                let inline = !store.config().durable;
                let res = maybe_blocking(inline, || apply::delete(store, name, r.timestamp));
                Ok(self.outcome(conn, tag, h.cmd, name, r.timestamp, res))
            }
            s::SYNC_TRUNCATE_FILE => {
                let r = match self
                    .small(conn, h, SyncTruncate::decode, |r| Some(&r.group))
                    .await?
                {
                    Ok(r) => r,
                    Err(done) => return Ok(done),
                };
                let name = r.filename.as_str();
                let logic = r.filename.logic();
                let _g = store.lock_file(&logic).await;
                let res =
                    blocking(|| apply::truncate(store, name, r.old_size, r.new_size, r.timestamp));
                Ok(self.outcome(conn, tag, h.cmd, name, r.timestamp, res))
            }
            s::SYNC_CREATE_LINK | s::SYNC_RENAME_FILE => {
                let r = match self
                    .small(conn, h, SyncTwoNames::decode, |r| Some(&r.group))
                    .await?
                {
                    Ok(r) => r,
                    Err(done) => return Ok(done),
                };
                let (first, second) = (r.first.as_str(), r.second.as_str());
                let res = if h.cmd == s::SYNC_CREATE_LINK {
                    blocking(|| apply::link(store, first, second, r.timestamp))
                } else {
                    let logic = r.second.logic();
                    let _g = store.lock_file(&logic).await;
                    blocking(|| apply::rename(store, first, second, r.timestamp))
                };
                Ok(self.outcome(conn, tag, h.cmd, first, r.timestamp, res))
            }
            _ => Ok(Done::Refuse("not a sync command".into())),
        }
    }

    /// Reads the filename that follows a fixed head.
    async fn name(&self, conn: &mut Conn, len: usize) -> Result<Result<String, String>, ConnError> {
        let mut b = vec![0u8; len];
        conn.read_exact_into(&mut b).await?;
        Ok(decode_sync_name(&b).map(|n| n.0).map_err(|e| e.to_string()))
    }

    /// SYNC_CREATE_FILE (16) / SYNC_UPDATE_FILE (18).
    async fn file(&self, conn: &mut Conn, h: Header, tag: &mut PeerTag) -> Result<Done, ConnError> {
        let store = &*self.store;
        if h.pkg_len < SyncFileHead::LEN as u64 {
            return Ok(Done::Refuse("body shorter than the sync file head".into()));
        }
        let mut head = [0u8; SyncFileHead::LEN];
        conn.read_exact_into(&mut head).await?;
        // Status EEXIST in the request header: the sender only announces a
        // file the peer already has; no content follows.
        let with_content = h.status != errno::EEXIST;
        let sh = match SyncFileHead::decode(&head, h.pkg_len, with_content) {
            Ok(x) => x,
            Err(e) => return Ok(Done::Refuse(e.to_string())),
        };
        let name = match self.name(conn, sh.name_len).await? {
            Ok(n) => n,
            Err(e) => return Ok(Done::Refuse(e)),
        };
        if &sh.group != store.group() {
            return Ok(Done::Refuse(format!("group {} is not ours", sh.group)));
        }
        if !with_content {
            debug!(worker = "sync-receiver", file = %name, "peer announces a file we have");
            self.progress
                .received(&self.peer_key(conn, tag), sh.timestamp);
            return Ok(Done::Reply(errno::OK));
        }
        let update = h.cmd == cmd::storage::SYNC_UPDATE_FILE;
        // Small files hit the page cache: inline costs less than handing the
        // worker over (fsyncs of the durable mode always go to a thread).
        let small = sh.file_size <= SMALL;
        let mut inc = match maybe_blocking(small, || {
            apply::begin_file(store, &name, sh.file_size, update)
        }) {
            Ok(i) => i,
            Err(e) => {
                conn.discard(sh.file_size).await?;
                return Ok(self.outcome(conn, tag, h.cmd, &name, sh.timestamp, Err(e)));
            }
        };
        let res = match self.stream(conn, sh.file_size, |c| inc.write(c)).await? {
            Ok(()) if store.config().durable && !update => {
                // Synced and named with the creates pipelined behind it.
                return Ok(match inc.stage(sh.timestamp, &mut tag.unsynced) {
                    Ok(()) => Done::Staged,
                    Err(e) => self.outcome(conn, tag, h.cmd, &name, sh.timestamp, Err(e)),
                });
            }
            Ok(()) => {
                let unsynced = &mut tag.unsynced;
                maybe_blocking(small && !store.config().durable, || {
                    inc.finish_unsynced(store, sh.timestamp, unsynced)
                })
            }
            Err(e) => Err(e),
        };
        Ok(self.outcome(conn, tag, h.cmd, &name, sh.timestamp, res))
    }

    /// SYNC_APPEND_FILE (25) / SYNC_MODIFY_FILE (35).
    async fn range(&self, conn: &mut Conn, h: Header, tag: &PeerTag) -> Result<Done, ConnError> {
        let store = &*self.store;
        if h.pkg_len < SyncRangeHead::LEN as u64 {
            return Ok(Done::Refuse("body shorter than the sync range head".into()));
        }
        let mut head = [0u8; SyncRangeHead::LEN];
        conn.read_exact_into(&mut head).await?;
        let sh = match SyncRangeHead::decode(&head, h.pkg_len) {
            Ok(x) => x,
            Err(e) => return Ok(Done::Refuse(e.to_string())),
        };
        let name = match self.name(conn, sh.name_len).await? {
            Ok(n) => n,
            Err(e) => return Ok(Done::Refuse(e)),
        };
        if &sh.group != store.group() {
            return Ok(Done::Refuse(format!("group {} is not ours", sh.group)));
        }
        let append = h.cmd == cmd::storage::SYNC_APPEND_FILE;
        let Ok(logic) = LogicName::parse(&name) else {
            return Ok(Done::Refuse(format!("bad filename {name:?}")));
        };
        let _g = store.lock_file(&logic).await;
        let mut up =
            match blocking(|| apply::begin_range(store, &name, sh.offset, sh.length, append)) {
                Ok(Ok(u)) => u,
                Ok(Err(o)) => {
                    conn.discard(sh.length).await?;
                    return Ok(self.outcome(conn, tag, h.cmd, &name, sh.timestamp, Ok(o)));
                }
                Err(e) => {
                    conn.discard(sh.length).await?;
                    return Ok(self.outcome(conn, tag, h.cmd, &name, sh.timestamp, Err(e)));
                }
            };
        let res = match self.stream(conn, sh.length, |c| up.write(c)).await? {
            Ok(()) => blocking(|| up.finish(store, sh.timestamp)),
            Err(e) => Err(e),
        };
        Ok(self.outcome(conn, tag, h.cmd, &name, sh.timestamp, res))
    }

    /// Reads `n` body bytes and hands them to `sink`; see
    /// [`crate::service::stream_body`].
    async fn stream(
        &self,
        conn: &mut Conn,
        n: u64,
        sink: impl FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<Result<(), StoreError>, ConnError> {
        let mut buf = vec![0u8; (n.min(CHUNK as u64) as usize).max(1)];
        crate::service::stream_body(conn, &mut buf, n, sink).await
    }
}
